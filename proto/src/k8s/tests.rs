use super::*;
use proptest::prelude::*;
use serde_json::json;

use crate::rpc::NodeSpec;

/// A Node as `kubectl get node worker-1 -o yaml` prints it (trimmed of most conditions).
const NODE_YAML: &str = r#"# kubectl get node worker-1 -o yaml
apiVersion: v1
kind: Node
metadata:
  annotations:
    kubeadm.alpha.kubernetes.io/cri-socket: unix:///var/run/containerd/containerd.sock
    node.alpha.kubernetes.io/ttl: "0"
    volumes.kubernetes.io/controller-managed-attach-detach: "true"
  creationTimestamp: "2024-05-02T09:14:27Z"
  labels:
    beta.kubernetes.io/arch: amd64
    kubernetes.io/hostname: worker-1
    node-role.kubernetes.io/worker: ""
  name: worker-1
  resourceVersion: "48213"
  uid: 5c0b1b6e-3c8e-4d8f-9a57-0f3c2b6a9e11
spec:
  podCIDR: 10.244.2.0/24
  podCIDRs:
  - 10.244.2.0/24
  taints:
  - effect: NoSchedule
    key: node.kubernetes.io/unschedulable
    timeAdded: "2024-05-02T10:00:00Z"
  unschedulable: true
status:
  addresses:
  - address: 192.168.56.12
    type: InternalIP
  - address: worker-1
    type: Hostname
  allocatable:
    cpu: "2"
    memory: 3926Mi
    pods: "110"
  conditions:
  - lastHeartbeatTime: "2024-05-02T10:05:11Z"
    message: kubelet is posting ready status
    reason: KubeletReady
    status: "True"
    type: Ready
  daemonEndpoints:
    kubeletEndpoint:
      Port: 10250
"#;

fn load(text: &str) -> Vec<ManifestObject> {
    load_documents("nodes.yaml", text).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(text: &str) -> String {
    load_documents("nodes.yaml", text)
        .expect_err(text)
        .to_string()
}

fn spec(name: &str, cidr: &str, ip: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        pod_cidr: cidr.into(),
        node_ip: ip.into(),
    }
}

#[test]
fn a_real_node() {
    let objects = load(NODE_YAML);
    assert_eq!(objects.len(), 1);
    let o = &objects[0];
    assert_eq!((o.source.as_str(), o.doc), ("nodes.yaml", 1));
    assert_eq!(o.object["spec"]["unschedulable"], json!(true));
    assert_eq!(
        o.object["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        json!(10250)
    );
    assert_eq!(
        o.object["metadata"]["labels"]["node-role.kubernetes.io/worker"],
        json!("")
    );
    assert_eq!(
        node_spec(&o.object),
        Ok(spec("worker-1", "10.244.2.0/24", "192.168.56.12"))
    );
    assert_eq!(
        object_kind_name(&o.object),
        ("Node".to_string(), "worker-1".to_string())
    );
    // The same object as JSON reads the same.
    let text = serde_json::to_string_pretty(&o.object).unwrap();
    assert_eq!(load(&text)[0].object, o.object);
}

#[test]
fn documents_count_from_one_and_empty_ones_count() {
    let text = "\
---
# the first document is only a comment
---
apiVersion: v1
kind: Node
metadata: {name: a}
---
---
apiVersion: v1
kind: Service
metadata:
  name: web
...
---
null
---
kind: Node
apiVersion: v1
metadata: {name: b}
";
    let got: Vec<(usize, (String, String))> = load(text)
        .iter()
        .map(|o| (o.doc, object_kind_name(&o.object)))
        .collect();
    let kn = |k: &str, n: &str| (k.to_string(), n.to_string());
    assert_eq!(
        got,
        vec![
            (2, kn("Node", "a")),
            (4, kn("Service", "web")),
            (6, kn("Node", "b"))
        ]
    );
    assert!(load("").is_empty());
    assert!(load("# nothing here\n---\n").is_empty());
}

#[test]
fn lists_are_flattened_keeping_their_document() {
    let text = r#"
apiVersion: v1
kind: Service
metadata: {name: first}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: a}
- apiVersion: v1
  kind: List
  items:
  - {apiVersion: v1, kind: Service, metadata: {name: web}}
---
apiVersion: v1
kind: NodeList
metadata: {resourceVersion: "1"}
items:
- metadata: {name: b}
- kind: Node
  apiVersion: v1
  metadata: {name: c}
---
apiVersion: v1
kind: List
"#;
    let got: Vec<(usize, Value)> = load(text).into_iter().map(|o| (o.doc, o.object)).collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "first"}})
            ),
            (
                2,
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}})
            ),
            (
                2,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}})
            ),
            // A typed list's items get their kind and apiVersion from it.
            (
                3,
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}})
            ),
            (
                3,
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "c"}})
            ),
        ]
    );
    // A kind that merely ends in "List", without items, is an object like any other.
    let o = load("apiVersion: example.com/v1\nkind: AllowList\nspec: {}\n");
    assert_eq!(o[0].object["kind"], "AllowList");
}

#[test]
fn json_one_or_several() {
    let one = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}}"#;
    assert_eq!(load(one).len(), 1);
    let several = format!("{one}\n{one}\n\n{one}");
    let docs: Vec<usize> = load(&several).iter().map(|o| o.doc).collect();
    assert_eq!(docs, [1, 2, 3]);
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}},
        {"kind": "Node", "metadata": {"name": "b"}}]}"#;
    assert_eq!(
        load_err(list),
        "nodes.yaml: document 1: items[1].apiVersion: missing"
    );
    // YAML in flow style starts like JSON: it is read as YAML when JSON fails.
    let flow =
        "{apiVersion: v1, kind: Node, metadata: {name: a}}\n---\n{kind: Node, apiVersion: v1}\n";
    assert_eq!(load(flow).len(), 2);
    // A BOM is not content.
    assert_eq!(load(&format!("\u{feff}{one}")).len(), 1);
    assert_eq!(load(&format!("\u{feff}{NODE_YAML}")).len(), 1);
}

#[test]
fn load_errors_name_the_file_the_document_and_the_field() {
    for (text, expected) in [
        (
            "kind: Node\napiVersion: v1\n---\napiVersion: v1\nmetadata: {name: a}\n",
            "nodes.yaml: document 2: kind: missing",
        ),
        (
            "kind: 5\napiVersion: v1\n",
            "nodes.yaml: document 1: kind: not a string: this is a number",
        ),
        (
            "kind: Node\napiVersion: ''\n",
            "nodes.yaml: document 1: apiVersion: empty",
        ),
        (
            "---\n- a\n- b\n",
            "nodes.yaml: document 1: not an object: a manifest holds mappings with `kind` and \
             `apiVersion`, this is a list",
        ),
        (
            "kind: List\napiVersion: v1\nitems: [{kind: Node, apiVersion: v1}, 7]\n",
            "nodes.yaml: document 1: items[1]: not an object: a manifest holds mappings with \
             `kind` and `apiVersion`, this is a number",
        ),
        (
            "kind: List\napiVersion: v1\nitems: {}\n",
            "nodes.yaml: document 1: items: not a list: this is an object",
        ),
        (
            "kind: Node\napiVersion: v1\n---\nkind: Node\n  apiVersion: v1\n",
            "nodes.yaml: document 2: line 5, column 13: mapping values are not allowed in this \
             context",
        ),
        (
            "kind: Node\napiVersion: v1\nmetadata:\n  name: a\n  name: b\n",
            "nodes.yaml: document 1: line 5, column 3: duplicate key \"name\"",
        ),
        (
            "{\"kind\": \"Node\",\n \"apiVersion\" \"v1\"}",
            "nodes.yaml: document 1: line 2, column 15: expected `:`",
        ),
    ] {
        assert_eq!(load_err(text), expected, "{text:?}");
    }
    let e = load_documents("-", &" ".repeat(MAX_MANIFEST_BYTES + 1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "-: {} bytes is more than the 256 MiB a manifest may have",
            MAX_MANIFEST_BYTES + 1
        )
    );
}

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "Hostname", "address": name},
                                 {"type": "InternalIP", "address": "192.168.1.11"}]}
    })
}

fn field_err(obj: &Value) -> String {
    node_spec(obj).expect_err(&obj.to_string()).to_string()
}

#[test]
fn node_field_errors() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 22] = [
        (
            |n| n["kind"] = json!("Service"),
            "kind: expected Node, found \"Service\"",
        ),
        (
            |n| n["apiVersion"] = json!("v2"),
            "apiVersion: expected v1 for a Node, found \"v2\"",
        ),
        (|n| n["metadata"] = json!({}), "metadata.name: missing"),
        (
            |n| n["metadata"] = json!("x"),
            "metadata: not an object: this is a string",
        ),
        (
            |n| n["metadata"]["name"] = json!(3),
            "metadata.name: not a string: this is a number",
        ),
        (
            |n| n["metadata"]["name"] = json!("Worker_1"),
            "metadata.name: not a valid node name: \"Worker_1\": a node name is lower-case \
             letters, digits, '-' and '.', starts and ends with a letter or digit, and has at \
             most 253 characters",
        ),
        (|n| n["spec"] = json!({}), "spec.podCIDR: missing"),
        (
            |n| n["spec"] = json!({"podCIDR": "x"}),
            "spec.podCIDR: not a valid IPv4 CIDR: \"x\"",
        ),
        (
            |n| n["spec"] = json!({"podCIDR": "10.244.1.0/31"}),
            "spec.podCIDR: prefix length /31 leaves no room for a gateway and a Pod (at most \
             /30): \"10.244.1.0/31\"",
        ),
        (
            |n| n["spec"] = json!({"podCIDR": "10.244.1.5/24"}),
            "spec.podCIDR: host bits are set: \"10.244.1.5/24\" (the network is 10.244.1.0/24)",
        ),
        (
            |n| n["spec"] = json!({"podCIDR": "10.244.1.0/33"}),
            "spec.podCIDR: not a valid IPv4 CIDR: \"10.244.1.0/33\"",
        ),
        (
            |n| n["spec"]["podCIDRs"] = json!(["10.244.9.0/24"]),
            "spec.podCIDRs: the first entry \"10.244.9.0/24\" differs from spec.podCIDR \
             \"10.244.1.0/24\"",
        ),
        (
            |n| n["spec"] = json!({"podCIDRs": ["fd00:10:244:1::/64", "10.244.1.0/16"]}),
            "spec.podCIDRs[1]: host bits are set: \"10.244.1.0/16\" (the network is \
             10.244.0.0/16)",
        ),
        (
            |n| n["spec"] = json!({"podCIDRs": ["fd00:10:244:1::/64"]}),
            "spec.podCIDRs: no IPv4 CIDR: this switch is IPv4 only",
        ),
        (
            |n| n["spec"] = json!({"podCIDR": "fd00:10:244:1::/64"}),
            "spec.podCIDR: an IPv6 CIDR, and spec.podCIDRs has no IPv4 one: this switch is IPv4 \
             only",
        ),
        (
            |n| n["spec"] = json!({"podCIDRs": "10.244.1.0/24"}),
            "spec.podCIDRs: not a list: this is a string",
        ),
        (
            |n| n["status"] = json!({}),
            "status.addresses: no InternalIP address",
        ),
        (
            |n| n["status"]["addresses"] = json!([{"type": "ExternalIP", "address": "1.2.3.4"}]),
            "status.addresses: no InternalIP address",
        ),
        (
            |n| n["status"]["addresses"] = json!([{"type": "InternalIP", "address": "fd00::1"}]),
            "status.addresses: no IPv4 InternalIP address: this switch is IPv4 only",
        ),
        (
            |n| n["status"]["addresses"] = json!([{"type": "InternalIP", "address": "1.2.3"}]),
            "status.addresses[0].address: not a valid IPv4 address: \"1.2.3\"",
        ),
        (
            |n| n["status"]["addresses"] = json!([{"type": "InternalIP"}]),
            "status.addresses[0].address: missing",
        ),
        (
            |n| n["status"]["addresses"] = json!([5]),
            "status.addresses[0]: not an object: this is a number",
        ),
    ];
    for (edit, expected) in cases {
        let mut n = node("worker-1");
        edit(&mut n);
        assert_eq!(field_err(&n), expected);
    }
}

#[test]
fn pod_cidr_choice() {
    let with_spec = |s: Value| {
        let mut n = node("a");
        n["spec"] = s;
        node_spec(&n).map(|s| s.pod_cidr)
    };
    // IPv6-first dual stack: spec.podCIDR is the IPv6 one.
    assert_eq!(
        with_spec(json!({"podCIDR": "fd00:1::/64", "podCIDRs": ["fd00:1::/64", "10.244.3.0/24"]})),
        Ok("10.244.3.0/24".into())
    );
    assert_eq!(
        with_spec(json!({"podCIDRs": ["10.244.4.0/24", "fd00:1::/64"]})),
        Ok("10.244.4.0/24".into())
    );
    assert_eq!(
        with_spec(json!({"podCIDR": "10.244.5.0/24", "podCIDRs": null})),
        Ok("10.244.5.0/24".into())
    );
    assert_eq!(
        with_spec(json!({"podCIDR": "0.0.0.0/0"})),
        Ok("0.0.0.0/0".into())
    );
}

#[test]
fn cidr_and_ip_and_name_checks() {
    for ok in ["10.244.1.0/24", "10.0.0.0/8", "192.168.7.4/30"] {
        assert!(parse_pod_cidr(ok).is_ok(), "{ok}");
    }
    for bad in [
        "10.244.1.0",
        "10.244.1.0/",
        "10.244.1.0/+8",
        "10.244.1.0/08",
        "010.244.1.0/24",
        "10.244.1.0/24 ",
        "a.b.c.d/8",
        "10.244.1.0/-1",
        "fd00::/64",
    ] {
        assert!(parse_pod_cidr(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_node_ip("10.0.0.1"), Ok("10.0.0.1".parse().unwrap()));
    for bad in [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "10.0.0",
        "fd00::1",
    ] {
        assert!(parse_node_ip(bad).is_err(), "{bad}");
    }
    for ok in [
        "a",
        "worker-1",
        "ip-10-0-0-1.ec2.internal",
        "0",
        &"a".repeat(253),
    ] {
        assert!(check_node_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "A",
        "-a",
        "a-",
        "a..b",
        ".a",
        "a_b",
        "a b",
        &"a".repeat(254),
    ] {
        assert!(check_node_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn object_refs() {
    assert_eq!(object_ref("Node", "w1"), "node/w1");
    assert_eq!(object_ref("NetworkPolicy", "deny"), "networkpolicy/deny");
    assert_eq!(object_ref("", ""), "object/<no name>");
    assert_eq!(
        object_kind_name(&json!({"kind": 5, "metadata": "x"})),
        (String::new(), String::new())
    );
}

// ---- properties ----

/// A YAML text for `v`: block style, strings double-quoted (JSON's escapes are YAML's) or
/// plain when `plain` says they read back as the same string.
fn to_yaml(v: &Value, indent: usize, plain: &dyn Fn(&str) -> bool, out: &mut String) {
    let pad = " ".repeat(indent);
    let scalar = |v: &Value| match v {
        Value::String(s) if plain(s) => s.clone(),
        other => other.to_string(),
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                out.push_str(&format!("{pad}{}:", scalar(&Value::String(k.clone()))));
                match v {
                    Value::Object(c) if !c.is_empty() => {
                        out.push('\n');
                        to_yaml(v, indent + 2, plain, out);
                    }
                    Value::Array(c) if !c.is_empty() => {
                        out.push('\n');
                        // Sequences in a mapping may sit at the mapping's own indentation,
                        // as kubectl prints them.
                        to_yaml(v, indent, plain, out);
                    }
                    _ => out.push_str(&format!(" {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match item {
                    Value::Object(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        to_yaml(item, indent + 2, plain, out);
                    }
                    Value::Array(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        to_yaml(item, indent + 2, plain, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Strings of this shape read back as strings when plain.
fn plain_safe(s: &str) -> bool {
    let mut parts = s.splitn(2, '-');
    let head = parts.next().unwrap_or_default();
    head.len() >= 3
        && head.bytes().all(|b| b.is_ascii_lowercase())
        && parts
            .next()
            .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){0,2}"
}

fn arb_cidr() -> impl Strategy<Value = String> {
    (any::<u32>(), 0u8..=30).prop_map(|(a, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        format!("{}/{len}", std::net::Ipv4Addr::from(a & mask))
    })
}

fn arb_ip() -> impl Strategy<Value = std::net::Ipv4Addr> {
    any::<u32>()
        .prop_map(std::net::Ipv4Addr::from)
        .prop_filter("a unicast address", |ip| {
            !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast()
        })
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{3,8}-[a-z0-9]{1,5}",
        ".{0,12}",
        Just("yes".to_string()),
        Just("0644".to_string()),
        Just("".to_string()),
        Just("null".to_string()),
        Just("- a: b # c".to_string()),
        Just("line one\nline two\ttab \"quoted\" \\ back".to_string()),
    ]
}

prop_compose! {
    fn arb_node()(
        name in arb_name(),
        cidr in arb_cidr(),
        ip in arb_ip(),
        with_list in any::<bool>(),
        with_single in any::<bool>(),
        v6_first in any::<bool>(),
        hostname_first in any::<bool>(),
        labels in proptest::collection::btree_map(arb_text(), arb_text(), 0..4),
        generation in any::<i64>(),
        unschedulable in any::<bool>(),
    ) -> (Value, NodeSpec) {
        let mut spec = serde_json::Map::new();
        if with_single || !with_list {
            spec.insert("podCIDR".into(), json!(cidr));
        }
        if with_list {
            spec.insert("podCIDRs".into(), json!([cidr, "fd00:10:244::/64"]));
        }
        spec.insert("unschedulable".into(), json!(unschedulable));
        let mut addresses = vec![json!({"type": "InternalIP", "address": ip.to_string()})];
        if v6_first {
            addresses.insert(0, json!({"type": "InternalIP", "address": "fd00::12"}));
        }
        if hostname_first {
            addresses.insert(0, json!({"type": "Hostname", "address": name}));
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels, "generation": generation},
            "spec": spec,
            "status": {"addresses": addresses, "capacity": {"pods": "110", "cpu": 2}},
        });
        (object, NodeSpec { name, pod_cidr: cidr, node_ip: ip.to_string() })
    }
}

/// A document of a multi-document file.
#[derive(Clone, Debug)]
enum Doc {
    Node(Value),
    Empty,
    Comment,
    List(Vec<Value>),
}

fn arb_doc() -> impl Strategy<Value = Doc> {
    prop_oneof![
        3 => arb_node().prop_map(|(n, _)| Doc::Node(n)),
        1 => Just(Doc::Empty),
        1 => Just(Doc::Comment),
        1 => proptest::collection::vec(arb_node().prop_map(|(n, _)| n), 0..3).prop_map(Doc::List),
    ]
}

fn yaml_of(v: &Value, plain: bool) -> String {
    let mut out = String::new();
    if plain {
        to_yaml(v, 0, &plain_safe, &mut out);
    } else {
        to_yaml(v, 0, &|_| false, &mut out);
    }
    out
}

/// The file, and the (document, object) pairs it should load as.
fn multi_doc(docs: &[Doc]) -> (String, Vec<(usize, Value)>) {
    let mut text = String::new();
    let mut expected = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        text.push_str("---\n");
        match d {
            Doc::Node(n) => {
                text.push_str(&yaml_of(n, true));
                expected.push((i + 1, n.clone()));
            }
            Doc::Empty => {}
            Doc::Comment => text.push_str("# nothing but a comment\n"),
            Doc::List(items) => {
                let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
                text.push_str(&yaml_of(&list, true));
                expected.extend(items.iter().map(|n| (i + 1, n.clone())));
            }
        }
    }
    (text, expected)
}

/// A YAML-ish token soup: more likely to reach the parser's corners than random text.
fn arb_soup() -> impl Strategy<Value = String> {
    let tokens = [
        "---\n",
        "...\n",
        "\n",
        "  ",
        "\t",
        "- ",
        ": ",
        ":",
        "? ",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "&a ",
        "*a",
        "&b ",
        "*b",
        "<<: ",
        "!!str ",
        "!!int ",
        "!foo ",
        "|\n",
        ">-\n",
        "# c\n",
        "'",
        "\"",
        "\\",
        "kind",
        "Node",
        "List",
        "NodeList",
        "apiVersion",
        "v1",
        "items",
        "metadata",
        "name",
        "spec",
        "podCIDR",
        "podCIDRs",
        "10.244.1.0/24",
        "status",
        "addresses",
        "type",
        "InternalIP",
        "address",
        "10.0.0.1",
        "yes",
        "0x1f",
        ".inf",
        "~",
        "%YAML 1.2\n",
        "\u{feff}",
        "é",
        "\u{85}",
        "\r\n",
    ];
    proptest::collection::vec(proptest::sample::select(tokens.to_vec()), 0..60)
        .prop_map(|t| t.concat())
}

/// What any successful load must satisfy, and `node_spec` must not panic.
fn check_loaded(text: &str) {
    let Ok(objects) = load_documents("f", text) else {
        return;
    };
    let mut last = 0;
    for o in &objects {
        assert!(o.doc >= 1 && o.doc >= last, "{text:?}");
        last = o.doc;
        assert!(o.object["kind"].is_string(), "{text:?}");
        assert!(o.object["apiVersion"].is_string(), "{text:?}");
        if o.object["kind"] == NODE_KIND {
            let _ = node_spec(&o.object);
        }
    }
    // The objects fit in a request the switch can read back.
    let wire = serde_json::to_string(&crate::rpc::Request::new(
        1,
        crate::rpc::method::APPLY,
        crate::rpc::ApplyParams { objects },
    ))
    .unwrap();
    assert!(
        serde_json::from_str::<crate::rpc::Request>(&wire).is_ok(),
        "{text:?}"
    );
}

proptest! {
    #[test]
    fn nodes_round_trip_through_yaml_and_json((object, expected) in arb_node(), plain in any::<bool>()) {
        let texts = [
            yaml_of(&object, plain),
            serde_json::to_string(&object).unwrap(),
            serde_json::to_string_pretty(&object).unwrap(),
        ];
        for text in texts {
            let objects = load_documents("n.yaml", &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            prop_assert_eq!(objects.len(), 1);
            prop_assert_eq!(objects[0].doc, 1);
            prop_assert_eq!(&objects[0].object, &object, "{}", text);
            prop_assert_eq!(node_spec(&objects[0].object), Ok(expected.clone()));
        }
    }

    #[test]
    fn multi_document_numbering(docs in proptest::collection::vec(arb_doc(), 0..6)) {
        let (text, expected) = multi_doc(&docs);
        let got: Vec<(usize, Value)> = load_documents("m.yaml", &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .into_iter()
            .map(|o| (o.doc, o.object))
            .collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn every_error_names_its_document_and_field(
        docs in proptest::collection::vec(arb_node().prop_map(|(n, _)| n), 1..5),
        pick in any::<prop::sample::Index>(),
        breakage in 0usize..6,
    ) {
        let bad = pick.index(docs.len());
        let mut docs: Vec<Doc> = docs.into_iter().map(Doc::Node).collect();
        let Doc::Node(n) = &mut docs[bad] else { unreachable!() };
        let (field, at_load) = match breakage {
            0 => { n.as_object_mut().unwrap().remove("kind"); ("kind", true) }
            1 => { n["apiVersion"] = json!(1); ("apiVersion", true) }
            2 => { n["metadata"].as_object_mut().unwrap().remove("name"); ("metadata.name", false) }
            3 => { n["spec"]["podCIDR"] = json!("10.244.1.1/24"); n["spec"].as_object_mut().unwrap().remove("podCIDRs"); ("spec.podCIDR", false) }
            4 => { n["status"]["addresses"] = json!([]); ("status.addresses", false) }
            _ => { n["spec"]["podCIDRs"] = json!(["10.1.0.0/16"]); n["spec"]["podCIDR"] = json!("10.2.0.0/16"); ("spec.podCIDRs", false) }
        };
        let (text, _) = multi_doc(&docs);
        match load_documents("m.yaml", &text) {
            Err(e) => {
                prop_assert!(at_load, "{}", e);
                prop_assert_eq!(e.doc, Some(bad + 1));
                let prefix = format!("m.yaml: document {}: {field}: ", bad + 1);
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
            }
            Ok(objects) => {
                prop_assert!(!at_load);
                let errors: Vec<(usize, FieldError)> = objects
                    .iter()
                    .filter_map(|o| node_spec(&o.object).err().map(|e| (o.doc, e)))
                    .collect();
                prop_assert_eq!(errors.len(), 1, "{:?}", errors);
                prop_assert_eq!(errors[0].0, bad + 1);
                prop_assert_eq!(errors[0].1.path.as_str(), field);
                let prefix = format!("{field}: ");
                prop_assert!(errors[0].1.to_string().starts_with(&prefix));
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_loaded(&text);
    }

    #[test]
    fn yaml_soup_never_panics(text in arb_soup()) {
        check_loaded(&text);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let text = v.to_string();
        check_loaded(&text);
        check_loaded(&yaml_of(&v, false));
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        arb_text().prop_map(Value::String),
        prop_oneof![
            Just("Node"),
            Just("List"),
            Just("v1"),
            Just("10.244.0.0/16")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("kind".to_string()),
                    Just("apiVersion".to_string()),
                    Just("items".to_string()),
                    Just("metadata".to_string()),
                    Just("name".to_string()),
                    arb_text()
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    for text in [
        "[".repeat(1 << 20),
        "{a: ".repeat(1 << 16),
        "- ".repeat(1 << 16),
        (0..5000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect(),
        "{\"a\":".repeat(1 << 16),
        format!("kind: x\napiVersion: v1\nv: {}", "!!str ".repeat(1000)),
    ] {
        let r = load_documents("deep.yaml", &text);
        assert!(r.is_err(), "{}", &text[..40.min(text.len())]);
    }
}

#[test]
fn a_node_is_sent_with_only_what_the_switch_reads() {
    let full = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "worker-1",
            "labels": {"kubernetes.io/os": "linux"},
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {".": {}}}}],
        },
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "taints": []},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.1.11"}],
            "images": [{"names": ["registry.k8s.io/pause:3.9"], "sizeBytes": 321520}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    });
    let small = essentials(&full);
    assert_eq!(node_spec(&small), node_spec(&full));
    assert!(small["metadata"].get("managedFields").is_none());
    assert!(small["status"].get("images").is_none());
    // Other kinds go as they are; a Node missing a section still reports the same error.
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}});
    assert_eq!(essentials(&svc), svc);
    let bare = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}});
    assert_eq!(
        node_spec(&essentials(&bare)).map_err(|e| e.to_string()),
        node_spec(&bare).map_err(|e| e.to_string())
    );
}

#[test]
fn a_pod_and_a_namespace_are_sent_with_only_what_the_switch_reads() {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "shop", "labels": {"app": "web"},
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {".": {}}}}],
            "ownerReferences": [{"kind": "StatefulSet", "name": "web"}],
        },
        "spec": {
            "nodeName": "worker-1",
            "containers": [{"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A"}],
                            "ports": [{"name": "http", "containerPort": 80}]}],
            "initContainers": [{"name": "mesh", "restartPolicy": "Always", "image": "envoy"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
        "status": {
            "phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
            "containerStatuses": [{"name": "nginx", "ready": true}],
        },
    });
    assert_eq!(
        essentials(&pod),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "worker-1",
                "containers": [{"name": "nginx", "ports": [{"name": "http", "containerPort": 80}]}],
                "initContainers": [{"name": "mesh", "restartPolicy": "Always"}],
            },
            "status": {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]},
        })
    );
    // A field of another type than the switch expects goes as it is, for the switch to
    // report.
    let mut odd = pod.clone();
    odd["spec"]["containers"] = serde_json::json!("nginx");
    assert_eq!(essentials(&odd)["spec"]["containers"], "nginx");
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "web"}, "uid": "x"},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    assert_eq!(
        essentials(&ns),
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": "web"}}})
    );
    // Another group's kind of the same name goes whole.
    let other = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Pod",
        "metadata": {"name": "x", "uid": "y"}});
    assert_eq!(essentials(&other), other);
}

#[test]
fn what_kubectl_get_nodes_prints_is_read_whole() {
    // `kubectl get nodes -o yaml` of a kubeadm cluster, shortened: managedFields with their
    // `.`, `v:"..."` and `k:{...}` keys, quoted timestamps, a dual-stack node whose first
    // InternalIP and second Pod CIDR are IPv6.
    let text = include_str!("testdata/kubectl-get-nodes.yaml");
    let objects = load_documents("nodes.yaml", text).expect("loads");
    assert_eq!(objects.len(), 2);
    let specs: Vec<NodeSpec> = objects
        .iter()
        .map(|o| node_spec(&essentials(&o.object)).expect("a Node"))
        .collect();
    assert_eq!(
        specs,
        [
            NodeSpec {
                name: "worker-1".into(),
                pod_cidr: "10.244.1.0/24".into(),
                node_ip: "192.168.1.11".into(),
            },
            NodeSpec {
                name: "worker-2".into(),
                pod_cidr: "10.244.2.0/24".into(),
                node_ip: "192.168.1.12".into(),
            },
        ]
    );
}
