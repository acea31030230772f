//! Bulk decisions: count distinct recipients per checksum, consult the
//! known-bad list and the solicited-bulk allowlist, and say what to do.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{Action, ForwardPath, Reply, ReversePath, Verdict};

use crate::checksum::Checksum;
use crate::error::FingerprintError;
use crate::lists::{KnownBad, KnownBadHit, SolicitedBulkList};
use crate::message::Fingerprints;
use crate::store::{ChecksumStore, DEFAULT_WINDOW};

/// What to do with a message found to be bulk or known bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BulkAction {
    /// Refuse it: `554 5.7.1` (RFC 3463 §3.8: delivery not authorized, message refused).
    Reject,
    /// Accept it into quarantine ([`Action::Quarantine`]).
    Quarantine,
    /// Accept it with an `X-Portcullis-Bulk: count=N` header.
    Tag,
}

/// Thresholds and actions.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BulkConfig {
    /// At or above this many distinct recipients in the window a message is bulk.
    pub bulk_threshold: u64,
    /// The counting window.
    pub window: Duration,
    /// What to do with bulk.
    pub bulk_action: BulkAction,
    /// What to do with a known-bad hit ([`BulkAction::Tag`] is read as quarantine:
    /// a listed message is never merely tagged).
    pub known_bad_action: BulkAction,
    /// Similarity at which a fuzzy known-bad entry matches.
    pub known_bad_similarity: f64,
}

impl Default for BulkConfig {
    /// 50 recipients in 24 h tags the message; a known-bad hit is refused;
    /// fuzzy entries match at 0.7 (near copies with a changed name and date measure 0.7–0.9 on a short message).
    fn default() -> Self {
        BulkConfig {
            bulk_threshold: 50,
            window: DEFAULT_WINDOW,
            bulk_action: BulkAction::Tag,
            known_bad_action: BulkAction::Reject,
            known_bad_similarity: 0.7,
        }
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BulkOutcome {
    /// Below the threshold.
    Clean,
    /// At or above the threshold, but from an allowlisted sender or list.
    Solicited,
    /// Bulk: act as configured.
    Bulk(BulkAction),
    /// Listed as known bad.
    KnownBad {
        /// What matched.
        hit: KnownBadHit,
        /// What to do.
        action: BulkAction,
    },
}

/// The result of [`BulkChecker::check`].
#[must_use = "a bulk decision says whether to refuse, quarantine or tag the message"]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BulkDecision {
    /// Distinct recipients in the window, this message's included (the largest
    /// count among the message's counting keys).
    pub count: u64,
    /// The outcome.
    pub outcome: BulkOutcome,
    /// Set when the store failed: the decision then fails open (counts as 0).
    pub store_error: Option<String>,
}

impl BulkDecision {
    /// The verdict and message actions this decision asks for.
    pub fn verdict(&self) -> (Verdict, Vec<Action>) {
        let act = |action: BulkAction, why: String| match action {
            BulkAction::Reject => (Verdict::Reject(Reply::new(554, (5, 7, 1), why)), Vec::new()),
            BulkAction::Quarantine => (Verdict::Continue, vec![Action::Quarantine { reason: why }]),
            BulkAction::Tag => (
                Verdict::Continue,
                vec![Action::AddHeader {
                    name: "X-Portcullis-Bulk".into(),
                    value: format!("count={}", self.count),
                }],
            ),
        };
        match &self.outcome {
            BulkOutcome::Clean | BulkOutcome::Solicited => (Verdict::Continue, Vec::new()),
            BulkOutcome::Bulk(action) => act(
                *action,
                format!("Bulk mail refused ({} recipients)", self.count),
            ),
            BulkOutcome::KnownBad { action, .. } => {
                let action = match action {
                    BulkAction::Tag => BulkAction::Quarantine,
                    a => *a,
                };
                act(action, "Message matches a known-bad checksum".into())
            }
        }
    }
}

/// The plain bulk API: record a message's recipients and decide.
///
/// Thread-safe; share one per process (its lists reload in place).
#[derive(Clone)]
pub struct BulkChecker {
    store: Arc<dyn ChecksumStore>,
    config: BulkConfig,
    known_bad: Arc<KnownBad>,
    solicited: Arc<SolicitedBulkList>,
}

impl std::fmt::Debug for BulkChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkChecker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The recipient text bulk counting uses: the address key (domain in
/// lower-case A-labels) lower-cased, or `postmaster`.
pub fn recipient_key(path: &ForwardPath) -> String {
    path.address()
        .map_or_else(|| "postmaster".to_owned(), |a| a.key().to_lowercase())
}

impl BulkChecker {
    /// A checker over `store` with empty lists.
    pub fn new(store: Arc<dyn ChecksumStore>, config: BulkConfig) -> Self {
        BulkChecker {
            store,
            config,
            known_bad: Arc::new(KnownBad::default()),
            solicited: Arc::new(SolicitedBulkList::default()),
        }
    }

    /// Use this known-bad list (keep the `Arc` to reload it).
    pub fn with_known_bad(mut self, list: Arc<KnownBad>) -> Self {
        self.known_bad = list;
        self
    }

    /// Use this solicited-bulk allowlist (keep the `Arc` to reload it).
    pub fn with_solicited(mut self, list: Arc<SolicitedBulkList>) -> Self {
        self.solicited = list;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &BulkConfig {
        &self.config
    }

    /// Check a message sent by `sender` to `recipients` (already normalised,
    /// see [`recipient_key`]) at `now`: known-bad lists first (a listed
    /// message is not counted), then record every recipient under every
    /// counting key and compare the largest count with the threshold.
    pub fn check<'a>(
        &self,
        fp: &Fingerprints,
        sender: &ReversePath,
        recipients: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) -> BulkDecision {
        if let Some(hit) = self
            .known_bad
            .current()
            .check(fp, self.config.known_bad_similarity)
        {
            return BulkDecision {
                count: 0,
                outcome: BulkOutcome::KnownBad {
                    hit,
                    action: self.config.known_bad_action,
                },
                store_error: None,
            };
        }
        let keys = fp.counting_keys();
        let counted = self.count(&keys, recipients, now);
        let (count, store_error) = match counted {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e.to_string())),
        };
        let outcome = if count < self.config.bulk_threshold {
            BulkOutcome::Clean
        } else if self
            .solicited
            .current()
            .allows(sender, fp.list_id.as_deref())
        {
            BulkOutcome::Solicited
        } else {
            BulkOutcome::Bulk(self.config.bulk_action)
        };
        BulkDecision {
            count,
            outcome,
            store_error,
        }
    }

    fn count<'a>(
        &self,
        keys: &[Checksum],
        recipients: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        let recipients: Vec<&str> = recipients.into_iter().collect();
        self.store.record_recipients(keys, &recipients, now)?;
        self.store
            .max_distinct_recipients(keys, self.config.window, now)
    }
}

/// The outbound abuse signal: per sending account, the number of distinct
/// recipients of one fuzzy fingerprint (near copies of one message) in a
/// window. The policy crate compares it with its limit and locks the account.
///
/// Keys are derived from the account and each LSH band key (or the body
/// checksum when the message has no words), so they never mix with inbound
/// counts in a shared store.
#[derive(Clone)]
pub struct OutboundAbuse {
    store: Arc<dyn ChecksumStore>,
    window: Duration,
}

impl std::fmt::Debug for OutboundAbuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundAbuse")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl OutboundAbuse {
    /// Count in `store` over `window`.
    pub fn new(store: Arc<dyn ChecksumStore>, window: Duration) -> Self {
        OutboundAbuse { store, window }
    }

    fn keys(account: &str, fp: &Fingerprints) -> Vec<Checksum> {
        let base: Vec<Checksum> = match &fp.fuzzy {
            Some(f) => f.band_checksums().to_vec(),
            None => vec![fp.body],
        };
        base.iter()
            .map(|k| {
                let mut buf = Vec::with_capacity(account.len() + 33);
                buf.extend_from_slice(account.as_bytes());
                buf.push(0);
                buf.extend_from_slice(k.as_bytes());
                Checksum::derived("portcullis-fingerprint 2026 outbound v1", &buf)
            })
            .collect()
    }

    /// Record that `account` sent `fp` to `recipients` at `now`; return the
    /// account's distinct recipients of near copies of it in the window.
    pub fn observe<'a>(
        &self,
        account: &str,
        fp: &Fingerprints,
        recipients: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        let keys = Self::keys(account, fp);
        let recipients: Vec<&str> = recipients.into_iter().collect();
        self.store.record_recipients(&keys, &recipients, now)?;
        self.store.max_distinct_recipients(&keys, self.window, now)
    }

    /// The signal without recording anything.
    pub fn distinct_recipients(
        &self,
        account: &str,
        fp: &Fingerprints,
        now: SystemTime,
    ) -> Result<u64, FingerprintError> {
        self.store
            .max_distinct_recipients(&Self::keys(account, fp), self.window, now)
    }
}
