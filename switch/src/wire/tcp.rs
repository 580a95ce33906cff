//! TCP segments (RFC 9293).

use super::{
    Error, IpPair, IpProtocol, Result, checksum, read_u16, read_u32, write_u16, write_u32,
};

mod field {
    use crate::wire::field::*;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// The length of a header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// The bits of [`TcpPacket::flags`].
pub mod flags {
    /// No more data from sender.
    pub const FIN: u16 = 0x001;
    /// Synchronize sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset the connection.
    pub const RST: u16 = 0x004;
    /// Push function.
    pub const PSH: u16 = 0x008;
    /// Acknowledgment field is significant.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer field is significant.
    pub const URG: u16 = 0x020;
    /// ECN echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce (historic, RFC 3540).
    pub const NS: u16 = 0x100;
}

/// The 12 bits of the flags word (3 reserved bits, NS and the eight flags).
const FLAGS_MASK: u16 = 0x0fff;

/// A read/write view of a TCP segment. The buffer must end where the segment
/// ends (the IP payload), since the payload and checksum extend to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than 20 bytes, or the data offset
    /// is below 20 bytes or beyond the buffer.
    /// [`set_header_len`](Self::set_header_len) invalidates the result.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN || header_len > len {
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

    /// Return the sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    /// Return the acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// Return the header length in bytes (data offset × 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// Return the 12 flag bits; see [`flags`].
    pub fn flags(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::FLAGS]) & FLAGS_MASK
    }

    fn flag(&self, bit: u16) -> bool {
        self.flags() & bit != 0
    }

    /// Return the FIN flag.
    pub fn fin(&self) -> bool {
        self.flag(flags::FIN)
    }

    /// Return the SYN flag.
    pub fn syn(&self) -> bool {
        self.flag(flags::SYN)
    }

    /// Return the RST flag.
    pub fn rst(&self) -> bool {
        self.flag(flags::RST)
    }

    /// Return the PSH flag.
    pub fn psh(&self) -> bool {
        self.flag(flags::PSH)
    }

    /// Return the ACK flag.
    pub fn ack(&self) -> bool {
        self.flag(flags::ACK)
    }

    /// Return the URG flag.
    pub fn urg(&self) -> bool {
        self.flag(flags::URG)
    }

    /// Return the ECE flag.
    pub fn ece(&self) -> bool {
        self.flag(flags::ECE)
    }

    /// Return the CWR flag.
    pub fn cwr(&self) -> bool {
        self.flag(flags::CWR)
    }

    /// Return the NS flag.
    pub fn ns(&self) -> bool {
        self.flag(flags::NS)
    }

    /// Return the window size field (unscaled).
    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    /// Return the checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Return the urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// Return the length of the payload.
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len() - usize::from(self.header_len())
    }

    /// Return the sequence space the segment takes: payload, SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload_len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Query whether the checksum is right for the addresses in `ip`.
    pub fn verify_checksum(&self, ip: &IpPair) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        checksum::fold(checksum::sum(data, ip.pseudo_header(IpProtocol::Tcp, len))) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// Return the options: the header bytes after the first 20.
    pub fn options(&self) -> &'a [u8] {
        let header_len = usize::from(self.header_len());
        &self.buffer.as_ref()[HEADER_LEN..header_len]
    }

    /// Return the payload: everything after the header.
    pub fn payload(&self) -> &'a [u8] {
        let header_len = usize::from(self.header_len());
        &self.buffer.as_ref()[header_len..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Set the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], value);
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], value);
    }

    /// Set the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], value);
    }

    /// Set the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::ACK_NUM], value);
    }

    /// Set the header length in bytes; it is stored divided by 4.
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS.start];
        *b = (*b & 0x0f) | ((value / 4) << 4);
    }

    /// Set the 12 flag bits, keeping the data offset.
    pub fn set_flags(&mut self, value: u16) {
        let old = read_u16(&self.buffer.as_ref()[field::FLAGS]);
        let new = (old & !FLAGS_MASK) | (value & FLAGS_MASK);
        write_u16(&mut self.buffer.as_mut()[field::FLAGS], new);
    }

    /// Set the window size field.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::WIN_SIZE], value);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Set the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::URGENT], value);
    }

    /// Compute the checksum over the whole buffer with the pseudo-header of
    /// `ip`, and store it.
    pub fn fill_checksum(&mut self, ip: &IpPair) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let sum = checksum::sum(data, ip.pseudo_header(IpProtocol::Tcp, len));
        self.set_checksum(!checksum::fold(sum));
    }

    /// Return a mutable view of the options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// Return a mutable view of the payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = usize::from(self.header_len());
        &mut self.buffer.as_mut()[header_len..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A TCP header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// The 12 flag bits; see [`flags`].
    pub flags: u16,
    /// Window size (unscaled).
    pub window_len: u16,
}

impl TcpRepr {
    /// Read the header fields of a checked segment; options are skipped. The
    /// checksum is not verified here: it needs the IP addresses.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &TcpPacket<&T>) -> Result<TcpRepr> {
        packet.check_len()?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        })
    }

    /// Return the header length, 20.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write a 20-byte header (urgent pointer 0, checksum 0) into `packet`.
    /// Write the payload after it, then call
    /// [`TcpPacket::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        write_u16(&mut packet.buffer.as_mut()[field::FLAGS], 5 << 12);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // TCP(sport=40000, dport=80, seq=0x01020304, flags=S, window=64240,
    // options=MSS 1460, SACK-permitted, timestamps, NOP, wscale 7), sent from
    // 10.0.0.1 to 10.0.0.2.
    static SYN_BYTES: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x98, 0x75, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    // TCP(sport=443, dport=50000, seq=1000, ack=2000, flags=PA, window=512)/
    // "GET / HTTP/1.1\r\n" from fd00::1 to fd00::2.
    static PSH_ACK_BYTES: [u8; 36] = [
        0x01, 0xbb, 0xc3, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0, 0x50, 0x18, 0x02,
        0x00, 0x11, 0x5e, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50,
        0x2f, 0x31, 0x2e, 0x31, 0x0d, 0x0a,
    ];

    fn v4() -> IpPair {
        IpPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    fn v6() -> IpPair {
        IpPair::V6 {
            src: "fd00::1".parse::<Ipv6Addr>().unwrap(),
            dst: "fd00::2".parse::<Ipv6Addr>().unwrap(),
        }
    }

    #[test]
    fn deconstruct() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x01020304);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn());
        assert!(!(p.fin() || p.rst() || p.psh() || p.ack() || p.urg()));
        assert!(!(p.ece() || p.cwr() || p.ns()));
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0x9875);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &SYN_BYTES[20..]);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum(&v4()));
        // The pseudo-header sum does not depend on the direction.
        assert!(p.verify_checksum(&v4().reversed()));

        let p = TcpPacket::new_checked(&PSH_ACK_BYTES[..]).unwrap();
        assert_eq!(p.flags(), flags::PSH | flags::ACK);
        assert!(p.psh() && p.ack());
        assert_eq!(p.payload(), b"GET / HTTP/1.1\r\n");
        assert_eq!(p.segment_len(), 16);
        assert!(p.verify_checksum(&v6()));
        assert!(!p.verify_checksum(&v4()));
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 40];
        let mut p = TcpPacket::new_unchecked(&mut bytes);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x01020304);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_flags(flags::SYN);
        p.set_window_len(64240);
        p.set_urgent_at(0);
        p.options_mut().copy_from_slice(&SYN_BYTES[20..]);
        p.fill_checksum(&v4());
        assert_eq!(&bytes[..], &SYN_BYTES[..]);
    }

    #[test]
    fn all_flags() {
        let mut bytes = SYN_BYTES;
        let mut p = TcpPacket::new_unchecked(&mut bytes[..]);
        p.set_flags(0x1ff);
        assert!(p.fin() && p.syn() && p.rst() && p.psh() && p.ack());
        assert!(p.urg() && p.ece() && p.cwr() && p.ns());
        assert_eq!(p.header_len(), 40);
        p.set_flags(0xffff);
        assert_eq!(p.flags(), 0x0fff);
        assert_eq!(p.header_len(), 40);
    }

    #[test]
    fn repr_round_trip() {
        let p = TcpPacket::new_checked(&PSH_ACK_BYTES[..]).unwrap();
        let repr = TcpRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            TcpRepr {
                src_port: 443,
                dst_port: 50000,
                seq_number: 1000,
                ack_number: 2000,
                flags: flags::PSH | flags::ACK,
                window_len: 512,
            }
        );
        let mut bytes = vec![0xa5; repr.buffer_len() + 16];
        let mut out = TcpPacket::new_unchecked(&mut bytes);
        repr.emit(&mut out);
        out.payload_mut().copy_from_slice(b"GET / HTTP/1.1\r\n");
        out.fill_checksum(&v6());
        assert_eq!(&bytes[..], &PSH_ACK_BYTES[..]);
    }

    #[test]
    fn checksum_matches_etherparse() {
        let (hdr, payload) = etherparse::TcpHeader::from_slice(&SYN_BYTES).unwrap();
        let c = hdr
            .calc_checksum_ipv4_raw([10, 0, 0, 1], [10, 0, 0, 2], payload)
            .unwrap();
        assert_eq!(c, 0x9875);
        let (hdr, payload) = etherparse::TcpHeader::from_slice(&PSH_ACK_BYTES).unwrap();
        let IpPair::V6 { src, dst } = v6() else {
            unreachable!()
        };
        let c = hdr
            .calc_checksum_ipv6_raw(src.octets(), dst.octets(), payload)
            .unwrap();
        assert_eq!(c, 0x115e);
    }

    #[test]
    fn truncated() {
        for n in 0..SYN_BYTES.len() {
            assert_eq!(TcpPacket::new_checked(&SYN_BYTES[..n]), Err(Error), "{n}");
        }
    }

    #[test]
    fn lying_data_offset() {
        let mut bytes = PSH_ACK_BYTES;
        for off in 0..5u8 {
            bytes[12] = off << 4;
            assert_eq!(TcpPacket::new_checked(&bytes[..]), Err(Error));
        }
        // 15 × 4 = 60 > 36 bytes.
        bytes[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&bytes[..]), Err(Error));
        // 9 × 4 = 36: all header, no payload.
        bytes[12] = 0x90;
        let p = TcpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(p.options().len(), 16);
    }
}
