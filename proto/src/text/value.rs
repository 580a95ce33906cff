//! Parsing the values of flow text: integers, Ethernet and IP addresses with masks, ports,
//! flag sets, and any field's value according to its [`Format`].

use super::{ParseError, PortNames};
use crate::action::{SubField, port};
use crate::field::{ALL_FIELDS, FieldId, Format};
use crate::flow::{ct_state, frag, tcp_flags};
use std::net::Ipv6Addr;

/// All-ones for a width of `bits` bits.
pub(crate) fn ones(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The bits a field may hold: all of its slot, except where Open vSwitch defines fewer flags.
pub(crate) fn field_max(field: FieldId) -> u128 {
    match field {
        FieldId::CtState => ct_state::ALL as u128,
        FieldId::TcpFlags => tcp_flags::ALL as u128,
        _ => ones(field.bits() as u32),
    }
}

/// An unsigned integer in decimal or `0x` hexadecimal.
pub(crate) fn parse_int(s: &str, at: usize, what: &str) -> Result<u128, ParseError> {
    let bad = || {
        if s.is_empty() {
            ParseError::new(at, format!("{what}: expected a number, got nothing"))
        } else {
            ParseError::new(
                at,
                format!("{what}: expected a number (decimal or 0x hex), got \"{s}\""),
            )
        }
    };
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u128::from_str_radix(digits, radix)
        .map_err(|_| ParseError::new(at, format!("{what}: {s} is too large")))
}

/// An unsigned integer no larger than `max`.
pub(crate) fn parse_uint(s: &str, at: usize, what: &str, max: u128) -> Result<u128, ParseError> {
    let v = parse_int(s, at, what)?;
    if v > max {
        return Err(ParseError::new(
            at,
            format!("{what}: {s} is out of range (0 to {max})"),
        ));
    }
    Ok(v)
}

pub(crate) fn parse_u8(s: &str, at: usize, what: &str) -> Result<u8, ParseError> {
    Ok(parse_uint(s, at, what, u8::MAX as u128)? as u8)
}

pub(crate) fn parse_u16(s: &str, at: usize, what: &str) -> Result<u16, ParseError> {
    Ok(parse_uint(s, at, what, u16::MAX as u128)? as u16)
}

pub(crate) fn parse_u32(s: &str, at: usize, what: &str) -> Result<u32, ParseError> {
    Ok(parse_uint(s, at, what, u32::MAX as u128)? as u32)
}

pub(crate) fn parse_u64(s: &str, at: usize, what: &str) -> Result<u64, ParseError> {
    Ok(parse_uint(s, at, what, u64::MAX as u128)? as u64)
}

/// A table number (0 to 254; 255 means "all tables" in OpenFlow and is not a table).
pub(crate) fn parse_table(s: &str, at: usize, what: &str) -> Result<u8, ParseError> {
    let t = parse_int(s, at, what)?;
    if t > 254 {
        return Err(ParseError::new(
            at,
            format!("{what}: table {s} is out of range (0 to 254)"),
        ));
    }
    Ok(t as u8)
}

/// `aa:bb:cc:dd:ee:ff` (one or two hex digits per octet).
pub(crate) fn parse_mac(s: &str) -> Option<u64> {
    let mut v = 0u64;
    let mut n = 0;
    for part in s.split(':') {
        if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        v = (v << 8) | u64::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(v)
}

/// `a.b.c.d`.
pub(crate) fn parse_ipv4(s: &str) -> Option<u32> {
    let mut v = 0u32;
    let mut n = 0;
    for part in s.split('.') {
        if part.is_empty() || part.len() > 3 || !part.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let o: u32 = part.parse().ok()?;
        if o > 255 {
            return None;
        }
        v = (v << 8) | o;
        n += 1;
    }
    (n == 4).then_some(v)
}

pub(crate) fn parse_ipv6(s: &str) -> Option<u128> {
    s.parse::<Ipv6Addr>().ok().map(u128::from)
}

/// A double-quoted string with JSON-style escapes, as Open vSwitch writes port names.
pub(crate) fn unquote(s: &str, at: usize) -> Result<String, ParseError> {
    let bad = |i: usize, m: &str| ParseError::new(at + i, m.to_string());
    let inner = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .filter(|_| s.len() >= 2)
        .ok_or_else(|| bad(0, "expected a double-quoted name"))?;
    let mut out = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            return Err(bad(i + 1, "unexpected '\"' inside a quoted name"));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(bad(i + 1, "incomplete escape in quoted name"));
        };
        out.push(match e {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex: String = (0..4)
                    .filter_map(|_| chars.next().map(|(_, c)| c))
                    .collect();
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| bad(i + 1, "bad \\u escape in quoted name"))?
            }
            _ => return Err(bad(i + 1, "unknown escape in quoted name")),
        });
    }
    Ok(out)
}

/// Whether a port number may be written: a real port (up to [`port::MAX`]) or a reserved one.
pub(crate) fn port_is_valid(p: u32) -> bool {
    p <= port::MAX || (port::IN_PORT..=port::NONE).contains(&p)
}

/// A port: a number, a reserved name (`LOCAL`, case-insensitive), a name known to `ports`,
/// or a double-quoted name (always looked up in `ports`).
pub(crate) fn parse_port(
    s: &str,
    at: usize,
    what: &str,
    ports: &dyn PortNames,
) -> Result<u32, ParseError> {
    if s.starts_with('"') {
        let name = unquote(s, at)?;
        return ports
            .port_no(&name)
            .ok_or_else(|| ParseError::new(at, format!("{what}: unknown port {s}")));
    }
    if s.is_empty() {
        return Err(ParseError::new(at, format!("{what}: expected a port")));
    }
    if s.as_bytes()[0].is_ascii_digit() {
        let p = parse_int(s, at, what)?;
        if p > u32::MAX as u128 || !port_is_valid(p as u32) {
            return Err(ParseError::new(
                at,
                format!(
                    "{what}: port {s} is out of range (real ports are 0 to {}; reserved ports are \
                     written by name, e.g. LOCAL)",
                    port::MAX
                ),
            ));
        }
        return Ok(p as u32);
    }
    if let Some(p) = port::from_reserved_name(s) {
        return Ok(p);
    }
    ports
        .port_no(s)
        .ok_or_else(|| ParseError::new(at, format!("{what}: unknown port \"{s}\"")))
}

/// `+name-name` (bits to match 1 or 0), `name|name` (exactly these bits), or `V[/M]`.
pub(crate) fn parse_flags(
    s: &str,
    at: usize,
    what: &str,
    names: &[(u16, &str)],
    max: u16,
) -> Result<(u128, u128), ParseError> {
    let known = names
        .iter()
        .filter(|(_, n)| !n.starts_with('['))
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let lookup = |name: &str, i: usize| -> Result<u16, ParseError> {
        names
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(b, _)| *b)
            .ok_or_else(|| {
                ParseError::new(
                    at + i,
                    format!("{what}: unknown flag \"{name}\" (known flags: {known})"),
                )
            })
    };
    if s.is_empty() {
        return Err(ParseError::new(
            at,
            format!("{what}: expected flags, got nothing"),
        ));
    }
    if s.as_bytes()[0].is_ascii_digit() {
        let (v, m) = match s.split_once('/') {
            Some((v, m)) => (
                parse_uint(v, at, what, max as u128)?,
                parse_uint(m, at + v.len() + 1, what, max as u128)?,
            ),
            None => (parse_uint(s, at, what, max as u128)?, max as u128),
        };
        return Ok((v & m, m));
    }
    let (mut value, mut mask) = (0u16, 0u16);
    if s.starts_with('+') || s.starts_with('-') {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let sign = b[i];
            if sign != b'+' && sign != b'-' {
                return Err(ParseError::new(
                    at + i,
                    format!("{what}: expected '+' or '-' before each flag name"),
                ));
            }
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end] != b'+' && b[end] != b'-' {
                end += 1;
            }
            let bit = lookup(&s[start..end], start)?;
            if mask & bit != 0 {
                return Err(ParseError::new(
                    at + start,
                    format!("{what}: flag \"{}\" given twice", &s[start..end]),
                ));
            }
            mask |= bit;
            if sign == b'+' {
                value |= bit;
            }
            i = end;
        }
        return Ok((value as u128, mask as u128));
    }
    let mut i = 0;
    for name in s.split('|') {
        let bit = lookup(name, i)?;
        if value & bit != 0 {
            return Err(ParseError::new(
                at + i,
                format!("{what}: flag \"{name}\" given twice"),
            ));
        }
        value |= bit;
        i += name.len() + 1;
    }
    Ok((value as u128, max as u128))
}

/// `ip_frag` values as Open vSwitch spells them: (name, value, mask).
pub(crate) const FRAG_NAMES: [(&str, u8, u8); 5] = [
    ("no", 0, frag::MASK),
    ("first", frag::ANY, frag::MASK),
    ("later", frag::ANY | frag::LATER, frag::MASK),
    ("yes", frag::ANY, frag::ANY),
    ("not_later", 0, frag::LATER),
];

fn parse_masked<T>(
    s: &str,
    at: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
    mask: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<(T, Option<T>), ParseError> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let value = parse(v)
        .ok_or_else(|| ParseError::new(at, format!("{what}: expected {expected}, got \"{v}\"")))?;
    let mask = match m {
        Some(m) => Some(mask(m).ok_or_else(|| {
            ParseError::new(
                at + v.len() + 1,
                format!("{what}: bad mask \"{m}\" (expected a prefix length or {expected})"),
            )
        })?),
        None => None,
    };
    Ok((value, mask))
}

/// A value of `field` as flow text writes it, optionally `/mask`, as (value, mask) in the
/// field's own bits (so `nw_tos=40` gives DSCP 10). An exact value has mask
/// [`field_max`]. The value is returned already masked.
pub(crate) fn parse_field_value(
    field: FieldId,
    s: &str,
    at: usize,
    ports: &dyn PortNames,
) -> Result<(u128, u128), ParseError> {
    let info = field.info();
    let what = info.name;
    let max = field_max(field);
    let (v, m) = match info.format {
        Format::Decimal | Format::Hex => {
            let (v, m) = match s.split_once('/') {
                Some((v, m)) => (v, Some((m, at + v.len() + 1))),
                None => (s, None),
            };
            let too_big = |x: &str, a: usize| {
                ParseError::new(
                    a,
                    format!(
                        "{what}: {x} does not fit in the field's {} bits",
                        field.bits()
                    ),
                )
            };
            let value = parse_int(v, at, what)?;
            if value > max {
                return Err(too_big(v, at));
            }
            let mask = match m {
                Some((m, ma)) => {
                    let mask = parse_int(m, ma, what)?;
                    if mask > max {
                        return Err(too_big(m, ma));
                    }
                    mask
                }
                None => max,
            };
            (value, mask)
        }
        Format::Tos => {
            let (v, m) = match s.split_once('/') {
                Some((v, m)) => (v, Some((m, at + v.len() + 1))),
                None => (s, None),
            };
            let tos = |x: &str, a: usize| -> Result<u128, ParseError> {
                let t = parse_uint(x, a, what, 255)?;
                if t & 3 != 0 {
                    return Err(ParseError::new(
                        a,
                        format!(
                            "{what}: {x} has ECN bits set; {what} is the TOS byte with the two \
                             ECN bits zero (a multiple of 4); use nw_ecn for ECN"
                        ),
                    ));
                }
                Ok(t >> 2)
            };
            let value = tos(v, at)?;
            let mask = match m {
                Some((m, ma)) => tos(m, ma)?,
                None => max,
            };
            (value, mask)
        }
        Format::Mac => {
            let (v, m) = parse_masked(s, at, what, parse_mac, parse_mac, "an Ethernet address")?;
            (v as u128, m.map_or(max, |m| m as u128))
        }
        Format::Ipv4 => {
            let (v, m) = parse_masked(
                s,
                at,
                what,
                parse_ipv4,
                |m| match m.parse::<u32>() {
                    Ok(n) if !m.starts_with('+') && n <= 32 => {
                        Some((ones(32) as u32).checked_shl(32 - n).unwrap_or(0))
                    }
                    _ => parse_ipv4(m),
                },
                "an IPv4 address",
            )?;
            (v as u128, m.map_or(max, |m| m as u128))
        }
        Format::Ipv6 => {
            if s.starts_with('[') {
                return Err(ParseError::new(
                    at,
                    format!("{what}: write the IPv6 address without brackets"),
                ));
            }
            let (v, m) = parse_masked(
                s,
                at,
                what,
                parse_ipv6,
                |m| match m.parse::<u32>() {
                    Ok(n) if !m.starts_with('+') && n <= 128 => {
                        Some(if n == 0 { 0 } else { u128::MAX << (128 - n) })
                    }
                    _ => parse_ipv6(m),
                },
                "an IPv6 address",
            )?;
            (v, m.unwrap_or(max))
        }
        Format::Port => (parse_port(s, at, what, ports)? as u128, max),
        Format::Frag => {
            let (_, v, m) = FRAG_NAMES.iter().find(|(n, _, _)| *n == s).ok_or_else(|| {
                ParseError::new(
                    at,
                    format!(
                        "{what}: unknown fragment type \"{s}\" (expected no, yes, first, later or \
                         not_later)"
                    ),
                )
            })?;
            (*v as u128, *m as u128)
        }
        Format::CtState => parse_flags(s, at, what, &ct_state::NAMES, ct_state::ALL)?,
        Format::TcpFlags => parse_flags(s, at, what, &tcp_flags::NAMES, tcp_flags::ALL)?,
    };
    Ok((v & m, m))
}

/// A field's width in subfield syntax. `in_port` is 16 bits there, as Open vSwitch's
/// `NXM_OF_IN_PORT` (so `move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]` works), though its slot
/// has 32.
pub(crate) fn subfield_bits(field: FieldId) -> u32 {
    match field {
        FieldId::InPort => 16,
        f => f.bits() as u32,
    }
}

/// `sf` as a whole field in subfield syntax (`FIELD[]`).
pub(crate) fn subfield_whole(field: FieldId) -> SubField {
    SubField {
        field,
        ofs: 0,
        n_bits: subfield_bits(field) as u8,
    }
}

/// Every name a field may be written with (preferred, aliases, NXM/OXM).
pub(crate) fn field_names() -> impl Iterator<Item = &'static str> {
    ALL_FIELDS.iter().flat_map(|f| {
        let i = f.info();
        std::iter::once(i.name)
            .chain(i.aliases.iter().copied())
            .chain(i.nxm)
    })
}

/// `FIELD`, `FIELD[]`, `FIELD[N]` or `FIELD[A..B]`, where FIELD is any name of a field.
pub(crate) fn parse_subfield_at(s: &str, at: usize) -> Result<SubField, ParseError> {
    let (name, range) = match s.find('[') {
        Some(i) => (&s[..i], Some((&s[i..], at + i))),
        None => (s, None),
    };
    let field = FieldId::from_name(name).ok_or_else(|| {
        if name.is_empty() {
            ParseError::new(at, "expected a field name".to_string())
        } else {
            ParseError::new(
                at,
                format!("unknown field \"{name}\"{}", suggest(name, field_names())),
            )
        }
    })?;
    let bits = subfield_bits(field);
    let Some((r, ra)) = range else {
        return Ok(subfield_whole(field));
    };
    let inner = r
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| {
            ParseError::new(
                ra,
                format!("{name}: expected [], [BIT] or [FIRST..LAST] after the field name"),
            )
        })?;
    if inner.is_empty() {
        return Ok(subfield_whole(field));
    }
    let bit = |x: &str, a: usize| -> Result<u32, ParseError> {
        if x.is_empty() || !x.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::new(
                a,
                format!("{name}: expected a bit number, got \"{x}\""),
            ));
        }
        let v: u32 = x.parse().unwrap_or(u32::MAX);
        if v >= bits {
            return Err(ParseError::new(
                a,
                format!(
                    "{name}: bit {x} is beyond the field's {bits} bits (0..{})",
                    bits - 1
                ),
            ));
        }
        Ok(v)
    };
    let (first, last) = match inner.split_once("..") {
        Some((a, b)) => (bit(a, ra + 1)?, bit(b, ra + 1 + a.len() + 2)?),
        None => {
            let a = bit(inner, ra + 1)?;
            (a, a)
        }
    };
    if last < first {
        return Err(ParseError::new(
            ra + 1,
            format!("{name}: range [{inner}] ends before it starts"),
        ));
    }
    let n_bits = last - first + 1;
    Ok(SubField {
        field,
        ofs: first as u8,
        n_bits: n_bits.min(255) as u8,
    })
}

/// Edit distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `; did you mean "x"?` when one of `candidates` is close to `word`, else nothing.
pub(crate) fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let word_l = word.to_ascii_lowercase();
    let best = candidates
        .into_iter()
        .filter(|c| c.len().abs_diff(word.len()) <= 2)
        .map(|c| (distance(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= 2 && *d < word.len())
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!("; did you mean \"{c}\"?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::NoPortNames;

    #[test]
    fn integers() {
        assert_eq!(parse_int("0x1f", 0, "x").unwrap(), 31);
        assert_eq!(parse_int("010", 0, "x").unwrap(), 10);
        assert!(parse_int("0x", 0, "x").is_err());
        assert!(parse_int("-1", 0, "x").is_err());
        assert!(parse_u8("256", 0, "x").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_mac("0:1:22:33:44:ff"), Some(0x0001_2233_44ff));
        assert_eq!(parse_mac("00:11:22:33:44"), None);
        assert_eq!(parse_ipv4("10.0.0.1"), Some(0x0a00_0001));
        assert_eq!(parse_ipv4("10.0.0.256"), None);
        assert_eq!(parse_ipv4("10.0.0"), None);
    }

    #[test]
    fn masks() {
        let p = |f, s| parse_field_value(f, s, 0, &NoPortNames);
        assert_eq!(
            p(FieldId::IpSrc, "10.1.2.3/8").unwrap(),
            (0x0a00_0000, 0xff00_0000)
        );
        assert_eq!(p(FieldId::IpSrc, "10.1.2.3/0").unwrap(), (0, 0));
        assert_eq!(
            p(FieldId::IpSrc, "10.1.2.3/255.0.0.255").unwrap(),
            (0x0a00_0003, 0xff00_00ff)
        );
        assert_eq!(p(FieldId::Ipv6Src, "::1/0").unwrap(), (0, 0));
        assert_eq!(p(FieldId::NwTos, "40").unwrap(), (10, 0x3f));
        assert!(p(FieldId::NwTos, "41").is_err());
        assert_eq!(p(FieldId::IpFrag, "later").unwrap(), (3, 3));
        assert_eq!(p(FieldId::CtState, "+trk-new").unwrap(), (0x20, 0x21));
        assert_eq!(p(FieldId::CtState, "new|trk").unwrap(), (0x21, 0xff));
        assert_eq!(p(FieldId::TcpFlags, "0x12/0xfff").unwrap(), (0x12, 0xfff));
        assert!(p(FieldId::CtState, "+trk+trk").is_err());
        assert!(p(FieldId::CtState, "+bogus").is_err());
    }

    #[test]
    fn quoted() {
        assert_eq!(unquote(r#""a\"b\\c""#, 0).unwrap(), "a\"b\\c");
        assert_eq!(unquote(r#""\u0041""#, 0).unwrap(), "A");
        assert!(unquote(r#""abc"#, 0).is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("tp_dsts", ["tp_dst", "tp_src"]),
            "; did you mean \"tp_dst\"?"
        );
        assert_eq!(suggest("zzz", ["tp_dst"]), "");
    }
}
