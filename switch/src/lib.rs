//! vswitch: the datapath of a userspace virtual switch for Kubernetes Pod networking.
//!
//! A packet's way through this crate:
//!
//! ```text
//! bytes -> flow::extract (FlowKey) -> dp::FastPath: exact-match cache -> megaflow cache
//!       -> on a miss, ofproto::xlate runs the tables (cls::Classifier per table)
//!       -> datapath actions + the mask they depend on -> installed as a megaflow
//!       -> dp::exec rewrites the bytes and hands them to ports
//! ```
//!
//! Only the `sys` module may use `unsafe`.

pub mod cls;
pub mod ct;
pub mod ctl;
pub mod daemon;
pub mod dp;
pub mod flow;
pub mod k8s;
pub mod ofproto;
pub mod port;
pub mod store;
pub mod sys;
pub mod wire;
