//! Software segmentation of the TSO/USO super-frames a TAP with
//! `IFF_VNET_HDR` hands over, and completion of partial checksums.
//!
//! A super-frame is Ethernet (with up to two VLAN tags), IPv4 or IPv6 (with
//! extension headers), then TCP (`GSO_TCPV4`/`GSO_TCPV6`) or UDP
//! (`GSO_UDP_L4`), then up to 64 KiB of payload. Each segment gets a copy of
//! all headers and `gso_size` bytes of payload, with the lengths, IPv4
//! identification and header checksum, TCP sequence number and flags, and the
//! L4 checksum fixed up. No partial checksum is left in the output.
//!
//! Header lengths are taken from the packet, not from `hdr_len`, which guests
//! and kernels do not always fill in correctly.

use super::ethernet::EtherType;
use super::ipv4::Ipv4Packet;
use super::ipv6::{self, Ipv6Packet};
use super::tcp::{self, TcpPacket};
use super::udp::{self, UdpPacket};
use super::virtio::VirtioNetHdr;
use super::{Error, IpPair, IpProtocol, Result, checksum, l2_layout, walk_ext_headers};

/// Where the headers of a super-frame are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Offset of the IP header.
    l3: usize,
    /// IPv4 (`true`) or IPv6.
    v4: bool,
    /// Offset of the TCP or UDP header.
    l4: usize,
    /// Offset of the payload: the end of the headers copied to each segment.
    payload: usize,
    /// The end of the IP packet (Ethernet padding excluded).
    end: usize,
    /// TCP (`true`) or UDP.
    tcp: bool,
    /// Addresses for the L4 pseudo-header.
    ip: IpPair,
}

/// Turn one frame read from a TAP into frames ready for the wire, calling
/// `emit` for each, in order; return how many there were.
///
/// - `GSO_NONE` with `NEEDS_CSUM`: the partial checksum is completed (in a copy
///   in `scratch`) and one frame is emitted.
/// - `GSO_NONE` without it: `frame` is emitted as it is.
/// - `GSO_TCPV4`, `GSO_TCPV6`, `GSO_UDP_L4` (with or without `GSO_ECN`): the
///   frame is cut into segments of `gso_size` payload bytes; a payload of at
///   most `gso_size` bytes gives one segment with its checksum filled in.
///
/// `scratch` is cleared and reused for every segment, so one buffer serves any
/// number of calls; `emit` must copy out what it keeps.
///
/// Returns `Err`, before calling `emit` at all, for a malformed frame, a
/// `gso_size` of 0, a GSO type that does not match the headers, an IP fragment,
/// an IPv6 Fragment header, or `GSO_UDP` (UFO), which is not supported.
pub fn segment_into<F: FnMut(&[u8])>(
    frame: &[u8],
    hdr: &VirtioNetHdr,
    scratch: &mut Vec<u8>,
    mut emit: F,
) -> Result<usize> {
    let kind = hdr.gso_kind();
    if kind == VirtioNetHdr::GSO_NONE {
        if hdr.needs_csum() {
            scratch.clear();
            scratch.extend_from_slice(frame);
            checksum::complete_partial(
                scratch,
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_offset),
            )?;
            emit(scratch);
        } else {
            emit(frame);
        }
        return Ok(1);
    }
    let layout = match kind {
        VirtioNetHdr::GSO_TCPV4 => parse_layout(frame, Some(true), IpProtocol::Tcp)?,
        VirtioNetHdr::GSO_TCPV6 => parse_layout(frame, Some(false), IpProtocol::Tcp)?,
        VirtioNetHdr::GSO_UDP_L4 => parse_layout(frame, None, IpProtocol::Udp)?,
        _ => return Err(Error),
    };
    let gso_size = usize::from(hdr.gso_size);
    if gso_size == 0 {
        return Err(Error);
    }
    let payload = &frame[layout.payload..layout.end];
    let headers = &frame[..layout.payload];
    let count = payload.len().div_ceil(gso_size).max(1);

    let ident0 = if layout.v4 {
        Ipv4Packet::new_unchecked(&frame[layout.l3..]).ident()
    } else {
        0
    };
    let (seq0, flags0) = if layout.tcp {
        let t = TcpPacket::new_unchecked(&frame[layout.l4..layout.end]);
        (t.seq_number(), t.flags())
    } else {
        (0, 0)
    };

    for i in 0..count {
        let start = i * gso_size;
        let chunk = &payload[start.min(payload.len())..(start + gso_size).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(headers);
        scratch.extend_from_slice(chunk);

        // Neither overflows: a segment is never longer than the super-frame,
        // whose lengths were read from 16-bit fields.
        if layout.v4 {
            let total_len = (scratch.len() - layout.l3) as u16;
            let mut ip = Ipv4Packet::new_unchecked(&mut scratch[layout.l3..]);
            ip.set_total_len(total_len);
            ip.set_ident(ident0.wrapping_add(i as u16));
            ip.fill_checksum();
        } else {
            let payload_len = (scratch.len() - layout.l3 - ipv6::HEADER_LEN) as u16;
            let mut ip = Ipv6Packet::new_unchecked(&mut scratch[layout.l3..]);
            ip.set_payload_len(payload_len);
        }

        if layout.tcp {
            let mut t = TcpPacket::new_unchecked(&mut scratch[layout.l4..]);
            t.set_seq_number(seq0.wrapping_add(start as u32));
            let mut flags = flags0;
            if i + 1 != count {
                flags &= !(tcp::flags::FIN | tcp::flags::PSH);
            }
            if i != 0 {
                flags &= !tcp::flags::CWR;
            }
            t.set_flags(flags);
            t.fill_checksum(&layout.ip);
        } else {
            let mut u = UdpPacket::new_unchecked(&mut scratch[layout.l4..]);
            u.set_len((udp::HEADER_LEN + chunk.len()) as u16);
            u.fill_checksum(&layout.ip);
        }
        emit(scratch);
    }
    Ok(count)
}

/// Like [`segment_into`], collecting the frames into `out` (appended; each
/// one a new allocation). Meant for tests and slow paths.
pub fn segment(frame: &[u8], hdr: &VirtioNetHdr, out: &mut Vec<Vec<u8>>) -> Result<usize> {
    let mut scratch = Vec::new();
    segment_into(frame, hdr, &mut scratch, |seg| out.push(seg.to_vec()))
}

/// Find the headers of a super-frame. `v4` is `None` when either IP version
/// will do.
fn parse_layout(frame: &[u8], v4: Option<bool>, proto: IpProtocol) -> Result<Layout> {
    let l2 = l2_layout(frame)?;
    let l3 = l2.l3_offset;
    let (is_v4, l4, end, ip) = match (l2.ethertype, v4) {
        (EtherType::Ipv4, Some(true) | None) => {
            let p = Ipv4Packet::new_checked(&frame[l3..])?;
            if p.version() != 4 || p.is_fragment() || p.next_header() != proto {
                return Err(Error);
            }
            let ip = IpPair::V4 {
                src: p.src_addr(),
                dst: p.dst_addr(),
            };
            let l4 = l3 + usize::from(p.header_len());
            (true, l4, l3 + usize::from(p.total_len()), ip)
        }
        (EtherType::Ipv6, Some(false) | None) => {
            let p = Ipv6Packet::new_checked(&frame[l3..])?;
            if p.version() != 6 {
                return Err(Error);
            }
            let walk = walk_ext_headers(p.next_header().into(), p.payload())?;
            if walk.frag.is_some() || walk.proto != u8::from(proto) {
                return Err(Error);
            }
            let ip = IpPair::V6 {
                src: p.src_addr(),
                dst: p.dst_addr(),
            };
            let l4 = l3 + ipv6::HEADER_LEN + walk.offset;
            (
                false,
                l4,
                l3 + ipv6::HEADER_LEN + usize::from(p.payload_len()),
                ip,
            )
        }
        _ => return Err(Error),
    };
    let payload = if proto == IpProtocol::Tcp {
        let t = TcpPacket::new_checked(&frame[l4..end])?;
        l4 + usize::from(t.header_len())
    } else {
        // The UDP length field of a USO super-frame is not reliable (it may
        // not fit 16 bits); the IP length bounds the datagram instead.
        if end - l4 < udp::HEADER_LEN {
            return Err(Error);
        }
        l4 + udp::HEADER_LEN
    };
    Ok(Layout {
        l3,
        v4: is_v4,
        l4,
        payload,
        end,
        tcp: proto == IpProtocol::Tcp,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::flags;
    use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
    use proptest::prelude::*;

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn tso_hdr(kind: u8, gso_size: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VirtioNetHdr::NEEDS_CSUM,
            gso_type: kind,
            // Deliberately wrong: segmentation must not trust it.
            hdr_len: 0,
            gso_size,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        }
    }

    /// A TCPv4 super-frame as a guest would send it: lengths for the whole
    /// frame and a partial checksum (the pseudo-header seed) in the TCP field.
    fn tcp4_super(data: &[u8], tcp_flags: u16) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1_000_000, 502)
            .ack(77);
        if tcp_flags & flags::FIN != 0 {
            b = b.fin();
        }
        if tcp_flags & flags::PSH != 0 {
            b = b.psh();
        }
        if tcp_flags & flags::CWR != 0 {
            b = b.cwr();
        }
        let mut frame = Vec::new();
        b.write(&mut frame, data).unwrap();
        // Identification 0x1234, and a partial checksum in place of the full one.
        frame[18..20].copy_from_slice(&0x1234u16.to_be_bytes());
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.fill_checksum();
        let seg_len = (frame.len() - 34) as u32;
        let seed = checksum::fold(checksum::pseudo_header_v4(
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            6,
            seg_len,
        ));
        frame[50..52].copy_from_slice(&seed.to_be_bytes());
        frame
    }

    fn tcp6_super(data: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(443, 50000, 0xffff_fff0, 1000)
            .ack(5)
            .psh()
            .write(&mut frame, data)
            .unwrap();
        frame
    }

    fn udp_super(data: &[u8], v6: bool) -> Vec<u8> {
        let mut frame = Vec::new();
        let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
        if v6 {
            b.ipv6([0xfd; 16], [0xfe; 16], 64)
                .udp(5000, 6000)
                .write(&mut frame, data)
                .unwrap();
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(5000, 6000)
                .write(&mut frame, data)
                .unwrap();
        }
        frame
    }

    /// Check a segment with etherparse: lengths and all checksums; return the
    /// TCP or UDP header and the payload.
    fn check_segment(seg: &[u8]) -> (TransportHeader, Vec<u8>, Option<u16>) {
        let h = PacketHeaders::from_ethernet_slice(seg).unwrap();
        let payload = h.payload.slice().to_vec();
        let mut ident = None;
        let transport = h.transport.clone().unwrap();
        match h.net.unwrap() {
            NetHeaders::Ipv4(ip, _) => {
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                assert_eq!(usize::from(ip.total_len), seg.len() - 14);
                ident = Some(ip.identification);
                match &transport {
                    TransportHeader::Tcp(t) => {
                        assert_eq!(t.checksum, t.calc_checksum_ipv4(&ip, &payload).unwrap())
                    }
                    TransportHeader::Udp(u) => {
                        assert_eq!(u.checksum, u.calc_checksum_ipv4(&ip, &payload).unwrap());
                        assert_eq!(usize::from(u.length), 8 + payload.len());
                    }
                    _ => panic!("unexpected transport"),
                }
            }
            NetHeaders::Ipv6(ip, _) => {
                assert_eq!(usize::from(ip.payload_length), seg.len() - 54);
                match &transport {
                    TransportHeader::Tcp(t) => {
                        assert_eq!(t.checksum, t.calc_checksum_ipv6(&ip, &payload).unwrap())
                    }
                    TransportHeader::Udp(u) => {
                        assert_eq!(u.checksum, u.calc_checksum_ipv6(&ip, &payload).unwrap());
                        assert_eq!(usize::from(u.length), 8 + payload.len());
                    }
                    _ => panic!("unexpected transport"),
                }
            }
            NetHeaders::Arp(_) => panic!("unexpected ARP"),
        }
        (transport, payload, ident)
    }

    #[test]
    fn tcp4_segments() {
        let data = payload(4000);
        let frame = tcp4_super(&data, flags::FIN | flags::PSH | flags::CWR);
        let mut out = Vec::new();
        let n = segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV4, 1448), &mut out).unwrap();
        assert_eq!(n, 3);
        assert_eq!(out.len(), 3);
        let mut joined = Vec::new();
        for (i, seg) in out.iter().enumerate() {
            let (t, p, ident) = check_segment(seg);
            let TransportHeader::Tcp(t) = t else { panic!() };
            assert_eq!(ident, Some(0x1234 + i as u16));
            assert_eq!(t.sequence_number, 1_000_000 + 1448 * i as u32);
            assert_eq!(t.acknowledgment_number, 77);
            assert!(t.ack);
            assert_eq!(t.fin, i == 2);
            assert_eq!(t.psh, i == 2);
            assert_eq!(t.cwr, i == 0);
            assert_eq!(p.len(), if i < 2 { 1448 } else { 4000 - 2 * 1448 });
            joined.extend_from_slice(&p);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn tcp6_segments_with_seq_wrap() {
        let data = payload(3000);
        let frame = tcp6_super(&data);
        let mut out = Vec::new();
        let hdr = tso_hdr(VirtioNetHdr::GSO_TCPV6 | VirtioNetHdr::GSO_ECN, 1000);
        assert_eq!(segment(&frame, &hdr, &mut out), Ok(3));
        let mut joined = Vec::new();
        for (i, seg) in out.iter().enumerate() {
            let (t, p, _) = check_segment(seg);
            let TransportHeader::Tcp(t) = t else { panic!() };
            assert_eq!(
                t.sequence_number,
                0xffff_fff0u32.wrapping_add(1000 * i as u32)
            );
            assert_eq!(t.psh, i == 2);
            joined.extend_from_slice(&p);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn largest_ipv6_super_frame() {
        // Payload length 65535: the IPv6 packet is 65575 bytes long.
        let data = payload(0xffff - 20);
        let frame = tcp6_super(&data);
        let mut out = Vec::new();
        assert_eq!(
            segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV6, 0xffff), &mut out),
            Ok(1)
        );
        assert_eq!(check_segment(&out[0]).1, data);
        out.clear();
        assert_eq!(
            segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV6, 9000), &mut out),
            Ok(8)
        );
        let joined: Vec<u8> = out.iter().flat_map(|s| check_segment(s).1).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn udp_segments() {
        for v6 in [false, true] {
            let data = payload(2500);
            let frame = udp_super(&data, v6);
            let mut out = Vec::new();
            let hdr = tso_hdr(VirtioNetHdr::GSO_UDP_L4, 1200);
            assert_eq!(segment(&frame, &hdr, &mut out), Ok(3));
            let sizes: Vec<usize> = out.iter().map(|s| check_segment(s).1.len()).collect();
            assert_eq!(sizes, vec![1200, 1200, 100]);
            let joined: Vec<u8> = out.iter().flat_map(|s| check_segment(s).1).collect();
            assert_eq!(joined, data);
        }
    }

    #[test]
    fn vlan_tagged_super_frame() {
        let data = payload(2000);
        let plain = tcp4_super(&data, 0);
        let mut frame = plain[..12].to_vec();
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        frame.extend_from_slice(&plain[12..]);
        let mut out = Vec::new();
        assert_eq!(
            segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV4, 1000), &mut out),
            Ok(2)
        );
        for seg in &out {
            let h = PacketHeaders::from_ethernet_slice(seg).unwrap();
            assert_eq!(h.vlan_ids().len(), 1);
            let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
                panic!()
            };
            assert_eq!(ip.header_checksum, ip.calc_header_checksum());
            assert_eq!(usize::from(ip.total_len), seg.len() - 18);
            let Some(TransportHeader::Tcp(t)) = h.transport else {
                panic!()
            };
            assert_eq!(
                t.checksum,
                t.calc_checksum_ipv4(&ip, h.payload.slice()).unwrap()
            );
        }
    }

    #[test]
    fn small_payload_is_one_segment() {
        let data = payload(100);
        let frame = tcp4_super(&data, flags::PSH);
        let mut out = Vec::new();
        assert_eq!(
            segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV4, 1448), &mut out),
            Ok(1)
        );
        let (t, p, _) = check_segment(&out[0]);
        let TransportHeader::Tcp(t) = t else { panic!() };
        assert!(t.psh);
        assert_eq!(p, data);
        // An exact multiple of gso_size does not produce an empty segment.
        let frame = tcp4_super(&payload(2896), 0);
        out.clear();
        assert_eq!(
            segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV4, 1448), &mut out),
            Ok(2)
        );
    }

    #[test]
    fn gso_none() {
        // Without NEEDS_CSUM the frame goes out untouched.
        let frame = tcp4_super(&payload(10), 0);
        let mut out = Vec::new();
        assert_eq!(segment(&frame, &VirtioNetHdr::default(), &mut out), Ok(1));
        assert_eq!(out[0], frame);
        // With it, the partial checksum is completed.
        let hdr = VirtioNetHdr {
            flags: VirtioNetHdr::NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        out.clear();
        assert_eq!(segment(&frame, &hdr, &mut out), Ok(1));
        check_segment(&out[0]);
        // A checksum field outside the frame.
        let bad = VirtioNetHdr {
            csum_start: frame.len() as u16 - 1,
            ..hdr
        };
        assert_eq!(segment(&frame, &bad, &mut out), Err(Error));
    }

    #[test]
    fn rejects() {
        let frame = tcp4_super(&payload(3000), 0);
        let mut calls = 0;
        let mut scratch = Vec::new();
        let mut try_hdr = |frame: &[u8], hdr: VirtioNetHdr| {
            segment_into(frame, &hdr, &mut scratch, |_| calls += 1)
        };
        // Wrong GSO type for the headers.
        assert_eq!(
            try_hdr(&frame, tso_hdr(VirtioNetHdr::GSO_TCPV6, 1000)),
            Err(Error)
        );
        assert_eq!(
            try_hdr(&frame, tso_hdr(VirtioNetHdr::GSO_UDP_L4, 1000)),
            Err(Error)
        );
        // UFO and unknown types.
        assert_eq!(
            try_hdr(&frame, tso_hdr(VirtioNetHdr::GSO_UDP, 1000)),
            Err(Error)
        );
        assert_eq!(try_hdr(&frame, tso_hdr(9, 1000)), Err(Error));
        // gso_size 0.
        assert_eq!(
            try_hdr(&frame, tso_hdr(VirtioNetHdr::GSO_TCPV4, 0)),
            Err(Error)
        );
        // An IPv4 fragment.
        let mut frag = frame.clone();
        frag[20] |= 0x20;
        assert_eq!(
            try_hdr(&frag, tso_hdr(VirtioNetHdr::GSO_TCPV4, 1000)),
            Err(Error)
        );
        // IP total length beyond the frame.
        let mut long = frame.clone();
        long[16..18].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(
            try_hdr(&long, tso_hdr(VirtioNetHdr::GSO_TCPV4, 1000)),
            Err(Error)
        );
        // Every truncation.
        for n in 0..54 {
            assert_eq!(
                try_hdr(&frame[..n], tso_hdr(VirtioNetHdr::GSO_TCPV4, 1000)),
                Err(Error)
            );
        }
        assert_eq!(calls, 0);
    }

    #[test]
    fn scratch_is_reused() {
        let frame = tcp4_super(&payload(5000), 0);
        let mut scratch = Vec::with_capacity(2000);
        let cap = scratch.capacity();
        let mut lens = Vec::new();
        let n = segment_into(
            &frame,
            &tso_hdr(VirtioNetHdr::GSO_TCPV4, 1448),
            &mut scratch,
            |s| lens.push(s.len()),
        )
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(lens, vec![1502, 1502, 1502, 54 + 5000 - 3 * 1448]);
        assert_eq!(scratch.capacity(), cap);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300),
                                           gso_type in any::<u8>(), gso_size in 0u16..100,
                                           flags in any::<u8>(), csum_start in 0u16..400,
                                           csum_offset in 0u16..400) {
            let hdr = VirtioNetHdr { flags, gso_type, hdr_len: 0, gso_size, csum_start,
                                     csum_offset, num_buffers: 0 };
            let mut out = Vec::new();
            let _ = segment(&data, &hdr, &mut out);
        }

        #[test]
        fn never_panics_on_mutated_frames(edits in proptest::collection::vec((0usize..200, any::<u8>()), 1..6),
                                          cut in 0usize..400, kind in 0usize..4,
                                          gso_size in 1u16..600) {
            let mut frame = match kind {
                0 => tcp4_super(&payload(300), 0),
                1 => tcp6_super(&payload(300)),
                2 => udp_super(&payload(300), false),
                _ => udp_super(&payload(300), true),
            };
            for (at, v) in edits {
                let at = at % frame.len();
                frame[at] = v;
            }
            frame.truncate(cut.max(1));
            for t in [VirtioNetHdr::GSO_TCPV4, VirtioNetHdr::GSO_TCPV6, VirtioNetHdr::GSO_UDP_L4] {
                let mut out = Vec::new();
                if segment(&frame, &tso_hdr(t, gso_size), &mut out).is_ok() {
                    prop_assert!(!out.is_empty());
                }
            }
        }

        /// Segments of any size reassemble to the original payload, and every
        /// segment's checksums verify.
        #[test]
        fn tcp_reassembles(len in 0usize..5000, gso_size in 1u16..2000) {
            let data = payload(len);
            let frame = tcp4_super(&data, 0);
            let mut out = Vec::new();
            let n = segment(&frame, &tso_hdr(VirtioNetHdr::GSO_TCPV4, gso_size), &mut out).unwrap();
            prop_assert_eq!(n, len.div_ceil(usize::from(gso_size)).max(1));
            let joined: Vec<u8> = out.iter().flat_map(|s| check_segment(s).1).collect();
            prop_assert_eq!(joined, data);
        }
    }
}
