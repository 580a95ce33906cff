//! The classifier: finds the highest-priority rule whose match a flow satisfies.
//!
//! Tuple-space search, as Open vSwitch's `classifier.c` does it: rules with the same mask
//! share a *subtable*, a hash table keyed by the masked flow. A lookup masks the flow with
//! each subtable's mask and probes its hash table, so its cost grows with the number of
//! distinct masks, not with the number of rules.
//!
//! Subtables are kept in order of the highest priority they hold, so a lookup stops as soon
//! as no remaining subtable can beat the best rule found. A lookup also ORs into `wc` the
//! mask of every subtable it consulted: that is what a megaflow built from the result must
//! match, since a packet equal on those bits visits the same subtables and finds the same
//! rules.
//!
//! **Ties.** Open vSwitch leaves the winner among equal-priority overlapping rules
//! undefined. Here it is defined: among matching rules of equal priority, the one whose
//! mask has more bits set wins; between masks with as many bits, the mask that is larger
//! when compared word by word (in [`Flow`] order) wins. The choice depends only on the two
//! rules, never on insertion order or on other rules, so it survives a restart.
//!
//! **Conjunctive matches** follow Open vSwitch (`ovs-fields(7)`, "Conjunctive Match
//! Fields"): a rule whose actions are only `conjunction(id, k/n)` is a *soft* match. When,
//! at some priority above every ordinary matching rule, soft matches cover all `n` clauses
//! of conjunction `id`, the classifier looks up the flow again with `conj_id=id` and
//! returns that rule. If several conjunctions are complete at the same priority, the
//! smallest id that leads to a rule wins (Open vSwitch: undefined).
//!
//! **Copy on write.** A published snapshot and the master copy being edited share
//! subtables, and a subtable's buckets are cut into shards that they share too
//! ([`shards`]), so the first edit after a publish copies one shard of the subtable it
//! touches and that subtable's list of shard pointers, never all its rules.

use smallvec::{SmallVec, smallvec};
use std::collections::BTreeMap;
use std::sync::Arc;
use vswitch_proto::flow::{FLOW_U64S, Flow};
use vswitch_proto::matching::Match;

use crate::flow::{CompactKey, masked_hash};
use shards::Shards;

mod shards;

/// One `conjunction(id, clause+1/n_clauses)` action of a soft rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conj {
    pub id: u32,
    /// 0-based clause number.
    pub clause: u8,
    pub n_clauses: u8,
}

/// A rule as the classifier stores it.
#[derive(Clone, Debug)]
pub struct Entry<R> {
    pub priority: u16,
    /// `Some` for a soft rule (its actions are `conjunction`s only), sorted by
    /// (id, n_clauses, clause).
    pub conj: Option<Arc<[Conj]>>,
    /// For a soft rule, the fewest clauses of its conjunctions, or 0 when it carries two
    /// clauses of one conjunction (see [`complete_conjunctions`]).
    fewest: u8,
    pub rule: R,
}

#[derive(Clone, Debug)]
struct Bucket<R> {
    /// The masked flow every rule here matches.
    key: CompactKey,
    /// Highest priority first; at most one entry per priority. Nearly always one, kept
    /// inline: a lookup reads the entry in the bucket's own allocation, not behind another
    /// pointer.
    entries: SmallVec<[Entry<R>; 1]>,
}

#[derive(Clone, Debug)]
struct Subtable<R> {
    mask: Flow,
    /// Indices of the mask's non-zero words.
    words: Box<[u8]>,
    ones: u32,
    buckets: Shards<R>,
    /// How many rules have each priority (to know the highest after a removal).
    priorities: BTreeMap<u16, u32>,
    max_priority: u16,
    n_rules: usize,
}

impl<R> Subtable<R> {
    fn new(mask: Flow) -> Subtable<R> {
        let words: Vec<u8> = (0..FLOW_U64S)
            .filter(|&i| mask.w[i] != 0)
            .map(|i| i as u8)
            .collect();
        Subtable {
            mask,
            words: words.into_boxed_slice(),
            ones: mask.count_ones(),
            buckets: Shards::new(),
            priorities: BTreeMap::new(),
            max_priority: 0,
            n_rules: 0,
        }
    }

    #[inline]
    fn find(&self, key: &Flow, seed: u64) -> Option<&Bucket<R>> {
        let h = masked_hash(key, &self.mask, &self.words, seed);
        self.buckets
            .find(h, |b| b.key.matches(key, &self.mask, &self.words))
    }

    fn or_mask_into(&self, wc: &mut Flow) {
        for &i in self.words.iter() {
            wc.w[i as usize] |= self.mask.w[i as usize];
        }
    }

    /// Whether this subtable's mask ranks above `other`'s for breaking priority ties.
    fn outranks(&self, other: &Subtable<R>) -> bool {
        (self.ones, &self.mask.w) > (other.ones, &other.mask.w)
    }

    fn add_priority(&mut self, p: u16) {
        *self.priorities.entry(p).or_insert(0) += 1;
        self.max_priority = self.max_priority.max(p);
    }

    fn remove_priority(&mut self, p: u16) {
        if let Some(n) = self.priorities.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                self.priorities.remove(&p);
            }
        }
        self.max_priority = self.priorities.keys().next_back().copied().unwrap_or(0);
    }
}

/// A set of rules, each with a match and a priority, searchable by flow.
///
/// Cloning costs one pointer per subtable: subtables, the shards of their buckets and the
/// buckets are shared and copied on write, so a published snapshot and the copy being
/// edited share every subtable the edit does not touch, and all but two or three shards
/// of the one it does. One insert or remove after a clone copies the bucket it changes,
/// the slots of a shard or two (a few hundred pointers) and one pointer per shard of that
/// subtable (one per few hundred buckets): not the subtable's rules.
#[derive(Clone, Debug)]
pub struct Classifier<R> {
    /// In lookup order: highest `max_priority` first, then by mask rank.
    subtables: Vec<Arc<Subtable<R>>>,
    n_rules: usize,
    seed: u64,
}

impl<R: Clone> Default for Classifier<R> {
    fn default() -> Classifier<R> {
        Classifier::new()
    }
}

/// Where a lookup found a candidate: its bucket, the entry's index there, and the subtable.
struct Cursor<'a, R> {
    bucket: &'a Bucket<R>,
    idx: usize,
    st: &'a Subtable<R>,
}

impl<'a, R> Cursor<'a, R> {
    fn entry(&self) -> &'a Entry<R> {
        &self.bucket.entries[self.idx]
    }
}

/// The best ordinary (hard) match so far.
struct Hard<'a, R> {
    entry: &'a Entry<R>,
    st: &'a Subtable<R>,
}

fn consider<'a, R>(best: &mut Option<Hard<'a, R>>, entry: &'a Entry<R>, st: &'a Subtable<R>) {
    let better = match best {
        None => true,
        Some(h) => {
            entry.priority > h.entry.priority
                || (entry.priority == h.entry.priority && st.outranks(h.st))
        }
    };
    if better {
        *best = Some(Hard { entry, st });
    }
}

fn hard_priority<R>(best: &Option<Hard<'_, R>>) -> i32 {
    best.as_ref().map_or(-1, |h| h.entry.priority as i32)
}

impl<R: Clone> Classifier<R> {
    pub fn new() -> Classifier<R> {
        Classifier {
            subtables: Vec::new(),
            n_rules: 0,
            seed: process_seed(),
        }
    }

    pub fn len(&self) -> usize {
        self.n_rules
    }

    pub fn is_empty(&self) -> bool {
        self.n_rules == 0
    }

    /// Number of distinct masks.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    fn sort_subtables(&mut self) {
        self.subtables.sort_by(|a, b| {
            (b.max_priority, b.ones, &b.mask.w).cmp(&(a.max_priority, a.ones, &a.mask.w))
        });
    }

    /// Add a rule, or replace the rule with exactly this match and priority (returning it).
    pub fn insert(
        &mut self,
        m: &Match,
        priority: u16,
        conj: Option<Arc<[Conj]>>,
        rule: R,
    ) -> Option<R> {
        let key = m.flow.and(&m.mask);
        let seed = self.seed;
        let idx = match self.subtables.iter().position(|s| s.mask == m.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Arc::new(Subtable::new(m.mask)));
                self.subtables.len() - 1
            }
        };
        let st = Arc::make_mut(&mut self.subtables[idx]);
        let old_max = st.max_priority;
        let was_empty = st.n_rules == 0;
        let hash = masked_hash(&key, &st.mask, &st.words, seed);
        let key = CompactKey::new(&key, &st.mask, &st.words);
        let conj = conj.map(sorted_clauses);
        let fewest = conj.as_deref().map_or(0, fewest_clauses);
        let entry = Entry {
            priority,
            conj,
            fewest,
            rule,
        };
        let replaced = match st.buckets.find_mut(hash, |b| b.key == key) {
            Some(b) => match b.entries.binary_search_by(|e| priority.cmp(&e.priority)) {
                Ok(i) => Some(std::mem::replace(&mut b.entries[i], entry).rule),
                Err(i) => {
                    b.entries.insert(i, entry);
                    None
                }
            },
            None => {
                st.buckets.insert_unique(
                    hash,
                    Bucket {
                        key,
                        entries: smallvec![entry],
                    },
                );
                None
            }
        };
        if replaced.is_none() {
            st.add_priority(priority);
            st.n_rules += 1;
            self.n_rules += 1;
        }
        if was_empty || st.max_priority != old_max {
            self.sort_subtables();
        }
        replaced
    }

    /// Remove the rule with exactly this match and priority.
    pub fn remove(&mut self, m: &Match, priority: u16) -> Option<R> {
        let key = m.flow.and(&m.mask);
        let seed = self.seed;
        let idx = self.subtables.iter().position(|s| s.mask == m.mask)?;
        let st = &self.subtables[idx];
        let hash = masked_hash(&key, &st.mask, &st.words, seed);
        let key = CompactKey::new(&key, &st.mask, &st.words);
        // Check before copying a shared subtable.
        let b = st.buckets.find(hash, |b| b.key == key)?;
        let i = b.entries.iter().position(|e| e.priority == priority)?;
        let last = b.entries.len() == 1;
        let st = Arc::make_mut(&mut self.subtables[idx]);
        let old_max = st.max_priority;
        let removed = if last {
            let mut b = st.buckets.remove(hash, |b| b.key == key)?;
            b.entries.swap_remove(i)
        } else {
            st.buckets
                .find_mut(hash, |b| b.key == key)?
                .entries
                .remove(i)
        };
        st.remove_priority(priority);
        st.n_rules -= 1;
        self.n_rules -= 1;
        if st.n_rules == 0 {
            self.subtables.remove(idx);
        } else if st.max_priority != old_max {
            self.sort_subtables();
        }
        Some(removed.rule)
    }

    /// The rule with exactly this match and priority.
    pub fn find_exact(&self, m: &Match, priority: u16) -> Option<&Entry<R>> {
        let key = m.flow.and(&m.mask);
        let st = self.subtables.iter().find(|s| s.mask == m.mask)?;
        let hash = masked_hash(&key, &st.mask, &st.words, self.seed);
        let key = CompactKey::new(&key, &st.mask, &st.words);
        st.buckets
            .find(hash, |b| b.key == key)?
            .entries
            .iter()
            .find(|e| e.priority == priority)
    }

    /// Mutable access to the rule with exactly this match and priority.
    pub fn find_exact_mut(&mut self, m: &Match, priority: u16) -> Option<&mut R> {
        self.find_exact(m, priority)?;
        let key = m.flow.and(&m.mask);
        let seed = self.seed;
        let st = self.subtables.iter_mut().find(|s| s.mask == m.mask)?;
        let st = Arc::make_mut(st);
        let hash = masked_hash(&key, &st.mask, &st.words, seed);
        let key = CompactKey::new(&key, &st.mask, &st.words);
        st.buckets
            .find_mut(hash, |b| b.key == key)?
            .entries
            .iter_mut()
            .find(|e| e.priority == priority)
            .map(|e| &mut e.rule)
    }

    /// Every rule with its match, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Match, &Entry<R>)> + '_ {
        self.subtables.iter().flat_map(|st| {
            st.buckets.iter().flat_map(move |b| {
                b.entries.iter().map(move |e| {
                    (
                        Match {
                            flow: b.key.expand(&st.words),
                            mask: st.mask,
                        },
                        e,
                    )
                })
            })
        })
    }

    /// The highest-priority rule `key` matches, with conjunctive matches resolved. Every
    /// bit the answer depends on is ORed into `wc`.
    #[inline]
    pub fn lookup(&self, key: &Flow, wc: &mut Flow) -> Option<&R> {
        self.lookup_entry(key, wc).map(|e| &e.rule)
    }

    /// Like [`Classifier::lookup`], returning the whole entry (with its priority).
    pub fn lookup_entry(&self, key: &Flow, wc: &mut Flow) -> Option<&Entry<R>> {
        let mut best: Option<Hard<'_, R>> = None;
        let mut soft: Vec<Cursor<'_, R>> = Vec::new();
        for st in &self.subtables {
            if (st.max_priority as i32) < hard_priority(&best) {
                break;
            }
            st.or_mask_into(wc);
            let Some(bucket) = st.find(key, self.seed) else {
                continue;
            };
            let head = &bucket.entries[0];
            if head.conj.is_none() {
                consider(&mut best, head, st);
            } else if head.priority as i32 > hard_priority(&best) {
                soft.push(Cursor { bucket, idx: 0, st });
            }
        }
        if soft.is_empty() {
            return best.map(|h| h.entry);
        }
        self.resolve_soft(key, wc, best, soft)
    }

    /// Open vSwitch's soft-match loop: walk down the priorities held by soft matches above
    /// the best hard match; at each, try the conjunctions they complete; if none leads to
    /// a rule, fall back to the next rule in each of those soft matches' buckets.
    fn resolve_soft<'a>(
        &'a self,
        key: &Flow,
        wc: &mut Flow,
        mut best: Option<Hard<'a, R>>,
        mut soft: Vec<Cursor<'a, R>>,
    ) -> Option<&'a Entry<R>> {
        // Working space for every level: allocated once per lookup, not once per level
        // (a Pod that many policies select has clauses at many priorities).
        let mut clauses: Vec<(u32, u8, u8)> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        let mut next = Vec::with_capacity(soft.len());
        loop {
            let hard_pri = hard_priority(&best);
            soft.retain(|c| c.entry().priority as i32 > hard_pri);
            let Some(level) = soft.iter().map(|c| c.entry().priority).max() else {
                break;
            };
            complete_conjunctions(
                soft.iter()
                    .map(|c| c.entry())
                    .filter(|e| e.priority == level),
                &mut clauses,
                &mut ids,
            );
            for &id in &ids {
                let mut k = *key;
                k.set_conj_id(id);
                if let Some(e) = self.lookup_hard(&k, wc) {
                    return Some(e);
                }
            }
            for mut c in soft.drain(..) {
                if c.entry().priority != level {
                    next.push(c);
                    continue;
                }
                c.idx += 1;
                if c.idx < c.bucket.entries.len() {
                    let e = c.entry();
                    if e.conj.is_none() {
                        consider(&mut best, e, c.st);
                    } else {
                        next.push(c);
                    }
                }
            }
            std::mem::swap(&mut soft, &mut next);
        }
        best.map(|h| h.entry)
    }

    /// The best ordinary (non-conjunction) rule `key` matches, ignoring soft rules.
    fn lookup_hard(&self, key: &Flow, wc: &mut Flow) -> Option<&Entry<R>> {
        let mut best: Option<Hard<'_, R>> = None;
        for st in &self.subtables {
            if (st.max_priority as i32) < hard_priority(&best) {
                break;
            }
            st.or_mask_into(wc);
            if let Some(bucket) = st.find(key, self.seed)
                && let Some(e) = bucket.entries.iter().find(|e| e.conj.is_none())
            {
                consider(&mut best, e, st);
            }
        }
        best.map(|h| h.entry)
    }
}

/// `cs` sorted by (id, n_clauses, clause), as a lookup reads them.
fn sorted_clauses(cs: Arc<[Conj]>) -> Arc<[Conj]> {
    let key = |c: &Conj| (c.id, c.n_clauses, c.clause);
    if cs.is_sorted_by_key(key) {
        return cs;
    }
    let mut v = cs.to_vec();
    v.sort_unstable_by_key(key);
    Arc::from(v)
}

/// The fewest clauses of the conjunctions in sorted `cs`, or 0 when it holds two clauses
/// of one conjunction (or a conjunction of fewer than two).
fn fewest_clauses(cs: &[Conj]) -> u8 {
    let twice = cs
        .windows(2)
        .any(|w| (w[0].id, w[0].n_clauses) == (w[1].id, w[1].n_clauses));
    match cs.iter().map(|c| c.n_clauses).min() {
        Some(n) if n >= 2 && !twice => n,
        _ => 0,
    }
}

/// Soft matches at one level beyond which the completion takes the general way.
const FEW_SOFT: usize = 8;

/// The conjunction ids whose every clause is covered by `entries`, smallest first, into
/// `ids`; `all` is working space.
///
/// A Pod that many policies select has clauses of many conjunctions on the flows it
/// matches (its own, a peer's address), yet few complete: the work should follow those,
/// not the clauses. When each entry holds at most one clause of any conjunction, one of
/// `n` clauses is on `n` different entries of the `m`, so it is on at least one of any
/// `m - n + 1` of them: the candidates are the clauses of the `m - f + 1` shortest
/// entries (`f` the fewest clauses of any conjunction there), each checked against the
/// others by binary search. The bench's policy rules (Pod, peer, port) are three
/// clauses on three entries: the candidates are the port's one or two. Otherwise
/// (many entries, two clauses of one conjunction on one), every clause is sorted.
fn complete_conjunctions<'a, R: 'a>(
    entries: impl Iterator<Item = &'a Entry<R>>,
    all: &mut Vec<(u32, u8, u8)>,
    ids: &mut Vec<u32>,
) {
    all.clear();
    ids.clear();
    let mut lists: SmallVec<[&[Conj]; FEW_SOFT]> = SmallVec::new();
    let mut fewest = u8::MAX;
    for e in entries {
        let cs = e.conj.as_deref().unwrap_or_default();
        fewest = fewest.min(e.fewest);
        lists.push(cs);
    }
    if lists.len() > FEW_SOFT || fewest == 0 {
        every_clause(lists.iter().flat_map(|cs| cs.iter()), all, ids);
        return;
    }
    let m = lists.len();
    if fewest as usize > m {
        return;
    }
    lists.sort_unstable_by_key(|cs| cs.len());
    for (i, cs) in lists[..m - fewest as usize + 1].iter().enumerate() {
        for (j, c) in cs.iter().enumerate() {
            // Once per conjunction per list, and not one already found in a shorter list.
            if j > 0 && (cs[j - 1].id, cs[j - 1].n_clauses) == (c.id, c.n_clauses) {
                continue;
            }
            let n = c.n_clauses;
            if n as usize > m || lists[..i].iter().any(|l| holds(l, c.id, n).is_some()) {
                continue;
            }
            let bits = lists
                .iter()
                .filter_map(|l| holds(l, c.id, n))
                .fold(0u64, |b, clause| b | 1u64 << (clause & 63));
            if n <= 64 && bits == u64::MAX >> (64 - n as u32) {
                ids.push(c.id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
}

/// The clause of conjunction (`id`, `n` clauses) that sorted `cs` holds (at most one, as
/// [`fewest_clauses`] checked).
fn holds(cs: &[Conj], id: u32, n: u8) -> Option<u8> {
    let at = cs.partition_point(|c| (c.id, c.n_clauses) < (id, n));
    cs.get(at)
        .filter(|c| (c.id, c.n_clauses) == (id, n))
        .map(|c| c.clause)
}

/// [`complete_conjunctions`] the general way: every (id, n_clauses, clause) the entries
/// carry, sorted so that one conjunction's clauses are together.
fn every_clause<'a>(
    clauses: impl Iterator<Item = &'a Conj>,
    all: &mut Vec<(u32, u8, u8)>,
    ids: &mut Vec<u32>,
) {
    all.extend(clauses.map(|c| (c.id, c.n_clauses, c.clause)));
    all.sort_unstable();
    let mut at = 0;
    while at < all.len() {
        let (id, n, _) = all[at];
        let mut bits = 0u64;
        while at < all.len() && (all[at].0, all[at].1) == (id, n) {
            bits |= 1u64 << (all[at].2 & 63);
            at += 1;
        }
        if n > 0 && n <= 64 && bits == u64::MAX >> (64 - n as u32) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
}

/// A per-process random seed for hashing flows (see `flow::hash`).
pub fn process_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        h.finish()
    })
}

#[cfg(test)]
mod tests;
