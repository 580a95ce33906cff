//! Connection tracking and NAT: the tracker behind the datapath's `ct(...)` action.
//!
//! - [`tcp`]: the TCP state machine with window tracking (Linux's nf_conntrack_proto_tcp).
//! - [`rewrite`]: NAT on a packet's bytes (addresses, ports, ICMP ids, the header quoted
//!   inside an ICMP error), checksums kept right on full and partial-checksum frames.

pub mod rewrite;
pub mod tcp;
