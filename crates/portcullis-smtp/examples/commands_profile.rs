//! A fixed amount of command parsing per mode, for instruction counts
//! under callgrind (repeatable on a loaded machine, unlike wall time). The
//! workloads are the `commands` bench group's:
//!
//! ```text
//! cargo build --profile bench -p portcullis-smtp --example commands_profile
//! valgrind --tool=callgrind $CARGO_TARGET_DIR/release/examples/commands_profile validated 100
//! valgrind --tool=callgrind $CARGO_TARGET_DIR/release/examples/commands_profile smtp-proto 100
//! ```
//!
//! Modes: `none` (build the input only), `validated` (the headline),
//! `owned` (paths parsed into owned core types), `unvalidated`
//! (`parse_command` alone), `smtp-proto`, `session` (the whole `Session`).
//! Per pass over the mix:
//! (mode − none) / iterations.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

#[path = "../benches/support/commands.rs"]
mod commands;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "validated".into());
    let iters: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let input = commands::command_mix();
    let client = portcullis_core::Client::new("192.0.2.1:25".parse().unwrap());
    let mut out = Vec::with_capacity(64 * 1024);
    let mut n = 0;
    for _ in 0..iters {
        n += match mode.as_str() {
            "none" => 0,
            "validated" => commands::validated(black_box(&input)),
            "owned" => commands::owned_paths(black_box(&input)),
            "unvalidated" => commands::path_unvalidated(black_box(&input)),
            "smtp-proto" => commands::smtp_proto(black_box(&input)),
            "session" => commands::session(black_box(&input), &client, &mut out),
            other => panic!("unknown mode {other}"),
        };
    }
    println!("{n}");
}
