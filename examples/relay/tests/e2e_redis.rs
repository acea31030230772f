//! `store = "redis"`: two relay processes on one Redis share policy
//! counters, greylist triplets, the outbound abuse signal's counts and
//! backup-MX learned recipients, and so do a relay and `policyd` (greylist
//! triplets; learned recipients, which `policyd` answers Postfix's `RCPT`
//! requests by); a relay whose Redis does not answer refuses to start,
//! naming the key, and so does `store = "redis"` without `[redis]`.
//!
//! The shared-state tests run when `REDIS_URL` is set (e.g.
//! `redis://127.0.0.1:6379`) and print `skipping: …` otherwise. Each run
//! uses its own key prefix.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{BIN, Relay};

const LOCAL: &str = "[local]\ndomains = [\"example.org\"]\nmailboxes = [\"alice@example.org\", \"bob@example.org\"]\n";

fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            println!("skipping: REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
            None
        }
    }
}

/// A key prefix no other run uses.
fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "portcullis-relay-e2e:{test}:{}:{nanos}:",
        std::process::id()
    )
}

/// One message to the MX; the final reply code (of MAIL or RCPT if refused).
fn send(relay: &Relay, from: &str, to: &str) -> u16 {
    common::send_message(relay.mx, "redis", from, to, "shared state")
}

fn rcpt(relay: &Relay, from: &str, to: &str) -> u16 {
    common::rcpt(relay.mx, from, to).code
}

#[test]
fn a_rate_limit_counted_on_relay_a_is_enforced_on_relay_b() {
    let Some(url) = redis_url() else { return };
    let config = format!(
        "{LOCAL}[redis]\nurl = \"{url}\"\nprefix = \"{}\"\n[policy]\nstore = \"redis\"\nmessages_per_minute = 2\n",
        unique_prefix("rate")
    );
    let (a, _ta) = Relay::start(&config);
    let (b, _tb) = Relay::start(&config);
    // One message on each relay: two for this client network in the shared
    // counter.
    assert_eq!(send(&a, "x@world.test", "alice@example.org"), 250);
    assert_eq!(send(&b, "x@world.test", "alice@example.org"), 250);
    // The third of the minute is refused on both: each relay counted the
    // other's message.
    for (name, relay) in [("A", &a), ("B", &b)] {
        let third = send(relay, "x@world.test", "alice@example.org");
        assert!((400..500).contains(&third), "{name} accepted: {third}");
    }
}

#[test]
fn a_greylist_triplet_passed_on_relay_a_passes_on_relay_b() {
    let Some(url) = redis_url() else { return };
    let config = format!(
        "{LOCAL}[redis]\nurl = \"{url}\"\nprefix = \"{}\"\n[greylist]\nenabled = true\nstore = \"redis\"\ndelay_secs = 1\n",
        unique_prefix("greylist")
    );
    let (a, _ta) = Relay::start(&config);
    let (b, _tb) = Relay::start(&config);
    assert_eq!(rcpt(&a, "patient@world.test", "alice@example.org"), 451);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(send(&a, "patient@world.test", "alice@example.org"), 250);
    // B never saw this triplet itself.
    assert_eq!(send(&b, "patient@world.test", "alice@example.org"), 250);
    // A triplet nobody saw is still greylisted on B.
    assert_eq!(rcpt(&b, "patient@world.test", "bob@example.org"), 451);
}

/// One policy delegation request to `policyd`; the `action=` line.
fn ask(policyd: SocketAddr, sender: &str, recipient: &str) -> String {
    common::policy_ask(policyd, ("127.0.0.1", "localhost"), sender, recipient)
}

#[test]
fn policyd_shares_greylist_triplets_with_the_relays() {
    let Some(url) = redis_url() else { return };
    let config = format!(
        "{LOCAL}[redis]\nurl = \"{url}\"\nprefix = \"{}\"\n[greylist]\nenabled = true\nstore = \"redis\"\ndelay_secs = 1\n",
        unique_prefix("policyd")
    );
    let (relay, tmp) = Relay::start(&config);
    // The same file, as Postfix's policy server (its --greylist-store is
    // overridden by `store = "redis"`).
    let policyd = common::Policyd::start(&relay.config, &tmp.path().join("policyd-data"));
    {
        let line = &policyd.startup_line;
        assert!(line.contains("greylist store: redis"), "{line}");
        let policyd = policyd.addr;
        // Seen first by the policy server, passed on the relay after the
        // delay, then known to the policy server too.
        let first = ask(policyd, "patient@world.test", "alice@example.org");
        assert!(first.starts_with("action=DEFER_IF_PERMIT"), "{first}");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(send(&relay, "patient@world.test", "alice@example.org"), 250);
        let again = ask(policyd, "patient@world.test", "alice@example.org");
        assert!(!again.starts_with("action=DEFER"), "{again}");
        // The relay sees a triplet only the policy server saw.
        let seen = ask(policyd, "other@world.test", "bob@example.org");
        assert!(seen.starts_with("action=DEFER_IF_PERMIT"), "{seen}");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(send(&relay, "other@world.test", "bob@example.org"), 250);
    }
}

#[test]
fn a_relay_whose_redis_does_not_answer_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let config = tmp.path().join("relay.toml");
    std::fs::write(
        &config,
        "[mx]\nlisten = [\"127.0.0.1:0\"]\n[submission]\nlisten = [\"127.0.0.1:0\"]\n\
         [redis]\nurl = \"redis://127.0.0.1:1\"\ntimeout_ms = 500\n\
         [greylist]\nenabled = true\nstore = \"redis\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without Redis: {stderr}");
    assert!(
        stderr.contains("redis.url redis://127.0.0.1:1: Redis does not answer")
            && stderr.contains("[greylist]"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "printed a startup line");

    // `store = "redis"` without [redis] is a configuration error by key.
    for (section, key) in [
        ("policy", "policy.store"),
        ("greylist", "greylist.store"),
        ("bulk", "bulk.store"),
        ("outbound_bulk", "outbound_bulk.store"),
        ("backup_mx", "backup_mx.store"),
    ] {
        std::fs::write(&config, format!("[{section}]\nstore = \"redis\"\n")).unwrap();
        let (code, err) = common::check_config(&config);
        assert_eq!(code, Some(2), "{section}: {err}");
        assert!(
            err.contains(&format!("{key}: \"redis\" needs [redis] url")),
            "{err}"
        );
    }
}

/// Submit one near copy of one message to each of `recipients` as
/// [`common::USER`] (STARTTLS, AUTH), one message each; per message
/// `sent N` or `refused N CODE TEXT`.
fn submit_copies(relay: &Relay, recipients: &[&str]) -> String {
    let script = r#"
import smtplib, ssl, sys
host, port, user, pw = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=20)
s.starttls(context=ctx)
s.login(user, pw)
body = ("Dear customer, your parcel is waiting at the depot. Confirm your "
        "address and pay the small customs fee today at our site, or it "
        "goes back to the sender within three days. Thank you.\r\n")
for rcpt in sys.argv[5:]:
    msg = ("Subject: parcel\r\nTo: %s\r\n\r\n" % rcpt + body).encode()
    try:
        s.sendmail(user, [rcpt], msg)
        print("sent", rcpt)
    except smtplib.SMTPDataError as e:
        print("refused", rcpt, e.smtp_code, e.smtp_error.decode())
s.quit()
"#;
    let mut args = vec![common::USER, common::PASSWORD];
    args.extend_from_slice(recipients);
    common::python(script, relay.submission, &args)
}

#[test]
fn outbound_bulk_counts_near_copies_sent_through_every_relay() {
    let Some(url) = redis_url() else { return };
    if !common::have_tool("python3") {
        return;
    }
    let sink = common::Sink::start();
    // Two distinct recipients of one message per account are allowed.
    let config = format!(
        "[delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n\
         [delivery.routes]\n\"sink.test\" = \"{}\"\n\
         [redis]\nurl = \"{url}\"\nprefix = \"{}\"\n\
         [outbound_bulk]\nrecipients = 2\nwindow_secs = 3600\nstore = \"redis\"\n\
         [policy]\nabuse_lock_secs = 600\n",
        sink.addr,
        unique_prefix("outbound")
    );
    let (a, _ta) = Relay::start(&config);
    let (b, _tb) = Relay::start(&config);
    // Two copies through relay A: at the limit, both leave.
    let out = submit_copies(&a, &["r0@sink.test", "r1@sink.test"]);
    assert!(
        out.contains("sent r0@sink.test") && out.contains("sent r1@sink.test"),
        "{out}"
    );
    // A third copy through relay B, which saw none of them itself: the
    // fleet's count is 3, past the limit, so B refuses it and locks the
    // account (a per-relay count would be 1 and let it through).
    let out = submit_copies(&b, &["r2@sink.test"]);
    assert!(out.contains("refused r2@sink.test 554 5.7.1"), "{out}");
    let log = b.log_text();
    assert!(log.contains("outbound bulk: account locked"), "{log}");
    assert!(log.contains("recipients=3"), "{log}");
    // Only A's two left for the sink.
    assert_eq!(sink.wait_for(2, Duration::from_secs(20)).len(), 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.count(), 2);
}

/// `[backup_mx]` learning recipients into the fleet's Redis.
fn backup_config(url: &str, prefix: &str, sink: SocketAddr, defer: bool) -> String {
    format!(
        "[backup_mx]\ndomains = [\"customer.test\"]\nlearn_recipients = true\n\
         defer_unknown_recipients = {defer}\nstore = \"redis\"\n\
         [delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n\
         [delivery.routes]\n\"customer.test\" = \"{sink}\"\n\
         [redis]\nurl = \"{url}\"\nprefix = \"{prefix}\"\n"
    )
}

#[test]
fn recipients_learned_on_relay_a_are_judged_on_relay_b_and_by_policyd() {
    let Some(url) = redis_url() else { return };
    let sink = common::Sink::start();
    let prefix = unique_prefix("learned");
    // A learns (unknown recipients accepted); B and policyd defer what
    // nobody learned yet.
    let (a, _ta) = Relay::start(&backup_config(&url, &prefix, sink.addr, false));
    let (b, tb) = Relay::start(&backup_config(&url, &prefix, sink.addr, true));

    // One message through A to a recipient the primary (the sink) has
    // and one it refuses with 550 5.1.1.
    let mut c = common::Client::greeted(a.mx);
    c.cmd("EHLO world.test");
    assert_eq!(c.cmd("MAIL FROM:<someone@world.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@customer.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<reject-me@customer.test>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&common::message(
        "learned-1",
        "someone@world.test",
        "bob@customer.test",
        "x",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    c.cmd("QUIT");
    assert_eq!(sink.wait_for(1, Duration::from_secs(30)).len(), 1);
    // The outcomes are learned right after the attempt.
    assert!(
        common::wait_until(Duration::from_secs(20), || a
            .log_text()
            .contains("reject-me@customer.test>=bounced")),
        "{}",
        a.log_text()
    );

    // Relay B never delivered to customer.test, yet knows both.
    let rcpt = |to: &str| common::rcpt(b.mx, "someone@world.test", to);
    let r = rcpt("reject-me@customer.test");
    assert_eq!((r.code, r.enhanced().as_str()), (550, "5.1.1"), "{r:?}");
    assert_eq!(rcpt("bob@customer.test").code, 250);
    let r = rcpt("dave@customer.test");
    assert_eq!((r.code, r.enhanced().as_str()), (450, "4.1.1"), "{r:?}");

    // policyd (Postfix as a backup MX) with B's file answers the same.
    let policyd = common::Policyd::start(&b.config, &tb.path().join("policyd-data"));
    let line = &policyd.startup_line;
    assert!(line.contains("backup-mx-recipients"), "{line}");
    let verdict = |to: &str| ask(policyd.addr, "someone@world.test", to);
    let refused = verdict("reject-me@customer.test");
    assert!(refused.starts_with("action=550 5.1.1 "), "{refused}");
    assert_eq!(verdict("bob@customer.test"), "action=DUNNO");
    let unknown = verdict("dave@customer.test");
    assert!(unknown.starts_with("action=DEFER_IF_PERMIT "), "{unknown}");
    // Not a backed-up domain: not this check's business.
    assert_eq!(verdict("reject-me@elsewhere.test"), "action=DUNNO");

    // SIGHUP with defer_unknown_recipients off: unknown recipients pass,
    // what was learned is still known (the store carried over).
    std::fs::write(
        &b.config,
        std::fs::read_to_string(&b.config).unwrap().replace(
            "defer_unknown_recipients = true",
            "defer_unknown_recipients = false",
        ),
    )
    .unwrap();
    policyd.hup();
    policyd.wait_log("configuration reloaded", 1);
    assert_eq!(verdict("dave@customer.test"), "action=DUNNO");
    let refused = verdict("reject-me@customer.test");
    assert!(refused.starts_with("action=550 5.1.1 "), "{refused}");
}

#[test]
fn policyd_refuses_a_backup_mx_check_it_could_not_answer() {
    // Without a store the relays write (Redis), policyd would know no
    // recipient: it refuses to start, naming the key.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("relay.toml");
    std::fs::write(
        &config,
        "[backup_mx]\ndomains = [\"customer.test\"]\nlearn_recipients = true\n\
         defer_unknown_recipients = true\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["policyd", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(
        stderr.contains("backup_mx.store: \"redb\" cannot serve policyd"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "printed a startup line");
}
