//! The TCP state machine (filled in by the TCP work).
