//! End-to-end tests of Pod attach through CNI: the real `vswitch-cni` binary run the way
//! containerd runs it (environment and stdin, a conflist, cached results for CHECK and DEL),
//! a `vswitchd` of the test's own inside a namespace standing for the node (its gateway
//! port lives there), and Pods as network namespaces. They need root: plain `cargo test`
//! reports them ignored; `scripts/test` runs them as root with `--include-ignored`.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use vswitch_proto::cni::{Attachment, CniError, errcode};
use vswitch_tests::cni::{
    CniEnv, Conflist, Runtime, containerd_pod_ips, exec_plugin, exec_plugin_raw,
};
use vswitch_tests::e2e::{Daemon, Netns, bin, hog, ping, serial, unique, unreachable_pairs};

const POD_CIDR: &str = "10.244.1.0/24";
const GATEWAY: &str = "10.244.1.1";
const TOOLS: &[&str] = &["ip", "ping", "nsenter", "timeout", "sysctl", "tc"];
/// The reference plugins (Debian's containernetworking-plugins).
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

fn require_root() {
    vswitch_tests::e2e::require_root(TOOLS);
}

/// A node: its namespace, its switch with a Pod CIDR, a runtime's result cache.
struct Node {
    ns: Netns,
    daemon: Daemon,
    cache: PathBuf,
}

impl Node {
    fn new() -> Node {
        require_root();
        let ns = Netns::new();
        let daemon = Daemon::start_in(&ns, &["--pod-cidr", POD_CIDR]);
        let cache = daemon.dir().join("cni-cache");
        Node { ns, daemon, cache }
    }

    fn runtime(&self) -> Runtime {
        let ours = bin("vswitch-cni")
            .parent()
            .expect("a directory")
            .to_path_buf();
        Runtime::new(vec![ours, PathBuf::from(REFERENCE_PLUGINS)], &self.cache)
            .with_timeout(PLUGIN_TIMEOUT)
    }

    /// The plugin's configuration in a list, with `more` plugins chained after it.
    fn conflist(&self, version: &str, ipam: Option<Value>, more: &[Value]) -> Conflist {
        let mut ours = json!({
            "type": "vswitch-cni",
            "socket": self.daemon.socket(),
            "logFile": self.daemon.dir().join("cni.log"),
        });
        if let Some(ipam) = ipam {
            ours["ipam"] = ipam;
        }
        let mut plugins = vec![ours];
        plugins.extend(more.iter().cloned());
        Conflist::from_value(json!({
            "cniVersion": version,
            "name": "vsw-e2e",
            "plugins": plugins,
        }))
        .expect("a valid conflist")
    }

    fn pods(&self) -> Value {
        self.daemon.ctl_json(&["list-pods"])
    }

    /// Flows the switch has for Pods (cookie 0x02...).
    fn pod_flows(&self) -> usize {
        self.daemon
            .flows(None)
            .iter()
            .filter(|f| f["cookie"].as_str().is_some_and(|c| c.starts_with("0x2")))
            .count()
    }
}

/// What containerd passes in CNI_ARGS for a Pod.
fn containerd_env(cid: &str, pod: &Netns, name: &str) -> CniEnv {
    CniEnv::new(cid, &pod.path(), "eth0").with_args(&format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=uid-{name}"
    ))
}

fn container_id() -> String {
    unique("c").replace('-', "")
}

fn addr_of(result: &Value) -> String {
    let ips = containerd_pod_ips(result, "eth0").unwrap_or_else(|e| panic!("{e}"));
    ips[0].clone()
}

/// Every source reaches every destination.
fn ping_matrix(sources: &[(&Netns, String)], targets: &[String]) {
    let failures = unreachable_pairs(sources, targets);
    assert!(failures.is_empty(), "unreachable: {failures:?}");
}

#[test]
#[ignore = "needs root"]
fn twenty_pods_reach_each_other_and_the_node() {
    let _serial = serial();
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.1.0", None, &[]);
    let pods: Vec<Netns> = (0..20).map(|_| Netns::new()).collect();
    let mut envs = Vec::new();
    let mut addrs = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let env = containerd_env(&container_id(), pod, &format!("web-{i}"));
        let result = rt
            .add(&list, &env, None)
            .unwrap_or_else(|e| panic!("ADD of pod {i}: {e}\n{}", node.daemon.diagnostics()));
        // What containerd checks: the interface named CNI_IFNAME is listed, in the
        // sandbox, and the address points at it.
        assert_eq!(result["cniVersion"], "1.1.0");
        assert_eq!(result["interfaces"][0]["name"], "eth0", "{result}");
        assert_eq!(result["interfaces"][0]["sandbox"], pod.path(), "{result}");
        assert_eq!(result["ips"][0]["interface"], 0, "{result}");
        assert_eq!(result["ips"][0]["gateway"], GATEWAY, "{result}");
        let ip = addr_of(&result);
        // The interface inside is what the result says.
        let eth0 = pod.link("eth0").expect("eth0 in the Pod");
        assert_eq!(eth0.mac, result["interfaces"][0]["mac"], "{result}");
        let shown = pod.exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(shown.contains(&format!("{ip}/24")), "{shown}");
        let routes = pod.exec_ok(&["ip", "route", "show", "default"]);
        assert!(
            routes.contains(&format!("via {GATEWAY} dev eth0")),
            "{routes}"
        );
        envs.push(env);
        addrs.push(ip);
    }
    let unique_addrs: HashSet<&String> = addrs.iter().collect();
    assert_eq!(unique_addrs.len(), 20, "{addrs:?}");
    assert_eq!(node.pods()["pods"].as_array().map(Vec::len), Some(20));

    let mut targets = addrs.clone();
    targets.push(GATEWAY.to_string());
    let sources: Vec<(&Netns, String)> = pods.iter().zip(addrs.iter().cloned()).collect();
    ping_matrix(&sources, &targets);
    // The node reaches every Pod (through its gateway port, ARP answered by the switch).
    ping_matrix(&[(&node.ns, GATEWAY.to_string())], &addrs);
    // Every Pod's flows are there, CHECK agrees.
    for env in &envs {
        rt.check(&list, env, None)
            .unwrap_or_else(|e| panic!("CHECK {}: {e}", env.container_id));
    }
    for env in &envs {
        rt.del(&list, env, None).expect("DEL");
    }
    assert_eq!(node.pods()["pods"].as_array().map(Vec::len), Some(0));
    assert_eq!(node.pod_flows(), 0);
    for pod in &pods {
        assert!(pod.link("eth0").is_none(), "eth0 left in {}", pod.name());
    }
}

#[test]
#[ignore = "needs root"]
fn a_hundred_parallel_adds_then_dels_leave_nothing_behind() {
    let _serial = serial();
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.0.0", None, &[]);
    let pods: Vec<Netns> = (0..100).map(|_| Netns::new()).collect();
    let envs: Vec<CniEnv> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| containerd_env(&container_id(), p, &format!("par-{i}")))
        .collect();
    let results: Vec<Result<Value, CniError>> = std::thread::scope(|s| {
        let hs: Vec<_> = envs
            .iter()
            .map(|env| s.spawn(|| rt.add(&list, env, None)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let addrs: Vec<String> = results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(v) => addr_of(v),
            Err(e) => panic!("ADD {i}: {e}\n{}", node.daemon.diagnostics()),
        })
        .collect();
    let unique_addrs: HashSet<&String> = addrs.iter().collect();
    assert_eq!(unique_addrs.len(), 100, "duplicate addresses: {addrs:?}");
    let free_before = node.pods()["free"].as_u64().expect("free");
    assert_eq!(free_before, 253 - 100);
    ping_matrix(&[(&node.ns, GATEWAY.to_string())], &addrs);

    let dels: Vec<Result<(), CniError>> = std::thread::scope(|s| {
        let hs: Vec<_> = envs
            .iter()
            .map(|env| s.spawn(|| rt.del(&list, env, None)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("DEL thread"))
            .collect()
    });
    for (i, d) in dels.iter().enumerate() {
        assert!(d.is_ok(), "DEL {i}: {d:?}");
    }
    let left = node.pods();
    assert_eq!(left["pods"].as_array().map(Vec::len), Some(0), "{left}");
    assert_eq!(left["free"], 253, "{left}");
    let ports = node.daemon.ports();
    assert_eq!(ports.len(), 1, "only the gateway should be left: {ports:?}");
    assert_eq!(node.pod_flows(), 0);
    for pod in &pods {
        assert!(pod.link("eth0").is_none(), "a TAP left in {}", pod.name());
    }
}

#[test]
#[ignore = "needs root"]
fn del_is_idempotent_and_check_finds_drift() {
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.0.0", None, &[]);
    let pod = Netns::new();
    let env = containerd_env(&container_id(), &pod, "drift");
    let result = rt.add(&list, &env, None).expect("ADD");
    let ip = addr_of(&result);
    // A repeated ADD gives the same answer, and no second port.
    let again = rt.add(&list, &env, None).expect("repeated ADD");
    assert_eq!(again, result);
    assert_eq!(node.daemon.ports().len(), 2);
    // Another container cannot take the same interface.
    let thief = CniEnv::new(&container_id(), &pod.path(), "eth0");
    let e = rt.add(&list, &thief, None).unwrap_err();
    assert_eq!(e.code, errcode::CONFLICT, "{e}");
    assert!(e.msg.contains(&env.container_id), "{e}");
    rt.del(&list, &thief, None).expect("DEL of the refused ADD");
    assert!(
        pod.link("eth0").is_some(),
        "the refused container's DEL removed eth0"
    );

    rt.check(&list, &env, None).expect("CHECK right after ADD");
    // A removed address.
    pod.exec_ok(&["ip", "addr", "del", &format!("{ip}/24"), "dev", "eth0"]);
    let e = rt.check(&list, &env, None).unwrap_err();
    assert_eq!(e.code, errcode::CHECK_FAILED, "{e}");
    assert!(e.msg.contains("address") && e.msg.contains(&ip), "{e}");
    pod.exec_ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    pod.exec_ok(&["ip", "route", "replace", "default", "via", GATEWAY]);
    rt.check(&list, &env, None)
        .expect("CHECK after the address is back");
    // A removed flow (the Pod's ARP answer).
    node.daemon
        .ctl_ok(&["del-flows", &format!("table=2,arp,arp_op=1,arp_tpa={ip}")]);
    let e = rt.check(&list, &env, None).unwrap_err();
    assert_eq!(e.code, errcode::CHECK_FAILED, "{e}");
    assert!(e.msg.contains("flows") && e.msg.contains(&ip), "{e}");

    // DEL twice; DEL after the namespace is gone; DEL of a container never seen.
    rt.del(&list, &env, None).expect("DEL");
    rt.del(&list, &env, None).expect("second DEL");
    let pod2 = Netns::new();
    let env2 = containerd_env(&container_id(), &pod2, "gone");
    rt.add(&list, &env2, None).expect("ADD");
    let path2 = pod2.path();
    drop(pod2);
    rt.del(&list, &env2, None)
        .expect("DEL after the namespace was deleted");
    let env_empty_ns = CniEnv {
        netns: String::new(),
        ..env2.clone()
    };
    rt.del(&list, &env_empty_ns, None)
        .expect("DEL without CNI_NETNS");
    rt.del(&list, &CniEnv::new("never-added", &path2, "eth0"), None)
        .expect("DEL of an unknown container");
    assert_eq!(node.pods()["pods"].as_array().map(Vec::len), Some(0));
    assert_eq!(node.daemon.ports().len(), 1);
    // CHECK of what is not there is an error.
    let e = rt.check(&list, &env, None).unwrap_err();
    assert_ne!(e.code, 0, "{e}");
}

#[test]
#[ignore = "needs root"]
fn switch_down_then_back() {
    let mut node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.1.0", None, &[]);
    let (a, b) = (Netns::new(), Netns::new());
    let env_a = containerd_env(&container_id(), &a, "before");
    let ip_a = addr_of(&rt.add(&list, &env_a, None).expect("ADD a"));
    rt.status(&list).expect("STATUS with the switch up");

    node.daemon.kill9();
    let env_b = containerd_env(&container_id(), &b, "during");
    let e = rt.add(&list, &env_b, None).unwrap_err();
    assert_eq!(e.code, errcode::TRY_AGAIN_LATER, "{e}");
    assert!(
        e.msg.contains("not reachable")
            && e.msg.contains(&node.daemon.socket().display().to_string()),
        "{e}"
    );
    let e = rt.status(&list).unwrap_err();
    assert_eq!(e.code, errcode::NOT_AVAILABLE, "{e}");
    // The Pod keeps its address while the switch is down.
    let shown = a.exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(shown.contains(&ip_a), "{shown}");
    // The runtime DELs the failed ADD; with the switch down that is "try again".
    let e = rt.del(&list, &env_b, None).unwrap_err();
    assert_eq!(e.code, errcode::TRY_AGAIN_LATER, "{e}");

    node.daemon.restart();
    rt.status(&list).expect("STATUS after the restart");
    let ip_b = addr_of(
        &rt.add(&list, &env_b, None)
            .expect("ADD b after the restart"),
    );
    assert_ne!(ip_a, ip_b);
    for (ns, dst) in [(&a, &ip_b), (&b, &ip_a), (&a, &GATEWAY.to_string())] {
        assert_eq!(ping(ns, dst, 3).received, 3, "{dst}");
    }
    rt.check(&list, &env_a, None)
        .expect("CHECK of the Pod attached before the restart");
    rt.del(&list, &env_a, None).expect("DEL a");
    rt.del(&list, &env_b, None).expect("DEL b");
}

#[test]
#[ignore = "needs root"]
fn chained_with_reference_plugins_and_host_local() {
    let node = Node::new();
    let rt = node.runtime();
    let hl_dir = node.daemon.dir().join("host-local");
    let ipam = json!({"type": "host-local", "dataDir": hl_dir});
    let list = node.conflist(
        "1.0.0",
        Some(ipam),
        &[
            json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}}),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ],
    );
    let (a, b) = (Netns::new(), Netns::new());
    let env_a = containerd_env(&container_id(), &a, "chain-a");
    let env_b = containerd_env(&container_id(), &b, "chain-b");
    let ra = rt.add(&list, &env_a, None).expect("ADD through the chain");
    let rb = rt.add(&list, &env_b, None).expect("ADD through the chain");
    // Our result went through tuning and bandwidth as prevResult and came out whole.
    let calls = rt.calls();
    let tuning_in = &calls
        .iter()
        .find(|c| c.plugin == "tuning" && c.command == "ADD")
        .expect("tuning ran")
        .config["prevResult"];
    assert_eq!(tuning_in["interfaces"][0]["name"], "eth0", "{tuning_in}");
    assert_eq!(ra["interfaces"][0]["name"], "eth0", "{ra}");
    let (ip_a, ip_b) = (addr_of(&ra), addr_of(&rb));
    // host-local gave them, from the node's Pod CIDR (put in its range by the switch).
    let leases: Vec<String> = std::fs::read_dir(hl_dir.join("vsw-e2e"))
        .expect("host-local's lease directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(
        leases.contains(&ip_a) && leases.contains(&ip_b),
        "{leases:?}"
    );
    assert!(node.pods().to_string().contains("host-local"));
    // tuning's sysctl took effect inside the Pod.
    let v = a.exec_ok(&["sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"]);
    assert_eq!(v.trim(), "1");
    assert_eq!(ping(&a, &ip_b, 3).received, 3);
    // Debian's bandwidth (1.1.1) looks for the host end of a veth on every CHECK, even
    // with nothing to shape; a TAP has no host end. CHECK the rest of the chain.
    let without_bandwidth = Conflist {
        plugins: list.plugins[..2].to_vec(),
        ..list.clone()
    };
    rt.check(&without_bandwidth, &env_a, None)
        .expect("CHECK through vswitch-cni and tuning");
    rt.del(&list, &env_a, None).expect("DEL through the chain");
    rt.del(&list, &env_b, None).expect("DEL through the chain");
    let leases_after: Vec<_> = std::fs::read_dir(hl_dir.join("vsw-e2e"))
        .expect("lease directory")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains('.') && !n.starts_with("last_reserved"))
        .collect();
    assert!(leases_after.is_empty(), "leases left: {leases_after:?}");

    // bandwidth with rates needs a veth peer on the host to shape; a TAP has none. Its
    // refusal reaches the runtime as a CNI error, and the runtime's DEL cleans up.
    let c = Netns::new();
    let env_c = containerd_env(&container_id(), &c, "shaped");
    let caps = json!({"bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 100_000,
                                    "egressRate": 1_000_000, "egressBurst": 100_000}});
    let e = rt.add(&list, &env_c, Some(&caps)).unwrap_err();
    assert!(e.msg.contains("veth"), "{e}");
    rt.del(&list, &env_c, Some(&caps))
        .expect("DEL after the shaped ADD");
    assert_eq!(node.pods()["pods"].as_array().map(Vec::len), Some(0));
}

#[test]
#[ignore = "needs root"]
fn forged_source_addresses_are_dropped_and_counted() {
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.0.0", None, &[]);
    let (a, b) = (Netns::new(), Netns::new());
    let ra = rt
        .add(&list, &containerd_env(&container_id(), &a, "forger"), None)
        .expect("ADD");
    let ip_b = addr_of(
        &rt.add(&list, &containerd_env(&container_id(), &b, "victim"), None)
            .expect("ADD"),
    );
    assert_eq!(ping(&a, &ip_b, 1).received, 1);
    let port = node.pods()["pods"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["ip"] == format!("{}/24", addr_of(&ra))))
        .and_then(|p| p["port"].as_str().map(str::to_string))
        .expect("the forger's port");
    let drops = || -> u64 {
        node.daemon
            .flows(Some(&format!("table=1,in_port={port}")))
            .iter()
            .filter(|f| f["priority"] == 1)
            .map(|f| f["n_packets"].as_u64().unwrap_or(0))
            .sum()
    };
    let before = drops();
    // A forged IP: a second address the switch did not give.
    a.exec_ok(&["ip", "addr", "add", "10.244.1.250/24", "dev", "eth0"]);
    assert_eq!(
        ping_from(&a, "10.244.1.250", &ip_b),
        0,
        "a packet from a forged IP got through"
    );
    a.exec_ok(&["ip", "addr", "del", "10.244.1.250/24", "dev", "eth0"]);
    // A forged MAC.
    a.exec_ok(&["ip", "link", "set", "eth0", "address", "0a:58:de:ad:be:ef"]);
    b.exec_ok(&["ip", "neigh", "flush", "dev", "eth0"]);
    a.exec_ok(&["ip", "neigh", "flush", "dev", "eth0"]);
    assert_eq!(ping(&a, &ip_b, 2).received, 0, "a forged MAC got through");
    let after = drops();
    assert!(after >= before + 3, "drops counted {before} -> {after}");
}

fn ping_from(ns: &Netns, src: &str, dst: &str) -> u32 {
    let out = ns.exec(&[
        "timeout", "5", "ping", "-n", "-c", "2", "-W", "1", "-I", src, dst,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root"]
fn bad_input_gets_the_right_code() {
    let node = Node::new();
    let plugin = bin("vswitch-cni");
    let pod = Netns::new();
    let conf = json!({"cniVersion": "1.0.0", "name": "vsw-e2e", "type": "vswitch-cni",
                      "socket": node.daemon.socket()});
    let good = CniEnv::new("c1", &pod.path(), "eth0");
    let code = |cmd: &str, env: &CniEnv, stdin: &[u8]| -> (u32, String) {
        let out = exec_plugin_raw(&plugin, cmd, env, stdin, PLUGIN_TIMEOUT);
        let e = out
            .error()
            .unwrap_or_else(|| panic!("{cmd} with {env:?} succeeded: {}", out.stdout));
        assert_eq!(out.code, Some(1));
        // The error is CNI error JSON on stdout, with the config's version.
        let j = out.json.expect("error JSON on stdout");
        assert!(j["cniVersion"].is_string() && j["msg"].is_string(), "{j}");
        (e.code, e.msg)
    };
    let bytes = serde_json::to_vec(&conf).expect("json");
    let (c, m) = code("ADD", &good, b"{this is not json");
    assert_eq!(c, errcode::DECODE, "{m}");
    let (c, m) = code("ADD", &CniEnv::new("", &pod.path(), "eth0"), &bytes);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("CNI_CONTAINERID"), "{m}");
    let (c, m) = code(
        "ADD",
        &good,
        &serde_json::to_vec(&json!({"cniVersion": "1.0.0", "type": "vswitch-cni"})).expect("json"),
    );
    assert_eq!(c, errcode::INVALID_CONFIG, "{m}");
    let (c, m) = code(
        "ADD",
        &good,
        &serde_json::to_vec(&json!({"cniVersion": "0.2.0", "name": "n", "type": "vswitch-cni"}))
            .expect("json"),
    );
    assert_eq!(c, errcode::INCOMPATIBLE_VERSION, "{m}");
    let (c, m) = code(
        "ADD",
        &CniEnv::new("c1", "/var/run/netns/no-such-namespace-here", "eth0"),
        &bytes,
    );
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("CNI_NETNS"), "{m}");
    let (c, m) = code("ADD", &CniEnv::new("c1", "/etc/hostname", "eth0"), &bytes);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("not a network namespace"), "{m}");
    let (c, m) = code(
        "ADD",
        &CniEnv::new("c1", &pod.path(), "averyveryverylongname0"),
        &bytes,
    );
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("CNI_IFNAME"), "{m}");
    let (c, m) = code("FROB", &good, &bytes);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    // An interface the Pod already has (not ours).
    pod.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    let (c, m) = code("ADD", &good, &bytes);
    assert_eq!(c, errcode::CONFLICT, "{m}");
    assert!(m.contains("already exists"), "{m}");
    // Nothing was left behind by any of them, and the switch still serves.
    assert_eq!(node.pods()["pods"].as_array().map(Vec::len), Some(0));
    assert_eq!(node.daemon.ports().len(), 1);
    let v = exec_plugin(
        &plugin,
        "VERSION",
        &CniEnv::default(),
        &json!({"cniVersion": "1.0.0"}),
        PLUGIN_TIMEOUT,
    );
    assert!(v.success());
    assert_eq!(
        v.json.expect("json")["supportedVersions"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
}

#[test]
#[ignore = "needs root"]
fn gc_removes_what_is_not_valid() {
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.1.0", None, &[]);
    let (a, b) = (Netns::new(), Netns::new());
    let env_a = containerd_env(&container_id(), &a, "keep");
    let env_b = containerd_env(&container_id(), &b, "stale");
    rt.add(&list, &env_a, None).expect("ADD a");
    rt.add(&list, &env_b, None).expect("ADD b");
    // The runtime lost its cache of b (a crash): only the plugin's GC can find it.
    let _ = std::fs::remove_file(rt.cache_file(&list.name, &env_b));
    rt.gc(
        &list,
        &[Attachment {
            container_id: env_a.container_id.clone(),
            ifname: "eth0".into(),
        }],
    )
    .expect("GC");
    let pods = node.pods();
    let left: Vec<&str> = pods["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["container_id"].as_str())
        .collect();
    assert_eq!(left, vec![env_a.container_id.as_str()], "{pods}");
    assert!(b.link("eth0").is_none(), "GC left b's interface");
    rt.del(&list, &env_a, None).expect("DEL a");
}

#[test]
fn the_shipped_conflist_is_one_the_plugin_accepts() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/10-vswitch.conflist");
    let text = std::fs::read_to_string(path).expect("deploy/10-vswitch.conflist");
    let list = Conflist::parse(&text).expect("a valid conflist");
    assert_eq!(list.plugin_type(0), "vswitch-cni");
    assert_eq!(
        list.cni_version, "1.1.0",
        "libcni picks the highest of cniVersions"
    );
    let conf = vswitch_proto::cni::NetConf::from_value(&list.request_config(0, None, None))
        .expect("the plugin accepts its configuration");
    assert_eq!(conf.socket, vswitch_proto::cni::DEFAULT_SOCKET);
}

#[test]
#[ignore = "needs root"]
fn leftovers_of_a_stopped_switch_are_taken_over_or_removed() {
    let mut node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.0.0", None, &[]);
    // A TAP of the switch's kind that no port knows, where the runtime wants eth0 (as a
    // switch killed between creating a Pod's TAP and saving leaves it).
    let pod = Netns::new();
    pod.exec_ok(&[
        "ip",
        "tuntap",
        "add",
        "dev",
        "eth0",
        "mode",
        "tap",
        "multi_queue",
        "vnet_hdr",
    ]);
    let env = containerd_env(&container_id(), &pod, "stray");
    let e = rt.add(&list, &env, None).unwrap_err();
    assert_eq!(e.code, errcode::CONFLICT, "{e}");
    // The runtime's DEL after the failed ADD removes it; the retried ADD works.
    rt.del(&list, &env, None).expect("DEL");
    assert!(pod.link("eth0").is_none(), "the stray TAP is still there");
    let ip = addr_of(&rt.add(&list, &env, None).expect("ADD after the DEL"));
    assert_eq!(ping(&node.ns, &ip, 2).received, 2);
    // The switch's own namespace is no container's.
    let own = CniEnv::new(&container_id(), &node.ns.path(), "eth9");
    let e = rt.add(&list, &own, None).unwrap_err();
    assert_eq!(e.code, errcode::INVALID_ENV, "{e}");
    // A gateway TAP left by a switch whose state was lost is taken over, not a reason
    // to refuse to start.
    rt.del(&list, &env, None).expect("DEL");
    node.daemon.kill9();
    std::fs::remove_file(node.daemon.state_file()).expect("remove the state");
    let _ = std::fs::remove_file(node.daemon.journal_file());
    node.daemon.restart();
    assert!(node.ns.link("vsw-gw0").is_some());
    let ip = addr_of(&rt.add(&list, &env, None).expect("ADD after the restart"));
    assert_eq!(ping(&node.ns, &ip, 2).received, 2);
    rt.del(&list, &env, None).expect("DEL");
}

/// A Pod whose object (no address yet, as in a real cluster before its sandbox exists)
/// and whose ingress default-deny policy are known before kubelet's ADD: its policy is
/// in place when ADD returns, so the very first packet to it is dropped (and counted),
/// while the node still reaches it and an unselected Pod stays open.
#[test]
#[ignore = "needs root"]
fn a_pod_is_policed_from_its_first_packet_when_add_returns() {
    let _serial = serial();
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.1.0", None, &[]);
    let manifest = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-0", "namespace": "e2e", "labels": {"app": "web"}},
         "status": {"phase": "Pending"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "deny-web", "namespace": "e2e"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}}}},
    ]});
    let f = node.daemon.dir().join("web.json");
    std::fs::write(&f, manifest.to_string()).unwrap();
    node.daemon.ctl_ok(&["apply", "-f", f.to_str().unwrap()]);
    let (client, web) = (Netns::new(), Netns::new());
    let client_env = containerd_env(&container_id(), &client, "client-0");
    let client_ip = addr_of(&rt.add(&list, &client_env, None).expect("ADD client"));
    let web_env = containerd_env(&container_id(), &web, "web-0");
    let web_ip = addr_of(&rt.add(&list, &web_env, None).expect("ADD web"));
    // At once: the first echo request to it is already refused.
    assert_eq!(
        ping(&client, &web_ip, 1).received,
        0,
        "web must be isolated at once"
    );
    let got = node
        .daemon
        .ctl_json(&["get", "networkpolicies", "-n", "e2e", "deny-web"]);
    let denied: u64 = got["items"][0]["cells"][4]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_default();
    assert!(denied >= 1, "the refused request is counted: {got}");
    // The node reaches it; web reaches the client (not isolated), and its replies pass.
    assert_eq!(ping(&node.ns, &web_ip, 1).received, 1);
    assert_eq!(ping(&web, &client_ip, 1).received, 1);
    let check = node
        .daemon
        .ctl_ok(&["policy-check", "e2e/client-0", "e2e/web-0", "tcp", "80"]);
    assert!(check.starts_with("deny"), "{check}");
    for env in [&client_env, &web_env] {
        rt.del(&list, env, None).expect("DEL");
    }
}

#[test]
#[ignore = "needs root"]
fn add_and_del_work_while_careless_clients_crowd_the_control_socket() {
    let node = Node::new();
    let rt = node.runtime();
    let list = node.conflist("1.1.0", None, &[]);
    // Every connection slot taken by clients that say nothing, and eight more sending
    // requests of the largest size without their newline.
    let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let socket = node.daemon.socket();
    let idle: Vec<_> = (0..200)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok())
        .collect();
    let hogs: Vec<_> = (0..8)
        .map(|_| {
            hog(
                socket.clone(),
                vswitch_proto::rpc::MAX_MESSAGE_BYTES,
                go.clone(),
            )
        })
        .collect();
    // Once they have been quiet a second, kubelet's calls get through.
    std::thread::sleep(Duration::from_millis(1500));
    let pod = Netns::new();
    let env = containerd_env(&container_id(), &pod, "crowded");
    let started = std::time::Instant::now();
    let result = rt
        .add(&list, &env, None)
        .expect("ADD among careless clients");
    let took = started.elapsed();
    addr_of(&result);
    rt.check(&list, &env, None)
        .expect("CHECK among careless clients");
    rt.del(&list, &env, None)
        .expect("DEL among careless clients");
    go.store(true, std::sync::atomic::Ordering::Release);
    for h in hogs {
        let _ = h.join();
    }
    drop(idle);
    assert!(took < Duration::from_secs(5), "ADD took {took:?}");
}
