//! The TOML file backend: the whole directory in memory, loaded from text
//! the relay read, replaceable at run time (reload on SIGHUP).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, RwLock};

use portcullis_core::{Address, async_trait};

use crate::account::{Account, AccountId, AuthOutcome};
use crate::directory::AccountDirectory;
use crate::error::AccountError;
use crate::password::{Candidate, HashParams, StoredHash, VerifySlots, decide, decide_blocking};
use crate::record::AccountFile;

/// Accounts from an [`AccountFile`], held in memory.
///
/// Every hash is checked at load: a malformed or non-argon2 hash, an
/// invalid domain or a duplicate account is an [`AccountError`] naming the
/// account, and nothing is loaded. The dummy hash that unknown logins are
/// verified against uses the costliest parameters found in the file (the
/// [`HashParams`] defaults when it has no hash), so an unknown login is
/// never cheaper than a known one.
///
/// The synchronous methods ([`find`](Self::find),
/// [`authenticate_blocking`](Self::authenticate_blocking),
/// [`is_local`](Self::is_local)) are the plain API; the
/// [`AccountDirectory`] impl calls them.
#[derive(Debug)]
pub struct FileDirectory {
    state: RwLock<Arc<Loaded>>,
    slots: VerifySlots,
}

#[derive(Debug)]
struct Loaded {
    accounts: HashMap<AccountId, (Account, Option<StoredHash>)>,
    dummy: StoredHash,
}

impl Loaded {
    fn build(file: &AccountFile) -> Result<Self, AccountError> {
        let mut accounts = HashMap::with_capacity(file.users.len() + file.domains.len());
        let mut costliest: Option<HashParams> = None;
        let mut note = |hash: &StoredHash| {
            let params = hash.params();
            if costliest.is_none_or(|c| params.cost() > c.cost()) {
                costliest = Some(params);
            }
        };
        for user in &file.users {
            let (account, hash) = user.validate()?;
            if let Some(hash) = &hash {
                note(hash);
            }
            insert(&mut accounts, account, hash)?;
        }
        for domain in &file.domains {
            let (account, hash) = domain.validate()?;
            note(&hash);
            insert(&mut accounts, account, Some(hash))?;
        }
        let dummy = StoredHash::dummy(costliest.unwrap_or_default())?;
        Ok(Loaded { accounts, dummy })
    }
}

fn insert(
    accounts: &mut HashMap<AccountId, (Account, Option<StoredHash>)>,
    account: Account,
    hash: Option<StoredHash>,
) -> Result<(), AccountError> {
    let id = account.id.clone();
    if accounts.contains_key(&id) {
        return Err(AccountError::Duplicate(id.key()));
    }
    accounts.insert(id, (account, hash));
    Ok(())
}

impl FileDirectory {
    /// Load from parsed records.
    pub fn from_file(file: &AccountFile) -> Result<Self, AccountError> {
        Ok(FileDirectory {
            state: RwLock::new(Arc::new(Loaded::build(file)?)),
            slots: VerifySlots::default(),
        })
    }

    /// Allow at most `max` password verifications at once through the
    /// async API (default: one per CPU); further AUTHs wait their turn.
    pub fn with_max_concurrent_verifications(mut self, max: usize) -> Self {
        self.slots = VerifySlots::new(max);
        self
    }

    /// Load from the TOML text of an account file.
    pub fn from_toml(text: &str) -> Result<Self, AccountError> {
        Self::from_file(&AccountFile::from_toml(text)?)
    }

    /// Load from a reader yielding the TOML text (e.g. an open file).
    pub fn from_reader(mut reader: impl Read) -> Result<Self, AccountError> {
        let mut text = String::new();
        reader.read_to_string(&mut text)?;
        Self::from_toml(&text)
    }

    /// Replace the accounts with those of `text`. On any error the old
    /// accounts stay in force, so a bad edit never empties the directory.
    pub fn reload_toml(&self, text: &str) -> Result<(), AccountError> {
        self.reload(&AccountFile::from_toml(text)?)
    }

    /// Replace the accounts with `file`'s; on error the old ones stay.
    pub fn reload(&self, file: &AccountFile) -> Result<(), AccountError> {
        let loaded = Arc::new(Loaded::build(file)?);
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded;
        Ok(())
    }

    fn snapshot(&self) -> Arc<Loaded> {
        Arc::clone(
            &self
                .state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Number of accounts (users and domains).
    pub fn len(&self) -> usize {
        self.snapshot().accounts.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The account named by `id`.
    pub fn find(&self, id: &AccountId) -> Option<Account> {
        self.snapshot()
            .accounts
            .get(id)
            .map(|(account, _)| account.clone())
    }

    fn candidate(&self, login: &str) -> (Candidate, StoredHash) {
        let loaded = self.snapshot();
        let found = AccountId::parse(login)
            .ok()
            .and_then(|id| loaded.accounts.get(&id).cloned());
        let candidate = match found {
            Some((account, hash)) => Candidate::Found(Box::new(account), hash),
            None => Candidate::Unknown,
        };
        (candidate, loaded.dummy.clone())
    }

    /// Check a login and password on the calling thread (one argon2
    /// verification: tens of milliseconds of CPU at default cost).
    pub fn authenticate_blocking(&self, login: &str, password: &[u8]) -> AuthOutcome {
        let (candidate, dummy) = self.candidate(login);
        decide(candidate, &dummy, password)
    }

    /// Whether `address` has a user account.
    pub fn is_local(&self, address: &Address) -> bool {
        self.snapshot()
            .accounts
            .contains_key(&AccountId::user(address))
    }
}

#[async_trait]
impl AccountDirectory for FileDirectory {
    async fn lookup(&self, id: &AccountId) -> Result<Option<Account>, AccountError> {
        Ok(self.find(id))
    }

    async fn authenticate(
        &self,
        login: &str,
        password: &[u8],
    ) -> Result<AuthOutcome, AccountError> {
        let (candidate, dummy) = self.candidate(login);
        decide_blocking(&self.slots, candidate, &dummy, password).await
    }

    async fn is_local_recipient(&self, address: &Address) -> Result<bool, AccountError> {
        Ok(self.is_local(address))
    }
}
