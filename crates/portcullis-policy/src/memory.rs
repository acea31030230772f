//! [`MemoryStore`]: the in-process [`CounterStore`] (dashmap), for a single
//! relay. Nothing survives a restart; use the Redis store for that.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::store::{
    Counter, CounterSnapshot, CounterStore, Counting, LockRecord, LockState, Outcome, Request,
    StoreError, Window, duration_ms, from_ms, to_ms,
};

/// Live buckets of a window. A few stay inline (a typical counter has
/// traffic in few buckets at once), saving a pointer hop per lookup.
type Slots = SmallVec<[(u64, u64); 4]>;

/// One window of one counter: non-empty buckets `(index, count)`, by index.
#[derive(Debug)]
struct WindowState {
    window: Window,
    slots: Slots,
}

impl WindowState {
    /// Drop buckets that no longer count and return the window's count.
    fn prune_and_count(&mut self, now_ms: u64) -> u64 {
        let oldest = self.window.oldest_counted(now_ms);
        let stale = self.slots.iter().take_while(|&&(i, _)| i < oldest).count();
        if stale > 0 {
            self.slots.drain(..stale);
        }
        self.slots.iter().map(|&(_, c)| c).sum()
    }

    fn add(&mut self, index: u64, cost: u64) {
        // Almost always the last bucket or a new one after it; a clock that
        // stepped back inserts in order.
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

/// A key's identity in the maps: two independent keyed SipHash values of
/// it (see [`MemoryStore`] on collisions).
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

#[derive(Debug, Default)]
struct CounterEntry {
    /// The logical key, for reports.
    key: Box<str>,
    /// The first two windows (minute and hour, typically) live inline in
    /// the map's table, one pointer hop less than a `Vec`.
    inline: [Option<WindowState>; 2],
    more: Vec<WindowState>,
}

impl CounterEntry {
    fn windows_mut(&mut self) -> impl Iterator<Item = &mut WindowState> {
        self.inline.iter_mut().flatten().chain(self.more.iter_mut())
    }

    fn is_empty(&self) -> bool {
        self.inline.iter().all(Option::is_none) && self.more.is_empty()
    }

    fn state(&mut self, window: &Window) -> &mut WindowState {
        // Windows are keyed by geometry only: the limit is a property of
        // the request, so changing a limit keeps the history.
        let same = |s: &WindowState| {
            s.window.length == window.length && s.window.buckets == window.buckets
        };
        let fresh = || WindowState {
            window: *window,
            slots: Slots::new(),
        };
        let inline_at = self
            .inline
            .iter()
            .position(|s| s.as_ref().is_some_and(same))
            .or_else(|| {
                if self.more.iter().any(same) {
                    None
                } else {
                    self.inline.iter().position(Option::is_none)
                }
            });
        let state = match inline_at {
            Some(i) => self.inline[i].get_or_insert_with(fresh),
            None => {
                let at = match self.more.iter().position(same) {
                    Some(at) => at,
                    None => {
                        self.more.push(fresh());
                        self.more.len() - 1
                    }
                };
                &mut self.more[at]
            }
        };
        state.window.limit = window.limit;
        state
    }
}

#[derive(Debug, Default)]
struct DistinctEntry {
    /// Keyed hash of the member → last seen (ms).
    members: Members,
}

/// Members of a distinct set: a few inline (scanned; no pointer hop for the
/// typical small set), a hash map once the set grows.
#[derive(Debug)]
enum Members {
    Small(SmallVec<[(u64, u64); 6]>),
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

/// The in-memory [`CounterStore`]: dashmap maps of counters, distinct sets,
/// blocks and lock records. Each key is updated under its dashmap entry
/// lock; a request touching several keys rolls back its earlier counters
/// when a later one refuses (so a racing request may be refused
/// conservatively, never admitted over a limit).
///
/// Memory grows with the number of keys; call [`purge`](MemoryStore::purge)
/// now and then to drop keys whose data no longer counts.
///
/// Counter, set and block keys are held as 128-bit keyed hashes (two
/// SipHash-1-3 values under random per-store keys), and distinct members
/// as 64-bit ones, so a lookup never chases a key string. Two keys could
/// only share a counter with probability about `n² / 2¹²⁹` (a shared
/// counter is stricter, never laxer); two members of one set collide with
/// probability about `m² / 2⁶⁵`, and an attacker cannot aim for it without
/// the store's random keys.
#[derive(Debug, Default)]
pub struct MemoryStore {
    hash_hi: RandomState,
    hash_lo: RandomState,
    counters: IdMap<CounterEntry>,
    distinct: IdMap<DistinctEntry>,
    blocks: IdMap<u64>,
    locks: DashMap<String, LockRecord>,
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

    fn id(&self, key: &str) -> Id {
        (u128::from(self.hash_hi.hash_one(key)) << 64) | u128::from(self.hash_lo.hash_one(key))
    }

    fn member(&self, member: &str) -> u64 {
        self.hash_lo.hash_one(("member", member))
    }

    fn counter_entry(&self, key: &str) -> dashmap::mapref::one::RefMut<'_, Id, CounterEntry> {
        self.counters
            .entry(self.id(key))
            .or_insert_with(|| CounterEntry {
                key: key.into(),
                inline: [None, None],
                more: Vec::new(),
            })
    }

    /// Drop counters, distinct members and blocks that no longer count at
    /// `now` (lock records are kept: they are history).
    pub fn purge(&self, now: SystemTime) {
        let now_ms = to_ms(now);
        self.counters.retain(|_, entry| {
            for slot in &mut entry.inline {
                if slot
                    .as_mut()
                    .is_some_and(|w| w.prune_and_count(now_ms) == 0)
                {
                    *slot = None;
                }
            }
            entry.more.retain_mut(|w| w.prune_and_count(now_ms) > 0);
            !entry.is_empty()
        });
        self.blocks.retain(|_, until| *until > now_ms);
        // A distinct set forgets a member after its window; the window is
        // per request, so keep sets seen within a day (the longest sane one).
        let day = 86_400_000;
        self.distinct.retain(|_, d| {
            d.members.retain(|seen| seen.saturating_add(day) > now_ms);
            !d.members.is_empty()
        });
    }

    fn apply(&self, counter: &Counter<'_>, now_ms: u64, sign_add: bool) {
        let mut entry = self.counter_entry(counter.key);
        for w in counter.windows {
            let state = entry.state(w);
            let index = w.bucket_of(now_ms);
            if sign_add {
                state.add(index, counter.cost);
            } else {
                state.remove(index, counter.cost);
            }
        }
    }

    /// Check every window of `counter` and add its cost when all fit.
    fn check_and_add(&self, counter: &Counter<'_>, now_ms: u64) -> Option<(usize, u64, Duration)> {
        let mut entry = self.counter_entry(counter.key);
        for (wi, w) in counter.windows.iter().enumerate() {
            let state = entry.state(w);
            let count = state.prune_and_count(now_ms);
            if count.saturating_add(counter.cost) <= w.limit {
                continue;
            }
            if let Some(retry) = w.retry_after(state.slots.iter().copied(), counter.cost, now_ms) {
                return Some((wi, count, retry));
            }
        }
        for w in counter.windows {
            entry.state(w).add(w.bucket_of(now_ms), counter.cost);
        }
        None
    }

    fn undo_distinct(&self, request: &Request<'_>, undo: DistinctUndo) {
        let Some(d) = request.distinct else { return };
        if let Some(mut set) = self.distinct.get_mut(&self.id(d.key)) {
            let member = self.member(d.member);
            match undo {
                DistinctUndo::None => {}
                DistinctUndo::Inserted => {
                    set.members.remove(member);
                }
                DistinctUndo::Refreshed(seen) => {
                    set.members.insert(member, seen);
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
        if let Some(d) = request.distinct {
            let member = self.member(d.member);
            let mut set = self.distinct.entry(self.id(d.key)).or_default();
            // A member counts while last seen within (now - window, now].
            let horizon = now_ms.saturating_sub(duration_ms(d.window));
            if let Some(seen) = set.members.get_mut(member).filter(|s| **s > horizon) {
                undo = DistinctUndo::Refreshed(*seen);
                *seen = now_ms.max(*seen);
            } else {
                // Only prune when the cap could bind, so a typical hit is O(1).
                if set.members.len() as u64 >= d.limit {
                    set.members.retain(|seen| seen > horizon);
                }
                let count = set.members.len() as u64;
                if count >= d.limit {
                    drop(set);
                    for c in request.counters {
                        if c.counting == Counting::Strict {
                            self.apply(c, now_ms, true);
                        }
                    }
                    return Ok(Outcome::DistinctExceeded { count });
                }
                set.members.insert(member, now_ms);
                undo = DistinctUndo::Inserted;
            }
        }

        for (ci, counter) in request.counters.iter().enumerate() {
            if let Some((window, count, retry_after)) = self.check_and_add(counter, now_ms) {
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
        let mut entry = self.locks.entry(key.to_owned()).or_insert(LockRecord {
            times_locked: 0,
            state: LockState::Unlocked,
            reason: String::new(),
            since: now,
        });
        let record =
            LockRecord::relock(Some(entry.clone()), lock_for, max_auto_unlocks, reason, now);
        *entry = record.clone();
        Ok(record)
    }

    fn unlock(&self, key: &str, forget_history: bool) -> Result<(), StoreError> {
        if forget_history {
            self.locks.remove(key);
        } else if let Some(mut r) = self.locks.get_mut(key) {
            r.state = LockState::Unlocked;
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
        for mut entry in self.counters.iter_mut() {
            let entry = entry.value_mut();
            let key = entry.key.to_string();
            for w in entry.windows_mut() {
                let count = w.prune_and_count(now_ms);
                if count > 0 {
                    out.push(CounterSnapshot {
                        key: key.clone(),
                        window: w.window.length,
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
