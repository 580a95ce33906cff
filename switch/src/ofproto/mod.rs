//! Tables of rules, groups, and the interpreter that runs a packet through them.
//!
//! A [`Bridge`] owns the master copy of the tables and is changed only by its owner (the
//! control thread). Every change builds a new immutable [`Pipeline`] snapshot and publishes
//! it through an `ArcSwap`, with a new generation number; workers load the snapshot once
//! per batch and drop their caches when the generation moves (RCU style).

pub mod mac;
mod rule;
pub mod trace;
pub mod xlate;

pub use rule::{FlowModError, Group, Origin, Rule, RuleStats};

use crate::cls::{Classifier, Conj};
use arc_swap::ArcSwap;
use mac::MacTable;
use std::collections::BTreeMap;
use std::sync::Arc;
use vswitch_proto::action::{Action, port};
use vswitch_proto::flow::Flow;
use vswitch_proto::flowmod::{FlowSpec, FlowStats};
use vswitch_proto::group::{GroupSpec, GroupType};

/// Number of tables (0..=254).
pub const N_TABLES: usize = 255;

/// The Kubernetes pipeline's reserved tables (DESIGN §5), named in dumps and traces.
pub const TABLE_NAMES: [(u8, &str); 11] = [
    (0, "Classifier"),
    (1, "SpoofGuard"),
    (2, "ARPResponder"),
    (3, "Conntrack"),
    (4, "ConntrackState"),
    (5, "ServiceLB"),
    (6, "EgressPolicy"),
    (7, "L3Forwarding"),
    (8, "IngressPolicy"),
    (9, "ConntrackCommit"),
    (10, "Output"),
];

pub fn table_name(t: u8) -> Option<&'static str> {
    TABLE_NAMES.iter().find(|(n, _)| *n == t).map(|(_, s)| *s)
}

/// A port as the pipeline sees it (for `flood`, `all` and `normal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortDesc {
    pub no: u32,
    pub name: String,
    /// Left out of `flood` (but not `all`).
    pub no_flood: bool,
}

/// An immutable snapshot of everything the interpreter reads.
#[derive(Clone, Debug)]
pub struct Pipeline {
    tables: Vec<Classifier<Arc<Rule>>>,
    groups: BTreeMap<u32, Arc<Group>>,
    ports: Arc<[PortDesc]>,
    generation: u64,
}

impl Default for Pipeline {
    fn default() -> Pipeline {
        Pipeline {
            tables: (0..N_TABLES).map(|_| Classifier::new()).collect(),
            groups: BTreeMap::new(),
            ports: Arc::from(Vec::new()),
            generation: 0,
        }
    }
}

impl Pipeline {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn table(&self, t: u8) -> Option<&Classifier<Arc<Rule>>> {
        self.tables.get(t as usize)
    }

    pub fn group(&self, id: u32) -> Option<&Arc<Group>> {
        self.groups.get(&id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.values()
    }

    pub fn ports(&self) -> &[PortDesc] {
        &self.ports
    }

    pub fn port_by_name(&self, name: &str) -> Option<&PortDesc> {
        self.ports.iter().find(|p| p.name == name)
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

/// The switch's one bridge: the master tables, groups, ports and MAC table.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    master: Pipeline,
    published: Arc<ArcSwap<Pipeline>>,
    mac: Arc<MacTable>,
    generation: u64,
}

impl Bridge {
    pub fn new(name: &str) -> Bridge {
        let master = Pipeline::default();
        Bridge {
            name: name.to_string(),
            published: Arc::new(ArcSwap::from_pointee(master.clone())),
            master,
            mac: Arc::new(MacTable::default()),
            generation: 0,
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

    fn publish(&mut self) {
        self.generation += 1;
        self.master.generation = self.generation;
        self.published.store(Arc::new(self.master.clone()));
    }

    /// Replace the port list (after a port is added or removed).
    pub fn set_ports(&mut self, ports: Vec<PortDesc>) {
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
        self.master.ports = Arc::from(ports);
        self.publish();
    }

    /// The rules a criteria line selects, in no particular order.
    fn select(&self, criteria: &FlowSpec, strict: bool) -> Vec<Arc<Rule>> {
        self.master
            .iter_rules()
            .filter(|r| selects(criteria, strict, r))
            .cloned()
            .collect()
    }

    fn check(&self, spec: &FlowSpec, table: u8) -> Result<(), FlowModError> {
        rule::validate_actions(spec.actions.as_deref().unwrap_or(&[]), table, &|g| {
            self.master.groups.contains_key(&g)
        })
    }

    fn insert_rule(&mut self, r: Rule) -> Option<Arc<Rule>> {
        let conj = conjunctions(&r.actions);
        let (m, p, t) = (r.matching, r.priority, r.table);
        self.master.tables[t as usize].insert(&m, p, conj, Arc::new(r))
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
            let old = self.master.tables[table as usize]
                .find_exact(&s.matching, s.priority)
                .map(|e| e.rule.clone());
            let r = Rule::from_spec(s, table, old.as_deref(), origin, now);
            self.insert_rule(r);
        }
        if !specs.is_empty() {
            self.publish();
        }
        Ok(())
    }

    /// Replace the switch's own rules that carry `cookie` with `specs` (none: remove
    /// them), in one published change. Rules a user added are left alone.
    pub fn set_system_flows(
        &mut self,
        cookie: u64,
        specs: &[FlowSpec],
        now: u64,
    ) -> Result<(), FlowModError> {
        for s in specs {
            self.check(s, s.table.unwrap_or(0))?;
        }
        let old: Vec<Arc<Rule>> = self
            .master
            .iter_rules()
            .filter(|r| r.origin == Origin::System && r.cookie == cookie)
            .cloned()
            .collect();
        for r in &old {
            self.master.tables[r.table as usize].remove(&r.matching, r.priority);
        }
        for s in specs {
            let table = s.table.unwrap_or(0);
            // A user's rule in the same place overrides the switch's own.
            if self.master.tables[table as usize]
                .find_exact(&s.matching, s.priority)
                .is_some_and(|e| e.rule.origin == Origin::User)
            {
                continue;
            }
            let prev = old
                .iter()
                .find(|r| r.table == table && r.priority == s.priority && r.matching == s.matching);
            let mut s = s.clone();
            s.cookie = cookie;
            self.insert_rule(Rule::from_spec(
                &s,
                table,
                prev.map(|r| &**r),
                Origin::System,
                now,
            ));
        }
        if !old.is_empty() || !specs.is_empty() {
            self.publish();
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
            self.insert_rule(new);
        }
        if !targets.is_empty() {
            self.publish();
        }
        Ok(targets.len())
    }

    /// `del-flows [--strict]`: remove the selected rules; returns them.
    pub fn delete_flows(&mut self, criteria: &FlowSpec, strict: bool) -> Vec<Arc<Rule>> {
        let targets = self.select(criteria, strict);
        for r in &targets {
            self.master.tables[r.table as usize].remove(&r.matching, r.priority);
        }
        if !targets.is_empty() {
            self.publish();
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
        if self.master.groups.contains_key(&g.group_id) {
            return Err(FlowModError::GroupExists(g.group_id));
        }
        self.set_group(g)
    }

    /// `mod-group`: replace an existing group's type and buckets.
    pub fn modify_group(&mut self, g: &GroupSpec) -> Result<(), FlowModError> {
        if !self.master.groups.contains_key(&g.group_id) {
            return Err(FlowModError::NoSuchGroup(g.group_id));
        }
        self.set_group(g)
    }

    fn set_group(&mut self, g: &GroupSpec) -> Result<(), FlowModError> {
        if g.group_type == GroupType::Indirect && g.buckets.len() != 1 {
            return Err(FlowModError::IndirectBuckets(g.buckets.len()));
        }
        for b in &g.buckets {
            rule::validate_actions(&b.actions, 0, &|id| {
                id == g.group_id || self.master.groups.contains_key(&id)
            })?;
        }
        self.master
            .groups
            .insert(g.group_id, Arc::new(Group::from_spec(g)));
        self.publish();
        Ok(())
    }

    /// `del-groups [group_id=N]`: remove groups and, as OpenFlow requires, every rule that
    /// uses them. Returns the removed group ids.
    pub fn delete_groups(&mut self, id: Option<u32>) -> Vec<u32> {
        let ids: Vec<u32> = match id {
            Some(id) => self
                .master
                .groups
                .contains_key(&id)
                .then_some(id)
                .into_iter()
                .collect(),
            None => self.master.groups.keys().copied().collect(),
        };
        if ids.is_empty() {
            return ids;
        }
        for id in &ids {
            self.master.groups.remove(id);
        }
        let users: Vec<Arc<Rule>> = self
            .master
            .iter_rules()
            .filter(|r| ids.iter().any(|&g| r.uses_group(g)))
            .cloned()
            .collect();
        for r in users {
            self.master.tables[r.table as usize].remove(&r.matching, r.priority);
        }
        self.publish();
        ids
    }

    /// Remove rules whose idle or hard timeout has passed; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Arc<Rule>> {
        let expired: Vec<Arc<Rule>> = self
            .master
            .iter_rules()
            .filter(|r| r.expired(now))
            .cloned()
            .collect();
        for r in &expired {
            self.master.tables[r.table as usize].remove(&r.matching, r.priority);
        }
        if !expired.is_empty() {
            self.publish();
        }
        expired
    }

    /// Apply a flow learned by the `learn` action: add it, or, when the same flow is
    /// already there, restart its timeouts without publishing a new snapshot.
    pub fn learn(&mut self, spec: &FlowSpec, now: u64) -> Result<(), FlowModError> {
        let table = spec.table.unwrap_or(0);
        if let Some(e) =
            self.master.tables[table as usize].find_exact(&spec.matching, spec.priority)
            && e.rule.same_behaviour(spec)
        {
            e.rule.refresh(now);
            return Ok(());
        }
        self.add_flows_from(std::slice::from_ref(spec), Origin::Learned, now)
    }

    /// A copy of the master tables, to put back with [`Bridge::restore`] if a change
    /// cannot be made durable.
    pub fn snapshot(&self) -> Pipeline {
        self.master.clone()
    }

    /// Put back tables saved with [`Bridge::snapshot`] (ports are kept as they are now).
    pub fn restore(&mut self, mut saved: Pipeline) {
        saved.ports = self.master.ports.clone();
        self.master = saved;
        self.publish();
    }

    /// Trace a packet, written as a flow, through the current tables.
    pub fn trace(&self, packet: &Flow, now: u64) -> trace::Trace {
        xlate::trace(&self.master, &self.mac, packet, now)
    }

    /// Drop every rule and group (the tables are empty afterwards).
    pub fn clear(&mut self) {
        let ports = self.master.ports.clone();
        self.master = Pipeline {
            ports,
            ..Pipeline::default()
        };
        self.publish();
    }
}

#[cfg(test)]
mod tests;
