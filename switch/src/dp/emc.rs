//! The exact-match cache: the first, cheapest tier of the fast path.
//!
//! A fixed-size table of whole flow keys, two candidate slots per key (chosen by two parts
//! of the key's hash), each pointing at the megaflow that decided the flow. A hit costs one
//! hash (computed once per packet) and one key comparison. Being fixed-size, it cannot be
//! grown by traffic; a new flow evicts an old one from one of its two slots.

use super::megaflow::Megaflow;
use std::sync::Arc;
use vswitch_proto::flow::Flow;

/// Open vSwitch's EMC size.
pub const DEFAULT_ENTRIES: usize = 8192;

#[derive(Debug)]
struct Slot {
    hash: u64,
    key: Flow,
    flow: Option<Arc<Megaflow>>,
    hits: u64,
}

#[derive(Debug)]
pub struct Emc {
    slots: Box<[Slot]>,
    mask: usize,
}

/// One entry of `dump-cache`.
#[derive(Clone, Debug)]
pub struct EmcRow {
    pub key: Flow,
    pub hits: u64,
    pub megaflow: Arc<Megaflow>,
}

/// Whole-key equality. Comparing the arrays lets the compiler call the platform's `bcmp`,
/// which is vectorized: measured faster here than a hand-written word loop.
#[inline(always)]
fn same_key(a: &Flow, b: &Flow) -> bool {
    a.w == b.w
}

impl Emc {
    /// A cache of `entries` slots (rounded up to a power of two).
    pub fn new(entries: usize) -> Emc {
        let n = entries.max(2).next_power_of_two();
        Emc {
            slots: (0..n)
                .map(|_| Slot {
                    hash: 0,
                    key: Flow::ZERO,
                    flow: None,
                    hits: 0,
                })
                .collect(),
            mask: n - 1,
        }
    }

    #[inline(always)]
    fn indices(&self, hash: u64) -> [usize; 2] {
        [hash as usize & self.mask, (hash >> 32) as usize & self.mask]
    }

    /// The megaflow cached for exactly this key.
    #[inline]
    pub fn lookup(&mut self, key: &Flow, hash: u64) -> Option<&Arc<Megaflow>> {
        for i in self.indices(hash) {
            let s = &self.slots[i];
            if s.hash == hash && s.flow.is_some() && same_key(&s.key, key) {
                let s = &mut self.slots[i];
                s.hits += 1;
                return s.flow.as_ref();
            }
        }
        None
    }

    pub fn insert(&mut self, key: &Flow, hash: u64, flow: Arc<Megaflow>) {
        let [a, b] = self.indices(hash);
        let pick = if self.slots[a].flow.is_none()
            || (self.slots[a].hash == hash && self.slots[a].key == *key)
        {
            a
        } else if self.slots[b].flow.is_none() {
            b
        } else if self.slots[a].hits <= self.slots[b].hits {
            a
        } else {
            b
        };
        self.slots[pick] = Slot {
            hash,
            key: *key,
            flow: Some(flow),
            hits: 0,
        };
    }

    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.flow = None;
            s.hits = 0;
        }
    }

    /// Drop entries whose megaflow is gone from the megaflow cache.
    pub fn retain(&mut self, keep: impl Fn(&Megaflow) -> bool) {
        for s in self.slots.iter_mut() {
            if s.flow.as_ref().is_some_and(|f| !keep(f)) {
                s.flow = None;
                s.hits = 0;
            }
        }
    }

    pub fn rows(&self) -> Vec<EmcRow> {
        self.slots
            .iter()
            .filter_map(|s| {
                s.flow.as_ref().map(|f| EmcRow {
                    key: s.key,
                    hits: s.hits,
                    megaflow: f.clone(),
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.flow.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
