//! The switch's own rules and groups, each with the owners that want it.
//!
//! An owner (a Kubernetes object, the node's pipeline, a Pod) says the whole set of rules
//! and groups it wants with [`Bridge::set_owned`]; the bridge diffs that against what the
//! owner wanted before, so a change costs what that owner's rules cost, whatever else the
//! tables hold. A slot (table, priority, match) holds one rule whoever wants it: when
//! several owners want the same slot, it exists once and stays until its last owner goes.
//! Owners that want only `conjunction` actions in a slot (the clauses of conjunctive
//! matches, which NetworkPolicy produces in numbers) get one rule with all their
//! conjunctions; owners that want different ordinary actions in one slot are a conflict,
//! resolved for the owner with the smallest id and counted.
//!
//! A user's rule in a slot hides the switch's rule there while it exists; when it goes,
//! the switch's rule comes back.
//!
//! An owner is named by its id, which is also the cookie of the rules it alone owns: the
//! kind of owner in the top byte, a number below (see `k8s::pipeline::CookieKind`).

use super::rule::{FlowModError, Group, Origin, Rule, validate_actions};
use super::{Bridge, Undo as BridgeUndo};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use vswitch_proto::action::Action;
use vswitch_proto::flow::FLOW_U64S;
use vswitch_proto::flowmod::FlowSpec;
use vswitch_proto::group::GroupSpec;
use vswitch_proto::matching::Match;

/// An owner's id: the cookie of its rules.
pub type OwnerId = u64;

/// A rule as an owner wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRule {
    pub table: u8,
    pub priority: u16,
    pub matching: Match,
    pub actions: Vec<Action>,
}

impl OwnedRule {
    /// The rule of an added flow line (its table, priority, match and actions).
    pub fn from_spec(s: &FlowSpec) -> OwnedRule {
        OwnedRule {
            table: s.table.unwrap_or(0),
            priority: s.priority,
            matching: s.matching,
            actions: s.actions.clone().unwrap_or_default(),
        }
    }

    /// As a flow line (for messages and for `CHECK`).
    pub fn to_spec(&self, cookie: u64) -> FlowSpec {
        FlowSpec {
            table: (self.table != 0).then_some(self.table),
            priority: self.priority,
            cookie,
            matching: self.matching,
            actions: Some(self.actions.clone()),
            ..FlowSpec::default()
        }
    }

    fn key(&self) -> SlotKey {
        SlotKey::new(self.table, self.priority, &self.matching)
    }
}

/// A slot (table, priority, match) as a key: one word with the table, the priority and
/// which words of the match's mask are not zero, then those mask words and the match's
/// value under them. Tens of bytes where a [`Match`] is 464: the table of owned rules
/// holds one per rule the switch has, twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct SlotKey(Box<[u64]>);

impl SlotKey {
    fn new(table: u8, priority: u16, m: &Match) -> SlotKey {
        let words: Vec<usize> = (0..FLOW_U64S).filter(|&i| m.mask.w[i] != 0).collect();
        let bitmap = words.iter().fold(0u64, |b, &i| b | 1 << i);
        let mut k = Vec::with_capacity(1 + 2 * words.len());
        k.push(table as u64 | (priority as u64) << 8 | bitmap << 24);
        k.extend(words.iter().map(|&i| m.mask.w[i]));
        k.extend(words.iter().map(|&i| m.flow.w[i]));
        SlotKey(k.into_boxed_slice())
    }

    fn table(&self) -> u8 {
        self.0[0] as u8
    }

    fn priority(&self) -> u16 {
        (self.0[0] >> 8) as u16
    }

    fn matching(&self) -> Match {
        let bitmap = self.0[0] >> 24;
        let words: Vec<usize> = (0..FLOW_U64S).filter(|&i| bitmap & 1 << i != 0).collect();
        let mut m = Match::CATCHALL;
        for (j, &i) in words.iter().enumerate() {
            m.mask.w[i] = self.0[1 + j];
            m.flow.w[i] = self.0[1 + words.len() + j];
        }
        m
    }
}

/// The owners of one slot and what each wants there, by owner id.
#[derive(Clone, Debug, Default)]
pub(super) struct Slot {
    wants: Vec<(OwnerId, Arc<[Action]>)>,
}

/// One owner's rules and groups.
#[derive(Clone, Debug, Default)]
pub(super) struct OwnerEntry {
    rules: Vec<(SlotKey, Arc<[Action]>)>,
    groups: Vec<Arc<GroupSpec>>,
}

/// The owners of one group id.
#[derive(Clone, Debug, Default)]
pub(super) struct GroupSlot {
    wants: Vec<(OwnerId, Arc<GroupSpec>)>,
}

/// Everything owned, and the count of conflicts met.
#[derive(Debug, Default)]
pub(super) struct Owned {
    slots: HashMap<SlotKey, Slot>,
    owners: HashMap<OwnerId, OwnerEntry>,
    groups: HashMap<u32, GroupSlot>,
    conflicts: u64,
    /// Inside a batch ([`Bridge::defer_owned`]): slots whose wants changed, put in the
    /// tables once when the batch ends, not once per owner.
    defer: bool,
    dirty: Vec<SlotKey>,
    dirty_set: HashSet<SlotKey>,
}

/// One recorded change of [`Owned`], with what was there before.
#[derive(Debug)]
pub(super) enum Undo {
    Slot(SlotKey, Option<Slot>),
    Owner(OwnerId, Option<OwnerEntry>),
    /// One rule of an owner's entry, and what the owner wanted there before.
    OwnerRule(OwnerId, SlotKey, Option<Arc<[Action]>>),
    Group(u32, Option<GroupSlot>),
}

impl Owned {
    pub(super) fn undo(&mut self, u: Undo) {
        match u {
            Undo::Slot(k, Some(s)) => {
                self.slots.insert(k, s);
            }
            Undo::Slot(k, None) => {
                self.slots.remove(&k);
            }
            Undo::Owner(o, Some(e)) => {
                self.owners.insert(o, e);
            }
            Undo::Owner(o, None) => {
                self.owners.remove(&o);
            }
            Undo::OwnerRule(o, key, before) => {
                let entry = self.owners.entry(o).or_default();
                let at = entry.rules.iter().position(|(k, _)| *k == key);
                match (at, before) {
                    (Some(i), Some(a)) => entry.rules[i].1 = a,
                    (Some(i), None) => {
                        entry.rules.swap_remove(i);
                    }
                    (None, Some(a)) => entry.rules.push((key, a)),
                    (None, None) => {}
                }
                if entry.rules.is_empty() && entry.groups.is_empty() {
                    self.owners.remove(&o);
                }
            }
            Undo::Group(id, Some(g)) => {
                self.groups.insert(id, g);
            }
            Undo::Group(id, None) => {
                self.groups.remove(&id);
            }
        }
    }
}

/// [`Bridge::patch_owned`] could not express the change (the caller sets the owner's
/// whole set instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a change of conjunction clauses alone")]
pub struct PatchError;

/// Conjunction actions in the order a merged rule keeps them.
pub(super) fn conjunction_order(a: &Action) -> (u32, u8, u8) {
    match a {
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => (*id, *clause, *n_clauses),
        _ => (0, 0, 0),
    }
}

fn conjunction_only(actions: &[Action]) -> bool {
    actions.iter().all(Action::allowed_with_conjunction)
        && actions
            .iter()
            .any(|a| matches!(a, Action::Conjunction { .. }))
}

/// What a slot's owners want together: the cookie (the smallest owner's) and the
/// actions; `conflict` when owners want different ordinary actions.
fn merge(wants: &[(OwnerId, Arc<[Action]>)]) -> Option<(u64, Vec<Action>, bool)> {
    let (first, first_actions) = wants.first()?;
    if wants.len() == 1 {
        return Some((*first, first_actions.to_vec(), false));
    }
    if wants.iter().all(|(_, a)| conjunction_only(a)) {
        let mut all: Vec<Action> = wants.iter().flat_map(|(_, a)| a.iter().cloned()).collect();
        // One conjunction clause is one action however many owners want it; notes, which
        // do nothing, are dropped from a merged rule.
        all.retain(|a| matches!(a, Action::Conjunction { .. }));
        all.sort_by_key(conjunction_order);
        all.dedup();
        return Some((*first, all, false));
    }
    let conflict = wants.iter().any(|(_, a)| a != first_actions);
    Some((*first, first_actions.to_vec(), conflict))
}

impl Bridge {
    /// Make `owner` want exactly `rules` and `groups` (none: it wants nothing any more),
    /// in place of what it wanted before. All or nothing: a rule or group that is refused
    /// changes nothing. Costs O(what the owner wants, before and after).
    pub fn set_owned(
        &mut self,
        owner: OwnerId,
        rules: Vec<OwnedRule>,
        groups: Vec<GroupSpec>,
        now: u64,
    ) -> Result<(), FlowModError> {
        let new_groups: HashMap<u32, &GroupSpec> = groups.iter().map(|g| (g.group_id, g)).collect();
        let group_exists =
            |id: u32| new_groups.contains_key(&id) || self.master.groups.contains(id);
        for g in &groups {
            if g.group_type == vswitch_proto::group::GroupType::Indirect && g.buckets.len() != 1 {
                return Err(FlowModError::IndirectBuckets(g.buckets.len()));
            }
            for b in &g.buckets {
                validate_actions(&b.actions, 0, &group_exists)?;
            }
        }
        for r in &rules {
            if r.table as usize >= super::N_TABLES {
                return Err(FlowModError::BadTable(r.table as u32));
            }
            validate_actions(&r.actions, r.table, &group_exists)?;
        }
        let old = self.owned.owners.get(&owner).cloned().unwrap_or_default();
        // Groups the owner adds or changes go in first (its rules may use them)...
        let old_groups: HashMap<u32, &Arc<GroupSpec>> =
            old.groups.iter().map(|g| (g.group_id, g)).collect();
        let mut group_list = Vec::with_capacity(groups.len());
        for g in groups {
            let g = match old_groups.get(&g.group_id) {
                Some(o) if ***o == g => (*o).clone(),
                _ => {
                    let g = Arc::new(g);
                    self.want_group(owner, Some(g.clone()), g.group_id);
                    g
                }
            };
            group_list.push(g);
        }
        // ...then the rules (the last one given for a slot counts, but for conjunction
        // clauses, which add up: one owner's several conjunctions may share a clause)...
        let old_rules: HashMap<&SlotKey, &Arc<[Action]>> =
            old.rules.iter().map(|(k, a)| (k, a)).collect();
        let mut at: HashMap<SlotKey, usize> = HashMap::with_capacity(rules.len());
        let mut desired: Vec<(SlotKey, Vec<Action>)> = Vec::with_capacity(rules.len());
        for r in rules {
            let key = r.key();
            match at.get(&key) {
                Some(&i) if conjunction_only(&desired[i].1) && conjunction_only(&r.actions) => {
                    // In one order whatever the order of the rules ([`Bridge::patch_owned`]
                    // keeps it too).
                    let mut both = std::mem::take(&mut desired[i].1);
                    both.extend(r.actions);
                    both.sort_by_key(conjunction_order);
                    both.dedup();
                    desired[i].1 = both;
                }
                Some(&i) => desired[i].1 = r.actions,
                None => {
                    at.insert(key.clone(), desired.len());
                    desired.push((key, r.actions));
                }
            }
        }
        let mut rule_list = Vec::with_capacity(desired.len());
        for (key, actions) in desired {
            let actions = match old_rules.get(&key) {
                Some(a) if ***a == *actions => (*a).clone(),
                _ => {
                    let a: Arc<[Action]> = Arc::from(actions);
                    self.want_slot(owner, key.clone(), Some(a.clone()), now);
                    a
                }
            };
            rule_list.push((key, actions));
        }
        for (key, _) in &old.rules {
            if !at.contains_key(key) {
                self.want_slot(owner, key.clone(), None, now);
            }
        }
        // ...and the groups it no longer wants go last.
        let kept: HashSet<u32> = group_list.iter().map(|g| g.group_id).collect();
        for g in &old.groups {
            if !kept.contains(&g.group_id) {
                self.want_group(owner, None, g.group_id);
            }
        }
        let entry = (!rule_list.is_empty() || !group_list.is_empty()).then_some(OwnerEntry {
            rules: rule_list,
            groups: group_list,
        });
        let before = match entry {
            Some(e) => self.owned.owners.insert(owner, e),
            None => self.owned.owners.remove(&owner),
        };
        self.pending
            .push(BridgeUndo::Owned(Undo::Owner(owner, before)));
        self.changed();
        Ok(())
    }

    /// Change what `owner` wants by conjunction clauses alone: each rule of `add` (its
    /// actions all `conjunction`s) joins the owner's rule in its slot, each of `remove`
    /// leaves it (the slot goes with its last clause). What [`Bridge::set_owned`] would do
    /// with the owner's whole new set, at the cost of the clauses changed (and a scan of
    /// the owner's rules), for a change of one peer address in many policies. Refused,
    /// changing nothing, when a rule is not made of conjunction clauses or a clause to
    /// remove is not there: the caller then sets the whole set.
    pub fn patch_owned(
        &mut self,
        owner: OwnerId,
        add: Vec<OwnedRule>,
        remove: Vec<OwnedRule>,
        now: u64,
    ) -> Result<(), PatchError> {
        let entry = self.owned.owners.get(&owner);
        let find = |key: &SlotKey| {
            entry.and_then(|e| {
                e.rules
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, a)| a.clone())
            })
        };
        // Per slot changed: what the owner wanted there before, and wants now.
        type Change = (SlotKey, Option<Arc<[Action]>>, Option<Arc<[Action]>>);
        let mut changes: Vec<Change> = Vec::with_capacity(add.len() + remove.len());
        let mut seen: HashMap<SlotKey, usize> = HashMap::new();
        for (r, adding) in remove
            .into_iter()
            .map(|r| (r, false))
            .chain(add.into_iter().map(|r| (r, true)))
        {
            if r.table as usize >= super::N_TABLES || !conjunction_only(&r.actions) {
                return Err(PatchError);
            }
            let key = r.key();
            let i = *seen.entry(key.clone()).or_insert_with(|| {
                let before = find(&key);
                changes.push((key.clone(), before.clone(), before));
                changes.len() - 1
            });
            if changes[i]
                .2
                .as_deref()
                .is_some_and(|a| !conjunction_only(a))
            {
                // The owner wants other actions there: only a whole set can say what now.
                return Err(PatchError);
            }
            let mut now_actions: Vec<Action> = changes[i].2.as_deref().unwrap_or(&[]).to_vec();
            if adding {
                now_actions.extend(r.actions);
                now_actions.sort_by_key(conjunction_order);
                now_actions.dedup();
            } else {
                let before = now_actions.len();
                now_actions.retain(|a| !r.actions.contains(a));
                if before.checked_sub(r.actions.len()) != Some(now_actions.len()) {
                    return Err(PatchError);
                }
            }
            changes[i].2 = (!now_actions.is_empty()).then(|| Arc::from(now_actions));
        }
        for (key, before, after) in changes {
            if before == after {
                continue;
            }
            self.want_slot(owner, key.clone(), after.clone(), now);
            let entry = self.owned.owners.entry(owner).or_default();
            let at = entry.rules.iter().position(|(k, _)| *k == key);
            match (at, &after) {
                (Some(i), Some(a)) => entry.rules[i].1 = a.clone(),
                (Some(i), None) => {
                    entry.rules.swap_remove(i);
                }
                (None, Some(a)) => entry.rules.push((key.clone(), a.clone())),
                (None, None) => {}
            }
            if entry.rules.is_empty() && entry.groups.is_empty() {
                self.owned.owners.remove(&owner);
            }
            self.pending
                .push(BridgeUndo::Owned(Undo::OwnerRule(owner, key, before)));
        }
        self.changed();
        Ok(())
    }

    /// Replace the switch's own rules of owner `cookie` with `specs` (none: remove them),
    /// in one change: [`Bridge::set_owned`] for rules given as flow lines.
    pub fn set_system_flows(
        &mut self,
        cookie: u64,
        specs: &[FlowSpec],
        now: u64,
    ) -> Result<(), FlowModError> {
        let rules = specs.iter().map(OwnedRule::from_spec).collect();
        self.set_owned(cookie, rules, Vec::new(), now)
    }

    /// Record that `owner` wants `actions` in slot `key` (`None`: nothing), and put the
    /// slot's merged rule in the tables.
    fn want_slot(
        &mut self,
        owner: OwnerId,
        key: SlotKey,
        actions: Option<Arc<[Action]>>,
        now: u64,
    ) {
        let before = self.owned.slots.get(&key).cloned();
        let mut slot = before.clone().unwrap_or_default();
        slot.wants.retain(|(o, _)| *o != owner);
        if let Some(a) = actions {
            let at = slot.wants.partition_point(|(o, _)| *o < owner);
            slot.wants.insert(at, (owner, a));
        }
        if slot.wants.is_empty() {
            self.owned.slots.remove(&key);
        } else {
            self.owned.slots.insert(key.clone(), slot);
        }
        if !self.owned.defer {
            self.install_slot(&key, now);
        } else if self.owned.dirty_set.insert(key.clone()) {
            self.owned.dirty.push(key.clone());
        }
        self.pending
            .push(BridgeUndo::Owned(Undo::Slot(key, before)));
    }

    /// Start a batch: until [`Bridge::flush_owned`], owners' changes update what they
    /// want but the tables' rules are made once per slot at the end. A slot many owners
    /// share (a conjunction clause of a thousand policies) is then merged once, not once
    /// per owner: a manifest costs what its rules cost, not their square. Nothing may
    /// read the tables in between (the daemon batches inside a change, before its
    /// publish); [`Bridge::rollback`] ends the batch with the wants restored.
    pub fn defer_owned(&mut self) {
        self.owned.defer = true;
    }

    /// End a batch: each slot whose wants changed gets its rule.
    pub fn flush_owned(&mut self, now: u64) {
        self.owned.defer = false;
        self.owned.dirty_set.clear();
        for key in std::mem::take(&mut self.owned.dirty) {
            self.install_slot(&key, now);
        }
    }

    /// A batch rolled back: nothing of it reached the tables.
    pub(super) fn drop_deferred(&mut self) {
        self.owned.defer = false;
        self.owned.dirty_set.clear();
        self.owned.dirty.clear();
    }

    /// Put in the tables what a slot's owners want, unless a user's rule holds the slot
    /// or the rule there already is that.
    fn install_slot(&mut self, key: &SlotKey, now: u64) {
        let (table, priority, m) = (key.table(), key.priority(), key.matching());
        let current = self.master.rule_at(table, priority, &m).cloned();
        if current.as_ref().is_some_and(|r| r.origin == Origin::User) {
            return;
        }
        let want = self.owned.slots.get(key).and_then(|s| merge(&s.wants));
        match (want, current) {
            (None, None) => {}
            (None, Some(_)) => self.put_rule(table, priority, &m, None),
            (Some((cookie, actions, conflict)), current) => {
                if conflict {
                    self.owned.conflicts += 1;
                    tracing::warn!(
                        table,
                        priority,
                        cookie = format_args!("{cookie:#x}"),
                        "owners want different actions in one flow slot; the first owner's are used"
                    );
                }
                if current
                    .as_ref()
                    .is_some_and(|r| r.cookie == cookie && r.actions == actions)
                {
                    return;
                }
                let rule =
                    Rule::system(table, priority, m, cookie, actions, current.as_deref(), now);
                self.put_rule(table, priority, &m, Some(Arc::new(rule)));
            }
        }
    }

    /// A user's rule left this slot: the switch's rule comes back if owners want one.
    pub(super) fn reinstall_owned(&mut self, table: u8, priority: u16, m: &Match) {
        let key = SlotKey::new(table, priority, m);
        if self.owned.slots.contains_key(&key) {
            self.install_slot(&key, super::now_ms());
        }
    }

    fn want_group(&mut self, owner: OwnerId, spec: Option<Arc<GroupSpec>>, id: u32) {
        let before = self.owned.groups.get(&id).cloned();
        let mut slot = before.clone().unwrap_or_default();
        slot.wants.retain(|(o, _)| *o != owner);
        if let Some(s) = spec {
            let at = slot.wants.partition_point(|(o, _)| *o < owner);
            slot.wants.insert(at, (owner, s));
        }
        let want = slot.wants.first().map(|(_, s)| s.clone());
        if slot.wants.iter().any(|(_, s)| Some(s) != want.as_ref()) {
            self.owned.conflicts += 1;
            tracing::warn!(
                group = id,
                "owners want different groups with one id; the first owner's is used"
            );
        }
        if slot.wants.is_empty() {
            self.owned.groups.remove(&id);
        } else {
            self.owned.groups.insert(id, slot);
        }
        self.pending
            .push(BridgeUndo::Owned(Undo::Group(id, before)));
        let current = self.master.groups.get(id).cloned();
        if current.as_ref().is_some_and(|g| g.origin == Origin::User) {
            self.owned.conflicts += 1;
            tracing::warn!(
                group = id,
                "a user's group holds an id the switch wants; the user's stays"
            );
            return;
        }
        match want {
            None => {
                if current.is_some() {
                    self.put_group(id, None);
                }
            }
            Some(s) => {
                if current.as_ref().is_some_and(|g| g.spec == *s) {
                    return;
                }
                let g = Group::from_spec(&s, Origin::System, current.as_deref());
                self.put_group(id, Some(Arc::new(g)));
            }
        }
    }

    /// The owners of the switch's rule in this slot, smallest id first.
    pub fn slot_owners(&self, table: u8, priority: u16, m: &Match) -> Vec<OwnerId> {
        self.owned
            .slots
            .get(&SlotKey::new(table, priority, m))
            .map(|s| s.wants.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    /// The owners of the switch's group with this id.
    pub fn group_owners(&self, id: u32) -> Vec<OwnerId> {
        self.owned
            .groups
            .get(&id)
            .map(|s| s.wants.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    /// The rules `owner` wants, as it gave them.
    pub fn owned_rules(&self, owner: OwnerId) -> Vec<OwnedRule> {
        self.owned
            .owners
            .get(&owner)
            .map(|e| {
                e.rules
                    .iter()
                    .map(|(k, a)| OwnedRule {
                        table: k.table(),
                        priority: k.priority(),
                        matching: k.matching(),
                        actions: a.to_vec(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `owner` wants anything.
    pub fn is_owner(&self, owner: OwnerId) -> bool {
        self.owned.owners.contains_key(&owner)
    }

    /// How many times owners wanted different things in one slot or group id.
    pub fn owner_conflicts(&self) -> u64 {
        self.owned.conflicts
    }
}
