//! The in-memory [`GreylistStore`]: one `dashmap` per key space.

use dashmap::DashMap;

use crate::store::{GreylistStore, Record, Space, StoreError};

#[derive(Debug, Clone, Copy)]
struct Stored {
    record: Record,
    expires_at: u64,
}

/// A [`GreylistStore`] in process memory, for one relay (state is lost on
/// restart). Never fails.
///
/// Sharded maps let concurrent checks proceed without a global lock; a
/// [`sweep`](GreylistStore::sweep) reads one shard at a time and removes
/// expired entries one by one, so it never stops the other callers. Each
/// sweep scans from the start of the maps until it has found `budget`
/// expired entries (at worst the whole store), so call it every minute or
/// so, not per check.
#[derive(Debug, Default)]
pub struct MemoryStore {
    triplets: DashMap<Box<str>, Stored>,
    clients: DashMap<Box<str>, Stored>,
    recipients: DashMap<Box<str>, Stored>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn map(&self, space: Space) -> &DashMap<Box<str>, Stored> {
        match space {
            Space::Triplet => &self.triplets,
            Space::Client => &self.clients,
            Space::Recipient => &self.recipients,
        }
    }

    /// Entries held in `space`, expired ones not yet swept included.
    pub fn len(&self, space: Space) -> usize {
        self.map(space).len()
    }

    /// Whether the store holds nothing at all.
    pub fn is_empty(&self) -> bool {
        Space::ALL.iter().all(|s| self.map(*s).is_empty())
    }
}

impl GreylistStore for MemoryStore {
    fn get(&self, space: Space, key: &str, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self
            .map(space)
            .get(key)
            .filter(|s| now < s.expires_at)
            .map(|s| s.record))
    }

    fn put(
        &self,
        space: Space,
        key: &str,
        record: Record,
        _now: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let stored = Stored { record, expires_at };
        let map = self.map(space);
        // Overwrite in place when present: no new key allocation.
        if let Some(mut slot) = map.get_mut(key) {
            *slot = stored;
        } else {
            map.insert(key.into(), stored);
        }
        Ok(())
    }

    fn remove(&self, space: Space, key: &str) -> Result<bool, StoreError> {
        Ok(self.map(space).remove(key).is_some())
    }

    fn sweep(&self, now: u64, budget: usize) -> Result<usize, StoreError> {
        let mut removed = 0;
        for space in Space::ALL {
            if removed >= budget {
                break;
            }
            let map = self.map(space);
            // Collect under per-shard read locks, then remove each key on its
            // own, re-checking expiry in case it was refreshed meanwhile.
            let expired: Vec<Box<str>> = map
                .iter()
                .filter(|e| e.expires_at <= now)
                .take(budget - removed)
                .map(|e| e.key().clone())
                .collect();
            for key in expired {
                if map.remove_if(&key, |_, s| s.expires_at <= now).is_some() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
