//! End-to-end tests of the object model's user-facing side: Pods added by hand, addresses
//! asked for through CNI, owners in `dump-flows --names`, `get`, the state file of the
//! previous release, and cached flows kept through changes that do not touch them. They
//! need root (namespaces, TAPs): plain `cargo test` reports them ignored.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use vswitch_proto::cni::errcode;
use vswitch_tests::cni::{CniEnv, Conflist, Runtime, containerd_pod_ips};
use vswitch_tests::e2e::{
    Daemon, Netns, bin, counter, iperf_client_args, iperf_report, iperf_server, ping, ping_until,
    serial, show, stdout, unique, unreachable_pairs,
};

const POD_CIDR: &str = "10.244.1.0/24";
const GATEWAY: &str = "10.244.1.1";
const TOOLS: &[&str] = &["ip", "ping", "nsenter", "timeout", "iperf3"];

fn require_root() {
    vswitch_tests::e2e::require_root(TOOLS);
}

/// A Pod by hand: a TAP `eth0` in `netns` with `ip` (and a default route via `gateway`).
fn add_pod_port(d: &Daemon, name: &str, netns: &str, ip: &str, gateway: Option<&str>) {
    let mut args = vec![
        "add-port", name, "--type", "tap", "--netns", netns, "--ifname", "eth0", "--ip", ip,
    ];
    args.extend(gateway.map(|g| ["--gateway", g]).into_iter().flatten());
    d.ctl_ok(&args);
}

fn runtime(d: &Daemon) -> Runtime {
    let ours = bin("vswitch-cni")
        .parent()
        .expect("a directory")
        .to_path_buf();
    Runtime::new(
        vec![ours, PathBuf::from("/usr/lib/cni")],
        d.dir().join("cni-cache"),
    )
    .with_timeout(Duration::from_secs(60))
}

fn conflist(d: &Daemon) -> Conflist {
    Conflist::from_value(json!({
        "cniVersion": "1.1.0",
        "name": "vsw-e2e",
        "plugins": [{
            "type": "vswitch-cni",
            "socket": d.socket(),
            "capabilities": {"ips": true},
        }],
    }))
    .expect("a valid conflist")
}

fn env(pod: &Netns, name: &str, extra: &str) -> CniEnv {
    let cid = unique("c").replace('-', "");
    CniEnv::new(&cid, &pod.path(), "eth0").with_args(&format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME={name}{extra}"
    ))
}

fn addr(result: &Value) -> String {
    containerd_pod_ips(result, "eth0").unwrap_or_else(|e| panic!("{e}"))[0].clone()
}

/// Ports added by hand with an address in the Pod CIDR are Pods: they reach each other,
/// the node and CNI Pods, and their address is theirs. CNI Pods get the address they ask
/// for (CNI_ARGS `IP=`, the `ips` capability), or a clear error.
#[test]
#[ignore = "needs root"]
fn pods_by_hand_and_addresses_asked_for() {
    let _serial = serial();
    require_root();
    let node = Netns::new();
    let d = Daemon::start_in(&node, &["--pod-cidr", POD_CIDR, "--node-name", "n1"]);
    let (a, b) = (Netns::new(), Netns::new());
    let (pa, pb) = (a.path(), b.path());
    add_pod_port(&d, "hand-a", &pa, "10.244.1.50/24", Some(GATEWAY));
    // Without a gateway: it still reaches its own subnet (the node's gateway address too).
    add_pod_port(&d, "hand-b", &pb, "10.244.1.51/24", None);
    let targets = [
        "10.244.1.50".to_string(),
        "10.244.1.51".into(),
        GATEWAY.into(),
    ];
    let failures = unreachable_pairs(
        &[(&a, "10.244.1.50".into()), (&b, "10.244.1.51".into())],
        &targets,
    );
    assert!(
        failures.is_empty(),
        "unreachable: {failures:?}\n{}",
        d.log_tail(30)
    );
    assert_eq!(ping(&node, "10.244.1.50", 2).received, 2, "node to hand-a");
    // The address is the hand-made Pod's: neither another port nor CNI can take it.
    let c = Netns::new();
    let taken = d.ctl(&[
        "add-port",
        "hand-c",
        "--type",
        "tap",
        "--netns",
        &c.path(),
        "--ifname",
        "eth0",
        "--ip",
        "10.244.1.50/24",
    ]);
    assert_eq!(taken.status.code(), Some(1), "{}", show(&taken));
    assert!(show(&taken).contains("already in use"), "{}", show(&taken));
    assert!(c.link("eth0").is_none(), "a refused port left its TAP");
    let pods = d.ctl_json(&["list-pods"]);
    let listed: Vec<&str> = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["port"].as_str())
        .collect();
    assert_eq!(listed, ["hand-a", "hand-b"], "{pods}");

    let rt = runtime(&d);
    let list = conflist(&d);
    let p1 = Netns::new();
    let e1 = env(&p1, "web", ";IP=10.244.1.77");
    let r = rt.add(&list, &e1, None).expect("ADD with IP=");
    assert_eq!(addr(&r), "10.244.1.77");
    assert_eq!(
        ping(&a, "10.244.1.77", 2).received,
        2,
        "hand-a to the CNI Pod"
    );
    // The ips capability (runtimeConfig), as containerd passes it from a Pod annotation.
    let p2 = Netns::new();
    let e2 = env(&p2, "api", "");
    let r = rt
        .add(&list, &e2, Some(&json!({"ips": ["10.244.1.88/24"]})))
        .expect("ADD with the ips capability");
    assert_eq!(addr(&r), "10.244.1.88");
    // Taken, outside, reserved: refused, saying why, and nothing is left behind.
    let p3 = Netns::new();
    for (args, code, words) in [
        (";IP=10.244.1.50", errcode::IPAM_FAILURE, "already in use"),
        (
            ";IP=10.9.9.9",
            errcode::INVALID_ENV,
            "outside the Pod CIDR 10.244.1.0/24",
        ),
        (";IP=10.244.1.1", errcode::INVALID_ENV, "gateway"),
    ] {
        let e3 = env(&p3, "bad", args);
        let e = rt.add(&list, &e3, None).unwrap_err();
        assert_eq!(e.code, code, "{args}: {e}");
        assert!(
            e.msg.contains(words) && e.msg.contains("IP="),
            "{args}: {e}"
        );
        assert!(p3.link("eth0").is_none(), "{args}: a refused ADD left eth0");
        rt.del(&list, &e3, None).expect("DEL after a failed ADD");
    }

    // Owners by name.
    let names = d.ctl_ok(&["dump-flows", "--names", "table=1"]);
    for owner in [
        "(port/hand-a)",
        "(port/hand-b)",
        "(pod/e2e/web)",
        "(pod/e2e/api)",
    ] {
        assert!(names.contains(owner), "no {owner} in:\n{names}");
    }
    let base = d.ctl_ok(&["dump-flows", "--names", "table=10"]);
    assert!(base.contains("(node/n1)"), "{base}");

    // A port removed frees its address.
    d.ctl_ok(&["del-port", "hand-a"]);
    let p4 = Netns::new();
    let e4 = env(&p4, "again", ";IP=10.244.1.50");
    let r = rt.add(&list, &e4, None).expect("ADD of a freed address");
    assert_eq!(addr(&r), "10.244.1.50");
    // hand-b still has hand-a's MAC for that address, as any host would after an
    // address moved without a gratuitous ARP.
    b.exec_ok(&["ip", "neigh", "flush", "all"]);
    assert_eq!(ping(&b, "10.244.1.50", 2).received, 2);
    for e in [&e1, &e2, &e4] {
        rt.del(&list, e, None).expect("DEL");
    }
}

/// The state file a release before the object model wrote (`tests/fixtures/state-v1`:
/// two CNI Pods, ports added by hand, a group, user flows, a tunnel, two remote nodes)
/// starts this one with everything in place; the hand-made port inside the Pod CIDR is a
/// Pod now.
#[test]
#[ignore = "needs root"]
fn a_state_file_of_the_previous_release_starts_everything_again() {
    let _serial = serial();
    require_root();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/state-v1/state.json");
    let mut text = std::fs::read_to_string(&fixture).expect("the fixture");
    // The namespaces it names, made unique for this run.
    let spaces: Vec<(String, Netns)> = ["fx-pod-a", "fx-pod-b", "fx-hand2", "fx-hand"]
        .into_iter()
        .map(|n| (n.to_string(), Netns::new()))
        .collect();
    for (old, ns) in &spaces {
        text = text.replace(
            &format!("/var/run/netns/{old}\""),
            &format!("{}\"", ns.path()),
        );
    }
    let node = Netns::new();
    node.exec_ok(&[
        "ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-p",
    ]);
    node.exec_ok(&["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink"]);
    node.exec_ok(&["ip", "link", "set", "uplink", "up"]);
    node.exec_ok(&["ip", "link", "set", "uplink-p", "up"]);
    let mut d = Daemon::new_in(&node, &["--node-name", "fx-node"]);
    std::fs::create_dir_all(d.state_dir()).unwrap();
    std::fs::write(d.state_file(), &text).unwrap();
    d.restart();

    let ports = d.ports();
    let up: Vec<(&str, &str)> = ports
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        up,
        [
            ("vsw-tun0", "up"),
            ("vsw-gw0", "up"),
            ("web-a-fixture-", "up"),
            ("dns-b-fixture-", "up"),
            ("hand0", "up"),
            ("hand1", "up"),
            ("mem0", "up")
        ],
        "{}",
        d.log_tail(30)
    );
    let flows = d.ctl_ok(&["dump-flows"]);
    for user in [
        [
            "cookie=0x42,",
            "table=100,",
            "priority=10,ip,nw_dst=192.168.50.0/24 actions=group:7",
        ],
        [
            "cookie=0x0,",
            "table=0,",
            "priority=300,in_port=mem0 actions=goto_table:100",
        ],
        [
            "cookie=0x0,",
            "table=101,",
            "priority=5,tcp,tp_dst=8080 actions=drop",
        ],
    ] {
        assert!(
            flows
                .lines()
                .any(|l| user.iter().all(|part| l.contains(part))),
            "no {user:?} in:\n{flows}"
        );
    }
    assert!(
        d.ctl_ok(&["dump-groups"])
            .contains("group_id=7,type=select")
    );
    let pods = d.ctl_json(&["list-pods"]);
    let listed: Vec<(&str, &str)> = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_str().unwrap(), p["ip"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("web-a-fixture-", "10.244.1.2/24"),
            ("dns-b-fixture-", "10.244.1.3/24"),
            ("hand1", "10.244.1.50/24")
        ]
    );
    let nodes = d.ctl_ok(&["get", "nodes"]);
    for want in [
        "fx-node     10.244.1.0/24  192.0.2.10   flags",
        "fx-remote1  10.244.2.0/24  192.0.2.11   vswitchctl",
        "fx-remote2  10.244.3.0/24  192.0.2.12   manifest",
    ] {
        assert!(nodes.contains(want), "no {want:?} in:\n{nodes}");
    }
    let routes = node.exec_ok(&["ip", "route"]);
    for r in [
        "10.244.2.0/24 via 169.254.0.254 dev vsw-gw0",
        "10.244.3.0/24 via 169.254.0.254 dev vsw-gw0",
    ] {
        assert!(routes.contains(r), "no route {r} in:\n{routes}");
    }
    // Traffic: the two CNI Pods, the hand-made Pod in the CIDR, the node.
    let ns = |name: &str| &spaces.iter().find(|(n, _)| n == name).unwrap().1;
    let failures = unreachable_pairs(
        &[
            (ns("fx-pod-a"), "10.244.1.2".into()),
            (ns("fx-pod-b"), "10.244.1.3".into()),
            (ns("fx-hand2"), "10.244.1.50".into()),
        ],
        &[
            "10.244.1.2".into(),
            "10.244.1.3".into(),
            "10.244.1.50".into(),
            GATEWAY.into(),
        ],
    );
    assert!(
        failures.is_empty(),
        "unreachable: {failures:?}\n{}",
        d.log_tail(30)
    );
    // Written again in the current layout; the old file is the backup.
    let now: Value =
        serde_json::from_str(&std::fs::read_to_string(d.state_file()).unwrap()).unwrap();
    assert_eq!(now["version"], 2);
    let backup = std::fs::read_to_string(d.state_dir().join("state.json.bak")).unwrap();
    assert_eq!(
        backup, text,
        "the previous release's file is kept as the backup"
    );
    // And it comes back again as it is now.
    d.stop();
    d.restart();
    assert_eq!(
        d.ctl_json(&["list-pods"])["pods"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(d.ctl_ok(&["get", "nodes"]).contains("fx-remote2"));
}

/// `get` as kubectl: one object, wide columns, YAML, unknown kinds and names.
#[test]
#[ignore = "needs root"]
fn get_shows_objects_as_kubectl_does() {
    let _serial = serial();
    require_root();
    let node = Netns::new();
    let d = Daemon::start_in(&node, &["--pod-cidr", POD_CIDR, "--node-name", "n1"]);
    d.ctl_ok(&[
        "add-node",
        "n2",
        "--pod-cidr",
        "10.244.2.0/24",
        "--node-ip",
        "192.168.9.2",
    ]);
    let one = d.ctl_ok(&["get", "node", "n2", "-o", "yaml"]);
    assert!(
        one.contains("kind: Node")
            && one.contains("name: n2")
            && one.contains("podCIDR: 10.244.2.0/24"),
        "{one}"
    );
    let wide = d.ctl_ok(&["get", "no", "-o", "wide"]);
    assert!(
        wide.contains("GATEWAY") && wide.contains("10.244.2.1"),
        "{wide}"
    );
    let missing = d.ctl(&["get", "nodes", "n9"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        show(&missing).contains("NotFound") && show(&missing).contains("\"n9\""),
        "{}",
        show(&missing)
    );
    let unknown = d.ctl(&["get", "widgets"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        show(&unknown).contains("doesn't have a resource type"),
        "{}",
        show(&unknown)
    );
    let json = d.ctl_ok(&["get", "nodes", "-o", "json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        stdout(&d.ctl(&["get", "nodes", "-o", "name"])),
        "node/n1\nnode/n2\n"
    );
}

/// One TCP stream between two Pods while objects it has nothing to do with change all
/// the time: its cached flows are kept (revalidated, not flushed), and a change that does
/// concern it applies to its very next packet.
#[test]
#[ignore = "needs root"]
fn unrelated_changes_keep_a_streams_cached_flows() {
    let _serial = serial();
    require_root();
    let node = Netns::new();
    // A tunnel, so that Node objects compile to rules (and routes) of their own.
    node.exec_ok(&[
        "ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-p",
    ]);
    node.exec_ok(&["ip", "addr", "add", "192.168.0.1/16", "dev", "uplink"]);
    node.exec_ok(&["ip", "link", "set", "uplink", "up"]);
    node.exec_ok(&["ip", "link", "set", "uplink-p", "up"]);
    let d = Daemon::start_in(
        &node,
        &[
            "--pod-cidr",
            POD_CIDR,
            "--node-name",
            "n1",
            "--node-ip",
            "192.168.0.1",
        ],
    );
    let (a, b) = (Netns::new(), Netns::new());
    add_pod_port(&d, "pa", &a.path(), "10.244.1.10/24", Some(GATEWAY));
    add_pod_port(&d, "pb", &b.path(), "10.244.1.11/24", Some(GATEWAY));
    assert!(ping_until(&a, "10.244.1.11", Duration::from_secs(5)));
    let server = iperf_server(&b, 5201, 30);
    let args = iperf_client_args("10.244.1.11", 5201, 8, &["-t", "6"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = a.spawn(&args);
    std::thread::sleep(Duration::from_secs(1));
    let before = d.ctl_json(&["show"]);
    // 300 Nodes come and go, one manifest each, while the stream runs.
    let dir = d.dir().to_path_buf();
    for i in 0..300 {
        let f = dir.join(format!("n{}.yaml", i % 2));
        std::fs::write(
            &f,
            format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: churn-{i}}}\nspec: {{podCIDR: 10.{}.{}.0/24}}\nstatus: {{addresses: [{{type: InternalIP, address: 192.168.{}.{}}}]}}\n",
                100 + i / 256,
                i % 256,
                1 + i / 250,
                1 + i % 250
            ),
        )
        .unwrap();
        d.ctl_ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    let after = d.ctl_json(&["show"]);
    let report = iperf_report(&client.finish(Duration::from_secs(20)));
    drop(server);
    let dp = |v: &Value, k: &str| counter(&v["datapath"], k);
    assert!(report.ok && report.received_bytes > 0, "{report:?}");
    assert_eq!(
        dp(&after, "flushes"),
        dp(&before, "flushes"),
        "the caches were flushed"
    );
    assert!(
        dp(&after, "revalidations") > dp(&before, "revalidations"),
        "{after}"
    );
    // The stream's flows were kept: barely a translation per change.
    let upcalls = dp(&after, "upcalls") - dp(&before, "upcalls");
    assert!(
        upcalls < 50,
        "{upcalls} translations during the churn: {after}"
    );
    // A change that concerns it: a rule of the user's that drops B's traffic to A takes
    // effect on the next packet.
    d.ctl_ok(&["add-flow", "table=1,priority=500,in_port=pb,actions=drop"]);
    assert_eq!(
        ping(&a, "10.244.1.11", 2).received,
        0,
        "the stream's old flows were used"
    );
    d.ctl_ok(&["del-flows", "--strict", "table=1,priority=500,in_port=pb"]);
    assert!(ping_until(&a, "10.244.1.11", Duration::from_secs(5)));
}
