//! vswitch-proto: the data and the text of the switch, with no I/O.
//!
//! - [`flow`]: the packed [`Flow`] that is at once a packet's key, a match value and a mask;
//! - [`field`]: the user-visible fields, their names and prerequisites;
//! - [`matching`], [`action`], [`flowmod`], [`group`]: rules as data;
//! - [`text`]: the `ovs-ofctl` flow syntax (parse with `FromStr`-like functions, print with
//!   `Display`), where parse, print, parse gives back the same value;
//! - [`rpc`]: the JSON-RPC 2.0 messages of the control socket;
//! - [`conntrack`]: the text of the connection-tracking commands (limits, tuples, states);
//! - [`cni`]: the CNI contract shared by the `vswitch-cni` plugin and the switch;
//! - [`k8s`]: Kubernetes manifests (YAML or JSON) read into objects, and the fields the
//!   switch takes from a Node.
#![forbid(unsafe_code)]

pub mod action;
pub mod cni;
pub mod conntrack;
pub mod field;
pub mod flow;
pub mod flowmod;
pub mod group;
pub mod k8s;
pub mod matching;
pub mod meter;
pub mod net;
pub mod rpc;
pub mod text;

pub use action::{Action, SubField};
pub use field::FieldId;
pub use flow::{Flow, Slot};
pub use flowmod::{DEFAULT_PRIORITY, FlowSpec, Usage};
pub use group::{Bucket, GroupSpec, GroupType};
pub use matching::Match;
