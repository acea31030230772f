//! [`MemoryStore`]: the in-process [`CounterStore`] (dashmap), for a single
//! relay. Counters and blocks do not survive a restart; lock records do
//! when the store has a [`LockJournal`] (or use the Redis store).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::store::{
    Counter, CounterSnapshot, CounterStore, Counting, LockRecord, LockState, Outcome, Request,
    StoreError, Window, duration_ms, from_ms, to_ms,
};

/// Live buckets of a window. A few stay inline (a typical counter has
/// traffic in few buckets at once), saving a pointer hop per lookup.
type Slots = SmallVec<[(u64, u64); 6]>;

/// One window of one counter: its geometry (with the derived bucket width
/// and span cached, so a decision divides once per window) and its
/// non-empty buckets `(index, count)`, by index.
#[derive(Debug)]
struct WindowState {
    /// Identity: windows are keyed by geometry only (the limit is a
    /// property of the request, so changing a limit keeps the history).
    length: Duration,
    buckets: u32,
    /// `g` in ms.
    bucket_ms: u64,
    /// `k = ceil(T / g)`.
    span: u64,
    slots: Slots,
}

impl WindowState {
    fn new(window: &Window) -> Self {
        WindowState {
            length: window.length,
            buckets: window.buckets,
            bucket_ms: window.bucket_ms(),
            span: window.span(),
            slots: Slots::new(),
        }
    }

    fn is(&self, window: &Window) -> bool {
        self.length == window.length && self.buckets == window.buckets
    }

    /// Index of the bucket that holds a hit at `now_ms`.
    fn bucket_of(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms
    }

    /// Drop buckets that no longer count when the current bucket is
    /// `current`, and return the window's count.
    fn prune_and_count(&mut self, current: u64) -> u64 {
        let oldest = current.saturating_sub(self.span);
        let stale = self.slots.iter().take_while(|&&(i, _)| i < oldest).count();
        if stale > 0 {
            self.slots.drain(..stale);
        }
        self.slots.iter().map(|&(_, c)| c).sum()
    }

    fn add(&mut self, index: u64, cost: u64) {
        // Almost always the last bucket or a new one after it; a clock that
        // stepped back inserts in order.
        match self.slots.last_mut() {
            Some(last) if last.0 == index => {
                last.1 = last.1.saturating_add(cost);
                return;
            }
            Some(last) if last.0 < index => {
                self.slots.push((index, cost));
                return;
            }
            None => {
                self.slots.push((index, cost));
                return;
            }
            Some(_) => {}
        }
        match self.slots.iter().rposition(|&(i, _)| i <= index) {
            Some(p) if self.slots[p].0 == index => {
                self.slots[p].1 = self.slots[p].1.saturating_add(cost);
            }
            Some(p) => self.slots.insert(p + 1, (index, cost)),
            None => self.slots.insert(0, (index, cost)),
        }
    }

    fn remove(&mut self, index: u64, cost: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|(i, _)| *i == index) {
            slot.1 = slot.1.saturating_sub(cost);
        }
        self.slots.retain(|slot| slot.1 > 0);
    }
}

/// A key's identity in the maps: two foldhash values of it under
/// independent random seeds (see [`MemoryStore`] on collisions).
type Id = u128;

/// The maps are keyed by [`Id`]s, which are random already: hash them by
/// taking their low bits instead of hashing again.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u128/u64 keys; fold anything else in (FNV-1a).
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = DashMap<Id, V, BuildHasherDefault<IdHasher>>;

/// Everything the store keeps under one key: the windows of its counter
/// and its distinct set. A request whose distinct set and counter share a
/// key (the policy's recipient checks do) finds both in one map entry,
/// one cache miss instead of two.
#[derive(Debug)]
struct Entry {
    /// The logical key, for reports.
    key: Box<str>,
    /// The windows of the counter (minute and hour, typically, inline).
    windows: SmallVec<[WindowState; 2]>,
    /// Keyed hash of a distinct member → last seen (ms).
    members: Members,
}

impl Entry {
    fn new(key: &str) -> Self {
        Entry {
            key: key.into(),
            windows: SmallVec::new(),
            members: Members::default(),
        }
    }

    fn state(&mut self, window: &Window) -> &mut WindowState {
        let at = match self.windows.iter().position(|s| s.is(window)) {
            Some(at) => at,
            None => {
                self.windows.push(WindowState::new(window));
                self.windows.len() - 1
            }
        };
        &mut self.windows[at]
    }

    fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.members.is_empty()
    }
}

/// Members of a distinct set: a few inline (scanned; no pointer hop for the
/// typical small set), a hash map once the set grows.
#[derive(Debug)]
enum Members {
    Small(SmallVec<[(u64, u64); 4]>),
    Large(HashMap<u64, u64, BuildHasherDefault<IdHasher>>),
}

impl Default for Members {
    fn default() -> Self {
        Members::Small(SmallVec::new())
    }
}

/// Above this many members a set switches to a hash map.
const SMALL_SET: usize = 24;

impl Members {
    fn get_mut(&mut self, member: u64) -> Option<&mut u64> {
        match self {
            Members::Small(v) => v.iter_mut().find(|(m, _)| *m == member).map(|(_, s)| s),
            Members::Large(h) => h.get_mut(&member),
        }
    }

    fn len(&self) -> usize {
        match self {
            Members::Small(v) => v.len(),
            Members::Large(h) => h.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        match self {
            Members::Small(v) => v.retain(|slot| keep(slot.1)),
            Members::Large(h) => h.retain(|_, seen| keep(*seen)),
        }
    }

    /// Insert or replace.
    fn insert(&mut self, member: u64, seen: u64) {
        if let Some(s) = self.get_mut(member) {
            *s = seen;
            return;
        }
        match self {
            Members::Small(v) if v.len() < SMALL_SET => v.push((member, seen)),
            Members::Small(v) => {
                let mut h: HashMap<u64, u64, BuildHasherDefault<IdHasher>> = v.drain(..).collect();
                h.insert(member, seen);
                *self = Members::Large(h);
            }
            Members::Large(h) => {
                h.insert(member, seen);
            }
        }
    }

    fn remove(&mut self, member: u64) {
        match self {
            Members::Small(v) => v.retain(|slot| slot.0 != member),
            Members::Large(h) => {
                h.remove(&member);
            }
        }
    }
}

/// The in-memory [`CounterStore`]: a dashmap of counters and distinct sets
/// (one entry per key), one of blocks and one of lock records. Each key is
/// updated under its dashmap entry lock; a request touching several keys
/// rolls back its earlier counters when a later one refuses (so a racing
/// request may be refused conservatively, never admitted over a limit).
///
/// Memory grows with the number of keys; call [`purge`](MemoryStore::purge)
/// now and then to drop keys whose data no longer counts.
///
/// Counter, set and block keys are held as 128-bit ids (two foldhash
/// values under independent random per-store seeds), so a lookup never
/// chases a key string. Two keys sharing an id would share a counter and a
/// set, which only makes both stricter (their counts add up), never laxer;
/// by accident that happens with probability about `n² / 2¹²⁹`. Distinct
/// members are 64-bit *keyed SipHash* values instead: two members sharing
/// one would make the second look known (laxer), so there the hash must be
/// one an attacker cannot aim at without the store's random keys; the
/// chance is about `m² / 2⁶⁵` for a set of `m`.
#[derive(Default)]
pub struct MemoryStore {
    // foldhash, not SipHash: ids are computed once or twice per decision
    // and a collision can only make a limit stricter (see above).
    hash_hi: foldhash::fast::RandomState,
    hash_lo: foldhash::fast::RandomState,
    member_hash: RandomState,
    entries: IdMap<Entry>,
    blocks: IdMap<u64>,
    locks: DashMap<String, LockRecord>,
    journal: Option<Arc<dyn LockJournal>>,
}

/// Where a [`MemoryStore`] keeps its lock records across restarts, for a
/// single relay without Redis (the relay implements it, e.g. over a file
/// or an embedded database).
///
/// # Contract
/// `Send + Sync`. [`save`](LockJournal::save) is called on every change of
/// a lock record (a lock, an admin unlock), never on a decision, with the
/// record's key locked so saves of one key arrive in order; it returns once
/// the change is durable. An error fails the lock or unlock, which then
/// does not change the store either. [`load`](LockJournal::load) is called
/// once, by [`MemoryStore::with_lock_journal`].
pub trait LockJournal: Send + Sync {
    /// Every saved record.
    fn load(&self) -> Result<Vec<(String, LockRecord)>, StoreError>;
    /// Save `record` under `key`, or forget `key` (`None`).
    fn save(&self, key: &str, record: Option<&LockRecord>) -> Result<(), StoreError>;
}

/// Check every window of `counter` in `entry` and add its cost when all fit.
fn check_and_add_in(
    entry: &mut Entry,
    counter: &Counter<'_>,
    now_ms: u64,
) -> Option<(usize, u64, Duration)> {
    // Where the first windows' states are and their current buckets, found
    // once (a counter has one or two windows, rarely more).
    let mut found = [(usize::MAX, 0u64); 4];
    let windows = &mut entry.windows;
    for (wi, w) in counter.windows.iter().enumerate() {
        let at = match windows.iter().position(|s| s.is(w)) {
            Some(at) => at,
            None => {
                windows.push(WindowState::new(w));
                windows.len() - 1
            }
        };
        let Some(state) = windows.get_mut(at) else {
            continue;
        };
        let index = state.bucket_of(now_ms);
        let count = state.prune_and_count(index);
        if let Some(slot) = found.get_mut(wi) {
            *slot = (at, index);
        }
        if count.saturating_add(counter.cost) <= w.limit {
            continue;
        }
        if let Some(retry) = w.retry_after(state.slots.iter().copied(), counter.cost, now_ms) {
            return Some((wi, count, retry));
        }
    }
    for (wi, w) in counter.windows.iter().enumerate() {
        let (at, index) = match found.get(wi) {
            Some(&(at, index)) => (at, Some(index)),
            None => (
                windows.iter().position(|s| s.is(w)).unwrap_or(usize::MAX),
                None,
            ),
        };
        if let Some(state) = windows.get_mut(at) {
            let index = index.unwrap_or_else(|| state.bucket_of(now_ms));
            state.add(index, counter.cost);
        }
    }
    None
}

/// Whether two keys are equal, trying the pointers first (the policy
/// passes the same string for a set and its counter).
fn same_key(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.entries.len())
            .field("blocks", &self.blocks.len())
            .field("locks", &self.locks.len())
            .field("journal", &self.journal.is_some())
            .finish()
    }
}

/// How far the distinct step got, to undo it on refusal.
enum DistinctUndo {
    None,
    Inserted,
    Refreshed(u64),
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store whose lock records (and their history) survive restarts in
    /// `journal`: it starts with the journal's records and writes every
    /// change through. Counters and blocks still start empty.
    pub fn with_lock_journal(journal: Arc<dyn LockJournal>) -> Result<Self, StoreError> {
        let store = MemoryStore {
            journal: Some(journal.clone()),
            ..MemoryStore::default()
        };
        for (key, record) in journal.load()? {
            store.locks.insert(key, record);
        }
        Ok(store)
    }

    fn journal_save(&self, key: &str, record: Option<&LockRecord>) -> Result<(), StoreError> {
        match &self.journal {
            Some(j) => j.save(key, record),
            None => Ok(()),
        }
    }

    fn id(&self, key: &str) -> Id {
        (u128::from(self.hash_hi.hash_one(key)) << 64) | u128::from(self.hash_lo.hash_one(key))
    }

    fn member(&self, member: &str) -> u64 {
        self.member_hash.hash_one(member)
    }

    fn entry(&self, id: Id, key: &str) -> dashmap::mapref::one::RefMut<'_, Id, Entry> {
        self.entries.entry(id).or_insert_with(|| Entry::new(key))
    }

    /// Drop counters, distinct members and blocks that no longer count at
    /// `now` (lock records are kept: they are history).
    pub fn purge(&self, now: SystemTime) {
        let now_ms = to_ms(now);
        // A distinct set forgets a member after its window; the window is
        // per request, so keep members seen within a day (the longest sane one).
        let day = 86_400_000;
        self.entries.retain(|_, entry| {
            entry
                .windows
                .retain(|w| w.prune_and_count(w.bucket_of(now_ms)) > 0);
            entry
                .members
                .retain(|seen| seen.saturating_add(day) > now_ms);
            !entry.is_empty()
        });
        self.blocks.retain(|_, until| *until > now_ms);
    }

    fn apply(&self, counter: &Counter<'_>, now_ms: u64, sign_add: bool) {
        let mut entry = self.entry(self.id(counter.key), counter.key);
        for w in counter.windows {
            let state = entry.state(w);
            let index = state.bucket_of(now_ms);
            if sign_add {
                state.add(index, counter.cost);
            } else {
                state.remove(index, counter.cost);
            }
        }
    }

    /// Check every window of `counter` and add its cost when all fit.
    fn check_and_add(
        &self,
        id: Id,
        counter: &Counter<'_>,
        now_ms: u64,
    ) -> Option<(usize, u64, Duration)> {
        check_and_add_in(&mut self.entry(id, counter.key), counter, now_ms)
    }

    fn undo_distinct(&self, request: &Request<'_>, undo: DistinctUndo) {
        let Some(d) = request.distinct else { return };
        if let Some(mut entry) = self.entries.get_mut(&self.id(d.key)) {
            let member = self.member(d.member);
            match undo {
                DistinctUndo::None => {}
                DistinctUndo::Inserted => {
                    entry.members.remove(member);
                }
                DistinctUndo::Refreshed(seen) => {
                    entry.members.insert(member, seen);
                }
            }
        }
    }
}

impl CounterStore for MemoryStore {
    fn decide(&self, request: &Request<'_>, now: SystemTime) -> Result<Outcome, StoreError> {
        let now_ms = to_ms(now);
        for (index, key) in request.locks.iter().enumerate() {
            if let Some(record) = self.locks.get(*key)
                && record.in_effect(now)
            {
                return Ok(Outcome::Locked {
                    index,
                    record: record.clone(),
                });
            }
        }
        for (index, key) in request.blocks.iter().enumerate() {
            if let Some(until) = self.blocks.get(&self.id(key))
                && *until > now_ms
            {
                return Ok(Outcome::Blocked {
                    index,
                    until: from_ms(*until),
                });
            }
        }

        let mut undo = DistinctUndo::None;
        // The entry of the distinct key, still locked, for a counter of the
        // same key to use without a second lookup. Only one entry is ever
        // locked at a time (two in one shard would deadlock).
        let mut held = None;
        if let Some(d) = request.distinct {
            let member = self.member(d.member);
            let id = self.id(d.key);
            let mut entry = self.entry(id, d.key);
            let set = &mut entry.members;
            // A member counts while last seen within (now - window, now].
            let horizon = now_ms.saturating_sub(duration_ms(d.window));
            if let Some(seen) = set.get_mut(member).filter(|s| **s > horizon) {
                undo = DistinctUndo::Refreshed(*seen);
                *seen = now_ms.max(*seen);
            } else {
                // Only prune when the cap could bind, so a typical hit is O(1).
                if set.len() as u64 >= d.limit {
                    set.retain(|seen| seen > horizon);
                }
                let count = set.len() as u64;
                if count >= d.limit {
                    drop(entry);
                    for c in request.counters {
                        if c.counting == Counting::Strict {
                            self.apply(c, now_ms, true);
                        }
                    }
                    return Ok(Outcome::DistinctExceeded { count });
                }
                set.insert(member, now_ms);
                undo = DistinctUndo::Inserted;
            }
            held = Some((d.key, entry));
        }

        for (ci, counter) in request.counters.iter().enumerate() {
            let refused = match held.take() {
                Some((key, mut entry)) if same_key(key, counter.key) => {
                    check_and_add_in(&mut entry, counter, now_ms)
                }
                other => {
                    drop(other);
                    self.check_and_add(self.id(counter.key), counter, now_ms)
                }
            };
            if let Some((window, count, retry_after)) = refused {
                for (cj, c) in request.counters.iter().enumerate() {
                    match (cj < ci, c.counting) {
                        (true, Counting::Leaky) => self.apply(c, now_ms, false),
                        (false, Counting::Strict) => self.apply(c, now_ms, true),
                        _ => {}
                    }
                }
                self.undo_distinct(request, undo);
                return Ok(Outcome::Limited {
                    counter: ci,
                    window,
                    count,
                    retry_after,
                });
            }
        }
        Ok(Outcome::Admitted)
    }

    fn block(&self, key: &str, until: SystemTime, _now: SystemTime) -> Result<(), StoreError> {
        let until = to_ms(until);
        let mut entry = self.blocks.entry(self.id(key)).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    fn lock(
        &self,
        key: &str,
        lock_for: Duration,
        max_auto_unlocks: u32,
        reason: &str,
        now: SystemTime,
    ) -> Result<LockRecord, StoreError> {
        // The entry stays locked while the journal writes, so concurrent
        // locks of one key reach the journal in the order they apply.
        match self.locks.entry(key.to_owned()) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                let record = LockRecord::relock(
                    Some(e.get().clone()),
                    lock_for,
                    max_auto_unlocks,
                    reason,
                    now,
                );
                if record != *e.get() {
                    self.journal_save(key, Some(&record))?;
                    e.insert(record.clone());
                }
                Ok(record)
            }
            dashmap::mapref::entry::Entry::Vacant(e) => {
                let record = LockRecord::relock(None, lock_for, max_auto_unlocks, reason, now);
                self.journal_save(key, Some(&record))?;
                e.insert(record.clone());
                Ok(record)
            }
        }
    }

    fn unlock(&self, key: &str, forget_history: bool) -> Result<(), StoreError> {
        if forget_history {
            if let dashmap::mapref::entry::Entry::Occupied(e) = self.locks.entry(key.to_owned()) {
                self.journal_save(key, None)?;
                e.remove();
            }
        } else if let Some(mut r) = self.locks.get_mut(key) {
            let mut unlocked = r.clone();
            unlocked.state = LockState::Unlocked;
            self.journal_save(key, Some(&unlocked))?;
            *r = unlocked;
        }
        Ok(())
    }

    fn lock_record(&self, key: &str) -> Result<Option<LockRecord>, StoreError> {
        Ok(self.locks.get(key).map(|r| r.clone()))
    }

    fn locks(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        Ok(self
            .locks
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect())
    }

    fn counters(&self, now: SystemTime) -> Result<Vec<CounterSnapshot>, StoreError> {
        let now_ms = to_ms(now);
        let mut out = Vec::new();
        for mut entry in self.entries.iter_mut() {
            let entry = entry.value_mut();
            for w in &mut entry.windows {
                let count = w.prune_and_count(w.bucket_of(now_ms));
                if count > 0 {
                    out.push(CounterSnapshot {
                        key: entry.key.to_string(),
                        window: w.length,
                        count,
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Distinct;

    #[test]
    fn members_spill_to_a_map_and_keep_answers() {
        let mut m = Members::default();
        for i in 0..(SMALL_SET as u64 + 10) {
            m.insert(i, 100 + i);
        }
        assert!(matches!(m, Members::Large(_)));
        assert_eq!(m.len(), SMALL_SET + 10);
        assert_eq!(m.get_mut(3).copied(), Some(103));
        m.insert(3, 7);
        assert_eq!((m.get_mut(3).copied(), m.len()), (Some(7), SMALL_SET + 10));
        m.remove(4);
        assert_eq!(m.get_mut(4), None);
        m.retain(|seen| seen >= 120);
        assert_eq!(m.len(), SMALL_SET + 10 - 20);
    }

    #[test]
    fn a_large_distinct_set_caps_exactly() {
        let store = MemoryStore::new();
        let now = from_ms(1_767_225_600_000);
        let names: Vec<String> = (0..60).map(|i| format!("r{i}@example.org")).collect();
        let decide = |member: &str| {
            let req = Request {
                distinct: Some(Distinct {
                    key: "big",
                    member,
                    window: Duration::from_secs(86_400),
                    limit: 50,
                }),
                ..Request::default()
            };
            store.decide(&req, now).unwrap()
        };
        for n in &names[..50] {
            assert_eq!(decide(n), Outcome::Admitted);
        }
        assert_eq!(decide(&names[50]), Outcome::DistinctExceeded { count: 50 });
        assert_eq!(decide(&names[7]), Outcome::Admitted, "a known member");
    }
}
