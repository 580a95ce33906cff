//! criterion benchmarks of the datapath core. Run: `cargo bench -p vswitch-benches`.
//! Results and the machine they ran on are in BENCHMARKS.md.

/// The switch's own allocator, so that what is measured is what vswitchd runs.
#[global_allocator]
static GLOBAL: vswitch::sys::Allocator = vswitch::sys::Allocator {};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vswitch::cls::Classifier;
use vswitch::ct::TupleFilter;
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
use vswitch_proto::net::MacAddr;
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

/// Local Pods of the node of the Services benchmarks (clients, and half the endpoints).
const PODS: u32 = 32;
/// Endpoints per Service.
const ENDPOINTS: u32 = 10;

/// The frame of [`k8s::syn_from_pod`]'s packet: a 64-byte SYN.
fn syn_frame(pod: u32, vip: &k8s::ClusterIp, sport: u16) -> Vec<u8> {
    let mut f = frame(
        true,
        64,
        k8s::pod_ip(pod).octets(),
        vip.ip.octets(),
        sport,
        vip.port,
    );
    let gw: MacAddr = k8s::GW_MAC.parse().expect("MAC");
    f[0..6].copy_from_slice(&gw.0);
    f[6..12].copy_from_slice(&MacAddr::for_ipv4(k8s::pod_ip(pod)).0);
    f[14 + 20 + 13] = 0x02;
    f
}

/// Connections the benchmarks cycle through: (client Pod, Service), drawn at random.
const CONNS: usize = 1024;

fn connections(n: u32) -> Vec<(u32, u32)> {
    // xorshift64: the same draw on every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..CONNS)
        .map(|_| ((next() % PODS as u64) as u32, (next() % n as u64) as u32))
        .collect()
}

/// The slow path of a new connection to a Service, against the number of Services (issue
/// 12: it must not grow with it). Each iteration takes the next of 1,024 connections
/// (a random local Pod to a random one of the `n` Services, its own source port) and
/// translates its first packet:
/// - `first_pass/N`: as it comes from the Pod (Classifier, SpoofGuard, ARPResponder,
///   Conntrack: ends in `ct(zone,nat)` and recirculation);
/// - `servicelb_pass/N`: as conntrack returns it, `+trk+new` (ConntrackState, then
///   ServiceLB: the Service's rule, its group, one endpoint's `ct(commit,nat(dst))`);
/// - `N`: both, one after the other (what the first packet costs in xlate up to the
///   endpoint's conntrack commit);
/// - `fastpath/N`: batches of 32 such packets, each a new connection (a new source port
///   each time), through the fast path with the real connection tracker. Every pass hits
///   the caches once they hold the Pods, Services and endpoints drawn: the Service's
///   select group is decided per packet in the datapath (`DpSelect`), so its megaflow
///   holds no 5-tuple. The tracker is emptied every 1,024 batches, outside the timing, so
///   that every packet stays a new connection; the caches are kept (a switch's steady
///   state). The upcalls printed are the caches' filling.
fn service_xlate(c: &mut Criterion) {
    let mut g = c.benchmark_group("service_xlate");
    g.throughput(Throughput::Elements(1));
    let new = ct_state::TRK | ct_state::NEW;
    for n in [10u32, 100, 1_000, 10_000] {
        let mut bridge = k8s::bridge(PODS);
        let vips = k8s::add_services(&mut bridge, PODS, n, ENDPOINTS);
        let pipe = bridge.pipeline().clone();
        let mac = bridge.mac_table();
        let conns = connections(n);
        let mut firsts = Vec::with_capacity(CONNS);
        let mut seconds = Vec::with_capacity(CONNS);
        for (i, &(pod, svc)) in conns.iter().enumerate() {
            let vip = &vips[svc as usize];
            let sport = 32768 + i as u16;
            let key = k8s::syn_from_pod(pod, vip.ip, vip.port, sport);
            // The same key as the fast path extracts from the packet.
            let mut extracted = Flow::ZERO;
            extracted.set_in_port(k8s::pod_port(pod));
            extract(
                &syn_frame(pod, vip, sport),
                &mut extracted,
                &mut Layers::default(),
            )
            .expect("a valid frame");
            assert_eq!(key, extracted);
            let t = bridge.trace(&key, 0);
            let second = t
                .recirculated(new)
                .unwrap_or_else(|| panic!("tracked: {}", t.datapath_actions()));
            // The ServiceLB pass ends in one of this Service's endpoints, committed.
            let t2 = bridge.trace(&second, 0);
            let acts = t2.datapath_actions();
            let to_endpoint = vip
                .endpoints
                .iter()
                .any(|ip| acts.contains(&format!("nat(dst={ip}:{})", k8s::ENDPOINT_PORT)));
            assert!(to_endpoint && acts.contains("commit"), "{n}: {acts}");
            assert!(
                t2.matched().any(|(table, _)| table == 5),
                "ServiceLB: {acts}"
            );
            firsts.push(key);
            seconds.push(second);
        }
        g.bench_with_input(BenchmarkId::new("first_pass", n), &firsts, |b, keys| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (CONNS - 1);
                black_box(xlate::xlate(&pipe, &mac, &keys[i], 0).actions.len())
            })
        });
        g.bench_with_input(
            BenchmarkId::new("servicelb_pass", n),
            &seconds,
            |b, keys| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & (CONNS - 1);
                    black_box(xlate::xlate(&pipe, &mac, &keys[i], 0).actions.len())
                })
            },
        );
        g.bench_with_input(BenchmarkId::from_parameter(n), &(), |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (CONNS - 1);
                let a = xlate::xlate(&pipe, &mac, &firsts[i], 0).actions.len();
                black_box(a + xlate::xlate(&pipe, &mac, &seconds[i], 0).actions.len())
            })
        });
        service_fastpath(&mut g, n, &bridge, &vips, &conns);
    }
    g.finish();
}

fn service_fastpath(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: u32,
    bridge: &Bridge,
    vips: &[k8s::ClusterIp],
    conns: &[(u32, u32)],
) {
    /// Batches between two emptyings of the tracker and the caches; every packet of
    /// those has its own source port, so is a new connection.
    const ROUND: u64 = 1024;
    let frames: Vec<(u32, Vec<u8>)> = conns
        .iter()
        .map(|&(pod, svc)| (k8s::pod_port(pod), syn_frame(pod, &vips[svc as usize], 0)))
        .collect();
    let (tracker, mut fp) = vswitch_benches::tracked_fast_path(bridge);
    let mut batch: Vec<Packet> = (0..BATCH).map(|_| Packet::with_capacity(2048)).collect();
    let mut sink = Null(0);
    let mut sent = 0u64;
    let mut batches = 0u64;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("fastpath", n), |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                if batches.is_multiple_of(ROUND) {
                    tracker.flush(None, &TupleFilter::default());
                }
                for (k, p) in batch.iter_mut().enumerate() {
                    let c = batches * BATCH as u64 + k as u64;
                    let (port, f) = &frames[c as usize % CONNS];
                    p.set_frame(f);
                    p.in_port = *port;
                    let sport = 1024 + (c % (ROUND * BATCH as u64)) as u16;
                    p.data_mut()[34..36].copy_from_slice(&sport.to_be_bytes());
                }
                let before = sink.0;
                let start = Instant::now();
                fp.process(&mut batch, 1, &mut sink);
                took += start.elapsed();
                sent += (sink.0 != before) as u64;
                batches += 1;
            }
            took
        })
    });
    g.throughput(Throughput::Elements(1));
    let st = fp.stats();
    eprintln!(
        "service_xlate/fastpath/{n}: {batches} batches, {} packets: {} EMC hits, {} megaflow hits, {} upcalls, {} recirculations, {} dropped, {} flushes",
        st.packets,
        st.emc_hits,
        st.megaflow_hits,
        st.upcalls,
        st.recirculations,
        st.dropped_total(),
        st.flushes,
    );
    // Three passes a packet (the Pod's, ServiceLB's, the endpoint's); more for a Pod
    // that reached itself (hairpin: its source translated too).
    assert!(st.packets >= 3 * batches * BATCH as u64, "{st:?}");
    assert_eq!(st.dropped_total(), 0, "{st:?}");
    assert_eq!(sent, batches, "every batch sends");
}

/// The policy check of a new connection against the number of NetworkPolicies (issue 13:
/// it must not grow with it). `k8s::add_policies` installs N policies over the node's 32
/// Pods (each local Pod selected by about N / 100 of them, isolated both ways) and 1,000
/// remote Pods. Each iteration takes the next of 1,024 connections drawn beforehand among
/// those the policies allow between two local Pods (each its own source port) and
/// translates its first packet as conntrack returns it, `+trk+new`: ConntrackState,
/// EgressPolicy (the sender's isolation: the conjunction of its Pod, the peer's address,
/// the port), L3Forwarding, IngressPolicy (the receiver's), ConntrackCommit, Output:
/// `policy_pass/N`. `first_pass/N` is the Pod's pass before it (ends in `ct`), which
/// policies do not touch.
fn policy_xlate(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_xlate");
    g.throughput(Throughput::Elements(1));
    let new = ct_state::TRK | ct_state::NEW;
    for n in [10u32, 100, 1_000] {
        let mut bridge = k8s::bridge(PODS);
        let allowed = k8s::add_policies(&mut bridge, PODS, n);
        assert!(!allowed.is_empty(), "{n}: connections to measure");
        let pipe = bridge.pipeline().clone();
        let mac = bridge.mac_table();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut firsts = Vec::with_capacity(CONNS);
        let mut seconds = Vec::with_capacity(CONNS);
        for i in 0..CONNS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = allowed[(x % allowed.len() as u64) as usize];
            let key = k8s::syn_from_pod(a.from, k8s::pod_ip(a.to), a.port, 32768 + i as u16);
            let t = bridge.trace(&key, 0);
            let second = t
                .recirculated(new)
                .unwrap_or_else(|| panic!("tracked: {}", t.datapath_actions()));
            let t2 = bridge.trace(&second, 0);
            let acts = t2.datapath_actions();
            let tables: Vec<u8> = t2.matched().map(|(table, _)| table).collect();
            assert!(
                tables.contains(&6) && tables.contains(&8),
                "{n}: both policy tables: {tables:?}"
            );
            assert!(
                acts.contains("commit") && acts.contains(&format!("{}", k8s::pod_port(a.to))),
                "{n}: {a:?} allowed and delivered: {acts}"
            );
            firsts.push(key);
            seconds.push(second);
        }
        // The same connection's port one off: no rule allows it (the receiver's deny).
        let a = allowed[0];
        let denied = k8s::syn_from_pod(a.from, k8s::pod_ip(a.to), a.port + 1, 40000);
        let t = bridge.trace(&denied, 0);
        if let Some(second) = t.recirculated(new) {
            let acts = bridge.trace(&second, 0).datapath_actions();
            assert!(!acts.contains("commit"), "{n}: denied: {acts}");
        }
        eprintln!(
            "policy_xlate/{n}: {} rules in the pipeline, {} allowed pairs",
            pipe.n_rules(),
            allowed.len()
        );
        g.bench_with_input(BenchmarkId::new("first_pass", n), &firsts, |b, keys| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (CONNS - 1);
                black_box(xlate::xlate(&pipe, &mac, &keys[i], 0).actions.len())
            })
        });
        g.bench_with_input(BenchmarkId::new("policy_pass", n), &seconds, |b, keys| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (CONNS - 1);
                black_box(xlate::xlate(&pipe, &mac, &keys[i], 0).actions.len())
            })
        });
    }
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
    service_xlate,
    policy_xlate,
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
