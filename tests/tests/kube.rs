//! vswitchd watching a Kubernetes API server (issue 15), end to end as root: a small fake
//! API server (`tests/src/fakeapi.py`: list and watch from fixtures, changes while the
//! switch watches, streams dropped, 410 Gone) on the loopback of the node's network
//! namespace, and vswitchd pointed at it by a kubeconfig, with no `--pod-cidr` or
//! `--node-ip`: its own Node object gives them.

use serde_json::{Value, json};
use std::time::Duration;
use vswitch_tests::e2e::{Bg, Daemon, Netns, require_root, serial, unique, wait_until};
use vswitch_tests::svc;

const FAKEAPI: &str = include_str!("../src/fakeapi.py");

/// The fake API server in `node`, on `port`, from `fixtures`; `first_rv`: its first
/// resourceVersion (a restarted server starts past the old one's).
struct FakeApi {
    dir: std::path::PathBuf,
    port: u16,
    /// HTTPS with the tests' self-signed certificate (`src/testdata/fakeapi-cert.pem`).
    tls: bool,
    server: Option<Bg>,
}

/// The tests' certificate for 127.0.0.1: self-signed and marked as a CA, as `openssl req
/// -x509` makes one, and trusted as such by the kubeconfig.
const CERT: &str = include_str!("../src/testdata/fakeapi-cert.pem");
const KEY: &str = include_str!("../src/testdata/fakeapi-key.pem");

/// Python that opens `url` (a control call's `data` when given), trusting the tests'
/// certificate.
fn urlopen(url: &str, data: Option<&str>) -> String {
    let request = match data {
        Some(d) => format!("urllib.request.Request('{url}', data={d:?}.encode(), method='POST')"),
        None => format!("'{url}'"),
    };
    format!(
        "import ssl, urllib.request; urllib.request.urlopen({request}, context=ssl._create_unverified_context())"
    )
}

impl FakeApi {
    fn start(node: &Netns, port: u16, fixtures: &[Value], first_rv: u64) -> FakeApi {
        FakeApi::start_with(node, port, fixtures, first_rv, false)
    }

    fn start_with(
        node: &Netns,
        port: u16,
        fixtures: &[Value],
        first_rv: u64,
        tls: bool,
    ) -> FakeApi {
        let dir = std::env::temp_dir().join(unique("vsw-fakeapi"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut api = FakeApi {
            dir,
            port,
            tls,
            server: None,
        };
        api.run(node, fixtures, first_rv);
        api
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn run(&mut self, node: &Netns, fixtures: &[Value], first_rv: u64) {
        let script = self.dir.join("fakeapi.py");
        std::fs::write(&script, FAKEAPI).unwrap();
        let fx = self.dir.join("fixtures.json");
        std::fs::write(&fx, serde_json::to_vec(fixtures).unwrap()).unwrap();
        let (cert, key) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        std::fs::write(&cert, CERT).unwrap();
        std::fs::write(&key, KEY).unwrap();
        let (port, rv) = (self.port.to_string(), first_rv.to_string());
        let mut argv = vec![
            "timeout",
            "600",
            "python3",
            script.to_str().unwrap(),
            &port,
            fx.to_str().unwrap(),
            &rv,
        ];
        if self.tls {
            argv.extend([cert.to_str().unwrap(), key.to_str().unwrap()]);
        }
        self.server = Some(node.spawn(&argv));
        let code = urlopen(&format!("{}/fake/requests", self.url()), None);
        assert!(
            wait_until(Duration::from_secs(10), || {
                node.exec(&["python3", "-c", &code]).status.success()
            }),
            "the fake API server did not start"
        );
    }

    fn kill(&mut self) {
        self.server.take();
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        let path = self.dir.join("kubeconfig");
        let ca = if self.tls {
            format!(
                "    certificate-authority: {}\n",
                self.dir.join("cert.pem").display()
            )
        } else {
            String::new()
        };
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n{ca}users:\n- name: u\n  user:\n    token: fake-token\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\ncurrent-context: c\n",
            self.url()
        );
        std::fs::write(&path, kc).unwrap();
        path
    }

    /// A control call (`put`, `delete`, `drop`, `expire`).
    fn call(&self, node: &Netns, what: &str, body: &Value) {
        let code = urlopen(
            &format!("{}/fake/{what}", self.url()),
            Some(&body.to_string()),
        );
        let out = node.exec(&["python3", "-c", &code]);
        assert!(out.status.success(), "fake API {what}: {out:?}");
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node(name: &str, cidr: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                 {"type": "Hostname", "address": name}]}})
}

fn fixtures() -> Vec<Value> {
    vec![
        node("n1", "10.244.1.0/24", "192.168.77.1"),
        node("n2", "10.244.2.0/24", "192.168.77.2"),
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"kubernetes.io/metadata.name": "x"}}}),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "x", "labels": {"app": "a"},
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.10",
                       "podIPs": [{"ip": "10.244.1.10"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "x"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.50", "clusterIPs": ["10.96.0.50"],
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "x",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.10"], "conditions": {"ready": true}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "isolate-a", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"]}}),
    ]
}

fn api_status(d: &Daemon) -> Value {
    d.ctl_json(&["show"])["api"].clone()
}

fn verdict(d: &Daemon) -> String {
    let v = d.ctl_json(&["policy-check", "10.244.1.11", "x/a", "tcp", "80"]);
    v["verdict"].as_str().unwrap_or("?").to_string()
}

fn has_flow(d: &Daemon, text: &str) -> bool {
    let out = d.ctl(&["dump-flows"]);
    String::from_utf8_lossy(&out.stdout).contains(text)
}

#[test]
#[ignore = "needs root"]
fn the_switch_follows_the_api_server_through_changes_outages_and_restarts() {
    let _serial = serial();
    require_root(&["ip", "python3", "timeout"]);
    let n = Netns::new();
    n.exec_ok(&["ip", "link", "set", "lo", "up"]);
    n.exec_ok(&[
        "ip", "link", "add", "uplink", "type", "veth", "peer", "name", "uplink1",
    ]);
    n.exec_ok(&["ip", "link", "set", "uplink1", "up"]);
    n.exec_ok(&["ip", "addr", "add", "192.168.77.1/24", "dev", "uplink"]);
    n.exec_ok(&["ip", "link", "set", "uplink", "up"]);
    let port = 20000 + (std::process::id() % 20000) as u16;
    let mut api = FakeApi::start(&n, port, &fixtures(), 100);
    let kc = api.kubeconfig();
    let mut d = Daemon::start_in(
        &n,
        &["--kubeconfig", kc.to_str().unwrap(), "--node-name", "n1"],
    );
    // Synced: every kind listed; the Pod network and the tunnel from this node's Node.
    assert!(
        wait_until(Duration::from_secs(20), || api_status(&d)["ready"] == true),
        "not synced: {}\n{}",
        api_status(&d),
        d.log_tail(30)
    );
    let s = api_status(&d);
    assert_eq!(s["up"], true, "{s}");
    assert_eq!(s["kinds"].as_array().unwrap().len(), 6, "{s}");
    let nodes = d.ctl_json(&["get", "nodes", "-o", "wide"]);
    let text = nodes.to_string();
    assert!(
        text.contains("10.244.1.0/24"),
        "this node from its Node object: {text}"
    );
    assert!(
        text.contains("n2") && text.contains("\"api\""),
        "n2 from the API: {text}"
    );
    assert!(has_flow(&d, "10.244.2.0/24"), "n2's route");
    // The Service and its slice, the policy.
    let svc = d.ctl_json(&["get", "svc", "-n", "x"]).to_string();
    assert!(
        svc.contains("10.96.0.50") && svc.contains("10.244.1.10:8080"),
        "{svc}"
    );
    // x/a (the Service's endpoint, a server on 8080) and a client, Pods by hand.
    let (pod_a, client) = (Netns::new(), Netns::new());
    svc::add_pod(&d, "pa", &pod_a, "10.244.1.10", "10.244.1.1");
    svc::add_pod(&d, "pb", &client, "10.244.1.11", "10.244.1.1");
    let _server = svc::server(&pod_a, "10.244.1.10", 120);
    assert_eq!(verdict(&d), "deny", "isolate-a isolates x/a");
    let got = svc::exchanges(&client, "10.96.0.50", "tcp", 2);
    assert!(
        !got.contains_key("10.244.1.10"),
        "the policy stops the client: {got:?}"
    );
    // Not saved: objects from the API are listed again at start.
    let saved = std::fs::read_to_string(d.state_file()).unwrap_or_default()
        + &std::fs::read_to_string(d.journal_file()).unwrap_or_default();
    assert!(!saved.contains("isolate-a"), "API objects are not saved");

    // Changes while it watches: a Node added, a policy deleted.
    api.call(&n, "put", &node("n3", "10.244.3.0/24", "192.168.77.3"));
    assert!(
        wait_until(Duration::from_secs(10), || has_flow(&d, "10.244.3.0/24")),
        "n3's route"
    );
    let policy = fixtures()[6].clone();
    api.call(&n, "delete", &policy);
    assert!(
        wait_until(Duration::from_secs(10), || verdict(&d) == "allow"),
        "the policy's deletion"
    );
    // The Service from the API, reached from a Pod.
    let got = svc::exchanges(&client, "10.96.0.50", "tcp", 5);
    assert_eq!(
        got.get("10.244.1.10"),
        Some(&5),
        "through the ClusterIP: {got:?}"
    );
    // A Service whose endpoint is the node itself (as the `kubernetes` Service's is the
    // API server's host address), from the API: reached from the Pod.
    let _node_server = svc::server(&n, "node", 120);
    api.call(
        &n,
        "put",
        &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                     "ports": [{"name": "https", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
    );
    api.call(
        &n,
        "put",
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.168.77.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": 8080, "protocol": "TCP"}]}),
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .ctl_json(&["get", "svc", "-n", "default"])
            .to_string()
            .contains("192.168.77.1:8080")),
        "the kubernetes Service from the API"
    );
    let got = svc::exchanges(&client, "10.96.0.1", "tcp", 3);
    assert_eq!(
        got.get("node"),
        Some(&3),
        "a Service whose endpoint is the node's address: {got:?}"
    );
    // Streams dropped, and old versions forgotten (410 Gone): it relists and goes on.
    api.call(&n, "drop", &json!({}));
    api.call(&n, "expire", &json!({}));
    api.call(&n, "put", &policy);
    assert!(
        wait_until(Duration::from_secs(15), || verdict(&d) == "deny"),
        "the policy again after 410: {}",
        api_status(&d)
    );

    // The API server killed: the switch keeps what it has and says so.
    api.kill();
    assert!(
        wait_until(Duration::from_secs(15), || api_status(&d)["up"] == false),
        "down: {}",
        api_status(&d)
    );
    assert_eq!(
        verdict(&d),
        "deny",
        "the policy stays while the API is down"
    );
    let got = svc::exchanges(&client, "10.96.0.50", "tcp", 2);
    assert!(
        !got.contains_key("10.244.1.10"),
        "still refused with the API down: {got:?}"
    );
    assert!(has_flow(&d, "10.244.3.0/24"));
    // Back with n3 and the policy gone (deleted while it was down): the relist removes
    // them.
    let mut later = fixtures();
    later.remove(6);
    api.run(&n, &later, 1000);
    assert!(
        wait_until(Duration::from_secs(40), || verdict(&d) == "allow"
            && !has_flow(&d, "10.244.3.0/24")),
        "converged after the outage: {}\n{}",
        api_status(&d),
        d.log_tail(20)
    );
    // Every kind back (each retries on its own backoff).
    assert!(
        wait_until(Duration::from_secs(40), || api_status(&d)["up"] == true),
        "every watch up again: {}",
        api_status(&d)
    );

    // The switch restarted while the API server is down: its Pod links stay, and what it
    // had from the API comes back from its cache (the policy still isolates x/a: never
    // open where it was closed), not ready until the API is back; then the new list
    // replaces the cache (the policy, deleted meanwhile, goes).
    api.call(&n, "put", &policy);
    assert!(wait_until(Duration::from_secs(10), || verdict(&d) == "deny"));
    api.kill();
    d.stop();
    d.restart();
    let ports = d.ctl_json(&["show"]).to_string();
    assert!(ports.contains("\"pa\""), "the Pod's port kept: {ports}");
    assert_eq!(api_status(&d)["ready"], false);
    assert_eq!(verdict(&d), "deny", "the policy from the cache");
    assert!(has_flow(&d, "10.244.2.0/24"), "n2 from the cache");
    api.run(&n, &later, 3000);
    assert!(
        wait_until(Duration::from_secs(40), || api_status(&d)["ready"] == true),
        "synced after the restart: {}",
        api_status(&d)
    );
    assert!(
        wait_until(Duration::from_secs(10), || verdict(&d) == "allow"),
        "the cached policy the API no longer has is removed"
    );
    // The restarted switch forwards the Pod's traffic through the Service as before.
    let got = svc::exchanges(&client, "10.96.0.50", "tcp", 3);
    assert_eq!(
        got.get("10.244.1.10"),
        Some(&3),
        "through the ClusterIP after the restart: {got:?}"
    );
}

/// A Node given its Pod CIDR only after vswitchd starts (the controller manager assigns it
/// once the kubelet has registered the Node): vswitchd waits for it, as Flannel's and
/// Antrea's agents wait for theirs, and starts with it. The API server reached at the
/// address `--kube-apiserver` gives, not the kubeconfig's, over HTTPS with a self-signed
/// certificate that the kubeconfig trusts (accepted as Go's clients accept it).
#[test]
#[ignore = "needs root"]
fn a_pod_cidr_given_after_the_start_is_waited_for_at_the_given_api_server() {
    let _serial = serial();
    require_root(&["ip", "python3", "timeout"]);
    let n = Netns::new();
    n.exec_ok(&["ip", "link", "set", "lo", "up"]);
    let port = 20000 + ((std::process::id() + 7919) % 20000) as u16;
    let mut registered = node("n1", "", "192.168.77.1");
    registered["spec"] = json!({});
    let api = FakeApi::start_with(&n, port, &[registered], 100, true);
    // The kubeconfig names an address where nothing answers (as a Service address does
    // before the switch serves it); --kube-apiserver gives the server's own.
    let kc = api.kubeconfig();
    let text = std::fs::read_to_string(&kc).unwrap();
    std::fs::write(&kc, text.replace(&format!(":{port}"), ":1")).unwrap();
    let server = format!("127.0.0.1:{port}");
    let d = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            api.call(&n, "put", &node("n1", "10.244.1.0/24", "192.168.77.1"));
        });
        Daemon::start_in(
            &n,
            &[
                "--kubeconfig",
                kc.to_str().unwrap(),
                "--kube-apiserver",
                &server,
                "--node-name",
                "n1",
                "--no-tunnel",
            ],
        )
    });
    let nodes = d.ctl_json(&["get", "nodes", "-o", "wide"]).to_string();
    assert!(
        nodes.contains("10.244.1.0/24"),
        "the Pod CIDR given after the start: {nodes}\n{}",
        d.log_tail(20)
    );
    assert!(
        d.log_tail(40).contains("waiting for this node's Node"),
        "{}",
        d.log_tail(40)
    );
}
