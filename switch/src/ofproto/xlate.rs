//! The pipeline interpreter ("xlate"): runs a flow through the tables and turns the rules
//! it meets into datapath actions, plus the mask of every bit the result depended on.
//!
//! The interpreter works on a copy of the flow that actions modify (`flow`) and remembers
//! what the packet itself looks like (`base`). Header changes are *committed* as datapath
//! set actions only when something needs the packet as it is now (an output, conntrack,
//! the controller), and only for the headers that differ, as Open vSwitch does.
//!
//! Mask rules (what makes a megaflow correct for every packet it matches):
//! - every table lookup ORs in the masks of the subtables it consulted;
//! - every field an action *reads* is unwildcarded (move sources, dec_ttl, group hashing,
//!   `normal`'s addresses, register outputs, learn sources);
//! - every packet field an action *writes* is unwildcarded, so whether a commit emits a set
//!   action is the same for every packet the megaflow matches;
//! - in_port and recirc_id are always exact.

use super::mac::{MacEntry, MacTable};
use super::trace::{Fork, Trace, TraceStep, TracedRule};
use super::{Pipeline, RuleStats};
use crate::dp::action::{
    DpAction, DpAffinity, DpBranch, DpCt, DpSelect, DropReason, METADATA_WORDS, Recirc,
};
use std::sync::Arc;
use vswitch_proto::action::{Action, CtZone, LearnSpec, SubField, port};
use vswitch_proto::field::{FieldId, ethertype};
use vswitch_proto::flow::{Flow, Slot, slot};
use vswitch_proto::flowmod::FlowSpec;
use vswitch_proto::group::{GroupType, SelectionMethod};
use vswitch_proto::matching::Match;

/// Resubmits may nest this deep (Open vSwitch's MAX_DEPTH).
pub const MAX_DEPTH: u32 = 64;
/// At most this many resubmits per packet (Open vSwitch's MAX_RESUBMITS).
pub const MAX_RESUBMITS: u32 = MAX_DEPTH * MAX_DEPTH;

const VLAN_CFI: u16 = 0x1000;

/// Every field conntrack fills in (what `ct_clear` resets).
const CT_SLOTS: [Slot; 9] = [
    slot::CT_STATE,
    slot::CT_ZONE,
    slot::CT_MARK,
    slot::CT_LABEL,
    slot::CT_NW_SRC,
    slot::CT_NW_DST,
    slot::CT_NW_PROTO,
    slot::CT_TP_SRC,
    slot::CT_TP_DST,
];

/// What translating one flow produced.
#[derive(Debug, Default)]
pub struct XlateOut {
    pub actions: Vec<DpAction>,
    /// The bits of the input flow the result depends on (the megaflow mask).
    pub mask: Flow,
    /// Counters of every rule and group the flow went through, to credit on each hit.
    pub stats: Vec<Arc<RuleStats>>,
    /// MAC entries learned from this flow's source, to keep fresh on each hit.
    pub macs: Vec<Arc<MacEntry>>,
    /// What the result depends on besides the flow's bits: the tables looked at, the
    /// groups used, the port list. A change elsewhere leaves the result as it is.
    pub deps: Deps,
}

/// One table lookup of a translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visit {
    pub table: u8,
    /// The priority of the rule that won, -1 when none matched: a changed rule of lower
    /// priority cannot change the outcome.
    pub priority: i32,
    /// The words of the flow ([`Flow::w`]) actions had written before this lookup: there
    /// the flow looked up is not the packet's.
    pub written: u32,
}

/// What a translation depends on besides the bits of its mask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deps {
    pub visits: Vec<Visit>,
    pub groups: Vec<u32>,
    /// The port list or the MAC table (`flood`, `all`, `normal`, fast-failover liveness).
    pub ports: bool,
}

impl Deps {
    /// Whether a rule `(table, priority, matching)` that changed could change the
    /// translation of a flow whose megaflow is `key` under `mask`: it could match the flow
    /// as some lookup saw it, at a priority that could win there. Bits that actions wrote
    /// before a lookup are taken as unknown (whole words), so the answer errs towards yes.
    pub fn rule_may_matter(
        &self,
        key: &Flow,
        mask: &Flow,
        table: u8,
        priority: u16,
        matching: &vswitch_proto::matching::Match,
    ) -> bool {
        self.visits.iter().any(|v| {
            if v.table != table || (priority as i32) < v.priority {
                return false;
            }
            // A conjunctive match's second lookup sets conj_id itself: never a known bit.
            let conj = slot::CONJ_ID;
            let conj_bits = ((1u64 << conj.bits) - 1) << conj.shift;
            (0..vswitch_proto::flow::FLOW_U64S).all(|i| {
                if v.written & (1 << i) != 0 {
                    return true;
                }
                let known = if i == conj.word as usize {
                    !conj_bits
                } else {
                    u64::MAX
                };
                (matching.flow.w[i] ^ key.w[i]) & matching.mask.w[i] & mask.w[i] & known == 0
            })
        })
    }
}

/// Bit `i` set for every non-zero word of `f`.
fn word_bits(f: &Flow) -> u32 {
    let mut bits = 0;
    for (i, w) in f.w.iter().enumerate() {
        if *w != 0 {
            bits |= 1 << i;
        }
    }
    bits
}

struct Ctx<'a> {
    pipe: &'a Pipeline,
    mac: &'a MacTable,
    now: u64,
    /// Learn MAC addresses (off for traces, which must not change state).
    side_effects: bool,
    /// The packet's key as this pass began (what the datapath hashes for a select group).
    key: Flow,
    flow: Flow,
    base: Flow,
    wc: Flow,
    out: Vec<DpAction>,
    stats: Vec<Arc<RuleStats>>,
    macs: Vec<Arc<MacEntry>>,
    deps: Deps,
    depth: u32,
    resubmits: u32,
    table: u8,
    /// Set when translation must stop everywhere (a resource limit: the result is a drop).
    halted: bool,
    /// Set when the current action list must stop (a failed dec_ttl, a missing group);
    /// the levels above it go on, as in Open vSwitch.
    stop_list: bool,
    /// Why the packet would be dropped, if it ends up sent nowhere.
    drop_reason: Option<DropReason>,
    /// Bits of the flow the pipeline wrote (to tell, at recirculation, which metadata came
    /// from the pipeline and which from the packet).
    written: Flow,
    push_tpid: u16,
    trace: Option<&'a mut Vec<TraceStep>>,
    /// OpenFlow 1.1+ action set (`write_actions`), run when the pipeline ends.
    action_set: Vec<Action>,
    /// Set by `exit`: stop every action list up to the top (group buckets excepted).
    exit: bool,
    /// Recirculations a trace follows next (only when tracing).
    forks: Vec<Fork>,
    /// Counters of the rule whose actions are running (what `fin_timeout` shortens).
    rule_stats: Option<Arc<RuleStats>>,
}

/// Translate a packet's flow into datapath actions.
pub fn xlate(pipe: &Pipeline, mac: &MacTable, key: &Flow, now: u64) -> XlateOut {
    let mut ctx = Ctx::new(pipe, mac, key, now, true, None);
    ctx.run();
    ctx.finish()
}

/// Translate without side effects and record every step.
pub fn trace(pipe: &Pipeline, mac: &MacTable, key: &Flow, now: u64) -> Trace {
    let mut steps = Vec::new();
    let (out, final_flow, forks) = {
        let mut ctx = Ctx::new(pipe, mac, key, now, false, Some(&mut steps));
        ctx.run();
        let f = ctx.flow;
        let forks = std::mem::take(&mut ctx.forks);
        (ctx.finish(), f, forks)
    };
    Trace {
        flow: *key,
        steps,
        final_flow,
        megaflow: Match::new(*key, out.mask),
        actions: out.actions,
        forks,
    }
}

fn or_bits(wc: &mut Flow, s: Slot, bits: u128) {
    let old = wc.get(s);
    wc.set(s, old | bits);
}

/// The action set as the list it runs as: the last pop_vlan, push_vlan and dec_ttl, every
/// set_field and move in the order written, then the last group, or else the last output,
/// or else the last resubmit, or else the last ct; with none of those, nothing (there is
/// no point changing a packet that goes nowhere). Open vSwitch's
/// `ofpacts_execute_action_set`; anything else (ct_clear) is ignored, as there.
fn action_set_order(set: &[Action]) -> Vec<Action> {
    let last = |f: &dyn Fn(&Action) -> bool| set.iter().rev().find(|a| f(a)).cloned();
    let mut out = Vec::new();
    out.extend(last(&|a| matches!(a, Action::PopVlan)));
    out.extend(last(&|a| matches!(a, Action::PushVlan(_))));
    out.extend(last(&|a| matches!(a, Action::DecTtl)));
    out.extend(
        set.iter()
            .filter(|a| matches!(a, Action::SetField { .. } | Action::Move { .. }))
            .cloned(),
    );
    let sends = last(&|a| matches!(a, Action::Group(_)))
        .or_else(|| {
            last(&|a| {
                matches!(
                    a,
                    Action::Output { .. }
                        | Action::InPort
                        | Action::Normal
                        | Action::Flood
                        | Action::All
                        | Action::Controller { .. }
                )
            })
        })
        .or_else(|| last(&|a| matches!(a, Action::Resubmit { .. })))
        .or_else(|| last(&|a| matches!(a, Action::Ct(_))));
    match sends {
        Some(a) => {
            out.push(a);
            out
        }
        None => Vec::new(),
    }
}

/// A stable 64-bit hash of `words` seeded with `basis`.
fn words_hash(words: &[u64], basis: u16) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ basis as u64;
    for &v in words {
        let m = (h ^ v) as u128 * 0xff51_afd7_ed55_8ccd_u128;
        h = (m as u64) ^ ((m >> 64) as u64);
    }
    h
}

fn fold32(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

/// Open vSwitch's `hash_2words` stand-in: mixes two words into a 32-bit hash.
fn hash2(a: u32, b: u32) -> u32 {
    fold32(words_hash(&[((a as u64) << 32) | b as u64], 0))
}

/// Pick a link in `0..n_links` from `hash` with `multipath`'s algorithms (Open vSwitch's
/// `multipath_algorithm`).
pub(crate) fn multipath_link(
    hash: u32,
    alg: vswitch_proto::action::MpAlgorithm,
    n_links: u32,
    arg: u32,
) -> u32 {
    use vswitch_proto::action::MpAlgorithm as A;
    match alg {
        A::ModuloN => hash % n_links,
        A::HashThreshold => {
            if n_links == 1 {
                0
            } else {
                ((hash as u64 * n_links as u64) >> 32) as u32
            }
        }
        A::Hrw => {
            let (mut best, mut best_w) = (0, hash2(hash, 0));
            for link in 1..n_links {
                let w = hash2(hash, link);
                if w > best_w {
                    (best, best_w) = (link, w);
                }
            }
            best
        }
        A::IterHash => {
            // Draw from the next power of two and retry out-of-range draws, at most `arg`
            // times, then fall back to modulo_n.
            let mask = n_links.next_power_of_two().wrapping_sub(1);
            let mut link = hash & mask;
            let mut i = 0;
            while link >= n_links {
                if i >= arg {
                    return hash % n_links;
                }
                i += 1;
                link = hash2(hash, i) & mask;
            }
            link
        }
    }
}

/// Whether a bucket's actions can be translated for every packet ahead of time: they
/// change headers, track and send, but look up no table, learn nothing and keep no state
/// (see `select_in_datapath`).
fn branch_safe(actions: &[Action]) -> bool {
    actions.iter().all(|a| match a {
        Action::Output { port, .. } => *port <= vswitch_proto::action::port::MAX,
        Action::SetField { .. }
        | Action::Move { .. }
        | Action::Ct(_)
        | Action::CtClear
        | Action::Note(_)
        | Action::PushVlan(_)
        | Action::PopVlan
        | Action::Reject => true,
        _ => false,
    })
}

/// Weighted rendezvous hashing: each bucket draws a number from hash(flow, bucket_id),
/// scaled by its weight, and the best draw wins. A bucket's share of flows is its share of
/// the total weight, and adding or removing a bucket only moves the flows that go to (or
/// came from) that bucket, which keeps most connections on their endpoint.
fn choose_bucket(weights: impl Iterator<Item = (u32, u16)>, hash: u64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (id, w)) in weights.enumerate() {
        if w == 0 {
            continue;
        }
        let m = ((hash ^ (id as u64).wrapping_mul(0xff51_afd7_ed55_8ccd)) as u128)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let m = (m as u64) ^ ((m >> 64) as u64);
        // A uniform draw in (0, 1]; ln(u)/w is the log of u^(1/w), the weighted draw.
        let u = ((m >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let score = u.ln() / w as f64;
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

impl<'a> Ctx<'a> {
    fn new(
        pipe: &'a Pipeline,
        mac: &'a MacTable,
        key: &Flow,
        now: u64,
        side_effects: bool,
        trace: Option<&'a mut Vec<TraceStep>>,
    ) -> Ctx<'a> {
        // Like Open vSwitch, a megaflow always matches in_port, recirc_id and dl_type, and
        // for IP nw_proto and nw_frag: actions' validity depends on them (a bucket or a
        // learned flow may apply an IP action to whatever packet reaches it).
        let mut wc = Flow::ZERO;
        for s in [slot::IN_PORT, slot::RECIRC_ID, slot::DL_TYPE] {
            wc.set(s, s.max());
        }
        if matches!(key.dl_type(), ethertype::IPV4 | ethertype::IPV6) {
            wc.set(slot::NW_PROTO, slot::NW_PROTO.max());
            wc.set(slot::NW_FRAG, slot::NW_FRAG.max());
        }
        Ctx {
            pipe,
            mac,
            now,
            side_effects,
            key: *key,
            flow: *key,
            base: *key,
            wc,
            out: Vec::new(),
            stats: Vec::new(),
            macs: Vec::new(),
            deps: Deps::default(),
            depth: 0,
            resubmits: 0,
            table: 0,
            halted: false,
            stop_list: false,
            drop_reason: None,
            written: Flow::ZERO,
            push_tpid: ethertype::VLAN,
            trace,
            action_set: Vec::new(),
            exit: false,
            forks: Vec::new(),
            rule_stats: None,
        }
    }

    fn finish(mut self) -> XlateOut {
        let sends = self.out.iter().any(|a| {
            matches!(
                a,
                DpAction::Output(_)
                    | DpAction::Controller { .. }
                    | DpAction::Ct(_)
                    | DpAction::Drop(_)
                    | DpAction::Reject
                    | DpAction::Select(_)
            )
        });
        if let (Some(r), false) = (self.drop_reason, sends) {
            self.out.push(DpAction::Drop(r));
        }
        XlateOut {
            actions: self.out,
            mask: self.wc,
            stats: self.stats,
            macs: self.macs,
            deps: self.deps,
        }
    }

    fn step(&mut self, s: impl FnOnce() -> TraceStep) {
        if let Some(t) = self.trace.as_deref_mut() {
            t.push(s());
        }
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        let depth = self.depth;
        self.step(|| TraceStep::Note {
            depth,
            text: text(),
        });
    }

    fn run(&mut self) {
        let table = Recirc::table_for_id(self.flow.recirc_id());
        if self.flow.recirc_id() != 0 {
            self.note(|| format!("resuming after recirculation in table {table}"));
        }
        self.run_table(table);
        self.run_action_set();
    }

    /// The end of the pipeline: run the action set, in OpenFlow's order (Open vSwitch's
    /// `ofpacts_execute_action_set`). After an `exit` nothing of it runs: `ovs-actions(7)`
    /// says it still does, but Open vSwitch 3.1 leaves its exit flag set while it runs the
    /// set, so its translation (and `ofproto/trace`) executes none of it; we do as it does.
    fn run_action_set(&mut self) {
        if self.halted || self.action_set.is_empty() {
            return;
        }
        let set = std::mem::take(&mut self.action_set);
        let list = action_set_order(&set);
        if self.exit {
            self.note(|| "exit: the action set does not run".into());
            return;
        }
        self.note(|| "executing the action set".into());
        self.execute(&list);
    }

    /// A resource limit was hit (a loop in the tables): drop the packet, whatever was
    /// decided before.
    fn abort(&mut self, reason: DropReason) {
        self.out.clear();
        self.out.push(DpAction::Drop(reason));
        self.halted = true;
        self.note(|| format!("dropping: {}", reason.as_str()));
    }

    /// Stop the current action list; the levels above go on. If nothing sends the packet
    /// anywhere in the end, it is counted as dropped for `reason`.
    fn stop_here(&mut self, reason: DropReason) {
        self.stop_list = true;
        self.drop_reason.get_or_insert(reason);
        self.note(|| format!("stopping this action list: {}", reason.as_str()));
    }

    /// Look the flow up in `table` and run the winning rule's actions.
    fn run_table(&mut self, table: u8) {
        let Some(cls) = self.pipe.table(table) else {
            return;
        };
        let saved = self.table;
        self.table = table;
        let entry = cls.lookup_entry(&self.flow, &mut self.wc);
        self.deps.visits.push(Visit {
            table,
            priority: entry.map_or(-1, |e| e.priority as i32),
            written: word_bits(&self.written),
        });
        let depth = self.depth;
        match entry {
            Some(e) => {
                let rule = e.rule.clone();
                self.step(|| TraceStep::Table {
                    depth,
                    table,
                    rule: Some(Box::new(TracedRule::from(&*rule))),
                });
                self.stats.push(rule.stats.clone());
                let saved_rule = self.rule_stats.replace(rule.stats.clone());
                self.execute(&rule.actions);
                self.rule_stats = saved_rule;
            }
            None => self.step(|| TraceStep::Table {
                depth,
                table,
                rule: None,
            }),
        }
        self.table = saved;
    }

    fn execute(&mut self, actions: &[Action]) {
        for a in actions {
            if self.halted || self.exit {
                return;
            }
            if self.stop_list {
                self.stop_list = false;
                return;
            }
            let depth = self.depth;
            if !matches!(a, Action::Note(_)) {
                self.step(|| TraceStep::Action {
                    depth,
                    action: a.clone(),
                });
            }
            match a {
                Action::Output { port, max_len } => self.output(*port, *max_len),
                Action::OutputReg(sf) => {
                    let p = self.read(sf) as u32;
                    self.output(p, None)
                }
                Action::InPort => self.output_to(self.flow.in_port()),
                Action::Normal => self.normal(),
                Action::Flood => self.flood(false),
                Action::All => self.flood(true),
                Action::Controller { max_len } => self.controller(*max_len),
                Action::GotoTable(t) => {
                    self.run_table(*t);
                    return;
                }
                Action::Resubmit { in_port, table } => self.resubmit(*in_port, *table),
                Action::SetField { field, value, mask } => self.set_field(*field, *value, *mask),
                Action::Move { src, dst } => {
                    if self.prereq_ok(src.field) && self.prereq_ok(dst.field) {
                        let v = self.read(src);
                        self.write(dst, v);
                    }
                }
                Action::DecTtl => self.dec_ttl(),
                Action::PushVlan(tpid) => self.push_vlan(*tpid),
                Action::PopVlan => self.pop_vlan(),
                Action::Group(g) => self.group(*g),
                Action::Conjunction { .. } | Action::Note(_) => {}
                Action::Learn(l) => self.learn(l),
                Action::Ct(ct) => self.ct(ct),
                Action::WriteActions(list) => self.action_set.extend(list.iter().cloned()),
                Action::ClearActions => self.action_set.clear(),
                Action::WriteMetadata { value, mask } => {
                    self.set_field(FieldId::Metadata, *value as u128, *mask as u128)
                }
                Action::Exit => self.exit = true,
                Action::CtClear => {
                    // As Open vSwitch: the datapath action only for a tracked packet (there
                    // is nothing to clear otherwise).
                    let trk = vswitch_proto::flow::ct_state::TRK;
                    or_bits(&mut self.wc, slot::CT_STATE, trk as u128);
                    let tracked = self.flow.ct_state() & trk != 0;
                    for s in CT_SLOTS {
                        or_bits(&mut self.written, s, s.max());
                        self.flow.set(s, 0);
                    }
                    if tracked {
                        self.out.push(DpAction::CtClear);
                    }
                }
                Action::ControllerEx(o) => match crate::k8s::pipeline::audit_reason(o) {
                    Some(reason) => {
                        self.commit();
                        self.out.push(DpAction::Controller {
                            max_len: o.max_len,
                            reason,
                        });
                    }
                    None => self.controller(o.max_len),
                },
                Action::DecTtlIds(_) => self.dec_ttl(),
                // Queues are not implemented: the packet goes out of the port.
                Action::Enqueue { port, .. } => self.output(*port, None),
                Action::Multipath(m) => self.multipath(m),
                Action::FinTimeout {
                    idle_timeout,
                    hard_timeout,
                } => self.fin_timeout(*idle_timeout, *hard_timeout),
                Action::Reject => self.reject(),
                Action::Meter(id) => match self.pipe.meter(*id) {
                    Some(m) => self
                        .out
                        .push(DpAction::Meter(*id, crate::dp::action::MeterRef(m))),
                    None => self.stop_here(DropReason::Meter),
                },
            }
        }
        self.stop_list = false;
    }

    // ---- reading and writing fields -----------------------------------------------

    /// Read a subfield of the current flow (and make the result depend on it).
    fn read(&mut self, sf: &SubField) -> u128 {
        let s = sf.field.slot();
        let mask = sf.mask_in_field();
        or_bits(&mut self.wc, s, mask);
        (self.flow.get(s) & mask) >> sf.ofs
    }

    /// Write `v` into a subfield of the current flow.
    fn write(&mut self, sf: &SubField, v: u128) {
        let s = sf.field.slot();
        let mask = sf.mask_in_field();
        or_bits(&mut self.wc, s, mask);
        or_bits(&mut self.written, s, mask);
        self.flow.set_masked(s, v << sf.ofs, mask);
    }

    /// Whether the packet has `field` (its prerequisites hold), making the answer part
    /// of the megaflow. Rules are checked when they are added, but actions in group
    /// buckets and learned flows meet whatever packet reaches them.
    fn prereq_ok(&mut self, field: FieldId) -> bool {
        use vswitch_proto::field::Prereq;
        let p = field.info().prereq;
        let consulted: &[Slot] = match p {
            Prereq::None => &[],
            Prereq::Nd | Prereq::NdSolicit | Prereq::NdAdvert => {
                &[slot::DL_TYPE, slot::NW_PROTO, slot::TP_SRC]
            }
            Prereq::Vlan => &[slot::VLAN_TCI],
            Prereq::CtValid | Prereq::CtIpv4 | Prereq::CtL4 => {
                &[slot::CT_STATE, slot::DL_TYPE, slot::CT_NW_PROTO]
            }
            _ => &[slot::DL_TYPE, slot::NW_PROTO],
        };
        for &s in consulted {
            or_bits(&mut self.wc, s, s.max());
        }
        let ok = p.satisfied_by(&self.flow, &Flow::ONES);
        if !ok {
            self.note(|| {
                format!(
                    "{}: the packet has no such field, action skipped",
                    field.name()
                )
            });
        }
        ok
    }

    fn set_field(&mut self, field: FieldId, value: u128, mask: u128) {
        if !self.prereq_ok(field) {
            return;
        }
        let s = field.slot();
        if s.word == slot::VLAN_TCI.word
            && s.shift < 16
            && field != FieldId::VlanTci
            && self.flow.vlan_tci() & VLAN_CFI == 0
        {
            // OpenFlow 1.2+: setting VLAN fields of an untagged packet does nothing.
            or_bits(&mut self.wc, slot::VLAN_TCI, VLAN_CFI as u128);
            self.note(|| format!("{}: packet has no VLAN tag, ignored", field.name()));
            return;
        }
        let mask = mask & s.max();
        or_bits(&mut self.wc, s, mask);
        or_bits(&mut self.written, s, mask);
        self.flow.set_masked(s, value, mask);
        if field == FieldId::DlVlan || field == FieldId::VlanPcp {
            // These imply a present tag.
            let tci = self.flow.vlan_tci() | VLAN_CFI;
            self.flow.set_vlan_tci(tci);
        }
    }

    // ---- actions ------------------------------------------------------------------

    fn output(&mut self, p: u32, max_len: Option<u16>) {
        match p {
            port::IN_PORT => self.output_to(self.flow.in_port()),
            port::NORMAL => self.normal(),
            port::FLOOD => self.flood(false),
            port::ALL => self.flood(true),
            port::CONTROLLER => self.controller(max_len.unwrap_or(u16::MAX)),
            port::TABLE => self.resubmit(None, Some(0)),
            port::NONE => {}
            p if p == self.flow.in_port() => {
                self.note(|| format!("skipping output to input port {p}"));
            }
            p => {
                // Open vSwitch skips a port that does not exist (no datapath action). Only
                // the skip depends on the port list: a cached output to a port removed
                // later sends nothing either, and Pod churn must not retranslate every flow.
                if self.pipe.ports().iter().any(|d| d.no == p) {
                    self.output_to(p)
                } else {
                    self.deps.ports = true;
                    self.note(|| format!("skipping output to nonexistent port {p}"));
                }
            }
        }
    }

    fn output_to(&mut self, p: u32) {
        self.commit();
        self.out.push(DpAction::Output(p));
    }

    /// Answer the packet as it is now, then stop: nothing after it runs, not even the
    /// action set. What the answer is depends on the packet's bytes, decided by the
    /// datapath: the megaflow does not depend on any more bits for it.
    fn reject(&mut self) {
        self.commit();
        self.out.push(DpAction::Reject);
        let f = self.flow;
        self.note(|| crate::dp::reject::describe(&f));
        self.halted = true;
    }

    fn controller(&mut self, max_len: u16) {
        self.commit();
        self.out.push(DpAction::Controller {
            max_len,
            reason: crate::dp::action::ControllerReason::Action,
        });
    }

    fn flood(&mut self, all: bool) {
        self.deps.ports = true;
        let in_port = self.flow.in_port();
        let ports: Vec<u32> = self
            .pipe
            .ports()
            .iter()
            .filter(|p| p.no != in_port && (all || !p.no_flood))
            .map(|p| p.no)
            .collect();
        for p in ports {
            self.output_to(p);
        }
    }

    /// A learning switch: learn where the source lives, then send to where the
    /// destination lives, or flood.
    fn normal(&mut self) {
        self.deps.ports = true;
        for s in [slot::DL_SRC, slot::DL_DST] {
            or_bits(&mut self.wc, s, s.max());
        }
        or_bits(&mut self.wc, slot::VLAN_TCI, 0x1fff);
        let tci = self.flow.vlan_tci();
        let vlan = if tci & VLAN_CFI != 0 { tci & 0x0fff } else { 0 };
        let (src, dst, in_port) = (self.flow.dl_src(), self.flow.dl_dst(), self.flow.in_port());
        if self.side_effects
            && let Some(e) = self.mac.learn(vlan, src, in_port, self.now)
        {
            self.macs.push(e);
        }
        if dst[0] & 1 != 0 {
            self.note(|| "normal: multicast or broadcast destination, flooding".into());
            return self.flood(false);
        }
        match self.mac.lookup(vlan, dst, self.now) {
            Some(e) if e.port == in_port => {
                self.note(|| "normal: destination is on the input port, dropping".into())
            }
            Some(e) => {
                let p = e.port;
                self.note(|| format!("normal: learned destination on port {p}"));
                self.output_to(p);
            }
            None => {
                self.note(|| "normal: unknown destination, flooding".into());
                self.flood(false);
            }
        }
    }

    /// Count one more level of recursion; false (and the packet dropped) past the limits.
    fn descend(&mut self) -> bool {
        self.resubmits += 1;
        if self.depth >= MAX_DEPTH || self.resubmits > MAX_RESUBMITS {
            self.abort(DropReason::ResubmitLimit);
            return false;
        }
        true
    }

    fn resubmit(&mut self, in_port: Option<u32>, table: Option<u8>) {
        if !self.descend() {
            return;
        }
        let old_in_port = self.flow.in_port();
        if let Some(p) = in_port
            && p != port::IN_PORT
        {
            self.flow.set_in_port(p);
        }
        self.depth += 1;
        self.run_table(table.unwrap_or(self.table));
        self.depth -= 1;
        self.flow.set_in_port(old_in_port);
    }

    fn dec_ttl(&mut self) {
        let ty = self.flow.dl_type();
        if ty != ethertype::IPV4 && ty != ethertype::IPV6 {
            return;
        }
        or_bits(&mut self.wc, slot::DL_TYPE, 0xffff);
        or_bits(&mut self.wc, slot::NW_TTL, 0xff);
        let ttl = self.flow.nw_ttl();
        if ttl <= 1 {
            return self.stop_here(DropReason::TtlExceeded);
        }
        or_bits(&mut self.written, slot::NW_TTL, 0xff);
        self.flow.set_nw_ttl(ttl - 1);
    }

    fn push_vlan(&mut self, tpid: u16) {
        or_bits(&mut self.wc, slot::VLAN_TCI, 0xffff);
        or_bits(&mut self.wc, slot::VLAN_TCI_INNER, 0xffff);
        let outer = self.flow.vlan_tci();
        self.flow.set_vlan_tci_inner(outer);
        // The new tag copies the VID and PCP of the one it covers (OpenFlow).
        self.flow.set_vlan_tci(VLAN_CFI | (outer & !VLAN_CFI));
        self.push_tpid = tpid;
    }

    fn pop_vlan(&mut self) {
        or_bits(&mut self.wc, slot::VLAN_TCI, 0xffff);
        or_bits(&mut self.wc, slot::VLAN_TCI_INNER, 0xffff);
        let inner = self.flow.vlan_tci_inner();
        self.flow.set_vlan_tci(inner);
        self.flow.set_vlan_tci_inner(0);
    }

    fn group(&mut self, id: u32) {
        if !self.deps.groups.contains(&id) {
            self.deps.groups.push(id);
        }
        let Some(g) = self.pipe.group(id).cloned() else {
            return self.stop_here(DropReason::NoSuchGroup);
        };
        // A group's buckets may reach the group again: count it like a resubmit.
        if !self.descend() {
            return;
        }
        self.stats.push(g.stats.clone());
        let buckets = g.buckets();
        match g.group_type() {
            GroupType::All => {
                for (i, b) in buckets.iter().enumerate() {
                    self.stats.push(g.bucket_stats[i].clone());
                    self.in_clone(|ctx| ctx.execute(&b.actions));
                }
            }
            GroupType::Indirect => {
                if let Some(b) = buckets.first() {
                    self.stats.push(g.bucket_stats[0].clone());
                    self.in_clone(|ctx| ctx.execute(&b.actions));
                }
            }
            GroupType::FastFailover => {
                self.deps.ports = true;
                let live =
                    |p: Option<u32>| p.is_none_or(|p| self.pipe.ports().iter().any(|d| d.no == p));
                if let Some(i) = buckets.iter().position(|b| live(b.watch_port)) {
                    self.stats.push(g.bucket_stats[i].clone());
                    let b = &buckets[i];
                    self.in_clone(|ctx| ctx.execute(&b.actions));
                }
            }
            GroupType::Select => {
                if self.select_in_datapath(id, &g) {
                    return;
                }
                let hash = match &g.spec.selection {
                    Some(sel) if sel.method == SelectionMethod::Hash => {
                        self.hash_group_fields(&sel.fields, sel.param)
                    }
                    sel => {
                        for s in [
                            slot::DL_TYPE,
                            slot::NW_SRC,
                            slot::NW_DST,
                            slot::NW_PROTO,
                            slot::TP_SRC,
                            slot::TP_DST,
                            slot::IPV6_SRC,
                            slot::IPV6_DST,
                        ] {
                            or_bits(&mut self.wc, s, s.max());
                        }
                        let basis = sel.as_ref().map_or(0, |s| s.param);
                        if basis == 0 {
                            crate::dp::action::l4_hash(&self.flow)
                        } else {
                            words_hash(&[crate::dp::action::l4_hash(&self.flow), basis], 0)
                        }
                    }
                };
                let mut pick = choose_bucket(buckets.iter().map(|b| (b.bucket_id, b.weight)), hash);
                if let (Some(secs), Some(aff)) = (g.spec.affinity, &g.affinity) {
                    pick = self.affine(&g, aff, secs, pick);
                }
                match pick {
                    Some(i) => {
                        let b = &buckets[i];
                        self.stats.push(g.bucket_stats[i].clone());
                        let bid = b.bucket_id;
                        self.note(|| format!("group {id}: selected bucket {bid}"));
                        self.in_clone(|ctx| ctx.execute(&b.actions));
                    }
                    None => self.note(|| format!("group {id}: no live bucket")),
                }
            }
        }
    }

    /// A select group of the default method or `dp_hash` (Open vSwitch's default chooses
    /// `dp_hash` too, up to 64 hash values), with or without affinity (applied per packet
    /// too, from the group's memory of sources), whose buckets only change
    /// headers, track and send (nothing that looks up tables, learns or must be decided
    /// once): every bucket is translated, and the datapath picks one per packet from its
    /// 5-tuple ([`DpSelect`]), so the 5-tuple stays out of the megaflow. One bucket with
    /// weight runs inline. A trace follows the bucket its packet takes. Returns false when
    /// the group does not qualify.
    fn select_in_datapath(&mut self, id: u32, g: &Arc<super::rule::Group>) -> bool {
        let basis = match &g.spec.selection {
            None => 0,
            Some(sel) if sel.method == SelectionMethod::DpHash => sel.param,
            Some(_) => return false,
        };
        // A trace of a group with affinity shows its choice as the translation makes it
        // (the memory is the datapath's to update).
        let affinity = match (g.spec.affinity, &g.affinity) {
            (Some(_), _) if self.trace.is_some() => return false,
            (Some(secs), Some(map)) => Some(Box::new(DpAffinity {
                map: map.clone(),
                timeout_ms: secs as u64 * 1000,
                keys: g.bucket_keys.clone(),
            })),
            (Some(_), None) => return false,
            (None, _) => None,
        };
        if !g.buckets().iter().all(|b| branch_safe(&b.actions)) {
            return false;
        }
        let Some(slots) = g.dp_slots().cloned() else {
            return false;
        };
        let buckets = g.buckets();
        // One bucket with weight runs inline, unless sources must be remembered (for
        // when more buckets come).
        if affinity.is_none() && slots.iter().all(|&b| b == slots[0]) {
            let i = slots[0] as usize;
            self.stats.push(g.bucket_stats[i].clone());
            let bid = buckets[i].bucket_id;
            self.note(|| format!("group {id}: one bucket with weight, {bid}"));
            self.in_clone(|ctx| ctx.execute(&buckets[i].actions));
            return true;
        }
        let mut sel = DpSelect {
            group: id,
            basis,
            slots,
            branches: Box::new([]),
            affinity,
        };
        let chosen = self.trace.is_some().then(|| sel.index(&self.key));
        // Each branch starts from the packet as it is here, and leaves it so.
        self.commit();
        let before = self.flow;
        let outer = std::mem::take(&mut self.out);
        let mut branches = Vec::with_capacity(buckets.len());
        for (i, b) in buckets.iter().enumerate() {
            let hidden = match chosen {
                Some(c) if c != i => self.trace.take(),
                _ => None,
            };
            if hidden.is_none() && chosen.is_some() {
                let bid = b.bucket_id;
                self.note(|| {
                    format!("group {id}: the datapath's hash of the 5-tuple selects bucket {bid}")
                });
            }
            self.in_clone(|ctx| {
                ctx.execute(&b.actions);
                ctx.flow = before;
                ctx.commit();
            });
            if hidden.is_some() {
                self.trace = hidden;
            }
            branches.push(DpBranch {
                bucket_id: b.bucket_id,
                actions: std::mem::take(&mut self.out).into_boxed_slice(),
                stats: crate::dp::action::RuleRef(g.bucket_stats[i].clone()),
            });
        }
        // Buckets that recirculate alike (a Service's endpoints all go on to the same
        // table) share one copy of the metadata to carry: a branch stays small.
        let mut shared: Option<Arc<Recirc>> = None;
        for a in branches.iter_mut().flat_map(|b| b.actions.iter_mut()) {
            if let DpAction::Ct(c) = a
                && let Some(r) = &mut c.recirc
            {
                match &shared {
                    Some(s) if **s == **r => *r = s.clone(),
                    _ => shared = Some(r.clone()),
                }
            }
        }
        sel.branches = branches.into_boxed_slice();
        self.out = outer;
        self.out.push(DpAction::Select(Box::new(sel)));
        true
    }

    /// A select group with affinity: the bucket this packet's source went to last, if
    /// within `secs` and still there, else `hashed`; remembered as the source's (not by
    /// traces). The source is in the megaflow's mask already (the 5-tuple is).
    fn affine(
        &mut self,
        g: &super::rule::Group,
        aff: &super::rule::Affinity,
        secs: u32,
        hashed: Option<usize>,
    ) -> Option<usize> {
        let src = if self.flow.dl_type() == vswitch_proto::field::ethertype::IPV6 {
            self.flow.get(slot::IPV6_SRC)
        } else {
            self.flow.get(slot::NW_SRC)
        };
        let timeout = secs as u64 * 1000;
        let kept = aff
            .get(src, self.now, timeout)
            .and_then(|k| g.bucket_keys.iter().position(|&b| b == k));
        let pick = kept.or(hashed)?;
        if self.side_effects {
            aff.set(src, g.bucket_keys[pick], self.now, timeout);
        }
        if kept.is_some() {
            self.note(|| format!("affinity: source kept on bucket {pick}"));
        }
        Some(pick)
    }

    /// Run `f` on a copy of the flow: what it changes does not leak out (bucket
    /// semantics). Changes it committed to the packet are undone by the next commit,
    /// since `base` keeps tracking the packet.
    fn in_clone(&mut self, f: impl FnOnce(&mut Ctx<'a>)) {
        let saved = self.flow;
        self.depth += 1;
        f(self);
        self.depth -= 1;
        self.stop_list = false;
        // `exit` in a bucket ends only the bucket.
        self.exit = false;
        if !self.halted {
            self.flow = saved;
        }
    }

    /// `multipath`: hash the fields, pick a link with the algorithm, write it into `dst`
    /// (Open vSwitch's `multipath_execute`).
    fn multipath(&mut self, m: &vswitch_proto::action::Multipath) {
        let hash = self.hash_fields(m.fields, m.basis);
        let link = multipath_link(hash, m.algorithm, m.n_links, m.arg);
        let l = link;
        self.note(|| format!("multipath: hash {hash:#010x}, link {l}"));
        self.write(&m.dst, link as u128);
    }

    /// A 32-bit hash of the fields `fields` names, with their bits added to the megaflow
    /// (the fields Open vSwitch's `flow_mask_hash_fields` unwildcards).
    fn hash_fields(&mut self, fields: vswitch_proto::action::HashFields, basis: u16) -> u32 {
        use vswitch_proto::action::HashFields as H;
        use vswitch_proto::field::ipproto;
        let mut words: Vec<u64> = vec![fields as u64];
        let ty = self.flow.dl_type();
        let (v4, v6) = (ty == ethertype::IPV4, ty == ethertype::IPV6);
        let unwild = |ctx: &mut Self, s: Slot| or_bits(&mut ctx.wc, s, s.max());
        let mac = |m: [u8; 6]| m.iter().fold(0u64, |a, b| (a << 8) | *b as u64);
        match fields {
            H::EthSrc => {
                unwild(self, slot::DL_SRC);
                words.push(mac(self.flow.dl_src()));
            }
            H::NwSrc | H::NwDst | H::SymmetricL3 => {
                unwild(self, slot::DL_TYPE);
                let (src, dst) = if v4 {
                    (self.flow.nw_src() as u128, self.flow.nw_dst() as u128)
                } else if v6 {
                    (self.flow.ipv6_src(), self.flow.ipv6_dst())
                } else {
                    (0, 0)
                };
                let (ss, ds) = if v6 {
                    (slot::IPV6_SRC, slot::IPV6_DST)
                } else {
                    (slot::NW_SRC, slot::NW_DST)
                };
                let v = match fields {
                    H::NwSrc if v4 || v6 => {
                        unwild(self, ss);
                        src
                    }
                    H::NwDst if v4 || v6 => {
                        unwild(self, ds);
                        dst
                    }
                    H::SymmetricL3 if v4 || v6 => {
                        unwild(self, ss);
                        unwild(self, ds);
                        src ^ dst
                    }
                    _ => 0,
                };
                words.extend([v as u64, (v >> 64) as u64]);
            }
            H::SymmetricL4 | H::SymmetricL3L4 | H::SymmetricL3L4Udp => {
                unwild(self, slot::DL_TYPE);
                if fields == H::SymmetricL4 {
                    unwild(self, slot::DL_SRC);
                    unwild(self, slot::DL_DST);
                    or_bits(&mut self.wc, slot::VLAN_TCI, 0x1fff);
                    words.push(mac(self.flow.dl_src()) ^ mac(self.flow.dl_dst()));
                    words.push(ty as u64);
                    words.push((self.flow.vlan_tci() & 0x1fff) as u64);
                } else if !v4 && !v6 {
                    return fold32(words_hash(&words, basis));
                }
                if v4 || v6 {
                    let (ss, ds, a) = if v6 {
                        (
                            slot::IPV6_SRC,
                            slot::IPV6_DST,
                            self.flow.ipv6_src() ^ self.flow.ipv6_dst(),
                        )
                    } else {
                        (
                            slot::NW_SRC,
                            slot::NW_DST,
                            (self.flow.nw_src() ^ self.flow.nw_dst()) as u128,
                        )
                    };
                    unwild(self, ss);
                    unwild(self, ds);
                    unwild(self, slot::NW_PROTO);
                    let proto = self.flow.nw_proto();
                    words.extend([a as u64, (a >> 64) as u64, proto as u64]);
                    let ports = match fields {
                        H::SymmetricL4 => true,
                        H::SymmetricL3L4 => matches!(proto, ipproto::TCP | ipproto::SCTP),
                        _ => matches!(proto, ipproto::TCP | ipproto::SCTP | ipproto::UDP),
                    };
                    if ports {
                        unwild(self, slot::TP_SRC);
                        unwild(self, slot::TP_DST);
                        words.push((self.flow.tp_src() ^ self.flow.tp_dst()) as u64);
                    }
                }
            }
        }
        fold32(words_hash(&words, basis))
    }

    /// `selection_method=hash`: a hash of exactly `fields` (each under its mask), with
    /// `param` as basis; a field the packet does not have is left out (Open vSwitch's
    /// `xlate_hash_fields_select_group`). The hashed bits go into the megaflow.
    fn hash_group_fields(&mut self, fields: &[(FieldId, u128)], param: u64) -> u64 {
        let mut words = vec![param];
        for &(f, m) in fields {
            if !self.prereq_ok(f) {
                continue;
            }
            let s = f.slot();
            let m = m & s.max();
            or_bits(&mut self.wc, s, m);
            let v = self.flow.get(s) & m;
            words.extend([f as u64, v as u64, (v >> 64) as u64]);
        }
        words_hash(&words, 0)
    }

    /// `fin_timeout`: the megaflow matches the FIN and RST bits, so that the datapath
    /// action that shortens the rule's timeouts runs only for the packets that have them.
    fn fin_timeout(&mut self, idle: u16, hard: u16) {
        use vswitch_proto::field::ipproto;
        if !matches!(self.flow.dl_type(), ethertype::IPV4 | ethertype::IPV6)
            || self.flow.nw_proto() != ipproto::TCP
        {
            return;
        }
        const FIN: u16 = 0x001;
        const RST: u16 = 0x004;
        or_bits(&mut self.wc, slot::TCP_FLAGS, (FIN | RST) as u128);
        if self.flow.tcp_flags() & (FIN | RST) == 0 {
            return;
        }
        let Some(stats) = self.rule_stats.clone() else {
            return;
        };
        self.note(|| "fin_timeout: FIN or RST, shortening this rule's timeouts".into());
        self.out.push(DpAction::FinTimeout {
            stats: crate::dp::action::RuleRef(stats),
            idle_timeout: idle,
            hard_timeout: hard,
        });
    }

    fn learn(&mut self, l: &vswitch_proto::action::Learn) {
        let mut m = Match::CATCHALL;
        let mut actions = Vec::new();
        for spec in &l.specs {
            match spec {
                LearnSpec::MatchField { dst, src } => {
                    let v = self.read(src);
                    m.set_masked(dst.field, v << dst.ofs, dst.mask_in_field());
                }
                LearnSpec::MatchImm { dst, value } => {
                    m.set_masked(dst.field, value << dst.ofs, dst.mask_in_field());
                }
                LearnSpec::LoadField { src, dst } => {
                    let v = self.read(src);
                    actions.push(Action::SetField {
                        field: dst.field,
                        value: v << dst.ofs,
                        mask: dst.mask_in_field(),
                    });
                }
                LearnSpec::LoadImm { value, dst } => actions.push(Action::SetField {
                    field: dst.field,
                    value: value << dst.ofs,
                    mask: dst.mask_in_field(),
                }),
                LearnSpec::Output(src) => {
                    let p = self.read(src) as u32;
                    actions.push(Action::Output {
                        port: p,
                        max_len: None,
                    });
                }
            }
        }
        let spec = FlowSpec {
            table: Some(l.table),
            priority: l.priority,
            cookie: l.cookie,
            idle_timeout: l.idle_timeout,
            hard_timeout: l.hard_timeout,
            matching: m,
            actions: Some(actions),
            ..FlowSpec::default()
        };
        let ok = l.limit == 0 || self.learn_below_limit(l, &spec);
        if let Some(sf) = &l.result_dst {
            self.write(sf, ok as u128);
        }
        if ok {
            self.out.push(DpAction::Learn(Arc::new(spec)));
        } else {
            let (limit, table, cookie) = (l.limit, l.table, l.cookie);
            self.note(|| {
                format!(
                    "learn: table {table} has {limit} flows with cookie {cookie:#x}, not learned"
                )
            });
        }
    }

    /// `limit=N`: the flow may be learned if it is already there (a refresh) or if its
    /// table has fewer than N flows with its cookie (`ovs-actions(7)`). The answer depends
    /// on the whole table, so any change to it retranslates.
    fn learn_below_limit(&mut self, l: &vswitch_proto::action::Learn, spec: &FlowSpec) -> bool {
        self.deps.visits.push(Visit {
            table: l.table,
            priority: -1,
            written: u32::MAX,
        });
        if self
            .pipe
            .rule_at(l.table, spec.priority, &spec.matching)
            .is_some()
        {
            return true;
        }
        let n = self.pipe.table(l.table).map_or(0, |c| {
            c.iter()
                .filter(|(_, e)| e.rule.cookie == l.cookie)
                .take(l.limit as usize)
                .count()
        });
        n < l.limit as usize
    }

    fn ct(&mut self, ct: &vswitch_proto::action::Ct) {
        self.commit();
        let zone = match ct.zone {
            CtZone::Imm(z) => z,
            CtZone::Field(sf) => self.read(&sf) as u16,
        };
        // Several loads may each set some bits: merge them, later ones winning.
        let merge = |acc: Option<(u128, u128)>, v: u128, m: u128| {
            let (av, am) = acc.unwrap_or((0, 0));
            Some(((av & !m) | (v & m), am | m))
        };
        let mut mark: Option<(u128, u128)> = None;
        let mut label: Option<(u128, u128)> = None;
        for a in &ct.exec {
            let (field, value, mask) = match a {
                Action::SetField { field, value, mask } => (*field, *value, *mask),
                // `move` reads the packet's flow as it is here (Open vSwitch runs exec's
                // actions on the flow at the ct action).
                Action::Move { src, dst } => {
                    let v = self.read(src);
                    (dst.field, v << dst.ofs, dst.mask_in_field())
                }
                _ => continue,
            };
            match field {
                FieldId::CtMark => mark = merge(mark, value, mask),
                FieldId::CtLabel => label = merge(label, value, mask),
                _ => {}
            }
        }
        let mark = mark.map(|(v, m)| (v as u32, m as u32));
        let recirc = ct.table.map(|table| {
            // Only what the pipeline wrote is carried; the rest of the metadata comes from
            // the packet's own key when it comes back, since it may not be in the mask.
            let mut md = Flow::ZERO;
            let mut written = Flow::ZERO;
            md.w[METADATA_WORDS].copy_from_slice(&self.flow.w[METADATA_WORDS]);
            written.w[METADATA_WORDS].copy_from_slice(&self.written.w[METADATA_WORDS]);
            md.set_recirc_id(Recirc::id_for_table(table));
            md.set_conj_id(0);
            for s in [slot::RECIRC_ID, slot::CONJ_ID] {
                written.set(s, s.max());
            }
            Arc::new(Recirc {
                table,
                md: md.and(&written),
                written,
            })
        });
        if let (Some(r), true) = (&recirc, self.trace.is_some()) {
            // The packet as conntrack sends it back, less the state conntrack decides.
            let mut flow = self.flow;
            let md = r.metadata_for(&self.flow);
            flow.w[METADATA_WORDS].copy_from_slice(&md.w[METADATA_WORDS]);
            flow.set_ct_zone(zone);
            if let (true, Some((v, m))) = (ct.commit, mark) {
                flow.set_ct_mark((flow.ct_mark() & !m) | (v & m));
            }
            let table = r.table;
            self.forks.push(Fork {
                table,
                flow,
                nat: ct.nat.clone(),
            });
            self.note(|| {
                format!(
                    "A clone of the packet is forked to recirculate. The forked pipeline will be resumed at table {table}."
                )
            });
        }
        self.out.push(DpAction::Ct(Box::new(DpCt {
            zone,
            commit: ct.commit,
            force: ct.force,
            nat: ct.nat.clone(),
            mark,
            label,
            alg: ct.alg,
            recirc,
        })));
    }

    // ---- committing header changes ---------------------------------------------------

    /// Emit set actions for every header where the flow differs from the packet.
    fn commit(&mut self) {
        let (f, b) = (self.flow, self.base);
        if f == b {
            return;
        }
        let diff = |s: Slot| f.get(s) != b.get(s);
        // A set action carries whole fields, computed from this packet: the megaflow
        // must pin every bit of them, not only the bits the actions wrote (a masked
        // set_field, mod_vlan_pcp, mod_nw_tos keep the packet's other bits).
        const PACKET_SLOTS: [Slot; 17] = [
            slot::DL_SRC,
            slot::DL_DST,
            slot::VLAN_TCI,
            slot::VLAN_TCI_INNER,
            slot::NW_SRC,
            slot::NW_DST,
            slot::NW_TOS,
            slot::NW_TTL,
            slot::NW_PROTO,
            slot::IPV6_SRC,
            slot::IPV6_DST,
            slot::IPV6_LABEL,
            slot::ARP_SHA,
            slot::ARP_THA,
            slot::TP_SRC,
            slot::TP_DST,
            slot::ND_TARGET,
        ];
        for s in PACKET_SLOTS {
            if diff(s) {
                or_bits(&mut self.wc, s, s.max());
            }
        }
        if diff(slot::TUN_ID) || diff(slot::TUN_SRC) || diff(slot::TUN_DST) {
            for s in [slot::TUN_ID, slot::TUN_SRC, slot::TUN_DST] {
                or_bits(&mut self.wc, s, s.max());
            }
        }
        let pick = |s: Slot| diff(s).then(|| f.get(s));
        if diff(slot::DL_SRC) || diff(slot::DL_DST) {
            self.out.push(DpAction::SetEth {
                src: diff(slot::DL_SRC).then(|| f.dl_src()),
                dst: diff(slot::DL_DST).then(|| f.dl_dst()),
            });
        }
        self.commit_vlan();
        match f.dl_type() {
            ethertype::IPV4
                if diff(slot::NW_SRC)
                    || diff(slot::NW_DST)
                    || diff(slot::NW_TOS)
                    || diff(slot::NW_TTL) =>
            {
                self.out.push(DpAction::SetIpv4 {
                    src: pick(slot::NW_SRC).map(|v| v as u32),
                    dst: pick(slot::NW_DST).map(|v| v as u32),
                    tos: pick(slot::NW_TOS).map(|v| v as u8),
                    ttl: pick(slot::NW_TTL).map(|v| v as u8),
                })
            }
            ethertype::IPV6
                if diff(slot::IPV6_SRC)
                    || diff(slot::IPV6_DST)
                    || diff(slot::NW_TOS)
                    || diff(slot::IPV6_LABEL)
                    || diff(slot::NW_TTL) =>
            {
                self.out.push(DpAction::SetIpv6 {
                    src: pick(slot::IPV6_SRC),
                    dst: pick(slot::IPV6_DST),
                    tc: pick(slot::NW_TOS).map(|v| v as u8),
                    label: pick(slot::IPV6_LABEL).map(|v| v as u32),
                    hlimit: pick(slot::NW_TTL).map(|v| v as u8),
                })
            }
            ethertype::ARP | ethertype::RARP
                if diff(slot::NW_PROTO)
                    || diff(slot::NW_SRC)
                    || diff(slot::NW_DST)
                    || diff(slot::ARP_SHA)
                    || diff(slot::ARP_THA) =>
            {
                self.out.push(DpAction::SetArp {
                    op: pick(slot::NW_PROTO).map(|v| v as u16),
                    sha: diff(slot::ARP_SHA).then(|| f.arp_sha()),
                    spa: pick(slot::NW_SRC).map(|v| v as u32),
                    tha: diff(slot::ARP_THA).then(|| f.arp_tha()),
                    tpa: pick(slot::NW_DST).map(|v| v as u32),
                })
            }
            _ => {}
        }
        if (diff(slot::TP_SRC) || diff(slot::TP_DST))
            && matches!(f.dl_type(), ethertype::IPV4 | ethertype::IPV6)
        {
            use vswitch_proto::field::ipproto;
            match f.nw_proto() {
                ipproto::ICMP | ipproto::ICMPV6 => self.out.push(DpAction::SetIcmp {
                    typ: pick(slot::TP_SRC).map(|v| v as u8),
                    code: pick(slot::TP_DST).map(|v| v as u8),
                }),
                _ => self.out.push(DpAction::SetPorts {
                    src: pick(slot::TP_SRC).map(|v| v as u16),
                    dst: pick(slot::TP_DST).map(|v| v as u16),
                }),
            }
        }
        if f.dl_type() == ethertype::IPV6
            && (diff(slot::ND_TARGET) || diff(slot::ARP_SHA) || diff(slot::ARP_THA))
        {
            self.out.push(DpAction::SetNd {
                target: pick(slot::ND_TARGET),
                sll: diff(slot::ARP_SHA).then(|| f.arp_sha()),
                tll: diff(slot::ARP_THA).then(|| f.arp_tha()),
            });
        }
        if diff(slot::TUN_ID) || diff(slot::TUN_SRC) || diff(slot::TUN_DST) {
            self.out.push(DpAction::SetTunnel {
                id: f.tun_id(),
                src: f.tun_src(),
                dst: f.tun_dst(),
            });
        }
        self.base = f;
    }

    fn commit_vlan(&mut self) {
        let (f, b) = (self.flow, self.base);
        let count = |x: &Flow| {
            (x.vlan_tci() & VLAN_CFI != 0) as u8 + (x.vlan_tci_inner() & VLAN_CFI != 0) as u8
        };
        let (nf, mut nb) = (count(&f), count(&b));
        let mut outer = b.vlan_tci();
        let mut inner = b.vlan_tci_inner();
        while nb > nf {
            self.out.push(DpAction::PopVlan);
            outer = inner;
            inner = 0;
            nb -= 1;
        }
        if nf > nb {
            // Pushes happen from the inside out.
            if nf - nb == 2 {
                self.out.push(DpAction::PushVlan {
                    tpid: ethertype::VLAN,
                    tci: f.vlan_tci_inner() & !VLAN_CFI,
                });
            }
            self.out.push(DpAction::PushVlan {
                tpid: self.push_tpid,
                tci: f.vlan_tci() & !VLAN_CFI,
            });
        } else if nf > 0 && f.vlan_tci() != outer {
            self.out
                .push(DpAction::SetVlanTci(f.vlan_tci() & !VLAN_CFI));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_choice_respects_weights() {
        let mut counts = [0u32; 3];
        for i in 0..30_000u64 {
            let h = (i as u128 * 0x9e37_79b9_7f4a_7c15_u128) as u64 ^ (i << 7);
            let c = choose_bucket([(0u32, 100u16), (1, 100), (2, 200)].into_iter(), h).unwrap();
            counts[c] += 1;
        }
        // Shares follow the weights: 1/4, 1/4, 1/2 (within a few percent).
        for (c, want) in counts.iter().zip([7500.0, 7500.0, 15000.0]) {
            assert!((*c as f64 - want).abs() < want * 0.05, "{counts:?}");
        }
        assert_eq!(choose_bucket([(0u32, 0u16)].into_iter(), 1), None);
    }
}
