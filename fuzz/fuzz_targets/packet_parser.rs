//! Every parser that reads packet bytes, on arbitrary bytes: flow key extraction (plain
//! and VXLAN), the wire views behind the builders, software segmentation, and the whole
//! fast path with rules that rewrite every kind of header. Nothing may panic.
//!
//! Input layout: byte 0 picks the offload flags, bytes 1..13 are a virtio-net header,
//! the rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use vswitch::dp::packet::Packet;
use vswitch::dp::{FastPath, FastPathConfig, Sink};
use vswitch::flow::{Layers, extract, extract_vxlan};
use vswitch::ofproto::{Bridge, PortDesc};
use vswitch::wire::virtio::VirtioNetHdr;
use vswitch::wire::{EthernetAddress, build, gso};
use vswitch_proto::flow::Flow;
use vswitch_proto::flowmod::{FlowSpec, Usage};
use vswitch_proto::text::{NoPortNames, parse_flow};

const FLOWS: &[&str] = &[
    "priority=100,tcp,actions=set_field:10.0.0.9->ip_dst,set_field:8080->tcp_dst,set_field:02:00:00:00:00:09->eth_dst,dec_ttl,output:2",
    "priority=100,udp,actions=set_field:192.168.0.1->ip_src,set_field:53->udp_src,set_field:3->nw_ecn,output:2",
    "priority=100,icmp,actions=set_field:0->icmp_type,set_field:10->ip_dscp,output:2",
    "priority=100,tcp6,actions=set_field:fe80::9->ipv6_dst,set_field:443->tcp_dst,set_field:0x12345->ipv6_label,dec_ttl,output:2",
    "priority=100,icmp6,icmp_type=135,actions=set_field:fe80::1->nd_target,set_field:02:00:00:00:00:07->nd_sll,output:2",
    "priority=100,arp,actions=set_field:2->arp_op,set_field:10.0.0.1->arp_spa,set_field:02:00:00:00:00:01->arp_sha,in_port",
    "priority=90,dl_vlan=10,actions=pop_vlan,output:2",
    "priority=90,ip,actions=push_vlan:0x8100,set_field:4106->vlan_vid,ct(zone=3,table=1)",
    "table=1,dl_vlan=10,ip,actions=pop_vlan,set_field:10.0.0.2->ip_dst,output:3",
    "priority=1,actions=normal",
];

struct Null;
impl Sink for Null {
    fn output(&mut self, _port: u32, pkt: &Packet) {
        std::hint::black_box(pkt.data());
    }
}

thread_local! {
    static FP: RefCell<(Bridge, FastPath)> = RefCell::new({
        let mut b = Bridge::new("br0");
        b.set_ports((1..=3).map(|no| PortDesc { no, name: format!("p{no}"), no_flood: false }).collect());
        let specs: Vec<FlowSpec> = FLOWS.iter().map(|l| parse_flow(l, Usage::Add, &NoPortNames).unwrap()).collect();
        b.add_flows(&specs, 0).unwrap();
        let fp = FastPath::new(b.pipeline_handle(), b.mac_table(), FastPathConfig::default());
        (b, fp)
    });
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let (ctl, hdr, frame) = (data[0], &data[1..13], &data[13..]);

    let mut k = Flow::ZERO;
    let mut l = Layers::default();
    let _ = extract(frame, &mut k, &mut l);
    let _ = extract_vxlan(frame, &mut Flow::ZERO, &mut l);

    let me = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let mut out = Vec::new();
    let _ = build::vxlan_decap(frame);
    let _ = build::arp_reply(frame, me, &mut out);
    let _ = build::icmpv4_echo_reply(frame, &mut out);
    let _ = build::icmpv4_unreachable(frame, 4, me, [10, 0, 0, 1].into(), Some(1450), &mut out);
    let _ = build::icmpv6_echo_reply(frame, &mut out);
    let _ = build::icmpv6_unreachable(frame, 4, me, "fe80::1".parse().unwrap(), &mut out);
    let _ = build::icmpv6_packet_too_big(frame, 1280, me, "fe80::1".parse().unwrap(), &mut out);
    let _ = build::ndp_neighbor_advert(frame, me, true, &mut out);
    let _ = build::tcp_rst(frame, &mut out);

    let vnet = VirtioNetHdr::parse(hdr).unwrap_or_default();
    let mut scratch = Vec::new();
    let _ = gso::segment_into(frame, &vnet, &mut scratch, |seg| {
        std::hint::black_box(seg);
    });

    FP.with(|fp| {
        let (_, fp) = &mut *fp.borrow_mut();
        let mut pkt = Packet::from_frame(frame, 1 + (ctl as u32 % 3));
        if ctl & 0x80 != 0 {
            pkt.vnet = vnet;
        }
        fp.process(std::slice::from_mut(&mut pkt), ctl as u64, &mut Null);
    });
});
