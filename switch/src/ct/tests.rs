use super::*;
use crate::flow::extract;
use etherparse::PacketBuilder;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];
const C3: [u8; 4] = [10, 0, 0, 3];
const D4: [u8; 4] = [10, 0, 0, 4];

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
    segment((src, sport), (dst, dport), seq, ack, flags, &[])
}

/// A TCP segment with flags (`S`, `A`, `F`, `R`) and a payload.
fn segment(
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: &str,
    payload: &[u8],
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
    b.write(&mut v, payload).unwrap();
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
        file: Some(dir.join(FILE_NAME)),
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
        ops in proptest::collection::vec((0u8..4, 0u8..4, 0u16..4, 0u8..5, proptest::bool::ANY, 0u8..2, 0u64..3), 1..300)
    ) {
        let t = tracker(16);
        let mut w = t.worker(3);
        let mut now = 0;
        for (s, d, p, kind, commit, zone, dt) in ops {
            let (src, dst) = ([10, 0, 0, s + 1], [10, 0, 0, d + 1]);
            let mut pkt = match kind {
                0 => udp(src, dst, 1000 + p, 53),
                1 => tcp(src, dst, 1000 + p, 80, 7, 0, "S"),
                2 => ping(src, dst, p, s > d),
                // A fragment, first or later, of a datagram of `p`'s.
                k => Packet::from_frame(
                    &super::frag::testing::udp_fragments(src, dst, 1000 + p, 53, p, 100, 68)
                        [if k == 3 { 0 } else { 1 }],
                    1,
                ),
            };
            track(&mut w, &mut pkt, &ct(zone as u16, commit), now);
            now += [0, 1_000, 100_000][dt as usize];
        }
        if let Err(e) = t.check() {
            proptest::prop_assert!(false, "{e}");
        }
    }
}

fn nat(kind: vswitch_proto::action::NatKind, a: &str, ports: Option<(u16, u16)>) -> DpCt {
    let mut c = ct(0, true);
    let ip: std::net::IpAddr = a.parse().unwrap();
    c.nat = Some(vswitch_proto::action::Nat {
        kind: Some(kind),
        addrs: Some((ip, ip)),
        ports,
        ..Default::default()
    });
    c
}

/// The bare `nat` of later packets: apply the connection's NAT.
fn nat_again(commit: bool) -> DpCt {
    let mut c = ct(0, commit);
    c.nat = Some(vswitch_proto::action::Nat::default());
    c
}

fn fields(p: &Packet) -> (Flow, bool) {
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(p.data(), &mut key, &mut layers).unwrap();
    let d = p.data();
    let ok = etherparse::SlicedPacket::from_ethernet(d).is_ok_and(|s| match s.transport {
        Some(etherparse::TransportSlice::Udp(u)) => {
            let ip = etherparse::Ipv4HeaderSlice::from_slice(&d[14..]).unwrap();
            u.to_header()
                .calc_checksum_ipv4(&ip.to_header(), u.payload())
                .is_ok_and(|c| c == u.checksum())
        }
        _ => true,
    });
    (key, ok)
}

#[test]
fn snat_gives_colliding_clients_distinct_ports_and_reverses_replies() {
    use vswitch_proto::action::NatKind;
    let t = tracker(64);
    let mut w = t.worker(1);
    let c = nat(NatKind::Src, "192.0.2.1", Some((5000, 5001)));
    // Two clients, one source port: after SNAT, one address and two ports.
    let mut p1 = udp(A, B, 1000, 53);
    let r1 = track(&mut w, &mut p1, &c, 0);
    let mut p2 = udp([10, 0, 0, 3], B, 1000, 53);
    let r2 = track(&mut w, &mut p2, &c, 0);
    assert_eq!(r1.state, TRK | NEW | ct_state::SNAT);
    assert_eq!(r2.state, TRK | NEW | ct_state::SNAT);
    let ((k1, ok1), (k2, ok2)) = (fields(&p1), fields(&p2));
    assert!(ok1 && ok2, "checksums after SNAT");
    assert_eq!((k1.nw_src(), k2.nw_src()), (0xc000_0201, 0xc000_0201));
    assert_ne!(k1.tp_src(), k2.tp_src());
    assert!([5000, 5001].contains(&k1.tp_src()) && [5000, 5001].contains(&k2.tp_src()));
    // A third client: no port left.
    let r3 = track(&mut w, &mut udp([10, 0, 0, 4], B, 1000, 53), &c, 0);
    assert_eq!(r3.state, TRK | INV);
    assert_eq!(t.stats().nat_exhausted, 1);
    // B answers the second client's translated address: it goes back to that client.
    let mut reply = udp(B, [192, 0, 2, 1], 53, k2.tp_src());
    let r = track(&mut w, &mut reply, &nat_again(false), 0);
    assert_eq!(r.state, TRK | EST | RPL | ct_state::SNAT);
    let (k, ok) = fields(&reply);
    assert!(ok);
    assert_eq!((k.nw_dst(), k.tp_dst()), (0x0a00_0003, 1000));
    // The original tuple is the client's, before NAT.
    assert_eq!(r.orig.unwrap().src, 0x0a00_0003);
    // Without `nat` in the action, a packet is not translated.
    let mut plain = udp(B, [192, 0, 2, 1], 53, k2.tp_src());
    track(&mut w, &mut plain, &ct(0, false), 0);
    assert_eq!(fields(&plain).0.nw_dst(), 0xc000_0201);
}

#[test]
fn dnat_translates_both_ways_and_related_icmp_errors_are_reversed() {
    use vswitch_proto::action::NatKind;
    let t = tracker(64);
    let mut w = t.worker(1);
    // A -> the virtual address V:80, DNATed to B:8080.
    const V: [u8; 4] = [10, 96, 0, 10];
    let mut p = udp(A, V, 40000, 80);
    let r = track(
        &mut w,
        &mut p,
        &nat(NatKind::Dst, "10.0.0.2", Some((8080, 8080))),
        0,
    );
    assert_eq!(r.state, TRK | NEW | ct_state::DNAT);
    let (k, ok) = fields(&p);
    assert!(ok);
    assert_eq!((k.nw_dst(), k.tp_dst()), (0x0a00_0002, 8080));
    // A later packet of A's, with a bare `nat`.
    let mut p = udp(A, V, 40000, 80);
    track(&mut w, &mut p, &nat_again(false), 0);
    assert_eq!(fields(&p).0.tp_dst(), 8080);
    // B's reply comes back from V:80.
    let mut rp = udp(B, A, 8080, 40000);
    let r = track(&mut w, &mut rp, &nat_again(false), 0);
    assert_eq!(r.state, TRK | EST | RPL | ct_state::DNAT);
    let (k, ok) = fields(&rp);
    assert!(ok);
    assert_eq!((k.nw_src(), k.tp_src()), (0x0a60_000a, 80));
    // B says port unreachable about A's translated packet (A:40000 -> B:8080): related,
    // and A sees it come from V about its own packet to V:80.
    let quoted = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(A, B, 64)
            .udp(40000, 8080)
            .write(&mut v, b"hello")
            .unwrap();
        v[14..].to_vec()
    };
    let mut err = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(B, A, 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut v, &quoted)
            .unwrap();
        Packet::from_frame(&v, 1)
    };
    let r = track(&mut w, &mut err, &nat_again(false), 0);
    assert_eq!(r.state, TRK | REL | RPL | ct_state::DNAT);
    let d = err.data().to_vec();
    let outer = etherparse::Ipv4HeaderSlice::from_slice(&d[14..]).unwrap();
    assert_eq!(outer.source(), V);
    let inner = etherparse::Ipv4HeaderSlice::from_slice(&d[14 + 20 + 8..]).unwrap();
    assert_eq!((inner.source(), inner.destination()), (A, V));
    let inner_dport = u16::from_be_bytes([d[14 + 20 + 8 + 20 + 2], d[14 + 20 + 8 + 20 + 3]]);
    assert_eq!(inner_dport, 80);
    // Its ICMP checksum verifies.
    let icmp = &d[14 + 20..];
    let mut sum = 0u32;
    for c in icmp.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "ICMP checksum");
    // An error about a connection nobody has is invalid.
    let mut stray = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(B, A, 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut v, &quoted[..20])
            .unwrap();
        Packet::from_frame(&v, 1)
    };
    assert_eq!(track(&mut w, &mut stray, &ct(0, false), 0).state, TRK | INV);
}

#[test]
fn each_socket_has_its_own_table_file() {
    use std::path::Path;
    let f = |s: &str| file_for(Path::new(s)).unwrap();
    assert_eq!(
        f("/run/vswitch/vswitchd.sock"),
        Path::new("/run/vswitch/conntrack.table")
    );
    assert_eq!(
        f("/tmp/d/node1.sock"),
        Path::new("/tmp/d/node1.conntrack.table")
    );
    assert_eq!(f("/tmp/d/ctl"), Path::new("/tmp/d/ctl.conntrack.table"));
}

// Fragments (see `frag`): a later fragment is tracked with its first fragment's ports.

use super::frag::testing::{fragment, reassemble, udp_fragments};
use super::frag::{FRAG_ENTRIES, FRAG_TIMEOUT_MS};

fn packets(frames: &[Vec<u8>]) -> Vec<Packet> {
    frames.iter().map(|f| Packet::from_frame(f, 1)).collect()
}

fn frames(pkts: &[Packet]) -> Vec<Vec<u8>> {
    pkts.iter().map(|p| p.data().to_vec()).collect()
}

fn with_mark(mut c: DpCt, mark: u32) -> DpCt {
    c.mark = Some((mark, u32::MAX));
    c
}

#[test]
fn later_fragments_share_their_first_fragments_connection() {
    let t = tracker(64);
    let mut w = t.worker(1);
    // 4000 bytes of UDP in a 1500-byte MTU: three fragments.
    let mut q = packets(&udp_fragments(A, B, 1000, 53, 77, 4000, 1500));
    assert_eq!(q.len(), 3);
    let commit = with_mark(ct(0, true), 7);
    for (i, p) in q.iter_mut().enumerate() {
        let r = track(&mut w, p, &commit, 0);
        assert_eq!(r.state, TRK | NEW, "fragment {i}: +new, not +inv");
        assert_eq!((r.mark, r.zone), (7, 0), "fragment {i}");
        assert_eq!(
            r.orig.unwrap().sport,
            1000,
            "fragment {i}: the connection's tuple"
        );
        // A later fragment's flow takes on the datagram's ports after ct().
        let want = (i > 0).then_some([1000, 53]);
        assert_eq!(r.frag_ports, want, "fragment {i}");
    }
    assert_eq!(t.stats().connections, 1, "one datagram, one connection");
    assert_eq!(t.stats().invalid, 0);
    // The answer, fragmented too: established and a reply, every fragment.
    for (i, p) in packets(&udp_fragments(B, A, 53, 1000, 9, 3000, 1500))
        .iter_mut()
        .enumerate()
    {
        let r = track(&mut w, p, &ct(0, false), 1);
        assert_eq!(r.state, TRK | EST | RPL, "reply fragment {i}");
        assert_eq!(r.mark, 7);
    }
    // A next request: established.
    for p in &mut packets(&udp_fragments(A, B, 1000, 53, 78, 2000, 1500)) {
        assert_eq!(track(&mut w, p, &ct(0, false), 2).state, TRK | EST);
    }
    // Nothing about the fragments shows in the connection.
    assert_eq!(
        t.dump(None, 2)[0].to_string(),
        "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1000,dport=53),reply=(src=10.0.0.2,dst=10.0.0.1,sport=53,dport=1000),mark=7"
    );
}

#[test]
fn a_later_fragment_without_its_first_is_invalid() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let q = udp_fragments(A, B, 1000, 53, 5, 4000, 1500);
    // Alone, or overtaking its first fragment (reassembly would wait for it; this
    // tracker does not hold packets).
    let r = track(&mut w, &mut Packet::from_frame(&q[1], 1), &ct(0, true), 0);
    assert_eq!(r.state, TRK | INV);
    assert_eq!(r.frag_ports, None);
    assert_eq!(t.stats().connections, 0);
    track(&mut w, &mut Packet::from_frame(&q[0], 1), &ct(0, false), 0);
    // Its datagram is known in zone 0 only, under its own identification and addresses.
    let r = track(&mut w, &mut Packet::from_frame(&q[1], 1), &ct(3, false), 0);
    assert_eq!(r.state, TRK | INV, "another zone");
    let other_id = udp_fragments(A, B, 1000, 53, 6, 4000, 1500);
    let r = track(
        &mut w,
        &mut Packet::from_frame(&other_id[1], 1),
        &ct(0, false),
        0,
    );
    assert_eq!(r.state, TRK | INV, "another identification");
    let r = track(&mut w, &mut Packet::from_frame(&q[1], 1), &ct(0, false), 0);
    assert_eq!(r.state, TRK | NEW);
    // Not after the fragment timeout.
    let r = track(
        &mut w,
        &mut Packet::from_frame(&q[2], 1),
        &ct(0, false),
        FRAG_TIMEOUT_MS,
    );
    assert_eq!(r.state, TRK | INV, "expired");
    // A first fragment that is invalid (its ICMP type opens nothing) takes its datagram
    // with it, even if an earlier one of the same key was remembered.
    let echo = |typ: u8| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(A, B, 64)
            .icmpv4_echo_request(9, 1)
            .write(&mut v, &[0u8; 3000])
            .unwrap();
        v[14 + 20] = typ;
        fragment(&v, 11, 1500)
    };
    let ok = echo(8);
    track(&mut w, &mut Packet::from_frame(&ok[0], 1), &ct(0, false), 0);
    let r = track(&mut w, &mut Packet::from_frame(&ok[1], 1), &ct(0, false), 0);
    assert_eq!(r.state, TRK | NEW, "a big ping's later fragment");
    assert_eq!(r.frag_ports, Some([8, 0]), "ICMP: type and code");
    let bad = echo(0);
    let r = track(
        &mut w,
        &mut Packet::from_frame(&bad[0], 1),
        &ct(0, false),
        0,
    );
    assert_eq!(r.state, TRK | INV, "an echo reply opens nothing");
    let r = track(
        &mut w,
        &mut Packet::from_frame(&bad[1], 1),
        &ct(0, false),
        0,
    );
    assert_eq!(r.state, TRK | INV);
}

#[test]
fn a_later_fragment_does_not_make_a_connection_its_first_did_not() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let q = udp_fragments(A, B, 1000, 53, 5, 4000, 1500);
    track(&mut w, &mut Packet::from_frame(&q[0], 1), &ct(0, true), 0);
    // The connection goes (flushed) before the rest of the datagram comes.
    t.flush(None, &TupleFilter::default());
    let r = track(&mut w, &mut Packet::from_frame(&q[1], 1), &ct(0, true), 0);
    assert_eq!(r.state, TRK | INV, "commit: the first fragment's was lost");
    let r = track(&mut w, &mut Packet::from_frame(&q[2], 1), &ct(0, false), 0);
    assert_eq!(
        r.state,
        TRK | NEW,
        "no commit: +new as its first fragment was"
    );
    assert_eq!(t.stats().connections, 0);
    // A refused commit (the table is full of assured connections) forgets the datagram.
    let t = tracker(1);
    let mut w = t.worker(1);
    track(&mut w, &mut udp(B, A, 1, 2), &ct(0, true), 0);
    track(&mut w, &mut udp(A, B, 2, 1), &ct(0, false), 0);
    let r = track(&mut w, &mut Packet::from_frame(&q[0], 1), &ct(0, true), 0);
    assert_eq!(r.state, TRK | INV, "table full");
    let r = track(&mut w, &mut Packet::from_frame(&q[1], 1), &ct(0, false), 0);
    assert_eq!(r.state, TRK | INV);
}

#[test]
fn dnat_of_a_fragmented_datagram_translates_every_fragment() {
    use vswitch_proto::action::NatKind;
    let t = tracker(64);
    let mut w = t.worker(1);
    // A -> the virtual address V:80, `ct(commit,nat(dst=B:8080))`.
    const V: [u8; 4] = [10, 96, 0, 10];
    let dnat = nat(NatKind::Dst, "10.0.0.2", Some((8080, 8080)));
    let mut q = packets(&udp_fragments(A, V, 40000, 80, 300, 4000, 1500));
    for (i, p) in q.iter_mut().enumerate() {
        let r = track(&mut w, p, &dnat, 0);
        assert_eq!(r.state, TRK | NEW | ct_state::DNAT, "fragment {i}");
        assert_eq!(
            r.frag_ports,
            (i > 0).then_some([40000, 8080]),
            "fragment {i}"
        );
    }
    let whole = reassemble(&frames(&q));
    assert_eq!(
        (whole.src, whole.dst),
        (A, B),
        "every fragment's destination"
    );
    assert_eq!(whole.ports(), (40000, 8080));
    assert!(whole.udp_checksum_ok(), "the first fragment's UDP checksum");
    assert_eq!(whole.l4.len(), 8 + 4000);
    // B's answer, fragmented, goes back from V:80, every fragment.
    let mut a = packets(&udp_fragments(B, A, 8080, 40000, 301, 4000, 1500));
    for (i, p) in a.iter_mut().enumerate() {
        let r = track(&mut w, p, &nat_again(false), 1);
        assert_eq!(
            r.state,
            TRK | EST | RPL | ct_state::DNAT,
            "reply fragment {i}"
        );
        assert_eq!(r.frag_ports, (i > 0).then_some([80, 40000]), "fragment {i}");
    }
    let whole = reassemble(&frames(&a));
    assert_eq!((whole.src, whole.dst), (V, A));
    assert_eq!(whole.ports(), (80, 40000));
    assert!(whole.udp_checksum_ok());
    // A's next datagram with a bare `nat` (table 3 of the Kubernetes pipeline).
    let mut q = packets(&udp_fragments(A, V, 40000, 80, 302, 2500, 1500));
    for p in &mut q {
        let r = track(&mut w, p, &nat_again(false), 2);
        assert_eq!(r.state, TRK | EST | ct_state::DNAT);
    }
    let whole = reassemble(&frames(&q));
    assert_eq!((whole.dst, whole.ports().1), (B, 8080));
    assert!(whole.udp_checksum_ok());
    assert_eq!(t.stats().connections, 1);
    assert_eq!(t.stats().invalid, 0);
}

#[test]
fn a_later_tcp_fragment_leaves_the_connections_state_alone() {
    let t = tracker(64);
    let mut w = t.worker(1);
    track(
        &mut w,
        &mut tcp(A, B, 1000, 80, 100, 0, "S"),
        &ct(0, true),
        0,
    );
    track(
        &mut w,
        &mut tcp(B, A, 80, 1000, 500, 101, "SA"),
        &ct(0, false),
        0,
    );
    track(
        &mut w,
        &mut tcp(A, B, 1000, 80, 101, 501, "A"),
        &ct(0, false),
        0,
    );
    let before = t.dump(None, 0)[0].timeout_ms;
    // A 3000-byte segment sent in fragments (a sender that did not set DF).
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(A, B, 64)
        .tcp(1000, 80, 101, 64000)
        .ack(501)
        .write(&mut v, &[1u8; 3000])
        .unwrap();
    let mut q = packets(&fragment(&v, 40, 1500));
    let r = track(&mut w, &mut q[0], &ct(0, false), 10_000);
    assert_eq!(r.state, TRK | EST);
    let after_first = t.dump(None, 10_000)[0].clone();
    for p in &mut q[1..] {
        let r = track(&mut w, p, &ct(0, false), 12_000);
        assert_eq!(r.state, TRK | EST);
        assert_eq!(r.frag_ports, Some([1000, 80]));
    }
    let after = t.dump(None, 10_000)[0].clone();
    assert_eq!(after, after_first, "not renewed, state unchanged");
    assert!(before > 0 && after.tcp_state == Some("ESTABLISHED"));
}

#[test]
fn ipv6_later_fragments_share_their_first_fragments_connection() {
    // IPv6 fd00::1 -> fd00::2, UDP 1000 -> 53, 3000 bytes in fragments of 1232 bytes of
    // payload after the Fragment header (RFC 8200's minimum MTU less the headers).
    let (a6, b6) = ([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1u8], {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[15] = 2;
        b
    });
    let mut whole = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6(a6, b6, 64)
        .udp(1000, 53)
        .write(&mut whole, &[3u8; 3000])
        .unwrap();
    let (eth, ip, l4) = (&whole[..14], &whole[14..54], &whole[54..]);
    let frags: Vec<Vec<u8>> = l4
        .chunks(1232)
        .enumerate()
        .map(|(i, part)| {
            let mut h = ip.to_vec();
            h[4..6].copy_from_slice(&((8 + part.len()) as u16).to_be_bytes());
            h[6] = 44;
            let more = (i + 1) * 1232 < l4.len();
            let off = ((i * 1232) as u16) | more as u16;
            let mut fh = vec![17, 0];
            fh.extend(off.to_be_bytes());
            fh.extend(0x1234_5678u32.to_be_bytes());
            [eth, &h, &fh, part].concat()
        })
        .collect();
    assert_eq!(frags.len(), 3);
    let t = tracker(64);
    let mut w = t.worker(1);
    for (i, f) in frags.iter().enumerate() {
        let r = track(&mut w, &mut Packet::from_frame(f, 1), &ct(0, true), 0);
        assert_eq!(r.state, TRK | NEW, "fragment {i}");
        assert_eq!(r.frag_ports, (i > 0).then_some([1000, 53]));
    }
    assert_eq!(t.stats().connections, 1);
    // Without its first fragment, a later one is invalid.
    let t = tracker(64);
    let mut w = t.worker(1);
    let r = track(
        &mut w,
        &mut Packet::from_frame(&frags[2], 1),
        &ct(0, false),
        0,
    );
    assert_eq!(r.state, TRK | INV);
}

#[test]
fn a_flood_of_first_fragments_takes_bounded_memory() {
    let t = tracker(64);
    let mut w = t.worker(1);
    // 20 times the table's size in distinct datagrams, each a first fragment only.
    for i in 0..(FRAG_ENTRIES * 20) as u32 {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([11, (i >> 16) as u8, (i >> 8) as u8, i as u8], B, 64)
            .udp(1000, 53)
            .write(&mut v, &[0u8; 64])
            .unwrap();
        let first = fragment(&v, i as u16, 20 + 32).remove(0);
        track(
            &mut w,
            &mut Packet::from_frame(&first, 1),
            &ct(0, false),
            i as u64,
        );
    }
    let now = (FRAG_ENTRIES * 20) as u64;
    assert!(w.frags.len(now) <= FRAG_ENTRIES);
    assert!(w.frags.memory() <= 80 * 1024, "{} bytes", w.frags.memory());
    // A datagram that is under way still gets through.
    let q = udp_fragments(A, B, 1000, 53, 5, 4000, 1500);
    track(
        &mut w,
        &mut Packet::from_frame(&q[0], 1),
        &ct(0, false),
        now,
    );
    let r = track(
        &mut w,
        &mut Packet::from_frame(&q[1], 1),
        &ct(0, false),
        now,
    );
    assert_eq!(r.state, TRK | NEW);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// DNAT of a UDP datagram of any size, cut at any MTU: every fragment is tracked as its
    /// first was; put back together, the datagram has the endpoint's address and port and
    /// a right UDP checksum (every fragment a right IPv4 header checksum: `reassemble`
    /// checks); the endpoint's answer, cut likewise, comes back from the Service address.
    #[test]
    fn dnat_of_any_fragmented_datagram_keeps_every_checksum(
        len in 0usize..9000,
        mtu in 68usize..1500,
        id in proptest::num::u16::ANY,
        sport in 1u16..u16::MAX,
        ep in 1u8..255,
        eport in 1u16..u16::MAX,
    ) {
        use vswitch_proto::action::NatKind;
        const V: [u8; 4] = [10, 96, 0, 10];
        let e = [10, 244, 1, ep];
        let t = tracker(64);
        let mut w = t.worker(1);
        let dnat = nat(NatKind::Dst, &std::net::Ipv4Addr::from(e).to_string(), Some((eport, eport)));
        let mut q = packets(&udp_fragments(A, V, sport, 53, id, len, mtu));
        for p in &mut q {
            let r = track(&mut w, p, &dnat, 0);
            proptest::prop_assert_eq!(r.state, TRK | NEW | ct_state::DNAT);
        }
        let whole = reassemble(&frames(&q));
        proptest::prop_assert_eq!((whole.src, whole.dst, whole.ports()), (A, e, (sport, eport)));
        proptest::prop_assert!(whole.udp_checksum_ok());
        proptest::prop_assert_eq!(whole.l4.len(), 8 + len);
        let mut a = packets(&udp_fragments(e, A, eport, sport, id ^ 1, len, mtu));
        for p in &mut a {
            let r = track(&mut w, p, &nat_again(false), 1);
            proptest::prop_assert_eq!(r.state, TRK | EST | RPL | ct_state::DNAT);
        }
        let whole = reassemble(&frames(&a));
        proptest::prop_assert_eq!((whole.src, whole.dst, whole.ports()), (V, A, (53, sport)));
        proptest::prop_assert!(whole.udp_checksum_ok());
    }
}

mod clash;

/// Empty the table, then fill its one slot with a replied connection marked 0x77.
fn give_the_slot_to_another(t: &Tracker, w: &mut CtWorker) {
    t.flush(None, &TupleFilter::default());
    track(w, &mut udp(C3, D4, 7, 7), &with_mark(ct(0, true), 0x77), 0);
    track(w, &mut udp(D4, C3, 7, 7), &ct(0, false), 0);
}

/// A worker goes straight to the entry where it last found a connection (its hints), but
/// never takes an answer from the entry's next connection: the one slot of a table of one
/// is emptied and refilled with other connections while the worker keeps sending.
#[test]
fn a_workers_hint_to_a_reused_entry_is_not_followed() {
    let t = tracker(1);
    let mut w1 = t.worker(1);
    let mut w2 = t.worker(2);
    // Deterministically first: the hint now leads to another connection.
    track(&mut w1, &mut udp(A, B, 1000, 53), &ct(0, true), 0);
    track(&mut w1, &mut udp(B, A, 53, 1000), &ct(0, false), 0);
    assert_eq!(
        track(&mut w1, &mut udp(A, B, 1000, 53), &ct(0, false), 0).state,
        TRK | EST
    );
    give_the_slot_to_another(&t, &mut w2);
    let r = track(&mut w1, &mut udp(A, B, 1000, 53), &ct(0, false), 0);
    assert_eq!((r.state, r.mark), (TRK | NEW, 0), "{r:?}");
    // Then racing: the slot changes hands while w1 sends.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (t, stop) = (t.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Relaxed) {
                give_the_slot_to_another(&t, &mut w2);
                t.flush(None, &TupleFilter::default());
                track(&mut w2, &mut udp(A, B, 1000, 53), &ct(0, true), 0);
                rounds += 1;
            }
            rounds
        })
    };
    for _ in 0..200_000 {
        let r = track(&mut w1, &mut udp(A, B, 1000, 53), &ct(0, false), 0);
        // Ours is never replied here: never established, never the other's mark.
        assert_eq!((r.state, r.mark), (TRK | NEW, 0), "{r:?}");
    }
    stop.store(true, Relaxed);
    assert!(churn.join().unwrap() > 0);
}
