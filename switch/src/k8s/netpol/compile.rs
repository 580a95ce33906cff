//! A NetworkPolicy compiled into the EgressPolicy and IngressPolicy tables, as Antrea
//! compiles one: each rule is a conjunctive match of up to three dimensions (the Pods of
//! this node it applies to, its peers' addresses, its ports), so its flows grow with
//! Pods plus peers plus ports, not their product.
//!
//! For each direction the policy isolates, and each local Pod it selects:
//! - a deny rule (priority [`prio::DENY`]), which every policy isolating that Pod wants
//!   (one rule, several owners): what no rule allows stops there, counted;
//! - per rule, the clauses of its conjunction(s) (priority [`prio::ALLOW`]) and the
//!   rule that completes it: it loads the rule's id ([`rule_id`]) into
//!   [`reg::EGRESS_RULE`] or [`reg::INGRESS_RULE`] and goes on. ConntrackCommit keeps
//!   both ids in the connection's label, so a connection's packets are counted by rule.
//!
//! Only new connections meet these tables (ConntrackState sends the packets of known
//! connections past them): replies of allowed connections pass, and a reply-shaped
//! packet of no connection is `+new` (or `+inv`, dropped) and meets the rules as a new
//! one would. A Service's connection, committed in ServiceLB, stays pending (its packets
//! dropped) until ConntrackCommit, after these tables, lets it through.
//!
//! Named ports resolve per destination Pod: an ingress rule's local Pods are grouped by
//! what its names resolve to on each, an egress rule's destination Pods likewise, one
//! conjunction per group. A name that resolves to nothing on a Pod allows nothing to it.

use super::{NetworkPolicy, Peer, Peers, PolicyPort, PortMatch, Ports, Rule};
use crate::k8s::local::LocalPod;
use crate::k8s::pipeline::{Reg, RuleBuilder, Source, Table, reg, rule};
use crate::k8s::pod::{self, Pod};
use crate::k8s::selector::LabelSelector;
use crate::k8s::service::Protocol;
use crate::k8s::{NodeCtx, ObjectKey, Objects};
use crate::ofproto::OwnedRule;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use vswitch_proto::action::Action;
use vswitch_proto::field::FieldId;
use vswitch_proto::flow::ct_state;
use vswitch_proto::net::Ipv4Cidr;

/// The priorities of the policy tables.
pub mod prio {
    /// Traffic NetworkPolicy never stops: to and from the Pod's own node, a Pod to
    /// itself.
    pub const ALWAYS: u16 = 150;
    /// Counting the packets of known connections by the rule that allowed them: just
    /// above the pipeline's rules that pass them on (ConntrackState 190, IngressPolicy
    /// 200), in the same tables.
    pub const COUNT_EGRESS: u16 = 191;
    pub const COUNT_INGRESS: u16 = 201;
    /// An isolated Pod's packets of no connection (`+inv`): dropped unless from the
    /// node (one above).
    pub const INVALID: u16 = 205;
    /// A rule of every peer and port: its Pods alone (above the clauses, which may
    /// match the same Pods; which of two allowing rules wins changes only which one
    /// counts the connection).
    pub const ALLOW_ANY: u16 = 101;
    /// The rules' conjunctions.
    pub const ALLOW: u16 = 100;
    /// An isolated Pod's default: what no rule allowed.
    pub const DENY: u16 = 10;
}

/// A direction of traffic a policy rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    pub fn table(self) -> Table {
        match self {
            Direction::Ingress => Table::IngressPolicy,
            Direction::Egress => Table::EgressPolicy,
        }
    }

    /// Where an allowed packet goes on to.
    fn next(self) -> Table {
        match self {
            Direction::Ingress => Table::ConntrackCommit,
            Direction::Egress => Table::L3Forwarding,
        }
    }

    /// The register an allowed packet carries its rule's id in.
    pub fn reg(self) -> Reg {
        match self {
            Direction::Ingress => reg::INGRESS_RULE,
            Direction::Egress => reg::EGRESS_RULE,
        }
    }

    /// The field the rule's peers are matched on: the source of what comes in, the
    /// destination of what goes out.
    fn peer_field(self) -> FieldId {
        match self {
            Direction::Ingress => FieldId::IpSrc,
            Direction::Egress => FieldId::IpDst,
        }
    }

    /// A rule of this direction's table matching the local Pod on port `port`: the
    /// packet is going to it (ingress) or came from it (egress).
    fn pod(self, priority: u16, port: u32) -> RuleBuilder {
        let r = rule(self.table(), priority).ip();
        match self {
            Direction::Ingress => r.reg(reg::OUT_PORT, port),
            Direction::Egress => r.in_port(port),
        }
    }
}

/// The id a rule's allowed packets carry: the policy's id, the direction, the rule's
/// index (rules past the 128th of a direction share the 128th's counters).
pub fn rule_id(policy: u32, dir: Direction, index: usize) -> u32 {
    let d = match dir {
        Direction::Ingress => 0,
        Direction::Egress => 1 << 7,
    };
    policy << 8 | d | index.min(127) as u32
}

/// The policy id, direction and rule index a [`rule_id`] names.
pub fn parse_rule_id(id: u32) -> Option<(u32, Direction, usize)> {
    if id >> 8 == 0 {
        return None;
    }
    let dir = if id & 1 << 7 == 0 {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    Some((id >> 8, dir, (id & 0x7f) as usize))
}

/// The address a Pod object is known by here: the local Pod it is bound to, else its
/// own; `None` for a host-network or ended Pod, which no policy selects.
pub fn pod_address(node: &NodeCtx, key: &ObjectKey, p: &Pod) -> Option<Ipv4Addr> {
    if p.host_network || p.terminated() {
        return None;
    }
    node.pods
        .bound(&key.namespace, &key.name, p.ip)
        .map(|l| l.ip)
        .or(p.ip)
}

/// The local Pods a policy in `namespace` with `selector` applies to.
pub fn applied_to<'a>(
    node: &'a NodeCtx,
    objects: &'a Objects,
    namespace: &'a str,
    selector: &'a LabelSelector,
) -> Vec<(&'a ObjectKey, &'a Pod, LocalPod)> {
    objects
        .pods_in(namespace)
        .filter(|(_, p)| !p.host_network && !p.terminated() && selector.matches(&p.labels))
        .filter_map(|(k, p)| Some((k, p, *node.pods.bound(&k.namespace, &k.name, p.ip)?)))
        .collect()
}

/// The Pods one `Pods` peer of a policy in `namespace` selects, with their addresses.
pub fn peer_pods<'a>(
    node: &NodeCtx,
    objects: &'a Objects,
    namespace: &str,
    namespaces: &super::Namespaces,
    pods: &LabelSelector,
) -> Vec<(&'a ObjectKey, &'a Pod, Ipv4Addr)> {
    let spaces: Vec<String> = match namespaces {
        super::Namespaces::Policy => vec![namespace.to_string()],
        super::Namespaces::Matching(sel) if sel.selects_everything() => {
            return address_all(node, objects.select_pods(None, pods));
        }
        super::Namespaces::Matching(sel) => objects
            .namespace_names()
            .into_iter()
            .filter(|n| sel.matches(&objects.namespace_labels(n)))
            .map(str::to_string)
            .collect(),
    };
    let selected = spaces
        .iter()
        .flat_map(|ns| objects.select_pods(Some(ns), pods))
        .collect();
    address_all(node, selected)
}

fn address_all<'a>(
    node: &NodeCtx,
    pods: Vec<(&'a ObjectKey, &'a Pod)>,
) -> Vec<(&'a ObjectKey, &'a Pod, Ipv4Addr)> {
    pods.into_iter()
        .filter_map(|(k, p)| Some((k, p, pod_address(node, k, p)?)))
        .collect()
}

/// Every Pod of the cluster, as addresses: the Pod networks of this node and of every
/// node known, less each network's gateway (the node's own address there, which its
/// processes and host-network Pods speak from: not a Pod). Addresses there that no Pod
/// holds yet are a Pod's once one does.
fn all_pod_networks(node: &NodeCtx, objects: &Objects) -> Vec<Ipv4Cidr> {
    node.local
        .map(|l| l.cidr)
        .into_iter()
        .chain(objects.node_cidrs.values().map(|(c, _)| *c))
        .flat_map(|c| subtract(c, &[Ipv4Cidr::host(c.gateway())]))
        .collect()
}

/// `cidr` less the networks of `except`, as the fewest networks.
pub fn subtract(cidr: Ipv4Cidr, except: &[Ipv4Cidr]) -> Vec<Ipv4Cidr> {
    let inside: Vec<Ipv4Cidr> = except
        .iter()
        .copied()
        .filter(|e| e.overlaps(&cidr))
        .collect();
    if inside.is_empty() {
        return vec![cidr];
    }
    if inside
        .iter()
        .any(|e| e.prefix() <= cidr.prefix() && e.contains(cidr.network()))
    {
        return Vec::new();
    }
    // An exception strictly inside: split in halves, each less what is inside it.
    let p = cidr.prefix() + 1;
    let lo = Ipv4Cidr::new(cidr.network(), p).expect("a prefix under 32 splits");
    let hi_net = Ipv4Addr::from(u32::from(cidr.network()) | 1 << (32 - p));
    let hi = Ipv4Cidr::new(hi_net, p).expect("a prefix under 32 splits");
    let mut out = subtract(lo, &inside);
    out.extend(subtract(hi, &inside));
    out
}

/// `first..=last` as (value, mask) pairs of `tp_dst`, the fewest that cover it.
pub fn port_masks(first: u16, last: u16) -> Vec<(u16, u16)> {
    let (mut start, end) = (first as u32, last as u32);
    let mut out = Vec::new();
    while start <= end {
        let mut size = 1u32;
        while start.is_multiple_of(size * 2) && start + size * 2 - 1 <= end {
            size *= 2;
        }
        out.push((start as u16, !(size - 1) as u16));
        start += size;
    }
    out
}

/// A protocol and port set a rule allows: `None` ports is every port of the protocol.
type PortKey = (u8, Option<(u16, u16)>);

/// A named port of a rule: the protocol's number, the name, the protocol.
type NamedPort<'a> = (u8, &'a str, Protocol);

/// One conjunction's dimensions, each a list of matches (a clause each); an empty
/// dimension can never be met.
struct Conj {
    /// The local Pods' ports.
    pods: BTreeSet<u32>,
    /// `None`: every peer.
    peers: Option<BTreeSet<Ipv4Cidr>>,
    /// `None`: every port of every protocol.
    ports: Option<BTreeSet<PortKey>>,
}

/// Builds the rules of one policy.
struct Emit {
    policy: u32,
    rules: Vec<OwnedRule>,
    /// Conjunctions used so far (ids `policy << 8 | n`).
    conjs: u32,
    plan: Plan,
    /// The rule being compiled (direction, index).
    rule: Option<(Direction, usize)>,
}

/// What a policy's compile made, as far as a change of one Pod's labels can patch it:
/// for each rule with a list of peer addresses, how many addresses the list has and the
/// conjunctions they are a clause of (see [`patch`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The policy applies to a local Pod (else it compiled to nothing).
    compiled: bool,
    rules: BTreeMap<(Direction, usize), PeerClause>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PeerClause {
    /// Addresses (networks) in the rule's peer list.
    peers: usize,
    /// The conjunctions the list is a clause of: (id, clause, clauses).
    conjs: Vec<(u32, u8, u8)>,
    /// An egress rule with named ports: its conjunctions group the destinations by what
    /// the names resolve to on each, so a peer that comes or goes is not one clause.
    grouped: bool,
}

/// The clause of a conjunction that matches peer network `n`.
fn peer_clause(dir: Direction, n: &Ipv4Cidr) -> RuleBuilder {
    rule(dir.table(), prio::ALLOW).ip().field_masked(
        dir.peer_field(),
        u32::from(n.network()) as u128,
        n.netmask() as u128,
    )
}

impl Emit {
    fn conjunction(&mut self, dir: Direction, rid: u32, c: Conj) {
        if c.pods.is_empty()
            || c.peers.as_ref().is_some_and(BTreeSet::is_empty)
            || c.ports.as_ref().is_some_and(BTreeSet::is_empty)
        {
            return;
        }
        let allow = |r: RuleBuilder| r.set_reg(dir.reg(), rid).goto(dir.next());
        let port = |r: RuleBuilder, (proto, range): &PortKey| {
            let r = r.nw_proto(*proto);
            match range {
                None => vec![r],
                Some((first, last)) => port_masks(*first, *last)
                    .into_iter()
                    .map(|(v, m)| r.clone().field_masked(FieldId::TpDst, v as u128, m as u128))
                    .collect(),
            }
        };
        let mut dims: Vec<Vec<RuleBuilder>> =
            vec![c.pods.iter().map(|p| dir.pod(prio::ALLOW, *p)).collect()];
        let plain = || rule(dir.table(), prio::ALLOW).ip();
        if let Some(peers) = &c.peers {
            dims.push(peers.iter().map(|n| peer_clause(dir, n)).collect());
        }
        if let Some(ports) = &c.ports {
            dims.push(ports.iter().flat_map(|k| port(plain(), k)).collect());
        }
        if dims.len() == 1 {
            // Every peer on every port: the Pods alone, one rule each (a priority of
            // its own, since another policy's clause may have the same match).
            self.rules
                .extend(c.pods.iter().map(|p| allow(dir.pod(prio::ALLOW_ANY, *p))));
            return;
        }
        if self.conjs >= 256 {
            tracing::warn!(
                policy = self.policy,
                "a policy with more than 256 rule conjunctions: the rest allow nothing"
            );
            return;
        }
        let id = self.policy << 8 | self.conjs;
        self.conjs += 1;
        let n = dims.len() as u8;
        if c.peers.is_some()
            && let Some(clause) = self.rule.and_then(|r| self.plan.rules.get_mut(&r))
        {
            // The peers are the second dimension, after the Pods.
            clause.conjs.push((id, 1, n));
        }
        for (k, dim) in dims.into_iter().enumerate() {
            self.rules.extend(dim.into_iter().map(|r| {
                r.then(Action::Conjunction {
                    id,
                    clause: k as u8,
                    n_clauses: n,
                })
            }));
        }
        self.rules.push(allow(
            rule(dir.table(), prio::ALLOW).field(FieldId::ConjId, id as u128),
        ));
    }
}

/// A rule's ports: the numbered ones, and the named ones to resolve per Pod.
fn split_ports(ports: &Ports) -> (Option<BTreeSet<PortKey>>, Vec<NamedPort<'_>>) {
    let Ports::Only(list) = ports else {
        return (None, Vec::new());
    };
    let mut numbered = BTreeSet::new();
    let mut named = Vec::new();
    for PolicyPort { protocol, port } in list {
        let proto = protocol.number();
        match port {
            PortMatch::Any => {
                numbered.insert((proto, None));
            }
            PortMatch::Range { first, last } => {
                numbered.insert((proto, Some((*first, *last))));
            }
            PortMatch::Named(n) => named.push((proto, n.as_str(), *protocol)),
        }
    }
    (Some(numbered), named)
}

/// What a Pod's names resolve to (nothing resolved: an empty set).
fn resolve(p: &Pod, named: &[NamedPort]) -> BTreeSet<PortKey> {
    named
        .iter()
        .filter_map(|(proto, name, protocol)| {
            let n = p.named_port(name, *protocol)?;
            Some((*proto, Some((n, n))))
        })
        .collect()
}

/// The addresses of a rule's peers (`None`: every address).
fn peer_addresses(
    node: &NodeCtx,
    objects: &Objects,
    namespace: &str,
    peers: &Peers,
) -> Option<BTreeSet<Ipv4Cidr>> {
    let Peers::Only(list) = peers else {
        return None;
    };
    let mut out = fixed_peers(node, objects, list);
    for peer in list {
        if let Peer::Pods { namespaces, pods } = peer
            && !every_pod(namespaces, pods)
        {
            let selected = peer_pods(node, objects, namespace, namespaces, pods);
            out.extend(selected.into_iter().map(|(_, _, ip)| Ipv4Cidr::host(ip)));
        }
    }
    Some(out)
}

/// The Pods a rule's peers are, for resolving named ports at the destination (an
/// egress rule's): every Pod for `Peers::Any`, and for an ipBlock the Pods whose
/// addresses it holds (a name is a Pod's port, however the Pod is reached: as the
/// upstream reference model, policy-assistant, resolves it).
fn peer_pod_list<'a>(
    node: &NodeCtx,
    objects: &'a Objects,
    namespace: &str,
    peers: &Peers,
) -> Vec<(&'a ObjectKey, &'a Pod, Ipv4Addr)> {
    let every = || {
        address_all(
            node,
            objects
                .of_kind(pod::POD_KIND, None)
                .filter_map(|(k, s)| Some((k, pod::pod_of(&s.spec)?)))
                .collect(),
        )
    };
    match peers {
        Peers::Any => every(),
        Peers::Only(list) => {
            let mut out = Vec::new();
            let mut all = None;
            for p in list {
                match p {
                    Peer::Pods { namespaces, pods } => {
                        out.extend(peer_pods(node, objects, namespace, namespaces, pods));
                    }
                    Peer::IpBlock(b) => {
                        let all = all.get_or_insert_with(every);
                        out.extend(all.iter().filter(|(_, _, ip)| b.contains(*ip)).copied());
                    }
                }
            }
            out.sort_by_key(|(k, _, _)| *k);
            out.dedup_by_key(|(k, _, _)| *k);
            out
        }
    }
}

/// The rules of policy `p` (id `id`) in `namespace` on this node, and what [`patch`]
/// needs to change them by a Pod's labels.
pub fn compile_planned(
    node: &NodeCtx,
    objects: &Objects,
    namespace: &str,
    id: u32,
    p: &NetworkPolicy,
) -> (Vec<OwnedRule>, Plan) {
    let mut e = Emit {
        policy: id,
        rules: Vec::new(),
        conjs: 0,
        plan: Plan::default(),
        rule: None,
    };
    if node.local.is_none() {
        return (e.rules, e.plan);
    }
    let applied = applied_to(node, objects, namespace, &p.pod_selector);
    if applied.is_empty() {
        return (e.rules, e.plan);
    }
    e.plan.compiled = true;
    for (dir, rules) in [
        (Direction::Ingress, p.ingress_rules()),
        (Direction::Egress, p.egress_rules()),
    ] {
        let Some(rules) = rules else { continue };
        e.rules.extend(
            applied
                .iter()
                .map(|(_, _, l)| deny_rule(dir, l.port, node.audit)),
        );
        e.rules.extend(always(node, dir));
        if dir == Direction::Ingress {
            // A packet of no connection the node lets through (ConntrackState: its
            // answers on asymmetric routes) reaches an isolated Pod only from the node.
            let (trk, inv) = (ct_state::TRK, ct_state::INV);
            e.rules.extend(applied.iter().map(|(_, _, l)| {
                dir.pod(prio::INVALID, l.port)
                    .ct_state(trk | inv, trk | inv)
                    .drop()
            }));
            e.rules.extend(node_addresses(node).map(|a| {
                rule(Table::IngressPolicy, prio::INVALID + 1)
                    .ip()
                    .ct_state(trk | inv, trk | inv)
                    .reg(reg::SOURCE, Source::Gateway as u32)
                    .nw_src(a)
                    .goto(Table::Output)
            }));
        }
        for (i, r) in rules.iter().enumerate() {
            let rid = rule_id(id, dir, i);
            e.rule = Some((dir, i));
            compile_rule(&mut e, node, objects, namespace, dir, rid, r, &applied);
            if i < 128 {
                e.rules.push(counted(dir, rid));
            }
        }
    }
    (e.rules, e.plan)
}

/// What policy `p` (in `namespace`), compiled as `plan` says, must add and remove when
/// Pod `pod_key` changes from `old` to `new` (`None`: no such object), with the plan
/// brought up to date. Its address joins or leaves the peer lists that choose it
/// differently after (a Pod created, gone, labelled anew, given its address): one clause
/// a conjunction of each such rule, instead of compiling the policy again (which selects
/// every peer of every rule: for a peer list of thousands, in many policies, that was the
/// whole cost of the change; and in a cluster every Pod that starts is such a change, as
/// it is created without an address and gets one). `None` when the change is more than
/// that (the policy applies to the Pod here and anything but its labels changed, or its
/// own selector chooses it differently; a peer list becomes or stops being empty; an
/// egress rule's named ports resolve on the Pod): compile it again.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    node: &NodeCtx,
    objects: &Objects,
    namespace: &str,
    p: &NetworkPolicy,
    plan: &Plan,
    pod_key: &ObjectKey,
    old: Option<&Pod>,
    new: Option<&Pod>,
) -> Option<(Vec<OwnedRule>, Vec<OwnedRule>, Plan)> {
    let own = pod_key.namespace == namespace;
    let labels_only = matches!((old, new), (Some(o), Some(n)) if pod::same_but_labels(o, n));
    let applied = |q: Option<&Pod>| {
        q.is_some_and(|q| {
            own && !q.host_network
                && !q.terminated()
                && p.pod_selector.matches(&q.labels)
                && node
                    .pods
                    .bound(&pod_key.namespace, &pod_key.name, q.ip)
                    .is_some()
        })
    };
    let (was, is) = (applied(old), applied(new));
    if (was || is) && !(labels_only && was && is) {
        return None;
    }
    let mut plan = plan.clone();
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    let address = |q: Option<&Pod>| q.and_then(|q| pod_address(node, pod_key, q));
    let (before, after) = (address(old), address(new));
    if !plan.compiled || (before.is_none() && after.is_none()) {
        return Some((add, remove, plan));
    }
    // Another Pod object with the address (one ending, the next starting) may keep it
    // in a list this one leaves.
    for a in before.iter().chain(&after) {
        if objects.pods_with_ip(*a).any(|k| k != pod_key) {
            return None;
        }
    }
    let ns_labels = objects.namespace_labels(&pod_key.namespace);
    for (dir, rules) in [
        (Direction::Ingress, p.ingress_rules()),
        (Direction::Egress, p.egress_rules()),
    ] {
        for (i, r) in rules.into_iter().flatten().enumerate() {
            let chosen = |list: &[Peer], q: Option<&Pod>| {
                q.is_some_and(|q| {
                    list.iter().any(|peer| match peer {
                        Peer::Pods { namespaces, pods } => {
                            !every_pod(namespaces, pods)
                                && namespaces.include(own, &ns_labels)
                                && pods.matches(&q.labels)
                        }
                        Peer::IpBlock(_) => false,
                    })
                })
            };
            // An egress rule's named ports resolve on its destinations: the Pod's own
            // ports, which only a change of its labels alone leaves as they were.
            let destination = match &r.peers {
                Peers::Any => true,
                Peers::Only(list) => {
                    chosen(list, old)
                        || chosen(list, new)
                        || list.iter().any(|peer| {
                            matches!(peer, Peer::IpBlock(b)
                                if before.iter().chain(&after).any(|a| b.contains(*a)))
                        })
                }
            };
            if dir == Direction::Egress && r.names_ports() && destination && !labels_only {
                return None;
            }
            let Peers::Only(list) = &r.peers else {
                continue;
            };
            let fixed = fixed_peers(node, objects, list);
            let member = |a: Option<Ipv4Addr>, q: Option<&Pod>| {
                a.map(Ipv4Cidr::host)
                    .filter(|h| chosen(list, q) && !fixed.contains(h))
            };
            let (out, into) = (member(before, old), member(after, new));
            if out == into {
                continue;
            }
            let clause = plan.rules.get_mut(&(dir, i))?;
            if clause.grouped || clause.peers == 0 {
                return None;
            }
            let peers = (clause.peers + usize::from(into.is_some()))
                .checked_sub(usize::from(out.is_some()))
                .filter(|n| *n > 0)?;
            clause.peers = peers;
            for &(id, k, n) in &clause.conjs {
                let conj = Action::Conjunction {
                    id,
                    clause: k,
                    n_clauses: n,
                };
                remove.extend(out.map(|h| peer_clause(dir, &h).then(conj.clone())));
                add.extend(into.map(|h| peer_clause(dir, &h).then(conj.clone())));
            }
        }
    }
    Some((add, remove, plan))
}

/// Whether a `Pods` peer is every Pod of the cluster (compiled to the Pod networks).
fn every_pod(namespaces: &super::Namespaces, pods: &LabelSelector) -> bool {
    matches!(namespaces, super::Namespaces::Matching(ns) if ns.selects_everything())
        && pods.selects_everything()
}

/// The networks a peer list names whatever Pods' labels are: its ipBlocks, and the Pod
/// networks of an every-Pod peer.
fn fixed_peers(node: &NodeCtx, objects: &Objects, list: &[Peer]) -> BTreeSet<Ipv4Cidr> {
    let mut out = BTreeSet::new();
    for peer in list {
        match peer {
            Peer::IpBlock(b) => {
                if let Some((c, except)) = b.ipv4() {
                    out.extend(subtract(c, &except));
                }
            }
            Peer::Pods { namespaces, pods } if every_pod(namespaces, pods) => {
                out.extend(all_pod_networks(node, objects));
            }
            Peer::Pods { .. } => {}
        }
    }
    out
}

/// An isolated Pod's deny rule: what no rule allowed stops here, counted, and with
/// `audit` handed to the switch to be logged.
pub fn deny_rule(dir: Direction, port: u32, audit: bool) -> OwnedRule {
    let r = dir.pod(prio::DENY, port);
    if audit {
        r.then(crate::k8s::pipeline::audit_action(
            dir == Direction::Ingress,
            port,
        ))
    } else {
        r.drop()
    }
}

/// The rule that counts the packets of the connections rule `rid` allowed, as they pass
/// (by the rule ids the connection's label keeps).
fn counted(dir: Direction, rid: u32) -> OwnedRule {
    let (trk, new) = (ct_state::TRK, ct_state::NEW);
    match dir {
        Direction::Egress => rule(Table::ConntrackState, prio::COUNT_EGRESS)
            .ip()
            .ct_state(trk, trk | new)
            .field_masked(FieldId::CtLabel, rid as u128, 0xffff_ffff)
            .goto(Table::L3Forwarding),
        Direction::Ingress => rule(Table::IngressPolicy, prio::COUNT_INGRESS)
            .ip()
            .ct_state(trk, trk | new)
            .field_masked(FieldId::CtLabel, (rid as u128) << 32, 0xffff_ffff << 32)
            .goto(Table::Output),
    }
}

/// The node's addresses: its gateway's, and its own on the underlay.
fn node_addresses(node: &NodeCtx) -> impl Iterator<Item = Ipv4Addr> {
    let gw = node.local.map(|l| l.gateway_ip());
    gw.into_iter()
        .chain(node.node_ip.filter(|ip| Some(*ip) != gw))
}

/// What no policy stops in direction `dir`: new connections from the node to its Pods,
/// and from its Pods to the node (Kubernetes: "traffic to and from the node where a Pod
/// is running is always allowed"). From the node is from the gateway port with a node
/// address, not anything the node merely routed in.
fn always(node: &NodeCtx, dir: Direction) -> Vec<OwnedRule> {
    node_addresses(node)
        .map(|a| {
            let r = rule(dir.table(), prio::ALWAYS).ip();
            match dir {
                Direction::Ingress => r
                    .reg(reg::SOURCE, Source::Gateway as u32)
                    .nw_src(a)
                    .goto(dir.next()),
                Direction::Egress => r.nw_dst(a).goto(dir.next()),
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn compile_rule(
    e: &mut Emit,
    node: &NodeCtx,
    objects: &Objects,
    namespace: &str,
    dir: Direction,
    rid: u32,
    r: &Rule,
    applied: &[(&ObjectKey, &Pod, LocalPod)],
) {
    let (numbered, named) = split_ports(&r.ports);
    let all_pods: BTreeSet<u32> = applied.iter().map(|(_, _, l)| l.port).collect();
    let peers = peer_addresses(node, objects, namespace, &r.peers);
    if let (Some(list), Some(at)) = (&peers, e.rule) {
        e.plan.rules.insert(
            at,
            PeerClause {
                peers: list.len(),
                conjs: Vec::new(),
                grouped: dir == Direction::Egress && !named.is_empty(),
            },
        );
    }
    // The numbered ports (or every port): one conjunction.
    if numbered.as_ref().is_none_or(|n| !n.is_empty()) {
        e.conjunction(
            dir,
            rid,
            Conj {
                pods: all_pods.clone(),
                peers: peers.clone(),
                ports: numbered,
            },
        );
    }
    if named.is_empty() {
        return;
    }
    match dir {
        // Names resolve on the local Pods: one conjunction per distinct resolution.
        Direction::Ingress => {
            let mut groups: BTreeMap<BTreeSet<PortKey>, BTreeSet<u32>> = BTreeMap::new();
            for (_, p, l) in applied {
                groups.entry(resolve(p, &named)).or_default().insert(l.port);
            }
            for (ports, pods) in groups {
                e.conjunction(
                    dir,
                    rid,
                    Conj {
                        pods,
                        peers: peers.clone(),
                        ports: Some(ports),
                    },
                );
            }
        }
        // Names resolve on the destinations: grouped likewise.
        Direction::Egress => {
            let mut groups: BTreeMap<BTreeSet<PortKey>, BTreeSet<Ipv4Cidr>> = BTreeMap::new();
            for (_, p, ip) in peer_pod_list(node, objects, namespace, &r.peers) {
                groups
                    .entry(resolve(p, &named))
                    .or_default()
                    .insert(Ipv4Cidr::host(ip));
            }
            for (ports, dsts) in groups {
                e.conjunction(
                    dir,
                    rid,
                    Conj {
                        pods: all_pods.clone(),
                        peers: Some(dsts),
                        ports: Some(ports),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
