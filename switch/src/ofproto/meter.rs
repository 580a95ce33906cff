//! Meters: token buckets that rules send packets through with `meter:N`.
//!
//! The bucket of each band is shared by every worker and kept in atomics: a packet
//! refills the bucket for the time since the last refill (one worker wins the refill of
//! an interval, by compare-and-swap on its timestamp), then takes its cost out if there is
//! enough. No lock is taken per packet; the table of meters has a lock, which only the
//! translation of a new flow (and the control path) takes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use vswitch_proto::meter::{MeterSpec, MeterUnit};

/// One band's bucket and counters.
#[derive(Debug)]
struct BandState {
    /// Tokens: bits for kbps, thousandths of a packet for pktps.
    tokens: AtomicU64,
    /// When the bucket was last refilled (ms on the switch's clock).
    refilled_ms: AtomicU64,
    /// Tokens added per millisecond.
    rate: u64,
    /// Bucket size.
    capacity: u64,
    /// Packets and bytes this band dropped.
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl BandState {
    fn refill(&self, now_ms: u64) {
        let last = self.refilled_ms.load(Ordering::Relaxed);
        if now_ms <= last
            || self
                .refilled_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let add = (now_ms - last).saturating_mul(self.rate);
        let cap = self.capacity;
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                Some(t.saturating_add(add).min(cap))
            });
    }

    /// Take `cost` tokens; false when there are not enough (the band is exceeded).
    fn take(&self, cost: u64) -> bool {
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| t.checked_sub(cost))
            .is_ok()
    }
}

/// A meter: its configuration and its buckets and counters.
#[derive(Debug)]
pub struct Meter {
    pub spec: MeterSpec,
    pub created_ms: u64,
    bands: Vec<BandState>,
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
}

/// A meter's counters as `meter-stats` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub duration_ms: u64,
    /// Packets and bytes dropped by each band.
    pub bands: Vec<(u64, u64)>,
}

impl Meter {
    /// A meter with full buckets.
    pub fn new(spec: MeterSpec, now_ms: u64) -> Meter {
        let bands = spec
            .bands
            .iter()
            .map(|b| {
                // kbps: rate kbit/s is `rate` bits per ms, a burst of B kbit is B * 1000
                // bits; pktps: `rate` thousandths of a packet per ms. Without the burst
                // flag a bucket holds one second of rate (as Open vSwitch's userspace
                // datapath).
                let rate = b.rate as u64;
                let capacity = if spec.burst {
                    b.burst_size as u64 * 1000
                } else {
                    rate * 1000
                };
                BandState {
                    tokens: AtomicU64::new(capacity),
                    refilled_ms: AtomicU64::new(now_ms),
                    rate,
                    capacity,
                    packets: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                }
            })
            .collect();
        Meter {
            spec,
            created_ms: now_ms,
            bands,
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        }
    }

    /// Meter one packet of `len` bytes at `now_ms`: false if a band drops it. Every band
    /// is charged; of the bands exceeded, the one with the highest rate counts the drop
    /// (OpenFlow applies that band).
    pub fn admit(&self, len: usize, now_ms: u64) -> bool {
        self.packets_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        let cost = match self.spec.unit {
            MeterUnit::Kbps => len as u64 * 8,
            MeterUnit::Pktps => 1000,
        };
        let mut exceeded: Option<usize> = None;
        for (i, b) in self.bands.iter().enumerate() {
            b.refill(now_ms);
            if !b.take(cost) && exceeded.is_none_or(|e| self.bands[e].rate < b.rate) {
                exceeded = Some(i);
            }
        }
        match exceeded {
            Some(i) => {
                self.bands[i].packets.fetch_add(1, Ordering::Relaxed);
                self.bands[i].bytes.fetch_add(len as u64, Ordering::Relaxed);
                false
            }
            None => true,
        }
    }

    pub fn stats(&self, now_ms: u64) -> MeterStats {
        MeterStats {
            packets_in: self.packets_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            duration_ms: now_ms.saturating_sub(self.created_ms),
            bands: self
                .bands
                .iter()
                .map(|b| {
                    (
                        b.packets.load(Ordering::Relaxed),
                        b.bytes.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }
}

/// The bridge's meters, shared by every pipeline snapshot.
#[derive(Debug, Default)]
pub struct MeterTable {
    meters: RwLock<BTreeMap<u32, Arc<Meter>>>,
}

impl MeterTable {
    pub fn get(&self, id: u32) -> Option<Arc<Meter>> {
        self.read().get(&id).cloned()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.read().contains_key(&id)
    }

    pub fn all(&self) -> Vec<Arc<Meter>> {
        self.read().values().cloned().collect()
    }

    pub(crate) fn insert(&self, m: Meter) {
        let id = m.spec.meter_id;
        self.write().insert(id, Arc::new(m));
    }

    pub(crate) fn remove(&self, id: u32) -> Option<Arc<Meter>> {
        self.write().remove(&id)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Arc<Meter>>> {
        // A panic while holding the lock leaves the map itself consistent.
        self.meters.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u32, Arc<Meter>>> {
        self.meters.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::text::parse_meter;

    fn meter(line: &str) -> Meter {
        Meter::new(parse_meter(line).unwrap(), 0)
    }

    #[test]
    fn pktps_drop_band_passes_the_rate_and_drops_the_rest() {
        let m = meter("meter=1,pktps,bands=type=drop,rate=10");
        // A full bucket holds one second: 10 packets pass, the 11th is dropped.
        let passed = (0..11).filter(|_| m.admit(100, 0)).count();
        assert_eq!(passed, 10);
        // 100 ms later one more packet's worth of tokens is back.
        assert!(m.admit(100, 100));
        assert!(!m.admit(100, 100));
        let s = m.stats(1000);
        assert_eq!((s.packets_in, s.bytes_in), (13, 1300));
        assert_eq!(s.bands, vec![(2, 200)]);
    }

    #[test]
    fn kbps_burst_limits_by_bits() {
        // 1000 kbit/s with a 100 kbit burst: 100,000 bits = 12,500 bytes at once.
        let m = meter("meter=1,kbps,burst,bands=type=drop,rate=1000,burst_size=100");
        let passed = (0..20).filter(|_| m.admit(1000, 0)).count();
        assert_eq!(passed, 12);
        // 1 ms gives 1000 bits back: not enough for 8000 bits, 8 ms is.
        assert!(!m.admit(1000, 1));
        assert!(m.admit(1000, 9));
    }

    #[test]
    fn workers_share_one_bucket() {
        let m = Arc::new(meter("meter=1,pktps,bands=type=drop,rate=1000"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || (0..1000).filter(|_| m.admit(64, 0)).count())
            })
            .collect();
        let passed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(passed, 1000);
        assert_eq!(m.stats(0).bands[0].0, 3000);
    }
}
