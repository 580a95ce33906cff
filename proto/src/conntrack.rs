//! The text of connection-tracking commands, as Open vSwitch's `ovs-appctl dpctl/...`
//! writes it: zone limits (`default=N`, `zone=Z,limit=N`, `zone=Z1,Z2`), the tuples of
//! `flush-conntrack` (`ct_nw_src=..,ct_tp_dst=..`), `ct_state` flags for `trace
//! --ct-next`, and `NAME=SECS` timeouts. Shared by `vswitchctl` and the switch, so both
//! refuse the same text with the same words.

use crate::flow::ct_state;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One zone's limit (`zone=Z,limit=N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneLimit {
    pub zone: u16,
    pub limit: u32,
}

/// The arguments of `ct-set-limits`: `[default=N] [zone=Z,limit=N]...`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLimits {
    /// The limit of zones without their own (0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<u32>,
    #[serde(default)]
    pub zones: Vec<ZoneLimit>,
}

fn zone_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("failed to parse field zone: `{s}` is not a zone (0 to 65535)"))
}

fn limit_number(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse zone limit: `{s}` is not a number"))
}

/// `ct-set-limits` arguments.
pub fn parse_set_limits(args: &[String]) -> Result<SetLimits, String> {
    let mut out = SetLimits::default();
    for a in args {
        if let Some(v) = a.strip_prefix("default=") {
            if out.default.is_some() {
                return Err("default limit given twice".into());
            }
            out.default = Some(limit_number(v)?);
            continue;
        }
        let mut zone = None;
        let mut limit = None;
        for kv in a.split(',') {
            match kv.split_once('=') {
                Some(("zone", v)) if zone.is_none() => zone = Some(zone_number(v)?),
                Some(("limit", v)) if limit.is_none() => limit = Some(limit_number(v)?),
                _ => {
                    return Err(format!(
                        "failed to parse zone limit `{a}`: expected default=N or zone=Z,limit=N"
                    ));
                }
            }
        }
        match (zone, limit) {
            (Some(zone), Some(limit)) => out.zones.push(ZoneLimit { zone, limit }),
            _ => {
                return Err(format!(
                    "failed to parse zone limit `{a}`: expected default=N or zone=Z,limit=N"
                ));
            }
        }
    }
    Ok(out)
}

/// `zone=Z1[,Z2]...` (`ct-get-limits`, `ct-del-limits`).
pub fn parse_zone_list(args: &[String]) -> Result<Vec<u16>, String> {
    let mut zones = Vec::new();
    for a in args {
        let Some(list) = a.strip_prefix("zone=") else {
            return Err(format!(
                "failed to parse field zone: expected zone=Z1[,Z2]..., not `{a}`"
            ));
        };
        for z in list.split(',') {
            zones.push(zone_number(z)?);
        }
    }
    Ok(zones)
}

/// `zone=N` or `N`, as `dump-conntrack` and `flush-conntrack` take it.
pub fn parse_zone(s: &str) -> Result<u16, String> {
    zone_number(s.strip_prefix("zone=").unwrap_or(s))
}

/// A connection tuple to flush by: every field given must be equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtTuple {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    /// The source port, or the ICMP id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// The destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    let parsed = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16)
            .ok()
            .and_then(|n| n.to_string().parse().ok()),
        None => v.parse().ok(),
    };
    parsed.ok_or_else(|| format!("invalid conntrack tuple field value: {key}={v}"))
}

/// Open vSwitch's conntrack tuple: `ct_nw_src=IP,ct_nw_dst=IP,ct_ipv6_src=IP,
/// ct_ipv6_dst=IP,ct_nw_proto=N,ct_tp_src=N,ct_tp_dst=N,icmp_id=N,icmp_type=N,icmp_code=N`,
/// any subset.
pub fn parse_tuple(s: &str) -> Result<CtTuple, String> {
    let mut t = CtTuple::default();
    for kv in s.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!(
                "invalid conntrack tuple field: {kv} (expected NAME=VALUE)"
            ));
        };
        let ip = |want_v6: bool| -> Result<IpAddr, String> {
            match v.parse::<IpAddr>() {
                Ok(a) if a.is_ipv6() == want_v6 => Ok(a),
                _ => Err(format!(
                    "invalid conntrack tuple field value: {k}={v} (an IPv{} address)",
                    if want_v6 { 6 } else { 4 }
                )),
            }
        };
        match k {
            "ct_nw_src" => t.src = Some(ip(false)?),
            "ct_nw_dst" => t.dst = Some(ip(false)?),
            "ct_ipv6_src" => t.src = Some(ip(true)?),
            "ct_ipv6_dst" => t.dst = Some(ip(true)?),
            "ct_nw_proto" => t.proto = Some(num(k, v)?),
            "ct_tp_src" | "icmp_id" => t.sport = Some(num(k, v)?),
            "ct_tp_dst" => t.dport = Some(num(k, v)?),
            "icmp_type" => t.icmp_type = Some(num(k, v)?),
            "icmp_code" => t.icmp_code = Some(num(k, v)?),
            _ => {
                return Err(format!(
                    "invalid conntrack tuple field: {k} (known: ct_nw_src, ct_nw_dst, \
                     ct_ipv6_src, ct_ipv6_dst, ct_nw_proto, ct_tp_src, ct_tp_dst, icmp_id, \
                     icmp_type, icmp_code)"
                ));
            }
        }
    }
    if let (Some(a), Some(b)) = (t.src, t.dst)
        && a.is_ipv6() != b.is_ipv6()
    {
        return Err(
            "invalid conntrack tuple: source and destination of different IP versions".into(),
        );
    }
    Ok(t)
}

/// `ct_state` flags as `trace --ct-next` takes them: names separated by `,` or `|`
/// (`trk,new`, Open vSwitch's form), or `+`-prefixed (`+trk+est`, as in a match); a
/// `-flag` is allowed and means the flag is not set.
pub fn parse_ct_state(s: &str) -> Result<u16, String> {
    let mut bits = 0u16;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty ct_state (e.g. trk,new)".into());
    }
    while !rest.is_empty() {
        let (set, body) = match rest.as_bytes()[0] {
            b'+' => (true, &rest[1..]),
            b'-' => (false, &rest[1..]),
            b',' | b'|' => {
                rest = &rest[1..];
                continue;
            }
            _ => (true, rest),
        };
        let end = body.find([',', '|', '+', '-']).unwrap_or(body.len());
        let name = &body[..end];
        let Some((bit, _)) = ct_state::NAMES.iter().find(|(_, n)| *n == name) else {
            return Err(format!(
                "{name}: unknown connection tracking state flag (known: {})",
                ct_state::NAMES.map(|(_, n)| n).join(", ")
            ));
        };
        if set {
            bits |= bit;
        } else {
            bits &= !bit;
        }
        rest = &body[end..];
    }
    Ok(bits)
}

/// `ct_state` bits as Open vSwitch prints them after `resume conntrack with ct_state=`:
/// `new|trk`.
pub fn format_ct_state(bits: u16) -> String {
    let names: Vec<&str> = ct_state::NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "0".into()
    } else {
        names.join("|")
    }
}

/// `NAME=SECS` (`ct-set-timeouts`); names are checked by the switch.
pub fn parse_timeout(s: &str) -> Result<(String, u32), String> {
    let Some((name, secs)) = s.split_once('=') else {
        return Err(format!(
            "`{s}`: expected NAME=SECONDS (e.g. tcp_established=3600)"
        ));
    };
    let secs = secs
        .parse::<u32>()
        .map_err(|_| format!("`{s}`: `{secs}` is not a number of seconds"))?;
    Ok((name.to_string(), secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn limits_as_dpctl_writes_them() {
        let l = parse_set_limits(&v(&["default=10", "zone=5,limit=3", "limit=4,zone=7"])).unwrap();
        assert_eq!(l.default, Some(10));
        assert_eq!(
            l.zones,
            [
                ZoneLimit { zone: 5, limit: 3 },
                ZoneLimit { zone: 7, limit: 4 }
            ]
        );
        assert!(
            parse_set_limits(&v(&["zone=x,limit=3"]))
                .unwrap_err()
                .contains("failed to parse field zone")
        );
        assert!(
            parse_set_limits(&v(&["zone=5"]))
                .unwrap_err()
                .contains("failed to parse zone limit")
        );
        assert!(parse_set_limits(&v(&["zone=70000,limit=1"])).is_err());
        assert!(parse_set_limits(&v(&["zone=1,limit=1,zone=2"])).is_err());
        assert_eq!(
            parse_zone_list(&v(&["zone=5,7", "zone=9"])).unwrap(),
            [5, 7, 9]
        );
        assert!(parse_zone_list(&v(&["5"])).is_err());
        assert_eq!(parse_zone("zone=5"), Ok(5));
        assert_eq!(parse_zone("6"), Ok(6));
    }

    #[test]
    fn tuples_as_dpctl_writes_them() {
        let t = parse_tuple(
            "ct_nw_src=10.0.0.1,ct_nw_dst=10.0.0.2,ct_nw_proto=17,ct_tp_src=1234,ct_tp_dst=53",
        )
        .unwrap();
        assert_eq!(t.src, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            (t.proto, t.sport, t.dport),
            (Some(17), Some(1234), Some(53))
        );
        let t =
            parse_tuple("ct_ipv6_src=fd00::1,ct_nw_proto=58,icmp_id=7,icmp_type=128,icmp_code=0")
                .unwrap();
        assert_eq!(
            (t.sport, t.icmp_type, t.icmp_code),
            (Some(7), Some(128), Some(0))
        );
        assert_eq!(parse_tuple("ct_nw_proto=0x11").unwrap().proto, Some(17));
        assert!(
            parse_tuple("ct_bogus=1")
                .unwrap_err()
                .starts_with("invalid conntrack tuple field: ct_bogus")
        );
        assert!(parse_tuple("ct_nw_src=fd00::1").is_err());
        assert!(parse_tuple("ct_tp_src=70000").is_err());
        assert!(parse_tuple("ct_nw_src=10.0.0.1,ct_ipv6_dst=fd00::1").is_err());
        assert_eq!(parse_tuple("").unwrap(), CtTuple::default());
    }

    #[test]
    fn ct_state_flags() {
        use ct_state::*;
        assert_eq!(parse_ct_state("trk,new"), Ok(TRK | NEW));
        assert_eq!(parse_ct_state("trk|est"), Ok(TRK | EST));
        assert_eq!(parse_ct_state("+trk+est-new"), Ok(TRK | EST));
        assert_eq!(parse_ct_state("+trk+rpl+dnat"), Ok(TRK | RPL | DNAT));
        assert!(
            parse_ct_state("trk,bogus")
                .unwrap_err()
                .starts_with("bogus: unknown connection tracking state flag")
        );
        assert!(parse_ct_state("").is_err());
        assert_eq!(format_ct_state(TRK | NEW), "new|trk");
        assert_eq!(format_ct_state(TRK | EST), "est|trk");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("udp=60"), Ok(("udp".into(), 60)));
        assert!(parse_timeout("udp").is_err());
        assert!(parse_timeout("udp=-1").is_err());
    }
}
