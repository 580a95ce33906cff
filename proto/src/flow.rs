//! The flow: every match field of a packet, packed into a fixed array of 64-bit words.
//!
//! One layout serves four jobs: the datapath's flow key (extracted from a packet), a rule's
//! match value, a rule's mask (same layout, bits set where the rule cares), and a megaflow's
//! wildcard mask. Packing into words lets the classifier mask, hash and compare a key a word
//! at a time, and skip the words a mask does not touch (Open vSwitch's miniflow idea).
//!
//! Adding a field means adding a [`Slot`] here, a [`crate::field::FieldId`] that names it, and
//! teaching the extractor to fill it. [`FLOW_LAYOUT_VERSION`] is checked by a compile-time
//! assertion in the places that must learn about every field (Open vSwitch's `FLOW_WC_SEQ`).

use serde::{Deserialize, Serialize};

/// Number of 64-bit words in a [`Flow`].
pub const FLOW_U64S: usize = 31;

/// Bumped whenever a slot is added, removed or moved. Code that handles every field
/// asserts on it, so a change to the layout fails the build where something must be updated.
pub const FLOW_LAYOUT_VERSION: u32 = 2;

/// Where a physical field lives inside a [`Flow`]: a run of `bits` bits starting `shift`
/// bits above the least significant bit of word `word`. A 128-bit slot spans `word` (high
/// half) and `word + 1` (low half) and has `shift == 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    pub word: u8,
    pub shift: u8,
    pub bits: u8,
}

impl Slot {
    pub const fn new(word: u8, shift: u8, bits: u8) -> Slot {
        Slot { word, shift, bits }
    }

    /// The all-ones value for this slot's width.
    pub const fn max(self) -> u128 {
        if self.bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.bits) - 1
        }
    }

    /// A sub-run of this slot: `bits` bits starting `ofs` bits above its least significant bit.
    /// Only meaningful for slots of at most 64 bits.
    pub const fn sub(self, ofs: u8, bits: u8) -> Slot {
        Slot {
            word: self.word,
            shift: self.shift + ofs,
            bits,
        }
    }
}

/// Physical slots: the storage behind the user-visible fields.
pub mod slot {
    use super::Slot;

    pub const IN_PORT: Slot = Slot::new(0, 32, 32);
    pub const RECIRC_ID: Slot = Slot::new(0, 0, 32);
    pub const CONJ_ID: Slot = Slot::new(1, 32, 32);
    pub const CT_MARK: Slot = Slot::new(1, 0, 32);
    pub const CT_STATE: Slot = Slot::new(2, 48, 16);
    pub const CT_ZONE: Slot = Slot::new(2, 32, 16);
    pub const IPV6_LABEL: Slot = Slot::new(2, 0, 20);
    pub const TUN_SRC: Slot = Slot::new(3, 32, 32);
    pub const TUN_DST: Slot = Slot::new(3, 0, 32);
    pub const TUN_ID: Slot = Slot::new(4, 0, 64);
    pub const METADATA: Slot = Slot::new(5, 0, 64);
    pub const CT_LABEL: Slot = Slot::new(6, 0, 128);
    /// Registers reg0..reg15: two per word, the even one in the high half.
    pub const fn reg(i: u8) -> Slot {
        Slot::new(8 + i / 2, if i.is_multiple_of(2) { 32 } else { 0 }, 32)
    }
    /// The original direction's tuple of the connection the packet belongs to, as
    /// conntrack reports it (`ct_nw_src` and friends): metadata, so it survives
    /// recirculation.
    pub const CT_NW_SRC: Slot = Slot::new(16, 32, 32);
    pub const CT_NW_DST: Slot = Slot::new(16, 0, 32);
    pub const CT_NW_PROTO: Slot = Slot::new(17, 56, 8);
    pub const CT_TP_SRC: Slot = Slot::new(17, 32, 16);
    pub const CT_TP_DST: Slot = Slot::new(17, 16, 16);
    /// 64-bit registers xreg0..xreg7: xreg`i` is reg`2i` (high half) and reg`2i+1`.
    pub const fn xreg(i: u8) -> Slot {
        Slot::new(8 + i, 0, 64)
    }
    pub const DL_DST: Slot = Slot::new(18, 16, 48);
    pub const DL_TYPE: Slot = Slot::new(18, 0, 16);
    pub const DL_SRC: Slot = Slot::new(19, 16, 48);
    /// 802.1Q TCI of the outer tag, with the CFI bit (0x1000) set when a tag is present,
    /// as Open vSwitch does: 0 means "no VLAN tag".
    pub const VLAN_TCI: Slot = Slot::new(19, 0, 16);
    pub const NW_SRC: Slot = Slot::new(20, 32, 32);
    pub const NW_DST: Slot = Slot::new(20, 0, 32);
    pub const NW_PROTO: Slot = Slot::new(21, 56, 8);
    pub const NW_TOS: Slot = Slot::new(21, 48, 8);
    pub const NW_TTL: Slot = Slot::new(21, 40, 8);
    pub const NW_FRAG: Slot = Slot::new(21, 32, 8);
    pub const TCP_FLAGS: Slot = Slot::new(21, 16, 16);
    /// TCI of a second (inner) tag in a QinQ frame, same encoding as [`VLAN_TCI`]. Not
    /// matchable; it becomes the outer tag when the outer one is popped.
    pub const VLAN_TCI_INNER: Slot = Slot::new(21, 0, 16);
    pub const TP_SRC: Slot = Slot::new(22, 48, 16);
    pub const TP_DST: Slot = Slot::new(22, 32, 16);
    pub const ARP_SHA: Slot = Slot::new(23, 16, 48);
    pub const ARP_THA: Slot = Slot::new(24, 16, 48);
    pub const IPV6_SRC: Slot = Slot::new(25, 0, 128);
    pub const IPV6_DST: Slot = Slot::new(27, 0, 128);
    pub const ND_TARGET: Slot = Slot::new(29, 0, 128);
}

/// `nw_frag` bits, as Open vSwitch encodes them.
pub mod frag {
    /// The packet is a fragment (first or later).
    pub const ANY: u8 = 1;
    /// The packet is a fragment with a non-zero offset.
    pub const LATER: u8 = 2;
    pub const MASK: u8 = ANY | LATER;
}

/// `ct_state` bits, as Open vSwitch encodes them.
pub mod ct_state {
    pub const NEW: u16 = 0x01;
    pub const EST: u16 = 0x02;
    pub const REL: u16 = 0x04;
    pub const RPL: u16 = 0x08;
    pub const INV: u16 = 0x10;
    pub const TRK: u16 = 0x20;
    pub const SNAT: u16 = 0x40;
    pub const DNAT: u16 = 0x80;
    /// Names in the order Open vSwitch prints them.
    pub const NAMES: [(u16, &str); 8] = [
        (NEW, "new"),
        (EST, "est"),
        (REL, "rel"),
        (RPL, "rpl"),
        (INV, "inv"),
        (TRK, "trk"),
        (SNAT, "snat"),
        (DNAT, "dnat"),
    ];
    pub const ALL: u16 = 0xff;
}

/// TCP flag bits (the low 12 bits of the TCP header's offset/flags word).
pub mod tcp_flags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;
    /// Names in the order Open vSwitch prints them.
    pub const NAMES: [(u16, &str); 12] = [
        (FIN, "fin"),
        (SYN, "syn"),
        (RST, "rst"),
        (PSH, "psh"),
        (ACK, "ack"),
        (URG, "urg"),
        (ECE, "ece"),
        (CWR, "cwr"),
        (NS, "ns"),
        (0x200, "[200]"),
        (0x400, "[400]"),
        (0x800, "[800]"),
    ];
    pub const ALL: u16 = 0xfff;
}

/// Every match field of one packet (or a match value, or a mask), packed into words.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(C, align(64))]
pub struct Flow {
    pub w: [u64; FLOW_U64S],
}

impl Default for Flow {
    fn default() -> Flow {
        Flow::ZERO
    }
}

macro_rules! accessors {
    ($($get:ident, $set:ident, $ty:ty, $slot:expr;)*) => {
        $(
            #[inline(always)]
            pub fn $get(&self) -> $ty {
                let s = $slot;
                ((self.w[s.word as usize] >> s.shift) & ((1u64 << s.bits) - 1)) as $ty
            }
            #[inline(always)]
            pub fn $set(&mut self, v: $ty) {
                let s = $slot;
                let m = ((1u64 << s.bits) - 1) << s.shift;
                let w = &mut self.w[s.word as usize];
                *w = (*w & !m) | (((v as u64) << s.shift) & m);
            }
        )*
    };
}

impl Flow {
    pub const ZERO: Flow = Flow { w: [0; FLOW_U64S] };
    pub const ONES: Flow = Flow {
        w: [u64::MAX; FLOW_U64S],
    };

    /// Read a slot of up to 128 bits.
    #[inline]
    pub fn get(&self, s: Slot) -> u128 {
        if s.bits == 128 {
            ((self.w[s.word as usize] as u128) << 64) | self.w[s.word as usize + 1] as u128
        } else {
            ((self.w[s.word as usize] >> s.shift) as u128) & s.max()
        }
    }

    /// Write a slot of up to 128 bits; bits of `v` above the slot's width are ignored.
    #[inline]
    pub fn set(&mut self, s: Slot, v: u128) {
        if s.bits == 128 {
            self.w[s.word as usize] = (v >> 64) as u64;
            self.w[s.word as usize + 1] = v as u64;
        } else {
            let m = (s.max() as u64) << s.shift;
            let w = &mut self.w[s.word as usize];
            *w = (*w & !m) | (((v as u64) << s.shift) & m);
        }
    }

    /// Write only the bits of `v` selected by `mask` into a slot.
    #[inline]
    pub fn set_masked(&mut self, s: Slot, v: u128, mask: u128) {
        let old = self.get(s);
        self.set(s, (old & !mask) | (v & mask));
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn and(&self, mask: &Flow) -> Flow {
        let mut out = Flow::ZERO;
        for i in 0..FLOW_U64S {
            out.w[i] = self.w[i] & mask.w[i];
        }
        out
    }

    /// `self | other`, word by word (the union of two masks).
    #[inline]
    pub fn or_assign(&mut self, other: &Flow) {
        for i in 0..FLOW_U64S {
            self.w[i] |= other.w[i];
        }
    }

    /// Whether every bit set in `self` is also set in `other`.
    pub fn is_subset_of(&self, other: &Flow) -> bool {
        self.w.iter().zip(other.w.iter()).all(|(a, b)| a & !b == 0)
    }

    /// Whether `self` and `other` agree on every bit of `mask`.
    #[inline]
    pub fn equal_in(&self, other: &Flow, mask: &Flow) -> bool {
        self.w
            .iter()
            .zip(other.w.iter())
            .zip(mask.w.iter())
            .all(|((a, b), m)| (a ^ b) & m == 0)
    }

    pub fn is_zero(&self) -> bool {
        self.w.iter().all(|&w| w == 0)
    }

    /// Number of bits set (for a mask: how specific it is).
    pub fn count_ones(&self) -> u32 {
        self.w.iter().map(|w| w.count_ones()).sum()
    }

    /// A mask with every bit of `s` set.
    pub fn mask_of(s: Slot) -> Flow {
        let mut m = Flow::ZERO;
        m.set(s, s.max());
        m
    }

    /// Register `i` (0..16).
    #[inline]
    pub fn reg(&self, i: u8) -> u32 {
        self.get(slot::reg(i)) as u32
    }

    #[inline]
    pub fn set_reg(&mut self, i: u8, v: u32) {
        self.set(slot::reg(i), v as u128)
    }

    #[inline]
    pub fn ipv6_src(&self) -> u128 {
        self.get(slot::IPV6_SRC)
    }
    #[inline]
    pub fn set_ipv6_src(&mut self, v: u128) {
        self.set(slot::IPV6_SRC, v)
    }
    #[inline]
    pub fn ipv6_dst(&self) -> u128 {
        self.get(slot::IPV6_DST)
    }
    #[inline]
    pub fn set_ipv6_dst(&mut self, v: u128) {
        self.set(slot::IPV6_DST, v)
    }
    #[inline]
    pub fn nd_target(&self) -> u128 {
        self.get(slot::ND_TARGET)
    }
    #[inline]
    pub fn set_nd_target(&mut self, v: u128) {
        self.set(slot::ND_TARGET, v)
    }
    #[inline]
    pub fn ct_label(&self) -> u128 {
        self.get(slot::CT_LABEL)
    }
    #[inline]
    pub fn set_ct_label(&mut self, v: u128) {
        self.set(slot::CT_LABEL, v)
    }

    accessors! {
        in_port, set_in_port, u32, slot::IN_PORT;
        recirc_id, set_recirc_id, u32, slot::RECIRC_ID;
        conj_id, set_conj_id, u32, slot::CONJ_ID;
        ct_mark, set_ct_mark, u32, slot::CT_MARK;
        ct_state, set_ct_state, u16, slot::CT_STATE;
        ct_zone, set_ct_zone, u16, slot::CT_ZONE;
        ct_nw_src, set_ct_nw_src, u32, slot::CT_NW_SRC;
        ct_nw_dst, set_ct_nw_dst, u32, slot::CT_NW_DST;
        ct_nw_proto, set_ct_nw_proto, u8, slot::CT_NW_PROTO;
        ct_tp_src, set_ct_tp_src, u16, slot::CT_TP_SRC;
        ct_tp_dst, set_ct_tp_dst, u16, slot::CT_TP_DST;
        ipv6_label, set_ipv6_label, u32, slot::IPV6_LABEL;
        tun_src, set_tun_src, u32, slot::TUN_SRC;
        tun_dst, set_tun_dst, u32, slot::TUN_DST;
        dl_type, set_dl_type, u16, slot::DL_TYPE;
        vlan_tci, set_vlan_tci, u16, slot::VLAN_TCI;
        nw_src, set_nw_src, u32, slot::NW_SRC;
        nw_dst, set_nw_dst, u32, slot::NW_DST;
        nw_proto, set_nw_proto, u8, slot::NW_PROTO;
        nw_tos, set_nw_tos, u8, slot::NW_TOS;
        nw_ttl, set_nw_ttl, u8, slot::NW_TTL;
        nw_frag, set_nw_frag, u8, slot::NW_FRAG;
        tcp_flags, set_tcp_flags, u16, slot::TCP_FLAGS;
        vlan_tci_inner, set_vlan_tci_inner, u16, slot::VLAN_TCI_INNER;
        tp_src, set_tp_src, u16, slot::TP_SRC;
        tp_dst, set_tp_dst, u16, slot::TP_DST;
    }

    #[inline(always)]
    pub fn tun_id(&self) -> u64 {
        self.w[slot::TUN_ID.word as usize]
    }
    #[inline(always)]
    pub fn set_tun_id(&mut self, v: u64) {
        self.w[slot::TUN_ID.word as usize] = v;
    }
    #[inline(always)]
    pub fn metadata(&self) -> u64 {
        self.w[slot::METADATA.word as usize]
    }
    #[inline(always)]
    pub fn set_metadata(&mut self, v: u64) {
        self.w[slot::METADATA.word as usize] = v;
    }

    /// Ethernet addresses are stored as 48-bit integers, first octet most significant.
    #[inline(always)]
    pub fn dl_src(&self) -> [u8; 6] {
        mac_from_u64(self.get(slot::DL_SRC) as u64)
    }
    #[inline(always)]
    pub fn set_dl_src(&mut self, mac: [u8; 6]) {
        self.set(slot::DL_SRC, mac_to_u64(mac) as u128)
    }
    #[inline(always)]
    pub fn dl_dst(&self) -> [u8; 6] {
        mac_from_u64(self.get(slot::DL_DST) as u64)
    }
    #[inline(always)]
    pub fn set_dl_dst(&mut self, mac: [u8; 6]) {
        self.set(slot::DL_DST, mac_to_u64(mac) as u128)
    }
    #[inline(always)]
    pub fn arp_sha(&self) -> [u8; 6] {
        mac_from_u64(self.get(slot::ARP_SHA) as u64)
    }
    #[inline(always)]
    pub fn set_arp_sha(&mut self, mac: [u8; 6]) {
        self.set(slot::ARP_SHA, mac_to_u64(mac) as u128)
    }
    #[inline(always)]
    pub fn arp_tha(&self) -> [u8; 6] {
        mac_from_u64(self.get(slot::ARP_THA) as u64)
    }
    #[inline(always)]
    pub fn set_arp_tha(&mut self, mac: [u8; 6]) {
        self.set(slot::ARP_THA, mac_to_u64(mac) as u128)
    }

    /// The VLAN ID of the outer tag (meaningful when [`Flow::vlan_tci`] has the CFI bit).
    pub fn dl_vlan(&self) -> u16 {
        self.vlan_tci() & 0x0fff
    }
    /// The priority code point of the outer tag.
    pub fn dl_vlan_pcp(&self) -> u8 {
        (self.vlan_tci() >> 13) as u8
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flow[")?;
        let mut first = true;
        for (i, w) in self.w.iter().enumerate() {
            if *w != 0 {
                if !first {
                    write!(f, " ")?;
                }
                first = false;
                write!(f, "{i}:{w:#x}")?;
            }
        }
        write!(f, "]")
    }
}

/// A 48-bit Ethernet address as an integer, first octet most significant.
#[inline(always)]
pub fn mac_to_u64(mac: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

#[inline(always)]
pub fn mac_from_u64(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_overlap() {
        let mut all: Vec<Slot> = vec![
            slot::IN_PORT,
            slot::RECIRC_ID,
            slot::CONJ_ID,
            slot::CT_MARK,
            slot::CT_STATE,
            slot::CT_ZONE,
            slot::IPV6_LABEL,
            slot::TUN_SRC,
            slot::TUN_DST,
            slot::TUN_ID,
            slot::METADATA,
            slot::CT_LABEL,
            slot::DL_DST,
            slot::DL_TYPE,
            slot::DL_SRC,
            slot::VLAN_TCI,
            slot::NW_SRC,
            slot::NW_DST,
            slot::NW_PROTO,
            slot::NW_TOS,
            slot::NW_TTL,
            slot::NW_FRAG,
            slot::TCP_FLAGS,
            slot::VLAN_TCI_INNER,
            slot::TP_SRC,
            slot::TP_DST,
            slot::ARP_SHA,
            slot::ARP_THA,
            slot::IPV6_SRC,
            slot::IPV6_DST,
            slot::ND_TARGET,
            slot::CT_NW_SRC,
            slot::CT_NW_DST,
            slot::CT_NW_PROTO,
            slot::CT_TP_SRC,
            slot::CT_TP_DST,
        ];
        all.extend((0..16).map(slot::reg));
        let mut used = Flow::ZERO;
        for s in all {
            let m = Flow::mask_of(s);
            assert_eq!(m.count_ones(), s.bits as u32, "{s:?}");
            assert!(used.and(&m).is_zero(), "{s:?} overlaps another slot");
            used.or_assign(&m);
        }
    }

    #[test]
    fn accessors_round_trip() {
        let mut f = Flow::ZERO;
        f.set_in_port(7);
        f.set_dl_src([1, 2, 3, 4, 5, 6]);
        f.set_dl_type(0x0800);
        f.set_reg(3, 0xdead_beef);
        f.set_ipv6_src(0x2001_0db8 << 96 | 1);
        f.set_tp_dst(80);
        assert_eq!(f.in_port(), 7);
        assert_eq!(f.dl_src(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.dl_type(), 0x0800);
        assert_eq!(f.reg(3), 0xdead_beef);
        assert_eq!(f.reg(2), 0);
        assert_eq!(f.ipv6_src(), 0x2001_0db8 << 96 | 1);
        assert_eq!(f.tp_dst(), 80);
        assert_eq!(f.get(slot::TP_DST), 80);
    }
}
