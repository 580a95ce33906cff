//! Answers built for real frames, with every checksum verified from scratch (a plain
//! one's-complement sum over the bytes, pseudo-header included), and the fields read back
//! with etherparse.

use super::*;
use crate::dp::packet::Packet;
use etherparse::{
    Icmpv4Type, Icmpv6Type, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
};
use proptest::prelude::*;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [0x0a, 0x58, 10, 244, 0, 1];
const CLIENT: [u8; 4] = [10, 244, 1, 2];
const VIP: [u8; 4] = [10, 96, 0, 10];
const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const VIP6: [u8; 16] = [0xfd, 0, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

/// One's-complement sum of `data` (odd length padded), unfolded.
fn ones(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn folds_to_ffff(mut s: u64) -> bool {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

/// The checks every answer must pass: an IPv4 or IPv6 packet filling the frame, TTL 64,
/// its IPv4 header checksum and its TCP/ICMP/ICMPv6 checksum right. Returns the L3
/// offset, whether IPv6 and the L4 offset.
fn check_answer(frame: &[u8]) -> (usize, bool, usize) {
    let l3 = 14;
    let ety = u16::from_be_bytes([frame[12], frame[13]]);
    match ety {
        0x0800 => {
            let ihl = usize::from(frame[l3] & 0xf) * 4;
            assert_eq!(frame[l3] >> 4, 4);
            let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
            assert_eq!(l3 + total, frame.len(), "IPv4 length fills the frame");
            assert!(
                total <= 576 || frame[l3 + 9] == 6,
                "an ICMP error fits 576 bytes"
            );
            assert_eq!(frame[l3 + 8], 64, "TTL");
            assert!(
                folds_to_ffff(ones(&frame[l3..l3 + ihl])),
                "IPv4 header checksum"
            );
            let l4 = l3 + ihl;
            let seg = &frame[l4..];
            match frame[l3 + 9] {
                6 => {
                    let pseudo = ones(&frame[l3 + 12..l3 + 20]) + 6 + seg.len() as u64;
                    assert!(folds_to_ffff(pseudo + ones(seg)), "TCP checksum");
                }
                1 => assert!(folds_to_ffff(ones(seg)), "ICMP checksum"),
                p => panic!("answer of protocol {p}"),
            }
            (l3, false, l4)
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]));
            assert_eq!(l3 + 40 + plen, frame.len(), "IPv6 length fills the frame");
            assert_eq!(frame[l3 + 7], 64, "hop limit");
            let nh = frame[l3 + 6];
            assert!(nh == 6 || (nh == 58 && 40 + plen <= 1280), "{nh} / {plen}");
            let l4 = l3 + 40;
            let pseudo = ones(&frame[l3 + 8..l3 + 40]) + u64::from(nh) + plen as u64;
            assert!(folds_to_ffff(pseudo + ones(&frame[l4..])), "L4 checksum");
            (l3, true, l4)
        }
        t => panic!("answer of ethertype {t:#x}"),
    }
}

fn answer(frame: &[u8], partial: bool) -> Option<(Answer, Vec<u8>)> {
    let mut out = vec![0xa5; 7];
    let a = build_answer(frame, partial, &mut out);
    match a {
        Some(a) => {
            check_answer(&out);
            Some((a, out))
        }
        None => {
            assert!(out.is_empty());
            None
        }
    }
}

fn tcp4(flags: &str, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv4(CLIENT, VIP, 63)
        .tcp(40000, 81, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => unreachable!(),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn tcp6(flags: &str, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv6(CLIENT6, VIP6, 63)
        .tcp(40000, 81, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            _ => unreachable!(),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp4(payload_len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv4(CLIENT, VIP, 63)
        .udp(40000, 81)
        .write(&mut v, &vec![0x5a; payload_len])
        .unwrap();
    v
}

fn udp6(payload_len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv6(CLIENT6, VIP6, 63)
        .udp(40000, 81)
        .write(&mut v, &vec![0x5a; payload_len])
        .unwrap();
    v
}

fn tcp_of(out: &[u8]) -> etherparse::TcpHeader {
    let h = PacketHeaders::from_ethernet_slice(out).unwrap();
    let Some(TransportHeader::Tcp(t)) = h.transport else {
        panic!("not TCP")
    };
    assert!(h.payload.slice().is_empty(), "a RST carries no data");
    t
}

fn macs_swapped(out: &[u8]) {
    assert_eq!(&out[0..6], &CLIENT_MAC, "to the sender's MAC");
    assert_eq!(&out[6..12], &GW_MAC, "from the MAC it was sent to");
}

#[test]
fn a_syn_gets_rst_ack_acking_the_syn() {
    let (a, out) = answer(&tcp4("S", 1000, 0, &[]), false).unwrap();
    assert_eq!(a, Answer::TcpRst);
    macs_swapped(&out);
    let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!("not IPv4")
    };
    assert_eq!((ip.source, ip.destination), (VIP, CLIENT));
    let t = tcp_of(&out);
    assert_eq!((t.source_port, t.destination_port), (81, 40000));
    assert!(t.rst && t.ack && !t.syn);
    assert_eq!(t.sequence_number, 0);
    assert_eq!(t.acknowledgment_number, 1001, "seq + SYN");
}

#[test]
fn an_ack_segment_with_data_gets_a_rst_at_its_ack() {
    let (_, out) = answer(&tcp4("AP", 5000, 777_777, b"GET / HTTP/1.1\r\n"), false).unwrap();
    let t = tcp_of(&out);
    assert!(t.rst && !t.ack);
    assert_eq!(t.sequence_number, 777_777);
    assert_eq!(t.acknowledgment_number, 0);
    // Without ACK: ack = seq + data + FIN.
    let (_, out) = answer(&tcp4("F", 5000, 0, b"0123456789"), false).unwrap();
    let t = tcp_of(&out);
    assert!(t.rst && t.ack);
    assert_eq!(t.acknowledgment_number, 5011);
}

#[test]
fn tcp_over_ipv6_gets_a_rst() {
    let (a, out) = answer(&tcp6("S", u32::MAX, 0, &[]), false).unwrap();
    assert_eq!(a, Answer::TcpRst);
    macs_swapped(&out);
    let t = tcp_of(&out);
    assert!(t.rst && t.ack);
    assert_eq!(t.acknowledgment_number, 0, "seq + 1 wraps");
    let (_, out) = answer(&tcp6("A", 1, 42, b"data"), false).unwrap();
    assert_eq!(&out[14 + 8..14 + 24], &VIP6);
    assert_eq!(&out[14 + 24..14 + 40], &CLIENT6);
    let t = tcp_of(&out);
    assert!(t.rst && !t.ack);
    assert_eq!(t.sequence_number, 42);
}

#[test]
fn udp_over_ipv4_gets_port_unreachable_quoting_the_datagram() {
    let orig = udp4(20);
    let (a, out) = answer(&orig, false).unwrap();
    assert_eq!(a, Answer::Icmpv4PortUnreachable);
    macs_swapped(&out);
    let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
    let Some(NetHeaders::Ipv4(ip, _)) = &h.net else {
        panic!("not IPv4")
    };
    assert_eq!((ip.source, ip.destination), (VIP, CLIENT));
    let Some(TransportHeader::Icmpv4(icmp)) = &h.transport else {
        panic!("not ICMP")
    };
    assert!(matches!(
        icmp.icmp_type,
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
    ));
    // The whole original IP packet is quoted (it is small).
    assert_eq!(&out[14 + 20 + 8..], &orig[14..]);
    // A large one: as much as fits in 576 bytes.
    let big = udp4(1400);
    let (_, out) = answer(&big, false).unwrap();
    assert_eq!(out.len(), 14 + 576);
    assert_eq!(&out[14 + 28..], &big[14..14 + 548]);
}

#[test]
fn other_ipv4_protocols_get_port_unreachable_too() {
    // An ICMP echo request (iptables' REJECT answers port unreachable whatever the
    // protocol).
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv4(CLIENT, VIP, 63)
        .icmpv4_echo_request(7, 1)
        .write(&mut v, b"ping")
        .unwrap();
    let (a, out) = answer(&v, false).unwrap();
    assert_eq!(a, Answer::Icmpv4PortUnreachable);
    assert_eq!((out[34], out[35]), (3, 3));
    // SCTP (protocol 132), with no checksum to check.
    let mut v = udp4(12);
    v[14 + 9] = 132;
    v[14 + 10..14 + 12].fill(0);
    let c = !crate::wire::checksum::fold(ones(&v[14..34]));
    v[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    let (a, _) = answer(&v, false).unwrap();
    assert_eq!(a, Answer::Icmpv4PortUnreachable);
}

#[test]
fn udp_over_ipv6_gets_port_unreachable_within_1280_bytes() {
    let orig = udp6(20);
    let (a, out) = answer(&orig, false).unwrap();
    assert_eq!(a, Answer::Icmpv6PortUnreachable);
    macs_swapped(&out);
    let h = PacketHeaders::from_ethernet_slice(&out).unwrap();
    let Some(TransportHeader::Icmpv6(icmp)) = &h.transport else {
        panic!("not ICMPv6")
    };
    assert!(matches!(
        icmp.icmp_type,
        Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port)
    ));
    assert_eq!(&out[14 + 8..14 + 24], &VIP6);
    assert_eq!(&out[14 + 48..], &orig[14..]);
    let (_, out) = answer(&udp6(1400), false).unwrap();
    assert_eq!(out.len(), 14 + 1280);
}

/// Leave the frame's TCP/UDP checksum partial: the field holds the pseudo-header sum, as
/// a Pod's kernel hands it over with `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
fn make_partial(frame: &mut [u8], csum_at: usize) {
    let v6 = frame[12] == 0x86;
    let (l3, len_at) = (14, if v6 { 14 + 4 } else { 14 + 2 });
    let (addrs, proto, l4_len) = if v6 {
        let plen = usize::from(u16::from_be_bytes([frame[len_at], frame[len_at + 1]]));
        (l3 + 8..l3 + 40, frame[l3 + 6], plen)
    } else {
        let total = usize::from(u16::from_be_bytes([frame[len_at], frame[len_at + 1]]));
        (l3 + 12..l3 + 20, frame[l3 + 9], total - 20)
    };
    let sum = ones(&frame[addrs]) + u64::from(proto) + l4_len as u64;
    let c = crate::wire::checksum::fold(sum);
    frame[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

fn partial_packet(frame: &[u8], csum_start: u16, csum_offset: u16) -> Packet {
    let mut p = Packet::from_frame(frame, 4);
    p.vnet.flags = VirtioNetHdr::NEEDS_CSUM;
    p.vnet.csum_start = csum_start;
    p.vnet.csum_offset = csum_offset;
    p
}

#[derive(Default)]
struct Rec(Vec<(u32, Packet)>);

impl Sink for Rec {
    fn output(&mut self, port: u32, pkt: &Packet) {
        self.0.push((port, pkt.clone()));
    }
}

#[test]
fn partial_checksums_are_answered_with_full_ones() {
    // A SYN with a partial checksum: not a bad checksum, answered.
    let mut syn = tcp4("S", 9, 0, &[]);
    make_partial(&mut syn, 14 + 20 + 16);
    assert!(
        answer(&syn, false).is_none(),
        "read as a bad checksum when not partial"
    );
    let mut r = Rejecter::default();
    let mut rec = Rec::default();
    r.reject(&partial_packet(&syn, 34, 16), 0, &mut rec);
    assert_eq!(r.stats().sent, 1);
    let (port, a) = &rec.0[0];
    assert_eq!(*port, 4, "out of in_port");
    assert_eq!(a.vnet, VirtioNetHdr::default(), "no offload on the answer");
    check_answer(a.data());
    assert_eq!(tcp_of(a.data()).acknowledgment_number, 10);

    let mut syn6 = tcp6("S", 9, 0, &[]);
    make_partial(&mut syn6, 14 + 40 + 16);
    r.reject(&partial_packet(&syn6, 54, 16), 0, &mut rec);
    assert_eq!(r.stats().sent, 2);
    check_answer(rec.0[1].1.data());

    // UDP with a partial checksum: the error quotes the bytes as they were.
    let mut u = udp4(30);
    make_partial(&mut u, 14 + 20 + 6);
    r.reject(&partial_packet(&u, 34, 6), 0, &mut rec);
    let a = rec.0[2].1.data();
    check_answer(a);
    assert_eq!(&a[14 + 28..], &u[14..]);
    let mut u6 = udp6(30);
    make_partial(&mut u6, 14 + 40 + 6);
    r.reject(&partial_packet(&u6, 54, 6), 0, &mut rec);
    let a = rec.0[3].1.data();
    check_answer(a);
    assert_eq!(&a[14 + 48..], &u6[14..]);
    assert_eq!(r.stats().sent, 4);
}

#[test]
fn what_must_not_be_answered_is_not() {
    let refix = |f: &mut Vec<u8>| {
        f[24..26].fill(0);
        let c = !crate::wire::checksum::fold(ones(&f[14..34]));
        f[24..26].copy_from_slice(&c.to_be_bytes());
    };
    // A RST.
    assert!(answer(&tcp4("R", 1, 0, &[]), false).is_none());
    assert!(answer(&tcp4("RA", 1, 5, &[]), false).is_none());
    // An ICMP error (port unreachable about something).
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv4(CLIENT, VIP, 63)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut v, &udp4(4)[14..])
        .unwrap();
    assert!(answer(&v, false).is_none());
    // An ICMPv6 error.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC)
        .ipv6(CLIENT6, VIP6, 63)
        .icmpv6(Icmpv6Type::TimeExceeded(
            etherparse::icmpv6::TimeExceededCode::HopLimitExceeded,
        ))
        .write(&mut v, &udp6(4)[14..])
        .unwrap();
    assert!(answer(&v, false).is_none());
    // Broadcast and multicast destinations, Ethernet or IP.
    let mut b = udp4(8);
    b[0..6].fill(0xff);
    assert!(answer(&b, false).is_none());
    let mut b = udp4(8);
    b[30..34].copy_from_slice(&[255, 255, 255, 255]);
    refix(&mut b);
    assert!(answer(&b, false).is_none());
    let mut m = udp4(8);
    m[30..34].copy_from_slice(&[224, 0, 0, 251]);
    refix(&mut m);
    assert!(answer(&m, false).is_none());
    let mut m6 = udp6(8);
    m6[38..54].copy_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]);
    assert!(answer(&m6, false).is_none());
    // A fragment that is not the first.
    let mut f = udp4(8);
    f[20..22].copy_from_slice(&[0x00, 0x10]);
    refix(&mut f);
    assert!(answer(&f, false).is_none());
    let mut f = tcp4("S", 1, 0, &[]);
    f[20..22].copy_from_slice(&[0x20, 0x00]);
    refix(&mut f);
    assert!(answer(&f, false).is_none(), "a TCP fragment");
    // Not IP (ARP).
    let mut arp = vec![0u8; 42];
    arp[..6].copy_from_slice(&GW_MAC);
    arp[6..12].copy_from_slice(&CLIENT_MAC);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(answer(&arp, false).is_none());
    // A wrong IPv4 header checksum.
    let mut bad = udp4(8);
    bad[24] ^= 1;
    assert!(answer(&bad, false).is_none());
    // And the Rejecter counts them.
    let mut r = Rejecter::default();
    let mut rec = Rec::default();
    r.reject(&Packet::from_frame(&bad, 1), 0, &mut rec);
    r.reject(&Packet::from_frame(&arp, 1), 0, &mut rec);
    assert!(rec.0.is_empty());
    assert_eq!(
        r.stats(),
        RejectStats {
            unanswered: 2,
            ..RejectStats::default()
        }
    );
}

#[test]
fn answers_are_rate_limited_by_a_token_bucket() {
    let mut r = Rejecter::default();
    let mut rec = Rec::default();
    let syn = Packet::from_frame(&tcp4("S", 1, 0, &[]), 2);
    for _ in 0..60 {
        r.reject(&syn, 10_000, &mut rec);
    }
    assert_eq!(r.stats().sent, BURST);
    assert_eq!(r.stats().rate_limited, 60 - BURST);
    // 1000 a second is one a millisecond.
    for _ in 0..20 {
        r.reject(&syn, 10_007, &mut rec);
    }
    assert_eq!(r.stats().sent, BURST + 7);
    // After a quiet second, a full burst again, and no more.
    for _ in 0..100 {
        r.reject(&syn, 20_000, &mut rec);
    }
    assert_eq!(r.stats().sent, 2 * BURST + 7);
    assert_eq!(rec.0.len() as u64, r.stats().sent);
    // A clock going back refills nothing.
    let mut b = TokenBucket::new(1000, 1);
    assert!(b.allow(100));
    assert!(!b.allow(50));
    assert!(!b.allow(100));
    assert!(b.allow(101));
}

#[test]
fn an_answer_from_a_tunnel_goes_back_through_it() {
    let mut r = Rejecter::default();
    let mut rec = Rec::default();
    let mut p = Packet::from_frame(&udp4(8), 9);
    p.tun.id = 5;
    p.tun.src = 0x0a00_0001;
    p.tun.dst = 0x0a00_0002;
    r.reject(&p, 0, &mut rec);
    let (port, a) = &rec.0[0];
    assert_eq!(*port, 9);
    assert_eq!(
        (a.tun.id, a.tun.src, a.tun.dst),
        (5, 0x0a00_0002, 0x0a00_0001)
    );
}

#[test]
fn describe_says_what_trace_would_send() {
    let mut f = Flow::ZERO;
    f.set_in_port(3);
    f.set_dl_type(ethertype::IPV4);
    f.set_nw_src(u32::from_be_bytes(CLIENT));
    f.set_nw_dst(u32::from_be_bytes(VIP));
    f.set_nw_proto(ipproto::TCP);
    f.set_tp_src(40000);
    f.set_tp_dst(81);
    f.set_tcp_flags(0x002);
    let d = describe(&f);
    assert!(
        d.contains("RST|ACK")
            && d.contains("from 10.96.0.10 port 81 to 10.244.1.2 port 40000")
            && d.contains("in_port 3"),
        "{d}"
    );
    f.set_tcp_flags(0x004);
    assert!(describe(&f).contains("not answered (a RST)"));
    f.set_nw_proto(ipproto::UDP);
    assert!(describe(&f).contains("port unreachable"));
    f.set_nw_frag(frag::ANY | frag::LATER);
    assert!(describe(&f).contains("not answered"));
}

/// A frame built from random fields, then perhaps damaged.
fn arb_frame() -> impl Strategy<Value = (Vec<u8>, bool, Vec<(usize, u8)>)> {
    let kind = 0u8..6;
    (
        kind,
        any::<(u16, u16, u32, u32)>(),
        any::<(bool, bool, bool, bool)>(),
        prop::collection::vec(any::<u8>(), 0..1600),
        any::<bool>(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
    )
        .prop_map(
            |(kind, (sp, dp, seq, ack), (syn, a, fin, rst), payload, partial, damage)| {
                let eth = PacketBuilder::ethernet2(CLIENT_MAC, GW_MAC);
                let mut v = Vec::new();
                let tcp = |b: etherparse::PacketBuilderStep<etherparse::TcpHeader>| {
                    let mut b = b;
                    if syn {
                        b = b.syn();
                    }
                    if a {
                        b = b.ack(ack);
                    }
                    if fin {
                        b = b.fin();
                    }
                    if rst {
                        b = b.rst();
                    }
                    b
                };
                match kind {
                    0 => tcp(eth.ipv4(CLIENT, VIP, 64).tcp(sp, dp, seq, 1000))
                        .write(&mut v, &payload)
                        .unwrap(),
                    1 => tcp(eth.ipv6(CLIENT6, VIP6, 64).tcp(sp, dp, seq, 1000))
                        .write(&mut v, &payload)
                        .unwrap(),
                    2 => eth
                        .ipv4(CLIENT, VIP, 64)
                        .udp(sp, dp)
                        .write(&mut v, &payload)
                        .unwrap(),
                    3 => eth
                        .ipv6(CLIENT6, VIP6, 64)
                        .udp(sp, dp)
                        .write(&mut v, &payload)
                        .unwrap(),
                    4 => eth
                        .ipv4(CLIENT, VIP, 64)
                        .icmpv4_raw(sp as u8, dp as u8, seq.to_be_bytes())
                        .write(&mut v, &payload)
                        .unwrap(),
                    _ => {
                        v = payload;
                    }
                }
                (v, partial, damage)
            },
        )
}

proptest! {
    #[test]
    fn any_frame_never_panics_and_any_answer_checks_out((frame, partial, damage) in arb_frame()) {
        let mut frame = frame;
        for (at, x) in damage {
            if !frame.is_empty() {
                let i = at % frame.len();
                frame[i] ^= x;
            }
        }
        let mut out = Vec::new();
        if build_answer(&frame, partial, &mut out).is_some() {
            check_answer(&out);
            // Back to the sender.
            prop_assert_eq!(&out[0..6], &frame[6..12]);
        } else {
            prop_assert!(out.is_empty());
        }
        let mut p = Packet::from_frame(&frame, 1);
        if partial {
            p.vnet.flags = VirtioNetHdr::NEEDS_CSUM;
        }
        let mut r = Rejecter::default();
        let mut rec = Rec::default();
        r.reject(&p, 0, &mut rec);
        let s = r.stats();
        prop_assert_eq!(s.sent + s.unanswered, 1);
    }
}
