use super::*;
use proptest::prelude::*;
use vswitch_proto::field::{ethertype, ipproto};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Frames written by scapy 2.5 (see the names for what each holds).
const TCP4: &str = "020000000002020000000001080045b9002d000140003f0623250af401020af401039c4000500000000100000002501820009775000068656c6c6f";
const UDP_VLAN: &str = "0200000000020200000000018100a00a08004500002000010000401166ca0a0000010a000002003514e9000ce5c478787878";
const ARP: &str =
    "ffffffffffff020000000001080600010800060400010200000000010af401020000000000000af40101";
const NS: &str = "3333ff00000102000000000186dd6281234500203afffe800000000000000000000000000001ff0200000000000000000001ff00000187007a9800000000fe8000000000000000000000000000020101020000000001";
const V6FRAG: &str = "02000000000202000000000186dd60000000001c004020010db800000000000000000000000120010db80000000000000000000000022c00010400000000110000010000000700010002000cdf9761626364";
const V4LATER: &str =
    "02000000000202000000000108004500001c00010064400666750a0000010a0000027979797979797979";
const ICMP: &str =
    "02000000000202000000000108004500001c00010000400166de0a0000010a0000020800f7fc00010002";
const QINQ: &str = "02000000000202000000000188a800648100001408004500001c00010000401166ce0a0000010a000002000100020008ebd8";
const VXLAN: &str = "0a00000000020a000000000108004500005a000100004011313ec0a86401c0a86402d90312b50046ca540c0000030000010002000000000202000000000108004500002800010000400661e40af401020af4020204d2005000000000000000005002200071d50000";

const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn ex(frame: &[u8]) -> (Flow, Layers, Result<(), Malformed>) {
    let mut k = Flow::ZERO;
    let mut l = Layers::default();
    let r = extract(frame, &mut k, &mut l);
    (k, l, r)
}

#[test]
fn tcp_over_ipv4() {
    let (k, l, r) = ex(&hex(TCP4));
    r.unwrap();
    assert_eq!(k.dl_src(), MAC1);
    assert_eq!(k.dl_dst(), MAC2);
    assert_eq!(k.dl_type(), ethertype::IPV4);
    assert_eq!(k.vlan_tci(), 0);
    assert_eq!(k.nw_src(), 0x0af40102);
    assert_eq!(k.nw_dst(), 0x0af40103);
    assert_eq!(k.nw_proto(), ipproto::TCP);
    assert_eq!(k.nw_tos(), 0xb9);
    assert_eq!(k.nw_ttl(), 63);
    assert_eq!(k.nw_frag(), 0);
    assert_eq!(k.tp_src(), 40000);
    assert_eq!(k.tp_dst(), 80);
    assert_eq!(k.tcp_flags(), 0x018);
    assert_eq!(l, Layers { l3: 14, l4: 34 });
}

#[test]
fn udp_with_vlan_tag() {
    let (k, l, r) = ex(&hex(UDP_VLAN));
    r.unwrap();
    assert_eq!(k.vlan_tci(), 0x1000 | (5 << 13) | 10);
    assert_eq!(k.dl_vlan(), 10);
    assert_eq!(k.dl_vlan_pcp(), 5);
    assert_eq!(k.dl_type(), ethertype::IPV4);
    assert_eq!((k.tp_src(), k.tp_dst()), (53, 5353));
    assert_eq!(l.l3, 18);
}

#[test]
fn qinq_reads_outer_tag_and_inner_type() {
    let (k, _, r) = ex(&hex(QINQ));
    r.unwrap();
    assert_eq!(k.dl_vlan(), 100);
    assert_eq!(k.vlan_tci_inner() & 0x0fff, 20);
    assert_eq!(k.dl_type(), ethertype::IPV4);
    assert_eq!(k.nw_proto(), ipproto::UDP);
}

#[test]
fn arp_request() {
    let (k, _, r) = ex(&hex(ARP));
    r.unwrap();
    assert_eq!(k.dl_type(), ethertype::ARP);
    assert_eq!(k.nw_proto(), 1, "arp_op");
    assert_eq!(k.nw_src(), 0x0af40102, "arp_spa");
    assert_eq!(k.nw_dst(), 0x0af40101, "arp_tpa");
    assert_eq!(k.arp_sha(), MAC1);
    assert_eq!(k.arp_tha(), [0; 6]);
}

#[test]
fn neighbor_solicitation() {
    let (k, _, r) = ex(&hex(NS));
    r.unwrap();
    assert_eq!(k.dl_type(), ethertype::IPV6);
    assert_eq!(k.nw_proto(), ipproto::ICMPV6);
    assert_eq!(k.nw_tos(), 0x28);
    assert_eq!(k.ipv6_label(), 0x12345);
    assert_eq!(k.nw_ttl(), 255);
    assert_eq!(k.tp_src(), 135);
    assert_eq!(k.nd_target(), 0xfe80 << 112 | 2);
    assert_eq!(k.arp_sha(), MAC1, "nd_sll");
    assert_eq!(k.ipv6_src(), 0xfe80 << 112 | 1);
}

#[test]
fn ipv6_extension_headers_and_first_fragment() {
    let (k, l, r) = ex(&hex(V6FRAG));
    r.unwrap();
    assert_eq!(k.nw_proto(), ipproto::UDP);
    assert_eq!(k.nw_frag(), frag::ANY);
    assert_eq!((k.tp_src(), k.tp_dst()), (1, 2));
    assert_eq!(l.l4, 14 + 40 + 8 + 8);
}

/// Open vSwitch's `miniflow_extract` reads the L4 header of a first fragment (offset 0,
/// MF set) as of an unfragmented packet; only later fragments have zero ports.
#[test]
fn first_ipv4_fragment_has_ports() {
    let whole = ex(&hex(TCP4)).0;
    let mut f = hex(TCP4);
    f[14 + 6] |= 0x20; // MF, offset 0
    let (k, l, r) = ex(&f);
    r.unwrap();
    assert_eq!(k.nw_frag(), frag::ANY);
    assert_eq!(k.nw_proto(), ipproto::TCP);
    assert_eq!((k.tp_src(), k.tp_dst()), (whole.tp_src(), whole.tp_dst()));
    assert_ne!(k.tp_dst(), 0);
    assert_eq!(k.tcp_flags(), whole.tcp_flags());
    assert_eq!(l.l4, 34);
}

#[test]
fn later_ipv4_fragment_has_no_ports() {
    let (k, l, r) = ex(&hex(V4LATER));
    r.unwrap();
    assert_eq!(k.nw_frag(), frag::ANY | frag::LATER);
    assert_eq!(k.nw_proto(), ipproto::TCP);
    assert_eq!((k.tp_src(), k.tp_dst()), (0, 0));
    assert_eq!(l.l4, 0);
}

#[test]
fn icmp_type_and_code() {
    let (k, _, r) = ex(&hex(ICMP));
    r.unwrap();
    assert_eq!(k.nw_proto(), ipproto::ICMP);
    assert_eq!((k.tp_src(), k.tp_dst()), (8, 0));
}

#[test]
fn vxlan_decapsulation() {
    let frame = hex(VXLAN);
    let mut k = Flow::ZERO;
    let mut l = Layers::default();
    let inner = extract_vxlan(&frame, &mut k, &mut l).unwrap();
    assert_eq!(inner, 50);
    assert_eq!(k.tun_src(), 0xc0a86401);
    assert_eq!(k.tun_dst(), 0xc0a86402);
    assert_eq!(k.tun_id(), 1);
    assert_eq!(k.nw_src(), 0x0af40102);
    assert_eq!(k.nw_dst(), 0x0af40202);
    assert_eq!(k.tcp_flags(), 0x002);
    let mut bad = frame.clone();
    bad[42] = 0; // clear the I flag
    assert_eq!(
        extract_vxlan(&bad, &mut Flow::default(), &mut l),
        Err(Malformed::VxlanBadFlags)
    );
}

#[test]
fn metadata_is_left_alone() {
    let mut k = Flow::ZERO;
    k.set_in_port(9);
    k.set_reg(0, 5);
    extract(&hex(TCP4), &mut k, &mut Layers::default()).unwrap();
    assert_eq!(k.in_port(), 9);
    assert_eq!(k.reg(0), 5);
}

#[test]
fn truncated_frames_are_malformed_not_panics() {
    for f in [TCP4, UDP_VLAN, ARP, NS, V6FRAG, ICMP, QINQ, VXLAN] {
        let frame = hex(f);
        for n in 0..frame.len() {
            let _ = ex(&frame[..n]);
            let _ = extract_vxlan(&frame[..n], &mut Flow::default(), &mut Layers::default());
        }
    }
    assert_eq!(ex(&hex(TCP4)[..13]).2, Err(Malformed::EthernetTooShort));
    // IPv4 total length says 45 bytes; cut the frame so it holds fewer.
    assert_eq!(ex(&hex(TCP4)[..50]).2, Err(Malformed::Ipv4BadTotalLength));
    assert_eq!(ex(&hex(UDP_VLAN)[..15]).2, Err(Malformed::VlanTooShort));
    assert_eq!(ex(&hex(ARP)[..40]).2, Err(Malformed::ArpTooShort));
    assert_eq!(ex(&hex(NS)[..60]).2, Err(Malformed::Ipv6BadPayloadLength));
}

#[test]
fn lying_lengths() {
    let mut f = hex(TCP4);
    f[14] = 0x44; // IHL 4 words
    assert_eq!(ex(&f).2, Err(Malformed::Ipv4BadHeaderLength));
    let mut f = hex(TCP4);
    f[14] = 0x65; // version 6 in an IPv4 EtherType
    assert_eq!(ex(&f).2, Err(Malformed::Ipv4BadVersion));
    let mut f = hex(TCP4);
    f[14 + 2] = 0;
    f[14 + 3] = 19; // total length below the header
    assert_eq!(ex(&f).2, Err(Malformed::Ipv4BadTotalLength));
    let mut f = hex(TCP4);
    f[34 + 12] = 0x40; // TCP data offset 16 bytes
    assert_eq!(ex(&f).2, Err(Malformed::TcpBadDataOffset));
    let mut f = hex(TCP4);
    f[34 + 12] = 0xf0; // TCP data offset 60 bytes, beyond the segment
    assert_eq!(ex(&f).2, Err(Malformed::TcpBadDataOffset));
    let mut f = hex(NS);
    let opt_len = f.len() - 7;
    f[opt_len] = 0; // ND option length 0 would loop forever if trusted
    assert_eq!(ex(&f).2, Err(Malformed::NdBadOption));
    // A tiny first fragment that cannot hold the TCP header (RFC 1858) is malformed.
    let mut f = hex(TCP4);
    f[14 + 6] = 0x20; // MF
    f[14 + 7] = 0;
    f[14 + 2] = 0;
    f[14 + 3] = 30;
    assert_eq!(ex(&f[..44]).2, Err(Malformed::TcpTooShort));
}

#[test]
fn unknown_ethertype_is_not_malformed() {
    let mut f = hex(TCP4);
    f[12] = 0x88;
    f[13] = 0xb5;
    let (k, l, r) = ex(&f);
    r.unwrap();
    assert_eq!(k.dl_type(), 0x88b5);
    assert_eq!(k.nw_src(), 0);
    assert_eq!(l.l3, 14);
}

proptest! {
    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ex(&bytes);
        let _ = extract_vxlan(&bytes, &mut Flow::default(), &mut Layers::default());
    }

    #[test]
    fn no_mutation_of_a_real_frame_panics(which in 0usize..9, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let all = [TCP4, UDP_VLAN, ARP, NS, V6FRAG, V4LATER, ICMP, QINQ, VXLAN];
        let mut f = hex(all[which]);
        for (ix, b) in edits {
            let i = ix.index(f.len());
            f[i] = b;
        }
        let n = cut.index(f.len() + 1);
        let _ = ex(&f[..n]);
        let _ = extract_vxlan(&f[..n], &mut Flow::default(), &mut Layers::default());
    }
}

mod versus_etherparse {
    //! Our key against one derived from etherparse's parse of the same random frame.
    use super::*;
    use etherparse::{
        IpNumber, LinkExtHeader, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
    };

    #[derive(Debug, Clone)]
    enum L4 {
        Tcp {
            src: u16,
            dst: u16,
            syn: bool,
            ack: bool,
            fin: bool,
            rst: bool,
        },
        Udp {
            src: u16,
            dst: u16,
        },
        Icmp {
            id: u16,
            seq: u16,
            reply: bool,
        },
    }

    #[derive(Debug, Clone)]
    struct Spec {
        src: [u8; 6],
        dst: [u8; 6],
        vlans: Vec<u16>,
        v6: bool,
        a: [u8; 16],
        b: [u8; 16],
        ttl: u8,
        l4: L4,
        payload: Vec<u8>,
    }

    fn arb_l4() -> impl Strategy<Value = L4> {
        prop_oneof![
            (
                any::<u16>(),
                any::<u16>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(src, dst, syn, ack, fin, rst)| L4::Tcp {
                    src,
                    dst,
                    syn,
                    ack,
                    fin,
                    rst
                }),
            (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| L4::Udp { src, dst }),
            (any::<u16>(), any::<u16>(), any::<bool>()).prop_map(|(id, seq, reply)| L4::Icmp {
                id,
                seq,
                reply
            }),
        ]
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        (
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            proptest::collection::vec(0u16..4096, 0..3),
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            arb_l4(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(src, dst, vlans, v6, a, b, ttl, l4, payload)| Spec {
                src,
                dst,
                vlans,
                v6,
                a,
                b,
                ttl,
                l4,
                payload,
            })
    }

    fn build(s: &Spec) -> Vec<u8> {
        use etherparse::{DoubleVlanHeader, EtherType, SingleVlanHeader, VlanHeader, VlanId};
        let eth = PacketBuilder::ethernet2(s.src, s.dst);
        let single = |v: u16, ty: EtherType| SingleVlanHeader {
            pcp: etherparse::VlanPcp::ZERO,
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(v).unwrap(),
            ether_type: ty,
        };
        let mut out = Vec::new();
        macro_rules! finish {
            ($ip:expr) => {{
                let ip = $ip;
                match s.l4 {
                    L4::Tcp {
                        src,
                        dst,
                        syn,
                        ack,
                        fin,
                        rst,
                    } => {
                        let mut t = ip.tcp(src, dst, 7, 1000);
                        if syn {
                            t = t.syn();
                        }
                        if ack {
                            t = t.ack(9);
                        }
                        if fin {
                            t = t.fin();
                        }
                        if rst {
                            t = t.rst();
                        }
                        t.write(&mut out, &s.payload).unwrap();
                    }
                    L4::Udp { src, dst } => ip.udp(src, dst).write(&mut out, &s.payload).unwrap(),
                    L4::Icmp { id, seq, reply } if !s.v6 => {
                        if reply {
                            ip.icmpv4_echo_reply(id, seq)
                                .write(&mut out, &s.payload)
                                .unwrap()
                        } else {
                            ip.icmpv4_echo_request(id, seq)
                                .write(&mut out, &s.payload)
                                .unwrap()
                        }
                    }
                    L4::Icmp { id, seq, reply } => {
                        if reply {
                            ip.icmpv6_echo_reply(id, seq)
                                .write(&mut out, &s.payload)
                                .unwrap()
                        } else {
                            ip.icmpv6_echo_request(id, seq)
                                .write(&mut out, &s.payload)
                                .unwrap()
                        }
                    }
                }
            }};
        }
        macro_rules! ip {
            ($l2:expr) => {{
                let l2 = $l2;
                if s.v6 {
                    finish!(l2.ipv6(s.a, s.b, s.ttl))
                } else {
                    finish!(l2.ipv4(
                        [s.a[0], s.a[1], s.a[2], s.a[3]],
                        [s.b[0], s.b[1], s.b[2], s.b[3]],
                        s.ttl
                    ))
                }
            }};
        }
        match s.vlans.as_slice() {
            [] => ip!(eth),
            [v] => ip!(eth.vlan(VlanHeader::Single(single(*v, EtherType::IPV4)))),
            [o, i, ..] => ip!(eth.vlan(VlanHeader::Double(DoubleVlanHeader {
                outer: single(*o, EtherType::VLAN_TAGGED_FRAME),
                inner: single(*i, EtherType::IPV4),
            }))),
        }
        out
    }

    fn expected(frame: &[u8]) -> Flow {
        let h = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses what it built");
        let mut k = Flow::ZERO;
        let eth = h.link.clone().and_then(|l| l.ethernet2()).unwrap();
        k.set_dl_src(eth.source);
        k.set_dl_dst(eth.destination);
        let mut ty = eth.ether_type.0;
        let mut n = 0;
        for ext in &h.link_exts {
            if let LinkExtHeader::Vlan(v) = ext {
                let tci = ((v.pcp.value() as u16) << 13) | v.vlan_id.value() | 0x1000;
                if n == 0 {
                    k.set_vlan_tci(tci)
                } else {
                    k.set_vlan_tci_inner(tci)
                }
                ty = v.ether_type.0;
                n += 1;
            }
        }
        k.set_dl_type(ty);
        match h.net.as_ref().unwrap() {
            NetHeaders::Ipv4(ip, _) => {
                k.set_nw_src(u32::from_be_bytes(ip.source));
                k.set_nw_dst(u32::from_be_bytes(ip.destination));
                k.set_nw_proto(ip.protocol.0);
                k.set_nw_ttl(ip.time_to_live);
                k.set_nw_tos((ip.dscp.value() << 2) | ip.ecn.value());
            }
            NetHeaders::Ipv6(ip, _) => {
                k.set_ipv6_src(u128::from_be_bytes(ip.source));
                k.set_ipv6_dst(u128::from_be_bytes(ip.destination));
                k.set_nw_proto(ip.next_header.0);
                k.set_nw_ttl(ip.hop_limit);
                k.set_nw_tos(ip.traffic_class);
                k.set_ipv6_label(ip.flow_label.value());
            }
            NetHeaders::Arp(_) => unreachable!(),
        }
        match h.transport.as_ref().unwrap() {
            TransportHeader::Tcp(t) => {
                k.set_tp_src(t.source_port);
                k.set_tp_dst(t.destination_port);
                let flags = (t.fin as u16)
                    | (t.syn as u16) << 1
                    | (t.rst as u16) << 2
                    | (t.psh as u16) << 3
                    | (t.ack as u16) << 4
                    | (t.urg as u16) << 5
                    | (t.ece as u16) << 6
                    | (t.cwr as u16) << 7
                    | (t.ns as u16) << 8;
                k.set_tcp_flags(flags);
            }
            TransportHeader::Udp(u) => {
                k.set_tp_src(u.source_port);
                k.set_tp_dst(u.destination_port);
            }
            TransportHeader::Icmpv4(i) => {
                let b = i.to_bytes();
                k.set_tp_src(b[0] as u16);
                k.set_tp_dst(b[1] as u16);
            }
            TransportHeader::Icmpv6(i) => {
                let b = i.to_bytes();
                k.set_tp_src(b[0] as u16);
                k.set_tp_dst(b[1] as u16);
            }
            TransportHeader::Igmp(_) => unreachable!(),
        }
        let _ = IpNumber::TCP;
        k
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]
        #[test]
        fn key_equals_etherparse(spec in arb_spec()) {
            let frame = build(&spec);
            let (k, _, r) = ex(&frame);
            prop_assert_eq!(r, Ok(()));
            prop_assert_eq!(k, expected(&frame));
        }
    }
}
