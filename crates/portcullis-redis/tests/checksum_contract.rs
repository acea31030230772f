//! The `ChecksumStore` contract suite against Redis (needs `REDIS_URL`).
#![cfg(feature = "checksum")]
#![allow(clippy::disallowed_methods)] // a unique key prefix from the wall clock

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_fingerprint::testing::checksum_store_contract;
use portcullis_redis::checksum::RedisChecksumStore;
use portcullis_redis::connection::RedisPool;

#[test]
fn redis_checksum_store_meets_the_contract() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipping: REDIS_URL not set");
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("portcullis-test:{}:{}:", std::process::id(), nanos);
    let pool = RedisPool::new(&url, prefix).unwrap();
    let store = RedisChecksumStore::new(pool).with_retention(Duration::from_secs(48 * 3600));
    checksum_store_contract(&store);
}

#[test]
fn redis_checksum_store_reports_connection_failure() {
    if std::env::var("REDIS_URL").is_err() {
        println!("skipping: REDIS_URL not set");
        return;
    }
    // Nothing listens on port 1: errors are returned, not panics.
    let pool = RedisPool::new("redis://127.0.0.1:1", "portcullis-test:down:").unwrap();
    let store = RedisChecksumStore::new(pool);
    let c = portcullis_fingerprint::Checksum::of(b"x");
    use portcullis_fingerprint::ChecksumStore;
    assert!(store.record(&c, "r", UNIX_EPOCH).is_err());
    assert!(
        store
            .distinct_recipients(&c, Duration::from_secs(60), UNIX_EPOCH)
            .is_err()
    );
}
