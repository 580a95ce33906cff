//! The Kubernetes pipeline's vocabulary, named once: its tables (DESIGN §5), the registers
//! it keeps state in, the kinds of owners its cookies name, the group ids the switch
//! keeps for itself, and [`rule`], which builds a rule as a value (no flow text to parse).

use crate::ofproto::OwnedRule;
use std::net::Ipv4Addr;
use vswitch_proto::action::{Action, SubField};
use vswitch_proto::field::{FieldId, ethertype};
use vswitch_proto::matching::Match;
use vswitch_proto::net::{Ipv4Cidr, MacAddr};

/// The pipeline's tables, in the order a packet meets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// By in_port: from a local Pod, from the tunnel, from the gateway; sets [`reg::SOURCE`].
    Classifier = 0,
    /// A Pod may send only from its own MAC and IP (ARP too).
    SpoofGuard = 1,
    /// ARP for the gateway and for Pod IPs answered by the switch; no flooding.
    ArpResponder = 2,
    Conntrack = 3,
    ConntrackState = 4,
    ServiceLb = 5,
    EgressPolicy = 6,
    /// To a local Pod (switched, or routed: MACs rewritten, TTL decremented), to a remote
    /// node's Pods (into the tunnel), else to the node; sets [`reg::OUT_PORT`].
    L3Forwarding = 7,
    IngressPolicy = 8,
    ConntrackCommit = 9,
    /// To the port in [`reg::OUT_PORT`].
    Output = 10,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Classifier,
        Table::SpoofGuard,
        Table::ArpResponder,
        Table::Conntrack,
        Table::ConntrackState,
        Table::ServiceLb,
        Table::EgressPolicy,
        Table::L3Forwarding,
        Table::IngressPolicy,
        Table::ConntrackCommit,
        Table::Output,
    ];

    pub fn number(self) -> u8 {
        self as u8
    }

    /// The name dumps and traces show.
    pub fn name(self) -> &'static str {
        match self {
            Table::Classifier => "Classifier",
            Table::SpoofGuard => "SpoofGuard",
            Table::ArpResponder => "ARPResponder",
            Table::Conntrack => "Conntrack",
            Table::ConntrackState => "ConntrackState",
            Table::ServiceLb => "ServiceLB",
            Table::EgressPolicy => "EgressPolicy",
            Table::L3Forwarding => "L3Forwarding",
            Table::IngressPolicy => "IngressPolicy",
            Table::ConntrackCommit => "ConntrackCommit",
            Table::Output => "Output",
        }
    }

    pub fn from_number(n: u8) -> Option<Table> {
        Table::ALL.get(n as usize).copied()
    }

    /// The table after this one (a table that passes packets on goes there).
    pub fn next(self) -> Option<Table> {
        Table::from_number(self.number() + 1)
    }
}

/// A register and what the pipeline keeps in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

pub mod reg {
    use super::Reg;

    /// Where the packet came from: a [`super::Source`].
    pub const SOURCE: Reg = Reg(0);
    /// The port L3Forwarding chose; Output sends there.
    pub const OUT_PORT: Reg = Reg(1);
    /// The NetworkPolicy egress rule that allowed a new connection (its id), 0 when
    /// none had to; kept in the connection's label, bits 0-31.
    pub const EGRESS_RULE: Reg = Reg(2);
    /// The ingress rule's, likewise; label bits 32-63.
    pub const INGRESS_RULE: Reg = Reg(3);
}

impl Reg {
    pub fn field(self) -> FieldId {
        FieldId::reg(self.0).unwrap_or(FieldId::Reg0)
    }
}

/// Where a packet came from, as [`reg::SOURCE`] holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Gateway = 1,
    Tunnel = 2,
    Pod = 3,
}

/// What an owner of the switch's rules is: the top byte of their cookie. The rest of the
/// cookie is the owner's number within its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CookieKind {
    /// The node's own pipeline (its Pod network, gateway and tunnel).
    Node = 0x01,
    /// A local Pod (attached through CNI, or a port added with an address in the Pod
    /// CIDR); its number is the port's.
    Pod = 0x02,
    /// A remote node (a Node object); its number is the object's.
    RemoteNode = 0x03,
    /// A Service (its virtual IPs, joined to its EndpointSlices); its number is the
    /// object's.
    Service = 0x04,
    /// A NetworkPolicy; its number is the object's. Pods and Namespaces, which own no
    /// rules, have numbers of this kind too, above the policies'
    /// (`namespace::NAMESPACE_OWNER`, `pod::POD_OWNER`).
    NetworkPolicy = 0x05,
}

impl CookieKind {
    pub const ALL: [CookieKind; 5] = [
        CookieKind::Node,
        CookieKind::Pod,
        CookieKind::RemoteNode,
        CookieKind::Service,
        CookieKind::NetworkPolicy,
    ];

    /// The cookie of owner `n` of this kind.
    pub fn cookie(self, n: u64) -> u64 {
        ((self as u64) << 56) | (n & ((1 << 56) - 1))
    }

    /// The kind a cookie names, if it is one of the switch's.
    pub fn of(cookie: u64) -> Option<(CookieKind, u64)> {
        let kind = CookieKind::ALL
            .into_iter()
            .find(|k| *k as u64 == cookie >> 56)?;
        Some((kind, cookie & ((1 << 56) - 1)))
    }
}

/// Whether `cookie` is one the switch gives its own rules: a user's flow may not carry
/// one, or removing a Pod or a node would miss it or take it along.
pub fn reserved_cookie(cookie: u64) -> bool {
    CookieKind::of(cookie).is_some()
}

/// The next hop of the node's routes to other nodes' Pods (`CIDR via NEXT_HOP dev
/// <gateway port> onlink`): one address for every remote node, answered by the switch's
/// ARP, so the kernel shares one next hop among all those routes. (A next hop per node,
/// each remote gateway, makes the kernel compare each new route with every one before:
/// quadratic in the nodes, 90 s for 50,000.) Link-local, so it is never a Pod's.
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 254);

/// Where the node hands NodePort connections from outside to the switch, for
/// `externalTrafficPolicy: Cluster`: the node's `nat` table translates a connection to
/// one of its own addresses and a NodePort to this address (same port) and masquerades
/// its source to the gateway's address, so the reply comes back through the node
/// (`daemon/hostnat.rs`). Link-local, routed to the switch like [`NEXT_HOP`].
pub const NODEPORT_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 252);

/// As [`NODEPORT_IP`], for `externalTrafficPolicy: Local`: the client's address is kept.
pub const NODEPORT_LOCAL_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 251);

/// Where the node hands connections to an external or load-balancer address that is its
/// own (`--node-ip`; the node would otherwise keep them, as its local routes come first),
/// with the Service port kept: externalTrafficPolicy Cluster, masqueraded like
/// [`NODEPORT_IP`]. kube-proxy translates these in the node's `nat` table too.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 250);

/// As [`EXTERNAL_IP`], for `externalTrafficPolicy: Local`: the client's address is kept.
pub const EXTERNAL_LOCAL_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 249);

/// The addresses the node's `nat` table translates connections to, routed to the switch.
pub const HANDED_TO_SWITCH: [Ipv4Addr; 4] = [
    NODEPORT_IP,
    NODEPORT_LOCAL_IP,
    EXTERNAL_IP,
    EXTERNAL_LOCAL_IP,
];

/// Group ids the switch keeps for its own groups (Services' endpoints, later): users'
/// groups take ids below.
pub const SYSTEM_GROUPS: std::ops::RangeInclusive<u32> = 0xf000_0000..=0xffff_ff00;

/// Bits of a connection's `ct_mark` the pipeline sets.
pub mod ct_mark {
    /// Committed by a Service's endpoint choice (DNATed in ServiceLB): ConntrackCommit
    /// has nothing left to commit (Antrea's `ServiceCTMark`).
    pub const SERVICE: u32 = 0x10;
    /// A Service's connection committed in ServiceLB that policy has not let through
    /// yet: cleared in ConntrackCommit. Its packets are dropped until then (a refused
    /// connection must not become an allowed one when a reply-shaped packet arrives).
    pub const PENDING: u32 = 0x20;
}

/// The conntrack zone of the Pod network's connections (Antrea's choice, 65520, too: far
/// from the small numbers users pick for their own flows).
pub const CT_ZONE: u16 = 0xfff0;

/// `ct(commit,zone=CT_ZONE,nat(dst=IP:PORT),exec(set_field:MARK/MARK->ct_mark),table=T)`:
/// a new connection committed with its destination translated (a Service's endpoint
/// chosen), `mark` set on it, and the translated packet continuing in `table`.
pub fn ct_dnat(ip: Ipv4Addr, port: u16, mark: u32, table: Table) -> Action {
    use vswitch_proto::action::{Ct, CtZone, Nat, NatKind};
    Action::Ct(Box::new(Ct {
        commit: true,
        zone: CtZone::Imm(CT_ZONE),
        table: Some(table.number()),
        nat: Some(Nat {
            kind: Some(NatKind::Dst),
            addrs: Some((ip.into(), ip.into())),
            ports: Some((port, port)),
            ..Nat::default()
        }),
        exec: vec![Action::SetField {
            field: FieldId::CtMark,
            value: mark as u128,
            mask: mark as u128,
        }],
        ..Ct::default()
    }))
}

/// The conntrack zone of hairpin connections' second translation (a Pod that reaches
/// itself through a Service: its source is rewritten to [`HAIRPIN_IP`] so that the reply
/// comes back through the switch). Antrea keeps its SNAT connections in 65521 too.
pub const HAIRPIN_ZONE: u16 = 0xfff1;

/// The source a Pod sees on a connection it made to itself through a Service (link-local:
/// never a Pod's or a node's).
pub const HAIRPIN_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 253);

/// `ct(commit,zone=HAIRPIN_ZONE,nat(src=HAIRPIN_IP),table=T)`.
pub fn ct_hairpin_snat(table: Table) -> Action {
    use vswitch_proto::action::{Ct, CtZone, Nat, NatKind};
    let ip = HAIRPIN_IP.into();
    Action::Ct(Box::new(Ct {
        commit: true,
        zone: CtZone::Imm(HAIRPIN_ZONE),
        table: Some(table.number()),
        nat: Some(Nat {
            kind: Some(NatKind::Src),
            addrs: Some((ip, ip)),
            ..Nat::default()
        }),
        ..Ct::default()
    }))
}

/// `ct(zone=Z,nat,table=T)`: a connection's translation reversed (or applied) in zone `z`.
pub fn ct_nat_in(zone: u16, table: Table) -> Action {
    use vswitch_proto::action::{Ct, CtZone, Nat};
    Action::Ct(Box::new(Ct {
        zone: CtZone::Imm(zone),
        table: Some(table.number()),
        nat: Some(Nat::default()),
        ..Ct::default()
    }))
}

/// `ct(commit,zone=CT_ZONE,nat,exec(move:reg2->ct_label[0..31],
/// move:reg3->ct_label[32..63]))`: a new connection committed with the NetworkPolicy
/// rules that allowed it (their ids, [`reg::EGRESS_RULE`] and [`reg::INGRESS_RULE`]),
/// so that its packets are counted by rule.
pub fn ct_commit_with_rules() -> Action {
    use vswitch_proto::action::{Ct, CtZone, Nat};
    let label = |ofs| SubField {
        field: FieldId::CtLabel,
        ofs,
        n_bits: 32,
    };
    Action::Ct(Box::new(Ct {
        commit: true,
        zone: CtZone::Imm(CT_ZONE),
        nat: Some(Nat::default()),
        exec: vec![
            Action::Move {
                src: SubField::whole(reg::EGRESS_RULE.field()),
                dst: label(0),
            },
            Action::Move {
                src: SubField::whole(reg::INGRESS_RULE.field()),
                dst: label(32),
            },
        ],
        ..Ct::default()
    }))
}

/// The controller connection id of NetworkPolicy's audit (`controller(id=...)`): a
/// denied new connection handed to the switch to be logged, with the Pod's port and
/// direction in the userdata (`01.00.00.00.03`: ingress, port 3).
pub const AUDIT_CONTROLLER_ID: u16 = 0xfa11;

/// `controller(id=AUDIT_CONTROLLER_ID,userdata=DIR.PORT)`: log this denied packet.
pub fn audit_action(ingress: bool, port: u32) -> Action {
    let mut userdata = vec![u8::from(ingress)];
    userdata.extend(port.to_be_bytes());
    Action::ControllerEx(Box::new(vswitch_proto::action::ControllerOpts {
        max_len: 0,
        id: AUDIT_CONTROLLER_ID,
        userdata: Some(userdata),
        ..Default::default()
    }))
}

/// What an audit `controller` action says (`None`: another controller action).
pub fn audit_reason(
    o: &vswitch_proto::action::ControllerOpts,
) -> Option<crate::dp::action::ControllerReason> {
    let u = o.userdata.as_deref()?;
    if o.id != AUDIT_CONTROLLER_ID || u.len() != 5 || u[0] > 1 {
        return None;
    }
    Some(crate::dp::action::ControllerReason::PolicyDenied {
        ingress: u[0] == 1,
        port: u32::from_be_bytes([u[1], u[2], u[3], u[4]]),
    })
}

/// `ct(commit,zone=CT_ZONE,nat,exec(set_field:0/0x20->ct_mark,move:reg2->ct_label[0..31],
/// move:reg3->ct_label[32..63]))`: a Service's connection, committed in ServiceLB, now
/// let through by policy (its pending mark cleared, the rules that allowed it kept).
/// The tracker finds it by the original tuple the packet carries.
pub fn ct_allow_service() -> Action {
    let Action::Ct(mut ct) = ct_commit_with_rules() else {
        unreachable!("ct_commit_with_rules is a ct action")
    };
    ct.exec.insert(
        0,
        Action::SetField {
            field: FieldId::CtMark,
            value: 0,
            mask: ct_mark::PENDING as u128,
        },
    );
    Action::Ct(ct)
}

/// A rule being built: its table and priority, then matches and actions, in the order a
/// flow line would give them.
#[derive(Clone, Debug)]
pub struct RuleBuilder {
    rule: OwnedRule,
}

/// Start a rule in `table` at `priority`.
pub fn rule(table: Table, priority: u16) -> RuleBuilder {
    RuleBuilder {
        rule: OwnedRule {
            table: table.number(),
            priority,
            matching: Match::CATCHALL,
            actions: Vec::new(),
        },
    }
}

impl RuleBuilder {
    /// Match `field` on the bits of `mask`.
    pub fn field_masked(mut self, field: FieldId, value: u128, mask: u128) -> RuleBuilder {
        self.rule.matching.set_masked(field, value, mask);
        self
    }

    /// Match `field` exactly.
    pub fn field(self, field: FieldId, value: u128) -> RuleBuilder {
        self.field_masked(field, value, u128::MAX)
    }

    pub fn in_port(self, port: u32) -> RuleBuilder {
        self.field(FieldId::InPort, port as u128)
    }

    pub fn ip(self) -> RuleBuilder {
        self.field(FieldId::EthType, ethertype::IPV4 as u128)
    }

    pub fn ipv6(self) -> RuleBuilder {
        self.field(FieldId::EthType, ethertype::IPV6 as u128)
    }

    pub fn arp(self) -> RuleBuilder {
        self.field(FieldId::EthType, ethertype::ARP as u128)
    }

    /// Untagged frames only (no VLAN header, or priority-tagged with VID 0).
    pub fn untagged(self) -> RuleBuilder {
        self.field_masked(FieldId::VlanTci, 0, 0x1fff)
    }

    pub fn dl_src(self, mac: MacAddr) -> RuleBuilder {
        self.field(FieldId::EthSrc, mac.to_u128())
    }

    pub fn dl_dst(self, mac: MacAddr) -> RuleBuilder {
        self.field(FieldId::EthDst, mac.to_u128())
    }

    pub fn nw_src(self, ip: Ipv4Addr) -> RuleBuilder {
        self.field(FieldId::IpSrc, u32::from(ip) as u128)
    }

    pub fn nw_dst(self, ip: Ipv4Addr) -> RuleBuilder {
        self.field(FieldId::IpDst, u32::from(ip) as u128)
    }

    pub fn nw_src_net(self, c: Ipv4Cidr) -> RuleBuilder {
        self.field_masked(
            FieldId::IpSrc,
            u32::from(c.network()) as u128,
            c.netmask() as u128,
        )
    }

    pub fn nw_dst_net(self, c: Ipv4Cidr) -> RuleBuilder {
        self.field_masked(
            FieldId::IpDst,
            u32::from(c.network()) as u128,
            c.netmask() as u128,
        )
    }

    pub fn arp_op(self, op: u16) -> RuleBuilder {
        self.field(FieldId::ArpOp, op as u128)
    }

    pub fn arp_spa(self, ip: Ipv4Addr) -> RuleBuilder {
        self.field(FieldId::ArpSpa, u32::from(ip) as u128)
    }

    pub fn arp_tpa(self, ip: Ipv4Addr) -> RuleBuilder {
        self.field(FieldId::ArpTpa, u32::from(ip) as u128)
    }

    pub fn arp_sha(self, mac: MacAddr) -> RuleBuilder {
        self.field(FieldId::ArpSha, mac.to_u128())
    }

    pub fn reg(self, r: Reg, value: u32) -> RuleBuilder {
        self.field(r.field(), value as u128)
    }

    pub fn tun_id(self, vni: u32) -> RuleBuilder {
        self.field(FieldId::TunId, vni as u128)
    }

    pub fn nw_proto(self, proto: u8) -> RuleBuilder {
        self.field(FieldId::IpProto, proto as u128)
    }

    pub fn tp_dst(self, port: u16) -> RuleBuilder {
        self.field(FieldId::TpDst, port as u128)
    }

    /// Match `ct_mark` on the bits of `mask`.
    pub fn ct_mark(self, value: u32, mask: u32) -> RuleBuilder {
        self.field_masked(FieldId::CtMark, value as u128, mask as u128)
    }

    pub fn tun_src(self, ip: Ipv4Addr) -> RuleBuilder {
        self.field(FieldId::TunSrc, u32::from(ip) as u128)
    }

    fn act(mut self, a: Action) -> RuleBuilder {
        self.rule.actions.push(a);
        self
    }

    /// `set_field:VALUE->FIELD` (the whole field).
    pub fn set_field(self, field: FieldId, value: u128) -> RuleBuilder {
        let mask = field.slot().max();
        self.act(Action::SetField {
            field,
            value: value & mask,
            mask,
        })
    }

    pub fn set_reg(self, r: Reg, value: u32) -> RuleBuilder {
        self.set_field(r.field(), value as u128)
    }

    pub fn set_dl_src(self, mac: MacAddr) -> RuleBuilder {
        self.set_field(FieldId::EthSrc, mac.to_u128())
    }

    pub fn set_dl_dst(self, mac: MacAddr) -> RuleBuilder {
        self.set_field(FieldId::EthDst, mac.to_u128())
    }

    /// `move:SRC[]->DST[]` (whole fields).
    pub fn move_field(self, src: FieldId, dst: FieldId) -> RuleBuilder {
        self.act(Action::Move {
            src: SubField::whole(src),
            dst: SubField::whole(dst),
        })
    }

    pub fn dec_ttl(self) -> RuleBuilder {
        self.act(Action::DecTtl)
    }

    /// Match `ct_state` on the bits of `mask` (`ct_state::*` flags).
    pub fn ct_state(self, value: u16, mask: u16) -> RuleBuilder {
        self.field_masked(FieldId::CtState, value as u128, mask as u128)
    }

    /// `ct(zone=CT_ZONE[,commit],nat[,table=T])`: track in the Pod network's zone,
    /// applying a connection's NAT (none until Services) and, with `table`, continuing
    /// there with the tracked copy.
    pub fn ct(self, commit: bool, table: Option<Table>) -> RuleBuilder {
        self.act(Action::Ct(Box::new(vswitch_proto::action::Ct {
            commit,
            zone: vswitch_proto::action::CtZone::Imm(CT_ZONE),
            table: table.map(Table::number),
            nat: Some(vswitch_proto::action::Nat::default()),
            ..Default::default()
        })))
    }

    /// `ct(zone=CT_ZONE,nat,table=T)`; ends the rule.
    pub fn ct_to(self, t: Table) -> OwnedRule {
        self.ct(false, Some(t)).rule
    }

    /// Match `ct_zone`.
    pub fn ct_zone(self, zone: u16) -> RuleBuilder {
        self.field(FieldId::CtZone, zone as u128)
    }

    /// Any action, more to follow.
    pub fn action(self, a: Action) -> RuleBuilder {
        self.act(a)
    }

    /// Any action; ends the rule.
    pub fn then(self, a: Action) -> OwnedRule {
        self.act(a).rule
    }

    /// `group:G`; ends the rule.
    pub fn group(self, g: u32) -> OwnedRule {
        self.act(Action::Group(g)).rule
    }

    /// `goto_table:T`; ends the rule.
    pub fn goto(self, t: Table) -> OwnedRule {
        self.act(Action::GotoTable(t.number())).rule
    }

    /// Back out of the port the packet came in on; ends the rule.
    pub fn in_port_out(self) -> OwnedRule {
        self.act(Action::InPort).rule
    }

    /// `output:NXM_NX_REGn[]`; ends the rule.
    pub fn output_reg(self, r: Reg) -> OwnedRule {
        self.act(Action::OutputReg(SubField::whole(r.field()))).rule
    }

    /// No actions: the packet is dropped (and the rule's counters say how many).
    pub fn drop(self) -> OwnedRule {
        self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::flowmod::Usage;
    use vswitch_proto::text::{NoPortNames, parse_flow};

    /// A rule built as a value is the rule its flow line would make.
    #[test]
    fn built_rules_equal_parsed_lines() {
        let mac: MacAddr = "0a:58:0a:f4:01:02".parse().unwrap();
        let ip = Ipv4Addr::new(10, 244, 1, 2);
        let cases = [
            (
                rule(Table::SpoofGuard, 200)
                    .ip()
                    .in_port(3)
                    .untagged()
                    .dl_src(mac)
                    .nw_src(ip)
                    .goto(Table::ArpResponder),
                "table=1,priority=200,ip,in_port=3,vlan_tci=0x0000/0x1fff,dl_src=0a:58:0a:f4:01:02,nw_src=10.244.1.2,actions=goto_table:2",
            ),
            (
                rule(Table::ArpResponder, 200)
                    .arp()
                    .arp_op(1)
                    .arp_tpa(ip)
                    .move_field(FieldId::EthSrc, FieldId::EthDst)
                    .set_dl_src(mac)
                    .set_field(FieldId::ArpOp, 2)
                    .move_field(FieldId::ArpSha, FieldId::ArpTha)
                    .set_field(FieldId::ArpSha, mac.to_u128())
                    .move_field(FieldId::ArpSpa, FieldId::ArpTpa)
                    .set_field(FieldId::ArpSpa, u32::from(ip) as u128)
                    .in_port_out(),
                "table=2,priority=200,arp,arp_op=1,arp_tpa=10.244.1.2,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:0a:58:0a:f4:01:02->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:0a:58:0a:f4:01:02->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:10.244.1.2->arp_spa,in_port",
            ),
            (
                rule(Table::Classifier, 200)
                    .in_port(9)
                    .tun_id(5)
                    .tun_src(Ipv4Addr::new(192, 168, 1, 2))
                    .ip()
                    .nw_src_net("10.244.2.0/24".parse().unwrap())
                    .set_reg(reg::SOURCE, Source::Tunnel as u32)
                    .goto(Table::Conntrack),
                "table=0,priority=200,in_port=9,tun_id=0x5,tun_src=192.168.1.2,ip,nw_src=10.244.2.0/24,actions=set_field:0x2->reg0,goto_table:3",
            ),
            (
                rule(Table::L3Forwarding, 185)
                    .ip()
                    .nw_dst_net("10.244.2.0/24".parse().unwrap())
                    .set_dl_src(mac)
                    .dec_ttl()
                    .set_field(FieldId::TunId, 5)
                    .set_field(
                        FieldId::TunDst,
                        u32::from(Ipv4Addr::new(192, 168, 1, 2)) as u128,
                    )
                    .set_reg(reg::OUT_PORT, 9)
                    .goto(Table::IngressPolicy),
                "table=7,priority=185,ip,nw_dst=10.244.2.0/24,actions=set_field:0a:58:0a:f4:01:02->eth_src,dec_ttl,set_field:0x5->tun_id,set_field:192.168.1.2->tun_dst,set_field:0x9->reg1,goto_table:8",
            ),
            (
                rule(Table::Output, 0).output_reg(reg::OUT_PORT),
                "table=10,priority=0,actions=output:NXM_NX_REG1[]",
            ),
            (
                rule(Table::Classifier, 0).drop(),
                "table=0,priority=0,actions=drop",
            ),
            (
                rule(Table::SpoofGuard, 5).ipv6().drop(),
                "table=1,priority=5,ipv6,actions=drop",
            ),
            (
                rule(Table::L3Forwarding, 195)
                    .reg(reg::SOURCE, Source::Tunnel as u32)
                    .drop(),
                "table=7,priority=195,reg0=0x2,actions=drop",
            ),
        ];
        for (built, line) in cases {
            let parsed = OwnedRule::from_spec(&parse_flow(line, Usage::Add, &NoPortNames).unwrap());
            assert_eq!(built, parsed, "{line}");
        }
    }

    #[test]
    fn tables_and_cookies_are_named() {
        for t in Table::ALL {
            assert_eq!(Table::from_number(t.number()), Some(t));
        }
        assert_eq!(Table::ServiceLb.name(), "ServiceLB");
        assert_eq!(Table::Output.next(), None);
        let c = CookieKind::RemoteNode.cookie(7);
        assert_eq!(c, 0x0300_0000_0000_0007);
        assert_eq!(CookieKind::of(c), Some((CookieKind::RemoteNode, 7)));
        assert!(reserved_cookie(CookieKind::Node.cookie(0)));
        assert!(!reserved_cookie(0x42));
        assert!(reserved_cookie(0x0500_0000_0000_0000));
        assert!(!reserved_cookie(0x0600_0000_0000_0000));
    }
}
