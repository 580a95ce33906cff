//! The connection-tracking hook of the datapath.
//!
//! `ct(...)` is a datapath action: the packet is looked up in (and, on commit, added to) a
//! connection table, NAT is applied, and the tracked copy re-enters the pipeline with
//! `ct_state`, `ct_zone`, `ct_mark` and `ct_label` set. The tracker is behind this trait so
//! the fast path and its recirculation can be built and tested before the tracker itself.

use super::action::DpCt;
use super::packet::Packet;
use crate::flow::Layers;
use vswitch_proto::flow::{Flow, ct_state};

/// What tracking a packet found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtResult {
    pub state: u16,
    pub zone: u16,
    pub mark: u32,
    pub label: u128,
    /// The connection's original direction (OVS's `ct_nw_src`, `ct_nw_dst`,
    /// `ct_nw_proto`, `ct_tp_src`, `ct_tp_dst`): present for a tracked IPv4 packet that is
    /// not `+inv` (for a `+new` packet, its own tuple).
    pub orig: Option<OrigTuple>,
    /// For a tracked later fragment (offset > 0, no transport header): `tp_src` and
    /// `tp_dst` of its datagram after this `ct()` (its first fragment's, NAT applied).
    /// The recirculated copy's flow carries them, so flows after `ct()` see a fragmented
    /// datagram whole, as Linux's rules see it reassembled.
    pub frag_ports: Option<[u16; 2]>,
}

/// The original-direction tuple of a connection, as the `ct_*` match fields show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigTuple {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// TCP/UDP/SCTP source port; ICMP: the type (OVS puts type and code in the ports).
    pub sport: u16,
    /// TCP/UDP/SCTP destination port; ICMP: the code.
    pub dport: u16,
}

pub trait Conntrack {
    /// Track `pkt` (whose flow is `key`) as `ct` asks; may rewrite it (NAT).
    fn track(
        &mut self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        now_ms: u64,
    ) -> CtResult;
}

/// A tracker that keeps no connections: every packet is reported as tracked and new, in
/// the zone it was sent to, with the mark and label a commit would set. It makes
/// stateless pipelines and the recirculation machinery work until the real tracker lands;
/// it never reports `+est`, so no policy can be bypassed through it.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatelessConntrack;

impl Conntrack for StatelessConntrack {
    fn track(
        &mut self,
        _pkt: &mut Packet,
        _layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        _now_ms: u64,
    ) -> CtResult {
        let orig = (key.dl_type() == vswitch_proto::field::ethertype::IPV4).then(|| OrigTuple {
            src: key.nw_src(),
            dst: key.nw_dst(),
            proto: key.nw_proto(),
            sport: key.tp_src(),
            dport: key.tp_dst(),
        });
        CtResult {
            orig,
            state: ct_state::TRK | ct_state::NEW,
            zone: ct.zone,
            mark: ct.mark.map_or(0, |(v, m)| v & m),
            label: ct.label.map_or(0, |(v, m)| v & m),
            frag_ports: None,
        }
    }
}
