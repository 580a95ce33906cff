//! The connection tracker on random packets and random `ct` actions: packets built from
//! the input over a few addresses and ports (so connections meet, collide and get NATed
//! onto each other), arbitrary TCP flags and sequence numbers, raw bytes sometimes; a
//! small table (so it fills, evicts and refuses), a clock that jumps (so entries expire);
//! some packets are IP fragments, first or later, in any order.
//! Nothing may panic, and after every input the table's invariants hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vswitch::ct::{Config, Tracker, TupleFilter};
use vswitch::dp::action::DpCt;
use vswitch::dp::conntrack::Conntrack;
use vswitch::dp::packet::Packet;
use vswitch::flow::{Layers, extract};
use vswitch_proto::action::{Nat, NatKind};
use vswitch_proto::flow::Flow;

fn csum(d: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in d.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An Ethernet + IPv4 frame with `l4` as its payload (with flags and fragment offset
/// `frag`, identification `id`).
fn frame(src: u8, dst: u8, proto: u8, l4: &[u8], frag: u16, id: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x08, 0];
    let len = (20 + l4.len()) as u16;
    let [fh, fl] = frag.to_be_bytes();
    let mut ip = vec![0x45, 0, (len >> 8) as u8, len as u8, 0, id, fh, fl, 64, proto, 0, 0];
    ip.extend([10, 0, 0, src, 10, 0, 0, dst]);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend(ip);
    f.extend(l4);
    f
}

fuzz_target!(|data: &[u8]| {
    let (t, _) = Tracker::open(
        &Config {
            capacity: 16,
            ..Config::default()
        },
        0,
    )
    .unwrap();
    let mut w = t.worker(7);
    let mut now = 0u64;
    for op in data.chunks(16) {
        if op.len() < 16 {
            break;
        }
        let (src, dst) = (op[0] % 4 + 1, op[1] % 4 + 1);
        let (sp, dp) = ((op[2] % 4) as u16 + 1000, (op[3] % 3) as u16 + 53);
        let l4: Vec<u8> = match op[4] % 6 {
            0 | 1 => {
                // TCP with arbitrary flags, sequence and ack numbers, window.
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&sp.to_be_bytes());
                h[2..4].copy_from_slice(&dp.to_be_bytes());
                h[4..8].copy_from_slice(&op[5..9]);
                h[8..12].copy_from_slice(&op[9..13]);
                h[12] = 0x50;
                h[13] = op[13];
                h[14] = op[14];
                h
            }
            2 => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&sp.to_be_bytes());
                h[2..4].copy_from_slice(&dp.to_be_bytes());
                h[4..6].copy_from_slice(&8u16.to_be_bytes());
                h
            }
            3 => vec![[8, 0, 3, 11][(op[5] % 4) as usize], 0, 0, 0, 0, op[6] % 3, 0, 1],
            4 => {
                // An ICMP error quoting a UDP packet.
                let inner = frame(dst, src, 17, &[(dp >> 8) as u8, dp as u8, (sp >> 8) as u8, sp as u8, 0, 8, 0, 0], 0x4000, 0);
                let mut h = vec![3, 3, 0, 0, 0, 0, 0, 0];
                h.extend(&inner[14..]);
                h
            }
            _ => op[5..].to_vec(),
        };
        let proto = match op[4] % 6 {
            0 | 1 => 6,
            2 | 4 => 17,
            3 => 1,
            _ => op[15],
        };
        let proto = if op[4] % 6 == 4 { 1 } else { proto };
        // Mostly whole packets (DF); sometimes a first fragment, or a later one (of the
        // datagram whose first fragment had the same identification, or of none).
        let frag = match op[10] % 8 {
            0 => 0x2000,
            1 => 0x2001,
            2 => 0x0002,
            _ => 0x4000,
        };
        let bytes = frame(src, dst, proto, &l4, frag, op[8] % 2);
        let mut pkt = Packet::from_frame(&bytes, 1);
        let mut key = Flow::ZERO;
        let mut layers = Layers::default();
        if extract(pkt.data(), &mut key, &mut layers).is_err() {
            continue;
        }
        let a = op[15];
        let nat = match a % 5 {
            0 => Some(Nat {
                kind: Some(NatKind::Src),
                addrs: Some((IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))),
                ports: (a & 8 != 0).then_some((2000, 2001)),
                random: a & 16 != 0,
                persistent: a & 32 != 0,
                hash: false,
            }),
            1 => Some(Nat {
                kind: Some(NatKind::Dst),
                addrs: Some((IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)))),
                ports: Some((53, 53)),
                ..Nat::default()
            }),
            2 => Some(Nat::default()),
            _ => None,
        };
        let ct = DpCt {
            zone: (a >> 6) as u16,
            commit: a & 1 != 0,
            force: a & 2 != 0,
            nat,
            mark: Some((a as u32, 0xff)),
            label: None,
            alg: None,
            recirc: None,
        };
        w.track(&mut pkt, &layers, &key, &ct, now);
        now += [0, 1, 1000, 40_000, 200_000][(op[13] % 5) as usize];
        if op[12] == 0xff {
            t.flush(None, &TupleFilter::default());
        }
        if op[11] == 0xfe {
            t.sweep(now);
        }
    }
    if let Err(e) = t.check() {
        panic!("table invariant broken: {e}");
    }
});
