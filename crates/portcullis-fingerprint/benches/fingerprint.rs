//! Fingerprinting cost against `mail-parser` parsing alone, with raw blake3
//! over the same bytes as the floor. Only ratios within one run mean anything.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mail_parser::MessageParser;
use portcullis_fingerprint::{FingerprintOptions, Fingerprinter};
use std::hint::black_box;

mod support;
use support::sample;

fn bench(c: &mut Criterion) {
    let msg = sample();
    let parser = MessageParser::default();
    let mut exact_opts = FingerprintOptions::default();
    exact_opts.fuzzy = false;
    let exact = Fingerprinter::new(exact_opts);
    let full = Fingerprinter::default();

    let mut g = c.benchmark_group("fingerprint");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("blake3_raw", |b| b.iter(|| blake3::hash(black_box(&msg))));
    g.bench_function("mail_parser_parse", |b| {
        b.iter(|| parser.parse(black_box(&msg[..])).map(|m| m.parts.len()))
    });
    g.bench_function("exact", |b| b.iter(|| exact.fingerprint(black_box(&msg))));
    g.bench_function("exact_and_fuzzy", |b| {
        b.iter(|| full.fingerprint(black_box(&msg)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
