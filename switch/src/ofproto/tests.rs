use super::*;
use crate::dp::action::{DpAction, DropReason};
use vswitch_proto::flowmod::Usage;
use vswitch_proto::text::{NoPortNames, parse_flow, parse_group, parse_match};

fn spec(line: &str) -> FlowSpec {
    parse_flow(line, Usage::Add, &NoPortNames).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn sel(line: &str) -> FlowSpec {
    parse_flow(line, Usage::Select, &NoPortNames).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn bridge(lines: &[&str]) -> Bridge {
    let mut b = Bridge::new("br0");
    b.set_ports(
        (1..=4)
            .map(|no| PortDesc {
                no,
                name: format!("p{no}"),
                no_flood: false,
            })
            .collect(),
    );
    let specs: Vec<FlowSpec> = lines.iter().map(|l| spec(l)).collect();
    b.add_flows(&specs, 0).unwrap();
    b
}

fn packet(text: &str) -> Flow {
    parse_match(text, &NoPortNames).unwrap().flow
}

fn actions(b: &Bridge, pkt: &str) -> String {
    b.trace(&packet(pkt), 0).datapath_actions()
}

#[test]
fn add_replace_keeps_counters_unless_reset() {
    let mut b = bridge(&["in_port=1,actions=output:2"]);
    let r = b.pipeline().rules()[0].clone();
    r.stats.credit(3, 300, 5);
    b.add_flows(&[spec("in_port=1,actions=output:3")], 10)
        .unwrap();
    let r2 = b.pipeline().rules()[0].clone();
    assert_eq!(r2.stats.packets(), 3);
    assert_eq!(r2.actions, spec("actions=output:3").actions.unwrap());
    b.add_flows(&[spec("in_port=1,reset_counts,actions=output:3")], 10)
        .unwrap();
    assert_eq!(b.pipeline().rules()[0].stats.packets(), 0);
    assert_eq!(b.pipeline().n_rules(), 1);
}

#[test]
fn modify_and_delete_loose_and_strict() {
    let mut b = bridge(&[
        "priority=10,ip,actions=output:1",
        "priority=20,ip,nw_dst=10.0.0.0/8,actions=output:2",
        "priority=30,tcp,nw_dst=10.0.0.1,tp_dst=80,cookie=0x5,actions=output:3",
        "priority=5,arp,actions=normal",
    ]);
    // Loose: every rule at least as specific as `ip` is modified.
    let n = b.modify_flows(&spec("ip,actions=drop"), false, 1).unwrap();
    assert_eq!(n, 3);
    assert_eq!(actions(&b, "in_port=4,arp"), "1,2,3");
    // Strict: priority and match must be exactly these.
    let n = b
        .modify_flows(
            &spec("priority=20,ip,nw_dst=10.0.0.0/8,actions=output:4"),
            true,
            1,
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(actions(&b, "in_port=1,ip,nw_dst=10.1.1.1"), "4");
    // Cookie-masked delete.
    let gone = b.delete_flows(&sel("cookie=0x5/-1"), false);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].priority, 30);
    // out_port filter.
    let gone = b.delete_flows(&sel("out_port=4"), false);
    assert_eq!(gone.len(), 1);
    // Strict delete needs the exact priority.
    assert!(b.delete_flows(&sel("priority=11,ip"), true).is_empty());
    assert_eq!(b.delete_flows(&sel("priority=10,ip"), true).len(), 1);
    assert_eq!(b.pipeline().n_rules(), 1);
}

#[test]
fn refused_changes_leave_tables_alone() {
    let mut b = bridge(&["table=3,actions=drop"]);
    let before = b.pipeline().generation();
    // The text syntax already refuses a backwards goto; the bridge checks again for
    // flows that arrive as data.
    let mut back = spec("table=5,actions=goto_table:6");
    back.actions = Some(vec![vswitch_proto::Action::GotoTable(2)]);
    let err = b
        .add_flows(&[spec("table=1,actions=drop"), back], 1)
        .unwrap_err();
    assert!(
        matches!(err, FlowModError::GotoBackwards { from: 5, to: 2 }),
        "{err}"
    );
    let err = b.add_flows(&[spec("actions=group:9")], 1).unwrap_err();
    assert_eq!(err, FlowModError::NoSuchGroup(9));
    assert_eq!(b.pipeline().n_rules(), 1);
    assert_eq!(b.pipeline().generation(), before);
}

#[test]
fn groups_select_all_and_removal() {
    let mut b = bridge(&[]);
    b.add_group(
        &parse_group(
            "group_id=1,type=select,bucket=actions=output:1,bucket=actions=output:2",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    b.add_group(
        &parse_group(
            "group_id=2,type=all,bucket=actions=output:3,bucket=actions=output:4",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        b.add_group(
            &parse_group("group_id=2,type=all,bucket=actions=output:3", &NoPortNames).unwrap()
        )
        .is_err()
    );
    b.add_flows(
        &[
            spec("in_port=3,ip,actions=group:1"),
            spec("in_port=2,actions=group:2"),
        ],
        0,
    )
    .unwrap();
    assert_eq!(actions(&b, "in_port=2"), "3,4");
    // A select group sends each connection to one bucket, always the same one.
    let mut seen = std::collections::HashSet::new();
    for sport in 1000..1100 {
        let pkt = format!("in_port=3,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src={sport},tp_dst=80");
        let a = actions(&b, &pkt);
        assert_eq!(a, actions(&b, &pkt));
        seen.insert(a);
    }
    assert!(seen.contains("1") && seen.contains("2"), "{seen:?}");
    // Deleting a group deletes the rules that use it.
    assert_eq!(b.delete_groups(Some(1)), vec![1]);
    assert_eq!(b.pipeline().n_rules(), 1);
}

#[test]
fn timeouts_expire_rules() {
    let mut b = Bridge::new("br0");
    b.add_flows(
        &[
            spec("idle_timeout=2,in_port=1,actions=drop"),
            spec("hard_timeout=5,in_port=2,actions=drop"),
        ],
        0,
    )
    .unwrap();
    assert!(b.expire(1999).is_empty());
    // Traffic keeps the idle one alive.
    b.pipeline().rules()[0].stats.credit(1, 60, 1500);
    assert!(b.expire(3000).is_empty());
    let gone = b.expire(3600);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].idle_timeout, 2);
    assert_eq!(b.expire(5000).len(), 1);
}

#[test]
fn learn_refresh_does_not_publish() {
    let mut b = Bridge::new("br0");
    let l =
        spec("table=10,hard_timeout=10,priority=5,ip,nw_src=10.0.0.1,actions=set_field:0x5->reg3");
    b.learn(&l, 0).unwrap();
    let g = b.pipeline().generation();
    b.learn(&l, 9000).unwrap();
    assert_eq!(b.pipeline().generation(), g);
    assert!(
        b.expire(12_000).is_empty(),
        "relearning restarted the hard timeout"
    );
    assert_eq!(b.expire(19_000).len(), 1);
}

#[test]
fn set_field_commits_and_masks() {
    let b = bridge(&["in_port=1,ip,actions=set_field:10.0.0.9->ip_dst,dec_ttl,output:2"]);
    let t = b.trace(
        &packet("in_port=1,ip,nw_src=1.1.1.1,nw_dst=10.0.0.1,nw_ttl=64"),
        0,
    );
    assert_eq!(t.datapath_actions(), "set(ipv4(dst=10.0.0.9,ttl=63)),2");
    // Written and read fields are exact in the megaflow; the source address is not.
    assert_eq!(t.megaflow.mask.nw_dst(), u32::MAX);
    assert_eq!(t.megaflow.mask.nw_ttl(), 0xff);
    assert_eq!(t.megaflow.mask.nw_src(), 0);
    // Already equal: no set action, same megaflow shape.
    let t2 = b.trace(&packet("in_port=1,ip,nw_dst=10.0.0.9,nw_ttl=64"), 0);
    assert_eq!(t2.datapath_actions(), "set(ipv4(ttl=63)),2");
}

#[test]
fn dec_ttl_at_one_drops() {
    let b = bridge(&["ip,actions=dec_ttl,output:2"]);
    let t = b.trace(&packet("in_port=1,ip,nw_ttl=1"), 0);
    assert_eq!(t.actions, vec![DpAction::Drop(DropReason::TtlExceeded)]);
}

#[test]
fn resubmit_goto_and_registers() {
    let b = bridge(&[
        "table=0,in_port=1,actions=set_field:0x2->reg1,resubmit(,5),output:3",
        "table=5,reg1=0x2,actions=move:NXM_NX_REG1[]->NXM_NX_REG2[],goto_table:6",
        "table=6,reg2=0x2,actions=output:NXM_NX_REG2[]",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "2,3");
    let t = b.trace(&packet("in_port=1"), 0);
    let tables: Vec<u8> = t.matched().map(|(t, _)| t).collect();
    assert_eq!(tables, vec![0, 5, 6]);
}

#[test]
fn resubmit_loops_are_cut() {
    let b = bridge(&["table=0,actions=resubmit(,0)"]);
    let t = b.trace(&packet("in_port=1"), 0);
    assert_eq!(
        t.actions.last(),
        Some(&DpAction::Drop(DropReason::ResubmitLimit))
    );
}

#[test]
fn output_to_input_port_is_skipped() {
    let b = bridge(&["actions=output:1,output:2,in_port"]);
    assert_eq!(actions(&b, "in_port=1"), "2,1");
}

#[test]
fn normal_learns_and_floods() {
    let b = bridge(&["actions=normal"]);
    let mac = b.mac_table();
    let fp_key = packet("in_port=1,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02");
    // Unknown destination: flood (not back to port 1).
    let out = xlate::xlate(b.pipeline(), &mac, &fp_key, 0);
    assert_eq!(
        crate::dp::action::DisplayActions(&out.actions).to_string(),
        "2,3,4"
    );
    // The reply is switched straight back to where 02:..:01 was learned.
    let back = packet("in_port=3,dl_src=02:00:00:00:00:02,dl_dst=02:00:00:00:00:01");
    let out = xlate::xlate(b.pipeline(), &mac, &back, 0);
    assert_eq!(
        crate::dp::action::DisplayActions(&out.actions).to_string(),
        "1"
    );
    assert_eq!(
        out.mask.get(vswitch_proto::flow::slot::DL_DST),
        0xffff_ffff_ffff
    );
}

#[test]
fn push_pop_vlan_commits() {
    let b = bridge(&[
        "in_port=1,actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2",
        "in_port=2,dl_vlan=100,actions=pop_vlan,output:1",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "push_vlan(vid=100,pcp=0),2");
    assert_eq!(actions(&b, "in_port=2,dl_vlan=100"), "pop_vlan,1");
}

#[test]
fn conjunction_in_the_pipeline() {
    let b = bridge(&[
        "priority=100,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)",
        "priority=100,ip,nw_src=10.0.0.2,actions=conjunction(7,1/2)",
        "priority=100,tcp,tp_dst=80,actions=conjunction(7,2/2)",
        "priority=100,conj_id=7,ip,actions=output:2",
        "priority=1,actions=drop",
    ]);
    assert_eq!(actions(&b, "in_port=1,tcp,nw_src=10.0.0.2,tp_dst=80"), "2");
    assert_eq!(
        actions(&b, "in_port=1,tcp,nw_src=10.0.0.3,tp_dst=80"),
        "drop"
    );
    assert_eq!(
        actions(&b, "in_port=1,tcp,nw_src=10.0.0.1,tp_dst=22"),
        "drop"
    );
}

#[test]
fn ct_recirculates_with_metadata() {
    let b = bridge(&[
        "table=0,ip,actions=set_field:0x7->reg0,ct(zone=5,table=3)",
        "table=3,ct_state=+trk+new,reg0=0x7,ip,actions=ct(commit,zone=5,exec(set_field:0x1->ct_mark)),output:2",
    ]);
    let t = b.trace(&packet("in_port=1,ip"), 0);
    let DpAction::Ct(ct) = &t.actions[0] else {
        panic!("{:?}", t.actions)
    };
    let r = ct.recirc.as_ref().unwrap();
    assert_eq!((ct.zone, r.table), (5, 3));
    let md = r.metadata_for(&packet("in_port=1,ip"));
    assert_eq!(md.reg(0), 7);
    assert_eq!(md.in_port(), 1);
    // The recirculated pass, as conntrack would send it back.
    let mut again = packet("in_port=1,ip");
    again.w[crate::dp::action::METADATA_WORDS]
        .copy_from_slice(&md.w[crate::dp::action::METADATA_WORDS]);
    again.set_ct_state(0x21);
    let t = b.trace(&again, 0);
    assert_eq!(
        t.datapath_actions(),
        "ct(commit,zone=5,mark=0x1/0xffffffff),2"
    );
}

#[test]
fn learn_builds_the_flow() {
    let b = bridge(&[
        "table=0,tcp,actions=learn(table=10,hard_timeout=60,priority=200,eth_type=0x800,NXM_OF_IP_SRC[],nw_proto=6,NXM_OF_TCP_DST[],load:NXM_NX_REG3[]->NXM_NX_REG3[]),output:2",
    ]);
    let t = b.trace(
        &packet("in_port=1,tcp,nw_src=10.0.0.5,tp_dst=443,reg3=0x9"),
        0,
    );
    let DpAction::Learn(l) = &t.actions[0] else {
        panic!("{:?}", t.actions)
    };
    assert_eq!(l.table, Some(10));
    assert_eq!(l.hard_timeout, 60);
    let m = l.matching;
    assert!(m.matches(&packet("tcp,nw_src=10.0.0.5,tp_dst=443")));
    assert!(!m.matches(&packet("tcp,nw_src=10.0.0.6,tp_dst=443")));
    assert_eq!(
        l.actions.as_deref(),
        Some(
            &[vswitch_proto::Action::SetField {
                field: vswitch_proto::FieldId::Reg3,
                value: 9,
                mask: 0xffff_ffff
            }][..]
        )
    );
    // The fields the learned flow copies are part of the megaflow.
    assert_eq!(t.megaflow.mask.nw_src(), u32::MAX);
}

// ---- Regressions from review: megaflow masks must cover what the actions depend on ----

/// Packets that get different actions must not share a megaflow.
fn assert_split_by_mask(b: &Bridge, a: &str, other: &str) {
    let ta = b.trace(&packet(a), 0);
    let tb = b.trace(&packet(other), 0);
    if ta.datapath_actions() != tb.datapath_actions() {
        assert!(
            !ta.megaflow.matches(&packet(other)),
            "{a} and {other} get different actions but share a megaflow"
        );
    }
}

#[test]
fn partial_writes_pin_the_whole_field() {
    let b = bridge(&["vlan_tci=0x1000/0x1000,actions=mod_vlan_pcp:5,output:2"]);
    assert_split_by_mask(&b, "in_port=1,dl_vlan=10", "in_port=1,dl_vlan=20");
    let b = bridge(&["ip,actions=mod_nw_tos:40,output:2"]);
    assert_split_by_mask(&b, "in_port=1,ip,nw_ecn=0", "in_port=1,ip,nw_ecn=3");
    let b = bridge(&["ip,actions=set_field:10.0.0.0/255.0.0.0->nw_dst,output:2"]);
    assert_split_by_mask(
        &b,
        "in_port=1,ip,nw_dst=192.168.1.5",
        "in_port=1,ip,nw_dst=192.168.1.6",
    );
    let b = bridge(&["in_port=1,actions=set_tunnel:5,output:2"]);
    assert_split_by_mask(&b, "in_port=1,tun_src=1.1.1.1", "in_port=1,tun_src=2.2.2.2");
}

#[test]
fn recirculation_keeps_the_packets_own_tunnel() {
    let b = bridge(&[
        "table=0,ip,actions=ct(zone=1,table=1)",
        "table=1,tun_id=100,actions=output:2",
        "table=1,tun_id=200,actions=output:3",
    ]);
    let t = b.trace(&packet("in_port=1,ip,tun_id=100"), 0);
    let DpAction::Ct(ct) = &t.actions[0] else {
        panic!()
    };
    let r = ct.recirc.as_ref().unwrap();
    // A packet of VNI 200 in the same megaflow comes back with VNI 200.
    let other = packet("in_port=1,ip,tun_id=200");
    assert!(t.megaflow.matches(&other));
    assert_eq!(r.metadata_for(&other).tun_id(), 200);
}

#[test]
fn group_loops_are_cut_not_a_crash() {
    let mut b = bridge(&[]);
    b.add_group(&parse_group("group_id=1,type=all,bucket=actions=group:1", &NoPortNames).unwrap())
        .unwrap();
    b.add_flows(&[spec("in_port=1,actions=group:1")], 0)
        .unwrap();
    let t = b.trace(&packet("in_port=1"), 0);
    assert_eq!(t.actions, vec![DpAction::Drop(DropReason::ResubmitLimit)]);
}

#[test]
fn bucket_actions_check_prerequisites_per_packet() {
    let mut b = bridge(&[]);
    b.add_group(
        &parse_group(
            "group_id=1,type=all,bucket=actions=dec_ttl,set_field:10.0.0.1->ip_dst,output:2",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    b.add_flows(&[spec("in_port=1,actions=group:1")], 0)
        .unwrap();
    // ARP: no IP fields to touch; forwarded unchanged.
    assert_eq!(actions(&b, "in_port=1,arp,arp_tpa=10.0.0.5"), "2");
    // IPv4 with TTL 1 is not in the ARP packet's megaflow (dl_type is always exact).
    assert_split_by_mask(
        &b,
        "in_port=1,arp,arp_tpa=10.0.0.5",
        "in_port=1,ip,nw_dst=10.0.0.5,nw_ttl=1",
    );
    assert_eq!(
        actions(&b, "in_port=1,ip,nw_dst=10.0.0.5,nw_ttl=1"),
        "drop(ttl_exceeded)"
    );
}

#[test]
fn ct_exec_merges_several_loads() {
    let b = bridge(&[
        "ip,actions=ct(commit,exec(load:0x1->NXM_NX_CT_MARK[0..3],load:0x2->NXM_NX_CT_MARK[4..7]))",
    ]);
    let t = b.trace(&packet("in_port=1,ip"), 0);
    let DpAction::Ct(ct) = &t.actions[0] else {
        panic!()
    };
    assert_eq!(ct.mark, Some((0x21, 0xff)));
}

#[test]
fn a_failed_dec_ttl_stops_only_its_own_list() {
    let b = bridge(&[
        "table=0,ip,actions=resubmit(,1),output:3",
        "table=1,ip,actions=dec_ttl,output:2",
    ]);
    assert_eq!(actions(&b, "in_port=1,ip,nw_ttl=1"), "3");
    let b = bridge(&["table=0,ip,actions=dec_ttl,output:2"]);
    assert_eq!(actions(&b, "in_port=1,ip,nw_ttl=1"), "drop(ttl_exceeded)");
}

#[test]
fn out_port_matches_reserved_ports() {
    let mut b = bridge(&[
        "priority=1,actions=normal",
        "priority=2,ip,actions=output:2",
    ]);
    assert_eq!(b.delete_flows(&sel("out_port=normal"), false).len(), 1);
    assert_eq!(b.pipeline().n_rules(), 1);
}

#[test]
fn system_flows_are_replaced_by_cookie_and_keep_it() {
    let mut b = bridge(&["priority=5,in_port=3,actions=output:4"]);
    let own = |line: &str| spec(line);
    b.set_system_flows(
        0x200,
        &[
            own("in_port=1,actions=output:2"),
            own("in_port=2,actions=output:1"),
        ],
        0,
    )
    .unwrap();
    assert_eq!(b.pipeline().n_rules(), 3);
    // A user's mod-flows changes the actions but not the switch's cookie...
    let m = parse_flow(
        "cookie=0x9,in_port=1,actions=drop",
        Usage::Modify,
        &NoPortNames,
    )
    .unwrap();
    assert_eq!(b.modify_flows(&m, false, 0).unwrap(), 1);
    let r = b
        .pipeline()
        .rules()
        .into_iter()
        .find(|r| r.priority == 32768 && r.cookie == 0x200);
    assert!(
        r.is_some_and(|r| r.actions.is_empty()),
        "mod-flows changed the cookie"
    );
    // ...so the switch still finds both when it replaces or removes them.
    b.set_system_flows(0x200, &[own("in_port=1,actions=output:4")], 0)
        .unwrap();
    assert_eq!(b.pipeline().n_rules(), 2);
    assert_eq!(actions(&b, "in_port=1"), "4");
    b.set_system_flows(0x200, &[], 0).unwrap();
    assert_eq!(b.pipeline().n_rules(), 1, "the user's rule stays");
    // A user's rule in the same place wins over the switch's.
    b.add_flows(&[spec("in_port=1,actions=output:3")], 0)
        .unwrap();
    b.set_system_flows(0x200, &[own("in_port=1,actions=output:4")], 0)
        .unwrap();
    assert_eq!(actions(&b, "in_port=1"), "3");
}

// ---- owned rules ------------------------------------------------------------------

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap as Map};

fn conj(id: u32, clause: u8, n_clauses: u8) -> Action {
    Action::Conjunction {
        id,
        clause,
        n_clauses,
    }
}

fn owned(line: &str) -> OwnedRule {
    OwnedRule::from_spec(&spec(line))
}

#[test]
fn a_shared_rule_exists_once_and_stays_until_its_last_owner_goes() {
    let mut b = bridge(&[]);
    b.set_owned(0x10, vec![owned("in_port=1,actions=output:2")], vec![], 0)
        .unwrap();
    b.set_owned(
        0x20,
        vec![
            owned("in_port=1,actions=output:2"),
            owned("in_port=2,actions=output:1"),
        ],
        vec![],
        0,
    )
    .unwrap();
    assert_eq!(b.pipeline().n_rules(), 2);
    let shared = spec("in_port=1,actions=drop");
    assert_eq!(b.slot_owners(0, 32768, &shared.matching), [0x10, 0x20]);
    // The first owner goes: the rule stays for the second, with the second's cookie.
    b.set_owned(0x10, vec![], vec![], 0).unwrap();
    assert_eq!(actions(&b, "in_port=1"), "2");
    let r = b.pipeline().rule_at(0, 32768, &shared.matching).unwrap();
    assert_eq!(r.cookie, 0x20);
    b.set_owned(0x20, vec![], vec![], 0).unwrap();
    assert_eq!(b.pipeline().n_rules(), 0);
}

#[test]
fn conjunction_clauses_of_several_owners_are_merged() {
    let mut b = bridge(&[
        "table=0,priority=100,conj_id=1,ip,actions=output:1",
        "table=0,priority=100,conj_id=2,ip,actions=output:2",
    ]);
    b.set_owned(
        0x10,
        vec![
            owned("table=0,priority=100,ip,nw_src=10.0.0.1,actions=conjunction(1,1/2)"),
            owned("table=0,priority=100,ip,nw_dst=10.0.0.9,actions=conjunction(1,2/2)"),
        ],
        vec![],
        0,
    )
    .unwrap();
    b.set_owned(
        0x20,
        vec![
            owned("table=0,priority=100,ip,nw_src=10.0.0.1,actions=conjunction(2,1/2)"),
            owned("table=0,priority=100,ip,nw_dst=10.0.0.8,actions=conjunction(2,2/2)"),
        ],
        vec![],
        0,
    )
    .unwrap();
    let src = spec("table=0,priority=100,ip,nw_src=10.0.0.1,actions=drop");
    let r = b.pipeline().rule_at(0, 100, &src.matching).unwrap();
    assert_eq!(r.actions, vec![conj(1, 0, 2), conj(2, 0, 2)]);
    assert_eq!(
        actions(&b, "in_port=3,ip,nw_src=10.0.0.1,nw_dst=10.0.0.9"),
        "1"
    );
    assert_eq!(
        actions(&b, "in_port=3,ip,nw_src=10.0.0.1,nw_dst=10.0.0.8"),
        "2"
    );
    // One policy goes; the other's clause stays, alone.
    b.set_owned(0x10, vec![], vec![], 0).unwrap();
    let r = b.pipeline().rule_at(0, 100, &src.matching).unwrap();
    assert_eq!(r.actions, vec![conj(2, 0, 2)]);
    assert_eq!(
        actions(&b, "in_port=3,ip,nw_src=10.0.0.1,nw_dst=10.0.0.9"),
        "drop"
    );
}

#[test]
fn system_groups_are_not_the_users_and_count_their_buckets() {
    let mut b = bridge(&["table=1,actions=drop"]);
    let g = parse_group(
        "group_id=4026531840,type=select,bucket=actions=output:1,bucket=actions=output:2",
        &NoPortNames,
    )
    .unwrap();
    b.set_owned(
        0x10,
        vec![owned("in_port=3,actions=group:4026531840")],
        vec![g],
        0,
    )
    .unwrap();
    assert!(b.pending_user_changes().is_empty() || !b.has_pending());
    assert_eq!(b.group_owners(4026531840), [0x10]);
    // del-groups leaves it: it goes with its owner.
    assert!(b.delete_groups(None).is_empty());
    assert!(b.pipeline().group(4026531840).is_some());
    let out = b.trace(&packet("in_port=3,tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2"), 0);
    let stats: u64 = b
        .pipeline()
        .group(4026531840)
        .unwrap()
        .bucket_stats
        .iter()
        .map(|s| s.packets())
        .sum();
    assert_eq!(stats, 0, "a trace counts nothing");
    let key = packet("in_port=3,tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2");
    let x = xlate::xlate(b.pipeline(), &b.mac_table(), &key, 0);
    // As the datapath credits a packet: the megaflow's rules, then the bucket it takes.
    for s in &x.stats {
        s.credit(1, 100, 0);
    }
    for a in &x.actions {
        if let DpAction::Select(sel) = a {
            sel.pick(&key).stats.0.credit(1, 100, 0);
        }
    }
    let per_bucket: Vec<u64> = b
        .pipeline()
        .group(4026531840)
        .unwrap()
        .bucket_stats
        .iter()
        .map(|s| s.packets())
        .collect();
    assert_eq!(per_bucket.iter().sum::<u64>(), 1, "{per_bucket:?} {out:?}");
    // The owner goes: its rule first, then its group.
    b.set_owned(0x10, vec![], vec![], 0).unwrap();
    assert!(b.pipeline().group(4026531840).is_none());
    assert_eq!(b.pipeline().n_rules(), 1);
}

#[test]
fn an_unpublished_change_rolls_back_whole() {
    let mut b = Bridge::transactional("br0");
    b.set_ports(bridge(&[]).pipeline().ports().to_vec());
    b.add_flows(&[spec("in_port=1,actions=output:2")], 0)
        .unwrap();
    b.publish();
    let g0 = b.pipeline().generation();
    b.add_flows(&[spec("in_port=1,actions=output:3")], 0)
        .unwrap();
    b.set_owned(0x10, vec![owned("in_port=2,actions=output:1")], vec![], 0)
        .unwrap();
    b.delete_flows(&sel("in_port=1"), false);
    assert_eq!(b.pending_user_changes().len(), 1);
    b.rollback();
    assert!(!b.has_pending());
    assert_eq!(b.pipeline().generation(), g0);
    assert_eq!(actions(&b, "in_port=1"), "2");
    assert_eq!(actions(&b, "in_port=2"), "drop");
    assert!(
        b.slot_owners(0, 32768, &spec("in_port=2,actions=drop").matching)
            .is_empty()
    );
    assert_eq!(b.pipeline_handle().load().generation(), g0);
}

/// A rule slot: table, priority, match.
type SlotOf = (u8, u16, Match);
/// What the tables hold in each slot: the owner (none for a user's rule), the actions.
type Held = Map<SlotOf, (Option<u64>, Vec<Action>)>;

/// What the owners and the user want, kept by the test as plain data.
#[derive(Debug, Default, Clone)]
struct Model {
    owners: BTreeMap<u64, Vec<OwnedRule>>,
    user: BTreeMap<Vec<u64>, (SlotOf, Vec<Action>)>,
}

impl Model {
    /// The rules the tables must hold: the user's where the user has one; elsewhere, one
    /// per slot the live owners want, with their conjunctions merged.
    fn expected(&self) -> Held {
        let mut wants: Map<SlotOf, BTreeMap<u64, Vec<Action>>> = Map::new();
        for (owner, rules) in &self.owners {
            for r in rules {
                wants
                    .entry((r.table, r.priority, r.matching))
                    .or_default()
                    .insert(*owner, r.actions.clone());
            }
        }
        let mut out: Map<_, _> = wants
            .into_iter()
            .map(|(slot, by_owner)| {
                let first = *by_owner.keys().next().unwrap();
                let all_conj = by_owner.values().all(|a| {
                    !a.is_empty() && a.iter().all(|x| matches!(x, Action::Conjunction { .. }))
                });
                let actions = if all_conj && by_owner.len() > 1 {
                    let mut all: Vec<Action> = by_owner.values().flatten().cloned().collect();
                    all.sort_by_key(|a| match a {
                        Action::Conjunction {
                            id,
                            clause,
                            n_clauses,
                        } => (*id, *clause, *n_clauses),
                        _ => unreachable!(),
                    });
                    all.dedup();
                    all
                } else {
                    by_owner[&first].clone()
                };
                (slot, (Some(first), actions))
            })
            .collect();
        for (slot, a) in self.user.values() {
            out.insert(*slot, (None, a.clone()));
        }
        out
    }
}

/// A slot as an ordered key (the test's steps pick user rules by position).
fn slot_order(table: u8, priority: u16, m: &Match) -> Vec<u64> {
    let mut k = vec![table as u64, priority as u64];
    k.extend(m.mask.w);
    k.extend(m.flow.w);
    k
}

fn actual(b: &Bridge) -> Held {
    b.pipeline()
        .iter_rules()
        .map(|r| {
            let owner = (r.origin == Origin::System).then_some(r.cookie);
            (
                (r.table, r.priority, r.matching),
                (owner, r.actions.clone()),
            )
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Step {
    Set(u64, Vec<OwnedRule>),
    /// `patch_owned`: these rules' clauses added, and the clauses of the owner's rules
    /// at these indexes (as they stand) removed.
    Patch(u64, Vec<OwnedRule>, Vec<usize>),
    UserAdd(Box<OwnedRule>),
    UserDel(usize),
    /// The step after this one is undone instead of published.
    RollBackNext,
}

fn slot_rule() -> impl Strategy<Value = OwnedRule> {
    let m = prop_oneof![Just(None), (1u32..4).prop_map(Some),];
    let a = prop_oneof![
        (1u32..4).prop_map(|p| vec![Action::Output {
            port: p,
            max_len: None
        }]),
        Just(vec![]),
        ((1u32..3), (0u8..2)).prop_map(|(id, c)| vec![conj(id, c, 2)]),
        (0u8..2).prop_map(|c| vec![conj(1, c, 2), conj(2, c, 2)]),
    ];
    ((0u8..2), (1u16..3), m, a).prop_map(|(table, priority, port, actions)| {
        let mut matching = Match::CATCHALL;
        if let Some(p) = port {
            matching.set(vswitch_proto::FieldId::InPort, p as u128);
        }
        OwnedRule {
            table,
            priority,
            matching,
            actions,
        }
    })
}

/// What an owner wants after `patch_owned(add, remove)` from `have`, as the model says;
/// `None` when the bridge must refuse it (a rule not all conjunctions, a slot of other
/// actions, a clause to remove that is not there).
fn patched(have: &[OwnedRule], add: &[OwnedRule], remove: &[OwnedRule]) -> Option<Vec<OwnedRule>> {
    let only_conj =
        |a: &[Action]| !a.is_empty() && a.iter().all(|a| matches!(a, Action::Conjunction { .. }));
    let key = |r: &OwnedRule| (r.table, r.priority, r.matching);
    let order = super::owned::conjunction_order;
    let mut out: Vec<OwnedRule> = have.to_vec();
    for (r, adding) in remove
        .iter()
        .map(|r| (r, false))
        .chain(add.iter().map(|r| (r, true)))
    {
        if !only_conj(&r.actions) {
            return None;
        }
        let at = out.iter().position(|x| key(x) == key(r));
        if let Some(i) = at
            && !only_conj(&out[i].actions)
        {
            return None;
        }
        let mut actions = at.map(|i| out[i].actions.clone()).unwrap_or_default();
        if adding {
            actions.extend(r.actions.iter().cloned());
            actions.sort_by_key(order);
            actions.dedup();
        } else {
            let n = actions.len();
            actions.retain(|a| !r.actions.contains(a));
            if n.checked_sub(r.actions.len()) != Some(actions.len()) {
                return None;
            }
        }
        match (at, actions.is_empty()) {
            (Some(i), true) => {
                out.remove(i);
            }
            (Some(i), false) => out[i].actions = actions,
            (None, false) => out.push(OwnedRule {
                actions,
                ..r.clone()
            }),
            (None, true) => {}
        }
    }
    Some(out)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => ((1u64..6), proptest::collection::vec(slot_rule(), 0..6))
            .prop_map(|(o, rules)| Step::Set(0x0300_0000_0000_0000 | o, rules)),
        2 => ((1u64..6), proptest::collection::vec(slot_rule(), 0..3), proptest::collection::vec(0usize..6, 0..3))
            .prop_map(|(o, add, remove)| Step::Patch(0x0300_0000_0000_0000 | o, add, remove)),
        1 => slot_rule().prop_map(|r| Step::UserAdd(Box::new(r))),
        1 => (0usize..8).prop_map(Step::UserDel),
        1 => Just(Step::RollBackNext),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random owners adding and removing overlapping rule sets, with the user's rules in
    /// between and some changes undone: the tables hold exactly what the live owners and
    /// the user want, recomputed from scratch.
    #[test]
    fn owned_rules_are_the_union_of_what_live_owners_want(steps in proptest::collection::vec(step(), 1..40)) {
        let mut b = Bridge::transactional("br0");
        let mut model = Model::default();
        let mut roll_back = false;
        for s in steps {
            let before = model.clone();
            match s {
                Step::RollBackNext => {
                    roll_back = true;
                    continue;
                }
                Step::Set(owner, rules) => {
                    b.set_owned(owner, rules.clone(), vec![], 0).unwrap();
                    // The last rule an owner gives for a slot counts; conjunction
                    // clauses add up.
                    let only_conj = |a: &[Action]| !a.is_empty() && a.iter().all(|a| matches!(a, Action::Conjunction { .. }));
                    let mut dedup: Vec<OwnedRule> = Vec::new();
                    for mut r in rules {
                        let same = |x: &OwnedRule| (x.table, x.priority, x.matching) == (r.table, r.priority, r.matching);
                        if let Some(prev) = dedup.iter().find(|x| same(x))
                            && only_conj(&prev.actions)
                            && only_conj(&r.actions)
                        {
                            // One conjunction once, in one order.
                            let mut both = prev.actions.clone();
                            both.extend(r.actions);
                            both.sort_by_key(|a| match a {
                                Action::Conjunction { id, clause, n_clauses } => (*id, *clause, *n_clauses),
                                _ => unreachable!(),
                            });
                            both.dedup();
                            r.actions = both;
                        }
                        dedup.retain(|x| !same(x));
                        dedup.push(r);
                    }
                    if dedup.is_empty() {
                        model.owners.remove(&owner);
                    } else {
                        model.owners.insert(owner, dedup);
                    }
                }
                Step::Patch(owner, add, remove) => {
                    let have = model.owners.get(&owner).cloned().unwrap_or_default();
                    let remove: Vec<OwnedRule> = remove.iter().filter_map(|&i| have.get(i).cloned()).collect();
                    let expect = patched(&have, &add, &remove);
                    let got = b.patch_owned(owner, add, remove, 0);
                    prop_assert_eq!(got.is_ok(), expect.is_some(), "{:?}", got);
                    match expect {
                        Some(rules) if rules.is_empty() => {
                            model.owners.remove(&owner);
                        }
                        Some(rules) => {
                            model.owners.insert(owner, rules);
                        }
                        None => {}
                    }
                }
                Step::UserAdd(r) => {
                    let spec = r.to_spec(0x42);
                    b.add_flows(&[FlowSpec { table: Some(r.table), ..spec }], 0).unwrap();
                    model.user.insert(slot_order(r.table, r.priority, &r.matching), ((r.table, r.priority, r.matching), r.actions.clone()));
                }
                Step::UserDel(i) => {
                    let Some((order, (slot, _))) = model.user.iter().nth(i).map(|(k, v)| (k.clone(), v.clone())) else { continue };
                    let crit = FlowSpec {
                        table: Some(slot.0),
                        priority: slot.1,
                        matching: slot.2,
                        ..FlowSpec::default()
                    };
                    prop_assert_eq!(b.delete_flows(&crit, true).len(), 1);
                    model.user.remove(&order);
                }
            }
            if roll_back {
                b.rollback();
                model = before;
                roll_back = false;
            } else {
                b.publish();
            }
            prop_assert_eq!(actual(&b), model.expected());
            prop_assert!(!b.has_pending());
        }
        // Every owner gone: only the user's rules are left.
        let owners: Vec<u64> = model.owners.keys().copied().collect();
        for o in owners {
            b.set_owned(o, vec![], vec![], 0).unwrap();
        }
        b.publish();
        model.owners.clear();
        prop_assert_eq!(actual(&b), model.expected());
    }
}

// ---- OpenFlow 1.1+ action set, exit, xreg, learn limit, ct fields ----------------------
// Expected datapath actions are Open vSwitch 3.1's `ofproto/trace` output for the same
// rules and packet (a private ovs-vswitchd with a dummy datapath, where OpenFlow port N is
// datapath port N).

#[test]
fn action_set_runs_at_the_end_of_the_pipeline() {
    // OVS: "Datapath actions: 2" (the later write_actions' output replaces the earlier).
    let b = bridge(&[
        "in_port=1,actions=write_actions(output:3,set_field:5->reg0),goto_table:1",
        "table=1,actions=write_actions(output:2)",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "2");
}

#[test]
fn action_set_order_is_openflows_not_the_written_one() {
    // OVS: "3,set(ipv4(dst=10.0.0.9,ttl=63)),2": dec_ttl and set_field before the output.
    let b = bridge(&[
        "in_port=1,ip,actions=output:3,write_actions(output:2,mod_nw_dst:10.0.0.9,dec_ttl)",
    ]);
    assert_eq!(
        actions(&b, "in_port=1,tcp,nw_ttl=64"),
        "3,set(ipv4(dst=10.0.0.9,ttl=63)),2"
    );
}

#[test]
fn action_set_group_wins_over_output() {
    // OVS: "3" (a group in the set replaces every output).
    let mut b = bridge(&[]);
    b.add_group(&parse_group("group_id=1,type=all,bucket=output:3", &NoPortNames).unwrap())
        .unwrap();
    b.add_flows(
        &[spec(
            "in_port=1,ip,actions=write_actions(output:4,mod_nw_dst:10.0.0.9,group:1,output:2)",
        )],
        0,
    )
    .unwrap();
    assert_eq!(
        actions(&b, "in_port=1,tcp,nw_ttl=64"),
        "set(ipv4(dst=10.0.0.9)),3"
    );
}

#[test]
fn clear_actions_empties_the_set() {
    // OVS: "drop".
    let b = bridge(&[
        "in_port=1,actions=write_actions(output:2),goto_table:1",
        "table=1,actions=clear_actions",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "drop");
}

#[test]
fn write_metadata_keeps_the_unmasked_bits() {
    // OVS: "2" (0x1234 with the low byte written as 0x05 is 0x1205).
    let b = bridge(&[
        "in_port=1,actions=write_metadata:0x5/0xff,goto_table:1",
        "table=1,metadata=0x1205,actions=output:2",
        "table=1,priority=1,actions=output:3",
    ]);
    assert_eq!(actions(&b, "in_port=1,metadata=0x1234"), "2");
}

#[test]
fn exit_stops_every_level_and_the_action_set() {
    // OVS: "2": exit in a resubmitted table stops the caller too.
    let b = bridge(&[
        "in_port=1,actions=resubmit(,1),output:3,write_actions(output:4)",
        "table=1,actions=output:2,exit",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "2");
    // OVS: "2": after exit the action set does not run either.
    let b = bridge(&[
        "in_port=1,actions=write_actions(output:4),goto_table:1",
        "table=1,actions=output:2,exit,output:3",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "2");
    // OVS: "drop".
    let b = bridge(&[
        "in_port=1,actions=write_actions(output:4),goto_table:1",
        "table=1,actions=resubmit(,2),output:3",
        "table=2,actions=exit",
    ]);
    assert_eq!(actions(&b, "in_port=1"), "drop");
}

#[test]
fn output_to_a_nonexistent_port_is_skipped() {
    // OVS: "Datapath actions: 2" and ">> Nonexistent output port" in the trace.
    let b = bridge(&["in_port=1,actions=output:99,output:2"]);
    let t = b.trace(&packet("in_port=1"), 0);
    assert_eq!(t.datapath_actions(), "2");
    let text = t.display(&NoPortNames).to_string();
    assert!(text.contains("nonexistent port 99"), "{text}");
    // Nothing at all: the packet is dropped.
    let b = bridge(&["in_port=1,actions=output:99"]);
    assert_eq!(actions(&b, "in_port=1"), "drop");
}

#[test]
fn xregs_are_register_pairs() {
    // OVS: "3".
    let b = bridge(&[
        "in_port=1,xreg0=0x100000002,actions=set_field:0x300000004->xreg1,move:xreg1[]->xreg2[],resubmit(,1)",
        "table=1,reg4=3,reg5=4,actions=output:3",
    ]);
    assert_eq!(actions(&b, "in_port=1,reg0=1,reg1=2"), "3");
    assert_eq!(actions(&b, "in_port=1,reg0=1,reg1=3"), "drop");
}

#[test]
fn ct_exec_moves_set_mark_and_label() {
    // OVS: "ct(commit,mark=0x11/0xffffffff,label=0x220000000000000001/0xffff0000000000000001),2".
    let b = bridge(&[
        "ip,actions=ct(commit,exec(move:NXM_NX_REG0[]->NXM_NX_CT_MARK[],move:reg1[0..15]->ct_label[64..79],load:1->ct_label[0])),output:2",
    ]);
    let t = b.trace(&packet("in_port=1,ip,reg0=0x11,reg1=0x22"), 0);
    let DpAction::Ct(ct) = &t.actions[0] else {
        panic!("{:?}", t.actions)
    };
    assert_eq!(ct.mark, Some((0x11, 0xffff_ffff)));
    assert_eq!(ct.label, Some((0x22 << 64 | 1, 0xffff << 64 | 1)));
    // The moves' sources are part of the megaflow.
    assert_eq!(t.megaflow.mask.reg(0), u32::MAX);
    assert_eq!(t.megaflow.mask.reg(1), 0xffff);
}

#[test]
fn ct_original_tuple_matches() {
    let b = bridge(&[
        "ct_state=+est+trk,ip,ct_nw_src=10.0.0.1,ct_nw_proto=6,ct_tp_dst=80,actions=output:2",
        "priority=1,actions=output:3",
    ]);
    let mut f = packet("in_port=1,ip,nw_src=10.0.0.2,nw_dst=10.0.0.1");
    f.set_ct_state(0x22);
    f.set_ct_nw_src(0x0a00_0001);
    f.set_ct_nw_proto(6);
    f.set_ct_tp_dst(80);
    assert_eq!(b.trace(&f, 0).datapath_actions(), "2");
    f.set_ct_tp_dst(81);
    assert_eq!(b.trace(&f, 0).datapath_actions(), "3");
}

#[test]
fn ct_clear_clears_every_conntrack_field() {
    let b = bridge(&[
        "table=0,ip,actions=ct_clear,resubmit(,1)",
        "table=1,ct_state=+est+trk,ip,ct_nw_src=10.0.0.1,actions=output:2",
        "table=1,ct_mark=0x5,actions=output:3",
        "table=1,priority=1,actions=output:4",
    ]);
    let mut f = packet("in_port=1,ip,ct_mark=0x5");
    f.set_ct_state(0x22);
    f.set_ct_nw_src(0x0a00_0001);
    // OVS: "ct_clear,4".
    let t = b.trace(&f, 0);
    assert_eq!(t.datapath_actions(), "ct_clear,4");
    assert_eq!(t.final_flow.ct_nw_src(), 0);
    assert_eq!(t.final_flow.ct_state(), 0);
    // OVS: "4": no ct_clear for a packet that was not tracked.
    assert_eq!(actions(&b, "in_port=1,ip"), "4");
    // OVS: "ct(commit),2": a ct without table= leaves the flow untracked.
    let b = bridge(&["ip,actions=ct(commit),ct_clear,output:2"]);
    assert_eq!(actions(&b, "in_port=1,ip"), "ct(commit),2");
}

/// Checked on Open vSwitch 3.1 with packets (`netdev-dummy/receive`): with limit=2, the
/// third and fourth new sources learn nothing and get result 0, an already learned source
/// gets 1, and table 5 holds 2 flows.
#[test]
fn learn_limit_counts_flows_with_the_cookie() {
    let learn = "table=0,in_port=1,actions=learn(table=5,cookie=0x9,limit=2,result_dst=reg0[0],reg1[]),resubmit(,1)";
    let mut b = bridge(&[
        learn,
        "table=1,reg0=1,actions=output:2",
        "table=1,reg0=0,actions=output:3",
    ]);
    // Below the limit: learned, result 1.
    let t = b.trace(&packet("in_port=1,reg1=7"), 0);
    assert!(
        matches!(t.actions[0], DpAction::Learn(_)),
        "{:?}",
        t.actions
    );
    assert_eq!(t.datapath_actions().rsplit(',').next(), Some("2"));
    b.learn(&spec("table=5,cookie=0x9,reg1=1,actions=drop"), 0)
        .unwrap();
    b.learn(&spec("table=5,cookie=0x9,reg1=2,actions=drop"), 0)
        .unwrap();
    // Another cookie does not count.
    b.learn(&spec("table=5,cookie=0x8,reg1=3,actions=drop"), 0)
        .unwrap();
    // At the limit: not learned, result 0.
    let t = b.trace(&packet("in_port=1,reg1=7"), 0);
    assert_eq!(t.datapath_actions(), "3");
    // A flow already learned is a refresh, which succeeds.
    let t = b.trace(&packet("in_port=1,reg1=2"), 0);
    assert!(
        matches!(t.actions[0], DpAction::Learn(_)),
        "{:?}",
        t.actions
    );
    assert_eq!(t.datapath_actions().rsplit(',').next(), Some("2"));
}

#[test]
fn reading_the_original_tuple_depends_on_ct_state() {
    // In a group bucket (not checked against a match) a move from ct_nw_src happens only
    // for a tracked connection: the megaflow must say which kind of packet it was made for.
    let mut b = bridge(&[]);
    b.add_group(
        &parse_group(
            "group_id=1,type=all,bucket=actions=move:ct_nw_src[]->reg0[],resubmit(,1)",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    b.add_flows(
        &[
            spec("in_port=1,actions=group:1"),
            spec("table=1,reg0=0x0a000001,actions=output:2"),
        ],
        0,
    )
    .unwrap();
    let mut f = packet("in_port=1,ip");
    f.set_ct_state(0x22);
    f.set_ct_nw_src(0x0a00_0001);
    let t = b.trace(&f, 0);
    assert_eq!(t.datapath_actions(), "2");
    assert_eq!(t.megaflow.mask.ct_state(), 0xffff);
    f.set_ct_state(0);
    assert_eq!(b.trace(&f, 0).datapath_actions(), "drop");
}

#[test]
fn trace_follows_ct_into_the_next_table() {
    use vswitch_proto::flow::ct_state::{EST, NEW, TRK};
    let b = bridge(&[
        "table=0,ip,ct_state=-trk,actions=set_field:0x7->reg0,ct(table=1,zone=5)",
        "table=1,ct_state=+trk+new,reg0=0x7,ip,actions=ct(commit,zone=5,exec(set_field:0x1->ct_mark)),output:2",
        "table=1,ct_state=+trk+est,ip,actions=output:3",
    ]);
    let pkt = packet("in_port=1,icmp,nw_src=10.0.0.1,nw_dst=10.0.0.2");

    // Without --ct-next: Open vSwitch's default, trk|new.
    let (first, rest) = b.trace_ct(&pkt, 0, &[]);
    assert_eq!(first.datapath_actions(), "ct(zone=5),recirc(0x2)");
    assert_eq!(rest.len(), 1);
    let r = &rest[0];
    assert!(r.default);
    assert_eq!(r.ct_state, TRK | NEW);
    assert_eq!(r.trace.flow.recirc_id(), 2);
    assert_eq!(r.trace.flow.ct_zone(), 5);
    // What the pipeline wrote before the ct survives the recirculation.
    assert_eq!(r.trace.flow.reg(0), 7);
    assert_eq!(
        r.trace.datapath_actions(),
        "ct(commit,zone=5,mark=0x1/0xffffffff),2"
    );
    let text = trace::display_all(&first, &rest, &NoPortNames).to_string();
    assert!(text.contains(
        "-> A clone of the packet is forked to recirculate. The forked pipeline will be resumed at table 1."
    ), "{text}");
    assert!(text.contains(&format!(
        "\n\n{0}\nrecirc(0x2) - resume conntrack with default ct_state=trk|new (use --ct-next to customize)\n{0}\n\nFlow: ",
        "=".repeat(79)
    )), "{text}");
    assert!(
        text.ends_with("Datapath actions: ct(commit,zone=5,mark=0x1/0xffffffff),2"),
        "{text}"
    );

    // --ct-next trk,est: the established rule.
    let (_, rest) = b.trace_ct(&pkt, 0, &[TRK | EST]);
    assert_eq!(rest.len(), 1);
    assert!(!rest[0].default);
    assert_eq!(rest[0].trace.datapath_actions(), "3");
    let text = trace::display_all(&b.trace(&pkt, 0), &rest, &NoPortNames).to_string();
    assert!(
        text.contains("recirc(0x2) - resume conntrack with ct_state=est|trk\n"),
        "{text}"
    );
    assert!(
        text.contains("Flow: recirc_id=0x2,ct_state=est|trk,ct_zone=5,"),
        "{text}"
    );
}

#[test]
fn trace_follows_each_recirculation_with_the_next_state() {
    use vswitch_proto::flow::ct_state::{EST, NEW, TRK};
    let b = bridge(&[
        "table=0,ip,actions=ct(table=1,zone=1)",
        "table=1,ct_state=+trk+new,ip,actions=ct(table=2,zone=2)",
        "table=1,ct_state=+trk+est,ip,actions=output:4",
        "table=2,ct_state=+trk+est,ip,actions=output:2",
        "table=2,ct_state=+trk+new,ip,actions=output:3",
    ]);
    let pkt = packet("in_port=1,ip");
    let (_, rest) = b.trace_ct(&pkt, 0, &[TRK | NEW, TRK | EST]);
    let got: Vec<_> = rest
        .iter()
        .map(|r| {
            (
                r.trace.flow.ct_zone(),
                r.ct_state,
                r.trace.datapath_actions(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, TRK | NEW, "ct(zone=2),recirc(0x3)".to_string()),
            (2, TRK | EST, "2".to_string())
        ]
    );
    // A loop through conntrack stops after a bounded number of passes.
    let b = bridge(&["table=0,ip,actions=ct(table=0)"]);
    let (_, rest) = b.trace_ct(&pkt, 0, &[]);
    assert_eq!(rest.len(), trace::MAX_PASSES);
}

#[test]
fn trace_simulates_nat_on_the_recirculated_pass() {
    let b = bridge(&[
        "table=0,ip,ct_state=-trk,actions=ct(commit,table=1,zone=5,nat(dst=10.0.0.9:80))",
        "table=1,tcp,nw_dst=10.0.0.9,tp_dst=80,actions=output:2",
    ]);
    let pkt = packet("in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=8080");
    let (first, rest) = b.trace_ct(&pkt, 0, &[]);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].trace.datapath_actions(), "2");
    let text = trace::display_all(&first, &rest, &NoPortNames).to_string();
    assert!(
        text.contains(
            "recirc(0x2) - resume conntrack with default ct_state=trk|new (use --ct-next to customize)\n\
             Replacing src/dst IP/ports to simulate NAT:\n \
             Initial flow: nw_src=10.0.0.1,tp_src=0,nw_dst=10.0.0.2,tp_dst=8080\n \
             Modified flow: nw_src=10.0.0.1,tp_src=0,nw_dst=10.0.0.9,tp_dst=80\n===="
        ),
        "{text}"
    );
}

// ---- select groups by hash, multipath, fin_timeout, enqueue, controller options ----

/// A bridge with group `line` and a rule sending what comes in on port 3 to it.
fn bridge_with_group(line: &str) -> Bridge {
    let mut b = bridge(&[]);
    b.add_group(&parse_group(line, &NoPortNames).unwrap())
        .unwrap();
    b.add_flows(&[spec("in_port=3,actions=group:1")], 0)
        .unwrap();
    b
}

#[test]
fn select_hash_group_hashes_exactly_its_fields() {
    let b = bridge_with_group(
        "group_id=1,type=select,selection_method=hash,fields(ip_src,tcp_dst),\
         bucket=output:1,bucket=output:2",
    );
    // Open vSwitch 3.1's ofproto/trace of the same group and packet gives the megaflow
    // recirc_id=0,eth,tcp,in_port=3,nw_src=10.0.0.1,nw_frag=no,tp_dst=80: the hashed fields
    // and nothing else of the 5-tuple.
    let pkt = "in_port=3,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1000,tp_dst=80";
    let t = b.trace(&packet(pkt), 0);
    let mask = t.megaflow.mask;
    assert_eq!(mask.nw_src(), u32::MAX);
    assert_eq!(mask.tp_dst(), u16::MAX);
    assert_eq!(mask.nw_dst(), 0);
    assert_eq!(mask.tp_src(), 0);
    let first = t.datapath_actions();
    // Fields not hashed do not move the connection...
    for sport in 1000..1050 {
        let p = format!("in_port=3,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.9,tp_src={sport},tp_dst=80");
        assert_eq!(actions(&b, &p), first);
    }
    // ...hashed ones spread connections over the buckets.
    let seen: std::collections::HashSet<String> = (1..60)
        .map(|i| actions(&b, &format!("in_port=3,tcp,nw_src=10.0.1.{i},tp_dst=80")))
        .collect();
    assert!(seen.contains("1") && seen.contains("2"), "{seen:?}");
    // A field the packet does not have is left out: UDP packets hash ip_src only.
    let udp = b.trace(&packet("in_port=3,udp,nw_src=10.0.0.1,tp_dst=80"), 0);
    assert_eq!(udp.megaflow.mask.tp_dst(), 0);
}

#[test]
fn select_default_and_dp_hash_hash_the_five_tuple() {
    let b = bridge_with_group(
        "group_id=1,type=select,selection_method=dp_hash,bucket=output:1,bucket=output:2",
    );
    // As Open vSwitch's dp_hash: the datapath hashes the 5-tuple, so the megaflow holds
    // none of it and one megaflow serves every connection.
    let t = b.trace(
        &packet("in_port=3,tcp,nw_src=10.0.0.1,tp_src=5,tp_dst=80"),
        0,
    );
    assert_eq!(t.megaflow.mask.tp_src(), 0);
    assert_eq!(t.megaflow.mask.nw_dst(), 0);
    let [DpAction::Select(sel)] = &t.actions[..] else {
        panic!("{:?}", t.actions);
    };
    assert_eq!(sel.branches.len(), 2);
    // Connections spread over both buckets, each always to the same one, and the trace
    // shows the one its packet takes.
    let mut n = [0; 2];
    for sport in 0..1000 {
        let pkt = packet(&format!(
            "in_port=3,tcp,nw_src=10.0.0.1,tp_src={sport},tp_dst=80"
        ));
        let i = sel.index(&pkt);
        assert_eq!(i, sel.index(&pkt));
        n[i] += 1;
        let taken = b.trace(&pkt, 0).datapath_actions();
        assert_eq!(taken, if i == 0 { "1" } else { "2" });
    }
    assert!(n.iter().all(|&c| (400..600).contains(&c)), "{n:?}");
    // The text ends as Open vSwitch's does, with this packet's datapath actions; the
    // megaflow's whole choice comes on the line before.
    let text = t.display(&NoPortNames).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[lines.len() - 1].starts_with("Datapath actions: "),
        "{text}"
    );
    assert!(
        lines[lines.len() - 2]
            .starts_with("Megaflow's actions (the datapath picks per packet): select(group=1,"),
        "{text}"
    );
}

#[test]
fn datapath_select_slots_follow_the_weights_and_move_little() {
    use crate::ofproto::rule::dp_slots;
    let g = |spec: &str| parse_group(spec, &NoPortNames).unwrap().buckets;
    let count = |slots: &[u16], n: usize| {
        let mut c = vec![0usize; n];
        for &s in slots {
            c[s as usize] += 1;
        }
        c
    };
    // Exact shares to one slot: 10 equal buckets over 256 slots.
    let ten: String = (0..10)
        .map(|i| format!(",bucket=bucket_id:{i},output:{}", i + 1))
        .collect();
    let slots = dp_slots(&g(&format!("group_id=1,type=select{ten}"))).unwrap();
    assert_eq!(slots.len(), 256);
    assert!(count(&slots, 10).iter().all(|&c| c == 25 || c == 26));
    // Weights 1:3.
    let w = dp_slots(&g(
        "group_id=1,type=select,bucket=weight:1,output:1,bucket=weight:3,output:2",
    ))
    .unwrap();
    assert_eq!(count(&w, 2), [16, 48]);
    // A zero weight gets nothing; no weight at all, no slots.
    let z = dp_slots(&g(
        "group_id=1,type=select,bucket=weight:0,output:1,bucket=weight:5,output:2",
    ))
    .unwrap();
    assert_eq!(count(&z, 2), [0, 64]);
    assert!(dp_slots(&g("group_id=1,type=select,bucket=weight:0,output:1")).is_none());
    // Removing one of ten buckets moves mostly its own slots.
    let nine: String = (0..9)
        .map(|i| format!(",bucket=bucket_id:{i},output:{}", i + 1))
        .collect();
    let after = dp_slots(&g(&format!("group_id=1,type=select{nine}"))).unwrap();
    let moved = slots
        .iter()
        .zip(after.iter().cycle())
        .filter(|(a, b)| **a != 9 && a != b)
        .count();
    assert!(moved < 64, "{moved} of the other buckets' slots moved");
}

#[test]
fn multipath_writes_the_link_and_masks_the_hashed_fields() {
    let b = bridge(&[
        "in_port=3,tcp,actions=multipath(symmetric_l3l4,0,modulo_n,2,0,reg0[0..1]),resubmit(,1)",
        "table=1,reg0=0,actions=output:1",
        "table=1,reg0=1,actions=output:2",
    ]);
    // Open vSwitch 3.1's megaflow for this packet and rule:
    // recirc_id=0,eth,tcp,in_port=2,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_frag=no,tp_src=1000,
    // tp_dst=80, the same for the reply direction and the same link for both.
    let pkt = "in_port=3,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1000,tp_dst=80";
    let t = b.trace(&packet(pkt), 0);
    let m = t.megaflow.mask;
    assert_eq!(
        (m.nw_src(), m.nw_dst(), m.tp_src(), m.tp_dst()),
        (u32::MAX, u32::MAX, u16::MAX, u16::MAX)
    );
    assert_eq!(m.dl_src(), [0; 6], "symmetric_l3l4 does not hash Ethernet");
    // Symmetric: both directions of a connection take the same link.
    let rev = "in_port=3,tcp,nw_src=10.0.0.2,nw_dst=10.0.0.1,tp_src=80,tp_dst=1000";
    assert_eq!(actions(&b, pkt), actions(&b, rev));
    let seen: std::collections::HashSet<String> = (1000..1060)
        .map(|p| {
            actions(
                &b,
                &format!("in_port=3,tcp,nw_src=10.0.0.1,tp_src={p},tp_dst=80"),
            )
        })
        .collect();
    assert!(seen.contains("1") && seen.contains("2"), "{seen:?}");
}

#[test]
fn multipath_algorithms_stay_in_range() {
    use super::xlate::multipath_link;
    use vswitch_proto::action::MpAlgorithm as A;
    for alg in [A::ModuloN, A::HashThreshold, A::Hrw, A::IterHash] {
        for n in [1u32, 2, 3, 5, 16, 65536] {
            let mut seen = std::collections::HashSet::new();
            for i in 0..200u32 {
                let h = i.wrapping_mul(0x9e37_79b9);
                let l = multipath_link(h, alg, n.min(300), 10);
                assert!(l < n.min(300), "{alg:?} {n}: {l}");
                seen.insert(l);
            }
            if n > 1 {
                assert!(seen.len() > 1, "{alg:?} {n} always picks one link");
            }
        }
    }
    // hash_threshold splits the hash space into equal ranges.
    assert_eq!(multipath_link(0, A::HashThreshold, 4, 0), 0);
    assert_eq!(multipath_link(u32::MAX, A::HashThreshold, 4, 0), 3);
    // iter_hash with no retries allowed falls back to modulo_n.
    assert_eq!(multipath_link(7, A::IterHash, 5, 0), 7 % 5);
}

#[test]
fn fin_timeout_shortens_the_rules_timeouts_on_fin_or_rst() {
    let mut b = bridge(&[
        "idle_timeout=60,hard_timeout=600,tcp,actions=fin_timeout(idle_timeout=2,hard_timeout=30),output:2",
    ]);
    // Deliberately unlike Open vSwitch 3.1, whose trace gives the megaflow
    // recirc_id=0,eth,tcp,in_port=1,nw_frag=no for FIN and ACK alike (it reads the TCP flags
    // its datapath accumulates in a megaflow's statistics): this datapath keeps no such
    // flags, so the megaflow matches FIN and RST and only those packets run the action.
    let fin = b.trace(&packet("in_port=1,tcp,tcp_flags=0x001"), 0);
    assert_eq!(fin.megaflow.mask.tcp_flags(), 0x005);
    assert_eq!(
        fin.datapath_actions(),
        "userspace(fin_timeout,idle_timeout=2,hard_timeout=30),2"
    );
    let plain = b.trace(&packet("in_port=1,tcp,tcp_flags=0x010"), 0);
    assert_eq!(plain.datapath_actions(), "2");
    assert!(
        !plain
            .megaflow
            .matches(&packet("in_port=1,tcp,tcp_flags=0x011"))
    );
    assert!(
        !plain
            .megaflow
            .matches(&packet("in_port=1,tcp,tcp_flags=0x014"))
    );
    // Executing the action (as the datapath does for each packet of the megaflow).
    for a in &fin.actions {
        if let DpAction::FinTimeout {
            stats,
            idle_timeout,
            hard_timeout,
        } = a
        {
            stats.0.reduce_timeouts(*idle_timeout, *hard_timeout);
        }
    }
    let r = b.pipeline().rules()[0].clone();
    assert_eq!(r.to_spec().idle_timeout, 2);
    assert_eq!(r.to_spec().hard_timeout, 30);
    // A second FIN asking for longer timeouts does not lengthen them.
    r.stats.reduce_timeouts(10, 100);
    assert_eq!(r.to_spec().idle_timeout, 2);
    assert!(b.expire(1999).is_empty());
    assert_eq!(b.expire(2000).len(), 1);
}

#[test]
fn enqueue_outputs_and_controller_options_reach_the_controller() {
    let b = bridge(&[
        "in_port=1,actions=enqueue:2:5",
        "in_port=2,actions=enqueue(IN_PORT,1)",
        "in_port=3,actions=controller(reason=no_match,id=3,userdata=01.02)",
        "in_port=4,ip,actions=dec_ttl(1,2),output:1",
    ]);
    // Open vSwitch 3.1: set(skb_priority(0x5)),2 and set(skb_priority(0x1)),2; without
    // queues only the output is left.
    assert_eq!(actions(&b, "in_port=1"), "2");
    assert_eq!(actions(&b, "in_port=2"), "2");
    assert_eq!(
        actions(&b, "in_port=3"),
        "userspace(controller,max_len=65535)"
    );
    // Open vSwitch 3.1 sends an invalid_ttl packet-in to controllers 1 and 2 (none is
    // connected, so nothing leaves); here it is dropped, as after plain dec_ttl. Above 1
    // both give the output.
    assert_eq!(actions(&b, "in_port=4,ip,nw_ttl=1"), "drop(ttl_exceeded)");
    assert_eq!(actions(&b, "in_port=4,ip,nw_ttl=5"), "set(ipv4(ttl=4)),1");
}

#[test]
fn meters_are_kept_referred_to_and_deleted_with_their_rules() {
    use vswitch_proto::text::parse_meter;
    let mut b = bridge(&[]);
    let m = parse_meter("meter=1,pktps,bands=type=drop,rate=10").unwrap();
    b.add_meter(&m, 0).unwrap();
    assert_eq!(b.add_meter(&m, 0), Err(FlowModError::MeterExists(1)));
    // Like Open vSwitch (OFPMMFC_INVALID_METER), a flow may only use an existing meter.
    assert_eq!(
        b.add_flows(&[spec("in_port=2,actions=meter:9,output:3")], 0),
        Err(FlowModError::NoSuchMeter(9))
    );
    b.add_flows(&[spec("in_port=1,actions=meter:1,output:2")], 0)
        .unwrap();
    // Open vSwitch 3.1 traces in_port=1 as "Datapath actions: meter(0),2" (its datapath
    // numbers meters itself); here the datapath meter is the OpenFlow one.
    assert_eq!(actions(&b, "in_port=1,tcp"), "meter(1),2");
    let dumped = b.dump_meters(None, 5);
    assert_eq!(dumped.len(), 1);
    assert_eq!((dumped[0].0.meter_id, dumped[0].2), (1, 1));
    assert_eq!(b.delete_meters(Some(1)), vec![1]);
    assert_eq!(b.pipeline().n_rules(), 0);
    assert!(b.dump_meters(None, 5).is_empty());
}

/// `affinity=SECONDS` (the vswitch extension behind Kubernetes' sessionAffinity
/// ClientIP): a source's new connections go where its last one went while it is within
/// the timeout and the bucket is still there; otherwise they are spread by hash again.
#[test]
fn select_groups_with_affinity_keep_a_source_on_its_bucket() {
    let mut b = bridge(&["table=1,actions=drop"]);
    let group = |buckets: &[u32]| {
        let mut line = "group_id=4026531841,type=select,affinity=10".to_string();
        for o in buckets {
            line.push_str(&format!(",bucket=actions=output:{o}"));
        }
        parse_group(&line, &NoPortNames).unwrap()
    };
    let rule = || vec![owned("in_port=3,actions=group:4026531841")];
    b.set_owned(0x10, rule(), vec![group(&[1, 2, 4])], 0)
        .unwrap();
    // As the datapath runs it: the group is decided per packet, affinity included.
    let out = |b: &Bridge, src: &str, sport: u32, now: u64| {
        let key = packet(&format!(
            "in_port=3,tcp,nw_src={src},nw_dst=2.2.2.2,tp_src={sport},tp_dst=80"
        ));
        let x = xlate::xlate(b.pipeline(), &b.mac_table(), &key, now);
        let [DpAction::Select(sel)] = &x.actions[..] else {
            panic!("decided in the datapath: {:?}", x.actions);
        };
        assert_eq!(x.mask.tp_src(), 0, "no 5-tuple in the megaflow");
        let b = &sel.branches[sel.choose(&key, now)];
        crate::dp::action::DisplayActions(&b.actions).to_string()
    };
    // Without affinity these 40 connections would spread; with it they all follow the
    // first, and another source is free to go elsewhere.
    let first = out(&b, "10.0.0.1", 1000, 0);
    for sport in 1001..1040 {
        assert_eq!(out(&b, "10.0.0.1", sport, 1000 + sport as u64), first);
    }
    let others: std::collections::BTreeSet<String> = (0..40)
        .map(|i| out(&b, &format!("10.0.1.{i}"), 5000, 2000))
        .collect();
    assert!(others.len() > 1, "other sources spread: {others:?}");
    // Idle for longer than the timeout: spread by hash again (some sport lands elsewhere).
    let later: std::collections::BTreeSet<String> = (0..40)
        .map(|i| out(&b, "10.0.0.1", 2000 + i, 100_000 + 20_000 * i as u64))
        .collect();
    assert!(later.len() > 1, "after the timeout: {later:?}");
    // Its bucket gone: elsewhere at once, and kept there.
    let now = 10_000_000;
    let on = out(&b, "10.0.0.9", 1, now);
    let rest: Vec<u32> = [1, 2, 4]
        .into_iter()
        .filter(|o| on != o.to_string())
        .collect();
    b.set_owned(0x10, rule(), vec![group(&rest)], now).unwrap();
    let moved = out(&b, "10.0.0.9", 2, now + 1);
    assert_ne!(moved, on);
    assert_eq!(out(&b, "10.0.0.9", 3, now + 2), moved);
    // Every source is remembered once; a trace remembers nothing.
    b.trace(
        &packet("in_port=3,tcp,nw_src=10.0.0.77,nw_dst=2.2.2.2,tp_src=1,tp_dst=80"),
        now,
    );
    assert_eq!(
        b.pipeline()
            .group(4026531841)
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .len(),
        40 + 2
    );
}

#[test]
fn reject_commits_then_ends_everything_and_trace_says_what_it_sends() {
    let b = bridge(&[
        "table=0,in_port=1,tcp,actions=set_field:0x1->reg0,resubmit(,5),output:2,write_actions(output:3)",
        "table=5,tcp,tp_dst=81,actions=set_field:10.0.0.9->ip_src,reject",
    ]);
    let t = b.trace(
        &packet(
            "in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.96.0.10,tp_src=40000,tp_dst=81,tcp_flags=+syn",
        ),
        0,
    );
    // Built from the packet as the pipeline left it; nothing runs after it: not the
    // `output:2` of the table that resubmitted, not the action set.
    assert_eq!(
        t.datapath_actions(),
        "set(ipv4(src=10.0.0.9)),userspace(reject)"
    );
    let text = t.display(&NoPortNames).to_string();
    assert!(text.contains("    reject\n"), "{text}");
    assert!(
        text.contains(
            "-> reject: TCP RST|ACK with seq 0, ack = the segment's seq + its length, from \
             10.96.0.10 port 81 to 10.0.0.9 port 40000, back out of in_port 1"
        ),
        "{text}"
    );
    // Other ports: forwarded as usual.
    assert_eq!(
        actions(&b, "in_port=1,tcp,nw_dst=10.96.0.10,tp_dst=80"),
        "2,3"
    );
    let t = b.trace(
        &packet("in_port=1,tcp,nw_src=10.0.0.1,nw_dst=255.255.255.255,tp_dst=81"),
        0,
    );
    assert_eq!(
        t.datapath_actions(),
        "set(ipv4(src=10.0.0.9)),userspace(reject)"
    );
    let text = t.display(&NoPortNames).to_string();
    assert!(
        text.contains("-> reject: not answered (broadcast or multicast address)"),
        "{text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any weights: every hash slot goes to a bucket with weight, each bucket's share of
    /// the slots is its weight's share to within one slot, and the table is a power of two
    /// with at least 16 slots a bucket.
    #[test]
    fn datapath_select_slots_give_each_bucket_its_weights_share(
        weights in proptest::collection::vec(0u16..=1000, 1..=40),
    ) {
        use crate::ofproto::rule::dp_slots;
        let buckets: Vec<vswitch_proto::group::Bucket> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| vswitch_proto::group::Bucket {
                bucket_id: (i * 7) as u32,
                weight: w,
                watch_port: None,
                actions: vec![vswitch_proto::action::Action::Output { port: i as u32 + 1, max_len: None }],
            })
            .collect();
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let slots = dp_slots(&buckets);
        if total == 0 {
            prop_assert!(slots.is_none());
            return Ok(());
        }
        let slots = slots.unwrap();
        let n = slots.len();
        prop_assert!(n.is_power_of_two() && n >= 16 * weights.len() && n >= 64);
        let mut count = vec![0u64; weights.len()];
        for &s in slots.iter() {
            count[s as usize] += 1;
        }
        for (i, &w) in weights.iter().enumerate() {
            let share = w as f64 * n as f64 / total as f64;
            prop_assert!((count[i] as f64 - share).abs() < 1.0 + 1e-9, "bucket {i}: {} slots for a share of {share}", count[i]);
            if w == 0 {
                prop_assert_eq!(count[i], 0);
            }
        }
    }
}
