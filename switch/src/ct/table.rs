//! The connection table: fixed-size entries of 64-bit words in memory that may be a file
//! (so that it outlives the process), and an index from each direction's tuple to its
//! entry.
//!
//! Concurrency: the index is split into shards, each behind a reader-writer lock chosen by
//! the tuple's hash, and every entry has a lock bit of its own. A lookup takes one shard's
//! read lock, then the entry's lock; adding or removing a connection takes the write locks
//! of the shards of both its tuples (in shard order), then the entry's. No lock covers the
//! whole table, so workers handling different connections do not wait for each other.
//!
//! Layout of an entry (`ENTRY_WORDS` words):
//!
//! ```text
//! 0      control: LOCK, USED, generation (bits 2..)
//! 1      flags (seen reply, assured, snat, dnat, committed mark) | mark << 32
//! 2..7   original tuple: src (2 words), dst (2 words), ports/proto/family/zone
//! 7..12  reply tuple, same layout
//! 12     expiry, milliseconds of CLOCK_MONOTONIC
//! 13..15 label (high, low)
//! 15..   the TCP state machine's words
//! ```
//!
//! The words of the two tuples never change while the entry is in the index, so the index
//! reads them without the entry's lock.

use super::tcp::TcpConn;
use super::tuple::Tuple;
use crate::sys::mapped::MappedWords;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

pub const ENTRY_WORDS: usize = 15 + TcpConn::WORDS;
/// Words before the first entry: the file's header, one page.
pub const HEADER_WORDS: usize = 512;
const SHARDS: usize = 256;
const FREE_SHARDS: usize = 16;

pub const LOCK: u64 = 1;
pub const USED: u64 = 2;
/// The rest of the control word counts the connections the entry has held, so that one
/// who read it without a lock can tell whether it holds the same connection later.
pub const GENERATION: u64 = 4;

pub const F_SEEN_REPLY: u64 = 1;
pub const F_ASSURED: u64 = 2;
pub const F_SNAT: u64 = 4;
pub const F_DNAT: u64 = 8;

pub const W_CTL: usize = 0;
pub const W_FLAGS: usize = 1;
pub const W_ORIG: usize = 2;
pub const W_REPLY: usize = 7;
pub const W_EXPIRES: usize = 12;
pub const W_LABEL: usize = 13;
pub const W_TCP: usize = 15;

/// Which tuple of an entry an index item points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Orig,
    Reply,
}

#[inline]
fn item(slot: u32, dir: Dir) -> u32 {
    slot << 1 | (dir == Dir::Reply) as u32
}

#[inline]
fn item_slot(it: u32) -> u32 {
    it >> 1
}

#[inline]
fn item_dir(it: u32) -> Dir {
    if it & 1 == 1 { Dir::Reply } else { Dir::Orig }
}

/// An entry whose lock this thread holds; released on drop.
pub struct Locked<'a> {
    pub w: &'a [AtomicU64],
    pub slot: u32,
}

impl std::fmt::Debug for Locked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locked").field("slot", &self.slot).finish()
    }
}

impl Locked<'_> {
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        self.w[i].load(Relaxed)
    }
    #[inline]
    pub fn set(&self, i: usize, v: u64) {
        self.w[i].store(v, Relaxed)
    }

    /// Whether the entry (locked, so it cannot change) still holds the connection
    /// [`Table::holds`] gave `seen` for.
    #[inline]
    pub fn still(&self, seen: u64) -> bool {
        self.get(W_CTL) & !LOCK == seen
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.w[W_CTL].fetch_and(!LOCK, Release);
    }
}

fn lock_entry(w: &[AtomicU64]) {
    let mut spins = 0u32;
    while w[W_CTL].fetch_or(LOCK, Acquire) & LOCK != 0 {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

pub fn read_tuple(w: &[AtomicU64], at: usize) -> Tuple {
    let r = |i: usize| w[at + i].load(Relaxed);
    Tuple::unpack(
        (r(0) as u128) << 64 | r(1) as u128,
        (r(2) as u128) << 64 | r(3) as u128,
        r(4),
    )
}

/// Whether the tuple stored at `at` is `t`, compared word by word as stored (no tuple
/// is unpacked: this runs for every packet of a known connection).
#[inline]
fn tuple_is(w: &[AtomicU64], at: usize, t: &Tuple) -> bool {
    let w = &w[at..at + 5];
    let r = |i: usize| w[i].load(Relaxed);
    r(4) == t.pack()
        && r(1) == t.src as u64
        && r(3) == t.dst as u64
        && r(0) == (t.src >> 64) as u64
        && r(2) == (t.dst >> 64) as u64
}

fn write_tuple(w: &[AtomicU64], at: usize, t: &Tuple) {
    let s = |i: usize, v: u64| w[at + i].store(v, Relaxed);
    s(0, (t.src >> 64) as u64);
    s(1, t.src as u64);
    s(2, (t.dst >> 64) as u64);
    s(3, t.dst as u64);
    s(4, t.pack());
}

/// Where one worker last found the connections of recent packets: by a tuple's hash, the
/// index item (entry and direction) it was found at, so that the next packet of the
/// connection goes to its entry without the index shard's read lock (two atomic
/// read-modify-writes) and probe. A hint is only a guess: the entry may have been removed
/// and reused since, so whoever follows one checks the entry still holds the tuple (under
/// the entry's lock, or again after reading it without) and else looks in the index.
#[derive(Debug)]
pub struct Hints {
    /// (the hash's high half, the item + 1; 0 for none), by the hash's low bits.
    slots: Box<[(u32, u32)]>,
}

impl Hints {
    const SIZE: usize = 4096;

    pub fn new() -> Hints {
        Hints {
            slots: vec![(0, 0); Self::SIZE].into_boxed_slice(),
        }
    }

    #[inline]
    fn at(h: u64) -> usize {
        h as usize & (Self::SIZE - 1)
    }

    /// The entry and direction last seen for hash `h`.
    #[inline]
    pub fn get(&self, h: u64) -> Option<(u32, Dir)> {
        let (tag, it) = self.slots[Self::at(h)];
        (it != 0 && tag == (h >> 32) as u32).then(|| (item_slot(it - 1), item_dir(it - 1)))
    }

    #[inline]
    pub fn set(&mut self, h: u64, slot: u32, dir: Dir) {
        self.slots[Self::at(h)] = ((h >> 32) as u32, item(slot, dir) + 1);
    }
}

impl Default for Hints {
    fn default() -> Hints {
        Hints::new()
    }
}

/// Why a connection was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The original tuple is known already (another worker added it first).
    Exists,
    /// The reply tuple is some connection's already (NAT must choose another).
    ReplyTaken,
    /// No free entry.
    Full,
}

pub struct Table {
    mem: MappedWords,
    cap: u32,
    seed: u64,
    shards: Box<[RwLock<HashTable<u32>>]>,
    free: Box<[Mutex<Vec<u32>>]>,
    /// Entries at or above this index were never used since the table was made.
    next: AtomicU32,
    count: AtomicU32,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("capacity", &self.cap)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Table {
    /// A table over `mem`, which holds the header and `cap` entries.
    pub fn new(mem: MappedWords, cap: u32) -> Table {
        assert!(mem.words().len() >= HEADER_WORDS + cap as usize * ENTRY_WORDS);
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x5eed);
            h.finish()
        };
        Table {
            mem,
            cap,
            seed,
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            free: (0..FREE_SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            next: AtomicU32::new(0),
            count: AtomicU32::new(0),
        }
    }

    pub fn header(&self) -> &[AtomicU64] {
        &self.mem.words()[..HEADER_WORDS]
    }

    pub fn capacity(&self) -> u32 {
        self.cap
    }

    /// Connections in the table (expired ones not yet swept included).
    pub fn len(&self) -> u32 {
        self.count.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the highest entry ever used.
    pub fn high_water(&self) -> u32 {
        self.next.load(Relaxed).min(self.cap)
    }

    #[inline]
    pub fn entry(&self, slot: u32) -> &[AtomicU64] {
        let at = HEADER_WORDS + slot as usize * ENTRY_WORDS;
        &self.mem.words()[at..at + ENTRY_WORDS]
    }

    #[inline]
    pub fn hash(&self, t: &Tuple) -> u64 {
        t.hash(self.seed)
    }

    /// The index shard of a hash: bits 32 to 39, apart from those the shard's hash table
    /// uses (its bucket from the low bits, its 7-bit tag from the top ones: were the shard
    /// chosen by the top bits, every item of a shard would carry the same tag, and each
    /// probe would compare the tuples of a whole group).
    #[inline]
    fn shard_of(h: u64) -> usize {
        (h >> 32) as usize % SHARDS
    }

    fn item_hash(&self, it: u32) -> u64 {
        let w = self.entry(item_slot(it));
        let at = if item_dir(it) == Dir::Reply {
            W_REPLY
        } else {
            W_ORIG
        };
        self.hash(&read_tuple(w, at))
    }

    fn item_is(&self, it: u32, t: &Tuple) -> bool {
        let w = self.entry(item_slot(it));
        let at = if item_dir(it) == Dir::Reply {
            W_REPLY
        } else {
            W_ORIG
        };
        tuple_is(w, at, t)
    }

    /// Find the connection `t` belongs to (in either direction) and lock it.
    #[inline]
    pub fn lookup(&self, t: &Tuple) -> Option<(Locked<'_>, Dir)> {
        let h = self.hash(t);
        let shard = self.shards[Self::shard_of(h)].read();
        let it = *shard.find(h, |&it| self.item_is(it, t))?;
        let slot = item_slot(it);
        let w = self.entry(slot);
        lock_entry(w);
        drop(shard);
        Some((Locked { w, slot }, item_dir(it)))
    }

    /// Find the connection `t` belongs to and run `f` on its words (not locked: `f` may
    /// lock it with [`Table::lock_found`]) while it cannot be removed.
    #[inline]
    pub fn find<R>(&self, t: &Tuple, f: impl FnOnce(&[AtomicU64], u32, Dir) -> R) -> Option<R> {
        self.find_hashed(t, self.hash(t), f)
    }

    /// [`Table::find`] with the hash already made; `f` also learns the index item (for a
    /// worker's [`Hints`]).
    #[inline]
    pub fn find_hashed<R>(
        &self,
        t: &Tuple,
        h: u64,
        f: impl FnOnce(&[AtomicU64], u32, Dir) -> R,
    ) -> Option<R> {
        let shard = self.shards[Self::shard_of(h)].read();
        let it = *shard.find(h, |&it| self.item_is(it, t))?;
        let r = f(self.entry(item_slot(it)), item_slot(it), item_dir(it));
        drop(shard);
        Some(r)
    }

    /// Whether `slot` holds a connection with `t` as its `dir` tuple now, read without a
    /// lock: the answer may be out of date as soon as it is given (see [`Hints`]), so it
    /// comes with the entry's generation, which [`Table::still`] (or [`Locked::still`])
    /// compares later.
    #[inline]
    pub fn holds(&self, slot: u32, dir: Dir, t: &Tuple) -> Option<u64> {
        let w = self.entry(slot);
        let at = if dir == Dir::Reply { W_REPLY } else { W_ORIG };
        let ctl = w[W_CTL].load(Acquire);
        (ctl & USED != 0 && tuple_is(w, at, t)).then_some(ctl & !LOCK)
    }

    /// Whether `slot` holds the same connection as when [`Table::holds`] gave `seen`.
    #[inline]
    pub fn still(&self, slot: u32, seen: u64) -> bool {
        self.entry(slot)[W_CTL].load(Acquire) & !LOCK == seen
    }

    /// Lock an entry [`Table::find`] gave.
    #[inline]
    pub fn lock_found<'a>(&self, w: &'a [AtomicU64], slot: u32) -> Locked<'a> {
        lock_entry(w);
        Locked { w, slot }
    }

    /// Whether any connection has `t` as one of its tuples.
    pub fn contains(&self, t: &Tuple) -> bool {
        let h = self.hash(t);
        self.shards[Self::shard_of(h)]
            .read()
            .find(h, |&it| self.item_is(it, t))
            .is_some()
    }

    /// Write-lock shards `a` and `b` in index order; the guards come back as (a, b), b
    /// absent when it is a.
    fn lock_two(
        &self,
        a: usize,
        b: usize,
    ) -> (
        RwLockWriteGuard<'_, HashTable<u32>>,
        Option<RwLockWriteGuard<'_, HashTable<u32>>>,
    ) {
        if a == b {
            (self.shards[a].write(), None)
        } else if a < b {
            let x = self.shards[a].write();
            (x, Some(self.shards[b].write()))
        } else {
            let y = self.shards[b].write();
            (self.shards[a].write(), Some(y))
        }
    }

    fn alloc(&self, h: u64) -> Option<u32> {
        let first = (h as usize) % FREE_SHARDS;
        if let Some(s) = self.free[first].lock().pop() {
            return Some(s);
        }
        let n = self.next.fetch_add(1, Relaxed);
        if n < self.cap {
            return Some(n);
        }
        self.next.store(self.cap, Relaxed);
        (1..FREE_SHARDS).find_map(|i| self.free[(first + i) % FREE_SHARDS].lock().pop())
    }

    /// Add a connection with tuples `orig` and `reply`; `init` fills its other words
    /// (the entry is locked and not yet findable while it runs). The caller has checked
    /// the limits.
    pub fn insert(
        &self,
        orig: &Tuple,
        reply: &Tuple,
        init: impl FnOnce(&Locked<'_>),
    ) -> Result<u32, Refused> {
        let (ho, hr) = (self.hash(orig), self.hash(reply));
        let (so, sr) = (Self::shard_of(ho), Self::shard_of(hr));
        let (mut g1, mut g2) = self.lock_two(so, sr);
        if g1.find(ho, |&it| self.item_is(it, orig)).is_some() {
            return Err(Refused::Exists);
        }
        let t_r = g2.as_ref().unwrap_or(&g1);
        if orig == reply || t_r.find(hr, |&it| self.item_is(it, reply)).is_some() {
            return Err(Refused::ReplyTaken);
        }
        let slot = self.alloc(ho).ok_or(Refused::Full)?;
        let w = self.entry(slot);
        lock_entry(w);
        let e = Locked { w, slot };
        for i in 1..ENTRY_WORDS {
            e.set(i, 0);
        }
        write_tuple(w, W_ORIG, orig);
        write_tuple(w, W_REPLY, reply);
        init(&e);
        // A new generation, in use. Only the lock bit is ever set by others meanwhile,
        // and it is set already.
        let ctl = w[W_CTL].load(Relaxed);
        w[W_CTL].store(ctl.wrapping_add(GENERATION) | USED, Relaxed);
        let hasher = |it: &u32| self.item_hash(*it);
        g1.insert_unique(ho, item(slot, Dir::Orig), hasher);
        g2.as_mut()
            .unwrap_or(&mut g1)
            .insert_unique(hr, item(slot, Dir::Reply), hasher);
        self.count.fetch_add(1, Relaxed);
        drop(e);
        Ok(slot)
    }

    /// Remove the connection in `slot` if `pred` (run with the entry locked) says so.
    /// Returns its original tuple if it was removed.
    pub fn remove_if(&self, slot: u32, pred: impl FnOnce(&Locked<'_>) -> bool) -> Option<Tuple> {
        let w = self.entry(slot);
        if w[W_CTL].load(Acquire) & USED == 0 {
            return None;
        }
        let (orig, reply) = (read_tuple(w, W_ORIG), read_tuple(w, W_REPLY));
        let (ho, hr) = (self.hash(&orig), self.hash(&reply));
        let (so, sr) = (Self::shard_of(ho), Self::shard_of(hr));
        let (mut g1, mut g2) = self.lock_two(so, sr);
        lock_entry(w);
        let e = Locked { w, slot };
        // The tuples may have changed between reading them and taking the locks (the
        // entry was freed and reused): only an entry still indexed under them is removed.
        if e.get(W_CTL) & USED == 0
            || read_tuple(w, W_ORIG) != orig
            || read_tuple(w, W_REPLY) != reply
            || !pred(&e)
        {
            return None;
        }
        if let Ok(o) = g1.find_entry(ho, |&x| x == item(slot, Dir::Orig)) {
            o.remove();
        }
        if let Ok(o) = g2
            .as_mut()
            .unwrap_or(&mut g1)
            .find_entry(hr, |&x| x == item(slot, Dir::Reply))
        {
            o.remove();
        }
        w[W_CTL].fetch_and(!USED, Relaxed);
        drop(e);
        drop(g2);
        drop(g1);
        self.count.fetch_sub(1, Relaxed);
        self.free[(ho as usize) % FREE_SHARDS].lock().push(slot);
        Some(orig)
    }

    /// Whether `slot` holds a connection (without locking; for scans).
    pub fn used(&self, slot: u32) -> bool {
        self.entry(slot)[W_CTL].load(Relaxed) & USED != 0
    }

    /// Lock `slot` if it holds a connection.
    pub fn lock(&self, slot: u32) -> Option<Locked<'_>> {
        let w = self.entry(slot);
        if w[W_CTL].load(Relaxed) & USED == 0 {
            return None;
        }
        lock_entry(w);
        let e = Locked { w, slot };
        (e.get(W_CTL) & USED != 0).then_some(e)
    }

    /// Rebuild the index from the entries found in the memory (a table reused after a
    /// restart). `keep` decides on each entry (locked, so a torn one was caught before:
    /// see `reuse`). Entries not kept are cleared. Returns (kept, dropped).
    pub fn rebuild(&self, mut keep: impl FnMut(&Locked<'_>) -> bool) -> (u32, u32) {
        let (mut kept, mut dropped) = (0, 0);
        let mut high = 0;
        let mut free = Vec::new();
        for slot in 0..self.cap {
            let w = self.entry(slot);
            let ctl = w[W_CTL].load(Relaxed);
            if ctl & (USED | LOCK) == 0 {
                free.push(slot);
                continue;
            }
            // A lock bit left set: the process died while writing this entry.
            let ok = ctl & (USED | LOCK) == USED && {
                w[W_CTL].store(ctl | LOCK, Relaxed);
                let e = Locked { w, slot };
                let (o, r) = (read_tuple(w, W_ORIG), read_tuple(w, W_REPLY));
                o != r && keep(&e) && !self.contains(&o) && !self.contains(&r)
            };
            if !ok {
                for x in w {
                    x.store(0, Relaxed);
                }
                dropped += 1;
                free.push(slot);
                continue;
            }
            let (o, r) = (read_tuple(w, W_ORIG), read_tuple(w, W_REPLY));
            for (t, d) in [(o, Dir::Orig), (r, Dir::Reply)] {
                let h = self.hash(&t);
                self.shards[Self::shard_of(h)]
                    .write()
                    .insert_unique(h, item(slot, d), |it| self.item_hash(*it));
            }
            kept += 1;
            high = slot + 1;
        }
        free.retain(|&s| s < high);
        for (i, s) in free.into_iter().rev().enumerate() {
            self.free[i % FREE_SHARDS].lock().push(s);
        }
        self.next.store(high, Relaxed);
        self.count.store(kept, Relaxed);
        (kept, dropped)
    }

    /// Check the table's invariants (for tests and fuzzing): every entry in use is found
    /// under both its tuples and nothing else is indexed. Returns the first violation.
    pub fn check(&self) -> Result<(), String> {
        let mut used = 0u32;
        for slot in 0..self.high_water() {
            let Some(e) = self.lock(slot) else { continue };
            used += 1;
            for (at, d) in [(W_ORIG, Dir::Orig), (W_REPLY, Dir::Reply)] {
                let t = read_tuple(e.w, at);
                let h = self.hash(&t);
                let s = self.shards[Self::shard_of(h)].read();
                match s.find(h, |&it| self.item_is(it, &t)) {
                    Some(&it) if it == item(slot, d) => {}
                    other => return Err(format!("entry {slot} {d:?} {t:?} indexed as {other:?}")),
                }
            }
        }
        let indexed: usize = self.shards.iter().map(|s| s.read().len()).sum();
        if indexed != 2 * used as usize || used != self.len() {
            return Err(format!(
                "{used} entries in use, {indexed} index items, count {}",
                self.len()
            ));
        }
        Ok(())
    }

    /// Bytes of memory the index uses (the entries are `capacity * ENTRY_WORDS * 8`, of
    /// which only the pages touched are resident).
    pub fn index_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().allocation_size()).sum()
    }
}
