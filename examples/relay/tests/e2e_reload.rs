//! SIGHUP rebuilds what the configuration file describes — local domains,
//! `[limits]`, the filter chains (greylisting turned off), the TLS
//! certificate — for new sessions,
//! while a session open across the reload carries on with what it started
//! with; stores (greylist triplets) carry over; a listener change is
//! warned about by key; a configuration that does not load keeps the old
//! one.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Client, Relay, have_tool};

/// A self-signed certificate for `name` (openssl), as (cert, key) paths.
fn cert(dir: &Path, name: &str) -> (String, String) {
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req failed");
    (c.display().to_string(), k.display().to_string())
}

/// The subject line of the certificate a new STARTTLS session is offered.
fn offered_subject(relay: &Relay) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(relay.mx.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject: {}", String::from_utf8_lossy(&out.stdout)))
        .to_owned()
}

#[test]
fn sighup_applies_new_domains_limits_and_certificate_and_keeps_open_sessions() {
    if !have_tool("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (c1, k1) = cert(tmp.path(), "one.test");
    let (c2, k2) = cert(tmp.path(), "two.test");
    let config = |domains: &str, max_rcpt: u32, (c, k): (&str, &str)| {
        // carol's mailbox only once her domain is local.
        let carol = if domains.contains("example.net") {
            ", \"carol@example.net\""
        } else {
            ""
        };
        format!(
            "[local]\ndomains = [{domains}]\nmailboxes = [\"alice@example.org\", \"bob@example.org\"{carol}]\n\
             [limits]\nmax_recipients = {max_rcpt}\n[tls]\ncert = \"{c}\"\nkey = \"{k}\"\n"
        )
    };
    let relay = Relay::start_in(
        tmp.path(),
        &config("\"example.org\"", 1, (c1.as_str(), k1.as_str())),
    );
    assert!(offered_subject(&relay).contains("one.test"));

    // A session open across the reload, in the middle of a transaction.
    let mut open = Client::greeted(relay.mx);
    assert_eq!(open.cmd("EHLO client.test").code, 250);
    assert_eq!(open.cmd("MAIL FROM:<x@world.test>").code, 250);

    // A new local domain, a higher recipient limit, a new certificate.
    let base = std::fs::read_to_string(&relay.config).unwrap();
    let old = config("\"example.org\"", 1, (c1.as_str(), k1.as_str()));
    assert!(base.contains(&old));
    let new = config(
        "\"example.org\", \"example.net\"",
        2,
        (c2.as_str(), k2.as_str()),
    );
    std::fs::write(&relay.config, base.replace(&old, &new)).unwrap();
    relay.hup();
    relay.wait_log("configuration reloaded", 1);

    // The open session still runs on what it started with: one recipient,
    // and example.net is not ours.
    let relayed = open.cmd("RCPT TO:<carol@example.net>");
    assert_eq!(relayed.enhanced(), "5.7.1", "{relayed:?}");
    assert_eq!(open.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(open.cmd("RCPT TO:<bob@example.org>").code, 452);
    assert_eq!(open.cmd("DATA").code, 354);
    open.send_raw(&common::message(
        "across",
        "x@world.test",
        "alice@example.org",
        "sent across a reload",
    ));
    open.send_raw(b".\r\n");
    assert_eq!(
        open.reply().unwrap().code,
        250,
        "the open session was dropped"
    );
    assert_eq!(open.cmd("QUIT").code, 221);

    // A new session: the new domain and the new limit.
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<x@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<carol@example.net>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&common::message(
        "after",
        "x@world.test",
        "carol@example.net",
        "after the reload",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    relay.wait_maildir("example.net", "carol", 1, Duration::from_secs(20));
    // And the new certificate.
    assert!(offered_subject(&relay).contains("two.test"));
}

#[test]
fn sighup_keeps_stores_warns_about_listeners_and_survives_a_bad_file() {
    let (relay, _tmp) = Relay::start(
        "[local]\ndomains = [\"example.org\"]\nmailboxes = [\"alice@example.org\"]\n\
         [greylist]\nenabled = true\ndelay_secs = 1\n",
    );
    let attempt = || {
        let mut c = Client::greeted(relay.mx);
        assert_eq!(c.cmd("EHLO retrying.test").code, 250);
        assert_eq!(c.cmd("MAIL FROM:<patient@world.test>").code, 250);
        c.cmd("RCPT TO:<alice@example.org>").code
    };
    assert_eq!(attempt(), 451, "a new triplet is greylisted");

    // A reload that also moves the MX listener: applied except the
    // listener, which is named in a warning.
    let good = std::fs::read_to_string(&relay.config).unwrap();
    std::fs::write(
        &relay.config,
        good.replace(
            "[mx]\nlisten = [\"127.0.0.1:0\"]",
            "[mx]\nlisten = [\"127.0.0.1:1\"]",
        ),
    )
    .unwrap();
    relay.hup();
    relay.wait_log("configuration reloaded", 1);
    assert!(
        relay
            .log_text()
            .contains("mx.listen changed but is bound at start"),
        "{}",
        relay.log_text()
    );

    // The triplet seen before the reload passes after it: the greylist
    // store carried over (a fresh one would greylist it again).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(attempt(), 250);

    // A file whose certificate does not load: refused, the old one stays.
    std::fs::write(
        &relay.config,
        format!("{good}[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n"),
    )
    .unwrap();
    relay.hup();
    relay.wait_log("configuration not reloaded", 1);
    assert!(relay.log_text().contains("/nonexistent/cert.pem"));
    // Still serving, still greylisting with the old configuration.
    assert_eq!(attempt(), 250);
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO retrying.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<new@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 451);
    drop(c);

    // A filter chain change: greylisting off for new sessions.
    std::fs::write(
        &relay.config,
        good.replace("[greylist]\nenabled = true", "[greylist]\nenabled = false"),
    )
    .unwrap();
    relay.hup();
    relay.wait_log("configuration reloaded", 2);
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO retrying.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<newer@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
}
