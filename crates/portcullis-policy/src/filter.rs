//! [`PolicyFilter`]: the [`Policy`] as a [`Filter`], one stage at a time.

use std::sync::Arc;

use portcullis_core::{
    Clock, Context, Filter, MailParams, Recipient, ReversePath, Verdict, async_trait,
};

use crate::policy::Policy;

/// Runs the policy's plain checks at each SMTP stage, reading time from
/// its clock:
///
/// | stage | check |
/// |---|---|
/// | connect | [`Policy::check_connect`] |
/// | auth | [`Policy::check_auth`] |
/// | MAIL | [`Policy::check_mail`] |
/// | RCPT | [`Policy::check_rcpt`] |
/// | message | [`Policy::check_message`] |
///
/// Failed AUTH attempts, invalid recipients learned later and abuse
/// signals have no stage of their own: the server calls
/// [`Policy::note_auth_failure`], [`Policy::note_invalid_recipient`] and
/// [`Policy::signal_abuse`] directly.
#[derive(Debug, Clone)]
pub struct PolicyFilter {
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
}

impl PolicyFilter {
    /// A filter over `policy` using `clock`.
    pub fn new(policy: Arc<Policy>, clock: Arc<dyn Clock>) -> Self {
        PolicyFilter { policy, clock }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }
}

#[async_trait]
impl Filter for PolicyFilter {
    fn name(&self) -> &'static str {
        "policy"
    }

    async fn connect(&self, cx: &mut Context) -> Verdict {
        self.policy.check_connect(&cx.client, self.clock.now())
    }

    async fn auth(&self, cx: &mut Context) -> Verdict {
        self.policy.check_auth(&cx.client, self.clock.now())
    }

    async fn mail_from(
        &self,
        cx: &mut Context,
        from: &mut ReversePath,
        params: &MailParams,
    ) -> Verdict {
        let account = self.policy.account(&cx.client);
        self.policy
            .check_mail(&cx.client, &account, from, params, self.clock.now())
    }

    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        let account = self.policy.account(&cx.client);
        let null = ReversePath::Null;
        let sender = cx.envelope.as_ref().map_or(&null, |e| &e.reverse_path);
        self.policy
            .check_rcpt(&cx.client, &account, sender, &rcpt.path, self.clock.now())
    }

    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        let account = self.policy.account(&cx.client);
        self.policy
            .check_message(&account, message, self.clock.now())
    }
}
