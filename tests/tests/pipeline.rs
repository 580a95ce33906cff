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

/// The daemon's own Kubernetes pipeline (`vswitch_tests::k8s`), with the traces a person
/// would check by hand.
fn k8s_script(pods: u32, checks: &str) -> String {
    let mut s = String::new();
    for no in 1..=2 + pods {
        s.push_str(&format!("port {no} {}\n", k8s::port_name(no)));
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
# Pod 0 -> Pod 1 on the same node, sent to the gateway's MAC: routed (MACs rewritten, TTL
# decremented), through every table: tracked, then (a new connection) committed.
trace ct=+trk+new in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.1.3,nw_dst=10.244.1.4,nw_ttl=64,tp_src=40000,tp_dst=8080
expect tables 0 1 2 3 4 5 6 7 8 9 10
expect actions set(eth(src=0a:58:0a:f4:01:01,dst=0a:58:0a:f4:01:04)),set(ipv4(ttl=63)),ct(commit,zone=65520,label=0x0/0xffffffffffffffff,nat),4
# Sent to Pod 1's own MAC: switched, unchanged.
trace ct=+trk+new in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:04,nw_src=10.244.1.3,nw_dst=10.244.1.4,nw_ttl=64,tp_src=40000,tp_dst=8080
expect tables 0 1 2 3 4 5 6 7 8 9 10
expect actions ct(commit,zone=65520,label=0x0/0xffffffffffffffff,nat),4
# A spoofed source is dropped at SpoofGuard.
trace in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,nw_src=10.244.1.99,nw_dst=10.244.1.4,nw_ttl=64
expect tables 0 1
expect actions drop
# ARP for the gateway is answered by the switch.
trace in_port=4,arp,dl_src=0a:58:0a:f4:01:04,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa=10.244.1.4,arp_sha=0a:58:0a:f4:01:04,arp_tpa=10.244.1.1
expect tables 0 1 2
expect actions set(eth(src=0a:58:0a:f4:01:01,dst=0a:58:0a:f4:01:04)),set(arp(sip=10.244.1.1,tip=10.244.1.4,op=2,sha=0a:58:0a:f4:01:01,tha=0a:58:0a:f4:01:04)),4
# To a Pod on the other node: into the tunnel, to the node's address, with its
# gateway's MAC inside.
trace ct=+trk+new in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.1.3,nw_dst=10.244.2.9,nw_ttl=64,tp_dst=80
expect tables 0 1 2 3 4 5 6 7 8 9 10
expect actions set(eth(src=0a:58:0a:f4:01:01,dst=0a:58:0a:f4:02:01)),set(ipv4(ttl=63)),set(tunnel(tun_id=0x1,src=0.0.0.0,dst=192.168.100.2)),ct(commit,zone=65520,label=0x0/0xffffffffffffffff,nat),2
# From the other node's Pod through the tunnel: delivered, the TTL as it came.
trace ct=+trk+new in_port=2,tun_id=1,tun_src=192.168.100.2,tcp,dl_src=0a:58:0a:f4:02:01,dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.2.9,nw_dst=10.244.1.3,nw_ttl=63,tp_dst=80
expect tables 0 3 4 5 6 7 8 9 10
expect actions set(eth(src=0a:58:0a:f4:01:01,dst=0a:58:0a:f4:01:03)),ct(commit,zone=65520,label=0x0/0xffffffffffffffff,nat),3
# The same from an address the tunnel does not know: dropped where it comes in.
trace in_port=2,tun_id=1,tun_src=192.168.100.66,tcp,dl_src=0a:58:0a:f4:02:01,nw_src=10.244.2.9,nw_dst=10.244.1.3,nw_ttl=63,tp_dst=80
expect tables 0
expect actions drop
# The node to a Pod (through its gateway port).
trace ct=+trk+new in_port=1,icmp,dl_src=0a:58:0a:f4:01:01,dl_dst=0a:58:0a:f4:01:05,nw_src=10.244.1.1,nw_dst=10.244.1.5,nw_ttl=64
expect tables 0 2 3 4 5 6 7 8 9 10
expect actions ct(commit,zone=65520,label=0x0/0xffffffffffffffff,nat),5
# The same packet of a known connection takes the short way: forwarding, then out.
trace ct=+trk+est in_port=1,icmp,dl_src=0a:58:0a:f4:01:01,dl_dst=0a:58:0a:f4:01:05,nw_src=10.244.1.1,nw_dst=10.244.1.5,nw_ttl=64
expect tables 0 2 3 4 7 8 10
expect actions 5
# An invalid packet from a Pod is dropped.
trace ct=+trk+inv in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:04,nw_src=10.244.1.3,nw_dst=10.244.1.4,nw_ttl=64,tp_src=40000,tp_dst=8080
expect tables 0 1 2 3 4
expect actions drop
"#;
    script::run(&k8s_script(4, checks)).unwrap_or_else(|e| panic!("{e}"));
}
