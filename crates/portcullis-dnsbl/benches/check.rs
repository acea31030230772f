//! DNSBL check benchmarks, one run so the ratio means something: three
//! zones (an allowlist and two blocklists) for a listed client, answered
//! from the cache (`check/cached`) against the same check with the cache
//! cleared each time (`check/uncached`: real DNS queries over UDP to
//! `hickory-server` on 127.0.0.1).
//!
//! `cargo bench -p portcullis-dnsbl --bench check -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_core::ManualClock;
use portcullis_dnsbl::hickory::HickoryLookup;
use portcullis_dnsbl::{Dnsbl, DnsblConfig, DnsblDecision, ListingAction, ZoneConfig};
use portcullis_testkit::dns::{DnsServer, a, txt};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dns = rt.block_on(
        DnsServer::builder()
            .zone(
                "bl.test.",
                vec![
                    a("10.2.0.192.bl.test.", "127.0.0.10", 3600),
                    txt("10.2.0.192.bl.test.", "listed", 3600),
                ],
            )
            .zone("tag.test.", vec![])
            .zone("wl.test.", vec![])
            .start(),
    );
    let addr = dns.addr;
    let zones = vec![
        ZoneConfig::allowlist("wl.test"),
        ZoneConfig::blocklist("bl.test").otherwise(ListingAction::Tag { score: 1 }),
        ZoneConfig::blocklist("tag.test").otherwise(ListingAction::Tag { score: 1 }),
    ];
    let lookup = rt
        .block_on(async { HickoryLookup::with_name_server(addr, Duration::from_secs(2)).unwrap() });
    let dnsbl = Dnsbl::new(
        DnsblConfig::new(zones),
        Arc::new(lookup),
        Arc::new(ManualClock::default()),
    );
    let ip = "192.0.2.10".parse().unwrap();
    let mut g = c.benchmark_group("check");
    g.bench_function("cached", |b| {
        b.iter(|| {
            let d = rt.block_on(dnsbl.check(ip));
            assert!(matches!(d, DnsblDecision::Tag { score: 1, .. }));
        })
    });
    g.bench_function("uncached", |b| {
        b.iter(|| {
            dnsbl.clear_cache();
            let d = rt.block_on(dnsbl.check(ip));
            assert!(matches!(d, DnsblDecision::Tag { score: 1, .. }));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
