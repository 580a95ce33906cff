//! `ct(...)` and its `nat(...)`: connection tracking, parsed and printed as Open vSwitch
//! does (`parse_CT`, `parse_NAT`, `format_CT`, `format_NAT`).

use super::actions::{Ctx, action_name, parse_action_list};
use super::format::{fmt_ipv4, fmt_ipv6, fmt_subfield};
use super::lexer::{Delim, Lexer};
use super::value::{parse_ipv4, parse_ipv6, parse_subfield_at, parse_table, parse_u16};
use super::{ParseError, PortNames};
use crate::action::{Action, Ct, CtZone, Nat, NatKind};
use crate::field::Prereq;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const FTP: u16 = 21;
const TFTP: u16 = 69;

/// Parse the inside of `ct(...)` (`args` at absolute offset `at`; `key_at` is where `ct`
/// starts).
pub(crate) fn parse_ct(
    args: &str,
    at: usize,
    key_at: usize,
    ctx: &mut Ctx,
) -> Result<Ct, ParseError> {
    if ctx.in_ct_exec {
        return Err(ParseError::new(
            key_at,
            "ct cannot be nested inside ct(exec(...))",
        ));
    }
    ctx.require(Prereq::Ip, key_at, "ct")?;
    let mut ct = Ct::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut nat_at = None;
    let mut exec_at = None;
    let mut alg_at = 0;
    let mut l = Lexer::new(args, at);
    while let Some(t) = l.next_token() {
        let t = t?;
        if seen.contains(&t.key) {
            return Err(ParseError::new(
                t.key_at,
                format!("ct: {} is given twice", t.key),
            ));
        }
        seen.push(t.key);
        match (t.key, t.delim) {
            ("commit", Delim::None) => ct.commit = true,
            ("force", Delim::None) => ct.force = true,
            ("table", Delim::Eq) => ct.table = Some(parse_table(t.value, t.value_at, "ct table")?),
            ("zone", Delim::Eq) => {
                ct.zone = if t.value.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                    CtZone::Imm(parse_u16(t.value, t.value_at, "ct zone")?)
                } else {
                    let sf = parse_subfield_at(t.value, t.value_at)?;
                    if sf.n_bits != 16 {
                        return Err(ParseError::new(
                            t.value_at,
                            format!(
                                "ct: a zone taken from a field must be 16 bits wide, and {} is {}",
                                t.value, sf.n_bits
                            ),
                        ));
                    }
                    ctx.check_src(&sf, t.value_at, &format!("ct zone={}", t.value))?;
                    CtZone::Field(sf)
                }
            }
            ("alg", Delim::Eq) => {
                alg_at = t.value_at;
                ct.alg = Some(match t.value {
                    "ftp" => FTP,
                    "tftp" => TFTP,
                    _ => {
                        return Err(ParseError::new(
                            t.value_at,
                            format!("ct: unknown alg \"{}\" (expected ftp or tftp)", t.value),
                        ));
                    }
                });
            }
            ("nat", Delim::None | Delim::Paren) => {
                nat_at = Some(t.key_at);
                ct.nat = Some(parse_nat(t.value, t.value_at, t.key_at, ctx)?);
            }
            ("exec", Delim::Paren) => {
                exec_at = Some(t.key_at);
                let mut inner = Ctx {
                    ports: ctx.ports,
                    state: ctx.state,
                    check: ctx.check,
                    in_ct_exec: true,
                    in_group: ctx.in_group,
                    in_action_set: false,
                };
                ct.exec = parse_action_list(t.value, t.value_at, &mut inner)?;
                if let Some(a) = ct
                    .exec
                    .iter()
                    .find(|a| !matches!(a, Action::SetField { .. } | Action::Move { .. }))
                {
                    return Err(ParseError::new(
                        t.value_at,
                        format!(
                            "ct: exec(...) may only set ct_mark and ct_label, not use {}",
                            action_name(a)
                        ),
                    ));
                }
            }
            _ => {
                return Err(ParseError::new(
                    t.key_at,
                    format!(
                        "ct: unknown argument \"{}\" (expected commit, force, table=, zone=, \
                         alg=, nat or exec(...))",
                        t.key
                    ),
                ));
            }
        }
    }
    if ct.force && !ct.commit {
        return Err(ParseError::new(
            key_at,
            "\"force\" flag requires \"commit\" flag.",
        ));
    }
    let nat_args = ct.nat.as_ref().is_some_and(|n| n.kind.is_some());
    if !ct.commit && (exec_at.is_some() || nat_args || ct.alg.is_some()) {
        let at = exec_at.or(nat_at).unwrap_or(alg_at);
        return Err(ParseError::new(
            at,
            "ct: exec(...), alg= and nat(...) with arguments need \"commit\" (only a bare \
             \"nat\" works without it)",
        ));
    }
    if let Some(alg) = ct.alg {
        let (p, name) = if alg == FTP {
            (Prereq::Tcp, "ct(alg=ftp)")
        } else {
            (Prereq::Udp, "ct(alg=tftp)")
        };
        ctx.require(p, alg_at, name)?;
    }
    Ok(ct)
}

fn bad_range(at: usize, s: &str) -> ParseError {
    ParseError::new(
        at,
        format!(
            "nat: invalid range \"{s}\" (expected IP[-IP][:PORT[-PORT]], with an IPv6 address in \
             [brackets] when a port follows)"
        ),
    )
}

/// `IP[-IP][:PORT[-PORT]]`, IPv6 addresses in brackets when ports follow.
fn parse_nat_range(s: &str, at: usize, nat: &mut Nat) -> Result<(), ParseError> {
    let (addrs, ports): (&str, Option<&str>) = if s.starts_with('[') {
        // [a]-[b]:p-q
        match s.rfind(']') {
            Some(i) => match &s[i + 1..] {
                "" => (&s[..=i], None),
                rest => match rest.strip_prefix(':') {
                    Some(p) => (&s[..=i], Some(p)),
                    None => return Err(bad_range(at, s)),
                },
            },
            None => return Err(bad_range(at, s)),
        }
    } else if s.contains('.') {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    } else {
        (s, None)
    };
    let addr = |a: &str| -> Option<IpAddr> {
        let a = a
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(a);
        if let Some(v4) = parse_ipv4(a) {
            Some(IpAddr::V4(Ipv4Addr::from(v4)))
        } else {
            parse_ipv6(a).map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
        }
    };
    let (lo, hi) = match addrs.split_once("]-[") {
        Some((a, b)) => (format!("{a}]"), Some(format!("[{b}"))),
        None if !addrs.starts_with('[') => match addrs.split_once('-') {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (addrs.to_string(), None),
        },
        None => (addrs.to_string(), None),
    };
    let lo = addr(&lo).ok_or_else(|| bad_range(at, s))?;
    let hi = match hi {
        Some(h) => addr(&h).ok_or_else(|| bad_range(at, s))?,
        None => lo,
    };
    let ordered = match (lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a <= b,
        (IpAddr::V6(a), IpAddr::V6(b)) => a <= b,
        _ => false,
    };
    if !ordered {
        return Err(bad_range(at, s));
    }
    nat.addrs = Some((lo, hi));
    if let Some(p) = ports {
        let port = |x: &str| {
            x.parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && !x.starts_with('+'))
        };
        let (a, b) = match p.split_once('-') {
            Some((a, b)) => (port(a), port(b)),
            None => (port(p), port(p)),
        };
        match (a, b) {
            (Some(a), Some(b)) if a <= b => nat.ports = Some((a, b)),
            _ => return Err(bad_range(at, s)),
        }
    }
    Ok(())
}

fn parse_nat(args: &str, at: usize, key_at: usize, ctx: &Ctx) -> Result<Nat, ParseError> {
    let mut nat = Nat::default();
    let mut l = Lexer::new(args, at);
    while let Some(t) = l.next_token() {
        let t = t?;
        match (t.key, t.delim) {
            ("src" | "dst", d) if d != Delim::Paren => {
                if nat.kind.is_some() {
                    return Err(ParseError::new(
                        t.key_at,
                        "May only specify one of \"src\" or \"dst\".",
                    ));
                }
                nat.kind = Some(if t.key == "src" {
                    NatKind::Src
                } else {
                    NatKind::Dst
                });
                if d == Delim::Eq {
                    parse_nat_range(t.value, t.value_at, &mut nat)?;
                } else if d == Delim::Colon {
                    return Err(bad_range(t.value_at, t.value));
                }
            }
            ("persistent", Delim::None) => nat.persistent = true,
            ("hash", Delim::None) => nat.hash = true,
            ("random", Delim::None) => nat.random = true,
            _ => {
                return Err(ParseError::new(
                    t.key_at,
                    format!("invalid key \"{}\" in \"nat\" argument", t.key),
                ));
            }
        }
    }
    if nat.kind.is_none() && (nat.persistent || nat.hash || nat.random) {
        return Err(ParseError::new(
            key_at,
            "Flags allowed only with \"src\" or \"dst\".",
        ));
    }
    if nat.hash && nat.random {
        return Err(ParseError::new(
            key_at,
            "Both \"hash\" and \"random\" are not allowed.",
        ));
    }
    match nat.addrs {
        Some((IpAddr::V4(_), _)) => ctx.require(Prereq::Ipv4, at, "nat with an IPv4 address")?,
        Some((IpAddr::V6(_), _)) => ctx.require(Prereq::Ipv6, at, "nat with an IPv6 address")?,
        None => {}
    }
    Ok(nat)
}

fn write_nat(s: &mut String, nat: &Nat) {
    s.push_str("nat");
    let Some(kind) = nat.kind else { return };
    s.push('(');
    s.push_str(if kind == NatKind::Src { "src" } else { "dst" });
    if let Some((lo, hi)) = nat.addrs {
        s.push('=');
        let bracket = nat.ports.is_some();
        let addr = |a: IpAddr| match a {
            IpAddr::V4(a) => fmt_ipv4(a.into()),
            IpAddr::V6(a) if bracket => format!("[{}]", fmt_ipv6(a.into())),
            IpAddr::V6(a) => fmt_ipv6(a.into()),
        };
        s.push_str(&addr(lo));
        if hi != lo {
            s.push('-');
            s.push_str(&addr(hi));
        }
        if let Some((a, b)) = nat.ports {
            let _ = write!(s, ":{a}");
            if b != a {
                let _ = write!(s, "-{b}");
            }
        }
    }
    if nat.persistent {
        s.push_str(",persistent");
    }
    if nat.hash {
        s.push_str(",hash");
    }
    if nat.random {
        s.push_str(",random");
    }
    s.push(')');
}

/// Append `ct(...)` in Open vSwitch's order: commit, force, table, zone, nat, exec, alg.
pub(crate) fn write_ct(s: &mut String, ct: &Ct, ports: &dyn PortNames) {
    let mut parts: Vec<String> = Vec::new();
    if ct.commit {
        parts.push("commit".into());
    }
    if ct.force {
        parts.push("force".into());
    }
    if let Some(t) = ct.table {
        parts.push(format!("table={t}"));
    }
    match ct.zone {
        CtZone::Imm(0) => {}
        CtZone::Imm(z) => parts.push(format!("zone={z}")),
        CtZone::Field(sf) => parts.push(format!("zone={}", fmt_subfield(&sf))),
    }
    if let Some(nat) = &ct.nat {
        let mut n = String::new();
        write_nat(&mut n, nat);
        parts.push(n);
    }
    if !ct.exec.is_empty() {
        let mut e = String::from("exec(");
        super::actions::write_actions(&mut e, &ct.exec, ports);
        e.push(')');
        parts.push(e);
    }
    match ct.alg {
        Some(FTP) => parts.push("alg=ftp".into()),
        Some(TFTP) => parts.push("alg=tftp".into()),
        Some(p) => parts.push(format!("alg={p}")),
        None => {}
    }
    let _ = write!(s, "ct({})", parts.join(","));
}
