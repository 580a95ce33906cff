//! ICMP for IPv4 (RFC 792).

use super::{Error, Result, checksum, read_u16, write_u16};

enum_with_unknown! {
    /// The ICMPv4 message type.
    pub enum Icmpv4Message(u8) {
        /// Echo reply.
        EchoReply = 0,
        /// Destination unreachable.
        DstUnreachable = 3,
        /// Source quench (deprecated, an error).
        SourceQuench = 4,
        /// Redirect.
        Redirect = 5,
        /// Echo request.
        EchoRequest = 8,
        /// Time exceeded.
        TimeExceeded = 11,
        /// Parameter problem.
        ParamProblem = 12,
    }
}

impl Icmpv4Message {
    /// Query whether this type is an error message, which must never be answered
    /// with another error (RFC 1122 §3.2.2). Unassigned types above 18 count as
    /// errors, as in Linux.
    pub fn is_error(&self) -> bool {
        match *self {
            Icmpv4Message::DstUnreachable
            | Icmpv4Message::SourceQuench
            | Icmpv4Message::Redirect
            | Icmpv4Message::TimeExceeded
            | Icmpv4Message::ParamProblem => true,
            Icmpv4Message::Unknown(n) => n > 18,
            Icmpv4Message::EchoReply | Icmpv4Message::EchoRequest => false,
        }
    }
}

/// Codes of [`Icmpv4Message::DstUnreachable`].
pub mod unreachable {
    /// Network unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
}

mod field {
    use crate::wire::field::*;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const UNUSED: Field = 4..8;
    pub const MTU: Field = 6..8;
    pub const DATA: Rest = 8..;
}

/// The length of the header (type, code, checksum and the 4-byte rest).
pub const HEADER_LEN: usize = field::DATA.start;

/// A read/write view of an ICMPv4 message. The buffer must end where the
/// message ends (the IP payload), since the checksum covers it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than the 8-byte header.
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

    /// Return the message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        self.buffer.as_ref()[field::TYPE].into()
    }

    /// Return the message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Return the checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Return the identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// Return the sequence number of an echo request or reply.
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }

    /// Return the next-hop MTU of a "fragmentation needed" message.
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::MTU])
    }

    /// Query whether the checksum over the whole buffer is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// Return the data after the 8-byte header: the echo payload, or the
    /// offending datagram of an error.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Set the message type.
    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into();
    }

    /// Set the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], value);
    }

    /// Set the identifier of an echo request or reply.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_IDENT], value);
    }

    /// Set the sequence number of an echo request or reply.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_SEQNO], value);
    }

    /// Zero the 4 bytes after the checksum (unused in most error messages).
    pub fn clear_rest(&mut self) {
        self.buffer.as_mut()[field::UNUSED].fill(0);
    }

    /// Set the next-hop MTU of a "fragmentation needed" message.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::MTU], value);
    }

    /// Compute the checksum over the whole buffer and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Return a mutable view of the data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ICMP(type=8, id=0x1a2b, seq=3)/"abcdefghijklmnop", as scapy writes it.
    static ECHO_BYTES: [u8; 24] = [
        0x08, 0x00, 0x9a, 0x86, 0x1a, 0x2b, 0x00, 0x03, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70,
    ];

    // ICMP(type=3, code=4, nexthopmtu=1400) quoting a 20-byte IP header and 8
    // bytes of UDP.
    static FRAG_NEEDED_BYTES: [u8; 36] = [
        0x03, 0x04, 0xc1, 0x4d, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x05, 0xdc, 0x00, 0x01, 0x40,
        0x00, 0x40, 0x11, 0x21, 0x0e, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x30, 0x39,
        0x00, 0x35, 0x05, 0xc8, 0x00, 0x00,
    ];

    #[test]
    fn deconstruct_echo() {
        let p = Icmpv4Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x9a86);
        assert_eq!(p.echo_ident(), 0x1a2b);
        assert_eq!(p.echo_seq_no(), 3);
        assert_eq!(p.data(), b"abcdefghijklmnop");
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct_echo() {
        let mut bytes = vec![0xa5; 24];
        let mut p = Icmpv4Packet::new_unchecked(&mut bytes);
        p.set_msg_type(Icmpv4Message::EchoRequest);
        p.set_msg_code(0);
        p.set_echo_ident(0x1a2b);
        p.set_echo_seq_no(3);
        p.data_mut().copy_from_slice(b"abcdefghijklmnop");
        p.fill_checksum();
        assert_eq!(&bytes[..], &ECHO_BYTES[..]);
    }

    #[test]
    fn frag_needed() {
        let p = Icmpv4Packet::new_checked(&FRAG_NEEDED_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::DstUnreachable);
        assert_eq!(p.msg_code(), unreachable::FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(p.data().len(), 28);
        assert!(p.verify_checksum());
        let mut bytes = vec![0xa5; 36];
        let mut q = Icmpv4Packet::new_unchecked(&mut bytes);
        q.set_msg_type(Icmpv4Message::DstUnreachable);
        q.set_msg_code(4);
        q.clear_rest();
        q.set_next_hop_mtu(1400);
        q.data_mut().copy_from_slice(&FRAG_NEEDED_BYTES[8..]);
        q.fill_checksum();
        assert_eq!(&bytes[..], &FRAG_NEEDED_BYTES[..]);
    }

    #[test]
    fn checksum_matches_etherparse() {
        let (hdr, payload) = etherparse::Icmpv4Header::from_slice(&ECHO_BYTES).unwrap();
        assert_eq!(hdr.icmp_type.calc_checksum(payload), 0x9a86);
        let (hdr, payload) = etherparse::Icmpv4Header::from_slice(&FRAG_NEEDED_BYTES).unwrap();
        assert_eq!(hdr.icmp_type.calc_checksum(payload), 0xc14d);
    }

    #[test]
    fn errors() {
        assert!(Icmpv4Message::DstUnreachable.is_error());
        assert!(Icmpv4Message::TimeExceeded.is_error());
        assert!(Icmpv4Message::from(5).is_error());
        assert!(!Icmpv4Message::EchoRequest.is_error());
        assert!(!Icmpv4Message::from(13).is_error()); // timestamp
        assert!(Icmpv4Message::from(40).is_error());
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO_BYTES[..n]),
                Err(Error),
                "{n}"
            );
        }
        let p = Icmpv4Packet::new_checked(&ECHO_BYTES[..HEADER_LEN]).unwrap();
        assert!(p.data().is_empty());
    }
}
