//! The crate's one error type.

use portcullis_core::{AddressError, Reply};

/// Why a directory could not answer, or why account data was refused.
///
/// A miss (no such account) is never an error: lookups return `Ok(None)` and
/// authentication returns [`AuthDenied`](crate::AuthDenied). An `Err` means
/// the directory could not decide, and the caller must answer with a
/// temporary failure ([`AccountError::auth_reply`]), never as if the account
/// did not exist.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The account file is not valid TOML or has a wrong or unknown key
    /// (the message names the key and the line).
    #[error("account file: {0}")]
    Parse(#[from] toml::de::Error),
    /// The account file could not be serialized (admin tooling).
    #[error("account file: {0}")]
    Serialize(#[from] toml::ser::Error),
    /// Reading the account file failed.
    #[error("reading account file: {0}")]
    Io(#[from] std::io::Error),
    /// A stored password hash is not a valid PHC string.
    #[error("account {account}: malformed password hash: {reason}")]
    MalformedHash {
        /// The account whose hash is bad.
        account: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored password hash uses an algorithm other than argon2.
    #[error(
        "account {account}: unsupported password hash algorithm {algorithm:?} (argon2id, argon2i or argon2d only)"
    )]
    UnsupportedHash {
        /// The account whose hash is refused.
        account: String,
        /// The PHC algorithm identifier found.
        algorithm: String,
    },
    /// An account name, domain or identity is not a valid address or domain.
    #[error("invalid address or domain {value:?}: {source}")]
    InvalidAddress {
        /// The text that did not parse.
        value: String,
        /// Why.
        #[source]
        source: AddressError,
    },
    /// The same account appears twice.
    #[error("account {0} is defined more than once")]
    Duplicate(String),
    /// An admin operation named an account that does not exist.
    #[error("no such account: {0}")]
    NoSuchAccount(String),
    /// Hashing a new password failed (bad parameters).
    #[error("password hashing: {0}")]
    Hash(String),
    /// A record in the backend holds a value this crate cannot use
    /// (e.g. a limit out of range, an unparsable address).
    #[error("corrupt account record {account}: {reason}")]
    CorruptRecord {
        /// The account whose record is bad.
        account: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The password verification task did not complete (runtime shutting down).
    #[error("password verification task failed: {0}")]
    Task(String),
    /// The PostgreSQL backend failed (connection lost and not re-established,
    /// query error, missing schema).
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

impl AccountError {
    /// The reply for an `AUTH` command the directory could not decide:
    /// `454 4.7.0 Temporary authentication failure` (RFC 4954 §6), so the
    /// client retries instead of treating its credentials as wrong.
    pub fn auth_reply(&self) -> Reply {
        Reply::new(454, (4, 7, 0), "Temporary authentication failure")
    }

    /// The reply for a `MAIL`/`RCPT` check the directory could not decide:
    /// `451 4.3.0` (a transient local problem).
    pub fn transaction_reply(&self) -> Reply {
        Reply::temporary_failure()
    }
}
