//! Frames the switch itself sends: ARP and NDP answers, ICMP echo replies and
//! errors, TCP resets, and VXLAN encapsulation.
//!
//! Every builder writes a complete Ethernet frame, all checksums filled, into
//! a caller-provided `Vec<u8>`, which it clears first so one buffer can be
//! reused. On `Err` the buffer is left empty.
//!
//! Builders that answer a frame send the answer back on the same VLAN: the
//! VLAN tags of the frame (0, 1 or 2) are copied into the answer. They only
//! check what makes an answer wrong or harmful (e.g. answering an ICMP error
//! with an ICMP error); which frames deserve an answer is the caller's policy.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::arp::{ArpOperation, ArpPacket, ArpRepr};
use super::ethernet::{self, EtherType, EthernetFrame};
use super::icmpv4::{self, Icmpv4Message, Icmpv4Packet};
use super::icmpv6::{self, Icmpv6Message, Icmpv6Packet, NdpFlags, NdpRepr};
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::ipv6::{self, ExtWalk, Ipv6Packet, Ipv6Repr};
use super::tcp::{self, TcpPacket, TcpRepr};
use super::udp::{self, UdpPacket, UdpRepr};
use super::vlan::{L2Layout, l2_layout};
use super::vxlan::{self, VxlanPacket, VxlanRepr};
use super::{Error, EthernetAddress, IpPair, IpProtocol, Result, walk_ext_headers};

/// The hop limit / TTL of packets the switch originates.
const HOP_LIMIT: u8 = 64;

/// An ICMPv4 error must fit in 576 bytes of IP (RFC 1812 §4.3.2.3).
const ICMPV4_ERROR_MAX: usize = 576;

/// An ICMPv6 error must fit in the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
const ICMPV6_ERROR_MAX: usize = 1280;

/// IP precedence "internetwork control" for ICMPv4 errors, as Linux sends them.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

/// The bytes VXLAN over IPv4 adds: Ethernet 14, IPv4 20, UDP 8, VXLAN 8.
pub const VXLAN_OVERHEAD: usize =
    ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;

/// The outer headers of a VXLAN-encapsulated frame (IPv4 underlay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanOuter {
    /// Outer Ethernet source.
    pub src_mac: EthernetAddress,
    /// Outer Ethernet destination (the next hop towards the remote VTEP).
    pub dst_mac: EthernetAddress,
    /// Local VTEP address.
    pub src_ip: Ipv4Addr,
    /// Remote VTEP address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port; usually a hash of the inner flow, for ECMP.
    pub src_port: u16,
    /// UDP destination port, usually [`vxlan::DEFAULT_PORT`].
    pub dst_port: u16,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Outer TTL.
    pub ttl: u8,
    /// Outer TOS byte (DSCP and ECN).
    pub tos: u8,
    /// Outer Don't Fragment flag. The identification is always 0, so a
    /// tunnel whose packets may be fragmented on the way should set it.
    pub dont_frag: bool,
    /// Compute the outer UDP checksum; otherwise send 0 (allowed over IPv4).
    pub udp_checksum: bool,
}

/// What [`vxlan_decap`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanDecap<'a> {
    /// Outer IPv4 source (the remote VTEP).
    pub src_ip: Ipv4Addr,
    /// Outer IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// Outer UDP source port.
    pub src_port: u16,
    /// Outer UDP destination port.
    pub dst_port: u16,
    /// VXLAN network identifier.
    pub vni: u32,
    /// The inner Ethernet frame, a slice of the input.
    pub inner: &'a [u8],
}

/// Answer an ARP request with the reply for `answer_mac`: Ethernet from
/// `answer_mac` to the requester, operation 2, sender = (`answer_mac`, the
/// requested address), target = the requester.
///
/// `Err` unless `request_frame` is an Ethernet/IPv4 ARP request from a unicast
/// sender MAC. Which addresses to answer for is the caller's choice.
pub fn arp_reply(
    request_frame: &[u8],
    answer_mac: EthernetAddress,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    let l2 = l2_layout(request_frame)?;
    if l2.ethertype != EtherType::Arp {
        return Err(Error);
    }
    let req = ArpRepr::parse(&ArpPacket::new_checked(&request_frame[l2.l3_offset..])?)?;
    let eth_src = EthernetFrame::new_unchecked(request_frame).src_addr();
    if req.operation != ArpOperation::Request
        || !req.source_hardware_addr.is_unicast()
        || !eth_src.is_unicast()
    {
        return Err(Error);
    }
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: answer_mac,
        source_protocol_addr: req.target_protocol_addr,
        target_hardware_addr: req.source_hardware_addr,
        target_protocol_addr: req.source_protocol_addr,
    };
    let l3 = start_frame(
        out,
        eth_src,
        answer_mac,
        tags(request_frame, &l2),
        EtherType::Arp,
        reply.buffer_len(),
    );
    reply.emit(&mut ArpPacket::new_unchecked(&mut out[l3..]));
    Ok(())
}

/// Build a broadcast, untagged ARP request for `target_ip` from
/// (`src_mac`, `src_ip`).
pub fn arp_request(
    src_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
    out: &mut Vec<u8>,
) {
    let req = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: src_mac,
        source_protocol_addr: src_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target_ip,
    };
    let l3 = start_frame(
        out,
        EthernetAddress::BROADCAST,
        src_mac,
        &[],
        EtherType::Arp,
        req.buffer_len(),
    );
    req.emit(&mut ArpPacket::new_unchecked(&mut out[l3..]));
}

/// Answer an ICMPv4 echo request: MACs and IP addresses swapped, TTL 64,
/// type 0, identifier, sequence number and data kept. IP options of the
/// request are not copied.
///
/// `Err` unless the frame is an unfragmented IPv4 echo request with correct
/// checksums, from a unicast source to a unicast destination (a reply to a
/// broadcast ping would need a source address this function does not know).
pub fn icmpv4_echo_reply(request_frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let (l2, ip) = parse_ipv4(request_frame)?;
    let eth = EthernetFrame::new_unchecked(request_frame);
    if ip.is_fragment()
        || ip.next_header() != IpProtocol::Icmp
        || !is_unicast_v4(ip.src_addr())
        || !is_unicast_v4(ip.dst_addr())
        || !eth.src_addr().is_unicast()
    {
        return Err(Error);
    }
    let icmp = Icmpv4Packet::new_checked(ip.payload())?;
    if icmp.msg_type() != Icmpv4Message::EchoRequest
        || icmp.msg_code() != 0
        || !icmp.verify_checksum()
    {
        return Err(Error);
    }
    let msg = icmp.into_inner();
    let ip_repr = Ipv4Repr {
        src_addr: ip.dst_addr(),
        dst_addr: ip.src_addr(),
        next_header: IpProtocol::Icmp,
        payload_len: msg.len(),
        hop_limit: HOP_LIMIT,
        tos: ip.tos(),
        ident: ip.ident(),
        dont_frag: false,
    };
    let l3 = start_frame(
        out,
        eth.src_addr(),
        eth.dst_addr(),
        tags(request_frame, &l2),
        EtherType::Ipv4,
        ipv4::HEADER_LEN + msg.len(),
    );
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[l3..]));
    let l4 = l3 + ipv4::HEADER_LEN;
    out[l4..].copy_from_slice(msg);
    let mut reply = Icmpv4Packet::new_unchecked(&mut out[l4..]);
    reply.set_msg_type(Icmpv4Message::EchoReply);
    reply.fill_checksum();
    Ok(())
}

/// Build an ICMPv4 Destination Unreachable (type 3) with `code` about
/// `original_frame`, from (`src_mac`, `src_ip`) back to the original sender
/// (Ethernet destination = the original source MAC). For code 4
/// (fragmentation needed) pass the next-hop MTU (RFC 1191); it is written
/// whenever given. The message quotes the original IP header and as much of
/// its datagram as keeps the IP packet within 576 bytes.
///
/// Returns `Err` instead of answering (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7):
/// an ICMP error or an ICMP message whose type cannot be read, a non-first
/// fragment, a packet to an IP or Ethernet broadcast or multicast address, a
/// packet whose source is not a unicast address, and malformed packets
/// (including a wrong IP header checksum).
pub fn icmpv4_unreachable(
    original_frame: &[u8],
    code: u8,
    src_mac: EthernetAddress,
    src_ip: Ipv4Addr,
    next_hop_mtu: Option<u16>,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    let (l2, ip) = parse_ipv4(original_frame)?;
    let eth = EthernetFrame::new_unchecked(original_frame);
    if ip.frag_offset() != 0
        || !is_unicast_v4(ip.src_addr())
        || !is_unicast_v4(ip.dst_addr())
        || !eth.src_addr().is_unicast()
        || !eth.dst_addr().is_unicast()
    {
        return Err(Error);
    }
    if ip.next_header() == IpProtocol::Icmp {
        let msg_type = *ip.payload().first().ok_or(Error)?;
        if Icmpv4Message::from(msg_type).is_error() {
            return Err(Error);
        }
    }
    let ip_len = usize::from(ip.total_len());
    let quoted_len = ip_len.min(ICMPV4_ERROR_MAX - ipv4::HEADER_LEN - icmpv4::HEADER_LEN);
    let quoted = &original_frame[l2.l3_offset..l2.l3_offset + quoted_len];
    let icmp_len = icmpv4::HEADER_LEN + quoted_len;
    let ip_repr = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: ip.src_addr(),
        next_header: IpProtocol::Icmp,
        payload_len: icmp_len,
        hop_limit: HOP_LIMIT,
        tos: TOS_INTERNETWORK_CONTROL,
        ident: 0,
        dont_frag: false,
    };
    let l3 = start_frame(
        out,
        eth.src_addr(),
        src_mac,
        tags(original_frame, &l2),
        EtherType::Ipv4,
        ipv4::HEADER_LEN + icmp_len,
    );
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[l3..]));
    let mut icmp = Icmpv4Packet::new_unchecked(&mut out[l3 + ipv4::HEADER_LEN..]);
    icmp.set_msg_type(Icmpv4Message::DstUnreachable);
    icmp.set_msg_code(code);
    icmp.clear_rest();
    if let Some(mtu) = next_hop_mtu {
        icmp.set_next_hop_mtu(mtu);
    }
    icmp.data_mut().copy_from_slice(quoted);
    icmp.fill_checksum();
    Ok(())
}

/// Answer an ICMPv6 echo request: MACs and IPv6 addresses swapped, hop limit
/// 64, type 129, identifier, sequence number and data kept; extension
/// headers of the request are not copied.
///
/// `Err` unless the frame is an unfragmented IPv6 echo request with a correct
/// checksum, from a unicast source to a unicast destination.
pub fn icmpv6_echo_reply(request_frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let (l2, ip, walk) = parse_ipv6(request_frame)?;
    let eth = EthernetFrame::new_unchecked(request_frame);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if walk.frag.is_some()
        || walk.proto != u8::from(IpProtocol::Icmpv6)
        || !is_unicast_v6(src)
        || !is_unicast_v6(dst)
        || !eth.src_addr().is_unicast()
    {
        return Err(Error);
    }
    let icmp = Icmpv6Packet::new_checked(&ip.payload()[walk.offset..])?;
    if icmp.msg_type() != Icmpv6Message::EchoRequest
        || icmp.msg_code() != 0
        || !icmp.verify_checksum(src, dst)
    {
        return Err(Error);
    }
    let msg = icmp.into_inner();
    let ip_repr = Ipv6Repr {
        src_addr: dst,
        dst_addr: src,
        next_header: IpProtocol::Icmpv6,
        payload_len: msg.len(),
        hop_limit: HOP_LIMIT,
    };
    let l3 = start_frame(
        out,
        eth.src_addr(),
        eth.dst_addr(),
        tags(request_frame, &l2),
        EtherType::Ipv6,
        ipv6::HEADER_LEN + msg.len(),
    );
    ip_repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[l3..]));
    let l4 = l3 + ipv6::HEADER_LEN;
    out[l4..].copy_from_slice(msg);
    let mut reply = Icmpv6Packet::new_unchecked(&mut out[l4..]);
    reply.set_msg_type(Icmpv6Message::EchoReply);
    reply.fill_checksum(dst, src);
    Ok(())
}

/// Build an ICMPv6 Destination Unreachable (type 1) with `code` about
/// `original_frame`, from (`src_mac`, `src_ip`) back to the original sender.
/// It quotes as much of the original packet as keeps the message within 1280
/// bytes.
///
/// Returns `Err` instead of answering (RFC 4443 §2.4 (e)): an ICMPv6 error or
/// Redirect, a non-first fragment, a packet to a multicast IPv6 or Ethernet
/// address, a packet from the unspecified or a multicast address, and
/// malformed packets (including malformed extension headers).
pub fn icmpv6_unreachable(
    original_frame: &[u8],
    code: u8,
    src_mac: EthernetAddress,
    src_ip: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Result<()> {
    icmpv6_error(
        original_frame,
        Icmpv6Message::DstUnreachable,
        code,
        0,
        false,
        src_mac,
        src_ip,
        out,
    )
}

/// Build an ICMPv6 Packet Too Big (type 2) carrying `mtu` about
/// `original_frame`, like [`icmpv6_unreachable`] except that a packet to a
/// multicast destination is answered, as RFC 4443 §2.4 (e.3) allows for Path
/// MTU Discovery.
pub fn icmpv6_packet_too_big(
    original_frame: &[u8],
    mtu: u32,
    src_mac: EthernetAddress,
    src_ip: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Result<()> {
    icmpv6_error(
        original_frame,
        Icmpv6Message::PktTooBig,
        0,
        mtu,
        true,
        src_mac,
        src_ip,
        out,
    )
}

#[allow(clippy::too_many_arguments)]
fn icmpv6_error(
    original_frame: &[u8],
    msg_type: Icmpv6Message,
    code: u8,
    rest: u32,
    to_multicast: bool,
    src_mac: EthernetAddress,
    src_ip: Ipv6Addr,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    let (l2, ip, walk) = parse_ipv6(original_frame)?;
    let eth = EthernetFrame::new_unchecked(original_frame);
    if !is_unicast_v6(ip.src_addr())
        || !eth.src_addr().is_unicast()
        || walk.is_later_fragment()
        || (!to_multicast && (ip.dst_addr().is_multicast() || eth.dst_addr().is_multicast()))
    {
        return Err(Error);
    }
    if walk.proto == u8::from(IpProtocol::Icmpv6) {
        let t = Icmpv6Message::from(*ip.payload().get(walk.offset).ok_or(Error)?);
        if t.is_error() || t == Icmpv6Message::Redirect {
            return Err(Error);
        }
    }
    let ip_len = ipv6::HEADER_LEN + usize::from(ip.payload_len());
    let quoted_len = ip_len.min(ICMPV6_ERROR_MAX - ipv6::HEADER_LEN - icmpv6::HEADER_LEN);
    let quoted = &original_frame[l2.l3_offset..l2.l3_offset + quoted_len];
    let icmp_len = icmpv6::HEADER_LEN + quoted_len;
    let dst_ip = ip.src_addr();
    let ip_repr = Ipv6Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp_len,
        hop_limit: HOP_LIMIT,
    };
    let l3 = start_frame(
        out,
        eth.src_addr(),
        src_mac,
        tags(original_frame, &l2),
        EtherType::Ipv6,
        ipv6::HEADER_LEN + icmp_len,
    );
    ip_repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[l3..]));
    let mut icmp = Icmpv6Packet::new_unchecked(&mut out[l3 + ipv6::HEADER_LEN..]);
    icmp.set_msg_type(msg_type);
    icmp.set_msg_code(code);
    icmp.set_mtu(rest);
    icmp.data_mut().copy_from_slice(quoted);
    icmp.fill_checksum(src_ip, dst_ip);
    Ok(())
}

/// Answer a Neighbor Solicitation with a solicited Neighbor Advertisement
/// for its target, owned by `target_mac`: flags S (unless the solicitation
/// came from the unspecified address, RFC 4861 §7.2.4), O, and R if `router`;
/// a Target Link-Layer Address option; hop limit 255; IPv6 source = the target.
/// It goes to the solicitation's source (Ethernet: the Source Link-Layer
/// Address option, else the frame's source), or to all-nodes (ff02::1) when
/// that source is unspecified (duplicate address detection).
///
/// `Err` unless the frame passes the checks of RFC 4861 §7.1.1: hop limit
/// 255, correct checksum, code 0, unicast target, well-formed options, and
/// for an unspecified source a solicited-node destination and no source
/// link-layer option. Which targets to answer for is the caller's choice.
pub fn ndp_neighbor_advert(
    solicit_frame: &[u8],
    target_mac: EthernetAddress,
    router: bool,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    let (l2, ip, walk) = parse_ipv6(solicit_frame)?;
    let eth = EthernetFrame::new_unchecked(solicit_frame);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if ip.hop_limit() != 255
        || walk.frag.is_some()
        || walk.proto != u8::from(IpProtocol::Icmpv6)
        || src.is_multicast()
        || !eth.src_addr().is_unicast()
    {
        return Err(Error);
    }
    let icmp = Icmpv6Packet::new_checked(&ip.payload()[walk.offset..])?;
    if !icmp.verify_checksum(src, dst) {
        return Err(Error);
    }
    let NdpRepr::NeighborSolicit {
        target_addr,
        lladdr,
    } = NdpRepr::parse(&icmp)?
    else {
        return Err(Error);
    };
    let dad = src.is_unspecified();
    if dad && (lladdr.is_some() || !is_solicited_node(dst)) {
        return Err(Error);
    }
    let (ip_dst, eth_dst) = if dad {
        (
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            EthernetAddress([0x33, 0x33, 0, 0, 0, 1]),
        )
    } else {
        (src, lladdr.unwrap_or(eth.src_addr()))
    };
    let na = NdpRepr::NeighborAdvert {
        flags: NdpFlags {
            router,
            solicited: !dad,
            override_: true,
        },
        target_addr,
        lladdr: Some(target_mac),
    };
    let ip_repr = Ipv6Repr {
        src_addr: target_addr,
        dst_addr: ip_dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: na.buffer_len(),
        hop_limit: 255,
    };
    let l3 = start_frame(
        out,
        eth_dst,
        target_mac,
        tags(solicit_frame, &l2),
        EtherType::Ipv6,
        ipv6::HEADER_LEN + na.buffer_len(),
    );
    ip_repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[l3..]));
    let mut icmp = Icmpv6Packet::new_unchecked(&mut out[l3 + ipv6::HEADER_LEN..]);
    na.emit(&mut icmp);
    icmp.fill_checksum(target_addr, ip_dst);
    Ok(())
}

/// Build the reset a host sends for a segment to a closed port (RFC 9293
/// §3.10.7.1): if the segment has ACK, `seq = its ack` and flags RST;
/// otherwise `seq = 0`, `ack = its seq + payload + SYN + FIN` and flags
/// RST|ACK. MACs, addresses and ports are swapped; window 0; IPv4 or IPv6
/// (extension headers of the segment are not copied).
///
/// `Err` for a RST (never answered), a fragment, a wrong IP or TCP checksum,
/// a source that is not unicast or a destination that is broadcast or
/// multicast, and malformed frames.
pub fn tcp_rst(original_frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
    tcp_rst_inner(original_frame, true, out)
}

/// Like [`tcp_rst`], but without checking the segment's TCP checksum: for a frame whose
/// checksum is left partial (virtio-net `NEEDS_CSUM`, or a TSO super-frame), which holds
/// only the pseudo-header sum until whoever sends it on fills it in. The reset itself
/// has its checksum computed in full.
pub fn tcp_rst_partial_csum(original_frame: &[u8], out: &mut Vec<u8>) -> Result<()> {
    tcp_rst_inner(original_frame, false, out)
}

fn tcp_rst_inner(original_frame: &[u8], verify_l4: bool, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let l2 = l2_layout(original_frame)?;
    let eth = EthernetFrame::new_unchecked(original_frame);
    if !eth.src_addr().is_unicast() || !eth.dst_addr().is_unicast() {
        return Err(Error);
    }
    let (ip_pair, segment) = match l2.ethertype {
        EtherType::Ipv4 => {
            let (_, ip) = parse_ipv4(original_frame)?;
            if ip.is_fragment()
                || ip.next_header() != IpProtocol::Tcp
                || !is_unicast_v4(ip.src_addr())
                || !is_unicast_v4(ip.dst_addr())
            {
                return Err(Error);
            }
            let pair = IpPair::V4 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            (pair, ip.payload())
        }
        EtherType::Ipv6 => {
            let (_, ip, walk) = parse_ipv6(original_frame)?;
            if walk.frag.is_some()
                || walk.proto != u8::from(IpProtocol::Tcp)
                || !is_unicast_v6(ip.src_addr())
                || !is_unicast_v6(ip.dst_addr())
            {
                return Err(Error);
            }
            let pair = IpPair::V6 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            (pair, &ip.payload()[walk.offset..])
        }
        _ => return Err(Error),
    };
    let seg = TcpPacket::new_checked(segment)?;
    if seg.rst() || (verify_l4 && !seg.verify_checksum(&ip_pair)) {
        return Err(Error);
    }
    let rst = if seg.ack() {
        TcpRepr {
            src_port: seg.dst_port(),
            dst_port: seg.src_port(),
            seq_number: seg.ack_number(),
            ack_number: 0,
            flags: tcp::flags::RST,
            window_len: 0,
        }
    } else {
        TcpRepr {
            src_port: seg.dst_port(),
            dst_port: seg.src_port(),
            seq_number: 0,
            ack_number: seg.seq_number().wrapping_add(seg.segment_len() as u32),
            flags: tcp::flags::RST | tcp::flags::ACK,
            window_len: 0,
        }
    };
    let reply_pair = ip_pair.reversed();
    let (ethertype, ip_len) = match reply_pair {
        IpPair::V4 { .. } => (EtherType::Ipv4, ipv4::HEADER_LEN),
        IpPair::V6 { .. } => (EtherType::Ipv6, ipv6::HEADER_LEN),
    };
    let l3 = start_frame(
        out,
        eth.src_addr(),
        eth.dst_addr(),
        tags(original_frame, &l2),
        ethertype,
        ip_len + rst.buffer_len(),
    );
    match reply_pair {
        IpPair::V4 { src, dst } => Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: rst.buffer_len(),
            hop_limit: HOP_LIMIT,
            tos: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut out[l3..])),
        IpPair::V6 { src, dst } => Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: rst.buffer_len(),
            hop_limit: HOP_LIMIT,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut out[l3..])),
    }
    let mut tcp = TcpPacket::new_unchecked(&mut out[l3 + ip_len..]);
    rst.emit(&mut tcp);
    tcp.fill_checksum(&reply_pair);
    Ok(())
}

/// Encapsulate the Ethernet frame `inner` in VXLAN over UDP over IPv4 with the
/// headers of `outer` (identification 0; outer IPv4 header checksum filled;
/// UDP checksum 0 unless `udp_checksum`). The result is
/// `VXLAN_OVERHEAD + inner.len()` bytes.
///
/// `Err` if the VNI does not fit 24 bits or the packet would exceed 65535
/// bytes of IP.
pub fn vxlan_encap(inner: &[u8], outer: &VxlanOuter, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    let udp_payload = vxlan::HEADER_LEN + inner.len();
    if outer.vni > vxlan::MAX_VNI || ipv4::HEADER_LEN + udp::HEADER_LEN + udp_payload > 0xffff {
        return Err(Error);
    }
    let udp_repr = UdpRepr {
        src_port: outer.src_port,
        dst_port: outer.dst_port,
        payload_len: udp_payload,
    };
    let ip_repr = Ipv4Repr {
        src_addr: outer.src_ip,
        dst_addr: outer.dst_ip,
        next_header: IpProtocol::Udp,
        payload_len: udp::HEADER_LEN + udp_payload,
        hop_limit: outer.ttl,
        tos: outer.tos,
        ident: 0,
        dont_frag: outer.dont_frag,
    };
    let l3 = start_frame(
        out,
        outer.dst_mac,
        outer.src_mac,
        &[],
        EtherType::Ipv4,
        ipv4::HEADER_LEN + udp::HEADER_LEN + udp_payload,
    );
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[l3..]));
    let l4 = l3 + ipv4::HEADER_LEN;
    let mut udp = UdpPacket::new_unchecked(&mut out[l4..]);
    udp_repr.emit(&mut udp);
    let mut vx = VxlanPacket::new_unchecked(udp.payload_mut());
    VxlanRepr { vni: outer.vni }.emit(&mut vx);
    vx.payload_mut().copy_from_slice(inner);
    if outer.udp_checksum {
        udp.fill_checksum(&IpPair::V4 {
            src: outer.src_ip,
            dst: outer.dst_ip,
        });
    }
    Ok(())
}

/// Validate a VXLAN-over-IPv4 frame and return its outer addresses, VNI and
/// inner frame (a slice of `frame`, no copy). The UDP port is not checked:
/// the caller knows which port it listens on.
///
/// `Err` for anything but Ethernet (VLAN tags allowed) + IPv4 with a correct
/// header checksum, not fragmented + UDP with a correct or zero checksum +
/// VXLAN with the I flag set (reserved bits are ignored, RFC 7348) + an inner
/// frame of at least an Ethernet header.
pub fn vxlan_decap(frame: &[u8]) -> Result<VxlanDecap<'_>> {
    let (_, ip) = parse_ipv4(frame)?;
    if ip.is_fragment() || ip.next_header() != IpProtocol::Udp {
        return Err(Error);
    }
    let pair = IpPair::V4 {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
    };
    let udp = UdpPacket::new_checked(ip.payload())?;
    if !udp.verify_checksum(&pair) {
        return Err(Error);
    }
    let vx = VxlanPacket::new_checked(udp.payload())?;
    let repr = VxlanRepr::parse(&vx)?;
    let inner = vx.payload();
    if inner.len() < ethernet::HEADER_LEN {
        return Err(Error);
    }
    Ok(VxlanDecap {
        src_ip: ip.src_addr(),
        dst_ip: ip.dst_addr(),
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        vni: repr.vni,
        inner,
    })
}

/// Write the Ethernet header (with `tags` between the source address and the
/// EtherType) into the cleared `out`, followed by `l3_len` zero bytes; return
/// the offset of the L3 header.
fn start_frame(
    out: &mut Vec<u8>,
    dst: EthernetAddress,
    src: EthernetAddress,
    tags: &[u8],
    ethertype: EtherType,
    l3_len: usize,
) -> usize {
    out.clear();
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(tags);
    out.extend_from_slice(&u16::from(ethertype).to_be_bytes());
    let l3 = out.len();
    out.resize(l3 + l3_len, 0);
    l3
}

/// Return the VLAN tags of a frame: the bytes between the source address and
/// the L3 EtherType.
fn tags<'a>(frame: &'a [u8], l2: &L2Layout) -> &'a [u8] {
    &frame[12..l2.l3_offset - 2]
}

/// Parse the IPv4 packet of a frame: version 4, lengths and header checksum.
fn parse_ipv4(frame: &[u8]) -> Result<(L2Layout, Ipv4Packet<&[u8]>)> {
    let l2 = l2_layout(frame)?;
    if l2.ethertype != EtherType::Ipv4 {
        return Err(Error);
    }
    let ip = Ipv4Packet::new_checked(&frame[l2.l3_offset..])?;
    if ip.version() != 4 || !ip.verify_checksum() {
        return Err(Error);
    }
    Ok((l2, ip))
}

/// Parse the IPv6 packet of a frame and walk its extension headers.
fn parse_ipv6(frame: &[u8]) -> Result<(L2Layout, Ipv6Packet<&[u8]>, ExtWalk)> {
    let l2 = l2_layout(frame)?;
    if l2.ethertype != EtherType::Ipv6 {
        return Err(Error);
    }
    let ip = Ipv6Packet::new_checked(&frame[l2.l3_offset..])?;
    if ip.version() != 6 {
        return Err(Error);
    }
    let walk = walk_ext_headers(ip.next_header().into(), ip.payload())?;
    Ok((l2, ip, walk))
}

/// Query whether `a` can be the source or target of a unicast exchange: not
/// unspecified, broadcast, multicast, loopback or class E.
fn is_unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        && a.octets()[0] < 240
}

/// Query whether `a` is neither unspecified nor multicast.
fn is_unicast_v6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast())
}

/// Query whether `a` is a solicited-node multicast address, ff02::1:ffXX:XXXX.
fn is_solicited_node(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[..6] == [0xff02, 0, 0, 0, 0, 1] && s[6] >> 8 == 0xff
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        Icmpv4Type, Icmpv6Type, LinkExtHeader, LinkHeader, NetHeaders, PacketBuilder,
        PacketHeaders, TransportHeader,
    };
    use proptest::prelude::*;

    // Captures written by scapy. Addresses: 02:00:00:00:00:01 / 10.0.0.1 /
    // fd00::1 is the client, 02:00:00:00:00:02 / 10.0.0.2 / fd00::2 the server.

    // ARP who-has 10.0.0.254 tell 10.0.0.1.
    static ARP_REQUEST_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0xfe,
    ];

    static VLAN_ARP_FRAME: [u8; 46] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x60,
        0x2a, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0xfe,
    ];

    static ICMP_ECHO_FRAME: [u8; 58] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x2c, 0x43, 0x21, 0x00, 0x00, 0x40, 0x01, 0x22, 0xb2, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0xfe, 0x08, 0x00, 0x9a, 0x86, 0x1a, 0x2b, 0x00, 0x03, 0x61, 0x62, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70,
    ];

    static UDP_FRAME: [u8; 54] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x28, 0x00, 0x07, 0x00, 0x00, 0x40, 0x11, 0x66, 0x89, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x35, 0xcf, 0x08, 0x00, 0x35, 0x00, 0x14, 0x09, 0x1e, 0x12, 0x34, 0x01,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    static ICMPV6_ECHO_FRAME: [u8; 70] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x62,
        0xa1, 0x23, 0x45, 0x00, 0x10, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0xb1, 0x57, 0x1a, 0x2b,
        0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x76, 0x36,
    ];

    static NDP_NS_FRAME: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x02, 0x87, 0x00, 0x7d, 0x97, 0x00, 0x00,
        0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    static TCP_SYN_FRAME: [u8; 74] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x2a, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x5c, 0x0a, 0x00, 0x00, 0x01,
        0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00,
        0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x98, 0x75, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    static TCP6_FRAME: [u8; 90] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60,
        0x00, 0x00, 0x00, 0x00, 0x24, 0x06, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0xbb, 0xc3, 0x50, 0x00, 0x00,
        0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0, 0x50, 0x18, 0x02, 0x00, 0x11, 0x5e, 0x00, 0x00, 0x47,
        0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e, 0x31, 0x0d, 0x0a,
    ];

    static VXLAN_FRAME: [u8; 108] = [
        0x02, 0xbb, 0x00, 0x00, 0x00, 0x01, 0x02, 0xaa, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x5e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb7, 0x3b, 0xc0, 0xa8, 0x01, 0x01,
        0xc0, 0xa8, 0x01, 0x02, 0xc8, 0x22, 0x12, 0xb5, 0x00, 0x4a, 0x00, 0x00, 0x08, 0x00, 0x00,
        0x00, 0x12, 0x34, 0x56, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x08, 0x00, 0x45, 0x00, 0x00, 0x2c, 0x43, 0x21, 0x00, 0x00, 0x40, 0x01, 0x22,
        0xb2, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0xfe, 0x08, 0x00, 0x9a, 0x86, 0x1a, 0x2b,
        0x00, 0x03, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
        0x6e, 0x6f, 0x70,
    ];

    const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
    const SWITCH_MAC: EthernetAddress = EthernetAddress([0x02, 0x5e, 0, 0, 0, 0xfe]);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn eth_of(h: &PacketHeaders<'_>) -> etherparse::Ethernet2Header {
        match &h.link {
            Some(LinkHeader::Ethernet2(e)) => e.clone(),
            other => panic!("no Ethernet header: {other:?}"),
        }
    }

    fn ipv4_of(h: &PacketHeaders<'_>) -> etherparse::Ipv4Header {
        match &h.net {
            Some(NetHeaders::Ipv4(ip, _)) => {
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                ip.clone()
            }
            other => panic!("no IPv4 header: {other:?}"),
        }
    }

    fn ipv6_of(h: &PacketHeaders<'_>) -> etherparse::Ipv6Header {
        match &h.net {
            Some(NetHeaders::Ipv6(ip, _)) => ip.clone(),
            other => panic!("no IPv6 header: {other:?}"),
        }
    }

    /// Insert a single 802.1Q tag into an untagged frame.
    fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
        let mut v = frame[..12].to_vec();
        v.extend_from_slice(&[0x81, 0x00]);
        v.extend_from_slice(&tci.to_be_bytes());
        v.extend_from_slice(&frame[12..]);
        v
    }

    fn udp4_frame(payload_len: usize) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, SERVER_MAC.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 6000)
            .write(&mut f, &vec![0x5a; payload_len])
            .unwrap();
        f
    }

    fn udp6_frame(dst: Ipv6Addr, dst_mac: EthernetAddress, payload_len: usize) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, dst_mac.0)
            .ipv6(v6("fd00::1").octets(), dst.octets(), 64)
            .udp(5000, 6000)
            .write(&mut f, &vec![0x5a; payload_len])
            .unwrap();
        f
    }

    // ---- ARP ----

    #[test]
    fn arp_reply_fields() {
        let mut out = vec![0xa5; 100];
        arp_reply(&ARP_REQUEST_FRAME, SWITCH_MAC, &mut out).unwrap();
        assert_eq!(out.len(), 42);
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!(eth.destination, CLIENT_MAC.0);
        assert_eq!(eth.source, SWITCH_MAC.0);
        let Some(NetHeaders::Arp(arp)) = h.net else {
            panic!("not ARP")
        };
        let arp = arp.try_eth_ipv4().unwrap();
        assert_eq!(arp.operation, etherparse::ArpOperation::REPLY);
        assert_eq!(arp.sender_mac, SWITCH_MAC.0);
        assert_eq!(arp.sender_ipv4, GATEWAY_IP.octets());
        assert_eq!(arp.target_mac, CLIENT_MAC.0);
        assert_eq!(arp.target_ipv4, CLIENT_IP.octets());
    }

    #[test]
    fn arp_reply_keeps_vlan_tag() {
        let mut out = Vec::new();
        arp_reply(&VLAN_ARP_FRAME, SWITCH_MAC, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let Some(LinkExtHeader::Vlan(tag)) = h.link_exts.first() else {
            panic!("no tag")
        };
        assert_eq!(tag.vlan_id.value(), 42);
        assert_eq!(tag.pcp.value(), 3);
        let Some(NetHeaders::Arp(arp)) = h.net else {
            panic!("not ARP")
        };
        assert_eq!(arp.try_eth_ipv4().unwrap().sender_ipv4, GATEWAY_IP.octets());
    }

    #[test]
    fn arp_reply_refuses() {
        let mut out = vec![1];
        // A reply is not answered.
        let mut reply = ARP_REQUEST_FRAME;
        reply[21] = 2;
        assert_eq!(arp_reply(&reply, SWITCH_MAC, &mut out), Err(Error));
        assert!(out.is_empty());
        // A multicast sender.
        let mut bad = ARP_REQUEST_FRAME;
        bad[22] = 0x01;
        assert_eq!(arp_reply(&bad, SWITCH_MAC, &mut out), Err(Error));
        // Not ARP at all.
        assert_eq!(
            arp_reply(&ICMP_ECHO_FRAME, SWITCH_MAC, &mut out),
            Err(Error)
        );
        for n in 0..ARP_REQUEST_FRAME.len() {
            assert_eq!(
                arp_reply(&ARP_REQUEST_FRAME[..n], SWITCH_MAC, &mut out),
                Err(Error)
            );
        }
    }

    #[test]
    fn arp_request_bytes() {
        let mut out = Vec::new();
        arp_request(CLIENT_MAC, CLIENT_IP, GATEWAY_IP, &mut out);
        assert_eq!(&out[..], &ARP_REQUEST_FRAME[..]);
    }

    // ---- ICMPv4 ----

    #[test]
    fn icmpv4_echo_reply_fields() {
        let mut out = Vec::new();
        icmpv4_echo_reply(&ICMP_ECHO_FRAME, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!((eth.source, eth.destination), (SERVER_MAC.0, CLIENT_MAC.0));
        let ip = ipv4_of(&h);
        assert_eq!(ip.source, GATEWAY_IP.octets());
        assert_eq!(ip.destination, CLIENT_IP.octets());
        assert_eq!(ip.time_to_live, 64);
        assert_eq!(usize::from(ip.total_len), out.len() - 14);
        let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
            panic!("not ICMP")
        };
        let Icmpv4Type::EchoReply(echo) = &icmp.icmp_type else {
            panic!("{icmp:?}")
        };
        assert_eq!((echo.id, echo.seq), (0x1a2b, 3));
        assert_eq!(h.payload.slice(), b"abcdefghijklmnop");
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(h.payload.slice())
        );
    }

    #[test]
    fn icmpv4_echo_reply_refuses() {
        let mut out = Vec::new();
        // Not a request.
        let mut reply = ICMP_ECHO_FRAME;
        reply[34] = 0;
        assert_eq!(icmpv4_echo_reply(&reply, &mut out), Err(Error));
        // Bad ICMP checksum.
        let mut bad = ICMP_ECHO_FRAME;
        bad[57] ^= 1;
        assert_eq!(icmpv4_echo_reply(&bad, &mut out), Err(Error));
        // Bad IP header checksum.
        let mut bad = ICMP_ECHO_FRAME;
        bad[24] ^= 1;
        assert_eq!(icmpv4_echo_reply(&bad, &mut out), Err(Error));
        // To the broadcast address (checksum fixed up).
        let mut bcast = ICMP_ECHO_FRAME;
        bcast[30..34].copy_from_slice(&[255, 255, 255, 255]);
        Ipv4Packet::new_unchecked(&mut bcast[14..]).fill_checksum();
        assert_eq!(icmpv4_echo_reply(&bcast, &mut out), Err(Error));
        for n in 0..ICMP_ECHO_FRAME.len() {
            assert_eq!(
                icmpv4_echo_reply(&ICMP_ECHO_FRAME[..n], &mut out),
                Err(Error)
            );
        }
    }

    #[test]
    fn icmpv4_unreachable_port() {
        let mut out = Vec::new();
        icmpv4_unreachable(&UDP_FRAME, 3, SWITCH_MAC, GATEWAY_IP, None, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!((eth.source, eth.destination), (SWITCH_MAC.0, CLIENT_MAC.0));
        let ip = ipv4_of(&h);
        assert_eq!(
            (ip.source, ip.destination),
            (GATEWAY_IP.octets(), CLIENT_IP.octets())
        );
        assert_eq!(ip.time_to_live, 64);
        assert_eq!(ip.protocol, etherparse::IpNumber::ICMP);
        let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
        );
        // The whole original datagram is quoted: it is small.
        assert_eq!(h.payload.slice(), &UDP_FRAME[14..]);
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(h.payload.slice())
        );
    }

    #[test]
    fn icmpv4_frag_needed_is_576_bytes() {
        let big = udp4_frame(1472);
        let mut out = Vec::new();
        icmpv4_unreachable(&big, 4, SWITCH_MAC, GATEWAY_IP, Some(1400), &mut out).unwrap();
        assert_eq!(out.len(), 14 + 576);
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let ip = ipv4_of(&h);
        assert_eq!(ip.total_len, 576);
        let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400
                }
            )
        );
        assert_eq!(h.payload.slice(), &big[14..14 + 548]);
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(h.payload.slice())
        );
    }

    #[test]
    fn icmpv4_unreachable_keeps_vlan_tag() {
        let frame = tagged(&UDP_FRAME, 0x0064);
        let mut out = Vec::new();
        icmpv4_unreachable(&frame, 1, SWITCH_MAC, GATEWAY_IP, None, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        assert_eq!(h.vlan_ids().first().map(|v| v.value()), Some(100));
        ipv4_of(&h);
    }

    #[test]
    fn icmpv4_unreachable_refuses() {
        let mut out = Vec::new();
        let mut send = |f: &[u8]| icmpv4_unreachable(f, 1, SWITCH_MAC, GATEWAY_IP, None, &mut out);
        // An ICMP error.
        let mut err = ICMP_ECHO_FRAME;
        err[34] = 3;
        assert_eq!(send(&err), Err(Error));
        // An ICMP echo is fine.
        assert_eq!(send(&ICMP_ECHO_FRAME), Ok(()));
        // A non-first fragment.
        let mut frag = UDP_FRAME;
        frag[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut frag[14..]).fill_checksum();
        assert_eq!(send(&frag), Err(Error));
        // A first fragment is fine.
        frag[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut frag[14..]).fill_checksum();
        assert_eq!(send(&frag), Ok(()));
        // IP broadcast and multicast destinations.
        for dst in [[255, 255, 255, 255], [224, 0, 0, 1]] {
            let mut f = UDP_FRAME;
            f[30..34].copy_from_slice(&dst);
            Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
            assert_eq!(send(&f), Err(Error));
        }
        // Unspecified source.
        let mut f = UDP_FRAME;
        f[26..30].copy_from_slice(&[0, 0, 0, 0]);
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        assert_eq!(send(&f), Err(Error));
        // Ethernet broadcast destination.
        let mut f = UDP_FRAME;
        f[0..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(send(&f), Err(Error));
        // Lying IP lengths.
        let mut f = UDP_FRAME;
        f[16..18].copy_from_slice(&100u16.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        assert_eq!(send(&f), Err(Error));
        for n in 0..UDP_FRAME.len() {
            assert_eq!(send(&UDP_FRAME[..n]), Err(Error));
        }
    }

    // ---- ICMPv6 ----

    #[test]
    fn icmpv6_echo_reply_fields() {
        let mut out = Vec::new();
        icmpv6_echo_reply(&ICMPV6_ECHO_FRAME, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!((eth.source, eth.destination), (SERVER_MAC.0, CLIENT_MAC.0));
        let ip = ipv6_of(&h);
        assert_eq!(ip.source, v6("fd00::2").octets());
        assert_eq!(ip.destination, v6("fd00::1").octets());
        assert_eq!(ip.hop_limit, 64);
        assert_eq!(usize::from(ip.payload_length), out.len() - 54);
        let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
            panic!("not ICMPv6")
        };
        let Icmpv6Type::EchoReply(echo) = &icmp.icmp_type else {
            panic!("{icmp:?}")
        };
        assert_eq!((echo.id, echo.seq), (0x1a2b, 5));
        assert_eq!(h.payload.slice(), b"hello v6");
        let s = etherparse::Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert!(s.is_checksum_valid(ip.source, ip.destination));
    }

    #[test]
    fn icmpv6_echo_reply_refuses() {
        let mut out = Vec::new();
        let mut bad = ICMPV6_ECHO_FRAME;
        bad[69] ^= 1;
        assert_eq!(icmpv6_echo_reply(&bad, &mut out), Err(Error));
        let mut reply = ICMPV6_ECHO_FRAME;
        reply[54] = 129;
        assert_eq!(icmpv6_echo_reply(&reply, &mut out), Err(Error));
        for n in 0..ICMPV6_ECHO_FRAME.len() {
            assert_eq!(
                icmpv6_echo_reply(&ICMPV6_ECHO_FRAME[..n], &mut out),
                Err(Error)
            );
        }
        // Payload length beyond the frame.
        let mut long = ICMPV6_ECHO_FRAME;
        long[18..20].copy_from_slice(&17u16.to_be_bytes());
        assert_eq!(icmpv6_echo_reply(&long, &mut out), Err(Error));
    }

    #[test]
    fn icmpv6_unreachable_fields() {
        let mut out = Vec::new();
        let gw = v6("fd00::fe");
        icmpv6_unreachable(&TCP6_FRAME, 4, SWITCH_MAC, gw, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!((eth.source, eth.destination), (SWITCH_MAC.0, CLIENT_MAC.0));
        let ip = ipv6_of(&h);
        assert_eq!(
            (ip.source, ip.destination),
            (gw.octets(), v6("fd00::1").octets())
        );
        let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port)
        );
        assert_eq!(h.payload.slice(), &TCP6_FRAME[14..]);
        let s = etherparse::Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert!(s.is_checksum_valid(ip.source, ip.destination));
    }

    #[test]
    fn icmpv6_packet_too_big_is_1280_bytes() {
        let big = udp6_frame(v6("fd00::2"), SERVER_MAC, 1452);
        let mut out = Vec::new();
        let gw = v6("fd00::fe");
        icmpv6_packet_too_big(&big, 1450, SWITCH_MAC, gw, &mut out).unwrap();
        assert_eq!(out.len(), 14 + 1280);
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let ip = ipv6_of(&h);
        assert_eq!(ip.payload_length, 1240);
        let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.icmp_type, Icmpv6Type::PacketTooBig { mtu: 1450 });
        assert_eq!(h.payload.slice(), &big[14..14 + 1232]);
        let s = etherparse::Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert!(s.is_checksum_valid(ip.source, ip.destination));
    }

    #[test]
    fn icmpv6_errors_and_multicast() {
        let mut out = Vec::new();
        let gw = v6("fd00::fe");
        let group = v6("ff05::1:3");
        let mcast = udp6_frame(group, EthernetAddress::ipv6_multicast(group), 100);
        // Unreachable is never sent for multicast; Packet Too Big is.
        assert_eq!(
            icmpv6_unreachable(&mcast, 0, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
        assert_eq!(
            icmpv6_packet_too_big(&mcast, 1280, SWITCH_MAC, gw, &mut out),
            Ok(())
        );
        // An ICMPv6 error is never answered, not even by Packet Too Big.
        let mut err = ICMPV6_ECHO_FRAME;
        err[54] = 1;
        assert_eq!(
            icmpv6_unreachable(&err, 0, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
        assert_eq!(
            icmpv6_packet_too_big(&err, 1280, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
        // An echo request is answered.
        assert_eq!(
            icmpv6_unreachable(&ICMPV6_ECHO_FRAME, 0, SWITCH_MAC, gw, &mut out),
            Ok(())
        );
        // Unspecified source.
        let mut unspec = TCP6_FRAME;
        unspec[22..38].fill(0);
        assert_eq!(
            icmpv6_unreachable(&unspec, 0, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
        for n in 0..TCP6_FRAME.len() {
            assert_eq!(
                icmpv6_unreachable(&TCP6_FRAME[..n], 0, SWITCH_MAC, gw, &mut out),
                Err(Error)
            );
        }
    }

    #[test]
    fn icmpv6_error_skips_extension_headers() {
        // HopByHop → Fragment (offset 0) → ICMPv6 error: still an error.
        let mut f = ICMPV6_ECHO_FRAME[..54].to_vec();
        f[20] = 0; // next header: Hop-by-Hop
        f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // HbH → Fragment
        f.extend_from_slice(&[58, 0, 0, 1, 0, 0, 0, 7]); // Fragment → ICMPv6, M=1
        f.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // ICMPv6 type 1
        let len = (f.len() - 54) as u16;
        f[18..20].copy_from_slice(&len.to_be_bytes());
        let mut out = Vec::new();
        let gw = v6("fd00::fe");
        assert_eq!(
            icmpv6_unreachable(&f, 0, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
        // The same with an echo request is answered.
        f[70] = 128;
        assert_eq!(icmpv6_unreachable(&f, 0, SWITCH_MAC, gw, &mut out), Ok(()));
        // A later fragment is not.
        f[64..66].copy_from_slice(&0x0008u16.to_be_bytes());
        assert_eq!(
            icmpv6_unreachable(&f, 0, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
        // An extension header running past the packet.
        f[64..66].copy_from_slice(&0u16.to_be_bytes());
        f[55] = 9;
        assert_eq!(
            icmpv6_unreachable(&f, 0, SWITCH_MAC, gw, &mut out),
            Err(Error)
        );
    }

    // ---- NDP ----

    #[test]
    fn neighbor_advert_fields() {
        let mut out = Vec::new();
        ndp_neighbor_advert(&NDP_NS_FRAME, SERVER_MAC, false, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!((eth.source, eth.destination), (SERVER_MAC.0, CLIENT_MAC.0));
        let ip = ipv6_of(&h);
        assert_eq!(ip.source, v6("fd00::2").octets());
        assert_eq!(ip.destination, v6("fd00::1").octets());
        assert_eq!(ip.hop_limit, 255);
        let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
            panic!("not ICMPv6")
        };
        let Icmpv6Type::NeighborAdvertisement(na) = &icmp.icmp_type else {
            panic!("{icmp:?}")
        };
        assert!(!na.router && na.solicited && na.r#override);
        let s = etherparse::Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert!(s.is_checksum_valid(ip.source, ip.destination));
        // Target address, then the Target Link-Layer Address option.
        assert_eq!(&out[62..78], &v6("fd00::2").octets());
        assert_eq!(&out[78..86], &[2, 1, 2, 0, 0, 0, 0, 2]);
        assert_eq!(out.len(), 86);
        // And our own parser agrees.
        let p = Icmpv6Packet::new_checked(&out[54..]).unwrap();
        assert!(matches!(
            NdpRepr::parse(&p),
            Ok(NdpRepr::NeighborAdvert {
                lladdr: Some(SERVER_MAC),
                ..
            })
        ));
    }

    #[test]
    fn neighbor_advert_for_dad() {
        // A DAD probe: source ::, no source link-layer option.
        let mut f = NDP_NS_FRAME[..78].to_vec();
        f[22..38].fill(0);
        f[18..20].copy_from_slice(&24u16.to_be_bytes());
        let mut icmp = Icmpv6Packet::new_unchecked(&mut f[54..]);
        icmp.fill_checksum(Ipv6Addr::UNSPECIFIED, v6("ff02::1:ff00:2"));
        let mut out = Vec::new();
        ndp_neighbor_advert(&f, SERVER_MAC, true, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        assert_eq!(eth_of(&h).destination, [0x33, 0x33, 0, 0, 0, 1]);
        let ip = ipv6_of(&h);
        assert_eq!(ip.destination, v6("ff02::1").octets());
        let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
            panic!("not ICMPv6")
        };
        let Icmpv6Type::NeighborAdvertisement(na) = &icmp.icmp_type else {
            panic!("{icmp:?}")
        };
        assert!(na.router && !na.solicited && na.r#override);
        let s = etherparse::Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert!(s.is_checksum_valid(ip.source, ip.destination));
    }

    #[test]
    fn neighbor_advert_refuses() {
        let mut out = Vec::new();
        // Hop limit not 255.
        let mut f = NDP_NS_FRAME;
        f[21] = 64;
        assert_eq!(
            ndp_neighbor_advert(&f, SERVER_MAC, false, &mut out),
            Err(Error)
        );
        // Bad checksum.
        let mut f = NDP_NS_FRAME;
        f[85] ^= 1;
        assert_eq!(
            ndp_neighbor_advert(&f, SERVER_MAC, false, &mut out),
            Err(Error)
        );
        // Option length 0 (checksum fixed up so only the option is wrong).
        let mut f = NDP_NS_FRAME;
        f[79] = 0;
        let (src, dst) = (v6("fd00::1"), v6("ff02::1:ff00:2"));
        Icmpv6Packet::new_unchecked(&mut f[54..]).fill_checksum(src, dst);
        assert_eq!(
            ndp_neighbor_advert(&f, SERVER_MAC, false, &mut out),
            Err(Error)
        );
        // DAD with a source link-layer option.
        let mut f = NDP_NS_FRAME;
        f[22..38].fill(0);
        Icmpv6Packet::new_unchecked(&mut f[54..]).fill_checksum(Ipv6Addr::UNSPECIFIED, dst);
        assert_eq!(
            ndp_neighbor_advert(&f, SERVER_MAC, false, &mut out),
            Err(Error)
        );
        // Not a solicitation.
        assert_eq!(
            ndp_neighbor_advert(&ICMPV6_ECHO_FRAME, SERVER_MAC, false, &mut out),
            Err(Error)
        );
        for n in 0..NDP_NS_FRAME.len() {
            assert_eq!(
                ndp_neighbor_advert(&NDP_NS_FRAME[..n], SERVER_MAC, false, &mut out),
                Err(Error)
            );
        }
    }

    // ---- TCP ----

    #[test]
    fn tcp_rst_for_syn() {
        let mut out = Vec::new();
        tcp_rst(&TCP_SYN_FRAME, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let eth = eth_of(&h);
        assert_eq!((eth.source, eth.destination), (SERVER_MAC.0, CLIENT_MAC.0));
        let ip = ipv4_of(&h);
        assert_eq!((ip.source, ip.destination), ([10, 0, 0, 2], [10, 0, 0, 1]));
        let Some(TransportHeader::Tcp(t)) = &h.transport else {
            panic!("not TCP")
        };
        assert_eq!((t.source_port, t.destination_port), (80, 40000));
        assert!(t.rst && t.ack && !t.syn && !t.fin);
        assert_eq!(t.sequence_number, 0);
        assert_eq!(t.acknowledgment_number, 0x01020305);
        assert_eq!(t.window_size, 0);
        assert_eq!(t.checksum, t.calc_checksum_ipv4(&ip, &[]).unwrap());
        assert!(h.payload.slice().is_empty());
    }

    #[test]
    fn tcp_rst_for_ack_v6() {
        let mut out = Vec::new();
        tcp_rst(&TCP6_FRAME, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let ip = ipv6_of(&h);
        assert_eq!(ip.source, v6("fd00::2").octets());
        assert_eq!(ip.destination, v6("fd00::1").octets());
        let Some(TransportHeader::Tcp(t)) = &h.transport else {
            panic!("not TCP")
        };
        assert_eq!((t.source_port, t.destination_port), (50000, 443));
        assert!(t.rst && !t.ack);
        assert_eq!(t.sequence_number, 2000);
        assert_eq!(t.acknowledgment_number, 0);
        assert_eq!(t.checksum, t.calc_checksum_ipv6(&ip, &[]).unwrap());
    }

    #[test]
    fn tcp_rst_counts_payload_and_fin() {
        // FIN with 5 bytes of data and no ACK: ack = seq + 5 + 1.
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, SERVER_MAC.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1, 2, 0xffff_fffd, 100)
            .fin()
            .write(&mut f, b"hello")
            .unwrap();
        let mut out = Vec::new();
        tcp_rst(&f, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let Some(TransportHeader::Tcp(t)) = &h.transport else {
            panic!("not TCP")
        };
        assert_eq!(t.acknowledgment_number, 3);
    }

    #[test]
    fn tcp_rst_refuses() {
        let mut out = Vec::new();
        // A RST.
        let mut rst = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, SERVER_MAC.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1, 2, 5, 100)
            .rst()
            .write(&mut rst, &[])
            .unwrap();
        assert_eq!(tcp_rst(&rst, &mut out), Err(Error));
        // A bad TCP checksum.
        let mut bad = TCP_SYN_FRAME;
        bad[50] ^= 1;
        assert_eq!(tcp_rst(&bad, &mut out), Err(Error));
        // Data offset beyond the segment.
        let mut bad = TCP_SYN_FRAME;
        bad[46] = 0xf0;
        assert_eq!(tcp_rst(&bad, &mut out), Err(Error));
        // Not TCP.
        assert_eq!(tcp_rst(&UDP_FRAME, &mut out), Err(Error));
        for n in 0..TCP_SYN_FRAME.len() {
            assert_eq!(tcp_rst(&TCP_SYN_FRAME[..n], &mut out), Err(Error));
        }
        for n in 0..TCP6_FRAME.len() {
            assert_eq!(tcp_rst(&TCP6_FRAME[..n], &mut out), Err(Error));
        }
    }

    // ---- VXLAN ----

    fn outer() -> VxlanOuter {
        VxlanOuter {
            src_mac: EthernetAddress([0x02, 0xaa, 0, 0, 0, 0x01]),
            dst_mac: EthernetAddress([0x02, 0xbb, 0, 0, 0, 0x01]),
            src_ip: Ipv4Addr::new(192, 168, 1, 1),
            dst_ip: Ipv4Addr::new(192, 168, 1, 2),
            src_port: 51234,
            dst_port: vxlan::DEFAULT_PORT,
            vni: 0x123456,
            ttl: 64,
            tos: 0,
            dont_frag: true,
            udp_checksum: false,
        }
    }

    #[test]
    fn vxlan_encap_bytes() {
        let mut out = vec![0xa5; 3];
        vxlan_encap(&ICMP_ECHO_FRAME, &outer(), &mut out).unwrap();
        assert_eq!(out.len(), VXLAN_OVERHEAD + ICMP_ECHO_FRAME.len());
        assert_eq!(&out[..], &VXLAN_FRAME[..]);
    }

    #[test]
    fn vxlan_encap_with_udp_checksum() {
        let mut out = Vec::new();
        let o = VxlanOuter {
            udp_checksum: true,
            tos: 0x2e,
            dont_frag: false,
            ..outer()
        };
        vxlan_encap(&ICMP_ECHO_FRAME, &o, &mut out).unwrap();
        let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
        let ip = ipv4_of(&h);
        assert!(!ip.dont_fragment);
        assert_eq!(ip.dscp.value(), 0x2e >> 2);
        let Some(TransportHeader::Udp(u)) = &h.transport else {
            panic!("not UDP")
        };
        assert_ne!(u.checksum, 0);
        assert_eq!(
            u.checksum,
            u.calc_checksum_ipv4(&ip, h.payload.slice()).unwrap()
        );
        assert_eq!(&h.payload.slice()[8..], &ICMP_ECHO_FRAME[..]);
        let d = vxlan_decap(&out).unwrap();
        assert_eq!(d.inner, &ICMP_ECHO_FRAME[..]);
    }

    #[test]
    fn vxlan_encap_refuses() {
        let mut out = Vec::new();
        let o = VxlanOuter {
            vni: 1 << 24,
            ..outer()
        };
        assert_eq!(vxlan_encap(&ICMP_ECHO_FRAME, &o, &mut out), Err(Error));
        let huge = vec![0u8; 0xffff - 36 + 1];
        assert_eq!(vxlan_encap(&huge, &outer(), &mut out), Err(Error));
        assert_eq!(vxlan_encap(&huge[1..], &outer(), &mut out), Ok(()));
    }

    #[test]
    fn vxlan_decap_fields() {
        let d = vxlan_decap(&VXLAN_FRAME).unwrap();
        assert_eq!(
            d,
            VxlanDecap {
                src_ip: Ipv4Addr::new(192, 168, 1, 1),
                dst_ip: Ipv4Addr::new(192, 168, 1, 2),
                src_port: 51234,
                dst_port: 4789,
                vni: 0x123456,
                inner: &ICMP_ECHO_FRAME[..],
            }
        );
        // Over a VLAN-tagged underlay too.
        let t = tagged(&VXLAN_FRAME, 7);
        assert_eq!(vxlan_decap(&t).unwrap().inner, &ICMP_ECHO_FRAME[..]);
    }

    #[test]
    fn vxlan_decap_refuses() {
        // I flag clear.
        let mut f = VXLAN_FRAME;
        f[42] = 0;
        assert_eq!(vxlan_decap(&f), Err(Error));
        // Reserved bits set: accepted.
        let mut f = VXLAN_FRAME;
        f[42] = 0xff;
        f[49] = 0xff;
        assert!(vxlan_decap(&f).is_ok());
        // Wrong non-zero UDP checksum.
        let mut f = VXLAN_FRAME;
        f[40..42].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(vxlan_decap(&f), Err(Error));
        // Wrong IP header checksum.
        let mut f = VXLAN_FRAME;
        f[24] ^= 1;
        assert_eq!(vxlan_decap(&f), Err(Error));
        // UDP length beyond the IP payload.
        let mut f = VXLAN_FRAME;
        f[38..40].copy_from_slice(&0x004bu16.to_be_bytes());
        assert_eq!(vxlan_decap(&f), Err(Error));
        // An inner frame shorter than an Ethernet header.
        let mut short = Vec::new();
        vxlan_encap(&ICMP_ECHO_FRAME[..13], &outer(), &mut short).unwrap();
        assert_eq!(vxlan_decap(&short), Err(Error));
        for n in 0..VXLAN_FRAME.len() {
            assert_eq!(vxlan_decap(&VXLAN_FRAME[..n]), Err(Error), "{n}");
        }
    }

    // ---- no panics ----

    fn run_all(frame: &[u8]) {
        let mut out = Vec::new();
        let _ = arp_reply(frame, SWITCH_MAC, &mut out);
        let _ = icmpv4_echo_reply(frame, &mut out);
        let _ = icmpv4_unreachable(frame, 4, SWITCH_MAC, GATEWAY_IP, Some(1400), &mut out);
        let _ = icmpv6_echo_reply(frame, &mut out);
        let _ = icmpv6_unreachable(frame, 1, SWITCH_MAC, v6("fd00::fe"), &mut out);
        let _ = icmpv6_packet_too_big(frame, 1280, SWITCH_MAC, v6("fd00::fe"), &mut out);
        let _ = ndp_neighbor_advert(frame, SWITCH_MAC, true, &mut out);
        let _ = tcp_rst(frame, &mut out);
        let _ = vxlan_decap(frame);
        let _ = vxlan_encap(frame, &outer(), &mut out);
    }

    const SAMPLES: [&[u8]; 10] = [
        &ARP_REQUEST_FRAME,
        &VLAN_ARP_FRAME,
        &ICMP_ECHO_FRAME,
        &UDP_FRAME,
        &ICMPV6_ECHO_FRAME,
        &NDP_NS_FRAME,
        &TCP_SYN_FRAME,
        &TCP6_FRAME,
        &VXLAN_FRAME,
        &ICMP_ECHO_FRAME,
    ];

    proptest! {
        #[test]
        fn builders_never_panic_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            run_all(&data);
        }

        #[test]
        fn builders_never_panic_on_mutated_frames(which in 0usize..SAMPLES.len(),
                                                   edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..5),
                                                   cut in any::<usize>()) {
            let mut f = SAMPLES[which].to_vec();
            for (at, v) in edits {
                let at = at % f.len();
                f[at] = v;
            }
            f.truncate(cut % (f.len() + 1));
            run_all(&f);
            // Also with the IPv4 header checksum made right again, so that the
            // mutations reach past it.
            if let Ok(l2) = l2_layout(&f)
                && f.len() >= l2.l3_offset + 20
                && (f[l2.l3_offset] & 0x0f) == 5
            {
                Ipv4Packet::new_unchecked(&mut f[l2.l3_offset..]).fill_checksum();
                run_all(&f);
            }
        }
    }
}
