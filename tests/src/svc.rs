//! Services end to end: a server in a Pod that answers with its own address, and a
//! client that counts which endpoint answered each new connection to a Service address
//! (tests/tests/services.rs, tests/tests/overlay.rs).

use crate::e2e::{Bg, Daemon, Netns, show, unique};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A server answering every TCP connection on 8080 and every UDP datagram on 5353 with
/// its own address, for `secs` seconds.
pub fn server(ns: &Netns, ip: &str, secs: u32) -> Bg {
    let code = format!(
        r#"
import socket, threading
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080)); t.listen(512)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
def udp():
    while True:
        _, peer = u.recvfrom(100); u.sendto(b"{ip}", peer)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, _ = t.accept(); c.sendall(b"{ip}"); c.close()
"#
    );
    ns.spawn(&["timeout", &secs.to_string(), "python3", "-c", &code])
}

/// `n` new connections (TCP to port 80, or UDP datagrams to 53 from a new socket each)
/// to `vip` from `ns`: how many each endpoint answered, keyed by the answer, with
/// "peer=..." entries for any answer that came from another address than `vip`, and
/// "error=..." for exchanges that failed (each waits at most 2 s).
pub fn exchanges(ns: &Netns, vip: &str, proto: &str, n: u32) -> BTreeMap<String, u32> {
    let code = format!(
        r#"
import socket, collections, sys
got = collections.Counter()
for i in range({n}):
    try:
        if "{proto}" == "tcp":
            s = socket.create_connection(("{vip}", 80), timeout=2)
            peer = s.getpeername(); data = s.recv(100)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(b"?", ("{vip}", 53)); data, peer = s.recvfrom(100)
        s.close()
        got[data.decode()] += 1
        if peer[0] != "{vip}": got["peer=" + peer[0]] += 1
    except Exception as e:
        got["error=" + type(e).__name__] += 1
for k, v in sorted(got.items()): print(k, v)
"#
    );
    let out = ns.exec(&["timeout", "120", "python3", "-c", &code]);
    assert!(out.status.success(), "client: {}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A Pod by hand: a TAP made by `add-port --netns`, `eth0` in the Pod with `ip`/24 and
/// its default route via `gateway` (the switch's Pod network).
pub fn add_pod(d: &Daemon, name: &str, ns: &Netns, ip: &str, gateway: &str) {
    d.ctl_ok(&[
        "add-port",
        name,
        "--type",
        "tap",
        "--netns",
        &ns.path(),
        "--ifname",
        "eth0",
        "--ip",
        &format!("{ip}/24"),
        "--gateway",
        gateway,
    ]);
}

/// `vswitchctl apply -f` of `objects` as one `List` manifest.
pub fn apply(d: &Daemon, objects: &[Value]) {
    let f = d.dir().join(format!("{}.json", unique("m")));
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
    std::fs::write(&f, list.to_string()).unwrap();
    d.ctl_ok(&["apply", "-f", f.to_str().unwrap()]);
}
