//! The SMTP client's ESMTP parameters against a scripted loopback server
//! that announces what each test chooses and records every command (see
//! `support`), and against Postfix's `smtp-sink`: SIZE (RFC 1870),
//! SMTPUTF8 (RFC 6531), DSN (RFC 3461), 8BITMIME / BINARYMIME (RFC 6152,
//! RFC 3030), REQUIRETLS (RFC 8689).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{
    Body, EnhancedCode, Envelope, ForwardPath, MailParams, ManualClock, Notify, Recipient, Ret,
    ReversePath,
};
use portcullis_queue::{
    DeliveryRequest, DsnConfig, HopHost, NextHop, Outcome, QueueRunner, SchedulerConfig,
    SmtpTransport, SmtpTransportConfig, Spool, SpoolConfig, StaticRouter, TlsPolicy, Transport,
};
use support::{Certificate, LOOPBACK, Script, Scripted, Sink};

const ASCII: &[u8] = b"Subject: t\r\n\r\nhello\r\n";

/// A MIME message with an 8-bit text body.
const EIGHT_BIT: &str = "MIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: 8bit\r\n\
    Subject: t\r\n\
    \r\n\
    Grüße aus Köln\r\n";

fn transport() -> SmtpTransport {
    SmtpTransport::new(
        SmtpTransportConfig::new("relay.portcullis.test")
            .with_tls(TlsPolicy::Never)
            .with_timeout(Duration::from_secs(5)),
    )
    .unwrap()
}

fn envelope(params: MailParams, rcpts: &[&str]) -> Envelope {
    let mut env = Envelope::new(ReversePath::parse("<alice@example.org>").unwrap(), params);
    for r in rcpts {
        env.recipients
            .push(Recipient::new(ForwardPath::parse(r).unwrap()));
    }
    env
}

async fn send(hop: &NextHop, env: &Envelope, message: &[u8]) -> Vec<Outcome> {
    send_with(&transport(), hop, env, message).await
}

async fn send_with(
    t: &SmtpTransport,
    hop: &NextHop,
    env: &Envelope,
    message: &[u8],
) -> Vec<Outcome> {
    let rcpts: Vec<&Recipient> = env.recipients.iter().collect();
    let out = t
        .deliver(DeliveryRequest::new(hop, env, &rcpts, message))
        .await;
    assert_eq!(out.len(), rcpts.len());
    out
}

fn bounced_with(o: &Outcome, code: u16, enhanced: (u8, u16, u16)) -> bool {
    matches!(o, Outcome::Bounced(r) if r.code() == code
        && r.enhanced() == Some(EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2)))
}

// ---- SIZE (RFC 1870) ----

#[tokio::test]
async fn size_is_sent_only_when_announced() {
    let env = envelope(MailParams::default(), &["<bob@example.net>"]);
    let plain = Scripted::start(Script::new(&["8BITMIME"])).await;
    let out = send(&plain.hop("example.net"), &env, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(plain.lines("MAIL"), ["MAIL FROM:<alice@example.org>"]);

    let sized = Scripted::start(Script::new(&["SIZE 1000000"])).await;
    let out = send(&sized.hop("example.net"), &env, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        sized.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> SIZE={}",
            ASCII.len()
        )]
    );

    // `SIZE` without a number: no fixed limit (RFC 1870 §4), still declared.
    let open = Scripted::start(Script::new(&["SIZE"])).await;
    let out = send(&open.hop("example.net"), &env, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        open.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> SIZE={}",
            ASCII.len()
        )]
    );
}

#[tokio::test]
async fn a_message_over_the_announced_size_bounces_without_mail() {
    let small = Scripted::start(Script::new(&["SIZE 10"])).await;
    let env = envelope(
        MailParams::default(),
        &["<bob@example.net>", "<carol@example.net>"],
    );
    let out = send(&small.hop("example.net"), &env, ASCII).await;
    for o in &out {
        assert!(bounced_with(o, 552, (5, 3, 4)), "{out:?}");
        assert!(o.reply().text().contains("size limit of 10"), "{o:?}");
    }
    assert!(small.lines("MAIL").is_empty(), "{:?}", small.commands());
}

// ---- SMTPUTF8 (RFC 6531) ----

#[tokio::test]
async fn smtputf8_is_sent_to_a_server_that_has_it() {
    let server = Scripted::start(Script::new(&["SMTPUTF8", "8BITMIME", "SIZE 1000000"])).await;
    let mut params = MailParams::default();
    params.smtputf8 = true;
    let env = envelope(params, &["<jösé@exämple.net>"]);
    let out = send(&server.hop("exämple.net"), &env, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        server.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> SIZE={} SMTPUTF8",
            ASCII.len()
        )]
    );
    assert_eq!(server.lines("RCPT"), ["RCPT TO:<jösé@exämple.net>"]);

    // A UTF-8 address needs it even if the envelope did not say so.
    let env = envelope(MailParams::default(), &["<jösé@exämple.net>"]);
    let out = send(&server.hop("exämple.net"), &env, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        server.lines("MAIL")[1],
        format!(
            "MAIL FROM:<alice@example.org> SIZE={} SMTPUTF8",
            ASCII.len()
        )
    );
}

#[tokio::test]
async fn without_smtputf8_utf8_mail_bounces_5_6_7_and_ascii_mail_goes() {
    let server = Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000"])).await;
    let hop = server.hop("example.net");
    // A UTF-8 recipient.
    let env = envelope(MailParams::default(), &["<jösé@example.net>"]);
    let out = send(&hop, &env, ASCII).await;
    assert!(bounced_with(&out[0], 550, (5, 6, 7)), "{out:?}");
    // The sender asked for SMTPUTF8 and the header section is UTF-8.
    let mut params = MailParams::default();
    params.smtputf8 = true;
    let env = envelope(params.clone(), &["<bob@example.net>"]);
    let out = send(&hop, &env, "Subject: Grüße\r\n\r\nhi\r\n".as_bytes()).await;
    assert!(bounced_with(&out[0], 550, (5, 6, 7)), "{out:?}");
    assert!(server.lines("MAIL").is_empty(), "{:?}", server.commands());

    // Asked for, but nothing needs it: sent without (RFC 6531 §3.2).
    let out = send(&hop, &env, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        server.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> SIZE={}",
            ASCII.len()
        )]
    );
}

// ---- DSN (RFC 3461) ----

/// RET, ENVID, and two recipients: one asking for success notices with an
/// ORCPT, one with no NOTIFY at all.
fn dsn_envelope() -> Envelope {
    let mut params = MailParams::default();
    params.ret = Some(Ret::Headers);
    params.envid = Some("id+1 x=2".to_owned());
    let mut env = envelope(params, &["<bob@example.net>", "<carol@example.net>"]);
    env.recipients[0].notify = Some(Notify {
        success: true,
        failure: true,
        delay: false,
    });
    env.recipients[0].orcpt = Some(("rfc822".to_owned(), "bob+tag@example.net".to_owned()));
    env
}

#[tokio::test]
async fn dsn_parameters_go_to_a_server_with_dsn_which_then_owns_the_success_notice() {
    let server = Scripted::start(Script::new(&["DSN"])).await;
    let env = dsn_envelope();
    let out = send(&server.hop("example.net"), &env, ASCII).await;
    assert_eq!(
        server.lines("MAIL"),
        ["MAIL FROM:<alice@example.org> RET=HDRS ENVID=id+2B1+20x+3D2"]
    );
    assert_eq!(
        server.lines("RCPT"),
        [
            "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@example.net",
            "RCPT TO:<carol@example.net>",
        ]
    );
    assert!(
        matches!(&out[0], Outcome::Relayed { dsn_passed_on: true, reply } if reply.code() == 250),
        "{out:?}"
    );
    assert!(matches!(&out[1], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(out[0].success_dsn(), None);
}

#[tokio::test]
async fn without_dsn_no_parameters_and_a_relayed_notice_is_owed() {
    let server = Scripted::start(Script::new(&["8BITMIME"])).await;
    let mut env = dsn_envelope();
    env.recipients[1].notify = Some(Notify::NEVER);
    let out = send(&server.hop("example.net"), &env, ASCII).await;
    assert_eq!(server.lines("MAIL"), ["MAIL FROM:<alice@example.org>"]);
    assert_eq!(
        server.lines("RCPT"),
        ["RCPT TO:<bob@example.net>", "RCPT TO:<carol@example.net>"]
    );
    assert!(
        matches!(
            &out[0],
            Outcome::Relayed {
                dsn_passed_on: false,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        out[0].success_dsn(),
        Some(portcullis_queue::DsnKind::Relayed)
    );
    assert!(matches!(&out[1], Outcome::Delivered(_)), "{out:?}");
}

/// Through the queue runner: a `relayed` DSN after a next hop without DSN,
/// none after one with it.
#[tokio::test]
async fn the_runner_sends_a_relayed_dsn_only_when_the_next_hop_has_no_dsn() {
    for (keywords, relayed_dsn) in [
        (&["8BITMIME", "SIZE 1000000"][..], true),
        (&["DSN", "SIZE 1000000"][..], false),
    ] {
        let server = Scripted::start(Script::new(keywords)).await;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at_unix(1_700_000_000));
        let spool = Spool::open(dir.path(), SpoolConfig::default(), clock.clone()).unwrap();
        let router = Arc::new(StaticRouter::new(None).with_smarthost(vec![server.host.clone()]));
        let runner = QueueRunner::new(
            spool.clone(),
            SchedulerConfig::default(),
            router,
            Arc::new(transport()),
            DsnConfig::new("relay.portcullis.test"),
            clock,
        );
        let id = spool.store(&dsn_envelope(), ASCII).unwrap();
        runner.submit(id).unwrap();
        runner.run_due().await.unwrap();
        let dsns: Vec<_> = spool
            .list()
            .into_iter()
            .filter(|m| m.envelope.reverse_path.is_null())
            .collect();
        if relayed_dsn {
            assert_eq!(dsns.len(), 1, "{keywords:?}");
            let text = String::from_utf8(spool.read(dsns[0].id).unwrap()).unwrap();
            assert!(
                text.contains(
                    "Final-Recipient: rfc822; bob@example.net\r\nAction: relayed\r\nStatus: 2.0.0"
                ),
                "{text}"
            );
            assert!(
                text.contains("Original-Recipient: rfc822; bob+2Btag@example.net"),
                "{text}"
            );
            assert!(
                text.contains("Original-Envelope-Id: id+2B1+20x+3D2"),
                "{text}"
            );
            assert!(!text.contains("carol@"), "carol did not ask: {text}");
        } else {
            assert!(dsns.is_empty(), "{keywords:?}: the next hop notifies");
        }
    }
}

// ---- 8BITMIME and BINARYMIME (RFC 6152, RFC 3030) ----

#[tokio::test]
async fn eight_bit_content_is_declared_8bitmime_even_when_the_envelope_said_nothing() {
    let server = Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000"])).await;
    let env = envelope(MailParams::default(), &["<bob@example.net>"]);
    let out = send(&server.hop("example.net"), &env, EIGHT_BIT.as_bytes()).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        server.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE={}",
            EIGHT_BIT.len()
        )]
    );
    assert_eq!(server.messages(), [EIGHT_BIT.as_bytes()]);
}

#[tokio::test]
async fn eight_bit_mime_goes_quoted_printable_to_a_server_without_8bitmime() {
    let server = Scripted::start(Script::new(&["SIZE 1000000"])).await;
    let mut params = MailParams::default();
    params.body = Body::EightBitMime;
    let env = envelope(params, &["<bob@example.net>"]);
    let out = send(&server.hop("example.net"), &env, EIGHT_BIT.as_bytes()).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    let sent = &server.messages()[0];
    assert!(sent.is_ascii(), "{}", String::from_utf8_lossy(sent));
    assert_eq!(
        std::str::from_utf8(sent).unwrap(),
        "MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Subject: t\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         Gr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n"
    );
    // No BODY=8BITMIME, and the size declared is the size sent.
    assert_eq!(
        server.lines("MAIL"),
        [format!("MAIL FROM:<alice@example.org> SIZE={}", sent.len())]
    );
}

/// Binary: a NUL, a bare LF and a bare CR, and a line longer than 998.
fn binary_message() -> Vec<u8> {
    let mut m = b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
        Content-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    m.extend_from_slice(b"\x00\x01\n\r.\r\n");
    m.extend(std::iter::repeat_n(b'x', 1200));
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test]
async fn binarymime_goes_by_bdat_never_by_data() {
    let server = Scripted::start(Script::new(&[
        "8BITMIME",
        "CHUNKING",
        "BINARYMIME",
        "SIZE 1000000",
    ]))
    .await;
    let mut params = MailParams::default();
    params.body = Body::BinaryMime;
    let env = envelope(params, &["<bob@example.net>"]);
    let message = binary_message();
    let out = send(&server.hop("example.net"), &env, &message).await;
    assert!(
        matches!(&out[0], Outcome::Delivered(r) if r.text().contains("queued as 43")),
        "{out:?}"
    );
    assert_eq!(
        server.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> BODY=BINARYMIME SIZE={}",
            message.len()
        )]
    );
    assert!(server.lines("DATA").is_empty());
    assert_eq!(
        server.lines("BDAT"),
        [format!("BDAT {} LAST", message.len())]
    );
    assert_eq!(server.messages(), [message], "the octets as they are");
}

#[tokio::test]
async fn binarymime_without_chunking_bounces_5_6_3_unless_it_is_text() {
    let server = Scripted::start(Script::new(&["8BITMIME", "CHUNKING", "SIZE 1000000"])).await;
    let hop = server.hop("example.net");
    let mut params = MailParams::default();
    params.body = Body::BinaryMime;
    let env = envelope(params, &["<bob@example.net>"]);
    let out = send(&hop, &env, &binary_message()).await;
    assert!(bounced_with(&out[0], 554, (5, 6, 3)), "{out:?}");
    assert!(server.lines("MAIL").is_empty(), "{:?}", server.commands());

    // Declared BINARYMIME, but in fact 8-bit text: goes as 8BITMIME by DATA.
    let out = send(&hop, &env, EIGHT_BIT.as_bytes()).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    assert_eq!(
        server.lines("MAIL"),
        [format!(
            "MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE={}",
            EIGHT_BIT.len()
        )]
    );
    assert_eq!(server.lines("DATA").len(), 1);
    assert_eq!(server.messages(), [EIGHT_BIT.as_bytes()]);
}

// ---- REQUIRETLS (RFC 8689) ----

fn requiretls_envelope() -> Envelope {
    let mut params = MailParams::default();
    params.requiretls = true;
    envelope(params, &["<bob@example.net>"])
}

#[tokio::test]
async fn requiretls_bounces_5_7_30_when_no_host_offers_verified_tls() {
    // Neither STARTTLS nor REQUIRETLS; the transport is even configured
    // never to use TLS, which the message overrides.
    let first = Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000"])).await;
    let second = Scripted::start(Script::new(&["8BITMIME", "REQUIRETLS", "SIZE 1000000"])).await;
    let hop = NextHop::new("example.net", vec![first.host.clone(), second.host.clone()]);
    let out = send(&hop, &requiretls_envelope(), ASCII).await;
    assert!(bounced_with(&out[0], 550, (5, 7, 30)), "{out:?}");
    for server in [&first, &second] {
        assert_eq!(server.connections(), 1, "every host is tried");
        assert!(server.lines("MAIL").is_empty(), "{:?}", server.commands());
    }
}

#[tokio::test]
async fn requiretls_defers_while_a_host_cannot_be_reached() {
    let plain = Scripted::start(Script::new(&["8BITMIME", "REQUIRETLS", "SIZE 1000000"])).await;
    let dead = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let hop = NextHop::new(
        "example.net",
        vec![
            plain.host.clone(),
            HopHost::new("dead.test", vec![LOOPBACK], dead),
        ],
    );
    let out = send(&hop, &requiretls_envelope(), ASCII).await;
    assert!(
        matches!(&out[0], Outcome::Deferred(r) if r.is_transient()),
        "{out:?}"
    );
    assert!(plain.lines("MAIL").is_empty(), "{:?}", plain.commands());
}

#[tokio::test]
async fn requiretls_goes_over_verified_tls_with_the_parameter() {
    let cert = Certificate::new();
    let server =
        Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000", "REQUIRETLS"]).with_tls(&cert))
            .await;
    // Configured never to use TLS: the message asks for it all the same.
    let t = transport().with_verified_tls(cert.client.clone());
    let out = send_with(
        &t,
        &server.hop("example.net"),
        &requiretls_envelope(),
        ASCII,
    )
    .await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    let session = &server.sessions()[0];
    assert!(session.tls);
    assert_eq!(
        session.commands[..4],
        [
            "EHLO relay.portcullis.test".to_owned(),
            "STARTTLS".to_owned(),
            "EHLO relay.portcullis.test".to_owned(),
            format!(
                "MAIL FROM:<alice@example.org> SIZE={} REQUIRETLS",
                ASCII.len()
            ),
        ]
    );
}

#[tokio::test]
async fn requiretls_refuses_an_unverified_certificate_or_a_server_without_it() {
    let cert = Certificate::new();
    let with =
        Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000", "REQUIRETLS"]).with_tls(&cert))
            .await;
    // The platform's trust store does not know the test certificate.
    let out = send(&with.hop("example.net"), &requiretls_envelope(), ASCII).await;
    assert!(bounced_with(&out[0], 550, (5, 7, 30)), "{out:?}");
    assert!(with.lines("MAIL").is_empty(), "{:?}", with.commands());

    // Verified, but no REQUIRETLS after STARTTLS.
    let without = Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000"]).with_tls(&cert)).await;
    let t = transport().with_verified_tls(cert.client.clone());
    let out = send_with(
        &t,
        &without.hop("example.net"),
        &requiretls_envelope(),
        ASCII,
    )
    .await;
    assert!(bounced_with(&out[0], 550, (5, 7, 30)), "{out:?}");
    assert!(
        out[0].reply().text().contains("does not offer REQUIRETLS"),
        "{out:?}"
    );
    assert!(without.sessions()[0].tls);
    assert!(without.lines("MAIL").is_empty(), "{:?}", without.commands());
}

/// A pooled connection with unchecked (opportunistic) TLS does not carry a
/// REQUIRETLS message: a verified one is opened for it.
#[tokio::test]
async fn requiretls_does_not_reuse_an_unverified_pooled_connection() {
    let cert = Certificate::new();
    let server =
        Scripted::start(Script::new(&["8BITMIME", "SIZE 1000000", "REQUIRETLS"]).with_tls(&cert))
            .await;
    let t = SmtpTransport::new(
        SmtpTransportConfig::new("relay.portcullis.test")
            .with_tls(TlsPolicy::Opportunistic)
            .with_timeout(Duration::from_secs(5)),
    )
    .unwrap()
    .with_verified_tls(cert.client.clone());
    let hop = server.hop("example.net");
    let plain = envelope(MailParams::default(), &["<bob@example.net>"]);
    let out = send_with(&t, &hop, &plain, ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    let out = send_with(&t, &hop, &requiretls_envelope(), ASCII).await;
    assert!(matches!(&out[0], Outcome::Delivered(_)), "{out:?}");
    let sessions = server.sessions();
    assert_eq!(sessions.len(), 2, "a second, verified connection");
    assert!(sessions.iter().all(|s| s.tls));
    assert_eq!(
        server.lines("MAIL"),
        [
            format!("MAIL FROM:<alice@example.org> SIZE={}", ASCII.len()),
            format!(
                "MAIL FROM:<alice@example.org> SIZE={} REQUIRETLS",
                ASCII.len()
            ),
        ]
    );
}

// ---- Postfix smtp-sink ----

/// smtp-sink announces DSN and 8BITMIME but not SIZE: the DSN parameters
/// and BODY go, SIZE does not.
#[tokio::test]
async fn against_smtp_sink_with_dsn_and_8bitmime() {
    let Some(sink) = Sink::start(&[], true).await else {
        return;
    };
    let env = dsn_envelope();
    let out = send(&sink.hop("example.net"), &env, EIGHT_BIT.as_bytes()).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Relayed {
                dsn_passed_on: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(matches!(&out[1], Outcome::Delivered(_)), "{out:?}");
    let dumps = sink.dumps();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let d = &dumps[0];
    assert!(
        d.contains(
            "X-Mail-Args: <alice@example.org> BODY=8BITMIME RET=HDRS ENVID=id+2B1+20x+3D2\n"
        ),
        "{d}"
    );
    assert!(!d.contains("SIZE="), "{d}");
    assert!(
        d.contains("X-Rcpt-Args: <bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@example.net\n"),
        "{d}"
    );
    assert!(d.contains("Grüße aus Köln"), "{d}");
}

/// `smtp-sink -N -8`: no DSN, no 8BITMIME: no parameters at all, the body
/// converted to quoted-printable, a relayed notice owed.
#[tokio::test]
async fn against_smtp_sink_without_dsn_and_8bitmime() {
    let Some(sink) = Sink::start(&["-N", "-8"], true).await else {
        return;
    };
    let env = dsn_envelope();
    let out = send(&sink.hop("example.net"), &env, EIGHT_BIT.as_bytes()).await;
    assert!(
        matches!(
            &out[0],
            Outcome::Relayed {
                dsn_passed_on: false,
                ..
            }
        ),
        "{out:?}"
    );
    let dumps = sink.dumps();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let d = &dumps[0];
    assert!(d.contains("X-Mail-Args: <alice@example.org>\n"), "{d}");
    assert!(d.contains("X-Rcpt-Args: <bob@example.net>\n"), "{d}");
    assert!(d.contains("Gr=C3=BC=C3=9Fe aus K=C3=B6ln"), "{d}");
    assert!(d.is_ascii(), "{d}");
}
