//! Fuzz how the control server cuts a connection's bytes into requests
//! (`vswitch::ctl::framer::Framer`): the first byte sets the longest request (0-63), the
//! next eight where the stream is cut into reads, the rest is the stream. Nothing may
//! panic, and the requests taken (or refused as too long) are exactly the stream's lines,
//! whatever the cuts.
//!
//! Run: `cd fuzz && cargo fuzz run -s none ctl_framing corpus/seeds/ctl_framing`
//! (seed corpus: `corpus/seeds/ctl_framing/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::ctl::framer::model::{framed, reference};

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(max % 64);
    let (cut_bytes, stream) = rest.split_at(rest.len().min(8));
    let cuts: Vec<usize> = cut_bytes.iter().map(|&b| usize::from(b)).collect();
    assert_eq!(framed(stream, &cuts, max), reference(stream, max));
});
