//! argon2 password hashes: hashing new passwords, checking stored PHC
//! strings at load time, and constant-cost verification.

use argon2::{Algorithm, Argon2, Params, Version};
use password_hash::rand_core::OsRng;
use password_hash::{
    PasswordHash, PasswordHashString, PasswordHasher, PasswordVerifier, SaltString,
};
use serde::{Deserialize, Serialize};

use crate::account::{Account, AuthDenied, AuthOutcome};
use crate::error::AccountError;

/// argon2id cost parameters for new hashes and for the dummy hash that
/// unknown accounts are verified against.
///
/// The defaults are the `argon2` crate's (19 MiB, 2 passes, 1 lane: the
/// OWASP minimum for argon2id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// Memory cost in KiB (`m=`).
    pub memory_kib: u32,
    /// Number of passes (`t=`).
    pub iterations: u32,
    /// Degree of parallelism (`p=`).
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl HashParams {
    fn to_argon2(self) -> Result<Params, AccountError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| AccountError::Hash(e.to_string()))
    }

    /// Work per verification, for choosing the costliest of several.
    pub(crate) fn cost(self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }
}

/// Hash `password` with argon2id, the default [`HashParams`] and a random
/// salt; returns the PHC string to store (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    hash_password_with(password, HashParams::default())
}

/// Hash `password` with argon2id and the given parameters.
pub fn hash_password_with(password: &str, params: HashParams) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?);
    let hash = argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// A stored hash that was checked when it was loaded: a PHC string with an
/// argon2 algorithm, valid parameters and an output.
#[derive(Debug, Clone)]
pub(crate) struct StoredHash {
    phc: PasswordHashString,
    params: HashParams,
}

impl StoredHash {
    /// Check a PHC string; `account` names the owner in errors.
    pub(crate) fn parse(account: &str, phc: &str) -> Result<Self, AccountError> {
        let malformed = |reason: String| AccountError::MalformedHash {
            account: account.to_owned(),
            reason,
        };
        let parsed = PasswordHash::new(phc).map_err(|e| malformed(e.to_string()))?;
        if Algorithm::try_from(parsed.algorithm).is_err() {
            return Err(AccountError::UnsupportedHash {
                account: account.to_owned(),
                algorithm: parsed.algorithm.to_string(),
            });
        }
        let params = Params::try_from(&parsed).map_err(|e| malformed(e.to_string()))?;
        if parsed.hash.is_none() {
            return Err(malformed("no hash output".to_owned()));
        }
        if parsed.salt.is_none() {
            return Err(malformed("no salt".to_owned()));
        }
        Ok(StoredHash {
            phc: parsed.serialize(),
            params: HashParams {
                memory_kib: params.m_cost(),
                iterations: params.t_cost(),
                parallelism: params.p_cost(),
            },
        })
    }

    /// A hash of a fixed secret with `params`, verified in place of a real
    /// one so unknown accounts cost as much as known ones.
    pub(crate) fn dummy(params: HashParams) -> Result<Self, AccountError> {
        let salt = SaltString::from_b64("cG9ydGN1bGxpcy1kdW1teQ")
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?);
        let hash = argon
            .hash_password(b"portcullis dummy password", &salt)
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        Ok(StoredHash {
            phc: hash.serialize(),
            params,
        })
    }

    pub(crate) fn params(&self) -> HashParams {
        self.params
    }

    /// Whether `password` matches. The output comparison in `password-hash`
    /// is constant-time; the parameters come from the stored hash.
    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        Argon2::default()
            .verify_password(password, &self.phc.password_hash())
            .is_ok()
    }
}

/// What a backend found for a login, ready to be verified.
pub(crate) enum Candidate {
    /// No account by that name (or the name did not parse).
    Unknown,
    /// An account, with its hash (`None`: the account cannot log in).
    Found(Box<Account>, Option<StoredHash>),
}

/// Verify `password` against the candidate. Exactly one argon2 verification
/// runs on every path, so the time taken does not tell an unknown account
/// from a known one (user enumeration by timing).
pub(crate) fn decide(candidate: Candidate, dummy: &StoredHash, password: &[u8]) -> AuthOutcome {
    match candidate {
        Candidate::Unknown => {
            std::hint::black_box(dummy.verify(password));
            AuthOutcome::Denied(AuthDenied::UnknownAccount)
        }
        Candidate::Found(_, None) => {
            std::hint::black_box(dummy.verify(password));
            AuthOutcome::Denied(AuthDenied::WrongPassword)
        }
        Candidate::Found(account, Some(hash)) => {
            if !hash.verify(password) {
                AuthOutcome::Denied(AuthDenied::WrongPassword)
            } else if !account.enabled {
                // Only a caller who knows the password learns the account is disabled.
                AuthOutcome::Denied(AuthDenied::Disabled)
            } else {
                AuthOutcome::Authenticated(*account)
            }
        }
    }
}

/// Bounds how many argon2 verifications run at once. Each one holds its
/// memory cost (19 MiB at the defaults) for its duration, so an AUTH flood
/// must queue for a slot rather than fill tokio's blocking pool (up to 512
/// threads) and the machine's memory.
#[derive(Debug)]
pub(crate) struct VerifySlots(tokio::sync::Semaphore);

impl VerifySlots {
    /// `max` concurrent verifications (at least one).
    pub(crate) fn new(max: usize) -> Self {
        VerifySlots(tokio::sync::Semaphore::new(max.max(1)))
    }
}

impl Default for VerifySlots {
    /// One slot per available CPU: more cannot make verification faster.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from))
    }
}

/// [`decide`] off the async worker threads when a tokio runtime is running
/// (argon2 takes tens of milliseconds of CPU), inline otherwise; at most as
/// many at once as `slots` allows.
pub(crate) async fn decide_blocking(
    slots: &VerifySlots,
    candidate: Candidate,
    dummy: &StoredHash,
    password: &[u8],
) -> Result<AuthOutcome, AccountError> {
    let _permit = slots
        .0
        .acquire()
        .await
        .map_err(|e| AccountError::Task(e.to_string()))?;
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let dummy = dummy.clone();
            let password = password.to_vec();
            handle
                .spawn_blocking(move || decide(candidate, &dummy, &password))
                .await
                .map_err(|e| AccountError::Task(e.to_string()))
        }
        Err(_) => Ok(decide(candidate, dummy, password)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn hash_then_verify() {
        let phc = hash_password_with("s3cret", CHEAP).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let stored = StoredHash::parse("a@b.example", &phc).unwrap();
        assert!(stored.verify(b"s3cret"));
        assert!(!stored.verify(b"s3cret "));
        assert!(!stored.verify(b""));
        assert_eq!(stored.params(), CHEAP);
    }

    #[test]
    fn salts_differ() {
        let a = hash_password_with("same", CHEAP).unwrap();
        let b = hash_password_with("same", CHEAP).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_and_foreign_hashes_are_typed_errors() {
        for bad in [
            "",
            "plaintext",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$argon2id$v=19$m=x$abc$def",
        ] {
            match StoredHash::parse("a@b.example", bad) {
                Err(AccountError::MalformedHash { account, .. }) => {
                    assert_eq!(account, "a@b.example")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let pbkdf2 = "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            StoredHash::parse("a@b.example", pbkdf2),
            Err(AccountError::UnsupportedHash { .. })
        ));
    }

    /// With every slot taken, a verification waits (deterministically: the
    /// first poll is pending); once a slot frees it runs and answers.
    #[test]
    fn verification_waits_for_a_free_slot() {
        use std::task::{Context, Poll, Waker};
        let slots = VerifySlots::new(1);
        let dummy = StoredHash::dummy(CHEAP).unwrap();
        let held = slots.0.try_acquire().unwrap();
        let mut fut = std::pin::pin!(decide_blocking(&slots, Candidate::Unknown, &dummy, b"pw"));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(held);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(outcome)) => {
                assert_eq!(outcome, AuthOutcome::Denied(AuthDenied::UnknownAccount))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(slots.0.available_permits(), 1);
    }

    #[test]
    fn bad_params_are_an_error_not_a_panic() {
        let zero = HashParams {
            memory_kib: 0,
            iterations: 0,
            parallelism: 0,
        };
        assert!(matches!(
            hash_password_with("x", zero),
            Err(AccountError::Hash(_))
        ));
        assert!(StoredHash::dummy(zero).is_err());
    }
}
