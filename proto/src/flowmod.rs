//! A flow as written in flow text: the rule's match, priority, table, cookie, timeouts and
//! actions, plus the filters that `del-flows`/`dump-flows` accept.

use crate::action::Action;
use crate::matching::Match;
use serde::{Deserialize, Serialize};

/// Priority of a flow that does not say (`ovs-ofctl`'s default).
pub const DEFAULT_PRIORITY: u16 = 32768;

/// Flow flags (`send_flow_rem`, `check_overlap`, `reset_counts`, `no_packet_counts`,
/// `no_byte_counts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowFlags {
    pub send_flow_rem: bool,
    pub check_overlap: bool,
    pub reset_counts: bool,
    pub no_packet_counts: bool,
    pub no_byte_counts: bool,
}

/// One flow line, parsed. What is required or allowed depends on the [`Usage`] it was
/// parsed for: an added flow has actions; a deletion criterion has none and may mask the
/// cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    /// `None` when the text gave no `table=`: table 0 for an added flow, every table for a
    /// deletion or dump.
    pub table: Option<u8>,
    pub priority: u16,
    pub cookie: u64,
    /// For modify/delete/dump: which cookie bits must equal `cookie` (`cookie=V/M`); 0 means
    /// the cookie is not part of the criteria.
    pub cookie_mask: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub importance: u16,
    pub flags: FlowFlags,
    /// `out_port=`: modify/delete/dump only rules that output to this port.
    pub out_port: Option<u32>,
    /// `out_group=`: modify/delete/dump only rules that use this group.
    pub out_group: Option<u32>,
    pub matching: Match,
    /// `None` when the text has no `actions=` (deletion and dump criteria).
    pub actions: Option<Vec<Action>>,
}

impl Default for FlowSpec {
    fn default() -> FlowSpec {
        FlowSpec {
            table: None,
            priority: DEFAULT_PRIORITY,
            cookie: 0,
            cookie_mask: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            importance: 0,
            flags: FlowFlags::default(),
            out_port: None,
            out_group: None,
            matching: Match::CATCHALL,
            actions: None,
        }
    }
}

/// What a flow line is for; it decides which keys are required or allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Usage {
    /// `add-flow`: `actions=` required; `cookie` may not be masked; `out_port` not allowed.
    Add,
    /// `mod-flows`: `actions=` required; the match (and cookie mask) select the rules.
    Modify,
    /// `del-flows` and `dump-flows`: no `actions=`; the match, `cookie=V/M`, `out_port`,
    /// `out_group` and `table` select the rules.
    Select,
}

/// Counters printed by `dump-flows` before the flow itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStats {
    /// Time since the rule was added, in milliseconds.
    pub duration_ms: u64,
    pub n_packets: u64,
    pub n_bytes: u64,
    /// Seconds since a packet last hit the rule (or since it was added).
    pub idle_age: u64,
    /// Seconds since the rule was last added or modified, when that differs from duration.
    pub hard_age: Option<u64>,
}
