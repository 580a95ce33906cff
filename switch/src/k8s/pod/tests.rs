use super::*;
use vswitch_proto::k8s::load_documents;

/// `kubectl get pod -n shop web-0 -o yaml` of a dual-stack cluster (IPv6 first), with a
/// sidecar, an ordinary init container and everything the switch does not read.
const POD_YAML: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubectl.kubernetes.io/restartedAt: "2024-05-01T10:00:00Z"
  creationTimestamp: "2024-05-01T10:00:02Z"
  generateName: web-
  labels:
    app: web
    apps.kubernetes.io/pod-index: "0"
    controller-revision-hash: web-6d4cf56db6
    statefulset.kubernetes.io/pod-name: web-0
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:generateName: {}
        f:labels:
          .: {}
          f:app: {}
    manager: kube-controller-manager
    operation: Update
    time: "2024-05-01T10:00:02Z"
  name: web-0
  namespace: shop
  ownerReferences:
  - apiVersion: apps/v1
    blockOwnerDeletion: true
    controller: true
    kind: StatefulSet
    name: web
    uid: 1b7f4a52-3a8e-4f0e-9d5c-0e1b8f1c2d3e
  resourceVersion: "48213"
  uid: 6f0c2d9e-8a1b-4c3d-9e2f-1a2b3c4d5e6f
spec:
  containers:
  - image: nginx:1.25
    imagePullPolicy: IfNotPresent
    name: nginx
    ports:
    - containerPort: 80
      name: http
      protocol: TCP
    - containerPort: 9113
      protocol: TCP
    resources: {}
    terminationMessagePath: /dev/termination-log
    volumeMounts:
    - mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      name: kube-api-access-abcde
      readOnly: true
  - image: coredns/coredns:1.11.1
    name: dns
    ports:
    - containerPort: 5353
      name: dns
      protocol: UDP
    - containerPort: 5353
      name: dns-tcp
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  hostname: web-0
  initContainers:
  - image: busybox
    name: setup
    ports:
    - containerPort: 8081
      name: setup
  - image: envoyproxy/envoy:v1.30
    name: mesh
    restartPolicy: Always
    ports:
    - containerPort: 15001
      name: http
      protocol: TCP
    - containerPort: 15090
      name: metrics
  nodeName: worker-1
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {}
  serviceAccountName: default
  tolerations:
  - effect: NoExecute
    key: node.kubernetes.io/not-ready
    operator: Exists
    tolerationSeconds: 300
  volumes:
  - name: kube-api-access-abcde
    projected:
      defaultMode: 420
status:
  conditions:
  - lastProbeTime: null
    lastTransitionTime: "2024-05-01T10:00:05Z"
    status: "True"
    type: Ready
  containerStatuses:
  - containerID: containerd://abc
    image: docker.io/library/nginx:1.25
    name: nginx
    ready: true
    restartCount: 0
    started: true
    state:
      running:
        startedAt: "2024-05-01T10:00:04Z"
  hostIP: 192.168.1.11
  hostIPs:
  - ip: 192.168.1.11
  phase: Running
  podIP: fd00:10:244:1::7
  podIPs:
  - ip: fd00:10:244:1::7
  - ip: 10.244.1.7
  qosClass: BestEffort
  startTime: "2024-05-01T10:00:02Z"
"#;

fn manifest() -> Value {
    load_documents("pod.yaml", POD_YAML)
        .unwrap()
        .remove(0)
        .object
}

fn stored(p: Pod) -> Stored {
    Stored {
        spec: Spec::Pod(p),
        source: "manifest".into(),
        id: 7,
    }
}

#[test]
fn a_pod_reads_as_kubectl_prints_it() {
    let (key, p) = read_pod(&manifest()).unwrap();
    assert_eq!(key.to_string(), "pod/shop/web-0");
    assert_eq!(p.labels.len(), 4);
    assert_eq!(p.labels["app"], "web");
    // The IPv4 address of a dual-stack Pod, wherever it is listed.
    assert_eq!(p.ip, Some(Ipv4Addr::new(10, 244, 1, 7)));
    assert_eq!(p.policy_ip(), p.ip);
    assert_eq!(p.node_name.as_deref(), Some("worker-1"));
    assert_eq!(p.phase, Phase::Running);
    assert!(!p.host_network);
    // Named ports only; the sidecar's, not the ordinary init container's.
    let names: Vec<(&str, bool, Vec<&str>)> = p
        .containers
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.sidecar,
                c.ports.iter().map(|p| p.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("nginx", false, vec!["http"]),
            ("dns", false, vec!["dns", "dns-tcp"]),
            ("mesh", true, vec!["http", "metrics"]),
        ]
    );
    // Named ports resolve as Kubernetes resolves them: by name and protocol, the Pod's
    // containers before its sidecars.
    assert_eq!(p.named_port("http", Protocol::Tcp), Some(80));
    assert_eq!(p.named_port("dns", Protocol::Udp), Some(5353));
    assert_eq!(p.named_port("dns", Protocol::Tcp), None);
    assert_eq!(p.named_port("dns-tcp", Protocol::Tcp), Some(5353));
    assert_eq!(p.named_port("metrics", Protocol::Tcp), Some(15090));
    assert_eq!(p.named_port("setup", Protocol::Tcp), None);
    assert_eq!(p.named_port("nope", Protocol::Tcp), None);
    // Written back (as `get -o yaml` shows it and the state file keeps it) and read
    // again: the same.
    let s = stored(p.clone());
    let kept = POD.to_object(&key, &s);
    assert_eq!(read_pod(&kept).unwrap(), (key.clone(), p));
    assert_eq!(kept["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(
        POD.cells(&key, &s),
        [
            "Running",
            "10.244.1.7",
            "worker-1",
            "http:80/TCP,dns:5353/UDP,dns-tcp:5353/TCP,http:15001/TCP,metrics:15090/TCP",
            "app=web,apps.kubernetes.io/pod-index=0,controller-revision-hash=web-6d4cf56db6,\
             statefulset.kubernetes.io/pod-name=web-0",
        ]
    );
    assert_eq!(POD.columns().len(), POD.cells(&key, &s).len());
}

#[test]
fn a_sidecar_port_resolves_when_no_container_has_the_name() {
    let mut m = manifest();
    m["spec"]["containers"][0]["ports"][0]["name"] = json!("web");
    let p = read_pod(&m).unwrap().1;
    assert_eq!(p.named_port("http", Protocol::Tcp), Some(15001));
    assert_eq!(p.named_port("web", Protocol::Tcp), Some(80));
}

#[test]
fn addresses_as_the_api_server_converts_them() {
    let with = |status: Value| {
        let mut m = manifest();
        m["status"] = status;
        read_pod(&m).map(|(_, p)| p.ip)
    };
    let a = Some(Ipv4Addr::new(10, 244, 1, 7));
    assert_eq!(with(json!({ "podIP": "10.244.1.7" })), Ok(a));
    assert_eq!(with(json!({ "podIPs": [{ "ip": "10.244.1.7" }] })), Ok(a));
    // IPv6 only: no address the switch uses.
    assert_eq!(
        with(json!({ "podIP": "fd00::7", "podIPs": [{ "ip": "fd00::7" }] })),
        Ok(None)
    );
    // Scheduled, not started yet.
    assert_eq!(with(json!({ "phase": "Pending" })), Ok(None));
    assert_eq!(with(json!({ "podIP": "" })), Ok(None));
    // Disagreeing: podIP wins.
    assert_eq!(
        with(json!({ "podIP": "10.244.1.8", "podIPs": [{ "ip": "10.244.1.7" }] })),
        Ok(Some(Ipv4Addr::new(10, 244, 1, 8)))
    );
    assert_eq!(
        with(json!({ "podIPs": [{ "ip": "10.244.1.7" }, { "ip": "10.244.1.8" }] }))
            .unwrap_err()
            .to_string(),
        "status.podIPs[1].ip: Invalid value: \"10.244.1.8\": may specify no more than one IP \
         for each IP family"
    );
    assert_eq!(
        with(json!({ "podIP": "10.244.1" })).unwrap_err().path,
        "status.podIP"
    );
    assert_eq!(
        with(json!({ "podIPs": [{ "ip": 7 }] })).unwrap_err().path,
        "status.podIPs[0].ip"
    );
}

#[test]
fn host_network_and_ended_pods_are_not_known_by_their_address() {
    let mut m = manifest();
    m["spec"]["hostNetwork"] = json!(true);
    m["status"] = json!({ "phase": "Running", "podIP": "192.168.1.11" });
    let p = read_pod(&m).unwrap().1;
    assert!(p.host_network);
    assert_eq!(p.ip, Some(Ipv4Addr::new(192, 168, 1, 11)));
    assert_eq!(p.policy_ip(), None);
    for phase in ["Succeeded", "Failed"] {
        let mut m = manifest();
        m["status"]["phase"] = json!(phase);
        let p = read_pod(&m).unwrap().1;
        assert!(
            p.terminated() && p.ip.is_some() && p.policy_ip().is_none(),
            "{phase}"
        );
    }
    // A hand-written Pod: Pending, as the API server would make it.
    let p = read_pod(&json!({ "metadata": { "name": "x" },
                              "status": { "podIP": "10.244.1.9" } }))
    .unwrap()
    .1;
    assert_eq!(p.phase, Phase::Pending);
    assert_eq!(p.policy_ip(), Some(Ipv4Addr::new(10, 244, 1, 9)));
}

#[test]
fn bad_pods_are_refused_naming_the_field() {
    let bad = |pointer: &str, v: Value| {
        let mut m = manifest();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        match m.pointer_mut(parent).unwrap() {
            Value::Array(a) => a[field.parse::<usize>().unwrap()] = v,
            o => o[field] = v,
        }
        read_pod(&m).unwrap_err().to_string()
    };
    assert_eq!(
        bad("/spec/containers/0/ports/0/containerPort", json!(0)),
        "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and \
         65535, inclusive"
    );
    assert_eq!(
        bad("/spec/initContainers/1/ports/0/protocol", json!("ICMP")),
        "spec.initContainers[1].ports[0].protocol: Unsupported value: \"ICMP\": supported \
         values: \"SCTP\", \"TCP\", \"UDP\""
    );
    assert_eq!(
        bad("/spec/containers/1/ports/0/name", json!("DNS")),
        "spec.containers[1].ports[0].name: Invalid value: \"DNS\": must contain only \
         alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    );
    assert_eq!(
        bad("/spec/hostNetwork", json!("yes")),
        "spec.hostNetwork: Invalid value: must be a boolean, not a string"
    );
    assert!(
        bad("/status/phase", json!("Done"))
            .starts_with("status.phase: Unsupported value: \"Done\"")
    );
    assert!(
        bad("/metadata/labels/app", json!("a b")).starts_with("metadata.labels: Invalid value")
    );
    assert!(bad("/metadata/name", json!("Web_0")).starts_with("metadata.name: Invalid value"));
    assert_eq!(
        bad("/spec/containers", json!({})),
        "spec.containers: Invalid value: must be a list, not an object"
    );
}

/// What `vswitchctl apply` sends of a Pod (`essentials`) reads as the whole Pod does,
/// errors included: the trimming keeps every field this reader looks at.
#[test]
fn the_trimmed_pod_vswitchctl_sends_reads_the_same() {
    use vswitch_proto::k8s::essentials;
    let m = manifest();
    assert_eq!(read_pod(&essentials(&m)), read_pod(&m));
    for (pointer, v) in [
        ("/spec/containers/0/ports/0/containerPort", json!(0)),
        ("/spec/containers/1/ports/0/name", json!("DNS")),
        ("/spec/initContainers/1/restartPolicy", json!(7)),
        ("/spec/containers", json!("nginx")),
        ("/status/podIPs/1/ip", json!("10.244.1")),
        ("/metadata/labels/app", json!("a b")),
    ] {
        let mut bad = manifest();
        *bad.pointer_mut(pointer).unwrap() = v;
        let want = read_pod(&bad);
        assert!(want.is_err(), "{pointer}");
        assert_eq!(read_pod(&essentials(&bad)), want, "{pointer}");
    }
    let ns = json!({ "apiVersion": "v1", "kind": "Namespace",
                     "metadata": { "name": "shop", "labels": { "a": "b" }, "uid": "u" } });
    assert_eq!(
        crate::k8s::namespace::read_namespace(&essentials(&ns)),
        crate::k8s::namespace::read_namespace(&ns)
    );
}
