//! The [`GreylistStore`] trait, its record type, and the byte encoding that
//! persistent backends share.

/// The three kinds of state greylisting keeps, each in its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Space {
    /// Triplets: `first_seen`, `last_seen`, `count` = times passed.
    Triplet,
    /// Client networks: `last_seen` = last counted pass, `count` = passes
    /// counted for the auto-whitelist, `flag` = released by an admin.
    Client,
    /// Learned recipients (backup MX): `first_seen` = when learned,
    /// `flag` = the primary accepted it (`false`: it said 5.1.1).
    Recipient,
}

impl Space {
    /// Every space, in a fixed order (for sweeps and per-space tables).
    pub const ALL: [Space; 3] = [Space::Triplet, Space::Client, Space::Recipient];

    /// A short stable tag, for backends that need one in key names.
    pub fn tag(self) -> &'static str {
        match self {
            Space::Triplet => "t",
            Space::Client => "c",
            Space::Recipient => "r",
        }
    }
}

/// One stored value. Times are seconds since the Unix epoch; what each
/// field means depends on the [`Space`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Record {
    /// When the entry was created (or last reset).
    pub first_seen: u64,
    /// When the entry was last used.
    pub last_seen: u64,
    /// A count (passes).
    pub count: u32,
    /// A flag (released, or recipient valid).
    pub flag: bool,
}

/// Length of [`Record::encode`]'s output.
pub const ENCODED_LEN: usize = 30;
const ENCODING_VERSION: u8 = 1;

impl Record {
    /// The fixed-size encoding persistent stores use, with the entry's expiry:
    /// version (1 byte), `expires_at`, `first_seen`, `last_seen` (u64 BE),
    /// `count` (u32 BE), `flag` (1 byte).
    pub fn encode(&self, expires_at: u64) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0] = ENCODING_VERSION;
        out[1..9].copy_from_slice(&expires_at.to_be_bytes());
        out[9..17].copy_from_slice(&self.first_seen.to_be_bytes());
        out[17..25].copy_from_slice(&self.last_seen.to_be_bytes());
        out[25..29].copy_from_slice(&self.count.to_be_bytes());
        out[29] = u8::from(self.flag);
        out
    }

    /// Decode [`Record::encode`]'s output into the record and its expiry.
    pub fn decode(bytes: &[u8]) -> Result<(Record, u64), StoreError> {
        if bytes.len() != ENCODED_LEN || bytes[0] != ENCODING_VERSION {
            return Err(StoreError::Corrupt(format!(
                "record of {} bytes, version {:?}",
                bytes.len(),
                bytes.first()
            )));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut count = [0u8; 4];
        count.copy_from_slice(&bytes[25..29]);
        Ok((
            Record {
                first_seen: u64_at(9),
                last_seen: u64_at(17),
                count: u32::from_be_bytes(count),
                flag: bytes[29] != 0,
            },
            u64_at(1),
        ))
    }
}

/// Why a store could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, connection, transaction).
    #[error("greylist store backend failed: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("greylist store holds a corrupt value: {0}")]
    Corrupt(String),
}

/// Where greylisting keeps its state.
///
/// # Contract
///
/// - **Thread safety.** Implementations are `Send + Sync` and every method
///   may be called from many threads at once. Each call is atomic on its own
///   key (a reader sees a whole record or none); there is no transaction
///   across calls, so two concurrent read-modify-write sequences on one key
///   may lose one update (last writer wins). Greylisting tolerates that: a
///   lost update delays a pass count or a `last_seen` refresh, never lets an
///   unseen triplet through.
/// - **Expiry.** Every [`put`](GreylistStore::put) carries an absolute
///   `expires_at` (Unix seconds). [`get`](GreylistStore::get) with
///   `now >= expires_at` must report a miss, whether or not the entry was
///   physically removed yet: logical time is the caller's `now`, never the
///   backend's own clock, so tests can move time with a `ManualClock`.
///   Backends reclaim space either with native TTLs or through
///   [`sweep`](GreylistStore::sweep), which must never hold the whole store
///   locked: it does at most `budget` removals per call.
/// - **Misses.** `Ok(None)` means "never seen, or expired": the caller treats
///   the key as new. It is not an error.
/// - **Failure.** A backend that cannot answer returns `Err(StoreError)`; it
///   must not guess. The greylist turns errors into its configured failure
///   mode (fail-open by default). A `put` that returned `Ok` is visible to
///   every later `get` through any handle on the same store, and, for
///   persistent stores, after a crash and reopen.
/// - **Keys** are arbitrary UTF-8 without control characters other than tab,
///   at most a few hundred bytes.
pub trait GreylistStore: Send + Sync + std::fmt::Debug {
    /// The record under `key` in `space`, unless missing or expired at `now`.
    fn get(&self, space: Space, key: &str, now: u64) -> Result<Option<Record>, StoreError>;

    /// Store `record` under `key`, replacing any previous one, until
    /// `expires_at`. `now` is the caller's time: a store with native TTLs
    /// sets them to `expires_at - now` (at least one second).
    fn put(
        &self,
        space: Space,
        key: &str,
        record: Record,
        now: u64,
        expires_at: u64,
    ) -> Result<(), StoreError>;

    /// Remove `key`; whether a live or expired entry was there.
    fn remove(&self, space: Space, key: &str) -> Result<bool, StoreError>;

    /// Remove up to `budget` entries that expired at `now`; returns how many
    /// were removed. A store with native expiry returns `Ok(0)`. Calling it
    /// repeatedly eventually visits every entry.
    fn sweep(&self, now: u64, budget: usize) -> Result<usize, StoreError>;
}

impl<S: GreylistStore + ?Sized> GreylistStore for std::sync::Arc<S> {
    fn get(&self, space: Space, key: &str, now: u64) -> Result<Option<Record>, StoreError> {
        (**self).get(space, key, now)
    }
    fn put(
        &self,
        space: Space,
        key: &str,
        record: Record,
        now: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        (**self).put(space, key, record, now, expires_at)
    }
    fn remove(&self, space: Space, key: &str) -> Result<bool, StoreError> {
        (**self).remove(space, key)
    }
    fn sweep(&self, now: u64, budget: usize) -> Result<usize, StoreError> {
        (**self).sweep(now, budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let r = Record {
            first_seen: 1,
            last_seen: u64::MAX - 3,
            count: 70_000,
            flag: true,
        };
        let bytes = r.encode(42);
        assert_eq!(Record::decode(&bytes).unwrap(), (r, 42));
        assert!(Record::decode(&bytes[..29]).is_err());
        let mut wrong_version = bytes;
        wrong_version[0] = 9;
        assert!(Record::decode(&wrong_version).is_err());
        assert!(Record::decode(&[]).is_err());
    }
}
