//! Printing values the way Open vSwitch 3.1 prints them (`ds_put_hex`, `ip_format_masked`,
//! `ipv6_format_masked`, `eth_format_masked`, `ofputil_format_port`, `mf_format`).

use super::PortNames;
use super::value::{FRAG_NAMES, field_max, subfield_bits};
use crate::action::{SubField, port};
use crate::field::{FieldId, Format};
use crate::flow::{ct_state, tcp_flags};
use std::fmt::Write;

/// `0` for zero, else `0x` and lowercase hex without leading zeros (C's `%#x`, OVS's
/// `ds_put_hex`).
pub(crate) fn hex0(v: u128) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

pub(crate) fn fmt_mac(v: u64) -> String {
    let b = v.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

pub(crate) fn fmt_ipv4(v: u32) -> String {
    let b = v.to_be_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// An IPv6 address as glibc's `inet_ntop()` writes it (which embeds an IPv4 address in
/// `::a.b.c.d` and `::ffff:a.b.c.d`, where Rust's `Display` differs).
pub(crate) fn fmt_ipv6(v: u128) -> String {
    let words: Vec<u16> = (0..8).map(|i| (v >> (112 - 16 * i)) as u16).collect();
    // The longest run of at least two zero words; the first one on a tie.
    let (mut best_base, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let start = i;
            while i < 8 && words[i] == 0 {
                i += 1;
            }
            if i - start > best_len && i - start >= 2 {
                best_base = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if best_base != usize::MAX && i >= best_base && i < best_base + best_len {
            if i == best_base {
                s.push(':');
            }
            i += 1;
            continue;
        }
        if i != 0 {
            s.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
            s.push_str(&fmt_ipv4(v as u32));
            return s;
        }
        let _ = write!(s, "{:x}", words[i]);
        i += 1;
    }
    if best_base != usize::MAX && best_base + best_len == 8 {
        s.push(':');
    }
    s
}

fn prefix_len(mask: u128, bits: u32) -> Option<u32> {
    let m = mask << (128 - bits);
    let ones = m.leading_ones();
    (m << ones.min(127) == 0 || ones == 128).then_some(ones.min(bits))
}

pub(crate) fn fmt_ipv4_masked(v: u32, m: u32) -> String {
    let mut s = fmt_ipv4(v);
    if m != u32::MAX {
        match prefix_len(m as u128, 32) {
            Some(n) => {
                let _ = write!(s, "/{n}");
            }
            None => {
                let _ = write!(s, "/{}", fmt_ipv4(m));
            }
        }
    }
    s
}

pub(crate) fn fmt_ipv6_masked(v: u128, m: u128) -> String {
    let mut s = fmt_ipv6(v);
    if m != u128::MAX {
        match prefix_len(m, 128) {
            Some(n) => {
                let _ = write!(s, "/{n}");
            }
            None => {
                let _ = write!(s, "/{}", fmt_ipv6(m));
            }
        }
    }
    s
}

pub(crate) fn fmt_mac_masked(v: u64, m: u64) -> String {
    if m == 0xffff_ffff_ffff {
        fmt_mac(v)
    } else {
        format!("{}/{}", fmt_mac(v), fmt_mac(m))
    }
}

/// Whether a port name must be quoted to read back as the same port: Open vSwitch quotes
/// anything but letters and digits, and names starting with a digit; we also quote names
/// that read as a reserved port (`LOCAL`, `all`, ...).
pub(crate) fn port_name_needs_quotes(name: &str) -> bool {
    name.is_empty()
        || name.as_bytes()[0].is_ascii_digit()
        || !name.bytes().all(|c| c.is_ascii_alphanumeric())
        || port::from_reserved_name(name).is_some()
}

/// `"name"` with JSON escapes.
pub(crate) fn quote(name: &str) -> String {
    let mut s = String::from("\"");
    for c in name.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A port: its name from `ports` (quoted where needed), else a reserved name, else the number.
pub(crate) fn fmt_port(p: u32, ports: &dyn PortNames) -> String {
    if let Some(name) = ports.port_name(p) {
        return if port_name_needs_quotes(&name) {
            quote(&name)
        } else {
            name
        };
    }
    match p {
        port::NONE => "ANY".to_string(),
        _ => port::reserved_name(p).map_or_else(|| p.to_string(), str::to_string),
    }
}

/// Flags set in `v`, by name, joined with `sep`; `0` when none (OVS's `format_flags`).
pub(crate) fn fmt_flags(v: u16, names: &[(u16, &str)], sep: char) -> String {
    if v == 0 {
        return "0".to_string();
    }
    let mut s = String::new();
    for (bit, name) in names {
        if v & bit != 0 {
            if !s.is_empty() {
                s.push(sep);
            }
            s.push_str(name);
        }
    }
    s
}

/// `+name-name` for the bits of `m`, lowest first; `name|name` when `m` is all of `max`
/// (OVS's `format_flags_masked`).
pub(crate) fn fmt_flags_masked(v: u16, m: u16, max: u16, names: &[(u16, &str)]) -> String {
    if m == max {
        return fmt_flags(v, names, '|');
    }
    if m == 0 {
        return "0/0".to_string();
    }
    let mut s = String::new();
    for (bit, name) in names {
        if m & bit != 0 {
            s.push(if v & bit != 0 { '+' } else { '-' });
            s.push_str(name);
        }
    }
    s
}

/// A field's value (and mask, unless it is the whole field) as `set_field` and `learn` print
/// it (OVS's `mf_format`): integers in the field's base with a hex mask, addresses with an
/// address or prefix mask, ports by name.
pub(crate) fn fmt_field_value(field: FieldId, v: u128, m: u128, ports: &dyn PortNames) -> String {
    let max = field_max(field);
    let masked = m != max;
    let hexmask = |s: String| {
        if masked {
            format!("{s}/{}", hex0(m))
        } else {
            s
        }
    };
    match field.info().format {
        Format::Decimal => hexmask(v.to_string()),
        Format::Hex => hexmask(hex0(v)),
        Format::Tos => {
            if masked {
                format!("{}/{}", v << 2, hex0(m << 2))
            } else {
                (v << 2).to_string()
            }
        }
        Format::Mac => fmt_mac_masked(v as u64, if masked { m as u64 } else { 0xffff_ffff_ffff }),
        Format::Ipv4 => fmt_ipv4_masked(v as u32, if masked { m as u32 } else { u32::MAX }),
        Format::Ipv6 => fmt_ipv6_masked(v, if masked { m } else { u128::MAX }),
        Format::Port => {
            if masked {
                format!("{v}/{}", hex0(m))
            } else {
                fmt_port(v as u32, ports)
            }
        }
        Format::Frag => FRAG_NAMES
            .iter()
            .find(|(_, fv, fm)| *fv as u128 == v && *fm as u128 == m)
            .map_or_else(
                || format!("{}/{}", hex0(v), hex0(m)),
                |(n, _, _)| n.to_string(),
            ),
        Format::CtState => fmt_flags_masked(v as u16, m as u16, ct_state::ALL, &ct_state::NAMES),
        Format::TcpFlags => fmt_flags_masked(v as u16, m as u16, tcp_flags::ALL, &tcp_flags::NAMES),
    }
}

/// `NXM_NX_REG0[]`, `NXM_NX_REG0[3]`, `NXM_NX_REG0[0..15]` (OVS's `mf_format_subfield`: the
/// NXM/OXM name where the field has one).
pub(crate) fn fmt_subfield(sf: &SubField) -> String {
    let info = sf.field.info();
    let name = info.nxm.unwrap_or(info.name);
    if sf.ofs == 0 && sf.n_bits as u32 == subfield_bits(sf.field) {
        format!("{name}[]")
    } else if sf.n_bits == 1 {
        format!("{name}[{}]", sf.ofs)
    } else {
        format!(
            "{name}[{}..{}]",
            sf.ofs,
            sf.ofs as u32 + sf.n_bits as u32 - 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_like_glibc() {
        let p = |s: &str| fmt_ipv6(s.parse::<std::net::Ipv6Addr>().unwrap().into());
        assert_eq!(p("::"), "::");
        assert_eq!(p("::1"), "::1");
        assert_eq!(p("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(p("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(p("2001:db8::1"), "2001:db8::1");
        assert_eq!(p("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(p("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(p("1:0:0:2:3:0:0:4"), "1::2:3:0:0:4");
        assert_eq!(p("fe80::"), "fe80::");
        assert_eq!(p("1:2:3:4:5:6:7:8"), "1:2:3:4:5:6:7:8");
        assert_eq!(p("1:2:3:4:5:6:0:8"), "1:2:3:4:5:6:0:8");
    }

    #[test]
    fn masks() {
        assert_eq!(fmt_ipv4_masked(0x0a00_0000, 0xff00_0000), "10.0.0.0/8");
        assert_eq!(
            fmt_ipv4_masked(0x0a00_0000, 0xff00_00ff),
            "10.0.0.0/255.0.0.255"
        );
        assert_eq!(fmt_ipv4_masked(0x0a00_0001, u32::MAX), "10.0.0.1");
        assert_eq!(fmt_ipv6_masked(0, 0), "::/0");
        assert_eq!(fmt_ipv6_masked(1, u128::MAX << 64), "::1/64");
        assert_eq!(fmt_ipv6_masked(1, 0xffff << 112 | 0xff), "::1/ffff::ff");
    }

    #[test]
    fn port_quoting() {
        assert!(!port_name_needs_quotes("pod1"));
        assert!(port_name_needs_quotes("2x"));
        assert!(port_name_needs_quotes("a_b"));
        assert!(port_name_needs_quotes("local"));
        assert_eq!(quote("q\"t"), r#""q\"t""#);
    }

    #[test]
    fn flags() {
        assert_eq!(
            fmt_flags_masked(0x20, 0x21, 0xff, &ct_state::NAMES),
            "-new+trk"
        );
        assert_eq!(
            fmt_flags_masked(0x21, 0xff, 0xff, &ct_state::NAMES),
            "new|trk"
        );
        assert_eq!(fmt_flags_masked(0, 0xff, 0xff, &ct_state::NAMES), "0");
    }
}
