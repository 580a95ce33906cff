//! UDP datagrams (RFC 768).

use super::{Error, IpPair, IpProtocol, Result, checksum, read_u16, write_u16};

mod field {
    use crate::wire::field::*;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// The length of the header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than 8 bytes, or the length field
    /// is below 8 or beyond the buffer. [`set_len`](Self::set_len) invalidates
    /// the result.
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(Error);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > buffer_len {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the source port.
    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// Return the destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// Return the length field (header included).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Return the checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Query whether the checksum is right for the addresses in `ip`. Over
    /// IPv4 a zero checksum means "none" and is accepted; over IPv6 it is
    /// invalid (RFC 8200 §8.1).
    pub fn verify_checksum(&self, ip: &IpPair) -> bool {
        if self.checksum() == 0 {
            return matches!(ip, IpPair::V4 { .. });
        }
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::sum(data, ip.pseudo_header(IpProtocol::Udp, u32::from(len)));
        checksum::fold(sum) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// Return the payload, bounded by the length field.
    pub fn payload(&self) -> &'a [u8] {
        let len = usize::from(self.len());
        &self.buffer.as_ref()[HEADER_LEN..len]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], value);
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], value);
    }

    /// Set the length field.
    pub fn set_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], value);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Compute the checksum over the length field's bytes with the
    /// pseudo-header of `ip`, and store it; a computed 0 is stored as 0xffff.
    pub fn fill_checksum(&mut self, ip: &IpPair) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::sum(data, ip.pseudo_header(IpProtocol::Udp, u32::from(len)));
        let c = !checksum::fold(sum);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Return a mutable view of the payload, bounded by the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parse a datagram, verifying its checksum against `ip`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &UdpPacket<&T>, ip: &IpPair) -> Result<UdpRepr> {
        packet.check_len()?;
        if !packet.verify_checksum(ip) {
            return Err(Error);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.payload().len(),
        })
    }

    /// Return the header length, 8.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the 8-byte header with checksum 0 into `packet`. Write the payload
    /// after it, then call [`UdpPacket::fill_checksum`] if a checksum is wanted.
    ///
    /// # Panics
    /// If `payload_len + 8` exceeds 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) {
        let len = u16::try_from(HEADER_LEN + self.payload_len).expect("UDP datagram too long");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // UDP(sport=53000, dport=53)/<a 12-byte DNS header> from 10.0.0.1 to
    // 10.0.0.53, as scapy writes it.
    static PACKET_BYTES: [u8; 20] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x14, 0x09, 0x1e, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    fn ip() -> IpPair {
        IpPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 53),
        }
    }

    #[test]
    fn deconstruct() {
        let p = UdpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 53000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 20);
        assert_eq!(p.checksum(), 0x091e);
        assert_eq!(p.payload(), &PACKET_BYTES[8..]);
        assert!(p.verify_checksum(&ip()));
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 20];
        let mut p = UdpPacket::new_unchecked(&mut bytes);
        p.set_src_port(53000);
        p.set_dst_port(53);
        p.set_len(20);
        p.payload_mut().copy_from_slice(&PACKET_BYTES[8..]);
        p.fill_checksum(&ip());
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn repr_round_trip() {
        let p = UdpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        let repr = UdpRepr::parse(&p, &ip()).unwrap();
        assert_eq!(
            repr,
            UdpRepr {
                src_port: 53000,
                dst_port: 53,
                payload_len: 12
            }
        );
        let mut bytes = vec![0xa5; repr.buffer_len() + repr.payload_len];
        let mut out = UdpPacket::new_unchecked(&mut bytes);
        repr.emit(&mut out);
        out.payload_mut().copy_from_slice(&PACKET_BYTES[8..]);
        out.fill_checksum(&ip());
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn checksum_rules() {
        let (hdr, payload) = etherparse::UdpHeader::from_slice(&PACKET_BYTES).unwrap();
        let c = hdr
            .calc_checksum_ipv4_raw([10, 0, 0, 1], [10, 0, 0, 53], payload)
            .unwrap();
        assert_eq!(c, 0x091e);
        // Zero: "no checksum" over IPv4, invalid over IPv6.
        let mut bytes = PACKET_BYTES;
        bytes[6..8].copy_from_slice(&[0, 0]);
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum(&ip()));
        let v6 = IpPair::V6 {
            src: "::1".parse().unwrap(),
            dst: "::2".parse().unwrap(),
        };
        assert!(!p.verify_checksum(&v6));
        // A wrong checksum.
        bytes[6] = 0x12;
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(!p.verify_checksum(&ip()));
        assert_eq!(UdpRepr::parse(&p, &ip()), Err(Error));
    }

    #[test]
    fn fill_writes_ffff_for_zero() {
        // Choose the payload so that the checksum computes to zero: with the
        // checksum field 0, the sum of everything else must be 0xffff.
        let mut bytes = vec![0u8; 10];
        let mut p = UdpPacket::new_unchecked(&mut bytes);
        p.set_len(10);
        let pseudo = ip().pseudo_header(IpProtocol::Udp, 10);
        let partial = checksum::fold(checksum::sum(p.as_ref(), pseudo));
        let fill = 0xffff - partial;
        p.payload_mut().copy_from_slice(&fill.to_be_bytes());
        p.fill_checksum(&ip());
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&ip()));
    }

    #[test]
    fn truncated_and_lying() {
        for n in 0..PACKET_BYTES.len() {
            assert_eq!(
                UdpPacket::new_checked(&PACKET_BYTES[..n]),
                Err(Error),
                "{n}"
            );
        }
        let mut bytes = PACKET_BYTES;
        for len in [0u16, 7, 21, 0xffff] {
            bytes[4..6].copy_from_slice(&len.to_be_bytes());
            assert_eq!(UdpPacket::new_checked(&bytes[..]), Err(Error), "{len}");
        }
        // A length below the buffer bounds the payload.
        bytes[4..6].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&bytes[..]).unwrap().payload(),
            &[0x12, 0x34]
        );
    }
}
