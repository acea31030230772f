//! The embedded persistent [`GreylistStore`], on [redb](https://docs.rs/redb).

use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError, WriteTransaction,
};

use crate::store::{GreylistStore, Record, Space, StoreError};

const TRIPLETS: TableDefinition<&str, &[u8]> = TableDefinition::new("greylist_triplets");
const CLIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("greylist_clients");
const RECIPIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("greylist_recipients");

fn table(space: Space) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match space {
        Space::Triplet => TRIPLETS,
        Space::Client => CLIENTS,
        Space::Recipient => RECIPIENTS,
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// When a [`RedbStore`] makes its writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedbSync {
    /// Every write is fsync'd before it returns: a write that returned
    /// survives a crash. One fsync per new triplet or pass.
    #[default]
    EveryWrite,
    /// Writes are committed without fsync and made durable by
    /// [`RedbStore::flush`] (call it every second or so). A crash loses the
    /// writes since the last flush, which for greylisting means a few
    /// senders are greylisted again: a delay, never lost mail. Far faster on
    /// disks with slow fsync.
    OnFlush,
}

/// A [`GreylistStore`] in one redb file: survives restarts and crashes.
///
/// By default ([`RedbSync::EveryWrite`]) every [`put`](GreylistStore::put)
/// and [`remove`](GreylistStore::remove) is its own write transaction
/// committed with redb's `Durability::Immediate` (fsync'd before it
/// returns), so a write that returned is there after a crash. Reads are MVCC snapshots and never wait
/// for the writer. [`sweep`](GreylistStore::sweep) walks the tables with a
/// cursor kept between calls and examines at most `budget` entries per call,
/// so it holds the single writer only briefly.
///
/// Greylisting writes only when state changes (a new triplet, a pass, a
/// `last_seen` refresh at most once per `touch_interval`), so checks of
/// known triplets are read-only.
pub struct RedbStore {
    db: Database,
    sync: RedbSync,
    /// Where the next sweep resumes: the space index and the last key seen.
    sweep_cursor: Mutex<(usize, Option<String>)>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Open the database at `path`, creating it (and its tables) if needed.
    /// This is the one place the crate touches the file system.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, RedbSync::EveryWrite)
    }

    /// Open with a choice of [`RedbSync`].
    pub fn open_with(path: impl AsRef<Path>, sync: RedbSync) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        for space in Space::ALL {
            txn.open_table(table(space)).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(RedbStore {
            db,
            sync,
            sweep_cursor: Mutex::new((0, None)),
        })
    }

    /// A write transaction with the configured durability.
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        if self.sync == RedbSync::OnFlush {
            txn.set_durability(Durability::None).map_err(backend)?;
        }
        Ok(txn)
    }

    /// Make every write so far durable (an fsync'd empty commit). Only
    /// needed with [`RedbSync::OnFlush`]; harmless otherwise.
    pub fn flush(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        txn.commit().map_err(backend)
    }

    /// Write many entries in one transaction (one fsync): for imports and
    /// for loading benchmark data.
    pub fn put_many<'a>(
        &self,
        entries: impl IntoIterator<Item = (Space, &'a str, Record, u64)>,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut tables = [
                txn.open_table(TRIPLETS).map_err(backend)?,
                txn.open_table(CLIENTS).map_err(backend)?,
                txn.open_table(RECIPIENTS).map_err(backend)?,
            ];
            for (space, key, record, expires_at) in entries {
                let index = Space::ALL.iter().position(|s| *s == space).unwrap_or(0);
                tables[index]
                    .insert(key, record.encode(expires_at).as_slice())
                    .map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)
    }

    /// Entries held in `space`, expired ones not yet swept included.
    pub fn len(&self, space: Space) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(table(space)).map_err(backend)?;
        t.len().map_err(backend)
    }
}

impl GreylistStore for RedbStore {
    fn get(&self, space: Space, key: &str, now: u64) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = match txn.open_table(table(space)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let Some(value) = t.get(key).map_err(backend)? else {
            return Ok(None);
        };
        let (record, expires_at) = Record::decode(value.value())?;
        Ok((now < expires_at).then_some(record))
    }

    fn put(
        &self,
        space: Space,
        key: &str,
        record: Record,
        _now: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(table(space)).map_err(backend)?;
            t.insert(key, record.encode(expires_at).as_slice())
                .map_err(backend)?;
        }
        txn.commit().map_err(backend)
    }

    fn remove(&self, space: Space, key: &str) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let removed = {
            let mut t = txn.open_table(table(space)).map_err(backend)?;
            t.remove(key).map_err(backend)?.is_some()
        };
        txn.commit().map_err(backend)?;
        Ok(removed)
    }

    fn sweep(&self, now: u64, budget: usize) -> Result<usize, StoreError> {
        if budget == 0 {
            return Ok(0);
        }
        let mut cursor = self.sweep_cursor.lock().unwrap_or_else(|e| e.into_inner());
        let txn = self.begin_write()?;
        let mut removed = 0;
        let mut examined = 0;
        // Visit at most every space once per call, resuming where the last
        // call stopped, and examine at most `budget` entries.
        for _ in 0..Space::ALL.len() {
            let space = Space::ALL[cursor.0 % Space::ALL.len()];
            let mut t = txn.open_table(table(space)).map_err(backend)?;
            let mut expired = Vec::new();
            let mut last = None;
            {
                let lower = match cursor.1.as_deref() {
                    Some(k) => Bound::Excluded(k),
                    None => Bound::Unbounded,
                };
                let range = t
                    .range::<&str>((lower, Bound::Unbounded))
                    .map_err(backend)?;
                for item in range {
                    if examined >= budget {
                        break;
                    }
                    let (k, v) = item.map_err(backend)?;
                    examined += 1;
                    let key = k.value().to_owned();
                    // An undecodable value is garbage: reclaim it too.
                    let dead = Record::decode(v.value()).map_or(true, |(_, exp)| exp <= now);
                    if dead {
                        expired.push(key.clone());
                    }
                    last = Some(key);
                }
            }
            for key in &expired {
                if t.remove(key.as_str()).map_err(backend)?.is_some() {
                    removed += 1;
                }
            }
            if examined >= budget {
                // Stopped inside this space: resume after the last key.
                *cursor = (cursor.0, last.or(cursor.1.take()));
                break;
            }
            // This space is done: the next call (or iteration) starts the next one.
            *cursor = ((cursor.0 + 1) % Space::ALL.len(), None);
        }
        drop(cursor);
        txn.commit().map_err(backend)?;
        Ok(removed)
    }
}
