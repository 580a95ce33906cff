//! Hashing flow keys for the caches and the classifier.
//!
//! The hash is a folded multiply over pairs of words (the core of `foldhash`), keyed with a
//! per-process seed. Flow keys come from Pods, so the seed matters: without it a Pod could
//! choose keys that collide. The hash tables that use it are also bounded (the exact-match
//! cache is fixed size), so collisions cost time, never memory.

use vswitch_proto::flow::Flow;

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// The words that tell packets apart as they enter the switch: in_port and recirc_id,
/// conntrack state, tunnel, and the L2-L4 headers. The others (registers, metadata,
/// ct_label, nd_target) are zero at ingress or follow from these.
const DISTINCT_WORDS: [usize; 14] = [0, 1, 2, 3, 4, 16, 17, 18, 19, 20, 23, 24, 25, 26];

/// Hash of a key for the exact-match cache. It reads the words where packets differ
/// ([`DISTINCT_WORDS`]) in four independent lanes, so the multiplies overlap instead of
/// waiting on each other; keys that differ only elsewhere collide, and the cache's full
/// key comparison tells them apart.
#[inline]
pub fn flow_hash(f: &Flow, seed: u64) -> u64 {
    let w = &f.w;
    let d = &DISTINCT_WORDS;
    let mut lanes = [
        seed ^ K0,
        seed ^ K1,
        seed.rotate_left(17) ^ K0,
        seed.rotate_left(41) ^ K1,
    ];
    for round in 0..2 {
        for (l, lane) in lanes.iter_mut().enumerate() {
            let i = round * 8 + l * 2;
            if i + 1 < d.len() {
                *lane = folded_multiply(w[d[i]] ^ *lane, w[d[i + 1]] ^ K0 ^ (l as u64));
            }
        }
    }
    let [a, b, c, e] = lanes;
    folded_multiply(a ^ c, b ^ e ^ K1)
}

/// Hash of `key & mask` over only the listed words (those where the mask is non-zero).
/// Two keys equal under the mask hash the same.
#[inline]
pub fn masked_hash(key: &Flow, mask: &Flow, words: &[u8], seed: u64) -> u64 {
    let mut h = seed;
    for &i in words {
        let i = i as usize;
        h = folded_multiply((key.w[i] & mask.w[i]) ^ h, K0 ^ i as u64);
    }
    folded_multiply(h, K1 ^ seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_hash_ignores_masked_out_bits() {
        let mut a = Flow::ZERO;
        let mut mask = Flow::ZERO;
        mask.set_nw_dst(0xffff_ff00);
        a.set_nw_dst(0x0a00_0001);
        let mut b = a;
        b.set_nw_dst(0x0a00_00ff);
        b.set_tp_dst(80);
        let words = [vswitch_proto::flow::slot::NW_DST.word];
        assert_eq!(
            masked_hash(&a, &mask, &words, 7),
            masked_hash(&b, &mask, &words, 7)
        );
        b.set_nw_dst(0x0b00_0001);
        assert_ne!(
            masked_hash(&a, &mask, &words, 7),
            masked_hash(&b, &mask, &words, 7)
        );
        assert_ne!(flow_hash(&a, 1), flow_hash(&a, 2));
    }
}
