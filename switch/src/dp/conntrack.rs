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
        _key: &Flow,
        ct: &DpCt,
        _now_ms: u64,
    ) -> CtResult {
        CtResult {
            state: ct_state::TRK | ct_state::NEW,
            zone: ct.zone,
            mark: ct.mark.map_or(0, |(v, m)| v & m),
            label: ct.label.map_or(0, |(v, m)| v & m),
        }
    }
}
