//! What the tracker needs from one TCP segment, read from the header and its options.

/// TCP flag bits as they sit in [`Segment::flags`] (the low 12 bits of header bytes 12-13).
pub use vswitch_proto::flow::tcp_flags as flag;

use crate::wire::tcp::TcpPacket;

/// TCP option kinds the tracker reads.
mod opt {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const WINDOW: u8 = 3;
    pub const WINDOW_LEN: u8 = 3;
    pub const SACK_PERM: u8 = 4;
    pub const SACK_PERM_LEN: u8 = 2;
    pub const SACK: u8 = 5;
    pub const SACK_BLOCK_LEN: u8 = 8;
}

/// One TCP segment as the connection tracker sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent, before any scaling.
    pub win: u16,
    /// Flag bits, see [`flag`]. Combinations are checked by the tracker, not by `parse`:
    /// a SYN|FIN parses fine and is then Invalid.
    pub flags: u16,
    /// Bytes of payload after the header (from the IP length, not from the slice).
    pub payload_len: u32,
    /// The window scale option's shift as sent (the tracker caps it at 14, RFC 7323).
    pub wscale: Option<u8>,
    /// The SACK-permitted option was present.
    pub sack_perm: bool,
    /// Highest right edge among the blocks of the first SACK option, if there is one.
    /// The tracker uses it in place of `ack` when the receiver allowed SACK, since the
    /// receiver may have seen (and the sender may count on) data beyond `ack`.
    pub sack: Option<u32>,
}

impl Segment {
    /// Reads a segment from `tcp`, the bytes from the TCP header on (payload may follow).
    /// `payload_len` is the payload length the IP header gives.
    ///
    /// None when the header is malformed: shorter than 20 bytes, a data offset below 5 or
    /// past the end of `tcp`, or an option whose length is below 2 or runs past the
    /// header. Options with an unexpected length for their kind are skipped, as Linux does.
    pub fn parse(tcp: &[u8], payload_len: u32) -> Option<Segment> {
        let h = TcpPacket::new_checked(tcp).ok()?;
        let mut seg = Segment {
            seq: h.seq_number(),
            ack: h.ack_number(),
            win: h.window_len(),
            flags: h.flags(),
            payload_len,
            ..Segment::default()
        };
        parse_options(h.options(), &mut seg)?;
        Some(seg)
    }

    /// Whether all of `bits` are set.
    pub fn has(&self, bits: u16) -> bool {
        self.flags & bits == bits
    }

    /// The sequence number just past this segment: SYN and FIN each take one.
    pub fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.payload_len)
            .wrapping_add(u32::from(self.has(flag::SYN)))
            .wrapping_add(u32::from(self.has(flag::FIN)))
    }

    /// Linux's `tcp_valid_flags`: the combinations of FIN, SYN, RST, ACK and URG a real
    /// stack sends (PSH, ECE, CWR and the bits above them do not matter). Anything else,
    /// such as SYN|FIN, SYN|RST or no flags at all, is a scan or garbage.
    pub fn valid_flags(&self) -> bool {
        use flag::*;
        const VALID: [u16; 9] = [
            SYN,
            SYN | URG,
            SYN | ACK,
            RST,
            RST | ACK,
            FIN | ACK,
            FIN | ACK | URG,
            ACK,
            ACK | URG,
        ];
        let f = self.flags & (FIN | SYN | RST | ACK | URG);
        VALID.contains(&f)
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Walks the options (RFC 9293 3.2): EOL ends them, NOP is one byte, every other kind has
/// a length byte counting itself and the kind. None on a length that cannot be right.
fn parse_options(mut o: &[u8], seg: &mut Segment) -> Option<()> {
    while let Some(&kind) = o.first() {
        match kind {
            opt::EOL => break,
            opt::NOP => o = &o[1..],
            _ => {
                let len = *o.get(1)?;
                if len < 2 || usize::from(len) > o.len() {
                    return None;
                }
                let body = &o[2..usize::from(len)];
                match (kind, len) {
                    (opt::WINDOW, opt::WINDOW_LEN) => seg.wscale = Some(body[0]),
                    (opt::SACK_PERM, opt::SACK_PERM_LEN) => seg.sack_perm = true,
                    (opt::SACK, _) if seg.sack.is_none() => seg.sack = highest_right_edge(body),
                    _ => {}
                }
                o = &o[usize::from(len)..];
            }
        }
    }
    Some(())
}

/// The right edge of the SACK block that ends furthest in sequence space, as Linux's
/// `tcp_sack` finds it. None unless the option holds at least one block, and whole ones.
fn highest_right_edge(blocks: &[u8]) -> Option<u32> {
    let n = usize::from(opt::SACK_BLOCK_LEN);
    if blocks.is_empty() || !blocks.len().is_multiple_of(n) {
        return None;
    }
    blocks
        .chunks_exact(n)
        .map(|b| be32(b, 4))
        .reduce(|best, edge| if super::after(edge, best) { edge } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN from a Linux client: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    const SYN: [u8; 40] = [
        0xc3, 0x50, 0x00, 0x50, // ports 50000 -> 80
        0x11, 0x22, 0x33, 0x44, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 0,    // timestamps
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    #[test]
    fn reads_a_real_syn() {
        let s = Segment::parse(&SYN, 0).unwrap();
        assert_eq!(s.seq, 0x1122_3344);
        assert_eq!(s.ack, 0);
        assert_eq!(s.win, 64240);
        assert_eq!(s.flags, flag::SYN);
        assert_eq!(s.wscale, Some(7));
        assert!(s.sack_perm);
        assert_eq!(s.sack, None);
        assert_eq!(s.end(), 0x1122_3345);
        assert!(s.valid_flags());
    }

    #[test]
    fn payload_after_the_header_is_not_options() {
        let mut bytes = SYN.to_vec();
        bytes.extend_from_slice(&[0x03, 0x03, 0x09, 0xff]);
        let s = Segment::parse(&bytes, 4).unwrap();
        assert_eq!(s.wscale, Some(7));
        assert_eq!(s.end(), 0x1122_3344 + 4 + 1);
    }

    #[test]
    fn sack_takes_the_highest_right_edge() {
        let mut h = [0u8; 48];
        h[12] = 12 << 4;
        h[13] = flag::ACK as u8;
        // NOP NOP SACK with three blocks; the middle one ends furthest.
        h[20..24].copy_from_slice(&[1, 1, 5, 26]);
        for (i, (l, r)) in [(100u32, 200u32), (300, 400), (250, 260)]
            .iter()
            .enumerate()
        {
            h[24 + i * 8..28 + i * 8].copy_from_slice(&l.to_be_bytes());
            h[28 + i * 8..32 + i * 8].copy_from_slice(&r.to_be_bytes());
        }
        let s = Segment::parse(&h, 0).unwrap();
        assert_eq!(s.sack, Some(400));
    }

    #[test]
    fn malformed_headers_are_none() {
        assert_eq!(Segment::parse(&SYN[..19], 0), None, "short");
        let mut b = SYN;
        b[12] = 4 << 4;
        assert_eq!(Segment::parse(&b, 0), None, "offset below 5");
        b[12] = 11 << 4;
        assert_eq!(Segment::parse(&b, 0), None, "offset past the slice");
        let mut b = SYN;
        b[21] = 1;
        assert_eq!(Segment::parse(&b, 0), None, "option length 1");
        let mut b = SYN;
        b[38] = 4;
        assert_eq!(Segment::parse(&b, 0), None, "option past the header");
        let mut b = SYN;
        b[37..40].copy_from_slice(&[1, 1, 3]);
        assert_eq!(Segment::parse(&b, 0), None, "kind without a length byte");
    }

    #[test]
    fn odd_options_are_skipped_and_eol_stops() {
        let mut b = SYN;
        b[37..40].copy_from_slice(&[0x03, 0x02, 0x01]); // window scale with length 2, NOP
        let s = Segment::parse(&b, 0).unwrap();
        assert_eq!(s.wscale, None);
        let mut b = SYN;
        b[20] = 0; // EOL first: nothing after it counts
        assert_eq!(Segment::parse(&b, 0).unwrap().wscale, None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), len in 0u32..100) {
            if let Some(s) = Segment::parse(&bytes, len) {
                proptest::prop_assert!(bytes.len() >= 20);
                proptest::prop_assert_eq!(s.payload_len, len);
            }
        }
    }

    #[test]
    fn flag_combinations() {
        use flag::*;
        let v = |flags| {
            Segment {
                flags,
                ..Segment::default()
            }
            .valid_flags()
        };
        for ok in [
            SYN,
            SYN | ACK,
            ACK | PSH,
            FIN | ACK,
            RST,
            RST | ACK,
            ACK | ECE | CWR | NS,
        ] {
            assert!(v(ok), "{ok:#x}");
        }
        for bad in [
            0,
            FIN,
            SYN | FIN,
            SYN | RST,
            SYN | ACK | URG,
            RST | FIN | ACK,
            PSH,
            URG,
        ] {
            assert!(!v(bad), "{bad:#x}");
        }
    }
}
