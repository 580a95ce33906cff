//! connrate: a bounded TCP connection-rate generator and its server, for the end-to-end
//! benchmark (`benches/e2e/bench.sh`): how many new TCP connections a second a datapath
//! carries between two Pods (with connection tracking, each one is a new entry).
//!
//! ```text
//! connrate server ADDR:PORT [--secs S] [--threads N]
//! connrate client ADDR:PORT --secs S [--threads N] [--timeout-ms MS]
//! ```
//!
//! `server` listens on ADDR:PORT; N threads (default 4) accept connections, read each to
//! EOF (the client's one byte and its FIN) and close it. It exits after `--secs` (default
//! 600) whatever it is doing.
//!
//! `client` runs N threads (default 4) for `--secs` seconds; each opens a connection
//! (connect timeout `--timeout-ms`, default 1000), writes one byte, shuts its side down,
//! reads to EOF (the server's close, same timeout) and closes, in a loop. A connection
//! counts when the whole exchange completed; any error or timeout counts as a failure.
//! The run stops at the deadline; a connection under way then finishes within the
//! timeouts, so the client ends at most about 2 × the timeout after `--secs`. It prints
//! one line: `connections_per_sec=N failures=M connections=C secs=T threads=N`, with T
//! the wall time of the run.
//!
//! The client closes first, so its side keeps each connection in TIME_WAIT: run it with
//! `net.ipv4.tcp_tw_reuse=1` and a wide `net.ipv4.ip_local_port_range` in its network
//! namespace, or the local ports run out.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  connrate server ADDR:PORT [--secs S] [--threads N]
  connrate client ADDR:PORT --secs S [--threads N] [--timeout-ms MS]";

#[derive(Debug, Clone, PartialEq)]
struct Args {
    client: bool,
    addr: SocketAddr,
    secs: f64,
    threads: usize,
    timeout: Duration,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let (mode, rest) = args.split_first().ok_or("no mode given")?;
    let client = match mode.as_str() {
        "client" => true,
        "server" => false,
        m => return Err(format!("unknown mode `{m}`")),
    };
    let (addr, rest) = rest.split_first().ok_or("no ADDR:PORT given")?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not ADDR:PORT"))?;
    let mut secs: Option<f64> = None;
    let mut threads = 4_usize;
    let mut timeout_ms = 1000_u64;
    let mut it = rest.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let bad = || format!("{k}: `{v}` is not a valid number");
        match k.as_str() {
            "--secs" => secs = Some(v.parse().map_err(|_| bad())?),
            "--threads" => threads = v.parse().map_err(|_| bad())?,
            "--timeout-ms" if client => timeout_ms = v.parse().map_err(|_| bad())?,
            _ => return Err(format!("unexpected argument `{k}` for {mode}")),
        }
    }
    let secs = match secs {
        Some(s) => s,
        None if client => return Err("--secs is required".into()),
        None => 600.0,
    };
    if !(secs > 0.0 && secs.is_finite() && secs <= 86_400.0) {
        return Err("--secs must be positive (at most a day)".into());
    }
    if threads == 0 || threads > 256 {
        return Err("--threads must be 1 to 256".into());
    }
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err("--timeout-ms must be 1 to 60000".into());
    }
    Ok(Args {
        client,
        addr,
        secs,
        threads,
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// Accept connections, read each to EOF and close it; errors end the connection only.
fn serve(listener: &TcpListener) {
    let mut buf = [0_u8; 512];
    loop {
        let Ok((mut s, _)) = listener.accept() else {
            // EMFILE and the like: give the system a moment rather than spin.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

fn server(a: &Args) -> Result<(), String> {
    let listener = TcpListener::bind(a.addr).map_err(|e| format!("bind {}: {e}", a.addr))?;
    for _ in 0..a.threads {
        let l = listener.try_clone().map_err(|e| format!("listener: {e}"))?;
        std::thread::spawn(move || serve(&l));
    }
    // The acceptors block in accept(); the process ends them by exiting.
    std::thread::sleep(Duration::from_secs_f64(a.secs));
    Ok(())
}

/// One connection: connect, write a byte, half-close, read to EOF, close.
fn one_connection(addr: &SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"x")?;
    s.shutdown(Shutdown::Write)?;
    let mut buf = [0_u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn client(a: &Args) -> (u64, u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..a.threads)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let (addr, timeout) = (a.addr, a.timeout);
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0_u64, 0_u64);
                while !stop.load(Ordering::Relaxed) {
                    match one_connection(&addr, timeout) {
                        Ok(()) => ok += 1,
                        Err(_) => {
                            failed += 1;
                            // e.g. no free local port: do not spin on the error
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(a.secs));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        if let Ok((o, f)) = w.join() {
            ok += o;
            failed += f;
        }
    }
    (ok, failed, start.elapsed().as_secs_f64())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let a = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("connrate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if a.client {
        let (ok, failed, secs) = client(&a);
        println!(
            "connections_per_sec={:.0} failures={failed} connections={ok} secs={secs:.3} threads={}",
            ok as f64 / secs,
            a.threads
        );
        ExitCode::SUCCESS
    } else {
        match server(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("connrate: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_both_modes() {
        let c = parse_args(&args("client 10.0.0.1:9 --secs 5 --threads 2")).unwrap();
        assert!(c.client);
        assert_eq!(c.secs, 5.0);
        assert_eq!(c.threads, 2);
        assert_eq!(c.timeout, Duration::from_millis(1000));
        let s = parse_args(&args("server 0.0.0.0:9")).unwrap();
        assert!(!s.client);
        assert_eq!(s.secs, 600.0);
    }

    #[test]
    fn refuses_unbounded_or_unknown() {
        assert!(parse_args(&args("client 10.0.0.1:9")).is_err());
        assert!(parse_args(&args("client 10.0.0.1:9 --secs 0")).is_err());
        assert!(parse_args(&args("server 10.0.0.1:9 --timeout-ms 5")).is_err());
        assert!(parse_args(&args("client nohost --secs 1")).is_err());
        assert!(parse_args(&args("client 10.0.0.1:9 --secs 1 --threads 0")).is_err());
    }

    #[test]
    fn counts_connections_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || serve(&l));
        let a = parse_args(&args(&format!("client {addr} --secs 0.2 --threads 1"))).unwrap();
        let (ok, failed, secs) = client(&a);
        assert!(ok > 0, "no connection completed ({failed} failures)");
        assert!(secs < 5.0);
    }
}
