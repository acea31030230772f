//! The TOML file backend: loading, typed errors at load, reload.

use portcullis_accounts::{
    AccountError, AccountFile, AccountId, AuthDenied, AuthOutcome, FileDirectory, HashParams,
    hash_password_with,
};
use portcullis_core::Address;

const CHEAP: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn user_toml(address: &str, hash: &str) -> String {
    format!("[[user]]\naddress = \"{address}\"\npassword_hash = \"{hash}\"\n")
}

#[test]
fn malformed_hash_is_a_typed_error_at_load() {
    let good = hash_password_with("pw", CHEAP).unwrap();
    let truncated = &good[..good.len() - 10];
    for bad in [
        "not-a-hash",
        "$argon2id$v=19$m=64,t=1,p=1",
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdA",
        truncated,
        "",
    ] {
        let text = format!(
            "{}{}",
            user_toml("ok@example.org", &good),
            user_toml("Broken@Example.org", bad)
        );
        match FileDirectory::from_toml(&text) {
            Err(AccountError::MalformedHash { account, reason }) => {
                assert_eq!(account, "broken@example.org", "{bad:?}");
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let domain = "[[domain]]\ndomain = \"example.net\"\npassword_hash = \"$argon2id$garbage\"\n";
    assert!(matches!(
        FileDirectory::from_toml(domain),
        Err(AccountError::MalformedHash { account, .. }) if account == "example.net"
    ));
}

#[test]
fn non_argon2_hash_is_refused() {
    let sha = "$pbkdf2-sha256$i=100000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
    let err = FileDirectory::from_toml(&user_toml("a@example.org", sha)).unwrap_err();
    assert!(
        matches!(&err, AccountError::UnsupportedHash { algorithm, .. } if algorithm == "pbkdf2-sha256"),
        "{err:?}"
    );
    assert!(err.to_string().contains("a@example.org"), "{err}");
}

#[test]
fn unknown_and_wrongly_typed_keys_name_the_key() {
    let hash = hash_password_with("pw", CHEAP).unwrap();
    let typo = format!("[[user]]\naddress = \"a@example.org\"\npasword_hash = \"{hash}\"\n");
    let err = FileDirectory::from_toml(&typo).unwrap_err();
    assert!(matches!(err, AccountError::Parse(_)));
    assert!(err.to_string().contains("pasword_hash"), "{err}");

    let limit = format!(
        "{}limits = {{ messages_per_hour = \"lots\" }}\n",
        user_toml("a@example.org", &hash)
    );
    let err = FileDirectory::from_toml(&limit).unwrap_err();
    assert!(err.to_string().contains("messages_per_hour"), "{err}");

    let negative = format!(
        "{}limits = {{ distinct_recipients_per_day = -1 }}\n",
        user_toml("a@example.org", &hash)
    );
    assert!(matches!(
        FileDirectory::from_toml(&negative),
        Err(AccountError::Parse(_))
    ));

    let top = "[[users]]\naddress = \"a@example.org\"\n";
    assert!(
        FileDirectory::from_toml(top)
            .unwrap_err()
            .to_string()
            .contains("users")
    );
}

#[test]
fn invalid_addresses_and_domains_are_refused() {
    let err = FileDirectory::from_toml("[[user]]\naddress = \"not an address\"\n").unwrap_err();
    assert!(matches!(err, AccountError::Parse(_)), "{err:?}");
    let err =
        FileDirectory::from_toml("[[user]]\naddress = \"a@example.org\"\nidentities = [\"@@\"]\n")
            .unwrap_err();
    assert!(matches!(err, AccountError::Parse(_)), "{err:?}");
    let hash = hash_password_with("pw", CHEAP).unwrap();
    let domain = format!("[[domain]]\ndomain = \"bad domain\"\npassword_hash = \"{hash}\"\n");
    assert!(matches!(
        FileDirectory::from_toml(&domain),
        Err(AccountError::InvalidAddress { value, .. }) if value == "bad domain"
    ));
}

#[test]
fn duplicate_accounts_are_refused_even_when_spelled_differently() {
    let text = "[[user]]\naddress = \"a@example.org\"\n[[user]]\naddress = \"A@EXAMPLE.org\"\n";
    assert!(matches!(
        FileDirectory::from_toml(text),
        Err(AccountError::Duplicate(key)) if key == "a@example.org"
    ));
    let hash = hash_password_with("pw", CHEAP).unwrap();
    let domains = format!(
        "[[domain]]\ndomain = \"bücher.example\"\npassword_hash = \"{hash}\"\n\
         [[domain]]\ndomain = \"xn--bcher-kva.example\"\npassword_hash = \"{hash}\"\n"
    );
    assert!(matches!(
        FileDirectory::from_toml(&domains),
        Err(AccountError::Duplicate(_))
    ));
}

#[test]
fn a_failed_reload_keeps_the_old_accounts() {
    let hash = hash_password_with("pw", CHEAP).unwrap();
    let dir = FileDirectory::from_toml(&user_toml("a@example.org", &hash)).unwrap();
    assert_eq!(dir.len(), 1);
    assert!(
        dir.reload_toml(&user_toml("b@example.org", "garbage"))
            .is_err()
    );
    assert!(
        dir.find(&AccountId::parse("a@example.org").unwrap())
            .is_some()
    );
    assert!(matches!(
        dir.authenticate_blocking("a@example.org", b"pw"),
        AuthOutcome::Authenticated(_)
    ));

    dir.reload_toml(&user_toml("b@example.org", &hash)).unwrap();
    assert!(
        dir.find(&AccountId::parse("a@example.org").unwrap())
            .is_none()
    );
    assert_eq!(
        dir.authenticate_blocking("a@example.org", b"pw"),
        AuthOutcome::Denied(AuthDenied::UnknownAccount)
    );
    assert!(dir.is_local(&Address::parse("b@example.org").unwrap()));
}

#[test]
fn reads_from_a_reader_and_an_empty_file() {
    let hash = hash_password_with("pw", CHEAP).unwrap();
    let text = user_toml("a@example.org", &hash);
    let dir = FileDirectory::from_reader(text.as_bytes()).unwrap();
    assert!(matches!(
        dir.authenticate_blocking("a@example.org", b"pw"),
        AuthOutcome::Authenticated(_)
    ));

    let empty = FileDirectory::from_toml("").unwrap();
    assert!(empty.is_empty());
    assert_eq!(
        empty.authenticate_blocking("a@example.org", b"pw"),
        AuthOutcome::Denied(AuthDenied::UnknownAccount)
    );
}

#[test]
fn toml_round_trip_keeps_every_field() {
    let hash = hash_password_with("pw", CHEAP).unwrap();
    let text = format!(
        "[[user]]\naddress = \"a@example.org\"\npassword_hash = \"{hash}\"\nenabled = false\n\
         identities = [\"old@isp.example\"]\n\
         limits = {{ messages_per_minute = 1, messages_per_hour = 2, recipients_per_minute = 3, \
         recipients_per_hour = 6, distinct_recipients_per_day = 7, \
         invalid_recipients_per_day = 4, max_message_size = 5 }}\n\
         [[domain]]\ndomain = \"example.net\"\npassword_hash = \"{hash}\"\n"
    );
    let file = AccountFile::from_toml(&text).unwrap();
    assert!(!file.users[0].enabled);
    assert_eq!(file.users[0].limits.max_message_size, Some(5));
    assert_eq!(file.users[0].limits.invalid_recipients_per_day, Some(4));
    assert_eq!(file.users[0].limits.recipients_per_minute, Some(3));
    assert_eq!(file.users[0].limits.recipients_per_hour, Some(6));
    assert_eq!(file.users[0].limits.distinct_recipients_per_day, Some(7));
    assert_eq!(
        AccountFile::from_toml(&file.to_toml().unwrap()).unwrap(),
        file
    );
}

/// An unknown login must cost one argon2 verification, like a known one:
/// otherwise response time tells which accounts exist. The logins are
/// timed in alternation (so load on the shared machine hits all of them
/// alike) and the fastest of 11 runs is compared, which is what the work
/// itself costs. A missing dummy verification makes an unknown login
/// about 1000 times faster, far outside the bounds.
#[test]
#[allow(clippy::disallowed_methods)]
fn unknown_logins_cost_as_much_as_known_ones() {
    use std::time::{Duration, Instant};
    let params = HashParams {
        memory_kib: 2048,
        iterations: 1,
        parallelism: 1,
    };
    let hash = hash_password_with("right", params).unwrap();
    let text = format!(
        "{}[[user]]\naddress = \"nopass@example.org\"\n",
        user_toml("known@example.org", &hash)
    );
    let dir = FileDirectory::from_toml(&text).unwrap();
    let logins = [
        "known@example.org",
        "unknown@example.org",
        "nopass@example.org",
        "not a login",
    ];
    let mut fastest = [Duration::MAX; 4];
    for _ in 0..11 {
        for (login, best) in logins.iter().zip(fastest.iter_mut()) {
            let start = Instant::now();
            let outcome = dir.authenticate_blocking(login, b"wrong");
            *best = (*best).min(start.elapsed());
            assert!(matches!(outcome, AuthOutcome::Denied(_)));
        }
    }
    let known = fastest[0];
    for (login, t) in logins.iter().zip(fastest).skip(1) {
        let ratio = t.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.33..3.0).contains(&ratio),
            "{login}: {t:?} vs known {known:?} (ratio {ratio:.2})"
        );
    }
}

/// With one verification slot, concurrent AUTHs queue and all complete
/// with the right answers (no deadlock, no answer mixed up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifications_queue_for_a_bounded_number_of_slots() {
    use std::sync::Arc;

    use portcullis_accounts::AccountDirectory;
    let hash = hash_password_with("right", CHEAP).unwrap();
    let dir = Arc::new(
        FileDirectory::from_toml(&user_toml("a@example.org", &hash))
            .unwrap()
            .with_max_concurrent_verifications(1),
    );
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let dir = Arc::clone(&dir);
            tokio::spawn(async move {
                let password: &[u8] = if i % 2 == 0 { b"right" } else { b"wrong" };
                (
                    i,
                    dir.authenticate("a@example.org", password).await.unwrap(),
                )
            })
        })
        .collect();
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        if i % 2 == 0 {
            assert!(matches!(outcome, AuthOutcome::Authenticated(_)), "{i}");
        } else {
            assert_eq!(
                outcome,
                AuthOutcome::Denied(AuthDenied::WrongPassword),
                "{i}"
            );
        }
    }
}
