//! NAT on a packet's bytes: addresses, ports and ICMP query identifiers, and the header
//! an ICMP error quotes, with every checksum kept right (Linux `nf_nat_proto.c`).
//!
//! The connection table decides *what* a packet becomes; this module only writes it:
//!
//! - [`nat_packet`] rewrites a packet of a NATed connection;
//! - [`icmp_error_quote`] reads the tuple an ICMP error quotes, for the table to find the
//!   connection the error is about;
//! - [`nat_icmp_error`] rewrites such an error (the quoted packet and the outer header),
//!   as `nf_nat_icmp_reply_translation` does.
//!
//! Checksums are updated as [`crate::dp::exec`] does for `set_field`: incrementally
//! (RFC 1624) when the field holds a full checksum, for the pseudo-header part only when
//! it is partial (virtio-net `NEEDS_CSUM` with `csum_start` at the transport header, or
//! any TSO/USO super-frame), never for a UDP-over-IPv4 checksum of zero ("none").
//! SCTP's CRC-32C is recomputed. Every offset is checked before the first byte is
//! written, so a packet is either rewritten whole or left as it was.

use std::net::IpAddr;

use crate::dp::exec::{L4Csum, l4_csum, rd16, rd32, rd128, set_sctp_ports, wr16, wr32, wr128};
use crate::dp::packet::Packet;
use crate::flow::Layers;
use crate::wire::checksum::{checksum, fold, pseudo_header_v6, sum, update32};
use crate::wire::virtio::VirtioNetHdr;
use crate::wire::walk_ext_headers;
use vswitch_proto::field::{ethertype, ipproto};
use vswitch_proto::flow::{Flow, frag};

/// One end of a tuple after NAT: the address and, for TCP, UDP and SCTP, the port; for an
/// ICMP query (echo, timestamp, ...), its identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    /// `None` keeps the packet's port (or identifier).
    pub port: Option<u16>,
}

impl Endpoint {
    /// An endpoint that changes only the address.
    pub fn addr(addr: impl Into<IpAddr>) -> Endpoint {
        Endpoint {
            addr: addr.into(),
            port: None,
        }
    }

    /// An endpoint that changes the address and the port (or ICMP identifier).
    pub fn with_port(addr: impl Into<IpAddr>, port: u16) -> Endpoint {
        Endpoint {
            addr: addr.into(),
            port: Some(port),
        }
    }
}

/// The tuple of the packet an ICMP error quotes (RFC 792, RFC 4443 §2.4(c)): what the
/// connection table looks up to find the connection the error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quoted {
    /// The quoted packet's transport protocol.
    pub proto: u8,
    /// The quoted packet's own source and destination: it went the other way, so `src` is
    /// usually the error's destination.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TCP, UDP, SCTP ports; 0 for other protocols.
    pub sport: u16,
    pub dport: u16,
    /// For a quoted ICMP query (echo request or reply, ...): its identifier.
    pub icmp_id: Option<u16>,
    /// For a quoted ICMP query: its type (which direction it went). 0 otherwise.
    pub icmp_type: u8,
    /// The error's own ICMP type and code (e.g. 3/4, "fragmentation needed").
    pub error_type: u8,
    pub error_code: u8,
}

/// The IP header of the packet, checked.
#[derive(Clone, Copy)]
struct Ip {
    l3: usize,
    v6: bool,
    /// The end of the IP header proper (IPv4 with options; IPv6 without extension headers).
    hdr_end: usize,
    /// The end of the IP packet (any Ethernet padding excluded).
    end: usize,
}

impl Ip {
    fn src_at(&self) -> usize {
        self.l3 + if self.v6 { 8 } else { 12 }
    }
    fn dst_at(&self) -> usize {
        self.l3 + if self.v6 { 24 } else { 16 }
    }
    /// The IPv4 header checksum's offset.
    fn hcsum(&self) -> Option<usize> {
        (!self.v6).then_some(self.l3 + 10)
    }
}

/// Parse an IP header at `l3` of `d`: version `v6`, complete, its length fields within `d`.
fn ip_at(d: &[u8], l3: usize, v6: bool) -> Option<Ip> {
    if v6 {
        let hdr_end = l3.checked_add(40)?;
        if hdr_end > d.len() || d[l3] >> 4 != 6 {
            return None;
        }
        let end = hdr_end + usize::from(rd16(d, l3 + 4));
        (end <= d.len()).then_some(Ip {
            l3,
            v6,
            hdr_end,
            end,
        })
    } else {
        if l3.checked_add(20)? > d.len() || d[l3] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(d[l3] & 0x0f) * 4;
        let end = l3 + usize::from(rd16(d, l3 + 2));
        (ihl >= 20 && end >= l3 + ihl && end <= d.len()).then_some(Ip {
            l3,
            v6,
            hdr_end: l3 + ihl,
            end,
        })
    }
}

/// The packet's (outer) IP header, as `key` and `layers` describe it.
fn outer_ip(pkt: &Packet, key: &Flow, layers: &Layers) -> Option<Ip> {
    let v6 = match key.dl_type() {
        ethertype::IPV4 => false,
        ethertype::IPV6 => true,
        _ => return None,
    };
    if layers.l3 == 0 {
        return None;
    }
    ip_at(pkt.data(), layers.l3 as usize, v6)
}

/// Whether an ICMP (`v6`: ICMPv6) message of type `t` is a query with an identifier that
/// conntrack tracks (Linux's `invmap` in nf_conntrack_proto_icmp*.c).
fn is_icmp_query(t: u8, v6: bool) -> bool {
    if v6 {
        matches!(t, 128 | 129 | 139 | 140)
    } else {
        matches!(t, 0 | 8 | 13..=18)
    }
}

fn same_family(a: &Option<Endpoint>, v6: bool) -> bool {
    a.is_none_or(|e| e.addr.is_ipv6() == v6)
}

/// Write `new` over the address at `at`, updating the IPv4 header checksum at `hcsum` and
/// the pseudo-header part of the transport checksum `l4`.
fn write_addr(d: &mut [u8], at: usize, new: IpAddr, hcsum: Option<usize>, l4: Option<L4Csum>) {
    match new {
        IpAddr::V4(a) => {
            let (old, new) = (rd32(d, at), a.to_bits());
            wr32(d, at, new);
            if let Some(h) = hcsum {
                let c = update32(rd16(d, h), old, new);
                wr16(d, h, c);
            }
            if let Some(c) = l4 {
                c.pseudo32(d, old, new);
            }
        }
        IpAddr::V6(a) => {
            let (old, new) = (rd128(d, at), a.to_bits());
            wr128(d, at, new);
            if let Some(c) = l4 {
                c.pseudo128(d, old, new);
            }
        }
    }
}

/// Write `new` over the 16-bit field at `at` (a port, an ICMP identifier), updating the
/// transport checksum `l4`.
fn write16(d: &mut [u8], at: usize, new: u16, l4: Option<L4Csum>) {
    let old = rd16(d, at);
    wr16(d, at, new);
    if let Some(c) = l4 {
        c.data(d, &old.to_be_bytes(), &new.to_be_bytes());
    }
}

/// What to do to the transport header.
enum L4Plan {
    /// Nothing there to change: a later fragment, or a protocol without ports.
    None,
    /// TCP or UDP ports at `l4`, with the checksum `csum` (absent: none to update).
    Ports { l4: usize, csum: Option<L4Csum> },
    /// SCTP ports at `l4`; `crc`: recompute the CRC-32C (not for a partial CRC, nor for a
    /// fragment, whose CRC covers bytes that are not here).
    Sctp { l4: usize, crc: bool },
    /// An ICMP message at `l4`, whose checksum follows address changes (ICMPv6); `id`:
    /// it is a query whose identifier may change.
    Icmp {
        l4: usize,
        csum: Option<L4Csum>,
        id: bool,
    },
}

/// Rewrite the packet's source and/or destination: the address (IPv4 or IPv6) and, when
/// the endpoint has a port, the TCP, UDP or SCTP port, or the identifier of an ICMP or
/// ICMPv6 query (echo, timestamp, ...: taken from `src`'s port, else `dst`'s). Ports of
/// other protocols are ignored.
///
/// The IPv4 header checksum and the transport checksum stay right: full checksums are
/// updated incrementally; partial ones (`NEEDS_CSUM` at the transport header, TSO/USO
/// super-frames) for their pseudo-header part only; a UDP-over-IPv4 checksum of zero stays
/// zero; SCTP's CRC-32C is recomputed (keeping any error it had). A later fragment (no
/// transport header) gets only its addresses changed.
///
/// Returns false and leaves the packet unchanged if the packet is not IP as `key` and
/// `layers` say, an endpoint is of the other address family, or the packet is too short
/// for what must be written (a transport header shorter than its fixed part).
pub fn nat_packet(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    src: Option<Endpoint>,
    dst: Option<Endpoint>,
) -> bool {
    let Some(ip) = outer_ip(pkt, key, layers) else {
        return false;
    };
    if !same_family(&src, ip.v6) || !same_family(&dst, ip.v6) {
        return false;
    }
    let Some(plan) = plan_l4(pkt, key, layers, &ip) else {
        return false;
    };
    let (sport, dport) = (src.and_then(|e| e.port), dst.and_then(|e| e.port));
    let csum = match plan {
        L4Plan::Ports { csum, .. } | L4Plan::Icmp { csum, .. } => csum,
        L4Plan::None | L4Plan::Sctp { .. } => None,
    };
    let d = pkt.data_mut();
    if let Some(e) = src {
        write_addr(d, ip.src_at(), e.addr, ip.hcsum(), csum);
    }
    if let Some(e) = dst {
        write_addr(d, ip.dst_at(), e.addr, ip.hcsum(), csum);
    }
    match plan {
        L4Plan::None => {}
        L4Plan::Ports { l4, csum } => {
            for (p, at) in [(sport, l4), (dport, l4 + 2)] {
                if let Some(p) = p {
                    write16(d, at, p, csum);
                }
            }
        }
        L4Plan::Sctp { l4, crc } => {
            if crc {
                set_sctp_ports(pkt, key, layers, sport, dport);
            } else {
                for (p, at) in [(sport, l4), (dport, l4 + 2)] {
                    if let Some(p) = p {
                        wr16(d, at, p);
                    }
                }
            }
        }
        L4Plan::Icmp { l4, csum, id } => {
            if let (true, Some(p)) = (id, sport.or(dport)) {
                write16(d, l4 + 4, p, csum);
            }
        }
    }
    true
}

/// Check the transport header of the packet and work out what to do to it; `None` if it
/// is missing or too short.
fn plan_l4(pkt: &Packet, key: &Flow, layers: &Layers, ip: &Ip) -> Option<L4Plan> {
    if key.nw_frag() & frag::LATER != 0 {
        return Some(L4Plan::None);
    }
    let l4 = layers.l4 as usize;
    if l4 < ip.hdr_end || l4 > ip.end {
        // No transport header where one should be (a malformed extension header chain).
        return None;
    }
    let fits = |n: usize| (l4 + n <= ip.end).then_some(());
    let partial_csum = || {
        l4_csum(pkt, key, layers).map(|mut c| {
            // A super-frame's checksum is partial whatever csum_start says.
            c.partial |= pkt.vnet.gso_kind() != VirtioNetHdr::GSO_NONE;
            c
        })
    };
    Some(match key.nw_proto() {
        ipproto::TCP => {
            fits(20)?;
            L4Plan::Ports {
                l4,
                csum: partial_csum(),
            }
        }
        ipproto::UDP => {
            fits(8)?;
            L4Plan::Ports {
                l4,
                csum: partial_csum(),
            }
        }
        ipproto::SCTP => {
            fits(12)?;
            let partial = pkt.vnet.needs_csum() && usize::from(pkt.vnet.csum_start) == l4;
            L4Plan::Sctp {
                l4,
                crc: !partial && key.nw_frag() & frag::ANY == 0,
            }
        }
        p @ (ipproto::ICMP | ipproto::ICMPV6) if (p == ipproto::ICMPV6) == ip.v6 => {
            fits(8)?;
            L4Plan::Icmp {
                l4,
                csum: partial_csum(),
                id: is_icmp_query(pkt.data()[l4], ip.v6),
            }
        }
        _ => L4Plan::None,
    })
}

/// Where the parts of an ICMP error are.
struct ErrorLayout {
    outer: Ip,
    /// The outer ICMP header.
    l4: usize,
    /// The quoted IP header; its `end` is the end of the quote.
    inner: Ip,
    /// The quoted transport header, and how many of its bytes the quote holds.
    inner_l4: usize,
    quoted: Quoted,
}

fn parse_error(pkt: &Packet, key: &Flow, layers: &Layers) -> Option<ErrorLayout> {
    let outer = outer_ip(pkt, key, layers)?;
    let d = pkt.data();
    let want = if outer.v6 {
        ipproto::ICMPV6
    } else {
        ipproto::ICMP
    };
    // A fragmented error is reassembled before conntrack sees it.
    if key.nw_proto() != want || key.nw_frag() != 0 {
        return None;
    }
    let l4 = layers.l4 as usize;
    if l4 < outer.hdr_end || l4 + 8 > outer.end {
        return None;
    }
    let (error_type, error_code) = (d[l4], d[l4 + 1]);
    let is_error = if outer.v6 {
        matches!(error_type, 1..=4)
    } else {
        matches!(error_type, 3 | 4 | 5 | 11 | 12)
    };
    if !is_error {
        return None;
    }
    let il3 = l4 + 8;
    // The quote: the IP header, complete, then what the sender kept of the rest; its
    // length fields describe the original packet, not the quote.
    let quote = &d[..outer.end];
    let (inner, proto, il4) = if outer.v6 {
        if il3 + 40 > quote.len() || quote[il3] >> 4 != 6 {
            return None;
        }
        let walk = walk_ext_headers(quote[il3 + 6], &quote[il3 + 40..]).ok()?;
        if walk.is_later_fragment() {
            return None;
        }
        let hdr_end = il3 + 40;
        (
            Ip {
                l3: il3,
                v6: true,
                hdr_end,
                end: outer.end,
            },
            walk.proto,
            hdr_end + walk.offset,
        )
    } else {
        if il3 + 20 > quote.len() || quote[il3] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(quote[il3] & 0x0f) * 4;
        // A later fragment quotes no transport header.
        if ihl < 20 || il3 + ihl > quote.len() || rd16(quote, il3 + 6) & 0x1fff != 0 {
            return None;
        }
        let ip = Ip {
            l3: il3,
            v6: false,
            hdr_end: il3 + ihl,
            end: outer.end,
        };
        (ip, quote[il3 + 9], il3 + ihl)
    };
    let addr = |at: usize| -> IpAddr {
        if outer.v6 {
            std::net::Ipv6Addr::from_bits(rd128(quote, at)).into()
        } else {
            std::net::Ipv4Addr::from_bits(rd32(quote, at)).into()
        }
    };
    let mut quoted = Quoted {
        proto,
        src: addr(inner.src_at()),
        dst: addr(inner.dst_at()),
        sport: 0,
        dport: 0,
        icmp_id: None,
        icmp_type: 0,
        error_type,
        error_code,
    };
    match proto {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP => {
            if il4 + 8 > quote.len() {
                return None;
            }
            quoted.sport = rd16(quote, il4);
            quoted.dport = rd16(quote, il4 + 2);
        }
        p @ (ipproto::ICMP | ipproto::ICMPV6) if (p == ipproto::ICMPV6) == outer.v6 => {
            // No error is sent about an error (RFC 1122 §3.2.2, RFC 4443 §2.4(e)), and
            // conntrack relates one only to a query it tracks.
            if il4 + 8 > quote.len() || !is_icmp_query(quote[il4], outer.v6) {
                return None;
            }
            quoted.icmp_type = quote[il4];
            quoted.icmp_id = Some(rd16(quote, il4 + 4));
        }
        _ => {}
    }
    Some(ErrorLayout {
        outer,
        l4,
        inner,
        inner_l4: il4,
        quoted,
    })
}

/// The tuple quoted inside an ICMP error: ICMPv4 destination unreachable (3, including
/// fragmentation needed), source quench (4), redirect (5), time exceeded (11), parameter
/// problem (12); ICMPv6 destination unreachable (1), packet too big (2), time exceeded (3),
/// parameter problem (4).
///
/// `None` if the packet is not such an error, or the quote is not usable as Linux requires:
/// the quoted IP header complete (IPv6: with its extension headers), not a later fragment,
/// at least 8 bytes of a quoted TCP, UDP, SCTP or ICMP header, an ICMP one a query (echo,
/// ...), not another error.
pub fn icmp_error_quote(pkt: &Packet, key: &Flow, layers: &Layers) -> Option<Quoted> {
    parse_error(pkt, key, layers).map(|e| e.quoted)
}

/// Rewrite an ICMP error about a NATed connection, as Linux's
/// `nf_nat_icmp_reply_translation` does: the quoted packet's source and destination
/// (`inner_src`, `inner_dst`: the quoted packet's own fields; ports, or the identifier of a
/// quoted ICMP query, from their `port`), keeping the quoted IPv4 header checksum right and
/// updating the quoted transport checksum when the quote holds it (UDP always; TCP when the
/// quote has its 20-byte header; a quoted SCTP CRC is left alone, it covers bytes that are
/// not quoted); then the outer addresses; then the ICMP checksum, recomputed over the
/// whole message (ICMPv6: with the pseudo-header), or for a partial one (`NEEDS_CSUM` at
/// the ICMP header) updated for the pseudo-header part.
///
/// Returns false and leaves the packet unchanged if [`icmp_error_quote`] finds no usable
/// quote, an address is of the other family, the error's checksum is wrong (Linux drops
/// such errors rather than NAT them into valid ones), or it is an ICMPv4 redirect, which
/// Linux drops for a NATed connection (the hosts would talk past the translation): the
/// caller should drop the packet.
#[allow(clippy::too_many_arguments)]
pub fn nat_icmp_error(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    outer_src: Option<IpAddr>,
    outer_dst: Option<IpAddr>,
    inner_src: Option<Endpoint>,
    inner_dst: Option<Endpoint>,
) -> bool {
    let Some(e) = parse_error(pkt, key, layers) else {
        return false;
    };
    let v6 = e.outer.v6;
    let fam = |a: &Option<IpAddr>| a.is_none_or(|a| a.is_ipv6() == v6);
    if !fam(&outer_src)
        || !fam(&outer_dst)
        || !same_family(&inner_src, v6)
        || !same_family(&inner_dst, v6)
    {
        return false;
    }
    if !v6 && e.quoted.error_type == 5 {
        return false;
    }
    let l4 = e.l4;
    let msg_len = (e.outer.end - l4) as u32;
    let partial = pkt.vnet.needs_csum() && usize::from(pkt.vnet.csum_start) == l4;
    let icmp_sum = |d: &[u8]| -> u32 {
        let pseudo = if v6 {
            let a = |at| std::net::Ipv6Addr::from_bits(rd128(d, at));
            pseudo_header_v6(
                a(e.outer.src_at()),
                a(e.outer.dst_at()),
                ipproto::ICMPV6,
                msg_len,
            )
        } else {
            0
        };
        sum(&d[l4..e.outer.end], pseudo)
    };
    if !partial && fold(icmp_sum(pkt.data())) != 0xffff {
        return false;
    }

    // The quoted transport checksum: always a full one (the quote is data).
    let q = e.quoted;
    let il4 = e.inner_l4;
    let qlen = e.outer.end.saturating_sub(il4);
    let inner_csum = |at: usize, need: usize, pseudo: bool| {
        (qlen >= need).then_some(L4Csum {
            at: il4 + at,
            partial: false,
            udp4: q.proto == ipproto::UDP && !v6,
            udp: q.proto == ipproto::UDP,
            pseudo,
        })
    };
    let (icsum, ports_at_l4, id_at) = match q.proto {
        ipproto::TCP => (inner_csum(16, 20, true), true, false),
        ipproto::UDP => (inner_csum(6, 8, true), true, false),
        ipproto::SCTP => (None, true, false),
        ipproto::ICMP | ipproto::ICMPV6 if q.icmp_id.is_some() => {
            (inner_csum(2, 8, v6), false, true)
        }
        _ => (None, false, false),
    };
    let outer_csum = if partial {
        l4_csum(pkt, key, layers)
    } else {
        None
    };

    let d = pkt.data_mut();
    let inner = e.inner;
    if let Some(ep) = inner_src {
        write_addr(d, inner.src_at(), ep.addr, inner.hcsum(), icsum);
    }
    if let Some(ep) = inner_dst {
        write_addr(d, inner.dst_at(), ep.addr, inner.hcsum(), icsum);
    }
    let (sport, dport) = (
        inner_src.and_then(|e| e.port),
        inner_dst.and_then(|e| e.port),
    );
    if ports_at_l4 {
        for (p, at) in [(sport, il4), (dport, il4 + 2)] {
            if let Some(p) = p {
                write16(d, at, p, icsum);
            }
        }
    } else if let (true, Some(p)) = (id_at, sport.or(dport)) {
        write16(d, il4 + 4, p, icsum);
    }

    if let Some(a) = outer_src {
        write_addr(d, e.outer.src_at(), a, e.outer.hcsum(), outer_csum);
    }
    if let Some(a) = outer_dst {
        write_addr(d, e.outer.dst_at(), a, e.outer.hcsum(), outer_csum);
    }
    if !partial {
        wr16(d, l4 + 2, 0);
        let c = !fold(icmp_sum(d));
        wr16(d, l4 + 2, c);
    }
    true
}

/// Whether the IPv4 header at `l3` of `frame` is complete and its checksum verifies.
/// `None` if there is no complete IPv4 header there. For tests and fuzzing.
pub fn ipv4_header_ok(frame: &[u8], l3: usize) -> Option<bool> {
    let ihl = usize::from(*frame.get(l3)? & 0x0f) * 4;
    if frame[l3] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let hdr = frame.get(l3..l3.checked_add(ihl)?)?;
    Some(checksum(hdr) == 0)
}

#[cfg(test)]
mod tests;
