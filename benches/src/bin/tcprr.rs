//! tcprr: a bounded TCP request/response benchmark (as netperf's TCP_RR) and its echo
//! server, for the end-to-end benchmark (`benches/e2e/bench.sh`): on one connection, how
//! many round trips of a small request and its response a datapath carries a second, and
//! the latency of each.
//!
//! ```text
//! tcprr server ADDR:PORT [--secs S]
//! tcprr client ADDR:PORT --secs S [--size B] [--warmup-ms MS] [--timeout-ms MS]
//! ```
//!
//! `server` listens on ADDR:PORT and echoes every connection's bytes back (a thread per
//! connection, `TCP_NODELAY`). It exits after `--secs` (default 600) whatever it is doing.
//!
//! `client` opens one connection (`TCP_NODELAY`), then writes `--size` bytes (default 1)
//! and reads the same number back, again and again: one transaction at a time, the next
//! one sent when the previous response has arrived. The first `--warmup-ms` (default 200)
//! are not counted (the connection's first packets may wait for ARP or a new flow's
//! set-up); then it counts for `--secs` seconds, timing each transaction from before its
//! write to after its last byte is read. Every read and write has a timeout
//! (`--timeout-ms`, default 1000), so a run ends at most that long after `--secs`. It prints
//! one line:
//!
//! ```text
//! transactions_per_sec=N transactions=C secs=T size=B mean_us=M p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=X failures=F
//! ```
//!
//! with T the counted time and the percentiles by nearest rank, to 0.1 µs (below 20 ms,
//! exact above). `failures` is 0, or 1 when the connection failed (connect, a timeout, a
//! reset, an early close): the error goes to stderr, the figures cover the transactions
//! before it, and the exit status is 1.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  tcprr server ADDR:PORT [--secs S]
  tcprr client ADDR:PORT --secs S [--size B] [--warmup-ms MS] [--timeout-ms MS]";

/// Requests and responses larger than this are not what this tool is for (and would need
/// a buffer per connection of their size).
const MAX_SIZE: usize = 65_536;

#[derive(Debug, Clone, PartialEq)]
struct Args {
    client: bool,
    addr: SocketAddr,
    secs: f64,
    size: usize,
    warmup: Duration,
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
    let mut size = 1_usize;
    let mut warmup_ms = 200_u64;
    let mut timeout_ms = 1000_u64;
    let mut it = rest.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let bad = || format!("{k}: `{v}` is not a valid number");
        match k.as_str() {
            "--secs" => secs = Some(v.parse().map_err(|_| bad())?),
            "--size" if client => size = v.parse().map_err(|_| bad())?,
            "--warmup-ms" if client => warmup_ms = v.parse().map_err(|_| bad())?,
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
    if size == 0 || size > MAX_SIZE {
        return Err(format!("--size must be 1 to {MAX_SIZE}"));
    }
    if warmup_ms > 60_000 {
        return Err("--warmup-ms must be at most 60000".into());
    }
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err("--timeout-ms must be 1 to 60000".into());
    }
    Ok(Args {
        client,
        addr,
        secs,
        size,
        warmup: Duration::from_millis(warmup_ms),
        timeout: Duration::from_millis(timeout_ms),
    })
}

/// Latencies in buckets of `STEP_NS` up to `SPAN_NS`, exact beyond: a fixed 800 KB
/// whatever the run's length, exact enough for round trips of tens of microseconds.
#[derive(Debug)]
struct Histogram {
    buckets: Vec<u32>,
    over: Vec<u64>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

const STEP_NS: u64 = 100;
const SPAN_NS: u64 = 20_000_000;

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: vec![0; (SPAN_NS / STEP_NS) as usize],
            over: Vec::new(),
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        match self.buckets.get_mut((ns / STEP_NS) as usize) {
            Some(b) => *b = b.saturating_add(1),
            None => self.over.push(ns),
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The `p`-quantile (0 < p <= 1) by nearest rank, in ns: a bucketed value is its
    /// bucket's lower edge.
    fn quantile_ns(&mut self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0_u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return i as u64 * STEP_NS;
            }
        }
        self.over.sort_unstable();
        self.over[(rank - seen - 1) as usize]
    }

    fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }
}

/// Echo one connection until it closes or fails.
fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0_u8; MAX_SIZE];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn server(a: &Args) -> Result<(), String> {
    let listener = TcpListener::bind(a.addr).map_err(|e| format!("bind {}: {e}", a.addr))?;
    std::thread::spawn(move || {
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    std::thread::spawn(move || echo(s));
                }
                // EMFILE and the like: give the system a moment rather than spin.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    // The acceptor blocks in accept(); the process ends it by exiting.
    std::thread::sleep(Duration::from_secs_f64(a.secs));
    Ok(())
}

/// One transaction: write `req`, read `resp.len()` bytes back.
fn transact(s: &mut TcpStream, req: &[u8], resp: &mut [u8]) -> std::io::Result<()> {
    s.write_all(req)?;
    s.read_exact(resp)
}

/// What a client run measured.
#[derive(Debug)]
struct Outcome {
    hist: Histogram,
    secs: f64,
    error: Option<String>,
}

fn client(a: &Args) -> Outcome {
    let mut hist = Histogram::new();
    let mut s = match TcpStream::connect_timeout(&a.addr, a.timeout) {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                hist,
                secs: 0.0,
                error: Some(format!("connect {}: {e}", a.addr)),
            };
        }
    };
    let setup = s
        .set_nodelay(true)
        .and_then(|()| s.set_read_timeout(Some(a.timeout)))
        .and_then(|()| s.set_write_timeout(Some(a.timeout)));
    if let Err(e) = setup {
        return Outcome {
            hist,
            secs: 0.0,
            error: Some(format!("socket options: {e}")),
        };
    }
    let req = vec![b'x'; a.size];
    let mut resp = vec![0_u8; a.size];
    let warm_end = Instant::now() + a.warmup;
    while Instant::now() < warm_end {
        if let Err(e) = transact(&mut s, &req, &mut resp) {
            return Outcome {
                hist,
                secs: 0.0,
                error: Some(format!("warm-up transaction: {e}")),
            };
        }
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.secs);
    let mut error = None;
    let mut t0 = start;
    while t0 < end {
        if let Err(e) = transact(&mut s, &req, &mut resp) {
            error = Some(format!("transaction {}: {e}", hist.count + 1));
            break;
        }
        let t1 = Instant::now();
        hist.record(u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX));
        t0 = t1;
    }
    Outcome {
        hist,
        secs: start.elapsed().as_secs_f64(),
        error,
    }
}

fn report(o: &mut Outcome, size: usize) -> String {
    let us = |ns: u64| ns as f64 / 1000.0;
    let tps = if o.secs > 0.0 {
        o.hist.count as f64 / o.secs
    } else {
        0.0
    };
    let [p50, p90, p99, p999] = [0.50, 0.90, 0.99, 0.999].map(|p| us(o.hist.quantile_ns(p)));
    format!(
        "transactions_per_sec={tps:.0} transactions={} secs={:.3} size={size} mean_us={:.1} \
         p50_us={p50:.1} p90_us={p90:.1} p99_us={p99:.1} p999_us={p999:.1} max_us={:.1} failures={}",
        o.hist.count,
        o.secs,
        o.hist.mean_ns() / 1000.0,
        us(o.hist.max_ns),
        u8::from(o.error.is_some()),
    )
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
            eprintln!("tcprr: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if a.client {
        let mut o = client(&a);
        println!("{}", report(&mut o, a.size));
        match o.error {
            None => ExitCode::SUCCESS,
            Some(e) => {
                eprintln!("tcprr: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        match server(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tcprr: {e}");
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
        let c = parse_args(&args("client 10.0.0.1:9 --secs 5 --size 64")).unwrap();
        assert!(c.client);
        assert_eq!(c.secs, 5.0);
        assert_eq!(c.size, 64);
        assert_eq!(c.warmup, Duration::from_millis(200));
        assert_eq!(c.timeout, Duration::from_millis(1000));
        let s = parse_args(&args("server 0.0.0.0:9")).unwrap();
        assert!(!s.client);
        assert_eq!(s.secs, 600.0);
    }

    #[test]
    fn refuses_unbounded_or_unknown() {
        assert!(parse_args(&args("client 10.0.0.1:9")).is_err());
        assert!(parse_args(&args("client 10.0.0.1:9 --secs 0")).is_err());
        assert!(parse_args(&args("client 10.0.0.1:9 --secs 1 --size 0")).is_err());
        assert!(parse_args(&args("client 10.0.0.1:9 --secs 1 --size 65537")).is_err());
        assert!(parse_args(&args("server 10.0.0.1:9 --size 5")).is_err());
        assert!(parse_args(&args("client nohost --secs 1")).is_err());
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut h = Histogram::new();
        // 1..=100 µs, one each: p50 = the 50th value, p99 = the 99th.
        for us in 1..=100_u64 {
            h.record(us * 1000 + 42);
        }
        assert_eq!(h.quantile_ns(0.50), 50_000);
        assert_eq!(h.quantile_ns(0.99), 99_000);
        assert_eq!(h.quantile_ns(1.0), 100_000);
        assert_eq!(h.max_ns, 100_042);
        assert!((h.mean_ns() - 50_542.0).abs() < 1e-6);
    }

    #[test]
    fn quantiles_beyond_the_buckets_are_exact() {
        let mut h = Histogram::new();
        for _ in 0..98 {
            h.record(10_000);
        }
        h.record(SPAN_NS + 7);
        h.record(SPAN_NS * 3);
        assert_eq!(h.quantile_ns(0.98), 10_000);
        assert_eq!(h.quantile_ns(0.99), SPAN_NS + 7);
        assert_eq!(h.quantile_ns(1.0), SPAN_NS * 3);
        let mut empty = Histogram::new();
        assert_eq!(empty.quantile_ns(0.5), 0);
    }

    #[test]
    fn round_trips_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                std::thread::spawn(move || echo(s));
            }
        });
        let a = parse_args(&args(&format!(
            "client {addr} --secs 0.2 --size 3 --warmup-ms 10"
        )))
        .unwrap();
        let mut o = client(&a);
        assert!(o.error.is_none(), "{:?}", o.error);
        assert!(o.hist.count > 0);
        let line = report(&mut o, 3);
        assert!(line.contains("failures=0"), "{line}");
        assert!(line.starts_with("transactions_per_sec="), "{line}");
    }

    #[test]
    fn a_refused_connection_is_a_failure() {
        // A port just freed: nothing listens there.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let a = parse_args(&args(&format!("client {addr} --secs 0.1"))).unwrap();
        let mut o = client(&a);
        assert!(o.error.is_some());
        assert!(report(&mut o, 1).ends_with("failures=1"));
    }
}
