//! Who is limited: the account a session sends as.

use std::net::IpAddr;

use portcullis_core::{Client, mask_ip};

/// The kind of an [`Account`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccountKind {
    /// An authenticated user, `user@domain` (or a bare user name).
    User,
    /// A domain account: one password for every user of the domain.
    Domain,
    /// A client network allowed to relay without AUTH.
    Network,
    /// An inbound client, keyed by its network (/24, /64 by default).
    Client,
}

/// The account a session is limited as. Its [`key`](Account::key) names it
/// in the counter store.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Account {
    kind: AccountKind,
    /// `rcpt:{tag}:{name}msg:{tag}:{name}`: the name, the key and the store
    /// keys of the per-account counters in one allocation, built once per
    /// session (a decision reads the name and a counter key: one cache
    /// line, not two).
    text: String,
    /// End of the `rcpt:` key in `text` (where the `msg:` key starts).
    split: usize,
    /// Byte offset of the last `@` of the name, found once.
    at: Option<usize>,
}

/// `rcpt:` + the tag and its colon: where the name starts in `Account::text`.
const NAME_AT: usize = "rcpt:".len() + 2;

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("kind", &self.kind)
            .field("key", &self.key())
            .finish()
    }
}

impl Account {
    /// An account of `kind` named `name` (lower-cased: AUTH identities and
    /// domains compare case-insensitively in practice).
    pub fn new(kind: AccountKind, name: &str) -> Self {
        let name = name.trim().to_ascii_lowercase();
        let tag = match kind {
            AccountKind::User => "u",
            AccountKind::Domain => "d",
            AccountKind::Network => "n",
            AccountKind::Client => "c",
        };
        let text = format!("rcpt:{tag}:{name}msg:{tag}:{name}");
        Account {
            kind,
            split: NAME_AT + name.len(),
            at: name.rfind('@'),
            text,
        }
    }

    /// Resolve the account of a session:
    /// - authenticated `user@domain` (or a bare name) → [`AccountKind::User`];
    /// - authenticated as a bare domain (`example.com`, contains a dot and no
    ///   `@`) when `domain_accounts` is set → [`AccountKind::Domain`];
    /// - unauthenticated from a trusted network → [`AccountKind::Network`]
    ///   keyed by the client network;
    /// - otherwise → [`AccountKind::Client`] keyed by the client network.
    pub fn resolve(client: &Client, domain_accounts: bool, v4_prefix: u8, v6_prefix: u8) -> Self {
        match &client.authenticated {
            Some(id) if domain_accounts && !id.contains('@') && id.contains('.') => {
                Account::new(AccountKind::Domain, id)
            }
            Some(id) => Account::new(AccountKind::User, id),
            None => {
                let net = client.network(v4_prefix, v6_prefix);
                let kind = if client.trusted_network {
                    AccountKind::Network
                } else {
                    AccountKind::Client
                };
                Account::new(kind, &net.to_string())
            }
        }
    }

    /// The kind.
    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    /// The name: the AUTH identity, the domain, or the network address.
    pub fn name(&self) -> &str {
        self.text.get(NAME_AT..self.split).unwrap_or_default()
    }

    /// The store key, e.g. `u:alice@example.com`.
    pub fn key(&self) -> &str {
        self.text.get("rcpt:".len()..self.split).unwrap_or_default()
    }

    /// Store key of the message-rate counter.
    pub(crate) fn msg_key(&self) -> &str {
        self.text.get(self.split..).unwrap_or_default()
    }

    /// Store key of the recipient-rate counter and of the distinct-recipient set.
    pub(crate) fn rcpt_key(&self) -> &str {
        self.text.get(..self.split).unwrap_or_default()
    }

    /// `(local part, domain)` of a `user@domain` name (split at the last `@`).
    pub(crate) fn split_name(&self) -> Option<(&str, &str)> {
        let (name, at) = (self.name(), self.at?);
        Some((name.get(..at)?, name.get(at + 1..)?))
    }

    /// The domain whose limits apply when the account has none of its own:
    /// the domain of a user, or the domain account itself.
    pub fn domain(&self) -> Option<&str> {
        match self.kind {
            AccountKind::User => self.split_name().map(|(_, d)| d),
            AccountKind::Domain => Some(self.name()),
            AccountKind::Network | AccountKind::Client => None,
        }
    }

    /// Whether this is an outbound account (not an inbound client).
    pub fn is_outbound(&self) -> bool {
        self.kind != AccountKind::Client
    }
}

/// The store-key form of a client network.
pub(crate) fn network_key(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    mask_ip(ip, v4_prefix, v6_prefix).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(peer: &str, auth: Option<&str>, trusted: bool) -> Client {
        let mut c = Client::new(peer.parse().unwrap());
        c.authenticated = auth.map(str::to_owned);
        c.trusted_network = trusted;
        c
    }

    #[test]
    fn resolves_each_kind() {
        let a = Account::resolve(
            &client("192.0.2.9:1", Some("Alice@Example.com"), false),
            true,
            24,
            64,
        );
        assert_eq!(
            (a.kind(), a.key(), a.domain()),
            (
                AccountKind::User,
                "u:alice@example.com",
                Some("example.com")
            )
        );
        let d = Account::resolve(
            &client("192.0.2.9:1", Some("example.org"), false),
            true,
            24,
            64,
        );
        assert_eq!((d.kind(), d.key()), (AccountKind::Domain, "d:example.org"));
        let u = Account::resolve(
            &client("192.0.2.9:1", Some("example.org"), false),
            false,
            24,
            64,
        );
        assert_eq!(u.kind(), AccountKind::User, "domain accounts are opt-in");
        let n = Account::resolve(&client("192.0.2.9:1", None, true), true, 24, 64);
        assert_eq!((n.kind(), n.key()), (AccountKind::Network, "n:192.0.2.0"));
        assert_eq!(
            (a.name(), a.msg_key(), a.rcpt_key(), a.split_name()),
            (
                "alice@example.com",
                "msg:u:alice@example.com",
                "rcpt:u:alice@example.com",
                Some(("alice", "example.com"))
            )
        );
        let c = Account::resolve(&client("[2001:db8::1]:1", None, false), true, 24, 64);
        assert_eq!(
            (c.kind(), c.key(), c.is_outbound()),
            (AccountKind::Client, "c:2001:db8::", false)
        );
    }
}
