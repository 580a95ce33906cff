//! Groups: `group_id=1,type=select,bucket=weight:100,actions=output:1,bucket=...`, parsed as
//! `ovs-ofctl add-group` reads them and printed as `ovs-ofctl -O OpenFlow15 dump-groups`.

use super::actions::{Ctx, GROUP_MAX, parse_action_list, write_actions};
use super::format::fmt_port;
use super::lexer::{Delim, Lexer, Token, trim_end_seps};
use super::value::{
    field_max, parse_field_value, parse_port, parse_u16, parse_u32, parse_u64, suggest,
};
use super::{ParseError, PortNames};
use crate::action::port;
use crate::field::FieldId;
use crate::group::{Bucket, GroupSpec, GroupType, Selection, SelectionMethod};
use crate::matching::Match;
use std::fmt::Write;

/// Highest bucket id (OpenFlow 1.5's OFPG_BUCKET_MAX).
const BUCKET_MAX: u32 = 0xffff_ff00;

const TYPES: [(&str, GroupType); 5] = [
    ("all", GroupType::All),
    ("select", GroupType::Select),
    ("indirect", GroupType::Indirect),
    ("ff", GroupType::FastFailover),
    ("fast_failover", GroupType::FastFailover),
];

fn type_name(t: GroupType) -> &'static str {
    match t {
        GroupType::All => "all",
        GroupType::Select => "select",
        GroupType::Indirect => "indirect",
        GroupType::FastFailover => "ff",
    }
}

struct RawBucket {
    at: usize,
    id: Option<u32>,
    weight: Option<(u16, usize)>,
    watch_port: Option<(u32, usize)>,
    actions: Vec<crate::action::Action>,
}

fn parse_bucket(
    text: &str,
    at: usize,
    bucket_at: usize,
    ports: &dyn PortNames,
) -> Result<RawBucket, ParseError> {
    let mut b = RawBucket {
        at: bucket_at,
        id: None,
        weight: None,
        watch_port: None,
        actions: Vec::new(),
    };
    let mut lexer = Lexer::new(text, at);
    let mut actions_from: Option<usize> = None;
    while let Some(t) = lexer.next_token() {
        let t: Token = t?;
        let is_param = matches!(t.delim, Delim::Colon | Delim::Eq)
            && matches!(t.key, "weight" | "watch_port" | "watch_group" | "bucket_id");
        if !is_param {
            // The actions: after `actions=`, or from the first thing that is not a parameter.
            actions_from = Some(
                if matches!(t.key, "actions" | "action") && t.delim == Delim::Eq {
                    t.value_at
                } else {
                    t.key_at
                },
            );
            break;
        }
        let (v, vat) = (t.value, t.value_at);
        let twice = |prev: bool| {
            if prev {
                Err(ParseError::new(
                    t.key_at,
                    format!("bucket: {} is given twice", t.key),
                ))
            } else {
                Ok(())
            }
        };
        match t.key {
            "weight" => {
                twice(b.weight.is_some())?;
                b.weight = Some((parse_u16(v, vat, "bucket weight")?, t.key_at));
            }
            "watch_port" => {
                twice(b.watch_port.is_some())?;
                let p = parse_port(v, vat, "watch_port", ports)?;
                if p > port::MAX {
                    return Err(ParseError::new(
                        vat,
                        format!("watch_port: {v} cannot be watched"),
                    ));
                }
                b.watch_port = Some((p, t.key_at));
            }
            "bucket_id" => {
                twice(b.id.is_some())?;
                let id = parse_u32(v, vat, "bucket_id")?;
                if id > BUCKET_MAX {
                    return Err(ParseError::new(
                        vat,
                        format!("bucket_id: {v} is out of range (0 to {BUCKET_MAX})"),
                    ));
                }
                b.id = Some(id);
            }
            _ => {
                return Err(ParseError::new(
                    t.key_at,
                    "bucket: watch_group is not supported by this switch",
                ));
            }
        }
    }
    let Some(from) = actions_from else {
        return Err(ParseError::new(
            bucket_at,
            "bucket must specify actions (actions=drop for none)",
        ));
    };
    {
        let end = at + text.len();
        let mut ctx = Ctx {
            ports,
            state: Match::CATCHALL,
            check: false,
            in_ct_exec: false,
            in_group: true,
            in_action_set: false,
        };
        b.actions = parse_action_list(&text[from - at..end - at], from, &mut ctx)?;
    }
    Ok(b)
}

pub(crate) fn parse_group(s: &str, ports: &dyn PortNames) -> Result<GroupSpec, ParseError> {
    let mut lexer = Lexer::new(s, 0);
    let mut group_id = None;
    let mut group_type = None;
    // (offset of the `bucket` key, offset of its value)
    let mut buckets_at: Vec<(usize, usize)> = Vec::new();
    let mut method: Option<(SelectionMethod, usize)> = None;
    let mut param: Option<(u64, usize)> = None;
    let mut fields: Option<(Vec<(FieldId, u128)>, usize)> = None;
    let mut affinity: Option<(u32, usize)> = None;
    while let Some(t) = lexer.next_token() {
        let t = t?;
        let starts_bucket = t.key == "bucket" && t.delim == Delim::Eq;
        if !buckets_at.is_empty() && !starts_bucket {
            continue;
        }
        match (t.key, t.delim) {
            ("bucket", Delim::Eq) => buckets_at.push((t.key_at, t.value_at)),
            ("group_id", Delim::Eq) => {
                if group_id.is_some() {
                    return Err(ParseError::new(t.key_at, "group_id is given twice"));
                }
                let g = parse_u32(t.value, t.value_at, "group_id")?;
                if g > GROUP_MAX {
                    return Err(ParseError::new(
                        t.value_at,
                        format!("group_id: {} is out of range (0 to {GROUP_MAX})", t.value),
                    ));
                }
                group_id = Some(g);
            }
            ("type", Delim::Eq) => {
                if group_type.is_some() {
                    return Err(ParseError::new(t.key_at, "type is given twice"));
                }
                let ty = TYPES.iter().find(|(n, _)| *n == t.value).ok_or_else(|| {
                    ParseError::new(
                        t.value_at,
                        format!(
                            "unknown group type \"{}\" (expected all, select, indirect or \
                             fast_failover)",
                            t.value
                        ),
                    )
                })?;
                group_type = Some(ty.1);
            }
            ("selection_method", Delim::Eq) => {
                if method.is_some() {
                    return Err(ParseError::new(t.key_at, "selection_method is given twice"));
                }
                let m = match t.value {
                    "hash" => SelectionMethod::Hash,
                    "dp_hash" => SelectionMethod::DpHash,
                    v => {
                        return Err(ParseError::new(
                            t.value_at,
                            format!("unknown selection_method \"{v}\" (expected hash or dp_hash)"),
                        ));
                    }
                };
                method = Some((m, t.key_at));
            }
            ("selection_method_param", Delim::Eq) => {
                if param.is_some() {
                    return Err(ParseError::new(
                        t.key_at,
                        "selection_method_param is given twice",
                    ));
                }
                param = Some((
                    parse_u64(t.value, t.value_at, "selection_method_param")?,
                    t.key_at,
                ));
            }
            ("affinity", Delim::Eq) => {
                if affinity.is_some() {
                    return Err(ParseError::new(t.key_at, "affinity is given twice"));
                }
                let secs = parse_u32(t.value, t.value_at, "affinity")?;
                if secs == 0 {
                    return Err(ParseError::new(
                        t.value_at,
                        "affinity: 0 seconds is no affinity (leave it out)",
                    ));
                }
                affinity = Some((secs, t.key_at));
            }
            ("fields", Delim::Eq | Delim::Paren) => {
                if fields.is_some() {
                    return Err(ParseError::new(t.key_at, "fields is given twice"));
                }
                fields = Some((parse_hash_fields(t.value, t.value_at, ports)?, t.key_at));
            }
            _ => {
                return Err(ParseError::new(
                    t.key_at,
                    format!(
                        "unknown group keyword \"{}\"{}",
                        t.key,
                        suggest(t.key, ["group_id", "type", "bucket", "affinity"])
                    ),
                ));
            }
        }
    }
    let group_id = group_id.ok_or_else(|| ParseError::new(0, "must specify a group_id"))?;
    let group_type = group_type.ok_or_else(|| ParseError::new(0, "must specify a type"))?;
    let selection = match (method, param, fields) {
        (None, Some((_, at)), _) => {
            return Err(ParseError::new(
                at,
                "selection_method_param is only allowed with \"selection_method\"",
            ));
        }
        (None, None, Some((_, at))) | (Some((SelectionMethod::DpHash, _)), _, Some((_, at))) => {
            return Err(ParseError::new(
                at,
                "fields may only be specified with \"selection_method=hash\"",
            ));
        }
        (None, None, None) => None,
        (Some((method, at)), param, fields) => {
            if group_type != GroupType::Select {
                return Err(ParseError::new(
                    at,
                    "selection_method is only allowed in select groups",
                ));
            }
            Some(Selection {
                method,
                param: param.map_or(0, |p| p.0),
                fields: fields.map(|f| f.0).unwrap_or_default(),
            })
        }
    };
    if let Some((_, at)) = affinity
        && group_type != GroupType::Select
    {
        return Err(ParseError::new(
            at,
            "affinity is only allowed in select groups",
        ));
    }
    let mut raw = Vec::new();
    for (i, &(key_at, value_at)) in buckets_at.iter().enumerate() {
        let end = buckets_at.get(i + 1).map_or(s.len(), |b| b.0);
        let text = trim_end_seps(&s[value_at..end]);
        raw.push(parse_bucket(text, value_at, key_at, ports)?);
    }
    if group_type == GroupType::Indirect && raw.len() > 1 {
        return Err(ParseError::new(
            raw[1].at,
            "Indirect groups can have at most one bucket.",
        ));
    }
    let mut used: Vec<u32> = Vec::new();
    for b in &raw {
        if let Some(id) = b.id {
            if used.contains(&id) {
                return Err(ParseError::new(b.at, format!("duplicate bucket_id {id}")));
            }
            used.push(id);
        }
    }
    let mut buckets = Vec::new();
    for b in raw {
        if let Some((_, at)) = b.weight
            && group_type != GroupType::Select
        {
            return Err(ParseError::new(
                at,
                "Only select groups can have bucket weights.",
            ));
        }
        match (group_type, b.watch_port) {
            (GroupType::FastFailover, None) => {
                return Err(ParseError::new(
                    b.at,
                    "fast failover bucket requires watch_port",
                ));
            }
            (GroupType::FastFailover, Some(_)) | (_, None) => {}
            (_, Some((_, at))) => {
                return Err(ParseError::new(
                    at,
                    "watch_port is only meaningful in fast_failover groups",
                ));
            }
        }
        // Like Open vSwitch: a bucket without an id gets the lowest id not otherwise used.
        let bucket_id = match b.id {
            Some(id) => id,
            None => {
                let id = (0..).find(|i| !used.contains(i)).unwrap_or(0);
                used.push(id);
                id
            }
        };
        buckets.push(Bucket {
            bucket_id,
            weight: b.weight.map_or(1, |w| w.0),
            watch_port: b.watch_port.map(|w| w.0),
            actions: b.actions,
        });
    }
    Ok(GroupSpec {
        group_id,
        group_type,
        buckets,
        selection,
        affinity: affinity.map(|a| a.0),
    })
}

/// Open vSwitch's order of fields (its `enum mf_field_id`), in which it prints `fields(...)`.
fn ovs_field_rank(f: FieldId) -> usize {
    const ORDER: &[&str] = &[
        "recirc_id",
        "conj_id",
        "tun_id",
        "tun_src",
        "tun_dst",
        "metadata",
        "in_port",
        "ct_state",
        "ct_zone",
        "ct_mark",
        "ct_label",
        "reg0",
        "reg1",
        "reg2",
        "reg3",
        "reg4",
        "reg5",
        "reg6",
        "reg7",
        "reg8",
        "reg9",
        "reg10",
        "reg11",
        "reg12",
        "reg13",
        "reg14",
        "reg15",
        "eth_src",
        "eth_dst",
        "eth_type",
        "vlan_tci",
        "dl_vlan",
        "vlan_vid",
        "vlan_pcp",
        "ip_src",
        "ip_dst",
        "ipv6_src",
        "ipv6_dst",
        "ipv6_label",
        "nw_proto",
        "nw_tos",
        "ip_dscp",
        "nw_ecn",
        "nw_ttl",
        "ip_frag",
        "arp_op",
        "arp_spa",
        "arp_tpa",
        "arp_sha",
        "arp_tha",
        "tcp_src",
        "tcp_dst",
        "tcp_flags",
        "udp_src",
        "udp_dst",
        "sctp_src",
        "sctp_dst",
        "icmp_type",
        "icmp_code",
        "icmpv6_type",
        "icmpv6_code",
        "nd_target",
        "nd_sll",
        "nd_tll",
    ];
    ORDER
        .iter()
        .position(|n| *n == f.info().name)
        .unwrap_or(ORDER.len())
}

/// `fields(ip_src,tcp_dst,eth_dst=ff:ff:ff:00:00:00)` or `fields=ip_src`: the fields a
/// `selection_method=hash` group hashes, each optionally under a mask.
fn parse_hash_fields(
    s: &str,
    at: usize,
    ports: &dyn PortNames,
) -> Result<Vec<(FieldId, u128)>, ParseError> {
    let mut out: Vec<(FieldId, u128)> = Vec::new();
    let mut l = Lexer::new(s, at);
    while let Some(t) = l.next_token() {
        let t = t?;
        let field = FieldId::from_name(t.key)
            .ok_or_else(|| ParseError::new(t.key_at, format!("fields: unknown field {}", t.key)))?;
        // tp_src/tp_dst are Open vSwitch's names for tcp_src/tcp_dst.
        let field = match field {
            FieldId::TpSrc => FieldId::TcpSrc,
            FieldId::TpDst => FieldId::TcpDst,
            f => f,
        };
        let mask = match t.delim {
            Delim::None => field_max(field),
            Delim::Eq => {
                if !field.info().maskable {
                    return Err(ParseError::new(
                        t.key_at,
                        format!("fields: {} cannot be masked", t.key),
                    ));
                }
                parse_field_value(field, t.value, t.value_at, ports)?.0
            }
            _ => {
                return Err(ParseError::new(
                    t.key_at,
                    format!("fields: expected FIELD or FIELD=MASK, got {}", t.key),
                ));
            }
        };
        if out.iter().any(|(f, _)| *f == field) {
            return Err(ParseError::new(
                t.key_at,
                format!("{}: duplicate field", t.key),
            ));
        }
        out.push((field, mask));
    }
    out.sort_by_key(|(f, _)| ovs_field_rank(*f));
    Ok(out)
}

/// Append a group as `ovs-ofctl -O OpenFlow15 dump-groups` prints it.
pub(crate) fn write_group(s: &mut String, g: &GroupSpec, ports: &dyn PortNames) {
    let _ = write!(
        s,
        "group_id={},type={}",
        g.group_id,
        type_name(g.group_type)
    );
    if let Some(sel) = &g.selection {
        s.push_str(match sel.method {
            SelectionMethod::Hash => ",selection_method=hash",
            SelectionMethod::DpHash => ",selection_method=dp_hash",
        });
        if sel.param != 0 {
            let _ = write!(s, ",selection_method_param={}", sel.param);
        }
        let one = |s: &mut String, (f, m): &(FieldId, u128)| {
            s.push_str(f.info().name);
            if *m != field_max(*f) {
                s.push('=');
                s.push_str(&super::format::fmt_field_value(
                    *f,
                    *m,
                    field_max(*f),
                    ports,
                ));
            }
        };
        match sel.fields.as_slice() {
            [] => {}
            [f] => {
                s.push_str(",fields=");
                one(s, f);
            }
            fs => {
                s.push_str(",fields(");
                for (i, f) in fs.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    one(s, f);
                }
                s.push(')');
            }
        }
    }
    if let Some(a) = g.affinity {
        let _ = write!(s, ",affinity={a}");
    }
    for b in &g.buckets {
        let _ = write!(s, ",bucket=bucket_id:{},", b.bucket_id);
        if b.weight != 1 {
            let _ = write!(s, "weight:{},", b.weight);
        }
        if let Some(p) = b.watch_port {
            let _ = write!(s, "watch_port:{},", fmt_port(p, ports));
        }
        s.push_str("actions=");
        write_actions(s, &b.actions, ports);
    }
}
