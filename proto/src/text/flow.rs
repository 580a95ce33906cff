//! Whole flow lines: `table=`, `priority=`, `cookie=`, timeouts, flags, the match and
//! `actions=`; printed as `ovs-ofctl dump-flows` prints them (with or without statistics).

use super::actions::{Ctx, parse_action_list, write_actions};
use super::format::fmt_port;
use super::lexer::{Delim, Lexer};
use super::matching::{MatchBuilder, match_words, write_match};
use super::value::{parse_port, parse_table, parse_u16, parse_u32, parse_u64, suggest};
use super::{ParseError, PortNames};
use crate::action::Action;
use crate::flowmod::{FlowSpec, FlowStats, Usage};
use crate::matching::Match;
use std::fmt::Write;

/// Keys of a flow line that are not match fields.
const FLOW_KEYS: &[&str] = &[
    "table",
    "priority",
    "cookie",
    "idle_timeout",
    "hard_timeout",
    "importance",
    "send_flow_rem",
    "check_overlap",
    "reset_counts",
    "no_packet_counts",
    "no_byte_counts",
    "out_port",
    "out_group",
    "actions",
    "duration",
    "n_packets",
    "n_bytes",
    "idle_age",
    "hard_age",
];

/// Statistics `dump-flows` prints; ignored when read back, as Open vSwitch does.
const STATS_KEYS: &[&str] = &["duration", "n_packets", "n_bytes", "idle_age", "hard_age"];

fn usage_name(u: Usage) -> &'static str {
    match u {
        Usage::Add => "adding a flow",
        Usage::Modify => "modifying flows",
        Usage::Select => "selecting flows (del-flows, dump-flows)",
    }
}

/// Parse a match only (for `parse_match`: no priority, actions or other flow keys).
pub(crate) fn parse_match_only(s: &str, ports: &dyn PortNames) -> Result<Match, ParseError> {
    let mut b = MatchBuilder::default();
    let mut lexer = Lexer::new(s, 0);
    while let Some(t) = lexer.next_token() {
        let t = t?;
        if FLOW_KEYS.contains(&t.key) || t.key == "action" {
            return Err(ParseError::new(
                t.key_at,
                format!(
                    "{} is not a match field; only match fields are allowed here",
                    t.key
                ),
            ));
        }
        b.add(&t, ports)?;
    }
    b.finish()
}

pub(crate) fn parse_flow(
    s: &str,
    usage: Usage,
    ports: &dyn PortNames,
) -> Result<FlowSpec, ParseError> {
    let mut spec = FlowSpec::default();
    let mut b = MatchBuilder::default();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut actions: Option<(&str, usize, usize)> = None;
    let mut lexer = Lexer::new(s, 0);
    while let Some(t) = lexer.next_token() {
        let t = t?;
        let key = t.key;
        if !FLOW_KEYS.contains(&key) && key != "action" {
            if !MatchBuilder::knows(key) {
                return Err(ParseError::new(
                    t.key_at,
                    format!(
                        "unknown field or keyword \"{key}\"{}",
                        suggest(key, match_words().chain(FLOW_KEYS.iter().copied()))
                    ),
                ));
            }
            b.add(&t, ports)?;
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key)
            && !STATS_KEYS.contains(&key)
        {
            return Err(ParseError::new(
                t.key_at,
                format!("{key} is given twice (first at column {})", first + 1),
            ));
        }
        seen.push((key, t.key_at));
        let not_here = || {
            ParseError::new(
                t.key_at,
                format!("{key} is not allowed when {}", usage_name(usage)),
            )
        };
        let is_flag = matches!(
            key,
            "send_flow_rem"
                | "check_overlap"
                | "reset_counts"
                | "no_packet_counts"
                | "no_byte_counts"
        );
        if is_flag {
            if t.has_value() {
                return Err(ParseError::new(
                    t.key_at,
                    format!("{key} is a flag and takes no value"),
                ));
            }
            if usage == Usage::Select {
                return Err(not_here());
            }
            let f = &mut spec.flags;
            match key {
                "send_flow_rem" => f.send_flow_rem = true,
                "check_overlap" => f.check_overlap = true,
                "reset_counts" => f.reset_counts = true,
                "no_packet_counts" => f.no_packet_counts = true,
                _ => f.no_byte_counts = true,
            }
            continue;
        }
        if t.delim != Delim::Eq {
            return Err(ParseError::new(
                t.key_at,
                format!("{key} needs a value: {key}=VALUE"),
            ));
        }
        let (v, at) = (t.value, t.value_at);
        match key {
            "actions" | "action" => {
                if usage == Usage::Select {
                    return Err(not_here());
                }
                let (rest, rest_at) = lexer.rest();
                // The action text runs to the end of the line.
                let end = rest_at + rest.len();
                actions = Some((&s[at..end], at, t.key_at));
                lexer.finish();
            }
            "table" => spec.table = Some(parse_table(v, at, key)?),
            "priority" => spec.priority = parse_u16(v, at, key)?,
            "idle_timeout" | "hard_timeout" | "importance" => {
                if usage == Usage::Select || (key == "importance" && usage == Usage::Modify) {
                    return Err(not_here());
                }
                let n = parse_u16(v, at, key)?;
                match key {
                    "idle_timeout" => spec.idle_timeout = n,
                    "hard_timeout" => spec.hard_timeout = n,
                    _ => spec.importance = n,
                }
            }
            "out_port" | "out_group" => {
                if usage != Usage::Select {
                    return Err(not_here());
                }
                if key == "out_port" {
                    spec.out_port = Some(parse_port(v, at, key, ports)?);
                } else {
                    let g = parse_u32(v, at, key)?;
                    if g > super::actions::GROUP_MAX {
                        return Err(ParseError::new(
                            at,
                            format!("out_group: {v} is out of range"),
                        ));
                    }
                    spec.out_group = Some(g);
                }
            }
            "cookie" => match v.split_once('/') {
                Some((c, m)) => {
                    if usage == Usage::Add {
                        return Err(ParseError::new(
                            at + c.len(),
                            "flow additions cannot use a cookie mask",
                        ));
                    }
                    let cookie = parse_u64(c, at, key)?;
                    let mask_at = at + c.len() + 1;
                    let mask = if m == "-1" {
                        u64::MAX
                    } else {
                        parse_u64(m, mask_at, "cookie mask")?
                    };
                    spec.cookie = cookie & mask;
                    spec.cookie_mask = mask;
                }
                None => {
                    if usage == Usage::Select {
                        return Err(ParseError::new(
                            t.key_at,
                            format!(
                                "cookie={v} would set a cookie, which selecting flows cannot do; \
                                 to select flows by cookie write cookie={v}/-1"
                            ),
                        ));
                    }
                    spec.cookie = parse_u64(v, at, key)?;
                }
            },
            _ => {
                // duration=, n_packets=, ...: what dump-flows prints, read back and ignored.
                debug_assert!(STATS_KEYS.contains(&key));
            }
        }
    }
    spec.matching = b.finish()?;
    if usage == Usage::Add && spec.table == Some(0) {
        // An added flow without table= goes to table 0: one value for one meaning.
        spec.table = None;
    }
    match actions {
        Some((text, at, key_at)) => {
            let mut ctx = Ctx {
                ports,
                state: spec.matching,
                check: true,
                in_ct_exec: false,
                in_group: false,
                in_action_set: false,
            };
            let list = parse_action_list(text, at, &mut ctx)?;
            let table = spec.table.unwrap_or(0);
            if let Some(Action::GotoTable(t)) = list.last()
                && *t <= table
            {
                let pos = text.rfind("goto_table").map_or(key_at, |i| at + i);
                return Err(ParseError::new(
                    pos,
                    format!(
                        "goto_table:{t} must go to a later table than this flow's table {table}"
                    ),
                ));
            }
            spec.actions = Some(list);
        }
        None if usage != Usage::Select => {
            return Err(ParseError::new(
                s.len(),
                format!(
                    "{} needs actions=...: write actions=drop to drop packets",
                    usage_name(usage)
                ),
            ));
        }
        None => {}
    }
    Ok(spec)
}

/// `1.234s` from milliseconds, as `ofp_print_duration()` writes it.
fn fmt_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// Append a flow as `ovs-ofctl dump-flows` prints it (OVS's `ofputil_flow_stats_format()`),
/// without the leading space of each dumped line.
pub(crate) fn write_flow(
    s: &mut String,
    spec: &FlowSpec,
    ports: &dyn PortNames,
    stats: Option<&FlowStats>,
) {
    if stats.is_some() || spec.cookie != 0 || spec.cookie_mask != 0 {
        let _ = write!(s, "cookie={:#x}", spec.cookie);
        if spec.cookie_mask != 0 {
            let _ = write!(s, "/{:#x}", spec.cookie_mask);
        }
        s.push_str(", ");
    }
    if let Some(st) = stats {
        let _ = write!(s, "duration={}, ", fmt_duration(st.duration_ms));
    }
    if stats.is_some() || spec.table.is_some() {
        let _ = write!(s, "table={}, ", spec.table.unwrap_or(0));
    }
    if let Some(st) = stats {
        let _ = write!(s, "n_packets={}, n_bytes={}, ", st.n_packets, st.n_bytes);
    }
    if spec.idle_timeout != 0 {
        let _ = write!(s, "idle_timeout={}, ", spec.idle_timeout);
    }
    if spec.hard_timeout != 0 {
        let _ = write!(s, "hard_timeout={}, ", spec.hard_timeout);
    }
    let f = &spec.flags;
    for (on, name) in [
        (f.send_flow_rem, "send_flow_rem"),
        (f.check_overlap, "check_overlap"),
        (f.reset_counts, "reset_counts"),
        (f.no_packet_counts, "no_packet_counts"),
        (f.no_byte_counts, "no_byte_counts"),
    ] {
        if on {
            s.push_str(name);
            s.push(' ');
        }
    }
    if spec.importance != 0 {
        let _ = write!(s, "importance={}, ", spec.importance);
    }
    if let Some(p) = spec.out_port {
        let _ = write!(s, "out_port={}, ", fmt_port(p, ports));
    }
    if let Some(g) = spec.out_group {
        let _ = write!(s, "out_group={g}, ");
    }
    if let Some(st) = stats {
        let _ = write!(s, "idle_age={}, ", st.idle_age);
        if let Some(h) = st.hard_age
            && h != st.duration_ms / 1000
        {
            let _ = write!(s, "hard_age={h}, ");
        }
    }
    let before = s.len();
    write_match(s, &spec.matching, Some(spec.priority), ports);
    match &spec.actions {
        Some(actions) => {
            if s.len() != before {
                s.push(' ');
            }
            s.push_str("actions=");
            write_actions(s, actions, ports);
        }
        None => {
            if s.len() == before {
                // Nothing followed the prefix: drop its trailing separator.
                let t = s.trim_end_matches([',', ' ']).len();
                s.truncate(t);
            }
        }
    }
}
