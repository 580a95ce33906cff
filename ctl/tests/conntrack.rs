//! vswitchctl's connection-tracking commands against a fake daemon: what they send, what
//! they print (Open vSwitch's `dpctl/*` forms), and their exit status.

// Shared with cli.rs, which uses the rest of it.
#[allow(dead_code)]
mod support;

use serde_json::{Value, json};
use support::*;
use vswitch_proto::rpc::{RpcError, code, method};

const UDP: &str = "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1234,dport=53),reply=(src=10.0.0.2,dst=10.0.0.1,sport=53,dport=1234),zone=5,mark=1";

#[test]
fn dump_conntrack_prints_each_line_and_sends_zone_and_stats() {
    let d = FakeDaemon::answering(method::DUMP_CONNTRACK, json!({"connections": [UDP, UDP]}));
    let o = d.run(&["dump-conntrack"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("dump-conntrack".into(), json!({"stats": false}))
    );
    assert_eq!(stdout(&o), format!("{UDP}\n{UDP}\n"));

    for args in [
        &["dump-conntrack", "--zone", "5", "-s"][..],
        &["dump-conntrack", "zone=5", "--stats"][..],
    ] {
        let d = FakeDaemon::answering(method::DUMP_CONNTRACK, json!({"connections": []}));
        let o = d.run(args);
        assert_exit(&o, 0);
        assert_eq!(
            d.only_request(),
            ("dump-conntrack".into(), json!({"zone": 5, "stats": true})),
            "{args:?}"
        );
        assert_eq!(stdout(&o), "");
    }
}

#[test]
fn flush_conntrack_sends_zone_and_tuples_and_prints_the_count() {
    let d = FakeDaemon::answering(method::FLUSH_CONNTRACK, json!({"count": 2}));
    let o = d.run(&["flush-conntrack"]);
    assert_exit(&o, 0);
    assert_eq!(d.only_request(), ("flush-conntrack".into(), json!({})));
    assert_eq!(stdout(&o), "2 connections flushed\n");

    let d = FakeDaemon::answering(method::FLUSH_CONNTRACK, json!({"count": 1}));
    let o = d.run(&[
        "flush-conntrack",
        "zone=5",
        "ct_nw_src=10.0.0.1,ct_nw_proto=17",
        "ct_nw_src=10.0.0.2",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "flush-conntrack".into(),
            json!({"zone": 5, "tuple": "ct_nw_src=10.0.0.1,ct_nw_proto=17",
                   "reply_tuple": "ct_nw_src=10.0.0.2"})
        )
    );
    assert_eq!(stdout(&o), "1 connection flushed\n");

    let d = FakeDaemon::answering(method::FLUSH_CONNTRACK, json!({"count": 0}));
    let o = d.run(&["flush-conntrack", "--zone", "7", "ct_tp_dst=80"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "flush-conntrack".into(),
            json!({"zone": 7, "tuple": "ct_tp_dst=80"})
        )
    );
}

#[test]
fn limits_as_dpctl_prints_them() {
    let d = FakeDaemon::answering(method::CT_SET_LIMITS, Value::Null);
    let o = d.run(&[
        "ct-set-limits",
        "default=10",
        "zone=5,limit=3",
        "zone=7,limit=4",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "ct-set-limits".into(),
            json!({"default": 10, "zones": [{"zone": 5, "limit": 3}, {"zone": 7, "limit": 4}]})
        )
    );
    assert_eq!(stdout(&o), "");

    let d = FakeDaemon::answering(
        method::CT_GET_LIMITS,
        json!({"default": 10, "zones": [{"zone": 5, "limit": 3, "count": 1},
                                        {"zone": 9, "limit": 10, "count": 0}]}),
    );
    let o = d.run(&["ct-get-limits", "zone=5,9"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("ct-get-limits".into(), json!({"zones": [5, 9]}))
    );
    assert_eq!(
        stdout(&o),
        "default limit=10\nzone=5,limit=3,count=1\nzone=9,limit=10,count=0\n"
    );

    let d = FakeDaemon::answering(method::CT_DEL_LIMITS, Value::Null);
    let o = d.run(&["ct-del-limits", "zone=5,7"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("ct-del-limits".into(), json!({"zones": [5, 7]}))
    );
}

#[test]
fn maxconns_nconns_and_timeouts() {
    let d = FakeDaemon::answering(method::CT_SET_MAXCONNS, Value::Null);
    let o = d.run(&["ct-set-maxconns", "1000"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("ct-set-maxconns".into(), json!({"maxconns": 1000}))
    );
    assert_eq!(stdout(&o), "setting maxconns successful\n");

    let d = FakeDaemon::answering(method::CT_GET_MAXCONNS, json!({"maxconns": 1000}));
    let o = d.run(&["ct-get-maxconns"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "1000\n");

    let d = FakeDaemon::answering(method::CT_GET_NCONNS, json!({"count": 3}));
    let o = d.run(&["ct-get-nconns"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "3\n");

    let d = FakeDaemon::answering(
        method::CT_GET_TIMEOUTS,
        json!({"timeouts": [{"name": "tcp_established", "secs": 432000},
                            {"name": "udp", "secs": 30}]}),
    );
    let o = d.run(&["ct-get-timeouts"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "tcp_established=432000\nudp=30\n");

    let d = FakeDaemon::answering(method::CT_SET_TIMEOUTS, Value::Null);
    let o = d.run(&["ct-set-timeouts", "udp=60", "icmp=10"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "ct-set-timeouts".into(),
            json!({"timeouts": [{"name": "udp", "secs": 60}, {"name": "icmp", "secs": 10}]})
        )
    );
}

#[test]
fn trace_sends_each_ct_next() {
    let d = FakeDaemon::answering(
        method::TRACE,
        json!({"tables": [], "megaflow": "", "actions": "drop", "text": "Flow: ip"}),
    );
    let o = d.run(&[
        "trace",
        "in_port=1,ip",
        "--ct-next",
        "trk,new",
        "--ct-next",
        "+trk+est",
    ]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "trace".into(),
            json!({"flow": "in_port=1,ip", "ct_next": ["trk,new", "+trk+est"]})
        )
    );
}

#[test]
fn show_prints_the_conntrack_line() {
    let d = FakeDaemon::answering(
        method::SHOW,
        json!({
            "bridge": "br0", "version": "0.1.0", "workers": 1, "ports": [],
            "n_flows": 0, "n_groups": 0, "datapath": {},
            "conntrack": {"connections": 3, "limit": 1000, "capacity": 262144,
                          "created": 9, "expired": 4, "flushed": 2,
                          "refused_full": 1, "refused_zone": 2, "nat_exhausted": 0,
                          "clash_resolved": 7, "early_drops": 5, "invalid": 6}
        }),
    );
    let o = d.run(&["show"]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).ends_with(
            "conntrack: 3 connections, limit 1000, capacity 262144; refused: full 1, zone 2, \
             nat exhausted 0; clashes resolved 7; early drops 5, invalid 6\n"
        ),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_arguments_exit_1_and_send_nothing() {
    for (args, message) in [
        (
            &["dump-conntrack", "--zone", "x"][..],
            "failed to parse field zone",
        ),
        (
            &["dump-conntrack", "zone=70000"][..],
            "failed to parse field zone",
        ),
        (&["dump-conntrack", "5"][..], "expected zone=N"),
        (
            &["flush-conntrack", "ct_bogus=1"][..],
            "invalid conntrack tuple field: ct_bogus",
        ),
        (
            &["flush-conntrack", "a=1", "b=2", "c=3"][..],
            "at most two tuples",
        ),
        (
            &["flush-conntrack", "--zone", "1", "zone=2"][..],
            "the zone is given twice",
        ),
        (
            &["ct-set-limits", "zone=x,limit=3"][..],
            "failed to parse field zone",
        ),
        (
            &["ct-set-limits", "zone=5"][..],
            "failed to parse zone limit",
        ),
        (&["ct-get-limits", "5"][..], "expected zone=Z1"),
        (
            &["ct-del-limits", "zone=a"][..],
            "failed to parse field zone",
        ),
        (
            &["ct-set-maxconns", "many"][..],
            "not a number of connections",
        ),
        (&["ct-set-timeouts", "udp"][..], "expected NAME=SECONDS"),
    ] {
        let d = FakeDaemon::always(Reply::Result(json!({})));
        let o = d.run(args);
        assert_exit(&o, 1);
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(d.requests().is_empty(), "{args:?}");
    }
    // Missing arguments are usage errors.
    for args in [
        &["ct-set-limits"][..],
        &["ct-del-limits"][..],
        &["ct-set-timeouts"][..],
    ] {
        let o = FakeDaemon::always(Reply::Result(json!({}))).run(args);
        assert_exit(&o, 2);
    }
}

#[test]
fn refusals_exit_1_with_the_switch_message() {
    let message = "conntrack limit 5000000 is above the table's capacity 262144 (restart vswitchd with --ct-capacity 5000000)";
    let d = FakeDaemon::always(Reply::Error(RpcError::new(code::REFUSED, message)));
    let o = d.run(&["ct-set-maxconns", "5000000"]);
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), format!("vswitchctl: {message}\n"));
    assert_eq!(stdout(&o), "");

    let message = "no timeout named \"bogus\" (known: udp, icmp)";
    let d = FakeDaemon::always(Reply::Error(RpcError::new(code::REFUSED, message)));
    let o = d.run(&["ct-set-timeouts", "bogus=3"]);
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), format!("vswitchctl: {message}\n"));
}
