//! Rules and groups as the bridge stores them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use vswitch_proto::action::{Action, CtZone};
use vswitch_proto::flowmod::{FlowFlags, FlowSpec, FlowStats};
use vswitch_proto::group::{Bucket, GroupSpec, GroupType};
use vswitch_proto::matching::Match;

/// A flow change the bridge refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowModError {
    #[error("goto_table:{to} in table {from}: goto_table may only go to a later table")]
    GotoBackwards { from: u8, to: u8 },
    #[error("table {0} does not exist (tables are 0 to 254)")]
    BadTable(u32),
    #[error("group {0} does not exist; add it with add-group first")]
    NoSuchGroup(u32),
    #[error(
        "group {0} already exists; change it with mod-group, or delete it first (del-groups {0})"
    )]
    GroupExists(u32),
    #[error("an indirect group has exactly one bucket, not {0}")]
    IndirectBuckets(usize),
    #[error("ct zone from {bits}-bit subfield: a zone is at most 16 bits")]
    ZoneTooWide { bits: u8 },
    #[error("meter {0} does not exist; add it with add-meter first (OFPMMFC_INVALID_METER)")]
    NoSuchMeter(u32),
    #[error("meter {0} already exists; delete it first (del-meters meter={0})")]
    MeterExists(u32),
    #[error("group {0} belongs to the switch (it goes with the object it was made for)")]
    SystemGroup(u32),
}

/// Counters of a rule. They outlive modifications of the rule (a modified rule keeps its
/// counters) and are shared with the cached flows the rule contributed to, which credit
/// them once per batch.
#[derive(Debug, Default)]
pub struct RuleStats {
    n_packets: AtomicU64,
    n_bytes: AtomicU64,
    used_ms: AtomicU64,
    /// Timeouts a `fin_timeout` action shortened the rule's to (0: not shortened).
    fin_idle: AtomicU16,
    fin_hard: AtomicU16,
}

impl RuleStats {
    /// A packet with FIN or RST met `fin_timeout(idle_timeout=idle,hard_timeout=hard)`:
    /// the rule's timeouts become at most these (0 leaves that timeout alone).
    pub fn reduce_timeouts(&self, idle: u16, hard: u16) {
        for (a, v) in [(&self.fin_idle, idle), (&self.fin_hard, hard)] {
            if v != 0 {
                let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    (old == 0 || v < old).then_some(v)
                });
            }
        }
    }

    /// `timeout` as a `fin_timeout` left it (`reduced` is the shortened value, 0: none).
    fn effective(timeout: u16, reduced: u16) -> u16 {
        match (timeout, reduced) {
            (t, 0) => t,
            (0, r) => r,
            (t, r) => t.min(r),
        }
    }

    pub fn idle_timeout(&self, configured: u16) -> u16 {
        RuleStats::effective(configured, self.fin_idle.load(Ordering::Relaxed))
    }

    pub fn hard_timeout(&self, configured: u16) -> u16 {
        RuleStats::effective(configured, self.fin_hard.load(Ordering::Relaxed))
    }

    #[inline]
    pub fn credit(&self, packets: u64, bytes: u64, now_ms: u64) {
        self.n_packets.fetch_add(packets, Ordering::Relaxed);
        self.n_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.used_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn packets(&self) -> u64 {
        self.n_packets.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.n_bytes.load(Ordering::Relaxed)
    }

    pub fn used_ms(&self) -> u64 {
        self.used_ms.load(Ordering::Relaxed)
    }
}

/// Who put a rule in the tables, which decides whether it is persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Added by a person or a program through the control socket: persisted.
    User,
    /// Added by a `learn` action: dynamic state, learned again after a restart.
    Learned,
    /// Made by the switch from its own state (the Kubernetes pipeline for the node and its
    /// Pods): not persisted as flows, made again from that state after a restart.
    System,
}

/// One rule of one table.
#[derive(Debug)]
pub struct Rule {
    pub origin: Origin,
    pub table: u8,
    pub priority: u16,
    pub matching: Match,
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub importance: u16,
    pub flags: FlowFlags,
    pub actions: Vec<Action>,
    pub stats: Arc<RuleStats>,
    pub created_ms: u64,
    /// When the rule was last added or modified (hard timeouts count from here).
    modified_ms: AtomicU64,
}

impl Rule {
    /// A rule from an added flow; `old` is the rule with the same match it replaces.
    pub fn from_spec(
        s: &FlowSpec,
        table: u8,
        old: Option<&Rule>,
        origin: Origin,
        now: u64,
    ) -> Rule {
        let keep = old.filter(|_| !s.flags.reset_counts);
        Rule {
            origin,
            table,
            priority: s.priority,
            matching: s.matching,
            cookie: s.cookie,
            idle_timeout: s.idle_timeout,
            hard_timeout: s.hard_timeout,
            importance: s.importance,
            flags: s.flags,
            actions: s.actions.clone().unwrap_or_default(),
            stats: keep.map_or_else(Default::default, |o| o.stats.clone()),
            created_ms: keep.map_or(now, |o| o.created_ms),
            modified_ms: AtomicU64::new(now),
        }
    }

    /// A rule of the switch's own, for an owner (`cookie`); `old` is the switch's rule it
    /// replaces in the same slot, whose counters it keeps.
    pub fn system(
        table: u8,
        priority: u16,
        matching: Match,
        cookie: u64,
        actions: Vec<Action>,
        old: Option<&Rule>,
        now: u64,
    ) -> Rule {
        let keep = old.filter(|o| o.origin == Origin::System);
        Rule {
            origin: Origin::System,
            table,
            priority,
            matching,
            cookie,
            idle_timeout: 0,
            hard_timeout: 0,
            importance: 0,
            flags: FlowFlags::default(),
            actions,
            stats: keep.map_or_else(Default::default, |o| o.stats.clone()),
            created_ms: keep.map_or(now, |o| o.created_ms),
            modified_ms: AtomicU64::new(now),
        }
    }

    /// This rule with the actions of a `mod-flows` line (and its cookie when the line sets
    /// one without a mask, unless the switch made the rule).
    pub fn modified(&self, s: &FlowSpec, now: u64) -> Rule {
        Rule {
            origin: self.origin,
            table: self.table,
            priority: self.priority,
            matching: self.matching,
            // The switch's own rules keep theirs: it names what they were made for.
            cookie: if s.cookie_mask == 0 && s.cookie != 0 && self.origin != Origin::System {
                s.cookie
            } else {
                self.cookie
            },
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            importance: self.importance,
            flags: self.flags,
            actions: s.actions.clone().unwrap_or_default(),
            stats: if s.flags.reset_counts {
                Default::default()
            } else {
                self.stats.clone()
            },
            created_ms: self.created_ms,
            modified_ms: AtomicU64::new(now),
        }
    }

    /// The rule as a flow line (for printing). Table 0 is left implicit, as flow text
    /// reads it back.
    pub fn to_spec(&self) -> FlowSpec {
        FlowSpec {
            table: (self.table != 0).then_some(self.table),
            priority: self.priority,
            cookie: self.cookie,
            cookie_mask: 0,
            idle_timeout: self.stats.idle_timeout(self.idle_timeout),
            hard_timeout: self.stats.hard_timeout(self.hard_timeout),
            importance: self.importance,
            flags: self.flags,
            out_port: None,
            out_group: None,
            matching: self.matching,
            actions: Some(self.actions.clone()),
        }
    }

    pub fn modified_ms(&self) -> u64 {
        self.modified_ms.load(Ordering::Relaxed)
    }

    /// Restart the timeouts (a `learn` action relearned this flow).
    pub fn refresh(&self, now: u64) {
        self.modified_ms.store(now, Ordering::Relaxed);
    }

    /// Whether `s` would add exactly this rule again.
    pub fn same_behaviour(&self, s: &FlowSpec) -> bool {
        s.actions.as_deref().unwrap_or(&[]) == self.actions.as_slice()
            && s.cookie == self.cookie
            && s.idle_timeout == self.idle_timeout
            && s.hard_timeout == self.hard_timeout
    }

    pub fn flow_stats(&self, now: u64) -> FlowStats {
        let last_used = self.stats.used_ms().max(self.modified_ms());
        FlowStats {
            duration_ms: now.saturating_sub(self.created_ms),
            n_packets: self.stats.packets(),
            n_bytes: self.stats.bytes(),
            idle_age: now.saturating_sub(last_used) / 1000,
            hard_age: (self.modified_ms() != self.created_ms)
                .then(|| now.saturating_sub(self.modified_ms()) / 1000),
        }
    }

    /// Whether an idle or hard timeout has passed.
    pub fn expired(&self, now: u64) -> bool {
        let modified = self.modified_ms();
        let hard = self.stats.hard_timeout(self.hard_timeout);
        if hard != 0 && now.saturating_sub(modified) >= hard as u64 * 1000 {
            return true;
        }
        let last_used = self.stats.used_ms().max(modified);
        let idle = self.stats.idle_timeout(self.idle_timeout);
        idle != 0 && now.saturating_sub(last_used) >= idle as u64 * 1000
    }

    pub fn outputs_to(&self, port: u32) -> bool {
        actions_output_to(&self.actions, port)
    }

    pub fn uses_group(&self, g: u32) -> bool {
        let uses = |a: &Action| matches!(a, Action::Group(id) if *id == g);
        self.actions.iter().any(|a| match a {
            Action::WriteActions(list) => list.iter().any(uses),
            a => uses(a),
        })
    }
}

fn actions_output_to(actions: &[Action], port: u32) -> bool {
    use vswitch_proto::action::port as reserved;
    actions.iter().any(|a| match a {
        Action::Output { port: p, .. } => *p == port,
        Action::InPort => port == reserved::IN_PORT,
        Action::Normal => port == reserved::NORMAL,
        Action::Flood => port == reserved::FLOOD,
        Action::All => port == reserved::ALL,
        Action::Controller { .. } => port == reserved::CONTROLLER,
        Action::Ct(ct) => actions_output_to(&ct.exec, port),
        Action::WriteActions(list) => actions_output_to(list, port),
        _ => false,
    })
}

/// A group as the bridge stores it.
#[derive(Debug)]
pub struct Group {
    pub spec: GroupSpec,
    /// Who made it: a user's group is saved; the switch's own goes with its owners.
    pub origin: Origin,
    /// Sum of bucket weights (select groups).
    pub total_weight: u32,
    /// Packets that went through the group; credited like rule counters.
    pub stats: Arc<RuleStats>,
    /// Packets that went through each bucket, in bucket order.
    pub bucket_stats: Box<[Arc<RuleStats>]>,
    /// Each bucket's identity for [`Affinity`]: a hash of its actions (a bucket that
    /// stays through a change of the group keeps its clients even if its id changes).
    pub bucket_keys: Box<[u64]>,
    /// Where a select group with `affinity` sent each source last (kept through changes
    /// of the group).
    pub affinity: Option<Arc<Affinity>>,
    /// A select group's hash slots for the datapath (see [`dp_slots`]), made at its first
    /// translation.
    slots: std::sync::OnceLock<Option<Arc<[u16]>>>,
}

/// Buckets beyond which a select group is decided in the translation, the 5-tuple in
/// the megaflow (Open vSwitch's `dp_hash` stops at 64 hash values).
pub const MAX_DP_BUCKETS: usize = 256;

/// The hash slots of a select group decided in the datapath: slot -> bucket index, a
/// power of two of them, at least 16 per bucket. Each bucket gets its weight's share of
/// the slots (largest remainders), so shares are exact to one slot; which slots is
/// rendezvous hashing on the bucket id, so a change of the buckets moves few slots of
/// the others. `None` without weight or past [`MAX_DP_BUCKETS`].
pub fn dp_slots(buckets: &[vswitch_proto::group::Bucket]) -> Option<Arc<[u16]>> {
    let n = buckets.len();
    let total: u64 = buckets.iter().map(|b| b.weight as u64).sum();
    if n == 0 || n > MAX_DP_BUCKETS || total == 0 {
        return None;
    }
    let size = (n * 16).next_power_of_two().max(64);
    let mut quota: Vec<usize> = buckets
        .iter()
        .map(|b| (b.weight as u64 * size as u64 / total) as usize)
        .collect();
    let mut by_rem: Vec<usize> = (0..n).filter(|&i| buckets[i].weight > 0).collect();
    by_rem.sort_by_key(|&i| std::cmp::Reverse(buckets[i].weight as u64 * size as u64 % total));
    let short = size - quota.iter().sum::<usize>();
    for &i in by_rem.iter().cycle().take(short) {
        quota[i] += 1;
    }
    // splitmix64's finalizer of (slot, bucket id).
    let score = |slot: usize, id: u32| {
        let mut z = (((slot as u64) << 32) | id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let slots: Vec<u16> = (0..size)
        .map(|s| {
            let b = (0..n)
                .filter(|&b| quota[b] > 0)
                .max_by_key(|&b| score(s, buckets[b].bucket_id))
                .expect("quotas add up to the slots");
            quota[b] -= 1;
            b as u16
        })
        .collect();
    Some(slots.into())
}

/// A select group's memory of sources: source address -> (bucket key, last new
/// connection, ms). Bounded: expired entries go when it has grown.
#[derive(Debug, Default)]
pub struct Affinity {
    map: parking_lot::Mutex<std::collections::HashMap<u128, (u64, u64)>>,
}

impl Affinity {
    /// Entries before a sweep of expired ones.
    const SWEEP_AT: usize = 4096;

    /// The bucket key `src` last went to, if within `timeout_ms` of `now`.
    pub fn get(&self, src: u128, now: u64, timeout_ms: u64) -> Option<u64> {
        let m = self.map.lock();
        let &(key, at) = m.get(&src)?;
        (now.saturating_sub(at) <= timeout_ms).then_some(key)
    }

    /// `src` goes to the bucket `pick` chooses from the one it last went to (if within
    /// `timeout_ms` of `now`), and is remembered there: one lock for both.
    pub fn stick(
        &self,
        src: u128,
        now: u64,
        timeout_ms: u64,
        pick: impl FnOnce(Option<u64>) -> u64,
    ) -> u64 {
        let mut m = self.map.lock();
        let last = m
            .get(&src)
            .filter(|&&(_, at)| now.saturating_sub(at) <= timeout_ms)
            .map(|&(key, _)| key);
        let key = pick(last);
        Self::insert(&mut m, src, key, now, timeout_ms);
        key
    }

    /// `src` went to bucket `key` at `now`.
    pub fn set(&self, src: u128, key: u64, now: u64, timeout_ms: u64) {
        Self::insert(&mut self.map.lock(), src, key, now, timeout_ms);
    }

    fn insert(
        m: &mut std::collections::HashMap<u128, (u64, u64)>,
        src: u128,
        key: u64,
        now: u64,
        timeout_ms: u64,
    ) {
        if m.len() >= Self::SWEEP_AT.max(m.capacity() / 2) && !m.contains_key(&src) {
            m.retain(|_, (_, at)| now.saturating_sub(*at) <= timeout_ms);
        }
        m.insert(src, (key, now));
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Group {
    /// A group from its spec; `old`, the group it replaces, keeps its counters (a bucket's
    /// too, when a bucket with the same id is still there).
    pub fn from_spec(spec: &GroupSpec, origin: Origin, old: Option<&Group>) -> Group {
        let bucket_stats = spec
            .buckets
            .iter()
            .map(|b| {
                old.and_then(|o| {
                    o.spec
                        .buckets
                        .iter()
                        .position(|ob| ob.bucket_id == b.bucket_id)
                        .map(|i| o.bucket_stats[i].clone())
                })
                .unwrap_or_default()
            })
            .collect();
        let bucket_keys = spec
            .buckets
            .iter()
            .map(|b| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                b.actions.hash(&mut h);
                h.finish()
            })
            .collect();
        let affinity = spec
            .affinity
            .map(|_| old.and_then(|o| o.affinity.clone()).unwrap_or_default());
        Group {
            spec: spec.clone(),
            origin,
            total_weight: spec.buckets.iter().map(|b| b.weight as u32).sum(),
            stats: old.map_or_else(Default::default, |o| o.stats.clone()),
            bucket_stats,
            bucket_keys,
            affinity,
            slots: std::sync::OnceLock::new(),
        }
    }

    /// The hash slots for deciding this select group in the datapath ([`dp_slots`]).
    pub fn dp_slots(&self) -> Option<&Arc<[u16]>> {
        self.slots
            .get_or_init(|| dp_slots(&self.spec.buckets))
            .as_ref()
    }

    pub fn group_type(&self) -> GroupType {
        self.spec.group_type
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.spec.buckets
    }
}

/// Checks the text syntax cannot make because they need the bridge's state.
pub fn validate_actions(
    actions: &[Action],
    table: u8,
    group_exists: &dyn Fn(u32) -> bool,
) -> Result<(), FlowModError> {
    for a in actions {
        match a {
            Action::GotoTable(t) => {
                if *t <= table {
                    return Err(FlowModError::GotoBackwards {
                        from: table,
                        to: *t,
                    });
                }
                if *t as usize >= super::N_TABLES {
                    return Err(FlowModError::BadTable(*t as u32));
                }
            }
            Action::Resubmit { table: Some(t), .. } if *t as usize >= super::N_TABLES => {
                return Err(FlowModError::BadTable(*t as u32));
            }
            Action::Group(g) if !group_exists(*g) => return Err(FlowModError::NoSuchGroup(*g)),
            Action::Ct(ct) => {
                if let CtZone::Field(sf) = ct.zone
                    && sf.n_bits > 16
                {
                    return Err(FlowModError::ZoneTooWide { bits: sf.n_bits });
                }
                if let Some(t) = ct.table
                    && t as usize >= super::N_TABLES
                {
                    return Err(FlowModError::BadTable(t as u32));
                }
                validate_actions(&ct.exec, table, group_exists)?;
            }
            Action::WriteActions(list) => validate_actions(list, table, group_exists)?,
            Action::Learn(l) if l.table as usize >= super::N_TABLES => {
                return Err(FlowModError::BadTable(l.table as u32));
            }
            _ => {}
        }
    }
    Ok(())
}
