//! [`Filter`]s that consult an [`AccountDirectory`]: recipient validation
//! for local domains, and the authenticated sender's FROM identities.

use std::sync::Arc;

use portcullis_core::{
    Context, Domain, Filter, MailParams, Recipient, Reply, ReversePath, Verdict, async_trait,
};

use crate::account::AccountId;
use crate::account::canonical_domain;
use crate::directory::AccountDirectory;

/// Refuses `RCPT TO` mailboxes of the local domains that have no user
/// account: `550 5.1.1`. Recipients in other domains pass (whether they may
/// be relayed to is the relay's and the policy's decision), and so does
/// `<Postmaster>`, which RFC 5321 §4.5.1 requires to be accepted. A
/// directory failure defers with `451 4.3.0`, never rejects.
pub struct LocalRecipientFilter {
    directory: Arc<dyn AccountDirectory>,
    local_domains: Vec<Domain>,
}

impl LocalRecipientFilter {
    /// Validate recipients of `local_domains` (exact domains, not subdomains).
    pub fn new(directory: Arc<dyn AccountDirectory>, local_domains: Vec<Domain>) -> Self {
        LocalRecipientFilter {
            directory,
            local_domains: local_domains.iter().map(canonical_domain).collect(),
        }
    }
}

#[async_trait]
impl Filter for LocalRecipientFilter {
    fn name(&self) -> &'static str {
        "local-recipient"
    }

    async fn rcpt_to(&self, _cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        let Some(address) = rcpt.path.address() else {
            return Verdict::Continue; // bare <Postmaster>
        };
        if !self.local_domains.contains(address.domain()) || rcpt.path.is_postmaster() {
            return Verdict::Continue;
        }
        match self.directory.is_local_recipient(address).await {
            Ok(true) => Verdict::Continue,
            Ok(false) => Verdict::Reject(Reply::no_such_user()),
            Err(e) => Verdict::Defer(e.transaction_reply()),
        }
    }
}

/// Holds an authenticated client to its account's FROM identities at
/// `MAIL FROM`: its own address (any address of the domain for a domain
/// account) and the identities an admin mapped to it. Anything else is
/// refused with `550 5.7.1`. Unauthenticated sessions and the null sender
/// (`<>`, bounces) pass. Identities are read fresh from the directory, so
/// an identity mapped mid-session counts at the next `MAIL FROM`. A
/// directory failure defers with `451 4.3.0`.
pub struct SenderIdentityFilter {
    directory: Arc<dyn AccountDirectory>,
}

impl SenderIdentityFilter {
    /// Check senders against `directory`.
    pub fn new(directory: Arc<dyn AccountDirectory>) -> Self {
        SenderIdentityFilter { directory }
    }
}

#[async_trait]
impl Filter for SenderIdentityFilter {
    fn name(&self) -> &'static str {
        "sender-identity"
    }

    async fn mail_from(
        &self,
        cx: &mut Context,
        from: &mut ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        let (Some(login), Some(sender)) = (cx.client.authenticated.as_deref(), from.address())
        else {
            return Verdict::Continue;
        };
        let not_owned = || {
            Verdict::Reject(Reply::policy_rejected(
                "Sender address not owned by the authenticated user",
            ))
        };
        // The relay verified this login at AUTH; one that no longer parses
        // or names no account owns nothing.
        let Ok(id) = AccountId::parse(login) else {
            return not_owned();
        };
        match self.directory.may_send_as(&id, sender).await {
            Ok(true) => Verdict::Continue,
            Ok(false) => not_owned(),
            Err(e) => Verdict::Defer(e.transaction_reply()),
        }
    }
}
