//! The NetworkPolicy kind (`networking.k8s.io/v1`): read, validated as the API server
//! validates it, kept typed for the policy compiler.
//!
//! What a policy says (the API reference's words, which the types below keep):
//! - `podSelector` picks Pods of the policy's namespace (`{}`: all of them).
//! - `policyTypes` says which directions those Pods are isolated in. Absent (or empty),
//!   it is `Ingress`, plus `Egress` when the policy has egress rules; a list given is
//!   respected (`[Egress]` leaves ingress alone whatever `ingress` says). Isolated in a
//!   direction, a Pod accepts what the union of the rules of every policy selecting it
//!   in that direction allows: no rules (`ingress: []` or none) allow nothing.
//! - A rule allows traffic from (ingress) or to (egress) its peers on its ports. No
//!   `from`/`to` (or an empty list) is every peer; no `ports` (or an empty list) is every
//!   port: [`Peers::Any`], [`Ports::Any`]. Otherwise the peers are ORed, and so are the
//!   ports.
//! - A peer is Pods (`podSelector` in the policy's namespace; `namespaceSelector`: every
//!   Pod of the namespaces it selects; both in one peer: the Pods `podSelector` selects
//!   in the namespaces `namespaceSelector` selects, an AND), or an `ipBlock` (a CIDR less
//!   its `except`s, which must be strict subsets of it). IPv6 blocks are kept and match
//!   no IPv4 traffic: dropping them would turn a rule whose peers are all IPv6 into a
//!   rule of every peer.
//! - A port is a protocol (TCP when absent, UDP, SCTP) and a number, a range
//!   (`endPort`, only with a number, not below it), a name (resolved per destination Pod
//!   from its container ports) or nothing (every port of the protocol).
//!
//! A field the API does not have is refused (a mistyped `ingres` or `matchLabel` would
//! otherwise change what is allowed), anywhere in `spec`.

use super::fields::{self, NameRule, child, err, index, invalid, required, shown};
use super::names;
use super::pipeline::CookieKind;
use super::pod;
use super::selector::LabelSelector;
use super::service::Protocol;
use super::{Compiled, Kind, KindInfo, Labels, NodeCtx, ObjectKey, Objects, Spec, Stored};
use serde_json::{Map, Value, json};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use vswitch_proto::k8s::FieldError;
use vswitch_proto::net::Ipv4Cidr;
use vswitch_proto::rpc::GetColumn;

pub const NETWORK_POLICY_KIND: &str = "NetworkPolicy";

/// The directions a policy isolates the Pods it selects in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyTypes {
    pub ingress: bool,
    pub egress: bool,
}

/// An IPv4 or IPv6 network, as an `ipBlock` writes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpNet {
    V4(Ipv4Cidr),
    V6 { net: Ipv6Addr, prefix: u8 },
}

impl IpNet {
    /// Whether `other` is inside this network and smaller (the API's "strict subset").
    fn strictly_contains(self, other: IpNet) -> bool {
        match (self, other) {
            (IpNet::V4(a), IpNet::V4(b)) => a.contains(b.network()) && a.prefix() < b.prefix(),
            (IpNet::V6 { net: a, prefix: p }, IpNet::V6 { net: b, prefix: q }) => {
                p < q && (u128::from(a) ^ u128::from(b)) & v6_mask(p) == 0
            }
            _ => false,
        }
    }
}

fn v6_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpNet::V4(c) => write!(f, "{c}"),
            IpNet::V6 { net, prefix } => write!(f, "{net}/{prefix}"),
        }
    }
}

/// An `ipBlock` peer: `cidr` less each of `except` (each strictly inside `cidr`, and of
/// its family).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlock {
    /// The block as IPv4 networks: its CIDR and the exceptions; `None` for an IPv6
    /// block, which matches no IPv4 packet.
    pub fn ipv4(&self) -> Option<(Ipv4Cidr, Vec<Ipv4Cidr>)> {
        let IpNet::V4(c) = self.cidr else {
            return None;
        };
        let except = self
            .except
            .iter()
            .filter_map(|e| match e {
                IpNet::V4(e) => Some(*e),
                IpNet::V6 { .. } => None,
            })
            .collect();
        Some((c, except))
    }

    /// Whether IPv4 address `ip` is in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.ipv4()
            .is_some_and(|(c, except)| c.contains(ip) && !except.iter().any(|e| e.contains(ip)))
    }
}

/// Which namespaces a Pods peer looks in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// The policy's own (a peer with a `podSelector` only).
    Policy,
    /// Those a `namespaceSelector` selects (`{}`: every namespace).
    Matching(LabelSelector),
}

/// One of a rule's `from` or `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The Pods `pods` selects in `namespaces` (`pods` is everything for a peer with a
    /// `namespaceSelector` only).
    Pods {
        namespaces: Namespaces,
        pods: LabelSelector,
    },
    IpBlock(IpBlock),
}

/// A rule's peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peers {
    /// No `from`/`to`, or an empty one: every source or destination, Pods or not.
    Any,
    /// These (never empty).
    Only(Vec<Peer>),
}

/// Which ports of its protocol a policy port matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// No `port`: every port.
    Any,
    /// `port` (and `endPort`): `first..=last`.
    Range { first: u16, last: u16 },
    /// A container port's name, resolved per destination Pod
    /// ([`super::pod::Pod::named_port`]); one that resolves to nothing matches nothing.
    Named(String),
}

/// One of a rule's `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPort {
    pub protocol: Protocol,
    pub port: PortMatch,
}

/// A rule's ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// No `ports`, or an empty list: every port of every protocol.
    Any,
    /// These (never empty).
    Only(Vec<PolicyPort>),
}

/// An ingress or egress rule: traffic with one of its peers on one of its ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub peers: Peers,
    pub ports: Ports,
}

/// A NetworkPolicy, as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// The Pods of the policy's namespace it applies to.
    pub pod_selector: LabelSelector,
    /// After the API's defaulting.
    pub policy_types: PolicyTypes,
    /// As written, also when `policy_types` leaves ingress alone (see
    /// [`NetworkPolicy::ingress_rules`]).
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

impl NetworkPolicy {
    /// When the policy isolates its Pods for ingress, the rules that allow traffic to
    /// them (none: nothing is allowed); `None` when it does not isolate them (its
    /// ingress rules, if any, do nothing).
    pub fn ingress_rules(&self) -> Option<&[Rule]> {
        self.policy_types.ingress.then_some(&self.ingress[..])
    }

    /// As [`NetworkPolicy::ingress_rules`], for egress.
    pub fn egress_rules(&self) -> Option<&[Rule]> {
        self.policy_types.egress.then_some(&self.egress[..])
    }
}

const OBJECT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const SPEC_FIELDS: &[&str] = &["podSelector", "policyTypes", "ingress", "egress"];
const INGRESS_FIELDS: &[&str] = &["from", "ports"];
const EGRESS_FIELDS: &[&str] = &["to", "ports"];
const PEER_FIELDS: &[&str] = &["podSelector", "namespaceSelector", "ipBlock"];
const IP_BLOCK_FIELDS: &[&str] = &["cidr", "except"];
const PORT_FIELDS: &[&str] = &["protocol", "port", "endPort"];

/// A CIDR as the API server takes an `ipBlock`'s (`IsValidCIDRForLegacyField`): an
/// address, `/`, a prefix length; no leading zeros, no IPv4-mapped IPv6 address (as with
/// the `StrictIPCIDRValidation` gate). Bits set beyond the prefix are cleared, as Go's
/// `net.ParseCIDR` clears them for Antrea and Calico: the API server takes such a CIDR
/// without the gate, and the upstream e2e suite writes one (`PodIP/4`), so refusing it
/// would leave a policy the cluster holds unenforced.
fn cidr(s: &str, path: &str) -> Result<IpNet, FieldError> {
    let bad = |m: &str| invalid(path, &Value::String(s.into()), m);
    let not_cidr = || bad("must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)");
    let (a, p) = s.split_once('/').ok_or_else(not_cidr)?;
    if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_cidr());
    }
    let prefix: u8 = p.parse().map_err(|_| not_cidr())?;
    let leading_zero = p.len() > 1 && p.starts_with('0');
    if let Ok(v4) = a.parse::<Ipv4Addr>() {
        if prefix > 32 {
            return Err(not_cidr());
        }
        if leading_zero {
            return Err(bad("must not have leading 0s in IP or prefix length"));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        return Ipv4Cidr::new(Ipv4Addr::from(u32::from(v4) & mask), prefix)
            .map(IpNet::V4)
            .ok_or_else(not_cidr);
    }
    if let Ok(v6) = a.parse::<Ipv6Addr>() {
        if prefix > 128 {
            return Err(not_cidr());
        }
        if leading_zero {
            return Err(bad("must not have leading 0s in IP or prefix length"));
        }
        if v6.to_ipv4_mapped().is_some() {
            return Err(bad("must not have an IPv4-mapped IPv6 address"));
        }
        return Ok(IpNet::V6 {
            net: Ipv6Addr::from(u128::from(v6) & v6_mask(prefix)),
            prefix,
        });
    }
    // What Go's sloppy parser takes and a strict one does not: octets with leading
    // zeros, which other software reads as octal.
    let octets: Vec<&str> = a.split('.').collect();
    let sloppy = octets.len() == 4
        && octets.iter().all(|o| {
            !o.is_empty()
                && o.len() <= 3
                && o.bytes().all(|b| b.is_ascii_digit())
                && o.parse::<u16>().is_ok_and(|n| n <= 255)
        });
    if sloppy && prefix <= 32 {
        return Err(bad("must not have leading 0s in IP or prefix length"));
    }
    Err(not_cidr())
}

fn read_ip_block(v: &Value, path: &str) -> Result<IpBlock, FieldError> {
    let empty = Map::new();
    let m = fields::object(Some(v), path, Some(IP_BLOCK_FIELDS))?.unwrap_or(&empty);
    let cidr_path = child(path, "cidr");
    let c = fields::string(m.get("cidr"), &cidr_path)?.unwrap_or_default();
    if c.is_empty() {
        return Err(required(&cidr_path, ""));
    }
    let net = cidr(c, &cidr_path)?;
    let except_path = child(path, "except");
    let mut except = Vec::new();
    for (i, e) in fields::strings(m.get("except"), &except_path)?
        .into_iter()
        .enumerate()
    {
        let epath = index(&except_path, i);
        let x = cidr(e, &epath)?;
        if !net.strictly_contains(x) {
            return Err(invalid(
                &epath,
                &Value::String(e.into()),
                "must be a strict subset of `cidr`",
            ));
        }
        except.push(x);
    }
    Ok(IpBlock { cidr: net, except })
}

fn read_peer(v: &Value, path: &str) -> Result<Peer, FieldError> {
    let empty = Map::new();
    let m = fields::object(Some(v), path, Some(PEER_FIELDS))?.unwrap_or(&empty);
    let pods = LabelSelector::read(m.get("podSelector"), &child(path, "podSelector"))?;
    let namespaces = LabelSelector::read(
        m.get("namespaceSelector"),
        &child(path, "namespaceSelector"),
    )?;
    let block = match m.get("ipBlock").filter(|b| !b.is_null()) {
        Some(b) => Some(read_ip_block(b, &child(path, "ipBlock"))?),
        None => None,
    };
    match (pods, namespaces, block) {
        (None, None, None) => Err(required(path, "must specify a peer")),
        (None, None, Some(b)) => Ok(Peer::IpBlock(b)),
        (_, _, Some(_)) => Err(err(
            path,
            "Forbidden: may not specify both ipBlock and another peer",
        )),
        (pods, None, None) => Ok(Peer::Pods {
            namespaces: Namespaces::Policy,
            pods: pods.unwrap_or_default(),
        }),
        (pods, Some(ns), None) => Ok(Peer::Pods {
            namespaces: Namespaces::Matching(ns),
            pods: pods.unwrap_or_default(),
        }),
    }
}

fn read_policy_port(v: &Value, path: &str) -> Result<PolicyPort, FieldError> {
    let empty = Map::new();
    let m = fields::object(Some(v), path, Some(PORT_FIELDS))?.unwrap_or(&empty);
    let protocol_path = child(path, "protocol");
    let protocol = match fields::string(m.get("protocol"), &protocol_path)? {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(p) => {
            return Err(err(
                &protocol_path,
                format!(
                    "Unsupported value: {}: supported values: \"TCP\", \"UDP\", \"SCTP\"",
                    shown(&Value::String(p.into()))
                ),
            ));
        }
    };
    let port_path = child(path, "port");
    let end_path = child(path, "endPort");
    let end = m.get("endPort").filter(|e| !e.is_null());
    let port = match m.get("port").filter(|p| !p.is_null()) {
        None => {
            if let Some(e) = end {
                return Err(invalid(
                    &end_path,
                    e,
                    "may not be specified when `port` is not specified",
                ));
            }
            PortMatch::Any
        }
        Some(Value::String(name)) => {
            if let Some(e) = end {
                return Err(invalid(
                    &end_path,
                    e,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            names::port_name(name)
                .map_err(|m| invalid(&port_path, &Value::String(name.clone()), m))?;
            PortMatch::Named(name.clone())
        }
        Some(p) => {
            let first = fields::port_number(p, &port_path)?;
            let last = match end {
                None => first,
                Some(e) => {
                    if e.as_i64().is_some_and(|e| e < i64::from(first)) {
                        return Err(invalid(
                            &end_path,
                            e,
                            "must be greater than or equal to `port`",
                        ));
                    }
                    fields::port_number(e, &end_path)?
                }
            };
            PortMatch::Range { first, last }
        }
    };
    Ok(PolicyPort { protocol, port })
}

/// `spec.ingress` or `spec.egress`.
fn read_rules(
    spec: &Map<String, Value>,
    field: &str,
    peers_field: &str,
    known: &[&str],
) -> Result<Vec<Rule>, FieldError> {
    let path = child("spec", field);
    let mut rules = Vec::new();
    for (i, r) in fields::list(spec.get(field), &path)?.iter().enumerate() {
        let rpath = index(&path, i);
        // A `null` rule is a rule with nothing set (every peer, every port), as the API
        // decodes it.
        let empty = Map::new();
        let m = fields::object(Some(r), &rpath, Some(known))?.unwrap_or(&empty);
        // In the API server's order: ports, then peers.
        let ports_path = child(&rpath, "ports");
        let mut ports = Vec::new();
        for (j, p) in fields::list(m.get("ports"), &ports_path)?
            .iter()
            .enumerate()
        {
            ports.push(read_policy_port(p, &index(&ports_path, j))?);
        }
        let peers_path = child(&rpath, peers_field);
        let mut peers = Vec::new();
        for (j, p) in fields::list(m.get(peers_field), &peers_path)?
            .iter()
            .enumerate()
        {
            peers.push(read_peer(p, &index(&peers_path, j))?);
        }
        rules.push(Rule {
            peers: if peers.is_empty() {
                Peers::Any
            } else {
                Peers::Only(peers)
            },
            ports: if ports.is_empty() {
                Ports::Any
            } else {
                Ports::Only(ports)
            },
        });
    }
    Ok(rules)
}

fn read_policy_types(
    spec: &Map<String, Value>,
    has_egress: bool,
) -> Result<PolicyTypes, FieldError> {
    let path = "spec.policyTypes";
    let list = fields::strings(spec.get("policyTypes"), path)?;
    if list.is_empty() {
        // The API's defaulting: Ingress always, Egress when there are egress rules.
        return Ok(PolicyTypes {
            ingress: true,
            egress: has_egress,
        });
    }
    if list.len() > 2 {
        return Err(invalid(
            path,
            &json!(list),
            "may not specify more than two policyTypes",
        ));
    }
    let mut t = PolicyTypes {
        ingress: false,
        egress: false,
    };
    for (i, p) in list.iter().enumerate() {
        match *p {
            "Ingress" => t.ingress = true,
            "Egress" => t.egress = true,
            other => {
                return Err(err(
                    &index(path, i),
                    format!(
                        "Unsupported value: {}: supported values: \"Ingress\", \"Egress\"",
                        shown(&Value::String(other.into()))
                    ),
                ));
            }
        }
    }
    Ok(t)
}

pub fn read_network_policy(obj: &Value) -> Result<(ObjectKey, NetworkPolicy), FieldError> {
    fields::object(Some(obj), "", Some(OBJECT_FIELDS))?;
    let key = fields::key(obj, NETWORK_POLICY_KIND, true, NameRule::Subdomain)?;
    let empty = Map::new();
    let spec = fields::object(obj.get("spec"), "spec", Some(SPEC_FIELDS))?.unwrap_or(&empty);
    let pod_selector =
        LabelSelector::read(spec.get("podSelector"), "spec.podSelector")?.unwrap_or_default();
    let ingress = read_rules(spec, "ingress", "from", INGRESS_FIELDS)?;
    let egress = read_rules(spec, "egress", "to", EGRESS_FIELDS)?;
    let policy_types = read_policy_types(spec, !egress.is_empty())?;
    Ok((
        key,
        NetworkPolicy {
            pod_selector,
            policy_types,
            ingress,
            egress,
        },
    ))
}

fn peer_value(p: &Peer) -> Value {
    match p {
        Peer::IpBlock(b) => {
            let mut o = json!({ "cidr": b.cidr.to_string() });
            if !b.except.is_empty() {
                o["except"] = json!(b.except.iter().map(|e| e.to_string()).collect::<Vec<_>>());
            }
            json!({ "ipBlock": o })
        }
        Peer::Pods {
            namespaces: Namespaces::Policy,
            pods,
        } => json!({ "podSelector": pods.to_value() }),
        Peer::Pods {
            namespaces: Namespaces::Matching(ns),
            pods,
        } => {
            let mut o = json!({ "namespaceSelector": ns.to_value() });
            if !pods.selects_everything() {
                o["podSelector"] = pods.to_value();
            }
            o
        }
    }
}

fn port_value(p: &PolicyPort) -> Value {
    let mut o = json!({ "protocol": p.protocol.as_str() });
    match &p.port {
        PortMatch::Any => {}
        PortMatch::Named(n) => o["port"] = json!(n),
        PortMatch::Range { first, last } => {
            o["port"] = json!(first);
            if last > first {
                o["endPort"] = json!(last);
            }
        }
    }
    o
}

fn rules_value(rules: &[Rule], peers_field: &str) -> Value {
    rules
        .iter()
        .map(|r| {
            let mut o = Map::new();
            if let Peers::Only(peers) = &r.peers {
                o.insert(peers_field.into(), peers.iter().map(peer_value).collect());
            }
            if let Ports::Only(ports) = &r.ports {
                o.insert("ports".into(), ports.iter().map(port_value).collect());
            }
            Value::Object(o)
        })
        .collect()
}

/// The policy's types as the API lists them.
fn policy_types_list(t: PolicyTypes) -> Vec<&'static str> {
    let mut v = Vec::new();
    if t.ingress {
        v.push("Ingress");
    }
    if t.egress {
        v.push("Egress");
    }
    v
}

/// The policy's types as `get -o wide` shows them: `Ingress`, `Egress`, `Ingress,Egress`.
pub fn policy_types_text(t: PolicyTypes) -> String {
    policy_types_list(t).join(",")
}

/// The NetworkPolicy kind.
#[derive(Debug)]
pub struct NetworkPolicyKind;

pub static NETWORK_POLICY: NetworkPolicyKind = NetworkPolicyKind;

static INFO: KindInfo = KindInfo {
    kind: NETWORK_POLICY_KIND,
    group: "networking.k8s.io",
    version: "v1",
    plural: "networkpolicies",
    singular: "networkpolicy",
    short: &["netpol"],
    namespaced: true,
};

pub(crate) fn policy_of(spec: &Spec) -> Option<&NetworkPolicy> {
    match spec {
        Spec::NetworkPolicy(p) => Some(p),
        _ => None,
    }
}

/// The policies for which `pred` holds (given the policy's key and spec).
fn policies_where(
    objects: &Objects,
    pred: impl Fn(&ObjectKey, &NetworkPolicy) -> bool,
) -> Vec<ObjectKey> {
    objects
        .of_kind(NETWORK_POLICY_KIND, None)
        .filter(|(k, s)| policy_of(&s.spec).is_some_and(|p| pred(k, p)))
        .map(|(k, _)| k.clone())
        .collect()
}

impl NetworkPolicy {
    /// Every rule's peers, listed (`Peers::Any` has none), ingress and egress alike.
    fn peer_lists(&self) -> impl Iterator<Item = (&Rule, &[Peer])> {
        self.ingress
            .iter()
            .chain(&self.egress)
            .map(|r| match &r.peers {
                Peers::Any => (r, &[][..]),
                Peers::Only(list) => (r, &list[..]),
            })
    }
}

impl Rule {
    /// Whether one of its ports is a name (resolved on the destination Pods).
    fn names_ports(&self) -> bool {
        matches!(&self.ports, Ports::Only(l)
            if l.iter().any(|pp| matches!(pp.port, PortMatch::Named(_))))
    }
}

impl Namespaces {
    /// Whether a Pods peer with these namespaces looks in a namespace with `labels`
    /// (`own`: the namespace is the policy's).
    fn include(&self, own: bool, labels: &Labels) -> bool {
        match self {
            Namespaces::Policy => own,
            Namespaces::Matching(sel) => sel.matches(labels),
        }
    }
}

/// The policies a Pod's (`namespace`, `labels`) rules come from: those of its namespace
/// that select it (they apply to it), and those with a peer that selects it (they name
/// its address) or whose named ports resolve on it (a rule to any peer, or to an
/// ipBlock, which may hold its address).
pub fn policies_of_pod(objects: &Objects, namespace: &str, labels: &Labels) -> Vec<ObjectKey> {
    let ns_labels = objects.namespace_labels(namespace);
    policies_where(objects, |k, p| {
        let own = k.namespace == namespace;
        (own && p.pod_selector.matches(labels))
            || p.peer_lists().any(|(r, peers)| {
                (r.names_ports() && matches!(r.peers, Peers::Any))
                    || peers.iter().any(|peer| match peer {
                        Peer::IpBlock(_) => r.names_ports(),
                        Peer::Pods { namespaces, pods } => {
                            namespaces.include(own, &ns_labels) && pods.matches(labels)
                        }
                    })
            })
    })
}

/// The policies whose rules a Pod of `namespace` changing only its labels, from `old` to
/// `new`, changes: those that select it (apply to it) with one set and not the other, or
/// with a peer that selects it with one and not the other. A policy's rules depend on a
/// Pod's labels only through those choices (its address, named ports and binding are
/// the same before and after), so the others' rules would compile the same.
pub fn policies_of_pod_labels(
    objects: &Objects,
    namespace: &str,
    old: &Labels,
    new: &Labels,
) -> Vec<ObjectKey> {
    let ns_labels = objects.namespace_labels(namespace);
    let differs = |sel: &LabelSelector| sel.matches(old) != sel.matches(new);
    policies_where(objects, |k, p| {
        let own = k.namespace == namespace;
        (own && differs(&p.pod_selector))
            || p.peer_lists().flat_map(|(_, peers)| peers).any(|peer| {
                matches!(peer, Peer::Pods { namespaces, pods }
                    if namespaces.include(own, &ns_labels) && differs(pods))
            })
    })
}

/// The policies with a peer of every Pod of every namespace (compiled to the nodes'
/// Pod networks): a Node that comes or goes changes them.
pub fn policies_of_every_pod(objects: &Objects) -> Vec<ObjectKey> {
    policies_where(objects, |_, p| {
        p.peer_lists().flat_map(|(_, peers)| peers).any(|peer| {
            matches!(peer, Peer::Pods { namespaces: Namespaces::Matching(ns), pods }
                if ns.selects_everything() && pods.selects_everything())
        })
    })
}

/// The policies with a peer whose `namespaceSelector` selects a namespace with
/// `labels`.
pub fn policies_of_namespace(objects: &Objects, labels: &Labels) -> Vec<ObjectKey> {
    policies_where(objects, |_, p| {
        p.peer_lists().flat_map(|(_, peers)| peers).any(|peer| {
            matches!(peer, Peer::Pods { namespaces: Namespaces::Matching(sel), .. }
                if sel.matches(labels))
        })
    })
}

impl Kind for NetworkPolicyKind {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError> {
        let (k, p) = read_network_policy(obj)?;
        Ok((k, Spec::NetworkPolicy(p)))
    }

    fn compile(
        &self,
        node: &NodeCtx,
        objects: &Objects,
        key: &ObjectKey,
        stored: &Stored,
    ) -> Compiled {
        let Some(p) = policy_of(&stored.spec) else {
            return Compiled::default();
        };
        let (rules, plan) = compile::compile_planned(node, objects, &key.namespace, stored.id, p);
        Compiled {
            rules,
            plan: Some(std::sync::Arc::new(plan)),
            ..Compiled::default()
        }
    }

    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value {
        let Some(p) = policy_of(&stored.spec) else {
            return Value::Null;
        };
        let mut spec = json!({
            "podSelector": p.pod_selector.to_value(),
            "policyTypes": policy_types_list(p.policy_types),
        });
        if !p.ingress.is_empty() {
            spec["ingress"] = rules_value(&p.ingress, "from");
        }
        if !p.egress.is_empty() {
            spec["egress"] = rules_value(&p.egress, "to");
        }
        json!({
            "apiVersion": INFO.api_version(),
            "kind": INFO.kind,
            "metadata": { "name": key.name, "namespace": key.namespace },
            "spec": spec,
        })
    }

    fn columns(&self) -> Vec<GetColumn> {
        let col = |name: &str, wide| GetColumn {
            name: name.into(),
            wide,
        };
        vec![
            col("POD-SELECTOR", false),
            col("CONNECTIONS", false),
            col("PACKETS", false),
            col("DENIED", false),
            col("POLICY-TYPES", true),
            col("INGRESS-RULES", true),
            col("EGRESS-RULES", true),
        ]
    }

    fn cells(&self, _key: &ObjectKey, stored: &Stored) -> Vec<String> {
        let Some(p) = policy_of(&stored.spec) else {
            return Vec::new();
        };
        let selector = p.pod_selector.to_string();
        vec![
            if selector.is_empty() {
                "<none>".into()
            } else {
                selector
            },
            // The counters, which the flows hold: the daemon fills them in.
            "0".into(),
            "0".into(),
            "0".into(),
            policy_types_text(p.policy_types),
            p.ingress.len().to_string(),
            p.egress.len().to_string(),
        ]
    }

    fn owner(&self, stored: &Stored) -> u64 {
        CookieKind::NetworkPolicy.cookie(stored.id as u64)
    }
}

/// A Pod object's change: what [`patch_policy`] needs.
#[derive(Clone, Debug)]
pub struct PodChange {
    pub key: ObjectKey,
    /// Before and after (`None`: no such object).
    pub old: Option<crate::k8s::pod::Pod>,
    pub new: Option<crate::k8s::pod::Pod>,
}

/// The change from `old` to `new` of object `key`, when it is a Pod.
pub fn pod_change(key: &ObjectKey, old: Option<&Spec>, new: Option<&Spec>) -> Option<PodChange> {
    if key.kind != pod::POD_KIND {
        return None;
    }
    let read = |s: Option<&Spec>| match s {
        None => Some(None),
        Some(s) => pod::pod_of(s).map(|p| Some(p.clone())),
    };
    Some(PodChange {
        key: key.clone(),
        old: read(old)?,
        new: read(new)?,
    })
}

/// The clauses policy `key` must add and remove for `change`, compiled as `plan` says,
/// and its plan after ([`compile::patch`]); `None`: compile it again.
pub fn patch_policy(
    node: &NodeCtx,
    objects: &Objects,
    key: &ObjectKey,
    stored: &Stored,
    plan: &Plan,
    change: &PodChange,
) -> Option<(
    Vec<crate::ofproto::OwnedRule>,
    Vec<crate::ofproto::OwnedRule>,
    Plan,
)> {
    let p = policy_of(&stored.spec)?;
    compile::patch(
        node,
        objects,
        &key.namespace,
        p,
        plan,
        &change.key,
        change.old.as_ref(),
        change.new.as_ref(),
    )
}

mod compile;
pub use compile::{
    Direction, Plan, applied_to, deny_rule, parse_rule_id, peer_pods, pod_address, port_masks,
    prio, rule_id, subtract,
};

#[cfg(test)]
mod tests;
