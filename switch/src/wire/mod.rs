//! Zero-copy packet views and packet builders.
//!
//! Two layers, as in smoltcp:
//!
//! - *Views* (`EthernetFrame`, `Ipv4Packet`, `TcpPacket`, ...) wrap a buffer
//!   (`T: AsRef<[u8]>`) and read or write header fields in place. They make no
//!   judgement about content, so a malformed packet can still be forwarded or
//!   logged in full.
//! - *Reprs* (`Ipv4Repr`, `ArpRepr`, ...) are small owned values that `parse`
//!   checks for semantic validity and `emit` writes back.
//!
//! The panic contract:
//!
//! - Untrusted input must be wrapped with `new_checked`. After it succeeds no
//!   accessor of that view panics. `new_unchecked` is for buffers whose length
//!   the caller already knows.
//! - Output must be wrapped with `new_unchecked`: a reused buffer still holds the
//!   previous packet's length fields, so a length check on it is meaningless.
//!   `Repr::emit` does not panic when the buffer is `buffer_len()` bytes long.
//! - Setters that change a length field (`set_header_len`, `set_total_len`,
//!   `set_len`, ...) invalidate the result of `check_len`.
//!
//! On top of the views: [`checksum`] (the Internet checksum and RFC 1624
//! incremental updates), [`virtio`] (the TAP vnet header), [`gso`] (software
//! segmentation of TSO/USO super-frames) and [`build`] (the frames the switch
//! itself sends: ARP and NDP answers, ICMP errors, TCP resets, VXLAN).

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Define a protocol-number enum with an `Unknown(n)` variant and lossless
/// `From` conversions in both directions.
macro_rules! enum_with_unknown {
    (
        $( #[$enum_attr:meta] )*
        pub enum $name:ident($ty:ty) {
            $(
                $( #[$variant_attr:meta] )*
                $variant:ident = $value:expr
            ),+ $(,)?
        }
    ) => {
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Clone, Copy)]
        $( #[$enum_attr] )*
        pub enum $name {
            $(
                $( #[$variant_attr] )*
                $variant,
            )+
            /// A value without a name here; kept so that it round-trips.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( value if value == $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

mod field {
    pub type Field = ::core::ops::Range<usize>;
    pub type Rest = ::core::ops::RangeFrom<usize>;
}

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod gso;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod virtio;
pub mod vlan;
pub mod vxlan;

pub use self::arp::{ArpHardware, ArpOperation, ArpPacket, ArpRepr};
pub use self::ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use self::icmpv4::{Icmpv4Message, Icmpv4Packet};
pub use self::icmpv6::{
    Icmpv6Message, Icmpv6Packet, NdpFlags, NdpNeighbor, NdpOption, NdpOptionIter, NdpRepr,
};
pub use self::ipv4::{Ipv4Packet, Ipv4Repr};
pub use self::ipv6::{ExtWalk, FragInfo, Ipv6Packet, Ipv6Repr, walk_ext_headers};
pub use self::tcp::{TcpPacket, TcpRepr};
pub use self::udp::{UdpPacket, UdpRepr};
pub use self::virtio::VirtioNetHdr;
pub use self::vlan::{L2Layout, VlanTag, l2_layout};
pub use self::vxlan::{VxlanPacket, VxlanRepr};

/// The error of every parser here: the packet is malformed, or it is of a kind
/// this module does not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("malformed or unsupported packet")]
pub struct Error;

/// The result type of this module.
pub type Result<T> = core::result::Result<T, Error>;

enum_with_unknown! {
    /// An IP protocol number (IPv4 "protocol", IPv6 "next header").
    pub enum IpProtocol(u8) {
        /// IPv6 Hop-by-Hop Options.
        HopByHop = 0,
        /// ICMP for IPv4.
        Icmp = 1,
        /// IGMP.
        Igmp = 2,
        /// TCP.
        Tcp = 6,
        /// UDP.
        Udp = 17,
        /// IPv6 Routing header.
        Ipv6Route = 43,
        /// IPv6 Fragment header.
        Ipv6Frag = 44,
        /// Encapsulating Security Payload.
        Esp = 50,
        /// Authentication Header.
        Ah = 51,
        /// ICMP for IPv6.
        Icmpv6 = 58,
        /// IPv6 "No Next Header".
        Ipv6NoNxt = 59,
        /// IPv6 Destination Options.
        Ipv6Opts = 60,
    }
}

/// The two addresses an L4 checksum's pseudo-header covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpPair {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination (for a Routing header, the final destination).
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// Return the pseudo-header sum for an L4 payload of `len` bytes
    /// (see [`checksum::pseudo_header_v4`]).
    pub fn pseudo_header(&self, proto: IpProtocol, len: u32) -> u32 {
        match *self {
            IpPair::V4 { src, dst } => checksum::pseudo_header_v4(src, dst, proto.into(), len),
            IpPair::V6 { src, dst } => checksum::pseudo_header_v6(src, dst, proto.into(), len),
        }
    }

    /// Return the same pair with source and destination exchanged.
    pub fn reversed(&self) -> IpPair {
        match *self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }
}

/// A 48-bit Ethernet (MAC) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address, `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Return the address as bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Query whether this is a unicast address (group bit clear).
    pub const fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }

    /// Query whether this is a multicast address; broadcast counts as multicast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Query whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Query whether the address is locally administered.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// Return the IPv6 multicast MAC address `33:33:xx:xx:xx:xx` for `addr`
    /// (RFC 2464 §7).
    pub fn ipv6_multicast(addr: Ipv6Addr) -> EthernetAddress {
        let o = addr.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// Read an address from the first six bytes of `data`.
    fn read(data: &[u8]) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&data[..6]);
        EthernetAddress(a)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for EthernetAddress {
    type Err = Error;

    /// Parse six colon-separated pairs of hex digits, e.g. `02:00:5e:10:00:01`.
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(Error)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(Error);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| Error)?;
        }
        if parts.next().is_some() {
            return Err(Error);
        }
        Ok(EthernetAddress(out))
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(a: [u8; 6]) -> Self {
        EthernetAddress(a)
    }
}

/// Read a big-endian `u16` from the first two bytes of `data`.
#[inline]
fn read_u16(data: &[u8]) -> u16 {
    u16::from_be_bytes([data[0], data[1]])
}

/// Read a big-endian `u32` from the first four bytes of `data`.
#[inline]
fn read_u32(data: &[u8]) -> u32 {
    u32::from_be_bytes([data[0], data[1], data[2], data[3]])
}

/// Write a big-endian `u16` into the first two bytes of `data`.
#[inline]
fn write_u16(data: &mut [u8], value: u16) {
    data[..2].copy_from_slice(&value.to_be_bytes());
}

/// Write a big-endian `u32` into the first four bytes of `data`.
#[inline]
fn write_u32(data: &mut [u8], value: u32) {
    data[..4].copy_from_slice(&value.to_be_bytes());
}

fn read_ipv4(data: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(data[0], data[1], data[2], data[3])
}

fn read_ipv6(data: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&data[..16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    enum_with_unknown! {
        /// A test enum.
        pub enum Colour(u16) {
            /// Red.
            Red = 1,
            /// Blue.
            Blue = 0x8100,
        }
    }

    #[test]
    fn enum_round_trip() {
        assert_eq!(Colour::from(1), Colour::Red);
        assert_eq!(Colour::from(0x8100), Colour::Blue);
        assert_eq!(Colour::from(0x88cc), Colour::Unknown(0x88cc));
        assert_eq!(u16::from(Colour::Unknown(0x88cc)), 0x88cc);
        assert_eq!(u16::from(Colour::Blue), 0x8100);
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(u8::from(IpProtocol::Unknown(200)), 200);
    }

    #[test]
    fn error_display() {
        assert_eq!(Error.to_string(), "malformed or unsupported packet");
    }

    #[test]
    fn ethernet_address_text() {
        let a: EthernetAddress = "02:00:5e:10:0A:ff".parse().unwrap();
        assert_eq!(a, EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0x0a, 0xff]));
        assert_eq!(a.to_string(), "02:00:5e:10:0a:ff");
        for bad in [
            "",
            "02:00:5e:10:0a",
            "02:00:5e:10:0a:ff:00",
            "2:00:5e:10:0a:ff",
            "02:00:5e:10:0a:fg",
            "02-00-5e-10-0a-ff",
            "+2:00:5e:10:0a:ff",
        ] {
            assert_eq!(bad.parse::<EthernetAddress>(), Err(Error), "{bad}");
        }
    }

    #[test]
    fn ethernet_address_kinds() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        let m = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(m.is_multicast() && !m.is_broadcast() && !m.is_unicast());
        let u = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
        assert!(u.is_unicast() && u.is_local() && !u.is_multicast());
        assert_eq!(
            EthernetAddress::ipv6_multicast("ff02::1:ff00:2".parse().unwrap()),
            EthernetAddress([0x33, 0x33, 0xff, 0x00, 0x00, 0x02])
        );
    }

    proptest! {
        #[test]
        fn ethernet_address_display_parses_back(b in any::<[u8; 6]>()) {
            let a = EthernetAddress(b);
            prop_assert_eq!(a.to_string().parse::<EthernetAddress>(), Ok(a));
        }

        /// Every view built with `new_checked`, and every accessor on it, must not
        /// panic on arbitrary bytes.
        #[test]
        fn views_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            exercise_all_views(&data);
        }
    }

    fn exercise_all_views(data: &[u8]) {
        if let Ok(f) = EthernetFrame::new_checked(data) {
            let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
            let _ = EthernetRepr::parse(&f);
        }
        let _ = l2_layout(data);
        if let Ok(v) = VlanTag::new_checked(data) {
            let _ = (
                v.tci(),
                v.pcp(),
                v.dei(),
                v.vid(),
                v.ethertype(),
                v.payload().len(),
            );
        }
        if let Ok(p) = ArpPacket::new_checked(data) {
            let _ = (p.hardware_type(), p.protocol_type(), p.operation());
            let _ = (p.source_hardware_addr(), p.source_protocol_addr());
            let _ = (p.target_hardware_addr(), p.target_protocol_addr());
            let _ = ArpRepr::parse(&p);
        }
        if let Ok(p) = Ipv4Packet::new_checked(data) {
            let _ = (
                p.version(),
                p.header_len(),
                p.dscp(),
                p.ecn(),
                p.total_len(),
            );
            let _ = (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset());
            let _ = (p.hop_limit(), p.next_header(), p.checksum(), p.src_addr());
            let _ = (p.dst_addr(), p.options().len(), p.payload().len());
            let _ = (p.verify_checksum(), Ipv4Repr::parse(&p));
        }
        if let Ok(p) = Ipv6Packet::new_checked(data) {
            let _ = (
                p.version(),
                p.traffic_class(),
                p.flow_label(),
                p.payload_len(),
            );
            let _ = (p.next_header(), p.hop_limit(), p.src_addr(), p.dst_addr());
            let _ = (p.payload().len(), Ipv6Repr::parse(&p));
            let _ = walk_ext_headers(p.next_header().into(), p.payload());
        }
        for nh in [0u8, 43, 44, 51, 60] {
            let _ = walk_ext_headers(nh, data);
        }
        let pair = IpPair::V4 {
            src: Ipv4Addr::LOCALHOST,
            dst: Ipv4Addr::BROADCAST,
        };
        if let Ok(p) = TcpPacket::new_checked(data) {
            let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
            let _ = (
                p.header_len(),
                p.flags(),
                p.fin(),
                p.syn(),
                p.rst(),
                p.psh(),
            );
            let _ = (p.ack(), p.urg(), p.ece(), p.cwr(), p.ns(), p.window_len());
            let _ = (
                p.checksum(),
                p.urgent_at(),
                p.options().len(),
                p.payload().len(),
            );
            let _ = (p.verify_checksum(&pair), TcpRepr::parse(&p));
        }
        if let Ok(p) = UdpPacket::new_checked(data) {
            let _ = (
                p.src_port(),
                p.dst_port(),
                p.len(),
                p.checksum(),
                p.payload().len(),
            );
            let _ = (p.verify_checksum(&pair), UdpRepr::parse(&p, &pair));
        }
        if let Ok(p) = Icmpv4Packet::new_checked(data) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident());
            let _ = (
                p.echo_seq_no(),
                p.next_hop_mtu(),
                p.data().len(),
                p.verify_checksum(),
            );
        }
        if let Ok(p) = Icmpv6Packet::new_checked(data) {
            let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident());
            let _ = (p.echo_seq_no(), p.mtu(), p.data().len());
            let _ = p.verify_checksum(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
            let _ = NdpRepr::parse(&p);
        }
        if let Ok(p) = NdpNeighbor::new_checked(data) {
            let _ = (
                p.router_flag(),
                p.solicited_flag(),
                p.override_flag(),
                p.target_addr(),
            );
            for o in p.options().flatten() {
                let _ = (o.option_type(), o.data_len(), o.link_layer_addr());
            }
        }
        for o in NdpOptionIter::new(data).flatten() {
            let _ = (o.option_type(), o.option_len(), o.link_layer_addr());
        }
        if let Ok(p) = VxlanPacket::new_checked(data) {
            let _ = (
                p.flags(),
                p.i_flag(),
                p.vni(),
                p.payload().len(),
                VxlanRepr::parse(&p),
            );
        }
        let _ = VirtioNetHdr::parse(data);
        let _ = VirtioNetHdr::parse_legacy(data);
    }
}
