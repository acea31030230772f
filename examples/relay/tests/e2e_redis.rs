//! `store = "redis"`: two relay processes on one Redis share policy
//! counters and greylist triplets, and so do a relay and `policyd`; a relay
//! whose Redis does not answer refuses to start, naming the key.
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
    std::fs::write(&config, "[policy]\nstore = \"redis\"\n").unwrap();
    let (code, err) = common::check_config(&config);
    assert_eq!(code, Some(2));
    assert!(err.contains("policy.store"), "{err}");
}
