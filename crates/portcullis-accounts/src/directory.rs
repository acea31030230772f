//! The [`AccountDirectory`] trait: the seam between the relay and wherever
//! accounts live.

use portcullis_core::{Address, async_trait};

use crate::account::{Account, AccountId, AuthOutcome, Identity};
use crate::error::AccountError;

/// Where a relay finds its accounts.
///
/// # Contract
///
/// - **Thread safety.** Implementations are `Send + Sync` and are shared
///   between sessions as `Arc<dyn AccountDirectory>`; every method takes
///   `&self` and may be called concurrently.
/// - **A miss is not an error.** An unknown account is `Ok(None)` from
///   [`lookup`](Self::lookup), `Ok(AuthOutcome::Denied(UnknownAccount))`
///   from [`authenticate`](Self::authenticate), `Ok(false)` from
///   [`is_local_recipient`](Self::is_local_recipient). A login that is not
///   a valid address or domain is a miss too: it is client input.
/// - **Failure.** `Err` means the directory could not decide (database
///   down, corrupt record). It must never be turned into "no such account"
///   or "wrong password": answer `454 4.7.0` at AUTH
///   ([`AccountError::auth_reply`]) and `451 4.3.0` in a transaction
///   ([`AccountError::transaction_reply`]), so clients retry.
/// - **Timing.** [`authenticate`](Self::authenticate) runs exactly one argon2
///   verification whatever the login — a dummy hash stands in for unknown
///   accounts and accounts without a password — so response time does not
///   reveal which accounts exist. Verification runs on tokio's blocking
///   pool when a runtime is present, a bounded number at a time (argon2
///   holds its memory cost per verification), so a flood of AUTH commands
///   queues instead of exhausting memory.
/// - **Names** are canonical (see [`AccountId`]): local parts compare
///   case-insensitively, domains by their A-label form.
/// - **Freshness.** Answers reflect the backend at the time of the call;
///   nothing is cached across calls, so an admin change (an identity
///   mapped, an account disabled) applies to the next call.
#[async_trait]
pub trait AccountDirectory: Send + Sync {
    /// The account named by `id`, with its identities and limits.
    async fn lookup(&self, id: &AccountId) -> Result<Option<Account>, AccountError>;

    /// Check a login (`user@domain` for a user account, `domain` for a
    /// domain account) and password, as given to AUTH (RFC 4954).
    async fn authenticate(&self, login: &str, password: &[u8])
    -> Result<AuthOutcome, AccountError>;

    /// Whether `address` is a local mailbox, i.e. has a user account
    /// (enabled or not, with or without a password). Domain accounts and
    /// FROM identities do not make recipients.
    async fn is_local_recipient(&self, address: &Address) -> Result<bool, AccountError>;

    /// The FROM identities the account may use; empty when there is no
    /// such account.
    async fn allowed_identities(&self, id: &AccountId) -> Result<Vec<Identity>, AccountError> {
        Ok(self
            .lookup(id)
            .await?
            .map(|account| account.identities())
            .unwrap_or_default())
    }

    /// Whether the account may use `from` as its envelope sender, read
    /// fresh from the backend (an identity mapped mid-session counts).
    /// `false` when there is no such account.
    async fn may_send_as(&self, id: &AccountId, from: &Address) -> Result<bool, AccountError> {
        Ok(self
            .lookup(id)
            .await?
            .is_some_and(|account| account.may_send_as(from)))
    }
}
