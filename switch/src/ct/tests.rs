use super::*;
use crate::flow::extract;
use etherparse::PacketBuilder;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Packet {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    Packet::from_frame(&v, 1)
}

fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: &str,
) -> Packet {
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(ack);
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    Packet::from_frame(&v, 1)
}

fn ping(src: [u8; 4], dst: [u8; 4], id: u16, reply: bool) -> Packet {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(id, 1)
    } else {
        b.icmpv4_echo_request(id, 1)
    };
    let mut v = Vec::new();
    b.write(&mut v, b"ping").unwrap();
    Packet::from_frame(&v, 1)
}

fn ct(zone: u16, commit: bool) -> DpCt {
    DpCt {
        zone,
        commit,
        force: false,
        nat: None,
        mark: None,
        label: None,
        alg: None,
        recirc: None,
    }
}

fn track(w: &mut CtWorker, pkt: &mut Packet, c: &DpCt, now: u64) -> CtResult {
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(pkt.data(), &mut key, &mut layers).unwrap();
    w.track(pkt, &layers, &key, c, now)
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

use ct_state::{EST, INV, NEW, REL, RPL, TRK};

#[test]
fn udp_new_then_established_only_after_a_reply() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let r = track(&mut w, &mut udp(A, B, 1000, 53), &ct(0, false), 0);
    assert_eq!(r.state, TRK | NEW);
    assert_eq!(t.stats().connections, 0, "no commit, no entry");
    let r = track(&mut w, &mut udp(A, B, 1000, 53), &ct(0, true), 0);
    assert_eq!(r.state, TRK | NEW);
    assert_eq!(r.orig.unwrap().sport, 1000);
    let r = track(&mut w, &mut udp(A, B, 1000, 53), &ct(0, false), 1);
    assert_eq!(r.state, TRK | NEW, "still no reply");
    let r = track(&mut w, &mut udp(B, A, 53, 1000), &ct(0, false), 2);
    assert_eq!(r.state, TRK | EST | RPL);
    assert_eq!(r.orig.unwrap().src, u32::from_be_bytes(A));
    let r = track(&mut w, &mut udp(A, B, 1000, 53), &ct(0, false), 3);
    assert_eq!(r.state, TRK | EST);
    // Another zone knows nothing of it.
    let r = track(&mut w, &mut udp(B, A, 53, 1000), &ct(7, false), 3);
    assert_eq!(r.state, TRK | NEW);
    assert_eq!(r.zone, 7);
    let d = t.dump(None, 3);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].to_string(),
        "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1000,dport=53),reply=(src=10.0.0.2,dst=10.0.0.1,sport=53,dport=1000)"
    );
}

#[test]
fn udp_expires_after_its_timeout_and_a_reply_extends_it() {
    let t = tracker(64);
    let mut w = t.worker(1);
    track(&mut w, &mut udp(A, B, 1000, 53), &ct(0, true), 0);
    // Unreplied: 30 s.
    let r = track(&mut w, &mut udp(B, A, 53, 1000), &ct(0, false), 29_000);
    assert_eq!(r.state, TRK | EST | RPL);
    // Replied: 120 s from the last packet.
    let r = track(
        &mut w,
        &mut udp(A, B, 1000, 53),
        &ct(0, false),
        29_000 + 119_000,
    );
    assert_eq!(r.state, TRK | EST);
    let r = track(
        &mut w,
        &mut udp(B, A, 53, 1000),
        &ct(0, false),
        148_000 + 121_000,
    );
    assert_eq!(r.state, TRK | NEW, "expired: a new connection");
    assert_eq!(
        t.sweep(148_000 + 121_000),
        0,
        "already removed by the lookup"
    );
    assert_eq!(t.stats().connections, 0);
    // The sweep removes what nobody looks up.
    track(&mut w, &mut udp(A, B, 2000, 53), &ct(0, true), 300_000);
    assert_eq!(t.sweep(300_000 + 29_000), 0);
    assert_eq!(t.sweep(300_000 + 31_000), 1);
    assert_eq!(t.stats().expired, 2);
}

#[test]
fn zones_are_kept_apart() {
    let t = tracker(64);
    let mut w = t.worker(1);
    track(&mut w, &mut udp(A, B, 1000, 53), &ct(1, true), 0);
    track(&mut w, &mut udp(A, B, 1000, 53), &ct(2, true), 0);
    assert_eq!(t.stats().connections, 2);
    track(&mut w, &mut udp(B, A, 53, 1000), &ct(1, false), 0);
    assert!(t.dump(Some(1), 0)[0].seen_reply);
    assert!(!t.dump(Some(2), 0)[0].seen_reply);
    assert_eq!(t.flush(Some(2), &TupleFilter::default()), 1);
    assert_eq!(t.dump(None, 0).len(), 1);
}

#[test]
fn a_full_table_evicts_unreplied_connections_first_and_counts_refusals() {
    let t = tracker(64);
    t.set_limit(2).unwrap();
    let mut w = t.worker(1);
    // One established (replied) and one unreplied.
    track(&mut w, &mut udp(A, B, 1, 53), &ct(0, true), 0);
    track(&mut w, &mut udp(B, A, 53, 1), &ct(0, false), 0);
    track(&mut w, &mut udp(A, B, 2, 53), &ct(0, true), 0);
    // A third: the unreplied one goes.
    let r = track(&mut w, &mut udp(A, B, 3, 53), &ct(0, true), 0);
    assert_eq!(r.state, TRK | NEW);
    assert_eq!(t.stats().early_drops, 1);
    let r = track(&mut w, &mut udp(B, A, 53, 1), &ct(0, false), 0);
    assert_eq!(r.state, TRK | EST | RPL, "the established one still works");
    // Now both are replied: a fourth is refused.
    track(&mut w, &mut udp(B, A, 53, 3), &ct(0, false), 0);
    let r = track(&mut w, &mut udp(A, B, 4, 53), &ct(0, true), 0);
    assert_eq!(r.state, TRK | INV);
    assert_eq!(t.stats().refused_full, 1);
    // Zone limits.
    t.set_limit(64).unwrap();
    t.set_zone_limit(Some(5), Some(1));
    track(&mut w, &mut udp(A, B, 5, 53), &ct(5, true), 0);
    let r = track(&mut w, &mut udp(A, B, 6, 53), &ct(5, true), 0);
    assert_eq!(r.state, TRK | INV);
    assert_eq!(t.stats().refused_zone, 1);
    let (_, zones) = t.zone_limits();
    assert!(zones.contains(&(5, Some(1), 1)));
}

#[test]
fn tcp_handshake_and_stray_packets() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let c = ct(0, true);
    assert_eq!(
        track(&mut w, &mut tcp(A, B, 40000, 80, 100, 0, "S"), &c, 0).state,
        TRK | NEW
    );
    assert_eq!(
        track(&mut w, &mut tcp(B, A, 80, 40000, 500, 101, "SA"), &c, 1).state,
        TRK | EST | RPL
    );
    assert_eq!(
        track(&mut w, &mut tcp(A, B, 40000, 80, 101, 501, "A"), &c, 2).state,
        TRK | EST
    );
    assert_eq!(
        t.dump(None, 2)[0].tcp_state,
        Some("ESTABLISHED"),
        "{:?}",
        t.dump(None, 2)
    );
    // A RST that opens nothing is invalid.
    let r = track(
        &mut w,
        &mut tcp(B, A, 81, 40001, 1, 0, "R"),
        &ct(0, false),
        3,
    );
    assert_eq!(r.state, TRK | INV);
}

#[test]
fn icmp_echo_is_tracked_by_id() {
    let t = tracker(64);
    let mut w = t.worker(1);
    assert_eq!(
        track(&mut w, &mut ping(A, B, 7, false), &ct(0, true), 0).state,
        TRK | NEW
    );
    assert_eq!(
        track(&mut w, &mut ping(B, A, 7, true), &ct(0, false), 0).state,
        TRK | EST | RPL
    );
    assert_eq!(
        track(&mut w, &mut ping(B, A, 8, true), &ct(0, false), 0).state,
        TRK | INV
    );
    assert_eq!(
        t.dump(None, 0)[0].to_string(),
        "icmp,orig=(src=10.0.0.1,dst=10.0.0.2,id=7,type=8,code=0),reply=(src=10.0.0.2,dst=10.0.0.1,id=7,type=0,code=0)"
    );
    let _ = REL;
}

#[test]
fn a_reply_handled_by_another_worker_finds_its_connection() {
    let t = tracker(1024);
    let mut w1 = t.worker(1);
    let mut w2 = t.worker(2);
    for p in 0..200u16 {
        track(&mut w1, &mut udp(A, B, 10000 + p, 53), &ct(0, true), 0);
    }
    let h = std::thread::spawn(move || {
        (0..200u16)
            .map(|p| track(&mut w2, &mut udp(B, A, 53, 10000 + p), &ct(0, false), 0).state)
            .all(|s| s == TRK | EST | RPL)
    });
    assert!(h.join().unwrap());
}

/// Two workers see the first packets of one connection at the same moment (a DNS client's
/// A and AAAA queries from one socket): one entry, and neither packet is refused.
#[test]
fn two_workers_racing_on_one_new_connection_get_one_entry() {
    for round in 0..50u16 {
        let t = tracker(1024);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let mut w = t.worker(i + 1);
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    (0..20)
                        .map(|_| {
                            track(&mut w, &mut udp(A, B, 5353 + round, 53), &ct(0, true), 0).state
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap().iter().all(|&s| s == TRK | NEW));
        }
        assert_eq!(t.stats().connections, 1);
        assert_eq!(t.stats().invalid, 0);
    }
}

#[test]
fn the_table_survives_the_process_and_a_half_written_entry_is_dropped() {
    let dir = std::env::temp_dir().join(format!(
        "vsw-ct-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config {
        capacity: 128,
        run_dir: Some(dir.clone()),
        tcp_loose: true,
    };
    {
        let (t, msg) = Tracker::open(&cfg, 1000).unwrap();
        assert_eq!(msg, None);
        let mut w = t.worker(1);
        let mut c = ct(3, true);
        c.mark = Some((0x42, 0xff));
        track(&mut w, &mut udp(A, B, 1000, 53), &c, 1000);
        track(&mut w, &mut udp(A, B, 1001, 53), &c, 1000);
        // A process killed while writing the second entry.
        t.0.table.entry(1)[table::W_CTL].fetch_or(table::LOCK, Relaxed);
    }
    // The next process has another clock origin.
    let (t, msg) = Tracker::open(&cfg, 5).unwrap();
    assert!(msg.unwrap().contains("reused 1 connections"));
    let mut w = t.worker(1);
    let r = track(&mut w, &mut udp(B, A, 53, 1000), &ct(3, false), 6);
    assert_eq!(r.state, TRK | EST | RPL);
    assert_eq!(r.mark, 0x42);
    let r = track(&mut w, &mut udp(B, A, 53, 1001), &ct(3, false), 6);
    assert_eq!(r.state, TRK | NEW);
    drop((w, t));
    // Another capacity: discarded with a message.
    let (t, msg) = Tracker::open(
        &Config {
            capacity: 256,
            ..cfg.clone()
        },
        0,
    )
    .unwrap();
    assert!(msg.unwrap().contains("discarded"), "");
    assert_eq!(t.stats().connections, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn force_ends_a_connection_seen_in_the_reply_direction() {
    let t = tracker(64);
    let mut w = t.worker(1);
    track(&mut w, &mut udp(A, B, 1000, 53), &ct(0, true), 0);
    // Without force, B's packet is a reply.
    assert_eq!(
        track(&mut w, &mut udp(B, A, 53, 1000), &ct(0, true), 0).state,
        TRK | EST | RPL
    );
    // With force, the connection is ended and B's packet starts a new one, B first.
    let mut f = ct(0, true);
    f.force = true;
    assert_eq!(
        track(&mut w, &mut udp(B, A, 53, 1000), &f, 0).state,
        TRK | NEW
    );
    let d = t.dump(None, 0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].orig.src, u32::from_be_bytes(B) as u128);
    // In the original direction force changes nothing.
    assert_eq!(
        track(&mut w, &mut udp(B, A, 53, 1000), &f, 0).state,
        TRK | NEW
    );
    t.check().unwrap();
}

#[test]
fn commit_sets_mark_and_label_bits_and_keeps_them() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let mut c = ct(0, true);
    c.mark = Some((0x12, 0xff));
    c.label = Some((1 << 100, 1 << 100));
    let r = track(&mut w, &mut udp(A, B, 1000, 53), &c, 0);
    assert_eq!((r.mark, r.label), (0x12, 1 << 100));
    // A later commit changes only the bits it names.
    c.mark = Some((0x300, 0xf00));
    c.label = None;
    let r = track(&mut w, &mut udp(A, B, 1000, 53), &c, 0);
    assert_eq!((r.mark, r.label), (0x312, 1 << 100));
    let r = track(&mut w, &mut udp(B, A, 53, 1000), &ct(0, false), 0);
    assert_eq!((r.mark, r.label), (0x312, 1 << 100));
    assert_eq!(
        t.dump(None, 0)[0].to_string(),
        format!(
            "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1000,dport=53),reply=(src=10.0.0.2,dst=10.0.0.1,sport=53,dport=1000),mark=786,labels={:#x}",
            1u128 << 100
        )
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Random packets between a few hosts, committed or not, in two zones, with a small
    /// table and a clock that jumps: the table's invariants hold after every packet.
    #[test]
    fn the_table_stays_consistent_under_random_traffic(
        ops in proptest::collection::vec((0u8..4, 0u8..4, 0u16..4, 0u8..3, proptest::bool::ANY, 0u8..2, 0u64..3), 1..300)
    ) {
        let t = tracker(16);
        let mut w = t.worker(3);
        let mut now = 0;
        for (s, d, p, kind, commit, zone, dt) in ops {
            let (src, dst) = ([10, 0, 0, s + 1], [10, 0, 0, d + 1]);
            let mut pkt = match kind {
                0 => udp(src, dst, 1000 + p, 53),
                1 => tcp(src, dst, 1000 + p, 80, 7, 0, "S"),
                _ => ping(src, dst, p, s > d),
            };
            track(&mut w, &mut pkt, &ct(zone as u16, commit), now);
            now += [0, 1_000, 100_000][dt as usize];
        }
        if let Err(e) = t.check() {
            proptest::prop_assert!(false, "{e}");
        }
    }
}
