//! The flow key: every match field of a packet, extracted in one pass over its bytes.
//!
//! [`extract`] reads Ethernet, up to two VLAN tags, then ARP, IPv4 or IPv6 (walking the
//! usual extension headers), then TCP, UDP, SCTP, ICMP or ICMPv6 with neighbor discovery.
//! No byte string can make it panic. A packet whose headers contradict themselves or stop
//! short is reported as [`Malformed`] with a reason; the datapath counts and drops it.
//! What the extractor does not understand (an unknown EtherType or IP protocol) is not
//! malformed: the key simply has no fields past that point, and the packet can still be
//! forwarded unchanged.

mod compact;
mod extract;
mod hash;

pub use compact::CompactKey;
pub use extract::{Layers, extract, extract_vxlan};
pub use hash::{flow_hash, masked_hash};
pub use vswitch_proto::flow::{FLOW_U64S, Flow as FlowKey, Flow, Slot, ct_state, frag, slot};

/// Why a packet was judged malformed. Each reason has its own drop counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Malformed {
    EthernetTooShort,
    VlanTooShort,
    ArpTooShort,
    Ipv4TooShort,
    Ipv4BadVersion,
    Ipv4BadHeaderLength,
    Ipv4BadTotalLength,
    Ipv6TooShort,
    Ipv6BadVersion,
    Ipv6BadPayloadLength,
    Ipv6BadExtensionHeader,
    TcpTooShort,
    TcpBadDataOffset,
    UdpTooShort,
    SctpTooShort,
    IcmpTooShort,
    Icmpv6TooShort,
    NdTooShort,
    NdBadOption,
    VxlanTooShort,
    VxlanBadFlags,
    VxlanNotUdp,
}

impl Malformed {
    /// Number of reasons (the size of a counter array indexed by `reason as usize`).
    pub const COUNT: usize = Malformed::VxlanNotUdp as usize + 1;

    pub const ALL: [Malformed; Malformed::COUNT] = [
        Malformed::EthernetTooShort,
        Malformed::VlanTooShort,
        Malformed::ArpTooShort,
        Malformed::Ipv4TooShort,
        Malformed::Ipv4BadVersion,
        Malformed::Ipv4BadHeaderLength,
        Malformed::Ipv4BadTotalLength,
        Malformed::Ipv6TooShort,
        Malformed::Ipv6BadVersion,
        Malformed::Ipv6BadPayloadLength,
        Malformed::Ipv6BadExtensionHeader,
        Malformed::TcpTooShort,
        Malformed::TcpBadDataOffset,
        Malformed::UdpTooShort,
        Malformed::SctpTooShort,
        Malformed::IcmpTooShort,
        Malformed::Icmpv6TooShort,
        Malformed::NdTooShort,
        Malformed::NdBadOption,
        Malformed::VxlanTooShort,
        Malformed::VxlanBadFlags,
        Malformed::VxlanNotUdp,
    ];

    /// A stable name for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::EthernetTooShort => "ethernet_too_short",
            Malformed::VlanTooShort => "vlan_too_short",
            Malformed::ArpTooShort => "arp_too_short",
            Malformed::Ipv4TooShort => "ipv4_too_short",
            Malformed::Ipv4BadVersion => "ipv4_bad_version",
            Malformed::Ipv4BadHeaderLength => "ipv4_bad_header_length",
            Malformed::Ipv4BadTotalLength => "ipv4_bad_total_length",
            Malformed::Ipv6TooShort => "ipv6_too_short",
            Malformed::Ipv6BadVersion => "ipv6_bad_version",
            Malformed::Ipv6BadPayloadLength => "ipv6_bad_payload_length",
            Malformed::Ipv6BadExtensionHeader => "ipv6_bad_extension_header",
            Malformed::TcpTooShort => "tcp_too_short",
            Malformed::TcpBadDataOffset => "tcp_bad_data_offset",
            Malformed::UdpTooShort => "udp_too_short",
            Malformed::SctpTooShort => "sctp_too_short",
            Malformed::IcmpTooShort => "icmp_too_short",
            Malformed::Icmpv6TooShort => "icmpv6_too_short",
            Malformed::NdTooShort => "nd_too_short",
            Malformed::NdBadOption => "nd_bad_option",
            Malformed::VxlanTooShort => "vxlan_too_short",
            Malformed::VxlanBadFlags => "vxlan_bad_flags",
            Malformed::VxlanNotUdp => "vxlan_not_udp",
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
