//! NAT on arbitrary frames: `extract`, then `icmp_error_quote`, `nat_packet` and
//! `nat_icmp_error` with arbitrary endpoints and offload state. Nothing may panic, and:
//! - a call that returns false leaves the frame exactly as it was;
//! - an IPv4 header whose checksum verified before a rewrite still verifies after it;
//! - a quote found in an error is still found after the error is NATed, with the quoted
//!   addresses asked for.
//!
//! Input layout: byte 0 picks the address family of the endpoints and which are present,
//! bytes 1..13 are a virtio-net header, bytes 13..89 four endpoints (16 address bytes, 2
//! port bytes, 1 byte saying whether the port is given), the rest is the frame.
//!
//! Run: `cd fuzz && cargo fuzz run -s none ct_rewrite -- -max_total_time=60`
//! (seed corpus: `corpus/seeds/ct_rewrite/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vswitch::ct::rewrite::{
    Endpoint, icmp_error_quote, ipv4_header_ok, nat_icmp_error, nat_packet,
};
use vswitch::dp::packet::Packet;
use vswitch::flow::{Layers, extract};
use vswitch::wire::virtio::VirtioNetHdr;
use vswitch_proto::field::ethertype;
use vswitch_proto::flow::Flow;

const EP_LEN: usize = 19;
const HEAD: usize = 13 + 4 * EP_LEN;

fn endpoint(b: &[u8], v6: bool, present: bool) -> Option<Endpoint> {
    if !present {
        return None;
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    let addr: IpAddr = if v6 {
        Ipv6Addr::from(a).into()
    } else {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
    };
    let port = (b[18] & 1 != 0).then(|| u16::from_be_bytes([b[16], b[17]]));
    Some(Endpoint { addr, port })
}

/// Whether the frame's IPv4 header (if it has one) verifies.
fn header_ok(key: &Flow, layers: &Layers, frame: &[u8]) -> bool {
    key.dl_type() == ethertype::IPV4
        && layers.l3 != 0
        && ipv4_header_ok(frame, layers.l3 as usize) == Some(true)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < HEAD {
        return;
    }
    let (ctl, hdr, eps, frame) = (data[0], &data[1..13], &data[13..HEAD], &data[HEAD..]);
    let v6 = ctl & 1 != 0;
    let ep = |i: usize| endpoint(&eps[i * EP_LEN..(i + 1) * EP_LEN], v6, ctl & (2 << i) != 0);

    let mut key = Flow::ZERO;
    let mut layers = Layers::default();
    let _ = extract(frame, &mut key, &mut layers);
    let mut pkt = Packet::from_frame(frame, 1);
    if ctl & 0x40 != 0 {
        pkt.vnet = VirtioNetHdr::parse(hdr).unwrap_or_default();
    }
    if ctl & 0x80 != 0 {
        // A partial checksum where it usually is: at the transport header.
        pkt.vnet.flags |= VirtioNetHdr::NEEDS_CSUM;
        pkt.vnet.csum_start = layers.l4 as u16;
    }
    let ok_before = header_ok(&key, &layers, frame);

    let quote = icmp_error_quote(&pkt, &key, &layers);
    let (inner_src, inner_dst) = (ep(0), ep(1));
    let outer = (ep(2).map(|e| e.addr), ep(3).map(|e| e.addr));
    let changed = nat_icmp_error(
        &mut pkt, &key, &layers, outer.0, outer.1, inner_src, inner_dst,
    );
    if !changed {
        assert_eq!(pkt.data(), frame, "refused, yet changed");
    } else {
        let q = quote.expect("NATed an error without a quote");
        let again = icmp_error_quote(&pkt, &key, &layers).expect("the quote is still there");
        assert_eq!(again.src, inner_src.map_or(q.src, |e| e.addr));
        assert_eq!(again.dst, inner_dst.map_or(q.dst, |e| e.addr));
        assert_eq!(again.proto, q.proto);
    }
    if ok_before {
        assert!(
            header_ok(&key, &layers, pkt.data()),
            "error NAT broke the IPv4 header checksum"
        );
    }

    let before = pkt.data().to_vec();
    if !nat_packet(&mut pkt, &key, &layers, ep(2), ep(3)) {
        assert_eq!(pkt.data(), &before[..], "refused, yet changed");
    }
    if ok_before {
        assert!(
            header_ok(&key, &layers, pkt.data()),
            "NAT broke the IPv4 header checksum"
        );
    }
});
