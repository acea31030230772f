//! The [`CounterStore`] contract suite. Every store implementation runs it:
//! the memory store from this crate's tests, the Redis store from
//! `portcullis-redis/tests/counter_contract.rs`.
//!
//! Each check takes a fresh, empty store and panics on a violation. Time is
//! a [`ManualClock`] starting on a minute and hour boundary.

// A test suite: panicking on a broken contract is its job.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_core::{Clock, ManualClock};

use crate::store::{
    Counter, CounterStore, Counting, Distinct, LockState, Outcome, Request, Window,
};

fn clock() -> ManualClock {
    // 2026-01-01T00:00:00Z: a multiple of 60 and of 3600 seconds.
    ManualClock::default()
}

fn hit<S: CounterStore + ?Sized>(
    store: &S,
    key: &str,
    cost: u64,
    windows: &[Window],
    counting: Counting,
    clock: &ManualClock,
) -> Outcome {
    let counters = [Counter {
        key,
        cost,
        windows,
        counting,
    }];
    store
        .decide(
            &Request {
                counters: &counters,
                ..Request::default()
            },
            clock.now(),
        )
        .unwrap()
}

fn retry_of(outcome: &Outcome) -> Duration {
    match outcome {
        Outcome::Limited { retry_after, .. } => *retry_after,
        other => panic!("expected Limited, got {other:?}"),
    }
}

/// Run every check, each on a fresh store from `fresh`.
pub fn run_all<S: CounterStore + 'static>(fresh: impl Fn() -> S) {
    window_admits_limit_and_frees_at_the_documented_instant(&fresh());
    strict_counts_refusals_leaky_does_not(&fresh());
    all_windows_and_counters_or_none(&fresh());
    distinct_members_count_once_and_expire(&fresh());
    a_set_and_a_counter_may_share_a_key(&fresh());
    blocks_end_at_their_instant(&fresh());
    locks_auto_unlock_then_turn_permanent(&fresh());
    snapshots_report_current_counts(&fresh());
    concurrent_hits_never_exceed_the_limit(Arc::new(fresh()), 4, 200);
}

/// 3 per minute: the 4th hit is refused with a retry hint; hits stop
/// counting `T` after the end of their bucket, not earlier.
pub fn window_admits_limit_and_frees_at_the_documented_instant<S: CounterStore + ?Sized>(
    store: &S,
) {
    let c = clock();
    let w = [Window::per_minute(3)];
    for _ in 0..3 {
        assert_eq!(
            hit(store, "w", 1, &w, Counting::Leaky, &c),
            Outcome::Admitted
        );
    }
    let refused = hit(store, "w", 1, &w, Counting::Leaky, &c);
    match refused {
        Outcome::Limited {
            counter: 0,
            window: 0,
            count: 3,
            retry_after,
        } => {
            // Hits at t0 (bucket start, g = 1 s) count until t0 + 61 s.
            assert_eq!(retry_after, Duration::from_secs(61));
        }
        other => panic!("expected Limited, got {other:?}"),
    }
    // Exactly one window later the hits still count (strict side) …
    c.advance(Duration::from_secs(60));
    assert_eq!(
        retry_of(&hit(store, "w", 1, &w, Counting::Leaky, &c)),
        Duration::from_secs(1)
    );
    // … and one millisecond before they stop counting, too.
    c.advance(Duration::from_millis(999));
    assert_eq!(
        retry_of(&hit(store, "w", 1, &w, Counting::Leaky, &c)),
        Duration::from_millis(1)
    );
    c.advance(Duration::from_millis(1));
    assert_eq!(
        hit(store, "w", 1, &w, Counting::Leaky, &c),
        Outcome::Admitted
    );
    // Another key is independent.
    assert_eq!(
        hit(store, "other", 3, &w, Counting::Leaky, &c),
        Outcome::Admitted
    );
    // A cost above the limit never fits; the hint is one window.
    assert_eq!(
        retry_of(&hit(store, "big", 4, &w, Counting::Leaky, &c)),
        Duration::from_secs(60)
    );
}

/// Strict counting keeps a client that keeps trying locked out; leaky lets
/// it back once old traffic ages out.
pub fn strict_counts_refusals_leaky_does_not<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    let w = [Window::per_minute(2)];
    for key in ["leaky", "strict"] {
        let mode = if key == "strict" {
            Counting::Strict
        } else {
            Counting::Leaky
        };
        assert_eq!(hit(store, key, 1, &w, mode, &c), Outcome::Admitted);
        assert_eq!(hit(store, key, 1, &w, mode, &c), Outcome::Admitted);
    }
    c.advance(Duration::from_secs(30));
    // Refused attempts at t0+30 s.
    assert!(matches!(
        hit(store, "leaky", 1, &w, Counting::Leaky, &c),
        Outcome::Limited { count: 2, .. }
    ));
    assert!(matches!(
        hit(store, "strict", 1, &w, Counting::Strict, &c),
        Outcome::Limited { count: 2, .. }
    ));
    // At t0+61 s the first two hits stop counting.
    c.advance(Duration::from_secs(31));
    assert_eq!(
        hit(store, "leaky", 1, &w, Counting::Leaky, &c),
        Outcome::Admitted
    );
    // The refused strict attempt (t0+30 s) still counts: 1 + 1 = 2 ≤ 2 …
    assert_eq!(
        hit(store, "strict", 1, &w, Counting::Strict, &c),
        Outcome::Admitted
    );
    // … and now the window is full again; the hint points at t0+91 s.
    assert_eq!(
        retry_of(&hit(store, "strict", 1, &w, Counting::Strict, &c)),
        Duration::from_secs(30)
    );
}

/// Minute and hour windows are checked together; several counters are
/// admitted together or not at all.
pub fn all_windows_and_counters_or_none<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    let both = [Window::per_minute(2), Window::per_hour(3)];
    assert_eq!(
        hit(store, "mh", 2, &both, Counting::Leaky, &c),
        Outcome::Admitted
    );
    c.advance(Duration::from_secs(120));
    assert_eq!(
        hit(store, "mh", 1, &both, Counting::Leaky, &c),
        Outcome::Admitted
    );
    let refused = hit(store, "mh", 1, &both, Counting::Leaky, &c);
    match refused {
        Outcome::Limited {
            window: 1,
            count: 3,
            retry_after,
            ..
        } => {
            // The first two hits (bucket of 60 s at t0) count until t0+3660 s.
            assert_eq!(retry_after, Duration::from_secs(3660 - 120));
        }
        other => panic!("expected the hour window to refuse, got {other:?}"),
    }

    // Counter "b" refuses, so "a" (leaky) must not have been counted.
    let one = [Window::per_minute(1)];
    assert_eq!(
        hit(store, "b", 1, &one, Counting::Leaky, &c),
        Outcome::Admitted
    );
    let pair = [
        Counter {
            key: "a",
            cost: 1,
            windows: &one,
            counting: Counting::Leaky,
        },
        Counter {
            key: "b",
            cost: 1,
            windows: &one,
            counting: Counting::Leaky,
        },
        Counter {
            key: "s",
            cost: 1,
            windows: &one,
            counting: Counting::Strict,
        },
    ];
    let out = store
        .decide(
            &Request {
                counters: &pair,
                ..Request::default()
            },
            c.now(),
        )
        .unwrap();
    assert!(
        matches!(out, Outcome::Limited { counter: 1, .. }),
        "{out:?}"
    );
    assert_eq!(
        hit(store, "a", 1, &one, Counting::Leaky, &c),
        Outcome::Admitted,
        "the leaky counter before the refusing one was rolled back"
    );
    assert!(
        matches!(
            hit(store, "s", 1, &one, Counting::Strict, &c),
            Outcome::Limited { count: 1, .. }
        ),
        "the strict counter after the refusing one was counted anyway"
    );
}

fn distinct_req<'a>(member: &'a str, limit: u64, counters: &'a [Counter<'a>]) -> Request<'a> {
    Request {
        distinct: Some(Distinct {
            key: "d",
            member,
            window: Duration::from_secs(86_400),
            limit,
        }),
        counters,
        ..Request::default()
    }
}

/// A member counts once per sliding day; a new member past the cap is
/// refused and not recorded; a refusal by a counter un-records it.
pub fn distinct_members_count_once_and_expire<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    for m in ["x@a", "y@a", "x@a", "x@a"] {
        assert_eq!(
            store.decide(&distinct_req(m, 2, &[]), c.now()).unwrap(),
            Outcome::Admitted,
            "{m}"
        );
    }
    assert_eq!(
        store.decide(&distinct_req("z@a", 2, &[]), c.now()).unwrap(),
        Outcome::DistinctExceeded { count: 2 }
    );
    // x was seen again later: at t0 + 1 day y has aged out but x has not.
    c.advance(Duration::from_secs(3600));
    assert_eq!(
        store.decide(&distinct_req("x@a", 2, &[]), c.now()).unwrap(),
        Outcome::Admitted
    );
    c.advance(Duration::from_secs(86_400 - 3600));
    assert_eq!(
        store.decide(&distinct_req("z@a", 2, &[]), c.now()).unwrap(),
        Outcome::Admitted,
        "y (last seen exactly one day ago) no longer counts"
    );
    assert_eq!(
        store.decide(&distinct_req("w@a", 2, &[]), c.now()).unwrap(),
        Outcome::DistinctExceeded { count: 2 },
        "x (seen 23 h ago) and z still count"
    );

    // A counter that refuses un-records a new member.
    let one = [Window::per_minute(0)];
    let counters = [Counter {
        key: "dc",
        cost: 1,
        windows: &one,
        counting: Counting::Leaky,
    }];
    c.advance(Duration::from_secs(86_400));
    assert!(matches!(
        store
            .decide(&distinct_req("p@a", 1, &counters), c.now())
            .unwrap(),
        Outcome::Limited { .. }
    ));
    assert_eq!(
        store.decide(&distinct_req("q@a", 1, &[]), c.now()).unwrap(),
        Outcome::Admitted,
        "p was not recorded, so q fits a cap of 1"
    );
}

/// A distinct set and a counter under the same key are separate data (the
/// policy keeps an account's recipient set and rate under one key).
pub fn a_set_and_a_counter_may_share_a_key<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    let w = [Window::per_minute(5)];
    let counters = [Counter {
        key: "shared",
        cost: 1,
        windows: &w,
        counting: Counting::Leaky,
    }];
    let req = |member: &'static str| Request {
        distinct: Some(Distinct {
            key: "shared",
            member,
            window: Duration::from_secs(86_400),
            limit: 2,
        }),
        counters: &counters,
        ..Request::default()
    };
    for m in ["a@x", "b@x", "a@x", "a@x", "b@x"] {
        assert_eq!(store.decide(&req(m), c.now()).unwrap(), Outcome::Admitted);
    }
    assert!(
        matches!(
            store.decide(&req("a@x"), c.now()).unwrap(),
            Outcome::Limited { count: 5, .. }
        ),
        "the counter holds five hits, not two members"
    );
    assert_eq!(
        store.decide(&req("c@x"), c.now()).unwrap(),
        Outcome::DistinctExceeded { count: 2 },
        "the set holds two members, not five hits"
    );
}

/// A block holds until its instant, and is checked before any counting.
pub fn blocks_end_at_their_instant<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    let until = c.now() + Duration::from_secs(600);
    store.block("ip", until, c.now()).unwrap();
    // A shorter block never shortens a longer one.
    store
        .block("ip", c.now() + Duration::from_secs(5), c.now())
        .unwrap();
    // An hour window, so strict hits made while blocked would still count.
    let w = [Window::per_hour(1)];
    let counters = [Counter {
        key: "blocked-counter",
        cost: 1,
        windows: &w,
        counting: Counting::Strict,
    }];
    let req = Request {
        blocks: &["other", "ip"],
        counters: &counters,
        ..Request::default()
    };
    assert_eq!(
        store.decide(&req, c.now()).unwrap(),
        Outcome::Blocked { index: 1, until }
    );
    c.advance(Duration::from_millis(599_999));
    assert!(matches!(
        store.decide(&req, c.now()).unwrap(),
        Outcome::Blocked { .. }
    ));
    c.advance(Duration::from_millis(1));
    assert_eq!(
        store.decide(&req, c.now()).unwrap(),
        Outcome::Admitted,
        "blocked requests were not counted, even strict ones"
    );
}

/// Lock history: the first `max_auto_unlocks` locks are timed, then the
/// lock is permanent until an admin unlocks.
pub fn locks_auto_unlock_then_turn_permanent<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    let lock_for = Duration::from_secs(3600);
    assert_eq!(store.lock_record("acct").unwrap(), None);
    let req = Request {
        locks: &["acct"],
        ..Request::default()
    };
    assert_eq!(store.decide(&req, c.now()).unwrap(), Outcome::Admitted);

    for n in 1..=2u32 {
        let r = store.lock("acct", lock_for, 2, "bulk", c.now()).unwrap();
        assert_eq!(r.times_locked, n);
        assert_eq!(r.state, LockState::Until(c.now() + lock_for));
        // Locking again while locked changes nothing.
        assert_eq!(
            store.lock("acct", lock_for, 2, "again", c.now()).unwrap(),
            r
        );
        match store.decide(&req, c.now()).unwrap() {
            Outcome::Locked { index: 0, record } => assert_eq!(record, r),
            other => panic!("expected Locked, got {other:?}"),
        }
        c.advance(lock_for);
        assert_eq!(
            store.decide(&req, c.now()).unwrap(),
            Outcome::Admitted,
            "lock {n} ends by itself"
        );
    }
    let third = store.lock("acct", lock_for, 2, "third", c.now()).unwrap();
    assert_eq!((third.times_locked, third.state), (3, LockState::Permanent));
    assert_eq!(third.reason, "third");
    c.advance(Duration::from_secs(365 * 86_400));
    assert!(matches!(
        store.decide(&req, c.now()).unwrap(),
        Outcome::Locked { .. }
    ));
    assert_eq!(store.locks().unwrap(), vec![("acct".to_owned(), third)]);

    // An admin unlock keeps the history: the next lock is permanent again.
    store.unlock("acct", false).unwrap();
    assert_eq!(store.decide(&req, c.now()).unwrap(), Outcome::Admitted);
    let fourth = store.lock("acct", lock_for, 2, "fourth", c.now()).unwrap();
    assert_eq!(
        (fourth.times_locked, fourth.state),
        (4, LockState::Permanent)
    );
    // Forgetting the history starts over with a timed lock.
    store.unlock("acct", true).unwrap();
    assert_eq!(store.lock_record("acct").unwrap(), None);
    let fresh = store.lock("acct", lock_for, 2, "fresh", c.now()).unwrap();
    assert_eq!(fresh.times_locked, 1);
    assert_eq!(fresh.state, LockState::Until(c.now() + lock_for));
}

/// Snapshots list the counts of every live window.
pub fn snapshots_report_current_counts<S: CounterStore + ?Sized>(store: &S) {
    let c = clock();
    let both = [Window::per_minute(10), Window::per_hour(100)];
    assert_eq!(
        hit(store, "u:alice", 3, &both, Counting::Leaky, &c),
        Outcome::Admitted
    );
    c.advance(Duration::from_secs(120));
    assert_eq!(
        hit(store, "u:alice", 2, &both, Counting::Leaky, &c),
        Outcome::Admitted
    );
    let mut snap = store.counters(c.now()).unwrap();
    snap.sort_by_key(|s| (s.key.clone(), s.window));
    let got: Vec<(&str, u64, u64)> = snap
        .iter()
        .map(|s| (s.key.as_str(), s.window.as_secs(), s.count))
        .collect();
    assert_eq!(got, vec![("u:alice", 60, 2), ("u:alice", 3600, 5)]);
}

/// `threads` threads each try `per_thread` hits of one key with a limit of
/// `per_thread`: exactly `per_thread` are admitted in total.
pub fn concurrent_hits_never_exceed_the_limit<S: CounterStore + 'static>(
    store: Arc<S>,
    threads: usize,
    per_thread: u64,
) {
    let c = Arc::new(clock());
    let admitted = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, c, admitted) = (store.clone(), c.clone(), admitted.clone());
            std::thread::spawn(move || {
                let w = [Window::per_minute(per_thread), Window::per_hour(per_thread)];
                for _ in 0..per_thread {
                    // A second counter that never refuses, so rollbacks race too.
                    let wide = [Window::per_minute(u64::MAX / 4)];
                    let counters = [
                        Counter {
                            key: "wide",
                            cost: 1,
                            windows: &wide,
                            counting: Counting::Leaky,
                        },
                        Counter {
                            key: "hot",
                            cost: 1,
                            windows: &w,
                            counting: Counting::Leaky,
                        },
                    ];
                    let req = Request {
                        counters: &counters,
                        ..Request::default()
                    };
                    if store.decide(&req, c.now()).unwrap() == Outcome::Admitted {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), per_thread);
    let snap = store.counters(c.now()).unwrap();
    let wide: Vec<u64> = snap
        .iter()
        .filter(|s| s.key == "wide")
        .map(|s| s.count)
        .collect();
    assert_eq!(
        wide,
        vec![per_thread],
        "rollbacks left the other counter exact"
    );
}
