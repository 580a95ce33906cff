//! The Kubernetes pipeline (DESIGN §5) for the node and its Pods, as flow text.
//!
//! The design, one rule for every case: between Pods of the node, and between a Pod and
//! the node, the switch is a switch: a frame goes to the port that owns its destination
//! MAC, unchanged. A frame sent to the gateway's MAC for a Pod's IP (from a Pod whose route
//! points at the gateway, later from the tunnel) is routed: both MACs rewritten and the TTL
//! decremented. Everything else sent to the gateway's MAC goes to the node. ARP for the
//! gateway and for every local Pod is answered by the switch itself, so nothing is flooded;
//! ARP for anything else is dropped. A Pod may send only untagged frames, from its own MAC
//! and IP.
//!
//! Registers: `reg0` holds where a packet came from ([`FROM_GATEWAY`], [`FROM_TUNNEL`],
//! [`FROM_POD`]); `reg1` the output port L3Forwarding chose.
//!
//! Each rule carries a cookie naming what it was made for: [`NODE_COOKIE`] for the node's
//! rules, [`pod_cookie`] for a Pod's. They are the switch's own rules
//! ([`crate::ofproto::Origin::System`]): made again from the Pod records after a restart.

use super::ipam::Cidr4;
use std::net::Ipv4Addr;
use vswitch_proto::flowmod::{FlowSpec, Usage};
use vswitch_proto::text::{self, NoPortNames};

pub const FROM_GATEWAY: u32 = 1;
pub const FROM_TUNNEL: u32 = 2;
pub const FROM_POD: u32 = 3;

/// The cookie of the node's rules.
pub const NODE_COOKIE: u64 = 0x0100_0000_0000_0000;
/// The cookies of Pods' rules: this kind in the top byte, the Pod's port below.
const POD_COOKIE_KIND: u64 = 0x0200_0000_0000_0000;

pub fn pod_cookie(port: u32) -> u64 {
    POD_COOKIE_KIND | u64::from(port)
}

/// The cookies of remote nodes' rules: this kind in the top byte, the node's id below.
const REMOTE_COOKIE_KIND: u64 = 0x0300_0000_0000_0000;

pub fn remote_cookie(id: u32) -> u64 {
    REMOTE_COOKIE_KIND | u64::from(id)
}

/// Whether `cookie` is one the switch gives its own rules (top byte 0x01, 0x02 or 0x03): a
/// user's flow may not carry one, or removing a Pod or a node would miss it or take it
/// along.
pub fn reserved_cookie(cookie: u64) -> bool {
    matches!(cookie >> 56, 0x01..=0x03)
}

/// The MAC the switch gives an address: `0a:58:` and the four bytes of the IP (the
/// convention OVN-Kubernetes uses), so a Pod keeps its MAC with its IP.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The node's side: the Pod CIDR and its gateway port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeNet {
    pub cidr: Cidr4,
    pub gateway_port: u32,
    pub mtu: u32,
    /// The tunnel to the other nodes, when the node has one (`--node-ip`).
    pub tunnel: Option<TunnelNet>,
}

/// The VXLAN port and the Pod network's VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelNet {
    pub port: u32,
    pub vni: u32,
}

/// A remote node: its Pod CIDR behind its underlay address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteNet {
    pub cidr: Cidr4,
    pub node_ip: Ipv4Addr,
}

impl NodeNet {
    pub fn gateway_ip(&self) -> Ipv4Addr {
        self.cidr.gateway()
    }

    pub fn gateway_mac(&self) -> String {
        mac_for(self.gateway_ip())
    }
}

/// One Pod's place on the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNet {
    pub port: u32,
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// Answer an ARP request for `ip` with `mac`, back out of the port it came in on.
fn arp_responder(ip: Ipv4Addr, mac: &str) -> String {
    format!(
        "table=2,priority=200,arp,arp_op=1,arp_tpa={ip},actions=\
         move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,set_field:2->arp_op,\
         move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:{mac}->arp_sha,\
         move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{ip}->arp_spa,in_port"
    )
}

/// The node's rules: the gateway, table misses, and the tables that only pass packets on
/// until Services and NetworkPolicy fill them.
pub fn node_lines(n: &NodeNet) -> Vec<String> {
    let (gw, gw_mac) = (n.gateway_port, n.gateway_mac());
    let mut lines = node_base_lines(n);
    if let Some(t) = n.tunnel {
        let (port, gw_ip) = (t.port, n.gateway_ip());
        lines.extend([
            // 0 Classifier: what each known node may send comes in (its own rules);
            // anything else from the tunnel (another VNI, an unknown sender, a forged
            // inner source) is dropped and counted here.
            format!("table=0,priority=190,in_port={port},actions=drop"),
            // 7 L3Forwarding: from the tunnel only to this node's Pods (their own rules) and
            // gateway; never back into the tunnel. The TTL was decremented by the sender.
            format!(
                "table=7,priority=205,ip,reg0={FROM_TUNNEL:#x},nw_dst={gw_ip},actions=set_field:{gw_mac}->eth_dst,set_field:{gw:#x}->reg1,goto_table:8"
            ),
            format!("table=7,priority=195,reg0={FROM_TUNNEL:#x},actions=drop"),
        ]);
    }
    lines
}

/// A remote node's rules: ARP for its gateway answered (the node routes to its Pods via
/// that gateway, over the gateway port), and its Pod CIDR routed into the tunnel, to its
/// underlay address, with the MAC of its gateway as the inner destination (the MAC a
/// kernel VXLAN device there also carries, so Flannel-like peers take the frame).
pub fn remote_lines(n: &NodeNet, t: TunnelNet, r: &RemoteNet) -> Vec<String> {
    let (gw_mac, rgw) = (n.gateway_mac(), r.cidr.gateway());
    let rgw_mac = mac_for(rgw);
    let (cidr, node_ip, port, vni) = (r.cidr, r.node_ip, t.port, t.vni);
    vec![
        // From the node's underlay address, with the Pod network's VNI, IPv4 from its own
        // Pod CIDR or from the node itself (its answers to Pods that reached it over the
        // underlay): nothing else that node sends is taken in.
        format!(
            "table=0,priority=200,in_port={port},tun_id={vni:#x},tun_src={node_ip},ip,nw_src={cidr},actions=set_field:{FROM_TUNNEL:#x}->reg0,goto_table:3"
        ),
        format!(
            "table=0,priority=200,in_port={port},tun_id={vni:#x},tun_src={node_ip},ip,nw_src={node_ip},actions=set_field:{FROM_TUNNEL:#x}->reg0,goto_table:3"
        ),
        arp_responder(rgw, &rgw_mac),
        format!(
            "table=7,priority=185,ip,nw_dst={cidr},actions=set_field:{gw_mac}->eth_src,set_field:{rgw_mac}->eth_dst,dec_ttl,set_field:{vni:#x}->tun_id,set_field:{node_ip}->tun_dst,set_field:{port:#x}->reg1,goto_table:8"
        ),
    ]
}

fn node_base_lines(n: &NodeNet) -> Vec<String> {
    let (gw, gw_mac) = (n.gateway_port, n.gateway_mac());
    vec![
        // 0 Classifier
        format!(
            "table=0,priority=200,in_port={gw},actions=set_field:{FROM_GATEWAY:#x}->reg0,goto_table:2"
        ),
        "table=0,priority=0,actions=drop".into(),
        // 1 SpoofGuard: IPv6 is not routed yet; anything a Pod's rules do not allow drops.
        "table=1,priority=5,ipv6,actions=drop".into(),
        "table=1,priority=0,actions=drop".into(),
        // 2 ARPResponder
        arp_responder(n.gateway_ip(), &gw_mac),
        "table=2,priority=190,arp,actions=drop".into(),
        "table=2,priority=0,actions=goto_table:3".into(),
        // 3 Conntrack .. 6 EgressPolicy: nothing to do yet.
        "table=3,priority=0,actions=goto_table:4".into(),
        "table=4,priority=0,actions=goto_table:5".into(),
        "table=5,priority=0,actions=goto_table:6".into(),
        "table=6,priority=0,actions=goto_table:7".into(),
        // 7 L3Forwarding: to the node.
        format!(
            "table=7,priority=180,dl_dst={gw_mac},actions=set_field:{gw:#x}->reg1,goto_table:8"
        ),
        "table=7,priority=0,actions=drop".into(),
        // 8 IngressPolicy, 9 ConntrackCommit, 10 Output.
        "table=8,priority=0,actions=goto_table:9".into(),
        "table=9,priority=0,actions=goto_table:10".into(),
        "table=10,priority=0,actions=output:NXM_NX_REG1[]".into(),
    ]
}

/// A Pod's rules.
pub fn pod_lines(n: &NodeNet, p: &PodNet) -> Vec<String> {
    let (port, ip, mac, gw_mac) = (p.port, p.ip, &p.mac, n.gateway_mac());
    vec![
        format!(
            "table=0,priority=190,in_port={port},actions=set_field:{FROM_POD:#x}->reg0,goto_table:1"
        ),
        format!(
            "table=1,priority=200,ip,in_port={port},vlan_tci=0x0000/0x1fff,dl_src={mac},nw_src={ip},actions=goto_table:2"
        ),
        format!(
            "table=1,priority=200,arp,in_port={port},vlan_tci=0x0000/0x1fff,dl_src={mac},arp_sha={mac},arp_spa={ip},actions=goto_table:2"
        ),
        // What a Pod sends from another MAC or IP drops here, counted per Pod.
        format!("table=1,priority=1,in_port={port},actions=drop"),
        arp_responder(ip, mac),
        format!(
            "table=7,priority=200,ip,dl_dst={gw_mac},nw_dst={ip},actions=set_field:{gw_mac}->eth_src,set_field:{mac}->eth_dst,dec_ttl,set_field:{port:#x}->reg1,goto_table:8"
        ),
        format!("table=7,priority=190,dl_dst={mac},actions=set_field:{port:#x}->reg1,goto_table:8"),
        // From the tunnel (whatever the inner MAC): delivered, the TTL as the sender left it.
        format!(
            "table=7,priority=210,ip,reg0={FROM_TUNNEL:#x},nw_dst={ip},actions=set_field:{gw_mac}->eth_src,set_field:{mac}->eth_dst,set_field:{port:#x}->reg1,goto_table:8"
        ),
    ]
}

/// Flow lines as rules (they are the switch's own text: a line that does not parse is a
/// bug, reported as an error rather than a panic).
pub fn specs(lines: &[String]) -> Result<Vec<FlowSpec>, String> {
    lines
        .iter()
        .map(|l| {
            text::parse_flow(l, Usage::Add, &NoPortNames)
                .map_err(|e| format!("pipeline flow {l:?}: {}", e.render(l)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofproto::Bridge;

    /// The node (gateway port 1) and Pods .2 (port 2) and .3 (port 3).
    fn bridge() -> Bridge {
        let n = NodeNet {
            cidr: Cidr4::parse("10.244.1.0/24").unwrap(),
            gateway_port: 1,
            mtu: 1500,
            tunnel: None,
        };
        let mut b = Bridge::new("br0");
        b.set_system_flows(NODE_COOKIE, &specs(&node_lines(&n)).unwrap(), 0)
            .unwrap();
        for port in [2, 3] {
            let ip = Ipv4Addr::new(10, 244, 1, port as u8);
            let p = PodNet {
                port,
                ip,
                mac: mac_for(ip),
            };
            b.set_system_flows(pod_cookie(port), &specs(&pod_lines(&n, &p)).unwrap(), 0)
                .unwrap();
        }
        b
    }

    fn actions(b: &Bridge, packet: &str) -> String {
        let m = text::parse_match(packet, &NoPortNames).unwrap();
        b.trace(&m.flow, 0).datapath_actions()
    }

    const POD2: &str = "dl_src=0a:58:0a:f4:01:02,nw_src=10.244.1.2";
    const POD3_MAC: &str = "0a:58:0a:f4:01:03";
    const GW_MAC: &str = "0a:58:0a:f4:01:01";

    #[test]
    fn pods_switch_to_each_other_and_reach_the_node() {
        let b = bridge();
        assert_eq!(mac_for(Ipv4Addr::new(10, 244, 1, 2)), "0a:58:0a:f4:01:02");
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

    /// The node of [`bridge`] with a tunnel (port 9, VNI 5) to node 10.244.2.0/24 at
    /// 192.168.1.2.
    fn overlay() -> Bridge {
        let n = NodeNet {
            cidr: Cidr4::parse("10.244.1.0/24").unwrap(),
            gateway_port: 1,
            mtu: 1450,
            tunnel: Some(TunnelNet { port: 9, vni: 5 }),
        };
        let mut b = bridge();
        b.set_system_flows(NODE_COOKIE, &specs(&node_lines(&n)).unwrap(), 0)
            .unwrap();
        let r = RemoteNet {
            cidr: Cidr4::parse("10.244.2.0/24").unwrap(),
            node_ip: Ipv4Addr::new(192, 168, 1, 2),
        };
        let t = n.tunnel.unwrap();
        b.set_system_flows(
            remote_cookie(1),
            &specs(&remote_lines(&n, t, &r)).unwrap(),
            0,
        )
        .unwrap();
        b
    }

    #[test]
    fn remote_pods_are_routed_into_the_tunnel() {
        let b = overlay();
        // From a Pod: MACs rewritten, TTL decremented, tunnel to the node's address.
        let a = actions(
            &b,
            &format!("in_port=2,tcp,{POD2},dl_dst={GW_MAC},nw_dst=10.244.2.7,nw_ttl=64"),
        );
        assert!(
            a.contains("tunnel(tun_id=0x5,") && a.contains("dst=192.168.1.2)"),
            "{a}"
        );
        assert!(
            a.contains("dst=0a:58:0a:f4:02:01") && a.contains("ttl=63"),
            "{a}"
        );
        assert!(a.ends_with(",9"), "{a}");
        // From the node (it routes via the remote gateway, whose ARP the switch answers).
        let a = actions(
            &b,
            "in_port=1,icmp,dl_src=0a:58:0a:f4:01:01,dl_dst=0a:58:0a:f4:02:01,nw_src=10.244.1.1,nw_dst=10.244.2.7,nw_ttl=64",
        );
        assert!(a.ends_with(",9"), "{a}");
        let arp = actions(
            &b,
            "in_port=1,arp,arp_op=1,dl_src=0a:58:0a:f4:01:01,dl_dst=ff:ff:ff:ff:ff:ff,arp_sha=0a:58:0a:f4:01:01,arp_spa=10.244.1.1,arp_tpa=10.244.2.1",
        );
        assert!(
            arp.contains("sha=0a:58:0a:f4:02:01") && arp.ends_with(",1"),
            "{arp}"
        );
    }

    #[test]
    fn the_tunnel_delivers_only_to_this_nodes_pods_and_gateway() {
        let b = overlay();
        let from = |vni: u32, rest: &str| {
            actions(
                &b,
                &format!(
                    "in_port=9,tun_id={vni},tun_src=192.168.1.2,icmp,dl_src=0a:58:0a:f4:02:01,{rest}"
                ),
            )
        };
        // To a Pod: its MAC, the TTL as sent (the sender decremented it).
        let a = from(
            5,
            "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.1.3,nw_ttl=63",
        );
        assert!(
            a.contains(POD3_MAC) && !a.contains("ttl") && a.ends_with(",3"),
            "{a}"
        );
        // To the gateway, whatever the inner MAC.
        let a = from(
            5,
            "dl_dst=00:00:00:00:00:01,nw_src=10.244.2.7,nw_dst=10.244.1.1",
        );
        assert!(a.ends_with(",1"), "{a}");
        // Never back into the tunnel, nowhere else, and not with another VNI.
        let a = from(
            5,
            "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.2.9",
        );
        assert_eq!(a, "drop");
        let a = from(
            5,
            "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=8.8.8.8",
        );
        assert_eq!(a, "drop");
        let a = from(
            6,
            "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.1.3",
        );
        assert_eq!(a, "drop");
        // A node sends only from its own Pod CIDR, and only a known node's address counts.
        let a = from(
            5,
            "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.1.9,nw_dst=10.244.1.3",
        );
        assert_eq!(a, "drop");
        let m = "in_port=9,tun_id=5,tun_src=192.168.1.66,icmp,dl_src=0a:58:0a:f4:02:01,\
                 dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.1.3";
        assert_eq!(actions(&b, m), "drop");
    }

    #[test]
    fn arp_is_answered_and_never_flooded() {
        let b = bridge();
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
        let b = bridge();
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
