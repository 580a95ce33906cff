//! udpflood: a paced UDP load generator and a counting receiver, for the end-to-end
//! benchmark (`benches/e2e/bench.sh`), where iperf3 (one datagram per syscall, one
//! thread) cannot send 64-byte datagrams fast enough to find a switch's limit.
//!
//! ```text
//! udpflood send --dst IP:PORT --rate PPS --secs S [--size 64] [--threads N] [--batch 32]
//! udpflood recv --bind IP:PORT --secs S [--idle S] [--threads N]
//! ```
//!
//! `send` sends `--size`-byte UDP payloads (as `iperf3 -l`; on the wire a 64-byte payload
//! is a 106-byte Ethernet frame) from N threads, each with its own socket (so its own
//! source port: N flows), with `sendmmsg` batches. `--rate` is the total in packets per
//! second, spread over the threads and paced with a token bucket (bursts of at most one
//! batch; a thread that falls more than 2 ms behind drops the backlog rather than bursting
//! to catch up, so the achieved rate is printed, not assumed). `--rate 0` sends as fast as
//! it can. It prints `sent packets=N errors=E secs=T pps=P requested_pps=R threads=N`.
//!
//! `recv` counts datagrams with `recvmmsg` until `--secs` have passed, or `--idle`
//! seconds (default 1) after the last one once traffic has started. It prints
//! `received packets=N bytes=B secs=T pps=P` where T runs from the first to the last
//! datagram. With `--threads N`, N sockets share the port (SO_REUSEPORT; the kernel
//! spreads flows over them).
#![forbid(unsafe_code)]

use nix::sys::socket::{
    AddressFamily, MsgFlags, MultiHeaders, SockFlag, SockType, SockaddrStorage, bind, connect,
    recvmmsg, sendmmsg, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  udpflood send --dst IP:PORT --rate PPS --secs S [--size BYTES] [--threads N] [--batch N]
  udpflood recv --bind IP:PORT --secs S [--idle S] [--threads N]
--rate 0 sends unpaced; --size is the UDP payload (default 64).";

/// A paced sender may fall this far behind before it gives up the backlog.
const MAX_LAG: Duration = Duration::from_millis(2);
/// Paced threads wake at most this often (the burst is sized to match).
const MIN_WAKE: Duration = Duration::from_micros(250);

#[derive(Debug, Clone)]
struct SendArgs {
    dst: SocketAddr,
    rate: u64,
    secs: f64,
    size: usize,
    threads: usize,
    batch: usize,
}

#[derive(Debug, Clone)]
struct RecvArgs {
    bind: SocketAddr,
    secs: f64,
    idle: f64,
    threads: usize,
}

#[derive(Debug)]
enum Mode {
    Send(SendArgs),
    Recv(RecvArgs),
}

fn parse_args(args: &[String]) -> Result<Mode, String> {
    let (mode, rest) = args.split_first().ok_or("no mode given")?;
    let mut opts: Vec<(&str, &str)> = Vec::new();
    let mut it = rest.iter();
    while let Some(k) = it.next() {
        let key = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument `{k}`"))?;
        let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
        opts.push((key, v.as_str()));
    }
    let get = |name: &str| opts.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v);
    fn num<T: std::str::FromStr>(
        name: &str,
        v: Option<&str>,
        default: Option<T>,
    ) -> Result<T, String> {
        match v {
            Some(s) => s
                .parse()
                .map_err(|_| format!("--{name}: `{s}` is not a valid number")),
            None => default.ok_or_else(|| format!("--{name} is required")),
        }
    }
    let addr = |name: &str| -> Result<SocketAddr, String> {
        let s = get(name).ok_or_else(|| format!("--{name} is required"))?;
        s.parse()
            .map_err(|_| format!("--{name}: `{s}` is not IP:PORT"))
    };
    let known: &[&str] = match mode.as_str() {
        "send" => &["dst", "rate", "secs", "size", "threads", "batch"],
        "recv" => &["bind", "secs", "idle", "threads"],
        m => return Err(format!("unknown mode `{m}`")),
    };
    if let Some((k, _)) = opts.iter().find(|(k, _)| !known.contains(k)) {
        return Err(format!("unknown option --{k} for {mode}"));
    }
    let secs: f64 = num("secs", get("secs"), None)?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("--secs must be positive".into());
    }
    let threads: usize = num("threads", get("threads"), Some(1))?;
    if threads == 0 || threads > 64 {
        return Err("--threads must be 1 to 64".into());
    }
    if mode == "send" {
        let size: usize = num("size", get("size"), Some(64))?;
        if size > 65_507 {
            return Err("--size is at most 65507".into());
        }
        let batch: usize = num("batch", get("batch"), Some(32))?;
        if batch == 0 || batch > 1024 {
            return Err("--batch must be 1 to 1024".into());
        }
        Ok(Mode::Send(SendArgs {
            dst: addr("dst")?,
            rate: num("rate", get("rate"), None)?,
            secs,
            size,
            threads,
            batch,
        }))
    } else {
        let idle: f64 = num("idle", get("idle"), Some(1.0))?;
        if !(idle > 0.0 && idle.is_finite()) {
            return Err("--idle must be positive".into());
        }
        Ok(Mode::Recv(RecvArgs {
            bind: addr("bind")?,
            secs,
            idle,
            threads,
        }))
    }
}

fn udp_socket(addr: &SocketAddr) -> Result<OwnedFd, String> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("socket: {e}"))
}

/// One sender thread's totals.
#[derive(Debug, Default, Clone, Copy)]
struct SendTotals {
    sent: u64,
    errors: u64,
}

fn send_thread(a: &SendArgs, rate: f64, start: Instant) -> Result<SendTotals, String> {
    // Wake-ups of a sleeping paced thread should be on time (default slack: 50 us).
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let fd = udp_socket(&a.dst)?;
    let _ = setsockopt(&fd, sockopt::SndBufForce, &(4 << 20));
    // A connected socket: one route lookup, and ICMP errors come back as errors.
    connect(fd.as_raw_fd(), &SockaddrStorage::from(a.dst))
        .map_err(|e| format!("connect {}: {e}", a.dst))?;
    let payload = vec![0x5a_u8; a.size];
    let iovs: Vec<[IoSlice<'_>; 1]> = (0..a.batch).map(|_| [IoSlice::new(&payload)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = vec![None; a.batch];
    let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(a.batch, None);
    let end = start + Duration::from_secs_f64(a.secs);
    let lag_cap = (rate * MAX_LAG.as_secs_f64()).max(a.batch as f64) as u64;
    let min_burst = ((rate * MIN_WAKE.as_secs_f64()) as u64).clamp(1, a.batch as u64);
    let mut t = SendTotals::default();
    // Packets given up after falling behind: they lower the achieved rate.
    let mut skipped: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let n = if rate <= 0.0 {
            a.batch
        } else {
            let due = ((now - start).as_secs_f64() * rate) as u64;
            let done = t.sent + t.errors + skipped;
            let mut deficit = due.saturating_sub(done);
            if deficit > lag_cap {
                skipped += deficit - lag_cap;
                deficit = lag_cap;
            }
            if deficit < min_burst {
                let at = (done + min_burst) as f64 / rate;
                let wait = Duration::from_secs_f64(at).saturating_sub(now - start);
                std::thread::sleep(wait.min(end - now));
                continue;
            }
            (deficit as usize).min(a.batch)
        };
        match sendmmsg(
            fd.as_raw_fd(),
            &mut hdrs,
            &iovs[..n],
            &addrs[..n],
            [],
            MsgFlags::empty(),
        ) {
            Ok(res) => {
                let k = res.count() as u64;
                t.sent += k;
                if k == 0 {
                    t.errors += 1;
                }
            }
            // ENOBUFS/EAGAIN (a full queue), ECONNREFUSED (an ICMP error from before the
            // receiver listened): count and go on.
            Err(_) => t.errors += 1,
        }
    }
    Ok(t)
}

fn run_send(a: &SendArgs) -> Result<(), String> {
    let per_thread = a.rate as f64 / a.threads as f64;
    // Threads start together, a little after they are spawned.
    let start = Instant::now() + Duration::from_millis(20);
    let results: Vec<Result<SendTotals, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|_| {
                s.spawn(move || {
                    let now = Instant::now();
                    if start > now {
                        std::thread::sleep(start - now);
                    }
                    send_thread(a, per_thread, start)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a sender thread panicked".into()))
            })
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut total = SendTotals::default();
    for r in results {
        let t = r?;
        total.sent += t.sent;
        total.errors += t.errors;
    }
    println!(
        "sent packets={} errors={} secs={:.3} pps={:.0} requested_pps={} threads={}",
        total.sent,
        total.errors,
        secs,
        total.sent as f64 / secs.min(a.secs).max(1e-9),
        a.rate,
        a.threads
    );
    Ok(())
}

/// One receiver thread's totals: packets, bytes, first and last arrival.
#[derive(Debug, Default, Clone, Copy)]
struct RecvTotals {
    packets: u64,
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn recv_socket(a: &RecvArgs) -> Result<OwnedFd, String> {
    let fd = udp_socket(&a.bind)?;
    if a.threads > 1 {
        setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| format!("SO_REUSEPORT: {e}"))?;
    }
    // A deep socket queue, so the receiver's own scheduling hiccups do not count as the
    // switch's loss (SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to what is allowed).
    if setsockopt(&fd, sockopt::RcvBufForce, &(64 << 20)).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &(64 << 20));
    }
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(a.bind))
        .map_err(|e| format!("bind {}: {e}", a.bind))?;
    Ok(fd)
}

fn recv_thread(a: &RecvArgs, fd: OwnedFd, start: Instant) -> RecvTotals {
    const BATCH: usize = 64;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let end = start + Duration::from_secs_f64(a.secs);
    let idle = Duration::from_secs_f64(a.idle);
    let mut t = RecvTotals::default();
    loop {
        let now = Instant::now();
        if now >= end || t.last.is_some_and(|l| now - l >= idle) {
            break;
        }
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        // An error is EAGAIN from the 100 ms receive timeout: look at the clock again.
        if let Ok(res) = recvmmsg(
            fd.as_raw_fd(),
            &mut hdrs,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            let mut k = 0u64;
            for m in res {
                k += 1;
                t.bytes += m.bytes as u64;
            }
            if k > 0 {
                let now = Instant::now();
                t.first.get_or_insert(now);
                t.last = Some(now);
                t.packets += k;
            }
        }
    }
    t
}

fn run_recv(a: &RecvArgs) -> Result<(), String> {
    let fds = (0..a.threads)
        .map(|_| recv_socket(a))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let results: Vec<RecvTotals> = std::thread::scope(|s| {
        let handles: Vec<_> = fds
            .into_iter()
            .map(|fd| s.spawn(move || recv_thread(a, fd, start)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut total = RecvTotals::default();
    for t in results {
        total.packets += t.packets;
        total.bytes += t.bytes;
        total.first = match (total.first, t.first) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        total.last = total.last.max(t.last);
    }
    let secs = match (total.first, total.last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "received packets={} bytes={} secs={:.3} pps={:.0}",
        total.packets,
        total.bytes,
        secs,
        if secs > 0.0 {
            total.packets as f64 / secs
        } else {
            0.0
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mode = match parse_args(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("udpflood: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let r = match &mode {
        Mode::Send(a) => run_send(a),
        Mode::Recv(a) => run_recv(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udpflood: {e}");
            ExitCode::FAILURE
        }
    }
}
