//! Bulk counting storage: the [`ChecksumStore`] trait and its in-memory
//! implementation [`MemoryChecksumStore`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::checksum::Checksum;
use crate::error::FingerprintError;

/// The default counting window: 24 hours.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Milliseconds since the Unix epoch (0 before it): the time unit of stores.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where bulk counts live: "checksum C was sent to recipient R at time T",
/// and "how many distinct recipients got C in the last window".
///
/// # Contract
///
/// - **Thread safety**: `Send + Sync`; every method may be called from many
///   threads (and, for shared backends, many relays) at once. Concurrent
///   records are never lost.
/// - **Distinct recipients**: recipients are compared byte for byte (the
///   caller normalises, e.g. lower-cases the domain). Recording `(C, R)` again
///   does not add to the count; it moves R's time for C to the later of the
///   two times.
/// - **Window**: [`distinct_recipients`](Self::distinct_recipients) counts the
///   recipients whose latest time for C is *after* `now - window` (strictly).
///   Times later than `now` also count, so relays with slightly different
///   clocks agree. Times are kept to the millisecond.
/// - **A miss** (a checksum never recorded, or only long ago) is a count of
///   `0`, not an error.
/// - **Retention**: a store may forget records older than its retention
///   (at least [`DEFAULT_WINDOW`] unless configured otherwise); windows longer
///   than the retention may under-count.
/// - **Failure**: a backend failure returns [`FingerprintError::Store`]; a failed
///   `record_many` or `record_recipients` may have recorded part of its batch. Callers decide what
///   a failure means (the bulk filter fails open and says so in its decision).
///
/// The contract is checked by one suite run against every implementation
/// (`testing::checksum_store_contract`, behind the `testing` feature).
pub trait ChecksumStore: Send + Sync {
    /// Record that `checksum` was sent to `recipient` at `at`.
    fn record(
        &self,
        checksum: &Checksum,
        recipient: &str,
        at: SystemTime,
    ) -> Result<(), FingerprintError>;

    /// Record `recipient` at `at` under every checksum (one round trip where
    /// the backend allows).
    fn record_many(
        &self,
        checksums: &[Checksum],
        recipient: &str,
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        checksums
            .iter()
            .try_for_each(|c| self.record(c, recipient, at))
    }

    /// Record every recipient at `at` under every checksum: one message sent
    /// to many recipients, one round trip where the backend allows (the
    /// default calls [`record_many`](Self::record_many) per recipient).
    fn record_recipients(
        &self,
        checksums: &[Checksum],
        recipients: &[&str],
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        recipients
            .iter()
            .try_for_each(|r| self.record_many(checksums, r, at))
    }

    /// Distinct recipients of `checksum` whose latest time is after
    /// `now - window`.
    fn distinct_recipients(
        &self,
        checksum: &Checksum,
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError>;

    /// The largest [`distinct_recipients`](Self::distinct_recipients) among
    /// `checksums` (0 for none).
    fn max_distinct_recipients(
        &self,
        checksums: &[Checksum],
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        checksums.iter().try_fold(0, |max, c| {
            Ok(max.max(self.distinct_recipients(c, window, now)?))
        })
    }
}

impl<S: ChecksumStore + ?Sized> ChecksumStore for std::sync::Arc<S> {
    fn record(&self, c: &Checksum, r: &str, at: SystemTime) -> Result<(), FingerprintError> {
        (**self).record(c, r, at)
    }
    fn record_many(&self, c: &[Checksum], r: &str, at: SystemTime) -> Result<(), FingerprintError> {
        (**self).record_many(c, r, at)
    }
    fn record_recipients(
        &self,
        c: &[Checksum],
        r: &[&str],
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        (**self).record_recipients(c, r, at)
    }
    fn distinct_recipients(
        &self,
        c: &Checksum,
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        (**self).distinct_recipients(c, window, now)
    }
    fn max_distinct_recipients(
        &self,
        c: &[Checksum],
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        (**self).max_distinct_recipients(c, window, now)
    }
}

/// A [`ChecksumStore`] in process memory (a `DashMap` of checksum → recipient
/// → latest time in ms). Never fails.
///
/// Old records are dropped lazily when their checksum is written, by
/// [`purge`](Self::purge), and by `record` itself now and then: once at least
/// as many records as checksums held (and at least 1024) have arrived since
/// the last purge, and a sixteenth of the retention has passed in record
/// time, the recording thread purges. A purge visits every checksum, so its
/// cost is paid for by the records since the last one (amortised O(1) per
/// record), and a store that is only ever written to stays bounded.
#[derive(Debug)]
pub struct MemoryChecksumStore {
    map: DashMap<Checksum, HashMap<Box<str>, u64>>,
    retention: Duration,
    /// Records since the last purge.
    since_purge: AtomicUsize,
    /// Records to wait for before the next purge.
    purge_after: AtomicUsize,
    /// Record time (ms) of the last purge.
    last_purge_ms: AtomicU64,
}

/// The fewest records between two purges done by `record`.
const MIN_RECORDS_BETWEEN_PURGES: usize = 1024;

impl Default for MemoryChecksumStore {
    fn default() -> Self {
        MemoryChecksumStore::new(DEFAULT_WINDOW)
    }
}

impl MemoryChecksumStore {
    /// A store that keeps records for `retention` (use the largest window
    /// you count over).
    pub fn new(retention: Duration) -> Self {
        MemoryChecksumStore {
            map: DashMap::new(),
            retention,
            since_purge: AtomicUsize::new(0),
            purge_after: AtomicUsize::new(MIN_RECORDS_BETWEEN_PURGES),
            last_purge_ms: AtomicU64::new(0),
        }
    }

    /// Drop every record older than `now - retention`.
    pub fn purge(&self, now: SystemTime) {
        self.purge_at(unix_millis(now));
    }

    fn purge_at(&self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(retention_ms(self.retention));
        self.map.retain(|_, recipients| {
            recipients.retain(|_, t| *t > cutoff);
            !recipients.is_empty()
        });
    }

    /// Count `n` records made at `t_ms` and purge if it is time (see the
    /// type's docs). Must be called with no map entry held.
    fn after_records(&self, n: usize, t_ms: u64) {
        let since = self.since_purge.fetch_add(n, Ordering::Relaxed) + n;
        if since < self.purge_after.load(Ordering::Relaxed) {
            return;
        }
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        if t_ms < last.saturating_add(retention_ms(self.retention) / 16) {
            return;
        }
        // One thread purges; the others go on recording.
        if self
            .last_purge_ms
            .compare_exchange(last, t_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.purge_at(t_ms);
        self.since_purge.store(0, Ordering::Relaxed);
        self.purge_after.store(
            self.map.len().max(MIN_RECORDS_BETWEEN_PURGES),
            Ordering::Relaxed,
        );
    }

    /// Record `recipients` under `checksum` at `t` (ms), holding its entry once.
    fn insert(&self, checksum: &Checksum, recipients: &[&str], t: u64) {
        let mut held = self.map.entry(*checksum).or_default();
        for &recipient in recipients {
            match held.get_mut(recipient) {
                Some(old) => *old = (*old).max(t),
                None => {
                    // Prune this checksum's stale recipients now and then, so a
                    // long-lived checksum does not grow without bound.
                    if held.len() >= 64 && held.len().is_power_of_two() {
                        let cutoff = t.saturating_sub(retention_ms(self.retention));
                        held.retain(|_, seen| *seen > cutoff);
                    }
                    held.insert(recipient.into(), t);
                }
            }
        }
    }

    /// Number of checksums held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn retention_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ChecksumStore for MemoryChecksumStore {
    fn record(
        &self,
        checksum: &Checksum,
        recipient: &str,
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        let t = unix_millis(at);
        self.insert(checksum, &[recipient], t);
        self.after_records(1, t);
        Ok(())
    }

    fn record_many(
        &self,
        checksums: &[Checksum],
        recipient: &str,
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        self.record_recipients(checksums, &[recipient], at)
    }

    fn record_recipients(
        &self,
        checksums: &[Checksum],
        recipients: &[&str],
        at: SystemTime,
    ) -> Result<(), FingerprintError> {
        let t = unix_millis(at);
        for c in checksums {
            self.insert(c, recipients, t);
        }
        self.after_records(checksums.len() * recipients.len(), t);
        Ok(())
    }

    fn distinct_recipients(
        &self,
        checksum: &Checksum,
        window: Duration,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        let cutoff = unix_millis(now).saturating_sub(retention_ms(window));
        Ok(self.map.get(checksum).map_or(0, |recipients| {
            recipients.values().filter(|t| **t > cutoff).count() as u64
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_purges_stale_checksums_by_itself() {
        let store = MemoryChecksumStore::new(Duration::from_secs(3600));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let c = |i: u32| Checksum::of(&i.to_le_bytes());
        for i in 0..3000 {
            store.record(&c(i), "a@x.example", t0).unwrap();
        }
        assert_eq!(store.len(), 3000, "nothing is stale yet");
        // Two hours later: new traffic alone clears the old checksums.
        let later = t0 + Duration::from_secs(2 * 3600);
        for i in 3000..6000 {
            store.record(&c(i), "a@x.example", later).unwrap();
        }
        assert!(store.len() <= 3000, "held {}", store.len());
        assert_eq!(
            store
                .distinct_recipients(&c(5999), DEFAULT_WINDOW, later)
                .unwrap(),
            1
        );
        // A batch counts as many records and purges too.
        let much_later = later + Duration::from_secs(2 * 3600);
        let keys: Vec<Checksum> = (6000..6100).map(c).collect();
        let rcpts: Vec<String> = (0..40).map(|i| format!("r{i}@x.example")).collect();
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        store.record_recipients(&keys, &rcpts, much_later).unwrap();
        assert_eq!(store.len(), 100);
        assert_eq!(
            store
                .distinct_recipients(&keys[7], DEFAULT_WINDOW, much_later)
                .unwrap(),
            40
        );
    }
}
