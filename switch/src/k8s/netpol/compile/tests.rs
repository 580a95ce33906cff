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
    /// Per policy owner, what its last compile or patch made.
    plans: std::collections::HashMap<u64, super::Plan>,
    /// Policies patched rather than compiled again.
    patched: usize,
}

impl Bed {
    fn new(objects: Vec<Value>) -> Bed {
        Bed::of(cluster().into_iter().chain(objects).collect())
    }

    /// A bed with these objects only.
    fn of(objects: Vec<Value>) -> Bed {
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
            plans: Default::default(),
            patched: 0,
        };
        for o in objects {
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
            audit: false,
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
            "in_port={in_port},{proto},dl_src={from_mac},dl_dst={to_mac},nw_src={from},nw_dst={to},nw_ttl=64,tp_src=40000,tp_dst={port}"
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

    /// A new connection from a Pod behind the tunnel (node 192.168.1.2) to a local Pod.
    fn verdict_from_remote(&self, from: &str, to: &str, proto: &str, port: u16) -> &'static str {
        let to_mac = MacAddr::for_ipv4(to.parse().unwrap());
        let from_mac = MacAddr::for_ipv4(from.parse().unwrap());
        let packet = format!(
            "in_port=9,tun_id=1,tun_src=192.168.1.2,{proto},dl_src={from_mac},dl_dst={to_mac},nw_src={from},nw_dst={to},nw_ttl=64,tp_src=40000,tp_dst={port}"
        );
        if actions_in(&self.bridge, &packet, "+trk+new") == "drop" {
            "deny"
        } else {
            "allow"
        }
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

// ---- the compiled flows against the API's semantics, for random policies -------------

mod model {
    //! What Kubernetes says a set of policies allows, evaluated directly on the typed
    //! objects (no flows): the reference the compiled flows are checked against.
    use super::super::super::{
        NETWORK_POLICY_KIND, Namespaces, Peer, Peers, PortMatch, Ports, Rule, policy_of,
    };
    use crate::k8s::pod::{Pod, pod_of};
    use crate::k8s::service::Protocol;
    use crate::k8s::{ObjectKey, Objects};
    use std::net::Ipv4Addr;

    pub struct End<'a> {
        pub key: &'a ObjectKey,
        pub pod: &'a Pod,
        pub ip: Ipv4Addr,
    }

    pub fn end<'a>(objects: &'a Objects, ip: Ipv4Addr) -> End<'a> {
        let key = objects
            .pods_with_ip(ip)
            .next()
            .expect("a Pod at that address");
        let pod = pod_of(&objects.get(key).unwrap().spec).unwrap();
        End { key, pod, ip }
    }

    fn peer_ok(objects: &Objects, policy_ns: &str, peers: &Peers, other: &End) -> bool {
        match peers {
            Peers::Any => true,
            Peers::Only(list) => list.iter().any(|p| match p {
                Peer::IpBlock(b) => b.contains(other.ip),
                Peer::Pods { namespaces, pods } => {
                    let ns_ok = match namespaces {
                        Namespaces::Policy => other.key.namespace == policy_ns,
                        Namespaces::Matching(sel) => {
                            sel.matches(&objects.namespace_labels(&other.key.namespace))
                        }
                    };
                    ns_ok && pods.matches(&other.pod.labels)
                }
            }),
        }
    }

    fn port_ok(ports: &Ports, dst: &End, proto: Protocol, port: u16) -> bool {
        match ports {
            Ports::Any => true,
            Ports::Only(list) => list.iter().any(|pp| {
                pp.protocol == proto
                    && match &pp.port {
                        PortMatch::Any => true,
                        PortMatch::Range { first, last } => (*first..=*last).contains(&port),
                        PortMatch::Named(n) => dst.pod.named_port(n, proto) == Some(port),
                    }
            }),
        }
    }

    /// Whether `subject`'s policies let the connection through in one direction
    /// (`ingress`: subject is the destination, `other` the source).
    pub fn allows(
        objects: &Objects,
        ingress: bool,
        subject: &End,
        other: &End,
        proto: Protocol,
        port: u16,
    ) -> bool {
        let mut isolated = false;
        for (k, s) in objects.of_kind(NETWORK_POLICY_KIND, Some(&subject.key.namespace)) {
            let p = policy_of(&s.spec).unwrap();
            if !p.pod_selector.matches(&subject.pod.labels) {
                continue;
            }
            let rules: Option<&[Rule]> = if ingress {
                p.ingress_rules()
            } else {
                p.egress_rules()
            };
            let Some(rules) = rules else { continue };
            isolated = true;
            let dst = if ingress { subject } else { other };
            if rules.iter().any(|r| {
                peer_ok(objects, &k.namespace, &r.peers, other)
                    && port_ok(&r.ports, dst, proto, port)
            }) {
                return true;
            }
        }
        !isolated
    }
}

mod random {
    use super::*;
    use proptest::prelude::*;

    fn selector() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({})),
            Just(json!({"matchLabels": {"app": "a"}})),
            Just(json!({"matchLabels": {"app": "b"}})),
            Just(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "c"]}]})
            ),
            Just(json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]})),
            Just(
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]})
            ),
            Just(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
        ]
    }

    fn ns_selector() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({})),
            Just(json!({"matchLabels": {"team": "red"}})),
            Just(json!({"matchLabels": {"kubernetes.io/metadata.name": "y"}})),
        ]
    }

    fn peer() -> impl Strategy<Value = Value> {
        prop_oneof![
            selector().prop_map(|s| json!({"podSelector": s})),
            ns_selector().prop_map(|n| json!({"namespaceSelector": n})),
            (ns_selector(), selector())
                .prop_map(|(n, s)| json!({"namespaceSelector": n, "podSelector": s})),
            prop_oneof![
                Just(json!({"ipBlock": {"cidr": "10.244.0.0/16"}})),
                Just(json!({"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.2/31"]}})),
                Just(json!({"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.3/32"]}})),
                Just(json!({"ipBlock": {"cidr": "10.244.2.0/25"}})),
                Just(json!({"ipBlock": {"cidr": "fd00::/8"}})),
            ],
        ]
    }

    fn port() -> impl Strategy<Value = Value> {
        let proto = prop_oneof![Just("TCP"), Just("UDP")];
        let which = prop_oneof![
            Just(json!(null)),
            Just(json!(80)),
            Just(json!("http")),
            Just(json!("dns")),
            Just(json!([80, 81])),
        ];
        (proto, which).prop_map(|(p, w)| match w {
            Value::Null => json!({"protocol": p}),
            Value::Array(r) => json!({"protocol": p, "port": r[0], "endPort": r[1]}),
            w => json!({"protocol": p, "port": w}),
        })
    }

    fn rule(peers_key: &'static str) -> impl Strategy<Value = Value> {
        (
            prop::option::of(prop::collection::vec(peer(), 0..3)),
            prop::option::of(prop::collection::vec(port(), 0..3)),
        )
            .prop_map(move |(peers, ports)| {
                let mut r = json!({});
                if let Some(p) = peers {
                    r[peers_key] = json!(p);
                }
                if let Some(p) = ports {
                    r["ports"] = json!(p);
                }
                r
            })
    }

    fn policy_spec() -> impl Strategy<Value = (String, Value)> {
        let types = prop_oneof![
            Just(None),
            Just(Some(json!(["Ingress"]))),
            Just(Some(json!(["Egress"]))),
            Just(Some(json!(["Ingress", "Egress"]))),
        ];
        (
            prop_oneof![Just("x"), Just("y")],
            selector(),
            types,
            prop::option::of(prop::collection::vec(rule("from"), 0..3)),
            prop::option::of(prop::collection::vec(rule("to"), 0..3)),
        )
            .prop_map(|(ns, sel, types, ingress, egress)| {
                let mut spec = json!({"podSelector": sel});
                if let Some(t) = types {
                    spec["policyTypes"] = t;
                }
                if let Some(i) = ingress {
                    spec["ingress"] = json!(i);
                }
                if let Some(e) = egress {
                    spec["egress"] = json!(e);
                }
                (ns.to_string(), spec)
            })
    }

    /// Namespaces x (team red) and y; local Pods x/a (.2) and y/b (.3), remote Pods
    /// x/c and y/d on node n2 (10.244.2.0/24 behind 192.168.1.2); names `http` and
    /// `dns` resolve differently on each.
    fn world() -> Vec<Value> {
        let pod = |ns: &str, n: &str, ip: &str, labels: Value, http: u16, dns: u16| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": n, "namespace": ns, "labels": labels},
                "spec": {"containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": http},
                    {"name": "dns", "containerPort": dns, "protocol": "UDP"}]}]},
                "status": {"phase": "Running", "podIP": ip}})
        };
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "x", "labels": {"team": "red"}}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
                "spec": {"podCIDR": "10.244.2.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}}),
            pod(
                "x",
                "a",
                "10.244.1.2",
                json!({"app": "a", "tier": "web"}),
                80,
                80,
            ),
            pod("y", "b", "10.244.1.3", json!({"app": "b"}), 81, 8080),
            pod("x", "c", "10.244.2.5", json!({"app": "c"}), 80, 81),
            pod(
                "y",
                "d",
                "10.244.2.6",
                json!({"app": "a", "tier": "db"}),
                8080,
                80,
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        /// Random policies over two local and two remote Pods: for every connection with
        /// a local end (TCP and UDP, three ports), the installed flows let it through
        /// exactly when the API's semantics say both local halves allow it.
        #[test]
        fn compiled_flows_decide_as_the_api_says(
            policies in prop::collection::vec(policy_spec(), 1..4)
        ) {
            let mut objects = world();
            for (i, (ns, spec)) in policies.iter().enumerate() {
                objects.push(policy(ns, &format!("p{i}"), spec.clone()));
            }
            let mut b = Bed::of(vec![]);
            let remote = crate::k8s::node::RemoteNode {
                cidr: "10.244.2.0/24".parse().unwrap(),
                node_ip: Ipv4Addr::new(192, 168, 1, 2),
            };
            let rules = crate::k8s::node::remote_rules(
                &b.net,
                TunnelNet { port: 9, vni: 1 },
                &remote,
            );
            b.bridge.set_owned(CookieKind::RemoteNode.cookie(1), rules, vec![], 0).unwrap();
            for o in &objects {
                b.apply(o);
            }
            let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
            let (a, bb, c, d) = ("10.244.1.2", "10.244.1.3", "10.244.2.5", "10.244.2.6");
            let local = |s: &str| s.starts_with("10.244.1.");
            let pairs = [(a, bb), (bb, a), (a, c), (bb, d), (c, a), (d, bb), (c, bb), (a, d)];
            for (from, to) in pairs {
                for (proto, proto_name) in [(Protocol::Tcp, "tcp"), (Protocol::Udp, "udp")] {
                    for port in [80u16, 81, 8080] {
                        let src = model::end(&b.objects, ip(from));
                        let dst = model::end(&b.objects, ip(to));
                        let egress = !local(from)
                            || model::allows(&b.objects, false, &src, &dst, proto, port);
                        let ingress = !local(to)
                            || model::allows(&b.objects, true, &dst, &src, proto, port);
                        let want = if egress && ingress { "allow" } else { "deny" };
                        let got = if local(from) {
                            b.verdict(from.trim_start_matches("10.244.1.").parse::<u32>().unwrap(), from, to, proto_name, port)
                        } else {
                            b.verdict_from_remote(from, to, proto_name, port)
                        };
                        prop_assert_eq!(
                            got, want,
                            "{} -> {} {}/{} with {:#?}", from, to, proto_name, port, policies
                        );
                    }
                }
            }
        }
    }
}

mod incremental {
    //! The daemon compiles a policy again only when an object it names changes (the
    //! kinds' `related`): after any sequence of changes, every policy's rules are what
    //! compiling it from scratch gives.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        PodLabels(usize, usize),
        /// A Pod, its labels, its address (of [`ADDRESSES`]), its `http` port.
        PodAt(usize, usize, usize, u16),
        PodGone(usize),
        NsLabels(usize, usize),
        Policy(usize, usize),
        PolicyGone(usize),
    }

    const LABELS: [&str; 4] = [
        r#"{"app": "a"}"#,
        r#"{"app": "b", "tier": "web"}"#,
        r#"{"tier": "db"}"#,
        r#"{}"#,
    ];
    const PODS: [(&str, &str, &str); 6] = [
        ("x", "a", "10.244.1.2"),
        ("y", "b", "10.244.1.3"),
        ("x", "c", "10.244.2.5"),
        ("y", "d", "10.244.2.6"),
        ("x", "e", "10.244.2.7"),
        ("x", "f", "10.244.2.8"),
    ];
    const SPACES: [&str; 2] = ["x", "y"];

    fn policy_spec(i: usize) -> Value {
        [
            json!({"podSelector": {"matchLabels": {"app": "a"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}]}]}),
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}],
                            "ports": [{"port": "http"}]}]}),
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}},
                                       "podSelector": {"matchLabels": {"app": "b"}}}],
                             "ports": [{"port": "http"}, {"port": 80, "endPort": 90}]}]}),
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16"}}],
                            "ports": [{"port": "http"}]}]}),
            json!({"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": "http"}]}]}),
            // Two peers that may choose one Pod, and an ipBlock of exactly one Pod.
            json!({"podSelector": {},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}},
                                      {"podSelector": {"matchLabels": {"app": "b"}}},
                                      {"ipBlock": {"cidr": "10.244.2.5/32"}}],
                             "ports": [{"port": "http"}, {"port": 8080}]}],
                "egress": [{"to": [{"namespaceSelector": {},
                                    "podSelector": {"matchExpressions":
                                        [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}],
                            "ports": [{"port": 53, "protocol": "UDP"}]}]}),
            json!({"podSelector": {"matchLabels": {"app": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]},
                            {"from": [{"podSelector": {"matchExpressions":
                                        [{"key": "app", "operator": "Exists"}]}}]}]}),
        ][i]
            .clone()
    }

    fn pod(i: usize, labels: usize) -> Value {
        pod_at(i, labels, Some(PODS[i].2), 80 + i as u16)
    }

    /// Addresses a Pod may move to: none yet (a new Pod), the local Pods' (bound by
    /// address), another node's, one outside every Pod network.
    const ADDRESSES: [Option<&str>; 5] = [
        None,
        Some("10.244.1.2"),
        Some("10.244.1.3"),
        Some("10.244.2.9"),
        Some("172.16.0.4"),
    ];

    /// Pod `i` with its labels, address (`None`: pending, none yet) and `http` port.
    fn pod_at(i: usize, labels: usize, ip: Option<&str>, http: u16) -> Value {
        let (ns, name, _) = PODS[i];
        let labels: Value = serde_json::from_str(LABELS[labels]).unwrap();
        let status = match ip {
            Some(ip) => json!({"phase": "Running", "podIP": ip}),
            None => json!({"phase": "Pending"}),
        };
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": http}]}]},
            "status": status})
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..6usize, 0..4usize).prop_map(|(p, l)| Op::PodLabels(p, l)),
            3 => (0..6usize, 0..4usize, 0..ADDRESSES.len(), 80..82u16)
                .prop_map(|(p, l, a, h)| Op::PodAt(p, l, a, h)),
            1 => (0..6usize).prop_map(Op::PodGone),
            2 => (0..2usize, 0..2usize).prop_map(|(n, l)| Op::NsLabels(n, l)),
            3 => (0..3usize, 0..7usize).prop_map(|(n, s)| Op::Policy(n, s)),
            1 => (0..3usize).prop_map(Op::PolicyGone),
        ]
    }

    impl Bed {
        /// As the daemon puts an object: the objects it is related to before and after
        /// compiled again, and itself if it owns rules.
        fn put(&mut self, o: &Value, gone: bool) {
            let kind = Bed::kind(o);
            let (key, spec) = kind.read(o).unwrap();
            let old = self.objects.get(&key).cloned();
            let id = old
                .as_ref()
                .map_or_else(|| self.objects.free_id(key.kind).unwrap(), |s| s.id);
            let new = (!gone).then(|| Stored {
                spec,
                source: "test".into(),
                id,
            });
            let mut related: Vec<ObjectKey> = match (&old, &new) {
                (Some(o), Some(n)) => kind.related_change(&self.objects, &key, &o.spec, &n.spec),
                _ => old
                    .iter()
                    .chain(&new)
                    .flat_map(|s| kind.related(&self.objects, &key, &s.spec))
                    .collect(),
            };
            self.objects.put(key.clone(), new.clone());
            if key.kind == super::super::super::NETWORK_POLICY_KIND {
                related.push(key.clone());
                if let (None, Some(o)) = (&new, &old) {
                    self.bridge
                        .set_owned(kind.owner(o), vec![], vec![], 0)
                        .unwrap();
                }
            }
            related.sort();
            related.dedup();
            // A Pod's change: the policies are patched where they can be, as the daemon
            // does (`daemon/objects.rs`).
            let labels_only = crate::k8s::netpol::pod_change(
                &key,
                old.as_ref().map(|o| &o.spec),
                new.as_ref().map(|n| &n.spec),
            );
            for k in related {
                let Some(s) = self.objects.get(&k).cloned() else {
                    continue;
                };
                let kind = kind_of_key(&k);
                let owner = kind.owner(&s);
                if let (Some(change), Some(plan)) = (&labels_only, self.plans.get(&owner))
                    && let Some((add, remove, next)) = crate::k8s::netpol::patch_policy(
                        &self.node(),
                        &self.objects,
                        &k,
                        &s,
                        plan,
                        change,
                    )
                {
                    self.bridge.patch_owned(owner, add, remove, 0).unwrap();
                    self.plans.insert(owner, next);
                    self.patched += 1;
                    continue;
                }
                let c = kind.compile(&self.node(), &self.objects, &k, &s);
                self.bridge.set_owned(owner, c.rules, vec![], 0).unwrap();
                match c.plan {
                    Some(p) => self.plans.insert(owner, (*p).clone()),
                    None => self.plans.remove(&owner),
                };
            }
        }
    }

    fn kind_of_key(k: &ObjectKey) -> &'static dyn Kind {
        crate::k8s::kind_named(k.kind).unwrap()
    }

    /// Every policy compiled from scratch, into a bridge of its own: the rules its
    /// owner has in the bed's bridge must be those (as sets: a patch puts a new clause
    /// after the rest).
    fn as_compiled_from_scratch(b: &Bed) -> Result<(), String> {
        let mut fresh = crate::ofproto::Bridge::new("fresh");
        let sorted = |mut v: Vec<crate::ofproto::OwnedRule>| {
            v.sort_by_cached_key(|r| format!("{r:?}"));
            v
        };
        for (k, s) in b
            .objects
            .of_kind(super::super::super::NETWORK_POLICY_KIND, None)
        {
            let kind = kind_of_key(k);
            let c = kind.compile(&b.node(), &b.objects, k, s);
            fresh.set_owned(kind.owner(s), c.rules, vec![], 0).unwrap();
            let (have, want) = (
                sorted(b.bridge.owned_rules(kind.owner(s))),
                sorted(fresh.owned_rules(kind.owner(s))),
            );
            if have != want {
                return Err(format!("{k}: has {have:?}, compiles to {want:?}"));
            }
        }
        Ok(())
    }

    fn bed_with_pods() -> Bed {
        let mut b = Bed::of(vec![]);
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
            "spec": {"podCIDR": "10.244.2.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}});
        b.put(&node, false);
        for i in 0..6 {
            b.put(&pod(i, i % 4), false);
        }
        b
    }

    /// A Pod that joins and leaves a peer list others are in: patched, one clause each
    /// time, as compiling again would have it.
    #[test]
    fn a_pod_moving_in_and_out_of_a_peer_list_is_patched() {
        let mut b = bed_with_pods();
        b.put(&policy("x", "p0", policy_spec(5)), false);
        b.put(&policy("x", "p1", policy_spec(0)), false);
        let before = b.patched;
        // x/e: tier web (a peer of both), then db (of neither), then web again.
        for labels in [1, 2, 1, 2] {
            b.put(&pod(4, labels), false);
            as_compiled_from_scratch(&b).unwrap();
        }
        assert!(
            b.patched >= before + 4,
            "patched {} times",
            b.patched - before
        );
    }

    /// A Pod as the API server shows it start (created without an address, then given
    /// one) and end (deleted): the policies naming it are patched each time, one clause,
    /// as compiling again would have it.
    #[test]
    fn a_peer_pod_starting_and_ending_is_patched() {
        let mut b = bed_with_pods();
        b.put(&policy("x", "p0", policy_spec(5)), false);
        b.put(&policy("x", "p1", policy_spec(0)), false);
        b.put(&pod(4, 0), true);
        let before = b.patched;
        // x/e, tier web: a peer of both.
        for ip in [None, Some("10.244.2.9")] {
            b.put(&pod_at(4, 1, ip, 84), false);
            as_compiled_from_scratch(&b).unwrap();
        }
        b.put(&pod(4, 1), true);
        as_compiled_from_scratch(&b).unwrap();
        assert!(
            b.patched >= before + 4,
            "patched {} times",
            b.patched - before
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn incremental_compiles_equal_compiling_everything_again(
            ops in prop::collection::vec(op(), 1..40)
        ) {
            let mut b = bed_with_pods();
            for op in &ops {
                match *op {
                    Op::PodLabels(p, l) => b.put(&pod(p, l), false),
                    Op::PodAt(p, l, a, h) => b.put(&pod_at(p, l, ADDRESSES[a], h), false),
                    Op::PodGone(p) => b.put(&pod(p, 0), true),
                    Op::NsLabels(n, l) => {
                        let labels = if l == 0 { json!({"team": "red"}) } else { json!({}) };
                        b.put(&json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": SPACES[n], "labels": labels}}), false)
                    }
                    Op::Policy(n, s) => b.put(&policy(SPACES[n % 2], &format!("p{n}"), policy_spec(s)), false),
                    Op::PolicyGone(n) => {
                        let p = policy(SPACES[n % 2], &format!("p{n}"), json!({"podSelector": {}}));
                        if b.objects.get(&Bed::kind(&p).read(&p).unwrap().0).is_some() {
                            b.put(&p, true);
                        }
                    }
                }
            }
            let fresh = as_compiled_from_scratch(&b);
            prop_assert!(fresh.is_ok(), "{} after {:?}", fresh.unwrap_err(), ops);
        }
    }
}

#[test]
fn every_pod_is_not_every_node_and_a_stale_object_is_not_a_cni_pod() {
    // All Pods of the cluster: the Pod networks less their gateways (the nodes).
    let p = policy(
        "x",
        "all",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    let mut b = Bed::new(vec![p]);
    let remote = crate::k8s::node::RemoteNode {
        cidr: "10.244.2.0/24".parse().unwrap(),
        node_ip: Ipv4Addr::new(192, 168, 1, 2),
    };
    let rules = crate::k8s::node::remote_rules(&b.net, TunnelNet { port: 9, vni: 1 }, &remote);
    b.bridge
        .set_owned(CookieKind::RemoteNode.cookie(1), rules, vec![], 0)
        .unwrap();
    b.apply(
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
        "spec": {"podCIDR": "10.244.2.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}}),
    );
    assert_eq!(
        b.verdict_from_remote("10.244.2.5", "10.244.1.3", "tcp", 80),
        "allow"
    );
    assert_eq!(
        b.verdict_from_remote("10.244.2.1", "10.244.1.3", "tcp", 80),
        "deny"
    );
    // A CNI Pod bound by name is not taken over by another object with its address.
    let mut pods = LocalPods::new();
    let ip = Ipv4Addr::new(10, 244, 1, 7);
    let l = LocalPod {
        port: 7,
        ip,
        mac: MacAddr::for_ipv4(ip),
    };
    pods.insert(Some(("prod".into(), "db".into())), l);
    assert_eq!(pods.bound("prod", "db", None), Some(&l));
    assert_eq!(pods.bound("dev", "old", Some(ip)), None);
    let hand = LocalPod {
        port: 8,
        ip: Ipv4Addr::new(10, 244, 1, 8),
        mac: l.mac,
    };
    pods.insert(None, hand);
    assert_eq!(pods.bound("dev", "any", Some(hand.ip)), Some(&hand));
    assert_eq!(
        pods.remove_port(7),
        Some((ip, Some(("prod".into(), "db".into()))))
    );
    assert_eq!(pods.bound("prod", "db", None), None);
}
