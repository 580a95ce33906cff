//! The switch as a running service. [`Switch`] is split by concern, each in its file:
//!
//! - `ports`: ports and their devices, handed to the workers;
//! - `flows`: the user's flows and groups;
//! - `podnet`: the node's Pod network (CIDR, gateway, addresses, the Pods' rules), and
//!   `cni`, the CNI calls on it;
//! - `overlay`: the tunnel and the remote nodes;
//! - `objects`: Kubernetes objects through the `k8s` registry (`apply`, `delete`, `get`);
//! - `conntrack`: the connection tracker's dump, flush, limits and timeouts;
//! - `txn`: the one way a change is made: done in memory, made durable, then published to
//!   the workers; undone if it cannot be made durable.
//!
//! Every public method here implements one control-protocol call.

pub mod api;
pub mod cni;
mod conntrack;
mod devices;
mod flows;
mod health;
mod hostnat;
pub mod ipam;
pub mod logging;
pub mod masq;
mod objects;
pub mod overlay;
mod podnet;
mod policy;
mod ports;
mod txn;
pub mod worker;

use crate::dp::DpStats;
use crate::dp::action::{DisplayActions, DropReason};
use crate::flow::Malformed;
use crate::k8s::Objects;
use crate::ofproto::trace::packet_match;
use crate::ofproto::{Bridge, now_ms, table_name};
use crate::store::{Store, StoreError};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use vswitch_proto::flowmod::FlowSpec;
use vswitch_proto::rpc::{self, code};
use vswitch_proto::text;
use worker::Msg;

pub use txn::Txn;

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
    /// The cluster's Service CIDR (`--service-cidr`), routed from the node to the switch.
    pub service_cidr: Option<vswitch_proto::net::Ipv4Cidr>,
    /// Egress masquerade of the Pods' traffic leaving the cluster (`--cluster-cidr`,
    /// `--masquerade-exclude`); `None`: the node's NAT is left alone (`Config::new`), or
    /// the switch's rules are removed (`--no-masquerade`: `masquerade_off`).
    pub masquerade: Option<masq::Masquerade>,
    /// `--no-masquerade`: remove the switch's masquerade rules.
    pub masquerade_off: bool,
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
    /// This node's zone (`--node-zone`), for Services' topology hints.
    pub node_zone: Option<String>,
    /// The Pod network's VXLAN network identifier.
    pub vni: u32,
    /// The VXLAN UDP port.
    pub vxlan_port: u16,
    /// Steer the receive work of the switch's TAPs to the CPUs the switch may run on
    /// (RPS; see [`crate::sys::rps`]); `--no-rps` leaves them as the kernel made them.
    pub rps: bool,
    /// Connections the tracker's table holds (`--ct-capacity`).
    pub ct_capacity: u32,
    /// The file the connection table lives in so that it outlives the process (beside
    /// the control socket: `ct::file_for`); `None`: in memory only.
    pub ct_file: Option<PathBuf>,
    /// NetworkPolicy's audit log (`--netpol-audit-log`): new connections a policy
    /// refused, one a line, with the Pod and the policies; `None`: not logged.
    pub netpol_audit_log: Option<PathBuf>,
    /// The switch watches a Kubernetes API server: the objects it had from it are read
    /// back at start from their cache ([`api::CACHE_FILE`]), until the first list.
    pub api_cache: bool,
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
            service_cidr: None,
            masquerade: None,
            masquerade_off: false,
            pod_mtu: None,
            gateway: DEFAULT_GATEWAY.into(),
            node_ip: None,
            no_tunnel: false,
            node_name: String::new(),
            node_zone: None,
            vni: overlay::DEFAULT_VNI,
            vxlan_port: crate::port::vxlan::DEFAULT_PORT,
            rps: true,
            ct_capacity: crate::ct::DEFAULT_CAPACITY,
            ct_file: None,
            netpol_audit_log: None,
            api_cache: false,
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
    #[error("cannot set up the connection table")]
    Conntrack(#[source] std::io::Error),
    #[error("the Pod network cannot be set up: {0}")]
    Network(String),
}

/// The running switch.
pub struct Switch {
    config: Config,
    bridge: Bridge,
    store: Store,
    ports: ports::Ports,
    podnet: podnet::PodNet,
    overlay: overlay::Overlay,
    objects: Objects,
    /// The routes each owner's objects asked for, as installed.
    routes: objects::Routes,
    /// Per owner (a Service), the translations its new connections may get, sorted.
    dnats: BTreeMap<u64, Vec<crate::k8s::Dnat>>,
    /// Objects to compile again before the change in hand ends (another object they
    /// are joined to changed): once each, however many of those changed.
    stale: std::collections::BTreeSet<crate::k8s::ObjectKey>,
    /// Of those, the ones whose rules change by Pods' changes alone, with those changes:
    /// patched (`k8s::netpol::patch_policy`), not compiled again.
    patches: BTreeMap<crate::k8s::ObjectKey, Vec<std::sync::Arc<crate::k8s::netpol::PodChange>>>,
    /// Per owner (a NetworkPolicy), what its last compile made, for those patches.
    plans: HashMap<u64, std::sync::Arc<crate::k8s::netpol::Plan>>,
    /// What the node's own stack does for Services, per owner: as wanted, and as
    /// installed (once the Pod network is up; `hostnat`).
    host: hostnat::HostState,
    /// Routes of objects restored at start, set once the start is published.
    pending_routes: Vec<(u64, Vec<crate::k8s::Route>)>,
    /// Why the last route could not be set, for the call that wanted it.
    last_route_error: Option<String>,
    /// The gateway port's interface index in the switch's namespace, once looked up.
    gateway_ifindex: Option<u32>,
    /// The watch of the Kubernetes API, when there is one.
    api: api::ApiState,
    /// The connection tracker the workers share.
    ct: crate::ct::Tracker,
    /// Removes expired connections in the background.
    _ct_sweeper: crate::ct::Sweeper,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("bridge", &self.config.bridge)
            .field("ports", &self.ports.len())
            .field("objects", &self.objects.len())
            .finish()
    }
}

impl Switch {
    /// Load the persisted state, start the workers, bring every port back, reinstall
    /// groups and flows, the Pod network, the tunnel and the Kubernetes objects, write
    /// the state again as a new snapshot (in the current layout), and publish it all.
    pub fn start(config: Config) -> Result<Switch, StartError> {
        let mut store = Store::open(&config.state_dir)?;
        let image = store.load()?;
        let cached = if config.api_cache {
            api::read_cache(&config.state_dir, &image)
        } else {
            Vec::new()
        };
        if image.read_version != crate::store::STATE_VERSION {
            tracing::info!(
                from = image.read_version,
                to = crate::store::STATE_VERSION,
                path = %store.path().display(),
                "state file of an earlier release: upgraded (the old file is kept as the backup)"
            );
        }
        let bridge = Bridge::transactional(&config.bridge);
        let (ct, found) = crate::ct::Tracker::open(
            &crate::ct::Config {
                capacity: config.ct_capacity,
                file: config.ct_file.clone(),
                tcp_loose: true,
            },
            now_ms(),
        )
        .map_err(StartError::Conntrack)?;
        if let Some(found) = found {
            tracing::info!("{found}");
        }
        conntrack::apply_record(&ct, &image);
        let ports = ports::Ports::start(&config, &bridge, &ct).map_err(StartError::Workers)?;
        let _ct_sweeper = ct.spawn_sweeper(std::time::Duration::from_millis(100));
        let mut sw = Switch {
            config,
            bridge,
            store,
            ports,
            podnet: podnet::PodNet::default(),
            overlay: overlay::Overlay::default(),
            objects: Objects::default(),
            routes: objects::Routes::new(),
            dnats: BTreeMap::new(),
            stale: Default::default(),
            patches: BTreeMap::new(),
            plans: HashMap::new(),
            host: hostnat::HostState::default(),
            pending_routes: Vec::new(),
            last_route_error: None,
            gateway_ifindex: None,
            api: api::ApiState::default(),
            ct,
            _ct_sweeper,
        };
        sw.restore_flows(&image)?;
        let tunnel_rec = image
            .ports
            .values()
            .find(|r| r.port_type == rpc::PortType::Vxlan)
            .cloned();
        let tunnel = sw.plan_tunnel(tunnel_rec.as_ref())?;
        let stale_gateways = sw.plan_network(
            image.network.as_ref(),
            image.pods.values().cloned().collect(),
            &image.ports,
        )?;
        sw.restore_ports(&image.ports);
        // The tunnel before the gateway, whose flows name it.
        sw.open_tunnel(tunnel, tunnel_rec)?;
        sw.ensure_gateway(stale_gateways)?;
        sw.wire_local_pods();
        sw.restore_objects(&image, cached);
        // The state as it now is, in the current layout, as the new snapshot: an
        // upgraded file, settings from the flags, a new gateway are durable before the
        // first packet meets them.
        let now = sw.image();
        sw.store.compact(&now)?;
        sw.bridge.publish();
        sw.restore_affinity();
        sw.sync_all_routes();
        sw.turn_forwarding_on();
        tracing::info!(
            ports = sw.ports.len(),
            pods = sw.podnet.pods.len(),
            flows = image.flows.len(),
            groups = image.groups.len(),
            objects = sw.objects.len(),
            workers = sw.ports.workers(),
            "state restored"
        );
        drop((image, now));
        crate::sys::trim_heap();
        Ok(sw)
    }

    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    // ---- inspection ---------------------------------------------------------------

    pub fn trace(&self, p: rpc::TraceParams) -> Result<rpc::TraceResult, Refusal> {
        let names = self.names();
        let m =
            text::parse_match(&p.flow, &names).map_err(|e| Refusal::refused(e.render(&p.flow)))?;
        let ct_next = p
            .ct_next
            .iter()
            .map(|s| vswitch_proto::conntrack::parse_ct_state(s))
            .collect::<Result<Vec<u16>, String>>()
            .map_err(|e| Refusal::refused(format!("--ct-next: {e}")))?;
        let (t, resumed) = self.bridge.trace_ct(&m.flow, now_ms(), &ct_next);
        let tables = |t: &crate::ofproto::trace::Trace| -> Vec<rpc::TracedTable> {
            t.steps
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
                .collect()
        };
        Ok(rpc::TraceResult {
            tables: tables(&t),
            megaflow: text::display_match(&t.megaflow, None, &names).to_string(),
            actions: t.datapath_actions(),
            text: crate::ofproto::trace::display_all(&t, &resumed, &names).to_string(),
            recirculations: resumed
                .iter()
                .map(|r| rpc::TracedRecirc {
                    recirc_id: r.trace.flow.recirc_id(),
                    ct_state: vswitch_proto::conntrack::format_ct_state(r.ct_state),
                    tables: tables(&r.trace),
                    megaflow: text::display_match(&r.trace.megaflow, None, &names).to_string(),
                    actions: r.trace.datapath_actions(),
                })
                .collect(),
        })
    }

    pub fn dump_cache(&self) -> rpc::CacheResult {
        let names = self.names();
        let now = now_ms();
        let dumps = self.ports.worker_answers(Msg::DumpCache);
        rpc::CacheResult {
            workers: dumps
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    let d = d.unwrap_or(crate::dp::CacheDump {
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
        for s in self.ports.worker_answers(Msg::Stats).into_iter().flatten() {
            sum.packets += s.packets;
            sum.emc_hits += s.emc_hits;
            sum.megaflow_hits += s.megaflow_hits;
            sum.upcalls += s.upcalls;
            sum.cache_full += s.cache_full;
            sum.recirculations += s.recirculations;
            sum.flushes += s.flushes;
            sum.revalidations += s.revalidations;
            sum.megaflows_invalidated += s.megaflows_invalidated;
            sum.megaflows_kept += s.megaflows_kept;
            sum.rejects.sent += s.rejects.sent;
            sum.rejects.rate_limited += s.rejects.rate_limited;
            sum.rejects.unanswered += s.rejects.unanswered;
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
        m.insert("revalidations".into(), sum.revalidations);
        m.insert("megaflows_invalidated".into(), sum.megaflows_invalidated);
        m.insert("megaflows_kept".into(), sum.megaflows_kept);
        m.insert("owner_conflicts".into(), self.bridge.owner_conflicts());
        m.insert("reject.sent".into(), sum.rejects.sent);
        m.insert("reject.rate_limited".into(), sum.rejects.rate_limited);
        m.insert("reject.unanswered".into(), sum.rejects.unanswered);
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
            workers: self.ports.workers() as u32,
            ports: self.list_ports(),
            n_flows: self.bridge.pipeline().n_rules() as u64,
            n_groups: self.bridge.pipeline().n_groups() as u64,
            datapath: self.datapath_stats(),
            conntrack: Some(self.ct_stats()),
            control: None,
            api: self.api_status(),
        }
    }

    /// The connection tracker the workers share.
    pub fn conntrack(&self) -> &crate::ct::Tracker {
        &self.ct
    }

    // ---- upkeep -------------------------------------------------------------------

    /// Once a second: apply learned flows, expire flows, age MAC entries.
    pub fn housekeeping(&mut self) {
        let now = now_ms();
        let (learned, denied) = self.ports.upcalls();
        if !denied.is_empty() {
            self.audit(&denied);
        }
        let done = self.transact(|sw, _| {
            for spec in &learned {
                if let Err(e) = sw.bridge.learn(spec, now) {
                    tracing::warn!(error = %e, "learned flow refused");
                }
            }
            sw.bridge.expire(now);
            Ok(())
        });
        if let Err(e) = done {
            tracing::error!(error = %e.message, "cannot persist expired flows; they stay until the next try");
        }
        self.bridge.mac_table().expire(now);
        self.save_api_cache(false);
    }

    /// Stop the workers (ports stay as they are: persistent TAPs outlive the daemon),
    /// and write the state as one snapshot, so the next start reads no journal.
    pub fn shutdown(&mut self) {
        self.ports.stop_workers();
        self.save_api_cache(true);
        let image = self.image();
        if let Err(e) = self.store.compact(&image) {
            tracing::warn!(error = %e, "cannot compact the state at shutdown (the journal holds every change)");
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.ports.stop_workers();
    }
}

#[cfg(test)]
mod tests;
