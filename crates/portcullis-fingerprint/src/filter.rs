//! [`FingerprintFilter`]: bulk and known-bad checks at the end of the message.

use std::sync::Arc;

use portcullis_core::{Clock, Context, Filter, Reply, Verdict, async_trait};

use crate::bulk::{BulkChecker, OutboundAbuse, recipient_key};
use crate::message::Fingerprinter;

/// A [`Filter`] acting at end of message ([`Filter::message`]): fingerprints
/// the message, runs [`BulkChecker::check`] for the envelope's recipients and
/// turns the decision into a verdict and message actions.
///
/// With [`with_outbound`](Self::with_outbound), messages from authenticated
/// clients also feed the [`OutboundAbuse`] signal, and one that takes an
/// account to `limit` or more distinct recipients of near copies is refused
/// (`554 5.7.1`); locking the account is the policy crate's job.
#[derive(Debug, Clone)]
pub struct FingerprintFilter {
    fingerprinter: Arc<Fingerprinter>,
    checker: BulkChecker,
    outbound: Option<(OutboundAbuse, u64)>,
    clock: Arc<dyn Clock>,
}

impl FingerprintFilter {
    /// A filter with these parts.
    pub fn new(
        fingerprinter: Arc<Fingerprinter>,
        checker: BulkChecker,
        clock: Arc<dyn Clock>,
    ) -> Self {
        FingerprintFilter {
            fingerprinter,
            checker,
            outbound: None,
            clock,
        }
    }

    /// Also track the outbound abuse signal for authenticated senders.
    pub fn with_outbound(mut self, outbound: OutboundAbuse, limit: u64) -> Self {
        self.outbound = Some((outbound, limit));
        self
    }
}

#[async_trait]
impl Filter for FingerprintFilter {
    fn name(&self) -> &'static str {
        "fingerprint"
    }

    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        let Some(envelope) = &cx.envelope else {
            return Verdict::Continue;
        };
        let now = self.clock.now();
        let fp = self.fingerprinter.fingerprint(message);
        let recipients: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| recipient_key(&r.path))
            .collect();
        let decision = self.checker.check(
            &fp,
            &envelope.reverse_path,
            recipients.iter().map(String::as_str),
            now,
        );
        let (verdict, actions) = decision.verdict();
        if !verdict.is_continue() {
            return verdict;
        }
        if let (Some((outbound, limit)), Some(account)) = (&self.outbound, &cx.client.authenticated)
        {
            // A store failure fails open, like the inbound count.
            let count = outbound
                .observe(account, &fp, recipients.iter().map(String::as_str), now)
                .unwrap_or(0);
            if count >= *limit {
                return Verdict::Reject(Reply::new(
                    554,
                    (5, 7, 1),
                    "Too many recipients of one message from this account",
                ));
            }
        }
        cx.actions.extend(actions);
        verdict
    }
}
