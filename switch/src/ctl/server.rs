//! The control server's event loop: one thread polls the listening socket and every
//! connection (mio, edge-triggered); requests run on a small pool of threads.
//!
//! Bounded the way a server facing careless local clients must be:
//! - **Connections.** At most [`Limits::max_connections`]. Past it, the connection idle
//!   longest (no request running, nothing received or sent for [`EVICTABLE_AFTER`]) is
//!   closed to make room, as nginx reuses idle keep-alive connections when it runs out;
//!   with none idle, the new connection gets a [`code::BUSY`] error and is closed.
//! - **Memory.** A connection holds its unfinished request and the one running. The first
//!   [`FREE_BYTES`] of that are its own; the rest is charged to one budget shared by all
//!   ([`Limits::buffer_limit`]). A connection with no budget left is not read until
//!   another's request ends, or it takes the budget of a connection that stopped sending
//!   in the middle of a request. Big buffers are returned to the system when freed.
//! - **Idleness.** A connection without a byte either way for [`Limits::idle_timeout`],
//!   and no request running, is closed.
//! - **Accept failures.** Out of descriptors (EMFILE, ENFILE), the server first closes an
//!   idle connection; else it spends a reserve descriptor to accept one waiting client
//!   and tell it why (libev's documented remedy), else it pauses accepting. Other
//!   failures (ENOMEM, ENOBUFS) pause it too: 10 ms, doubling to 1 s, and cut short as
//!   soon as a connection closes. Each kind of trouble is logged at most once per
//!   [`LOG_EVERY`], with the count of what was not logged.
//!
//! One request per connection runs at a time; further lines wait in the connection's
//! buffer (pipelining keeps its order). The pool grows to [`Limits::threads`] threads and
//! shrinks when idle, so a slow call (a CNI ADD waiting on an IPAM plugin) does not hold up
//! `vswitchctl show`.

use super::framer::{Framer, Taken};
use super::{Hooks, answer};
use crate::daemon::Switch;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use vswitch_proto::rpc::{self, Id, MAX_MESSAGE_BYTES, Response, RpcError, code};

/// What a connection may hold without drawing on the shared budget: every request
/// `vswitchctl` and the CNI plugin send in normal use fits.
pub const FREE_BYTES: usize = 64 << 10;
/// How long a connection must have been quiet before it may be closed to make room.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(1);
/// The least interval between two log lines about the same trouble.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often idle connections are looked for (and waiting ones retried).
const SWEEP: Duration = Duration::from_millis(250);
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A pool thread with nothing to do this long ends (one always stays).
const THREAD_IDLE: Duration = Duration::from_secs(10);
/// Bytes read at once.
const CHUNK: usize = 64 << 10;
/// A freed buffer this big is worth returning to the system.
const LARGE: usize = 1 << 20;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// The server's limits (`vswitchd --ctl-*`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// Bytes of requests (unfinished or running) held beyond each connection's
    /// [`FREE_BYTES`], all connections together.
    pub buffer_limit: usize,
    /// Requests running at once.
    pub threads: usize,
}

/// 128 connections (kubelet's parallel CNI calls and a few `vswitchctl`s fit many times),
/// 30 s idle, four requests of the largest size, 16 threads.
impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 128,
            idle_timeout: Duration::from_secs(30),
            buffer_limit: 4 * MAX_MESSAGE_BYTES,
            threads: 16,
        }
    }
}

/// The server's counters, read by `show`.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicU64,
    max_connections: AtomicU64,
    buffered: AtomicU64,
    buffer_limit: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    idle_closed: AtomicU64,
    too_long: AtomicU64,
    accept_errors: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> rpc::ControlStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        rpc::ControlStats {
            connections: get(&self.connections),
            max_connections: get(&self.max_connections),
            buffered: get(&self.buffered),
            buffer_limit: get(&self.buffer_limit),
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            evicted: get(&self.evicted),
            idle_closed: get(&self.idle_closed),
            too_long: get(&self.too_long),
            accept_errors: get(&self.accept_errors),
        }
    }

    fn bump(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serve `listener` until `stop` is set (the caller wakes the loop by connecting).
pub fn serve(
    listener: std::os::unix::net::UnixListener,
    switch: Arc<Mutex<Switch>>,
    hooks: Arc<Hooks>,
    stop: Arc<AtomicBool>,
    limits: Limits,
) {
    match Server::new(listener, switch, hooks, limits) {
        Ok(mut s) => s.run(&stop),
        Err(e) => tracing::error!(error = %e, "the control server cannot start"),
    }
}

/// One log line per [`LOG_EVERY`] at most; what it held back is counted.
#[derive(Debug, Default)]
struct RateLog {
    next: Option<Instant>,
    held_back: u64,
}

impl RateLog {
    /// `Some(count held back since the last line)` when a line may be written now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|n| now < n) {
            self.held_back += 1;
            return None;
        }
        self.next = Some(now + LOG_EVERY);
        Some(std::mem::take(&mut self.held_back))
    }
}

struct Job {
    token: usize,
    generation: u64,
    line: Vec<u8>,
}

struct Done {
    token: usize,
    generation: u64,
    /// The reply line with its newline; empty for a notification.
    reply: Vec<u8>,
}

/// Threads that answer requests: as many as are busy, up to a limit, plus one idle.
struct Pool {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    done: Sender<Done>,
    waker: Arc<Waker>,
    switch: Arc<Mutex<Switch>>,
    hooks: Arc<Hooks>,
    stats: Arc<Stats>,
    idle: Arc<AtomicUsize>,
    threads: Arc<AtomicUsize>,
    max: usize,
}

impl Pool {
    /// Queue `job`; a thread is started when none is free. When none can be started and
    /// none runs, the queued jobs come back to be answered with an error.
    fn submit(&self, job: Job) -> Vec<Job> {
        let _ = self.jobs.send(job);
        // Enough idle threads for what is queued (this job included), or no more allowed.
        if self.queue.len() <= self.idle.load(Ordering::Acquire)
            || self.threads.load(Ordering::Acquire) >= self.max
        {
            return Vec::new();
        }
        self.threads.fetch_add(1, Ordering::AcqRel);
        let (queue, done, waker) = (self.queue.clone(), self.done.clone(), self.waker.clone());
        let (sw, hooks, stats) = (self.switch.clone(), self.hooks.clone(), self.stats.clone());
        let (idle, threads) = (self.idle.clone(), self.threads.clone());
        let spawned = std::thread::Builder::new()
            .name("vswitch-ctl".into())
            .spawn(move || {
                pool_thread(&queue, &done, &waker, &sw, &hooks, &stats, &idle, &threads)
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a control thread");
            if self.threads.fetch_sub(1, Ordering::AcqRel) == 1 {
                return self.queue.try_iter().collect();
            }
        }
        Vec::new()
    }
}

#[allow(clippy::too_many_arguments)]
fn pool_thread(
    queue: &Receiver<Job>,
    done: &Sender<Done>,
    waker: &Waker,
    sw: &Mutex<Switch>,
    hooks: &Hooks,
    stats: &Stats,
    idle: &AtomicUsize,
    threads: &AtomicUsize,
) {
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let job = queue.recv_timeout(THREAD_IDLE);
        idle.fetch_sub(1, Ordering::AcqRel);
        match job {
            Ok(job) => {
                let reply = match answer(sw, hooks, Some(stats), &job.line) {
                    Some(resp) => reply_line(&resp),
                    None => Vec::new(),
                };
                if job.line.len() > LARGE {
                    // A cluster's manifest: its buffers and what it parsed into are free
                    // now; give them back rather than keep the peak for good.
                    drop(job.line);
                    crate::sys::trim_heap();
                }
                let _ = done.send(Done {
                    token: job.token,
                    generation: job.generation,
                    reply,
                });
                let _ = waker.wake();
            }
            Err(RecvTimeoutError::Timeout) => {
                let leave = threads
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n > 1).then(|| n - 1)
                    })
                    .is_ok();
                if leave {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                threads.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }
}

fn reply_line(resp: &Response) -> Vec<u8> {
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|e| {
        let err = Response::err(
            resp.id.clone(),
            RpcError::new(
                code::INTERNAL_ERROR,
                format!("cannot encode the reply: {e}"),
            ),
        );
        serde_json::to_vec(&err).unwrap_or_default()
    });
    out.push(b'\n');
    out
}

fn error_line(id: Option<Id>, code: i64, message: impl Into<String>) -> Vec<u8> {
    reply_line(&Response::err(id, RpcError::new(code, message)))
}

/// Whether the peer may use the socket: root, or the user the daemon runs as.
fn peer_allowed(stream: &UnixStream) -> io::Result<bool> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    let me = nix::unistd::geteuid().as_raw();
    Ok(cred.uid() == 0 || cred.uid() == me)
}

struct Conn {
    stream: UnixStream,
    /// Tells this connection from a later one in the same slot.
    generation: u64,
    /// The peer passed the credential check.
    allowed: bool,
    /// Received bytes not yet taken as requests.
    frame: Framer,
    /// Bytes of the request the pool is answering (0: none runs).
    running: usize,
    busy: bool,
    out: Vec<u8>,
    sent: usize,
    /// Close once `out` is sent.
    closing: bool,
    readable: bool,
    writable: bool,
    eof: bool,
    /// The peer closed the connection both ways: nobody will read an answer.
    hung_up: bool,
    /// In the queue for budget: it needs more than others left.
    waiting: bool,
    /// What it draws on the shared budget.
    charge: usize,
    last: Instant,
}

impl Conn {
    fn held(&self) -> usize {
        self.frame.pending() + self.running
    }

    /// Quiet long enough to be closed for room: nothing running, not waiting on us.
    fn evictable(&self, now: Instant) -> bool {
        !self.busy && !self.waiting && now.duration_since(self.last) >= EVICTABLE_AFTER
    }
}

enum Step {
    Again,
    Wait,
    Close,
}

struct Server {
    poll: Poll,
    listener: UnixListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    generation: u64,
    /// Sum of the connections' charges.
    charged: usize,
    /// Connections waiting for budget, first come first served: only the first draws on
    /// what is freed, so the budget is not spread thin over many that all wait (and could
    /// then never be told from clients that stalled).
    queue: VecDeque<usize>,
    limits: Limits,
    stats: Arc<Stats>,
    pool: Pool,
    done: Receiver<Done>,
    listener_ready: bool,
    accept_after: Option<Instant>,
    backoff: Duration,
    /// Spent to refuse a client with a message when out of descriptors.
    reserve: Option<File>,
    accept_log: RateLog,
    refuse_log: RateLog,
    dirty: Vec<usize>,
    budget_freed: bool,
    trim: bool,
    scratch: Vec<u8>,
}

impl Server {
    fn new(
        listener: std::os::unix::net::UnixListener,
        switch: Arc<Mutex<Switch>>,
        hooks: Arc<Hooks>,
        limits: Limits,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::unbounded();
        let stats = hooks.control.clone();
        stats
            .max_connections
            .store(limits.max_connections as u64, Ordering::Relaxed);
        stats
            .buffer_limit
            .store(limits.buffer_limit as u64, Ordering::Relaxed);
        let pool = Pool {
            jobs,
            queue,
            done: done_tx,
            waker,
            switch,
            hooks,
            stats: stats.clone(),
            idle: Arc::new(AtomicUsize::new(0)),
            threads: Arc::new(AtomicUsize::new(0)),
            max: limits.threads.max(1),
        };
        Ok(Server {
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            generation: 0,
            charged: 0,
            queue: VecDeque::new(),
            limits,
            stats,
            pool,
            done,
            listener_ready: true,
            accept_after: None,
            backoff: BACKOFF_FIRST,
            reserve: File::open("/dev/null").ok(),
            accept_log: RateLog::default(),
            refuse_log: RateLog::default(),
            dirty: Vec::new(),
            budget_freed: false,
            trim: false,
            scratch: vec![0; CHUNK],
        })
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let now = Instant::now();
            let mut until = next_sweep;
            if let Some(t) = self.accept_after {
                until = until.min(t);
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(until.saturating_duration_since(now)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "control server: poll failed");
                    std::thread::sleep(BACKOFF_MAX);
                }
                continue;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.listener_ready = true,
                    WAKER => {}
                    Token(t) => {
                        if let Some(Some(c)) = self.conns.get_mut(t) {
                            c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                            c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                            c.hung_up |= ev.is_read_closed() && ev.is_write_closed();
                            self.dirty.push(t);
                        }
                    }
                }
            }
            self.collect_done();
            let now = Instant::now();
            if self.listener_ready && self.accept_after.is_none_or(|t| now >= t) {
                self.accept_waiting(now);
            }
            self.drive_dirty();
            if now >= next_sweep {
                self.sweep(now);
                self.drive_dirty();
                next_sweep = now + SWEEP;
            }
        }
    }

    fn drive_dirty(&mut self) {
        loop {
            while let Some(t) = self.dirty.pop() {
                self.drive(t);
            }
            if !std::mem::take(&mut self.budget_freed) {
                return;
            }
            match self.queue.front() {
                Some(&t) => self.dirty.push(t),
                None => return,
            }
        }
    }

    // ---- accepting ------------------------------------------------------------------

    fn accept_waiting(&mut self, now: Instant) {
        loop {
            let accepted = self.listener.accept();
            let full = accepted.is_ok()
                && self.open >= self.limits.max_connections
                && !self.evict(now, None);
            match accepted {
                Ok((s, _)) if full => self.refuse(
                    s,
                    now,
                    &format!(
                        "vswitchd is busy: all {} control connections are in use and none \
                         is idle (vswitchd --ctl-max-connections); try again shortly",
                        self.limits.max_connections
                    ),
                ),
                Ok((s, _)) => {
                    self.backoff = BACKOFF_FIRST;
                    self.add(s, now);
                }
                Err(e) => {
                    if !self.accept_failed(&e, now) {
                        return;
                    }
                }
            }
        }
    }

    /// What to do after a failed accept: `true` to accept again now.
    fn accept_failed(&mut self, e: &io::Error, now: Instant) -> bool {
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                self.listener_ready = false;
                return false;
            }
            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => return true,
            _ => {}
        }
        Stats::bump(&self.stats.accept_errors);
        let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        if let Some(held_back) = self.accept_log.allow(now) {
            tracing::warn!(
                error = %e,
                connections = self.open,
                not_logged = held_back,
                "control socket: accept failed; closing idle connections, refusing or \
                 pausing new ones until it works again"
            );
        }
        if out_of_fds {
            if self.evict(now, None) {
                return true;
            }
            if let Some(reserve) = self.reserve.take() {
                drop(reserve);
                let accepted = self.listener.accept().ok();
                let got_one = accepted.is_some();
                if let Some((s, _)) = accepted {
                    // Closed by `refuse`, which gives the descriptor back for the reserve.
                    self.refuse(
                        s,
                        now,
                        "vswitchd is out of file descriptors (see its log and `ulimit -n`); \
                         try again shortly",
                    );
                }
                self.reserve = File::open("/dev/null").ok();
                if got_one && self.reserve.is_some() {
                    return true;
                }
            }
        }
        self.accept_after = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        false
    }

    /// Answer a connection we have no room for with a busy error, and close it.
    fn refuse(&mut self, mut s: UnixStream, now: Instant, why: &str) {
        Stats::bump(&self.stats.refused);
        if let Some(held_back) = self.refuse_log.allow(now) {
            tracing::warn!(
                connections = self.open,
                not_logged = held_back,
                "control socket: refused a connection: {why}"
            );
        }
        let _ = s.write(&error_line(None, code::BUSY, why));
    }

    fn add(&mut self, mut stream: UnixStream, now: Instant) {
        let allowed = match peer_allowed(&stream) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "control connection: no peer credentials");
                return;
            }
        };
        let t = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(t),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "control connection: cannot poll it");
            self.free.push(t);
            return;
        }
        self.generation += 1;
        self.conns[t] = Some(Conn {
            stream,
            generation: self.generation,
            allowed,
            frame: Framer::new(MAX_MESSAGE_BYTES),
            running: 0,
            busy: false,
            out: Vec::new(),
            sent: 0,
            closing: false,
            readable: true,
            writable: true,
            eof: false,
            hung_up: false,
            waiting: false,
            charge: 0,
            last: now,
        });
        self.open += 1;
        Stats::bump(&self.stats.accepted);
        self.stats
            .connections
            .store(self.open as u64, Ordering::Relaxed);
        self.dirty.push(t);
    }

    /// Close the connection quiet longest (other than `keep`), if one has been quiet
    /// for [`EVICTABLE_AFTER`]; with `keep`, only one holding budget.
    fn evict(&mut self, now: Instant, keep: Option<usize>) -> bool {
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(t, c)| Some((t, c.as_ref()?)))
            .filter(|&(t, c)| {
                Some(t) != keep && c.evictable(now) && (keep.is_none() || c.charge > 0)
            })
            .min_by_key(|(_, c)| c.last)
            .map(|(t, _)| t);
        let Some(t) = victim else {
            return false;
        };
        Stats::bump(&self.stats.evicted);
        tracing::debug!(token = t, "control connection closed to make room");
        self.close(t);
        true
    }

    fn close(&mut self, t: usize) {
        let Some(mut c) = self.conns.get_mut(t).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.charged -= c.charge;
        if c.charge > 0 {
            self.budget_freed = true;
        }
        if c.waiting {
            self.queue.retain(|&q| q != t);
            self.budget_freed = true;
        }
        if c.frame.capacity() > LARGE || c.out.capacity() > LARGE {
            self.trim = true;
        }
        self.free.push(t);
        self.open -= 1;
        self.stats
            .connections
            .store(self.open as u64, Ordering::Relaxed);
        self.stats
            .buffered
            .store(self.charged as u64, Ordering::Relaxed);
        // A descriptor is free: accept again now rather than after the pause.
        self.accept_after = None;
    }

    // ---- budget -----------------------------------------------------------------------

    fn recharge(&mut self, t: usize) {
        let Some(Some(c)) = self.conns.get_mut(t) else {
            return;
        };
        let charge = c.held().saturating_sub(FREE_BYTES);
        if charge < c.charge {
            self.budget_freed = true;
        }
        self.charged = self.charged - c.charge + charge;
        c.charge = charge;
        self.stats
            .buffered
            .store(self.charged as u64, Ordering::Relaxed);
    }

    /// How many more bytes connection `t` may hold now.
    fn room(&self, t: usize, c: &Conn) -> usize {
        let others = self.charged - c.charge;
        let budget = if self.may_draw(t) {
            self.limits.buffer_limit.saturating_sub(others)
        } else {
            0
        };
        let line_left = c.frame.line_room();
        (FREE_BYTES + budget)
            .saturating_sub(c.held())
            .min(line_left)
    }

    /// Whether `t` may draw on the budget: no one waits, or it is first in line.
    fn may_draw(&self, t: usize) -> bool {
        self.queue.front().is_none_or(|&q| q == t)
    }

    /// Join or leave the queue for budget.
    fn set_waiting(&mut self, t: usize, waiting: bool) {
        if let Some(Some(c)) = self.conns.get_mut(t)
            && c.waiting != waiting
        {
            c.waiting = waiting;
            if waiting {
                self.queue.push_back(t);
            } else {
                self.queue.retain(|&q| q != t);
                self.budget_freed = true;
            }
        }
    }

    // ---- one connection ---------------------------------------------------------------

    fn drive(&mut self, t: usize) {
        loop {
            let step = self.step(t);
            match step {
                Step::Again => {}
                Step::Wait => return,
                Step::Close => {
                    self.close(t);
                    return;
                }
            }
        }
    }

    /// One thing towards the next answer: send, dispatch a request, or read.
    fn step(&mut self, t: usize) -> Step {
        let now = Instant::now();
        let Some(Some(c)) = self.conns.get_mut(t) else {
            return Step::Wait;
        };
        if c.sent < c.out.len() {
            if !c.writable {
                return Step::Wait;
            }
            return match c.stream.write(&c.out[c.sent..]) {
                Ok(0) => Step::Close,
                Ok(n) => {
                    c.sent += n;
                    c.last = now;
                    Step::Again
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.writable = false;
                    Step::Wait
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Again,
                Err(_) => Step::Close,
            };
        }
        if !c.out.is_empty() {
            if c.out.capacity() > LARGE {
                c.out = Vec::new();
                self.trim = true;
            } else {
                c.out.clear();
            }
            c.sent = 0;
        }
        if c.closing {
            return Step::Close;
        }
        if c.busy {
            return Step::Wait;
        }
        match c.frame.take() {
            Taken::Request(line) => {
                self.set_waiting(t, false);
                return self.dispatch(t, line);
            }
            Taken::TooLong => {
                self.set_waiting(t, false);
                self.too_long(t);
                return Step::Again;
            }
            Taken::Skipping => {
                self.set_waiting(t, false);
                Stats::bump(&self.stats.too_long);
                self.trim = true;
                self.recharge(t);
                return Step::Again;
            }
            Taken::Nothing => {}
        }
        if c.eof {
            return match c.frame.finish() {
                // A last request without its newline is still answered.
                Taken::Request(line) => self.dispatch(t, line),
                Taken::TooLong => {
                    c.out = too_long_line();
                    c.closing = true;
                    Step::Again
                }
                _ => Step::Close,
            };
        }
        if !c.readable {
            return Step::Wait;
        }
        let room = if c.frame.skipping() {
            CHUNK
        } else {
            self.room_of(t)
        };
        if room == 0 {
            if self.conns[t].as_ref().is_some_and(|c| c.hung_up) {
                // What it sent cannot be read whole, and no one would read the answer.
                return Step::Close;
            }
            if self.may_draw(t) && self.evict(now, Some(t)) {
                return Step::Again;
            }
            self.set_waiting(t, true);
            return Step::Wait;
        }
        let Some(Some(c)) = self.conns.get_mut(t) else {
            return Step::Wait;
        };
        let n = room.min(CHUNK);
        match c.stream.read(&mut self.scratch[..n]) {
            Ok(0) => {
                c.eof = true;
                Step::Again
            }
            Ok(n) => {
                c.last = now;
                if c.frame.feed(&self.scratch[..n]) {
                    c.out = too_long_line();
                }
                self.recharge(t);
                Step::Again
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The client stopped sending: it gives up its place in line.
                c.readable = false;
                self.set_waiting(t, false);
                Step::Wait
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Again,
            Err(_) => Step::Close,
        }
    }

    fn room_of(&self, t: usize) -> usize {
        match self.conns.get(t) {
            Some(Some(c)) => self.room(t, c),
            _ => 0,
        }
    }

    fn too_long(&mut self, t: usize) {
        Stats::bump(&self.stats.too_long);
        if let Some(Some(c)) = self.conns.get_mut(t) {
            c.out = too_long_line();
        }
        self.trim = true;
        self.recharge(t);
    }

    /// Hand a request to the pool (or answer a refused peer here).
    fn dispatch(&mut self, t: usize, line: Vec<u8>) -> Step {
        let Some(Some(c)) = self.conns.get_mut(t) else {
            return Step::Wait;
        };
        if !c.allowed {
            let id = serde_json::from_slice::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .and_then(|i| serde_json::from_value::<Id>(i).ok());
            c.out = error_line(
                id,
                code::PERMISSION_DENIED,
                "permission denied: only root (or the user vswitchd runs as) may use this socket",
            );
            c.closing = true;
            return Step::Again;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            self.recharge(t);
            return Step::Again;
        }
        c.busy = true;
        c.running = line.len();
        let generation = c.generation;
        self.recharge(t);
        let refused = self.pool.submit(Job {
            token: t,
            generation,
            line,
        });
        for job in refused {
            self.finish(Done {
                token: job.token,
                generation: job.generation,
                reply: error_line(
                    None,
                    code::INTERNAL_ERROR,
                    "vswitchd cannot start a thread to answer this request; try again",
                ),
            });
        }
        Step::Wait
    }

    fn collect_done(&mut self) {
        while let Ok(d) = self.done.try_recv() {
            self.finish(d);
        }
    }

    fn finish(&mut self, d: Done) {
        let Some(Some(c)) = self.conns.get_mut(d.token) else {
            return;
        };
        if c.generation != d.generation {
            return;
        }
        c.busy = false;
        c.running = 0;
        c.out = d.reply;
        c.sent = 0;
        c.last = Instant::now();
        self.recharge(d.token);
        self.dirty.push(d.token);
    }

    /// Close idle connections, retry those waiting for budget, return freed memory.
    fn sweep(&mut self, now: Instant) {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(t, c)| {
                let c = c.as_ref()?;
                let quiet = !c.busy && !c.waiting;
                (quiet && now.duration_since(c.last) >= self.limits.idle_timeout).then_some(t)
            })
            .collect();
        for t in idle {
            Stats::bump(&self.stats.idle_closed);
            tracing::debug!(token = t, "control connection closed: idle");
            self.close(t);
        }
        if !self.queue.is_empty() {
            self.budget_freed = true;
        }
        if std::mem::take(&mut self.trim) {
            crate::sys::trim_heap();
        }
    }
}

fn too_long_line() -> Vec<u8> {
    error_line(
        None,
        code::INVALID_REQUEST,
        format!("request larger than {MAX_MESSAGE_BYTES} bytes; it was skipped"),
    )
}

#[cfg(test)]
mod tests;
