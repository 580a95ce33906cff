//! Tables of rules, groups, and the interpreter that runs a packet through them.
//!
//! A [`Bridge`] owns the master copy of the tables and is changed only by its owner (the
//! control thread). Changes are made to the master copy and recorded; [`Bridge::publish`]
//! makes them visible to the workers as one new immutable [`Pipeline`] snapshot (through
//! an `ArcSwap`, RCU style), with a new generation number and a [`Delta`] naming what
//! changed, so a worker keeps the cached flows a change cannot affect and drops only the
//! others. [`Bridge::rollback`] undoes recorded changes that were never published (a
//! change that could not be made durable). Publishing costs what the change touched, not
//! the size of the tables: tables and groups are shared between snapshots and copied on
//! write in small pieces (see [`crate::cls`] and [`GroupTable`]).
//!
//! Rules come from three places ([`Origin`]): the user (persisted), `learn` actions, and
//! the switch itself, whose rules each belong to one or more owners (a Kubernetes object,
//! the node's pipeline): see [`owned`].

pub mod mac;
pub mod meter;
pub mod owned;
mod rule;
pub mod trace;
pub mod xlate;

pub use owned::{OwnedRule, OwnerId, PatchError};
pub use rule::{Affinity, FlowModError, Group, Origin, Rule, RuleStats};

use crate::cls::{Classifier, Conj};
use arc_swap::ArcSwap;
use mac::MacTable;
use std::collections::BTreeMap;
use std::sync::Arc;
use vswitch_proto::action::{Action, port};
use vswitch_proto::flow::Flow;
use vswitch_proto::flowmod::{FlowSpec, FlowStats};
use vswitch_proto::group::{GroupSpec, GroupType};
use vswitch_proto::matching::Match;
use vswitch_proto::meter::MeterSpec;

/// Number of tables (0..=254).
pub const N_TABLES: usize = 255;

/// How many recent [`Delta`]s are kept: a worker that fell further behind than this (it
/// was idle while the tables changed this many times) drops its caches instead of
/// revalidating them.
pub const DELTA_HISTORY: usize = 4096;
/// A publish that changed more rule slots than this is kept as "everything changed" (a
/// worker drops its caches): checking each cached flow against it would cost more than
/// translating again, and the history would hold it in memory.
pub const MAX_DELTA_RULES: usize = 8192;

/// The name of a table in dumps and traces: the Kubernetes pipeline's reserved tables
/// (DESIGN §5) are named by the pipeline module.
pub fn table_name(t: u8) -> Option<&'static str> {
    crate::k8s::pipeline::Table::from_number(t).map(|t| t.name())
}

/// A port as the pipeline sees it (for `flood`, `all` and `normal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortDesc {
    pub no: u32,
    pub name: String,
    /// Left out of `flood` (but not `all`).
    pub no_flood: bool,
}

/// What one publish changed: the rule slots (table, priority, match) whose rule was added,
/// removed or modified, the groups changed, and whether the port list changed. A cached
/// flow that no changed slot could match, and that used none of the changed groups, is
/// still right (see `dp::revalidate`).
#[derive(Debug, Default)]
pub struct Delta {
    pub generation: u64,
    pub rules: Vec<(u8, u16, Match)>,
    pub groups: Vec<u32>,
    pub ports: bool,
    /// Everything may have changed (the tables were cleared, or too much changed to
    /// name it).
    pub all: bool,
    /// The publish before this one, while it is kept (a chain, newest first, cut at the
    /// oldest kept: a publish costs nothing however long the history is).
    prev: arc_swap::ArcSwapOption<Delta>,
}

/// Groups by id, in shards that snapshots share: a change copies one shard.
#[derive(Clone, Debug)]
pub struct GroupTable {
    shards: Vec<Arc<BTreeMap<u32, Arc<Group>>>>,
    len: usize,
}

const GROUP_SHARDS: usize = 64;

impl Default for GroupTable {
    fn default() -> GroupTable {
        GroupTable {
            shards: (0..GROUP_SHARDS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }
}

impl GroupTable {
    fn shard(id: u32) -> usize {
        // Ids are often consecutive: spread them with a multiplicative hash.
        (id.wrapping_mul(0x9e37_79b9) >> 26) as usize % GROUP_SHARDS
    }

    pub fn get(&self, id: u32) -> Option<&Arc<Group>> {
        self.shards[Self::shard(id)].get(&id)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    fn insert(&mut self, g: Arc<Group>) -> Option<Arc<Group>> {
        let id = g.spec.group_id;
        let old = Arc::make_mut(&mut self.shards[Self::shard(id)]).insert(id, g);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn remove(&mut self, id: u32) -> Option<Arc<Group>> {
        let shard = &mut self.shards[Self::shard(id)];
        if !shard.contains_key(&id) {
            return None;
        }
        let old = Arc::make_mut(shard).remove(&id);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every group, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Group>> {
        let mut all: Vec<&Arc<Group>> = self.shards.iter().flat_map(|s| s.values()).collect();
        all.sort_by_key(|g| g.spec.group_id);
        all.into_iter()
    }
}

/// An immutable snapshot of everything the interpreter reads.
#[derive(Clone, Debug)]
pub struct Pipeline {
    tables: Vec<Arc<Classifier<Arc<Rule>>>>,
    groups: GroupTable,
    /// Shared by every snapshot: meters change in place.
    meters: Arc<meter::MeterTable>,
    ports: Arc<[PortDesc]>,
    generation: u64,
    /// What the publish that made this snapshot changed, linked to the ones before.
    delta: Option<Arc<Delta>>,
}

impl Default for Pipeline {
    fn default() -> Pipeline {
        Pipeline {
            tables: (0..N_TABLES).map(|_| Arc::new(Classifier::new())).collect(),
            groups: GroupTable::default(),
            meters: Arc::default(),
            ports: Arc::from(Vec::new()),
            generation: 0,
            delta: None,
        }
    }
}

impl Pipeline {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn table(&self, t: u8) -> Option<&Classifier<Arc<Rule>>> {
        self.tables.get(t as usize).map(|c| &**c)
    }

    pub fn meter(&self, id: u32) -> Option<Arc<meter::Meter>> {
        self.meters.get(id)
    }

    pub fn group(&self, id: u32) -> Option<&Arc<Group>> {
        self.groups.get(id)
    }

    /// Every group, by id.
    pub fn groups(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.iter()
    }

    pub fn n_groups(&self) -> usize {
        self.groups.len()
    }

    pub fn ports(&self) -> &[PortDesc] {
        &self.ports
    }

    pub fn port_by_name(&self, name: &str) -> Option<&PortDesc> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The changes of every publish after generation `since` up to this one, oldest
    /// first; `None` when they are no longer all known (too many publishes since, or a
    /// change of everything): the caller must assume anything changed.
    pub fn changes_since(&self, since: u64) -> Option<Vec<Arc<Delta>>> {
        let mut out = Vec::new();
        let mut cur = self.delta.clone();
        while let Some(d) = cur {
            if d.generation <= since {
                break;
            }
            if d.all {
                return None;
            }
            cur = d.prev.load_full();
            out.push(d);
        }
        // The chain must reach back to `since`: otherwise a change is missing.
        let oldest = out.last().map_or(self.generation, |d| d.generation);
        if oldest > since + 1 {
            return None;
        }
        out.reverse();
        Some(out)
    }

    /// Every rule, in no particular order.
    pub fn iter_rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.tables
            .iter()
            .flat_map(|c| c.iter().map(|(_, e)| &e.rule))
    }

    /// Every rule, in the order `dump-flows` prints them: by table, then priority (highest
    /// first), then match.
    pub fn rules(&self) -> Vec<Arc<Rule>> {
        let mut out: Vec<Arc<Rule>> = self.iter_rules().cloned().collect();
        out.sort_by(|a, b| {
            (
                a.table,
                std::cmp::Reverse(a.priority),
                a.matching.mask.w,
                a.matching.flow.w,
            )
                .cmp(&(
                    b.table,
                    std::cmp::Reverse(b.priority),
                    b.matching.mask.w,
                    b.matching.flow.w,
                ))
        });
        out
    }

    pub fn n_rules(&self) -> usize {
        self.tables.iter().map(|c| c.len()).sum()
    }

    /// The rule in exactly this slot.
    pub fn rule_at(&self, table: u8, priority: u16, m: &Match) -> Option<&Arc<Rule>> {
        self.table(table)?.find_exact(m, priority).map(|e| &e.rule)
    }
}

/// The soft-match clauses of a rule whose actions are only `conjunction`s (and notes).
fn conjunctions(actions: &[Action]) -> Option<Arc<[Conj]>> {
    if !actions.iter().all(Action::allowed_with_conjunction) {
        return None;
    }
    let cs: Vec<Conj> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Conjunction {
                id,
                clause,
                n_clauses,
            } => Some(Conj {
                id: *id,
                clause: *clause,
                n_clauses: *n_clauses,
            }),
            _ => None,
        })
        .collect();
    (!cs.is_empty()).then(|| Arc::from(cs))
}

/// What a `del-flows`/`mod-flows`/`dump-flows` criteria line selects.
fn selects(criteria: &FlowSpec, strict: bool, r: &Rule) -> bool {
    if let Some(t) = criteria.table
        && t != r.table
    {
        return false;
    }
    if strict {
        if r.priority != criteria.priority || r.matching != criteria.matching {
            return false;
        }
    } else if !criteria.matching.loosely_selects(&r.matching) {
        return false;
    }
    if (r.cookie ^ criteria.cookie) & criteria.cookie_mask != 0 {
        return false;
    }
    if let Some(p) = criteria.out_port
        && p != port::NONE
        && !r.outputs_to(p)
    {
        return false;
    }
    if let Some(g) = criteria.out_group
        && !r.uses_group(g)
    {
        return false;
    }
    true
}

/// A clock in milliseconds, shared by the bridge and the fast paths so ages agree.
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// One recorded change, with what was there before (to undo it, and to name it in the
/// next [`Delta`]).
#[derive(Debug)]
enum Undo {
    Rule {
        table: u8,
        priority: u16,
        matching: Box<Match>,
        before: Option<Arc<Rule>>,
    },
    Group {
        id: u32,
        before: Option<Arc<Group>>,
    },
    Ports(Arc<[PortDesc]>),
    Owned(owned::Undo),
    /// The tables were cleared (not undoable: only for tests and tools).
    All,
}

/// A user rule or group that changed since the last publish: what must be saved.
#[derive(Clone, Debug)]
pub enum UserChange {
    /// The user's rule now in this slot (added or modified).
    Flow(Arc<Rule>),
    /// No user rule in this slot any more (its table, priority and match).
    FlowGone(Box<(u8, u16, Match)>),
    Group(Arc<Group>),
    GroupGone(u32),
}

/// The switch's one bridge: the master tables, groups, ports and MAC table.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    master: Pipeline,
    published: Arc<ArcSwap<Pipeline>>,
    mac: Arc<MacTable>,
    generation: u64,
    /// Changes since the last publish, in order.
    pending: Vec<Undo>,
    /// Publish after every change (for tests and tools); the daemon publishes itself,
    /// once a change is durable.
    auto_publish: bool,
    recent: std::collections::VecDeque<Arc<Delta>>,
    /// Rules named by the kept history.
    recent_rules: usize,
    owned: owned::Owned,
    /// The slots whose rule has a timeout (for [`Bridge::expire`]).
    timed: std::collections::HashSet<(u8, u16, Match)>,
}

impl Bridge {
    /// A bridge that publishes every change at once.
    pub fn new(name: &str) -> Bridge {
        let master = Pipeline::default();
        Bridge {
            name: name.to_string(),
            published: Arc::new(ArcSwap::from_pointee(master.clone())),
            master,
            mac: Arc::new(MacTable::default()),
            generation: 0,
            pending: Vec::new(),
            auto_publish: true,
            recent: std::collections::VecDeque::new(),
            recent_rules: 0,
            owned: owned::Owned::default(),
            timed: std::collections::HashSet::new(),
        }
    }

    /// A bridge whose changes reach the workers only at [`Bridge::publish`] (and can be
    /// undone before with [`Bridge::rollback`]).
    pub fn transactional(name: &str) -> Bridge {
        Bridge {
            auto_publish: false,
            ..Bridge::new(name)
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The published snapshot, for workers.
    pub fn pipeline_handle(&self) -> Arc<ArcSwap<Pipeline>> {
        self.published.clone()
    }

    pub fn mac_table(&self) -> Arc<MacTable> {
        self.mac.clone()
    }

    /// The current master copy (what the next publish will show).
    pub fn pipeline(&self) -> &Pipeline {
        &self.master
    }

    /// Whether there are changes not yet published.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn changed(&mut self) {
        if self.auto_publish {
            self.publish();
        }
    }

    /// Make every change since the last publish visible to the workers, as one new
    /// generation. Nothing happens when nothing changed.
    pub fn publish(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut delta = Delta::default();
        for u in self.pending.drain(..) {
            match u {
                Undo::Rule {
                    table,
                    priority,
                    matching,
                    ..
                } => delta.rules.push((table, priority, *matching)),
                Undo::Group { id, .. } => delta.groups.push(id),
                Undo::Ports(_) => delta.ports = true,
                Undo::Owned(_) => {}
                Undo::All => delta.all = true,
            }
        }
        delta.rules.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2.mask.w, a.2.flow.w).cmp(&(b.0, b.1, b.2.mask.w, b.2.flow.w))
        });
        delta.rules.dedup();
        if delta.rules.len() > MAX_DELTA_RULES {
            delta.rules = Vec::new();
            delta.all = true;
        }
        delta.groups.sort_unstable();
        delta.groups.dedup();
        if delta.rules.is_empty() && delta.groups.is_empty() && !delta.ports && !delta.all {
            // Only the owners' bookkeeping changed (an owner wanting what it had): the
            // workers' tables are as they were, so there is nothing to publish.
            return;
        }
        self.generation += 1;
        delta.generation = self.generation;
        delta.prev = arc_swap::ArcSwapOption::new(self.recent.back().cloned());
        self.recent_rules += delta.rules.len();
        let delta = Arc::new(delta);
        self.recent.push_back(delta.clone());
        // The history is bounded in publishes and in rules; the oldest kept forgets the
        // one before it.
        while self.recent.len() > DELTA_HISTORY || self.recent_rules > 2 * MAX_DELTA_RULES {
            if let Some(old) = self.recent.pop_front() {
                self.recent_rules -= old.rules.len();
            }
            if let Some(first) = self.recent.front() {
                first.prev.store(None);
            }
        }
        // A large change's undo list is not kept allocated for the small ones after it.
        if self.pending.capacity() > 1024 {
            self.pending = Vec::new();
        }
        self.master.generation = self.generation;
        self.master.delta = Some(delta);
        self.published.store(Arc::new(self.master.clone()));
    }

    /// Undo every change since the last publish (they were never seen by a worker).
    pub fn rollback(&mut self) {
        while let Some(u) = self.pending.pop() {
            match u {
                Undo::Rule {
                    table,
                    priority,
                    matching,
                    before,
                } => {
                    self.set_slot(table, priority, &matching, before);
                }
                Undo::Group { id, before } => match before {
                    Some(g) => {
                        self.master.groups.insert(g);
                    }
                    None => {
                        self.master.groups.remove(id);
                    }
                },
                Undo::Ports(p) => self.master.ports = p,
                Undo::Owned(o) => self.owned.undo(o),
                Undo::All => {}
            }
        }
        self.drop_deferred();
    }

    /// The user rules and groups changed since the last publish: what the caller must
    /// make durable before it publishes. One pass over the changes.
    pub fn pending_user_changes(&self) -> Vec<UserChange> {
        use std::collections::HashMap;
        // What each changed slot and group held before the first change to it.
        let mut rules: HashMap<(u8, u16, Match), Option<&Arc<Rule>>> = HashMap::new();
        let mut rule_order = Vec::new();
        let mut groups: HashMap<u32, Option<&Arc<Group>>> = HashMap::new();
        let mut group_order = Vec::new();
        for u in &self.pending {
            match u {
                Undo::Rule {
                    table,
                    priority,
                    matching,
                    before,
                } => {
                    let k = (*table, *priority, **matching);
                    if let std::collections::hash_map::Entry::Vacant(e) = rules.entry(k) {
                        e.insert(before.as_ref());
                        rule_order.push(k);
                    }
                }
                Undo::Group { id, before } => {
                    if let std::collections::hash_map::Entry::Vacant(e) = groups.entry(*id) {
                        e.insert(before.as_ref());
                        group_order.push(*id);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for k in rule_order {
            match self.master.rule_at(k.0, k.1, &k.2) {
                Some(r) if r.origin == Origin::User => out.push(UserChange::Flow(r.clone())),
                _ if rules[&k].is_some_and(|r| r.origin == Origin::User) => {
                    out.push(UserChange::FlowGone(Box::new(k)))
                }
                _ => {}
            }
        }
        for id in group_order {
            match self.master.groups.get(id) {
                Some(g) if g.origin == Origin::User => out.push(UserChange::Group(g.clone())),
                _ if groups[&id].is_some_and(|g| g.origin == Origin::User) => {
                    out.push(UserChange::GroupGone(id))
                }
                _ => {}
            }
        }
        out
    }

    /// Put `rule` in its slot (or empty the slot), recording what was there.
    fn put_rule(&mut self, table: u8, priority: u16, m: &Match, rule: Option<Arc<Rule>>) {
        let before = self.set_slot(table, priority, m, rule);
        self.pending.push(Undo::Rule {
            table,
            priority,
            matching: Box::new(*m),
            before,
        });
    }

    /// The classifier's side of putting a rule in a slot, and the index of the rules
    /// with timeouts; what the slot held.
    fn set_slot(
        &mut self,
        table: u8,
        priority: u16,
        m: &Match,
        rule: Option<Arc<Rule>>,
    ) -> Option<Arc<Rule>> {
        let timed = rule
            .as_ref()
            .is_some_and(|r| r.idle_timeout != 0 || r.hard_timeout != 0);
        let cls = Arc::make_mut(&mut self.master.tables[table as usize]);
        let before = match rule {
            Some(r) => {
                let conj = conjunctions(&r.actions);
                cls.insert(m, priority, conj, r)
            }
            None => cls.remove(m, priority),
        };
        if timed {
            self.timed.insert((table, priority, *m));
        } else if before
            .as_ref()
            .is_some_and(|r| r.idle_timeout != 0 || r.hard_timeout != 0)
        {
            self.timed.remove(&(table, priority, *m));
        }
        before
    }

    fn put_group(&mut self, id: u32, g: Option<Arc<Group>>) {
        let before = match g {
            Some(g) => self.master.groups.insert(g),
            None => self.master.groups.remove(id),
        };
        self.pending.push(Undo::Group { id, before });
    }

    /// Replace the port list (after a port is added or removed).
    pub fn set_ports(&mut self, ports: Vec<PortDesc>) {
        if *self.master.ports == *ports {
            return;
        }
        let gone: Vec<u32> = self
            .master
            .ports
            .iter()
            .filter(|p| !ports.iter().any(|q| q.no == p.no))
            .map(|p| p.no)
            .collect();
        for p in gone {
            self.mac.flush_port(p);
        }
        let before = std::mem::replace(&mut self.master.ports, Arc::from(ports));
        self.pending.push(Undo::Ports(before));
        self.changed();
    }

    /// The rules a criteria line selects, in no particular order.
    fn select(&self, criteria: &FlowSpec, strict: bool) -> Vec<Arc<Rule>> {
        if strict && let Some(t) = criteria.table {
            // One slot: no scan.
            return self
                .master
                .rule_at(t, criteria.priority, &criteria.matching)
                .filter(|r| selects(criteria, strict, r))
                .cloned()
                .into_iter()
                .collect();
        }
        self.master
            .iter_rules()
            .filter(|r| selects(criteria, strict, r))
            .cloned()
            .collect()
    }

    fn check(&self, spec: &FlowSpec, table: u8) -> Result<(), FlowModError> {
        let actions = spec.actions.as_deref().unwrap_or(&[]);
        for a in actions {
            if let Action::Meter(m) = a
                && !self.master.meters.contains(*m)
            {
                return Err(FlowModError::NoSuchMeter(*m));
            }
        }
        rule::validate_actions(actions, table, &|g| self.master.groups.contains(g))
    }

    /// `add-meter`: a new meter, with full buckets.
    pub fn add_meter(&mut self, m: &MeterSpec, now: u64) -> Result<(), FlowModError> {
        if self.master.meters.contains(m.meter_id) {
            return Err(FlowModError::MeterExists(m.meter_id));
        }
        self.master.meters.insert(meter::Meter::new(m.clone(), now));
        Ok(())
    }

    /// `del-meters [meter=N]`: remove meters and, as OpenFlow requires, the rules that use
    /// them. Returns the removed meter ids.
    pub fn delete_meters(&mut self, id: Option<u32>) -> Vec<u32> {
        let ids: Vec<u32> = match id {
            Some(id) => self
                .master
                .meters
                .contains(id)
                .then_some(id)
                .into_iter()
                .collect(),
            None => self
                .master
                .meters
                .all()
                .iter()
                .map(|m| m.spec.meter_id)
                .collect(),
        };
        if ids.is_empty() {
            return ids;
        }
        let users: Vec<Arc<Rule>> = self
            .master
            .iter_rules()
            .filter(|r| {
                r.actions
                    .iter()
                    .any(|a| matches!(a, Action::Meter(m) if ids.contains(m)))
            })
            .cloned()
            .collect();
        if !users.is_empty() {
            self.remove_rules(&users);
            self.changed();
        }
        for id in &ids {
            self.master.meters.remove(*id);
        }
        ids
    }

    /// `dump-meters` / `meter-stats`: every meter (or one), with its counters and how
    /// many rules use it.
    pub fn dump_meters(
        &self,
        id: Option<u32>,
        now: u64,
    ) -> Vec<(MeterSpec, meter::MeterStats, usize)> {
        self.master
            .meters
            .all()
            .iter()
            .filter(|m| id.is_none_or(|id| m.spec.meter_id == id))
            .map(|m| {
                let id = m.spec.meter_id;
                let n = self
                    .master
                    .iter_rules()
                    .filter(|r| r.actions.first() == Some(&Action::Meter(id)))
                    .count();
                (m.spec.clone(), m.stats(now), n)
            })
            .collect()
    }

    /// `add-flow`/`add-flows`: all or nothing. A flow with the same table, match and
    /// priority as an existing one replaces it (keeping its counters unless the flow says
    /// `reset_counts`).
    pub fn add_flows(&mut self, specs: &[FlowSpec], now: u64) -> Result<(), FlowModError> {
        self.add_flows_from(specs, Origin::User, now)
    }

    fn add_flows_from(
        &mut self,
        specs: &[FlowSpec],
        origin: Origin,
        now: u64,
    ) -> Result<(), FlowModError> {
        for s in specs {
            self.check(s, s.table.unwrap_or(0))?;
        }
        for s in specs {
            let table = s.table.unwrap_or(0);
            let old = self.master.rule_at(table, s.priority, &s.matching).cloned();
            let r = Rule::from_spec(s, table, old.as_deref(), origin, now);
            self.put_rule(table, s.priority, &s.matching, Some(Arc::new(r)));
        }
        if !specs.is_empty() {
            self.changed();
        }
        Ok(())
    }

    /// `mod-flows [--strict]`: change the actions (and cookie, timeouts) of the selected
    /// rules; returns how many. Like OpenFlow 1.1 and later, never adds a flow.
    pub fn modify_flows(
        &mut self,
        spec: &FlowSpec,
        strict: bool,
        now: u64,
    ) -> Result<usize, FlowModError> {
        let targets = self.select(spec, strict);
        for r in &targets {
            self.check(spec, r.table)?;
        }
        for old in &targets {
            let new = old.modified(spec, now);
            self.put_rule(old.table, old.priority, &old.matching, Some(Arc::new(new)));
        }
        if !targets.is_empty() {
            self.changed();
        }
        Ok(targets.len())
    }

    /// Remove these rules from their slots; a slot the switch's own rules want gets them
    /// back (a user's rule only hides them while it is there).
    fn remove_rules(&mut self, rules: &[Arc<Rule>]) {
        for r in rules {
            self.put_rule(r.table, r.priority, &r.matching, None);
            if r.origin != Origin::System {
                self.reinstall_owned(r.table, r.priority, &r.matching);
            }
        }
    }

    /// `del-flows [--strict]`: remove the selected rules; returns them.
    pub fn delete_flows(&mut self, criteria: &FlowSpec, strict: bool) -> Vec<Arc<Rule>> {
        let targets = self.select(criteria, strict);
        self.remove_rules(&targets);
        if !targets.is_empty() {
            self.changed();
        }
        targets
    }

    /// `dump-flows [criteria]`: the selected rules with their counters.
    pub fn dump_flows(&self, criteria: Option<&FlowSpec>, now: u64) -> Vec<(Arc<Rule>, FlowStats)> {
        self.master
            .rules()
            .into_iter()
            .filter(|r| criteria.is_none_or(|c| selects(c, false, r)))
            .map(|r| {
                let st = r.flow_stats(now);
                (r, st)
            })
            .collect()
    }

    /// `add-group`: a new group (an existing id is an error, as in OpenFlow).
    pub fn add_group(&mut self, g: &GroupSpec) -> Result<(), FlowModError> {
        if self.master.groups.contains(g.group_id) {
            return Err(FlowModError::GroupExists(g.group_id));
        }
        self.set_group(g, Origin::User)?;
        self.changed();
        Ok(())
    }

    /// `mod-group`: replace an existing group's type and buckets.
    pub fn modify_group(&mut self, g: &GroupSpec) -> Result<(), FlowModError> {
        match self.master.groups.get(g.group_id) {
            None => return Err(FlowModError::NoSuchGroup(g.group_id)),
            Some(old) if old.origin != Origin::User => {
                return Err(FlowModError::SystemGroup(g.group_id));
            }
            Some(_) => {}
        }
        self.set_group(g, Origin::User)?;
        self.changed();
        Ok(())
    }

    fn check_group(&self, g: &GroupSpec) -> Result<(), FlowModError> {
        if g.group_type == GroupType::Indirect && g.buckets.len() != 1 {
            return Err(FlowModError::IndirectBuckets(g.buckets.len()));
        }
        for b in &g.buckets {
            rule::validate_actions(&b.actions, 0, &|id| {
                id == g.group_id || self.master.groups.contains(id)
            })?;
        }
        Ok(())
    }

    fn set_group(&mut self, g: &GroupSpec, origin: Origin) -> Result<(), FlowModError> {
        self.check_group(g)?;
        let old = self.master.groups.get(g.group_id).cloned();
        let new = Group::from_spec(g, origin, old.as_deref());
        self.put_group(g.group_id, Some(Arc::new(new)));
        Ok(())
    }

    /// `del-groups [group_id=N]`: remove the user's groups and, as OpenFlow requires,
    /// every rule that uses them. Returns the removed group ids. The switch's own groups
    /// stay (they go with the objects they were made for).
    pub fn delete_groups(&mut self, id: Option<u32>) -> Vec<u32> {
        let ids: Vec<u32> = match id {
            Some(id) => self
                .master
                .groups
                .get(id)
                .filter(|g| g.origin == Origin::User)
                .map(|_| id)
                .into_iter()
                .collect(),
            None => self
                .master
                .groups
                .iter()
                .filter(|g| g.origin == Origin::User)
                .map(|g| g.spec.group_id)
                .collect(),
        };
        if ids.is_empty() {
            return ids;
        }
        let users: Vec<Arc<Rule>> = self
            .master
            .iter_rules()
            .filter(|r| ids.iter().any(|&g| r.uses_group(g)))
            .cloned()
            .collect();
        self.remove_rules(&users);
        for id in &ids {
            self.put_group(*id, None);
        }
        self.changed();
        ids
    }

    /// Remove rules whose idle or hard timeout has passed; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Arc<Rule>> {
        // Only the rules with timeouts are looked at: the switch's own have none.
        let expired: Vec<Arc<Rule>> = self
            .timed
            .iter()
            .filter_map(|(t, p, m)| self.master.rule_at(*t, *p, m))
            .filter(|r| r.expired(now))
            .cloned()
            .collect();
        self.remove_rules(&expired);
        if !expired.is_empty() {
            self.changed();
        }
        expired
    }

    /// Apply a flow learned by the `learn` action: add it, or, when the same flow is
    /// already there, restart its timeouts without publishing a new snapshot.
    pub fn learn(&mut self, spec: &FlowSpec, now: u64) -> Result<(), FlowModError> {
        let table = spec.table.unwrap_or(0);
        if let Some(r) = self.master.rule_at(table, spec.priority, &spec.matching)
            && r.same_behaviour(spec)
        {
            r.refresh(now);
            return Ok(());
        }
        self.add_flows_from(std::slice::from_ref(spec), Origin::Learned, now)
    }

    /// Trace a packet, written as a flow, through the current tables.
    pub fn trace(&self, packet: &Flow, now: u64) -> trace::Trace {
        xlate::trace(&self.master, &self.mac, packet, now)
    }

    /// Trace a packet and follow each `ct(...,table=N)` into the table it resumes in,
    /// with `ct_next` as the successive `ct_state`s (then `trk|new`), as
    /// `ofproto/trace --ct-next` does.
    pub fn trace_ct(
        &self,
        packet: &Flow,
        now: u64,
        ct_next: &[u16],
    ) -> (trace::Trace, Vec<trace::Resumed>) {
        let first = self.trace(packet, now);
        let rest = trace::follow(&first, ct_next, |f| self.trace(f, now));
        (first, rest)
    }

    /// Drop every rule and group, the switch's own included (the tables are empty
    /// afterwards).
    pub fn clear(&mut self) {
        let ports = self.master.ports.clone();
        self.master = Pipeline {
            ports,
            generation: self.master.generation,
            delta: self.master.delta.clone(),
            ..Pipeline::default()
        };
        self.owned = owned::Owned::default();
        self.timed.clear();
        self.pending.clear();
        self.pending.push(Undo::All);
        self.changed();
    }
}

#[cfg(test)]
mod tests;
