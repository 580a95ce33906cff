//! Ports as the workers use them: receive a batch, send a packet, count.
//!
//! A TAP port has one queue per worker (`IFF_MULTI_QUEUE`); worker `i` reads and writes
//! queue `i` of every TAP, so no two threads share a file descriptor and no lock is taken
//! per packet. An in-memory port (for tests) is a pair of queues behind a mutex, served by
//! worker 0.
//!
//! Offloads: frames read from a TAP carry a virtio-net header that may announce a partial
//! checksum or a TSO super-frame. A TAP takes such frames back as they are, so TAP to TAP
//! they travel whole. A port that takes no offloads gets the checksum completed and the
//! super-frame cut into segments in software ([`crate::wire::gso`]).

pub mod gro;
mod memory;
pub mod vxlan;

pub use memory::MemoryPort;

use crate::dp::packet::{HEADROOM, Packet};
use crate::sys::tap::{VNET_HDR_LEN, read_frame, write_frame};
use crate::wire::gso;
use crate::wire::virtio::VirtioNetHdr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest frame read from a TAP: a 64 KiB TSO super-frame plus Ethernet and VLAN headers.
pub const MAX_FRAME: usize = 65_536 + 64;

/// Counters of one port on one worker. Each worker writes only its own, so updates are a
/// load and a store; readers sum over workers.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Counters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub tx_errors: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

impl Counters {
    #[inline]
    pub fn rx(&self, bytes: usize) {
        bump(&self.rx_packets, 1);
        bump(&self.rx_bytes, bytes as u64);
    }

    #[inline]
    pub fn tx(&self, bytes: usize) {
        bump(&self.tx_packets, 1);
        bump(&self.tx_bytes, bytes as u64);
    }

    #[inline]
    pub fn tx_drop(&self) {
        bump(&self.tx_dropped, 1);
    }

    #[inline]
    pub fn tx_error(&self) {
        bump(&self.tx_errors, 1);
    }

    #[inline]
    pub fn rx_drop(&self) {
        bump(&self.rx_dropped, 1);
    }

    #[inline]
    pub fn rx_error(&self) {
        bump(&self.rx_errors, 1);
    }
}

/// All workers' counters of one port.
#[derive(Debug)]
pub struct PortStats {
    per_worker: Box<[Counters]>,
}

/// Sums of a port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
}

impl PortStats {
    pub fn new(workers: usize) -> Arc<PortStats> {
        Arc::new(PortStats {
            per_worker: (0..workers.max(1)).map(|_| Counters::default()).collect(),
        })
    }

    pub fn worker(&self, i: usize) -> &Counters {
        &self.per_worker[i % self.per_worker.len()]
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for c in self.per_worker.iter() {
            t.rx_packets += get(&c.rx_packets);
            t.rx_bytes += get(&c.rx_bytes);
            t.rx_dropped += get(&c.rx_dropped);
            t.rx_errors += get(&c.rx_errors);
            t.tx_packets += get(&c.tx_packets);
            t.tx_bytes += get(&c.tx_bytes);
            t.tx_dropped += get(&c.tx_dropped);
            t.tx_errors += get(&c.tx_errors);
        }
        t
    }
}

/// How a worker reaches one port.
#[derive(Debug)]
pub enum PortIo {
    /// This worker's queue of a TAP (virtio-net header on every frame).
    Tap(OwnedFd),
    Memory(Arc<MemoryPort>),
    /// This worker's sockets of the VXLAN tunnel.
    Vxlan(vxlan::VxlanIo),
}

/// One port as one worker sees it.
#[derive(Debug)]
pub struct WorkerPort {
    pub no: u32,
    pub io: PortIo,
    pub stats: Arc<PortStats>,
    /// Whether the port takes partial checksums and TSO super-frames as they are.
    pub offloads: bool,
}

/// Why a receive stopped.
#[derive(Debug)]
pub enum RxEnd {
    /// Nothing more to read now.
    Empty,
    /// The batch is full; there may be more.
    Full,
}

impl WorkerPort {
    /// Read up to `batch.len()` frames into `batch`; returns how many, and whether the
    /// port ran dry. Packets get `in_port` and their offload state.
    pub fn receive(&self, worker: usize, batch: &mut [Packet]) -> (usize, RxEnd) {
        let counters = self.stats.worker(worker);
        if let PortIo::Vxlan(v) = &self.io {
            let (n, dry) = v.receive(batch, counters);
            for p in &mut batch[..n] {
                p.in_port = self.no;
            }
            return (n, if dry { RxEnd::Empty } else { RxEnd::Full });
        }
        let mut n = 0;
        while n < batch.len() {
            let pkt = &mut batch[n];
            let got = match &self.io {
                PortIo::Tap(fd) => receive_tap(fd, pkt),
                PortIo::Memory(m) => match m.pop_rx() {
                    Some(frame) => {
                        pkt.set_frame(&frame);
                        Ok(true)
                    }
                    None => Ok(false),
                },
                PortIo::Vxlan(_) => Ok(false),
            };
            match got {
                Ok(true) => {
                    pkt.in_port = self.no;
                    counters.rx(pkt.len());
                    n += 1;
                }
                Ok(false) => return (n, RxEnd::Empty),
                Err(_) => {
                    counters.rx_error();
                    return (n, RxEnd::Empty);
                }
            }
        }
        (n, RxEnd::Full)
    }

    /// Send what the port queued during a batch (the tunnel's datagrams).
    pub fn flush(&self, worker: usize) {
        if let PortIo::Vxlan(v) = &self.io {
            v.flush(self.stats.worker(worker));
        }
    }

    /// Send one packet; `scratch` is reused for segmentation and checksum completion.
    pub fn send(&self, worker: usize, pkt: &Packet, scratch: &mut Vec<u8>) -> vxlan::TxOutcome {
        let counters = self.stats.worker(worker);
        if let PortIo::Vxlan(v) = &self.io {
            return v.send(pkt, scratch, counters);
        }
        let needs_work = pkt.vnet.gso_type != VirtioNetHdr::GSO_NONE || pkt.vnet.needs_csum();
        if self.offloads || !needs_work {
            let hdr = if self.offloads {
                pkt.vnet
            } else {
                VirtioNetHdr::default()
            };
            self.send_one(counters, &hdr, pkt.data());
            return vxlan::TxOutcome::Sent;
        }
        // The port takes no offloads: finish checksums and cut super-frames here.
        let plain = VirtioNetHdr::default();
        let mut copy = std::mem::take(scratch);
        let res = gso::segment_into(pkt.data(), &pkt.vnet, &mut copy, |seg| {
            self.send_one(counters, &plain, seg)
        });
        if res.is_err() {
            counters.tx_error();
        }
        *scratch = copy;
        vxlan::TxOutcome::Sent
    }

    fn send_one(&self, counters: &Counters, hdr: &VirtioNetHdr, frame: &[u8]) {
        match &self.io {
            PortIo::Tap(fd) => {
                let mut h = [0u8; VNET_HDR_LEN];
                hdr.emit(&mut h);
                match write_frame(fd.as_fd(), &h, frame) {
                    Ok(_) => counters.tx(frame.len()),
                    // The device's queue is full or it is down: the packet is lost, as on
                    // a NIC whose ring is full.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => counters.tx_drop(),
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => counters.tx_drop(),
                    Err(_) => counters.tx_error(),
                }
            }
            PortIo::Memory(m) => {
                m.push_tx(frame, hdr);
                counters.tx(frame.len());
            }
            PortIo::Vxlan(_) => {}
        }
    }
}

/// Read one frame with its virtio-net header into `pkt`; `Ok(false)` when none waits.
fn receive_tap(fd: &OwnedFd, pkt: &mut Packet) -> io::Result<bool> {
    let buf = pkt.receive_buffer_with_prefix(VNET_HDR_LEN, MAX_FRAME);
    match read_frame(fd.as_fd(), buf) {
        Ok(n) if n < VNET_HDR_LEN => Err(io::Error::from(io::ErrorKind::InvalidData)),
        Ok(n) => {
            let hdr = VirtioNetHdr::parse(&buf[..VNET_HDR_LEN]).unwrap_or_default();
            pkt.set_len(n - VNET_HDR_LEN);
            pkt.vnet = hdr;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

const _: () = assert!(HEADROOM >= VNET_HDR_LEN);

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    /// A 4000-byte TCP payload as one TSO super-frame with a partial checksum, as a TAP with
    /// offloads hands it over.
    fn tso_frame() -> (Vec<u8>, VirtioNetHdr) {
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(1)
            .write(&mut f, &payload)
            .unwrap();
        // Replace the TCP checksum by the pseudo-header seed, as with CHECKSUM_PARTIAL.
        let l4 = 34;
        let seed = crate::wire::checksum::fold(crate::wire::checksum::pseudo_header_v4(
            [10, 244, 1, 2].into(),
            [10, 244, 1, 3].into(),
            6,
            (f.len() - l4) as u32,
        ));
        f[l4 + 16..l4 + 18].copy_from_slice(&seed.to_be_bytes());
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: l4 as u16,
            csum_offset: 16,
            num_buffers: 0,
        };
        (f, hdr)
    }

    fn port(offloads: bool) -> (WorkerPort, Arc<MemoryPort>) {
        let m = Arc::new(MemoryPort::default());
        (
            WorkerPort {
                no: 2,
                io: PortIo::Memory(m.clone()),
                stats: PortStats::new(1),
                offloads,
            },
            m,
        )
    }

    #[test]
    fn super_frames_are_cut_for_a_port_without_offloads() {
        let (frame, hdr) = tso_frame();
        let mut pkt = Packet::from_frame(&frame, 1);
        pkt.vnet = hdr;
        let (p, mem) = port(false);
        p.send(0, &pkt, &mut Vec::new());
        let segs = mem.drain_tx();
        assert_eq!(segs.len(), 3, "4000 bytes in 1448-byte segments");
        let mut carried = 0;
        for s in &segs {
            let sp = SlicedPacket::from_ethernet(s).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = sp.net else {
                panic!()
            };
            let ih = ip.header().to_header();
            assert_eq!(ih.header_checksum, ih.calc_header_checksum());
            let Some(TransportSlice::Tcp(t)) = sp.transport else {
                panic!()
            };
            let want = t.to_header().calc_checksum_ipv4(&ih, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "each segment has a complete checksum");
            carried += t.payload().len();
        }
        assert_eq!(carried, 4000);
        assert_eq!(p.stats.totals().tx_packets, 3);
    }

    #[test]
    fn super_frames_pass_whole_to_a_port_with_offloads() {
        let (frame, hdr) = tso_frame();
        let mut pkt = Packet::from_frame(&frame, 1);
        pkt.vnet = hdr;
        let (p, mem) = port(true);
        p.send(0, &pkt, &mut Vec::new());
        let out = mem.drain_tx();
        assert_eq!(out, vec![frame]);
    }
}
