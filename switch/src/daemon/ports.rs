//! Ports and the devices behind them, and the workers that serve them.

use super::devices::{self, Device};
use super::worker::{self, Msg, WorkerHandle};
use super::{Config, Refusal, Switch, Txn, WORKER_TIMEOUT};
use crate::ofproto::{Bridge, PortDesc};
use crate::port::{MemoryPort, PortIo, PortStats, WorkerPort};
use crate::store::{Op, PortRecord};
use crate::sys::tap::Offloads;
use crossbeam_channel::Receiver;
use std::collections::BTreeMap;
use std::sync::Arc;
use vswitch_proto::flowmod::FlowSpec;
use vswitch_proto::rpc;
use vswitch_proto::text::PortNames;

pub(super) struct Port {
    pub(super) record: PortRecord,
    stats: Arc<PortStats>,
    pub(super) device: Device,
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
            mac: r.mac.map(|m| m.to_string()).unwrap_or_default(),
            mtu: r.mtu,
            ip: r.ip.map(|a| match (&r.tunnel, a.ip) {
                // The tunnel's local address, as it was always shown.
                (Some(_), ip) => ip.to_string(),
                _ => a.to_string(),
            }),
            gateway: r.gateway.map(|g| g.to_string()),
            state: self.device.state(),
            offloads: self.device.offloads().names(),
        }
    }

    pub(super) fn is_up(&self) -> bool {
        !matches!(self.device, Device::Missing(_))
    }
}

/// The switch's ports, by number, and the workers that poll them.
pub(super) struct Ports {
    table: BTreeMap<u32, Port>,
    workers: Vec<WorkerHandle>,
    learn_rx: Receiver<worker::Upcall>,
    /// The port number given last.
    last_no: u32,
    /// The RPS mask of the switch's TAPs, worked out at the first TAP ("" when unknown).
    rps_mask: Option<String>,
    /// Whether a failure to set RPS was logged at warn already.
    rps_warned: bool,
    rps: bool,
}

impl Ports {
    /// Start the workers over the bridge's published pipeline.
    pub(super) fn start(
        config: &Config,
        bridge: &Bridge,
        ct: &crate::ct::Tracker,
    ) -> std::io::Result<Ports> {
        let (learn_tx, learn_rx) = crossbeam_channel::unbounded();
        let workers = (0..config.workers.max(1))
            .map(|id| {
                worker::spawn(
                    id,
                    bridge.pipeline_handle(),
                    bridge.mac_table(),
                    learn_tx.clone(),
                    config.busy_poll,
                    ct.worker(id as u64 + 1),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ports {
            table: BTreeMap::new(),
            workers,
            learn_rx,
            last_no: 0,
            rps_mask: None,
            rps_warned: false,
            rps: config.rps,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn workers(&self) -> usize {
        self.workers.len()
    }

    pub(super) fn get(&self, no: u32) -> Option<&Port> {
        self.table.get(&no)
    }

    pub(super) fn by_name(&self, name: &str) -> Option<&Port> {
        self.table.values().find(|p| p.record.name == name)
    }

    pub(super) fn records(&self) -> impl Iterator<Item = &PortRecord> {
        self.table.values().map(|p| &p.record)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Port> {
        self.table.values()
    }

    /// Flows a `learn` action asked for, and new connections NetworkPolicy refused
    /// (with audit logging on), since the last call.
    pub(super) fn upcalls(&self) -> (Vec<Arc<FlowSpec>>, Vec<worker::Denied>) {
        let (mut learned, mut denied) = (Vec::new(), Vec::new());
        for u in self.learn_rx.try_iter() {
            match u {
                worker::Upcall::Learn(f) => learned.push(f),
                worker::Upcall::Denied(d) => denied.push(d),
            }
        }
        (learned, denied)
    }

    /// Ask every worker and wait (a bounded time) for each answer.
    pub(super) fn worker_answers<T>(
        &self,
        make: impl Fn(crossbeam_channel::Sender<T>) -> Msg,
    ) -> Vec<Option<T>> {
        self.workers
            .iter()
            .map(|w| w.ask(&make, WORKER_TIMEOUT))
            .collect()
    }

    pub(super) fn stop_workers(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
    }

    /// The next free port number after the last one given, wrapping: a number freed a
    /// moment ago is not given again at once, so a flow left naming a removed port does
    /// not apply to the next Pod (Open vSwitch avoids reusing ofports the same way).
    pub(super) fn free_no(&mut self) -> Option<u32> {
        let max = vswitch_proto::action::port::MAX;
        let start = self.last_no % max;
        let no = (1..=max)
            .map(|i| (start + i - 1) % max + 1)
            .find(|n| !self.table.contains_key(n))?;
        self.last_no = no;
        Some(no)
    }

    /// Remember that `no` was given (a restored or saved number).
    pub(super) fn note_no(&mut self, no: u32) {
        self.last_no = self.last_no.max(no);
    }

    /// Register a port and hand its queues to the workers.
    pub(super) fn insert(&mut self, rec: PortRecord, device: Device) {
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
                if self.rps {
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
        self.table.insert(
            no,
            Port {
                record: rec,
                stats,
                device,
            },
        );
    }

    /// Take a port out of the workers; its device, to destroy.
    pub(super) fn remove(&mut self, no: u32) -> Option<Device> {
        for w in &self.workers {
            w.ask(|done| Msg::DelPort { no, done }, WORKER_TIMEOUT);
        }
        self.table.remove(&no).map(|p| p.device)
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

    /// The in-memory port called `name`.
    pub(super) fn memory(&self, name: &str) -> Option<Arc<MemoryPort>> {
        self.by_name(name).and_then(|p| match &p.device {
            Device::Memory(m) => Some(m.clone()),
            _ => None,
        })
    }

    pub(super) fn poke_memory(&self) {
        if let Some(w) = self.workers.first() {
            w.send(Msg::Poke);
        }
    }
}

/// Port names for flow text, from the switch's port table.
pub(super) struct Names<'a>(&'a Ports);

impl PortNames for Names<'_> {
    fn port_no(&self, name: &str) -> Option<u32> {
        self.0.by_name(name).map(|p| p.record.no)
    }
    fn port_name(&self, no: u32) -> Option<String> {
        self.0.get(no).map(|p| p.record.name.clone())
    }
}

impl Switch {
    pub(super) fn names(&self) -> Names<'_> {
        Names(&self.ports)
    }

    /// Tell the bridge the ports there are (a Pod's, or the tunnel, never get floods).
    pub(super) fn publish_ports(&mut self) {
        let descs = self
            .ports
            .values()
            .map(|p| PortDesc {
                no: p.record.no,
                name: p.record.name.clone(),
                no_flood: self.podnet.is_pod_port(&p.record)
                    || p.record.port_type == rpc::PortType::Vxlan,
            })
            .collect();
        self.bridge.set_ports(descs);
    }

    /// At start: bring back every saved port but the tunnel (made from the settings).
    pub(super) fn restore_ports(&mut self, saved: &BTreeMap<u32, PortRecord>) {
        for rec in saved.values() {
            if rec.port_type == rpc::PortType::Vxlan {
                continue;
            }
            let device = Device::restore(rec, self.ports.workers());
            match &device {
                Device::Missing(why) => {
                    tracing::warn!(port = %rec.name, reason = %why, "port not re-attached")
                }
                _ => tracing::info!(port = %rec.name, no = rec.no, "port re-attached"),
            }
            self.ports.insert(rec.clone(), device);
        }
        self.publish_ports();
        let last = self.ports.records().map(|r| r.no).max().unwrap_or(0);
        self.ports.note_no(last);
    }

    pub fn add_port(&mut self, p: rpc::AddPortParams) -> Result<rpc::PortInfo, Refusal> {
        let no = self.transact(|sw, txn| sw.add_port_in(txn, p))?;
        Ok(self
            .ports
            .get(no)
            .map(Port::info)
            .expect("the port just added"))
    }

    /// `add-port` inside a change. A TAP with an address in the Pod CIDR is a Pod, wired
    /// as one. Returns the port's number; the port reaches the workers when the change is
    /// durable.
    pub(super) fn add_port_in(
        &mut self,
        txn: &mut Txn,
        p: rpc::AddPortParams,
    ) -> Result<u32, Refusal> {
        if self.ports.by_name(&p.name).is_some() {
            return Err(Refusal::conflict(format!(
                "port name {:?} is already taken; delete it first (del-port {})",
                p.name, p.name
            )));
        }
        let no = self
            .ports
            .free_no()
            .ok_or_else(|| Refusal::refused("no free port number"))?;
        let rec = devices::record(no, &p)?;
        if rec.port_type != rpc::PortType::Memory
            && self.ports.records().any(|q| {
                q.port_type != rpc::PortType::Memory
                    && q.ifname == rec.ifname
                    && q.netns == rec.netns
            })
        {
            return Err(Refusal::conflict(format!(
                "interface {:?} in {} is already a port of this switch",
                rec.ifname,
                rec.netns.as_deref().unwrap_or("the host namespace")
            )));
        }
        // A Pod by hand: its address must be free (checked before its device is made).
        self.wire_hand_pod(txn, &rec)?;
        let device = Device::create(&rec, self.ports.workers())?;
        // The device exists until the change is durable; if it is not, it goes.
        let device = std::rc::Rc::new(std::cell::Cell::new(Some(device)));
        let undo = device.clone();
        txn.on_undo(move |_| {
            if let Some(d) = undo.take() {
                d.destroy();
            }
        });
        txn.op(Op::Port {
            no,
            v: Some(rec.clone()),
        });
        tracing::info!(port = %rec.name, no, kind = %rec.port_type, netns = ?rec.netns, "port added");
        txn.then(move |sw| {
            if let Some(d) = device.take() {
                sw.ports.insert(rec, d);
                sw.publish_ports();
            }
        });
        Ok(no)
    }

    pub fn del_port(&mut self, name: &str) -> Result<(), Refusal> {
        let no = self
            .ports
            .by_name(name)
            .map(|p| p.record.no)
            .ok_or_else(|| Refusal::not_found(format!("no port named {name:?}")))?;
        if let Some(p) = self.podnet.pods.values().find(|p| p.port == name) {
            return Err(Refusal::refused(format!(
                "port {name} is the interface of container {} ({}); the runtime removes it \
                 with a CNI DEL",
                p.container_id, p.netns
            )));
        }
        if self.overlay.tunnel.is_some_and(|t| t.port == no) {
            return Err(Refusal::refused(format!(
                "port {name} is the node's tunnel to the other nodes; it goes with --node-ip"
            )));
        }
        if self
            .podnet
            .net
            .as_ref()
            .is_some_and(|n| n.gateway_port == no)
        {
            return Err(Refusal::refused(format!(
                "port {name} is the node's gateway to its Pods; it goes with --pod-cidr"
            )));
        }
        self.transact(|sw, txn| {
            sw.unwire_hand_pod(txn, no);
            txn.op(Op::Port { no, v: None });
            txn.then(move |sw| sw.drop_port(no));
            Ok(())
        })?;
        tracing::info!(port = %name, no, "port deleted");
        Ok(())
    }

    /// Take a port out of the workers and remove its device (after a change is durable).
    pub(super) fn drop_port(&mut self, no: u32) {
        if let Some(d) = self.ports.remove(no) {
            d.destroy();
        }
        self.publish_ports();
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
        self.ports.memory(name)
    }

    /// Wake the worker that serves memory ports (after injecting frames).
    pub fn poke_memory_ports(&self) {
        self.ports.poke_memory();
    }
}
