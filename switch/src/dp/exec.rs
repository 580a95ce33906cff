//! Executing datapath actions on a packet's bytes.
//!
//! Header rewrites keep every checksum valid by incremental update (RFC 1624): the IPv4
//! header checksum, and the TCP/UDP/ICMPv6 checksum when an address in its pseudo-header
//! or a port changes. A frame whose L4 checksum is left *partial* (virtio-net
//! `NEEDS_CSUM`: the field holds the pseudo-header sum, to be finished by whoever sends the
//! frame on) gets its partial sum updated for pseudo-header changes only, since the rest
//! is summed later anyway.

use super::Sink;
use super::action::{DpAction, DropReason, METADATA_WORDS};
use super::conntrack::Conntrack;
use super::packet::Packet;
use super::reject::Rejecter;
use crate::flow::{Layers, extract};
use crate::wire::checksum::{update_partial32, update_partial128, update16, update32, update128};
use vswitch_proto::field::{ethertype, ipproto};
use vswitch_proto::flow::Flow;

#[inline(always)]
pub(crate) fn rd16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}
#[inline(always)]
pub(crate) fn wr16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
#[inline(always)]
pub(crate) fn rd32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}
#[inline(always)]
pub(crate) fn wr32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
pub(crate) fn rd128(d: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[at..at + 16]);
    u128::from_be_bytes(a)
}
pub(crate) fn wr128(d: &mut [u8], at: usize, v: u128) {
    d[at..at + 16].copy_from_slice(&v.to_be_bytes());
}

/// Where a packet's transport checksum lives and how to update it.
///
/// Shared with [`crate::ct::rewrite`] (NAT), which also builds one for the transport
/// header quoted inside an ICMP error.
#[derive(Clone, Copy)]
pub(crate) struct L4Csum {
    /// The checksum field's offset in the frame.
    pub(crate) at: usize,
    /// The field holds a partial (pseudo-header) sum.
    pub(crate) partial: bool,
    /// UDP over IPv4: a zero checksum means "none" and must stay zero.
    pub(crate) udp4: bool,
    /// UDP (either version): a computed zero is sent as 0xffff (RFC 768, RFC 8200).
    pub(crate) udp: bool,
    /// The pseudo-header is part of the sum (TCP, UDP, ICMPv6; not ICMPv4).
    pub(crate) pseudo: bool,
}

pub(crate) fn l4_csum(pkt: &Packet, key: &Flow, layers: &Layers) -> Option<L4Csum> {
    if layers.l4 == 0 {
        return None;
    }
    let l4 = layers.l4 as usize;
    let v6 = key.dl_type() == ethertype::IPV6;
    let (ofs, pseudo) = match key.nw_proto() {
        ipproto::TCP => (16, true),
        ipproto::UDP => (6, true),
        ipproto::ICMPV6 if v6 => (2, true),
        ipproto::ICMP if !v6 => (2, false),
        _ => return None,
    };
    let at = l4 + ofs;
    if at + 2 > pkt.len() {
        return None;
    }
    let partial = pkt.vnet.needs_csum() && pkt.vnet.csum_start as usize == l4;
    Some(L4Csum {
        at,
        partial,
        udp4: key.nw_proto() == ipproto::UDP && !v6,
        udp: key.nw_proto() == ipproto::UDP,
        pseudo,
    })
}

impl L4Csum {
    fn skip(&self, d: &[u8]) -> bool {
        self.udp4 && !self.partial && rd16(d, self.at) == 0
    }

    fn store(&self, d: &mut [u8], v: u16) {
        wr16(
            d,
            self.at,
            if self.udp && !self.partial && v == 0 {
                0xffff
            } else {
                v
            },
        );
    }

    /// A 32-bit pseudo-header field (an IPv4 address) changed.
    pub(crate) fn pseudo32(&self, d: &mut [u8], old: u32, new: u32) {
        if !self.pseudo || self.skip(d) {
            return;
        }
        let v = rd16(d, self.at);
        let nv = if self.partial {
            update_partial32(v, old, new)
        } else {
            update32(v, old, new)
        };
        self.store(d, nv);
    }

    /// A 128-bit pseudo-header field (an IPv6 address) changed.
    pub(crate) fn pseudo128(&self, d: &mut [u8], old: u128, new: u128) {
        if !self.pseudo || self.skip(d) {
            return;
        }
        let v = rd16(d, self.at);
        let nv = if self.partial {
            update_partial128(v, old, new)
        } else {
            update128(v, old, new)
        };
        self.store(d, nv);
    }

    /// Summed bytes changed: 16-bit words at even offsets from the transport header.
    pub(crate) fn data(&self, d: &mut [u8], old: &[u8], new: &[u8]) {
        if self.partial || self.skip(d) {
            return;
        }
        let mut v = rd16(d, self.at);
        for (o, n) in old.chunks(2).zip(new.chunks(2)) {
            let o = u16::from_be_bytes([o[0], *o.get(1).unwrap_or(&0)]);
            let n = u16::from_be_bytes([n[0], *n.get(1).unwrap_or(&0)]);
            v = update16(v, o, n);
        }
        self.store(d, v);
    }
}

/// Spent metadata boxes of recirculated packets, for reuse: boxes, since each moves into
/// a packet as it is (`Packet::recirc`).
#[allow(clippy::vec_box)]
pub(crate) type MdPool = Vec<Box<Flow>>;

/// What became of the packet.
pub(crate) enum Outcome {
    /// It went somewhere (a port, the controller, conntrack).
    Sent,
    /// Nothing sent it anywhere.
    NoOutput,
    Dropped(DropReason),
}

/// Run `actions` on `pkt`. Copies to recirculate after conntrack go to `recirc`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn execute<C: Conntrack>(
    actions: &[DpAction],
    pkt: &mut Packet,
    key: &Flow,
    layers: &mut Layers,
    sink: &mut dyn Sink,
    ct: &mut C,
    now: u64,
    recirc: &mut Vec<Packet>,
    md_pool: &mut MdPool,
    rejecter: &mut Rejecter,
) -> Outcome {
    let mut st = ListState::default();
    let mut env = Env {
        sink,
        ct,
        now,
        recirc,
        md_pool,
        rejecter,
    };
    if let Some(o) = run_list(actions, true, &mut st, pkt, key, layers, &mut env) {
        return o;
    }
    if st.sent {
        Outcome::Sent
    } else {
        Outcome::NoOutput
    }
}

/// What the actions run so far did, carried into a select group's branch.
#[derive(Default)]
struct ListState {
    sent: bool,
    /// Whether a header was rewritten (then conntrack must see the packet as it is now).
    rewritten: bool,
    /// The key with its conntrack fields zeroed, once a `ct_clear` ran: what a later
    /// `ct(...)` and the recirculated copy must see.
    cleared: Option<Flow>,
}

/// Where the packet's actions send it and what they use.
struct Env<'a, C> {
    sink: &'a mut dyn Sink,
    ct: &'a mut C,
    now: u64,
    recirc: &'a mut Vec<Packet>,
    /// Spent metadata boxes of recirculated packets, to reuse (no allocation per pass).
    md_pool: &'a mut MdPool,
    rejecter: &'a mut Rejecter,
}

/// A select group's branch: [`run_list`] out of line, so that the list the fast path
/// runs for every packet stays inlined in [`execute`].
#[inline(never)]
fn run_branch<C: Conntrack>(
    actions: &[DpAction],
    tail: bool,
    st: &mut ListState,
    pkt: &mut Packet,
    key: &Flow,
    layers: &mut Layers,
    env: &mut Env<'_, C>,
) -> Option<Outcome> {
    run_list(actions, tail, st, pkt, key, layers, env)
}

/// Run one list of actions; `tail` when nothing runs after it. `Some` ends the packet.
#[inline(always)]
fn run_list<C: Conntrack>(
    actions: &[DpAction],
    tail: bool,
    st: &mut ListState,
    pkt: &mut Packet,
    key: &Flow,
    layers: &mut Layers,
    env: &mut Env<'_, C>,
) -> Option<Outcome> {
    let now = env.now;
    let ListState {
        sent,
        rewritten,
        cleared,
    } = st;
    for (i, a) in actions.iter().enumerate() {
        if !matches!(
            a,
            DpAction::Output(_)
                | DpAction::Ct(_)
                | DpAction::CtClear
                | DpAction::Controller { .. }
                | DpAction::Learn(_)
                | DpAction::FinTimeout { .. }
                | DpAction::Meter(..)
                | DpAction::Drop(_)
                | DpAction::SetTunnel { .. }
                | DpAction::Reject
                | DpAction::Select(_)
        ) {
            *rewritten = true;
        }
        match a {
            DpAction::Output(p) => {
                env.sink.output(*p, pkt);
                *sent = true;
            }
            DpAction::SetEth { src, dst } => {
                let d = pkt.data_mut();
                if let Some(m) = dst {
                    d[0..6].copy_from_slice(m);
                }
                if let Some(m) = src {
                    d[6..12].copy_from_slice(m);
                }
            }
            DpAction::PushVlan { tpid, tci } => {
                if pkt.open_gap(12, 4) {
                    let d = pkt.data_mut();
                    wr16(d, 12, *tpid);
                    wr16(d, 14, *tci);
                    shift_layers(layers, 4);
                }
            }
            DpAction::PopVlan => {
                let d = pkt.data();
                if d.len() >= 18
                    && matches!(rd16(d, 12), ethertype::VLAN | ethertype::QINQ)
                    && pkt.close_gap(12, 4)
                {
                    shift_layers(layers, -4);
                }
            }
            DpAction::SetVlanTci(tci) => {
                let d = pkt.data_mut();
                if d.len() >= 16 && matches!(rd16(d, 12), ethertype::VLAN | ethertype::QINQ) {
                    wr16(d, 14, *tci);
                }
            }
            DpAction::SetIpv4 { src, dst, tos, ttl } => {
                set_ipv4(pkt, key, layers, *src, *dst, *tos, *ttl)
            }
            DpAction::SetIpv6 {
                src,
                dst,
                tc,
                label,
                hlimit,
            } => set_ipv6(pkt, key, layers, *src, *dst, *tc, *label, *hlimit),
            DpAction::SetPorts { src, dst } => set_ports(pkt, key, layers, *src, *dst),
            DpAction::SetIcmp { typ, code } => set_icmp(pkt, key, layers, *typ, *code),
            DpAction::SetArp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => set_arp(pkt, key, layers, *op, *sha, *spa, *tha, *tpa),
            DpAction::SetNd { target, sll, tll } => set_nd(pkt, key, layers, *target, *sll, *tll),
            DpAction::SetTunnel { id, src, dst } => {
                pkt.tun.id = *id;
                pkt.tun.src = *src;
                pkt.tun.dst = *dst;
            }
            DpAction::Ct(c) => {
                let key = cleared.as_ref().unwrap_or(key);
                let res = if *rewritten {
                    let mut now_key = Flow::ZERO;
                    now_key.w[METADATA_WORDS].copy_from_slice(&key.w[METADATA_WORDS]);
                    let mut now_layers = Layers::default();
                    let _ = extract(pkt.data(), &mut now_key, &mut now_layers);
                    env.ct.track(pkt, &now_layers, &now_key, c, now)
                } else {
                    env.ct.track(pkt, layers, key, c, now)
                };
                *sent = true;
                if let Some(r) = &c.recirc {
                    if pkt.recirc_depth >= super::MAX_RECIRC {
                        return Some(Outcome::Dropped(DropReason::RecircLimit));
                    }
                    let mut md = match env.md_pool.pop() {
                        Some(mut b) => {
                            *b = r.metadata_for(key);
                            b
                        }
                        None => Box::new(r.metadata_for(key)),
                    };
                    md.set_ct_state(res.state);
                    md.set_ct_zone(res.zone);
                    md.set_ct_mark(res.mark);
                    md.set_ct_label(res.label);
                    set_ct_orig(&mut md, res.orig);
                    if let Some([s, d]) = res.frag_ports {
                        // Not metadata: the ports of a later fragment's datagram, which
                        // the copy's flow takes on (see `FastPath::chunk`).
                        md.set_tp_src(s);
                        md.set_tp_dst(d);
                    }
                    let last = tail && i + 1 == actions.len();
                    let mut copy = if last {
                        std::mem::take(pkt)
                    } else {
                        pkt.clone()
                    };
                    copy.recirc = Some(md);
                    copy.recirc_depth += 1;
                    env.recirc.push(copy);
                    if last {
                        return Some(Outcome::Sent);
                    }
                }
            }
            DpAction::CtClear => {
                let mut k = *cleared.as_ref().unwrap_or(key);
                clear_ct(&mut k);
                *cleared = Some(k);
            }
            DpAction::Controller { reason, .. } => {
                env.sink.controller(pkt, *reason);
                *sent = true;
            }
            DpAction::Learn(spec) => env.sink.learn(spec),
            DpAction::FinTimeout {
                stats,
                idle_timeout,
                hard_timeout,
            } => stats.0.reduce_timeouts(*idle_timeout, *hard_timeout),
            DpAction::Meter(_, m) => {
                if !m.0.admit(pkt.len(), now) {
                    return Some(Outcome::Dropped(DropReason::Meter));
                }
            }
            DpAction::Drop(r) => return Some(Outcome::Dropped(*r)),
            DpAction::Select(sel) => {
                let b = &sel.branches[sel.choose(key, now)];
                b.stats.0.credit(1, pkt.len() as u64, now);
                let last = tail && i + 1 == actions.len();
                let mut inner = ListState {
                    sent: *sent,
                    rewritten: *rewritten,
                    cleared: cleared.take(),
                };
                let end = run_branch(&b.actions, last, &mut inner, pkt, key, layers, env);
                (*sent, *rewritten, *cleared) = (inner.sent, inner.rewritten, inner.cleared);
                if end.is_some() {
                    return end;
                }
            }
            DpAction::Reject => {
                env.rejecter.reject(pkt, now, env.sink);
                // A copy sent before (`output:1,reject`) went; the packet ends here.
                return Some(if *sent {
                    Outcome::Sent
                } else {
                    Outcome::Dropped(DropReason::Reject)
                });
            }
        }
    }
    None
}

/// The original-direction tuple fields after tracking: zero when the tracker reports none
/// (not IPv4, or `+inv`), as in Open vSwitch.
fn set_ct_orig(md: &mut Flow, orig: Option<super::conntrack::OrigTuple>) {
    let o = orig.unwrap_or_default();
    md.set_ct_nw_src(o.src);
    md.set_ct_nw_dst(o.dst);
    md.set_ct_nw_proto(o.proto);
    md.set_ct_tp_src(o.sport);
    md.set_ct_tp_dst(o.dport);
}

/// What `ct_clear` resets: every field conntrack filled in.
pub(crate) fn clear_ct(f: &mut Flow) {
    f.set_ct_state(0);
    f.set_ct_zone(0);
    f.set_ct_mark(0);
    f.set_ct_label(0);
    set_ct_orig(f, None);
}

fn shift_layers(l: &mut Layers, by: i32) {
    if l.l3 != 0 {
        l.l3 = (l.l3 as i32 + by) as u32;
    }
    if l.l4 != 0 {
        l.l4 = (l.l4 as i32 + by) as u32;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn set_ipv4(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    src: Option<u32>,
    dst: Option<u32>,
    tos: Option<u8>,
    ttl: Option<u8>,
) {
    if key.dl_type() != ethertype::IPV4 || layers.l3 == 0 {
        return;
    }
    // The transport checksum only matters when an address (in its pseudo-header) changes.
    let l4 = if src.is_some() || dst.is_some() {
        l4_csum(pkt, key, layers)
    } else {
        None
    };
    let l3 = layers.l3 as usize;
    let d = pkt.data_mut();
    let Some(Ok(ip)) = d.get_mut(l3..l3 + 20).map(<&mut [u8; 20]>::try_from) else {
        return;
    };
    let mut hc = u16::from_be_bytes([ip[10], ip[11]]);
    if let Some(tos) = tos {
        let old = u16::from_be_bytes([ip[0], ip[1]]);
        ip[1] = tos;
        hc = update16(hc, old, (old & 0xff00) | tos as u16);
    }
    if let Some(ttl) = ttl {
        let old = u16::from_be_bytes([ip[8], ip[9]]);
        ip[8] = ttl;
        hc = update16(hc, old, (old & 0x00ff) | (ttl as u16) << 8);
    }
    let mut changed = [(0u32, 0u32); 2];
    let mut n = 0;
    if let Some(new) = src {
        let old = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        ip[12..16].copy_from_slice(&new.to_be_bytes());
        hc = update32(hc, old, new);
        changed[n] = (old, new);
        n += 1;
    }
    if let Some(new) = dst {
        let old = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        ip[16..20].copy_from_slice(&new.to_be_bytes());
        hc = update32(hc, old, new);
        changed[n] = (old, new);
        n += 1;
    }
    ip[10..12].copy_from_slice(&hc.to_be_bytes());
    if let Some(c) = l4 {
        for &(old, new) in &changed[..n] {
            c.pseudo32(d, old, new);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn set_ipv6(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    src: Option<u128>,
    dst: Option<u128>,
    tc: Option<u8>,
    label: Option<u32>,
    hlimit: Option<u8>,
) {
    let l3 = layers.l3 as usize;
    if l3 == 0 || l3 + 40 > pkt.len() || key.dl_type() != ethertype::IPV6 {
        return;
    }
    let l4 = l4_csum(pkt, key, layers);
    let d = pkt.data_mut();
    let mut vtcfl = rd32(d, l3);
    if let Some(tc) = tc {
        vtcfl = (vtcfl & 0xf00f_ffff) | (tc as u32) << 20;
    }
    if let Some(l) = label {
        vtcfl = (vtcfl & 0xfff0_0000) | (l & 0x000f_ffff);
    }
    wr32(d, l3, vtcfl);
    if let Some(h) = hlimit {
        d[l3 + 7] = h;
    }
    for (v, at) in [(src, l3 + 8), (dst, l3 + 24)] {
        if let Some(new) = v {
            let old = rd128(d, at);
            wr128(d, at, new);
            if let Some(c) = l4 {
                c.pseudo128(d, old, new);
            }
        }
    }
}

fn set_ports(pkt: &mut Packet, key: &Flow, layers: &Layers, src: Option<u16>, dst: Option<u16>) {
    let l4 = layers.l4 as usize;
    if l4 == 0 || l4 + 4 > pkt.len() {
        return;
    }
    if key.nw_proto() == ipproto::SCTP {
        return set_sctp_ports(pkt, key, layers, src, dst);
    }
    let c = l4_csum(pkt, key, layers);
    let d = pkt.data_mut();
    for (v, at) in [(src, l4), (dst, l4 + 2)] {
        if let Some(new) = v {
            let old = rd16(d, at);
            wr16(d, at, new);
            if let Some(c) = c {
                c.data(d, &old.to_be_bytes(), &new.to_be_bytes());
            }
        }
    }
}

/// SCTP's checksum is a CRC-32C over the whole packet: recompute it, keeping any error
/// the packet already had (the stored value differs from the right one by the same bits
/// afterwards), as Open vSwitch does.
pub(crate) fn set_sctp_ports(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    src: Option<u16>,
    dst: Option<u16>,
) {
    use crate::wire::checksum::crc32c;
    let (l3, l4) = (layers.l3 as usize, layers.l4 as usize);
    // The SCTP packet ends where the IP payload does (not at the frame's end: padding).
    let end = {
        let d = pkt.data();
        match key.dl_type() {
            ethertype::IPV4 => l3 + rd16(d, l3 + 2) as usize,
            _ => l3 + 40 + rd16(d, l3 + 4) as usize,
        }
    };
    if l4 + 12 > end || end > pkt.len() {
        return;
    }
    let d = pkt.data_mut();
    let crc_of = |d: &mut [u8]| {
        let stored = [d[l4 + 8], d[l4 + 9], d[l4 + 10], d[l4 + 11]];
        d[l4 + 8..l4 + 12].fill(0);
        let c = crc32c(&d[l4..end]);
        d[l4 + 8..l4 + 12].copy_from_slice(&stored);
        c
    };
    let before = crc_of(d);
    if let Some(p) = src {
        wr16(d, l4, p);
    }
    if let Some(p) = dst {
        wr16(d, l4 + 2, p);
    }
    let after = crc_of(d);
    let stored = u32::from_le_bytes([d[l4 + 8], d[l4 + 9], d[l4 + 10], d[l4 + 11]]);
    d[l4 + 8..l4 + 12].copy_from_slice(&(stored ^ before ^ after).to_le_bytes());
}

fn set_icmp(pkt: &mut Packet, key: &Flow, layers: &Layers, typ: Option<u8>, code: Option<u8>) {
    let l4 = layers.l4 as usize;
    if l4 == 0 || l4 + 4 > pkt.len() {
        return;
    }
    let c = l4_csum(pkt, key, layers);
    let d = pkt.data_mut();
    let old = [d[l4], d[l4 + 1]];
    if let Some(t) = typ {
        d[l4] = t;
    }
    if let Some(cd) = code {
        d[l4 + 1] = cd;
    }
    let new = [d[l4], d[l4 + 1]];
    if let Some(c) = c {
        c.data(d, &old, &new);
    }
}

#[allow(clippy::too_many_arguments)]
fn set_arp(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    op: Option<u16>,
    sha: Option<[u8; 6]>,
    spa: Option<u32>,
    tha: Option<[u8; 6]>,
    tpa: Option<u32>,
) {
    let l3 = layers.l3 as usize;
    if !matches!(key.dl_type(), ethertype::ARP | ethertype::RARP) || l3 == 0 || l3 + 28 > pkt.len()
    {
        return;
    }
    let d = pkt.data_mut();
    if let Some(op) = op {
        wr16(d, l3 + 6, op);
    }
    if let Some(m) = sha {
        d[l3 + 8..l3 + 14].copy_from_slice(&m);
    }
    if let Some(a) = spa {
        wr32(d, l3 + 14, a);
    }
    if let Some(m) = tha {
        d[l3 + 18..l3 + 24].copy_from_slice(&m);
    }
    if let Some(a) = tpa {
        wr32(d, l3 + 24, a);
    }
}

fn set_nd(
    pkt: &mut Packet,
    key: &Flow,
    layers: &Layers,
    target: Option<u128>,
    sll: Option<[u8; 6]>,
    tll: Option<[u8; 6]>,
) {
    let (l3, l4) = (layers.l3 as usize, layers.l4 as usize);
    let d = pkt.data();
    let nd = key.dl_type() == ethertype::IPV6
        && key.nw_proto() == ipproto::ICMPV6
        && l4 != 0
        && l4 + 24 <= d.len()
        && matches!(d[l4], 135 | 136);
    if !nd {
        return;
    }
    // Options end where the IPv6 payload does, not at the frame's end.
    let end = (l3 + 40 + rd16(d, l3 + 4) as usize).min(d.len());
    let c = l4_csum(pkt, key, layers);
    let d = pkt.data_mut();
    if let Some(t) = target {
        let old = d[l4 + 8..l4 + 24].to_vec();
        wr128(d, l4 + 8, t);
        let new = d[l4 + 8..l4 + 24].to_vec();
        if let Some(c) = c {
            c.data(d, &old, &new);
        }
    }
    // Rewrite the link-layer address option (source for a solicitation, target for an
    // advertisement) where the packet has one.
    let (kind, mac) = match (d[l4], sll, tll) {
        (135, Some(m), _) => (1u8, m),
        (136, _, Some(m)) => (2u8, m),
        _ => return,
    };
    let mut at = l4 + 24;
    while at + 8 <= end {
        let len = d[at + 1] as usize * 8;
        if len == 0 {
            return;
        }
        if d[at] == kind && len == 8 {
            let old = d[at + 2..at + 8].to_vec();
            d[at + 2..at + 8].copy_from_slice(&mac);
            if let Some(c) = c {
                c.data(d, &old, &mac);
            }
            return;
        }
        at += len;
    }
}
