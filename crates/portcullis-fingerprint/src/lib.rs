//! Exact and fuzzy message checksums, bulk counting and known-bad lists.
//!
//! Inbound, this crate refuses bulk mail the way DCC does: *how many
//! different recipients got this same message?* Outbound, it spots one
//! account sending near copies of one message to many people and exposes that
//! count for the policy crate's abuse lock.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, UNIX_EPOCH};
//! use portcullis_core::{ReversePath, Verdict};
//! use portcullis_fingerprint::{
//!     fingerprint, BulkAction, BulkChecker, BulkConfig, MemoryChecksumStore,
//! };
//!
//! let copy = |name: &str, token: &str| format!(
//!     "From: deals@shop.example\r\nSubject: Offer\r\n\r\n\
//!      Dear {name}, our prices fell again this week.\r\n\
//!      Click https://shop.example/go?t={token} to see them.\r\n");
//!
//! // Per-recipient noise (name aside) is normalised away: same exact body checksum.
//! let a = fingerprint(copy("Ann", "a81f29c3d0e4").as_bytes());
//! let b = fingerprint(copy("Ann", "77d1e2f3a4b5").as_bytes());
//! assert_eq!(a.body, b.body);
//! // A different name changes the exact checksum but not the fuzzy one much.
//! let c = fingerprint(copy("Bob", "77d1e2f3a4b5").as_bytes());
//! assert_ne!(a.body, c.body);
//! assert!(a.fuzzy.as_ref().unwrap().similarity(c.fuzzy.as_ref().unwrap()) > 0.5);
//!
//! // Bulk counting: three distinct recipients reach the threshold.
//! let mut config = BulkConfig::default();
//! config.bulk_threshold = 3;
//! config.bulk_action = BulkAction::Reject;
//! let checker = BulkChecker::new(Arc::new(MemoryChecksumStore::default()), config);
//! let sender = ReversePath::parse("<deals@shop.example>").unwrap();
//! let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
//! let first = checker.check(&a, &sender, ["x@example.org", "y@example.org"], now);
//! assert_eq!(first.count, 2);
//! assert!(first.verdict().0.is_continue());
//! let second = checker.check(&b, &sender, ["z@example.org"], now);
//! assert_eq!(second.count, 3);
//! let (verdict, _) = second.verdict();
//! assert_eq!(verdict.reply().map(|r| r.code()), Some(554));
//! assert!(matches!(verdict, Verdict::Reject(_)));
//! ```
//!
//! # I/O
//!
//! None of its own. Counts live behind the synchronous [`ChecksumStore`]
//! trait ([`MemoryChecksumStore`] here, Redis in `portcullis-redis`); lists
//! are read from text or a reader the caller opens; time is passed in
//! (`now: SystemTime`) or read through [`portcullis_core::Clock`].
//!
//! # What is computed
//!
//! [`Fingerprinter::fingerprint`] (or [`fingerprint`] with defaults) parses the
//! message with `mail-parser` and returns [`Fingerprints`]:
//!
//! - **exact**: blake3 of each normalised text part and of each attachment's
//!   decoded content, a whole-body checksum over the normalised parts, and a
//!   checksum of the raw body as received (always, even when the message
//!   cannot be parsed). Each normalisation step is a switch, described in
//!   [`normalize`];
//! - **fuzzy**: a MinHash signature of word shingles ([`fuzzy`] explains why
//!   MinHash), with LSH band keys so near copies are found and counted with
//!   exact key look-ups, never by scanning;
//! - **header** checksums on request ([`HeaderChecksums`]): `From`, `Subject`,
//!   `Message-ID` shape.
//!
//! [`BulkChecker`] records recipients under the counting keys and decides
//! (reject `554 5.7.1`, quarantine, or tag `X-Portcullis-Bulk: count=N`),
//! honouring a reloadable [`KnownBad`] list and a [`SolicitedBulkList`].
//! [`OutboundAbuse`] is the outbound per-account signal.
//! [`FingerprintFilter`] does all of it at the end of the message.
//!
//! # Stores
//!
//! [`MemoryChecksumStore`] (a `DashMap`) for one process;
//! `portcullis_redis::checksum::RedisChecksumStore` for a fleet sharing
//! counts. Both pass one contract suite, `testing::checksum_store_contract`,
//! compiled with the `testing` cargo feature (hidden from these docs).
//!
//! # Cost
//!
//! On a 20 KiB multipart message (QP text + QP HTML + base64 attachment) the
//! exact fingerprint costs about 1.22× `mail-parser`'s parse alone in
//! instructions (1.2–1.3× in time; it includes the parse, whose QP and base64
//! decoding is about 70% of it) and exact + fuzzy about 1.45×; raw blake3 is
//! ~0.1×, and hashing the parts is about a third of what fingerprinting adds
//! (`docs/benchmarks.md`). With the default options nothing is parsed or
//! decoded twice: the parts `mail-parser` decoded are used as they are.
//! Normalisation is one pass over each text part into a buffer reused across
//! parts, skipping plain text sixteen bytes at a time (SSE2, through
//! `safe_arch`; eight elsewhere) and copying unchanged spans whole; an HTML
//! part is reduced to text within that same pass
//! ([`Normalization::normalize_html_into`]). The fuzzy signature adds one hash
//! per word, folded in as the word is scanned.

#![forbid(unsafe_code)]

pub mod bulk;
pub mod checksum;
mod error;
pub mod filter;
pub mod fuzzy;
pub mod lists;
pub mod message;
pub mod normalize;
pub mod store;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use bulk::{
    BulkAction, BulkChecker, BulkConfig, BulkDecision, BulkOutcome, OutboundAbuse, recipient_key,
};
pub use checksum::{Checksum, ChecksumParseError};
pub use error::FingerprintError;
pub use filter::FingerprintFilter;
pub use fuzzy::{FuzzyFingerprint, FuzzyIndex};
pub use lists::{KnownBad, KnownBadHit, KnownBadList, SolicitedBulk, SolicitedBulkList};
pub use message::{
    FingerprintOptions, Fingerprinter, Fingerprints, HeaderChecksums, HeaderField,
    MIN_COUNTED_WORDS, PartChecksum, PartKind,
};
pub use normalize::Normalization;
pub use store::{ChecksumStore, DEFAULT_WINDOW, MemoryChecksumStore};

/// Fingerprint `message` with the default options ([`FingerprintOptions::default`]).
///
/// Builds a parser per call; reuse a [`Fingerprinter`] for many messages.
pub fn fingerprint(message: &[u8]) -> Fingerprints {
    Fingerprinter::default().fingerprint(message)
}
