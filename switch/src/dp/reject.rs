//! The `reject` action: drop a packet and tell its sender at once, as Linux's iptables
//! `REJECT` target (`nf_reject_ipv4.c`, `nf_reject_ipv6.c`) does with its defaults.
//! Kubernetes needs it for a Service with no endpoints: a client must see its connection
//! refused straight away, not wait for a timeout.
//!
//! What the answer is, chosen from the packet's bytes as they are when `reject` runs (after
//! any rewrite before it, e.g. after `ct(nat)` on a recirculated packet):
//!
//! - a TCP segment that is not itself a RST: a TCP RST (RFC 9293 §3.10.7.1; see
//!   [`build::tcp_rst`]);
//! - any other IPv4 packet (UDP, SCTP, ICMP echo, any protocol): ICMP destination
//!   unreachable, code 3 (port unreachable), quoting the IP header and as much of the
//!   datagram as keeps the answer within 576 bytes of IP. iptables' `REJECT` sends port
//!   unreachable whatever the protocol (`--reject-with icmp-port-unreachable` is its
//!   default), and so do we: no protocol unreachable for protocols other than UDP;
//! - any other IPv6 packet: ICMPv6 destination unreachable, code 4 (port unreachable),
//!   quoting up to 1280 bytes in all (ip6tables' default, `icmp6-port-unreachable`).
//!
//! Not answered (dropped and counted in [`RejectStats::unanswered`]), as RFC 1122 §3.2.2,
//! RFC 4443 §2.4(e) and `nf_reject` require: an ICMP or ICMPv6 error (and a redirect), a
//! RST, a packet to a broadcast or multicast address (IP or Ethernet), from a source that
//! is not unicast, a fragment other than the first (and any TCP fragment), a frame that is
//! not IP, and malformed frames (including a wrong IPv4 header checksum or, unless the
//! frame's checksum is partial, a wrong TCP checksum, as `nf_reject` checks it).
//!
//! The answer goes out of the port the packet came in on, with the Ethernet and IP
//! addresses (and for the RST the ports) swapped, TTL 64, every checksum computed in full
//! and no offload (a zero virtio-net header). The bytes an ICMP error quotes are those of
//! the frame, partial checksum and all.
//!
//! Answers are rate-limited per worker by a token bucket of [`RATE_PER_SEC`] with a burst
//! of [`BURST`]: Linux's global ICMP limit (`net.ipv4.icmp_msgs_per_sec` = 1000,
//! `icmp_msgs_burst` = 50). Linux does not limit the RSTs of `REJECT`; we do, so that a
//! flood towards a rejecting Service costs the switch a bounded amount of work.

use super::Sink;
use super::packet::Packet;
use crate::wire::build;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::vlan::l2_layout;
use crate::wire::{EtherType, IpProtocol, Ipv4Packet, Ipv6Packet, VirtioNetHdr, walk_ext_headers};
use std::net::{Ipv4Addr, Ipv6Addr};
use vswitch_proto::field::{ethertype, ipproto};
use vswitch_proto::flow::{Flow, frag};

/// Answers a worker may send per second, on average.
pub const RATE_PER_SEC: u64 = 1000;
/// Answers a worker may send at once after a quiet time.
pub const BURST: u64 = 50;

/// The ICMPv4 destination-unreachable code `reject` sends (port unreachable).
pub const ICMPV4_PORT_UNREACHABLE: u8 = 3;
/// The ICMPv6 destination-unreachable code `reject` sends (port unreachable).
pub const ICMPV6_PORT_UNREACHABLE: u8 = 4;

/// What `reject` did, per worker (summed in `vswitchctl show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectStats {
    /// Answers sent.
    pub sent: u64,
    /// Answers not sent because of the rate limit.
    pub rate_limited: u64,
    /// Packets that must not be answered (errors, broadcast, fragments, not IP...).
    pub unanswered: u64,
}

/// The kind of answer built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    TcpRst,
    Icmpv4PortUnreachable,
    Icmpv6PortUnreachable,
}

/// Build the answer to `frame` into `out` (cleared first). `l4_partial`: the frame's
/// transport checksum is partial (not to be verified). `None` when the frame must not be
/// answered; `out` is then empty.
pub fn build_answer(frame: &[u8], l4_partial: bool, out: &mut Vec<u8>) -> Option<Answer> {
    out.clear();
    let l2 = l2_layout(frame).ok()?;
    let eth = EthernetFrame::new_unchecked(frame);
    let l3 = frame.get(l2.l3_offset..)?;
    let tcp = |out: &mut Vec<u8>| {
        let r = if l4_partial {
            build::tcp_rst_partial_csum(frame, out)
        } else {
            build::tcp_rst(frame, out)
        };
        r.ok().map(|()| Answer::TcpRst)
    };
    match l2.ethertype {
        EtherType::Ipv4 => {
            let ip = Ipv4Packet::new_checked(l3).ok()?;
            if ip.next_header() == IpProtocol::Tcp {
                return tcp(out);
            }
            build::icmpv4_unreachable(
                frame,
                ICMPV4_PORT_UNREACHABLE,
                eth.dst_addr(),
                ip.dst_addr(),
                None,
                out,
            )
            .ok()
            .map(|()| Answer::Icmpv4PortUnreachable)
        }
        EtherType::Ipv6 => {
            let ip = Ipv6Packet::new_checked(l3).ok()?;
            let walk = walk_ext_headers(ip.next_header().into(), ip.payload()).ok()?;
            if walk.proto == ipproto::TCP && !walk.is_later_fragment() {
                return tcp(out);
            }
            build::icmpv6_unreachable(
                frame,
                ICMPV6_PORT_UNREACHABLE,
                eth.dst_addr(),
                ip.dst_addr(),
                out,
            )
            .ok()
            .map(|()| Answer::Icmpv6PortUnreachable)
        }
        _ => None,
    }
}

/// Whether `pkt`'s transport checksum is left for someone else to fill in.
fn l4_partial(pkt: &Packet) -> bool {
    pkt.vnet.needs_csum() || pkt.vnet.gso_type != VirtioNetHdr::GSO_NONE
}

/// A token bucket over a millisecond clock the caller passes in.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_sec: u64,
    burst: u64,
    /// Tokens, in thousandths.
    milli: u64,
    last_ms: Option<u64>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate_per_sec,
            burst,
            milli: burst * 1000,
            last_ms: None,
        }
    }

    /// Take a token at time `now_ms`, if there is one.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let last = *self.last_ms.get_or_insert(now_ms);
        // A clock that goes back refills nothing.
        let elapsed = now_ms.saturating_sub(last);
        if now_ms > last {
            self.last_ms = Some(now_ms);
        }
        // rate/s is rate/1000 tokens a millisecond: `rate` thousandths.
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(self.rate_per_sec))
            .min(self.burst * 1000);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// One worker's `reject` machinery: its rate limit, counters and buffers.
#[derive(Debug)]
pub struct Rejecter {
    limit: TokenBucket,
    buf: Vec<u8>,
    answer: Packet,
    pub(crate) stats: RejectStats,
}

impl Default for Rejecter {
    fn default() -> Rejecter {
        Rejecter::new(RATE_PER_SEC, BURST)
    }
}

impl Rejecter {
    pub fn new(rate_per_sec: u64, burst: u64) -> Rejecter {
        Rejecter {
            limit: TokenBucket::new(rate_per_sec, burst),
            buf: Vec::new(),
            answer: Packet::default(),
            stats: RejectStats::default(),
        }
    }

    pub fn stats(&self) -> RejectStats {
        self.stats
    }

    /// Answer `pkt` (which the caller then drops) out of the port it came in on.
    pub fn reject(&mut self, pkt: &Packet, now_ms: u64, sink: &mut dyn Sink) {
        if build_answer(pkt.data(), l4_partial(pkt), &mut self.buf).is_none() {
            self.stats.unanswered += 1;
            return;
        }
        if !self.limit.allow(now_ms) {
            self.stats.rate_limited += 1;
            return;
        }
        let a = &mut self.answer;
        a.set_frame(&self.buf);
        a.in_port = pkt.in_port;
        // Back through the tunnel it came from, if it came from one.
        a.tun.id = pkt.tun.id;
        a.tun.src = pkt.tun.dst;
        a.tun.dst = pkt.tun.src;
        sink.output(pkt.in_port, a);
        self.stats.sent += 1;
    }
}

/// What `reject` would send for a packet with flow `f`, in words, for `trace` (which
/// knows the flow, not the bytes: sequence numbers and checksums are not checked here).
pub fn describe(f: &Flow) -> String {
    let unanswered = |why: &str| format!("reject: not answered ({why}); the packet is dropped");
    let v6 = match f.dl_type() {
        ethertype::IPV4 => false,
        ethertype::IPV6 => true,
        _ => return unanswered("not IP"),
    };
    if f.dl_dst()[0] & 1 != 0 {
        return unanswered("Ethernet broadcast or multicast destination");
    }
    let (src, dst) = if v6 {
        let (s, d) = (Ipv6Addr::from(f.ipv6_src()), Ipv6Addr::from(f.ipv6_dst()));
        if d.is_multicast() || s.is_multicast() || s.is_unspecified() {
            return unanswered("multicast destination or source not unicast");
        }
        (s.to_string(), d.to_string())
    } else {
        let (s, d) = (Ipv4Addr::from(f.nw_src()), Ipv4Addr::from(f.nw_dst()));
        let bad = |a: Ipv4Addr| a.is_broadcast() || a.is_multicast() || a.is_unspecified();
        if bad(d) || bad(s) {
            return unanswered("broadcast or multicast address");
        }
        (s.to_string(), d.to_string())
    };
    if f.nw_frag() & frag::LATER != 0 {
        return unanswered("a fragment other than the first");
    }
    let out = format!("back out of in_port {}", f.in_port());
    match f.nw_proto() {
        ipproto::TCP => {
            if f.nw_frag() & frag::ANY != 0 {
                return unanswered("a TCP fragment");
            }
            let flags = f.tcp_flags();
            if flags & 0x004 != 0 {
                return unanswered("a RST");
            }
            let how = if flags & 0x010 != 0 {
                "RST with seq = the segment's ack"
            } else {
                "RST|ACK with seq 0, ack = the segment's seq + its length"
            };
            format!(
                "reject: TCP {how}, from {dst} port {} to {src} port {}, {out}",
                f.tp_dst(),
                f.tp_src()
            )
        }
        ipproto::ICMP if !v6 && matches!(f.tp_src(), 3 | 4 | 5 | 11 | 12) => {
            unanswered("an ICMP error")
        }
        ipproto::ICMPV6 if v6 && (f.tp_src() < 128 || f.tp_src() == 137) => {
            unanswered("an ICMPv6 error or redirect")
        }
        _ if v6 => format!(
            "reject: ICMPv6 destination unreachable (type 1 code {ICMPV6_PORT_UNREACHABLE}, \
             port unreachable) from {dst} to {src}, {out}"
        ),
        _ => format!(
            "reject: ICMP destination unreachable (type 3 code {ICMPV4_PORT_UNREACHABLE}, port \
             unreachable) from {dst} to {src}, {out}"
        ),
    }
}

#[cfg(test)]
mod tests;
