//! [`RedbLockJournal`]: where the policy's lock records (and their
//! history) live across restarts when the counter store is the memory one
//! (`[policy] store = "memory"`, the default): `<data_dir>/policy-locks.redb`
//! (`policyd-locks.redb` for `portcullis-relay policyd`).
//!
//! Without it a restart would unlock every locked account — an abuser's way
//! around an abuse lock, and a permanent lock that an admin never lifted
//! gone. Counters and blocks still start empty (they are short-lived); with
//! `store = "redis"` Redis keeps the locks and this file is not used.
//!
//! One row per lock key (`lock:u:alice@example.org`, …), a small JSON
//! value. Every save is its own write transaction, fsync'd before it
//! returns (redb's immediate durability): locks and unlocks are rare, and a
//! lock that was answered to a client must not vanish in a crash. An admin
//! unlock writes the unlocked record (history kept) or, with `?forget`,
//! removes the row.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use portcullis_policy::{LockJournal, LockRecord, LockState, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const LOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("policy_locks");

/// The file name in the data directory.
pub(crate) const FILE_NAME: &str = "policy-locks.redb";
/// The file name for `portcullis-relay policyd` (its own policy, so its own
/// locks; a relay and a policyd may share a data directory).
pub(crate) const POLICYD_FILE_NAME: &str = "policyd-locks.redb";

/// A [`LockJournal`] in one redb file.
pub(crate) struct RedbLockJournal {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbLockJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLockJournal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A record as stored: times in milliseconds since the Unix epoch.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    times_locked: u32,
    /// `"unlocked"`, `"until"` (with `until_ms`) or `"permanent"`.
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until_ms: Option<u64>,
    reason: String,
    since_ms: u64,
}

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn encode(record: &LockRecord) -> Vec<u8> {
    let (state, until_ms) = match record.state {
        LockState::Unlocked => ("unlocked", None),
        LockState::Until(t) => ("until", Some(to_ms(t))),
        LockState::Permanent => ("permanent", None),
    };
    let stored = Stored {
        times_locked: record.times_locked,
        state: state.to_owned(),
        until_ms,
        reason: record.reason.clone(),
        since_ms: to_ms(record.since),
    };
    // Serializing a struct of plain fields cannot fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Result<LockRecord, String> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let state = match (s.state.as_str(), s.until_ms) {
        ("unlocked", _) => LockState::Unlocked,
        ("until", Some(ms)) => LockState::Until(from_ms(ms)),
        ("permanent", _) => LockState::Permanent,
        (other, _) => return Err(format!("unknown lock state {other:?}")),
    };
    Ok(LockRecord {
        times_locked: s.times_locked,
        state,
        reason: s.reason,
        since: from_ms(s.since_ms),
    })
}

impl RedbLockJournal {
    /// Open (or create) the journal at `path`. Errors name the path.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let failed =
            |e: &dyn std::fmt::Display| format!("policy lock journal {}: {e}", path.display());
        let db = Database::create(path).map_err(|e| failed(&e))?;
        // Create the table now, so that an unwritable file fails at start
        // rather than at the first lock.
        let txn = db.begin_write().map_err(|e| failed(&e))?;
        txn.open_table(LOCKS).map_err(|e| failed(&e))?;
        txn.commit().map_err(|e| failed(&e))?;
        Ok(RedbLockJournal {
            db,
            path: path.to_owned(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("policy lock journal {}: {e}", self.path.display()))
    }
}

impl LockJournal for RedbLockJournal {
    fn load(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(LOCKS).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (key, value) = row.map_err(|e| self.error(e))?;
            let key = key.value().to_owned();
            let record = decode(value.value()).map_err(|e| {
                StoreError::Malformed(format!(
                    "policy lock journal {}: record {key:?}: {e}",
                    self.path.display()
                ))
            })?;
            out.push((key, record));
        }
        Ok(out)
    }

    fn save(&self, key: &str, record: Option<&LockRecord>) -> Result<(), StoreError> {
        // redb's default durability is immediate: the commit is fsync'd.
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(LOCKS).map_err(|e| self.error(e))?;
            match record {
                Some(r) => {
                    table
                        .insert(key, encode(r).as_slice())
                        .map_err(|e| self.error(e))?;
                }
                None => {
                    table.remove(key).map_err(|e| self.error(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use portcullis_policy::{CounterStore, MemoryStore};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn store(path: &Path) -> MemoryStore {
        let journal = RedbLockJournal::open(path).unwrap();
        MemoryStore::with_lock_journal(Arc::new(journal)).unwrap()
    }

    #[test]
    fn records_round_trip_every_state() {
        for state in [
            LockState::Unlocked,
            LockState::Until(at(1_700_000_123) + Duration::from_millis(456)),
            LockState::Permanent,
        ] {
            let r = LockRecord {
                times_locked: 3,
                state,
                reason: "outbound bulk: \"quoted\" ü".into(),
                since: at(1_700_000_000),
            };
            assert_eq!(decode(&encode(&r)).unwrap(), r);
        }
        assert!(decode(b"{\"times_locked\":1}").is_err());
        assert!(
            decode(b"{\"times_locked\":1,\"state\":\"until\",\"reason\":\"\",\"since_ms\":0}")
                .is_err()
        );
    }

    #[test]
    fn locks_survive_reopening_and_unlock_is_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        let hour = Duration::from_secs(3600);
        {
            let s = store(&path);
            s.lock("lock:u:a@x.example", hour, 1, "rate", at(1000))
                .unwrap();
            // Second lock after the first expired: permanent (max 1 auto-unlock).
            s.lock("lock:u:b@x.example", hour, 1, "rate", at(1000))
                .unwrap();
            s.lock("lock:u:b@x.example", hour, 1, "bulk", at(10_000))
                .unwrap();
        }
        let s = store(&path);
        let a = s.lock_record("lock:u:a@x.example").unwrap().unwrap();
        assert_eq!(a.state, LockState::Until(at(1000) + hour));
        assert_eq!(a.times_locked, 1);
        assert_eq!(a.reason, "rate");
        let b = s.lock_record("lock:u:b@x.example").unwrap().unwrap();
        assert_eq!(b.state, LockState::Permanent);
        assert_eq!(b.times_locked, 2);
        assert_eq!(b.reason, "bulk");
        assert!(b.in_effect(at(1_000_000)));

        // An admin unlock keeps the history; `forget` removes the row.
        s.unlock("lock:u:b@x.example", false).unwrap();
        s.unlock("lock:u:a@x.example", true).unwrap();
        drop(s);
        let s = store(&path);
        let b = s.lock_record("lock:u:b@x.example").unwrap().unwrap();
        assert_eq!(b.state, LockState::Unlocked);
        assert_eq!(b.times_locked, 2);
        assert_eq!(s.lock_record("lock:u:a@x.example").unwrap(), None);
        drop(s);
        let rows = RedbLockJournal::open(&path).unwrap().load().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].0, "lock:u:b@x.example");
    }

    #[test]
    fn a_corrupt_or_unusable_file_is_a_startup_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(FILE_NAME);
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let e = RedbLockJournal::open(&path).unwrap_err();
        assert!(e.starts_with("policy lock journal "), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");

        // A directory where the file should be (unwritable even for root).
        let dir = tmp.path().join("a-directory");
        std::fs::create_dir(&dir).unwrap();
        let e = RedbLockJournal::open(&dir).unwrap_err();
        assert!(e.contains(&dir.display().to_string()), "{e}");

        // A row this code cannot read fails the load, naming file and key.
        let good = tmp.path().join("good.redb");
        let j = RedbLockJournal::open(&good).unwrap();
        let txn = j.db.begin_write().unwrap();
        txn.open_table(LOCKS)
            .unwrap()
            .insert("lock:u:z@x.example", b"not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let e = MemoryStore::with_lock_journal(Arc::new(j)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&good.display().to_string()), "{text}");
        assert!(text.contains("lock:u:z@x.example"), "{text}");
    }
}
