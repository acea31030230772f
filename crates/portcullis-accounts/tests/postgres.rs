//! PostgreSQL-only behaviour: migration, admin functions, failures and
//! reconnection. Runs when `DATABASE_URL` is set, each test in a database
//! of its own.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use portcullis_accounts::tokio_postgres::NoTls;
use portcullis_accounts::{
    AccountDirectory, AccountError, AuthDenied, AuthOutcome, PgDirectory, UserRecord,
    hash_password_with,
};

async fn harness() -> Option<(PgHarness, std::sync::Arc<dyn AccountDirectory>)> {
    let mut h = PgHarness::new().await?;
    let dir = h.load(&fixture()).await;
    Some((h, dir))
}

fn pg(h: &PgHarness) -> &PgDirectory {
    h.directory.as_deref().unwrap()
}

#[tokio::test]
async fn migration_is_idempotent_and_safe_concurrently() {
    let Some((h, dir)) = harness().await else {
        return;
    };
    let a = h.db.directory().await;
    let b = h.db.directory().await;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    pg(&h).migrate().await.unwrap();
    // Data survives re-migration.
    assert!(
        dir.lookup(&id("alice@example.org"))
            .await
            .unwrap()
            .is_some()
    );
    h.finish().await;
}

#[tokio::test]
async fn before_migration_lookups_fail_instead_of_missing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = db.directory().await;
    let err = dir.lookup(&id("alice@example.org")).await.unwrap_err();
    assert!(matches!(err, AccountError::Postgres(_)), "{err:?}");
    assert_eq!(err.auth_reply().code(), 454);
    assert!(dir.authenticate("alice@example.org", b"pw").await.is_err());
    assert!(
        dir.is_local_recipient(&addr("alice@example.org"))
            .await
            .is_err()
    );
    drop(dir);
    db.drop_db().await;
}

#[tokio::test]
async fn malformed_hash_is_refused_by_the_admin_functions() {
    let Some((h, dir)) = harness().await else {
        return;
    };
    let record = UserRecord::new(addr("dave@example.org"), Some("$argon2id$nonsense".into()));
    let err = pg(&h).put_user(&record).await.unwrap_err();
    assert!(
        matches!(err, AccountError::MalformedHash { ref account, .. } if account == "dave@example.org"),
        "{err:?}"
    );
    assert!(dir.lookup(&id("dave@example.org")).await.unwrap().is_none());
    let err = pg(&h)
        .set_password_hash(&id("alice@example.org"), Some("plain"))
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::MalformedHash { .. }), "{err:?}");
    h.finish().await;
}

#[tokio::test]
async fn corrupt_rows_are_errors_not_misses() {
    let Some((h, dir)) = harness().await else {
        return;
    };
    // A row written by hand around the admin functions.
    let (client, conn) = h.db.config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO portcullis_user_accounts (address, password_hash) VALUES ('eve@example.org', 'not-a-phc')",
            &[],
        )
        .await
        .unwrap();
    let err = dir.authenticate("eve@example.org", b"x").await.unwrap_err();
    assert!(matches!(err, AccountError::MalformedHash { .. }), "{err:?}");
    // Other accounts are unaffected.
    let ok = dir
        .authenticate("alice@example.org", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert!(matches!(ok, AuthOutcome::Authenticated(_)));
    drop(client);
    h.finish().await;
}

#[tokio::test]
async fn admin_updates_apply_to_the_next_call() {
    let Some((h, dir)) = harness().await else {
        return;
    };
    let admin = pg(&h);
    let alice = id("alice@example.org");

    admin.set_enabled(&alice, false).await.unwrap();
    let out = dir
        .authenticate("alice@example.org", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert_eq!(out, AuthOutcome::Denied(AuthDenied::Disabled));
    admin.set_enabled(&alice, true).await.unwrap();

    let new_hash = hash_password_with("new password", CHEAP).unwrap();
    admin
        .set_password_hash(&alice, Some(&new_hash))
        .await
        .unwrap();
    let out = dir
        .authenticate("alice@example.org", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert_eq!(out, AuthOutcome::Denied(AuthDenied::WrongPassword));
    let out = dir
        .authenticate("alice@example.org", b"new password")
        .await
        .unwrap();
    assert!(matches!(out, AuthOutcome::Authenticated(_)));

    admin.set_password_hash(&alice, None).await.unwrap();
    let out = dir
        .authenticate("alice@example.org", b"new password")
        .await
        .unwrap();
    assert_eq!(out, AuthOutcome::Denied(AuthDenied::WrongPassword));

    let ghost = id("ghost@example.org");
    assert!(
        matches!(admin.set_enabled(&ghost, true).await, Err(AccountError::NoSuchAccount(k)) if k == "ghost@example.org")
    );
    assert!(matches!(
        admin.map_identity(&ghost, &addr("x@y.example")).await,
        Err(AccountError::NoSuchAccount(_))
    ));
    assert!(matches!(
        admin
            .map_identity(&id("nowhere.example"), &addr("x@y.example"))
            .await,
        Err(AccountError::NoSuchAccount(_))
    ));
    h.finish().await;
}

#[tokio::test]
async fn identities_map_unmap_replace_and_cascade() {
    let Some((h, dir)) = harness().await else {
        return;
    };
    let admin = pg(&h);
    let alice = id("alice@example.org");
    let old = addr("alice@old-isp.example");

    admin.map_identity(&alice, &old).await.unwrap();
    admin
        .map_identity(&alice, &addr("ALICE@old-isp.example"))
        .await
        .unwrap(); // idempotent
    assert_eq!(
        dir.lookup(&alice).await.unwrap().unwrap().extra_identities,
        vec![old.clone()]
    );
    assert!(admin.unmap_identity(&alice, &old).await.unwrap());
    assert!(!admin.unmap_identity(&alice, &old).await.unwrap());
    assert!(!dir.may_send_as(&alice, &old).await.unwrap());

    // Domain accounts take identities outside their domain too.
    let net = id("example.net");
    admin
        .map_identity(&net, &addr("billing@partner.example"))
        .await
        .unwrap();
    assert!(
        dir.may_send_as(&net, &addr("billing@partner.example"))
            .await
            .unwrap()
    );

    // put_user replaces the identity list.
    let mut carol = fixture()
        .users
        .into_iter()
        .find(|u| u.address == addr("carol@example.org"))
        .unwrap();
    carol.identities = vec![addr("c1@a.example"), addr("c2@b.example")];
    admin.put_user(&carol).await.unwrap();
    let stored = dir.lookup(&id("carol@example.org")).await.unwrap().unwrap();
    assert_eq!(
        stored.extra_identities,
        vec![addr("c1@a.example"), addr("c2@b.example")]
    );

    // Deleting an account deletes its identities.
    admin.map_identity(&alice, &old).await.unwrap();
    assert!(admin.delete_account(&alice).await.unwrap());
    assert!(!admin.delete_account(&alice).await.unwrap());
    assert!(dir.lookup(&alice).await.unwrap().is_none());
    assert!(
        !dir.is_local_recipient(&addr("alice@example.org"))
            .await
            .unwrap()
    );
    admin
        .put_user(&UserRecord::new(addr("alice@example.org"), None))
        .await
        .unwrap();
    assert!(
        dir.lookup(&alice)
            .await
            .unwrap()
            .unwrap()
            .extra_identities
            .is_empty()
    );
    h.finish().await;
}

#[tokio::test]
async fn reconnects_after_the_server_drops_the_connection() {
    let Some((h, dir)) = harness().await else {
        return;
    };
    assert!(
        dir.lookup(&id("alice@example.org"))
            .await
            .unwrap()
            .is_some()
    );
    // Kill every session on the test database except our own.
    let (client, conn) = h.db.config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty());
    drop(client);
    // The very next call finds the connection gone and reconnects.
    let alice = dir.lookup(&id("alice@example.org")).await.unwrap();
    assert!(alice.is_some());
    assert!(
        dir.is_local_recipient(&addr("alice@example.org"))
            .await
            .unwrap()
    );
    pg(&h)
        .set_enabled(&id("bob@example.org"), true)
        .await
        .unwrap();
    h.finish().await;
}

#[tokio::test]
async fn connect_failure_is_an_error() {
    if std::env::var(DATABASE_URL).is_err() {
        println!("skipping: DATABASE_URL not set");
        return;
    }
    // Nothing listens on port 1 of the loopback.
    let err = PgDirectory::connect("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .unwrap_err();
    assert!(matches!(err, AccountError::Postgres(_)), "{err:?}");
}
