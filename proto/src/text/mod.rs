//! The flow syntax of `ovs-ofctl`, where it overlaps with this switch.
//!
//! PLACEHOLDER: the parser and printer are being written; the public API below is the
//! contract the rest of the workspace codes against.

use crate::action::Action;
use crate::flowmod::{FlowSpec, FlowStats, Usage};
use crate::group::GroupSpec;
use crate::matching::Match;
use std::fmt;

/// Port names known to whoever parses or prints flows (the switch's port table).
pub trait PortNames {
    /// The number of the port called `name`.
    fn port_no(&self, name: &str) -> Option<u32>;
    /// The name of port `no`.
    fn port_name(&self, no: u32) -> Option<String>;
}

/// No port names: ports are written as numbers (or reserved names such as `LOCAL`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPortNames;

impl PortNames for NoPortNames {
    fn port_no(&self, _name: &str) -> Option<u32> {
        None
    }
    fn port_name(&self, _no: u32) -> Option<String> {
        None
    }
}

/// A flow text that could not be parsed: where (byte offset into the input) and what was
/// expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {}: {message}", offset + 1)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}
