//! The [`Filter`]s: greylisting and recipient verification, both at RCPT.

use std::sync::Arc;

use portcullis_core::{
    Action, Clock, Context, Filter, ForwardPath, Recipient, ReversePath, Verdict, async_trait,
};

use crate::greylist::{Decision, Greylist, HEADER_NAME};
use crate::recipients::{
    RecipientDecision, RecipientLearning, RecipientOutcome, RecipientVerifier,
};
use crate::triplet::{ClientFacts, Triplet};

/// Greylisting at `RCPT TO`, through [`Greylist::check_with`].
///
/// The client's facts (authenticated, trusted network, reverse DNS) come
/// from the [`Context`]. When the configuration asks for it, a pass adds one
/// `X-Greylist` header to the message.
#[derive(Debug, Clone)]
pub struct GreylistFilter {
    greylist: Arc<Greylist>,
    clock: Arc<dyn Clock>,
}

impl GreylistFilter {
    /// A filter over `greylist`, reading time from `clock`.
    pub fn new(greylist: Arc<Greylist>, clock: Arc<dyn Clock>) -> Self {
        GreylistFilter { greylist, clock }
    }

    /// The decision for this context and recipient (what `rcpt_to` acts on).
    pub fn decide(&self, cx: &Context, rcpt: &Recipient) -> Decision {
        let sender = cx
            .envelope
            .as_ref()
            .map_or(ReversePath::Null, |e| e.reverse_path.clone());
        let triplet = Triplet::new(cx.client.ip(), sender, rcpt.path.clone());
        let facts = ClientFacts::from_client(&cx.client);
        self.greylist.check_with(&facts, &triplet, self.clock.now())
    }
}

#[async_trait]
impl Filter for GreylistFilter {
    fn name(&self) -> &'static str {
        "greylist"
    }

    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        if cx.envelope.is_none() {
            // RCPT before MAIL is the session's error to report, not ours.
            return Verdict::Continue;
        }
        let decision = self.decide(cx, rcpt);
        tracing::debug!(
            client = %cx.client.ip(),
            recipient = %rcpt.path,
            rule = %decision.rule(),
            pass = decision.is_pass(),
            "greylist decision"
        );
        if self.greylist.config().add_header
            && let Some(value) = decision.header()
        {
            let present = cx.actions.iter().any(
                |a| matches!(a, Action::AddHeader { name, .. } if name.eq_ignore_ascii_case(HEADER_NAME)),
            );
            if !present {
                cx.actions.push(Action::AddHeader {
                    name: HEADER_NAME.to_owned(),
                    value,
                });
            }
        }
        decision.verdict()
    }
}

/// Backup-MX recipient verification at `RCPT TO`: known valid continues,
/// known invalid is rejected `550 5.1.1`, unknown asks the verifier (when
/// there is one), learns its answer, and defers with a 4xx if still unknown.
/// Bare `<Postmaster>` always continues (RFC 5321 §4.5.1).
#[derive(Clone)]
pub struct RecipientFilter {
    learning: Arc<RecipientLearning>,
    verifier: Option<Arc<dyn RecipientVerifier>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RecipientFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientFilter")
            .field("learning", &self.learning)
            .field("verifier", &self.verifier.is_some())
            .finish_non_exhaustive()
    }
}

impl RecipientFilter {
    /// A filter that only uses what was learned from delivery outcomes.
    pub fn new(learning: Arc<RecipientLearning>, clock: Arc<dyn Clock>) -> Self {
        RecipientFilter {
            learning,
            verifier: None,
            clock,
        }
    }

    /// Also ask `verifier` about unknown recipients.
    pub fn with_verifier(mut self, verifier: Arc<dyn RecipientVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }
}

#[async_trait]
impl Filter for RecipientFilter {
    fn name(&self) -> &'static str {
        "recipient-verify"
    }

    async fn rcpt_to(&self, _cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        let ForwardPath::Mailbox(address) = &rcpt.path else {
            return Verdict::Continue;
        };
        let mut decision = self.learning.check(address, self.clock.now());
        if decision == RecipientDecision::Unknown
            && let Some(verifier) = &self.verifier
        {
            let outcome = verifier.verify(address).await;
            if let Err(e) = self.learning.learn(address, outcome, self.clock.now()) {
                tracing::warn!(error = %e, "could not store a verified recipient");
            }
            decision = match outcome {
                RecipientOutcome::Accepted => RecipientDecision::Valid,
                RecipientOutcome::NoSuchUser => RecipientDecision::Invalid,
                RecipientOutcome::Inconclusive => RecipientDecision::Unknown,
            };
        }
        self.learning.verdict(&decision)
    }
}
