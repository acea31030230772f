//! [`RedisCounterStore`]: the policy [`CounterStore`] in Redis, so a fleet
//! of relays shares one set of counters, blocks and abuse locks (which
//! survive restarts of the relays).
//!
//! Every [`decide`](CounterStore::decide) is **one round trip**: a Lua
//! script (`EVALSHA`, loaded on first use) that checks the locks, the
//! blocks, the distinct set and every window, then counts — atomically,
//! since Redis runs a script alone. The window arithmetic is the one
//! `portcullis_policy::store` documents, so both stores give the same
//! answers (one contract suite runs against both).
//!
//! Keys (all after the pool's prefix):
//!
//! | key | type | holds | TTL |
//! |---|---|---|---|
//! | `w:{key}` | string | every window of the counter, packed (below) | `(k + 2)·g` of its longest window, from the last write |
//! | `d:{key}` | sorted set | member → last seen (ms) | the window |
//! | `b:{key}` | string | block end (ms) | until the block ends |
//! | `l:{key}` | hash | `active`, `until` (0 = permanent), `times`, `since`, `reason` | none |
//!
//! A counter's windows share one string, so a decision reads and writes one
//! key per counter, whatever the bucket count: per window a header of six
//! little-endian doubles (`T` in ms, buckets, bucket width `g`, span `k`,
//! `n`, the total of the `n` buckets) and `n` (bucket index, count) pairs of
//! doubles, oldest first. A decision parses only the headers, the stale
//! pairs at the front and the last pair (Redis Lua's `struct`) and copies
//! the live pairs between as bytes: the copies, and the Lua garbage they
//! leave, are what still grows with the live buckets. Counts and bucket
//! indexes are whole numbers below 2⁵³, exact in a double.
//!
//! The usual request (no lock, one counter of one or two windows) runs a
//! straight-line script, `DECIDE_ONE`; anything it does not handle (a
//! refusal by a counter, a clock that stepped back, …) it hands to the
//! general `DECIDE` before writing anything, at the cost of a second round
//! trip. Both keep exactly the memory store's state, pruned windows
//! included, so the two stores agree even when the clock steps back.
//!
//! This layout replaced one hash per window (`c:{T_ms}:{buckets}:{key}`,
//! one field per bucket): keys of that layout are no longer read and
//! expire by their TTL.
//!
//! Times are the caller's `now` (ms since the epoch), stored in the values;
//! TTLs only collect garbage, so relays must keep their clocks in sync.
//! All keys of one request must live on one node (no Redis Cluster
//! slot routing is attempted).

use std::time::{Duration, SystemTime};

use portcullis_policy::store::{duration_ms, from_ms, to_ms};
use portcullis_policy::{
    Counter, CounterSnapshot, CounterStore, Counting, LockRecord, LockState, Outcome, Request,
    StoreError,
};
use redis::Value;

use crate::connection::RedisPool;

/// One decision. `ARGV[1]` holds every number of the request as
/// little-endian doubles (one `struct.unpack`, where `tonumber` on each
/// argument would cost a `strtod`): `now`, #locks, #blocks, distinct (0/1),
/// [set window ms, set limit], #counters, then per counter cost, strict
/// (0/1), #windows and per window `T` ms, buckets, `g`, `k`, limit.
/// `ARGV[2]` is the distinct member, `ARGV[3]` `now` and `ARGV[4]` the set
/// window in decimal, `ARGV[4 + c]` counter `c`'s TTL (`(k + 2)·g` of its
/// longest window) in decimal: ready strings for commands, since a number
/// formatted in Lua costs a `sprintf`. `KEYS`: locks, blocks, [the set],
/// one key per counter.
///
/// A counter is one string: per window a header of doubles (`T` ms,
/// buckets, `g`, `k`, `n`, total of the `n` buckets) and `n` (bucket,
/// count) pairs of doubles, buckets ascending. A decision reads the
/// headers, the stale pairs at the front and the last pair; the live pairs
/// between are copied once as bytes, never parsed.
const DECIDE: &str = r#"
local nums = ARGV[1]
local N = {struct.unpack('<' .. string.rep('d', #nums / 8), nums)}
local now, nl, nb, nd = N[1], N[2], N[3], N[4]
local ki, ni = 1, 5
for i = 1, nl do
  local r = redis.call('HMGET', KEYS[ki], 'active', 'until', 'times', 'since', 'reason')
  if r[1] == '1' then
    local u = tonumber(r[2]) or 0
    if u == 0 or u > now then return {1, i - 1, r[3], r[2], r[4], r[5]} end
  end
  ki = ki + 1
end
for i = 1, nb do
  local u = tonumber(redis.call('GET', KEYS[ki]) or '0') or 0
  if u > now then return {2, i - 1, u} end
  ki = ki + 1
end
local refused = nil
local dkey, dmember, dwin = nil, nil, 0
if nd == 1 then
  dkey = KEYS[ki]; ki = ki + 1
  dmember = ARGV[2]; dwin = N[ni]; local dlimit = N[ni + 1]; ni = ni + 2
  -- a member counts while last seen within (now - window, now]
  local seen = tonumber(redis.call('ZSCORE', dkey, dmember) or '0') or 0
  if seen <= now - dwin then
    local card = redis.call('ZCARD', dkey)
    -- prune only when the cap could bind, as the memory store does
    if card >= dlimit then
      redis.call('ZREMRANGEBYSCORE', dkey, '-inf', string.format('%.0f', now - dwin))
      card = redis.call('ZCARD', dkey)
      if card >= dlimit then refused = {3, card} end
    end
  end
end

local HDR, PAIR = '<dddddd', '<dd'
local nc = N[ni]
local cbase, kbase = ni + 1, ki
-- the stored window (T, b) of raw: its first pair, last byte and total
local function block(raw, t, b)
  local pos, len = 1, #raw
  while pos + 47 <= len do
    local bt, bb, g, k, n, total, p = struct.unpack(HDR, raw, pos)
    if bt == t and bb == b then return p, p + 16 * n - 1, total end
    pos = p + 16 * n
  end
  return nil
end
local raws = {}
local function stored(key)
  local raw = raws[key]
  if raw == nil then raw = redis.call('GET', key) or ''; raws[key] = raw end
  return raw
end
-- counters whose units count: admitted ones so far, or (refused) strict ones
local counts = {}
-- checked windows: key, T, b, first live pair, count; keys that lost pairs
local P, dropped = {}, {}
-- units the counting counters before `upto` add to window (T, b) of key
local function added(upto, key, t, b)
  local sum, a, kj = 0, cbase, kbase
  for j = 1, upto - 1 do
    local nw = N[a + 2]
    if counts[j] and KEYS[kj] == key then
      for o = a + 3, a + 3 + 5 * (nw - 1), 5 do
        if N[o] == t and N[o + 1] == b then sum = sum + N[a] end
      end
    end
    a = a + 3 + 5 * nw; kj = kj + 1
  end
  return sum
end
if refused == nil then
  -- each counter sees the ones before it, as in the memory store
  local a, kj = cbase, kbase
  for c = 1, nc do
    local key, cost, nw = KEYS[kj], N[a], N[a + 2]
    local raw = stored(key)
    for w = 0, nw - 1 do
      local o = a + 3 + 5 * w
      local t, b, g, k, limit = N[o], N[o + 1], N[o + 2], N[o + 3], N[o + 4]
      local cur = math.floor(now / g)
      local from, to, total = block(raw, t, b)
      if from == nil then from, to, total = 1, 0, 0 end
      -- drop the buckets before cur - k (kept dropped, as the memory
      -- store does, even when nothing is added: with a clock that steps
      -- back, what was dropped must stay dropped)
      local from0 = from
      while from <= to do
        local idx, cnt = struct.unpack(PAIR, raw, from)
        if idx >= cur - k then break end
        total = total - cnt; from = from + 16
      end
      P[#P + 1] = key; P[#P + 1] = t; P[#P + 1] = b; P[#P + 1] = from; P[#P + 1] = total
      if from > from0 then dropped[key] = true end
      local extra = 0
      if c > 1 then extra = added(c, key, t, b) end
      total = total + extra
      if total + cost > limit then
        -- bucket j stops counting at (j + k + 1) * g
        local retry = t
        if cost <= limit then
          local left, placed, p = total, extra == 0, from
          while true do
            local idx, cnt
            if p <= to then idx, cnt = struct.unpack(PAIR, raw, p) end
            if not placed and (idx == nil or idx >= cur) then
              if idx == cur then cnt = cnt + extra; p = p + 16 else idx, cnt = cur, extra end
              placed = true
            elseif idx == nil then break
            else p = p + 16 end
            left = left - cnt
            if left + cost <= limit then retry = math.max((idx + k + 1) * g - now, 1); break end
          end
        end
        refused = {4, c - 1, w, total, retry}
        break
      end
    end
    if refused ~= nil then break end
    counts[c] = true
    a = a + 3 + 5 * nw; kj = kj + 1
  end
end
if refused ~= nil then
  -- nothing admitted: only strict counters count
  local a = cbase
  for c = 1, nc do
    counts[c] = N[a + 1] == 1
    a = a + 3 + 5 * N[a + 2]
  end
end

-- Write every key a counting counter adds to, or whose check dropped
-- pairs: per window, keep what the check kept (windows not checked keep
-- everything), then add to the last pair or append one.
local parts, ttl = {}, 0
local function emit(t, b, g, k, raw, from, to, total, add)
  local cur = math.floor(now / g)
  local n = (to - from + 1) / 16
  local last = ''
  if add > 0 then
    total = total + add
    local idx, cnt = -1, 0
    if to >= from then idx, cnt = struct.unpack(PAIR, raw, to - 15) end
    if idx == cur then
      to = to - 16; last = struct.pack(PAIR, cur, cnt + add)
    elseif idx < cur then
      n = n + 1; last = struct.pack(PAIR, cur, add)
    else
      -- the clock stepped back: insert in order
      local out, done = {}, false
      for p = from, to, 16 do
        local i2, c2 = struct.unpack(PAIR, raw, p)
        if not done and i2 >= cur then
          if i2 == cur then c2 = c2 + add else out[#out + 1] = struct.pack(PAIR, cur, add); n = n + 1 end
          done = true
        end
        out[#out + 1] = struct.pack(PAIR, i2, c2)
      end
      from, to, last = 1, 0, table.concat(out)
    end
  end
  if n > 0 then
    parts[#parts + 1] = struct.pack(HDR, t, b, g, k, n, total)
    if to >= from then parts[#parts + 1] = string.sub(raw, from, to) end
    parts[#parts + 1] = last
    -- the data stops counting (k + 1) buckets after the newest one
    if (k + 2) * g > ttl then ttl = (k + 2) * g end
  end
end
local written = {}
local a0, k0 = cbase, kbase
for c = 1, nc do
  local key = KEYS[k0]
  if (counts[c] or dropped[key]) and not written[key] then
    written[key] = true
    local raw = stored(key)
    parts, ttl = {}, 0
    local have = {}
    local pos, len = 1, #raw
    while pos + 47 <= len do
      local t, b, g, k, n, total, p = struct.unpack(HDR, raw, pos)
      have[#have + 1] = t; have[#have + 1] = b
      local from = p
      for r = #P - 4, 1, -5 do
        -- the last check of this window (a later one of the same window
        -- at the same instant keeps the same pairs)
        if P[r] == key and P[r + 1] == t and P[r + 2] == b then from, total = P[r + 3], P[r + 4]; break end
      end
      emit(t, b, g, k, raw, from, p + 16 * n - 1, total, added(nc + 1, key, t, b))
      pos = p + 16 * n
    end
    -- windows not stored yet (each once); the longest TTL the counters
    -- of this key asked for, as a ready string (formatting numbers in
    -- Lua costs a sprintf)
    local a, kj, asked, asked_s = cbase, kbase, -1, nil
    for j = 1, nc do
      local nw = N[a + 2]
      if KEYS[kj] == key and counts[j] then
        local life = 0
        for o = a + 3, a + 3 + 5 * (nw - 1), 5 do
          local t, b, g, k = N[o], N[o + 1], N[o + 2], N[o + 3]
          if (k + 2) * g > life then life = (k + 2) * g end
          local known = false
          for h = 1, #have, 2 do
            if have[h] == t and have[h + 1] == b then known = true; break end
          end
          if not known then
            have[#have + 1] = t; have[#have + 1] = b
            emit(t, b, g, k, '', 1, 0, 0, added(nc + 1, key, t, b))
          end
        end
        if life > asked then asked, asked_s = life, ARGV[4 + j] end
      elseif KEYS[kj] == key and asked < 0 then
        -- a key written for its dropped pairs only: its checked windows' TTL
        asked_s = ARGV[4 + j]
        for o = a + 3, a + 3 + 5 * (nw - 1), 5 do
          if (N[o + 3] + 2) * N[o + 2] > asked then asked = (N[o + 3] + 2) * N[o + 2] end
        end
      end
      a = a + 3 + 5 * nw; kj = kj + 1
    end
    local value = table.concat(parts)
    if value == '' then
      redis.call('DEL', key)
    else
      if ttl > asked then asked_s = string.format('%.0f', ttl) end
      redis.call('SET', key, value, 'PX', asked_s)
    end
  end
  a0 = a0 + 3 + 5 * N[a0 + 2]; k0 = k0 + 1
end
if refused ~= nil then return refused end
if dkey then
  redis.call('ZADD', dkey, 'GT', ARGV[3], dmember)
  redis.call('PEXPIRE', dkey, ARGV[4])
end
return {0}
"#;

/// The usual decision, straight-line: no lock, one counter of one or two
/// windows, at most the stored windows it asks for. `ARGV[1]`: 18 doubles
/// `now`, #blocks, distinct (0/1), set window ms, set limit, cost, strict,
/// #windows, then `T` ms, buckets, `g`, `k`, limit of window 1 and of window
/// 2 (zeros when absent). `ARGV[2..=5]`: member, `now`, set window and TTL
/// in decimal. `KEYS`: blocks, [the set], the counter.
///
/// Whatever it does not handle (a refusal by the counter, a strict
/// counter after a distinct refusal, another stored window, a clock that
/// stepped back) it answers `{9}` before writing anything, and the caller
/// runs [`DECIDE`]. Same layout, same arithmetic.
const DECIDE_ONE: &str = r#"
local now, nb, nd, dwin, dlimit, cost, strict, nw, t1, b1, g1, k1, l1, t2, b2, g2, k2, l2 =
  struct.unpack('<dddddddddddddddddd', ARGV[1])
local ki = 1
for i = 1, nb do
  local u = tonumber(redis.call('GET', KEYS[ki]) or '0') or 0
  if u > now then return {2, i - 1, u} end
  ki = ki + 1
end
local dkey = nil
if nd == 1 then
  dkey = KEYS[ki]; ki = ki + 1
  -- a member counts while last seen within (now - window, now]
  local seen = tonumber(redis.call('ZSCORE', dkey, ARGV[2]) or '0') or 0
  if seen <= now - dwin then
    local card = redis.call('ZCARD', dkey)
    -- prune only when the cap could bind, as the memory store does
    if card >= dlimit then
      redis.call('ZREMRANGEBYSCORE', dkey, '-inf', string.format('%.0f', now - dwin))
      card = redis.call('ZCARD', dkey)
      if card >= dlimit then
        if strict == 1 then return {9} end
        return {3, card}
      end
    end
  end
end
local HDR, PAIR = '<dddddd', '<dd'
local key = KEYS[ki]
local raw = redis.call('GET', key) or ''
if nw == 2 and t1 == t2 and b1 == b2 then return {9} end
local p1, e1, s1, p2, e2, s2
local pos, len = 1, #raw
while pos + 47 <= len do
  local t, b, g, k, n, total, p = struct.unpack(HDR, raw, pos)
  pos = p + 16 * n
  if t == t1 and b == b1 then p1, e1, s1 = p, pos - 1, total
  elseif nw == 2 and t == t2 and b == b2 then p2, e2, s2 = p, pos - 1, total
  else return {9} end
end
if p1 == nil then p1, e1, s1 = 1, 0, 0 end
if p2 == nil then p2, e2, s2 = 1, 0, 0 end
-- drop the buckets before cur - k; refuse (via DECIDE) when over a limit
local c1 = math.floor(now / g1)
while p1 <= e1 do
  local idx, cnt = struct.unpack(PAIR, raw, p1)
  if idx >= c1 - k1 then break end
  s1 = s1 - cnt; p1 = p1 + 16
end
if s1 + cost > l1 then return {9} end
local c2 = 0
if nw == 2 then
  c2 = math.floor(now / g2)
  while p2 <= e2 do
    local idx, cnt = struct.unpack(PAIR, raw, p2)
    if idx >= c2 - k2 then break end
    s2 = s2 - cnt; p2 = p2 + 16
  end
  if s2 + cost > l2 then return {9} end
end
-- add to the last pair or append one
local n1, last1 = (e1 - p1 + 1) / 16, nil
if e1 >= p1 then
  local idx, cnt = struct.unpack(PAIR, raw, e1 - 15)
  if idx == c1 then e1 = e1 - 16; last1 = struct.pack(PAIR, c1, cnt + cost)
  elseif idx < c1 then n1 = n1 + 1; last1 = struct.pack(PAIR, c1, cost)
  else return {9} end
else
  n1, last1 = 1, struct.pack(PAIR, c1, cost)
end
local hdr2, body2, last2 = '', '', ''
if nw == 2 then
  local n2 = (e2 - p2 + 1) / 16
  if e2 >= p2 then
    local idx, cnt = struct.unpack(PAIR, raw, e2 - 15)
    if idx == c2 then e2 = e2 - 16; last2 = struct.pack(PAIR, c2, cnt + cost)
    elseif idx < c2 then n2 = n2 + 1; last2 = struct.pack(PAIR, c2, cost)
    else return {9} end
  else
    n2, last2 = 1, struct.pack(PAIR, c2, cost)
  end
  hdr2, body2 = struct.pack(HDR, t2, b2, g2, k2, n2, s2 + cost), string.sub(raw, p2, e2)
end
-- one concatenation: every long string a script makes costs its length
-- again in Lua garbage collection
redis.call('SET', key, struct.pack(HDR, t1, b1, g1, k1, n1, s1 + cost) .. string.sub(raw, p1, e1) .. last1 .. hdr2 .. body2 .. last2, 'PX', ARGV[5])
if dkey then
  redis.call('ZADD', dkey, 'GT', ARGV[3], ARGV[2])
  redis.call('PEXPIRE', dkey, ARGV[4])
end
return {0}
"#;

const BLOCK: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
"#;

const LOCK: &str = r#"
local now, lock_ms, max_auto = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'active', 'until', 'times', 'since', 'reason')
local times = tonumber(r[3]) or 0
if r[1] == '1' then
  local u = tonumber(r[2]) or 0
  if u == 0 or u > now then return {times, r[2], r[4], r[5]} end
end
times = times + 1
local u = '0'
if times <= max_auto then u = string.format('%.0f', now + lock_ms) end
redis.call('HSET', KEYS[1], 'active', '1', 'until', u, 'times', times, 'since', ARGV[1], 'reason', ARGV[4])
return {times, u, ARGV[1], ARGV[4]}
"#;

const UNLOCK: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'active', '0') end
return 1
"#;

/// The Redis [`CounterStore`]. Cheap to share (`Arc`); connections come
/// from its [`RedisPool`], one per concurrent caller.
pub struct RedisCounterStore {
    pool: RedisPool,
    decide: redis::Script,
    decide_one: redis::Script,
    block: redis::Script,
    lock: redis::Script,
    unlock: redis::Script,
}

impl std::fmt::Debug for RedisCounterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounterStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn malformed(what: &str) -> StoreError {
    StoreError::Malformed(what.to_owned())
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).and_then(|i| u64::try_from(i).ok())
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Nil => Some(String::new()),
        _ => None,
    }
}

/// A lock record from its `active`, `until`, `times`, `since`, `reason` fields.
fn lock_from_fields(fields: &[Value]) -> Option<LockRecord> {
    let [active, until, times, since, reason] = fields else {
        return None;
    };
    if matches!(times, Value::Nil) {
        return None;
    }
    let active = as_string(active)? == "1";
    let until = as_u64(until).unwrap_or(0);
    let state = match (active, until) {
        (false, _) => LockState::Unlocked,
        (true, 0) => LockState::Permanent,
        (true, t) => LockState::Until(from_ms(t)),
    };
    Some(LockRecord {
        times_locked: u32::try_from(as_u64(times)?).ok()?,
        state,
        reason: as_string(reason)?,
        since: from_ms(as_u64(since).unwrap_or(0)),
    })
}

/// `(T ms, count at now)` of every window of a counter value (the layout the
/// `DECIDE` script writes: per window six little-endian doubles `T`,
/// buckets, `g`, `k`, `n`, total, then `n` (bucket, count) pairs).
fn window_counts(value: &[u8], now_ms: u64) -> Vec<(u64, u64)> {
    let doubles: Vec<f64> = value
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_le_bytes(b)
        })
        .collect();
    let mut out = Vec::new();
    let mut rest = doubles.as_slice();
    while let [t, _buckets, g, k, n, _total, tail @ ..] = rest {
        // Whole numbers below 2^53, as the script stores them.
        let (g, k) = ((*g as u64).max(1), *k as u64);
        let n = (*n as usize).min(tail.len() / 2);
        let oldest = (now_ms / g).saturating_sub(k);
        let (pairs, next) = tail.split_at(2 * n);
        let count = pairs
            .chunks_exact(2)
            .filter(|p| p[0] as u64 >= oldest)
            .map(|p| p[1] as u64)
            .sum();
        out.push((*t as u64, count));
        rest = next;
    }
    out
}

/// Escape a prefix for a `SCAN MATCH` glob.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

impl RedisCounterStore {
    /// A store over `pool` (whose prefix starts every key).
    pub fn new(pool: RedisPool) -> Self {
        RedisCounterStore {
            pool,
            decide: redis::Script::new(DECIDE),
            decide_one: redis::Script::new(DECIDE_ONE),
            block: redis::Script::new(BLOCK),
            lock: redis::Script::new(LOCK),
            unlock: redis::Script::new(UNLOCK),
        }
    }

    /// Connect to `url` with key `prefix` (e.g. `portcullis:`).
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(RedisCounterStore::new(
            RedisPool::new(url, prefix).map_err(unavailable)?,
        ))
    }

    /// The connection pool.
    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    fn counter_key(&self, key: &str) -> String {
        self.pool.key(&format!("w:{key}"))
    }

    fn scan(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}{kind}*", glob_escape(self.pool.prefix()));
        self.pool
            .with(|c| {
                let iter: redis::Iter<'_, String> = redis::cmd("SCAN")
                    .cursor_arg(0)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .clone()
                    .iter(c)?;
                iter.collect::<redis::RedisResult<Vec<String>>>()
            })
            .map_err(unavailable)
    }

    /// The usual request through [`DECIDE_ONE`]; `None` when that script
    /// leaves it to [`DECIDE`] (it then wrote nothing).
    fn decide_one(
        &self,
        request: &Request<'_>,
        counter: &Counter<'_>,
        now: SystemTime,
    ) -> Result<Option<Outcome>, StoreError> {
        let mut nums = [0f64; 18];
        nums[0] = to_ms(now) as f64;
        nums[1] = request.blocks.len() as f64;
        if let Some(d) = &request.distinct {
            nums[2] = 1.0;
            nums[3] = duration_ms(d.window) as f64;
            nums[4] = d.limit as f64;
        }
        nums[5] = counter.cost as f64;
        nums[6] = f64::from(u8::from(counter.counting == Counting::Strict));
        nums[7] = counter.windows.len() as f64;
        for (slot, w) in nums[8..].chunks_exact_mut(5).zip(counter.windows) {
            slot.copy_from_slice(&[
                w.length_ms() as f64,
                f64::from(w.buckets),
                w.bucket_ms() as f64,
                w.span() as f64,
                w.limit as f64,
            ]);
        }
        let packed: Vec<u8> = nums.iter().flat_map(|n| n.to_le_bytes()).collect();
        let life = counter
            .windows
            .iter()
            .map(|w| w.span().saturating_add(2).saturating_mul(w.bucket_ms()))
            .max()
            .unwrap_or(0);
        let mut inv = self.decide_one.prepare_invoke();
        inv.arg(packed)
            .arg(request.distinct.as_ref().map_or("", |d| d.member))
            .arg(to_ms(now))
            .arg(
                request
                    .distinct
                    .as_ref()
                    .map_or(0, |d| duration_ms(d.window)),
            )
            .arg(life);
        for key in request.blocks {
            inv.key(self.pool.key(&format!("b:{key}")));
        }
        if let Some(d) = &request.distinct {
            inv.key(self.pool.key(&format!("d:{}", d.key)));
        }
        inv.key(self.counter_key(counter.key));
        let value: Value = self
            .pool
            .with(|conn| inv.invoke(conn))
            .map_err(unavailable)?;
        if let Value::Array(items) = &value
            && items.first().and_then(as_u64) == Some(9)
        {
            return Ok(None);
        }
        self.parse_outcome(&value).map(Some)
    }

    /// Any request, through [`DECIDE`].
    fn decide_any(&self, request: &Request<'_>, now: SystemTime) -> Result<Outcome, StoreError> {
        // Every number travels as a little-endian double (see `DECIDE`):
        // bucket indexes, times and counts are whole numbers below 2^53.
        let mut nums: Vec<u8> = Vec::with_capacity(8 * 32);
        let mut num = |v: u64| nums.extend_from_slice(&(v as f64).to_le_bytes());
        num(to_ms(now));
        num(request.locks.len() as u64);
        num(request.blocks.len() as u64);
        num(u64::from(request.distinct.is_some()));
        if let Some(d) = &request.distinct {
            num(duration_ms(d.window));
            num(d.limit);
        }
        num(request.counters.len() as u64);
        for c in request.counters {
            num(c.cost);
            num(u64::from(c.counting == Counting::Strict));
            num(c.windows.len() as u64);
            for w in c.windows {
                num(w.length_ms());
                num(u64::from(w.buckets));
                num(w.bucket_ms());
                num(w.span());
                num(w.limit);
            }
        }
        let mut inv = self.decide.prepare_invoke();
        inv.arg(nums)
            .arg(request.distinct.as_ref().map_or("", |d| d.member))
            .arg(to_ms(now))
            .arg(
                request
                    .distinct
                    .as_ref()
                    .map_or(0, |d| duration_ms(d.window)),
            );
        for c in request.counters {
            let life = c
                .windows
                .iter()
                .map(|w| w.span().saturating_add(2).saturating_mul(w.bucket_ms()))
                .max()
                .unwrap_or(0);
            inv.arg(life);
        }
        for key in request.locks {
            inv.key(self.pool.key(&format!("l:{key}")));
        }
        for key in request.blocks {
            inv.key(self.pool.key(&format!("b:{key}")));
        }
        if let Some(d) = &request.distinct {
            inv.key(self.pool.key(&format!("d:{}", d.key)));
        }
        for c in request.counters {
            inv.key(self.counter_key(c.key));
        }
        let value: Value = self
            .pool
            .with(|conn| inv.invoke(conn))
            .map_err(unavailable)?;
        self.parse_outcome(&value)
    }

    fn parse_outcome(&self, value: &Value) -> Result<Outcome, StoreError> {
        let Value::Array(items) = value else {
            return Err(malformed("decide: not an array"));
        };
        let int = |i: usize| items.get(i).and_then(as_u64);
        let index = |i: usize| {
            int(i)
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| malformed("decide: bad index"))
        };
        match int(0) {
            Some(0) => Ok(Outcome::Admitted),
            Some(1) => {
                let fields = [
                    Value::BulkString(b"1".to_vec()),
                    items.get(3).cloned().unwrap_or(Value::Nil),
                    items.get(2).cloned().unwrap_or(Value::Nil),
                    items.get(4).cloned().unwrap_or(Value::Nil),
                    items.get(5).cloned().unwrap_or(Value::Nil),
                ];
                Ok(Outcome::Locked {
                    index: index(1)?,
                    record: lock_from_fields(&fields).ok_or_else(|| malformed("lock record"))?,
                })
            }
            Some(2) => Ok(Outcome::Blocked {
                index: index(1)?,
                until: from_ms(int(2).ok_or_else(|| malformed("block end"))?),
            }),
            Some(3) => Ok(Outcome::DistinctExceeded {
                count: int(1).ok_or_else(|| malformed("distinct count"))?,
            }),
            Some(4) => Ok(Outcome::Limited {
                counter: index(1)?,
                window: index(2)?,
                count: int(3).ok_or_else(|| malformed("count"))?,
                retry_after: Duration::from_millis(int(4).ok_or_else(|| malformed("retry"))?),
            }),
            _ => Err(malformed("decide: unknown outcome")),
        }
    }
}

impl CounterStore for RedisCounterStore {
    fn decide(&self, request: &Request<'_>, now: SystemTime) -> Result<Outcome, StoreError> {
        if let ([], [counter]) = (request.locks, request.counters)
            && (1..=2).contains(&counter.windows.len())
            && let Some(outcome) = self.decide_one(request, counter, now)?
        {
            return Ok(outcome);
        }
        self.decide_any(request, now)
    }

    fn block(&self, key: &str, until: SystemTime, now: SystemTime) -> Result<(), StoreError> {
        let ttl = to_ms(until).saturating_sub(to_ms(now)).max(1);
        let mut inv = self.block.prepare_invoke();
        inv.key(self.pool.key(&format!("b:{key}")))
            .arg(to_ms(until))
            .arg(ttl);
        self.pool
            .with(|conn| inv.invoke::<i64>(conn))
            .map_err(unavailable)?;
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
        let mut inv = self.lock.prepare_invoke();
        inv.key(self.pool.key(&format!("l:{key}")))
            .arg(to_ms(now))
            .arg(duration_ms(lock_for))
            .arg(max_auto_unlocks)
            .arg(reason);
        let value: Value = self
            .pool
            .with(|conn| inv.invoke(conn))
            .map_err(unavailable)?;
        let Value::Array(items) = value else {
            return Err(malformed("lock: not an array"));
        };
        let [times, until, since, reason] = items.as_slice() else {
            return Err(malformed("lock: wrong length"));
        };
        let fields = [
            Value::BulkString(b"1".to_vec()),
            until.clone(),
            times.clone(),
            since.clone(),
            reason.clone(),
        ];
        lock_from_fields(&fields).ok_or_else(|| malformed("lock record"))
    }

    fn unlock(&self, key: &str, forget_history: bool) -> Result<(), StoreError> {
        let k = self.pool.key(&format!("l:{key}"));
        if forget_history {
            self.pool
                .with(|c| redis::cmd("DEL").arg(&k).query::<i64>(c))
                .map_err(unavailable)?;
        } else {
            let mut inv = self.unlock.prepare_invoke();
            inv.key(k);
            self.pool
                .with(|conn| inv.invoke::<i64>(conn))
                .map_err(unavailable)?;
        }
        Ok(())
    }

    fn lock_record(&self, key: &str) -> Result<Option<LockRecord>, StoreError> {
        let k = self.pool.key(&format!("l:{key}"));
        let fields: Vec<Value> = self
            .pool
            .with(|c| {
                redis::cmd("HMGET")
                    .arg(&k)
                    .arg(&["active", "until", "times", "since", "reason"])
                    .query(c)
            })
            .map_err(unavailable)?;
        Ok(lock_from_fields(&fields))
    }

    fn locks(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        let strip = self.pool.key("l:");
        let mut out = Vec::new();
        for full in self.scan("l:")? {
            let Some(key) = full.strip_prefix(&strip) else {
                continue;
            };
            let fields: Vec<Value> = self
                .pool
                .with(|c| {
                    redis::cmd("HMGET")
                        .arg(&full)
                        .arg(&["active", "until", "times", "since", "reason"])
                        .query(c)
                })
                .map_err(unavailable)?;
            if let Some(record) = lock_from_fields(&fields) {
                out.push((key.to_owned(), record));
            }
        }
        Ok(out)
    }

    fn counters(&self, now: SystemTime) -> Result<Vec<CounterSnapshot>, StoreError> {
        let strip = self.pool.key("w:");
        let now_ms = to_ms(now);
        let mut out = Vec::new();
        for full in self.scan("w:")? {
            let Some(key) = full.strip_prefix(&strip) else {
                continue;
            };
            let value: Option<Vec<u8>> = self
                .pool
                .with(|c| redis::cmd("GET").arg(&full).query(c))
                .map_err(unavailable)?;
            for (length_ms, count) in window_counts(&value.unwrap_or_default(), now_ms) {
                if count > 0 {
                    out.push(CounterSnapshot {
                        key: key.to_owned(),
                        window: Duration::from_millis(length_ms),
                        count,
                    });
                }
            }
        }
        Ok(out)
    }
}
