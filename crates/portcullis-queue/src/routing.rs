//! Routing: from a destination domain to a [`NextHop`]. **Network I/O**
//! (DNS through `hickory-resolver`) lives here and in
//! [`smtp_transport`](crate::smtp_transport), nowhere else in the crate.
//!
//! * [`MxRouter`] — RFC 5321 §5.1: MX records by preference, shuffled among
//!   equal preferences; the implicit MX (the domain's own A/AAAA) when there
//!   is no MX; null MX (RFC 7505) and NXDOMAIN are permanent failures;
//!   SERVFAIL and timeouts are temporary. Answers are cached for at most
//!   `ttl_cap` (5 minutes by default) so a changed MX is picked up quickly;
//!   the cache reads time from the `now` argument.
//! * [`StaticRouter`] — a smarthost for everything, and/or a fixed next hop
//!   per domain (a backup MX forwarding to the primary), falling back to
//!   another router.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use portcullis_core::{Reply, async_trait};
use rand::seq::SliceRandom;

use crate::transport::{HopHost, NextHop, Outcome};

/// Why a destination could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    #[error("{0} does not accept mail (null MX)")]
    NullMx(String),
    /// The domain does not exist (NXDOMAIN).
    #[error("{0} does not exist")]
    NoSuchDomain(String),
    /// Neither MX nor address records lead anywhere.
    #[error("no mail exchanger address for {0}")]
    NoAddress(String),
    /// A temporary DNS failure (SERVFAIL, timeout): try again later.
    #[error("temporary DNS failure for {domain}: {detail}")]
    Temporary {
        /// The destination.
        domain: String,
        /// What the resolver said.
        detail: String,
    },
}

impl RouteError {
    /// The delivery outcome for every recipient of the destination.
    pub fn outcome(&self) -> Outcome {
        match self {
            // RFC 7505 §4.3: 556 5.1.10.
            RouteError::NullMx(d) => Outcome::Bounced(Reply::new(
                556,
                (5, 1, 10),
                format!("Recipient address has null MX: {d}"),
            )),
            // RFC 3463 X.1.2: bad destination system address.
            RouteError::NoSuchDomain(d) => {
                Outcome::Bounced(Reply::new(550, (5, 1, 2), format!("Domain not found: {d}")))
            }
            RouteError::NoAddress(d) => Outcome::Bounced(Reply::new(
                550,
                (5, 1, 2),
                format!("No mail exchanger address for {d}"),
            )),
            // RFC 3463 X.4.3: directory server failure.
            RouteError::Temporary { domain, .. } => Outcome::Deferred(Reply::new(
                451,
                (4, 4, 3),
                format!("Temporary DNS failure for {domain}"),
            )),
        }
    }
}

/// Finds the next hop for a destination. `Send + Sync`; may be shared by
/// concurrent deliveries.
#[async_trait]
pub trait Router: Send + Sync {
    /// Route `destination` (a lower-case domain, or `[addr]` literal) at `now`.
    async fn route(&self, destination: &str, now: SystemTime) -> Result<NextHop, RouteError>;
}

/// MX router settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MxConfig {
    /// Longest time any DNS answer is reused (5 minutes).
    pub ttl_cap: Duration,
    /// Port to deliver to (25).
    pub port: u16,
    /// DNS query timeout.
    pub timeout: Duration,
}

impl Default for MxConfig {
    fn default() -> Self {
        MxConfig {
            ttl_cap: Duration::from_secs(300),
            port: 25,
            timeout: Duration::from_secs(5),
        }
    }
}

impl MxConfig {
    /// Set [`MxConfig::ttl_cap`].
    pub fn with_ttl_cap(mut self, cap: Duration) -> Self {
        self.ttl_cap = cap;
        self
    }

    /// Set [`MxConfig::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

type Cached = (SystemTime, Result<Vec<(u16, HopHost)>, RouteError>);

/// MX routing over `hickory-resolver`. See the module docs.
pub struct MxRouter {
    resolver: TokioResolver,
    config: MxConfig,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for MxRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxRouter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MxRouter {
    /// Use the name servers of `/etc/resolv.conf`.
    pub fn from_system(config: MxConfig) -> Result<Self, RouteError> {
        let temp = |e: NetError| RouteError::Temporary {
            domain: String::new(),
            detail: e.to_string(),
        };
        let (conf, _) = hickory_resolver::system_conf::read_system_conf().map_err(temp)?;
        Self::with_resolver_config(conf, config)
    }

    /// Ask the DNS server at `server` (UDP and TCP), e.g. a local resolver.
    pub fn with_name_server(server: SocketAddr, config: MxConfig) -> Result<Self, RouteError> {
        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
        for c in &mut ns.connections {
            c.port = server.port();
        }
        Self::with_resolver_config(ResolverConfig::from_name_servers(vec![ns]), config)
    }

    /// Use a prepared resolver configuration.
    pub fn with_resolver_config(
        resolver_config: ResolverConfig,
        config: MxConfig,
    ) -> Result<Self, RouteError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = config.timeout;
        opts.attempts = 2;
        // Our own cache (below) decides reuse, with time from `now`; the
        // resolver's cache is capped as well so it never serves older data.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(config.ttl_cap);
        opts.negative_max_ttl = Some(config.ttl_cap);
        opts.ndots = 0;
        let resolver = Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::new())
            .with_options(opts)
            .build();
        let resolver = resolver.map_err(|e| RouteError::Temporary {
            domain: String::new(),
            detail: format!("resolver setup: {e}"),
        })?;
        Ok(MxRouter {
            resolver,
            config,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Forget every cached answer.
    pub fn clear_cache(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn resolve(&self, domain: &str) -> (u32, Result<Vec<(u16, HopHost)>, RouteError>) {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let mut ttl = u32::MAX;
        let exchangers: Vec<(u16, String)> = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut v = Vec::new();
                for r in lookup.answers() {
                    if let RData::MX(mx) = &r.data {
                        ttl = ttl.min(r.ttl);
                        v.push((mx.preference, mx.exchange.clone()));
                    }
                }
                // RFC 7505 §3: a lone MX with exchange "." means no mail.
                if !v.is_empty() && v.iter().all(|(_, n)| n.is_root()) {
                    return (ttl, Err(RouteError::NullMx(domain.to_owned())));
                }
                v.into_iter()
                    .filter(|(_, n)| !n.is_root())
                    .map(|(p, n)| (p, n.to_ascii()))
                    .collect()
            }
            Err(e) if e.is_nx_domain() => {
                return (ttl, Err(RouteError::NoSuchDomain(domain.to_owned())));
            }
            // NOERROR with no MX: RFC 5321 §5.1 implicit MX, the domain itself.
            Err(e) if e.is_no_records_found() => vec![(0, fqdn.clone())],
            Err(e) => {
                return (
                    0,
                    Err(RouteError::Temporary {
                        domain: domain.to_owned(),
                        detail: e.to_string(),
                    }),
                );
            }
        };
        let mut hosts = Vec::new();
        let mut temporary = None;
        for (pref, name) in exchangers {
            match self.resolver.lookup_ip(name.as_str()).await {
                Ok(ips) => {
                    for r in ips.as_lookup().answers() {
                        ttl = ttl.min(r.ttl);
                    }
                    let addrs: Vec<IpAddr> = ips.iter().collect();
                    if !addrs.is_empty() {
                        let host = name.trim_end_matches('.').to_owned();
                        hosts.push((pref, HopHost::new(host, addrs, self.config.port)));
                    }
                }
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
                Err(e) => temporary = Some(e.to_string()),
            }
        }
        if hosts.is_empty() {
            return match temporary {
                Some(detail) => (
                    0,
                    Err(RouteError::Temporary {
                        domain: domain.to_owned(),
                        detail,
                    }),
                ),
                None => (ttl, Err(RouteError::NoAddress(domain.to_owned()))),
            };
        }
        hosts.sort_by_key(|(p, _)| *p);
        (ttl, Ok(hosts))
    }
}

/// Shuffle hosts among equal preferences (RFC 5321 §5.1), keeping order
/// between preferences.
fn shuffle_equal(mut hosts: Vec<(u16, HopHost)>) -> Vec<HopHost> {
    let mut rng = rand::rng();
    let mut start = 0;
    while start < hosts.len() {
        let pref = hosts[start].0;
        let end = hosts[start..]
            .iter()
            .position(|(p, _)| *p != pref)
            .map_or(hosts.len(), |n| start + n);
        hosts[start..end].shuffle(&mut rng);
        start = end;
    }
    hosts.into_iter().map(|(_, h)| h).collect()
}

fn literal(destination: &str) -> Option<IpAddr> {
    let inner = destination.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

#[async_trait]
impl Router for MxRouter {
    async fn route(&self, destination: &str, now: SystemTime) -> Result<NextHop, RouteError> {
        if let Some(ip) = literal(destination) {
            return Ok(NextHop::new(
                destination,
                vec![HopHost::new(ip.to_string(), vec![ip], self.config.port)],
            ));
        }
        let key = destination.to_ascii_lowercase();
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&key)
                .filter(|(expires, _)| *expires > now)
                .map(|(_, r)| r.clone())
        };
        let result = match cached {
            Some(r) => r,
            None => {
                let (ttl, r) = self.resolve(&key).await;
                let keep = Duration::from_secs(u64::from(ttl)).min(self.config.ttl_cap);
                let temporary = matches!(r, Err(RouteError::Temporary { .. }));
                if !temporary && !keep.is_zero() {
                    self.cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key.clone(), (now + keep, r.clone()));
                }
                r
            }
        };
        result.map(|hosts| NextHop::new(key, shuffle_equal(hosts)))
    }
}

/// Fixed routes: per-domain next hops, an optional smarthost for
/// everything else, and a fallback router (usually [`MxRouter`]).
pub struct StaticRouter {
    domains: HashMap<String, Vec<HopHost>>,
    smarthost: Option<Vec<HopHost>>,
    fallback: Option<Arc<dyn Router>>,
}

impl std::fmt::Debug for StaticRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticRouter")
            .field("domains", &self.domains)
            .field("smarthost", &self.smarthost)
            .finish_non_exhaustive()
    }
}

impl StaticRouter {
    /// No routes: everything goes to `fallback`, or fails temporarily without one.
    pub fn new(fallback: Option<Arc<dyn Router>>) -> Self {
        StaticRouter {
            domains: HashMap::new(),
            smarthost: None,
            fallback,
        }
    }

    /// Send every destination without its own route to `hosts`.
    pub fn with_smarthost(mut self, hosts: Vec<HopHost>) -> Self {
        self.smarthost = Some(hosts);
        self
    }

    /// Send mail for `domain` (and only it, not subdomains) to `hosts`.
    pub fn with_route(mut self, domain: &str, hosts: Vec<HopHost>) -> Self {
        self.domains.insert(domain.to_ascii_lowercase(), hosts);
        self
    }
}

#[async_trait]
impl Router for StaticRouter {
    async fn route(&self, destination: &str, now: SystemTime) -> Result<NextHop, RouteError> {
        let key = destination.to_ascii_lowercase();
        if let Some(hosts) = self.domains.get(&key).or(self.smarthost.as_ref()) {
            return Ok(NextHop::new(key, hosts.clone()));
        }
        match &self.fallback {
            Some(f) => f.route(destination, now).await,
            None => Err(RouteError::Temporary {
                domain: key,
                detail: "no route configured".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_route_directly() {
        assert_eq!(literal("[192.0.2.1]"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(literal("example.com"), None);
    }

    #[test]
    fn shuffle_keeps_preference_order() {
        let h = |n: &str| HopHost::new(n, vec![], 25);
        for _ in 0..20 {
            let out = shuffle_equal(vec![
                (10, h("a")),
                (10, h("b")),
                (20, h("c")),
                (30, h("d")),
                (30, h("e")),
            ]);
            let names: Vec<&str> = out.iter().map(|h| h.name.as_str()).collect();
            assert!(names[..2].contains(&"a") && names[..2].contains(&"b"));
            assert_eq!(names[2], "c");
            assert!(names[3..].contains(&"d") && names[3..].contains(&"e"));
        }
    }
}
