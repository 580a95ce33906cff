//! The node's own part of the pipeline (DESIGN §5) and each local Pod's, compiled from
//! the node's Pod network and the Pods' ports: pure functions, no daemon needed.
//!
//! The design, one rule for every case: between Pods of the node, and between a Pod and
//! the node, the switch is a switch: a frame goes to the port that owns its destination
//! MAC, unchanged. A frame sent to the gateway's MAC for a Pod's IP (from a Pod whose route
//! points at the gateway, or from the tunnel) is routed: both MACs rewritten and the TTL
//! decremented. Everything else sent to the gateway's MAC goes to the node. ARP for the
//! gateway and for every local Pod is answered by the switch itself, so nothing is flooded;
//! ARP for anything else is dropped. A Pod may send only untagged frames, from its own MAC
//! and IP.

use super::netpol::prio::ALWAYS;
use super::pipeline::{
    CT_ZONE, HAIRPIN_IP, HAIRPIN_ZONE, HANDED_TO_SWITCH, NEXT_HOP, Source, Table, ct_allow_service,
    ct_commit_with_rules, ct_hairpin_snat, ct_mark, ct_nat_in, reg, rule,
};
use crate::ofproto::OwnedRule;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use vswitch_proto::field::FieldId;
use vswitch_proto::flow::ct_state;
use vswitch_proto::net::{Ipv4Cidr, MacAddr};

/// The node's side: the Pod CIDR and its gateway port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNet {
    pub cidr: Ipv4Cidr,
    pub gateway_port: u32,
    pub mtu: u32,
    /// The tunnel to the other nodes, when the node has one (`--node-ip`).
    pub tunnel: Option<TunnelNet>,
    /// The cluster's Service CIDR, routed from the node to the switch.
    pub service_cidr: Option<Ipv4Cidr>,
}

/// The VXLAN port and the Pod network's VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelNet {
    pub port: u32,
    pub vni: u32,
}

impl LocalNet {
    pub fn gateway_ip(&self) -> Ipv4Addr {
        self.cidr.gateway()
    }

    pub fn gateway_mac(&self) -> MacAddr {
        MacAddr::for_ipv4(self.gateway_ip())
    }
}

/// One local Pod's place on the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPod {
    pub port: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// Answer an ARP request for `ip` with `mac`, back out of the port it came in on.
pub fn arp_responder(ip: Ipv4Addr, mac: MacAddr) -> OwnedRule {
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
        .in_port_out()
}

/// Packets the node routes to the switch for `dst` (a Service address) through the next
/// hop: taken in as if sent to the gateway.
pub fn from_node_to_service(n: &LocalNet, dst: Ipv4Cidr) -> OwnedRule {
    rule(Table::Classifier, 205)
        .in_port(n.gateway_port)
        .ip()
        .dl_dst(MacAddr::for_ipv4(NEXT_HOP))
        .nw_dst_net(dst)
        .set_reg(reg::SOURCE, Source::Gateway as u32)
        .set_dl_dst(n.gateway_mac())
        .goto(Table::ArpResponder)
}

/// The node's rules: the gateway, table misses, the tunnel's catch-alls, and the tables
/// that only pass packets on until Services and NetworkPolicy fill them.
pub fn node_rules(n: &LocalNet) -> Vec<OwnedRule> {
    let (gw, gw_mac) = (n.gateway_port, n.gateway_mac());
    let mut rules = vec![
        rule(Table::Classifier, 200)
            .in_port(gw)
            .set_reg(reg::SOURCE, Source::Gateway as u32)
            .goto(Table::ArpResponder),
        rule(Table::Classifier, 0).drop(),
        // IPv6 is not routed yet; anything a Pod's own rules do not allow drops.
        rule(Table::SpoofGuard, 5).ipv6().drop(),
        rule(Table::SpoofGuard, 0).drop(),
        arp_responder(n.gateway_ip(), gw_mac),
        rule(Table::ArpResponder, 190).arp().drop(),
        rule(Table::ArpResponder, 0).goto(Table::Conntrack),
    ];
    // Every IPv4 packet is tracked (in the Pod network's zone, its connection's NAT
    // applied); invalid ones are dropped, and those of connections already known
    // (established, related, replies) go straight to forwarding: Services and policy
    // decided when their connection began. New connections are committed last, once
    // policy has let them through, so a refused connection leaves no entry behind.
    // The node's own packets are the exception to "invalid is dropped": the node routes
    // asymmetrically (a Pod reaching another node's address goes out by the underlay, and
    // only that node's answer comes through its switch, an echo reply or a SYN/ACK
    // conntrack has never seen start), and Kubernetes lets the node reach every Pod.
    let (trk, new, inv) = (ct_state::TRK, ct_state::NEW, ct_state::INV);
    rules.extend([
        rule(Table::ConntrackState, 210)
            .reg(reg::SOURCE, Source::Gateway as u32)
            .ct_state(trk | inv, trk | inv)
            .goto(Table::L3Forwarding),
        rule(Table::Conntrack, 200)
            .ip()
            .ct_to(Table::ConntrackState),
        // Replies of hairpin connections: their source translation reversed first (zone
        // HAIRPIN_ZONE), then tracked as every packet is (a packet to HAIRPIN_IP of no
        // such connection is tracked once more as it is, and goes nowhere).
        rule(Table::Conntrack, 210)
            .ip()
            .nw_dst(HAIRPIN_IP)
            .ct_state(0, trk)
            .then(ct_nat_in(HAIRPIN_ZONE, Table::Conntrack)),
        rule(Table::ConntrackState, 200)
            .ct_state(trk | inv, trk | inv)
            .drop(),
        rule(Table::ConntrackState, 190)
            .ip()
            .ct_state(trk, trk | new)
            .goto(Table::L3Forwarding),
        rule(Table::IngressPolicy, 200)
            .ip()
            .ct_state(trk, trk | new)
            .goto(Table::Output),
        rule(Table::ConntrackCommit, 200)
            .ip()
            .ct_state(trk | new, trk | new)
            .action(ct_commit_with_rules())
            .goto(Table::Output),
        // A Service's connection was committed when its endpoint was chosen, pending
        // policy; let through, it is no longer pending (the tracker finds it by the
        // original tuple the packet carries, as Open vSwitch keeps the connection with
        // the packet), and keeps the rules that allowed it.
        rule(Table::ConntrackCommit, 210)
            .ip()
            .ct_state(trk | new, trk | new)
            .ct_mark(ct_mark::SERVICE, ct_mark::SERVICE)
            .action(ct_allow_service())
            .goto(Table::Output),
        // A Service's connection policy refused (its first packet dropped) is not a
        // connection: a reply-shaped packet of it, or more of its packets once something
        // answered, are dropped here rather than passed as established.
        rule(Table::ConntrackState, 205)
            .ip()
            .ct_state(trk, trk | new)
            .ct_mark(ct_mark::PENDING, ct_mark::PENDING)
            .drop(),
    ]);
    for t in [
        Table::Conntrack,
        Table::ConntrackState,
        Table::ServiceLb,
        Table::EgressPolicy,
    ] {
        rules.push(rule(t, 0).goto(t.next().unwrap_or(Table::Output)));
    }
    rules.extend([
        // To the node.
        rule(Table::L3Forwarding, 180)
            .dl_dst(gw_mac)
            .set_reg(reg::OUT_PORT, gw)
            .goto(Table::IngressPolicy),
        rule(Table::L3Forwarding, 0).drop(),
        rule(Table::IngressPolicy, 0).goto(Table::ConntrackCommit),
        rule(Table::ConntrackCommit, 0).goto(Table::Output),
        rule(Table::Output, 0).output_reg(reg::OUT_PORT),
    ]);
    // The next hop of the node's routes to other nodes' Pods and to Services: answered
    // here, so its frames come to the switch, which routes them by address.
    rules.push(arp_responder(NEXT_HOP, MacAddr::for_ipv4(NEXT_HOP)));
    // What the node routes to Services (its own connections to the Service CIDR, and
    // the NodePort and own-address connections from outside it translates to one of
    // HANDED_TO_SWITCH) is addressed to the next hop's MAC; from here on as if sent to
    // the gateway, so that once an endpoint is chosen it is routed like a Pod's.
    let to_services = n
        .service_cidr
        .into_iter()
        .chain(HANDED_TO_SWITCH.map(Ipv4Cidr::host));
    rules.extend(to_services.map(|dst| from_node_to_service(n, dst)));
    if let Some(t) = n.tunnel {
        let tunnel = Source::Tunnel as u32;
        rules.extend([
            // What each known node may send comes in (its own rules); anything else from
            // the tunnel (another VNI, an unknown sender, a forged inner source) is
            // dropped and counted here.
            rule(Table::Classifier, 190).in_port(t.port).drop(),
            // From the tunnel only to this node's Pods (their own rules) and gateway;
            // never back into the tunnel. The TTL was decremented by the sender.
            rule(Table::L3Forwarding, 205)
                .ip()
                .reg(reg::SOURCE, tunnel)
                .nw_dst(n.gateway_ip())
                .set_dl_dst(gw_mac)
                .set_reg(reg::OUT_PORT, gw)
                .goto(Table::IngressPolicy),
            rule(Table::L3Forwarding, 195)
                .reg(reg::SOURCE, tunnel)
                .drop(),
        ]);
    }
    rules
}

/// A local Pod's rules.
pub fn pod_rules(n: &LocalNet, p: &LocalPod) -> Vec<OwnedRule> {
    let (port, ip, mac, gw_mac) = (p.port, p.ip, p.mac, n.gateway_mac());
    let (trk, rpl) = (ct_state::TRK, ct_state::RPL);
    vec![
        rule(Table::Classifier, 190)
            .in_port(port)
            .set_reg(reg::SOURCE, Source::Pod as u32)
            .goto(Table::SpoofGuard),
        // Hairpin: a packet going back to the Pod it came from (the Pod reached itself
        // through a Service) leaves by the port it came in on; in the connection's
        // original direction its source becomes HAIRPIN_IP first, so that the Pod's reply
        // is addressed to the switch and not answered inside the Pod.
        rule(Table::Output, 210)
            .ip()
            .in_port(port)
            .reg(reg::OUT_PORT, port)
            .ct_zone(CT_ZONE)
            .ct_state(trk, trk | rpl)
            .ct_mark(ct_mark::SERVICE, ct_mark::SERVICE)
            .then(ct_hairpin_snat(Table::Output)),
        rule(Table::Output, 200)
            .in_port(port)
            .reg(reg::OUT_PORT, port)
            .in_port_out(),
        rule(Table::SpoofGuard, 200)
            .ip()
            .in_port(port)
            .untagged()
            .dl_src(mac)
            .nw_src(ip)
            .goto(Table::ArpResponder),
        rule(Table::SpoofGuard, 200)
            .arp()
            .in_port(port)
            .untagged()
            .dl_src(mac)
            .arp_sha(mac)
            .arp_spa(ip)
            .goto(Table::ArpResponder),
        // A Pod may always reach itself (through a Service): NetworkPolicy never
        // stops it.
        rule(Table::EgressPolicy, ALWAYS)
            .ip()
            .in_port(port)
            .nw_dst(ip)
            .goto(Table::L3Forwarding),
        rule(Table::IngressPolicy, ALWAYS)
            .ip()
            .in_port(port)
            .reg(reg::OUT_PORT, port)
            .goto(Table::ConntrackCommit),
        // What a Pod sends from another MAC or IP drops here, counted per Pod.
        rule(Table::SpoofGuard, 1).in_port(port).drop(),
        arp_responder(ip, mac),
        rule(Table::L3Forwarding, 200)
            .ip()
            .dl_dst(gw_mac)
            .nw_dst(ip)
            .set_dl_src(gw_mac)
            .set_dl_dst(mac)
            .dec_ttl()
            .set_reg(reg::OUT_PORT, port)
            .goto(Table::IngressPolicy),
        rule(Table::L3Forwarding, 190)
            .dl_dst(mac)
            .set_reg(reg::OUT_PORT, port)
            .goto(Table::IngressPolicy),
        // From the tunnel (whatever the inner MAC): delivered, the TTL as the sender left it.
        rule(Table::L3Forwarding, 210)
            .ip()
            .reg(reg::SOURCE, Source::Tunnel as u32)
            .nw_dst(ip)
            .set_dl_src(gw_mac)
            .set_dl_dst(mac)
            .set_reg(reg::OUT_PORT, port)
            .goto(Table::IngressPolicy),
    ]
}

/// The local Pods as Pod objects find them: by the Pod's namespace and name (what the
/// CNI call said), and by address (any local Pod, also a port added by hand). A Pod
/// object binds to the local Pod of its name, or else of its address
/// ([`LocalPods::bound`]); one that binds to none is a remote Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPods {
    by_name: BTreeMap<(String, String), LocalPod>,
    by_ip: BTreeMap<Ipv4Addr, LocalPod>,
}

/// No local Pods (a node without a Pod network, tests of other kinds).
pub static NO_PODS: LocalPods = LocalPods::new();

impl LocalPods {
    pub const fn new() -> LocalPods {
        LocalPods {
            by_name: BTreeMap::new(),
            by_ip: BTreeMap::new(),
        }
    }

    /// A local Pod came (or changed): `name` is its (namespace, name) when the CNI call
    /// gave them.
    pub fn insert(&mut self, name: Option<(String, String)>, p: LocalPod) {
        if let Some(n) = name {
            self.by_name.insert(n, p);
        }
        self.by_ip.insert(p.ip, p);
    }

    /// The local Pod on port `port` went; returns its address and name.
    pub fn remove_port(&mut self, port: u32) -> Option<(Ipv4Addr, Option<(String, String)>)> {
        let by_ip = self
            .by_ip
            .iter()
            .find(|(_, p)| p.port == port)
            .map(|(ip, _)| *ip);
        if let Some(ip) = by_ip {
            self.by_ip.remove(&ip);
        }
        // The name goes too, whatever became of the address (another Pod may hold it).
        let named = self
            .by_name
            .iter()
            .find(|(_, p)| p.port == port)
            .map(|(n, p)| (n.clone(), p.ip));
        if let Some((n, _)) = &named {
            self.by_name.remove(n);
        }
        let ip = by_ip.or(named.as_ref().map(|(_, ip)| *ip))?;
        Some((ip, named.map(|(n, _)| n)))
    }

    /// The local Pod a Pod object (`namespace/name`, known by `ip`) is: by name first,
    /// else by address.
    pub fn bound(&self, namespace: &str, name: &str, ip: Option<Ipv4Addr>) -> Option<&LocalPod> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(p) = self.by_name.get(&key) {
            return Some(p);
        }
        // By address, only a local Pod no other Pod object holds by name (a port added
        // by hand): a stale object with a CNI Pod's address is not that Pod.
        let p = self.by_ip.get(&ip?)?;
        let named_else = self
            .by_name
            .iter()
            .any(|(n, q)| q.port == p.port && *n != key);
        (!named_else).then_some(p)
    }

    /// The local Pod on port `port`.
    pub fn by_port(&self, port: u32) -> Option<&LocalPod> {
        self.by_ip.values().find(|p| p.port == port)
    }

    /// The local Pod holding address `ip`.
    pub fn with_ip(&self, ip: Ipv4Addr) -> Option<&LocalPod> {
        self.by_ip.get(&ip)
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::k8s::pipeline::CookieKind;
    use crate::ofproto::Bridge;
    use vswitch_proto::text::{self, NoPortNames};

    pub(crate) fn net(tunnel: Option<TunnelNet>) -> LocalNet {
        LocalNet {
            cidr: "10.244.1.0/24".parse().unwrap(),
            gateway_port: 1,
            mtu: 1500,
            tunnel,
            service_cidr: Some("10.96.0.0/12".parse().unwrap()),
        }
    }

    /// The node (gateway port 1) and Pods .2 (port 2) and .3 (port 3).
    pub(crate) fn bridge(n: &LocalNet) -> Bridge {
        let mut b = Bridge::new("br0");
        // The gateway, the Pods, the tunnel: outputs to ports that do not exist are skipped.
        let mut ports = vec![1, 2, 3];
        ports.extend(n.tunnel.as_ref().map(|t| t.port));
        b.set_ports(
            ports
                .into_iter()
                .map(|no| crate::ofproto::PortDesc {
                    no,
                    name: format!("p{no}"),
                    no_flood: false,
                })
                .collect(),
        );
        b.set_owned(CookieKind::Node.cookie(0), node_rules(n), vec![], 0)
            .unwrap();
        for port in [2, 3] {
            let ip = Ipv4Addr::new(10, 244, 1, port as u8);
            let p = LocalPod {
                port,
                ip,
                mac: MacAddr::for_ipv4(ip),
            };
            b.set_owned(
                CookieKind::Pod.cookie(port as u64),
                pod_rules(n, &p),
                vec![],
                0,
            )
            .unwrap();
        }
        b
    }

    /// The datapath actions for a packet of an established connection: the first pass
    /// must send it to conntrack, the second (as conntrack returns it) decides.
    pub(crate) fn actions(b: &Bridge, packet: &str) -> String {
        actions_in(b, packet, "+trk+est")
    }

    /// The datapath actions after conntrack says `state` (`-` for untracked packets:
    /// the first pass alone).
    pub(crate) fn actions_in(b: &Bridge, packet: &str, state: &str) -> String {
        let m = text::parse_match(packet, &NoPortNames).unwrap();
        let first = b.trace(&m.flow, 0);
        let s = text::parse_match(&format!("ct_state={state}"), &NoPortNames).unwrap();
        match first.recirculated(s.flow.ct_state()) {
            Some(key) => b.trace(&key, 0).datapath_actions(),
            None => first.datapath_actions(),
        }
    }

    #[test]
    fn every_ip_packet_is_tracked_invalid_ones_dropped_new_ones_committed() {
        let b = bridge(&net(None));
        let p = format!("in_port=2,tcp,{POD2},dl_dst={POD3_MAC},nw_dst=10.244.1.3");
        let m = text::parse_match(&p, &NoPortNames).unwrap();
        assert_eq!(
            b.trace(&m.flow, 0).datapath_actions(),
            "ct(zone=65520,nat),recirc(0x5)"
        );
        assert_eq!(actions_in(&b, &p, "+trk+inv"), "drop");
        // From the node, an invalid packet (the half of an asymmetric exchange that comes
        // through this switch) is forwarded.
        let from_node = format!(
            "in_port=1,icmp,dl_src={GW_MAC},nw_src=10.244.1.1,dl_dst={POD3_MAC},nw_dst=10.244.1.3"
        );
        assert_eq!(actions_in(&b, &from_node, "+trk+inv"), "3");
        assert_eq!(
            actions_in(&b, &p, "+trk+new"),
            "ct(commit,zone=65520,label=0x0/0xffffffffffffffff,nat),3"
        );
        assert_eq!(actions_in(&b, &p, "+trk+est+rpl"), "3");
        assert_eq!(actions_in(&b, &p, "+trk+rel"), "3");
        // ARP is not tracked.
        let arp = format!("in_port=2,arp,arp_op=1,{POD2},arp_spa=10.244.1.2,arp_tpa=10.244.1.1");
        assert!(!actions(&b, &arp.replace("nw_src=10.244.1.2,", "")).contains("ct("));
    }

    const POD2: &str = "dl_src=0a:58:0a:f4:01:02,nw_src=10.244.1.2";
    const POD3_MAC: &str = "0a:58:0a:f4:01:03";
    const GW_MAC: &str = "0a:58:0a:f4:01:01";

    #[test]
    fn pods_switch_to_each_other_and_reach_the_node() {
        let b = bridge(&net(None));
        // Pod to Pod on the node: switched, unchanged.
        let a = actions(
            &b,
            &format!("in_port=2,icmp,{POD2},dl_dst={POD3_MAC},nw_dst=10.244.1.3"),
        );
        assert_eq!(a, "3");
        // Pod to the node (or beyond it): to the gateway.
        let a = actions(
            &b,
            &format!("in_port=2,tcp,{POD2},dl_dst={GW_MAC},nw_dst=192.168.1.5"),
        );
        assert_eq!(a, "1");
        // The node to a Pod.
        let a = actions(
            &b,
            &format!(
                "in_port=1,icmp,dl_src={GW_MAC},nw_src=10.244.1.1,dl_dst={POD3_MAC},nw_dst=10.244.1.3"
            ),
        );
        assert_eq!(a, "3");
        // Sent to the gateway's MAC for a Pod's IP: routed.
        let a = actions(
            &b,
            &format!("in_port=2,icmp,{POD2},dl_dst={GW_MAC},nw_dst=10.244.1.3,nw_ttl=64"),
        );
        assert!(
            a.contains("ttl=63") && a.contains(POD3_MAC) && a.ends_with(",3"),
            "{a}"
        );
    }

    #[test]
    fn arp_is_answered_and_never_flooded() {
        let b = bridge(&net(None));
        let ask = |tpa: &str| {
            actions(
                &b,
                &format!(
                    "in_port=2,arp,arp_op=1,dl_src=0a:58:0a:f4:01:02,dl_dst=ff:ff:ff:ff:ff:ff,arp_sha=0a:58:0a:f4:01:02,arp_spa=10.244.1.2,arp_tpa={tpa}"
                ),
            )
        };
        // The reply goes back out of the asking Pod's port.
        assert_eq!(
            ask("10.244.1.1"),
            "set(eth(src=0a:58:0a:f4:01:01,dst=0a:58:0a:f4:01:02)),\
             set(arp(sip=10.244.1.1,tip=10.244.1.2,op=2,sha=0a:58:0a:f4:01:01,tha=0a:58:0a:f4:01:02)),2"
        );
        assert_eq!(
            ask("10.244.1.3"),
            "set(eth(src=0a:58:0a:f4:01:03,dst=0a:58:0a:f4:01:02)),\
             set(arp(sip=10.244.1.3,tip=10.244.1.2,op=2,sha=0a:58:0a:f4:01:03,tha=0a:58:0a:f4:01:02)),2"
        );
        assert_eq!(ask("10.244.1.99"), "drop");
    }

    #[test]
    fn a_pod_sends_only_from_its_own_addresses() {
        let b = bridge(&net(None));
        let forged_ip = format!(
            "in_port=2,icmp,dl_src=0a:58:0a:f4:01:02,nw_src=10.244.1.99,dl_dst={POD3_MAC},nw_dst=10.244.1.3"
        );
        assert_eq!(actions(&b, &forged_ip), "drop");
        let forged_mac = format!(
            "in_port=2,icmp,dl_src=0a:58:00:00:00:01,nw_src=10.244.1.2,dl_dst={POD3_MAC},nw_dst=10.244.1.3"
        );
        assert_eq!(actions(&b, &forged_mac), "drop");
        let other_port = format!("in_port=3,icmp,{POD2},dl_dst={POD3_MAC},nw_dst=10.244.1.3");
        assert_eq!(actions(&b, &other_port), "drop");
        let arp_lie = "in_port=2,arp,arp_op=2,dl_src=0a:58:0a:f4:01:02,arp_sha=0a:58:0a:f4:01:02,arp_spa=10.244.1.3,arp_tpa=10.244.1.1";
        assert_eq!(actions(&b, arp_lie), "drop");
        // Nor from behind a VLAN tag (the tag would ride along to other Pods and the node).
        let tagged =
            format!("in_port=2,vlan_tci=0x1005,icmp,{POD2},dl_dst={POD3_MAC},nw_dst=10.244.1.3");
        assert_eq!(actions(&b, &tagged), "drop");
        // An unknown port gets nowhere.
        assert_eq!(
            actions(&b, &format!("in_port=9,icmp,{POD2},dl_dst={POD3_MAC}")),
            "drop"
        );
    }
}
