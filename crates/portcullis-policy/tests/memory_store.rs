//! The `CounterStore` contract and window invariants, against `MemoryStore`.
#![allow(clippy::unwrap_used)] // test helpers

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::store::{from_ms, to_ms};
use portcullis_policy::testing;
use portcullis_policy::{Counter, CounterStore, Counting, MemoryStore, Outcome, Request, Window};
use proptest::prelude::*;

#[test]
fn memory_store_passes_the_contract() {
    testing::run_all(MemoryStore::new);
}

#[test]
fn memory_store_concurrency_with_many_threads() {
    testing::concurrent_hits_never_exceed_the_limit(Arc::new(MemoryStore::new()), 8, 500);
}

#[test]
fn purge_keeps_what_still_counts() {
    let store = MemoryStore::new();
    let t0 = from_ms(1_767_225_600_000);
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
    assert_eq!(store.decide(&req, t0).unwrap(), Outcome::Admitted);
    store.purge(t0 + Duration::from_secs(30));
    assert!(matches!(
        store.decide(&req, t0 + Duration::from_secs(30)).unwrap(),
        Outcome::Limited { .. }
    ));
    store.purge(t0 + Duration::from_secs(61));
    assert!(
        store
            .counters(t0 + Duration::from_secs(61))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.decide(&req, t0 + Duration::from_secs(61)).unwrap(),
        Outcome::Admitted
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// In any interval [s, s + T), the admitted units never exceed the limit,
    /// whatever the bucket count, costs, timing and counting mode.
    #[test]
    fn never_more_than_limit_in_any_window(
        limit in 1u64..8,
        length_ms in 1u64..5000,
        buckets in 1u32..12,
        strict in any::<bool>(),
        steps in proptest::collection::vec((0u64..700, 1u64..4), 1..120),
    ) {
        let store = MemoryStore::new();
        let window = Window::new(Duration::from_millis(length_ms), limit).with_buckets(buckets);
        let windows = [window];
        let counting = if strict { Counting::Strict } else { Counting::Leaky };
        let mut now = 1_767_225_600_123u64;
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (dt, cost) in steps {
            now += dt;
            let counters = [Counter { key: "p", cost, windows: &windows, counting }];
            let out = store.decide(&Request { counters: &counters, ..Request::default() }, from_ms(now)).unwrap();
            match out {
                Outcome::Admitted => admitted.push((now, cost)),
                Outcome::Limited { retry_after, .. } => {
                    prop_assert!(retry_after > Duration::ZERO);
                    // A bucket ends at most (k + 1) buckets after now.
                    prop_assert!(retry_after <= Duration::from_millis((window.span() + 1) * window.bucket_ms()));
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        for &(start, _) in &admitted {
            let in_window: u64 = admitted
                .iter()
                .filter(|&&(t, _)| t >= start && t < start + length_ms)
                .map(|&(_, c)| c)
                .sum();
            prop_assert!(in_window <= limit, "{} > {} in [{}, +{})", in_window, limit, start, length_ms);
        }
    }

    /// Leaky counting: the retry hint is exact. Waiting exactly that long
    /// admits the same request; a millisecond less does not.
    #[test]
    fn leaky_retry_hint_is_exact(
        limit in 1u64..6,
        length_ms in 10u64..5000,
        buckets in 1u32..12,
        steps in proptest::collection::vec(0u64..400, 1..40),
    ) {
        let store = MemoryStore::new();
        let windows = [Window::new(Duration::from_millis(length_ms), limit).with_buckets(buckets)];
        let counters = [Counter { key: "r", cost: 1, windows: &windows, counting: Counting::Leaky }];
        let req = Request { counters: &counters, ..Request::default() };
        let mut now = 1_767_225_600_000u64;
        for dt in steps {
            now += dt;
            if let Outcome::Limited { retry_after, .. } = store.decide(&req, from_ms(now)).unwrap() {
                let at = now + retry_after.as_millis() as u64;
                if retry_after > Duration::from_millis(1) {
                    prop_assert!(
                        matches!(store.decide(&req, from_ms(at - 1)).unwrap(), Outcome::Limited { .. }),
                        "admitted before the hint"
                    );
                }
                prop_assert_eq!(store.decide(&req, from_ms(at)).unwrap(), Outcome::Admitted);
                now = to_ms(from_ms(at));
            }
        }
    }
}

/// A journal in memory, standing in for the relay's file.
#[derive(Default)]
struct TestJournal {
    records: std::sync::Mutex<std::collections::HashMap<String, portcullis_policy::LockRecord>>,
    fail: std::sync::atomic::AtomicBool,
}

impl portcullis_policy::LockJournal for TestJournal {
    fn load(
        &self,
    ) -> Result<Vec<(String, portcullis_policy::LockRecord)>, portcullis_policy::StoreError> {
        let records = self.records.lock().unwrap();
        Ok(records
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect())
    }
    fn save(
        &self,
        key: &str,
        record: Option<&portcullis_policy::LockRecord>,
    ) -> Result<(), portcullis_policy::StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(portcullis_policy::StoreError::Unavailable(
                "disk full".into(),
            ));
        }
        let mut records = self.records.lock().unwrap();
        match record {
            Some(r) => records.insert(key.to_owned(), r.clone()),
            None => records.remove(key),
        };
        Ok(())
    }
}

#[test]
fn memory_store_with_a_lock_journal_passes_the_contract() {
    testing::run_all(|| MemoryStore::with_lock_journal(Arc::new(TestJournal::default())).unwrap());
}

#[test]
fn locks_and_their_history_survive_a_restart_through_the_journal() {
    use portcullis_policy::LockState;
    let journal = Arc::new(TestJournal::default());
    let t0 = from_ms(1_767_225_600_000);
    let hour = Duration::from_secs(3600);
    let req = Request {
        locks: &["lock:u:a"],
        ..Request::default()
    };
    {
        let store = MemoryStore::with_lock_journal(journal.clone()).unwrap();
        assert_eq!(
            store
                .lock("lock:u:a", hour, 1, "bulk", t0)
                .unwrap()
                .times_locked,
            1
        );
        assert_eq!(
            store
                .lock("lock:u:b", hour, 1, "bulk", t0)
                .unwrap()
                .times_locked,
            1
        );
        store.unlock("lock:u:b", true).unwrap();
    } // the relay stops
    let store = MemoryStore::with_lock_journal(journal.clone()).unwrap();
    assert!(matches!(
        store.decide(&req, t0 + Duration::from_secs(60)).unwrap(),
        Outcome::Locked { .. }
    ));
    assert_eq!(
        store.lock_record("lock:u:b").unwrap(),
        None,
        "forgotten stays forgotten"
    );
    // The history came back too: the second lock is permanent.
    let second = store.lock("lock:u:a", hour, 1, "again", t0 + hour).unwrap();
    assert_eq!(
        (second.times_locked, second.state),
        (2, LockState::Permanent)
    );

    // A journal that cannot write fails the lock, and the store is unchanged.
    journal
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(store.lock("lock:u:c", hour, 1, "x", t0).is_err());
    assert_eq!(store.lock_record("lock:u:c").unwrap(), None);
    assert!(store.unlock("lock:u:a", false).is_err());
    assert_eq!(store.lock_record("lock:u:a").unwrap(), Some(second));
}
