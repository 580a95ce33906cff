//! A Kubernetes-like pipeline over the reserved tables of DESIGN §5, written as flow text.
//!
//! One node with Pod CIDR 10.244.1.0/24: the gateway `gw0` is port 1 (10.244.1.1), the
//! tunnel is port 2, and Pod `i` (for i in 0..pods) is port 3+i with IP 10.244.1.(3+i) and
//! MAC 02:00:0a:f4:01:(3+i). A remote node owns 10.244.2.0/24 behind 192.168.100.2.
//! Service 10.96.0.10:80 load-balances over the first two Pods' port 8080. The fifth Pod
//! (10.244.1.7), when there is one, may only talk to 10.244.1.3:8080 (a NetworkPolicy,
//! as a conjunctive match).

use std::net::Ipv4Addr;

pub const GW_PORT: u32 = 1;
pub const TUN_PORT: u32 = 2;
pub const GW_MAC: &str = "0a:00:00:00:00:01";
pub const SERVICE_IP: &str = "10.96.0.10";

pub fn pod_port(i: u32) -> u32 {
    3 + i
}

pub fn pod_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, (3 + i) as u8)
}

pub fn pod_mac(i: u32) -> String {
    format!("02:00:0a:f4:01:{:02x}", 3 + i)
}

/// The flows of the pipeline for `pods` local Pods (at most 250).
pub fn flows(pods: u32) -> Vec<String> {
    let mut f: Vec<String> = Vec::new();
    // 0 Classifier: where did it come from (reg0: 1 gateway, 2 tunnel, 3 Pod).
    f.push(format!(
        "table=0,priority=200,in_port={GW_PORT},actions=set_field:0x1->reg0,goto_table:1"
    ));
    f.push(format!(
        "table=0,priority=200,in_port={TUN_PORT},actions=set_field:0x2->reg0,goto_table:3"
    ));
    f.push("table=0,priority=0,actions=drop".into());
    for i in 0..pods {
        f.push(format!(
            "table=0,priority=190,in_port={},actions=set_field:0x3->reg0,goto_table:1",
            pod_port(i)
        ));
    }
    // 1 SpoofGuard: a Pod sends only from its own MAC and IP.
    f.push("table=1,priority=200,reg0=0x1,actions=goto_table:2".into());
    f.push("table=1,priority=0,actions=drop".into());
    for i in 0..pods {
        let (p, ip, mac) = (pod_port(i), pod_ip(i), pod_mac(i));
        f.push(format!(
            "table=1,priority=200,ip,in_port={p},dl_src={mac},nw_src={ip},actions=goto_table:2"
        ));
        f.push(format!(
            "table=1,priority=200,arp,in_port={p},arp_sha={mac},arp_spa={ip},actions=goto_table:2"
        ));
    }
    // 2 ARPResponder: answer for the gateway and for local Pods.
    let mut answer = |ip: Ipv4Addr, mac: &str| {
        f.push(format!(
            "table=2,priority=200,arp,arp_op=1,arp_tpa={ip},actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{mac}->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],set_field:{mac}->arp_sha,move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{ip}->arp_spa,in_port"
        ));
    };
    answer(Ipv4Addr::new(10, 244, 1, 1), GW_MAC);
    for i in 0..pods {
        answer(pod_ip(i), &pod_mac(i));
    }
    f.push("table=2,priority=100,ip,actions=goto_table:3".into());
    f.push("table=2,priority=0,actions=drop".into());
    // 3 Conntrack and 4 ConntrackState.
    f.push("table=3,priority=200,ip,actions=ct(zone=65520,table=4)".into());
    f.push("table=3,priority=0,actions=drop".into());
    f.push("table=4,priority=200,ct_state=+inv+trk,ip,actions=drop".into());
    f.push("table=4,priority=190,ct_state=-new+est+trk,ip,actions=goto_table:7".into());
    f.push("table=4,priority=0,actions=goto_table:5".into());
    // 5 ServiceLB: pick an endpoint (group 1), DNAT in table 11, continue at 6.
    f.push(format!(
        "table=5,priority=200,tcp,nw_dst={SERVICE_IP},tp_dst=80,actions=group:1"
    ));
    f.push("table=5,priority=0,actions=goto_table:6".into());
    for i in 0..pods.min(2) {
        let ip = u32::from(pod_ip(i));
        f.push(format!(
            "table=11,priority=200,tcp,reg3={ip:#x},actions=set_field:{}->ip_dst,set_field:8080->tcp_dst,resubmit(,6)",
            pod_ip(i)
        ));
    }
    // 6 EgressPolicy: Pod 4 may only reach Pod 0 on 8080.
    f.push("table=6,priority=0,actions=goto_table:7".into());
    if pods > 4 {
        f.push(format!(
            "table=6,priority=200,ip,nw_src={},actions=conjunction(1,1/2)",
            pod_ip(4)
        ));
        f.push(format!(
            "table=6,priority=200,tcp,nw_dst={},tp_dst=8080,actions=conjunction(1,2/2)",
            pod_ip(0)
        ));
        f.push("table=6,priority=200,conj_id=1,ip,actions=goto_table:7".into());
        f.push(format!(
            "table=6,priority=190,ip,nw_src={},actions=drop",
            pod_ip(4)
        ));
    }
    // 7 L3Forwarding: local Pods (routed: MACs rewritten, TTL decremented), the remote
    // node (tunnel), everything else to the gateway.
    for i in 0..pods {
        f.push(format!(
            "table=7,priority=200,ip,nw_dst={},actions=set_field:{GW_MAC}->eth_src,set_field:{}->eth_dst,dec_ttl,set_field:{:#x}->reg1,goto_table:8",
            pod_ip(i),
            pod_mac(i),
            pod_port(i)
        ));
    }
    f.push(format!(
        "table=7,priority=200,ip,nw_dst=10.244.2.0/24,actions=dec_ttl,set_field:0x1->tun_id,set_field:192.168.100.2->tun_dst,set_field:{TUN_PORT:#x}->reg1,goto_table:8"
    ));
    f.push(format!(
        "table=7,priority=100,ip,actions=set_field:{GW_PORT:#x}->reg1,goto_table:8"
    ));
    // 8 IngressPolicy, 9 ConntrackCommit, 10 Output.
    f.push("table=8,priority=0,actions=goto_table:9".into());
    f.push(
        "table=9,priority=200,ct_state=+new+trk,ip,actions=ct(commit,zone=65520),goto_table:10"
            .into(),
    );
    f.push("table=9,priority=0,actions=goto_table:10".into());
    for p in [GW_PORT, TUN_PORT]
        .into_iter()
        .chain((0..pods).map(pod_port))
    {
        f.push(format!(
            "table=10,priority=200,reg1={p:#x},actions=output:{p}"
        ));
    }
    f
}

/// The groups the pipeline uses.
pub fn groups(pods: u32) -> Vec<String> {
    let buckets: Vec<String> = (0..pods.min(2))
        .map(|i| {
            format!(
                "bucket=weight:100,actions=set_field:{:#x}->reg3,resubmit(,11)",
                u32::from(pod_ip(i))
            )
        })
        .collect();
    vec![format!("group_id=1,type=select,{}", buckets.join(","))]
}
