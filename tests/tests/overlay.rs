//! End-to-end tests of the overlay: nodes as network namespaces joined by a veth underlay,
//! a `vswitchd` in each with `--node-ip` and `--pod-cidr`, Pods attached through the real
//! `vswitch-cni`, remote nodes added with `vswitchctl add-node` or `apply -f`. One test puts
//! the Linux kernel's own `vxlan` device on the other end, set up the way Flannel sets up
//! its nodes. They need root: plain `cargo test` reports them ignored; `scripts/test` runs
//! them as root with `--include-ignored`.

use serde_json::{Value, json};
use std::time::Duration;
use vswitch_tests::cni::{CniEnv, exec_plugin};
use vswitch_tests::e2e::{
    Bg, Daemon, Netns, bin, iperf_client_args, iperf_report, iperf_server, ping, ping_until,
    serial, stdout, tcp_transfer, unique, unreachable_pairs, wait_until,
};

const TOOLS: &[&str] = &[
    "ip", "ping", "nsenter", "timeout", "iperf3", "python3", "tcpdump", "ethtool", "bridge",
];
const CNI_TIMEOUT: Duration = Duration::from_secs(30);
/// The underlay: node `i` (from 1) is 192.168.200.i.
const UNDERLAY: &str = "192.168.200";

fn node_ip(i: usize) -> String {
    format!("{UNDERLAY}.{i}")
}

fn pod_cidr(i: usize) -> String {
    format!("10.244.{i}.0/24")
}

/// One node: its namespace (holding its end of the underlay, `ul0`) and its switch.
struct Node {
    name: String,
    index: usize,
    ns: Netns,
    daemon: Option<Daemon>,
}

impl Node {
    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("a switch on this node")
    }

    fn ctl(&self, args: &[&str]) -> String {
        self.daemon().ctl_ok(args)
    }

    /// `vswitchctl add-node` for node `i` (from 1) of the cluster.
    fn add_node(&self, i: usize) -> String {
        let name = format!("node-{i}");
        self.ctl(&[
            "add-node",
            &name,
            "--pod-cidr",
            &pod_cidr(i),
            "--node-ip",
            &node_ip(i),
        ])
    }
}

/// A Pod: its namespace and address, on node `node`.
struct Pod {
    ns: Netns,
    ip: String,
    node: usize,
}

/// Nodes on one underlay segment (a bridge in a namespace of its own), a switch on each of
/// the first `switches`.
struct Cluster {
    /// Holds the underlay's bridge (removed with it).
    _underlay: Netns,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
}

impl Cluster {
    fn new(nodes: usize, switches: usize, extra: &[&str]) -> Cluster {
        vswitch_tests::e2e::require_root(TOOLS);
        let underlay = Netns::new();
        underlay.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        underlay.exec_ok(&["ip", "link", "set", "br0", "up"]);
        let mut all = Vec::new();
        for i in 1..=nodes {
            let ns = Netns::new();
            let port = format!("n{i}");
            vswitch_tests::e2e::run_ok(
                "ip",
                &[
                    "link",
                    "add",
                    "ul0",
                    "netns",
                    ns.name(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    underlay.name(),
                ],
            );
            underlay.exec_ok(&["ip", "link", "set", &port, "master", "br0", "up"]);
            ns.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", node_ip(i)),
                "dev",
                "ul0",
            ]);
            ns.exec_ok(&["ip", "link", "set", "ul0", "up"]);
            let name = format!("node-{i}");
            let daemon = (i <= switches).then(|| {
                let (ip, cidr) = (node_ip(i), pod_cidr(i));
                let mut flags = vec!["--node-ip", &ip, "--pod-cidr", &cidr, "--node-name", &name];
                flags.extend_from_slice(extra);
                Daemon::start_in(&ns, &flags)
            });
            all.push(Node {
                name,
                index: i,
                ns,
                daemon,
            });
        }
        Cluster {
            _underlay: underlay,
            nodes: all,
            pods: Vec::new(),
        }
    }

    /// Every switch learns every other node (with `add-node`).
    fn join_all(&self) {
        for a in self.nodes.iter().filter(|n| n.daemon.is_some()) {
            for b in self.nodes.iter().filter(|b| b.index != a.index) {
                a.add_node(b.index);
            }
        }
    }

    /// A Pod on node `i` (from 1), attached through vswitch-cni as containerd does.
    fn add_pod(&mut self, i: usize) -> usize {
        let node = &self.nodes[i - 1];
        let ns = Netns::new();
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": "overlay",
            "type": "vswitch-cni",
            "socket": node.daemon().socket(),
        });
        let env = CniEnv::new(&unique("c").replace('-', ""), &ns.path(), "eth0");
        let out = exec_plugin(&bin("vswitch-cni"), "ADD", &env, &conf, CNI_TIMEOUT);
        assert!(
            out.success(),
            "ADD on {}: {:?}\n{}",
            node.name,
            out.error(),
            node.daemon().diagnostics()
        );
        let result = out.json.expect("a result");
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .expect("an address")
            .to_string();
        self.pods.push(Pod { ns, ip, node: i });
        self.pods.len() - 1
    }

    /// Two nodes, each told of the other, and a Pod on each (their indexes).
    fn joined_with_a_pod_each(extra: &[&str]) -> (Cluster, usize, usize) {
        let mut c = Cluster::new(2, 2, extra);
        c.join_all();
        let a = c.add_pod(1);
        let b = c.add_pod(2);
        (c, a, b)
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }
}

/// A UDP datagram from `from` to `to_ip:port`; what the receiver saw as the source address.
fn udp_source_seen(from: &Netns, to: &Netns, to_ip: &str, port: u16) -> String {
    let listener = to.spawn(&[
        "timeout",
        "10",
        "python3",
        "-c",
        &format!(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('0.0.0.0', {port})); d, a = s.recvfrom(2048); print(a[0], d.decode())"
        ),
    ]);
    let bound = wait_until(Duration::from_secs(5), || {
        !to.exec_ok(&["ss", "-Hlun", &format!("sport = :{port}")])
            .trim()
            .is_empty()
    });
    assert!(bound, "the UDP listener did not bind");
    for _ in 0..5 {
        from.exec_ok(&[
            "python3",
            "-c",
            &format!(
                "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                 s.sendto(b'hello', ('{to_ip}', {port}))"
            ),
        ]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = listener.finish(Duration::from_secs(10));
    let text = stdout(&out);
    assert!(text.contains("hello"), "no datagram arrived: {text}");
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The tunnel port as `list-ports` shows it.
fn tunnel_port(d: &Daemon) -> Value {
    d.ports()
        .into_iter()
        .find(|p| p["name"] == "vsw-tun0")
        .expect("the tunnel port is listed")
}

/// Flows whose cookie says they are a remote node's (0x03...).
fn node_flows(d: &Daemon) -> usize {
    d.flows(None)
        .iter()
        .filter(|f| f["cookie"].as_str().is_some_and(|c| c.starts_with("0x3")))
        .count()
}

fn ttl_of_reply(p: &vswitch_tests::e2e::Ping) -> Option<u32> {
    p.output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ttl="))
        .and_then(|t| t.parse().ok())
}

#[test]
#[ignore = "needs root"]
fn pods_on_two_nodes_reach_each_other_with_their_own_addresses() {
    let _serial = serial();
    let mut c = Cluster::new(2, 2, &[]);
    c.join_all();
    for i in [1, 1, 2, 2] {
        c.add_pod(i);
    }
    // The Pods' MTU is the underlay's (1500) less the VXLAN overhead.
    let mtu = c.pods[0].ns.exec_ok(&["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1450");
    let targets: Vec<String> = c.pods.iter().map(|p| p.ip.clone()).collect();
    let sources: Vec<(&Netns, String)> = c.pods.iter().map(|p| (&p.ns, p.ip.clone())).collect();
    let failed = unreachable_pairs(&sources, &targets);
    assert!(
        failed.is_empty(),
        "unreachable: {failed:?}\n{}",
        c.node(1).daemon().diagnostics()
    );
    // Each node reaches every Pod, its own and the other node's.
    for n in &c.nodes {
        let gw = format!("10.244.{}.1", n.index);
        let failed = unreachable_pairs(&[(&n.ns, gw)], &targets);
        assert!(failed.is_empty(), "from {}: {failed:?}", n.name);
    }
    // A Pod reaches the other node's own address too (through its node, which forwards).
    let p = ping(&c.pods[0].ns, &node_ip(2), 2);
    assert_eq!(p.received, 2, "{}", p.output);
    // One router hop across the overlay: the TTL is decremented once, by the sender's
    // switch (as Antrea does), not again by the receiver's.
    let p = ping(&c.pods[0].ns, &c.pods[2].ip, 1);
    assert_eq!(ttl_of_reply(&p), Some(63), "{}", p.output);

    // 100 MB of TCP each way across the nodes.
    let (a, b) = (&c.pods[0], &c.pods[3]);
    assert_ne!(a.node, b.node);
    let r = tcp_transfer(&a.ns, &b.ns, &b.ip, "110M");
    assert!(r.ok && r.received_bytes >= 100_000_000, "{}", r.output);
    let r = tcp_transfer(&b.ns, &a.ns, &a.ip, "110M");
    assert!(r.ok && r.received_bytes >= 100_000_000, "{}", r.output);
    // UDP, and the receiver sees the sender's own Pod address (no NAT).
    assert_eq!(udp_source_seen(&a.ns, &b.ns, &b.ip, 9999), a.ip);
    assert_eq!(udp_source_seen(&b.ns, &a.ns, &a.ip, 9998), b.ip);
    // The node's flows name each remote node; the tunnel counted both directions.
    for n in &c.nodes {
        assert!(node_flows(n.daemon()) >= 2, "{}", n.name);
        let tun = n.daemon().port_stats("vsw-tun0");
        assert!(tun["rx_packets"].as_u64() > Some(1000), "{tun}");
        assert!(tun["tx_packets"].as_u64() > Some(1000), "{tun}");
    }
    let nodes = c.node(1).daemon().ctl_json(&["list-nodes"]);
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .or(nodes.as_array())
        .map(|a| a.iter().filter_map(|n| n["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["node-1", "node-2"], "{nodes}");
}

#[test]
#[ignore = "needs root"]
fn removing_a_node_stops_its_traffic_and_adding_it_back_restores_it() {
    let _serial = serial();
    let (mut c, a, b) = Cluster::joined_with_a_pod_each(&[]);
    let (pa, pb) = (&c.pods[a], &c.pods[b]);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));
    let n1 = c.node(1);
    let before = node_flows(n1.daemon());
    assert!(before >= 2);
    n1.ctl(&["del-node", "node-2"]);
    assert_eq!(node_flows(n1.daemon()), 0);
    assert_eq!(
        ping(&pa.ns, &pb.ip, 2).received,
        0,
        "traffic to a removed node"
    );
    let routes = n1.ns.exec_ok(&["ip", "route", "show", "10.244.2.0/24"]);
    assert!(routes.trim().is_empty(), "route left: {routes}");
    // Unknown now: del-node says so.
    let out = n1.daemon().ctl(&["del-node", "node-2"]);
    assert_eq!(out.status.code(), Some(1));
    n1.add_node(2);
    assert_eq!(node_flows(n1.daemon()), before);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));

    // Nodes are persisted: after kill -9 and a new start, traffic passes again, and the
    // tunnel keeps its port number.
    let tunnel_no = |d: &Daemon| tunnel_port(d)["no"].clone();
    let before_no = tunnel_no(c.node(1).daemon());
    let n1 = &mut c.nodes[0];
    let d = n1.daemon.as_mut().expect("a switch");
    d.kill9();
    d.restart();
    let (pa, pb) = (&c.pods[a], &c.pods[b]);
    assert!(
        ping_until(&pa.ns, &pb.ip, Duration::from_secs(10)),
        "{}",
        c.node(1).daemon().diagnostics()
    );
    assert_eq!(node_flows(c.node(1).daemon()), before);
    assert_eq!(tunnel_no(c.node(1).daemon()), before_no);
}

#[test]
#[ignore = "needs root"]
fn a_packet_too_big_for_the_tunnel_gets_fragmentation_needed() {
    let _serial = serial();
    // Pods keep the underlay's MTU: what they send full-size cannot cross whole.
    let (c, a, b) = Cluster::joined_with_a_pod_each(&["--pod-mtu", "1500"]);
    let (pa, pb) = (&c.pods[a], &c.pods[b]);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));
    let out = pa.ns.exec(&[
        "timeout", "5", "ping", "-n", "-c", "2", "-i", "0.3", "-W", "1", "-M", "do", "-s", "1472",
        &pb.ip,
    ]);
    let text = format!("{}{}", stdout(&out), vswitch_tests::e2e::stderr(&out));
    assert!(
        text.contains("Frag needed and DF set (mtu = 1450)")
            || text.contains("message too long, mtu=1450"),
        "{text}"
    );
    let route = pa.ns.exec_ok(&["ip", "route", "get", &pb.ip]);
    assert!(
        route.contains("mtu 1450"),
        "the sender learnt no path MTU: {route}"
    );
    // A fresh TCP connection at full size adjusts and completes, both ways.
    pa.ns.exec_ok(&["ip", "route", "flush", "cache"]);
    let r = tcp_transfer(&pa.ns, &pb.ns, &pb.ip, "110M");
    assert!(r.ok && r.received_bytes >= 100_000_000, "{}", r.output);
    let r = tcp_transfer(&pb.ns, &pa.ns, &pa.ip, "110M");
    assert!(r.ok && r.received_bytes >= 100_000_000, "{}", r.output);
}

/// The kernel's own VXLAN on node 2, as Flannel's vxlan backend sets it up: a `vxlan`
/// device (VNI 1, port 4789) carrying the node's gateway MAC, a bridge for its Pods, and
/// for our node a route via our gateway onlink, a permanent neighbour and an FDB entry.
struct KernelNode {
    pod: Netns,
}

fn kernel_node(node: &Netns) -> KernelNode {
    let x = |args: &[&str]| node.exec_ok(args);
    x(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    x(&[
        "ip",
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "4789",
        "local",
        &node_ip(2),
        "dev",
        "ul0",
        "nolearning",
    ]);
    x(&[
        "ip",
        "link",
        "set",
        "vx0",
        "address",
        "0a:58:0a:f4:02:01",
        "mtu",
        "1450",
        "up",
    ]);
    x(&["ip", "addr", "add", "10.244.2.0/32", "dev", "vx0"]);
    x(&["ip", "link", "add", "cni0", "type", "bridge"]);
    x(&["ip", "addr", "add", "10.244.2.1/24", "dev", "cni0"]);
    x(&["ip", "link", "set", "cni0", "mtu", "1450", "up"]);
    x(&[
        "ip",
        "route",
        "add",
        "10.244.1.0/24",
        "via",
        "10.244.1.1",
        "dev",
        "vx0",
        "onlink",
    ]);
    x(&[
        "ip",
        "neigh",
        "add",
        "10.244.1.1",
        "lladdr",
        "0a:58:0a:f4:01:01",
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
    x(&[
        "bridge",
        "fdb",
        "append",
        "0a:58:0a:f4:01:01",
        "dev",
        "vx0",
        "dst",
        &node_ip(1),
    ]);
    let pod = Netns::new();
    vswitch_tests::e2e::run_ok(
        "ip",
        &[
            "link",
            "add",
            "eth0",
            "netns",
            pod.name(),
            "type",
            "veth",
            "peer",
            "name",
            "vethp",
            "netns",
            node.name(),
        ],
    );
    x(&[
        "ip", "link", "set", "vethp", "master", "cni0", "mtu", "1450", "up",
    ]);
    let p = |args: &[&str]| pod.exec_ok(args);
    p(&["ip", "link", "set", "eth0", "mtu", "1450", "up"]);
    p(&["ip", "addr", "add", "10.244.2.2/24", "dev", "eth0"]);
    p(&["ip", "route", "add", "default", "via", "10.244.2.1"]);
    KernelNode { pod }
}

/// A tcpdump of VXLAN on node `ns`'s underlay, `count` packets or `secs` seconds.
fn capture(ns: &Netns, count: u32, secs: u32) -> Bg {
    let bg = ns.spawn(&[
        "timeout",
        &secs.to_string(),
        "tcpdump",
        "-l",
        "-nn",
        "-vv",
        "-i",
        "ul0",
        "-c",
        &count.to_string(),
        "udp",
        "port",
        "4789",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    bg
}

#[test]
#[ignore = "needs root"]
fn interoperates_with_the_kernel_vxlan_device() {
    let _serial = serial();
    let mut c = Cluster::new(2, 1, &[]);
    let k = kernel_node(&c.node(2).ns);
    c.node(1).add_node(2);
    // Checksums computed on the underlay, not left to an offload, so that the capture
    // sees them as a wire would.
    for i in [1, 2] {
        c.node(i).ns.exec_ok(&["ethtool", "-K", "ul0", "tx", "off"]);
    }
    let a = c.add_pod(1);
    let pa = &c.pods[a];
    let cap = capture(&c.node(1).ns, 8, 8);
    assert!(
        ping_until(&pa.ns, "10.244.2.2", Duration::from_secs(5)),
        "{}",
        c.node(1).daemon().diagnostics()
    );
    assert_eq!(ping(&k.pod, &pa.ip, 3).received, 3);
    assert_eq!(ping(&c.node(1).ns, "10.244.2.2", 2).received, 2);
    let dump = stdout(&cap.finish(Duration::from_secs(10)));
    // Ours decode as VXLAN (I flag, VNI 1) carrying the Pods' ICMP, every checksum good.
    assert!(dump.contains("VXLAN, flags [I] (0x08), vni 1"), "{dump}");
    assert!(
        dump.contains(&format!("{} > 10.244.2.2: ICMP echo request", pa.ip)),
        "{dump}"
    );
    let outer = dump
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{}.", node_ip(1))))
        .unwrap_or_default();
    assert!(
        outer.contains(&format!(" > {}.4789: ", node_ip(2))),
        "{dump}"
    );
    assert!(
        dump.contains("[udp sum ok]") || dump.contains("[no cksum]"),
        "{dump}"
    );
    for bad in ["bad cksum", "bad udp cksum", "incorrect"] {
        assert!(!dump.contains(bad), "{bad}: {dump}");
    }
    // TCP both ways, with the TSO super-frames cut by our switch: the inner TCP checksums
    // of what we send are checked by tcpdump too.
    let srv = iperf_server(&k.pod, 5201, 30);
    let cap = capture(&c.node(1).ns, 60, 10);
    let args = iperf_client_args("10.244.2.2", 5201, 20, &["-n", "60M"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = iperf_report(&pa.ns.exec(&args));
    drop(srv);
    assert!(r.ok && r.received_bytes >= 50_000_000, "{}", r.output);
    let dump = stdout(&cap.finish(Duration::from_secs(15)));
    let ours = format!("{}.", pa.ip);
    let tcp_lines: Vec<&str> = dump
        .lines()
        .filter(|l| l.trim_start().starts_with(&ours) && l.contains("Flags"))
        .collect();
    assert!(!tcp_lines.is_empty(), "{dump}");
    for l in &tcp_lines {
        assert!(
            l.contains("(correct)"),
            "inner TCP checksum not correct: {l}\n{dump}"
        );
    }
    let r = tcp_transfer(&k.pod, &pa.ns, &pa.ip, "60M");
    assert!(r.ok && r.received_bytes >= 50_000_000, "{}", r.output);
}

#[test]
#[ignore = "needs root"]
fn malformed_vxlan_is_dropped_and_counted() {
    let _serial = serial();
    let (c, a, b) = Cluster::joined_with_a_pod_each(&[]);
    let n1 = c.node(1).daemon();
    let before = n1.port_stats("vsw-tun0");
    let unknown_vni = |d: &Daemon| -> u64 {
        d.flows(Some("table=0"))
            .iter()
            .find(|f| {
                f["priority"] == 190
                    && f["match"].as_str().is_some_and(|m| !m.contains("tun_id"))
                    && f["actions"].as_str() == Some("drop")
                    && f["match"].as_str().is_some_and(|m| m.contains("in_port"))
            })
            .and_then(|f| f["n_packets"].as_u64())
            .unwrap_or(u64::MAX)
    };
    let dropped_by_vni = unknown_vni(n1);
    // From node 2's underlay address, to node 1's VXLAN port: a 4-byte datagram, one
    // without the I flag, and one with VNI 99 around a valid frame (a local experimental
    // EtherType: only the VNI stops it). Then valid VXLAN around an ICMP echo to the Pod
    // on node 1 that the pipeline must refuse: from node 2 but with a source address of
    // node 1's Pod CIDR, and from an underlay address that is no node's.
    let pod_a = c.pods[a].ip.clone();
    c.node(2)
        .ns
        .exec_ok(&["ip", "addr", "add", "192.168.200.66/24", "dev", "ul0"]);
    let script = [
        "import socket, struct".to_string(),
        "def csum(b):".into(),
        "    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))".into(),
        "    s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)".into(),
        "    return (~s) & 0xffff".into(),
        "def echo(src, dst):".into(),
        "    icmp = struct.pack('!BBHHH', 8, 0, 0, 1, 1) + bytes(32)".into(),
        "    icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]".into(),
        "    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,".into(),
        "        socket.inet_aton(src), socket.inet_aton(dst))".into(),
        "    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]".into(),
        "    return bytes.fromhex('0a580af401010a580af402010800') + ip + icmp".into(),
        "vxlan = lambda vni: b'\\x08\\x00\\x00\\x00' + struct.pack('!I', vni << 8)".into(),
        "other = bytes.fromhex('0a580af401010a580af4020188b5') + bytes(46)".into(),
        "def send(src, datagrams):".into(),
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)".into(),
        "    s.bind((src, 0))".into(),
        format!(
            "    [s.sendto(d, ('{}', 4789)) for d in datagrams]",
            node_ip(1)
        ),
        format!(
            "send('{}', [b'\\x08\\x00\\x00\\x00', b'\\x00' * 8 + other, vxlan(99) + other,",
            node_ip(2)
        ),
        format!("    vxlan(1) + echo('10.244.1.99', '{pod_a}')])"),
        format!("send('192.168.200.66', [vxlan(1) + echo('10.244.2.9', '{pod_a}')])"),
    ]
    .join("\n");
    c.node(2).ns.exec_ok(&["python3", "-c", &script]);
    let counted = wait_until(Duration::from_secs(5), || {
        let now = n1.port_stats("vsw-tun0");
        now["rx_dropped"].as_u64() >= before["rx_dropped"].as_u64().map(|d| d + 2)
    });
    assert!(counted, "{}", n1.port_stats("vsw-tun0"));
    // Rule counters are brought up to date about once a second.
    let counted = wait_until(Duration::from_secs(5), || {
        unknown_vni(n1) == dropped_by_vni + 3
    });
    assert!(counted, "{:?}", n1.flows(Some("table=0")));
    // The switch runs on; traffic passes.
    let (pa, pb) = (&c.pods[a], &c.pods[b]);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));
}

#[test]
#[ignore = "needs root"]
fn nodes_come_from_kubernetes_manifests() {
    let _serial = serial();
    let mut c = Cluster::new(2, 2, &[]);
    let a = c.add_pod(1);
    let b = c.add_pod(2);
    // What `kubectl get nodes -o yaml` gives, less most of it: a List of both nodes (each
    // switch finds itself in it), then a kind the switch does not handle, then a Node with a broken CIDR.
    let manifest = format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - apiVersion: v1\n  kind: Node\n  metadata:\n    name: node-1\n    labels: {{kubernetes.io/os: linux}}\n  spec:\n    podCIDR: {c1}\n    podCIDRs: [{c1}]\n  status:\n    addresses:\n    - {{type: InternalIP, address: {ip1}}}\n    - {{type: Hostname, address: node-1}}\n\
         - apiVersion: v1\n  kind: Node\n  metadata:\n    name: node-2\n  spec:\n    podCIDR: {c2}\n  status:\n    addresses:\n    - {{type: InternalIP, address: {ip2}}}\n\
         ---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata: {{a: b}}\n\
         ---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-9\nspec:\n  podCIDR: 10.244.9.0/33\nstatus:\n  addresses: [{{type: InternalIP, address: 192.168.200.9}}]\n",
        c1 = pod_cidr(1),
        c2 = pod_cidr(2),
        ip1 = node_ip(1),
        ip2 = node_ip(2),
    );
    let file = c.node(1).daemon().dir().join("nodes.yaml");
    std::fs::write(&file, &manifest).expect("write the manifest");
    let file = file.to_str().expect("a UTF-8 path");
    for n in &c.nodes {
        let out = n.daemon().ctl(&["apply", "-f", file]);
        let (text, err) = (stdout(&out), vswitch_tests::e2e::stderr(&out));
        // One error among the objects: exit 1, after every other object was applied.
        assert_eq!(out.status.code(), Some(1), "{text}{err}");
        let other = if n.index == 1 { "node-2" } else { "node-1" };
        assert!(
            text.contains(&format!("node/{} unchanged", n.name)),
            "{text}"
        );
        assert!(text.contains(&format!("node/{other} created")), "{text}");
        assert!(text.contains("configmap/web skipped"), "{text}");
        assert!(
            err.contains("document 3")
                && err.contains("node/node-9")
                && err.contains("spec.podCIDR"),
            "{err}"
        );
    }
    let (pa, pb) = (&c.pods[a], &c.pods[b]);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));
    let nodes = c.node(1).ctl(&["get", "nodes"]);
    assert!(
        nodes.contains("node-1") && nodes.contains("node-2"),
        "{nodes}"
    );
    assert!(!nodes.contains("node-9"), "{nodes}");
    // The same again changes nothing.
    let out = c.node(1).daemon().ctl(&["apply", "-f", file]);
    assert!(
        stdout(&out).contains("node/node-2 unchanged"),
        "{}",
        stdout(&out)
    );
    // delete -f takes the remote node away (this node stays), and its traffic with it.
    let out = c.node(1).daemon().ctl(&["delete", "-f", file]);
    let text = stdout(&out);
    assert!(text.contains("node/node-2 deleted"), "{text}");
    assert_eq!(node_flows(c.node(1).daemon()), 0);
    assert_eq!(ping(&pa.ns, &pb.ip, 2).received, 0);
    // A manifest that does not parse is refused whole, naming the line.
    std::fs::write(
        c.node(1).daemon().dir().join("bad.yaml"),
        "kind: Node\n  bad: [\n",
    )
    .expect("write");
    let bad = c.node(1).daemon().dir().join("bad.yaml");
    let out = c
        .node(1)
        .daemon()
        .ctl(&["apply", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        vswitch_tests::e2e::stderr(&out).contains("bad.yaml"),
        "{}",
        show_out(&out)
    );

    // A manifest is saved once, before the answer; when that save fails nothing of it
    // stays: no rules, no route, no traffic (the journal cannot be written).
    let d = c.node(1).daemon();
    let route = |n: &Node| n.ns.exec_ok(&["ip", "route", "show", &pod_cidr(2)]);
    let blocker = d.block_saves();
    let out = d.ctl(&["apply", "-f", file]);
    assert_eq!(out.status.code(), Some(1), "{}", show_out(&out));
    assert!(show_out(&out).contains("not applied"), "{}", show_out(&out));
    assert_eq!(node_flows(d), 0, "rules of a manifest that was not saved");
    assert_eq!(
        route(c.node(1)).trim(),
        "",
        "route of a manifest that was not saved"
    );
    assert_eq!(ping(&pa.ns, &pb.ip, 2).received, 0);
    drop(blocker);
    let out = d.ctl(&["apply", "-f", file]);
    assert!(
        stdout(&out).contains("node/node-2 created"),
        "{}",
        show_out(&out)
    );
    let flows = node_flows(d);
    assert!(flows > 0);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));
    // A change that cannot be saved leaves the node as it was, rules and route included.
    let moved = manifest.replace(&node_ip(2), "192.168.200.99");
    let moved_file = d.dir().join("moved.yaml");
    std::fs::write(&moved_file, moved).expect("write");
    let before = (route(c.node(1)), c.node(1).ctl(&["get", "nodes"]));
    let blocker = d.block_saves();
    let out = d.ctl(&["apply", "-f", moved_file.to_str().expect("utf-8")]);
    drop(blocker);
    assert!(show_out(&out).contains("not applied"), "{}", show_out(&out));
    assert_eq!((route(c.node(1)), c.node(1).ctl(&["get", "nodes"])), before);
    assert_eq!(node_flows(d), flows);
    assert!(ping_until(&pa.ns, &pb.ip, Duration::from_secs(5)));
}

fn show_out(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), vswitch_tests::e2e::stderr(out))
}

#[test]
#[ignore = "needs root"]
fn a_tunnel_that_cannot_open_leaves_the_node_its_pods() {
    let _serial = serial();
    // Node 1's VXLAN port is taken before its switch starts (a Flannel left behind).
    let c = Cluster::new(1, 0, &[]);
    let node = &c.node(1).ns;
    let holder = node.spawn(&[
        "timeout",
        "60",
        "python3",
        "-c",
        &format!(
            "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('{}', 4789)); time.sleep(60)",
            node_ip(1)
        ),
    ]);
    let bound = wait_until(Duration::from_secs(5), || {
        !node
            .exec_ok(&["ss", "-Hlun", "sport = :4789"])
            .trim()
            .is_empty()
    });
    assert!(bound);
    let (ip, cidr) = (node_ip(1), pod_cidr(1));
    let mut d = Daemon::start_in(node, &["--node-ip", &ip, "--pod-cidr", &cidr]);
    let tunnel = tunnel_port(&d);
    assert!(
        tunnel["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("missing")),
        "{tunnel}"
    );
    // The node still reaches its gateway's Pods' network.
    let gw = d.ctl_json(&["list-pods"]);
    assert_eq!(gw["gateway"], "10.244.1.1", "{gw}");
    // Once the port is free, the next start opens the tunnel (it was kept in the state).
    drop(holder);
    d.stop();
    d.restart();
    let tunnel = tunnel_port(&d);
    assert_eq!(tunnel["state"], "up", "{tunnel}");
}

/// A Service whose endpoints are on two nodes: a Pod's new connections to its cluster IP
/// are translated at the Pod's node and spread over both endpoints (the remote one through
/// the tunnel), every answer from the Service's address; the node with the endpoint
/// needs no Service of its own.
#[test]
#[ignore = "needs root"]
fn a_service_spreads_over_endpoints_on_two_nodes() {
    let _serial = serial();
    let (mut c, client, remote) = Cluster::joined_with_a_pod_each(&[]);
    let local = c.add_pod(1);
    let vip = "10.96.0.20";
    let servers: Vec<_> = [local, remote]
        .iter()
        .map(|&p| vswitch_tests::svc::server(&c.pods[p].ns, &c.pods[p].ip, 60))
        .collect();
    let eps = [c.pods[local].ip.clone(), c.pods[remote].ip.clone()];
    let objects = json!({ "apiVersion": "v1", "kind": "List", "items": [
        { "apiVersion": "v1", "kind": "Service",
          "metadata": { "name": "web", "namespace": "default" },
          "spec": { "clusterIP": vip, "ports": [
              { "name": "http", "port": 80, "targetPort": 8080 },
              { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353 } ] } },
        { "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": { "name": "web-1", "namespace": "default",
                        "labels": { "kubernetes.io/service-name": "web" } },
          "addressType": "IPv4",
          "ports": [ { "name": "http", "port": 8080 }, { "name": "dns", "port": 5353, "protocol": "UDP" } ],
          "endpoints": [
              { "addresses": [eps[0]], "nodeName": "node-1" },
              { "addresses": [eps[1]], "nodeName": "node-2" } ] } ] });
    let file = c.node(1).daemon().dir().join("web.json");
    std::fs::write(&file, objects.to_string()).unwrap();
    c.node(1).ctl(&["apply", "-f", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    for proto in ["tcp", "udp"] {
        let got = vswitch_tests::svc::exchanges(&c.pods[client].ns, vip, proto, 60);
        let answered: u32 = eps.iter().filter_map(|e| got.get(e.as_str())).sum();
        assert_eq!(answered, 60, "{proto}: {got:?}");
        assert_eq!(got.len(), 2, "{proto}: both endpoints, from {vip}: {got:?}");
    }
    drop(servers);
}
