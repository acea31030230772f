//! Bulk counting, lists, the outbound signal and the filter.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod corpus;

use std::sync::Arc;
use std::time::Duration;

use corpus::*;
use portcullis_core::{
    Action, Client, Clock, Context, Envelope, Filter, ForwardPath, MailParams, ManualClock,
    Recipient, ReversePath, Verdict,
};
use portcullis_fingerprint::testing::checksum_store_contract;
use portcullis_fingerprint::{
    BulkAction, BulkChecker, BulkConfig, BulkOutcome, Checksum, ChecksumStore, FingerprintError,
    FingerprintFilter, Fingerprinter, KnownBad, KnownBadHit, MemoryChecksumStore, OutboundAbuse,
    SolicitedBulkList, fingerprint,
};

const DATE: &str = "30 April 2026";
const HOUR: Duration = Duration::from_secs(3600);

fn sender() -> ReversePath {
    ReversePath::parse("<news@shop.example>").unwrap()
}

fn rcpts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("user{i}@example.org")).collect()
}

fn checker(threshold: u64, action: BulkAction) -> BulkChecker {
    let mut config = BulkConfig::default();
    config.bulk_threshold = threshold;
    config.bulk_action = action;
    BulkChecker::new(Arc::new(MemoryChecksumStore::default()), config)
}

#[test]
fn memory_store_meets_the_contract() {
    checksum_store_contract(&MemoryChecksumStore::new(48 * HOUR));
}

#[test]
fn memory_store_purges_old_records() {
    let store = MemoryChecksumStore::new(HOUR);
    let clock = ManualClock::default();
    store.record(&Checksum::of(b"a"), "r", clock.now()).unwrap();
    clock.advance(HOUR / 2);
    store.purge(clock.now());
    assert_eq!(store.len(), 1);
    clock.advance(HOUR);
    store.purge(clock.now());
    assert!(store.is_empty());
}

#[test]
fn near_copies_to_distinct_recipients_reach_the_threshold() {
    let c = checker(10, BulkAction::Reject);
    let clock = ManualClock::default();
    // Four batches of the run, each copy personalised: name, token, date.
    let batches = [
        ("Ann", "a1b2c3d4e5f6", DATE),
        ("Bob", "0a9b8c7d6e5f", DATE),
        ("Cy", "1f2e3d4c5b6a", "2 May 2026"),
    ];
    let mut counts = Vec::new();
    for (i, (name, token, date)) in batches.iter().enumerate() {
        let fp = fingerprint(&plain(name, token, date));
        let r = rcpts(i * 3..i * 3 + 3);
        let d = c.check(&fp, &sender(), r.iter().map(String::as_str), clock.now());
        counts.push(d.count);
        assert_eq!(d.outcome, BulkOutcome::Clean);
        clock.advance(HOUR);
    }
    assert_eq!(
        counts,
        [3, 6, 9],
        "near copies count together through LSH bands"
    );
    // A repeat to the same recipients does not add.
    let fp = fingerprint(&plain("Ann", "a1b2c3d4e5f6", DATE));
    let r = rcpts(0..3);
    assert_eq!(
        c.check(&fp, &sender(), r.iter().map(String::as_str), clock.now())
            .count,
        9
    );
    // The tenth distinct recipient makes it bulk.
    let d = c.check(&fp, &sender(), ["user99@example.org"], clock.now());
    assert_eq!(d.count, 10);
    assert_eq!(d.outcome, BulkOutcome::Bulk(BulkAction::Reject));
    let (verdict, actions) = d.verdict();
    let reply = verdict.reply().unwrap();
    assert_eq!(
        (reply.code(), reply.enhanced().map(|e| e.to_string())),
        (554, Some("5.7.1".into()))
    );
    assert!(actions.is_empty());
    // An unrelated message is not affected.
    let other = fingerprint(&unrelated()[0]);
    assert_eq!(
        c.check(&other, &sender(), ["user1@example.org"], clock.now())
            .count,
        1
    );
}

#[test]
fn counts_leave_the_window() {
    let c = checker(5, BulkAction::Tag);
    let clock = ManualClock::default();
    let fp = fingerprint(&plain("Ann", "a1", DATE));
    let r = rcpts(0..4);
    assert_eq!(
        c.check(&fp, &sender(), r.iter().map(String::as_str), clock.now())
            .count,
        4
    );
    clock.advance(23 * HOUR);
    assert_eq!(
        c.check(&fp, &sender(), ["late@example.org"], clock.now())
            .count,
        5
    );
    clock.advance(2 * HOUR);
    // The first four are now more than 24 h old.
    assert_eq!(
        c.check(&fp, &sender(), ["later@example.org"], clock.now())
            .count,
        2
    );
}

#[test]
fn actions_quarantine_and_tag() {
    let fp = fingerprint(&plain("Ann", "a1", DATE));
    let r = rcpts(0..3);
    let now = ManualClock::default().now();
    let q =
        checker(3, BulkAction::Quarantine).check(&fp, &sender(), r.iter().map(String::as_str), now);
    let (v, actions) = q.verdict();
    assert_eq!(v, Verdict::Continue);
    assert!(matches!(&actions[..], [Action::Quarantine { .. }]));
    let t = checker(3, BulkAction::Tag).check(&fp, &sender(), r.iter().map(String::as_str), now);
    let (v, actions) = t.verdict();
    assert_eq!(v, Verdict::Continue);
    assert_eq!(
        actions,
        [Action::AddHeader {
            name: "X-Portcullis-Bulk".into(),
            value: "count=3".into()
        }]
    );
    // Below the threshold: nothing.
    let clean =
        checker(4, BulkAction::Tag).check(&fp, &sender(), r.iter().map(String::as_str), now);
    assert_eq!(clean.verdict(), (Verdict::Continue, Vec::new()));
}

#[test]
fn solicited_bulk_is_counted_but_allowed() {
    let list = Arc::new(SolicitedBulkList::default());
    let c = checker(2, BulkAction::Reject).with_solicited(list.clone());
    let now = ManualClock::default().now();
    let fp = fingerprint(&plain("Ann", "a1", DATE));
    let r = rcpts(0..3);
    assert_eq!(
        c.check(&fp, &sender(), r.iter().map(String::as_str), now)
            .outcome,
        BulkOutcome::Bulk(BulkAction::Reject)
    );
    assert_eq!(
        list.reload_from_str("# trusted senders\ndomain:shop.example\n")
            .unwrap(),
        1
    );
    let d = c.check(&fp, &sender(), r.iter().map(String::as_str), now);
    assert_eq!((d.count, &d.outcome), (3, &BulkOutcome::Solicited));
    assert_eq!(d.verdict(), (Verdict::Continue, Vec::new()));
    // Subdomains of a listed domain, exact senders, List-Id.
    let sub = ReversePath::parse("<a@mail.shop.example>").unwrap();
    assert_eq!(
        c.check(&fp, &sub, ["z@example.org"], now).outcome,
        BulkOutcome::Solicited
    );
    let stranger = ReversePath::parse("<a@evil.example>").unwrap();
    assert_eq!(
        c.check(&fp, &stranger, ["z@example.org"], now).outcome,
        BulkOutcome::Bulk(BulkAction::Reject)
    );
    list.reload_from_str("sender:A@Evil.example\n").unwrap();
    assert_eq!(
        c.check(&fp, &stranger, ["z@example.org"], now).outcome,
        BulkOutcome::Solicited
    );
    assert_eq!(
        c.check(&fp, &ReversePath::Null, ["z@example.org"], now)
            .outcome,
        BulkOutcome::Bulk(BulkAction::Reject)
    );
    list.reload_from_str("list: <Announce.Lists.Example>\n")
        .unwrap();
    let listed = crlf(&format!(
        "From: a@evil.example\nList-Id: News <announce.lists.example>\n\n{}",
        offer_text("Al", "a1", DATE)
    ));
    let lfp = fingerprint(listed.as_bytes());
    let r = rcpts(0..3);
    assert_eq!(
        c.check(&lfp, &stranger, r.iter().map(String::as_str), now)
            .outcome,
        BulkOutcome::Solicited
    );
    // A bad line refuses the new list and keeps the old one.
    assert!(matches!(
        list.reload_from_str("list:ok\nbogus line\n"),
        Err(FingerprintError::List { line: 2, .. })
    ));
    assert_eq!(list.current().len(), 1);
}

#[test]
fn known_bad_lists_exact_fuzzy_and_reload() {
    let pdf = attachment_bytes();
    let known = Arc::new(KnownBad::default());
    let c = checker(1000, BulkAction::Tag).with_known_bad(known.clone());
    let now = ManualClock::default().now();
    let msg = multipart("Ann", "a1b2c3d4e5f6", DATE, &pdf, 76);
    let fp = fingerprint(&msg);
    assert_eq!(
        c.check(&fp, &sender(), ["a@example.org"], now).outcome,
        BulkOutcome::Clean
    );

    // The attachment's b3sum, as an operator would list it.
    let text = format!(
        "# malware seen 2026-11-24\n\n{}  # catalogue.pdf\n",
        Checksum::of(&pdf)
    );
    assert_eq!(known.reload_from_reader(text.as_bytes()).unwrap(), 1);
    let d = c.check(&fp, &sender(), ["b@example.org"], now);
    assert_eq!(
        d.outcome,
        BulkOutcome::KnownBad {
            hit: KnownBadHit::Exact(Checksum::of(&pdf)),
            action: BulkAction::Reject
        }
    );
    assert_eq!(d.verdict().0.reply().map(|r| r.code()), Some(554));

    // A fuzzy entry catches personalised copies, not unrelated mail.
    let listed = fingerprint(&plain("Ann", "a1", DATE)).fuzzy.unwrap();
    known
        .reload_from_str(&format!("fuzzy:{}\n", listed.to_hex()))
        .unwrap();
    let copy = fingerprint(&plain("Bartholomew", "ffee1234abcd", "3 May 2026"));
    println!(
        "similarity {}",
        listed.similarity(copy.fuzzy.as_ref().unwrap())
    );
    assert!(matches!(
        c.check(&copy, &sender(), ["c@example.org"], now).outcome,
        BulkOutcome::KnownBad {
            hit: KnownBadHit::Fuzzy { line: 1, .. },
            ..
        }
    ));
    let other = fingerprint(&unrelated()[1]);
    assert_eq!(
        c.check(&other, &sender(), ["c@example.org"], now).outcome,
        BulkOutcome::Clean
    );

    // Errors name the line and keep the list in use.
    let err = known.reload_from_str("# ok\nnot-a-checksum\n").unwrap_err();
    assert!(
        matches!(err, FingerprintError::List { line: 2, .. }),
        "{err}"
    );
    assert!(known.reload_from_str("fuzzy:abcd\n").is_err());
    assert_eq!(known.current().len(), 1);
    assert!(matches!(
        c.check(&copy, &sender(), ["c@example.org"], now).outcome,
        BulkOutcome::KnownBad { .. }
    ));
}

#[test]
fn outbound_signal_per_account() {
    let store: Arc<dyn ChecksumStore> = Arc::new(MemoryChecksumStore::default());
    let abuse = OutboundAbuse::new(store, HOUR);
    let clock = ManualClock::default();
    let spam = |name: &str| fingerprint(&plain(name, "a1b2c3d4e5f6", DATE));
    let r = rcpts(0..5);
    assert_eq!(
        abuse
            .observe(
                "alice",
                &spam("Ann"),
                r.iter().map(String::as_str),
                clock.now()
            )
            .unwrap(),
        5
    );
    let r = rcpts(5..8);
    assert_eq!(
        abuse
            .observe(
                "alice",
                &spam("Bob"),
                r.iter().map(String::as_str),
                clock.now()
            )
            .unwrap(),
        8
    );
    // Another account sending the same text has its own count.
    assert_eq!(
        abuse
            .observe("bob", &spam("Ann"), ["x@example.org"], clock.now())
            .unwrap(),
        1
    );
    assert_eq!(
        abuse
            .distinct_recipients("alice", &spam("Cy"), clock.now())
            .unwrap(),
        8
    );
    // Unrelated mail from alice is not counted with the run.
    let note = fingerprint(&unrelated()[2]);
    assert_eq!(
        abuse
            .distinct_recipients("alice", &note, clock.now())
            .unwrap(),
        0
    );
    clock.advance(2 * HOUR);
    assert_eq!(
        abuse
            .distinct_recipients("alice", &spam("Ann"), clock.now())
            .unwrap(),
        0
    );
}

struct FailingStore;

impl ChecksumStore for FailingStore {
    fn record(
        &self,
        _: &Checksum,
        _: &str,
        _: std::time::SystemTime,
    ) -> Result<(), FingerprintError> {
        Err(FingerprintError::Store("down".into()))
    }
    fn distinct_recipients(
        &self,
        _: &Checksum,
        _: Duration,
        _: std::time::SystemTime,
    ) -> Result<u64, FingerprintError> {
        Err(FingerprintError::Store("down".into()))
    }
}

#[test]
fn store_failure_fails_open_and_says_so() {
    let mut config = BulkConfig::default();
    config.bulk_threshold = 1;
    let c = BulkChecker::new(Arc::new(FailingStore), config);
    let d = c.check(
        &fingerprint(&plain("Ann", "a1", DATE)),
        &sender(),
        ["a@example.org"],
        ManualClock::default().now(),
    );
    assert_eq!(d.outcome, BulkOutcome::Clean);
    assert_eq!(d.store_error.as_deref(), Some("checksum store: down"));
}

fn context(rcpts: &[String], authenticated: Option<&str>) -> Context {
    let mut client = Client::new("192.0.2.7:40000".parse().unwrap());
    client.authenticated = authenticated.map(str::to_owned);
    let mut cx = Context::new(client);
    let mut env = Envelope::new(sender(), MailParams::default());
    for r in rcpts {
        env.recipients.push(Recipient::new(
            ForwardPath::parse(&format!("<{r}>")).unwrap(),
        ));
    }
    cx.envelope = Some(env);
    cx
}

#[tokio::test]
async fn filter_acts_at_end_of_message() {
    let clock = Arc::new(ManualClock::default());
    let mut config = BulkConfig::default();
    config.bulk_threshold = 4;
    config.bulk_action = BulkAction::Tag;
    let checker = BulkChecker::new(Arc::new(MemoryChecksumStore::default()), config);
    let filter = FingerprintFilter::new(Arc::new(Fingerprinter::default()), checker, clock.clone());
    assert_eq!(filter.name(), "fingerprint");

    let mut cx = context(&rcpts(0..2), None);
    assert_eq!(
        filter.message(&mut cx, &plain("Ann", "a1", DATE)).await,
        Verdict::Continue
    );
    assert!(cx.actions.is_empty());
    // Recipients differing only in case are one recipient.
    let mut cx = context(
        &[
            "USER0@example.org".into(),
            "user2@EXAMPLE.org".into(),
            "user3@example.org".into(),
        ],
        None,
    );
    assert_eq!(
        filter.message(&mut cx, &plain("Bob", "b2", DATE)).await,
        Verdict::Continue
    );
    assert_eq!(
        cx.actions,
        [Action::AddHeader {
            name: "X-Portcullis-Bulk".into(),
            value: "count=4".into()
        }]
    );
    // No envelope: nothing to count.
    let mut bare = Context::new(Client::new("192.0.2.7:1".parse().unwrap()));
    assert_eq!(filter.message(&mut bare, b"x").await, Verdict::Continue);
}

#[tokio::test]
async fn filter_refuses_outbound_abuse() {
    let clock = Arc::new(ManualClock::default());
    let store: Arc<dyn ChecksumStore> = Arc::new(MemoryChecksumStore::default());
    let checker = BulkChecker::new(store.clone(), BulkConfig::default());
    let filter = FingerprintFilter::new(Arc::new(Fingerprinter::default()), checker, clock.clone())
        .with_outbound(OutboundAbuse::new(store, HOUR), 6);
    let mut cx = context(&rcpts(0..5), Some("alice"));
    assert_eq!(
        filter.message(&mut cx, &plain("Ann", "a1", DATE)).await,
        Verdict::Continue
    );
    // Unauthenticated clients are not tracked per account.
    let mut anon = context(&rcpts(10..20), None);
    assert_eq!(
        filter.message(&mut anon, &plain("Ann", "a1", DATE)).await,
        Verdict::Continue
    );
    let mut cx = context(&rcpts(5..6), Some("alice"));
    let v = filter.message(&mut cx, &plain("Bob", "b2", DATE)).await;
    assert_eq!(v.reply().map(|r| r.code()), Some(554));
    let mut other = context(&rcpts(5..6), Some("carol"));
    assert_eq!(
        filter.message(&mut other, &plain("Bob", "b2", DATE)).await,
        Verdict::Continue
    );
}

#[test]
fn one_line_replies_are_not_bulk() {
    let c = checker(3, BulkAction::Reject);
    let now = ManualClock::default().now();
    let thanks =
        fingerprint(b"From: a@b.example\r\nSubject: Re: lunch\r\n\r\nThanks, see you then!\r\n");
    assert!(thanks.counting_keys().is_empty());
    let r = rcpts(0..10);
    let d = c.check(&thanks, &sender(), r.iter().map(String::as_str), now);
    assert_eq!((d.count, d.outcome), (0, BulkOutcome::Clean));
    // The same short text with an attachment is counted (by its body checksum).
    let with_file = fingerprint(
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached\r\n\
          --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b--\r\n",
    );
    assert_eq!(with_file.counting_keys(), [with_file.body]);
    let d = c.check(&with_file, &sender(), r.iter().map(String::as_str), now);
    assert_eq!(d.outcome, BulkOutcome::Bulk(BulkAction::Reject));
}
