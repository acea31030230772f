//! From a scan result to a verdict: [`ScanPolicy::decide`] (plain, sync)
//! and the [`ScanFilter`] (stage `message`).

use std::sync::Arc;

use portcullis_core::{Action, Context, Filter, Reply, Verdict, async_trait};
use serde::{Deserialize, Serialize};

use crate::clamd::{ScanConfig, ScanError, ScanOutcome, ScanResult, ScannerConnector, scan_with};

/// What to do with a message the scanner flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnVirus {
    /// `554 5.7.1 Virus found: <name>`.
    #[default]
    Reject,
    /// Accept into quarantine ([`Action::Quarantine`]).
    Quarantine,
}

/// What to do when there is no answer (scanner unreachable, timeout,
/// `ERROR`, stream size limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnFailure {
    /// Fail closed: `451 4.3.0`, the client retries later.
    #[default]
    Defer,
    /// Fail open: log a warning and let the message through unscanned.
    Continue,
    /// Refuse for good: `554 5.7.0` (or `552 5.3.4` for the size limit).
    Reject,
}

/// How scan results become verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ScanPolicy {
    /// Found a virus.
    pub on_virus: OnVirus,
    /// No answer: connect failure, I/O error, timeout, scanner `ERROR`.
    pub on_failure: OnFailure,
    /// The message is longer than the scanner accepts (`INSTREAM size limit
    /// exceeded`). Separate because retrying will not help; fail-closed
    /// `Defer` by default like other failures.
    pub on_size_limit: OnFailure,
}

/// What a scan result means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScanDecision {
    /// Let it through.
    Continue,
    /// Let it through, but warn: it was not scanned (fail-open).
    ContinueUnscanned {
        /// Why it was not scanned.
        reason: String,
    },
    /// Accept into quarantine.
    Quarantine {
        /// Why, for the operator.
        reason: String,
    },
    /// Refuse temporarily (4xx).
    Defer(Reply),
    /// Refuse permanently (5xx).
    Reject(Reply),
}

impl ScanPolicy {
    /// The policy with `on_virus` set.
    pub fn with_on_virus(mut self, on_virus: OnVirus) -> Self {
        self.on_virus = on_virus;
        self
    }

    /// The policy with `on_failure` (and `on_size_limit`) set.
    pub fn with_on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self.on_size_limit = on_failure;
        self
    }

    /// The policy with `on_size_limit` set.
    pub fn with_on_size_limit(mut self, on_size_limit: OnFailure) -> Self {
        self.on_size_limit = on_size_limit;
        self
    }

    /// Decide what `result` means. Pure and synchronous.
    pub fn decide(&self, result: &ScanResult) -> ScanDecision {
        match result {
            Ok(ScanOutcome::Clean) => ScanDecision::Continue,
            Ok(ScanOutcome::Infected { signature }) => match self.on_virus {
                OnVirus::Reject => ScanDecision::Reject(Reply::new(
                    554,
                    (5, 7, 1),
                    format!("Virus found: {signature}"),
                )),
                OnVirus::Quarantine => ScanDecision::Quarantine {
                    reason: format!("virus found: {signature}"),
                },
            },
            Err(e @ ScanError::SizeLimitExceeded) => {
                failure(self.on_size_limit, e, || {
                    // RFC 3463 §3.4: X.3.4 message too big for system.
                    Reply::new(552, (5, 3, 4), "Message too big for the content scanner")
                })
            }
            Err(e) => failure(self.on_failure, e, || {
                Reply::new(554, (5, 7, 0), "Message could not be scanned")
            }),
        }
    }
}

fn failure(on: OnFailure, error: &ScanError, reject: impl FnOnce() -> Reply) -> ScanDecision {
    match on {
        OnFailure::Defer => ScanDecision::Defer(scan_deferred()),
        OnFailure::Continue => ScanDecision::ContinueUnscanned {
            reason: error.to_string(),
        },
        OnFailure::Reject => ScanDecision::Reject(reject()),
    }
}

/// `451 4.3.0`: the scanner could not decide, try again later.
pub fn scan_deferred() -> Reply {
    Reply::new(
        451,
        (4, 3, 0),
        "Message could not be scanned, please try again later",
    )
}

/// A [`Filter`] that scans each whole message (stage `message`) with clamd
/// and applies a [`ScanPolicy`].
pub struct ScanFilter {
    connector: Arc<dyn ScannerConnector>,
    config: ScanConfig,
    policy: ScanPolicy,
}

impl std::fmt::Debug for ScanFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanFilter")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ScanFilter {
    /// Scan through `connector` with these limits and this policy.
    pub fn new(
        connector: Arc<dyn ScannerConnector>,
        config: ScanConfig,
        policy: ScanPolicy,
    ) -> Self {
        ScanFilter {
            connector,
            config,
            policy,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &ScanPolicy {
        &self.policy
    }

    /// Scan and decide, without a [`Context`].
    pub async fn check(&self, message: &[u8]) -> ScanDecision {
        let result = scan_with(self.connector.as_ref(), message, &self.config).await;
        self.policy.decide(&result)
    }
}

#[async_trait]
impl Filter for ScanFilter {
    fn name(&self) -> &'static str {
        "content-scan"
    }

    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        match self.check(message).await {
            ScanDecision::Continue => Verdict::Continue,
            ScanDecision::ContinueUnscanned { reason } => {
                tracing::warn!(peer = %cx.client.peer, %reason, "content scan failed; accepting unscanned (fail-open)");
                Verdict::Continue
            }
            ScanDecision::Quarantine { reason } => {
                tracing::info!(peer = %cx.client.peer, %reason, "quarantining message");
                cx.actions.push(Action::Quarantine { reason });
                Verdict::Continue
            }
            ScanDecision::Defer(reply) => Verdict::defer(reply),
            ScanDecision::Reject(reply) => Verdict::reject(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infected() -> ScanResult {
        Ok(ScanOutcome::Infected {
            signature: "Eicar-Test".into(),
        })
    }

    #[test]
    fn virus_rejects_or_quarantines() {
        let reject = ScanPolicy::default().decide(&infected());
        let ScanDecision::Reject(r) = reject else {
            panic!("{reject:?}")
        };
        assert_eq!(r.to_wire(true), b"554 5.7.1 Virus found: Eicar-Test\r\n");
        let q = ScanPolicy::default()
            .with_on_virus(OnVirus::Quarantine)
            .decide(&infected());
        assert_eq!(
            q,
            ScanDecision::Quarantine {
                reason: "virus found: Eicar-Test".into()
            }
        );
    }

    #[test]
    fn failures_default_to_defer() {
        let errors = [
            Err(ScanError::ConnectTimeout),
            Err(ScanError::Timeout),
            Err(ScanError::NoReply),
            Err(ScanError::Scanner("x".into())),
            Err(ScanError::SizeLimitExceeded),
        ];
        for e in &errors {
            match ScanPolicy::default().decide(e) {
                ScanDecision::Defer(r) => {
                    assert_eq!(r.code(), 451);
                    assert_eq!(r.enhanced().map(|c| c.to_string()), Some("4.3.0".into()));
                }
                other => panic!("{e:?} -> {other:?}"),
            }
        }
        let open = ScanPolicy::default().with_on_failure(OnFailure::Continue);
        assert!(matches!(
            open.decide(&Err(ScanError::Timeout)),
            ScanDecision::ContinueUnscanned { .. }
        ));
        let strict_size = ScanPolicy::default().with_on_size_limit(OnFailure::Reject);
        match strict_size.decide(&Err(ScanError::SizeLimitExceeded)) {
            ScanDecision::Reject(r) => assert_eq!(r.code(), 552),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            strict_size.decide(&Err(ScanError::Timeout)),
            ScanDecision::Defer(_)
        ));
        assert_eq!(
            ScanPolicy::default().decide(&Ok(ScanOutcome::Clean)),
            ScanDecision::Continue
        );
    }
}
