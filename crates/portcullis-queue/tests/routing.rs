//! MX routing against a real DNS server: `hickory-server` bound to
//! 127.0.0.1 on an ephemeral port, serving test zones over UDP and TCP.
//! Not a mock resolver: queries go over the loopback network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Clock, ManualClock};
use portcullis_queue::{HopHost, MxConfig, MxRouter, Outcome, RouteError, Router, StaticRouter};
use portcullis_testkit::dns::{DnsServer, a, mx};

type Dns = DnsServer;

async fn start_dns() -> Dns {
    let mut builder = DnsServer::builder().servfail_under("servfail.test.");
    for (origin, records) in [
        (
            "mx.test.",
            vec![
                mx("mx.test.", 10, "a.mx.test.", 3600),
                mx("mx.test.", 10, "b.mx.test.", 3600),
                mx("mx.test.", 20, "c.mx.test.", 3600),
                a("a.mx.test.", "127.0.0.11", 3600),
                a("b.mx.test.", "127.0.0.12", 3600),
                a("c.mx.test.", "127.0.0.13", 3600),
            ],
        ),
        (
            "implicit.test.",
            vec![a("implicit.test.", "127.0.0.20", 3600)],
        ),
        ("nullmx.test.", vec![mx("nullmx.test.", 0, ".", 3600)]),
        (
            "nohost.test.",
            vec![mx("nohost.test.", 10, "gone.nohost.test.", 3600)],
        ),
        (
            "change.test.",
            vec![
                mx("change.test.", 10, "one.change.test.", 3600),
                a("one.change.test.", "127.0.0.31", 3600),
                a("two.change.test.", "127.0.0.32", 3600),
            ],
        ),
    ] {
        builder = builder.zone(origin, records);
    }
    builder.start().await
}

fn router(dns: &Dns) -> MxRouter {
    MxRouter::with_name_server(
        dns.addr,
        MxConfig::default().with_ttl_cap(Duration::from_secs(300)),
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn mx_by_preference_random_among_equals() {
    let dns = start_dns().await;
    let r = router(&dns);
    let clock = ManualClock::default();
    let mut firsts = HashSet::new();
    for _ in 0..40 {
        let hop = r.route("mx.test", clock.now()).await.unwrap();
        let names: Vec<&str> = hop.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[2], "c.mx.test", "preference 20 comes last");
        firsts.insert(names[0].to_owned());
        let a = hop.hosts.iter().find(|h| h.name == "a.mx.test").unwrap();
        assert_eq!(a.addrs, vec![ip("127.0.0.11")]);
        assert_eq!(a.port, 25);
    }
    assert_eq!(
        firsts,
        HashSet::from(["a.mx.test".to_owned(), "b.mx.test".to_owned()]),
        "both preference-10 hosts come first sometimes"
    );
}

#[tokio::test]
async fn implicit_mx_uses_the_domain_address() {
    let dns = start_dns().await;
    let hop = router(&dns)
        .route("implicit.test", ManualClock::default().now())
        .await
        .unwrap();
    assert_eq!(hop.hosts.len(), 1);
    assert_eq!(hop.hosts[0].name, "implicit.test");
    assert_eq!(hop.hosts[0].addrs, vec![ip("127.0.0.20")]);
}

#[tokio::test]
async fn null_mx_and_nxdomain_bounce_servfail_defers() {
    let dns = start_dns().await;
    let r = router(&dns);
    let now = ManualClock::default().now();

    let null = r.route("nullmx.test", now).await.unwrap_err();
    assert_eq!(null, RouteError::NullMx("nullmx.test".into()));
    let Outcome::Bounced(reply) = null.outcome() else {
        panic!("null MX must bounce");
    };
    assert_eq!(
        (reply.code(), reply.enhanced().unwrap().to_string()),
        (556, "5.1.10".into())
    );

    let nx = r.route("missing.mx.test", now).await.unwrap_err();
    assert_eq!(nx, RouteError::NoSuchDomain("missing.mx.test".into()));
    assert!(matches!(nx.outcome(), Outcome::Bounced(_)));

    let sf = r.route("servfail.test", now).await.unwrap_err();
    assert!(matches!(sf, RouteError::Temporary { .. }), "{sf:?}");
    assert!(matches!(sf.outcome(), Outcome::Deferred(_)));

    let gone = r.route("nohost.test", now).await.unwrap_err();
    assert_eq!(gone, RouteError::NoAddress("nohost.test".into()));
}

#[tokio::test]
async fn cached_answers_expire_at_the_ttl_cap() {
    let dns = start_dns().await;
    let r = router(&dns);
    let clock = ManualClock::default();
    let first = r.route("change.test", clock.now()).await.unwrap();
    assert_eq!(first.hosts.len(), 1);

    // The zone changes: a second MX appears (TTL of the old answer: 1 h).
    assert!(
        dns.zone("change.test.")
            .upsert(mx("change.test.", 10, "two.change.test.", 3600), 2)
            .await
    );
    clock.advance(Duration::from_secs(299));
    let cached = r.route("change.test", clock.now()).await.unwrap();
    assert_eq!(cached.hosts.len(), 1, "still cached within the cap");
    clock.advance(Duration::from_secs(2));
    let fresh = r.route("change.test", clock.now()).await.unwrap();
    let names: HashSet<&str> = fresh.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        HashSet::from(["one.change.test", "two.change.test"]),
        "picked up after the 5 minute cap, not the 1 h TTL"
    );
}

#[tokio::test]
async fn static_routes_override_and_fall_back() {
    let dns = start_dns().await;
    let primary = HopHost::new("primary.internal", vec![ip("10.0.0.5")], 2525);
    let r = StaticRouter::new(Some(Arc::new(router(&dns))))
        .with_route("customer.test", vec![primary.clone()]);
    let now = ManualClock::default().now();
    let hop = r.route("Customer.TEST", now).await.unwrap();
    assert_eq!(hop.hosts, vec![primary]);
    let hop = r.route("implicit.test", now).await.unwrap();
    assert_eq!(
        hop.hosts[0].addrs,
        vec![ip("127.0.0.20")],
        "fell back to MX routing"
    );

    let smart = HopHost::new("smarthost", vec![ip("10.0.0.9")], 587);
    let r = StaticRouter::new(None).with_smarthost(vec![smart.clone()]);
    assert_eq!(
        r.route("anything.example", now).await.unwrap().hosts,
        vec![smart]
    );
}
