//! vswitchctl as a user runs it, against a fake daemon: the requests it sends, what it
//! prints, and its exit status.

mod support;

use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use vswitch_proto::rpc::{RpcError, code, method};

fn show_result() -> Value {
    json!({
        "bridge": "br0", "version": "0.1.0", "workers": 2,
        "ports": [port_info(), pod_port()],
        "n_flows": 12, "n_groups": 1,
        "datapath": {"packets": 1234, "emc_hits": 1200, "megaflow_hits": 30, "upcalls": 4,
                     "dropped.ttl": 2}
    })
}

fn flow(line: &str) -> Value {
    json!({
        "table": 0, "priority": 100, "cookie": "0x0", "duration_ms": 1216,
        "n_packets": 3, "n_bytes": 180, "idle_timeout": 0, "hard_timeout": 0,
        "match": "ip", "actions": "drop", "line": line
    })
}

// ---- every command sends the right method and params ----

#[test]
fn show_prints_bridge_ports_counts_and_counters() {
    let d = FakeDaemon::answering(method::SHOW, show_result());
    let o = d.run(&["show"]);
    assert_exit(&o, 0);
    assert_eq!(d.only_request(), ("show".into(), Value::Null));
    let expected = "\
bridge br0 (vswitchd 0.1.0, 2 workers)
ports:
  NO  NAME   TYPE      NETNS                 IFNAME  MAC                 MTU  IP             STATE                                            OFFLOADS
   1  gw0    internal  -                     gw0     0a:00:00:00:00:01  1500  10.244.1.1/24  up                                               csum,tso4,tso6
  12  pod-a  tap       /var/run/netns/pod-a  eth0    0a:58:0a:f4:01:05     -  -              missing: namespace /var/run/netns/pod-a is gone  -
flows: 12   groups: 1
datapath: packets 1234, emc_hits 1200, megaflow_hits 30, upcalls 4, dropped.ttl 2
";
    assert_eq!(stdout(&o), expected);
    assert_eq!(stderr(&o), "");
}

#[test]
fn json_prints_the_result_and_nothing_else() {
    let cases: [(&str, &str, Value); 12] = [
        ("show", method::SHOW, show_result()),
        (
            "version",
            method::VERSION,
            json!({"version": "0.1.0", "protocol": 1}),
        ),
        ("list-ports", method::LIST_PORTS, json!([port_info()])),
        (
            "dump-ports",
            method::DUMP_PORTS,
            json!([{"no": 1, "name": "gw0", "rx_packets": 1, "rx_bytes": 2, "rx_dropped": 0,
                    "rx_errors": 0, "tx_packets": 3, "tx_bytes": 4, "tx_dropped": 0,
                    "tx_errors": 0}]),
        ),
        (
            "dump-flows",
            method::DUMP_FLOWS,
            json!([flow("priority=100,ip actions=drop")]),
        ),
        (
            "dump-groups",
            method::DUMP_GROUPS,
            json!([{"group_id": 1, "packets": 0, "bytes": 0, "line": "group_id=1,type=all"}]),
        ),
        (
            "dump-cache",
            method::DUMP_CACHE,
            json!({"workers": [{"worker": 0, "emc": [], "megaflows": []}]}),
        ),
        ("reopen-logs", method::REOPEN_LOGS, Value::Null),
        ("list-nodes", method::LIST_NODES, json!([node_info()])),
        ("get nodes", method::GET, nodes_result(false)),
        // The raw result, whatever -o asks for.
        (
            "get nodes worker-1 -o yaml",
            method::GET,
            nodes_result(false),
        ),
        (
            "dump-group-stats",
            method::DUMP_GROUPS,
            json!([{"group_id": 1, "packets": 0, "bytes": 0, "line": "group_id=1,type=all"}]),
        ),
    ];
    for (cmd, m, result) in cases {
        let d = FakeDaemon::answering(m, result.clone());
        let mut args = vec!["--json"];
        args.extend(cmd.split(' '));
        let o = d.run(&args);
        assert_exit(&o, 0);
        assert_eq!(d.only_request().0, m);
        let printed: Value = serde_json::from_str(&stdout(&o)).expect(cmd);
        assert_eq!(printed, result, "{cmd}");
        assert_eq!(
            stdout(&o),
            serde_json::to_string_pretty(&result).unwrap() + "\n"
        );
    }
}

#[test]
fn version_prints_both_sides() {
    let d = FakeDaemon::answering(method::VERSION, json!({"version": "0.1.0", "protocol": 1}));
    let o = d.run(&["version"]);
    assert_exit(&o, 0);
    let expected = format!(
        "vswitchctl {} (protocol 1)\nvswitchd 0.1.0 (protocol 1)\n",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(stdout(&o), expected);
}

#[test]
fn add_port_sends_every_option() {
    let d = FakeDaemon::answering(method::ADD_PORT, pod_port());
    let o = d.run(&[
        "add-port",
        "pod-a",
        "--type",
        "tap",
        "--netns",
        "/var/run/netns/pod-a",
        "--ifname",
        "eth0",
        "--mac",
        "0A:58:0a:f4:01:05",
        "--mtu",
        "1450",
        "--ip",
        "10.244.1.5/24",
        "--gateway",
        "10.244.1.1",
    ]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        d.only_request(),
        (
            "add-port".into(),
            json!({"name": "pod-a", "type": "tap", "netns": "/var/run/netns/pod-a",
                   "ifname": "eth0", "mac": "0a:58:0a:f4:01:05", "mtu": 1450,
                   "ip": "10.244.1.5/24", "gateway": "10.244.1.1"})
        )
    );

    let d = FakeDaemon::answering(method::ADD_PORT, port_info());
    let o = d.run(&["--json", "add-port", "gw0", "--type", "internal"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request().1,
        json!({"name": "gw0", "type": "internal"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        port_info()
    );
}

#[test]
fn del_port_sends_the_name() {
    let d = FakeDaemon::answering(method::DEL_PORT, json!({"count": 1}));
    let o = d.run(&["del-port", "pod-a"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("del-port".into(), json!({"name": "pod-a"}))
    );
}

#[test]
fn list_ports_is_a_table() {
    // A result wrapped in an object is read as well as a bare array.
    let d = FakeDaemon::answering(method::LIST_PORTS, json!({"ports": [port_info()]}));
    let o = d.run(&["list-ports"]);
    assert_exit(&o, 0);
    assert_eq!(d.only_request(), ("list-ports".into(), Value::Null));
    assert_eq!(
        stdout(&o),
        "\
NO  NAME  TYPE      NETNS  IFNAME  MAC                 MTU  IP             STATE  OFFLOADS
 1  gw0   internal  -      gw0     0a:00:00:00:00:01  1500  10.244.1.1/24  up     csum,tso4,tso6
"
    );
}

#[test]
fn dump_ports_right_aligns_counters() {
    let d = FakeDaemon::answering(
        method::DUMP_PORTS,
        json!([
            {"no": 1, "name": "gw0", "rx_packets": 5, "rx_bytes": 300, "rx_dropped": 0,
             "rx_errors": 0, "tx_packets": 123456, "tx_bytes": 98765432, "tx_dropped": 1,
             "tx_errors": 0},
            {"no": 12, "name": "pod-a", "rx_packets": 0, "rx_bytes": 0, "rx_dropped": 0,
             "rx_errors": 0, "tx_packets": 0, "tx_bytes": 0, "tx_dropped": 0, "tx_errors": 0}
        ]),
    );
    let o = d.run(&["dump-ports"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
NO  NAME   RX_PACKETS  RX_BYTES  RX_DROPPED  RX_ERRORS  TX_PACKETS  TX_BYTES  TX_DROPPED  TX_ERRORS
 1  gw0             5       300           0          0      123456  98765432           1          0
12  pod-a           0         0           0          0           0         0           0          0
"
    );
}

#[test]
fn add_flow_sends_one_line_to_add_flows() {
    let d = FakeDaemon::answering(method::ADD_FLOWS, json!({"count": 1}));
    let o = d.run(&["add-flow", "table=0,priority=10,ip,actions=drop"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        d.only_request(),
        (
            "add-flows".into(),
            json!({"flows": ["table=0,priority=10,ip,actions=drop"], "strict": false})
        )
    );
}

const FLOW_FILE: &str = "\
# Classifier
table=0,priority=100,in_port=gw0,actions=goto_table:1

   # indented comment
  table=1,priority=0,actions=drop  
";

#[test]
fn add_flows_from_a_file_skips_blanks_and_comments() {
    let dir = TempDir::new();
    let file = dir.path().join("flows.txt");
    std::fs::write(&file, FLOW_FILE).unwrap();
    let d = FakeDaemon::answering(method::ADD_FLOWS, json!({"count": 2}));
    let o = d.run(&["add-flows", file.to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "add-flows".into(),
            json!({"flows": ["table=0,priority=100,in_port=gw0,actions=goto_table:1",
                             "table=1,priority=0,actions=drop"],
                   "strict": false})
        )
    );
}

#[test]
fn add_flows_from_stdin() {
    let d = FakeDaemon::answering(method::ADD_FLOWS, json!({"count": 2}));
    let o = d.run_with_stdin(&["add-flows", "-"], FLOW_FILE);
    assert_exit(&o, 0);
    let (_, params) = d.only_request();
    assert_eq!(params["flows"].as_array().unwrap().len(), 2);
}

#[test]
fn add_flows_error_names_the_file_line() {
    let dir = TempDir::new();
    let file = dir.path().join("flows.txt");
    std::fs::write(&file, FLOW_FILE).unwrap();
    let message =
        "unknown action `dorp`\ntable=1,priority=0,actions=dorp\n                           ^";
    let d = FakeDaemon::always(Reply::Error(refusal(message, Some(json!({"index": 1})))));
    let path = file.to_str().unwrap();
    let o = d.run(&["add-flows", path]);
    assert_exit(&o, 1);
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), format!("vswitchctl: {path}:5: {message}\n"));

    let o = d.run_with_stdin(&["add-flows", "-"], FLOW_FILE);
    assert_exit(&o, 1);
    assert!(stderr(&o).starts_with("vswitchctl: <stdin>:5: unknown action"));
}

#[test]
fn add_flows_with_an_unreadable_file_is_a_usage_error() {
    let dir = TempDir::new();
    let missing = dir.path().join("nope.txt");
    let o = run(&[
        "--socket",
        "/nonexistent/sock",
        "add-flows",
        missing.to_str().unwrap(),
    ]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("nope.txt"), "{}", stderr(&o));
}

#[test]
fn mod_flows_and_del_flows_pass_strict() {
    let d = FakeDaemon::answering(method::MOD_FLOWS, json!({"count": 1}));
    assert_exit(
        &d.run(&["mod-flows", "--strict", "priority=5,ip,actions=drop"]),
        0,
    );
    assert_eq!(
        d.only_request(),
        (
            "mod-flows".into(),
            json!({"flows": ["priority=5,ip,actions=drop"], "strict": true})
        )
    );

    let d = FakeDaemon::answering(method::DEL_FLOWS, json!({"count": 3}));
    assert_exit(&d.run(&["del-flows", "--strict", "priority=5,ip"]), 0);
    assert_eq!(
        d.only_request(),
        (
            "del-flows".into(),
            json!({"criteria": "priority=5,ip", "strict": true})
        )
    );

    let d = FakeDaemon::answering(method::DEL_FLOWS, json!({"count": 30}));
    assert_exit(&d.run(&["del-flows"]), 0);
    assert_eq!(
        d.only_request(),
        (
            "del-flows".into(),
            json!({"criteria": null, "strict": false})
        )
    );
}

#[test]
fn dump_flows_prints_each_line_with_a_leading_space() {
    let d = FakeDaemon::answering(
        method::DUMP_FLOWS,
        json!([
            flow(
                "cookie=0x0, duration=1.216s, table=0, n_packets=3, n_bytes=180, priority=100,ip actions=drop"
            ),
            flow(
                "cookie=0x0, duration=1.216s, table=0, n_packets=0, n_bytes=0, priority=0 actions=NORMAL"
            ),
        ]),
    );
    let o = d.run(&["dump-flows", "table=0"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        (
            "dump-flows".into(),
            json!({"criteria": "table=0", "strict": false})
        )
    );
    assert_eq!(
        stdout(&o),
        " cookie=0x0, duration=1.216s, table=0, n_packets=3, n_bytes=180, priority=100,ip actions=drop\n \
         cookie=0x0, duration=1.216s, table=0, n_packets=0, n_bytes=0, priority=0 actions=NORMAL\n"
    );
}

#[test]
fn groups_add_del_dump() {
    let d = FakeDaemon::answering(method::ADD_GROUPS, json!({"count": 1}));
    let group = "group_id=1,type=select,bucket=output:1,bucket=output:2";
    assert_exit(&d.run(&["add-group", group]), 0);
    assert_eq!(
        d.only_request(),
        ("add-groups".into(), json!({"groups": [group]}))
    );

    for (args, expected) in [
        (&["del-groups", "7"][..], json!({"group_id": 7})),
        (&["del-groups", "group_id=7"][..], json!({"group_id": 7})),
        (&["del-groups"][..], json!({"group_id": null})),
    ] {
        let d = FakeDaemon::answering(method::DEL_GROUPS, json!({"count": 1}));
        assert_exit(&d.run(args), 0);
        assert_eq!(d.only_request(), ("del-groups".into(), expected));
    }

    let d = FakeDaemon::answering(
        method::DUMP_GROUPS,
        json!([{"group_id": 1, "packets": 5, "bytes": 300, "line": group}]),
    );
    let o = d.run(&["dump-groups"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!(" {group}\n"));
}

#[test]
fn trace_prints_the_daemons_text() {
    let text = "Flow: in_port=1,tcp\n\n0. Classifier, priority 100\n    goto_table:1\n\nMegaflow: recirc_id=0,in_port=1\nDatapath actions: drop";
    let d = FakeDaemon::answering(
        method::TRACE,
        json!({"tables": [{"table": 0, "name": "Classifier", "rule": "priority=100 actions=goto_table:1", "depth": 0}],
               "megaflow": "recirc_id=0,in_port=1", "actions": "drop", "text": text}),
    );
    let o = d.run(&["trace", "in_port=1,tcp"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("trace".into(), json!({"flow": "in_port=1,tcp"}))
    );
    assert_eq!(stdout(&o), format!("{text}\n"));
}

#[test]
fn dump_cache_prints_tables_per_worker() {
    let d = FakeDaemon::answering(
        method::DUMP_CACHE,
        json!({"workers": [
            {"worker": 0,
             "emc": [{"key": "in_port=1,ip,nw_dst=10.0.0.2", "hits": 41, "megaflow": "ip,nw_dst=10.0.0.2"}],
             "megaflows": [{"match": "ip,nw_dst=10.0.0.2", "actions": "2", "packets": 42,
                            "bytes": 4200, "idle_ms": 1250}]},
            {"worker": 1, "emc": [], "megaflows": []}
        ]}),
    );
    let o = d.run(&["dump-cache"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
worker 0:
  exact-match cache: 1 entries
    KEY                           HITS  MEGAFLOW
    in_port=1,ip,nw_dst=10.0.0.2    41  ip,nw_dst=10.0.0.2
  megaflows: 1
    MATCH               ACTIONS  PACKETS  BYTES    IDLE
    ip,nw_dst=10.0.0.2  2             42   4200  1.250s

worker 1:
  exact-match cache: 0 entries
  megaflows: 0
"
    );
}

#[test]
fn reopen_logs_sends_no_params() {
    let d = FakeDaemon::answering(method::REOPEN_LOGS, Value::Null);
    let o = d.run(&["reopen-logs"]);
    assert_exit(&o, 0);
    assert_eq!(d.only_request(), ("reopen-logs".into(), Value::Null));
    assert_eq!(stdout(&o), "");
}

// ---- refusals and broken daemons ----

#[test]
fn refusal_exits_1_with_the_message_as_is() {
    let message = "unknown field `nw_dts`\npriority=5,ip,nw_dts=10.0.0.1\n              ^";
    let d = FakeDaemon::always(Reply::Error(refusal(message, Some(json!({"index": 0})))));
    let o = d.run(&["add-flow", "priority=5,ip,nw_dts=10.0.0.1"]);
    assert_exit(&o, 1);
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), format!("vswitchctl: {message}\n"));

    let d = FakeDaemon::always(Reply::Error(RpcError::new(
        code::NOT_FOUND,
        "no port named pod-z",
    )));
    let o = d.run(&["del-port", "pod-z"]);
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), "vswitchctl: no port named pod-z\n");
}

#[test]
fn unreadable_replies_exit_1() {
    for raw in [
        "this is not json\n",
        "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}\n",
        "{\"jsonrpc\":\"2.0\",\"id\":1}\n",
        "[]\n",
    ] {
        let d = FakeDaemon::always(Reply::Raw(raw.into()));
        let o = d.run(&["del-port", "x"]);
        assert_exit(&o, 1);
        assert!(
            stderr(&o).starts_with("vswitchctl: vswitchd answered something unreadable"),
            "{raw}: {}",
            stderr(&o)
        );
    }
    // A well-formed reply whose result is not what `show` returns.
    let d = FakeDaemon::answering(method::SHOW, json!({"bridge": 5}));
    let o = d.run(&["show"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("unreadable"), "{}", stderr(&o));
}

#[test]
fn closed_without_reply_exits_3() {
    for reply in [Reply::Close, Reply::Cut("{\"jsonrpc\":\"2.0\",".into())] {
        let d = FakeDaemon::always(reply);
        let o = d.run(&["--timeout", "5", "show"]);
        assert_exit(&o, 3);
        assert!(
            stderr(&o).contains(d.socket().to_str().unwrap()),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn silent_daemon_times_out_with_exit_3() {
    let d = FakeDaemon::always(Reply::Silent);
    let start = Instant::now();
    let o = d.run(&["--timeout", "0.3", "show"]);
    assert_exit(&o, 3);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        stderr(&o).contains("did not answer within 0.3s"),
        "{}",
        stderr(&o)
    );
}

// ---- unreachable ----

#[test]
fn missing_socket_exits_3_naming_it() {
    let dir = TempDir::new();
    let path = dir.path().join("vswitchd.sock");
    let o = run(&["--socket", path.to_str().unwrap(), "show"]);
    assert_exit(&o, 3);
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "vswitchctl: cannot reach vswitchd at {}: ",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("Is vswitchd running?"), "{err}");
    assert!(err.contains("VSWITCH_SOCKET"), "{err}");
}

#[test]
fn socket_nobody_listens_on_exits_3() {
    let dir = TempDir::new();
    let path = dir.path().join("vswitchd.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let o = run(&["--socket", path.to_str().unwrap(), "dump-flows"]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains(path.to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
}

#[test]
fn default_socket_is_named_when_unreachable() {
    let o = run(&["version"]);
    if o.status.code() == Some(3) {
        assert!(stderr(&o).contains("/run/vswitch/vswitchd.sock"));
        // The client's own version is printed before asking the daemon.
        assert!(stdout(&o).starts_with("vswitchctl "));
    }
}

#[test]
fn socket_from_the_environment() {
    let d = FakeDaemon::answering(method::LIST_PORTS, json!([]));
    let mut cmd = vswitchctl();
    cmd.env("VSWITCH_SOCKET", d.socket());
    let o = run_with_stdin(cmd, &["list-ports"], "");
    assert_exit(&o, 0);
    assert_eq!(d.only_request().0, "list-ports");

    // --socket wins over the environment.
    let mut cmd = vswitchctl();
    cmd.env("VSWITCH_SOCKET", "/nonexistent/vswitchd.sock");
    let socket = d.socket().to_str().unwrap();
    let o = run_with_stdin(cmd, &["--socket", socket, "list-ports"], "");
    assert_exit(&o, 0);
}

// ---- usage ----

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &[][..],
        &["add-port", "--type", "tap"][..],
        &["add-port", "p1", "--type", "veth"][..],
        &["add-port", "p1"][..],
        &["add-port", "p1", "--type", "tap", "--mtu", "big"][..],
        &["add-port", "p1", "--type", "tap", "--mac", "zz"][..],
        &["add-port", "p1", "--type", "tap", "--ip", "10.0.0.1"][..],
        &["del-port"][..],
        &["add-flow"][..],
        &["del-groups", "group_id=x"][..],
        &["--timeout", "soon", "show"][..],
        &["completion", "tcsh"][..],
        &["add-node", "w1", "--pod-cidr", "10.244.1.0/24"][..],
        &[
            "add-node",
            "W1",
            "--pod-cidr",
            "10.244.1.0/24",
            "--node-ip",
            "10.0.0.1",
        ][..],
        &[
            "add-node",
            "w1",
            "--pod-cidr",
            "10.244.1.9/24",
            "--node-ip",
            "10.0.0.1",
        ][..],
        &[
            "add-node",
            "w1",
            "--pod-cidr",
            "10.244.1.0/24",
            "--node-ip",
            "fd00::1",
        ][..],
        &["del-node"][..],
        &["get", "pods", "-A", "web"][..],
        &["get", "pods", "-o", "table"][..],
        &["apply"][..],
        &["apply", "nodes.yaml"][..],
        &["delete", "-f"][..],
        &["apply", "-f", "/nonexistent/nodes.yaml"][..],
        &["apply", "-f", "-", "-f", "-"][..],
    ] {
        // A daemon that would answer anything: usage errors never reach it.
        let d = FakeDaemon::always(Reply::Result(json!({})));
        let o = d.run(args);
        assert_exit(&o, 2);
        assert!(!stderr(&o).is_empty(), "{args:?}");
        assert!(d.requests().is_empty(), "{args:?}");
    }
}

#[test]
fn completion_works_without_a_daemon() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["--socket", "/nonexistent/sock", "completion", shell]);
        assert_exit(&o, 0);
        let script = stdout(&o);
        assert!(script.contains("vswitchctl"), "{shell}");
        assert!(script.contains("dump-flows"), "{shell}");
        for cmd in [
            "add-node",
            "del-node",
            "list-nodes",
            "apply",
            "delete",
            "get",
            "dump-group-stats",
        ] {
            assert!(script.contains(cmd), "{shell}: {cmd}");
        }
    }
}

#[test]
fn help_and_version_flags() {
    let o = run(&["--help"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("add-flows"));
    assert!(stdout(&o).contains("VSWITCH_SOCKET"));
    let o = run(&["--version"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        format!("vswitchctl {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_whole_reply_without_its_newline_is_accepted() {
    let d = FakeDaemon::always(Reply::Cut(
        r#"{"jsonrpc":"2.0","id":1,"result":{"count":1}}"#.into(),
    ));
    let o = d.run(&["--timeout", "5", "del-port", "p1"]);
    assert_exit(&o, 0);
}

// ---- nodes and Kubernetes manifests ----

fn node_info() -> Value {
    json!({"name": "worker-1", "pod_cidr": "10.244.1.0/24", "node_ip": "192.168.56.11",
           "gateway": "10.244.1.1", "local": true, "source": "flags"})
}

#[test]
fn add_node_and_del_node() {
    let added = json!({"name": "worker-2", "pod_cidr": "10.244.2.0/24",
                       "node_ip": "192.168.56.12", "gateway": "10.244.2.1", "local": false,
                       "source": "vswitchctl"});
    let d = FakeDaemon::answering(method::ADD_NODE, added.clone());
    let o = d.run(&[
        "add-node",
        "worker-2",
        "--pod-cidr",
        "10.244.2.0/24",
        "--node-ip",
        "192.168.56.12",
    ]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        d.only_request(),
        (
            "add-node".into(),
            json!({"name": "worker-2", "pod_cidr": "10.244.2.0/24", "node_ip": "192.168.56.12"})
        )
    );

    let d = FakeDaemon::answering(method::DEL_NODE, Value::Null);
    let o = d.run(&["del-node", "worker-2"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request(),
        ("del-node".into(), json!({"name": "worker-2"}))
    );

    let d = FakeDaemon::always(Reply::Error(RpcError::new(
        code::NOT_FOUND,
        "no node named worker-9",
    )));
    let o = d.run(&["del-node", "worker-9"]);
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), "vswitchctl: no node named worker-9\n");
}

#[test]
fn list_nodes_and_get_nodes_are_tables() {
    let nodes = json!([node_info(),
        {"name": "worker-2", "pod_cidr": "10.244.2.0/24", "node_ip": "192.168.56.12",
         "gateway": "10.244.2.1", "local": false, "source": "manifest"}]);
    let d = FakeDaemon::answering(method::LIST_NODES, nodes.clone());
    let o = d.run(&["list-nodes"]);
    assert_exit(&o, 0);
    assert_eq!(d.only_request(), ("list-nodes".into(), Value::Null));
    assert_eq!(
        stdout(&o),
        "\
NAME      POD-CIDR       NODE-IP        GATEWAY     LOCAL  SOURCE
worker-1  10.244.1.0/24  192.168.56.11  10.244.1.1  yes    flags
worker-2  10.244.2.0/24  192.168.56.12  10.244.2.1  no     manifest
"
    );
    for alias in ["nodes", "node", "no"] {
        let d = get_daemon();
        let o = d.run(&["get", alias]);
        assert_exit(&o, 0);
        // The resource goes as typed: the switch resolves it.
        assert_eq!(
            d.only_request(),
            (
                "get".into(),
                json!({"resource": alias, "all_namespaces": false})
            )
        );
        assert_eq!(
            stdout(&o),
            "\
NAME      POD-CIDR       INTERNAL-IP    SOURCE
worker-1  10.244.1.0/24  192.168.56.11  flags
worker-2  10.244.2.0/24  192.168.56.12  manifest
"
        );
        assert_eq!(stderr(&o), "");
    }
}

const NODES_YAML: &str = "\
# two nodes and a Service
apiVersion: v1
kind: Node
metadata:
  name: worker-2
spec:
  podCIDR: 10.244.2.0/24
status:
  addresses:
  - type: InternalIP
    address: 192.168.56.12
---
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Node
metadata: {name: bad}
spec: {podCIDR: 10.244.3.1/24}
";

/// A daemon that answers `apply` and `delete` as the switch would: Nodes named `bad` are
/// refused, other Nodes created (or deleted), other kinds skipped.
fn manifest_daemon() -> FakeDaemon {
    FakeDaemon::start(|req| {
        if req.method != method::APPLY && req.method != method::DELETE {
            return Reply::Error(RpcError::new(code::METHOD_NOT_FOUND, "no such method"));
        }
        let results: Vec<Value> = req.params["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let kind = o["object"]["kind"].as_str().unwrap_or_default();
                let name = o["object"]["metadata"]["name"].as_str().unwrap_or_default();
                let (outcome, message) = match (kind, name) {
                    ("Node", "bad") => (
                        "error",
                        Some("spec.podCIDR: host bits are set: \"10.244.3.1/24\""),
                    ),
                    ("Node", _) if req.method == method::DELETE => ("deleted", None),
                    ("Node", _) => ("created", None),
                    _ => ("skipped", Some("kind Service is not handled yet")),
                };
                json!({"source": o["source"], "doc": o["doc"], "kind": kind, "name": name,
                       "outcome": outcome, "message": message})
            })
            .collect();
        Reply::Result(json!({ "results": results }))
    })
}

#[test]
fn apply_sends_every_object_and_reports_each() {
    let dir = TempDir::new();
    let file = dir.path().join("nodes.yaml");
    std::fs::write(&file, NODES_YAML).unwrap();
    let path = file.to_str().unwrap();
    let d = manifest_daemon();
    let stdin_node = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-4"},
        "spec": {"podCIDR": "10.244.4.0/24"},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.14"}]}}"#;
    let o = d.run_with_stdin(&["apply", "-f", path, "-f", "-"], stdin_node);
    assert_exit(&o, 1);
    let (m, params) = d.only_request();
    assert_eq!(m, "apply");
    let objects = params["objects"].as_array().unwrap();
    let where_: Vec<(&str, u64, &str)> = objects
        .iter()
        .map(|o| {
            (
                o["source"].as_str().unwrap(),
                o["doc"].as_u64().unwrap(),
                o["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        where_,
        [
            (path, 1, "worker-2"),
            (path, 3, "web"),
            (path, 4, "bad"),
            ("-", 1, "worker-4")
        ]
    );
    assert_eq!(
        objects[0]["object"],
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-2"},
               "spec": {"podCIDR": "10.244.2.0/24"},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.12"}]}})
    );
    assert_eq!(
        stdout(&o),
        "node/worker-2 created\nservice/web skipped: kind Service is not handled yet\n\
         node/worker-4 created\n"
    );
    assert_eq!(
        stderr(&o),
        format!(
            "error: {path}: document 4: node/bad: spec.podCIDR: host bits are set: \
             \"10.244.3.1/24\"\n"
        )
    );
}

#[test]
fn apply_and_delete_without_errors_exit_0() {
    let d = manifest_daemon();
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: worker-2}\n";
    let o = d.run_with_stdin(&["apply", "-f", "-"], node);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "node/worker-2 created\n");
    assert_eq!(stderr(&o), "");

    let d = manifest_daemon();
    let o = d.run_with_stdin(&["delete", "-f", "-"], node);
    assert_exit(&o, 0);
    assert_eq!(d.only_request().0, "delete");
    assert_eq!(stdout(&o), "node/worker-2 deleted\n");
}

#[test]
fn apply_json_prints_the_result_and_still_reports_errors() {
    let d = manifest_daemon();
    let o = d.run_with_stdin(&["--json", "apply", "-f", "-"], NODES_YAML);
    assert_exit(&o, 1);
    let printed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let outcomes: Vec<&str> = printed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["created", "skipped", "error"]);
    assert!(
        stderr(&o).starts_with("error: <stdin>: document 4: node/bad: spec.podCIDR"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn apply_reads_a_directory_in_name_order() {
    let dir = TempDir::new();
    let node = |n: &str| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n");
    std::fs::write(dir.path().join("b.yaml"), node("from-b")).unwrap();
    std::fs::write(dir.path().join("a.json"), node("from-a")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let d = manifest_daemon();
    let o = d.run(&["apply", "-f", dir.path().to_str().unwrap()]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "node/from-a created\nnode/from-b created\n");
}

#[test]
fn a_manifest_that_does_not_load_sends_nothing() {
    let dir = TempDir::new();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, NODES_YAML).unwrap();
    let good = good.to_str().unwrap();
    for (stdin, expected) in [
        (
            "apiVersion: v1\nkind: Node\n---\napiVersion: v1\nmetadata: {name: x}\n",
            "vswitchctl: <stdin>: document 2: kind: missing\n",
        ),
        (
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n name: b\n",
            "vswitchctl: <stdin>: document 1: line 5, column 2: while parsing a block mapping, \
             did not find expected key\n",
        ),
    ] {
        let d = manifest_daemon();
        let o = d.run_with_stdin(&["apply", "-f", good, "-f", "-"], stdin);
        assert_exit(&o, 1);
        assert_eq!(stderr(&o), expected, "{stdin:?}");
        assert_eq!(stdout(&o), "");
        assert!(d.requests().is_empty());
    }
    let d = manifest_daemon();
    let o = d.run_with_stdin(&["apply", "-f", "-"], "# nothing\n---\n");
    assert_exit(&o, 1);
    assert_eq!(
        stderr(&o),
        "vswitchctl: no objects in <stdin> (only empty documents)\n"
    );
    assert!(d.requests().is_empty());

    let bad = dir.path().join("latin1.yaml");
    std::fs::write(&bad, b"kind: N\xf6de\n").unwrap();
    let d = manifest_daemon();
    let o = d.run(&["delete", "-f", bad.to_str().unwrap()]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
    assert!(d.requests().is_empty());
}

#[test]
fn a_daemon_without_apply_is_a_refusal() {
    let d = FakeDaemon::answering(method::SHOW, json!({}));
    let o = d.run_with_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n",
    );
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), "vswitchctl: no such method\n");
}

// ---- get ----

fn node_object(name: &str, cidr: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
           "status": {"addresses": [{"address": ip, "type": "InternalIP"}]}})
}

/// `get nodes` as the switch answers it; only worker-1 when `one`.
fn nodes_result(one: bool) -> Value {
    let mut items = vec![
        json!({"name": "worker-1",
               "cells": ["worker-1", "10.244.1.0/24", "192.168.56.11", "flags", "10.244.1.1", "yes"],
               "object": node_object("worker-1", "10.244.1.0/24", "192.168.56.11")}),
        json!({"name": "worker-2",
               "cells": ["worker-2", "10.244.2.0/24", "192.168.56.12", "manifest", "10.244.2.1", "no"],
               "object": node_object("worker-2", "10.244.2.0/24", "192.168.56.12")}),
    ];
    if one {
        items.truncate(1);
    }
    json!({
        "kind": "Node", "api_version": "v1", "resource": "nodes", "namespaced": false,
        "columns": [{"name": "NAME"}, {"name": "POD-CIDR"}, {"name": "INTERNAL-IP"},
                    {"name": "SOURCE"}, {"name": "GATEWAY", "wide": true},
                    {"name": "LOCAL", "wide": true}],
        "items": items
    })
}

fn slice(namespace: &str, name: &str, service: &str, address: &str) -> Value {
    json!({
        "namespace": namespace, "name": name,
        "cells": [name, "IPv4", "80", address, service],
        "object": {
            "addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
            "metadata": {"labels": {"kubernetes.io/service-name": service},
                         "name": name, "namespace": namespace},
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}]
        }
    })
}

/// A switch holding two Nodes and two EndpointSlices (in `default` and `kube-system`),
/// answering `get` as the daemon does: kinds by any of their names, a namespace, a name.
fn get_daemon() -> FakeDaemon {
    FakeDaemon::start(|req| {
        if req.method != method::GET {
            return Reply::Error(RpcError::new(code::METHOD_NOT_FOUND, "no such method"));
        }
        let p = &req.params;
        let resource = p["resource"].as_str().unwrap_or_default();
        let name = p["name"].as_str();
        let mut result = match resource {
            "nodes" | "node" | "no" | "Node" => nodes_result(false),
            "endpointslices" | "endpointslice" | "endpointslices.discovery.k8s.io" => json!({
                "kind": "EndpointSlice", "api_version": "discovery.k8s.io/v1",
                "resource": "endpointslices", "namespaced": true,
                "columns": [{"name": "NAME"}, {"name": "ADDRESSTYPE"}, {"name": "PORTS"},
                            {"name": "ENDPOINTS"}, {"name": "SERVICE", "wide": true}],
                "items": [slice("default", "web-abc", "web", "10.244.1.5"),
                          slice("kube-system", "dns-x", "kube-dns", "10.244.2.9")]
            }),
            other => {
                return Reply::Error(RpcError::new(
                    code::NOT_FOUND,
                    format!("the server doesn't have a resource type \"{other}\""),
                ));
            }
        };
        let namespaced = result["namespaced"].as_bool().unwrap();
        let namespace = p["namespace"].as_str().unwrap_or("default");
        let all = p["all_namespaces"].as_bool().unwrap_or(false);
        let plural = result["resource"].as_str().unwrap().to_string();
        let items = result["items"].as_array_mut().unwrap();
        items.retain(|i| {
            (!namespaced || all || i["namespace"] == namespace)
                && name.is_none_or(|n| i["name"] == n)
        });
        if let (Some(n), true) = (name, items.is_empty()) {
            return Reply::Error(RpcError::new(
                code::NOT_FOUND,
                format!("{plural} \"{n}\" not found"),
            ));
        }
        Reply::Result(result)
    })
}

#[test]
fn get_wide_shows_every_column() {
    let d = get_daemon();
    let o = d.run(&["get", "nodes", "-o", "wide"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
NAME      POD-CIDR       INTERNAL-IP    SOURCE    GATEWAY     LOCAL
worker-1  10.244.1.0/24  192.168.56.11  flags     10.244.1.1  yes
worker-2  10.244.2.0/24  192.168.56.12  manifest  10.244.2.1  no
"
    );
    let o = d.run(&["get", "node", "worker-2"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.requests()[1].params,
        json!({"resource": "node", "name": "worker-2", "all_namespaces": false})
    );
    assert_eq!(
        stdout(&o),
        "\
NAME      POD-CIDR       INTERNAL-IP    SOURCE
worker-2  10.244.2.0/24  192.168.56.12  manifest
"
    );
}

#[test]
fn get_namespaced_kinds_by_namespace_or_across_them() {
    let d = get_daemon();
    let o = d.run(&["get", "endpointslices"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
NAME     ADDRESSTYPE  PORTS  ENDPOINTS
web-abc  IPv4         80     10.244.1.5
"
    );
    let o = d.run(&["get", "endpointslices", "-n", "kube-system", "-o", "wide"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.requests()[1].params,
        json!({"resource": "endpointslices", "namespace": "kube-system",
               "all_namespaces": false})
    );
    assert_eq!(
        stdout(&o),
        "\
NAME   ADDRESSTYPE  PORTS  ENDPOINTS   SERVICE
dns-x  IPv4         80     10.244.2.9  kube-dns
"
    );
    for all in ["-A", "--all-namespaces"] {
        let o = d.run(&["get", "endpointslices.discovery.k8s.io", all]);
        assert_exit(&o, 0);
        assert_eq!(
            d.requests().last().unwrap().params,
            json!({"resource": "endpointslices.discovery.k8s.io", "all_namespaces": true})
        );
        assert_eq!(
            stdout(&o),
            "\
NAMESPACE    NAME     ADDRESSTYPE  PORTS  ENDPOINTS
default      web-abc  IPv4         80     10.244.1.5
kube-system  dns-x    IPv4         80     10.244.2.9
"
        );
    }
    // A cluster-scoped kind gets no NAMESPACE column.
    let o = d.run(&["get", "nodes", "-A"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("NAME "), "{}", stdout(&o));
}

#[test]
fn get_nothing_says_so_on_stderr_and_exits_0() {
    let d = get_daemon();
    let o = d.run(&["get", "endpointslices", "-n", "empty"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "No resources found in empty namespace.\n");

    let mut none = nodes_result(false);
    none["items"] = json!([]);
    let d = FakeDaemon::answering(method::GET, none.clone());
    let o = d.run(&["get", "nodes", "-o", "wide"]);
    assert_exit(&o, 0);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("", "No resources found\n")
    );

    none["namespaced"] = json!(true);
    let d = FakeDaemon::answering(method::GET, none.clone());
    let o = d.run(&["get", "pods"]);
    assert_eq!(stderr(&o), "No resources found in default namespace.\n");
    let o = d.run(&["get", "pods", "-A"]);
    assert_eq!(stderr(&o), "No resources found\n");
    // -o name prints no names; -o json an empty List.
    let o = d.run(&["get", "pods", "-o", "name"]);
    assert_exit(&o, 0);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", ""));
    let o = d.run(&["get", "pods", "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "{\n    \"apiVersion\": \"v1\",\n    \"items\": [],\n    \"kind\": \"List\",\n    \
         \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n"
    );
}

#[test]
fn get_json_is_the_object_or_a_list_indented_by_four() {
    let d = get_daemon();
    let o = d.run(&["get", "node", "worker-1", "-o", "json"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        r#"{
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "worker-1"
    },
    "spec": {
        "podCIDR": "10.244.1.0/24",
        "podCIDRs": [
            "10.244.1.0/24"
        ]
    },
    "status": {
        "addresses": [
            {
                "address": "192.168.56.11",
                "type": "InternalIP"
            }
        ]
    }
}
"#
    );
    let o = d.run(&["get", "nodes", "-o", "json"]);
    assert_exit(&o, 0);
    let printed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        printed,
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
               "items": [node_object("worker-1", "10.244.1.0/24", "192.168.56.11"),
                         node_object("worker-2", "10.244.2.0/24", "192.168.56.12")]})
    );
    assert!(
        stdout(&o).starts_with("{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n        {\n")
    );
}

#[test]
fn get_yaml_is_the_object_or_a_list() {
    let d = get_daemon();
    let o = d.run(&["get", "endpointslice", "web-abc", "-o", "yaml"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - 10.244.1.5
  conditions:
    ready: true
kind: EndpointSlice
metadata:
  labels:
    kubernetes.io/service-name: web
  name: web-abc
  namespace: default
ports:
- name: \"\"
  port: 80
  protocol: TCP
"
    );
    let o = d.run(&["get", "nodes", "-o", "yaml"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "\
apiVersion: v1
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: worker-1
  spec:
    podCIDR: 10.244.1.0/24
    podCIDRs:
    - 10.244.1.0/24
  status:
    addresses:
    - address: 192.168.56.11
      type: InternalIP
- apiVersion: v1
  kind: Node
  metadata:
    name: worker-2
  spec:
    podCIDR: 10.244.2.0/24
    podCIDRs:
    - 10.244.2.0/24
  status:
    addresses:
    - address: 192.168.56.12
      type: InternalIP
kind: List
metadata:
  resourceVersion: \"\"
"
    );
    // What -o yaml prints, apply -f reads back.
    let objects = vswitch_proto::k8s::load_documents("-", &stdout(&o)).unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(
        objects[1].object,
        node_object("worker-2", "10.244.2.0/24", "192.168.56.12")
    );
}

#[test]
fn get_name_prints_kind_group_and_name() {
    let d = get_daemon();
    let o = d.run(&["get", "no", "-o", "name"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), "node/worker-1\nnode/worker-2\n");
    let o = d.run(&["get", "endpointslices", "-A", "-o", "name"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "endpointslice.discovery.k8s.io/web-abc\nendpointslice.discovery.k8s.io/dns-x\n"
    );
}

#[test]
fn get_missing_objects_and_unknown_kinds_exit_1_as_kubectl_says() {
    let d = get_daemon();
    let o = d.run(&["get", "nodes", "worker-9"]);
    assert_exit(&o, 1);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "Error from server (NotFound): nodes \"worker-9\" not found\n"
    );
    let o = d.run(&[
        "get",
        "endpointslice",
        "web-abc",
        "-n",
        "kube-system",
        "-o",
        "yaml",
    ]);
    assert_exit(&o, 1);
    assert_eq!(
        stderr(&o),
        "Error from server (NotFound): endpointslices \"web-abc\" not found\n"
    );
    let o = d.run(&["get", "foo"]);
    assert_exit(&o, 1);
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: the server doesn't have a resource type \"foo\"\n"
    );
    // A daemon from before `get`: its refusal, as for any command.
    let d = FakeDaemon::answering(method::LIST_NODES, json!([]));
    let o = d.run(&["get", "nodes"]);
    assert_exit(&o, 1);
    assert_eq!(stderr(&o), "vswitchctl: no such method\n");
}

// ---- names of objects: apply outcomes, owners of flows and groups ----

#[test]
fn apply_names_objects_with_their_api_group() {
    let d = FakeDaemon::answering(
        method::APPLY,
        json!({"results": [
            {"source": "-", "doc": 1, "kind": "Node", "name": "n1", "outcome": "created"},
            {"source": "-", "doc": 2, "kind": "EndpointSlice", "group": "discovery.k8s.io",
             "namespace": "default", "name": "web-abc", "outcome": "configured"},
            {"source": "-", "doc": 3, "kind": "EndpointSlice", "group": "discovery.k8s.io",
             "namespace": "default", "name": "bad", "outcome": "error",
             "message": "endpoints: not a list"}
        ]}),
    );
    let o = d.run_with_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    );
    assert_exit(&o, 1);
    assert_eq!(
        stdout(&o),
        "node/n1 created\nendpointslice.discovery.k8s.io/web-abc configured\n"
    );
    assert_eq!(
        stderr(&o),
        "error: <stdin>: document 3: endpointslice.discovery.k8s.io/bad: endpoints: not a list\n"
    );
}

#[test]
fn dump_flows_names_shows_owners_after_the_cookie() {
    let mut owned = flow(
        "cookie=0x300000000000001, duration=2s, table=7, n_packets=0, n_bytes=0, \
         priority=200,ip,nw_dst=10.244.2.0/24 actions=output:vsw-tun0",
    );
    owned["owners"] = json!(["node/n1"]);
    let mut shared = flow(
        "cookie=0x1, duration=2s, table=2, n_packets=0, n_bytes=0, priority=1,arp actions=drop",
    );
    shared["owners"] = json!(["switch/node", "pod/default/web"]);
    let user =
        flow("cookie=0x0, duration=1s, table=100, n_packets=0, n_bytes=0, priority=0 actions=drop");
    let d = FakeDaemon::answering(method::DUMP_FLOWS, json!([owned, shared, user]));
    let o = d.run(&["dump-flows", "--names"]);
    assert_exit(&o, 0);
    assert_eq!(
        d.only_request().1,
        json!({"criteria": null, "strict": false})
    );
    assert_eq!(
        stdout(&o),
        " cookie=0x300000000000001 (node/n1), duration=2s, table=7, n_packets=0, n_bytes=0, \
         priority=200,ip,nw_dst=10.244.2.0/24 actions=output:vsw-tun0\n \
         cookie=0x1 (switch/node, pod/default/web), duration=2s, table=2, n_packets=0, \
         n_bytes=0, priority=1,arp actions=drop\n \
         cookie=0x0, duration=1s, table=100, n_packets=0, n_bytes=0, priority=0 actions=drop\n"
    );
    // Without --names, lines stay what add-flow reads.
    let o = d.run(&["dump-flows"]);
    assert!(!stdout(&o).contains('('), "{}", stdout(&o));
}

#[test]
fn dump_groups_names_and_dump_group_stats() {
    let groups = json!([
        {"group_id": 1, "packets": 5, "bytes": 300,
         "line": "group_id=1,type=select,bucket=bucket_id:0,actions=output:1,bucket=bucket_id:7,actions=output:2",
         "buckets": [{"bucket_id": 0, "packets": 3, "bytes": 180},
                     {"bucket_id": 7, "packets": 2, "bytes": 120}],
         "owners": ["service/default/web"]},
        {"group_id": 2, "packets": 0, "bytes": 0, "line": "group_id=2,type=all"}
    ]);
    let d = FakeDaemon::answering(method::DUMP_GROUPS, groups);
    let o = d.run(&["dump-groups", "--names"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        " group_id=1 (service/default/web),type=select,bucket=bucket_id:0,actions=output:1,\
         bucket=bucket_id:7,actions=output:2\n group_id=2,type=all\n"
    );
    let o = d.run(&["dump-group-stats"]);
    assert_exit(&o, 0);
    assert_eq!(d.requests().last().unwrap().method, "dump-groups");
    assert_eq!(
        stdout(&o),
        " group_id=1,packet_count=5,byte_count=300,bucket0:packet_count=3,byte_count=180,\
         bucket1:packet_count=2,byte_count=120\n group_id=2,packet_count=0,byte_count=0\n"
    );
}
