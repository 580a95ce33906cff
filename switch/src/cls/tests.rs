use super::shards::SHARD_BUCKETS;
use super::*;
use proptest::prelude::*;
use vswitch_proto::field::FieldId;

fn m(fields: &[(FieldId, u128, u128)]) -> Match {
    let mut out = Match::CATCHALL;
    for &(f, v, mask) in fields {
        out.set_masked(f, v, mask);
    }
    out
}

fn key(fields: &[(FieldId, u128)]) -> Flow {
    let mut k = Flow::ZERO;
    for &(f, v) in fields {
        k.set(f.slot(), v);
    }
    k
}

#[test]
fn highest_priority_wins_and_mask_accumulates() {
    let mut c: Classifier<u32> = Classifier::new();
    c.insert(&m(&[(FieldId::EthType, 0x800, 0xffff)]), 10, None, 1);
    c.insert(
        &m(&[
            (FieldId::EthType, 0x800, 0xffff),
            (FieldId::IpDst, 0x0a000000, 0xff000000),
        ]),
        20,
        None,
        2,
    );
    c.insert(&Match::CATCHALL, 0, None, 3);
    let mut wc = Flow::ZERO;
    let k = key(&[(FieldId::EthType, 0x800), (FieldId::IpDst, 0x0a010203)]);
    assert_eq!(c.lookup(&k, &mut wc), Some(&2));
    // The /8 subtable was consulted first and matched; it has the highest priority, so the
    // lookup stopped there.
    assert_eq!(wc.nw_dst(), 0xff000000);
    assert_eq!(wc.dl_type(), 0xffff);
    let mut wc = Flow::ZERO;
    let k = key(&[(FieldId::EthType, 0x800), (FieldId::IpDst, 0x0b010203)]);
    assert_eq!(c.lookup(&k, &mut wc), Some(&1));
    assert_eq!(c.lookup(&Flow::ZERO, &mut Flow::default()), Some(&3));
}

#[test]
fn insert_replaces_and_remove_works() {
    let mut c: Classifier<u32> = Classifier::new();
    let a = m(&[(FieldId::InPort, 1, 0xffffffff)]);
    assert_eq!(c.insert(&a, 5, None, 1), None);
    assert_eq!(c.insert(&a, 5, None, 2), Some(1));
    assert_eq!(c.insert(&a, 6, None, 3), None);
    assert_eq!(c.len(), 2);
    assert_eq!(
        c.lookup(&key(&[(FieldId::InPort, 1)]), &mut Flow::default()),
        Some(&3)
    );
    assert_eq!(c.remove(&a, 6), Some(3));
    assert_eq!(c.remove(&a, 6), None);
    assert_eq!(
        c.lookup(&key(&[(FieldId::InPort, 1)]), &mut Flow::default()),
        Some(&2)
    );
    assert_eq!(c.remove(&a, 5), Some(2));
    assert!(c.is_empty());
    assert_eq!(c.n_subtables(), 0);
}

#[test]
fn ties_go_to_the_more_specific_mask() {
    let mut c: Classifier<u32> = Classifier::new();
    c.insert(&m(&[(FieldId::IpDst, 0x0a000000, 0xff000000)]), 5, None, 1);
    c.insert(&m(&[(FieldId::IpDst, 0x0a010000, 0xffff0000)]), 5, None, 2);
    let k = key(&[(FieldId::IpDst, 0x0a010101)]);
    assert_eq!(c.lookup(&k, &mut Flow::default()), Some(&2));
    // Same answer whatever the insertion order.
    let mut d: Classifier<u32> = Classifier::new();
    d.insert(&m(&[(FieldId::IpDst, 0x0a010000, 0xffff0000)]), 5, None, 2);
    d.insert(&m(&[(FieldId::IpDst, 0x0a000000, 0xff000000)]), 5, None, 1);
    assert_eq!(d.lookup(&k, &mut Flow::default()), Some(&2));
}

fn conj(id: u32, clause: u8, n: u8) -> Option<Arc<[Conj]>> {
    Some(Arc::from(vec![Conj {
        id,
        clause,
        n_clauses: n,
    }]))
}

#[test]
fn conjunction_needs_every_clause() {
    let mut c: Classifier<u32> = Classifier::new();
    // conjunction(7, 1/2): source 10.0.0.1 or 10.0.0.2; conjunction(7, 2/2): port 80.
    c.insert(
        &m(&[(FieldId::IpSrc, 0x0a000001, u32::MAX as u128)]),
        100,
        conj(7, 0, 2),
        1,
    );
    c.insert(
        &m(&[(FieldId::IpSrc, 0x0a000002, u32::MAX as u128)]),
        100,
        conj(7, 0, 2),
        2,
    );
    c.insert(&m(&[(FieldId::TpDst, 80, 0xffff)]), 100, conj(7, 1, 2), 3);
    c.insert(&m(&[(FieldId::ConjId, 7, u32::MAX as u128)]), 100, None, 10);
    c.insert(&Match::CATCHALL, 0, None, 99);
    let hit = key(&[(FieldId::IpSrc, 0x0a000002), (FieldId::TpDst, 80)]);
    assert_eq!(c.lookup(&hit, &mut Flow::default()), Some(&10));
    let half = key(&[(FieldId::IpSrc, 0x0a000002), (FieldId::TpDst, 81)]);
    assert_eq!(c.lookup(&half, &mut Flow::default()), Some(&99));
    let other = key(&[(FieldId::IpSrc, 0x0a000003), (FieldId::TpDst, 80)]);
    assert_eq!(c.lookup(&other, &mut Flow::default()), Some(&99));
}

#[test]
fn soft_match_falls_back_to_lower_rule_with_same_match() {
    let mut c: Classifier<u32> = Classifier::new();
    let a = m(&[(FieldId::IpSrc, 0x0a000001, u32::MAX as u128)]);
    c.insert(&a, 100, conj(1, 0, 2), 1);
    c.insert(&a, 50, None, 2);
    c.insert(&Match::CATCHALL, 10, None, 3);
    let k = key(&[(FieldId::IpSrc, 0x0a000001)]);
    assert_eq!(c.lookup(&k, &mut Flow::default()), Some(&2));
}

#[test]
fn snapshots_are_independent() {
    let mut c: Classifier<u32> = Classifier::new();
    let a = m(&[(FieldId::InPort, 1, 0xffffffff)]);
    c.insert(&a, 1, None, 1);
    let snap = c.clone();
    c.insert(&a, 1, None, 2);
    c.insert(&m(&[(FieldId::InPort, 2, 0xffffffff)]), 1, None, 3);
    assert_eq!(
        snap.lookup(&key(&[(FieldId::InPort, 1)]), &mut Flow::default()),
        Some(&1)
    );
    assert_eq!(snap.len(), 1);
    assert_eq!(
        c.lookup(&key(&[(FieldId::InPort, 1)]), &mut Flow::default()),
        Some(&2)
    );
}

// ---- Shards: what an edit after a clone copies ------------------------------------

/// One rule per address, all in one subtable, as a node's per-Pod tables are.
fn host(i: u32) -> Match {
    m(&[
        (FieldId::EthType, 0x800, 0xffff),
        (FieldId::IpDst, 0x0a00_0000 + i as u128, u32::MAX as u128),
    ])
}

fn packet_to(i: u32) -> Flow {
    key(&[
        (FieldId::EthType, 0x800),
        (FieldId::IpDst, 0x0a00_0000 + i as u128),
    ])
}

/// Every bucket is where a lookup looks for it, and the counts are right.
fn check_shards(c: &Classifier<u32>) {
    for st in &c.subtables {
        st.buckets.check();
        let rules: usize = st.buckets.iter().map(|b| b.entries.len()).sum();
        assert_eq!(rules, st.n_rules);
    }
}

/// How many of `b`'s shards (of its only subtable) are not `a`'s.
fn unshared(a: &Classifier<u32>, b: &Classifier<u32>) -> usize {
    b.subtables[0].buckets.unshared(&a.subtables[0].buckets)
}

#[test]
fn an_edit_after_a_clone_copies_a_shard_not_the_subtable() {
    const N: u32 = 10_000;
    let mut c: Classifier<u32> = Classifier::new();
    for i in 0..N {
        c.insert(&host(i), 200, None, i);
    }
    let n_shards = c.subtables[0].buckets.n_shards();
    assert!(n_shards >= N as usize / SHARD_BUCKETS, "{n_shards} shards");
    check_shards(&c);

    let mut edited = c.clone();
    assert_eq!(edited.insert(&host(N), 200, None, N), None);
    // The shard the rule went into, and the two halves of the one split because the
    // subtable grew: whatever the subtable's size (tests use shards of one bucket).
    assert!(
        unshared(&c, &edited) <= 3,
        "{} copied",
        unshared(&c, &edited)
    );
    assert_eq!(edited.remove(&host(17), 200), Some(17));
    assert!(unshared(&c, &edited) <= 5);
    *edited.find_exact_mut(&host(18), 200).unwrap() = 1_000_018;
    assert!(unshared(&c, &edited) <= 7);
    check_shards(&edited);

    // The original still answers as before the edits.
    assert_eq!(c.len(), N as usize);
    for i in 0..N {
        assert_eq!(c.lookup(&packet_to(i), &mut Flow::default()), Some(&i));
    }
    assert_eq!(c.lookup(&packet_to(N), &mut Flow::default()), None);
    // And the copy as after them.
    assert_eq!(edited.len(), N as usize);
    assert_eq!(edited.lookup(&packet_to(N), &mut Flow::default()), Some(&N));
    assert_eq!(edited.lookup(&packet_to(17), &mut Flow::default()), None);
    assert_eq!(
        edited.lookup(&packet_to(18), &mut Flow::default()),
        Some(&1_000_018)
    );
}

#[test]
fn shards_split_and_merge_under_snapshots() {
    const N: u32 = 20_000;
    // Addresses in a scrambled order, and a second priority on every fifth (a bucket is
    // not a rule).
    let order: Vec<u32> = (0..N).map(|i| i * 7_919 % N).collect();
    let lower = |i: u32| i.is_multiple_of(5).then_some(i + 100_000);
    let mut c: Classifier<u32> = Classifier::new();
    // Snapshots taken along the way, with which addresses each holds, so that splits and
    // merges meet shared shards.
    let mut snapshots: Vec<(Classifier<u32>, Vec<bool>)> = Vec::new();
    let mut live = vec![false; N as usize];
    for (n, &i) in order.iter().enumerate() {
        c.insert(&host(i), 200, None, i);
        if let Some(r) = lower(i) {
            c.insert(&host(i), 100, None, r);
        }
        live[i as usize] = true;
        if n % 3_001 == 0 {
            snapshots.push((c.clone(), live.clone()));
        }
    }
    check_shards(&c);
    let most = c.subtables[0].buckets.n_shards();
    for (n, &i) in order.iter().enumerate().take(N as usize - 100) {
        assert_eq!(c.remove(&host(i), 200), Some(i));
        if let Some(r) = lower(i) {
            assert_eq!(c.remove(&host(i), 100), Some(r));
        }
        live[i as usize] = false;
        if n % 2_999 == 0 {
            snapshots.push((c.clone(), live.clone()));
        }
    }
    let fewest = c.subtables[0].buckets.n_shards();
    assert!(most * SHARD_BUCKETS >= N as usize, "{most} shards");
    assert!(fewest * SHARD_BUCKETS <= 4 * 100, "{fewest} shards");

    snapshots.push((c, live));
    for (c, holds) in &snapshots {
        check_shards(c);
        let live = || (0..N).filter(|&i| holds[i as usize]);
        let rules: usize = live().map(|i| 1 + lower(i).is_some() as usize).sum();
        assert_eq!(c.len(), rules);
        assert_eq!(c.iter().count(), rules);
        for i in live() {
            assert_eq!(c.lookup(&packet_to(i), &mut Flow::default()), Some(&i));
            assert_eq!(c.find_exact(&host(i), 100).map(|e| e.rule), lower(i));
        }
        for i in (0..N).filter(|&i| !holds[i as usize]).step_by(97) {
            assert_eq!(c.lookup(&packet_to(i), &mut Flow::default()), None);
            assert!(c.find_exact(&host(i), 200).is_none());
        }
    }
}

// ---- Property test against a linear scan -------------------------------------------

#[derive(Clone, Debug)]
struct TRule {
    m: Match,
    priority: u16,
    conj: Option<Vec<Conj>>,
    id: u32,
}

fn rank(mask: &Flow) -> (u32, [u64; FLOW_U64S]) {
    (mask.count_ones(), mask.w)
}

/// The specification, written as plainly as possible.
fn oracle(rules: &[TRule], key: &Flow) -> Option<u32> {
    let best_hard = |k: &Flow| {
        rules
            .iter()
            .filter(|r| r.conj.is_none() && r.m.matches(k))
            .max_by(|a, b| (a.priority, rank(&a.m.mask)).cmp(&(b.priority, rank(&b.m.mask))))
            .map(|r| r.id)
    };
    let matching: Vec<&TRule> = rules.iter().filter(|r| r.m.matches(key)).collect();
    let mut levels: Vec<u16> = matching.iter().map(|r| r.priority).collect();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    for p in levels {
        let hard: Vec<&&TRule> = matching
            .iter()
            .filter(|r| r.priority == p && r.conj.is_none())
            .collect();
        if let Some(r) = hard.iter().max_by_key(|r| rank(&r.m.mask)) {
            return Some(r.id);
        }
        let mut ids: Vec<u32> = Vec::new();
        let softs: Vec<&Conj> = matching
            .iter()
            .filter(|r| r.priority == p)
            .flat_map(|r| r.conj.iter().flatten())
            .collect();
        for c in &softs {
            let complete = (0..c.n_clauses).all(|k| {
                softs
                    .iter()
                    .any(|d| d.id == c.id && d.n_clauses == c.n_clauses && d.clause == k)
            });
            if complete {
                ids.push(c.id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let mut k = *key;
            k.set_conj_id(id);
            if let Some(r) = best_hard(&k) {
                return Some(r);
            }
        }
    }
    None
}

fn arb_match() -> impl Strategy<Value = Match> {
    (
        proptest::option::of(0u128..3),
        proptest::option::of((
            0u128..4,
            prop_oneof![Just(0xffu128), Just(0xf0), Just(0x0f)],
        )),
        proptest::option::of((
            0u128..4,
            prop_oneof![Just(0xffffu128), Just(0xff00), Just(0x0001)],
        )),
        proptest::option::of(0u128..3),
    )
        .prop_map(|(port, src, dst, conj_id)| {
            let mut out = Match::CATCHALL;
            if let Some(p) = port {
                out.set(FieldId::InPort, p);
            }
            if let Some((v, mask)) = src {
                out.set_masked(FieldId::IpSrc, v * 0x11, mask);
            }
            if let Some((v, mask)) = dst {
                out.set_masked(FieldId::TpDst, v * 0x101, mask);
            }
            if let Some(c) = conj_id {
                out.set(FieldId::ConjId, c);
            }
            out
        })
}

fn arb_rules() -> impl Strategy<Value = Vec<TRule>> {
    proptest::collection::vec(
        (
            arb_match(),
            0u16..4,
            proptest::option::of(proptest::collection::vec((0u32..3, 0u8..3, 2u8..4), 1..3)),
        ),
        0..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (m, priority, conj))| TRule {
                m,
                priority,
                conj: conj.map(|cs| {
                    cs.into_iter()
                        .map(|(id, k, n)| Conj {
                            id,
                            clause: k % n,
                            n_clauses: n,
                        })
                        .collect()
                }),
                id: i as u32,
            })
            .collect()
    })
}

fn arb_key() -> impl Strategy<Value = Flow> {
    (0u32..3, 0u32..0x50, 0u16..0x400, any::<u64>()).prop_map(|(port, src, dst, noise)| {
        let mut k = Flow::ZERO;
        k.set_in_port(port);
        k.set_nw_src(src);
        k.set_tp_dst(dst);
        // Bits no rule looks at.
        k.set_metadata(noise);
        k
    })
}

fn build(rules: &[TRule]) -> (Classifier<u32>, Vec<TRule>) {
    let mut c = Classifier::new();
    let mut live: Vec<TRule> = Vec::new();
    for r in rules {
        let conj = r.conj.clone().map(Arc::from);
        c.insert(&r.m, r.priority, conj, r.id);
        live.retain(|l| !(l.m == r.m && l.priority == r.priority));
        live.push(r.clone());
    }
    (c, live)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn same_winner_as_linear_scan(rules in arb_rules(), keys in proptest::collection::vec(arb_key(), 1..20)) {
        let (c, live) = build(&rules);
        prop_assert_eq!(c.len(), live.len());
        for k in &keys {
            let mut wc = Flow::ZERO;
            prop_assert_eq!(c.lookup(k, &mut wc).copied(), oracle(&live, k));
        }
    }

    #[test]
    fn returned_mask_is_sufficient(rules in arb_rules(), k in arb_key(), others in proptest::collection::vec(arb_key(), 1..20)) {
        let (c, live) = build(&rules);
        let mut wc = Flow::ZERO;
        let winner = c.lookup(&k, &mut wc).copied();
        for o in &others {
            // `o` takes k's bits wherever the mask says they matter.
            let mut q = Flow::ZERO;
            for i in 0..FLOW_U64S {
                q.w[i] = (k.w[i] & wc.w[i]) | (o.w[i] & !wc.w[i]);
            }
            prop_assert_eq!(c.lookup(&q, &mut Flow::default()).copied(), winner);
            prop_assert_eq!(oracle(&live, &q), winner);
        }
    }

    #[test]
    fn removal_matches_linear_scan(rules in arb_rules(), remove in proptest::collection::vec(any::<prop::sample::Index>(), 0..20), keys in proptest::collection::vec(arb_key(), 1..10)) {
        let (mut c, mut live) = build(&rules);
        for ix in remove {
            if live.is_empty() { break; }
            let r = live.remove(ix.index(live.len()));
            prop_assert_eq!(c.remove(&r.m, r.priority), Some(r.id));
        }
        prop_assert_eq!(c.len(), live.len());
        for k in &keys {
            prop_assert_eq!(c.lookup(k, &mut Flow::default()).copied(), oracle(&live, k));
        }
    }
}

/// Soft entries as `insert` stores them.
fn soft_entries(lists: &[Vec<(u32, u8, u8)>]) -> Vec<Entry<()>> {
    lists
        .iter()
        .map(|cs| {
            let cs: Arc<[Conj]> = cs
                .iter()
                .map(|&(id, clause, n_clauses)| Conj {
                    id,
                    clause: clause % n_clauses.max(1),
                    n_clauses,
                })
                .collect::<Vec<_>>()
                .into();
            let conj = sorted_clauses(cs);
            Entry {
                priority: 100,
                fewest: fewest_clauses(&conj),
                conj: Some(conj),
                rule: (),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// The completion that follows the shortest entries finds what sorting every clause
    /// finds: any entries, any clauses (two of one conjunction on one entry, one-clause
    /// conjunctions, more entries than the short way takes).
    #[test]
    fn completion_by_shortest_entries_is_every_clause(
        lists in proptest::collection::vec(
            proptest::collection::vec((0u32..6, 0u8..4, 1u8..5), 1..12),
            1..11,
        ),
    ) {
        let entries = soft_entries(&lists);
        let (mut all, mut ids) = (Vec::new(), Vec::new());
        complete_conjunctions(entries.iter(), &mut all, &mut ids);
        let (mut all2, mut want) = (Vec::new(), Vec::new());
        every_clause(entries.iter().flat_map(|e| e.conj.as_deref().unwrap_or_default()), &mut all2, &mut want);
        prop_assert_eq!(ids, want);
    }

    /// The same with at most one clause of a conjunction per entry (the short way).
    #[test]
    fn completion_by_shortest_entries_with_one_clause_each(
        lists in proptest::collection::vec(
            proptest::collection::btree_map(0u32..8, (0u8..4, 2u8..5), 1..6),
            1..9,
        ),
    ) {
        let lists: Vec<Vec<_>> = lists
            .iter()
            .map(|m| m.iter().map(|(&id, &(k, n))| (id, k, n)).collect())
            .collect();
        let entries = soft_entries(&lists);
        let (mut all, mut ids) = (Vec::new(), Vec::new());
        complete_conjunctions(entries.iter(), &mut all, &mut ids);
        prop_assert!(all.is_empty(), "the short way");
        let (mut all2, mut want) = (Vec::new(), Vec::new());
        every_clause(entries.iter().flat_map(|e| e.conj.as_deref().unwrap_or_default()), &mut all2, &mut want);
        prop_assert_eq!(ids, want);
    }
}

#[test]
fn completion_takes_the_short_way_for_policy_shaped_clauses() {
    // A Pod and a peer each in ten policies' conjunctions, one port in one: the
    // conjunction of the port completes, and only it.
    let pod: Vec<_> = (0..10).map(|i| (i * 2, 0, 3)).collect();
    let peer: Vec<_> = (0..10).map(|i| (i * 2, 1, 3)).collect();
    let entries = soft_entries(&[pod, peer, vec![(8, 2, 3)]]);
    assert!(entries.iter().all(|e| e.fewest == 3));
    let (mut all, mut ids) = (Vec::new(), Vec::new());
    complete_conjunctions(entries.iter(), &mut all, &mut ids);
    assert_eq!(ids, vec![8]);
    assert!(all.is_empty(), "no clause was sorted");
}
