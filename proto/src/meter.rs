//! Meters (OpenFlow 1.3): rate limiters that rules send packets through with `meter:N`.

use serde::{Deserialize, Serialize};

/// Highest meter number (OpenFlow's OFPM_MAX).
pub const METER_MAX: u32 = 0xffff_0000;

/// What a band's rate and burst count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MeterUnit {
    /// Kilobits per second; burst in kilobits.
    Kbps,
    /// Packets per second; burst in packets.
    Pktps,
}

/// One band: above `rate`, packets are dropped (the only band type this switch has).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Band {
    pub rate: u32,
    /// 0 unless the meter has the `burst` flag.
    pub burst_size: u32,
}

/// A meter as `add-meter` takes it: `meter=1,kbps,burst,bands=type=drop,rate=1000,burst_size=100`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MeterSpec {
    pub meter_id: u32,
    pub unit: MeterUnit,
    pub burst: bool,
    pub stats: bool,
    pub bands: Vec<Band>,
}
