//! The switch as a service, with in-memory ports (no kernel devices, no root).

use super::*;
use crate::ctl::{self, Hooks};
use parking_lot::Mutex;
use std::time::Instant;
use vswitch_proto::flowmod::Usage;
use vswitch_proto::rpc::{AddPortParams, PortType};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "vswitch-daemon-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &TempDir) -> Switch {
    Switch::start(Config {
        workers: 2,
        busy_poll: Duration::ZERO,
        ..Config::new(&dir.0)
    })
    .unwrap()
}

fn mem(name: &str) -> AddPortParams {
    AddPortParams {
        name: name.into(),
        port_type: PortType::Memory,
        netns: None,
        ifname: None,
        mac: None,
        mtu: None,
        ip: None,
        gateway: None,
    }
}

fn flows(lines: &[&str]) -> rpc::FlowsParams {
    rpc::FlowsParams {
        flows: lines.iter().map(|s| s.to_string()).collect(),
        strict: false,
    }
}

fn udp_frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn memory_ports_forward_and_count() {
    let dir = TempDir::new("fwd");
    let mut sw = start(&dir);
    let a = sw.add_port(mem("a")).unwrap();
    let b = sw.add_port(mem("b")).unwrap();
    assert_eq!((a.no, b.no), (1, 2));
    sw.add_flows(flows(&["in_port=a,udp,actions=output:b"]))
        .unwrap();
    let pa = sw.memory_port("a").unwrap();
    let pb = sw.memory_port("b").unwrap();
    for _ in 0..3 {
        pa.inject(&udp_frame());
    }
    sw.poke_memory_ports();
    let mut got = Vec::new();
    assert!(wait_for(|| {
        got.extend(pb.drain_tx());
        got.len() == 3
    }));
    assert_eq!(got[0], udp_frame());
    let dump = sw.dump_flows(rpc::SelectFlowsParams::default()).unwrap();
    assert_eq!(dump[0].n_packets, 3);
    assert!(dump[0].line.contains("n_packets=3"), "{}", dump[0].line);
    assert!(dump[0].line.contains("in_port=a"), "{}", dump[0].line);
    let ports = sw.dump_ports();
    assert_eq!((ports[0].rx_packets, ports[1].tx_packets), (3, 3));
    let t = sw
        .trace(rpc::TraceParams {
            flow: "in_port=a,udp".into(),
            ct_next: vec![],
        })
        .unwrap();
    assert_eq!(t.actions, "2");
    assert_eq!(
        t.tables[0].rule.as_deref(),
        Some("udp,in_port=a actions=output:b")
    );
    let cache = sw.dump_cache();
    assert_eq!(cache.workers.len(), 2);
    assert_eq!(cache.workers[0].megaflows.len(), 1);
    assert_eq!(sw.show().datapath["packets"], 3);
}

#[test]
fn state_survives_a_restart() {
    let dir = TempDir::new("restart");
    let before = {
        let mut sw = start(&dir);
        sw.add_port(mem("a")).unwrap();
        sw.add_port(mem("b")).unwrap();
        sw.add_groups(rpc::GroupsParams {
            groups: vec![
                "group_id=7,type=all,bucket=actions=output:a,bucket=actions=output:b".into(),
            ],
        })
        .unwrap();
        sw.add_flows(flows(&[
            "table=0,priority=10,in_port=a,actions=group:7",
            "table=3,cookie=0x42,ip,nw_dst=10.0.0.0/8,actions=dec_ttl,output:b",
        ]))
        .unwrap();
        // A learned flow is dynamic state: not persisted.
        sw.bridge
            .learn(
                &text::parse_flow("table=9,ip,actions=drop", Usage::Add, &text::NoPortNames)
                    .unwrap(),
                0,
            )
            .unwrap();
        let flows: Vec<String> = sw
            .dump_flows(rpc::SelectFlowsParams::default())
            .unwrap()
            .iter()
            .filter(|f| f.table != 9)
            .map(|f| format!("{} {}", f.matching, f.actions))
            .collect();
        (sw.list_ports(), flows, sw.dump_groups())
    };
    let sw = start(&dir);
    let flows: Vec<String> = sw
        .dump_flows(rpc::SelectFlowsParams::default())
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f.matching, f.actions))
        .collect();
    let ports: Vec<(u32, String, String)> = sw
        .list_ports()
        .into_iter()
        .map(|p| (p.no, p.name, p.mac))
        .collect();
    let want: Vec<(u32, String, String)> = before
        .0
        .into_iter()
        .map(|p| (p.no, p.name, p.mac))
        .collect();
    assert_eq!(ports, want);
    assert_eq!(flows, before.1);
    assert_eq!(sw.dump_groups(), before.2);
}

#[test]
fn damaged_state_stops_startup() {
    let dir = TempDir::new("damaged");
    drop(start(&dir));
    let s = Store::open(&dir.0).unwrap();
    std::fs::write(s.path(), "{ not json").unwrap();
    let err = Switch::start(Config {
        workers: 1,
        busy_poll: Duration::ZERO,
        ..Config::new(&dir.0)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains(&s.path().display().to_string()), "{err}");
    // A flow line that no longer parses is named too.
    std::fs::write(
        s.path(),
        r#"{"version":1,"ports":[],"groups":[],"flows":["tp_dst=80,actions=drop"]}"#,
    )
    .unwrap();
    let err = Switch::start(Config {
        workers: 1,
        busy_poll: Duration::ZERO,
        ..Config::new(&dir.0)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("flow") && err.contains("line 1"), "{err}");
}

fn hooks() -> Hooks {
    Hooks {
        shutdown: Box::new(|| {}),
        reopen_logs: Box::new(|| Ok(())),
        control: Default::default(),
    }
}

fn call(sw: &Mutex<Switch>, req: &str) -> Value {
    let resp = ctl::handle(sw, &hooks(), req.as_bytes()).expect("a response");
    serde_json::to_value(resp).unwrap()
}

#[test]
fn bad_requests_get_errors_and_change_nothing() {
    let dir = TempDir::new("bad");
    let sw = Mutex::new(start(&dir));
    let ok = call(
        &sw,
        r#"{"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"a","type":"memory"}}"#,
    );
    assert_eq!(ok["result"]["name"], "a");
    call(
        &sw,
        r#"{"jsonrpc":"2.0","id":2,"method":"add-flows","params":{"flows":["in_port=a,actions=drop"]}}"#,
    );
    let state_before = std::fs::read(Store::open(&dir.0).unwrap().path()).unwrap();
    let cases = [
        ("{ not json", code::PARSE_ERROR, "not valid JSON"),
        ("[1,2]", code::INVALID_REQUEST, "JSON object"),
        (
            r#"{"id":1,"method":"show"}"#,
            code::INVALID_REQUEST,
            "jsonrpc",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"frobnicate"}"#,
            code::METHOD_NOT_FOUND,
            "add-flows",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"add-port","params":{"type":"memory"}}"#,
            code::INVALID_PARAMS,
            "name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"add-flows","params":{"flows":["ip,actions=drop","tp_dst=80,actions=drop"]}}"#,
            code::REFUSED,
            "flow 2",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"a","type":"memory"}}"#,
            code::CONFLICT,
            "already taken",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"averyveryverylongname","type":"tap"}}"#,
            code::REFUSED,
            "15",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"p9","type":"tap","netns":"/var/run/netns/vsw-no-such-ns"}}"#,
            code::REFUSED,
            "does not exist",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"del-port","params":{"name":"zz"}}"#,
            code::NOT_FOUND,
            "zz",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"del-groups","params":{"group_id":4}}"#,
            code::NOT_FOUND,
            "4",
        ),
    ];
    for (req, want, text) in cases {
        let r = call(&sw, req);
        assert_eq!(r["error"]["code"], want, "{req}: {r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains(text), "{req}: {msg}");
    }
    let bad = call(
        &sw,
        r#"{"jsonrpc":"2.0","id":9,"method":"add-flows","params":{"flows":["ip,actions=drop","tp_dst=80,actions=drop"]}}"#,
    );
    assert_eq!(bad["id"], 9);
    assert_eq!(bad["error"]["data"]["index"], 1);
    // A notification gets no answer.
    assert!(ctl::handle(&sw, &hooks(), br#"{"jsonrpc":"2.0","method":"show"}"#).is_none());
    // Nothing changed.
    let state_after = std::fs::read(Store::open(&dir.0).unwrap().path()).unwrap();
    assert_eq!(state_before, state_after);
    let s = sw.lock();
    assert_eq!(s.list_ports().len(), 1);
    assert_eq!(s.bridge().pipeline().n_rules(), 1);
}

#[test]
fn flow_changes_round_trip_through_the_protocol() {
    let dir = TempDir::new("mods");
    let sw = Mutex::new(start(&dir));
    for req in [
        r#"{"jsonrpc":"2.0","id":1,"method":"add-port","params":{"name":"a","type":"memory"}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"add-flows","params":{"flows":["priority=5,ip,actions=output:a","priority=6,arp,actions=normal"]}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"mod-flows","params":{"flows":["ip,actions=drop"]}}"#,
    ] {
        let r = call(&sw, req);
        assert!(r.get("error").is_none(), "{r}");
    }
    let r = call(
        &sw,
        r#"{"jsonrpc":"2.0","id":4,"method":"dump-flows","params":{"criteria":"ip"}}"#,
    );
    let lines = r["result"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["actions"], "drop");
    let r = call(
        &sw,
        r#"{"jsonrpc":"2.0","id":5,"method":"del-flows","params":{"criteria":"priority=6,arp","strict":true}}"#,
    );
    assert_eq!(r["result"]["count"], 1);
    let r = call(&sw, r#"{"jsonrpc":"2.0","id":6,"method":"del-flows"}"#);
    assert_eq!(r["result"]["count"], 1);
}

#[test]
fn port_numbers_are_not_reused_at_once() {
    let dir = TempDir::new("portno");
    let mut sw = start(&dir);
    assert_eq!(sw.add_port(mem("a")).unwrap().no, 1);
    assert_eq!(sw.add_port(mem("b")).unwrap().no, 2);
    sw.del_port("a").unwrap();
    // A flow left naming port 1 must not start applying to the next port.
    assert_eq!(sw.add_port(mem("c")).unwrap().no, 3);
    drop(sw);
    // After a restart the count goes on from the highest port.
    let mut sw = start(&dir);
    assert_eq!(sw.add_port(mem("d")).unwrap().no, 4);
}

#[test]
fn the_switchs_cookies_are_not_for_users() {
    let dir = TempDir::new("cookies");
    let mut sw = start(&dir);
    for cookie in ["0x100000000000000", "0x200000000000007"] {
        let e = sw
            .add_flows(flows(&[&format!("cookie={cookie},actions=drop")]))
            .unwrap_err();
        assert!(e.message.contains("keeps for its own"), "{}", e.message);
    }
    sw.add_flows(flows(&["cookie=0x7,actions=drop"])).unwrap();
    // Selecting the switch's flows by cookie (with a mask) is fine.
    sw.del_flows(rpc::SelectFlowsParams {
        criteria: Some("cookie=0x200000000000000/0xff00000000000000".into()),
        strict: false,
    })
    .unwrap();
}

fn node(name: &str, cidr: &str, ip: &str) -> rpc::NodeSpec {
    rpc::NodeSpec {
        name: name.into(),
        pod_cidr: cidr.into(),
        node_ip: ip.into(),
    }
}

fn manifest(doc: usize, object: Value) -> rpc::ManifestObject {
    rpc::ManifestObject {
        source: "nodes.yaml".into(),
        doc,
        object,
    }
}

fn node_object(name: &str, cidr: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    })
}

#[test]
fn nodes_are_checked_persisted_and_listed() {
    let dir = TempDir::new("nodes");
    let mut sw = start(&dir);
    sw.add_node(&node("b", "10.244.2.0/24", "192.168.1.2"))
        .unwrap();
    // The same again is fine; other settings under the name are a conflict.
    sw.add_node(&node("b", "10.244.2.0/24", "192.168.1.2"))
        .unwrap();
    let e = sw
        .add_node(&node("b", "10.244.9.0/24", "192.168.1.2"))
        .unwrap_err();
    assert_eq!(e.code, code::CONFLICT, "{}", e.message);
    let e = sw
        .add_node(&node("c", "10.244.2.128/25", "192.168.1.3"))
        .unwrap_err();
    assert!(e.message.contains("overlaps node b"), "{}", e.message);
    for (cidr, ip) in [
        ("10.244.3.0", "192.168.1.3"),
        ("10.244.3.1/24", "192.168.1.3"),
        ("10.244.3.0/24", "192.168.1"),
        ("10.244.3.0/24", "224.0.0.1"),
    ] {
        let e = sw.add_node(&node("c", cidr, ip)).unwrap_err();
        assert_eq!(e.code, code::REFUSED, "{cidr} {ip}: {}", e.message);
    }
    assert!(
        sw.add_node(&node("bad name", "10.244.3.0/24", "192.168.1.3"))
            .is_err()
    );
    sw.shutdown();
    drop(sw);
    let mut sw = start(&dir);
    let nodes = sw.list_nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "b");
    assert_eq!(nodes[0].gateway, "10.244.2.1");
    assert_eq!(nodes[0].source, "vswitchctl");
    sw.del_node("b").unwrap();
    assert_eq!(sw.del_node("b").unwrap_err().code, code::NOT_FOUND);
    assert!(sw.list_nodes().is_empty());
    sw.shutdown();
}

#[test]
fn apply_reports_each_object_and_skips_unknown_kinds() {
    let dir = TempDir::new("apply");
    let mut sw = start(&dir);
    let objects = vec![
        manifest(1, node_object("b", "10.244.2.0/24", "192.168.1.2")),
        manifest(
            2,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}}),
        ),
        manifest(3, node_object("c", "10.244.2.0/25", "192.168.1.3")),
        manifest(4, node_object("d", "10.244.4.0/24", "192.168.1.4")),
    ];
    let r = sw.apply(&objects).results;
    let outcomes: Vec<(&str, &str)> = r
        .iter()
        .map(|o| (o.name.as_str(), o.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("b", "created"),
            ("web", "skipped"),
            ("c", "error"),
            ("d", "created")
        ]
    );
    let err = r[2].message.as_deref().unwrap_or_default();
    assert!(
        err.starts_with("spec.podCIDR: ") && err.contains("overlaps node b"),
        "{err}"
    );
    assert_eq!(r[2].doc, 3);
    // Again: unchanged; a changed address: configured.
    let again = sw.apply(&objects[..1]).results;
    assert_eq!(again[0].outcome, "unchanged");
    let moved = sw
        .apply(&[manifest(
            1,
            node_object("b", "10.244.2.0/24", "192.168.1.22"),
        )])
        .results;
    assert_eq!(moved[0].outcome, "configured");
    assert_eq!(sw.list_nodes()[0].node_ip, "192.168.1.22");
    assert_eq!(sw.list_nodes()[0].source, "manifest");
    let gone = sw.delete(&objects).results;
    let outcomes: Vec<&str> = gone.iter().map(|o| o.outcome.as_str()).collect();
    assert_eq!(outcomes, ["deleted", "skipped", "not found", "deleted"]);
    assert!(sw.list_nodes().is_empty());
    sw.shutdown();
}

#[test]
fn namespaces_pods_and_network_policies_are_kept_shown_and_restored() {
    let dir = TempDir::new("netpol-objects");
    let mut sw = start(&dir);
    let ns = json!({ "apiVersion": "v1", "kind": "Namespace",
                     "metadata": { "name": "shop", "labels": { "team": "web" } } });
    let pod = json!({ "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web-0", "namespace": "shop", "labels": { "app": "web" } },
        "spec": { "nodeName": "n1", "containers": [{ "name": "c",
                  "ports": [{ "name": "http", "containerPort": 8080 }] }] },
        "status": { "phase": "Running", "podIP": "10.244.1.5" } });
    let policy = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": { "podSelector": { "matchLabels": { "app": "web" } },
                  "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": { "team": "web" } } }],
                                "ports": [{ "port": "http" }] }] } });
    let mut bad = policy.clone();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["ingress"][0]["from"][0] = json!({ "ipBlock": { "cidr": "10.0.0.1/33" } });
    let r = sw
        .apply(&[
            manifest(1, ns.clone()),
            manifest(2, pod.clone()),
            manifest(3, policy.clone()),
            manifest(4, bad.clone()),
        ])
        .results;
    let outcomes: Vec<&str> = r.iter().map(|o| o.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["created", "created", "created", "error"],
        "{r:?}"
    );
    assert_eq!(r[2].group, "networking.k8s.io");
    assert_eq!(
        r[3].message.as_deref(),
        Some(
            "spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.1/33\": must be a \
             valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        )
    );
    let get = |sw: &Switch, resource: &str| {
        sw.get(&rpc::GetParams {
            resource: resource.into(),
            name: None,
            namespace: Some("shop".into()),
            all_namespaces: false,
        })
        .unwrap()
    };
    let shown = |sw: &Switch| {
        [
            get(sw, "ns").items[0].cells.clone(),
            get(sw, "po").items[0].cells.clone(),
            get(sw, "netpol").items[0].cells.clone(),
        ]
    };
    let want = [
        vec![
            "shop".to_string(),
            "kubernetes.io/metadata.name=shop,team=web".into(),
            "manifest".into(),
        ],
        vec![
            "web-0".into(),
            "Running".into(),
            "10.244.1.5".into(),
            "n1".into(),
            "http:8080/TCP".into(),
            "app=web".into(),
            "manifest".into(),
        ],
        vec![
            "web".into(),
            "app=web".into(),
            "0".into(),
            "0".into(),
            "0".into(),
            "Ingress".into(),
            "1".into(),
            "0".into(),
            "manifest".into(),
        ],
    ];
    assert_eq!(shown(&sw), want);
    assert_eq!(
        get(&sw, "networkpolicies").items.len(),
        1,
        "the bad one is not kept"
    );
    let again = sw.apply(&[manifest(1, policy.clone())]).results;
    assert_eq!(again[0].outcome, "unchanged");
    sw.shutdown();
    // Restarted: the same objects, read back from the state.
    let mut sw = start(&dir);
    assert_eq!(shown(&sw), want);
    let gone = sw
        .delete(&[manifest(1, policy), manifest(2, pod), manifest(3, ns)])
        .results;
    let outcomes: Vec<&str> = gone.iter().map(|o| o.outcome.as_str()).collect();
    assert_eq!(outcomes, ["deleted", "deleted", "deleted"]);
    sw.shutdown();
}

/// A manifest's Nodes are saved together, once, before the reply: the backup the save
/// keeps is the state from before the whole manifest. When that save fails, nothing of
/// the manifest stays, and each change says so.
#[test]
fn a_manifest_is_saved_once_and_not_at_all_when_the_save_fails() {
    let dir = TempDir::new("apply-once");
    let mut sw = start(&dir);
    sw.add_node(&node("a", "10.244.9.0/24", "192.168.1.9"))
        .unwrap();
    let objects: Vec<_> = (2..6)
        .map(|i| {
            manifest(
                i,
                node_object(
                    &format!("n{i}"),
                    &format!("10.244.{i}.0/24"),
                    &format!("192.168.1.{i}"),
                ),
            )
        })
        .collect();
    let journal = Store::open(&dir.0).unwrap().journal_path();
    let changes = || {
        std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let before = changes();
    let r = sw.apply(&objects).results;
    assert!(r.iter().all(|o| o.outcome == "created"), "{r:?}");
    assert_eq!(
        changes(),
        before + 1,
        "one journal record for the whole manifest"
    );
    let saved: Vec<String> = Store::open(&dir.0)
        .unwrap()
        .load()
        .unwrap()
        .objects
        .into_keys()
        .map(|(_, _, name)| name)
        .collect();
    assert_eq!(saved, ["a", "n2", "n3", "n4", "n5"]);

    // The journal cannot be written (a directory stands in its place): the manifest is
    // undone.
    let aside = dir.0.join("journal-aside");
    std::fs::rename(&journal, &aside).unwrap();
    std::fs::create_dir(&journal).unwrap();
    let more = [
        manifest(1, node_object("n6", "10.244.6.0/24", "192.168.1.6")),
        manifest(2, node_object("n2", "10.244.2.0/24", "192.168.1.22")),
        // The same again: unchanged by then, and not applied either.
        manifest(3, node_object("n2", "10.244.2.0/24", "192.168.1.22")),
        manifest(4, node_object("n3", "10.244.3.0/24", "192.168.1.3")),
    ];
    let r = sw.apply(&more).results;
    let outcomes: Vec<&str> = r.iter().map(|o| o.outcome.as_str()).collect();
    assert_eq!(outcomes, ["error", "error", "error", "unchanged"]);
    for o in &r[..3] {
        let m = o.message.as_deref().unwrap_or_default();
        assert!(
            m.starts_with("not applied: the state could not be saved"),
            "{m}"
        );
    }
    let del = sw.delete(&objects[..1]).results;
    assert_eq!(del[0].outcome, "error");
    let listed: Vec<(String, String)> = sw
        .list_nodes()
        .into_iter()
        .map(|n| (n.name, n.node_ip))
        .collect();
    assert_eq!(
        listed,
        [
            ("a".to_string(), "192.168.1.9".to_string()),
            ("n2".into(), "192.168.1.2".into()),
            ("n3".into(), "192.168.1.3".into()),
            ("n4".into(), "192.168.1.4".into()),
            ("n5".into(), "192.168.1.5".into()),
        ]
    );
    std::fs::remove_dir(&journal).unwrap();
    std::fs::rename(&aside, &journal).unwrap();
    let r = sw.apply(&more).results;
    let outcomes: Vec<&str> = r.iter().map(|o| o.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["created", "configured", "unchanged", "unchanged"]
    );
    sw.shutdown();
}

/// A state saved with a tunnel on 192.0.2.1 (TEST-NET-1: no interface here has it).
fn save_tunnel_state(dir: &TempDir) {
    let mut store = Store::open(&dir.0).unwrap();
    let mut state = store.load().unwrap();
    state.ports.insert(
        7,
        crate::store::PortRecord {
            no: 7,
            name: overlay::TUNNEL_PORT.into(),
            port_type: PortType::Vxlan,
            netns: None,
            ifname: overlay::TUNNEL_PORT.into(),
            mac: None,
            mtu: Some(1450),
            ip: "192.0.2.1/32".parse().ok(),
            gateway: None,
            tunnel: Some(crate::store::TunnelRecord {
                local: "192.0.2.1".parse().unwrap(),
                port: 4789,
                vni: 1,
            }),
        },
    );
    store.compact(&state).unwrap();
}

#[test]
fn a_saved_tunnel_whose_address_is_gone_is_kept_missing_and_no_tunnel_removes_it() {
    let dir = TempDir::new("tunnel");
    save_tunnel_state(&dir);
    // Without --node-ip the saved tunnel is tried; its address is gone: shown missing,
    // kept (with its number) for the next start, and the switch runs.
    let mut sw = start(&dir);
    let tun = sw
        .list_ports()
        .into_iter()
        .find(|p| p.port_type == PortType::Vxlan)
        .expect("the tunnel is listed");
    assert_eq!(tun.no, 7);
    assert!(tun.state.starts_with("missing"), "{}", tun.state);
    sw.shutdown();
    drop(sw);
    let saved = Store::open(&dir.0).unwrap().load().unwrap();
    assert!(saved.ports.values().any(|p| p.port_type == PortType::Vxlan));
    // --no-tunnel: gone, from the switch and from the state.
    let mut sw = Switch::start(Config {
        no_tunnel: true,
        ..Config::new(&dir.0)
    })
    .unwrap();
    assert!(
        sw.list_ports()
            .iter()
            .all(|p| p.port_type != PortType::Vxlan)
    );
    sw.shutdown();
    drop(sw);
    let saved = Store::open(&dir.0).unwrap().load().unwrap();
    assert!(saved.ports.values().all(|p| p.port_type != PortType::Vxlan));
}

#[test]
fn conntrack_settings_survive_restarts() {
    let dir = TempDir::new("ct-settings");
    let start_ct = |dir: &TempDir| {
        Switch::start(Config {
            workers: 1,
            busy_poll: Duration::ZERO,
            ct_capacity: 1000,
            ..Config::new(&dir.0)
        })
        .unwrap()
    };
    let settings = |sw: &Switch| {
        (
            sw.ct_get_maxconns(),
            sw.ct_get_limits(&rpc::CtZones::default()),
            sw.ct_get_timeouts(),
        )
    };
    let before = {
        let mut sw = start_ct(&dir);
        let defaults = settings(&sw);
        sw.ct_set_maxconns(&rpc::CtMaxconns { maxconns: 500 })
            .unwrap();
        sw.ct_set_limits(
            &vswitch_proto::conntrack::parse_set_limits(&[
                "default=10".into(),
                "zone=5,limit=3".into(),
                "zone=7,limit=4".into(),
            ])
            .unwrap(),
        )
        .unwrap();
        sw.ct_del_limits(&rpc::CtZones { zones: vec![7] }).unwrap();
        sw.ct_set_timeouts(&rpc::CtTimeouts {
            timeouts: vec![rpc::CtTimeout {
                name: "udp".into(),
                secs: 45,
            }],
        })
        .unwrap();

        // Refusals change nothing.
        let e = sw
            .ct_set_maxconns(&rpc::CtMaxconns { maxconns: 5000 })
            .unwrap_err();
        assert!(
            e.message.contains("above the table's capacity 1000"),
            "{}",
            e.message
        );
        let e = sw
            .ct_set_timeouts(&rpc::CtTimeouts {
                timeouts: vec![
                    rpc::CtTimeout {
                        name: "icmp".into(),
                        secs: 5,
                    },
                    rpc::CtTimeout {
                        name: "bogus".into(),
                        secs: 5,
                    },
                ],
            })
            .unwrap_err();
        assert!(
            e.message.contains("no timeout named \"bogus\""),
            "{}",
            e.message
        );

        let now = settings(&sw);
        assert_ne!(now, defaults);
        assert_eq!(now.0.maxconns, 500);
        assert_eq!(
            now.1,
            rpc::CtLimits {
                default: 10,
                zones: vec![rpc::CtZoneInfo {
                    zone: 5,
                    limit: 3,
                    count: 0
                }],
            }
        );
        let udp = now.2.timeouts.iter().find(|t| t.name == "udp").unwrap();
        assert_eq!(udp.secs, 45);
        let icmp = now.2.timeouts.iter().find(|t| t.name == "icmp").unwrap();
        assert_eq!(icmp.secs, 30);
        now
    };
    // Dropped without a shutdown: the journal holds the changes.
    let sw = start_ct(&dir);
    assert_eq!(settings(&sw), before);
    drop(sw);
    // Started again: now from the snapshot the last start wrote.
    let sw = start_ct(&dir);
    assert_eq!(settings(&sw), before);
    let show = sw.show();
    let ct = show.conntrack.unwrap();
    assert_eq!((ct.connections, ct.limit, ct.capacity), (0, 500, 1000));
}

#[test]
fn meters_survive_a_restart_and_go_with_their_flows() {
    let dir = TempDir::new("meters");
    let before = {
        let mut sw = start(&dir);
        sw.add_port(mem("a")).unwrap();
        sw.add_meters(rpc::MetersParams {
            meters: vec![
                "meter=1,kbps,burst,bands=type=drop,rate=1000,burst_size=100".into(),
                "meter=2,pktps,bands=type=drop,rate=10".into(),
            ],
        })
        .unwrap();
        // Like Open vSwitch: an existing meter cannot be added again.
        let err = sw
            .add_meters(rpc::MetersParams {
                meters: vec!["meter=2,pktps,bands=type=drop,rate=5".into()],
            })
            .unwrap_err();
        assert!(err.message.contains("already exists"), "{err:?}");
        sw.add_flows(flows(&["in_port=a,actions=meter:1,output:a"]))
            .unwrap();
        assert!(sw.add_flows(flows(&["actions=meter:9"])).is_err());
        let all = rpc::MeterIdParams::default();
        let dumped = sw.dump_meters(all.clone());
        assert_eq!(
            dumped[0].line,
            "meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100"
        );
        assert_eq!(dumped[0].flow_count, 1);
        sw.dump_meters(all)
            .into_iter()
            .map(|m| m.line)
            .collect::<Vec<_>>()
    };
    let mut sw = start(&dir);
    let after: Vec<String> = sw
        .dump_meters(rpc::MeterIdParams::default())
        .into_iter()
        .map(|m| m.line)
        .collect();
    assert_eq!(after, before);
    // Deleting a meter deletes the flows that use it, and that is saved too.
    let n = sw
        .del_meters(rpc::MeterIdParams { meter_id: Some(1) })
        .unwrap();
    assert_eq!(n.count, 1);
    assert!(
        sw.dump_flows(rpc::SelectFlowsParams::default())
            .unwrap()
            .is_empty()
    );
    drop(sw);
    let sw = start(&dir);
    assert_eq!(sw.dump_meters(rpc::MeterIdParams::default()).len(), 1);
    assert!(
        sw.dump_flows(rpc::SelectFlowsParams::default())
            .unwrap()
            .is_empty()
    );
}

fn service_object(ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": { "clusterIP": ip, "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
    })
}

fn slice_object(name: &str, ips: &[&str]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": "shop",
                      "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
        "endpoints": ips.iter().map(|i| json!({ "addresses": [i] })).collect::<Vec<_>>()
    })
}

/// The ServiceLB rules' actions and the buckets of the Services' groups.
fn service_state(sw: &Switch) -> (Vec<String>, Vec<String>) {
    let rules = sw
        .dump_flows(rpc::SelectFlowsParams::default())
        .unwrap()
        .into_iter()
        .filter(|f| f.table == 5 && f.priority == 200)
        .map(|f| f.line)
        .collect();
    let groups = sw.dump_groups().into_iter().map(|g| g.line).collect();
    (rules, groups)
}

#[test]
fn services_join_their_slices_in_any_order_and_survive_a_restart() {
    let dir = TempDir::new("services");
    let mut sw = start(&dir);
    // A slice before its Service: stored, nothing installed yet.
    let r = sw
        .apply(&[manifest(1, slice_object("web-a", &["10.244.1.5"]))])
        .results;
    assert_eq!(r[0].outcome, "created", "{:?}", r[0].message);
    assert_eq!(service_state(&sw), (vec![], vec![]));
    let r = sw
        .apply(&[manifest(1, service_object("10.96.0.10"))])
        .results;
    assert_eq!(r[0].outcome, "created", "{:?}", r[0].message);
    let (rules, groups) = service_state(&sw);
    assert_eq!(rules.len(), 1);
    assert!(
        rules[0].contains("nw_dst=10.96.0.10") && rules[0].contains("actions=group:"),
        "{rules:?}"
    );
    assert_eq!(groups.len(), 1);
    assert!(groups[0].contains("nat(dst=10.244.1.5:8080)"), "{groups:?}");
    // A second slice adds its endpoint to the same group.
    sw.apply(&[manifest(1, slice_object("web-b", &["10.244.2.6"]))]);
    let (_, groups) = service_state(&sw);
    assert!(
        groups[0].contains("10.244.1.5:8080") && groups[0].contains("10.244.2.6:8080"),
        "{groups:?}"
    );
    // `get svc` and `get endpointslices`.
    let g = sw
        .get(&rpc::GetParams {
            resource: "svc".into(),
            name: None,
            namespace: Some("shop".into()),
            all_namespaces: false,
        })
        .unwrap();
    assert_eq!(g.items.len(), 1);
    assert_eq!(
        g.items[0].cells,
        [
            "web",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "80/TCP",
            "10.244.1.5:8080 (0),10.244.2.6:8080 (0)",
            "manifest"
        ]
    );
    let g = sw
        .get(&rpc::GetParams {
            resource: "endpointslices.discovery.k8s.io".into(),
            name: None,
            namespace: None,
            all_namespaces: true,
        })
        .unwrap();
    assert_eq!(g.items.len(), 2);
    sw.shutdown();
    // Restarted: the same flows and groups.
    let mut sw = start(&dir);
    let (rules, groups) = service_state(&sw);
    assert_eq!(rules.len(), 1);
    assert!(
        groups[0].contains("10.244.1.5:8080") && groups[0].contains("10.244.2.6:8080"),
        "{groups:?}"
    );
    // Both slices removed: the group goes, the rule refuses.
    sw.delete(&[
        manifest(1, slice_object("web-a", &[])),
        manifest(2, slice_object("web-b", &[])),
    ]);
    let (rules, groups) = service_state(&sw);
    assert!(groups.is_empty(), "{groups:?}");
    assert_eq!(rules.len(), 1);
    assert!(!rules[0].contains("group:"), "{rules:?}");
    // The Service removed: nothing left.
    sw.delete(&[manifest(1, service_object("10.96.0.10"))]);
    assert_eq!(service_state(&sw), (vec![], vec![]));
    sw.shutdown();
}

/// Objects from the API: cached at a clean stop, read back at the next start (saved
/// objects winning), replaced by the first list; a broken or foreign cache is ignored.
#[test]
fn api_objects_come_back_from_their_cache_until_the_list() {
    use vswitch_watch::Update;
    let dir = TempDir::new("apicache");
    let start_api = || {
        let mut sw = Switch::start(Config {
            workers: 2,
            busy_poll: Duration::ZERO,
            api_cache: true,
            ..Config::new(&dir.0)
        })
        .unwrap();
        sw.api_watching("http://api".into(), &["Namespace"]);
        sw
    };
    let ns =
        |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let list = |names: &[&str]| {
        let mut u = vec![Update::Relist { kind: "Namespace" }];
        u.extend(names.iter().map(|n| Update::Applied {
            kind: "Namespace",
            object: ns(n),
            listing: true,
        }));
        u.push(Update::Listed { kind: "Namespace" });
        u
    };
    let sources = |sw: &Switch| -> Vec<(String, String)> {
        let mut v: Vec<_> = sw
            .objects
            .iter()
            .filter(|(k, _)| k.kind == "Namespace")
            .map(|(k, s)| (k.name.clone(), s.source.clone()))
            .collect();
        v.sort();
        v
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };

    let mut sw = start_api();
    sw.api_updates(list(&["a", "b"]));
    assert!(sw.api_ready());
    let status = sw.api_status().unwrap();
    let synced = status.kinds[0].synced.clone().unwrap_or_default();
    assert!(synced.starts_with("20"), "listed at a date: {synced}");
    let r = sw.apply(&[manifest(1, ns("c"))]).results;
    assert!(r.iter().all(|o| o.outcome == "created"), "{r:?}");
    sw.shutdown();
    drop(sw);

    // The cache also names "c" (as if the API had it when written): the saved one wins.
    let file = dir.0.join(api::CACHE_FILE);
    let mut cache: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let objects = cache["objects"].as_array_mut().unwrap();
    assert_eq!(
        objects.len(),
        2,
        "only the API's objects are cached: {objects:?}"
    );
    let mut c = objects[0].clone();
    c["name"] = json!("c");
    c["object"]["metadata"]["name"] = json!("c");
    c["id"] = json!(999);
    objects.push(c);
    std::fs::write(&file, serde_json::to_vec(&cache).unwrap()).unwrap();

    let mut sw = start_api();
    assert!(!sw.api_ready(), "not ready before the list, cache or not");
    assert_eq!(
        sources(&sw),
        pairs(&[("a", "api"), ("b", "api"), ("c", "manifest")])
    );
    // The list replaces the cache: "b" was deleted while the switch was stopped.
    sw.api_updates(list(&["a"]));
    assert!(sw.api_ready());
    assert_eq!(sources(&sw), pairs(&[("a", "api"), ("c", "manifest")]));
    sw.shutdown();
    drop(sw);

    // The cache now holds "a": every way it can be broken leaves it out, and nothing else.
    let good: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(good["objects"].as_array().map(Vec::len), Some(1), "{good}");
    let text = serde_json::to_vec(&good).unwrap();
    let mut other = good.clone();
    other["version"] = json!(2);
    let mut unversioned = good.clone();
    unversioned.as_object_mut().unwrap().remove("version");
    for broken in [
        text[..text.len() - 2].to_vec(),
        serde_json::to_vec(&other).unwrap(),
        serde_json::to_vec(&unversioned).unwrap(),
        b"[]".to_vec(),
        [&text[..], b"x"].concat(),
    ] {
        std::fs::write(&file, &broken).unwrap();
        let sw = start_api();
        assert_eq!(
            sources(&sw),
            pairs(&[("c", "manifest")]),
            "{}",
            String::from_utf8_lossy(&broken)
        );
        drop(sw);
    }
    std::fs::write(&file, &text).unwrap();
    let sw = start_api();
    assert_eq!(sources(&sw), pairs(&[("a", "api"), ("c", "manifest")]));
}

/// An object applied from a file wins over the API's of the same name: the API neither
/// takes it over nor removes it; deleting the file's puts the API's in its place.
#[test]
fn objects_from_files_win_over_the_apis_and_give_way_when_deleted() {
    use vswitch_watch::Update;
    let dir = TempDir::new("apishadow");
    let mut sw = start(&dir);
    sw.api_watching("http://api".into(), &["Namespace"]);
    let ns = |name: &str, team: &str| {
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "labels": {"team": team}}})
    };
    let applied = |o: Value| Update::Applied {
        kind: "Namespace",
        object: o,
        listing: false,
    };
    let team = |sw: &Switch, name: &str| -> Option<(String, String)> {
        let key = crate::k8s::ObjectKey {
            kind: "Namespace",
            namespace: String::new(),
            name: name.into(),
        };
        let s = sw.objects.get(&key)?;
        let obj = sw.object_record(&key, s).object;
        Some((
            obj["metadata"]["labels"]["team"].as_str()?.to_string(),
            s.source.clone(),
        ))
    };
    let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
    // The file's first: the API's waits behind it, through changes and a deletion.
    sw.apply(&[manifest(1, ns("a", "file"))]);
    sw.api_updates(vec![
        Update::Relist { kind: "Namespace" },
        Update::Applied {
            kind: "Namespace",
            object: ns("a", "api"),
            listing: true,
        },
        Update::Listed { kind: "Namespace" },
    ]);
    assert_eq!(team(&sw, "a"), pair("file", "manifest"));
    sw.api_updates(vec![applied(ns("a", "api2"))]);
    assert_eq!(team(&sw, "a"), pair("file", "manifest"));
    // Deleting the file's: the API's takes its place.
    let r = sw.delete(&[manifest(1, ns("a", "file"))]).results;
    assert_eq!(r[0].outcome, "deleted", "{r:?}");
    assert_eq!(team(&sw, "a"), pair("api2", "api"));

    // The API's first, then the file's: the file's takes over and is saved; the API
    // deleting its own leaves the file's; nothing comes back after `delete -f`.
    sw.api_updates(vec![applied(ns("b", "api"))]);
    assert_eq!(team(&sw, "b"), pair("api", "api"));
    sw.apply(&[manifest(1, ns("b", "file"))]);
    assert_eq!(team(&sw, "b"), pair("file", "manifest"));
    sw.api_updates(vec![Update::Deleted {
        kind: "Namespace",
        object: ns("b", "api"),
    }]);
    assert_eq!(team(&sw, "b"), pair("file", "manifest"));
    sw.delete(&[manifest(1, ns("b", "file"))]);
    assert_eq!(team(&sw, "b"), None);
    // The same as the API's, applied from a file: the user's now, saved.
    sw.api_updates(vec![applied(ns("c", "same"))]);
    sw.apply(&[manifest(1, ns("c", "same"))]);
    assert_eq!(team(&sw, "c"), pair("same", "manifest"));
    sw.shutdown();
    drop(sw);
    let sw = start(&dir);
    assert_eq!(team(&sw, "c"), pair("same", "manifest"), "saved");
    assert_eq!(team(&sw, "a"), None, "the API's is not saved");
}
