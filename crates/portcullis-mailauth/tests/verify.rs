//! SPF, DKIM and DMARC verification against a real DNS server on loopback
//! (`hickory-server`, see `common/mod.rs`), with messages signed by our own
//! `DkimSigner` using committed test keys whose public halves OpenSSL
//! printed into the zone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::{
    AuthResultsHeader, BAD_IP, ED25519_PEM, GOOD_IP, RSA_PEM, authenticator, parse_auth_results,
    start_dns,
};
use portcullis_core::{
    Action, Chain, Client, Context, Envelope, Filter, MailParams, ReversePath, Verdict,
};
use portcullis_mailauth::{
    AUTHENTICATION_RESULTS, AuthVerifier, DkimResult, DkimSigner, DkimSigningKey, DmarcPolicy,
    DmarcResult, SigningIdentity, SpfResult, TempErrorAction, VerifyConfig, decide,
};

const AUTHSERV: &str = "mx.receiver.example";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <{from}>\r\nTo: rcpt@receiver.example\r\nSubject: test message\r\n\
         Date: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@sender>\r\n\r\n{body}"
    )
    .into_bytes()
}

fn signer() -> DkimSigner {
    DkimSigner::new()
        .with_domain(
            SigningIdentity::new(
                "signed.test",
                "rsa",
                DkimSigningKey::from_pem(RSA_PEM).unwrap(),
            )
            .unwrap(),
        )
        .with_account(
            "ann",
            SigningIdentity::new(
                "signed.test",
                "ed",
                DkimSigningKey::from_pem(ED25519_PEM).unwrap(),
            )
            .unwrap(),
        )
}

/// Run the signer as a filter (as on submission) and apply its
/// `AddHeader` by prepending, with a Received line above it as the relay
/// writes one.
async fn sign_as(account: Option<&str>, msg: &[u8]) -> Vec<u8> {
    let mut client = Client::new("203.0.113.5:4000".parse().unwrap());
    client.authenticated = account.map(str::to_owned);
    // Without AUTH, only a trusted-network client gets signed.
    client.trusted_network = account.is_none();
    let mut cx = Context::new(client);
    assert_eq!(signer().message(&mut cx, msg).await, Verdict::Continue);
    let [Action::AddHeader { name, value }] = cx.actions.as_slice() else {
        panic!("expected one header, got {:?}", cx.actions);
    };
    assert_eq!(name, "DKIM-Signature");
    let mut out = format!(
        "Received: from client by submission.test; Tue, 24 Nov 2026 12:00:01 +0000\r\n\
         {name}: {value}\r\n"
    )
    .into_bytes();
    out.extend_from_slice(msg);
    out
}

fn verifier(dns: &common::Dns, config: VerifyConfig) -> AuthVerifier {
    AuthVerifier::new(authenticator(dns), config)
}

fn header(results: &portcullis_mailauth::AuthResults) -> AuthResultsHeader {
    let value = results.header_value(AUTHSERV);
    parse_auth_results(&value).unwrap_or_else(|e| panic!("{e}: {value}"))
}

#[tokio::test]
async fn signed_message_verifies_as_dkim_and_dmarc_pass() {
    let dns = start_dns().await;
    let v = verifier(&dns, VerifyConfig::new(AUTHSERV).with_enforce_reject(true));

    for (account, selector) in [(None, "rsa"), (Some("ann"), "ed")] {
        let signed = sign_as(account, &message("user@signed.test", "Hello.\r\n")).await;
        // SPF for signed.test authorizes nobody: the pass must be DKIM's.
        let (r, decision) = v
            .check(ip(BAD_IP), "mx.hard.test", "user@signed.test", &signed)
            .await;
        assert_eq!(r.spf_mail_from.result, SpfResult::Fail, "{r:?}");
        assert_eq!(r.dkim.len(), 1, "{r:?}");
        assert_eq!(r.dkim[0].result, DkimResult::Pass, "{selector}: {r:?}");
        assert_eq!(
            (r.dkim[0].domain.as_str(), r.dkim[0].selector.as_str()),
            ("signed.test", selector)
        );
        assert!(r.dkim_pass_for("SIGNED.test") && !r.dkim_pass_for("hard.test"));
        assert!(!r.has_temp_error());
        assert_eq!(r.dmarc.result, DmarcResult::Pass, "{r:?}");
        assert_eq!(r.dmarc.policy, DmarcPolicy::Reject);
        assert_eq!(decision.verdict, Verdict::Continue);
        assert_eq!(decision.quarantine, None);

        let h = header(&r);
        assert_eq!(h.authserv_id, AUTHSERV);
        let dkim = h.get("dkim");
        assert_eq!(dkim.len(), 1);
        assert_eq!(dkim[0].result, "pass");
        assert_eq!(
            AuthResultsHeader::prop(dkim[0], "header.d"),
            Some("signed.test")
        );
        assert_eq!(AuthResultsHeader::prop(dkim[0], "header.s"), Some(selector));
        let dmarc = h.get("dmarc");
        assert_eq!(dmarc[0].result, "pass");
        assert_eq!(
            AuthResultsHeader::prop(dmarc[0], "header.from"),
            Some("signed.test")
        );
    }
}

#[tokio::test]
async fn tampered_body_or_signed_header_fails_dkim() {
    let dns = start_dns().await;
    let v = verifier(&dns, VerifyConfig::new(AUTHSERV));
    let signed = sign_as(None, &message("user@signed.test", "Pay 10 EUR.\r\n")).await;

    let body_tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Pay 10 EUR.", "Pay 99 EUR.");
    let header_tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Subject: test message", "Subject: changed");
    for tampered in [body_tampered, header_tampered] {
        assert_ne!(tampered.as_bytes(), signed.as_slice());
        let r = v
            .verify(
                ip(BAD_IP),
                "mx.hard.test",
                "user@signed.test",
                tampered.as_bytes(),
            )
            .await;
        assert_eq!(r.dkim.len(), 1);
        assert_eq!(r.dkim[0].result, DkimResult::Fail, "{r:?}");
        assert!(r.dkim[0].reason.is_some());
        assert_eq!(r.dmarc.result, DmarcResult::Fail);
        assert_eq!(header(&r).get("dkim")[0].result, "fail");
    }

    // A field added above the signature after signing: harmless when it is
    // not signed (the Received line sign_as adds), fatal when it is a field
    // whose absence was signed (Cc is in the default list).
    for (added, want) in [
        ("X-Scanned: yes\r\n", DkimResult::Pass),
        ("Cc: late@added.test\r\n", DkimResult::Fail),
    ] {
        let mut m = added.as_bytes().to_vec();
        m.extend_from_slice(&signed);
        let r = v
            .verify(ip(BAD_IP), "mx.hard.test", "user@signed.test", &m)
            .await;
        assert_eq!(r.dkim[0].result, want, "{added:?}: {r:?}");
    }

    // Unsigned mail says dkim=none.
    let r = v
        .verify(
            ip(BAD_IP),
            "mx.hard.test",
            "user@signed.test",
            &message("user@signed.test", "x\r\n"),
        )
        .await;
    assert!(r.dkim.is_empty());
    assert_eq!(header(&r).get("dkim")[0].result, "none");
}

#[tokio::test]
async fn spf_pass_fail_softfail_none_by_client_ip() {
    let dns = start_dns().await;
    let v = verifier(&dns, VerifyConfig::new(AUTHSERV));
    let cases = [
        (GOOD_IP, "a@hard.test", SpfResult::Pass),
        (BAD_IP, "a@hard.test", SpfResult::Fail),
        (BAD_IP, "a@soft.test", SpfResult::SoftFail),
        (GOOD_IP, "a@soft.test", SpfResult::Pass),
        (GOOD_IP, "a@nospf.test", SpfResult::None),
    ];
    for (client, from, want) in cases {
        let r = v
            .verify(ip(client), "mx.hard.test", from, &message(from, "x\r\n"))
            .await;
        assert_eq!(r.spf_mail_from.result, want, "{client} {from}: {r:?}");
        let domain = from.split_once('@').unwrap().1;
        assert_eq!(r.spf_mail_from.domain, domain);
        let h = header(&r);
        let mailfrom = h
            .get("spf")
            .into_iter()
            .find(|s| AuthResultsHeader::prop(s, "smtp.mailfrom").is_some())
            .expect("an spf result for smtp.mailfrom");
        assert_eq!(mailfrom.result, want.as_str());
        assert_eq!(
            AuthResultsHeader::prop(mailfrom, "smtp.mailfrom"),
            Some(from)
        );
    }

    // The HELO identity is checked on its own (RFC 7208 §2.3).
    let r = v
        .verify(
            ip(BAD_IP),
            "mx.hard.test",
            "a@nospf.test",
            b"From: a@nospf.test\r\n\r\n",
        )
        .await;
    assert_eq!(r.spf_helo.result, SpfResult::Fail);
    assert_eq!(r.spf_mail_from.result, SpfResult::None);
    let r = v
        .verify(
            ip(GOOD_IP),
            "mx.hard.test",
            "",
            b"From: a@nospf.test\r\n\r\n",
        )
        .await;
    assert_eq!(r.spf_helo.result, SpfResult::Pass);
    assert_eq!(
        r.spf_mail_from.result,
        SpfResult::Pass,
        "null sender is postmaster@helo"
    );
    assert_eq!(r.spf_mail_from.domain, "mx.hard.test");
    // An address literal is not checked.
    let r = v
        .verify(
            ip(GOOD_IP),
            "[192.0.2.10]",
            "a@hard.test",
            b"From: a@hard.test\r\n\r\n",
        )
        .await;
    assert_eq!(r.spf_helo.result, SpfResult::None);
    assert_eq!(r.spf_mail_from.result, SpfResult::Pass);
}

#[tokio::test]
async fn dmarc_by_aligned_spf_and_policy_application() {
    let dns = start_dns().await;
    let relaxed = verifier(&dns, VerifyConfig::new(AUTHSERV));
    let enforcing = verifier(&dns, VerifyConfig::new(AUTHSERV).with_enforce_reject(true));
    let msg = message("a@hard.test", "x\r\n");

    // Aligned SPF pass: DMARC pass without any signature.
    let (r, d) = enforcing
        .check(ip(GOOD_IP), "mx.hard.test", "a@hard.test", &msg)
        .await;
    assert_eq!(
        (r.dmarc.result, r.dmarc.policy),
        (DmarcResult::Pass, DmarcPolicy::Reject)
    );
    assert_eq!(d.verdict, Verdict::Continue);

    // p=reject, nothing aligned passes.
    let (r, d) = enforcing
        .check(ip(BAD_IP), "mx.hard.test", "a@hard.test", &msg)
        .await;
    assert_eq!(r.dmarc.result, DmarcResult::Fail);
    let Verdict::Reject(reply) = &d.verdict else {
        panic!("enforcement must reject: {d:?}");
    };
    assert_eq!(reply.code(), 550);
    assert_eq!(reply.enhanced().unwrap().to_string(), "5.7.1");
    assert!(reply.text().contains("DMARC"), "{}", reply.text());
    assert_eq!(header(&r).get("dmarc")[0].result, "fail");

    let (_, d) = relaxed
        .check(ip(BAD_IP), "mx.hard.test", "a@hard.test", &msg)
        .await;
    assert_eq!(
        d.verdict,
        Verdict::Continue,
        "without enforcement only the header"
    );
    assert_eq!(d.quarantine, None);
    assert!(d.header.contains("dmarc=fail"), "{}", d.header);

    // p=quarantine.
    let soft = message("a@soft.test", "x\r\n");
    let (r, d) = enforcing
        .check(ip(BAD_IP), "mx.hard.test", "a@soft.test", &soft)
        .await;
    assert_eq!(
        (r.dmarc.result, r.dmarc.policy),
        (DmarcResult::Fail, DmarcPolicy::Quarantine)
    );
    assert_eq!(d.verdict, Verdict::Continue);
    assert!(d.quarantine.as_deref().unwrap().contains("soft.test"));
    let off = VerifyConfig::new(AUTHSERV).with_quarantine(false);
    assert_eq!(decide(&r, &off).quarantine, None);

    // p=none: monitor only.
    let mon = message("a@monitor.test", "x\r\n");
    let (r, d) = enforcing
        .check(ip(BAD_IP), "mx.hard.test", "a@monitor.test", &mon)
        .await;
    assert_eq!(
        (r.dmarc.result, r.dmarc.policy),
        (DmarcResult::Fail, DmarcPolicy::None)
    );
    assert_eq!((d.verdict, d.quarantine), (Verdict::Continue, None));

    // No DMARC record.
    let r = enforcing
        .verify(
            ip(BAD_IP),
            "mx.hard.test",
            "a@nospf.test",
            &message("a@nospf.test", "x"),
        )
        .await;
    assert_eq!(r.dmarc.result, DmarcResult::None);
}

#[tokio::test]
async fn dns_failures_are_temperror_and_never_reject() {
    let dns = start_dns().await;
    let enforcing = verifier(&dns, VerifyConfig::new(AUTHSERV).with_enforce_reject(true));
    let deferring = verifier(
        &dns,
        VerifyConfig::new(AUTHSERV)
            .with_enforce_reject(true)
            .with_temp_error(TempErrorAction::Defer),
    );
    for domain in ["servfail.test", "silent.test"] {
        let from = format!("a@{domain}");
        let msg = message(&from, "x\r\n");
        let (r, d) = enforcing
            .check(ip(BAD_IP), "mx.hard.test", &from, &msg)
            .await;
        assert_eq!(
            r.spf_mail_from.result,
            SpfResult::TempError,
            "{domain}: {r:?}"
        );
        assert_eq!(r.dmarc.result, DmarcResult::TempError, "{domain}: {r:?}");
        assert!(r.has_temp_error());
        assert_eq!(d.verdict, Verdict::Continue, "{domain}");
        let h = header(&r);
        assert_eq!(h.get("dmarc")[0].result, "temperror");

        let (_, d) = deferring
            .check(ip(BAD_IP), "mx.hard.test", &from, &msg)
            .await;
        let Verdict::Defer(reply) = &d.verdict else {
            panic!("{domain}: configured to defer: {d:?}");
        };
        assert_eq!(
            (reply.code(), reply.enhanced().unwrap().to_string()),
            (451, "4.4.3".to_owned())
        );
    }
}

fn inbound_context(peer_ip: &str, helo: &str, mail_from: &str) -> Context {
    let mut client = Client::new(format!("{peer_ip}:40000").parse().unwrap());
    client.helo = Some(helo.to_owned());
    let mut cx = Context::new(client);
    cx.envelope = Some(Envelope::new(
        ReversePath::parse(&format!("<{mail_from}>")).unwrap(),
        MailParams::default(),
    ));
    cx
}

#[tokio::test]
async fn filter_reads_the_context_and_pushes_actions() {
    let dns = start_dns().await;
    let enforcing = Arc::new(verifier(
        &dns,
        VerifyConfig::new(AUTHSERV).with_enforce_reject(true),
    ));
    let chain = Chain::new().with(enforcing.clone());

    // Rejected by DMARC: the header is still recorded, the chain names us.
    let mut cx = inbound_context(BAD_IP, "mx.hard.test", "a@hard.test");
    let v = chain
        .message(&mut cx, &message("a@hard.test", "x\r\n"))
        .await;
    assert!(matches!(&v, Verdict::Reject(r) if r.code() == 550), "{v:?}");
    assert_eq!(cx.decided_by, Some("mailauth"));
    let [Action::AddHeader { name, value }] = cx.actions.as_slice() else {
        panic!("{:?}", cx.actions);
    };
    assert_eq!(name, AUTHENTICATION_RESULTS);
    let h = parse_auth_results(value).unwrap();
    assert_eq!(h.get("spf")[0].result, "fail");
    assert_eq!(
        AuthResultsHeader::prop(h.get("spf")[1], "smtp.helo"),
        Some("mx.hard.test")
    );

    // Quarantine through the filter.
    let mut cx = inbound_context(BAD_IP, "mx.hard.test", "a@soft.test");
    let v = chain
        .message(&mut cx, &message("a@soft.test", "x\r\n"))
        .await;
    assert_eq!(v, Verdict::Continue);
    assert!(matches!(cx.actions.as_slice(), [
        Action::AddHeader { .. },
        Action::Quarantine { reason }
    ] if reason.contains("quarantine")));

    // Authenticated (submission) clients are skipped by default.
    let mut cx = inbound_context(BAD_IP, "mx.hard.test", "a@hard.test");
    cx.client.authenticated = Some("ann".into());
    let v = chain
        .message(&mut cx, &message("a@hard.test", "x\r\n"))
        .await;
    assert_eq!(v, Verdict::Continue);
    assert!(cx.actions.is_empty());
}

#[tokio::test]
async fn malformed_messages_yield_results_not_panics() {
    let dns = start_dns().await;
    let v = verifier(&dns, VerifyConfig::new(AUTHSERV).with_enforce_reject(true));
    let signed = sign_as(None, &message("user@signed.test", "x\r\n")).await;
    let signed = String::from_utf8(signed).unwrap();
    // The same signature pointing at a selector with no key record.
    let no_key = signed.replace("s=rsa;", "s=nokey;");
    assert_ne!(no_key, signed);
    // A signature whose tags are garbage.
    let garbage = "DKIM-Signature: v=9; a=rot13; b=!!!; bh=???\r\nFrom: a@signed.test\r\n\r\nx\r\n";
    let mut long = "X-Long: ".to_owned();
    long.push_str(&"a".repeat(100_000));
    long.push_str("\r\nFrom: a@hard.test\r\n\r\nx\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("crlf only", b"\r\n".to_vec()),
        ("no colon", b"this is not a header\r\n\r\nbody".to_vec()),
        (
            "bare lf",
            b"From: a@hard.test\nSubject: x\n\nbody\n".to_vec(),
        ),
        (
            "8-bit",
            b"From: \xff\xfe@hard.test\r\n\r\n\x80\x81".to_vec(),
        ),
        ("long header", long.into_bytes()),
        (
            "two from domains",
            b"From: a@hard.test, b@soft.test\r\n\r\nx".to_vec(),
        ),
        ("group", b"From: team: a@hard.test;\r\n\r\nx".to_vec()),
        ("no key", no_key.into_bytes()),
        ("garbage signature", garbage.as_bytes().to_vec()),
    ];
    for (what, m) in cases {
        let (r, d) = v.check(ip(BAD_IP), "mx.hard.test", "a@hard.test", &m).await;
        parse_auth_results(&d.header).unwrap_or_else(|e| panic!("{what}: {e}: {}", d.header));
        match what {
            // RFC 7489 §6.6.1: several From domains are exempt from DMARC.
            "two from domains" => assert_eq!(r.dmarc.result, DmarcResult::None, "{what}"),
            "no key" => {
                assert_eq!(r.dkim.len(), 1, "{what}");
                assert_eq!(r.dkim[0].result, DkimResult::PermError, "{what}: {r:?}");
                assert_eq!(r.dmarc.result, DmarcResult::Fail, "{what}: {r:?}");
                assert!(d.verdict.is_refusal(), "{what}: p=reject enforced");
            }
            "garbage signature" => {
                assert_eq!(r.dkim.len(), 1, "{what}: {r:?}");
                assert!(
                    matches!(
                        r.dkim[0].result,
                        DkimResult::PermError | DkimResult::Neutral
                    ),
                    "{what}: {r:?}"
                );
            }
            _ => {}
        }
        // Never reject on anything but a DMARC fail.
        if d.verdict.is_refusal() {
            assert_eq!(r.dmarc.result, DmarcResult::Fail, "{what}: {r:?}");
        }
    }
}
