//! Rate limits, recipient caps, FROM rules, abuse locks, session caps and a
//! load gate for mail relays: what keeps an operator's own users (and
//! hijacked accounts) from sending spam through an outbound relay, and what
//! slows down abusive clients inbound.
//!
//! Every rule is a plain synchronous function of (configuration + store,
//! input, `now`) on [`Policy`], returning a core [`Verdict`]; [`PolicyFilter`]
//! runs them as a core [`Filter`]. Counters, blocks and lock records live in
//! a [`CounterStore`]: [`MemoryStore`] here (dashmap, one process) or the
//! Redis store in `portcullis-redis` (a fleet). The window algorithm and its
//! exact boundary behaviour are documented in [`store`].
//!
//! **I/O**: none in this crate. Time comes from the caller (`now`) or a
//! [`Clock`](portcullis_core::Clock); a networked store does its own I/O.
//! When the store fails the policy defers with `451 4.3.0` unless the
//! operator chose [`StoreFailure::FailOpen`].
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use portcullis_core::{Client, ForwardPath, MailParams, ManualClock, Clock, ReversePath, Verdict};
//! use portcullis_policy::{AccountLimits, MemoryStore, Policy, PolicyConfig, RateLimits};
//!
//! let mut config = PolicyConfig::default();
//! config.account_defaults = AccountLimits {
//!     rates: RateLimits { recipients_per_minute: Some(2), ..RateLimits::default() },
//!     distinct_recipients_per_day: Some(100),
//!     ..AccountLimits::default()
//! };
//! let policy = Policy::new(config, Arc::new(MemoryStore::new()));
//! let clock = ManualClock::default();
//!
//! let mut client = Client::new("192.0.2.7:40000".parse().unwrap());
//! client.authenticated = Some("alice@example.com".into());
//! let account = policy.account(&client);
//! let from = ReversePath::parse("<alice@example.com>").unwrap();
//! assert_eq!(policy.check_mail(&client, &account, &from, &MailParams::default(), clock.now()), Verdict::Continue);
//!
//! let rcpt = |s: &str| ForwardPath::parse(s).unwrap();
//! assert!(policy.check_rcpt(&client, &account, &from, &rcpt("<a@example.org>"), clock.now()).is_continue());
//! assert!(policy.check_rcpt(&client, &account, &from, &rcpt("<b@example.org>"), clock.now()).is_continue());
//! let third = policy.check_rcpt(&client, &account, &from, &rcpt("<c@example.org>"), clock.now());
//! assert_eq!(
//!     third.reply().unwrap().to_string(),
//!     "451 4.7.1 Rate limit exceeded (recipients per account), try again in 61 seconds"
//! );
//! clock.advance(Duration::from_secs(61));
//! assert!(policy.check_rcpt(&client, &account, &from, &rcpt("<c@example.org>"), clock.now()).is_continue());
//! ```
//!
//! [`Verdict`]: portcullis_core::Verdict
//! [`Filter`]: portcullis_core::Filter

#![forbid(unsafe_code)]

pub mod account;
pub mod config;
pub mod connection;
pub mod filter;
pub mod from;
pub mod lists;
pub mod memory;
pub mod policy;
pub mod store;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use account::{Account, AccountKind};
pub use config::{AbuseLock, AccountLimits, FailureCap, PolicyConfig, RateLimits, StoreFailure};
pub use connection::{
    GateDecision, Load, LoadGate, LoadThresholds, SessionLimiter, SessionLimits, SessionPermit,
};
pub use filter::PolicyFilter;
pub use from::{Directory, DirectoryError, FromCheckError, FromRules, FromViolation, header_from};
pub use lists::{AccessList, ListMatch, Pattern};
pub use memory::{LockJournal, MemoryStore};
pub use policy::{AbuseSignal, LockReport, Policy, Report, Rule, Violation};
pub use store::{
    Counter, CounterSnapshot, CounterStore, Counting, Distinct, LockRecord, LockState, Outcome,
    Request, StoreError, Window,
};
