//! Receive coalescing (software GRO) for TCP over IPv4: consecutive in-order segments of
//! one connection, as a tunnel delivers them one datagram each, become one TSO frame, so a
//! Pod's TAP takes one write where it would take forty, and its kernel one packet.
//!
//! The rules are the kernel's (`tcp_gro_receive`): same addresses, ports, TOS, TTL and DF;
//! no IP options or fragments; the same TCP header (ACK number, window, options) but for
//! the sequence number, which must follow on; flags ACK, with PSH only on the last; every
//! segment the size of the first but the last, which may be shorter; a segment whose TCP
//! checksum does not verify is never merged (it travels on alone, for its receiver to
//! drop). The merged frame leaves with a partial checksum and `GSO_TCPV4`, as a TSO frame
//! from a TAP would.

use crate::dp::packet::{Packet, TunnelMd};
use crate::wire::checksum;
use crate::wire::virtio::VirtioNetHdr;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const IP: usize = 20;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// The largest IPv4 packet.
const MAX_IP_LEN: usize = 65_535;

/// What coalescing needs of one frame.
#[derive(Clone, Copy, Debug)]
struct Seg {
    /// TCP header length.
    thl: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

impl Seg {
    fn headers(&self) -> usize {
        ETH + IP + self.thl
    }
}

/// An untagged IPv4 TCP frame without IP options or fragmentation, whose lengths agree.
fn parse(frame: &[u8]) -> Option<Seg> {
    if frame.len() < ETH + IP + 20
        || frame[12..14] != [0x08, 0x00]
        || frame[14] != 0x45
        || frame[23] != 6
        || u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0
    {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let thl = usize::from(frame[ETH + IP + 12] >> 4) * 4;
    if total + ETH != frame.len()
        || thl < 20
        || IP + thl > total
        || checksum::checksum(&frame[ETH..ETH + IP]) != 0
    {
        return None;
    }
    let t = ETH + IP;
    Some(Seg {
        thl,
        payload: total - IP - thl,
        seq: u32::from_be_bytes([frame[t + 4], frame[t + 5], frame[t + 6], frame[t + 7]]),
        flags: frame[t + 13],
    })
}

fn addrs(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let a = |o: usize| Ipv4Addr::new(frame[o], frame[o + 1], frame[o + 2], frame[o + 3]);
    (a(26), a(30))
}

/// Whether the segment's TCP checksum verifies.
fn checksum_ok(frame: &[u8]) -> bool {
    let (src, dst) = addrs(frame);
    let tcp = &frame[ETH + IP..];
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, tcp.len() as u32);
    checksum::fold(u64::from(checksum::sum(tcp, 0)) + u64::from(pseudo)) == 0xffff
}

/// Whether `next` may follow `head` in one frame: every header byte equal (MACs, IP
/// version to TTL and addresses but for the length, ID and checksum; TCP ports, ACK
/// number, window, options) but the sequence number and the flags.
fn same_headers(head: &[u8], h: &Seg, next: &[u8], n: &Seg) -> bool {
    let t = ETH + IP;
    h.thl == n.thl
        && head[..16] == next[..16]
        && head[20..24] == next[20..24]
        && head[26..t + 4] == next[26..t + 4]
        && head[t + 8..t + 13] == next[t + 8..t + 13]
        && head[t + 14..t + 16] == next[t + 14..t + 16]
        && head[t + 18..h.headers()] == next[t + 18..n.headers()]
}

/// Whether a segment with these flags may be merged (ACK, maybe PSH, nothing else).
fn mergeable(flags: u8) -> bool {
    flags & !TCP_PSH == TCP_ACK
}

/// A run being built on a head packet: what follows on may be appended to it.
#[derive(Debug)]
pub struct Run {
    h: Seg,
    mss: usize,
    next_seq: u32,
    flags: u8,
    ip_len: usize,
    merged: usize,
    verified: bool,
    closed: bool,
    /// The IP ID the next segment must carry when DF is clear (with DF set any will do:
    /// the kernel lets IDs be fixed then).
    next_id: u16,
}

fn ip_id(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[18], frame[19]])
}

fn dont_fragment(frame: &[u8]) -> bool {
    frame[20] & 0x40 != 0
}

impl Run {
    /// A run headed by `head`, if it may head one: a TCP segment with data and no PSH,
    /// without offloads.
    pub fn start(head: &Packet) -> Option<Run> {
        let h = parse(head.data())?;
        if !mergeable(h.flags)
            || h.flags & TCP_PSH != 0
            || h.payload == 0
            || head.vnet != VirtioNetHdr::default()
        {
            return None;
        }
        Some(Run {
            h,
            mss: h.payload,
            next_seq: h.seq.wrapping_add(h.payload as u32),
            flags: h.flags,
            ip_len: IP + h.thl + h.payload,
            merged: 0,
            verified: false,
            closed: false,
            next_id: ip_id(head.data()).wrapping_add(1),
        })
    }

    /// Whether a frame could head a run (a TCP segment with data, ACK and no PSH): worth a
    /// full-size buffer.
    pub fn may_head(frame: &[u8]) -> bool {
        parse(frame).is_some_and(|h| mergeable(h.flags) && h.flags & TCP_PSH == 0 && h.payload > 0)
    }

    /// Append the segment `frame` (no offloads, tunnel metadata `tun`) to `head` if it
    /// follows on; whether it was.
    pub fn offer(&mut self, head: &mut Packet, frame: &[u8], tun: TunnelMd) -> bool {
        if self.closed {
            return false;
        }
        let Some(c) = parse(frame) else {
            return false;
        };
        let fits = self.ip_len + c.payload <= MAX_IP_LEN
            && c.payload > 0
            && c.payload <= self.mss
            && c.seq == self.next_seq
            && mergeable(c.flags)
            && tun == head.tun
            && (dont_fragment(frame) || ip_id(frame) == self.next_id)
            && same_headers(head.data(), &self.h, frame, &c);
        if !fits {
            return false;
        }
        if !self.verified {
            if !checksum_ok(head.data()) {
                self.closed = true;
                return false;
            }
            self.verified = true;
        }
        if !checksum_ok(frame) || !head.append(&frame[c.headers()..]) {
            return false;
        }
        self.ip_len += c.payload;
        self.next_seq = self.next_seq.wrapping_add(c.payload as u32);
        self.flags |= c.flags;
        self.merged += 1;
        self.next_id = ip_id(frame).wrapping_add(1);
        self.closed = c.payload < self.mss || c.flags & TCP_PSH != 0;
        true
    }

    /// Make the merged frame whole (nothing to do when nothing was appended).
    pub fn finish(self, head: &mut Packet) {
        if self.merged > 0 {
            finish(head, &self.h, self.ip_len, self.mss, self.flags);
        }
    }
}

/// Make the merged frame whole: IP length and checksum, TCP flags, a partial TCP
/// checksum (the pseudo-header's sum, as Linux leaves it for TSO), and the offload header.
fn finish(p: &mut Packet, h: &Seg, ip_len: usize, mss: usize, flags: u8) {
    let (src, dst) = addrs(p.data());
    let f = p.data_mut();
    f[16..18].copy_from_slice(&(ip_len as u16).to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(&f[ETH..ETH + IP]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let t = ETH + IP;
    f[t + 13] = flags;
    let tcp_len = (ip_len - IP) as u32;
    let pseudo = checksum::fold(checksum::pseudo_header_v4(src, dst, 6, tcp_len));
    f[t + 16..t + 18].copy_from_slice(&pseudo.to_be_bytes());
    p.vnet = VirtioNetHdr {
        flags: VirtioNetHdr::NEEDS_CSUM,
        gso_type: VirtioNetHdr::GSO_TCPV4,
        hdr_len: h.headers() as u16,
        gso_size: mss as u16,
        csum_start: t as u16,
        csum_offset: 16,
        num_buffers: 0,
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::gso;
    use proptest::prelude::*;

    /// Merge runs of consecutive segments of one connection in `batch`, in place, as the
    /// tunnel's receive path does with [`Run`]. Returns how many packets the batch now starts
    /// with (the merged ones are left after them).
    fn coalesce(batch: &mut [Packet]) -> usize {
        let n = batch.len();
        let mut out = 0;
        let mut i = 0;
        while i < n {
            batch.swap(out, i);
            i += 1;
            let head = out;
            out += 1;
            let Some(mut run) = Run::start(&batch[head]) else {
                continue;
            };
            while i < n {
                let (done, rest) = batch.split_at_mut(i);
                let cand = &rest[0];
                if cand.vnet != VirtioNetHdr::default()
                    || !run.offer(&mut done[head], cand.data(), cand.tun)
                {
                    break;
                }
                i += 1;
            }
            run.finish(&mut batch[head]);
        }
        out
    }

    /// A TCP segment 10.0.0.1:1000 -> 10.0.0.2:80 with `payload` bytes at `seq`.
    pub(crate) fn segment(seq: u32, payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; ETH + IP + 32];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((IP + 32 + payload.len()) as u16).to_be_bytes());
        f[18..20].copy_from_slice(&(seq as u16).to_be_bytes());
        f[20] = 0x40;
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        let c = checksum::checksum(&f[ETH..ETH + IP]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let t = ETH + IP;
        f[t..t + 2].copy_from_slice(&1000u16.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&80u16.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&7u32.to_be_bytes());
        f[t + 12] = 8 << 4;
        f[t + 13] = flags;
        f[t + 14..t + 16].copy_from_slice(&512u16.to_be_bytes());
        // Timestamps option: NOP NOP TS.
        f[t + 20..t + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        f.extend_from_slice(payload);
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            (32 + payload.len()) as u32,
        );
        let c = !checksum::fold(u64::from(checksum::sum(&f[t..], 0)) + u64::from(pseudo));
        f[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn packets(frames: &[Vec<u8>]) -> Vec<Packet> {
        frames
            .iter()
            .map(|f| {
                let mut p = Packet::with_capacity(crate::port::MAX_FRAME);
                p.set_frame(f);
                p
            })
            .collect()
    }

    /// The frames `batch[..n]` stand for, cut back into wire segments.
    fn resegment(batch: &[Packet], n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for p in &batch[..n] {
            if p.vnet == VirtioNetHdr::default() {
                out.push(p.data().to_vec());
            } else {
                gso::segment(p.data(), &p.vnet, &mut out).unwrap();
            }
        }
        out
    }

    const ACK: u8 = TCP_ACK;

    #[test]
    fn a_run_becomes_one_tso_frame_that_cuts_back_into_the_same_segments() {
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let frames = vec![
            segment(100, &data[..1400], ACK),
            segment(1500, &data[1400..2800], ACK),
            segment(2900, &data[2800..4000], ACK | TCP_PSH),
        ];
        let mut batch = packets(&frames);
        let n = coalesce(&mut batch);
        assert_eq!(n, 1);
        let p = &batch[0];
        assert_eq!(p.vnet.gso_type, VirtioNetHdr::GSO_TCPV4);
        assert_eq!(p.vnet.gso_size, 1400);
        assert_eq!(p.len(), ETH + IP + 32 + 4000);
        assert_eq!(p.data()[ETH + IP + 13], ACK | TCP_PSH);
        assert_eq!(resegment(&batch, n), frames_without_ids(&frames));
    }

    /// Segments as the merged frame cuts back into them: IP IDs count up from the
    /// first's, PSH only on the last (as in the originals here).
    fn frames_without_ids(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let first = u16::from_be_bytes([frames[0][18], frames[0][19]]);
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut f = f.clone();
                f[18..20].copy_from_slice(&first.wrapping_add(i as u16).to_be_bytes());
                f[24..26].copy_from_slice(&[0, 0]);
                let c = checksum::checksum(&f[ETH..ETH + IP]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
                f
            })
            .collect()
    }

    #[test]
    fn what_may_not_merge_stays_apart() {
        let d = [7u8; 1000];
        // A gap in the sequence, a FIN, a bad checksum, another connection, a bigger one.
        let mut bad = segment(3000, &d, ACK);
        bad[60] ^= 0xff;
        let mut other = segment(4000, &d, ACK);
        other[ETH + IP] = 9;
        // Without DF, IP IDs must count up by one (these are 0 and 1000 apart).
        let no_df = |seq: u32| {
            let mut f = segment(seq, &d, ACK);
            f[20] = 0;
            f[24..26].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[ETH..ETH + IP]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        };
        // A bad IP header checksum.
        let mut bad_ip = segment(1000, &d, ACK);
        bad_ip[22] = 1;
        let cases = [
            vec![segment(0, &d, ACK), segment(2000, &d, ACK)],
            vec![segment(0, &d, ACK), segment(1000, &d, ACK | 0x01)],
            vec![segment(2000, &d, ACK), bad],
            vec![segment(3000, &d, ACK), other],
            vec![segment(0, &d[..500], ACK), segment(500, &d, ACK)],
            vec![segment(0, &d, ACK | TCP_PSH), segment(1000, &d, ACK)],
            vec![no_df(0), no_df(1000)],
            vec![segment(0, &d, ACK), bad_ip],
        ];
        for frames in cases {
            let mut batch = packets(&frames);
            assert_eq!(coalesce(&mut batch), 2);
            assert_eq!(resegment(&batch, 2), frames);
        }
    }

    proptest! {
        /// Whatever the batch, coalescing loses, adds and reorders no byte of any
        /// connection: cut back into segments, the stream per connection is unchanged.
        #[test]
        fn coalescing_keeps_every_stream(
            steps in proptest::collection::vec((0u8..3, 1usize..1500, any::<bool>()), 1..40)
        ) {
            let mut seq = [0u32; 3];
            let mut frames = Vec::new();
            for (conn, len, gap) in steps {
                let c = usize::from(conn);
                if gap {
                    seq[c] = seq[c].wrapping_add(10);
                }
                let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ conn).collect();
                let mut f = segment(seq[c], &payload, ACK);
                f[ETH + IP] = conn;
                // Fix the checksum after changing the port.
                f[ETH + IP + 16..ETH + IP + 18].copy_from_slice(&[0, 0]);
                let pseudo = checksum::pseudo_header_v4(
                    Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6,
                    (f.len() - ETH - IP) as u32);
                let ck = !checksum::fold(
                    u64::from(checksum::sum(&f[ETH + IP..], 0)) + u64::from(pseudo));
                f[ETH + IP + 16..ETH + IP + 18].copy_from_slice(&ck.to_be_bytes());
                seq[c] = seq[c].wrapping_add(len as u32);
                frames.push(f);
            }
            let mut batch = packets(&frames);
            let n = coalesce(&mut batch);
            let back = resegment(&batch, n);
            let stream = |fs: &[Vec<u8>], c: u8| -> Vec<(u32, Vec<u8>)> {
                fs.iter()
                    .filter(|f| f[ETH + IP] == c)
                    .map(|f| {
                        let s = parse(f).unwrap();
                        (s.seq, f[s.headers()..].to_vec())
                    })
                    .collect()
            };
            for c in 0..3 {
                let a: Vec<u8> = stream(&frames, c).into_iter().flat_map(|x| x.1).collect();
                let b: Vec<u8> = stream(&back, c).into_iter().flat_map(|x| x.1).collect();
                prop_assert_eq!(a, b);
            }
            for f in &back {
                prop_assert!(checksum_ok(f));
            }
        }
    }
}
