//! Helpers shared by the workspace's integration tests and benchmarks.
//!
//! - [`cni`]: what a container runtime (libcni, containerd) does with a CNI configuration
//!   list: plugins run with bounded time, request configurations derived, results cached.
//! - [`e2e`]: the end-to-end harness: Pods as network namespaces, a `vswitchd` of the
//!   test's own, `vswitchctl`, bounded traffic generators (tests/tests/e2e.rs, as root).
//! - [`ovs`]: Open vSwitch as a peer: private daemons in a namespace, the same flows.
//! - [`k8s`]: the daemon's own Kubernetes pipeline (DESIGN §5), made by its compilers, as
//!   a bridge or as flow text, for tests and benchmarks.
//! - [`svc`]: Services end to end: endpoint servers and a client that counts who answered.
//! - [`netpol`]: NetworkPolicy end to end as upstream's netpol suite models it: nine Pods
//!   in three namespaces on two nodes, probed each to each, truth tables compared.
//! - [`script`]: pipeline tests written in flow syntax: flows, groups, and packets to trace
//!   with the tables and datapath actions expected.
#![forbid(unsafe_code)]

pub mod cni;
pub mod e2e;
pub mod k8s;
pub mod netpol;
pub mod ovs;
pub mod script;
pub mod svc;
