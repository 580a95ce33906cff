//! IEEE 802.1Q VLAN tags and 802.1ad (QinQ) tag stacks.
//!
//! A tag sits after the MAC addresses: a TPID (0x8100, or 0x88a8 for the outer
//! tag of QinQ) in the place of the EtherType, then the 2-byte TCI and the inner
//! EtherType. [`VlanTag`] views the 4 bytes that start *after* the TPID (TCI +
//! inner EtherType); the caller has already read the TPID.

use super::ethernet::{self, EtherType};
use super::{Error, Result, read_u16, write_u16};

mod field {
    use crate::wire::field::*;

    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// The length of one tag in a frame (TPID + TCI).
pub const TAG_LEN: usize = 4;

/// The length a [`VlanTag`] view needs: TCI + inner EtherType.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of a VLAN tag's TCI and the EtherType that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wrap a buffer without checking its length; accessors may panic.
    pub const fn new_unchecked(buffer: T) -> VlanTag<T> {
        VlanTag { buffer }
    }

    /// Wrap a buffer, checking that it holds TCI and EtherType.
    pub fn new_checked(buffer: T) -> Result<VlanTag<T>> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// Return `Err` if the buffer is shorter than 4 bytes.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the whole tag control information field.
    pub fn tci(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::TCI])
    }

    /// Return the priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Return the drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// Return the VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Return the EtherType that follows the tag.
    pub fn ethertype(&self) -> EtherType {
        read_u16(&self.buffer.as_ref()[field::ETHERTYPE]).into()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VlanTag<&'a T> {
    /// Return what follows the tag.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Set the whole tag control information field.
    pub fn set_tci(&mut self, value: u16) {
        write_u16(&mut self.buffer.as_mut()[field::TCI], value);
    }

    /// Set the priority code point; only the low 3 bits of `value` are used.
    pub fn set_pcp(&mut self, value: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(value & 0x7) << 13);
        self.set_tci(tci);
    }

    /// Set the drop eligible indicator.
    pub fn set_dei(&mut self, value: bool) {
        let tci = (self.tci() & !0x1000) | if value { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Set the VLAN identifier; only the low 12 bits of `value` are used.
    pub fn set_vid(&mut self, value: u16) {
        let tci = (self.tci() & 0xf000) | (value & 0x0fff);
        self.set_tci(tci);
    }

    /// Set the EtherType that follows the tag.
    pub fn set_ethertype(&mut self, value: EtherType) {
        write_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], value.into());
    }
}

/// Where a frame's L3 header starts, and the VLAN tags before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L2Layout {
    /// The TCI of the outer tag (the only tag of a single-tagged frame).
    pub outer_tci: Option<u16>,
    /// The TCI of the inner tag of a double-tagged frame.
    pub inner_tci: Option<u16>,
    /// The EtherType of the L3 header.
    pub ethertype: EtherType,
    /// The offset of the L3 header: 14, 18 or 22.
    pub l3_offset: usize,
}

impl L2Layout {
    /// Return the number of VLAN tags.
    pub fn tags(&self) -> usize {
        usize::from(self.outer_tci.is_some()) + usize::from(self.inner_tci.is_some())
    }
}

/// Work out the L3 offset of a frame with 0, 1 or 2 VLAN tags.
///
/// A tag is a TPID of 0x8100, or for the outer tag 0x88a8. A second tag must
/// have TPID 0x8100. Returns `Err` for a frame too short for its tags, a third
/// tag, or 0x88a8 inside a tag.
pub fn l2_layout(frame: &[u8]) -> Result<L2Layout> {
    let eth = ethernet::EthernetFrame::new_checked(frame)?;
    let mut layout = L2Layout {
        outer_tci: None,
        inner_tci: None,
        ethertype: eth.ethertype(),
        l3_offset: ethernet::HEADER_LEN,
    };
    if !matches!(layout.ethertype, EtherType::Vlan | EtherType::QinQ) {
        return Ok(layout);
    }
    let outer = VlanTag::new_checked(eth.payload())?;
    layout.outer_tci = Some(outer.tci());
    layout.ethertype = outer.ethertype();
    layout.l3_offset += TAG_LEN;
    match layout.ethertype {
        EtherType::Vlan => {}
        EtherType::QinQ => return Err(Error),
        _ => return Ok(layout),
    }
    let inner = VlanTag::new_checked(outer.payload())?;
    layout.inner_tci = Some(inner.tci());
    layout.ethertype = inner.ethertype();
    layout.l3_offset += TAG_LEN;
    if matches!(layout.ethertype, EtherType::Vlan | EtherType::QinQ) {
        return Err(Error);
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ether(type=0x88a8)/Dot1Q(prio=5,id=1,vlan=100)/Dot1Q(vlan=200)/IP()/UDP()
    static QINQ_FRAME: [u8; 50] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0xb0,
        0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00, 0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00,
        0x40, 0x11, 0x66, 0xce, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00,
        0x02, 0x00, 0x08, 0xeb, 0xd8,
    ];

    // Ether()/Dot1Q(prio=3,vlan=42)/ARP(): the first 20 bytes.
    static VLAN_FRAME: [u8; 20] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x60,
        0x2a, 0x08, 0x06, 0x00, 0x01,
    ];

    #[test]
    fn deconstruct() {
        let tag = VlanTag::new_checked(&QINQ_FRAME[14..]).unwrap();
        assert_eq!(tag.tci(), 0xb064);
        assert_eq!(tag.pcp(), 5);
        assert!(tag.dei());
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.ethertype(), EtherType::Vlan);
        let inner = VlanTag::new_checked(tag.payload()).unwrap();
        assert_eq!((inner.pcp(), inner.dei(), inner.vid()), (0, false, 200));
        assert_eq!(inner.ethertype(), EtherType::Ipv4);
        assert_eq!(inner.payload(), &QINQ_FRAME[22..]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xa5; 4];
        let mut tag = VlanTag::new_unchecked(&mut bytes);
        tag.set_tci(0);
        tag.set_pcp(5);
        tag.set_dei(true);
        tag.set_vid(100);
        tag.set_ethertype(EtherType::Vlan);
        assert_eq!(&bytes[..], &QINQ_FRAME[14..18]);
        let mut tag = VlanTag::new_unchecked(&mut bytes);
        tag.set_dei(false);
        tag.set_pcp(0xff);
        tag.set_vid(0xffff);
        assert_eq!(tag.tci(), 0xefff);
    }

    #[test]
    fn layouts() {
        let untagged = [&VLAN_FRAME[..12], &[0x08, 0x00][..]].concat();
        assert_eq!(
            l2_layout(&untagged),
            Ok(L2Layout {
                outer_tci: None,
                inner_tci: None,
                ethertype: EtherType::Ipv4,
                l3_offset: 14
            })
        );
        let single = l2_layout(&VLAN_FRAME).unwrap();
        assert_eq!(single.outer_tci, Some(0x602a));
        assert_eq!(
            (single.ethertype, single.l3_offset, single.tags()),
            (EtherType::Arp, 18, 1)
        );
        let double = l2_layout(&QINQ_FRAME).unwrap();
        assert_eq!(
            (double.outer_tci, double.inner_tci),
            (Some(0xb064), Some(0x00c8))
        );
        assert_eq!(
            (double.ethertype, double.l3_offset, double.tags()),
            (EtherType::Ipv4, 22, 2)
        );
    }

    #[test]
    fn bad_stacks() {
        // A third tag.
        let mut three = QINQ_FRAME.to_vec();
        three[20..22].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(l2_layout(&three), Err(Error));
        // An S-tag inside a C-tag.
        let mut s_in_c = QINQ_FRAME.to_vec();
        s_in_c[12..14].copy_from_slice(&[0x81, 0x00]);
        s_in_c[16..18].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(l2_layout(&s_in_c), Err(Error));
    }

    #[test]
    fn truncated() {
        for n in 0..HEADER_LEN {
            assert_eq!(VlanTag::new_checked(&QINQ_FRAME[14..14 + n]), Err(Error));
        }
        for n in 0..22 {
            assert_eq!(l2_layout(&QINQ_FRAME[..n]), Err(Error), "{n}");
        }
        assert_eq!(l2_layout(&QINQ_FRAME[..22]).unwrap().l3_offset, 22);
    }
}
