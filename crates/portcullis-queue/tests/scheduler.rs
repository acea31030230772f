//! Scheduler behaviour with a `ManualClock`: backoff, expiry, delay
//! warnings, per-destination limits, partial delivery, admin operations.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use portcullis_core::{
    Clock, Envelope, ForwardPath, MailParams, ManualClock, Recipient, Reply, ReversePath,
};
use portcullis_queue::{
    DeliveryState, DestinationLimits, Hold, MessageInfo, Outcome, QueueEvent, QueueId,
    RecipientStatus, Scheduler, SchedulerConfig, Spool, SpoolConfig,
};
use proptest::prelude::*;

fn info(id: u64, arrival: SystemTime, rcpts: &[&str]) -> MessageInfo {
    // MessageInfo is #[non_exhaustive]: build it through a real spool round trip
    // would need I/O, so take one from a spool once and patch fields.
    let mut env = Envelope::new(
        ReversePath::parse("<alice@example.org>").unwrap(),
        MailParams::default(),
    );
    for r in rcpts {
        env.recipients
            .push(Recipient::new(ForwardPath::parse(r).unwrap()));
    }
    let mut i = template();
    i.id = QueueId(id);
    i.arrival = arrival;
    i.state = DeliveryState::new(env.recipients.len());
    i.envelope = env;
    i
}

fn template() -> MessageInfo {
    use std::sync::OnceLock;
    static T: OnceLock<MessageInfo> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path(),
            SpoolConfig::default(),
            std::sync::Arc::new(ManualClock::default()),
        )
        .unwrap();
        let env = Envelope::new(ReversePath::Null, MailParams::default());
        let id = spool.store(&env, b"x").unwrap();
        spool.inspect(id).unwrap()
    })
    .clone()
}

fn deferred() -> Outcome {
    Outcome::Deferred(Reply::new(451, (4, 7, 1), "try later"))
}

fn delivered() -> Outcome {
    Outcome::Delivered(Reply::new(250, (2, 0, 0), "ok"))
}

fn drain(s: &mut Scheduler) -> Vec<QueueEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

#[test]
fn backoff_doubles_from_five_minutes_to_the_cap_with_jitter() {
    let clock = ManualClock::default();
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.enqueue(&info(1, clock.now(), &["<b@x.example>"]), clock.now());
    let expected = [300u64, 600, 1200, 2400, 4000, 4000, 4000];
    for want in expected {
        let d = s.next_due(clock.now()).expect("due");
        assert!(s.next_due(clock.now()).is_none());
        s.on_outcome(&d, &[deferred()], clock.now());
        // (next_wakeup may be the 4 h delay-warning timer; the retry time is per recipient.)
        let wake = s.delivery_state(d.id).unwrap().recipients[0]
            .next_attempt
            .unwrap();
        assert!(s.next_wakeup().unwrap() <= wake);
        let wait = wake.duration_since(clock.now()).unwrap().as_secs_f64();
        let lo = want as f64 * 0.9 - 1.0;
        let hi = (want as f64 * 1.1).min(4000.0) + 1.0;
        assert!(
            (lo..=hi).contains(&wait),
            "after {} attempts waited {wait}, expected ~{want}",
            d.attempt
        );
        // Nothing is due a second early.
        clock.set(wake - Duration::from_secs(1));
        assert!(s.next_due(clock.now()).is_none());
        while s.poll_event().is_some() {}
        clock.set(wake);
    }
}

#[test]
fn jitter_spreads_messages_deferred_together() {
    let clock = ManualClock::default();
    let mut s = Scheduler::new(SchedulerConfig::default());
    for id in 0..20 {
        s.enqueue(&info(id, clock.now(), &["<b@x.example>"]), clock.now());
    }
    let mut due = Vec::new();
    while let Some(d) = s.next_due(clock.now()) {
        s.on_outcome(&d, &[deferred()], clock.now());
        due.push(
            s.delivery_state(d.id).unwrap().recipients[0]
                .next_attempt
                .unwrap(),
        );
    }
    due.sort();
    due.dedup();
    assert!(due.len() > 10, "retries should not be in lockstep: {due:?}");
}

#[test]
fn expires_after_eight_days_with_a_failure_dsn() {
    let clock = ManualClock::default();
    let arrival = clock.now();
    let mut s = Scheduler::new(SchedulerConfig::default());
    let msg = info(7, arrival, &["<b@x.example>"]);
    s.enqueue(&msg, arrival);
    let mut attempts = 0;
    let mut bounced = None;
    while bounced.is_none() {
        if let Some(d) = s.next_due(clock.now()) {
            attempts += 1;
            s.on_outcome(&d, &[deferred()], clock.now());
        }
        for e in drain(&mut s) {
            if let QueueEvent::Bounced { reply, expired, .. } = e {
                assert!(expired);
                bounced = Some((reply, clock.now()));
            }
        }
        if let Some(w) = s.next_wakeup() {
            clock.set(w.max(clock.now()));
        } else {
            break;
        }
    }
    let (reply, at) = bounced.expect("expired");
    let age = at.duration_since(arrival).unwrap();
    assert_eq!(
        age,
        Duration::from_secs(8 * 86_400),
        "bounced exactly at the lifetime"
    );
    assert_eq!(reply.code(), 554);
    assert_eq!(reply.enhanced().unwrap().to_string(), "5.4.7");
    assert!(reply.text().contains("try later"), "{}", reply.text());
    // 8 days of retries at ≤ 4000 s each after the ramp-up: ~170 attempts.
    assert!((150..=200).contains(&attempts), "{attempts}");
    assert!(s.is_empty());
    assert!(s.next_wakeup().is_none());

    // The failure DSN for it.
    let mut msg = msg;
    msg.envelope.params.envid = Some("ENV-77".into());
    let dsn = portcullis_queue::build_dsn(
        &portcullis_queue::DsnConfig::new("mx.portcullis.test"),
        portcullis_queue::DsnKind::Failure,
        &msg,
        &[portcullis_queue::DsnRecipient::new(0, Some(reply))],
        b"Subject: lost\r\n\r\nbody\r\n",
        at,
        None,
    )
    .unwrap();
    let text = String::from_utf8(dsn.message).unwrap();
    assert!(text.contains("Status: 5.4.7"));
    assert!(text.contains("Original-Envelope-Id: ENV-77"));
    assert!(dsn.envelope.reverse_path.is_null());
}

#[test]
fn delay_warning_once_after_four_hours() {
    let clock = ManualClock::default();
    let arrival = clock.now();
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.enqueue(
        &info(3, arrival, &["<b@x.example>", "<c@y.example>"]),
        arrival,
    );
    let mut warnings = Vec::new();
    for _ in 0..400 {
        while let Some(d) = s.next_due(clock.now()) {
            // y.example takes it, x.example keeps deferring.
            let o = if d.destination == "y.example" {
                delivered()
            } else {
                deferred()
            };
            s.on_outcome(&d, &[o], clock.now());
        }
        for e in drain(&mut s) {
            if let QueueEvent::DelayWarning { recipients, .. } = e {
                warnings.push((clock.now(), recipients));
            }
        }
        clock.advance(Duration::from_secs(60));
        if clock.now().duration_since(arrival).unwrap() > Duration::from_secs(6 * 3600) {
            break;
        }
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let (at, rcpts) = &warnings[0];
    let age = at.duration_since(arrival).unwrap();
    assert!(age >= Duration::from_secs(4 * 3600) && age < Duration::from_secs(4 * 3600 + 60));
    assert_eq!(rcpts, &vec![0], "only the still-pending recipient");
    assert!(s.delivery_state(QueueId(3)).unwrap().delay_warned);
}

#[test]
fn per_destination_concurrency_cap() {
    let clock = ManualClock::default();
    let config =
        SchedulerConfig::default().with_limits("slow.example", DestinationLimits::new(2, None));
    let mut s = Scheduler::new(config);
    for id in 0..5 {
        s.enqueue(&info(id, clock.now(), &["<a@slow.example>"]), clock.now());
    }
    for id in 10..13 {
        s.enqueue(&info(id, clock.now(), &["<a@fast.example>"]), clock.now());
    }
    let mut out = Vec::new();
    while let Some(d) = s.next_due(clock.now()) {
        out.push(d);
    }
    let slow: Vec<_> = out
        .iter()
        .filter(|d| d.destination == "slow.example")
        .collect();
    let fast = out
        .iter()
        .filter(|d| d.destination == "fast.example")
        .count();
    assert_eq!(slow.len(), 2, "capped at 2 in flight");
    assert_eq!(fast, 3, "the slow destination does not starve the others");
    assert_eq!(s.in_flight("slow.example"), 2);
    let first = slow[0].clone();
    s.on_outcome(&first, &[delivered()], clock.now());
    let next = s.next_due(clock.now()).expect("a slot freed");
    assert_eq!(next.destination, "slow.example");
    assert!(s.next_due(clock.now()).is_none());
}

#[test]
fn per_destination_rate_limit() {
    let clock = ManualClock::default();
    let config =
        SchedulerConfig::default().with_limits("rl.example", DestinationLimits::new(100, Some(3)));
    let mut s = Scheduler::new(config);
    for id in 0..5 {
        s.enqueue(&info(id, clock.now(), &["<a@rl.example>"]), clock.now());
    }
    let mut n = 0;
    while let Some(d) = s.next_due(clock.now()) {
        s.on_outcome(&d, &[delivered()], clock.now());
        n += 1;
    }
    assert_eq!(n, 3);
    assert_eq!(
        s.next_wakeup()
            .unwrap()
            .duration_since(clock.now())
            .unwrap(),
        Duration::from_secs(60)
    );
    clock.advance(Duration::from_secs(60));
    while let Some(d) = s.next_due(clock.now()) {
        s.on_outcome(&d, &[delivered()], clock.now());
        n += 1;
    }
    assert_eq!(n, 5);
}

#[test]
fn partial_delivery_resends_only_to_pending_recipients_even_after_restart() {
    let clock = ManualClock::default();
    let mut s = Scheduler::new(SchedulerConfig::default());
    let msg = info(
        9,
        clock.now(),
        &["<a@one.example>", "<b@two.example>", "<c@one.example>"],
    );
    s.enqueue(&msg, clock.now());
    let mut by_dest = HashMap::new();
    while let Some(d) = s.next_due(clock.now()) {
        by_dest.insert(d.destination.clone(), d);
    }
    assert_eq!(by_dest["one.example"].recipients, vec![0, 2]);
    assert_eq!(by_dest["two.example"].recipients, vec![1]);
    // one.example: a delivered, c deferred; two.example: bounced.
    s.on_outcome(
        &by_dest["one.example"],
        &[delivered(), deferred()],
        clock.now(),
    );
    s.on_outcome(
        &by_dest["two.example"],
        &[Outcome::Bounced(Reply::new(550, (5, 1, 1), "no such user"))],
        clock.now(),
    );
    let events = drain(&mut s);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, QueueEvent::Delivered { recipient: 0, .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, QueueEvent::Deferred { recipient: 2, .. }))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        QueueEvent::Bounced {
            recipient: 1,
            expired: false,
            ..
        }
    )));
    let state = s.delivery_state(QueueId(9)).unwrap();
    assert_eq!(state.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(state.recipients[1].status, RecipientStatus::Bounced);
    assert_eq!(state.recipients[2].status, RecipientStatus::Pending);

    // "Restart": a fresh scheduler from the persisted state.
    let mut restarted = Scheduler::new(SchedulerConfig::default());
    let mut msg2 = msg.clone();
    msg2.state = state;
    restarted.enqueue(&msg2, clock.now());
    assert!(
        restarted.next_due(clock.now()).is_none(),
        "backoff survives restart"
    );
    clock.advance(Duration::from_secs(400));
    let d = restarted.next_due(clock.now()).unwrap();
    assert_eq!(d.recipients, vec![2], "only the pending recipient");
    assert_eq!(d.attempt, 2);
    restarted.on_outcome(&d, &[delivered()], clock.now());
    let events = drain(&mut restarted);
    assert!(matches!(events.last(), Some(QueueEvent::Completed { id }) if *id == QueueId(9)));
}

#[test]
fn hold_release_and_deliver_now() {
    let clock = ManualClock::default();
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.enqueue(&info(1, clock.now(), &["<a@x.example>"]), clock.now());
    s.hold(QueueId(1), Hold::Held);
    assert!(s.next_due(clock.now()).is_none());
    s.release(QueueId(1), clock.now());
    let d = s.next_due(clock.now()).unwrap();
    s.on_outcome(&d, &[deferred()], clock.now());
    assert!(s.next_due(clock.now()).is_none());
    s.deliver_now(QueueId(1), clock.now());
    let d = s.next_due(clock.now()).expect("deliver now");
    s.on_outcome(&d, &[delivered()], clock.now());
    // Quarantined messages from the spool are not scheduled.
    let mut q = info(2, clock.now(), &["<a@x.example>"]);
    q.state.hold = Hold::Quarantined {
        reason: "bulk".into(),
    };
    s.enqueue(&q, clock.now());
    assert!(s.next_due(clock.now()).is_none());
    s.remove(QueueId(2));
    assert!(s.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the transport answers, no recipient is ever handed out after
    /// it is final, every message completes within the lifetime (plus one
    /// retry interval), and concurrency caps hold at every step.
    #[test]
    fn every_message_finishes_and_nothing_is_sent_twice(
        answers in proptest::collection::vec(0u8..4, 1..400),
        rcpt_domains in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..4), 1..6),
    ) {
        let clock = ManualClock::default();
        let config = SchedulerConfig::default()
            .with_limits("d0.example", DestinationLimits::new(1, None));
        let mut s = Scheduler::new(config);
        let start = clock.now();
        let mut finals: HashMap<(u64, usize), usize> = HashMap::new();
        for (i, doms) in rcpt_domains.iter().enumerate() {
            let rcpts: Vec<String> = doms.iter().enumerate().map(|(k, d)| format!("<u{k}@d{d}.example>")).collect();
            let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
            s.enqueue(&info(i as u64, start, &refs), start);
        }
        let mut k = 0;
        let mut completed = 0;
        let limit = start + Duration::from_secs(8 * 86_400 + 4000);
        while clock.now() <= limit && completed < rcpt_domains.len() {
            let mut batch = Vec::new();
            while let Some(d) = s.next_due(clock.now()) {
                prop_assert!(s.in_flight("d0.example") <= 1);
                batch.push(d);
            }
            for d in batch {
                let outcomes: Vec<Outcome> = d.recipients.iter().map(|_| {
                    k += 1;
                    match answers[k % answers.len()] {
                        0 => delivered(),
                        1 => Outcome::Bounced(Reply::new(550, (5, 1, 1), "no")),
                        _ => deferred(),
                    }
                }).collect();
                s.on_outcome(&d, &outcomes, clock.now());
            }
            for e in drain(&mut s) {
                match e {
                    QueueEvent::Delivered { id, recipient, .. } | QueueEvent::Bounced { id, recipient, .. } => {
                        *finals.entry((id.0, recipient)).or_default() += 1;
                    }
                    QueueEvent::Completed { .. } => completed += 1,
                    _ => {}
                }
            }
            match s.next_wakeup() {
                Some(w) => clock.set(w.max(clock.now())),
                None => break,
            }
        }
        prop_assert_eq!(completed, rcpt_domains.len());
        let total: usize = rcpt_domains.iter().map(Vec::len).sum();
        prop_assert_eq!(finals.len(), total);
        prop_assert!(finals.values().all(|&n| n == 1), "a recipient was finalised twice");
    }
}
