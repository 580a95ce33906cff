//! The flow syntax of `ovs-ofctl` (`ovs-ofctl(8)`, `ovs-fields(7)`, `ovs-actions(7)`), where
//! it overlaps with this switch.
//!
//! Parsing follows Open vSwitch's spellings and aliases, with two rules of our own: a field
//! whose prerequisites are missing is an error (Open vSwitch drops it silently, so
//! `tp_dst=80,actions=drop` would drop everything), and a field given twice, or contradicting
//! another, is an error. Printing follows Open vSwitch 3.1's `dump-flows` and `dump-groups`
//! output, and for every value the parser returns, printing and parsing again gives the same
//! value.
//!
//! - `lexer`: `key`, `key=value`, `key:value`, `key(value)` tokens with byte offsets;
//! - `value` and `format`: reading and writing integers, addresses, ports, flags;
//! - `matching`: the match; `actions`, `setfield`, `ct`, `learn`: the actions;
//! - `flow` and `group`: whole flow and group lines.

mod actions;
mod ct;
mod flow;
mod format;
mod group;
mod learn;
mod lexer;
mod matching;
mod meter;
mod setfield;
mod value;

use crate::action::{Action, SubField};
use crate::flowmod::{FlowSpec, FlowStats, Usage};
use crate::group::GroupSpec;
use crate::matching::Match;
use std::fmt;

/// Port names known to whoever parses or prints flows (the switch's port table).
pub trait PortNames {
    /// The number of the port called `name`.
    fn port_no(&self, name: &str) -> Option<u32>;
    /// The name of port `no`.
    fn port_name(&self, no: u32) -> Option<String>;
}

/// No port names: ports are written as numbers (or reserved names such as `LOCAL`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPortNames;

impl PortNames for NoPortNames {
    fn port_no(&self, _name: &str) -> Option<u32> {
        None
    }
    fn port_name(&self, _no: u32) -> Option<String> {
        None
    }
}

/// A flow text that could not be parsed: where (byte offset into the input) and what was
/// expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {}: {message}", offset + 1)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            message: message.into(),
        }
    }
    /// The error, then the input line with a caret under the offending byte:
    ///
    /// ```text
    /// column 1: tp_dst requires ...
    ///     tp_dst=80,actions=drop
    ///     ^
    /// ```
    ///
    /// The message comes first so a caller may prefix it (`file:3: `) without moving the
    /// caret off its column.
    pub fn render(&self, input: &str) -> String {
        let line = input.lines().next().unwrap_or("");
        let upto = self.offset.min(line.len());
        let pad: String = line
            .char_indices()
            .take_while(|(i, _)| *i < upto)
            .map(|(_, c)| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{self}\n    {line}\n    {pad}^")
    }
}

/// Parse one flow line for `usage` (`add-flow`, `mod-flows`, `del-flows`/`dump-flows`).
///
/// Also reads a line printed by `dump-flows` back (its statistics are ignored). An added
/// flow's `table=0` reads as `table: None`, which means the same.
pub fn parse_flow(s: &str, usage: Usage, ports: &dyn PortNames) -> Result<FlowSpec, ParseError> {
    flow::parse_flow(s, usage, ports)
}

/// Parse a match alone: the criteria of a flow, or a packet for `trace`. Keys that are not
/// match fields (`priority=`, `actions=`, ...) are rejected.
pub fn parse_match(s: &str, ports: &dyn PortNames) -> Result<Match, ParseError> {
    flow::parse_match_only(s, ports)
}

/// Parse an action list (what follows `actions=`), checking it against the flow's `matching`
/// as `add-flow` would (e.g. `dec_ttl` needs `ip` or `ipv6`). Offsets in errors are relative
/// to `s`.
pub fn parse_actions(
    s: &str,
    matching: &Match,
    ports: &dyn PortNames,
) -> Result<Vec<Action>, ParseError> {
    let mut ctx = actions::Ctx {
        ports,
        state: *matching,
        check: true,
        in_ct_exec: false,
        in_group: false,
        in_action_set: false,
    };
    actions::parse_action_list(s, 0, &mut ctx)
}

/// Parse one group line (`add-group`).
pub fn parse_group(s: &str, ports: &dyn PortNames) -> Result<GroupSpec, ParseError> {
    group::parse_group(s, ports)
}

/// Parse a subfield: `reg1`, `reg1[]`, `NXM_NX_REG1[0..15]`, `reg1[3]`.
pub fn parse_subfield(s: &str) -> Result<SubField, ParseError> {
    value::parse_subfield_at(s, 0)
}

/// A [`fmt::Display`] made of a closure that writes into a `String`.
struct Show<F: Fn(&mut String)>(F);

impl<F: Fn(&mut String)> fmt::Display for Show<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        (self.0)(&mut s);
        f.write_str(&s)
    }
}

/// A flow as `ovs-ofctl dump-flows` prints it: with `stats`, the `cookie=..., duration=...,
/// table=..., n_packets=..., n_bytes=..., idle_age=...` prefix; without, the `--no-stats`
/// form. There is no leading space (dump-flows adds one per line).
pub fn display_flow<'a>(
    spec: &'a FlowSpec,
    ports: &'a dyn PortNames,
    stats: Option<&'a FlowStats>,
) -> impl fmt::Display + 'a {
    Show(move |s: &mut String| flow::write_flow(s, spec, ports, stats))
}

/// A match in Open vSwitch's `match_format()` order, with `priority=N` first when `priority`
/// is given and not the default.
pub fn display_match<'a>(
    m: &'a Match,
    priority: Option<u16>,
    ports: &'a dyn PortNames,
) -> impl fmt::Display + 'a {
    Show(move |s: &mut String| matching::write_match(s, m, priority, ports))
}

/// An action list as Open vSwitch prints it (`drop` when empty).
pub fn display_actions<'a>(
    actions: &'a [Action],
    ports: &'a dyn PortNames,
) -> impl fmt::Display + 'a {
    Show(move |s: &mut String| actions::write_actions(s, actions, ports))
}

/// A group as `ovs-ofctl -O OpenFlow15 dump-groups` prints it.
pub fn display_group<'a>(g: &'a GroupSpec, ports: &'a dyn PortNames) -> impl fmt::Display + 'a {
    Show(move |s: &mut String| group::write_group(s, g, ports))
}

/// A subfield as Open vSwitch prints it: `NXM_NX_REG1[0..15]`.
pub fn display_subfield(sf: &SubField) -> impl fmt::Display + '_ {
    Show(move |s: &mut String| s.push_str(&format::fmt_subfield(sf)))
}

impl std::str::FromStr for FlowSpec {
    type Err = ParseError;
    /// An `add-flow` line, without port names.
    fn from_str(s: &str) -> Result<FlowSpec, ParseError> {
        parse_flow(s, Usage::Add, &NoPortNames)
    }
}

impl fmt::Display for FlowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", display_flow(self, &NoPortNames, None))
    }
}

impl std::str::FromStr for Match {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Match, ParseError> {
        parse_match(s, &NoPortNames)
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", display_match(self, None, &NoPortNames))
    }
}

impl std::str::FromStr for GroupSpec {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<GroupSpec, ParseError> {
        parse_group(s, &NoPortNames)
    }
}

impl fmt::Display for GroupSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", display_group(self, &NoPortNames))
    }
}

pub use meter::{display_meter, parse_meter};

#[cfg(test)]
mod tests;
