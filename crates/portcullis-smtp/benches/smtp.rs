//! Criterion benches: command parsing and DATA decoding against smtp-proto.
#![allow(missing_docs)]

fn main() {}
