//! SMTP callouts against real loopback SMTP servers: the scripted tokio
//! server of `tests/support` (every command recorded) and Postfix's
//! `smtp-sink`.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{
    Address, Client, Context, EnhancedCode, Envelope, Filter, ForwardPath, MailParams, ManualClock,
    Recipient, Reply, ReversePath, Verdict, async_trait,
};
use portcullis_greylist::{
    LearningConfig, MemoryStore, RecipientFilter, RecipientLearning, RecipientOutcome,
    RecipientVerifier,
};
use portcullis_queue::{
    CalloutConfig, CalloutResult, HopHost, SmtpCallout, TlsPolicy, UnknownReason,
};
use support::{LOOPBACK, Script, Scripted, Sink};
use tokio::sync::Semaphore;

/// A callout target: greets, announces ENHANCEDSTATUSCODES, and replies
/// to RCPT with `f` (given the whole line); `None`: never answer.
fn rcpt(f: impl Fn(&str) -> Option<&'static str> + Send + Sync + 'static) -> Script {
    Script::new(&["ENHANCEDSTATUSCODES"]).with_rcpt(move |line| f(line).map(str::to_owned))
}

/// Knows alice, and nobody else (550 5.1.1).
fn knows_alice() -> Script {
    rcpt(|line| {
        Some(if line.contains("<alice@example.net>") {
            "250 2.1.5 Ok"
        } else {
            "550 5.1.1 <nobody>: Recipient address rejected: User unknown"
        })
    })
}

/// Start a scripted primary on loopback.
async fn primary(script: Script) -> (HopHost, Scripted) {
    let server = Scripted::start(script).await;
    (server.host.clone(), server)
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

fn config() -> CalloutConfig {
    CalloutConfig::new("backup.test").with_tls(TlsPolicy::Never)
}

fn callout(config: CalloutConfig) -> (SmtpCallout, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_unix(1_700_000_000));
    (SmtpCallout::new(config, clock.clone()).unwrap(), clock)
}

/// The exact dialogue every callout must have: no DATA, nothing after RCPT but QUIT.
fn assert_dialogue(session: &[String], rcpt: &str) {
    assert_eq!(
        session,
        [
            "EHLO backup.test".to_owned(),
            "MAIL FROM:<>".to_owned(),
            format!("RCPT TO:<{rcpt}>"),
            "QUIT".to_owned(),
        ],
    );
}

#[tokio::test]
async fn exists() {
    let (host, seen) = primary(knows_alice()).await;
    let (callout, _) = callout(config());
    let r = callout.verify(&addr("alice@example.net"), &[host]).await;
    assert_eq!(r, CalloutResult::Exists);
    seen.wait_closed(1).await;
    assert_dialogue(&seen.sessions()[0].commands, "alice@example.net");
}

#[tokio::test]
async fn does_not_exist_on_550_5_1_1() {
    let (host, seen) = primary(knows_alice()).await;
    let (callout, _) = callout(config());
    let r = callout.verify(&addr("nobody@example.net"), &[host]).await;
    let CalloutResult::DoesNotExist(reply) = r else {
        panic!("{r:?}")
    };
    assert_eq!(reply.code(), 550);
    assert_eq!(reply.enhanced(), Some(EnhancedCode::new(5, 1, 1)));
    assert!(reply.text().contains("User unknown"), "{reply:?}");
    seen.wait_closed(1).await;
    assert_dialogue(&seen.sessions()[0].commands, "nobody@example.net");
}

#[tokio::test]
async fn temporary_failure_is_unknown() {
    let (host, seen) = primary(rcpt(|_| Some("450 4.2.0 Mailbox busy, try later"))).await;
    let (callout, _) = callout(config());
    let r = callout.verify(&addr("alice@example.net"), &[host]).await;
    let CalloutResult::Unknown(UnknownReason::Inconclusive(reply)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(reply.code(), 450);
    seen.wait_closed(1).await;
    assert_dialogue(&seen.sessions()[0].commands, "alice@example.net");
}

#[tokio::test]
async fn policy_and_bare_550_are_unknown_not_rejections() {
    // 550 5.7.1: policy, not "no such user".
    let (policy, _) = primary(rcpt(|_| Some("550 5.7.1 Relay access denied"))).await;
    // No enhanced codes at all: a bare 550 proves nothing.
    let bare = Script::new(&[]).with_rcpt(|_| Some("550 Sorry".to_owned()));
    let (bare, _) = primary(bare).await;
    let (callout, _) = callout(config());
    for (host, who) in [(policy, "a@example.net"), (bare, "b@example.net")] {
        let r = callout.verify(&addr(who), &[host]).await;
        assert!(
            matches!(&r, CalloutResult::Unknown(UnknownReason::Inconclusive(reply)) if reply.code() == 550),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn connection_refused_is_unknown() {
    // A port nobody listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let (callout, _) = callout(config());
    let host = HopHost::new("down.test", vec![LOOPBACK], port);
    let r = callout.verify(&addr("alice@example.net"), &[host]).await;
    let CalloutResult::Unknown(UnknownReason::Unreachable(reply)) = r else {
        panic!("{r:?}")
    };
    assert!(reply.is_transient(), "{reply:?}");
}

#[tokio::test]
async fn refused_first_host_falls_over_to_the_next() {
    let port = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let (good, seen) = primary(knows_alice()).await;
    let (callout, _) = callout(config());
    let down = HopHost::new("down.test", vec![LOOPBACK], port);
    let r = callout
        .verify(&addr("alice@example.net"), &[down, good])
        .await;
    assert_eq!(r, CalloutResult::Exists);
    assert_eq!(seen.connections(), 1);
}

/// A primary that never greets: the greeting is bounded by the command
/// timeout (the transport's: unreachable, 4.4.7) and by the callout's own
/// deadline, whichever comes first.
#[tokio::test]
async fn silent_greeting_times_out_as_unknown() {
    let (host, _) = primary(Script::silent()).await;
    let (first, _) =
        callout(config().with_timeouts(Duration::from_millis(200), Duration::from_secs(30)));
    let r = first.verify(&addr("alice@example.net"), &[host]).await;
    let CalloutResult::Unknown(UnknownReason::Unreachable(reply)) = r else {
        panic!("command timeout first: {r:?}");
    };
    assert_eq!(reply.enhanced(), Some(EnhancedCode::new(4, 4, 7)));

    let (host, seen) = primary(Script::silent()).await;
    let (second, _) =
        callout(config().with_timeouts(Duration::from_secs(30), Duration::from_millis(300)));
    let r = second.verify(&addr("alice@example.net"), &[host]).await;
    assert_eq!(
        r,
        CalloutResult::Unknown(UnknownReason::Timeout),
        "deadline first"
    );
    // The client hung up without ever sending a command.
    seen.wait_closed(1).await;
    let sessions = seen.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].commands, Vec::<String>::new());
}

#[tokio::test]
async fn stalled_rcpt_times_out_as_unknown() {
    let (host, seen) = primary(rcpt(|_| None)).await;
    let (callout, _) =
        callout(config().with_timeouts(Duration::from_millis(200), Duration::from_secs(30)));
    let r = callout.verify(&addr("alice@example.net"), &[host]).await;
    let CalloutResult::Unknown(UnknownReason::Unreachable(reply)) = r else {
        panic!("{r:?}")
    };
    // RFC 3463 X.4.7: delivery time expired (the command timeout).
    assert_eq!(reply.enhanced(), Some(EnhancedCode::new(4, 4, 7)));
    seen.wait_closed(1).await;
    let s = &seen.sessions()[0].commands;
    assert_eq!(s.last().unwrap(), "RCPT TO:<alice@example.net>");
}

#[tokio::test]
async fn cached_answers_do_not_connect_again() {
    let (host, seen) = primary(knows_alice()).await;
    let (callout, _) = callout(config());
    let hosts = [host];
    for _ in 0..3 {
        assert_eq!(
            callout.verify(&addr("alice@example.net"), &hosts).await,
            CalloutResult::Exists
        );
        assert!(matches!(
            callout.verify(&addr("nobody@example.net"), &hosts).await,
            CalloutResult::DoesNotExist(_)
        ));
    }
    seen.wait_closed(2).await;
    assert_eq!(seen.connections(), 2);
    // The domain is case-insensitive, the local part is not (RFC 5321 §2.4).
    assert_eq!(
        callout.cached(&addr("alice@EXAMPLE.net")),
        Some(CalloutResult::Exists)
    );
    assert_eq!(callout.cached(&addr("Alice@example.net")), None);
    // forget() drops one answer.
    callout.forget(&addr("alice@example.net"));
    assert_eq!(callout.cached(&addr("alice@example.net")), None);
    assert_eq!(callout.cache_len(), 1);
}

#[tokio::test]
async fn negative_answers_expire_before_positive_ones() {
    let (host, seen) = primary(knows_alice()).await;
    let (callout, clock) = callout(config().with_cache_ttls(
        Duration::from_secs(3600),
        Duration::from_secs(600),
        Duration::from_secs(60),
    ));
    let hosts = [host];
    let alice = addr("alice@example.net");
    let nobody = addr("nobody@example.net");
    assert_eq!(callout.verify(&alice, &hosts).await, CalloutResult::Exists);
    assert!(matches!(
        callout.verify(&nobody, &hosts).await,
        CalloutResult::DoesNotExist(_)
    ));
    assert_eq!(seen.connections(), 2);

    clock.advance(Duration::from_secs(599));
    assert!(matches!(
        callout.verify(&nobody, &hosts).await,
        CalloutResult::DoesNotExist(_)
    ));
    assert_eq!(seen.connections(), 2, "still cached at 599 s");

    clock.advance(Duration::from_secs(2));
    assert_eq!(callout.cached(&nobody), None);
    assert!(matches!(
        callout.verify(&nobody, &hosts).await,
        CalloutResult::DoesNotExist(_)
    ));
    assert_eq!(seen.connections(), 3, "asked again after 600 s");
    // The positive answer outlives it.
    assert_eq!(callout.verify(&alice, &hosts).await, CalloutResult::Exists);
    assert_eq!(seen.connections(), 3);
    clock.advance(Duration::from_secs(3000));
    assert_eq!(callout.verify(&alice, &hosts).await, CalloutResult::Exists);
    assert_eq!(seen.connections(), 4, "asked again after 3601 s");
}

#[tokio::test]
async fn unknown_answers_are_cached_briefly_or_not_at_all() {
    let (host, seen) = primary(rcpt(|_| Some("451 4.3.0 Try again"))).await;
    let hosts = [host];
    let who = addr("alice@example.net");
    let (callout, clock) = callout(config());
    assert!(matches!(
        callout.verify(&who, &hosts).await,
        CalloutResult::Unknown(_)
    ));
    assert!(matches!(
        callout.verify(&who, &hosts).await,
        CalloutResult::Unknown(_)
    ));
    assert_eq!(seen.connections(), 1);
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        callout.verify(&who, &hosts).await,
        CalloutResult::Unknown(_)
    ));
    assert_eq!(seen.connections(), 2);

    let (uncached, _) = self::callout(config().with_cache_ttls(
        Duration::from_secs(3600),
        Duration::from_secs(600),
        Duration::ZERO,
    ));
    assert!(matches!(
        uncached.verify(&who, &hosts).await,
        CalloutResult::Unknown(_)
    ));
    assert!(matches!(
        uncached.verify(&who, &hosts).await,
        CalloutResult::Unknown(_)
    ));
    assert_eq!(seen.connections(), 4);
    assert_eq!(uncached.cache_len(), 0);
}

#[tokio::test]
async fn no_primary_is_unknown_and_not_cached() {
    let (callout, _) = callout(config());
    let who = addr("alice@example.net");
    assert_eq!(
        callout.verify(&who, &[]).await,
        CalloutResult::Unknown(UnknownReason::NoPrimary)
    );
    let no_addrs = HopHost::new("empty.test", vec![], 25);
    assert_eq!(
        callout.verify(&who, &[no_addrs]).await,
        CalloutResult::Unknown(UnknownReason::NoPrimary)
    );
    assert_eq!(callout.cache_len(), 0);
}

#[tokio::test]
async fn never_sends_data() {
    let (host, seen) = primary(rcpt(|line| {
        Some(match line {
            l if l.contains("<alice@") => "250 2.1.5 Ok",
            l if l.contains("<busy@") => "452 4.2.2 Mailbox full",
            l if l.contains("<policy@") => "554 5.7.1 Rejected",
            _ => "550 5.1.1 User unknown",
        })
    }))
    .await;
    let (callout, _) = callout(config());
    let hosts = [host];
    let who = ["alice", "busy", "policy", "ghost"];
    for w in who {
        let _ = callout
            .verify(&addr(&format!("{w}@example.net")), &hosts)
            .await;
    }
    seen.wait_closed(who.len()).await;
    let sessions = seen.sessions();
    assert_eq!(sessions.len(), who.len());
    for (s, w) in sessions.iter().map(|s| &s.commands).zip(who) {
        assert!(
            !s.iter().any(|c| {
                let c = c.to_ascii_uppercase();
                c.starts_with("DATA") || c.starts_with("BDAT")
            }),
            "{s:?}"
        );
        assert_dialogue(s, &format!("{w}@example.net"));
    }
}

#[tokio::test]
async fn concurrency_per_host_is_capped() {
    // Hold RCPT replies until two connections were open at once: proves the
    // cap allows 2 (with a cap of 1 this would time out and fail).
    let (host, seen) = primary(knows_alice().gate_rcpt(2)).await;
    let (callout, _) = callout(config().with_max_per_host(2));
    let callout = Arc::new(callout);
    let hosts = Arc::new([host]);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let callout = callout.clone();
            let hosts = hosts.clone();
            tokio::spawn(async move {
                callout
                    .verify(&addr(&format!("user{i}@example.net")), &hosts[..])
                    .await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(matches!(r, CalloutResult::DoesNotExist(_)), "{r:?}");
    }
    seen.wait_closed(6).await;
    assert_eq!(seen.connections(), 6);
    assert_eq!(seen.max_open(), 2);
}

/// Spawn a verification of `who`, as a session task would.
fn spawn_verify(
    callout: &Arc<SmtpCallout>,
    hosts: &Arc<[HopHost]>,
    who: &'static str,
) -> tokio::task::JoinHandle<CalloutResult> {
    let (callout, hosts) = (callout.clone(), hosts.clone());
    tokio::spawn(async move { callout.verify(&addr(who), &hosts).await })
}

/// A primary that knows alice and holds every RCPT reply until `hold` gets
/// permits, and one callout (shared by the tasks a test spawns) that asks it.
async fn held_primary() -> (Arc<Semaphore>, Scripted, Arc<SmtpCallout>, Arc<[HopHost]>) {
    let hold = Arc::new(Semaphore::new(0));
    let (host, seen) = primary(knows_alice().hold_rcpt(hold.clone())).await;
    let callout = Arc::new(callout(config()).0);
    (hold, seen, callout, Arc::new([host]))
}

/// Let every other ready task on this (current-thread) runtime run until
/// it waits.
async fn let_others_run() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn concurrent_callouts_for_one_recipient_share_one_connection() {
    let (hold, seen, callout, hosts) = held_primary().await;

    let first = spawn_verify(&callout, &hosts, "alice@example.net");
    seen.wait_rcpt().await;
    // Three more RCPTs for the same recipient while the first is under way:
    // each is past its cache check once it has run.
    let others: Vec<_> = (0..3)
        .map(|_| spawn_verify(&callout, &hosts, "alice@example.net"))
        .collect();
    let_others_run().await;
    hold.add_permits(100);
    assert_eq!(first.await.unwrap(), CalloutResult::Exists);
    for o in others {
        assert_eq!(o.await.unwrap(), CalloutResult::Exists);
    }
    assert_eq!(seen.connections(), 1);
}

#[tokio::test]
async fn a_waiting_caller_takes_over_when_the_first_is_cancelled() {
    let (hold, seen, callout, hosts) = held_primary().await;

    let first = spawn_verify(&callout, &hosts, "alice@example.net");
    seen.wait_rcpt().await;
    let second = spawn_verify(&callout, &hosts, "alice@example.net");
    let_others_run().await;
    // The first client hung up: its session task (and callout) is dropped.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    hold.add_permits(100);
    assert_eq!(second.await.unwrap(), CalloutResult::Exists);
    assert_eq!(seen.connections(), 2);
    // A later caller is answered from the cache.
    assert_eq!(
        callout.verify(&addr("alice@example.net"), &hosts).await,
        CalloutResult::Exists
    );
    assert_eq!(seen.connections(), 2);
}

#[tokio::test]
async fn busy_when_every_slot_stays_taken_past_the_deadline() {
    // The primary never answers QUIT, so the first callout's connection
    // (and its slot) lingers; the caller still gets its answer at once.
    let (host, seen) = primary(knows_alice().mute_after_quit()).await;
    let (callout, _) = callout(
        config()
            .with_max_per_host(1)
            .with_timeouts(Duration::from_secs(5), Duration::from_millis(300)),
    );
    let hosts = [host];
    assert_eq!(
        callout.verify(&addr("alice@example.net"), &hosts).await,
        CalloutResult::Exists
    );
    assert_eq!(
        callout.verify(&addr("bob@example.net"), &hosts).await,
        CalloutResult::Unknown(UnknownReason::Busy)
    );
    assert_eq!(seen.connections(), 1);
    // Busy is not remembered: nothing was learnt about bob.
    assert_eq!(callout.cached(&addr("bob@example.net")), None);
}

/// The adapter the relay would hold: the greylist crate's verifier trait on
/// top of a callout to a fixed set of primaries. Kept here, not in either
/// library, so neither crate depends on the other.
struct CalloutVerifier {
    callout: Arc<SmtpCallout>,
    primaries: Vec<HopHost>,
}

#[async_trait]
impl RecipientVerifier for CalloutVerifier {
    async fn verify(&self, recipient: &Address) -> RecipientOutcome {
        match self.callout.verify(recipient, &self.primaries).await {
            CalloutResult::Exists => RecipientOutcome::Accepted,
            CalloutResult::DoesNotExist(_) => RecipientOutcome::NoSuchUser,
            _ => RecipientOutcome::Inconclusive,
        }
    }
}

#[tokio::test]
async fn adapter_drives_the_greylist_recipient_filter() {
    let (host, seen) = primary(rcpt(|line| {
        Some(match line {
            l if l.contains("<alice@") => "250 2.1.5 Ok",
            l if l.contains("<later@") => "451 4.3.0 Try again",
            _ => "550 5.1.1 User unknown",
        })
    }))
    .await;
    let (callout, clock) = callout(config());
    let verifier = Arc::new(CalloutVerifier {
        callout: Arc::new(callout),
        primaries: vec![host],
    });
    let learning = Arc::new(RecipientLearning::new(
        Arc::new(MemoryStore::new()),
        LearningConfig::default(),
    ));
    let filter = RecipientFilter::new(learning, clock).with_verifier(verifier);
    let mut cx = Context::new(Client::new(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        40000,
    )));
    cx.envelope = Some(Envelope::new(
        ReversePath::parse("<a@example.org>").unwrap(),
        MailParams::default(),
    ));
    let rcpt = |s: &str| Recipient::new(ForwardPath::parse(s).unwrap());

    let v = filter
        .rcpt_to(&mut cx, &mut rcpt("<alice@example.net>"))
        .await;
    assert_eq!(v, Verdict::Continue);
    let v = filter
        .rcpt_to(&mut cx, &mut rcpt("<ghost@example.net>"))
        .await;
    assert_eq!(v, Verdict::Reject(Reply::no_such_user()));
    // Unknown is deferred 450 4.1.1, never rejected.
    let v = filter
        .rcpt_to(&mut cx, &mut rcpt("<later@example.net>"))
        .await;
    assert!(
        matches!(&v, Verdict::Defer(r) if r.code() == 450 && r.enhanced() == Some(EnhancedCode::new(4, 1, 1))),
        "{v:?}"
    );
    assert_eq!(seen.connections(), 3);
}

#[tokio::test]
async fn against_postfix_smtp_sink() {
    let Some(accepting) = Sink::start(&[], false).await else {
        return;
    };
    let Some(hard) = Sink::start(&["-f", "RCPT"], false).await else {
        return;
    };
    let Some(soft) = Sink::start(&["-r", "RCPT"], false).await else {
        return;
    };
    let (callout, _) = callout(config());
    let who = addr("alice@example.net");
    assert_eq!(
        callout
            .verify(&who, std::slice::from_ref(&accepting.host))
            .await,
        CalloutResult::Exists
    );
    callout.forget(&who);
    // smtp-sink's hard error is `500 5.3.0`: permanent, but not "no such
    // user", so it proves nothing about the mailbox.
    let r = callout.verify(&who, std::slice::from_ref(&hard.host)).await;
    assert!(
        matches!(&r, CalloutResult::Unknown(UnknownReason::Inconclusive(reply)) if reply.is_permanent()),
        "{r:?}"
    );
    callout.forget(&who);
    let r = callout.verify(&who, std::slice::from_ref(&soft.host)).await;
    assert!(
        matches!(&r, CalloutResult::Unknown(UnknownReason::Inconclusive(reply)) if reply.is_transient()),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_failed_primary_is_skipped_for_down_ttl() {
    let (host, seen) = primary(Script::silent()).await;
    let (callout, clock) = callout(
        config()
            .with_timeouts(Duration::from_millis(200), Duration::from_secs(30))
            .with_down_ttl(Duration::from_secs(60)),
    );
    let hosts = [host];
    let r = callout.verify(&addr("alice@example.net"), &hosts).await;
    assert!(
        matches!(r, CalloutResult::Unknown(UnknownReason::Unreachable(_))),
        "{r:?}"
    );
    seen.wait_closed(1).await;
    assert_eq!(
        callout.down_addresses(),
        vec![SocketAddr::new(hosts[0].addrs[0], hosts[0].port)]
    );

    // Another recipient within the minute: answered at once, no connection.
    let r = callout.verify(&addr("bob@example.net"), &hosts).await;
    let CalloutResult::Unknown(UnknownReason::Unreachable(reply)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(reply.enhanced(), Some(EnhancedCode::new(4, 4, 7)));
    assert_eq!(seen.connections(), 1);

    // Once the minute is over the primary is tried again.
    clock.advance(Duration::from_secs(61));
    assert!(callout.down_addresses().is_empty());
    let r = callout.verify(&addr("carol@example.net"), &hosts).await;
    assert!(matches!(r, CalloutResult::Unknown(_)), "{r:?}");
    assert_eq!(seen.connections(), 2);
}

#[tokio::test]
async fn a_failed_first_primary_is_skipped_for_the_next_one() {
    let (dead, dead_seen) = primary(Script::silent()).await;
    let (good, good_seen) = primary(knows_alice()).await;
    let (callout, _) =
        callout(config().with_timeouts(Duration::from_millis(200), Duration::from_secs(30)));
    let hosts = [dead, good];
    assert_eq!(
        callout.verify(&addr("alice@example.net"), &hosts).await,
        CalloutResult::Exists
    );
    let r = callout.verify(&addr("ghost@example.net"), &hosts).await;
    assert!(matches!(r, CalloutResult::DoesNotExist(_)), "{r:?}");
    // The silent host was waited for once, the good one asked twice.
    assert_eq!(dead_seen.connections(), 1);
    assert_eq!(good_seen.connections(), 2);
}

#[tokio::test]
async fn down_ttl_zero_tries_every_time() {
    let (host, seen) = primary(Script::silent()).await;
    let (callout, _) = callout(
        config()
            .with_timeouts(Duration::from_millis(100), Duration::from_secs(30))
            .with_down_ttl(Duration::ZERO),
    );
    let hosts = [host];
    for who in ["alice@example.net", "bob@example.net"] {
        let r = callout.verify(&addr(who), &hosts).await;
        assert!(matches!(r, CalloutResult::Unknown(_)), "{r:?}");
    }
    assert!(callout.down_addresses().is_empty());
    assert_eq!(seen.connections(), 2);
}
