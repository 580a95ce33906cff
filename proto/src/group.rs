//! Groups (`add-group`): a set of buckets of actions, chosen all (`all`) or one by a hash
//! of the packet's 5-tuple (`select`).

use crate::action::Action;
use crate::field::FieldId;
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
    /// How a select group picks its bucket (`selection_method=`); `None`: the default,
    /// which Open vSwitch implements as `dp_hash`.
    #[serde(default)]
    pub selection: Option<Selection>,
    /// `affinity=SECONDS` (a vswitch extension, not in Open vSwitch): a select group
    /// sends a new connection from a source address to the bucket that address's last
    /// one went to, unless that was more than SECONDS ago or the bucket is gone
    /// (Kubernetes' `sessionAffinity: ClientIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<u32>,
}

/// `selection_method=hash|dp_hash`, `selection_method_param=` and `fields(...)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selection {
    pub method: SelectionMethod,
    /// The hash basis (Open vSwitch's `selection_method_param`).
    pub param: u64,
    /// The fields hashed by `hash`, each under a mask (the field's maximum for a whole field),
    /// in Open vSwitch's field order.
    pub fields: Vec<(FieldId, u128)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectionMethod {
    /// A hash of exactly the `fields`.
    Hash,
    /// A hash of the 5-tuple (Open vSwitch's datapath hash).
    DpHash,
}
