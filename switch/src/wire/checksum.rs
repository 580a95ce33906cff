//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Terms used here:
//!
//! - a *sum* is the one's complement sum of big-endian 16-bit words, possibly
//!   with carries not yet folded in;
//! - [`fold`] folds the carries into 16 bits, *without* complementing;
//! - a *checksum* as stored in a header is `!fold(sum)`;
//! - a *partial* checksum, as Linux leaves in the L4 checksum field for
//!   `CHECKSUM_PARTIAL` (virtio `NEEDS_CSUM`), is `fold(pseudo-header sum)`,
//!   not complemented; the device is expected to finish it with
//!   [`complete_partial`].

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Error, Result};

/// Add `a` and `b` with the carry out of bit 63 wrapped around.
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // When the addition overflowed, s <= 2^64 - 2, so adding the carry cannot.
    s + u64::from(carry)
}

/// Return the one's complement sum of `data` as big-endian 16-bit words, added to
/// `initial`; an odd trailing byte is padded with a zero byte.
///
/// The result is folded to at most `0xffff`, so a few results can be added in a
/// `u32` without overflow; call [`fold`] after adding.
///
/// `data` must start at an even offset of the checksummed region: the words are
/// taken from `data[0..2]`, `data[2..4]`, ...
pub fn sum(data: &[u8], initial: u32) -> u32 {
    // 2^64 ≡ 1 (mod 0xffff), so summing 64-bit big-endian words with end-around
    // carry gives the same one's complement sum as summing 16-bit words.
    let (words, tail) = data.as_chunks::<8>();
    let (pairs, odd_word) = words.as_chunks::<2>();
    let mut a = u64::from(initial);
    let mut b = 0u64;
    for [x, y] in pairs {
        a = add_carry(a, u64::from_be_bytes(*x));
        b = add_carry(b, u64::from_be_bytes(*y));
    }
    if let [x] = odd_word {
        a = add_carry(a, u64::from_be_bytes(*x));
    }
    let mut acc = add_carry(a, b);
    let (halves, rest) = tail.as_chunks::<2>();
    for h in halves {
        // At most three 16-bit additions: no overflow.
        acc = add_carry(acc, u64::from(u16::from_be_bytes(*h)));
    }
    if let [last] = rest {
        acc = add_carry(acc, u64::from(*last) << 8);
    }
    u32::from(fold(acc))
}

/// Fold the carries of a sum into 16 bits. The result is *not* complemented.
///
/// `fold` of a non-zero sum is never zero (it is `0xffff` for "negative zero").
pub fn fold(sum: impl Into<u64>) -> u16 {
    let mut s: u64 = sum.into();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Return the Internet checksum of `data`: `!fold(sum(data, 0))`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Return the sum of the IPv4 pseudo-header for an L4 payload of `len` bytes
/// with protocol `proto`. The result is unfolded and at most a few 0xffff.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u32 {
    let s = src.to_bits();
    let d = dst.to_bits();
    (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + u32::from(proto)
        + (len >> 16)
        + (len & 0xffff)
}

/// Return the sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an upper-layer
/// packet of `len` bytes with next header `next_header`. Unfolded, small.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let words = |a: Ipv6Addr| a.segments().iter().map(|&w| u32::from(w)).sum::<u32>();
    words(src) + words(dst) + u32::from(next_header) + (len >> 16) + (len & 0xffff)
}

/// Sum the 16-bit words of a `u32`.
#[inline]
fn words32(v: u32) -> u32 {
    (v >> 16) + (v & 0xffff)
}

/// Sum the 16-bit words of a `u128`.
#[inline]
fn words128(v: u128) -> u64 {
    (0..8).map(|i| u64::from((v >> (16 * i)) as u16)).sum()
}

/// Update a stored (complemented) checksum after a 16-bit word of the data
/// changed from `old` to `new` (RFC 1624, eqn. 3: `C' = ~(~C + ~m + m')`).
///
/// The words must sit at an even offset of the checksummed data. The result
/// equals a recomputation from scratch unless the new data is all zeros.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(!old) + u32::from(new))
}

/// Like [`update16`] for a 32-bit field at an even offset (an IPv4 address).
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    // ~old as a sum of two words is (0xffff - hi) + (0xffff - lo).
    !fold(u64::from(!csum) + u64::from(words32(!old)) + u64::from(words32(new)))
}

/// Like [`update16`] for a 128-bit field at an even offset (an IPv6 address).
pub fn update128(csum: u16, old: u128, new: u128) -> u16 {
    !fold(u64::from(!csum) + words128(!old) + words128(new))
}

/// Update a *partial* checksum (the folded, uncomplemented pseudo-header sum
/// Linux leaves for `CHECKSUM_PARTIAL`) after a pseudo-header word changed:
/// `S' = fold(S + ~m + m')`, as Linux `inet_proto_csum_replace*` does.
pub fn update_partial16(field: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(field) + u32::from(!old) + u32::from(new))
}

/// Like [`update_partial16`] for a 32-bit field (an IPv4 address).
pub fn update_partial32(field: u16, old: u32, new: u32) -> u16 {
    fold(u64::from(field) + u64::from(words32(!old)) + u64::from(words32(new)))
}

/// Like [`update_partial16`] for a 128-bit field (an IPv6 address).
pub fn update_partial128(field: u16, old: u128, new: u128) -> u16 {
    fold(u64::from(field) + words128(!old) + words128(new))
}

/// Finish a partial checksum as a NIC would for `CHECKSUM_PARTIAL`: checksum
/// `frame[csum_start..]` (the field at `csum_start + csum_offset` holds the
/// pseudo-header seed and is included) and store the result in that field.
///
/// A result of 0 is stored as 0xffff, as Linux does: it is the same value in
/// one's complement, and for UDP 0 would mean "no checksum".
///
/// Returns `Err` if the field does not fit in `frame`.
pub fn complete_partial(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<()> {
    let at = csum_start.checked_add(csum_offset).ok_or(Error)?;
    if at.checked_add(2).ok_or(Error)? > frame.len() || csum_start > frame.len() {
        return Err(Error);
    }
    let c = checksum(&frame[csum_start..]);
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain RFC 1071 algorithm, as a reference.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum() {
        // A real IPv4 header whose checksum field (0xb861) is correct.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(sum(&[], 0), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 7)), 0x1234 + 0x5600 + 7);
    }

    #[test]
    fn fold_is_not_complemented() {
        assert_eq!(fold(0x1_fffe_u32), 0xffff);
        assert_eq!(fold(0xffff_ffff_u32), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0u32), 0);
    }

    #[test]
    fn pseudo_headers_match_etherparse() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let udp = etherparse::UdpHeader {
            source_port: 1,
            destination_port: 2,
            length: 12,
            checksum: 0,
        };
        let payload = [1u8, 2, 3, 4];
        let mut seg = udp.to_bytes().to_vec();
        seg.extend_from_slice(&payload);
        let ours = !fold(sum(&seg, pseudo_header_v4(src, dst, 17, 12)));
        let theirs = udp
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &payload)
            .unwrap();
        assert_eq!(ours, theirs);

        let src6: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst6: Ipv6Addr = "fd00:ffff::abcd:2".parse().unwrap();
        let ours6 = !fold(sum(&seg, pseudo_header_v6(src6, dst6, 17, 12)));
        let theirs6 = udp
            .calc_checksum_ipv6_raw(src6.octets(), dst6.octets(), &payload)
            .unwrap();
        assert_eq!(ours6, theirs6);
    }

    #[test]
    fn complete_partial_bounds() {
        let mut f = [0u8; 10];
        assert_eq!(complete_partial(&mut f, 0, 9), Err(Error));
        assert_eq!(complete_partial(&mut f, 11, 0), Err(Error));
        assert_eq!(complete_partial(&mut f, usize::MAX, 1), Err(Error));
        assert_eq!(complete_partial(&mut f, 1, usize::MAX), Err(Error));
        assert_eq!(complete_partial(&mut f, 8, 0), Ok(()));
        // All zeros sum to zero; the stored checksum becomes 0xffff, not 0.
        assert_eq!(&f[8..], &[0xff, 0xff]);
    }

    #[test]
    fn complete_partial_matches_full_checksum() {
        // A UDP datagram whose checksum field holds the pseudo-header seed.
        let src = Ipv4Addr::new(192, 168, 1, 1);
        let dst = Ipv4Addr::new(192, 168, 1, 2);
        let payload = b"hello, partial checksum";
        let udp = etherparse::UdpHeader::with_ipv4_checksum(
            5000,
            6000,
            &etherparse::Ipv4Header::new(
                (8 + payload.len()) as u16,
                64,
                etherparse::IpNumber::UDP,
                src.octets(),
                dst.octets(),
            )
            .unwrap(),
            payload,
        )
        .unwrap();
        let mut frame = vec![0xeeu8; 4]; // something before csum_start
        frame.extend_from_slice(&udp.to_bytes());
        frame.extend_from_slice(payload);
        let seed = fold(pseudo_header_v4(src, dst, 17, (8 + payload.len()) as u32));
        frame[4 + 6..4 + 8].copy_from_slice(&seed.to_be_bytes());
        complete_partial(&mut frame, 4, 6).unwrap();
        assert_eq!(u16::from_be_bytes([frame[10], frame[11]]), udp.checksum);
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300),
                                 skip in 0usize..40) {
            prop_assert_eq!(fold(sum(&data, 0)), reference_sum(&data));
            // Any even starting point within the buffer.
            let start = (skip * 2).min(data.len() & !1);
            prop_assert_eq!(fold(sum(&data[start..], 0)), reference_sum(&data[start..]));
        }

        #[test]
        fn sum_with_initial(data in proptest::collection::vec(any::<u8>(), 0..64),
                            initial in any::<u32>()) {
            let expect = fold(u64::from(reference_sum(&data)) + u64::from(initial));
            prop_assert_eq!(fold(sum(&data, initial)), expect);
        }

        /// Changing a word and updating the stored checksum gives the same value
        /// as recomputing it. The first word is non-zero, as in any real header.
        #[test]
        fn update16_matches_recompute(mut data in proptest::collection::vec(any::<u16>(), 2..40),
                                      idx in any::<proptest::sample::Index>(),
                                      new in any::<u16>()) {
            data[0] |= 1;
            let i = 1 + idx.index(data.len() - 1);
            let bytes = |d: &[u16]| d.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
            let before = checksum(&bytes(&data));
            let old = data[i];
            data[i] = new;
            prop_assert_eq!(update16(before, old, new), checksum(&bytes(&data)));
        }

        #[test]
        fn update32_and_128_match_recompute(head in 1u16.., mid in any::<u128>(),
                                            old4 in any::<u32>(), new4 in any::<u32>(),
                                            old16 in any::<u128>(), new16 in any::<u128>()) {
            let build = |a: u32, b: u128| {
                let mut v = head.to_be_bytes().to_vec();
                v.extend_from_slice(&a.to_be_bytes());
                v.extend_from_slice(&mid.to_be_bytes());
                v.extend_from_slice(&b.to_be_bytes());
                v
            };
            let c0 = checksum(&build(old4, old16));
            let c1 = update32(c0, old4, new4);
            prop_assert_eq!(c1, checksum(&build(new4, old16)));
            let c2 = update128(c1, old16, new16);
            prop_assert_eq!(c2, checksum(&build(new4, new16)));
        }

        /// A partial checksum seed updated for an address change equals the seed
        /// computed from scratch with the new address, and completes to the
        /// right full checksum.
        #[test]
        fn partial_updates_match_recompute(src in any::<u32>(), dst in any::<u32>(),
                                           new_src in any::<u32>(), port in any::<u16>(),
                                           new_port in any::<u16>(),
                                           src6 in any::<u128>(), dst6 in any::<u128>(),
                                           new_dst6 in any::<u128>(),
                                           payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let len = 8 + payload.len() as u32;
            let seed = |s: u32, d: u32| fold(pseudo_header_v4(s.into(), d.into(), 17, len));
            let s0 = seed(src, dst);
            prop_assert_eq!(update_partial32(s0, src, new_src), seed(new_src, dst));

            let seed6 = |s: u128, d: u128| fold(pseudo_header_v6(s.into(), d.into(), 17, len));
            let s6 = seed6(src6, dst6);
            prop_assert_eq!(update_partial128(s6, dst6, new_dst6), seed6(src6, new_dst6));

            // A port is not in the pseudo-header but in the data: the seed does
            // not change, and completing still yields the right checksum.
            let mut dgram = vec![0u8; 8];
            dgram[0..2].copy_from_slice(&port.to_be_bytes());
            dgram[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            dgram.extend_from_slice(&payload);
            dgram[6..8].copy_from_slice(&seed(new_src, dst).to_be_bytes());
            dgram[0..2].copy_from_slice(&new_port.to_be_bytes());
            complete_partial(&mut dgram, 0, 6).unwrap();
            let mut check = dgram.clone();
            check[6..8].copy_from_slice(&[0, 0]);
            let full = !fold(sum(&check, pseudo_header_v4(new_src.into(), dst.into(), 17, len)));
            let full = if full == 0 { 0xffff } else { full };
            prop_assert_eq!(u16::from_be_bytes([dgram[6], dgram[7]]), full);

            // update_partial16 on a 16-bit pseudo-header word (the length).
            let l2 = len + 4;
            let s_len = update_partial16(s0, len as u16, l2 as u16);
            prop_assert_eq!(s_len, fold(pseudo_header_v4(src.into(), dst.into(), 17, l2)));
        }
    }
}

/// CRC-32C (Castagnoli, reflected, as SCTP uses it: RFC 9260 appendix A) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    const fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u32; 256] = table();
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod crc32c_tests {
    #[test]
    fn check_value() {
        // The standard check value of CRC-32C.
        assert_eq!(super::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(super::crc32c(b""), 0);
    }
}
