//! The overlay: the node's VXLAN port (DESIGN §5, §8), and the calls about nodes
//! (`add-node`, `del-node`, `list-nodes`); the remote nodes themselves are Node objects
//! (`k8s::node`, through `objects`).
//!
//! The tunnel port is made from the switch's settings (`--node-ip`, `--vni`,
//! `--vxlan-port`), never by `add-port`. Like the Pod CIDR it is saved: a start without
//! `--node-ip` opens it as before; `--no-tunnel` removes it.

use super::devices::Device;
use super::{Refusal, StartError, Switch};
use crate::k8s::local::TunnelNet;
use crate::k8s::{Spec, node};
use crate::port::vxlan::{self, VxlanConfig};
use crate::store::{PortRecord, TunnelRecord};
use crate::sys::netlink::Rtnl;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use vswitch_proto::net::IfAddr;
use vswitch_proto::rpc::{self, PortType};

/// The tunnel port's name.
pub const TUNNEL_PORT: &str = "vsw-tun0";
/// The Pod network's VNI unless `--vni` says otherwise (Flannel's default too).
pub const DEFAULT_VNI: u32 = 1;
/// Where a node came from.
pub const FROM_CTL: &str = "vswitchctl";
pub const FROM_MANIFEST: &str = "manifest";

/// The tunnel, as this start made it.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    pub(super) tunnel: Option<TunnelNet>,
    /// The largest inner packet the tunnel carries whole, when there is one.
    pub(super) tunnel_mtu: Option<u32>,
}

/// The tunnel as this start will make it.
#[derive(Clone, Debug)]
pub(super) struct TunnelPlan {
    local: Ipv4Addr,
    port: u16,
    vni: u32,
    /// The underlay interface's MTU.
    underlay_mtu: u32,
}

impl Switch {
    /// At start, first: the tunnel's settings (`--node-ip` or as persisted) and the Pods'
    /// MTU (`--pod-mtu`, else the underlay's less the VXLAN overhead, else 1500).
    pub(super) fn plan_tunnel(
        &mut self,
        persisted: Option<&PortRecord>,
    ) -> Result<Option<TunnelPlan>, StartError> {
        let bad = StartError::Network;
        let saved = persisted
            .and_then(|r| r.tunnel.as_ref())
            .filter(|_| !self.config.no_tunnel);
        let local = match (self.config.node_ip, saved) {
            (Some(ip), _) => Some(ip),
            (None, Some(t)) => {
                tracing::info!(node_ip = %t.local, "node IP as saved (no --node-ip given)");
                Some(t.local)
            }
            (None, None) => None,
        };
        let plan = match local {
            None => None,
            Some(local) => {
                let underlay_mtu = match underlay_mtu(local) {
                    Ok(m) => m,
                    // Asked for now: say what is wrong and stop.
                    Err(e) if self.config.node_ip.is_some() => return Err(bad(e)),
                    // As saved, and gone (the address changed): the tunnel is kept in
                    // the state, shown missing, and tried again at the next start.
                    Err(e) => {
                        tracing::error!(error = %e, "the saved tunnel address is gone; start with --node-ip");
                        persisted
                            .and_then(|r| r.mtu)
                            .map_or(1500, |m| m + vxlan::OVERHEAD as u32)
                    }
                };
                Some(TunnelPlan {
                    local,
                    port: self.config.vxlan_port,
                    vni: self.config.vni,
                    underlay_mtu,
                })
            }
        };
        let tunnel_mtu = plan
            .as_ref()
            .map(|p| p.underlay_mtu.saturating_sub(vxlan::OVERHEAD as u32));
        self.overlay.tunnel_mtu = tunnel_mtu;
        self.podnet.pod_mtu = match (self.config.pod_mtu, tunnel_mtu) {
            (Some(m), Some(t)) if m > t => {
                tracing::warn!(
                    pod_mtu = m,
                    tunnel_mtu = t,
                    "--pod-mtu is larger than the tunnel carries: larger packets from Pods \
                     to other nodes get ICMP fragmentation-needed (the gateway keeps the \
                     tunnel's MTU)"
                );
                m
            }
            (Some(m), _) => m,
            (None, Some(t)) => t,
            (None, None) => super::DEFAULT_POD_MTU,
        };
        Ok(plan)
    }

    /// At start, after the ports and before the gateway: open the tunnel (keeping its
    /// port number). A tunnel that cannot open (its port taken, its address gone) is
    /// kept in the state, shown missing, and the switch runs on without it: local Pods
    /// keep their network.
    pub(super) fn open_tunnel(
        &mut self,
        plan: Option<TunnelPlan>,
        persisted: Option<PortRecord>,
    ) -> Result<(), StartError> {
        let bad = StartError::Network;
        let Some(plan) = plan else {
            if let Some(rec) = persisted {
                tracing::info!(port = %rec.name, "tunnel removed: no --node-ip");
            }
            if self
                .objects
                .of_kind(vswitch_proto::k8s::NODE_KIND, None)
                .next()
                .is_some()
            {
                tracing::warn!(
                    "remote nodes are known but the switch has no tunnel: start with --node-ip"
                );
            }
            return Ok(());
        };
        let no = match &persisted {
            Some(r) if self.ports.get(r.no).is_none() => r.no,
            _ => self
                .ports
                .free_no()
                .ok_or_else(|| bad("no free port number for the tunnel".into()))?,
        };
        let tunnel_mtu = plan.underlay_mtu.saturating_sub(vxlan::OVERHEAD as u32);
        let config = VxlanConfig {
            local: plan.local,
            port: plan.port,
            mtu: u16::try_from(tunnel_mtu).unwrap_or(u16::MAX),
            icmp_from: self
                .podnet
                .net
                .as_ref()
                .map(|n| (n.gateway_mac().0, n.gateway_ip())),
        };
        let rec = PortRecord {
            no,
            name: TUNNEL_PORT.into(),
            port_type: PortType::Vxlan,
            netns: None,
            ifname: TUNNEL_PORT.into(),
            mac: None,
            mtu: Some(tunnel_mtu),
            ip: IfAddr::new(IpAddr::V4(plan.local), 32),
            gateway: None,
            tunnel: Some(TunnelRecord {
                local: plan.local,
                port: plan.port,
                vni: plan.vni,
            }),
        };
        self.ports.note_no(no);
        let device = match Device::open_tunnel(&config, self.ports.workers()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the tunnel is not open: Pods on this node work, other nodes are not reached");
                self.ports.insert(rec, Device::Missing(e));
                self.publish_ports();
                return Ok(());
            }
        };
        self.ports.insert(rec, device);
        self.publish_ports();
        self.overlay.tunnel = Some(TunnelNet {
            port: no,
            vni: plan.vni,
        });
        if let Some(net) = self.podnet.net.as_mut() {
            net.tunnel = self.overlay.tunnel;
        }
        tracing::info!(
            node_ip = %plan.local,
            port = plan.port,
            vni = plan.vni,
            mtu = tunnel_mtu,
            "tunnel ready"
        );
        Ok(())
    }

    /// The tunnel's local address, when there is a tunnel.
    pub(super) fn tunnel_local(&self) -> Option<Ipv4Addr> {
        let t = self.overlay.tunnel?;
        Some(self.ports.get(t.port)?.record.tunnel.as_ref()?.local)
    }

    /// This node, as `list-nodes` and `get nodes` show it first.
    pub(super) fn local_node(&self) -> Option<rpc::NodeInfo> {
        let net = self.podnet.net.as_ref()?;
        Some(rpc::NodeInfo {
            name: self.config.node_name.clone(),
            pod_cidr: net.cidr.to_string(),
            node_ip: self
                .tunnel_local()
                .map_or_else(String::new, |ip| ip.to_string()),
            gateway: net.gateway_ip().to_string(),
            local: true,
            source: "flags".into(),
        })
    }

    /// `list-nodes`: this node first, then the remote ones by name.
    pub fn list_nodes(&self) -> Vec<rpc::NodeInfo> {
        let remote = self
            .objects
            .of_kind(vswitch_proto::k8s::NODE_KIND, None)
            .filter_map(|(k, s)| {
                let Spec::Node(n) = &s.spec else {
                    return None;
                };
                Some(rpc::NodeInfo {
                    name: k.name.clone(),
                    pod_cidr: n.cidr.to_string(),
                    node_ip: n.node_ip.to_string(),
                    gateway: n.cidr.gateway().to_string(),
                    local: false,
                    source: s.source.clone(),
                })
            });
        self.local_node().into_iter().chain(remote).collect()
    }

    /// `add-node`: a node already known with the same settings is left as it is; with
    /// others, it is refused (`del-node` first). The node is a Node object like one
    /// applied from a manifest, from `vswitchctl`.
    pub fn add_node(&mut self, spec: &rpc::NodeSpec) -> Result<(), Refusal> {
        if let Some(old) = self.objects.get(&node::key(&spec.name))
            && let Spec::Node(n) = &old.spec
            && (n.cidr.to_string() != spec.pod_cidr || n.node_ip.to_string() != spec.node_ip)
        {
            return Err(Refusal::conflict(format!(
                "node {} is already known with Pod CIDR {} at {}; del-node {} first",
                spec.name, n.cidr, n.node_ip, spec.name
            )));
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": spec.name },
            "spec": { "podCIDR": spec.pod_cidr },
            "status": { "addresses": [{ "type": "InternalIP", "address": spec.node_ip }] },
        });
        self.put_one(&object, FROM_CTL)
    }

    /// `del-node`.
    pub fn del_node(&mut self, name: &str) -> Result<(), Refusal> {
        if name == self.config.node_name {
            return Err(Refusal::refused(format!(
                "{name} is this node; its Pod network goes with vswitchd --pod-cidr"
            )));
        }
        if self.objects.get(&node::key(name)).is_none() {
            return Err(Refusal::not_found(format!("no node named {name:?}")));
        }
        self.remove_one(node::key(name))
    }
}

/// The MTU of the interface that holds `ip` in this namespace.
fn underlay_mtu(ip: Ipv4Addr) -> Result<u32, String> {
    let fail = |e: crate::sys::netlink::NetlinkError| format!("--node-ip {ip}: {e}");
    let mut nl = Rtnl::open().map_err(fail)?;
    let index = nl
        .address_owner(IpAddr::V4(ip))
        .map_err(fail)?
        .ok_or_else(|| {
            format!(
                "--node-ip {ip} is not an address of any interface in this namespace; give the \
             node's underlay (InternalIP) address"
            )
        })?;
    let link = nl
        .link(index)
        .map_err(fail)?
        .ok_or_else(|| format!("--node-ip {ip}: its interface (index {index}) is gone"))?;
    Ok(link.mtu)
}
