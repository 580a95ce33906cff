//! The Service and EndpointSlice kinds: a Service's virtual addresses, load-balanced over
//! the endpoints its slices list, as kube-proxy does it (the "Virtual IPs and Service
//! Proxies" page, `pkg/proxy` where the page is silent).
//!
//! - Read: the fields that change forwarding (type, clusterIP(s), ports with their
//!   targetPort by number or name, sessionAffinity, externalIPs, load-balancer ingress,
//!   traffic policies, healthCheckNodePort) and, of a slice, its Service (the
//!   `kubernetes.io/service-name` label), its ports by name, its endpoints with their
//!   conditions, node and zone hints.
//! - Joined: a slice belongs to the Service of its label in its namespace; a Service
//!   port takes the slice port of the same name and protocol (so a named targetPort may
//!   be a different number on each endpoint's slice); an address and port listed twice
//!   (in two slices) is one endpoint.
//! - Eligible endpoints (kube-proxy's `CategorizeEndpoints`): the ready ones; when none is
//!   ready, the serving-and-terminating ones.
//! - Compiled, owned by the Service: per Service port and virtual address (cluster IPs,
//!   external IPs, load-balancer ingress IPs), a ServiceLB rule that sends a new
//!   connection to the port's `select` group; each bucket is one endpoint, whose
//!   `ct(commit, nat(dst=...))` translates and commits the connection (marked
//!   [`ct_mark::SERVICE`], so ConntrackCommit leaves it) and continues in EgressPolicy
//!   with the endpoint as destination. Replies are reversed in the Conntrack table by
//!   the connection's NAT. Headless and ExternalName Services install nothing.

use super::local::from_node_to_service;
use super::pipeline::{
    CookieKind, EXTERNAL_IP, EXTERNAL_LOCAL_IP, NEXT_HOP, NODEPORT_IP, NODEPORT_LOCAL_IP,
    SYSTEM_GROUPS, Source, Table, ct_dnat, ct_mark, reg, rule,
};
use super::{
    Compiled, Dnat, HostRule, Kind, KindInfo, NodeCtx, ObjectKey, Objects, Route, Spec, Stored,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use vswitch_proto::field::ipproto;
use vswitch_proto::group::{Bucket, GroupSpec, GroupType};
use vswitch_proto::k8s::FieldError;
use vswitch_proto::net::Ipv4Cidr;
use vswitch_proto::rpc::GetColumn;

/// The EndpointSlice kind's name.
pub const ENDPOINT_SLICE_KIND: &str = "EndpointSlice";

/// The label that joins a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Service types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// A Service or slice port's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => ipproto::TCP,
            Protocol::Udp => ipproto::UDP,
            Protocol::Sctp => ipproto::SCTP,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    fn read(v: Option<&Value>, path: &str) -> Result<Protocol, FieldError> {
        match v {
            None | Some(Value::Null) => Ok(Protocol::Tcp),
            Some(Value::String(s)) if s == "TCP" => Ok(Protocol::Tcp),
            Some(Value::String(s)) if s == "UDP" => Ok(Protocol::Udp),
            Some(Value::String(s)) if s == "SCTP" => Ok(Protocol::Sctp),
            Some(other) => Err(err(
                path,
                format!("Unsupported value: {other}: supported values: \"SCTP\", \"TCP\", \"UDP\""),
            )),
        }
    }
}

/// A Service port's targetPort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    /// A container port's name, resolved per endpoint (the slices carry the numbers).
    Name(String),
}

/// One of a Service's ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: TargetPort,
    pub node_port: Option<u16>,
}

/// A Service, as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub service_type: ServiceType,
    /// IPv4 cluster IPs; empty for a headless Service (`clusterIP: None`).
    pub cluster_ips: Vec<Ipv4Addr>,
    pub headless: bool,
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP`: its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` whose `ipMode` is not `Proxy`.
    pub lb_ips: Vec<Ipv4Addr>,
    pub external_local: bool,
    pub internal_local: bool,
    pub health_check_node_port: Option<u16>,
    /// `spec.loadBalancerSourceRanges` (IPv4; IPv6 ones are skipped).
    pub source_ranges: Vec<Ipv4Cidr>,
    /// The labels that make kube-proxy leave a Service alone, with their values:
    /// `service.kubernetes.io/service-proxy-name` (another proxy serves it) and
    /// `service.kubernetes.io/headless`. A Service with either installs nothing.
    pub proxy_labels: Vec<(String, String)>,
}

/// Labels whose presence makes kube-proxy (and this switch) ignore a Service.
pub const PROXY_LABELS: [&str; 2] = [
    "service.kubernetes.io/service-proxy-name",
    "service.kubernetes.io/headless",
];

/// A slice's port: the number its endpoints listen on for a Service port of that name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    pub name: String,
    pub protocol: Protocol,
    pub port: Option<u16>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<Ipv4Addr>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// Topology hints: `hints.forZones` names.
    pub hints: Vec<String>,
    /// `hints.forNodes` names (trafficDistribution PreferSameNode).
    pub node_hints: Vec<String>,
}

/// An EndpointSlice, as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The Service it belongs to (its `kubernetes.io/service-name` label), if any.
    pub service: Option<String>,
    /// `IPv4`, `IPv6` or `FQDN`; only IPv4 slices are used (IPv6 is not routed yet).
    pub address_type: String,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<Endpoint>,
}

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// `metadata.name` and `metadata.namespace` (default `default`).
fn meta(obj: &Value, kind: &'static str) -> Result<ObjectKey, FieldError> {
    let m = obj.get("metadata");
    let name = m
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| err("metadata.name", "Required value"))?;
    let namespace = m
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    Ok(ObjectKey {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

fn port_number(v: &Value, path: &str) -> Result<u16, FieldError> {
    v.as_u64()
        .filter(|p| (1..=65535).contains(p))
        .map(|p| p as u16)
        .ok_or_else(|| {
            err(
                path,
                format!("Invalid value: {v}: must be between 1 and 65535, inclusive"),
            )
        })
}

fn opt_port(o: &Value, field: &str, path: &str) -> Result<Option<u16>, FieldError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(None),
        Some(v) => port_number(v, path).map(Some),
    }
}

fn str_list<'a>(v: Option<&'a Value>, path: &str) -> Result<Vec<&'a str>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .ok_or_else(|| err(&format!("{path}[{i}]"), "must be a string"))
            })
            .collect(),
        Some(_) => Err(err(path, "must be a list")),
    }
}

/// A CIDR as Kubernetes writes one; an address alone is its `/32` (as kube-proxy takes
/// one). Host bits set are refused (the API server refuses them too).
fn cidr(s: &str) -> Option<Ipv4Cidr> {
    match s.split_once('/') {
        Some((a, p)) => Ipv4Cidr::new(a.parse().ok()?, p.parse().ok()?),
        None => Some(Ipv4Cidr::host(s.parse().ok()?)),
    }
}

/// An address of a family this switch routes: IPv4 (`Ok(Some)`), IPv6 (`Ok(None)`:
/// skipped), else an error naming the field.
fn ip(s: &str, path: &str) -> Result<Option<Ipv4Addr>, FieldError> {
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Ok(Some(a)),
        Ok(std::net::IpAddr::V6(_)) => Ok(None),
        Err(_) => Err(err(
            path,
            format!("Invalid value: {s:?}: must be a valid IP address"),
        )),
    }
}

fn read_service(obj: &Value) -> Result<(ObjectKey, Service), FieldError> {
    let key = meta(obj, SERVICE_INFO.kind)?;
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").unwrap_or(&empty);
    let service_type = match spec.get("type").and_then(Value::as_str) {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(t) => {
            return Err(err(
                "spec.type",
                format!(
                    "Unsupported value: {t:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
                ),
            ));
        }
    };
    let mut ips = str_list(spec.get("clusterIPs"), "spec.clusterIPs")?;
    let ips_path = if ips.is_empty() {
        ips.extend(spec.get("clusterIP").and_then(Value::as_str));
        "spec.clusterIP"
    } else {
        "spec.clusterIPs"
    };
    let headless = ips.first().is_some_and(|s| *s == "None");
    let mut cluster_ips = Vec::new();
    if !headless && service_type != ServiceType::ExternalName {
        if ips.iter().all(|s| s.is_empty()) {
            return Err(err(
                ips_path,
                "Required value: the API server allocates it; apply the Service as `kubectl get -o yaml` prints it",
            ));
        }
        for (i, s) in ips.iter().enumerate() {
            cluster_ips.extend(ip(s, &format!("{ips_path}[{i}]"))?);
        }
    }
    let mut ports = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(list) = spec.get("ports").and_then(Value::as_array) {
        for (i, p) in list.iter().enumerate() {
            let path = |f: &str| format!("spec.ports[{i}].{f}");
            let port = port_number(p.get("port").unwrap_or(&Value::Null), &path("port"))?;
            let protocol = Protocol::read(p.get("protocol"), &path("protocol"))?;
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !seen.insert((port, protocol)) {
                return Err(err(
                    &path("port"),
                    format!(
                        "Duplicate value: {port}/{}: a Service lists each port and protocol once",
                        protocol.as_str()
                    ),
                ));
            }
            let target_port = match p.get("targetPort") {
                None | Some(Value::Null) => TargetPort::Number(port),
                Some(Value::String(s)) if s.is_empty() => TargetPort::Number(port),
                Some(Value::String(s)) => match s.parse::<u16>() {
                    Ok(n) if n > 0 => TargetPort::Number(n),
                    _ => TargetPort::Name(s.clone()),
                },
                Some(v) => TargetPort::Number(port_number(v, &path("targetPort"))?),
            };
            ports.push(ServicePort {
                name,
                protocol,
                port,
                target_port,
                node_port: opt_port(p, "nodePort", &path("nodePort"))?,
            });
        }
    }
    let affinity_timeout = match spec.get("sessionAffinity").and_then(Value::as_str) {
        None | Some("None") => None,
        Some("ClientIP") => {
            let t = spec
                .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .filter(|v| !v.is_null());
            Some(match t {
                None => 10800,
                Some(v) => v
                    .as_u64()
                    .filter(|t| (1..=86400).contains(t))
                    .ok_or_else(|| {
                        err(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                            format!(
                                "Invalid value: {v}: must be greater than 0 and less than 86400"
                            ),
                        )
                    })? as u32,
            })
        }
        Some(a) => {
            return Err(err(
                "spec.sessionAffinity",
                format!("Unsupported value: {a:?}: supported values: \"ClientIP\", \"None\""),
            ));
        }
    };
    let mut external_ips = Vec::new();
    for (i, s) in str_list(spec.get("externalIPs"), "spec.externalIPs")?
        .into_iter()
        .enumerate()
    {
        external_ips.extend(ip(s, &format!("spec.externalIPs[{i}]"))?);
    }
    let mut lb_ips = Vec::new();
    if let Some(list) = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
    {
        for (i, ing) in list.iter().enumerate() {
            let proxy = ing.get("ipMode").and_then(Value::as_str) == Some("Proxy");
            if let Some(s) = ing.get("ip").and_then(Value::as_str)
                && !proxy
            {
                lb_ips.extend(ip(s, &format!("status.loadBalancer.ingress[{i}].ip"))?);
            }
        }
    }
    let policy = |field: &str| -> Result<bool, FieldError> {
        match spec.get(field).and_then(Value::as_str) {
            None | Some("Cluster") => Ok(false),
            Some("Local") => Ok(true),
            Some(p) => Err(err(
                &format!("spec.{field}"),
                format!("Unsupported value: {p:?}: supported values: \"Cluster\", \"Local\""),
            )),
        }
    };
    let mut source_ranges = Vec::new();
    for (i, r) in str_list(
        spec.get("loadBalancerSourceRanges"),
        "spec.loadBalancerSourceRanges",
    )?
    .into_iter()
    .enumerate()
    {
        if r.contains(':') {
            continue;
        }
        source_ranges.push(cidr(r.trim()).ok_or_else(|| {
            err(
                &format!("spec.loadBalancerSourceRanges[{i}]"),
                format!("Invalid value: {r:?}: must be a CIDR (192.0.2.0/24)"),
            )
        })?);
    }
    let labels = obj.pointer("/metadata/labels");
    let proxy_labels = PROXY_LABELS
        .iter()
        .filter_map(|l| {
            let v = labels?.get(*l)?;
            Some((l.to_string(), v.as_str().unwrap_or_default().to_string()))
        })
        .collect();
    Ok((
        key,
        Service {
            proxy_labels,
            source_ranges,
            service_type,
            cluster_ips,
            headless,
            ports,
            affinity_timeout,
            external_ips,
            lb_ips,
            external_local: policy("externalTrafficPolicy")?,
            internal_local: policy("internalTrafficPolicy")?,
            health_check_node_port: opt_port(
                spec,
                "healthCheckNodePort",
                "spec.healthCheckNodePort",
            )?,
        },
    ))
}

fn read_slice(obj: &Value) -> Result<(ObjectKey, Slice), FieldError> {
    let key = meta(obj, SLICE_INFO.kind)?;
    let service = obj
        .pointer("/metadata/labels")
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let address_type = obj
        .get("addressType")
        .and_then(Value::as_str)
        .ok_or_else(|| err("addressType", "Required value"))?;
    if !matches!(address_type, "IPv4" | "IPv6" | "FQDN") {
        return Err(err(
            "addressType",
            format!(
                "Unsupported value: {address_type:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\""
            ),
        ));
    }
    let mut ports = Vec::new();
    if let Some(list) = obj.get("ports").and_then(Value::as_array) {
        for (i, p) in list.iter().enumerate() {
            ports.push(SlicePort {
                name: p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                protocol: Protocol::read(p.get("protocol"), &format!("ports[{i}].protocol"))?,
                port: opt_port(p, "port", &format!("ports[{i}].port"))?,
            });
        }
    }
    let mut endpoints = Vec::new();
    if let Some(list) = obj.get("endpoints").and_then(Value::as_array) {
        for (i, e) in list.iter().enumerate() {
            let path = format!("endpoints[{i}].addresses");
            let raw = str_list(e.get("addresses"), &path)?;
            if raw.is_empty() {
                return Err(err(&path, "Required value"));
            }
            let mut addresses = Vec::new();
            if address_type == "IPv4" {
                for (j, s) in raw.iter().enumerate() {
                    match ip(s, &format!("{path}[{j}]"))? {
                        Some(a) => addresses.push(a),
                        None => {
                            return Err(err(
                                &format!("{path}[{j}]"),
                                format!("Invalid value: {s:?}: must be an IPv4 address"),
                            ));
                        }
                    }
                }
            }
            // Conditions: a missing `ready` means ready, a missing `serving` means what
            // `ready` says, a missing `terminating` means not (the API's definitions).
            let cond = |c: &str| {
                e.pointer(&format!("/conditions/{c}"))
                    .and_then(Value::as_bool)
            };
            let ready = cond("ready").unwrap_or(true);
            let text = |f: &str| e.get(f).and_then(Value::as_str).map(str::to_string);
            endpoints.push(Endpoint {
                addresses,
                ready,
                serving: cond("serving").unwrap_or(ready),
                terminating: cond("terminating").unwrap_or(false),
                node_name: text("nodeName"),
                zone: text("zone"),
                hints: names(e.pointer("/hints/forZones")),
                node_hints: names(e.pointer("/hints/forNodes")),
            });
        }
    }
    Ok((
        key,
        Slice {
            service,
            address_type: address_type.to_string(),
            ports,
            endpoints,
        },
    ))
}

/// One endpoint chosen for a Service port: its address, the port it listens on, and
/// where it runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub node: Option<String>,
    /// The zones its topology hints name (`hints.forZones`).
    pub zones: Vec<String>,
    /// The nodes they name (`hints.forNodes`).
    pub nodes: Vec<String>,
}

/// The endpoints of Service port `sp` that new connections may go to, in a stable order
/// (kube-proxy's rules): the ready ones of every IPv4 slice of the Service; when none is
/// ready, the serving and terminating ones. Each address and port once.
pub fn backends<'a>(sp: &ServicePort, slices: impl Iterator<Item = &'a Slice>) -> Vec<Backend> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for s in slices.filter(|s| s.address_type == "IPv4") {
        let Some(port) = s
            .ports
            .iter()
            .find(|p| p.name == sp.name && p.protocol == sp.protocol)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in &s.endpoints {
            let set = if e.ready {
                &mut ready
            } else if e.serving && e.terminating {
                &mut terminating
            } else {
                continue;
            };
            for &ip in &e.addresses {
                set.insert(Backend {
                    ip,
                    port,
                    node: e.node_name.clone(),
                    zones: e.hints.clone(),
                    nodes: e.node_hints.clone(),
                });
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    // One address and port once even when two slices disagree on its node.
    let mut out: Vec<Backend> = Vec::with_capacity(chosen.len());
    for b in chosen {
        if out.last().is_none_or(|l| (l.ip, l.port) != (b.ip, b.port)) {
            out.push(b);
        }
    }
    out
}

/// Topology hints, as kube-proxy uses them (`CategorizeEndpoints`,
/// `topologyModeFromHints`): when every endpoint has node hints and one names this node,
/// the endpoints hinted for it (trafficDistribution PreferSameNode); else, when every
/// endpoint has zone hints and one names the node's zone, those hinted for the zone;
/// otherwise all of them.
pub fn by_topology(all: Vec<Backend>, node: &str, zone: Option<&str>) -> Vec<Backend> {
    let fits = |hints: fn(&Backend) -> &Vec<String>, name: &str| {
        !all.iter().any(|b| hints(b).is_empty())
            && all.iter().any(|b| hints(b).iter().any(|h| h == name))
    };
    let (hints, name): (fn(&Backend) -> &Vec<String>, &str) = if fits(|b| &b.nodes, node) {
        (|b| &b.nodes, node)
    } else if let Some(z) = zone.filter(|z| fits(|b| &b.zones, z)) {
        (|b| &b.zones, z)
    } else {
        return all;
    };
    all.into_iter()
        .filter(|b| hints(b).iter().any(|h| h == name))
        .collect()
}

/// The `name`s of a list of `{name: ...}` (topology hints).
fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|x| x.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The key of slice-owning Service `name` in `namespace`.
pub fn service_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: SERVICE_INFO.kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// Service ids above this have no group ids left (far above Kubernetes' 10,000 Services
/// per cluster).
const MAX_SERVICE_ID: u32 = (*SYSTEM_GROUPS.end() - *SYSTEM_GROUPS.start()) >> GROUP_BITS;
/// Group ids per Service: for each of its first 32 ports, one group of every endpoint and
/// one of the node's own (internalTrafficPolicy Local).
const GROUP_BITS: u32 = 6;
const MAX_PORTS: usize = 32;

/// Every group id the Service with id `id` may have.
pub fn groups_of(id: u32) -> impl Iterator<Item = u32> {
    (0..MAX_PORTS).flat_map(move |i| [false, true].map(|l| group_id(id, i, l)))
}

/// The group of the `i`th port of the Service with id `id`: of its node-local endpoints
/// when `local`.
pub fn group_id(id: u32, i: usize, local: bool) -> u32 {
    SYSTEM_GROUPS.start() + (id << GROUP_BITS | (local as u32) << 5 | i as u32)
}

fn service_of(spec: &Spec) -> Option<&Service> {
    match spec {
        Spec::Service(s) => Some(s),
        _ => None,
    }
}

fn slice_of(spec: &Spec) -> Option<&Slice> {
    match spec {
        Spec::Slice(s) => Some(s),
        _ => None,
    }
}

/// The slices of Service `key`.
fn slices_of<'a>(objects: &'a Objects, key: &'a ObjectKey) -> impl Iterator<Item = &'a Slice> {
    objects
        .slices_of(&key.namespace, &key.name)
        .filter_map(|k| slice_of(&objects.get(&k)?.spec))
}

/// A select group over `backends`, one bucket each: the connection translated to it and
/// committed, continuing in EgressPolicy.
fn endpoint_group(group_id: u32, backends: &[Backend], affinity: Option<u32>) -> GroupSpec {
    GroupSpec {
        group_id,
        group_type: GroupType::Select,
        buckets: backends
            .iter()
            .enumerate()
            .map(|(b, e)| Bucket {
                bucket_id: b as u32,
                weight: 1,
                watch_port: None,
                actions: vec![ct_dnat(
                    e.ip,
                    e.port,
                    ct_mark::SERVICE | ct_mark::PENDING,
                    Table::EgressPolicy,
                )],
            })
            .collect(),
        selection: None,
        affinity,
    }
}

/// A Service's rules and groups, on node `node` (its name says which endpoints are
/// local; its address carries NodePorts).
pub fn compile_service(
    id: u32,
    svc: &Service,
    objects: &Objects,
    key: &ObjectKey,
    node: &NodeCtx,
) -> Compiled {
    let mut c = Compiled::default();
    if svc.service_type == ServiceType::ExternalName
        || svc.headless
        || !svc.proxy_labels.is_empty()
        || id > MAX_SERVICE_ID
    {
        return c;
    }
    // Cluster IPs follow internalTrafficPolicy; external and load-balancer IPs reached
    // from inside the cluster go to any endpoint (kube-proxy's short cut), and so do this
    // node's Pods reaching a NodePort on the node's address.
    let external: Vec<Ipv4Addr> = svc
        .external_ips
        .iter()
        .chain(&svc.lb_ips)
        .copied()
        .collect();
    let frontends: Vec<(Ipv4Addr, bool)> = svc
        .cluster_ips
        .iter()
        .map(|&ip| (ip, svc.internal_local))
        .chain(external.iter().map(|&ip| (ip, false)))
        .collect();
    let node_port = matches!(
        svc.service_type,
        ServiceType::NodePort | ServiceType::LoadBalancer
    );
    // From outside the node (through the node's stack, `HostRule`s below): a NodePort
    // arrives at NODEPORT_IP (externalTrafficPolicy Cluster, from the gateway's address)
    // or NODEPORT_LOCAL_IP (Local, the client's address kept).
    let from_outside = node.local.is_some();
    let (np_ip, etp_local) = if svc.external_local {
        (NODEPORT_LOCAL_IP, true)
    } else {
        (NODEPORT_IP, false)
    };
    // Load-balancer IPs restricted to source ranges (a LoadBalancer Service's own).
    let ranged: Vec<Ipv4Addr> =
        if svc.service_type == ServiceType::LoadBalancer && !svc.source_ranges.is_empty() {
            svc.lb_ips.clone()
        } else {
            Vec::new()
        };
    let mut local_count = 0;
    for (i, sp) in svc.ports.iter().enumerate().take(MAX_PORTS) {
        let proto = sp.protocol.number();
        let every = backends(sp, slices_of(objects, key));
        // Local policies use this node's endpoints, whatever their hints; the others
        // follow the hints.
        let local: Vec<Backend> = every
            .iter()
            .filter(|b| b.node.as_deref() == Some(node.name))
            .cloned()
            .collect();
        let all = by_topology(every, node.name, node.zone);
        local_count = local_count.max(local.len());
        let mut targets: Vec<Target> = Vec::new();
        for &(ip, l) in &frontends {
            if ranged.contains(&ip) {
                targets.extend(source_ranged(ip, sp.port, &svc.source_ranges));
                if from_outside {
                    c.host
                        .extend(svc.source_ranges.iter().map(|&r| HostRule::SourceRange {
                            ip,
                            proto,
                            port: sp.port,
                            range: Some(r),
                        }));
                    c.host.push(HostRule::SourceRange {
                        ip,
                        proto,
                        port: sp.port,
                        range: None,
                    });
                }
            } else {
                targets.push(Target::new(ip, sp.port, l));
            }
        }
        if let (true, Some(np)) = (node_port, sp.node_port) {
            targets.extend(node.node_ip.map(|ip| Target::new(ip, np, false)));
            if from_outside {
                targets.push(Target::new(np_ip, np, etp_local));
                c.host.push(HostRule::NodePort {
                    proto,
                    port: np,
                    local: etp_local,
                });
            }
        }
        if from_outside {
            for &ip in &external {
                if Some(ip) == node.node_ip {
                    // The node's own address: its stack keeps what arrives for it, so
                    // its `nat` table hands this port to the switch at another address.
                    let alias = if etp_local {
                        EXTERNAL_LOCAL_IP
                    } else {
                        EXTERNAL_IP
                    };
                    targets.push(Target::new(alias, sp.port, etp_local));
                    c.host.push(HostRule::NodeAddress {
                        ip,
                        proto,
                        port: sp.port,
                        local: etp_local,
                    });
                } else if let (true, Some(n)) = (etp_local, node.local) {
                    // From outside, with the client's own address: local endpoints only;
                    // the node's own connections (from the gateway's address) anywhere.
                    targets.push(Target {
                        priority: 201,
                        from: Some(Source::Gateway),
                        ..Target::new(ip, sp.port, true)
                    });
                    targets.push(Target {
                        priority: 202,
                        from: Some(Source::Gateway),
                        src: Some(Ipv4Cidr::host(n.gateway_ip())),
                        ..Target::new(ip, sp.port, false)
                    });
                } else {
                    c.host.push(HostRule::Masquerade {
                        ip,
                        proto,
                        port: sp.port,
                    });
                }
            }
        }
        for is_local in [false, true] {
            let set = if is_local { &local } else { &all };
            if !set.is_empty() && targets.iter().any(|f| f.local == is_local) {
                c.groups.push(endpoint_group(
                    group_id(id, i, is_local),
                    set,
                    svc.affinity_timeout,
                ));
            }
        }
        for t in &targets {
            let mut r = rule(Table::ServiceLb, t.priority);
            if let Some(from) = t.from {
                r = r.reg(reg::SOURCE, from as u32);
            }
            if let Some(src) = t.src {
                r = r.nw_src_net(src);
            }
            r = r.ip().nw_dst(t.ip).nw_proto(proto).tp_dst(t.port);
            if t.deny {
                // Outside a load balancer's source ranges.
                c.rules.push(r.drop());
                continue;
            }
            let set = if t.local { &local } else { &all };
            c.backends.extend(set.iter().map(|b| Dnat {
                proto,
                vip: t.ip,
                vport: t.port,
                ep: b.ip,
                eport: b.port,
            }));
            c.rules.push(if set.is_empty() && !t.local {
                // No endpoint: refused at once, as kube-proxy does (a TCP reset, an ICMP
                // port unreachable otherwise), so clients fail fast instead of timing out.
                r.then(vswitch_proto::action::Action::Reject)
            } else if set.is_empty() {
                // A Local traffic policy and no endpoint on this node: Kubernetes drops.
                r.drop()
            } else {
                r.group(group_id(id, i, t.local))
            });
        }
    }
    // A cluster IP answers only on its ports: anything else sent to it is refused, as
    // kube-proxy's nftables mode does (instead of wandering to the node and back).
    for &ip in &svc.cluster_ips {
        c.rules.push(
            rule(Table::ServiceLb, 100)
                .ip()
                .nw_dst(ip)
                .then(vswitch_proto::action::Action::Reject),
        );
    }
    if let Some(n) = node.local.filter(|_| !external.is_empty()) {
        // The node routes external and load-balancer addresses to the switch.
        // The node's own address is not routed (its local routes come first): see
        // `HostRule::NodeAddress`.
        for &ip in external.iter().filter(|&&ip| Some(ip) != node.node_ip) {
            let dst = Ipv4Cidr::host(ip);
            c.routes.push(Route { dst, via: NEXT_HOP });
            c.rules.push(from_node_to_service(n, dst));
        }
    }
    if let (true, true, Some(port)) = (
        from_outside && svc.service_type == ServiceType::LoadBalancer,
        etp_local,
        svc.health_check_node_port,
    ) {
        c.host.push(HostRule::HealthCheck {
            port,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            local_endpoints: local_count,
        });
    }
    c
}

/// A Service address and port a rule of ServiceLB matches.
struct Target {
    ip: Ipv4Addr,
    port: u16,
    /// To the node's own endpoints only.
    local: bool,
    priority: u16,
    /// Only what comes in from there: an externalTrafficPolicy Local external address
    /// reached through the node tells clients outside from the node itself by the
    /// gateway's address; a load balancer's source ranges let the node's traffic through
    /// (what came from outside was checked by the node).
    from: Option<Source>,
    /// Only from these addresses.
    src: Option<Ipv4Cidr>,
    /// Dropped: not from a load balancer's source ranges.
    deny: bool,
}

impl Target {
    fn new(ip: Ipv4Addr, port: u16, local: bool) -> Target {
        Target {
            ip,
            port,
            local,
            priority: 200,
            from: None,
            src: None,
            deny: false,
        }
    }
}

/// `loadBalancerSourceRanges` for load-balancer IP `ip` and `port`, reached from inside
/// the cluster (kube-proxy checks them for every client): from a Pod, only from the
/// ranges; from the node (its own connections, and those from outside the node, which
/// its firewall chain checked before masquerading them), always; anything else dropped.
fn source_ranged(ip: Ipv4Addr, port: u16, ranges: &[Ipv4Cidr]) -> Vec<Target> {
    let mut v: Vec<Target> = ranges
        .iter()
        .map(|&r| Target {
            src: Some(r),
            ..Target::new(ip, port, false)
        })
        .collect();
    v.push(Target {
        from: Some(Source::Gateway),
        ..Target::new(ip, port, false)
    });
    v.push(Target {
        priority: 199,
        deny: true,
        ..Target::new(ip, port, false)
    });
    v
}

/// The Service kind.
#[derive(Debug)]
pub struct ServiceKind;

pub static SERVICE: ServiceKind = ServiceKind;

static SERVICE_INFO: KindInfo = KindInfo {
    kind: "Service",
    group: "",
    version: "v1",
    plural: "services",
    singular: "service",
    short: &["svc"],
    namespaced: true,
};

/// The endpoints of a Service's groups, each with the new connections sent to it (its
/// bucket's packets), as `get svc -o wide` shows them: `10.244.1.5:8080 (12)`, by port,
/// `<none>` without any.
/// The endpoint a Service group's bucket translates to, `IP:PORT`.
pub fn bucket_endpoint(b: &Bucket) -> Option<String> {
    b.actions.iter().find_map(|a| match a {
        vswitch_proto::action::Action::Ct(ct) => {
            let nat = ct.nat.as_ref()?;
            Some(format!("{}:{}", nat.addrs?.0, nat.ports?.0))
        }
        _ => None,
    })
}

pub fn endpoints_cell(
    id: u32,
    svc: &Service,
    group: impl Fn(u32) -> Option<Vec<(String, u64)>>,
) -> String {
    let mut out = Vec::new();
    for i in 0..svc.ports.len().min(MAX_PORTS) {
        for local in [false, true] {
            for (ep, n) in group(group_id(id, i, local)).unwrap_or_default() {
                out.push(format!("{ep} ({n})"));
            }
        }
    }
    if out.is_empty() {
        "<none>".into()
    } else {
        out.join(",")
    }
}

/// `get`'s columns: `shown` always, `wide` with `-o wide`.
fn columns(shown: &[&str], wide: &[&str]) -> Vec<GetColumn> {
    let col = |wide| {
        move |n: &&str| GetColumn {
            name: n.to_string(),
            wide,
        }
    };
    shown
        .iter()
        .map(col(false))
        .chain(wide.iter().map(col(true)))
        .collect()
}

fn port_text(p: &ServicePort) -> String {
    match p.node_port {
        Some(n) => format!("{}:{n}/{}", p.port, p.protocol.as_str()),
        None => format!("{}/{}", p.port, p.protocol.as_str()),
    }
}

fn ips_text(ips: &[Ipv4Addr], none: &str) -> String {
    if ips.is_empty() {
        none.to_string()
    } else {
        ips.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Kind for ServiceKind {
    fn info(&self) -> &'static KindInfo {
        &SERVICE_INFO
    }

    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError> {
        let (k, s) = read_service(obj)?;
        Ok((k, Spec::Service(s)))
    }

    fn compile(
        &self,
        node: &NodeCtx,
        objects: &Objects,
        key: &ObjectKey,
        stored: &Stored,
    ) -> Compiled {
        service_of(&stored.spec)
            .map(|s| compile_service(stored.id, s, objects, key, node))
            .unwrap_or_default()
    }

    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value {
        let Some(s) = service_of(&stored.spec) else {
            return Value::Null;
        };
        let ips: Vec<String> = if s.headless {
            vec!["None".into()]
        } else {
            s.cluster_ips.iter().map(|i| i.to_string()).collect()
        };
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| {
                let mut o = json!({
                    "name": p.name, "protocol": p.protocol.as_str(), "port": p.port,
                    "targetPort": match &p.target_port {
                        TargetPort::Number(n) => json!(n),
                        TargetPort::Name(n) => json!(n),
                    },
                });
                if let Some(n) = p.node_port {
                    o["nodePort"] = json!(n);
                }
                o
            })
            .collect();
        let mut spec = json!({
            "type": s.service_type.as_str(),
            "ports": ports,
            "sessionAffinity": if s.affinity_timeout.is_some() { "ClientIP" } else { "None" },
            "externalTrafficPolicy": if s.external_local { "Local" } else { "Cluster" },
            "internalTrafficPolicy": if s.internal_local { "Local" } else { "Cluster" },
        });
        if let Some(first) = ips.first() {
            spec["clusterIP"] = json!(first);
            spec["clusterIPs"] = json!(ips);
        }
        if let Some(t) = s.affinity_timeout {
            spec["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": t } });
        }
        if !s.external_ips.is_empty() {
            spec["externalIPs"] = json!(
                s.external_ips
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
            );
        }
        if let Some(p) = s.health_check_node_port {
            spec["healthCheckNodePort"] = json!(p);
        }
        if !s.source_ranges.is_empty() {
            spec["loadBalancerSourceRanges"] = json!(
                s.source_ranges
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
            );
        }
        let mut o = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": key.name, "namespace": key.namespace },
            "spec": spec,
        });
        if !s.proxy_labels.is_empty() {
            o["metadata"]["labels"] = s
                .proxy_labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<String, Value>>()
                .into();
        }
        if !s.lb_ips.is_empty() {
            o["status"] = json!({ "loadBalancer": { "ingress":
                s.lb_ips.iter().map(|i| json!({ "ip": i.to_string() })).collect::<Vec<_>>() } });
        }
        o
    }

    fn columns(&self) -> Vec<GetColumn> {
        columns(
            &["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"],
            &["ENDPOINTS"],
        )
    }

    fn cells(&self, _key: &ObjectKey, stored: &Stored) -> Vec<String> {
        let Some(s) = service_of(&stored.spec) else {
            return Vec::new();
        };
        let external: Vec<Ipv4Addr> = s.lb_ips.iter().chain(&s.external_ips).copied().collect();
        let external = if external.is_empty() && s.service_type == ServiceType::LoadBalancer {
            "<pending>".to_string()
        } else {
            ips_text(&external, "<none>")
        };
        vec![
            s.service_type.as_str().into(),
            if s.headless {
                "None".into()
            } else {
                ips_text(&s.cluster_ips, "<none>")
            },
            external,
            if s.ports.is_empty() {
                "<none>".into()
            } else {
                s.ports.iter().map(port_text).collect::<Vec<_>>().join(",")
            },
            // The daemon fills this from the groups' counters (`endpoints_cell`).
            String::new(),
        ]
    }

    fn owner(&self, stored: &Stored) -> u64 {
        CookieKind::Service.cookie(stored.id as u64)
    }
}

/// The EndpointSlice kind.
#[derive(Debug)]
pub struct SliceKind;

pub static ENDPOINT_SLICE: SliceKind = SliceKind;

static SLICE_INFO: KindInfo = KindInfo {
    kind: ENDPOINT_SLICE_KIND,
    group: "discovery.k8s.io",
    version: "v1",
    plural: "endpointslices",
    singular: "endpointslice",
    short: &[],
    namespaced: true,
};

impl Kind for SliceKind {
    fn info(&self) -> &'static KindInfo {
        &SLICE_INFO
    }

    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError> {
        let (k, s) = read_slice(obj)?;
        Ok((k, Spec::Slice(s)))
    }

    /// A slice owns nothing: its Service's rules change with it.
    fn compile(&self, _: &NodeCtx, _: &Objects, _: &ObjectKey, _: &Stored) -> Compiled {
        Compiled::default()
    }

    fn related(&self, _objects: &super::Objects, key: &ObjectKey, spec: &Spec) -> Vec<ObjectKey> {
        slice_of(spec)
            .and_then(|s| s.service.as_deref())
            .map(|svc| vec![service_key(&key.namespace, svc)])
            .unwrap_or_default()
    }

    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value {
        let Some(s) = slice_of(&stored.spec) else {
            return Value::Null;
        };
        let mut labels = Map::new();
        if let Some(svc) = &s.service {
            labels.insert(SERVICE_NAME_LABEL.into(), json!(svc));
        }
        json!({
            "apiVersion": SLICE_INFO.api_version(),
            "kind": SLICE_INFO.kind,
            "metadata": { "name": key.name, "namespace": key.namespace, "labels": labels },
            "addressType": s.address_type,
            "ports": s.ports.iter().map(|p| json!({
                "name": p.name, "protocol": p.protocol.as_str(), "port": p.port,
            })).collect::<Vec<_>>(),
            "endpoints": s.endpoints.iter().map(|e| {
                let mut o = json!({
                    "addresses": e.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "conditions": { "ready": e.ready, "serving": e.serving, "terminating": e.terminating },
                });
                if let Some(n) = &e.node_name { o["nodeName"] = json!(n); }
                if let Some(z) = &e.zone { o["zone"] = json!(z); }
                let named = |v: &[String]| v.iter().map(|h| json!({ "name": h })).collect::<Vec<_>>();
                if !e.hints.is_empty() {
                    o["hints"]["forZones"] = json!(named(&e.hints));
                }
                if !e.node_hints.is_empty() {
                    o["hints"]["forNodes"] = json!(named(&e.node_hints));
                }
                o
            }).collect::<Vec<_>>(),
        })
    }

    fn columns(&self) -> Vec<GetColumn> {
        columns(&["ADDRESSTYPE", "PORTS", "ENDPOINTS"], &[])
    }

    fn cells(&self, _key: &ObjectKey, stored: &Stored) -> Vec<String> {
        let Some(s) = slice_of(&stored.spec) else {
            return Vec::new();
        };
        let ports: Vec<String> = s
            .ports
            .iter()
            .filter_map(|p| p.port.map(|n| n.to_string()))
            .collect();
        let eps: Vec<String> = s
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().map(|a| a.to_string()))
            .collect();
        let eps = if eps.len() > 3 {
            format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
        } else if eps.is_empty() {
            "<unset>".into()
        } else {
            eps.join(",")
        };
        vec![
            s.address_type.clone(),
            if ports.is_empty() {
                "<unset>".into()
            } else {
                ports.join(",")
            },
            eps,
        ]
    }

    fn owner(&self, stored: &Stored) -> u64 {
        // Slices own no rules; an owner id of their own keeps them apart from Services'.
        CookieKind::Service.cookie(1 << 40 | stored.id as u64)
    }
}

#[cfg(test)]
mod tests;
