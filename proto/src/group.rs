//! Groups (`add-group`): a set of buckets of actions, chosen all (`all`) or one by a hash
//! of the packet's 5-tuple (`select`).

use crate::action::Action;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupType {
    /// Every bucket runs, each on its own copy of the packet.
    All,
    /// One bucket runs, chosen by a hash of the 5-tuple and the buckets' weights.
    Select,
    /// The one bucket runs.
    Indirect,
    /// The first live bucket runs (fast failover).
    FastFailover,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Bucket {
    /// `bucket_id:N`; assigned in order from 0 when the text does not say.
    pub bucket_id: u32,
    /// Relative weight for `select` groups (default 1, as Open vSwitch has it).
    pub weight: u16,
    /// `watch_port:P` for fast failover.
    pub watch_port: Option<u32>,
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupSpec {
    pub group_id: u32,
    pub group_type: GroupType,
    pub buckets: Vec<Bucket>,
}
