//! The two BATV [`Filter`]s: outbound tagging of the envelope sender, and
//! inbound validation of bounces. Each has a plain synchronous method the
//! filter calls, for servers that do not use [`Filter`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_core::{
    Address, Clock, Context, Domain, Filter, ForwardPath, LocalPart, MailParams, Recipient, Reply,
    ReversePath, Verdict, async_trait,
};

use crate::prvs::{Prvs, PrvsTag, Verification};

/// A set of addresses compared with the local part folded to lower case and
/// the domain in its A-label form (policy lists, not delivery).
#[derive(Debug, Clone, Default)]
struct AddressSet(HashSet<String>);

impl AddressSet {
    fn key(address: &Address) -> String {
        format!(
            "{}@{}",
            address.local_part().as_str().to_lowercase(),
            address.domain().ascii()
        )
    }
    fn insert(&mut self, address: &Address) {
        self.0.insert(Self::key(address));
    }
    fn contains(&self, address: &Address) -> bool {
        !self.0.is_empty() && self.0.contains(&Self::key(address))
    }
}

/// Outbound: tag the envelope sender of mail from enabled domains or senders.
///
/// Never tags the null sender (`<>` has nothing to tag, RFC 5321 §4.5.5) and
/// never tags an address twice. If the tagged local part would exceed 64
/// octets the sender is left as it is.
#[derive(Debug, Clone)]
pub struct PrvsSigning {
    prvs: Arc<Prvs>,
    clock: Arc<dyn Clock>,
    domains: HashSet<String>,
    senders: AddressSet,
    exempt: AddressSet,
}

impl PrvsSigning {
    /// Tags nothing until domains or senders are enabled.
    pub fn new(prvs: Arc<Prvs>, clock: Arc<dyn Clock>) -> Self {
        PrvsSigning {
            prvs,
            clock,
            domains: HashSet::new(),
            senders: AddressSet::default(),
            exempt: AddressSet::default(),
        }
    }

    /// Tag senders in `domain` (exactly this domain, not subdomains).
    pub fn enable_domain(mut self, domain: &Domain) -> Self {
        self.domains.insert(domain.ascii().to_owned());
        self
    }

    /// Tag this one sender address.
    pub fn enable_sender(mut self, sender: &Address) -> Self {
        self.senders.insert(sender);
        self
    }

    /// Never tag this sender, even in an enabled domain.
    pub fn exempt_sender(mut self, sender: &Address) -> Self {
        self.exempt.insert(sender);
        self
    }

    /// Whether `sender` would be tagged (ignoring whether it already is).
    pub fn is_enabled_for(&self, sender: &Address) -> bool {
        !self.exempt.contains(sender)
            && (self.domains.contains(sender.domain().ascii()) || self.senders.contains(sender))
    }

    /// The tagged sender, or `None` to leave `from` as it is.
    pub fn tagged_sender(&self, from: &ReversePath, now: SystemTime) -> Option<ReversePath> {
        let address = from.address()?;
        if !self.is_enabled_for(address) {
            return None;
        }
        // AlreadyTagged and over-long local parts both mean: leave it.
        self.prvs.sign(address, now).ok().map(ReversePath::Mailbox)
    }
}

#[async_trait]
impl Filter for PrvsSigning {
    fn name(&self) -> &'static str {
        "batv-sign"
    }

    async fn mail_from(
        &self,
        _cx: &mut Context,
        from: &mut ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        if let Some(tagged) = self.tagged_sender(from, self.clock.now()) {
            *from = tagged;
        }
        Verdict::Continue
    }
}

/// What [`BounceValidation::check`] decided for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BounceDecision {
    /// Not a protected bounce and no valid tag: leave the recipient alone.
    Unaffected,
    /// A valid tag: deliver to `original` instead (the tag is stripped).
    Strip {
        /// The recipient without its tag.
        original: Address,
    },
    /// A bounce to a protected address without a valid tag.
    Refuse(Verification),
}

/// Inbound: bounces (null reverse path, or a configured bounce-like sender
/// such as `MAILER-DAEMON@…`) to a protected address must carry a valid prvs
/// tag; otherwise the recipient is refused with `550 5.7.1`. A valid tag is
/// stripped from any recipient, so mail reaches the real mailbox.
///
/// `<Postmaster>` and `postmaster@…` are always accepted (RFC 5321 §4.5.1).
#[derive(Debug, Clone)]
pub struct BounceValidation {
    prvs: Arc<Prvs>,
    clock: Arc<dyn Clock>,
    protected_domains: HashSet<String>,
    exempt_recipients: AddressSet,
    bounce_senders: HashSet<String>,
}

impl BounceValidation {
    /// Protects no domain until [`protect_domain`](Self::protect_domain);
    /// treats `<>` and `MAILER-DAEMON@…` as bounces.
    pub fn new(prvs: Arc<Prvs>, clock: Arc<dyn Clock>) -> Self {
        BounceValidation {
            prvs,
            clock,
            protected_domains: HashSet::new(),
            exempt_recipients: AddressSet::default(),
            bounce_senders: HashSet::from(["mailer-daemon".to_owned()]),
        }
    }

    /// Require valid tags on bounces to addresses in `domain`.
    pub fn protect_domain(mut self, domain: &Domain) -> Self {
        self.protected_domains.insert(domain.ascii().to_owned());
        self
    }

    /// Accept bounces to `recipient` without a tag (e.g. a role address that
    /// sends from systems that do not tag).
    pub fn exempt_recipient(mut self, recipient: &Address) -> Self {
        self.exempt_recipients.insert(recipient);
        self
    }

    /// Treat mail from senders with this local part (any domain,
    /// case-insensitive) as a bounce, like `<>`.
    pub fn bounce_sender(mut self, local_part: &str) -> Self {
        self.bounce_senders.insert(local_part.to_lowercase());
        self
    }

    /// Only `<>` counts as a bounce.
    pub fn null_sender_only(mut self) -> Self {
        self.bounce_senders.clear();
        self
    }

    /// Whether `from` is a bounce for this filter.
    pub fn is_bounce(&self, from: &ReversePath) -> bool {
        match from.address() {
            None => true,
            Some(a) => self
                .bounce_senders
                .contains(&a.local_part().as_str().to_lowercase()),
        }
    }

    /// Decide for one recipient of mail from `from` at `now`.
    pub fn check(&self, from: &ReversePath, to: &ForwardPath, now: SystemTime) -> BounceDecision {
        let Some(recipient) = to.address() else {
            return BounceDecision::Unaffected; // bare <Postmaster>
        };
        let verification = self.prvs.verify(recipient, now);
        if let Verification::Valid { original, .. } = verification {
            return BounceDecision::Strip { original };
        }
        let protected = self.protected_domains.contains(recipient.domain().ascii());
        if !protected || !self.is_bounce(from) || to.is_postmaster() {
            return BounceDecision::Unaffected;
        }
        // Exemptions name the real mailbox, tagged or not.
        let untagged = PrvsTag::parse(recipient.local_part().as_str(), true)
            .and_then(|tag| LocalPart::new(tag.local).ok())
            .map(|local| recipient.with_local_part(local));
        if self
            .exempt_recipients
            .contains(untagged.as_ref().unwrap_or(recipient))
        {
            return BounceDecision::Unaffected;
        }
        BounceDecision::Refuse(verification)
    }

    /// The reply for a refused bounce.
    pub fn refusal(verification: &Verification) -> Reply {
        Reply::new(
            550,
            (5, 7, 1),
            format!(
                "Invalid bounce: {} (we did not send the original message)",
                verification.describe()
            ),
        )
    }
}

#[async_trait]
impl Filter for BounceValidation {
    fn name(&self) -> &'static str {
        "batv-bounce"
    }

    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        // Without a transaction we cannot tell a bounce; another stage refuses that.
        let Some(envelope) = cx.envelope.as_ref() else {
            return Verdict::Continue;
        };
        match self.check(&envelope.reverse_path, &rcpt.path, self.clock.now()) {
            BounceDecision::Unaffected => Verdict::Continue,
            BounceDecision::Strip { original } => {
                rcpt.path = ForwardPath::Mailbox(original);
                Verdict::Continue
            }
            BounceDecision::Refuse(v) => Verdict::Reject(Self::refusal(&v)),
        }
    }
}

/// Inbound: a bounce to an SRS address at one of our forwarder domains is
/// rewritten back to the address it stands for (after the hash and age check);
/// an SRS address that fails the check is refused with `550 5.1.1`, since it
/// leads nowhere. Other recipients are left alone.
///
/// Forward rewriting belongs where the relay knows the message is forwarded
/// (alias expansion, at delivery), so it has no filter: call
/// [`Srs::forward`](crate::Srs::forward) there.
#[derive(Debug, Clone)]
pub struct SrsReverse {
    srs: Arc<crate::Srs>,
    clock: Arc<dyn Clock>,
    forwarder_domains: HashSet<String>,
}

impl SrsReverse {
    /// Reverse SRS addresses in `forwarder` (add more with [`also_domain`](Self::also_domain)).
    pub fn new(srs: Arc<crate::Srs>, clock: Arc<dyn Clock>, forwarder: &Domain) -> Self {
        SrsReverse {
            srs,
            clock,
            forwarder_domains: HashSet::from([forwarder.ascii().to_owned()]),
        }
    }

    /// Also reverse SRS addresses in `domain`.
    pub fn also_domain(mut self, domain: &Domain) -> Self {
        self.forwarder_domains.insert(domain.ascii().to_owned());
        self
    }

    /// The rewritten recipient, `Ok(None)` when `to` is not an SRS address of
    /// ours, or why it cannot be reversed.
    pub fn reversed(
        &self,
        to: &ForwardPath,
        now: SystemTime,
    ) -> Result<Option<Address>, crate::SrsError> {
        let Some(address) = to.address() else {
            return Ok(None);
        };
        if !self.forwarder_domains.contains(address.domain().ascii()) {
            return Ok(None);
        }
        match self.srs.reverse(address, now) {
            Ok(original) => Ok(Some(original)),
            Err(crate::SrsError::NotSrs) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Filter for SrsReverse {
    fn name(&self) -> &'static str {
        "srs-reverse"
    }

    async fn rcpt_to(&self, _cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        match self.reversed(&rcpt.path, self.clock.now()) {
            Ok(Some(original)) => {
                rcpt.path = ForwardPath::Mailbox(original);
                Verdict::Continue
            }
            Ok(None) => Verdict::Continue,
            // RFC 3463 §3.2: X.1.1 bad destination mailbox address.
            Err(e) => Verdict::Reject(Reply::new(
                550,
                (5, 1, 1),
                format!("Invalid SRS address: {e}"),
            )),
        }
    }
}
