//! Property tests for the flow syntax: random valid flows and groups print and parse back to
//! the same value; the parsers never panic, on arbitrary text or on mutated golden lines, and
//! whatever they accept also prints and parses back to itself.

mod common;

use common::TestPorts;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vswitch_proto::action::{
    ControllerOpts, ControllerReason, Ct, CtZone, HashFields, Learn, LearnSpec, MpAlgorithm,
    Multipath, Nat, NatKind, port,
};
use vswitch_proto::field::{FieldId, ethertype, ipproto};
use vswitch_proto::flowmod::FlowFlags;
use vswitch_proto::text::{
    display_flow, display_group, display_match, parse_flow, parse_group, parse_match,
};
use vswitch_proto::{Action, Bucket, FlowSpec, GroupSpec, GroupType, Match, SubField, Usage};

fn ones(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// A (value, mask) pair for a field of `bits` bits, the mask often full and never zero.
fn masked(bits: u32) -> impl Strategy<Value = (u128, u128)> {
    let full = ones(bits);
    (
        any::<u128>(),
        prop_oneof![
            2 => Just(full),
            1 => (1..=bits).prop_map(move |n| full ^ full.checked_shr(n).unwrap_or(0)),
            1 => any::<u128>().prop_map(move |m| m & full).prop_filter("zero", |m| *m != 0),
        ],
    )
        .prop_map(move |(v, m)| (v & m, m))
}

fn exact(bits: u32) -> impl Strategy<Value = (u128, u128)> {
    any::<u128>().prop_map(move |v| (v & ones(bits), ones(bits)))
}

#[derive(Clone, Copy, Debug)]
enum L4 {
    None,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Other,
}

#[derive(Clone, Copy, Debug)]
enum L3 {
    None,
    Other,
    Ip4(L4),
    Ip6(L4),
    Arp,
    Rarp,
}

fn l3() -> impl Strategy<Value = L3> {
    let l4 = prop_oneof![
        Just(L4::None),
        Just(L4::Tcp),
        Just(L4::Udp),
        Just(L4::Sctp),
        Just(L4::Icmp),
        Just(L4::Other)
    ];
    prop_oneof![
        Just(L3::None),
        Just(L3::Other),
        l4.clone().prop_map(L3::Ip4),
        l4.prop_map(L3::Ip6),
        Just(L3::Arp),
        Just(L3::Rarp),
    ]
}

type Fields = Vec<(FieldId, (u128, u128))>;

fn opt(f: FieldId, s: impl Strategy<Value = (u128, u128)> + 'static) -> BoxedStrategy<Fields> {
    proptest::option::weighted(0.3, s)
        .prop_map(move |o| o.map(|vm| vec![(f, vm)]).unwrap_or_default())
        .boxed()
}

fn concat(parts: Vec<BoxedStrategy<Fields>>) -> BoxedStrategy<Fields> {
    parts.into_iter().fold(Just(Vec::new()).boxed(), |acc, p| {
        (acc, p)
            .prop_map(|(mut a, b)| {
                a.extend(b);
                a
            })
            .boxed()
    })
}

fn port_number() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..=port::MAX,
        1 => prop::sample::select(vec![port::LOCAL, port::CONTROLLER, port::NORMAL, 1, 2, 5, 7]),
    ]
}

fn generic_fields() -> BoxedStrategy<Fields> {
    let mut parts = vec![
        opt(
            FieldId::InPort,
            port_number().prop_map(|p| (p as u128, 0xffff_ffff)),
        ),
        opt(FieldId::EthSrc, masked(48)),
        opt(FieldId::EthDst, masked(48)),
        opt(FieldId::VlanTci, masked(16)),
        opt(FieldId::Metadata, masked(64)),
        opt(FieldId::TunId, masked(64)),
        opt(FieldId::TunSrc, masked(32)),
        opt(FieldId::TunDst, masked(32)),
        opt(FieldId::CtState, masked(8)),
        opt(FieldId::CtZone, exact(16)),
        opt(FieldId::CtMark, masked(32)),
        opt(FieldId::CtLabel, masked(128)),
        opt(FieldId::ConjId, exact(32)),
        opt(FieldId::RecircId, exact(32)),
    ];
    for i in [0u8, 1, 5, 15] {
        parts.push(opt(FieldId::reg(i).unwrap(), masked(32)));
    }
    concat(parts)
}

fn ip_common() -> Vec<BoxedStrategy<Fields>> {
    let frag = prop::sample::select(vec![(0u128, 3u128), (1, 3), (3, 3), (1, 1), (0, 2)]);
    vec![
        opt(FieldId::NwTos, exact(6)),
        opt(FieldId::IpEcn, exact(2)),
        opt(FieldId::NwTtl, exact(8)),
        opt(FieldId::IpFrag, frag),
    ]
}

fn l3_fields(l3: L3) -> BoxedStrategy<Fields> {
    match l3 {
        L3::None | L3::Other => Just(Vec::new()).boxed(),
        L3::Arp | L3::Rarp => concat(vec![
            opt(FieldId::ArpSpa, masked(32)),
            opt(FieldId::ArpTpa, masked(32)),
            opt(FieldId::ArpOp, exact(8)),
            opt(FieldId::ArpSha, masked(48)),
            opt(FieldId::ArpTha, masked(48)),
        ]),
        L3::Ip4(l4) | L3::Ip6(l4) => {
            let v6 = matches!(l3, L3::Ip6(_));
            let mut parts = ip_common();
            if v6 {
                parts.push(opt(FieldId::Ipv6Src, masked(128)));
                parts.push(opt(FieldId::Ipv6Dst, masked(128)));
                parts.push(opt(FieldId::Ipv6Label, masked(20)));
            } else {
                parts.push(opt(FieldId::IpSrc, masked(32)));
                parts.push(opt(FieldId::IpDst, masked(32)));
            }
            match l4 {
                L4::Tcp | L4::Udp | L4::Sctp => {
                    parts.push(opt(FieldId::TpSrc, masked(16)));
                    parts.push(opt(FieldId::TpDst, masked(16)));
                    if matches!(l4, L4::Tcp) {
                        parts.push(opt(FieldId::TcpFlags, masked(12)));
                    }
                }
                L4::Icmp if v6 => {
                    let nd = prop::sample::select(vec![135u128, 136, 128]).prop_flat_map(|t| {
                        let mut p = vec![
                            Just(vec![(FieldId::IcmpType, (t, 0xff))]).boxed(),
                            opt(FieldId::IcmpCode, exact(8)),
                        ];
                        if t != 128 {
                            p.push(opt(FieldId::NdTarget, masked(128)));
                            let ll = if t == 135 {
                                FieldId::NdSll
                            } else {
                                FieldId::NdTll
                            };
                            p.push(opt(ll, masked(48)));
                        }
                        concat(p)
                    });
                    parts.push(nd.boxed());
                }
                L4::Icmp => {
                    parts.push(opt(FieldId::IcmpType, exact(8)));
                    parts.push(opt(FieldId::IcmpCode, exact(8)));
                }
                L4::None | L4::Other => {}
            }
            concat(parts)
        }
    }
}

fn build_match(l3: L3, fields: &Fields) -> Match {
    let mut m = Match::CATCHALL;
    let (dl, proto) = match l3 {
        L3::None => (None, None),
        L3::Other => (Some(0x88cc), None),
        L3::Arp => (Some(ethertype::ARP), None),
        L3::Rarp => (Some(ethertype::RARP), None),
        L3::Ip4(l4) | L3::Ip6(l4) => {
            let v6 = matches!(l3, L3::Ip6(_));
            let p = match l4 {
                L4::None => None,
                L4::Tcp => Some(ipproto::TCP),
                L4::Udp => Some(ipproto::UDP),
                L4::Sctp => Some(ipproto::SCTP),
                L4::Icmp if v6 => Some(ipproto::ICMPV6),
                L4::Icmp => Some(ipproto::ICMP),
                L4::Other => Some(47),
            };
            (Some(if v6 { ethertype::IPV6 } else { ethertype::IPV4 }), p)
        }
    };
    if let Some(d) = dl {
        m.set(FieldId::EthType, d as u128);
    }
    if let Some(p) = proto {
        m.set(FieldId::IpProto, p as u128);
    }
    for (f, (v, mask)) in fields {
        m.set_masked(*f, *v, *mask);
    }
    m
}

fn arb_match() -> impl Strategy<Value = (L3, Match)> {
    l3().prop_flat_map(|l3| {
        (generic_fields(), l3_fields(l3)).prop_map(move |(mut g, l)| {
            g.extend(l);
            (l3, build_match(l3, &g))
        })
    })
}

fn reg_sub(min_bits: u8) -> impl Strategy<Value = SubField> {
    (0u8..16, 0u8..32, min_bits..=32).prop_map(|(r, ofs, n)| {
        let n = n.min(32 - ofs).max(1);
        SubField {
            field: FieldId::reg(r).unwrap(),
            ofs,
            n_bits: n,
        }
    })
}

fn reg_pair() -> impl Strategy<Value = (SubField, SubField)> {
    (reg_sub(1), 0u8..16, 0u8..32).prop_map(|(a, r, ofs)| {
        let ofs = ofs.min(32 - a.n_bits);
        (
            a,
            SubField {
                field: FieldId::reg(r).unwrap(),
                ofs,
                n_bits: a.n_bits,
            },
        )
    })
}

fn set_field(f: FieldId, bits: u32) -> impl Strategy<Value = Action> {
    masked(bits).prop_map(move |(value, mask)| Action::SetField {
        field: f,
        value,
        mask,
    })
}

fn note() -> impl Strategy<Value = Action> {
    prop::sample::select(vec![6usize, 14, 22])
        .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
        .prop_map(Action::Note)
}

fn learn() -> impl Strategy<Value = Action> {
    let spec = prop_oneof![
        reg_pair().prop_map(|(src, dst)| LearnSpec::MatchField { dst, src }),
        (reg_sub(1), any::<u128>()).prop_map(|(dst, v)| LearnSpec::MatchImm {
            value: v & ones(dst.n_bits as u32),
            dst
        }),
        any::<u64>().prop_map(|v| LearnSpec::MatchImm {
            dst: SubField::whole(FieldId::EthSrc),
            value: (v & 0xffff_ffff_ffff) as u128,
        }),
        (reg_sub(1), any::<u128>()).prop_map(|(dst, v)| LearnSpec::LoadImm {
            value: v & ones(dst.n_bits as u32),
            dst
        }),
        reg_pair().prop_map(|(src, dst)| LearnSpec::LoadField { src, dst }),
        reg_sub(16).prop_map(LearnSpec::Output),
    ];
    (
        0u8..=254,
        any::<u16>(),
        (any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>()),
        any::<u64>(),
        (any::<bool>(), any::<u32>(), prop::option::of(reg_sub(1))),
        prop::collection::vec(spec, 0..5),
    )
        .prop_map(
            |(table, priority, (it, ht, fit, fht), cookie, (del, limit, result), specs)| {
                Action::Learn(Box::new(Learn {
                    table,
                    priority,
                    idle_timeout: it,
                    hard_timeout: ht,
                    fin_idle_timeout: fit,
                    fin_hard_timeout: fht,
                    cookie,
                    delete_learned: del,
                    limit,
                    result_dst: result.map(|r| SubField { n_bits: 1, ..r }),
                    specs,
                }))
            },
        )
}

fn ct(v6: bool, l4: L4) -> impl Strategy<Value = Action> {
    let addr = move |x: u128| -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(x))
        } else {
            IpAddr::V4(Ipv4Addr::from(x as u32))
        }
    };
    let nat = (
        prop::option::of(prop_oneof![Just(NatKind::Src), Just(NatKind::Dst)]),
        prop::option::of((any::<u128>(), any::<u128>())),
        prop::option::of((1u16.., 1u16..)),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(move |(kind, addrs, ports, persistent, hr)| {
            let Some(kind) = kind else {
                return Nat::default();
            };
            let addrs = addrs.map(|(a, b)| {
                let (a, b) = if v6 {
                    (a, b)
                } else {
                    (a & 0xffff_ffff, b & 0xffff_ffff)
                };
                (addr(a.min(b)), addr(a.max(b)))
            });
            let ports = match addrs {
                Some(_) => ports.map(|(a, b)| (a.min(b), a.max(b))),
                None => None,
            };
            Nat {
                kind: Some(kind),
                addrs,
                ports,
                random: hr == 1,
                persistent,
                hash: hr == 2,
            }
        });
    let exec = prop::collection::vec(
        prop_oneof![
            set_field(FieldId::CtMark, 32),
            set_field(FieldId::CtLabel, 128)
        ],
        0..3,
    );
    let zone = prop_oneof![
        any::<u16>().prop_map(CtZone::Imm),
        (0u8..16, 0u8..=16).prop_map(|(r, ofs)| CtZone::Field(SubField {
            field: FieldId::reg(r).unwrap(),
            ofs,
            n_bits: 16,
        })),
    ];
    let alg = match l4 {
        L4::Tcp => prop::option::of(Just(21u16)).boxed(),
        L4::Udp => prop::option::of(Just(69u16)).boxed(),
        _ => Just(None).boxed(),
    };
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0u8..=254),
        zone,
        prop::option::of(nat),
        exec,
        alg,
    )
        .prop_map(|(commit, force, table, zone, nat, exec, alg)| {
            let nat_args = nat.as_ref().is_some_and(|n| n.kind.is_some());
            let commit = commit || nat_args || !exec.is_empty() || alg.is_some();
            Action::Ct(Box::new(Ct {
                commit,
                force: force && commit,
                zone,
                table,
                nat,
                exec,
                alg,
            }))
        })
}

fn actions_for(l3: L3, table: u8, conjunctions: bool) -> BoxedStrategy<Vec<Action>> {
    let mut simple: Vec<BoxedStrategy<Vec<Action>>> = vec![
        (
            port_number().prop_filter("real", |p| *p <= port::MAX || *p == port::LOCAL),
            prop::option::of(any::<u16>()),
        )
            .prop_map(|(port, max_len)| vec![Action::Output { port, max_len }])
            .boxed(),
        Just(vec![Action::Output {
            port: port::TABLE,
            max_len: None,
        }])
        .boxed(),
        prop::sample::select(vec![
            Action::InPort,
            Action::Normal,
            Action::Flood,
            Action::All,
            Action::CtClear,
            Action::PopVlan,
            Action::Exit,
        ])
        .prop_map(|a| {
            if a == Action::PopVlan {
                vec![Action::PushVlan(0x8100), a]
            } else {
                vec![a]
            }
        })
        .boxed(),
        any::<u16>()
            .prop_map(|m| vec![Action::Controller { max_len: m }])
            .boxed(),
        reg_sub(1).prop_map(|s| vec![Action::OutputReg(s)]).boxed(),
        prop_oneof![
            (0u32..=port::MAX).prop_map(|p| (Some(p), None)),
            (0u8..=254).prop_map(|t| (None, Some(t))),
            (0u32..=port::MAX, 0u8..=254).prop_map(|(p, t)| (Some(p), Some(t))),
        ]
        .prop_map(|(in_port, table)| vec![Action::Resubmit { in_port, table }])
        .boxed(),
        prop_oneof![
            set_field(FieldId::Reg3, 32),
            set_field(FieldId::Metadata, 64),
            set_field(FieldId::TunId, 64),
            set_field(FieldId::TunDst, 32),
            set_field(FieldId::EthSrc, 48),
            set_field(FieldId::EthDst, 48),
        ]
        .prop_map(|a| vec![a])
        .boxed(),
        reg_pair()
            .prop_map(|(src, dst)| vec![Action::Move { src, dst }])
            .boxed(),
        prop_oneof![Just(0x8100u16), Just(0x88a8)]
            .prop_map(|t| vec![Action::PushVlan(t)])
            .boxed(),
        (0u32..=0xffff_ff00)
            .prop_map(|g| vec![Action::Group(g)])
            .boxed(),
        note().prop_map(|a| vec![a]).boxed(),
        learn().prop_map(|a| vec![a]).boxed(),
        (1u32..=port::MAX, any::<u32>())
            .prop_map(|(port, queue)| vec![Action::Enqueue { port, queue }])
            .boxed(),
        (
            prop::sample::select(HashFields::NAMES.to_vec()),
            any::<u16>(),
            prop::sample::select(MpAlgorithm::NAMES.to_vec()),
            1u32..=16,
            any::<u32>(),
            reg_sub(1),
        )
            .prop_map(|((fields, _), basis, (algorithm, _), n_links, arg, dst)| {
                vec![Action::Multipath(Box::new(Multipath {
                    fields,
                    basis,
                    algorithm,
                    n_links: n_links.min(1 << dst.n_bits.min(16)),
                    arg,
                    dst,
                }))]
            })
            .boxed(),
        (
            prop::sample::select(ControllerReason::NAMES.to_vec()),
            any::<u16>(),
            any::<u16>(),
            prop::option::of(prop::collection::vec(any::<u8>(), 1..6)),
            any::<bool>(),
            prop::option::of(any::<u32>()),
        )
            .prop_map(|((reason, _), max_len, id, userdata, pause, meter_id)| {
                let o = ControllerOpts {
                    max_len,
                    reason,
                    id,
                    userdata,
                    pause,
                    meter_id,
                };
                let plain = ControllerOpts {
                    max_len,
                    ..ControllerOpts::default()
                };
                vec![if o == plain {
                    Action::Controller { max_len }
                } else {
                    Action::ControllerEx(Box::new(o))
                }]
            })
            .boxed(),
    ];
    if let L3::Ip4(l4) | L3::Ip6(l4) = l3 {
        let v6 = matches!(l3, L3::Ip6(_));
        simple.push(Just(vec![Action::DecTtl]).boxed());
        simple.push(
            prop::collection::vec(any::<u16>(), 1..4)
                .prop_map(|ids| vec![Action::DecTtlIds(ids)])
                .boxed(),
        );
        simple.push(ct(v6, l4).prop_map(|a| vec![a]).boxed());
        simple.push(
            prop_oneof![
                set_field(FieldId::NwTtl, 8),
                exact(6).prop_map(|(v, m)| Action::SetField { field: FieldId::IpDscp, value: v, mask: m }),
                exact(2).prop_map(|(v, m)| Action::SetField { field: FieldId::IpEcn, value: v, mask: m }),
            ]
            .prop_filter("mod_nw_ttl is whole", |a| !matches!(a, Action::SetField { field: FieldId::NwTtl, mask, .. } if *mask != 0xff))
            .prop_map(|a| vec![a])
            .boxed(),
        );
        simple.push(
            if v6 {
                set_field(FieldId::Ipv6Src, 128).boxed()
            } else {
                set_field(FieldId::IpDst, 32).boxed()
            }
            .prop_map(|a| vec![a])
            .boxed(),
        );
    }
    let simple = prop::strategy::Union::new(simple);
    let list = prop::collection::vec(simple, 0..5).prop_map(|v| v.concat());
    let goto = if table < 254 {
        prop::option::of(table + 1..=254).boxed()
    } else {
        Just(None).boxed()
    };
    let in_set = prop_oneof![
        (0u32..=port::MAX).prop_map(|port| Action::Output {
            port,
            max_len: None
        }),
        set_field(FieldId::Reg3, 32),
        (0u32..=0xffff_ff00).prop_map(Action::Group),
        reg_pair().prop_map(|(src, dst)| Action::Move { src, dst }),
    ];
    let instructions = (
        any::<bool>(),
        prop::option::of(prop::collection::vec(in_set, 1..4)),
        prop::option::of((any::<u64>(), any::<u64>())),
    );
    let normal =
        (list, instructions, goto, 0u8..8).prop_map(|(mut l, (clear, write, md), g, r)| {
            // `reject` ends the packet's processing: nothing may follow it.
            if r == 0 {
                l.push(Action::Reject);
                return l;
            }
            if clear {
                l.push(Action::ClearActions);
            }
            if let Some(w) = write {
                l.push(Action::WriteActions(w));
            }
            if let Some((value, mask)) = md {
                l.push(Action::WriteMetadata { value, mask });
            }
            if let Some(t) = g {
                l.push(Action::GotoTable(t));
            }
            l
        });
    let conj = prop::collection::vec(
        prop_oneof![
            3 => (any::<u32>(), 2u8..=64, any::<u8>()).prop_map(|(id, n, k)| Action::Conjunction {
                id,
                clause: k % n,
                n_clauses: n
            }),
            1 => note(),
        ],
        1..4,
    );
    if conjunctions {
        prop_oneof![4 => normal, 1 => conj].boxed()
    } else {
        normal.boxed()
    }
}

fn arb_flow() -> impl Strategy<Value = FlowSpec> {
    (arb_match(), prop::option::of(1u8..=254)).prop_flat_map(|((l3, m), table)| {
        (
            any::<u16>(),
            any::<u64>(),
            (any::<u16>(), any::<u16>(), any::<u16>()),
            prop::array::uniform5(any::<bool>()),
            actions_for(l3, table.unwrap_or(0), true),
        )
            .prop_map(
                move |(priority, cookie, (idle, hard, imp), f, actions)| FlowSpec {
                    table,
                    priority,
                    cookie,
                    idle_timeout: idle,
                    hard_timeout: hard,
                    importance: imp,
                    flags: FlowFlags {
                        send_flow_rem: f[0],
                        check_overlap: f[1],
                        reset_counts: f[2],
                        no_packet_counts: f[3],
                        no_byte_counts: f[4],
                    },
                    matching: m,
                    actions: Some(actions),
                    ..FlowSpec::default()
                },
            )
    })
}

fn arb_group() -> impl Strategy<Value = GroupSpec> {
    let ty = prop::sample::select(vec![
        GroupType::All,
        GroupType::Select,
        GroupType::Indirect,
        GroupType::FastFailover,
    ]);
    (0u32..=0xffff_ff00, ty).prop_flat_map(|(group_id, group_type)| {
        let max = if group_type == GroupType::Indirect {
            1
        } else {
            4
        };
        let bucket = (
            any::<u16>(),
            0u32..=port::MAX,
            // Group buckets hold no instructions.
            actions_for(L3::None, 254, false).prop_map(|l| {
                l.into_iter()
                    .filter(|a| a.instruction_rank() == 0 && *a != Action::Reject)
                    .collect()
            }),
        );
        let ids = Just((0u32..20).collect::<Vec<_>>()).prop_shuffle();
        (prop::collection::vec(bucket, 0..=max), ids).prop_map(move |(bs, ids)| GroupSpec {
            group_id,
            group_type,
            buckets: bs
                .into_iter()
                .enumerate()
                .map(|(i, (w, p, actions))| Bucket {
                    bucket_id: ids[i],
                    weight: if group_type == GroupType::Select {
                        w
                    } else {
                        1
                    },
                    watch_port: (group_type == GroupType::FastFailover).then_some(p),
                    actions,
                })
                .collect(),
            selection: None,
            // The vswitch extension, on a select group now and then.
            affinity: (group_type == GroupType::Select && ids[0] % 3 == 0).then_some(1 + ids[1]),
        })
    })
}

fn show(spec: &FlowSpec) -> String {
    display_flow(spec, &TestPorts, None).to_string()
}

/// Whatever a parser accepted prints, parses back to itself, and prints the same again.
fn assert_flow_identity(spec: &FlowSpec, usage: Usage, input: &str) {
    let text = show(spec);
    let again = parse_flow(&text, usage, &TestPorts)
        .unwrap_or_else(|e| panic!("{input:?}\nprinted as {text:?}\nfails: {}", e.render(&text)));
    assert_eq!(&again, spec, "{input:?} printed as {text:?}");
    assert_eq!(show(&again), text, "{input:?}");
}

fn check_any_input(s: &str) {
    for usage in [Usage::Add, Usage::Modify, Usage::Select] {
        if let Ok(spec) = parse_flow(s, usage, &TestPorts) {
            assert_flow_identity(&spec, usage, s);
        }
    }
    if let Ok(g) = parse_group(s, &TestPorts) {
        let text = display_group(&g, &TestPorts).to_string();
        let again = parse_group(&text, &TestPorts)
            .unwrap_or_else(|e| panic!("{s:?}\nprinted as {text:?}\nfails: {e}"));
        assert_eq!(again, g, "{s:?} printed as {text:?}");
    }
    if let Ok(m) = parse_match(s, &TestPorts) {
        let text = display_match(&m, None, &TestPorts).to_string();
        let again = parse_match(&text, &TestPorts)
            .unwrap_or_else(|e| panic!("{s:?}\nprinted as {text:?}\nfails: {e}"));
        assert_eq!(again, m, "{s:?} printed as {text:?}");
    }
}

const GOLDEN: &str = include_str!("golden/flows.txt");
const GOLDEN_GROUPS: &str = include_str!("golden/groups.txt");
const GOLDEN_BAD: &str = include_str!("golden/bad_flows.txt");

fn golden_lines() -> Vec<&'static str> {
    GOLDEN
        .lines()
        .chain(GOLDEN_GROUPS.lines())
        .chain(GOLDEN_BAD.lines())
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

/// An edit at a position: delete a byte range, insert text, or replace a byte range.
fn mutate(line: &str, edits: &[(usize, u8, String)]) -> String {
    let mut s = line.to_string();
    for (pos, kind, text) in edits {
        let mut at = pos % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + 1 + *kind as usize % 4).min(s.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        match kind % 3 {
            0 => s.replace_range(at..end, ""),
            1 => s.insert_str(at, text),
            _ => s.replace_range(at..end, text),
        }
    }
    s
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-a-z0-9_=:,()\\[\\]./>+| \"]{0,3}",
        prop::sample::select(vec![
            ",",
            "(",
            ")",
            "=",
            ":",
            "/",
            "[",
            "]",
            "..",
            "->",
            "\"",
            "0x",
            "-1",
            "ff",
            "tcp",
            "ip",
            "ipv6",
            "arp",
            "reg1",
            "tp_dst",
            "nw_src",
            "dl_vlan",
            "vlan_tci",
            "ct(",
            "nat(",
            "exec(",
            "learn(",
            "load:",
            "move:",
            "set_field:",
            "output:",
            "actions=",
            "bucket=",
            "65535",
            "4294967295",
            "340282366920938463463374607431768211455",
            "é",
            "\t",
        ])
        .prop_map(str::to_string),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_flows_round_trip(spec in arb_flow()) {
        let text = show(&spec);
        let parsed = parse_flow(&text, Usage::Add, &TestPorts);
        prop_assert!(parsed.is_ok(), "{:?}\nprinted as {:?}\nfails: {}", spec, text, parsed.unwrap_err().render(&text));
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed, &spec, "printed as {}", text);
        prop_assert_eq!(show(&parsed), text);
    }

    #[test]
    fn random_groups_round_trip(g in arb_group()) {
        let text = display_group(&g, &TestPorts).to_string();
        let parsed = parse_group(&text, &TestPorts);
        prop_assert!(parsed.is_ok(), "{:?}\nprinted as {:?}\nfails: {}", g, text, parsed.unwrap_err().render(&text));
        prop_assert_eq!(parsed.unwrap(), g, "printed as {}", text);
    }

    #[test]
    fn random_matches_round_trip((_, m) in arb_match()) {
        let text = display_match(&m, None, &TestPorts).to_string();
        let parsed = parse_match(&text, &TestPorts);
        prop_assert!(parsed.is_ok(), "{:?}\nprinted as {:?}\nfails: {}", m, text, parsed.unwrap_err().render(&text));
        prop_assert_eq!(parsed.unwrap(), m, "printed as {}", text);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,60}") {
        check_any_input(&s);
    }

    #[test]
    fn flow_like_text_never_panics(s in "[-a-z0-9_=:,()\\[\\]./>+| \"]{0,80}") {
        check_any_input(&s);
    }

    #[test]
    fn mutated_golden_lines(
        i in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), fragment()), 1..4),
    ) {
        let lines = golden_lines();
        let line = lines[i.index(lines.len())];
        check_any_input(&mutate(line, &edits));
    }
}

#[test]
fn golden_lines_are_fixed_points_for_every_parser() {
    for line in golden_lines() {
        check_any_input(line);
    }
}
