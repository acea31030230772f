//! SMTP callout: ask the primary MX whether a recipient exists, the way
//! Exim's `verify = recipient/callout` and Postfix's
//! `reject_unverified_recipient` do. **Network I/O**, through
//! [`SmtpTransport`]'s connection code (same connect, greeting, EHLO,
//! STARTTLS policy and reply parsing), so the crate's sockets stay where
//! the crate docs say they are.
//!
//! The dialogue is greeting, `EHLO`, `MAIL FROM:<>`, `RCPT TO:<addr>`,
//! `QUIT`. It never sends `DATA` (or `BDAT`): nothing is ever delivered.
//! The reply to `RCPT` decides:
//!
//! * 2xx → [`CalloutResult::Exists`];
//! * 550, 551 or 553 with an RFC 3463 `5.1.x` code (bad mailbox, bad
//!   system, bad syntax, moved) → [`CalloutResult::DoesNotExist`];
//! * anything else → [`CalloutResult::Unknown`]: 4xx (greylisting, busy),
//!   a 5xx that is policy rather than "no such user" (a bare `550` arrives
//!   as `5.0.0` and counts here: it may be "relaying denied" from a primary
//!   that does not know it is one), a refused `MAIL FROM:<>`, connection
//!   failures, timeouts. **Unknown must never turn into a permanent
//!   rejection**: a backup MX that rejects a valid recipient loses that mail
//!   for good. The caller accepts or defers (`450 4.1.1`) as configured.
//!
//! Primaries are tried in order (hosts, then each host's addresses) until
//! one gives a conclusive answer; a connection failure moves to the next
//! address, an inconclusive reply to the next host. One deadline
//! ([`CalloutConfig::timeout`]) bounds the whole callout, including the wait
//! for a connection slot: at most [`CalloutConfig::max_per_host`] callouts
//! talk to one primary host at a time. An address that could not be talked
//! to is skipped by every callout for [`CalloutConfig::down_ttl`] (1 min):
//! a backup MX is busiest while its primary is down, and each new
//! recipient should not wait for the same dead host again.
//!
//! Answers are cached per recipient ([`Address::key`]) with their own
//! lifetimes: positive longer than negative (1 h and 10 min by default, so
//! a mailbox created on the primary soon becomes reachable through the
//! backup) and unknown shortest (1 min, so a primary that is down costs one
//! timeout per recipient per minute, not one per `RCPT`). Concurrent
//! callers for one recipient share a single callout. Expiry is read from
//! the [`Clock`]; timeouts use the tokio timer.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use portcullis_core::{Address, ManualClock};
//! use portcullis_queue::{CalloutConfig, CalloutResult, HopHost, SmtpCallout, TlsPolicy};
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! // A stand-in primary on loopback that knows one mailbox, alice.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let port = listener.local_addr().unwrap().port();
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         let (r, mut w) = stream.into_split();
//!         w.write_all(b"220 primary.example.net ESMTP\r\n").await.unwrap();
//!         let mut lines = BufReader::new(r).lines();
//!         while let Ok(Some(line)) = lines.next_line().await {
//!             let reply: &[u8] = match line.as_str() {
//!                 "RCPT TO:<alice@example.net>" => b"250 2.1.5 OK\r\n",
//!                 l if l.starts_with("RCPT") => b"550 5.1.1 No such user\r\n",
//!                 "QUIT" => b"221 2.0.0 Bye\r\n",
//!                 _ => b"250 OK\r\n",
//!             };
//!             let _ = w.write_all(reply).await;
//!         }
//!     }
//! });
//!
//! let config = CalloutConfig::new("backup.example.net").with_tls(TlsPolicy::Never);
//! let callout = SmtpCallout::new(config, Arc::new(ManualClock::default())).unwrap();
//! let primary = [HopHost::new("primary.example.net", vec!["127.0.0.1".parse().unwrap()], port)];
//!
//! let alice = Address::parse("alice@example.net").unwrap();
//! assert_eq!(callout.verify(&alice, &primary).await, CalloutResult::Exists);
//! let ghost = Address::parse("ghost@example.net").unwrap();
//! let CalloutResult::DoesNotExist(reply) = callout.verify(&ghost, &primary).await else { panic!() };
//! assert_eq!(reply.code(), 550);
//! // Remembered for the negative lifetime: no second connection.
//! assert_eq!(callout.cached(&ghost), Some(CalloutResult::DoesNotExist(reply)));
//! # });
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use portcullis_core::{Address, Clock, Reply};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};

use crate::smtp_transport::{SmtpTransport, SmtpTransportConfig, SmtpTransportError, TlsPolicy};
use crate::transport::HopHost;

/// Callout settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CalloutConfig {
    /// The name we give in EHLO.
    pub helo_name: String,
    /// STARTTLS policy (opportunistic by default: the probed address is
    /// not sent in the clear when the primary offers TLS).
    pub tls: TlsPolicy,
    /// Connect timeout and the timeout for each command's reply.
    pub command_timeout: Duration,
    /// The whole callout, every host and address and the wait for a
    /// connection slot included. Past it the answer is unknown.
    pub timeout: Duration,
    /// How long "exists" is remembered.
    pub positive_ttl: Duration,
    /// How long "does not exist" is remembered.
    pub negative_ttl: Duration,
    /// How long "unknown" (primary unreachable, 4xx, timeout) is
    /// remembered; zero: never.
    pub unknown_ttl: Duration,
    /// Callouts talking to one primary host (name and port) at a time.
    pub max_per_host: usize,
    /// Cached answers kept; when full, the ones expiring first go first
    /// (negative and unknown answers before positive ones, with the
    /// default lifetimes). Zero: no cache.
    pub max_cache_entries: usize,
    /// How long a primary address that could not be talked to (connection
    /// refused or reset, no greeting, EHLO or a command timed out) is
    /// skipped by every callout; zero: never skipped. A backup MX gets its
    /// traffic when the primary is down: without this, each new recipient
    /// would wait for the same dead host again.
    pub down_ttl: Duration,
}

impl CalloutConfig {
    /// Defaults: opportunistic TLS, 10 s per command, 30 s per callout
    /// (Exim's callout default is 30 s), cache 1 h positive, 10 min
    /// negative, 1 min unknown, 4 callouts per primary host, 100 000 cached
    /// answers, an address that fails skipped for 1 min.
    pub fn new(helo_name: impl Into<String>) -> Self {
        CalloutConfig {
            helo_name: helo_name.into(),
            tls: TlsPolicy::Opportunistic,
            command_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            positive_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(600),
            unknown_ttl: Duration::from_secs(60),
            max_per_host: 4,
            max_cache_entries: 100_000,
            down_ttl: Duration::from_secs(60),
        }
    }

    /// Set [`CalloutConfig::tls`].
    pub fn with_tls(mut self, tls: TlsPolicy) -> Self {
        self.tls = tls;
        self
    }

    /// Set [`CalloutConfig::command_timeout`] and [`CalloutConfig::timeout`].
    pub fn with_timeouts(mut self, command: Duration, total: Duration) -> Self {
        self.command_timeout = command;
        self.timeout = total;
        self
    }

    /// Set the cache lifetimes: positive, negative, unknown.
    pub fn with_cache_ttls(
        mut self,
        positive: Duration,
        negative: Duration,
        unknown: Duration,
    ) -> Self {
        self.positive_ttl = positive;
        self.negative_ttl = negative;
        self.unknown_ttl = unknown;
        self
    }

    /// Set [`CalloutConfig::max_per_host`] (at least 1).
    pub fn with_max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = n.max(1);
        self
    }

    /// Set [`CalloutConfig::max_cache_entries`].
    pub fn with_max_cache_entries(mut self, n: usize) -> Self {
        self.max_cache_entries = n;
        self
    }

    /// Set [`CalloutConfig::down_ttl`].
    pub fn with_down_ttl(mut self, ttl: Duration) -> Self {
        self.down_ttl = ttl;
        self
    }
}

/// What the primary says about a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum CalloutResult {
    /// The primary accepted `RCPT TO` (2xx).
    Exists,
    /// The primary said the mailbox does not exist (550/551/553 with a
    /// `5.1.x` code); its reply. Safe to reject with.
    DoesNotExist(Reply),
    /// No conclusive answer. Never a reason to reject permanently.
    Unknown(UnknownReason),
}

/// Why a callout gave no conclusive answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownReason {
    /// No primary host or address to ask.
    NoPrimary,
    /// A primary answered, but not conclusively: a 4xx to `MAIL` or `RCPT`,
    /// a refused null sender, or a 5xx that is not "no such user".
    Inconclusive(Reply),
    /// No primary could be talked to (refused, reset, no 220 greeting,
    /// EHLO or STARTTLS failed, a command timed out); the last failure, as
    /// a local 4xx reply or the primary's own.
    Unreachable(Reply),
    /// The callout's deadline passed mid-dialogue.
    Timeout,
    /// Every primary host was at its concurrency limit until the deadline.
    Busy,
}

/// SMTP callouts to primary MX hosts, with a cache and a per-host
/// concurrency limit. See the module docs. `Send + Sync`; share it.
pub struct SmtpCallout {
    config: CalloutConfig,
    transport: SmtpTransport,
    clock: Arc<dyn Clock>,
    cache: Mutex<Cache>,
    slots: Mutex<HashMap<(String, u16), Arc<Semaphore>>>,
    /// Callouts under way, by recipient key, for callers to share.
    inflight: Mutex<HashMap<String, Arc<OnceCell<CalloutResult>>>>,
    /// Primary addresses that failed, until when, and how.
    down: Mutex<HashMap<SocketAddr, (SystemTime, Reply)>>,
}

/// A caller's share of an in-flight callout. Its drop removes the entry
/// once the answer is in (it is cached by then) or when the last caller
/// gives up, so abandoned callouts do not pile up. Every clone and drop of
/// the cell happens under the `inflight` lock, which keeps the count exact.
struct Inflight<'a> {
    callout: &'a SmtpCallout,
    key: String,
    cell: Option<Arc<OnceCell<CalloutResult>>>,
}

impl<'a> Inflight<'a> {
    fn join(callout: &'a SmtpCallout, key: String) -> Self {
        let cell = callout
            .lock_inflight()
            .entry(key.clone())
            .or_default()
            .clone();
        Inflight {
            callout,
            key,
            cell: Some(cell),
        }
    }

    /// The shared answer, running `ask` if no one else is (or if the one
    /// who was got cancelled).
    async fn answer<F: Future<Output = CalloutResult>>(
        &self,
        ask: impl FnOnce() -> F,
    ) -> CalloutResult {
        match &self.cell {
            Some(cell) => cell.get_or_init(ask).await.clone(),
            // Only after drop began; not reachable from `verify`.
            None => ask().await,
        }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut inflight = self.callout.lock_inflight();
        let Some(cell) = self.cell.take() else {
            return;
        };
        let ours = inflight
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &cell));
        // Two references: the map's and ours.
        if ours && (cell.initialized() || Arc::strong_count(&cell) == 2) {
            inflight.remove(&self.key);
        }
        drop(cell);
        drop(inflight);
    }
}

impl std::fmt::Debug for SmtpCallout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCallout")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How one connection's dialogue ended.
enum Probe {
    /// Exists or does not exist.
    Conclusive(CalloutResult),
    /// The primary answered without deciding: try the next host.
    Inconclusive(Reply),
    /// The connection failed: try the next address.
    Failed(Reply),
}

impl SmtpCallout {
    /// A callout with `config`, reading cache expiry from `clock`.
    pub fn new(config: CalloutConfig, clock: Arc<dyn Clock>) -> Result<Self, SmtpTransportError> {
        let transport = SmtpTransport::new(
            SmtpTransportConfig::new(config.helo_name.clone())
                .with_tls(config.tls)
                .with_timeout(config.command_timeout),
        )?;
        Ok(SmtpCallout {
            cache: Mutex::new(Cache::new(config.max_cache_entries)),
            config,
            transport,
            clock,
            slots: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CalloutConfig {
        &self.config
    }

    /// Whether `recipient` exists, asking `primaries` (in order) unless a
    /// cached answer is still fresh. Concurrent calls for the same
    /// recipient share one callout (the first caller's `primaries`); if the
    /// caller running it is cancelled, a waiting one takes over.
    pub async fn verify(&self, recipient: &Address, primaries: &[HopHost]) -> CalloutResult {
        if let Some(hit) = self.cached(recipient) {
            return hit;
        }
        let share = Inflight::join(self, recipient.key());
        share
            .answer(|| self.ask_and_remember(recipient, primaries))
            .await
    }

    async fn ask_and_remember(&self, recipient: &Address, primaries: &[HopHost]) -> CalloutResult {
        // A callout that finished between our cache miss and joining.
        if let Some(hit) = self.cached(recipient) {
            return hit;
        }
        let result = self.ask(recipient, primaries).await;
        let ttl = match &result {
            CalloutResult::Exists => Some(self.config.positive_ttl),
            CalloutResult::DoesNotExist(_) => Some(self.config.negative_ttl),
            CalloutResult::Unknown(
                UnknownReason::Inconclusive(_)
                | UnknownReason::Unreachable(_)
                | UnknownReason::Timeout,
            ) => Some(self.config.unknown_ttl),
            // Nothing was asked: nothing learnt about the recipient.
            CalloutResult::Unknown(_) => None,
        };
        if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
            let now = self.clock.now();
            let expires = now.checked_add(ttl).unwrap_or(now);
            self.lock_cache()
                .insert(recipient.key(), result.clone(), expires, now);
        }
        tracing::debug!(recipient = %recipient, ?result, "callout");
        result
    }

    /// The cached answer for `recipient`, if still fresh. Asks no one.
    pub fn cached(&self, recipient: &Address) -> Option<CalloutResult> {
        self.lock_cache().get(&recipient.key(), self.clock.now())
    }

    /// Forget the cached answer for `recipient` (e.g. the operator just
    /// created the mailbox on the primary).
    pub fn forget(&self, recipient: &Address) {
        self.lock_cache().remove(&recipient.key());
    }

    /// Cached answers, fresh or not yet evicted.
    pub fn cache_len(&self) -> usize {
        self.lock_cache().entries.len()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<CalloutResult>>>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why `addr` is being skipped, if it failed within `down_ttl`.
    fn down_reply(&self, addr: SocketAddr) -> Option<Reply> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let (until, reply) = down.get(&addr)?;
        if *until > self.clock.now() {
            return Some(reply.clone());
        }
        down.remove(&addr);
        None
    }

    /// Skip `addr` for `down_ttl` because of `reply`.
    fn mark_down(&self, addr: SocketAddr, reply: &Reply) {
        if self.config.down_ttl.is_zero() {
            return;
        }
        let now = self.clock.now();
        let until = now.checked_add(self.config.down_ttl).unwrap_or(now);
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        // Only as many entries as primaries that failed lately.
        down.retain(|_, (t, _)| *t > now);
        down.insert(addr, (until, reply.clone()));
    }

    /// Primary addresses being skipped after a failure (see
    /// [`CalloutConfig::down_ttl`]).
    pub fn down_addresses(&self) -> Vec<SocketAddr> {
        let now = self.clock.now();
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        let mut addrs: Vec<_> = down
            .iter()
            .filter(|(_, (t, _))| *t > now)
            .map(|(a, _)| *a)
            .collect();
        addrs.sort();
        addrs
    }

    fn slot(&self, host: &HopHost) -> Arc<Semaphore> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((host.name.clone(), host.port))
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_per_host.max(1))))
            .clone()
    }

    async fn ask(&self, recipient: &Address, primaries: &[HopHost]) -> CalloutResult {
        let deadline = Instant::now() + self.config.timeout;
        let mut last: Option<UnknownReason> = None;
        'hosts: for host in primaries {
            for ip in &host.addrs {
                let addr = SocketAddr::new(*ip, host.port);
                if let Some(reply) = self.down_reply(addr) {
                    // Failed moments ago: not worth another wait.
                    if !matches!(last, Some(UnknownReason::Inconclusive(_))) {
                        last = Some(UnknownReason::Unreachable(reply));
                    }
                    continue;
                }
                let slot = self.slot(host);
                let Ok(Ok(permit)) = timeout_at(deadline, slot.acquire_owned()).await else {
                    // Out of time waiting for this host: no time for others.
                    return CalloutResult::Unknown(last.unwrap_or(UnknownReason::Busy));
                };
                match timeout_at(deadline, self.probe(host, addr, recipient, permit)).await {
                    Err(_) => return CalloutResult::Unknown(UnknownReason::Timeout),
                    Ok(Probe::Conclusive(result)) => return result,
                    Ok(Probe::Inconclusive(reply)) => {
                        tracing::debug!(host = %host.name, %addr, %reply, "callout inconclusive");
                        last = Some(UnknownReason::Inconclusive(reply));
                        continue 'hosts;
                    }
                    Ok(Probe::Failed(reply)) => {
                        tracing::debug!(host = %host.name, %addr, %reply, "callout connection failed");
                        self.mark_down(addr, &reply);
                        // A primary's own inconclusive answer says more.
                        if !matches!(last, Some(UnknownReason::Inconclusive(_))) {
                            last = Some(UnknownReason::Unreachable(reply));
                        }
                    }
                }
            }
        }
        CalloutResult::Unknown(last.unwrap_or(UnknownReason::NoPrimary))
    }

    /// One connection: greeting and EHLO (by the transport), null sender,
    /// the recipient, then QUIT. `permit` is held until the connection is
    /// closed.
    async fn probe(
        &self,
        host: &HopHost,
        addr: SocketAddr,
        recipient: &Address,
        permit: OwnedSemaphorePermit,
    ) -> Probe {
        let mut conn = match self.transport.connect(host, addr).await {
            Ok(c) => c,
            Err(reply) => return Probe::Failed(reply),
        };
        // RFC 6531 §3.4: a UTF-8 mailbox needs SMTPUTF8 on MAIL; a primary
        // without it refuses, which is inconclusive.
        let mail: &[u8] = if recipient.is_utf8() {
            b"MAIL FROM:<> SMTPUTF8\r\n"
        } else {
            b"MAIL FROM:<>\r\n"
        };
        let outcome = match conn.command(mail).await {
            Err(reply) => return Probe::Failed(reply),
            Ok(r) if !(200..300).contains(&r.code()) => Probe::Inconclusive(r),
            Ok(_) => match conn
                .command(format!("RCPT TO:<{recipient}>\r\n").as_bytes())
                .await
            {
                Err(reply) => return Probe::Failed(reply),
                Ok(r) => classify(r),
            },
        };
        // Say goodbye without making the caller wait for the reply; the
        // slot stays taken until the connection is gone.
        tokio::spawn(async move {
            let _ = conn.command(b"QUIT\r\n").await;
            drop(permit);
        });
        outcome
    }
}

/// Classify the reply to `RCPT TO` (module docs).
fn classify(reply: Reply) -> Probe {
    let code = reply.code();
    if (200..300).contains(&code) {
        return Probe::Conclusive(CalloutResult::Exists);
    }
    // RFC 3463 §3.2: X.1.x is "addressing status"; 550/551/553 are the
    // RFC 5321 §4.2.2 mailbox codes.
    let addressing = reply
        .enhanced()
        .is_some_and(|e| e.class == 5 && e.subject == 1);
    if matches!(code, 550 | 551 | 553) && addressing {
        Probe::Conclusive(CalloutResult::DoesNotExist(reply))
    } else {
        Probe::Inconclusive(reply)
    }
}

/// Answers by recipient key, with an expiry index so that eviction when
/// full drops whatever expires first.
struct Cache {
    entries: HashMap<String, (CalloutResult, SystemTime)>,
    by_expiry: BTreeSet<(SystemTime, String)>,
    cap: usize,
}

impl Cache {
    fn new(cap: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            cap,
        }
    }

    fn get(&mut self, key: &str, now: SystemTime) -> Option<CalloutResult> {
        let (result, expires) = self.entries.get(key)?;
        if *expires > now {
            return Some(result.clone());
        }
        self.remove(key);
        None
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, expires)) = self.entries.remove(key) {
            self.by_expiry.remove(&(expires, key.to_owned()));
        }
    }

    fn insert(&mut self, key: String, result: CalloutResult, expires: SystemTime, now: SystemTime) {
        if self.cap == 0 {
            return;
        }
        self.remove(&key);
        // Expired entries first, then the soonest to expire, until there is room.
        while let Some((first, _)) = self.by_expiry.first()
            && (*first <= now || self.entries.len() >= self.cap)
        {
            if let Some((_, k)) = self.by_expiry.pop_first() {
                self.entries.remove(&k);
            }
        }
        self.by_expiry.insert((expires, key.clone()));
        self.entries.insert(key, (result, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn cache_evicts_soonest_expiry_when_full() {
        let mut c = Cache::new(2);
        c.insert("pos".into(), CalloutResult::Exists, t(3600), t(0));
        let neg = CalloutResult::DoesNotExist(Reply::no_such_user());
        c.insert("neg".into(), neg.clone(), t(600), t(0));
        c.insert("new".into(), CalloutResult::Exists, t(3600), t(1));
        assert_eq!(c.get("neg", t(1)), None);
        assert_eq!(c.get("pos", t(1)), Some(CalloutResult::Exists));
        assert_eq!(c.get("new", t(1)), Some(CalloutResult::Exists));
        assert_eq!(c.entries.len(), c.by_expiry.len());
        // Expired entries are swept on insert even with room to spare.
        let mut c = Cache::new(10);
        c.insert("a".into(), neg.clone(), t(10), t(0));
        c.insert("b".into(), neg, t(100), t(20));
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.by_expiry.len(), 1);
    }

    #[tokio::test]
    async fn abandoned_and_finished_callouts_leave_no_inflight_entry() {
        let clock = Arc::new(portcullis_core::ManualClock::default());
        let callout = SmtpCallout::new(CalloutConfig::new("backup.test"), clock).unwrap();
        let len = || callout.lock_inflight().len();
        // Two callers give up before an answer: the entry goes with the last.
        let a = Inflight::join(&callout, "x@example.net".into());
        let b = Inflight::join(&callout, "x@example.net".into());
        assert_eq!(len(), 1);
        drop(a);
        assert_eq!(len(), 1);
        drop(b);
        assert_eq!(len(), 0);
        // Answered: the first caller to leave removes it; the other still
        // holds the answer.
        let a = Inflight::join(&callout, "y@example.net".into());
        let b = Inflight::join(&callout, "y@example.net".into());
        let answer = a.answer(|| async { CalloutResult::Exists }).await;
        assert_eq!(answer, CalloutResult::Exists);
        drop(a);
        assert_eq!(len(), 0);
        let shared = b.answer(|| async { panic!("asked twice") }).await;
        assert_eq!(shared, CalloutResult::Exists);
    }

    #[test]
    fn classification() {
        let exists = |r| matches!(classify(r), Probe::Conclusive(CalloutResult::Exists));
        let gone = |r| {
            matches!(
                classify(r),
                Probe::Conclusive(CalloutResult::DoesNotExist(_))
            )
        };
        assert!(exists(Reply::new(250, (2, 1, 5), "ok")));
        assert!(exists(Reply::new(251, (2, 1, 5), "will forward")));
        assert!(gone(Reply::new(550, (5, 1, 1), "no such user")));
        assert!(gone(Reply::new(551, (5, 1, 6), "moved")));
        assert!(gone(Reply::new(553, (5, 1, 3), "bad syntax")));
        // Policy, a bare 550 (arrives as 5.0.0), other codes, 4xx: inconclusive.
        assert!(matches!(
            classify(Reply::new(550, (5, 7, 1), "relay denied")),
            Probe::Inconclusive(_)
        ));
        assert!(matches!(
            classify(Reply::new(550, (0, 0, 0), "nope")),
            Probe::Inconclusive(_)
        ));
        assert!(matches!(
            classify(Reply::new(554, (5, 1, 1), "odd")),
            Probe::Inconclusive(_)
        ));
        assert!(matches!(
            classify(Reply::new(450, (4, 1, 1), "later")),
            Probe::Inconclusive(_)
        ));
        assert!(matches!(
            classify(Reply::plain(354, "go ahead")),
            Probe::Inconclusive(_)
        ));
    }
}
