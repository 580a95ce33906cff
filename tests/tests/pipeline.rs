//! Pipeline tests written in flow syntax (see `vswitch_tests::script`).

use vswitch_tests::{k8s, script};

#[test]
fn scripts_in_tests_pipelines() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        match script::run(&text) {
            Ok(n) => assert!(n > 0, "{}: no traces", f.display()),
            Err(e) => panic!("{}: {e}", f.display()),
        }
    }
}

/// The Kubernetes-like pipeline, with the traces a person would check by hand.
fn k8s_script(pods: u32, checks: &str) -> String {
    let mut s = String::new();
    s.push_str("port 1 gw0\nport 2 tun0\n");
    for i in 0..pods {
        s.push_str(&format!("port {} pod{i}\n", k8s::pod_port(i)));
    }
    for g in k8s::groups(pods) {
        s.push_str(&format!("group {g}\n"));
    }
    for f in k8s::flows(pods) {
        s.push_str(&format!("flow {f}\n"));
    }
    s.push_str(checks);
    s
}

#[test]
fn k8s_pipeline() {
    let checks = r#"
# Pod 0 -> Pod 1 on the same node: first pass stops at conntrack...
trace in_port=3,tcp,dl_src=02:00:0a:f4:01:03,dl_dst=0a:00:00:00:00:01,nw_src=10.244.1.3,nw_dst=10.244.1.4,nw_ttl=64,tp_src=40000,tp_dst=8080
expect tables 0 1 2 3
expect actions ct(zone=65520),recirc(0x5)
# ...and the tracked copy is routed: MACs rewritten, TTL decremented, committed, output.
trace recirc_id=5,ct_state=+new+trk,ct_zone=65520,reg0=0x3,in_port=3,tcp,dl_src=02:00:0a:f4:01:03,dl_dst=0a:00:00:00:00:01,nw_src=10.244.1.3,nw_dst=10.244.1.4,nw_ttl=64,tp_src=40000,tp_dst=8080
expect tables 4 5 6 7 8 9 10
expect actions set(eth(src=0a:00:00:00:00:01,dst=02:00:0a:f4:01:04)),set(ipv4(ttl=63)),ct(commit,zone=65520),4
# A spoofed source is dropped at SpoofGuard.
trace in_port=3,tcp,dl_src=02:00:0a:f4:01:03,nw_src=10.244.1.99,nw_dst=10.244.1.4,nw_ttl=64
expect tables 0 1
expect actions drop
# ARP for the gateway is answered by the switch.
trace in_port=4,arp,dl_src=02:00:0a:f4:01:04,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa=10.244.1.4,arp_sha=02:00:0a:f4:01:04,arp_tpa=10.244.1.1
expect tables 0 1 2
expect actions set(eth(src=0a:00:00:00:00:01,dst=02:00:0a:f4:01:04)),set(arp(sip=10.244.1.1,tip=10.244.1.4,op=2,sha=0a:00:00:00:00:01,tha=02:00:0a:f4:01:04)),4
# To a Pod on the other node: into the tunnel with the node's address.
trace recirc_id=5,ct_state=+new+trk,ct_zone=65520,reg0=0x3,in_port=3,tcp,dl_src=02:00:0a:f4:01:03,nw_src=10.244.1.3,nw_dst=10.244.2.9,nw_ttl=64,tp_dst=80
expect tables 4 5 6 7 8 9 10
expect actions set(ipv4(ttl=63)),set(tunnel(tun_id=0x1,src=0.0.0.0,dst=192.168.100.2)),ct(commit,zone=65520),2
# To the Service: a select group picks an endpoint, DNAT to it, then forwarding to it.
trace recirc_id=5,ct_state=+new+trk,ct_zone=65520,reg0=0x1,in_port=1,tcp,nw_src=10.244.1.1,nw_dst=10.96.0.10,nw_ttl=64,tp_src=33333,tp_dst=80
expect tables 4 5 11 6 7 8 9 10
# Pod 4 may only talk to Pod 0 on 8080.
trace recirc_id=5,ct_state=+new+trk,ct_zone=65520,reg0=0x3,in_port=7,tcp,nw_src=10.244.1.7,nw_dst=10.244.1.3,nw_ttl=64,tp_dst=8080
expect tables 4 5 6 7 8 9 10
trace recirc_id=5,ct_state=+new+trk,ct_zone=65520,reg0=0x3,in_port=7,tcp,nw_src=10.244.1.7,nw_dst=10.244.1.4,nw_ttl=64,tp_dst=8080
expect tables 4 5 6
expect actions drop
# Established connections skip Service and policy tables.
trace recirc_id=5,ct_state=-new+est+trk,ct_zone=65520,reg0=0x3,in_port=7,tcp,nw_src=10.244.1.7,nw_dst=10.244.1.4,nw_ttl=64,tp_dst=8080
expect tables 4 7 8 9 10
"#;
    script::run(&k8s_script(8, checks)).unwrap_or_else(|e| panic!("{e}"));
}
