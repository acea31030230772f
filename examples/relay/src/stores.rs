//! Where the filters keep their state: the policy's counters, greylist
//! triplets, bulk checksum counts, the outbound abuse signal's counts and
//! backup-MX learned recipients, in process memory, a redb file, or a
//! Redis shared by a fleet of relays (`[redis]` + `store = "redis"` in
//! `[policy]`, `[greylist]`, `[bulk]`, `[outbound_bulk]`, `[backup_mx]`;
//! the stores are `portcullis-redis`). On Redis every use has its own keys:
//! `<prefix>greylist:…`, `<prefix>recipients:…` (both
//! `RedisGreylistStore`), `<prefix>cs:…` (bulk) and `<prefix>outbound:…`
//! (both `RedisChecksumStore`, each with its own retention), and the
//! counter store's. The memory policy store keeps its lock records in a
//! redb file ([`crate::lock_journal`]).
//!
//! The stores are opened once at start and kept across SIGHUP reloads, so
//! counters, triplets, counts and learned recipients carry over. Every store call is timed for
//! `portcullis_store_seconds`. The store traits are synchronous: a Redis
//! call is a blocking network round trip, so it runs under
//! `tokio::task::block_in_place` (the worker hands its other tasks to the
//! rest of the runtime while it waits) and each Redis connection has a
//! connect/read/write timeout (`redis.timeout_ms`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use portcullis_fingerprint::{Checksum, ChecksumStore, FingerprintError};
use portcullis_greylist::{GreylistStore, Record, Space};
use portcullis_policy::{CounterSnapshot, CounterStore, LockRecord, Outcome, Request, StoreError};
use portcullis_redis::connection::RedisPool;
use serde::Deserialize;

use crate::config::{ConfigError, Settings};

/// `[redis]` as written: off unless `url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RedisSection {
    pub(crate) url: Option<String>,
    pub(crate) prefix: String,
    pub(crate) timeout_ms: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: None,
            prefix: "portcullis:".into(),
            timeout_ms: 1000,
        }
    }
}

/// The checked `[redis]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisSettings {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
}

impl RedisSection {
    pub(crate) fn check(&self) -> Result<Option<RedisSettings>, ConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        // Parses the URL only; nothing connects until the relay starts.
        RedisPool::new(url, "").map_err(|e| ConfigError::Invalid {
            key: "redis.url".into(),
            message: format!("{url:?} is not a Redis URL such as \"redis://127.0.0.1:6379\": {e}"),
        })?;
        if self.timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "redis.timeout_ms".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(Some(RedisSettings {
            url: url.clone(),
            prefix: self.prefix.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
        }))
    }
}

/// Where one kind of state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// Process memory: lost on restart, not shared.
    Memory,
    /// A redb file in the data directory: survives restarts, not shared.
    Redb,
    /// `[redis]`: survives restarts and is shared by every relay using it.
    Redis,
}

impl StoreKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redb => "redb",
            StoreKind::Redis => "redis",
        }
    }
}

/// `key = value` checked against the kinds that section supports; `redis`
/// needs `[redis] url`.
pub(crate) fn store_kind(
    key: &str,
    value: &str,
    allowed: &[StoreKind],
    redis: Option<&RedisSettings>,
) -> Result<StoreKind, ConfigError> {
    let Some(kind) = allowed.iter().copied().find(|k| k.as_str() == value) else {
        let names: Vec<String> = allowed
            .iter()
            .map(|k| format!("{:?}", k.as_str()))
            .collect();
        return Err(ConfigError::Invalid {
            key: key.into(),
            message: format!("{value:?} is not one of {}", names.join(", ")),
        });
    };
    if kind == StoreKind::Redis && redis.is_none() {
        return Err(ConfigError::Invalid {
            key: key.into(),
            message: "\"redis\" needs [redis] url = \"redis://…\"".into(),
        });
    }
    Ok(kind)
}

/// The stores the relay runs on, opened once and kept across reloads.
pub(crate) struct Stores {
    redis: Option<Arc<RedisPool>>,
    pub(crate) counters: Arc<dyn CounterStore>,
    greylist_kind: StoreKind,
    greylist_path: std::path::PathBuf,
    /// Opened on first use (greylisting may be turned on by a reload).
    greylist: Mutex<Option<Arc<dyn GreylistStore>>>,
    checksum_kind: StoreKind,
    checksums: Mutex<Option<Arc<dyn ChecksumStore>>>,
    /// `[outbound_bulk]` counts.
    outbound_kind: StoreKind,
    outbound: Mutex<Option<Arc<dyn ChecksumStore>>>,
    /// `[backup_mx]` learned recipients.
    recipients_kind: StoreKind,
    recipients_path: std::path::PathBuf,
    recipients: Mutex<Option<Arc<dyn GreylistStore>>>,
}

/// The Redis namespace of `[backup_mx]` learned recipients.
pub(crate) const RECIPIENTS_NAMESPACE: &str = "recipients";
/// The Redis namespace of `[outbound_bulk]` counts.
pub(crate) const OUTBOUND_NAMESPACE: &str = "outbound";

impl Stores {
    /// Open the configured stores; with Redis configured, it must answer a
    /// `PING` now. With the memory counter store, its lock records live in
    /// `data_dir/locks_file` (which must exist as a directory).
    pub(crate) fn open(
        settings: &Settings,
        data_dir: &std::path::Path,
        locks_file: &str,
    ) -> Result<Self, String> {
        let redis = match &settings.redis {
            // `[redis]` that no store uses: nothing to connect to.
            Some(_) if settings.redis_users().is_empty() => None,
            None => None,
            Some(r) => {
                let pool = RedisPool::new(&r.url, r.prefix.clone())
                    .map_err(|e| format!("redis.url {}: {e}", r.url))?
                    .with_timeout(r.timeout);
                pool.ping().map_err(|e| {
                    format!(
                        "redis.url {}: Redis does not answer ({e}); it is configured for {}",
                        r.url,
                        settings.redis_users().join(", ")
                    )
                })?;
                Some(Arc::new(pool))
            }
        };
        let counters: Arc<dyn CounterStore> = match (&redis, settings.policy_store) {
            (Some(_), StoreKind::Redis) => {
                let r = settings.redis.as_ref().ok_or("redis: not configured")?;
                // The counter store owns its pool (not an Arc).
                let pool = RedisPool::new(&r.url, r.prefix.clone())
                    .map_err(|e| format!("redis.url {}: {e}", r.url))?
                    .with_timeout(r.timeout);
                Arc::new(Timed::redis(
                    "counter",
                    portcullis_redis::counter::RedisCounterStore::new(pool),
                ))
            }
            // In memory, with the lock records (and their history) in
            // `<data_dir>/policy-locks.redb`, so a restart unlocks nobody.
            // A lock or unlock fsyncs inline: they are rare.
            _ => {
                let path = data_dir.join(locks_file);
                let journal = crate::lock_journal::RedbLockJournal::open(&path)?;
                let store = portcullis_policy::MemoryStore::with_lock_journal(Arc::new(journal))
                    .map_err(|e| format!("cannot load the policy locks: {e}"))?;
                Arc::new(Timed::local("counter", store))
            }
        };
        Ok(Stores {
            redis,
            counters,
            greylist_kind: settings.greylist_store,
            greylist_path: data_dir.join("greylist.redb"),
            greylist: Mutex::new(None),
            checksum_kind: settings.bulk_store,
            checksums: Mutex::new(None),
            outbound_kind: settings.outbound_store,
            outbound: Mutex::new(None),
            recipients_kind: settings.recipients_store,
            recipients_path: data_dir.join("recipients.redb"),
            recipients: Mutex::new(None),
        })
    }

    fn pool(&self) -> Result<Arc<RedisPool>, String> {
        self.redis
            .clone()
            .ok_or_else(|| "redis: not configured".into())
    }

    /// The greylist store (`[greylist] store`).
    pub(crate) fn greylist(&self) -> Result<Arc<dyn GreylistStore>, String> {
        let mut slot = self.greylist.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store: Arc<dyn GreylistStore> = match self.greylist_kind {
            StoreKind::Redis => Arc::new(Timed::redis(
                "greylist",
                portcullis_redis::greylist::RedisGreylistStore::new(self.pool()?),
            )),
            StoreKind::Memory => Arc::new(Timed::local(
                "greylist",
                portcullis_greylist::MemoryStore::new(),
            )),
            StoreKind::Redb => {
                let path = &self.greylist_path;
                let store = portcullis_greylist::RedbStore::open(path)
                    .map_err(|e| format!("greylist store {}: {e}", path.display()))?;
                Arc::new(Timed::local("greylist", store))
            }
        };
        *slot = Some(store.clone());
        Ok(store)
    }

    /// The bulk checksum store (`[bulk] store`), keeping counts for `window`
    /// (the window of the first configuration that needs it).
    pub(crate) fn checksums(&self, window: Duration) -> Result<Arc<dyn ChecksumStore>, String> {
        let mut slot = self.checksums.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store: Arc<dyn ChecksumStore> = match self.checksum_kind {
            StoreKind::Redis => Arc::new(Timed::redis(
                "checksum",
                portcullis_redis::checksum::RedisChecksumStore::new(self.pool()?)
                    .with_retention(window),
            )),
            _ => Arc::new(Timed::local(
                "checksum",
                portcullis_fingerprint::MemoryChecksumStore::new(window),
            )),
        };
        *slot = Some(store.clone());
        Ok(store)
    }
}

impl Stores {
    /// The `[outbound_bulk]` checksum store (`[outbound_bulk] store`),
    /// keeping counts for `window` (the window of the first configuration
    /// that needs it).
    pub(crate) fn outbound(&self, window: Duration) -> Result<Arc<dyn ChecksumStore>, String> {
        let mut slot = self.outbound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store: Arc<dyn ChecksumStore> = match self.outbound_kind {
            // Apart from the inbound `[bulk]` counts, with its own retention.
            StoreKind::Redis => Arc::new(Timed::redis(
                "outbound",
                portcullis_redis::checksum::RedisChecksumStore::new(self.pool()?)
                    .with_namespace(OUTBOUND_NAMESPACE)
                    .with_retention(window),
            )),
            _ => Arc::new(Timed::local(
                "outbound",
                portcullis_fingerprint::MemoryChecksumStore::new(window),
            )),
        };
        *slot = Some(store.clone());
        Ok(store)
    }

    /// The backup-MX learned-recipient store (`[backup_mx] store`).
    pub(crate) fn recipients(&self) -> Result<Arc<dyn GreylistStore>, String> {
        let mut slot = self.recipients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store: Arc<dyn GreylistStore> = match self.recipients_kind {
            StoreKind::Redis => Arc::new(Timed::redis(
                "recipients",
                portcullis_redis::greylist::RedisGreylistStore::new(self.pool()?)
                    .with_namespace(RECIPIENTS_NAMESPACE),
            )),
            StoreKind::Memory => Arc::new(Timed::local(
                "recipients",
                portcullis_greylist::MemoryStore::new(),
            )),
            StoreKind::Redb => {
                let path = &self.recipients_path;
                let store = portcullis_greylist::RedbStore::open(path)
                    .map_err(|e| format!("recipient learning store {}: {e}", path.display()))?;
                Arc::new(Timed::local("recipients", store))
            }
        };
        *slot = Some(store.clone());
        Ok(store)
    }
}

/// A store whose calls are timed (`portcullis_store_seconds{store, op}`)
/// and, for a network store, run where blocking is allowed.
#[derive(Debug)]
pub(crate) struct Timed<S> {
    inner: S,
    name: &'static str,
    blocking: bool,
}

impl<S> Timed<S> {
    /// A store whose calls block on the network (Redis).
    pub(crate) fn redis(name: &'static str, inner: S) -> Self {
        Timed {
            inner,
            name,
            blocking: true,
        }
    }

    /// A store in memory or on local disk: called inline, as the filters do.
    pub(crate) fn local(name: &'static str, inner: S) -> Self {
        Timed {
            inner,
            name,
            blocking: false,
        }
    }

    fn call<T>(&self, op: &'static str, f: impl FnOnce(&S) -> T) -> T {
        let started = tokio::time::Instant::now();
        let out = if self.blocking {
            blocking(|| f(&self.inner))
        } else {
            f(&self.inner)
        };
        crate::metrics::store_call(self.name, op, started.elapsed());
        out
    }
}

/// Run a blocking call: on a multi-threaded runtime's worker, under
/// `block_in_place` so the worker's other tasks move elsewhere while it
/// waits; anywhere else (a blocking-pool thread, no runtime), directly.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl<S: CounterStore> CounterStore for Timed<S> {
    fn decide(&self, request: &Request<'_>, now: SystemTime) -> Result<Outcome, StoreError> {
        self.call("decide", |s| s.decide(request, now))
    }
    fn block(&self, key: &str, until: SystemTime, now: SystemTime) -> Result<(), StoreError> {
        self.call("block", |s| s.block(key, until, now))
    }
    fn lock(
        &self,
        key: &str,
        lock_for: Duration,
        max_auto_unlocks: u32,
        reason: &str,
        now: SystemTime,
    ) -> Result<LockRecord, StoreError> {
        self.call("lock", |s| {
            s.lock(key, lock_for, max_auto_unlocks, reason, now)
        })
    }
    fn unlock(&self, key: &str, forget_history: bool) -> Result<(), StoreError> {
        self.call("unlock", |s| s.unlock(key, forget_history))
    }
    fn lock_record(&self, key: &str) -> Result<Option<LockRecord>, StoreError> {
        self.call("lock_record", |s| s.lock_record(key))
    }
    fn locks(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        self.call("locks", |s| s.locks())
    }
    fn counters(&self, now: SystemTime) -> Result<Vec<CounterSnapshot>, StoreError> {
        self.call("counters", |s| s.counters(now))
    }
}

impl<S: GreylistStore> GreylistStore for Timed<S> {
    fn get(
        &self,
        space: Space,
        key: &str,
        now: u64,
    ) -> Result<Option<Record>, portcullis_greylist::StoreError> {
        self.call("get", |s| s.get(space, key, now))
    }
    fn put(
        &self,
        space: Space,
        key: &str,
        record: Record,
        now: u64,
        expires_at: u64,
    ) -> Result<(), portcullis_greylist::StoreError> {
        self.call("put", |s| s.put(space, key, record, now, expires_at))
    }
    fn remove(&self, space: Space, key: &str) -> Result<bool, portcullis_greylist::StoreError> {
        self.call("remove", |s| s.remove(space, key))
    }
    fn sweep(&self, now: u64, budget: usize) -> Result<usize, portcullis_greylist::StoreError> {
        self.call("sweep", |s| s.sweep(now, budget))
    }
}

impl<S: ChecksumStore> ChecksumStore for Timed<S> {
    fn record(&self, c: &Checksum, r: &str, at: SystemTime) -> Result<(), FingerprintError> {
        self.call("record", |s| s.record(c, r, at))
    }
    fn record_many(&self, c: &[Checksum], r: &str, at: SystemTime) -> Result<(), FingerprintError> {
        self.call("record_many", |s| s.record_many(c, r, at))
    }
    fn record_recipients(
        &self,
        c: &[Checksum],
        r: &[&str],
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        self.call("record_recipients", |s| s.record_recipients(c, r, at))
    }
    fn distinct_recipients(
        &self,
        c: &Checksum,
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        self.call("distinct_recipients", |s| {
            s.distinct_recipients(c, window, now)
        })
    }
    fn max_distinct_recipients(
        &self,
        c: &[Checksum],
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        self.call("max_distinct_recipients", |s| {
            s.max_distinct_recipients(c, window, now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_store_needs_the_redis_section() {
        let all = [StoreKind::Memory, StoreKind::Redis];
        let err = store_kind("policy.store", "redis", &all, None).unwrap_err();
        assert!(err.to_string().starts_with("policy.store:"), "{err}");
        let err = store_kind("policy.store", "redb", &all, None).unwrap_err();
        assert!(err.to_string().contains("\"memory\", \"redis\""), "{err}");
        let r = RedisSettings {
            url: "redis://127.0.0.1:6379".into(),
            prefix: String::new(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            store_kind("policy.store", "redis", &all, Some(&r)).unwrap(),
            StoreKind::Redis
        );
    }

    #[test]
    fn a_bad_url_is_refused_by_key() {
        let s = RedisSection {
            url: Some("http://nope".into()),
            ..RedisSection::default()
        };
        assert!(s.check().unwrap_err().to_string().starts_with("redis.url:"));
    }

    #[test]
    fn timed_stores_are_counted_in_the_metrics() {
        let store = Timed::local(
            "checksum",
            portcullis_fingerprint::MemoryChecksumStore::new(Duration::from_secs(60)),
        );
        let c = Checksum::of(b"bulk");
        store
            .record(&c, "a@b.example", SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(
            crate::metrics::text()
                .contains("portcullis_store_seconds_count{op=\"record\",store=\"checksum\"}")
        );
    }
}
