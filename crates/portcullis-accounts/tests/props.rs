//! Invariants over arbitrary input: logins never panic, canonical names
//! are stable, and authentication of junk is a plain denial.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use portcullis_accounts::{
    AccountId, AuthDenied, AuthOutcome, FileDirectory, HashParams, hash_password_with,
};
use proptest::prelude::*;

static DIRECTORY: LazyLock<FileDirectory> = LazyLock::new(|| {
    let cheap = HashParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let hash = hash_password_with("pw", cheap).unwrap();
    FileDirectory::from_toml(&format!(
        "[[user]]\naddress = \"alice@example.org\"\npassword_hash = \"{hash}\"\n"
    ))
    .unwrap()
});

proptest! {
    #[test]
    fn parse_never_panics_and_keys_are_canonical(login in "\\PC{0,80}") {
        if let Ok(id) = AccountId::parse(&login) {
            let again = AccountId::parse(&id.key()).unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert_eq!(again.key(), id.key());
        }
    }

    #[test]
    fn address_like_logins_fold_case(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}") {
        let login = format!("{local}@{domain}");
        // Dot-atoms may not start/end with or repeat dots; skip those.
        if let Ok(id) = AccountId::parse(&login) {
            let lower = AccountId::parse(&login.to_lowercase()).unwrap();
            prop_assert_eq!(id, lower);
        }
    }

    #[test]
    fn junk_logins_are_denied_not_errors(login in "\\PC{0,80}", password in proptest::collection::vec(any::<u8>(), 0..64)) {
        let outcome = DIRECTORY.authenticate_blocking(&login, &password);
        if AccountId::parse(&login).ok() != Some(AccountId::parse("alice@example.org").unwrap()) {
            prop_assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::UnknownAccount));
        } else if password != b"pw" {
            prop_assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::WrongPassword));
        }
    }
}
