//! Shared helpers of the benchmarks: packets and rule sets to measure against.
#![forbid(unsafe_code)]
