//! Accounts for a Portcullis relay: who may log in (AUTH), with which
//! password, as which FROM identities, under which limits, and which
//! addresses are local recipients.
//!
//! ```
//! use portcullis_accounts::{
//!     hash_password_with, AccountDirectory, AccountId, AuthDenied, AuthOutcome, FileDirectory,
//!     HashParams,
//! };
//! use portcullis_core::Address;
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     // A tiny executor so the example needs no runtime.
//! #     use std::task::{Context, Poll, Waker};
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) { return v; } }
//! # }
//! // An admin hashes the password once (`hash_password` uses the default,
//! // stronger parameters; cheap ones keep this example fast).
//! let cheap = HashParams { memory_kib: 1024, iterations: 1, parallelism: 1 };
//! let hash = hash_password_with("correct horse", cheap)?;
//! let toml = format!(r#"
//!     [[user]]
//!     address = "alice@example.org"
//!     password_hash = "{hash}"
//!     identities = ["alice@old-isp.example"]
//!     limits = {{ messages_per_hour = 100, max_message_size = 10485760 }}
//!
//!     [[user]]
//!     address = "postmaster@example.org"   # no password: receives only
//! "#);
//! // The relay reads the file; this crate parses the text.
//! let directory = FileDirectory::from_toml(&toml)?;
//!
//! block_on(async {
//!     let outcome = directory.authenticate("Alice@example.org", b"correct horse").await?;
//!     let AuthOutcome::Authenticated(alice) = outcome else { panic!("{outcome:?}") };
//!     assert_eq!(alice.limits.messages_per_hour, Some(100));
//!     assert!(alice.may_send_as(&Address::parse("alice@old-isp.example")?));
//!     assert!(!alice.may_send_as(&Address::parse("bob@example.org")?));
//!
//!     let wrong = directory.authenticate("alice@example.org", b"guess").await?;
//!     assert_eq!(wrong, AuthOutcome::Denied(AuthDenied::WrongPassword));
//!     // Unknown users get the same reply, after the same argon2 work.
//!     let unknown = directory.authenticate("mallory@example.org", b"guess").await?;
//!     assert_eq!(unknown, AuthOutcome::Denied(AuthDenied::UnknownAccount));
//!     assert_eq!(AuthDenied::UnknownAccount.reply(), AuthDenied::WrongPassword.reply());
//!
//!     let postmaster = Address::parse("postmaster@example.org")?;
//!     assert!(directory.is_local_recipient(&postmaster).await?);
//!     assert!(!directory.is_local_recipient(&Address::parse("nobody@example.org")?).await?);
//!     assert!(directory.lookup(&AccountId::parse("example.org")?).await?.is_none());
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! # Pieces
//!
//! - [`AccountDirectory`]: the async trait a relay consults (contract in its
//!   docs). Accounts are [`AccountId::User`] (`user@domain`) or
//!   [`AccountId::Domain`] (one password for the whole domain, which may then
//!   send as any address of it).
//! - [`FileDirectory`]: accounts from a TOML [`AccountFile`], in memory,
//!   reloadable. Also a synchronous API.
//! - `PgDirectory` (feature `postgres`, on by default): accounts in
//!   PostgreSQL, with [`postgres::SCHEMA_SQL`], an idempotent
//!   [`migrate`](PgDirectory::migrate) and admin functions.
//! - [`hash_password`]: the argon2id PHC string an admin stores.
//! - Filters: [`LocalRecipientFilter`] (`550 5.1.1` for unknown mailboxes of
//!   the local domains) and [`SenderIdentityFilter`] (an authenticated client
//!   may send only as its identities).
//!
//! Relay-by-IP networks are relay configuration, not accounts.
//!
//! # I/O
//!
//! The file backend does none: the caller reads the file and hands over
//! the text (or a reader). The PostgreSQL backend owns its database
//! connections. New password hashes draw their salt from the OS RNG.
//! Password verification runs on tokio's blocking pool when called inside a
//! tokio runtime, inline otherwise.

#![forbid(unsafe_code)]

mod account;
mod directory;
mod error;
mod file;
mod filter;
mod password;
#[cfg(feature = "postgres")]
pub mod postgres;
mod record;

pub use account::{Account, AccountId, AccountLimits, AuthDenied, AuthOutcome, Identity};
pub use directory::AccountDirectory;
pub use error::AccountError;
pub use file::FileDirectory;
pub use filter::{LocalRecipientFilter, SenderIdentityFilter};
pub use password::{HashParams, hash_password, hash_password_with};
#[cfg(feature = "postgres")]
pub use postgres::PgDirectory;
pub use record::{AccountFile, DomainRecord, UserRecord};
/// Re-exported for [`PgDirectory::connect_config`].
#[cfg(feature = "postgres")]
pub use tokio_postgres;
