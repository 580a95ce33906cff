//! Actions: what a rule does to the packets it matches (`ovs-actions(7)` where they overlap).

use crate::field::FieldId;
use crate::flow::Slot;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// OpenFlow port numbers (OpenFlow 1.0 numbering, as Open vSwitch prints them).
pub mod port {
    /// Highest number a real port may have (OpenFlow 1.0 reserves 0xff00 and up).
    pub const MAX: u32 = 0xfeff;
    pub const IN_PORT: u32 = 0xfff8;
    pub const TABLE: u32 = 0xfff9;
    pub const NORMAL: u32 = 0xfffa;
    pub const FLOOD: u32 = 0xfffb;
    pub const ALL: u32 = 0xfffc;
    pub const CONTROLLER: u32 = 0xfffd;
    pub const LOCAL: u32 = 0xfffe;
    pub const NONE: u32 = 0xffff;

    /// The reserved ports by name, as Open vSwitch prints them.
    pub const NAMES: [(u32, &str); 8] = [
        (IN_PORT, "IN_PORT"),
        (TABLE, "TABLE"),
        (NORMAL, "NORMAL"),
        (FLOOD, "FLOOD"),
        (ALL, "ALL"),
        (CONTROLLER, "CONTROLLER"),
        (LOCAL, "LOCAL"),
        (NONE, "NONE"),
    ];

    pub fn reserved_name(p: u32) -> Option<&'static str> {
        NAMES.iter().find(|(n, _)| *n == p).map(|(_, s)| *s)
    }

    pub fn from_reserved_name(s: &str) -> Option<u32> {
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
            .or(if s.eq_ignore_ascii_case("ANY") {
                Some(NONE)
            } else {
                None
            })
    }
}

/// A run of bits of a field: `NXM_NX_REG0[0..15]`, `reg1[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubField {
    pub field: FieldId,
    /// Offset of the first bit, from the field's least significant bit.
    pub ofs: u8,
    pub n_bits: u8,
}

impl SubField {
    /// The whole field. `in_port` is 16 bits wide in subfield syntax (`NXM_OF_IN_PORT[]`),
    /// as in Open vSwitch.
    pub fn whole(field: FieldId) -> SubField {
        SubField {
            field,
            ofs: 0,
            n_bits: if field == FieldId::InPort {
                16
            } else {
                field.bits()
            },
        }
    }

    pub fn is_whole(&self) -> bool {
        *self == SubField::whole(self.field)
    }

    /// The physical bits this subfield covers; for a 128-bit field, the whole slot (use
    /// [`SubField::mask_in_field`] for the bits).
    pub fn slot(&self) -> Slot {
        let s = self.field.slot();
        if s.bits == 128 {
            s
        } else {
            s.sub(self.ofs, self.n_bits)
        }
    }

    /// Mask of this subfield's bits within its field's value.
    pub fn mask_in_field(&self) -> u128 {
        let ones = if self.n_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.n_bits) - 1
        };
        ones << self.ofs
    }
}

/// A conntrack zone: a constant, or read from a subfield of the packet's flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CtZone {
    Imm(u16),
    Field(SubField),
}

/// `nat(...)` inside `ct(...)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Nat {
    /// `src` or `dst`, or neither for a bare `nat` (un-NAT replies, apply established NAT).
    pub kind: Option<NatKind>,
    /// First and last address of the range (the same when one address is given).
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// First and last port of the range.
    pub ports: Option<(u16, u16)>,
    pub random: bool,
    pub persistent: bool,
    pub hash: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NatKind {
    Src,
    Dst,
}

/// `ct(...)`: send the packet through connection tracking.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ct {
    pub commit: bool,
    pub force: bool,
    pub zone: CtZone,
    /// Continue processing a copy of the packet in this table after tracking
    /// (recirculation), with the conntrack fields filled in.
    pub table: Option<u8>,
    pub nat: Option<Nat>,
    /// Actions applied to the connection on commit (only `set_field` to ct_mark/ct_label).
    pub exec: Vec<Action>,
    /// Application-layer gateway port (`alg=ftp` is 21, `alg=tftp` is 69).
    pub alg: Option<u16>,
}

impl Default for Ct {
    fn default() -> Ct {
        Ct {
            commit: false,
            force: false,
            zone: CtZone::Imm(0),
            table: None,
            nat: None,
            exec: Vec::new(),
            alg: None,
        }
    }
}

/// One element of a `learn(...)` specification.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LearnSpec {
    /// The learned flow matches `dst` equal to the packet's `src` (`NXM_OF_IP_SRC[]` is
    /// shorthand for `dst == src`).
    MatchField { dst: SubField, src: SubField },
    /// The learned flow matches `dst == value` (`nw_proto=6`); `value` is the subfield's
    /// own value, not shifted by its offset.
    MatchImm { dst: SubField, value: u128 },
    /// The learned flow's actions load the packet's `src` into `dst`.
    LoadField { src: SubField, dst: SubField },
    /// The learned flow's actions load `value` (not shifted by `dst`'s offset) into `dst`.
    LoadImm { value: u128, dst: SubField },
    /// The learned flow's actions output to the port in the packet's `src`.
    Output(SubField),
}

/// `learn(...)`: add or refresh a flow built from this packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Learn {
    pub table: u8,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    pub cookie: u64,
    /// `delete_learned`: remove the learned flows when this rule is removed.
    pub delete_learned: bool,
    /// At most this many flows learned by this action at a time (0: no limit).
    pub limit: u32,
    /// A one-bit subfield set to 1 when the flow was learned, 0 when `limit` refused it.
    pub result_dst: Option<SubField>,
    pub specs: Vec<LearnSpec>,
}

impl Default for Learn {
    fn default() -> Learn {
        Learn {
            table: 1,
            priority: crate::DEFAULT_PRIORITY,
            idle_timeout: 0,
            hard_timeout: 0,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            cookie: 0,
            delete_learned: false,
            limit: 0,
            result_dst: None,
            specs: Vec::new(),
        }
    }
}

/// Why a packet goes to the controller (`controller(reason=...)`), as Open vSwitch names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ControllerReason {
    NoMatch,
    Action,
    InvalidTtl,
    ActionSet,
    Group,
    PacketOut,
}

impl ControllerReason {
    pub const NAMES: [(ControllerReason, &'static str); 6] = [
        (ControllerReason::NoMatch, "no_match"),
        (ControllerReason::Action, "action"),
        (ControllerReason::InvalidTtl, "invalid_ttl"),
        (ControllerReason::ActionSet, "action_set"),
        (ControllerReason::Group, "group"),
        (ControllerReason::PacketOut, "packet_out"),
    ];

    pub fn name(self) -> &'static str {
        ControllerReason::NAMES
            .iter()
            .find(|(r, _)| *r == self)
            .map_or("action", |(_, n)| n)
    }

    pub fn from_name(s: &str) -> Option<ControllerReason> {
        ControllerReason::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(r, _)| *r)
    }
}

/// `controller(...)` with options beyond `max_len` (Open vSwitch's NXAST_CONTROLLER2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ControllerOpts {
    pub max_len: u16,
    pub reason: ControllerReason,
    /// The controller connection id the packet is for.
    pub id: u16,
    pub userdata: Option<Vec<u8>>,
    /// Pause the pipeline until the controller resumes it (not implemented: see README).
    pub pause: bool,
    pub meter_id: Option<u32>,
}

impl Default for ControllerOpts {
    fn default() -> ControllerOpts {
        ControllerOpts {
            max_len: u16::MAX,
            reason: ControllerReason::Action,
            id: 0,
            userdata: None,
            pause: false,
            meter_id: None,
        }
    }
}

/// The fields `multipath` hashes (Open vSwitch's `enum nx_hash_fields`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashFields {
    EthSrc,
    SymmetricL4,
    SymmetricL3L4,
    SymmetricL3L4Udp,
    NwSrc,
    NwDst,
    SymmetricL3,
}

impl HashFields {
    pub const NAMES: [(HashFields, &'static str); 7] = [
        (HashFields::EthSrc, "eth_src"),
        (HashFields::SymmetricL4, "symmetric_l4"),
        (HashFields::SymmetricL3L4, "symmetric_l3l4"),
        (HashFields::SymmetricL3L4Udp, "symmetric_l3l4+udp"),
        (HashFields::NwSrc, "nw_src"),
        (HashFields::NwDst, "nw_dst"),
        (HashFields::SymmetricL3, "symmetric_l3"),
    ];

    pub fn name(self) -> &'static str {
        HashFields::NAMES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("eth_src", |(_, n)| n)
    }

    pub fn from_name(s: &str) -> Option<HashFields> {
        HashFields::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(f, _)| *f)
    }
}

/// How `multipath` turns a hash into a link number (Open vSwitch's `enum nx_mp_algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MpAlgorithm {
    ModuloN,
    HashThreshold,
    Hrw,
    IterHash,
}

impl MpAlgorithm {
    pub const NAMES: [(MpAlgorithm, &'static str); 4] = [
        (MpAlgorithm::ModuloN, "modulo_n"),
        (MpAlgorithm::HashThreshold, "hash_threshold"),
        (MpAlgorithm::Hrw, "hrw"),
        (MpAlgorithm::IterHash, "iter_hash"),
    ];

    pub fn name(self) -> &'static str {
        MpAlgorithm::NAMES
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("modulo_n", |(_, n)| n)
    }

    pub fn from_name(s: &str) -> Option<MpAlgorithm> {
        MpAlgorithm::NAMES
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
    }
}

/// `multipath(fields, basis, algorithm, n_links, arg, dst)`: pick a link in
/// `0..n_links` from a hash of `fields` and write it into `dst`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Multipath {
    pub fields: HashFields,
    pub basis: u16,
    pub algorithm: MpAlgorithm,
    /// 1 to 65536.
    pub n_links: u32,
    pub arg: u32,
    pub dst: SubField,
}

/// One action.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Send to a port (a real one, or a reserved one such as `LOCAL`); `max_len` only matters
    /// for `CONTROLLER`.
    Output {
        port: u32,
        max_len: Option<u16>,
    },
    /// Send to the port number held in a subfield.
    OutputReg(SubField),
    /// Send back out of the port the packet came in on.
    InPort,
    /// Behave like a learning switch.
    Normal,
    /// Send to every port but the input port.
    Flood,
    /// Send to every port but the input port (flood ignores no-flood flags; this does not).
    All,
    /// Send to the controller (the switch's slow path); `max_len` bytes of the packet.
    Controller {
        max_len: u16,
    },
    /// Continue in a later table, then stop.
    GotoTable(u8),
    /// Run the actions of the rule that matches in `table` (this one if `None`), as if the
    /// packet had arrived on `in_port` (the real one if `None`), then continue here.
    Resubmit {
        in_port: Option<u32>,
        table: Option<u8>,
    },
    /// Write a value (under a mask) into a field.
    SetField {
        field: FieldId,
        value: u128,
        mask: u128,
    },
    /// Copy bits from one subfield into another.
    Move {
        src: SubField,
        dst: SubField,
    },
    DecTtl,
    PushVlan(u16),
    PopVlan,
    Group(u32),
    /// Part `clause` (0-based) of `n_clauses` of conjunctive match `id`.
    Conjunction {
        id: u32,
        clause: u8,
        n_clauses: u8,
    },
    Learn(Box<Learn>),
    Note(Vec<u8>),
    Ct(Box<Ct>),
    CtClear,
    /// OpenFlow 1.1+ `write_actions(...)`: add these actions to the action set, which runs
    /// when the pipeline ends (in the order OpenFlow gives, not the order written).
    WriteActions(Vec<Action>),
    /// OpenFlow 1.1+ `clear_actions`: empty the action set.
    ClearActions,
    /// OpenFlow 1.1+ `write_metadata:value/mask`: metadata = (metadata & !mask) | value.
    WriteMetadata {
        value: u64,
        mask: u64,
    },
    /// Stop executing actions here and in every table that led here (the action set
    /// still runs; in a group bucket only the bucket stops).
    Exit,
    /// `controller(...)` with a reason, id, userdata, pause or meter_id.
    ControllerEx(Box<ControllerOpts>),
    /// `dec_ttl(id,...)`: like `dec_ttl`, naming the controllers told of an expired TTL.
    DecTtlIds(Vec<u16>),
    /// `enqueue(port,queue)`: output to `port` through `queue` (queues are not
    /// implemented; it outputs to the port).
    Enqueue {
        port: u32,
        queue: u32,
    },
    Multipath(Box<Multipath>),
    /// `fin_timeout(...)`: on a TCP FIN or RST, shorten this rule's timeouts to these (0:
    /// leave that timeout alone).
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// `meter:N` (OpenFlow 1.3's meter instruction): through meter N, which may drop.
    Meter(u32),
    /// `reject` (a vswitch extension; Open vSwitch has no such action): drop the packet and
    /// answer its sender at once, out of the port it came in on, as Linux's iptables
    /// `REJECT` would: a TCP segment (not itself a RST) gets a RST, anything else an ICMP
    /// (ICMPv6) port unreachable. ICMP errors, broadcast and multicast destinations and
    /// non-first fragments are dropped without an answer. Ends the packet's processing.
    Reject,
}

impl Action {
    /// Whether OpenFlow's action set may hold this action (Open vSwitch's
    /// `ofpact_is_allowed_in_actions_set`).
    pub fn allowed_in_action_set(&self) -> bool {
        !matches!(
            self,
            Action::OutputReg(_)
                | Action::GotoTable(_)
                | Action::Conjunction { .. }
                | Action::Learn(_)
                | Action::Note(_)
                | Action::WriteActions(_)
                | Action::ClearActions
                | Action::WriteMetadata { .. }
                | Action::Exit
                | Action::Reject
        )
    }

    /// The instruction this action belongs to in OpenFlow 1.1+ (0 for apply-actions), in
    /// the order instructions must be written.
    pub fn instruction_rank(&self) -> u8 {
        match self {
            Action::ClearActions => 1,
            Action::WriteActions(_) => 2,
            Action::WriteMetadata { .. } => 3,
            Action::GotoTable(_) => 4,
            _ => 0,
        }
    }

    /// Whether this action may appear together with `conjunction` actions (only `note`).
    pub fn allowed_with_conjunction(&self) -> bool {
        matches!(self, Action::Conjunction { .. } | Action::Note(_))
    }
}
