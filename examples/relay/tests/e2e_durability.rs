//! Durability and shutdown, end to end: a relay SIGKILLed while clients
//! send concurrently loses no message it answered `250` to; SIGTERM lets
//! sessions finish, then closes the rest with 421.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Relay, message, message_id};

const SINK_BOX: &str =
    "[local]\nmailboxes = [\"sink@localhost\"]\n[limits]\nshutdown_grace_secs = 3\n";

/// Send messages on one connection until `stop` or an error; record the
/// Message-IDs that got `250`.
fn sender(
    addr: SocketAddr,
    worker: usize,
    count: usize,
    accepted: &Mutex<Vec<String>>,
    attempted: &AtomicUsize,
    stop: &AtomicBool,
) {
    let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return;
    };
    drop(stream);
    let mut c = Client::connect(addr);
    if c.reply().map(|r| r.code) != Some(220) {
        return;
    }
    let ok = |r: Option<common::Reply>, code| r.is_some_and(|r| r.code == code);
    c.send_raw(b"EHLO load.test\r\n");
    if !ok(c.reply(), 250) {
        return;
    }
    for i in 0..count {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("k9-{worker}-{i}");
        attempted.fetch_add(1, Ordering::Relaxed);
        // Pipelined MAIL/RCPT/DATA (RFC 2920), then the message.
        c.send_raw(b"MAIL FROM:<load@example.net>\r\nRCPT TO:<sink@localhost>\r\nDATA\r\n");
        if !ok(c.reply(), 250) || !ok(c.reply(), 250) || !ok(c.reply(), 354) {
            return;
        }
        let mut body = message(
            &id,
            "load@example.net",
            "sink@localhost",
            &"payload ".repeat(40),
        );
        body.extend_from_slice(b".\r\n");
        c.send_raw(&body);
        match c.reply() {
            Some(r) if r.code == 250 => accepted
                .lock()
                .unwrap()
                .push(format!("<{id}@test.portcullis>")),
            _ => return,
        }
    }
    c.send_raw(b"QUIT\r\n");
}

fn delivered_ids(relay: &Relay) -> Vec<String> {
    relay
        .maildir("localhost", "sink")
        .iter()
        .filter_map(|m| message_id(m))
        .collect()
}

#[test]
fn kill_9_mid_stream_loses_no_accepted_message() {
    const WORKERS: usize = 20;
    const PER_WORKER: usize = 60;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_in(tmp.path(), SINK_BOX);
    let addr = relay.mx;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let attempted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (a, t, s) = (accepted.clone(), attempted.clone(), stop.clone());
            std::thread::spawn(move || sender(addr, w, PER_WORKER, &a, &t, &s))
        })
        .collect();
    // Kill once a good share is accepted: mid-way, with sessions in flight.
    let start = Instant::now();
    while accepted.lock().unwrap().len() < WORKERS * PER_WORKER / 3
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    relay.kill9();
    let at_kill = accepted.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let accepted: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let delivered_before = delivered_ids(&relay).len();
    assert!(
        accepted.len() < WORKERS * PER_WORKER,
        "the relay was killed after every message was sent; nothing was tested"
    );

    // Restart on the same data directory: the spool is recovered and the
    // rest delivered.
    let relay = Relay::start_in(tmp.path(), SINK_BOX);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut delivered: BTreeSet<String>;
    loop {
        delivered = delivered_ids(&relay).into_iter().collect();
        if accepted.is_subset(&delivered) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lost: Vec<&String> = accepted.difference(&delivered).collect();
    let files = relay.maildir("localhost", "sink").len();
    println!(
        "kill -9: attempted {}, accepted (250) {} ({} when killed), delivered before kill {}, \
         delivered after restart {} (files {}), lost {}",
        attempted.load(Ordering::Relaxed),
        accepted.len(),
        at_kill,
        delivered_before,
        delivered.len(),
        files,
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} accepted messages: {lost:?}",
        lost.len()
    );
    assert_eq!(files, delivered.len(), "a message was delivered twice");
    assert!(relay.log_text().contains("spool recovered"));
}

#[test]
fn sigterm_lets_sessions_finish_then_421s_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_in(tmp.path(), SINK_BOX);
    // A session in the middle of DATA, and an idle one.
    let mut busy = Client::greeted(relay.mx);
    busy.cmd("EHLO busy.test");
    busy.cmd("MAIL FROM:<a@example.net>");
    busy.cmd("RCPT TO:<sink@localhost>");
    assert_eq!(busy.cmd("DATA").code, 354);
    busy.send_raw(b"Message-ID: <graceful@test.portcullis>\r\nSubject: half\r\n\r\nfirst half\r\n");
    let mut idle = Client::greeted(relay.mx);
    idle.cmd("EHLO idle.test");

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &relay.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::net::TcpStream::connect_timeout(&relay.mx, Duration::from_secs(2)).is_err(),
        "still accepting connections after SIGTERM"
    );
    // The transaction in progress may finish within the grace period.
    busy.send_raw(b"second half\r\n.\r\n");
    let r = busy.reply().unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    // When the grace period (3 s) ends, both sessions get 421 and are closed.
    let r = idle
        .reply()
        .expect("idle session got no reply before close");
    assert_eq!((r.code, r.enhanced().as_str()), (421, "4.3.2"), "{r:?}");
    let r = busy.reply().unwrap();
    assert_eq!(r.code, 421, "{r:?}");
    let status = relay
        .terminate(Duration::from_secs(20))
        .expect("relay did not exit");
    assert!(status.success(), "{status:?}");
    let log = relay.log_text();
    assert!(log.contains("SIGTERM received"), "{log}");

    // The accepted message is in the mailbox (delivered before exit, or
    // after the restart from the spool).
    let relay = Relay::start_in(tmp.path(), SINK_BOX);
    let got = relay.wait_maildir("localhost", "sink", 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);
    assert_eq!(
        message_id(&got[0]).as_deref(),
        Some("<graceful@test.portcullis>")
    );
}
