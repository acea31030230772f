//! [`Policy`]: the plain, synchronous decision API. Each method is a
//! function of (configuration + store, input, `now`) returning a
//! [`Verdict`]; [`PolicyFilter`](crate::PolicyFilter) calls them per stage.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use portcullis_core::{
    Address, Client, ForwardPath, MailParams, Reply, ReversePath, Verdict, mask_ip,
};

use crate::account::{Account, network_key};
use crate::config::{
    AbuseLock, AccountLimits, FailureCap, PolicyConfig, RateLimits, StoreFailure, Windows,
};
use crate::connection::{GateDecision, LoadGate};
use crate::from::{FromCheckError, FromViolation};
use crate::lists::ListMatch;
use crate::store::{
    Counter, CounterSnapshot, CounterStore, Counting, Distinct, LockRecord, LockState, Outcome,
    Request, StoreError, Window,
};

/// Which rule refused something (for reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A message or recipient rate.
    Rate,
    /// Distinct recipients per day.
    DistinctRecipients,
    /// Too many invalid recipients.
    InvalidRecipients,
    /// Too many failed AUTH attempts.
    AuthFailures,
    /// New connections per client.
    ConnectionRate,
    /// A FROM restriction.
    From,
    /// Message size.
    Size,
    /// A deny list.
    Denied,
    /// The account is locked.
    Locked,
    /// An abuse signal or repeated violations locked the account.
    Abuse,
}

/// One recent refusal, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: SystemTime,
    /// Whom: an account key, or a client network.
    pub subject: String,
    /// Which rule.
    pub rule: Rule,
    /// The reply code sent (0 when nothing was sent, e.g. a lock).
    pub code: u16,
    /// Details (the reply text or the lock reason).
    pub detail: String,
}

/// A lock as reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockReport {
    /// Store key of the lock (`lock:` + account key).
    pub key: String,
    /// The record.
    pub record: LockRecord,
    /// Whether it is in force at the report's instant.
    pub in_effect: bool,
}

/// A snapshot for operators: who sent how much, who is locked, what was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Live counters (keys like `msg:u:alice@example.com`).
    pub counters: Vec<CounterSnapshot>,
    /// Lock records.
    pub locks: Vec<LockReport>,
    /// The most recent violations, oldest first (kept in this process only).
    pub violations: Vec<Violation>,
}

/// An abuse signal from elsewhere (e.g. the fingerprint crate).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbuseSignal {
    /// The same bulk message went to this many recipients.
    BulkMessage {
        /// Recipients of the bulk message.
        recipients: u64,
    },
    /// Anything else, with a reason for the operator.
    Other(String),
}

impl AbuseSignal {
    fn reason(&self) -> String {
        match self {
            AbuseSignal::BulkMessage { recipients } => {
                format!("bulk message to {recipients} recipients")
            }
            AbuseSignal::Other(r) => r.clone(),
        }
    }
}

/// The policy engine: configuration, a counter store and, optionally, a
/// load gate. Shared between sessions (`Arc<Policy>`); no I/O of its own
/// (the store may do some).
pub struct Policy {
    config: PolicyConfig,
    store: Arc<dyn CounterStore>,
    gate: Option<Arc<LoadGate>>,
    recent: Mutex<VecDeque<Violation>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("config", &self.config)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn until_secs(until: SystemTime, now: SystemTime) -> u64 {
    secs_ceil(until.duration_since(now).unwrap_or_default())
}

impl Policy {
    /// A policy over `store`.
    pub fn new(config: PolicyConfig, store: Arc<dyn CounterStore>) -> Self {
        Policy {
            config,
            store,
            gate: None,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Consult `gate` at connect.
    pub fn with_load_gate(mut self, gate: Arc<LoadGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The account of a session.
    pub fn account(&self, client: &Client) -> Account {
        let (v4, v6) = self.config.prefixes();
        Account::resolve(client, self.config.domain_accounts, v4, v6)
    }

    fn net(&self, ip: IpAddr) -> String {
        let (v4, v6) = self.config.prefixes();
        network_key(ip, v4, v6)
    }

    fn store_failed(&self, _err: &dyn std::error::Error) -> Verdict {
        match self.config.on_store_error {
            StoreFailure::Defer => Verdict::Defer(Reply::temporary_failure()),
            StoreFailure::FailOpen => Verdict::Continue,
        }
    }

    fn record(&self, subject: &str, rule: Rule, verdict: &Verdict, now: SystemTime) {
        let (code, detail) = verdict
            .reply()
            .map_or((0, String::new()), |r| (r.code(), r.text().to_owned()));
        self.push_violation(Violation {
            at: now,
            subject: subject.to_owned(),
            rule,
            code,
            detail,
        });
    }

    fn push_violation(&self, v: Violation) {
        let cap = if self.config.recent_violations == 0 {
            256
        } else {
            self.config.recent_violations
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= cap {
            recent.pop_front();
        }
        recent.push_back(v);
    }

    /// Count one limit violation of `account`; past the abuse threshold,
    /// lock it. Errors are ignored here: the request is refused already,
    /// and the next violation will try again.
    fn count_violation(&self, account: &Account, now: SystemTime) {
        let Some(abuse) = self.config.abuse else {
            return;
        };
        if !account.is_outbound() {
            return;
        }
        let key = format!("viol:{}", account.key());
        let window = [Window::new(abuse.violation_window, abuse.violations)];
        let counters = [Counter {
            key: &key,
            cost: 1,
            windows: &window,
            counting: Counting::Strict,
        }];
        let request = Request {
            counters: &counters,
            ..Request::default()
        };
        if let Ok(Outcome::Limited { .. }) = self.store.decide(&request, now) {
            let reason = format!("more than {} limit violations", abuse.violations);
            if let Ok(record) = self.lock_account(account, &abuse, &reason, now) {
                self.note_lock(account, &record, now);
            }
        }
    }

    fn lock_account(
        &self,
        account: &Account,
        abuse: &AbuseLock,
        reason: &str,
        now: SystemTime,
    ) -> Result<LockRecord, StoreError> {
        self.store.lock(
            &lock_key(account),
            abuse.lock_time,
            abuse.max_auto_unlocks,
            reason,
            now,
        )
    }

    fn note_lock(&self, account: &Account, record: &LockRecord, now: SystemTime) {
        self.push_violation(Violation {
            at: now,
            subject: account.key().to_owned(),
            rule: Rule::Abuse,
            code: 0,
            detail: record.reason.clone(),
        });
    }

    /// At connect: deny-listed networks (`554 5.7.1`), the load gate
    /// (`421 4.3.2`), blocks from failed AUTH or invalid recipients and the
    /// connection rate (`421 4.7.0`).
    pub fn check_connect(&self, client: &Client, now: SystemTime) -> Verdict {
        let ip = client.ip();
        let denied = self
            .config
            .deny_networks
            .iter()
            .any(|&(net, len)| mask_ip(ip, len, len) == mask_ip(net, len, len));
        if let Some(gate) = &self.gate {
            match gate.admit(denied) {
                GateDecision::Open => {}
                GateDecision::Busy(r) => return Verdict::Disconnect(r),
                GateDecision::Refused(r) => return Verdict::Reject(r),
            }
        } else if denied {
            return Verdict::Reject(Reply::new(554, (5, 7, 1), "Access denied"));
        }
        let net = self.net(ip);
        let auth_block = format!("blk:auth:ip:{net}");
        let inv_block = format!("blk:inv:ip:{net}");
        let conn_key = format!("conn:ip:{net}");
        let rate: Vec<Window> = self.config.connection_rate.into_iter().collect();
        let counters = [Counter {
            key: &conn_key,
            cost: 1,
            windows: &rate,
            counting: Counting::Leaky,
        }];
        let blocks = [auth_block.as_str(), inv_block.as_str()];
        let request = Request {
            blocks: &blocks,
            counters: if rate.is_empty() { &[] } else { &counters },
            ..Request::default()
        };
        match self.store.decide(&request, now) {
            Ok(Outcome::Admitted) => Verdict::Continue,
            Ok(Outcome::Blocked { until, .. }) => Verdict::Disconnect(Reply::new(
                421,
                (4, 7, 0),
                format!(
                    "Temporarily blocked, try again in {} seconds",
                    until_secs(until, now)
                ),
            )),
            Ok(Outcome::Limited { retry_after, .. }) => {
                let v = Verdict::Disconnect(Reply::new(
                    421,
                    (4, 7, 0),
                    format!(
                        "Too many connections, try again in {} seconds",
                        secs_ceil(retry_after)
                    ),
                ));
                self.record(&net, Rule::ConnectionRate, &v, now);
                v
            }
            Ok(_) => Verdict::Defer(Reply::temporary_failure()),
            Err(e) => self.store_failed(&e),
        }
    }

    /// After a successful AUTH: refuse identities or clients blocked for
    /// failed attempts (`454 4.7.0`, or `421 4.7.0` for a blocked client).
    pub fn check_auth(&self, client: &Client, now: SystemTime) -> Verdict {
        let Some(user) = &client.authenticated else {
            return Verdict::Continue;
        };
        let ip_block = format!("blk:auth:ip:{}", self.net(client.ip()));
        let user_block = format!("blk:auth:user:{}", user.to_ascii_lowercase());
        let blocks = [ip_block.as_str(), user_block.as_str()];
        let request = Request {
            blocks: &blocks,
            ..Request::default()
        };
        match self.store.decide(&request, now) {
            Ok(Outcome::Blocked { index: 0, until }) => Verdict::Disconnect(Reply::new(
                421,
                (4, 7, 0),
                format!(
                    "Too many failed logins, try again in {} seconds",
                    until_secs(until, now)
                ),
            )),
            Ok(Outcome::Blocked { .. }) => Verdict::Defer(Reply::new(
                454,
                (4, 7, 0),
                "Temporary authentication failure",
            )),
            Ok(_) => Verdict::Continue,
            Err(e) => self.store_failed(&e),
        }
    }

    /// A failed AUTH attempt from `client` for `user` (when known). Past the
    /// cap the client (or user name) is blocked and the answer is
    /// `421 4.7.0` (disconnect); otherwise `Continue` (the server sends its
    /// own `535 5.7.8`).
    pub fn note_auth_failure(
        &self,
        client: &Client,
        user: Option<&str>,
        now: SystemTime,
    ) -> Verdict {
        let Some(cap) = self.config.auth_failures else {
            return Verdict::Continue;
        };
        let net = self.net(client.ip());
        let mut subjects = vec![(format!("authf:ip:{net}"), format!("blk:auth:ip:{net}"))];
        if let Some(user) = user {
            let user = user.to_ascii_lowercase();
            subjects.push((
                format!("authf:user:{user}"),
                format!("blk:auth:user:{user}"),
            ));
        }
        match self.count_failure(&cap, &subjects, now) {
            Ok(false) => Verdict::Continue,
            Ok(true) => {
                let v = Verdict::Disconnect(Reply::new(
                    421,
                    (4, 7, 0),
                    format!(
                        "Too many failed logins, try again in {} seconds",
                        secs_ceil(cap.block_for)
                    ),
                ));
                self.record(&net, Rule::AuthFailures, &v, now);
                v
            }
            Err(e) => self.store_failed(&e),
        }
    }

    /// Count one failure against each `(counter key, block key)` subject
    /// (strictly); block every subject past the cap. Whether any was blocked.
    fn count_failure(
        &self,
        cap: &FailureCap,
        subjects: &[(String, String)],
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let window = [Window::new(cap.window, cap.max)];
        let mut blocked = false;
        // One request per subject, so each is blocked on its own count
        // (a shared request would report only the first over its cap).
        for (counter_key, block_key) in subjects {
            let counters = [Counter {
                key: counter_key,
                cost: 1,
                windows: &window,
                counting: Counting::Strict,
            }];
            let request = Request {
                counters: &counters,
                ..Request::default()
            };
            if let Outcome::Limited { .. } = self.store.decide(&request, now)? {
                self.store.block(block_key, now + cap.block_for, now)?;
                blocked = true;
            }
        }
        Ok(blocked)
    }

    fn locked_verdict(record: &LockRecord, now: SystemTime) -> Verdict {
        match record.state {
            LockState::Until(t) => Verdict::Defer(Reply::new(
                451,
                (4, 7, 1),
                format!(
                    "Account locked for {} more seconds: {}",
                    until_secs(t, now),
                    record.reason
                ),
            )),
            _ => Verdict::Reject(Reply::new(
                550,
                (5, 7, 1),
                format!("Account locked: {}", record.reason),
            )),
        }
    }

    fn blocked_verdict(until: SystemTime, now: SystemTime) -> Verdict {
        Verdict::Disconnect(Reply::new(
            421,
            (4, 7, 0),
            format!(
                "Too many invalid recipients, try again in {} seconds",
                until_secs(until, now)
            ),
        ))
    }

    /// `MAIL FROM`: lock, sender deny list, FROM restrictions, declared
    /// size, invalid-recipient blocks, then message rates per account,
    /// client network and sender domain (skipped for allow-listed senders).
    pub fn check_mail(
        &self,
        client: &Client,
        account: &Account,
        sender: &ReversePath,
        params: &MailParams,
        now: SystemTime,
    ) -> Verdict {
        let listed = sender
            .address()
            .map_or(ListMatch::Neither, |a| self.config.senders.check(a));
        if listed == ListMatch::Denied {
            let v = Verdict::Reject(Reply::policy_rejected(
                "Sender address rejected: access denied",
            ));
            self.record(account.key(), Rule::Denied, &v, now);
            return v;
        }
        match self.config.from.check_sender(account, sender) {
            Ok(()) => {}
            Err(FromCheckError::Violation(violation)) => {
                let v = Verdict::Reject(Reply::new(553, (5, 7, 1), violation.text()));
                self.record(account.key(), Rule::From, &v, now);
                return v;
            }
            Err(e) => return self.store_failed(&e),
        }
        let limits = self.config.limits_for(account);
        if let (Some(max), Some(size)) = (limits.max_message_size, params.size)
            && size > max
        {
            let v = Verdict::Reject(Reply::message_too_big());
            self.record(account.key(), Rule::Size, &v, now);
            return v;
        }

        let lock = lock_key(account);
        let locks = [lock.as_str()];
        let blocks = self.invalid_recipient_blocks(client, account);
        let blocks: Vec<&str> = blocks.iter().map(String::as_str).collect();
        let keys = if listed == ListMatch::Allowed {
            RateKeys::default()
        } else {
            self.rate_keys(Unit::Messages, client, account, sender, limits)
        };
        let (counters, what) = keys.counters();
        let request = Request {
            locks: &locks,
            blocks: &blocks,
            distinct: None,
            counters: &counters[..what.len()],
        };
        self.apply_outcome(account, what, request, now)
    }

    /// Block keys for the invalid-recipient cap: only consulted when the cap
    /// is configured (nothing else sets them).
    fn invalid_recipient_blocks(&self, client: &Client, account: &Account) -> Vec<String> {
        if self.config.invalid_recipients.is_none() {
            return Vec::new();
        }
        vec![
            format!("blk:inv:{}", account.key()),
            format!("blk:inv:ip:{}", self.net(client.ip())),
        ]
    }

    /// The rate counters of one stage; no key is built for a limit that is
    /// not configured.
    fn rate_keys<'a>(
        &self,
        unit: Unit,
        client: &Client,
        account: &'a Account,
        sender: &ReversePath,
        limits: &AccountLimits,
    ) -> RateKeys<'a> {
        let (tag, pick): (&str, fn(&RateLimits) -> Windows) = match unit {
            Unit::Messages => ("msg", RateLimits::message_windows),
            Unit::Recipients => ("rcpt", RateLimits::recipient_windows),
        };
        let mut keys = RateKeys::default();
        let account_windows = pick(&limits.rates);
        if account_windows.len != 0 {
            let key = match unit {
                Unit::Messages => account.msg_key(),
                Unit::Recipients => account.rcpt_key(),
            };
            keys.push(
                Cow::Borrowed(key),
                account_windows,
                limits.rates.counting,
                unit.what(0),
            );
        }
        let ip_windows = pick(&self.config.client_limits);
        // An inbound account is its client network already.
        if account.is_outbound() && ip_windows.len != 0 {
            keys.push(
                Cow::Owned(format!("{tag}:ip:{}", self.net(client.ip()))),
                ip_windows,
                self.config.client_limits.counting,
                unit.what(1),
            );
        }
        let domain_windows = pick(&self.config.sender_domain_limits);
        if domain_windows.len != 0
            && let Some(a) = sender.address()
        {
            keys.push(
                Cow::Owned(format!("{tag}:sd:{}", a.domain().ascii())),
                domain_windows,
                self.config.sender_domain_limits.counting,
                unit.what(2),
            );
        }
        keys
    }

    /// `RCPT TO`: recipient deny/allow lists, the recipient directory,
    /// invalid-recipient blocks, distinct recipients per day, and recipient
    /// rates per account, client network and sender domain.
    pub fn check_rcpt(
        &self,
        client: &Client,
        account: &Account,
        sender: &ReversePath,
        rcpt: &ForwardPath,
        now: SystemTime,
    ) -> Verdict {
        match rcpt.address().map(|a| self.config.recipients.check(a)) {
            Some(ListMatch::Denied) => {
                let v = Verdict::Reject(Reply::policy_rejected(
                    "Recipient address rejected: access denied",
                ));
                self.record(account.key(), Rule::Denied, &v, now);
                return v;
            }
            Some(ListMatch::Allowed) => return Verdict::Continue,
            _ => {}
        }
        if let (Some(dir), Some(addr)) = (&self.config.recipient_directory, rcpt.address()) {
            match dir.mailbox_exists(addr) {
                Ok(true) => {}
                Ok(false) => {
                    return match self.note_invalid_recipient(client, account, now) {
                        Verdict::Continue => Verdict::Reject(Reply::no_such_user()),
                        other => other,
                    };
                }
                Err(e) => return self.store_failed(&e),
            }
        }
        let limits = self.config.limits_for(account);
        let blocks = self.invalid_recipient_blocks(client, account);
        let blocks: Vec<&str> = blocks.iter().map(String::as_str).collect();
        let mut buf = [0u8; 64];
        let mut spill = String::new();
        let distinct = match limits.distinct_recipients_per_day {
            Some(limit) => {
                let member = match rcpt.address() {
                    Some(a) => member_key(a, &mut buf, &mut spill),
                    None => "postmaster",
                };
                Some(Distinct {
                    // The set lives under the recipient-rate key: a store
                    // may keep both in one place (the memory store does:
                    // one lookup per decision instead of two).
                    key: account.rcpt_key(),
                    member,
                    window: Duration::from_secs(86_400),
                    limit,
                })
            }
            None => None,
        };
        let keys = self.rate_keys(Unit::Recipients, client, account, sender, limits);
        let (counters, what) = keys.counters();
        let request = Request {
            locks: &[],
            blocks: &blocks,
            distinct,
            counters: &counters[..what.len()],
        };
        self.apply_outcome(account, what, request, now)
    }

    fn apply_outcome(
        &self,
        account: &Account,
        what: &[&'static str],
        request: Request<'_>,
        now: SystemTime,
    ) -> Verdict {
        match self.store.decide(&request, now) {
            Ok(Outcome::Admitted) => Verdict::Continue,
            Ok(Outcome::Locked { record, .. }) => {
                let v = Self::locked_verdict(&record, now);
                self.record(account.key(), Rule::Locked, &v, now);
                v
            }
            Ok(Outcome::Blocked { until, .. }) => Self::blocked_verdict(until, now),
            Ok(Outcome::DistinctExceeded { .. }) => {
                // RFC 5321 §4.5.3.1.10 and RFC 3463 4.5.3: too many recipients.
                let v = Verdict::Defer(Reply::new(
                    452,
                    (4, 5, 3),
                    "Too many distinct recipients today, try again tomorrow",
                ));
                self.record(account.key(), Rule::DistinctRecipients, &v, now);
                self.count_violation(account, now);
                v
            }
            Ok(Outcome::Limited {
                counter,
                retry_after,
                ..
            }) => {
                let what = what.get(counter).copied().unwrap_or("rate");
                let v = Verdict::Defer(Reply::rate_limited(what, secs_ceil(retry_after)));
                self.record(account.key(), Rule::Rate, &v, now);
                self.count_violation(account, now);
                v
            }
            Err(e) => self.store_failed(&e),
        }
    }

    /// A recipient was rejected as unknown (`5.1.1` from the directory, or
    /// learned from a delivery outcome). Past the cap the account (and the
    /// client network) is blocked: `421 4.7.0`, disconnect.
    pub fn note_invalid_recipient(
        &self,
        client: &Client,
        account: &Account,
        now: SystemTime,
    ) -> Verdict {
        let Some(cap) = self.config.invalid_recipients else {
            return Verdict::Continue;
        };
        let mut subjects = vec![(
            format!("inv:{}", account.key()),
            format!("blk:inv:{}", account.key()),
        )];
        // An inbound account is its client network already.
        if account.is_outbound() {
            let net = self.net(client.ip());
            subjects.push((format!("inv:ip:{net}"), format!("blk:inv:ip:{net}")));
        }
        match self.count_failure(&cap, &subjects, now) {
            Ok(false) => Verdict::Continue,
            Ok(true) => {
                let v = Self::blocked_verdict(now + cap.block_for, now);
                self.record(account.key(), Rule::InvalidRecipients, &v, now);
                v
            }
            Err(e) => self.store_failed(&e),
        }
    }

    /// End of data: the message size (`552 5.3.4`) and the header `From:`
    /// (`550 5.7.1`).
    pub fn check_message(&self, account: &Account, message: &[u8], now: SystemTime) -> Verdict {
        let limits = self.config.limits_for(account);
        if let Some(max) = limits.max_message_size
            && message.len() as u64 > max
        {
            let v = Verdict::Reject(Reply::message_too_big());
            self.record(account.key(), Rule::Size, &v, now);
            return v;
        }
        match self.config.from.check_header(account, message) {
            Ok(()) => Verdict::Continue,
            Err(FromCheckError::Violation(violation)) => {
                let v = Verdict::Reject(Reply::policy_rejected(match violation {
                    FromViolation::InvalidHeaderFrom => violation.text(),
                    _ => "Header From not allowed for this account",
                }));
                self.record(account.key(), Rule::From, &v, now);
                v
            }
            Err(e) => self.store_failed(&e),
        }
    }

    /// An abuse signal for `account`: lock it now (timed for the first
    /// `max_auto_unlocks` locks, then permanent). Uses the configured
    /// [`AbuseLock`] or its defaults.
    pub fn signal_abuse(
        &self,
        account: &Account,
        signal: &AbuseSignal,
        now: SystemTime,
    ) -> Result<LockRecord, StoreError> {
        let abuse = self.config.abuse.unwrap_or_default();
        let record = self.lock_account(account, &abuse, &signal.reason(), now)?;
        self.note_lock(account, &record, now);
        Ok(record)
    }

    /// An admin unlock; `forget_history` also resets the lock count.
    pub fn unlock(&self, account: &Account, forget_history: bool) -> Result<(), StoreError> {
        self.store.unlock(&lock_key(account), forget_history)
    }

    /// The lock record of `account`, if any.
    pub fn lock_record(&self, account: &Account) -> Result<Option<LockRecord>, StoreError> {
        self.store.lock_record(&lock_key(account))
    }

    /// A snapshot of counters, locks and recent violations at `now`.
    pub fn report(&self, now: SystemTime) -> Result<Report, StoreError> {
        let mut counters = self.store.counters(now)?;
        counters.sort_by(|a, b| (&a.key, a.window).cmp(&(&b.key, b.window)));
        let mut locks: Vec<LockReport> = self
            .store
            .locks()?
            .into_iter()
            .map(|(key, record)| LockReport {
                in_effect: record.in_effect(now),
                key,
                record,
            })
            .collect();
        locks.sort_by(|a, b| a.key.cmp(&b.key));
        let violations = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        Ok(Report {
            counters,
            locks,
            violations,
        })
    }
}

/// The distinct-set member of a recipient: local part `@` A-label domain,
/// lower-cased (one mailbox, one member; case-insensitive in practice).
/// Joining at `@` is unambiguous since a domain never contains one. Built
/// in `buf` (no allocation per decision) unless too long, then in `spill`.
fn member_key<'b>(address: &Address, buf: &'b mut [u8; 64], spill: &'b mut String) -> &'b str {
    let local = address.local_part().as_str();
    let domain = address.domain().ascii();
    let len = local.len() + 1 + domain.len();
    if let Some(out) = buf.get_mut(..len) {
        let (l, rest) = out.split_at_mut(local.len());
        l.copy_from_slice(local.as_bytes());
        if let Some((at, d)) = rest.split_first_mut() {
            *at = b'@';
            d.copy_from_slice(domain.as_bytes());
        }
        out.make_ascii_lowercase();
        // Always valid: UTF-8 pieces joined at an ASCII byte, ASCII-lowered.
        if let Ok(m) = std::str::from_utf8(out) {
            return m;
        }
    }
    spill.clear();
    spill.push_str(local);
    spill.push('@');
    spill.push_str(domain);
    spill.make_ascii_lowercase();
    spill
}

fn lock_key(account: &Account) -> String {
    format!("lock:{}", account.key())
}

/// What a rate counts.
#[derive(Clone, Copy)]
enum Unit {
    Messages,
    Recipients,
}

impl Unit {
    /// Text naming the counter `i` (account, client, sender domain).
    fn what(self, i: usize) -> &'static str {
        match (self, i) {
            (Unit::Messages, 0) => "messages per account",
            (Unit::Messages, 1) => "messages per client",
            (Unit::Messages, _) => "messages per sender domain",
            (Unit::Recipients, 0) => "recipients per account",
            (Unit::Recipients, 1) => "recipients per client",
            (Unit::Recipients, _) => "recipients per sender domain",
        }
    }
}

/// Up to three rate counters (account, client, sender domain) and their
/// keys, held inline so a decision allocates only the key strings.
#[derive(Default)]
struct RateKeys<'a> {
    keys: [Cow<'a, str>; 3],
    windows: [Option<Windows>; 3],
    counting: [Counting; 3],
    what: [&'static str; 3],
    len: usize,
}

impl<'a> RateKeys<'a> {
    fn push(
        &mut self,
        key: Cow<'a, str>,
        windows: Windows,
        counting: Counting,
        what: &'static str,
    ) {
        if let Some(i) = (self.len < 3).then_some(self.len) {
            self.keys[i] = key;
            self.windows[i] = Some(windows);
            self.counting[i] = counting;
            self.what[i] = what;
            self.len += 1;
        }
    }

    /// The counters (first `len` are meaningful) and their names.
    fn counters(&self) -> ([Counter<'_>; 3], &[&'static str]) {
        let counter = |i: usize| Counter {
            key: &self.keys[i],
            cost: 1,
            windows: self.windows[i].as_ref().map_or(&[], Windows::as_slice),
            counting: self.counting[i],
        };
        ([counter(0), counter(1), counter(2)], &self.what[..self.len])
    }
}
