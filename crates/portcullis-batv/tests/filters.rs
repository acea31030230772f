//! The two BATV filters driven through a `Chain`, with time from `ManualClock`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_batv::{BounceDecision, BounceValidation, KeyRing, Prvs, PrvsSigning, Verification};
use portcullis_core::{
    Address, Chain, Client, Clock, Context, Domain, Envelope, Filter, ForwardPath, MailParams,
    ManualClock, Recipient, ReversePath, Verdict,
};

const DAY: Duration = Duration::from_secs(86_400);

struct Setup {
    clock: Arc<ManualClock>,
    prvs: Arc<Prvs>,
}

fn setup() -> Setup {
    Setup {
        // 2026-01-01 12:00 UTC, the instant of the Exim vectors.
        clock: Arc::new(ManualClock::at_unix(1_767_268_800)),
        prvs: Arc::new(Prvs::new(KeyRing::new(3, b"secret").unwrap())),
    }
}

fn cx_with_sender(from: ReversePath) -> Context {
    let mut cx = Context::new(Client::new("192.0.2.7:40000".parse().unwrap()));
    cx.envelope = Some(Envelope::new(from, MailParams::default()));
    cx
}

fn rcpt(s: &str) -> Recipient {
    Recipient::new(ForwardPath::parse(s).unwrap())
}

fn domain(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

#[tokio::test]
async fn outbound_tags_enabled_senders_once_and_never_the_null_sender() {
    let s = setup();
    let signing = PrvsSigning::new(s.prvs.clone(), s.clock.clone())
        .enable_domain(&domain("example.com"))
        .exempt_sender(&Address::parse("noreply@example.com").unwrap());
    let chain = Chain::new().with(Arc::new(signing));
    let mut cx = Context::new(Client::new("192.0.2.7:40000".parse().unwrap()));
    let params = MailParams::default();

    let mut from = ReversePath::parse("<user@example.com>").unwrap();
    assert_eq!(
        chain.mail_from(&mut cx, &mut from, &params).await,
        Verdict::Continue
    );
    // The same tag Exim 4.96 made at this instant (tests/vectors/exim-prvs-sign.tsv).
    assert_eq!(from.to_string(), "<prvs=3461447cc3=user@example.com>");

    // Never twice.
    let before = from.clone();
    assert!(
        chain
            .mail_from(&mut cx, &mut from, &params)
            .await
            .is_continue()
    );
    assert_eq!(from, before);

    for untouched in [
        "<>",
        "<user@other.example>",
        "<noreply@example.com>",
        "<user@sub.example.com>",
    ] {
        let mut from = ReversePath::parse(untouched).unwrap();
        assert!(
            chain
                .mail_from(&mut cx, &mut from, &params)
                .await
                .is_continue()
        );
        assert_eq!(from.to_string(), untouched);
    }
}

#[tokio::test]
async fn bounce_to_protected_address_needs_a_valid_tag_which_is_stripped() {
    let s = setup();
    let validation = BounceValidation::new(s.prvs.clone(), s.clock.clone())
        .protect_domain(&domain("example.com"))
        .exempt_recipient(&Address::parse("abuse@example.com").unwrap());
    let chain = Chain::new().with(Arc::new(validation));
    let tagged = s
        .prvs
        .sign(&Address::parse("user@example.com").unwrap(), s.clock.now())
        .unwrap();

    // A bounce with a valid tag: accepted, delivered to the real mailbox.
    let mut cx = cx_with_sender(ReversePath::Null);
    let mut r = Recipient::new(ForwardPath::Mailbox(tagged.clone()));
    assert!(chain.rcpt_to(&mut cx, &mut r).await.is_continue());
    assert_eq!(r.path.to_string(), "<user@example.com>");

    // A bounce without a tag: backscatter, refused.
    let mut r = rcpt("<user@example.com>");
    let v = chain.rcpt_to(&mut cx, &mut r).await;
    let reply = v.reply().cloned().unwrap();
    assert!(matches!(v, Verdict::Reject(_)));
    assert_eq!(reply.code(), 550);
    assert_eq!(reply.enhanced().unwrap().to_string(), "5.7.1");
    assert!(reply.text().contains("Invalid bounce"), "{}", reply.text());
    assert_eq!(cx.decided_by, Some("batv-bounce"));
    assert_eq!(
        r.path.to_string(),
        "<user@example.com>",
        "refused recipient unchanged"
    );

    // MAILER-DAEMON counts as a bounce; a configured sender too.
    let mut cx = cx_with_sender(ReversePath::parse("<MAILER-DAEMON@mx.example.net>").unwrap());
    assert!(
        chain
            .rcpt_to(&mut cx, &mut rcpt("<user@example.com>"))
            .await
            .is_refusal()
    );

    // Expired tag: refused, after the window passes.
    s.clock.advance(8 * DAY);
    let mut cx = cx_with_sender(ReversePath::Null);
    let mut r = Recipient::new(ForwardPath::Mailbox(tagged.clone()));
    let v = chain.rcpt_to(&mut cx, &mut r).await;
    assert!(v.reply().unwrap().text().contains("expired"), "{v:?}");

    // Exemptions, postmaster, unprotected domains and ordinary mail pass untouched.
    for to in [
        "<abuse@example.com>",
        "<Postmaster>",
        "<postmaster@example.com>",
        "<user@other.example>",
    ] {
        let mut r = rcpt(to);
        assert!(chain.rcpt_to(&mut cx, &mut r).await.is_continue(), "{to}");
        assert_eq!(r.path.to_string(), to);
    }
    let mut cx = cx_with_sender(ReversePath::parse("<someone@example.net>").unwrap());
    assert!(
        chain
            .rcpt_to(&mut cx, &mut rcpt("<user@example.com>"))
            .await
            .is_continue()
    );
}

#[test]
fn plain_api_reports_why_a_bounce_is_refused() {
    let s = setup();
    let other_key = Prvs::new(KeyRing::new(5, b"other").unwrap());
    let validation = BounceValidation::new(s.prvs.clone(), s.clock.clone())
        .null_sender_only()
        .bounce_sender("bounces")
        .protect_domain(&domain("Example.COM"));
    let now = s.clock.now();
    let user = Address::parse("user@example.com").unwrap();
    let foreign = other_key.sign(&user, now).unwrap();
    let to = ForwardPath::Mailbox(foreign);
    assert_eq!(
        validation.check(&ReversePath::Null, &to, now),
        BounceDecision::Refuse(Verification::UnknownKey { key: 5 })
    );
    // MAILER-DAEMON no longer counts after null_sender_only(); "bounces" does.
    let md = ReversePath::parse("<mailer-daemon@x.example>").unwrap();
    assert_eq!(validation.check(&md, &to, now), BounceDecision::Unaffected);
    let b = ReversePath::parse("<Bounces@x.example>").unwrap();
    assert!(matches!(
        validation.check(&b, &to, now),
        BounceDecision::Refuse(_)
    ));
    // A forged signature.
    let forged = ForwardPath::parse("<prvs=3461000000=user@example.com>").unwrap();
    assert_eq!(
        validation.check(&ReversePath::Null, &forged, now),
        BounceDecision::Refuse(Verification::BadSignature { key: 3 })
    );
    let valid = ForwardPath::Mailbox(s.prvs.sign(&user, now).unwrap());
    assert_eq!(
        validation.check(&ReversePath::Null, &valid, now),
        BounceDecision::Strip { original: user }
    );
}

#[test]
fn filters_without_enabled_domains_do_nothing() {
    let s = setup();
    let signing = PrvsSigning::new(s.prvs.clone(), s.clock.clone());
    let from = ReversePath::parse("<user@example.com>").unwrap();
    assert_eq!(signing.tagged_sender(&from, s.clock.now()), None);
    let one = signing.enable_sender(&Address::parse("User@EXAMPLE.com").unwrap());
    assert!(one.tagged_sender(&from, s.clock.now()).is_some());
    assert_eq!(one.name(), "batv-sign");
}

#[tokio::test]
async fn srs_bounces_are_routed_back_and_forgeries_refused() {
    // postsrsd 1.10 and Mail::SRS made this address at 2026-01-01 12:00 UTC
    // (tests/vectors/srs.tsv).
    let clock = Arc::new(ManualClock::at_unix(1_767_268_800));
    let srs = Arc::new(portcullis_batv::Srs::new(b"tops3cret").unwrap());
    let filter = portcullis_batv::SrsReverse::new(srs, clock.clone(), &domain("fwd.example"));
    let chain = Chain::new().with(Arc::new(filter));
    let mut cx = cx_with_sender(ReversePath::Null);

    let mut r = rcpt("<SRS0=PuPZ=7G=Example.COM=User@fwd.example>");
    assert!(chain.rcpt_to(&mut cx, &mut r).await.is_continue());
    assert_eq!(r.path.to_string(), "<User@Example.COM>");

    let mut forged = rcpt("<SRS0=AuPZ=7G=Example.COM=User@fwd.example>");
    let v = chain.rcpt_to(&mut cx, &mut forged).await;
    assert_eq!(v.reply().map(|r| r.code()), Some(550), "{v:?}");
    assert_eq!(v.reply().unwrap().enhanced().unwrap().to_string(), "5.1.1");

    // Ordinary recipients and other domains' SRS addresses are not ours.
    for to in [
        "<user@fwd.example>",
        "<SRS0=PuPZ=7G=Example.COM=User@elsewhere.example>",
    ] {
        let mut r = rcpt(to);
        assert!(chain.rcpt_to(&mut cx, &mut r).await.is_continue());
        assert_eq!(r.path.to_string(), to);
    }

    // 22 days later the address has expired (postsrsd agrees, srs.tsv).
    clock.advance(22 * DAY);
    let mut r = rcpt("<SRS0=PuPZ=7G=Example.COM=User@fwd.example>");
    let v = chain.rcpt_to(&mut cx, &mut r).await;
    assert!(v.reply().unwrap().text().contains("expired"), "{v:?}");
}
