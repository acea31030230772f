//! End-to-end: with the default (memory) policy store, a locked account
//! stays locked across a SIGTERM restart (its lock record and history are
//! in `<data_dir>/policy-locks.redb`), and an admin unlock is as durable.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use common::{Client, Relay, http};
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";
const FROM: &str = "a@example.net";

fn admin_json(admin: SocketAddr, method: &str, path: &str) -> Value {
    let (status, body) = http(admin, method, path, Some(TOKEN));
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// `MAIL FROM` from the relay network: its reply.
fn mail(relay: &Relay) -> common::Reply {
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let r = c.cmd(&format!("MAIL FROM:<{FROM}>"));
    let _ = c.cmd("QUIT");
    r
}

fn restart(relay: &mut Relay, dir: &Path, config: &str) -> Relay {
    let status = relay.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit on SIGTERM: {status:?}\n{}",
        relay.log_text()
    );
    Relay::start_in(dir, config)
}

/// Lock the relay network's account (one message a minute; the second
/// refusal for the rate locks it), restart, and check the lock held; then
/// unlock with the admin CLI (`forget`: clearing the history) and check
/// that held too.
fn lock_survives_restart(max_auto_unlocks: u32, code: u16, enhanced: &str, forget: bool) {
    // A fixed admin port, so that the CLI finds it in the config after
    // every restart.
    let admin_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let config = format!(
        "[admin]\nlisten = \"{admin}\"\ntoken = \"{TOKEN}\"\n\
         [relay]\nnetworks = [\"127.0.0.1\"]\n\
         [policy]\nmessages_per_minute = 1\nabuse_violations = 1\nabuse_lock_secs = 3600\n\
         abuse_max_auto_unlocks = {max_auto_unlocks}\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_in(tmp.path(), &config);
    assert_eq!(
        common::send_message(relay.mx, "lock-1", FROM, "alice@localhost", "hi"),
        250
    );
    // Rate refusals past `abuse_violations` lock the account.
    let mut locked = mail(&relay);
    for _ in 0..5 {
        if locked.text().contains("locked") {
            break;
        }
        assert_eq!(locked.code, 451, "{locked:?}");
        locked = mail(&relay);
    }
    assert_eq!(
        (locked.code, locked.enhanced().as_str()),
        (code, enhanced),
        "{locked:?}"
    );
    assert!(locked.text().contains("locked"), "{locked:?}");

    let report = admin_json(admin, "GET", "/report");
    let locks = report["locks"].as_array().unwrap().clone();
    assert_eq!(locks.len(), 1, "{report}");
    // `lock:n:127.0.0.0/24`
    let key = locks[0]["key"].as_str().unwrap().to_owned();
    let name = key.strip_prefix("lock:n:").unwrap().to_owned();
    let before = locks[0]["record"].clone();
    assert_eq!(before["in_effect"], true, "{before}");
    assert_eq!(before["times_locked"], 1, "{before}");
    assert!(relay.data.join("policy-locks.redb").is_file());

    // Restart on the same data directory: counters start empty, the lock
    // and its history do not.
    let mut relay = restart(&mut relay, tmp.path(), &config);
    let still = mail(&relay);
    assert_eq!(
        (still.code, still.enhanced().as_str()),
        (code, enhanced),
        "after restart: {still:?}"
    );
    let report = admin_json(admin, "GET", "/report");
    assert_eq!(report["locks"][0]["key"], key.as_str(), "{report}");
    assert_eq!(report["locks"][0]["record"], before, "{report}");
    // Counters start empty: the refusal is the lock's, not the rate's.
    assert!(still.text().contains("locked"), "{still:?}");

    // The admin CLI unlocks it, and that is written through as well.
    let out = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&relay.config)
        .args(["admin", "unlock", "network", &name])
        .args(forget.then_some("forget"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = mail(&relay);
    assert_eq!(ok.code, 250, "after unlock: {ok:?}");

    let relay = restart(&mut relay, tmp.path(), &config);
    let ok = mail(&relay);
    assert_eq!(ok.code, 250, "after unlock and restart: {ok:?}");
    let account = admin_json(admin, "GET", &format!("/accounts/network/{name}"));
    if forget {
        // `forget` removed the record from the journal.
        assert_eq!(account["lock"], Value::Null, "{account}");
        let report = admin_json(admin, "GET", "/report");
        assert_eq!(report["locks"], Value::Array(Vec::new()), "{report}");
    } else {
        assert_eq!(account["lock"]["in_effect"], false, "{account}");
        // The history stays (unlock without `forget`).
        assert_eq!(account["lock"]["times_locked"], 1, "{account}");
    }
}

#[test]
fn a_timed_lock_survives_a_restart_and_so_does_its_unlock() {
    lock_survives_restart(3, 451, "4.7.1", false);
}

#[test]
fn a_permanent_lock_survives_a_restart_and_so_does_its_forgetting_unlock() {
    lock_survives_restart(0, 550, "5.7.1", true);
}
