//! The DNS seam: [`DnsLookup`], what it answers, and the crate's error.

use std::net::Ipv4Addr;

use portcullis_core::async_trait;

/// Records found for one name and how long they may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer<T> {
    /// The records (empty: the name does not exist or has none of the type).
    pub records: Vec<T>,
    /// Seconds the answer may be cached: the smallest record TTL, or for an
    /// empty answer the negative-caching TTL (RFC 2308 §5, from the SOA),
    /// `None` when unknown. The caller caps it.
    pub ttl: Option<u32>,
}

impl<T> DnsAnswer<T> {
    /// An answer with records.
    pub fn found(records: Vec<T>, ttl: u32) -> Self {
        DnsAnswer {
            records,
            ttl: Some(ttl),
        }
    }

    /// NXDOMAIN or NODATA.
    pub fn not_found(negative_ttl: Option<u32>) -> Self {
        DnsAnswer {
            records: Vec::new(),
            ttl: negative_ttl,
        }
    }
}

/// Why a DNSBL gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsblError {
    /// The lookup failed: SERVFAIL, REFUSED, timeout, network error.
    #[error("DNS lookup of {name} failed: {detail}")]
    Lookup {
        /// The name asked.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// The zone answered with a code in `127.255.255.0/24`, which
    /// blocklists use to say "query refused" (Spamhaus: `.252` typo in the
    /// zone, `.254` query through a public resolver, `.255` too many
    /// queries), not "listed".
    #[error("{zone} refused the query (returned {code})")]
    QueryRefused {
        /// The zone.
        zone: String,
        /// The return code.
        code: Ipv4Addr,
    },
    /// The resolver could not be set up.
    #[error("resolver setup: {0}")]
    Setup(String),
}

/// DNS lookups for DNSBL queries.
///
/// Contract: names are absolute (end in `.`). NXDOMAIN and NODATA are
/// *answers* — `Ok` with no records and the negative TTL when known; only
/// failures that say nothing about the listing (SERVFAIL, REFUSED,
/// timeouts, network errors) are `Err(DnsblError::Lookup)`. Implementations
/// are shared between sessions (`Send + Sync`), apply their own timeouts,
/// and need not cache: [`Dnsbl`](crate::Dnsbl) caches with a TTL cap.
/// [`HickoryLookup`](crate::hickory::HickoryLookup) (feature `hickory`) is
/// the ready implementation.
#[async_trait]
pub trait DnsLookup: Send + Sync {
    /// The A records of `name`.
    async fn lookup_a(&self, name: &str) -> Result<DnsAnswer<Ipv4Addr>, DnsblError>;

    /// The TXT records of `name`, each record's strings concatenated.
    async fn lookup_txt(&self, name: &str) -> Result<DnsAnswer<String>, DnsblError>;
}
