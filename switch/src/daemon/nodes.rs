//! The overlay: the node's VXLAN port and the remote nodes behind it (DESIGN §5, §8).
//!
//! The tunnel port is made from the switch's settings (`--node-ip`, `--vni`,
//! `--vxlan-port`), never by `add-port`. A remote node is a Pod CIDR behind an underlay
//! address: the switch routes that CIDR into the tunnel (one L3Forwarding rule per node,
//! with the node's cookie) and gives the switch's own namespace a route to it through the
//! gateway port, so the node reaches remote Pods too. Nodes are persisted with the rest of
//! the state and come back, flows and routes, at every start.

use super::devices::Device;
use super::ipam::Cidr4;
use super::pipeline::{self, RemoteNet, TunnelNet};
use super::{Refusal, StartError, Switch};
use crate::ofproto::now_ms;
use crate::port::vxlan::{self, VxlanConfig};
use crate::store::{NodeRecord, PortRecord, TunnelRecord};
use crate::sys::netlink::Rtnl;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use vswitch_proto::k8s;
use vswitch_proto::rpc::{self, PortType};

/// The tunnel port's name.
pub const TUNNEL_PORT: &str = "vsw-tun0";
/// The Pod network's VNI unless `--vni` says otherwise (Flannel's default too).
pub const DEFAULT_VNI: u32 = 1;
/// Where a node came from.
pub const FROM_CTL: &str = "vswitchctl";
pub const FROM_MANIFEST: &str = "manifest";

/// The tunnel as this start will make it.
#[derive(Clone, Debug)]
pub(super) struct TunnelPlan {
    local: Ipv4Addr,
    port: u16,
    vni: u32,
    /// The underlay interface's MTU.
    underlay_mtu: u32,
}

/// What `apply` did with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    Created,
    Configured,
    Unchanged,
}

impl NodeChange {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeChange::Created => "created",
            NodeChange::Configured => "configured",
            NodeChange::Unchanged => "unchanged",
        }
    }
}

/// A node's settings, checked.
struct Checked {
    cidr: Cidr4,
    node_ip: Ipv4Addr,
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
                let ip = t.local.parse().map_err(|_| {
                    bad(format!(
                        "the saved tunnel address {:?} is not IPv4",
                        t.local
                    ))
                })?;
                tracing::info!(node_ip = %ip, "node IP as saved (no --node-ip given)");
                Some(ip)
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
        self.tunnel_mtu = tunnel_mtu;
        self.pod_mtu = match (self.config.pod_mtu, tunnel_mtu) {
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
    /// port number) and put the node's tunnel rules in. A tunnel that cannot open (its
    /// port taken, its address gone) is kept in the state, shown missing, and the switch
    /// runs on without it: local Pods keep their network.
    pub(super) fn open_tunnel(
        &mut self,
        plan: Option<TunnelPlan>,
        persisted: Option<PortRecord>,
    ) -> Result<(), StartError> {
        let bad = StartError::Network;
        let Some(plan) = plan else {
            if let Some(rec) = persisted {
                tracing::info!(port = %rec.name, "tunnel removed: no --node-ip");
                self.save().map_err(|r| bad(r.message))?;
            }
            if !self.nodes.is_empty() {
                tracing::warn!(
                    nodes = self.nodes.len(),
                    "remote nodes are known but the switch has no tunnel: start with --node-ip"
                );
            }
            return Ok(());
        };
        let no = match &persisted {
            Some(r) if !self.ports.contains_key(&r.no) => r.no,
            _ => self
                .free_port_no()
                .ok_or_else(|| bad("no free port number for the tunnel".into()))?,
        };
        let tunnel_mtu = plan.underlay_mtu.saturating_sub(vxlan::OVERHEAD as u32);
        let config = VxlanConfig {
            local: plan.local,
            port: plan.port,
            mtu: u16::try_from(tunnel_mtu).unwrap_or(u16::MAX),
            icmp_from: self
                .net
                .as_ref()
                .map(|n| (mac_bytes(&n.gateway_mac()), n.gateway_ip())),
        };
        let rec = PortRecord {
            no,
            name: TUNNEL_PORT.into(),
            port_type: PortType::Vxlan,
            netns: None,
            ifname: TUNNEL_PORT.into(),
            mac: String::new(),
            mtu: Some(tunnel_mtu),
            ip: Some(plan.local.to_string()),
            gateway: None,
            tunnel: Some(TunnelRecord {
                local: plan.local.to_string(),
                port: plan.port,
                vni: plan.vni,
            }),
        };
        self.last_port_no = self.last_port_no.max(no);
        let device = match Device::open_tunnel(&config, self.workers.len()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the tunnel is not open: Pods on this node work, other nodes are not reached");
                self.insert_port(rec, Device::Missing(e));
                self.publish_ports();
                return Ok(());
            }
        };
        self.insert_port(rec, device);
        self.publish_ports();
        self.tunnel = Some(TunnelNet {
            port: no,
            vni: plan.vni,
        });
        if let Some(mut net) = self.net.clone() {
            net.tunnel = self.tunnel;
            if net.gateway_port != 0 {
                self.install_node_flows(&net)?;
            }
            self.net = Some(net);
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

    /// At start, last: every saved remote node's rules and route, each checked again
    /// against this start's settings (a node that now overlaps this one is skipped).
    pub(super) fn install_remotes(&mut self) {
        let nodes: Vec<NodeRecord> = self.nodes.values().cloned().collect();
        for node in &nodes {
            let spec = rpc::NodeSpec {
                name: node.name.clone(),
                pod_cidr: node.pod_cidr.clone(),
                node_ip: node.node_ip.clone(),
            };
            let done = match self.check_node(&spec) {
                Err((field, r)) => Err(format!("{field}: {}", r.message)),
                Ok(_) => self.install_remote(node),
            };
            if let Err(e) = done {
                tracing::error!(node = %node.name, error = %e, "remote node not installed");
            }
        }
        if !nodes.is_empty() {
            tracing::info!(nodes = nodes.len(), "remote nodes installed");
        }
    }

    /// This node, as `list-nodes` shows it first.
    fn local_node(&self) -> Option<rpc::NodeInfo> {
        let net = self.net.as_ref()?;
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

    fn tunnel_local(&self) -> Option<Ipv4Addr> {
        let t = self.tunnel?;
        let rec = &self.ports.get(&t.port)?.record;
        rec.tunnel.as_ref()?.local.parse().ok()
    }

    /// `list-nodes`: this node first, then the remote ones by name.
    pub fn list_nodes(&self) -> Vec<rpc::NodeInfo> {
        self.local_node()
            .into_iter()
            .chain(self.nodes.values().map(|n| {
                rpc::NodeInfo {
                    name: n.name.clone(),
                    pod_cidr: n.pod_cidr.clone(),
                    node_ip: n.node_ip.clone(),
                    gateway: Cidr4::parse(&n.pod_cidr)
                        .map(|c| c.gateway().to_string())
                        .unwrap_or_default(),
                    local: false,
                    source: n.source.clone(),
                }
            }))
            .collect()
    }

    /// `add-node`: a node already known with the same settings is left as it is; with
    /// others, it is refused (`del-node` first).
    pub fn add_node(&mut self, spec: &rpc::NodeSpec) -> Result<(), Refusal> {
        if let Some(old) = self.nodes.get(&spec.name)
            && (old.pod_cidr != spec.pod_cidr || old.node_ip != spec.node_ip)
        {
            return Err(Refusal::conflict(format!(
                "node {} is already known with Pod CIDR {} at {}; del-node {} first",
                spec.name, old.pod_cidr, old.node_ip, spec.name
            )));
        }
        self.upsert_node(spec, FROM_CTL).map(|_| ())
    }

    /// Create or update a remote node (`add-node`, `apply`).
    pub fn upsert_node(
        &mut self,
        spec: &rpc::NodeSpec,
        source: &str,
    ) -> Result<NodeChange, Refusal> {
        let checked = self.check_node(spec).map_err(|(_, r)| r)?;
        let old = self.nodes.get(&spec.name).cloned();
        let id = match &old {
            Some(o) => {
                if o.pod_cidr == checked.cidr.to_string()
                    && o.node_ip == checked.node_ip.to_string()
                {
                    // Installed again (the same rules, `replace` for the route): a route
                    // that failed before is retried.
                    let o = o.clone();
                    self.install_remote(&o).map_err(|e| {
                        Refusal::refused(format!("node {} is known but its route: {e}", o.name))
                    })?;
                    return Ok(NodeChange::Unchanged);
                }
                o.id
            }
            None => (1..=u32::MAX >> 8)
                .find(|i| self.nodes.values().all(|n| n.id != *i))
                .ok_or_else(|| Refusal::refused("too many nodes"))?,
        };
        let rec = NodeRecord {
            id,
            name: spec.name.clone(),
            pod_cidr: checked.cidr.to_string(),
            node_ip: checked.node_ip.to_string(),
            source: source.to_string(),
        };
        if !self.defer_node_save() {
            let mut state = self.state();
            state.nodes.retain(|n| n.name != rec.name);
            state.nodes.push(rec.clone());
            self.store.save(&state)?;
        }
        if let Some(o) = &old {
            self.uninstall_remote(o);
        }
        self.nodes.insert(rec.name.clone(), rec.clone());
        if let Err(e) = self.install_remote(&rec) {
            // Recorded, and installed again at the next start; say so now.
            tracing::error!(node = %rec.name, error = %e, "remote node not installed");
            return Err(Refusal::refused(format!(
                "node {} is recorded but its route could not be installed: {e}",
                rec.name
            )));
        }
        tracing::info!(node = %rec.name, pod_cidr = %rec.pod_cidr, node_ip = %rec.node_ip, source, "node added");
        Ok(if old.is_some() {
            NodeChange::Configured
        } else {
            NodeChange::Created
        })
    }

    /// `del-node`.
    pub fn del_node(&mut self, name: &str) -> Result<(), Refusal> {
        let Some(rec) = self.nodes.get(name).cloned() else {
            if name == self.config.node_name {
                return Err(Refusal::refused(format!(
                    "{name} is this node; its Pod network goes with vswitchd --pod-cidr"
                )));
            }
            return Err(Refusal::not_found(format!("no node named {name:?}")));
        };
        if !self.defer_node_save() {
            let mut state = self.state();
            state.nodes.retain(|n| n.name != name);
            self.store.save(&state)?;
        }
        self.nodes.remove(name);
        self.uninstall_remote(&rec);
        tracing::info!(node = %name, "node deleted");
        Ok(())
    }

    /// The settings checked; an error names the Node field it is about.
    fn check_node(&self, spec: &rpc::NodeSpec) -> Result<Checked, (&'static str, Refusal)> {
        const NAME: &str = "metadata.name";
        const CIDR: &str = "spec.podCIDR";
        const IP: &str = "status.addresses";
        // The rules a Node object's own fields follow (the same checks vswitchctl makes).
        let name = spec.name.as_str();
        k8s::check_node_name(name)
            .map_err(|e| (NAME, Refusal::refused(format!("bad node name: {e}"))))?;
        if name == self.config.node_name {
            return Err((
                NAME,
                Refusal::refused(format!(
                    "{name} is this node (vswitchd --node-name); its Pod network is --pod-cidr"
                )),
            ));
        }
        let cidr = Cidr4::parse(&spec.pod_cidr)
            .map_err(|e| (CIDR, Refusal::refused(format!("bad Pod CIDR: {e}"))))?;
        let node_ip = k8s::parse_node_ip(&spec.node_ip)
            .map_err(|e| (IP, Refusal::refused(format!("bad node IP: {e}"))))?;
        if let Some(net) = &self.net
            && net.cidr.overlaps(&cidr)
        {
            return Err((
                CIDR,
                Refusal::conflict(format!("Pod CIDR {cidr} overlaps this node's {}", net.cidr)),
            ));
        }
        if self.tunnel_local() == Some(node_ip) {
            return Err((
                IP,
                Refusal::conflict(format!("{node_ip} is this node's own address (--node-ip)")),
            ));
        }
        for other in self.nodes.values().filter(|n| n.name != name) {
            if Cidr4::parse(&other.pod_cidr).is_ok_and(|c| c.overlaps(&cidr)) {
                return Err((
                    CIDR,
                    Refusal::conflict(format!(
                        "Pod CIDR {cidr} overlaps node {}'s {}",
                        other.name, other.pod_cidr
                    )),
                ));
            }
        }
        Ok(Checked { cidr, node_ip })
    }

    fn remote_net(rec: &NodeRecord) -> Result<RemoteNet, String> {
        Ok(RemoteNet {
            cidr: Cidr4::parse(&rec.pod_cidr)?,
            node_ip: rec
                .node_ip
                .parse()
                .map_err(|_| format!("bad node IP {:?}", rec.node_ip))?,
        })
    }

    /// A remote node's rules, and the route to its Pods in the switch's namespace. Without
    /// a Pod network or a tunnel there is nothing to install (the node stays recorded).
    fn install_remote(&mut self, rec: &NodeRecord) -> Result<(), String> {
        let (Some(net), Some(tunnel)) = (self.net.clone(), self.tunnel) else {
            return Ok(());
        };
        let remote = Self::remote_net(rec)?;
        let specs = pipeline::specs(&pipeline::remote_lines(&net, tunnel, &remote))?;
        self.bridge
            .set_system_flows(pipeline::remote_cookie(rec.id), &specs, now_ms())
            .map_err(|e| e.to_string())?;
        let gateway = self
            .ports
            .get(&net.gateway_port)
            .map(|p| p.record.ifname.clone())
            .ok_or("the gateway port is missing")?;
        let route = || -> Result<(), crate::sys::netlink::NetlinkError> {
            let mut nl = Rtnl::open()?;
            if let Some(index) = nl.link_index(&gateway)? {
                nl.replace_route_onlink(
                    IpAddr::V4(remote.cidr.net),
                    remote.cidr.prefix,
                    IpAddr::V4(remote.cidr.gateway()),
                    index,
                )?;
            }
            Ok(())
        };
        route().map_err(|e| format!("route to {} via {gateway}: {e}", remote.cidr))
    }

    fn uninstall_remote(&mut self, rec: &NodeRecord) {
        if let Err(e) = self
            .bridge
            .set_system_flows(pipeline::remote_cookie(rec.id), &[], now_ms())
        {
            tracing::warn!(node = %rec.name, error = %e, "cannot remove a node's flows");
        }
        let Some(gateway) = self
            .net
            .as_ref()
            .and_then(|n| self.ports.get(&n.gateway_port))
            .map(|p| p.record.ifname.clone())
        else {
            return;
        };
        if let Ok(c) = Cidr4::parse(&rec.pod_cidr) {
            let gone = Rtnl::open().and_then(|mut nl| match nl.link_index(&gateway)? {
                Some(index) => {
                    nl.del_route(IpAddr::V4(c.net), c.prefix, IpAddr::V4(c.gateway()), index)
                }
                None => Ok(()),
            });
            if let Err(e) = gone {
                tracing::warn!(node = %rec.name, error = %e, "cannot remove the route to a node");
            }
        }
    }
}

impl Switch {
    /// `apply`: each object in order, one outcome each; kinds the switch does not handle
    /// are reported and skipped.
    pub fn apply(&mut self, objects: &[rpc::ManifestObject]) -> rpc::ApplyResult {
        self.in_one_save(objects, false)
    }

    /// `delete`: each object removed, or reported as not found.
    pub fn delete(&mut self, objects: &[rpc::ManifestObject]) -> rpc::ApplyResult {
        self.in_one_save(objects, true)
    }

    /// Inside [`Switch::in_one_save`]: the change is saved with the others at the end (the
    /// caller then saves nothing).
    fn defer_node_save(&mut self) -> bool {
        match &mut self.node_batch {
            Some(changed) => {
                *changed = true;
                true
            }
            None => false,
        }
    }

    /// A manifest's objects, saved once at the end rather than once per object (a whole
    /// cluster's Nodes would otherwise write the state N times over, O(N²) bytes with an
    /// fsync each, under the switch's lock). Nothing is acknowledged before that save;
    /// when it fails, every node goes back to what it was, its rules and routes too, and
    /// each object about a node that changed is reported as not applied.
    fn in_one_save(&mut self, objects: &[rpc::ManifestObject], delete: bool) -> rpc::ApplyResult {
        let before = self.nodes.clone();
        self.node_batch = Some(false);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            objects
                .iter()
                .map(|o| self.apply_one(o, delete))
                .collect::<Vec<_>>()
        }));
        let changed = self.node_batch.take() == Some(true);
        let mut results = match run {
            Ok(results) => results,
            Err(panic) => {
                // What was done stays done: save it, as a call per object would have.
                if changed && let Err(e) = self.store.save(&self.state()) {
                    tracing::error!(error = %e, "the nodes applied before a panic are not saved");
                }
                std::panic::resume_unwind(panic)
            }
        };
        if changed && let Err(e) = self.store.save(&self.state()) {
            let why = Refusal::from(e).message;
            let touched: Vec<String> = self
                .nodes
                .iter()
                .filter(|(name, rec)| before.get(*name) != Some(*rec))
                .chain(
                    before
                        .iter()
                        .filter(|(name, _)| !self.nodes.contains_key(*name)),
                )
                .map(|(name, _)| name.clone())
                .collect();
            self.restore_nodes(before);
            // A save that failed after its rename left the manifest in the file: write
            // the state as it is again now.
            if let Err(e) = self.store.save(&self.state()) {
                tracing::error!(error = %e, "the state could not be saved after undoing a manifest");
            }
            for r in &mut results {
                if r.outcome != "skipped" && touched.contains(&r.name) {
                    let had = r
                        .message
                        .take()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default();
                    r.message = Some(format!(
                        "not applied: the state could not be saved: {why}{had}"
                    ));
                    r.outcome = "error".into();
                }
            }
        }
        rpc::ApplyResult { results }
    }

    /// Put the remote nodes back as `before`, rules and routes included.
    fn restore_nodes(&mut self, before: BTreeMap<String, NodeRecord>) {
        let after = std::mem::take(&mut self.nodes);
        for (name, rec) in &after {
            if before.get(name) != Some(rec) {
                self.uninstall_remote(rec);
            }
        }
        self.nodes = before;
        let back: Vec<NodeRecord> = self
            .nodes
            .iter()
            .filter(|(name, rec)| after.get(*name) != Some(*rec))
            .map(|(_, rec)| rec.clone())
            .collect();
        for rec in back {
            if let Err(e) = self.install_remote(&rec) {
                tracing::error!(node = %rec.name, error = %e, "remote node not installed again");
            }
        }
    }

    fn apply_one(&mut self, o: &rpc::ManifestObject, delete: bool) -> rpc::ApplyOutcome {
        let (kind, name) = k8s::object_kind_name(&o.object);
        let out = |outcome: &str, message: Option<String>| rpc::ApplyOutcome {
            source: o.source.clone(),
            doc: o.doc,
            kind: kind.clone(),
            group: String::new(),
            namespace: None,
            name: name.clone(),
            outcome: outcome.into(),
            message,
        };
        if kind != "Node" {
            return out(
                "skipped",
                Some(format!("kind {kind} is not handled by this switch yet")),
            );
        }
        if delete {
            if name.is_empty() {
                return out("error", Some("metadata.name: missing".into()));
            }
            if name == self.config.node_name {
                return out(
                    "error",
                    Some(format!(
                        "metadata.name: {name} is this node; its Pod network goes with \
                         vswitchd --pod-cidr"
                    )),
                );
            }
            if !self.nodes.contains_key(&name) {
                return out("not found", None);
            }
            return match self.del_node(&name) {
                Ok(()) => out("deleted", None),
                Err(r) => out("error", Some(r.message)),
            };
        }
        let spec = match k8s::node_spec(&o.object) {
            Ok(s) => s,
            Err(e) => return out("error", Some(e.to_string())),
        };
        if spec.name == self.config.node_name {
            // This node: its Pod network comes from its own flags; a manifest that agrees
            // changes nothing.
            let theirs = Cidr4::parse(&spec.pod_cidr);
            return match &self.net {
                Some(net) if theirs.as_ref() == Ok(&net.cidr) => out("unchanged", None),
                Some(net) => out(
                    "error",
                    Some(format!(
                        "spec.podCIDR: {} differs from this node's Pod CIDR {} (vswitchd \
                         --pod-cidr)",
                        spec.pod_cidr, net.cidr
                    )),
                ),
                None => out(
                    "error",
                    Some(format!(
                        "spec.podCIDR: this node has no Pod network yet; start vswitchd with \
                         --pod-cidr {}",
                        spec.pod_cidr
                    )),
                ),
            };
        }
        if let Err((field, r)) = self.check_node(&spec) {
            return out("error", Some(format!("{field}: {}", r.message)));
        }
        match self.upsert_node(&spec, FROM_MANIFEST) {
            Ok(change) => out(change.as_str(), None),
            Err(r) => out("error", Some(r.message)),
        }
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

/// `0a:58:0a:f4:01:01` as bytes (the switch's own text: all zero if it is not a MAC).
fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_to_bytes() {
        assert_eq!(
            mac_bytes("0a:58:0a:f4:01:01"),
            [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]
        );
    }
}
