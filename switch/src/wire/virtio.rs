//! The virtio-net header that a TAP opened with `IFF_VNET_HDR` puts before
//! every frame (Linux `struct virtio_net_hdr_v1`).
//!
//! Byte order: the kernel reads and writes these fields in the host's byte
//! order unless `TUNSETVNETLE`/`TUNSETVNETBE` says otherwise. This module
//! always uses little-endian, which is right on x86-64 and arm64; a big-endian
//! host must set `TUNSETVNETLE` on the TAP.
//!
//! The header is 12 bytes with `num_buffers` (`TUNSETVNETHDRSZ` 12, the size
//! this switch configures); [`VirtioNetHdr::parse_legacy`] and
//! [`VirtioNetHdr::emit_legacy`] handle the 10-byte form without it.

use super::{Error, Result};

mod field {
    use crate::wire::field::*;

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
    pub const NUM_BUFFERS: Field = 10..12;
}

/// The virtio-net header, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VirtioNetHdr {
    /// `NEEDS_CSUM`, `DATA_VALID`.
    pub flags: u8,
    /// `GSO_NONE`, `GSO_TCPV4`, ... possibly with `GSO_ECN` or'ed in.
    pub gso_type: u8,
    /// The length of the headers to copy into each segment. Often wrong or 0
    /// in practice: [`super::gso`] works it out from the packet instead.
    pub hdr_len: u16,
    /// The payload bytes per segment (MSS for TCP).
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the frame.
    pub csum_start: u16,
    /// Where to store the checksum, from `csum_start`.
    pub csum_offset: u16,
    /// Merged receive buffers; 0 or 1 on a TAP.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// The length of `virtio_net_hdr_v1`.
    pub const LEN: usize = field::NUM_BUFFERS.end;
    /// The length of the legacy header without `num_buffers`.
    pub const LEGACY_LEN: usize = field::CSUM_OFFSET.end;

    /// The L4 checksum is partial: see [`super::checksum::complete_partial`].
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksum has been verified (receive only).
    pub const DATA_VALID: u8 = 2;

    /// Not a GSO frame.
    pub const GSO_NONE: u8 = 0;
    /// TCP over IPv4 segmentation (TSO).
    pub const GSO_TCPV4: u8 = 1;
    /// UDP fragmentation offload (UFO, IP fragments).
    pub const GSO_UDP: u8 = 3;
    /// TCP over IPv6 segmentation (TSO).
    pub const GSO_TCPV6: u8 = 4;
    /// UDP segmentation (USO, `UDP_SEGMENT`), over IPv4 or IPv6.
    pub const GSO_UDP_L4: u8 = 5;
    /// Flag: the TCP stream uses ECN; the CWR bit may be set.
    pub const GSO_ECN: u8 = 0x80;

    /// Parse the 12-byte header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VirtioNetHdr> {
        if buf.len() < Self::LEN {
            return Err(Error);
        }
        let mut hdr = Self::parse_legacy(buf)?;
        hdr.num_buffers = le16(&buf[field::NUM_BUFFERS]);
        Ok(hdr)
    }

    /// Parse the 10-byte legacy header at the start of `buf`; `num_buffers`
    /// is 0.
    pub fn parse_legacy(buf: &[u8]) -> Result<VirtioNetHdr> {
        if buf.len() < Self::LEGACY_LEN {
            return Err(Error);
        }
        Ok(VirtioNetHdr {
            flags: buf[field::FLAGS],
            gso_type: buf[field::GSO_TYPE],
            hdr_len: le16(&buf[field::HDR_LEN]),
            gso_size: le16(&buf[field::GSO_SIZE]),
            csum_start: le16(&buf[field::CSUM_START]),
            csum_offset: le16(&buf[field::CSUM_OFFSET]),
            num_buffers: 0,
        })
    }

    /// Write the 12-byte header into the start of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than 12 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        self.emit_legacy(buf);
        buf[field::NUM_BUFFERS].copy_from_slice(&self.num_buffers.to_le_bytes());
    }

    /// Write the 10-byte legacy header into the start of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than 10 bytes.
    pub fn emit_legacy(&self, buf: &mut [u8]) {
        buf[field::FLAGS] = self.flags;
        buf[field::GSO_TYPE] = self.gso_type;
        buf[field::HDR_LEN].copy_from_slice(&self.hdr_len.to_le_bytes());
        buf[field::GSO_SIZE].copy_from_slice(&self.gso_size.to_le_bytes());
        buf[field::CSUM_START].copy_from_slice(&self.csum_start.to_le_bytes());
        buf[field::CSUM_OFFSET].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// Query whether `NEEDS_CSUM` is set.
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::NEEDS_CSUM != 0
    }

    /// Return the GSO type without the ECN flag.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !Self::GSO_ECN
    }
}

fn le16(data: &[u8]) -> u16 {
    u16::from_le_bytes([data[0], data[1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    // A TSO header as Linux writes it for a TCPv4 super-frame: NEEDS_CSUM,
    // GSO_TCPV4, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16,
    // num_buffers 1; little-endian.
    static HDR_BYTES: [u8; 12] = [
        0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x01, 0x00,
    ];

    fn hdr() -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VirtioNetHdr::NEEDS_CSUM,
            gso_type: VirtioNetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 1,
        }
    }

    #[test]
    fn parse() {
        assert_eq!(VirtioNetHdr::parse(&HDR_BYTES), Ok(hdr()));
        let h = VirtioNetHdr::parse(&HDR_BYTES).unwrap();
        assert!(h.needs_csum());
        assert_eq!(h.gso_kind(), VirtioNetHdr::GSO_TCPV4);
        let legacy = VirtioNetHdr::parse_legacy(&HDR_BYTES[..10]).unwrap();
        assert_eq!(
            legacy,
            VirtioNetHdr {
                num_buffers: 0,
                ..hdr()
            }
        );
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5u8; 12];
        hdr().emit(&mut bytes);
        assert_eq!(bytes, HDR_BYTES);
        let mut bytes = [0xa5u8; 12];
        hdr().emit_legacy(&mut bytes);
        assert_eq!(&bytes[..10], &HDR_BYTES[..10]);
        assert_eq!(&bytes[10..], &[0xa5, 0xa5]);
    }

    #[test]
    fn ecn_flag() {
        let h = VirtioNetHdr {
            gso_type: VirtioNetHdr::GSO_TCPV6 | VirtioNetHdr::GSO_ECN,
            ..hdr()
        };
        assert_eq!(h.gso_kind(), VirtioNetHdr::GSO_TCPV6);
    }

    #[test]
    fn truncated() {
        for n in 0..VirtioNetHdr::LEN {
            assert_eq!(VirtioNetHdr::parse(&HDR_BYTES[..n]), Err(Error));
        }
        for n in 0..VirtioNetHdr::LEGACY_LEN {
            assert_eq!(VirtioNetHdr::parse_legacy(&HDR_BYTES[..n]), Err(Error));
        }
    }
}
