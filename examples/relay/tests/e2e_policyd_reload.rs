//! SIGHUP in `portcullis-relay policyd` mode: the decision chain
//! (`[greylist]` here) is rebuilt from the re-read file over the same
//! stores — a greylist triplet passed before the reload is still known
//! after it — and a connection open across the reload gets the new chain
//! from its next request; a store kind changed by the reload is warned
//! about by key; a file that does not load keeps the old chain. The
//! accounts file's per-account limits apply to the `sasl_username` Postfix
//! passes, as they do in the relay, and are re-read on SIGHUP too.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{PolicyConn, Policyd, policy_ask};

const RCPT: &str = "alice@example.org";

fn greylist(enabled: bool, delay_secs: u64, extra: &str) -> String {
    format!("[greylist]\nenabled = {enabled}\ndelay_secs = {delay_secs}\n{extra}")
}

#[test]
fn sighup_rebuilds_the_policyd_chain_over_the_same_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("relay.toml");
    std::fs::write(&conf, greylist(true, 1, "")).unwrap();
    let policyd = Policyd::start(&conf, &tmp.path().join("data"));
    let addr = policyd.addr;
    let (early, later) = (("192.0.2.1", "unknown"), ("198.51.100.1", "unknown"));

    // Before the reload: two new triplets are greylisted, one of them on
    // a connection that stays open across the reloads (as Postfix's are).
    let first = policy_ask(addr, early, "early@world.test", RCPT);
    assert!(first.starts_with("action=DEFER_IF_PERMIT"), "{first}");
    let mut open = PolicyConn::connect(addr);
    let seen = open.ask(later, "open@world.test", RCPT);
    assert!(seen.starts_with("action=DEFER_IF_PERMIT"), "{seen}");
    // After the 1 s delay the first one passes.
    std::thread::sleep(Duration::from_millis(1500));
    let passed = policy_ask(addr, early, "early@world.test", RCPT);
    assert!(!passed.starts_with("action=DEFER"), "{passed}");

    // A one-hour delay, and a store kind that needs a restart.
    std::fs::write(&conf, greylist(true, 3600, "store = \"memory\"\n")).unwrap();
    policyd.hup();
    policyd.wait_log("configuration reloaded", 1);
    let log = policyd.log_text();
    assert!(
        log.contains("greylist.store changed but is bound at start: restart policyd"),
        "{log}"
    );
    // The triplet passed before the reload is still known: the greylist
    // store carried over (a fresh one would defer it for an hour).
    let known = policy_ask(addr, early, "early@world.test", RCPT);
    assert!(!known.starts_with("action=DEFER"), "{known}");
    // The open connection is on the new chain: its triplet, first seen
    // over a second ago, passed the old 1 s delay but not the new hour.
    let waiting = open.ask(later, "open@world.test", RCPT);
    assert!(waiting.starts_with("action=DEFER_IF_PERMIT"), "{waiting}");

    // A file that does not load: logged, the chain in force stays (still
    // greylisting, still with the hour).
    std::fs::write(&conf, "[greylist]\nenabled = true\ndelay_secs = \"soon\"\n").unwrap();
    policyd.hup();
    policyd.wait_log("configuration not reloaded", 1);
    let log = policyd.log_text();
    assert!(log.contains("keeping the old policyd chain"), "{log}");
    assert!(log.contains("delay_secs"), "{log}");
    assert_eq!(log.matches("configuration reloaded").count(), 1, "{log}");
    let still = open.ask(later, "open@world.test", RCPT);
    assert!(still.starts_with("action=DEFER_IF_PERMIT"), "{still}");
    let fresh = policy_ask(addr, early, "new@world.test", RCPT);
    assert!(fresh.starts_with("action=DEFER_IF_PERMIT"), "{fresh}");

    // Greylisting off: new triplets pass, on the open connection and on a
    // new one.
    std::fs::write(&conf, greylist(false, 3600, "store = \"memory\"\n")).unwrap();
    policyd.hup();
    policyd.wait_log("configuration reloaded", 2);
    assert_eq!(
        open.ask(later, "another@world.test", RCPT),
        "action=DUNNO",
        "{}",
        policyd.log_text()
    );
    assert_eq!(
        policy_ask(addr, ("203.0.113.9", "unknown"), "newest@world.test", RCPT),
        "action=DUNNO"
    );

    // And back on: the stores were never reset, so the triplets seen
    // before are where they were (passed, and still waiting).
    std::fs::write(&conf, greylist(true, 3600, "store = \"memory\"\n")).unwrap();
    policyd.hup();
    policyd.wait_log("configuration reloaded", 3);
    let known = open.ask(early, "early@world.test", RCPT);
    assert!(!known.starts_with("action=DEFER"), "{known}");
    let waiting = policy_ask(addr, later, "open@world.test", RCPT);
    assert!(waiting.starts_with("action=DEFER_IF_PERMIT"), "{waiting}");
}

#[test]
fn sighup_applies_a_new_policy_limit_over_the_same_counters() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("relay.toml");
    // An unauthenticated client's account is its network (/24).
    let limit = |n: u32| format!("[policy]\nmessages_per_hour = {n}\n");
    std::fs::write(&conf, limit(3)).unwrap();
    let policyd = Policyd::start(&conf, &tmp.path().join("data"));
    let client = ("192.0.2.50", "unknown");
    // Each request without `instance` is a message of its own.
    let mut open = PolicyConn::connect(policyd.addr);
    assert_eq!(open.ask(client, "one@world.test", RCPT), "action=DUNNO");
    assert_eq!(open.ask(client, "two@world.test", RCPT), "action=DUNNO");

    // Down to 2 an hour: the two messages counted before the reload count
    // after it (the counter store carried over), so a third is refused on
    // the open connection and on a new one — the old limit of 3 would
    // have let it through.
    std::fs::write(&conf, limit(2)).unwrap();
    policyd.hup();
    policyd.wait_log("configuration reloaded", 1);
    let third = open.ask(client, "three@world.test", RCPT);
    assert!(
        third.starts_with("action=DEFER_IF_PERMIT") || third.starts_with("action=4"),
        "{third}"
    );
    let again = policy_ask(policyd.addr, client, "four@world.test", RCPT);
    assert!(
        again.starts_with("action=DEFER_IF_PERMIT") || again.starts_with("action=4"),
        "{again}"
    );
    // Another client network is not affected.
    assert_eq!(
        open.ask(("203.0.113.7", "unknown"), "five@world.test", RCPT),
        "action=DUNNO"
    );
}

/// A well-formed argon2id hash (of no password in particular): a domain
/// account needs one, policyd never checks a password.
const DOMAIN_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

#[test]
fn policyd_applies_the_accounts_files_limits_and_rereads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let accounts = tmp.path().join("accounts.toml");
    let alice_may_send = |n: u32| {
        std::fs::write(
            &accounts,
            format!(
                "[[user]]\naddress = \"alice@example.org\"\n\
                 limits = {{ messages_per_hour = {n} }}\n\
                 [[domain]]\ndomain = \"example.net\"\n\
                 password_hash = \"{DOMAIN_HASH}\"\n\
                 limits = {{ messages_per_hour = 1 }}\n"
            ),
        )
        .unwrap();
    };
    alice_may_send(1);
    let conf = tmp.path().join("relay.toml");
    // [policy] itself allows 100 an hour; Alice's own limit is 1.
    std::fs::write(
        &conf,
        format!(
            "[accounts]\nfile = \"{}\"\n[policy]\nmessages_per_hour = 100\n",
            accounts.display()
        ),
    )
    .unwrap();
    let policyd = Policyd::start(&conf, &tmp.path().join("data"));
    let client = ("192.0.2.60", "unknown");
    let deferred = |a: &str| a.starts_with("action=DEFER_IF_PERMIT") || a.starts_with("action=4");
    let mut open = PolicyConn::connect(policyd.addr);
    let mut send = |login: &str| open.ask_as(client, login, "sender@example.org", RCPT);
    assert_eq!(send("alice@example.org"), "action=DUNNO");
    // Her second message of the hour: over her own limit (the login's
    // case does not make another account).
    let second = send("Alice@Example.ORG");
    assert!(deferred(&second), "{second}");
    // Another login from the same client has [policy]'s 100.
    for _ in 0..3 {
        assert_eq!(send("bob@example.org"), "action=DUNNO");
    }
    // A domain login (a bare domain) is the domain account, with its limit.
    assert_eq!(send("example.net"), "action=DUNNO");
    let again = send("example.net");
    assert!(deferred(&again), "{again}");

    // Alice gets 5 an hour: after SIGHUP her next message passes, on the
    // open connection (the counter carried over; a limit of 1 still in
    // force would refuse it).
    alice_may_send(5);
    policyd.hup();
    policyd.wait_log("configuration reloaded", 1);
    assert_eq!(send("alice@example.org"), "action=DUNNO");

    // An accounts file that does not load keeps the chain in force.
    std::fs::write(&accounts, "[[user]]\naddress = 7\n").unwrap();
    policyd.hup();
    policyd.wait_log("configuration not reloaded", 1);
    let log = policyd.log_text();
    assert!(log.contains("accounts.file"), "{log}");
    assert_eq!(send("alice@example.org"), "action=DUNNO");
}
