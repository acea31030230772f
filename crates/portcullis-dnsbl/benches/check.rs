//! DNSBL check benchmarks, one run so the ratio means something: three
//! zones (an allowlist and two blocklists) for a listed client, answered
//! from the cache (`check/cached`) against the same check with the cache
//! cleared each time (`check/uncached`: real DNS queries over UDP to
//! `hickory-server` on 127.0.0.1).
//!
//! `cargo bench -p portcullis-dnsbl --bench check -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use portcullis_core::ManualClock;
use portcullis_dnsbl::hickory::HickoryLookup;
use portcullis_dnsbl::{Dnsbl, DnsblConfig, DnsblDecision, ListingAction, ZoneConfig};

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn zone(origin: &str, records: Vec<Record>) -> Arc<dyn ZoneHandler> {
    let mut z: InMemoryZoneHandler =
        InMemoryZoneHandler::empty(name(origin), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(
        name(&format!("ns.{origin}")),
        name(&format!("hostmaster.{origin}")),
        1,
        3600,
        600,
        86_400,
        60,
    );
    z.upsert_mut(Record::from_rdata(name(origin), 3600, RData::SOA(soa)), 1);
    for r in records {
        z.upsert_mut(r, 1);
    }
    Arc::new(z)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_server, addr) = rt.block_on(async {
        let mut catalog = Catalog::new();
        for (origin, records) in [
            (
                "bl.test.",
                vec![
                    Record::from_rdata(
                        name("10.2.0.192.bl.test."),
                        3600,
                        RData::A(A::from_str("127.0.0.10").unwrap()),
                    ),
                    Record::from_rdata(
                        name("10.2.0.192.bl.test."),
                        3600,
                        RData::TXT(TXT::new(vec!["listed".into()])),
                    ),
                ],
            ),
            ("tag.test.", vec![]),
            ("wl.test.", vec![]),
        ] {
            catalog.upsert(name(origin).into(), vec![zone(origin, records)]);
        }
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        (server, addr)
    });
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
