//! Building the [`MessageAuthenticator`] (mail-auth's DNS resolver) for the
//! caller. Building opens no socket; queries do, when verification runs.

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};

use crate::MailAuthError;

/// Resolver settings for [`authenticator_with_name_servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsOptions {
    /// Per-query timeout.
    pub timeout: Duration,
    /// Tries per query.
    pub attempts: usize,
    /// Upper bound on how long answers are cached, positive and negative.
    pub ttl_cap: Duration,
}

impl Default for DnsOptions {
    /// 5 s timeout, 2 attempts, 5 minute TTL cap (the relay's default cap).
    fn default() -> Self {
        DnsOptions {
            timeout: Duration::from_secs(5),
            attempts: 2,
            ttl_cap: Duration::from_secs(300),
        }
    }
}

/// A [`MessageAuthenticator`] that queries exactly `servers` (UDP, falling
/// back to TCP for truncated answers), with `options`. Names are always
/// absolute (`ndots = 0`): no search list is applied.
pub fn authenticator_with_name_servers(
    servers: &[SocketAddr],
    options: DnsOptions,
) -> Result<MessageAuthenticator, MailAuthError> {
    if servers.is_empty() {
        return Err(MailAuthError::Resolver("no name servers".into()));
    }
    let name_servers = servers
        .iter()
        .map(|server| {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for c in &mut ns.connections {
                c.port = server.port();
            }
            ns
        })
        .collect();
    let mut opts = ResolverOpts::default();
    opts.timeout = options.timeout;
    opts.attempts = options.attempts;
    opts.ndots = 0;
    opts.positive_max_ttl = Some(options.ttl_cap);
    opts.negative_max_ttl = Some(options.ttl_cap);
    MessageAuthenticator::new(ResolverConfig::from_name_servers(name_servers), opts)
        .map_err(|e| MailAuthError::Resolver(e.to_string()))
}
