//! REQUIRETLS (RFC 8689) end to end: Python's smtplib submits over
//! STARTTLS with `MAIL FROM:<…> REQUIRETLS`; to a plaintext-only
//! `smtp-sink` the message bounces 5.7.30 (a DSN with the original's
//! headers only) and nothing is delivered; to a second relay whose
//! certificate a private CA signed it goes over verified TLS with
//! REQUIRETLS on `MAIL`; a next hop that does not offer REQUIRETLS gets
//! nothing. Before TLS the extension is neither offered nor accepted, and
//! `[tls] requiretls = false` (reloaded) stops offering it. `TLS-Required:
//! No` lets `[delivery] tls = "required"` fall back to opportunistic TLS.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    Client, PASSWORD, Relay, SmtpSink, USER, dump_files, expect_one_over_tls, have_tool,
    message_id, private_ca, wait_until,
};

/// Submission over STARTTLS + AUTH as the test user, one message
/// `argv[5]` → `argv[6]` with Message-ID `<argv[7]@test.portcullis>`,
/// `argv[8]` the MAIL options (comma-separated, may be empty) and
/// `argv[9]` an extra header line (may be empty). Prints whether
/// REQUIRETLS was offered before and after TLS, then `accepted` or
/// `refused <code>`.
const SUBMIT: &str = r#"
import smtplib, ssl, sys
host, port, user, password, frm, to, mid, opts, extra = sys.argv[1:10]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("python.test")
print("before-tls", s.has_extn("requiretls"))
s.starttls(context=ctx)
s.ehlo("python.test")
print("after-tls", s.has_extn("requiretls"))
s.login(user, password)
msg = (f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: secret plans\r\n"
       f"Message-ID: <{mid}@test.portcullis>\r\n" + (extra + "\r\n" if extra else "") +
       "\r\nthe confidential body\r\n")
try:
    s.sendmail(frm, [to], msg, mail_options=[o for o in opts.split(",") if o])
    print("accepted")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code)
s.quit()
"#;

fn submit(relay: &Relay, to: &str, id: &str, opts: &str, extra: &str) -> String {
    common::python(
        SUBMIT,
        relay.submission,
        &[USER, PASSWORD, USER, to, id, opts, extra],
    )
}

/// The one DSN in alice's Maildir (waits for it), as text.
fn the_dsn(relay: &Relay) -> String {
    let got = relay.wait_maildir("localhost", "alice", 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "no DSN; log:\n{}", relay.log_text());
    String::from_utf8_lossy(&got[0]).into_owned()
}

/// A 5.7.30 failure DSN that returns the headers, not the body (RFC 8689 §5).
fn assert_requiretls_bounce(dsn: &str) {
    assert!(dsn.contains("Return-Path: <>"), "{dsn}");
    assert!(
        dsn.contains("Action: failed\r\nStatus: 5.7.30\r\n"),
        "{dsn}"
    );
    assert!(dsn.contains("Content-Type: text/rfc822-headers"), "{dsn}");
    assert!(dsn.contains("Subject: secret plans"), "{dsn}");
    assert!(
        !dsn.contains("the confidential body"),
        "body returned: {dsn}"
    );
}

/// REQUIRETLS over STARTTLS is accepted; the only next hop (smtp-sink)
/// has no STARTTLS, so the recipient bounces 5.7.30 at once (every host
/// answered), the sender gets a headers-only DSN and smtp-sink nothing.
#[test]
fn requiretls_to_a_plaintext_next_hop_bounces_5_7_30_and_delivers_nothing() {
    if !have_tool("python3") || !have_tool("smtp-sink") {
        return;
    }
    let dump = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dump.path(), &[]);
    let (relay, _tmp) = Relay::start(&format!(
        "[delivery]\nfirst_retry_secs = 1\n\
         [delivery.routes]\n\"sink.test\" = \"127.0.0.1:{}\"\n",
        sink.port
    ));
    let out = submit(&relay, "rcpt@sink.test", "rtls-plain", "REQUIRETLS", "");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["before-tls False", "after-tls True", "accepted"],
        "log:\n{}",
        relay.log_text()
    );
    relay.wait_log("<rcpt@sink.test>=bounced (550 5.7.30", 1);
    assert!(relay.log_text().contains("requiretls=true"));
    assert_requiretls_bounce(&the_dsn(&relay));
    assert!(
        dump_files(dump.path()).is_empty(),
        "smtp-sink got a transaction: {:?}",
        dump_files(dump.path())
    );
    // The same message without REQUIRETLS goes in the clear to the sink.
    let out = submit(&relay, "rcpt@sink.test", "rtls-plain-2", "", "");
    assert!(out.ends_with("accepted\n"), "{out}");
    assert!(
        wait_until(Duration::from_secs(30), || !dump_files(dump.path())
            .is_empty()),
        "log:\n{}",
        relay.log_text()
    );
}

/// To a second relay whose certificate a private CA signed (`[delivery]
/// tls_ca_file`), under the default opportunistic policy: delivered over
/// TLS, and the next hop took `REQUIRETLS` on `MAIL`. A next hop with
/// `[tls] requiretls = false` does not offer it: 5.7.30 bounce, nothing
/// delivered there.
#[test]
fn requiretls_goes_over_verified_tls_to_a_next_hop_that_offers_it() {
    if !have_tool("python3") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let ca = private_ca(certs.path(), "requiretls");
    let hop_config = |extra: &str| {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\
             [local]\ndomains = [\"localhost\", \"sink.test\"]\nmailboxes = [\"rcpt@sink.test\"]\n",
            ca.join("hop.pem").display(),
            ca.join("hop.key").display()
        )
    };
    let (hop, _hop_tmp) = Relay::start(&hop_config(""));
    let (closed_hop, _closed_tmp) = Relay::start(&hop_config("requiretls = false\n"));
    let sender = |hop: &Relay| {
        Relay::start(&format!(
            "[delivery]\nfirst_retry_secs = 1\ntls_ca_file = \"{}\"\n\
             [delivery.routes]\n\"sink.test\" = \"{}\"\n",
            ca.join("ca.pem").display(),
            hop.mx
        ))
    };

    let (relay, _t1) = sender(&hop);
    let out = submit(&relay, "rcpt@sink.test", "rtls-verified", "REQUIRETLS", "");
    assert!(out.ends_with("accepted\n"), "{out}");
    expect_one_over_tls(&hop, &relay, "rtls-verified");
    // The next hop accepted it with the REQUIRETLS parameter.
    hop.wait_log("requiretls=true", 1);

    let (relay2, _t2) = sender(&closed_hop);
    let out = submit(&relay2, "rcpt@sink.test", "rtls-closed", "REQUIRETLS", "");
    assert!(out.ends_with("accepted\n"), "{out}");
    relay2.wait_log("<rcpt@sink.test>=bounced (550 5.7.30", 1);
    assert!(
        relay2
            .log_text()
            .contains("the next hop does not offer REQUIRETLS"),
        "{}",
        relay2.log_text()
    );
    assert_requiretls_bounce(&the_dsn(&relay2));
    assert!(closed_hop.maildir("sink.test", "rcpt").is_empty());
}

/// Before STARTTLS REQUIRETLS is not offered and `MAIL … REQUIRETLS` is
/// refused 555; after it, it is offered, until `[tls] requiretls = false`
/// is put in force by SIGHUP.
#[test]
fn requiretls_only_after_starttls_and_reloadable() {
    if !have_tool("python3") {
        return;
    }
    let (relay, _tmp) = Relay::start("");
    for addr in [relay.mx, relay.submission] {
        let mut c = Client::greeted(addr);
        let ehlo = c.cmd("EHLO client.test");
        assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
        assert!(!ehlo.lines.iter().any(|l| l == "REQUIRETLS"), "{ehlo:?}");
        let r = c.cmd("MAIL FROM:<someone@example.net> REQUIRETLS");
        assert_eq!(r.code, 555, "{r:?}");
        c.cmd("QUIT");
    }
    // Without AUTH the submission stops at login; only the offers matter.
    let offers = |relay: &Relay| {
        let out = Command::new("python3")
            .arg("-c")
            .arg(SUBMIT)
            .arg(relay.submission.ip().to_string())
            .arg(relay.submission.port().to_string())
            .args([USER, PASSWORD, USER, "rcpt@localhost", "offers", "", ""])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(offers(&relay), "before-tls False after-tls True");
    let mut text = std::fs::read_to_string(&relay.config).unwrap();
    text.push_str("[tls]\nrequiretls = false\n");
    std::fs::write(&relay.config, text).unwrap();
    relay.hup();
    relay.wait_log("configuration reloaded", 1);
    assert_eq!(offers(&relay), "before-tls False after-tls False");
}

/// `[delivery] tls = "required"` with a plaintext-only next hop: an
/// ordinary message waits (451 4.7.4), one marked `TLS-Required: No` is
/// delivered in the clear (RFC 8689 §4.2.2); REQUIRETLS overrides the
/// field (5.7.30 bounce).
#[test]
fn tls_required_no_lets_required_tls_fall_back() {
    if !have_tool("python3") || !have_tool("smtp-sink") {
        return;
    }
    let dump = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dump.path(), &[]);
    let (relay, _tmp) = Relay::start(&format!(
        "[delivery]\nfirst_retry_secs = 1\ntls = \"required\"\n\
         [delivery.routes]\n\"sink.test\" = \"127.0.0.1:{}\"\n",
        sink.port
    ));
    let out = submit(&relay, "rcpt@sink.test", "tlsreq-strict", "", "");
    assert!(out.ends_with("accepted\n"), "{out}");
    relay.wait_log("<rcpt@sink.test>=deferred (451 4.7.4", 1);
    let out = submit(
        &relay,
        "rcpt@sink.test",
        "tlsreq-no",
        "",
        "TLS-Required: No",
    );
    assert!(out.ends_with("accepted\n"), "{out}");
    let ids = || -> Vec<String> {
        dump_files(dump.path())
            .iter()
            .filter_map(|p| message_id(&std::fs::read(p).unwrap_or_default()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !ids().is_empty()),
        "log:\n{}",
        relay.log_text()
    );
    assert_eq!(ids(), ["<tlsreq-no@test.portcullis>"]);
    let out = submit(
        &relay,
        "rcpt@sink.test",
        "tlsreq-no-but-requiretls",
        "REQUIRETLS",
        "TLS-Required: No",
    );
    assert!(out.ends_with("accepted\n"), "{out}");
    relay.wait_log("<rcpt@sink.test>=bounced (550 5.7.30", 1);
    assert_eq!(ids(), ["<tlsreq-no@test.portcullis>"]);
}
