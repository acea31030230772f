//! End to end through `QueueRunner` with the in-process fake transport:
//! partial delivery, failure DSN from `<>`, state surviving a restart, and
//! the SMTP client transport against a scripted SMTP server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_core::{
    Envelope, ForwardPath, MailParams, ManualClock, Recipient, Reply, ReversePath,
};
use portcullis_queue::{
    DeliveryReport, DeliveryRequest, DsnConfig, FakeTransport, HopHost, NextHop, Outcome,
    QueueRunner, RecipientStatus, SchedulerConfig, SmtpTransport, SmtpTransportConfig, Spool,
    SpoolConfig, StaticRouter, TlsPolicy, Transport,
};
use support::{Script, Scripted};

mod support;

fn envelope(rcpts: &[&str]) -> Envelope {
    let mut env = Envelope::new(
        ReversePath::parse("<alice@example.org>").unwrap(),
        MailParams::default(),
    );
    for r in rcpts {
        env.recipients
            .push(Recipient::new(ForwardPath::parse(r).unwrap()));
    }
    env
}

fn local(r: &Recipient) -> String {
    r.path.address().unwrap().local_part().to_string()
}

fn runner(
    spool: Spool,
    clock: Arc<ManualClock>,
    later_ok: Arc<AtomicBool>,
) -> (QueueRunner, Arc<FakeTransport>) {
    let transport = Arc::new(FakeTransport::with_rule(move |r| match local(r).as_str() {
        "nouser" => Outcome::Bounced(Reply::new(550, (5, 1, 1), "No such user")),
        "later" if !later_ok.load(Ordering::SeqCst) => {
            Outcome::Deferred(Reply::new(451, (4, 7, 1), "Greylisted"))
        }
        _ => Outcome::Delivered(Reply::new(250, (2, 0, 0), "Queued")),
    }));
    let router = Arc::new(StaticRouter::new(None).with_smarthost(vec![HopHost::new(
        "smarthost",
        vec!["127.0.0.1".parse().unwrap()],
        25,
    )]));
    let r = QueueRunner::new(
        spool,
        SchedulerConfig::default(),
        router,
        transport.clone(),
        DsnConfig::new("relay.portcullis.test"),
        clock,
    );
    (r, transport)
}

#[tokio::test]
async fn partial_delivery_bounce_dsn_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let later_ok = Arc::new(AtomicBool::new(false));
    let spool = Spool::open(dir.path(), SpoolConfig::default(), clock.clone()).unwrap();
    let id = spool
        .store(
            &envelope(&["<ok@x.example>", "<nouser@x.example>", "<later@y.example>"]),
            b"Subject: hello\r\n\r\nbody\r\n",
        )
        .unwrap();
    let (r, fake) = runner(spool.clone(), clock.clone(), later_ok.clone());
    r.submit(id).unwrap();
    let reports = r.run_due().await.unwrap();
    assert!(reports.iter().any(
        |e| matches!(e, DeliveryReport::Delivered { recipient, .. } if local(recipient) == "ok")
    ));
    assert!(reports.iter().any(|e| matches!(e, DeliveryReport::Bounced { recipient, reply, expired: false, .. } if local(recipient) == "nouser" && reply.code() == 550)));
    assert!(reports.iter().any(
        |e| matches!(e, DeliveryReport::Deferred { recipient, .. } if local(recipient) == "later")
    ));
    assert_eq!(fake.deliveries().len(), 2, "one attempt per destination");

    // The failure DSN is spooled: from <> to the sender.
    let dsn = spool
        .list()
        .into_iter()
        .find(|m| m.envelope.reverse_path.is_null())
        .expect("a DSN was queued");
    assert_eq!(
        dsn.envelope.recipients[0].path.to_string(),
        "<alice@example.org>"
    );
    let text = String::from_utf8(spool.read(dsn.id).unwrap()).unwrap();
    assert!(text.contains("Final-Recipient: rfc822; nouser@x.example"));
    assert!(!text.contains("Final-Recipient: rfc822; ok@x.example"));
    drop(r);
    drop(spool);

    // Restart: state comes back from disk.
    let spool = Spool::open(dir.path(), SpoolConfig::default(), clock.clone()).unwrap();
    let state = spool.inspect(id).unwrap().state;
    assert_eq!(state.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(state.recipients[1].status, RecipientStatus::Bounced);
    assert_eq!(state.recipients[2].status, RecipientStatus::Pending);
    let (r, fake) = runner(spool.clone(), clock.clone(), later_ok.clone());
    r.run_due().await.unwrap();
    let sent = fake.deliveries();
    assert_eq!(sent.len(), 1, "only the DSN is due; the original backs off");
    assert!(sent[0].sender.is_null());
    assert!(spool.inspect(dsn.id).is_err(), "delivered DSN removed");

    later_ok.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(400));
    r.run_due().await.unwrap();
    let sent = fake.deliveries();
    assert_eq!(sent.len(), 2);
    let rcpts: Vec<String> = sent[1].recipients.iter().map(local).collect();
    assert_eq!(
        rcpts,
        vec!["later"],
        "never re-sent to delivered or bounced recipients"
    );
    assert!(spool.is_empty(), "completed message removed");
    assert!(r.next_wakeup().is_none());
}

#[tokio::test]
async fn held_messages_wait_for_release() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let spool = Spool::open(dir.path(), SpoolConfig::default(), clock.clone()).unwrap();
    let q = spool
        .store_quarantined(&envelope(&["<ok@x.example>"]), b"x\r\n", "bulk")
        .unwrap();
    let (r, fake) = runner(
        spool.clone(),
        clock.clone(),
        Arc::new(AtomicBool::new(true)),
    );
    r.run_due().await.unwrap();
    assert!(
        fake.deliveries().is_empty(),
        "quarantined mail is not delivered"
    );
    r.release(q).unwrap();
    r.run_due().await.unwrap();
    assert_eq!(fake.deliveries().len(), 1);
    assert!(spool.is_empty());
}

/// The scripted SMTP server (`support`): RCPT verdict by local part.
async fn smtp_server() -> Scripted {
    Scripted::start(
        Script::new(&["8BITMIME", "SIZE 1000000"]).with_rcpt(|line| {
            let up = line.to_ascii_uppercase();
            Some(
                if up.contains("<BAD@") {
                    "550 5.1.1 no such user"
                } else if up.contains("<GREY@") {
                    "451 4.7.1 greylisted"
                } else {
                    "250 2.1.5 ok"
                }
                .to_owned(),
            )
        }),
    )
    .await
}

#[tokio::test]
async fn smtp_transport_maps_replies_and_reuses_connections() {
    let server = smtp_server().await;
    let t = SmtpTransport::new(
        SmtpTransportConfig::new("relay.portcullis.test")
            .with_tls(TlsPolicy::Never)
            .with_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    // The first address refuses connections (port 1): the next one is tried.
    let hop = NextHop::new(
        "x.example",
        vec![
            HopHost::new("dead", vec!["127.0.0.1".parse().unwrap()], 1),
            server.host.clone(),
        ],
    );
    let env = envelope(&["<ok@x.example>", "<bad@x.example>", "<grey@x.example>"]);
    let rcpts: Vec<&Recipient> = env.recipients.iter().collect();
    let msg = b"Subject: t\r\n\r\n.starts with a dot\r\nend\r\n";
    let out = t
        .deliver(DeliveryRequest::new(&hop, &env, &rcpts, msg))
        .await;
    assert!(
        matches!(&out[0], Outcome::Delivered(r) if r.code() == 250 && r.text().contains("queued as 42"))
    );
    assert!(
        matches!(&out[1], Outcome::Bounced(r) if r.code() == 550 && r.enhanced().unwrap().to_string() == "5.1.1")
    );
    assert!(matches!(&out[2], Outcome::Deferred(r) if r.code() == 451));
    assert_eq!(
        server.messages()[0],
        b"Subject: t\r\n\r\n..starts with a dot\r\nend\r\n",
        "dot-stuffed on the wire"
    );

    // Second message: same connection.
    let only_ok = &rcpts[..1];
    let out = t
        .deliver(DeliveryRequest::new(&hop, &env, only_ok, b"x\r\n"))
        .await;
    assert!(matches!(&out[0], Outcome::Delivered(_)));
    assert_eq!(server.connections(), 1, "connection reused");

    // Nobody listening at all: deferred, not bounced.
    let dead = NextHop::new(
        "y.example",
        vec![HopHost::new("dead", vec!["127.0.0.1".parse().unwrap()], 1)],
    );
    let out = t
        .deliver(DeliveryRequest::new(&dead, &env, only_ok, b"x\r\n"))
        .await;
    assert!(matches!(&out[0], Outcome::Deferred(r) if r.code() == 451));
}

/// A host that accepts the connection and never greets, or never answers
/// the end of data: the delivery is deferred after the configured timeout
/// (4.4.7), not held forever.
#[tokio::test]
async fn smtp_transport_times_out_silent_greeting_and_final_reply() {
    // Accepts and says nothing; greets and answers all but the end of data.
    let silent = Scripted::start(Script::silent()).await;
    let mute = Scripted::start(Script::new(&[]).mute_after_data()).await;

    let t = SmtpTransport::new(
        SmtpTransportConfig::new("relay.portcullis.test")
            .with_tls(TlsPolicy::Never)
            .with_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let env = envelope(&["<ok@x.example>"]);
    let rcpts: Vec<&Recipient> = env.recipients.iter().collect();
    for (name, server) in [("silent", &silent), ("mute", &mute)] {
        let hop = server.hop("x.example");
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            t.deliver(DeliveryRequest::new(&hop, &env, &rcpts, b"x\r\n")),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: delivery hung past its timeout"));
        assert!(
            matches!(&out[0], Outcome::Deferred(r) if r.enhanced().unwrap().to_string() == "4.4.7"),
            "{name}: {out:?}"
        );
    }
}
