use super::*;
use crate::k8s::local::tests::{bridge, net};
use crate::k8s::pipeline::CookieKind;
use vswitch_proto::field::FieldId;
use vswitch_proto::flow::ct_state;
use vswitch_proto::text::{self, NoPortNames};

fn svc_manifest() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "shop", "uid": "x", "resourceVersion": "9" },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [
                { "name": "http", "port": 80, "protocol": "TCP", "targetPort": "web" },
                { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353 }
            ],
            "selector": { "app": "web" },
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster"
        },
        "status": { "loadBalancer": {} }
    })
}

fn slice_manifest(name: &str, port: u16, eps: Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": "shop",
                      "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "ports": [ { "name": "http", "port": port, "protocol": "TCP" },
                   { "name": "dns", "port": 5353, "protocol": "UDP" } ],
        "endpoints": eps
    })
}

fn ep(ip: &str, ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> Value {
    let mut c = serde_json::Map::new();
    for (k, v) in [
        ("ready", ready),
        ("serving", serving),
        ("terminating", terminating),
    ] {
        if let Some(v) = v {
            c.insert(k.into(), json!(v));
        }
    }
    json!({ "addresses": [ip], "conditions": c, "nodeName": "n1" })
}

#[test]
fn a_service_reads_as_kubectl_prints_it() {
    let (key, s) = read_service(&svc_manifest()).unwrap();
    assert_eq!(key.to_string(), "service/shop/web");
    assert_eq!(s.service_type, ServiceType::ClusterIp);
    assert_eq!(s.cluster_ips, vec![Ipv4Addr::new(10, 96, 0, 10)]);
    assert_eq!(s.ports.len(), 2);
    assert_eq!(s.ports[0].target_port, TargetPort::Name("web".into()));
    assert_eq!(s.ports[1].protocol, Protocol::Udp);
    assert_eq!(s.ports[1].target_port, TargetPort::Number(5353));
    assert_eq!(s.affinity_timeout, None);
    // Written back and read again: the same.
    let stored = Stored {
        spec: Spec::Service(s.clone()),
        source: "manifest".into(),
        id: 1,
    };
    let again = read_service(&SERVICE.to_object(&key, &stored)).unwrap().1;
    assert_eq!(again, s);
}

#[test]
fn service_fields_are_checked_by_name() {
    let bad = |path: &str, v: Value| {
        let mut m = svc_manifest();
        *m.pointer_mut(path).unwrap() = v;
        read_service(&m).unwrap_err().path
    };
    assert_eq!(bad("/spec/type", json!("Magic")), "spec.type");
    assert_eq!(bad("/spec/ports/0/port", json!(0)), "spec.ports[0].port");
    assert_eq!(
        bad("/spec/ports/1/protocol", json!("ICMP")),
        "spec.ports[1].protocol"
    );
    assert_eq!(
        bad("/spec/clusterIPs", json!(["nope"])),
        "spec.clusterIPs[0]"
    );
    assert_eq!(
        bad("/spec/sessionAffinity", json!("Sticky")),
        "spec.sessionAffinity"
    );
    let mut m = svc_manifest();
    m["spec"]["sessionAffinity"] = json!("ClientIP");
    assert_eq!(read_service(&m).unwrap().1.affinity_timeout, Some(10800));
    m["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 86401 } });
    assert_eq!(
        read_service(&m).unwrap_err().path,
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
    );
    let mut m = svc_manifest();
    m["spec"]["ports"][1]["port"] = json!(80);
    m["spec"]["ports"][1]["protocol"] = json!("TCP");
    assert_eq!(read_service(&m).unwrap_err().path, "spec.ports[1].port");
    // No cluster IP: the API server would have given one.
    let mut m = svc_manifest();
    m["spec"].as_object_mut().unwrap().remove("clusterIP");
    m["spec"].as_object_mut().unwrap().remove("clusterIPs");
    assert_eq!(read_service(&m).unwrap_err().path, "spec.clusterIP");
    // Headless and ExternalName need none.
    m["spec"]["clusterIP"] = json!("None");
    assert!(read_service(&m).unwrap().1.headless);
    let m = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "x" },
                    "spec": { "type": "ExternalName", "externalName": "example.com" } });
    let (k, s) = read_service(&m).unwrap();
    assert_eq!(k.namespace, "default");
    assert_eq!(s.service_type, ServiceType::ExternalName);
}

#[test]
fn slice_conditions_default_as_the_api_says() {
    let m = slice_manifest(
        "web-a",
        8080,
        json!([
            ep("10.244.1.2", None, None, None),
            ep("10.244.1.3", Some(false), None, Some(true))
        ]),
    );
    let (key, s) = read_slice(&m).unwrap();
    assert_eq!(key.to_string(), "endpointslice/shop/web-a");
    assert_eq!(s.service.as_deref(), Some("web"));
    let e = &s.endpoints;
    assert!(e[0].ready && e[0].serving && !e[0].terminating);
    assert!(!e[1].ready && !e[1].serving && e[1].terminating);
    let mut bad = m.clone();
    bad["endpoints"][0]["addresses"] = json!(["fd00::1"]);
    assert_eq!(
        read_slice(&bad).unwrap_err().path,
        "endpoints[0].addresses[0]"
    );
    let mut bad = m.clone();
    bad.as_object_mut().unwrap().remove("addressType");
    assert_eq!(read_slice(&bad).unwrap_err().path, "addressType");
    let mut bad = m;
    bad["ports"][0]["protocol"] = json!("tcp");
    assert_eq!(read_slice(&bad).unwrap_err().path, "ports[0].protocol");
}

fn sp(name: &str, proto: Protocol) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol: proto,
        port: 80,
        target_port: TargetPort::Name("web".into()),
        node_port: None,
    }
}

fn slice(port: u16, eps: Value) -> Slice {
    read_slice(&slice_manifest("s", port, eps)).unwrap().1
}

fn ips(b: &[Backend]) -> Vec<String> {
    b.iter().map(|b| format!("{}:{}", b.ip, b.port)).collect()
}

#[test]
fn ready_endpoints_first_then_serving_terminating_ones() {
    let http = sp("http", Protocol::Tcp);
    let a = slice(
        8080,
        json!([
            ep("10.244.1.2", Some(true), None, None),
            ep("10.244.1.3", Some(false), Some(true), Some(true)),
            ep("10.244.1.4", Some(false), Some(false), Some(false)),
        ]),
    );
    assert_eq!(ips(&backends(&http, [&a].into_iter())), ["10.244.1.2:8080"]);
    let b = slice(
        8080,
        json!([
            ep("10.244.1.3", Some(false), Some(true), Some(true)),
            ep("10.244.1.5", Some(false), Some(false), Some(true)),
        ]),
    );
    // None ready: the serving, terminating ones (not a not-serving one).
    assert_eq!(ips(&backends(&http, [&b].into_iter())), ["10.244.1.3:8080"]);
    // Listed in two slices: once.
    assert_eq!(
        ips(&backends(&http, [&a, &a].into_iter())),
        ["10.244.1.2:8080"]
    );
    // Matched by name and protocol: no UDP "http" port, no endpoints.
    assert!(backends(&sp("http", Protocol::Udp), [&a].into_iter()).is_empty());
    // A named targetPort: each slice says its endpoints' number.
    let c = slice(9090, json!([ep("10.244.2.7", None, None, None)]));
    assert_eq!(
        ips(&backends(&http, [&a, &c].into_iter())),
        ["10.244.1.2:8080", "10.244.2.7:9090"]
    );
}

fn store(objects: &mut Objects, v: Value, id: u32) -> ObjectKey {
    let kind = crate::k8s::kind_of(
        v["kind"].as_str().unwrap(),
        v["apiVersion"].as_str().unwrap(),
    )
    .unwrap();
    let (key, spec) = kind.read(&v).unwrap();
    objects.put(
        key.clone(),
        Some(Stored {
            spec,
            source: "manifest".into(),
            id,
        }),
    );
    key
}

#[test]
fn a_service_compiles_to_a_rule_per_address_and_port_and_a_group_per_port() {
    let mut objects = Objects::default();
    let key = store(&mut objects, svc_manifest(), 3);
    let stored = objects.get(&key).unwrap().clone();
    // No slices yet: both ports refuse, and so does the cluster IP on any other port.
    let c = compile_service(
        3,
        service_of(&stored.spec).unwrap(),
        &objects,
        &key,
        &node("n1"),
    );
    assert_eq!(c.rules.len(), 3);
    let last = text::display_flow(&c.rules[2].to_spec(0), &NoPortNames, None).to_string();
    assert!(
        last.contains("priority=100,ip,nw_dst=10.96.0.10 "),
        "{last}"
    );
    assert!(c.groups.is_empty());
    assert!(
        c.rules
            .iter()
            .all(|r| r.actions == [vswitch_proto::action::Action::Reject])
    );
    store(
        &mut objects,
        slice_manifest(
            "web-a",
            8080,
            json!([
                ep("10.244.1.3", None, None, None),
                ep("10.244.2.9", None, None, None)
            ]),
        ),
        1,
    );
    assert_eq!(objects.slices_of("shop", "web").count(), 1);
    let c = compile_service(
        3,
        service_of(&stored.spec).unwrap(),
        &objects,
        &key,
        &node("n1"),
    );
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.groups[0].group_id, group_id(3, 0, false));
    assert_eq!(c.groups[0].buckets.len(), 2);
    let lines = lines(&c);
    assert!(lines[0].contains("nw_dst=10.96.0.10"), "{lines:?}");
    assert!(
        lines[0].contains(&format!("group:{}", group_id(3, 0, false))),
        "{lines:?}"
    );
    // Headless: nothing.
    let mut h = service_of(&stored.spec).unwrap().clone();
    h.headless = true;
    h.cluster_ips.clear();
    assert_eq!(
        compile_service(3, &h, &objects, &key, &node("n1")),
        Compiled::default()
    );
}

#[test]
fn a_new_connection_to_the_service_is_dnated_to_an_endpoint_and_committed_once() {
    let n = net(None);
    let mut b = bridge(&n);
    let mut objects = Objects::default();
    let key = store(&mut objects, svc_manifest(), 3);
    store(
        &mut objects,
        slice_manifest("web-a", 8080, json!([ep("10.244.1.3", None, None, None)])),
        1,
    );
    let stored = objects.get(&key).unwrap().clone();
    let c = SERVICE.compile(
        &NodeCtx {
            name: "n1",
            local: Some(&n),
            node_ip: None,
            zone: None,
            pods: &crate::k8s::local::NO_PODS,
            audit: false,
        },
        &objects,
        &key,
        &stored,
    );
    b.set_owned(CookieKind::Service.cookie(3), c.rules, c.groups, 0)
        .unwrap();
    let gw = n.gateway_mac();
    let pkt = format!(
        "in_port=2,tcp,dl_src={},dl_dst={gw},nw_src=10.244.1.2,nw_dst=10.96.0.10,nw_ttl=64,tp_src=40000,tp_dst=80",
        MacAddrOf(Ipv4Addr::new(10, 244, 1, 2))
    );
    let m = text::parse_match(&pkt, &NoPortNames).unwrap();
    let first = b.trace(&m.flow, 0);
    let new = text::parse_match("ct_state=+trk+new", &NoPortNames).unwrap();
    let second = b.trace(&first.recirculated(new.flow.ct_state()).unwrap(), 0);
    let acts = second.datapath_actions();
    assert!(
        acts.contains("nat(dst=10.244.1.3:8080)") && acts.contains("commit"),
        "{acts}"
    );
    // UDP to the other port goes to its own endpoint port; TCP to a port the Service does
    // not have is not touched by it.
    let udp = pkt
        .replace("tcp,", "udp,")
        .replace("tp_dst=80", "tp_dst=53");
    let m = text::parse_match(&udp, &NoPortNames).unwrap();
    let first = b.trace(&m.flow, 0);
    let acts = b
        .trace(&first.recirculated(new.flow.ct_state()).unwrap(), 0)
        .datapath_actions();
    assert!(acts.contains("nat(dst=10.244.1.3:5353)"), "{acts}");
    let other = pkt.replace("tp_dst=80", "tp_dst=81");
    let m = text::parse_match(&other, &NoPortNames).unwrap();
    let first = b.trace(&m.flow, 0);
    let acts = b
        .trace(&first.recirculated(new.flow.ct_state()).unwrap(), 0)
        .datapath_actions();
    assert!(!acts.contains("nat(dst="), "{acts}");
    // After the translation (the packet now to the endpoint, its connection marked
    // pending): let through by policy, its connection (found by the original tuple) is
    // no longer pending, and the packet is delivered to the endpoint's port.
    let m = text::parse_match(&pkt, &NoPortNames).unwrap();
    let first = b.trace(&m.flow, 0);
    let second = b.trace(&first.recirculated(new.flow.ct_state()).unwrap(), 0);
    let mut third = second
        .recirculated(new.flow.ct_state() | ct_state::DNAT)
        .expect("the endpoint's ct continues in EgressPolicy");
    third.set(
        FieldId::IpDst.slot(),
        u32::from(Ipv4Addr::new(10, 244, 1, 3)) as u128,
    );
    third.set(FieldId::TpDst.slot(), 8080);
    third.set(FieldId::CtMark.slot(), ct_mark::SERVICE as u128);
    let acts = b.trace(&third, 0).datapath_actions();
    assert!(
        acts.contains("ct(commit,zone=65520,mark=0x0/0x20,"),
        "{acts}"
    );
    assert!(acts.ends_with(":3") || acts.ends_with(",3"), "{acts}");
}

struct MacAddrOf(Ipv4Addr);
impl std::fmt::Display for MacAddrOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        vswitch_proto::net::MacAddr::for_ipv4(self.0).fmt(f)
    }
}

#[test]
fn internal_traffic_policy_local_uses_this_nodes_endpoints_only() {
    let mut objects = Objects::default();
    let mut svc = svc_manifest();
    svc["spec"]["internalTrafficPolicy"] = json!("Local");
    svc["spec"]["externalIPs"] = json!(["192.0.2.7"]);
    let key = store(&mut objects, svc, 3);
    let mut s = slice_manifest(
        "web-a",
        8080,
        json!([
            ep("10.244.1.3", None, None, None),
            ep("10.244.2.9", None, None, None)
        ]),
    );
    s["endpoints"][1]["nodeName"] = json!("n2");
    store(&mut objects, s, 1);
    let stored = objects.get(&key).unwrap().clone();
    let svc = service_of(&stored.spec).unwrap();
    let group_of = |c: &Compiled, id: u32| {
        c.groups
            .iter()
            .find(|g| g.group_id == id)
            .map(|g| g.buckets.len())
    };
    let on_n1 = compile_service(3, svc, &objects, &key, &node("n1"));
    // The cluster IP: n1's one endpoint; the external IP: both.
    assert_eq!(group_of(&on_n1, group_id(3, 0, true)), Some(1));
    assert_eq!(group_of(&on_n1, group_id(3, 0, false)), Some(2));
    let rule_for = |c: &Compiled, vip: &str| {
        c.rules
            .iter()
            .find(|r| {
                text::display_flow(&r.to_spec(0), &NoPortNames, None)
                    .to_string()
                    .contains(&format!("nw_dst={vip},"))
            })
            .map(|r| text::display_flow(&r.to_spec(0), &NoPortNames, None).to_string())
            .unwrap()
    };
    assert!(rule_for(&on_n1, "10.96.0.10").contains(&format!("group:{}", group_id(3, 0, true))));
    assert!(rule_for(&on_n1, "192.0.2.7").contains(&format!("group:{}", group_id(3, 0, false))));
    // A node without a local endpoint drops what its Pods send to the cluster IP.
    let on_n3 = compile_service(3, svc, &objects, &key, &node("n3"));
    assert_eq!(group_of(&on_n3, group_id(3, 0, true)), None);
    assert!(rule_for(&on_n3, "10.96.0.10").contains("actions=drop"));
    assert!(rule_for(&on_n3, "192.0.2.7").contains("group:"));
}

/// A Service's rules as `dump-flows` prints them.
fn lines(c: &Compiled) -> Vec<String> {
    c.rules
        .iter()
        .map(|r| text::display_flow(&r.to_spec(0), &NoPortNames, None).to_string())
        .collect()
}

fn node(name: &str) -> NodeCtx<'_> {
    NodeCtx {
        name,
        local: None,
        node_ip: Some(Ipv4Addr::new(192, 168, 1, 1)),
        zone: None,
        pods: &crate::k8s::local::NO_PODS,
        audit: false,
    }
}

#[test]
fn a_nodeport_is_reached_on_the_nodes_address_by_its_pods() {
    let mut objects = Objects::default();
    let mut m = svc_manifest();
    m["spec"]["type"] = json!("NodePort");
    m["spec"]["ports"][0]["nodePort"] = json!(30080);
    let key = store(&mut objects, m, 3);
    store(
        &mut objects,
        slice_manifest("web-a", 8080, json!([ep("10.244.1.3", None, None, None)])),
        1,
    );
    let stored = objects.get(&key).unwrap().clone();
    let c = compile_service(
        3,
        service_of(&stored.spec).unwrap(),
        &objects,
        &key,
        &node("n1"),
    );
    let lines = lines(&c);
    assert!(
        lines.iter().any(|l| l.contains("nw_dst=192.168.1.1,")
            && l.contains("tp_dst=30080")
            && l.contains("group:")),
        "{lines:?}"
    );
    assert!(
        c.backends
            .iter()
            .any(|d| d.vport == 30080 && d.eport == 8080)
    );
}

#[test]
fn an_external_ip_that_is_the_nodes_own_address_is_handed_to_the_switch() {
    let mut objects = Objects::default();
    let mut m = svc_manifest();
    // The node's own address (`node()`'s 192.168.1.1) and another.
    m["spec"]["externalIPs"] = json!(["192.168.1.1", "192.0.2.7"]);
    let key = store(&mut objects, m.clone(), 3);
    store(
        &mut objects,
        slice_manifest("web-a", 8080, json!([ep("10.244.1.3", None, None, None)])),
        1,
    );
    let local = net(None);
    let ctx = NodeCtx {
        local: Some(&local),
        ..node("n1")
    };
    let compile = |objects: &Objects| {
        let stored = objects.get(&key).unwrap().clone();
        compile_service(3, service_of(&stored.spec).unwrap(), objects, &key, &ctx)
    };
    let port = svc_manifest()["spec"]["ports"][0]["port"].as_u64().unwrap() as u16;
    let c = compile(&objects);
    let l = lines(&c);
    // The node's stack hands the Service port on its own address to EXTERNAL_IP
    // (Cluster), whose ServiceLB rule picks any endpoint; that address is not routed.
    assert!(c.host.contains(&HostRule::NodeAddress {
        ip: Ipv4Addr::new(192, 168, 1, 1),
        proto: 6,
        port,
        local: false
    }));
    assert!(
        l.iter().any(|x| x.contains("nw_dst=169.254.0.250,")
            && x.contains(&format!("tp_dst={port}"))
            && x.contains("group:")),
        "{l:?}"
    );
    assert!(
        !c.routes
            .iter()
            .any(|r| r.dst.to_string() == "192.168.1.1/32")
    );
    // The other external address is routed to the switch as before.
    assert!(c.routes.iter().any(|r| r.dst.to_string() == "192.0.2.7/32"));
    assert!(!c.host.iter().any(
        |h| matches!(h, HostRule::NodeAddress { ip, .. } if *ip == Ipv4Addr::new(192, 0, 2, 7))
    ));
    // Pods still reach the node's address and port in the switch, to any endpoint.
    assert!(
        l.iter()
            .any(|x| x.contains("nw_dst=192.168.1.1,") && x.contains("group:")),
        "{l:?}"
    );
    // Local: EXTERNAL_LOCAL_IP, this node's endpoints only.
    m["spec"]["externalTrafficPolicy"] = json!("Local");
    store(&mut objects, m, 3);
    let c = compile(&objects);
    assert!(c.host.contains(&HostRule::NodeAddress {
        ip: Ipv4Addr::new(192, 168, 1, 1),
        proto: 6,
        port,
        local: true
    }));
    let local_group = format!("group:{}", group_id(3, 0, true));
    assert!(
        lines(&c)
            .iter()
            .any(|x| x.contains("nw_dst=169.254.0.249,") && x.contains(&local_group)),
        "{:?}",
        lines(&c)
    );
}

#[test]
fn from_outside_the_node_a_service_follows_its_external_traffic_policy() {
    let mut objects = Objects::default();
    let mut m = svc_manifest();
    m["spec"]["type"] = json!("LoadBalancer");
    m["spec"]["ports"][0]["nodePort"] = json!(30080);
    m["spec"]["externalTrafficPolicy"] = json!("Local");
    m["spec"]["healthCheckNodePort"] = json!(32000);
    m["status"] = json!({ "loadBalancer": { "ingress": [ { "ip": "192.0.2.9" } ] } });
    let key = store(&mut objects, m.clone(), 3);
    let mut s = slice_manifest(
        "web-a",
        8080,
        json!([
            ep("10.244.1.3", None, None, None),
            ep("10.244.2.9", None, None, None)
        ]),
    );
    s["endpoints"][1]["nodeName"] = json!("n2");
    store(&mut objects, s, 1);
    let local = net(None);
    let on = |objects: &Objects| {
        let stored = objects.get(&key).unwrap().clone();
        let ctx = NodeCtx {
            local: Some(&local),
            ..node("n1")
        };
        compile_service(3, service_of(&stored.spec).unwrap(), objects, &key, &ctx)
    };
    let c = on(&objects);
    let l = lines(&c);
    let has = |l: &[String], parts: &[&str]| l.iter().any(|x| parts.iter().all(|p| x.contains(p)));
    // Local: the NodePort arrives at NODEPORT_LOCAL_IP, to this node's endpoint only.
    assert!(c.host.contains(&HostRule::NodePort {
        proto: 6,
        port: 30080,
        local: true
    }));
    let local_group = format!("group:{}", group_id(3, 0, true));
    assert!(
        has(&l, &["nw_dst=169.254.0.251,", "tp_dst=30080", &local_group]),
        "{l:?}"
    );
    // The load-balancer IP from outside (the client's address): local; from the node
    // itself (the gateway's address) or a Pod: anywhere.
    assert!(
        has(
            &l,
            &[
                "priority=201",
                "reg0=0x1",
                "nw_dst=192.0.2.9,",
                &local_group
            ]
        ),
        "{l:?}"
    );
    assert!(
        has(
            &l,
            &[
                "priority=202",
                "nw_src=10.244.1.1",
                "nw_dst=192.0.2.9,",
                "group:"
            ]
        ),
        "{l:?}"
    );
    assert!(c.routes.iter().any(|r| r.dst.to_string() == "192.0.2.9/32"));
    assert!(
        has(&l, &["priority=205", "nw_dst=192.0.2.9 ", "in_port="]),
        "{l:?}"
    );
    assert!(c.host.contains(&HostRule::HealthCheck {
        port: 32000,
        namespace: "shop".into(),
        name: "web".into(),
        local_endpoints: 1
    }));
    assert!(
        !c.host
            .iter()
            .any(|h| matches!(h, HostRule::Masquerade { .. }))
    );
    // Cluster: NODEPORT_IP, masqueraded by the node, any endpoint; no health check.
    m["spec"]["externalTrafficPolicy"] = json!("Cluster");
    store(&mut objects, m, 3);
    let c = on(&objects);
    let l = lines(&c);
    assert!(c.host.contains(&HostRule::NodePort {
        proto: 6,
        port: 30080,
        local: false
    }));
    assert!(c.host.contains(&HostRule::Masquerade {
        ip: Ipv4Addr::new(192, 0, 2, 9),
        proto: 6,
        port: 80
    }));
    assert!(
        !c.host
            .iter()
            .any(|h| matches!(h, HostRule::HealthCheck { .. }))
    );
    let any_group = format!("group:{}", group_id(3, 0, false));
    assert!(
        has(&l, &["nw_dst=169.254.0.252,", "tp_dst=30080", &any_group]),
        "{l:?}"
    );
    assert!(!l.iter().any(|x| x.contains("priority=201")), "{l:?}");
}

#[test]
fn topology_hints_are_used_only_when_every_endpoint_has_them_and_one_fits() {
    let b = |ip: u8, zones: &[&str], nodes: &[&str]| Backend {
        ip: Ipv4Addr::new(10, 0, 0, ip),
        port: 80,
        node: None,
        zones: zones.iter().map(|z| z.to_string()).collect(),
        nodes: nodes.iter().map(|z| z.to_string()).collect(),
    };
    let all = vec![b(1, &["a"], &[]), b(2, &["b"], &[]), b(3, &["a", "c"], &[])];
    let ips = |v: Vec<Backend>| v.iter().map(|b| b.ip.octets()[3]).collect::<Vec<_>>();
    let on = |v: &Vec<Backend>, zone| ips(by_topology(v.clone(), "n1", zone));
    assert_eq!(on(&all, Some("a")), [1, 3]);
    assert_eq!(on(&all, Some("c")), [3]);
    // No endpoint for the zone, no zone known, or one endpoint without hints: all.
    assert_eq!(on(&all, Some("d")), [1, 2, 3]);
    assert_eq!(on(&all, None), [1, 2, 3]);
    let mut partial = all.clone();
    partial.push(b(4, &[], &[]));
    assert_eq!(on(&partial, Some("a")), [1, 2, 3, 4]);
    // Node hints first, when all have them and one names this node; else zones.
    let nodes = vec![
        b(1, &["a"], &["n1"]),
        b(2, &["a"], &["n2"]),
        b(3, &["b"], &["n3"]),
    ];
    assert_eq!(on(&nodes, Some("a")), [1]);
    assert_eq!(ips(by_topology(nodes.clone(), "n9", Some("a"))), [1, 2]);
    assert_eq!(ips(by_topology(nodes, "n9", None)), [1, 2, 3]);
}

#[test]
fn a_service_another_proxy_serves_installs_nothing_and_keeps_its_label() {
    let mut objects = Objects::default();
    let mut m = svc_manifest();
    m["metadata"]["labels"] =
        json!({ "service.kubernetes.io/service-proxy-name": "other", "app": "x" });
    let key = store(&mut objects, m.clone(), 3);
    store(
        &mut objects,
        slice_manifest("web-a", 8080, json!([ep("10.244.1.3", None, None, None)])),
        1,
    );
    let stored = objects.get(&key).unwrap().clone();
    let c = SERVICE.compile(&node("n1"), &objects, &key, &stored);
    assert_eq!(c, Compiled::default());
    let back = SERVICE.to_object(&key, &stored);
    assert_eq!(
        back["metadata"]["labels"],
        json!({ "service.kubernetes.io/service-proxy-name": "other" })
    );
    assert_eq!(SERVICE.read(&back).unwrap().1, stored.spec);
}

#[test]
fn load_balancer_source_ranges_restrict_its_ips_from_pods_and_from_outside() {
    let mut objects = Objects::default();
    let mut m = svc_manifest();
    m["spec"]["type"] = json!("LoadBalancer");
    m["spec"]["loadBalancerSourceRanges"] =
        json!(["198.51.100.0/24", "10.244.1.7", "2001:db8::/32"]);
    m["status"] = json!({ "loadBalancer": { "ingress": [ { "ip": "192.0.2.9" } ] } });
    let key = store(&mut objects, m.clone(), 3);
    store(
        &mut objects,
        slice_manifest("web-a", 8080, json!([ep("10.244.1.3", None, None, None)])),
        1,
    );
    let stored = objects.get(&key).unwrap().clone();
    let svc = service_of(&stored.spec).unwrap();
    assert_eq!(svc.source_ranges.len(), 2, "IPv6 ranges are skipped");
    assert_eq!(
        SERVICE.read(&SERVICE.to_object(&key, &stored)).unwrap().1,
        stored.spec
    );
    let local = net(None);
    let ctx = NodeCtx {
        local: Some(&local),
        ..node("n1")
    };
    let c = compile_service(3, svc, &objects, &key, &ctx);
    let l: Vec<String> = c
        .rules
        .iter()
        .map(|r| text::display_flow(&r.to_spec(0), &NoPortNames, None).to_string())
        .filter(|l| l.contains("nw_dst=192.0.2.9,") && l.contains("tp_dst=80"))
        .collect();
    let has = |parts: &[&str]| l.iter().any(|x| parts.iter().all(|p| x.contains(p)));
    assert!(
        has(&["priority=200", "nw_src=198.51.100.0/24", "group:"]),
        "{l:?}"
    );
    assert!(
        has(&["priority=200", "nw_src=10.244.1.7,", "group:"]),
        "{l:?}"
    );
    assert!(has(&["priority=200", "reg0=0x1,", "group:"]), "{l:?}");
    assert!(has(&["priority=199", "actions=drop"]), "{l:?}");
    let ranges: Vec<&HostRule> = c
        .host
        .iter()
        .filter(|h| matches!(h, HostRule::SourceRange { port: 80, .. }))
        .collect();
    assert_eq!(ranges.len(), 3, "two passes and the drop: {ranges:?}");
    // The cluster IP is not restricted.
    let cluster = c.rules.iter().any(|r| {
        let t = text::display_flow(&r.to_spec(0), &NoPortNames, None).to_string();
        t.contains("nw_dst=10.96.0.10,") && t.contains("tp_dst=80") && !t.contains("nw_src")
    });
    assert!(cluster);
    let mut bad = m;
    bad["spec"]["loadBalancerSourceRanges"] = json!(["10.0.0.1/8"]);
    let e = SERVICE.read(&bad).unwrap_err();
    assert!(
        e.to_string().contains("spec.loadBalancerSourceRanges[0]"),
        "{e}"
    );
}
