//! End-to-end tests against the inbound MX listener: real clients (swaks,
//! raw sockets) against the built relay binary on loopback.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Client, Relay, check_config, have_tool, message, message_id, strip_added_headers};

const LOCAL: &str =
    "[local]\ndomains = [\"localhost\", \"example.org\"]\nmailboxes = [\"alice@example.org\"]\n";

#[test]
fn swaks_to_postmaster_is_delivered_to_the_maildir() {
    if !have_tool("swaks") {
        return;
    }
    let (relay, _tmp) = Relay::start("");
    assert!(
        relay.startup_line.contains("mailboxes: "),
        "{}",
        relay.startup_line
    );
    let out = Command::new("swaks")
        .args([
            "--to",
            "postmaster@localhost",
            "--from",
            "sender@example.net",
        ])
        .args(["--server", &relay.mx.to_string()])
        .args(["--header", "Message-Id: <swaks-mx-1@test.portcullis>"])
        .args(["--body", "Hello from swaks.\n.leading dot\nend"])
        .arg("--timeout")
        .arg("20")
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    assert!(
        transcript.contains("250 2.0.0 Message accepted as "),
        "{transcript}"
    );
    let msgs = relay.wait_maildir("localhost", "postmaster", 1, Duration::from_secs(20));
    assert_eq!(msgs.len(), 1, "log:\n{}", relay.log_text());
    let (body, added) = strip_added_headers(&msgs[0]);
    assert_eq!(
        message_id(body).as_deref(),
        Some("<swaks-mx-1@test.portcullis>")
    );
    assert!(
        added[0].starts_with("Return-Path: <sender@example.net>"),
        "{added:?}"
    );
    assert!(
        added.iter().any(|h| h.starts_with("Received: from ")),
        "{added:?}"
    );
    let text = String::from_utf8_lossy(body);
    assert!(
        text.contains("\r\n.leading dot\r\n"),
        "a leading dot survives (stuffed by swaks, unstuffed once): {text}"
    );
}

#[test]
fn raw_message_arrives_byte_for_byte_with_only_added_headers() {
    let (relay, _tmp) = Relay::start(LOCAL);
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<someone@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<Alice@Example.ORG>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let mut msg = message(
        "raw-1",
        "someone@example.net",
        "alice@example.org",
        "line one",
    );
    // Octets a relay must not touch: 8-bit text, trailing spaces, a tab.
    msg.extend_from_slice("trailing space \r\n\ttab and caf\u{e9}\r\n".as_bytes());
    let mut wire = Vec::new();
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            wire.push(b'.');
        }
        wire.extend_from_slice(line);
    }
    wire.extend_from_slice(b".\r\n");
    c.send_raw(&wire);
    let r = c.reply().unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
    let got = relay.wait_maildir("example.org", "alice", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    let (body, added) = strip_added_headers(&got[0]);
    assert_eq!(body, &msg[..], "message changed in transit");
    assert_eq!(
        added.len(),
        3,
        "Return-Path, Delivered-To, Received: {added:?}"
    );
}

/// The open-relay attempts of the issue, each with case and trailing-dot
/// variants, from an unauthenticated client on loopback.
#[test]
fn every_open_relay_variant_is_refused() {
    let (relay, _tmp) = Relay::start(LOCAL);
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO attacker.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<spammer@attacker.test>").code, 250);
    let bases = [
        "user@other.example",
        "user%other.example@localhost",
        "other.example!user@localhost",
        "@localhost:user@other.example",
        "@localhost,@example.org:user@other.example",
        "\"user@other.example\"@localhost",
        "\"user%other.example\"@example.org",
        "\"other.example!user\"@localhost",
    ];
    let mut tried = 0;
    let mut syntax = 0;
    for base in bases {
        let variants = [
            base.to_owned(),
            base.to_uppercase(),
            format!("{base}."),
            base.replace("localhost", "LocalHost."),
            base.replace("other.example", "other.example."),
        ];
        for v in variants {
            tried += 1;
            let r = c.cmd(&format!("RCPT TO:<{v}>"));
            let got = (r.code, r.enhanced());
            if v.contains(".@") {
                // `user%other.example.@localhost`: a dot before the '@' is
                // not RFC 5321 dot-string syntax, refused before any relay
                // decision.
                assert_eq!(got, (501, "5.1.3".to_owned()), "<{v}>: {}", r.text());
                syntax += 1;
            } else {
                // Everything else reaches the relay decision (a trailing dot
                // on a domain is accepted and dropped) and is refused.
                assert!(
                    r.code >= 550 && got.1 == "5.7.1",
                    "<{v}>: {} {}",
                    r.code,
                    r.text()
                );
            }
        }
    }
    // Nothing was accepted, so DATA has no recipients.
    let data = c.cmd("DATA");
    assert!(data.code >= 500, "DATA after refused recipients: {data:?}");
    println!(
        "open-relay variants tried: {tried}, refused 5.7.1: {}, refused as local-part syntax (501 5.1.3): {syntax}",
        tried - syntax
    );
    assert_eq!(tried, bases.len() * 5);
    assert!(
        syntax <= bases.len(),
        "only the `.@` variants may be syntax errors"
    );
}

#[test]
fn loopback_is_not_a_relay_network_but_a_configured_network_is() {
    let (relay, _tmp) = Relay::start("");
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO me.test");
    c.cmd("MAIL FROM:<a@localhost>");
    let r = c.cmd("RCPT TO:<b@elsewhere.example>");
    assert_eq!((r.code, r.enhanced().as_str()), (554, "5.7.1"), "{r:?}");
    drop(c);
    drop(relay);

    let (relay, _tmp) = Relay::start("[relay]\nnetworks = [\"127.0.0.0/8\"]\n");
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO me.test");
    c.cmd("MAIL FROM:<a@localhost>");
    let r = c.cmd("RCPT TO:<b@elsewhere.example>");
    assert_eq!(r.code, 250, "trusted network may relay: {r:?}");
    // Still no percent hack, even for a trusted network.
    let r = c.cmd("RCPT TO:<b%elsewhere.example@localhost>");
    assert_eq!(r.enhanced(), "5.7.1", "{r:?}");
}

/// SMTP smuggling: a bare line ending followed by a dot must never end the
/// message, so the text after it is never read as commands.
#[test]
fn smuggling_variants_neither_end_the_message_nor_inject_one() {
    let (relay, _tmp) = Relay::start(LOCAL);
    let variants: [(&str, &[u8]); 5] = [
        ("<LF>.<LF>", b"\n.\n"),
        ("<CR>.<CR>", b"\r.\r"),
        ("<LF>.<CR><LF>", b"\n.\r\n"),
        ("<CR><LF>.<LF>", b"\r\n.\n"),
        ("<CR>.<LF>", b"\r.\n"),
    ];
    let mut results = Vec::new();
    for (i, (name, sep)) in variants.iter().enumerate() {
        let mut c = Client::greeted(relay.mx);
        assert_eq!(c.cmd("EHLO smuggler.test").code, 250);
        assert_eq!(c.cmd("MAIL FROM:<smuggler@attacker.test>").code, 250);
        assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        let mut wire =
            format!("Subject: cover {i}\r\nMessage-ID: <cover-{i}@test>\r\n\r\nfirst line")
                .into_bytes();
        wire.extend_from_slice(sep);
        wire.extend_from_slice(
            format!(
                "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\
                 Subject: smuggled {i}\r\n\r\nevil\r\n"
            )
            .as_bytes(),
        );
        wire.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        c.send_raw(&wire);
        let mut replies = Vec::new();
        while let Some(r) = c.reply() {
            replies.push(r);
        }
        // Exactly one reply for the message, then 221 for QUIT.
        assert_eq!(replies.len(), 2, "{name}: {replies:?}");
        assert_eq!(replies[1].code, 221, "{name}: {replies:?}");
        let verdict = &replies[0];
        assert!(
            verdict.code == 250 || verdict.code == 550,
            "{name}: {verdict:?}"
        );
        results.push(format!("{name} -> {} {}", verdict.code, verdict.enhanced()));
    }
    std::thread::sleep(Duration::from_millis(500));
    let delivered = relay.wait_maildir("example.org", "alice", 0, Duration::from_secs(5));
    for m in &delivered {
        let t = String::from_utf8_lossy(m);
        assert!(
            !t.contains("Return-Path: <evil@attacker.test>"),
            "a smuggled message was delivered:\n{t}"
        );
    }
    println!(
        "smuggling: {}; messages delivered: {}",
        results.join(", "),
        delivered.len()
    );
    assert!(
        delivered.len() <= variants.len(),
        "more messages than sessions"
    );
}

#[test]
fn bad_commands_and_long_lines_get_the_right_codes() {
    let (relay, _tmp) = Relay::start(LOCAL);
    let mut c = Client::greeted(relay.mx);
    let r = c.cmd("MAIL FROM:<a@example.net>");
    assert_eq!(
        (r.code, r.enhanced().as_str()),
        (503, "5.5.1"),
        "MAIL before EHLO: {r:?}"
    );
    let r = c.cmd("FROB something");
    assert_eq!(
        (r.code, r.enhanced().as_str()),
        (500, "5.5.1"),
        "unknown command: {r:?}"
    );
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let r = c.cmd("RCPT TO:<alice@example.org>");
    assert_eq!(
        (r.code, r.enhanced().as_str()),
        (503, "5.5.1"),
        "RCPT before MAIL: {r:?}"
    );
    let r = c.cmd(&format!("NOOP {}", "x".repeat(600)));
    assert_eq!(
        (r.code, r.enhanced().as_str()),
        (500, "5.5.2"),
        "over-long command: {r:?}"
    );
    let r = c.cmd("MAIL FROM:<not an address>");
    assert_eq!(r.code / 100, 5, "bad path: {r:?}");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.net>").code,
        250,
        "session still usable"
    );
    assert_eq!(c.cmd("RCPT TO:<nobody@example.org>").enhanced(), "5.1.1");
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(format!("Subject: long\r\n\r\n{}\r\n.\r\n", "y".repeat(1200)).as_bytes());
    let r = c.reply().unwrap();
    assert_eq!(
        (r.code, r.enhanced().as_str()),
        (550, "5.5.2"),
        "over-long text line: {r:?}"
    );
    // STARTTLS is offered on the MX port, AUTH is not before TLS.
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    assert_eq!(c.cmd("QUIT").code, 221);
    assert!(relay.maildir("example.org", "alice").is_empty());
}

/// `[limits] long_lines = "fold"`: a 2500-octet line is accepted and
/// delivered folded (CRLF + space where a line reaches 1000 octets), not
/// refused and not passed on over the RFC 5321 limit.
#[test]
fn long_lines_fold_when_configured() {
    let (relay, _tmp) = Relay::start(&format!("{LOCAL}[limits]\nlong_lines = \"fold\"\n"));
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let long = "y".repeat(2500);
    c.send_raw(format!("Subject: long\r\n\r\n{long}\r\nend\r\n.\r\n").as_bytes());
    let r = c.reply().unwrap();
    assert_eq!(r.code, 250, "folded, accepted: {r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
    let got = relay.wait_maildir("example.org", "alice", 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let text = String::from_utf8(got[0].clone()).unwrap();
    assert!(
        text.split("\r\n").all(|l| l.len() <= 998),
        "every delivered line within the limit"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        body.replace("\r\n ", ""),
        format!("{long}\r\nend\r\n"),
        "unfolding gives back what was sent"
    );
}

#[test]
fn check_config_names_the_wrong_key() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[mx]\nlisten = [\"127.0.0.1:2525\"]\n[limits]\nmax_recipents = 5\n",
    )
    .unwrap();
    let (code, err) = check_config(&bad);
    assert_eq!(code, Some(2));
    assert!(err.contains("max_recipents"), "{err}");
    assert!(err.contains("line 4"), "{err}");

    for (text, key) in [
        (
            "[relay]\nnetworks = [\"10.0.0.0/33\"]\n",
            "relay.networks[0]",
        ),
        (
            "[backup_mx]\nverify = \"callout\"\ncallout_tls = \"maybe\"\n",
            "backup_mx.callout_tls",
        ),
        ("[backup_mx]\nverify = \"ask\"\n", "backup_mx.verify"),
        // A misspelt key: the parser names it (and the right ones).
        (
            "[backup_mx]\nverify = \"callout\"\ncallout_timout_secs = 5\n",
            "callout_timout_secs",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let (code, err) = check_config(&bad);
        assert_eq!(code, Some(2), "{text}");
        assert!(err.contains(key), "{text}: {err}");
    }

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/relay.toml");
    let (code, err) = check_config(Path::new(example));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn greylisting_defers_a_new_triplet_then_accepts_the_retry() {
    let (relay, _tmp) = Relay::start(&format!(
        "{LOCAL}[greylist]\nenabled = true\ndelay_secs = 3\n"
    ));
    let attempt = |rcpt: &str| {
        let mut c = Client::greeted(relay.mx);
        c.cmd("EHLO retrying.test");
        c.cmd("MAIL FROM:<patient@world.test>");
        c.cmd(&format!("RCPT TO:<{rcpt}>"))
    };
    let first = attempt("alice@example.org");
    assert_eq!(
        (first.code, first.enhanced().as_str()),
        (451, "4.7.1"),
        "{first:?}"
    );
    // Relay refusal comes before greylisting: never a 4xx for a relay attempt.
    assert_eq!(attempt("x@other.example").enhanced(), "5.7.1");
    assert_eq!(attempt("alice@example.org").code, 451, "retried too early");
    std::thread::sleep(Duration::from_millis(3500));
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO retrying.test");
    c.cmd("MAIL FROM:<patient@world.test>");
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "grey-1",
        "patient@world.test",
        "alice@example.org",
        "x",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    let got = relay.wait_maildir("example.org", "alice", 1, Duration::from_secs(20));
    let (_, added) = strip_added_headers(&got[0]);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("X-Greylist:"), "{text}");
    assert_eq!(added.len(), 3, "{added:?}");
}

#[test]
fn bulk_detection_refuses_the_copy_that_reaches_the_threshold() {
    let (relay, _tmp) = Relay::start(
        "[local]\ndomains = [\"example.org\"]\ncatch_all = true\n\
         [bulk]\nenabled = true\nthreshold = 3\naction = \"reject\"\n",
    );
    let body = "Dear customer, our prices fell again this week and we would like you\r\n\
                to have a look at the new catalogue before the offer ends on Friday.\r\n\
                Visit the shop, compare the prices and order today for free delivery.";
    let send = |id: &str, rcpts: &[&str], body: &str| {
        let mut c = Client::greeted(relay.mx);
        c.cmd("EHLO bulk.test");
        c.cmd("MAIL FROM:<deals@shop.test>");
        for r in rcpts {
            assert_eq!(c.cmd(&format!("RCPT TO:<{r}>")).code, 250);
        }
        assert_eq!(c.cmd("DATA").code, 354);
        c.send_raw(&message(id, "deals@shop.test", rcpts[0], body));
        c.send_raw(b".\r\n");
        c.reply().unwrap()
    };
    let first = send("bulk-1", &["a@example.org", "b@example.org"], body);
    assert_eq!(first.code, 250, "{first:?}");
    // Another copy (another Message-ID) to a third recipient: bulk.
    let third = send("bulk-2", &["c@example.org"], body);
    assert_eq!(
        (third.code, third.enhanced().as_str()),
        (554, "5.7.1"),
        "{third:?}"
    );
    let other = send(
        "bulk-3",
        &["d@example.org"],
        "A personal note about Tuesday's meeting: the room changed to the\r\n\
         second floor, and Maria will bring the printed minutes for everyone.",
    );
    assert_eq!(other.code, 250, "{other:?}");
}

#[test]
fn python_smtplib_plain_to_the_mx_port() {
    if !have_tool("python3") {
        return;
    }
    let (relay, tmp) = Relay::start("");
    let msg = message(
        "py-mx-1",
        "sender@example.net",
        "postmaster@localhost",
        "Plain MX.",
    );
    let path = tmp.path().join("mx.eml");
    std::fs::write(&path, &msg).unwrap();
    let script = r#"
import smtplib, sys
host, port, path = sys.argv[1:]
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("python.test")
try:
    s.sendmail("sender@example.net", ["someone@elsewhere.example"], b"x\r\n")
    raise SystemExit("relayed to a foreign domain")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["someone@elsewhere.example"]
    print("relay", code, text.decode())
s.sendmail("sender@example.net", ["postmaster@localhost"], open(path, "rb").read())
s.quit()
"#;
    let stdout = common::python(script, relay.mx, &[path.to_str().unwrap()]);
    assert!(stdout.contains("relay 554 5.7.1"), "{stdout}");
    let got = relay.wait_maildir("localhost", "postmaster", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    let (body, _) = strip_added_headers(&got[0]);
    assert_eq!(body, &msg[..]);
}

#[test]
fn sighup_reloads_the_accounts_file_and_check_config_reads_it() {
    let (relay, tmp) = Relay::start("");
    let accounts = tmp.path().join("accounts.toml");
    let ask = |rcpt: &str| {
        let mut c = Client::greeted(relay.mx);
        c.cmd("EHLO world.test");
        c.cmd("MAIL FROM:<a@world.test>");
        c.cmd(&format!("RCPT TO:<{rcpt}>")).code
    };
    assert_eq!(ask("newbie@localhost"), 550);
    let mut text = std::fs::read_to_string(&accounts).unwrap();
    text.push_str("\n[[user]]\naddress = \"newbie@localhost\"\n");
    std::fs::write(&accounts, &text).unwrap();
    relay.hup();
    // Not by asking until it works: more than 20 unknown recipients
    // (`invalid_recipients_max`) block the client when the reload is slow.
    relay.wait_log("accounts reloaded", 1);
    assert_eq!(ask("newbie@localhost"), 250, "{}", relay.log_text());

    // A broken file is refused by --check-config, and a SIGHUP keeps the
    // accounts in use.
    std::fs::write(
        &accounts,
        "[[user]]\naddress = \"x@localhost\"\npassword_hash = \"md5:nope\"\n",
    )
    .unwrap();
    let (code, err) = check_config(&relay.config);
    assert_eq!(code, Some(2));
    assert!(err.contains("accounts.file"), "{err}");
    relay.hup();
    relay.wait_log("accounts not reloaded", 1);
    assert_eq!(ask("newbie@localhost"), 250, "old accounts kept");
}

#[test]
fn message_size_limit_is_advertised_and_enforced() {
    let (relay, _tmp) = Relay::start(&format!("{LOCAL}[limits]\nmax_message_size = 2048\n"));
    let mut c = Client::greeted(relay.mx);
    let ehlo = c.cmd("EHLO big.test");
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 2048"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<a@world.test> SIZE=100000");
    assert_eq!((r.code, r.enhanced().as_str()), (552, "5.3.4"), "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let line = format!("{}\r\n", "z".repeat(70));
    c.send_raw(format!("Subject: big\r\n\r\n{}.\r\n", line.repeat(60)).as_bytes());
    let r = c.reply().unwrap();
    assert_eq!((r.code, r.enhanced().as_str()), (552, "5.3.4"), "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);
    std::thread::sleep(Duration::from_millis(300));
    assert!(relay.maildir("example.org", "alice").is_empty());
}

/// `NOTIFY=SUCCESS` to a local mailbox (Python's smtplib, `rcpt_options`):
/// the sender gets one `Action: delivered` DSN (RFC 3464 §2.3.3) about that
/// recipient only, not about the one in the same message that did not ask.
#[test]
fn notify_success_to_a_local_mailbox_gets_a_delivered_dsn() {
    if !have_tool("python3") {
        return;
    }
    let (relay, tmp) = Relay::start(
        "[local]\ndomains = [\"localhost\", \"example.org\"]\n\
         mailboxes = [\"alice@example.org\", \"bob@example.org\"]\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let metrics = common::endpoint(&relay.startup_line, "metrics");
    let msg = message(
        "py-notify-1",
        "alice@localhost",
        "alice@example.org",
        "Tell me it arrived.",
    );
    let path = tmp.path().join("notify.eml");
    std::fs::write(&path, &msg).unwrap();
    let script = r#"
import smtplib, sys
host, port, path = sys.argv[1:]
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("python.test")
assert s.has_extn("dsn"), s.esmtp_features
s.mail("alice@localhost")
print("asked", s.rcpt("alice@example.org", ["NOTIFY=SUCCESS", "ORCPT=rfc822;alice@example.org"])[0])
print("quiet", s.rcpt("bob@example.org")[0])
print("data", s.data(open(path, "rb").read())[0])
s.quit()
"#;
    let stdout = common::python(script, relay.mx, &[path.to_str().unwrap()]);
    assert_eq!(stdout, "asked 250\nquiet 250\ndata 250\n");
    assert_eq!(
        relay
            .wait_maildir("example.org", "alice", 1, Duration::from_secs(20))
            .len(),
        1
    );
    let dsn = relay.wait_maildir("localhost", "alice", 1, Duration::from_secs(20));
    assert_eq!(dsn.len(), 1, "no delivered DSN; log:\n{}", relay.log_text());
    // Done once the spool is empty: a second DSN would be in a Maildir.
    let empty = common::wait_until(Duration::from_secs(20), || {
        common::sample(
            &common::scrape(metrics),
            "portcullis_queue_messages{state=\"active\"}",
        ) == 0.0
    });
    assert!(empty, "queue not empty; log:\n{}", relay.log_text());
    let dsn = relay.maildir("localhost", "alice");
    assert_eq!(dsn.len(), 1, "more than one DSN");
    assert_eq!(relay.maildir("example.org", "bob").len(), 1);
    let text = String::from_utf8_lossy(&dsn[0]);
    assert!(text.contains("Return-Path: <>"), "{text}");
    assert!(
        text.contains("Subject: Successful Mail Delivery Report"),
        "{text}"
    );
    assert!(
        text.contains(
            "Original-Recipient: rfc822; alice@example.org\r\n\
             Final-Recipient: rfc822; alice@example.org\r\n\
             Action: delivered\r\nStatus: 2.0.0\r\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("Action: ").count(), 1, "{text}");
    assert!(!text.contains("bob@example.org"), "{text}");
    // The original's Message-ID, in the returned headers.
    assert!(text.contains("<py-notify-1@test.portcullis>"), "{text}");
}

/// A sender that asked nothing gets no success notice, and a null sender
/// never gets one even when a recipient asked (RFC 3461 §6.2).
#[test]
fn no_success_dsn_without_notify_or_to_a_null_sender() {
    let (relay, _tmp) = Relay::start(&format!("{LOCAL}[metrics]\nlisten = \"127.0.0.1:0\"\n"));
    let metrics = common::endpoint(&relay.startup_line, "metrics");
    let send = |from: &str, rcpt: &str, id: &str| {
        let mut c = Client::greeted(relay.mx);
        assert_eq!(c.cmd("EHLO client.test").code, 250);
        assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
        assert_eq!(c.cmd(&format!("RCPT TO:{rcpt}")).code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        c.send_raw(&message(id, from, "alice@example.org", "x"));
        c.send_raw(b".\r\n");
        assert_eq!(c.reply().unwrap().code, 250);
        c.cmd("QUIT");
    };
    send("postmaster@localhost", "<alice@example.org>", "quiet-1");
    send("", "<alice@example.org> NOTIFY=SUCCESS", "null-1");
    assert_eq!(
        relay
            .wait_maildir("example.org", "alice", 2, Duration::from_secs(20))
            .len(),
        2
    );
    let empty = common::wait_until(Duration::from_secs(20), || {
        common::sample(
            &common::scrape(metrics),
            "portcullis_queue_messages{state=\"active\"}",
        ) == 0.0
    });
    assert!(empty, "queue not empty; log:\n{}", relay.log_text());
    assert_eq!(relay.maildir("localhost", "postmaster").len(), 0);
    assert!(
        !relay.log_text().contains("DSN queued"),
        "{}",
        relay.log_text()
    );
}
