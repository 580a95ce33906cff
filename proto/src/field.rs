//! User-visible fields: their names (Open vSwitch's, with its aliases and NXM names), the
//! physical [`Slot`] behind each, how values are written, and which protocol a packet must
//! be for the field to mean anything (prerequisites).

use crate::flow::{FLOW_LAYOUT_VERSION, Flow, Slot, slot};
use serde::{Deserialize, Serialize};

const _: () = assert!(
    FLOW_LAYOUT_VERSION == 2,
    "the flow layout changed: update the field table"
);

/// How a field's value is written in flow text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Decimal when printed; decimal or 0x-hex accepted.
    Decimal,
    /// 0x-hex when printed; decimal or 0x-hex accepted.
    Hex,
    Mac,
    Ipv4,
    Ipv6,
    /// An OpenFlow port: a number or a name.
    Port,
    /// `no`, `yes`, `first`, `later`, `not_later`.
    Frag,
    /// `+trk-new` style flags, or `0x21/0x21`.
    CtState,
    /// `+syn-ack` style flags, or `syn|ack`, or hex.
    TcpFlags,
    /// The whole IPv4 TOS / IPv6 traffic class byte with the ECN bits zero (`nw_tos=40`),
    /// stored as the 6-bit DSCP (the slot is the DSCP bits): text value = DSCP << 2.
    Tos,
}

/// What a packet must be for a field to be present in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prereq {
    None,
    /// dl_type 0x0800.
    Ipv4,
    /// dl_type 0x86dd.
    Ipv6,
    /// IPv4 or IPv6.
    Ip,
    /// dl_type 0x0806 (ARP) or 0x8035 (RARP).
    Arp,
    /// IPv4 or ARP (`nw_src`/`nw_dst` name the ARP addresses in an ARP match).
    Ipv4OrArp,
    /// IP (either version) and nw_proto 6.
    Tcp,
    /// IP and nw_proto 17.
    Udp,
    /// IP and nw_proto 132.
    Sctp,
    /// IP and nw_proto TCP, UDP or SCTP.
    L4Ports,
    /// IPv4 and nw_proto 1.
    Icmpv4,
    /// IPv6 and nw_proto 58.
    Icmpv6,
    /// ICMP of either IP version.
    IcmpAny,
    /// ICMPv6 and icmp_type 135 or 136.
    Nd,
    /// ICMPv6 and icmp_type 135.
    NdSolicit,
    /// ICMPv6 and icmp_type 136.
    NdAdvert,
    /// A VLAN tag present (CFI bit of vlan_tci matched as 1).
    Vlan,
    /// A valid conntrack entry (Open vSwitch's `is_ct_valid`): ct_state matches one of
    /// +new, +est, +rel, +rpl, +snat, +dnat, or +trk-inv.
    CtValid,
    /// [`Prereq::CtValid`] and IPv4: what a *match* on `ct_nw_src` or `ct_nw_dst` needs
    /// (reading them in an action needs only [`Prereq::CtValid`], as in Open vSwitch).
    CtIpv4,
    /// [`Prereq::CtValid`] and `ct_nw_proto` matched exactly: what a *match* on
    /// `ct_tp_src` or `ct_tp_dst` needs (Open vSwitch silently drops them without it).
    CtL4,
}

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const RARP: u16 = 0x8035;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
}

pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const HOPOPTS: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const DSTOPTS: u8 = 60;
    pub const NONE: u8 = 59;
}

impl Prereq {
    /// Whether a match (value `flow` under `mask`) guarantees the prerequisite.
    pub fn satisfied_by(self, flow: &Flow, mask: &Flow) -> bool {
        let dl = |t: u16| mask.dl_type() == 0xffff && flow.dl_type() == t;
        let ip = || dl(ethertype::IPV4) || dl(ethertype::IPV6);
        let proto = |p: u8| mask.nw_proto() == 0xff && flow.nw_proto() == p;
        let icmp_type = |t: u8| mask.tp_src() & 0xff == 0xff && flow.tp_src() & 0xff == t as u16;
        match self {
            Prereq::None => true,
            Prereq::Ipv4 => dl(ethertype::IPV4),
            Prereq::Ipv6 => dl(ethertype::IPV6),
            Prereq::Ip => ip(),
            Prereq::Arp => dl(ethertype::ARP) || dl(ethertype::RARP),
            Prereq::Ipv4OrArp => dl(ethertype::IPV4) || dl(ethertype::ARP) || dl(ethertype::RARP),
            Prereq::Tcp => ip() && proto(ipproto::TCP),
            Prereq::Udp => ip() && proto(ipproto::UDP),
            Prereq::Sctp => ip() && proto(ipproto::SCTP),
            Prereq::L4Ports => {
                ip() && (proto(ipproto::TCP) || proto(ipproto::UDP) || proto(ipproto::SCTP))
            }
            Prereq::Icmpv4 => dl(ethertype::IPV4) && proto(ipproto::ICMP),
            Prereq::Icmpv6 => dl(ethertype::IPV6) && proto(ipproto::ICMPV6),
            Prereq::IcmpAny => {
                (dl(ethertype::IPV4) && proto(ipproto::ICMP))
                    || (dl(ethertype::IPV6) && proto(ipproto::ICMPV6))
            }
            Prereq::Nd => {
                Prereq::Icmpv6.satisfied_by(flow, mask) && (icmp_type(135) || icmp_type(136))
            }
            Prereq::NdSolicit => Prereq::Icmpv6.satisfied_by(flow, mask) && icmp_type(135),
            Prereq::NdAdvert => Prereq::Icmpv6.satisfied_by(flow, mask) && icmp_type(136),
            Prereq::Vlan => mask.vlan_tci() & 0x1000 != 0 && flow.vlan_tci() & 0x1000 != 0,
            Prereq::CtValid => {
                use crate::flow::ct_state as cs;
                let (v, m) = (flow.ct_state() & mask.ct_state(), mask.ct_state());
                let valid = cs::NEW | cs::EST | cs::REL | cs::RPL | cs::SNAT | cs::DNAT;
                v & valid != 0 || (v & cs::TRK != 0 && m & cs::INV != 0 && v & cs::INV == 0)
            }
            Prereq::CtIpv4 => Prereq::CtValid.satisfied_by(flow, mask) && dl(ethertype::IPV4),
            Prereq::CtL4 => Prereq::CtValid.satisfied_by(flow, mask) && mask.ct_nw_proto() == 0xff,
        }
    }

    /// What a person must add to a match to satisfy this prerequisite.
    pub fn describe(self) -> &'static str {
        match self {
            Prereq::None => "nothing",
            Prereq::Ipv4 => "`ip` (dl_type=0x0800)",
            Prereq::Ipv6 => "`ipv6` (dl_type=0x86dd)",
            Prereq::Ip => "`ip` or `ipv6`",
            Prereq::Arp => "`arp`",
            Prereq::Ipv4OrArp => "`ip` or `arp`",
            Prereq::Tcp => "`tcp` or `tcp6`",
            Prereq::Udp => "`udp` or `udp6`",
            Prereq::Sctp => "`sctp` or `sctp6`",
            Prereq::L4Ports => "`tcp`, `udp` or `sctp` (or their IPv6 forms)",
            Prereq::Icmpv4 => "`icmp`",
            Prereq::Icmpv6 => "`icmp6`",
            Prereq::IcmpAny => "`icmp` or `icmp6`",
            Prereq::Nd => "`icmp6` with icmp_type=135 or icmp_type=136",
            Prereq::NdSolicit => "`icmp6,icmp_type=135`",
            Prereq::NdAdvert => "`icmp6,icmp_type=136`",
            Prereq::Vlan => "a VLAN match such as `dl_vlan=N`",
            Prereq::CtValid => {
                "a tracked connection, such as `ct_state=+est+trk` or `ct_state=+trk-inv`"
            }
            Prereq::CtIpv4 => "a tracked IPv4 connection, such as `ct_state=+est+trk,ip`",
            Prereq::CtL4 => {
                "a tracked connection and `ct_nw_proto`, such as `ct_state=+est+trk,ct_nw_proto=6`"
            }
        }
    }
}

macro_rules! fields {
    ($( $id:ident = $name:literal [$($alias:literal),*] nxm $nxm:expr, $slot:expr, $fmt:ident, $prereq:ident, maskable $mk:expr, writable $wr:expr; )*) => {
        /// A user-visible field, as named in flow text.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[allow(missing_docs)]
        pub enum FieldId { $($id,)* }

        /// Every field, in declaration order.
        pub const ALL_FIELDS: &[FieldId] = &[$(FieldId::$id,)*];

        impl FieldId {
            pub fn info(self) -> &'static FieldInfo {
                match self {
                    $(FieldId::$id => {
                        const INFO: FieldInfo = FieldInfo {
                            id: FieldId::$id,
                            name: $name,
                            aliases: &[$($alias),*],
                            nxm: $nxm,
                            slot: $slot,
                            format: Format::$fmt,
                            prereq: Prereq::$prereq,
                            maskable: $mk,
                            writable: $wr,
                        };
                        &INFO
                    })*
                }
            }
        }
    };
}

/// Everything the text syntax and the datapath need to know about a field.
#[derive(Debug)]
pub struct FieldInfo {
    pub id: FieldId,
    /// Open vSwitch's preferred name (`ovs-fields(7)`), used when printing actions.
    pub name: &'static str,
    /// Other accepted names, including the ones `match` text prints (`dl_src`, `nw_src`).
    pub aliases: &'static [&'static str],
    /// The NXM/OXM name used in subfield syntax (`NXM_OF_IP_SRC[]`), if there is one.
    pub nxm: Option<&'static str>,
    pub slot: Slot,
    pub format: Format,
    pub prereq: Prereq,
    pub maskable: bool,
    pub writable: bool,
}

fields! {
    InPort = "in_port" [] nxm Some("NXM_OF_IN_PORT"), slot::IN_PORT, Port, None, maskable false, writable true;
    EthSrc = "eth_src" ["dl_src"] nxm Some("NXM_OF_ETH_SRC"), slot::DL_SRC, Mac, None, maskable true, writable true;
    EthDst = "eth_dst" ["dl_dst"] nxm Some("NXM_OF_ETH_DST"), slot::DL_DST, Mac, None, maskable true, writable true;
    EthType = "eth_type" ["dl_type"] nxm Some("NXM_OF_ETH_TYPE"), slot::DL_TYPE, Hex, None, maskable false, writable false;
    VlanTci = "vlan_tci" [] nxm Some("NXM_OF_VLAN_TCI"), slot::VLAN_TCI, Hex, None, maskable true, writable true;
    DlVlan = "dl_vlan" [] nxm None, slot::VLAN_TCI.sub(0, 12), Decimal, None, maskable false, writable true;
    VlanVid = "vlan_vid" [] nxm Some("OXM_OF_VLAN_VID"), slot::VLAN_TCI.sub(0, 13), Decimal, None, maskable true, writable true;
    VlanPcp = "vlan_pcp" ["dl_vlan_pcp"] nxm Some("OXM_OF_VLAN_PCP"), slot::VLAN_TCI.sub(13, 3), Decimal, Vlan, maskable false, writable true;
    IpSrc = "ip_src" ["nw_src"] nxm Some("NXM_OF_IP_SRC"), slot::NW_SRC, Ipv4, Ipv4, maskable true, writable true;
    IpDst = "ip_dst" ["nw_dst"] nxm Some("NXM_OF_IP_DST"), slot::NW_DST, Ipv4, Ipv4, maskable true, writable true;
    Ipv6Src = "ipv6_src" [] nxm Some("NXM_NX_IPV6_SRC"), slot::IPV6_SRC, Ipv6, Ipv6, maskable true, writable true;
    Ipv6Dst = "ipv6_dst" [] nxm Some("NXM_NX_IPV6_DST"), slot::IPV6_DST, Ipv6, Ipv6, maskable true, writable true;
    Ipv6Label = "ipv6_label" [] nxm Some("NXM_NX_IPV6_LABEL"), slot::IPV6_LABEL, Hex, Ipv6, maskable true, writable true;
    IpProto = "nw_proto" ["ip_proto"] nxm Some("NXM_OF_IP_PROTO"), slot::NW_PROTO, Decimal, Ip, maskable false, writable false;
    NwTos = "nw_tos" [] nxm Some("NXM_OF_IP_TOS"), slot::NW_TOS.sub(2, 6), Tos, Ip, maskable false, writable true;
    IpDscp = "ip_dscp" [] nxm Some("OXM_OF_IP_DSCP"), slot::NW_TOS.sub(2, 6), Decimal, Ip, maskable false, writable true;
    IpEcn = "nw_ecn" ["ip_ecn"] nxm Some("NXM_NX_IP_ECN"), slot::NW_TOS.sub(0, 2), Decimal, Ip, maskable false, writable true;
    NwTtl = "nw_ttl" [] nxm Some("NXM_NX_IP_TTL"), slot::NW_TTL, Decimal, Ip, maskable false, writable true;
    IpFrag = "ip_frag" ["nw_frag"] nxm Some("NXM_NX_IP_FRAG"), slot::NW_FRAG, Frag, Ip, maskable true, writable false;
    ArpOp = "arp_op" [] nxm Some("NXM_OF_ARP_OP"), slot::NW_PROTO, Decimal, Arp, maskable false, writable true;
    ArpSpa = "arp_spa" [] nxm Some("NXM_OF_ARP_SPA"), slot::NW_SRC, Ipv4, Arp, maskable true, writable true;
    ArpTpa = "arp_tpa" [] nxm Some("NXM_OF_ARP_TPA"), slot::NW_DST, Ipv4, Arp, maskable true, writable true;
    ArpSha = "arp_sha" [] nxm Some("NXM_NX_ARP_SHA"), slot::ARP_SHA, Mac, Arp, maskable true, writable true;
    ArpTha = "arp_tha" [] nxm Some("NXM_NX_ARP_THA"), slot::ARP_THA, Mac, Arp, maskable true, writable true;
    TpSrc = "tp_src" [] nxm None, slot::TP_SRC, Decimal, L4Ports, maskable true, writable true;
    TpDst = "tp_dst" [] nxm None, slot::TP_DST, Decimal, L4Ports, maskable true, writable true;
    TcpSrc = "tcp_src" [] nxm Some("NXM_OF_TCP_SRC"), slot::TP_SRC, Decimal, Tcp, maskable true, writable true;
    TcpDst = "tcp_dst" [] nxm Some("NXM_OF_TCP_DST"), slot::TP_DST, Decimal, Tcp, maskable true, writable true;
    UdpSrc = "udp_src" [] nxm Some("NXM_OF_UDP_SRC"), slot::TP_SRC, Decimal, Udp, maskable true, writable true;
    UdpDst = "udp_dst" [] nxm Some("NXM_OF_UDP_DST"), slot::TP_DST, Decimal, Udp, maskable true, writable true;
    SctpSrc = "sctp_src" [] nxm Some("OXM_OF_SCTP_SRC"), slot::TP_SRC, Decimal, Sctp, maskable true, writable true;
    SctpDst = "sctp_dst" [] nxm Some("OXM_OF_SCTP_DST"), slot::TP_DST, Decimal, Sctp, maskable true, writable true;
    TcpFlags = "tcp_flags" [] nxm Some("NXM_NX_TCP_FLAGS"), slot::TCP_FLAGS.sub(0, 12), TcpFlags, Tcp, maskable true, writable false;
    IcmpType = "icmp_type" [] nxm Some("NXM_OF_ICMP_TYPE"), slot::TP_SRC.sub(0, 8), Decimal, IcmpAny, maskable false, writable true;
    IcmpCode = "icmp_code" [] nxm Some("NXM_OF_ICMP_CODE"), slot::TP_DST.sub(0, 8), Decimal, IcmpAny, maskable false, writable true;
    Icmpv6Type = "icmpv6_type" [] nxm Some("NXM_NX_ICMPV6_TYPE"), slot::TP_SRC.sub(0, 8), Decimal, Icmpv6, maskable false, writable true;
    Icmpv6Code = "icmpv6_code" [] nxm Some("NXM_NX_ICMPV6_CODE"), slot::TP_DST.sub(0, 8), Decimal, Icmpv6, maskable false, writable true;
    NdTarget = "nd_target" [] nxm Some("NXM_NX_ND_TARGET"), slot::ND_TARGET, Ipv6, Nd, maskable true, writable true;
    NdSll = "nd_sll" [] nxm Some("NXM_NX_ND_SLL"), slot::ARP_SHA, Mac, NdSolicit, maskable true, writable true;
    NdTll = "nd_tll" [] nxm Some("NXM_NX_ND_TLL"), slot::ARP_THA, Mac, NdAdvert, maskable true, writable true;
    TunId = "tun_id" ["tunnel_id"] nxm Some("NXM_NX_TUN_ID"), slot::TUN_ID, Hex, None, maskable true, writable true;
    TunSrc = "tun_src" [] nxm Some("NXM_NX_TUN_IPV4_SRC"), slot::TUN_SRC, Ipv4, None, maskable true, writable true;
    TunDst = "tun_dst" [] nxm Some("NXM_NX_TUN_IPV4_DST"), slot::TUN_DST, Ipv4, None, maskable true, writable true;
    CtState = "ct_state" [] nxm Some("NXM_NX_CT_STATE"), slot::CT_STATE, CtState, None, maskable true, writable false;
    CtZone = "ct_zone" [] nxm Some("NXM_NX_CT_ZONE"), slot::CT_ZONE, Hex, None, maskable false, writable false;
    CtMark = "ct_mark" [] nxm Some("NXM_NX_CT_MARK"), slot::CT_MARK, Hex, None, maskable true, writable true;
    CtLabel = "ct_label" [] nxm Some("NXM_NX_CT_LABEL"), slot::CT_LABEL, Hex, None, maskable true, writable true;
    CtNwSrc = "ct_nw_src" [] nxm Some("NXM_NX_CT_NW_SRC"), slot::CT_NW_SRC, Ipv4, CtValid, maskable true, writable false;
    CtNwDst = "ct_nw_dst" [] nxm Some("NXM_NX_CT_NW_DST"), slot::CT_NW_DST, Ipv4, CtValid, maskable true, writable false;
    CtNwProto = "ct_nw_proto" [] nxm Some("NXM_NX_CT_NW_PROTO"), slot::CT_NW_PROTO, Decimal, CtValid, maskable false, writable false;
    CtTpSrc = "ct_tp_src" [] nxm Some("NXM_NX_CT_TP_SRC"), slot::CT_TP_SRC, Decimal, CtValid, maskable true, writable false;
    CtTpDst = "ct_tp_dst" [] nxm Some("NXM_NX_CT_TP_DST"), slot::CT_TP_DST, Decimal, CtValid, maskable true, writable false;
    Reg0 = "reg0" [] nxm Some("NXM_NX_REG0"), slot::reg(0), Hex, None, maskable true, writable true;
    Reg1 = "reg1" [] nxm Some("NXM_NX_REG1"), slot::reg(1), Hex, None, maskable true, writable true;
    Reg2 = "reg2" [] nxm Some("NXM_NX_REG2"), slot::reg(2), Hex, None, maskable true, writable true;
    Reg3 = "reg3" [] nxm Some("NXM_NX_REG3"), slot::reg(3), Hex, None, maskable true, writable true;
    Reg4 = "reg4" [] nxm Some("NXM_NX_REG4"), slot::reg(4), Hex, None, maskable true, writable true;
    Reg5 = "reg5" [] nxm Some("NXM_NX_REG5"), slot::reg(5), Hex, None, maskable true, writable true;
    Reg6 = "reg6" [] nxm Some("NXM_NX_REG6"), slot::reg(6), Hex, None, maskable true, writable true;
    Reg7 = "reg7" [] nxm Some("NXM_NX_REG7"), slot::reg(7), Hex, None, maskable true, writable true;
    Reg8 = "reg8" [] nxm Some("NXM_NX_REG8"), slot::reg(8), Hex, None, maskable true, writable true;
    Reg9 = "reg9" [] nxm Some("NXM_NX_REG9"), slot::reg(9), Hex, None, maskable true, writable true;
    Reg10 = "reg10" [] nxm Some("NXM_NX_REG10"), slot::reg(10), Hex, None, maskable true, writable true;
    Reg11 = "reg11" [] nxm Some("NXM_NX_REG11"), slot::reg(11), Hex, None, maskable true, writable true;
    Reg12 = "reg12" [] nxm Some("NXM_NX_REG12"), slot::reg(12), Hex, None, maskable true, writable true;
    Reg13 = "reg13" [] nxm Some("NXM_NX_REG13"), slot::reg(13), Hex, None, maskable true, writable true;
    Reg14 = "reg14" [] nxm Some("NXM_NX_REG14"), slot::reg(14), Hex, None, maskable true, writable true;
    Reg15 = "reg15" [] nxm Some("NXM_NX_REG15"), slot::reg(15), Hex, None, maskable true, writable true;
    Xreg0 = "xreg0" [] nxm Some("OXM_OF_PKT_REG0"), slot::xreg(0), Hex, None, maskable true, writable true;
    Xreg1 = "xreg1" [] nxm Some("OXM_OF_PKT_REG1"), slot::xreg(1), Hex, None, maskable true, writable true;
    Xreg2 = "xreg2" [] nxm Some("OXM_OF_PKT_REG2"), slot::xreg(2), Hex, None, maskable true, writable true;
    Xreg3 = "xreg3" [] nxm Some("OXM_OF_PKT_REG3"), slot::xreg(3), Hex, None, maskable true, writable true;
    Xreg4 = "xreg4" [] nxm Some("OXM_OF_PKT_REG4"), slot::xreg(4), Hex, None, maskable true, writable true;
    Xreg5 = "xreg5" [] nxm Some("OXM_OF_PKT_REG5"), slot::xreg(5), Hex, None, maskable true, writable true;
    Xreg6 = "xreg6" [] nxm Some("OXM_OF_PKT_REG6"), slot::xreg(6), Hex, None, maskable true, writable true;
    Xreg7 = "xreg7" [] nxm Some("OXM_OF_PKT_REG7"), slot::xreg(7), Hex, None, maskable true, writable true;
    Metadata = "metadata" [] nxm Some("OXM_OF_METADATA"), slot::METADATA, Hex, None, maskable true, writable true;
    RecircId = "recirc_id" [] nxm None, slot::RECIRC_ID, Hex, None, maskable false, writable false;
    ConjId = "conj_id" [] nxm None, slot::CONJ_ID, Decimal, None, maskable false, writable false;
}

impl FieldId {
    /// Look a field up by any of its names: preferred, alias or NXM/OXM name.
    pub fn from_name(name: &str) -> Option<FieldId> {
        ALL_FIELDS.iter().copied().find(|f| {
            let i = f.info();
            i.name == name || i.aliases.contains(&name) || i.nxm == Some(name)
        })
    }

    /// Register field `reg{i}`.
    pub fn reg(i: u8) -> Option<FieldId> {
        ALL_FIELDS
            .iter()
            .copied()
            .filter(|f| matches!(f.info().nxm, Some(n) if n.starts_with("NXM_NX_REG")))
            .nth(i as usize)
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn slot(self) -> Slot {
        self.info().slot
    }

    /// Width of the field in bits.
    pub fn bits(self) -> u8 {
        self.info().slot.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for f in ALL_FIELDS {
            let i = f.info();
            assert_eq!(i.id, *f);
            for n in std::iter::once(i.name)
                .chain(i.aliases.iter().copied())
                .chain(i.nxm)
            {
                assert!(seen.insert(n), "duplicate field name {n}");
                assert_eq!(FieldId::from_name(n), Some(*f));
            }
        }
    }

    #[test]
    fn registers() {
        assert_eq!(FieldId::reg(0), Some(FieldId::Reg0));
        assert_eq!(FieldId::reg(15), Some(FieldId::Reg15));
        assert_eq!(FieldId::reg(16), None);
        assert_eq!(FieldId::Reg5.slot(), slot::reg(5));
    }

    #[test]
    fn prereqs() {
        let mut f = Flow::ZERO;
        let mut m = Flow::ZERO;
        assert!(!Prereq::Tcp.satisfied_by(&f, &m));
        f.set_dl_type(ethertype::IPV4);
        m.set_dl_type(0xffff);
        f.set_nw_proto(ipproto::TCP);
        m.set_nw_proto(0xff);
        assert!(Prereq::Tcp.satisfied_by(&f, &m));
        assert!(Prereq::L4Ports.satisfied_by(&f, &m));
        assert!(!Prereq::Udp.satisfied_by(&f, &m));
        assert!(!Prereq::Ipv6.satisfied_by(&f, &m));
    }
}
