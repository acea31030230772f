//! A fixed amount of work per mode, for instruction counts under callgrind
//! (repeatable on a loaded machine, unlike wall time):
//!
//! ```text
//! cargo build --release -p portcullis-fingerprint --example profile
//! valgrind --tool=callgrind target/release/examples/profile parse 200
//! valgrind --tool=callgrind target/release/examples/profile exact 200
//! ```
//!
//! Modes: `none` (build the message only), `parse` (`mail-parser` alone,
//! default settings), `exact`, `full` (exact + fuzzy), `blake3`. Subtract
//! `none` from the others, then compare each with `parse`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use mail_parser::MessageParser;
use portcullis_fingerprint::{FingerprintOptions, Fingerprinter};

#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "exact".into());
    let iters: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let msg = support::sample();
    let parser = MessageParser::default();
    let mut exact_opts = FingerprintOptions::default();
    exact_opts.fuzzy = false;
    let exact = Fingerprinter::new(exact_opts);
    let full = Fingerprinter::default();
    for _ in 0..iters {
        match mode.as_str() {
            "none" => {}
            "parse" => {
                black_box(parser.parse(black_box(&msg[..])).map(|m| m.parts.len()));
            }
            "exact" => {
                black_box(exact.fingerprint(black_box(&msg)));
            }
            "full" => {
                black_box(full.fingerprint(black_box(&msg)));
            }
            "blake3" => {
                black_box(blake3::hash(black_box(&msg)));
            }
            other => panic!("unknown mode {other}"),
        }
    }
}
