//! Redis store: greylist ([`portcullis_greylist::GreylistStore`]), so a fleet
//! of MXes shares one greylist and one set of learned recipients.
//!
//! Each entry is one string key, `{prefix}{namespace}:{space}:{key}`
//! (namespace `greylist` unless [`RedisGreylistStore::with_namespace`] says
//! otherwise), holding
//! the 30-byte [`Record::encode`] form (which carries the logical expiry)
//! and a native Redis TTL of `expires_at - now`, so Redis reclaims space by
//! itself and [`sweep`](GreylistStore::sweep) has nothing to do. Reads judge
//! expiry by the caller's `now` against the stored expiry, never by the
//! Redis server's clock, as the store contract requires.

use std::sync::Arc;

use portcullis_greylist::{GreylistStore, Record, Space, StoreError};

use crate::connection::RedisPool;

/// A [`GreylistStore`] in Redis. Every call is one round trip on a pooled
/// connection; a Redis error becomes [`StoreError::Backend`] (and the
/// greylist's failure mode decides what that means, fail-open by default).
///
/// The same type keeps backup-MX learned recipients
/// ([`portcullis_greylist::RecipientLearning`] writes
/// [`Space::Recipient`]); give that store a namespace of its own
/// ([`with_namespace`](Self::with_namespace)) when it shares a pool with a
/// greylist, so the two can be inspected, expired and flushed apart.
#[derive(Debug, Clone)]
pub struct RedisGreylistStore {
    pool: Arc<RedisPool>,
    namespace: String,
}

/// The namespace of [`RedisGreylistStore::new`].
pub const DEFAULT_NAMESPACE: &str = "greylist";

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedisGreylistStore {
    /// A store over `pool` (its prefix namespaces every key).
    pub fn new(pool: Arc<RedisPool>) -> Self {
        RedisGreylistStore {
            pool,
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// Keys under `{prefix}{namespace}:` instead of `{prefix}greylist:`
    /// (e.g. `recipients` for backup-MX learned recipients on the pool a
    /// greylist uses too).
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The key namespace (after the pool's prefix).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Connect lazily to `url`, prefixing every key with `prefix`.
    pub fn open(url: &str, prefix: impl Into<String>) -> redis::RedisResult<Self> {
        Ok(Self::new(Arc::new(RedisPool::new(url, prefix)?)))
    }

    /// The connection pool (and its key prefix).
    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    fn key(&self, space: Space, key: &str) -> String {
        self.pool
            .key(&format!("{}:{}:{}", self.namespace, space.tag(), key))
    }
}

impl GreylistStore for RedisGreylistStore {
    fn get(&self, space: Space, key: &str, now: u64) -> Result<Option<Record>, StoreError> {
        let k = self.key(space, key);
        let value: Option<Vec<u8>> = self
            .pool
            .with(|c| redis::cmd("GET").arg(&k).query(c))
            .map_err(backend)?;
        let Some(bytes) = value else {
            return Ok(None);
        };
        let (record, expires_at) = Record::decode(&bytes)?;
        Ok((now < expires_at).then_some(record))
    }

    fn put(
        &self,
        space: Space,
        key: &str,
        record: Record,
        now: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let k = self.key(space, key);
        // Native TTL for reclaiming space; the logical expiry is in the value.
        let ttl = expires_at.saturating_sub(now).max(1);
        let value = record.encode(expires_at);
        self.pool
            .with(|c| {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(&value[..])
                    .arg("EX")
                    .arg(ttl)
                    .query::<()>(c)
            })
            .map_err(backend)
    }

    fn remove(&self, space: Space, key: &str) -> Result<bool, StoreError> {
        let k = self.key(space, key);
        let removed: i64 = self
            .pool
            .with(|c| redis::cmd("DEL").arg(&k).query(c))
            .map_err(backend)?;
        Ok(removed > 0)
    }

    fn sweep(&self, _now: u64, _budget: usize) -> Result<usize, StoreError> {
        // Redis expires keys itself (EX on every SET).
        Ok(0)
    }
}
