//! An in-memory port: frames are injected into its receive queue and collected from its
//! transmit queue. For tests and demos that need no kernel devices.

use crate::wire::virtio::VirtioNetHdr;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// Frames waiting in either direction beyond this are dropped (oldest kept).
const QUEUE_LIMIT: usize = 65_536;

#[derive(Debug, Default)]
pub struct MemoryPort {
    rx: Mutex<VecDeque<Vec<u8>>>,
    tx: Mutex<VecDeque<(Vec<u8>, VirtioNetHdr)>>,
}

impl MemoryPort {
    /// Queue a frame as if it had arrived on the port. Returns false if the queue is full.
    pub fn inject(&self, frame: &[u8]) -> bool {
        let mut q = self.rx.lock();
        if q.len() >= QUEUE_LIMIT {
            return false;
        }
        q.push_back(frame.to_vec());
        true
    }

    pub(crate) fn pop_rx(&self) -> Option<Vec<u8>> {
        self.rx.lock().pop_front()
    }

    pub fn has_rx(&self) -> bool {
        !self.rx.lock().is_empty()
    }

    pub(crate) fn push_tx(&self, frame: &[u8], hdr: &VirtioNetHdr) {
        let mut q = self.tx.lock();
        if q.len() < QUEUE_LIMIT {
            q.push_back((frame.to_vec(), *hdr));
        }
    }

    /// Take every frame sent out of the port so far.
    pub fn drain_tx(&self) -> Vec<Vec<u8>> {
        self.tx.lock().drain(..).map(|(f, _)| f).collect()
    }
}
