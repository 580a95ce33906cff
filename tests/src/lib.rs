//! Helpers shared by the workspace's integration tests.
#![forbid(unsafe_code)]
