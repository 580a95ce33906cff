//! A packet in the datapath: its bytes (with headroom to grow headers in front), its
//! offload state, and the metadata that came with it.

use crate::wire::virtio::VirtioNetHdr;
use vswitch_proto::flow::Flow;

/// Bytes kept free in front of a frame, so that a VLAN tag or a VXLAN header (50 bytes)
/// can be added without moving the payload.
pub const HEADROOM: usize = 128;

/// Tunnel metadata of a packet that arrived through, or leaves through, a tunnel port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelMd {
    pub id: u64,
    pub src: u32,
    pub dst: u32,
}

#[derive(Clone, Debug)]
pub struct Packet {
    buf: Vec<u8>,
    head: usize,
    len: usize,
    /// Offload state as the frame arrived (or as it must leave): partial checksum,
    /// segmentation size. All zero for an ordinary frame.
    pub vnet: VirtioNetHdr,
    pub in_port: u32,
    pub tun: TunnelMd,
    /// Metadata of a recirculated packet (registers, recirc_id, conntrack fields).
    pub(crate) recirc: Option<Box<Flow>>,
    pub(crate) recirc_depth: u8,
}

impl Default for Packet {
    fn default() -> Packet {
        Packet::with_capacity(0)
    }
}

impl Packet {
    /// An empty packet with room for a frame of `cap` bytes after the headroom.
    pub fn with_capacity(cap: usize) -> Packet {
        Packet {
            buf: vec![0; HEADROOM + cap],
            head: HEADROOM,
            len: 0,
            vnet: VirtioNetHdr::default(),
            in_port: 0,
            tun: TunnelMd::default(),
            recirc: None,
            recirc_depth: 0,
        }
    }

    /// A packet holding a copy of `frame`, received on `in_port`.
    pub fn from_frame(frame: &[u8], in_port: u32) -> Packet {
        let mut p = Packet::with_capacity(frame.len());
        p.set_frame(frame);
        p.in_port = in_port;
        p
    }

    /// Replace the frame with a copy of `frame`, keeping the buffer.
    pub fn set_frame(&mut self, frame: &[u8]) {
        self.reset();
        let need = HEADROOM + frame.len();
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        self.buf[HEADROOM..need].copy_from_slice(frame);
        self.len = frame.len();
    }

    /// Forget the frame and metadata, keeping the buffer.
    pub fn reset(&mut self) {
        self.head = HEADROOM;
        self.len = 0;
        self.vnet = VirtioNetHdr::default();
        self.in_port = 0;
        self.tun = TunnelMd::default();
        self.recirc = None;
        self.recirc_depth = 0;
    }

    /// The whole writable area after the headroom, for a port to read a frame into;
    /// follow with [`Packet::set_len`].
    pub fn receive_buffer(&mut self, cap: usize) -> &mut [u8] {
        self.reset();
        if self.buf.len() < HEADROOM + cap {
            self.buf.resize(HEADROOM + cap, 0);
        }
        &mut self.buf[HEADROOM..]
    }

    /// Like [`Packet::receive_buffer`], starting `prefix` bytes before the frame (inside
    /// the headroom), for a device that writes a header (virtio-net) before each frame.
    pub fn receive_buffer_with_prefix(&mut self, prefix: usize, cap: usize) -> &mut [u8] {
        debug_assert!(prefix <= HEADROOM);
        self.reset();
        if self.buf.len() < HEADROOM + cap {
            self.buf.resize(HEADROOM + cap, 0);
        }
        &mut self.buf[HEADROOM - prefix.min(HEADROOM)..]
    }

    /// Set the frame length after writing into [`Packet::receive_buffer`].
    /// The largest frame the buffer holds without growing.
    pub fn capacity(&self) -> usize {
        self.buf.len() - HEADROOM
    }

    /// Append `bytes` to the frame, if the buffer has room for them (it does not grow:
    /// receive buffers are sized once). Whether they were appended.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let end = self.head + self.len;
        match self.buf.get_mut(end..end + bytes.len()) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
                true
            }
            None => false,
        }
    }

    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.buf.len() - self.head);
    }

    /// The `n` bytes just before the frame (in the headroom): a header a port read with
    /// [`Packet::receive_buffer_with_prefix`].
    pub fn prefix(&self, n: usize) -> &[u8] {
        &self.buf[self.head.saturating_sub(n)..self.head]
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Grow the frame by `n` bytes at the front, moving the first `keep` bytes (the
    /// Ethernet addresses) to the new front. The `n` bytes after them are left as they
    /// were. Returns false (and changes nothing) if `keep` exceeds the frame.
    pub(crate) fn open_gap(&mut self, keep: usize, n: usize) -> bool {
        if keep > self.len {
            return false;
        }
        if self.head < n {
            let extra = n + HEADROOM;
            let mut nb = vec![0; self.buf.len() + extra];
            nb[self.head + extra..self.head + extra + self.len]
                .copy_from_slice(&self.buf[self.head..self.head + self.len]);
            self.buf = nb;
            self.head += extra;
        }
        self.buf
            .copy_within(self.head..self.head + keep, self.head - n);
        self.head -= n;
        self.len += n;
        self.shift_offload(n as i32);
        true
    }

    /// Remove `n` bytes after the first `keep` bytes.
    pub(crate) fn close_gap(&mut self, keep: usize, n: usize) -> bool {
        if keep + n > self.len {
            return false;
        }
        self.buf
            .copy_within(self.head..self.head + keep, self.head + n);
        self.head += n;
        self.len -= n;
        self.shift_offload(-(n as i32));
        true
    }

    fn shift_offload(&mut self, by: i32) {
        if self.vnet.flags & VirtioNetHdr::NEEDS_CSUM != 0 {
            self.vnet.csum_start = (self.vnet.csum_start as i32 + by).max(0) as u16;
        }
        if self.vnet.gso_type != VirtioNetHdr::GSO_NONE && self.vnet.hdr_len != 0 {
            self.vnet.hdr_len = (self.vnet.hdr_len as i32 + by).max(0) as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_move_the_addresses() {
        let frame: Vec<u8> = (0u8..20).collect();
        let mut p = Packet::from_frame(&frame, 1);
        assert!(p.open_gap(12, 4));
        assert_eq!(p.len(), 24);
        assert_eq!(&p.data()[..12], &frame[..12]);
        assert_eq!(&p.data()[16..], &frame[12..]);
        assert!(p.close_gap(12, 4));
        assert_eq!(p.data(), &frame[..]);
        assert!(!p.close_gap(20, 4));
    }

    #[test]
    fn gap_beyond_headroom_reallocates() {
        let mut p = Packet::from_frame(&[7; 14], 1);
        for _ in 0..40 {
            assert!(p.open_gap(12, 4));
        }
        assert_eq!(p.len(), 14 + 160);
        assert_eq!(&p.data()[..12], &[7; 12]);
        assert_eq!(&p.data()[172..], &[7; 2]);
    }
}
