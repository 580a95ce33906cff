//! IP fragments without reassembly: how a later fragment (offset > 0, no transport header
//! of its own) finds the connection of its datagram.
//!
//! Linux (`nf_defrag_ipv4`, `nf_defrag_ipv6`) and Open vSwitch (its kernel datapath, and
//! `lib/ipf.c` in userspace) reassemble a datagram before conntrack sees it, and send the
//! original fragments on. This tracker holds no packets. When it tracks the first fragment
//! of a datagram (offset 0, more fragments), which carries the transport header, it
//! remembers the datagram's ports for a few seconds under (zone, source, destination,
//! protocol, IP identification), in a small table of its worker: fragments of one datagram
//! come in on one port, and one port is read by one worker. A later fragment with the same
//! key is tracked as a packet with those ports: the same connection, in the same
//! direction, so the same `ct_state`, mark, label and NAT (of its addresses only: it has
//! no transport header; the first fragment's transport checksum, which covers the
//! pseudo-header, is adjusted on the first fragment). A later fragment whose first
//! fragment was not seen is `+inv`: a datagram that cannot be reassembled is dropped by
//! Linux too.
//!
//! The first fragment is remembered at every `ct()` it goes through, keyed by the
//! addresses it has there, so a later fragment that took the same path (and the same NAT)
//! finds its ports at each step. It also leaves the ports its own flow has after the
//! `ct()` (NAT applied), which the later fragment's flow takes on after recirculation, so
//! that flows matching ports see the whole datagram, as Linux's rules see the reassembled
//! packet (Open vSwitch's userspace datapath leaves later fragments without ports).
//!
//! What differs from reassembly:
//! - Order: the first fragment must come before the others, as a veth or a TAP delivers
//!   them. A later fragment that overtakes its first is `+inv` (Linux would hold it until
//!   the datagram is complete, up to `ipfrag_time`, 30 s).
//! - The first fragment is judged on its own: TCP window tracking sees only its length
//!   (Linux sets DF on TCP, so fragmented TCP is rare); missing, overlapping or duplicate
//!   fragments are not checked but passed on as they came, for the receiver to reassemble
//!   or drop.
//! - Entries live [`FRAG_TIMEOUT_MS`] and the table holds [`FRAG_ENTRIES`] per worker,
//!   the oldest of a bucket evicted first: a flood of first fragments costs no memory, at
//!   worst the fragments of other datagrams whose entries it evicted. Entries stay until
//!   they expire (not removed at the last fragment, so a duplicate still passes); an IP
//!   identification that comes round again within that time is taken over by its new
//!   first fragment.
//! - IPv6: a later fragment's next header must be its first fragment's transport protocol
//!   (no extension header after the Fragment header), else it finds nothing and is `+inv`.
//! - Fragments of an ICMP error are `+inv`, as before (Linux would reassemble them).
//! - A later fragment never creates a connection nor chooses a NAT binding: its first
//!   fragment did at the same `ct()`. If that connection is not there (the first
//!   fragment's commit was refused, or it was flushed in between), a later fragment whose
//!   `ct()` commits or asks for a new NAT binding is `+inv`.

use super::table::Dir;
use super::tuple::{self, Kind, Tuple};
use super::{CtWorker, Seen};
use crate::dp::action::DpCt;
use crate::dp::conntrack::CtResult;
use crate::dp::packet::Packet;
use crate::flow::Layers;
use crate::wire::walk_ext_headers;
use vswitch_proto::field::ethertype;
use vswitch_proto::flow::{Flow, ct_state, frag};

/// How long a first fragment's ports are kept for the rest of its datagram (Linux keeps
/// an incomplete datagram `ipfrag_time`, 30 s; fragments from a veth or a TAP follow each
/// other within microseconds).
pub const FRAG_TIMEOUT_MS: u64 = 5_000;
/// Datagrams remembered per worker (80 bytes each: 80 KiB).
pub const FRAG_ENTRIES: usize = 1024;
/// Entries per bucket: a new datagram evicts the oldest of its bucket.
const WAYS: usize = 4;

/// A datagram, as its fragments name it: addresses, protocol, IP identification (IPv6:
/// the Fragment header's), in a conntrack zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: u128,
    pub dst: u128,
    pub id: u32,
    pub zone: u16,
    pub proto: u8,
    pub v6: bool,
}

impl FragKey {
    fn hash(&self, seed: u64) -> u64 {
        let a = (self.src as u64) ^ ((self.src >> 64) as u64).rotate_left(17);
        let b = (self.dst as u64) ^ ((self.dst >> 64) as u64).rotate_left(29);
        let c = (self.id as u64) << 32
            | (self.zone as u64) << 16
            | (self.proto as u64) << 8
            | self.v6 as u64;
        let mut h = seed;
        for w in [a, b, c] {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 32;
        }
        h
    }
}

/// What a first fragment leaves for the rest of its datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragPorts {
    /// The tuple's ports (see [`super::tuple::Tuple`]: for ICMP the identifier, and the
    /// type and code).
    pub sport: u16,
    pub dport: u16,
    /// `tp_src` and `tp_dst` of the first fragment's flow after the `ct()` (NAT applied);
    /// `None` for a protocol without ports.
    pub flow: Option<[u16; 2]>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: FragKey,
    ports: FragPorts,
    /// 0: empty.
    expires: u64,
}

/// One worker's remembered first fragments: a fixed number of entries in buckets of
/// [`WAYS`], allocated when the first fragment comes (a worker that sees none pays
/// nothing), placed by a hash with the worker's own seed.
#[derive(Debug)]
pub struct FragTable {
    entries: Box<[Entry]>,
    seed: u64,
}

impl FragTable {
    pub fn new(seed: u64) -> FragTable {
        FragTable {
            entries: Box::new([]),
            seed,
        }
    }

    fn bucket(&self, k: &FragKey) -> std::ops::Range<usize> {
        let buckets = (self.entries.len() / WAYS) as u64;
        let b = (k.hash(self.seed) % buckets) as usize * WAYS;
        b..b + WAYS
    }

    /// The ports of `k`'s datagram, if its first fragment was seen less than
    /// [`FRAG_TIMEOUT_MS`] before `now`.
    pub fn get(&self, k: &FragKey, now: u64) -> Option<FragPorts> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries[self.bucket(k)]
            .iter()
            .find(|e| e.expires > now && e.key == *k)
            .map(|e| e.ports)
    }

    /// Remember `k`'s ports until `now + FRAG_TIMEOUT_MS`, in place of an earlier entry
    /// of `k`, else of an empty or expired one, else of the oldest of its bucket.
    pub fn insert(&mut self, k: FragKey, ports: FragPorts, now: u64) {
        if self.entries.is_empty() {
            self.entries = vec![Entry::default(); FRAG_ENTRIES].into_boxed_slice();
        }
        let r = self.bucket(&k);
        let b = &mut self.entries[r];
        let i = b
            .iter()
            .position(|e| e.expires > now && e.key == k)
            .or_else(|| b.iter().position(|e| e.expires <= now))
            .unwrap_or_else(|| {
                (0..WAYS)
                    .min_by_key(|&i| b[i].expires)
                    .expect("a bucket has entries")
            });
        b[i] = Entry {
            key: k,
            ports,
            expires: now + FRAG_TIMEOUT_MS,
        };
    }

    /// Forget `k` (its first fragment was invalid: so is the rest of the datagram).
    pub fn remove(&mut self, k: &FragKey) {
        if self.entries.is_empty() {
            return;
        }
        let r = self.bucket(k);
        for e in &mut self.entries[r] {
            if e.key == *k {
                e.expires = 0;
            }
        }
    }

    /// Entries live at `now`.
    pub fn len(&self, now: u64) -> usize {
        self.entries.iter().filter(|e| e.expires > now).count()
    }

    /// Memory the table holds, in bytes.
    pub fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
    }
}

/// The IP identification of a fragment (first or later) at `layers.l3`: IPv4's 16 bits,
/// or the 32 bits of IPv6's Fragment header. `None` if the header is not all there, or an
/// IPv6 packet has no Fragment header.
pub fn ident(pkt: &Packet, layers: &Layers, v6: bool) -> Option<u32> {
    let d = pkt.data();
    let l3 = layers.l3 as usize;
    if l3 == 0 {
        return None;
    }
    if !v6 {
        let b = d.get(l3 + 4..l3 + 6)?;
        return Some(u16::from_be_bytes([b[0], b[1]]) as u32);
    }
    let plen = u16::from_be_bytes([*d.get(l3 + 4)?, *d.get(l3 + 5)?]) as usize;
    let payload = d.get(l3 + 40..l3 + 40 + plen)?;
    Some(walk_ext_headers(d[l3 + 6], payload).ok()?.frag?.ident)
}

/// The tracker's side: out of line, so unfragmented packets pay one branch.
impl CtWorker {
    /// A fragment, first or later: tracked as the packets of its connection are, a later
    /// one with its first fragment's ports; a first one leaves them for the rest of its
    /// datagram. Out of line: unfragmented packets pay one branch.
    #[inline(never)]
    pub(super) fn track_fragment(
        &mut self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        now: u64,
    ) -> CtResult {
        let (t, later) = if key.nw_frag() & frag::LATER != 0 {
            // A later fragment committed again after its connection translated it: its
            // connection's, by the original tuple it carries (see `associated`).
            if let Some(o) = super::associated_later(key, ct) {
                return self.track_conn(pkt, layers, key, ct, o, now);
            }
            match self.later_tuple(pkt, layers, key, ct.zone, now) {
                Some((t, p)) => (t, Some(p)),
                // Its first fragment was not seen: its datagram cannot be tracked.
                None => return self.invalid(ct.zone),
            }
        } else {
            match tuple::classify(pkt, layers, key, ct.zone) {
                Kind::Conn(t) => (super::associated(key, ct, &t).unwrap_or(t), None),
                Kind::IcmpError => return self.icmp_error(pkt, layers, key, ct),
                Kind::Invalid => return self.invalid(ct.zone),
            }
        };
        let mut r = self.track_conn(pkt, layers, key, ct, t, now);
        self.fragment_tracked(pkt, layers, (&t, later), &mut r, now);
        r
    }

    /// The tuple of a later fragment: its addresses with the ports of its datagram's
    /// first fragment, and what that left; `None` when it was not seen.
    fn later_tuple(
        &self,
        pkt: &Packet,
        layers: &Layers,
        key: &Flow,
        zone: u16,
        now: u64,
    ) -> Option<(Tuple, FragPorts)> {
        let v6 = key.dl_type() == ethertype::IPV6;
        let (src, dst) = if v6 {
            (key.ipv6_src(), key.ipv6_dst())
        } else {
            (key.nw_src() as u128, key.nw_dst() as u128)
        };
        let k = FragKey {
            src,
            dst,
            id: ident(pkt, layers, v6)?,
            zone,
            proto: key.nw_proto(),
            v6,
        };
        let p = self.frags.get(&k, now)?;
        let t = Tuple {
            src,
            dst,
            sport: p.sport,
            dport: p.dport,
            proto: k.proto,
            v6,
            zone,
        };
        Some((t, p))
    }

    /// A fragment was tracked as `t`, with result `r`. A later one (`later`: what its
    /// first fragment left) gets its datagram's ports for its flow. A first one leaves its
    /// ports (and its flow's ports now, NAT applied) for the rest of its datagram, or
    /// takes its datagram with it when it was invalid.
    fn fragment_tracked(
        &mut self,
        pkt: &Packet,
        layers: &Layers,
        (t, later): (&Tuple, Option<FragPorts>),
        r: &mut CtResult,
        now: u64,
    ) {
        let invalid = r.state & ct_state::INV != 0;
        if let Some(p) = later {
            if !invalid {
                r.frag_ports = p.flow;
            }
            return;
        }
        let Some(id) = ident(pkt, layers, t.v6) else {
            return;
        };
        let k = FragKey {
            src: t.src,
            dst: t.dst,
            id,
            zone: t.zone,
            proto: t.proto,
            v6: t.v6,
        };
        if invalid {
            self.frags.remove(&k);
            return;
        }
        let (d, l4) = (pkt.data(), layers.l4 as usize);
        let flow = if t.has_ports() {
            d.get(l4..l4 + 4).map(|p| {
                [
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                ]
            })
        } else if t.is_icmp() {
            d.get(l4..l4 + 2).map(|p| [p[0] as u16, p[1] as u16])
        } else {
            None
        };
        let ports = FragPorts {
            sport: t.sport,
            dport: t.dport,
            flow,
        };
        self.frags.insert(k, ports, now);
    }

    /// A later fragment whose connection is not in the table. Its first fragment was
    /// tracked at this same `ct()` just before: without a commit or a new NAT binding it
    /// was `+new` and so is this one. With either, the first fragment made the connection
    /// (or was refused: then its datagram was forgotten and this fragment found no
    /// ports); a later fragment does not make one of its own, which could choose another
    /// NAT binding than its first fragment got: it is invalid.
    pub(super) fn later_without_conn(
        &mut self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        t: Tuple,
    ) -> CtResult {
        if ct.commit || ct.nat.as_ref().is_some_and(|n| n.kind.is_some()) {
            return self.invalid(ct.zone);
        }
        let s = Seen {
            state: ct_state::TRK | ct_state::NEW,
            mark: 0,
            label: 0,
            orig: t,
            reply: t.reverse(),
            flags: 0,
            dir: Dir::Orig,
        };
        self.finish(pkt, layers, key, ct, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: 1,
            dst: 2,
            id,
            zone: 0,
            proto: 17,
            v6: false,
        }
    }

    fn ports(p: u16) -> FragPorts {
        FragPorts {
            sport: p,
            dport: 53,
            flow: Some([p, 53]),
        }
    }

    #[test]
    fn an_entry_is_found_until_it_expires_and_can_be_forgotten() {
        let mut t = FragTable::new(7);
        assert_eq!(t.get(&key(1), 0), None);
        assert_eq!(t.memory(), 0, "nothing allocated before the first fragment");
        t.insert(key(1), ports(1000), 100);
        assert_eq!(t.get(&key(1), 100), Some(ports(1000)));
        assert_eq!(t.get(&key(2), 100), None);
        assert_eq!(t.get(&FragKey { zone: 1, ..key(1) }, 100), None);
        // A new first fragment of the same key (the identification came round again).
        t.insert(key(1), ports(2000), 200);
        assert_eq!(t.get(&key(1), 300), Some(ports(2000)));
        assert_eq!(t.len(300), 1);
        assert_eq!(t.get(&key(1), 200 + FRAG_TIMEOUT_MS), None, "expired");
        t.insert(key(3), ports(3), 0);
        t.remove(&key(3));
        assert_eq!(t.get(&key(3), 1), None);
    }

    #[test]
    fn a_flood_of_first_fragments_stays_within_the_bound_and_keeps_the_newest() {
        let mut t = FragTable::new(42);
        let n = FRAG_ENTRIES as u32 * 20;
        for id in 0..n {
            t.insert(key(id), ports(id as u16), id as u64);
        }
        assert_eq!(t.memory(), FRAG_ENTRIES * std::mem::size_of::<Entry>());
        assert!(t.memory() <= 80 * 1024);
        let now = n as u64;
        assert!(t.len(now) <= FRAG_ENTRIES);
        // The most recent datagrams are all there (their buckets evicted older ones).
        for id in n - 16..n {
            assert_eq!(t.get(&key(id), now), Some(ports(id as u16)), "id {id}");
        }
        // The oldest are gone.
        assert_eq!(t.get(&key(0), now), None);
    }
}

/// Fragmented datagrams for tests: made as Linux's `ip_fragment` cuts them, and put back
/// together to check what NAT did to them.
#[cfg(test)]
pub(crate) mod testing {
    use etherparse::PacketBuilder;

    fn ip_checksum(h: &[u8]) -> u16 {
        !fold(sum(h))
    }

    fn sum(d: &[u8]) -> u32 {
        d.chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
            .sum()
    }

    fn fold(mut s: u32) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Cut an Ethernet + IPv4 frame (no options) into fragments of at most `mtu` bytes of
    /// IP, with identification `id`: every fragment but the last carries a multiple of 8
    /// bytes of the IP payload.
    pub fn fragment(frame: &[u8], id: u16, mtu: usize) -> Vec<Vec<u8>> {
        let (eth, ip, payload) = (&frame[..14], &frame[14..34], &frame[34..]);
        let step = (mtu - 20) & !7;
        let mut out = Vec::new();
        for off in (0..payload.len()).step_by(step) {
            let part = &payload[off..(off + step).min(payload.len())];
            let more = off + step < payload.len();
            let mut h = ip.to_vec();
            h[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            let field = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&field.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let c = ip_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.push([eth, &h, part].concat());
        }
        out
    }

    /// A UDP datagram with `len` bytes of payload, in fragments of at most `mtu` bytes.
    pub fn udp_fragments(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        id: u16,
        len: usize,
        mtu: usize,
    ) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, &payload)
            .unwrap();
        fragment(&v, id, mtu)
    }

    /// A datagram put back together from its IPv4 fragments.
    #[derive(Debug)]
    pub struct Whole {
        pub src: [u8; 4],
        pub dst: [u8; 4],
        pub proto: u8,
        /// The transport header and payload.
        pub l4: Vec<u8>,
    }

    impl Whole {
        /// The UDP header's ports.
        pub fn ports(&self) -> (u16, u16) {
            let p = |i: usize| u16::from_be_bytes([self.l4[i], self.l4[i + 1]]);
            (p(0), p(2))
        }

        /// Whether the UDP checksum of the datagram is right for its addresses.
        pub fn udp_checksum_ok(&self) -> bool {
            let len = (self.l4.len() as u16).to_be_bytes();
            let pseudo = [&self.src[..], &self.dst, &[0, self.proto], &len].concat();
            fold(sum(&pseudo) + sum(&self.l4)) == 0xffff
        }
    }

    /// Reassemble `frames` (fragments of one datagram, in any order), checking each
    /// one's IPv4 header checksum and that they agree on addresses, protocol and
    /// identification.
    pub fn reassemble(frames: &[Vec<u8>]) -> Whole {
        let mut parts: Vec<(usize, &[u8])> = Vec::new();
        let h0 = &frames[0][14..34];
        for f in frames {
            let h = &f[14..34];
            assert_eq!(ip_checksum(h), 0, "IPv4 header checksum of {h:02x?}");
            assert_eq!(
                (&h[4..6], h[9], &h[12..20]),
                (&h0[4..6], h0[9], &h0[12..20]),
                "fragments of one datagram"
            );
            let total = u16::from_be_bytes([h[2], h[3]]) as usize;
            let off = (u16::from_be_bytes([h[6], h[7]]) & 0x1fff) as usize * 8;
            parts.push((off, &f[34..14 + total]));
        }
        parts.sort_by_key(|p| p.0);
        let mut l4 = Vec::new();
        for (off, p) in parts {
            assert_eq!(off, l4.len(), "no hole, no overlap");
            l4.extend_from_slice(p);
        }
        Whole {
            src: h0[12..16].try_into().unwrap(),
            dst: h0[16..20].try_into().unwrap(),
            proto: h0[9],
            l4,
        }
    }
}
