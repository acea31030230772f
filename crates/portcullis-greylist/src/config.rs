//! Greylisting settings and whitelists.

use std::net::IpAddr;
use std::time::Duration;

use portcullis_core::{Address, Domain, ForwardPath, ReversePath};

use crate::triplet::IpNetwork;

/// What to do when the store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Let the mail through without greylisting (and log it). The default:
    /// greylisting is a delay, not a safety net, and a broken store must not
    /// stop all inbound mail.
    #[default]
    Open,
    /// Defer with `451 4.3.0` until the store answers again.
    Closed,
}

/// How greylisting behaves. Defaults are postgrey's.
#[derive(Debug, Clone)]
pub struct GreylistConfig {
    /// How long a new triplet is deferred (postgrey `--delay`, 300 s).
    pub delay: Duration,
    /// How long after the first attempt a retry is still honoured; a retry
    /// later than this starts over (postgrey `--retry-window`, 2 days).
    pub retry_window: Duration,
    /// Entries unused this long are forgotten (postgrey `--max-age`, 35 days).
    pub max_age: Duration,
    /// Whitelist a client network after this many counted passes (postgrey
    /// `--auto-whitelist-clients`, 5); `None` turns it off.
    pub auto_whitelist_after: Option<u32>,
    /// At most one pass per client network is counted per this interval
    /// (postgrey counts one per hour), so one burst of mail does not
    /// whitelist a client at once.
    pub auto_whitelist_interval: Duration,
    /// How long an admin's client release lasts.
    pub client_release_duration: Duration,
    /// IPv4 prefix of the client network in the key (24; 32 = exact address).
    pub client_v4_prefix: u8,
    /// IPv6 prefix of the client network in the key (64; 128 = exact address).
    pub client_v6_prefix: u8,
    /// A passed triplet's `last_seen` is rewritten at most this often, so
    /// checks of known triplets are reads; expiry is exact to this interval.
    pub touch_interval: Duration,
    /// Networks whose clients relay without greylisting (besides clients
    /// the session marks `trusted_network`).
    pub relay_networks: Vec<IpNetwork>,
    /// Who is never greylisted.
    pub whitelist: Whitelist,
    /// What a store failure means.
    pub on_store_error: FailureMode,
    /// Whether the filter adds an `X-Greylist` header to mail it let through.
    pub add_header: bool,
}

impl Default for GreylistConfig {
    fn default() -> Self {
        GreylistConfig {
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(2 * 86_400),
            max_age: Duration::from_secs(35 * 86_400),
            auto_whitelist_after: Some(5),
            auto_whitelist_interval: Duration::from_secs(3600),
            client_release_duration: Duration::from_secs(35 * 86_400),
            client_v4_prefix: 24,
            client_v6_prefix: 64,
            touch_interval: Duration::from_secs(3600),
            relay_networks: Vec::new(),
            whitelist: Whitelist::default(),
            on_store_error: FailureMode::Open,
            add_header: false,
        }
    }
}

/// Clients, senders and recipients that are never greylisted.
#[derive(Debug, Clone, Default)]
pub struct Whitelist {
    /// Client addresses and networks.
    pub clients: Vec<IpNetwork>,
    /// Client reverse-DNS patterns, matched case-insensitively against the
    /// name the caller supplies: a plain name matches itself and its
    /// subdomains (`example.net` matches `mx1.example.net`); a pattern with
    /// `*` is a glob over the whole name (`mail-*.example.net`).
    pub reverse_dns: Vec<String>,
    /// Sender addresses (`user@example.org`) and domains (`example.org`,
    /// which also matches its subdomains).
    pub senders: Vec<AddressPattern>,
    /// Recipient addresses and domains, as for senders (e.g. `postmaster@…`
    /// or `abuse@…`, which must always be reachable).
    pub recipients: Vec<AddressPattern>,
    /// Let the null sender `<>` (bounces, DSNs) through without greylisting.
    /// Off by default, as in postgrey: bounces are greylisted like any mail,
    /// and real MTAs retry them.
    pub null_sender: bool,
}

impl Whitelist {
    pub(crate) fn client(&self, ip: IpAddr) -> bool {
        self.clients.iter().any(|n| n.contains(ip))
    }

    pub(crate) fn reverse_dns(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.reverse_dns.iter().any(|p| {
            let p = p.trim_end_matches('.').to_ascii_lowercase();
            if p.contains('*') {
                glob(p.as_bytes(), name.as_bytes())
            } else {
                let p = p.trim_start_matches('.');
                name == p
                    || (name.len() > p.len()
                        && name.ends_with(p)
                        && name.as_bytes()[name.len() - p.len() - 1] == b'.')
            }
        })
    }

    pub(crate) fn sender(&self, sender: &ReversePath) -> bool {
        match sender.address() {
            Some(a) => self.senders.iter().any(|p| p.matches(a)),
            None => false,
        }
    }

    pub(crate) fn recipient(&self, recipient: &ForwardPath) -> bool {
        match recipient.address() {
            Some(a) => self.recipients.iter().any(|p| p.matches(a)),
            None => false,
        }
    }
}

/// `*` matches any run of characters (dots included), everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice and
    // never recursive, whatever the input.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A whitelist entry for senders or recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressPattern {
    /// One mailbox; the local part compares case-insensitively (as every
    /// real mail system treats it), the domain by its A-label form.
    Address(Address),
    /// A domain and all its subdomains.
    Domain(Domain),
}

impl AddressPattern {
    /// Parse `user@example.org` (an address) or `example.org` / `@example.org`
    /// (a domain).
    pub fn parse(s: &str) -> Result<Self, portcullis_core::AddressError> {
        let s = s.trim();
        if let Some(domain) = s.strip_prefix('@') {
            return Domain::parse(domain).map(AddressPattern::Domain);
        }
        if s.contains('@') {
            Address::parse(s).map(AddressPattern::Address)
        } else {
            Domain::parse(s).map(AddressPattern::Domain)
        }
    }

    /// Whether `address` matches.
    pub fn matches(&self, address: &Address) -> bool {
        match self {
            AddressPattern::Address(a) => {
                a.domain() == address.domain()
                    && a.local_part().eq_ignore_case(address.local_part().as_str())
            }
            AddressPattern::Domain(d) => address.domain().is_within(d),
        }
    }
}

impl std::str::FromStr for AddressPattern {
    type Err = portcullis_core::AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AddressPattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_dns_patterns() {
        let w = Whitelist {
            reverse_dns: vec!["Example.NET".into(), "mail-*.outbound.example.com".into()],
            ..Whitelist::default()
        };
        assert!(w.reverse_dns("example.net"));
        assert!(w.reverse_dns("MX1.example.net."));
        assert!(!w.reverse_dns("badexample.net"));
        assert!(!w.reverse_dns("example.net.evil.test"));
        assert!(w.reverse_dns("mail-db5eur01.outbound.example.com"));
        assert!(!w.reverse_dns("mail.outbound.example.com"));
        assert!(!w.reverse_dns("mail-x.outbound.example.com.evil.test"));
    }

    #[test]
    fn glob_edges() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"**", b"anything"));
        assert!(!glob(b"", b"x"));
    }

    #[test]
    fn address_patterns() {
        let a = Address::parse("Alice@Sub.Example.org").unwrap();
        assert!(
            AddressPattern::parse("alice@sub.example.org")
                .unwrap()
                .matches(&a)
        );
        assert!(
            !AddressPattern::parse("bob@sub.example.org")
                .unwrap()
                .matches(&a)
        );
        assert!(AddressPattern::parse("example.org").unwrap().matches(&a));
        assert!(
            AddressPattern::parse("@sub.example.org")
                .unwrap()
                .matches(&a)
        );
        assert!(!AddressPattern::parse("other.org").unwrap().matches(&a));
        assert!(!AddressPattern::parse("ample.org").unwrap().matches(&a));
        assert!(AddressPattern::parse("not an address@").is_err());
    }
}
