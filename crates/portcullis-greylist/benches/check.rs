//! Greylist checks per second over the memory and redb stores preloaded with
//! `GREYLIST_BENCH_N` passed triplets (default 1,000,000), and memory per
//! entry. Floors: the store's own `get` of the same key (what a check costs
//! beyond the store is normalisation, key building and the client lookup).
//!
//! cargo bench -p portcullis-greylist --bench check -- --warm-up-time 1 --measurement-time 3

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis_greylist::{
    Greylist, GreylistConfig, GreylistStore, MemoryStore, Record, RedbStore, RedbSync, Space,
    Triplet,
};

const NOW: u64 = 1_767_225_600;

fn entries() -> usize {
    std::env::var("GREYLIST_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Triplet `i`: 65,536 client /24s, 50,000 senders over 1,000 domains, one
/// recipient per triplet.
fn triplet(i: usize) -> Triplet {
    let ip = format!("10.{}.{}.{}", (i >> 8) & 0xff, i & 0xff, (i >> 16) & 0xff);
    Triplet::new(
        ip.parse().unwrap(),
        format!("<sender{}@d{}.example>", i % 50_000, i % 1_000)
            .parse()
            .unwrap(),
        format!("<rcpt{i}@example.net>").parse().unwrap(),
    )
}

fn passed() -> Record {
    Record {
        first_seen: NOW - 3600,
        last_seen: NOW - 60,
        count: 1,
        flag: false,
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn bench(c: &mut Criterion) {
    let n = entries();
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    let config = GreylistConfig::default();
    let keyer = Greylist::new(Arc::new(MemoryStore::new()), config.clone());
    let keys: Vec<String> = (0..n).map(|i| keyer.key(&triplet(i))).collect();
    let expires = NOW + 35 * 86_400;
    // Checks go to a fixed pseudo-random sample of the loaded triplets.
    let sample: Vec<(Triplet, String)> = (0..4096)
        .map(|j| {
            let i = (j * 2_654_435_761usize) % n;
            (triplet(i), keys[i].clone())
        })
        .collect();

    // Memory store.
    let before = rss_bytes();
    let memory = Arc::new(MemoryStore::new());
    for k in &keys {
        memory
            .put(Space::Triplet, k, passed(), NOW, expires)
            .unwrap();
    }
    let after = rss_bytes();
    let key_bytes: usize = keys.iter().map(String::len).sum::<usize>() / n;
    eprintln!(
        "memory store: {n} triplets, RSS +{} MiB, {} bytes/entry (mean key {key_bytes} bytes)",
        (after - before) >> 20,
        (after - before) / n as u64
    );

    // Every sampled client network passed within the last hour, as in a
    // steady state: a check of a known triplet is then read-only (the
    // auto-whitelist counts at most one pass per network per hour).
    let client = Record {
        first_seen: NOW - 86_400,
        last_seen: NOW - 60,
        count: 1,
        flag: false,
    };
    let networks: Vec<String> = {
        let mut v: Vec<String> = sample
            .iter()
            .map(|(_, k)| k.split('\t').next().unwrap_or_default().to_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for net in &networks {
        memory
            .put(Space::Client, net, client, NOW, expires)
            .unwrap();
    }

    // redb store, loaded in transactions of 100,000.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.redb");
    {
        let redb = RedbStore::open(&path).unwrap();
        for chunk in keys.chunks(100_000) {
            redb.put_many(
                chunk
                    .iter()
                    .map(|k| (Space::Triplet, k.as_str(), passed(), expires)),
            )
            .unwrap();
        }
        redb.put_many(
            networks
                .iter()
                .map(|k| (Space::Client, k.as_str(), client, expires)),
        )
        .unwrap();
    }
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "redb store: {n} triplets, file {} MiB, {} bytes/entry on disk",
        file >> 20,
        file / n as u64
    );

    let mut g = c.benchmark_group("greylist");
    let mut run =
        |name: &str, greylist: &Greylist, store: &dyn GreylistStore, fresh: &mut usize| {
            let mut j = 0;
            g.bench_function(format!("{name}/check_known_triplet"), |b| {
                b.iter(|| {
                    j = (j + 1) % sample.len();
                    black_box(greylist.check(&sample[j].0, at))
                })
            });
            let mut j = 0;
            g.bench_function(format!("{name}/floor_store_get"), |b| {
                b.iter(|| {
                    j = (j + 1) % sample.len();
                    black_box(store.get(Space::Triplet, &sample[j].1, NOW).unwrap())
                })
            });
            g.bench_function(format!("{name}/check_new_triplet"), |b| {
                b.iter_batched(
                    || {
                        *fresh += 1;
                        triplet(*fresh)
                    },
                    |t| black_box(greylist.check(&t, at)),
                    BatchSize::SmallInput,
                )
            });
        };
    let mut fresh = n;
    run(
        "memory",
        &Greylist::new(memory.clone(), config.clone()),
        memory.as_ref(),
        &mut fresh,
    );
    {
        let redb = Arc::new(RedbStore::open(&path).unwrap());
        let greylist = Greylist::new(redb.clone(), config.clone());
        run("redb", &greylist, redb.as_ref(), &mut fresh);
    }
    {
        // The same file with writes made durable by periodic flushes.
        let redb = Arc::new(RedbStore::open_with(&path, RedbSync::OnFlush).unwrap());
        let greylist = Greylist::new(redb.clone(), config);
        run("redb_on_flush", &greylist, redb.as_ref(), &mut fresh);
        redb.flush().unwrap();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
