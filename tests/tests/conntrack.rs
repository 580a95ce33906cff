//! End-to-end tests of connection tracking from the command line: a real `vswitchd`,
//! Pods as network namespaces with TAP ports, pings through `ct(...)` flows, and the
//! `dpctl`-like commands that show, flush and limit the connections. They need root:
//! plain `cargo test` reports them ignored; `scripts/test` runs them as root.

use vswitch_tests::e2e::{Daemon, Netns, ping, serial, show, stderr, wait_until};

const A_IP: &str = "10.244.1.2";
const B_IP: &str = "10.244.1.3";
const TOOLS: &[&str] = &["ip", "ping", "timeout"];

fn require_root() {
    vswitch_tests::e2e::require_root(TOOLS);
}

/// Pod A (port `pa`) and Pod B (port `pb`), with permanent neighbour entries both ways so
/// the only packets are the test's.
fn attach_pods(d: &Daemon, a: &Netns, b: &Netns) {
    vswitch_tests::e2e::attach_two_pods(d, a, b, A_IP, B_IP);
    let mac = |ns: &Netns| ns.link("eth0").expect("eth0").mac;
    let (mac_a, mac_b) = (mac(a), mac(b));
    vswitch_tests::e2e::permanent_neighbour(a, "eth0", B_IP, &mac_b);
    vswitch_tests::e2e::permanent_neighbour(b, "eth0", A_IP, &mac_a);
}

/// The conntrack pipeline of the task: every IP packet goes through zone 5; a new
/// connection from A is committed, and only established traffic passes back.
const FLOWS: &[&str] = &[
    "table=0,ip,ct_state=-trk,actions=ct(table=1,zone=5)",
    "table=1,ct_state=+trk+new,ip,in_port=pa,actions=ct(commit,zone=5),output:pb",
    "table=1,ct_state=+trk+est,ip,in_port=pa,actions=output:pb",
    "table=1,ct_state=+trk+est,ip,in_port=pb,actions=output:pa",
];

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn ping_through_ct_is_dumped_then_flushed() {
    require_root();
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let d = Daemon::start();
    attach_pods(&d, &a, &b);
    for f in FLOWS {
        d.ctl_ok(&["add-flow", f]);
    }

    let p = ping(&a, B_IP, 3);
    assert!(
        p.received >= 1,
        "no echo reply through conntrack: {p:?}\n{}",
        d.log_tail(20)
    );
    // B cannot open a connection of its own: its new packets match no rule.
    let back = ping(&b, A_IP, 1);
    assert_eq!(back.received, 0, "B's new connection passed: {back:?}");

    let dump = d.ctl_ok(&["dump-conntrack"]);
    let line = dump
        .lines()
        .find(|l| l.starts_with(&format!("icmp,orig=(src={A_IP},dst={B_IP},id=")))
        .unwrap_or_else(|| panic!("no connection A->B in dump-conntrack:\n{dump}"));
    assert!(
        line.contains(&format!("reply=(src={B_IP},dst={A_IP},id="))
            && line.contains(",type=0,code=0),zone=5"),
        "{line}"
    );
    // B's ping went through ct() without a commit: nothing of it is stored.
    assert!(
        !dump.contains(&format!("orig=(src={B_IP}")),
        "an uncommitted connection was stored:\n{dump}"
    );
    let zoned = d.ctl_ok(&["dump-conntrack", "--zone", "5", "-s"]);
    assert!(
        zoned.lines().any(|l| l.contains(",zone=5,timeout=")),
        "dump-conntrack -s shows no timeout after the zone:\n{zoned}"
    );
    assert_eq!(d.ctl_ok(&["dump-conntrack", "zone=6"]), "");
    let n: u64 = d.ctl_ok(&["ct-get-nconns"]).trim().parse().unwrap();
    assert!(n >= 1, "ct-get-nconns: {n}");
    let show_out = d.ctl_ok(&["show"]);
    assert!(
        show_out.contains(&format!("conntrack: {n} connections")),
        "{show_out}"
    );

    // A tuple that matches nothing removes nothing; A's tuple removes A's connection.
    assert_eq!(
        d.ctl_ok(&["flush-conntrack", "zone=5", "ct_nw_src=10.9.9.9"]),
        "0 connections flushed\n"
    );
    let out = d.ctl_ok(&[
        "flush-conntrack",
        "--zone",
        "5",
        &format!("ct_nw_src={A_IP},ct_nw_proto=1"),
    ]);
    assert!(out.ends_with("flushed\n") && !out.starts_with('0'), "{out}");
    let dump = d.ctl_ok(&["dump-conntrack"]);
    assert!(
        !dump.contains(&format!("orig=(src={A_IP},dst={B_IP}")),
        "still there after flush-conntrack:\n{dump}"
    );
    // A's next ping opens the connection again.
    let p = ping(&a, B_IP, 2);
    assert!(p.received >= 1, "no ping after the flush: {p:?}");
    assert!(wait_until(std::time::Duration::from_secs(2), || {
        d.ctl_ok(&["dump-conntrack"])
            .contains(&format!("orig=(src={A_IP},dst={B_IP}"))
    }));

    // A trace follows the ct into table 1, as the packet would come back.
    let trace = d.ctl_ok(&[
        "trace",
        &format!("in_port=pb,icmp,nw_src={B_IP},nw_dst={A_IP}"),
        "--ct-next",
        "trk,est",
    ]);
    assert!(
        trace.contains("resume conntrack with ct_state=est|trk")
            && trace.contains(",ct_state=est|trk,ct_zone=5,")
            && trace.trim_end().ends_with("Datapath actions: 1"),
        "{trace}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn limits_and_timeouts_survive_a_restart() {
    require_root();
    let mut d = Daemon::start();
    let defaults = (
        d.ctl_ok(&["ct-get-maxconns"]),
        d.ctl_ok(&["ct-get-limits"]),
        d.ctl_ok(&["ct-get-timeouts"]),
    );
    assert_eq!(defaults.1, "default limit=0\n");
    assert_eq!(
        d.ctl_ok(&["ct-set-maxconns", "1000"]),
        "setting maxconns successful\n"
    );
    d.ctl_ok(&[
        "ct-set-limits",
        "default=10",
        "zone=5,limit=3",
        "zone=7,limit=4",
    ]);
    d.ctl_ok(&["ct-del-limits", "zone=7"]);
    d.ctl_ok(&["ct-set-timeouts", "udp=45", "tcp_established=3600"]);

    // Refusals: exit 1, the switch's words, nothing changed.
    let o = d.ctl(&["ct-set-maxconns", "999999999"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("above the table's capacity"),
        "{}",
        show(&o)
    );
    let o = d.ctl(&["ct-set-timeouts", "udp=1", "bogus=3"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("no timeout named \"bogus\""),
        "{}",
        show(&o)
    );
    let o = d.ctl(&["ct-set-limits", "zone=x,limit=1"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));

    let set = (
        d.ctl_ok(&["ct-get-maxconns"]),
        d.ctl_ok(&["ct-get-limits"]),
        d.ctl_ok(&["ct-get-timeouts"]),
    );
    assert_eq!(set.0, "1000\n");
    assert_eq!(set.1, "default limit=10\nzone=5,limit=3,count=0\n");
    assert!(
        set.2.contains("\nudp=45\n") && set.2.contains("tcp_established=3600\n"),
        "{}",
        set.2
    );
    assert_eq!(
        d.ctl_ok(&["ct-get-limits", "zone=5,9"]),
        "default limit=10\nzone=5,limit=3,count=0\nzone=9,limit=10,count=0\n"
    );

    // SIGTERM (a snapshot), then a kill -9 after a further change (the journal).
    d.stop();
    d.restart();
    let after = (
        d.ctl_ok(&["ct-get-maxconns"]),
        d.ctl_ok(&["ct-get-limits"]),
        d.ctl_ok(&["ct-get-timeouts"]),
    );
    assert_eq!(after, set, "settings after a restart");
    d.ctl_ok(&["ct-set-limits", "zone=8,limit=2"]);
    d.kill9();
    d.restart();
    assert_eq!(
        d.ctl_ok(&["ct-get-limits"]),
        "default limit=10\nzone=5,limit=3,count=0\nzone=8,limit=2,count=0\n"
    );
    assert_eq!(d.ctl_ok(&["ct-get-maxconns"]), "1000\n");
}
