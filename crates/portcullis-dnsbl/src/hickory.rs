//! [`HickoryLookup`]: [`DnsLookup`] over `hickory-resolver` — **the only
//! network I/O in this crate**. Behind the `hickory` feature (on by
//! default). Needs a tokio runtime.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use portcullis_core::async_trait;

use crate::lookup::{DnsAnswer, DnsLookup, DnsblError};

/// DNS through a hickory resolver whose own cache is off: [`Dnsbl`](crate::Dnsbl)
/// caches, with injected time and a TTL cap.
pub struct HickoryLookup {
    resolver: TokioResolver,
}

impl std::fmt::Debug for HickoryLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryLookup").finish_non_exhaustive()
    }
}

impl HickoryLookup {
    /// Use the name servers of `/etc/resolv.conf`. Public DNSBLs such as
    /// Spamhaus refuse queries relayed by big public resolvers: point this
    /// at your own recursive resolver.
    pub fn from_system(timeout: Duration) -> Result<Self, DnsblError> {
        let (conf, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsblError::Setup(e.to_string()))?;
        Self::with_resolver_config(conf, timeout)
    }

    /// Ask the DNS server at `server` (UDP, TCP on truncation).
    pub fn with_name_server(server: SocketAddr, timeout: Duration) -> Result<Self, DnsblError> {
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        Self::with_resolver_config(ResolverConfig::from_name_servers(vec![ns]), timeout)
    }

    /// Use a prepared resolver configuration; `timeout` is per attempt
    /// (two attempts).
    pub fn with_resolver_config(
        config: ResolverConfig,
        timeout: Duration,
    ) -> Result<Self, DnsblError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.cache_size = 0;
        // Query names are absolute; never try search domains.
        opts.ndots = 0;
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::new())
            .with_options(opts)
            .build()
            .map_err(|e| DnsblError::Setup(e.to_string()))?;
        Ok(HickoryLookup { resolver })
    }
}

/// NXDOMAIN and NODATA are answers; everything else is a failure.
fn negative<T>(name: &str, e: NetError) -> Result<DnsAnswer<T>, DnsblError> {
    if let NetError::Dns(DnsError::NoRecordsFound(no)) = &e
        && matches!(
            no.response_code,
            ResponseCode::NXDomain | ResponseCode::NoError
        )
    {
        return Ok(DnsAnswer::not_found(no.negative_ttl));
    }
    Err(DnsblError::Lookup {
        name: name.to_owned(),
        detail: e.to_string(),
    })
}

#[async_trait]
impl DnsLookup for HickoryLookup {
    async fn lookup_a(&self, name: &str) -> Result<DnsAnswer<Ipv4Addr>, DnsblError> {
        match self.resolver.ipv4_lookup(name).await {
            Ok(lookup) => {
                let mut ttl = u32::MAX;
                let mut records = Vec::new();
                for r in lookup.answers() {
                    if let RData::A(a) = &r.data {
                        ttl = ttl.min(r.ttl);
                        records.push(a.0);
                    }
                }
                if records.is_empty() {
                    return Ok(DnsAnswer::not_found(None));
                }
                Ok(DnsAnswer::found(records, ttl))
            }
            Err(e) => negative(name, e),
        }
    }

    async fn lookup_txt(&self, name: &str) -> Result<DnsAnswer<String>, DnsblError> {
        match self.resolver.txt_lookup(name).await {
            Ok(lookup) => {
                let mut ttl = u32::MAX;
                let mut records = Vec::new();
                for r in lookup.answers() {
                    if let RData::TXT(txt) = &r.data {
                        ttl = ttl.min(r.ttl);
                        let text: Vec<u8> = txt
                            .txt_data
                            .iter()
                            .flat_map(|s| s.iter().copied())
                            .collect();
                        records.push(String::from_utf8_lossy(&text).into_owned());
                    }
                }
                if records.is_empty() {
                    return Ok(DnsAnswer::not_found(None));
                }
                Ok(DnsAnswer::found(records, ttl))
            }
            Err(e) => negative(name, e),
        }
    }
}
