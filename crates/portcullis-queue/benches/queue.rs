//! Queue benchmarks, one run so the ratios mean something:
//!
//! * `store/*`: durable stores of 10 KiB messages through [`Spool::store`]
//!   against the bare one-at-a-time floor (`write` + `fsync` + `rename` +
//!   directory `fsync` per message), with 1 and with 64 concurrent writers.
//! * `scheduler/*`: `next_due` + `on_outcome` with 1,000,000 messages
//!   queued over 1,000 destinations; memory per queued message is printed.
//!
//! `cargo bench -p portcullis-queue --bench queue -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_core::{
    Envelope, ForwardPath, MailParams, ManualClock, Recipient, Reply, ReversePath,
};
use portcullis_queue::{
    DeliveryState, Outcome, QueueId, Scheduler, SchedulerConfig, Spool, SpoolConfig,
};

const MESSAGE: usize = 10 * 1024;

fn envelope() -> Envelope {
    let mut env = Envelope::new(
        ReversePath::parse("<alice@example.org>").unwrap(),
        MailParams::default(),
    );
    env.recipients.push(Recipient::new(
        ForwardPath::parse("<bob@example.net>").unwrap(),
    ));
    env
}

fn bare_store(dir: &Path, name: &str, data: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

/// Run `writers` threads doing `iters` operations each; total wall time.
fn concurrent(writers: usize, iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| {
        for w in 0..writers {
            let (barrier, op) = (&barrier, &op);
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    op(w, i);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Scope joins all threads before returning.
        start
    })
    .elapsed()
}

fn store_benches(c: &mut Criterion) {
    let data = vec![b'x'; MESSAGE];
    let env = envelope();
    let base = std::env::temp_dir();
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    for writers in [1usize, 64] {
        g.throughput(Throughput::Elements(writers as u64));
        let spool_dir = tempfile::tempdir_in(&base).unwrap();
        let spool = Spool::open(
            spool_dir.path(),
            SpoolConfig::default(),
            Arc::new(ManualClock::default()),
        )
        .unwrap();
        g.bench_function(format!("spool_{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                concurrent(writers, iters, |_, _| {
                    spool.store(&env, &data).unwrap();
                })
            })
        });
        drop(spool);
        let bare_dir = tempfile::tempdir_in(&base).unwrap();
        let counter = std::sync::atomic::AtomicU64::new(0);
        g.bench_function(format!("bare_write_fsync_rename_{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                concurrent(writers, iters, |w, _| {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    bare_store(bare_dir.path(), &format!("{w}-{n}"), &data);
                })
            })
        });
    }
    g.finish();
}

fn rss_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Memory of the spool's in-memory index per stored message (printed, not
/// timed): RSS growth while storing `N` small messages.
fn spool_index_memory() {
    const N: u64 = 64 * 400;
    let dir = tempfile::tempdir().unwrap();
    let before = rss_bytes();
    let spool = Spool::open(
        dir.path(),
        SpoolConfig::default(),
        Arc::new(ManualClock::default()),
    )
    .unwrap();
    let env = envelope();
    concurrent(64, N / 64, |_, _| {
        spool.store(&env, b"Subject: x\r\n\r\nx\r\n").unwrap();
    });
    let after = rss_bytes();
    let n = spool.len() as u64;
    eprintln!(
        "spool index: {n} messages stored, RSS grew {} bytes per message \
         (envelope with 1 recipient, state, location)",
        after.saturating_sub(before) / n.max(1)
    );
}

fn scheduler_benches(c: &mut Criterion) {
    spool_index_memory();
    const QUEUED: u64 = 1_000_000;
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let domains: Vec<String> = (0..1000).map(|d| format!("d{d}.example")).collect();
    let state = DeliveryState::new(1);
    let before = rss_bytes();
    let mut s = Scheduler::new(SchedulerConfig::default());
    let t = Instant::now();
    for i in 0..QUEUED {
        let dest = std::slice::from_ref(&domains[(i % 1000) as usize]);
        s.enqueue_parts(QueueId(i), start, dest, &state, start);
    }
    let enqueue_time = t.elapsed();
    let after = rss_bytes();
    eprintln!(
        "scheduler: {QUEUED} messages enqueued in {enqueue_time:.2?} ({:.0} enqueues/s); \
         RSS grew {:.1} MiB = {} bytes per queued message",
        QUEUED as f64 / enqueue_time.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
        after.saturating_sub(before) / QUEUED
    );
    let deferred = [Outcome::Deferred(Reply::new(451, (4, 4, 1), "later"))];
    let mut now = start;
    let mut g = c.benchmark_group("scheduler");
    g.throughput(Throughput::Elements(1));
    g.bench_function("next_due_and_deferral_1M_queued", |b| {
        b.iter(|| {
            let d = match s.next_due(now) {
                Some(d) => d,
                None => {
                    // Everything waits for a retry: jump to the next one.
                    now = s.next_wakeup().unwrap();
                    s.next_due(now).unwrap()
                }
            };
            s.on_outcome(&d, &deferred, now);
            while s.poll_event().is_some() {}
        })
    });
    let mut next_id = QUEUED;
    let delivered = [Outcome::Delivered(Reply::new(250, (2, 0, 0), "ok"))];
    g.bench_function("enqueue_deliver_complete_1M_queued", |b| {
        b.iter(|| {
            // A new message at the front of the queue, delivered at once.
            s.enqueue_parts(QueueId(next_id), now, &domains[..1], &state, now);
            next_id += 1;
            let d = s.next_due(now).unwrap();
            s.on_outcome(&d, &delivered, now);
            while s.poll_event().is_some() {}
        })
    });
    g.finish();
    assert!(s.len() as u64 >= QUEUED - 10);
}

criterion_group!(benches, store_benches, scheduler_benches);
criterion_main!(benches);
