//! Backup-MX learned recipients in Redis: the [`GreylistStore`] contract
//! suite (the one the memory and redb stores pass) against a
//! [`RedisGreylistStore`] in the `recipients` namespace, what two backup
//! MXes on one Redis learn from each other, and that the namespace keeps
//! learned recipients apart from greylist entries on the same pool. Runs
//! when `REDIS_URL` is set, under a key prefix of its own per test run, and
//! prints `skipping: …` otherwise (the failure case needs no Redis).

#![cfg(feature = "greylist")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use portcullis_core::{Address, Reply, Verdict};
use portcullis_greylist::{
    GreylistStore, LearningConfig, RecipientDecision, RecipientLearning, RecipientOutcome, Record,
    Space, testing,
};
use portcullis_redis::connection::RedisPool;
use portcullis_redis::greylist::RedisGreylistStore;

/// `REDIS_URL` and a prefix no other run or test uses, or `None` (and a
/// visible line) without Redis.
fn pool(test: &str) -> Option<(String, String)> {
    common::redis(&format!("recipients:{test}"))
}

/// The learned-recipient store a relay opens: its own pool, namespace
/// `recipients`.
fn recipients(url: &str, prefix: &str) -> Arc<RedisGreylistStore> {
    let pool = Arc::new(RedisPool::new(url, prefix).unwrap());
    Arc::new(RedisGreylistStore::new(pool).with_namespace("recipients"))
}

#[test]
fn contract_suite_in_the_recipients_namespace() {
    let Some((url, prefix)) = pool("contract") else {
        return;
    };
    let store = recipients(&url, &prefix);
    assert_eq!(store.namespace(), "recipients");
    testing::run_all(&*store);
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

#[test]
fn two_backup_mxes_share_what_they_learned() {
    let Some((url, prefix)) = pool("fleet") else {
        return;
    };
    // Two relays: each its own connections, one Redis and prefix.
    let config = LearningConfig {
        defer_unknown: true,
        ..LearningConfig::default()
    };
    let mx1 = RecipientLearning::new(recipients(&url, &prefix), config.clone());
    let mx2 = RecipientLearning::new(recipients(&url, &prefix), config);
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let (ok, gone, never) = (
        addr("ok@customer.example"),
        addr("gone@customer.example"),
        addr("never@customer.example"),
    );
    // mx1 delivered to the primary: one accepted, one refused 5.1.1.
    mx1.learn(&ok, RecipientOutcome::Accepted, now).unwrap();
    mx1.learn(&gone, RecipientOutcome::NoSuchUser, now).unwrap();
    mx1.learn(&never, RecipientOutcome::Inconclusive, now)
        .unwrap();
    // mx2 judges by it at RCPT.
    assert_eq!(mx2.check(&ok, now), RecipientDecision::Valid);
    assert_eq!(mx2.check(&gone, now), RecipientDecision::Invalid);
    assert_eq!(mx2.check(&never, now), RecipientDecision::Unknown);
    assert_eq!(
        mx2.verdict(&mx2.check(&gone, now)),
        Verdict::Reject(Reply::no_such_user())
    );
    let unknown = mx2.verdict(&mx2.check(&never, now));
    assert!(
        unknown.reply().is_some_and(
            |r| r.code() == 450 && r.enhanced().is_some_and(|e| e.to_string() == "4.1.1")
        ),
        "unknown is 450 4.1.1, never a 5xx: {unknown:?}"
    );
    // Case of the local part and domain does not make a new recipient.
    assert_eq!(
        mx2.check(&addr("gone@Customer.Example"), now),
        RecipientDecision::Invalid
    );
    // The 5.1.1 expires after 3 hours (logical time, not Redis' clock);
    // the accepted recipient stays valid for 31 days.
    let later = now + Duration::from_secs(3 * 3600);
    assert_eq!(mx2.check(&gone, later), RecipientDecision::Unknown);
    assert_eq!(mx1.check(&ok, later), RecipientDecision::Valid);
    // mx2 learns the mailbox was created: mx1 sees it at once.
    mx2.learn(&gone, RecipientOutcome::Accepted, later).unwrap();
    assert_eq!(mx1.check(&gone, later), RecipientDecision::Valid);
}

#[test]
fn the_namespace_keeps_learned_recipients_apart_from_the_greylist() {
    let Some((url, prefix)) = pool("apart") else {
        return;
    };
    let shared = Arc::new(RedisPool::new(&url, prefix.as_str()).unwrap());
    let greylist = RedisGreylistStore::new(shared.clone());
    let learned = RedisGreylistStore::new(shared.clone()).with_namespace("recipients");
    let now = 1_767_225_600;
    let rec = |flag| Record {
        first_seen: now,
        last_seen: now,
        count: 0,
        flag,
    };
    greylist
        .put(Space::Recipient, "a@b.example", rec(true), now, now + 60)
        .unwrap();
    assert_eq!(
        learned.get(Space::Recipient, "a@b.example", now).unwrap(),
        None
    );
    learned
        .put(Space::Recipient, "a@b.example", rec(false), now, now + 60)
        .unwrap();
    assert_eq!(
        greylist.get(Space::Recipient, "a@b.example", now).unwrap(),
        Some(rec(true))
    );
    // Both under the pool's prefix, each under its namespace.
    let mut keys: Vec<String> = shared
        .with(|c| redis::cmd("KEYS").arg(format!("{prefix}*")).query(c))
        .unwrap();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("{prefix}greylist:r:a@b.example"),
            format!("{prefix}recipients:r:a@b.example"),
        ]
    );
}

#[test]
fn a_redis_that_does_not_answer_reads_as_unknown() {
    // Nothing listens on port 1: the store errs, and learning defers
    // (unknown), never refuses.
    let pool = RedisPool::new("redis://127.0.0.1:1", "portcullis-test:down:")
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let store = Arc::new(RedisGreylistStore::new(Arc::new(pool)).with_namespace("recipients"));
    let learning = RecipientLearning::new(store, LearningConfig::default());
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let gone = addr("gone@customer.example");
    assert!(
        learning
            .learn(&gone, RecipientOutcome::NoSuchUser, now)
            .is_err()
    );
    assert_eq!(learning.check(&gone, now), RecipientDecision::Unknown);
}
