//! Postfix's test tools against the relay: `smtp-source` (20 parallel
//! sessions) into the MX port, relayed to `smtp-sink` as the next hop.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Relay, have_tool, is_root, message_id, tool_path};

#[test]
fn smtp_source_to_relay_to_smtp_sink() {
    if !have_tool("smtp-source") || !have_tool("smtp-sink") {
        return;
    }
    const MESSAGES: usize = 300;
    let dump = tempfile::tempdir().unwrap();
    // smtp-sink drops privileges to -u when run as root; let it write.
    Command::new("chmod")
        .arg("777")
        .arg(dump.path())
        .status()
        .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut sink = Command::new(tool_path("smtp-sink"));
    if is_root() {
        sink.args(["-u", "nobody"]);
    }
    let mut sink = sink
        .arg("-d")
        .arg(format!("{}/%M.", dump.path().display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dump.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
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
    let _ = sink.kill();
    let _ = sink.wait();
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
