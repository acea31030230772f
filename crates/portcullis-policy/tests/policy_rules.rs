//! Each policy rule at its boundaries, through the plain API and the
//! `Filter`, with time moved by a `ManualClock`.
#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)] // test helpers; configs built step by step

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{
    Address, Chain, Client, Clock, Context, Domain, Envelope, Filter, ForwardPath, MailParams,
    ManualClock, Recipient, Reply, ReversePath, Verdict,
};
use portcullis_policy::{
    AbuseLock, AbuseSignal, AccessList, Account, AccountLimits, CounterSnapshot, CounterStore,
    Directory, DirectoryError, FailureCap, FromRules, Load, LoadGate, LoadThresholds, LockRecord,
    LockState, MemoryStore, Outcome, Policy, PolicyConfig, PolicyFilter, RateLimits, Request, Rule,
    StoreError, StoreFailure, Window,
};

fn client(ip: &str, user: Option<&str>) -> Client {
    let mut c = Client::new(format!("{ip}:40000").parse().unwrap());
    c.authenticated = user.map(str::to_owned);
    c
}

fn from(s: &str) -> ReversePath {
    ReversePath::parse(s).unwrap()
}

fn to(s: &str) -> ForwardPath {
    ForwardPath::parse(s).unwrap()
}

fn policy(config: PolicyConfig) -> Policy {
    Policy::new(config, Arc::new(MemoryStore::new()))
}

/// The reply as it goes on the wire, without CRLF.
fn wire(v: &Verdict) -> String {
    let r = v.reply().expect("a refusal");
    String::from_utf8(r.to_wire(true))
        .unwrap()
        .trim_end()
        .to_owned()
}

fn codes(v: &Verdict) -> (u16, String) {
    let r = v.reply().expect("a refusal");
    (r.code(), r.enhanced().unwrap().to_string())
}

struct Session {
    client: Client,
    account: Account,
    sender: ReversePath,
}

fn session(p: &Policy, ip: &str, user: &str) -> Session {
    let client = client(ip, Some(user));
    let account = p.account(&client);
    Session {
        client,
        account,
        sender: from(&format!("<{user}>")),
    }
}

impl Session {
    fn mail(&self, p: &Policy, now: SystemTime) -> Verdict {
        p.check_mail(
            &self.client,
            &self.account,
            &self.sender,
            &MailParams::default(),
            now,
        )
    }
    fn rcpt(&self, p: &Policy, rcpt: &str, now: SystemTime) -> Verdict {
        p.check_rcpt(&self.client, &self.account, &self.sender, &to(rcpt), now)
    }
}

fn rates(f: impl FnOnce(&mut RateLimits)) -> AccountLimits {
    let mut r = RateLimits::default();
    f(&mut r);
    AccountLimits {
        rates: r,
        ..AccountLimits::default()
    }
}

#[test]
fn messages_per_minute_defer_with_retry_and_free_after_the_window() {
    let mut config = PolicyConfig::default();
    config.account_defaults = rates(|r| r.messages_per_minute = Some(2));
    let p = policy(config);
    let clock = ManualClock::default();
    let s = session(&p, "192.0.2.1", "alice@example.com");
    assert_eq!(s.mail(&p, clock.now()), Verdict::Continue);
    clock.advance(Duration::from_millis(500));
    assert_eq!(s.mail(&p, clock.now()), Verdict::Continue);
    let third = s.mail(&p, clock.now());
    assert_eq!(
        wire(&third),
        "451 4.7.1 Rate limit exceeded (messages per account), try again in 61 seconds"
    );
    // Another account is not affected.
    let bob = session(&p, "192.0.2.1", "bob@example.com");
    assert_eq!(bob.mail(&p, clock.now()), Verdict::Continue);
    // Both hits were in the first 1 s bucket: they count until t0 + 61 s.
    clock.advance(Duration::from_millis(60_499));
    assert!(s.mail(&p, clock.now()).is_refusal());
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.mail(&p, clock.now()), Verdict::Continue);
}

#[test]
fn hourly_limits_and_per_account_overrides() {
    let mut config = PolicyConfig::default();
    config.account_defaults = rates(|r| r.recipients_per_hour = Some(3));
    config.account_limits.insert(
        "vip@example.com".into(),
        rates(|r| r.recipients_per_hour = Some(5)),
    );
    config.domain_limits.insert(
        "tiny.example".into(),
        rates(|r| r.recipients_per_hour = Some(1)),
    );
    let p = policy(config);
    let clock = ManualClock::default();
    let plain = session(&p, "192.0.2.1", "alice@example.com");
    let vip = session(&p, "192.0.2.1", "vip@example.com");
    let tiny = session(&p, "192.0.2.1", "x@tiny.example");
    let admitted = |s: &Session| {
        (0..10)
            .take_while(|i| {
                s.rcpt(&p, &format!("<r{i}@example.org>"), clock.now())
                    .is_continue()
            })
            .count()
    };
    assert_eq!(
        (admitted(&plain), admitted(&vip), admitted(&tiny)),
        (3, 5, 1)
    );
    // 59 minutes later the hour still holds; at t0 + 61 min (one 60 s bucket
    // after the hour) it is free again.
    clock.advance(Duration::from_secs(59 * 60));
    assert!(
        plain
            .rcpt(&p, "<late@example.org>", clock.now())
            .is_refusal()
    );
    clock.advance(Duration::from_secs(2 * 60));
    assert!(
        plain
            .rcpt(&p, "<late@example.org>", clock.now())
            .is_continue()
    );
}

#[test]
fn client_and_sender_domain_limits_span_accounts() {
    let mut config = PolicyConfig::default();
    config.client_limits = RateLimits {
        messages_per_minute: Some(4),
        ..RateLimits::default()
    };
    config.sender_domain_limits = RateLimits {
        messages_per_minute: Some(2),
        ..RateLimits::default()
    };
    let p = policy(config);
    let now = ManualClock::default().now();
    // Three accounts in one /24, two sender domains.
    let a = session(&p, "192.0.2.1", "a@one.example");
    let b = session(&p, "192.0.2.2", "b@one.example");
    let c = session(&p, "192.0.2.3", "c@two.example");
    assert!(a.mail(&p, now).is_continue());
    assert!(b.mail(&p, now).is_continue());
    assert!(c.mail(&p, now).is_continue());
    let refused = a.mail(&p, now);
    assert!(
        wire(&refused).contains("messages per sender domain"),
        "{refused:?}"
    );
    // The refusal did not count against the client (leaky, rolled back):
    // the /24 has sent 3 of 4, so c's second message fits …
    assert!(c.mail(&p, now).is_continue());
    // … and then the /24 is full for any account and sender domain.
    let x = session(&p, "192.0.2.9", "x@three.example");
    let by_client = x.mail(&p, now);
    assert!(
        wire(&by_client).contains("messages per client"),
        "{by_client:?}"
    );
    // Another /24 is free.
    let d = session(&p, "198.51.100.1", "d@three.example");
    assert!(d.mail(&p, now).is_continue());
}

#[test]
fn distinct_recipients_per_day_count_each_recipient_once() {
    let mut config = PolicyConfig::default();
    config.account_defaults.distinct_recipients_per_day = Some(2);
    let p = policy(config);
    let clock = ManualClock::default();
    let s = session(&p, "192.0.2.1", "alice@example.com");
    for r in ["<a@x.org>", "<b@x.org>", "<A@X.ORG>", "<a@x.org>"] {
        assert!(s.rcpt(&p, r, clock.now()).is_continue(), "{r}");
    }
    let refused = s.rcpt(&p, "<c@x.org>", clock.now());
    assert_eq!(codes(&refused), (452, "4.5.3".into()));
    clock.advance(Duration::from_secs(86_400));
    assert!(s.rcpt(&p, "<c@x.org>", clock.now()).is_continue());
}

#[derive(Debug)]
struct Known(Vec<&'static str>);

impl Directory for Known {
    fn mailbox_exists(&self, address: &Address) -> Result<bool, DirectoryError> {
        Ok(self.0.iter().any(|k| address.key().eq_ignore_ascii_case(k)))
    }
}

#[test]
fn invalid_recipients_past_the_cap_block_the_client_for_a_while() {
    let mut config = PolicyConfig::default();
    config.invalid_recipients = Some(FailureCap {
        max: 2,
        window: Duration::from_secs(600),
        block_for: Duration::from_secs(900),
    });
    config.recipient_directory = Some(Arc::new(Known(vec!["ok@example.com"])));
    let p = policy(config);
    let clock = ManualClock::default();
    let s = session(&p, "192.0.2.1", "alice@example.com");
    assert!(s.rcpt(&p, "<ok@example.com>", clock.now()).is_continue());
    for _ in 0..2 {
        let v = s.rcpt(&p, "<nobody@example.com>", clock.now());
        assert_eq!(v, Verdict::Reject(Reply::no_such_user()));
    }
    let blocked = s.rcpt(&p, "<nobody@example.com>", clock.now());
    assert_eq!(
        wire(&blocked),
        "421 4.7.0 Too many invalid recipients, try again in 900 seconds"
    );
    assert!(matches!(blocked, Verdict::Disconnect(_)));
    // Valid recipients, new MAILs and new connections from the network are
    // refused too while the block lasts.
    assert!(matches!(
        s.rcpt(&p, "<ok@example.com>", clock.now()),
        Verdict::Disconnect(_)
    ));
    assert!(s.mail(&p, clock.now()).is_refusal());
    let neighbour = client("192.0.2.200", None);
    assert!(matches!(
        p.check_connect(&neighbour, clock.now()),
        Verdict::Disconnect(_)
    ));
    clock.advance(Duration::from_secs(900));
    assert!(s.rcpt(&p, "<ok@example.com>", clock.now()).is_continue());
    assert!(p.check_connect(&neighbour, clock.now()).is_continue());
}

#[test]
fn auth_failures_block_the_client_and_the_user_name() {
    let mut config = PolicyConfig::default();
    config.auth_failures = Some(FailureCap {
        max: 3,
        window: Duration::from_secs(300),
        block_for: Duration::from_secs(3600),
    });
    let p = policy(config);
    let clock = ManualClock::default();
    let attacker = client("203.0.113.5", None);
    for _ in 0..3 {
        assert!(
            p.note_auth_failure(&attacker, Some("victim@example.com"), clock.now())
                .is_continue()
        );
    }
    let v = p.note_auth_failure(&attacker, Some("victim@example.com"), clock.now());
    assert_eq!(
        wire(&v),
        "421 4.7.0 Too many failed logins, try again in 3600 seconds"
    );
    assert!(matches!(
        p.check_connect(&attacker, clock.now()),
        Verdict::Disconnect(_)
    ));
    // Failures spread over time age out of the window (strict counting:
    // the refused 4th attempt counts too).
    let slow = client("198.51.100.9", None);
    for _ in 0..3 {
        assert!(p.note_auth_failure(&slow, None, clock.now()).is_continue());
        clock.advance(Duration::from_secs(301));
    }
    assert!(p.note_auth_failure(&slow, None, clock.now()).is_continue());
    // The user name is blocked for other clients too (454), until it ends.
    let mut legit = client("192.0.2.50", Some("victim@example.com"));
    let blocked = p.check_auth(&legit, clock.now());
    assert_eq!(codes(&blocked), (454, "4.7.0".into()));
    legit.authenticated = Some("other@example.com".into());
    assert!(p.check_auth(&legit, clock.now()).is_continue());
    clock.advance(Duration::from_secs(3600));
    assert!(p.check_connect(&attacker, clock.now()).is_continue());
}

#[derive(Debug)]
struct Broken;

impl Directory for Broken {
    fn mailbox_exists(&self, _: &Address) -> Result<bool, DirectoryError> {
        Err(DirectoryError::Unavailable("ldap down".into()))
    }
}

#[test]
fn from_restrictions() {
    let mut config = PolicyConfig::default();
    config.domain_accounts = true;
    config.from = FromRules {
        require_own_identity: true,
        required_domains: vec![
            Domain::parse("example.com").unwrap(),
            Domain::parse("old.example").unwrap(),
        ],
        identities: [(
            "alice@example.com".to_owned(),
            vec![Address::parse("alice@old.example").unwrap()],
        )]
        .into(),
        check_header_from: true,
        allow_null_sender: false,
        directory: None,
    };
    let p = policy(config);
    let now = ManualClock::default().now();
    let alice = client("192.0.2.1", Some("alice@example.com"));
    let account = p.account(&alice);
    let mail = |s: &str| p.check_mail(&alice, &account, &from(s), &MailParams::default(), now);
    assert!(mail("<alice@example.com>").is_continue());
    assert!(mail("<ALICE@Example.COM>").is_continue());
    assert!(mail("<alice@old.example>").is_continue(), "admin-mapped");
    assert_eq!(
        wire(&mail("<bob@example.com>")),
        "553 5.7.1 Sender address not owned by the authenticated user"
    );
    assert_eq!(
        wire(&mail("<alice@elsewhere.example>")),
        "553 5.7.1 Sender address is not in an allowed domain"
    );
    assert_eq!(codes(&mail("<>")), (553, "5.7.1".into()));
    // Bob has no mapping for the old address.
    let bob = client("192.0.2.1", Some("bob@old.example"));
    let bob_account = p.account(&bob);
    assert!(
        p.check_mail(
            &bob,
            &bob_account,
            &from("<alice@old.example>"),
            &MailParams::default(),
            now
        )
        .is_refusal()
    );
    // A domain account may use any address of its domain.
    let dom = client("192.0.2.1", Some("example.com"));
    let dom_account = p.account(&dom);
    assert!(
        p.check_mail(
            &dom,
            &dom_account,
            &from("<anyone@example.com>"),
            &MailParams::default(),
            now
        )
        .is_continue()
    );
    // Header From at end of data.
    let msg = |h: &str| format!("{h}\r\nSubject: x\r\n\r\nbody\r\n").into_bytes();
    assert!(
        p.check_message(&account, &msg("From: Alice <alice@example.com>"), now)
            .is_continue()
    );
    assert_eq!(
        wire(&p.check_message(&account, &msg("From: Bob <bob@example.com>"), now)),
        "550 5.7.1 Header From not allowed for this account"
    );
    assert_eq!(
        wire(&p.check_message(&account, &msg("From: nonsense"), now)),
        "550 5.7.1 Header From is missing or invalid"
    );
    // Inbound clients are not held to outbound identities.
    let inbound = client("203.0.113.1", None);
    let inbound_account = p.account(&inbound);
    assert!(
        p.check_mail(
            &inbound,
            &inbound_account,
            &from("<x@else.example>"),
            &MailParams::default(),
            now
        )
        .is_continue()
    );
}

#[test]
fn valid_sender_required_uses_the_directory() {
    let mut config = PolicyConfig::default();
    config.from.allow_null_sender = true;
    config.from.directory = Some(Arc::new(Known(vec!["alice@example.com"])));
    let p = policy(config);
    let now = ManualClock::default().now();
    let c = client("192.0.2.1", Some("alice@example.com"));
    let a = p.account(&c);
    let mail = |s: &str| p.check_mail(&c, &a, &from(s), &MailParams::default(), now);
    assert!(mail("<alice@example.com>").is_continue());
    assert_eq!(
        wire(&mail("<ghost@example.com>")),
        "553 5.7.1 Sender address unknown"
    );

    // A failing directory defers: never accept what could not be checked.
    let mut config = PolicyConfig::default();
    config.from.allow_null_sender = true;
    config.from.directory = Some(Arc::new(Broken));
    let p = policy(config);
    assert_eq!(
        p.check_mail(
            &c,
            &a,
            &from("<alice@example.com>"),
            &MailParams::default(),
            now
        ),
        Verdict::Defer(Reply::temporary_failure())
    );
}

#[test]
fn allow_and_deny_lists_come_before_the_limits() {
    let mut config = PolicyConfig::default();
    config.account_defaults = rates(|r| {
        r.messages_per_minute = Some(1);
        r.recipients_per_minute = Some(1);
    });
    config.senders = AccessList::new()
        .allow("*@trusted.example")
        .deny("spammer@example.com");
    config.recipients = AccessList::new()
        .allow("postmaster@example.com")
        .deny(".blocked.example");
    let p = policy(config);
    let now = ManualClock::default().now();
    let spammer = session(&p, "192.0.2.1", "spammer@example.com");
    assert_eq!(
        wire(&spammer.mail(&p, now)),
        "550 5.7.1 Sender address rejected: access denied"
    );
    let trusted = session(&p, "192.0.2.1", "news@trusted.example");
    for _ in 0..5 {
        assert!(trusted.mail(&p, now).is_continue(), "exempt from limits");
    }
    let s = session(&p, "192.0.2.1", "alice@example.com");
    assert!(s.rcpt(&p, "<a@x.org>", now).is_continue());
    assert!(s.rcpt(&p, "<b@x.org>", now).is_refusal(), "limit reached");
    assert!(s.rcpt(&p, "<postmaster@example.com>", now).is_continue());
    assert_eq!(
        codes(&s.rcpt(&p, "<x@mx.blocked.example>", now)),
        (550, "5.7.1".into())
    );
}

#[test]
fn maximum_message_size_per_account() {
    let mut config = PolicyConfig::default();
    config.account_defaults.max_message_size = Some(1000);
    config.account_limits.insert(
        "big@example.com".into(),
        AccountLimits {
            max_message_size: Some(10_000),
            ..AccountLimits::default()
        },
    );
    let p = policy(config);
    let now = ManualClock::default().now();
    let small = session(&p, "192.0.2.1", "alice@example.com");
    let big = session(&p, "192.0.2.1", "big@example.com");
    let mut params = MailParams::default();
    params.size = Some(1000);
    assert!(
        p.check_mail(&small.client, &small.account, &small.sender, &params, now)
            .is_continue()
    );
    params.size = Some(1001);
    let v = p.check_mail(&small.client, &small.account, &small.sender, &params, now);
    assert_eq!(v, Verdict::Reject(Reply::message_too_big()));
    assert!(
        p.check_mail(&big.client, &big.account, &big.sender, &params, now)
            .is_continue()
    );
    assert!(
        p.check_message(&small.account, &[b'x'; 1000], now)
            .is_continue()
    );
    assert_eq!(
        codes(&p.check_message(&small.account, &[b'x'; 1001], now)),
        (552, "5.3.4".into())
    );
}

#[test]
fn repeated_violations_lock_then_auto_unlock_then_lock_permanently() {
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let mut config = PolicyConfig::default();
    config.account_defaults = rates(|r| r.messages_per_minute = Some(1));
    config.abuse = Some(AbuseLock {
        violations: 2,
        violation_window: Duration::from_secs(3600),
        lock_time: Duration::from_secs(1800),
        max_auto_unlocks: 1,
    });
    let p = Policy::new(config.clone(), store.clone());
    let clock = ManualClock::default();
    let s = session(&p, "192.0.2.1", "alice@example.com");
    // One admitted, then refusals: the 3rd refusal exceeds 2 violations.
    assert!(s.mail(&p, clock.now()).is_continue());
    for _ in 0..3 {
        assert!(wire(&s.mail(&p, clock.now())).contains("Rate limit exceeded"));
    }
    clock.advance(Duration::from_secs(120));
    let locked = s.mail(&p, clock.now());
    assert_eq!(
        wire(&locked),
        "451 4.7.1 Account locked for 1680 more seconds: more than 2 limit violations"
    );
    let record = p.lock_record(&s.account).unwrap().unwrap();
    assert_eq!(record.times_locked, 1);

    // A restart: a new policy over the same store still sees the lock.
    let restarted = Policy::new(config, store.clone());
    assert!(s.mail(&restarted, clock.now()).is_refusal());
    clock.advance(Duration::from_secs(1680));
    assert!(
        s.mail(&restarted, clock.now()).is_continue(),
        "auto-unlocked"
    );

    // Next lock (by an abuse signal) is the 2nd: beyond max_auto_unlocks = 1.
    let r = restarted
        .signal_abuse(
            &s.account,
            &AbuseSignal::BulkMessage { recipients: 500 },
            clock.now(),
        )
        .unwrap();
    assert_eq!((r.times_locked, r.state), (2, LockState::Permanent));
    clock.advance(Duration::from_secs(30 * 86_400));
    assert_eq!(
        wire(&s.mail(&restarted, clock.now())),
        "550 5.7.1 Account locked: bulk message to 500 recipients"
    );
    restarted.unlock(&s.account, false).unwrap();
    assert!(s.mail(&restarted, clock.now()).is_continue());

    let report = restarted.report(clock.now()).unwrap();
    assert_eq!(report.locks.len(), 1);
    assert_eq!(report.locks[0].key, "lock:u:alice@example.com");
    assert!(!report.locks[0].in_effect);
    assert_eq!(report.locks[0].record.times_locked, 2);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.rule == Rule::Abuse && v.detail == "bulk message to 500 recipients")
    );
}

#[test]
fn connection_rate_deny_networks_and_load_gate() {
    let mut config = PolicyConfig::default();
    config.connection_rate = Some(Window::per_minute(2));
    config.deny_networks = vec![("203.0.113.0".parse().unwrap(), 24)];
    let gate = Arc::new(LoadGate::new(LoadThresholds {
        max_sessions: 10,
        max_queue: 100,
        reopen_percent: 50,
    }));
    let p = policy(config).with_load_gate(gate.clone());
    let clock = ManualClock::default();
    let c = client("192.0.2.1", None);
    assert!(p.check_connect(&c, clock.now()).is_continue());
    assert!(p.check_connect(&c, clock.now()).is_continue());
    let third = p.check_connect(&c, clock.now());
    assert!(matches!(third, Verdict::Disconnect(_)));
    assert_eq!(codes(&third), (421, "4.7.0".into()));
    let denied = p.check_connect(&client("203.0.113.77", None), clock.now());
    assert_eq!(
        denied,
        Verdict::Reject(Reply::new(554, (5, 7, 1), "Access denied"))
    );
    gate.update(Load {
        sessions: 10,
        queue: 0,
    });
    let busy = p.check_connect(&client("198.51.100.1", None), clock.now());
    assert_eq!(wire(&busy), "421 4.3.2 Server busy, try again later");
    gate.update(Load {
        sessions: 4,
        queue: 0,
    });
    assert!(
        p.check_connect(&client("198.51.100.1", None), clock.now())
            .is_continue()
    );
}

/// A store that always fails.
struct Down;

impl CounterStore for Down {
    fn decide(&self, _: &Request<'_>, _: SystemTime) -> Result<Outcome, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn block(&self, _: &str, _: SystemTime, _: SystemTime) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn lock(
        &self,
        _: &str,
        _: Duration,
        _: u32,
        _: &str,
        _: SystemTime,
    ) -> Result<LockRecord, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn unlock(&self, _: &str, _: bool) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn lock_record(&self, _: &str) -> Result<Option<LockRecord>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn locks(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn counters(&self, _: SystemTime) -> Result<Vec<CounterSnapshot>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[test]
fn store_failure_defers_by_default_and_fails_open_only_when_chosen() {
    let mut config = PolicyConfig::default();
    config.account_defaults = rates(|r| r.messages_per_minute = Some(10));
    let p = Policy::new(config.clone(), Arc::new(Down));
    let now = ManualClock::default().now();
    let s = session(&p, "192.0.2.1", "alice@example.com");
    let v = s.mail(&p, now);
    assert_eq!(
        wire(&v),
        "451 4.3.0 Temporary local problem, please try again later"
    );
    assert_eq!(
        s.rcpt(&p, "<a@x.org>", now),
        Verdict::Defer(Reply::temporary_failure())
    );
    assert!(p.check_connect(&s.client, now).is_refusal());
    config.on_store_error = StoreFailure::FailOpen;
    let open = Policy::new(config, Arc::new(Down));
    assert!(s.mail(&open, now).is_continue());
    assert!(s.rcpt(&open, "<a@x.org>", now).is_continue());
}

#[test]
fn report_shows_counters_and_violations() {
    let mut config = PolicyConfig::default();
    config.account_defaults = rates(|r| {
        r.messages_per_minute = Some(5);
        r.messages_per_hour = Some(50);
    });
    let p = policy(config);
    let now = ManualClock::default().now();
    let s = session(&p, "192.0.2.1", "alice@example.com");
    for _ in 0..6 {
        let _ = s.mail(&p, now);
    }
    let report = p.report(now).unwrap();
    let counts: Vec<(&str, u64, u64)> = report
        .counters
        .iter()
        .map(|c| (c.key.as_str(), c.window.as_secs(), c.count))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("msg:u:alice@example.com", 60, 5),
            ("msg:u:alice@example.com", 3600, 5)
        ]
    );
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].rule, Rule::Rate);
    assert_eq!(report.violations[0].code, 451);
    assert_eq!(report.violations[0].subject, "u:alice@example.com");
}

#[tokio::test]
async fn the_filter_runs_the_same_rules_per_stage() {
    let mut config = PolicyConfig::default();
    config.account_defaults = AccountLimits {
        rates: RateLimits {
            recipients_per_minute: Some(2),
            ..RateLimits::default()
        },
        max_message_size: Some(100),
        ..AccountLimits::default()
    };
    config.from.require_own_identity = true;
    config.from.allow_null_sender = true;
    config.from.check_header_from = true;
    config.connection_rate = Some(Window::per_minute(1));
    let clock = Arc::new(ManualClock::default());
    let p = Arc::new(policy(config));
    let chain = Chain::new().with(Arc::new(PolicyFilter::new(p.clone(), clock.clone())));

    let mut cx = Context::new(client("192.0.2.1", Some("alice@example.com")));
    assert!(chain.connect(&mut cx).await.is_continue());
    assert!(chain.auth(&mut cx).await.is_continue());
    let mut bad = from("<bob@example.com>");
    let v = chain
        .mail_from(&mut cx, &mut bad, &MailParams::default())
        .await;
    assert_eq!(codes(&v), (553, "5.7.1".into()));
    assert_eq!(cx.decided_by, Some("policy"));
    let mut good = from("<alice@example.com>");
    assert!(
        chain
            .mail_from(&mut cx, &mut good, &MailParams::default())
            .await
            .is_continue()
    );
    cx.envelope = Some(Envelope::new(good, MailParams::default()));
    for (i, expect_ok) in [(0, true), (1, true), (2, false)] {
        let mut r = Recipient::new(to(&format!("<r{i}@example.org>")));
        let v = chain.rcpt_to(&mut cx, &mut r).await;
        assert_eq!(v.is_continue(), expect_ok, "rcpt {i}: {v:?}");
    }
    let v = chain
        .message(&mut cx, b"From: alice@example.com\r\n\r\nhi\r\n")
        .await;
    assert!(v.is_continue(), "{v:?}");
    let v = chain.message(&mut cx, &[b'x'; 101]).await;
    assert_eq!(codes(&v), (552, "5.3.4".into()));
    // The clock drives the filter: a second connection within the minute is
    // refused, one after the window is not.
    let mut cx2 = Context::new(client("192.0.2.1", None));
    assert!(matches!(
        chain.connect(&mut cx2).await,
        Verdict::Disconnect(_)
    ));
    clock.advance(Duration::from_secs(61));
    assert!(chain.connect(&mut cx2).await.is_continue());
}
