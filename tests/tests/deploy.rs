//! The DaemonSet in `deploy/kubernetes/` (issue 15), checked as far as this machine can:
//! no image can be built or cluster run here, so the manifests are read with the
//! project's own manifest reader, the ClusterRole is held to exactly what the watcher
//! asks for, and the image's recipe to what the workspace builds.

use serde_json::Value;
use std::collections::BTreeSet;
use vswitch_proto::k8s::load_documents;

fn manifests() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/vswitch.yaml"
    );
    let text = std::fs::read_to_string(path).expect("deploy/kubernetes/vswitch.yaml");
    load_documents("vswitch.yaml", &text)
        .expect("the manifests read")
        .into_iter()
        .map(|o| o.object)
        .collect()
}

fn of_kind(all: &[Value], kind: &str) -> Value {
    let found: Vec<&Value> = all.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0].clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_cluster_role_grants_exactly_what_the_watcher_asks_for() {
    let all = manifests();
    let role = of_kind(&all, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: BTreeSet<String> = strings(&rule["verbs"]).into_iter().collect();
        assert_eq!(
            verbs,
            ["get", "list", "watch"].map(String::from).into(),
            "read-only: {rule}"
        );
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                granted.insert((g.clone(), r));
            }
        }
    }
    let asked: BTreeSet<(String, String)> = vswitch_watch::KINDS
        .iter()
        .map(|k| (k.group.to_string(), k.plural.to_string()))
        .collect();
    assert_eq!(granted, asked, "every kind watched, nothing more");
    // Bound to the DaemonSet's ServiceAccount.
    let binding = of_kind(&all, "ClusterRoleBinding");
    let sa = of_kind(&all, "ServiceAccount");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        sa["metadata"]["namespace"]
    );
}

#[test]
fn the_daemonset_runs_vswitchd_on_the_hosts_network_with_what_it_needs() {
    let all = manifests();
    let ds = of_kind(&all, "DaemonSet");
    let sa = of_kind(&all, "ServiceAccount");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(ds["metadata"]["namespace"], sa["metadata"]["namespace"]);
    let c = &pod["containers"][0];
    let args = strings(&c["args"]);
    assert!(
        args.contains(&"--node-name=$(NODE_NAME)".to_string()),
        "{args:?}"
    );
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName",
        "the node's name from the downward API"
    );
    assert_eq!(c["securityContext"]["privileged"], true);
    // The mounts vswitchd needs: its socket's and state's directories, the Pods'
    // network namespaces, the TUN device.
    let mounts: BTreeSet<String> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "/run/vswitch",
        "/var/lib/vswitch",
        "/var/run/netns",
        "/dev/net/tun",
    ] {
        assert!(mounts.contains(want), "{want} mounted: {mounts:?}");
    }
    assert!(
        args.iter()
            .any(|a| a == "--socket=/run/vswitch/vswitchd.sock")
    );
    assert!(args.iter().any(|a| a == "--state-dir=/var/lib/vswitch"));
    // Every mount has its volume, every volume a host path.
    let volumes: BTreeSet<String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!(v["hostPath"]["path"].is_string(), "{v}");
            v["name"].as_str().unwrap().to_string()
        })
        .collect();
    for m in c["volumeMounts"].as_array().unwrap() {
        assert!(volumes.contains(m["name"].as_str().unwrap()), "{m}");
    }
    // The init container installs the plugin and the shipped conflist on the node.
    let init = pod["initContainers"][0]["args"].to_string();
    assert!(init.contains("/host/opt/cni/bin/vswitch-cni"), "{init}");
    assert!(
        init.contains("/host/etc/cni/net.d/10-vswitch.conflist"),
        "{init}"
    );
    // Runs everywhere, first.
    assert_eq!(pod["tolerations"][0]["operator"], "Exists");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    // Every flag it is given is one vswitchd takes.
    let help = std::process::Command::new(vswitch_tests::e2e::bin("vswitchd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for a in &args {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "the DaemonSet gives vswitchd {flag}, which it does not take:\n{help}"
        );
    }
}

#[test]
fn the_containerfile_builds_what_the_daemonset_runs() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let file = std::fs::read_to_string(format!("{dir}/deploy/kubernetes/Containerfile"))
        .expect("deploy/kubernetes/Containerfile");
    for bin in ["vswitchd", "vswitchctl", "vswitch-cni"] {
        assert!(
            file.contains(&format!("target/release/{bin}")),
            "{bin} copied"
        );
    }
    // The conflist it copies is the shipped one (tests/tests/cni.rs checks the plugin
    // takes it).
    let copied = file
        .lines()
        .find_map(|l| l.strip_prefix("COPY deploy/"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a COPY of the conflist");
    assert!(
        std::path::Path::new(&format!("{dir}/deploy/{copied}")).exists(),
        "deploy/{copied}"
    );
    let all = manifests();
    let ds = of_kind(&all, "DaemonSet");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&c["command"]), ["/usr/local/bin/vswitchd"]);
    assert!(file.contains("/usr/local/bin/"));
}
