//! The switch as a running service: the bridge, its ports and workers, and the persisted
//! state. Every method here implements one control-protocol call; each change is made
//! durable before it is acknowledged, and undone if it cannot be.

pub mod cni;
mod devices;
pub mod ipam;
pub mod logging;
pub mod nodes;
pub mod pipeline;
pub mod worker;

use crate::dp::action::{DisplayActions, DropReason};
use crate::dp::{CacheDump, DpStats};
use crate::flow::Malformed;
use crate::ofproto::trace::packet_match;
use crate::ofproto::{Bridge, Origin, PortDesc, now_ms, table_name};
use crate::port::{MemoryPort, PortIo, PortStats, WorkerPort};
use crate::store::{NetworkRecord, PodRecord, PortRecord, STATE_VERSION, State, Store, StoreError};
use crate::sys::tap::Offloads;
use crossbeam_channel::Receiver;
use devices::Device;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vswitch_proto::flowmod::{FlowSpec, Usage};
use vswitch_proto::group::GroupSpec;
use vswitch_proto::rpc::{self, code};
use vswitch_proto::text::{self, PortNames};
use worker::{Msg, WorkerHandle};

/// How long the control thread waits for a worker to answer.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

/// A refused call: a JSON-RPC error code and a message a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl Refusal {
    pub fn refused(message: impl Into<String>) -> Refusal {
        Refusal {
            code: code::REFUSED,
            message: message.into(),
            data: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Refusal {
        Refusal {
            code: code::NOT_FOUND,
            message: message.into(),
            data: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> Refusal {
        Refusal {
            code: code::CONFLICT,
            message: message.into(),
            data: None,
        }
    }

    fn with_index(mut self, index: usize) -> Refusal {
        self.data = Some(json!({ "index": index }));
        self
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        Refusal {
            code: code::INTERNAL_ERROR,
            message: format!("{e} ({}); the change was not made", source_chain(&e)),
            data: None,
        }
    }
}

/// The causes of an error, joined, for one-line messages.
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Settings of a running switch.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub workers: usize,
    /// Name of the bridge.
    pub bridge: String,
    /// How long workers poll before sleeping after traffic.
    pub busy_poll: std::time::Duration,
    /// The node's Pod CIDR (`--pod-cidr`); without it (and none persisted) the switch
    /// attaches no Pods and installs no pipeline.
    pub pod_cidr: Option<String>,
    /// The MTU of the gateway and of every Pod's interface (`--pod-mtu`); by default the
    /// underlay's less the VXLAN overhead when there is a tunnel, else 1500.
    pub pod_mtu: Option<u32>,
    /// The gateway port's name (and its interface's, in the switch's namespace).
    pub gateway: String,
    /// The node's underlay address (`--node-ip`): the tunnel's local end. Without it the
    /// tunnel is as saved, if there is one.
    pub node_ip: Option<std::net::Ipv4Addr>,
    /// Remove the saved tunnel and run without one (`--no-tunnel`).
    pub no_tunnel: bool,
    /// This node's name (`--node-name`, default the host name): its own Node object.
    pub node_name: String,
    /// The Pod network's VXLAN network identifier.
    pub vni: u32,
    /// The VXLAN UDP port.
    pub vxlan_port: u16,
    /// Steer the receive work of the switch's TAPs to the CPUs the switch may run on
    /// (RPS; see [`crate::sys::rps`]); `--no-rps` leaves them as the kernel made them.
    pub rps: bool,
}

impl Config {
    /// The defaults `vswitchd` starts with, over `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: state_dir.into(),
            workers: 1,
            bridge: "br0".into(),
            busy_poll: worker::DEFAULT_BUSY_POLL,
            pod_cidr: None,
            pod_mtu: None,
            gateway: DEFAULT_GATEWAY.into(),
            node_ip: None,
            no_tunnel: false,
            node_name: String::new(),
            vni: nodes::DEFAULT_VNI,
            vxlan_port: crate::port::vxlan::DEFAULT_PORT,
            rps: true,
        }
    }
}

/// The gateway port's name unless `--gateway-name` says otherwise.
pub const DEFAULT_GATEWAY: &str = "vsw-gw0";
/// The Pods' MTU unless `--pod-mtu` says otherwise.
pub const DEFAULT_POD_MTU: u32 = 1500;

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the state file {path} has a {what} that no longer parses (line {index}): {message}")]
    BadLine {
        path: PathBuf,
        what: &'static str,
        index: usize,
        message: String,
    },
    #[error("cannot start worker threads")]
    Workers(#[source] std::io::Error),
    #[error("the Pod network cannot be set up: {0}")]
    Network(String),
}

struct Port {
    record: PortRecord,
    stats: Arc<PortStats>,
    device: Device,
}

impl Port {
    fn info(&self) -> rpc::PortInfo {
        let r = &self.record;
        rpc::PortInfo {
            no: r.no,
            name: r.name.clone(),
            port_type: r.port_type,
            netns: r.netns.clone(),
            ifname: (r.port_type != rpc::PortType::Memory).then(|| r.ifname.clone()),
            mac: r.mac.clone(),
            mtu: r.mtu,
            ip: r.ip.clone(),
            gateway: r.gateway.clone(),
            state: self.device.state(),
            offloads: self.device.offloads().names(),
        }
    }
}

/// Port names for flow text, from the switch's port table.
struct Names<'a>(&'a BTreeMap<u32, Port>);

impl PortNames for Names<'_> {
    fn port_no(&self, name: &str) -> Option<u32> {
        self.0
            .values()
            .find(|p| p.record.name == name)
            .map(|p| p.record.no)
    }
    fn port_name(&self, no: u32) -> Option<String> {
        self.0.get(&no).map(|p| p.record.name.clone())
    }
}

/// The running switch.
pub struct Switch {
    config: Config,
    bridge: Bridge,
    store: Store,
    ports: BTreeMap<u32, Port>,
    workers: Vec<WorkerHandle>,
    learn_rx: Receiver<Arc<FlowSpec>>,
    /// The node's Pod network, when it has one.
    net: Option<pipeline::NodeNet>,
    /// The built-in address allocator over the Pod CIDR.
    alloc: Option<ipam::Allocator>,
    /// Pods attached through CNI, by (container ID, interface).
    pods: BTreeMap<cni::PodKey, PodRecord>,
    cni_locks: Arc<cni::ContainerLocks>,
    /// The port number given last.
    last_port_no: u32,
    /// The Pods' MTU, as resolved at start.
    pod_mtu: u32,
    /// The tunnel to the other nodes, when there is one.
    tunnel: Option<pipeline::TunnelNet>,
    /// Remote nodes, by name.
    nodes: BTreeMap<String, crate::store::NodeRecord>,
    /// The largest inner packet the tunnel carries whole, when there is one.
    tunnel_mtu: Option<u32>,
    /// The RPS mask of the switch's TAPs, worked out at the first TAP ("" when unknown).
    rps_mask: Option<String>,
    /// Whether a failure to set RPS was logged at warn already.
    rps_warned: bool,
    /// While a manifest is applied: whether a node changed (saved once at its end).
    node_batch: Option<bool>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("bridge", &self.config.bridge)
            .field("ports", &self.ports.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Switch {
    /// Load the persisted state, start the workers, bring every port back and reinstall
    /// groups and flows.
    pub fn start(config: Config) -> Result<Switch, StartError> {
        let store = Store::open(&config.state_dir)?;
        let state = store.load()?;
        let bridge = Bridge::new(&config.bridge);
        let (learn_tx, learn_rx) = crossbeam_channel::unbounded();
        let workers = (0..config.workers.max(1))
            .map(|id| {
                worker::spawn(
                    id,
                    bridge.pipeline_handle(),
                    bridge.mac_table(),
                    learn_tx.clone(),
                    config.busy_poll,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Workers)?;
        let mut sw = Switch {
            config,
            bridge,
            store,
            ports: BTreeMap::new(),
            workers,
            learn_rx,
            net: None,
            alloc: None,
            pods: BTreeMap::new(),
            cni_locks: Arc::default(),
            last_port_no: 0,
            pod_mtu: DEFAULT_POD_MTU,
            tunnel: None,
            tunnel_mtu: None,
            rps_mask: None,
            rps_warned: false,
            node_batch: None,
            nodes: state
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.clone()))
                .collect(),
        };
        // Tables first, ports after: a port's first packet meets the whole pipeline.
        // Flow and group lines are saved with port numbers, so they need no ports to parse.
        let path = sw.store.path();
        let bad = |what, index, message: String| StartError::BadLine {
            path: path.clone(),
            what,
            index,
            message,
        };
        for (i, line) in state.groups.iter().enumerate() {
            let g = text::parse_group(line, &text::NoPortNames)
                .map_err(|e| bad("group", i + 1, e.to_string()))?;
            sw.bridge
                .add_group(&g)
                .map_err(|e| bad("group", i + 1, e.to_string()))?;
        }
        let mut specs = Vec::with_capacity(state.flows.len());
        for (i, line) in state.flows.iter().enumerate() {
            specs.push(
                text::parse_flow(line, Usage::Add, &text::NoPortNames)
                    .map_err(|e| bad("flow", i + 1, e.to_string()))?,
            );
        }
        sw.bridge
            .add_flows(&specs, now_ms())
            .map_err(|e| bad("flow", 0, e.to_string()))?;
        let tunnel_rec = state
            .ports
            .iter()
            .find(|r| r.port_type == rpc::PortType::Vxlan)
            .cloned();
        let tunnel = sw.plan_tunnel(tunnel_rec.as_ref())?;
        let stale_gateways = sw.plan_network(state.network.as_ref(), state.pods, &state.ports)?;
        for rec in state.ports {
            if rec.port_type == rpc::PortType::Vxlan {
                continue;
            }
            let device = Device::restore(&rec, sw.workers.len());
            match &device {
                Device::Missing(why) => {
                    tracing::warn!(port = %rec.name, reason = %why, "port not re-attached")
                }
                _ => tracing::info!(port = %rec.name, no = rec.no, "port re-attached"),
            }
            sw.insert_port(rec, device);
        }
        sw.publish_ports();
        sw.last_port_no = sw.ports.keys().max().copied().unwrap_or(0);
        // The tunnel before the gateway, which may save the state: that must hold
        // everything restored above, the tunnel's port (and its number) too.
        sw.open_tunnel(tunnel, tunnel_rec)?;
        sw.ensure_gateway(stale_gateways)?;
        sw.install_remotes();
        tracing::info!(
            ports = sw.ports.len(),
            pods = sw.pods.len(),
            flows = specs.len(),
            groups = state.groups.len(),
            workers = sw.workers.len(),
            "state restored"
        );
        Ok(sw)
    }

    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    fn names(&self) -> Names<'_> {
        Names(&self.ports)
    }

    /// Register a port and hand its queues to the workers.
    fn insert_port(&mut self, rec: PortRecord, device: Device) {
        let stats = PortStats::new(self.workers.len());
        let offloads = device.offloads();
        let no = rec.no;
        let device = match device {
            Device::Tunnel { config, ios } => {
                for (w, io) in ios.into_iter().enumerate() {
                    if let Some(h) = self.workers.get(w) {
                        h.send(Msg::AddPort(WorkerPort {
                            no,
                            io: PortIo::Vxlan(io),
                            stats: stats.clone(),
                            offloads: true,
                        }));
                    }
                }
                Device::Tunnel {
                    config,
                    ios: Vec::new(),
                }
            }
            other => other,
        };
        match &device {
            Device::Tap(tap) => {
                if self.config.rps {
                    self.steer(&rec, tap.queues());
                }
                for (w, fd) in device.worker_fds().into_iter().enumerate() {
                    if let Some(h) = self.workers.get(w) {
                        h.send(Msg::AddPort(WorkerPort {
                            no,
                            io: PortIo::Tap(fd),
                            stats: stats.clone(),
                            offloads: offloads != Offloads::default(),
                        }));
                    }
                }
            }
            Device::Memory(m) => {
                if let Some(h) = self.workers.first() {
                    h.send(Msg::AddPort(WorkerPort {
                        no,
                        io: PortIo::Memory(m.clone()),
                        stats: stats.clone(),
                        offloads: false,
                    }));
                }
            }
            Device::Missing(_) | Device::Tunnel { .. } => {}
        }
        self.ports.insert(
            no,
            Port {
                record: rec,
                stats,
                device,
            },
        );
    }

    /// Steer a TAP's receive work (RPS) to the CPUs the switch may run on. Only speed is
    /// at stake: a failure is logged, once per start, and the port works on.
    fn steer(&mut self, rec: &PortRecord, queues: usize) {
        if self.rps_mask.is_none() {
            self.rps_mask = Some(match crate::sys::rps::allowed_cpus() {
                Ok(cpus) => crate::sys::rps::cpu_mask(&cpus),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the CPUs the switch may use; receive steering (RPS) stays off");
                    String::new()
                }
            });
        }
        let Some(mask) = self.rps_mask.as_deref().filter(|m| !m.is_empty()) else {
            return;
        };
        let netns = rec.netns.as_deref().map(std::path::Path::new);
        match crate::sys::rps::steer(netns, &rec.ifname, queues, mask) {
            Ok(()) => tracing::debug!(port = %rec.name, mask, "receive steering (RPS) set"),
            Err(e) if !self.rps_warned => {
                self.rps_warned = true;
                tracing::warn!(port = %rec.name, error = %e, "cannot set receive steering (RPS): the port works without it, a little slower (it needs CAP_SYS_ADMIN to make a sysfs in the port's namespace; vswitchd --no-rps stops trying; further failures are logged at debug)");
            }
            Err(e) => {
                tracing::debug!(port = %rec.name, error = %e, "cannot set receive steering (RPS)")
            }
        }
    }

    fn publish_ports(&mut self) {
        let descs = self
            .ports
            .values()
            .map(|p| PortDesc {
                no: p.record.no,
                name: p.record.name.clone(),
                // A Pod gets what the pipeline sends it, never a flood.
                no_flood: self.pods.values().any(|pod| pod.port == p.record.name)
                    || p.record.port_type == rpc::PortType::Vxlan,
            })
            .collect();
        self.bridge.set_ports(descs);
    }

    fn state(&self) -> State {
        let names = text::NoPortNames;
        State {
            version: STATE_VERSION,
            network: self.net.as_ref().map(|n| NetworkRecord {
                pod_cidr: n.cidr.to_string(),
                gateway: self
                    .ports
                    .get(&n.gateway_port)
                    .map_or_else(|| self.config.gateway.clone(), |p| p.record.name.clone()),
                mtu: n.mtu,
            }),
            pods: self.pods.values().cloned().collect(),
            nodes: self.nodes.values().cloned().collect(),
            ports: self.ports.values().map(|p| p.record.clone()).collect(),
            groups: self
                .bridge
                .pipeline()
                .groups()
                .map(|g| text::display_group(&g.spec, &names).to_string())
                .collect(),
            flows: self
                .bridge
                .pipeline()
                .rules()
                .iter()
                .filter(|r| r.origin == Origin::User)
                .map(|r| text::display_flow(&r.to_spec(), &names, None).to_string())
                .collect(),
        }
    }

    fn save(&self) -> Result<(), Refusal> {
        Ok(self.store.save(&self.state())?)
    }

    /// Apply a change to the tables and make it durable, or undo it.
    fn transact<T>(
        &mut self,
        change: impl FnOnce(&mut Bridge) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let before = self.bridge.snapshot();
        let out = change(&mut self.bridge)?;
        if let Err(e) = self.save() {
            self.bridge.restore(before);
            return Err(e);
        }
        Ok(out)
    }

    // ---- ports --------------------------------------------------------------------

    pub fn add_port(&mut self, p: rpc::AddPortParams) -> Result<rpc::PortInfo, Refusal> {
        self.add_port_with(p, false)
    }

    /// `add-port`; with `adopt`, a TAP of that name already there is taken over (the
    /// switch's own gateway, left by a run that stopped before saving it).
    fn add_port_with(
        &mut self,
        p: rpc::AddPortParams,
        adopt: bool,
    ) -> Result<rpc::PortInfo, Refusal> {
        if self.ports.values().any(|q| q.record.name == p.name) {
            return Err(Refusal::conflict(format!(
                "port name {:?} is already taken; delete it first (del-port {})",
                p.name, p.name
            )));
        }
        let no = self
            .free_port_no()
            .ok_or_else(|| Refusal::refused("no free port number"))?;
        let rec = devices::record(no, &p)?;
        if rec.port_type != rpc::PortType::Memory
            && self.ports.values().any(|q| {
                q.record.port_type != rpc::PortType::Memory
                    && q.record.ifname == rec.ifname
                    && q.record.netns == rec.netns
            })
        {
            return Err(Refusal::conflict(format!(
                "interface {:?} in {} is already a port of this switch",
                rec.ifname,
                rec.netns.as_deref().unwrap_or("the host namespace")
            )));
        }
        let device = if adopt {
            match Device::restore(&rec, self.workers.len()) {
                Device::Missing(why) => return Err(Refusal::refused(why)),
                d => d,
            }
        } else {
            Device::create(&rec, self.workers.len())?
        };
        let mut state = self.state();
        state.ports.push(rec.clone());
        if let Err(e) = self.store.save(&state) {
            device.destroy();
            return Err(e.into());
        }
        tracing::info!(port = %rec.name, no, kind = %rec.port_type, netns = ?rec.netns, "port added");
        self.insert_port(rec, device);
        self.publish_ports();
        Ok(self.ports[&no].info())
    }

    /// The next free port number after the last one given, wrapping: a number freed a
    /// moment ago is not given again at once, so a flow left naming a removed port does
    /// not apply to the next Pod (Open vSwitch avoids reusing ofports the same way).
    fn free_port_no(&mut self) -> Option<u32> {
        let max = vswitch_proto::action::port::MAX;
        let start = self.last_port_no % max;
        let no = (1..=max)
            .map(|i| (start + i - 1) % max + 1)
            .find(|n| !self.ports.contains_key(n))?;
        self.last_port_no = no;
        Some(no)
    }

    pub fn del_port(&mut self, name: &str) -> Result<(), Refusal> {
        let no = self
            .ports
            .values()
            .find(|p| p.record.name == name)
            .map(|p| p.record.no)
            .ok_or_else(|| Refusal::not_found(format!("no port named {name:?}")))?;
        if let Some(p) = self.pods.values().find(|p| p.port == name) {
            return Err(Refusal::refused(format!(
                "port {name} is the interface of container {} ({}); the runtime removes it \
                 with a CNI DEL",
                p.container_id, p.netns
            )));
        }
        if self.tunnel.is_some_and(|t| t.port == no) {
            return Err(Refusal::refused(format!(
                "port {name} is the node's tunnel to the other nodes; it goes with --node-ip"
            )));
        }
        if self.net.as_ref().is_some_and(|n| n.gateway_port == no) {
            return Err(Refusal::refused(format!(
                "port {name} is the node's gateway to its Pods; it goes with --pod-cidr"
            )));
        }
        let mut state = self.state();
        state.ports.retain(|r| r.no != no);
        self.store.save(&state)?;
        if let Some(d) = self.remove_port(no) {
            d.destroy();
        }
        tracing::info!(port = %name, no, "port deleted");
        Ok(())
    }

    pub fn list_ports(&self) -> Vec<rpc::PortInfo> {
        self.ports.values().map(Port::info).collect()
    }

    pub fn dump_ports(&self) -> Vec<rpc::PortStats> {
        self.ports
            .values()
            .map(|p| {
                let t = p.stats.totals();
                rpc::PortStats {
                    no: p.record.no,
                    name: p.record.name.clone(),
                    rx_packets: t.rx_packets,
                    rx_bytes: t.rx_bytes,
                    rx_dropped: t.rx_dropped,
                    rx_errors: t.rx_errors,
                    tx_packets: t.tx_packets,
                    tx_bytes: t.tx_bytes,
                    tx_dropped: t.tx_dropped,
                    tx_errors: t.tx_errors,
                }
            })
            .collect()
    }

    /// The in-memory port called `name`, to inject frames and collect outputs.
    pub fn memory_port(&self, name: &str) -> Option<Arc<MemoryPort>> {
        self.ports
            .values()
            .find(|p| p.record.name == name)
            .and_then(|p| match &p.device {
                Device::Memory(m) => Some(m.clone()),
                _ => None,
            })
    }

    /// Wake the worker that serves memory ports (after injecting frames).
    pub fn poke_memory_ports(&self) {
        if let Some(w) = self.workers.first() {
            w.send(Msg::Poke);
        }
    }

    // ---- flows and groups ---------------------------------------------------------

    fn parse_flows(&self, lines: &[String], usage: Usage) -> Result<Vec<FlowSpec>, Refusal> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let spec = text::parse_flow(l, usage, &self.names()).map_err(|e| {
                    Refusal::refused(format!("flow {}, {}", i + 1, e.render(l))).with_index(i)
                })?;
                if spec.cookie_mask == 0 && pipeline::reserved_cookie(spec.cookie) {
                    return Err(Refusal::refused(format!(
                        "flow {}: cookie {:#x} is in the ranges the switch keeps for its own \
                         flows (0x01.. and 0x02..); use another cookie",
                        i + 1,
                        spec.cookie
                    ))
                    .with_index(i));
                }
                Ok(spec)
            })
            .collect()
    }

    pub fn add_flows(&mut self, p: rpc::FlowsParams) -> Result<rpc::Count, Refusal> {
        let specs = self.parse_flows(&p.flows, Usage::Add)?;
        let now = now_ms();
        self.transact(|b| {
            b.add_flows(&specs, now)
                .map_err(|e| Refusal::refused(e.to_string()))
        })?;
        Ok(rpc::Count {
            count: specs.len() as u64,
        })
    }

    pub fn mod_flows(&mut self, p: rpc::FlowsParams) -> Result<rpc::Count, Refusal> {
        let specs = self.parse_flows(&p.flows, Usage::Modify)?;
        let now = now_ms();
        let n = self.transact(|b| {
            let mut n = 0;
            for s in &specs {
                n += b
                    .modify_flows(s, p.strict, now)
                    .map_err(|e| Refusal::refused(e.to_string()))?;
            }
            Ok(n)
        })?;
        Ok(rpc::Count { count: n as u64 })
    }

    fn criteria(&self, c: &Option<String>) -> Result<FlowSpec, Refusal> {
        match c.as_deref().map(str::trim) {
            None | Some("") => Ok(FlowSpec::default()),
            Some(line) => text::parse_flow(line, Usage::Select, &self.names())
                .map_err(|e| Refusal::refused(e.render(line))),
        }
    }

    pub fn del_flows(&mut self, p: rpc::SelectFlowsParams) -> Result<rpc::Count, Refusal> {
        let crit = self.criteria(&p.criteria)?;
        let n = self.transact(|b| Ok(b.delete_flows(&crit, p.strict).len()))?;
        Ok(rpc::Count { count: n as u64 })
    }

    pub fn dump_flows(&self, p: rpc::SelectFlowsParams) -> Result<Vec<rpc::DumpedFlow>, Refusal> {
        let crit = self.criteria(&p.criteria)?;
        let names = self.names();
        let now = now_ms();
        Ok(self
            .bridge
            .dump_flows(Some(&crit), now)
            .into_iter()
            .filter(|(r, _)| {
                !p.strict || (r.priority == crit.priority && r.matching == crit.matching)
            })
            .map(|(r, st)| {
                let spec = r.to_spec();
                rpc::DumpedFlow {
                    table: r.table,
                    priority: r.priority,
                    cookie: format!("{:#x}", r.cookie),
                    duration_ms: st.duration_ms,
                    n_packets: st.n_packets,
                    n_bytes: st.n_bytes,
                    idle_timeout: r.idle_timeout,
                    hard_timeout: r.hard_timeout,
                    matching: text::display_match(&r.matching, None, &names).to_string(),
                    actions: text::display_actions(&r.actions, &names).to_string(),
                    line: format!(" {}", text::display_flow(&spec, &names, Some(&st))),
                    owners: Vec::new(),
                }
            })
            .collect())
    }

    pub fn add_groups(&mut self, p: rpc::GroupsParams) -> Result<rpc::Count, Refusal> {
        self.set_groups(p, false)
    }

    /// `mod-group`: replace existing groups' type and buckets (the flows using them stay).
    pub fn mod_groups(&mut self, p: rpc::GroupsParams) -> Result<rpc::Count, Refusal> {
        self.set_groups(p, true)
    }

    fn set_groups(&mut self, p: rpc::GroupsParams, modify: bool) -> Result<rpc::Count, Refusal> {
        let groups: Vec<GroupSpec> = p
            .groups
            .iter()
            .enumerate()
            .map(|(i, l)| {
                text::parse_group(l, &self.names()).map_err(|e| {
                    Refusal::refused(format!("group {}, {}", i + 1, e.render(l))).with_index(i)
                })
            })
            .collect::<Result<_, _>>()?;
        let mut ids = HashSet::new();
        for g in &groups {
            if !ids.insert(g.group_id) {
                return Err(Refusal::conflict(format!(
                    "group {} appears twice in this request",
                    g.group_id
                )));
            }
        }
        self.transact(|b| {
            for g in &groups {
                if modify {
                    b.modify_group(g)
                        .map_err(|e| Refusal::not_found(e.to_string()))?;
                } else {
                    b.add_group(g)
                        .map_err(|e| Refusal::conflict(e.to_string()))?;
                }
            }
            Ok(())
        })?;
        Ok(rpc::Count {
            count: groups.len() as u64,
        })
    }

    pub fn del_groups(&mut self, p: rpc::DelGroupsParams) -> Result<rpc::Count, Refusal> {
        if let Some(id) = p.group_id
            && self.bridge.pipeline().group(id).is_none()
        {
            return Err(Refusal::not_found(format!("group {id} does not exist")));
        }
        let gone = self.transact(|b| Ok(b.delete_groups(p.group_id)))?;
        Ok(rpc::Count {
            count: gone.len() as u64,
        })
    }

    pub fn dump_groups(&self) -> Vec<rpc::DumpedGroup> {
        let names = self.names();
        self.bridge
            .pipeline()
            .groups()
            .map(|g| rpc::DumpedGroup {
                group_id: g.spec.group_id,
                packets: g.stats.packets(),
                bytes: g.stats.bytes(),
                line: format!(" {}", text::display_group(&g.spec, &names)),
                buckets: Vec::new(),
                owners: Vec::new(),
            })
            .collect()
    }

    // ---- inspection ---------------------------------------------------------------

    pub fn trace(&self, p: rpc::TraceParams) -> Result<rpc::TraceResult, Refusal> {
        let names = self.names();
        let m =
            text::parse_match(&p.flow, &names).map_err(|e| Refusal::refused(e.render(&p.flow)))?;
        let t = self.bridge.trace(&m.flow, now_ms());
        let tables = t
            .steps
            .iter()
            .filter_map(|s| match s {
                crate::ofproto::trace::TraceStep::Table { depth, table, rule } => {
                    Some(rpc::TracedTable {
                        table: *table,
                        name: table_name(*table).map(str::to_string),
                        rule: rule.as_ref().map(|r| {
                            let spec = FlowSpec {
                                table: (*table != 0).then_some(*table),
                                priority: r.priority,
                                cookie: r.cookie,
                                matching: r.matching,
                                actions: Some(r.actions.clone()),
                                ..FlowSpec::default()
                            };
                            text::display_flow(&spec, &names, None).to_string()
                        }),
                        depth: *depth,
                    })
                }
                _ => None,
            })
            .collect();
        Ok(rpc::TraceResult {
            tables,
            megaflow: text::display_match(&t.megaflow, None, &names).to_string(),
            actions: t.datapath_actions(),
            text: t.display(&names).to_string(),
        })
    }

    fn worker_answers<T>(
        &self,
        make: impl Fn(crossbeam_channel::Sender<T>) -> Msg,
    ) -> Vec<Option<T>> {
        self.workers
            .iter()
            .map(|w| w.ask(&make, WORKER_TIMEOUT))
            .collect()
    }

    pub fn dump_cache(&self) -> rpc::CacheResult {
        let names = self.names();
        let now = now_ms();
        let dumps: Vec<Option<CacheDump>> = self.worker_answers(Msg::DumpCache);
        rpc::CacheResult {
            workers: dumps
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    let d = d.unwrap_or(CacheDump {
                        emc: Vec::new(),
                        megaflows: Vec::new(),
                    });
                    rpc::WorkerCache {
                        worker: i as u32,
                        emc: d
                            .emc
                            .iter()
                            .map(|e| rpc::EmcEntry {
                                key: text::display_match(&packet_match(&e.key), None, &names)
                                    .to_string(),
                                hits: e.hits,
                                megaflow: text::display_match(&e.megaflow.matching(), None, &names)
                                    .to_string(),
                            })
                            .collect(),
                        megaflows: d
                            .megaflows
                            .iter()
                            .map(|m| rpc::MegaflowEntry {
                                matching: text::display_match(&m.matching(), None, &names)
                                    .to_string(),
                                actions: DisplayActions(&m.actions).to_string(),
                                packets: m.packets(),
                                bytes: m.bytes(),
                                idle_ms: now.saturating_sub(m.used_ms()),
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// Datapath counters summed over workers.
    pub fn datapath_stats(&self) -> BTreeMap<String, u64> {
        let mut sum = DpStats::default();
        for s in self.worker_answers(Msg::Stats).into_iter().flatten() {
            sum.packets += s.packets;
            sum.emc_hits += s.emc_hits;
            sum.megaflow_hits += s.megaflow_hits;
            sum.upcalls += s.upcalls;
            sum.cache_full += s.cache_full;
            sum.recirculations += s.recirculations;
            sum.flushes += s.flushes;
            for (a, b) in sum.malformed.iter_mut().zip(s.malformed) {
                *a += b;
            }
            for (a, b) in sum.dropped.iter_mut().zip(s.dropped) {
                *a += b;
            }
        }
        let mut m = BTreeMap::new();
        m.insert("packets".into(), sum.packets);
        m.insert("emc_hits".into(), sum.emc_hits);
        m.insert("megaflow_hits".into(), sum.megaflow_hits);
        m.insert("upcalls".into(), sum.upcalls);
        m.insert("cache_full".into(), sum.cache_full);
        m.insert("recirculations".into(), sum.recirculations);
        m.insert("flushes".into(), sum.flushes);
        for r in Malformed::ALL {
            m.insert(
                format!("malformed.{}", r.as_str()),
                sum.malformed[r as usize],
            );
        }
        for r in DropReason::ALL {
            m.insert(format!("dropped.{}", r.as_str()), sum.dropped[r as usize]);
        }
        m
    }

    pub fn show(&self) -> rpc::ShowResult {
        rpc::ShowResult {
            bridge: self.config.bridge.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            workers: self.workers.len() as u32,
            ports: self.list_ports(),
            n_flows: self.bridge.pipeline().n_rules() as u64,
            n_groups: self.bridge.pipeline().groups().count() as u64,
            datapath: self.datapath_stats(),
        }
    }

    // ---- upkeep -------------------------------------------------------------------

    /// Once a second: expire flows, age MAC entries, apply learned flows.
    pub fn housekeeping(&mut self) {
        let now = now_ms();
        while let Ok(spec) = self.learn_rx.try_recv() {
            if let Err(e) = self.bridge.learn(&spec, now) {
                tracing::warn!(error = %e, "learned flow refused");
            }
        }
        let expired = self.bridge.expire(now);
        if expired.iter().any(|r| r.origin == Origin::User)
            && let Err(e) = self.save()
        {
            tracing::error!(error = %e.message, "cannot persist expired flows");
        }
        self.bridge.mac_table().expire(now);
    }

    /// Stop the workers (ports stay as they are: persistent TAPs outlive the daemon).
    pub fn shutdown(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
