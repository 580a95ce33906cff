//! Unit tests for the tricky corners of the flow syntax. The golden files in
//! `proto/tests/golden/` cover the bulk of it against Open vSwitch's own output.

use super::*;
use crate::action::{Ct, CtZone, LearnSpec, Nat, NatKind, port};
use crate::field::FieldId;
use crate::flowmod::FlowFlags;

struct Ports(&'static [(u32, &'static str)]);

impl PortNames for Ports {
    fn port_no(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
    }
    fn port_name(&self, no: u32) -> Option<String> {
        self.0
            .iter()
            .find(|(p, _)| *p == no)
            .map(|(_, n)| n.to_string())
    }
}

const PORTS: Ports = Ports(&[(1, "pod1"), (2, "pod2"), (6, "local"), (8, "q\"t,x y")]);

fn add(s: &str) -> FlowSpec {
    parse_flow(s, Usage::Add, &PORTS).unwrap_or_else(|e| panic!("{}", e.render(s)))
}

fn show(spec: &FlowSpec) -> String {
    display_flow(spec, &PORTS, None).to_string()
}

fn err(s: &str, usage: Usage) -> ParseError {
    match parse_flow(s, usage, &PORTS) {
        Ok(f) => panic!("{s} parsed as {}", show(&f)),
        Err(e) => e,
    }
}

#[test]
fn dump_flows_with_stats_is_byte_exact() {
    // Lines captured from `ovs-ofctl -O OpenFlow15 dump-flows` (and NXST for hard_age),
    // without the leading space dump-flows puts on every line.
    let cases = [
        (
            "actions=drop",
            FlowStats {
                duration_ms: 1216,
                idle_age: 1,
                ..FlowStats::default()
            },
            "cookie=0x0, duration=1.216s, table=0, n_packets=0, n_bytes=0, idle_age=1, actions=drop",
        ),
        (
            "cookie=0x5,table=3,idle_timeout=10,hard_timeout=20,importance=5,priority=10,\
             send_flow_rem,check_overlap,reset_counts,no_packet_counts,no_byte_counts,tcp,\
             actions=normal",
            FlowStats {
                duration_ms: 1234,
                idle_age: 1,
                ..FlowStats::default()
            },
            "cookie=0x5, duration=1.234s, table=3, n_packets=0, n_bytes=0, idle_timeout=10, \
             hard_timeout=20, send_flow_rem check_overlap reset_counts no_packet_counts \
             no_byte_counts importance=5, idle_age=1, priority=10,tcp actions=NORMAL",
        ),
        (
            "priority=100,ip,in_port=1,nw_dst=10.244.1.0/24,actions=output:1",
            FlowStats {
                duration_ms: 3235,
                idle_age: 3,
                hard_age: Some(1),
                ..FlowStats::default()
            },
            "cookie=0x0, duration=3.235s, table=0, n_packets=0, n_bytes=0, idle_age=3, \
             hard_age=1, priority=100,ip,in_port=pod1,nw_dst=10.244.1.0/24 actions=output:pod1",
        ),
        (
            "table=1,priority=5,reset_counts,actions=drop",
            FlowStats {
                duration_ms: 7000,
                n_packets: 12,
                n_bytes: 3456,
                idle_age: 2,
                hard_age: Some(7),
            },
            "cookie=0x0, duration=7s, table=1, n_packets=12, n_bytes=3456, reset_counts \
             idle_age=2, priority=5 actions=drop",
        ),
    ];
    for (line, stats, want) in cases {
        let spec = add(line);
        let got = display_flow(&spec, &PORTS, Some(&stats)).to_string();
        assert_eq!(got, want);
        // A dumped line reads back as the same flow.
        assert_eq!(add(&got), spec);
    }
}

#[test]
fn render_points_at_the_column() {
    let line = "tcp,tp_dsts=80,actions=drop";
    let e = err(line, Usage::Add);
    assert_eq!(e.offset, 4);
    assert_eq!(
        e.render(line),
        "column 5: unknown field or keyword \"tp_dsts\"; did you mean \"tp_dst\"?\n    \
         tcp,tp_dsts=80,actions=drop\n        ^"
    );
    let e = err("tp_dst=80,actions=drop", Usage::Add);
    assert!(
        e.to_string()
            .starts_with("column 1: tp_dst requires `tcp`, `udp` or `sctp`")
    );
}

#[test]
fn a_field_without_its_prerequisite_is_never_a_match_all() {
    for line in [
        "tp_dst=80,actions=drop",
        "nw_dst=10.0.0.1,actions=drop",
        "ipv6_src=::1,actions=drop",
        "tcp_flags=+syn,actions=drop",
        "icmp_type=8,actions=drop",
    ] {
        let e = err(line, Usage::Add);
        assert!(e.message.contains("requires"), "{line}: {e}");
        let e = parse_match(line.trim_end_matches(",actions=drop"), &PORTS).unwrap_err();
        assert!(e.message.contains("requires"), "{line}: {e}");
    }
    // Order does not matter: the shorthand may come after the field.
    assert_eq!(
        add("tp_dst=80,tcp,actions=drop"),
        add("tcp,tp_dst=80,actions=drop")
    );
    // nw_src is the ARP sender address in an ARP match.
    let m = add("nw_src=10.0.0.1,arp,actions=drop").matching;
    assert_eq!(m.get(FieldId::ArpSpa), (0x0a00_0001, 0xffff_ffff));
}

#[test]
fn usages() {
    let s = parse_flow(
        "cookie=0x5/0xff,out_port=pod1,out_group=3,table=0,tcp",
        Usage::Select,
        &PORTS,
    )
    .unwrap();
    assert_eq!((s.cookie, s.cookie_mask), (0x5, 0xff));
    assert_eq!(
        (s.out_port, s.out_group, s.table),
        (Some(1), Some(3), Some(0))
    );
    assert_eq!(s.actions, None);
    let text = show(&s);
    assert_eq!(
        text,
        "cookie=0x5/0xff, table=0, out_port=pod1, out_group=3, tcp"
    );
    assert_eq!(parse_flow(&text, Usage::Select, &PORTS).unwrap(), s);
    // Empty criteria select everything and print as nothing.
    let all = parse_flow("", Usage::Select, &PORTS).unwrap();
    assert_eq!(all, FlowSpec::default());
    assert_eq!(show(&all), "");
    assert!(
        err("cookie=0x5", Usage::Select)
            .message
            .contains("cookie=0x5/-1")
    );
    assert_eq!(
        parse_flow("cookie=0x5/-1", Usage::Select, &PORTS)
            .unwrap()
            .cookie_mask,
        u64::MAX
    );
    assert!(
        err("tcp,actions=drop", Usage::Select)
            .message
            .contains("not allowed")
    );
    assert!(
        err("idle_timeout=5", Usage::Select)
            .message
            .contains("not allowed")
    );
    assert!(
        err("importance=5,actions=drop", Usage::Modify)
            .message
            .contains("not allowed")
    );
    let m = parse_flow("cookie=0x7,tcp,actions=drop", Usage::Modify, &PORTS).unwrap();
    assert_eq!((m.cookie, m.cookie_mask), (7, 0));
    let m = parse_flow("table=0,cookie=0x7/0xf,actions=drop", Usage::Modify, &PORTS).unwrap();
    assert_eq!((m.table, m.cookie, m.cookie_mask), (Some(0), 7, 0xf));
    assert_eq!(parse_flow(&show(&m), Usage::Modify, &PORTS).unwrap(), m);
    // An added flow's table=0 is the default table: one value for one meaning.
    assert_eq!(add("table=0,actions=drop").table, None);
    assert!(err("tcp", Usage::Add).message.contains("actions=drop"));
}

#[test]
fn parse_match_takes_only_fields() {
    let m: Match = "in_port=1,tcp,nw_src=10.0.0.1,tp_dst=80".parse().unwrap();
    assert_eq!(m.to_string(), "tcp,in_port=1,nw_src=10.0.0.1,tp_dst=80");
    assert_eq!(m.to_string().parse::<Match>().unwrap(), m);
    for bad in ["priority=5,tcp", "tcp,actions=drop", "table=1", "cookie=1"] {
        let e = bad.parse::<Match>().unwrap_err();
        assert!(e.message.contains("not a match field"), "{bad}: {e}");
    }
    assert_eq!(
        display_match(&m, Some(7), &PORTS).to_string(),
        "priority=7,tcp,in_port=pod1,nw_src=10.0.0.1,tp_dst=80"
    );
    assert_eq!(
        display_match(&Match::CATCHALL, None, &PORTS).to_string(),
        ""
    );
}

#[test]
fn actions_api_checks_against_the_match() {
    let udp: Match = "udp".parse().unwrap();
    let a = parse_actions("mod_tp_src:80,load:0x1->NXM_NX_REG1[0..3]", &udp, &PORTS).unwrap();
    assert_eq!(
        a,
        vec![
            Action::SetField {
                field: FieldId::UdpSrc,
                value: 80,
                mask: 0xffff
            },
            Action::SetField {
                field: FieldId::Reg1,
                value: 1,
                mask: 0xf
            },
        ]
    );
    assert_eq!(
        display_actions(&a, &PORTS).to_string(),
        "set_field:80->udp_src,set_field:0x1/0xf->reg1"
    );
    assert!(parse_actions("dec_ttl", &Match::CATCHALL, &PORTS).is_err());
    assert!(parse_actions("dec_ttl", &udp, &PORTS).is_ok());
    // Offsets are relative to the action text.
    let e = parse_actions("output:1,frob", &udp, &PORTS).unwrap_err();
    assert_eq!(e.offset, 9);
    assert_eq!(display_actions(&[], &PORTS).to_string(), "drop");
    assert_eq!(parse_actions("drop", &udp, &PORTS).unwrap(), vec![]);
}

#[test]
fn output_forms() {
    let a = add("actions=output:1,2,pod2,LOCAL,in_port,controller,controller:64,output(port=1,max_len=9),output:reg3[0..15],output:TABLE").actions.unwrap();
    assert_eq!(
        a,
        vec![
            Action::Output {
                port: 1,
                max_len: None
            },
            Action::Output {
                port: 2,
                max_len: None
            },
            Action::Output {
                port: 2,
                max_len: None
            },
            Action::Output {
                port: port::LOCAL,
                max_len: None
            },
            Action::InPort,
            Action::Controller { max_len: u16::MAX },
            Action::Controller { max_len: 64 },
            Action::Output {
                port: 1,
                max_len: Some(9)
            },
            Action::OutputReg(crate::SubField {
                field: FieldId::Reg3,
                ofs: 0,
                n_bits: 16
            }),
            Action::Output {
                port: port::TABLE,
                max_len: None
            },
        ]
    );
    // "output:in_port" is the IN_PORT port, not the in_port field (as Open vSwitch reads it).
    assert_eq!(
        add("actions=output:in_port").actions.unwrap(),
        vec![Action::InPort]
    );
}

#[test]
fn port_names_are_quoted_when_they_must_be() {
    // A port called "local" prints quoted, so it does not read back as LOCAL.
    let spec = add("in_port=6,actions=output:8,output:LOCAL");
    let text = show(&spec);
    assert_eq!(text, r#"in_port="local" actions=output:"q\"t,x y",LOCAL"#);
    assert_eq!(add(&text), spec);
    assert_eq!(
        add(r#"in_port="local",actions=drop"#)
            .matching
            .flow
            .in_port(),
        6
    );
    assert_eq!(
        add("in_port=local,actions=drop").matching.flow.in_port(),
        port::LOCAL
    );
}

#[test]
fn separators() {
    let a = add("tcp\ttp_dst=80\t,\t actions=output:1 ,  output:2");
    assert_eq!(show(&a), "tcp,tp_dst=80 actions=output:pod1,output:pod2");
}

#[test]
fn conjunction_clause_is_zero_based() {
    let a = add("actions=conjunction(7,2/3)").actions.unwrap();
    assert_eq!(
        a,
        vec![Action::Conjunction {
            id: 7,
            clause: 1,
            n_clauses: 3
        }]
    );
    assert!(
        err("actions=conjunction(7,2/3),output:1", Usage::Add)
            .message
            .contains("\"output\"")
    );
}

#[test]
fn note_is_padded_like_open_vswitch() {
    for (text, len) in [
        ("", 6),
        ("01", 6),
        ("01.02.03.04.05.06", 6),
        ("0102030405060708", 14),
    ] {
        let a = add(&format!("actions=note:{text}")).actions.unwrap();
        let Action::Note(bytes) = &a[0] else { panic!() };
        assert_eq!(bytes.len(), len, "{text}");
    }
}

#[test]
fn vlan_edits_push_a_tag_when_there_is_none() {
    let a = add("actions=mod_vlan_vid:5,mod_vlan_pcp:2")
        .actions
        .unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0], Action::PushVlan(0x8100));
    assert_eq!(
        a[1],
        Action::SetField {
            field: FieldId::VlanVid,
            value: 0x1005,
            mask: 0x1fff
        }
    );
    let a = add("dl_vlan=3,actions=mod_vlan_vid:5").actions.unwrap();
    assert_eq!(a.len(), 1);
    assert!(
        err(
            "dl_vlan=3,actions=pop_vlan,mod_vlan_pcp:1,pop_vlan,pop_vlan",
            Usage::Add
        )
        .message
        .contains("pop_vlan requires")
    );
}

#[test]
fn ct_and_nat() {
    let a = add("ipv6,actions=ct(commit,zone=NXM_NX_REG0[0..15],nat(dst=[fd00::1]-[fd00::2]:80-81,hash),exec(set_field:0x5->ct_mark))")
        .actions
        .unwrap();
    let want = Ct {
        commit: true,
        zone: CtZone::Field(crate::SubField {
            field: FieldId::Reg0,
            ofs: 0,
            n_bits: 16,
        }),
        nat: Some(Nat {
            kind: Some(NatKind::Dst),
            addrs: Some(("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())),
            ports: Some((80, 81)),
            hash: true,
            ..Nat::default()
        }),
        exec: vec![Action::SetField {
            field: FieldId::CtMark,
            value: 5,
            mask: 0xffff_ffff,
        }],
        ..Ct::default()
    };
    assert_eq!(a, vec![Action::Ct(Box::new(want))]);
    assert_eq!(
        display_actions(&a, &PORTS).to_string(),
        "ct(commit,zone=NXM_NX_REG0[0..15],nat(dst=[fd00::1]-[fd00::2]:80-81,hash),exec(set_field:0x5->ct_mark))"
    );
}

#[test]
fn learn_immediates_are_right_aligned() {
    let a = add(
        "actions=learn(table=3,NXM_NX_REG0[8..15]=0x5,load:0x7->NXM_NX_REG1[4..7],eth_type=0x800)",
    )
    .actions
    .unwrap();
    let Action::Learn(l) = &a[0] else { panic!() };
    assert_eq!(l.table, 3);
    assert_eq!(
        l.specs[0],
        LearnSpec::MatchImm {
            dst: crate::SubField {
                field: FieldId::Reg0,
                ofs: 8,
                n_bits: 8
            },
            value: 5
        }
    );
    assert_eq!(
        l.specs[1],
        LearnSpec::LoadImm {
            value: 7,
            dst: crate::SubField {
                field: FieldId::Reg1,
                ofs: 4,
                n_bits: 4
            }
        }
    );
    assert_eq!(
        l.specs[2],
        LearnSpec::MatchImm {
            dst: crate::SubField::whole(FieldId::EthType),
            value: 0x800
        }
    );
}

#[test]
fn subfields() {
    let sf = parse_subfield("reg1[0..15]").unwrap();
    assert_eq!(display_subfield(&sf).to_string(), "NXM_NX_REG1[0..15]");
    assert_eq!(
        display_subfield(&parse_subfield("reg1").unwrap()).to_string(),
        "NXM_NX_REG1[]"
    );
    assert_eq!(
        display_subfield(&parse_subfield("reg1[3]").unwrap()).to_string(),
        "NXM_NX_REG1[3]"
    );
    assert_eq!(
        display_subfield(&parse_subfield("tp_src[]").unwrap()).to_string(),
        "tp_src[]"
    );
    assert_eq!(parse_subfield("NXM_OF_IN_PORT[]").unwrap().n_bits, 16);
    assert!(parse_subfield("reg1[16..15]").is_err());
    // Open vSwitch accepts bits of 128-bit fields (`move:reg1[0..15]->ct_label[64..79]`).
    let sf = parse_subfield("ct_label[64..79]").unwrap();
    assert_eq!((sf.ofs, sf.n_bits), (64, 16));
    assert_eq!(display_subfield(&sf).to_string(), "NXM_NX_CT_LABEL[64..79]");
    assert!(parse_subfield("ipv6_src[0..128]").is_err());
    assert!(parse_subfield("nope[]").is_err());
}

#[test]
fn groups_parse_and_print() {
    let g: GroupSpec = "group_id=3,type=select,bucket=weight:5,output:1,bucket=output:2"
        .parse()
        .unwrap();
    assert_eq!(g.buckets.len(), 2);
    assert_eq!((g.buckets[0].bucket_id, g.buckets[0].weight), (0, 5));
    assert_eq!((g.buckets[1].bucket_id, g.buckets[1].weight), (1, 1));
    let text = g.to_string();
    assert_eq!(
        text,
        "group_id=3,type=select,bucket=bucket_id:0,weight:5,actions=output:1,bucket=bucket_id:1,actions=output:2"
    );
    assert_eq!(text.parse::<GroupSpec>().unwrap(), g);
}

#[test]
fn from_str_and_display() {
    let f: FlowSpec = "table=2,priority=7,send_flow_rem,udp,actions=output:3"
        .parse()
        .unwrap();
    assert_eq!(
        f.flags,
        FlowFlags {
            send_flow_rem: true,
            ..FlowFlags::default()
        }
    );
    assert_eq!(
        f.to_string(),
        "table=2, send_flow_rem priority=7,udp actions=output:3"
    );
    assert_eq!(f.to_string().parse::<FlowSpec>().unwrap(), f);
}

#[test]
fn values_are_masked_and_wide_values_fit() {
    let f = add(
        "dl_src=00:11:22:33:44:55/ff:ff:ff:00:00:00,ct_label=0xffffffffffffffffffffffffffffffff,tun_id=0xffffffffffffffff,actions=drop",
    );
    assert_eq!(
        show(&f),
        "ct_label=0xffffffffffffffffffffffffffffffff,tun_id=0xffffffffffffffff,dl_src=00:11:22:00:00:00/ff:ff:ff:00:00:00 actions=drop"
    );
    assert!(
        err(
            "ct_label=0x1ffffffffffffffffffffffffffffffff,actions=drop",
            Usage::Add
        )
        .message
        .contains("too large")
    );
}

#[test]
fn goto_table_rules() {
    assert_eq!(
        add("table=3,actions=goto_table:4").actions.unwrap(),
        vec![Action::GotoTable(4)]
    );
    assert!(
        err("table=3,actions=goto_table:3", Usage::Add)
            .message
            .contains("later table")
    );
    assert!(
        err("actions=goto_table:3,goto_table:4", Usage::Add)
            .message
            .contains("last")
    );
}

#[test]
fn reject_parses_prints_and_refuses_what_it_must() {
    let f = add("tcp,nw_dst=10.96.0.10,tp_dst=81,actions=reject");
    assert_eq!(f.actions.as_deref(), Some(&[Action::Reject][..]));
    assert_eq!(show(&f), "tcp,nw_dst=10.96.0.10,tp_dst=81 actions=reject");
    assert_eq!(show(&add(&show(&f))), show(&f));
    // Any packet may be rejected (what cannot be answered is dropped).
    assert!(parse_actions("reject", &Match::CATCHALL, &PORTS).is_ok());
    assert!(parse_actions("set_field:1->reg0,reject", &Match::CATCHALL, &PORTS).is_ok());
    let e = err("actions=reject,output:1", Usage::Add);
    assert!(
        e.message.contains("must be the last action"),
        "{}",
        e.message
    );
    let e = err("actions=reject(tcp_reset)", Usage::Add);
    assert!(
        e.message.contains("reject takes no argument"),
        "{}",
        e.message
    );
    let e = err("actions=reject:1", Usage::Add);
    assert!(
        e.message.contains("reject takes no argument"),
        "{}",
        e.message
    );
    let e = err("actions=write_actions(reject)", Usage::Add);
    assert!(e.message.contains("not allowed here"), "{}", e.message);
    let e = err("actions=drop,reject", Usage::Add);
    assert!(e.message.contains("drop"), "{}", e.message);
    let e = err("ip,actions=ct(commit,exec(reject))", Usage::Add);
    assert!(e.message.contains("not allowed here"), "{}", e.message);
    let e = err("actions=rejct", Usage::Add);
    assert!(e.message.contains("reject"), "{}", e.message);
}
