//! Ethernet II frames.

use super::{Error, EthernetAddress, Result, read_u16, write_u16};

enum_with_unknown! {
    /// An EtherType.
    pub enum EtherType(u16) {
        /// IPv4.
        Ipv4 = 0x0800,
        /// ARP.
        Arp = 0x0806,
        /// IPv6.
        Ipv6 = 0x86dd,
        /// IEEE 802.1Q VLAN tag (C-tag).
        Vlan = 0x8100,
        /// IEEE 802.1ad service tag (S-tag, outer tag of QinQ).
        QinQ = 0x88a8,
    }
}

mod field {
    use crate::wire::field::*;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// The length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A read/write view of an Ethernet II frame (no FCS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap a buffer without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wrap a buffer, checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Return `Err` if the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the length of a frame with a payload of `payload_len` bytes.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Return the destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::read(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Return the source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::read(&self.buffer.as_ref()[field::SOURCE])
    }

    /// Return the EtherType (a TPID if the frame is VLAN-tagged).
    pub fn ethertype(&self) -> EtherType {
        read_u16(&self.buffer.as_ref()[field::ETHERTYPE]).into()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Return everything after the 14-byte header (VLAN tags included).
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination address.
    pub fn set_dst_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Set the EtherType.
    pub fn set_ethertype(&mut self, value: EtherType) {
        write_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], value.into());
    }

    /// Return a mutable view of everything after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Read the header of a checked frame.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &EthernetFrame<&T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Return the header length, 14.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into the first 14 bytes of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request as captured: broadcast destination, EtherType 0x0806.
    static FRAME_BYTES: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0xfe,
    ];

    const SRC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(f.src_addr(), SRC);
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload(), &FRAME_BYTES[14..]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 42];
        let mut f = EthernetFrame::new_unchecked(&mut bytes);
        f.set_dst_addr(EthernetAddress::BROADCAST);
        f.set_src_addr(SRC);
        f.set_ethertype(EtherType::Arp);
        f.payload_mut().copy_from_slice(&FRAME_BYTES[14..]);
        assert_eq!(&bytes[..], &FRAME_BYTES[..]);
    }

    #[test]
    fn repr_round_trip() {
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        let repr = EthernetRepr::parse(&f).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: SRC,
                dst_addr: EthernetAddress::BROADCAST,
                ethertype: EtherType::Arp,
            }
        );
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut bytes));
        assert_eq!(&bytes[..], &FRAME_BYTES[..14]);
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&FRAME_BYTES[..n]), Err(Error));
        }
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..HEADER_LEN]).unwrap();
        assert!(f.payload().is_empty());
    }

    #[test]
    fn unknown_ethertype_round_trips() {
        let mut bytes = FRAME_BYTES;
        bytes[12..14].copy_from_slice(&[0x88, 0xcc]);
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.ethertype(), EtherType::Unknown(0x88cc));
        assert_eq!(u16::from(f.ethertype()), 0x88cc);
    }
}
