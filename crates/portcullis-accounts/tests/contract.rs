//! One contract, two backends: every case below runs against the TOML file
//! backend and against PostgreSQL (when `DATABASE_URL` is set) with the
//! same assertions.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use portcullis_accounts::{AccountLimits, AuthDenied, AuthOutcome, Identity};
use portcullis_core::Domain;

async fn right_password(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    let outcome = dir
        .authenticate("alice@example.org", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    let AuthOutcome::Authenticated(account) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(account.id, id("alice@example.org"));
    assert!(account.enabled);
    assert_eq!(account.limits, alice_limits());
    // Logins compare canonically: case of local part and domain does not matter.
    let outcome = dir
        .authenticate("ALICE@Example.ORG", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert!(matches!(outcome, AuthOutcome::Authenticated(a) if a.id == id("alice@example.org")));
}

async fn wrong_password(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    for wrong in [
        "",
        "correct horse battery stapl",
        "Correct horse battery staple",
        BOB_PASSWORD,
    ] {
        let outcome = dir
            .authenticate("alice@example.org", wrong.as_bytes())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            AuthOutcome::Denied(AuthDenied::WrongPassword),
            "{wrong:?}"
        );
    }
    // Another account's password is no key to this one (carol shares bob's hash input).
    let outcome = dir
        .authenticate("carol@example.org", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::WrongPassword));
}

async fn unknown_user(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    for login in [
        "mallory@example.org",
        "alice@example.com",
        "example.org",
        "",
        "not an address@@",
        "a\r\nb",
    ] {
        let outcome = dir
            .authenticate(login, ALICE_PASSWORD.as_bytes())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            AuthOutcome::Denied(AuthDenied::UnknownAccount),
            "{login:?}"
        );
    }
    assert_eq!(dir.lookup(&id("mallory@example.org")).await.unwrap(), None);
    assert_eq!(dir.lookup(&id("example.com")).await.unwrap(), None);
    assert!(
        dir.allowed_identities(&id("mallory@example.org"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !dir.may_send_as(&id("mallory@example.org"), &addr("mallory@example.org"))
            .await
            .unwrap()
    );
}

async fn disabled_account(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    let outcome = dir
        .authenticate("bob@example.org", BOB_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::Disabled));
    // A wrong password does not learn that the account is disabled.
    let outcome = dir.authenticate("bob@example.org", b"guess").await.unwrap();
    assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::WrongPassword));
    let bob = dir.lookup(&id("bob@example.org")).await.unwrap().unwrap();
    assert!(!bob.enabled);
    assert_eq!(bob.limits, AccountLimits::default());
}

async fn account_without_password_cannot_log_in(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    for password in ["", "postmaster", ALICE_PASSWORD] {
        let outcome = dir
            .authenticate("postmaster@example.org", password.as_bytes())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            AuthOutcome::Denied(AuthDenied::WrongPassword),
            "{password:?}"
        );
    }
}

async fn domain_account_covers_any_user_of_the_domain(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    let outcome = dir
        .authenticate("Example.NET", DOMAIN_PASSWORD.as_bytes())
        .await
        .unwrap();
    let AuthOutcome::Authenticated(account) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(account.id, id("example.net"));
    assert_eq!(account.limits.messages_per_hour, Some(1000));
    for from in [
        "anyone@example.net",
        "Billing@EXAMPLE.NET",
        "a.b+c@example.net",
    ] {
        assert!(account.may_send_as(&addr(from)), "{from}");
        assert!(
            dir.may_send_as(&account.id, &addr(from)).await.unwrap(),
            "{from}"
        );
    }
    for from in [
        "anyone@example.org",
        "anyone@sub.example.net",
        "anyone@example.network",
    ] {
        assert!(!account.may_send_as(&addr(from)), "{from}");
    }
    assert_eq!(
        dir.allowed_identities(&account.id).await.unwrap(),
        vec![Identity::AnyInDomain(Domain::parse("example.net").unwrap())]
    );
    // The domain account is its own login; it is not a password for user logins.
    let outcome = dir
        .authenticate("someone@example.net", DOMAIN_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::UnknownAccount));
    let outcome = dir
        .authenticate("example.net", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::WrongPassword));
}

async fn identity_allowed_only_after_admin_maps_it(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    let alice = id("alice@example.org");
    let old = addr("alice@old-isp.example");
    assert!(!dir.may_send_as(&alice, &old).await.unwrap());
    assert!(
        dir.may_send_as(&alice, &addr("Alice@example.org"))
            .await
            .unwrap()
    );
    assert_eq!(
        dir.allowed_identities(&alice).await.unwrap(),
        vec![Identity::Mailbox(addr("alice@example.org"))]
    );

    h.map_identity(&alice, &addr("Alice@OLD-ISP.example")).await;

    assert!(dir.may_send_as(&alice, &old).await.unwrap());
    assert!(
        dir.may_send_as(&alice, &addr("alice@example.org"))
            .await
            .unwrap()
    );
    assert_eq!(
        dir.allowed_identities(&alice).await.unwrap(),
        vec![
            Identity::Mailbox(addr("alice@example.org")),
            Identity::Mailbox(old.clone())
        ]
    );
    // The mapping is alice's alone.
    assert!(
        !dir.may_send_as(&id("carol@example.org"), &old)
            .await
            .unwrap()
    );
    let outcome = dir
        .authenticate("alice@example.org", ALICE_PASSWORD.as_bytes())
        .await
        .unwrap();
    assert!(matches!(outcome, AuthOutcome::Authenticated(a) if a.may_send_as(&old)));
    // carol's identity came with the fixture.
    let carol = dir.lookup(&id("carol@example.org")).await.unwrap().unwrap();
    assert_eq!(carol.extra_identities, vec![addr("carol@previous.example")]);
}

async fn local_recipients(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    for local in [
        "alice@example.org",
        "ALICE@example.ORG",
        "bob@example.org",
        "postmaster@example.org",
    ] {
        assert!(
            dir.is_local_recipient(&addr(local)).await.unwrap(),
            "{local}"
        );
    }
    // Unknown mailboxes, domain-account domains and FROM identities are not recipients.
    for other in [
        "nobody@example.org",
        "anyone@example.net",
        "carol@previous.example",
        "alice@example.com",
    ] {
        assert!(
            !dir.is_local_recipient(&addr(other)).await.unwrap(),
            "{other}"
        );
    }
}

async fn concurrent_authentications(h: &mut dyn Harness) {
    let dir = h.load(&fixture()).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let dir = std::sync::Arc::clone(&dir);
        tasks.push(tokio::spawn(async move {
            let (login, password) = match i % 3 {
                0 => ("alice@example.org", ALICE_PASSWORD),
                1 => ("alice@example.org", "wrong"),
                _ => ("ghost@example.org", ALICE_PASSWORD),
            };
            (
                i,
                dir.authenticate(login, password.as_bytes()).await.unwrap(),
            )
        }));
    }
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        match i % 3 {
            0 => assert!(
                matches!(outcome, AuthOutcome::Authenticated(_)),
                "{i}: {outcome:?}"
            ),
            1 => assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::WrongPassword)),
            _ => assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::UnknownAccount)),
        }
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod file_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let mut harness = super::FileHarness::default();
                    super::$case(&mut harness).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(mut harness) = super::PgHarness::new().await else { return };
                    super::$case(&mut harness).await;
                    harness.finish().await;
                }
            )*
        }
    };
}

contract!(
    right_password,
    wrong_password,
    unknown_user,
    disabled_account,
    account_without_password_cannot_log_in,
    domain_account_covers_any_user_of_the_domain,
    identity_allowed_only_after_admin_maps_it,
    local_recipients,
    concurrent_authentications,
);
