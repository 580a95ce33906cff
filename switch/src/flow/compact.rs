//! Masked flows stored compactly, for the hash tables of the classifier and the caches.

use vswitch_proto::flow::Flow;

/// Words a subtable keeps inline per bucket before spilling to the heap.
const INLINE_WORDS: usize = 4;

/// A masked flow stored as only the words its mask covers (listed in `words`), so a hash
/// table entry fits in a cache line; a whole [`Flow`] is 248 bytes, spread over four.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactKey {
    Inline([u64; INLINE_WORDS]),
    Heap(Box<[u64]>),
}

impl CompactKey {
    pub fn new(key: &Flow, mask: &Flow, words: &[u8]) -> CompactKey {
        let word = |i: u8| key.w[i as usize] & mask.w[i as usize];
        if words.len() <= INLINE_WORDS {
            let mut w = [0u64; INLINE_WORDS];
            for (slot, &i) in w.iter_mut().zip(words) {
                *slot = word(i);
            }
            CompactKey::Inline(w)
        } else {
            CompactKey::Heap(words.iter().map(|&i| word(i)).collect())
        }
    }

    pub fn as_slice(&self) -> &[u64] {
        match self {
            CompactKey::Inline(w) => w,
            CompactKey::Heap(w) => w,
        }
    }

    /// Whether `key` under `mask` equals this key.
    #[inline]
    pub fn matches(&self, key: &Flow, mask: &Flow, words: &[u8]) -> bool {
        words
            .iter()
            .zip(self.as_slice())
            .all(|(&i, &k)| key.w[i as usize] & mask.w[i as usize] == k)
    }

    /// The whole masked flow back.
    pub fn expand(&self, words: &[u8]) -> Flow {
        let mut f = Flow::ZERO;
        for (&i, &k) in words.iter().zip(self.as_slice()) {
            f.w[i as usize] = k;
        }
        f
    }
}
