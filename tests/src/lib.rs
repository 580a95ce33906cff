//! Helpers shared by the workspace's integration tests and benchmarks.
//!
//! - [`k8s`]: a Kubernetes-like ten-table pipeline (the shape DESIGN §5 describes), as flow
//!   text, for tests and benchmarks.
//! - [`script`]: pipeline tests written in flow syntax: flows, groups, and packets to trace
//!   with the tables and datapath actions expected.
#![forbid(unsafe_code)]

pub mod k8s;
pub mod script;
