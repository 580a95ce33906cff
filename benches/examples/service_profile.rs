//! The `service_xlate` criterion benches in a plain loop, for profilers (the machine's
//! noise does not move instruction counts):
//!
//! `valgrind --tool=callgrind --toggle-collect='service_profile::measured*' \
//!     target/release/examples/service_profile N ROUNDS [PASS [SPREAD]]`
//!
//! builds the daemon's pipeline with N ClusterIP Services (10 endpoints each), then runs
//! ROUNDS first packets of new connections to random ones among them, each in
//! `measured` (what `--toggle-collect` counts, so the setup is left out): PASS `first`
//! translates the packet as the Pod sent it, `servicelb` (the default) as conntrack
//! returns it (`+trk+new`), `both` one after the other; `fastpath` runs ROUNDS batches of
//! 32 through the fast path with the real tracker, as `service_xlate/fastpath/N` does
//! (tracker emptied every 1,024 batches, outside `measured`; the caches kept). SPREAD sends
//! the connections to the first SPREAD Services only. Without valgrind, the time per
//! round (or packet) it prints is its own timer's.
/// The switch's own allocator, so that what is measured is what vswitchd runs.
#[global_allocator]
static GLOBAL: vswitch::sys::Allocator = vswitch::sys::Allocator {};
use std::hint::black_box;
use vswitch::ct::TupleFilter;
use vswitch::dp::packet::Packet;
use vswitch::dp::{BATCH, Sink};
use vswitch::ofproto::xlate;
use vswitch_benches::frame;
use vswitch_proto::flow::{Flow, ct_state};
use vswitch_proto::net::MacAddr;
use vswitch_tests::k8s;

struct Null(u64);
impl Sink for Null {
    fn output(&mut self, port: u32, pkt: &Packet) {
        self.0 = self.0.wrapping_add(port as u64 + pkt.len() as u64);
    }
}

/// Everything counted happens in here.
#[inline(never)]
fn measured<T>(f: impl FnOnce() -> T) -> T {
    f()
}

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let n: u32 = arg(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rounds: usize = arg(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let pass = arg(3).unwrap_or_else(|| "servicelb".into());
    // The connections go to this many of the Services (the first ones), N by default.
    let spread: u32 = arg(4).and_then(|s| s.parse().ok()).unwrap_or(n).min(n);
    let (pods, endpoints) = (32, 10);
    let mut bridge = k8s::bridge(pods);
    let vips = k8s::add_services(&mut bridge, pods, n, endpoints);
    // The same draw as the criterion bench: 1,024 (Pod, Service) pairs.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let conns: Vec<(u32, usize)> = (0..1024)
        .map(|_| {
            (
                (next() % pods as u64) as u32,
                (next() % spread as u64) as usize,
            )
        })
        .collect();
    let pipe = bridge.pipeline().clone();
    let mac = bridge.mac_table();
    if pass == "fastpath" {
        let frames: Vec<(u32, Vec<u8>)> = conns
            .iter()
            .map(|&(pod, svc)| {
                let mut f = frame(
                    true,
                    64,
                    k8s::pod_ip(pod).octets(),
                    vips[svc].ip.octets(),
                    0,
                    vips[svc].port,
                );
                let gw: MacAddr = k8s::GW_MAC.parse().expect("MAC");
                f[0..6].copy_from_slice(&gw.0);
                f[6..12].copy_from_slice(&MacAddr::for_ipv4(k8s::pod_ip(pod)).0);
                f[14 + 20 + 13] = 0x02;
                (k8s::pod_port(pod), f)
            })
            .collect();
        let (tracker, mut fp) = vswitch_benches::tracked_fast_path(&bridge);
        let mut batch: Vec<Packet> = (0..BATCH).map(|_| Packet::with_capacity(2048)).collect();
        let mut sink = Null(0);
        let mut took = std::time::Duration::ZERO;
        for r in 0..rounds as u64 {
            if r.is_multiple_of(1024) {
                tracker.flush(None, &TupleFilter::default());
            }
            for (k, p) in batch.iter_mut().enumerate() {
                let c = r * BATCH as u64 + k as u64;
                let (port, f) = &frames[c as usize % frames.len()];
                p.set_frame(f);
                p.in_port = *port;
                let sport = 1024 + (c % (1024 * BATCH as u64)) as u16;
                p.data_mut()[34..36].copy_from_slice(&sport.to_be_bytes());
            }
            let start = std::time::Instant::now();
            measured(|| fp.process(&mut batch, 1, &mut sink));
            took += start.elapsed();
        }
        let ns = took.as_nanos() as f64 / (rounds * BATCH) as f64;
        println!(
            "{n} Services, {rounds} batches of {BATCH} new connections: {ns:.0} ns a packet, {:?}",
            fp.stats()
        );
        return;
    }
    let keys: Vec<[Flow; 2]> = conns
        .iter()
        .enumerate()
        .map(|(i, &(pod, svc))| {
            let first = k8s::syn_from_pod(pod, vips[svc].ip, vips[svc].port, 32768 + i as u16);
            let second = bridge
                .trace(&first, 0)
                .recirculated(ct_state::TRK | ct_state::NEW)
                .expect("the first pass ends in conntrack");
            [first, second]
        })
        .collect();
    let which: &[usize] = match pass.as_str() {
        "first" => &[0],
        "both" => &[0, 1],
        _ => &[1],
    };
    let mut acc = 0;
    let start = std::time::Instant::now();
    for i in 0..rounds {
        for &p in which {
            let key = black_box(&keys[i & 1023][p]);
            acc += measured(|| xlate::xlate(&pipe, &mac, key, 0).actions.len());
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / rounds as f64;
    println!("{n} Services, {rounds} rounds of {pass}: {acc} actions, {ns:.0} ns a round");
}
