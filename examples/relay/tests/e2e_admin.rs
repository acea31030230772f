//! End-to-end tests of the operations endpoints: `/metrics` counters move
//! with real SMTP traffic; the admin interface refuses requests without the
//! token, holds and releases a queued message, and unlocks a locked account.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::{Client, Relay, fake_clamd, http, sample, wait_until};
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";

fn ops_config() -> String {
    format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n"
    )
}

/// `name=ADDR` from the startup line.
fn endpoint(relay: &Relay, name: &str) -> SocketAddr {
    common::endpoint(&relay.startup_line, name)
}

fn admin_json(relay: &Relay, method: &str, path: &str) -> Value {
    let (status, body) = http(endpoint(relay, "admin"), method, path, Some(TOKEN));
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn scrape(relay: &Relay) -> String {
    common::scrape(endpoint(relay, "metrics"))
}

/// One message over SMTP; returns the final reply code (of RCPT if refused).
fn send(addr: SocketAddr, from: &str, to: &str) -> u16 {
    common::send_message(addr, "ops-test", from, to, "hello")
}

#[test]
fn metrics_count_sessions_refusals_acceptance_and_delivery() {
    let (relay, _tmp) = Relay::start(&ops_config());
    let before = scrape(&relay);
    assert_eq!(
        sample(
            &before,
            "portcullis_messages_accepted_total{listener=\"mx\"}"
        ),
        0.0
    );
    // Accepted for a local mailbox, then delivered to its Maildir.
    assert_eq!(send(relay.mx, "sender@example.net", "alice@localhost"), 250);
    assert_eq!(
        relay
            .wait_maildir("localhost", "alice", 1, Duration::from_secs(20))
            .len(),
        1
    );
    // Refused: relaying for a foreign domain without AUTH.
    let refused = send(relay.mx, "sender@example.net", "someone@elsewhere.example");
    assert!(refused >= 500, "{refused}");

    let ok = wait_until(Duration::from_secs(10), || {
        sample(
            &scrape(&relay),
            "portcullis_delivery_outcomes_total{outcome=\"delivered\"}",
        ) >= 1.0
    });
    assert!(ok, "no delivered outcome:\n{}", scrape(&relay));
    let text = scrape(&relay);
    assert_eq!(
        sample(&text, "portcullis_messages_accepted_total{listener=\"mx\"}"),
        1.0
    );
    assert!(sample(&text, "portcullis_sessions_total{listener=\"mx\"}") >= 2.0);
    // Both sessions ended.
    let closed = wait_until(Duration::from_secs(5), || {
        sample(
            &scrape(&relay),
            "portcullis_sessions_current{listener=\"mx\"}",
        ) == 0.0
    });
    assert!(closed);
    let refusal = text
        .lines()
        .find(|l| {
            l.starts_with("portcullis_verdicts_total{")
                && l.contains("stage=\"rcpt\"")
                && l.contains(&format!("code=\"{refused}\""))
        })
        .unwrap_or_else(|| panic!("no rcpt refusal series:\n{text}"));
    assert!(refusal.ends_with(" 1"), "{refusal}");
    assert!(sample(&text, "portcullis_spool_store_seconds_count") >= 1.0);
    // The policy filter ran at MAIL and RCPT of the accepted message.
    assert!(
        sample(
            &text,
            "portcullis_policy_check_seconds_count{stage=\"rcpt\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(&text, "portcullis_queue_messages{state=\"active\"}"),
        0.0
    );
}

#[test]
fn admin_refuses_missing_or_wrong_token() {
    let (relay, _tmp) = Relay::start(&ops_config());
    let admin = endpoint(&relay, "admin");
    assert_eq!(http(admin, "GET", "/queue", None).0, 401);
    assert_eq!(
        http(admin, "GET", "/queue", Some("wrong-token-0123456789")).0,
        401
    );
    // A prefix of the right token is wrong too.
    assert_eq!(http(admin, "GET", "/queue", Some(&TOKEN[..10])).0, 401);
    assert_eq!(http(admin, "GET", "/queue", Some(TOKEN)).0, 200);
    assert_eq!(
        http(admin, "POST", "/queue/00000000000000ff/hold", None).0,
        401
    );
}

#[test]
fn admin_without_token_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("relay.toml");
    std::fs::write(&config, "[admin]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let (code, err) = common::check_config(&config);
    assert_eq!(code, Some(2));
    assert!(err.contains("admin.token"), "{err}");
}

#[test]
fn admin_holds_and_releases_a_queued_message() {
    // A route to a closed port: the message stays queued, retried every
    // second or so.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (relay, _tmp) = Relay::start(&format!(
        "{}[relay]\nnetworks = [\"127.0.0.1\"]\n[delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n[delivery.routes]\n\"closed.test\" = \"{closed}\"\n",
        ops_config()
    ));
    assert_eq!(send(relay.mx, "sender@example.net", "bob@closed.test"), 250);
    let queue = admin_json(&relay, "GET", "/queue");
    let id = queue[0]["id"].as_str().unwrap().to_owned();
    let attempts = |relay: &Relay| {
        admin_json(relay, "GET", &format!("/queue/{id}"))["recipients"][0]["attempts"]
            .as_u64()
            .unwrap()
    };
    assert!(wait_until(Duration::from_secs(10), || attempts(&relay) >= 1));

    admin_json(&relay, "POST", &format!("/queue/{id}/hold"));
    let held = admin_json(&relay, "GET", &format!("/queue/{id}"));
    assert_eq!(held["hold"], "Held", "{held}");
    assert!(scrape(&relay).contains("portcullis_queue_messages{state=\"held\"} 1"));
    // An attempt already in flight may still finish; then nothing more.
    std::thread::sleep(Duration::from_secs(1));
    let while_held = attempts(&relay);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(attempts(&relay), while_held, "a held message was retried");

    admin_json(&relay, "POST", &format!("/queue/{id}/release"));
    let released = admin_json(&relay, "GET", &format!("/queue/{id}"));
    assert_eq!(released["hold"], "None", "{released}");
    assert!(
        wait_until(Duration::from_secs(10), || attempts(&relay) > while_held),
        "a released message was not retried"
    );

    // Unknown ids are 404; delete removes it without a DSN.
    let admin = endpoint(&relay, "admin");
    assert_eq!(
        http(admin, "POST", "/queue/00000000ffffffff/hold", Some(TOKEN)).0,
        404
    );
    admin_json(&relay, "POST", &format!("/queue/{id}/delete"));
    assert_eq!(
        http(admin, "GET", &format!("/queue/{id}"), Some(TOKEN)).0,
        404
    );
    assert_eq!(admin_json(&relay, "GET", "/queue"), Value::Array(vec![]));
}

#[test]
fn admin_unlocks_a_locked_account() {
    // One message a minute; the second refusal for the rate locks the
    // account. Abuse locks are for outbound accounts: here the relay
    // network 127.0.0.1 (an unauthenticated MX client is never locked).
    // A fixed admin port, so that the CLI finds it in the config.
    let admin_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (relay, _tmp) = Relay::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{TOKEN}\"\n\
         [relay]\nnetworks = [\"127.0.0.1\"]\n\
         [policy]\nmessages_per_minute = 1\nabuse_violations = 1\nabuse_lock_secs = 3600\n"
    ));
    assert_eq!(send(relay.mx, "a@example.net", "alice@localhost"), 250);
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(send(relay.mx, "a@example.net", "alice@localhost"));
    }
    assert!(codes.iter().all(|&c| c != 250), "{codes:?}");

    let report = admin_json(&relay, "GET", "/report");
    let key = report["locks"][0]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no lock in {report}"))
        .to_owned();
    // `lock:n:127.0.0.0/24`
    let name = key.strip_prefix("lock:n:").unwrap().to_owned();
    let path = format!("/accounts/network/{name}");
    let account = admin_json(&relay, "GET", &path);
    assert_eq!(account["lock"]["in_effect"], true, "{account}");
    assert_eq!(account["lock"]["times_locked"], 1);
    assert!(!account["counters"].as_array().unwrap().is_empty());

    // Unlock through the CLI subcommand: it reads the address and the
    // token from the same config and calls the running relay.
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&relay.config)
        .args(["admin", "unlock", "network", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unlocked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(unlocked["done"], "unlock");
    let account = admin_json(&relay, "GET", &path);
    assert_eq!(account["lock"]["in_effect"], false, "{account}");
    // The history stays unless asked to forget it.
    assert_eq!(account["lock"]["times_locked"], 1);
}

#[test]
fn sighup_puts_new_policy_limits_in_force_without_dropping_sessions() {
    let (relay, _tmp) =
        Relay::start("[relay]\nnetworks = [\"127.0.0.1\"]\n[policy]\nmessages_per_minute = 1\n");
    assert_eq!(send(relay.mx, "a@example.net", "alice@localhost"), 250);
    let limited = send(relay.mx, "a@example.net", "alice@localhost");
    assert!(limited >= 400 && limited != 250, "{limited}");

    // A session open across the reload.
    let mut open = Client::greeted(relay.mx);
    assert_eq!(open.cmd("EHLO client.test").code, 250);

    let text = std::fs::read_to_string(&relay.config).unwrap();
    assert!(text.contains("messages_per_minute = 1\n"));
    std::fs::write(
        &relay.config,
        text.replace("messages_per_minute = 1\n", "messages_per_minute = 100\n"),
    )
    .unwrap();
    relay.hup();
    relay.wait_log("policy limits reloaded", 1);

    // The old session carries on, under the new limit.
    assert_eq!(open.cmd("MAIL FROM:<a@example.net>").code, 250);
    assert_eq!(open.cmd("RCPT TO:<alice@localhost>").code, 250);
    assert_eq!(open.cmd("DATA").code, 354);
    open.send_raw(&common::message(
        "reload",
        "a@example.net",
        "alice@localhost",
        "x",
    ));
    open.send_raw(b".\r\n");
    assert_eq!(open.reply().unwrap().code, 250);
    assert_eq!(send(relay.mx, "a@example.net", "alice@localhost"), 250);

    // A broken file is refused and the policy in force stays.
    std::fs::write(&relay.config, "[policy]\nmessages_per_minute = \"lots\"\n").unwrap();
    relay.hup();
    relay.wait_log("policy not reloaded", 1);
    assert_eq!(send(relay.mx, "a@example.net", "alice@localhost"), 250);
}

#[test]
fn admin_lists_and_releases_a_quarantined_message() {
    let clamd = fake_clamd();
    let (relay, _tmp) = Relay::start(&format!(
        "{}[scan]\nclamd = \"{clamd}\"\non_virus = \"quarantine\"\n",
        ops_config()
    ));
    assert_eq!(
        common::send_message(
            relay.mx,
            "ops-test",
            "a@example.net",
            "alice@localhost",
            "QUARANTINE-ME"
        ),
        250
    );
    let quarantined = admin_json(&relay, "GET", "/quarantine");
    let list = quarantined.as_array().unwrap();
    assert_eq!(list.len(), 1, "{quarantined}");
    assert!(list[0]["hold"]["Quarantined"].is_object(), "{quarantined}");
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(scrape(&relay).contains("portcullis_queue_messages{state=\"quarantined\"} 1"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(relay.maildir("localhost", "alice").is_empty());

    admin_json(&relay, "POST", &format!("/quarantine/{id}/release"));
    let got = relay.wait_maildir("localhost", "alice", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "the released message was not delivered");
    assert!(String::from_utf8_lossy(&got[0]).contains("QUARANTINE-ME"));
    assert_eq!(
        admin_json(&relay, "GET", "/quarantine"),
        Value::Array(vec![])
    );
}
