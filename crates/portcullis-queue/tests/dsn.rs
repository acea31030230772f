//! DSNs parse with mail-parser and carry the RFC 3464 fields.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use portcullis_core::{
    Clock, Envelope, ForwardPath, MailParams, ManualClock, Notify, Recipient, Reply, Ret,
    ReversePath,
};
use portcullis_queue::{
    DsnConfig, DsnKind, DsnRecipient, MessageInfo, Spool, SpoolConfig, build_dsn,
};

const ORIGINAL: &[u8] = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: quarterly report\r\nMessage-ID: <q1@example.org>\r\n\r\nThe numbers are attached.\r\n.leading dot line\r\n";

fn stored(env: Envelope) -> (tempfile::TempDir, MessageInfo) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let spool = Spool::open(dir.path(), SpoolConfig::default(), clock).unwrap();
    let id = spool.store(&env, ORIGINAL).unwrap();
    let info = spool.inspect(id).unwrap();
    (dir, info)
}

fn envelope(ret: Option<Ret>, notify: Option<Notify>) -> Envelope {
    let mut params = MailParams::default();
    params.ret = ret;
    params.envid = Some("QQ314159".into());
    let mut env = Envelope::new(ReversePath::parse("<alice@example.org>").unwrap(), params);
    let mut r = Recipient::new(ForwardPath::parse("<bob@example.net>").unwrap());
    r.notify = notify;
    r.orcpt = Some(("rfc822".into(), "Bob@Example.NET".into()));
    env.recipients.push(r);
    let mut r2 = Recipient::new(ForwardPath::parse("<carol@example.net>").unwrap());
    r2.notify = Some(Notify::NEVER);
    env.recipients.push(r2);
    env
}

/// The `message/delivery-status` part's text.
fn status_part(raw: &[u8]) -> String {
    let msg = MessageParser::default().parse(raw).unwrap();
    let part = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "message" && c.subtype() == Some("delivery-status"))
        })
        .expect("delivery-status part");
    String::from_utf8_lossy(part.contents()).into_owned()
}

#[test]
fn failure_dsn_is_a_multipart_report_with_the_full_original() {
    let (_d, info) = stored(envelope(None, None));
    let now = info.arrival + Duration::from_secs(3600);
    let reply = Reply::new(550, (5, 1, 1), "User unknown\r\nInjected: header");
    let mut rcpt = DsnRecipient::new(0, Some(reply));
    rcpt.remote_mta = Some("mx1.example.net".into());
    let dsn = build_dsn(
        &DsnConfig::new("relay.portcullis.test"),
        DsnKind::Failure,
        &info,
        &[rcpt, DsnRecipient::new(1, None)],
        ORIGINAL,
        now,
        None,
    )
    .unwrap();
    // Sent from <> to the original sender, never asking for a DSN itself.
    assert!(dsn.envelope.reverse_path.is_null());
    assert_eq!(dsn.envelope.recipients.len(), 1);
    assert_eq!(
        dsn.envelope.recipients[0].path.to_string(),
        "<alice@example.org>"
    );

    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert!(
        msg.header_raw("Injected").is_none(),
        "reply text cannot add headers"
    );

    let PartType::Multipart(children) = &msg.parts[0].body else {
        panic!("root is not multipart");
    };
    assert_eq!(children.len(), 3);
    let human = &msg.parts[children[0] as usize];
    assert_eq!(human.content_type().unwrap().ctype(), "text");
    assert!(human.text_contents().unwrap().contains("bob@example.net"));

    let status = status_part(&dsn.message);
    for field in [
        "Reporting-MTA: dns; relay.portcullis.test",
        "Original-Envelope-Id: QQ314159",
        "Original-Recipient: rfc822; Bob@Example.NET",
        "Final-Recipient: rfc822; bob@example.net",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx1.example.net",
        "Diagnostic-Code: smtp; 550-5.1.1 User unknown / 550 5.1.1 Injected: header",
        "Arrival-Date: Thu, 01 Jan 2026 00:00:00 +0000",
    ] {
        assert!(status.contains(field), "missing {field:?} in\n{status}");
    }
    assert!(!status.lines().any(|l| l.starts_with("Injected")));
    // NOTIFY=NEVER recipient is not reported.
    assert!(!status.contains("carol"), "{status}");

    let original = &msg.parts[children[2] as usize];
    let PartType::Message(inner) = &original.body else {
        panic!("third part is not message/rfc822");
    };
    assert_eq!(inner.subject(), Some("quarterly report"));
    assert!(
        inner.body_text(0).unwrap().contains(".leading dot line"),
        "full body returned"
    );
}

#[test]
fn ret_hdrs_returns_only_headers() {
    let (_d, info) = stored(envelope(Some(Ret::Headers), None));
    let dsn = build_dsn(
        &DsnConfig::new("relay.portcullis.test"),
        DsnKind::Failure,
        &info,
        &[DsnRecipient::new(0, None)],
        ORIGINAL,
        info.arrival,
        None,
    )
    .unwrap();
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    let PartType::Multipart(children) = &msg.parts[0].body else {
        panic!();
    };
    let third = &msg.parts[children[2] as usize];
    let ct = third.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("rfc822-headers")));
    let text = String::from_utf8_lossy(third.contents());
    assert!(text.contains("Subject: quarterly report"));
    assert!(!text.contains("numbers are attached"));
    // Status falls back to 5.0.0 without a reply.
    assert!(status_part(&dsn.message).contains("Status: 5.0.0"));
}

#[test]
fn delay_dsn_has_will_retry_until_and_respects_notify() {
    let (_d, info) = stored(envelope(None, None));
    let until = info.arrival + Duration::from_secs(8 * 86_400);
    let reply = Reply::new(451, (4, 4, 1), "Connection timed out");
    let dsn = build_dsn(
        &DsnConfig::new("relay.portcullis.test"),
        DsnKind::Delay,
        &info,
        &[DsnRecipient::new(0, Some(reply))],
        ORIGINAL,
        info.arrival + Duration::from_secs(4 * 3600),
        Some(until),
    )
    .unwrap();
    let status = status_part(&dsn.message);
    assert!(status.contains("Action: delayed"));
    assert!(status.contains("Status: 4.4.1"));
    assert!(status.contains("Will-Retry-Until: Fri, 09 Jan 2026 00:00:00 +0000"));

    // NOTIFY=FAILURE only: no delay DSN.
    let (_d2, info2) = stored(envelope(
        None,
        Some(Notify {
            success: false,
            failure: true,
            delay: false,
        }),
    ));
    assert!(
        build_dsn(
            &DsnConfig::new("h"),
            DsnKind::Delay,
            &info2,
            &[DsnRecipient::new(0, None)],
            ORIGINAL,
            info2.arrival,
            None
        )
        .is_none()
    );
}

#[test]
fn success_dsn_only_when_asked() {
    let (_d, info) = stored(envelope(None, None));
    let cfg = DsnConfig::new("relay.portcullis.test");
    let ok = Reply::new(250, (2, 0, 0), "queued as 12345");
    assert!(
        build_dsn(
            &cfg,
            DsnKind::Success,
            &info,
            &[DsnRecipient::new(0, Some(ok.clone()))],
            ORIGINAL,
            info.arrival,
            None
        )
        .is_none(),
        "default NOTIFY has no SUCCESS"
    );
    let (_d2, info2) = stored(envelope(
        None,
        Some(Notify {
            success: true,
            failure: true,
            delay: false,
        }),
    ));
    let dsn = build_dsn(
        &cfg,
        DsnKind::Success,
        &info2,
        &[DsnRecipient::new(0, Some(ok))],
        ORIGINAL,
        info2.arrival,
        None,
    )
    .unwrap();
    let status = status_part(&dsn.message);
    assert!(status.contains("Action: delivered"));
    assert!(status.contains("Status: 2.0.0"));
    let msg = MessageParser::default().parse(&dsn.message).unwrap();
    let PartType::Multipart(children) = &msg.parts[0].body else {
        panic!();
    };
    let third = &msg.parts[children[2] as usize];
    assert_eq!(
        third.content_type().unwrap().subtype(),
        Some("rfc822-headers"),
        "success reports return headers only"
    );
}

#[test]
fn never_for_a_null_reverse_path() {
    let mut env = envelope(None, None);
    env.reverse_path = ReversePath::Null;
    let (_d, info) = stored(env);
    let clock = ManualClock::default();
    for kind in [DsnKind::Failure, DsnKind::Delay, DsnKind::Success] {
        assert!(
            build_dsn(
                &DsnConfig::new("h"),
                kind,
                &info,
                &[DsnRecipient::new(0, None)],
                ORIGINAL,
                clock.now(),
                None
            )
            .is_none()
        );
    }
}

/// RFC 8689 §5: a notice about a REQUIRETLS message returns only the
/// header section (RET=FULL disregarded) and is itself sent with
/// REQUIRETLS; the flag comes back from the spool after a reopen.
#[test]
fn requiretls_returns_headers_only_and_sends_the_dsn_with_requiretls() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let mut env = envelope(Some(Ret::Full), None);
    env.params.requiretls = true;
    let id = {
        let spool = Spool::open(dir.path(), SpoolConfig::default(), clock.clone()).unwrap();
        spool.store(&env, ORIGINAL).unwrap()
    };
    let spool = Spool::open(dir.path(), SpoolConfig::default(), clock).unwrap();
    let info = spool.inspect(id).unwrap();
    assert!(info.envelope.params.requiretls, "lost in the spool");
    for kind in [DsnKind::Failure, DsnKind::Delay] {
        let dsn = build_dsn(
            &DsnConfig::new("relay.portcullis.test"),
            kind,
            &info,
            &[DsnRecipient::new(0, None)],
            ORIGINAL,
            info.arrival,
            None,
        )
        .unwrap();
        assert!(
            dsn.envelope.params.requiretls,
            "{kind:?} DSN without REQUIRETLS"
        );
        assert!(dsn.envelope.reverse_path.is_null());
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        let PartType::Multipart(children) = &msg.parts[0].body else {
            panic!("root is not multipart");
        };
        let third = &msg.parts[children[2] as usize];
        let ct = third.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("rfc822-headers")));
        let text = String::from_utf8_lossy(third.contents());
        assert!(text.contains("Subject: quarterly report"), "{text}");
        assert!(
            !text.contains("numbers are attached"),
            "{kind:?}: body returned"
        );
    }

    // Without REQUIRETLS the same RET=FULL failure returns the body and
    // the DSN goes without the parameter.
    let (_d, plain) = stored(envelope(Some(Ret::Full), None));
    let dsn = build_dsn(
        &DsnConfig::new("relay.portcullis.test"),
        DsnKind::Failure,
        &plain,
        &[DsnRecipient::new(0, None)],
        ORIGINAL,
        plain.arrival,
        None,
    )
    .unwrap();
    assert!(!dsn.envelope.params.requiretls);
    assert!(String::from_utf8_lossy(&dsn.message).contains("numbers are attached"));
}
