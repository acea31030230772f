//! Account records as an admin writes them: the TOML file's entries and
//! the input of the PostgreSQL admin functions.

use portcullis_core::{Address, Domain};
use serde::{Deserialize, Serialize};

use crate::account::{Account, AccountId, AccountLimits, canonical_address};
use crate::error::AccountError;
use crate::password::StoredHash;

fn enabled_by_default() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A user account: one mailbox, its password hash, identities and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The mailbox, also the login name.
    pub address: Address,
    /// argon2 PHC string from [`hash_password`](crate::hash_password).
    /// Absent: a receive-only mailbox that cannot log in (e.g. `postmaster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// `false` refuses AUTH; mail to the mailbox is still accepted.
    #[serde(default = "enabled_by_default", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Extra addresses the account may send as, mapped by an admin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Address>,
    /// Account-specific limits.
    #[serde(default)]
    pub limits: AccountLimits,
}

impl UserRecord {
    /// An enabled account with no identities and default limits.
    pub fn new(address: Address, password_hash: Option<String>) -> Self {
        UserRecord {
            address,
            password_hash,
            enabled: true,
            identities: Vec::new(),
            limits: AccountLimits::default(),
        }
    }

    /// Check the record: the hash is argon2 and well formed.
    pub(crate) fn validate(&self) -> Result<(Account, Option<StoredHash>), AccountError> {
        let id = AccountId::user(&self.address);
        let hash = self
            .password_hash
            .as_deref()
            .map(|phc| StoredHash::parse(&id.key(), phc))
            .transpose()?;
        Ok((
            account(id, self.enabled, &self.identities, self.limits),
            hash,
        ))
    }
}

/// A domain account: one password covering every user of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRecord {
    /// The domain, also the login name.
    pub domain: String,
    /// argon2 PHC string from [`hash_password`](crate::hash_password).
    pub password_hash: String,
    /// `false` refuses AUTH.
    #[serde(default = "enabled_by_default", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Addresses outside the domain the account may also send as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Address>,
    /// Account-specific limits.
    #[serde(default)]
    pub limits: AccountLimits,
}

impl DomainRecord {
    /// An enabled domain account with no identities and default limits.
    pub fn new(domain: &str, password_hash: String) -> Self {
        DomainRecord {
            domain: domain.to_owned(),
            password_hash,
            enabled: true,
            identities: Vec::new(),
            limits: AccountLimits::default(),
        }
    }

    /// Check the record: the domain parses and the hash is argon2.
    pub(crate) fn validate(&self) -> Result<(Account, StoredHash), AccountError> {
        let domain =
            Domain::parse(&self.domain).map_err(|source| AccountError::InvalidAddress {
                value: self.domain.clone(),
                source,
            })?;
        let id = AccountId::domain(&domain);
        let hash = StoredHash::parse(&id.key(), &self.password_hash)?;
        Ok((
            account(id, self.enabled, &self.identities, self.limits),
            hash,
        ))
    }
}

fn account(id: AccountId, enabled: bool, identities: &[Address], limits: AccountLimits) -> Account {
    let mut extra: Vec<Address> = identities.iter().map(canonical_address).collect();
    extra.sort();
    extra.dedup();
    Account {
        id,
        enabled,
        extra_identities: extra,
        limits,
    }
}

/// The whole account file: `[[user]]` and `[[domain]]` tables.
///
/// ```toml
/// [[user]]
/// address = "alice@example.org"
/// password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
/// identities = ["alice@old-isp.example"]   # optional
/// enabled = true                            # optional, default true
/// limits = { messages_per_hour = 100, distinct_recipients_per_day = 500, max_message_size = 10485760 }
///
/// [[user]]
/// address = "postmaster@example.org"        # no password: receive only
///
/// [[domain]]
/// domain = "example.net"
/// password_hash = "$argon2id$…"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    /// User accounts (`[[user]]`).
    #[serde(default, rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserRecord>,
    /// Domain accounts (`[[domain]]`).
    #[serde(default, rename = "domain", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<DomainRecord>,
}

impl AccountFile {
    /// Parse the TOML text of an account file (syntax and keys only; the
    /// hashes are checked by [`FileDirectory`](crate::FileDirectory)).
    pub fn from_toml(text: &str) -> Result<Self, AccountError> {
        Ok(toml::from_str(text)?)
    }

    /// The TOML text of this file.
    pub fn to_toml(&self) -> Result<String, AccountError> {
        Ok(toml::to_string(self)?)
    }
}
