//! The daemon's own Kubernetes pipeline (`vswitch::k8s`), for tests and benchmarks: the
//! rules one node's switch installs, made by the same compilers, for a node with Pod CIDR
//! 10.244.1.0/24, its gateway `gw0` on port 1 (10.244.1.1), its tunnel on port 2 (VNI 1),
//! Pod `i` (for i in 0..pods) on port 3+i with IP 10.244.1.(3+i) and the MAC the switch
//! gives it (`0a:58:` and the IP), and one remote node, 10.244.2.0/24 behind 192.168.100.2.

use std::net::Ipv4Addr;
use vswitch::k8s::local::{self, LocalNet, LocalPod, TunnelNet};
use vswitch::k8s::node::{RemoteNode, remote_rules};
use vswitch::k8s::pipeline::CookieKind;
use vswitch::ofproto::{Bridge, OwnedRule, PortDesc};
use vswitch_proto::net::MacAddr;
use vswitch_proto::text::{self, NoPortNames};

pub const GW_PORT: u32 = 1;
pub const TUN_PORT: u32 = 2;
pub const VNI: u32 = 1;
pub const GW_MAC: &str = "0a:58:0a:f4:01:01";
pub const REMOTE_NODE_IP: &str = "192.168.100.2";

pub fn pod_port(i: u32) -> u32 {
    3 + i
}

pub fn pod_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, (3 + i) as u8)
}

pub fn pod_mac(i: u32) -> String {
    MacAddr::for_ipv4(pod_ip(i)).to_string()
}

fn net() -> LocalNet {
    LocalNet {
        cidr: "10.244.1.0/24".parse().expect("CIDR"),
        gateway_port: GW_PORT,
        mtu: 1450,
        tunnel: Some(TunnelNet {
            port: TUN_PORT,
            vni: VNI,
        }),
        service_cidr: Some("10.96.0.0/12".parse().expect("CIDR")),
    }
}

/// Every owner's rules: (owner cookie, rules), as the daemon installs them.
pub fn owners(pods: u32) -> Vec<(u64, Vec<OwnedRule>)> {
    let n = net();
    let mut out = vec![(CookieKind::Node.cookie(0), local::node_rules(&n))];
    for i in 0..pods {
        let p = LocalPod {
            port: pod_port(i),
            ip: pod_ip(i),
            mac: MacAddr::for_ipv4(pod_ip(i)),
        };
        out.push((
            CookieKind::Pod.cookie(pod_port(i) as u64),
            local::pod_rules(&n, &p),
        ));
    }
    let remote = RemoteNode {
        cidr: "10.244.2.0/24".parse().expect("CIDR"),
        node_ip: REMOTE_NODE_IP.parse().expect("IP"),
    };
    out.push((
        CookieKind::RemoteNode.cookie(1),
        remote_rules(&n, n.tunnel.expect("tunnel"), &remote),
    ));
    out
}

/// A bridge holding the pipeline for `pods` local Pods (at most 250), with its ports.
pub fn bridge(pods: u32) -> Bridge {
    let mut b = Bridge::new("br0");
    b.set_ports(
        (1..=2 + pods)
            .map(|no| PortDesc {
                no,
                name: port_name(no),
                no_flood: no != GW_PORT,
            })
            .collect(),
    );
    for (owner, rules) in owners(pods) {
        b.set_owned(owner, rules, vec![], 0)
            .expect("the daemon's own rules");
    }
    b
}

/// The name of port `no` in scripts: `gw0`, `tun0`, `pod0`...
pub fn port_name(no: u32) -> String {
    match no {
        GW_PORT => "gw0".into(),
        TUN_PORT => "tun0".into(),
        n => format!("pod{}", n - 3),
    }
}

/// The same rules as flow lines (each with its owner's cookie), for pipeline scripts.
pub fn flows(pods: u32) -> Vec<String> {
    owners(pods)
        .into_iter()
        .flat_map(|(owner, rules)| {
            rules
                .into_iter()
                .map(move |r| text::display_flow(&r.to_spec(owner), &NoPortNames, None).to_string())
        })
        .collect()
}
