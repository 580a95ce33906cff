//! criterion benchmarks of the datapath core. Run: `cargo bench -p vswitch-benches`.
//! Results and the machine they ran on are in BENCHMARKS.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use vswitch::cls::Classifier;
use vswitch::dp::emc::Emc;
use vswitch::dp::megaflow::{Megaflow, MegaflowCache};
use vswitch::dp::packet::Packet;
use vswitch::dp::{BATCH, FastPath, FastPathConfig, Sink, execute_actions};
use vswitch::flow::{Layers, extract, extract_vxlan, flow_hash};
use vswitch::ofproto::{Bridge, PortDesc, xlate};
use vswitch_benches::{frame, vxlan};
use vswitch_proto::field::FieldId;
use vswitch_proto::flow::{Flow, ct_state};
use vswitch_proto::flowmod::{FlowSpec, Usage};
use vswitch_proto::matching::Match;
use vswitch_proto::text::{NoPortNames, parse_flow, parse_match};
use vswitch_tests::k8s;

fn key_extraction(c: &mut Criterion) {
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    let udp64 = frame(false, 64, [10, 244, 1, 2], [10, 244, 1, 3], 5000, 53);
    let tcp1500 = frame(true, 1514, [10, 244, 1, 2], [10, 244, 1, 3], 40000, 80);
    let vx = vxlan(
        &frame(true, 1464, [10, 244, 1, 2], [10, 244, 2, 2], 40000, 80),
        1,
    );
    for (name, f) in [("udp_64B", &udp64), ("tcp_1500B", &tcp1500)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut k = Flow::ZERO;
                let mut l = Layers::default();
                let _ = extract(black_box(f), &mut k, &mut l);
                black_box(k)
            })
        });
    }
    g.bench_function("vxlan_tcp_1500B", |b| {
        b.iter(|| {
            let mut k = Flow::ZERO;
            let mut l = Layers::default();
            let _ = extract_vxlan(black_box(&vx), &mut k, &mut l);
            black_box(k)
        })
    });
    g.finish();
}

struct Null(u64);
impl Sink for Null {
    fn output(&mut self, port: u32, pkt: &Packet) {
        self.0 = self.0.wrapping_add(port as u64 + pkt.len() as u64);
    }
}

fn bridge_with(lines: &[String]) -> Bridge {
    let mut b = Bridge::new("br0");
    b.set_ports(
        (1..=8)
            .map(|no| PortDesc {
                no,
                name: format!("p{no}"),
                no_flood: false,
            })
            .collect(),
    );
    let specs: Vec<FlowSpec> = lines
        .iter()
        .map(|l| parse_flow(l, Usage::Add, &NoPortNames).unwrap())
        .collect();
    b.add_flows(&specs, 0).unwrap();
    b
}

/// Whole fast path on a batch of 32 packets of one flow: extraction, hash, exact-match
/// hit, then the actions. Two action lists: a routed hop (rewrite both MACs, decrement
/// the TTL with its checksum update, output) and a plain output.
fn exact_match_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("fastpath");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, flow) in [
        (
            "emc_hit_routed_batch32",
            "in_port=1,ip,actions=set_field:0a:00:00:00:00:01->eth_src,set_field:02:00:00:00:00:03->eth_dst,dec_ttl,output:2",
        ),
        ("emc_hit_output_batch32", "in_port=1,ip,actions=output:2"),
    ] {
        let b = bridge_with(&[flow.to_string()]);
        let mut fp = FastPath::new(
            b.pipeline_handle(),
            b.mac_table(),
            FastPathConfig::default(),
        );
        let f = frame(false, 64, [10, 244, 1, 2], [10, 244, 1, 3], 5000, 53);
        let mut batch: Vec<Packet> = (0..BATCH).map(|_| Packet::from_frame(&f, 1)).collect();
        let mut sink = Null(0);
        fp.process(&mut batch, 1, &mut sink);
        g.bench_function(name, |bch| {
            bch.iter(|| {
                // The TTL decrements each round; reset it so it never reaches 1.
                for p in batch.iter_mut() {
                    p.data_mut()[22] = 64;
                }
                fp.process(&mut batch, 2, &mut sink);
            })
        });
        // Two flows: the frames as built, then as the first round rewrote their MACs.
        assert!(fp.stats().upcalls <= 2, "{name}: {:?}", fp.stats());
    }
    g.finish();
}

/// The exact-match cache and the actions alone, on a key extracted once: hash, lookup,
/// then the routed hop's actions (rewrite both MACs, decrement the TTL, output).
fn exact_match_hit_alone(c: &mut Criterion) {
    let b = bridge_with(&[
        "in_port=1,ip,actions=set_field:0a:00:00:00:00:01->eth_src,set_field:02:00:00:00:00:03->eth_dst,dec_ttl,output:2".into(),
    ]);
    let f = frame(false, 64, [10, 244, 1, 2], [10, 244, 1, 3], 5000, 53);
    let mut key = Flow::ZERO;
    key.set_in_port(1);
    let mut layers = Layers::default();
    extract(&f, &mut key, &mut layers).unwrap();
    let out = xlate::xlate(b.pipeline(), &b.mac_table(), &key, 0);
    let mf = Arc::new(Megaflow::new(
        &key,
        out.mask,
        out.actions,
        out.stats,
        out.macs,
        0,
    ));
    let mut emc = Emc::new(8192);
    let seed = 0x5eed;
    emc.insert(&key, flow_hash(&key, seed), mf);
    let mut pkt = Packet::from_frame(&f, 1);
    let mut sink = Null(0);
    let mut g = c.benchmark_group("fastpath");
    g.throughput(Throughput::Elements(1));
    g.bench_function("emc_hit_routed_without_extraction", |bch| {
        bch.iter(|| {
            pkt.data_mut()[22] = 64;
            let k = black_box(&key);
            let mf = emc.lookup(k, flow_hash(k, seed)).unwrap();
            let mut l = layers;
            black_box(execute_actions(&mf.actions, &mut pkt, k, &mut l, &mut sink, 1).sent)
        })
    });
    g.finish();
}

/// A megaflow cache with `n` subtables (distinct masks), looked up with a key that hits in
/// the last one probed (the worst case).
fn megaflow_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("megaflow_hit");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 10, 100] {
        let mut cache = MegaflowCache::new(1 << 20, 0x1234);
        let mut key = Flow::ZERO;
        key.set_in_port(1);
        key.set_dl_type(0x0800);
        key.set_nw_src(0x0af4_0102);
        key.set_nw_dst(0x0af4_0103);
        key.set_nw_proto(17);
        key.set_tp_src(5000);
        key.set_tp_dst(53);
        for i in 0..n {
            // Masks differ in how much of nw_src they cover; each subtable holds 100 flows,
            // and only the last subtable holds a flow matching `key`.
            let mut mask = Flow::ZERO;
            mask.set_in_port(u32::MAX);
            mask.set_dl_type(0xffff);
            mask.set_nw_dst(u32::MAX);
            mask.set_nw_src(u32::MAX << (i % 32));
            let extra = i / 32;
            mask.set_tp_dst(if extra >= 1 { 0xffff } else { 0 });
            mask.set_tp_src(if extra >= 2 { 0xffff } else { 0 });
            mask.set_nw_proto(if extra >= 3 { 0xff } else { 0 });
            for j in 0..100u32 {
                let mut k = key;
                if i + 1 != n || j != 0 {
                    k.set_nw_dst(0x0b00_0000 + j);
                }
                let _ = cache.insert(Megaflow::new(
                    &k,
                    mask,
                    vec![vswitch::dp::action::DpAction::Output(2)],
                    vec![],
                    vec![],
                    0,
                ));
            }
        }
        assert_eq!(cache.n_subtables(), n);
        assert!(cache.lookup(&key).is_some());
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}_subtables")),
            &key,
            |b, key| b.iter(|| black_box(cache.lookup(black_box(key)).is_some())),
        );
    }
    g.finish();
}

/// The interpreter on the daemon's own Kubernetes pipeline (`vswitch_tests::k8s`: the
/// node, 32 Pods, a remote node): a Pod to another Pod of the node, routed through the
/// gateway's MAC, and a Pod to a Pod of the other node, into the tunnel. Each is the first
/// packet of its connection, in its two passes: as the Pod sent it (tables 0-3, ending in
/// conntrack) and as conntrack returns it, `+trk+new` (tables 4-10): all eleven tables.
fn interpreter(c: &mut Criterion) {
    let b = k8s::bridge(32);
    let same = parse_match("in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.1.3,nw_dst=10.244.1.4,nw_ttl=64,tp_src=40000,tp_dst=8080", &NoPortNames).unwrap().flow;
    let across = parse_match("in_port=3,tcp,dl_src=0a:58:0a:f4:01:03,dl_dst=0a:58:0a:f4:01:01,nw_src=10.244.1.3,nw_dst=10.244.2.9,nw_ttl=64,tp_src=40000,tp_dst=8080", &NoPortNames).unwrap().flow;
    let pipe = b.pipeline().clone();
    let mac = b.mac_table();
    let passes = |f: &Flow| -> [Flow; 2] {
        let tracked = b
            .trace(f, 0)
            .recirculated(ct_state::TRK | ct_state::NEW)
            .expect("the first pass ends in conntrack");
        [*f, tracked]
    };
    let (same, across) = (passes(&same), passes(&across));
    for p in [&same, &across] {
        let tables: usize = p
            .iter()
            .map(|f| xlate::xlate(&pipe, &mac, f, 0).stats.len())
            .sum();
        assert_eq!(tables, 11, "every table");
    }
    let both = |p: &[Flow; 2]| {
        xlate::xlate(&pipe, &mac, black_box(&p[0]), 0).actions.len()
            + xlate::xlate(&pipe, &mac, black_box(&p[1]), 0).actions.len()
    };
    let mut g = c.benchmark_group("xlate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("k8s_pipeline_same_node", |bch| {
        bch.iter(|| black_box(both(&same)))
    });
    g.bench_function("k8s_pipeline_across_nodes", |bch| {
        bch.iter(|| black_box(both(&across)))
    });
    g.finish();
}

/// Rules like a node's forwarding table: one /32 rule per address in one subtable, plus a
/// few other shapes (a /24 per remote node, an in_port rule, a catch-all).
fn rules(n: u32) -> Vec<(Match, u16)> {
    let mut out = Vec::with_capacity(n as usize + 3);
    for i in 0..n {
        let mut m = Match::CATCHALL;
        m.set(FieldId::EthType, 0x0800);
        m.set(FieldId::IpDst, (0x0a00_0000 + i) as u128);
        out.push((m, 200));
    }
    let mut m = Match::CATCHALL;
    m.set(FieldId::EthType, 0x0800);
    m.set_masked(FieldId::IpDst, 0x0b00_0000, 0xffff_ff00);
    out.push((m, 150));
    let mut m = Match::CATCHALL;
    m.set(FieldId::InPort, 7);
    out.push((m, 100));
    out.push((Match::CATCHALL, 0));
    out
}

fn classifier(c: &mut Criterion) {
    let mut g = c.benchmark_group("classifier_lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1_000u32, 10_000, 100_000] {
        let mut cls: Classifier<u32> = Classifier::new();
        for (i, (m, p)) in rules(n).into_iter().enumerate() {
            cls.insert(&m, p, None, i as u32);
        }
        let keys: Vec<Flow> = (0..1024u32)
            .map(|i| {
                let mut k = Flow::ZERO;
                k.set_dl_type(0x0800);
                k.set_nw_dst(0x0a00_0000 + (i * 7919) % n);
                k
            })
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, keys| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                let mut wc = Flow::ZERO;
                black_box(cls.lookup(&keys[i], &mut wc).copied())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("classifier_insert");
    g.sample_size(10);
    let rs = Arc::new(rules(100_000));
    g.throughput(Throughput::Elements(rs.len() as u64));
    g.bench_function("100k_rules", |b| {
        b.iter(|| {
            let mut cls: Classifier<u32> = Classifier::new();
            for (i, (m, p)) in rs.iter().enumerate() {
                cls.insert(m, *p, None, i as u32);
            }
            black_box(cls.len())
        })
    });
    let specs: Vec<FlowSpec> = rs
        .iter()
        .map(|(m, p)| FlowSpec {
            table: Some(0),
            priority: *p,
            matching: *m,
            actions: Some(vec![vswitch_proto::Action::Output {
                port: 2,
                max_len: None,
            }]),
            ..FlowSpec::default()
        })
        .collect();
    g.bench_function("100k_flows_via_bridge", |b| {
        b.iter(|| {
            let mut br = Bridge::new("br0");
            br.add_flows(&specs, 0).unwrap();
            black_box(br.pipeline().n_rules())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    key_extraction,
    exact_match_hit,
    exact_match_hit_alone,
    megaflow_hit,
    interpreter,
    classifier
);

/// One edit to a table just published: the snapshot and the master copy share everything,
/// as after `Bridge::publish`, and the master copy takes one insert or one remove into its
/// largest subtable (a node's per-Pod or per-node table). What this costs is what one
/// Kubernetes object's change costs at that scale. The copy is dropped outside the timing.
fn cls_edit(c: &mut Criterion) {
    let mut g = c.benchmark_group("cls_edit");
    g.throughput(Throughput::Elements(1));
    for n in [1_000u32, 100_000] {
        let mut published: Classifier<u32> = Classifier::new();
        for (i, (m, p)) in rules(n).into_iter().enumerate() {
            published.insert(&m, p, None, i as u32);
        }
        let mut fresh = Match::CATCHALL;
        fresh.set(FieldId::EthType, 0x0800);
        fresh.set(FieldId::IpDst, (0x0a00_0000 + n) as u128);
        g.bench_function(BenchmarkId::new("insert_after_clone", n), |b| {
            b.iter_batched_ref(
                || published.clone(),
                |cls| black_box(cls.insert(&fresh, 200, None, u32::MAX)),
                criterion::BatchSize::SmallInput,
            )
        });
        let (old, p) = rules(n)[n as usize / 2];
        g.bench_function(BenchmarkId::new("remove_after_clone", n), |b| {
            b.iter_batched_ref(
                || published.clone(),
                |cls| black_box(cls.remove(&old, p)),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(edits, cls_edit);
criterion_main!(benches, edits);
