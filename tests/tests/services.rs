//! End-to-end tests of Services (issue 12): Pods in namespaces reach a ClusterIP, their
//! new connections spread over the ready endpoints, replies come from the Service address,
//! endpoint changes apply to new connections. They need root (namespaces, TAPs): plain
//! `cargo test` reports them ignored.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use vswitch_tests::e2e::{Bg, Daemon, Netns, serial, show, unique};
use vswitch_tests::svc::{apply, exchanges, server};

const POD_CIDR: &str = "10.244.1.0/24";
const GATEWAY: &str = "10.244.1.1";
const VIP: &str = "10.96.0.10";
const CLIENT: &str = "10.244.1.50";
const ENDPOINTS: [&str; 3] = ["10.244.1.60", "10.244.1.61", "10.244.1.62"];
/// Listed, not ready, and no server behind it: never chosen while a ready one exists.
const NOT_READY: &str = "10.244.1.63";

fn require_root() {
    vswitch_tests::e2e::require_root(&["ip", "nsenter", "timeout", "python3"]);
}

fn add_pod(d: &Daemon, name: &str, ns: &Netns, ip: &str) {
    vswitch_tests::svc::add_pod(d, name, ns, ip, GATEWAY);
}

fn spread(ns: &Netns, proto: &str, n: u32) -> BTreeMap<String, u32> {
    exchanges(ns, VIP, proto, n)
}

/// Pearson's chi-square of `counts` against an even spread over `k` endpoints.
fn chi_square(counts: &BTreeMap<String, u32>, k: usize) -> f64 {
    let total: u32 = counts.values().sum();
    let expect = total as f64 / k as f64;
    let mut seen: Vec<f64> = counts.values().map(|&c| c as f64).collect();
    seen.resize(k, 0.0);
    seen.iter().map(|o| (o - expect).powi(2) / expect).sum()
}

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "type": "ClusterIP", "clusterIP": VIP, "clusterIPs": [VIP],
                  "selector": { "app": "web" },
                  "ports": [ { "name": "http", "port": 80, "protocol": "TCP", "targetPort": "http" },
                             { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353 } ] }
    })
}

fn slice(ready: &[&str], not_ready: &[&str]) -> Value {
    let ep = |ip: &&str, ready: bool| json!({ "addresses": [ip], "conditions": { "ready": ready }, "nodeName": "n1" });
    let endpoints: Vec<Value> = ready
        .iter()
        .map(|i| ep(i, true))
        .chain(not_ready.iter().map(|i| ep(i, false)))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "web-abcde", "namespace": "default",
                      "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "ports": [ { "name": "http", "port": 8080, "protocol": "TCP" },
                   { "name": "dns", "port": 5353, "protocol": "UDP" } ],
        "endpoints": endpoints
    })
}

/// A node with a switch, a client Pod and the three endpoint Pods, each running
/// [`server`]; dropped in order (servers, Pods, switch, node).
struct Bed {
    _servers: Vec<Bg>,
    eps: Vec<Netns>,
    client: Netns,
    d: Daemon,
    node: Netns,
}

impl Bed {
    fn new() -> Bed {
        Bed::with_flags(Netns::new(), &[])
    }

    /// A bed whose switch gets `extra` flags too, in node namespace `node`.
    fn with_flags(node: Netns, extra: &[&str]) -> Bed {
        let flags = [&["--pod-cidr", POD_CIDR, "--node-name", "n1"][..], extra].concat();
        let d = Daemon::start_in(&node, &flags);
        let client = Netns::new();
        add_pod(&d, "client", &client, CLIENT);
        let eps: Vec<Netns> = ENDPOINTS.iter().map(|_| Netns::new()).collect();
        let mut servers = Vec::new();
        for (i, (ns, ip)) in eps.iter().zip(ENDPOINTS).enumerate() {
            add_pod(&d, &format!("ep{i}"), ns, ip);
            servers.push(server(ns, ip, 100));
        }
        Bed {
            _servers: servers,
            eps,
            client,
            d,
            node,
        }
    }
}

/// A ClusterIP Service with three ready endpoints and a not-ready one: 300 TCP
/// connections and 300 UDP exchanges from a client Pod spread over the ready three (a
/// chi-square test), every answer from the Service's address; the node itself reaches it
/// too; an endpoint taken out of the slice leaves the rotation for new connections.
#[test]
#[ignore = "needs root"]
fn cluster_ip_spreads_new_connections_over_ready_endpoints() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (node, d, client) = (&bed.node, &bed.d, &bed.client);
    let idle = Netns::new();
    add_pod(d, "ep-not-ready", &idle, NOT_READY);
    apply(d, &[service(), slice(&ENDPOINTS, &[NOT_READY])]);
    std::thread::sleep(Duration::from_millis(500)); // the servers bind

    for proto in ["tcp", "udp"] {
        let got = spread(client, proto, 300);
        let answers: BTreeMap<String, u32> = got
            .iter()
            .filter(|(k, _)| ENDPOINTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(
            answers.values().sum::<u32>(),
            300,
            "{proto}: every exchange answered by a ready endpoint, from {VIP}: {got:?}\n{}",
            d.log_tail(20)
        );
        assert_eq!(got.len(), answers.len(), "{proto}: {got:?}");
        // Two degrees of freedom: 13.8 is the 0.1% point.
        let chi = chi_square(&answers, ENDPOINTS.len());
        assert!(
            chi < 13.8,
            "{proto}: uneven spread {answers:?} (chi2 {chi:.1})"
        );
    }
    // The node itself reaches the ClusterIP (its route to the Service CIDR goes to the
    // switch), answered from the Service address.
    let from_node = spread(node, "tcp", 30);
    assert_eq!(
        from_node
            .iter()
            .filter(|(k, _)| ENDPOINTS.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum::<u32>(),
        30,
        "from the node: {from_node:?}\n{}",
        node.exec_ok(&["ip", "route"])
    );
    assert_eq!(from_node.len(), 3, "from the node: {from_node:?}");
    let svc = d.ctl_ok(&["get", "svc"]);
    assert!(svc.contains(VIP) && svc.contains("80/TCP,53/UDP"), "{svc}");
    // `-o wide`: each endpoint with the new connections it was given (per port).
    let wide = d.ctl_ok(&["get", "svc", "-o", "wide"]);
    for ep in ENDPOINTS {
        assert!(wide.contains(&format!("{ep}:8080 (")), "{wide}");
    }
    assert!(!wide.contains(&format!("{NOT_READY}:")), "{wide}");
    assert!(
        !wide.contains(":8080 (0)"),
        "every endpoint got connections: {wide}"
    );

    // One endpoint leaves the slice: new connections go to the other two only.
    apply(d, &[slice(&ENDPOINTS[..2], &[NOT_READY])]);
    for proto in ["tcp", "udp"] {
        let got = spread(client, proto, 60);
        assert_eq!(
            got.iter()
                .filter(|(k, _)| ENDPOINTS[..2].contains(&k.as_str()))
                .map(|(_, v)| v)
                .sum::<u32>(),
            60,
            "{proto} after the endpoint left: {got:?}"
        );
    }
}

/// A Service without endpoints refuses at once, as kube-proxy's REJECT rule does: a TCP
/// connect fails with ECONNREFUSED (a reset) and a connected UDP socket gets
/// ECONNREFUSED (an ICMP port unreachable), well before any timeout; the switch counts
/// what it sent. Once endpoints appear the same Service answers.
#[test]
#[ignore = "needs root"]
fn a_service_without_endpoints_refuses_at_once() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    apply(d, &[service()]);
    std::thread::sleep(Duration::from_millis(500));
    let code = format!(
        r#"
import socket, time
for proto in ("tcp", "udp"):
    t = time.monotonic()
    try:
        if proto == "tcp":
            socket.create_connection(("{VIP}", 80), timeout=5)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
            s.connect(("{VIP}", 53)); s.send(b"?"); s.recv(100)
        got = "answered"
    except Exception as e:
        got = type(e).__name__
    print(proto, got, round(time.monotonic() - t, 3))
"#
    );
    let out = client.exec(&["timeout", "30", "python3", "-c", &code]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for proto in ["tcp", "udp"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(proto))
            .unwrap_or_else(|| panic!("no {proto} line: {text}"));
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[1], "ConnectionRefusedError", "{proto}: {text}");
        let secs: f64 = f[2].parse().unwrap();
        assert!(secs < 1.0, "{proto} refused only after {secs} s: {text}");
    }
    let shown = d.ctl_json(&["show"]);
    let sent = vswitch_tests::e2e::counter(&shown["datapath"], "reject.sent");
    assert!(sent >= 2, "reject.sent {sent}: {shown}");
    apply(d, &[slice(&ENDPOINTS, &[])]);
    let got = spread(client, "tcp", 6);
    assert_eq!(got.values().sum::<u32>(), 6, "{got:?}");
    assert!(
        got.keys().all(|k| ENDPOINTS.contains(&k.as_str())),
        "{got:?}"
    );
}

/// kube-proxy's stale-UDP bug (kubernetes#48370 and successors) must not exist: UDP flows
/// (client sockets) answered by an endpoint that then leaves the Service are answered by
/// the others at once, not pinned to the gone endpoint for the connection's lifetime;
/// flows on endpoints that stay keep their endpoint.
#[test]
#[ignore = "needs root"]
fn udp_flows_leave_an_endpoint_that_leaves_and_stay_on_those_that_stay() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    apply(d, &[service(), slice(&ENDPOINTS, &[])]);
    std::thread::sleep(Duration::from_millis(500));
    // 30 client sockets ask once each, then (once the file `go` exists) each asks again;
    // every socket prints its two answers.
    let go = d.dir().join(unique("go"));
    let code = format!(
        r#"
import socket, os, time
def ask(s):
    s.sendto(b"?", ("{VIP}", 53)); return s.recvfrom(100)[0].decode()
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(30)]
for s in socks: s.settimeout(2)
first = [ask(s) for s in socks]
print("asked", flush=True)
while not os.path.exists("{go}"): time.sleep(0.05)
for s, a in zip(socks, first): print(a, ask(s))
"#,
        go = go.display()
    );
    let mut c = client.spawn(&["timeout", "60", "python3", "-c", &code]);
    // The first round is done when the table holds all 30 flows.
    let all_asked = vswitch_tests::e2e::wait_until(Duration::from_secs(20), || {
        d.ctl_ok(&["dump-conntrack"])
            .lines()
            .filter(|l| l.starts_with("udp,") && l.contains(&format!("dst={VIP},")))
            .count()
            >= 30
            || !c.is_running()
    });
    assert!(all_asked, "{}", d.ctl_ok(&["dump-conntrack"]));
    let gone = ENDPOINTS[2];
    apply(d, &[slice(&ENDPOINTS[..2], &[])]);
    std::fs::write(&go, "").unwrap();
    let out = c.finish(Duration::from_secs(30));
    let pairs: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.to_string(), b.to_string()))
        })
        .collect();
    assert_eq!(pairs.len(), 30, "{}", show(&out));
    let moved = pairs.iter().filter(|(a, _)| a == gone).count();
    assert!(moved > 0, "no flow was on {gone}: {pairs:?}");
    for (before, after) in &pairs {
        if before == gone {
            assert_ne!(
                after, gone,
                "a flow stayed pinned to {gone}, which left: {pairs:?}"
            );
        } else {
            assert_eq!(
                after, before,
                "a flow on a staying endpoint moved: {pairs:?}"
            );
        }
    }
}

/// Hairpin: a Pod that is its Service's only endpoint reaches itself through the Service
/// (TCP and UDP), seeing the connection come from the switch's hairpin address.
#[test]
#[ignore = "needs root"]
fn a_pod_reaches_itself_through_its_service() {
    let _serial = serial();
    require_root();
    let node = Netns::new();
    let d = Daemon::start_in(&node, &["--pod-cidr", POD_CIDR, "--node-name", "n1"]);
    let pod = Netns::new();
    let ip = ENDPOINTS[0];
    add_pod(&d, "self", &pod, ip);
    let _server = server(&pod, ip, 60);
    apply(&d, &[service(), slice(&[ip], &[])]);
    std::thread::sleep(Duration::from_millis(500));
    for proto in ["tcp", "udp"] {
        let got = spread(&pod, proto, 10);
        assert_eq!(
            got.get(ip),
            Some(&10),
            "{proto}: {got:?}\n{}",
            d.ctl_ok(&["dump-conntrack"])
        );
        assert_eq!(got.len(), 1, "{proto}: {got:?}");
    }
    let dump = d.ctl_ok(&["dump-conntrack"]);
    assert!(
        dump.contains("src=169.254.0.253") || dump.contains("dst=169.254.0.253"),
        "the hairpin translation: {dump}"
    );
}

/// sessionAffinity ClientIP: a client's new connections all go to one endpoint; with the
/// timeout shortened to a second, connections more than a second apart are spread again.
#[test]
#[ignore = "needs root"]
fn session_affinity_keeps_a_client_on_one_endpoint_until_the_timeout() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    let mut svc = service();
    svc["spec"]["sessionAffinity"] = json!("ClientIP");
    apply(d, &[svc.clone(), slice(&ENDPOINTS, &[])]);
    std::thread::sleep(Duration::from_millis(500));
    for proto in ["tcp", "udp"] {
        let got = spread(client, proto, 60);
        assert_eq!(
            got.len(),
            1,
            "{proto}: one endpoint for the client: {got:?}"
        );
        assert_eq!(got.values().sum::<u32>(), 60, "{proto}: {got:?}");
    }
    svc["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 1 } });
    apply(d, &[svc]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(1300));
        seen.extend(spread(client, "tcp", 1).into_keys());
        if seen.len() > 1 {
            break;
        }
    }
    assert!(seen.len() > 1, "never moved after the timeout: {seen:?}");
}

/// internalTrafficPolicy Local: a Pod's connections to the cluster IP go only to the
/// endpoints on its node; with none there, they are dropped (not sent elsewhere).
#[test]
#[ignore = "needs root"]
fn internal_traffic_policy_local_keeps_pods_on_their_node() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    let mut svc = service();
    svc["spec"]["internalTrafficPolicy"] = json!("Local");
    // The slice says only the first endpoint is on this node.
    let on = |nodes: [&str; 3]| {
        let mut s = slice(&ENDPOINTS, &[]);
        for (i, n) in nodes.iter().enumerate() {
            s["endpoints"][i]["nodeName"] = json!(n);
        }
        s
    };
    apply(d, &[svc, on(["n1", "n2", "n2"])]);
    std::thread::sleep(Duration::from_millis(500));
    let got = spread(client, "tcp", 30);
    assert_eq!(got.get(ENDPOINTS[0]), Some(&30), "{got:?}");
    assert_eq!(got.len(), 1, "{got:?}");
    apply(d, &[on(["n2", "n2", "n3"])]);
    let got = spread(client, "udp", 2);
    assert_eq!(
        got.get("error=TimeoutError"),
        Some(&2),
        "no local endpoint: dropped: {got:?}"
    );
}

/// Egress masquerade: a Pod reaching an address outside the cluster is seen there with
/// the node's address (the outside network has no route to Pods); a Pod reaching another
/// Pod keeps its own.
#[test]
#[ignore = "needs root"]
fn pods_reach_outside_the_cluster_with_the_nodes_address() {
    let _serial = serial();
    vswitch_tests::e2e::require_root(&["ip", "nsenter", "timeout", "python3", "iptables"]);
    let bed = Bed::new();
    let outside = outside(&bed.node);
    let seen_from = |from: &Netns, to: &Netns, to_ip: &str| -> String {
        let listener = to.spawn(&[
            "timeout",
            "10",
            "python3",
            "-c",
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('0.0.0.0', 7777)); d, a = s.recvfrom(100); print(a[0])",
        ]);
        std::thread::sleep(Duration::from_millis(300));
        from.exec_ok(&[
            "python3",
            "-c",
            &format!(
                "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 for _ in range(20): s.sendto(b'x', ('{to_ip}', 7777)); time.sleep(0.1)"
            ),
        ]);
        String::from_utf8_lossy(&listener.finish(Duration::from_secs(15)).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(
        seen_from(&bed.client, &outside, "198.51.100.2"),
        "198.51.100.1",
        "outside the cluster: the node's address\n{}",
        bed.node.exec_ok(&["iptables", "-t", "nat", "-S"])
    );
    assert_eq!(
        seen_from(&bed.client, &bed.eps[0], ENDPOINTS[0]),
        CLIENT,
        "Pod to Pod: the Pod's own address"
    );
    let rules = bed.node.exec_ok(&["iptables", "-t", "nat", "-S"]);
    assert!(
        rules.contains("VSWITCH-MASQ") && rules.contains("10.244.0.0/16"),
        "{rules}"
    );
}

/// A namespace outside the cluster, linked to the node by a veth pair: the node is
/// `NODE_IP` on it, the outside `OUTSIDE_IP`; dropped with the node.
fn outside(node: &Netns) -> Netns {
    let outside = Netns::new();
    let (host_if, out_if) = (unique("vo"), unique("vi"));
    let (host_if, out_if) = (
        &host_if[..15.min(host_if.len())],
        &out_if[..15.min(out_if.len())],
    );
    vswitch_tests::e2e::run_ok(
        "ip",
        &[
            "link",
            "add",
            host_if,
            "netns",
            node.name(),
            "type",
            "veth",
            "peer",
            "name",
            out_if,
            "netns",
            outside.name(),
        ],
    );
    node.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        host_if,
    ]);
    node.exec_ok(&["ip", "link", "set", host_if, "up"]);
    outside.exec_ok(&[
        "ip",
        "addr",
        "add",
        &format!("{OUTSIDE_IP}/24"),
        "dev",
        out_if,
    ]);
    outside.exec_ok(&["ip", "link", "set", out_if, "up"]);
    outside
}

const NODE_IP: &str = "198.51.100.1";
const OUTSIDE_IP: &str = "198.51.100.2";
const NODE_PORT: u16 = 30090;
const LB_IP: &str = "192.0.2.50";
const HEALTH_PORT: u16 = 32100;

/// A server on 9090 answering every TCP connection with its own address and the
/// address the connection came from, for 60 s.
fn peer_server(ns: &Netns, ip: &str) -> Bg {
    let code = format!(
        r#"
import socket
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 9090)); t.listen(64)
while True:
    c, peer = t.accept(); c.sendall(("{ip} " + peer[0]).encode()); c.close()
"#
    );
    ns.spawn(&["timeout", "60", "python3", "-c", &code])
}

/// `n` TCP connections from `ns` to `ip:port`: each answer (`ENDPOINT PEER`), or
/// `error=NAME` (each waits at most 2 s).
fn ask(ns: &Netns, ip: &str, port: u16, n: u32) -> Vec<String> {
    let code = format!(
        r#"
import socket
for i in range({n}):
    try:
        s = socket.create_connection(("{ip}", {port}), timeout=2)
        print(s.recv(100).decode()); s.close()
    except Exception as e:
        print("error=" + type(e).__name__)
"#
    );
    let out = ns.exec(&["timeout", "60", "python3", "-c", &code]);
    assert!(out.status.success(), "client: {}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A NodePort Service over the first two endpoints (`peer_server`s), the first on this
/// node (n1), the second on another (n2).
fn node_port_service(service_type: &str, policy: &str) -> Value {
    let node_port = if service_type == "ClusterIP" {
        Value::Null
    } else {
        json!(NODE_PORT)
    };
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "peer", "namespace": "default" },
        "spec": { "type": service_type, "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                  "externalTrafficPolicy": policy,
                  "ports": [ { "name": "peer", "port": 90, "protocol": "TCP", "targetPort": "peer",
                               "nodePort": node_port } ] }
    })
}

/// [`node_port_service`] as a LoadBalancer whose ingress IP is `LB_IP`.
fn lb_service(policy: &str) -> Value {
    let mut s = node_port_service("LoadBalancer", policy);
    s["status"] = json!({ "loadBalancer": { "ingress": [ { "ip": LB_IP } ] } });
    s
}

/// The test bed, a namespace outside the node that routes `LB_IP` to it, and a
/// [`peer_server`] on the first two endpoints (dropped first).
fn outside_bed() -> (Bed, Netns, Vec<Bg>) {
    outside_bed_with(&[])
}

/// [`outside_bed`] with `extra` flags for the switch, started once the node has its
/// address (`NODE_IP`, on its link to the outside).
fn outside_bed_with(extra: &[&str]) -> (Bed, Netns, Vec<Bg>) {
    vswitch_tests::e2e::require_root(&["ip", "nsenter", "timeout", "python3", "iptables"]);
    let node = Netns::new();
    let outside = outside(&node);
    let bed = Bed::with_flags(node, extra);
    outside.exec_ok(&["ip", "route", "add", &format!("{LB_IP}/32"), "via", NODE_IP]);
    let servers = (0..2)
        .map(|i| peer_server(&bed.eps[i], ENDPOINTS[i]))
        .collect();
    (bed, outside, servers)
}

fn peer_slice(nodes: [&str; 2]) -> Value {
    let ep = |ip: &str, node: &str| json!({ "addresses": [ip], "conditions": { "ready": true }, "nodeName": node });
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "peer-abcde", "namespace": "default",
                      "labels": { "kubernetes.io/service-name": "peer" } },
        "addressType": "IPv4",
        "ports": [ { "name": "peer", "port": 9090, "protocol": "TCP" } ],
        "endpoints": [ ep(ENDPOINTS[0], nodes[0]), ep(ENDPOINTS[1], nodes[1]) ]
    })
}

/// The answers' endpoints and peers, counted.
fn tally(answers: &[String]) -> (BTreeMap<String, u32>, BTreeMap<String, u32>) {
    let (mut eps, mut peers) = (BTreeMap::new(), BTreeMap::new());
    for a in answers {
        let (ep, peer) = a.split_once(' ').unwrap_or((a, ""));
        *eps.entry(ep.to_string()).or_insert(0) += 1;
        *peers.entry(peer.to_string()).or_insert(0) += 1;
    }
    (eps, peers)
}

/// externalTrafficPolicy Cluster seen from outside the node on `NODE_IP` and `port`:
/// both endpoints answer, and see the node's gateway address (masqueraded, so replies
/// come back through the node); the node itself reaches the same address and port.
fn cluster_from_outside(bed: &Bed, outside: &Netns, port: u16) {
    let rules = || bed.node.exec_ok(&["iptables", "-t", "nat", "-S"]);
    let answers = ask(outside, NODE_IP, port, 20);
    let (eps, peers) = tally(&answers);
    assert_eq!(
        eps.len(),
        2,
        "Cluster: both endpoints: {answers:?}\n{}",
        rules()
    );
    assert_eq!(
        peers.keys().collect::<Vec<_>>(),
        [GATEWAY],
        "Cluster: the endpoint sees the node's gateway: {answers:?}"
    );
    let from_node = ask(&bed.node, NODE_IP, port, 4);
    assert_eq!(
        tally(&from_node).0.values().sum::<u32>(),
        4,
        "{from_node:?}"
    );
    assert!(
        from_node.iter().all(|a| !a.starts_with("error")),
        "{from_node:?}"
    );
}

/// externalTrafficPolicy Local seen from outside the node on `NODE_IP` and `port`: only
/// this node's endpoint answers, and it sees the client's own address.
fn local_from_outside(outside: &Netns, port: u16) {
    let answers = ask(outside, NODE_IP, port, 10);
    let (eps, peers) = tally(&answers);
    assert_eq!(
        eps.get(ENDPOINTS[0]),
        Some(&10),
        "Local: this node's endpoint: {answers:?}"
    );
    assert_eq!(
        peers.get(OUTSIDE_IP),
        Some(&10),
        "Local: the client's address: {answers:?}"
    );
}

/// NodePort from a client outside the node, both traffic policies: Cluster spreads over
/// every endpoint and the endpoint sees the node's gateway address (masqueraded, so the
/// reply comes back through the node); Local keeps the client's address and goes only to
/// this node's endpoint, and drops when there is none. The node itself reaches the
/// NodePort on its own address too.
#[test]
#[ignore = "needs root"]
fn node_ports_from_outside_the_node_follow_the_external_traffic_policy() {
    let _serial = serial();
    let (bed, outside, _servers) = outside_bed();
    let d = &bed.d;
    apply(
        d,
        &[
            node_port_service("NodePort", "Cluster"),
            peer_slice(["n1", "n2"]),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let rules = || bed.node.exec_ok(&["iptables", "-t", "nat", "-S"]);
    cluster_from_outside(&bed, &outside, NODE_PORT);

    apply(d, &[node_port_service("NodePort", "Local")]);
    local_from_outside(&outside, NODE_PORT);
    apply(d, &[peer_slice(["n2", "n2"])]);
    let answers = ask(&outside, NODE_IP, NODE_PORT, 2);
    assert_eq!(
        answers, ["error=TimeoutError"; 2],
        "Local, no endpoint here: dropped"
    );
    d.ctl_ok(&[
        "delete",
        "-f",
        &write(d, &node_port_service("NodePort", "Local")),
    ]);
    let left = rules();
    assert!(!left.contains(&format!("--dport {NODE_PORT}")), "{left}");
}

/// An external IP that is the node's own address (`--node-ip`), as people give a
/// Service to expose a port on its node, and as k3s's load balancer reports it: from
/// outside the node and from the node itself, the Service port on that address reaches
/// the endpoints by the traffic policy (the node would otherwise keep the connection),
/// and the node's rules go with the Service.
#[test]
#[ignore = "needs root"]
fn an_external_ip_that_is_the_nodes_own_address_reaches_the_endpoints() {
    let _serial = serial();
    // The node's address is the switch's `--node-ip` (its tunnel's end).
    let (bed, outside, _servers) = outside_bed_with(&["--node-ip", NODE_IP]);
    let d = &bed.d;
    let own = |policy: &str| {
        let mut s = node_port_service("ClusterIP", policy);
        s["spec"]["externalIPs"] = json!([NODE_IP]);
        s
    };
    apply(d, &[own("Cluster"), peer_slice(["n1", "n2"])]);
    std::thread::sleep(Duration::from_millis(500));
    cluster_from_outside(&bed, &outside, 90);
    apply(d, &[own("Local")]);
    local_from_outside(&outside, 90);
    d.ctl_ok(&["delete", "-f", &write(d, &own("Local"))]);
    let left = bed.node.exec_ok(&["iptables", "-t", "nat", "-S"]);
    assert!(!left.contains(&format!("-d {NODE_IP}/32")), "{left}");
    let gone = ask(&outside, NODE_IP, 90, 1);
    assert!(
        gone[0].starts_with("error"),
        "no Service, nothing listens: {gone:?}"
    );
}

/// A LoadBalancer Service from outside: its ingress IP (routed by the client to the
/// node) reaches the endpoints like the NodePort, by the traffic policy; with Local the
/// health-check node port answers 200 while this node has an endpoint, 503 once it has
/// none, and stops with the policy.
#[test]
#[ignore = "needs root"]
fn load_balancer_ips_and_health_checks_from_outside_the_node() {
    let _serial = serial();
    let (bed, outside, _servers) = outside_bed();
    let d = &bed.d;
    let lb = |policy: &str| {
        let mut s = lb_service(policy);
        s["spec"]["healthCheckNodePort"] = json!(HEALTH_PORT);
        s
    };
    let health = || {
        let code = format!(
            "import urllib.request, urllib.error\n\
             try:\n r = urllib.request.urlopen('http://{NODE_IP}:{HEALTH_PORT}/healthz', timeout=3); print(r.status, r.read().decode())\n\
             except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n\
             except urllib.error.URLError as e: print('error=' + type(e.reason).__name__)\n\
             except Exception as e: print('error=' + type(e).__name__)"
        );
        outside
            .exec_ok(&["timeout", "20", "python3", "-c", &code])
            .trim()
            .to_string()
    };
    apply(d, &[lb("Local"), peer_slice(["n1", "n2"])]);
    std::thread::sleep(Duration::from_millis(500));
    let answers = ask(&outside, LB_IP, 90, 10);
    let (eps, peers) = tally(&answers);
    assert_eq!(eps.get(ENDPOINTS[0]), Some(&10), "Local: {answers:?}");
    assert_eq!(peers.get(OUTSIDE_IP), Some(&10), "Local: {answers:?}");
    let h = health();
    assert!(
        h.starts_with("200 ") && h.contains("\"localEndpoints\":1"),
        "{h}"
    );
    apply(d, &[peer_slice(["n2", "n2"])]);
    let h = health();
    assert!(
        h.starts_with("503 ") && h.contains("\"localEndpoints\":0"),
        "{h}"
    );

    apply(d, &[lb("Cluster"), peer_slice(["n1", "n2"])]);
    let answers = ask(&outside, LB_IP, 90, 20);
    let (eps, peers) = tally(&answers);
    assert_eq!(eps.len(), 2, "Cluster: {answers:?}");
    assert_eq!(
        peers.keys().collect::<Vec<_>>(),
        [GATEWAY],
        "Cluster: {answers:?}"
    );
    assert_eq!(
        health(),
        "error=ConnectionRefusedError",
        "no health check with Cluster"
    );
}

/// `manifest` in a file of `d`'s directory, for `apply -f` or `delete -f`.
fn write(d: &Daemon, manifest: &Value) -> String {
    let f = d.dir().join(format!("{}.json", unique("m")));
    std::fs::write(&f, manifest.to_string()).unwrap();
    f.to_string_lossy().into_owned()
}

/// Kubernetes keeps the client's address through a ClusterIP (no masquerade between
/// Pods): the endpoint sees the client Pod's own address, and the node's connections
/// come from the node's gateway address.
#[test]
#[ignore = "needs root"]
fn an_endpoint_sees_the_client_pods_own_address_through_a_cluster_ip() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let _servers: Vec<Bg> = (0..2)
        .map(|i| peer_server(&bed.eps[i], ENDPOINTS[i]))
        .collect();
    apply(
        &bed.d,
        &[
            node_port_service("ClusterIP", "Cluster"),
            peer_slice(["n1", "n2"]),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let answers = ask(&bed.client, "10.96.0.20", 90, 10);
    let (eps, peers) = tally(&answers);
    assert_eq!(eps.values().sum::<u32>(), 10, "{answers:?}");
    assert_eq!(peers.get(CLIENT), Some(&10), "{answers:?}");
    let answers = ask(&bed.node, "10.96.0.20", 90, 4);
    assert_eq!(tally(&answers).1.get(GATEWAY), Some(&4), "{answers:?}");
}

/// Services are configuration the switch must never lose: after a `kill -9` and a start,
/// a TCP connection made through a cluster IP before goes on (the connection table and
/// its translation outlive the process), new connections spread again, and the NodePort
/// reached from outside the node works with its node rules made once (not twice).
#[test]
#[ignore = "needs root"]
fn services_and_their_connections_survive_kill_9_of_the_switch() {
    let _serial = serial();
    let (mut bed, outside, _servers) = outside_bed();
    let _echo = bed.eps[0].spawn(&[
        "timeout",
        "60",
        "python3",
        "-c",
        "import socket\nt = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         t.bind(('0.0.0.0', 7070)); t.listen(8)\nc, _ = t.accept()\n\
         while True:\n    d = c.recv(100)\n    if not d: break\n    c.sendall(d)",
    ]);
    let mut echo = node_port_service("ClusterIP", "Cluster");
    echo["metadata"]["name"] = json!("echo");
    echo["spec"]["clusterIP"] = json!("10.96.0.30");
    echo["spec"]["clusterIPs"] = json!(["10.96.0.30"]);
    let mut echo_slice = peer_slice(["n1", "n1"]);
    echo_slice["metadata"]["name"] = json!("echo-abcde");
    echo_slice["metadata"]["labels"]["kubernetes.io/service-name"] = json!("echo");
    echo_slice["ports"][0]["port"] = json!(7070);
    echo_slice["endpoints"] = json!([echo_slice["endpoints"][0].clone()]);
    apply(
        &bed.d,
        &[
            node_port_service("NodePort", "Cluster"),
            peer_slice(["n1", "n2"]),
            echo,
            echo_slice,
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let go = bed.d.dir().join(unique("go"));
    let code = format!(
        "import socket, os, time\ns = socket.create_connection(('10.96.0.30', 90), timeout=5)\n\
         s.sendall(b'before'); print(s.recv(100).decode(), flush=True)\n\
         while not os.path.exists('{}'): time.sleep(0.05)\n\
         s.sendall(b'after'); print(s.recv(100).decode(), flush=True)",
        go.display()
    );
    let mut client = bed.client.spawn(&["timeout", "40", "python3", "-c", &code]);
    let made = vswitch_tests::e2e::wait_until(Duration::from_secs(10), || {
        bed.d.ctl_ok(&["dump-conntrack"]).lines().any(|l| {
            l.starts_with("tcp,") && l.contains("dst=10.96.0.30,") && l.contains("ESTABLISHED")
        }) || !client.is_running()
    });
    assert!(made, "{}", bed.d.ctl_ok(&["dump-conntrack"]));
    bed.d.kill9();
    bed.d.restart();
    std::fs::write(&go, "").unwrap();
    let out = client.finish(Duration::from_secs(20));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "before\nafter\n",
        "the stream through the cluster IP: {}",
        show(&out)
    );
    let answers = ask(&bed.client, "10.96.0.20", 90, 10);
    assert_eq!(tally(&answers).0.len(), 2, "{answers:?}");
    let answers = ask(&outside, NODE_IP, NODE_PORT, 10);
    assert!(
        answers.iter().all(|a| !a.starts_with("error")),
        "{answers:?}"
    );
    let rules = bed.node.exec_ok(&["iptables", "-t", "nat", "-S"]);
    assert_eq!(
        rules.matches(&format!("--dport {NODE_PORT} ")).count(),
        1,
        "{rules}"
    );
    // PREROUTING and OUTPUT jump to the NodePorts, POSTROUTING to the masquerade: once.
    for (jump, n) in [("-j VSWITCH-NODEPORTS", 2), ("-j VSWITCH-SVC-MASQ", 1)] {
        let got = rules.lines().filter(|l| l.ends_with(jump)).count();
        assert_eq!(got, n, "{jump}\n{rules}");
    }
}

/// kubernetes' "should be able to preserve UDP traffic when initial unready endpoints get
/// ready": a UDP client sending from one port to a Service whose only endpoint is not
/// ready gets refused, and is answered once the endpoint is ready (no
/// entry left behind by the refusals pins the flow).
#[test]
#[ignore = "needs root"]
fn a_udp_flow_refused_without_endpoints_is_answered_once_one_is_ready() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    apply(d, &[service(), slice(&[], &[ENDPOINTS[0]])]);
    std::thread::sleep(Duration::from_millis(500));
    let code = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 40053))
s.settimeout(0.2)
start = time.monotonic()
while time.monotonic() - start < 15:
    s.sendto(b"?", ("{VIP}", 53))
    try:
        d, a = s.recvfrom(100)
        print(d.decode(), round(time.monotonic() - start, 2), flush=True); break
    except OSError:
        pass
"#
    );
    let c = client.spawn(&["timeout", "30", "python3", "-c", &code]);
    std::thread::sleep(Duration::from_secs(2));
    apply(d, &[slice(&[ENDPOINTS[0]], &[])]);
    // A stale entry would pin the flow for good (the client's packets keep it alive):
    // the bound is loose, for a loaded machine.
    let ready_at = std::time::Instant::now();
    let out = c.finish(Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (who, _) = text.trim().split_once(' ').unwrap_or(("", ""));
    assert_eq!(who, ENDPOINTS[0], "{}", show(&out));
    assert!(
        ready_at.elapsed() < Duration::from_secs(8),
        "answered only {:?} after the endpoint was ready: {text}",
        ready_at.elapsed()
    );
}

/// A Service's life: ports added and removed (the same number over TCP and UDP, each
/// protocol removed in turn), deleted and made again; a Service whose endpoints and ports
/// come in two slices (kubernetes' multi-slice conformance tests) reaches each.
#[test]
#[ignore = "needs root"]
fn services_change_ports_come_and_go_and_join_several_slices() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    // Port 80 over TCP (8080) and UDP (5353).
    let svc = |protos: &[&str]| {
        let ports: Vec<Value> = protos
            .iter()
            .map(|p| {
                let (name, target) = if *p == "TCP" {
                    ("t", 8080)
                } else {
                    ("u", 5353)
                };
                json!({ "name": name, "port": 80, "protocol": p, "targetPort": target })
            })
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "both", "namespace": "default" },
            "spec": { "clusterIP": "10.96.0.40", "clusterIPs": ["10.96.0.40"], "ports": ports }
        })
    };
    // Two slices: the first endpoint's TCP port in one, the second's UDP port in the other.
    let slices = [
        ("both-a", 0, "t", 8080, "TCP"),
        ("both-b", 1, "u", 5353, "UDP"),
    ]
    .map(|(name, i, port, number, proto)| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "namespace": "default",
                          "labels": { "kubernetes.io/service-name": "both" } },
            "addressType": "IPv4",
            "ports": [ { "name": port, "port": number, "protocol": proto } ],
            "endpoints": [ { "addresses": [ENDPOINTS[i]], "conditions": { "ready": true } } ]
        })
    });
    let reach = |proto: &str| -> BTreeMap<String, u32> {
        let code = format!(
            r#"
import socket
try:
    if "{proto}" == "tcp":
        s = socket.create_connection(("10.96.0.40", 80), timeout=2); print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.connect(("10.96.0.40", 80))
        s.send(b"?"); print(s.recv(100).decode())
except Exception as e:
    print("error=" + type(e).__name__)
"#
        );
        let out = client.exec_ok(&["timeout", "20", "python3", "-c", &code]);
        [(out.trim().to_string(), 1)].into_iter().collect()
    };
    let one = |k: &str| -> BTreeMap<String, u32> { [(k.to_string(), 1)].into_iter().collect() };
    apply(
        d,
        &[svc(&["TCP", "UDP"]), slices[0].clone(), slices[1].clone()],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reach("tcp"), one(ENDPOINTS[0]), "TCP from slice a");
    assert_eq!(reach("udp"), one(ENDPOINTS[1]), "UDP from slice b");
    apply(d, &[svc(&["TCP"])]);
    assert_eq!(reach("tcp"), one(ENDPOINTS[0]));
    assert_eq!(
        reach("udp"),
        one("error=ConnectionRefusedError"),
        "UDP removed"
    );
    apply(d, &[svc(&["UDP"])]);
    assert_eq!(reach("udp"), one(ENDPOINTS[1]));
    assert_eq!(
        reach("tcp"),
        one("error=ConnectionRefusedError"),
        "TCP removed"
    );
    d.ctl_ok(&["delete", "-f", &write(d, &svc(&["UDP"]))]);
    let gone = reach("tcp");
    assert!(
        gone.keys().all(|k| k.starts_with("error=")),
        "deleted: {gone:?}"
    );
    apply(d, &[svc(&["TCP", "UDP"])]);
    assert_eq!(reach("tcp"), one(ENDPOINTS[0]), "made again");
    assert_eq!(reach("udp"), one(ENDPOINTS[1]), "made again");
}

/// `loadBalancerSourceRanges`: a load-balancer IP is reached only from the listed
/// ranges, by clients outside the node (checked on their own address, before the node
/// masquerades them) and by Pods alike; other clients' packets are dropped.
#[test]
#[ignore = "needs root"]
fn load_balancer_source_ranges_admit_only_their_clients() {
    let _serial = serial();
    let (bed, outside, _servers) = outside_bed();
    let d = &bed.d;
    let lb = |ranges: &[&str]| {
        let mut s = lb_service("Cluster");
        s["spec"]["loadBalancerSourceRanges"] = json!(ranges);
        s
    };
    let ok = |answers: &[String]| answers.iter().all(|a| !a.starts_with("error"));
    let dropped = |answers: &[String]| answers.iter().all(|a| a == "error=TimeoutError");
    apply(
        d,
        &[lb(&[&format!("{OUTSIDE_IP}/32")]), peer_slice(["n1", "n2"])],
    );
    std::thread::sleep(Duration::from_millis(500));
    let a = ask(&outside, LB_IP, 90, 4);
    assert!(ok(&a), "outside, in range: {a:?}");
    let a = ask(&bed.client, LB_IP, 90, 2);
    assert!(dropped(&a), "a Pod out of range: {a:?}");
    let a = ask(&bed.client, "10.96.0.20", 90, 2);
    assert!(ok(&a), "the cluster IP is not restricted: {a:?}");
    apply(d, &[lb(&["203.0.113.0/24", "10.244.1.0/24"])]);
    let a = ask(&outside, LB_IP, 90, 2);
    assert!(dropped(&a), "outside, out of range: {a:?}");
    let a = ask(&bed.client, LB_IP, 90, 4);
    assert!(ok(&a), "a Pod in range: {a:?}");
    apply(d, &[lb(&[])]);
    let a = ask(&outside, LB_IP, 90, 4);
    assert!(ok(&a), "no ranges: anyone: {a:?}");
    let rules = bed.node.exec_ok(&["iptables", "-S", "VSWITCH-FIREWALL"]);
    assert_eq!(rules.lines().count(), 1, "only the chain is left: {rules}");
}

/// Session affinity outlives a `kill -9` of the switch: the clients with live
/// connections are put back on their endpoints from the connection table, so new
/// connections after the start go where the old ones went.
#[test]
#[ignore = "needs root"]
fn session_affinity_survives_kill_9_of_the_switch() {
    let _serial = serial();
    require_root();
    let mut bed = Bed::new();
    let mut svc = service();
    svc["spec"]["sessionAffinity"] = json!("ClientIP");
    apply(&bed.d, &[svc, slice(&ENDPOINTS, &[])]);
    std::thread::sleep(Duration::from_millis(500));
    let before = spread(&bed.client, "udp", 5);
    assert_eq!(before.len(), 1, "{before:?}");
    bed.d.kill9();
    bed.d.restart();
    let after = spread(&bed.client, "udp", 30);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "{after:?}"
    );
    assert!(
        bed.d.log_tail(200).contains("session affinity restored"),
        "{}",
        bed.d.log_tail(30)
    );
}

/// A client port that an earlier connection through the cluster IP still holds (the
/// entry translated to the endpoint, closed or not), used again straight to the
/// endpoint, and the other way round, over TCP and UDP: every exchange is answered, the
/// new connection seen by the endpoint from another port (Linux's implicit source NAT),
/// as the client expects it from where it connected to.
#[test]
#[ignore = "needs root"]
fn a_client_port_reused_between_the_cluster_ip_and_its_endpoint_gets_through() {
    let _serial = serial();
    require_root();
    let node = Netns::new();
    let d = Daemon::start_in(&node, &["--pod-cidr", POD_CIDR, "--node-name", "n1"]);
    let client = Netns::new();
    add_pod(&d, "client", &client, CLIENT);
    let (ep_ns, ep) = (Netns::new(), ENDPOINTS[0]);
    add_pod(&d, "ep0", &ep_ns, ep);
    // Answers with the client's port it sees.
    let _server = ep_ns.spawn(&[
        "timeout",
        "60",
        "python3",
        "-c",
        r#"
import socket, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080)); t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
def udp():
    while True:
        _, peer = u.recvfrom(100); u.sendto(str(peer[1]).encode(), peer)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, peer = t.accept(); c.sendall(str(peer[1]).encode()); c.close()
"#,
    ]);
    apply(&d, &[service(), slice(&[ep], &[])]);
    std::thread::sleep(Duration::from_millis(500));
    let code = format!(
        r#"
import socket, time
def tcp(port, dst, dport):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{CLIENT}", port)); s.settimeout(3); s.connect((dst, dport))
    seen = s.recv(100).decode(); peer = s.getpeername(); s.close()
    return peer, seen
def udp(s, dst, dport):
    s.sendto(b"?", (dst, dport)); seen, peer = s.recvfrom(100)
    return peer, seen.decode()
def run(name, f):
    try:
        peer, seen = f()
        print(name, "%s:%d" % peer, seen, flush=True)
    except Exception as e:
        print(name, "error=" + type(e).__name__, "-", flush=True)
svc, direct = ("{VIP}", 80), ("{ep}", 8080)
run("tcp-svc-then-direct", lambda: tcp(40000, *svc))
time.sleep(0.2)
run("tcp-svc-then-direct", lambda: tcp(40000, *direct))
run("tcp-direct-then-svc", lambda: tcp(40001, *direct))
time.sleep(0.2)
run("tcp-direct-then-svc", lambda: tcp(40001, *svc))
for port, first, then in ((40002, ("{VIP}", 53), ("{ep}", 5353)), (40003, ("{ep}", 5353), ("{VIP}", 53))):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    s.bind(("{CLIENT}", port))
    name = "udp-svc-then-direct" if first[1] == 53 else "udp-direct-then-svc"
    run(name, lambda: udp(s, *first))
    run(name, lambda: udp(s, *then))
"#
    );
    let out = client.exec(&["timeout", "60", "python3", "-c", &code]);
    assert!(out.status.success(), "client: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let dump = d.ctl_ok(&["dump-conntrack"]);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 8, "{text}");
    for (pair, port) in lines.chunks(2).zip([40000u16, 40001, 40002, 40003]) {
        let (first, then) = (&pair[0], &pair[1]);
        let svc_first = first[0].contains("svc-then");
        let peer = |svc: bool, tcp: bool| match (svc, tcp) {
            (true, true) => format!("{VIP}:80"),
            (true, false) => format!("{VIP}:53"),
            (false, true) => format!("{ep}:8080"),
            (false, false) => format!("{ep}:5353"),
        };
        let tcp = first[0].starts_with("tcp");
        assert_eq!(
            first[1],
            peer(svc_first, tcp),
            "{text}\n{dump}\n{}",
            d.log_tail(20)
        );
        assert_eq!(
            then[1],
            peer(!svc_first, tcp),
            "the second connection answered from where it went: {text}\n{dump}"
        );
        assert_eq!(
            first[2],
            port.to_string(),
            "the first keeps its port: {text}"
        );
        assert_ne!(
            then[2],
            port.to_string(),
            "the second is seen from another port: {text}\n{dump}"
        );
    }
    let ct = &d.ctl_json(&["show"])["conntrack"];
    assert!(ct["clash_resolved"].as_u64() >= Some(4), "{ct}\n{dump}");
    assert_eq!(ct["nat_exhausted"].as_u64(), Some(0), "{ct}");
}
