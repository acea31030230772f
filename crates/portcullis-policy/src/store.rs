//! The [`CounterStore`] trait, its request/outcome types and the window
//! arithmetic every implementation shares.
//!
//! # The sliding window
//!
//! A [`Window`] of length `T` with limit `N` is split into `buckets` buckets
//! of `g = T / buckets` milliseconds (at least 1 ms). A hit at time `h` is
//! added to bucket `floor(h / g)`. At time `t` the count of the window is the
//! sum of buckets `floor(t/g) - k ..= ` (and any later bucket, should the clock
//! have stepped back), where `k = ceil(T / g)`. A request of cost `c` is
//! admitted when `count + c <= N`.
//!
//! **Boundary behaviour.** A hit keeps counting until `T` after the *end* of
//! its bucket, that is for between `T` and `T + g` after it happened; it
//! never stops counting earlier than `T`. Hence the guarantee the property
//! tests check: *in any interval of length `T`, at most `N` units are
//! admitted* (the window errs on the strict side by at most one bucket).
//! The retry hint of a refusal is the instant at which enough old buckets
//! stop counting for the same request to fit. This is Exim's "sliding
//! window" made exact on the safe side, unlike GCRA (which lets a full
//! burst through at the start of a period and again during it) and unlike
//! fixed windows (which admit `2N` across a boundary).
//!
//! Times are whole milliseconds since the Unix epoch, taken from the
//! caller's `now`: the store never reads a clock, so a fleet sharing a
//! Redis store must keep its clocks in sync (NTP); a clock that steps back
//! can only make the window stricter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Buckets per window unless a rule says otherwise.
pub const DEFAULT_BUCKETS: u32 = 60;

/// One sliding window of a counter: at most `limit` units per `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Length `T` of the window.
    pub length: Duration,
    /// Units admitted per window.
    pub limit: u64,
    /// Buckets per window (precision: `T / buckets` on the strict side).
    pub buckets: u32,
}

impl Window {
    /// `limit` units per `length`, with [`DEFAULT_BUCKETS`] buckets.
    pub fn new(length: Duration, limit: u64) -> Self {
        Window {
            length,
            limit,
            buckets: DEFAULT_BUCKETS,
        }
    }

    /// `limit` per minute.
    pub fn per_minute(limit: u64) -> Self {
        Window::new(Duration::from_secs(60), limit)
    }

    /// `limit` per hour.
    pub fn per_hour(limit: u64) -> Self {
        Window::new(Duration::from_secs(3600), limit)
    }

    /// The same window with `buckets` buckets (at least 1).
    pub fn with_buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets.max(1);
        self
    }

    /// Length in whole milliseconds (at least 1).
    pub fn length_ms(&self) -> u64 {
        u64::try_from(self.length.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Bucket width `g` in milliseconds (at least 1).
    pub fn bucket_ms(&self) -> u64 {
        (self.length_ms() / u64::from(self.buckets.max(1))).max(1)
    }

    /// `k = ceil(T / g)`: how many buckets before the current one count.
    pub fn span(&self) -> u64 {
        self.length_ms().div_ceil(self.bucket_ms())
    }

    /// Index of the bucket that holds a hit at `now_ms`.
    pub fn bucket_of(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms()
    }

    /// The oldest bucket index that still counts at `now_ms`.
    pub fn oldest_counted(&self, now_ms: u64) -> u64 {
        self.bucket_of(now_ms).saturating_sub(self.span())
    }

    /// Given the counted buckets `(index, count)` sorted by index, the time
    /// until a request of `cost` fits; `None` when it fits now.
    ///
    /// Bucket `j` stops counting at `(j + k + 1) * g`. A cost above the
    /// limit never fits: the hint is then one window length.
    pub fn retry_after(
        &self,
        counted: impl IntoIterator<Item = (u64, u64)> + Clone,
        cost: u64,
        now_ms: u64,
    ) -> Option<Duration> {
        let mut total: u64 = counted.clone().into_iter().map(|(_, c)| c).sum();
        if total.saturating_add(cost) <= self.limit {
            return None;
        }
        if cost > self.limit {
            return Some(self.length);
        }
        for (index, count) in counted {
            total = total.saturating_sub(count);
            if total.saturating_add(cost) <= self.limit {
                let free_at = index
                    .saturating_add(self.span())
                    .saturating_add(1)
                    .saturating_mul(self.bucket_ms());
                return Some(Duration::from_millis(free_at.saturating_sub(now_ms).max(1)));
            }
        }
        Some(self.length)
    }
}

/// Whether refused attempts count (Exim's `strict`) or not (`leaky`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Counting {
    /// Only admitted requests count: a client that keeps trying while over
    /// the limit gets through again as soon as its old traffic ages out.
    #[default]
    Leaky,
    /// Every attempt that reaches the limit check counts, refused or not:
    /// a client must stop trying for a while to be admitted again.
    Strict,
}

/// One counter of a request: a key with one or more windows.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    /// Logical key (the store adds its prefix), e.g. `rcpt:u:alice@example.com`.
    pub key: &'a str,
    /// Units this request adds (1 per message, or the number of recipients).
    pub cost: u64,
    /// Windows checked together (e.g. per minute and per hour).
    pub windows: &'a [Window],
    /// Leaky or strict.
    pub counting: Counting,
}

/// A distinct-member cap: at most `limit` distinct members per sliding `window`.
#[derive(Debug, Clone, Copy)]
pub struct Distinct<'a> {
    /// Logical key of the set.
    pub key: &'a str,
    /// The member (e.g. a recipient address key).
    pub member: &'a str,
    /// A member counts while it was last seen within this long.
    pub window: Duration,
    /// Distinct members allowed per window.
    pub limit: u64,
}

/// Everything one decision needs from the store, answered atomically in
/// one call (one round trip for a networked store).
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// Lock records to consult first (see [`CounterStore::lock`]).
    pub locks: &'a [&'a str],
    /// Temporary blocks to consult next (see [`CounterStore::block`]).
    pub blocks: &'a [&'a str],
    /// A distinct-member cap, checked before the counters.
    pub distinct: Option<Distinct<'a>>,
    /// Counters, all admitted or none.
    pub counters: &'a [Counter<'a>],
}

/// What the store decided for a [`Request`].
#[must_use = "the outcome says whether the request was admitted"]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Admitted: every counter was incremented, the distinct member recorded.
    Admitted,
    /// `locks[index]` is locked; nothing was counted.
    Locked {
        /// Index into [`Request::locks`].
        index: usize,
        /// The lock in effect.
        record: LockRecord,
    },
    /// `blocks[index]` is blocked until `until`; nothing was counted.
    Blocked {
        /// Index into [`Request::blocks`].
        index: usize,
        /// When the block ends.
        until: SystemTime,
    },
    /// The member is new and the set already holds `count` ≥ limit members.
    /// Strict counters were still incremented.
    DistinctExceeded {
        /// Distinct members currently in the window.
        count: u64,
    },
    /// `counters[counter].windows[window]` would exceed its limit. Strict
    /// counters were still incremented, leaky ones were not.
    Limited {
        /// Index into [`Request::counters`].
        counter: usize,
        /// Index into that counter's windows.
        window: usize,
        /// Units counted in that window before this request.
        count: u64,
        /// When the same request would fit (leaky counting, no other traffic).
        retry_after: Duration,
    },
}

/// Whether an account lock is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockState {
    /// Not locked (never, expired, or unlocked by an admin).
    Unlocked,
    /// Locked until this instant, then unlocks by itself.
    Until(SystemTime),
    /// Locked until an admin unlocks.
    Permanent,
}

/// A lock and its history, kept by the store (and so surviving restarts of
/// a relay when the store is persistent: Redis, or a
/// [`MemoryStore`](crate::MemoryStore) with a [`LockJournal`](crate::LockJournal)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockRecord {
    /// How many times the account was locked since its history was last cleared.
    pub times_locked: u32,
    /// The current lock.
    pub state: LockState,
    /// Why it was last locked.
    pub reason: String,
    /// When it was last locked.
    pub since: SystemTime,
}

impl LockRecord {
    /// Whether the lock is in force at `now`.
    pub fn in_effect(&self, now: SystemTime) -> bool {
        match self.state {
            LockState::Unlocked => false,
            LockState::Until(t) => now < t,
            LockState::Permanent => true,
        }
    }

    /// Apply one more lock at `now` (what [`CounterStore::lock`] does):
    /// unchanged while a lock is in force; otherwise the `n`-th lock is
    /// timed while `n <= max_auto_unlocks` and permanent after that.
    pub fn relock(
        previous: Option<LockRecord>,
        lock_for: Duration,
        max_auto_unlocks: u32,
        reason: &str,
        now: SystemTime,
    ) -> LockRecord {
        if let Some(p) = &previous
            && p.in_effect(now)
        {
            return p.clone();
        }
        let times_locked = previous.map_or(0, |p| p.times_locked).saturating_add(1);
        let state = if times_locked <= max_auto_unlocks {
            LockState::Until(from_ms(to_ms(now).saturating_add(duration_ms(lock_for))))
        } else {
            LockState::Permanent
        };
        LockRecord {
            times_locked,
            state,
            reason: reason.to_owned(),
            since: from_ms(to_ms(now)),
        }
    }
}

/// The current count of one counter window, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Logical key.
    pub key: String,
    /// Window length.
    pub window: Duration,
    /// Units counted in the window now.
    pub count: u64,
}

/// A store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable or failed (network, server error).
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with data this code does not understand.
    #[error("counter store returned malformed data: {0}")]
    Malformed(String),
}

/// Shared counters, blocks and lock records for the policy rules.
///
/// # Contract
///
/// - **Thread safety**: `Send + Sync`; every method may be called from many
///   threads (and, for a networked store, many relays) at once.
/// - **[`decide`](CounterStore::decide)** is atomic with respect to every
///   counter it touches: however many callers race, no window ever admits
///   more than its limit (see the module docs for the exact window). It
///   checks, in order: `locks` (a record in force → [`Outcome::Locked`],
///   nothing counted), `blocks` (→ [`Outcome::Blocked`], nothing counted),
///   the distinct cap, then every window of every counter. It either
///   admits all counters (adding each `cost` to every window) and records
///   the distinct member, or admits none: then only `Strict` counters are
///   incremented. A store may refuse conservatively while a concurrent
///   request is being rolled back; it never admits over a limit.
/// - **Keys**: a distinct set and a counter may share a key; they stay
///   separate data (a store may keep them together, as the memory store
///   does, to find both with one lookup).
/// - **Misses**: an unknown key is an empty counter, an absent block or an
///   unlocked account. Data older than its window may be dropped at any
///   time (keys carry TTLs); dropping it must not change any answer.
/// - **Locks** never expire from the store: their history (`times_locked`)
///   is what makes the `max_auto_unlocks`-th lock permanent.
/// - **Failure**: any backend problem is a [`StoreError`]; a store never
///   guesses. The policy turns errors into its configured failure verdict
///   (by default `451 4.3.0`).
/// - **Time** is the caller's `now`, in whole milliseconds; stores never
///   read a clock.
pub trait CounterStore: Send + Sync {
    /// Check and count one decision (see the contract above).
    fn decide(&self, request: &Request<'_>, now: SystemTime) -> Result<Outcome, StoreError>;

    /// Block `key` until `until` (a later block replaces an earlier one;
    /// an earlier one never shortens a later one).
    fn block(&self, key: &str, until: SystemTime, now: SystemTime) -> Result<(), StoreError>;

    /// Atomically apply one more lock to `key` as [`LockRecord::relock`]
    /// describes, store it (without expiry) and return it.
    fn lock(
        &self,
        key: &str,
        lock_for: Duration,
        max_auto_unlocks: u32,
        reason: &str,
        now: SystemTime,
    ) -> Result<LockRecord, StoreError>;

    /// An admin unlock: the lock ends now; with `forget_history` the lock
    /// count is reset too (the next lock is again the first).
    fn unlock(&self, key: &str, forget_history: bool) -> Result<(), StoreError>;

    /// The lock record of `key`, if any (in force or not).
    fn lock_record(&self, key: &str) -> Result<Option<LockRecord>, StoreError>;

    /// Every lock record, for reports.
    fn locks(&self) -> Result<Vec<(String, LockRecord)>, StoreError>;

    /// Every non-empty counter window at `now`, for reports.
    fn counters(&self, now: SystemTime) -> Result<Vec<CounterSnapshot>, StoreError>;
}

impl<S: CounterStore + ?Sized> CounterStore for std::sync::Arc<S> {
    fn decide(&self, request: &Request<'_>, now: SystemTime) -> Result<Outcome, StoreError> {
        (**self).decide(request, now)
    }
    fn block(&self, key: &str, until: SystemTime, now: SystemTime) -> Result<(), StoreError> {
        (**self).block(key, until, now)
    }
    fn lock(
        &self,
        key: &str,
        lock_for: Duration,
        max_auto_unlocks: u32,
        reason: &str,
        now: SystemTime,
    ) -> Result<LockRecord, StoreError> {
        (**self).lock(key, lock_for, max_auto_unlocks, reason, now)
    }
    fn unlock(&self, key: &str, forget_history: bool) -> Result<(), StoreError> {
        (**self).unlock(key, forget_history)
    }
    fn lock_record(&self, key: &str) -> Result<Option<LockRecord>, StoreError> {
        (**self).lock_record(key)
    }
    fn locks(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        (**self).locks()
    }
    fn counters(&self, now: SystemTime) -> Result<Vec<CounterSnapshot>, StoreError> {
        (**self).counters(now)
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant `ms` milliseconds after the Unix epoch.
pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_geometry() {
        let w = Window::per_minute(10);
        assert_eq!((w.bucket_ms(), w.span()), (1000, 60));
        let odd = Window::new(Duration::from_millis(1000), 1).with_buckets(3);
        // g = 333 ms, k = ceil(1000/333) = 4 so k*g = 1332 ≥ T.
        assert_eq!((odd.bucket_ms(), odd.span()), (333, 4));
        assert!(odd.span() * odd.bucket_ms() >= odd.length_ms());
        let tiny = Window::new(Duration::from_millis(5), 1).with_buckets(60);
        assert_eq!((tiny.bucket_ms(), tiny.span()), (1, 5));
    }

    #[test]
    fn retry_after_drops_oldest_buckets_first() {
        let w = Window::per_minute(3);
        // Buckets 100 (2 hits) and 130 (1 hit), now in bucket 150.
        let now = 150_500;
        assert_eq!(w.retry_after([(100, 1)], 1, now), None);
        // Dropping bucket 100 frees 2: it stops counting at (100+60+1)*1000.
        assert_eq!(
            w.retry_after([(100, 2), (130, 1)], 1, now),
            Some(Duration::from_millis(161_000 - 150_500))
        );
        // Needing 3 free means waiting for bucket 130 too.
        assert_eq!(
            w.retry_after([(100, 2), (130, 1)], 3, now),
            Some(Duration::from_millis(191_000 - 150_500))
        );
        assert_eq!(
            w.retry_after([], 4, now),
            Some(Duration::from_secs(60)),
            "a cost above the limit never fits"
        );
    }

    #[test]
    fn relock_counts_and_turns_permanent() {
        let t0 = from_ms(1_000_000);
        let hour = Duration::from_secs(3600);
        let first = LockRecord::relock(None, hour, 1, "spam", t0);
        assert_eq!(first.times_locked, 1);
        assert_eq!(first.state, LockState::Until(t0 + hour));
        assert!(first.in_effect(t0 + hour - Duration::from_millis(1)));
        assert!(!first.in_effect(t0 + hour));
        let again = LockRecord::relock(Some(first.clone()), hour, 1, "more", t0);
        assert_eq!(again, first, "a lock in force is not counted twice");
        let second = LockRecord::relock(Some(first), hour, 1, "more", t0 + hour);
        assert_eq!(
            (second.times_locked, second.state),
            (2, LockState::Permanent)
        );
        assert_eq!(second.reason, "more");
    }
}
