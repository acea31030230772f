//! The adapter: requests as Postfix 3.7 sends them, answered by real filters.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_core::{
    Action, Chain, Context, Filter, MailParams, ManualClock, Recipient, Reply, ReversePath,
    Verdict, async_trait,
};
use portcullis_greylist::{Greylist, GreylistConfig, GreylistFilter, MemoryStore};
use portcullis_policy::{AccountLimits, Policy, PolicyConfig, PolicyFilter, RateLimits};
use portcullis_policyd::{DeferStyle, PolicyAction, PolicyService, Request, RequestError};

mod support;
use support::rcpt;

fn with(mut r: Request, name: &str, value: &str) -> Request {
    let mut pairs: Vec<(String, String)> = r.attributes().to_vec();
    match pairs.iter_mut().find(|(n, _)| n == name) {
        Some(p) => p.1 = value.to_owned(),
        None => pairs.push((name.to_owned(), value.to_owned())),
    }
    r = Request::from_pairs(pairs);
    r
}

fn greylist_chain(clock: &Arc<ManualClock>, config: GreylistConfig) -> Chain {
    let greylist = Arc::new(Greylist::new(Arc::new(MemoryStore::new()), config));
    Chain::new().with(Arc::new(GreylistFilter::new(greylist, clock.clone())))
}

#[tokio::test]
async fn greylist_defers_then_passes_with_a_header() {
    let clock = Arc::new(ManualClock::default());
    let mut config = GreylistConfig::default();
    config.add_header = true;
    let service = PolicyService::new(greylist_chain(&clock, config));
    let mut session = service.session();
    let req = rcpt("192.0.2.10", "alice@example.org", "bob@example.net", "a.1");

    let first = session.answer(&req).await;
    assert_eq!(
        first.action,
        PolicyAction::DeferIfPermit("Greylisted, please try again in 300 seconds".into())
    );
    assert_eq!(first.decided_by, Some("greylist"));

    clock.advance(Duration::from_secs(299));
    let early = session.answer(&with(req.clone(), "instance", "a.2")).await;
    assert_eq!(
        early.action.to_string(),
        "DEFER_IF_PERMIT Greylisted, please try again in 1 seconds"
    );

    clock.advance(Duration::from_secs(1));
    let pass = session.answer(&with(req, "instance", "a.3")).await;
    assert_eq!(pass.verdict, Some(Verdict::Continue));
    assert_eq!(
        pass.action.to_wire(),
        b"action=PREPEND X-Greylist: delayed 300 seconds by portcullis-greylist\n\n"
    );
}

#[tokio::test]
async fn authenticated_clients_are_not_greylisted_and_reply_style_is_exact() {
    let clock = Arc::new(ManualClock::default());
    let service = PolicyService::new(greylist_chain(&clock, GreylistConfig::default()))
        .with_defer_style(DeferStyle::Reply);
    let mut session = service.session();
    let req = rcpt("192.0.2.10", "alice@example.org", "bob@example.net", "b.1");
    assert_eq!(
        session.answer(&req).await.action.to_wire(),
        b"action=451 4.7.1 Greylisted, please try again in 300 seconds\n\n"
    );
    let authed = with(with(req, "sasl_username", "alice"), "instance", "b.2");
    assert_eq!(session.answer(&authed).await.action, PolicyAction::Dunno);
}

/// Counts stage calls and records what the context held.
#[derive(Default)]
struct Probe {
    mail: AtomicUsize,
    rcpt: AtomicUsize,
    data: AtomicUsize,
    seen: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Filter for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    async fn connect(&self, cx: &mut Context) -> Verdict {
        self.seen
            .lock()
            .unwrap()
            .push(format!("connect {:?}", cx.client));
        Verdict::Continue
    }
    async fn helo(&self, cx: &mut Context) -> Verdict {
        self.seen
            .lock()
            .unwrap()
            .push(format!("helo {:?}", cx.client.helo));
        Verdict::Reject(Reply::new(550, (5, 7, 1), "no such HELO"))
    }
    async fn mail_from(&self, cx: &mut Context, from: &mut ReversePath, p: &MailParams) -> Verdict {
        self.mail.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(format!(
            "mail {from} size={:?} auth={:?} tls={} rdns={:?}",
            p.size, cx.client.authenticated, cx.client.tls, cx.client.reverse_dns
        ));
        if from
            .address()
            .is_some_and(|a| a.local_part().as_str() == "spammer")
        {
            return Verdict::Reject(Reply::policy_rejected("sender refused"));
        }
        Verdict::Continue
    }
    async fn rcpt_to(&self, cx: &mut Context, r: &mut Recipient) -> Verdict {
        self.rcpt.fetch_add(1, Ordering::SeqCst);
        let env = cx.envelope.as_ref().unwrap();
        self.seen.lock().unwrap().push(format!(
            "rcpt {} from {} after {}",
            r.path,
            env.reverse_path,
            env.recipients.len()
        ));
        Verdict::Continue
    }
    async fn data_start(&self, cx: &mut Context) -> Verdict {
        self.data.fetch_add(1, Ordering::SeqCst);
        let env = cx.envelope.as_ref().unwrap();
        self.seen
            .lock()
            .unwrap()
            .push(format!("data {} rcpts", env.recipients.len()));
        cx.actions.push(Action::AddHeader {
            name: "X-Checked".into(),
            value: "yes".into(),
        });
        Verdict::Continue
    }
}

#[tokio::test]
async fn stages_follow_protocol_state_and_mail_runs_once_per_instance() {
    let probe = Arc::new(Probe::default());
    let service = PolicyService::new(Chain::new().with(probe.clone()));
    let mut s = service.session();
    let r1 = rcpt("2001:db8::7", "Alice@Example.ORG", "bob@example.net", "c.1");
    let r1 = with(
        with(
            with(r1, "sasl_username", "alice"),
            "encryption_protocol",
            "TLSv1.3",
        ),
        "client_name",
        "Mail.Example.ORG.",
    );
    let r1 = with(r1, "size", "1234");
    assert_eq!(s.answer(&r1).await.action, PolicyAction::Dunno);
    let r2 = with(r1.clone(), "recipient", "carol@example.net");
    assert_eq!(s.answer(&r2).await.action, PolicyAction::Dunno);
    let data = with(with(r2.clone(), "protocol_state", "DATA"), "recipient", "");
    assert_eq!(
        s.answer(&data).await.action.to_string(),
        "PREPEND X-Checked: yes"
    );
    let eom = with(data.clone(), "protocol_state", "END-OF-MESSAGE");
    assert_eq!(
        s.answer(&eom).await.action,
        PolicyAction::Dunno,
        "data_start ran already"
    );
    // A new message on the same connection starts a new transaction.
    let r3 = with(r1.clone(), "instance", "c.2");
    assert_eq!(s.answer(&r3).await.action, PolicyAction::Dunno);

    assert_eq!(probe.mail.load(Ordering::SeqCst), 2);
    assert_eq!(probe.rcpt.load(Ordering::SeqCst), 3);
    assert_eq!(probe.data.load(Ordering::SeqCst), 1);
    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "mail <Alice@Example.ORG> size=Some(1234) auth=Some(\"alice\") tls=true rdns=Some(\"mail.example.org\")",
            "rcpt <bob@example.net> from <Alice@Example.ORG> after 0",
            "rcpt <carol@example.net> from <Alice@Example.ORG> after 1",
            "data 2 rcpts",
            "mail <Alice@Example.ORG> size=Some(1234) auth=Some(\"alice\") tls=true rdns=Some(\"mail.example.org\")",
            "rcpt <bob@example.net> from <Alice@Example.ORG> after 0",
        ]
    );

    let helo = with(r1.clone(), "protocol_state", "EHLO");
    let a = s.answer(&helo).await;
    assert_eq!(a.action.to_wire(), b"action=550 5.7.1 no such HELO\n\n");
    assert_eq!(a.decided_by, Some("probe"));
    let vrfy = with(r1, "protocol_state", "VRFY");
    assert_eq!(s.answer(&vrfy).await.action, PolicyAction::Dunno);
}

#[tokio::test]
async fn a_refused_sender_refuses_every_recipient_of_its_message() {
    let probe = Arc::new(Probe::default());
    let service = PolicyService::new(Chain::new().with(probe.clone()));
    let mut s = service.session();
    let r = rcpt("192.0.2.1", "spammer@example.org", "bob@example.net", "d.1");
    let want = b"action=550 5.7.1 sender refused\n\n".to_vec();
    let answer = s.answer(&r).await;
    assert_eq!(answer.action.to_wire(), want);
    assert_eq!(answer.decided_by, Some("probe"));
    assert_eq!(
        s.answer(&with(r, "recipient", "x@example.net"))
            .await
            .action
            .to_wire(),
        want
    );
    assert_eq!(probe.mail.load(Ordering::SeqCst), 1);
    assert_eq!(probe.rcpt.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_null_sender_and_bad_values() {
    let probe = Arc::new(Probe::default());
    let service =
        PolicyService::new(Chain::new().with(probe.clone())).with_error_action(PolicyAction::Dunno);
    let mut s = service.session();
    let ok = rcpt("192.0.2.1", "", "bob@example.net", "e.1");
    assert_eq!(s.answer(&ok).await.action, PolicyAction::Dunno);
    assert!(probe.seen.lock().unwrap()[0].starts_with("mail <> "));

    let cases = [
        (
            with(ok.clone(), "client_address", "not-an-ip"),
            RequestError::BadValue {
                name: "client_address",
                reason: "not an IP address".into(),
            },
        ),
        (
            with(ok.clone(), "request", "junk"),
            RequestError::NotAccessPolicy,
        ),
        (
            with(with(ok.clone(), "recipient", ""), "instance", "e.2"),
            RequestError::Missing { name: "recipient" },
        ),
        (
            Request::from_pairs([("request", "smtpd_access_policy")]),
            RequestError::Missing {
                name: "protocol_state",
            },
        ),
    ];
    for (req, want) in cases {
        let a = s.answer(&req).await;
        assert_eq!(a.error, Some(want));
        assert_eq!(a.action, PolicyAction::Dunno, "the configured error answer");
    }
    let bad_sender = with(with(ok, "sender", "no domain here"), "instance", "e.3");
    let a = s.answer(&bad_sender).await;
    assert!(
        matches!(a.error, Some(RequestError::BadValue { name: "sender", .. })),
        "{a:?}"
    );
}

#[tokio::test]
async fn policy_rate_limits_count_messages_not_recipients() {
    let clock = Arc::new(ManualClock::default());
    let mut config = PolicyConfig::default();
    config.account_defaults = AccountLimits {
        rates: RateLimits {
            messages_per_minute: Some(2),
            ..RateLimits::default()
        },
        ..AccountLimits::default()
    };
    let policy = Arc::new(Policy::new(
        config,
        Arc::new(portcullis_policy::MemoryStore::new()),
    ));
    let chain = Chain::new().with(Arc::new(PolicyFilter::new(policy, clock.clone())));
    let service = PolicyService::new(chain);
    let mut s = service.session();
    let base = with(
        rcpt("192.0.2.1", "alice@example.com", "a@example.org", "m.1"),
        "sasl_username",
        "alice@example.com",
    );
    // Two messages of three recipients each pass...
    for instance in ["m.1", "m.2"] {
        for to in ["a@example.org", "b@example.org", "c@example.org"] {
            let r = with(with(base.clone(), "instance", instance), "recipient", to);
            assert_eq!(
                s.answer(&r).await.action,
                PolicyAction::Dunno,
                "{instance} {to}"
            );
        }
    }
    // ...the third message in the same minute is deferred.
    let third = s.answer(&with(base.clone(), "instance", "m.3")).await;
    assert!(
        matches!(&third.action, PolicyAction::DeferIfPermit(t) if t.starts_with("Rate limit exceeded")),
        "{third:?}"
    );
    assert_eq!(third.decided_by, Some("policy"));
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        s.answer(&with(base, "instance", "m.4")).await.action,
        PolicyAction::Dunno
    );
}

#[tokio::test]
async fn decoder_errors_get_the_error_answer() {
    let service = PolicyService::new(Chain::new());
    let mut s = service.session();
    let a = s
        .answer_item(Err(RequestError::LineTooLong { max: 2048 }))
        .await;
    assert_eq!(
        a.action.to_wire(),
        b"action=451 4.3.0 Temporary local problem, please try again later\n\n"
    );
    assert_eq!(a.error, Some(RequestError::LineTooLong { max: 2048 }));
}
