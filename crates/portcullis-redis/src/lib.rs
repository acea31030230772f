//! Redis implementations of the Portcullis store traits, so a fleet of relays
//! shares counters, greylist state, backup-MX learned recipients and
//! checksum counts.
//!
//! Each store lives in its own module behind a cargo feature of the same
//! purpose: `counter` (policy `CounterStore`), `greylist` (`GreylistStore`:
//! greylist triplets, and the recipients `RecipientLearning` learns),
//! `checksum` (fingerprint `ChecksumStore`: inbound bulk counts and the
//! outbound abuse signal). Every key is prefixed with a configurable prefix
//! so several deployments (or test runs) never collide; the greylist and
//! checksum stores add a namespace after it (`with_namespace`), so one pool
//! can hold two uses of one store apart.
//!
//! **This crate performs network I/O**: every store call is one blocking
//! round trip to Redis on the caller's thread (a pooled synchronous
//! connection; no connect or read timeout is set beyond the `redis` crate's
//! defaults). Call it from a blocking-tolerant context or accept that a slow
//! Redis stalls the calling task.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_redis::connection::RedisPool;
//! use portcullis_redis::{checksum::RedisChecksumStore, counter::RedisCounterStore, greylist::RedisGreylistStore};
//!
//! // Connections open lazily, on the first store call.
//! let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
//! let pool = Arc::new(RedisPool::new(&url, "mx1:").unwrap());
//! assert_eq!(pool.key("gl:t:192.0.2.0"), "mx1:gl:t:192.0.2.0");
//!
//! // One pool can back all three stores, and a store twice under two namespaces.
//! let _greylist = RedisGreylistStore::new(pool.clone());
//! let learned = RedisGreylistStore::new(pool.clone()).with_namespace("recipients");
//! assert_eq!(learned.namespace(), "recipients");
//! let _checksums = RedisChecksumStore::new(pool.clone());
//! let _outbound = RedisChecksumStore::new(pool.clone()).with_namespace("outbound");
//! let _counters = RedisCounterStore::new(RedisPool::new(&url, "mx1:").unwrap());
//! ```

#![forbid(unsafe_code)]

pub mod connection;

#[cfg(feature = "checksum")]
pub mod checksum;
#[cfg(feature = "counter")]
pub mod counter;
#[cfg(feature = "greylist")]
pub mod greylist;
