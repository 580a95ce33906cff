//! A connection's tuple in one direction, and how one is read from a packet.

use crate::dp::packet::Packet;
use crate::flow::Layers;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vswitch_proto::field::{ethertype, ipproto};
use vswitch_proto::flow::{Flow, frag};

/// One direction of a connection, in a zone. Addresses are kept as 128 bits (IPv4 in the
/// low 32). For ICMP echo-like messages `sport` is the identifier and `dport` the type and
/// code (`type << 8 | code`), as Linux keeps them; for protocols without ports both are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub v6: bool,
    pub zone: u16,
}

/// ICMP request types that open a connection, with the type their answer has.
const ICMP4_PAIRS: [(u8, u8); 4] = [(8, 0), (13, 14), (15, 16), (17, 18)];
const ICMP6_PAIRS: [(u8, u8); 1] = [(128, 129)];

fn icmp_pairs(v6: bool) -> &'static [(u8, u8)] {
    if v6 { &ICMP6_PAIRS } else { &ICMP4_PAIRS }
}

/// Whether an ICMP type is an error whose quoted header names a connection.
pub fn icmp_is_error(v6: bool, typ: u8) -> bool {
    if v6 {
        (1..=4).contains(&typ)
    } else {
        matches!(typ, 3 | 4 | 5 | 11 | 12)
    }
}

impl Tuple {
    pub fn is_icmp(&self) -> bool {
        self.proto
            == if self.v6 {
                ipproto::ICMPV6
            } else {
                ipproto::ICMP
            }
    }

    pub fn has_ports(&self) -> bool {
        matches!(self.proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP)
    }

    /// The ICMP type this tuple names (echo-like messages only).
    pub fn icmp_type(&self) -> u8 {
        (self.dport >> 8) as u8
    }

    /// Whether an ICMP message of this tuple may open a connection (a request).
    pub fn icmp_opens(&self) -> bool {
        let t = self.icmp_type();
        icmp_pairs(self.v6).iter().any(|&(q, _)| q == t)
    }

    /// The tuple of a packet going the other way.
    pub fn reverse(&self) -> Tuple {
        let mut r = Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        };
        if self.is_icmp() {
            let t = self.icmp_type();
            let other = icmp_pairs(self.v6)
                .iter()
                .find_map(|&(q, a)| {
                    if q == t {
                        Some(a)
                    } else if a == t {
                        Some(q)
                    } else {
                        None
                    }
                })
                .unwrap_or(t);
            r.sport = self.sport;
            r.dport = (other as u16) << 8 | (self.dport & 0xff);
        }
        r
    }

    pub fn src_ip(&self) -> IpAddr {
        ip(self.src, self.v6)
    }

    pub fn dst_ip(&self) -> IpAddr {
        ip(self.dst, self.v6)
    }

    /// Hash with a per-table seed (so that no one can aim packets at one bucket).
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        let a = (self.src as u64) ^ ((self.src >> 64) as u64).rotate_left(17);
        let b = (self.dst as u64) ^ ((self.dst >> 64) as u64).rotate_left(29);
        let c = (self.sport as u64) << 48
            | (self.dport as u64) << 32
            | (self.proto as u64) << 24
            | (self.v6 as u64) << 16
            | self.zone as u64;
        let mut h = seed;
        for w in [a, b, c] {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 32;
        }
        h.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ (h >> 29)
    }

    /// The word that holds everything but the addresses (the table's layout).
    pub(crate) fn pack(&self) -> u64 {
        (self.sport as u64) << 48
            | (self.dport as u64) << 32
            | (self.proto as u64) << 24
            | (self.v6 as u64) << 16
            | self.zone as u64
    }

    pub(crate) fn unpack(src: u128, dst: u128, w: u64) -> Tuple {
        Tuple {
            src,
            dst,
            sport: (w >> 48) as u16,
            dport: (w >> 32) as u16,
            proto: (w >> 24) as u8,
            v6: (w >> 16) & 1 != 0,
            zone: w as u16,
        }
    }
}

pub fn ip(a: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::from(a as u32))
    }
}

pub fn ip_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v) => (u32::from(v) as u128, false),
        IpAddr::V6(v) => (u128::from(v), true),
    }
}

/// What a packet is, to the tracker.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A packet of a connection (TCP with its header's offset from the frame start).
    Conn(Tuple),
    /// An ICMP error: the connection is found from the header it quotes.
    IcmpError,
    /// Cannot be tracked on its own: a later fragment (the tracker finds its ports from
    /// its datagram's first fragment, see [`super::frag`]), a truncated header, an ICMP
    /// type that is neither a request, an answer nor an error.
    Invalid,
}

fn rd16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// Read a packet's tuple (zone `zone`). `key` and `layers` are what extraction found.
pub fn classify(pkt: &Packet, layers: &Layers, key: &Flow, zone: u16) -> Kind {
    let v6 = match key.dl_type() {
        ethertype::IPV4 => false,
        ethertype::IPV6 => true,
        _ => return Kind::Invalid,
    };
    if key.nw_frag() & frag::LATER != 0 || layers.l3 == 0 {
        return Kind::Invalid;
    }
    let (src, dst) = if v6 {
        (key.ipv6_src(), key.ipv6_dst())
    } else {
        (key.nw_src() as u128, key.nw_dst() as u128)
    };
    let proto = key.nw_proto();
    let mut t = Tuple {
        src,
        dst,
        sport: 0,
        dport: 0,
        proto,
        v6,
        zone,
    };
    let d = pkt.data();
    let l4 = layers.l4 as usize;
    match proto {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP => {
            if l4 == 0 {
                return Kind::Invalid;
            }
            t.sport = key.tp_src();
            t.dport = key.tp_dst();
        }
        ipproto::ICMP | ipproto::ICMPV6 if (proto == ipproto::ICMPV6) == v6 => {
            if l4 == 0 {
                return Kind::Invalid;
            }
            let typ = key.tp_src() as u8;
            let code = key.tp_dst() as u8;
            if icmp_is_error(v6, typ) {
                return Kind::IcmpError;
            }
            if !icmp_pairs(v6).iter().any(|&(q, a)| q == typ || a == typ) {
                return Kind::Invalid;
            }
            let Some(id) = rd16(d, l4 + 4) else {
                return Kind::Invalid;
            };
            t.sport = id;
            t.dport = (typ as u16) << 8 | code as u16;
        }
        _ => {}
    }
    Kind::Conn(t)
}

/// The TCP payload length of a frame, from the IP header's own length (Ethernet padding
/// is not payload), and the offset of its TCP header.
pub fn tcp_payload(pkt: &Packet, layers: &Layers, v6: bool) -> Option<(usize, u32)> {
    let d = pkt.data();
    let (l3, l4) = (layers.l3 as usize, layers.l4 as usize);
    let thl = ((*d.get(l4 + 12)? >> 4) as usize) * 4;
    let ip_end = if v6 {
        l3 + 40 + rd16(d, l3 + 4)? as usize
    } else {
        let tot = rd16(d, l3 + 2)? as usize;
        // A TSO frame may carry 0 (or a stale value) for lengths the field cannot hold.
        if tot == 0 { d.len() } else { l3 + tot }
    };
    let end = ip_end.min(d.len());
    Some((l4, end.saturating_sub(l4 + thl) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_echo_reverses_to_its_reply() {
        let t = Tuple {
            src: 1,
            dst: 2,
            sport: 77,
            dport: 8 << 8,
            proto: ipproto::ICMP,
            v6: false,
            zone: 3,
        };
        let r = t.reverse();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (2, 1, 77, 0));
        assert_eq!(r.reverse(), t);
        let u = Tuple {
            sport: 1000,
            dport: 53,
            proto: ipproto::UDP,
            ..t
        };
        assert_eq!(u.reverse().reverse(), u);
        assert_eq!((u.reverse().sport, u.reverse().dport), (53, 1000));
        assert_ne!(u.hash(1), u.reverse().hash(1));
        assert_eq!(Tuple::unpack(u.src, u.dst, u.pack()), u);
    }
}
