//! End-to-end tests: a real `vswitchd` and `vswitchctl`, Pods as network namespaces with
//! TAP ports, the kernel's stack and iperf3 as peers. They need root: plain `cargo test`
//! reports them ignored; `scripts/test` runs them as root with `--include-ignored`.
//!
//! Each test makes its own namespaces and daemon and removes them, panics included. The
//! ones that move traffic take [`serial`] so they run one at a time.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::time::Duration;

use serde_json::Value;
use vswitch_tests::e2e::{
    Daemon, Netns, counter, iperf_client_args, iperf_report, iperf_server, ping, ping_until,
    serial, show, stderr, stdout, tcp_transfer, unique, wait_until,
};

const A_IP: &str = "10.244.1.2";
const B_IP: &str = "10.244.1.3";
/// "At least 100 MB": iperf3 sends 110 MiB, and at least this much must arrive.
const TRANSFER: &str = "110M";
const MIN_BYTES: u64 = 100_000_000;
/// Every tool a test here drives.
const TOOLS: &[&str] = &[
    "ip", "ping", "iperf3", "ethtool", "timeout", "ss", "sysctl", "setpriv", "nsenter", "kill",
];

fn require_root() {
    vswitch_tests::e2e::require_root(TOOLS);
}

fn attach_pods(d: &Daemon, a: &Netns, b: &Netns) {
    vswitch_tests::e2e::attach_two_pods(d, a, b, A_IP, B_IP);
}

/// Permanent neighbour entries both ways, so that no ARP runs and the only packets are
/// the ones a test sends.
fn static_neighbours(a: &Netns, b: &Netns) {
    let mac = |ns: &Netns| ns.link("eth0").expect("eth0").mac;
    let (mac_a, mac_b) = (mac(a), mac(b));
    vswitch_tests::e2e::permanent_neighbour(a, "eth0", B_IP, &mac_b);
    vswitch_tests::e2e::permanent_neighbour(b, "eth0", A_IP, &mac_a);
}

/// Offloads are on by default: a Pod's TCP goes out as 64 KiB segments with partial
/// checksums.
fn assert_offloads_on(ns: &Netns) {
    let on = ns.offloads_on("eth0");
    for feature in ["tcp-segmentation-offload", "tx-checksumming"] {
        assert!(
            on.iter().any(|f| f == feature),
            "{feature} is off on eth0 in {}; on: {on:?}",
            ns.name()
        );
    }
}

fn assert_pings_both_ways(d: &Daemon, a: &Netns, b: &Netns, count: u32) {
    for (from, to) in [(a, B_IP), (b, A_IP)] {
        let p = ping(from, to, count);
        assert!(
            p.transmitted == count && p.received == count,
            "ping {to} from {}: {count} sent, expected every reply:\n{}\n{}",
            from.name(),
            p.output,
            d.log_tail(10)
        );
    }
}

/// UDP datagrams (with checksum offload, 1400 bytes) from A to B arrive, nearly all.
fn assert_udp(d: &Daemon, a: &Netns, b: &Netns) {
    let srv = iperf_server(b, 5202, 30);
    let args = iperf_client_args(
        B_IP,
        5202,
        20,
        &["-u", "-b", "50M", "-l", "1400", "-t", "2"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = a.exec(&args);
    drop(srv);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    let sum = &v["end"]["sum"];
    let (packets, lost) = (
        sum["packets"].as_u64().unwrap_or(0),
        sum["lost_packets"].as_u64().unwrap_or(u64::MAX),
    );
    assert!(
        out.status.success() && packets > 1000 && lost * 100 <= packets,
        "iperf3 -u from A to B: {packets} datagrams, {lost} lost (want < 1%)\n{}\n{}",
        stdout(&out),
        d.log_tail(10)
    );
}

fn assert_transfer(d: &Daemon, a: &Netns, b: &Netns) {
    let t = tcp_transfer(a, b, B_IP, TRANSFER);
    assert!(
        t.ok && t.received_bytes >= MIN_BYTES,
        "iperf3 -n {TRANSFER} from A to B: expected success and >= {MIN_BYTES} bytes \
         received, got {} sent, {} received ({})\n{}",
        t.sent_bytes,
        t.received_bytes,
        t.output,
        d.log_tail(10)
    );
}

/// The one flow `dump-flows MATCH` lists.
fn only_flow(d: &Daemon, criteria: &str) -> Value {
    let flows = d.flows(Some(criteria));
    assert_eq!(flows.len(), 1, "dump-flows {criteria}: {flows:?}");
    flows.into_iter().next().unwrap()
}

/// Waits (counters are credited per batch) until `counter(flow)` reaches `min`.
fn wait_flow_counter(d: &Daemon, criteria: &str, name: &str, min: u64) -> Value {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(3), || {
        last = only_flow(d, criteria);
        counter(&last, name) >= min
    });
    last
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn normal_action_switches_pings_and_100_mb_between_two_pods() {
    require_root();
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let d = Daemon::start();
    attach_pods(&d, &a, &b);
    assert_offloads_on(&a);
    assert_offloads_on(&b);
    d.ctl_ok(&["add-flow", "cookie=0xa1,actions=normal"]);

    assert_pings_both_ways(&d, &a, &b, 5);
    let after_ping = counter(&only_flow(&d, "cookie=0xa1/-1"), "n_packets");
    assert!(
        after_ping >= 20,
        "NORMAL rule after 10 echoes and 10 replies: {after_ping}"
    );

    assert_transfer(&d, &a, &b);
    assert_udp(&d, &a, &b);
    let rule = wait_flow_counter(&d, "cookie=0xa1/-1", "n_bytes", MIN_BYTES);
    assert!(
        counter(&rule, "n_bytes") >= MIN_BYTES && counter(&rule, "n_packets") > after_ping,
        "the NORMAL rule's counters after 100 MB: {rule}"
    );
    let (pa, pb) = (d.port_stats("pa"), d.port_stats("pb"));
    for (port, field) in [(&pa, "rx_bytes"), (&pb, "tx_bytes")] {
        assert!(
            counter(port, field) >= MIN_BYTES,
            "{field} after 100 MB: {port}"
        );
    }
    for (port, field) in [(&pa, "tx_packets"), (&pb, "rx_packets")] {
        assert!(counter(port, field) > 0, "{field} (the ACKs): {port}");
    }

    let trace = d.ctl_ok(&[
        "trace",
        "in_port=pa,tcp,nw_src=10.244.1.2,nw_dst=10.244.1.3,tp_dst=5201",
    ]);
    assert!(
        trace.contains("cookie 0xa1") && trace.contains("actions=NORMAL"),
        "trace does not name the NORMAL rule:\n{trace}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn in_port_output_flows_carry_pings_and_100_mb() {
    require_root();
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let d = Daemon::start();
    attach_pods(&d, &a, &b);
    assert_offloads_on(&a);
    assert_offloads_on(&b);
    d.ctl_ok(&["add-flow", "cookie=0xab,in_port=pa,actions=output:pb"]);
    d.ctl_ok(&["add-flow", "cookie=0xba,in_port=pb,actions=output:pa"]);

    assert_pings_both_ways(&d, &a, &b, 5);
    assert_transfer(&d, &a, &b);

    let ab = wait_flow_counter(&d, "in_port=pa", "n_bytes", MIN_BYTES);
    let line = ab["line"].as_str().unwrap_or_default();
    assert!(
        line.contains("in_port=pa") && line.contains("actions=output:pb"),
        "dump-flows in_port=pa names another rule: {line}"
    );
    assert!(counter(&ab, "n_bytes") >= MIN_BYTES, "A->B rule: {ab}");
    let ba = only_flow(&d, "in_port=pb");
    assert!(
        counter(&ba, "n_packets") > 5,
        "B->A rule (replies, ACKs): {ba}"
    );
    let (pa, pb) = (d.port_stats("pa"), d.port_stats("pb"));
    assert!(counter(&pa, "rx_bytes") >= MIN_BYTES, "pa: {pa}");
    assert!(counter(&pb, "tx_bytes") >= MIN_BYTES, "pb: {pb}");

    for (port, cookie, action) in [("pa", "0xab", "output:pb"), ("pb", "0xba", "output:pa")] {
        let trace = d.ctl_ok(&["trace", &format!("in_port={port},icmp")]);
        assert!(
            trace.contains(&format!("cookie {cookie}")) && trace.contains(action),
            "trace from {port} does not name the {port} rule:\n{trace}"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn drop_flow_passes_nothing_and_counts_what_it_dropped() {
    require_root();
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let d = Daemon::start();
    attach_pods(&d, &a, &b);
    static_neighbours(&a, &b);
    d.ctl_ok(&["add-flow", "cookie=0x1,priority=0,actions=normal"]);
    assert_pings_both_ways(&d, &a, &b, 2);

    d.ctl_ok(&["add-flow", "cookie=0xd0,priority=100,actions=drop"]);
    let normal_before = counter(&only_flow(&d, "cookie=0x1/-1"), "n_packets");
    let (pa0, pb0) = (d.port_stats("pa"), d.port_stats("pb"));

    let p = ping(&a, B_IP, 5);
    assert_eq!(
        (p.transmitted, p.received),
        (5, 0),
        "ping A->B through a drop rule:\n{}",
        p.output
    );
    let dropped = wait_flow_counter(&d, "cookie=0xd0/-1", "n_packets", 5);
    assert_eq!(
        counter(&dropped, "n_packets"),
        5,
        "drop rule after 5 echo requests: {dropped}"
    );

    let p = ping(&b, A_IP, 3);
    assert_eq!(
        (p.transmitted, p.received),
        (3, 0),
        "ping B->A through a drop rule:\n{}",
        p.output
    );
    let dropped = wait_flow_counter(&d, "cookie=0xd0/-1", "n_packets", 8);
    assert_eq!(
        counter(&dropped, "n_packets"),
        8,
        "drop rule after 3 more: {dropped}"
    );

    let srv = iperf_server(&b, 5201, 20);
    let args = iperf_client_args(B_IP, 5201, 15, &["-n", "1M"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = iperf_report(&a.exec(&args));
    drop(srv);
    assert!(
        !t.ok && t.received_bytes == 0,
        "TCP through a drop rule: {t:?}"
    );

    // Everything the ports received went to the drop rule, and nothing went out.
    let rx = |before: &Value, name: &str| {
        counter(&d.port_stats(name), "rx_packets") - counter(before, "rx_packets")
    };
    let mut seen = (0, 0);
    let matched = wait_until(Duration::from_secs(3), || {
        let dropped = counter(&only_flow(&d, "cookie=0xd0/-1"), "n_packets");
        seen = (dropped, rx(&pa0, "pa") + rx(&pb0, "pb"));
        seen.0 == seen.1
    });
    assert!(
        matched,
        "drop rule n_packets vs packets received by the ports: {seen:?}"
    );
    assert!(seen.0 > 8, "the TCP SYNs were not counted: {seen:?}");
    for (before, name) in [(&pa0, "pa"), (&pb0, "pb")] {
        let now = d.port_stats(name);
        assert_eq!(
            counter(&now, "tx_packets"),
            counter(before, "tx_packets"),
            "port {name} sent packets through a drop rule: {now}"
        );
    }
    let normal = counter(&only_flow(&d, "cookie=0x1/-1"), "n_packets");
    assert_eq!(
        normal, normal_before,
        "the lower-priority NORMAL rule matched packets"
    );

    let trace = d.ctl_ok(&[
        "trace",
        "in_port=pa,icmp,nw_src=10.244.1.2,nw_dst=10.244.1.3",
    ]);
    assert!(
        trace.contains("cookie 0xd0") && trace.contains("Datapath actions: drop"),
        "trace does not name the drop rule:\n{trace}"
    );
}

/// Port configuration a restart must keep, as `list-ports --json` reports it.
fn port_config(d: &Daemon) -> Vec<String> {
    d.ports()
        .iter()
        .map(|p| {
            format!(
                "{} no={} type={} netns={} ifname={} mac={} ip={} state={}",
                p["name"],
                p["no"],
                p["type"],
                p["netns"],
                p["ifname"],
                p["mac"],
                p["ip"],
                p["state"]
            )
        })
        .collect()
}

/// What `dump-flows` shows of each flow, less counters and age.
fn flow_lines(d: &Daemon) -> Vec<String> {
    d.flows(None)
        .iter()
        .map(|f| {
            format!(
                "table={} priority={} cookie={} {} actions={}",
                f["table"], f["priority"], f["cookie"], f["match"], f["actions"]
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn kill_9_under_traffic_then_restart_brings_everything_back() {
    require_root();
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let mut d = Daemon::start();
    attach_pods(&d, &a, &b);
    d.ctl_ok(&["add-flow", "cookie=0xab,in_port=pa,actions=output:pb"]);
    d.ctl_ok(&["add-flow", "cookie=0xba,in_port=pb,actions=output:pa"]);
    d.ctl_ok(&[
        "add-group",
        "group_id=7,type=all,bucket=output:pa,bucket=output:pb",
    ]);
    assert_pings_both_ways(&d, &a, &b, 2);
    let ports = port_config(&d);
    let flows = flow_lines(&d);
    let groups = d.ctl_ok(&["dump-groups"]);
    let links = (a.links(), b.links());
    assert_eq!(ports.len(), 2, "{ports:?}");

    // Traffic: a 6 s TCP stream and a ping every 0.1 s, both bounded.
    let srv = iperf_server(&b, 5201, 60);
    let args = iperf_client_args(B_IP, 5201, 45, &["-t", "6"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = a.spawn(&args);
    let pinger = a.spawn(&[
        "timeout", "20", "ping", "-n", "-c", "100", "-i", "0.1", "-W", "1", B_IP,
    ]);
    let flowing = wait_until(Duration::from_secs(5), || {
        counter(&d.port_stats("pa"), "rx_bytes") > 10_000_000
    });
    assert!(
        flowing,
        "no TCP traffic before the kill: {}",
        d.port_stats("pa")
    );

    d.kill9();
    // The switch carried the traffic, and the Pods keep their interfaces while it is down.
    let p = ping(&a, B_IP, 1);
    assert_eq!(
        p.received, 0,
        "a reply came back with vswitchd dead:\n{}",
        p.output
    );
    assert_eq!(
        (a.links(), b.links()),
        links,
        "the Pods' interfaces changed while vswitchd was dead"
    );

    d.restart();
    assert!(
        ping_until(&a, B_IP, Duration::from_secs(10)),
        "no ping A->B within 10 s of the restart\n{}",
        d.log_tail(20)
    );
    // The TCP stream that was cut resumed by itself and finished.
    let out = client.finish(Duration::from_secs(50));
    let t = iperf_report(&out);
    assert!(
        t.ok && t.received_bytes > 0,
        "the iperf3 stream did not survive the restart: {t:?}"
    );
    let resumed = counter(&d.port_stats("pb"), "tx_bytes");
    assert!(
        resumed > 1_000_000,
        "no TCP data through the new vswitchd: pb tx_bytes {resumed}"
    );
    drop(pinger);
    drop(srv);

    assert_eq!(
        port_config(&d),
        ports,
        "ports after the restart (list-ports)"
    );
    assert_eq!(
        flow_lines(&d),
        flows,
        "flows after the restart (dump-flows)"
    );
    assert_eq!(
        d.ctl_ok(&["dump-groups"]),
        groups,
        "groups after the restart"
    );
    let now = (a.links(), b.links());
    assert_eq!(
        now, links,
        "the Pods' interfaces after the restart (same TAP, same MAC, no extra)"
    );
    assert_pings_both_ways(&d, &a, &b, 3);
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    require_root();
    let a = Netns::new();
    let mut d = Daemon::start();
    d.ctl_ok(&[
        "add-port",
        "pa",
        "--type",
        "tap",
        "--netns",
        &a.path(),
        "--ifname",
        "eth0",
        "--ip",
        "10.244.1.2/24",
    ]);
    d.ctl_ok(&["add-port", "m1", "--type", "memory"]);
    d.ctl_ok(&[
        "add-flow",
        "cookie=0x5,priority=10,in_port=pa,actions=output:m1",
    ]);
    d.ctl_ok(&["add-flow", "priority=1,actions=normal"]);
    d.ctl_ok(&[
        "add-group",
        "group_id=1,type=all,bucket=output:pa,bucket=output:m1",
    ]);
    let before = d.snapshot();
    let links = a.links();

    let check = |what: &str, d: &mut Daemon| {
        assert!(
            d.is_running(),
            "vswitchd died after {what}\n{}",
            d.diagnostics()
        );
        let now = d.snapshot();
        assert_eq!(now, before, "the state changed after {what}");
        assert_eq!(
            a.links(),
            links,
            "the Pod's interfaces changed after {what}"
        );
    };

    // Raw JSON-RPC: each error says what was wrong and the connection stays usable.
    let mut rpc = d.connect();
    let version = r#"{"jsonrpc":"2.0","id":100,"method":"version"}"#;
    let r = rpc.call(r#"{"jsonrpc":"2.0","id":1,"method":"#);
    assert_eq!(r["error"]["code"], -32700, "malformed JSON: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("JSON"),
        "{r}"
    );
    assert_eq!(
        rpc.call(version)["result"]["protocol"],
        1,
        "after malformed JSON"
    );
    check("malformed JSON", &mut d);

    let r = rpc.call(r#"{"jsonrpc":"2.0","id":2,"method":"no-such-method"}"#);
    assert_eq!(r["error"]["code"], -32601, "unknown method: {r}");
    assert_eq!(r["id"], 2, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-method"),
        "{r}"
    );
    assert_eq!(
        rpc.call(version)["result"]["protocol"],
        1,
        "after an unknown method"
    );
    check("an unknown method", &mut d);

    // Over 16 MiB: a request that would add a flow if it were read.
    let pad = "a".repeat((16 << 20) + 4096);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"add-flows","params":{{"flows":["priority=7,actions=drop"]}},"pad":"{pad}"}}"#
    );
    let r = rpc.call(&big);
    assert_eq!(r["error"]["code"], -32600, "oversized request: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than"),
        "{r}"
    );
    assert_eq!(
        rpc.call(version)["result"]["protocol"],
        1,
        "after an oversized request"
    );
    drop(rpc);
    check("an oversized request", &mut d);

    // The same through vswitchctl: a flow file over 16 MiB.
    let file = d.dir().join("big.flows");
    let line = "cookie=0x77,priority=9,tcp,tp_dst=80,actions=drop\n";
    std::fs::write(&file, line.repeat((17 << 20) / line.len())).unwrap();
    let out = d.ctl(&["add-flows", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "add-flows of 17 MiB: {}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("larger than"),
        "add-flows of 17 MiB: {}",
        show(&out)
    );
    check("a flow file over 16 MiB", &mut d);

    // (args, exit code, words the message must hold)
    let missing_ns = format!("/var/run/netns/{}", unique("vsw-e2e-missing"));
    let flows_file = d.dir().join("bad.flows");
    std::fs::write(
        &flows_file,
        "# good, bad, good: none may be added\npriority=3,arp,actions=normal\n\npriority=4,ip,actions=output:nosuch\npriority=5,actions=drop\n",
    )
    .unwrap();
    let flows_path = flows_file.to_str().unwrap().to_string();
    let ns = a.path();
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (
            vec!["add-flow", "in_port=pa,actions=output:nosuch"],
            1,
            vec!["nosuch"],
        ),
        (vec!["add-flow", "tp_dst=80,actions=drop"], 1, vec!["tcp"]),
        (
            vec!["add-flow", "priority=10,nw_dst=10.0.0.300,actions=drop"],
            1,
            vec!["10.0.0.300"],
        ),
        (vec!["add-flows", &flows_path], 1, vec![":4:", "nosuch"]),
        (
            vec!["mod-flows", "in_port=pa,actions=output:nosuch"],
            1,
            vec!["nosuch"],
        ),
        // A bad match must not delete everything.
        (
            vec!["del-flows", "nw_dst=10.0.0.300"],
            1,
            vec!["10.0.0.300"],
        ),
        (
            vec!["add-group", "group_id=1,type=all,bucket=output:m1"],
            1,
            vec!["1", "exists"],
        ),
        (
            vec!["add-group", "group_id=2,type=nosuch,bucket=output:m1"],
            1,
            vec!["nosuch"],
        ),
        (
            vec![
                "add-port", "pa", "--type", "tap", "--netns", &ns, "--ifname", "eth1",
            ],
            1,
            vec!["pa", "taken"],
        ),
        (
            vec!["add-port", "m1", "--type", "memory"],
            1,
            vec!["m1", "taken"],
        ),
        (
            vec![
                "add-port",
                "pz",
                "--type",
                "tap",
                "--netns",
                &missing_ns,
                "--ifname",
                "eth0",
            ],
            1,
            vec![&missing_ns, "does not exist"],
        ),
        (
            vec![
                "add-port",
                "pod-port-name-24-bytes",
                "--type",
                "tap",
                "--netns",
                &ns,
            ],
            1,
            vec!["pod-port-name-24-bytes", "15"],
        ),
        (
            vec!["add-port", "host-port-name-24-bytes", "--type", "tap"],
            1,
            vec!["host-port-name-24-bytes", "15"],
        ),
        (
            vec![
                "add-port",
                "pq",
                "--type",
                "tap",
                "--netns",
                &ns,
                "--ifname",
                "eth0-but-too-long",
            ],
            2,
            vec!["15"],
        ),
        (vec!["del-port", "nosuch"], 1, vec!["nosuch"]),
        (vec!["del-groups", "9"], 1, vec!["9"]),
    ];
    for (args, code, words) in cases {
        let out = d.ctl(&args);
        let what = format!("vswitchctl {}", args.join(" "));
        assert_eq!(out.status.code(), Some(code), "{what}: {}", show(&out));
        let msg = stderr(&out);
        for w in words {
            assert!(
                msg.contains(w),
                "{what}: the message does not mention {w:?}: {msg}"
            );
        }
        check(&what, &mut d);
    }

    // The daemon's own check of an interface name, past the client's.
    let mut rpc = d.connect();
    let r = rpc.call(&format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"add-port","params":{{"name":"pq","type":"tap","netns":"{ns}","ifname":"eth0-but-too-long"}}}}"#
    ));
    assert!(
        r["error"]["code"].is_i64(),
        "add-port with a 17-byte ifname: {r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("15"),
        "{r}"
    );
    let r = rpc
        .call(r#"{"jsonrpc":"2.0","id":5,"method":"add-flows","params":{"flows":"not a list"}}"#);
    assert_eq!(r["error"]["code"], -32602, "add-flows with bad params: {r}");
    drop(rpc);
    check("add-port with a 17-byte ifname over JSON-RPC", &mut d);
    d.ctl_ok(&["version"]);
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn control_socket_is_root_only() {
    require_root();
    let mut d = Daemon::start();
    let socket = d.socket();
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        socket.display()
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    assert_eq!(meta.uid(), 0, "socket owner");

    // 0600: the kernel stops nobody at connect.
    let out = d.ctl_as_nobody(&["list-ports"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "list-ports as nobody: {}",
        show(&out)
    );
    assert!(
        stderr(&out).to_lowercase().contains("permission"),
        "{}",
        show(&out)
    );

    // 0666: vswitchd itself refuses the peer (SO_PEERCRED), and still serves root. The
    // daemon answers before reading the request, so each call is repeated: every refusal
    // must reach the user as one, whatever the timing.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = d.snapshot();
    for round in 0..10 {
        for args in [
            &["version"][..],
            &["add-flow", "priority=1,actions=drop"],
            &["list-ports"],
        ] {
            let out = d.ctl_as_nobody(args);
            let msg = stderr(&out).to_lowercase();
            // The switch refused: exit 1, not 3 ("not reachable").
            assert_eq!(
                out.status.code(),
                Some(1),
                "{args:?} as nobody, socket 0666 (round {round}): {}",
                show(&out)
            );
            assert!(
                msg.contains("permission") && !msg.contains("os error 13"),
                "{args:?} as nobody, socket 0666 (round {round}): expected vswitchd's \
                 permission refusal, got: {msg}"
            );
        }
    }
    assert_eq!(d.snapshot(), before, "a refused peer changed the state");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        d.is_running(),
        "vswitchd died after refusing a peer\n{}",
        d.diagnostics()
    );
    assert!(d.ctl_ok(&["version"]).contains("vswitchd"));
    d.ctl_ok(&["add-flow", "priority=1,actions=drop"]);
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn damaged_state_file_stops_the_start_and_the_backup_brings_it_back() {
    require_root();
    let mut d = Daemon::start();
    d.ctl_ok(&["add-flow", "cookie=0x1,priority=10,ip,actions=drop"]);
    // A clean stop writes the state as one snapshot; the next start writes it again,
    // keeping the one before as the backup.
    assert_eq!(d.stop().code(), Some(0), "SIGTERM exit status");
    d.restart();
    d.ctl_ok(&["add-flow", "cookie=0x2,priority=20,arp,actions=normal"]);
    let backup = d.state_dir().join("state.json.bak");
    assert_eq!(d.stop().code(), Some(0), "SIGTERM exit status");
    let meta = std::fs::metadata(&backup)
        .unwrap_or_else(|e| panic!("no {} after two starts: {e}", backup.display()));
    assert!(meta.len() > 0, "{} is empty", backup.display());

    let state = d.state_file();
    std::fs::write(&state, b"{\"version\":2,\"ports\":[").unwrap();
    let out = d.run_foreground();
    assert_eq!(
        out.status.code(),
        Some(1),
        "vswitchd over a damaged state file: {}",
        show(&out)
    );
    let msg = stderr(&out);
    assert!(
        msg.contains(state.to_str().unwrap()) && msg.contains("state.json.bak"),
        "the message does not name {} and its backup: {msg}",
        state.display()
    );
    assert!(!d.socket().exists(), "vswitchd left a socket behind");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        b"{\"version\":2,\"ports\":[",
        "state.json was rewritten"
    );

    // The backup, copied over as the message says, holds the first change.
    std::fs::copy(&backup, &state).unwrap();
    d.restart();
    let flows = flow_lines(&d);
    assert_eq!(flows.len(), 1, "flows from the backup: {flows:?}");
    assert!(flows[0].contains("0x1"), "flows from the backup: {flows:?}");

    // A change in the journal that does not read (not its last line, which a crash may
    // have cut short) stops the start too, naming the journal.
    d.ctl_ok(&["add-flow", "cookie=0x3,priority=30,ip,actions=drop"]);
    d.kill9();
    let journal = d.journal_file();
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, format!("{{\"seq\": oops\n{text}")).unwrap();
    let out = d.run_foreground();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains(journal.to_str().unwrap()),
        "{}",
        show(&out)
    );
    // Its last change cut short by a crash is dropped; the rest is there.
    std::fs::write(&journal, format!("{text}{{\"seq\":99,\"ops\":[")).unwrap();
    d.restart();
    let flows = flow_lines(&d);
    assert_eq!(flows.len(), 2, "flows after a torn journal: {flows:?}");
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn sighup_and_reopen_logs_start_a_new_log_file() {
    require_root();
    let d = Daemon::start();
    let log = d.log_file();
    let moved = |n: u32| log.with_extension(format!("log.{n}"));
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();

    for (n, how) in [(1, "SIGHUP"), (2, "vswitchctl reopen-logs")] {
        std::fs::rename(&log, moved(n)).unwrap();
        if n == 1 {
            d.signal("HUP");
        } else {
            d.ctl_ok(&["reopen-logs"]);
        }
        let port = format!("mem{n}");
        let reopened = wait_until(Duration::from_secs(5), || log.exists());
        assert!(reopened, "no new {} after {how}", log.display());
        d.ctl_ok(&["add-port", &port, "--type", "memory"]);
        let landed = wait_until(Duration::from_secs(5), || read(&log).contains(&port));
        assert!(
            landed,
            "after {how}, the log line about port {port} is not in the new file {}:\nnew: {}\nold: {}",
            log.display(),
            read(&log),
            read(&moved(n))
        );
        assert!(
            !read(&moved(n)).contains(&port),
            "after {how} the old file still gets lines"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn sigterm_stops_cleanly_and_the_pods_keep_their_interfaces() {
    require_root();
    let _serial = serial();
    let (a, b) = (Netns::new(), Netns::new());
    let mut d = Daemon::start();
    attach_pods(&d, &a, &b);
    d.ctl_ok(&["add-flow", "actions=normal"]);
    assert_pings_both_ways(&d, &a, &b, 2);
    let links = (a.links(), b.links());

    let status = d.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM\n{}",
        d.diagnostics()
    );
    assert!(
        !d.socket().exists(),
        "the socket {} is still there",
        d.socket().display()
    );
    let out = d.ctl(&["version"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "vswitchctl with vswitchd stopped: {}",
        show(&out)
    );
    assert!(stderr(&out).contains("cannot reach"), "{}", show(&out));
    assert_eq!(
        (a.links(), b.links()),
        links,
        "the Pods' eth0 after a clean stop"
    );

    d.restart();
    assert!(
        ping_until(&a, B_IP, Duration::from_secs(10)),
        "no ping after the restart"
    );
    assert_pings_both_ways(&d, &a, &b, 2);
}

/// A Pod's TAP steers its receive work (RPS) to the CPUs vswitchd may run on, on every
/// queue, so that the worker writing a Pod's frames does not also run the Pod's TCP;
/// `--no-rps` leaves steering as the kernel made it (off).
#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn pod_taps_steer_their_receive_work_unless_told_not_to() {
    require_root();
    let rps = |ns: &Netns, queue: usize| {
        ns.exec_ok(&[
            "cat",
            &format!("/sys/class/net/eth0/queues/rx-{queue}/rps_cpus"),
        ])
        .trim()
        .to_string()
    };
    let is_zero = |mask: &str| mask.chars().all(|c| c == '0' || c == ',');

    let (node, a, b) = (Netns::new(), Netns::new(), Netns::new());
    // With a Pod network, so that the gateway (an internal port in the node's namespace)
    // is steered too.
    let d = Daemon::start_in(&node, &["--pod-cidr", "10.99.0.0/24"]);
    // The same bitmap format as rps_cpus, over the same number of CPUs.
    let allowed = std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .expect("the daemon's status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed:"))
        .map(|m| m.trim().to_string())
        .expect("Cpus_allowed in the daemon's status");
    attach_pods(&d, &a, &b);
    let queues = a.exec_ok(&["ls", "/sys/class/net/eth0/queues"]);
    let used = d.ctl_json(&["show"]);
    let workers = used["workers"].as_u64().unwrap_or(1) as usize;
    let gateway = node.exec_ok(&["cat", "/sys/class/net/vsw-gw0/queues/rx-0/rps_cpus"]);
    assert_eq!(gateway.trim(), allowed, "rps_cpus of the gateway vsw-gw0");
    for ns in [&a, &b] {
        for q in 0..workers {
            assert_eq!(
                rps(ns, q),
                allowed,
                "rps_cpus of eth0 rx-{q} in {} (queues: {queues}; vswitchd may run on {allowed})\n{}",
                ns.name(),
                d.log_tail(10)
            );
        }
    }
    assert!(
        !d.log_tail(50).contains("receive steering"),
        "a steering failure was logged:\n{}",
        d.log_tail(50)
    );
    drop(d);

    let (node, c) = (Netns::new(), Netns::new());
    let d = Daemon::start_in(&node, &["--no-rps"]);
    d.ctl_ok(&[
        "add-port",
        "pc",
        "--type",
        "tap",
        "--netns",
        &c.path(),
        "--ifname",
        "eth0",
    ]);
    let mask = rps(&c, 0);
    assert!(is_zero(&mask), "rps_cpus with --no-rps: {mask}");
}
