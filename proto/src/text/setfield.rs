//! Actions that write fields: `set_field`, `load`, `move` and the `mod_*` spellings, all
//! normalised to [`Action::SetField`] or [`Action::Move`] and checked against the match.

use super::ParseError;
use super::actions::{Ctx, need_value};
use super::lexer::{Token, split_arrow};
use super::value::{
    field_max, ones, parse_field_value, parse_int, parse_subfield_at, subfield_bits,
};
use crate::action::Action;
use crate::field::{FieldId, ethertype};

/// `mod_dl_src:MAC`, `mod_nw_tos:TOS`, `mod_vlan_vid:VID`, ...: Open vSwitch's older
/// spellings of writing one field, normalised to `SetField` (printed as Open vSwitch 3.1
/// prints them).
pub(crate) fn parse_mod(key: &str, t: &Token, ctx: &mut Ctx) -> Result<Vec<Action>, ParseError> {
    match key {
        "mod_dl_src" | "mod_dl_dst" | "mod_nw_src" | "mod_nw_dst" | "mod_nw_ttl" | "mod_tp_src"
        | "mod_tp_dst" => {
            let field = match key {
                "mod_dl_src" => FieldId::EthSrc,
                "mod_dl_dst" => FieldId::EthDst,
                "mod_nw_src" => FieldId::IpSrc,
                "mod_nw_dst" => FieldId::IpDst,
                "mod_nw_ttl" => FieldId::NwTtl,
                "mod_tp_src" => ctx.resolve_l4(FieldId::TpSrc),
                _ => ctx.resolve_l4(FieldId::TpDst),
            };
            let v = need_value(t, key, &format!("{key}:VALUE"))?;
            let (value, mask) = parse_field_value(field, v, t.value_at, ctx.ports)?;
            if mask != field_max(field) {
                return Err(ParseError::new(t.value_at, format!("{key} takes no mask")));
            }
            set_field(ctx, field, value, mask, t.key_at, key)
        }
        "mod_nw_tos" => {
            let v = need_value(t, key, "mod_nw_tos:TOS")?;
            let (value, mask) = parse_field_value(FieldId::NwTos, v, t.value_at, ctx.ports)?;
            if mask != field_max(FieldId::NwTos) {
                return Err(ParseError::new(t.value_at, format!("{key} takes no mask")));
            }
            set_field(ctx, FieldId::IpDscp, value, mask, t.key_at, key)
        }
        "mod_nw_ecn" => {
            let v = need_value(t, key, "mod_nw_ecn:ECN")?;
            let ecn = parse_int(v, t.value_at, key)?;
            if ecn > 3 {
                return Err(ParseError::new(
                    t.value_at,
                    format!("{key}: {v} is not an ECN value (0 to 3)"),
                ));
            }
            set_field(ctx, FieldId::IpEcn, ecn, 3, t.key_at, key)
        }
        "mod_vlan_vid" | "mod_vlan_pcp" => {
            let v = need_value(t, key, &format!("{key}:VALUE"))?;
            let n = parse_int(v, t.value_at, key)?;
            let (field, value, max) = if key == "mod_vlan_vid" {
                (FieldId::VlanVid, n | 0x1000, 0xfff)
            } else {
                (FieldId::VlanPcp, n, 7)
            };
            if n > max {
                return Err(ParseError::new(
                    t.value_at,
                    format!("{key}: {v} is out of range (0 to {max})"),
                ));
            }
            // Like Open vSwitch: on a packet without a VLAN tag, push one first.
            let mut out = Vec::new();
            if !ctx.has_vlan() {
                out.extend(vlan_push(ctx, ethertype::VLAN));
            }
            out.extend(set_field(
                ctx,
                field,
                value,
                field_max(field),
                t.key_at,
                key,
            )?);
            Ok(out)
        }
        _ => unreachable!("parse_mod called for {key}"),
    }
}

pub(crate) fn vlan_push(ctx: &mut Ctx, tpid: u16) -> Vec<Action> {
    ctx.state
        .flow
        .set_masked(crate::flow::slot::VLAN_TCI, 0x1000, 0xffff);
    ctx.state
        .mask
        .set_masked(crate::flow::slot::VLAN_TCI, 0x1000, 0xffff);
    vec![Action::PushVlan(tpid)]
}

/// Check and build a `SetField`, tracking a write to vlan_tci in the match state.
pub(crate) fn set_field(
    ctx: &mut Ctx,
    field: FieldId,
    value: u128,
    mask: u128,
    at: usize,
    what: &str,
) -> Result<Vec<Action>, ParseError> {
    let field = ctx.resolve_l4(field);
    ctx.check_dst(field, at, &format!("{what} ({})", field.info().name))?;
    if field == FieldId::VlanVid && mask & 0x1000 != 0 && value & 0x1000 == 0 {
        return Err(ParseError::new(
            at,
            format!(
                "{what}: vlan_vid {value} lacks the VLAN-present bit 0x1000; write {} (or \
                 mod_vlan_vid:{value})",
                value | 0x1000
            ),
        ));
    }
    if field == FieldId::VlanTci {
        let s = crate::flow::slot::VLAN_TCI;
        ctx.state.flow.set_masked(s, value, mask);
        ctx.state.mask.set_masked(s, mask, mask);
    }
    Ok(vec![Action::SetField {
        field,
        value: value & mask,
        mask,
    }])
}

pub(crate) fn parse_set_field(t: &Token, ctx: &mut Ctx) -> Result<Vec<Action>, ParseError> {
    let v = need_value(t, "set_field", "set_field:VALUE->FIELD")?;
    let (value_s, field_s, field_at) = split_arrow(v, t.value_at)
        .ok_or_else(|| ParseError::new(t.value_at, "set_field: expected VALUE->FIELD"))?;
    if field_s.contains('[') {
        return Err(ParseError::new(
            field_at,
            "set_field writes a whole field (with an optional /MASK on the value); use load for \
             a range of bits",
        ));
    }
    let field = parse_subfield_at(field_s, field_at)?.field;
    let field = ctx.resolve_l4(field);
    let (value, mask) = match field {
        // vlan_pcp and dl_vlan are written as plain numbers here.
        FieldId::VlanPcp | FieldId::DlVlan => {
            let n = parse_int(value_s, t.value_at, field.info().name)?;
            if n > field_max(field) {
                return Err(ParseError::new(
                    t.value_at,
                    format!("set_field: {value_s} does not fit in {}", field.info().name),
                ));
            }
            (n, field_max(field))
        }
        _ => parse_field_value(field, value_s, t.value_at, ctx.ports)?,
    };
    if mask == 0 {
        return Err(ParseError::new(
            t.value_at,
            "set_field: a zero mask writes nothing",
        ));
    }
    set_field(ctx, field, value, mask, t.key_at, "set_field")
}

pub(crate) fn parse_load(t: &Token, ctx: &mut Ctx) -> Result<Vec<Action>, ParseError> {
    let v = need_value(t, "load", "load:VALUE->FIELD[BITS]")?;
    let (value_s, dst_s, dst_at) = split_arrow(v, t.value_at)
        .ok_or_else(|| ParseError::new(t.value_at, "load: expected VALUE->FIELD[BITS]"))?;
    let dst = parse_subfield_at(dst_s, dst_at)?;
    let value = parse_int(value_s, t.value_at, "load")?;
    if value > ones(dst.n_bits as u32) {
        return Err(ParseError::new(
            t.value_at,
            format!("load: {value_s} does not fit in {} bits", dst.n_bits),
        ));
    }
    let full = field_max(dst.field);
    let mask = if dst.ofs == 0 && dst.n_bits as u32 == subfield_bits(dst.field) {
        full
    } else {
        dst.mask_in_field() & full
    };
    set_field(ctx, dst.field, value << dst.ofs, mask, t.key_at, "load")
}

pub(crate) fn parse_move(t: &Token, ctx: &mut Ctx) -> Result<Vec<Action>, ParseError> {
    let v = need_value(t, "move", "move:SRC[BITS]->DST[BITS]")?;
    let (src_s, dst_s, dst_at) = split_arrow(v, t.value_at)
        .ok_or_else(|| ParseError::new(t.value_at, "move: expected SRC[BITS]->DST[BITS]"))?;
    let mut src = parse_subfield_at(src_s, t.value_at)?;
    let mut dst = parse_subfield_at(dst_s, dst_at)?;
    src.field = ctx.resolve_l4(src.field);
    dst.field = ctx.resolve_l4(dst.field);
    if src.n_bits != dst.n_bits {
        return Err(ParseError::new(
            t.value_at,
            format!(
                "move: source is {} bits wide but destination is {} bits wide",
                src.n_bits, dst.n_bits
            ),
        ));
    }
    ctx.check_src(
        &src,
        t.value_at,
        &format!("move from {}", src.field.info().name),
    )?;
    ctx.check_dst(
        dst.field,
        dst_at,
        &format!("move to {}", dst.field.info().name),
    )?;
    Ok(vec![Action::Move { src, dst }])
}
