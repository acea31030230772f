//! DNSBL/DNSWL checks against a real DNS server: `hickory-server` bound to
//! 127.0.0.1 on an ephemeral port, serving test zones over UDP and TCP, and
//! queried through `HickoryLookup` (the same approach as the queue's
//! routing tests). The server logs every query so tests can tell a cached
//! answer from a fresh one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Action, Client, Context, Filter, ManualClock, Verdict};
use portcullis_dnsbl::hickory::HickoryLookup;
use portcullis_dnsbl::{
    CodeMatch, Dnsbl, DnsblConfig, DnsblDecision, DnsblError, DnsblFilter, ListingAction,
    OnDnsError, ZoneConfig,
};
// Zone contents are written by hand from RFC 5782 §2.1, not by the code
// under test.
use portcullis_testkit::dns::{DnsRecord, DnsServer, a};

fn txt(owner: &str, text: &str) -> DnsRecord {
    portcullis_testkit::dns::txt(owner, text, 3600)
}

/// The test server, with query counts by name.
struct Dns(DnsServer);

impl std::ops::Deref for Dns {
    type Target = DnsServer;
    fn deref(&self) -> &DnsServer {
        &self.0
    }
}

impl Dns {
    /// A queries for `qname`.
    fn queries_for(&self, qname: &str) -> usize {
        self.0.queries(qname, "A")
    }

    /// TXT queries for `qname`.
    fn txt_queries_for(&self, qname: &str) -> usize {
        self.0.queries(qname, "TXT")
    }
}

const V6_NAME: &str = "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test.";

async fn start_dns() -> Dns {
    let mut builder = DnsServer::builder().servfail_under("servfail.test.");
    for (origin, records) in [
        (
            "bl.test.",
            vec![
                // RFC 5782 §5: 127.0.0.2 is listed in every DNSBL.
                a("2.0.0.127.bl.test.", "127.0.0.2", 3600),
                txt(
                    "2.0.0.127.bl.test.",
                    "Listed: see https://bl.test/127.0.0.2",
                ),
                a("10.2.0.192.bl.test.", "127.0.0.10", 3600),
                a("10.2.0.192.bl.test.", "127.0.0.11", 3600),
                a("11.2.0.192.bl.test.", "127.0.0.3", 3600),
                txt("11.2.0.192.bl.test.", "Suspicious, try later"),
                a("12.2.0.192.bl.test.", "127.0.0.10", 3600),
                a("12.2.0.192.bl.test.", "127.0.0.2", 3600),
                a("20.2.0.192.bl.test.", "127.0.0.2", 3600),
                a("30.2.0.192.bl.test.", "127.0.0.2", 3600),
                a("31.2.0.192.bl.test.", "127.0.0.2", 60),
                a("40.2.0.192.bl.test.", "127.255.255.254", 3600),
                a("50.2.0.192.bl.test.", "10.0.0.1", 3600),
                a(V6_NAME, "127.0.0.2", 3600),
            ],
        ),
        (
            "tag.test.",
            vec![a("10.2.0.192.tag.test.", "127.0.0.2", 3600)],
        ),
        (
            "wl.test.",
            vec![a("20.2.0.192.wl.test.", "127.0.10.2", 3600)],
        ),
    ] {
        builder = builder.zone(origin, records);
    }
    Dns(builder.start().await)
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bl() -> ZoneConfig {
    ZoneConfig::blocklist("bl.test")
        .on(
            CodeMatch::Range(ip4("127.0.0.10"), ip4("127.0.0.11")),
            ListingAction::Tag { score: 2 },
        )
        .on(CodeMatch::Exact(ip4("127.0.0.3")), ListingAction::Defer)
}

fn standard_zones() -> Vec<ZoneConfig> {
    vec![
        bl(),
        ZoneConfig::blocklist("tag.test").otherwise(ListingAction::Tag { score: 1 }),
        // Listed after the blocklists on purpose: allowlists are asked first anyway.
        ZoneConfig::allowlist("wl.test"),
    ]
}

fn dnsbl(dns: &Dns, config: DnsblConfig, clock: Arc<ManualClock>) -> Dnsbl {
    let lookup = HickoryLookup::with_name_server(dns.addr, Duration::from_secs(2)).unwrap();
    Dnsbl::new(config, Arc::new(lookup), clock)
}

fn text(d: &DnsblDecision) -> Vec<u8> {
    match d {
        DnsblDecision::Reject(r) | DnsblDecision::Defer(r) => r.to_wire(true),
        other => panic!("no reply in {other:?}"),
    }
}

#[tokio::test]
async fn listed_rejects_with_zone_and_txt_reason() {
    let dns = start_dns().await;
    let d = dnsbl(&dns, DnsblConfig::new(standard_zones()), Arc::default());
    let decision = d.check(ip("127.0.0.2")).await;
    assert!(matches!(decision, DnsblDecision::Reject(_)), "{decision:?}");
    assert_eq!(
        text(&decision),
        b"554 5.7.1 Service unavailable; client host [127.0.0.2] blocked using bl.test; Listed: see https://bl.test/127.0.0.2\r\n"
    );
    // The allowlist was asked first; the blocklists together, once each.
    assert_eq!(dns.queries_for("2.0.0.127.wl.test."), 1);
    assert_eq!(dns.queries_for("2.0.0.127.tag.test."), 1);
    assert_eq!(dns.queries_for("2.0.0.127.bl.test."), 1);
    // Only the deciding listing's reason is fetched.
    assert_eq!(dns.txt_queries_for("2.0.0.127.bl.test."), 1);
    assert_eq!(dns.txt_queries_for("2.0.0.127.tag.test."), 0);
}

#[tokio::test]
async fn not_listed_continues() {
    let dns = start_dns().await;
    let d = dnsbl(&dns, DnsblConfig::new(standard_zones()), Arc::default());
    assert_eq!(d.check(ip("192.0.2.99")).await, DnsblDecision::Continue);
    let report = d.report(ip("192.0.2.99")).await;
    assert!(report.listings.is_empty() && report.errors.is_empty());
    assert_eq!(
        dns.queries_for("99.2.0.192.bl.test."),
        1,
        "NXDOMAIN is cached"
    );
}

#[tokio::test]
async fn multiple_return_codes() {
    let dns = start_dns().await;
    let d = dnsbl(&dns, DnsblConfig::new(standard_zones()), Arc::default());
    // .10 and .11 both tag (2 + 2) in bl.test, tag.test adds 1.
    match d.check(ip("192.0.2.10")).await {
        DnsblDecision::Tag {
            header_name,
            header_value,
            score,
        } => {
            assert_eq!(header_name, "X-DNSBL");
            assert_eq!(
                header_value,
                "bl.test=127.0.0.10,127.0.0.11; tag.test=127.0.0.2; score=5"
            );
            assert_eq!(score, 5);
        }
        other => panic!("{other:?}"),
    }
    // .2 with .10: the strongest code decides.
    assert!(matches!(
        d.check(ip("192.0.2.12")).await,
        DnsblDecision::Reject(_)
    ));
    // A score threshold turns the tags into a rejection.
    let strict = dnsbl(
        &dns,
        DnsblConfig::new(standard_zones()).with_reject_score(Some(5)),
        Arc::default(),
    );
    assert_eq!(
        text(&strict.check(ip("192.0.2.10")).await),
        b"554 5.7.1 Service unavailable; client host [192.0.2.10] scored 5 on DNS blocklists (bl.test, tag.test)\r\n"
    );
    // A deferring code.
    assert_eq!(
        text(&d.check(ip("192.0.2.11")).await),
        b"451 4.7.1 Temporarily refused; client host [192.0.2.11] blocked using bl.test; Suspicious, try later\r\n"
    );
}

#[tokio::test]
async fn ipv6_and_mapped_ipv4() {
    let dns = start_dns().await;
    let d = dnsbl(&dns, DnsblConfig::new(standard_zones()), Arc::default());
    let v6 = d.check(ip("2001:db8::25")).await;
    assert!(matches!(v6, DnsblDecision::Reject(_)), "{v6:?}");
    assert_eq!(dns.queries_for(V6_NAME), 1);
    assert!(matches!(
        d.check(ip("2001:db8::26")).await,
        DnsblDecision::Continue
    ));
    // ::ffff:127.0.0.2 is the IPv4 client 127.0.0.2.
    assert!(matches!(
        d.check(ip("::ffff:127.0.0.2")).await,
        DnsblDecision::Reject(_)
    ));
}

#[tokio::test]
async fn allowlist_short_circuits() {
    let dns = start_dns().await;
    let d = dnsbl(&dns, DnsblConfig::new(standard_zones()), Arc::default());
    assert_eq!(
        d.check(ip("192.0.2.20")).await,
        DnsblDecision::Allowed {
            zone: "wl.test".into()
        }
    );
    assert_eq!(
        dns.queries_for("20.2.0.192.bl.test."),
        0,
        "no blocklist asked"
    );
}

#[tokio::test]
async fn servfail_is_configurable() {
    let dns = start_dns().await;
    let zones = vec![ZoneConfig::blocklist("servfail.test"), bl()];
    let lenient = dnsbl(&dns, DnsblConfig::new(zones.clone()), Arc::default());
    let report = lenient.report(ip("192.0.2.99")).await;
    assert!(
        matches!(&report.errors[..], [DnsblError::Lookup { .. }]),
        "{report:?}"
    );
    assert_eq!(
        lenient.check(ip("192.0.2.99")).await,
        DnsblDecision::Continue
    );
    // Another zone still decides.
    assert!(matches!(
        lenient.check(ip("127.0.0.2")).await,
        DnsblDecision::Reject(_)
    ));

    let strict = dnsbl(
        &dns,
        DnsblConfig::new(zones).with_on_error(OnDnsError::Defer),
        Arc::default(),
    );
    assert_eq!(
        text(&strict.check(ip("192.0.2.99")).await),
        b"451 4.4.3 DNS blocklist lookup failed, please try again later\r\n"
    );
    // Failures are not cached: each check asks again.
    let before = dns.queries_for("99.2.0.192.servfail.test.");
    let _ = strict.check(ip("192.0.2.99")).await;
    assert!(dns.queries_for("99.2.0.192.servfail.test.") > before);
}

#[tokio::test]
async fn refusal_codes_and_foreign_answers_are_not_listings() {
    let dns = start_dns().await;
    let d = dnsbl(&dns, DnsblConfig::new(vec![bl()]), Arc::default());
    let refused = d.report(ip("192.0.2.40")).await;
    assert!(refused.listings.is_empty());
    assert!(matches!(
        &refused.errors[..],
        [DnsblError::QueryRefused { code, .. }] if *code == ip4("127.255.255.254")
    ));
    assert_eq!(d.check(ip("192.0.2.40")).await, DnsblDecision::Continue);
    // RFC 5782 §2.1: codes outside 127/8 are not listings.
    let foreign = d.report(ip("192.0.2.50")).await;
    assert!(foreign.listings.is_empty() && foreign.errors.is_empty());
}

#[tokio::test]
async fn cache_ttl_is_capped_with_injected_time() {
    let dns = start_dns().await;
    let clock = Arc::new(ManualClock::default());
    let d = dnsbl(
        &dns,
        DnsblConfig::new(vec![bl()]).with_ttl_cap(Duration::from_secs(300)),
        clock.clone(),
    );
    let long = "30.2.0.192.bl.test."; // TTL 3600, capped to 300
    let short = "31.2.0.192.bl.test."; // TTL 60, kept 60
    let missing = "99.2.0.192.bl.test."; // NXDOMAIN, negative TTL 60
    for client in ["192.0.2.30", "192.0.2.31", "192.0.2.99"] {
        let _ = d.check(ip(client)).await;
    }
    assert_eq!(
        [long, short, missing].map(|q| dns.queries_for(q)),
        [1, 1, 1]
    );

    clock.advance(Duration::from_secs(59));
    for client in ["192.0.2.30", "192.0.2.31", "192.0.2.99"] {
        let _ = d.check(ip(client)).await;
    }
    assert_eq!(
        [long, short, missing].map(|q| dns.queries_for(q)),
        [1, 1, 1],
        "all cached at 59 s"
    );

    clock.advance(Duration::from_secs(2)); // 61 s
    for client in ["192.0.2.30", "192.0.2.31", "192.0.2.99"] {
        let _ = d.check(ip(client)).await;
    }
    assert_eq!(
        [long, short, missing].map(|q| dns.queries_for(q)),
        [1, 2, 2],
        "60 s TTLs expired"
    );

    clock.advance(Duration::from_secs(238)); // 299 s
    assert!(matches!(
        d.check(ip("192.0.2.30")).await,
        DnsblDecision::Reject(_)
    ));
    assert_eq!(dns.queries_for(long), 1, "3600 s TTL still cached at 299 s");
    clock.advance(Duration::from_secs(2)); // 301 s
    assert!(matches!(
        d.check(ip("192.0.2.30")).await,
        DnsblDecision::Reject(_)
    ));
    assert_eq!(dns.queries_for(long), 2, "capped at 300 s");
    // There is no TXT reason: that NODATA answer is kept for its negative
    // TTL (60 s), so it was asked at 0, 61 and 299 s but not at 301 s.
    assert_eq!(dns.txt_queries_for(long), 3);
}

#[tokio::test]
async fn filter_refuses_at_connect_and_tags_at_data() {
    let dns = start_dns().await;
    let filter = DnsblFilter::new(Arc::new(dnsbl(
        &dns,
        DnsblConfig::new(standard_zones()),
        Arc::default(),
    )));

    let mut cx = Context::new(Client::new("127.0.0.2:40000".parse().unwrap()));
    let v = filter.connect(&mut cx).await;
    assert!(matches!(v, Verdict::Reject(_)), "{v:?}");

    let mut trusted = Client::new("127.0.0.2:40000".parse().unwrap());
    trusted.trusted_network = true;
    let mut cx = Context::new(trusted);
    assert_eq!(filter.connect(&mut cx).await, Verdict::Continue);

    let mut cx = Context::new(Client::new("192.0.2.10:40000".parse().unwrap()));
    assert_eq!(filter.connect(&mut cx).await, Verdict::Continue);
    assert!(cx.actions.is_empty());
    assert_eq!(filter.data_start(&mut cx).await, Verdict::Continue);
    assert_eq!(
        cx.actions,
        [Action::AddHeader {
            name: "X-DNSBL".into(),
            value: "bl.test=127.0.0.10,127.0.0.11; tag.test=127.0.0.2; score=5".into()
        }]
    );
    assert_eq!(
        dns.queries_for("10.2.0.192.bl.test."),
        1,
        "data_start used the cache"
    );

    let mut cx = Context::new(Client::new("192.0.2.11:40000".parse().unwrap()));
    let v = filter.connect(&mut cx).await;
    assert!(matches!(v, Verdict::Defer(_)), "{v:?}");
}
