//! The established-UDP case of the conntrack criterion bench, in a plain loop, for
//! profilers: `valgrind --tool=callgrind target/release/examples/ct_profile [ROUNDS]`;
//! with `new` after ROUNDS, ROUNDS new UDP connections committed instead.

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

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let new = std::env::args().nth(2).as_deref() == Some("new");
    let (t, _) = Tracker::open(
        &Config {
            capacity: 1 << 18,
            ..Config::default()
        },
        0,
    )
    .unwrap();
    let mut w = t.worker(1);
    let mut go = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, commit: bool| {
        let f = frame(false, 64, src, dst, sp, dp);
        let mut pkt = Packet::from_frame(&f, 1);
        let mut key = Flow::ZERO;
        let mut layers = Layers::default();
        extract(pkt.data(), &mut key, &mut layers).unwrap();
        (
            pkt.clone(),
            key,
            layers,
            w.track(&mut pkt, &layers, &key, &ct(commit), 1).state,
        )
    };
    for i in 0..10_000u32 {
        let src = [10, 244, (i >> 16) as u8 + 1, (i >> 8) as u8];
        let sport = 1024 + (i & 0xff) as u16;
        go(src, [10, 244, 9, 9], sport, 53, true);
        go([10, 244, 9, 9], src, 53, sport, false);
    }
    let (mut pkt, key, layers, st) = go([10, 244, 1, 0x20], [10, 244, 9, 9], 1024 + 7, 53, false);
    assert_eq!(st & 2, 2);
    let mut acc = 0u64;
    if new {
        // Fresh tuples: one source address per connection, packets made beforehand.
        let c = ct(true);
        let mut pkts: Vec<_> = (0..rounds as u32)
            .map(|i| {
                let f = frame(
                    false,
                    64,
                    [11, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                    [10, 244, 9, 9],
                    1024,
                    53,
                );
                let pkt = Packet::from_frame(&f, 1);
                let mut key = Flow::ZERO;
                let mut layers = Layers::default();
                extract(pkt.data(), &mut key, &mut layers).unwrap();
                (pkt, key, layers)
            })
            .collect();
        for (pkt, key, layers) in &mut pkts {
            acc += w.track(pkt, layers, key, &c, 1).state as u64;
        }
    } else {
        let c = ct(false);
        for _ in 0..rounds {
            acc += w.track(&mut pkt, &layers, &key, &c, 1).state as u64;
        }
    }
    println!("{acc}");
}
