//! The daemon's own Kubernetes pipeline (`vswitch::k8s`), for tests and benchmarks: the
//! rules one node's switch installs, made by the same compilers, for a node with Pod CIDR
//! 10.244.1.0/24, its gateway `gw0` on port 1 (10.244.1.1), its tunnel on port 2 (VNI 1),
//! Pod `i` (for i in 0..pods) on port 3+i with IP 10.244.1.(3+i) and the MAC the switch
//! gives it (`0a:58:` and the IP), and one remote node, 10.244.2.0/24 behind 192.168.100.2.
//! [`add_services`] adds ClusterIP Services over endpoints on both nodes, [`add_policies`]
//! NetworkPolicies over the local Pods and remote ones.

use serde_json::json;
use std::net::Ipv4Addr;
use vswitch::k8s::local::{self, LocalNet, LocalPod, LocalPods, TunnelNet};
use vswitch::k8s::namespace::NAMESPACE;
use vswitch::k8s::netpol::NETWORK_POLICY;
use vswitch::k8s::node::{RemoteNode, remote_rules};
use vswitch::k8s::pipeline::CookieKind;
use vswitch::k8s::pod::POD;
use vswitch::k8s::service::{
    ENDPOINT_SLICE_KIND, Endpoint, Protocol, SERVICE, Service, ServicePort, ServiceType, Slice,
    SlicePort, TargetPort, service_key,
};
use vswitch::k8s::{Kind, NodeCtx, ObjectKey, Objects, Spec, Stored};
use vswitch::ofproto::{Bridge, OwnedRule, PortDesc};
use vswitch_proto::flow::Flow;
use vswitch_proto::net::MacAddr;
use vswitch_proto::text::{self, NoPortNames};

pub const GW_PORT: u32 = 1;
pub const TUN_PORT: u32 = 2;
pub const VNI: u32 = 1;
pub const GW_MAC: &str = "0a:58:0a:f4:01:01";
pub const REMOTE_NODE_IP: &str = "192.168.100.2";
/// This node's name (what its Pods' endpoints give as `nodeName`) and the remote node's.
pub const NODE_NAME: &str = "node-1";
pub const REMOTE_NODE_NAME: &str = "node-2";
/// This node's own address, the tunnel's local end.
pub const NODE_IP: &str = "192.168.100.1";

pub fn pod_port(i: u32) -> u32 {
    3 + i
}

pub fn pod_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, (3 + i) as u8)
}

pub fn pod_mac(i: u32) -> String {
    MacAddr::for_ipv4(pod_ip(i)).to_string()
}

/// The node's Pod network, as the daemon's compilers see it (Services' included).
pub fn net() -> LocalNet {
    LocalNet {
        cidr: "10.244.1.0/24".parse().expect("CIDR"),
        gateway_port: GW_PORT,
        mtu: 1450,
        tunnel: Some(TunnelNet {
            port: TUN_PORT,
            vni: VNI,
        }),
        service_cidr: Some("10.96.0.0/12".parse().expect("CIDR")),
    }
}

/// Every owner's rules: (owner cookie, rules), as the daemon installs them.
pub fn owners(pods: u32) -> Vec<(u64, Vec<OwnedRule>)> {
    let n = net();
    let mut out = vec![(CookieKind::Node.cookie(0), local::node_rules(&n))];
    for i in 0..pods {
        let p = LocalPod {
            port: pod_port(i),
            ip: pod_ip(i),
            mac: MacAddr::for_ipv4(pod_ip(i)),
        };
        out.push((
            CookieKind::Pod.cookie(pod_port(i) as u64),
            local::pod_rules(&n, &p),
        ));
    }
    let remote = RemoteNode {
        cidr: "10.244.2.0/24".parse().expect("CIDR"),
        node_ip: REMOTE_NODE_IP.parse().expect("IP"),
    };
    out.push((
        CookieKind::RemoteNode.cookie(1),
        remote_rules(&n, n.tunnel.expect("tunnel"), &remote),
    ));
    out
}

/// A bridge holding the pipeline for `pods` local Pods (at most 250), with its ports.
pub fn bridge(pods: u32) -> Bridge {
    let mut b = Bridge::new("br0");
    b.set_ports(
        (1..=2 + pods)
            .map(|no| PortDesc {
                no,
                name: port_name(no),
                no_flood: no != GW_PORT,
            })
            .collect(),
    );
    for (owner, rules) in owners(pods) {
        b.set_owned(owner, rules, vec![], 0)
            .expect("the daemon's own rules");
    }
    b
}

/// The name of port `no` in scripts: `gw0`, `tun0`, `pod0`...
pub fn port_name(no: u32) -> String {
    match no {
        GW_PORT => "gw0".into(),
        TUN_PORT => "tun0".into(),
        n => format!("pod{}", n - 3),
    }
}

/// The same rules as flow lines (each with its owner's cookie), for pipeline scripts.
pub fn flows(pods: u32) -> Vec<String> {
    owners(pods)
        .into_iter()
        .flat_map(|(owner, rules)| {
            rules
                .into_iter()
                .map(move |r| text::display_flow(&r.to_spec(owner), &NoPortNames, None).to_string())
        })
        .collect()
}

/// A ClusterIP Service of [`add_services`].
#[derive(Clone, Debug)]
pub struct ClusterIp {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Its endpoints' addresses (each listens on [`ENDPOINT_PORT`]).
    pub endpoints: Vec<Ipv4Addr>,
}

/// The port every endpoint of [`add_services`] listens on.
pub const ENDPOINT_PORT: u16 = 8080;

/// Endpoint `j` of Service `i`: even ones on this node (one of its `pods` Pods), odd
/// ones on the remote node.
fn endpoint(i: u32, j: u32, per_service: u32, pods: u32) -> (Ipv4Addr, &'static str) {
    if j.is_multiple_of(2) {
        (pod_ip((i + j) % pods), NODE_NAME)
    } else {
        let host = 2 + (i * per_service + j) % 250;
        (Ipv4Addr::new(10, 244, 2, host as u8), REMOTE_NODE_NAME)
    }
}

/// Add `n` ClusterIP Services to `bridge` (one of [`bridge`]`(pods)`), each one TCP port
/// (80, 443, 8080 or 9090 in turn) with `endpoints` ready endpoints in one EndpointSlice,
/// the Services from 10.96.0.10 up. Each is stored as `apply -f` stores it, compiled by
/// the Service kind and installed as the daemon installs an object's rules and groups
/// (its own owner, `set_owned`).
pub fn add_services(bridge: &mut Bridge, pods: u32, n: u32, endpoints: u32) -> Vec<ClusterIp> {
    let net = net();
    let node = NodeCtx {
        name: NODE_NAME,
        local: Some(&net),
        node_ip: Some(NODE_IP.parse().expect("IP")),
        zone: None,
        pods: &vswitch::k8s::local::NO_PODS,
        audit: false,
    };
    let mut objects = Objects::default();
    let first = u32::from(Ipv4Addr::new(10, 96, 0, 10));
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (ip, port) = (
            Ipv4Addr::from(first + i),
            [80, 443, 8080, 9090][i as usize % 4],
        );
        let name = format!("svc-{i}");
        let svc = Service {
            service_type: ServiceType::ClusterIp,
            cluster_ips: vec![ip],
            headless: false,
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port,
                target_port: TargetPort::Number(ENDPOINT_PORT),
                node_port: None,
            }],
            affinity_timeout: None,
            external_ips: vec![],
            lb_ips: vec![],
            external_local: false,
            internal_local: false,
            health_check_node_port: None,
            source_ranges: vec![],
            proxy_labels: vec![],
        };
        let eps: Vec<(Ipv4Addr, &str)> = (0..endpoints)
            .map(|j| endpoint(i, j, endpoints, pods))
            .collect();
        let slice = Slice {
            service: Some(name.clone()),
            address_type: "IPv4".into(),
            ports: vec![SlicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: Some(ENDPOINT_PORT),
            }],
            endpoints: eps
                .iter()
                .map(|&(ip, node)| Endpoint {
                    addresses: vec![ip],
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: Some(node.into()),
                    zone: None,
                    hints: vec![],
                    node_hints: vec![],
                })
                .collect(),
        };
        let key = service_key("bench", &name);
        let slice_key = ObjectKey {
            kind: ENDPOINT_SLICE_KIND,
            namespace: "bench".into(),
            name: format!("{name}-x7k2p"),
        };
        for (k, spec) in [(&key, Spec::Service(svc)), (&slice_key, Spec::Slice(slice))] {
            let id = objects.free_id(k.kind).expect("an id");
            let stored = Stored {
                spec,
                source: "manifest".into(),
                id,
            };
            objects.put(k.clone(), Some(stored));
        }
        let stored = objects.get(&key).expect("stored");
        let c = SERVICE.compile(&node, &objects, &key, stored);
        // Its port's rule to the group, and the cluster IP's refusal of other ports.
        assert_eq!((c.rules.len(), c.groups.len()), (2, 1), "{key}");
        bridge
            .set_owned(SERVICE.owner(stored), c.rules, c.groups, 0)
            .expect("a Service's rules");
        out.push(ClusterIp {
            ip,
            port,
            endpoints: eps.into_iter().map(|(ip, _)| ip).collect(),
        });
    }
    out
}

/// The flow of the first packet (a SYN) of a TCP connection from local Pod `pod`, source
/// port `sport`, to `ip:port`, as the Pod's port hands it to the switch.
pub fn syn_from_pod(pod: u32, ip: Ipv4Addr, port: u16, sport: u16) -> Flow {
    let line = format!(
        "in_port={},tcp,dl_src={},dl_dst={GW_MAC},nw_src={},nw_dst={ip},nw_ttl=64,tp_src={sport},tp_dst={port},tcp_flags=0x002",
        pod_port(pod),
        pod_mac(pod),
        pod_ip(pod),
    );
    text::parse_match(&line, &NoPortNames)
        .expect("a packet's flow")
        .flow
}

/// The apps of [`add_policies`]: Pod `i` (local or remote) is labelled `app=app{i % APPS}`.
pub const POLICY_APPS: u32 = 100;

/// A new connection [`add_policies`]' policies allow: from local Pod `from` to local Pod
/// `to` on TCP port `port`.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    pub from: u32,
    pub to: u32,
    pub port: u16,
}

/// Add `n` NetworkPolicies to `bridge` (one of [`bridge`]`(pods)`, at most 100 Pods) over
/// its `pods` local Pods and 1,000 remote ones (10.245.0.0/16, on [`REMOTE_NODE_NAME`]),
/// all in namespace `bench`, Pod `i` labelled `app=app{i % 100}` (local Pod `i` is Pod
/// `i`). Policy `j` selects `app{j % 100}`, isolating it both ways: ingress from
/// `app{(j + 1) % 100}` on TCP `1000 + j`, egress to `app{(j + 99) % 100}` on TCP `999 +
/// j`. So a local Pod is selected by about `n / 100` policies, and policies of apps with
/// no local Pod compile to nothing here. Everything is stored as `apply -f` stores it
/// (read by its kind), each policy compiled by the NetworkPolicy kind with the local
/// Pods bound by address, and installed as the daemon installs an object's rules (its
/// own owner, `set_owned`). Returns the connections between local Pods that a policy's
/// ingress rule and the next policy's egress rule allow (both Pods isolated).
pub fn add_policies(bridge: &mut Bridge, pods: u32, n: u32) -> Vec<Allowed> {
    assert!(pods <= POLICY_APPS, "one local Pod per app at most");
    let net = net();
    let mut locals = LocalPods::new();
    for i in 0..pods {
        locals.insert(
            None,
            LocalPod {
                port: pod_port(i),
                ip: pod_ip(i),
                mac: MacAddr::for_ipv4(pod_ip(i)),
            },
        );
    }
    let node = NodeCtx {
        name: NODE_NAME,
        local: Some(&net),
        node_ip: Some(NODE_IP.parse().expect("IP")),
        zone: None,
        pods: &locals,
        audit: false,
    };
    let mut objects = Objects::default();
    let store = |objects: &mut Objects, kind: &dyn Kind, obj: serde_json::Value| {
        let (key, spec) = kind.read(&obj).expect("a valid object");
        let id = objects.free_id(key.kind).expect("an id");
        let stored = Stored {
            spec,
            source: "manifest".into(),
            id,
        };
        objects.put(key.clone(), Some(stored));
        key
    };
    store(
        &mut objects,
        &NAMESPACE,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    );
    let pod = |name: String, ip: Ipv4Addr, i: u32, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench",
                         "labels": {"app": format!("app{}", i % POLICY_APPS)}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}})
    };
    for i in 0..pods {
        store(
            &mut objects,
            &POD,
            pod(format!("local-{i}"), pod_ip(i), i, NODE_NAME),
        );
    }
    for i in 0..1_000u32 {
        let k = i + 1;
        let ip = Ipv4Addr::new(10, 245, (k >> 8) as u8, k as u8);
        store(
            &mut objects,
            &POD,
            pod(format!("remote-{i}"), ip, i, REMOTE_NODE_NAME),
        );
    }
    let app = |j: u32| format!("app{}", j % POLICY_APPS);
    let keys: Vec<ObjectKey> = (0..n)
        .map(|j| {
            store(
                &mut objects,
                &NETWORK_POLICY,
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("np-{j}"), "namespace": "bench"},
                "spec": {"podSelector": {"matchLabels": {"app": app(j)}},
                         "policyTypes": ["Ingress", "Egress"],
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app(j + 1)}}}],
                                      "ports": [{"protocol": "TCP", "port": 1000 + j}]}],
                         "egress": [{"to": [{"podSelector": {"matchLabels": {"app": app(j + 99)}}}],
                                     "ports": [{"protocol": "TCP", "port": 999 + j}]}]}}),
            )
        })
        .collect();
    for key in &keys {
        let stored = objects.get(key).expect("stored");
        let c = NETWORK_POLICY.compile(&node, &objects, key, stored);
        bridge
            .set_owned(NETWORK_POLICY.owner(stored), c.rules, c.groups, 0)
            .expect("a policy's rules");
    }
    // Policy j allows app j+1 into app j on 1000 + j, policy j + 1 lets app j + 1 out
    // to app j on the same port.
    (0..n.saturating_sub(1))
        .filter(|j| (j % POLICY_APPS) + 1 < pods)
        .map(|j| Allowed {
            from: j % POLICY_APPS + 1,
            to: j % POLICY_APPS,
            port: (1000 + j) as u16,
        })
        .collect()
}
