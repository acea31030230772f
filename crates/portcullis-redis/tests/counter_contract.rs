//! The policy `CounterStore` contract suite against Redis (needs `REDIS_URL`).
#![cfg(feature = "counter")]
#![allow(clippy::disallowed_methods)] // a unique key prefix from the wall clock
#![allow(clippy::unwrap_used)] // test helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_policy::testing;
use portcullis_policy::{
    Counter, CounterStore, Counting, Distinct, MemoryStore, Outcome, Request, StoreError, Window,
};
use portcullis_redis::connection::RedisPool;
use portcullis_redis::counter::RedisCounterStore;

fn redis_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").ok();
    if url.is_none() {
        println!("skipping: REDIS_URL not set");
    }
    url
}

/// A store under a prefix no other run (or test) uses.
fn fresh(url: &str) -> RedisCounterStore {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!(
        "portcullis-test:{}:{}:{}:",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::SeqCst)
    );
    RedisCounterStore::new(RedisPool::new(url, prefix).unwrap())
}

#[test]
fn redis_counter_store_meets_the_contract() {
    let Some(url) = redis_url() else { return };
    testing::run_all(|| fresh(&url));
}

#[test]
fn redis_counter_store_concurrency_with_many_threads() {
    let Some(url) = redis_url() else { return };
    testing::concurrent_hits_never_exceed_the_limit(Arc::new(fresh(&url)), 6, 150);
}

/// Both stores answer a long random sequence identically (same window
/// arithmetic in Rust and in Lua).
#[test]
fn redis_and_memory_agree_on_a_random_sequence() {
    let Some(url) = redis_url() else { return };
    let redis = fresh(&url);
    let memory = MemoryStore::new();
    let windows = [
        Window::new(std::time::Duration::from_millis(1700), 5).with_buckets(7),
        Window::new(std::time::Duration::from_millis(4000), 9).with_buckets(3),
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut now = 1_767_225_600_017u64;
    for i in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        now += seed % 300;
        let cost = 1 + (seed >> 20) % 3;
        let counting = if (seed >> 30).is_multiple_of(2) {
            Counting::Leaky
        } else {
            Counting::Strict
        };
        let counters = [Counter {
            key: "agree",
            cost,
            windows: &windows,
            counting,
        }];
        let req = Request {
            counters: &counters,
            ..Request::default()
        };
        let at = UNIX_EPOCH + std::time::Duration::from_millis(now);
        let m = memory.decide(&req, at).unwrap();
        let r = redis.decide(&req, at).unwrap();
        assert_eq!(m, r, "step {i} at {now}");
    }
}

#[test]
fn redis_counter_store_reports_connection_failure() {
    if redis_url().is_none() {
        return;
    }
    // Nothing listens on port 1: an error comes back, never a guess.
    let store = RedisCounterStore::open("redis://127.0.0.1:1", "portcullis-test:down:").unwrap();
    let w = [Window::per_minute(1)];
    let counters = [Counter {
        key: "k",
        cost: 1,
        windows: &w,
        counting: Counting::Leaky,
    }];
    let req = Request {
        counters: &counters,
        ..Request::default()
    };
    let result: Result<Outcome, StoreError> = store.decide(&req, UNIX_EPOCH);
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(store.lock_record("x").is_err());
}

/// Both stores agree on requests of every shape: one or two counters
/// (sometimes on the same key), one or two windows, strict or leaky, with
/// and without a distinct set, and a clock that sometimes steps back. This
/// runs both Redis scripts (the straight-line one and its fallback).
#[test]
fn redis_and_memory_agree_on_mixed_requests_and_clock_steps() {
    let Some(url) = redis_url() else { return };
    let redis = fresh(&url);
    let memory = MemoryStore::new();
    let ms = std::time::Duration::from_millis;
    let minute = [Window::new(ms(1700), 6).with_buckets(7)];
    let both = [
        Window::new(ms(1700), 6).with_buckets(7),
        Window::new(ms(4000), 11).with_buckets(3),
    ];
    let members = ["a@x", "b@x", "c@x", "d@x"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut now = 1_767_225_600_017u64;
    for i in 0..800 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if (seed >> 8).is_multiple_of(9) {
            now -= seed % 900; // a step back
        } else {
            now += seed % 250;
        }
        let counting = |bit: u64| {
            if (seed >> bit).is_multiple_of(2) {
                Counting::Leaky
            } else {
                Counting::Strict
            }
        };
        let windows: &[Window] = if (seed >> 40).is_multiple_of(2) {
            &minute
        } else {
            &both
        };
        let second_key = if (seed >> 44).is_multiple_of(3) {
            "k"
        } else {
            "j"
        };
        let counters = [
            Counter {
                key: "k",
                cost: 1 + (seed >> 20) % 3,
                windows,
                counting: counting(30),
            },
            Counter {
                key: second_key,
                cost: 1,
                windows: &both,
                counting: counting(31),
            },
        ];
        let n = 1 + usize::from((seed >> 50).is_multiple_of(4));
        let distinct = (seed >> 52).is_multiple_of(2).then(|| Distinct {
            key: "k",
            member: members[(seed >> 54) as usize % members.len()],
            window: ms(3000),
            limit: 3,
        });
        let req = Request {
            distinct,
            counters: &counters[..n],
            ..Request::default()
        };
        let at = UNIX_EPOCH + ms(now);
        let m = memory.decide(&req, at).unwrap();
        let r = redis.decide(&req, at).unwrap();
        assert_eq!(m, r, "step {i} at {now}");
    }
    let mut m = memory.counters(UNIX_EPOCH + ms(now)).unwrap();
    let mut r = redis.counters(UNIX_EPOCH + ms(now)).unwrap();
    m.sort_by(|a, b| (&a.key, a.window).cmp(&(&b.key, b.window)));
    r.sort_by(|a, b| (&a.key, a.window).cmp(&(&b.key, b.window)));
    assert_eq!(m, r, "the reports agree too");
}
