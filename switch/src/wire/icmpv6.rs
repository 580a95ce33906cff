//! ICMP for IPv6 (RFC 4443) and the Neighbor Discovery messages the switch
//! answers (RFC 4861).

use std::net::Ipv6Addr;

use super::{
    Error, EthernetAddress, IpPair, IpProtocol, Result, checksum, read_ipv6, read_u16, read_u32,
    write_u16, write_u32,
};

enum_with_unknown! {
    /// The ICMPv6 message type.
    pub enum Icmpv6Message(u8) {
        /// Destination unreachable.
        DstUnreachable = 1,
        /// Packet too big.
        PktTooBig = 2,
        /// Time exceeded.
        TimeExceeded = 3,
        /// Parameter problem.
        ParamProblem = 4,
        /// Echo request.
        EchoRequest = 128,
        /// Echo reply.
        EchoReply = 129,
        /// Router solicitation.
        RouterSolicit = 133,
        /// Router advertisement.
        RouterAdvert = 134,
        /// Neighbor solicitation.
        NeighborSolicit = 135,
        /// Neighbor advertisement.
        NeighborAdvert = 136,
        /// Redirect.
        Redirect = 137,
    }
}

impl Icmpv6Message {
    /// Query whether this is an error message (types 0 to 127, RFC 4443 §2.1).
    pub fn is_error(&self) -> bool {
        u8::from(*self) < 128
    }
}

/// Codes of [`Icmpv6Message::DstUnreachable`].
pub mod unreachable {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable.
    pub const ADDRESS: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
    /// Reject route to destination.
    pub const REJECT_ROUTE: u8 = 6;
}

mod field {
    use crate::wire::field::*;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const MTU: Field = 4..8;
    pub const DATA: Rest = 8..;

    // Neighbor Solicitation and Advertisement.
    pub const NDP_FLAGS: Field = 4..8;
    pub const NDP_TARGET: Field = 8..24;
    pub const NDP_OPTIONS: Rest = 24..;

    // NDP options.
    pub const OPT_TYPE: usize = 0;
    pub const OPT_LENGTH: usize = 1;
    pub const OPT_LL_ADDR: Field = 2..8;
}

/// The length of the header (type, code, checksum and the 4-byte rest).
pub const HEADER_LEN: usize = field::DATA.start;

/// A read/write view of an ICMPv6 message. The buffer must end where the
/// message ends, since the checksum covers it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
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
    pub fn msg_type(&self) -> Icmpv6Message {
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

    /// Return the MTU of a Packet Too Big message.
    pub fn mtu(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::MTU])
    }

    /// Query whether the checksum is right for the given IPv6 addresses.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        let pseudo = IpPair::V6 { src, dst }.pseudo_header(IpProtocol::Icmpv6, len);
        checksum::fold(checksum::sum(data, pseudo)) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv6Packet<&'a T> {
    /// Return the data after the 8-byte header: the echo payload, or the
    /// offending packet of an error.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Set the message type.
    pub fn set_msg_type(&mut self, value: Icmpv6Message) {
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

    /// Set the MTU of a Packet Too Big message; 0 for the unused field of
    /// other errors.
    pub fn set_mtu(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::MTU], value);
    }

    /// Compute the checksum over the whole buffer with the IPv6 pseudo-header,
    /// and store it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let pseudo = IpPair::V6 { src, dst }.pseudo_header(IpProtocol::Icmpv6, len);
        let c = !checksum::fold(checksum::sum(data, pseudo));
        self.set_checksum(c);
    }

    /// Return a mutable view of the data after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The NDP option type "Source Link-Layer Address".
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
/// The NDP option type "Target Link-Layer Address".
pub const OPT_TARGET_LL_ADDR: u8 = 2;

/// The length of a Neighbor Solicitation or Advertisement without options.
pub const NDP_NEIGHBOR_LEN: usize = field::NDP_OPTIONS.start;

/// The flags of a Neighbor Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NdpFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a solicitation.
    pub solicited: bool,
    /// O: override an existing cache entry.
    pub override_: bool,
}

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// A read/write view of a Neighbor Solicitation or Advertisement: the whole
/// ICMPv6 message, header included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdpNeighbor<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdpNeighbor<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> NdpNeighbor<T> {
        NdpNeighbor { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<NdpNeighbor<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Return `Err` if the buffer is shorter than 24 bytes (header and target).
    /// Options are checked as they are iterated.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < NDP_NEIGHBOR_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flag(&self, bit: u8) -> bool {
        self.buffer.as_ref()[field::NDP_FLAGS.start] & bit != 0
    }

    /// Return the R (router) flag of an advertisement.
    pub fn router_flag(&self) -> bool {
        self.flag(FLAG_ROUTER)
    }

    /// Return the S (solicited) flag of an advertisement.
    pub fn solicited_flag(&self) -> bool {
        self.flag(FLAG_SOLICITED)
    }

    /// Return the O (override) flag of an advertisement.
    pub fn override_flag(&self) -> bool {
        self.flag(FLAG_OVERRIDE)
    }

    /// Return the target address.
    pub fn target_addr(&self) -> Ipv6Addr {
        read_ipv6(&self.buffer.as_ref()[field::NDP_TARGET])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> NdpNeighbor<&'a T> {
    /// Iterate over the options.
    pub fn options(&self) -> NdpOptionIter<'a> {
        NdpOptionIter::new(&self.buffer.as_ref()[field::NDP_OPTIONS])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdpNeighbor<T> {
    /// Set the flags of an advertisement and clear the reserved bits (for a
    /// solicitation, pass the default: all clear).
    pub fn set_flags(&mut self, flags: NdpFlags) {
        let mut b = 0;
        if flags.router {
            b |= FLAG_ROUTER;
        }
        if flags.solicited {
            b |= FLAG_SOLICITED;
        }
        if flags.override_ {
            b |= FLAG_OVERRIDE;
        }
        write_u32(
            &mut self.buffer.as_mut()[field::NDP_FLAGS],
            u32::from(b) << 24,
        );
    }

    /// Set the target address.
    pub fn set_target_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::NDP_TARGET].copy_from_slice(&value.octets());
    }

    /// Return a mutable view of the options.
    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::NDP_OPTIONS]
    }
}

/// A read/write view of one NDP option (type, length in 8-octet units, data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdpOption<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdpOption<T> {
    /// Wrap a buffer without checking it; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> NdpOption<T> {
        NdpOption { buffer }
    }

    /// Wrap a buffer, checking it with [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<NdpOption<T>> {
        let opt = Self::new_unchecked(buffer);
        opt.check_len()?;
        Ok(opt)
    }

    /// Return `Err` if the buffer is shorter than 2 bytes, the length field is
    /// 0 (malformed, RFC 4861 §4.6), or the option runs past the buffer.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < 2 {
            return Err(Error);
        }
        let len = self.option_len();
        if len == 0 || len > data.len() {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the option type.
    pub fn option_type(&self) -> u8 {
        self.buffer.as_ref()[field::OPT_TYPE]
    }

    /// Return the length field, in units of 8 octets.
    pub fn data_len(&self) -> u8 {
        self.buffer.as_ref()[field::OPT_LENGTH]
    }

    /// Return the length of the option in bytes.
    pub fn option_len(&self) -> usize {
        usize::from(self.data_len()) * 8
    }

    /// Return the link-layer address of a source/target link-layer address
    /// option, or `None` for another type.
    pub fn link_layer_addr(&self) -> Option<EthernetAddress> {
        match self.option_type() {
            OPT_SOURCE_LL_ADDR | OPT_TARGET_LL_ADDR => Some(EthernetAddress::read(
                &self.buffer.as_ref()[field::OPT_LL_ADDR],
            )),
            _ => None,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdpOption<T> {
    /// Set the option type.
    pub fn set_option_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::OPT_TYPE] = value;
    }

    /// Set the length field, in units of 8 octets.
    pub fn set_data_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::OPT_LENGTH] = value;
    }

    /// Set the link-layer address (bytes 2..8).
    pub fn set_link_layer_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::OPT_LL_ADDR].copy_from_slice(&value.0);
    }
}

/// An iterator over NDP options. A malformed option (length 0 or past the
/// end) yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct NdpOptionIter<'a> {
    data: &'a [u8],
}

impl<'a> NdpOptionIter<'a> {
    /// Iterate over the options in `data`.
    pub fn new(data: &'a [u8]) -> NdpOptionIter<'a> {
        NdpOptionIter { data }
    }
}

impl<'a> Iterator for NdpOptionIter<'a> {
    type Item = Result<NdpOption<&'a [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        match NdpOption::new_checked(self.data) {
            Ok(opt) => {
                let (this, rest) = self.data.split_at(opt.option_len());
                self.data = rest;
                Some(Ok(NdpOption::new_unchecked(this)))
            }
            Err(e) => {
                self.data = &[];
                Some(Err(e))
            }
        }
    }
}

/// A Neighbor Solicitation or Advertisement with its link-layer address
/// option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpRepr {
    /// Neighbor Solicitation (type 135).
    NeighborSolicit {
        /// The address being resolved.
        target_addr: Ipv6Addr,
        /// The Source Link-Layer Address option.
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbor Advertisement (type 136).
    NeighborAdvert {
        /// R, S and O flags.
        flags: NdpFlags,
        /// The address being advertised.
        target_addr: Ipv6Addr,
        /// The Target Link-Layer Address option.
        lladdr: Option<EthernetAddress>,
    },
}

impl NdpRepr {
    /// Parse a solicitation or advertisement. `Err` for another type, a code
    /// other than 0, a multicast target or a malformed option. The checksum
    /// is not verified here: it needs the IPv6 addresses.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv6Packet<&T>) -> Result<NdpRepr> {
        packet.check_len()?;
        let msg_type = packet.msg_type();
        let wanted_opt = match msg_type {
            Icmpv6Message::NeighborSolicit => OPT_SOURCE_LL_ADDR,
            Icmpv6Message::NeighborAdvert => OPT_TARGET_LL_ADDR,
            _ => return Err(Error),
        };
        if packet.msg_code() != 0 {
            return Err(Error);
        }
        let ndp = NdpNeighbor::new_checked(packet.buffer)?;
        let target_addr = ndp.target_addr();
        if target_addr.is_multicast() {
            return Err(Error);
        }
        let mut lladdr = None;
        for opt in ndp.options() {
            let opt = opt?;
            if opt.option_type() == wanted_opt && opt.data_len() == 1 && lladdr.is_none() {
                lladdr = opt.link_layer_addr();
            }
        }
        Ok(match msg_type {
            Icmpv6Message::NeighborSolicit => NdpRepr::NeighborSolicit {
                target_addr,
                lladdr,
            },
            _ => NdpRepr::NeighborAdvert {
                flags: NdpFlags {
                    router: ndp.router_flag(),
                    solicited: ndp.solicited_flag(),
                    override_: ndp.override_flag(),
                },
                target_addr,
                lladdr,
            },
        })
    }

    /// Return the length of the ICMPv6 message: 24, or 32 with the option.
    pub fn buffer_len(&self) -> usize {
        let (NdpRepr::NeighborSolicit { lladdr, .. } | NdpRepr::NeighborAdvert { lladdr, .. }) =
            self;
        NDP_NEIGHBOR_LEN + if lladdr.is_some() { 8 } else { 0 }
    }

    /// Write the message into a buffer of exactly `buffer_len()` bytes, with
    /// checksum 0; then call [`Icmpv6Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv6Packet<T>) {
        let (msg_type, flags, target_addr, lladdr, opt_type) = match *self {
            NdpRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => (
                Icmpv6Message::NeighborSolicit,
                NdpFlags::default(),
                target_addr,
                lladdr,
                OPT_SOURCE_LL_ADDR,
            ),
            NdpRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            } => (
                Icmpv6Message::NeighborAdvert,
                flags,
                target_addr,
                lladdr,
                OPT_TARGET_LL_ADDR,
            ),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(0);
        packet.set_checksum(0);
        let mut ndp = NdpNeighbor::new_unchecked(packet.buffer.as_mut());
        ndp.set_flags(flags);
        ndp.set_target_addr(target_addr);
        if let Some(addr) = lladdr {
            let mut opt = NdpOption::new_unchecked(&mut ndp.options_mut()[..8]);
            opt.set_option_type(opt_type);
            opt.set_data_len(1);
            opt.set_link_layer_addr(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ICMPv6EchoRequest(id=0x1a2b, seq=5, data="hello v6") from fd00::1 to
    // fd00::2, as scapy writes it.
    static ECHO_BYTES: [u8; 16] = [
        0x80, 0x00, 0xb1, 0x57, 0x1a, 0x2b, 0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x76,
        0x36,
    ];

    // ICMPv6ND_NS(tgt=fd00::2)/ICMPv6NDOptSrcLLAddr(02:00:00:00:00:01) from
    // fd00::1 to ff02::1:ff00:2.
    static NS_BYTES: [u8; 32] = [
        0x87, 0x00, 0x7d, 0x97, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x01,
    ];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);

    #[test]
    fn deconstruct_echo() {
        let p = Icmpv6Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Message::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0xb157);
        assert_eq!(p.echo_ident(), 0x1a2b);
        assert_eq!(p.echo_seq_no(), 5);
        assert_eq!(p.data(), b"hello v6");
        assert!(p.verify_checksum(a("fd00::1"), a("fd00::2")));
        assert!(!p.verify_checksum(a("fd00::1"), a("fd00::3")));
    }

    #[test]
    fn construct_echo() {
        let mut bytes = vec![0xa5; 16];
        let mut p = Icmpv6Packet::new_unchecked(&mut bytes);
        p.set_msg_type(Icmpv6Message::EchoRequest);
        p.set_msg_code(0);
        p.set_echo_ident(0x1a2b);
        p.set_echo_seq_no(5);
        p.data_mut().copy_from_slice(b"hello v6");
        p.fill_checksum(a("fd00::1"), a("fd00::2"));
        assert_eq!(&bytes[..], &ECHO_BYTES[..]);
    }

    #[test]
    fn packet_too_big() {
        let mut bytes = vec![0xa5; 48];
        let mut p = Icmpv6Packet::new_unchecked(&mut bytes);
        p.set_msg_type(Icmpv6Message::PktTooBig);
        p.set_msg_code(0);
        p.set_mtu(1450);
        p.data_mut().fill(0x11);
        p.fill_checksum(a("fd00::1"), a("fd00::2"));
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.mtu(), 1450);
        assert!(p.msg_type().is_error());
        let s = etherparse::Icmpv6Slice::from_slice(&bytes).unwrap();
        assert!(s.is_checksum_valid(a("fd00::1").octets(), a("fd00::2").octets()));
        assert_eq!(
            s.icmp_type(),
            etherparse::Icmpv6Type::PacketTooBig { mtu: 1450 }
        );
    }

    #[test]
    fn checksum_matches_etherparse() {
        let s = etherparse::Icmpv6Slice::from_slice(&ECHO_BYTES).unwrap();
        assert!(s.is_checksum_valid(a("fd00::1").octets(), a("fd00::2").octets()));
        let s = etherparse::Icmpv6Slice::from_slice(&NS_BYTES).unwrap();
        assert!(s.is_checksum_valid(a("fd00::1").octets(), a("ff02::1:ff00:2").octets()));
    }

    #[test]
    fn deconstruct_ns() {
        let p = Icmpv6Packet::new_checked(&NS_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Message::NeighborSolicit);
        assert!(p.verify_checksum(a("fd00::1"), a("ff02::1:ff00:2")));
        let ns = NdpNeighbor::new_checked(&NS_BYTES[..]).unwrap();
        assert!(!(ns.router_flag() || ns.solicited_flag() || ns.override_flag()));
        assert_eq!(ns.target_addr(), a("fd00::2"));
        let opts: Vec<_> = ns.options().collect();
        assert_eq!(opts.len(), 1);
        let opt = opts[0].as_ref().unwrap();
        assert_eq!(
            (opt.option_type(), opt.data_len(), opt.option_len()),
            (1, 1, 8)
        );
        assert_eq!(opt.link_layer_addr(), Some(MAC));
    }

    #[test]
    fn ns_repr_round_trip() {
        let p = Icmpv6Packet::new_checked(&NS_BYTES[..]).unwrap();
        let repr = NdpRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            NdpRepr::NeighborSolicit {
                target_addr: a("fd00::2"),
                lladdr: Some(MAC)
            }
        );
        let mut bytes = vec![0xa5; repr.buffer_len()];
        let mut out = Icmpv6Packet::new_unchecked(&mut bytes);
        repr.emit(&mut out);
        out.fill_checksum(a("fd00::1"), a("ff02::1:ff00:2"));
        assert_eq!(&bytes[..], &NS_BYTES[..]);
    }

    #[test]
    fn na_construct_and_parse() {
        let repr = NdpRepr::NeighborAdvert {
            flags: NdpFlags {
                router: true,
                solicited: true,
                override_: true,
            },
            target_addr: a("fd00::2"),
            lladdr: Some(MAC),
        };
        let mut bytes = vec![0xa5; repr.buffer_len()];
        let mut out = Icmpv6Packet::new_unchecked(&mut bytes);
        repr.emit(&mut out);
        out.fill_checksum(a("fd00::2"), a("fd00::1"));
        assert_eq!(&bytes[4..8], &[0xe0, 0, 0, 0]);
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Ok(repr));
        let s = etherparse::Icmpv6Slice::from_slice(&bytes).unwrap();
        assert!(s.is_checksum_valid(a("fd00::2").octets(), a("fd00::1").octets()));
        let etherparse::Icmpv6Type::NeighborAdvertisement(h) = s.icmp_type() else {
            panic!("not an NA: {:?}", s.icmp_type());
        };
        assert!(h.router && h.solicited && h.r#override);
        // Without the option, and with no flags.
        let bare = NdpRepr::NeighborAdvert {
            flags: NdpFlags::default(),
            target_addr: a("fd00::2"),
            lladdr: None,
        };
        let mut bytes = vec![0xa5; bare.buffer_len()];
        bare.emit(&mut Icmpv6Packet::new_unchecked(&mut bytes));
        assert_eq!(bytes.len(), 24);
        assert_eq!(
            NdpRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap()),
            Ok(bare)
        );
    }

    #[test]
    fn options_malformed() {
        // Length 0 must not loop: one Err, then the end.
        let zero = [1u8, 0, 2, 0, 0, 0, 0, 1];
        let items: Vec<_> = NdpOptionIter::new(&zero).collect();
        assert_eq!(items, vec![Err(Error)]);
        // Length past the end.
        let long = [1u8, 2, 2, 0, 0, 0, 0, 1];
        let items: Vec<_> = NdpOptionIter::new(&long).collect();
        assert_eq!(items, vec![Err(Error)]);
        // One byte left over.
        let items: Vec<_> = NdpOptionIter::new(&[1u8]).collect();
        assert_eq!(items, vec![Err(Error)]);
        // A good option then a bad one.
        let mixed = [&NS_BYTES[24..], &zero[..]].concat();
        let items: Vec<_> = NdpOptionIter::new(&mixed).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && items[1].is_err());
        // The repr refuses a message with a malformed option.
        let mut bytes = NS_BYTES;
        bytes[25] = 0;
        let p = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Err(Error));
    }

    #[test]
    fn ndp_rejects() {
        // Truncated.
        for n in 0..NDP_NEIGHBOR_LEN {
            assert_eq!(NdpNeighbor::new_checked(&NS_BYTES[..n]), Err(Error));
            if n >= HEADER_LEN {
                let p = Icmpv6Packet::new_checked(&NS_BYTES[..n]).unwrap();
                assert_eq!(NdpRepr::parse(&p), Err(Error));
            }
        }
        // Code other than 0.
        let mut bytes = NS_BYTES;
        bytes[1] = 1;
        assert_eq!(
            NdpRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error)
        );
        // Multicast target.
        let mut bytes = NS_BYTES;
        bytes[8] = 0xff;
        assert_eq!(
            NdpRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error)
        );
        // Another message type.
        let p = Icmpv6Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(NdpRepr::parse(&p), Err(Error));
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(Icmpv6Packet::new_checked(&ECHO_BYTES[..n]), Err(Error));
        }
    }

    #[test]
    fn error_types() {
        assert!(Icmpv6Message::DstUnreachable.is_error());
        assert!(Icmpv6Message::Unknown(100).is_error());
        assert!(!Icmpv6Message::EchoRequest.is_error());
        assert!(!Icmpv6Message::Redirect.is_error());
    }
}
