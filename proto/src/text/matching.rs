//! The match part of flow text: `tcp,in_port=1,nw_dst=10.0.0.0/8,tp_dst=80`, parsed into a
//! [`Match`] (refusing fields whose prerequisites are missing, where Open vSwitch would drop
//! them silently) and printed in Open vSwitch's `match_format()` order.

use super::format::{
    fmt_flags, fmt_flags_masked, fmt_ipv4_masked, fmt_ipv6_masked, fmt_mac_masked, fmt_port, hex0,
};
use super::lexer::Token;
use super::value::parse_subfield_at;
use super::value::{field_max, parse_field_value, parse_int, suggest};
use super::{ParseError, PortNames};
use crate::field::{ALL_FIELDS, FieldId, Prereq, ethertype, ipproto};
use crate::flow::{Flow, ct_state, frag, slot, tcp_flags};
use crate::flowmod::DEFAULT_PRIORITY;
use crate::matching::Match;
use std::fmt::Write;

/// Protocol shorthands: name, dl_type, nw_proto.
pub(crate) const PROTOCOLS: [(&str, u16, Option<u8>); 16] = [
    ("ip", ethertype::IPV4, None),
    ("ipv4", ethertype::IPV4, None),
    ("ip4", ethertype::IPV4, None),
    ("ipv6", ethertype::IPV6, None),
    ("ip6", ethertype::IPV6, None),
    ("icmp", ethertype::IPV4, Some(ipproto::ICMP)),
    ("icmp6", ethertype::IPV6, Some(ipproto::ICMPV6)),
    ("tcp", ethertype::IPV4, Some(ipproto::TCP)),
    ("tcp6", ethertype::IPV6, Some(ipproto::TCP)),
    ("udp", ethertype::IPV4, Some(ipproto::UDP)),
    ("udp6", ethertype::IPV6, Some(ipproto::UDP)),
    ("sctp", ethertype::IPV4, Some(ipproto::SCTP)),
    ("sctp6", ethertype::IPV6, Some(ipproto::SCTP)),
    ("arp", ethertype::ARP, None),
    ("rarp", ethertype::RARP, None),
    // Open vSwitch's packet_type=ethernet, which is all this switch handles.
    ("eth", 0, None),
];

/// Every word the match syntax knows, for "did you mean" hints.
pub(crate) fn match_words() -> impl Iterator<Item = &'static str> {
    PROTOCOLS
        .iter()
        .map(|p| p.0)
        .chain(ALL_FIELDS.iter().flat_map(|f| {
            let i = f.info();
            std::iter::once(i.name).chain(i.aliases.iter().copied())
        }))
}

/// One thing written in the match: which bits it set, for conflict and prerequisite errors.
#[derive(Debug)]
struct Given {
    /// The field, or `None` for a protocol shorthand.
    field: Option<FieldId>,
    /// The name as written.
    name: String,
    at: usize,
    mask: Flow,
}

/// Builds a [`Match`] from tokens, remembering where each field came from.
#[derive(Debug, Default)]
pub(crate) struct MatchBuilder {
    m: Match,
    given: Vec<Given>,
}

impl MatchBuilder {
    /// Whether the token is a match field or shorthand this builder understands.
    pub fn knows(key: &str) -> bool {
        PROTOCOLS.iter().any(|p| p.0 == key)
            || FieldId::from_name(key).is_some()
            || key.contains('[')
    }

    /// A field by the name a match writes it with: its name or an alias. NXM/OXM names are
    /// for subfields (`NXM_NX_REG0[]=5`), as in Open vSwitch.
    fn field(key: &str, at: usize) -> Result<FieldId, ParseError> {
        let by_name = ALL_FIELDS.iter().copied().find(|f| {
            let i = f.info();
            i.name == key || i.aliases.contains(&key)
        });
        if let Some(f) = by_name {
            return Ok(f);
        }
        if let Some(f) = FieldId::from_name(key) {
            return Err(ParseError::new(
                at,
                format!(
                    "{key} is an NXM name, which a match writes as a subfield: {key}[]=VALUE \
                     (or {}=VALUE)",
                    f.info().name
                ),
            ));
        }
        Err(ParseError::new(
            at,
            format!("unknown field \"{key}\"{}", suggest(key, match_words())),
        ))
    }

    /// Add one token (a shorthand, `field=value` or `subfield[..]=value`).
    pub fn add(&mut self, t: &Token, ports: &dyn PortNames) -> Result<(), ParseError> {
        if let Some((_, dl_type, proto)) = PROTOCOLS.iter().find(|p| p.0 == t.key) {
            if t.has_value() {
                return Err(ParseError::new(
                    t.key_at,
                    format!("`{}` is a protocol shorthand and takes no value", t.key),
                ));
            }
            let mut want = Match::CATCHALL;
            if *dl_type != 0 {
                want.set(FieldId::EthType, *dl_type as u128);
            }
            if let Some(p) = proto {
                want.set(FieldId::IpProto, *p as u128);
            }
            return self.merge(None, t.key, t.key_at, &want);
        }
        if !t.has_value() || t.value.is_empty() {
            return Err(ParseError::new(
                t.key_at,
                format!("{} needs a value: {}=VALUE", t.key, t.key),
            ));
        }
        if t.key.contains('[') {
            let sf = parse_subfield_at(t.key, t.key_at)?;
            let max = field_max(sf.field) >> sf.ofs & super::value::ones(sf.n_bits as u32);
            let v = parse_int(t.value, t.value_at, t.key)?;
            if v > max {
                return Err(ParseError::new(
                    t.value_at,
                    format!("{}: {} does not fit in {} bits", t.key, t.value, sf.n_bits),
                ));
            }
            let mut want = Match::CATCHALL;
            want.set_masked(sf.field, v << sf.ofs, sf.mask_in_field());
            return self.merge(Some(sf.field), t.key, t.key_at, &want);
        }
        let field = Self::field(t.key, t.key_at)?;
        let info = field.info();
        let mut want = Match::CATCHALL;
        match field {
            FieldId::DlVlan => {
                let v = parse_int(t.value, t.value_at, t.key)?;
                if v == 0xffff {
                    // OpenFlow 1.0's "no VLAN tag".
                    want.set_masked(FieldId::VlanTci, 0, 0x1fff);
                } else if v <= 0xfff {
                    want.set_masked(FieldId::VlanTci, 0x1000 | v, 0x1fff);
                } else {
                    return Err(ParseError::new(
                        t.value_at,
                        format!(
                            "dl_vlan: {} is not a VLAN ID (0 to 4095, or 0xffff for no tag)",
                            t.value
                        ),
                    ));
                }
            }
            FieldId::VlanPcp => {
                let v = parse_int(t.value, t.value_at, t.key)?;
                if v > 7 {
                    return Err(ParseError::new(
                        t.value_at,
                        format!("{}: {} is not a VLAN priority (0 to 7)", t.key, t.value),
                    ));
                }
                want.set_masked(FieldId::VlanTci, 0x1000 | v << 13, 0xf000);
            }
            _ => {
                let slash = t.value.find('/');
                if let (Some(i), false) = (slash, info.maskable) {
                    return Err(ParseError::new(
                        t.value_at + i,
                        format!("{} cannot be matched with a mask", t.key),
                    ));
                }
                let (v, m) = parse_field_value(field, t.value, t.value_at, ports)?;
                if m != field_max(field) && !info.maskable {
                    return Err(ParseError::new(
                        t.value_at,
                        format!("{} cannot be matched with a mask", t.key),
                    ));
                }
                want.set_masked(field, v, m);
            }
        }
        self.merge(Some(field), t.key, t.key_at, &want)
    }

    fn merge(
        &mut self,
        field: Option<FieldId>,
        name: &str,
        at: usize,
        want: &Match,
    ) -> Result<(), ParseError> {
        if let Some(f) = field
            && let Some(prev) = self.given.iter().find(|g| g.field == Some(f))
        {
            return Err(ParseError::new(
                at,
                format!("{name} is given twice (first at column {})", prev.at + 1),
            ));
        }
        let overlap = self.m.mask.and(&want.mask);
        if !self.m.flow.equal_in(&want.flow, &overlap) {
            let mut clash = Flow::ZERO;
            for i in 0..clash.w.len() {
                clash.w[i] = (self.m.flow.w[i] ^ want.flow.w[i]) & overlap.w[i];
            }
            let prev = self
                .given
                .iter()
                .find(|g| !g.mask.and(&clash).is_zero())
                .map_or_else(String::new, |g| {
                    format!(" `{}` (column {})", g.name, g.at + 1)
                });
            return Err(ParseError::new(
                at,
                format!("{name} contradicts{prev}, which set the same bits to another value"),
            ));
        }
        self.m.flow.or_assign(&want.flow);
        self.m.mask.or_assign(&want.mask);
        self.given.push(Given {
            field,
            name: name.to_string(),
            at,
            mask: want.mask,
        });
        Ok(())
    }

    /// The match, once every field's prerequisites are known to hold.
    pub fn finish(self) -> Result<Match, ParseError> {
        let m = self.m;
        for g in &self.given {
            let Some(f) = g.field else { continue };
            let (ok, describe) = match f {
                // Open vSwitch reads nw_src, nw_dst and nw_proto as the ARP fields in an ARP
                // match.
                FieldId::IpSrc | FieldId::IpDst => (
                    Prereq::Ipv4OrArp.satisfied_by(&m.flow, &m.mask),
                    Prereq::Ipv4OrArp.describe(),
                ),
                FieldId::IpProto => (
                    Prereq::Ip.satisfied_by(&m.flow, &m.mask)
                        || Prereq::Arp.satisfied_by(&m.flow, &m.mask),
                    "`ip`, `ipv6` or `arp`",
                ),
                FieldId::CtNwSrc | FieldId::CtNwDst => (
                    Prereq::CtIpv4.satisfied_by(&m.flow, &m.mask),
                    Prereq::CtIpv4.describe(),
                ),
                FieldId::CtTpSrc | FieldId::CtTpDst => (
                    Prereq::CtL4.satisfied_by(&m.flow, &m.mask),
                    Prereq::CtL4.describe(),
                ),
                _ => {
                    let p = f.info().prereq;
                    (p.satisfied_by(&m.flow, &m.mask), p.describe())
                }
            };
            if !ok {
                return Err(ParseError::new(
                    g.at,
                    format!(
                        "{} requires {describe} in the match (Open vSwitch would silently ignore \
                         it and match more packets)",
                        g.name
                    ),
                ));
            }
        }
        Ok(m)
    }
}

/// Pieces of `name=value,` output; the trailing comma is removed at the end.
struct Out<'a> {
    s: &'a mut String,
}

impl Out<'_> {
    fn kv(&mut self, name: &str, v: impl std::fmt::Display) {
        let _ = write!(self.s, "{name}={v},");
    }
    fn word(&mut self, w: &str) {
        self.s.push_str(w);
        self.s.push(',');
    }
    /// OVS's `format_uint32_masked` / `format_be64_masked`: `%#x[/%#x]`.
    fn hex_masked(&mut self, name: &str, v: u128, m: u128, full: u128) {
        if m != 0 {
            if m == full {
                self.kv(name, hex0(v));
            } else {
                self.kv(name, format_args!("{}/{}", hex0(v), hex0(m)));
            }
        }
    }
    /// OVS's `format_be16_masked`: decimal, or `0x%x/0x%x`.
    fn u16_masked(&mut self, name: &str, v: u16, m: u16, full: u16) {
        if m != 0 {
            if m == full {
                self.kv(name, v);
            } else {
                self.kv(name, format_args!("{v:#x}/{m:#x}"));
            }
        }
    }
    fn ip(&mut self, name: &str, v: u32, m: u32) {
        if m != 0 {
            self.kv(name, fmt_ipv4_masked(v, m));
        }
    }
    fn ipv6(&mut self, name: &str, v: u128, m: u128) {
        if m != 0 {
            self.kv(name, fmt_ipv6_masked(v, m));
        }
    }
    fn mac(&mut self, name: &str, v: u64, m: u64) {
        if m != 0 {
            self.kv(name, fmt_mac_masked(v, m));
        }
    }
}

/// Append `m` as Open vSwitch's `match_format()` writes it, with `priority=N,` first when it
/// is given and not the default.
pub(crate) fn write_match(s: &mut String, m: &Match, priority: Option<u16>, ports: &dyn PortNames) {
    let start = s.len();
    let (f, w) = (&m.flow, &m.mask);
    let mut o = Out { s };
    if let Some(p) = priority
        && p != DEFAULT_PRIORITY
    {
        o.kv("priority", p);
    }
    o.hex_masked(
        "recirc_id",
        f.recirc_id() as u128,
        w.recirc_id() as u128,
        u32::MAX as u128,
    );
    if w.conj_id() != 0 {
        o.kv("conj_id", f.conj_id());
    }
    if w.ct_state() != 0 {
        let (v, m) = (f.ct_state(), w.ct_state());
        if m == ct_state::ALL {
            o.kv("ct_state", fmt_flags(v, &ct_state::NAMES, '|'));
        } else {
            o.kv(
                "ct_state",
                fmt_flags_masked(v, m, ct_state::ALL, &ct_state::NAMES),
            );
        }
    }
    o.u16_masked("ct_zone", f.ct_zone(), w.ct_zone(), u16::MAX);
    o.hex_masked(
        "ct_mark",
        f.ct_mark() as u128,
        w.ct_mark() as u128,
        u32::MAX as u128,
    );
    o.hex_masked("ct_label", f.ct_label(), w.ct_label(), u128::MAX);
    o.ip("ct_nw_src", f.ct_nw_src(), w.ct_nw_src());
    o.ip("ct_nw_dst", f.ct_nw_dst(), w.ct_nw_dst());
    if w.ct_nw_proto() != 0 {
        o.kv("ct_nw_proto", f.ct_nw_proto());
    }
    o.u16_masked("ct_tp_src", f.ct_tp_src(), w.ct_tp_src(), u16::MAX);
    o.u16_masked("ct_tp_dst", f.ct_tp_dst(), w.ct_tp_dst(), u16::MAX);

    let dl_type = f.dl_type();
    let proto = f.nw_proto();
    let proto_known = w.nw_proto() != 0;
    let mut skip_type = false;
    let mut skip_proto = false;
    if w.dl_type() != 0 {
        skip_type = true;
        let shorthand = match dl_type {
            ethertype::IPV4 | ethertype::IPV6 => {
                let v6 = dl_type == ethertype::IPV6;
                let named = match (proto_known, proto) {
                    (false, _) => None,
                    (true, ipproto::ICMP) if !v6 => Some("icmp"),
                    (true, ipproto::ICMPV6) if v6 => Some("icmp6"),
                    (true, ipproto::TCP) => Some(if v6 { "tcp6" } else { "tcp" }),
                    (true, ipproto::UDP) => Some(if v6 { "udp6" } else { "udp" }),
                    (true, ipproto::SCTP) => Some(if v6 { "sctp6" } else { "sctp" }),
                    _ => None,
                };
                skip_proto = named.is_some();
                Some(named.unwrap_or(if v6 { "ipv6" } else { "ip" }))
            }
            ethertype::ARP => Some("arp"),
            ethertype::RARP => Some("rarp"),
            _ => None,
        };
        match shorthand {
            Some(w) => o.word(w),
            None => skip_type = false,
        }
    }
    for i in 0..16u8 {
        let r = slot::reg(i);
        o.hex_masked(&format!("reg{i}"), f.get(r), w.get(r), u32::MAX as u128);
    }
    o.hex_masked(
        "tun_id",
        f.tun_id() as u128,
        w.tun_id() as u128,
        u64::MAX as u128,
    );
    o.ip("tun_src", f.tun_src(), w.tun_src());
    o.ip("tun_dst", f.tun_dst(), w.tun_dst());
    o.hex_masked(
        "metadata",
        f.metadata() as u128,
        w.metadata() as u128,
        u64::MAX as u128,
    );
    if w.in_port() != 0 {
        o.kv("in_port", fmt_port(f.in_port(), ports));
    }
    let (tci, tci_m) = (f.vlan_tci(), w.vlan_tci());
    if tci_m != 0 {
        let vid_m = tci_m & 0x0fff;
        let pcp_m = tci_m & 0xe000;
        if tci_m & 0x1000 != 0
            && tci & 0x1000 != 0
            && (vid_m == 0 || vid_m == 0x0fff)
            && (pcp_m == 0 || pcp_m == 0xe000)
            && (vid_m != 0 || pcp_m != 0)
        {
            if vid_m != 0 {
                o.kv("dl_vlan", tci & 0x0fff);
            }
            if pcp_m != 0 {
                o.kv("dl_vlan_pcp", tci >> 13);
            }
        } else if tci_m == 0xffff {
            o.kv("vlan_tci", format_args!("{tci:#06x}"));
        } else {
            o.kv("vlan_tci", format_args!("{tci:#06x}/{tci_m:#06x}"));
        }
    }
    o.mac(
        "dl_src",
        f.get(slot::DL_SRC) as u64,
        w.get(slot::DL_SRC) as u64,
    );
    o.mac(
        "dl_dst",
        f.get(slot::DL_DST) as u64,
        w.get(slot::DL_DST) as u64,
    );
    if !skip_type && w.dl_type() != 0 {
        o.kv("dl_type", format_args!("{dl_type:#06x}"));
    }
    let arp = dl_type == ethertype::ARP || dl_type == ethertype::RARP;
    if dl_type == ethertype::IPV6 {
        o.ipv6("ipv6_src", f.ipv6_src(), w.ipv6_src());
        o.ipv6("ipv6_dst", f.ipv6_dst(), w.ipv6_dst());
        let (l, lm) = (f.ipv6_label(), w.ipv6_label());
        if lm == 0xfffff {
            o.kv("ipv6_label", format_args!("{l:#07x}"));
        } else if lm != 0 {
            o.kv("ipv6_label", format_args!("{l:#07x}/{lm:#07x}"));
        }
    } else if arp {
        o.ip("arp_spa", f.nw_src(), w.nw_src());
        o.ip("arp_tpa", f.nw_dst(), w.nw_dst());
    } else {
        o.ip("nw_src", f.nw_src(), w.nw_src());
        o.ip("nw_dst", f.nw_dst(), w.nw_dst());
    }
    if !skip_proto && proto_known {
        o.kv(if arp { "arp_op" } else { "nw_proto" }, proto);
    }
    if arp {
        o.mac(
            "arp_sha",
            f.get(slot::ARP_SHA) as u64,
            w.get(slot::ARP_SHA) as u64,
        );
        o.mac(
            "arp_tha",
            f.get(slot::ARP_THA) as u64,
            w.get(slot::ARP_THA) as u64,
        );
    }
    if w.nw_tos() & 0xfc != 0 {
        o.kv("nw_tos", f.nw_tos() & 0xfc);
    }
    if w.nw_tos() & 0x03 != 0 {
        o.kv("nw_ecn", f.nw_tos() & 0x03);
    }
    if w.nw_ttl() != 0 {
        o.kv("nw_ttl", f.nw_ttl());
    }
    let (fr, frm) = (f.nw_frag(), w.nw_frag() & frag::MASK);
    let any = fr & frag::ANY != 0;
    let later = fr & frag::LATER != 0;
    match frm {
        frag::MASK => o.kv(
            "nw_frag",
            match (any, later) {
                (true, true) => "later",
                (true, false) => "first",
                (false, true) => "<error>",
                (false, false) => "no",
            },
        ),
        frag::ANY => o.kv("nw_frag", if any { "yes" } else { "no" }),
        frag::LATER => o.kv("nw_frag", if later { "later" } else { "not_later" }),
        _ => {}
    }
    let icmp4 = dl_type == ethertype::IPV4 && proto == ipproto::ICMP;
    let icmp6 = dl_type == ethertype::IPV6 && proto == ipproto::ICMPV6;
    if icmp4 || icmp6 {
        // icmp_type and icmp_code are the low bytes of tp_src and tp_dst.
        let full = |m: u16| if m == 0x00ff { 0xffff } else { m };
        o.u16_masked("icmp_type", f.tp_src(), full(w.tp_src()), 0xffff);
        o.u16_masked("icmp_code", f.tp_dst(), full(w.tp_dst()), 0xffff);
        if icmp6 {
            o.ipv6("nd_target", f.nd_target(), w.nd_target());
            o.mac(
                "nd_sll",
                f.get(slot::ARP_SHA) as u64,
                w.get(slot::ARP_SHA) as u64,
            );
            o.mac(
                "nd_tll",
                f.get(slot::ARP_THA) as u64,
                w.get(slot::ARP_THA) as u64,
            );
        }
    } else {
        o.u16_masked("tp_src", f.tp_src(), w.tp_src(), 0xffff);
        o.u16_masked("tp_dst", f.tp_dst(), w.tp_dst(), 0xffff);
    }
    let ip_any = dl_type == ethertype::IPV4 || dl_type == ethertype::IPV6;
    if ip_any && proto == ipproto::TCP && w.tcp_flags() != 0 {
        o.kv(
            "tcp_flags",
            fmt_flags_masked(
                f.tcp_flags() & tcp_flags::ALL,
                w.tcp_flags() & tcp_flags::ALL,
                tcp_flags::ALL,
                &tcp_flags::NAMES,
            ),
        );
    }
    if s.len() > start && s.ends_with(',') {
        s.pop();
    }
}
