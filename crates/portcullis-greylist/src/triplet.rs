//! The greylisting triplet and how it is normalised into a store key.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use portcullis_core::{Address, ForwardPath, ReversePath, mask_ip};

/// One delivery attempt as greylisting sees it: the client, the envelope
/// sender and one recipient (the "triplet" of Harris, 2003).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triplet {
    /// The connecting client's address.
    pub client: IpAddr,
    /// `MAIL FROM`.
    pub sender: ReversePath,
    /// `RCPT TO`.
    pub recipient: ForwardPath,
}

impl Triplet {
    /// A triplet from its three parts.
    pub fn new(client: IpAddr, sender: ReversePath, recipient: ForwardPath) -> Self {
        Triplet {
            client,
            sender,
            recipient,
        }
    }
}

/// What else is known about the client beyond its address: facts that exempt
/// it from greylisting or that a whitelist can match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientFacts {
    /// The client authenticated (RFC 4954): never greylisted.
    pub authenticated: bool,
    /// The client is in a relay network the caller trusts: never greylisted.
    pub trusted_network: bool,
    /// The client's reverse-DNS name, if the caller looked it up (and,
    /// ideally, confirmed it forward), for reverse-DNS whitelist patterns.
    pub reverse_dns: Option<String>,
}

impl ClientFacts {
    /// Facts taken from a session's [`portcullis_core::Client`].
    pub fn from_client(client: &portcullis_core::Client) -> Self {
        ClientFacts {
            authenticated: client.authenticated.is_some(),
            trusted_network: client.trusted_network,
            reverse_dns: client.reverse_dns.clone(),
        }
    }

    /// With a reverse-DNS name.
    pub fn with_reverse_dns(mut self, name: impl Into<String>) -> Self {
        self.reverse_dns = Some(name.into());
        self
    }

    /// Marked authenticated.
    pub fn authenticated(mut self) -> Self {
        self.authenticated = true;
        self
    }

    /// Marked as a trusted relay network.
    pub fn trusted_network(mut self) -> Self {
        self.trusted_network = true;
        self
    }
}

/// An IP network such as `192.0.2.0/24` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr` with `prefix` bits (clamped to 32 or 128);
    /// host bits are zeroed.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let prefix = match addr {
            IpAddr::V4(_) => prefix.min(32),
            IpAddr::V6(_) => prefix.min(128),
        };
        IpNetwork {
            addr: mask_exact(addr, prefix),
            prefix,
        }
    }

    /// A single address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        IpNetwork::new(addr, if addr.is_ipv4() { 32 } else { 128 })
    }

    /// Whether `ip` is inside. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
    /// counts as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask_exact(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask_exact(ip: IpAddr, prefix: u8) -> IpAddr {
    mask_ip(unmap(ip), prefix, prefix)
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an [`IpNetwork`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network {0:?}: expected an address or address/prefix")]
pub struct InvalidNetwork(pub String);

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;
    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host network).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidNetwork(s.to_owned());
        match s.split_once('/') {
            None => s.trim().parse().map(IpNetwork::host).map_err(|_| bad()),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
                let prefix: u8 = prefix.trim().parse().map_err(|_| bad())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if prefix > max {
                    return Err(bad());
                }
                Ok(IpNetwork::new(addr, prefix))
            }
        }
    }
}

/// The client network a triplet is keyed on: `/24` and `/64` by default, so
/// a sender whose retries leave from another host of the same farm (as large
/// providers' do) still matches its first attempt.
pub(crate) fn client_network(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpNetwork {
    let ip = unmap(ip);
    let prefix = if ip.is_ipv4() { v4_prefix } else { v6_prefix };
    IpNetwork::new(ip, prefix)
}

/// The sender as greylisting keys it, so that one real sender maps to one
/// triplet however its envelope address is decorated per message:
///
/// - SRS0/SRS1 forwarding addresses become the original sender they wrap
///   (the hash and timestamp change every day);
/// - BATV tags (`prvs=TAG=user`, `msprvs1=TAG=user`, `btv1==TAG==user`) are
///   removed (the tag changes with every message);
/// - a `+extension` is removed and every all-digit word of the local part
///   becomes `#` (VERP bounce addresses such as `bounce-1234-5678@list`), as
///   postgrey does;
/// - the domain is the lower-case A-label form.
///
/// The null sender `<>` normalises to the empty string.
pub fn normalise_sender(sender: &ReversePath) -> String {
    match sender {
        ReversePath::Null => String::new(),
        ReversePath::Mailbox(a) => normalise_address(a),
    }
}

fn normalise_address(address: &Address) -> String {
    let mut local = address.local_part().as_str().to_owned();
    let mut domain = address.domain().ascii().to_owned();
    if let Some((orig_local, orig_domain)) = unwrap_srs(&local) {
        local = orig_local;
        domain = orig_domain.to_ascii_lowercase();
    }
    let local = strip_batv(&local);
    let local = local.split('+').next().unwrap_or(local);
    format!("{}@{}", hash_numeric_words(local), domain)
}

/// Unwrap an SRS address's local part into the original (local, domain).
/// `SRS0=HHH=TT=orig-domain=orig-local` and
/// `SRS1=HHH=first-forwarder==HHH=TT=orig-domain=orig-local`
/// (the separator after `SRS0`/`SRS1` may be `=`, `+` or `-`).
fn unwrap_srs(local: &str) -> Option<(String, String)> {
    let tag = local.get(..4)?;
    let sep = *local.as_bytes().get(4)?;
    if !matches!(sep, b'=' | b'+' | b'-') {
        return None;
    }
    let rest = &local[5..];
    if tag.eq_ignore_ascii_case("srs0") {
        srs0_body(rest)
    } else if tag.eq_ignore_ascii_case("srs1") {
        // HHH=first-forwarder=<sep>HHH=TT=domain=local
        let mut parts = rest.splitn(3, '=');
        let (_hash, _forwarder, inner) = (parts.next()?, parts.next()?, parts.next()?);
        let inner = inner.strip_prefix(['=', '+', '-'])?;
        srs0_body(inner)
    } else {
        None
    }
}

/// `HHH=TT=orig-domain=orig-local`.
fn srs0_body(body: &str) -> Option<(String, String)> {
    let mut parts = body.splitn(4, '=');
    let (_hash, _time, domain, local) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if domain.is_empty() || local.is_empty() {
        return None;
    }
    Some((local.to_owned(), domain.to_owned()))
}

/// Remove a BATV tag from a local part (draft-levine-smtp-batv-01 §4:
/// `prvs=tag-val=loc-core`; Microsoft's `msprvs1=`; Barracuda's `btv1==tag==`).
fn strip_batv(local: &str) -> &str {
    let lower_prefix = |p: &str| {
        local
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    if lower_prefix("btv1==") {
        if let Some((_, core)) = local[6..].split_once("==")
            && !core.is_empty()
        {
            return core;
        }
        return local;
    }
    for prefix in ["prvs=", "msprvs1="] {
        if lower_prefix(prefix)
            && let Some((_, core)) = local[prefix.len()..].split_once('=')
            && !core.is_empty()
        {
            return core;
        }
    }
    local
}

/// Replace each all-digit word (a digit run not touching a letter, digit or
/// `_`) with `#`, like postgrey's `s/\b\d+\b/#/g`.
fn hash_numeric_words(local: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let chars: Vec<char> = local.chars().collect();
    let mut out = String::with_capacity(local.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word = &chars[start..i];
            if word.iter().all(|c| c.is_ascii_digit()) {
                out.push('#');
            } else {
                out.extend(word);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The recipient as greylisting keys it: the address with its domain in
/// lower-case A-labels; bare `<Postmaster>` is `postmaster`.
pub fn normalise_recipient(recipient: &ForwardPath) -> String {
    match recipient {
        ForwardPath::Postmaster => "postmaster".to_owned(),
        ForwardPath::Mailbox(a) => a.key(),
    }
}

/// The store key of a triplet: `network TAB sender TAB recipient`. A tab can
/// appear in none of the parts (RFC 5321 paths carry no control characters),
/// so distinct triplets never share a key.
pub(crate) fn triplet_key(network: &IpNetwork, sender: &str, recipient: &str) -> String {
    format!("{network}\t{sender}\t{recipient}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalise_sender(&ReversePath::parse(s).unwrap())
    }

    #[test]
    fn lower_cases_the_domain_only() {
        assert_eq!(norm("<John.Doe@Example.COM>"), "John.Doe@example.com");
        assert_eq!(norm("<>"), "");
    }

    #[test]
    fn strips_batv_tags() {
        assert_eq!(
            norm("<prvs=1234abcdef=user@example.com>"),
            "user@example.com"
        );
        assert_eq!(
            norm("<PRVS=9999abcdef=user@example.com>"),
            "user@example.com"
        );
        assert_eq!(
            norm("<msprvs1=17abcdEF=bounces-x@example.com>"),
            "bounces-x@example.com"
        );
        assert_eq!(
            norm("<btv1==53a0dd6e2f5==user@example.com>"),
            "user@example.com"
        );
        // A prefix without a core is left alone rather than emptied.
        assert_eq!(norm("<prvs=abc@example.com>"), "prvs=abc@example.com");
    }

    #[test]
    fn unwraps_srs() {
        assert_eq!(
            norm("<SRS0=HHH=TT=orig.example=alice@fwd.example>"),
            "alice@orig.example"
        );
        assert_eq!(
            norm("<srs0+a1b2=ZZ=Orig.Example=alice@fwd.example>"),
            "alice@orig.example"
        );
        assert_eq!(
            norm("<SRS1=XXX=fwd1.example==HHH=TT=orig.example=alice@fwd2.example>"),
            "alice@orig.example"
        );
        // Two different days' SRS addresses of one sender are one sender.
        assert_eq!(
            norm("<SRS0=abcd=T1=orig.example=bob@fwd.example>"),
            norm("<SRS0=wxyz=T2=orig.example=bob@fwd.example>")
        );
        // Not SRS after all.
        assert_eq!(norm("<SRS0@fwd.example>"), "SRS0@fwd.example");
        assert_eq!(norm("<srs0=only@fwd.example>"), "srs0=only@fwd.example");
    }

    #[test]
    fn srs_wrapping_batv_is_unwrapped_twice() {
        assert_eq!(
            norm("<SRS0=h=t=orig.example=prvs=0123abcdef=carol@fwd.example>"),
            "carol@orig.example"
        );
    }

    #[test]
    fn verp_numbers_and_extensions() {
        assert_eq!(
            norm("<bounce-12345-678@list.example>"),
            "bounce-#-#@list.example"
        );
        assert_eq!(
            norm("<owner-list+user=x.example@list.example>"),
            "owner-list@list.example"
        );
        assert_eq!(norm("<user123@example.com>"), "user123@example.com");
        assert_eq!(norm("<123.456@example.com>"), "#.#@example.com");
        assert_eq!(norm("<a_1-2@example.com>"), "a_1-#@example.com");
    }

    #[test]
    fn networks() {
        let n: IpNetwork = "192.0.2.77/24".parse().unwrap();
        assert_eq!(n.to_string(), "192.0.2.0/24");
        assert!(n.contains("192.0.2.1".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()));
        let h: IpNetwork = "2001:db8::1".parse().unwrap();
        assert_eq!(h.prefix(), 128);
        assert!(h.contains("2001:db8::1".parse().unwrap()));
        assert!(!h.contains("2001:db8::2".parse().unwrap()));
        assert!("192.0.2.0/33".parse::<IpNetwork>().is_err());
        assert!("nonsense".parse::<IpNetwork>().is_err());
        let everything: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.5".parse().unwrap()));
        assert_eq!(
            client_network("2001:db8:1:2:3:4:5:6".parse().unwrap(), 24, 64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_network("::ffff:198.51.100.7".parse().unwrap(), 24, 64).to_string(),
            "198.51.100.0/24"
        );
    }
}
