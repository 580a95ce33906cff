//! The megaflow cache: the second tier of the fast path.
//!
//! A megaflow is the result of one pipeline translation, cached under the mask of every
//! bit the result depended on, so it serves every packet equal to the first on those bits.
//! Megaflows do not overlap in effect (two that match the same packet give it the same
//! actions), so a lookup takes the first hit. Megaflows with the same mask share a
//! subtable; subtables are kept in order of recent hits, so busy ones are probed first.

use super::action::DpAction;
use crate::flow::{CompactKey, masked_hash};
use crate::ofproto::RuleStats;
use crate::ofproto::mac::MacEntry;
use crate::ofproto::xlate::Deps;
use hashbrown::HashTable;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use vswitch_proto::flow::{FLOW_U64S, Flow};
use vswitch_proto::matching::Match;

/// Open vSwitch's default datapath flow limit.
pub const DEFAULT_MAX_FLOWS: usize = 200_000;
/// Megaflows unused for this long are dropped (Open vSwitch's default max-idle).
pub const DEFAULT_IDLE_MS: u64 = 10_000;

/// One cached translation.
#[derive(Debug)]
pub struct Megaflow {
    /// The first packet's flow under `mask`.
    pub key: Flow,
    pub mask: Flow,
    pub actions: Box<[DpAction]>,
    /// Counters of the rules (and groups) that made this entry.
    pub rule_stats: Box<[Arc<RuleStats>]>,
    /// MAC entries to keep fresh while this flow is in use.
    pub macs: Box<[Arc<MacEntry>]>,
    /// What the translation depended on besides the masked bits; `None`: anything (every
    /// change of the tables drops it).
    pub deps: Option<Box<Deps>>,
    pub created_ms: u64,
    packets: AtomicU64,
    bytes: AtomicU64,
    used_ms: AtomicU64,
    /// Dropped from the megaflow cache: the exact-match cache must not use it either.
    dead: AtomicBool,
}

impl Megaflow {
    pub fn new(
        key: &Flow,
        mask: Flow,
        actions: Vec<DpAction>,
        rule_stats: Vec<Arc<RuleStats>>,
        macs: Vec<Arc<MacEntry>>,
        now: u64,
    ) -> Megaflow {
        Megaflow {
            key: key.and(&mask),
            mask,
            actions: actions.into_boxed_slice(),
            rule_stats: rule_stats.into_boxed_slice(),
            macs: macs.into_boxed_slice(),
            deps: None,
            created_ms: now,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            used_ms: AtomicU64::new(now),
            dead: AtomicBool::new(false),
        }
    }

    /// This megaflow, knowing what its translation depended on.
    pub fn with_deps(mut self, deps: Deps) -> Megaflow {
        self.deps = Some(Box::new(deps));
        self
    }

    /// Whether it was dropped from the megaflow cache.
    #[inline]
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    pub fn matching(&self) -> Match {
        Match {
            flow: self.key,
            mask: self.mask,
        }
    }

    /// Count `packets` packets of `bytes` bytes, here and in every rule that made this
    /// entry. Called once per batch per megaflow, not per packet.
    pub fn credit(&self, packets: u64, bytes: u64, now: u64) {
        // Only the owning worker writes these: a load and a store, no atomic read-modify-write.
        self.packets.store(
            self.packets.load(Ordering::Relaxed) + packets,
            Ordering::Relaxed,
        );
        self.bytes.store(
            self.bytes.load(Ordering::Relaxed) + bytes,
            Ordering::Relaxed,
        );
        self.used_ms.store(now, Ordering::Relaxed);
        for r in self.rule_stats.iter() {
            r.credit(packets, bytes, now);
        }
        for m in self.macs.iter() {
            m.touch(now);
        }
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn used_ms(&self) -> u64 {
        self.used_ms.load(Ordering::Relaxed)
    }
}

/// A megaflow in its subtable's hash table, with its key inline for the comparison.
#[derive(Debug)]
struct Slot {
    key: CompactKey,
    hash: u64,
    flow: Arc<Megaflow>,
}

#[derive(Debug)]
struct Subtable {
    mask: Flow,
    words: Box<[u8]>,
    flows: HashTable<Slot>,
    hits: Cell<u64>,
}

#[derive(Debug)]
pub struct MegaflowCache {
    subtables: Vec<Subtable>,
    len: usize,
    max: usize,
    seed: u64,
}

impl MegaflowCache {
    pub fn new(max: usize, seed: u64) -> MegaflowCache {
        MegaflowCache {
            subtables: Vec::new(),
            len: 0,
            max,
            seed,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.max
    }

    /// The megaflow that matches `key`, if any.
    #[inline]
    pub fn lookup(&self, key: &Flow) -> Option<&Arc<Megaflow>> {
        for st in &self.subtables {
            let h = masked_hash(key, &st.mask, &st.words, self.seed);
            if let Some(slot) = st.flows.find(h, |m| {
                m.hash == h && m.key.matches(key, &st.mask, &st.words)
            }) {
                st.hits.set(st.hits.get() + 1);
                return Some(&slot.flow);
            }
        }
        None
    }

    /// Add a megaflow (the caller checked that none matches its key). Returns the shared
    /// entry, or (as `Err`) the megaflow, uncached, when the cache is full.
    pub fn insert(&mut self, mf: Megaflow) -> Result<Arc<Megaflow>, Arc<Megaflow>> {
        if self.is_full() {
            return Err(Arc::new(mf));
        }
        let seed = self.seed;
        let idx = match self.subtables.iter().position(|s| s.mask == mf.mask) {
            Some(i) => i,
            None => {
                let words: Vec<u8> = (0..FLOW_U64S)
                    .filter(|&i| mf.mask.w[i] != 0)
                    .map(|i| i as u8)
                    .collect();
                self.subtables.push(Subtable {
                    mask: mf.mask,
                    words: words.into_boxed_slice(),
                    flows: HashTable::new(),
                    hits: Cell::new(0),
                });
                self.subtables.len() - 1
            }
        };
        let st = &mut self.subtables[idx];
        let hash = masked_hash(&mf.key, &st.mask, &st.words, seed);
        let key = CompactKey::new(&mf.key, &st.mask, &st.words);
        let mf = Arc::new(mf);
        st.flows.insert_unique(
            hash,
            Slot {
                key,
                hash,
                flow: mf.clone(),
            },
            |m| m.hash,
        );
        self.len += 1;
        Ok(mf)
    }

    /// Put the subtables with the most hits since the last call first, and start
    /// counting again.
    pub fn rank_subtables(&mut self) {
        self.subtables
            .sort_by_key(|s| std::cmp::Reverse(s.hits.get()));
        for s in &self.subtables {
            s.hits.set(s.hits.get() / 2);
        }
    }

    /// Drop megaflows unused since `before` (a time in ms); returns how many went.
    pub fn expire(&mut self, before: u64) -> usize {
        self.retain(|m| m.used_ms() >= before)
    }

    /// Keep the megaflows `keep` says yes to; the others are dropped and marked dead.
    /// Returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&Megaflow) -> bool) -> usize {
        let mut gone = 0;
        for st in &mut self.subtables {
            let n = st.flows.len();
            st.flows.retain(|m| {
                let k = keep(&m.flow);
                if !k {
                    m.flow.dead.store(true, Ordering::Relaxed);
                }
                k
            });
            gone += n - st.flows.len();
        }
        self.subtables.retain(|s| !s.flows.is_empty());
        self.len -= gone;
        gone
    }

    pub fn clear(&mut self) {
        for m in self.iter() {
            m.dead.store(true, Ordering::Relaxed);
        }
        self.subtables.clear();
        self.len = 0;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Megaflow>> {
        self.subtables
            .iter()
            .flat_map(|s| s.flows.iter().map(|m| &m.flow))
    }
}
