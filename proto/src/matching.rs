//! A match: a [`Flow`] value and a [`Flow`] mask of the bits that must equal it.

use crate::field::FieldId;
use crate::flow::Flow;
use serde::{Deserialize, Serialize};

/// Which packets a rule applies to: those whose flow equals `flow` on every bit of `mask`.
///
/// Invariant: `flow & mask == flow` (bits outside the mask are zero), so two matches that
/// select the same packets compare equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Match {
    pub flow: Flow,
    pub mask: Flow,
}

impl Match {
    /// The match that selects every packet.
    pub const CATCHALL: Match = Match {
        flow: Flow::ZERO,
        mask: Flow::ZERO,
    };

    /// Build from a value and a mask, clearing the value's bits outside the mask.
    pub fn new(flow: Flow, mask: Flow) -> Match {
        Match {
            flow: flow.and(&mask),
            mask,
        }
    }

    /// Add `field == value` on the bits of `mask` (other bits of the field keep whatever
    /// this match already required).
    pub fn set_masked(&mut self, field: FieldId, value: u128, mask: u128) {
        let s = field.slot();
        let mask = mask & s.max();
        self.flow.set_masked(s, value & mask, mask);
        let old = self.mask.get(s);
        self.mask.set(s, old | mask);
    }

    /// Add `field == value` exactly.
    pub fn set(&mut self, field: FieldId, value: u128) {
        self.set_masked(field, value, u128::MAX)
    }

    /// The value and mask this match has for a field.
    pub fn get(&self, field: FieldId) -> (u128, u128) {
        let s = field.slot();
        (self.flow.get(s), self.mask.get(s))
    }

    /// Whether the packet flow `key` is selected.
    #[inline]
    pub fn matches(&self, key: &Flow) -> bool {
        key.equal_in(&self.flow, &self.mask)
    }

    /// Open vSwitch's loose match, used by non-strict modify and delete: `rule` is selected
    /// when it is at least as specific as `self` and agrees with `self` on `self`'s bits.
    pub fn loosely_selects(&self, rule: &Match) -> bool {
        self.mask.is_subset_of(&rule.mask) && rule.flow.equal_in(&self.flow, &self.mask)
    }

    pub fn is_catchall(&self) -> bool {
        self.mask.is_zero()
    }
}

impl std::fmt::Debug for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Match{{flow: {:?}, mask: {:?}}}", self.flow, self.mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_selection() {
        let mut crit = Match::CATCHALL;
        crit.set(FieldId::EthType, 0x0800);
        let mut rule = crit;
        rule.set_masked(FieldId::IpDst, 0x0a00_0000, 0xff00_0000);
        assert!(crit.loosely_selects(&rule));
        assert!(!rule.loosely_selects(&crit));
        assert!(Match::CATCHALL.loosely_selects(&rule));
        let mut other = Match::CATCHALL;
        other.set(FieldId::EthType, 0x86dd);
        assert!(!other.loosely_selects(&rule));
    }

    #[test]
    fn value_is_masked() {
        let mut m = Match::CATCHALL;
        m.set_masked(FieldId::Reg0, 0x1234, 0xff);
        assert_eq!(m.get(FieldId::Reg0), (0x34, 0xff));
        let mut key = Flow::ZERO;
        key.set_reg(0, 0xab34);
        assert!(m.matches(&key));
        key.set_reg(0, 0xab35);
        assert!(!m.matches(&key));
    }
}
