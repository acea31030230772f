//! The PostgreSQL backend, for operators with thousands of accounts.
//!
//! # Schema
//!
//! [`PgDirectory::migrate`] creates it (idempotent: `CREATE … IF NOT
//! EXISTS` under an advisory lock, so concurrent relays may all call it):
//!
//! ```sql
#![doc = include_str!("schema.sql")]
//! ```
//!
//! Names are stored canonically: `address` and `identity` as
//! `lower-case-local@a-label-domain`, `domain` as its lower-case A-label.
//! Write through the admin functions ([`PgDirectory::put_user`],
//! [`PgDirectory::put_domain`], [`PgDirectory::map_identity`], …), which
//! canonicalise and check hashes; rows written by hand must follow the same
//! rules or they will not be found.
//!
//! # Connection
//!
//! One `tokio_postgres::Client` serves all lookups: tokio-postgres
//! pipelines concurrent queries on one connection, so sessions do not wait
//! for each other's round trips, and no pool crate is needed. When the
//! connection is found closed it is re-established on the next call (once
//! per call; a failure is returned as [`AccountError::Postgres`]). Admin
//! functions use a second connection because they run transactions, which
//! must not interleave with other queries. Connections are plain TCP or
//! Unix sockets without TLS: run the database on the relay's host or a
//! trusted network.

use std::sync::Arc;

use portcullis_core::{Address, async_trait};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::account::{Account, AccountId, AccountLimits, AuthOutcome, address_key};
use crate::directory::AccountDirectory;
use crate::error::AccountError;
use crate::password::{Candidate, HashParams, StoredHash, VerifySlots, decide_blocking};
use crate::record::{DomainRecord, UserRecord};

/// How long a connection attempt may take when the configuration does not
/// say (`connect_timeout=` in the URL).
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The schema [`PgDirectory::migrate`] applies.
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

// Serialises concurrent migrations (CREATE TABLE IF NOT EXISTS is not safe
// against itself in parallel). An arbitrary constant: "portcul" in ASCII.
const MIGRATION_LOCK: i64 = 0x0070_6f72_7463_756c;

/// The per-account count limits (`u32` in [`AccountLimits`]), in bind order.
const COUNT_LIMITS: [&str; 6] = [
    "messages_per_minute",
    "messages_per_hour",
    "recipients_per_minute",
    "recipients_per_hour",
    "distinct_recipients_per_day",
    "invalid_recipients_per_day",
];

const LIMIT_COLUMNS: &str = "messages_per_minute, messages_per_hour, recipients_per_minute, \
                             recipients_per_hour, distinct_recipients_per_day, \
                             invalid_recipients_per_day, max_message_size";

/// `INSERT … ON CONFLICT DO UPDATE` of one account row: `$1` key, `$2`
/// hash, `$3` enabled, `$4…$10` the limits in [`LIMIT_COLUMNS`] order.
fn upsert_sql(table: &str, key_column: &str) -> String {
    let mut set =
        String::from("password_hash = EXCLUDED.password_hash, enabled = EXCLUDED.enabled");
    for column in COUNT_LIMITS.iter().chain(["max_message_size"].iter()) {
        set.push_str(&format!(", {column} = EXCLUDED.{column}"));
    }
    format!(
        "INSERT INTO {table} ({key_column}, password_hash, enabled, {LIMIT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT ({key_column}) DO UPDATE SET {set}, updated_at = now()"
    )
}

fn select_user() -> String {
    format!(
        "SELECT password_hash, enabled, {LIMIT_COLUMNS}, \
         ARRAY(SELECT identity FROM portcullis_identities i \
               WHERE i.user_address = u.address ORDER BY identity) \
         FROM portcullis_user_accounts u WHERE address = $1"
    )
}

fn select_domain() -> String {
    format!(
        "SELECT password_hash, enabled, {LIMIT_COLUMNS}, \
         ARRAY(SELECT identity FROM portcullis_identities i \
               WHERE i.domain = d.domain ORDER BY identity) \
         FROM portcullis_domain_accounts d WHERE domain = $1"
    )
}

const SELECT_RECIPIENT: &str = "SELECT 1 FROM portcullis_user_accounts WHERE address = $1";

/// Whether `error` means the connection is gone (closed, or the server
/// terminated the session), so a fresh connection may succeed.
fn connection_lost(error: &tokio_postgres::Error, client: &Client) -> bool {
    use tokio_postgres::error::SqlState;
    error.is_closed()
        || client.is_closed()
        || error.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
        })
}

/// The lookup connection and its prepared statements.
struct Conn {
    client: Client,
    statements: tokio::sync::OnceCell<Statements>,
}

struct Statements {
    user: Statement,
    domain: Statement,
    recipient: Statement,
}

impl Conn {
    async fn statements(&self) -> Result<&Statements, AccountError> {
        self.statements
            .get_or_try_init(|| async {
                Ok::<_, AccountError>(Statements {
                    user: self.client.prepare(&select_user()).await?,
                    domain: self.client.prepare(&select_domain()).await?,
                    recipient: self.client.prepare(SELECT_RECIPIENT).await?,
                })
            })
            .await
    }
}

/// Accounts in PostgreSQL (see the [module docs](self) for the schema).
pub struct PgDirectory {
    config: Config,
    lookup: Mutex<Option<Arc<Conn>>>,
    admin: Mutex<Option<Client>>,
    dummy: StoredHash,
    slots: VerifySlots,
}

impl std::fmt::Debug for PgDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug redacts the password.
        f.debug_struct("PgDirectory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

async fn open(config: &Config) -> Result<Client, AccountError> {
    let (client, connection) = config.connect(NoTls).await?;
    // The connection task ends when the server closes it; the client then
    // reports `is_closed()` and the next call reconnects.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl PgDirectory {
    /// Connect with a libpq-style URL or key/value string
    /// (`postgres://user@127.0.0.1:5432/mail`), with default
    /// [`HashParams`] for the dummy hash. Needs a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, AccountError> {
        Self::connect_with(url, HashParams::default()).await
    }

    /// Connect, verifying unknown logins against a dummy hash made with
    /// `dummy_params`: set them to the parameters the stored hashes use
    /// ([`hash_password_with`](crate::hash_password_with)), so an unknown
    /// login costs what a known one does.
    pub async fn connect_with(url: &str, dummy_params: HashParams) -> Result<Self, AccountError> {
        Self::connect_config(url.parse()?, dummy_params).await
    }

    /// Connect with a ready `tokio_postgres::Config`. Without a
    /// `connect_timeout` in the configuration, connecting (and
    /// reconnecting) gives up after [`DEFAULT_CONNECT_TIMEOUT`], so an
    /// unreachable database fails an AUTH instead of hanging it.
    pub async fn connect_config(
        mut config: Config,
        dummy_params: HashParams,
    ) -> Result<Self, AccountError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let client = open(&config).await?;
        Ok(PgDirectory {
            config,
            lookup: Mutex::new(Some(Arc::new(Conn {
                client,
                statements: tokio::sync::OnceCell::new(),
            }))),
            admin: Mutex::new(None),
            dummy: StoredHash::dummy(dummy_params)?,
            slots: VerifySlots::default(),
        })
    }

    /// Allow at most `max` password verifications at once (default: one
    /// per CPU); further AUTHs wait their turn.
    pub fn with_max_concurrent_verifications(mut self, max: usize) -> Self {
        self.slots = VerifySlots::new(max);
        self
    }

    /// The live lookup connection, reconnecting if it was closed.
    async fn conn(&self) -> Result<Arc<Conn>, AccountError> {
        let mut slot = self.lookup.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(Arc::clone(conn));
        }
        *slot = None;
        let conn = Arc::new(Conn {
            client: open(&self.config).await?,
            statements: tokio::sync::OnceCell::new(),
        });
        *slot = Some(Arc::clone(&conn));
        Ok(conn)
    }

    /// Forget `conn` (if it is still the current one) so the next call
    /// opens a fresh connection, even if the client has not noticed yet
    /// that the server ended the session.
    async fn discard(&self, conn: &Arc<Conn>) {
        let mut slot = self.lookup.lock().await;
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, conn))
        {
            *slot = None;
        }
    }

    /// Run a lookup; if the connection turns out closed, reconnect and
    /// retry once.
    async fn query_opt(
        &self,
        pick: fn(&Statements) -> &Statement,
        key: &str,
    ) -> Result<Option<Row>, AccountError> {
        let mut retried = false;
        loop {
            let conn = self.conn().await?;
            let result = match conn.statements().await {
                Ok(statements) => conn
                    .client
                    .query_opt(pick(statements), &[&key])
                    .await
                    .map_err(AccountError::from),
                Err(e) => Err(e),
            };
            match result {
                Err(AccountError::Postgres(e)) if !retried && connection_lost(&e, &conn.client) => {
                    retried = true;
                    self.discard(&conn).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch(
        &self,
        id: &AccountId,
    ) -> Result<Option<(Account, Option<StoredHash>)>, AccountError> {
        let key = id.key();
        let pick: fn(&Statements) -> &Statement = match id {
            AccountId::User(_) => |s| &s.user,
            AccountId::Domain(_) => |s| &s.domain,
        };
        let Some(row) = self.query_opt(pick, &key).await? else {
            return Ok(None);
        };
        let corrupt = |reason: String| AccountError::CorruptRecord {
            account: key.clone(),
            reason,
        };
        let phc: Option<String> = row.try_get(0)?;
        let hash = phc.map(|phc| StoredHash::parse(&key, &phc)).transpose()?;
        let enabled: bool = row.try_get(1)?;
        let limit = |i: usize| -> Result<Option<u32>, AccountError> {
            let v: Option<i64> = row.try_get(i)?;
            v.map(|v| u32::try_from(v).map_err(|_| corrupt(format!("limit {v} out of range"))))
                .transpose()
        };
        let size: Option<i64> = row.try_get(2 + COUNT_LIMITS.len())?;
        let limits = AccountLimits {
            messages_per_minute: limit(2)?,
            messages_per_hour: limit(3)?,
            recipients_per_minute: limit(4)?,
            recipients_per_hour: limit(5)?,
            distinct_recipients_per_day: limit(6)?,
            invalid_recipients_per_day: limit(7)?,
            max_message_size: size
                .map(|v| u64::try_from(v).map_err(|_| corrupt(format!("size {v} out of range"))))
                .transpose()?,
        };
        let identities: Vec<String> = row.try_get(3 + COUNT_LIMITS.len())?;
        let extra_identities = identities
            .iter()
            .map(|s| Address::parse(s).map_err(|e| corrupt(format!("identity {s:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let account = Account {
            id: id.clone(),
            enabled,
            extra_identities,
            limits,
        };
        Ok(Some((account, hash)))
    }

    /// Create the tables and indexes if they do not exist. Safe to call on
    /// every start and from several relays at once.
    pub async fn migrate(&self) -> Result<(), AccountError> {
        self.admin_tx(|tx| {
            Box::pin(async move {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                    .await?;
                tx.batch_execute(SCHEMA_SQL).await?;
                Ok(())
            })
        })
        .await
    }

    /// Run `f` in a transaction on the admin connection (reconnecting once
    /// if it was closed).
    async fn admin_tx<T>(
        &self,
        f: impl for<'a> FnOnce(
            &'a tokio_postgres::Transaction<'a>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, AccountError>> + Send + 'a>,
        >,
    ) -> Result<T, AccountError> {
        let mut slot = self.admin.lock().await;
        // Admin calls are rare: a ping is cheap insurance against a
        // connection the server dropped since the last one.
        let alive = match slot.as_ref() {
            Some(client) if !client.is_closed() => client.simple_query("").await.is_ok(),
            _ => false,
        };
        if !alive {
            *slot = Some(open(&self.config).await?);
        }
        let Some(client) = slot.as_mut() else {
            return Err(AccountError::Task("admin connection missing".to_owned()));
        };
        let tx = client.transaction().await?;
        let value = f(&tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Insert or replace a user account, its hash, limits and identity list.
    /// The hash is checked first: a malformed one is refused, not stored.
    pub async fn put_user(&self, record: &UserRecord) -> Result<(), AccountError> {
        let (account, _) = record.validate()?;
        self.put_account(&account, record.password_hash.clone())
            .await
    }

    /// Insert or replace a domain account, its hash, limits and identity list.
    pub async fn put_domain(&self, record: &DomainRecord) -> Result<(), AccountError> {
        let (account, _) = record.validate()?;
        self.put_account(&account, Some(record.password_hash.clone()))
            .await
    }

    async fn put_account(
        &self,
        account: &Account,
        phc: Option<String>,
    ) -> Result<(), AccountError> {
        let (table, key_column, owner_column) = match account.id {
            AccountId::User(_) => ("portcullis_user_accounts", "address", "user_address"),
            AccountId::Domain(_) => ("portcullis_domain_accounts", "domain", "domain"),
        };
        let upsert = upsert_sql(table, key_column);
        let delete = format!("DELETE FROM portcullis_identities WHERE {owner_column} = $1");
        let insert = format!(
            "INSERT INTO portcullis_identities ({owner_column}, identity) \
             SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING"
        );
        let key = account.id.key();
        let enabled = account.enabled;
        let identities: Vec<String> = account.extra_identities.iter().map(address_key).collect();
        let limits = LimitParams::from(&account.limits);
        self.admin_tx(move |tx| {
            Box::pin(async move {
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key, &phc, &enabled];
                params.extend(limits.0.iter().map(|v| v as &(dyn ToSql + Sync)));
                tx.execute(&upsert, &params).await?;
                tx.execute(&delete, &[&key]).await?;
                tx.execute(&insert, &[&key, &identities]).await?;
                Ok(())
            })
        })
        .await
    }

    /// Set (`Some`) or remove (`None`, user accounts only) an account's
    /// password hash. Errors with [`AccountError::NoSuchAccount`] if absent.
    pub async fn set_password_hash(
        &self,
        id: &AccountId,
        phc: Option<&str>,
    ) -> Result<(), AccountError> {
        let key = id.key();
        if let Some(phc) = phc {
            StoredHash::parse(&key, phc)?;
        }
        let phc = phc.map(str::to_owned);
        let sql = match id {
            AccountId::User(_) => {
                "UPDATE portcullis_user_accounts SET password_hash = $2, updated_at = now() WHERE address = $1"
            }
            AccountId::Domain(_) => {
                "UPDATE portcullis_domain_accounts SET password_hash = $2, updated_at = now() WHERE domain = $1"
            }
        };
        self.update_one(key, sql, phc).await
    }

    /// Enable or disable an account.
    pub async fn set_enabled(&self, id: &AccountId, enabled: bool) -> Result<(), AccountError> {
        let sql = match id {
            AccountId::User(_) => {
                "UPDATE portcullis_user_accounts SET enabled = $2, updated_at = now() WHERE address = $1"
            }
            AccountId::Domain(_) => {
                "UPDATE portcullis_domain_accounts SET enabled = $2, updated_at = now() WHERE domain = $1"
            }
        };
        self.update_one(id.key(), sql, enabled).await
    }

    async fn update_one<P>(
        &self,
        key: String,
        sql: &'static str,
        value: P,
    ) -> Result<(), AccountError>
    where
        P: tokio_postgres::types::ToSql + Sync + Send + 'static,
    {
        let account = key.clone();
        let changed = self
            .admin_tx(move |tx| {
                Box::pin(async move { Ok(tx.execute(sql, &[&key, &value]).await?) })
            })
            .await?;
        if changed == 0 {
            return Err(AccountError::NoSuchAccount(account));
        }
        Ok(())
    }

    /// Allow the account to send as `identity` (e.g. an old address the
    /// user forwards in). Idempotent. Errors with
    /// [`AccountError::NoSuchAccount`] if the account does not exist.
    pub async fn map_identity(
        &self,
        id: &AccountId,
        identity: &Address,
    ) -> Result<(), AccountError> {
        let key = id.key();
        let identity = address_key(identity);
        let sql = match id {
            AccountId::User(_) => {
                "INSERT INTO portcullis_identities (user_address, identity) \
                 SELECT address, $2 FROM portcullis_user_accounts WHERE address = $1 \
                 ON CONFLICT DO NOTHING"
            }
            AccountId::Domain(_) => {
                "INSERT INTO portcullis_identities (domain, identity) \
                 SELECT domain, $2 FROM portcullis_domain_accounts WHERE domain = $1 \
                 ON CONFLICT DO NOTHING"
            }
        };
        let exists = matches!(id, AccountId::User(_));
        let lookup_key = key.clone();
        let found = self
            .admin_tx(move |tx| {
                Box::pin(async move {
                    tx.execute(sql, &[&key, &identity]).await?;
                    let check = if exists {
                        "SELECT 1 FROM portcullis_user_accounts WHERE address = $1"
                    } else {
                        "SELECT 1 FROM portcullis_domain_accounts WHERE domain = $1"
                    };
                    Ok(tx.query_opt(check, &[&key]).await?.is_some())
                })
            })
            .await?;
        if !found {
            return Err(AccountError::NoSuchAccount(lookup_key));
        }
        Ok(())
    }

    /// Withdraw an identity; returns whether it was mapped.
    pub async fn unmap_identity(
        &self,
        id: &AccountId,
        identity: &Address,
    ) -> Result<bool, AccountError> {
        let key = id.key();
        let identity = address_key(identity);
        let sql = match id {
            AccountId::User(_) => {
                "DELETE FROM portcullis_identities WHERE user_address = $1 AND identity = $2"
            }
            AccountId::Domain(_) => {
                "DELETE FROM portcullis_identities WHERE domain = $1 AND identity = $2"
            }
        };
        let removed = self
            .admin_tx(move |tx| {
                Box::pin(async move { Ok(tx.execute(sql, &[&key, &identity]).await?) })
            })
            .await?;
        Ok(removed > 0)
    }

    /// Delete an account and its identities; returns whether it existed.
    pub async fn delete_account(&self, id: &AccountId) -> Result<bool, AccountError> {
        let key = id.key();
        let sql = match id {
            AccountId::User(_) => "DELETE FROM portcullis_user_accounts WHERE address = $1",
            AccountId::Domain(_) => "DELETE FROM portcullis_domain_accounts WHERE domain = $1",
        };
        let removed = self
            .admin_tx(move |tx| Box::pin(async move { Ok(tx.execute(sql, &[&key]).await?) }))
            .await?;
        Ok(removed > 0)
    }
}

/// Limits as bind parameters (`bigint`, NULL for none), in
/// [`LIMIT_COLUMNS`] order.
struct LimitParams([Option<i64>; 7]);

impl From<&AccountLimits> for LimitParams {
    fn from(l: &AccountLimits) -> Self {
        let count = |v: Option<u32>| v.map(i64::from);
        // Sizes above i64::MAX are not meaningful; store the largest value.
        let size = l
            .max_message_size
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        LimitParams([
            count(l.messages_per_minute),
            count(l.messages_per_hour),
            count(l.recipients_per_minute),
            count(l.recipients_per_hour),
            count(l.distinct_recipients_per_day),
            count(l.invalid_recipients_per_day),
            size,
        ])
    }
}

#[async_trait]
impl AccountDirectory for PgDirectory {
    async fn lookup(&self, id: &AccountId) -> Result<Option<Account>, AccountError> {
        Ok(self.fetch(id).await?.map(|(account, _)| account))
    }

    async fn authenticate(
        &self,
        login: &str,
        password: &[u8],
    ) -> Result<AuthOutcome, AccountError> {
        let candidate = match AccountId::parse(login) {
            Ok(id) => match self.fetch(&id).await? {
                Some((account, hash)) => Candidate::Found(Box::new(account), hash),
                None => Candidate::Unknown,
            },
            Err(_) => Candidate::Unknown,
        };
        decide_blocking(&self.slots, candidate, &self.dummy, password).await
    }

    async fn is_local_recipient(&self, address: &Address) -> Result<bool, AccountError> {
        let key = AccountId::user(address).key();
        Ok(self.query_opt(|s| &s.recipient, &key).await?.is_some())
    }
}
