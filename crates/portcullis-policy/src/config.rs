//! What the operator configures: limits per account, domain, client and
//! sender domain; caps; FROM rules; lists; the failure policy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::account::Account;
use crate::from::{Directory, FromRules};
use crate::lists::AccessList;
use crate::store::{Counting, Window};

/// Message and recipient rates. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Messages (MAIL commands admitted) per minute.
    pub messages_per_minute: Option<u64>,
    /// Messages per hour.
    pub messages_per_hour: Option<u64>,
    /// Recipients (RCPT commands admitted) per minute.
    pub recipients_per_minute: Option<u64>,
    /// Recipients per hour.
    pub recipients_per_hour: Option<u64>,
    /// Whether refused attempts count.
    pub counting: Counting,
}

/// Up to two windows (minute, hour) without allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    items: [Window; 2],
    pub(crate) len: usize,
}

impl Windows {
    pub(crate) fn as_slice(&self) -> &[Window] {
        &self.items[..self.len]
    }
}

fn minute_hour(minute: Option<u64>, hour: Option<u64>) -> Windows {
    let (m, h) = (minute.unwrap_or(0), hour.unwrap_or(0));
    match (minute.is_some(), hour.is_some()) {
        (true, true) => Windows {
            items: [Window::per_minute(m), Window::per_hour(h)],
            len: 2,
        },
        (true, false) => Windows {
            items: [Window::per_minute(m); 2],
            len: 1,
        },
        (false, true) => Windows {
            items: [Window::per_hour(h); 2],
            len: 1,
        },
        (false, false) => Windows {
            items: [Window::per_minute(0); 2],
            len: 0,
        },
    }
}

impl RateLimits {
    pub(crate) fn message_windows(&self) -> Windows {
        minute_hour(self.messages_per_minute, self.messages_per_hour)
    }
    pub(crate) fn recipient_windows(&self) -> Windows {
        minute_hour(self.recipients_per_minute, self.recipients_per_hour)
    }
}

/// The limits of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountLimits {
    /// Message and recipient rates.
    pub rates: RateLimits,
    /// Distinct recipients per sliding day (the same recipient counts once).
    pub distinct_recipients_per_day: Option<u64>,
    /// Largest message in octets (MAIL `SIZE=` and end of data).
    pub max_message_size: Option<u64>,
}

/// A cap on failures (invalid recipients, failed AUTH): more than `max`
/// within `window` blocks the offender for `block_for`. Failures are
/// always counted strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCap {
    /// Failures tolerated per window.
    pub max: u64,
    /// The sliding window.
    pub window: Duration,
    /// How long the block lasts.
    pub block_for: Duration,
}

/// Automatic locking of abusive accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbuseLock {
    /// Refusals for exceeded limits tolerated per `violation_window`; one
    /// more locks the account.
    pub violations: u64,
    /// Window for counting violations.
    pub violation_window: Duration,
    /// How long a timed lock lasts.
    pub lock_time: Duration,
    /// Locks that end by themselves; the next one is permanent.
    pub max_auto_unlocks: u32,
}

impl Default for AbuseLock {
    fn default() -> Self {
        AbuseLock {
            violations: 10,
            violation_window: Duration::from_secs(3600),
            lock_time: Duration::from_secs(3600),
            max_auto_unlocks: 3,
        }
    }
}

/// What to do when the store (or directory) cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StoreFailure {
    /// `451 4.3.0`: never accept what could not be checked.
    #[default]
    Defer,
    /// Continue as if no limit applied (the operator's explicit choice).
    FailOpen,
}

/// The whole policy configuration. `Default` limits nothing and checks
/// nothing but keeps the safe failure policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// Limits of accounts without their own or their domain's.
    pub account_defaults: AccountLimits,
    /// Limits per account name (lower case), e.g. `alice@example.com`.
    pub account_limits: HashMap<String, AccountLimits>,
    /// Limits per account domain (lower case), for its users and domain account.
    pub domain_limits: HashMap<String, AccountLimits>,
    /// Rates per client network across all its accounts.
    pub client_limits: RateLimits,
    /// Rates per envelope sender domain.
    pub sender_domain_limits: RateLimits,
    /// Treat an AUTH identity that is a bare domain as a domain account.
    pub domain_accounts: bool,
    /// Prefix length grouping IPv4 clients (24 by default when 0).
    pub v4_prefix: u8,
    /// Prefix length grouping IPv6 clients (64 by default when 0).
    pub v6_prefix: u8,
    /// Invalid-recipient cap per account and per client (harvest defence).
    pub invalid_recipients: Option<FailureCap>,
    /// Failed-AUTH cap per client and per user name (brute-force defence).
    pub auth_failures: Option<FailureCap>,
    /// Automatic abuse locks.
    pub abuse: Option<AbuseLock>,
    /// New connections per client network.
    pub connection_rate: Option<Window>,
    /// Client networks refused at connect with `554 5.7.1` (address, prefix).
    pub deny_networks: Vec<(IpAddr, u8)>,
    /// FROM restrictions.
    pub from: FromRules,
    /// Sender allow/deny lists.
    pub senders: AccessList,
    /// Recipient allow/deny lists.
    pub recipients: AccessList,
    /// When set, recipients must exist here; unknown ones get `550 5.1.1`
    /// and count as invalid recipients.
    pub recipient_directory: Option<Arc<dyn Directory>>,
    /// What a store failure does.
    pub on_store_error: StoreFailure,
    /// How many recent violations reports keep (256 when 0).
    pub recent_violations: usize,
}

impl PolicyConfig {
    /// The limits that apply to `account`: its own, else its domain's, else
    /// the defaults.
    pub fn limits_for(&self, account: &Account) -> &AccountLimits {
        if !self.account_limits.is_empty()
            && let Some(l) = self.account_limits.get(account.name())
        {
            return l;
        }
        if !self.domain_limits.is_empty()
            && let Some(l) = account.domain().and_then(|d| self.domain_limits.get(d))
        {
            return l;
        }
        &self.account_defaults
    }

    pub(crate) fn prefixes(&self) -> (u8, u8) {
        let v4 = if self.v4_prefix == 0 {
            24
        } else {
            self.v4_prefix
        };
        let v6 = if self.v6_prefix == 0 {
            64
        } else {
            self.v6_prefix
        };
        (v4, v6)
    }
}
