//! Accounts, their identities and limits, and authentication outcomes.

use std::fmt;

use portcullis_core::{Address, Domain, LocalPart, Reply};
use serde::{Deserialize, Serialize};

use crate::error::AccountError;

/// Who an account is: a mailbox (`user@domain`) or a whole domain.
///
/// Built through [`AccountId::parse`], [`AccountId::user`] or
/// [`AccountId::domain`], which canonicalise: the local part is folded to
/// lower case (mail systems treat `Alice@` and `alice@` as one mailbox,
/// though RFC 5321 §2.4 lets them differ) and the domain is kept in its
/// lower-case A-label form, so `Alice@Bücher.example` and
/// `alice@xn--bcher-kva.example` are the same account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountId {
    /// A user account: one mailbox.
    User(Address),
    /// A domain account: one password for every user of the domain.
    Domain(Domain),
}

impl AccountId {
    /// Parse a login name: `user@domain` names a user account, a bare
    /// domain names a domain account.
    pub fn parse(login: &str) -> Result<Self, AccountError> {
        let invalid = |source| AccountError::InvalidAddress {
            value: login.to_owned(),
            source,
        };
        if login.contains('@') {
            let address = Address::parse(login).map_err(invalid)?;
            Ok(AccountId::user(&address))
        } else {
            let domain = Domain::parse(login).map_err(invalid)?;
            Ok(AccountId::domain(&domain))
        }
    }

    /// The user account for `address` (canonicalised).
    pub fn user(address: &Address) -> Self {
        AccountId::User(canonical_address(address))
    }

    /// The domain account for `domain` (canonicalised).
    pub fn domain(domain: &Domain) -> Self {
        AccountId::Domain(canonical_domain(domain))
    }

    /// The key a backend stores this account under: `user@domain` or `domain`,
    /// canonical (see the type's docs).
    pub fn key(&self) -> String {
        match self {
            AccountId::User(address) => address_key(address),
            AccountId::Domain(domain) => domain.ascii().to_owned(),
        }
    }

    /// Whether this is a domain account.
    pub fn is_domain(&self) -> bool {
        matches!(self, AccountId::Domain(_))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// The canonical form of an address: lower-case local part, A-label domain.
pub(crate) fn canonical_address(address: &Address) -> Address {
    let lower = address.local_part().as_str().to_lowercase();
    // Lower-casing can lengthen some non-ASCII text past the RFC limit; keep
    // the original local part then rather than fail.
    let local = LocalPart::new(&lower).unwrap_or_else(|_| address.local_part().clone());
    Address::new(local, canonical_domain(address.domain()))
}

pub(crate) fn canonical_domain(domain: &Domain) -> Domain {
    Domain::parse(domain.ascii()).unwrap_or_else(|_| domain.clone())
}

/// The comparison key of an address (its canonical form, as text).
pub(crate) fn address_key(address: &Address) -> String {
    canonical_address(address).to_string()
}

/// An address an account may use as its envelope sender (`MAIL FROM`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Exactly this mailbox (compared canonically).
    Mailbox(Address),
    /// Any mailbox in this domain (not its subdomains).
    AnyInDomain(Domain),
}

impl Identity {
    /// Whether `address` is covered by this identity.
    pub fn covers(&self, address: &Address) -> bool {
        match self {
            Identity::Mailbox(own) => address_key(own) == address_key(address),
            Identity::AnyInDomain(domain) => address.domain() == domain,
        }
    }
}

/// Per-account limits for the policy layer to enforce. `None` means "no
/// account-specific limit" (the relay's defaults apply), not "unlimited".
///
/// The names follow `portcullis-policy`'s `AccountLimits` (its `rates`
/// hold the per-minute and per-hour ones); `invalid_recipients_per_day` has
/// no per-account counterpart there yet (its invalid-recipient cap is global).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountLimits {
    /// Messages accepted per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_per_minute: Option<u32>,
    /// Messages accepted per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_per_hour: Option<u32>,
    /// Recipients (`RCPT TO` accepted) per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients_per_minute: Option<u32>,
    /// Recipients (`RCPT TO` accepted) per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients_per_hour: Option<u32>,
    /// Distinct recipient addresses per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_recipients_per_day: Option<u32>,
    /// Recipients refused as invalid per day before the account is locked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_recipients_per_day: Option<u32>,
    /// Largest message in octets (RFC 1870 `SIZE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
}

/// One account as the directory holds it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Who it is.
    pub id: AccountId,
    /// A disabled account cannot authenticate. A disabled *user* account is
    /// still a local recipient: disabling stops sending, not receiving.
    pub enabled: bool,
    /// Extra FROM identities an admin mapped to the account (e.g. an old
    /// address the user forwards in), canonical, sorted.
    pub extra_identities: Vec<Address>,
    /// Account-specific limits.
    pub limits: AccountLimits,
}

impl Account {
    /// Every identity the account may send as: its own mailbox (user
    /// account) or any mailbox of its domain (domain account), then the
    /// admin-mapped extras.
    pub fn identities(&self) -> Vec<Identity> {
        let own = match &self.id {
            AccountId::User(address) => Identity::Mailbox(address.clone()),
            AccountId::Domain(domain) => Identity::AnyInDomain(domain.clone()),
        };
        std::iter::once(own)
            .chain(self.extra_identities.iter().cloned().map(Identity::Mailbox))
            .collect()
    }

    /// Whether the account may use `from` as its envelope sender. This is
    /// identity only; whether the account is enabled is checked at AUTH.
    pub fn may_send_as(&self, from: &Address) -> bool {
        let key = address_key(from);
        match &self.id {
            AccountId::User(address) if address_key(address) == key => return true,
            AccountId::Domain(domain) if from.domain() == domain => return true,
            _ => {}
        }
        self.extra_identities
            .iter()
            .any(|extra| address_key(extra) == key)
    }
}

/// The result of checking a login and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right and the account enabled.
    Authenticated(Account),
    /// Refused; the reason is for logs and abuse counters only.
    Denied(AuthDenied),
}

/// Why authentication was refused.
///
/// Clients must get the same reply whatever the reason
/// ([`AuthDenied::reply`]); a distinct reply would tell them which
/// accounts exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthDenied {
    /// No account by that login (or the login is not a valid address or domain).
    UnknownAccount,
    /// The account exists but the password is wrong, or the account has no
    /// password (a receive-only mailbox).
    WrongPassword,
    /// The password is right but the account is disabled. Reported only to
    /// a caller who gave the right password.
    Disabled,
}

impl AuthDenied {
    /// `535 5.7.8 Authentication credentials invalid` (RFC 4954 §6), for every reason.
    pub fn reply(&self) -> Reply {
        Reply::auth_failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn login_parsing_canonicalises() {
        let a = AccountId::parse("Alice@Example.ORG").unwrap();
        assert_eq!(a, AccountId::parse("alice@example.org").unwrap());
        assert_eq!(a.key(), "alice@example.org");
        let d = AccountId::parse("Bücher.Example").unwrap();
        assert_eq!(d, AccountId::parse("xn--bcher-kva.example").unwrap());
        assert_eq!(d.key(), "xn--bcher-kva.example");
        assert!(d.is_domain() && !a.is_domain());
        for bad in ["", "@", "a@", "@b.example", "a b@c", "a@@b", "exa mple.org"] {
            assert!(
                matches!(
                    AccountId::parse(bad),
                    Err(AccountError::InvalidAddress { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn user_account_identities() {
        let account = Account {
            id: AccountId::parse("alice@example.org").unwrap(),
            enabled: true,
            extra_identities: vec![addr("alice@old-isp.example")],
            limits: AccountLimits::default(),
        };
        assert!(account.may_send_as(&addr("ALICE@example.org")));
        assert!(account.may_send_as(&addr("alice@OLD-ISP.example")));
        assert!(!account.may_send_as(&addr("bob@example.org")));
        assert!(!account.may_send_as(&addr("alice@sub.example.org")));
        assert_eq!(
            account.identities(),
            vec![
                Identity::Mailbox(addr("alice@example.org")),
                Identity::Mailbox(addr("alice@old-isp.example"))
            ]
        );
    }

    #[test]
    fn domain_account_covers_its_domain_only() {
        let account = Account {
            id: AccountId::parse("Example.NET").unwrap(),
            enabled: true,
            extra_identities: vec![],
            limits: AccountLimits::default(),
        };
        assert!(account.may_send_as(&addr("anyone@example.net")));
        assert!(account.may_send_as(&addr("Other.User@EXAMPLE.net")));
        assert!(!account.may_send_as(&addr("anyone@sub.example.net")));
        assert!(!account.may_send_as(&addr("anyone@example.org")));
        let domain = Domain::parse("example.net").unwrap();
        assert!(Identity::AnyInDomain(domain).covers(&addr("x@example.net")));
    }

    #[test]
    fn every_denial_gets_the_same_reply() {
        let replies: Vec<_> = [
            AuthDenied::UnknownAccount,
            AuthDenied::WrongPassword,
            AuthDenied::Disabled,
        ]
        .iter()
        .map(|d| d.reply().to_wire(true))
        .collect();
        assert_eq!(
            replies[0],
            b"535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert!(replies.iter().all(|r| *r == replies[0]));
    }
}
