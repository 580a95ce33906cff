//! criterion benchmarks of the connection tracker, one worker: a packet of an established
//! connection (UDP, and TCP with its window checks) in a table of 100,000 connections,
//! and the first packet of a new connection committed (its entry and index items made).
//! Run: `cargo bench -p vswitch-benches --bench conntrack`. Targets (issue 11): at most
//! 40 ns per established packet, 300 ns per new connection.

/// The switch's own allocator, so that what is measured is what vswitchd runs.
#[global_allocator]
static GLOBAL: vswitch::sys::Allocator = vswitch::sys::Allocator {};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use vswitch::ct::{Config, CtWorker, Tracker};
use vswitch::dp::action::DpCt;
use vswitch::dp::conntrack::Conntrack;
use vswitch::dp::packet::Packet;
use vswitch::flow::{Layers, extract};
use vswitch_benches::frame;
use vswitch_proto::flow::Flow;

fn ct(commit: bool) -> DpCt {
    DpCt {
        zone: 0xfff0,
        commit,
        force: false,
        nat: None,
        mark: None,
        label: None,
        alg: None,
        recirc: None,
    }
}

struct Pkt {
    pkt: Packet,
    key: Flow,
    layers: Layers,
}

fn pkt(tcp: bool, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Pkt {
    let f = frame(tcp, 64, src, dst, sport, dport);
    let pkt = Packet::from_frame(&f, 1);
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(pkt.data(), &mut key, &mut layers).unwrap();
    Pkt { pkt, key, layers }
}

fn track(w: &mut CtWorker, p: &mut Pkt, c: &DpCt) -> u16 {
    w.track(&mut p.pkt, &p.layers, &p.key, c, 1).state
}

fn tracker(cap: u32) -> Tracker {
    Tracker::open(
        &Config {
            capacity: cap,
            ..Config::default()
        },
        0,
    )
    .unwrap()
    .0
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(1));
    let t = tracker(1 << 18);
    let mut w = t.worker(1);
    // 100,000 replied UDP connections.
    for i in 0..100_000u32 {
        let src = [10, 244, (i >> 16) as u8 + 1, (i >> 8) as u8];
        let sport = 1024 + (i & 0xff) as u16;
        let mut o = pkt(false, src, [10, 244, 9, 9], sport, 53);
        track(&mut w, &mut o, &ct(true));
        let mut r = pkt(false, [10, 244, 9, 9], src, 53, sport);
        track(&mut w, &mut r, &ct(false));
    }
    let mut o = pkt(false, [10, 244, 1, 0x20], [10, 244, 9, 9], 1024 + 7, 53);
    assert_eq!(
        track(&mut w, &mut o, &ct(false)) & 0x02,
        0x02,
        "established"
    );
    g.bench_function("established_udp", |b| {
        b.iter(|| black_box(track(&mut w, &mut o, &ct(false))))
    });
    // A TCP connection through its handshake; then the same ACK again and again (a
    // window check and a state update each time).
    let (a, s) = ([10, 244, 1, 2], [10, 244, 1, 3]);
    let mut syn = pkt(true, a, s, 40000, 80);
    syn.pkt.data_mut()[14 + 20 + 13] = 0x02;
    track(&mut w, &mut syn, &ct(true));
    let mut synack = pkt(true, s, a, 80, 40000);
    synack.pkt.data_mut()[14 + 20 + 13] = 0x12;
    synack.pkt.data_mut()[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&1u32.to_be_bytes());
    track(&mut w, &mut synack, &ct(false));
    let mut ack = pkt(true, a, s, 40000, 80);
    ack.pkt.data_mut()[14 + 20 + 13] = 0x10;
    ack.pkt.data_mut()[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&1u32.to_be_bytes());
    ack.pkt.data_mut()[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&1u32.to_be_bytes());
    ack.pkt.data_mut()[14 + 20 + 14..14 + 20 + 16].copy_from_slice(&64000u16.to_be_bytes());
    let st = track(&mut w, &mut ack, &ct(false));
    g.bench_function("established_tcp", |b| {
        b.iter(|| black_box(track(&mut w, &mut ack, &ct(false))))
    });
    eprintln!("tcp state after the handshake: {st:#x}");
    g.finish();
}

fn new_connection(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(1));
    // A table that held as many connections before (its pages touched, its index grown),
    // as on a busy node; and a fresh one, where first touches of memory add page faults.
    for (name, warm) in [
        ("new_udp_committed", true),
        ("new_udp_committed_fresh_table", false),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let t = tracker((n as u32).max(1024));
                let mut w = t.worker(1);
                let make = |salt: u8| -> Vec<Pkt> {
                    (0..n as u32)
                        .map(|i| {
                            pkt(
                                false,
                                [
                                    10 + salt,
                                    (i >> 24) as u8 | 0x80,
                                    (i >> 16) as u8,
                                    (i >> 8) as u8,
                                ],
                                [10, 244, 9, 9],
                                1024 + (i & 0xff) as u16,
                                53,
                            )
                        })
                        .collect()
                };
                let commit = ct(true);
                if warm {
                    for p in &mut make(1) {
                        track(&mut w, p, &commit);
                    }
                    t.flush(None, &vswitch::ct::TupleFilter::default());
                }
                let mut pkts = make(0);
                let start = Instant::now();
                for p in &mut pkts {
                    black_box(track(&mut w, p, &commit));
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = established, new_connection
}
criterion_main!(benches);
