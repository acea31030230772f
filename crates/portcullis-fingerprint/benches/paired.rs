//! Paired ratios on a shared, noisy machine: the four measurements run
//! interleaved in short rounds, so load changes hit all of them alike; each
//! round gives a ratio to the parse time of the same round, and the median
//! ratio is reported. Complements the criterion bench (same message).
#![allow(missing_docs, clippy::unwrap_used, clippy::disallowed_methods)] // a bench owns its clock

use mail_parser::MessageParser;
use portcullis_fingerprint::{FingerprintOptions, Fingerprinter};
use std::hint::black_box;
use std::time::Instant;

mod support;

fn time(iters: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() / f64::from(iters)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `--list`: nothing to list.
    }
    let msg = support::sample();
    let parser = MessageParser::default();
    let mut exact_opts = FingerprintOptions::default();
    exact_opts.fuzzy = false;
    let exact = Fingerprinter::new(exact_opts);
    let full = Fingerprinter::default();
    let (rounds, iters) = (60, 200);
    let (mut r_exact, mut r_full, mut r_blake) = (Vec::new(), Vec::new(), Vec::new());
    let mut parse_t = Vec::new();
    for _ in 0..rounds {
        let p = time(iters, || {
            black_box(parser.parse(black_box(&msg[..])).map(|m| m.parts.len()));
        });
        let e = time(iters, || {
            black_box(exact.fingerprint(black_box(&msg)));
        });
        let f = time(iters, || {
            black_box(full.fingerprint(black_box(&msg)));
        });
        let b = time(iters, || {
            black_box(blake3::hash(black_box(&msg)));
        });
        parse_t.push(p);
        r_exact.push(e / p);
        r_full.push(f / p);
        r_blake.push(b / p);
    }
    println!(
        "message {} bytes; {rounds} rounds x {iters} iterations; median parse {:.1} us",
        msg.len(),
        median(&mut parse_t) * 1e6
    );
    println!(
        "median ratio exact / parse           {:.2}",
        median(&mut r_exact)
    );
    println!(
        "median ratio exact+fuzzy / parse     {:.2}",
        median(&mut r_full)
    );
    println!(
        "median ratio blake3 raw / parse      {:.2}",
        median(&mut r_blake)
    );
}
