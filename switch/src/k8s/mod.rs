//! Kubernetes objects compiled into the pipeline (DESIGN §6a).
//!
//! ```text
//! apply -f / delete -f / (later) an API watcher
//!   -> the kind's entry in the registry ([`KINDS`]): read into a typed spec, errors named
//!      by field; checked against the other objects ([`Objects`] and its indexes)
//!   -> the object store, keyed by kind, namespace and name
//!   -> the kind's compiler: a pure function from the object (and the node's network) to
//!      the rules and groups it owns, and the routes it needs
//!   -> the owned-rule table (`ofproto::owned`), diffed per owner: O(that object's rules)
//! ```
//!
//! Adding a kind is a file with its [`Kind`] (reading, checking, showing, compiling) and a
//! line in [`KINDS`]. The daemon (`daemon::objects`) runs the registry inside one
//! transaction per manifest, and saves and publishes once.
//!
//! - [`pipeline`]: the pipeline's tables, registers, cookie kinds and a rule builder;
//! - [`local`]: the node's own rules and each local Pod's;
//! - [`node`]: the Node kind (remote nodes behind the tunnel);
//! - [`service`]: the Service and EndpointSlice kinds (virtual IPs over endpoints);
//! - [`namespace`], [`pod`], [`netpol`]: the Namespace, Pod and NetworkPolicy kinds
//!   (what policies select, and the policies), with [`selector`] (label selectors),
//!   [`names`] (Kubernetes' rules for names and labels) and `fields` (reading a
//!   manifest strictly, errors named by field).

pub(crate) mod fields;
pub mod local;
pub mod names;
pub mod namespace;
pub mod netpol;
pub mod node;
pub mod pipeline;
pub mod pod;
pub mod selector;
pub mod service;

pub use fields::Labels;

use crate::ofproto::OwnedRule;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use vswitch_proto::group::GroupSpec;
use vswitch_proto::k8s::FieldError;
use vswitch_proto::net::Ipv4Cidr;
use vswitch_proto::rpc::GetColumn;

/// How kubectl names a kind, and where it lives.
#[derive(Debug)]
pub struct KindInfo {
    /// `Node`.
    pub kind: &'static str,
    /// The API group, empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// `nodes`.
    pub plural: &'static str,
    /// `node`.
    pub singular: &'static str,
    /// `no`.
    pub short: &'static [&'static str],
    pub namespaced: bool,
}

impl KindInfo {
    /// `v1`, `discovery.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a kubectl user means this kind by `resource`: its plural, singular or short
    /// name, or its kind, alone or with `.group` (and `.version.group`).
    pub fn named_by(&self, resource: &str) -> bool {
        let (name, group) = match resource.split_once('.') {
            Some((n, g)) => (n, Some(g)),
            None => (resource, None),
        };
        let name_ok = name == self.plural
            || name == self.singular
            || self.short.contains(&name)
            || name.eq_ignore_ascii_case(self.kind);
        let group_ok = match group {
            None => true,
            Some(g) => {
                g == self.group
                    || g.strip_prefix(self.version)
                        .and_then(|r| r.strip_prefix('.'))
                        .is_some_and(|r| r == self.group)
                    || (self.group.is_empty() && g == self.version)
            }
        };
        name_ok && group_ok
    }

    /// How kubectl names one object of this kind: `node/n1`,
    /// `endpointslice.discovery.k8s.io/x`.
    pub fn object_ref(&self, name: &str) -> String {
        if self.group.is_empty() {
            format!("{}/{name}", self.singular)
        } else {
            format!("{}.{}/{name}", self.singular, self.group)
        }
    }
}

/// An object's place in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: &'static str,
    /// Empty for a kind without namespaces.
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    /// `node/n1`, `pod/default/web`: how `dump-flows --names` names an owner.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.to_ascii_lowercase();
        if self.namespace.is_empty() {
            write!(f, "{kind}/{}", self.name)
        } else {
            write!(f, "{kind}/{}/{}", self.namespace, self.name)
        }
    }
}

/// What the switch keeps of an object: the fields its kind reads, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Node(node::RemoteNode),
    Service(service::Service),
    Slice(service::Slice),
    Namespace(namespace::Namespace),
    Pod(pod::Pod),
    NetworkPolicy(netpol::NetworkPolicy),
}

/// An object in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub spec: Spec,
    /// `vswitchctl` (add-node), `manifest` (apply -f), later `api`.
    pub source: String,
    /// The number its rules' cookies carry (unique within the kind while it is known).
    pub id: u32,
}

/// What the node knows of itself, for checking and compiling objects.
#[derive(Clone, Copy, Debug)]
pub struct NodeCtx<'a> {
    /// This node's name (`--node-name`).
    pub name: &'a str,
    /// The node's Pod network, when it has one.
    pub local: Option<&'a local::LocalNet>,
    /// The tunnel's local address, when there is a tunnel.
    pub node_ip: Option<Ipv4Addr>,
    /// This node's zone (its `topology.kubernetes.io/zone` label, `--node-zone`), for
    /// Services' topology hints.
    pub zone: Option<&'a str>,
    /// The node's local Pods, which Pod objects bind to (`local::NO_PODS` when none).
    pub pods: &'a local::LocalPods,
    /// NetworkPolicy's audit logging is on: denied new connections go to the switch to
    /// be logged.
    pub audit: bool,
}

/// A route the switch's namespace needs for an object: `dst via gateway dev <gateway
/// port> onlink`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Cidr,
    pub via: Ipv4Addr,
}

/// What an object compiles to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub rules: Vec<OwnedRule>,
    pub groups: Vec<GroupSpec>,
    pub routes: Vec<Route>,
    /// The (virtual address and port, endpoint) pairs new connections are translated
    /// to: a pair that goes loses its connections (a Service's endpoint removed).
    pub backends: Vec<Dnat>,
    /// What the node's own network stack must do for the object (a Service's NodePorts
    /// and external addresses reached from outside the node, its health-check port).
    pub host: Vec<HostRule>,
    /// A NetworkPolicy's: what a change of one Pod's labels can patch
    /// ([`netpol::patch_policy`]) rather than compile again.
    pub plan: Option<std::sync::Arc<netpol::Plan>>,
}

/// Something the node's network stack does for a Service, outside the switch
/// (`daemon/hostnat.rs` installs it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostRule {
    /// Connections to one of the node's addresses and `port` over `proto` go to the
    /// switch: translated to [`pipeline::NODEPORT_LOCAL_IP`] with the client's address
    /// kept when `local` (externalTrafficPolicy Local), else to [`pipeline::NODEPORT_IP`]
    /// from the gateway's address.
    NodePort { proto: u8, port: u16, local: bool },
    /// Connections to external or load-balancer address `ip`, which is the node's own,
    /// and `port` over `proto` go to the switch: translated to
    /// [`pipeline::EXTERNAL_LOCAL_IP`] with the client's address kept when `local`
    /// (externalTrafficPolicy Local), else to [`pipeline::EXTERNAL_IP`] from the gateway's
    /// address; the port kept.
    NodeAddress {
        ip: Ipv4Addr,
        proto: u8,
        port: u16,
        local: bool,
    },
    /// Connections from outside the node to external or load-balancer address `ip` and
    /// `port` (routed to the switch) leave the node for the switch from the gateway's
    /// address (externalTrafficPolicy Cluster), so replies come back through the node.
    Masquerade { ip: Ipv4Addr, proto: u8, port: u16 },
    /// `loadBalancerSourceRanges`: connections from outside the node to load-balancer
    /// address `ip` and `port` pass from `range` (`Some`), and are dropped otherwise
    /// (`None`: the rule after every range's).
    SourceRange {
        ip: Ipv4Addr,
        proto: u8,
        port: u16,
        range: Option<Ipv4Cidr>,
    },
    /// kube-proxy's health check for load balancers: HTTP on `port`, 200 while the
    /// Service `namespace/name` has local endpoints (`local_endpoints` of them), else 503.
    HealthCheck {
        port: u16,
        namespace: String,
        name: String,
        local_endpoints: usize,
    },
}

/// One translation a Service's new connections may get: to `vip:vport` over `proto`,
/// translated to `ep:eport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dnat {
    pub proto: u8,
    pub vip: Ipv4Addr,
    pub vport: u16,
    pub ep: Ipv4Addr,
    pub eport: u16,
}

/// What checking an object against the node and the store says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// It may be stored.
    Ok,
    /// It describes this node, which its own flags configure: nothing to store; `Ok` if
    /// it agrees with them (reported `unchanged`), else the field that does not.
    ThisNode(Result<(), FieldError>),
}

/// One kind of object the switch reads. Each method handles its own [`Spec`] variant.
pub trait Kind: Sync + fmt::Debug {
    fn info(&self) -> &'static KindInfo;

    /// The object's name and namespace from its manifest, and the typed spec; errors name
    /// the field.
    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError>;

    /// Whether the object may be stored next to the others.
    /// (Default: every object fits.)
    fn check(
        &self,
        _node: &NodeCtx,
        _objects: &Objects,
        _key: &ObjectKey,
        _spec: &Spec,
    ) -> Result<Checked, FieldError> {
        Ok(Checked::Ok)
    }

    /// The rules, groups and routes the object needs (empty when the node cannot use it
    /// yet, e.g. a remote node without a tunnel), given the other objects it is joined
    /// to (a Service's slices).
    /// (Default: nothing, for kinds that own no rules: the objects they feed do.)
    fn compile(
        &self,
        _node: &NodeCtx,
        _objects: &Objects,
        _key: &ObjectKey,
        _stored: &Stored,
    ) -> Compiled {
        Compiled::default()
    }

    /// The objects whose rules are compiled from this one too (a slice's Service, the
    /// policies that select a Pod): they are compiled again when it changes. Asked of
    /// the object before and after the change, with the store as it was before.
    fn related(&self, _objects: &Objects, _key: &ObjectKey, _spec: &Spec) -> Vec<ObjectKey> {
        Vec::new()
    }

    /// The objects to compile again when a stored object changes from `old` to `new`
    /// (with the store as it was before): by default every object [`Kind::related`]
    /// names for either. A kind may name fewer when it knows the others' rules cannot
    /// change (a Pod whose labels alone changed).
    fn related_change(
        &self,
        objects: &Objects,
        key: &ObjectKey,
        old: &Spec,
        new: &Spec,
    ) -> Vec<ObjectKey> {
        let mut out = self.related(objects, key, old);
        out.extend(self.related(objects, key, new));
        out
    }

    /// The object as `get -o yaml` shows it (and as it is saved): the fields read.
    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value;

    /// `get`'s columns after NAME, and an object's cells for them.
    fn columns(&self) -> Vec<GetColumn>;
    fn cells(&self, key: &ObjectKey, stored: &Stored) -> Vec<String>;

    /// The owner id (cookie) of an object's rules.
    fn owner(&self, stored: &Stored) -> u64;
}

/// Every kind the switch reads.
pub static KINDS: &[&dyn Kind] = &[
    &node::NODE,
    &service::SERVICE,
    &service::ENDPOINT_SLICE,
    &namespace::NAMESPACE,
    &pod::POD,
    &netpol::NETWORK_POLICY,
];

/// The kind of a manifest object, by its `kind` and the group of its `apiVersion`.
pub fn kind_of(kind: &str, api_version: &str) -> Option<&'static dyn Kind> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    KINDS
        .iter()
        .copied()
        .find(|k| k.info().kind == kind && k.info().group == group)
}

/// The kind a `get` resource names.
pub fn resource(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.info().named_by(name))
}

/// The kind registered under this name (`Node`).
pub fn kind_named(kind: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.info().kind == kind)
}

/// The object store: every object by key, an id allocator per kind, and the indexes the
/// kinds check against and compile from. Each index changes with its object, at the cost
/// of that object's entries. Pods by namespace need no index: the store's order is
/// (kind, namespace, name) ([`Objects::pods_in`]).
#[derive(Debug, Default)]
pub struct Objects {
    map: BTreeMap<ObjectKey, Stored>,
    /// Per kind: the objects by id.
    ids: BTreeMap<&'static str, BTreeMap<u32, ObjectKey>>,
    /// Remote nodes by the first address of their Pod CIDR (they do not overlap).
    pub(crate) node_cidrs: BTreeMap<u32, (Ipv4Cidr, ObjectKey)>,
    /// EndpointSlices by (namespace, Service name, slice name).
    slices: BTreeSet<(String, String, String)>,
    /// Pods by the address policies know them by ([`pod::Pod::policy_ip`]), with their
    /// ids: (address, Pod id).
    pod_ips: BTreeSet<(Ipv4Addr, u32)>,
    /// Pods by label: key, then value, then the ids of the Pods carrying it.
    pod_labels: BTreeMap<String, BTreeMap<String, BTreeSet<u32>>>,
    /// Pods by namespace and label: (namespace, key, value, Pod id). A selector naming a
    /// label finds a namespace's Pods with it without looking at the others.
    pod_ns_labels: BTreeSet<(String, String, String, u32)>,
}

impl Objects {
    pub fn get(&self, key: &ObjectKey) -> Option<&Stored> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The objects of one kind (in one namespace, if given), by key.
    pub fn of_kind<'a>(
        &'a self,
        kind: &'static str,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Stored)> + 'a {
        let namespace = namespace.map(str::to_string);
        let start = ObjectKey {
            kind,
            namespace: namespace.clone().unwrap_or_default(),
            name: String::new(),
        };
        self.map.range(start..).take_while(move |(k, _)| {
            k.kind == kind && namespace.as_ref().is_none_or(|ns| k.namespace == *ns)
        })
    }

    /// The keys of the EndpointSlices of Service `name` in `namespace`.
    pub fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = ObjectKey> + 'a {
        let start = (namespace.to_string(), name.to_string(), String::new());
        self.slices
            .range(start..)
            .take_while(move |(ns, svc, _)| ns == namespace && svc == name)
            .map(|(ns, _, slice)| ObjectKey {
                kind: service::ENDPOINT_SLICE_KIND,
                namespace: ns.clone(),
                name: slice.clone(),
            })
    }

    /// Every object, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Stored)> {
        self.map.iter()
    }

    /// The Pods of namespace `namespace`, by name.
    pub fn pods_in<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a pod::Pod)> + 'a {
        self.of_kind(pod::POD_KIND, Some(namespace))
            .filter_map(|(k, s)| Some((k, pod::pod_of(&s.spec)?)))
    }

    /// The Pods known by address `ip` ([`pod::Pod::policy_ip`]): one, or for a while
    /// two (one ending, the next starting), or none.
    pub fn pods_with_ip(&self, ip: Ipv4Addr) -> impl Iterator<Item = &ObjectKey> {
        self.pod_ips
            .range((ip, 0)..=(ip, u32::MAX))
            .filter_map(|(_, id)| self.by_id(pod::POD_KIND, *id))
    }

    /// The Pods with label `key` set to `value`, by id.
    pub fn pods_labeled<'a>(
        &'a self,
        key: &str,
        value: &str,
    ) -> impl Iterator<Item = &'a ObjectKey> {
        self.pod_labels
            .get(key)
            .and_then(|values| values.get(value))
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id(pod::POD_KIND, *id))
    }

    /// The Pods that `selector` selects in `namespace`, or in every namespace (`None`),
    /// by key; host-network and ended Pods included (a compiler leaves them out, see
    /// [`pod::Pod::policy_ip`]). Across namespaces, a selector naming a label
    /// ([`selector::LabelSelector::required_label`]) looks in the index of labels
    /// rather than at every Pod.
    pub fn select_pods<'a>(
        &'a self,
        namespace: Option<&str>,
        selector: &selector::LabelSelector,
    ) -> Vec<(&'a ObjectKey, &'a pod::Pod)> {
        let selected = |(_, p): &(&ObjectKey, &pod::Pod)| selector.matches(&p.labels);
        if let Some(ns) = namespace {
            let Some((label, values)) = selector.required_label() else {
                return self.pods_in(ns).filter(selected).collect();
            };
            // The namespace's Pods with the label the selector needs, from the index.
            let mut keys: Vec<&ObjectKey> = Vec::new();
            for v in values {
                let at = (ns.to_string(), label.to_string(), v.to_string(), 0);
                keys.extend(
                    self.pod_ns_labels
                        .range(at..)
                        .take_while(|(n, k, val, _)| n == ns && k == label && val == v)
                        .filter_map(|(_, _, _, id)| self.by_id(pod::POD_KIND, *id)),
                );
            }
            keys.sort();
            keys.dedup();
            return keys
                .into_iter()
                .filter_map(|k| Some((k, pod::pod_of(&self.get(k)?.spec)?)))
                .filter(selected)
                .collect();
        }
        let Some((label, values)) = selector.required_label() else {
            return self
                .of_kind(pod::POD_KIND, None)
                .filter_map(|(k, s)| Some((k, pod::pod_of(&s.spec)?)))
                .filter(selected)
                .collect();
        };
        let mut keys: Vec<&ObjectKey> = values
            .iter()
            .flat_map(|v| self.pods_labeled(label, v))
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| Some((k, pod::pod_of(&self.get(k)?.spec)?)))
            .filter(selected)
            .collect()
    }

    /// Every namespace the store knows of: those with a Namespace object and those with
    /// Pods, by name.
    pub fn namespace_names(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self
            .of_kind(namespace::NAMESPACE_KIND, None)
            .map(|(k, _)| k.name.as_str())
            .collect();
        // One step per namespace with Pods: from each, on to the first key past it.
        let mut next = ObjectKey {
            kind: pod::POD_KIND,
            namespace: String::new(),
            name: String::new(),
        };
        while let Some((k, _)) = self
            .map
            .range(next..)
            .next()
            .filter(|(k, _)| k.kind == pod::POD_KIND)
        {
            out.insert(&k.namespace);
            next = ObjectKey {
                kind: pod::POD_KIND,
                namespace: format!("{}\0", k.namespace),
                name: String::new(),
            };
        }
        out
    }

    /// The labels of namespace `name`: its object's, or when it is not known, the one
    /// every namespace has ([`namespace::default_labels`]).
    pub fn namespace_labels(&self, name: &str) -> Cow<'_, Labels> {
        match self.get(&namespace::key(name)).map(|s| &s.spec) {
            Some(Spec::Namespace(n)) => Cow::Borrowed(&n.labels),
            _ => Cow::Owned(namespace::default_labels(name)),
        }
    }

    /// A free id for a new object of `kind` (ids start at 1; 24 bits, as cookies carry
    /// them with room to spare).
    pub fn free_id(&self, kind: &'static str) -> Option<u32> {
        let used = self.ids.get(kind);
        let next = used
            .and_then(|u| u.last_key_value())
            .map_or(1, |(l, _)| l + 1);
        if next < 1 << 24 {
            return Some(next);
        }
        (1..1u32 << 24).find(|i| used.is_none_or(|u| !u.contains_key(i)))
    }

    /// The object of `kind` with this id.
    pub fn by_id(&self, kind: &str, id: u32) -> Option<&ObjectKey> {
        self.ids.get(kind)?.get(&id)
    }

    /// Put or remove an object; returns what was there.
    pub fn put(&mut self, key: ObjectKey, stored: Option<Stored>) -> Option<Stored> {
        let old = match &stored {
            Some(s) => self.map.insert(key.clone(), s.clone()),
            None => self.map.remove(&key),
        };
        if let Some(o) = &old {
            if let Some(ids) = self.ids.get_mut(key.kind) {
                ids.remove(&o.id);
            }
            self.unindex(&key, o);
        }
        if let Some(s) = &stored {
            self.ids
                .entry(key.kind)
                .or_default()
                .insert(s.id, key.clone());
            self.index(&key, s);
        }
        old
    }

    fn index(&mut self, key: &ObjectKey, s: &Stored) {
        match &s.spec {
            Spec::Pod(p) => {
                if let Some(ip) = p.policy_ip() {
                    self.pod_ips.insert((ip, s.id));
                }
                for (k, v) in &p.labels {
                    self.pod_labels
                        .entry(k.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_default()
                        .insert(s.id);
                    self.pod_ns_labels
                        .insert((key.namespace.clone(), k.clone(), v.clone(), s.id));
                }
            }
            Spec::Node(n) => {
                self.node_cidrs
                    .insert(u32::from(n.cidr.first()), (n.cidr, key.clone()));
            }
            Spec::Slice(sl) => {
                if let Some(svc) = &sl.service {
                    self.slices
                        .insert((key.namespace.clone(), svc.clone(), key.name.clone()));
                }
            }
            Spec::Service(_) | Spec::Namespace(_) | Spec::NetworkPolicy(_) => {}
        }
    }

    fn unindex(&mut self, key: &ObjectKey, s: &Stored) {
        match &s.spec {
            Spec::Pod(p) => {
                if let Some(ip) = p.policy_ip() {
                    self.pod_ips.remove(&(ip, s.id));
                }
                for (k, v) in &p.labels {
                    self.pod_ns_labels
                        .remove(&(key.namespace.clone(), k.clone(), v.clone(), s.id));
                    let Some(values) = self.pod_labels.get_mut(k) else {
                        continue;
                    };
                    if let Some(ids) = values.get_mut(v) {
                        ids.remove(&s.id);
                        if ids.is_empty() {
                            values.remove(v);
                        }
                    }
                    if values.is_empty() {
                        self.pod_labels.remove(k);
                    }
                }
            }
            Spec::Node(n) => {
                let at = u32::from(n.cidr.first());
                if self.node_cidrs.get(&at).is_some_and(|(_, k)| k == key) {
                    self.node_cidrs.remove(&at);
                }
            }
            Spec::Slice(sl) => {
                if let Some(svc) = &sl.service {
                    self.slices
                        .remove(&(key.namespace.clone(), svc.clone(), key.name.clone()));
                }
            }
            Spec::Service(_) | Spec::Namespace(_) | Spec::NetworkPolicy(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_kubectl_names_them() {
        let n = node::NODE.info();
        for r in ["nodes", "node", "no", "Node", "nodes.v1"] {
            assert!(n.named_by(r), "{r}");
        }
        assert!(!n.named_by("pods"));
        assert!(resource("no").is_some());
        assert!(resource("services").is_some());
        assert!(resource("svc").is_some());
        assert!(resource("endpointslices.discovery.k8s.io").is_some());
        assert!(resource("pods").is_some());
        assert!(resource("po").is_some());
        assert!(resource("ns").is_some());
        assert!(resource("netpol").is_some());
        assert!(resource("networkpolicies.networking.k8s.io").is_some());
        assert!(resource("networkpolicies.extensions").is_none());
        assert!(resource("ingresses").is_none());
        assert!(kind_of("NetworkPolicy", "networking.k8s.io/v1").is_some());
        assert!(kind_of("NetworkPolicy", "v1").is_none());
        assert_eq!(
            netpol::NETWORK_POLICY.info().object_ref("deny"),
            "networkpolicy.networking.k8s.io/deny"
        );
        assert_eq!(n.object_ref("n1"), "node/n1");
        assert!(kind_of("Node", "v1").is_some());
        assert!(kind_of("Node", "apps/v1").is_none());
        let key = ObjectKey {
            kind: "Pod",
            namespace: "default".into(),
            name: "web".into(),
        };
        assert_eq!(key.to_string(), "pod/default/web");
    }
}

#[cfg(test)]
mod index_tests;
