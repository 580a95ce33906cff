//! ARP (RFC 826) for Ethernet and IPv4.

use std::net::Ipv4Addr;

use super::ethernet::EtherType;
use super::{Error, EthernetAddress, Result, read_ipv4, read_u16, write_u16};

enum_with_unknown! {
    /// The ARP hardware type.
    pub enum ArpHardware(u16) {
        /// Ethernet.
        Ethernet = 1,
    }
}

enum_with_unknown! {
    /// The ARP operation.
    pub enum ArpOperation(u16) {
        /// Request.
        Request = 1,
        /// Reply.
        Reply = 2,
    }
}

mod field {
    use crate::wire::field::*;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    // The address fields below hold for hlen = 6, plen = 4 only.
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// The length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// A read/write view of an ARP packet with 6-byte hardware and 4-byte protocol
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wrap a buffer without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` unless the address lengths are 6 and 4 and the buffer holds
    /// all four addresses. Hardware and protocol types are not checked here.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::OPER.end
            || data[field::HLEN] != 6
            || data[field::PLEN] != 4
            || data.len() < PACKET_LEN
        {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the hardware type.
    pub fn hardware_type(&self) -> ArpHardware {
        read_u16(&self.buffer.as_ref()[field::HTYPE]).into()
    }

    /// Return the protocol type.
    pub fn protocol_type(&self) -> EtherType {
        read_u16(&self.buffer.as_ref()[field::PTYPE]).into()
    }

    /// Return the hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Return the protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Return the operation.
    pub fn operation(&self) -> ArpOperation {
        read_u16(&self.buffer.as_ref()[field::OPER]).into()
    }

    /// Return the sender hardware address.
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::read(&self.buffer.as_ref()[field::SHA])
    }

    /// Return the sender protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SPA])
    }

    /// Return the target hardware address.
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::read(&self.buffer.as_ref()[field::THA])
    }

    /// Return the target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Set the hardware type.
    pub fn set_hardware_type(&mut self, value: ArpHardware) {
        write_u16(&mut self.buffer.as_mut()[field::HTYPE], value.into());
    }

    /// Set the protocol type.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(&mut self.buffer.as_mut()[field::PTYPE], value.into());
    }

    /// Set the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Set the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Set the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(&mut self.buffer.as_mut()[field::OPER], value.into());
    }

    /// Set the sender hardware address.
    pub fn set_source_hardware_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value.0);
    }

    /// Set the sender protocol address.
    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value.octets());
    }

    /// Set the target hardware address.
    pub fn set_target_hardware_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value.0);
    }

    /// Set the target protocol address.
    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value.octets());
    }
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// The operation; other values than request and reply are kept.
    pub operation: ArpOperation,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parse a packet; `Err` unless it is Ethernet/IPv4 with lengths 6 and 4.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &ArpPacket<&T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != ArpHardware::Ethernet
            || packet.protocol_type() != EtherType::Ipv4
        {
            return Err(Error);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Return the packet length, 28.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Write the packet into the first 28 bytes of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(ArpHardware::Ethernet);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ARP part of a captured "who has 10.0.0.254? tell 10.0.0.1".
    static PACKET_BYTES: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0xfe,
    ];

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 254),
        }
    }

    #[test]
    fn deconstruct() {
        let p = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.hardware_type(), ArpHardware::Ethernet);
        assert_eq!(p.protocol_type(), EtherType::Ipv4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), ArpOperation::Request);
        assert_eq!(p.source_hardware_addr(), repr().source_hardware_addr);
        assert_eq!(p.source_protocol_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_hardware_addr(), EthernetAddress([0; 6]));
        assert_eq!(p.target_protocol_addr(), Ipv4Addr::new(10, 0, 0, 254));
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 28];
        let mut p = ArpPacket::new_unchecked(&mut bytes);
        p.set_hardware_type(ArpHardware::Ethernet);
        p.set_protocol_type(EtherType::Ipv4);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(ArpOperation::Request);
        p.set_source_hardware_addr(repr().source_hardware_addr);
        p.set_source_protocol_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_target_hardware_addr(EthernetAddress([0; 6]));
        p.set_target_protocol_addr(Ipv4Addr::new(10, 0, 0, 254));
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn repr_round_trip() {
        let p = ArpPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Ok(repr()));
        let mut bytes = vec![0xa5; repr().buffer_len()];
        repr().emit(&mut ArpPacket::new_unchecked(&mut bytes));
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn truncated() {
        for n in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&PACKET_BYTES[..n]),
                Err(Error),
                "{n}"
            );
        }
    }

    #[test]
    fn other_address_lengths() {
        let mut bytes = PACKET_BYTES.to_vec();
        bytes.resize(64, 0);
        bytes[4] = 8;
        assert_eq!(ArpPacket::new_checked(&bytes[..]), Err(Error));
        bytes[4] = 6;
        bytes[5] = 16;
        assert_eq!(ArpPacket::new_checked(&bytes[..]), Err(Error));
    }

    #[test]
    fn parse_rejects_other_types() {
        let mut bytes = PACKET_BYTES;
        bytes[0..2].copy_from_slice(&[0x00, 0x06]);
        let p = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.hardware_type(), ArpHardware::Unknown(6));
        assert_eq!(ArpRepr::parse(&p), Err(Error));
        let mut bytes = PACKET_BYTES;
        bytes[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()),
            Err(Error)
        );
    }

    #[test]
    fn matches_etherparse() {
        let parsed = etherparse::ArpPacket::from_slice(&PACKET_BYTES).unwrap();
        let ours = repr();
        assert_eq!(parsed.sender_hw_addr(), &ours.source_hardware_addr.0[..]);
        assert_eq!(
            parsed.target_protocol_addr(),
            &ours.target_protocol_addr.octets()[..]
        );
        assert_eq!(parsed.operation, etherparse::ArpOperation::REQUEST);
    }
}
