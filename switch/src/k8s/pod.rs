//! The Pod kind: what NetworkPolicies need of a Pod, and nothing else (a cluster's
//! `kubectl get pods -A -o yaml` is mostly fields the switch never reads).
//!
//! Read: namespace, name and labels; `spec.nodeName`, `spec.hostNetwork`; the named
//! container ports (`spec.containers[].ports[]` with a `name`, and those of restartable
//! init containers, the sidecars: `restartPolicy: Always`), for policies' named ports;
//! `status.phase`; the IPv4 address of `status.podIPs` (or `status.podIP`; when both
//! are given and disagree, `podIP` wins, as the API server converts them). IPv6
//! addresses are skipped: the switch routes IPv4. Unnamed ports and ordinary init
//! containers' ports are not kept: a policy names a port by number or by a name.
//!
//! A Pod is known to policies by its address ([`Pod::policy_ip`]) unless it runs in the
//! node's network (never selected) or has ended (its address may be another Pod's).
//! Compiled: nothing of its own; the policies that select it or its peers are.

use super::fields::{self, Labels, NameRule, child, index, invalid};
use super::names;
use super::namespace::labels_text;
use super::pipeline::CookieKind;
use super::service::Protocol;
use super::{Kind, KindInfo, ObjectKey, Objects, Spec, Stored};
use serde_json::{Map, Value, json};
use std::net::{IpAddr, Ipv4Addr};
use vswitch_proto::k8s::FieldError;
use vswitch_proto::rpc::GetColumn;

pub const POD_KIND: &str = "Pod";

/// `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Unknown => "Unknown",
        }
    }
}

/// A container port with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// A container with named ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    /// A restartable init container (`restartPolicy: Always`): a sidecar, which serves
    /// next to the others.
    pub sidecar: bool,
    pub ports: Vec<NamedPort>,
}

/// A Pod, as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub labels: Labels,
    /// Its IPv4 address, once it has one.
    pub ip: Option<Ipv4Addr>,
    /// It runs in the node's network namespace (its address is the node's).
    pub host_network: bool,
    pub node_name: Option<String>,
    /// `Pending` when the manifest says nothing (as the API server sets a new Pod).
    pub phase: Phase,
    /// Its containers that have named ports, in the Pod's order, then its sidecars.
    pub containers: Vec<Container>,
}

impl Pod {
    /// Whether it has ended (`Succeeded`, `Failed`): its address may be another Pod's.
    pub fn terminated(&self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }

    /// The address policies know it by: its IPv4 address, unless it runs in the node's
    /// network (a host-network Pod is never selected) or has ended.
    pub fn policy_ip(&self) -> Option<Ipv4Addr> {
        self.ip.filter(|_| !self.host_network && !self.terminated())
    }

    /// The number of its port named `name` over `protocol`, looked for as Kubernetes
    /// looks for a named port (`FindPort`): its containers first, then its sidecars.
    /// `None`: no such port, and a rule naming it allows nothing to this Pod.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        let mut order: Vec<&Container> = self.containers.iter().filter(|c| !c.sidecar).collect();
        order.extend(self.containers.iter().filter(|c| c.sidecar));
        order
            .into_iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// Whether two Pods differ in their labels at most. (Every field is named: a new one
/// must say whether policies' rules depend on it.)
pub(crate) fn same_but_labels(a: &Pod, b: &Pod) -> bool {
    let Pod {
        labels: _,
        ip,
        host_network,
        node_name,
        phase,
        containers,
    } = a;
    *ip == b.ip
        && *host_network == b.host_network
        && *node_name == b.node_name
        && *phase == b.phase
        && *containers == b.containers
}

fn read_containers(
    spec: Option<&Map<String, Value>>,
    field: &str,
    out: &mut Vec<Container>,
) -> Result<(), FieldError> {
    let path = format!("spec.{field}");
    let init = field == "initContainers";
    for (i, c) in fields::list(spec.and_then(|s| s.get(field)), &path)?
        .iter()
        .enumerate()
    {
        let cpath = index(&path, i);
        let Some(c) = fields::object(Some(c), &cpath, None)? else {
            continue;
        };
        let sidecar = init
            && fields::string(c.get("restartPolicy"), &child(&cpath, "restartPolicy"))?
                == Some("Always");
        if init && !sidecar {
            // Runs to completion before the Pod's containers start: its ports never
            // serve the Pod's traffic.
            continue;
        }
        let ports_path = child(&cpath, "ports");
        let mut ports = Vec::new();
        for (j, p) in fields::list(c.get("ports"), &ports_path)?
            .iter()
            .enumerate()
        {
            let ppath = index(&ports_path, j);
            let Some(p) = fields::object(Some(p), &ppath, None)? else {
                continue;
            };
            let cp_path = child(&ppath, "containerPort");
            let port =
                fields::port_number(p.get("containerPort").unwrap_or(&Value::Null), &cp_path)?;
            let protocol = fields::protocol(p.get("protocol"), &child(&ppath, "protocol"))?;
            let name_path = child(&ppath, "name");
            let Some(name) = fields::string(p.get("name"), &name_path)?.filter(|n| !n.is_empty())
            else {
                continue;
            };
            names::port_name(name)
                .map_err(|m| invalid(&name_path, &Value::String(name.into()), m))?;
            ports.push(NamedPort {
                name: name.to_string(),
                port,
                protocol,
            });
        }
        if !ports.is_empty() {
            let name = fields::string(c.get("name"), &child(&cpath, "name"))?.unwrap_or_default();
            out.push(Container {
                name: name.to_string(),
                sidecar,
                ports,
            });
        }
    }
    Ok(())
}

/// The Pod's IPv4 address from `status.podIPs` and `status.podIP`.
fn read_ip(status: Option<&Map<String, Value>>) -> Result<Option<Ipv4Addr>, FieldError> {
    let get = |f: &str| status.and_then(|s| s.get(f));
    let pod_ip = fields::string(get("podIP"), "status.podIP")?.filter(|s| !s.is_empty());
    let mut listed: Vec<(String, &str)> = Vec::new();
    for (i, e) in fields::list(get("podIPs"), "status.podIPs")?
        .iter()
        .enumerate()
    {
        let path = index("status.podIPs", i);
        let e = fields::object(Some(e), &path, None)?;
        let ip_path = child(&path, "ip");
        if let Some(ip) =
            fields::string(e.and_then(|e| e.get("ip")), &ip_path)?.filter(|s| !s.is_empty())
        {
            listed.push((ip_path, ip));
        }
    }
    // The API server's conversion: `podIP` is authoritative when the two disagree.
    let ips = match (pod_ip, listed.first()) {
        (Some(p), Some((_, first))) if p != *first => vec![("status.podIP".to_string(), p)],
        (_, Some(_)) => listed,
        (Some(p), None) => vec![("status.podIP".to_string(), p)],
        (None, None) => Vec::new(),
    };
    let mut v4 = None;
    for (path, s) in ips {
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if v4.is_none() => v4 = Some(a),
            Ok(IpAddr::V4(_)) => {
                return Err(invalid(
                    &path,
                    &Value::String(s.into()),
                    "may specify no more than one IP for each IP family",
                ));
            }
            Ok(IpAddr::V6(_)) => {}
            Err(_) => {
                return Err(invalid(
                    &path,
                    &Value::String(s.into()),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
    }
    Ok(v4)
}

pub fn read_pod(obj: &Value) -> Result<(ObjectKey, Pod), FieldError> {
    let key = fields::key(obj, POD_KIND, true, NameRule::Subdomain)?;
    let labels = fields::labels(obj.pointer("/metadata/labels"), "metadata.labels")?;
    let spec = fields::object(obj.get("spec"), "spec", None)?;
    let get = |f: &str| spec.and_then(|s| s.get(f));
    let host_network = fields::boolean(get("hostNetwork"), "spec.hostNetwork")?.unwrap_or(false);
    let node_name = fields::string(get("nodeName"), "spec.nodeName")?
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let mut containers = Vec::new();
    read_containers(spec, "containers", &mut containers)?;
    read_containers(spec, "initContainers", &mut containers)?;
    let status = fields::object(obj.get("status"), "status", None)?;
    let phase = match fields::string(status.and_then(|s| s.get("phase")), "status.phase")? {
        None | Some("Pending") => Phase::Pending,
        Some("Running") => Phase::Running,
        Some("Succeeded") => Phase::Succeeded,
        Some("Failed") => Phase::Failed,
        Some("Unknown") => Phase::Unknown,
        Some(p) => {
            return Err(fields::err(
                "status.phase",
                format!(
                    "Unsupported value: {}: supported values: \"Failed\", \"Pending\", \"Running\", \"Succeeded\", \"Unknown\"",
                    fields::shown(&Value::String(p.into()))
                ),
            ));
        }
    };
    Ok((
        key,
        Pod {
            labels,
            ip: read_ip(status)?,
            host_network,
            node_name,
            phase,
            containers,
        },
    ))
}

/// Bits of the owner number that keep Pods (which own no rules) apart from
/// NetworkPolicies, whose cookie kind they share.
pub(crate) const POD_OWNER: u64 = 1 << 40;

/// The Pod kind.
#[derive(Debug)]
pub struct PodKind;

pub static POD: PodKind = PodKind;

static INFO: KindInfo = KindInfo {
    kind: POD_KIND,
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    short: &["po"],
    namespaced: true,
};

pub(crate) fn pod_of(spec: &Spec) -> Option<&Pod> {
    match spec {
        Spec::Pod(p) => Some(p),
        _ => None,
    }
}

fn container_value(c: &Container) -> Value {
    let mut o = json!({
        "name": c.name,
        "ports": c.ports.iter().map(|p| json!({
            "name": p.name, "containerPort": p.port, "protocol": p.protocol.as_str(),
        })).collect::<Vec<_>>(),
    });
    if c.sidecar {
        o["restartPolicy"] = json!("Always");
    }
    o
}

impl Kind for PodKind {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    /// The policies that apply to it or name it.
    fn related(&self, objects: &Objects, key: &ObjectKey, spec: &Spec) -> Vec<ObjectKey> {
        match pod_of(spec) {
            Some(p) => super::netpol::policies_of_pod(objects, &key.namespace, &p.labels),
            None => Vec::new(),
        }
    }

    /// A change of labels alone: the policies whose choice of the Pod it changes (see
    /// [`super::netpol::policies_of_pod_labels`]); any other change: every policy that
    /// applies to it or names it, before or after.
    fn related_change(
        &self,
        objects: &Objects,
        key: &ObjectKey,
        old: &Spec,
        new: &Spec,
    ) -> Vec<ObjectKey> {
        if let (Some(o), Some(n)) = (pod_of(old), pod_of(new))
            && same_but_labels(o, n)
        {
            return super::netpol::policies_of_pod_labels(
                objects,
                &key.namespace,
                &o.labels,
                &n.labels,
            );
        }
        let mut out = self.related(objects, key, old);
        out.extend(self.related(objects, key, new));
        out
    }

    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError> {
        let (k, p) = read_pod(obj)?;
        Ok((k, Spec::Pod(p)))
    }

    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value {
        let Some(p) = pod_of(&stored.spec) else {
            return Value::Null;
        };
        let mut meta = json!({ "name": key.name, "namespace": key.namespace });
        if !p.labels.is_empty() {
            meta["labels"] = json!(p.labels);
        }
        let mut spec = Map::new();
        if let Some(n) = &p.node_name {
            spec.insert("nodeName".into(), json!(n));
        }
        if p.host_network {
            spec.insert("hostNetwork".into(), json!(true));
        }
        for (field, sidecar) in [("containers", false), ("initContainers", true)] {
            let list: Vec<Value> = p
                .containers
                .iter()
                .filter(|c| c.sidecar == sidecar)
                .map(container_value)
                .collect();
            if !list.is_empty() {
                spec.insert(field.into(), Value::Array(list));
            }
        }
        let mut status = json!({ "phase": p.phase.as_str() });
        if let Some(ip) = p.ip {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{ "ip": ip.to_string() }]);
        }
        json!({
            "apiVersion": INFO.version,
            "kind": INFO.kind,
            "metadata": meta,
            "spec": spec,
            "status": status,
        })
    }

    fn columns(&self) -> Vec<GetColumn> {
        let col = |name: &str, wide| GetColumn {
            name: name.into(),
            wide,
        };
        vec![
            col("STATUS", false),
            col("IP", false),
            col("NODE", false),
            col("NAMED-PORTS", true),
            col("LABELS", true),
        ]
    }

    fn cells(&self, _key: &ObjectKey, stored: &Stored) -> Vec<String> {
        let Some(p) = pod_of(&stored.spec) else {
            return Vec::new();
        };
        let ports: Vec<String> = p
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .map(|n| format!("{}:{}/{}", n.name, n.port, n.protocol.as_str()))
            .collect();
        vec![
            p.phase.as_str().into(),
            p.ip.map_or("<none>".into(), |ip| ip.to_string()),
            p.node_name.clone().unwrap_or_else(|| "<none>".into()),
            if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            },
            labels_text(&p.labels),
        ]
    }

    fn owner(&self, stored: &Stored) -> u64 {
        CookieKind::NetworkPolicy.cookie(POD_OWNER | stored.id as u64)
    }
}

#[cfg(test)]
mod tests;
