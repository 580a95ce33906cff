//! `trace`: what the pipeline does with one packet, table by table, like Open vSwitch's
//! `ofproto/trace`.

use super::{Rule, table_name};
use crate::dp::action::{DisplayActions, DpAction};
use std::fmt;
use vswitch_proto::action::Action;
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
}

impl Trace {
    /// The packet as it comes back from the first `ct(...,table=N)` of the datapath
    /// actions, with conntrack having said `ct_state` (`ofproto/trace --ct-next`): the
    /// metadata the pipeline wrote, recirc_id for table N, the zone of the action. None
    /// when the actions do not recirculate.
    pub fn recirculated(&self, ct_state: u16) -> Option<Flow> {
        self.actions.iter().find_map(|a| match a {
            DpAction::Ct(c) => c.recirc.as_ref().map(|r| {
                let mut key = self.flow;
                let md = r.metadata_for(&self.flow);
                key.w[crate::dp::action::METADATA_WORDS]
                    .copy_from_slice(&md.w[crate::dp::action::METADATA_WORDS]);
                key.set_ct_state(ct_state);
                key.set_ct_zone(c.zone);
                key
            }),
            _ => None,
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

    /// The datapath actions in Open vSwitch's syntax (`drop` when none).
    pub fn datapath_actions(&self) -> String {
        DisplayActions(&self.actions).to_string()
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
        write!(f, "Datapath actions: {}", self.t.datapath_actions())
    }
}
