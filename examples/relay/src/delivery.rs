//! Delivery: the queue's sans-IO [`Scheduler`] driven by a tokio task.
//!
//! Messages come from the spool (new ones from the listeners, recovered ones
//! at start). Each due delivery goes to the Maildir of a local recipient or
//! through the remote transport (MX, smarthost or a per-domain route). Every
//! state change is persisted with `Spool::set_state` before the next attempt,
//! and a message is removed only when every recipient is final, so a crash
//! at any point redelivers at worst, never loses.
//!
//! Backup-MX mail runs in its own scheduler whose lifetime is the backup
//! hold time (8 days by default); everything else uses the delivery lifetime.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use portcullis_core::{Clock, Domain, Envelope, Recipient, Reply};
use portcullis_queue::{
    Delivery, DeliveryRequest, DsnConfig, DsnKind, DsnRecipient, MessageInfo, Outcome, QueueEvent,
    QueueId, Scheduler, SchedulerConfig, Spool, build_dsn,
};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::maildir;
use crate::routing::Router;
use crate::rules::{Destination, RelayRules};

/// The two schedulers: ordinary mail and backup-MX mail.
struct Schedulers {
    normal: Scheduler,
    backup: Scheduler,
}

impl Schedulers {
    fn owner(&mut self, id: QueueId) -> &mut Scheduler {
        if self.backup.delivery_state(id).is_some() {
            &mut self.backup
        } else {
            &mut self.normal
        }
    }
}

/// Shared delivery engine.
pub(crate) struct Deliverer {
    spool: Spool,
    schedulers: Mutex<Schedulers>,
    /// Serialises "snapshot state → write it" so an older snapshot of a
    /// message never overwrites a newer one.
    persist: tokio::sync::Mutex<()>,
    wake: Notify,
    clock: Arc<dyn Clock>,
    /// Local domains, backup domains, forwards: replaced on SIGHUP.
    rules: RwLock<Arc<RelayRules>>,
    mailboxes: PathBuf,
    hostname: String,
    /// Routes and smarthost: replaced on SIGHUP.
    router: RwLock<Arc<Router>>,
    slots: Arc<Semaphore>,
}

/// Delivery settings taken from the configuration.
pub(crate) struct DeliverySettings {
    pub(crate) max_lifetime: Duration,
    pub(crate) backup_hold: Duration,
    pub(crate) concurrency: usize,
    pub(crate) first_retry: Duration,
}

// `SchedulerConfig` is #[non_exhaustive]: no struct literal from outside.
#[allow(clippy::field_reassign_with_default)]
fn sched_config(lifetime: Duration, first_retry: Duration) -> SchedulerConfig {
    let mut c = SchedulerConfig::default();
    c.max_lifetime = lifetime;
    c.first_retry = first_retry;
    c.max_retry = c.max_retry.max(first_retry);
    c
}

impl Deliverer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        spool: Spool,
        clock: Arc<dyn Clock>,
        rules: Arc<RelayRules>,
        mailboxes: PathBuf,
        hostname: String,
        router: Arc<Router>,
        settings: &DeliverySettings,
    ) -> Arc<Self> {
        let d = Arc::new(Deliverer {
            spool,
            schedulers: Mutex::new(Schedulers {
                normal: Scheduler::new(sched_config(settings.max_lifetime, settings.first_retry)),
                backup: Scheduler::new(sched_config(settings.backup_hold, settings.first_retry)),
            }),
            persist: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            clock,
            rules: RwLock::new(rules),
            mailboxes,
            hostname,
            router: RwLock::new(router),
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        });
        // Whatever survived the last run (crash or shutdown) is due again.
        let now = d.clock.now();
        for info in d.spool.list() {
            d.enqueue_info(&info, now);
        }
        d
    }

    fn lock(&self) -> MutexGuard<'_, Schedulers> {
        // A panic while holding the lock cannot leave the scheduler in a
        // state worse than the spool knows; keep going.
        self.schedulers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rules(&self) -> Arc<RelayRules> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn router(&self) -> Arc<Router> {
        self.router
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Put reloaded rules and routes in force for the next delivery
    /// attempts (one under way finishes with what it started with).
    pub(crate) fn reconfigure(&self, rules: Arc<RelayRules>, router: Arc<Router>) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rules;
        *self
            .router
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = router;
    }

    pub(crate) fn spool(&self) -> &Spool {
        &self.spool
    }

    fn is_backup(&self, envelope: &Envelope) -> bool {
        let rules = self.rules();
        envelope
            .recipients
            .iter()
            .any(|r| rules.destination(&r.path) == Destination::Backup)
    }

    fn enqueue_info(&self, info: &MessageInfo, now: SystemTime) {
        let backup = self.is_backup(&info.envelope);
        let mut s = self.lock();
        if backup {
            s.backup.enqueue(info, now);
        } else {
            s.normal.enqueue(info, now);
        }
    }

    /// A message was just stored: schedule it.
    pub(crate) fn submit(&self, id: QueueId) {
        match self.spool.inspect(id) {
            Ok(info) => {
                self.enqueue_info(&info, self.clock.now());
                self.wake.notify_one();
            }
            Err(e) => tracing::error!(queue_id = %id, error = %e, "stored message not found"),
        }
    }

    /// Messages queued (pending or in flight).
    pub(crate) fn queued(&self) -> usize {
        let s = self.lock();
        s.normal.len() + s.backup.len()
    }

    /// Admin: hold a message (spool, then scheduler). Blocking (fsync).
    pub(crate) fn admin_hold(&self, id: QueueId) -> Result<(), portcullis_queue::SpoolError> {
        self.spool.hold(id)?;
        self.lock().owner(id).hold(id, portcullis_queue::Hold::Held);
        Ok(())
    }

    /// Admin: release a held or quarantined message and make it due now.
    /// A quarantined message was never scheduled: it is enqueued here.
    pub(crate) fn admin_release(&self, id: QueueId) -> Result<(), portcullis_queue::SpoolError> {
        let state = self.spool.release(id)?;
        if state.is_complete() {
            return Ok(());
        }
        let info = self.spool.inspect(id)?;
        let now = self.clock.now();
        let backup = self.is_backup(&info.envelope);
        {
            let mut s = self.lock();
            let sched = if backup { &mut s.backup } else { &mut s.normal };
            if sched.contains(id) {
                sched.release(id, now);
            } else {
                sched.enqueue(&info, now);
            }
            sched.deliver_now(id, now);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Admin: deliver now, ignoring the retry backoff.
    pub(crate) fn admin_deliver_now(
        &self,
        id: QueueId,
    ) -> Result<(), portcullis_queue::SpoolError> {
        self.spool.deliver_now(id)?;
        self.lock().owner(id).deliver_now(id, self.clock.now());
        self.wake.notify_one();
        Ok(())
    }

    /// Admin: delete a message without a DSN.
    pub(crate) fn admin_delete(&self, id: QueueId) -> Result<(), portcullis_queue::SpoolError> {
        {
            let mut s = self.lock();
            s.normal.remove(id);
            s.backup.remove(id);
        }
        self.spool.remove(id)
    }

    /// Run until `shutdown` turns true, then wait up to `grace` for
    /// deliveries in flight (their outcomes are persisted; the rest stays
    /// spooled for the next start).
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let mut tasks = JoinSet::new();
        loop {
            let now = self.clock.now();
            let due: Vec<Delivery> = {
                let mut s = self.lock();
                let mut due = Vec::new();
                while let Some(d) = s.normal.next_due(now) {
                    due.push(d);
                }
                while let Some(d) = s.backup.next_due(now) {
                    due.push(d);
                }
                due
            };
            // Timers (expiry, delay warnings) raise events without a delivery.
            self.drain_events().await;
            for d in due {
                let me = self.clone();
                tasks.spawn(async move { me.attempt(d).await });
            }
            while tasks.try_join_next().is_some() {}
            let wakeup = {
                let s = self.lock();
                match (s.normal.next_wakeup(), s.backup.next_wakeup()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let sleep = wakeup
                .map(|w| w.duration_since(self.clock.now()).unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600))
                // Wake at least every minute for spool housekeeping.
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {
                    let spool = self.spool.clone();
                    let now = self.clock.now();
                    let _ = tokio::task::spawn_blocking(move || spool.maintain(now)).await;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                "shutdown: waiting for deliveries in flight"
            );
            let _ =
                tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
                    .await;
        }
    }

    /// One delivery attempt: read, deliver, report, persist.
    async fn attempt(self: Arc<Self>, delivery: Delivery) {
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        let id = delivery.id;
        let spool = self.spool.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let info = spool.inspect(id)?;
            let message = spool.read(id)?;
            Ok::<_, portcullis_queue::SpoolError>((info, message))
        })
        .await;
        let outcomes = match loaded {
            Ok(Ok((info, message))) => self.deliver(&delivery, &info, &message).await,
            Ok(Err(e)) => {
                tracing::error!(queue_id = %id, error = %e, "cannot read spooled message");
                vec![Outcome::Deferred(Reply::temporary_failure()); delivery.recipients.len()]
            }
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "spool read task failed");
                vec![Outcome::Deferred(Reply::temporary_failure()); delivery.recipients.len()]
            }
        };
        crate::metrics::delivery(&outcomes);
        {
            let now = self.clock.now();
            let mut s = self.lock();
            s.owner(id).on_outcome(&delivery, &outcomes, now);
        }
        self.drain_events().await;
        self.wake.notify_one();
    }

    async fn deliver(&self, d: &Delivery, info: &MessageInfo, message: &[u8]) -> Vec<Outcome> {
        let rcpts: Vec<&Recipient> = d
            .recipients
            .iter()
            .filter_map(|&i| info.envelope.recipients.get(i))
            .collect();
        let rules = self.rules();
        let router = self.router();
        let local = d.destination.is_empty()
            || Domain::parse(&d.destination).is_ok_and(|dom| rules.is_local_domain(&dom));
        let mut via = String::from("maildir");
        let outcomes = if local {
            self.deliver_local(d, info, message).await
        } else {
            match router.next_hop(&d.destination, self.clock.now()).await {
                Ok(hop) => {
                    via = hop
                        .hosts
                        .iter()
                        .map(|h| format!("{}:{}", h.name, h.port))
                        .collect::<Vec<_>>()
                        .join(",");
                    let req = DeliveryRequest::new(&hop, &info.envelope, &rcpts, message);
                    // RFC 8689 §4.2.2: `TLS-Required: No` lets configured
                    // TLS requirements go (opportunistic TLS instead); the
                    // field is ignored when REQUIRETLS was asked (§4.1).
                    let tls_optional = !info.envelope.params.requiretls && tls_required_no(message);
                    let mut out = router.transport_for(tls_optional).deliver(req).await;
                    out.resize(rcpts.len(), Outcome::Deferred(Reply::temporary_failure()));
                    out
                }
                Err(outcome) => {
                    via = "(no route)".into();
                    vec![outcome; rcpts.len()]
                }
            }
        };
        // Backup MX: what the primary said teaches which recipients exist.
        rules.learn_outcomes(&rcpts, &outcomes);
        // One line per attempt: every recipient with its result and reply.
        let results: Vec<String> = rcpts
            .iter()
            .zip(&outcomes)
            .map(|(r, o)| {
                let verdict = match o {
                    Outcome::Relayed {
                        dsn_passed_on: true,
                        ..
                    } => "delivered/notify-passed-on",
                    Outcome::Relayed { .. } => "delivered/relayed-dsn",
                    o if o.is_accepted() => "delivered",
                    Outcome::Deferred(_) => "deferred",
                    Outcome::Bounced(_) => "bounced",
                    _ => "other",
                };
                format!("{}={verdict} ({})", r.path, o.reply())
            })
            .collect();
        tracing::info!(
            queue_id = %d.id,
            attempt = d.attempt,
            destination = if d.destination.is_empty() { "(postmaster)" } else { d.destination.as_str() },
            via = %via,
            sender = %info.envelope.reverse_path,
            results = %results.join("; "),
            "delivery attempt"
        );
        outcomes
    }

    async fn deliver_local(
        &self,
        d: &Delivery,
        info: &MessageInfo,
        message: &[u8],
    ) -> Vec<Outcome> {
        let mut jobs = Vec::new();
        let rules = self.rules();
        for &i in &d.recipients {
            let Some(r) = info.envelope.recipients.get(i) else {
                continue;
            };
            match rules.destination(&r.path) {
                Destination::Local(addr) => jobs.push((i, Some(addr))),
                _ => jobs.push((i, None)),
            }
        }
        let root = self.mailboxes.clone();
        let host = self.hostname.clone();
        let sender = info.envelope.reverse_path.clone();
        let id = d.id;
        let message = message.to_vec();
        let res = tokio::task::spawn_blocking(move || {
            jobs.into_iter()
                .map(|(i, addr)| match addr {
                    None => Outcome::Bounced(Reply::new(550, (5, 1, 1), "Not a local mailbox")),
                    Some(addr) => {
                        match maildir::deliver(&root, &addr, &sender, &format!("{id}-{i}"), &host, &message)
                        {
                            Ok(_) => Outcome::Delivered(Reply::new(
                                250,
                                (2, 0, 0),
                                "Delivered to mailbox",
                            )),
                            Err(e) => {
                                tracing::error!(queue_id = %id, mailbox = %addr, error = %e, "maildir delivery failed");
                                Outcome::Deferred(Reply::new(
                                    451,
                                    (4, 2, 0),
                                    "Mailbox temporarily unavailable",
                                ))
                            }
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        res.unwrap_or_else(|_| {
            vec![Outcome::Deferred(Reply::temporary_failure()); d.recipients.len()]
        })
    }

    /// Take the schedulers' events, log them, send the DSNs they call for
    /// (RFC 3464, built by the queue), and persist what changed.
    async fn drain_events(&self) {
        let _order = self.persist.lock().await;
        let mut writes: Vec<(QueueId, Option<portcullis_queue::DeliveryState>)> = Vec::new();
        let mut reports: Vec<(QueueId, DsnKind, Vec<DsnRecipient>)> = Vec::new();
        {
            let mut guard = self.lock();
            let s = &mut *guard;
            let mut touched: Vec<QueueId> = Vec::new();
            let mut completed: Vec<QueueId> = Vec::new();
            let mut report = |id: QueueId, kind: DsnKind, r: DsnRecipient| match reports
                .iter_mut()
                .find(|(i, k, _)| *i == id && *k == kind)
            {
                Some((_, _, list)) => list.push(r),
                None => reports.push((id, kind, vec![r])),
            };
            for sched in [&mut s.normal, &mut s.backup] {
                while let Some(ev) = sched.poll_event() {
                    let id = match ev {
                        QueueEvent::Completed { id } => {
                            completed.push(id);
                            id
                        }
                        QueueEvent::Bounced {
                            id,
                            recipient,
                            reply,
                            expired,
                        } => {
                            tracing::warn!(queue_id = %id, recipient, expired, reply = %reply, "recipient bounced");
                            if expired {
                                crate::metrics::expired();
                            }
                            report(
                                id,
                                DsnKind::Failure,
                                DsnRecipient::new(recipient, Some(reply)),
                            );
                            id
                        }
                        QueueEvent::DelayWarning { id, recipients } => {
                            tracing::warn!(queue_id = %id, ?recipients, "delivery delayed");
                            for r in recipients {
                                report(id, DsnKind::Delay, DsnRecipient::new(r, None));
                            }
                            id
                        }
                        QueueEvent::Delivered {
                            id,
                            recipient,
                            reply,
                            success_dsn,
                        } => {
                            // RFC 3461 §4.1: `delivered` after a final
                            // delivery, `relayed` after a next hop without
                            // DSN, none when the next hop took NOTIFY over.
                            // `build_dsn` keeps only recipients that asked
                            // NOTIFY=SUCCESS and never writes to `<>`.
                            if let Some(kind) = success_dsn {
                                report(id, kind, DsnRecipient::new(recipient, Some(reply)));
                            }
                            id
                        }
                        QueueEvent::Deferred { id, .. } => id,
                        _ => continue,
                    };
                    if !touched.contains(&id) {
                        touched.push(id);
                    }
                }
            }
            // The freshest state of each message still queued; removal for
            // the completed ones.
            for id in touched {
                if completed.contains(&id) {
                    writes.push((id, None));
                } else if let Some(state) = s.owner(id).delivery_state(id) {
                    writes.push((id, Some(state)));
                }
            }
        }
        if writes.is_empty() && reports.is_empty() {
            return;
        }
        let spool = self.spool.clone();
        let dsn_config = DsnConfig::new(self.hostname.clone());
        let now = self.clock.now();
        let res = tokio::task::spawn_blocking(move || {
            // DSNs first: they need the original, which a removal forgets.
            let mut new_ids = Vec::new();
            for (id, kind, recipients) in reports {
                let (Ok(info), Ok(original)) = (spool.inspect(id), spool.read(id)) else {
                    continue;
                };
                let Some(dsn) = build_dsn(&dsn_config, kind, &info, &recipients, &original, now, None)
                else {
                    continue;
                };
                match spool.store(&dsn.envelope, &dsn.message) {
                    Ok(dsn_id) => {
                        tracing::info!(queue_id = %dsn_id, about = %id, ?kind, to = %info.envelope.reverse_path, "DSN queued");
                        new_ids.push(dsn_id);
                    }
                    Err(e) => tracing::error!(queue_id = %id, error = %e, "cannot queue DSN"),
                }
            }
            new_ids
        })
        .await;
        match res {
            Ok(ids) => {
                for id in ids {
                    self.submit(id);
                }
            }
            Err(e) => tracing::error!(error = %e, "DSN task failed"),
        }
        // One write per message in this batch, all at once: concurrent
        // writers share the spool's fsyncs (group commit). Batches stay in
        // order (the `persist` lock), so a newer state is never overwritten
        // by an older one.
        let mut batch = JoinSet::new();
        for (id, state) in writes {
            let spool = self.spool.clone();
            batch.spawn_blocking(move || {
                let r = match state {
                    None => spool.remove(id),
                    Some(st) => spool.set_state(id, &st),
                };
                if let Err(e) = r {
                    tracing::error!(queue_id = %id, error = %e, "cannot persist delivery state");
                }
            });
        }
        while batch.join_next().await.is_some() {}
    }
}

/// Whether the header section holds `TLS-Required: No` (RFC 8689 §3:
/// the field's only value; case and folding white space ignored).
fn tls_required_no(message: &[u8]) -> bool {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match (line.first(), fields.last_mut()) {
            // RFC 5322 §2.2.3: a continuation line unfolds into the field.
            (Some(b' ' | b'\t'), Some(field)) => field.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    fields.iter().any(|f| {
        let Some(colon) = f.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (&f[..colon], &f[colon + 1..]);
        name.trim_ascii().eq_ignore_ascii_case(b"TLS-Required")
            && value.trim_ascii().eq_ignore_ascii_case(b"No")
    })
}

#[cfg(test)]
mod tests {
    use super::tls_required_no;

    #[test]
    fn tls_required_no_is_found_in_the_header_section_only() {
        assert!(tls_required_no(
            b"Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"
        ));
        assert!(tls_required_no(b"tls-required:no\n\nbody\n"));
        assert!(tls_required_no(b"TLS-Required:\r\n  No \r\n\r\n"), "folded");
        assert!(!tls_required_no(b"TLS-Required: Yes\r\n\r\n"));
        assert!(!tls_required_no(b"X-TLS-Required: No\r\n\r\n"));
        assert!(
            !tls_required_no(b"Subject: x\r\n\r\nTLS-Required: No\r\n"),
            "in the body"
        );
        assert!(!tls_required_no(b"Subject: TLS-Required: No\r\n\r\n"));
        assert!(!tls_required_no(b""));
    }
}
