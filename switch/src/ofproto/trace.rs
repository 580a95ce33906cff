//! `trace`: what the pipeline does with one packet, table by table, like Open vSwitch's
//! `ofproto/trace`.

use super::{Rule, table_name};
use crate::dp::action::{DisplayActions, DpAction};
use std::fmt;
use vswitch_proto::action::{Action, Nat, NatKind};
use vswitch_proto::flow::Flow;
use vswitch_proto::matching::Match;
use vswitch_proto::text::{self, PortNames};

/// A rule as the trace saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct TracedRule {
    pub priority: u16,
    pub cookie: u64,
    pub matching: Match,
    pub actions: Vec<Action>,
}

impl From<&Rule> for TracedRule {
    fn from(r: &Rule) -> TracedRule {
        TracedRule {
            priority: r.priority,
            cookie: r.cookie,
            matching: r.matching,
            actions: r.actions.clone(),
        }
    }
}

/// One line of a trace. `depth` is the resubmit nesting level.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceStep {
    /// A table lookup and the rule that won (`None`: no rule matched).
    Table {
        depth: u32,
        table: u8,
        rule: Option<Box<TracedRule>>,
    },
    /// An action of the winning rule, as it is executed.
    Action { depth: u32, action: Action },
    /// Something the interpreter decided (a drop, a skipped output, a group bucket).
    Note { depth: u32, text: String },
}

/// The whole trace of one packet.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The packet as given.
    pub flow: Flow,
    pub steps: Vec<TraceStep>,
    /// The flow after every action (what a later lookup would see).
    pub final_flow: Flow,
    /// The megaflow the datapath would cache: the packet's bits under the mask the
    /// result depends on.
    pub megaflow: Match,
    /// What the datapath would do.
    pub actions: Vec<DpAction>,
    /// The recirculations after a `ct(...,table=N)`, for a trace that follows them.
    pub forks: Vec<Fork>,
}

/// A packet sent back into the pipeline after conntrack: its flow as it re-enters (the
/// recirc_id, the metadata the pipeline wrote, `ct_zone`, a committed `ct_mark`), less
/// the `ct_state` conntrack would decide.
#[derive(Clone, Debug, PartialEq)]
pub struct Fork {
    pub table: u8,
    pub flow: Flow,
    /// The `nat(...)` of the `ct`, simulated on the addresses and ports as Open vSwitch's
    /// trace does (the first address and port of the range).
    pub nat: Option<Nat>,
}

/// The endpoints a NAT simulation shows, as Open vSwitch's trace writes them.
fn endpoints(f: &Flow) -> String {
    if f.dl_type() == vswitch_proto::field::ethertype::IPV6 {
        format!(
            "ipv6_src={},tp_src={},ipv6_dst={},tp_dst={}",
            std::net::Ipv6Addr::from(f.ipv6_src()),
            f.tp_src(),
            std::net::Ipv6Addr::from(f.ipv6_dst()),
            f.tp_dst()
        )
    } else {
        format!(
            "nw_src={},tp_src={},nw_dst={},tp_dst={}",
            std::net::Ipv4Addr::from(f.nw_src()),
            f.tp_src(),
            std::net::Ipv4Addr::from(f.nw_dst()),
            f.tp_dst()
        )
    }
}

/// Rewrite `flow` as `nat` would (its range's first address and port); the endpoints
/// before and after, or `None` when it names no translation.
fn simulate_nat(flow: &mut Flow, nat: &Nat) -> Option<(String, String)> {
    let kind = nat.kind?;
    if nat.addrs.is_none() && nat.ports.is_none() {
        return None;
    }
    let before = endpoints(flow);
    let src = kind == NatKind::Src;
    match nat.addrs.map(|(a, _)| a) {
        Some(std::net::IpAddr::V4(a)) if src => flow.set_nw_src(a.into()),
        Some(std::net::IpAddr::V4(a)) => flow.set_nw_dst(a.into()),
        Some(std::net::IpAddr::V6(a)) if src => flow.set_ipv6_src(a.into()),
        Some(std::net::IpAddr::V6(a)) => flow.set_ipv6_dst(a.into()),
        None => {}
    }
    if let Some((p, _)) = nat.ports {
        if src {
            flow.set_tp_src(p);
        } else {
            flow.set_tp_dst(p);
        }
    }
    Some((before, endpoints(flow)))
}

/// A pass of a trace after a recirculation, with the `ct_state` it was given.
#[derive(Clone, Debug)]
pub struct Resumed {
    pub ct_state: u16,
    /// No `--ct-next` state was left: Open vSwitch's default, `trk|new`.
    pub default: bool,
    /// The endpoints before and after a simulated NAT.
    pub nat: Option<(String, String)>,
    pub trace: Trace,
}

/// The most passes one trace follows (a `ct(table=N)` loop would be endless).
pub const MAX_PASSES: usize = 32;

/// Follow a trace's recirculations as `ofproto/trace` does: each queued fork, in order,
/// resumes with the next of `ct_next` (then `trk|new`) as its `ct_state`, and what it
/// forks is queued after the rest.
pub fn follow(first: &Trace, ct_next: &[u16], mut run: impl FnMut(&Flow) -> Trace) -> Vec<Resumed> {
    use vswitch_proto::flow::ct_state::{NEW, TRK};
    let mut queue: std::collections::VecDeque<Fork> = first.forks.iter().cloned().collect();
    let mut next = ct_next.iter();
    let mut out = Vec::new();
    while let Some(fork) = queue.pop_front() {
        if out.len() >= MAX_PASSES {
            break;
        }
        let (ct_state, default) = match next.next() {
            Some(s) => (*s, false),
            None => (TRK | NEW, true),
        };
        let mut flow = fork.flow;
        flow.set_ct_state(ct_state);
        let nat = fork.nat.as_ref().and_then(|n| simulate_nat(&mut flow, n));
        let trace = run(&flow);
        queue.extend(trace.forks.iter().cloned());
        out.push(Resumed {
            ct_state,
            default,
            nat,
            trace,
        });
    }
    out
}

/// A trace and the passes after it, as `ofproto/trace` prints them: each pass under a
/// `recirc(0x..) - resume conntrack with ct_state=...` banner.
pub fn display_all<'a>(
    first: &'a Trace,
    resumed: &'a [Resumed],
    ports: &'a dyn PortNames,
) -> impl fmt::Display + 'a {
    struct All<'a>(&'a Trace, &'a [Resumed], &'a dyn PortNames);
    impl fmt::Display for All<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}", self.0.display(self.2))?;
            let rule = "=".repeat(79);
            for r in self.1 {
                write!(f, "\n\n{rule}\nrecirc({:#x})", r.trace.flow.recirc_id())?;
                if r.default {
                    f.write_str(" - resume conntrack with default ct_state=trk|new (use --ct-next to customize)")?;
                } else {
                    write!(
                        f,
                        " - resume conntrack with ct_state={}",
                        vswitch_proto::conntrack::format_ct_state(r.ct_state)
                    )?;
                }
                if let Some((before, after)) = &r.nat {
                    write!(
                        f,
                        "\nReplacing src/dst IP/ports to simulate NAT:\n Initial flow: {before}\n Modified flow: {after}"
                    )?;
                }
                write!(f, "\n{rule}\n\n{}", r.trace.display(self.2))?;
            }
            Ok(())
        }
    }
    All(first, resumed, ports)
}

impl Trace {
    /// The packet as it comes back from the first `ct(...,table=N)` of the datapath
    /// actions, with conntrack having said `ct_state` (`ofproto/trace --ct-next`): the
    /// metadata the pipeline wrote, recirc_id for table N, the zone of the action. None
    /// when the actions do not recirculate.
    pub fn recirculated(&self, ct_state: u16) -> Option<Flow> {
        /// The `ct` actions this packet meets (in a select group, its branch's).
        fn cts<'a>(
            actions: &'a [DpAction],
            key: &'a Flow,
        ) -> Box<dyn Iterator<Item = &'a crate::dp::action::DpCt> + 'a> {
            Box::new(actions.iter().flat_map(move |a| match a {
                DpAction::Ct(c) => Box::new(std::iter::once(&**c)),
                DpAction::Select(s) => cts(&s.pick(key).actions, key),
                _ => Box::new(std::iter::empty()) as Box<dyn Iterator<Item = _>>,
            }))
        }
        cts(&self.actions, &self.flow).find_map(|c| {
            c.recirc.as_ref().map(|r| {
                let mut key = self.flow;
                let md = r.metadata_for(&self.flow);
                key.w[crate::dp::action::METADATA_WORDS]
                    .copy_from_slice(&md.w[crate::dp::action::METADATA_WORDS]);
                key.set_ct_state(ct_state);
                key.set_ct_zone(c.zone);
                key
            })
        })
    }

    /// Rules that matched, in order (the tables where nothing matched are left out).
    pub fn matched(&self) -> impl Iterator<Item = (u8, &TracedRule)> {
        self.steps.iter().filter_map(|s| match s {
            TraceStep::Table {
                table,
                rule: Some(r),
                ..
            } => Some((*table, &**r)),
            _ => None,
        })
    }

    /// The datapath actions in Open vSwitch's syntax (`drop` when none), as this packet
    /// runs them: of a select group decided in the datapath, the bucket it takes.
    pub fn datapath_actions(&self) -> String {
        DisplayActions(&self.taken_actions()).to_string()
    }

    /// The datapath actions this packet runs (a select group's, its bucket's).
    pub fn taken_actions(&self) -> Vec<DpAction> {
        fn walk(actions: &[DpAction], key: &Flow, out: &mut Vec<DpAction>) {
            for a in actions {
                match a {
                    DpAction::Select(s) => walk(&s.pick(key).actions, key, out),
                    a => out.push(a.clone()),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.actions, &self.flow, &mut out);
        out
    }

    /// The megaflow's actions when they hold a choice made per packet (a select group
    /// decided in the datapath), else `None`.
    pub fn cached_actions(&self) -> Option<String> {
        self.actions
            .iter()
            .any(|a| matches!(a, DpAction::Select(_)))
            .then(|| DisplayActions(&self.actions).to_string())
    }

    /// Render for a person, with port names.
    pub fn display<'a>(&'a self, ports: &'a dyn PortNames) -> impl fmt::Display + 'a {
        TraceDisplay { t: self, ports }
    }
}

/// A packet's flow as a match that shows its non-zero fields, for printing.
pub fn packet_match(flow: &Flow) -> Match {
    use vswitch_proto::field::ALL_FIELDS;
    let mut mask = Flow::ZERO;
    for f in ALL_FIELDS {
        let s = f.slot();
        if flow.get(s) != 0 {
            mask.or_assign(&Flow::mask_of(s));
        }
    }
    // The flags as a packet has them (`est|trk`, as Open vSwitch prints a flow), not
    // as a mask of every bit of the field.
    if flow.ct_state() != 0 {
        mask.set_ct_state(vswitch_proto::flow::ct_state::ALL);
    }
    Match::new(*flow, mask)
}

struct TraceDisplay<'a> {
    t: &'a Trace,
    ports: &'a dyn PortNames,
}

fn indent(f: &mut fmt::Formatter<'_>, depth: u32) -> fmt::Result {
    for _ in 0..depth {
        f.write_str("    ")?;
    }
    Ok(())
}

impl fmt::Display for TraceDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.t;
        writeln!(
            f,
            "Flow: {}",
            text::display_match(&packet_match(&t.flow), None, self.ports)
        )?;
        writeln!(f)?;
        for s in &t.steps {
            match s {
                TraceStep::Table { depth, table, rule } => {
                    indent(f, *depth)?;
                    let name = table_name(*table)
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    match rule {
                        Some(r) => {
                            write!(f, "{table:2}{name}. priority {}", r.priority)?;
                            if r.cookie != 0 {
                                write!(f, ", cookie {:#x}", r.cookie)?;
                            }
                            writeln!(f)?;
                            indent(f, *depth)?;
                            let m = text::display_match(&r.matching, None, self.ports).to_string();
                            let sep = if m.is_empty() { "" } else { ", " };
                            writeln!(
                                f,
                                "    {m}{sep}actions={}",
                                text::display_actions(&r.actions, self.ports)
                            )?;
                        }
                        None => {
                            writeln!(f, "{table:2}{name}. No match.")?;
                            indent(f, *depth)?;
                            writeln!(f, "    drop")?;
                        }
                    }
                }
                TraceStep::Action { depth, action } => {
                    indent(f, *depth)?;
                    writeln!(
                        f,
                        "    {}",
                        text::display_actions(std::slice::from_ref(action), self.ports)
                    )?;
                }
                TraceStep::Note { depth, text } => {
                    indent(f, *depth)?;
                    writeln!(f, "     -> {text}")?;
                }
            }
        }
        writeln!(f)?;
        if t.final_flow == t.flow {
            writeln!(f, "Final flow: unchanged")?;
        } else {
            let fin = packet_match(&t.final_flow);
            writeln!(
                f,
                "Final flow: {}",
                text::display_match(&fin, None, self.ports)
            )?;
        }
        writeln!(
            f,
            "Megaflow: {}",
            text::display_match(&t.megaflow, None, self.ports)
        )?;
        // Before the last line, which stays `Datapath actions:` as in Open vSwitch.
        if let Some(all) = self.t.cached_actions() {
            writeln!(
                f,
                "Megaflow's actions (the datapath picks per packet): {all}"
            )?;
        }
        write!(f, "Datapath actions: {}", self.t.datapath_actions())
    }
}
