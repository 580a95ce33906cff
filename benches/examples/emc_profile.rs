//! The exact-match-hit batch of the criterion bench, in a plain loop, for profilers:
//! `valgrind --tool=callgrind target/release/examples/emc_profile`.

/// The switch's own allocator, so that what is measured is what vswitchd runs.
#[global_allocator]
static GLOBAL: vswitch::sys::Allocator = vswitch::sys::Allocator {};
use vswitch::dp::packet::Packet;
use vswitch::dp::{BATCH, FastPath, FastPathConfig, Sink};
use vswitch::ofproto::Bridge;
use vswitch_proto::flowmod::{FlowSpec, Usage};
use vswitch_proto::text::{NoPortNames, parse_flow};

struct Null(u64);
impl Sink for Null {
    fn output(&mut self, port: u32, pkt: &Packet) {
        self.0 = self.0.wrapping_add(port as u64 + pkt.len() as u64);
    }
}

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut b = Bridge::new("br0");
    let spec: FlowSpec = parse_flow(
        "in_port=1,ip,actions=set_field:0a:00:00:00:00:01->eth_src,set_field:02:00:00:00:00:03->eth_dst,dec_ttl,output:2",
        Usage::Add,
        &NoPortNames,
    )
    .unwrap();
    b.add_flows(&[spec], 0).unwrap();
    let mut fp = FastPath::new(
        b.pipeline_handle(),
        b.mac_table(),
        FastPathConfig::default(),
    );
    let f = vswitch_benches::frame(false, 64, [10, 244, 1, 2], [10, 244, 1, 3], 5000, 53);
    let mut batch: Vec<Packet> = (0..BATCH).map(|_| Packet::from_frame(&f, 1)).collect();
    let mut sink = Null(0);
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for p in batch.iter_mut() {
            p.data_mut()[22] = 64;
        }
        fp.process(&mut batch, 2, &mut sink);
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds * BATCH as u64) as f64;
    println!("{ns:.1} ns/packet, {:?}", fp.stats());
}
