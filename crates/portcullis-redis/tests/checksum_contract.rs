//! The `ChecksumStore` contract suite against Redis (needs `REDIS_URL`).
#![cfg(feature = "checksum")]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use portcullis_fingerprint::testing::checksum_store_contract;
use portcullis_redis::checksum::RedisChecksumStore;
use portcullis_redis::connection::RedisPool;

#[test]
fn redis_checksum_store_meets_the_contract() {
    let Some((url, prefix)) = common::redis("contract") else {
        return;
    };
    let pool = RedisPool::new(&url, prefix).unwrap();
    let store = RedisChecksumStore::new(pool).with_retention(Duration::from_secs(48 * 3600));
    checksum_store_contract(&store);
}

#[test]
fn redis_checksum_store_reports_connection_failure() {
    if common::redis("down").is_none() {
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

#[test]
fn a_namespace_keeps_counts_apart_on_one_pool() {
    let Some((url, prefix)) = common::redis("ns") else {
        return;
    };
    use portcullis_fingerprint::{Checksum, ChecksumStore};
    use std::sync::Arc;
    let pool = Arc::new(RedisPool::new(&url, prefix.as_str()).unwrap());
    // Inbound bulk counts and the outbound abuse signal, as the relay
    // keeps them: one pool, two namespaces, two retentions.
    let inbound = RedisChecksumStore::new(pool.clone());
    let outbound = RedisChecksumStore::new(pool.clone())
        .with_namespace("outbound")
        .with_retention(Duration::from_secs(3600));
    assert_eq!(
        (inbound.namespace(), outbound.namespace()),
        ("cs", "outbound")
    );
    let c = Checksum::of(b"one message");
    let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let hour = Duration::from_secs(3600);
    inbound
        .record_recipients(&[c], &["a@x.example", "b@x.example"], at)
        .unwrap();
    outbound.record(&c, "c@x.example", at).unwrap();
    assert_eq!(inbound.distinct_recipients(&c, hour, at).unwrap(), 2);
    assert_eq!(outbound.distinct_recipients(&c, hour, at).unwrap(), 1);
    // A second handle on the namespace (another relay) sees the same count.
    let other = RedisChecksumStore::new(RedisPool::new(&url, prefix.as_str()).unwrap())
        .with_namespace("outbound")
        .with_retention(Duration::from_secs(3600));
    other.record(&c, "d@x.example", at).unwrap();
    assert_eq!(outbound.distinct_recipients(&c, hour, at).unwrap(), 2);
    let mut keys: Vec<String> = pool
        .with(|conn| redis::cmd("KEYS").arg(format!("{prefix}*")).query(conn))
        .unwrap();
    keys.sort();
    let hex = c.to_hex();
    assert_eq!(
        keys,
        vec![
            format!("{prefix}cs:{hex}"),
            format!("{prefix}outbound:{hex}")
        ]
    );
    // Each namespace's own retention sets its expiry.
    let ttl = |key: &str| -> i64 {
        pool.with(|conn| redis::cmd("PTTL").arg(key).query(conn))
            .unwrap()
    };
    assert!(ttl(&format!("{prefix}outbound:{hex}")) <= 3_600_000);
    assert!(ttl(&format!("{prefix}cs:{hex}")) > 3_600_000);
}
