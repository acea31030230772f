//! Set-up shared by the Redis contract tests: the server named by
//! `REDIS_URL`, and a key prefix no other run or test uses.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// `REDIS_URL` and a key prefix of `test`'s own
/// (`portcullis-test:<pid>:<nanos>:<test>:`), or `None` (and a visible
/// `skipping:` line) when `REDIS_URL` is not set.
pub(crate) fn redis(test: &str) -> Option<(String, String)> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipping: REDIS_URL not set");
        return None;
    };
    #[allow(clippy::disallowed_methods)] // a unique prefix per run, not a rule's time
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("portcullis-test:{}:{nanos}:{test}:", std::process::id());
    Some((url, prefix))
}
