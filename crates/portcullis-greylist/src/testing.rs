//! The [`GreylistStore`] contract suite, shared by every backend's tests
//! (memory and redb here, Redis in `portcullis-redis`). Each case panics on
//! a breach of the trait's documented contract.
//!
//! Cases use keys of their own, so they can run one after another against
//! one store, including a shared Redis (give the store a unique prefix).

// Test support: a panic is how a case reports a breach.
#![allow(clippy::unwrap_used)]

use crate::store::{GreylistStore, Record, Space};

/// A contract case: its name and the check.
pub type Case = (&'static str, fn(&dyn GreylistStore));

/// Every case, in order.
pub const CASES: &[Case] = &[
    ("missing_key_is_a_miss", missing_key_is_a_miss),
    ("put_then_get_round_trips", put_then_get_round_trips),
    ("put_replaces", put_replaces),
    ("expiry_is_exact_and_logical", expiry_is_exact_and_logical),
    (
        "expired_entry_can_be_written_again",
        expired_entry_can_be_written_again,
    ),
    ("spaces_are_separate", spaces_are_separate),
    ("remove_reports_presence", remove_reports_presence),
    ("awkward_keys", awkward_keys),
    ("sweep_keeps_live_entries", sweep_keeps_live_entries),
    ("concurrent_writers", concurrent_writers),
];

/// Run every case against `store`, printing each name.
pub fn run_all(store: &dyn GreylistStore) {
    for (name, case) in CASES {
        println!("greylist store contract: {name}");
        case(store);
    }
}

const NOW: u64 = 1_767_225_600;

fn rec(first_seen: u64, count: u32, flag: bool) -> Record {
    Record {
        first_seen,
        last_seen: first_seen + 7,
        count,
        flag,
    }
}

/// A key never used before and not stored.
pub fn missing_key_is_a_miss(store: &dyn GreylistStore) {
    for space in Space::ALL {
        assert_eq!(store.get(space, "contract:missing", NOW).unwrap(), None);
    }
}

/// What was put is what is read back, every field.
pub fn put_then_get_round_trips(store: &dyn GreylistStore) {
    let r = Record {
        first_seen: 1,
        last_seen: u64::MAX / 2,
        count: u32::MAX,
        flag: true,
    };
    store
        .put(Space::Triplet, "contract:round-trip", r, NOW, NOW + 100)
        .unwrap();
    assert_eq!(
        store
            .get(Space::Triplet, "contract:round-trip", NOW)
            .unwrap(),
        Some(r)
    );
}

/// A second put replaces the first, record and expiry.
pub fn put_replaces(store: &dyn GreylistStore) {
    store
        .put(
            Space::Client,
            "contract:replace",
            rec(10, 1, false),
            NOW,
            NOW + 10,
        )
        .unwrap();
    store
        .put(
            Space::Client,
            "contract:replace",
            rec(20, 2, true),
            NOW,
            NOW + 1000,
        )
        .unwrap();
    assert_eq!(
        store
            .get(Space::Client, "contract:replace", NOW + 500)
            .unwrap(),
        Some(rec(20, 2, true)),
        "the later put's record and later expiry apply"
    );
    store
        .put(
            Space::Client,
            "contract:replace",
            rec(30, 3, false),
            NOW,
            NOW + 5,
        )
        .unwrap();
    assert_eq!(
        store
            .get(Space::Client, "contract:replace", NOW + 5)
            .unwrap(),
        None,
        "an earlier expiry replaces a later one too"
    );
}

/// Alive while `now < expires_at`, a miss from `expires_at` on, judged by the
/// caller's `now` (here years away from the wall clock, both ways).
pub fn expiry_is_exact_and_logical(store: &dyn GreylistStore) {
    let r = rec(NOW, 0, false);
    store
        .put(Space::Triplet, "contract:expiry", r, NOW, NOW + 300)
        .unwrap();
    assert_eq!(
        store
            .get(Space::Triplet, "contract:expiry", NOW + 299)
            .unwrap(),
        Some(r)
    );
    assert_eq!(
        store
            .get(Space::Triplet, "contract:expiry", NOW + 300)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get(Space::Triplet, "contract:expiry", NOW + 10_000_000)
            .unwrap(),
        None
    );
    // Far-future logical time: the backend's own clock must not expire it.
    let far = 4_102_444_800; // 2100-01-01
    store
        .put(Space::Recipient, "contract:far", r, far, far + 60)
        .unwrap();
    assert_eq!(
        store.get(Space::Recipient, "contract:far", far).unwrap(),
        Some(r)
    );
}

/// An expired key is a miss and can be written afresh.
pub fn expired_entry_can_be_written_again(store: &dyn GreylistStore) {
    store
        .put(
            Space::Triplet,
            "contract:again",
            rec(1, 1, true),
            NOW,
            NOW + 1,
        )
        .unwrap();
    assert_eq!(
        store
            .get(Space::Triplet, "contract:again", NOW + 2)
            .unwrap(),
        None
    );
    store
        .put(
            Space::Triplet,
            "contract:again",
            rec(2, 0, false),
            NOW,
            NOW + 100,
        )
        .unwrap();
    assert_eq!(
        store
            .get(Space::Triplet, "contract:again", NOW + 2)
            .unwrap(),
        Some(rec(2, 0, false))
    );
}

/// One key in three spaces is three entries.
pub fn spaces_are_separate(store: &dyn GreylistStore) {
    let key = "contract:spaces";
    for (i, space) in Space::ALL.into_iter().enumerate() {
        store
            .put(space, key, rec(i as u64, i as u32, false), NOW, NOW + 100)
            .unwrap();
    }
    for (i, space) in Space::ALL.into_iter().enumerate() {
        assert_eq!(
            store.get(space, key, NOW).unwrap(),
            Some(rec(i as u64, i as u32, false))
        );
    }
    assert!(store.remove(Space::Client, key).unwrap());
    assert_eq!(store.get(Space::Client, key, NOW).unwrap(), None);
    assert!(store.get(Space::Triplet, key, NOW).unwrap().is_some());
    assert!(store.get(Space::Recipient, key, NOW).unwrap().is_some());
}

/// `remove` says whether something was there; afterwards it is a miss.
pub fn remove_reports_presence(store: &dyn GreylistStore) {
    let key = "contract:remove";
    assert!(!store.remove(Space::Triplet, key).unwrap());
    store
        .put(Space::Triplet, key, rec(1, 0, false), NOW, NOW + 100)
        .unwrap();
    assert!(store.remove(Space::Triplet, key).unwrap());
    assert_eq!(store.get(Space::Triplet, key, NOW).unwrap(), None);
    assert!(!store.remove(Space::Triplet, key).unwrap());
}

/// Tab-separated, non-ASCII, quoted and long keys are distinct and exact.
pub fn awkward_keys(store: &dyn GreylistStore) {
    let long = format!("contract:long:{}", "x".repeat(400));
    let keys = [
        "contract:192.0.2.0/24\talice@example.org\tbob@example.net".to_owned(),
        "contract:192.0.2.0/24\talice@example.org\tBob@example.net".to_owned(),
        "contract:2001:db8::/64\t\tpostmaster".to_owned(),
        "contract:198.51.100.0/24\t\"a b\"@example.org\tjosé@bücher.example".to_owned(),
        "contract:*?[]{}".to_owned(),
        long,
    ];
    for (i, key) in keys.iter().enumerate() {
        store
            .put(Space::Triplet, key, rec(i as u64, 0, false), NOW, NOW + 100)
            .unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            store.get(Space::Triplet, key, NOW).unwrap(),
            Some(rec(i as u64, 0, false)),
            "key {key:?}"
        );
    }
    assert_eq!(
        store.get(Space::Triplet, "contract:*", NOW).unwrap(),
        None,
        "no pattern matching in keys"
    );
}

/// Sweeps never remove a live entry nor more than their budget, and expired
/// entries stay misses whether or not a sweep reclaimed them.
pub fn sweep_keeps_live_entries(store: &dyn GreylistStore) {
    for i in 0..20u64 {
        let expires = if i.is_multiple_of(2) {
            NOW + 10
        } else {
            NOW + 10_000
        };
        store
            .put(
                Space::Triplet,
                &format!("contract:sweep:{i}"),
                rec(i, 0, false),
                NOW,
                expires,
            )
            .unwrap();
    }
    let later = NOW + 100;
    for _ in 0..20 {
        let removed = store.sweep(later, 3).unwrap();
        assert!(removed <= 3, "sweep removed {removed} with a budget of 3");
    }
    for i in 0..20u64 {
        let got = store
            .get(Space::Triplet, &format!("contract:sweep:{i}"), later)
            .unwrap();
        if i.is_multiple_of(2) {
            assert_eq!(got, None, "expired entry {i}");
        } else {
            assert_eq!(got, Some(rec(i, 0, false)), "live entry {i}");
        }
    }
    assert_eq!(
        store.sweep(later, 0).unwrap(),
        0,
        "a zero budget removes nothing"
    );
}

/// Writes from several threads are all visible afterwards.
pub fn concurrent_writers(store: &dyn GreylistStore) {
    let store_ref = &store;
    std::thread::scope(|s| {
        for t in 0..4u32 {
            s.spawn(move || {
                for i in 0..25u32 {
                    store_ref
                        .put(
                            Space::Client,
                            &format!("contract:threads:{t}:{i}"),
                            rec(u64::from(i), t, false),
                            NOW,
                            NOW + 100,
                        )
                        .unwrap();
                }
            });
        }
    });
    for t in 0..4u32 {
        for i in 0..25u32 {
            assert_eq!(
                store
                    .get(Space::Client, &format!("contract:threads:{t}:{i}"), NOW)
                    .unwrap(),
                Some(rec(u64::from(i), t, false))
            );
        }
    }
}
