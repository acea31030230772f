//! Postfix's test tools against the relay: `smtp-source` (20 parallel
//! sessions) into the MX port, relayed to `smtp-sink` as the next hop; and
//! `NOTIFY=SUCCESS` relayed to `smtp-sink` with and without DSN (RFC 3461
//! §4.1: a `relayed` DSN only when the next hop cannot take the request).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Relay, endpoint, have_tool, message, message_id, sample, scrape};
use common::{SmtpSink, dump_files, tool_path, wait_until};

#[test]
fn smtp_source_to_relay_to_smtp_sink() {
    if !have_tool("smtp-source") || !have_tool("smtp-sink") {
        return;
    }
    const MESSAGES: usize = 300;
    let dump = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dump.path(), &[]);
    let port = sink.port;
    // smtp-source has no AUTH: trust loopback for this test (opt-in).
    let (relay, _tmp) = Relay::start(&format!(
        "[relay]\nnetworks = [\"127.0.0.1\"]\n[delivery]\ntls = \"never\"\nfirst_retry_secs = 1\n\
         [delivery.routes]\n\"sink.test\" = \"127.0.0.1:{port}\"\n"
    ));
    let start = Instant::now();
    let out = Command::new(tool_path("smtp-source"))
        .args(["-s", "20", "-m", &MESSAGES.to_string(), "-l", "2048"])
        .args(["-f", "load@example.net", "-t", "rcpt@sink.test"])
        .arg(relay.mx.to_string())
        .output()
        .unwrap();
    let sent_in = start.elapsed();
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = || dump_files(dump.path());
    // smtp-sink creates each file before writing it: count Message-Ids,
    // not files, until every message is complete.
    let ids = || -> BTreeSet<String> {
        files()
            .iter()
            .filter_map(|p| message_id(&std::fs::read(p).unwrap_or_default()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while ids().len() < MESSAGES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered_in = start.elapsed();
    // Give a duplicate, if any, a moment to show up.
    std::thread::sleep(Duration::from_millis(500));
    drop(sink);
    let got = files();
    let ids = ids();
    println!(
        "smtp-source -s 20 -m {MESSAGES} -l 2048: accepted in {:.1}s, all at smtp-sink in {:.1}s; \
         sink files {}, distinct Message-Ids {}",
        sent_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        got.len(),
        ids.len()
    );
    assert_eq!(got.len(), MESSAGES, "relay log:\n{}", relay.log_text());
    assert_eq!(ids.len(), MESSAGES, "duplicates or missing Message-Ids");
}

/// A relay that routes `sink.test` to `port` (trusting loopback, so a
/// plain session relays) with metrics on; and its metrics endpoint.
fn relay_to(port: u16) -> (Relay, tempfile::TempDir, SocketAddr) {
    let (relay, tmp) = Relay::start(&format!(
        "[relay]\nnetworks = [\"127.0.0.1\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [delivery]\ntls = \"never\"\nfirst_retry_secs = 1\n\
         [delivery.routes]\n\"sink.test\" = \"127.0.0.1:{port}\"\n"
    ));
    let metrics = endpoint(&relay.startup_line, "metrics");
    (relay, tmp, metrics)
}

/// From the local mailbox `alice@localhost` (so any DSN lands in its
/// Maildir) to each `RCPT TO:` argument (path and DSN parameters).
fn send_with_rcpt_args(relay: &Relay, id: &str, rcpts: &[&str]) {
    let mut c = Client::greeted(relay.mx);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.lines.iter().any(|l| l == "DSN"), "{ehlo:?}");
    assert_eq!(c.cmd("MAIL FROM:<alice@localhost>").code, 250);
    for r in rcpts {
        let reply = c.cmd(&format!("RCPT TO:{r}"));
        assert_eq!(reply.code, 250, "{r}: {reply:?}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(id, "alice@localhost", "asked@sink.test", "x"));
    c.send_raw(b".\r\n");
    let r = c.reply().unwrap();
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT");
}

/// Wait until the spool is empty: the message is done with, and any DSN
/// it caused (spooled before the message is removed) is in a Maildir.
fn wait_queue_empty(relay: &Relay, metrics: SocketAddr) {
    let empty = wait_until(Duration::from_secs(30), || {
        sample(
            &scrape(metrics),
            "portcullis_queue_messages{state=\"active\"}",
        ) == 0.0
    });
    assert!(empty, "queue not empty; log:\n{}", relay.log_text());
}

/// The `X-Rcpt-Args:` records of smtp-sink's dump of the message `id`
/// (waits for the dump to hold its `Message-ID`).
fn rcpt_args_seen(dump: &Path, id: &str) -> Vec<String> {
    let needle = format!("<{id}@test.portcullis>");
    let mut found = Vec::new();
    let seen = wait_until(Duration::from_secs(30), || {
        found = dump_files(dump)
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned())
            .filter(|t| t.contains(&needle))
            .collect();
        !found.is_empty()
    });
    assert!(seen, "smtp-sink never got {id}");
    assert_eq!(found.len(), 1, "{id} delivered twice: {found:?}");
    found[0]
        .lines()
        .filter_map(|l| l.strip_prefix("X-Rcpt-Args: "))
        .map(str::to_owned)
        .collect()
}

/// Relayed to a next hop that does not announce DSN (`smtp-sink -N`): the
/// recipient that asked `NOTIFY=SUCCESS` is reported `Action: relayed`,
/// in exactly one DSN to the sender; the one that did not ask is not in
/// it. Both count as delivered.
#[test]
fn notify_success_relayed_to_a_next_hop_without_dsn_gets_one_relayed_dsn() {
    if !have_tool("smtp-sink") {
        return;
    }
    let dump = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dump.path(), &["-N"]);
    let (relay, _tmp, metrics) = relay_to(sink.port);
    send_with_rcpt_args(
        &relay,
        "relayed-dsn-1",
        &[
            "<asked@sink.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;asked@sink.test",
            "<quiet@sink.test>",
        ],
    );
    let args = rcpt_args_seen(dump.path(), "relayed-dsn-1");
    assert_eq!(
        args,
        ["<asked@sink.test>", "<quiet@sink.test>"],
        "no DSN parameters to a server without DSN"
    );
    let dsn = relay.wait_maildir("localhost", "alice", 1, Duration::from_secs(30));
    assert_eq!(dsn.len(), 1, "no relayed DSN; log:\n{}", relay.log_text());
    wait_queue_empty(&relay, metrics);
    let dsn = relay.maildir("localhost", "alice");
    assert_eq!(
        dsn.len(),
        1,
        "more than one DSN; log:\n{}",
        relay.log_text()
    );
    let text = String::from_utf8_lossy(&dsn[0]);
    assert!(text.contains("Return-Path: <>"), "{text}");
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(
        text.contains(
            "Original-Recipient: rfc822; asked@sink.test\r\n\
             Final-Recipient: rfc822; asked@sink.test\r\n\
             Action: relayed\r\nStatus: 2.0.0\r\n"
        ),
        "{text}"
    );
    assert_eq!(text.matches("Action: ").count(), 1, "{text}");
    assert!(!text.contains("quiet@sink.test"), "{text}");
    let m = scrape(metrics);
    let outcome = |o: &str| {
        sample(
            &m,
            &format!("portcullis_delivery_outcomes_total{{outcome=\"{o}\"}}"),
        )
    };
    assert_eq!(
        outcome("delivered"),
        3.0,
        "two recipients and the DSN:\n{m}"
    );
    assert_eq!(outcome("other"), 0.0, "{m}");
}

/// Relayed to a next hop that announces DSN (`smtp-sink`): it gets
/// `NOTIFY=SUCCESS` and owes the notice, so the relay sends none; the
/// recipient counts as delivered.
#[test]
fn notify_success_to_a_dsn_next_hop_is_passed_on_and_no_dsn_is_sent() {
    if !have_tool("smtp-sink") {
        return;
    }
    let dump = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dump.path(), &[]);
    let (relay, _tmp, metrics) = relay_to(sink.port);
    send_with_rcpt_args(
        &relay,
        "passed-on-1",
        &["<asked@sink.test> NOTIFY=SUCCESS ORCPT=rfc822;asked@sink.test"],
    );
    let args = rcpt_args_seen(dump.path(), "passed-on-1");
    assert_eq!(
        args,
        ["<asked@sink.test> NOTIFY=SUCCESS ORCPT=rfc822;asked@sink.test"]
    );
    wait_queue_empty(&relay, metrics);
    assert_eq!(
        relay.maildir("localhost", "alice").len(),
        0,
        "a DSN although the next hop took NOTIFY; log:\n{}",
        relay.log_text()
    );
    let m = scrape(metrics);
    assert_eq!(
        sample(
            &m,
            "portcullis_delivery_outcomes_total{outcome=\"delivered\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "portcullis_delivery_outcomes_total{outcome=\"other\"}"),
        0.0,
        "{m}"
    );
    assert!(
        relay
            .log_text()
            .contains("<asked@sink.test>=delivered/notify-passed-on"),
        "{}",
        relay.log_text()
    );
}
