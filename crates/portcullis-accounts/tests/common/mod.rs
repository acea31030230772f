//! Test harnesses: the same fixture loaded into each backend.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::disallowed_methods,
    clippy::unwrap_used
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_accounts::tokio_postgres::{Config, NoTls};
use portcullis_accounts::{
    AccountDirectory, AccountFile, AccountId, AccountLimits, DomainRecord, FileDirectory,
    HashParams, PgDirectory, UserRecord, hash_password_with,
};
use portcullis_core::{Address, async_trait};

/// Cheap argon2 parameters so debug-build tests stay fast.
pub const CHEAP: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

pub const ALICE_PASSWORD: &str = "correct horse battery staple";
pub const BOB_PASSWORD: &str = "bob's password";
pub const DOMAIN_PASSWORD: &str = "one password for example.net";

static ALICE_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password_with(ALICE_PASSWORD, CHEAP).unwrap());
static BOB_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password_with(BOB_PASSWORD, CHEAP).unwrap());
static DOMAIN_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password_with(DOMAIN_PASSWORD, CHEAP).unwrap());

pub fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

pub fn id(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}

pub fn alice_limits() -> AccountLimits {
    AccountLimits {
        messages_per_minute: Some(10),
        messages_per_hour: Some(100),
        recipients_per_minute: Some(30),
        recipients_per_hour: Some(300),
        distinct_recipients_per_day: Some(500),
        invalid_recipients_per_day: Some(20),
        max_message_size: Some(10 * 1024 * 1024),
    }
}

/// alice (enabled, limits), bob (disabled), postmaster (no password),
/// carol (one identity already mapped), and the domain account example.net.
pub fn fixture() -> AccountFile {
    let mut alice = UserRecord::new(addr("alice@example.org"), Some(ALICE_HASH.clone()));
    alice.limits = alice_limits();
    let mut bob = UserRecord::new(addr("bob@example.org"), Some(BOB_HASH.clone()));
    bob.enabled = false;
    let postmaster = UserRecord::new(addr("postmaster@example.org"), None);
    let mut carol = UserRecord::new(addr("carol@example.org"), Some(BOB_HASH.clone()));
    carol.identities = vec![addr("Carol@Previous.example")];
    let mut domain = DomainRecord::new("example.net", DOMAIN_HASH.clone());
    domain.limits.messages_per_hour = Some(1000);
    AccountFile {
        users: vec![alice, bob, postmaster, carol],
        domains: vec![domain],
    }
}

/// A backend under test, loaded with a fixture, that an "admin" can change.
#[async_trait]
pub trait Harness: Send {
    async fn load(&mut self, file: &AccountFile) -> Arc<dyn AccountDirectory>;
    async fn map_identity(&mut self, account: &AccountId, identity: &Address);
}

/// The file backend: the fixture goes through TOML text, as the relay's would.
#[derive(Default)]
pub struct FileHarness {
    file: AccountFile,
    directory: Option<Arc<FileDirectory>>,
}

#[async_trait]
impl Harness for FileHarness {
    async fn load(&mut self, file: &AccountFile) -> Arc<dyn AccountDirectory> {
        self.file = file.clone();
        let directory = Arc::new(FileDirectory::from_toml(&file.to_toml().unwrap()).unwrap());
        self.directory = Some(Arc::clone(&directory));
        directory
    }

    async fn map_identity(&mut self, account: &AccountId, identity: &Address) {
        // The admin edits the file and the relay reloads it.
        let key = account.key();
        let mut mapped = false;
        for user in &mut self.file.users {
            if AccountId::user(&user.address).key() == key {
                user.identities.push(identity.clone());
                mapped = true;
            }
        }
        for domain in &mut self.file.domains {
            if id(&domain.domain).key() == key {
                domain.identities.push(identity.clone());
                mapped = true;
            }
        }
        assert!(mapped, "no account {key} in the fixture");
        let text = self.file.to_toml().unwrap();
        self.directory.as_ref().unwrap().reload_toml(&text).unwrap();
    }
}

/// The environment variable the PostgreSQL tests read: a URL of a server
/// and a maintenance database in which the test may CREATE DATABASE.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// A database created for one test and dropped after it.
pub struct TestDb {
    admin_url: String,
    pub name: String,
    pub config: Config,
    dropped: bool,
}

impl TestDb {
    /// `None` (after printing why) when `DATABASE_URL` is not set.
    pub async fn create() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var(DATABASE_URL) else {
            println!("skipping: DATABASE_URL not set");
            return None;
        };
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "portcullis_test_{}_{}_{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) = admin_url
            .parse::<Config>()
            .unwrap()
            .connect(NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut config: Config = admin_url.parse().unwrap();
        config.dbname(&name);
        Some(TestDb {
            admin_url,
            name,
            config,
            dropped: false,
        })
    }

    pub async fn directory(&self) -> PgDirectory {
        PgDirectory::connect_config(self.config.clone(), CHEAP)
            .await
            .unwrap()
    }

    /// Drop the database (also done, less tidily, if the test panics).
    pub async fn drop_db(mut self) {
        drop_database(&self.admin_url, &self.name).await;
        self.dropped = true;
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let (client, connection) = admin_url
        .parse::<Config>()
        .unwrap()
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // FORCE (PostgreSQL 13+) ends the directory's own connections first.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // A failed test: drop the database from a thread of its own, since
        // this may run inside the test's runtime.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(drop_database(&url, &name));
        })
        .join();
    }
}

/// The PostgreSQL backend in its own fresh database.
pub struct PgHarness {
    pub db: TestDb,
    pub directory: Option<Arc<PgDirectory>>,
}

impl PgHarness {
    pub async fn new() -> Option<PgHarness> {
        Some(PgHarness {
            db: TestDb::create().await?,
            directory: None,
        })
    }

    pub async fn finish(mut self) {
        drop(self.directory.take());
        self.db.drop_db().await;
    }
}

#[async_trait]
impl Harness for PgHarness {
    async fn load(&mut self, file: &AccountFile) -> Arc<dyn AccountDirectory> {
        let directory = Arc::new(self.db.directory().await);
        directory.migrate().await.unwrap();
        for user in &file.users {
            directory.put_user(user).await.unwrap();
        }
        for domain in &file.domains {
            directory.put_domain(domain).await.unwrap();
        }
        self.directory = Some(Arc::clone(&directory));
        directory
    }

    async fn map_identity(&mut self, account: &AccountId, identity: &Address) {
        let directory = self.directory.as_ref().unwrap();
        directory.map_identity(account, identity).await.unwrap();
    }
}
