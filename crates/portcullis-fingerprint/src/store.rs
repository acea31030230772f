//! Bulk counting storage: the [`ChecksumStore`] trait and its in-memory
//! implementation [`MemoryChecksumStore`].

use std::collections::HashMap;
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
///   `record_many` may have recorded some of its checksums. Callers decide what
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
/// → latest time in ms). Never fails. Old records are dropped lazily when
/// their checksum is written and by [`purge`](Self::purge).
#[derive(Debug)]
pub struct MemoryChecksumStore {
    map: DashMap<Checksum, HashMap<Box<str>, u64>>,
    retention: Duration,
}

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
        }
    }

    /// Drop every record older than `now - retention`.
    pub fn purge(&self, now: SystemTime) {
        let cutoff = unix_millis(now).saturating_sub(retention_ms(self.retention));
        self.map.retain(|_, recipients| {
            recipients.retain(|_, t| *t > cutoff);
            !recipients.is_empty()
        });
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
        let mut recipients = self.map.entry(*checksum).or_default();
        match recipients.get_mut(recipient) {
            Some(old) => *old = (*old).max(t),
            None => {
                // Prune this checksum's stale recipients now and then, so a
                // long-lived checksum does not grow without bound.
                if recipients.len() >= 64 && recipients.len().is_power_of_two() {
                    let cutoff = t.saturating_sub(retention_ms(self.retention));
                    recipients.retain(|_, seen| *seen > cutoff);
                }
                recipients.insert(recipient.into(), t);
            }
        }
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
