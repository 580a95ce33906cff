//! Memory per tracked connection: commits N (default 1,000,000) TCP connections, each
//! through its handshake (SYN, SYN-ACK, ACK: established, both index items made), into a
//! tracker sized for them, and prints the process's resident memory before and after and
//! the table's own account of it. Run:
//! `cargo run --release -p vswitch-benches --example ct_memory [N]`.
//! Target (issue 11): 1,000,000 connections in under 256 MB.

/// The switch's own allocator, so that what is measured is what vswitchd runs.
#[global_allocator]
static GLOBAL: vswitch::sys::Allocator = vswitch::sys::Allocator {};
use vswitch::ct::{Config, Tracker};
use vswitch::dp::action::DpCt;
use vswitch::dp::conntrack::Conntrack;
use vswitch::dp::packet::Packet;
use vswitch::flow::{Layers, extract};
use vswitch_benches::frame;
use vswitch_proto::flow::Flow;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn ct(commit: bool) -> DpCt {
    DpCt {
        zone: 0xfff0,
        commit,
        force: false,
        nat: None,
        mark: None,
        label: None,
        alg: None,
        recirc: None,
    }
}

/// Track one TCP segment with `flags`, `seq` and `ack`; the state bits.
fn segment(
    w: &mut vswitch::ct::CtWorker,
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    seg: (u8, u32, u32),
    commit: bool,
) -> u16 {
    let mut f = frame(true, 64, from.0, to.0, from.1, to.1);
    let tcp = 14 + 20;
    f[tcp + 4..tcp + 8].copy_from_slice(&seg.1.to_be_bytes());
    f[tcp + 8..tcp + 12].copy_from_slice(&seg.2.to_be_bytes());
    f[tcp + 13] = seg.0;
    f[tcp + 14..tcp + 16].copy_from_slice(&64000u16.to_be_bytes());
    let mut pkt = Packet::from_frame(&f, 1);
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    extract(pkt.data(), &mut key, &mut layers).unwrap();
    w.track(&mut pkt, &layers, &key, &ct(commit), 1).state
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_kib();
    let (t, _) = Tracker::open(
        &Config {
            capacity: n,
            ..Config::default()
        },
        0,
    )
    .expect("tracker");
    let mut w = t.worker(1);
    let server = ([10, 96, 0, 10], 80);
    for i in 0..n {
        let client = (
            [10, 128 | (i >> 22) as u8, (i >> 14) as u8, (i >> 6) as u8],
            1024 + (i & 63) as u16,
        );
        segment(&mut w, client, server, (0x02, 100, 0), true);
        segment(&mut w, server, client, (0x12, 500, 101), false);
        let st = segment(&mut w, client, server, (0x10, 101, 501), false);
        assert_eq!(st & 0x02, 0x02, "connection {i} established");
    }
    let after = rss_kib();
    let (entries, index) = t.memory();
    let stats = t.stats();
    t.check().expect("table invariants");
    let grown = (after - before) * 1024;
    println!("connections: {n} (in table: {})", stats.connections);
    println!(
        "resident memory: {:.1} MB before, {:.1} MB after: {:.1} MB for the connections, {} bytes each",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        grown as f64 / 1048576.0,
        grown / n as u64
    );
    println!(
        "the table's account: entries {:.1} MB ({} bytes each), index {:.1} MB; total {:.1} MB",
        entries as f64 / 1048576.0,
        entries / n as usize,
        index as f64 / 1048576.0,
        (entries + index) as f64 / 1048576.0
    );
}
