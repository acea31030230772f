//! Crash test: a child process (this test binary, re-invoked with an
//! environment variable) stores, updates and removes messages from several
//! threads and prints an acknowledgement after each call returns. The
//! parent SIGKILLs it at a random moment, reopens the spool and checks:
//! every acknowledged store is present and intact, every acknowledged
//! removal stays removed, and every message present is whole (nothing
//! partial would be delivered). Repeated `PORTCULLIS_CRASH_ROUNDS` times
//! (default 15, well under a minute; run with e.g. 300 locally).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_core::{Envelope, ForwardPath, MailParams, Recipient, ReversePath, SystemClock};
use portcullis_queue::{QueueId, RecipientStatus, Spool, SpoolConfig};

const CHILD_ENV: &str = "PORTCULLIS_QUEUE_CRASH_CHILD";

fn config() -> SpoolConfig {
    // Small segments so rotation and reclamation happen under the knife too.
    SpoolConfig::default().with_max_segment_bytes(256 << 10)
}

/// Deterministic message for sequence number `n`: the parent rebuilds it.
fn body(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let len = 200 + (x % 12_000) as usize;
    let mut out = format!("X-Seq: {n}\r\n\r\n").into_bytes();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(b'a' + (x % 26) as u8);
        if out.len() % 78 == 0 {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn seq_of(message: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(message.get(7..40)?).ok()?;
    s.split("\r\n").next()?.parse().ok()
}

fn envelope() -> Envelope {
    let mut env = Envelope::new(
        ReversePath::parse("<a@example.org>").unwrap(),
        MailParams::default(),
    );
    env.recipients.push(Recipient::new(
        ForwardPath::parse("<b@example.net>").unwrap(),
    ));
    env
}

fn child(dir: &str) {
    let spool = Spool::open(dir, config(), Arc::new(SystemClock)).unwrap();
    let next = Arc::new(AtomicU64::new(
        std::env::var("SEQ_BASE").unwrap().parse().unwrap(),
    ));
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..6 {
            let spool = spool.clone();
            let next = next.clone();
            s.spawn(move || {
                let env = envelope();
                let mut mine: Vec<QueueId> = Vec::new();
                let mut i = 0u64;
                while started.elapsed() < Duration::from_secs(30) {
                    i += 1;
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let id = spool.store(&env, &body(n)).unwrap();
                    println!("ACK S {id} {n}");
                    mine.push(id);
                    if i.is_multiple_of(3) {
                        let id = mine.remove(0);
                        // Announce first: a removal that returns but is
                        // killed before its ACK may legitimately be gone.
                        println!("WILL R {id}");
                        std::io::stdout().flush().unwrap();
                        spool.remove(id).unwrap();
                        println!("ACK R {id}");
                    } else if i % 5 == t % 5 {
                        let id = mine[mine.len() - 1];
                        let mut st = spool.inspect(id).unwrap().state;
                        st.recipients[0].attempts = 7;
                        spool.set_state(id, &st).unwrap();
                        println!("ACK U {id}");
                    }
                    std::io::stdout().flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn crash_many_times() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let rounds: u32 = std::env::var("PORTCULLIS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_owned();
    let started = Instant::now();
    let mut stored: HashMap<QueueId, u64> = HashMap::new();
    let mut removed: HashSet<QueueId> = HashSet::new();
    let mut updated: HashSet<QueueId> = HashSet::new();
    let mut may_be_removed: HashSet<QueueId> = HashSet::new();
    let mut seq_base = 0u64;
    let mut rng = 0x1234_5678_9abc_def0u64 ^ u64::from(std::process::id());
    let (mut total_acks, mut truncated_rounds) = (0usize, 0u32);
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_many_times",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .env("SEQ_BASE", seq_base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // Only whole lines count: a line cut by the kill is no acknowledgement.
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).split(b'\n') {
                match line {
                    Ok(l) => lines.push(String::from_utf8_lossy(&l).into_owned()),
                    Err(_) => break,
                }
            }
            lines
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Let it open the spool (recovery) and write for a random while.
        std::thread::sleep(Duration::from_millis(60 + rng % 250));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for line in &lines {
            let mut parts = line.split(' ');
            match parts.next() {
                Some("ACK") => {}
                Some("WILL") => {
                    parts.next();
                    may_be_removed.insert(parts.next().unwrap().parse::<QueueId>().unwrap());
                    continue;
                }
                _ => continue,
            }
            total_acks += 1;
            let kind = parts.next().unwrap();
            let id: QueueId = parts.next().unwrap().parse().unwrap();
            match kind {
                "S" => {
                    let n: u64 = parts.next().unwrap().parse().unwrap();
                    stored.insert(id, n);
                    seq_base = seq_base.max(n + 1);
                }
                "R" => {
                    removed.insert(id);
                }
                "U" => {
                    updated.insert(id);
                }
                other => panic!("unknown ack {other}"),
            }
        }
        // Unacknowledged stores may have used sequence numbers too.
        seq_base += 10_000;

        let spool = Spool::open(&dir, config(), Arc::new(SystemClock)).unwrap();
        if spool.recovery_report().truncated_bytes > 0 {
            truncated_rounds += 1;
        }
        assert!(
            spool.recovery_report().corrupt_files.is_empty(),
            "round {round}: a crash must not look like corruption: {:?}",
            spool.recovery_report()
        );
        for (id, n) in &stored {
            if removed.contains(id) {
                assert!(spool.inspect(*id).is_err(), "round {round}: {id} came back");
                continue;
            }
            if may_be_removed.contains(id) && spool.inspect(*id).is_err() {
                continue;
            }
            let data = spool
                .read(*id)
                .unwrap_or_else(|e| {
                    panic!(
                        "round {round}: acknowledged {id} lost: {e}; in index: {}; {:?}; {} stored, {} live",
                        spool.inspect(*id).is_ok(),
                        spool.recovery_report(),
                        stored.len(),
                        spool.len()
                    )
                });
            assert_eq!(data, body(*n), "round {round}: {id} damaged");
            if updated.contains(id) {
                let st = spool.inspect(*id).unwrap().state;
                assert_eq!(
                    st.recipients[0].attempts, 7,
                    "round {round}: {id} state lost"
                );
                assert_eq!(st.recipients[0].status, RecipientStatus::Pending);
            }
        }
        // Everything present is whole, acknowledged or not.
        for info in spool.list() {
            let data = spool.read(info.id).unwrap();
            let n = seq_of(&data).expect("sequence header");
            assert_eq!(data, body(n), "round {round}: partial message {}", info.id);
        }
        spool.maintain(std::time::SystemTime::now()).unwrap();
        drop(spool);
    }
    let live = stored.len() - removed.len();
    println!(
        "crash test: {rounds} kills in {:.1?}, {total_acks} acknowledged operations, \
         {live} messages live, torn tails discarded in {truncated_rounds} rounds",
        started.elapsed()
    );
    assert!(total_acks > 0, "the child never acknowledged anything");
}
