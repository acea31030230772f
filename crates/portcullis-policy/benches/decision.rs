//! One full submission decision with the memory store (FROM check +
//! recipients per minute and per hour + distinct recipients per day) vs
//! the `governor` crate's keyed rate limiter doing one check, both over
//! 100k keys, in the same run.
#![allow(clippy::disallowed_methods)] // benches own the clock
#![allow(missing_docs, clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use portcullis_core::{Address, Client, Domain, ForwardPath, ReversePath};
use portcullis_policy::{
    Account, AccountLimits, FromRules, MemoryStore, Policy, PolicyConfig, RateLimits,
};

const KEYS: usize = 100_000;

fn bench(c: &mut Criterion) {
    let mut config = PolicyConfig::default();
    // Limits high enough that every decision is admitted (the common case).
    config.account_defaults = AccountLimits {
        rates: RateLimits {
            recipients_per_minute: Some(1 << 40),
            recipients_per_hour: Some(1 << 40),
            ..RateLimits::default()
        },
        distinct_recipients_per_day: Some(1 << 40),
        max_message_size: None,
    };
    config.from = FromRules {
        require_own_identity: true,
        required_domains: vec![Domain::parse("example.com").unwrap()],
        allow_null_sender: true,
        ..FromRules::default()
    };
    let policy = Policy::new(config, Arc::new(MemoryStore::new()));

    let sessions: Vec<(Client, Account, ReversePath)> = (0..KEYS)
        .map(|i| {
            let mut client = Client::new(
                format!("10.{}.{}.{}:4000", i >> 16, (i >> 8) & 255, i & 255)
                    .parse()
                    .unwrap(),
            );
            let name = format!("user{i}@example.com");
            client.authenticated = Some(name.clone());
            let account = policy.account(&client);
            let sender = ReversePath::Mailbox(Address::parse(&name).unwrap());
            (client, account, sender)
        })
        .collect();
    let rcpts: Vec<ForwardPath> = (0..64)
        .map(|i| ForwardPath::Mailbox(Address::parse(&format!("rcpt{i}@example.org")).unwrap()))
        .collect();
    let start = SystemTime::now();

    let governor = RateLimiter::keyed(Quota::per_minute(NonZeroU32::MAX));
    let gkeys: Vec<String> = sessions
        .iter()
        .map(|(_, a, _)| a.key().to_owned())
        .collect();

    // Warm both maps so neither measures first-insert costs.
    for (i, (client, account, sender)) in sessions.iter().enumerate() {
        assert!(
            policy
                .check_rcpt(client, account, sender, &rcpts[i % 64], start)
                .is_continue()
        );
        assert!(governor.check_key(&gkeys[i]).is_ok());
    }

    let mut group = c.benchmark_group("policy_decision_100k_keys");
    let mut i = 0usize;
    group.bench_function("portcullis_from_minute_hour_distinct", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919); // stride through keys, not sequentially
            let (client, account, sender) = &sessions[i % KEYS];
            let now = start + Duration::from_micros(i as u64);
            let from_ok = policy.config().from.check_sender(account, sender).is_ok();
            let verdict = policy.check_rcpt(client, account, sender, &rcpts[i % 64], now);
            black_box((from_ok, verdict))
        })
    });
    let mut j = 0usize;
    group.bench_function("governor_keyed_check", |b| {
        b.iter(|| {
            j = j.wrapping_add(7919);
            black_box(governor.check_key(&gkeys[j % KEYS]).is_ok())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
