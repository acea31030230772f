//! Redis [`ChecksumStore`]: bulk counts shared by a fleet of relays.
//!
//! Layout: one sorted set per checksum, `<prefix><namespace>:<hex>` (namespace
//! `cs` unless [`RedisChecksumStore::with_namespace`] says otherwise), member = recipient,
//! score = the recipient's latest time in Unix milliseconds. `ZADD GT` keeps
//! the later time (Redis ≥ 6.2), `ZCOUNT` over `(now - window, +inf)` counts,
//! old members are trimmed on write and the key expires `retention` after its
//! last write, so idle checksums leave nothing behind.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_fingerprint::store::unix_millis;
use portcullis_fingerprint::{Checksum, ChecksumStore, DEFAULT_WINDOW, FingerprintError};

use crate::connection::RedisPool;

/// A [`ChecksumStore`] in Redis. Thread-safe; every call is one round trip
/// (`record_many` and `record_recipients` are one atomic pipeline). Redis errors become
/// [`FingerprintError::Store`].
#[derive(Debug, Clone)]
pub struct RedisChecksumStore {
    pool: Arc<RedisPool>,
    retention: Duration,
    namespace: String,
}

/// The namespace of [`RedisChecksumStore::new`].
pub const DEFAULT_NAMESPACE: &str = "cs";

fn store_error(e: redis::RedisError) -> FingerprintError {
    FingerprintError::Store(e.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisChecksumStore {
    /// A store on `pool` keeping records for [`DEFAULT_WINDOW`] (24 h).
    pub fn new(pool: impl Into<Arc<RedisPool>>) -> Self {
        RedisChecksumStore {
            pool: pool.into(),
            retention: DEFAULT_WINDOW,
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// Keys under `<prefix><namespace>:` instead of `<prefix>cs:`: counts
    /// kept for another purpose (e.g. the outbound abuse signal, with a
    /// retention of its own) on the same pool, apart from the inbound ones.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The key namespace (after the pool's prefix).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Keep records for `retention` (at least the largest window counted over).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    fn key(&self, checksum: &Checksum) -> String {
        self.pool
            .key(&format!("{}:{}", self.namespace, checksum.to_hex()))
    }
}

impl ChecksumStore for RedisChecksumStore {
    fn record(
        &self,
        checksum: &Checksum,
        recipient: &str,
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        self.record_many(std::slice::from_ref(checksum), recipient, at)
    }

    fn record_many(
        &self,
        checksums: &[Checksum],
        recipient: &str,
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        self.record_recipients(checksums, &[recipient], at)
    }

    /// One atomic pipeline for the whole batch: per checksum one `ZADD GT`
    /// with every recipient, the trim and the expiry.
    fn record_recipients(
        &self,
        checksums: &[Checksum],
        recipients: &[&str],
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        if checksums.is_empty() || recipients.is_empty() {
            return Ok(());
        }
        let t = unix_millis(at);
        let cutoff = t.saturating_sub(millis(self.retention));
        let ttl = millis(self.retention).max(1);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for c in checksums {
            let key = self.key(c);
            let zadd = pipe.cmd("ZADD").arg(&key).arg("GT");
            for r in recipients {
                zadd.arg(t).arg(*r);
            }
            zadd.ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(cutoff)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
        }
        self.pool
            .with(|conn| pipe.query::<()>(conn))
            .map_err(store_error)
    }

    fn distinct_recipients(
        &self,
        checksum: &Checksum,
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        self.max_distinct_recipients(std::slice::from_ref(checksum), window, now)
    }

    fn max_distinct_recipients(
        &self,
        checksums: &[Checksum],
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        if checksums.is_empty() {
            return Ok(0);
        }
        let from = format!("({}", unix_millis(now).saturating_sub(millis(window)));
        let mut pipe = redis::pipe();
        for c in checksums {
            pipe.cmd("ZCOUNT").arg(self.key(c)).arg(&from).arg("+inf");
        }
        let counts: Vec<u64> = self
            .pool
            .with(|conn| pipe.query(conn))
            .map_err(store_error)?;
        Ok(counts.into_iter().max().unwrap_or(0))
    }
}
