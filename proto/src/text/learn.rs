//! `learn(...)`: parsed and checked as Open vSwitch's `learn_parse()` and `learn_check()`
//! do, printed as `format_LEARN()` does.

use super::actions::{Ctx, field_prereq};
use super::format::{fmt_field_value, fmt_subfield, hex0};
use super::lexer::{Delim, Lexer, Token, split_arrow};
use super::value::{
    field_max, ones, parse_field_value, parse_int, parse_subfield_at, parse_table, parse_u16,
    parse_u64,
};
use super::{ParseError, PortNames};
use crate::action::{Learn, LearnSpec, SubField};
use crate::field::FieldId;
use crate::flowmod::DEFAULT_PRIORITY;
use crate::matching::Match;
use std::fmt::Write;

fn same_width(src: &SubField, dst: &SubField, at: usize) -> Result<(), ParseError> {
    if src.n_bits != dst.n_bits {
        return Err(ParseError::new(
            at,
            format!(
                "learn: {} is {} bits wide but {} is {} bits wide",
                fmt_subfield(src),
                src.n_bits,
                fmt_subfield(dst),
                dst.n_bits
            ),
        ));
    }
    Ok(())
}

/// An integer that must fit in `sf`.
fn imm_for(s: &str, at: usize, sf: &SubField) -> Result<u128, ParseError> {
    let v = parse_int(s, at, "learn")?;
    if v > ones(sf.n_bits as u32) {
        return Err(ParseError::new(
            at,
            format!(
                "learn: {s} does not fit in the {} bits of {}",
                sf.n_bits,
                fmt_subfield(sf)
            ),
        ));
    }
    Ok(v)
}

fn parse_spec(t: &Token, ctx: &Ctx) -> Result<LearnSpec, ParseError> {
    if t.key == "load" && t.delim == Delim::Colon {
        let (src_s, dst_s, dst_at) = split_arrow(t.value, t.value_at).ok_or_else(|| {
            ParseError::new(
                t.value_at,
                "learn: expected load:SRC[]->DST[] or load:VALUE->DST[]",
            )
        })?;
        let dst = parse_subfield_at(dst_s, dst_at)?;
        if src_s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Ok(LearnSpec::LoadImm {
                value: imm_for(src_s, t.value_at, &dst)?,
                dst,
            });
        }
        let src = parse_subfield_at(src_s, t.value_at)?;
        same_width(&src, &dst, t.value_at)?;
        return Ok(LearnSpec::LoadField { src, dst });
    }
    if t.key == "output" && t.delim == Delim::Colon {
        return Ok(LearnSpec::Output(parse_subfield_at(t.value, t.value_at)?));
    }
    if t.key.contains('[') {
        let dst = parse_subfield_at(t.key, t.key_at)?;
        return match t.delim {
            Delim::None => Ok(LearnSpec::MatchField { dst, src: dst }),
            Delim::Eq if t.value.as_bytes().first().is_some_and(u8::is_ascii_digit) => {
                Ok(LearnSpec::MatchImm {
                    value: imm_for(t.value, t.value_at, &dst)?,
                    dst,
                })
            }
            Delim::Eq => {
                let src = parse_subfield_at(t.value, t.value_at)?;
                same_width(&src, &dst, t.value_at)?;
                Ok(LearnSpec::MatchField { dst, src })
            }
            _ => Err(ParseError::new(
                t.key_at,
                "learn: expected FIELD[BITS]=VALUE or FIELD[BITS]=SRC[BITS]",
            )),
        };
    }
    let Some(field) = FieldId::from_name(t.key) else {
        return Err(ParseError::new(
            t.key_at,
            format!("learn: unknown keyword or field \"{}\"", t.key),
        ));
    };
    if t.delim != Delim::Eq || t.value.is_empty() {
        return Err(ParseError::new(
            t.key_at,
            format!(
                "learn: {} needs a value or a source field: {}=VALUE",
                t.key, t.key
            ),
        ));
    }
    let dst = SubField::whole(field);
    match parse_field_value(field, t.value, t.value_at, ctx.ports) {
        Ok((value, mask)) if mask == field_max(field) => Ok(LearnSpec::MatchImm { dst, value }),
        Ok(_) => Err(ParseError::new(
            t.value_at,
            format!("learn: {} needs an exact value, without a mask", t.key),
        )),
        Err(e) => {
            if FieldId::from_name(t.value.split('[').next().unwrap_or("")).is_none() {
                return Err(e);
            }
            let src = parse_subfield_at(t.value, t.value_at)?;
            same_width(&src, &dst, t.value_at)?;
            Ok(LearnSpec::MatchField { dst, src })
        }
    }
}

/// Parse the inside of `learn(...)`.
pub(crate) fn parse_learn(args: &str, at: usize, ctx: &Ctx) -> Result<Learn, ParseError> {
    let mut learn = Learn::default();
    let mut l = Lexer::new(args, at);
    // The learned flow's match, built from immediate values, to check the prerequisites of
    // the fields it matches (a learned `ip_src` needs `dl_type=0x800` before it).
    let mut learned = Match::CATCHALL;
    while let Some(t) = l.next_token() {
        let t = t?;
        let v = (t.value, t.value_at);
        let key = |what| format!("learn {what}");
        match (t.key, t.delim) {
            ("table", Delim::Eq) => learn.table = parse_table(v.0, v.1, &key("table"))?,
            ("priority", Delim::Eq) => learn.priority = parse_u16(v.0, v.1, &key("priority"))?,
            ("idle_timeout", Delim::Eq) => {
                learn.idle_timeout = parse_u16(v.0, v.1, &key("idle_timeout"))?
            }
            ("hard_timeout", Delim::Eq) => {
                learn.hard_timeout = parse_u16(v.0, v.1, &key("hard_timeout"))?
            }
            ("fin_idle_timeout", Delim::Eq) => {
                learn.fin_idle_timeout = parse_u16(v.0, v.1, &key("fin_idle_timeout"))?
            }
            ("fin_hard_timeout", Delim::Eq) => {
                learn.fin_hard_timeout = parse_u16(v.0, v.1, &key("fin_hard_timeout"))?
            }
            ("cookie", Delim::Eq) => learn.cookie = parse_u64(v.0, v.1, &key("cookie"))?,
            ("delete_learned", Delim::None) => learn.delete_learned = true,
            ("limit", Delim::Eq) => learn.limit = super::value::parse_u32(v.0, v.1, &key("limit"))?,
            ("result_dst", Delim::Eq) => {
                let sf = parse_subfield_at(v.0, v.1)?;
                if sf.n_bits != 1 {
                    return Err(ParseError::new(
                        v.1,
                        "result_dst in 'learn' action must be a single bit",
                    ));
                }
                if !sf.field.info().writable {
                    return Err(ParseError::new(
                        v.1,
                        format!("learn: result_dst {} is read-only", sf.field.info().name),
                    ));
                }
                ctx.check_src(&sf, v.1, "learn result_dst")?;
                learn.result_dst = Some(sf);
            }
            ("send_flow_rem", _) => {
                return Err(ParseError::new(
                    t.key_at,
                    format!("learn: {} is not supported by this switch", t.key),
                ));
            }
            _ => {
                let spec = parse_spec(&t, ctx)?;
                check_spec(&spec, &t, ctx, &mut learned)?;
                learn.specs.push(spec);
            }
        }
    }
    Ok(learn)
}

/// Open vSwitch's `learn_check()`: sources against the packet's match, destinations against
/// the learned match built so far.
fn check_spec(
    spec: &LearnSpec,
    t: &Token,
    ctx: &Ctx,
    learned: &mut Match,
) -> Result<(), ParseError> {
    let src_what = |sf: &SubField| format!("learn: reading {}", fmt_subfield(sf));
    match spec {
        LearnSpec::MatchField { src, .. } | LearnSpec::LoadField { src, .. } => {
            ctx.check_src(src, t.key_at, &src_what(src))?
        }
        LearnSpec::Output(src) => ctx.check_src(src, t.key_at, &src_what(src))?,
        _ => {}
    }
    let dst_ok = |dst: &SubField, learned: &Match| -> Result<(), ParseError> {
        let p = field_prereq(dst.field);
        if p.satisfied_by(&learned.flow, &learned.mask) {
            return Ok(());
        }
        Err(ParseError::new(
            t.key_at,
            format!(
                "learn: the learned flow's {} requires {} earlier in the learn(...) (for example \
                 dl_type=0x800 before an IPv4 field)",
                dst.field.info().name,
                p.describe()
            ),
        ))
    };
    match spec {
        LearnSpec::MatchField { dst, .. } => dst_ok(dst, learned)?,
        LearnSpec::MatchImm { dst, value } => {
            dst_ok(dst, learned)?;
            learned.set_masked(dst.field, value << dst.ofs, dst.mask_in_field());
        }
        LearnSpec::LoadField { dst, .. } | LearnSpec::LoadImm { dst, .. } => {
            dst_ok(dst, learned)?;
            if !dst.field.info().writable {
                return Err(ParseError::new(
                    t.key_at,
                    format!(
                        "learn: {} is read-only and cannot be loaded",
                        dst.field.info().name
                    ),
                ));
            }
        }
        LearnSpec::Output(_) => {}
    }
    Ok(())
}

/// Append `learn(...)` as Open vSwitch's `format_LEARN()` writes it.
pub(crate) fn write_learn(s: &mut String, l: &Learn, ports: &dyn PortNames) {
    let _ = write!(s, "learn(table={}", l.table);
    if l.idle_timeout != 0 {
        let _ = write!(s, ",idle_timeout={}", l.idle_timeout);
    }
    if l.hard_timeout != 0 {
        let _ = write!(s, ",hard_timeout={}", l.hard_timeout);
    }
    if l.fin_idle_timeout != 0 {
        let _ = write!(s, ",fin_idle_timeout={}", l.fin_idle_timeout);
    }
    if l.fin_hard_timeout != 0 {
        let _ = write!(s, ",fin_hard_timeout={}", l.fin_hard_timeout);
    }
    if l.priority != DEFAULT_PRIORITY {
        let _ = write!(s, ",priority={}", l.priority);
    }
    if l.delete_learned {
        s.push_str(",delete_learned");
    }
    if l.cookie != 0 {
        let _ = write!(s, ",cookie={}", hex0(l.cookie as u128));
    }
    if l.limit != 0 {
        let _ = write!(s, ",limit={}", l.limit);
    }
    if let Some(sf) = &l.result_dst {
        let _ = write!(s, ",result_dst={}", fmt_subfield(sf));
    }
    for spec in &l.specs {
        s.push(',');
        match spec {
            LearnSpec::MatchImm { dst, value } if dst.is_whole() => {
                let f = dst.field;
                let _ = write!(
                    s,
                    "{}={}",
                    f.info().name,
                    fmt_field_value(f, *value, field_max(f), ports)
                );
            }
            LearnSpec::MatchImm { dst, value } => {
                let _ = write!(s, "{}={}", fmt_subfield(dst), hex0(*value));
            }
            LearnSpec::MatchField { dst, src } => {
                s.push_str(&fmt_subfield(dst));
                if src.field != dst.field || src.ofs != dst.ofs {
                    let _ = write!(s, "={}", fmt_subfield(src));
                }
            }
            LearnSpec::LoadImm { value, dst } => {
                let _ = write!(s, "load:{}->{}", hex0(*value), fmt_subfield(dst));
            }
            LearnSpec::LoadField { src, dst } => {
                let _ = write!(s, "load:{}->{}", fmt_subfield(src), fmt_subfield(dst));
            }
            LearnSpec::Output(src) => {
                let _ = write!(s, "output:{}", fmt_subfield(src));
            }
        }
    }
    s.push(')');
}
