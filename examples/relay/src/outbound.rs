//! `[outbound_bulk]`: the outbound abuse signal on the submission listener.
//! An authenticated account that sends near copies of one message
//! (portcullis-fingerprint's [`OutboundAbuse`]: per account, the distinct
//! recipients of one fuzzy fingerprint within a window) to more than the
//! configured number of recipients is reported to the policy crate
//! ([`Policy::signal_abuse`](portcullis_policy::Policy::signal_abuse)),
//! which locks the account as `[policy] abuse_lock_secs` and
//! `abuse_max_auto_unlocks` say. The message that crossed the limit is
//! refused (`554 5.7.1`); the lock refuses the account's next MAIL.
//!
//! The counts live in this process (`store = "memory"`, the default) or in
//! `[redis]` (`store = "redis"`: one count per account across every relay
//! of a fleet, so near copies spread over several relays add up; see
//! `stores`).

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Clock, Context, Filter, Reply, Verdict, async_trait};
use portcullis_fingerprint::{ChecksumStore, Fingerprinter, OutboundAbuse, recipient_key};
use portcullis_policy::AbuseSignal;
use serde::Deserialize;

use crate::reload::LivePolicy;

/// `[outbound_bulk]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct OutboundBulkSection {
    /// Lock an account past this many distinct recipients of one message
    /// (0: off).
    pub(crate) recipients: u64,
    pub(crate) window_secs: u64,
    /// `memory` or `redis` (`[redis]`: counts shared by every relay).
    pub(crate) store: String,
}

impl Default for OutboundBulkSection {
    fn default() -> Self {
        OutboundBulkSection {
            recipients: 0,
            window_secs: 3600,
            store: "memory".into(),
        }
    }
}

/// The checked `[outbound_bulk]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutboundBulk {
    /// More distinct recipients than this locks the account.
    pub(crate) recipients: u64,
    pub(crate) window: Duration,
}

impl OutboundBulkSection {
    /// `None` while off.
    pub(crate) fn check(&self) -> Option<OutboundBulk> {
        (self.recipients > 0).then(|| OutboundBulk {
            recipients: self.recipients,
            // The fingerprint store's counting needs a window of some length.
            window: Duration::from_secs(self.window_secs.max(60)),
        })
    }
}

/// The submission listener's filter for `[outbound_bulk]`.
pub(crate) struct OutboundBulkFilter {
    fingerprinter: Fingerprinter,
    outbound: OutboundAbuse,
    limit: u64,
    policy: Arc<LivePolicy>,
    clock: Arc<dyn Clock>,
}

impl OutboundBulkFilter {
    /// Counts go to `store` (kept across reloads; see `stores`).
    pub(crate) fn new(
        settings: OutboundBulk,
        store: Arc<dyn ChecksumStore>,
        policy: Arc<LivePolicy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        OutboundBulkFilter {
            fingerprinter: Fingerprinter::default(),
            outbound: OutboundAbuse::new(store, settings.window),
            limit: settings.recipients,
            policy,
            clock,
        }
    }
}

#[async_trait]
impl Filter for OutboundBulkFilter {
    fn name(&self) -> &'static str {
        "outbound_bulk"
    }

    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        let (Some(login), Some(envelope)) = (&cx.client.authenticated, &cx.envelope) else {
            return Verdict::Continue;
        };
        let now = self.clock.now();
        let fp = self.fingerprinter.fingerprint(message);
        let recipients: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| recipient_key(&r.path))
            .collect();
        let count =
            match self
                .outbound
                .observe(login, &fp, recipients.iter().map(String::as_str), now)
            {
                Ok(n) => n,
                Err(e) => {
                    // Fails open, like the fingerprint crate's own counts.
                    tracing::warn!(account = %login, error = %e, "outbound bulk count failed");
                    return Verdict::Continue;
                }
            };
        if count <= self.limit {
            return Verdict::Continue;
        }
        let policy = self.policy.policy();
        let account = policy.account(&cx.client);
        match policy.signal_abuse(
            &account,
            &AbuseSignal::BulkMessage { recipients: count },
            now,
        ) {
            Ok(record) => tracing::warn!(
                account = %login,
                recipients = count,
                limit = self.limit,
                lock = ?record.state,
                times_locked = record.times_locked,
                "outbound bulk: account locked"
            ),
            Err(e) => tracing::error!(
                account = %login,
                recipients = count,
                error = %e,
                "outbound bulk: locking the account failed"
            ),
        }
        Verdict::Reject(Reply::new(
            554,
            (5, 7, 1),
            "Too many recipients of one message from this account",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_window_at_least_a_minute() {
        assert_eq!(OutboundBulkSection::default().check(), None);
        let s = OutboundBulkSection {
            recipients: 5,
            window_secs: 1,
            ..OutboundBulkSection::default()
        };
        assert_eq!(
            s.check(),
            Some(OutboundBulk {
                recipients: 5,
                window: Duration::from_secs(60),
            })
        );
    }
}
