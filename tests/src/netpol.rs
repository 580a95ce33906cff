//! NetworkPolicy end to end, modelled on the upstream Kubernetes suite
//! (test/e2e/network/netpol: model.go, reachability.go, probe.go): namespaces `x`, `y`, `z`
//! with Pods `a`, `b`, `c` in each, servers on ports 80 and 81 for TCP, UDP and SCTP (as
//! raw packets when the kernel has no SCTP sockets), and a probe from every Pod to every Pod compared with the
//! reachability expected, printed as upstream prints its truth tables.
//!
//! The cluster is two nodes (network namespaces on one underlay bridge), a `vswitchd` on
//! each with a VXLAN tunnel between them: Pods `a` and `b` of each namespace on node 1,
//! Pods `c` on node 2, each a TAP port added with `add-port --ip`. Both switches get every
//! Namespace, Pod and NetworkPolicy object (as an API watcher would give each node the
//! whole cluster); a Pod object binds to the local port holding its `status.podIP`.
//!
//! Each probe is also asked of `vswitchctl policy-check FROM TO PROTO PORT --json` on both
//! nodes (`{"verdict": "allow"|"deny"}`), and the verdicts must match what the traffic did;
//! when `vswitchctl` has no such command yet, that comparison is skipped with a note, and
//! `VSWITCH_NETPOL_POLICY_CHECK=0` turns it off.
//!
//! Traffic from a Pod to itself never reaches the switch (it stays on the Pod's loopback);
//! upstream ignores those cells (`ignoreLoopback`), and so does this harness.

use crate::e2e::{Bg, Daemon, Netns, require_root, run_ok, show, stderr, stdout, unique};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const POD_NAMES: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
/// The label every namespace gets from the API server.
pub const NS_NAME_LABEL: &str = "kubernetes.io/metadata.name";

const TOOLS: &[&str] = &["ip", "nsenter", "timeout", "python3", "ss"];
/// How long a probe waits for a connection and its answer (upstream: 1 s).
const PROBE_TIMEOUT_SECS: &str = "1";
/// Probes of a matrix that disagree with the expectation are tried this many times in all
/// (upstream probes again once; a policy change also needs time to reach both nodes).
const PROBE_ATTEMPTS: usize = 3;
/// The servers' lifetime: longer than any test here.
const SERVER_SECS: u32 = 1800;
const UNDERLAY: &str = "192.168.210";

/// A transport protocol of a probe, as a NetworkPolicy port names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// `TCP`, `UDP`, `SCTP`: the API's spelling.
    pub fn api(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }

    /// `tcp`, `udp`, `sctp`: what `policy-check` and the probe client take.
    pub fn lower(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

pub const ALL_PROTOS: [Proto; 3] = [Proto::Tcp, Proto::Udp, Proto::Sctp];

/// Every Pod of the model as `ns/pod`, in table order: x/a, x/b, x/c, y/a, ...
pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| POD_NAMES.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

fn split(pod: &str) -> (&str, &str) {
    pod.split_once('/')
        .unwrap_or_else(|| panic!("expected ns/pod, found {pod:?}"))
}

/// Which Pods a side of an expectation covers: an empty namespace or Pod name matches any
/// (upstream's `Peer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer<'a> {
    pub ns: Option<&'a str>,
    pub pod: Option<&'a str>,
}

impl<'a> Peer<'a> {
    pub fn any() -> Peer<'a> {
        Peer::default()
    }

    pub fn ns(ns: &'a str) -> Peer<'a> {
        Peer {
            ns: Some(ns),
            pod: None,
        }
    }

    pub fn pod(ns: &'a str, pod: &'a str) -> Peer<'a> {
        Peer {
            ns: Some(ns),
            pod: Some(pod),
        }
    }

    fn matches(&self, pod: &str) -> bool {
        let (ns, name) = split(pod);
        self.ns.is_none_or(|n| n == ns) && self.pod.is_none_or(|p| p == name)
    }
}

/// The connectivity expected between every pair of Pods (upstream's `Reachability`):
/// start from all-true or all-false and set the exceptions.
#[derive(Debug, Clone)]
pub struct Reachability {
    pods: Vec<String>,
    expected: Vec<Vec<bool>>,
}

impl Reachability {
    pub fn new(default: bool) -> Reachability {
        let pods = all_pods();
        let n = pods.len();
        Reachability {
            pods,
            expected: vec![vec![default; n]; n],
        }
    }

    fn index(&self, pod: &str) -> usize {
        self.pods
            .iter()
            .position(|p| p == pod)
            .unwrap_or_else(|| panic!("no Pod {pod} in the model"))
    }

    /// One cell: `from` (`ns/pod`) to `to`.
    pub fn expect(mut self, from: &str, to: &str, connected: bool) -> Reachability {
        let (f, t) = (self.index(from), self.index(to));
        self.expected[f][t] = connected;
        self
    }

    /// Everything into `pod`.
    pub fn expect_all_ingress(self, pod: &str, connected: bool) -> Reachability {
        let (ns, name) = split(pod);
        self.expect_peer(Peer::any(), Peer::pod(ns, name), connected)
    }

    /// Everything out of `pod`.
    pub fn expect_all_egress(self, pod: &str, connected: bool) -> Reachability {
        let (ns, name) = split(pod);
        self.expect_peer(Peer::pod(ns, name), Peer::any(), connected)
    }

    /// Every pair whose source `from` matches and whose destination `to` matches.
    pub fn expect_peer(mut self, from: Peer, to: Peer, connected: bool) -> Reachability {
        for f in 0..self.pods.len() {
            for t in 0..self.pods.len() {
                if from.matches(&self.pods[f]) && to.matches(&self.pods[t]) {
                    self.expected[f][t] = connected;
                }
            }
        }
        self
    }

    pub fn get(&self, from: usize, to: usize) -> bool {
        self.expected[from][to]
    }
}

/// A truth table as upstream prints it: `.` connected, `X` not; `mark` chooses each cell.
fn table(pods: &[String], mut mark: impl FnMut(usize, usize) -> &'static str) -> String {
    let mut s = String::from("-\t");
    s.push_str(&pods.join("\t"));
    s.push('\n');
    for (f, from) in pods.iter().enumerate() {
        s.push_str(from);
        for t in 0..pods.len() {
            s.push('\t');
            s.push_str(mark(f, t));
        }
        s.push('\n');
    }
    s
}

fn dot(b: bool) -> &'static str {
    if b { "." } else { "X" }
}

// ---- the cluster ------------------------------------------------------------------------

/// One Pod of the model: its namespace standing for it, its address and node (1 or 2).
#[derive(Debug)]
pub struct ModelPod {
    pub ns: &'static str,
    pub name: &'static str,
    pub ip: String,
    pub node: usize,
    pub netns: Netns,
}

impl ModelPod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
}

/// Whether `policy-check` is compared with the probes.
#[derive(Debug, Clone)]
pub enum PolicyCheck {
    On,
    Off(String),
}

/// The two-node cluster with the nine Pods, their servers running and every Namespace and
/// Pod object applied on both switches. Fields drop in order: servers, switches, Pods,
/// nodes, underlay.
#[derive(Debug)]
pub struct Cluster {
    servers: Vec<Bg>,
    daemons: Vec<Daemon>,
    pub pods: Vec<ModelPod>,
    nodes: Vec<Netns>,
    _underlay: Netns,
    pub policy_check: PolicyCheck,
    /// Whether this kernel has SCTP sockets; without them SCTP is probed with raw packets.
    pub sctp: bool,
}

fn node_ip(i: usize) -> String {
    format!("{UNDERLAY}.{i}")
}

fn pod_cidr(i: usize) -> String {
    format!("10.244.{i}.0/24")
}

/// Whether SCTP sockets can be opened here (loading the module first if we may).
pub fn sctp_available() -> bool {
    let _ = std::process::Command::new("modprobe")
        .arg("sctp")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    crate::e2e::run(
        "python3",
        &[
            "-c",
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)",
        ],
    )
    .status
    .success()
}

/// SCTP as raw packets (IP protocol 132), for a kernel without SCTP sockets: an INIT
/// chunk one way, an INIT ACK the other with the answering Pod's name in its state
/// cookie, each with its CRC-32C. The switch sees an SCTP association start and its
/// answer, as it would between kernels that speak SCTP; neither end's kernel takes part
/// (a raw socket of the protocol keeps it from answering "protocol unreachable").
const SCTP_RAW: &str = r#"
import os, struct
def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t
_T = _table()
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
def sctp_packet(sport, dport, vtag, chunk):
    p = struct.pack("!HHII", sport, dport, vtag, 0) + chunk
    return p[:8] + struct.pack("<I", crc32c(p)) + p[12:]
def init_chunk(tag):
    return struct.pack("!BBHIIHHI", 1, 0, 20, tag, 65535, 1, 1, tag)
def init_ack_chunk(tag, cookie):
    param = struct.pack("!HH", 7, 4 + len(cookie)) + cookie
    param += b"\0" * (-len(param) % 4)
    return struct.pack("!BBHIIHHI", 2, 0, 20 + len(param), tag, 65535, 1, 1, tag) + param
def parse(d):
    """(source IP, sport, dport, vtag, chunk type, chunk) of an IPv4 packet of SCTP."""
    ihl = (d[0] & 15) * 4
    s = d[ihl:]
    if len(s) < 16:
        return None
    sport, dport, vtag = struct.unpack("!HHI", s[:8])
    src = ".".join(str(x) for x in d[12:16])
    return src, sport, dport, vtag, s[12], s[12:]
def cookie_of(chunk):
    at = 20
    while at + 4 <= len(chunk):
        t, n = struct.unpack("!HH", chunk[at:at + 4])
        if n < 4:
            break
        if t == 7:
            return chunk[at + 4:at + n]
        at += n + (-n % 4)
    return b""
"#;

/// The server of every Pod: for each port, a TCP listener (and an SCTP one when `sctp`)
/// that sends the Pod's name (`x/a\n`) and then echoes what it gets, and a UDP socket that
/// answers each datagram with the Pod's name and the datagram. Without SCTP sockets, a raw
/// socket answers each SCTP INIT to one of the ports with an INIT ACK carrying the name
/// ([`SCTP_RAW`]).
const SERVER: &str = r#"
import socket, sys, threading
name, sctp = sys.argv[1].encode(), sys.argv[2] == "1"
ports = [int(p) for p in sys.argv[3:]]
def handle(c):
    try:
        c.settimeout(60)
        c.sendall(name + b"\n")
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
def stream(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
def dgram(u):
    while True:
        d, peer = u.recvfrom(2048)
        u.sendto(name + b" " + d, peer)
for p in ports:
    kinds = [(socket.SOCK_STREAM, 0)] + ([(socket.SOCK_STREAM, socket.IPPROTO_SCTP)] if sctp else [])
    for kind, proto in kinds:
        s = socket.socket(socket.AF_INET, kind, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", p)); s.listen(128)
        threading.Thread(target=stream, args=(s,), daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", p))
    threading.Thread(target=dgram, args=(u,), daemon=True).start()
def sctp_raw():
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    while True:
        d, (src, _) = r.recvfrom(65535)
        got = parse(d)
        if got is None or got[4] != 1 or got[2] not in ports:
            continue
        _, sport, dport, _, _, chunk = got
        tag = int.from_bytes(chunk[4:8], "big")
        r.sendto(sctp_packet(dport, sport, tag, init_ack_chunk(tag ^ 0x5a5a5a5a, name)), (src, 0))
if not sctp:
    threading.Thread(target=sctp_raw, daemon=True).start()
threading.Event().wait()
"#;

/// The probe client: from one Pod to each target (`ns/pod=IP`) at once, a thread each; a
/// JSON object of target to outcome: `ok`, `wrong:NAME` (another Pod answered), or why
/// not (`timeout`, `refused`, ...).
const PROBE: &str = r#"
import errno, json, socket, sys, threading, time
proto, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = {}
def probe(target):
    name, ip = target.split("=")
    s = None
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            s.sendto(b"probe", (ip, port))
            data, _ = s.recvfrom(2048)
        elif proto == "sctp-raw":
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
            sport = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
            tag = 1 + int.from_bytes(os.urandom(4), "big") % 0xFFFFFFFE
            s.sendto(sctp_packet(sport, port, 0, init_chunk(tag)), (ip, 0))
            deadline = time.monotonic() + timeout
            data = None
            while data is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                s.settimeout(left)
                got = parse(s.recvfrom(65535)[0])
                if got and got[:4] == (ip, port, sport, tag) and got[4] == 2:
                    data = cookie_of(got[5]) or b"<empty>"
        else:
            p = socket.IPPROTO_SCTP if proto == "sctp" else 0
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, p)
            s.settimeout(timeout)
            s.connect((ip, port))
            data = s.recv(100)
        got = data.decode(errors="replace").split()[0] if data.split() else "<empty>"
        out[name] = "ok" if got == name else "wrong:" + got
    except socket.timeout:
        out[name] = "timeout"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
    finally:
        if s is not None:
            s.close()
threads = [threading.Thread(target=probe, args=(t,)) for t in sys.argv[4:]]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"#;

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster::new()
    }
}

impl Cluster {
    /// Two nodes and nine Pods, servers listening, objects applied on both switches.
    pub fn new() -> Cluster {
        require_root(TOOLS);
        let started = Instant::now();
        let sctp = sctp_available();
        let underlay = Netns::new();
        underlay.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        underlay.exec_ok(&["ip", "link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        let mut daemons = Vec::new();
        for i in 1..=2 {
            let ns = Netns::new();
            let port = unique("n").replace('-', "");
            let port = &port[port.len().saturating_sub(15)..];
            run_ok(
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
                    port,
                    "netns",
                    underlay.name(),
                ],
            );
            underlay.exec_ok(&["ip", "link", "set", port, "master", "br0", "up"]);
            ns.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", node_ip(i)),
                "dev",
                "ul0",
            ]);
            ns.exec_ok(&["ip", "link", "set", "ul0", "up"]);
            let (ip, cidr, name) = (node_ip(i), pod_cidr(i), format!("node-{i}"));
            daemons.push(Daemon::start_in(
                &ns,
                &["--node-ip", &ip, "--pod-cidr", &cidr, "--node-name", &name],
            ));
            nodes.push(ns);
        }
        for (i, d) in daemons.iter().enumerate() {
            let other = 2 - i;
            d.ctl_ok(&[
                "add-node",
                &format!("node-{other}"),
                "--pod-cidr",
                &pod_cidr(other),
                "--node-ip",
                &node_ip(other),
            ]);
        }
        let mut pods = Vec::new();
        for (n, ns) in NAMESPACES.iter().enumerate() {
            for (p, name) in POD_NAMES.iter().enumerate() {
                let node = if *name == "c" { 2 } else { 1 };
                let ip = format!("10.244.{node}.{}", 10 + 10 * n + p);
                let netns = Netns::new();
                daemons[node - 1].ctl_ok(&[
                    "add-port",
                    &format!("{ns}-{name}"),
                    "--type",
                    "tap",
                    "--netns",
                    &netns.path(),
                    "--ifname",
                    "eth0",
                    "--ip",
                    &format!("{ip}/24"),
                    "--gateway",
                    &format!("10.244.{node}.1"),
                ]);
                pods.push(ModelPod {
                    ns,
                    name,
                    ip,
                    node,
                    netns,
                });
            }
        }
        let servers = pods
            .iter()
            .map(|p| {
                let mut args = vec![
                    "timeout".to_string(),
                    SERVER_SECS.to_string(),
                    "python3".into(),
                    "-c".into(),
                    format!("{SCTP_RAW}{SERVER}"),
                    p.id(),
                    if sctp { "1" } else { "0" }.into(),
                ];
                args.extend(PORTS.iter().map(u16::to_string));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                p.netns.spawn(&args)
            })
            .collect();
        let mut c = Cluster {
            servers,
            daemons,
            pods,
            nodes,
            _underlay: underlay,
            policy_check: PolicyCheck::On,
            sctp,
        };
        c.wait_for_servers();
        c.apply(&c.base_objects());
        c.policy_check = c.detect_policy_check();
        if !sctp {
            println!(
                "note: this kernel has no SCTP sockets: SCTP is probed with raw packets (INIT, INIT ACK)"
            );
        }
        if let PolicyCheck::Off(why) = &c.policy_check {
            println!("note: policy-check is not compared with the probes: {why}");
        }
        println!(
            "cluster up in {:.1?}: node-1 {:?}, node-2 {:?}",
            started.elapsed(),
            c.pods
                .iter()
                .filter(|p| p.node == 1)
                .map(|p| format!("{}={}", p.id(), p.ip))
                .collect::<Vec<_>>(),
            c.pods
                .iter()
                .filter(|p| p.node == 2)
                .map(|p| format!("{}={}", p.id(), p.ip))
                .collect::<Vec<_>>(),
        );
        c
    }

    /// The switch of node `i` (1 or 2).
    pub fn daemon(&self, i: usize) -> &Daemon {
        &self.daemons[i - 1]
    }

    pub fn pod(&self, id: &str) -> &ModelPod {
        self.pods
            .iter()
            .find(|p| p.id() == id)
            .unwrap_or_else(|| panic!("no Pod {id}"))
    }

    fn wait_for_servers(&mut self) {
        for p in &self.pods {
            let ready = crate::e2e::wait_until(Duration::from_secs(10), || {
                let tcp = p.netns.exec_ok(&["ss", "-Hltn"]);
                let udp = p.netns.exec_ok(&["ss", "-Hlun"]);
                PORTS.iter().all(|port| {
                    let s = format!(":{port} ");
                    tcp.contains(&s) && udp.contains(&s)
                })
            });
            if !ready {
                let bg =
                    &mut self.servers[self.pods.iter().position(|q| q.id() == p.id()).unwrap()];
                panic!(
                    "the server of {} did not listen on {PORTS:?} (running: {})",
                    p.id(),
                    bg.is_running()
                );
            }
        }
    }

    /// The Namespace and Pod objects with their default labels.
    pub fn base_objects(&self) -> Vec<Value> {
        let mut v: Vec<Value> = NAMESPACES.iter().map(|n| namespace(n, &[])).collect();
        v.extend(
            self.pods
                .iter()
                .map(|p| self.pod_object(p, &default_pod_labels(p.name))),
        );
        v
    }

    /// A Pod object as the API server shows it: labels, node, one container per port and
    /// protocol with upstream's port names (`serve-80-tcp`), Running with its address.
    pub fn pod_object(&self, p: &ModelPod, labels: &BTreeMap<String, String>) -> Value {
        let containers: Vec<Value> = PORTS
            .iter()
            .flat_map(|port| {
                ALL_PROTOS.iter().map(move |proto| {
                    let l = proto.lower();
                    json!({
                        "name": format!("cont-{port}-{l}"),
                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                        "ports": [{ "containerPort": port, "name": format!("serve-{port}-{l}"),
                                    "protocol": proto.api() }],
                    })
                })
            })
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": p.name, "namespace": p.ns, "labels": labels },
            "spec": { "nodeName": format!("node-{}", p.node), "containers": containers },
            "status": { "phase": "Running", "podIP": p.ip, "podIPs": [{ "ip": p.ip }] },
        })
    }

    /// `vswitchctl apply -f` of `objects` (one `List`) on both switches.
    pub fn apply(&self, objects: &[Value]) {
        self.each_switch("apply", objects);
    }

    /// `vswitchctl delete -f` of `objects` on both switches.
    pub fn delete(&self, objects: &[Value]) {
        self.each_switch("delete", objects);
    }

    fn each_switch(&self, verb: &str, objects: &[Value]) {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
        for d in &self.daemons {
            let f = d.dir().join(format!("{}.json", unique(verb)));
            std::fs::write(&f, list.to_string()).expect("write a manifest");
            d.ctl_ok(&[verb, "-f", f.to_str().expect("a UTF-8 path")]);
        }
    }

    fn detect_policy_check(&self) -> PolicyCheck {
        if std::env::var("VSWITCH_NETPOL_POLICY_CHECK").as_deref() == Ok("0") {
            return PolicyCheck::Off("VSWITCH_NETPOL_POLICY_CHECK=0".into());
        }
        let out = self
            .daemon(1)
            .ctl(&["--json", "policy-check", "x/a", "x/b", "tcp", "80"]);
        let err = stderr(&out);
        if !out.status.success()
            && (err.contains("unrecognized subcommand") || err.contains("unknown method"))
        {
            return PolicyCheck::Off(format!(
                "vswitchctl has no `policy-check` yet ({})",
                err.lines().next().unwrap_or_default().trim()
            ));
        }
        PolicyCheck::On
    }

    /// `policy-check FROM TO PROTO PORT --json` on node `node`: allow (true) or deny, or
    /// what went wrong.
    pub fn policy_check(
        &self,
        node: usize,
        from: &str,
        to: &str,
        proto: Proto,
        port: u16,
    ) -> Result<bool, String> {
        let port = port.to_string();
        let out =
            self.daemon(node)
                .ctl(&["--json", "policy-check", from, to, proto.lower(), &port]);
        if !out.status.success() {
            return Err(show(&out));
        }
        let v: Value = serde_json::from_str(&stdout(&out))
            .map_err(|e| format!("not JSON ({e}): {}", stdout(&out)))?;
        match v["verdict"].as_str() {
            Some("allow") => Ok(true),
            Some("deny") => Ok(false),
            _ => Err(format!("no verdict allow|deny in {v}")),
        }
    }

    /// One round of probes: for each source, the targets given (indexes into `pods`), all
    /// at once; the outcome of each (from, to).
    fn probe(
        &self,
        proto: Proto,
        port: u16,
        pairs: &[(usize, usize)],
    ) -> BTreeMap<(usize, usize), String> {
        let mut by_source: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(f, t) in pairs {
            by_source.entry(f).or_default().push(t);
        }
        let code = format!("{SCTP_RAW}{PROBE}");
        let proto_arg = match proto {
            Proto::Sctp if !self.sctp => "sctp-raw",
            _ => proto.lower(),
        };
        let (code, proto_arg) = (&code, proto_arg);
        std::thread::scope(|s| {
            let handles: Vec<_> = by_source
                .iter()
                .map(|(&f, targets)| {
                    s.spawn(move || {
                        let src = &self.pods[f];
                        let mut args: Vec<String> = [
                            "timeout",
                            "15",
                            "python3",
                            "-c",
                            code,
                            proto_arg,
                            &port.to_string(),
                            PROBE_TIMEOUT_SECS,
                        ]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                        args.extend(
                            targets
                                .iter()
                                .map(|&t| format!("{}={}", self.pods[t].id(), self.pods[t].ip)),
                        );
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        let out = src.netns.exec(&args);
                        let v: Value =
                            serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| {
                                panic!(
                                    "the probe client in {} printed no JSON ({e}): {}",
                                    src.id(),
                                    show(&out)
                                )
                            });
                        targets
                            .iter()
                            .map(|&t| {
                                let r = v[self.pods[t].id()]
                                    .as_str()
                                    .unwrap_or("missing")
                                    .to_string();
                                ((f, t), r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a probe thread"))
                .collect()
        })
    }

    /// Probes every pair on `proto`/`port` and compares with `reach` (and with
    /// `policy-check` when on); a readable report of what differs, or `Ok`.
    pub fn validate(&self, proto: Proto, port: u16, reach: &Reachability) -> Result<(), String> {
        let started = Instant::now();
        let n = self.pods.len();
        let names: Vec<String> = self.pods.iter().map(ModelPod::id).collect();
        assert_eq!(names, reach.pods, "the model's Pods and the expectation's");
        let every: Vec<(usize, usize)> = (0..n).flat_map(|f| (0..n).map(move |t| (f, t))).collect();
        let mut observed = self.probe(proto, port, &every);
        let wrong = |obs: &BTreeMap<(usize, usize), String>| -> Vec<(usize, usize)> {
            every
                .iter()
                .copied()
                .filter(|&(f, t)| f != t && (obs[&(f, t)] == "ok") != reach.get(f, t))
                .collect()
        };
        let mut attempts = 1;
        let mut bad = wrong(&observed);
        while !bad.is_empty() && attempts < PROBE_ATTEMPTS {
            std::thread::sleep(Duration::from_millis(500));
            observed.extend(self.probe(proto, port, &bad));
            attempts += 1;
            bad = wrong(&observed);
        }
        let connected = |f: usize, t: usize| observed[&(f, t)] == "ok";

        let mut report = String::new();
        if !bad.is_empty() {
            let _ = writeln!(
                report,
                "{proto:?}/{port}: {} of {} probes (loopback ignored) differ from the expectation after {attempts} attempts",
                bad.len(),
                n * (n - 1)
            );
            let _ = writeln!(
                report,
                "\nexpected:\n{}",
                table(&names, |f, t| dot(reach.get(f, t)))
            );
            let _ = writeln!(
                report,
                "observed:\n{}",
                table(&names, |f, t| dot(connected(f, t)))
            );
            let _ = writeln!(
                report,
                "comparison (. as expected, X differs, - loopback, ignored):\n{}",
                table(&names, |f, t| {
                    if f == t {
                        "-"
                    } else if connected(f, t) == reach.get(f, t) {
                        "."
                    } else {
                        "X"
                    }
                })
            );
            for &(f, t) in &bad {
                let _ = writeln!(
                    report,
                    "  {} -> {} {}/{port}: expected {}, observed {} ({})",
                    names[f],
                    names[t],
                    proto.lower(),
                    if reach.get(f, t) {
                        "connected"
                    } else {
                        "blocked"
                    },
                    if connected(f, t) {
                        "connected"
                    } else {
                        "blocked"
                    },
                    observed[&(f, t)]
                );
            }
        }
        if let PolicyCheck::On = self.policy_check {
            let verdicts = self.policy_checks(proto, port);
            let mut lines = Vec::new();
            for ((f, t, node), v) in &verdicts {
                let seen = connected(*f, *t);
                match v {
                    Ok(allow) if *allow == seen => {}
                    Ok(allow) => lines.push(format!(
                        "  {}: policy-check {} {} {} {port} says {}, the probe was {} ({})",
                        if *node == 0 {
                            "nodes 1+2".to_string()
                        } else {
                            format!("node-{node}")
                        },
                        names[*f],
                        names[*t],
                        proto.lower(),
                        if *allow { "allow" } else { "deny" },
                        if seen { "connected" } else { "blocked" },
                        observed[&(*f, *t)]
                    )),
                    Err(e) => lines.push(format!(
                        "  node {node}: policy-check {} {} {} {port} failed: {e}",
                        names[*f],
                        names[*t],
                        proto.lower()
                    )),
                }
            }
            if !lines.is_empty() {
                let _ = writeln!(
                    report,
                    "{proto:?}/{port}: policy-check disagrees with the traffic on {} of {} questions:\n{}",
                    lines.len(),
                    verdicts.len(),
                    lines.join("\n")
                );
            }
        }
        println!(
            "    {proto:?}/{port}: {} in {:.1?} ({attempts} attempt(s))",
            if report.is_empty() {
                "as expected"
            } else {
                "DIFFERS"
            },
            started.elapsed()
        );
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }

    /// `policy-check` for every pair but loopback, on both nodes.
    fn policy_checks(
        &self,
        proto: Proto,
        port: u16,
    ) -> BTreeMap<(usize, usize, usize), Result<bool, String>> {
        let n = self.pods.len();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|f| {
                    s.spawn(move || {
                        let mut out = Vec::new();
                        for t in (0..n).filter(|&t| t != f) {
                            // Each node decides the halves it holds (egress at the
                            // source's, ingress at the destination's): asked of the
                            // nodes of the two ends, the connection passes if both say
                            // allow. Key: the one node, or 0 for both.
                            let (a, b) = (self.pods[f].node, self.pods[t].node);
                            let nodes: Vec<usize> = if a == b { vec![a] } else { vec![a, b] };
                            let mut v = Ok(true);
                            for &node in &nodes {
                                let here = self.policy_check(
                                    node,
                                    &self.pods[f].id(),
                                    &self.pods[t].id(),
                                    proto,
                                    port,
                                );
                                v = match (v, here) {
                                    (Ok(x), Ok(y)) => Ok(x && y),
                                    (Err(e), _) | (_, Err(e)) => Err(format!("node-{node}: {e}")),
                                };
                            }
                            out.push(((f, t, if a == b { a } else { 0 }), v));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a policy-check thread"))
                .collect()
        })
    }

    /// A TCP connection from `from` to `to`:80 that exchanges `n` lines, 50 ms apart: how
    /// many echoes came back (a connection that cannot open gives 0).
    pub fn tcp_exchange(&self, from: &str, to: &str, n: u32) -> u32 {
        let code = format!(
            r#"
import socket, time
got = 0
try:
    s = socket.create_connection(("{ip}", 80), timeout=2)
    f = s.makefile("rb")
    f.readline()
    for i in range({n}):
        s.sendall(b"line %d\n" % i)
        if f.readline() == b"line %d\n" % i:
            got += 1
        time.sleep(0.05)
except OSError:
    pass
print(got)
"#,
            ip = self.pod(to).ip
        );
        let out = self
            .pod(from)
            .netns
            .exec(&["timeout", "30", "python3", "-c", &code]);
        stdout(&out)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("exchange client: {}", show(&out)))
    }

    /// The daemons' diagnostics, for a failure that may be theirs.
    pub fn diagnostics(&self) -> String {
        self.daemons
            .iter()
            .enumerate()
            .map(|(i, d)| format!("node-{}:\n{}", i + 1, d.diagnostics()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The node namespaces (for tests that look at a node from inside).
    pub fn node_netns(&self, i: usize) -> &Netns {
        &self.nodes[i - 1]
    }
}

/// `pod: NAME`, upstream's only Pod label.
pub fn default_pod_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("pod".to_string(), name.to_string())])
}

/// A Namespace object with upstream's labels (`ns: NAME` and the name label the API
/// server sets) plus `extra`.
pub fn namespace(name: &str, extra: &[(&str, &str)]) -> Value {
    let mut labels = BTreeMap::from([
        ("ns".to_string(), name.to_string()),
        (NS_NAME_LABEL.to_string(), name.to_string()),
    ]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } })
}

/// A NetworkPolicy `name` in namespace `ns` with `spec` as given.
pub fn netpol(ns: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    })
}

/// `{matchLabels: {pod: NAME}}`.
pub fn pod_sel(name: &str) -> Value {
    json!({ "matchLabels": { "pod": name } })
}

/// `{matchLabels: {kubernetes.io/metadata.name: NS}}`.
pub fn ns_sel(ns: &str) -> Value {
    json!({ "matchLabels": { NS_NAME_LABEL: ns } })
}

// ---- cases -----------------------------------------------------------------------------

/// What a case does on the cluster: apply policies and labels, check matrices. Failures
/// are collected, not raised, so that one case's failure does not hide the others'.
#[derive(Debug)]
pub struct Case<'a> {
    pub cluster: &'a Cluster,
    policies: Vec<Value>,
    failures: Vec<String>,
    /// Matrices probed.
    checked: usize,
}

impl Case<'_> {
    /// Applies (creates or replaces) a NetworkPolicy on both switches; it is deleted when
    /// the case ends.
    pub fn policy(&mut self, policy: Value) {
        self.cluster.apply(std::slice::from_ref(&policy));
        let key = |p: &Value| {
            (
                p["metadata"]["namespace"].clone(),
                p["metadata"]["name"].clone(),
            )
        };
        if !self.policies.iter().any(|p| key(p) == key(&policy)) {
            self.policies.push(policy);
        }
    }

    /// Deletes a NetworkPolicy applied before (by namespace and name).
    pub fn delete_policy(&mut self, ns: &str, name: &str) {
        let (keep, gone): (Vec<Value>, Vec<Value>) = self
            .policies
            .drain(..)
            .partition(|p| p["metadata"]["namespace"] != ns || p["metadata"]["name"] != name);
        self.policies = keep;
        assert!(!gone.is_empty(), "no policy {ns}/{name} was applied");
        self.cluster.delete(&gone);
    }

    /// Deletes every policy this case applied (upstream's `cleanNetworkPolicies`).
    pub fn delete_all_policies(&mut self) {
        let all: Vec<Value> = self.policies.drain(..).collect();
        if !all.is_empty() {
            self.cluster.delete(&all);
        }
    }

    /// Gives Pod `ns/pod` these labels (replacing its labels); reset when the case ends.
    pub fn label_pod(&mut self, pod: &str, labels: &[(&str, &str)]) {
        let p = self.cluster.pod(pod);
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.cluster.apply(&[self.cluster.pod_object(p, &labels)]);
    }

    /// Adds labels to namespace `ns` (to upstream's two); reset when the case ends.
    pub fn label_namespace(&mut self, ns: &str, extra: &[(&str, &str)]) {
        self.cluster.apply(&[namespace(ns, extra)]);
    }

    /// Probes `proto`/`port` and compares with `reach`; a difference fails the case.
    /// On a kernel without SCTP sockets, SCTP is probed with raw packets ([`SCTP_RAW`]).
    pub fn check(&mut self, proto: Proto, port: u16, reach: &Reachability) {
        self.checked += 1;
        if let Err(e) = self.cluster.validate(proto, port, reach) {
            self.failures.push(e);
        }
    }

    /// Records a failure of the case's own (not a matrix).
    pub fn fail(&mut self, what: String) {
        self.failures.push(what);
    }
}

/// A named case: upstream's test name where it has one.
pub type CaseFn = fn(&mut Case);

/// Runs `cases` one after the other on `cluster`: each starts from no policy and the
/// default labels, and its policies and labels are removed after it. Panics at the end
/// naming every case that failed, with its tables.
pub fn run_cases(cluster: &Cluster, cases: &[(&str, CaseFn)]) {
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, f) in cases {
        println!("case: {name}");
        let case_started = Instant::now();
        let mut case = Case {
            cluster,
            policies: Vec::new(),
            failures: Vec::new(),
            checked: 0,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut case)));
        if let Err(e) = result {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            case.failures.push(format!("the case panicked: {msg}"));
        }
        // Back to the starting point for the next case, even after a failure.
        let cleanup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            case.delete_all_policies();
            cluster.apply(&cluster.base_objects());
        }));
        if cleanup.is_err() {
            case.failures
                .push("cleaning up after the case failed".into());
        }
        let outcome = if !case.failures.is_empty() {
            "FAILED"
        } else {
            "ok"
        };
        println!(
            "  {outcome} in {:.1?} ({} matrices)",
            case_started.elapsed(),
            case.checked
        );
        for f in &case.failures {
            println!("{}", indent(f));
        }
        if !case.failures.is_empty() {
            failed.push((name.to_string(), case.failures));
        }
        if cleanup.is_err() {
            break;
        }
    }
    println!(
        "{} cases in {:.1?}: {} failed",
        cases.len(),
        started.elapsed(),
        failed.len()
    );
    if !failed.is_empty() {
        // The tables are in the output above, case by case; the message names the cases.
        let mut msg = format!("{} of {} cases failed:\n", failed.len(), cases.len());
        for (name, failures) in &failed {
            let _ = writeln!(msg, "- {name}");
            for f in failures {
                let _ = writeln!(msg, "    {}", f.lines().next().unwrap_or_default());
            }
        }
        panic!("{msg}");
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}
