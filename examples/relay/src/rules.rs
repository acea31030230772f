//! The relay's own rules, as the first [`Filter`] of every listener's chain:
//! who may send through which listener, and which recipients are accepted.
//!
//! The one rule that matters most: a client that has not authenticated and is
//! not in a configured relay network may only send to local (or backed-up)
//! recipients. Everything else is `554 5.7.1` — an open relay is the worst
//! bug a relay can have.

use std::sync::Arc;

use portcullis_core::{
    Address, Clock, Context, Domain, Envelope, Filter, ForwardPath, MailParams, Recipient, Reply,
    ReversePath, Verdict, async_trait,
};

use crate::config::{ForwardKey, ForwardTarget, Network, Settings};
use crate::maildir;

/// Local mailboxes are matched without regard to case (as the Maildir
/// directory names are), although RFC 5321 §2.4 lets a host distinguish.
pub(crate) fn mailbox_key(a: &Address) -> String {
    a.key().to_lowercase()
}

/// Which listener a session came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Inbound MX (port 25 in production): mail for local and backed-up domains.
    Mx,
    /// Submission (587/465): AUTH required, then relay anywhere.
    Submission,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Mx => "mx",
            Role::Submission => "submission",
        }
    }
}

/// Whether a local address has a mailbox besides the configured list
/// (an account in the account directory).
#[async_trait]
pub(crate) trait LocalUsers: Send + Sync {
    /// `Err` carries the 4xx reply for "could not decide" (directory down).
    async fn exists(&self, addr: &Address) -> Result<bool, Reply>;
}

/// No users beyond the configured mailboxes.
pub(crate) struct NoUsers;

#[async_trait]
impl LocalUsers for NoUsers {
    async fn exists(&self, _addr: &Address) -> Result<bool, Reply> {
        Ok(false)
    }
}

/// The rules' answer for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RcptCheck {
    /// Decided from the configuration alone.
    Decided(Verdict),
    /// A local address that is not configured: accepted iff the account
    /// directory knows it.
    AskDirectory(Address),
}

/// Where an accepted recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A local Maildir.
    Local(Address),
    /// A domain we are backup MX for: queue and forward to its primary.
    Backup,
    /// Anywhere else (only for authenticated or trusted clients).
    Remote,
}

/// The recipient and sender rules, shared by all sessions of all listeners.
pub(crate) struct RelayRules {
    local_domains: Vec<Domain>,
    mailboxes: Vec<String>,
    catch_all: bool,
    backup_domains: Vec<Domain>,
    relay_networks: Vec<Network>,
    forwards: Vec<(ForwardKey, ForwardTarget)>,
    users: Arc<dyn LocalUsers>,
    srs: Option<SrsRewriter>,
    learning: Option<RecipientLearner>,
}

/// Backup-MX recipient learning: what the primary said about recipients
/// of backed-up domains (fed by the delivery loop), and the clock.
pub(crate) struct RecipientLearner {
    pub(crate) learning: Arc<portcullis_greylist::RecipientLearning>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether the rules judge recipients at RCPT by what was learned
    /// (`verify = "learn"`). With `verify = "callout"` the callout filter
    /// reads the same store and judges (an unknown recipient is asked
    /// about, not deferred here).
    pub(crate) judge: bool,
}

/// SRS for forwarded mail: the rewriter, the domain of its addresses, and
/// the clock its timestamps come from.
pub(crate) struct SrsRewriter {
    pub(crate) srs: portcullis_batv::Srs,
    pub(crate) domain: Domain,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Whether a local part is an SRS address (`SRS0=…`, `SRS1=…`; libsrs2
/// also accepts `+` and `-` as the separator).
fn is_srs_local(local: &str) -> bool {
    local.get(..5).is_some_and(|p| {
        let (tag, sep) = p.split_at(4);
        (tag.eq_ignore_ascii_case("SRS0") || tag.eq_ignore_ascii_case("SRS1"))
            && matches!(sep, "=" | "+" | "-")
    })
}

impl RelayRules {
    pub(crate) fn new(settings: &Settings, users: Arc<dyn LocalUsers>) -> Self {
        RelayRules {
            local_domains: settings.local_domains.clone(),
            mailboxes: settings.local_mailboxes.iter().map(mailbox_key).collect(),
            catch_all: settings.catch_all,
            backup_domains: settings.backup_domains.clone(),
            relay_networks: settings.relay_networks.clone(),
            forwards: settings.forwards.clone(),
            users,
            srs: None,
            learning: None,
        }
    }

    /// Judge recipients of backed-up domains by what their primary said
    /// before (see [`learn_outcomes`](Self::learn_outcomes)).
    pub(crate) fn with_learning(mut self, learner: RecipientLearner) -> Self {
        self.learning = Some(learner);
        self
    }

    /// Feed the delivery outcomes of backed-up recipients into learning:
    /// delivered → valid, bounced with `5.1.1` → invalid, anything else
    /// teaches nothing.
    pub(crate) fn learn_outcomes(
        &self,
        rcpts: &[&Recipient],
        outcomes: &[portcullis_queue::Outcome],
    ) {
        use portcullis_greylist::RecipientOutcome;
        use portcullis_queue::Outcome;
        let Some(l) = &self.learning else {
            return;
        };
        let now = l.clock.now();
        for (r, o) in rcpts.iter().zip(outcomes) {
            let ForwardPath::Mailbox(addr) = &r.path else {
                continue;
            };
            if !self.backup_domains.contains(addr.domain()) {
                continue;
            }
            let outcome = match o {
                // `Relayed`: the primary took a NOTIFY=SUCCESS recipient.
                o if o.is_accepted() => RecipientOutcome::Accepted,
                Outcome::Bounced(reply) => RecipientOutcome::from_reply(reply),
                _ => RecipientOutcome::Inconclusive,
            };
            if let Err(e) = l.learning.learn(addr, outcome, now) {
                tracing::warn!(recipient = %addr, error = %e, "could not store a learned recipient");
            }
        }
    }

    /// The learned verdict for a recipient of a backed-up domain: known
    /// invalid → `550 5.1.1`; unknown → a 4xx or continue (never a 5xx).
    fn learned_verdict(&self, addr: &Address) -> Verdict {
        match &self.learning {
            Some(l) if l.judge && self.backup_domains.contains(addr.domain()) => {
                let decision = l.learning.check(addr, l.clock.now());
                l.learning.verdict(&decision)
            }
            _ => Verdict::Continue,
        }
    }

    /// Rewrite the sender of forwarded mail with SRS, and return bounces to
    /// SRS addresses to their original sender.
    pub(crate) fn with_srs(mut self, srs: SrsRewriter) -> Self {
        self.srs = Some(srs);
        self
    }

    /// The SRS sender for a message a client that may not relay sent to
    /// remote recipients (which only forwarding makes possible), if SRS is
    /// on and the sender is not null.
    pub(crate) fn srs_sender(&self, may_relay: bool, envelope: &Envelope) -> Option<ReversePath> {
        let srs = self.srs.as_ref()?;
        let sender = envelope.reverse_path.address()?;
        if may_relay
            || !envelope
                .recipients
                .iter()
                .any(|r| self.destination(&r.path) == Destination::Remote)
        {
            return None;
        }
        srs.srs
            .forward(sender, &srs.domain, srs.clock.now())
            .ok()
            .map(ReversePath::Mailbox)
    }

    /// Whether `ip` is in a configured relay network.
    pub(crate) fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.relay_networks.iter().any(|n| n.contains(ip))
    }

    pub(crate) fn is_local_domain(&self, d: &Domain) -> bool {
        self.local_domains.contains(d)
    }

    /// The postmaster mailbox that `<Postmaster>` (no domain) means.
    pub(crate) fn postmaster(&self) -> Option<Address> {
        let domain = self.local_domains.first()?.clone();
        let local = portcullis_core::LocalPart::new("postmaster").ok()?;
        Some(Address::new(local, domain))
    }

    /// Classify an address for delivery (after acceptance).
    pub(crate) fn destination(&self, path: &ForwardPath) -> Destination {
        match path {
            ForwardPath::Postmaster => self
                .postmaster()
                .map_or(Destination::Remote, Destination::Local),
            ForwardPath::Mailbox(a) if self.is_local_domain(a.domain()) => {
                Destination::Local(a.clone())
            }
            ForwardPath::Mailbox(a) if self.backup_domains.contains(a.domain()) => {
                Destination::Backup
            }
            ForwardPath::Mailbox(_) => Destination::Remote,
        }
    }

    fn forward_for(&self, a: &Address) -> Option<Address> {
        let key = mailbox_key(a);
        let hit = self
            .forwards
            .iter()
            .find(|(k, _)| matches!(k, ForwardKey::Address(x) if *x == key))
            .or_else(|| {
                self.forwards
                    .iter()
                    .find(|(k, _)| matches!(k, ForwardKey::Domain(d) if d == a.domain()))
            })?;
        Some(match &hit.1 {
            ForwardTarget::Address(t) => t.clone(),
            ForwardTarget::Domain(d) => Address::new(a.local_part().clone(), d.clone()),
        })
    }

    /// The verdict for one recipient; may rewrite it (forwarding rules).
    pub(crate) fn check_recipient(&self, may_relay: bool, rcpt: &mut Recipient) -> RcptCheck {
        let addr = match &rcpt.path {
            // RFC 5321 §4.5.1: <Postmaster> must be accepted.
            ForwardPath::Postmaster => return RcptCheck::Decided(Verdict::Continue),
            ForwardPath::Mailbox(a) => a.clone(),
        };
        // A reply or bounce to an address SRS made for forwarded mail goes
        // back to the original sender. The address is signed and dated, so
        // this relays only what we forwarded (not an open relay).
        if let Some(srs) = &self.srs
            && *addr.domain() == srs.domain
            && is_srs_local(addr.local_part().as_str())
        {
            return match srs.srs.reverse(&addr, srs.clock.now()) {
                Ok(original) => {
                    if rcpt.orcpt.is_none() {
                        rcpt.orcpt = Some(("rfc822".into(), addr.to_string()));
                    }
                    rcpt.path = ForwardPath::Mailbox(original);
                    RcptCheck::Decided(Verdict::Continue)
                }
                Err(_) => RcptCheck::Decided(Verdict::Reject(Reply::new(
                    550,
                    (5, 1, 1),
                    "Invalid or expired SRS address",
                ))),
            };
        }
        let local = self.is_local_domain(addr.domain());
        let ours = local || self.backup_domains.contains(addr.domain());
        // Routing hidden in the local part — the percent hack (`u%other@us`),
        // bang paths (`other!u@us`), a quoted `"u@other"@us` — would turn a
        // local address into a relay; we never interpret them, so refuse.
        let l = addr.local_part().as_str();
        if l.contains(['%', '!', '@']) || addr.local_part().needs_quoting() {
            return RcptCheck::Decided(Verdict::Reject(Reply::relay_denied()));
        }
        if !ours {
            return RcptCheck::Decided(if may_relay {
                Verdict::Continue
            } else {
                Verdict::Reject(Reply::relay_denied())
            });
        }
        if !local {
            // Backup MX: accepted and queued for the primary, unless
            // learning knows better.
            return RcptCheck::Decided(self.learned_verdict(&addr));
        }
        if let Some(target) = self.forward_for(&addr) {
            if rcpt.orcpt.is_none() {
                // RFC 3461 §4.2: keep the address the client gave for DSNs.
                rcpt.orcpt = Some(("rfc822".into(), addr.to_string()));
            }
            rcpt.path = ForwardPath::Mailbox(target);
            return RcptCheck::Decided(Verdict::Continue);
        }
        let known = rcpt.path.is_postmaster()
            || self.mailboxes.contains(&mailbox_key(&addr))
            || (self.catch_all && maildir::is_safe_mailbox_name(l));
        if known {
            RcptCheck::Decided(Verdict::Continue)
        } else if maildir::is_safe_mailbox_name(l) {
            RcptCheck::AskDirectory(addr)
        } else {
            RcptCheck::Decided(Verdict::Reject(Reply::no_such_user()))
        }
    }

    /// [`check_recipient`](Self::check_recipient), asking the directory when needed.
    pub(crate) async fn recipient_verdict(&self, may_relay: bool, rcpt: &mut Recipient) -> Verdict {
        match self.check_recipient(may_relay, rcpt) {
            RcptCheck::Decided(v) => v,
            RcptCheck::AskDirectory(addr) => match self.users.exists(&addr).await {
                Ok(true) => Verdict::Continue,
                Ok(false) => Verdict::Reject(Reply::no_such_user()),
                Err(reply) => Verdict::defer(reply),
            },
        }
    }
}

/// The relay's rules as the first filter of one listener's chain.
pub(crate) struct RelayFilter {
    pub(crate) rules: Arc<RelayRules>,
    pub(crate) role: Role,
}

impl RelayFilter {
    fn may_relay(&self, cx: &Context) -> bool {
        cx.client.authenticated.is_some() || cx.client.trusted_network
    }
}

#[async_trait]
impl Filter for RelayFilter {
    fn name(&self) -> &'static str {
        "relay-rules"
    }

    async fn mail_from(
        &self,
        cx: &mut Context,
        _from: &mut ReversePath,
        _params: &MailParams,
    ) -> Verdict {
        // RFC 6409 §4.3 / RFC 4954 §6: submission requires authentication.
        if self.role == Role::Submission && !self.may_relay(cx) {
            return Verdict::Reject(Reply::auth_required());
        }
        Verdict::Continue
    }

    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        self.rules.recipient_verdict(self.may_relay(cx), rcpt).await
    }

    async fn message(&self, _cx: &mut Context, message: &[u8]) -> Verdict {
        // RFC 5321 §6.3: a message with this many trace fields is looping.
        if received_count(message) >= MAX_HOPS {
            return Verdict::Reject(Reply::new(
                554,
                (5, 4, 6),
                "Too many hops: mail loop detected",
            ));
        }
        Verdict::Continue
    }
}

/// Trace fields (`Received:`) a message may carry before it is treated as
/// looping (Postfix's `hopcount_limit` is 50).
pub(crate) const MAX_HOPS: usize = 50;

/// How many `Received:` fields the header section holds.
pub(crate) fn received_count(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .take_while(|line| !(line.is_empty() || *line == b"\r"))
        .filter(|line| line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, check, parse};
    use portcullis_core::{Chain, Client, ParseOptions};

    fn rules(extra: &str) -> Arc<RelayRules> {
        let text = format!(
            "[local]\ndomains = [\"localhost\", \"example.org\"]\nmailboxes = [\"alice@example.org\"]\n\
             [backup_mx]\ndomains = [\"customer.example\"]\n{extra}"
        );
        let s = check(parse(&text).unwrap(), "t".into(), &Overrides::default()).unwrap();
        Arc::new(RelayRules::new(&s, Arc::new(NoUsers)))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn rcpt_verdict(rules: &Arc<RelayRules>, role: Role, auth: bool, path: &str) -> Verdict {
        let chain = Chain::new().with(Arc::new(RelayFilter {
            rules: rules.clone(),
            role,
        }));
        let mut cx = Context::new(Client::new("127.0.0.1:40000".parse().unwrap()));
        if auth {
            cx.client.authenticated = Some("alice@example.org".into());
        }
        let fp = match ForwardPath::parse_with(path, ParseOptions::default()) {
            Ok(fp) => fp,
            // What the session would send for an unparsable path.
            Err(e) => return Verdict::Reject(e.recipient_reply()),
        };
        let mut rcpt = Recipient::new(fp);
        block_on(chain.rcpt_to(&mut cx, &mut rcpt))
    }

    #[test]
    fn local_recipients_are_accepted_from_anyone() {
        let r = rules("");
        for p in [
            "<postmaster@localhost>",
            "<Postmaster>",
            "<POSTMASTER@LOCALHOST>",
            "<alice@example.org>",
            "<alice@EXAMPLE.ORG>",
            "<anyone@customer.example>",
        ] {
            assert_eq!(
                rcpt_verdict(&r, Role::Mx, false, p),
                Verdict::Continue,
                "{p}"
            );
        }
        assert_eq!(
            rcpt_verdict(&r, Role::Mx, false, "<bob@example.org>"),
            Verdict::Reject(Reply::no_such_user())
        );
    }

    #[test]
    fn no_open_relay_variant_passes() {
        let r = rules("");
        let denied = Verdict::Reject(Reply::relay_denied());
        for p in [
            "<user@other.example>",
            "<user@OTHER.EXAMPLE>",
            "<user%other.example@localhost>",
            "<user%other.example@LOCALHOST>",
            "<user%other.example@example.org>",
            "<other.example!user@localhost>",
            "<other.example!user@LocalHost>",
            "<@localhost:user@other.example>",
            "<@LOCALHOST:user@other.example>",
            "<\"user@other.example\"@localhost>",
            "<\"user%other.example\"@localhost>",
            "<\"user@other.example\"@LOCALHOST>",
            "<user@other.example@localhost>",
            "<user%other.example@customer.example>",
        ] {
            let v = rcpt_verdict(&r, Role::Mx, false, p);
            match &v {
                Verdict::Reject(reply) => assert!(
                    reply.enhanced().map(|e| e.to_string()) == Some("5.7.1".into())
                        || reply.code() == 501,
                    "{p}: {reply}"
                ),
                other => panic!("{p} accepted: {other:?}"),
            }
            if p.contains('%') || p.contains('!') || p.contains('"') || !p.contains('@') {
                assert_eq!(v, denied, "{p}");
            }
        }
    }

    #[test]
    fn authentication_or_a_relay_network_allows_relaying() {
        let r = rules("");
        assert_eq!(
            rcpt_verdict(&r, Role::Submission, true, "<user@other.example>"),
            Verdict::Continue
        );
        // Still no percent hack for authenticated users.
        assert_eq!(
            rcpt_verdict(&r, Role::Submission, true, "<u%other.example@localhost>"),
            Verdict::Reject(Reply::relay_denied())
        );
        let trusted = rules("[relay]\nnetworks = [\"192.0.2.0/24\"]\n");
        assert!(trusted.is_trusted("192.0.2.9".parse().unwrap()));
        assert!(
            !trusted.is_trusted("127.0.0.1".parse().unwrap()),
            "loopback is not special"
        );
        assert!(!rules("").is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn submission_requires_auth_for_mail_from() {
        let r = rules("");
        let f = RelayFilter {
            rules: r,
            role: Role::Submission,
        };
        let mut cx = Context::new(Client::new("127.0.0.1:1".parse().unwrap()));
        let mut from = ReversePath::parse("<a@b.example>").unwrap();
        let v = block_on(f.mail_from(&mut cx, &mut from, &MailParams::default()));
        assert_eq!(v, Verdict::Reject(Reply::auth_required()));
        cx.client.authenticated = Some("a".into());
        let v = block_on(f.mail_from(&mut cx, &mut from, &MailParams::default()));
        assert_eq!(v, Verdict::Continue);
    }

    #[test]
    fn forwarding_rewrites_and_keeps_orcpt() {
        let r = rules(
            "[forward]\n\"old@example.org\" = \"new@elsewhere.example\"\n\"@localhost\" = \"@example.org\"\n",
        );
        let mut rcpt = Recipient::new(ForwardPath::parse("<Old@example.org>").unwrap());
        assert_eq!(
            r.check_recipient(false, &mut rcpt),
            RcptCheck::Decided(Verdict::Continue)
        );
        assert_eq!(rcpt.path.to_string(), "<new@elsewhere.example>");
        assert_eq!(
            rcpt.orcpt,
            Some(("rfc822".into(), "Old@example.org".into()))
        );
        let mut rcpt = Recipient::new(ForwardPath::parse("<x@localhost>").unwrap());
        assert_eq!(
            r.check_recipient(false, &mut rcpt),
            RcptCheck::Decided(Verdict::Continue)
        );
        assert_eq!(rcpt.path.to_string(), "<x@example.org>");
        assert_eq!(
            r.destination(&rcpt.path),
            Destination::Local(Address::parse("x@example.org").unwrap())
        );
    }

    struct OneUser;

    #[async_trait]
    impl LocalUsers for OneUser {
        async fn exists(&self, addr: &Address) -> Result<bool, Reply> {
            if addr.domain().ascii() == "down.example" {
                return Err(Reply::temporary_failure());
            }
            Ok(mailbox_key(addr) == "carol@localhost")
        }
    }

    #[test]
    fn the_directory_decides_unconfigured_local_users() {
        let text = "[local]\ndomains = [\"localhost\", \"down.example\"]\n";
        let s = check(parse(text).unwrap(), "t".into(), &Overrides::default()).unwrap();
        let r = RelayRules::new(&s, Arc::new(OneUser));
        let v = |p: &str| {
            let mut rcpt = Recipient::new(ForwardPath::parse(p).unwrap());
            block_on(r.recipient_verdict(false, &mut rcpt))
        };
        assert_eq!(v("<Carol@localhost>"), Verdict::Continue);
        assert_eq!(
            v("<dave@localhost>"),
            Verdict::Reject(Reply::no_such_user())
        );
        assert_eq!(
            v("<x@down.example>"),
            Verdict::Defer(Reply::temporary_failure())
        );
        assert_eq!(v("<postmaster@down.example>"), Verdict::Continue);
    }

    #[test]
    fn looping_mail_is_refused() {
        let mut msg = Vec::new();
        for _ in 0..MAX_HOPS - 1 {
            msg.extend_from_slice(b"Received: from a by b; date\r\n\tcontinued\r\n");
        }
        msg.extend_from_slice(b"Subject: x\r\n\r\nReceived: in the body does not count\r\n");
        assert_eq!(received_count(&msg), MAX_HOPS - 1);
        let f = RelayFilter {
            rules: rules(""),
            role: Role::Mx,
        };
        let mut cx = Context::new(Client::new("127.0.0.1:1".parse().unwrap()));
        assert_eq!(block_on(f.message(&mut cx, &msg)), Verdict::Continue);
        let mut looped = b"RECEIVED: from c by d; date\r\n".to_vec();
        looped.extend_from_slice(&msg);
        let v = block_on(f.message(&mut cx, &looped));
        assert_eq!(v.reply().map(|r| r.code()), Some(554));
    }

    #[test]
    fn srs_rewrites_forwarded_senders_and_returns_bounces() {
        let clock = Arc::new(portcullis_core::ManualClock::at_unix(1_767_268_800));
        let text = "[local]\ndomains = [\"fwd.example\"]\n\
                    [forward]\n\"@fwd.example\" = \"@dest.example\"\n";
        let s = check(parse(text).unwrap(), "t".into(), &Overrides::default()).unwrap();
        let r = RelayRules::new(&s, Arc::new(NoUsers)).with_srs(SrsRewriter {
            srs: portcullis_batv::Srs::new(b"0123456789abcdef").unwrap(),
            domain: Domain::parse("fwd.example").unwrap(),
            clock: clock.clone(),
        });
        let mut env = Envelope::new(
            ReversePath::parse("<ann@origin.example>").unwrap(),
            MailParams::default(),
        );
        let mut rcpt = Recipient::new(ForwardPath::parse("<bob@fwd.example>").unwrap());
        assert_eq!(
            r.check_recipient(false, &mut rcpt),
            RcptCheck::Decided(Verdict::Continue)
        );
        env.recipients.push(rcpt);
        let srs_sender = r.srs_sender(false, &env).expect("forwarded: rewritten");
        let srs_addr = srs_sender.address().unwrap().clone();
        assert!(
            srs_addr.local_part().as_str().starts_with("SRS0="),
            "{srs_addr}"
        );
        assert_eq!(srs_addr.domain().ascii(), "fwd.example");
        // Relaying clients and bounces keep their sender.
        assert_eq!(r.srs_sender(true, &env), None);
        env.reverse_path = ReversePath::Null;
        assert_eq!(r.srs_sender(false, &env), None);

        // A bounce to the SRS address goes back to ann, from anyone.
        let mut back = Recipient::new(ForwardPath::Mailbox(srs_addr.clone()));
        assert_eq!(
            r.check_recipient(false, &mut back),
            RcptCheck::Decided(Verdict::Continue)
        );
        assert_eq!(back.path.to_string(), "<ann@origin.example>");
        // A forged or expired one is refused.
        let forged = format!("<SRS0=xxxx={}", &srs_addr.to_string()[10..]);
        let mut bad = Recipient::new(ForwardPath::parse(&format!("{forged}>")).unwrap());
        assert!(matches!(
            r.check_recipient(false, &mut bad),
            RcptCheck::Decided(Verdict::Reject(_))
        ));
        clock.advance(std::time::Duration::from_secs(40 * 86_400));
        let mut late = Recipient::new(ForwardPath::Mailbox(srs_addr));
        assert!(matches!(
            r.check_recipient(false, &mut late),
            RcptCheck::Decided(Verdict::Reject(_))
        ));
    }

    #[test]
    fn backup_recipients_are_learned_from_delivery_outcomes() {
        use portcullis_queue::Outcome;
        let clock = Arc::new(portcullis_core::ManualClock::at_unix(1_767_268_800));
        let text =
            "[local]\ndomains = [\"localhost\"]\n[backup_mx]\ndomains = [\"customer.example\"]\n";
        let s = check(parse(text).unwrap(), "t".into(), &Overrides::default()).unwrap();
        let learning = |defer_unknown| {
            Arc::new(portcullis_greylist::RecipientLearning::new(
                Arc::new(portcullis_greylist::MemoryStore::new()),
                portcullis_greylist::LearningConfig {
                    defer_unknown,
                    ..portcullis_greylist::LearningConfig::default()
                },
            ))
        };
        let r = RelayRules::new(&s, Arc::new(NoUsers)).with_learning(RecipientLearner {
            learning: learning(true),
            clock: clock.clone(),
            judge: true,
        });
        let rc = |p: &str| Recipient::new(ForwardPath::parse(p).unwrap());
        let (ok, gone, policy, later, local) = (
            rc("<ok@customer.example>"),
            rc("<gone@customer.example>"),
            rc("<policy@customer.example>"),
            rc("<later@customer.example>"),
            rc("<nobody@localhost>"),
        );
        // NOTIFY=SUCCESS recipients the primary took come back `Relayed`:
        // they exist as surely as delivered ones.
        let (relayed, passed_on) = (
            rc("<relayed@customer.example>"),
            rc("<passed-on@customer.example>"),
        );
        r.learn_outcomes(
            &[&ok, &gone, &policy, &later, &local, &relayed, &passed_on],
            &[
                Outcome::Delivered(Reply::new(250, (2, 0, 0), "ok")),
                Outcome::Bounced(Reply::new(550, (5, 1, 1), "no such user")),
                // A 5xx that is not 5.1.1 proves nothing about the mailbox.
                Outcome::Bounced(Reply::new(550, (5, 7, 1), "policy")),
                Outcome::Deferred(Reply::new(451, (4, 3, 0), "later")),
                Outcome::Bounced(Reply::new(550, (5, 1, 1), "no such user")),
                Outcome::Relayed {
                    reply: Reply::new(250, (2, 0, 0), "ok"),
                    dsn_passed_on: false,
                },
                Outcome::Relayed {
                    reply: Reply::new(250, (2, 0, 0), "ok"),
                    dsn_passed_on: true,
                },
            ],
        );
        let v = |rcpt: &Recipient| {
            let mut rcpt = rcpt.clone();
            match r.check_recipient(false, &mut rcpt) {
                RcptCheck::Decided(v) => v,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(v(&ok), Verdict::Continue);
        assert_eq!(v(&relayed), Verdict::Continue);
        assert_eq!(v(&passed_on), Verdict::Continue);
        assert_eq!(v(&gone), Verdict::Reject(Reply::no_such_user()));
        for unknown in [&policy, &later] {
            let verdict = v(unknown);
            assert!(
                verdict.reply().is_some_and(|r| r.code() / 100 == 4),
                "unknown is a 4xx, never a 5xx: {verdict:?}"
            );
        }
        // The invalid mark expires (3 hours): then unknown again.
        clock.advance(std::time::Duration::from_secs(4 * 3600));
        assert!(v(&gone).reply().is_some_and(|r| r.code() / 100 == 4));
        assert_eq!(v(&ok), Verdict::Continue);

        // verify = "callout": the rules still learn but leave judging to
        // the callout filter (which reads the same store).
        let store = learning(true);
        let r = RelayRules::new(&s, Arc::new(NoUsers)).with_learning(RecipientLearner {
            learning: store.clone(),
            clock: clock.clone(),
            judge: false,
        });
        r.learn_outcomes(
            &[&gone],
            &[Outcome::Bounced(Reply::new(550, (5, 1, 1), "no such user"))],
        );
        for rcpt in [&gone, &later] {
            let mut rcpt = rcpt.clone();
            assert_eq!(
                r.check_recipient(false, &mut rcpt),
                RcptCheck::Decided(Verdict::Continue)
            );
        }
        let ForwardPath::Mailbox(gone) = &gone.path else {
            unreachable!()
        };
        assert_eq!(
            store.check(gone, clock.now()),
            portcullis_greylist::RecipientDecision::Invalid
        );
    }

    #[test]
    fn destinations() {
        let r = rules("");
        assert_eq!(
            r.destination(&ForwardPath::Postmaster),
            Destination::Local(Address::parse("postmaster@localhost").unwrap())
        );
        assert_eq!(
            r.destination(&ForwardPath::parse("<a@customer.example>").unwrap()),
            Destination::Backup
        );
        assert_eq!(
            r.destination(&ForwardPath::parse("<a@other.example>").unwrap()),
            Destination::Remote
        );
    }
}
