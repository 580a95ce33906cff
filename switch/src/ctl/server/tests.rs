//! The control server against real sockets, with an in-memory switch (no root).

use super::*;
use crate::daemon::Config;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;

struct Running {
    dir: PathBuf,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl Running {
    fn start(tag: &str, limits: Limits) -> Running {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vswitch-ctl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sw = crate::daemon::Switch::start(Config {
            workers: 1,
            busy_poll: Duration::ZERO,
            ..Config::new(dir.join("state"))
        })
        .unwrap();
        let socket = dir.join("ctl.sock");
        let listener = super::super::bind(&socket).unwrap();
        let stats = Arc::new(Stats::default());
        let hooks = Arc::new(Hooks {
            shutdown: Box::new(|| {}),
            reopen_logs: Box::new(|| Ok(())),
            control: stats.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sw = Arc::new(Mutex::new(sw));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || serve(listener, sw, hooks, stop, limits))
        };
        Running {
            dir,
            socket,
            stop,
            thread: Some(thread),
            stats,
        }
    }

    fn connect(&self) -> StdStream {
        let s = StdStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn stats(&self) -> rpc::ControlStats {
        self.stats.snapshot()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = StdStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(id: u64, method: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\"}}\n")
}

fn reply(r: &mut impl BufRead) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("a reply");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Whether the server closed `s` (reads end) within `within`.
fn closed(s: &StdStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match (&*s).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_and_a_notification_gets_nothing() {
    let srv = Running::start("pipeline", Limits::default());
    let mut s = srv.connect();
    let notification = "{\"jsonrpc\":\"2.0\",\"method\":\"version\"}\n";
    let burst = format!(
        "{}\n  \n{notification}{}{}",
        request(1, "version"),
        request(2, "show"),
        request(3, "nope")
    );
    s.write_all(burst.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(reply(&mut r)["id"], 1);
    let show = reply(&mut r);
    assert_eq!(show["id"], 2);
    assert_eq!(show["result"]["control"]["connections"], 1, "{show}");
    assert_eq!(show["result"]["control"]["max_connections"], 128);
    let unknown = reply(&mut r);
    assert_eq!(unknown["id"], 3);
    assert_eq!(unknown["error"]["code"], code::METHOD_NOT_FOUND);
    // The last request without its newline, then end of stream: still answered.
    s.write_all(request(4, "version").trim_end().as_bytes())
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(reply(&mut r)["id"], 4);
    assert!(closed(&s, Duration::from_secs(5)));
}

#[test]
fn an_oversized_request_is_skipped_and_the_connection_goes_on() {
    let srv = Running::start("long", Limits::default());
    let s = srv.connect();
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..(MAX_MESSAGE_BYTES >> 20) + 1 {
                w.write_all(&chunk).unwrap();
            }
            w.write_all(b"\n").unwrap();
            w.write_all(request(9, "version").as_bytes()).unwrap();
        })
    };
    let mut r = BufReader::new(s.try_clone().unwrap());
    let e = reply(&mut r);
    assert_eq!(e["error"]["code"], code::INVALID_REQUEST, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("larger"));
    assert_eq!(reply(&mut r)["id"], 9);
    writer.join().unwrap();
    let st = srv.stats();
    assert_eq!(st.too_long, 1);
    assert!(st.buffered <= st.buffer_limit, "{st:?}");
}

#[test]
fn past_the_connection_limit_idle_ones_make_room_else_new_ones_hear_busy() {
    let srv = Running::start(
        "cap",
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
    );
    let a = srv.connect();
    let b = srv.connect();
    // Both fresh: nothing to close, so a third is refused with a reason.
    let mut c = srv.connect();
    let _ = c.write_all(request(1, "version").as_bytes());
    let mut r = BufReader::new(c);
    let busy = reply(&mut r);
    assert_eq!(busy["error"]["code"], code::BUSY, "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--ctl-max-connections")
    );
    // Once they have been quiet a while, the quietest makes room.
    std::thread::sleep(EVICTABLE_AFTER + Duration::from_millis(300));
    let mut d = srv.connect();
    d.write_all(request(2, "version").as_bytes()).unwrap();
    let mut r = BufReader::new(d.try_clone().unwrap());
    assert_eq!(reply(&mut r)["id"], 2);
    assert!(closed(&a, Duration::from_secs(2)), "the oldest was closed");
    let st = srv.stats();
    assert_eq!(
        (st.refused, st.evicted, st.connections),
        (1, 1, 2),
        "{st:?}"
    );
    drop(b);
}

#[test]
fn idle_connections_are_closed() {
    let srv = Running::start(
        "idle",
        Limits {
            idle_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
    );
    let quiet = srv.connect();
    let mut busy = srv.connect();
    let started = Instant::now();
    let mut r = BufReader::new(busy.try_clone().unwrap());
    // A connection in use is not idle.
    while started.elapsed() < Duration::from_millis(1600) {
        busy.write_all(request(1, "version").as_bytes()).unwrap();
        assert_eq!(reply(&mut r)["id"], 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed(&quiet, Duration::from_secs(2)));
    busy.write_all(request(2, "version").as_bytes()).unwrap();
    assert_eq!(reply(&mut r)["id"], 2);
    assert!(srv.stats().idle_closed >= 1);
}

#[test]
fn unfinished_requests_share_one_budget_and_a_stalled_one_gives_way() {
    let limit = 2 << 20;
    let srv = Running::start(
        "budget",
        Limits {
            buffer_limit: limit,
            ..Limits::default()
        },
    );
    // A client writes most of the budget and stalls without its newline.
    let mut stalled = srv.connect();
    stalled.write_all(&vec![b' '; limit]).unwrap();
    // Another sends a request needing more than what is left: it waits, then, once the
    // first has been quiet long enough, takes its place.
    let big = srv.connect();
    let writer = {
        let mut w = big.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut req = request(5, "version").into_bytes();
            req.splice(0..0, vec![b' '; 1 << 20]);
            w.write_all(&req).unwrap();
        })
    };
    let mut small = srv.connect();
    let mut r = BufReader::new(small.try_clone().unwrap());
    let mut max_seen = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        small.write_all(request(1, "show").as_bytes()).unwrap();
        let show = reply(&mut r);
        max_seen = max_seen.max(show["result"]["control"]["buffered"].as_u64().unwrap());
    }
    let mut rb = BufReader::new(big.try_clone().unwrap());
    assert_eq!(reply(&mut rb)["id"], 5);
    writer.join().unwrap();
    assert!(closed(&stalled, Duration::from_secs(2)));
    let st = srv.stats();
    assert!(max_seen as usize <= limit, "{max_seen} buffered");
    assert_eq!(st.evicted, 1, "{st:?}");
    // Everything answered or closed: nothing held.
    small.write_all(request(2, "version").as_bytes()).unwrap();
    assert_eq!(reply(&mut r)["id"], 2);
    assert_eq!(srv.stats().buffered, 0);
}

#[test]
fn rate_log_holds_back_and_counts() {
    let mut log = RateLog::default();
    let t = Instant::now();
    assert_eq!(log.allow(t), Some(0));
    for _ in 0..5 {
        assert_eq!(log.allow(t + Duration::from_secs(1)), None);
    }
    assert_eq!(log.allow(t + LOG_EVERY), Some(5));
}
