//! A worker thread: polls its queue of every port, runs batches through its fast path,
//! writes the outputs.

use crate::ct::CtWorker;
use crate::dp::action::ControllerReason;
use crate::dp::packet::Packet;
use crate::dp::{BATCH, CacheDump, DpStats, FastPath, FastPathConfig, Sink};
use crate::ofproto::mac::MacTable;
use crate::ofproto::{Pipeline, now_ms};
use crate::port::vxlan::TxOutcome;
use crate::port::{MAX_FRAME, PortIo, RxEnd, WorkerPort};
use crate::wire::EthernetAddress;
use crate::wire::build;
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use vswitch_proto::flowmod::FlowSpec;

const WAKE: Token = Token(usize::MAX);

/// A worker's ports, indexed by port number (numbers are small and dense, and the
/// lookup happens for every output).
#[derive(Debug, Default)]
struct PortTable {
    slots: Vec<Option<WorkerPort>>,
    /// The ports that queue output until the end of a batch (tunnels).
    queuing: Vec<u32>,
}

impl PortTable {
    #[inline]
    fn get(&self, no: u32) -> Option<&WorkerPort> {
        self.slots.get(no as usize).and_then(Option::as_ref)
    }

    fn insert(&mut self, p: WorkerPort) {
        let i = p.no as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        if matches!(p.io, PortIo::Vxlan(_)) {
            self.queuing.push(p.no);
        }
        self.slots[i] = Some(p);
    }

    fn remove(&mut self, no: u32) -> Option<WorkerPort> {
        self.queuing.retain(|q| *q != no);
        self.slots.get_mut(no as usize).and_then(Option::take)
    }

    /// Send what ports queued during a batch.
    fn flush(&self, worker: usize) {
        for &no in &self.queuing {
            if let Some(p) = self.get(no) {
                p.flush(worker);
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &WorkerPort> {
        self.slots.iter().flatten()
    }
}

/// What the control thread asks of a worker.
#[derive(Debug)]
pub enum Msg {
    AddPort(WorkerPort),
    /// Stop using a port; answered when its queue is no longer polled or written.
    DelPort {
        no: u32,
        done: Sender<()>,
    },
    DumpCache(Sender<CacheDump>),
    Stats(Sender<DpStats>),
    /// Memory ports have frames waiting.
    Poke,
    Shutdown,
}

/// The control thread's end of a worker.
#[derive(Debug)]
pub struct WorkerHandle {
    pub id: usize,
    tx: Sender<Msg>,
    waker: Arc<Waker>,
    join: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn send(&self, m: Msg) {
        // A worker that has exited leaves nothing to tell; the send error is moot.
        let _ = self.tx.send(m);
        let _ = self.waker.wake();
    }

    /// Ask and wait (up to `timeout`) for an answer.
    pub fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Msg, timeout: Duration) -> Option<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx));
        rx.recv_timeout(timeout).ok()
    }

    pub fn stop(&mut self) {
        self.send(Msg::Shutdown);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a worker keeps polling without sleeping after its last packet. A packet that
/// arrives while it polls is forwarded at once; one that arrives while it sleeps waits for
/// the scheduler to wake the thread, which on a virtual machine is tens of microseconds.
/// Polling costs CPU right after traffic, which on a small node is the CPU its Pods need:
/// measured on 2 vCPUs (BENCHMARKS.md), 50 µs cost 5–8 % of TCP throughput against 10 µs,
/// with round trips the same within noise.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(10);

/// Start worker `id`.
pub fn spawn(
    id: usize,
    pipeline: Arc<ArcSwap<Pipeline>>,
    mac: Arc<MacTable>,
    learn: Sender<Upcall>,
    busy_poll: Duration,
    ct: CtWorker,
) -> io::Result<WorkerHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let (tx, rx) = crossbeam_channel::unbounded();
    let fp = FastPath::with_conntrack(pipeline, mac, FastPathConfig::default(), ct);
    let join = std::thread::Builder::new()
        .name(format!("vswitch-worker{id}"))
        .spawn(move || {
            let mut w = Worker {
                id,
                poll,
                rx,
                fp,
                ports: PortTable::default(),
                batch: (0..BATCH)
                    .map(|_| Packet::with_capacity(MAX_FRAME))
                    .collect(),
                scratch: Vec::new(),
                learned: Vec::new(),
                denied: Vec::new(),
                denied_limit: IcmpLimit::default(),
                learn,
                controller_packets: 0,
                icmp: IcmpLimit::default(),
                busy_poll,
            };
            w.run();
        })?;
    Ok(WorkerHandle {
        id,
        tx,
        waker,
        join: Some(join),
    })
}

/// What a worker hands the daemon between batches.
#[derive(Debug)]
pub enum Upcall {
    /// A `learn` action asked for this flow.
    Learn(Arc<FlowSpec>),
    /// NetworkPolicy refused a new connection, to be logged (audit logging on).
    Denied(Denied),
}

/// A new connection NetworkPolicy refused: the isolated Pod's port and direction, and
/// the packet's addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    pub ingress: bool,
    pub port: u32,
    pub proto: u8,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// When, in milliseconds since the epoch.
    pub at_ms: u64,
}

/// Denied connections a worker reports, at most [`DENIED_PER_SECOND`] (more are
/// counted, not logged: a scan must not flood the log).
const DENIED_PER_SECOND: u32 = 100;

struct Worker {
    id: usize,
    poll: Poll,
    rx: Receiver<Msg>,
    fp: FastPath<CtWorker>,
    ports: PortTable,
    batch: Vec<Packet>,
    scratch: Vec<u8>,
    learned: Vec<Arc<FlowSpec>>,
    denied: Vec<Denied>,
    denied_limit: IcmpLimit,
    learn: Sender<Upcall>,
    controller_packets: u64,
    busy_poll: Duration,
    icmp: IcmpLimit,
}

/// ICMP errors a worker sends itself, at most [`ICMP_PER_SECOND`] (Linux limits its own
/// the same way, `net.ipv4.icmp_msgs_per_sec`).
#[derive(Debug, Default)]
struct IcmpLimit {
    second: u64,
    sent: u32,
}

const ICMP_PER_SECOND: u32 = 1000;

impl IcmpLimit {
    fn allow(&mut self, now_ms: u64) -> bool {
        self.allow_n(now_ms, ICMP_PER_SECOND)
    }

    /// Whether one more may go this second, at most `per_second`.
    fn allow_n(&mut self, now_ms: u64, per_second: u32) -> bool {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.sent = 0;
        }
        self.sent += 1;
        self.sent <= per_second
    }
}

/// A denied packet's addresses and ports, read from its headers.
fn denied(pkt: &Packet, ingress: bool, port: u32, now: u64) -> Option<Denied> {
    use vswitch_proto::field::ethertype;
    let mut key = vswitch_proto::flow::Flow::ZERO;
    let mut layers = crate::flow::Layers::default();
    crate::flow::extract(pkt.data(), &mut key, &mut layers).ok()?;
    let (src, dst) = match key.dl_type() {
        ethertype::IPV4 => (
            std::net::Ipv4Addr::from(key.nw_src()).into(),
            std::net::Ipv4Addr::from(key.nw_dst()).into(),
        ),
        ethertype::IPV6 => (
            std::net::Ipv6Addr::from(key.ipv6_src()).into(),
            std::net::Ipv6Addr::from(key.ipv6_dst()).into(),
        ),
        _ => return None,
    };
    Some(Denied {
        ingress,
        port,
        proto: key.nw_proto(),
        src,
        dst,
        sport: key.tp_src(),
        dport: key.tp_dst(),
        // The log's time (`now` is the worker's monotonic clock).
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(now, |d| d.as_millis() as u64),
    })
}

/// Where the fast path's outputs go: straight to this worker's queue of each port.
struct Out<'a> {
    worker: usize,
    ports: &'a PortTable,
    scratch: &'a mut Vec<u8>,
    learned: &'a mut Vec<Arc<FlowSpec>>,
    denied: &'a mut Vec<Denied>,
    denied_limit: &'a mut IcmpLimit,
    controller_packets: &'a mut u64,
    icmp: &'a mut IcmpLimit,
    now: u64,
}

impl Sink for Out<'_> {
    fn output(&mut self, port: u32, pkt: &Packet) {
        let Some(p) = self.ports.get(port) else {
            return;
        };
        if let TxOutcome::TooBig(mtu) = p.send(self.worker, pkt, self.scratch) {
            self.too_big(p, pkt, mtu);
        }
    }

    fn controller(&mut self, pkt: &Packet, reason: ControllerReason) {
        *self.controller_packets += 1;
        if let ControllerReason::PolicyDenied { ingress, port } = reason
            && self.denied_limit.allow_n(self.now, DENIED_PER_SECOND)
            && let Some(d) = denied(pkt, ingress, port, self.now)
        {
            self.denied.push(d);
        }
    }

    fn learn(&mut self, flow: &Arc<FlowSpec>) {
        // Every packet of a cached flow with `learn` asks again; one request per flow per
        // batch is enough to keep the learned flow fresh.
        if !self.learned.iter().any(|l| Arc::ptr_eq(l, flow)) {
            self.learned.push(flow.clone());
        }
    }
}

/// The descriptor a worker polls for a port's input (memory ports are poked instead).
fn poll_fd(io: &PortIo) -> Option<std::os::fd::RawFd> {
    match io {
        PortIo::Tap(fd) => Some(fd.as_raw_fd()),
        PortIo::Vxlan(v) => Some(v.rx_socket().as_fd().as_raw_fd()),
        PortIo::Memory(_) => None,
    }
}

impl Out<'_> {
    /// A packet too big for the tunnel with DF set: ICMP fragmentation-needed with the
    /// tunnel's MTU, from the node's gateway, back out of the port it came in on
    /// (RFC 1191). Nothing is sent for what must not be answered (ICMP errors, broadcast).
    fn too_big(&mut self, tunnel: &WorkerPort, pkt: &Packet, mtu: u16) {
        let PortIo::Vxlan(v) = &tunnel.io else {
            return;
        };
        let Some((mac, ip)) = v.config.icmp_from else {
            return;
        };
        let Some(back) = self.ports.get(pkt.in_port) else {
            return;
        };
        if !self.icmp.allow(self.now) {
            return;
        }
        let mut reply = Vec::new();
        if build::icmpv4_unreachable(
            pkt.data(),
            4,
            EthernetAddress(mac),
            ip,
            Some(mtu),
            &mut reply,
        )
        .is_ok()
            && reply.len() >= 34
        {
            // The pipeline rewrote the packet's MACs on its way to the tunnel; the sender's
            // MAC is the one the switch gives every address it owns (`0a:58:` and the IP).
            let src = [reply[30], reply[31], reply[32], reply[33]];
            reply[..6].copy_from_slice(&[0x0a, 0x58, src[0], src[1], src[2], src[3]]);
            back.send(self.worker, &Packet::from_frame(&reply, 0), self.scratch);
        }
    }
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut ready: Vec<u32> = Vec::new();
        let mut last_busy: Option<std::time::Instant> = None;
        loop {
            let polling = last_busy.is_some_and(|t| t.elapsed() < self.busy_poll);
            let timeout = if polling {
                Duration::ZERO
            } else {
                Duration::from_millis(500)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(worker = self.id, error = %e, "poll failed; worker stops");
                return;
            }
            ready.clear();
            let mut woken = false;
            for ev in events.iter() {
                if ev.token() == WAKE {
                    woken = true;
                } else {
                    ready.push(ev.token().0 as u32);
                }
            }
            if woken && !self.handle_messages() {
                return;
            }
            let now = now_ms();
            if !ready.is_empty() {
                last_busy = Some(std::time::Instant::now());
            }
            for &no in &ready {
                self.drain(no, now);
            }
            if woken {
                let memory: Vec<u32> = self
                    .ports
                    .values()
                    .filter(|p| matches!(p.io, PortIo::Memory(_)))
                    .map(|p| p.no)
                    .collect();
                for no in memory {
                    self.drain(no, now);
                }
            }
            self.fp.maintain(now);
            for spec in self.learned.drain(..) {
                let _ = self.learn.send(Upcall::Learn(spec));
            }
            for d in self.denied.drain(..) {
                let _ = self.learn.send(Upcall::Denied(d));
            }
        }
    }

    /// Returns false when the worker must stop.
    fn handle_messages(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::AddPort(p)) => {
                    if let Some(raw) = poll_fd(&p.io)
                        && let Err(e) = self.poll.registry().register(
                            &mut SourceFd(&raw),
                            Token(p.no as usize),
                            Interest::READABLE,
                        )
                    {
                        tracing::error!(worker = self.id, port = p.no, error = %e, "cannot poll port");
                    }
                    self.ports.insert(p);
                }
                Ok(Msg::DelPort { no, done }) => {
                    if let Some(p) = self.ports.remove(no)
                        && let Some(raw) = poll_fd(&p.io)
                    {
                        let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
                    }
                    let _ = done.send(());
                }
                Ok(Msg::DumpCache(reply)) => {
                    let _ = reply.send(self.fp.dump());
                }
                Ok(Msg::Stats(reply)) => {
                    let _ = reply.send(self.fp.stats().clone());
                }
                Ok(Msg::Poke) => {}
                Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// Read a port until it is empty, a batch at a time (mio is edge-triggered: anything
    /// left unread would not be announced again).
    fn drain(&mut self, no: u32, now: u64) {
        let Worker {
            id,
            fp,
            ports,
            batch,
            scratch,
            learned,
            denied,
            denied_limit,
            controller_packets,
            icmp,
            ..
        } = self;
        let Some(port) = ports.get(no) else {
            return;
        };
        loop {
            let (n, end) = port.receive(*id, batch);
            if n > 0 {
                let mut out = Out {
                    worker: *id,
                    ports,
                    scratch,
                    learned,
                    denied,
                    denied_limit,
                    controller_packets,
                    icmp,
                    now,
                };
                fp.process(&mut batch[..n], now, &mut out);
                ports.flush(*id);
            }
            if matches!(end, RxEnd::Empty) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_errors_are_limited_per_second() {
        let mut l = IcmpLimit::default();
        let sent = (0..2000).filter(|_| l.allow(5_000)).count();
        assert_eq!(sent, ICMP_PER_SECOND as usize);
        assert!(l.allow(6_000), "a new second, a new allowance");
    }
}
