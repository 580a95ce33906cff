//! Meters as `ovs-ofctl add-meter` reads them and `dump-meters` prints them.

use super::ParseError;
use super::lexer::{Delim, Lexer};
use super::value::{parse_u32, suggest};
use crate::meter::{Band, METER_MAX, MeterSpec, MeterUnit};
use std::fmt::Write;

/// `meter=N`: a meter number (1 to 0xffff0000), or `all` (`None`) when `all_ok`.
pub(crate) fn parse_meter_id(s: &str, at: usize, all_ok: bool) -> Result<Option<u32>, ParseError> {
    if all_ok && s == "all" {
        return Ok(None);
    }
    let id = parse_u32(s, at, "meter")?;
    if id == 0 || id > METER_MAX {
        return Err(ParseError::new(
            at,
            format!("meter: {s} is out of range (1 to {METER_MAX})"),
        ));
    }
    Ok(Some(id))
}

/// `meter=1,kbps|pktps[,burst][,stats],bands=type=drop,rate=R[,burst_size=B][,type=...]`.
/// Commas and spaces both separate, so what `dump-meters` prints reads back.
pub fn parse_meter(s: &str) -> Result<MeterSpec, ParseError> {
    let mut l = Lexer::new(s, 0);
    let (mut id, mut unit, mut burst, mut stats) = (None, None, false, false);
    let mut bands: Vec<(Band, usize)> = Vec::new();
    let mut in_bands = false;
    let mut band_type_seen = false;
    while let Some(t) = l.next_token() {
        let t = t?;
        // `bands=type=drop`: the lexer gives key `bands`, value `type=drop`.
        let (key, value, key_at, value_at, delim) = if t.key == "bands" && t.delim == Delim::Eq {
            in_bands = true;
            if t.value.is_empty() {
                continue;
            }
            let (k, v) = t.value.split_once('=').unwrap_or((t.value, ""));
            (k, v, t.value_at, t.value_at + k.len() + 1, Delim::Eq)
        } else {
            (t.key, t.value, t.key_at, t.value_at, t.delim)
        };
        if in_bands {
            match (key, delim) {
                ("type", Delim::Eq) => {
                    if value != "drop" {
                        return Err(ParseError::new(
                            value_at,
                            format!(
                                "band type \"{value}\" is not supported by this switch \
                                 (only type=drop)"
                            ),
                        ));
                    }
                    band_type_seen = true;
                    bands.push((
                        Band {
                            rate: 0,
                            burst_size: 0,
                        },
                        key_at,
                    ));
                }
                ("rate" | "burst_size", Delim::Eq) => {
                    let Some((b, _)) = bands.last_mut().filter(|_| band_type_seen) else {
                        return Err(ParseError::new(key_at, "band must start with type="));
                    };
                    let v = parse_u32(value, value_at, key)?;
                    if key == "rate" {
                        b.rate = v;
                    } else {
                        b.burst_size = v;
                    }
                }
                _ => {
                    return Err(ParseError::new(
                        key_at,
                        format!(
                            "unknown band keyword \"{key}\" (expected type=drop, rate=, \
                             burst_size=)"
                        ),
                    ));
                }
            }
            continue;
        }
        match (key, delim) {
            ("meter", Delim::Eq) => {
                if id.is_some() {
                    return Err(ParseError::new(key_at, "meter is given twice"));
                }
                id = parse_meter_id(value, value_at, false)?;
            }
            ("kbps" | "pktps", Delim::None) => {
                if unit.is_some() {
                    return Err(ParseError::new(
                        key_at,
                        "meter must specify either 'kbps' or 'pktps', not both",
                    ));
                }
                unit = Some(if key == "kbps" {
                    MeterUnit::Kbps
                } else {
                    MeterUnit::Pktps
                });
            }
            ("burst", Delim::None) => burst = true,
            ("stats", Delim::None) => stats = true,
            _ => {
                return Err(ParseError::new(
                    key_at,
                    format!(
                        "unknown meter keyword \"{key}\"{}",
                        suggest(key, ["meter", "kbps", "pktps", "burst", "stats", "bands"])
                    ),
                ));
            }
        }
    }
    let meter_id = id.ok_or_else(|| ParseError::new(0, "must specify meter=N"))?;
    let unit =
        unit.ok_or_else(|| ParseError::new(0, "meter must specify either 'kbps' or 'pktps'"))?;
    if bands.is_empty() {
        return Err(ParseError::new(s.len(), "must specify bands"));
    }
    for (b, at) in &bands {
        if b.rate == 0 {
            return Err(ParseError::new(
                *at,
                "band must have a rate above 0 (rate=N)",
            ));
        }
        if burst && b.burst_size == 0 {
            return Err(ParseError::new(
                *at,
                "band must have 'burst_size' when 'burst' flag is set",
            ));
        }
        if !burst && b.burst_size != 0 {
            return Err(ParseError::new(
                *at,
                "burst_size needs the meter's 'burst' flag",
            ));
        }
    }
    Ok(MeterSpec {
        meter_id,
        unit,
        burst,
        stats,
        bands: bands.into_iter().map(|(b, _)| b).collect(),
    })
}

/// A meter as `ovs-ofctl dump-meters` prints it (its bands on a second line).
pub fn display_meter(m: &MeterSpec) -> String {
    let mut s = format!(
        "meter={} {}",
        m.meter_id,
        match m.unit {
            MeterUnit::Kbps => "kbps",
            MeterUnit::Pktps => "pktps",
        }
    );
    if m.burst {
        s.push_str(" burst");
    }
    if m.stats {
        s.push_str(" stats");
    }
    s.push_str(" bands=");
    for b in &m.bands {
        let _ = write!(s, "\ntype=drop rate={}", b.rate);
        if m.burst {
            let _ = write!(s, " burst_size={}", b.burst_size);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Open vSwitch 3.1's `dump-meters` printed for the same `add-meter` lines.
    #[test]
    fn meters_print_as_open_vswitch_and_read_back() {
        for (line, ovs) in [
            (
                "meter=1,kbps,burst,bands=type=drop,rate=1000,burst_size=100",
                "meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100",
            ),
            (
                "meter=2,pktps,bands=type=drop,rate=10",
                "meter=2 pktps bands=\ntype=drop rate=10",
            ),
            (
                "meter=3,kbps,stats,bands=type=drop,rate=500,type=drop,rate=1000",
                "meter=3 kbps stats bands=\ntype=drop rate=500\ntype=drop rate=1000",
            ),
        ] {
            let m = parse_meter(line).unwrap();
            assert_eq!(display_meter(&m), ovs);
            assert_eq!(parse_meter(ovs).unwrap(), m, "{ovs:?} reads back");
        }
    }

    /// Open vSwitch's own messages for the same mistakes, where it has one.
    #[test]
    fn bad_meters_are_refused() {
        for (line, err) in [
            ("meter=4,kbps", "must specify bands"),
            (
                "meter=5,bands=type=drop,rate=10",
                "meter must specify either 'kbps' or 'pktps'",
            ),
            (
                "meter=6,kbps,burst,bands=type=drop,rate=1000",
                "band must have 'burst_size' when 'burst' flag is set",
            ),
            ("meter=0,kbps,bands=type=drop,rate=10", "out of range"),
            (
                "meter=1,kbps,bands=type=dscp_remark,rate=10,prec_level=1",
                "only type=drop",
            ),
            ("meter=1,kbps,bands=rate=10", "band must start with type="),
            ("meter=1,kbps,bands=type=drop", "rate above 0"),
            (
                "meter=1,kbps,bogus,bands=type=drop,rate=1",
                "unknown meter keyword",
            ),
        ] {
            let e = parse_meter(line).unwrap_err().to_string();
            assert!(e.contains(err), "{line}: {e}");
        }
    }
}
