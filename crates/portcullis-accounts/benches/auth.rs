//! Authentication cost with the default argon2id parameters (what an
//! operator's hashes use): a known login with the right and a wrong
//! password, and an unknown login, which must cost the same. Lookups on
//! the file backend and, when `DATABASE_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_accounts::tokio_postgres::{Config, NoTls};
use portcullis_accounts::{
    AccountDirectory, AccountFile, AccountId, FileDirectory, HashParams, PgDirectory, UserRecord,
    hash_password,
};
use portcullis_core::Address;

fn fixture() -> AccountFile {
    let hash = hash_password("right password").unwrap();
    let users = (0..1000)
        .map(|i| {
            let hash = if i == 0 { Some(hash.clone()) } else { None };
            UserRecord::new(
                Address::parse(&format!("user{i}@example.org")).unwrap(),
                hash,
            )
        })
        .collect();
    AccountFile {
        users,
        domains: vec![],
    }
}

fn file(c: &mut Criterion) {
    let dir = FileDirectory::from_file(&fixture()).unwrap();
    let mut g = c.benchmark_group("file");
    g.sample_size(10);
    g.bench_function("authenticate known, right password", |b| {
        b.iter(|| black_box(dir.authenticate_blocking("user0@example.org", b"right password")))
    });
    g.bench_function("authenticate known, wrong password", |b| {
        b.iter(|| black_box(dir.authenticate_blocking("user0@example.org", b"wrong")))
    });
    g.bench_function("authenticate unknown login", |b| {
        b.iter(|| black_box(dir.authenticate_blocking("ghost@example.org", b"wrong")))
    });
    g.finish();
    let id = AccountId::parse("user500@example.org").unwrap();
    c.bench_function("file/lookup", |b| b.iter(|| black_box(dir.find(&id))));
}

fn postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("skipping postgres benches: DATABASE_URL not set");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("portcullis_bench_{}_{nanos}", std::process::id());
    let admin = rt.block_on(async {
        let (client, conn) = url.parse::<Config>().unwrap().connect(NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        client
    });
    let mut config: Config = url.parse().unwrap();
    config.dbname(&name);
    let dir = rt.block_on(async {
        let dir = PgDirectory::connect_config(config, HashParams::default())
            .await
            .unwrap();
        dir.migrate().await.unwrap();
        for user in fixture().users.iter().take(100) {
            dir.put_user(user).await.unwrap();
        }
        dir
    });
    let id = AccountId::parse("user50@example.org").unwrap();
    let rcpt = Address::parse("user50@example.org").unwrap();
    c.bench_function("postgres/lookup", |b| {
        b.iter(|| rt.block_on(async { black_box(dir.lookup(&id).await.unwrap()) }))
    });
    c.bench_function("postgres/is_local_recipient", |b| {
        b.iter(|| rt.block_on(async { black_box(dir.is_local_recipient(&rcpt).await.unwrap()) }))
    });
    drop(dir);
    rt.block_on(async {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
    });
}

criterion_group!(benches, file, postgres);
criterion_main!(benches);
