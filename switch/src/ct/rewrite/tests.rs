//! The rewritten bytes are compared with frames built from scratch by etherparse, whose
//! checksums are computed fresh: the independent oracle.

use super::*;
use crate::flow::extract;
use crate::wire::checksum::{complete_partial, crc32c, pseudo_header_v4};
use etherparse::{IpNumber, PacketBuilder};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    EchoRequest,
    EchoReply,
    Sctp,
}

/// What a packet's headers say: addresses, ports (for ICMP, `sport` is the identifier and
/// `dport` the sequence number).
#[derive(Clone, Copy, Debug)]
struct Tuple {
    proto: Proto,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

/// The IP packet (no Ethernet header) of `t` carrying `payload`.
fn ip_packet(t: &Tuple, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let ip = match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!(),
    };
    let v6 = t.src.is_ipv6();
    match t.proto {
        Proto::Tcp => ip
            .tcp(t.sport, t.dport, 0x0102_0304, 4096)
            .write(&mut out, payload),
        Proto::Udp => ip.udp(t.sport, t.dport).write(&mut out, payload),
        Proto::EchoRequest if v6 => ip
            .icmpv6_echo_request(t.sport, t.dport)
            .write(&mut out, payload),
        Proto::EchoReply if v6 => ip
            .icmpv6_echo_reply(t.sport, t.dport)
            .write(&mut out, payload),
        Proto::EchoRequest => ip
            .icmpv4_echo_request(t.sport, t.dport)
            .write(&mut out, payload),
        Proto::EchoReply => ip
            .icmpv4_echo_reply(t.sport, t.dport)
            .write(&mut out, payload),
        Proto::Sctp => {
            let mut sctp = Vec::new();
            sctp.extend_from_slice(&t.sport.to_be_bytes());
            sctp.extend_from_slice(&t.dport.to_be_bytes());
            sctp.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
            sctp.extend_from_slice(&[0; 4]);
            sctp.extend_from_slice(payload);
            let crc = crc32c(&sctp);
            sctp[8..12].copy_from_slice(&crc.to_le_bytes());
            ip.write(&mut out, IpNumber::SCTP, &sctp)
        }
    }
    .unwrap();
    out
}

fn eth(ip: &[u8]) -> Vec<u8> {
    let mut f = MAC_B.to_vec();
    f.extend_from_slice(&MAC_A);
    let ty: u16 = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

fn frame(t: &Tuple, payload: &[u8]) -> Vec<u8> {
    eth(&ip_packet(t, payload))
}

fn parsed(frame: &[u8]) -> (Packet, Flow, Layers) {
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(frame, &mut key, &mut layers).expect("a well-formed frame");
    (Packet::from_frame(frame, 1), key, layers)
}

/// The transport checksum field's offset from the transport header, and whether the
/// pseudo-header is in the sum.
fn csum_field(t: &Tuple) -> Option<(usize, bool)> {
    match t.proto {
        Proto::Tcp => Some((16, true)),
        Proto::Udp => Some((6, true)),
        Proto::EchoRequest | Proto::EchoReply => Some((2, t.src.is_ipv6())),
        Proto::Sctp => None,
    }
}

fn ip_proto(t: &Tuple) -> u8 {
    match (t.proto, t.src.is_ipv6()) {
        (Proto::Tcp, _) => 6,
        (Proto::Udp, _) => 17,
        (Proto::Sctp, _) => 132,
        (_, true) => 58,
        (_, false) => 1,
    }
}

/// The pseudo-header seed a sender leaves in a partial checksum field.
fn partial_seed(t: &Tuple, l4_len: usize) -> u16 {
    let len = l4_len as u32;
    match (t.src, t.dst) {
        // ICMPv4 has no pseudo-header: the seed is zero.
        (IpAddr::V4(_), _) if matches!(t.proto, Proto::EchoRequest | Proto::EchoReply) => 0,
        (IpAddr::V4(s), IpAddr::V4(d)) => fold(pseudo_header_v4(s, d, ip_proto(t), len)),
        (IpAddr::V6(s), IpAddr::V6(d)) => fold(pseudo_header_v6(s, d, ip_proto(t), len)),
        _ => unreachable!(),
    }
}

/// The tuple after NAT with `src` and `dst`, as [`nat_packet`] documents it.
fn natted(t: &Tuple, src: Option<Endpoint>, dst: Option<Endpoint>) -> Tuple {
    let mut n = *t;
    if let Some(e) = src {
        n.src = e.addr;
    }
    if let Some(e) = dst {
        n.dst = e.addr;
    }
    let (sp, dp) = (src.and_then(|e| e.port), dst.and_then(|e| e.port));
    match t.proto {
        Proto::Tcp | Proto::Udp | Proto::Sctp => {
            n.sport = sp.unwrap_or(t.sport);
            n.dport = dp.unwrap_or(t.dport);
        }
        Proto::EchoRequest | Proto::EchoReply => n.sport = sp.or(dp).unwrap_or(t.sport),
    }
    n
}

fn proto_strategy() -> impl Strategy<Value = Proto> {
    prop_oneof![
        Just(Proto::Tcp),
        Just(Proto::Udp),
        Just(Proto::EchoRequest),
        Just(Proto::EchoReply),
        Just(Proto::Sctp),
    ]
}

fn addr(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        Ipv6Addr::from_bits(bits).into()
    } else {
        Ipv4Addr::from_bits(bits as u32).into()
    }
}

prop_compose! {
    fn tuple_strategy()(v6 in any::<bool>(), proto in proto_strategy(),
                        s in any::<u128>(), d in any::<u128>(),
                        sport in any::<u16>(), dport in any::<u16>()) -> Tuple {
        Tuple { proto, src: addr(v6, s), dst: addr(v6, d), sport, dport }
    }
}

prop_compose! {
    /// An endpoint of the family `v6` (or none), with or without a port.
    fn endpoint_strategy(v6: bool)(some in any::<bool>(), a in any::<u128>(),
                                   port in proptest::option::of(any::<u16>()))
                                   -> Option<Endpoint> {
        some.then_some(Endpoint { addr: addr(v6, a), port })
    }
}

fn rd(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// One's complement 0 and 0xffff are the same value: a checksum finished by a device may
/// be either where a fresh computation gives the other.
fn same_csum(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

fn sctp_crc_ok(frame: &[u8], l4: usize) -> bool {
    let mut s = frame[l4..].to_vec();
    let stored = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    s[8..12].fill(0);
    crc32c(&s) == stored
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Full checksums: the rewritten frame is byte for byte the frame built from scratch
    /// with the new tuple.
    #[test]
    fn nat_full_checksums_match_fresh_frame(
        (t, src, dst) in tuple_strategy().prop_flat_map(|t| {
            let v6 = t.src.is_ipv6();
            (Just(t), endpoint_strategy(v6), endpoint_strategy(v6))
        }),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let before = frame(&t, &payload);
        let (mut pkt, key, layers) = parsed(&before);
        prop_assert!(nat_packet(&mut pkt, &key, &layers, src, dst));
        let want = frame(&natted(&t, src, dst), &payload);
        prop_assert_eq!(pkt.data(), &want[..]);
        if t.proto == Proto::Sctp {
            prop_assert!(sctp_crc_ok(pkt.data(), layers.l4 as usize));
        }
    }

    /// Partial checksums (virtio NEEDS_CSUM at the transport header, with or without TSO):
    /// the field is updated for the pseudo-header only, and finishing it as a device would
    /// gives the checksum of the frame built from scratch.
    #[test]
    fn nat_partial_checksums_complete_right(
        (t, src, dst) in tuple_strategy().prop_filter("has an Internet checksum",
                                                       |t| t.proto != Proto::Sctp)
            .prop_flat_map(|t| {
                let v6 = t.src.is_ipv6();
                (Just(t), endpoint_strategy(v6), endpoint_strategy(v6))
            }),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        tso in any::<bool>(),
    ) {
        let mut before = frame(&t, &payload);
        let (_, _, layers) = parsed(&before);
        let l4 = layers.l4 as usize;
        let (ofs, _) = csum_field(&t).unwrap();
        let seed = partial_seed(&t, before.len() - l4);
        before[l4 + ofs..l4 + ofs + 2].copy_from_slice(&seed.to_be_bytes());
        let (mut pkt, key, layers) = parsed(&before);
        pkt.vnet.flags = VirtioNetHdr::NEEDS_CSUM;
        pkt.vnet.csum_start = l4 as u16;
        pkt.vnet.csum_offset = ofs as u16;
        if tso && t.proto == Proto::Tcp {
            pkt.vnet.gso_type = if t.src.is_ipv6() {
                VirtioNetHdr::GSO_TCPV6
            } else {
                VirtioNetHdr::GSO_TCPV4
            };
            pkt.vnet.gso_size = 100;
        }
        prop_assert!(nat_packet(&mut pkt, &key, &layers, src, dst));

        let n = natted(&t, src, dst);
        let want = frame(&n, &payload);
        let mut got = pkt.data().to_vec();
        // Still partial: the seed of the new pseudo-header.
        prop_assert_eq!(rd(&got, l4 + ofs), partial_seed(&n, got.len() - l4));
        complete_partial(&mut got, l4, ofs).unwrap();
        prop_assert!(same_csum(rd(&got, l4 + ofs), rd(&want, l4 + ofs)),
                     "{:#x} vs {:#x}", rd(&got, l4 + ofs), rd(&want, l4 + ofs));
        got[l4 + ofs..l4 + ofs + 2].copy_from_slice(&want[l4 + ofs..l4 + ofs + 2]);
        prop_assert_eq!(got, want);
    }

    /// A UDP-over-IPv4 checksum of zero means "none" and stays zero.
    #[test]
    fn nat_udp4_zero_checksum_stays_zero(
        s in any::<u32>(), d in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
        src in endpoint_strategy(false), dst in endpoint_strategy(false),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let t = Tuple { proto: Proto::Udp, src: addr(false, s.into()), dst: addr(false, d.into()),
                        sport, dport };
        let mut before = frame(&t, &payload);
        before[14 + 20 + 6..14 + 20 + 8].fill(0);
        let (mut pkt, key, layers) = parsed(&before);
        prop_assert!(nat_packet(&mut pkt, &key, &layers, src, dst));
        let mut want = frame(&natted(&t, src, dst), &payload);
        want[14 + 20 + 6..14 + 20 + 8].fill(0);
        prop_assert_eq!(pkt.data(), &want[..]);
    }

    /// Nothing panics on arbitrary bytes, whatever the offload state and endpoints: either
    /// the packet is rewritten, or it is left exactly as it was. A valid IPv4 header
    /// checksum stays valid.
    #[test]
    fn no_panic_on_arbitrary_frames(
        base in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..120),
            (tuple_strategy(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(t, p)| frame(&t, &p)),
            (tuple_strategy(), 0usize..80, any::<u8>())
                .prop_map(|(t, cut, ty)| error_frame(&t, ty % 4, cut)),
        ],
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<proptest::sample::Index>(),
        truncate in any::<bool>(),
        vnet in (any::<u8>(), any::<u8>(), any::<u16>(), any::<u16>()),
        eps in (any::<bool>(), any::<[Option<(u128, Option<u16>)>; 4]>()),
    ) {
        let mut f = base;
        if !f.is_empty() {
            for (i, v) in flips {
                let i = i.index(f.len());
                f[i] = v;
            }
            if truncate {
                f.truncate(cut.index(f.len()));
            }
        }
        let mut key = Flow::ZERO;
        let mut layers = Layers::default();
        let _ = extract(&f, &mut key, &mut layers);
        let mut pkt = Packet::from_frame(&f, 1);
        pkt.vnet = VirtioNetHdr {
            flags: vnet.0 & 1,
            gso_type: vnet.1 % 6,
            csum_start: if vnet.2 & 1 == 0 { layers.l4 as u16 } else { vnet.2 },
            csum_offset: vnet.3 % 20,
            ..VirtioNetHdr::default()
        };
        let (v6, e) = eps;
        let ep = |x: Option<(u128, Option<u16>)>| x.map(|(a, port)| Endpoint { addr: addr(v6, a), port });
        let l3 = layers.l3 as usize;
        let hdr_ok = key.dl_type() == ethertype::IPV4 && ipv4_header_ok(&f, l3) == Some(true);

        let _ = icmp_error_quote(&pkt, &key, &layers);
        let before = pkt.data().to_vec();
        if !nat_packet(&mut pkt, &key, &layers, ep(e[0]), ep(e[1])) {
            prop_assert_eq!(pkt.data(), &before[..]);
        }
        if hdr_ok {
            prop_assert_eq!(ipv4_header_ok(pkt.data(), l3), Some(true));
        }
        let before = pkt.data().to_vec();
        if !nat_icmp_error(&mut pkt, &key, &layers, ep(e[2]).map(|e| e.addr),
                           ep(e[3]).map(|e| e.addr), ep(e[0]), ep(e[1])) {
            prop_assert_eq!(pkt.data(), &before[..]);
        }
        if hdr_ok {
            prop_assert_eq!(ipv4_header_ok(pkt.data(), l3), Some(true));
        }
    }
}

/// The ICMP error (`kind`: 0 destination/port unreachable, 1 time exceeded, 2 fragmentation
/// needed / packet too big, 3 parameter problem) that a router at 203.0.113.1 (or
/// 2001:db8::1) sends back to the source of the packet `t`, quoting its first `quote` bytes
/// (at most the whole packet).
fn error_frame(t: &Tuple, kind: u8, quote: usize) -> Vec<u8> {
    error_frame_from(t, kind, quote, None)
}

fn error_frame_from(t: &Tuple, kind: u8, quote: usize, router: Option<IpAddr>) -> Vec<u8> {
    let inner = ip_packet(t, b"quoted payload, 27 bytes!!");
    let quote = &inner[..quote.min(inner.len())];
    let mut out = Vec::new();
    match t.src {
        IpAddr::V4(dst) => {
            let router = match router {
                Some(IpAddr::V4(r)) => r,
                _ => Ipv4Addr::new(203, 0, 113, 1),
            };
            let (ty, code, rest) = match kind {
                0 => (3, 3, [0; 4]),
                1 => (11, 0, [0; 4]),
                2 => (3, 4, [0, 0, 0x05, 0xdc]),
                _ => (12, 0, [20, 0, 0, 0]),
            };
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4(router.octets(), dst.octets(), 64)
                .icmpv4_raw(ty, code, rest)
                .write(&mut out, quote)
                .unwrap();
        }
        IpAddr::V6(dst) => {
            let router = match router {
                Some(IpAddr::V6(r)) => r,
                _ => "2001:db8::1".parse().unwrap(),
            };
            let (ty, code, rest) = match kind {
                0 => (1, 4, [0; 4]),
                1 => (3, 0, [0; 4]),
                2 => (2, 0, [0, 0, 0x05, 0x00]),
                _ => (4, 0, [0, 0, 0, 40]),
            };
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6(router.octets(), dst.octets(), 64)
                .icmpv6_raw(ty, code, rest)
                .write(&mut out, quote)
                .unwrap();
        }
    }
    out
}

fn v4(s: &str) -> IpAddr {
    s.parse::<Ipv4Addr>().unwrap().into()
}
fn v6(s: &str) -> IpAddr {
    s.parse::<Ipv6Addr>().unwrap().into()
}

/// A pod (10.0.0.5:40000) talks to 8.8.8.8:53 through SNAT to 192.168.1.1:61000. An error
/// about a packet of that connection comes back to 192.168.1.1, quoting the packet as it
/// left (from 192.168.1.1:61000); NAT makes it an error to the pod quoting the packet the
/// pod sent. Likewise for IPv6.
fn snat_cases() -> Vec<(Tuple, Tuple)> {
    let mut v = Vec::new();
    for proto in [Proto::Udp, Proto::Tcp, Proto::EchoRequest] {
        for (pod, public, server) in [
            (v4("10.0.0.5"), v4("192.168.1.1"), v4("8.8.8.8")),
            (v6("fd00::5"), v6("2001:db8:1::1"), v6("2001:4860::8888")),
        ] {
            let (sport, nport, dport) = if proto == Proto::EchoRequest {
                (0x1234, 0x4321, 7)
            } else {
                (40000, 61000, 53)
            };
            let on_wire = Tuple {
                proto,
                src: public,
                dst: server,
                sport: nport,
                dport,
            };
            let at_pod = Tuple {
                src: pod,
                sport,
                ..on_wire
            };
            v.push((on_wire, at_pod));
        }
    }
    v
}

#[test]
fn icmp_errors_are_natted_like_the_packet_they_quote() {
    for (on_wire, at_pod) in snat_cases() {
        let full = ip_packet(&on_wire, b"quoted payload, 27 bytes!!").len();
        // Linux quotes as much as fits; RFC 792 routers only the IP header and 8 bytes.
        let hdr = if on_wire.src.is_ipv6() { 40 } else { 20 };
        for quote in [full, full - 5, hdr + 8, hdr + 20] {
            for kind in 0..4 {
                let before = error_frame(&on_wire, kind, quote);
                let (mut pkt, key, layers) = parsed(&before);
                let q = icmp_error_quote(&pkt, &key, &layers)
                    .unwrap_or_else(|| panic!("{on_wire:?} kind {kind} quote {quote}"));
                assert_eq!((q.src, q.dst), (on_wire.src, on_wire.dst));
                if on_wire.proto == Proto::EchoRequest {
                    assert_eq!(q.icmp_id, Some(on_wire.sport));
                    assert_eq!(q.icmp_type, if on_wire.src.is_ipv6() { 128 } else { 8 });
                    assert_eq!((q.sport, q.dport), (0, 0));
                } else {
                    assert_eq!((q.sport, q.dport), (on_wire.sport, on_wire.dport));
                    assert_eq!(q.icmp_id, None);
                }
                assert_eq!(q.error_type, before[layers.l4 as usize]);

                assert!(nat_icmp_error(
                    &mut pkt,
                    &key,
                    &layers,
                    None,
                    Some(at_pod.src),
                    Some(Endpoint::with_port(at_pod.src, at_pod.sport)),
                    None,
                ));
                let want = error_frame(&at_pod, kind, quote);
                assert_eq!(
                    pkt.data(),
                    &want[..],
                    "{on_wire:?} kind {kind} quote {quote}"
                );
                let l3 = layers.l3 as usize;
                if !on_wire.src.is_ipv6() {
                    assert_eq!(ipv4_header_ok(pkt.data(), l3), Some(true));
                    assert_eq!(
                        ipv4_header_ok(pkt.data(), layers.l4 as usize + 8),
                        Some(true)
                    );
                }
            }
        }
    }
}

/// The error's source is NATed too (DNAT of a service: the error comes from the backend
/// pod and must look like it came from the service address).
#[test]
fn icmp_error_outer_source_and_quoted_destination() {
    let service = Tuple {
        proto: Proto::Udp,
        src: v4("10.0.0.5"),
        dst: v4("10.96.0.10"),
        sport: 40000,
        dport: 53,
    };
    let backend = Tuple {
        dst: v4("10.0.1.7"),
        dport: 5353,
        ..service
    };
    // The backend answers port unreachable about the packet it got (to 10.0.1.7:5353).
    let before = error_frame_from(&backend, 0, 1000, Some(backend.dst));
    let (mut pkt, key, layers) = parsed(&before);
    assert!(nat_icmp_error(
        &mut pkt,
        &key,
        &layers,
        Some(service.dst),
        None,
        None,
        Some(Endpoint::with_port(service.dst, service.dport)),
    ));
    assert_eq!(
        pkt.data(),
        &error_frame_from(&service, 0, 1000, Some(service.dst))[..]
    );
}

#[test]
fn truncated_quotes_are_refused_whole() {
    for (on_wire, at_pod) in snat_cases() {
        let hdr = if on_wire.src.is_ipv6() { 40 } else { 20 };
        let full = ip_packet(&on_wire, b"quoted payload, 27 bytes!!").len();
        for quote in 0..=full {
            let before = error_frame(&on_wire, 0, quote);
            let (mut pkt, key, layers) = parsed(&before);
            let q = icmp_error_quote(&pkt, &key, &layers);
            assert_eq!(
                q.is_some(),
                quote >= hdr + 8,
                "quote {quote} of {on_wire:?}"
            );
            let ok = nat_icmp_error(
                &mut pkt,
                &key,
                &layers,
                None,
                Some(at_pod.src),
                Some(Endpoint::with_port(at_pod.src, at_pod.sport)),
                None,
            );
            assert_eq!(ok, q.is_some());
            if !ok {
                assert_eq!(pkt.data(), &before[..]);
            }
        }
        // And the outer frame cut short of its own lengths.
        let before = error_frame(&on_wire, 0, full);
        for cut in 0..before.len() {
            let mut key = Flow::ZERO;
            let mut layers = Layers::default();
            let _ = extract(&before[..cut], &mut key, &mut layers);
            let mut pkt = Packet::from_frame(&before[..cut], 1);
            assert_eq!(icmp_error_quote(&pkt, &key, &layers), None);
            assert!(!nat_icmp_error(
                &mut pkt,
                &key,
                &layers,
                None,
                Some(at_pod.src),
                None,
                None
            ));
        }
    }
}

#[test]
fn refused_icmp_errors() {
    let t = Tuple {
        proto: Proto::Udp,
        src: v4("192.168.1.1"),
        dst: v4("8.8.8.8"),
        sport: 61000,
        dport: 53,
    };
    let pod = Some(Endpoint::addr(v4("10.0.0.5")));
    let try_nat = |f: &[u8]| {
        let (mut pkt, key, layers) = parsed(f);
        let ok = nat_icmp_error(
            &mut pkt,
            &key,
            &layers,
            None,
            pod.map(|e| e.addr),
            pod,
            None,
        );
        assert_eq!(pkt.data(), f, "unchanged");
        ok
    };
    // A bad ICMP checksum: Linux drops the error rather than NAT it into a valid one.
    let mut bad = error_frame(&t, 0, 100);
    bad[14 + 20 + 2] ^= 1;
    assert!(!try_nat(&bad));
    // A redirect about a NATed connection.
    let mut redirect = error_frame(&t, 0, 100);
    let c = crate::wire::checksum::update16(rd(&redirect, 36), 0x0303, 0x0503);
    redirect[14 + 20] = 5;
    redirect[36..38].copy_from_slice(&c.to_be_bytes());
    assert!(
        icmp_error_quote(
            &parsed(&redirect).0,
            &parsed(&redirect).1,
            &parsed(&redirect).2
        )
        .is_some()
    );
    assert!(!try_nat(&redirect));
    // An endpoint of the other family.
    let f = error_frame(&t, 0, 100);
    let (mut pkt, key, layers) = parsed(&f);
    assert!(!nat_icmp_error(
        &mut pkt,
        &key,
        &layers,
        None,
        Some(v6("fd00::1")),
        None,
        None
    ));
    // Not an error: an echo request is a query.
    let echo = frame(
        &Tuple {
            proto: Proto::EchoRequest,
            ..t
        },
        b"x",
    );
    let (pkt, key, layers) = parsed(&echo);
    assert_eq!(icmp_error_quote(&pkt, &key, &layers), None);
    // An error quoting an error.
    let inner_err = error_frame(&t, 1, 100);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([1, 1, 1, 1], [192, 168, 1, 1], 64)
        .icmpv4_raw(3, 1, [0; 4])
        .write(&mut f, &inner_err[14..])
        .unwrap();
    let (pkt, key, layers) = parsed(&f);
    assert_eq!(icmp_error_quote(&pkt, &key, &layers), None);
}

/// An ICMPv6 error whose checksum is partial (NEEDS_CSUM): the field is updated for the
/// new outer addresses only, and finishing it gives the right checksum.
#[test]
fn partial_icmpv6_error() {
    let (on_wire, at_pod) = snat_cases()
        .into_iter()
        .find(|(t, _)| t.src.is_ipv6() && t.proto == Proto::Udp)
        .unwrap();
    let mut before = error_frame(&on_wire, 0, 1000);
    let l4 = 14 + 40;
    let len = before.len() - l4;
    let (IpAddr::V6(s), IpAddr::V6(d)) = (v6("2001:db8::1"), on_wire.src) else {
        unreachable!()
    };
    let seed = fold(pseudo_header_v6(s, d, 58, len as u32));
    before[l4 + 2..l4 + 4].copy_from_slice(&seed.to_be_bytes());
    let (mut pkt, key, layers) = parsed(&before);
    pkt.vnet.flags = VirtioNetHdr::NEEDS_CSUM;
    pkt.vnet.csum_start = l4 as u16;
    pkt.vnet.csum_offset = 2;
    assert!(nat_icmp_error(
        &mut pkt,
        &key,
        &layers,
        None,
        Some(at_pod.src),
        Some(Endpoint::with_port(at_pod.src, at_pod.sport)),
        None,
    ));
    let mut got = pkt.data().to_vec();
    complete_partial(&mut got, l4, 2).unwrap();
    let want = error_frame(&at_pod, 0, 1000);
    assert!(same_csum(rd(&got, l4 + 2), rd(&want, l4 + 2)));
    got[l4 + 2..l4 + 4].copy_from_slice(&want[l4 + 2..l4 + 4]);
    assert_eq!(got, want);
}

/// A later fragment has no transport header: only its addresses change (and the IPv4
/// header checksum); asking for a port is not an error.
#[test]
fn later_fragment_gets_addresses_only() {
    let t = Tuple {
        proto: Proto::Udp,
        src: v4("10.0.0.5"),
        dst: v4("8.8.8.8"),
        sport: 1,
        dport: 2,
    };
    let mut f = frame(&t, &[0xab; 40]);
    // Offset 8 (64 bytes): a later fragment. Fix the header checksum for the change.
    f[14 + 6..14 + 8].copy_from_slice(&8u16.to_be_bytes());
    f[14 + 10..14 + 12].fill(0);
    let c = checksum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    let (mut pkt, key, layers) = parsed(&f);
    assert_eq!(layers.l4, 0);
    let new = Endpoint::with_port(v4("192.168.1.1"), 61000);
    assert!(nat_packet(&mut pkt, &key, &layers, Some(new), None));
    let d = pkt.data();
    assert_eq!(&d[14 + 12..14 + 16], &[192, 168, 1, 1]);
    assert_eq!(ipv4_header_ok(d, 14), Some(true));
    assert_eq!(&d[34..], &f[34..], "the payload is not a UDP header");
}

/// Too short for what must be written: refused, unchanged.
#[test]
fn short_transport_header_is_refused() {
    let t = Tuple {
        proto: Proto::Tcp,
        src: v4("10.0.0.5"),
        dst: v4("8.8.8.8"),
        sport: 1,
        dport: 2,
    };
    let f = frame(&t, &[]);
    let (_, key, layers) = parsed(&f);
    // Claim a shorter IP packet: 10 bytes of TCP.
    let mut short = f[..14 + 30].to_vec();
    short[14 + 2..14 + 4].copy_from_slice(&30u16.to_be_bytes());
    let mut pkt = Packet::from_frame(&short, 1);
    let new = Endpoint::with_port(v4("192.168.1.1"), 61000);
    assert!(!nat_packet(&mut pkt, &key, &layers, Some(new), None));
    assert_eq!(pkt.data(), &short[..]);
    // An endpoint of the other family.
    let mut pkt = Packet::from_frame(&f, 1);
    let other = Endpoint::addr(v6("fd00::1"));
    assert!(!nat_packet(&mut pkt, &key, &layers, None, Some(other)));
    assert_eq!(pkt.data(), &f[..]);
}
