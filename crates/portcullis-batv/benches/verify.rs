//! prvs verification against a bare HMAC-SHA1 of the same input through the
//! same crate (`hmac` 0.12 + `sha1` 0.10). Goal: verify ≤ 1.5× the bare MAC.
//! `verify` also builds the untagged `Address` (four allocations in
//! `portcullis-core`); `check` is the same decision without it.
//!
//! `cargo bench -p portcullis-batv --bench verify -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use portcullis_batv::{KeyRing, Prvs, Srs};
use portcullis_core::Address;
use sha1::Sha1;

fn bench(c: &mut Criterion) {
    // 2026-01-01 12:00 UTC; Exim 4.96 made this tag at this instant.
    let now = UNIX_EPOCH + Duration::from_secs(1_767_268_800);
    let prvs = Prvs::new(KeyRing::new(3, b"secret").unwrap());
    let tagged = Address::parse("prvs=3461447cc3=user@example.com").unwrap();
    assert!(prvs.verify(&tagged, now).is_valid());

    let mut g = c.benchmark_group("prvs");
    g.bench_function("verify", |b| {
        b.iter(|| prvs.verify(black_box(&tagged), black_box(now)))
    });
    g.bench_function("check", |b| {
        b.iter(|| prvs.check(black_box(&tagged), black_box(now)))
    });
    // What verify must compute at least: HMAC-SHA1(secret, "3461user@example.com").
    g.bench_function("bare_hmac_sha1", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha1>::new_from_slice(black_box(b"secret")).unwrap();
            mac.update(black_box(b"3461user@example.com"));
            mac.finalize().into_bytes()
        })
    });
    g.finish();

    let srs = Srs::new(b"tops3cret").unwrap();
    let forwarded = Address::parse("SRS0=PuPZ=7G=Example.COM=User@fwd.example").unwrap();
    let mut g = c.benchmark_group("srs");
    g.bench_function("reverse", |b| {
        b.iter(|| srs.reverse(black_box(&forwarded), black_box(now)))
    });
    g.bench_function("bare_hmac_sha1", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha1>::new_from_slice(black_box(b"tops3cret")).unwrap();
            mac.update(black_box(b"7gexample.comuser"));
            mac.finalize().into_bytes()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
