//! The node's Pod network: its CIDR and gateway port, the addresses Pods have, and the
//! rules of the node and of each local Pod (`k8s::local`).
//!
//! A local Pod is a port attached through CNI (`cni`), or a TAP port added by hand with
//! an address in the Pod CIDR (`add-port --type tap --ip ADDR/N`): both are wired the
//! same way (ARP answered, switched and routed), and their addresses are taken from the
//! same allocator, so neither can take the other's.

use super::cni::{ContainerLocks, PodKey};
use super::devices::{self, Device};
use super::ipam::{self, Allocator};
use super::{Refusal, StartError, Switch, Txn};
use crate::k8s::local::{self, LocalNet, LocalPod, LocalPods};
use crate::k8s::pipeline::CookieKind;
use crate::ofproto::now_ms;
use crate::store::{NetworkRecord, PodRecord, PortRecord};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch_proto::cni;
use vswitch_proto::net::{Ipv4Cidr, MacAddr};
use vswitch_proto::rpc::{AddPortParams, PortType};

/// The owner of the node's own rules.
pub(super) const NODE_OWNER: u64 = CookieKind::Node as u64 * (1 << 56);

/// The owner of the rules of the local Pod on port `no`.
pub(super) fn pod_owner(no: u32) -> u64 {
    CookieKind::Pod.cookie(no as u64)
}

#[derive(Debug)]
pub(super) struct PodNet {
    /// The node's Pod network, when it has one.
    pub(super) net: Option<LocalNet>,
    /// The built-in address allocator over the Pod CIDR.
    pub(super) alloc: Option<Allocator>,
    /// Pods attached through CNI, by (container ID, interface).
    pub(super) pods: BTreeMap<PodKey, PodRecord>,
    pub(super) cni_locks: Arc<ContainerLocks>,
    /// The Pods' MTU, as resolved at start.
    pub(super) pod_mtu: u32,
    /// Ports added by hand with an address in the Pod CIDR: Pods too, by port number.
    pub(super) hand: BTreeMap<u32, Ipv4Addr>,
    /// Every local Pod (attached or by hand), as Pod objects bind to them.
    pub(super) bound: LocalPods,
}

impl Default for PodNet {
    fn default() -> PodNet {
        PodNet {
            net: None,
            alloc: None,
            pods: BTreeMap::new(),
            cni_locks: Arc::default(),
            pod_mtu: super::DEFAULT_POD_MTU,
            hand: BTreeMap::new(),
            bound: LocalPods::new(),
        }
    }
}

impl PodNet {
    /// Whether a port is a local Pod's (which gets no floods).
    pub(super) fn is_pod_port(&self, rec: &PortRecord) -> bool {
        self.hand.contains_key(&rec.no) || self.pods.values().any(|p| p.port == rec.name)
    }

    /// A port added by hand that is a Pod: a TAP with an IPv4 address in the Pod CIDR.
    fn hand_pod_address(&self, rec: &PortRecord) -> Option<Ipv4Addr> {
        let net = self.net.as_ref()?;
        let ip = rec.ip?.ipv4()?;
        (rec.port_type == PortType::Tap && net.cidr.contains(ip)).then_some(ip)
    }
}

/// A local Pod's place: its port, address and MAC.
fn local_pod(no: u32, ip: Ipv4Addr, mac: MacAddr) -> LocalPod {
    LocalPod { port: no, ip, mac }
}

/// The Pod object an attachment is (its namespace and name, from the CNI call).
pub(super) fn pod_object_name(p: &PodRecord) -> Option<(String, String)> {
    Some((p.pod_namespace.clone()?, p.pod_name.clone()?))
}

impl Switch {
    /// The Pod network's record, for the state.
    pub(super) fn network_record(&self) -> Option<NetworkRecord> {
        self.podnet.net.as_ref().map(|n| NetworkRecord {
            pod_cidr: n.cidr,
            gateway: self
                .ports
                .get(n.gateway_port)
                .map_or_else(|| self.config.gateway.clone(), |p| p.record.name.clone()),
            mtu: n.mtu,
        })
    }

    /// What `dump-flows --names` calls the local Pod on port `no`.
    pub(super) fn local_pod_name(&self, no: u32) -> String {
        let Some(port) = self.ports.get(no) else {
            return format!("port/#{no}");
        };
        let name = &port.record.name;
        match self.podnet.pods.values().find(|p| &p.port == name) {
            Some(p) => match (&p.pod_namespace, &p.pod_name) {
                (Some(ns), Some(n)) => format!("pod/{ns}/{n}"),
                _ => format!("pod/{}", p.container_id),
            },
            None => format!("port/{name}"),
        }
    }

    /// Install (or replace) a local Pod's rules, and bind it to the Pod object named
    /// `name` (namespace, name), or else of its address. Inside a change (`txn`), the
    /// policies of that Pod object are compiled again before the change ends: a Pod
    /// whose object is known when it is attached has its policies from its first
    /// packet.
    pub(super) fn install_pod(
        &mut self,
        txn: Option<&mut Txn>,
        name: Option<(String, String)>,
        p: &LocalPod,
    ) -> Result<(), Refusal> {
        let Some(net) = &self.podnet.net else {
            return Ok(());
        };
        let rules = local::pod_rules(net, p);
        self.bridge
            .set_owned(pod_owner(p.port), rules, vec![], now_ms())
            .map_err(|e| Refusal::refused(format!("the Pod's flows were refused: {e}")))?;
        let was = self.podnet.bound.clone();
        self.podnet.bound.insert(name.clone(), *p);
        if let Some(txn) = txn {
            txn.on_undo(move |sw| sw.podnet.bound = was);
            self.policies_of_bound(txn, name, p.ip);
        }
        Ok(())
    }

    pub(super) fn uninstall_pod(&mut self, txn: Option<&mut Txn>, no: u32) {
        if let Err(e) = self
            .bridge
            .set_owned(pod_owner(no), vec![], vec![], now_ms())
        {
            tracing::warn!(error = %e, "cannot remove a Pod's flows");
        }
        let was = self.podnet.bound.clone();
        if let Some((ip, name)) = self.podnet.bound.remove_port(no)
            && let Some(txn) = txn
        {
            txn.on_undo(move |sw| sw.podnet.bound = was);
            self.policies_of_bound(txn, name, ip);
        }
    }

    /// Compile again the policies of the Pod objects a local Pod (`name`, `ip`) binds
    /// to.
    fn policies_of_bound(&mut self, txn: &mut Txn, name: Option<(String, String)>, ip: Ipv4Addr) {
        use crate::k8s::{Kind, ObjectKey, pod};
        let mut keys: Vec<ObjectKey> = self.objects.pods_with_ip(ip).cloned().collect();
        keys.extend(name.map(|(namespace, name)| ObjectKey {
            kind: pod::POD_KIND,
            namespace,
            name,
        }));
        for k in keys {
            if let Some(s) = self.objects.get(&k) {
                let related = pod::POD.related(&self.objects, &k, &s.spec);
                // Compiled again whole (a binding is not a change of labels).
                for r in &related {
                    self.patches.remove(r);
                }
                self.stale.extend(related);
            }
        }
        let mut routes = Vec::new();
        self.recompile_stale(txn, &mut routes);
    }

    /// `add-port` of a TAP with an address in the Pod CIDR: the address is taken (it
    /// must be free), and the port gets a Pod's rules. Other ports: nothing to do.
    pub(super) fn wire_hand_pod(&mut self, txn: &mut Txn, rec: &PortRecord) -> Result<(), Refusal> {
        let Some(ip) = self.podnet.hand_pod_address(rec) else {
            return Ok(());
        };
        if let Some(a) = self.podnet.alloc.as_mut() {
            a.reserve(ip).map_err(|e| {
                Refusal::conflict(format!(
                    "--ip {}: {e}; give the port a free address of the Pod CIDR (list-pods \
                     shows those in use)",
                    rec.ip.map(|a| a.to_string()).unwrap_or_default()
                ))
            })?;
            txn.on_undo(move |sw| {
                if let Some(a) = sw.podnet.alloc.as_mut() {
                    a.release(ip);
                }
            });
        }
        let no = rec.no;
        self.podnet.hand.insert(no, ip);
        txn.on_undo(move |sw| {
            sw.podnet.hand.remove(&no);
        });
        let mac = rec.mac.unwrap_or_else(|| MacAddr::for_ipv4(ip));
        self.install_pod(Some(txn), None, &local_pod(no, ip, mac))
    }

    /// `del-port` of a Pod added by hand: its rules go and its address is free again.
    pub(super) fn unwire_hand_pod(&mut self, txn: &mut Txn, no: u32) {
        let Some(ip) = self.podnet.hand.remove(&no) else {
            return;
        };
        txn.on_undo(move |sw| {
            sw.podnet.hand.insert(no, ip);
        });
        self.uninstall_pod(Some(txn), no);
        if let Some(a) = self.podnet.alloc.as_mut() {
            a.release(ip);
            txn.on_undo(move |sw| {
                if let Some(a) = sw.podnet.alloc.as_mut() {
                    a.mark(ip);
                }
            });
        }
    }

    /// At start, once the ports and the gateway are there: the Pods added by hand (a
    /// port saved by a release that did not wire them is wired now).
    pub(super) fn wire_local_pods(&mut self) {
        let hand: Vec<(u32, Ipv4Addr, MacAddr)> = self
            .ports
            .records()
            .filter(|r| !self.podnet.is_pod_port(r))
            .filter(|r| {
                self.podnet
                    .net
                    .as_ref()
                    .is_none_or(|n| n.gateway_port != r.no)
            })
            .filter_map(|r| {
                let ip = self.podnet.hand_pod_address(r)?;
                Some((r.no, ip, r.mac.unwrap_or_else(|| MacAddr::for_ipv4(ip))))
            })
            .collect();
        for (no, ip, mac) in hand {
            if let Some(a) = self.podnet.alloc.as_mut()
                && let Err(e) = a.reserve(ip)
            {
                tracing::error!(port = no, error = %e, "a port added by hand has an address another Pod has: not wired");
                continue;
            }
            self.podnet.hand.insert(no, ip);
            if let Err(e) = self.install_pod(None, None, &local_pod(no, ip, mac)) {
                tracing::error!(port = no, error = %e.message, "Pod added by hand not wired");
            }
        }
    }

    /// The gateway port a Pod CIDR needs: an internal port holding its first address.
    fn gateway_params(&self, cidr: Ipv4Cidr) -> AddPortParams {
        let gw_ip = cidr.gateway();
        AddPortParams {
            name: self.config.gateway.clone(),
            port_type: PortType::Internal,
            netns: None,
            ifname: None,
            mac: Some(MacAddr::for_ipv4(gw_ip).to_string()),
            // The node's own packets to other nodes' Pods fit the tunnel: an ICMP error
            // from the gateway's address would not be taken by the node itself.
            mtu: Some(
                self.overlay
                    .tunnel_mtu
                    .map_or(self.podnet.pod_mtu, |t| t.min(self.podnet.pod_mtu)),
            ),
            ip: Some(format!("{gw_ip}/{}", cidr.prefix())),
            gateway: None,
        }
    }

    /// At start, before the ports are back: the Pod network (`--pod-cidr`, or as
    /// persisted), the Pod records, the address allocator, and the node's and every Pod's
    /// rules. Returns the ports of gateways made for other settings, for
    /// [`Switch::ensure_gateway`].
    pub(super) fn plan_network(
        &mut self,
        persisted: Option<&NetworkRecord>,
        pods: Vec<PodRecord>,
        ports: &BTreeMap<u32, PortRecord>,
    ) -> Result<Vec<u32>, StartError> {
        let bad = StartError::Network;
        let n_pods = pods.len();
        self.podnet.pods = pods
            .into_iter()
            .map(|p| ((p.container_id.clone(), p.ifname.clone()), p))
            .collect();
        let flag = self
            .config
            .pod_cidr
            .as_deref()
            .map(ipam::pod_cidr)
            .transpose()
            .map_err(|e| bad(format!("--pod-cidr {e}")))?;
        let saved = persisted.map(|r| r.pod_cidr);
        let cidr = match (flag, saved) {
            (Some(f), Some(s)) if f != s && n_pods > 0 => {
                return Err(bad(format!(
                    "--pod-cidr {f} differs from {s}, in which {n_pods} Pods have addresses; \
                     start with --pod-cidr {s} (or remove those Pods first)"
                )));
            }
            (Some(f), _) => f,
            (None, Some(s)) => {
                tracing::info!(pod_cidr = %s, "Pod CIDR as saved (no --pod-cidr given)");
                s
            }
            (None, None) => {
                if n_pods > 0 {
                    return Err(bad(format!(
                        "{n_pods} Pods are attached but the Pod CIDR is unknown: start with \
                         --pod-cidr"
                    )));
                }
                return Ok(Vec::new());
            }
        };
        if let Some(p) = self
            .podnet
            .pods
            .values()
            .find(|p| p.ipv4().is_none_or(|ip| !cidr.contains(ip)))
        {
            return Err(bad(format!(
                "{} has address {}, outside the Pod CIDR {cidr}",
                super::cni::pod_label(p),
                p.ip
            )));
        }
        let want = self.gateway_params(cidr);
        let is_gateway =
            |r: &PortRecord| r.name == want.name || persisted.is_some_and(|n| n.gateway == r.name);
        let fits = |r: &PortRecord| {
            r.name == want.name
                && r.port_type == PortType::Internal
                && r.ip.map(|a| a.to_string()) == want.ip
                && r.mtu == want.mtu
                && r.mac.map(|m| m.to_string()) == want.mac
        };
        let gateway_port = ports.values().find(|r| fits(r)).map_or(0, |r| r.no);
        let stale = ports
            .values()
            .filter(|r| is_gateway(r) && !fits(r))
            .map(|r| r.no)
            .collect();
        let net = LocalNet {
            cidr,
            gateway_port,
            mtu: self.podnet.pod_mtu,
            tunnel: self.overlay.tunnel,
            service_cidr: self.config.service_cidr,
        };
        let mut alloc = Allocator::new(cidr);
        self.podnet.net = Some(net.clone());
        if gateway_port != 0 {
            self.install_node_rules()?;
        }
        let local: Vec<(u32, PodRecord)> = self
            .podnet
            .pods
            .values()
            .filter_map(|pod| {
                let no = ports.values().find(|r| r.name == pod.port).map(|r| r.no);
                if no.is_none() {
                    tracing::warn!(container = %pod.container_id, port = %pod.port, "Pod without its port: no flows");
                }
                Some((no?, pod.clone()))
            })
            .collect();
        for pod in self.podnet.pods.values() {
            if let Some(ip) = pod.ipv4() {
                alloc.mark(ip);
            }
        }
        self.podnet.alloc = Some(alloc);
        for (no, pod) in local {
            let ip = pod
                .ipv4()
                .ok_or_else(|| bad(format!("{} has no IPv4 address", pod.container_id)))?;
            self.install_pod(None, pod_object_name(&pod), &local_pod(no, ip, pod.mac))
                .map_err(|r| bad(r.message))?;
        }
        Ok(stale)
    }

    /// The node's own rules, for the Pod network as it now is.
    pub(super) fn install_node_rules(&mut self) -> Result<(), StartError> {
        let Some(net) = &self.podnet.net else {
            return Ok(());
        };
        let rules = local::node_rules(net);
        // The node's routes to Services (and to where it translates NodePort
        // connections), set once the ports are published.
        use crate::k8s::pipeline::{HANDED_TO_SWITCH, NEXT_HOP};
        let routes = net
            .service_cidr
            .into_iter()
            .chain(HANDED_TO_SWITCH.map(Ipv4Cidr::host))
            .map(|dst| crate::k8s::Route { dst, via: NEXT_HOP })
            .collect();
        self.pending_routes.push((NODE_OWNER, routes));
        self.bridge
            .set_owned(NODE_OWNER, rules, vec![], now_ms())
            .map_err(|e| StartError::Network(e.to_string()))
    }

    /// At start, once the ports are back: replace gateways made for other settings, and
    /// make the gateway if it is missing (taking over a TAP of its name left by a run
    /// that stopped before saving it). The start's compaction saves it all.
    pub(super) fn ensure_gateway(&mut self, stale: Vec<u32>) -> Result<(), StartError> {
        let bad = StartError::Network;
        let Some(mut net) = self.podnet.net.clone() else {
            return Ok(());
        };
        for no in stale {
            if let Some(d) = self.ports.remove(no) {
                tracing::info!(no, "gateway port replaced (new settings)");
                d.destroy();
            }
        }
        if net.gateway_port == 0 {
            let want = self.gateway_params(net.cidr);
            let name = want.name.clone();
            let fail = |m: String| bad(format!("cannot create the gateway port {name}: {m}"));
            let no = self
                .ports
                .free_no()
                .ok_or_else(|| fail("no free port number".into()))?;
            let rec = devices::record(no, &want).map_err(|r| fail(r.message))?;
            let device = match Device::restore(&rec, self.ports.workers()) {
                Device::Missing(why) => return Err(fail(why)),
                d => d,
            };
            self.ports.insert(rec, device);
            net.gateway_port = no;
        }
        net.tunnel = self.overlay.tunnel;
        self.podnet.net = Some(net);
        self.publish_ports();
        self.install_node_rules()
    }

    /// The node is its Pods' router (to other nodes' addresses, and beyond): IPv4
    /// forwarding on, as the reference bridge plugin does for a gateway.
    pub(super) fn turn_forwarding_on(&mut self) {
        let Some(net) = self.podnet.net.clone() else {
            return;
        };
        if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
            tracing::warn!(error = %e, "cannot turn IPv4 forwarding on: Pods reach only this node and other Pods");
        }
        if let Some(m) = &self.config.masquerade {
            match super::masq::install(net.cidr, self.config.service_cidr, m) {
                Ok(()) => {
                    tracing::info!(cluster_cidr = %m.cluster_cidr, "Pods' traffic leaving the cluster is masqueraded")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up egress masquerade: Pods reach outside the cluster only where routes lead back to them")
                }
            }
        } else if self.config.masquerade_off {
            super::masq::remove();
        }
        // NodePorts and external addresses reached from outside the node.
        if let Some(gw) = self
            .ports
            .get(net.gateway_port)
            .map(|p| p.record.ifname.clone())
        {
            self.host.start(&gw);
        }
        tracing::info!(pod_cidr = %net.cidr, gateway = %net.gateway_ip(), pods = self.podnet.pods.len() + self.podnet.hand.len(), "Pod network ready");
    }

    /// `list-pods`: the Pods attached through CNI, then those added by hand.
    pub fn list_pods(&self) -> cni::PodList {
        let net = self.podnet.net.as_ref();
        let state = |name: &str| {
            self.ports
                .by_name(name)
                .map_or_else(|| "missing: no port".into(), |q| q.device.state())
        };
        let cni_pods = self.podnet.pods.values().map(|p| {
            let port = self.ports.by_name(&p.port);
            cni::PodInfo {
                container_id: p.container_id.clone(),
                ifname: p.ifname.clone(),
                netns: p.netns.clone(),
                pod: p
                    .pod_namespace
                    .as_ref()
                    .zip(p.pod_name.as_ref())
                    .map(|(ns, n)| format!("{ns}/{n}")),
                network: p.network.clone(),
                port: p.port.clone(),
                port_no: port.map_or(0, |q| q.record.no),
                ip: p.ip.to_string(),
                mac: p.mac.to_string(),
                gateway: p.gateway.to_string(),
                ipam: match &p.ipam {
                    crate::store::IpamRecord::Builtin => ipam::BUILTIN.to_string(),
                    crate::store::IpamRecord::Plugin { plugin, .. } => plugin.clone(),
                },
                state: state(&p.port),
            }
        });
        let hand = self.podnet.hand.keys().filter_map(|no| {
            let r = &self.ports.get(*no)?.record;
            Some(cni::PodInfo {
                container_id: String::new(),
                ifname: r.ifname.clone(),
                netns: r.netns.clone().unwrap_or_default(),
                pod: None,
                network: String::new(),
                port: r.name.clone(),
                port_no: r.no,
                ip: r.ip.map(|a| a.to_string()).unwrap_or_default(),
                mac: r.mac.map(|m| m.to_string()).unwrap_or_default(),
                gateway: r.gateway.map(|g| g.to_string()).unwrap_or_default(),
                ipam: "add-port".into(),
                state: state(&r.name),
            })
        });
        cni::PodList {
            pod_cidr: net.map(|n| n.cidr.to_string()),
            gateway: net.map(|n| n.gateway_ip().to_string()),
            free: self.podnet.alloc.as_ref().map_or(0, Allocator::free),
            pods: cni_pods.chain(hand).collect(),
        }
    }
}
