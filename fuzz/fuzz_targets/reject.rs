//! `reject` on arbitrary frames: building the answer never panics, and an answer is a
//! well-formed IPv4 or IPv6 packet back to the sender with every checksum right.
//!
//! Input layout: byte 0 says whether the frame's transport checksum is partial, the rest
//! is the frame.
//!
//! Run: `cd fuzz && cargo fuzz run -s none reject -- -max_total_time=60`
//! (seed corpus: `corpus/seeds/reject/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::dp::reject::build_answer;
use vswitch::wire::checksum::{checksum, sum};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, frame)) = data.split_first() else {
        return;
    };
    let mut out = Vec::new();
    if build_answer(frame, ctl & 1 != 0, &mut out).is_none() {
        assert!(out.is_empty());
        return;
    }
    assert_eq!(&out[0..6], &frame[6..12], "back to the sender's MAC");
    // The answer copies the frame's VLAN tags: find its L3 header.
    let mut l3 = 12;
    while matches!(u16::from_be_bytes([out[l3], out[l3 + 1]]), 0x8100 | 0x88a8) {
        l3 += 4;
    }
    let ety = u16::from_be_bytes([out[l3], out[l3 + 1]]);
    l3 += 2;
    match ety {
        0x0800 => {
            assert_eq!(checksum(&out[l3..l3 + 20]), 0, "IPv4 header checksum");
            let total = u16::from_be_bytes([out[l3 + 2], out[l3 + 3]]) as usize;
            assert_eq!(l3 + total, out.len());
            let l4 = &out[l3 + 20..];
            match out[l3 + 9] {
                1 => assert_eq!(checksum(l4), 0, "ICMP checksum"),
                6 => {
                    let pseudo = sum(&out[l3 + 12..l3 + 20], 6 + l4.len() as u32);
                    assert_eq!(!vswitch::wire::checksum::fold(sum(l4, pseudo)), 0, "TCP");
                }
                p => panic!("answer of protocol {p}"),
            }
        }
        0x86dd => {
            let l4 = &out[l3 + 40..];
            let pseudo = sum(&out[l3 + 8..l3 + 40], out[l3 + 6] as u32 + l4.len() as u32);
            assert_eq!(
                !vswitch::wire::checksum::fold(sum(l4, pseudo)),
                0,
                "L4 checksum"
            );
        }
        t => panic!("answer of ethertype {t:#x}"),
    }
});
