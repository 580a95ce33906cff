use super::*;
use crate::ofproto::{Bridge, PortDesc};
use crate::wire::checksum;
use crate::wire::virtio::VirtioNetHdr;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vswitch_proto::flowmod::Usage;
use vswitch_proto::text::{NoPortNames, parse_flow};

#[derive(Default)]
struct Rec {
    out: Vec<(u32, Vec<u8>)>,
    learned: Vec<Arc<FlowSpec>>,
}

impl Sink for Rec {
    fn output(&mut self, port: u32, pkt: &Packet) {
        self.out.push((port, pkt.data().to_vec()));
    }
    fn learn(&mut self, flow: &Arc<FlowSpec>) {
        self.learned.push(flow.clone());
    }
}

fn setup(lines: &[&str]) -> (Bridge, FastPath) {
    let mut b = Bridge::new("br0");
    b.set_ports(
        (1..=3)
            .map(|no| PortDesc {
                no,
                name: format!("p{no}"),
                no_flood: false,
            })
            .collect(),
    );
    let specs: Vec<FlowSpec> = lines
        .iter()
        .map(|l| parse_flow(l, Usage::Add, &NoPortNames).unwrap())
        .collect();
    b.add_flows(&specs, 0).unwrap();
    let fp = FastPath::new(
        b.pipeline_handle(),
        b.mac_table(),
        FastPathConfig::default(),
    );
    (b, fp)
}

fn tcp(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
        .tcp(sport, 80, 1, 1000)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn udp(csum: bool) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
        .udp(5000, 53)
        .write(&mut v, b"query")
        .unwrap();
    if !csum {
        v[14 + 20 + 6] = 0;
        v[14 + 20 + 7] = 0;
    }
    v
}

/// A fast path over `b`'s pipeline with the real connection tracker (one worker's).
fn tracked(b: &Bridge) -> FastPath<crate::ct::CtWorker> {
    let (tracker, _) = crate::ct::Tracker::open(&crate::ct::Config::default(), 0).unwrap();
    FastPath::with_conntrack(
        b.pipeline_handle(),
        b.mac_table(),
        FastPathConfig::default(),
        tracker.worker(1),
    )
}

fn run<C: Conntrack>(fp: &mut FastPath<C>, frames: &[Vec<u8>], in_port: u32, now: u64) -> Rec {
    let mut batch: Vec<Packet> = frames
        .iter()
        .map(|f| Packet::from_frame(f, in_port))
        .collect();
    let mut rec = Rec::default();
    fp.process(&mut batch, now, &mut rec);
    rec
}

/// Every checksum of an IPv4 TCP/UDP frame is right.
fn assert_checksums_valid(frame: &[u8]) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    match p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
        }
        Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
        }
        _ => {}
    }
}

#[test]
fn three_tiers_and_counters() {
    let (b, mut fp) = setup(&["in_port=1,actions=output:2"]);
    let rec = run(&mut fp, &[tcp(1000, b"a")], 1, 1);
    assert_eq!(rec.out.len(), 1);
    assert_eq!(fp.stats().upcalls, 1);
    run(&mut fp, &[tcp(1000, b"a")], 1, 2);
    assert_eq!(fp.stats().emc_hits, 1);
    // A new connection: the megaflow (which only cares about in_port) serves it.
    run(&mut fp, &[tcp(1001, b"a")], 1, 3);
    assert_eq!(fp.stats().megaflow_hits, 1);
    assert_eq!(fp.stats().upcalls, 1);
    let r = &b.pipeline().rules()[0];
    assert_eq!(r.stats.packets(), 3);
    assert_eq!(r.stats.bytes(), 3 * tcp(1000, b"a").len() as u64);
    let dump = fp.dump();
    assert_eq!(dump.megaflows.len(), 1);
    assert_eq!(dump.megaflows[0].packets(), 3);
    assert_eq!(dump.emc.len(), 2);
}

#[test]
fn table_changes_invalidate_caches() {
    let (mut b, mut fp) = setup(&["in_port=1,actions=output:2"]);
    run(&mut fp, &[tcp(1, b"")], 1, 1);
    b.modify_flows(
        &parse_flow("in_port=1,actions=output:3", Usage::Add, &NoPortNames).unwrap(),
        false,
        2,
    )
    .unwrap();
    let rec = run(&mut fp, &[tcp(1, b"")], 1, 3);
    assert_eq!(rec.out[0].0, 3);
    // Revalidated, not flushed: the one megaflow the change affects is gone.
    assert_eq!(fp.stats().flushes, 0);
    assert_eq!(fp.stats().revalidations, 1);
    assert_eq!(fp.stats().megaflows_invalidated, 1);
    assert_eq!(fp.stats().upcalls, 2);
    // The counters survived the modification and count both packets.
    assert_eq!(b.pipeline().rules()[0].stats.packets(), 2);
}

#[test]
fn malformed_and_unmatched_are_counted() {
    let (_b, mut fp) = setup(&["in_port=1,tcp,actions=output:2"]);
    let mut short = tcp(1, b"");
    short.truncate(40);
    let rec = run(&mut fp, &[short, udp(true)], 1, 1);
    assert!(rec.out.is_empty());
    assert_eq!(
        fp.stats().malformed[Malformed::Ipv4BadTotalLength as usize],
        1
    );
    assert_eq!(fp.stats().dropped[DropReason::NoOutput as usize], 1);
}

#[test]
fn rewrites_keep_checksums_valid() {
    let (_b, mut fp) = setup(&[
        "in_port=1,tcp,actions=set_field:10.96.0.10->ip_dst,set_field:8080->tcp_dst,set_field:02:aa:00:00:00:01->eth_dst,dec_ttl,output:2",
        "in_port=1,udp,actions=set_field:192.168.7.7->ip_src,set_field:5353->udp_src,output:2",
    ]);
    let rec = run(
        &mut fp,
        &[tcp(1234, b"hello world"), udp(true), udp(false)],
        1,
        1,
    );
    assert_eq!(rec.out.len(), 3);
    let t = &rec.out[0].1;
    assert_eq!(&t[0..6], &[2, 0xaa, 0, 0, 0, 1]);
    assert_eq!(&t[30..34], &[10, 96, 0, 10]);
    assert_eq!(t[22], 63);
    assert_eq!(u16::from_be_bytes([t[36], t[37]]), 8080);
    for (_, f) in &rec.out {
        assert_checksums_valid(f);
    }
    // A UDP datagram without a checksum keeps having none.
    let u = &rec.out[2].1;
    assert_eq!(&u[40..42], &[0, 0]);
    assert_eq!(&u[26..30], &[192, 168, 7, 7]);
}

#[test]
fn partial_checksum_is_kept_partial_and_right() {
    let (_b, mut fp) = setup(&[
        "in_port=1,tcp,actions=set_field:10.96.0.10->ip_dst,set_field:8080->tcp_dst,output:2",
    ]);
    // A frame as a TAP with offloads hands it over: TCP checksum = pseudo-header sum.
    let mut f = tcp(1234, b"offloaded payload");
    let l4 = 34;
    let tcp_len = (f.len() - l4) as u32;
    let seed = checksum::fold(checksum::pseudo_header_v4(
        [10, 244, 1, 2].into(),
        [10, 244, 1, 3].into(),
        6,
        tcp_len,
    ));
    f[l4 + 16..l4 + 18].copy_from_slice(&seed.to_be_bytes());
    let mut pkt = Packet::from_frame(&f, 1);
    pkt.vnet = VirtioNetHdr {
        flags: VirtioNetHdr::NEEDS_CSUM,
        csum_start: l4 as u16,
        csum_offset: 16,
        ..VirtioNetHdr::default()
    };
    let mut rec = Rec::default();
    fp.process(std::slice::from_mut(&mut pkt), 1, &mut rec);
    let mut out = rec.out[0].1.clone();
    // Finishing the sum as the receiving end would gives a valid checksum.
    checksum::complete_partial(&mut out, l4, 16).unwrap();
    assert_checksums_valid(&out);
}

#[test]
fn vlan_push_and_pop_bytes() {
    let (_b, mut fp) = setup(&[
        "in_port=1,actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2",
        "in_port=2,dl_vlan=100,actions=pop_vlan,output:3",
    ]);
    let f = tcp(1, b"x");
    let rec = run(&mut fp, std::slice::from_ref(&f), 1, 1);
    let tagged = rec.out[0].1.clone();
    assert_eq!(tagged.len(), f.len() + 4);
    assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 100]);
    assert_eq!(&tagged[16..], &f[12..]);
    let rec = run(&mut fp, &[tagged], 2, 2);
    assert_eq!(rec.out[0], (3, f));
}

#[test]
fn conntrack_recirculates() {
    let (_b, mut fp) = setup(&[
        "table=0,in_port=1,ip,actions=set_field:0x3->reg0,ct(zone=9,table=4)",
        "table=4,ct_state=+trk,ct_zone=9,reg0=0x3,ip,actions=output:2",
    ]);
    let rec = run(&mut fp, &[tcp(1, b"x"), tcp(2, b"y")], 1, 1);
    assert_eq!(rec.out.len(), 2);
    assert_eq!(fp.stats().recirculations, 2);
    // The second pass is cached too: one upcall per pass kind.
    assert_eq!(fp.stats().upcalls, 2);
}

#[test]
fn recirculated_buffers_go_back_to_the_batch() {
    let (_b, mut fp) = setup(&[
        "table=0,in_port=1,ip,actions=ct(table=4)",
        "table=4,ip,actions=output:2",
    ]);
    let mut batch: Vec<Packet> = (1..=3)
        .map(|s| Packet::from_frame(&tcp(s, b"x"), 1))
        .collect();
    let caps: Vec<usize> = batch.iter().map(Packet::capacity).collect();
    let mut rec = Rec::default();
    fp.process(&mut batch, 1, &mut rec);
    assert_eq!(rec.out.len(), 3);
    let mut after: Vec<usize> = batch.iter().map(Packet::capacity).collect();
    after.sort_unstable();
    let mut before = caps;
    before.sort_unstable();
    assert_eq!(after, before, "every slot has a full-size buffer again");
}

#[test]
fn learn_reaches_the_sink() {
    let (_b, mut fp) =
        setup(&["tcp,actions=learn(table=9,priority=7,eth_type=0x800,NXM_OF_IP_SRC[]),output:2"]);
    let rec = run(&mut fp, &[tcp(1, b""), tcp(1, b"")], 1, 1);
    assert_eq!(
        rec.learned.len(),
        2,
        "every packet refreshes the learned flow"
    );
    assert_eq!(rec.learned[0].table, Some(9));
}

#[test]
fn flood_copies_to_every_other_port() {
    let (_b, mut fp) = setup(&["actions=flood"]);
    let rec = run(&mut fp, &[tcp(1, b"")], 2, 1);
    let ports: Vec<u32> = rec.out.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![1, 3]);
}

#[test]
fn full_cache_still_forwards() {
    let (b, _) = setup(&["in_port=1,tcp,actions=output:2"]);
    let mut fp = FastPath::new(
        b.pipeline_handle(),
        b.mac_table(),
        FastPathConfig {
            max_megaflows: 0,
            ..FastPathConfig::default()
        },
    );
    let rec = run(&mut fp, &[tcp(1, b""), tcp(1, b"")], 1, 1);
    assert_eq!(rec.out.len(), 2);
    assert_eq!(fp.stats().cache_full, 2);
    assert_eq!(b.pipeline().rules()[0].stats.packets(), 2);
}

#[test]
fn idle_megaflows_expire() {
    let (_b, mut fp) = setup(&["actions=output:2"]);
    run(&mut fp, &[tcp(1, b"")], 1, 1);
    assert_eq!(fp.dump().megaflows.len(), 1);
    fp.maintain(20_000);
    assert_eq!(fp.dump().megaflows.len(), 0);
    assert_eq!(fp.dump().emc.len(), 0);
}

#[test]
fn sctp_port_rewrite_recomputes_the_crc() {
    let (_b, mut fp) = setup(&["in_port=1,sctp,actions=set_field:9999->sctp_dst,output:2"]);
    // Ethernet + IPv4 + SCTP common header + one 16-byte DATA chunk, then 4 bytes of
    // Ethernet padding that the CRC must not cover.
    let mut f = vec![0u8; 14 + 20 + 12 + 16 + 4];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&48u16.to_be_bytes());
    f[22] = 64;
    f[23] = 132;
    f[34..36].copy_from_slice(&5000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0; // DATA chunk
    f[48..50].copy_from_slice(&16u16.to_be_bytes());
    let crc = checksum::crc32c(&f[34..62]);
    f[42..46].copy_from_slice(&crc.to_le_bytes());
    let rec = run(&mut fp, &[f], 1, 1);
    let mut out = rec.out[0].1.clone();
    assert_eq!(u16::from_be_bytes([out[36], out[37]]), 9999);
    let stored = u32::from_le_bytes([out[42], out[43], out[44], out[45]]);
    out[42..46].fill(0);
    assert_eq!(stored, checksum::crc32c(&out[34..62]));
}

#[test]
fn udp6_rewrite_never_leaves_a_zero_checksum() {
    let (_b, mut fp) = setup(&["in_port=1,udp6,actions=set_field:1->udp_src,output:2"]);
    let build = |payload: &[u8]| {
        let mut v = Vec::new();
        let a = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let b = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(a, b, 64)
            .udp(7, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    };
    let csum_at = 14 + 40 + 6;
    let csum = |f: &[u8]| u16::from_be_bytes([f[csum_at], f[csum_at + 1]]);
    // Rewriting port 7 to 1 turns checksum C into !(~C + ~7 + 1): zero when C is 0xfff9.
    // Choose the payload word that gives that checksum.
    let c0 = csum(&build(&[0, 0]));
    let w = checksum::fold(6u32 + c0 as u32);
    let f = build(&w.to_be_bytes());
    assert_eq!(csum(&f), 0xfff9, "test setup");
    let rec = run(&mut fp, &[f], 1, 1);
    let out = &rec.out[0].1;
    assert_eq!(u16::from_be_bytes([out[54], out[55]]), 1);
    assert_eq!(
        csum(out),
        0xffff,
        "zero is not a valid UDP checksum over IPv6"
    );
}

// ---- revalidation -----------------------------------------------------------------

fn flow(line: &str) -> FlowSpec {
    parse_flow(line, Usage::Add, &NoPortNames).unwrap()
}

fn tcp_to(dst: [u8; 4], dport: u16, sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 2], dst, 64)
        .tcp(sport, dport, 1, 1000)
        .write(&mut v, b"x")
        .unwrap();
    v
}

#[test]
fn a_change_keeps_the_cached_flows_it_cannot_affect() {
    let (mut b, mut fp) = setup(&[
        "priority=10,in_port=1,actions=output:2",
        "priority=10,in_port=2,actions=output:3",
    ]);
    run(&mut fp, &[tcp(1, b"")], 1, 1);
    run(&mut fp, &[tcp(1, b"")], 2, 1);
    assert_eq!(fp.stats().upcalls, 2);
    // A rule for another port: both cached flows stay, and hit again.
    b.add_flows(&[flow("priority=20,in_port=3,actions=drop")], 2)
        .unwrap();
    run(&mut fp, &[tcp(1, b"")], 1, 3);
    run(&mut fp, &[tcp(1, b"")], 2, 3);
    assert_eq!(fp.stats().upcalls, 2, "no new translation");
    assert_eq!(fp.stats().megaflows_kept, 2);
    assert_eq!(fp.stats().megaflows_invalidated, 0);
    // A rule that overrides port 1's traffic to port 80: that flow goes, the other stays,
    // and the very next packet follows the new rule.
    b.add_flows(
        &[flow("priority=30,in_port=1,tcp,tp_dst=80,actions=output:3")],
        4,
    )
    .unwrap();
    let rec = run(&mut fp, &[tcp(1, b"")], 1, 5);
    assert_eq!(rec.out[0].0, 3);
    run(&mut fp, &[tcp(1, b"")], 2, 5);
    assert_eq!(fp.stats().megaflows_invalidated, 1);
    assert_eq!(fp.stats().upcalls, 3);
    // A lower-priority rule the cached flows already beat changes nothing.
    b.add_flows(&[flow("priority=5,tcp,actions=drop")], 6)
        .unwrap();
    run(&mut fp, &[tcp(1, b"")], 2, 7);
    assert_eq!(fp.stats().upcalls, 3);
    assert_eq!(fp.stats().flushes, 0);
}

#[test]
fn a_group_change_drops_the_flows_that_used_it() {
    let (mut b, mut fp) = setup(&[]);
    b.add_group(
        &vswitch_proto::text::parse_group(
            "group_id=1,type=all,bucket=actions=output:2",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    b.add_flows(
        &[
            flow("priority=10,in_port=1,actions=group:1"),
            flow("priority=10,in_port=2,actions=output:3"),
        ],
        0,
    )
    .unwrap();
    run(&mut fp, &[tcp(1, b"")], 1, 1);
    run(&mut fp, &[tcp(1, b"")], 2, 1);
    b.modify_group(
        &vswitch_proto::text::parse_group(
            "group_id=1,type=all,bucket=actions=output:3",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    let rec = run(&mut fp, &[tcp(1, b"")], 1, 2);
    assert_eq!(rec.out[0].0, 3);
    run(&mut fp, &[tcp(1, b"")], 2, 2);
    assert_eq!(fp.stats().megaflows_invalidated, 1);
    assert_eq!(fp.stats().megaflows_kept, 1);
}

#[test]
fn a_select_group_is_decided_per_packet_from_the_cache() {
    // A Service as the pipeline makes it: a select group whose buckets DNAT and
    // recirculate. New connections (other source ports) must not each be an upcall.
    let (mut b, _) = setup(&[]);
    b.add_group(
        &vswitch_proto::text::parse_group(
            "group_id=7,type=select,\
             bucket=bucket_id:0,ct(commit,nat(dst=10.0.0.10:8080),table=1),\
             bucket=bucket_id:1,ct(commit,nat(dst=10.0.0.11:8080),table=1),\
             bucket=bucket_id:2,ct(commit,nat(dst=10.0.0.12:8080),table=1)",
            &NoPortNames,
        )
        .unwrap(),
    )
    .unwrap();
    b.add_flows(
        &[
            flow("in_port=1,tcp,nw_dst=10.244.1.3,tp_dst=80,actions=group:7"),
            flow("table=1,ct_state=+trk,tcp,nw_dst=10.0.0.10,actions=output:2"),
            flow("table=1,ct_state=+trk,tcp,nw_dst=10.0.0.11,actions=output:2"),
            flow("table=1,ct_state=+trk,tcp,nw_dst=10.0.0.12,actions=output:3"),
        ],
        0,
    )
    .unwrap();
    let mut fp = tracked(&b);
    let n = 300u16;
    let syn = |sport: u16| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
            .tcp(sport, 80, 1, 1000)
            .syn()
            .write(&mut v, b"")
            .unwrap();
        v
    };
    let frames: Vec<Vec<u8>> = (0..n).map(|i| syn(20000 + i)).collect();
    let rec = run(&mut fp, &frames, 1, 1);
    assert_eq!(rec.out.len(), n as usize, "every connection went out");
    // One upcall for the Service's pass, one per endpoint's pass after the DNAT (its
    // source port is not in that table's match either).
    assert!(fp.stats().upcalls <= 4, "{:?}", fp.stats());
    // Spread over the endpoints, each counted in its bucket.
    let g = b.pipeline().group(7).unwrap().clone();
    let per: Vec<u64> = g.bucket_stats.iter().map(|s| s.packets()).collect();
    assert_eq!(per.iter().sum::<u64>(), n as u64, "{per:?}");
    assert!(per.iter().all(|&c| c > 60), "{per:?}");
    let mut dsts = std::collections::HashMap::<[u8; 4], u64>::new();
    for (_, f) in &rec.out {
        *dsts.entry(f[30..34].try_into().unwrap()).or_default() += 1;
    }
    let mut got: Vec<u64> = [[10, 0, 0, 10], [10, 0, 0, 11], [10, 0, 0, 12]]
        .iter()
        .map(|a| dsts.get(a).copied().unwrap_or(0))
        .collect();
    got.sort();
    let mut want = per.clone();
    want.sort();
    assert_eq!(got, want, "the bytes went where the counters say");
    // The same connection again takes the same bucket (conntrack has it anyway).
    let again = run(&mut fp, &frames[..1], 1, 2);
    let first = &rec.out[0].1[30..34];
    assert_eq!(&again.out[0].1[30..34], first);
}

mod revalidation_props {
    use super::*;
    use proptest::prelude::*;

    /// Rules over a small space: table 0 matches the port, the destination and the
    /// destination port, and outputs, drops, uses group 1, or marks reg0 and goes on to
    /// table 1, which matches reg0 and the destination.
    fn rule() -> impl Strategy<Value = String> {
        let t0 = (
            1u16..4,
            proptest::option::of(1u32..3),
            proptest::option::of(1u8..3),
            proptest::option::of(prop_oneof![Just(80u16), Just(81)]),
            0usize..5,
        )
            .prop_map(|(pri, port, dst, tp, act)| {
                let mut m = format!("priority={pri}");
                if let Some(p) = port {
                    m += &format!(",in_port={p}");
                }
                if dst.is_some() || tp.is_some() {
                    m += if tp.is_some() { ",tcp" } else { ",ip" };
                }
                if let Some(d) = dst {
                    m += &format!(",nw_dst=10.0.0.{d}");
                }
                if let Some(t) = tp {
                    m += &format!(",tp_dst={t}");
                }
                let a = match act {
                    0 => "output:2".to_string(),
                    1 => "output:3".into(),
                    2 => "drop".into(),
                    3 => "group:1".into(),
                    _ => format!("set_field:{pri}->reg0,goto_table:1"),
                };
                format!("{m},actions={a}")
            });
        let t1 = (
            1u16..3,
            proptest::option::of(1u32..4),
            proptest::option::of(1u8..3),
            2u32..4,
        )
            .prop_map(|(pri, reg, dst, out)| {
                let mut m = format!("table=1,priority={pri}");
                if let Some(r) = reg {
                    m += &format!(",reg0={r}");
                }
                if let Some(d) = dst {
                    m += &format!(",ip,nw_dst=10.0.0.{d}");
                }
                format!("{m},actions=output:{out}")
            });
        prop_oneof![3 => t0, 1 => t1]
    }

    #[derive(Clone, Debug)]
    enum Change {
        Add(String),
        Delete(usize),
        Group(u32),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            3 => rule().prop_map(Change::Add),
            2 => (0usize..16).prop_map(Change::Delete),
            1 => (2u32..4).prop_map(Change::Group),
        ]
    }

    type Pkt = (u32, u8, u16, u16);

    fn packet() -> impl Strategy<Value = Pkt> {
        (
            1u32..3,
            1u8..3,
            prop_oneof![Just(80u16), Just(81)],
            1000u16..1003,
        )
    }

    fn outputs(fp: &mut FastPath, p: &Pkt, now: u64) -> Vec<u32> {
        let frame = tcp_to([10, 0, 0, p.1], p.2, p.3);
        run(fp, &[frame], p.0, now)
            .out
            .into_iter()
            .map(|(port, _)| port)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Caches revalidated after each change give every packet what a fresh
        /// translation gives it: no change leaves a stale entry in use.
        #[test]
        fn revalidated_caches_answer_as_fresh_ones(
            rules in proptest::collection::vec(rule(), 0..10),
            rounds in proptest::collection::vec((change(), proptest::collection::vec(packet(), 1..8)), 1..8),
            warm in proptest::collection::vec(packet(), 1..12),
        ) {
            let (mut b, mut fp) = setup(&[]);
            b.add_group(&vswitch_proto::text::parse_group("group_id=1,type=all,bucket=actions=output:2", &NoPortNames).unwrap()).unwrap();
            let specs: Vec<FlowSpec> = rules.iter().map(|l| flow(l)).collect();
            b.add_flows(&specs, 0).unwrap();
            let mut now = 1;
            for p in &warm {
                outputs(&mut fp, p, now);
            }
            for (c, pkts) in rounds {
                match c {
                    Change::Add(l) => b.add_flows(&[flow(&l)], now).unwrap(),
                    Change::Delete(i) => {
                        let rules = b.pipeline().rules();
                        if let Some(r) = rules.get(i % rules.len().max(1)) {
                            let crit = FlowSpec {
                                table: Some(r.table),
                                priority: r.priority,
                                matching: r.matching,
                                ..FlowSpec::default()
                            };
                            b.delete_flows(&crit, true);
                        }
                    }
                    Change::Group(out) => b
                        .modify_group(&vswitch_proto::text::parse_group(&format!("group_id=1,type=all,bucket=actions=output:{out}"), &NoPortNames).unwrap())
                        .unwrap(),
                }
                now += 1;
                for p in &pkts {
                    let cached = outputs(&mut fp, p, now);
                    let mut fresh = FastPath::new(b.pipeline_handle(), b.mac_table(), FastPathConfig::default());
                    let want = outputs(&mut fresh, p, now);
                    prop_assert_eq!(cached, want, "packet {:?}", p);
                }
            }
            prop_assert_eq!(fp.stats().flushes, 0);
        }
    }
}

#[test]
fn conntrack_fills_the_original_tuple() {
    let (_b, mut fp) = setup(&[
        "table=0,in_port=1,ip,actions=ct(zone=9,table=4)",
        "table=4,ct_state=+new+trk,ip,ct_nw_src=10.244.1.2,ct_nw_dst=10.244.1.3,ct_nw_proto=6,ct_tp_src=7,ct_tp_dst=80,actions=output:2",
        "table=4,priority=1,actions=output:3",
        // ct_clear then a new ct: the tuple seen after it is the new one's.
        "table=0,in_port=2,ip,actions=ct(table=5)",
        "table=5,ct_state=+trk,ip,actions=ct_clear,ct(zone=1,table=6)",
        "table=6,ct_state=+new+trk,ct_zone=1,ip,ct_nw_src=10.244.1.2,actions=output:1",
    ]);
    let rec = run(&mut fp, &[tcp(7, b"x"), tcp(8, b"y")], 1, 1);
    let ports: Vec<u32> = rec.out.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, [2, 3]);
    let rec = run(&mut fp, &[tcp(7, b"x")], 2, 1);
    let ports: Vec<u32> = rec.out.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, [1]);
}

/// A tracker that records the conntrack state of the key it is given.
#[derive(Default)]
struct SeenState(Vec<(u16, u32)>);

impl conntrack::Conntrack for SeenState {
    fn track(
        &mut self,
        _pkt: &mut Packet,
        _layers: &Layers,
        key: &Flow,
        ct: &action::DpCt,
        _now_ms: u64,
    ) -> conntrack::CtResult {
        self.0.push((key.ct_state(), key.ct_nw_src()));
        conntrack::CtResult {
            state: 0x21,
            zone: ct.zone,
            ..Default::default()
        }
    }
}

#[test]
fn ct_clear_hides_the_old_state_from_the_next_ct() {
    let frame = tcp(7, b"x");
    let ct = || {
        action::DpAction::Ct(Box::new(action::DpCt {
            zone: 1,
            commit: false,
            force: false,
            nat: None,
            mark: None,
            label: None,
            alg: None,
            recirc: None,
        }))
    };
    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    crate::flow::extract(&frame, &mut key, &mut layers).unwrap();
    key.set_ct_state(0x22);
    key.set_ct_nw_src(0x0a00_0001);
    let mut seen = SeenState::default();
    let mut pkt = Packet::from_frame(&frame, 1);
    let mut rec = Rec::default();
    exec::execute(
        &[ct(), action::DpAction::CtClear, ct()],
        &mut pkt,
        &key,
        &mut layers,
        &mut rec,
        &mut seen,
        0,
        &mut Vec::new(),
        &mut Vec::new(),
        &mut super::reject::Rejecter::default(),
    );
    assert_eq!(seen.0, [(0x22, 0x0a00_0001), (0, 0)]);
}

#[test]
fn a_meter_drops_above_its_rate_even_from_cached_megaflows() {
    use vswitch_proto::text::parse_meter;
    let (mut b, mut fp) = setup(&[]);
    b.add_meter(
        &parse_meter("meter=1,pktps,bands=type=drop,rate=5").unwrap(),
        0,
    )
    .unwrap();
    b.add_flows(&[flow("in_port=1,actions=meter:1,output:2")], 0)
        .unwrap();
    // One flow, so all but the first packet hit the cached megaflow.
    let frames: Vec<Vec<u8>> = (0..8).map(|_| tcp(1000, b"x")).collect();
    let rec = run(&mut fp, &frames, 1, 0);
    assert_eq!(
        rec.out.len(),
        5,
        "a full bucket holds one second: 5 packets"
    );
    // 200 ms later the bucket has one packet's worth again.
    let rec = run(&mut fp, &frames[..3], 1, 200);
    assert_eq!(rec.out.len(), 1);
    let d = b.dump_meters(Some(1), 200);
    let stats = &d[0].1;
    assert_eq!(stats.packets_in, 11);
    assert_eq!(stats.bands[0].0, 5);
    assert_eq!(stats.bands[0].1, 5 * frames[0].len() as u64);
}

#[test]
fn reject_answers_out_of_in_port_and_counts() {
    let (_b, mut fp) = setup(&["tcp,tp_dst=80,actions=reject", "udp,actions=reject"]);
    let rec = run(&mut fp, &[tcp(1000, b""), udp(true), udp(false)], 2, 1);
    assert_eq!(rec.out.len(), 3);
    for (port, frame) in &rec.out {
        assert_eq!(*port, 2, "back out of the port it came in on");
        assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(
            &frame[26..30],
            &[10, 244, 1, 3],
            "from the address it was sent to"
        );
        assert_checksums_valid(frame);
    }
    assert_eq!(rec.out[0].1[23], 6, "a TCP RST");
    assert_eq!(
        (rec.out[1].1[23], rec.out[1].1[34]),
        (1, 3),
        "ICMP unreachable"
    );
    // Again from the caches; then something that must not be answered.
    let mut bcast = udp(true);
    bcast[0..6].fill(0xff);
    let rec = run(&mut fp, &[tcp(1000, b""), bcast], 2, 2);
    assert_eq!(rec.out.len(), 1);
    let s = fp.stats();
    assert_eq!(s.rejects.sent, 4);
    assert_eq!(s.rejects.unanswered, 1);
    assert_eq!(s.dropped[DropReason::Reject as usize], 5);
}

/// A fragmented UDP datagram through a pipeline of the Kubernetes kind (track, then
/// match the destination port and DNAT with a commit, then match the translated port):
/// every fragment takes the path of the first, because after `ct()` a later fragment's
/// flow has its datagram's ports; each is translated and leaves as it came, not
/// reassembled. A later fragment whose first never came is `+inv`.
#[test]
fn fragments_of_a_datagram_follow_its_first_fragment_through_ct() {
    use crate::ct::frag::testing::{reassemble, udp_fragments};
    let (b, _) = setup(&[
        "table=0,in_port=1,ip,actions=ct(zone=1,nat,table=1)",
        "table=1,ct_state=+trk+new,udp,nw_dst=10.96.0.10,tp_dst=53,actions=ct(commit,zone=1,nat(dst=10.244.1.9:5353),table=2)",
        // Later datagrams: translated by the first ct().
        "table=1,ct_state=+trk,udp,nw_dst=10.244.1.9,actions=resubmit(,2)",
        "table=1,priority=0,actions=drop",
        "table=2,ct_state=+trk,udp,nw_dst=10.244.1.9,tp_dst=5353,actions=output:2",
        "table=2,priority=0,actions=output:3",
    ]);
    let mut fp = tracked(&b);
    let q = udp_fragments([10, 244, 1, 2], [10, 96, 0, 10], 40000, 53, 1, 4000, 1500);
    assert_eq!(q.len(), 3);
    for now in [1, 2] {
        // In one batch (as a TAP delivers them), then a datagram of the same connection.
        let rec = run(&mut fp, &q, 1, now);
        let ports: Vec<u32> = rec.out.iter().map(|(p, _)| *p).collect();
        assert_eq!(ports, [2, 2, 2], "every fragment as its first");
        let out: Vec<Vec<u8>> = rec.out.into_iter().map(|(_, f)| f).collect();
        assert!(
            out.iter().all(|f| f.len() <= 14 + 1500),
            "fragments, not a datagram"
        );
        let whole = reassemble(&out);
        assert_eq!((whole.dst, whole.ports()), ([10, 244, 1, 9], (40000, 5353)));
        assert!(whole.udp_checksum_ok());
    }
    // One at a time, each in its own batch: the same.
    let q = udp_fragments([10, 244, 1, 2], [10, 96, 0, 10], 40001, 53, 2, 4000, 1500);
    let ports: Vec<u32> = q
        .iter()
        .flat_map(|f| run(&mut fp, std::slice::from_ref(f), 1, 3).out)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(ports, [2, 2, 2]);
    // A later fragment alone goes nowhere.
    let q = udp_fragments([10, 244, 1, 2], [10, 96, 0, 10], 40002, 53, 3, 4000, 1500);
    assert!(run(&mut fp, &q[1..], 1, 4).out.is_empty());
}
