//! Pods attached through CNI: the switch's side of `vswitch-cni` (DESIGN §7).
//!
//! Calls for one container are serialized ([`ContainerLocks`]); calls for different
//! containers run side by side. The slow parts of an ADD (running a delegated IPAM
//! plugin, creating and configuring the TAP inside the Pod's namespace) run without the
//! switch's lock; the lock is taken to reserve an address and to commit: the port, the
//! Pod's flows and the persisted state, saved before the result is returned.

use super::devices::{self, CreateError, Device};
use super::ipam::{self, PluginEnv};
use super::podnet::pod_owner;
use super::{Refusal, Switch};
use crate::k8s::local::{LocalNet, LocalPod};
use crate::store::{IpamRecord, Op, PodRecord, PortRecord};
use crate::sys::netlink::Rtnl;
use crate::sys::netns;
use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};
use vswitch_proto::cni::{
    self, CniArgs, CniCall, CniError, CniResult, Command, Interface, IpConfig, NetConf, Route,
    errcode,
};
use vswitch_proto::net::{IfAddr, MacAddr};
use vswitch_proto::rpc::PortType;

/// An attachment's key: (container ID, interface name).
pub type PodKey = (String, String);

/// Serializes calls per container. (Two containers given the same interface of one
/// namespace race in the kernel instead: the TAP is created with `IFF_TUN_EXCL`.)
#[derive(Debug, Default)]
pub struct ContainerLocks {
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// Held while a call works on one container.
#[derive(Debug)]
pub struct Held<'a> {
    locks: &'a ContainerLocks,
    id: String,
}

impl ContainerLocks {
    /// Wait until no other call works on container `id`, then hold it.
    pub fn hold(&self, id: &str) -> Held<'_> {
        let mut busy = self.busy.lock();
        while busy.contains(id) {
            self.freed.wait(&mut busy);
        }
        busy.insert(id.to_string());
        Held {
            locks: self,
            id: id.to_string(),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.locks.busy.lock().remove(&self.id);
        self.locks.freed.notify_all();
    }
}

/// Serve one forwarded CNI call: the result in the configuration's version, or `null`.
pub fn handle(sw: &Mutex<Switch>, call: CniCall) -> Result<Value, CniError> {
    let conf = NetConf::from_value(&call.config)?;
    let args = call.validate(&conf)?;
    match call.command {
        Command::Version => Ok(cni::version_reply(Some(&conf.cni_version))),
        Command::Status => status(sw, &call, &conf).map(|()| Value::Null),
        Command::Gc => gc(sw, &call, &conf).map(|()| Value::Null),
        Command::Add | Command::Del | Command::Check => {
            if call.command == Command::Add {
                api_synced(sw, &conf)?;
            }
            let locks = sw.lock().podnet.cni_locks.clone();
            let _held = locks.hold(&call.container_id);
            match call.command {
                Command::Add => add(sw, &call, &conf, &args),
                Command::Del => del(sw, &call, &conf).map(|()| Value::Null),
                _ => check(sw, &call, &conf).map(|()| Value::Null),
            }
        }
    }
}

/// Before an ADD: wait (bounded) until every kind watched from the Kubernetes API has
/// been listed once, so that the Pod's policies and the cluster's Services are in place
/// before it starts; past the bound, "try again later".
fn api_synced(sw: &Mutex<Switch>, conf: &NetConf) -> Result<(), CniError> {
    let bound = Duration::from_secs(conf.timeout_secs / 2).min(Duration::from_secs(20));
    let deadline = Instant::now() + bound;
    loop {
        let waiting = sw.lock().api_waiting_for();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CniError::new(
                errcode::TRY_AGAIN_LATER,
                format!(
                    "vswitchd has not listed {} from the Kubernetes API yet (waited {bound:?}), \
                     so this Pod's policies and Services may not be in place: try again \
                     (see `vswitchctl show` for the API connection)",
                    waiting.join(", ")
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn key(call: &CniCall) -> PodKey {
    (call.container_id.clone(), call.ifname.clone())
}

fn no_network() -> CniError {
    CniError::new(
        errcode::TRY_AGAIN_LATER,
        "vswitchd has no Pod CIDR yet, so it cannot give Pods addresses: start it with \
         --pod-cidr (the node's spec.podCIDR)",
    )
}

fn builtin_ipam(conf: &NetConf) -> bool {
    conf.ipam_type.as_deref().is_none_or(|t| t == ipam::BUILTIN)
}

pub(super) fn pod_label(p: &PodRecord) -> String {
    match (&p.pod_namespace, &p.pod_name) {
        (Some(ns), Some(n)) => format!("Pod {ns}/{n} (container {})", p.container_id),
        _ => format!("container {}", p.container_id),
    }
}

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::new(errcode::INTERNAL, e.to_string())
}

// ---- ADD --------------------------------------------------------------------------------

fn add(
    sw: &Mutex<Switch>,
    call: &CniCall,
    conf: &NetConf,
    args: &CniArgs,
) -> Result<Value, CniError> {
    let netns_path = Path::new(&call.netns);
    if !netns::is_netns(netns_path) {
        return Err(CniError::new(
            errcode::INVALID_ENV,
            format!(
                "CNI_NETNS {} is not a network namespace (it does not exist, or is not an \
                 nsfs file such as /var/run/netns/NAME or /proc/PID/ns/net)",
                call.netns
            ),
        ));
    }
    if netns::same_namespace(netns_path, Path::new("/proc/thread-self/ns/net")) {
        return Err(CniError::new(
            errcode::INVALID_ENV,
            format!(
                "CNI_NETNS {} is the namespace vswitchd itself runs in, not a container's",
                call.netns
            ),
        ));
    }
    let prev = conf
        .prev_result
        .as_ref()
        .map(CniResult::from_value)
        .transpose()
        .map_err(|e| CniError::new(errcode::INVALID_CONFIG, format!("prevResult: {e}")))?;
    let builtin = builtin_ipam(conf);
    let requested = requested_address(conf, args)?;
    // Phase 1, locked: a repeated ADD, a taken interface, an address reserved.
    let (net, queues, reserved) = {
        let mut guard = sw.lock();
        let s = &mut *guard;
        let net = s.podnet.net.clone().ok_or_else(no_network)?;
        if let Some(p) = s.podnet.pods.get(&key(call)) {
            // The same call again (a runtime retrying after a lost answer): the same
            // result, if what it describes is still there.
            let up = s.ports.by_name(&p.port).is_some_and(|q| q.is_up());
            if p.netns == call.netns && up {
                let r = CniResult::from_value(&p.result).map_err(internal)?;
                return Ok(r.to_version(&conf.cni_version));
            }
            return Err(CniError::new(
                errcode::CONFLICT,
                format!(
                    "container {} already has {} in {} ({}); DEL it first",
                    call.container_id,
                    call.ifname,
                    p.netns,
                    if up { "up" } else { "its interface is gone" }
                ),
            ));
        }
        if let Some(p) = s
            .podnet
            .pods
            .values()
            .find(|p| p.netns == call.netns && p.ifname == call.ifname)
        {
            return Err(CniError::new(
                errcode::CONFLICT,
                format!(
                    "interface {} in {} already belongs to {}; DEL that container first",
                    call.ifname,
                    call.netns,
                    pod_label(p)
                ),
            ));
        }
        let n_pods = s.podnet.pods.len() + s.podnet.hand.len();
        let alloc = s.podnet.alloc.as_mut();
        let reserved = match (builtin, requested) {
            (false, _) => None,
            (true, Some((ip, asked_by, code))) => {
                let a = alloc.ok_or_else(no_network)?;
                a.reserve(ip).map_err(|e| {
                    let code = match e {
                        ipam::Unavailable::Taken(_) => errcode::IPAM_FAILURE,
                        _ => code,
                    };
                    CniError::new(
                        code,
                        format!("the address asked for ({asked_by}) cannot be given: {e}"),
                    )
                })?;
                Some(ip)
            }
            (true, None) => {
                let ip = alloc.and_then(ipam::Allocator::allocate);
                Some(ip.ok_or_else(|| {
                    CniError::new(
                        errcode::IPAM_FAILURE,
                        format!(
                            "no free address left in the Pod CIDR {} ({n_pods} Pods attached); \
                             DEL Pods that are gone, or give the node a larger Pod CIDR",
                            net.cidr,
                        ),
                    )
                })?)
            }
        };
        (net, s.ports.workers(), reserved)
    };
    // Phase 2, unlocked: the address from a delegated plugin; the device.
    let (ip, ipam_rec, ipam_dns) = match reserved {
        Some(ip) => (ip, IpamRecord::Builtin, None),
        None => {
            let (ip, rec, dns) = delegate_add(call, conf, &net)?;
            // The built-in allocator knows every address on the node, whoever gave it.
            let taken = sw.lock().podnet.alloc.as_mut().is_some_and(|a| !a.mark(ip));
            if taken {
                let _ = delegate(&rec, Command::Del, call);
                return Err(CniError::new(
                    errcode::IPAM_FAILURE,
                    format!(
                        "the IPAM plugin gave {ip}, which another Pod on this node already \
                         has; do not mix IPAM plugins on one node"
                    ),
                ));
            }
            (ip, rec, dns)
        }
    };
    let release = |sw: &Mutex<Switch>| {
        if let Some(a) = sw.lock().podnet.alloc.as_mut() {
            a.release(ip);
        }
        if let Err(e) = delegate(&ipam_rec, Command::Del, call) {
            tracing::warn!(container = %call.container_id, error = %e, "IPAM release after a failed ADD");
        }
    };
    let gateway = net.gateway_ip();
    let mac = MacAddr::for_ipv4(ip);
    let cidr = IfAddr {
        ip: IpAddr::V4(ip),
        prefix: net.cidr.prefix(),
    };
    let port = PortRecord {
        no: 0,
        name: String::new(),
        port_type: PortType::Tap,
        netns: Some(call.netns.clone()),
        ifname: call.ifname.clone(),
        mac: Some(mac),
        mtu: Some(net.mtu),
        ip: Some(cidr),
        gateway: Some(IpAddr::V4(gateway)),
        tunnel: None,
    };
    let device = match Device::create(&port, queues) {
        Ok(d) => d,
        Err(e) => {
            release(sw);
            return Err(match e {
                CreateError::Exists(m) => CniError::new(errcode::CONFLICT, m),
                CreateError::Failed(m) => CniError::new(
                    errcode::INTERFACE_FAILURE,
                    format!("cannot create {} in {}: {m}", call.ifname, call.netns),
                ),
            });
        }
    };
    let mut ours = CniResult {
        interfaces: vec![Interface {
            name: call.ifname.clone(),
            mac: mac.to_string(),
            mtu: Some(net.mtu),
            sandbox: Some(call.netns.clone()),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: cidr.to_string(),
            gateway: Some(gateway.to_string()),
            interface: Some(0),
            ..IpConfig::default()
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(gateway.to_string()),
            ..Route::default()
        }],
        dns: Default::default(),
    };
    if let Some(Value::Object(d)) = conf.dns.clone().or(ipam_dns) {
        ours.dns = d;
    }
    let result = match prev {
        Some(mut r) => {
            r.append(ours);
            r
        }
        None => ours,
    };
    let pod = PodRecord {
        container_id: call.container_id.clone(),
        ifname: call.ifname.clone(),
        netns: call.netns.clone(),
        network: conf.name.clone(),
        port: String::new(),
        ip: cidr,
        mac,
        gateway: IpAddr::V4(gateway),
        pod_namespace: args.pod_namespace.clone(),
        pod_name: args.pod_name.clone(),
        pod_uid: args.pod_uid.clone(),
        ipam: ipam_rec.clone(),
        result: serde_json::to_value(&result).unwrap_or_default(),
    };
    // Phase 3, locked: commit.
    let committed = sw.lock().attach_pod(port, device, pod);
    match committed {
        Ok(p) => {
            tracing::info!(container = %call.container_id, ifname = %call.ifname, ip = %p.ip, port = %p.port, "Pod attached");
            Ok(result.to_version(&conf.cni_version))
        }
        Err((e, device)) => {
            device.destroy();
            release(sw);
            Err(e)
        }
    }
}

/// The configuration a delegated IPAM plugin gets: the network's own, in the version it
/// speaks, with the node's Pod CIDR as its range when the configuration gives none.
fn ipam_config(conf: &Value, net: &LocalNet, version: &str) -> Value {
    let mut c = conf.clone();
    if let Some(o) = c.as_object_mut() {
        o.insert("cniVersion".into(), Value::String(version.into()));
        o.remove("prevResult");
        if let Some(Value::Object(ipam)) = o.get_mut("ipam")
            && !ipam.contains_key("ranges")
            && !ipam.contains_key("subnet")
        {
            ipam.insert(
                "ranges".into(),
                json!([[{ "subnet": net.cidr.to_string(), "gateway": net.gateway_ip().to_string() }]]),
            );
        }
    }
    c
}

fn plugin_env(call: &CniCall, path: &str, args: &str) -> PluginEnv {
    PluginEnv {
        container_id: call.container_id.clone(),
        netns: call.netns.clone(),
        ifname: call.ifname.clone(),
        args: args.to_string(),
        path: path.to_string(),
    }
}

/// The configuration's delegated IPAM plugin as it is to be run, speaking `wanted` or the
/// newest older version it knows; `None` for the built-in allocator, or a plugin that
/// speaks no version up to `wanted`.
fn delegated(
    call: &CniCall,
    conf: &NetConf,
    net: &LocalNet,
    wanted: &str,
) -> Result<Option<IpamRecord>, CniError> {
    if builtin_ipam(conf) {
        return Ok(None);
    }
    let plugin = conf.ipam_type.clone().unwrap_or_default();
    let bin = ipam::find(&plugin, &call.path)?;
    Ok(
        ipam::negotiate(&bin, wanted)?.map(|version| IpamRecord::Plugin {
            plugin,
            config: ipam_config(&call.config, net, &version),
            version,
            path: call.path.clone(),
            args: call.args.clone(),
        }),
    )
}

/// ADD through the delegated plugin: the address, and how to release it. Any failure
/// after the plugin ran is followed by its DEL (SPEC.md §4).
fn delegate_add(
    call: &CniCall,
    conf: &NetConf,
    net: &LocalNet,
) -> Result<(Ipv4Addr, IpamRecord, Option<Value>), CniError> {
    let plugin = conf.ipam_type.clone().unwrap_or_default();
    let rec = delegated(call, conf, net, &conf.cni_version)?.ok_or_else(|| {
        CniError::new(
            errcode::INCOMPATIBLE_VERSION,
            format!(
                "the IPAM plugin {plugin} speaks no CNI version up to {}",
                conf.cni_version
            ),
        )
    })?;
    let out = match delegate(&rec, Command::Add, call) {
        Ok(out) => out.unwrap_or(Value::Null),
        Err(e) => {
            let _ = delegate(&rec, Command::Del, call);
            return Err(e);
        }
    };
    let checked = ipam::result_address(&out).and_then(|(ip, _, dns)| {
        if !net.cidr.contains(ip) || ip == net.gateway_ip() || ip == net.cidr.broadcast() {
            Err(format!(
                "it gave {ip}, which is not a Pod address of this node's Pod CIDR {} \
                 (gateway {}); set ipam.ranges inside it, or leave ranges out",
                net.cidr,
                net.gateway_ip()
            ))
        } else {
            Ok((ip, dns))
        }
    });
    match checked {
        Ok((ip, dns)) => Ok((ip, rec, dns)),
        Err(m) => {
            let _ = delegate(&rec, Command::Del, call);
            Err(CniError::new(
                errcode::IPAM_FAILURE,
                format!("IPAM plugin {plugin}: {m}"),
            ))
        }
    }
}

/// Run a delegated plugin with `command` as it was (or is to be) run for ADD; its output.
fn delegate(rec: &IpamRecord, command: Command, call: &CniCall) -> Result<Option<Value>, CniError> {
    let IpamRecord::Plugin {
        plugin,
        config,
        version,
        path,
        args,
    } = rec
    else {
        return Ok(None);
    };
    if command == Command::Check && !cni::version_at_least(version, "0.4.0") {
        return Ok(None);
    }
    // The runtime's CNI_PATH now, if it gave one; else the one ADD ran with.
    let path = if call.path.is_empty() {
        path
    } else {
        &call.path
    };
    let bin = ipam::find(plugin, path)?;
    ipam::exec(&bin, command, &plugin_env(call, path, args), config)
}

/// The address the runtime asks for, if any: the `ips` capability or `args.cni.ips` of
/// the configuration first, else `IP=` of `CNI_ARGS` (where it came from, and the error
/// code an unusable one gets). This switch gives a Pod one IPv4 address.
fn requested_address(
    conf: &NetConf,
    args: &CniArgs,
) -> Result<Option<(Ipv4Addr, &'static str, u32)>, CniError> {
    let (ips, asked_by, code) = if !conf.ips.is_empty() {
        (
            &conf.ips,
            "the ips capability (runtimeConfig.ips)",
            errcode::INVALID_CONFIG,
        )
    } else {
        (&args.ips, "IP= in CNI_ARGS", errcode::INVALID_ENV)
    };
    let v4: Vec<Ipv4Addr> = ips
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    match v4.as_slice() {
        [] if ips.is_empty() => Ok(None),
        [] => Err(CniError::new(
            code,
            format!("{asked_by} asks only for IPv6 addresses; this switch gives Pods IPv4 ones"),
        )),
        [one] => Ok(Some((*one, asked_by, code))),
        more => Err(CniError::new(
            code,
            format!(
                "{asked_by} asks for {} IPv4 addresses; a Pod here has one",
                more.len()
            ),
        )),
    }
}

impl Switch {
    /// Commit an attachment: port, flows and record made durable, then the port handed
    /// to the workers. On failure the caller destroys the device.
    fn attach_pod(
        &mut self,
        mut port: PortRecord,
        device: Device,
        mut pod: PodRecord,
    ) -> Result<PodRecord, (CniError, Device)> {
        let Some(ip) = pod.ipv4() else {
            return Err((internal("the Pod has no IPv4 address"), device));
        };
        let device = std::rc::Rc::new(std::cell::Cell::new(Some(device)));
        let keep = device.clone();
        let done = self.transact(|sw, txn| {
            if sw.podnet.net.is_none() {
                return Err(Refusal::refused(no_network().msg));
            }
            let no = sw
                .ports
                .free_no()
                .ok_or_else(|| Refusal::refused("the switch has no free port number"))?;
            port.no = no;
            port.name = sw.pod_port_name(&pod, no);
            pod.port = port.name.clone();
            // Rules first: the port's first packet already meets its SpoofGuard.
            sw.install_pod(
                Some(txn),
                super::podnet::pod_object_name(&pod),
                &LocalPod {
                    port: no,
                    ip,
                    mac: pod.mac,
                },
            )?;
            let key = (pod.container_id.clone(), pod.ifname.clone());
            sw.podnet.pods.insert(key.clone(), pod.clone());
            txn.on_undo(move |sw| {
                sw.podnet.pods.remove(&key);
            });
            txn.op(Op::Port {
                no,
                v: Some(port.clone()),
            });
            txn.op(Op::Pod {
                container: pod.container_id.clone(),
                ifname: pod.ifname.clone(),
                v: Some(Box::new(pod.clone())),
            });
            let port = port.clone();
            txn.then(move |sw| {
                if let Some(d) = keep.take() {
                    sw.ports.insert(port, d);
                    sw.publish_ports();
                }
            });
            Ok(pod.clone())
        });
        done.map_err(|r| {
            let device = device.take().expect("a device not handed over");
            (CniError::new(errcode::INTERNAL, r.message), device)
        })
    }

    /// A port name for a Pod: its name and the container's, readable in `list-ports`.
    fn pod_port_name(&self, pod: &PodRecord, no: u32) -> String {
        let clean = |s: &str, n: usize| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(n)
                .collect()
        };
        let cid = clean(&pod.container_id, 8);
        let mut name = match &pod.pod_name {
            Some(n) if !n.is_empty() => format!("{}-{cid}", clean(n, 40)),
            _ => format!("c-{}", clean(&pod.container_id, 12)),
        };
        if pod.ifname != "eth0" {
            name = format!("{name}-{}", clean(&pod.ifname, 15));
        }
        if self.ports.by_name(&name).is_some() {
            name = format!("{name}-{no}");
        }
        name
    }

    /// Remove an attachment: made durable without it first; then its rules and port go,
    /// and its address is free again. The device is returned, for the caller to destroy
    /// once it no longer holds the switch's lock (removing a network device waits for the
    /// kernel: tens of milliseconds).
    pub(super) fn detach_pod(
        &mut self,
        key: &PodKey,
    ) -> Result<Option<(PodRecord, Option<Device>)>, CniError> {
        let Some(pod) = self.podnet.pods.get(key).cloned() else {
            return Ok(None);
        };
        let no = self.ports.by_name(&pod.port).map(|p| p.record.no);
        let k = key.clone();
        self.transact(|sw, txn| {
            let gone = sw.podnet.pods.remove(&k);
            txn.on_undo(move |sw| {
                if let Some(p) = gone {
                    sw.podnet.pods.insert(k, p);
                }
            });
            if let Some(no) = no {
                sw.uninstall_pod(Some(txn), no);
                txn.op(Op::Port { no, v: None });
            }
            txn.op(Op::Pod {
                container: pod.container_id.clone(),
                ifname: pod.ifname.clone(),
                v: None,
            });
            Ok(())
        })
        .map_err(|r| CniError::new(errcode::INTERNAL, r.message))?;
        let device = no.and_then(|no| self.ports.remove(no));
        self.publish_ports();
        self.bridge.publish();
        if let (Some(a), Some(ip)) = (self.podnet.alloc.as_mut(), pod.ipv4()) {
            a.release(ip);
        }
        Ok(Some((pod, device)))
    }

    /// The rules an attachment should have that are missing or changed, as text.
    fn drifted_flows(&self, pod: &PodRecord) -> Vec<String> {
        let Some(port) = self.ports.by_name(&pod.port) else {
            return vec!["the Pod's port".into()];
        };
        self.drifted_rules(pod_owner(port.record.no))
    }
}

// ---- DEL --------------------------------------------------------------------------------

fn del(sw: &Mutex<Switch>, call: &CniCall, conf: &NetConf) -> Result<(), CniError> {
    let mut errors: Vec<CniError> = Vec::new();
    let detached = sw.lock().detach_pod(&key(call));
    match detached {
        Ok(Some((pod, device))) => {
            if let Some(d) = device {
                d.destroy();
            }
            tracing::info!(container = %call.container_id, ifname = %call.ifname, ip = %pod.ip, "Pod detached");
            if let Err(e) = delegate(&pod.ipam, Command::Del, call) {
                errors.push(e);
            }
        }
        Ok(None) => {
            // Unknown here (never added, already deleted, or an ADD that a stopping switch
            // left half way): remove a TAP of ours it may have left, and release what the
            // configuration's IPAM plugin may still hold for it.
            let (net, owned) = {
                let s = sw.lock();
                let owned = s
                    .podnet
                    .pods
                    .values()
                    .any(|p| p.netns == call.netns && p.ifname == call.ifname);
                (s.podnet.net.clone(), owned)
            };
            if !owned && !call.netns.is_empty() && netns::is_netns(Path::new(&call.netns)) {
                match devices::remove_stray_tap(&call.netns, &call.ifname) {
                    Ok(true) => {
                        tracing::info!(netns = %call.netns, ifname = %call.ifname, "stray TAP removed")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(netns = %call.netns, error = %e, "cannot look for a stray TAP")
                    }
                }
            }
            if !builtin_ipam(conf)
                && !call.path.is_empty()
                && let Some(net) = net
                && let Err(e) = delegate_unknown_del(call, conf, &net)
            {
                errors.push(e);
            }
        }
        Err(e) => errors.push(e),
    }
    collect(errors, "DEL")
}

fn delegate_unknown_del(call: &CniCall, conf: &NetConf, net: &LocalNet) -> Result<(), CniError> {
    match delegated(call, conf, net, &conf.cni_version)? {
        Some(rec) => delegate(&rec, Command::Del, call).map(drop),
        None => Ok(()),
    }
}

/// One error from several collected on the way (the first one's code).
fn collect(errors: Vec<CniError>, what: &str) -> Result<(), CniError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().unwrap_or_else(|| internal(what))),
        n => {
            let code = errors[0].code;
            let msgs: Vec<String> = errors.iter().map(|e| e.msg.clone()).collect();
            Err(CniError::new(
                code,
                format!("{what}: {n} errors: {}", msgs.join("; ")),
            ))
        }
    }
}

// ---- CHECK ------------------------------------------------------------------------------

fn check(sw: &Mutex<Switch>, call: &CniCall, conf: &NetConf) -> Result<(), CniError> {
    let drift = |m: String| CniError::new(errcode::CHECK_FAILED, m);
    let pod = {
        let s = sw.lock();
        let pod = s.podnet.pods.get(&key(call)).cloned().ok_or_else(|| {
            CniError::new(
                errcode::UNKNOWN_CONTAINER,
                format!(
                    "container {} has no interface {} on this switch (was it added?)",
                    call.container_id, call.ifname
                ),
            )
        })?;
        match s.ports.by_name(&pod.port) {
            None => return Err(drift(format!("the switch port {} is gone", pod.port))),
            Some(p) => {
                if let Device::Missing(why) = &p.device {
                    return Err(drift(format!(
                        "the switch port {} has no device: {why}",
                        pod.port
                    )));
                }
            }
        }
        let missing = s.drifted_flows(&pod);
        if !missing.is_empty() {
            return Err(drift(format!(
                "{} of the Pod's flows {} missing or changed in the switch: {}",
                missing.len(),
                if missing.len() == 1 { "is" } else { "are" },
                missing.join(" | ")
            )));
        }
        pod
    };
    if let Some(prev) = &conf.prev_result {
        let r = CniResult::from_value(prev).map_err(|e| drift(format!("prevResult: {e}")))?;
        let listed = r.interfaces.iter().position(|i| i.name == pod.ifname);
        let has_ip = r.ips.iter().any(|ip| {
            ip.address == pod.ip.to_string() && (ip.interface.is_none() || ip.interface == listed)
        });
        if listed.is_none() || !has_ip {
            return Err(drift(format!(
                "prevResult does not list {} with {} as ADD returned it",
                pod.ifname, pod.ip
            )));
        }
    }
    let p = pod.clone();
    netns::run_in(Path::new(&pod.netns), move || check_in_netns(&p))
        .map_err(|e| drift(format!("cannot enter {}: {e}", pod.netns)))?
        .map_err(drift)?;
    delegate(&pod.ipam, Command::Check, call).map(drop)
}

/// Inside the Pod's namespace: the interface, its MAC, MTU, state, address and route.
fn check_in_netns(p: &PodRecord) -> Result<(), String> {
    let e = |x: crate::sys::netlink::NetlinkError| x.to_string();
    let mut nl = Rtnl::open().map_err(e)?;
    let idx = nl
        .link_index(&p.ifname)
        .map_err(e)?
        .ok_or_else(|| format!("interface {} is gone from {}", p.ifname, p.netns))?;
    let link = nl
        .link(idx)
        .map_err(e)?
        .ok_or_else(|| format!("interface {} is gone from {}", p.ifname, p.netns))?;
    if link.mac != p.mac.0 {
        return Err(format!(
            "interface {} has MAC {}, not {}",
            p.ifname,
            MacAddr(link.mac),
            p.mac
        ));
    }
    if !link.up {
        return Err(format!("interface {} is down", p.ifname));
    }
    if !nl
        .addresses(idx)
        .map_err(e)?
        .contains(&(p.ip.ip, p.ip.prefix))
    {
        return Err(format!(
            "interface {} in {} no longer has the address {}",
            p.ifname, p.netns, p.ip
        ));
    }
    let gw = p.gateway;
    let has_route = nl
        .routes(false)
        .map_err(e)?
        .iter()
        .any(|r| r.dst.is_none() && r.gateway == Some(gw) && r.oif == Some(idx));
    if !has_route {
        return Err(format!(
            "{} has no default route via {} on {}",
            p.netns, p.gateway, p.ifname
        ));
    }
    Ok(())
}

// ---- STATUS and GC ----------------------------------------------------------------------

fn status(sw: &Mutex<Switch>, call: &CniCall, conf: &NetConf) -> Result<(), CniError> {
    {
        let s = sw.lock();
        let waiting = s.api_waiting_for();
        if !waiting.is_empty() {
            return Err(CniError::new(
                errcode::NOT_AVAILABLE,
                format!(
                    "vswitchd has not listed {} from the Kubernetes API yet",
                    waiting.join(", ")
                ),
            ));
        }
        let Some(net) = s.podnet.net.as_ref() else {
            return Err(CniError::new(
                errcode::NOT_AVAILABLE,
                "vswitchd has no Pod CIDR, so it cannot attach Pods: start it with --pod-cidr",
            ));
        };
        if let Some(gw) = s.ports.get(net.gateway_port)
            && let Device::Missing(why) = &gw.device
        {
            return Err(CniError::new(
                errcode::LIMITED_CONNECTIVITY,
                format!(
                    "the node's gateway port {} has no device ({why}): Pods cannot reach the node",
                    gw.record.name
                ),
            ));
        }
    }
    forward_if_supported(sw, call, conf, Command::Status).map_err(|e| {
        let code = if e.code == errcode::LIMITED_CONNECTIVITY {
            e.code
        } else {
            errcode::NOT_AVAILABLE
        };
        CniError::new(code, e.msg).with_details(e.details)
    })
}

/// STATUS and GC go on to a delegated IPAM plugin that knows them (spec 1.1.0).
fn forward_if_supported(
    sw: &Mutex<Switch>,
    call: &CniCall,
    conf: &NetConf,
    command: Command,
) -> Result<(), CniError> {
    let net = sw.lock().podnet.net.clone();
    let Some(net) = net.filter(|_| !call.path.is_empty()) else {
        return Ok(());
    };
    match delegated(call, conf, &net, "1.1.0")? {
        Some(rec) if matches!(&rec, IpamRecord::Plugin { version, .. } if version == "1.1.0") => {
            delegate(&rec, command, call).map(drop)
        }
        _ => Ok(()),
    }
}

fn gc(sw: &Mutex<Switch>, call: &CniCall, conf: &NetConf) -> Result<(), CniError> {
    let valid: HashSet<PodKey> = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| {
            CniError::new(
                errcode::INVALID_CONFIG,
                "GC needs \"cni.dev/valid-attachments\" (the attachments to keep)",
            )
        })?
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let (stale, locks): (Vec<PodKey>, _) = {
        let s = sw.lock();
        let stale = s
            .podnet
            .pods
            .iter()
            .filter(|(k, p)| p.network == conf.name && !valid.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        (stale, s.podnet.cni_locks.clone())
    };
    let mut errors = Vec::new();
    for k in stale {
        let _held = locks.hold(&k.0);
        let Some(pod) = sw.lock().podnet.pods.get(&k).cloned() else {
            continue;
        };
        // The address first: if its plugin fails, the record stays for the next GC.
        let c = CniCall {
            container_id: k.0.clone(),
            ifname: k.1.clone(),
            netns: pod.netns.clone(),
            ..call.clone()
        };
        if let Err(e) = delegate(&pod.ipam, Command::Del, &c) {
            errors.push(e);
            continue;
        }
        let detached = sw.lock().detach_pod(&k);
        match detached {
            Ok(Some((pod, device))) => {
                if let Some(d) = device {
                    d.destroy();
                }
                tracing::info!(container = %k.0, ifname = %k.1, ip = %pod.ip, "stale attachment removed by GC");
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    if let Err(e) = forward_if_supported(sw, call, conf, Command::Gc) {
        errors.push(e);
    }
    collect(errors, "GC")
}
