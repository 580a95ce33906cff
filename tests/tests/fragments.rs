//! End-to-end tests of IP fragments through connection tracking: UDP datagrams larger
//! than the Pods' MTU (as the Kubernetes e2e test "should be able to handle large
//! requests: udp" sends, or a large DNS answer) between two Pods of the Kubernetes
//! pipeline, directly and through a ClusterIP Service (DNAT of every fragment), echoed
//! back intact. They need root (namespaces, TAPs): plain `cargo test` reports them ignored.

use serde_json::json;
use std::time::Duration;
use vswitch_tests::e2e::{Bg, Daemon, Netns, serial, show};
use vswitch_tests::svc::apply;

const POD_CIDR: &str = "10.244.1.0/24";
const GATEWAY: &str = "10.244.1.1";
const CLIENT: &str = "10.244.1.50";
const SERVER: &str = "10.244.1.60";
const VIP: &str = "10.96.0.20";
/// Datagram sizes: one that fits the MTU, then ones of two, three and many fragments.
const SIZES: [usize; 5] = [1000, 2000, 4000, 9000, 30000];

fn require_root() {
    vswitch_tests::e2e::require_root(&["ip", "nsenter", "timeout", "python3"]);
}

fn add_pod(d: &Daemon, name: &str, ns: &Netns, ip: &str) {
    vswitch_tests::svc::add_pod(d, name, ns, ip, GATEWAY);
}

/// A UDP server on 5353 that sends every datagram back whole, for `secs` seconds.
fn echo_server(ns: &Netns, secs: u32) -> Bg {
    let code = r#"
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
while True:
    data, peer = u.recvfrom(65535); u.sendto(data, peer)
"#;
    ns.spawn(&["timeout", &secs.to_string(), "python3", "-c", code])
}

/// From `ns`, one datagram of each size in [`SIZES`] (random bytes) to `dst:port`, each
/// from a new socket (a new connection): a line per size saying whether the answer was
/// the same bytes, and from where.
fn echo_sizes(ns: &Netns, dst: &str, port: u16) -> Vec<String> {
    let code = format!(
        r#"
import socket, os
for n in {SIZES:?}:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    data = os.urandom(n)
    try:
        s.sendto(data, ("{dst}", {port})); got, peer = s.recvfrom(65535)
        print(n, "same" if got == data else "different:%d" % len(got), peer[0], peer[1])
    except Exception as e:
        print(n, type(e).__name__, "-", "-")
    s.close()
"#
    );
    let out = ns.exec(&["timeout", "60", "python3", "-c", &code]);
    assert!(out.status.success(), "client: {}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn expect_echoes(lines: &[String], from: &str, port: u16, d: &Daemon) {
    let want: Vec<String> = SIZES
        .iter()
        .map(|n| format!("{n} same {from} {port}"))
        .collect();
    assert_eq!(
        lines,
        want,
        "every datagram echoed whole, from {from}:{port}\n{}\n{}",
        d.ctl_ok(&["dump-conntrack"]),
        d.log_tail(20)
    );
}

/// The switch's count of invalid packets (`show`'s conntrack counters).
fn ct_invalid(d: &Daemon) -> u64 {
    let shown = d.ctl_json(&["show"]);
    shown["conntrack"]["invalid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no conntrack.invalid in {shown}"))
}

/// A node with a switch (the Kubernetes pipeline), a client Pod and a server Pod running
/// [`echo_server`]; dropped in order (server, switch, Pods, node).
struct Bed {
    _server: Bg,
    d: Daemon,
    client: Netns,
    _server_ns: Netns,
    _node: Netns,
}

impl Bed {
    fn new() -> Bed {
        let node = Netns::new();
        let client = Netns::new();
        let server_ns = Netns::new();
        let d = Daemon::start_in(&node, &["--pod-cidr", POD_CIDR, "--node-name", "n1"]);
        add_pod(&d, "client", &client, CLIENT);
        add_pod(&d, "server", &server_ns, SERVER);
        let server = echo_server(&server_ns, 120);
        std::thread::sleep(Duration::from_millis(500)); // the server binds
        // The datagrams must really be cut: the Pods' MTU is below the sizes sent.
        let mtu: usize = client
            .exec_ok(&["cat", "/sys/class/net/eth0/mtu"])
            .trim()
            .parse()
            .unwrap();
        assert!(mtu < SIZES[1], "the Pod's MTU is {mtu}");
        Bed {
            _server: server,
            d,
            client,
            _server_ns: server_ns,
            _node: node,
        }
    }
}

/// Pod to Pod: UDP datagrams of up to 30,000 bytes (up to 21 fragments) are echoed back
/// whole; every fragment was tracked (none counted invalid), one connection per socket.
#[test]
#[ignore = "needs root"]
fn fragmented_udp_datagrams_between_pods_are_echoed_whole() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    let invalid = ct_invalid(d);
    let lines = echo_sizes(client, SERVER, 5353);
    expect_echoes(&lines, SERVER, 5353, d);
    assert_eq!(ct_invalid(d), invalid, "no fragment was invalid");
    let conns = d
        .ctl_ok(&["dump-conntrack"])
        .lines()
        .filter(|l| l.starts_with(&format!("udp,orig=(src={CLIENT},dst={SERVER},")))
        .count();
    assert_eq!(conns, SIZES.len(), "one connection per datagram's socket");
}

/// Through a ClusterIP Service (port 53 to the endpoint's 5353): every fragment of each
/// request is translated to the endpoint, every fragment of each answer back to the
/// Service's address, and the datagrams arrive whole both ways.
#[test]
#[ignore = "needs root"]
fn fragmented_udp_datagrams_through_a_service_are_translated_whole() {
    let _serial = serial();
    require_root();
    let bed = Bed::new();
    let (d, client) = (&bed.d, &bed.client);
    apply(
        d,
        &[
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "echo", "namespace": "default" },
                "spec": { "type": "ClusterIP", "clusterIP": VIP, "clusterIPs": [VIP],
                          "selector": { "app": "echo" },
                          "ports": [ { "name": "dns", "port": 53, "protocol": "UDP",
                                       "targetPort": 5353 } ] }
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": { "name": "echo-abcde", "namespace": "default",
                              "labels": { "kubernetes.io/service-name": "echo" } },
                "addressType": "IPv4",
                "ports": [ { "name": "dns", "port": 5353, "protocol": "UDP" } ],
                "endpoints": [ { "addresses": [SERVER], "conditions": { "ready": true },
                                 "nodeName": "n1" } ]
            }),
        ],
    );
    let invalid = ct_invalid(d);
    let lines = echo_sizes(client, VIP, 53);
    expect_echoes(&lines, VIP, 53, d);
    assert_eq!(ct_invalid(d), invalid, "no fragment was invalid");
    let dump = d.ctl_ok(&["dump-conntrack"]);
    let translated = dump
        .lines()
        .filter(|l| {
            l.starts_with(&format!("udp,orig=(src={CLIENT},dst={VIP},"))
                && l.contains(&format!("reply=(src={SERVER},dst={CLIENT},sport=5353,"))
        })
        .count();
    assert_eq!(translated, SIZES.len(), "{dump}");
}
