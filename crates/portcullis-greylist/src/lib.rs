//! Greylisting and backup-MX recipient learning.
//!
//! **Greylisting** defers the first delivery attempt of an unknown
//! (client network, sender, recipient) triplet with
//! `451 4.7.1 Greylisted, please try again in N seconds`; a real MTA retries
//! after the delay and passes, most spam engines never do. Defaults are
//! postgrey's: a 300 s delay, a 2-day retry window, 35 days of memory, and
//! client networks auto-whitelisted after 5 passes. Senders are normalised
//! (BATV tags, SRS, VERP numbers, domain case) so one real sender is one
//! triplet; see [`normalise_sender`]. Authenticated and relay-network
//! clients are never greylisted; whitelists cover client networks, reverse
//! DNS names, senders, recipients and optionally the null sender; an admin
//! can release a triplet or a client at once.
//!
//! **Recipient learning** ([`RecipientLearning`], [`RecipientFilter`]) lets a
//! backup MX reject recipients the primary said do not exist (`550 5.1.1`),
//! continue for known ones, and defer (4xx, never 5xx) unknown ones.
//!
//! State lives behind the [`GreylistStore`] trait: [`MemoryStore`]
//! (`dashmap`), [`RedbStore`] (embedded, survives restart and crashes —
//! fsync per write by default, or periodic flushes with [`RedbSync::OnFlush`];
//! cargo feature `redb`, on by default), and a Redis store in
//! `portcullis-redis`. Expired entries read as misses at once; space is
//! reclaimed by [`Greylist::sweep`] in bounded steps (or Redis TTLs). The
//! decision logic performs no I/O and never reads the clock: time is passed
//! in (`now`) or read from a [`portcullis_core::Clock`] by the filters. Only
//! [`RedbStore`] touches the file system, in the file it is given.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use portcullis_core::{Clock, ManualClock, Reply, Verdict};
//! use portcullis_greylist::{Decision, Greylist, GreylistConfig, MemoryStore, Rule, Triplet};
//!
//! let clock = ManualClock::default();
//! let greylist = Greylist::new(Arc::new(MemoryStore::new()), GreylistConfig::default());
//! let attempt = Triplet::new(
//!     "192.0.2.10".parse().unwrap(),
//!     "<prvs=1234abcdef=alice@Example.ORG>".parse().unwrap(),
//!     "<bob@example.net>".parse().unwrap(),
//! );
//!
//! // First attempt: deferred for the whole delay.
//! let first = greylist.check(&attempt, clock.now());
//! assert_eq!(first.verdict(), Verdict::Defer(Reply::greylisted(300)));
//! assert_eq!(first.rule(), &Rule::NewTriplet);
//!
//! // A retry 2 minutes later is still too early...
//! clock.advance(Duration::from_secs(120));
//! assert_eq!(greylist.check(&attempt, clock.now()).verdict(), Verdict::Defer(Reply::greylisted(180)));
//!
//! // ...and one after the delay passes, from another host of the same /24,
//! // with a new BATV tag: still the same triplet.
//! clock.advance(Duration::from_secs(180));
//! let retry = Triplet::new(
//!     "192.0.2.77".parse().unwrap(),
//!     "<prvs=9999fedcba=alice@example.org>".parse().unwrap(),
//!     "<bob@example.net>".parse().unwrap(),
//! );
//! let pass = greylist.check(&retry, clock.now());
//! assert_eq!(pass, Decision::Pass { rule: Rule::Delayed { delayed_secs: 300 } });
//! assert_eq!(pass.verdict(), Verdict::Continue);
//! assert_eq!(pass.header().as_deref(), Some("delayed 300 seconds by portcullis-greylist"));
//! ```

#![forbid(unsafe_code)]

mod config;
mod filter;
mod greylist;
mod memory;
mod recipients;
#[cfg(feature = "redb")]
mod redb_store;
mod store;
mod triplet;

#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use config::{AddressPattern, FailureMode, GreylistConfig, Whitelist};
pub use filter::{GreylistFilter, RecipientFilter};
pub use greylist::{Decision, Greylist, HEADER_NAME, Rule};
pub use memory::MemoryStore;
pub use recipients::{
    LearningConfig, RecipientDecision, RecipientLearning, RecipientOutcome, RecipientVerifier,
};
#[cfg(feature = "redb")]
pub use redb_store::{RedbStore, RedbSync};
pub use store::{ENCODED_LEN, GreylistStore, Record, Space, StoreError};
pub use triplet::{
    ClientFacts, InvalidNetwork, IpNetwork, Triplet, normalise_recipient, normalise_sender,
};
