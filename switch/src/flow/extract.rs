//! One pass over a frame's headers into a [`Flow`] (Open vSwitch's `miniflow_extract`).

use super::Malformed;
use crate::wire::ipv6::walk_ext_headers;
use vswitch_proto::field::{ethertype, ipproto};
use vswitch_proto::flow::{Flow, frag, mac_to_u64, slot};

/// Where the headers of the extracted frame start, for the actions that rewrite them.
/// An offset of 0 means the layer is absent (no header can start at 0 but Ethernet's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layers {
    /// The network header (after Ethernet and any VLAN tags).
    pub l3: u32,
    /// The transport header (TCP, UDP, SCTP, ICMP, ICMPv6), absent for later fragments.
    pub l4: u32,
}

// The extractor writes some words whole; these are the layout facts it relies on.
const _: () = {
    use vswitch_proto::flow::FLOW_LAYOUT_VERSION;
    assert!(
        FLOW_LAYOUT_VERSION == 2,
        "the flow layout changed: update the extractor"
    );
    assert!(slot::DL_DST.word == slot::DL_TYPE.word && slot::DL_DST.shift == 16);
    assert!(slot::DL_SRC.word == slot::VLAN_TCI.word && slot::DL_SRC.shift == 16);
    assert!(slot::NW_SRC.word == slot::NW_DST.word && slot::NW_SRC.shift == 32);
    assert!(slot::NW_PROTO.shift == 56 && slot::NW_TOS.shift == 48);
    assert!(slot::NW_TTL.shift == 40 && slot::NW_FRAG.shift == 32);
    assert!(slot::TP_SRC.word == slot::TP_DST.word && slot::TP_SRC.shift == 48);
};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const VLAN_CFI: u16 = 0x1000;
/// Open vSwitch's dl_type for 802.3 frames whose "type" field is a length.
const DL_TYPE_NONE: u16 = 0x05ff;

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[inline(always)]
fn mac_at(b: &[u8], at: usize) -> u64 {
    mac_to_u64([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]])
}

#[inline(always)]
fn be128(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

/// Fill the packet fields of `key` from `frame`.
///
/// `key` should arrive with its metadata (in_port, tunnel, registers, conntrack, recirc_id)
/// already set and every packet field zero; this function only writes packet fields.
/// On `Err`, the fields parsed before the problem was found are kept (enough to log the
/// packet), and `layers` says how far parsing got.
pub fn extract(frame: &[u8], key: &mut Flow, layers: &mut Layers) -> Result<(), Malformed> {
    *layers = Layers::default();
    if frame.len() < ETH_HLEN {
        return Err(Malformed::EthernetTooShort);
    }
    // dl_dst and dl_src are the top 48 bits of their words (see `slot`): read 8 bytes
    // and shift.
    let head = be64(frame, 0);
    let src_and_type = be64(frame, 6);
    let mut at = 12;
    let mut ty = src_and_type as u16;
    let mut tci: u16 = 0;
    if ty == ethertype::VLAN || ty == ethertype::QINQ {
        if frame.len() < at + 2 + VLAN_HLEN {
            return Err(Malformed::VlanTooShort);
        }
        tci = be16(frame, at + 2) | VLAN_CFI;
        at += VLAN_HLEN;
        ty = be16(frame, at);
        if ty == ethertype::VLAN {
            if frame.len() < at + 2 + VLAN_HLEN {
                return Err(Malformed::VlanTooShort);
            }
            key.set_vlan_tci_inner(be16(frame, at + 2) | VLAN_CFI);
            at += VLAN_HLEN;
            ty = be16(frame, at);
        }
    }
    let dl_type = if ty < 0x0600 { DL_TYPE_NONE } else { ty };
    key.w[slot::DL_DST.word as usize] = (head & !0xffff) | dl_type as u64;
    key.w[slot::DL_SRC.word as usize] = (src_and_type & !0xffff) | tci as u64;
    let l3 = at + 2;
    layers.l3 = l3 as u32;
    let rest = &frame[l3..];
    match ty {
        ethertype::IPV4 => ipv4(rest, l3, key, layers),
        ethertype::IPV6 => ipv6(rest, l3, key, layers),
        ethertype::ARP | ethertype::RARP => arp(rest, key),
        _ => Ok(()),
    }
}

fn arp(b: &[u8], key: &mut Flow) -> Result<(), Malformed> {
    const ARP_LEN: usize = 28;
    if b.len() < ARP_LEN {
        return Err(Malformed::ArpTooShort);
    }
    // Only Ethernet/IPv4 ARP has fields to match; others keep dl_type alone, like OVS.
    if be16(b, 0) == 1 && be16(b, 2) == ethertype::IPV4 && b[4] == 6 && b[5] == 4 {
        let op = be16(b, 6);
        if op <= 0xff {
            key.set_nw_proto(op as u8);
        }
        key.set(slot::ARP_SHA, mac_at(b, 8) as u128);
        key.set_nw_src(be32(b, 14));
        key.set(slot::ARP_THA, mac_at(b, 18) as u128);
        key.set_nw_dst(be32(b, 24));
    }
    Ok(())
}

#[inline(always)]
fn ipv4(b: &[u8], l3: usize, key: &mut Flow, layers: &mut Layers) -> Result<(), Malformed> {
    const MIN: usize = 20;
    if b.len() < MIN {
        return Err(Malformed::Ipv4TooShort);
    }
    if b[0] >> 4 != 4 {
        return Err(Malformed::Ipv4BadVersion);
    }
    let ihl = ((b[0] & 0x0f) as usize) * 4;
    if ihl < MIN || ihl > b.len() {
        return Err(Malformed::Ipv4BadHeaderLength);
    }
    let total = be16(b, 2) as usize;
    if total < ihl || total > b.len() {
        return Err(Malformed::Ipv4BadTotalLength);
    }
    // nw_src and nw_dst fill one word, in packet order.
    key.w[slot::NW_SRC.word as usize] = be64(b, 12);
    let frag_field = be16(b, 6);
    let offset = frag_field & 0x1fff;
    let more = frag_field & 0x2000 != 0;
    let frag_bits = match (offset != 0, more) {
        (true, _) => frag::ANY | frag::LATER,
        (false, true) => frag::ANY,
        (false, false) => 0,
    };
    // nw_proto, nw_tos, nw_ttl and nw_frag are the top bytes of their word.
    let w = &mut key.w[slot::NW_PROTO.word as usize];
    *w = (*w & 0xffff_ffff)
        | (b[9] as u64) << 56
        | (b[1] as u64) << 48
        | (b[8] as u64) << 40
        | (frag_bits as u64) << 32;
    if offset != 0 {
        return Ok(());
    }
    layers.l4 = (l3 + ihl) as u32;
    l4(&b[ihl..total], b[9], false, key)
}

fn ipv6(b: &[u8], l3: usize, key: &mut Flow, layers: &mut Layers) -> Result<(), Malformed> {
    const HLEN: usize = 40;
    if b.len() < HLEN {
        return Err(Malformed::Ipv6TooShort);
    }
    if b[0] >> 4 != 6 {
        return Err(Malformed::Ipv6BadVersion);
    }
    let payload_len = be16(b, 4) as usize;
    if HLEN + payload_len > b.len() {
        return Err(Malformed::Ipv6BadPayloadLength);
    }
    let vtcfl = be32(b, 0);
    key.set_nw_tos((vtcfl >> 20) as u8);
    key.set_ipv6_label(vtcfl & 0x000f_ffff);
    key.set_nw_ttl(b[7]);
    key.set(slot::IPV6_SRC, be128(b, 8));
    key.set(slot::IPV6_DST, be128(b, 24));
    let payload = &b[HLEN..HLEN + payload_len];
    let walk = walk_ext_headers(b[6], payload).map_err(|_| Malformed::Ipv6BadExtensionHeader)?;
    key.set_nw_proto(walk.proto);
    if let Some(fr) = walk.frag {
        if fr.offset != 0 {
            key.set_nw_frag(frag::ANY | frag::LATER);
            return Ok(());
        }
        if fr.more {
            key.set_nw_frag(frag::ANY);
        }
    }
    layers.l4 = (l3 + HLEN + walk.offset) as u32;
    l4(&payload[walk.offset..], walk.proto, true, key)
}

/// tp_src and tp_dst are the top half of their word, in packet order.
#[inline(always)]
fn set_ports(key: &mut Flow, b: &[u8]) {
    let w = &mut key.w[slot::TP_SRC.word as usize];
    *w = (*w & 0xffff_ffff) | (be32(b, 0) as u64) << 32;
}

#[inline(always)]
fn l4(b: &[u8], proto: u8, v6: bool, key: &mut Flow) -> Result<(), Malformed> {
    match proto {
        ipproto::TCP => {
            if b.len() < 20 {
                return Err(Malformed::TcpTooShort);
            }
            let off = (b[12] >> 4) as usize * 4;
            if off < 20 || off > b.len() {
                return Err(Malformed::TcpBadDataOffset);
            }
            set_ports(key, b);
            key.set_tcp_flags(be16(b, 12) & 0x0fff);
        }
        ipproto::UDP => {
            if b.len() < 8 {
                return Err(Malformed::UdpTooShort);
            }
            set_ports(key, b);
        }
        ipproto::SCTP => {
            if b.len() < 12 {
                return Err(Malformed::SctpTooShort);
            }
            set_ports(key, b);
        }
        ipproto::ICMP if !v6 => {
            if b.len() < 8 {
                return Err(Malformed::IcmpTooShort);
            }
            key.set_tp_src(b[0] as u16);
            key.set_tp_dst(b[1] as u16);
        }
        ipproto::ICMPV6 if v6 => {
            if b.len() < 8 {
                return Err(Malformed::Icmpv6TooShort);
            }
            key.set_tp_src(b[0] as u16);
            key.set_tp_dst(b[1] as u16);
            if (b[0] == 135 || b[0] == 136) && b[1] == 0 {
                nd(b, key)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Neighbor solicitation (135) or advertisement (136): the target, and the source
/// (solicitation) or target (advertisement) link-layer address option.
fn nd(b: &[u8], key: &mut Flow) -> Result<(), Malformed> {
    const HLEN: usize = 24;
    if b.len() < HLEN {
        return Err(Malformed::NdTooShort);
    }
    key.set(slot::ND_TARGET, be128(b, 8));
    let wanted = if b[0] == 135 { 1 } else { 2 };
    let mut opts = &b[HLEN..];
    while !opts.is_empty() {
        if opts.len() < 8 {
            return Err(Malformed::NdBadOption);
        }
        let len = opts[1] as usize * 8;
        if len == 0 || len > opts.len() {
            return Err(Malformed::NdBadOption);
        }
        if opts[0] == wanted && len == 8 {
            let s = if wanted == 1 {
                slot::ARP_SHA
            } else {
                slot::ARP_THA
            };
            // A second option of the same kind makes the packet ambiguous (OVS: invalid).
            if key.get(s) != 0 {
                return Err(Malformed::NdBadOption);
            }
            key.set(s, mac_at(opts, 2) as u128);
        }
        opts = &opts[len..];
    }
    Ok(())
}

/// Decapsulate a VXLAN frame (outer Ethernet, IPv4 without options or with, UDP, VXLAN)
/// and extract the inner frame: `key` receives `tun_src`, `tun_dst`, `tun_id` and the inner
/// packet's fields; `layers` describes the inner frame. Returns the inner frame's offset.
///
/// The UDP destination port is not checked: the tunnel port that received the datagram
/// already knows it. A VXLAN header without the I flag is malformed (RFC 7348 §5).
pub fn extract_vxlan(
    frame: &[u8],
    key: &mut Flow,
    layers: &mut Layers,
) -> Result<usize, Malformed> {
    const VXLAN_HLEN: usize = 8;
    if frame.len() < ETH_HLEN + 20 {
        return Err(Malformed::VxlanTooShort);
    }
    if be16(frame, 12) != ethertype::IPV4 {
        return Err(Malformed::VxlanNotUdp);
    }
    let ip = &frame[ETH_HLEN..];
    if ip[0] >> 4 != 4 {
        return Err(Malformed::Ipv4BadVersion);
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ihl < 20 || ip.len() < ihl + 8 + VXLAN_HLEN {
        return Err(Malformed::VxlanTooShort);
    }
    if ip[9] != ipproto::UDP || be16(ip, 6) & 0x3fff != 0 {
        return Err(Malformed::VxlanNotUdp);
    }
    let vx = &ip[ihl + 8..];
    if vx[0] & 0x08 == 0 {
        return Err(Malformed::VxlanBadFlags);
    }
    key.set_tun_src(be32(ip, 12));
    key.set_tun_dst(be32(ip, 16));
    key.set_tun_id((be32(vx, 4) >> 8) as u64);
    let inner = ETH_HLEN + ihl + 8 + VXLAN_HLEN;
    extract(&frame[inner..], key, layers)?;
    Ok(inner)
}
