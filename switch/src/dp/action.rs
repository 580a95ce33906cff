//! Datapath actions: the flat, already-decided list that a cached flow applies to each
//! packet. They are what the table pipeline "compiles" to (Open vSwitch's ODP actions):
//! header rewrites carry their final values, so executing them needs no lookups.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use vswitch_proto::action::{Nat, NatKind};
use vswitch_proto::flow::Flow;
use vswitch_proto::flowmod::FlowSpec;

/// Why the datapath dropped a packet on purpose. Each reason has a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// No rule matched, or the matching rule had no output.
    NoOutput,
    /// `dec_ttl` on a packet whose TTL (hop limit) was 0 or 1.
    TtlExceeded,
    /// Resubmits nested too deep, or too many of them (a loop in the tables).
    ResubmitLimit,
    /// Recirculated too many times (ct loops).
    RecircLimit,
    /// A group referenced by a rule does not exist (any more).
    NoSuchGroup,
    /// A meter's drop band dropped it (or the meter does not exist any more).
    Meter,
    /// A `reject` action ended it (answered or not: see the reject counters).
    Reject,
}

impl DropReason {
    pub const COUNT: usize = DropReason::Reject as usize + 1;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::NoOutput,
        DropReason::TtlExceeded,
        DropReason::ResubmitLimit,
        DropReason::RecircLimit,
        DropReason::NoSuchGroup,
        DropReason::Meter,
        DropReason::Reject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoOutput => "no_output",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::ResubmitLimit => "resubmit_limit",
            DropReason::RecircLimit => "recirc_limit",
            DropReason::NoSuchGroup => "no_such_group",
            DropReason::Meter => "meter",
            DropReason::Reject => "reject",
        }
    }
}

/// Why a packet goes to the switch's own slow-path handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControllerReason {
    /// A `controller` action in a rule.
    Action,
    /// NetworkPolicy refused a new connection (an isolated Pod's deny rule, with audit
    /// logging on): the Pod on `port`, isolated for ingress or egress.
    PolicyDenied { ingress: bool, port: u32 },
}

/// State carried into a recirculated pass: the table to resume in, and the metadata
/// (registers, metadata, tunnel, in_port...) the pipeline wrote before the packet left.
/// Metadata it did not write is taken from the packet's own key when it comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recirc {
    pub table: u8,
    /// Values of the written bits (zero elsewhere).
    pub md: Flow,
    /// Which metadata bits the pipeline wrote (always recirc_id and conj_id).
    pub written: Flow,
}

impl Recirc {
    /// The metadata words of the recirculated key: written bits from here, the others
    /// from the key the packet had.
    pub fn metadata_for(&self, key: &Flow) -> Flow {
        let mut md = Flow::ZERO;
        for w in METADATA_WORDS {
            md.w[w] = (key.w[w] & !self.written.w[w]) | (self.md.w[w] & self.written.w[w]);
        }
        md
    }
}

/// The words of a [`Flow`] that are metadata rather than packet headers (everything before
/// the Ethernet addresses): they survive recirculation.
pub const METADATA_WORDS: std::ops::Range<usize> = 0..18;

impl Recirc {
    /// The recirc_id a packet carries when it re-enters at `table`.
    pub fn id_for_table(table: u8) -> u32 {
        table as u32 + 1
    }

    /// The table a recirc_id resumes in (0 for a packet that was never recirculated).
    pub fn table_for_id(id: u32) -> u8 {
        id.saturating_sub(1).min(254) as u8
    }
}

/// Connection tracking, as decided by the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpCt {
    pub zone: u16,
    pub commit: bool,
    pub force: bool,
    pub nat: Option<Nat>,
    /// New ct_mark bits on commit: (value, mask).
    pub mark: Option<(u32, u32)>,
    /// New ct_label bits on commit: (value, mask).
    pub label: Option<(u128, u128)>,
    pub alg: Option<u16>,
    /// Where to continue with the tracked copy, if anywhere.
    pub recirc: Option<Arc<Recirc>>,
}

/// One datapath action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpAction {
    Output(u32),
    SetEth {
        src: Option<[u8; 6]>,
        dst: Option<[u8; 6]>,
    },
    /// Push an outer 802.1Q tag with this TPID and TCI.
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
    /// Rewrite the outer tag's TCI.
    SetVlanTci(u16),
    SetIpv4 {
        src: Option<u32>,
        dst: Option<u32>,
        tos: Option<u8>,
        ttl: Option<u8>,
    },
    SetIpv6 {
        src: Option<u128>,
        dst: Option<u128>,
        tc: Option<u8>,
        label: Option<u32>,
        hlimit: Option<u8>,
    },
    /// TCP, UDP or SCTP ports (the packet says which).
    SetPorts {
        src: Option<u16>,
        dst: Option<u16>,
    },
    SetIcmp {
        typ: Option<u8>,
        code: Option<u8>,
    },
    SetArp {
        op: Option<u16>,
        sha: Option<[u8; 6]>,
        spa: Option<u32>,
        tha: Option<[u8; 6]>,
        tpa: Option<u32>,
    },
    SetNd {
        target: Option<u128>,
        sll: Option<[u8; 6]>,
        tll: Option<[u8; 6]>,
    },
    /// Tunnel metadata for a following output to a tunnel port.
    SetTunnel {
        id: u64,
        src: u32,
        dst: u32,
    },
    Ct(Box<DpCt>),
    CtClear,
    Controller {
        max_len: u16,
        reason: ControllerReason,
    },
    /// Add or refresh a learned flow.
    Learn(Arc<FlowSpec>),
    /// Stop here and count the packet as dropped for this reason.
    Drop(DropReason),
    /// A TCP FIN or RST met `fin_timeout`: shorten the rule's timeouts.
    FinTimeout {
        stats: RuleRef,
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// Through meter `id`: the packet goes on only if its bands let it.
    Meter(u32, MeterRef),
    /// Answer the packet (TCP RST or ICMP port unreachable) out of the port it came in
    /// on, then drop it: see [`super::reject`].
    Reject,
    /// A select group chosen per packet: see [`DpSelect`].
    Select(Box<DpSelect>),
}

/// A select group decided in the datapath rather than in the translation, as Open
/// vSwitch's `dp_hash` selection does (`hash(l4(0)),recirc(...)` and a megaflow per hash
/// value there; here one action, without recirculating): each bucket is translated
/// beforehand, and each packet runs the one its 5-tuple's hash picks. So the megaflow
/// holds no 5-tuple, and a new connection to a Service is served from the caches instead
/// of an upcall each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpSelect {
    pub group: u32,
    /// Mixed into the hash (`selection_method_param`).
    pub basis: u64,
    /// Hash value (its low bits) -> index into `branches`; a power-of-two length.
    pub slots: Arc<[u16]>,
    pub branches: Box<[DpBranch]>,
    /// A group with `affinity`: a source keeps the bucket it last went to.
    pub affinity: Option<Box<DpAffinity>>,
}

/// A select group's session affinity, applied per packet: the group's memory of sources
/// (shared with the translation and kept through changes of the group), how long a
/// source stays, and each branch's bucket identity in that memory.
#[derive(Clone, Debug)]
pub struct DpAffinity {
    pub map: Arc<crate::ofproto::Affinity>,
    pub timeout_ms: u64,
    pub keys: Box<[u64]>,
}

impl PartialEq for DpAffinity {
    fn eq(&self, other: &DpAffinity) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
            && self.timeout_ms == other.timeout_ms
            && self.keys == other.keys
    }
}

impl Eq for DpAffinity {}

/// One bucket of a [`DpSelect`], translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpBranch {
    pub bucket_id: u32,
    pub actions: Box<[DpAction]>,
    /// The bucket's counters, credited per packet that takes it.
    pub stats: RuleRef,
}

impl DpSelect {
    /// The branch `key`'s packet takes.
    #[inline]
    pub fn pick(&self, key: &Flow) -> &DpBranch {
        &self.branches[self.index(key)]
    }

    /// The index of the branch `key`'s packet takes at `now` (ms), affinity included: the
    /// bucket its source went to last, if within the timeout and still there, else the
    /// hash's; the source is remembered on it.
    #[inline]
    pub fn choose(&self, key: &Flow, now: u64) -> usize {
        let hashed = self.index(key);
        let Some(a) = &self.affinity else {
            return hashed;
        };
        let src = if key.dl_type() == vswitch_proto::field::ethertype::IPV6 {
            key.ipv6_src()
        } else {
            key.nw_src() as u128
        };
        let key = a.map.stick(src, now, a.timeout_ms, |last| {
            last.filter(|k| a.keys.contains(k))
                .unwrap_or(a.keys[hashed])
        });
        a.keys.iter().position(|&b| b == key).unwrap_or(hashed)
    }

    /// The index of the branch the hash of `key`'s 5-tuple picks (the branches need not
    /// be there yet), affinity aside.
    #[inline]
    pub fn index(&self, key: &Flow) -> usize {
        let mut h = l4_hash(key);
        if self.basis != 0 {
            h = mix64(h ^ self.basis);
        }
        let slot = (h ^ (h >> 32)) as usize & (self.slots.len() - 1);
        self.slots[slot] as usize
    }
}

fn mix64(v: u64) -> u64 {
    let m = (v as u128).wrapping_mul(0xff51_afd7_ed55_8ccd_u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A stable hash of the packet's 5-tuple (addresses, protocol, ports), the same on every
/// worker and after a restart, so one connection always picks the same bucket.
pub fn l4_hash(f: &Flow) -> u64 {
    use vswitch_proto::field::ethertype;
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |v: u64| h = mix64(h ^ v);
    if f.dl_type() == ethertype::IPV6 {
        let (s, d) = (f.ipv6_src(), f.ipv6_dst());
        mix(s as u64);
        mix((s >> 64) as u64);
        mix(d as u64);
        mix((d >> 64) as u64);
    } else {
        mix(((f.nw_src() as u64) << 32) | f.nw_dst() as u64);
    }
    mix(((f.nw_proto() as u64) << 32) | ((f.tp_src() as u64) << 16) | f.tp_dst() as u64);
    h
}

/// A meter in a datapath action; equal when it is the same meter.
#[derive(Clone, Debug)]
pub struct MeterRef(pub Arc<crate::ofproto::meter::Meter>);

impl PartialEq for MeterRef {
    fn eq(&self, other: &MeterRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MeterRef {}

/// A rule's counters in a datapath action; equal when they are the same rule's.
#[derive(Clone, Debug)]
pub struct RuleRef(pub Arc<crate::ofproto::RuleStats>);

impl PartialEq for RuleRef {
    fn eq(&self, other: &RuleRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RuleRef {}

fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Write `name=value` pairs for the present fields, comma separated.
fn fields(f: &mut fmt::Formatter<'_>, items: &[(&str, Option<String>)]) -> fmt::Result {
    let mut first = true;
    for (name, v) in items {
        if let Some(v) = v {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{name}={v}")?;
        }
    }
    Ok(())
}

impl fmt::Display for DpAction {
    /// Open vSwitch's datapath action syntax (`ovs-dpctl dump-flows`), where it exists.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DpAction::Output(p) => write!(f, "{p}"),
            DpAction::SetEth { src, dst } => {
                f.write_str("set(eth(")?;
                fields(f, &[("src", src.map(mac)), ("dst", dst.map(mac))])?;
                f.write_str("))")
            }
            DpAction::PushVlan { tpid, tci } => {
                write!(f, "push_vlan(")?;
                if *tpid != 0x8100 {
                    write!(f, "tpid=0x{tpid:04x},")?;
                }
                write!(f, "vid={},pcp={})", tci & 0x0fff, tci >> 13)
            }
            DpAction::PopVlan => f.write_str("pop_vlan"),
            DpAction::SetVlanTci(tci) => {
                write!(f, "set(vlan(vid={},pcp={}))", tci & 0x0fff, tci >> 13)
            }
            DpAction::SetIpv4 { src, dst, tos, ttl } => {
                f.write_str("set(ipv4(")?;
                fields(
                    f,
                    &[
                        ("src", src.map(|a| Ipv4Addr::from(a).to_string())),
                        ("dst", dst.map(|a| Ipv4Addr::from(a).to_string())),
                        ("tos", tos.map(|t| format!("0x{t:x}"))),
                        ("ttl", ttl.map(|t| t.to_string())),
                    ],
                )?;
                f.write_str("))")
            }
            DpAction::SetIpv6 {
                src,
                dst,
                tc,
                label,
                hlimit,
            } => {
                f.write_str("set(ipv6(")?;
                fields(
                    f,
                    &[
                        ("src", src.map(|a| Ipv6Addr::from(a).to_string())),
                        ("dst", dst.map(|a| Ipv6Addr::from(a).to_string())),
                        ("label", label.map(|l| format!("0x{l:x}"))),
                        ("tclass", tc.map(|t| format!("0x{t:x}"))),
                        ("hlimit", hlimit.map(|t| t.to_string())),
                    ],
                )?;
                f.write_str("))")
            }
            DpAction::SetPorts { src, dst } => {
                f.write_str("set(l4(")?;
                fields(
                    f,
                    &[
                        ("src", src.map(|p| p.to_string())),
                        ("dst", dst.map(|p| p.to_string())),
                    ],
                )?;
                f.write_str("))")
            }
            DpAction::SetIcmp { typ, code } => {
                f.write_str("set(icmp(")?;
                fields(
                    f,
                    &[
                        ("type", typ.map(|p| p.to_string())),
                        ("code", code.map(|p| p.to_string())),
                    ],
                )?;
                f.write_str("))")
            }
            DpAction::SetArp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => {
                f.write_str("set(arp(")?;
                fields(
                    f,
                    &[
                        ("sip", spa.map(|a| Ipv4Addr::from(a).to_string())),
                        ("tip", tpa.map(|a| Ipv4Addr::from(a).to_string())),
                        ("op", op.map(|o| o.to_string())),
                        ("sha", sha.map(mac)),
                        ("tha", tha.map(mac)),
                    ],
                )?;
                f.write_str("))")
            }
            DpAction::SetNd { target, sll, tll } => {
                f.write_str("set(nd(")?;
                fields(
                    f,
                    &[
                        ("target", target.map(|a| Ipv6Addr::from(a).to_string())),
                        ("sll", sll.map(mac)),
                        ("tll", tll.map(mac)),
                    ],
                )?;
                f.write_str("))")
            }
            DpAction::SetTunnel { id, src, dst } => write!(
                f,
                "set(tunnel(tun_id=0x{id:x},src={},dst={}))",
                Ipv4Addr::from(*src),
                Ipv4Addr::from(*dst)
            ),
            DpAction::Ct(ct) => {
                f.write_str("ct(")?;
                let mut parts: Vec<String> = Vec::new();
                if ct.commit {
                    parts.push("commit".into());
                }
                if ct.force {
                    parts.push("force".into());
                }
                if ct.zone != 0 {
                    parts.push(format!("zone={}", ct.zone));
                }
                if let Some((v, m)) = ct.mark {
                    parts.push(format!("mark=0x{v:x}/0x{m:x}"));
                }
                if let Some((v, m)) = ct.label {
                    parts.push(format!("label=0x{v:x}/0x{m:x}"));
                }
                if let Some(nat) = &ct.nat {
                    parts.push(format_nat(nat));
                }
                if let Some(a) = ct.alg {
                    parts.push(format!("helper={a}"));
                }
                f.write_str(&parts.join(","))?;
                f.write_str(")")?;
                if let Some(r) = &ct.recirc {
                    write!(f, ",recirc(0x{:x})", Recirc::id_for_table(r.table))?;
                }
                Ok(())
            }
            DpAction::CtClear => f.write_str("ct_clear"),
            DpAction::Controller { max_len, .. } => {
                write!(f, "userspace(controller,max_len={max_len})")
            }
            DpAction::Learn(spec) => {
                write!(f, "userspace(learn,table={})", spec.table.unwrap_or(0))
            }
            DpAction::Drop(r) => write!(f, "drop({})", r.as_str()),
            DpAction::FinTimeout {
                idle_timeout,
                hard_timeout,
                ..
            } => write!(
                f,
                "userspace(fin_timeout,idle_timeout={idle_timeout},hard_timeout={hard_timeout})"
            ),
            DpAction::Meter(id, _) => write!(f, "meter({id})"),
            DpAction::Reject => f.write_str("userspace(reject)"),
            DpAction::Select(s) => {
                write!(f, "select(group={},hash=l4", s.group)?;
                if s.basis != 0 {
                    write!(f, ",basis={}", s.basis)?;
                }
                write!(f, ",slots={}", s.slots.len())?;
                for b in s.branches.iter() {
                    write!(f, ",bucket{}({})", b.bucket_id, DisplayActions(&b.actions))?;
                }
                f.write_str(")")
            }
        }
    }
}

fn format_nat(n: &Nat) -> String {
    let mut s = String::from("nat");
    if let Some(kind) = n.kind {
        s.push('(');
        s.push_str(match kind {
            NatKind::Src => "src",
            NatKind::Dst => "dst",
        });
        if let Some((lo, hi)) = n.addrs {
            s.push_str(&format!("={lo}"));
            if hi != lo {
                s.push_str(&format!("-{hi}"));
            }
        }
        if let Some((lo, hi)) = n.ports {
            s.push_str(&format!(":{lo}"));
            if hi != lo {
                s.push_str(&format!("-{hi}"));
            }
        }
        s.push(')');
    }
    s
}

/// A list of datapath actions as Open vSwitch prints them (`drop` when empty).
#[derive(Debug)]
pub struct DisplayActions<'a>(pub &'a [DpAction]);

impl fmt::Display for DisplayActions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("drop");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
