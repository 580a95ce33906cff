//! A new connection whose reply tuple another connection holds (a Pod that reached an
//! endpoint through a cluster IP connects to it directly from the same port, or the other
//! way round): it gets another source port, as Linux's implicit source NAT gives it.

use super::*;
use ct_state::{DNAT, SNAT};
use vswitch_proto::action::NatKind;

const CLIENT: [u8; 4] = A;
const EP: [u8; 4] = B;
/// The cluster IP, DNATed to `EP`.
const VIP: [u8; 4] = [10, 96, 0, 10];

/// The Service's commit: DNAT to the endpoint's port 8080 (UDP: 5353).
fn to_endpoint(port: u16) -> DpCt {
    nat(NatKind::Dst, "10.0.0.2", Some((port, port)))
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn sum(d: &[u8]) -> u32 {
    d.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

/// What a receiver reads off an IPv4 frame: (source, source port or ICMP identifier,
/// destination, destination port), after checking the IPv4, TCP, UDP or ICMP checksum.
fn on_wire(p: &Packet) -> ([u8; 4], u16, [u8; 4], u16) {
    let d = p.data();
    let ip = &d[14..34];
    assert_eq!(fold(sum(ip)), 0xffff, "IPv4 header checksum");
    let l4 = &d[34..14 + u16::from_be_bytes([ip[2], ip[3]]) as usize];
    let proto = ip[9];
    let pseudo = if proto == ipproto::ICMP {
        0
    } else {
        sum(&ip[12..20]) + proto as u32 + l4.len() as u32
    };
    assert_eq!(fold(pseudo + sum(l4)), 0xffff, "proto {proto} checksum");
    let rd = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    let (sport, dport) = if proto == ipproto::ICMP {
        (rd(4), rd(4))
    } else {
        (rd(0), rd(2))
    };
    let ip4 = |at: usize| -> [u8; 4] { ip[at..at + 4].try_into().unwrap() };
    (ip4(12), sport, ip4(16), dport)
}

/// The Kubernetes pipeline's two passes for a packet of the original direction: a lookup
/// with `nat`, then the commit (`commit`: the Service's DNAT, or a bare `nat`).
fn forward(w: &mut CtWorker, p: &mut Packet, commit: &DpCt, now: u64) -> CtResult {
    let r = track(w, p, &nat_again(false), now);
    if r.state & EST != 0 {
        return r;
    }
    track(w, p, commit, now)
}

fn tcp_state(t: &Tracker, orig_dst: [u8; 4], orig_dport: u16) -> &'static str {
    t.dump(None, 0)
        .into_iter()
        .find(|c| c.orig.dst == u32::from_be_bytes(orig_dst) as u128 && c.orig.dport == orig_dport)
        .and_then(|c| c.tcp_state)
        .unwrap()
}

/// A handshake and a request and answer through `dst:dport` for a client at
/// `CLIENT:sport`; the endpoint sees the client at the port it returns, and the client
/// sees every answer come from `dst:dport`.
fn tcp_exchange(
    w: &mut CtWorker,
    (dst, dport): ([u8; 4], u16),
    sport: u16,
    commit: &DpCt,
    flags: u16,
    now: u64,
) -> u16 {
    let (c, s) = (1000u32, 5000u32);
    let mut syn = segment((CLIENT, sport), (dst, dport), c, 0, "S", &[]);
    let r = forward(w, &mut syn, commit, now);
    assert_eq!(r.state, TRK | NEW | flags);
    let (src, seen, to, to_port) = on_wire(&syn);
    assert_eq!((src, to, to_port), (CLIENT, EP, 8080));
    let o = r.orig.unwrap();
    assert_eq!(
        (o.sport, o.dport),
        (sport, dport),
        "ct_tp_* are the client's"
    );

    // The endpoint answers whom it saw; the client sees the address it asked for.
    let back = |w: &mut CtWorker, seq: u32, ack: u32, fl: &str, data: &[u8]| {
        let mut p = segment((EP, 8080), (CLIENT, seen), seq, ack, fl, data);
        let r = track(w, &mut p, &nat_again(false), now);
        assert_eq!(r.state, TRK | EST | RPL | flags, "{fl} {data:?}");
        assert_eq!(on_wire(&p), (dst, dport, CLIENT, sport), "{fl} {data:?}");
    };
    let out = |w: &mut CtWorker, seq: u32, ack: u32, data: &[u8]| {
        let mut p = segment((CLIENT, sport), (dst, dport), seq, ack, "A", data);
        let r = forward(w, &mut p, commit, now);
        assert_eq!(r.state, TRK | EST | flags, "{data:?}");
        assert_eq!(on_wire(&p), (CLIENT, seen, EP, 8080), "{data:?}");
    };
    back(w, s, c + 1, "SA", &[]);
    out(w, c + 1, s + 1, &[]);
    out(w, c + 1, s + 1, b"GET /");
    back(w, s + 1, c + 6, "A", b"200 OK");
    out(w, c + 6, s + 7, &[]);
    seen
}

/// Close the connection `CLIENT:sport -> dst:dport` (the client first): TIME_WAIT.
fn tcp_close(w: &mut CtWorker, (dst, dport): ([u8; 4], u16), sport: u16, seen: u16) {
    let (c, s) = (1006u32, 5007u32);
    let mut p = segment((CLIENT, sport), (dst, dport), c, s, "FA", &[]);
    assert_eq!(track(w, &mut p, &nat_again(false), 0).state & EST, EST);
    for (seq, ack, fl) in [(s, c + 1, "A"), (s, c + 1, "FA")] {
        let mut p = segment((EP, 8080), (CLIENT, seen), seq, ack, fl, &[]);
        assert_eq!(track(w, &mut p, &nat_again(false), 0).state & RPL, RPL);
    }
    let mut p = segment((CLIENT, sport), (dst, dport), c + 1, s + 1, "A", &[]);
    assert_eq!(track(w, &mut p, &nat_again(false), 0).state & EST, EST);
}

#[test]
fn a_direct_tcp_connection_on_a_cluster_ip_connections_reply_tuple_gets_another_port() {
    for time_wait in [false, true] {
        let t = tracker(64);
        let mut w = t.worker(1);
        let seen = tcp_exchange(&mut w, (VIP, 80), 40000, &to_endpoint(8080), DNAT, 0);
        assert_eq!(seen, 40000, "the first connection keeps its port");
        if time_wait {
            tcp_close(&mut w, (VIP, 80), 40000, seen);
        }
        let old = if time_wait {
            "TIME_WAIT"
        } else {
            "ESTABLISHED"
        };
        assert_eq!(tcp_state(&t, VIP, 80), old);

        // The same client port, straight to the endpoint.
        let seen = tcp_exchange(&mut w, (EP, 8080), 40000, &nat_again(true), SNAT, 0);
        assert!(seen >= 1024 && seen != 40000, "{seen}");
        assert_eq!(tcp_state(&t, EP, 8080), "ESTABLISHED");
        assert_eq!(
            tcp_state(&t, VIP, 80),
            old,
            "the old connection is left alone"
        );
        let direct = t
            .dump(None, 0)
            .into_iter()
            .find(|c| c.orig.dport == 8080)
            .unwrap();
        assert_eq!(
            direct.to_string(),
            format!(
                "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=8080),reply=(src=10.0.0.2,dst=10.0.0.1,sport=8080,dport={seen}),protoinfo=(state=ESTABLISHED)"
            )
        );
        if !time_wait {
            // The first connection still works both ways.
            let mut p = segment((CLIENT, 40000), (VIP, 80), 1006, 5007, "A", b"more");
            assert_eq!(
                track(&mut w, &mut p, &nat_again(false), 0).state,
                TRK | EST | DNAT
            );
            assert_eq!(on_wire(&p), (CLIENT, 40000, EP, 8080));
            let mut p = segment((EP, 8080), (CLIENT, 40000), 5007, 1010, "A", &[]);
            let r = track(&mut w, &mut p, &nat_again(false), 0);
            assert_eq!(r.state, TRK | EST | RPL | DNAT);
            assert_eq!(on_wire(&p), (VIP, 80, CLIENT, 40000));
        }
        let s = t.stats();
        assert_eq!((s.clash_resolved, s.nat_exhausted, s.invalid), (1, 0, 0));
        assert_eq!((s.connections, s.insert_races), (2, 0));
        t.check().unwrap();
    }
}

#[test]
fn a_cluster_ip_connection_on_a_direct_connections_reply_tuple_gets_another_port() {
    for time_wait in [false, true] {
        let t = tracker(64);
        let mut w = t.worker(1);
        let seen = tcp_exchange(&mut w, (EP, 8080), 40000, &nat_again(true), 0, 0);
        assert_eq!(seen, 40000);
        if time_wait {
            tcp_close(&mut w, (EP, 8080), 40000, seen);
        }
        let seen = tcp_exchange(&mut w, (VIP, 80), 40000, &to_endpoint(8080), DNAT | SNAT, 0);
        assert!(seen >= 1024 && seen != 40000, "{seen}");
        let old = if time_wait {
            "TIME_WAIT"
        } else {
            "ESTABLISHED"
        };
        assert_eq!(tcp_state(&t, EP, 8080), old);
        assert_eq!(tcp_state(&t, VIP, 80), "ESTABLISHED");
        let s = t.stats();
        assert_eq!((s.clash_resolved, s.nat_exhausted, s.invalid), (1, 0, 0));
        t.check().unwrap();
    }
}

#[test]
fn udp_clashes_either_way_get_another_port() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let svc = to_endpoint(5353);
    let query = |w: &mut CtWorker, sport: u16, dst: [u8; 4], dport: u16, commit: &DpCt| {
        let mut p = udp(CLIENT, dst, sport, dport);
        let r = forward(w, &mut p, commit, 0);
        let (src, seen, to, to_port) = on_wire(&p);
        assert_eq!((src, to, to_port), (CLIENT, EP, 5353));
        let mut a = udp(EP, CLIENT, 5353, seen);
        let ra = track(w, &mut a, &nat_again(false), 0);
        assert_eq!(on_wire(&a), (dst, dport, CLIENT, sport));
        (r.state, ra.state, seen)
    };
    // Through the cluster IP, then directly.
    let (s, _, seen) = query(&mut w, 5000, VIP, 53, &svc);
    assert_eq!((s, seen), (TRK | NEW | DNAT, 5000));
    let (s, a, seen) = query(&mut w, 5000, EP, 5353, &nat_again(true));
    assert_eq!((s, a), (TRK | NEW | SNAT, TRK | EST | RPL | SNAT));
    assert!(seen >= 1024 && seen != 5000);
    // Directly, then through the cluster IP.
    let (s, _, seen) = query(&mut w, 6000, EP, 5353, &nat_again(true));
    assert_eq!((s, seen), (TRK | NEW, 6000));
    let (s, a, seen) = query(&mut w, 6000, VIP, 53, &svc);
    assert_eq!(
        (s, a),
        (TRK | NEW | DNAT | SNAT, TRK | EST | RPL | DNAT | SNAT)
    );
    assert!(seen >= 1024 && seen != 6000);
    // A client port below 1024 stays below 1024 (and above 599).
    query(&mut w, 700, VIP, 53, &svc);
    let (_, _, seen) = query(&mut w, 700, EP, 5353, &nat_again(true));
    assert!((600..1024).contains(&seen) && seen != 700, "{seen}");
    let s = t.stats();
    assert_eq!((s.clash_resolved, s.nat_exhausted, s.invalid), (3, 0, 0));
    t.check().unwrap();
}

#[test]
fn an_icmp_echo_clash_gets_another_identifier() {
    let t = tracker(64);
    let mut w = t.worker(1);
    // Through the cluster IP (the address only), then directly with the same identifier.
    let mut p = ping(CLIENT, VIP, 7, false);
    let r = forward(&mut w, &mut p, &nat(NatKind::Dst, "10.0.0.2", None), 0);
    assert_eq!(r.state, TRK | NEW | DNAT);
    assert_eq!(on_wire(&p), (CLIENT, 7, EP, 7));
    let mut p = ping(CLIENT, EP, 7, false);
    let r = forward(&mut w, &mut p, &nat_again(true), 0);
    assert_eq!(r.state, TRK | NEW | SNAT);
    let (_, id, _, _) = on_wire(&p);
    assert_ne!(id, 7);
    let mut a = ping(EP, CLIENT, id, true);
    let r = track(&mut w, &mut a, &nat_again(false), 0);
    assert_eq!(r.state, TRK | EST | RPL | SNAT);
    assert_eq!(on_wire(&a), (EP, 7, CLIENT, 7));
    // The first one's answer still comes from the cluster IP.
    let mut a = ping(EP, CLIENT, 7, true);
    let r = track(&mut w, &mut a, &nat_again(false), 0);
    assert_eq!(r.state, TRK | EST | RPL | DNAT);
    assert_eq!(on_wire(&a), (VIP, 7, CLIENT, 7));
    assert_eq!(t.stats().clash_resolved, 1);
    t.check().unwrap();
}

#[test]
fn without_nat_in_the_action_a_clash_is_refused() {
    let t = tracker(64);
    let mut w = t.worker(1);
    track(
        &mut w,
        &mut udp(CLIENT, VIP, 5000, 53),
        &to_endpoint(5353),
        0,
    );
    let mut p = udp(CLIENT, EP, 5000, 5353);
    assert_eq!(track(&mut w, &mut p, &ct(0, true), 0).state, TRK | INV);
    assert_eq!(on_wire(&p), (CLIENT, 5000, EP, 5353), "left as it was");
    let s = t.stats();
    assert_eq!(
        (s.nat_exhausted, s.clash_resolved, s.connections),
        (1, 0, 1)
    );
}

/// Another worker committed the same connection between this worker's lookup and its
/// commit: that is not a clash, the packet belongs to the connection found.
#[test]
fn an_insert_race_still_finds_the_other_workers_connection() {
    let t = tracker(64);
    let (mut w1, mut w2) = (t.worker(1), t.worker(2));
    let svc = to_endpoint(8080);
    let mut p = segment((CLIENT, 40000), (VIP, 80), 1000, 0, "S", &[]);
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(p.data(), &mut key, &mut layers).unwrap();
    let Kind::Conn(tuple) = tuple::classify(&p, &layers, &key, 0) else {
        panic!()
    };
    let seg = tcp::Segment::parse(&p.data()[layers.l4 as usize..], 0).unwrap();
    // Worker 1 commits first.
    let mut first = p.clone();
    assert_eq!(track(&mut w1, &mut first, &svc, 0).state, TRK | NEW | DNAT);
    // Worker 2 had found nothing: NAT sees the binding taken (by this very connection),
    // the insert is refused, and it looks again.
    assert!(
        w2.new_conn(&mut p, &layers, &key, &svc, (&tuple, Some(&seg)), 0)
            .is_none()
    );
    let r = track(&mut w2, &mut p, &svc, 0);
    assert_eq!(r.state, TRK | NEW | DNAT);
    assert_eq!(on_wire(&p), (CLIENT, 40000, EP, 8080));
    let s = t.stats();
    assert_eq!((s.connections, s.insert_races, s.clash_resolved), (1, 1, 0));

    // The same with threads, for the whole path.
    for round in 0..20u16 {
        let t = tracker(64);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let mut w = t.worker(i + 1);
                let (b, svc) = (barrier.clone(), svc.clone());
                std::thread::spawn(move || {
                    b.wait();
                    let mut p = udp(CLIENT, VIP, 5000 + round, 80);
                    let r = track(&mut w, &mut p, &svc, 0);
                    (r.state, on_wire(&p))
                })
            })
            .collect();
        for h in handles {
            let (state, wire) = h.join().unwrap();
            assert_eq!(state, TRK | NEW | DNAT);
            assert_eq!(wire, (CLIENT, 5000 + round, EP, 8080));
        }
        let s = t.stats();
        assert_eq!((s.connections, s.clash_resolved, s.invalid), (1, 0, 0));
    }
}

/// A Service's connection committed with its DNAT, then committed again after policy let
/// its (translated) first packet through: the second commit finds the same connection by
/// the original tuple the packet's metadata carries (Open vSwitch keeps the connection
/// with the packet), changes its mark, and starts no other connection.
#[test]
fn a_translated_packet_committed_again_is_its_connections() {
    let t = tracker(64);
    let mut w = t.worker(1);
    let mut dnat = to_endpoint(5353);
    dnat.mark = Some((0x30, 0x30));
    let mut p = udp(CLIENT, VIP, 4000, 53);
    let first = track(&mut w, &mut p, &dnat, 0);
    assert_eq!(first.mark, 0x30);
    // The packet as the pipeline has it now: translated, with the first pass's metadata.
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(p.data(), &mut key, &mut layers).unwrap();
    assert_eq!(key.nw_dst(), u32::from_be_bytes(EP));
    key.set_ct_state(first.state);
    key.set_ct_zone(first.zone);
    let o = first.orig.expect("an IPv4 original tuple");
    key.set_ct_nw_src(o.src);
    key.set_ct_nw_dst(o.dst);
    key.set_ct_nw_proto(o.proto);
    key.set_ct_tp_src(o.sport);
    key.set_ct_tp_dst(o.dport);
    let mut allow = nat_again(true);
    allow.mark = Some((0, 0x20));
    let again = w.track(&mut p, &layers, &key, &allow, 0);
    assert_eq!(
        again.mark, 0x10,
        "the same connection, its pending bit cleared"
    );
    assert_eq!(t.dump(None, 0).len(), 1, "{:?}", t.dump(None, 0));
    assert_eq!(on_wire(&p), (CLIENT, 4000, EP, 5353), "translated once");
    // The endpoint's answer is the connection's reply, with the mark as it now is.
    let r = track(
        &mut w,
        &mut udp(EP, CLIENT, 5353, 4000),
        &nat_again(false),
        0,
    );
    assert_eq!(r.state & ct_state::RPL, ct_state::RPL);
    assert_eq!(r.mark, 0x10);
}
