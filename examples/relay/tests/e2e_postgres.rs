//! Accounts in PostgreSQL (`accounts.postgres`): AUTH and local recipients
//! come from the database. Runs when `DATABASE_URL` is set (a server and a
//! database in which the test may `CREATE DATABASE`), e.g.
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, Relay, have_tool, message, message_id};
use portcullis_accounts::tokio_postgres::NoTls;
use portcullis_accounts::{PgDirectory, UserRecord};
use portcullis_core::Address;

#[test]
fn postgres_accounts_authenticate_and_receive() {
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        println!("skipping: DATABASE_URL not set");
        return;
    };
    if !have_tool("swaks") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db = format!("portcullis_relay_test_{}_{nanos}", std::process::id());
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("DATABASE_URL has no /dbname");
    let url = format!("{base}/{db}");
    let hash = common::hash_password("pg secret");
    rt.block_on(async {
        let (client, conn) = portcullis_accounts::tokio_postgres::connect(&admin_url, NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let dir = PgDirectory::connect(&url).await.unwrap();
        dir.migrate().await.unwrap();
        dir.put_user(&UserRecord::new(
            Address::parse("pguser@localhost").unwrap(),
            Some(hash.clone()),
        ))
        .await
        .unwrap();
    });

    let (relay, _tmp) = Relay::start(&format!("[accounts]\npostgres = \"{url}\"\n"));

    // A mailbox that exists only in the database is a local recipient.
    let mut c = Client::greeted(relay.mx);
    c.cmd("EHLO world.test");
    c.cmd("MAIL FROM:<someone@world.test>");
    assert_eq!(c.cmd("RCPT TO:<PGuser@localhost>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<nobody@localhost>").enhanced(), "5.1.1");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "pg-1",
        "someone@world.test",
        "pguser@localhost",
        "hi",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    let got = relay.wait_maildir("localhost", "pguser", 1, Duration::from_secs(20));
    assert_eq!(
        message_id(&got[0]).as_deref(),
        Some("<pg-1@test.portcullis>")
    );

    // AUTH against the database.
    let swaks = |pw: &str| {
        Command::new("swaks")
            .args(["--server", &relay.submission.to_string(), "--timeout", "20"])
            .args([
                "--tls",
                "--auth",
                "PLAIN",
                "--auth-user",
                "pguser@localhost",
            ])
            .args(["--auth-password", pw, "--from", "pguser@localhost"])
            .args(["--to", "pguser@localhost"])
            .output()
            .unwrap()
    };
    let bad = swaks("wrong");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("535 5.7.8"));
    let good = swaks("pg secret");
    let t = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{t}");
    assert!(t.contains("235 2.7.0"), "{t}");
    drop(relay);

    rt.block_on(async {
        let (client, conn) = portcullis_accounts::tokio_postgres::connect(&admin_url, NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await;
    });
}
