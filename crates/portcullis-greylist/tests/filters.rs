//! The filters at RCPT, and backup-MX recipient learning.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_core::{
    Action, Address, Chain, Client, Clock, Context, Envelope, Filter, ForwardPath, MailParams,
    ManualClock, Recipient, Reply, ReversePath, Verdict, async_trait,
};
use portcullis_greylist::{
    Greylist, GreylistConfig, GreylistFilter, LearningConfig, MemoryStore, RecipientDecision,
    RecipientFilter, RecipientLearning, RecipientOutcome, RecipientVerifier,
};
use proptest::prelude::*;

fn cx(ip: &str, from: &str) -> Context {
    let mut cx = Context::new(Client::new(format!("{ip}:40000").parse().unwrap()));
    cx.envelope = Some(Envelope::new(
        ReversePath::parse(from).unwrap(),
        MailParams::default(),
    ));
    cx
}

fn rcpt(to: &str) -> Recipient {
    Recipient::new(ForwardPath::parse(to).unwrap())
}

fn greylist_filter(add_header: bool) -> (GreylistFilter, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let config = GreylistConfig {
        add_header,
        ..GreylistConfig::default()
    };
    let g = Arc::new(Greylist::new(Arc::new(MemoryStore::new()), config));
    (GreylistFilter::new(g, clock.clone()), clock)
}

#[tokio::test]
async fn greylist_filter_defers_then_passes_with_one_header() {
    let (filter, clock) = greylist_filter(true);
    let chain = Chain::new().with(Arc::new(filter));
    let mut c = cx("192.0.2.10", "<alice@example.org>");
    let v = chain.rcpt_to(&mut c, &mut rcpt("<bob@example.net>")).await;
    assert_eq!(v, Verdict::Defer(Reply::greylisted(300)));
    assert_eq!(c.decided_by, Some("greylist"));
    assert!(c.actions.is_empty());

    clock.advance(Duration::from_secs(400));
    let mut c = cx("192.0.2.10", "<alice@example.org>");
    let v = chain.rcpt_to(&mut c, &mut rcpt("<bob@example.net>")).await;
    assert_eq!(v, Verdict::Continue);
    assert_eq!(
        c.actions,
        vec![Action::AddHeader {
            name: "X-Greylist".into(),
            value: "delayed 400 seconds by portcullis-greylist".into()
        }]
    );
    // A second recipient of the same message adds no second header.
    let _ = filter_again(&chain, &mut c, "<bob@example.net>").await;
    assert_eq!(c.actions.len(), 1);
}

async fn filter_again(chain: &Chain, c: &mut Context, to: &str) -> Verdict {
    chain.rcpt_to(c, &mut rcpt(to)).await
}

#[tokio::test]
async fn greylist_filter_without_header_and_for_authenticated_clients() {
    let (filter, clock) = greylist_filter(false);
    let mut c = cx("192.0.2.10", "<alice@example.org>");
    let _ = filter.rcpt_to(&mut c, &mut rcpt("<bob@example.net>")).await;
    clock.advance(Duration::from_secs(300));
    assert!(
        filter
            .rcpt_to(&mut c, &mut rcpt("<bob@example.net>"))
            .await
            .is_continue()
    );
    assert!(c.actions.is_empty(), "headers are off by default");

    let mut c = cx("198.51.100.1", "<user@example.org>");
    c.client.authenticated = Some("user".into());
    assert!(
        filter
            .rcpt_to(&mut c, &mut rcpt("<far@example.com>"))
            .await
            .is_continue()
    );
    let mut c = cx("198.51.100.1", "<user@example.org>");
    c.client.trusted_network = true;
    assert!(
        filter
            .rcpt_to(&mut c, &mut rcpt("<far@example.com>"))
            .await
            .is_continue()
    );
    // The same client unauthenticated is greylisted.
    let mut c = cx("198.51.100.1", "<user@example.org>");
    assert!(
        filter
            .rcpt_to(&mut c, &mut rcpt("<far@example.com>"))
            .await
            .is_refusal()
    );
}

#[tokio::test]
async fn greylist_filter_reads_reverse_dns_from_the_client() {
    let clock = Arc::new(ManualClock::default());
    let mut config = GreylistConfig::default();
    config.whitelist.reverse_dns = vec!["trusted.example".into()];
    let g = Arc::new(Greylist::new(Arc::new(MemoryStore::new()), config));
    let filter = GreylistFilter::new(g, clock);
    let mut c = cx("192.0.2.10", "<alice@example.org>");
    c.client.reverse_dns = Some("mx.trusted.example".into());
    assert!(
        filter
            .rcpt_to(&mut c, &mut rcpt("<bob@example.net>"))
            .await
            .is_continue()
    );
}

fn learning(config: LearningConfig) -> (Arc<RecipientLearning>, ManualClock) {
    (
        Arc::new(RecipientLearning::new(Arc::new(MemoryStore::new()), config)),
        ManualClock::default(),
    )
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

#[test]
fn outcomes_classify_by_enhanced_code() {
    assert_eq!(
        RecipientOutcome::from_reply(&Reply::recipient_ok()),
        RecipientOutcome::Accepted
    );
    assert_eq!(
        RecipientOutcome::from_reply(&Reply::no_such_user()),
        RecipientOutcome::NoSuchUser
    );
    // 550 5.7.1 is policy, not "no such user"; 4xx teaches nothing.
    assert_eq!(
        RecipientOutcome::from_reply(&Reply::policy_rejected("no")),
        RecipientOutcome::Inconclusive
    );
    assert_eq!(
        RecipientOutcome::from_reply(&Reply::new(450, (4, 1, 1), "try later")),
        RecipientOutcome::Inconclusive
    );
    assert_eq!(
        RecipientOutcome::from_reply(&Reply::plain(550, "no")),
        RecipientOutcome::Inconclusive
    );
}

#[test]
fn learned_outcomes_and_their_separate_ttls() {
    let (l, clock) = learning(LearningConfig::default());
    let valid = addr("user@example.net");
    let invalid = addr("nobody@example.net");
    let unknown = addr("who@example.net");
    l.learn(&valid, RecipientOutcome::Accepted, clock.now())
        .unwrap();
    l.learn(&invalid, RecipientOutcome::NoSuchUser, clock.now())
        .unwrap();
    l.learn(&unknown, RecipientOutcome::Inconclusive, clock.now())
        .unwrap();

    assert_eq!(l.check(&valid, clock.now()), RecipientDecision::Valid);
    assert_eq!(l.verdict(&RecipientDecision::Valid), Verdict::Continue);
    assert_eq!(l.check(&invalid, clock.now()), RecipientDecision::Invalid);
    assert_eq!(
        l.verdict(&RecipientDecision::Invalid),
        Verdict::Reject(Reply::no_such_user())
    );
    assert_eq!(l.check(&unknown, clock.now()), RecipientDecision::Unknown);
    let v = l.verdict(&RecipientDecision::Unknown);
    assert_eq!(v.reply().map(Reply::code), Some(450));
    assert!(v.reply().unwrap().is_transient());

    // Negative TTL (3 h) boundary.
    let t = clock.now();
    assert_eq!(
        l.check(&invalid, t + Duration::from_secs(3 * 3600 - 1)),
        RecipientDecision::Invalid
    );
    assert_eq!(
        l.check(&invalid, t + Duration::from_secs(3 * 3600)),
        RecipientDecision::Unknown
    );
    // Positive TTL (31 days) boundary.
    assert_eq!(
        l.check(&valid, t + Duration::from_secs(31 * 86_400 - 1)),
        RecipientDecision::Valid
    );
    assert_eq!(
        l.check(&valid, t + Duration::from_secs(31 * 86_400)),
        RecipientDecision::Unknown
    );
    // A later outcome replaces an earlier one (the user was created).
    l.learn(
        &invalid,
        RecipientOutcome::Accepted,
        t + Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        l.check(&invalid, t + Duration::from_secs(61)),
        RecipientDecision::Valid
    );
}

#[test]
fn unknown_continues_when_not_learning() {
    let (l, _) = learning(LearningConfig {
        defer_unknown: false,
        ..LearningConfig::default()
    });
    assert_eq!(l.verdict(&RecipientDecision::Unknown), Verdict::Continue);
}

proptest! {
    /// Whatever reply an operator configures for unknown recipients, the
    /// backup MX never sends a 5xx (or a 2xx) for them.
    #[test]
    fn unknown_is_never_permanent(code in 0u16..1000, class in 0u8..10, subject in 0u16..10, detail in 0u16..10) {
        let (l, _) = learning(LearningConfig {
            unknown_reply: Reply::new(code, (class, subject, detail), "configured"),
            ..LearningConfig::default()
        });
        let v = l.verdict(&RecipientDecision::Unknown);
        let reply = v.reply().unwrap();
        prop_assert!(reply.is_transient(), "{reply:?}");
        prop_assert!(matches!(v, Verdict::Defer(_)));
    }
}

struct Primary {
    calls: AtomicUsize,
}

#[async_trait]
impl RecipientVerifier for Primary {
    async fn verify(&self, recipient: &Address) -> RecipientOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match recipient.local_part().as_str() {
            "real" => RecipientOutcome::Accepted,
            "ghost" => RecipientOutcome::NoSuchUser,
            _ => RecipientOutcome::Inconclusive,
        }
    }
}

#[tokio::test]
async fn recipient_filter_with_a_verifier_learns_from_callouts() {
    let (l, _) = learning(LearningConfig::default());
    let clock = Arc::new(ManualClock::default());
    let primary = Arc::new(Primary {
        calls: AtomicUsize::new(0),
    });
    let filter = RecipientFilter::new(l.clone(), clock.clone()).with_verifier(primary.clone());
    let mut c = cx("192.0.2.1", "<a@example.org>");

    let v = filter
        .rcpt_to(&mut c, &mut rcpt("<real@example.net>"))
        .await;
    assert_eq!(v, Verdict::Continue);
    let v = filter
        .rcpt_to(&mut c, &mut rcpt("<ghost@example.net>"))
        .await;
    assert_eq!(v, Verdict::Reject(Reply::no_such_user()));
    let v = filter
        .rcpt_to(&mut c, &mut rcpt("<down@example.net>"))
        .await;
    assert!(matches!(&v, Verdict::Defer(r) if r.code() == 450), "{v:?}");
    assert_eq!(primary.calls.load(Ordering::SeqCst), 3);

    // Learned: no second callout for the first two, a new one for the unknown.
    let _ = filter
        .rcpt_to(&mut c, &mut rcpt("<real@example.net>"))
        .await;
    let _ = filter
        .rcpt_to(&mut c, &mut rcpt("<ghost@example.net>"))
        .await;
    let _ = filter
        .rcpt_to(&mut c, &mut rcpt("<down@example.net>"))
        .await;
    assert_eq!(primary.calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        l.check(&addr("real@example.net"), clock.now()),
        RecipientDecision::Valid
    );

    // Bare <Postmaster> is always accepted and never asked about.
    let v = filter.rcpt_to(&mut c, &mut rcpt("<Postmaster>")).await;
    assert_eq!(v, Verdict::Continue);
    assert_eq!(primary.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn recipient_filter_from_fed_outcomes_only() {
    let (l, clock) = learning(LearningConfig::default());
    let filter = RecipientFilter::new(l.clone(), Arc::new(ManualClock::default()));
    let mut c = cx("192.0.2.1", "<a@example.org>");
    // Unknown while learning: deferred, never rejected.
    let v = filter
        .rcpt_to(&mut c, &mut rcpt("<user@example.net>"))
        .await;
    assert!(matches!(&v, Verdict::Defer(r) if r.is_transient()), "{v:?}");
    // The queue reports the primary's answers.
    l.learn(
        &addr("user@example.net"),
        RecipientOutcome::from_reply(&Reply::recipient_ok()),
        clock.now(),
    )
    .unwrap();
    l.learn(
        &addr("gone@example.net"),
        RecipientOutcome::from_reply(&Reply::no_such_user()),
        clock.now(),
    )
    .unwrap();
    let v = filter
        .rcpt_to(&mut c, &mut rcpt("<user@example.net>"))
        .await;
    assert_eq!(v, Verdict::Continue);
    let v = filter
        .rcpt_to(&mut c, &mut rcpt("<gone@example.net>"))
        .await;
    assert_eq!(v, Verdict::Reject(Reply::no_such_user()));
}
