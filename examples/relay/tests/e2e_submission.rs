//! End-to-end tests against the submission listener: swaks and Python's
//! smtplib over STARTTLS + AUTH, relayed to a sink SMTP server; AUTH
//! failures and AUTH before TLS; and the backup-MX role.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    Client, PASSWORD, Relay, Sink, USER, expect_one_over_tls, have_tool, message, message_id,
    private_ca, strip_added_headers,
};

/// Route `sink.test` to the sink; fast retries.
fn routed(sink: &Sink) -> String {
    format!(
        "[delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n[delivery.routes]\n\"sink.test\" = \"{}\"\n",
        sink.addr
    )
}

fn swaks(relay: &Relay, args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["--server", &relay.submission.to_string()])
        .args(["--timeout", "20"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// swaks over STARTTLS, AUTH PLAIN as the test user, one message `from` → `to`.
fn swaks_auth(relay: &Relay, from: &str, to: &str) -> (bool, String) {
    swaks(
        relay,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
            "--from",
            from,
            "--to",
            to,
        ],
    )
}

#[test]
fn swaks_starttls_auth_relays_to_the_sink_byte_for_byte() {
    if !have_tool("swaks") {
        return;
    }
    let sink = Sink::start();
    let (relay, tmp) = Relay::start(&routed(&sink));
    let msg = "From: <alice@localhost>\nTo: <bob@sink.test>\nSubject: via swaks\nMessage-ID: <swaks-sub-1@test.portcullis>\n\nHello through submission.\n.a line with a leading dot\n\ttabbed line ";
    let file = tmp.path().join("msg.eml");
    std::fs::write(&file, msg).unwrap();
    for mech in ["PLAIN", "LOGIN"] {
        let (ok, transcript) = swaks(
            &relay,
            &[
                "--tls",
                "--auth",
                mech,
                "--auth-user",
                USER,
                "--auth-password",
                PASSWORD,
                "--from",
                USER,
                "--to",
                "bob@sink.test",
                "--data",
                file.to_str().unwrap(),
            ],
        );
        assert!(ok, "swaks {mech} failed:\n{transcript}");
        assert!(transcript.contains("235 2.7.0"), "{transcript}");
        assert!(
            transcript.contains("250 2.0.0 Message accepted as"),
            "{transcript}"
        );
    }
    let got = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "relay log:\n{}", relay.log_text());
    // swaks ends the data with CRLF "." CRLF, so the message ends in CRLF.
    let expected = msg.replace('\n', "\r\n") + "\r\n";
    for m in &got {
        assert_eq!(m.from, "<alice@localhost>");
        assert_eq!(m.rcpts, vec!["<bob@sink.test>".to_owned()]);
        let (body, added) = strip_added_headers(&m.data);
        assert_eq!(
            String::from_utf8_lossy(body),
            expected,
            "changed in transit besides {added:?}"
        );
        assert_eq!(added.len(), 1, "only our Received: {added:?}");
        assert!(added[0].contains("with ESMTPSA"), "{}", added[0]);
    }
}

#[test]
fn python_smtplib_starttls_login_relays_to_the_sink() {
    if !have_tool("python3") {
        return;
    }
    let sink = Sink::start();
    let (relay, tmp) = Relay::start(&routed(&sink));
    let msg = message(
        "py-1",
        USER,
        "carol@sink.test",
        "Sent by smtplib.\r\n..two dots",
    );
    let msg_file = tmp.path().join("py.eml");
    std::fs::write(&msg_file, &msg).unwrap();
    let cert = relay.data.join("tls/cert.pem");
    // The script checks that the server's certificate is the one the relay
    // generated in its data directory (pinning a self-signed certificate).
    let script = r#"
import smtplib, ssl, sys, base64
host, port, cert, user, pw, rcpt, path = sys.argv[1:]
pem = open(cert).read()
der = base64.b64decode("".join(l for l in pem.splitlines() if "CERTIFICATE" not in l))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=20)
s.ehlo("python.test")
code, _ = s.starttls(context=ctx)
assert code == 220, code
assert s.sock.getpeercert(binary_form=True) == der, "certificate is not the relay's"
s.ehlo("python.test")
try:
    s.login(user, "wrong " + pw)
    raise SystemExit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    print("bad-login", e.smtp_code, e.smtp_error.decode())
s.login(user, pw)
refused = s.sendmail(user, [rcpt], open(path, "rb").read())
assert not refused, refused
s.quit()
print("sent")
"#;
    let stdout = common::python(
        script,
        relay.submission,
        &[
            cert.to_str().unwrap(),
            USER,
            PASSWORD,
            "carol@sink.test",
            msg_file.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("bad-login 535 5.7.8"), "{stdout}");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "relay log:\n{}", relay.log_text());
    let (body, _) = strip_added_headers(&got[0].data);
    assert_eq!(body, &msg[..]);
    assert_eq!(message_id(body).as_deref(), Some("<py-1@test.portcullis>"));
}

#[test]
fn auth_rules_end_to_end() {
    let (relay, _tmp) = Relay::start("");
    let mut c = Client::greeted(relay.submission);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "AUTH advertised before TLS: {ehlo:?}"
    );
    // AUTH before TLS: refused, credentials never checked (RFC 4954 §4).
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGxvY2FsaG9zdABjb3JyZWN0IGhvcnNl");
    assert_eq!((r.code, r.enhanced().as_str()), (538, "5.7.11"), "{r:?}");
    let r = c.cmd("AUTH LOGIN");
    assert_eq!(r.code, 538, "{r:?}");
    // Submission without AUTH: no transaction at all.
    let r = c.cmd("MAIL FROM:<alice@localhost>");
    assert_eq!((r.code, r.enhanced().as_str()), (530, "5.7.0"), "{r:?}");
    assert_eq!(c.cmd("QUIT").code, 221);

    if !have_tool("swaks") {
        return;
    }
    // Wrong password, unknown user: the same 535 5.7.8.
    for (user, pw) in [(USER, "wrong"), ("mallory@localhost", PASSWORD)] {
        let (ok, t) = swaks(
            &relay,
            &[
                "--tls",
                "--auth",
                "PLAIN",
                "--auth-user",
                user,
                "--auth-password",
                pw,
                "--to",
                "bob@sink.test",
                "--from",
                user,
            ],
        );
        assert!(!ok, "{t}");
        assert!(t.contains("535 5.7.8"), "{t}");
    }
    // Authenticated, but sending as somebody else.
    let (ok, t) = swaks_auth(&relay, "ceo@localhost", "bob@sink.test");
    assert!(!ok, "{t}");
    assert!(t.contains("553 5.7.1"), "{t}");
    // Without STARTTLS swaks cannot even try (AUTH not advertised).
    let (ok, t) = swaks(
        &relay,
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
            "--to",
            "bob@sink.test",
        ],
    );
    assert!(!ok, "{t}");
}

#[test]
fn implicit_tls_listener_speaks_tls_from_the_first_byte() {
    if !have_tool("swaks") {
        return;
    }
    let sink = Sink::start();
    let extra = format!(
        "{}[submissions]\nlisten = [\"127.0.0.1:0\"]\n",
        routed(&sink)
    );
    let (relay, _tmp) = Relay::start(&extra);
    let port = relay
        .submissions
        .expect("no submissions= on the startup line");
    let out = Command::new("swaks")
        .args(["--server", &port.to_string(), "--tlsc", "--timeout", "20"])
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            USER,
            "--auth-password",
            PASSWORD,
        ])
        .args(["--from", USER, "--to", "dave@sink.test"])
        .args(["--header", "Message-Id: <tlsc-1@test.portcullis>"])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{t}");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(
        message_id(&got[0].data).as_deref(),
        Some("<tlsc-1@test.portcullis>")
    );
}

/// Backup MX: mail for a backed-up domain is accepted from anyone, queued
/// while the primary is down, kept across a restart, and forwarded when
/// the primary answers.
#[test]
fn backup_mx_holds_mail_until_the_primary_answers() {
    // A port nobody listens on: the primary is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = down.local_addr().unwrap();
    drop(down);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = |primary: std::net::SocketAddr| {
        format!(
            "[backup_mx]\ndomains = [\"customer.test\"]\n[delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n\
             [delivery.routes]\n\"customer.test\" = \"{primary}\"\n"
        )
    };
    let mut relay = Relay::start_in(tmp.path(), &cfg(down_addr));
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO world.test");
    assert_eq!(c.cmd("MAIL FROM:<someone@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<anyone@customer.test>").code, 250);
    // Backing up a domain does not make the relay open for others.
    assert_eq!(c.cmd("RCPT TO:<x@other.test>").enhanced(), "5.7.1");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "bmx-1",
        "someone@world.test",
        "anyone@customer.test",
        "held",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    c.cmd("QUIT");
    // Deferred at least once, then stopped with the message still queued.
    let start = std::time::Instant::now();
    while !relay.log_text().contains("=deferred (") && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        relay.log_text().contains("=deferred ("),
        "{}",
        relay.log_text()
    );
    assert!(
        relay
            .terminate(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );

    let sink = Sink::start();
    let relay = Relay::start_in(tmp.path(), &cfg(sink.addr));
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", relay.log_text());
    assert_eq!(got[0].rcpts, vec!["<anyone@customer.test>".to_owned()]);
    assert_eq!(
        message_id(&got[0].data).as_deref(),
        Some("<bmx-1@test.portcullis>")
    );
}

#[test]
fn forwarding_rule_sends_local_mail_on() {
    let sink = Sink::start();
    let extra = format!(
        "{}[forward]\n\"sales@localhost\" = \"team@sink.test\"\n",
        routed(&sink)
    );
    let (relay, _tmp) = Relay::start(&extra);
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO world.test");
    c.cmd("MAIL FROM:<buyer@world.test>");
    assert_eq!(c.cmd("RCPT TO:<Sales@localhost>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "fwd-1",
        "buyer@world.test",
        "sales@localhost",
        "order",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", relay.log_text());
    assert_eq!(got[0].rcpts, vec!["<team@sink.test>".to_owned()]);
}

/// A recipient the next hop refuses (550) bounces: the sender gets a DSN
/// (RFC 3464) in its mailbox, the other recipient is delivered.
#[test]
fn a_refused_recipient_bounces_to_the_sender() {
    let sink = Sink::start();
    // A trusted network relays without AUTH (plain text keeps this short);
    // the sender is a local mailbox so the DSN lands in its Maildir.
    let (relay, _tmp) = Relay::start(&format!(
        "{}[relay]\nnetworks = [\"127.0.0.1\"]\n",
        routed(&sink)
    ));
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO world.test");
    assert_eq!(c.cmd("MAIL FROM:<alice@localhost>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<reject-me@sink.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<fine@sink.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "bounce-1",
        "alice@localhost",
        "reject-me@sink.test",
        "x",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    c.cmd("QUIT");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].rcpts, vec!["<fine@sink.test>".to_owned()]);
    let dsn = relay.wait_maildir("localhost", "alice", 1, Duration::from_secs(30));
    assert_eq!(dsn.len(), 1, "no DSN; log:\n{}", relay.log_text());
    let text = String::from_utf8_lossy(&dsn[0]);
    assert!(text.contains("Return-Path: <>"), "{text}");
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("reject-me@sink.test"), "{text}");
    assert!(text.contains("5.1.1"), "{text}");
    assert!(!text.contains("fine@sink.test\r\nAction"), "{text}");
}

/// The policy crate's limits, end to end: a per-account message rate, the
/// failed-AUTH cap (421 and a block), and per-client session caps.
#[test]
fn policy_limits_end_to_end() {
    if !have_tool("python3") {
        return;
    }
    let sink = Sink::start();
    let (relay, _tmp) = Relay::start(&format!(
        "{}[policy]\nmessages_per_minute = 2\nauth_failures_max = 2\n",
        routed(&sink)
    ));
    let script = r#"
import smtplib, ssl, sys
host, port, user, pw = sys.argv[1:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def session():
    s = smtplib.SMTP(host, int(port), timeout=20)
    s.starttls(context=ctx)
    return s
s = session()
s.login(user, pw)
msg = b"Subject: rate\r\n\r\nx\r\n"
for i in range(3):
    try:
        s.sendmail(user, ["r%d@sink.test" % i], msg)
        print("sent", i)
    except smtplib.SMTPSenderRefused as e:
        print("refused", i, e.smtp_code, e.smtp_error.decode())
s.quit()
s = session()
s.ehlo()
# One mechanism, so each login() is exactly one AUTH attempt.
s.esmtp_features["auth"] = "PLAIN"
for i in range(3):
    try:
        s.login(user, "wrong")
    except smtplib.SMTPAuthenticationError as e:
        print("authfail", i, e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPServerDisconnected as e:
        print("authfail", i, "disconnected")
        break
"#;
    let stdout = common::python(script, relay.submission, &[USER, PASSWORD]);
    assert!(
        stdout.contains("sent 0") && stdout.contains("sent 1"),
        "{stdout}"
    );
    assert!(stdout.contains("refused 2 451 4.7.1"), "{stdout}");
    assert!(stdout.contains("authfail 0 535 5.7.8"), "{stdout}");
    assert!(stdout.contains("authfail 1 535 5.7.8"), "{stdout}");
    assert!(
        stdout.contains("authfail 2 421 4.7.0") || stdout.contains("authfail 2 disconnected"),
        "{stdout}"
    );

    // The blocked client network is refused at connect, on every listener.
    let mut c = Client::connect(relay.mx);
    let r = c.reply().unwrap();
    assert_eq!((r.code, r.enhanced().as_str()), (421, "4.7.0"), "{r:?}");
}

#[test]
fn session_cap_per_client() {
    let (relay, _tmp) = Relay::start("[limits]\nmax_connections_per_client = 3\n");
    // Three sessions from one address are fine, the fourth gets 421 4.7.0.
    let open: Vec<Client> = (0..3).map(|_| Client::greeted(relay.mx)).collect();
    let mut fourth = Client::connect(relay.submission);
    let r = fourth.reply().unwrap();
    assert_eq!((r.code, r.enhanced().as_str()), (421, "4.7.0"), "{r:?}");
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
    Client::greeted(relay.mx);
}

/// BATV: submitted mail leaves with a prvs-tagged sender; a bounce to the
/// plain address is refused, a bounce to the tagged one reaches the mailbox.
#[test]
fn batv_tags_outbound_senders_and_checks_bounces() {
    if !have_tool("swaks") {
        return;
    }
    let sink = Sink::start();
    let (relay, _tmp) = Relay::start(&format!(
        "{}[batv]\ndomains = [\"localhost\"]\nsecret = \"test secret, long enough\"\n",
        routed(&sink)
    ));
    let (ok, t) = swaks_auth(&relay, USER, "bob@sink.test");
    assert!(ok, "{t}");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", relay.log_text());
    let tagged = got[0].from.trim_matches(['<', '>']).to_owned();
    assert!(
        tagged.starts_with("prvs=") && tagged.ends_with("=alice@localhost"),
        "{tagged}"
    );

    let bounce = |rcpt: &str| {
        let mut c = Client::greeted(relay.mx);
        c.cmd("EHLO bouncer.test");
        assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        if r.code == 250 {
            assert_eq!(c.cmd("DATA").code, 354);
            c.send_raw(&message(
                "bounce-batv",
                "mailer-daemon@sink.test",
                rcpt,
                "bounce",
            ));
            c.send_raw(b".\r\n");
            assert_eq!(c.reply().unwrap().code, 250);
        }
        r
    };
    let forged = bounce(USER);
    assert_eq!(
        (forged.code, forged.enhanced().as_str()),
        (550, "5.7.1"),
        "{forged:?}"
    );
    let genuine = bounce(&tagged);
    assert_eq!(genuine.code, 250, "{genuine:?}");
    let got = relay.wait_maildir("localhost", "alice", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("Delivered-To: alice@localhost"),
        "tag stripped: {text}"
    );
}

/// DKIM: mail submitted by an authenticated user is signed with the key of
/// its From domain; mail arriving from the world is not.
#[test]
fn dkim_signs_submitted_mail() {
    if !have_tool("swaks") {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key_file = keys.path().join("s1.pem");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let sink = Sink::start();
    let (relay, _tmp) = Relay::start(&format!(
        "{}[[dkim]]\ndomain = \"localhost\"\nselector = \"s1\"\nkey_file = \"{}\"\n",
        routed(&sink),
        key_file.display()
    ));
    let (ok, t) = swaks_auth(&relay, USER, "bob@sink.test");
    assert!(ok, "{t}");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", relay.log_text());
    let text = String::from_utf8_lossy(&got[0].data);
    let sig = text
        .lines()
        .find(|l| l.starts_with("DKIM-Signature:"))
        .unwrap_or_else(|| panic!("not signed:\n{text}"));
    assert!(sig.contains("a=ed25519-sha256"), "{sig}");
    assert!(sig.contains("d=localhost") && sig.contains("s=s1"), "{sig}");
}

/// A domain account: one login (the domain) and password for the whole
/// domain, which may send as any address of it and nothing else.
#[test]
fn domain_account_authenticates_and_sends_as_its_domain() {
    if !have_tool("swaks") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hash = common::hash_password(PASSWORD);
    std::fs::write(
        tmp.path().join("accounts.toml"),
        format!("[[domain]]\ndomain = \"dom.test\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let sink = Sink::start();
    let relay = Relay::start_in(tmp.path(), &routed(&sink));
    let send_as = |from: &str| {
        swaks(
            &relay,
            &[
                "--tls",
                "--auth",
                "LOGIN",
                "--auth-user",
                "dom.test",
                "--auth-password",
                PASSWORD,
                "--from",
                from,
                "--to",
                "eve@sink.test",
            ],
        )
    };
    let (ok, t) = send_as("anyone@dom.test");
    assert!(ok, "{t}");
    let (ok, t) = send_as("someone@other.test");
    assert!(!ok && t.contains("553 5.7.1"), "{t}");
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "<anyone@dom.test>");
}

/// Limits set on an account in the accounts file override the `[policy]`
/// defaults for that account only.
#[test]
fn per_account_limits_from_the_accounts_file() {
    if !have_tool("python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hash = common::hash_password(PASSWORD);
    std::fs::write(
        tmp.path().join("accounts.toml"),
        format!(
            "[[user]]\naddress = \"{USER}\"\npassword_hash = \"{hash}\"\n\
             limits = {{ messages_per_minute = 1 }}\n\
             [[user]]\naddress = \"bob@localhost\"\npassword_hash = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let sink = Sink::start();
    let relay = Relay::start_in(
        tmp.path(),
        &format!("{}[policy]\nmessages_per_minute = 5\n", routed(&sink)),
    );
    let script = r#"
import smtplib, ssl, sys
host, port, pw = sys.argv[1:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for user in ["alice@localhost", "bob@localhost"]:
    s = smtplib.SMTP(host, int(port), timeout=20)
    s.starttls(context=ctx)
    s.login(user, pw)
    for i in range(2):
        try:
            s.sendmail(user, ["x@sink.test"], b"Subject: limit\r\n\r\nx\r\n")
            print(user, "sent", i)
        except smtplib.SMTPSenderRefused as e:
            print(user, "refused", i, e.smtp_code)
    s.quit()
"#;
    let stdout = common::python(script, relay.submission, &[PASSWORD]);
    assert!(stdout.contains("alice@localhost sent 0"), "{stdout}");
    assert!(stdout.contains("alice@localhost refused 1 451"), "{stdout}");
    assert!(
        stdout.contains("bob@localhost sent 1"),
        "defaults for bob: {stdout}"
    );
}

/// SRS: forwarded mail leaves with an SRS sender; a bounce to that address
/// is returned to the original sender; a forged SRS address is refused.
#[test]
fn srs_rewrites_forwarded_mail_and_returns_its_bounces() {
    let sink = Sink::start();
    let (relay, _tmp) = Relay::start(&format!(
        "{}\"world.test\" = \"{}\"\n\
         [forward]\n\"sales@localhost\" = \"team@sink.test\"\n\
         [srs]\ndomain = \"localhost\"\nsecret = \"srs test secret, long enough\"\n",
        routed(&sink),
        sink.addr
    ));
    let send = |from: &str, rcpt: &str, id: &str| {
        let mut c = Client::greeted(relay.mx);
        c.cmd("EHLO world.test");
        assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        if r.code == 250 {
            assert_eq!(c.cmd("DATA").code, 354);
            c.send_raw(&message(id, "x@world.test", rcpt, "forward me"));
            c.send_raw(b".\r\n");
            assert_eq!(c.reply().unwrap().code, 250);
        }
        r
    };
    assert_eq!(
        send("buyer@world.test", "sales@localhost", "srs-1").code,
        250
    );
    let got = sink.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", relay.log_text());
    assert_eq!(got[0].rcpts, vec!["<team@sink.test>".to_owned()]);
    let srs = got[0].from.trim_matches(['<', '>']).to_owned();
    assert!(
        srs.starts_with("SRS0=") && srs.ends_with("=world.test=buyer@localhost"),
        "{srs}"
    );
    // The destination bounces: back to the buyer, from an unauthenticated client.
    assert_eq!(send("", &srs, "srs-bounce").code, 250);
    let got = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpts, vec!["<buyer@world.test>".to_owned()]);
    let forged = srs.replacen("SRS0=", "SRS0=AAAA", 1);
    assert_eq!(send("", &forged, "srs-forged").code, 550);
}

/// `[delivery] tls_ca_file`: with `tls = "required"` a next hop whose
/// certificate a private CA signed is verified against that CA and gets
/// the mail over TLS; a relay given another CA's bundle defers instead.
/// A bundle without a certificate fails `--check-config`.
#[test]
fn required_tls_verifies_the_next_hop_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let good = private_ca(certs.path(), "good");
    let other = private_ca(certs.path(), "other");
    // The next hop: another relay, its MX listener's STARTTLS certificate
    // signed by the good CA, `sink.test` local there.
    let (hop, _hop_tmp) = Relay::start(&format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\
         [local]\ndomains = [\"localhost\", \"sink.test\"]\nmailboxes = [\"rcpt@sink.test\"]\n",
        good.join("hop.pem").display(),
        good.join("hop.key").display()
    ));
    let sender = |ca: &std::path::Path| {
        Relay::start(&format!(
            "[relay]\nnetworks = [\"127.0.0.1\"]\n\
             [delivery]\nfirst_retry_secs = 1\ntls = \"required\"\ntls_ca_file = \"{}\"\n\
             [delivery.routes]\n\"sink.test\" = \"{}\"\n",
            ca.join("ca.pem").display(),
            hop.mx
        ))
    };
    let send = |relay: &Relay, id: &str| {
        assert_eq!(
            common::send_message(relay.mx, id, "sender@example.net", "rcpt@sink.test", "x"),
            250
        );
    };

    let (trusting, _t1) = sender(&good);
    send(&trusting, "private-ca-1");
    expect_one_over_tls(&hop, &trusting, "private-ca-1");

    let (distrusting, _t2) = sender(&other);
    send(&distrusting, "private-ca-2");
    distrusting.wait_log("<rcpt@sink.test>=deferred (451 4.7.5 TLS failure", 1);
    assert!(
        distrusting.log_text().contains("UnknownIssuer"),
        "{}",
        distrusting.log_text()
    );
    assert_eq!(
        hop.maildir("sink.test", "rcpt").len(),
        1,
        "delivered to a next hop the configured CA did not sign"
    );

    let bad = certs.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[delivery]\ntls_ca_file = \"{}\"\n",
            good.join("hop.key").display()
        ),
    )
    .unwrap();
    let (code, err) = common::check_config(&bad);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("delivery.tls_ca_file"), "{err}");
    assert!(err.contains("no certificate"), "{err}");
}
