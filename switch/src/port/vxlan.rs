//! The VXLAN tunnel port (RFC 7348), flow-based: the pipeline picks the far end and the
//! VNI per packet (`tun_dst`, `tun_id`); received packets carry where they came from
//! (`tun_src`, `tun_dst`, `tun_id`) into the flow key.
//!
//! Each worker has its own receiving socket on the VXLAN port (`SO_REUSEPORT`: the kernel
//! spreads the underlay's flows over them) and a few sending sockets on ports the kernel
//! picks; a packet leaves from the one its inner flow hashes to, so the outer UDP source
//! port follows the inner flow (the underlay can spread flows, RFC 7348 §5). The kernel
//! builds the outer IP and UDP headers and their checksums. A TSO super-frame is cut into
//! segments in software and they leave in one `sendmsg` with UDP GSO.
//!
//! An inner IPv4 packet larger than the tunnel carries (the underlay MTU less 50 bytes)
//! with DF set is not sent: the worker answers it with ICMP fragmentation-needed.

use super::{Counters, gro};
use crate::dp::packet::{Packet, TunnelMd};
use crate::sys::udp::{MAX_BATCH, RecvMeta, UdpSocket};
use crate::wire::gso;
use crate::wire::virtio::VirtioNetHdr;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The IANA VXLAN port.
pub const DEFAULT_PORT: u16 = 4789;
/// Outer Ethernet (14), IPv4 (20), UDP (8) and VXLAN (8) headers.
pub const OVERHEAD: usize = 50;
pub const HEADER_LEN: usize = 8;
/// Flags byte: the I flag (a valid VNI follows).
const FLAG_I: u8 = 0x08;
/// Sending sockets per worker (distinct outer source ports).
const TX_SOCKETS: usize = 8;

/// How the tunnel is set up on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The node's underlay address: the tunnel's local end.
    pub local: Ipv4Addr,
    /// The UDP port VXLAN listens and sends to.
    pub port: u16,
    /// The largest inner IPv4 packet sent whole: the underlay MTU less [`OVERHEAD`].
    pub mtu: u16,
    /// Who answers a packet too big for the tunnel (the node's gateway: MAC and IP).
    pub icmp_from: Option<([u8; 6], Ipv4Addr)>,
}

/// A worker's side of the tunnel.
#[derive(Debug)]
pub struct VxlanIo {
    pub config: VxlanConfig,
    rx: UdpSocket,
    tx: Vec<UdpSocket>,
    /// Where segments are gathered before a GSO send, and joined datagrams cut apart.
    run: RefCell<Vec<u8>>,
    /// Whether the kernel joins datagrams for us (UDP GRO).
    gro: bool,
    /// Packets decapsulated but not yet handed to the worker, in order.
    staged: RefCell<VecDeque<Packet>>,
    /// Spent receive buffers, for reuse.
    pool: RefCell<Vec<Packet>>,
    /// Datagrams waiting for one `sendmmsg`, per sending socket.
    queued: RefCell<Vec<TxQueue>>,
}

/// Datagrams for one socket: their bytes end to end, and each one's destination and end.
#[derive(Debug, Default)]
struct TxQueue {
    bytes: Vec<u8>,
    msgs: Vec<(SocketAddrV4, usize)>,
}

/// Received datagrams at a time when the kernel joins them (each may hold 64).
const GRO_BATCH: usize = 16;
/// Spent receive buffers kept for reuse (64 KiB each).
const POOL_MAX: usize = 64;

/// The header of a VXLAN datagram of `len` bytes from `src`: its tunnel metadata, or
/// `None` when it is no VXLAN packet (too short for a header and a frame, no I flag).
fn decode(hdr: &[u8; HEADER_LEN], len: usize, src: u32, local: u32) -> Option<TunnelMd> {
    (len >= HEADER_LEN + 14 && hdr[0] & FLAG_I != 0).then(|| TunnelMd {
        id: u64::from(u32::from_be_bytes([0, hdr[4], hdr[5], hdr[6]])),
        src,
        dst: local,
    })
}

/// Decapsulated packets on their way to the worker: each joins the run of the one before
/// when it follows on ([`gro::Run`]), or is staged on its own: in a full-size buffer when
/// it may head a run (later segments are appended to it), else in one of its own size.
struct Stage<'a> {
    staged: &'a mut VecDeque<Packet>,
    pool: &'a mut Vec<Packet>,
    run: Option<gro::Run>,
    counters: &'a Counters,
}

impl Stage<'_> {
    /// Offer a frame to the open run; whether it joined.
    fn joined(&mut self, frame: &[u8], tun: TunnelMd) -> bool {
        self.counters.rx(frame.len());
        match (&mut self.run, self.staged.back_mut()) {
            (Some(run), Some(head)) => run.offer(head, frame, tun),
            _ => false,
        }
    }

    /// A packet received into a batch slot (decapsulated in place).
    fn push(&mut self, pkt: &mut Packet) {
        let tun = pkt.tun;
        if self.joined(pkt.data(), tun) {
            return;
        }
        if gro::Run::may_head(pkt.data()) {
            // Its buffer goes to the stage, a pooled one takes its slot.
            let spare = self.spare();
            let pkt = std::mem::replace(pkt, spare);
            self.start(pkt);
        } else {
            let mut copy = Packet::from_frame(pkt.data(), 0);
            copy.tun = tun;
            self.start(copy);
        }
    }

    /// A frame cut from joined datagrams.
    fn push_frame(&mut self, frame: &[u8], tun: TunnelMd) {
        if self.joined(frame, tun) {
            return;
        }
        let mut pkt = if gro::Run::may_head(frame) {
            let mut p = self.spare();
            p.set_frame(frame);
            p
        } else {
            Packet::from_frame(frame, 0)
        };
        pkt.tun = tun;
        self.start(pkt);
    }

    /// A full-size buffer from the pool, or a new one.
    fn spare(&mut self) -> Packet {
        self.pool
            .pop()
            .unwrap_or_else(|| Packet::with_capacity(super::MAX_FRAME))
    }

    fn start(&mut self, pkt: Packet) {
        self.close();
        self.run = gro::Run::start(&pkt);
        self.staged.push_back(pkt);
    }

    /// Finish the open run.
    fn close(&mut self) {
        if let (Some(run), Some(head)) = (self.run.take(), self.staged.back_mut()) {
            run.finish(head);
        }
    }
}

/// What became of a packet sent to the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    Sent,
    Dropped,
    /// An IPv4 packet with DF set and larger than the tunnel's MTU (given): answer it.
    TooBig(u16),
}

impl VxlanIo {
    /// Open one worker's sockets. The sending ones are bound to `tx_ports` (those of the
    /// first worker, shared with `SO_REUSEPORT`: a flow leaves from the same outer source
    /// port whichever worker sends it), or to ports the kernel picks when empty.
    pub fn open(config: &VxlanConfig, tx_ports: &[u16]) -> io::Result<VxlanIo> {
        let rx = UdpSocket::bind(SocketAddrV4::new(config.local, config.port), true)?;
        let tx = (0..TX_SOCKETS)
            .map(|i| {
                let port = tx_ports.get(i).copied().unwrap_or(0);
                UdpSocket::bind(SocketAddrV4::new(config.local, port), true)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let gro = rx.enable_gro();
        Ok(VxlanIo {
            config: config.clone(),
            rx,
            tx,
            run: RefCell::new(Vec::new()),
            gro,
            staged: RefCell::default(),
            pool: RefCell::default(),
            queued: RefCell::new((0..TX_SOCKETS).map(|_| TxQueue::default()).collect()),
        })
    }

    /// The outer source ports this worker sends from.
    pub fn tx_ports(&self) -> io::Result<Vec<u16>> {
        self.tx
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect()
    }

    /// The receiving socket, for the worker's poll.
    pub fn rx_socket(&self) -> &UdpSocket {
        &self.rx
    }

    /// Receive datagrams and decapsulate them, in order, into `batch`; datagrams that are
    /// not VXLAN (too short, no I flag) are dropped and counted (`rx_dropped`). Runs of
    /// TCP segments of one connection leave as one TSO frame ([`gro`]). What does not
    /// fit in `batch` waits for the next call. Returns how many packets `batch` now starts
    /// with, and whether the socket ran dry with nothing left waiting.
    pub fn receive(&self, batch: &mut [Packet], counters: &Counters) -> (usize, bool) {
        let mut staged = self.staged.borrow_mut();
        let mut pool = self.pool.borrow_mut();
        let mut dry = false;
        if staged.is_empty() {
            // With UDP GRO one receive may hold 64 datagrams: take fewer at a time.
            let most = if self.gro { GRO_BATCH } else { MAX_BATCH };
            let n = batch.len().min(most);
            let mut meta = [RecvMeta::default(); MAX_BATCH];
            let got = {
                let mut bufs: Vec<&mut [u8]> = batch[..n]
                    .iter_mut()
                    .map(|p| p.receive_buffer_with_prefix(HEADER_LEN, super::MAX_FRAME))
                    .collect();
                match self.rx.recv_batch(&mut bufs, &mut meta[..n]) {
                    Ok(got) => got,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (0, true),
                    Err(_) => {
                        counters.rx_error();
                        return (0, true);
                    }
                }
            };
            dry = got < n;
            let mut stage = Stage {
                staged: &mut staged,
                pool: &mut pool,
                run: None,
                counters,
            };
            let local = u32::from(self.config.local);
            for (i, m) in meta.iter().enumerate().take(got) {
                let src = m.src.map_or(0, |s| u32::from(*s.ip()));
                if m.truncated {
                    counters.rx_drop();
                    continue;
                }
                let pkt = &mut batch[i];
                pkt.set_len(m.len.saturating_sub(HEADER_LEN));
                match m.segment.map(usize::from).filter(|g| *g < m.len) {
                    None => {
                        let mut hdr = [0u8; HEADER_LEN];
                        hdr.copy_from_slice(pkt.prefix(HEADER_LEN));
                        match decode(&hdr, m.len, src, local) {
                            Some(tun) => {
                                pkt.tun = tun;
                                stage.push(pkt);
                            }
                            None => counters.rx_drop(),
                        }
                    }
                    Some(seg) => {
                        // Several datagrams the kernel joined: cut them apart.
                        let mut raw = self.run.borrow_mut();
                        raw.clear();
                        raw.extend_from_slice(pkt.prefix(HEADER_LEN));
                        raw.extend_from_slice(pkt.data());
                        for d in raw.chunks(seg) {
                            let mut hdr = [0u8; HEADER_LEN];
                            if let Some(h) = d.get(..HEADER_LEN) {
                                hdr.copy_from_slice(h);
                            }
                            match decode(&hdr, d.len(), src, local) {
                                Some(tun) => stage.push_frame(&d[HEADER_LEN..], tun),
                                None => counters.rx_drop(),
                            }
                        }
                    }
                }
            }
            stage.close();
        }
        // Hand over: a staged packet with a full-size buffer takes the slot's place (the
        // slot's buffer goes to the pool); a small one is copied into the slot's buffer,
        // which keeps every slot ready for the next receive.
        let k = staged.len().min(batch.len());
        for slot in batch.iter_mut().take(k) {
            let Some(mut p) = staged.pop_front() else {
                break;
            };
            if p.capacity() >= super::MAX_FRAME {
                std::mem::swap(slot, &mut p);
                if pool.len() < POOL_MAX {
                    pool.push(p);
                }
            } else {
                slot.set_frame(p.data());
                slot.tun = p.tun;
                slot.vnet = p.vnet;
            }
        }
        (k, dry && staged.is_empty())
    }

    /// Encapsulate `pkt` and send it to its `tun_dst`.
    pub fn send(&self, pkt: &Packet, scratch: &mut Vec<u8>, counters: &Counters) -> TxOutcome {
        let dst = pkt.tun.dst;
        if dst == 0 {
            counters.tx_drop();
            return TxOutcome::Dropped;
        }
        let frame = pkt.data();
        let vni = (pkt.tun.id as u32) & 0x00ff_ffff;
        let v = vni.to_be_bytes();
        let header = [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0];
        let to = SocketAddrV4::new(Ipv4Addr::from(dst), self.config.port);
        let idx = flow_hash(frame) as usize % self.tx.len();
        let sock = &self.tx[idx];
        let mtu = usize::from(self.config.mtu);
        let gso = pkt.vnet.gso_kind() != VirtioNetHdr::GSO_NONE;
        let too_big = |ip_len: usize| ip_len > mtu && ipv4_dont_fragment(frame);
        if !gso && too_big(frame.len().saturating_sub(14)) {
            counters.tx_drop();
            return TxOutcome::TooBig(self.config.mtu);
        }
        let sent = if !gso && !pkt.vnet.needs_csum() {
            // Whole: queued, and sent with the batch's others in one `sendmmsg`.
            let mut queued = self.queued.borrow_mut();
            let q = &mut queued[idx];
            q.bytes.extend_from_slice(&header);
            q.bytes.extend_from_slice(frame);
            q.msgs.push((to, q.bytes.len()));
            if q.msgs.len() >= MAX_BATCH {
                flush_queue(sock, q, counters);
            }
            return TxOutcome::Sent;
        } else {
            // What the flow queued before goes first.
            flush_queue(sock, &mut self.queued.borrow_mut()[idx], counters);
            // Checksums completed and super-frames cut here; the segments go in one call.
            let mut run = self.run.borrow_mut();
            run.clear();
            let mut seg_len = 0;
            let cut = gso::segment_into(frame, &pkt.vnet, scratch, |seg| {
                if seg_len == 0 {
                    seg_len = HEADER_LEN + seg.len();
                }
                run.extend_from_slice(&header);
                run.extend_from_slice(seg);
            });
            // A segment is as large as the first (the header length a guest gives is
            // not to be trusted): too large for the tunnel, the sender hears of it.
            if gso && too_big(seg_len.saturating_sub(HEADER_LEN + 14)) {
                counters.tx_drop();
                return TxOutcome::TooBig(self.config.mtu);
            }
            match cut {
                Ok(n) => sock.send(to, &[&run], Some(seg_len)).map(|()| n),
                Err(_) => Err(io::Error::from(io::ErrorKind::InvalidData)),
            }
        };
        match sent {
            Ok(n) => {
                for _ in 0..n {
                    counters.tx(frame.len() / n.max(1));
                }
                TxOutcome::Sent
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                counters.tx_drop();
                TxOutcome::Dropped
            }
            Err(_) => {
                counters.tx_error();
                TxOutcome::Dropped
            }
        }
    }
}

impl VxlanIo {
    /// Send what is queued (at the end of each batch).
    pub fn flush(&self, counters: &Counters) {
        for (sock, q) in self.tx.iter().zip(self.queued.borrow_mut().iter_mut()) {
            flush_queue(sock, q, counters);
        }
    }
}

fn flush_queue(sock: &UdpSocket, q: &mut TxQueue, counters: &Counters) {
    let (mut i, mut start) = (0, 0);
    while i < q.msgs.len() {
        match sock.send_batch(&q.bytes, &q.msgs[i..], start) {
            Ok(sent) if sent > 0 => {
                for &(_, end) in &q.msgs[i..i + sent] {
                    counters.tx(end - start - HEADER_LEN);
                    start = end;
                }
                i += sent;
            }
            Err(e)
                if e.kind() != io::ErrorKind::WouldBlock
                    && e.raw_os_error() != Some(libc::ENOBUFS) =>
            {
                // This datagram's own trouble (its node unreachable, a firewall): it
                // alone is lost; the others go on.
                counters.tx_error();
                start = q.msgs[i].1;
                i += 1;
            }
            _ => {
                // The socket's buffer is full: the rest is dropped, as a full queue drops.
                for _ in i..q.msgs.len() {
                    counters.tx_drop();
                }
                break;
            }
        }
    }
    q.bytes.clear();
    q.msgs.clear();
}

/// Whether `frame` is IPv4 with DF set (after at most one VLAN tag).
fn ipv4_dont_fragment(frame: &[u8]) -> bool {
    let l3 = match frame.get(12..14) {
        Some([0x81, 0x00]) => 18,
        _ => 14,
    };
    frame.get(l3 - 2..l3) == Some(&[0x08, 0x00]) && frame.get(l3 + 6).is_some_and(|b| b & 0x40 != 0)
}

/// A hash of the inner flow (IPv4 addresses, protocol and ports; else the MACs), to pick
/// the outer source port: the same flow always leaves from the same one.
fn flow_hash(frame: &[u8]) -> u32 {
    let fnv = |h: u32, bytes: &[u8]| {
        bytes
            .iter()
            .fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
    };
    let mut h = 0x811c_9dc5;
    if frame.get(12..14) == Some(&[0x08, 0x00]) && frame.len() >= 34 {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        h = fnv(h, &frame[23..24]);
        h = fnv(h, &frame[26..34]);
        // Ports only where they are: not in a later fragment (all of a datagram's
        // fragments must leave from one socket, in order).
        let fragment = u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0;
        if !fragment && let Some(ports) = frame.get(14 + ihl..14 + ihl + 4) {
            h = fnv(h, ports);
        }
    } else {
        h = fnv(h, frame.get(..12).unwrap_or(frame));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(df: bool, len: usize, sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&[0x0a, 0x58, 10, 244, 2, 1]);
        f[6..12].copy_from_slice(&[0x0a, 0x58, 10, 244, 1, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        if df {
            f[20] = 0x40;
        }
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 244, 1, 2]);
        f[30..34].copy_from_slice(&[10, 244, 2, 3]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f
    }

    fn io() -> (VxlanIo, UdpSocket) {
        let far = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap();
        let config = VxlanConfig {
            local: Ipv4Addr::LOCALHOST,
            port: far.local_addr().unwrap().port(),
            mtu: 1450,
            icmp_from: None,
        };
        // The far end listens on the port the tunnel sends to; our receiving socket shares
        // it (reuse_port is not set on `far`, so bind ours elsewhere for the test).
        let io = VxlanIo {
            config: config.clone(),
            rx: UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), true).unwrap(),
            tx: (0..TX_SOCKETS)
                .map(|_| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap())
                .collect(),
            run: RefCell::new(Vec::new()),
            gro: false,
            staged: RefCell::default(),
            pool: RefCell::default(),
            queued: RefCell::new((0..TX_SOCKETS).map(|_| TxQueue::default()).collect()),
        };
        (io, far)
    }

    fn recv(s: &UdpSocket) -> Vec<(Vec<u8>, SocketAddrV4)> {
        let mut out = Vec::new();
        for _ in 0..50 {
            let mut store = vec![vec![0u8; 70_000]; 8];
            let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut meta = [RecvMeta::default(); 8];
            if let Ok(n) = s.recv_batch(&mut bufs, &mut meta) {
                for (b, m) in bufs.iter().zip(&meta).take(n) {
                    out.push((b[..m.len].to_vec(), m.src.unwrap()));
                }
            } else if !out.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        out
    }

    #[test]
    fn encapsulates_with_the_vni_and_a_per_flow_source_port() {
        let (io, far) = io();
        let c = Counters::default();
        let mut sources = std::collections::HashSet::new();
        for sport in 0..16u16 {
            let mut p = Packet::from_frame(&frame(true, 100, 1000 + sport), 1);
            p.tun = TunnelMd {
                id: 0x123456,
                src: 0,
                dst: u32::from(Ipv4Addr::LOCALHOST),
            };
            assert_eq!(io.send(&p, &mut Vec::new(), &c), TxOutcome::Sent);
            // The same flow again leaves from the same port.
            assert_eq!(io.send(&p, &mut Vec::new(), &c), TxOutcome::Sent);
        }
        io.flush(&c);
        let got = recv(&far);
        assert_eq!(got.len(), 32);
        for pair in got.chunks(2) {
            let (d, src) = &pair[0];
            assert_eq!(&d[..8], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
            assert_eq!(d.len(), 108);
            assert_eq!(pair[1].1, *src);
            sources.insert(src.port());
        }
        assert!(
            sources.len() > 3,
            "16 flows from {} source ports",
            sources.len()
        );
    }

    #[test]
    fn too_big_with_df_is_refused_and_without_df_sent() {
        let (io, far) = io();
        let c = Counters::default();
        let mut p = Packet::from_frame(&frame(true, 1500 + 14, 7), 1);
        p.tun.dst = u32::from(Ipv4Addr::LOCALHOST);
        assert_eq!(io.send(&p, &mut Vec::new(), &c), TxOutcome::TooBig(1450));
        let mut p = Packet::from_frame(&frame(false, 1500 + 14, 7), 1);
        p.tun.dst = u32::from(Ipv4Addr::LOCALHOST);
        assert_eq!(io.send(&p, &mut Vec::new(), &c), TxOutcome::Sent);
        let p = Packet::from_frame(&frame(true, 100, 7), 1);
        assert_eq!(
            io.send(&p, &mut Vec::new(), &c),
            TxOutcome::Dropped,
            "no tun_dst"
        );
        io.flush(&c);
        assert_eq!(recv(&far).len(), 1);
        assert_eq!(c.tx_packets.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn joined_datagrams_are_cut_apart_and_a_tcp_run_leaves_as_one_frame() {
        let (mut io, _far) = io();
        io.gro = io.rx.enable_gro();
        let to = io.rx.local_addr().unwrap();
        let tx = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap();
        let data = [9u8; 3000];
        let ack = 0x10;
        let header = [0x08, 0, 0, 0, 0, 0, 1, 0];
        // Three segments of one connection in one GSO send (the kernel may hand them over
        // joined), then one datagram without the I flag.
        let mut run = Vec::new();
        for (i, chunk) in data.chunks(1000).enumerate() {
            run.extend_from_slice(&header);
            run.extend_from_slice(&gro::tests::segment(1000 * i as u32, chunk, ack));
        }
        let seg = run.len() / 3;
        tx.send(to, &[&run], Some(seg)).unwrap();
        let bad = [
            [0u8; 8].as_slice(),
            &gro::tests::segment(5000, &data[..100], ack),
        ]
        .concat();
        tx.send(to, &[&bad], None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let c = Counters::default();
        let mut batch: Vec<Packet> = (0..8).map(|_| Packet::default()).collect();
        let (n, _) = io.receive(&mut batch, &c);
        assert_eq!(n, 1, "one TSO frame");
        let p = &batch[0];
        assert_eq!(p.vnet.gso_type, VirtioNetHdr::GSO_TCPV4);
        assert_eq!(p.vnet.gso_size, 1000);
        assert_eq!(p.len(), seg - HEADER_LEN + 2000);
        assert_eq!(p.tun.id, 1);
        assert_eq!(c.rx_dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(c.rx_packets.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn receives_valid_datagrams_and_drops_the_rest() {
        let (io, _far) = io();
        let to = io.rx.local_addr().unwrap();
        let tx = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), false).unwrap();
        let inner = frame(true, 100, 9);
        tx.send(to, &[&[0x08, 0, 0, 0, 0, 0, 1, 0], &inner], None)
            .unwrap();
        tx.send(to, &[&[0x00, 0, 0, 0, 0, 0, 1, 0], &inner], None)
            .unwrap(); // no I flag
        tx.send(to, &[&[0x08, 0, 0, 0]], None).unwrap(); // short
        tx.send(
            to,
            &[&[0x08, 0xff, 0xff, 0xff, 0, 0, 2, 0xff], &inner],
            None,
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let c = Counters::default();
        let mut batch: Vec<Packet> = (0..8).map(|_| Packet::with_capacity(2048)).collect();
        let (n, _) = io.receive(&mut batch, &c);
        assert_eq!(n, 2);
        assert_eq!(batch[0].data(), &inner[..]);
        assert_eq!(batch[0].tun.id, 1);
        assert_eq!(batch[0].tun.src, u32::from(Ipv4Addr::LOCALHOST));
        assert_eq!(batch[1].tun.id, 2, "reserved bits are ignored on receipt");
        assert_eq!(c.rx_dropped.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
