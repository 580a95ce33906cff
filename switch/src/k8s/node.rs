//! The Node kind: a remote node is a Pod CIDR behind an underlay address (DESIGN §8).
//!
//! Read from `spec.podCIDR(s)` and the first IPv4 `InternalIP` of `status.addresses`
//! (`vswitch_proto::k8s::node_spec`). Checked: not this node (whose own flags configure
//! it), not this node's address, no overlap with this node's or another node's Pod CIDR.
//! Compiled, when the node has a Pod network and a tunnel: what that node may send through
//! the tunnel is taken in (its underlay address, the Pod network's VNI, IPv4 from its Pod
//! CIDR or its own address), and its Pod CIDR is routed into the tunnel with the MAC of
//! its gateway as the inner destination (the MAC a kernel VXLAN device there also carries,
//! so Flannel-like peers take the frame). The node's own stack reaches those Pods by the
//! route this kind asks for, over the gateway port via the switch's one next hop
//! ([`super::pipeline::NEXT_HOP`]).

use super::local::{LocalNet, TunnelNet};
use super::pipeline::{CookieKind, NEXT_HOP, Source, Table, reg, rule};
use super::{Checked, Compiled, Kind, KindInfo, NodeCtx, ObjectKey, Objects, Route, Spec, Stored};
use crate::ofproto::OwnedRule;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use vswitch_proto::field::FieldId;
use vswitch_proto::k8s::{self, FieldError};
use vswitch_proto::net::{Ipv4Cidr, MacAddr};
use vswitch_proto::rpc::GetColumn;

/// A remote node, as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteNode {
    pub cidr: Ipv4Cidr,
    pub node_ip: Ipv4Addr,
}

/// The Node kind.
#[derive(Debug)]
pub struct NodeKind;

pub static NODE: NodeKind = NodeKind;

static INFO: KindInfo = KindInfo {
    kind: k8s::NODE_KIND,
    group: "",
    version: k8s::NODE_API_VERSION,
    plural: "nodes",
    singular: "node",
    short: &["no"],
    namespaced: false,
};

/// The key of node `name`.
pub fn key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: k8s::NODE_KIND,
        namespace: String::new(),
        name: name.to_string(),
    }
}

/// A remote node's rules.
pub fn remote_rules(n: &LocalNet, t: TunnelNet, r: &RemoteNode) -> Vec<OwnedRule> {
    let (gw_mac, rgw) = (n.gateway_mac(), r.cidr.gateway());
    let rgw_mac = MacAddr::for_ipv4(rgw);
    let from_node = |src: Ipv4Cidr| {
        rule(Table::Classifier, 200)
            .in_port(t.port)
            .tun_id(t.vni)
            .tun_src(r.node_ip)
            .ip()
            .nw_src_net(src)
            .set_reg(reg::SOURCE, Source::Tunnel as u32)
            .goto(Table::Conntrack)
    };
    let node_host = Ipv4Cidr::new(r.node_ip, 32).unwrap_or(r.cidr);
    vec![
        // IPv4 from its own Pod CIDR, or from the node itself (its answers to Pods that
        // reached it over the underlay): nothing else that node sends is taken in.
        from_node(r.cidr),
        from_node(node_host),
        rule(Table::L3Forwarding, 185)
            .ip()
            .nw_dst_net(r.cidr)
            .set_dl_src(gw_mac)
            .set_dl_dst(rgw_mac)
            .dec_ttl()
            .set_field(FieldId::TunId, t.vni as u128)
            .set_field(FieldId::TunDst, u32::from(r.node_ip) as u128)
            .set_reg(reg::OUT_PORT, t.port)
            .goto(Table::IngressPolicy),
    ]
}

fn node_of(spec: &Spec) -> &RemoteNode {
    match spec {
        Spec::Node(n) => n,
        _ => unreachable!("the Node kind is given Node specs only"),
    }
}

impl Kind for NodeKind {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    /// The policies whose peers are every Pod: its Pod network is among their addresses.
    fn related(&self, objects: &super::Objects, _key: &ObjectKey, _spec: &Spec) -> Vec<ObjectKey> {
        super::netpol::policies_of_every_pod(objects)
    }

    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError> {
        let s = k8s::node_spec(obj)?;
        let field = |path: &str, m: String| FieldError {
            path: path.into(),
            message: m,
        };
        let cidr = k8s::parse_pod_cidr(&s.pod_cidr).map_err(|m| field("spec.podCIDR", m))?;
        let node_ip = k8s::parse_node_ip(&s.node_ip).map_err(|m| field("status.addresses", m))?;
        Ok((key(&s.name), Spec::Node(RemoteNode { cidr, node_ip })))
    }

    fn check(
        &self,
        node: &NodeCtx,
        objects: &Objects,
        key: &ObjectKey,
        spec: &Spec,
    ) -> Result<Checked, FieldError> {
        let n = node_of(spec);
        let err = |path: &str, message: String| FieldError {
            path: path.into(),
            message,
        };
        if key.name == node.name {
            // This node: its Pod network comes from its own flags; a manifest that agrees
            // changes nothing.
            return Ok(Checked::ThisNode(match node.local {
                Some(l) if l.cidr == n.cidr => Ok(()),
                Some(l) => Err(err(
                    "spec.podCIDR",
                    format!(
                        "{} differs from this node's Pod CIDR {} (vswitchd --pod-cidr)",
                        n.cidr, l.cidr
                    ),
                )),
                None => Err(err(
                    "spec.podCIDR",
                    format!(
                        "this node has no Pod network yet; start vswitchd with --pod-cidr {}",
                        n.cidr
                    ),
                )),
            }));
        }
        if let Some(l) = node.local
            && l.cidr.overlaps(&n.cidr)
        {
            return Err(err(
                "spec.podCIDR",
                format!("Pod CIDR {} overlaps this node's {}", n.cidr, l.cidr),
            ));
        }
        if node.node_ip == Some(n.node_ip) {
            return Err(err(
                "status.addresses",
                format!("{} is this node's own address (--node-ip)", n.node_ip),
            ));
        }
        // Node CIDRs never overlap, so the neighbours by first address are the only
        // candidates: the one starting at or before this one, and the next one.
        let first = u32::from(n.cidr.first());
        let before = objects.node_cidrs.range(..=first).next_back();
        let after = objects.node_cidrs.range(first..).next();
        for (_, (c, other)) in before.into_iter().chain(after) {
            if other != key && c.overlaps(&n.cidr) {
                return Err(err(
                    "spec.podCIDR",
                    format!("Pod CIDR {} overlaps node {}'s {c}", n.cidr, other.name),
                ));
            }
        }
        Ok(Checked::Ok)
    }

    fn compile(
        &self,
        node: &NodeCtx,
        _objects: &Objects,
        _key: &ObjectKey,
        stored: &Stored,
    ) -> Compiled {
        let n = node_of(&stored.spec);
        let Some((local, tunnel)) = node.local.and_then(|l| Some((l, l.tunnel?))) else {
            return Compiled::default();
        };
        Compiled {
            rules: remote_rules(local, tunnel, n),
            groups: Vec::new(),
            routes: vec![Route {
                dst: n.cidr,
                via: NEXT_HOP,
            }],
            ..Compiled::default()
        }
    }

    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value {
        let n = node_of(&stored.spec);
        json!({
            "apiVersion": INFO.version,
            "kind": INFO.kind,
            "metadata": { "name": key.name },
            "spec": { "podCIDR": n.cidr.to_string(), "podCIDRs": [n.cidr.to_string()] },
            "status": { "addresses": [{ "type": "InternalIP", "address": n.node_ip.to_string() }] },
        })
    }

    fn columns(&self) -> Vec<GetColumn> {
        let col = |name: &str, wide| GetColumn {
            name: name.into(),
            wide,
        };
        vec![
            col("POD-CIDR", false),
            col("INTERNAL-IP", false),
            col("SOURCE", false),
            col("GATEWAY", true),
            col("COOKIE", true),
        ]
    }

    fn cells(&self, _key: &ObjectKey, stored: &Stored) -> Vec<String> {
        let n = node_of(&stored.spec);
        vec![
            n.cidr.to_string(),
            n.node_ip.to_string(),
            stored.source.clone(),
            n.cidr.gateway().to_string(),
            format!("{:#x}", self.owner(stored)),
        ]
    }

    fn owner(&self, stored: &Stored) -> u64 {
        CookieKind::RemoteNode.cookie(stored.id as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::local::tests::{actions, bridge, net};

    fn remote(cidr: &str, ip: [u8; 4]) -> RemoteNode {
        RemoteNode {
            cidr: cidr.parse().unwrap(),
            node_ip: Ipv4Addr::from(ip),
        }
    }

    /// The node of `local::tests::bridge` with a tunnel (port 9, VNI 5) to node
    /// 10.244.2.0/24 at 192.168.1.2.
    fn overlay() -> crate::ofproto::Bridge {
        let n = net(Some(TunnelNet { port: 9, vni: 5 }));
        let mut b = bridge(&n);
        let r = remote("10.244.2.0/24", [192, 168, 1, 2]);
        let t = n.tunnel.unwrap();
        b.set_owned(
            CookieKind::RemoteNode.cookie(1),
            remote_rules(&n, t, &r),
            vec![],
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
            "in_port=2,tcp,dl_src=0a:58:0a:f4:01:02,nw_src=10.244.1.2,dl_dst=0a:58:0a:f4:01:01,nw_dst=10.244.2.7,nw_ttl=64",
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
        // From the node, which routes via the switch's one next hop, whose ARP the switch
        // answers.
        let arp = actions(
            &b,
            "in_port=1,arp,arp_op=1,dl_src=0a:58:0a:f4:01:01,dl_dst=ff:ff:ff:ff:ff:ff,arp_sha=0a:58:0a:f4:01:01,arp_spa=10.244.1.1,arp_tpa=169.254.0.254",
        );
        assert!(
            arp.contains("sha=0a:58:a9:fe:00:fe") && arp.ends_with(",1"),
            "{arp}"
        );
        let a = actions(
            &b,
            "in_port=1,icmp,dl_src=0a:58:0a:f4:01:01,dl_dst=0a:58:a9:fe:00:fe,nw_src=10.244.1.1,nw_dst=10.244.2.7,nw_ttl=64",
        );
        assert!(
            a.ends_with(",9") && a.contains("dst=0a:58:0a:f4:02:01"),
            "{a}"
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
            a.contains("0a:58:0a:f4:01:03") && !a.contains("ttl") && a.ends_with(",3"),
            "{a}"
        );
        // To the gateway, whatever the inner MAC.
        let a = from(
            5,
            "dl_dst=00:00:00:00:00:01,nw_src=10.244.2.7,nw_dst=10.244.1.1",
        );
        assert!(a.ends_with(",1"), "{a}");
        // Never back into the tunnel, nowhere else, and not with another VNI.
        for (vni, rest) in [
            (
                5,
                "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.2.9",
            ),
            (
                5,
                "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=8.8.8.8",
            ),
            (
                6,
                "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.1.3",
            ),
            // A node sends only from its own Pod CIDR.
            (
                5,
                "dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.1.9,nw_dst=10.244.1.3",
            ),
        ] {
            assert_eq!(from(vni, rest), "drop", "{rest}");
        }
        // Only a known node's address counts.
        let m = "in_port=9,tun_id=5,tun_src=192.168.1.66,icmp,dl_src=0a:58:0a:f4:02:01,\
                 dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.7,nw_dst=10.244.1.3";
        assert_eq!(actions(&b, m), "drop");
    }

    #[test]
    fn reading_checking_and_compiling() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n2"},
            "spec": {"podCIDR": "10.244.2.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]},
        });
        let (k, spec) = NODE.read(&obj).unwrap();
        assert_eq!(k, key("n2"));
        let stored = Stored {
            spec: spec.clone(),
            source: "manifest".into(),
            id: 4,
        };
        // Saved as read: reading it back gives the same.
        assert_eq!(NODE.read(&NODE.to_object(&k, &stored)).unwrap().1, spec);
        let l = net(Some(TunnelNet { port: 9, vni: 5 }));
        let ctx = NodeCtx {
            name: "n1",
            local: Some(&l),
            node_ip: Some(Ipv4Addr::new(192, 168, 1, 1)),
            zone: None,
            pods: &crate::k8s::local::NO_PODS,
            audit: false,
        };
        let mut objects = Objects::default();
        assert_eq!(NODE.check(&ctx, &objects, &k, &spec), Ok(Checked::Ok));
        objects.put(k.clone(), Some(stored.clone()));
        let c = NODE.compile(&ctx, &Objects::default(), &k, &stored);
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.routes[0].via, NEXT_HOP);
        // No tunnel: nothing to install (the node stays known).
        let plain = net(None);
        let no_tunnel = NodeCtx {
            local: Some(&plain),
            ..ctx
        };
        assert_eq!(
            NODE.compile(&no_tunnel, &Objects::default(), &k, &stored),
            Compiled::default()
        );
        // Overlaps, this node, its address.
        let bad = |name: &str, spec: RemoteNode| {
            NODE.check(&ctx, &objects, &key(name), &Spec::Node(spec))
        };
        let e = bad("n3", remote("10.244.2.128/25", [192, 168, 1, 3])).unwrap_err();
        assert!(e.to_string().contains("overlaps node n2's"), "{e}");
        let e = bad("n3", remote("10.244.0.0/16", [192, 168, 1, 3])).unwrap_err();
        assert!(e.to_string().contains("overlaps this node's"), "{e}");
        let e = bad("n3", remote("10.0.0.0/8", [192, 168, 1, 3])).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
        let e = bad("n3", remote("10.244.3.0/24", [192, 168, 1, 1])).unwrap_err();
        assert_eq!(e.path, "status.addresses");
        assert_eq!(
            bad("n1", remote("10.244.1.0/24", [192, 168, 1, 1])),
            Ok(Checked::ThisNode(Ok(())))
        );
        assert!(matches!(
            bad("n1", remote("10.244.9.0/24", [192, 168, 1, 1])),
            Ok(Checked::ThisNode(Err(_)))
        ));
        // The node itself may move within its own range.
        assert_eq!(
            bad("n2", remote("10.244.2.0/25", [192, 168, 1, 2])),
            Ok(Checked::Ok)
        );
    }
}
