//! Shared connection handling for the Redis stores.

use std::sync::Mutex;
use std::time::Duration;

/// A small pool of synchronous Redis connections with a key prefix.
///
/// Stores take a connection for one round trip and give it back, so
/// concurrent callers do not serialise on one socket.
pub struct RedisPool {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    prefix: String,
    /// Connect, read and write timeout of each connection (`None`: the
    /// `redis` crate's defaults, i.e. wait as long as the OS does).
    timeout: Option<Duration>,
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
            timeout: None,
        })
    }

    /// Give up on connecting, and on each read or write, after `timeout`
    /// (a Redis that stops answering then fails calls instead of holding
    /// the caller's thread indefinitely).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// One `PING` round trip: whether Redis answers now (e.g. at startup).
    pub fn ping(&self) -> redis::RedisResult<()> {
        self.with(|c| redis::cmd("PING").query::<String>(c).map(drop))
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        match self.timeout {
            None => self.client.get_connection(),
            Some(t) => {
                let conn = self.client.get_connection_with_timeout(t)?;
                conn.set_read_timeout(Some(t))?;
                conn.set_write_timeout(Some(t))?;
                Ok(conn)
            }
        }
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
            None => self.connect()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_fails_when_nothing_answers() {
        // Port 1 on loopback: nothing listens there.
        let pool = RedisPool::new("redis://127.0.0.1:1", "p:")
            .unwrap()
            .with_timeout(Duration::from_millis(500));
        assert!(pool.ping().is_err());
        assert_eq!(pool.key("k"), "p:k");
    }

    #[test]
    fn ping_answers_when_redis_runs() {
        let Ok(url) = std::env::var("REDIS_URL") else {
            println!("skipping: REDIS_URL is not set");
            return;
        };
        let pool = RedisPool::new(&url, "p:")
            .unwrap()
            .with_timeout(Duration::from_secs(2));
        pool.ping().unwrap();
    }
}
