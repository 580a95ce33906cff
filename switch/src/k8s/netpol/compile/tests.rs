//! The compiler against the bridge: policies compiled with the node's and the Pods' own
//! rules, packets traced through them (the second pass, as conntrack returns a new
//! connection's first packet).

use super::*;
use crate::k8s::local::tests::{actions_in, bridge, net};
use crate::k8s::local::{LocalPods, TunnelNet};
use crate::k8s::pipeline::CookieKind;
use crate::k8s::{KINDS, Kind, Stored, kind_of};
use crate::ofproto::Bridge;
use serde_json::{Value, json};
use vswitch_proto::net::MacAddr;

/// Namespaces x and y; local Pods x/a (10.244.1.2, port 2) and x/b (10.244.1.3, port
/// 3, container port `http` 8080/TCP); remote Pod y/c (10.244.2.5).
fn cluster() -> Vec<Value> {
    let ns = |n: &str| {
        json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": n, "labels": {"ns": n}}})
    };
    let pod = |ns: &str, n: &str, ip: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": n, "namespace": ns, "labels": {"pod": n}},
        "spec": {"containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": if n == "b" { 8080 } else { 9090 }}]}]},
        "status": {"phase": "Running", "podIP": ip}})
    };
    vec![
        ns("x"),
        ns("y"),
        pod("x", "a", "10.244.1.2"),
        pod("x", "b", "10.244.1.3"),
        pod("y", "c", "10.244.2.5"),
    ]
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

struct Bed {
    bridge: Bridge,
    objects: Objects,
    pods: LocalPods,
    net: crate::k8s::local::LocalNet,
}

impl Bed {
    fn new(objects: Vec<Value>) -> Bed {
        let net = net(Some(TunnelNet { port: 9, vni: 1 }));
        let mut pods = LocalPods::new();
        for port in [2u32, 3] {
            let ip = Ipv4Addr::new(10, 244, 1, port as u8);
            let mac = MacAddr::for_ipv4(ip);
            pods.insert(None, LocalPod { port, ip, mac });
        }
        let mut bed = Bed {
            bridge: bridge(&net),
            objects: Objects::default(),
            pods,
            net,
        };
        for o in cluster().into_iter().chain(objects) {
            bed.apply(&o);
        }
        bed
    }

    fn kind(o: &Value) -> &'static dyn Kind {
        kind_of(
            o["kind"].as_str().unwrap(),
            o["apiVersion"].as_str().unwrap(),
        )
        .unwrap()
    }

    /// Store (or replace) an object, then compile every policy again.
    fn apply(&mut self, o: &Value) {
        let kind = Bed::kind(o);
        let (key, spec) = kind.read(o).unwrap();
        let id = match self.objects.get(&key) {
            Some(s) => s.id,
            None => self.objects.free_id(key.kind).unwrap(),
        };
        let stored = Stored {
            spec,
            source: "test".into(),
            id,
        };
        self.objects.put(key, Some(stored));
        self.compile_all();
    }

    fn delete(&mut self, o: &Value) {
        let (key, _) = Bed::kind(o).read(o).unwrap();
        let owner = self.objects.get(&key).map(|s| Bed::kind(o).owner(s));
        self.objects.put(key, None);
        if let Some(owner) = owner {
            self.bridge.set_owned(owner, vec![], vec![], 0).unwrap();
        }
        self.compile_all();
    }

    fn node(&self) -> NodeCtx<'_> {
        NodeCtx {
            name: "n1",
            local: Some(&self.net),
            node_ip: Some(Ipv4Addr::new(192, 168, 1, 1)),
            zone: None,
            pods: &self.pods,
        }
    }

    fn compile_all(&mut self) {
        let np = KINDS
            .iter()
            .find(|k| k.info().kind == super::super::NETWORK_POLICY_KIND)
            .unwrap();
        let policies: Vec<(ObjectKey, Stored)> = self
            .objects
            .of_kind(super::super::NETWORK_POLICY_KIND, None)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut sets = Vec::new();
        for (k, s) in &policies {
            let c = np.compile(&self.node(), &self.objects, k, s);
            sets.push((np.owner(s), c.rules));
        }
        for (owner, rules) in sets {
            self.bridge.set_owned(owner, rules, vec![], 0).unwrap();
        }
    }

    /// What the first packet of a new connection `from` -> `to` gets: `allow` (it
    /// leaves by a port) or `deny`.
    fn verdict(&self, in_port: u32, from: &str, to: &str, proto: &str, port: u16) -> &'static str {
        let to_mac = if to.starts_with("10.244.1.") {
            // Same node: switched to the destination Pod's MAC.
            MacAddr::for_ipv4(to.parse().unwrap())
        } else {
            self.net.gateway_mac()
        };
        let from_mac = if in_port == 1 {
            self.net.gateway_mac()
        } else {
            MacAddr::for_ipv4(from.parse().unwrap())
        };
        let packet = format!(
            "in_port={in_port},{proto},dl_src={from_mac},dl_dst={to_mac},nw_src={from},nw_dst={to},tp_src=40000,tp_dst={port}"
        );
        let a = actions_in(&self.bridge, &packet, "+trk+new");
        if std::env::var_os("TRACE_VERDICT").is_some() {
            let m = vswitch_proto::text::parse_match(&packet, &vswitch_proto::text::NoPortNames)
                .unwrap();
            let first = self.bridge.trace(&m.flow, 0);
            let s = vswitch_proto::text::parse_match(
                "ct_state=+trk+new",
                &vswitch_proto::text::NoPortNames,
            )
            .unwrap();
            if let Some(k) = first.recirculated(s.flow.ct_state()) {
                eprintln!(
                    "{}",
                    self.bridge
                        .trace(&k, 0)
                        .display(&vswitch_proto::text::NoPortNames)
                );
            }
        }
        if a == "drop" { "deny" } else { "allow" }
    }

    /// Pod x/a to Pod x/b (both local).
    fn a_to_b(&self, proto: &str, port: u16) -> &'static str {
        self.verdict(2, "10.244.1.2", "10.244.1.3", proto, port)
    }
}

#[test]
fn without_policy_everything_is_allowed() {
    let b = Bed::new(vec![]);
    assert_eq!(b.a_to_b("tcp", 80), "allow");
    assert_eq!(b.verdict(3, "10.244.1.3", "10.244.1.2", "udp", 53), "allow");
}

#[test]
fn default_deny_ingress_isolates_every_pod_of_the_namespace_but_not_from_the_node() {
    let b = Bed::new(vec![policy("x", "deny", json!({"podSelector": {}}))]);
    assert_eq!(b.a_to_b("tcp", 80), "deny");
    assert_eq!(b.verdict(3, "10.244.1.3", "10.244.1.2", "udp", 53), "deny");
    // From the node (the gateway, with the gateway's address): allowed.
    assert_eq!(b.verdict(1, "10.244.1.1", "10.244.1.3", "tcp", 80), "allow");
    // Something the node merely routed in (another source through the gateway): denied.
    assert_eq!(b.verdict(1, "192.0.2.7", "10.244.1.3", "tcp", 80), "deny");
    // Egress is not isolated: a Pod of x reaches the node.
    assert_eq!(b.verdict(2, "10.244.1.2", "10.244.1.1", "tcp", 22), "allow");
}

#[test]
fn a_pod_peer_on_a_port_allows_that_and_nothing_else() {
    let allow_a_80 = policy(
        "x",
        "web",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                         "ports": [{"port": 80}]}]}),
    );
    let b = Bed::new(vec![allow_a_80]);
    assert_eq!(b.a_to_b("tcp", 80), "allow");
    assert_eq!(b.a_to_b("tcp", 81), "deny");
    assert_eq!(b.a_to_b("udp", 80), "deny", "TCP is the default protocol");
    // a is not isolated: b reaches it.
    assert_eq!(b.verdict(3, "10.244.1.3", "10.244.1.2", "tcp", 80), "allow");
    // Flows: one deny, per rule the Pod, the peer, the port, the conjunction.
    let rules = b.bridge.owned_rules(CookieKind::NetworkPolicy.cookie(1));
    assert!(rules.len() < 12, "{rules:#?}");
}

#[test]
fn a_named_port_resolves_on_each_destination_and_allows_nothing_where_it_does_not() {
    let named = policy(
        "x",
        "named",
        json!({"podSelector": {},
            "ingress": [{"ports": [{"port": "http"}]}]}),
    );
    let b = Bed::new(vec![named]);
    // b's http is 8080; a's is 9090.
    assert_eq!(b.a_to_b("tcp", 8080), "allow");
    assert_eq!(b.a_to_b("tcp", 9090), "deny");
    assert_eq!(
        b.verdict(3, "10.244.1.3", "10.244.1.2", "tcp", 9090),
        "allow"
    );
    assert_eq!(
        b.verdict(3, "10.244.1.3", "10.244.1.2", "tcp", 8080),
        "deny"
    );
    // UDP "http" is no port of theirs.
    let udp = policy(
        "x",
        "named",
        json!({"podSelector": {},
            "ingress": [{"ports": [{"port": "http", "protocol": "UDP"}]}]}),
    );
    let mut b = b;
    b.apply(&udp);
    assert_eq!(b.a_to_b("udp", 8080), "deny");
    assert_eq!(b.a_to_b("tcp", 8080), "deny");
}

#[test]
fn egress_isolation_and_named_ports_at_the_destination() {
    let p = policy(
        "x",
        "out",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}),
    );
    let b = Bed::new(vec![p]);
    assert_eq!(b.a_to_b("tcp", 8080), "allow");
    assert_eq!(b.a_to_b("tcp", 80), "deny");
    // To the node: always.
    assert_eq!(b.verdict(2, "10.244.1.2", "10.244.1.1", "tcp", 22), "allow");
    assert_eq!(
        b.verdict(2, "10.244.1.2", "192.168.1.1", "tcp", 22),
        "allow"
    );
    // b is not selected.
    assert_eq!(b.verdict(3, "10.244.1.3", "10.244.1.2", "tcp", 80), "allow");
}

#[test]
fn ip_blocks_less_their_exceptions_and_port_ranges() {
    let p = policy(
        "x",
        "blocks",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                               "except": ["10.244.1.0/30"]}}],
                         "ports": [{"port": 80, "endPort": 90, "protocol": "UDP"}]}]}),
    );
    let b = Bed::new(vec![p]);
    // a is 10.244.1.2, inside the exception.
    assert_eq!(b.a_to_b("udp", 85), "deny");
    let mut b = b;
    b.apply(&policy(
        "x",
        "blocks",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                               "except": ["10.244.1.128/25"]}}],
                         "ports": [{"port": 80, "endPort": 90, "protocol": "UDP"}]}]}),
    ));
    for (port, want) in [
        (79, "deny"),
        (80, "allow"),
        (85, "allow"),
        (90, "allow"),
        (91, "deny"),
    ] {
        assert_eq!(b.a_to_b("udp", port), want, "port {port}");
    }
    assert_eq!(b.a_to_b("tcp", 85), "deny");
}

#[test]
fn namespace_and_pod_selectors_in_one_peer_are_anded() {
    // From Pods labelled a in namespaces labelled x: x/a is; nothing else.
    let and = policy(
        "x",
        "and",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                   "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    );
    let b = Bed::new(vec![and]);
    assert_eq!(
        b.a_to_b("tcp", 80),
        "deny",
        "x/a is not in a namespace labelled y"
    );
    let mut b = b;
    b.apply(&policy(
        "x",
        "and",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                  {"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    assert_eq!(b.a_to_b("tcp", 80), "allow", "two peers are ORed");
}

#[test]
fn a_label_change_moves_a_pod_in_and_out_of_a_policy() {
    let p = policy(
        "x",
        "web",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    );
    let mut b = Bed::new(vec![p]);
    assert_eq!(b.a_to_b("tcp", 80), "deny");
    let relabel = |role: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a", "role": role}},
        "status": {"phase": "Running", "podIP": "10.244.1.2"}})
    };
    b.apply(&relabel("client"));
    assert_eq!(b.a_to_b("tcp", 80), "allow");
    b.apply(&relabel("other"));
    assert_eq!(b.a_to_b("tcp", 80), "deny");
}

#[test]
fn policies_are_a_union_and_deleting_one_leaves_the_others() {
    let p80 = policy(
        "x",
        "p80",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
    );
    let p81 = policy(
        "x",
        "p81",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 81}]}]}),
    );
    let mut b = Bed::new(vec![p80.clone(), p81.clone()]);
    assert_eq!(b.a_to_b("tcp", 80), "allow");
    assert_eq!(b.a_to_b("tcp", 81), "allow");
    assert_eq!(b.a_to_b("tcp", 82), "deny");
    b.delete(&p80);
    assert_eq!(b.a_to_b("tcp", 80), "deny", "p81 still isolates");
    assert_eq!(b.a_to_b("tcp", 81), "allow");
    b.delete(&p81);
    assert_eq!(b.a_to_b("tcp", 80), "allow");
}

#[test]
fn replies_of_known_connections_pass_and_stray_invalid_packets_do_not() {
    let b = Bed::new(vec![policy("x", "deny", json!({"podSelector": {}}))]);
    let p = "in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:02,nw_src=10.244.1.3,nw_dst=10.244.1.2,tp_src=80,tp_dst=40000";
    assert_eq!(actions_in(&b.bridge, p, "+trk+est+rpl"), "2");
    // A packet of no connection from the node's gateway: only with the node's address.
    let gw = b.net.gateway_mac();
    let stray = format!(
        "in_port=1,tcp,dl_src={gw},dl_dst=0a:58:0a:f4:01:02,nw_src=192.0.2.9,nw_dst=10.244.1.2,tp_src=80,tp_dst=40000"
    );
    assert_eq!(actions_in(&b.bridge, &stray, "+trk+inv"), "drop");
    let node = stray.replace("192.0.2.9", "10.244.1.1");
    assert_eq!(actions_in(&b.bridge, &node, "+trk+inv"), "2");
}

#[test]
fn ranges_and_blocks_become_the_fewest_masks() {
    assert_eq!(port_masks(80, 80), vec![(80, 0xffff)]);
    assert_eq!(port_masks(0, 65535), vec![(0, 0)]);
    assert_eq!(port_masks(80, 83), vec![(80, 0xfffc)]);
    assert_eq!(port_masks(79, 81), vec![(79, 0xffff), (80, 0xfffe)]);
    let c = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
    assert_eq!(subtract(c("10.0.0.0/8"), &[]), vec![c("10.0.0.0/8")]);
    assert_eq!(subtract(c("10.0.0.0/8"), &[c("10.0.0.0/8")]), vec![]);
    assert_eq!(
        subtract(c("10.0.0.0/30"), &[c("10.0.0.1/32")]),
        vec![c("10.0.0.0/32"), c("10.0.0.2/31")]
    );
    let parts = subtract(c("10.0.0.0/8"), &[c("10.1.2.0/24"), c("10.200.0.0/16")]);
    for ip in [
        "10.0.0.1",
        "10.1.1.255",
        "10.1.3.0",
        "10.199.255.255",
        "10.201.0.0",
    ] {
        let ip: Ipv4Addr = ip.parse().unwrap();
        assert_eq!(parts.iter().filter(|p| p.contains(ip)).count(), 1, "{ip}");
    }
    for ip in ["10.1.2.7", "10.200.3.4", "11.0.0.0"] {
        let ip: Ipv4Addr = ip.parse().unwrap();
        assert!(!parts.iter().any(|p| p.contains(ip)), "{ip}");
    }
}

#[test]
fn an_allow_all_rule_and_another_policys_clause_on_the_same_pod_both_hold() {
    let p80 = policy(
        "x",
        "p80",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
    );
    let all = policy("x", "all", json!({"podSelector": {}, "ingress": [{}]}));
    let mut b = Bed::new(vec![p80.clone(), all.clone()]);
    assert_eq!(b.a_to_b("tcp", 81), "allow");
    assert_eq!(b.a_to_b("tcp", 80), "allow");
    b.delete(&all);
    assert_eq!(b.a_to_b("tcp", 81), "deny");
    assert_eq!(b.a_to_b("tcp", 80), "allow");
    b.apply(&all);
    b.delete(&p80);
    assert_eq!(b.a_to_b("udp", 81), "allow");
    assert_eq!(b.bridge.owner_conflicts(), 0);
}
