//! Redis counter store: one full policy decision (one EVALSHA round trip:
//! recipients per minute and per hour, 60 buckets each, + distinct
//! recipients) vs a plain `INCR` through the same pool. Needs `REDIS_URL`.
#![allow(clippy::disallowed_methods)] // benches own the clock
#![allow(missing_docs, clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_policy::{Counter, CounterStore, Counting, Distinct, Request, Window};
use portcullis_redis::connection::RedisPool;
use portcullis_redis::counter::RedisCounterStore;

const ACCOUNTS: usize = 1000;

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipping: REDIS_URL not set");
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("portcullis-bench:{}:{nanos}:", std::process::id());
    let store = RedisCounterStore::new(RedisPool::new(&url, prefix.clone()).unwrap());
    let plain = RedisPool::new(&url, prefix.clone()).unwrap();

    let keys: Vec<String> = (0..ACCOUNTS)
        .map(|i| format!("rcpt:u:user{i}@example.com"))
        .collect();
    let members: Vec<String> = (0..64).map(|i| format!("rcpt{i}@example.org")).collect();
    // Limits high enough that the bench measures admitted decisions.
    let windows = [Window::per_minute(1 << 40), Window::per_hour(1 << 40)];
    let start = SystemTime::now();

    let mut group = c.benchmark_group("redis_counter");
    let mut i = 0usize;
    group.bench_function("decision_minute_hour_distinct", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let a = i % ACCOUNTS;
            let counters = [Counter {
                key: &keys[a],
                cost: 1,
                windows: &windows,
                counting: Counting::Leaky,
            }];
            let req = Request {
                distinct: Some(Distinct {
                    // The policy keeps the set under the rate key.
                    key: &keys[a],
                    member: &members[i % members.len()],
                    window: Duration::from_secs(86_400),
                    limit: 1 << 40,
                }),
                counters: &counters,
                ..Request::default()
            };
            store
                .decide(&req, start + Duration::from_millis(i as u64))
                .unwrap()
        })
    });
    let mut j = 0usize;
    group.bench_function("plain_incr", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            let key = plain.key(&keys[j % ACCOUNTS]);
            plain
                .with(|conn| redis::cmd("INCR").arg(&key).query::<i64>(conn))
                .unwrap()
        })
    });
    group.finish();

    // Clean up this run's keys.
    let pattern = format!("{prefix}*");
    let found: Vec<String> = plain
        .with(|conn| {
            redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(conn)?
                .collect()
        })
        .unwrap_or_default();
    for chunk in found.chunks(500) {
        let _ = plain.with(|conn| redis::cmd("DEL").arg(chunk).query::<i64>(conn));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
