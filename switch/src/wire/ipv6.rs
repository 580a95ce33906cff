//! IPv6 (RFC 8200) and a walker over its extension headers.

use std::net::Ipv6Addr;

use super::{Error, IpProtocol, Result, read_ipv6, read_u16, read_u32, write_u16, write_u32};

mod field {
    use crate::wire::field::*;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// The length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The most extension headers [`walk_ext_headers`] follows.
pub const MAX_EXT_HEADERS: usize = 16;

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than 40 bytes plus the payload
    /// length. The buffer may be longer (Ethernet padding). The version is not
    /// checked here; [`Ipv6Repr::parse`] does. Jumbograms (payload length 0
    /// with a Jumbo option) are not supported: their payload reads as empty.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < HEADER_LEN + usize::from(self.payload_len()) {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::VER_TC_FLOW])
    }

    /// Return the version field.
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// Return the traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Return the flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// Return the payload length field.
    pub fn payload_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Return the next header field.
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[field::NXT_HDR].into()
    }

    /// Return the hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Return the source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Return the destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.buffer.as_ref()[field::DST_ADDR])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// Return the payload (extension headers included), bounded by the
    /// payload length: Ethernet padding after it is excluded.
    pub fn payload(&self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::VER_TC_FLOW], value);
    }

    /// Set the version field.
    pub fn set_version(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0x0fff_ffff) | (u32::from(value & 0x0f) << 28);
        self.set_ver_tc_flow(v);
    }

    /// Set the traffic class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let v = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(value) << 20);
        self.set_ver_tc_flow(v);
    }

    /// Set the flow label; only the low 20 bits of `value` are used.
    pub fn set_flow_label(&mut self, value: u32) {
        let v = (self.ver_tc_flow() & 0xfff0_0000) | (value & 0x000f_ffff);
        self.set_ver_tc_flow(v);
    }

    /// Set the payload length field.
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], value);
    }

    /// Set the next header field.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Set the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Return a mutable view of the payload, bounded by the payload length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv6 header; traffic class and flow label are emitted as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header.
    pub next_header: IpProtocol,
    /// Payload length in bytes (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parse a packet; `Err` for a version other than 6.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Ipv6Packet<&T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error);
        }
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Return the header length, 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the 40-byte header into `packet`.
    ///
    /// # Panics
    /// If `payload_len` exceeds 65535 or the buffer is shorter than 40.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        let len = u16::try_from(self.payload_len).expect("IPv6 payload too long");
        packet.set_ver_tc_flow(6 << 28);
        packet.set_payload_len(len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// What a Fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragInfo {
    /// Fragment offset, in octets.
    pub offset: u16,
    /// More Fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// The result of [`walk_ext_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtWalk {
    /// The protocol of the header where the walk stopped: the upper-layer
    /// protocol, or for a non-first fragment the Fragment header's next header.
    pub proto: u8,
    /// The offset within the walked data of the header named by `proto`.
    pub offset: usize,
    /// The Fragment header, if one was passed.
    pub frag: Option<FragInfo>,
}

impl ExtWalk {
    /// Query whether the walk stopped at a fragment other than the first, whose
    /// upper-layer header is not in this packet.
    pub fn is_later_fragment(&self) -> bool {
        self.frag.is_some_and(|f| f.offset != 0)
    }
}

/// Walk the extension headers at the start of `data` (an IPv6 payload), whose
/// type is `next_header`.
///
/// Follows Hop-by-Hop (0, first only), Routing (43), Fragment (44, at most one),
/// Destination Options (60) and AH (51); stops at anything else, including No
/// Next Header (59) and ESP (50). A non-first fragment stops the walk right after
/// its Fragment header. `Err` for a header that runs past `data`, a misplaced
/// Hop-by-Hop or second Fragment header, or more than [`MAX_EXT_HEADERS`].
pub fn walk_ext_headers(next_header: u8, data: &[u8]) -> Result<ExtWalk> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const AH: u8 = 51;
    const DEST_OPTS: u8 = 60;

    let mut walk = ExtWalk {
        proto: next_header,
        offset: 0,
        frag: None,
    };
    for index in 0..=MAX_EXT_HEADERS {
        let len = match walk.proto {
            HOP_BY_HOP if index != 0 => return Err(Error),
            HOP_BY_HOP | ROUTING | DEST_OPTS => {
                let hdr = data.get(walk.offset..walk.offset + 2).ok_or(Error)?;
                (usize::from(hdr[1]) + 1) * 8
            }
            AH => {
                let hdr = data.get(walk.offset..walk.offset + 2).ok_or(Error)?;
                (usize::from(hdr[1]) + 2) * 4
            }
            FRAGMENT => {
                if walk.frag.is_some() {
                    return Err(Error);
                }
                let hdr = data.get(walk.offset..walk.offset + 8).ok_or(Error)?;
                let off_flags = read_u16(&hdr[2..4]);
                walk.frag = Some(FragInfo {
                    offset: off_flags & 0xfff8,
                    more: off_flags & 1 != 0,
                    ident: read_u32(&hdr[4..8]),
                });
                8
            }
            _ => return Ok(walk),
        };
        if index == MAX_EXT_HEADERS {
            break;
        }
        let end = walk.offset + len;
        if end > data.len() {
            return Err(Error);
        }
        walk.proto = data[walk.offset];
        walk.offset = end;
        if walk.is_later_fragment() {
            // What follows is not in this packet, whatever the header says.
            return Ok(walk);
        }
    }
    Err(Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    // IPv6(src=fd00::1, dst=fd00::2, tc=0x2a, fl=0x12345)/ICMPv6EchoRequest(
    // id=0x1a2b, seq=5, data="hello v6"), as scapy writes it.
    static PACKET_BYTES: [u8; 56] = [
        0x62, 0xa1, 0x23, 0x45, 0x00, 0x10, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0xb1, 0x57, 0x1a,
        0x2b, 0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x76, 0x36,
    ];

    // IPv6()/HopByHop(RouterAlert)/DestOpt()/Fragment(id=0xdeadbeef, m=1)/UDP/"xxxxxxxx"
    static EXT_BYTES: [u8; 80] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3c, 0x00, 0x05, 0x02, 0x00,
        0x00, 0x01, 0x00, 0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00, 0x00, 0x01,
        0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x00, 0x02, 0x00, 0x10, 0x23, 0xe5, 0x78, 0x78, 0x78,
        0x78, 0x78, 0x78, 0x78, 0x78,
    ];

    fn src() -> Ipv6Addr {
        "fd00::1".parse().unwrap()
    }

    fn dst() -> Ipv6Addr {
        "fd00::2".parse().unwrap()
    }

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x2a);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 16);
        assert_eq!(p.next_header(), IpProtocol::Icmpv6);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), src());
        assert_eq!(p.dst_addr(), dst());
        assert_eq!(p.payload(), &PACKET_BYTES[40..]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 56];
        let mut p = Ipv6Packet::new_unchecked(&mut bytes);
        p.set_version(6);
        p.set_traffic_class(0x2a);
        p.set_flow_label(0x12345);
        p.set_payload_len(16);
        p.set_next_header(IpProtocol::Icmpv6);
        p.set_hop_limit(64);
        p.set_src_addr(src());
        p.set_dst_addr(dst());
        p.payload_mut().copy_from_slice(&PACKET_BYTES[40..]);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn repr_round_trip() {
        let p = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        let repr = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Ipv6Repr {
                src_addr: src(),
                dst_addr: dst(),
                next_header: IpProtocol::Icmpv6,
                payload_len: 16,
                hop_limit: 64,
            }
        );
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut bytes));
        let mut expect = PACKET_BYTES[..40].to_vec();
        expect[0..4].copy_from_slice(&[0x60, 0, 0, 0]); // traffic class and flow label 0
        assert_eq!(bytes, expect);
        let (eth, _) = etherparse::Ipv6Header::from_slice(&bytes).unwrap();
        assert_eq!(eth.source, src().octets());
        assert_eq!(eth.payload_length, 16);
    }

    #[test]
    fn bad_version() {
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x42;
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Err(Error));
    }

    #[test]
    fn truncated_and_lying() {
        for n in 0..PACKET_BYTES.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&PACKET_BYTES[..n]),
                Err(Error),
                "{n}"
            );
        }
        let mut bytes = PACKET_BYTES;
        bytes[4..6].copy_from_slice(&17u16.to_be_bytes());
        assert_eq!(Ipv6Packet::new_checked(&bytes[..]), Err(Error));
        bytes[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(Ipv6Packet::new_checked(&bytes[..]), Err(Error));
        // Padding after the payload is excluded.
        let padded = [&PACKET_BYTES[..], &[0u8; 4][..]].concat();
        assert_eq!(
            Ipv6Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            16
        );
    }

    #[test]
    fn walk_no_ext() {
        let p = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        let w = walk_ext_headers(p.next_header().into(), p.payload()).unwrap();
        assert_eq!(
            w,
            ExtWalk {
                proto: 58,
                offset: 0,
                frag: None
            }
        );
    }

    #[test]
    fn walk_hbh_dest_frag() {
        let p = Ipv6Packet::new_checked(&EXT_BYTES[..]).unwrap();
        let w = walk_ext_headers(p.next_header().into(), p.payload()).unwrap();
        assert_eq!(w.proto, 17);
        assert_eq!(w.offset, 24);
        assert_eq!(
            w.frag,
            Some(FragInfo {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );
        assert!(!w.is_later_fragment());
        // etherparse agrees on where the UDP header starts.
        let sliced = etherparse::SlicedPacket::from_ip(&EXT_BYTES).unwrap();
        let ip_payload = sliced.net.unwrap();
        let ip_payload = ip_payload.ip_payload_ref().unwrap();
        assert_eq!(ip_payload.payload, &p.payload()[w.offset..]);
    }

    #[test]
    fn walk_later_fragment_stops() {
        let mut bytes = EXT_BYTES;
        // Offset 8 × 185 = 1480 octets, M = 0.
        bytes[40 + 16 + 2..40 + 16 + 4].copy_from_slice(&(185u16 << 3).to_be_bytes());
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let w = walk_ext_headers(0, p.payload()).unwrap();
        assert_eq!((w.proto, w.offset), (17, 24));
        let f = w.frag.unwrap();
        assert_eq!((f.offset, f.more), (1480, false));
        assert!(w.is_later_fragment());
        // Even if the "next header" after it claims to be another extension.
        bytes[40 + 16] = 60;
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let w = walk_ext_headers(0, p.payload()).unwrap();
        assert_eq!((w.proto, w.offset), (60, 24));
    }

    #[test]
    fn walk_ah_and_routing() {
        // Routing (len 0 → 8 bytes) → AH (len 1 → 12 bytes) → No Next Header.
        let mut data = vec![51, 0, 0, 0, 0, 0, 0, 0];
        data.extend_from_slice(&[59, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        let w = walk_ext_headers(43, &data).unwrap();
        assert_eq!((w.proto, w.offset, w.frag), (59, 20, None));
    }

    #[test]
    fn walk_malformed() {
        // Length beyond the buffer.
        assert_eq!(walk_ext_headers(60, &[17, 1, 0, 0, 0, 0, 0, 0]), Err(Error));
        assert_eq!(walk_ext_headers(51, &[17, 1, 0, 0, 0, 0, 0, 0]), Err(Error));
        // Header shorter than its fixed part.
        assert_eq!(walk_ext_headers(0, &[17]), Err(Error));
        assert_eq!(walk_ext_headers(44, &[17, 0, 0, 0, 0, 0, 0]), Err(Error));
        // Hop-by-Hop not first.
        assert_eq!(
            walk_ext_headers(60, &[0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error)
        );
        // Two Fragment headers.
        let two_frags = [44, 0, 0, 1, 0, 0, 0, 1, 17, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(walk_ext_headers(44, &two_frags), Err(Error));
        // A chain of Destination Options longer than the bound.
        let mut chain = Vec::new();
        for _ in 0..MAX_EXT_HEADERS {
            chain.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(walk_ext_headers(60, &chain), Err(Error));
        let last = chain.len() - 8;
        chain[last] = 6;
        let w = walk_ext_headers(60, &chain).unwrap();
        assert_eq!((w.proto, w.offset), (6, chain.len()));
        // Every prefix of a valid chain fails or stops inside the data.
        let p = Ipv6Packet::new_checked(&EXT_BYTES[..]).unwrap();
        for n in 0..p.payload().len() {
            if let Ok(w) = walk_ext_headers(0, &p.payload()[..n]) {
                assert!(w.offset <= n);
            }
        }
    }
}
