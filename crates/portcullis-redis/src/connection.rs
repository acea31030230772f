//! Shared connection handling for the Redis stores.

use std::sync::Mutex;

/// A small pool of synchronous Redis connections with a key prefix.
///
/// Stores take a connection for one round trip and give it back, so
/// concurrent callers do not serialise on one socket.
pub struct RedisPool {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    prefix: String,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPool {
    /// Connect lazily to `url` (e.g. `redis://127.0.0.1:6379`); every key gets `prefix`.
    pub fn new(url: &str, prefix: impl Into<String>) -> redis::RedisResult<Self> {
        Ok(RedisPool {
            client: redis::Client::open(url)?,
            idle: Mutex::new(Vec::new()),
            prefix: prefix.into(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix` + `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// Run `f` with a pooled connection; a connection that saw an error is dropped.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.client.get_connection()?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
        result
    }
}
