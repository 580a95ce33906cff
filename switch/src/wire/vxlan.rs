//! VXLAN (RFC 7348): an 8-byte header after UDP, then the inner Ethernet frame.

use super::{Error, Result, read_u32, write_u32};

mod field {
    use crate::wire::field::*;

    pub const FLAGS: usize = 0;
    pub const RESERVED1: Field = 1..4;
    pub const VNI_RESERVED2: Field = 4..8;
    pub const PAYLOAD: Rest = 8..;
}

/// The length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The IANA-assigned UDP destination port.
pub const DEFAULT_PORT: u16 = 4789;

/// The I flag: the VNI is valid. It must be set.
pub const FLAG_I: u8 = 0x08;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// A read/write view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> VxlanPacket<T> {
        VxlanPacket { buffer }
    }

    /// Wrap a buffer, checking that it holds the 8-byte header. Flags are not
    /// checked here; [`VxlanRepr::parse`] does.
    pub fn new_checked(buffer: T) -> Result<VxlanPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than 8 bytes.
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

    /// Return the flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Return the I flag (VNI valid).
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// Return the VXLAN network identifier (24 bits).
    pub fn vni(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::VNI_RESERVED2]) >> 8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VxlanPacket<&'a T> {
    /// Return the inner Ethernet frame.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Set the flags byte.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Zero the reserved fields.
    pub fn clear_reserved(&mut self) {
        let data = self.buffer.as_mut();
        data[field::RESERVED1].fill(0);
        data[field::VNI_RESERVED2.end - 1] = 0;
    }

    /// Set the VNI; only the low 24 bits of `value` are used.
    pub fn set_vni(&mut self, value: u32) {
        let data = self.buffer.as_mut();
        let low = read_u32(&data[field::VNI_RESERVED2]) & 0xff;
        write_u32(
            &mut data[field::VNI_RESERVED2],
            ((value & MAX_VNI) << 8) | low,
        );
    }

    /// Return a mutable view of the inner frame.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
}

impl VxlanRepr {
    /// Parse a header. `Err` if the I flag is clear; reserved bits are ignored
    /// on receipt, as RFC 7348 requires.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &VxlanPacket<&T>) -> Result<VxlanRepr> {
        packet.check_len()?;
        if !packet.i_flag() {
            return Err(Error);
        }
        Ok(VxlanRepr { vni: packet.vni() })
    }

    /// Return the header length, 8.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header: I flag set, reserved bits zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanPacket<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VXLAN(vni=0x123456, flags=0x08) and the first bytes of the inner frame.
    static PACKET_BYTES: [u8; 14] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    ];

    #[test]
    fn deconstruct() {
        let p = VxlanPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.flags(), 0x08);
        assert!(p.i_flag());
        assert_eq!(p.vni(), 0x123456);
        assert_eq!(p.payload(), &PACKET_BYTES[8..]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 14];
        let mut p = VxlanPacket::new_unchecked(&mut bytes);
        p.set_flags(FLAG_I);
        p.clear_reserved();
        p.set_vni(0xff12_3456);
        p.payload_mut().copy_from_slice(&PACKET_BYTES[8..]);
        assert_eq!(&bytes[..], &PACKET_BYTES[..]);
    }

    #[test]
    fn repr_round_trip() {
        let p = VxlanPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        let repr = VxlanRepr::parse(&p).unwrap();
        assert_eq!(repr, VxlanRepr { vni: 0x123456 });
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut VxlanPacket::new_unchecked(&mut bytes));
        assert_eq!(&bytes[..], &PACKET_BYTES[..8]);
    }

    #[test]
    fn flags_on_receipt() {
        // Reserved bits set: ignored.
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0xff;
        bytes[1] = 0xff;
        bytes[7] = 0xff;
        let p = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&p), Ok(VxlanRepr { vni: 0x123456 }));
        // I flag clear: refused.
        bytes[0] = 0xf7;
        let p = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(VxlanRepr::parse(&p), Err(Error));
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(VxlanPacket::new_checked(&PACKET_BYTES[..n]), Err(Error));
        }
    }
}
