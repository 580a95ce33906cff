//! IPv4 (RFC 791).

use std::net::Ipv4Addr;

use super::{Error, IpProtocol, Result, checksum, read_ipv4, read_u16, write_u16};

mod field {
    use crate::wire::field::*;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// The length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than 20 bytes, the header length is
    /// below 20 or above the total length, or the buffer is shorter than the
    /// total length. The buffer may be longer (Ethernet padding).
    ///
    /// The version is not checked here; [`Ipv4Repr::parse`] does.
    /// [`set_header_len`](Self::set_header_len) and
    /// [`set_total_len`](Self::set_total_len) invalidate the result.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || header_len > total_len || len < total_len {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Return the header length in bytes (IHL × 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Return the Differentiated Services Code Point.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Return the Explicit Congestion Notification bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Return the whole former TOS byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Return the total length field.
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Return the identification field.
    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    /// Return the Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_DF != 0
    }

    /// Return the More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_MF != 0
    }

    /// Return the fragment offset, in octets.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & OFFSET_MASK) << 3
    }

    /// Query whether this is a fragment (More Fragments set or offset non-zero).
    pub fn is_fragment(&self) -> bool {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Return the time-to-live field.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Return the protocol field.
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[field::PROTOCOL].into()
    }

    /// Return the header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Return the source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Return the destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Query whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        let header_len = usize::from(self.header_len());
        checksum::checksum(&self.buffer.as_ref()[..header_len]) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// Return the options: the header bytes after the first 20.
    pub fn options(&self) -> &'a [u8] {
        let header_len = usize::from(self.header_len());
        &self.buffer.as_ref()[HEADER_LEN..header_len]
    }

    /// Return the payload, bounded by the total length: Ethernet padding after
    /// it is excluded.
    pub fn payload(&self) -> &'a [u8] {
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        &self.buffer.as_ref()[header_len..total_len]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Set the version field.
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Set the header length in bytes; it is stored divided by 4.
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) & 0x0f);
    }

    /// Set the DSCP (6 bits).
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Set the ECN bits (2 bits).
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Set the whole former TOS byte (DSCP and ECN).
    pub fn set_tos(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Set the total length field.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], value);
    }

    /// Set the identification field.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], value);
    }

    fn set_flg_off(&mut self, mask: u16, value: u16) {
        let old = read_u16(&self.buffer.as_ref()[field::FLG_OFF]);
        write_u16(
            &mut self.buffer.as_mut()[field::FLG_OFF],
            (old & !mask) | value,
        );
    }

    /// Clear the flags and the fragment offset.
    pub fn clear_flags(&mut self) {
        self.set_flg_off(0xffff, 0);
    }

    /// Set the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    /// Set the More Fragments flag.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Set the fragment offset, in octets; it is stored divided by 8.
    pub fn set_frag_offset(&mut self, value: u16) {
        self.set_flg_off(OFFSET_MASK, value >> 3);
    }

    /// Set the time-to-live field.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Set the protocol field.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Set the header checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Compute the header checksum and store it. The header length must be
    /// within the buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = usize::from(self.header_len());
        let c = checksum::checksum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(c);
    }

    /// Return a mutable view of the payload, bounded by the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        &mut self.buffer.as_mut()[header_len..total_len]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv4 header without options or fragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol.
    pub next_header: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// The former TOS byte: DSCP and ECN.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parse a packet. `Err` for a version other than 4, a wrong header
    /// checksum or a fragment. Options are skipped and not represented.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Ipv4Packet<&T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if packet.version() != 4 || !packet.verify_checksum() || packet.is_fragment() {
            return Err(Error);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload().len(),
            hop_limit: packet.hop_limit(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Return the header length, 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write a 20-byte header with its checksum into `packet`.
    ///
    /// # Panics
    /// If `payload_len + 20` exceeds 65535 or the buffer is shorter than 20.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        let total = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 packet too long");
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_tos(self.tos);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // IP(src=10.0.0.1, dst=10.0.0.2, id=0x1234, DF, ttl=64, tos=0x2a)/TCP(SYN)
    // as scapy writes it, without the Ethernet header.
    static PACKET_BYTES: [u8; 60] = [
        0x45, 0x2a, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x5c, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x98, 0x75, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    // A header with a 4-byte option (Router Alert), payload "ab"; checksum filled.
    static OPTIONS_BYTES: [u8; 26] = [
        0x46, 0x00, 0x00, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x01, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x61, 0x62,
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            next_header: IpProtocol::Tcp,
            payload_len: 40,
            hop_limit: 64,
            tos: 0x2a,
            ident: 0x1234,
            dont_frag: true,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn(), p.tos()), (0x0a, 0x02, 0x2a));
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0x145c);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &PACKET_BYTES[20..]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 60];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp(0x0a);
        p.set_ecn(0x02);
        p.set_total_len(60);
        p.set_ident(0x1234);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_hop_limit(64);
        p.set_next_header(IpProtocol::Tcp);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.fill_checksum();
        p.payload_mut().copy_from_slice(&PACKET_BYTES[20..]);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn fragment_fields() {
        let mut bytes = PACKET_BYTES;
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert!(p.more_frags() && p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.clear_flags();
        assert!(!p.more_frags() && !p.dont_frag() && !p.is_fragment());
    }

    #[test]
    fn options() {
        let p = Ipv4Packet::new_checked(&OPTIONS_BYTES[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), b"ab");
        let mut bytes = OPTIONS_BYTES;
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.fill_checksum();
        assert!(p.verify_checksum());
        let eth = etherparse::Ipv4Header::from_slice(&bytes).unwrap().0;
        assert_eq!(eth.header_checksum, eth.calc_header_checksum());
        assert_eq!(eth.options.as_slice(), &[0x94, 0x04, 0x00, 0x00]);
    }

    #[test]
    fn repr_round_trip() {
        let p = Ipv4Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p), Ok(repr()));
        let mut bytes = vec![0xa5; repr().buffer_len() + 40];
        repr().emit(&mut Ipv4Packet::new_unchecked(&mut bytes));
        bytes[20..].copy_from_slice(&PACKET_BYTES[20..]);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn checksum_matches_etherparse() {
        let (hdr, _) = etherparse::Ipv4Header::from_slice(&PACKET_BYTES).unwrap();
        assert_eq!(hdr.calc_header_checksum(), 0x145c);
        let mut bytes = PACKET_BYTES;
        bytes[10] ^= 1;
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(Error));
    }

    #[test]
    fn truncated() {
        for n in 0..PACKET_BYTES.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&PACKET_BYTES[..n]),
                Err(Error),
                "{n}"
            );
        }
    }

    #[test]
    fn overlong_excludes_padding() {
        let mut bytes = PACKET_BYTES.to_vec();
        bytes.extend_from_slice(&[0; 6]);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload().len(), 40);
    }

    #[test]
    fn lying_lengths() {
        // Total length beyond the buffer.
        let mut bytes = PACKET_BYTES;
        bytes[2..4].copy_from_slice(&61u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(Error));
        // IHL < 5.
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(Error));
        bytes[0] = 0x40;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(Error));
        // IHL × 4 beyond the total length.
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x4f;
        bytes[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(Error));
        // Total length below 20.
        let mut bytes = PACKET_BYTES;
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(Error));
    }

    #[test]
    fn bad_version_is_a_separate_check() {
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x65;
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(Ipv4Repr::parse(&p), Err(Error));
    }

    #[test]
    fn parse_rejects_fragments() {
        let mut bytes = PACKET_BYTES;
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_more_frags(true);
        p.fill_checksum();
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error)
        );
    }
}
