//! The [`ChecksumStore`] contract suite, run against every implementation
//! (memory here, Redis in `portcullis-redis`). Panics on the first breach.

// Test support: a failed store call is a failed contract.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checksum::Checksum;
use crate::store::ChecksumStore;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn t0() -> SystemTime {
    // 2026-01-01T00:00:00Z
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// Run every check of the [`ChecksumStore`] contract against `store`, which
/// must be empty (or use a fresh key prefix) and keep records for at least
/// 48 hours.
pub fn checksum_store_contract(store: &dyn ChecksumStore) {
    let c = |name: &str| Checksum::of(name.as_bytes());

    // A miss is zero.
    assert_eq!(
        store.distinct_recipients(&c("never"), DAY, t0()).unwrap(),
        0
    );

    // Distinct recipients; repeats do not add.
    let a = c("distinct");
    for r in ["a@x.example", "b@x.example", "c@x.example", "a@x.example"] {
        store.record(&a, r, t0()).unwrap();
    }
    assert_eq!(store.distinct_recipients(&a, DAY, t0()).unwrap(), 3);
    // Recipients compare byte for byte (the caller normalises).
    store.record(&a, "A@x.example", t0()).unwrap();
    assert_eq!(store.distinct_recipients(&a, DAY, t0()).unwrap(), 4);
    // Checksums are independent.
    assert_eq!(
        store.distinct_recipients(&c("other"), DAY, t0()).unwrap(),
        0
    );

    // The window: strictly after now - window.
    let w = c("window");
    store.record(&w, "old@x.example", t0()).unwrap();
    store.record(&w, "new@x.example", t0() + 10 * HOUR).unwrap();
    assert_eq!(
        store
            .distinct_recipients(&w, DAY, t0() + 10 * HOUR)
            .unwrap(),
        2
    );
    assert_eq!(
        store.distinct_recipients(&w, DAY, t0() + DAY).unwrap(),
        1,
        "exactly window-old is out"
    );
    assert_eq!(
        store
            .distinct_recipients(&w, DAY, t0() + DAY - Duration::from_millis(1))
            .unwrap(),
        2,
        "one millisecond inside the window is in"
    );
    assert_eq!(
        store
            .distinct_recipients(&w, DAY, t0() + 35 * HOUR)
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .distinct_recipients(&w, HOUR, t0() + 10 * HOUR)
            .unwrap(),
        1,
        "a shorter window"
    );
    // Records later than now count (relays with skewed clocks).
    assert_eq!(store.distinct_recipients(&w, DAY, t0()).unwrap(), 2);

    // Recording again moves to the later time, never back.
    let m = c("moves");
    store.record(&m, "r@x.example", t0()).unwrap();
    store.record(&m, "r@x.example", t0() + 20 * HOUR).unwrap();
    store.record(&m, "r@x.example", t0() + HOUR).unwrap();
    assert_eq!(
        store
            .distinct_recipients(&m, DAY, t0() + 30 * HOUR)
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .distinct_recipients(&m, DAY, t0() + 44 * HOUR)
            .unwrap(),
        0
    );

    // record_many and max_distinct_recipients.
    let (k1, k2, k3) = (c("many-1"), c("many-2"), c("many-3"));
    store.record_many(&[k1, k2], "p@x.example", t0()).unwrap();
    store.record_many(&[k1, k2], "q@x.example", t0()).unwrap();
    store.record_many(&[k2], "s@x.example", t0()).unwrap();
    store.record_many(&[], "nobody@x.example", t0()).unwrap();
    assert_eq!(store.distinct_recipients(&k1, DAY, t0()).unwrap(), 2);
    assert_eq!(store.distinct_recipients(&k2, DAY, t0()).unwrap(), 3);
    assert_eq!(
        store
            .max_distinct_recipients(&[k1, k2, k3], DAY, t0())
            .unwrap(),
        3
    );
    assert_eq!(store.max_distinct_recipients(&[], DAY, t0()).unwrap(), 0);

    // record_recipients: every recipient under every checksum, repeats not
    // added, later times kept; empty batches do nothing.
    let (b1, b2) = (c("batch-1"), c("batch-2"));
    store
        .record_recipients(
            &[b1, b2],
            &["u@x.example", "v@x.example", "u@x.example"],
            t0(),
        )
        .unwrap();
    store
        .record_recipients(&[b2], &["w@x.example"], t0() + 20 * HOUR)
        .unwrap();
    store
        .record_recipients(&[], &["nobody@x.example"], t0())
        .unwrap();
    store.record_recipients(&[b1], &[], t0()).unwrap();
    assert_eq!(store.distinct_recipients(&b1, DAY, t0()).unwrap(), 2);
    assert_eq!(store.distinct_recipients(&b2, DAY, t0()).unwrap(), 3);
    assert_eq!(
        store
            .distinct_recipients(&b2, DAY, t0() + 30 * HOUR)
            .unwrap(),
        1,
        "each recipient keeps its own time"
    );

    // Non-ASCII and odd recipients are just bytes.
    let u = c("utf8");
    store.record(&u, "józef@bücher.example", t0()).unwrap();
    store.record(&u, "", t0()).unwrap();
    store.record(&u, "with space\r\n", t0()).unwrap();
    assert_eq!(store.distinct_recipients(&u, DAY, t0()).unwrap(), 3);

    // Concurrent records are not lost.
    let conc = c("concurrent");
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for i in 0..25 {
                    store
                        .record(&conc, &format!("t{t}-{i}@x.example"), t0())
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.distinct_recipients(&conc, DAY, t0()).unwrap(), 100);
}
