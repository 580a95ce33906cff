//! The actions part of flow text (`ovs-actions(7)` where it overlaps): parsing with Open
//! vSwitch's spellings and aliases, the checks Open vSwitch makes against the match (which we
//! turn into errors that say what the match must add), and printing as Open vSwitch 3.1 does.

use super::ct::{parse_ct, write_ct};
use super::format::{fmt_field_value, fmt_port, fmt_subfield};
use super::learn::{parse_learn, write_learn};
use super::lexer::{Delim, Lexer, Token};
use super::setfield::{parse_load, parse_mod, parse_move, parse_set_field, set_field, vlan_push};
use super::value::{
    field_max, parse_int, parse_port, parse_subfield_at, parse_table, parse_u8, parse_u16,
    parse_u32, parse_u64, suggest,
};
use super::{ParseError, PortNames};
use crate::action::{
    Action, ControllerOpts, ControllerReason, HashFields, MpAlgorithm, Multipath, SubField, port,
};
use crate::field::{FieldId, Prereq, ethertype};
use crate::matching::Match;
use std::fmt::Write;

/// Highest group number (OpenFlow's OFPG_MAX).
pub(crate) const GROUP_MAX: u32 = 0xffff_ff00;

/// Where a list of actions is being parsed.
pub(crate) struct Ctx<'a> {
    pub ports: &'a dyn PortNames,
    /// The match as the actions so far leave it (a `push_vlan` adds a VLAN tag, ...).
    pub state: Match,
    /// Check prerequisites against `state`. Off in group buckets, where the packet is not
    /// known (as in Open vSwitch).
    pub check: bool,
    /// Parsing the `exec(...)` of a `ct`: only writes to ct_mark and ct_label.
    pub in_ct_exec: bool,
    /// In a group bucket: `goto_table` is not allowed.
    pub in_group: bool,
    /// Parsing the actions of `write_actions(...)`: no instructions inside.
    pub in_action_set: bool,
}

impl Ctx<'_> {
    /// Fail with `what requires ...` unless the current match satisfies `p`.
    pub fn require(&self, p: Prereq, at: usize, what: &str) -> Result<(), ParseError> {
        if !self.check || p.satisfied_by(&self.state.flow, &self.state.mask) {
            return Ok(());
        }
        Err(ParseError::new(
            at,
            format!("{what} requires {} in the match", p.describe()),
        ))
    }

    pub fn has_vlan(&self) -> bool {
        Prereq::Vlan.satisfied_by(&self.state.flow, &self.state.mask)
    }

    /// The protocol-specific field for `tp_src`/`tp_dst` when the match says which L4
    /// protocol this is (Open vSwitch prints `mod_tp_dst:80` under `udp` as
    /// `set_field:80->udp_dst`).
    pub fn resolve_l4(&self, field: FieldId) -> FieldId {
        if !matches!(field, FieldId::TpSrc | FieldId::TpDst) {
            return field;
        }
        let src = field == FieldId::TpSrc;
        let is = |p| Prereq::satisfied_by(p, &self.state.flow, &self.state.mask);
        if is(Prereq::Tcp) {
            if src {
                FieldId::TcpSrc
            } else {
                FieldId::TcpDst
            }
        } else if is(Prereq::Udp) {
            if src {
                FieldId::UdpSrc
            } else {
                FieldId::UdpDst
            }
        } else if is(Prereq::Sctp) {
            if src {
                FieldId::SctpSrc
            } else {
                FieldId::SctpDst
            }
        } else {
            field
        }
    }

    /// Check that a field may be read here (its prerequisites hold).
    pub fn check_src(&self, sf: &SubField, at: usize, what: &str) -> Result<(), ParseError> {
        self.require(field_prereq(sf.field), at, what)
    }

    /// Check that a field may be written here: writable, prerequisites, and for VLAN fields a
    /// VLAN tag present.
    pub fn check_dst(&self, field: FieldId, at: usize, what: &str) -> Result<(), ParseError> {
        let info = field.info();
        if !info.writable {
            return Err(ParseError::new(
                at,
                format!("{what}: {} is read-only and cannot be written", info.name),
            ));
        }
        let ct_field = matches!(field, FieldId::CtMark | FieldId::CtLabel);
        if ct_field && !self.in_ct_exec {
            return Err(ParseError::new(
                at,
                format!(
                    "{what}: {} can only be set inside ct(commit,exec(...))",
                    info.name
                ),
            ));
        }
        if self.in_ct_exec && !ct_field {
            return Err(ParseError::new(
                at,
                format!("{what}: ct(exec(...)) can only set ct_mark and ct_label"),
            ));
        }
        if matches!(field, FieldId::VlanVid | FieldId::DlVlan | FieldId::VlanPcp) {
            self.require(Prereq::Vlan, at, what)?;
        }
        self.require(field_prereq(field), at, what)
    }
}

/// A field's prerequisite as the action checks see it (nw_src is also the ARP address).
pub(crate) fn field_prereq(field: FieldId) -> Prereq {
    match field {
        FieldId::IpSrc | FieldId::IpDst => Prereq::Ipv4,
        f => f.info().prereq,
    }
}

/// Parse `s` (at absolute offset `at`) as a comma-separated action list.
pub(crate) fn parse_action_list(
    s: &str,
    at: usize,
    ctx: &mut Ctx,
) -> Result<Vec<Action>, ParseError> {
    let mut lexer = Lexer::new(s, at);
    let mut out: Vec<Action> = Vec::new();
    let mut drop_at = None;
    let mut goto_at: Option<usize> = None;
    let mut first_other: Option<(usize, &'static str)> = None;
    let mut conj_at = None;
    let mut reject_at: Option<usize> = None;
    while let Some(t) = lexer.next_token() {
        let t = t?;
        if let Some(r) = reject_at {
            return Err(ParseError::new(
                t.key_at,
                format!(
                    "reject (column {}) must be the last action: it ends the packet's \
                     processing",
                    r + 1
                ),
            ));
        }
        if let Some(g) = goto_at {
            return Err(ParseError::new(
                t.key_at,
                format!(
                    "goto_table (column {}) must be the last action: OpenFlow runs the other \
                     actions first",
                    g + 1
                ),
            ));
        }
        let key = t.key.to_ascii_lowercase();
        if key == "drop" && !t.has_value() {
            drop_at.get_or_insert(t.key_at);
            continue;
        }
        let new = parse_one(&key, &t, ctx)?;
        if matches!(new.first(), Some(Action::Meter(_))) {
            if ctx.in_group || ctx.in_ct_exec {
                return Err(ParseError::new(
                    t.key_at,
                    "meter is an instruction of a flow: not allowed here",
                ));
            }
            if out.iter().any(|a| matches!(a, Action::Meter(_))) {
                return Err(ParseError::new(
                    t.key_at,
                    "duplicate meter instruction not allowed",
                ));
            }
            if !out.is_empty() {
                return Err(ParseError::new(
                    t.key_at,
                    "invalid instruction ordering: meter must appear before the other actions",
                ));
            }
        }
        for a in &new {
            check_instruction_order(&out, a, t.key_at)?;
            if matches!(a, Action::GotoTable(_)) {
                goto_at = Some(t.key_at);
            }
            if matches!(a, Action::Reject) {
                reject_at = Some(t.key_at);
            }
            if matches!(a, Action::Conjunction { .. }) {
                conj_at.get_or_insert(t.key_at);
            } else if !a.allowed_with_conjunction() && first_other.is_none() {
                first_other = Some((t.key_at, action_name(a)));
            }
        }
        out.extend(new);
    }
    if let Some(d) = drop_at
        && !out.is_empty()
    {
        return Err(ParseError::new(
            d,
            "\"drop\" must not be accompanied by any other action",
        ));
    }
    if conj_at.is_some()
        && let Some((other_at, name)) = first_other
    {
        return Err(ParseError::new(
            other_at,
            format!(
                "\"conjunction\" actions may be used along with \"note\" but not any other kind \
                 of action (such as the \"{name}\" action used here)"
            ),
        ));
    }
    Ok(out)
}

/// Open vSwitch's OpenFlow 1.1+ instruction order: apply-actions, clear_actions,
/// write_actions, write_metadata, goto_table, each at most once.
fn check_instruction_order(before: &[Action], a: &Action, at: usize) -> Result<(), ParseError> {
    let rank = a.instruction_rank();
    let name = |r: u8, a: &Action| {
        if r == 0 {
            "apply_actions"
        } else {
            action_name(a)
        }
    };
    if let Some(later) = before.iter().find(|b| b.instruction_rank() > rank) {
        return Err(ParseError::new(
            at,
            format!(
                "invalid instruction ordering: {} must appear before {}, for OpenFlow 1.1+ \
                 compatibility",
                name(rank, a),
                action_name(later)
            ),
        ));
    }
    if rank != 0 && before.iter().any(|b| b.instruction_rank() == rank) {
        return Err(ParseError::new(
            at,
            format!(
                "duplicate {} instruction not allowed, for OpenFlow 1.1+ compatibility",
                action_name(a)
            ),
        ));
    }
    Ok(())
}

/// Open vSwitch's name for the kind of an action, for error messages.
pub(crate) fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Output { .. } | Action::InPort | Action::Normal | Action::Flood | Action::All => {
            "output"
        }
        Action::OutputReg(_) => "output_reg",
        Action::Controller { .. } => "controller",
        Action::GotoTable(_) => "goto_table",
        Action::Resubmit { .. } => "resubmit",
        Action::SetField { .. } => "set_field",
        Action::Move { .. } => "move",
        Action::DecTtl => "dec_ttl",
        Action::PushVlan(_) => "push_vlan",
        Action::PopVlan => "pop_vlan",
        Action::Group(_) => "group",
        Action::Conjunction { .. } => "conjunction",
        Action::Learn(_) => "learn",
        Action::Note(_) => "note",
        Action::Ct(_) => "ct",
        Action::CtClear => "ct_clear",
        Action::WriteActions(_) => "write_actions",
        Action::ClearActions => "clear_actions",
        Action::WriteMetadata { .. } => "write_metadata",
        Action::Exit => "exit",
        Action::ControllerEx(_) => "controller",
        Action::DecTtlIds(_) => "dec_ttl",
        Action::Enqueue { .. } => "enqueue",
        Action::Multipath(_) => "multipath",
        Action::FinTimeout { .. } => "fin_timeout",
        Action::Meter(_) => "meter",
        Action::Reject => "reject",
    }
}

/// Actions Open vSwitch has that this switch does not.
const UNSUPPORTED: &[&str] = &[
    "set_queue",
    "pop_queue",
    "bundle",
    "bundle_load",
    "autopath",
    "sample",
    "clone",
    "apply_actions",
    "push_mpls",
    "pop_mpls",
    "set_mpls_label",
    "set_mpls_tc",
    "set_mpls_ttl",
    "dec_mpls_ttl",
    "check_pkt_larger",
    "encap",
    "decap",
    "dec_nsh_ttl",
    "delete_field",
    "set_queue",
    "stack_push",
    "stack_pop",
    "debug_recirc",
    "debug_slow",
    "unroll_xlate",
    "mod_dl_vlan",
    "set_mpls_ttl",
];

/// Every action keyword, for "did you mean" hints.
const KEYWORDS: &[&str] = &[
    "output",
    "controller",
    "in_port",
    "normal",
    "flood",
    "all",
    "local",
    "drop",
    "goto_table",
    "resubmit",
    "set_field",
    "load",
    "move",
    "mod_dl_src",
    "mod_dl_dst",
    "mod_nw_src",
    "mod_nw_dst",
    "mod_nw_tos",
    "mod_nw_ecn",
    "mod_nw_ttl",
    "mod_tp_src",
    "mod_tp_dst",
    "mod_vlan_vid",
    "mod_vlan_pcp",
    "strip_vlan",
    "pop_vlan",
    "push_vlan",
    "dec_ttl",
    "set_tunnel",
    "set_tunnel64",
    "group",
    "conjunction",
    "learn",
    "note",
    "ct",
    "ct_clear",
    "write_actions",
    "clear_actions",
    "write_metadata",
    "exit",
    "enqueue",
    "multipath",
    "fin_timeout",
    "meter",
    "reject",
];

fn no_value(t: &Token, key: &str) -> Result<(), ParseError> {
    if t.has_value() {
        return Err(ParseError::new(
            t.key_at,
            format!("{key} takes no argument"),
        ));
    }
    Ok(())
}

pub(crate) fn need_value<'a>(t: &Token<'a>, key: &str, form: &str) -> Result<&'a str, ParseError> {
    if t.delim != Delim::Colon || t.value.is_empty() {
        return Err(ParseError::new(
            t.key_at,
            format!("{key} needs an argument: {form}"),
        ));
    }
    Ok(t.value)
}

/// The action for "output to port `p`".
fn output_to(p: u32, at: usize) -> Result<Action, ParseError> {
    Ok(match p {
        port::IN_PORT => Action::InPort,
        port::NORMAL => Action::Normal,
        port::FLOOD => Action::Flood,
        port::ALL => Action::All,
        port::CONTROLLER => Action::Controller { max_len: u16::MAX },
        port::NONE => {
            return Err(ParseError::new(at, "cannot output to port ANY (NONE)"));
        }
        p => Action::Output {
            port: p,
            max_len: None,
        },
    })
}

/// `write_actions(...)`: checked against the match like other actions, but what they do
/// to the packet is not seen by the actions after them (they run at the end).
fn parse_write_actions(t: &Token, ctx: &mut Ctx) -> Result<Vec<Action>, ParseError> {
    if t.delim != Delim::Paren {
        return Err(ParseError::new(
            t.key_at,
            "write_actions needs its actions in parentheses: write_actions(...)",
        ));
    }
    if ctx.in_group || ctx.in_ct_exec || ctx.in_action_set {
        return Err(ParseError::new(
            t.key_at,
            "write_actions instruction not allowed here",
        ));
    }
    let saved = ctx.state;
    ctx.in_action_set = true;
    let list = parse_action_list(t.value, t.value_at, ctx);
    ctx.in_action_set = false;
    ctx.state = saved;
    let list = list?;
    if let Some(bad) = list.iter().find(|a| !a.allowed_in_action_set()) {
        return Err(ParseError::new(
            t.value_at,
            format!(
                "the {} action is not allowed in an action set",
                action_name(bad)
            ),
        ));
    }
    if list.is_empty() {
        // Open vSwitch drops an empty write_actions instruction.
        return Ok(Vec::new());
    }
    Ok(vec![Action::WriteActions(list)])
}

/// Whether `s` names a field (`output:reg1` outputs to the port held in reg1).
fn is_field_ref(s: &str) -> bool {
    !s.starts_with('"') && FieldId::from_name(s.split('[').next().unwrap_or(s)).is_some()
}

fn parse_one(key: &str, t: &Token, ctx: &mut Ctx) -> Result<Vec<Action>, ParseError> {
    let one = |a: Action| Ok(vec![a]);
    match key {
        "output" => match t.delim {
            Delim::Paren => parse_output_trunc(t, ctx.ports),
            _ => {
                let v = need_value(t, "output", "output:PORT or output:FIELD[]")?;
                // As Open vSwitch: a port if it is one, else a field holding the port.
                match parse_port(v, t.value_at, "output", ctx.ports) {
                    Ok(p) => one(output_to(p, t.value_at)?),
                    Err(_) if is_field_ref(v) => {
                        let sf = parse_subfield_at(v, t.value_at)?;
                        ctx.check_src(&sf, t.value_at, &format!("output:{v}"))?;
                        one(Action::OutputReg(sf))
                    }
                    Err(e) => Err(e),
                }
            }
        },
        "controller" => match t.delim {
            Delim::None => one(Action::Controller { max_len: u16::MAX }),
            Delim::Colon => one(Action::Controller {
                max_len: parse_u16(t.value, t.value_at, "controller")?,
            }),
            Delim::Paren | Delim::Eq => one(parse_controller(t)?),
        },
        "goto_table" => {
            if ctx.in_action_set {
                return Err(ParseError::new(
                    t.key_at,
                    "goto_table instruction not allowed here",
                ));
            }
            if ctx.in_group {
                return Err(ParseError::new(
                    t.key_at,
                    "goto_table is not allowed in a group bucket",
                ));
            }
            let v = need_value(t, "goto_table", "goto_table:TABLE")?;
            one(Action::GotoTable(parse_table(v, t.value_at, "goto_table")?))
        }
        "resubmit" => parse_resubmit(t, ctx.ports),
        "mod_dl_src" | "mod_dl_dst" | "mod_nw_src" | "mod_nw_dst" | "mod_nw_ttl" | "mod_tp_src"
        | "mod_tp_dst" | "mod_nw_tos" | "mod_nw_ecn" | "mod_vlan_vid" | "mod_vlan_pcp" => {
            parse_mod(key, t, ctx)
        }
        "set_field" => parse_set_field(t, ctx),
        "load" => parse_load(t, ctx),
        "move" => parse_move(t, ctx),
        "strip_vlan" | "pop_vlan" => {
            no_value(t, key)?;
            ctx.require(Prereq::Vlan, t.key_at, key)?;
            ctx.state
                .flow
                .set_masked(crate::flow::slot::VLAN_TCI, 0, 0xffff);
            ctx.state
                .mask
                .set_masked(crate::flow::slot::VLAN_TCI, 0, 0xffff);
            one(Action::PopVlan)
        }
        "push_vlan" => {
            let v = need_value(t, key, "push_vlan:0x8100")?;
            let tpid = parse_u16(v, t.value_at, key)?;
            if tpid != ethertype::VLAN && tpid != ethertype::QINQ {
                return Err(ParseError::new(
                    t.value_at,
                    format!("push_vlan: {v} is not a VLAN ethertype (0x8100 or 0x88a8)"),
                ));
            }
            Ok(vlan_push(ctx, tpid))
        }
        "dec_ttl" => {
            ctx.require(Prereq::Ip, t.key_at, "dec_ttl")?;
            match t.delim {
                Delim::None => one(Action::DecTtl),
                Delim::Paren | Delim::Colon => one(parse_dec_ttl_ids(t)?),
                _ => Err(ParseError::new(
                    t.key_at,
                    "dec_ttl takes controller ids in parentheses: dec_ttl(ID,...)",
                )),
            }
        }
        "enqueue" => one(parse_enqueue(t, ctx.ports)?),
        "multipath" => one(parse_multipath(t, ctx)?),
        "fin_timeout" => one(parse_fin_timeout(t)?),
        "meter" => {
            let v = need_value(t, key, "meter:METER")?;
            let id = super::meter::parse_meter_id(v, t.value_at, false)?.unwrap_or(0);
            one(Action::Meter(id))
        }
        "set_tunnel" | "set_tunnel64" => {
            let v = need_value(t, key, &format!("{key}:ID"))?;
            let id = parse_u64(v, t.value_at, key)?;
            set_field(
                ctx,
                FieldId::TunId,
                id as u128,
                u64::MAX as u128,
                t.key_at,
                key,
            )
        }
        "group" => {
            let v = need_value(t, key, "group:GROUP")?;
            let g = parse_u32(v, t.value_at, key)?;
            if g > GROUP_MAX {
                return Err(ParseError::new(
                    t.value_at,
                    format!("group: {v} is out of range (0 to {GROUP_MAX})"),
                ));
            }
            one(Action::Group(g))
        }
        "conjunction" => parse_conjunction(t),
        "learn" => {
            if t.delim != Delim::Paren {
                return Err(ParseError::new(
                    t.key_at,
                    "learn needs arguments: learn(...)",
                ));
            }
            one(Action::Learn(Box::new(parse_learn(
                t.value, t.value_at, ctx,
            )?)))
        }
        "note" => {
            if t.delim != Delim::Colon {
                return Err(ParseError::new(
                    t.key_at,
                    "note needs an argument: note:HEX.HEX...",
                ));
            }
            one(Action::Note(parse_note(t.value, t.value_at)?))
        }
        "ct" => {
            let args = match t.delim {
                Delim::None => "",
                Delim::Paren => t.value,
                _ => {
                    return Err(ParseError::new(
                        t.key_at,
                        "ct takes its arguments in parentheses: ct(...)",
                    ));
                }
            };
            one(Action::Ct(Box::new(parse_ct(
                args, t.value_at, t.key_at, ctx,
            )?)))
        }
        "ct_clear" => {
            no_value(t, key)?;
            one(Action::CtClear)
        }
        "exit" => {
            no_value(t, key)?;
            one(Action::Exit)
        }
        "reject" => {
            if t.has_value() {
                return Err(ParseError::new(
                    t.key_at,
                    "reject takes no argument: it answers TCP with a RST and anything else \
                     with ICMP port unreachable",
                ));
            }
            if ctx.in_group || ctx.in_ct_exec || ctx.in_action_set {
                return Err(ParseError::new(
                    t.key_at,
                    "reject is not allowed here (only in a flow's own actions, not in a \
                     group bucket, ct(exec(...)) or write_actions(...))",
                ));
            }
            one(Action::Reject)
        }
        "clear_actions" | "write_metadata" if ctx.in_group || ctx.in_ct_exec => Err(
            ParseError::new(t.key_at, format!("{key} instruction not allowed here")),
        ),
        "clear_actions" => {
            no_value(t, key)?;
            one(Action::ClearActions)
        }
        "write_metadata" => {
            let v = need_value(t, key, "write_metadata:VALUE[/MASK]")?;
            let (value, mask) = match v.split_once('/') {
                Some((v, m)) => (
                    parse_u64(v, t.value_at, key)?,
                    parse_u64(m, t.value_at + v.len() + 1, key)?,
                ),
                None => (parse_u64(v, t.value_at, key)?, u64::MAX),
            };
            one(Action::WriteMetadata { value, mask })
        }
        "write_actions" => parse_write_actions(t, ctx),
        "weight" | "watch_port" | "watch_group" | "bucket_id" if ctx.in_group => {
            Err(ParseError::new(
                t.key_at,
                format!("{key} must come before the bucket's actions"),
            ))
        }
        _ if UNSUPPORTED.contains(&key) => Err(ParseError::new(
            t.key_at,
            format!("the {key} action is not supported by this switch"),
        )),
        _ => {
            // A bare port number or name means output to it.
            if !t.has_value()
                && (t.key.starts_with('"')
                    || t.key.as_bytes()[0].is_ascii_digit()
                    || port::from_reserved_name(t.key).is_some()
                    || ctx.ports.port_no(t.key).is_some())
            {
                let p = parse_port(t.key, t.key_at, "output", ctx.ports)?;
                return one(output_to(p, t.key_at)?);
            }
            Err(ParseError::new(
                t.key_at,
                format!(
                    "unknown action \"{}\"{}",
                    t.key,
                    suggest(key, KEYWORDS.iter().copied())
                ),
            ))
        }
    }
}

/// `controller(key=value,...)`: every option Open vSwitch accepts. Only `max_len` given:
/// the plain `controller` action, as Open vSwitch keeps it.
fn parse_controller(t: &Token) -> Result<Action, ParseError> {
    let mut o = ControllerOpts::default();
    let mut l = Lexer::new(t.value, t.value_at);
    while let Some(kv) = l.next_token() {
        let kv = kv?;
        let eq = kv.delim == Delim::Eq;
        match kv.key {
            "max_len" if eq => o.max_len = parse_u16(kv.value, kv.value_at, "controller max_len")?,
            "reason" if eq => {
                o.reason = ControllerReason::from_name(kv.value).ok_or_else(|| {
                    ParseError::new(
                        kv.value_at,
                        format!(
                            "unknown reason \"{}\"{}",
                            kv.value,
                            suggest(kv.value, ControllerReason::NAMES.iter().map(|(_, n)| *n))
                        ),
                    )
                })?
            }
            "id" if eq => o.id = parse_u16(kv.value, kv.value_at, "controller id")?,
            "userdata" if eq => {
                o.userdata = Some(parse_hex_bytes(
                    kv.value,
                    kv.value_at,
                    "controller userdata",
                )?)
            }
            "pause" if !kv.has_value() => o.pause = true,
            "meter_id" if eq => {
                o.meter_id = Some(parse_u32(kv.value, kv.value_at, "controller meter_id")?)
            }
            _ => {
                return Err(ParseError::new(
                    kv.key_at,
                    format!(
                        "unknown key \"{}\" parsing controller action (expected max_len=, \
                         reason=, id=, userdata=, pause, meter_id=)",
                        kv.key
                    ),
                ));
            }
        }
    }
    let plain = ControllerOpts {
        max_len: o.max_len,
        ..ControllerOpts::default()
    };
    Ok(if o == plain {
        Action::Controller { max_len: o.max_len }
    } else {
        Action::ControllerEx(Box::new(o))
    })
}

/// Hex byte pairs, optionally separated by dots (`01.02.ff`), without padding.
fn parse_hex_bytes(s: &str, at: usize, what: &str) -> Result<Vec<u8>, ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
            continue;
        }
        let pair = s
            .get(i..i + 2)
            .filter(|p| p.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(pair) = pair else {
            return Err(ParseError::new(
                at + i,
                format!("{what}: expected pairs of hex digits, like 01.ab"),
            ));
        };
        out.push(u8::from_str_radix(pair, 16).unwrap_or(0));
        i += 2;
    }
    Ok(out)
}

/// `dec_ttl(ID,...)`. Ids are 16 bits; Open vSwitch truncates larger ones, we refuse them.
fn parse_dec_ttl_ids(t: &Token) -> Result<Action, ParseError> {
    let mut ids = Vec::new();
    let mut at = t.value_at;
    for part in t.value.split(',') {
        let v = part.trim();
        if !v.is_empty() {
            let lead = part.len() - part.trim_start().len();
            ids.push(parse_u16(v, at + lead, "dec_ttl controller id")?);
        }
        at += part.len() + 1;
    }
    // `dec_ttl()` is plain dec_ttl in Open vSwitch.
    Ok(if ids.is_empty() {
        Action::DecTtl
    } else {
        Action::DecTtlIds(ids)
    })
}

/// `enqueue:PORT:QUEUE` or `enqueue(PORT,QUEUE)`.
fn parse_enqueue(t: &Token, ports: &dyn PortNames) -> Result<Action, ParseError> {
    let sep = match t.delim {
        Delim::Colon => ':',
        Delim::Paren => ',',
        _ => '\0',
    };
    let syntax = || {
        ParseError::new(
            t.key_at,
            "\"enqueue\" syntax is \"enqueue:PORT:QUEUE\" or \"enqueue(PORT,QUEUE)\"",
        )
    };
    let (p, q) = t.value.rsplit_once(sep).ok_or_else(syntax)?;
    let (p, q) = (p.trim(), q.trim());
    if p.is_empty() || q.is_empty() {
        return Err(syntax());
    }
    let q_at = t.value_at + t.value.len() - q.len();
    let port_no = parse_port(p, t.value_at, "enqueue", ports)?;
    if port_no > port::MAX && port_no != port::IN_PORT && port_no != port::LOCAL {
        return Err(ParseError::new(
            t.value_at,
            format!("enqueue: cannot enqueue to {p} (a port number, IN_PORT or LOCAL)"),
        ));
    }
    let queue = parse_u32(q, q_at, "enqueue queue")?;
    Ok(Action::Enqueue {
        port: port_no,
        queue,
    })
}

/// `multipath(fields, basis, algorithm, n_links, arg, dst)` (Open vSwitch's multipath.c).
fn parse_multipath(t: &Token, ctx: &Ctx) -> Result<Action, ParseError> {
    if t.delim != Delim::Paren {
        return Err(ParseError::new(
            t.key_at,
            "multipath needs arguments: multipath(fields,basis,algorithm,n_links,arg,dst)",
        ));
    }
    let mut parts = Vec::new();
    let mut at = t.value_at;
    for part in t.value.splitn(6, ',') {
        let lead = part.len() - part.trim_start().len();
        parts.push((part.trim(), at + lead));
        at += part.len() + 1;
    }
    if parts.len() < 6 {
        return Err(ParseError::new(
            t.key_at,
            "not enough arguments to multipath action \
             (multipath(fields,basis,algorithm,n_links,arg,dst))",
        ));
    }
    let (f, f_at) = parts[0];
    let fields = HashFields::from_name(f).ok_or_else(|| {
        ParseError::new(
            f_at,
            format!(
                "multipath: unknown fields `{f}'{}",
                suggest(f, HashFields::NAMES.iter().map(|(_, n)| *n))
            ),
        )
    })?;
    let basis = parse_u16(parts[1].0, parts[1].1, "multipath basis")?;
    let (a, a_at) = parts[2];
    let algorithm = MpAlgorithm::from_name(a).ok_or_else(|| {
        ParseError::new(
            a_at,
            format!(
                "multipath: unknown algorithm `{a}'{}",
                suggest(a, MpAlgorithm::NAMES.iter().map(|(_, n)| *n))
            ),
        )
    })?;
    let n_links = parse_int(parts[3].0, parts[3].1, "multipath n_links")?;
    if !(1..=65536).contains(&n_links) {
        return Err(ParseError::new(
            parts[3].1,
            format!("multipath: n_links {n_links} is not in valid range 1 to 65536"),
        ));
    }
    let n_links = n_links as u32;
    let arg = parse_u32(parts[4].0, parts[4].1, "multipath arg")?;
    let (d, d_at) = parts[5];
    let dst = parse_subfield_at(d, d_at)?;
    ctx.check_dst(dst.field, d_at, "multipath")?;
    if dst.n_bits < 32 && (1u64 << dst.n_bits) < n_links as u64 {
        return Err(ParseError::new(
            d_at,
            format!(
                "multipath: {}-bit destination field has {} possible values, less than \
                 specified n_links {n_links}",
                dst.n_bits,
                1u64 << dst.n_bits
            ),
        ));
    }
    Ok(Action::Multipath(Box::new(Multipath {
        fields,
        basis,
        algorithm,
        n_links,
        arg,
        dst,
    })))
}

/// `fin_timeout(idle_timeout=N,hard_timeout=M)`.
fn parse_fin_timeout(t: &Token) -> Result<Action, ParseError> {
    if t.delim != Delim::Paren {
        return Err(ParseError::new(
            t.key_at,
            "fin_timeout needs arguments: fin_timeout(idle_timeout=N,hard_timeout=M)",
        ));
    }
    let (mut idle_timeout, mut hard_timeout) = (0, 0);
    let mut l = Lexer::new(t.value, t.value_at);
    while let Some(kv) = l.next_token() {
        let kv = kv?;
        match (kv.key, kv.delim) {
            ("idle_timeout", Delim::Eq) => {
                idle_timeout = parse_u16(kv.value, kv.value_at, "fin_timeout idle_timeout")?
            }
            ("hard_timeout", Delim::Eq) => {
                hard_timeout = parse_u16(kv.value, kv.value_at, "fin_timeout hard_timeout")?
            }
            _ => {
                return Err(ParseError::new(
                    kv.key_at,
                    format!(
                        "invalid key '{}' in 'fin_timeout' argument (expected idle_timeout= \
                         and hard_timeout=)",
                        kv.key
                    ),
                ));
            }
        }
    }
    Ok(Action::FinTimeout {
        idle_timeout,
        hard_timeout,
    })
}

fn parse_output_trunc(t: &Token, ports: &dyn PortNames) -> Result<Vec<Action>, ParseError> {
    let (mut p, mut max_len) = (None, None);
    let mut l = Lexer::new(t.value, t.value_at);
    while let Some(kv) = l.next_token() {
        let kv = kv?;
        match (kv.key, kv.delim) {
            ("port", Delim::Eq) => p = Some(parse_port(kv.value, kv.value_at, "output", ports)?),
            ("max_len", Delim::Eq) => {
                max_len = Some(parse_u16(kv.value, kv.value_at, "output max_len")?)
            }
            _ => {
                return Err(ParseError::new(
                    kv.key_at,
                    format!(
                        "output(...): unknown argument \"{}\" (expected port= and max_len=)",
                        kv.key
                    ),
                ));
            }
        }
    }
    let (Some(p), Some(max_len)) = (p, max_len) else {
        return Err(ParseError::new(
            t.key_at,
            "output(...) needs both port=P and max_len=N",
        ));
    };
    Ok(vec![match p {
        port::CONTROLLER => Action::Controller { max_len },
        port::NONE => {
            return Err(ParseError::new(
                t.value_at,
                "cannot output to port ANY (NONE)",
            ));
        }
        p => Action::Output {
            port: p,
            max_len: Some(max_len),
        },
    }])
}

fn parse_resubmit(t: &Token, ports: &dyn PortNames) -> Result<Vec<Action>, ParseError> {
    let port_of = |s: &str, at: usize| -> Result<Option<u32>, ParseError> {
        if s.is_empty() {
            return Ok(None);
        }
        let p = parse_port(s, at, "resubmit", ports)?;
        Ok((p != port::IN_PORT).then_some(p))
    };
    let (in_port, table) = match t.delim {
        Delim::Colon => (port_of(t.value, t.value_at)?, None),
        Delim::Paren => {
            let parts: Vec<&str> = t.value.split(',').collect();
            if parts.len() > 2 {
                let ofs = parts[0].len() + parts[1].len() + 2;
                return Err(ParseError::new(
                    t.value_at + ofs,
                    "resubmit: only resubmit(PORT,TABLE) is supported",
                ));
            }
            let p = port_of(parts[0].trim(), t.value_at)?;
            let table = match parts.get(1).map(|s| s.trim()) {
                None | Some("") => None,
                Some(s) => {
                    let at = t.value_at + parts[0].len() + 1;
                    let v = parse_int(s, at, "resubmit table")?;
                    if v > 255 {
                        return Err(ParseError::new(
                            at,
                            "resubmit: table is out of range (0 to 254)",
                        ));
                    }
                    (v != 255).then_some(v as u8)
                }
            };
            (p, table)
        }
        _ => {
            return Err(ParseError::new(
                t.key_at,
                "resubmit needs an argument: resubmit:PORT or resubmit(PORT,TABLE)",
            ));
        }
    };
    if in_port.is_none() && table.is_none() {
        return Err(ParseError::new(
            t.key_at,
            "at least one \"in_port\" or \"table\" must be specified on resubmit",
        ));
    }
    Ok(vec![Action::Resubmit { in_port, table }])
}

fn parse_conjunction(t: &Token) -> Result<Vec<Action>, ParseError> {
    let syntax = || {
        ParseError::new(
            t.key_at,
            "\"conjunction\" syntax is \"conjunction(id,k/n)\"",
        )
    };
    if t.delim != Delim::Paren {
        return Err(syntax());
    }
    let (id_s, rest) = t.value.split_once(',').ok_or_else(syntax)?;
    let (k_s, n_s) = rest.split_once('/').ok_or_else(syntax)?;
    let k_at = t.value_at + id_s.len() + 1;
    let id = parse_u32(id_s.trim(), t.value_at, "conjunction id")?;
    let k = parse_u8(k_s.trim(), k_at, "conjunction clause")?;
    let n = parse_u8(n_s.trim(), k_at + k_s.len() + 1, "conjunction clauses")?;
    if n < 2 {
        return Err(ParseError::new(
            t.value_at,
            "conjunction must have at least 2 clauses",
        ));
    }
    if n > 64 {
        return Err(ParseError::new(
            t.value_at,
            "conjunction must have at most 64 clauses",
        ));
    }
    if k == 0 {
        return Err(ParseError::new(k_at, "clause index must be positive"));
    }
    if k > n {
        return Err(ParseError::new(
            k_at,
            "clause index must be less than or equal to number of clauses",
        ));
    }
    Ok(vec![Action::Conjunction {
        id,
        clause: k - 1,
        n_clauses: n,
    }])
}

/// Bytes written as hex pairs, optionally separated by dots. Padded with zeros as Open
/// vSwitch pads them (to keep its action 8-byte aligned), so the text reads back the same.
pub(crate) fn parse_note(s: &str, at: usize) -> Result<Vec<u8>, ParseError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
            continue;
        }
        let pair = s
            .get(i..i + 2)
            .filter(|p| p.chars().all(|c| c.is_ascii_hexdigit()));
        let Some(pair) = pair else {
            return Err(ParseError::new(
                at + i,
                "note: expected pairs of hex digits, like note:01.ab",
            ));
        };
        out.push(u8::from_str_radix(pair, 16).unwrap_or(0));
        i += 2;
    }
    let padded = (10 + out.len()).div_ceil(8) * 8 - 10;
    out.resize(padded, 0);
    Ok(out)
}

/// Append one action as Open vSwitch 3.1 prints it.
pub(crate) fn write_action(s: &mut String, a: &Action, ports: &dyn PortNames) {
    match a {
        Action::Output { port: p, max_len } => match (*p, max_len) {
            (port::CONTROLLER, m) => {
                let _ = write!(s, "CONTROLLER:{}", m.unwrap_or(u16::MAX));
            }
            (p, Some(m)) => {
                let _ = write!(s, "output(port={},max_len={m})", fmt_port(p, ports));
            }
            (p, None) if p <= port::MAX => {
                let _ = write!(s, "output:{}", fmt_port(p, ports));
            }
            (p, None) => s.push_str(&fmt_port(p, ports)),
        },
        Action::OutputReg(sf) => {
            let _ = write!(s, "output:{}", fmt_subfield(sf));
        }
        Action::InPort => s.push_str("IN_PORT"),
        Action::Normal => s.push_str("NORMAL"),
        Action::Flood => s.push_str("FLOOD"),
        Action::All => s.push_str("ALL"),
        Action::Controller { max_len } => {
            let _ = write!(s, "CONTROLLER:{max_len}");
        }
        Action::GotoTable(t) => {
            let _ = write!(s, "goto_table:{t}");
        }
        Action::WriteActions(list) => {
            s.push_str("write_actions(");
            write_actions(s, list, ports);
            s.push(')');
        }
        Action::ClearActions => s.push_str("clear_actions"),
        Action::WriteMetadata { value, mask } => {
            let _ = write!(s, "write_metadata:{}", super::format::hex0(*value as u128));
            if *mask != u64::MAX {
                let _ = write!(s, "/{}", super::format::hex0(*mask as u128));
            }
        }
        Action::Exit => s.push_str("exit"),
        Action::Resubmit { in_port, table } => match (in_port, table) {
            (Some(p), None) => {
                let _ = write!(s, "resubmit:{}", fmt_port(*p, ports));
            }
            (p, t) => {
                s.push_str("resubmit(");
                if let Some(p) = p {
                    s.push_str(&fmt_port(*p, ports));
                }
                s.push(',');
                if let Some(t) = t {
                    let _ = write!(s, "{t}");
                }
                s.push(')');
            }
        },
        Action::SetField { field, value, mask } => {
            let full = *mask == field_max(*field);
            match field {
                FieldId::NwTtl if full => {
                    let _ = write!(s, "mod_nw_ttl:{value}");
                }
                FieldId::TpSrc | FieldId::TpDst if full => {
                    let n = if *field == FieldId::TpSrc {
                        "mod_tp_src"
                    } else {
                        "mod_tp_dst"
                    };
                    let _ = write!(s, "{n}:{value}");
                }
                _ => {
                    let _ = write!(
                        s,
                        "set_field:{}->{}",
                        fmt_field_value(*field, *value, *mask, ports),
                        field.info().name
                    );
                }
            }
        }
        Action::Move { src, dst } => {
            let _ = write!(s, "move:{}->{}", fmt_subfield(src), fmt_subfield(dst));
        }
        Action::DecTtl => s.push_str("dec_ttl"),
        Action::PushVlan(tpid) => {
            let _ = write!(s, "push_vlan:{tpid:#x}");
        }
        Action::PopVlan => s.push_str("pop_vlan"),
        Action::Group(g) => {
            let _ = write!(s, "group:{g}");
        }
        Action::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            let _ = write!(s, "conjunction({id},{}/{n_clauses})", *clause as u32 + 1);
        }
        Action::Learn(l) => write_learn(s, l, ports),
        Action::Note(bytes) => {
            s.push_str("note:");
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                let _ = write!(s, "{b:02x}");
            }
        }
        Action::Ct(ct) => write_ct(s, ct, ports),
        Action::CtClear => s.push_str("ct_clear"),
        Action::ControllerEx(o) => write_controller(s, o),
        Action::DecTtlIds(ids) => {
            s.push_str("dec_ttl(");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{id}");
            }
            s.push(')');
        }
        Action::Enqueue { port: p, queue } => {
            let _ = write!(s, "enqueue:{}:{queue}", fmt_port(*p, ports));
        }
        Action::Multipath(m) => {
            let _ = write!(
                s,
                "multipath({},{},{},{},{},{})",
                m.fields.name(),
                m.basis,
                m.algorithm.name(),
                m.n_links,
                m.arg,
                fmt_subfield(&m.dst)
            );
        }
        Action::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            s.push_str("fin_timeout(");
            if *idle_timeout != 0 {
                let _ = write!(s, "idle_timeout={idle_timeout},");
            }
            if *hard_timeout != 0 {
                let _ = write!(s, "hard_timeout={hard_timeout},");
            }
            if s.ends_with(',') {
                s.pop();
            }
            s.push(')');
        }
        Action::Meter(id) => {
            let _ = write!(s, "meter:{id}");
        }
        Action::Reject => s.push_str("reject"),
    }
}

/// `controller(...)` as Open vSwitch's `format_CONTROLLER` prints it.
fn write_controller(s: &mut String, o: &ControllerOpts) {
    s.push_str("controller(");
    if o.reason != ControllerReason::Action {
        let _ = write!(s, "reason={},", o.reason.name());
    }
    if o.max_len != u16::MAX {
        let _ = write!(s, "max_len={},", o.max_len);
    }
    if o.id != 0 {
        let _ = write!(s, "id={},", o.id);
    }
    if let Some(u) = &o.userdata {
        s.push_str("userdata=");
        for (i, b) in u.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            let _ = write!(s, "{b:02x}");
        }
        s.push(',');
    }
    if o.pause {
        s.push_str("pause,");
    }
    if let Some(m) = o.meter_id {
        let _ = write!(s, "meter_id={m},");
    }
    if s.ends_with(',') {
        s.pop();
    }
    s.push(')');
}

/// Append an action list; an empty one is `drop`.
pub(crate) fn write_actions(s: &mut String, actions: &[Action], ports: &dyn PortNames) {
    if actions.is_empty() {
        s.push_str("drop");
    }
    for (i, a) in actions.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_action(s, a, ports);
    }
}
