//! Greylisting decisions at every time boundary, driven by a `ManualClock`,
//! plus whitelists, exemptions, admin release and store failure.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::{Clock, ManualClock, Reply, Verdict};
use portcullis_greylist::{
    AddressPattern, ClientFacts, Decision, FailureMode, Greylist, GreylistConfig, GreylistStore,
    MemoryStore, Record, Rule, Space, StoreError, Triplet,
};
use proptest::prelude::*;

const MIN: u64 = 60;
const DAY: u64 = 86_400;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn triplet(ip: &str, from: &str, to: &str) -> Triplet {
    Triplet::new(
        ip.parse().unwrap(),
        from.parse().unwrap(),
        to.parse().unwrap(),
    )
}

fn alice() -> Triplet {
    triplet("192.0.2.10", "<alice@example.org>", "<bob@example.net>")
}

fn setup(config: GreylistConfig) -> (Greylist, ManualClock) {
    (
        Greylist::new(Arc::new(MemoryStore::new()), config),
        ManualClock::default(),
    )
}

fn defer(rule: Rule, retry_in_secs: u64) -> Decision {
    Decision::Defer {
        rule,
        retry_in_secs,
    }
}

fn pass(rule: Rule) -> Decision {
    Decision::Pass { rule }
}

#[test]
fn new_triplet_is_deferred_with_the_postgrey_reply() {
    let (g, clock) = setup(GreylistConfig::default());
    let d = g.check(&alice(), clock.now());
    assert_eq!(d, defer(Rule::NewTriplet, 300));
    assert_eq!(d.verdict(), Verdict::Defer(Reply::greylisted(300)));
    let wire = d.verdict().reply().unwrap().to_wire(true);
    assert_eq!(
        wire,
        b"451 4.7.1 Greylisted, please try again in 300 seconds\r\n"
    );
    assert_eq!(d.header(), None);
}

#[test]
fn retry_before_the_delay_is_deferred_for_the_rest() {
    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(1));
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::TooEarly, 299));
    clock.advance(secs(298)); // 299 s after the first attempt
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::TooEarly, 1));
    // Early retries do not restart the delay.
    clock.advance(secs(1)); // exactly 300 s
    assert_eq!(
        g.check(&alice(), clock.now()),
        pass(Rule::Delayed { delayed_secs: 300 })
    );
}

#[test]
fn retry_just_after_the_delay_passes_and_then_stays_known() {
    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(301));
    assert_eq!(
        g.check(&alice(), clock.now()),
        pass(Rule::Delayed { delayed_secs: 301 })
    );
    clock.advance(secs(1));
    assert_eq!(g.check(&alice(), clock.now()), pass(Rule::KnownTriplet));
    clock.advance(secs(20 * DAY));
    assert_eq!(g.check(&alice(), clock.now()), pass(Rule::KnownTriplet));
}

#[test]
fn retry_window_boundary() {
    let (g, clock) = setup(GreylistConfig::default());
    let start = clock.now();
    let _ = g.check(&alice(), start);
    // Exactly at the end of the window the retry is still honoured.
    assert_eq!(
        g.check(&alice(), start + secs(2 * DAY)),
        pass(Rule::Delayed {
            delayed_secs: 2 * DAY
        })
    );

    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(2 * DAY + 1));
    // One second later it starts over, deferred for the full delay...
    let d = g.check(&alice(), clock.now());
    assert!(
        matches!(
            d,
            Decision::Defer {
                retry_in_secs: 300,
                rule: Rule::NewTriplet | Rule::RetryWindowExpired
            }
        ),
        "{d:?}"
    );
    // ...from this new first attempt.
    clock.advance(secs(299));
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::TooEarly, 1));
    clock.advance(secs(1));
    assert!(g.check(&alice(), clock.now()).is_pass());
}

#[test]
fn retry_window_reset_when_the_store_still_holds_the_entry() {
    // A store that never expires anything exercises the engine's own
    // window check (the memory store would already report a miss).
    #[derive(Debug, Default)]
    struct NoExpiry(Mutex<HashMap<String, Record>>);
    impl GreylistStore for NoExpiry {
        fn get(&self, s: Space, k: &str, _now: u64) -> Result<Option<Record>, StoreError> {
            Ok(self.0.lock().unwrap().get(&format!("{s:?}{k}")).copied())
        }
        fn put(
            &self,
            s: Space,
            k: &str,
            r: Record,
            _now: u64,
            _exp: u64,
        ) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(format!("{s:?}{k}"), r);
            Ok(())
        }
        fn remove(&self, s: Space, k: &str) -> Result<bool, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .remove(&format!("{s:?}{k}"))
                .is_some())
        }
        fn sweep(&self, _now: u64, _budget: usize) -> Result<usize, StoreError> {
            Ok(0)
        }
    }
    let g = Greylist::new(Arc::new(NoExpiry::default()), GreylistConfig::default());
    let clock = ManualClock::default();
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(2 * DAY + 1));
    assert_eq!(
        g.check(&alice(), clock.now()),
        defer(Rule::RetryWindowExpired, 300)
    );
    clock.advance(secs(300));
    assert_eq!(
        g.check(&alice(), clock.now()),
        pass(Rule::Delayed { delayed_secs: 300 })
    );
}

#[test]
fn max_age_boundary() {
    let config = GreylistConfig {
        auto_whitelist_after: None,
        ..GreylistConfig::default()
    };
    let (g, clock) = setup(config);
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    assert!(g.check(&alice(), clock.now()).is_pass()); // passed at t = 300
    let passed_at = clock.now();
    // Unused for 35 days minus one second: still known.
    assert_eq!(
        g.check(&alice(), passed_at + secs(35 * DAY - 1)),
        pass(Rule::KnownTriplet)
    );

    let (g, clock) = setup(GreylistConfig {
        auto_whitelist_after: None,
        ..GreylistConfig::default()
    });
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    assert!(g.check(&alice(), clock.now()).is_pass());
    // Unused for exactly 35 days: forgotten, greylisted again.
    clock.advance(secs(35 * DAY));
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::NewTriplet, 300));
}

#[test]
fn use_refreshes_max_age_at_touch_interval_precision() {
    let (g, clock) = setup(GreylistConfig {
        auto_whitelist_after: None,
        ..GreylistConfig::default()
    });
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    assert!(g.check(&alice(), clock.now()).is_pass());
    clock.advance(secs(30 * DAY)); // used again: last_seen refreshed
    assert_eq!(g.check(&alice(), clock.now()), pass(Rule::KnownTriplet));
    clock.advance(secs(30 * DAY)); // 60 days after the pass, 30 after last use
    assert_eq!(g.check(&alice(), clock.now()), pass(Rule::KnownTriplet));
    clock.advance(secs(35 * DAY));
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::NewTriplet, 300));
}

#[test]
fn a_use_within_the_touch_interval_does_not_extend_max_age() {
    let (g, clock) = setup(GreylistConfig {
        auto_whitelist_after: None,
        ..GreylistConfig::default()
    });
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    assert!(g.check(&alice(), clock.now()).is_pass());
    let passed_at = clock.now();
    // A use 59 minutes later is not written (checks of known triplets are reads)...
    assert!(g.check(&alice(), passed_at + secs(59 * MIN)).is_pass());
    // ...so expiry still counts from the pass.
    assert_eq!(
        g.check(&alice(), passed_at + secs(35 * DAY)),
        defer(Rule::NewTriplet, 300)
    );
}

fn pass_one_triplet(g: &Greylist, clock: &ManualClock, n: u32) {
    let t = triplet(
        "198.51.100.20",
        &format!("<sender{}x@example.org>", char::from(b'a' + n as u8)),
        "<bob@example.net>",
    );
    assert!(
        !g.check(&t, clock.now()).is_pass(),
        "pass {n} starts deferred"
    );
    clock.advance(secs(300));
    assert!(
        matches!(g.check(&t, clock.now()).rule(), Rule::Delayed { .. }),
        "pass {n}"
    );
}

#[test]
fn client_auto_whitelisted_after_five_passes() {
    let (g, clock) = setup(GreylistConfig::default());
    for n in 0..4 {
        pass_one_triplet(&g, &clock, n);
        clock.advance(secs(3600));
    }
    // Four passes: a new sender from that network is still greylisted.
    let newcomer = triplet("198.51.100.99", "<new@example.com>", "<carol@example.net>");
    assert_eq!(
        g.check(&newcomer, clock.now()),
        defer(Rule::NewTriplet, 300)
    );
    pass_one_triplet(&g, &clock, 4);
    // The fifth pass whitelists the whole /24.
    let other = triplet("198.51.100.7", "<other@example.com>", "<dave@example.net>");
    assert_eq!(
        g.check(&other, clock.now()),
        pass(Rule::AutoWhitelistedClient { passes: 5 })
    );
    // Another network is not.
    let elsewhere = triplet("203.0.113.7", "<other@example.com>", "<dave@example.net>");
    assert!(!g.check(&elsewhere, clock.now()).is_pass());
}

#[test]
fn an_active_auto_whitelisted_client_does_not_expire() {
    let (g, clock) = setup(GreylistConfig::default());
    for n in 0..5 {
        pass_one_triplet(&g, &clock, n);
        clock.advance(secs(3600));
    }
    let other = triplet("198.51.100.7", "<other@example.com>", "<dave@example.net>");
    // Used every 30 days for 120 days: whitelisted throughout.
    for _ in 0..4 {
        clock.advance(secs(30 * DAY));
        assert_eq!(
            g.check(&other, clock.now()),
            pass(Rule::AutoWhitelistedClient { passes: 5 })
        );
    }
    // Unused for 35 days: forgotten.
    clock.advance(secs(35 * DAY));
    assert_eq!(g.check(&other, clock.now()), defer(Rule::NewTriplet, 300));
}

#[test]
fn passes_within_an_hour_count_once() {
    let (g, clock) = setup(GreylistConfig::default());
    for n in 0..6 {
        pass_one_triplet(&g, &clock, n); // 5 minutes apart
    }
    let other = triplet("198.51.100.7", "<other@example.com>", "<dave@example.net>");
    assert_eq!(g.check(&other, clock.now()), defer(Rule::NewTriplet, 300));
}

#[test]
fn auto_whitelist_can_be_turned_off_and_tuned() {
    let (g, clock) = setup(GreylistConfig {
        auto_whitelist_after: None,
        ..GreylistConfig::default()
    });
    for n in 0..6 {
        pass_one_triplet(&g, &clock, n);
        clock.advance(secs(3600));
    }
    let other = triplet("198.51.100.7", "<other@example.com>", "<dave@example.net>");
    assert!(!g.check(&other, clock.now()).is_pass());

    let (g, clock) = setup(GreylistConfig {
        auto_whitelist_after: Some(1),
        ..GreylistConfig::default()
    });
    pass_one_triplet(&g, &clock, 0);
    assert_eq!(
        g.check(&other, clock.now()),
        pass(Rule::AutoWhitelistedClient { passes: 1 })
    );
}

#[test]
fn client_network_prefixes() {
    // Default /24: another host in the same /24 continues the same triplet.
    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    let sibling = triplet("192.0.2.200", "<alice@example.org>", "<bob@example.net>");
    assert!(g.check(&sibling, clock.now()).is_pass());
    let stranger = triplet("192.0.3.10", "<alice@example.org>", "<bob@example.net>");
    assert!(!g.check(&stranger, clock.now()).is_pass());

    // Exact addresses: the sibling is a new triplet.
    let (g, clock) = setup(GreylistConfig {
        client_v4_prefix: 32,
        client_v6_prefix: 128,
        ..GreylistConfig::default()
    });
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    assert_eq!(g.check(&sibling, clock.now()), defer(Rule::NewTriplet, 300));

    // IPv6 /64.
    let (g, clock) = setup(GreylistConfig::default());
    let a = triplet("2001:db8:1:2::10", "<a@example.org>", "<b@example.net>");
    let b = triplet("2001:db8:1:2:ffff::1", "<a@example.org>", "<b@example.net>");
    let c = triplet("2001:db8:1:3::10", "<a@example.org>", "<b@example.net>");
    let _ = g.check(&a, clock.now());
    clock.advance(secs(300));
    assert!(g.check(&b, clock.now()).is_pass());
    assert!(!g.check(&c, clock.now()).is_pass());
    assert_eq!(g.key(&a), "2001:db8:1:2::/64\ta@example.org\tb@example.net");
}

/// First attempt with one form of the sender, retry with another: the same
/// triplet if normalisation maps both to one sender.
fn same_sender(first: &str, retry: &str) -> bool {
    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(
        &triplet("192.0.2.1", first, "<rcpt@example.net>"),
        clock.now(),
    );
    clock.advance(secs(300));
    g.check(
        &triplet("192.0.2.1", retry, "<rcpt@example.net>"),
        clock.now(),
    )
    .is_pass()
}

#[test]
fn normalisation_maps_one_sender_to_one_triplet() {
    // Case of the domain.
    assert!(same_sender("<alice@Example.ORG>", "<alice@example.org>"));
    // BATV tags that change per message.
    assert!(same_sender(
        "<prvs=1234abcdef=alice@example.org>",
        "<prvs=5678fedcba=alice@example.org>"
    ));
    assert!(same_sender(
        "<btv1==1a2b3c4d5e6==alice@example.org>",
        "<alice@example.org>"
    ));
    // SRS rewriting that changes daily.
    assert!(same_sender(
        "<SRS0=aBcD=2Q=example.org=alice@forwarder.example>",
        "<SRS0=xYz1=2R=example.org=alice@forwarder.example>"
    ));
    // VERP numbers.
    assert!(same_sender(
        "<bounce-4711-0815@list.example>",
        "<bounce-9999-1234@list.example>"
    ));
    assert!(same_sender(
        "<news+u12345@list.example>",
        "<news+u99999@list.example>"
    ));
    // Different senders stay different.
    assert!(!same_sender("<alice@example.org>", "<bob@example.org>"));
    assert!(!same_sender("<alice@example.org>", "<alice@example.com>"));
    assert!(!same_sender("<user1@example.org>", "<user2@example.org>"));
}

#[test]
fn recipients_are_part_of_the_triplet() {
    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(&alice(), clock.now());
    clock.advance(secs(300));
    let other_rcpt = triplet("192.0.2.10", "<alice@example.org>", "<carol@example.net>");
    assert_eq!(
        g.check(&other_rcpt, clock.now()),
        defer(Rule::NewTriplet, 300)
    );
    let same_rcpt_other_case = triplet("192.0.2.10", "<alice@example.org>", "<bob@EXAMPLE.net>");
    assert!(g.check(&same_rcpt_other_case, clock.now()).is_pass());
}

#[test]
fn authenticated_and_relay_network_clients_are_never_greylisted() {
    let (g, clock) = setup(GreylistConfig {
        relay_networks: vec!["10.1.0.0/16".parse().unwrap()],
        ..GreylistConfig::default()
    });
    let facts = ClientFacts::default().authenticated();
    assert_eq!(
        g.check_with(&facts, &alice(), clock.now()),
        pass(Rule::Authenticated)
    );
    let facts = ClientFacts::default().trusted_network();
    assert_eq!(
        g.check_with(&facts, &alice(), clock.now()),
        pass(Rule::RelayNetwork)
    );
    let internal = triplet("10.1.200.3", "<alice@example.org>", "<bob@example.net>");
    assert_eq!(g.check(&internal, clock.now()), pass(Rule::RelayNetwork));
    // None of that created state: the triplet is still new for a stranger.
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::NewTriplet, 300));
    assert_eq!(pass(Rule::Authenticated).header(), None);
}

#[test]
fn whitelists() {
    let mut config = GreylistConfig::default();
    config.whitelist.clients = vec![
        "203.0.113.0/28".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    config.whitelist.reverse_dns = vec!["mail.example.com".into(), "out-*.mailer.example".into()];
    config.whitelist.senders = vec![
        AddressPattern::parse("vip@example.org").unwrap(),
        AddressPattern::parse("partner.example").unwrap(),
    ];
    config.whitelist.recipients = vec![AddressPattern::parse("postmaster@example.net").unwrap()];
    let (g, clock) = setup(config);
    let now = clock.now();

    let t = triplet("203.0.113.5", "<x@spam.example>", "<bob@example.net>");
    assert_eq!(g.check(&t, now), pass(Rule::WhitelistedClient));
    let t = triplet("203.0.113.16", "<x@spam.example>", "<bob@example.net>");
    assert_eq!(g.check(&t, now), defer(Rule::NewTriplet, 300));
    let t = triplet("2001:db8::1", "<x@spam.example>", "<bob@example.net>");
    assert_eq!(g.check(&t, now), pass(Rule::WhitelistedClient));

    let t = triplet("192.0.2.50", "<x@spam.example>", "<bob@example.net>");
    let named = |n: &str| ClientFacts::default().with_reverse_dns(n);
    assert_eq!(
        g.check_with(&named("relay1.mail.example.com"), &t, now),
        pass(Rule::WhitelistedReverseDns)
    );
    assert_eq!(
        g.check_with(&named("OUT-17.mailer.example."), &t, now),
        pass(Rule::WhitelistedReverseDns)
    );
    assert!(
        !g.check_with(&named("mail.example.com.attacker.test"), &t, now)
            .is_pass()
    );

    let t = triplet("192.0.2.51", "<VIP@Example.ORG>", "<bob@example.net>");
    assert_eq!(g.check(&t, now), pass(Rule::WhitelistedSender));
    let t = triplet(
        "192.0.2.51",
        "<news@lists.partner.example>",
        "<bob@example.net>",
    );
    assert_eq!(g.check(&t, now), pass(Rule::WhitelistedSender));
    let t = triplet(
        "192.0.2.51",
        "<other@example.org>",
        "<postmaster@example.net>",
    );
    assert_eq!(g.check(&t, now), pass(Rule::WhitelistedRecipient));
    let t = triplet("192.0.2.51", "<other@example.org>", "<bob@example.net>");
    assert_eq!(g.check(&t, now), defer(Rule::NewTriplet, 300));
    assert_eq!(
        pass(Rule::WhitelistedSender).header().as_deref(),
        Some("sender whitelisted by portcullis-greylist")
    );
}

#[test]
fn null_sender_is_greylisted_unless_configured() {
    let bounce = triplet("192.0.2.10", "<>", "<bob@example.net>");
    let (g, clock) = setup(GreylistConfig::default());
    assert_eq!(g.check(&bounce, clock.now()), defer(Rule::NewTriplet, 300));
    clock.advance(secs(300));
    assert!(g.check(&bounce, clock.now()).is_pass());

    let mut config = GreylistConfig::default();
    config.whitelist.null_sender = true;
    let (g, clock) = setup(config);
    assert_eq!(g.check(&bounce, clock.now()), pass(Rule::NullSender));
}

#[test]
fn admin_release_of_a_triplet_and_a_client() {
    let (g, clock) = setup(GreylistConfig::default());
    assert!(!g.check(&alice(), clock.now()).is_pass());
    g.release_triplet(&alice(), clock.now()).unwrap();
    assert_eq!(g.check(&alice(), clock.now()), pass(Rule::KnownTriplet));
    // Only that triplet.
    let other = triplet("192.0.2.10", "<mallory@example.org>", "<bob@example.net>");
    assert!(!g.check(&other, clock.now()).is_pass());

    g.release_client("192.0.2.99".parse().unwrap(), clock.now())
        .unwrap();
    assert_eq!(g.check(&other, clock.now()), pass(Rule::ReleasedClient));
    // The release lasts client_release_duration (35 days by default).
    assert_eq!(
        g.check(&other, clock.now() + secs(35 * DAY - 1)),
        pass(Rule::ReleasedClient)
    );
    assert!(!g.check(&other, clock.now() + secs(35 * DAY)).is_pass());

    assert!(g.forget_client("192.0.2.1".parse().unwrap()).unwrap());
    assert!(!g.check(&other, clock.now()).is_pass());
    assert!(g.forget_triplet(&alice()).unwrap());
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::NewTriplet, 300));
}

#[derive(Debug)]
struct BrokenStore;

impl GreylistStore for BrokenStore {
    fn get(&self, _: Space, _: &str, _: u64) -> Result<Option<Record>, StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }
    fn put(&self, _: Space, _: &str, _: Record, _: u64, _: u64) -> Result<(), StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }
    fn remove(&self, _: Space, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }
    fn sweep(&self, _: u64, _: usize) -> Result<usize, StoreError> {
        Err(StoreError::Backend("connection refused".into()))
    }
}

#[test]
fn store_failure_fails_open_by_default() {
    let g = Greylist::new(Arc::new(BrokenStore), GreylistConfig::default());
    let d = g.check(&alice(), ManualClock::default().now());
    assert!(d.is_pass());
    assert!(
        matches!(d.rule(), Rule::StoreUnavailable { error } if error.contains("connection refused"))
    );
    assert_eq!(d.verdict(), Verdict::Continue);
    assert_eq!(d.header(), None, "no store error text in mail headers");
}

#[test]
fn store_failure_can_fail_closed() {
    let g = Greylist::new(
        Arc::new(BrokenStore),
        GreylistConfig {
            on_store_error: FailureMode::Closed,
            ..GreylistConfig::default()
        },
    );
    let d = g.check(&alice(), ManualClock::default().now());
    assert!(!d.is_pass());
    assert_eq!(d.verdict(), Verdict::Defer(Reply::temporary_failure()));
    // Exemptions need no store and still pass.
    let facts = ClientFacts::default().authenticated();
    assert!(
        g.check_with(&facts, &alice(), ManualClock::default().now())
            .is_pass()
    );
}

#[cfg(feature = "redb")]
#[test]
fn works_the_same_over_redb() {
    use portcullis_greylist::RedbStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.redb");
    let clock = ManualClock::default();
    {
        let g = Greylist::new(
            Arc::new(RedbStore::open(&path).unwrap()),
            GreylistConfig::default(),
        );
        assert_eq!(g.check(&alice(), clock.now()), defer(Rule::NewTriplet, 300));
    }
    // Restarted: the first attempt is remembered.
    clock.advance(secs(100));
    let g = Greylist::new(
        Arc::new(RedbStore::open(&path).unwrap()),
        GreylistConfig::default(),
    );
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::TooEarly, 200));
    clock.advance(secs(200));
    assert!(g.check(&alice(), clock.now()).is_pass());
    assert_eq!(
        g.sweep(clock.now() + secs(36 * DAY), 100).unwrap(),
        2,
        "the triplet and its client"
    );
}

#[test]
fn a_clock_stepping_back_neither_panics_nor_passes() {
    let (g, clock) = setup(GreylistConfig::default());
    let _ = g.check(&alice(), clock.now());
    clock.set(clock.now() - secs(3600));
    assert_eq!(g.check(&alice(), clock.now()), defer(Rule::TooEarly, 300));
}

proptest! {
    /// Over any schedule of retries of one triplet: the first attempt is
    /// deferred; a first pass comes between `delay` and `retry_window` after
    /// the attempt it counts from; a deferral asks for 1..=delay seconds;
    /// once passed, retries keep passing while the triplet is in use.
    #[test]
    fn retry_schedules_obey_the_rules(gaps in prop::collection::vec(0u64..(3 * DAY), 1..40)) {
        let (g, clock) = setup(GreylistConfig::default());
        let first = g.check(&alice(), clock.now());
        prop_assert_eq!(first, defer(Rule::NewTriplet, 300));
        let mut passed = false;
        for gap in gaps {
            clock.advance(secs(gap));
            let d = g.check(&alice(), clock.now());
            match &d {
                Decision::Pass { rule: Rule::Delayed { delayed_secs } } => {
                    prop_assert!(!passed, "a second first pass: {:?}", d);
                    prop_assert!((300..=2 * DAY).contains(delayed_secs), "{:?}", d);
                    passed = true;
                }
                // Hourly passes of this triplet also count toward its
                // client's auto-whitelist (as in postgrey).
                Decision::Pass { rule: Rule::KnownTriplet | Rule::AutoWhitelistedClient { .. } } => {
                    prop_assert!(passed)
                }
                Decision::Defer { retry_in_secs, .. } => {
                    prop_assert!((1..=300).contains(retry_in_secs), "{:?}", d);
                    // Gaps are under 35 days, so a passed triplet is never forgotten.
                    prop_assert!(!passed, "deferred after passing: {:?}", d);
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
