//! The greylist store contract suite against Redis (runs when `REDIS_URL`
//! is set), plus two greylists sharing state through one Redis.

#![cfg(feature = "greylist")]
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Clock, ManualClock};
use portcullis_greylist::{
    Greylist, GreylistConfig, GreylistStore, Record, Rule, Space, Triplet, testing,
};
use portcullis_redis::greylist::RedisGreylistStore;

/// A store with a prefix of its own, or `None` (and a visible line) without Redis.
fn store(test: &str) -> Option<RedisGreylistStore> {
    let (url, prefix) = common::redis(test)?;
    Some(RedisGreylistStore::open(&url, prefix).unwrap())
}

#[test]
fn contract_suite() {
    let Some(store) = store("contract") else {
        return;
    };
    testing::run_all(&store);
}

#[test]
fn native_ttl_is_set_from_the_logical_expiry() {
    let Some(store) = store("ttl") else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let now = 1_767_225_600;
    let r = Record {
        first_seen: now,
        last_seen: now,
        count: 0,
        flag: false,
    };
    store.put(Space::Triplet, "k", r, now, now + 300).unwrap();
    let pool = portcullis_redis::connection::RedisPool::new(&url, "").unwrap();
    // The store's own key layout, read back through a bare pool.
    let keys: Vec<String> = pool
        .with(|c| {
            redis::cmd("KEYS")
                .arg(format!("{}*", store.pool().prefix()))
                .query(c)
        })
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = pool
        .with(|c| redis::cmd("TTL").arg(&keys[0]).query(c))
        .unwrap();
    assert!((295..=300).contains(&ttl), "TTL {ttl}");
    assert_eq!(
        store.sweep(now + 1000, 10).unwrap(),
        0,
        "Redis expires keys itself"
    );
}

#[test]
fn two_relays_share_one_greylist() {
    let Some(store) = store("fleet") else {
        return;
    };
    let store = Arc::new(store);
    let mx1 = Greylist::new(store.clone(), GreylistConfig::default());
    let mx2 = Greylist::new(store, GreylistConfig::default());
    let clock = ManualClock::default();
    let t = Triplet::new(
        "192.0.2.10".parse().unwrap(),
        "<alice@example.org>".parse().unwrap(),
        "<bob@example.net>".parse().unwrap(),
    );
    assert_eq!(mx1.check(&t, clock.now()).rule(), &Rule::NewTriplet);
    clock.advance(Duration::from_secs(300));
    // The retry reaches the other MX, which knows the first attempt.
    assert_eq!(
        mx2.check(&t, clock.now()).rule(),
        &Rule::Delayed { delayed_secs: 300 }
    );
}
