//! Crash safety of the redb store: a child process (this test binary run
//! again) writes entries and reports each write that returned; the parent
//! kills it with SIGKILL mid-stream, reopens the file, and finds every
//! reported entry.

#![cfg(feature = "redb")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use portcullis_greylist::{GreylistStore, Record, RedbStore, Space};

const CHILD_ENV: &str = "PORTCULLIS_GREYLIST_CRASH_DB";
const NOW: u64 = 1_767_225_600;
const KILL_AFTER: usize = 200;

fn record(i: u64) -> Record {
    Record {
        first_seen: NOW + i,
        last_seen: NOW + i,
        count: 1,
        flag: i.is_multiple_of(2),
    }
}

/// The child's work; a no-op unless started by the parent test below.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = RedbStore::open(&path).unwrap();
    // Written straight to fd 1, past the test harness's capture.
    let mut out = std::io::stdout().lock();
    // Bounded so a child the parent fails to kill still ends by itself.
    for i in 0..20_000u64 {
        store
            .put(
                Space::Triplet,
                &format!("crash:{i}"),
                record(i),
                NOW,
                NOW + 86_400,
            )
            .unwrap();
        writeln!(out, "acked {i}").unwrap();
        out.flush().unwrap();
    }
}

#[cfg(unix)]
#[test]
fn acknowledged_writes_survive_sigkill() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    let mut killed = false;
    // After the kill, keep draining: lines already in the pipe were
    // acknowledged before the child died.
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("acked ") {
            acked.push(n.parse::<u64>().unwrap());
            if acked.len() == KILL_AFTER && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child finished or failed before {KILL_AFTER} writes: {status:?}"
    );
    assert_eq!(status.signal(), Some(9), "the child died by SIGKILL");
    assert!(acked.len() >= KILL_AFTER);

    let store = RedbStore::open(&path).unwrap();
    for i in &acked {
        assert_eq!(
            store
                .get(Space::Triplet, &format!("crash:{i}"), NOW)
                .unwrap(),
            Some(record(*i)),
            "acknowledged write {i} of {} lost",
            acked.len()
        );
    }
}
