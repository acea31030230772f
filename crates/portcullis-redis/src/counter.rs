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
//! | `c:{T_ms}:{buckets}:{key}` | hash | bucket index → count | `(k + 2)·g` |
//! | `d:{key}` | sorted set | member → last seen (ms) | the window |
//! | `b:{key}` | string | block end (ms) | until the block ends |
//! | `l:{key}` | hash | `active`, `until` (0 = permanent), `times`, `since`, `reason` | none |
//!
//! Times are the caller's `now` (ms since the epoch), stored in the values;
//! TTLs only collect garbage, so relays must keep their clocks in sync.
//! All keys of one request must live on one node (no Redis Cluster
//! slot routing is attempted).

use std::time::{Duration, SystemTime};

use portcullis_policy::store::{duration_ms, from_ms, to_ms};
use portcullis_policy::{
    CounterSnapshot, CounterStore, LockRecord, LockState, Outcome, Request, StoreError, Window,
};
use redis::Value;

use crate::connection::RedisPool;

const DECIDE: &str = r#"
local now = tonumber(ARGV[1])
local nl, nb, nd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ki, ai = 1, 5
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
  dmember = ARGV[ai]; dwin = tonumber(ARGV[ai + 1]); local dlimit = tonumber(ARGV[ai + 2]); ai = ai + 3
  -- a member counts while last seen within (now - window, now]
  local seen = tonumber(redis.call('ZSCORE', dkey, dmember) or '0') or 0
  if seen <= now - dwin then
    local card = redis.call('ZCARD', dkey)
    -- prune only when the cap could bind, as the memory store does
    if card >= dlimit then
      redis.call('ZREMRANGEBYSCORE', dkey, '-inf', now - dwin)
      card = redis.call('ZCARD', dkey)
      if card >= dlimit then refused = {3, card} end
    end
  end
end
local nc = tonumber(ARGV[ai]); ai = ai + 1
local plan = {}
for c = 1, nc do
  local cost = tonumber(ARGV[ai]); local strict = ARGV[ai + 1] == '1'; local nw = tonumber(ARGV[ai + 2]); ai = ai + 3
  for w = 1, nw do
    local key = KEYS[ki]; ki = ki + 1
    local g, k, limit, len = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3]); ai = ai + 4
    local b = math.floor(now / g)
    plan[#plan + 1] = {key, b, cost, strict, (k + 2) * g}
    if refused == nil then
      local lo = b - k
      local flat = redis.call('HGETALL', key)
      local total, stale = 0, nil
      for i = 1, #flat, 2 do
        if tonumber(flat[i]) < lo then
          stale = stale or {}
          stale[#stale + 1] = flat[i]
        else
          total = total + tonumber(flat[i + 1])
        end
      end
      if stale then redis.call('HDEL', key, unpack(stale)) end
      if total + cost > limit then
        -- bucket j stops counting at (j + k + 1) * g; only refusals need
        -- the live buckets in order
        local retry = len
        if cost <= limit then
          local live = {}
          for i = 1, #flat, 2 do
            local idx = tonumber(flat[i])
            if idx >= lo then live[#live + 1] = {idx, tonumber(flat[i + 1])} end
          end
          table.sort(live, function(x, y) return x[1] < y[1] end)
          local t = total
          for _, s in ipairs(live) do
            t = t - s[2]
            if t + cost <= limit then retry = math.max((s[1] + k + 1) * g - now, 1); break end
          end
        end
        refused = {4, c - 1, w - 1, total, retry}
      end
    end
  end
end
for _, p in ipairs(plan) do
  if refused == nil or p[4] then
    -- a new bucket is the newest data: only then must the TTL move
    if redis.call('HINCRBY', p[1], string.format('%.0f', p[2]), p[3]) == p[3] then
      redis.call('PEXPIRE', p[1], string.format('%.0f', p[5]))
    end
  end
end
if refused ~= nil then return refused end
if dkey then
  redis.call('ZADD', dkey, 'GT', string.format('%.0f', now), dmember)
  redis.call('PEXPIRE', dkey, string.format('%.0f', dwin))
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

    fn counter_key(&self, window: &Window, key: &str) -> String {
        self.pool.key(&format!(
            "c:{}:{}:{key}",
            window.length_ms(),
            window.buckets
        ))
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
        let mut inv = self.decide.prepare_invoke();
        inv.arg(to_ms(now))
            .arg(request.locks.len())
            .arg(request.blocks.len())
            .arg(usize::from(request.distinct.is_some()));
        for key in request.locks {
            inv.key(self.pool.key(&format!("l:{key}")));
        }
        for key in request.blocks {
            inv.key(self.pool.key(&format!("b:{key}")));
        }
        if let Some(d) = &request.distinct {
            inv.key(self.pool.key(&format!("d:{}", d.key)));
            inv.arg(d.member).arg(duration_ms(d.window)).arg(d.limit);
        }
        inv.arg(request.counters.len());
        for c in request.counters {
            inv.arg(c.cost)
                .arg(u8::from(c.counting == portcullis_policy::Counting::Strict))
                .arg(c.windows.len());
            for w in c.windows {
                inv.key(self.counter_key(w, c.key));
                inv.arg(w.bucket_ms())
                    .arg(w.span())
                    .arg(w.limit)
                    .arg(w.length_ms());
            }
        }
        let value: Value = self
            .pool
            .with(|conn| inv.invoke(conn))
            .map_err(unavailable)?;
        self.parse_outcome(&value)
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
        let strip = self.pool.key("c:");
        let now_ms = to_ms(now);
        let mut out = Vec::new();
        for full in self.scan("c:")? {
            let Some(rest) = full.strip_prefix(&strip) else {
                continue;
            };
            let mut parts = rest.splitn(3, ':');
            let (Some(len), Some(buckets), Some(key)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(len), Ok(buckets)) = (len.parse::<u64>(), buckets.parse::<u32>()) else {
                continue;
            };
            let window = Window::new(Duration::from_millis(len), 0).with_buckets(buckets);
            let slots: Vec<(u64, u64)> = self
                .pool
                .with(|c| redis::cmd("HGETALL").arg(&full).query(c))
                .map_err(unavailable)?;
            let oldest = window.oldest_counted(now_ms);
            let count: u64 = slots
                .iter()
                .filter(|&&(i, _)| i >= oldest)
                .map(|&(_, c)| c)
                .sum();
            if count > 0 {
                out.push(CounterSnapshot {
                    key: key.to_owned(),
                    window: window.length,
                    count,
                });
            }
        }
        Ok(out)
    }
}
