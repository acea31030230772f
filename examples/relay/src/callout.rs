//! `[backup_mx] verify = "callout"`: at `RCPT TO` for a backed-up domain,
//! ask the domain's primary whether the recipient exists
//! (`portcullis-queue`'s [`SmtpCallout`]: EHLO, `MAIL FROM:<>`, `RCPT TO`,
//! `QUIT`, never `DATA`), and judge with `portcullis-greylist`'s
//! [`RecipientFilter`]:
//!
//! * exists → continue (the mail is queued for the primary);
//! * does not exist (550/551/553 with `5.1.x`) → `550 5.1.1`;
//! * anything else (primary down, 4xx, a policy 5xx, no route, timeout,
//!   every connection slot busy) → continue, or `450 4.1.1` with
//!   `defer_unknown_recipients`. Never a 5xx: a backup MX that refuses a
//!   valid recipient loses that mail for good.
//!
//! The primaries are where delivery would go: the relay's
//! [`Router`] (the domain's route, else the
//! smarthost, else its MX hosts more preferred than this relay). Answers
//! are cached in memory by the callout (`callout_*_ttl_secs`). With
//! `learn_recipients` on as well, what deliveries taught
//! (the `[backup_mx] store`: `recipients.redb`, memory or Redis) is read first and the callout asks only about
//! recipients it knows nothing of; the callout's answers are not written
//! there.

use std::sync::Arc;

use portcullis_core::{
    Address, Clock, Context, Domain, Filter, ForwardPath, Recipient, Verdict, async_trait,
};
use portcullis_greylist::{
    GreylistStore, LearningConfig, RecipientFilter, RecipientLearning, RecipientOutcome,
    RecipientVerifier, Record, Space, StoreError,
};
use portcullis_queue::{CalloutResult, SmtpCallout, UnknownReason};

use crate::routing::Router;

/// `portcullis-greylist`'s verifier over an SMTP callout to the primaries
/// the relay's router finds for the recipient's domain.
pub(crate) struct CalloutVerifier {
    pub(crate) callout: Arc<SmtpCallout>,
    pub(crate) router: Arc<Router>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The metric label of a callout answer.
fn label(result: &CalloutResult) -> &'static str {
    match result {
        CalloutResult::Exists => "exists",
        CalloutResult::DoesNotExist(_) => "does_not_exist",
        CalloutResult::Unknown(UnknownReason::NoPrimary) => "no_primary",
        CalloutResult::Unknown(UnknownReason::Inconclusive(_)) => "inconclusive",
        CalloutResult::Unknown(UnknownReason::Unreachable(_)) => "unreachable",
        CalloutResult::Unknown(UnknownReason::Timeout) => "timeout",
        CalloutResult::Unknown(UnknownReason::Busy) => "busy",
        CalloutResult::Unknown(_) => "unknown",
        _ => "other",
    }
}

/// Map a callout answer onto what the recipient filter understands:
/// only a "does not exist" answer may refuse.
pub(crate) fn outcome(result: &CalloutResult) -> RecipientOutcome {
    match result {
        CalloutResult::Exists => RecipientOutcome::Accepted,
        CalloutResult::DoesNotExist(_) => RecipientOutcome::NoSuchUser,
        _ => RecipientOutcome::Inconclusive,
    }
}

#[async_trait]
impl RecipientVerifier for CalloutVerifier {
    async fn verify(&self, recipient: &Address) -> RecipientOutcome {
        if let Some(hit) = self.callout.cached(recipient) {
            crate::metrics::callout(label(&hit), true);
            return outcome(&hit);
        }
        let started = tokio::time::Instant::now();
        let hop = match self
            .router
            .next_hop(recipient.domain().ascii(), self.clock.now())
            .await
        {
            Ok(hop) => hop,
            Err(why) => {
                // No primary to ask (no route, no DNS, we are the best MX).
                tracing::info!(%recipient, reason = ?why, "callout: no route to the primary; recipient not verified");
                crate::metrics::callout("no_route", false);
                return RecipientOutcome::Inconclusive;
            }
        };
        let result = self.callout.verify(recipient, &hop.hosts).await;
        crate::metrics::store_call("callout", "verify", started.elapsed());
        crate::metrics::callout(label(&result), false);
        match &result {
            CalloutResult::DoesNotExist(reply)
            | CalloutResult::Unknown(
                UnknownReason::Inconclusive(reply) | UnknownReason::Unreachable(reply),
            ) => {
                tracing::info!(%recipient, result = label(&result), primary_reply = %reply, "callout")
            }
            _ => tracing::info!(%recipient, result = label(&result), "callout"),
        }
        outcome(&result)
    }
}

/// What deliveries taught (`learn_recipients`), read-only: the recipient
/// filter reads it first, and its writes (the callout's answers, already
/// cached by the callout with their own lifetimes) are dropped. Without
/// learning it knows nothing.
#[derive(Debug)]
struct LearnedOnly(Option<Arc<dyn GreylistStore>>);

impl GreylistStore for LearnedOnly {
    fn get(&self, space: Space, key: &str, now: u64) -> Result<Option<Record>, StoreError> {
        match &self.0 {
            Some(store) => store.get(space, key, now),
            None => Ok(None),
        }
    }
    fn put(&self, _: Space, _: &str, _: Record, _: u64, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn remove(&self, _: Space, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn sweep(&self, _: u64, _: usize) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// The recipient filter with the callout, for recipients of the backed-up
/// domains only (everything else continues untouched).
pub(crate) struct BackupCalloutFilter {
    domains: Vec<Domain>,
    inner: RecipientFilter,
}

impl BackupCalloutFilter {
    /// `learned`: the `learn_recipients` store, if on; `defer_unknown`:
    /// 450 4.1.1 when the callout is inconclusive, else continue.
    pub(crate) fn new(
        domains: Vec<Domain>,
        verifier: Arc<CalloutVerifier>,
        learned: Option<Arc<dyn GreylistStore>>,
        defer_unknown: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let learning = RecipientLearning::new(
            Arc::new(LearnedOnly(learned)),
            LearningConfig {
                defer_unknown,
                ..LearningConfig::default()
            },
        );
        BackupCalloutFilter {
            domains,
            inner: RecipientFilter::new(Arc::new(learning), clock).with_verifier(verifier),
        }
    }
}

#[async_trait]
impl Filter for BackupCalloutFilter {
    fn name(&self) -> &'static str {
        "callout"
    }

    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        match &rcpt.path {
            ForwardPath::Mailbox(a) if self.domains.contains(a.domain()) => {
                self.inner.rcpt_to(cx, rcpt).await
            }
            _ => Verdict::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{EnhancedCode, Reply};

    #[test]
    fn only_does_not_exist_refuses() {
        assert_eq!(outcome(&CalloutResult::Exists), RecipientOutcome::Accepted);
        assert_eq!(
            outcome(&CalloutResult::DoesNotExist(Reply::no_such_user())),
            RecipientOutcome::NoSuchUser
        );
        for unknown in [
            UnknownReason::NoPrimary,
            UnknownReason::Timeout,
            UnknownReason::Busy,
            UnknownReason::Inconclusive(Reply::new(550, (5, 7, 1), "relaying denied")),
            UnknownReason::Unreachable(Reply::new(421, (4, 4, 2), "gone")),
        ] {
            let r = CalloutResult::Unknown(unknown);
            assert_eq!(outcome(&r), RecipientOutcome::Inconclusive, "{r:?}");
        }
    }

    async fn rcpt(f: &BackupCalloutFilter, cx: &mut Context, to: &str) -> Verdict {
        let mut r = Recipient::new(ForwardPath::parse(to).unwrap());
        f.rcpt_to(cx, &mut r).await
    }

    /// The filter over a callout to a primary that is down: what learning
    /// knows is answered without a callout; other domains are left alone;
    /// an unknown recipient is asked about, and the inconclusive answer
    /// accepted or deferred, never refused.
    #[tokio::test]
    async fn learned_first_then_the_callout_and_only_for_backed_up_domains() {
        use portcullis_core::{Client, Envelope, MailParams, ManualClock, ReversePath};
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_unix(1_767_268_800));
        let customer = Domain::parse("customer.example").unwrap();
        let transport = portcullis_queue::SmtpTransport::new(
            portcullis_queue::SmtpTransportConfig::new("backup.example.net")
                .with_tls(portcullis_queue::TlsPolicy::Never),
        )
        .unwrap();
        let router = Arc::new(Router::new(
            vec![(
                customer.clone(),
                crate::config::HostPort {
                    host: down.ip().to_string(),
                    port: down.port(),
                },
            )],
            None,
            None,
            Arc::new(transport),
            "backup.example.net".into(),
        ));
        let callout = Arc::new(
            SmtpCallout::new(
                portcullis_queue::CalloutConfig::new("backup.example.net")
                    .with_tls(portcullis_queue::TlsPolicy::Never),
                clock.clone(),
            )
            .unwrap(),
        );
        let store: Arc<dyn GreylistStore> = Arc::new(portcullis_greylist::MemoryStore::new());
        let learning = RecipientLearning::new(store.clone(), LearningConfig::default());
        let addr = |s: &str| Address::parse(s).unwrap();
        learning
            .learn(
                &addr("alice@customer.example"),
                RecipientOutcome::Accepted,
                clock.now(),
            )
            .unwrap();
        learning
            .learn(
                &addr("gone@customer.example"),
                RecipientOutcome::NoSuchUser,
                clock.now(),
            )
            .unwrap();
        let filter = |defer_unknown| {
            BackupCalloutFilter::new(
                vec![customer.clone()],
                Arc::new(CalloutVerifier {
                    callout: callout.clone(),
                    router: router.clone(),
                    clock: clock.clone(),
                }),
                Some(store.clone()),
                defer_unknown,
                clock.clone(),
            )
        };
        let mut cx = Context::new(Client::new("192.0.2.1:40000".parse().unwrap()));
        cx.envelope = Some(Envelope::new(
            ReversePath::parse("<a@world.example>").unwrap(),
            MailParams::default(),
        ));
        let accepting = filter(false);
        assert_eq!(
            rcpt(&accepting, &mut cx, "<alice@customer.example>").await,
            Verdict::Continue
        );
        assert_eq!(
            rcpt(&accepting, &mut cx, "<gone@customer.example>").await,
            Verdict::Reject(Reply::no_such_user())
        );
        assert_eq!(
            rcpt(&accepting, &mut cx, "<anyone@elsewhere.example>").await,
            Verdict::Continue
        );
        assert_eq!(callout.cache_len(), 0, "nothing was asked so far");
        // Not learned: asked; the primary is down, so accepted...
        assert_eq!(
            rcpt(&accepting, &mut cx, "<carol@customer.example>").await,
            Verdict::Continue
        );
        let carol = addr("carol@customer.example");
        assert!(matches!(
            callout.cached(&carol),
            Some(CalloutResult::Unknown(UnknownReason::Unreachable(_)))
        ));
        // ... or deferred with 450 4.1.1 when asked to.
        let v = rcpt(&filter(true), &mut cx, "<carol@customer.example>").await;
        assert!(
            matches!(&v, Verdict::Defer(r) if r.code() == 450 && r.enhanced() == Some(EnhancedCode::new(4, 1, 1))),
            "{v:?}"
        );
    }

    #[test]
    fn the_learned_view_reads_but_never_writes() {
        let store: Arc<dyn GreylistStore> = Arc::new(portcullis_greylist::MemoryStore::new());
        let learning = RecipientLearning::new(store.clone(), LearningConfig::default());
        let alice = Address::parse("alice@customer.example").unwrap();
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        learning
            .learn(&alice, RecipientOutcome::NoSuchUser, now)
            .unwrap();
        let view = RecipientLearning::new(
            Arc::new(LearnedOnly(Some(store))),
            LearningConfig::default(),
        );
        assert_eq!(
            view.check(&alice, now),
            portcullis_greylist::RecipientDecision::Invalid
        );
        let bob = Address::parse("bob@customer.example").unwrap();
        view.learn(&bob, RecipientOutcome::Accepted, now).unwrap();
        assert_eq!(
            view.check(&bob, now),
            portcullis_greylist::RecipientDecision::Unknown
        );
        let nothing =
            RecipientLearning::new(Arc::new(LearnedOnly(None)), LearningConfig::default());
        assert_eq!(
            nothing.check(&alice, now),
            portcullis_greylist::RecipientDecision::Unknown
        );
        // Unknown is deferred with 450 4.1.1 when asked to, never refused.
        let v = nothing.verdict(&portcullis_greylist::RecipientDecision::Unknown);
        assert!(
            matches!(&v, Verdict::Defer(r) if r.code() == 450 && r.enhanced() == Some(EnhancedCode::new(4, 1, 1))),
            "{v:?}"
        );
    }
}
