//! End-to-end tests of the filters configured by `[dnsbl]`, `[mailauth]`
//! and `[scan]`: the built relay on ephemeral ports, a real DNS server
//! (`hickory-server`) on loopback serving a test zone, and a real `clamd`
//! when it is installed (skipped visibly otherwise).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Relay, message};
use portcullis_testkit::clamd::{Clamd, EICAR};
use portcullis_testkit::dns::{DnsRecord, DnsServer};

fn a(owner: &str, ip: &str) -> DnsRecord {
    portcullis_testkit::dns::a(owner, ip, 3600)
}

fn txt(owner: &str, text: &str) -> DnsRecord {
    portcullis_testkit::dns::txt(owner, text, 3600)
}

/// A DNS server for the zone `test.` on 127.0.0.1 (UDP and TCP), run on
/// its own thread and runtime for the life of the test process. Records
/// are written by hand from RFC 5782 §2.1 (DNSBL names: reversed octets),
/// RFC 7208 (SPF) and RFC 7489 (DMARC).
fn dns() -> SocketAddr {
    static ADDR: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let records = vec![
                    // The test client, 127.0.0.1, listed in bl.test ...
                    a("1.0.0.127.bl.test.", "127.0.0.2"),
                    txt("1.0.0.127.bl.test.", "Listed for the test"),
                    // ... and with a tagging code in tag.test.
                    a("1.0.0.127.tag.test.", "127.0.0.10"),
                    // SPF: sender.test authorizes the test client; forged.test nobody.
                    txt("sender.test.", "v=spf1 ip4:127.0.0.1 -all"),
                    txt("_dmarc.sender.test.", "v=DMARC1; p=reject"),
                    txt("mail.sender.test.", "v=spf1 ip4:127.0.0.1 -all"),
                    txt("forged.test.", "v=spf1 -all"),
                    txt("_dmarc.forged.test.", "v=DMARC1; p=reject"),
                ];
                let server = DnsServer::builder().zone("test.", records).start().await;
                let addr = server.addr;
                tx.send(addr).unwrap();
                // Serve until the test process exits.
                std::future::pending::<()>().await;
                drop(server);
            });
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    })
}

const LOCAL: &str = "[local]\ndomains = [\"example.org\"]\nmailboxes = [\"alice@example.org\"]\n";

/// Send one message on the MX port; the final reply.
fn send(relay: &Relay, helo: &str, from: &str, data: &[u8]) -> common::Reply {
    let mut c = Client::greeted(relay.mx);
    c.cmd(&format!("EHLO {helo}"));
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(data);
    c.send_raw(b".\r\n");
    c.reply().unwrap()
}

#[test]
fn dnsbl_listed_client_is_refused_at_connect() {
    let (relay, _tmp) = Relay::start(&format!(
        "{LOCAL}[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [dnsbl]\nnameservers = [\"{}\"]\n[[dnsbl.zone]]\nzone = \"bl.test\"\n",
        dns()
    ));
    let mut c = Client::connect(relay.mx);
    let greeting = c.reply().unwrap();
    assert_eq!(
        (greeting.code, greeting.enhanced().as_str()),
        (554, "5.7.1"),
        "{greeting:?}"
    );
    let text = greeting.text();
    assert!(
        text.contains("bl.test") && text.contains("Listed for the test"),
        "{text}"
    );
    // RFC 5321 §3.1: after a 554 greeting only QUIT is useful.
    let next = c.cmd("EHLO client.test");
    assert_eq!(next.code, 503, "{next:?}");
    // The lookup's latency is in the metrics.
    let text = common::scrape(common::endpoint(&relay.startup_line, "metrics"));
    assert!(
        common::sample(
            &text,
            "portcullis_store_seconds_count{op=\"lookup_a\",store=\"dnsbl\"}"
        ) >= 1.0,
        "{text}"
    );
}

#[test]
fn dnsbl_tagging_zone_adds_a_header_and_unlisted_zone_lets_through() {
    let (relay, _tmp) = Relay::start(&format!(
        "{LOCAL}[dnsbl]\nnameservers = [\"{}\"]\n\
         [[dnsbl.zone]]\nzone = \"tag.test\"\ncodes = {{ \"127.0.0.10\" = \"tag:3\" }}\n\
         [[dnsbl.zone]]\nzone = \"clean.test\"\n",
        dns()
    ));
    let r = send(
        &relay,
        "client.test",
        "someone@world.test",
        &message("dnsbl-tag", "someone@world.test", "alice@example.org", "hi"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = relay.wait_maildir("example.org", "alice", 1, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("X-DNSBL: tag.test=127.0.0.10; score=3"),
        "{text}"
    );
}

#[test]
fn mailauth_adds_authentication_results_strips_forged_ones_and_enforces_dmarc() {
    let (relay, _tmp) = Relay::start(&format!(
        "{LOCAL}[mailauth]\nverify = true\nnameservers = [\"{}\"]\nenforce_dmarc_reject = true\n",
        dns()
    ));
    // A forged result claiming our authserv-id (the harness's hostname) and
    // one from another host, which is kept.
    let mut data = b"Authentication-Results: relay.test; dkim=pass header.d=sender.test\r\n\
                     Authentication-Results: other.example; spf=none\r\n"
        .to_vec();
    data.extend_from_slice(&message(
        "auth-1",
        "user@sender.test",
        "alice@example.org",
        "hello",
    ));
    let r = send(&relay, "mail.sender.test", "user@sender.test", &data);
    assert_eq!(r.code, 250, "{r:?}");
    let got = relay.wait_maildir("example.org", "alice", 1, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&got[0]).into_owned();
    let ours: Vec<&str> = text
        .split("\r\n")
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with("authentication-results: relay.test")
        })
        .collect();
    assert_eq!(ours.len(), 1, "exactly our own header: {text}");
    // The field may be folded: look at it whole.
    let start = text.find(ours[0]).unwrap();
    let field: String = text[start..]
        .split("\r\n")
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with([' ', '\t']))
        .map(|(_, l)| l)
        .collect();
    assert!(field.contains("spf=pass"), "{field}");
    assert!(field.contains("dmarc=pass"), "{field}");
    assert!(
        !field.contains("dkim=pass"),
        "the forged claim is gone: {field}"
    );
    assert!(
        text.contains("Authentication-Results: other.example; spf=none"),
        "{text}"
    );

    // DMARC fail with p=reject, enforced: refused.
    let r = send(
        &relay,
        "mail.forged.test",
        "ceo@forged.test",
        &message("auth-2", "ceo@forged.test", "alice@example.org", "pay"),
    );
    assert_eq!((r.code, r.enhanced().as_str()), (550, "5.7.1"), "{r:?}");
}

#[test]
fn scan_rejects_or_quarantines_eicar_with_a_real_clamd() {
    let Some(clamd) = Clamd::start() else {
        println!("skipping: clamd is not installed (apt-get install clamav-daemon)");
        return;
    };
    let virus = |id: &str| {
        message(
            id,
            "sender@world.test",
            "alice@example.org",
            &format!("see the attachment:\r\n{}", String::from_utf8_lossy(EICAR)),
        )
    };

    let (relay, _tmp) = Relay::start(&format!("{LOCAL}[scan]\nclamd = \"{}\"\n", clamd.tcp));
    let r = send(&relay, "client.test", "sender@world.test", &virus("scan-1"));
    assert_eq!((r.code, r.enhanced().as_str()), (554, "5.7.1"), "{r:?}");
    assert!(r.text().contains("Portcullis-Test-EICAR"), "{r:?}");
    let clean = message("scan-2", "sender@world.test", "alice@example.org", "clean");
    let r = send(&relay, "client.test", "sender@world.test", &clean);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(
        relay
            .wait_maildir("example.org", "alice", 1, Duration::from_secs(20))
            .len(),
        1
    );
    drop(relay);

    // Quarantine: accepted, kept in the spool's quarantine, never delivered.
    let (mut relay, _tmp) = Relay::start(&format!(
        "{LOCAL}[scan]\nclamd = \"{}\"\non_virus = \"quarantine\"\n",
        clamd.tcp
    ));
    let r = send(&relay, "client.test", "sender@world.test", &virus("scan-3"));
    assert_eq!(r.code, 250, "{r:?}");
    let r = send(&relay, "client.test", "sender@world.test", &clean);
    assert_eq!(r.code, 250, "{r:?}");
    // The clean one arrives; the quarantined one, sent first, does not.
    let got = relay.wait_maildir("example.org", "alice", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("scan-2"));
    assert!(relay.terminate(Duration::from_secs(30)).is_some());
    let spool = portcullis_queue::Spool::open(
        relay.data.join("spool"),
        portcullis_queue::SpoolConfig::default(),
        Arc::new(portcullis_core::SystemClock),
    )
    .unwrap();
    let held = spool.quarantined();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(relay.maildir("example.org", "alice").len(), 1);
}

/// Backup MX with recipient learning: the primary's answers (the sink
/// refuses `reject…` recipients with 550 5.1.1) teach which recipients of
/// the backed-up domain exist; a known-invalid one is refused at RCPT, and
/// with `defer_unknown_recipients` an unknown one gets a 4xx, never a 5xx.
#[test]
fn backup_mx_learns_recipients_from_the_primarys_answers() {
    let sink = common::Sink::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = |defer: bool| {
        format!(
            "[backup_mx]\ndomains = [\"customer.test\"]\nlearn_recipients = true\n\
             defer_unknown_recipients = {defer}\n\
             [delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n\
             [delivery.routes]\n\"customer.test\" = \"{}\"\n",
            sink.addr
        )
    };
    let mut relay = Relay::start_in(tmp.path(), &cfg(false));
    let rcpt = |relay: &Relay, to: &str| common::rcpt(relay.mx, "someone@world.test", to);
    // Learning, not deferring: unknown recipients are accepted.
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO world.test");
    assert_eq!(c.cmd("MAIL FROM:<someone@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@customer.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<reject-me@customer.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "learn-1",
        "someone@world.test",
        "bob@customer.test",
        "x",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    c.cmd("QUIT");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["<bob@customer.test>".to_owned()]);
    // The outcome is learned right after the attempt: wait for the log line.
    let start = Instant::now();
    while !relay
        .log_text()
        .contains("reject-me@customer.test>=bounced")
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = rcpt(&relay, "reject-me@customer.test");
    assert_eq!((r.code, r.enhanced().as_str()), (550, "5.1.1"), "{r:?}");
    assert_eq!(rcpt(&relay, "bob@customer.test").code, 250);
    assert_eq!(rcpt(&relay, "carol@customer.test").code, 250);
    assert!(relay.terminate(Duration::from_secs(30)).is_some());

    // Restarted with deferral on: what was learned persisted; an unknown
    // recipient is deferred (4xx), never refused.
    let relay = Relay::start_in(tmp.path(), &cfg(true));
    assert_eq!(rcpt(&relay, "bob@customer.test").code, 250);
    let r = rcpt(&relay, "reject-me@customer.test");
    assert_eq!(r.code, 550, "{r:?}");
    let r = rcpt(&relay, "dave@customer.test");
    assert_eq!((r.code, r.enhanced().as_str()), (450, "4.1.1"), "{r:?}");
    // Local domains are not affected.
    assert_eq!(rcpt(&relay, "postmaster@localhost").code, 250);
}
