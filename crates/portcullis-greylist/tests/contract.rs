//! The store contract suite against the memory and redb stores, one test per
//! case per store, plus what only these two stores promise (sweeps reclaim,
//! redb survives a reopen).

#![allow(clippy::unwrap_used)]

use portcullis_greylist::testing;
use portcullis_greylist::{GreylistStore, MemoryStore, Record, Space};
#[cfg(feature = "redb")]
use portcullis_greylist::{RedbStore, RedbSync};

macro_rules! contract_tests {
    ($($case:ident),* $(,)?) => {
        const LISTED: &[&str] = &[$(stringify!($case)),*];
        mod memory {
            $(
                #[test]
                fn $case() {
                    let store = super::MemoryStore::new();
                    super::testing::$case(&store);
                }
            )*
        }
        #[cfg(feature = "redb")]
        mod redb {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::RedbStore::open(dir.path().join("greylist.redb")).unwrap();
                    super::testing::$case(&store);
                }
            )*
        }
        #[cfg(feature = "redb")]
        mod redb_on_flush {
            $(
                #[test]
                fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::RedbStore::open_with(
                        dir.path().join("greylist.redb"),
                        super::RedbSync::OnFlush,
                    )
                    .unwrap();
                    super::testing::$case(&store);
                }
            )*
        }
    };
}

contract_tests!(
    missing_key_is_a_miss,
    put_then_get_round_trips,
    put_replaces,
    expiry_is_exact_and_logical,
    expired_entry_can_be_written_again,
    spaces_are_separate,
    remove_reports_presence,
    awkward_keys,
    sweep_keeps_live_entries,
    concurrent_writers,
);

#[test]
fn every_case_is_listed_above() {
    // The macro list and the suite's own list must not drift apart.
    let suite: Vec<&str> = testing::CASES.iter().map(|(name, _)| *name).collect();
    assert_eq!(suite, LISTED);
}

#[test]
fn run_all_passes_on_one_shared_store() {
    testing::run_all(&MemoryStore::new());
    #[cfg(feature = "redb")]
    {
        let dir = tempfile::tempdir().unwrap();
        testing::run_all(&RedbStore::open(dir.path().join("all.redb")).unwrap());
    }
}

const NOW: u64 = 1_767_225_600;

fn fill(store: &dyn GreylistStore) {
    for i in 0..50u64 {
        let expires = if i < 30 { NOW + 10 } else { NOW + 1000 };
        let r = Record {
            first_seen: i,
            last_seen: i,
            count: 0,
            flag: false,
        };
        store
            .put(Space::Triplet, &format!("k{i:02}"), r, NOW, expires)
            .unwrap();
        store
            .put(Space::Client, &format!("c{i:02}"), r, NOW, expires)
            .unwrap();
    }
}

#[test]
fn memory_sweep_reclaims_in_budgeted_steps() {
    let store = MemoryStore::new();
    fill(&store);
    let mut total = 0;
    loop {
        let n = store.sweep(NOW + 100, 7).unwrap();
        assert!(n <= 7);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 60);
    assert_eq!(store.len(Space::Triplet), 20);
    assert_eq!(store.len(Space::Client), 20);
}

#[cfg(feature = "redb")]
#[test]
fn redb_sweep_reclaims_in_budgeted_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("sweep.redb")).unwrap();
    fill(&store);
    let mut total = 0;
    // The cursor examines 7 entries per call: 100 entries, 3 spaces → at most
    // a few dozen calls to visit everything once.
    for _ in 0..40 {
        let n = store.sweep(NOW + 100, 7).unwrap();
        assert!(n <= 7);
        total += n;
    }
    assert_eq!(total, 60);
    assert_eq!(store.len(Space::Triplet).unwrap(), 20);
    assert_eq!(store.len(Space::Client).unwrap(), 20);
    for i in 30..50u64 {
        assert!(
            store
                .get(Space::Triplet, &format!("k{i:02}"), NOW + 100)
                .unwrap()
                .is_some()
        );
    }
}

#[cfg(feature = "redb")]
#[test]
fn redb_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.redb");
    let r = Record {
        first_seen: 5,
        last_seen: 6,
        count: 7,
        flag: true,
    };
    {
        let store = RedbStore::open(&path).unwrap();
        store
            .put(Space::Triplet, "kept", r, NOW, NOW + 100)
            .unwrap();
        store
            .put(Space::Triplet, "removed", r, NOW, NOW + 100)
            .unwrap();
        assert!(store.remove(Space::Triplet, "removed").unwrap());
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.get(Space::Triplet, "kept", NOW).unwrap(), Some(r));
    assert_eq!(store.get(Space::Triplet, "removed", NOW).unwrap(), None);
}

#[cfg(feature = "redb")]
#[test]
fn redb_put_many_writes_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("bulk.redb")).unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("bulk{i}")).collect();
    let r = Record {
        first_seen: 1,
        last_seen: 2,
        count: 1,
        flag: false,
    };
    store
        .put_many(
            keys.iter()
                .map(|k| (Space::Recipient, k.as_str(), r, NOW + 10)),
        )
        .unwrap();
    for k in &keys {
        assert_eq!(store.get(Space::Recipient, k, NOW).unwrap(), Some(r));
    }
    assert_eq!(store.len(Space::Triplet).unwrap(), 0);
}

#[cfg(feature = "redb")]
#[test]
fn redb_on_flush_writes_survive_reopen_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flush.redb");
    let r = Record {
        first_seen: 1,
        last_seen: 2,
        count: 3,
        flag: false,
    };
    {
        let store = RedbStore::open_with(&path, RedbSync::OnFlush).unwrap();
        for i in 0..50 {
            store
                .put(Space::Triplet, &format!("f{i}"), r, NOW, NOW + 100)
                .unwrap();
        }
        store.flush().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    for i in 0..50 {
        assert_eq!(
            store.get(Space::Triplet, &format!("f{i}"), NOW).unwrap(),
            Some(r)
        );
    }
}
