//! The MAC learning table behind the `normal` action.
//!
//! Entries are learned on the slow path (when `normal` is translated) and age out after
//! [`DEFAULT_AGING_MS`] without traffic. Cached megaflows that forward by a learned entry
//! keep it fresh by touching its timestamp, without taking the table lock. Any change that
//! could alter a forwarding decision (a new address, a move, an expiry) bumps the table's
//! generation, which makes every worker drop its caches.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Open vSwitch's default MAC aging time.
pub const DEFAULT_AGING_MS: u64 = 300_000;
/// Open vSwitch's default table size.
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

/// Where one address was last seen.
#[derive(Debug)]
pub struct MacEntry {
    pub port: u32,
    seen_ms: AtomicU64,
}

impl MacEntry {
    /// Note traffic from this address now (called by workers for cached flows).
    #[inline]
    pub fn touch(&self, now_ms: u64) {
        self.seen_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn seen_ms(&self) -> u64 {
        self.seen_ms.load(Ordering::Relaxed)
    }
}

/// One row of `dump-macs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacRow {
    pub vlan: u16,
    pub mac: [u8; 6],
    pub port: u32,
    pub age_ms: u64,
}

/// (VLAN, address).
type MacKey = (u16, [u8; 6]);

#[derive(Debug)]
pub struct MacTable {
    entries: Mutex<HashMap<MacKey, Arc<MacEntry>>>,
    generation: AtomicU64,
    aging_ms: u64,
    max_entries: usize,
}

impl Default for MacTable {
    fn default() -> MacTable {
        MacTable::new(DEFAULT_AGING_MS, DEFAULT_MAX_ENTRIES)
    }
}

impl MacTable {
    pub fn new(aging_ms: u64, max_entries: usize) -> MacTable {
        MacTable {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            aging_ms,
            max_entries,
        }
    }

    /// Changes whenever a forwarding decision may have changed.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn fresh(&self, e: &MacEntry, now_ms: u64) -> bool {
        now_ms.saturating_sub(e.seen_ms()) < self.aging_ms
    }

    /// Record that `mac` on `vlan` was seen arriving on `port`; returns the entry.
    /// Multicast sources are not learned.
    pub fn learn(&self, vlan: u16, mac: [u8; 6], port: u32, now_ms: u64) -> Option<Arc<MacEntry>> {
        if mac[0] & 1 != 0 {
            return None;
        }
        let mut map = self.entries.lock();
        if let Some(e) = map.get(&(vlan, mac))
            && e.port == port
            && self.fresh(e, now_ms)
        {
            e.touch(now_ms);
            return Some(e.clone());
        }
        if map.len() >= self.max_entries && !map.contains_key(&(vlan, mac)) {
            // Full: make room by dropping the stalest entry (OVS evicts the oldest too).
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.seen_ms()).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        let e = Arc::new(MacEntry {
            port,
            seen_ms: AtomicU64::new(now_ms),
        });
        map.insert((vlan, mac), e.clone());
        self.bump();
        Some(e)
    }

    /// The port `mac` on `vlan` was last seen on, if the entry has not aged out.
    pub fn lookup(&self, vlan: u16, mac: [u8; 6], now_ms: u64) -> Option<Arc<MacEntry>> {
        let map = self.entries.lock();
        map.get(&(vlan, mac))
            .filter(|e| self.fresh(e, now_ms))
            .cloned()
    }

    /// Remove aged-out entries; returns how many went.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut map = self.entries.lock();
        let before = map.len();
        map.retain(|_, e| now_ms.saturating_sub(e.seen_ms()) < self.aging_ms);
        let gone = before - map.len();
        if gone > 0 {
            self.bump();
        }
        gone
    }

    /// Forget every address learned on `port` (the port went away).
    pub fn flush_port(&self, port: u32) {
        let mut map = self.entries.lock();
        let before = map.len();
        map.retain(|_, e| e.port != port);
        if map.len() != before {
            self.bump();
        }
    }

    pub fn flush(&self) {
        self.entries.lock().clear();
        self.bump();
    }

    pub fn dump(&self, now_ms: u64) -> Vec<MacRow> {
        let map = self.entries.lock();
        let mut rows: Vec<MacRow> = map
            .iter()
            .map(|((vlan, mac), e)| MacRow {
                vlan: *vlan,
                mac: *mac,
                port: e.port,
                age_ms: now_ms.saturating_sub(e.seen_ms()),
            })
            .collect();
        rows.sort_by_key(|r| (r.port, r.vlan, r.mac));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn learns_ages_and_moves() {
        let t = MacTable::new(1000, 16);
        let g0 = t.generation();
        t.learn(0, A, 1, 0).unwrap();
        assert!(t.generation() > g0);
        assert_eq!(t.lookup(0, A, 500).unwrap().port, 1);
        assert!(t.lookup(1, A, 500).is_none(), "VLANs are separate");
        // Relearning on the same port does not change the generation.
        let g1 = t.generation();
        t.learn(0, A, 1, 600);
        assert_eq!(t.generation(), g1);
        // A move does.
        t.learn(0, A, 2, 700);
        assert!(t.generation() > g1);
        assert_eq!(t.lookup(0, A, 700).unwrap().port, 2);
        assert!(t.lookup(0, A, 1800).is_none());
        assert_eq!(t.expire(1800), 1);
        assert!(t.learn(0, [1, 0, 0, 0, 0, 1], 1, 0).is_none(), "multicast");
    }

    #[test]
    fn touching_keeps_an_entry_alive() {
        let t = MacTable::new(1000, 16);
        let e = t.learn(0, A, 1, 0).unwrap();
        e.touch(900);
        assert_eq!(t.expire(1500), 0);
        assert!(t.lookup(0, A, 1500).is_some());
    }

    #[test]
    fn full_table_evicts_the_stalest() {
        let t = MacTable::new(10_000, 2);
        t.learn(0, [2, 0, 0, 0, 0, 1], 1, 0);
        t.learn(0, [2, 0, 0, 0, 0, 2], 1, 5);
        t.learn(0, [2, 0, 0, 0, 0, 3], 1, 6);
        assert!(t.lookup(0, [2, 0, 0, 0, 0, 1], 7).is_none());
        assert!(t.lookup(0, [2, 0, 0, 0, 0, 3], 7).is_some());
    }
}
