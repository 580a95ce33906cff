//! A subtable's buckets, cut into shards that clones of the classifier share.
//!
//! A published snapshot and the master copy being edited share everything, so an edit
//! copies what it touches: here one shard of about [`SHARD_BUCKETS`] buckets, plus the
//! subtable's list of shard pointers, never the whole subtable. A subtable of one rule
//! per Pod or per node then changes at the cost of that object's rules.
//!
//! Two levels of hashing, on different bits of a bucket's 64-bit hash:
//!
//! - Which shard: linear hashing (Litwin) on bits 32 and up. Shards are added and merged
//!   one at a time as the subtable grows and shrinks, so no edit ever redistributes them
//!   all, and none copies more than two or three shards.
//! - Where in the shard: open addressing with linear probing on the low bits. A slot is
//!   16 bytes, the hash and a pointer to the bucket, four to a cache line in the shard's
//!   own allocation: a probe that misses reads only slots, as one in a `hashbrown` table
//!   reads only its control bytes, and a hit reads the bucket next. Buckets are shared
//!   too, so copying a shard copies pointers, and an edit copies the one bucket it changes.

use std::sync::Arc;

use super::Bucket;

/// Buckets a shard holds on average before its subtable adds one. The first edit after a
/// clone copies the slots of one shard (pointers, 32 to 64 bytes a bucket) and the
/// subtable's pointers to all its shards: 256 balances the two at a node's largest tables
/// (100,000 rules: 400 shards). Tests use shards of one bucket, so that the property
/// tests' few rules per mask split and merge them too. Shards merge only when their
/// average falls below a quarter of this, so that a subtable hovering at one size does
/// not split and merge a shard on every edit.
pub(super) const SHARD_BUCKETS: usize = if cfg!(test) { 1 } else { 256 };

/// The fewest slots a shard has. A shard always keeps at least half its slots empty:
/// probes end at an empty slot, and stay short.
const MIN_SLOTS: usize = 4;

/// A bucket's full hash, and the bucket.
type Slot<R> = Option<(u64, Arc<Bucket<R>>)>;

#[derive(Clone, Debug)]
struct Shard<R> {
    /// A power-of-two number of slots, at most half of them full.
    slots: Arc<[Slot<R>]>,
    len: usize,
}

/// The bits of a bucket's hash that choose its shard; the low bits choose its slot there.
#[inline]
fn shard_bits(hash: u64) -> usize {
    (hash >> 32) as usize
}

impl<R> Shard<R> {
    /// Where the bucket with this hash is, or the empty slot that ends its probe.
    #[inline]
    fn probe(&self, hash: u64, mut eq: impl FnMut(&Bucket<R>) -> bool) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some((h, b)) if *h == hash && eq(b) => return Ok(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Bucket<R>)> {
        self.slots.iter().flatten().map(|(h, b)| (*h, &**b))
    }

    /// A shard holding `buckets` (there are `len` of them), with room for one more.
    fn build(buckets: impl IntoIterator<Item = (u64, Arc<Bucket<R>>)>, len: usize) -> Shard<R> {
        let n_slots = (2 * (len + 1)).next_power_of_two().max(MIN_SLOTS);
        let mask = n_slots - 1;
        let mut slots: Vec<Slot<R>> = (0..n_slots).map(|_| None).collect();
        for (hash, b) in buckets {
            let mut i = hash as usize & mask;
            while slots[i].is_some() {
                i = (i + 1) & mask;
            }
            slots[i] = Some((hash, b));
        }
        Shard {
            slots: Arc::from(slots),
            len,
        }
    }

    /// The buckets, moved out if this is the only copy of the shard, else shared.
    fn into_buckets(mut self) -> Vec<(u64, Arc<Bucket<R>>)> {
        let mut out = Vec::with_capacity(self.len);
        match Arc::get_mut(&mut self.slots) {
            Some(own) => out.extend(own.iter_mut().filter_map(Option::take)),
            None => out.extend(self.slots.iter().flatten().cloned()),
        }
        out
    }

    /// Moves the shard out, leaving an empty one of no slots that must be replaced before
    /// the next probe.
    fn take(&mut self) -> Shard<R> {
        let none: Arc<[Slot<R>; 0]> = Arc::new([]);
        std::mem::replace(
            self,
            Shard {
                slots: none,
                len: 0,
            },
        )
    }

    /// Rebuilds the shard with as many slots as its length calls for.
    fn resize(&mut self) {
        let old = self.take();
        let len = old.len;
        *self = Shard::build(old.into_buckets(), len);
    }

    fn slots_mut(&mut self) -> &mut [Slot<R>] {
        Arc::make_mut(&mut self.slots)
    }

    fn insert_unique(&mut self, hash: u64, bucket: Bucket<R>) {
        if 2 * (self.len + 1) > self.slots.len() {
            self.resize();
        }
        let Err(i) = self.probe(hash, |_| false) else {
            unreachable!("a probe that matches nothing ends at an empty slot")
        };
        self.slots_mut()[i] = Some((hash, Arc::new(bucket)));
        self.len += 1;
    }

    fn remove(&mut self, hash: u64, eq: impl FnMut(&Bucket<R>) -> bool) -> Option<Arc<Bucket<R>>> {
        let mut hole = self.probe(hash, eq).ok()?;
        let slots = self.slots_mut();
        let mask = slots.len() - 1;
        let (_, removed) = slots[hole].take()?;
        // Backward shift: pull later buckets of the probe run into the hole, wherever that
        // keeps them reachable from their home slot, so that no probe stops short.
        let mut j = (hole + 1) & mask;
        while let Some((h, _)) = &slots[j] {
            let home = *h as usize & mask;
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                slots[hole] = slots[j].take();
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.len -= 1;
        if self.slots.len() > MIN_SLOTS && 8 * self.len < self.slots.len() {
            self.resize();
        }
        Some(removed)
    }
}

/// The buckets of one subtable.
///
/// Linear hashing: shard `i` holds the buckets whose `shard_bits & low` is `i`, except
/// that the shards below `split` have already been split in two by the next bit up (their
/// other halves are at `i + low + 1`); `shards.len() == low + 1 + split`.
#[derive(Clone, Debug)]
pub(super) struct Shards<R> {
    layout: Layout<R>,
    /// `2^level - 1`.
    low: usize,
    split: usize,
    len: usize,
}

/// Most subtables are small, and a lookup in one probes its only shard kept inline: one
/// pointer fewer to follow than through a list.
#[derive(Clone, Debug)]
enum Layout<R> {
    One(Shard<R>),
    Many(Vec<Shard<R>>),
}

impl<R> Shards<R> {
    pub(super) fn new() -> Shards<R> {
        Shards {
            layout: Layout::One(Shard::build(std::iter::empty(), 0)),
            low: 0,
            split: 0,
            len: 0,
        }
    }

    #[inline]
    fn shards(&self) -> &[Shard<R>] {
        match &self.layout {
            Layout::One(s) => std::slice::from_ref(s),
            Layout::Many(v) => v,
        }
    }

    fn shards_mut(&mut self) -> &mut [Shard<R>] {
        match &mut self.layout {
            Layout::One(s) => std::slice::from_mut(s),
            Layout::Many(v) => v,
        }
    }

    fn push(&mut self, shard: Shard<R>) {
        match &mut self.layout {
            Layout::Many(v) => v.push(shard),
            Layout::One(_) => {
                let Layout::One(first) =
                    std::mem::replace(&mut self.layout, Layout::Many(Vec::new()))
                else {
                    unreachable!()
                };
                self.layout = Layout::Many(vec![first, shard]);
            }
        }
    }

    /// The last shard, unless it is the only one.
    fn pop(&mut self) -> Option<Shard<R>> {
        let Layout::Many(v) = &mut self.layout else {
            return None;
        };
        let last = v.pop();
        if v.len() == 1 {
            self.layout = Layout::One(v.pop()?);
        }
        last
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        let bits = shard_bits(hash);
        let i = bits & self.low;
        if i < self.split {
            bits & (self.low << 1 | 1)
        } else {
            i
        }
    }

    /// The bucket with this hash for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, eq: impl FnMut(&Bucket<R>) -> bool) -> Option<&Bucket<R>> {
        // Not through `shards()`: with one shard, where it is must not wait for the hash.
        let shard = match &self.layout {
            Layout::One(s) => s,
            Layout::Many(v) => &v[self.shard_of(hash)],
        };
        let i = shard.probe(hash, eq).ok()?;
        shard.slots[i].as_ref().map(|(_, b)| &**b)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Bucket<R>> {
        self.shards().iter().flat_map(|s| s.iter().map(|(_, b)| b))
    }
}

impl<R: Clone> Shards<R> {
    /// Like [`Shards::find`], copying the bucket and its shard first if a clone shares
    /// them.
    pub(super) fn find_mut(
        &mut self,
        hash: u64,
        eq: impl FnMut(&Bucket<R>) -> bool,
    ) -> Option<&mut Bucket<R>> {
        let si = self.shard_of(hash);
        let shard = &mut self.shards_mut()[si];
        let i = shard.probe(hash, eq).ok()?;
        let (_, b) = shard.slots_mut()[i].as_mut()?;
        Some(Arc::make_mut(b))
    }

    /// Adds a bucket no other has the key of.
    pub(super) fn insert_unique(&mut self, hash: u64, bucket: Bucket<R>) {
        let si = self.shard_of(hash);
        self.shards_mut()[si].insert_unique(hash, bucket);
        self.len += 1;
        // One split per added bucket keeps the average bounded: a split makes room for
        // SHARD_BUCKETS more.
        if self.len > SHARD_BUCKETS * self.shards().len() {
            self.split_one();
        }
    }

    pub(super) fn remove(
        &mut self,
        hash: u64,
        eq: impl FnMut(&Bucket<R>) -> bool,
    ) -> Option<Bucket<R>> {
        let si = self.shard_of(hash);
        let removed = self.shards_mut()[si].remove(hash, eq)?;
        let removed = Arc::unwrap_or_clone(removed);
        self.len -= 1;
        // A subtable that shrank must not keep (and copy on every edit) a pointer per
        // long-gone SHARD_BUCKETS rules. One merge per removed bucket keeps up unless
        // shards are tiny (tests).
        while self.shards().len() > 1 && 4 * self.len < SHARD_BUCKETS * self.shards().len() {
            self.merge_one();
        }
        Some(removed)
    }

    /// Splits shard `split` by the next bit of `shard_bits`, the upper half going to a new
    /// last shard.
    fn split_one(&mut self) {
        let bit = self.low + 1;
        let split = self.split;
        let (upper, lower): (Vec<_>, Vec<_>) = self.shards_mut()[split]
            .take()
            .into_buckets()
            .into_iter()
            .partition(|(h, _)| shard_bits(*h) & bit != 0);
        let (n_upper, n_lower) = (upper.len(), lower.len());
        self.shards_mut()[split] = Shard::build(lower, n_lower);
        self.push(Shard::build(upper, n_upper));
        self.split += 1;
        if self.split == bit {
            self.low = self.low << 1 | 1;
            self.split = 0;
        }
    }

    /// Undoes the last [`Shards::split_one`]: the last shard goes back into its pair.
    fn merge_one(&mut self) {
        let Some(last) = self.pop() else {
            return;
        };
        if self.split == 0 {
            self.low >>= 1;
            self.split = self.low + 1;
        }
        self.split -= 1;
        let split = self.split;
        let pair = self.shards_mut()[split].take();
        let len = pair.len + last.len;
        let mut buckets = pair.into_buckets();
        buckets.extend(last.into_buckets());
        self.shards_mut()[split] = Shard::build(buckets, len);
    }
}

#[cfg(test)]
impl<R> Shards<R> {
    pub(super) fn n_shards(&self) -> usize {
        self.shards().len()
    }

    /// How many of these shards `other` does not share.
    pub(super) fn unshared(&self, other: &Shards<R>) -> usize {
        self.shards()
            .iter()
            .enumerate()
            .filter(|&(i, s)| {
                other
                    .shards()
                    .get(i)
                    .is_none_or(|t| !Arc::ptr_eq(&s.slots, &t.slots))
            })
            .count()
    }

    /// Panics unless every bucket is where a lookup looks for it, and the counts are right.
    pub(super) fn check(&self) {
        assert!(self.split <= self.low);
        assert_eq!(self.shards().len(), self.low + 1 + self.split);
        assert!(self.len <= SHARD_BUCKETS * self.shards().len());
        assert_eq!(
            matches!(self.layout, Layout::One(_)),
            self.shards().len() == 1
        );
        let mut total = 0;
        for (si, shard) in self.shards().iter().enumerate() {
            assert!(shard.slots.len().is_power_of_two());
            assert!(2 * shard.len <= shard.slots.len());
            assert_eq!(shard.iter().count(), shard.len);
            for (h, b) in shard.iter() {
                assert_eq!(self.shard_of(h), si);
                let found = shard.probe(h, |c| std::ptr::eq(b, c));
                assert!(found.is_ok(), "a bucket its probe does not reach");
            }
            total += shard.len;
        }
        assert_eq!(total, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::CompactKey;
    use proptest::prelude::*;
    use smallvec::SmallVec;
    use std::collections::BTreeSet;

    #[test]
    fn four_slots_to_a_cache_line() {
        assert_eq!(std::mem::size_of::<Slot<u32>>(), 16);
    }

    /// Few distinct low bits: long probe runs, wrapping around the end of the slots.
    fn hash(k: u64) -> u64 {
        (k % 5).wrapping_sub(2) | k << 40
    }

    fn bucket(k: u64) -> Bucket<u32> {
        Bucket {
            key: CompactKey::Inline([k, 0, 0, 0]),
            entries: SmallVec::new(),
        }
    }

    fn has(shard: &Shard<u32>, k: u64) -> bool {
        shard.probe(hash(k), |c| c.key == bucket(k).key).is_ok()
    }

    proptest! {
        /// One shard, against a set: what a probe finds after inserts and removals (the
        /// backward shift), with a clone kept now and then that must not change.
        #[test]
        fn a_shard_is_a_set(ops in proptest::collection::vec((any::<bool>(), 0u64..40), 0..200)) {
            let mut shard = Shard::build(Vec::new(), 0);
            let mut model = BTreeSet::new();
            let mut kept: Vec<(Shard<u32>, BTreeSet<u64>)> = Vec::new();
            for (n, (insert, k)) in ops.into_iter().enumerate() {
                if insert {
                    if model.insert(k) {
                        shard.insert_unique(hash(k), bucket(k));
                    }
                } else {
                    let removed = shard.remove(hash(k), |c| c.key == bucket(k).key);
                    prop_assert_eq!(removed.is_some(), model.remove(&k));
                }
                prop_assert_eq!(shard.len, model.len());
                prop_assert!(2 * shard.len <= shard.slots.len());
                if n % 17 == 0 {
                    kept.push((shard.clone(), model.clone()));
                }
            }
            kept.push((shard, model));
            for (shard, model) in &kept {
                prop_assert_eq!(shard.iter().count(), model.len());
                for k in 0..40 {
                    prop_assert_eq!(has(shard, k), model.contains(&k));
                }
            }
        }
    }
}
