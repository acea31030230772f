//! Backup-MX recipient verification learning.
//!
//! A backup MX cannot see the primary's user list. It learns which recipients
//! exist from what the primary said: delivery outcomes fed in by the queue
//! ([`RecipientLearning::learn`]) and, at RCPT time, callouts through a
//! [`RecipientVerifier`]. A known-valid recipient continues, a known-invalid
//! one (the primary said 5.1.1) is rejected, and an unknown one is deferred
//! with a 4xx while learning: **never** a 5xx, since a backup MX that rejects
//! a valid recipient loses that mail for good.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{Address, EnhancedCode, Reply, Verdict, async_trait};

use crate::store::{GreylistStore, Record, Space, StoreError};

/// What the primary said about a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientOutcome {
    /// It accepted the recipient (2xx to RCPT, or delivered).
    Accepted,
    /// It said the mailbox does not exist (RFC 3463 `5.1.1`).
    NoSuchUser,
    /// Anything else (temporary failure, policy, unreachable): teaches nothing.
    Inconclusive,
}

impl RecipientOutcome {
    /// Classify the primary's reply to `RCPT TO`.
    ///
    /// Only `5.1.1` (RFC 3463 §3.2 "Bad destination mailbox address") counts
    /// as proof the mailbox does not exist; a bare `550` without an enhanced
    /// code may be policy, so it is inconclusive.
    pub fn from_reply(reply: &Reply) -> Self {
        if reply.is_positive() {
            RecipientOutcome::Accepted
        } else if reply.is_permanent() && reply.enhanced() == Some(EnhancedCode::new(5, 1, 1)) {
            RecipientOutcome::NoSuchUser
        } else {
            RecipientOutcome::Inconclusive
        }
    }
}

/// Asks the primary about a recipient, e.g. an SMTP callout (`RCPT TO`
/// without sending a message). Implementations perform I/O; the reference
/// relay does not implement it yet (it learns from delivery outcomes).
#[async_trait]
pub trait RecipientVerifier: Send + Sync {
    /// What the primary says about `recipient` now. A verifier that cannot
    /// reach the primary returns [`RecipientOutcome::Inconclusive`].
    async fn verify(&self, recipient: &Address) -> RecipientOutcome;
}

/// How recipient learning behaves.
#[derive(Debug, Clone)]
pub struct LearningConfig {
    /// How long an accepted recipient stays known valid (31 days, Postfix's
    /// `address_verify_positive_expire_time`).
    pub positive_ttl: Duration,
    /// How long a 5.1.1 stays known invalid (3 hours, short so a mailbox
    /// created on the primary is soon reachable through the backup too).
    pub negative_ttl: Duration,
    /// Whether unknown recipients are deferred (still learning) or let
    /// through (learning done or off; the primary decides later).
    pub defer_unknown: bool,
    /// The deferral for unknown recipients. Whatever it is set to, a
    /// non-4xx reply is sent as `451 4.3.0`: this path never rejects.
    pub unknown_reply: Reply,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            positive_ttl: Duration::from_secs(31 * 86_400),
            negative_ttl: Duration::from_secs(3 * 3600),
            defer_unknown: true,
            unknown_reply: Reply::new(
                450,
                (4, 1, 1),
                "Recipient address not yet verified, try again later",
            ),
        }
    }
}

/// What is known about a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientDecision {
    /// Known valid: continue.
    Valid,
    /// Known invalid: reject `550 5.1.1`.
    Invalid,
    /// Unknown (never learned, expired, or the store failed).
    Unknown,
}

/// Recipient learning over a [`GreylistStore`]: the plain synchronous API.
#[derive(Debug, Clone)]
pub struct RecipientLearning {
    store: Arc<dyn GreylistStore>,
    config: LearningConfig,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl RecipientLearning {
    /// Learning with `config` over `store`.
    pub fn new(store: Arc<dyn GreylistStore>, config: LearningConfig) -> Self {
        RecipientLearning { store, config }
    }

    /// The configuration.
    pub fn config(&self) -> &LearningConfig {
        &self.config
    }

    /// Feed in what the primary said about `recipient` at `now`.
    /// Inconclusive outcomes change nothing.
    pub fn learn(
        &self,
        recipient: &Address,
        outcome: RecipientOutcome,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let now = unix(now);
        let (valid, ttl) = match outcome {
            RecipientOutcome::Accepted => (true, self.config.positive_ttl),
            RecipientOutcome::NoSuchUser => (false, self.config.negative_ttl),
            RecipientOutcome::Inconclusive => return Ok(()),
        };
        let record = Record {
            first_seen: now,
            last_seen: now,
            count: 0,
            flag: valid,
        };
        self.store.put(
            Space::Recipient,
            &recipient.key(),
            record,
            now,
            now.saturating_add(ttl.as_secs()),
        )
    }

    /// What is known about `recipient` at `now`. A store failure reads as
    /// unknown, which defers: the safe side for a backup MX.
    pub fn check(&self, recipient: &Address, now: SystemTime) -> RecipientDecision {
        match self
            .store
            .get(Space::Recipient, &recipient.key(), unix(now))
        {
            Ok(Some(r)) if r.flag => RecipientDecision::Valid,
            Ok(Some(_)) => RecipientDecision::Invalid,
            Ok(None) => RecipientDecision::Unknown,
            Err(e) => {
                tracing::warn!(error = %e, "recipient store failed; treating recipient as unknown");
                RecipientDecision::Unknown
            }
        }
    }

    /// The verdict for a decision: `Continue`, `Reject(550 5.1.1)`, or for an
    /// unknown recipient `Defer(4xx)` while learning, else `Continue`.
    pub fn verdict(&self, decision: &RecipientDecision) -> Verdict {
        match decision {
            RecipientDecision::Valid => Verdict::Continue,
            RecipientDecision::Invalid => Verdict::Reject(Reply::no_such_user()),
            RecipientDecision::Unknown if self.config.defer_unknown => {
                Verdict::defer(self.config.unknown_reply.clone())
            }
            RecipientDecision::Unknown => Verdict::Continue,
        }
    }
}
