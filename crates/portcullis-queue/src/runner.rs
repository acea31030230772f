//! [`QueueRunner`]: the glue a server needs between the spool, the
//! scheduler, a [`Router`] and a [`Transport`] — so a relay stays thin.
//!
//! It owns no timer: call [`QueueRunner::run_due`] when
//! [`QueueRunner::next_wakeup`] is reached or new mail was submitted. Each
//! call delivers what is due, persists every state change before moving on
//! (so a crash re-sends at most the deliveries in flight, never to a
//! recipient already recorded as delivered), stores DSNs (from `<>`) back
//! into the spool, removes finished messages, and returns
//! [`DeliveryReport`]s for consumers such as greylist recipient learning
//! and invalid-recipient counters.
//!
//! Spool writes block on `fsync`; they run on tokio's blocking pool.

use futures_util::future::join_all;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use portcullis_core::{Clock, Recipient, Reply};

use crate::dsn::{DsnConfig, DsnKind, DsnRecipient, build_dsn};
use crate::id::QueueId;
use crate::routing::Router;
use crate::scheduler::{Delivery, QueueEvent, Scheduler, SchedulerConfig};
use crate::spool::{MessageInfo, Spool, SpoolError};
use crate::state::Hold;
use crate::transport::{DeliveryRequest, Outcome, Transport};

/// Deliveries started by one [`QueueRunner::run_due`] call; more due work
/// shows as a `next_wakeup` in the past, so the caller simply loops.
const MAX_BATCH: usize = 512;

/// What happened to one recipient, for consumers of delivery results.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryReport {
    /// The next hop accepted it.
    Delivered {
        /// Message.
        id: QueueId,
        /// The recipient.
        recipient: Recipient,
        /// The next hop's reply.
        reply: Reply,
    },
    /// Deferred; will be retried at `next_attempt`.
    Deferred {
        /// Message.
        id: QueueId,
        /// The recipient.
        recipient: Recipient,
        /// The reply (e.g. a greylisting 451 from the primary).
        reply: Reply,
        /// Next try.
        next_attempt: SystemTime,
    },
    /// Failed for good (a failure DSN was queued if the sender asked).
    Bounced {
        /// Message.
        id: QueueId,
        /// The recipient.
        recipient: Recipient,
        /// The 5xx (or `5.4.7` on expiry).
        reply: Reply,
        /// Whether the queue lifetime ran out.
        expired: bool,
    },
}

/// Spool + scheduler + router + transport. See the module docs.
pub struct QueueRunner {
    spool: Spool,
    scheduler: Mutex<Scheduler>,
    router: Arc<dyn Router>,
    transport: Arc<dyn Transport>,
    dsn: DsnConfig,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for QueueRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueRunner")
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SpoolError::Poisoned(format!("spool task failed: {e}"))),
    }
}

impl QueueRunner {
    /// Build a runner and schedule everything the spool recovered.
    pub fn new(
        spool: Spool,
        config: SchedulerConfig,
        router: Arc<dyn Router>,
        transport: Arc<dyn Transport>,
        dsn: DsnConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut scheduler = Scheduler::new(config);
        let now = clock.now();
        for info in spool.list() {
            scheduler.enqueue(&info, now);
        }
        QueueRunner {
            spool,
            scheduler: Mutex::new(scheduler),
            router,
            transport,
            dsn,
            clock,
        }
    }

    fn sched(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Schedule a message just stored with [`Spool::store`].
    pub fn submit(&self, id: QueueId) -> Result<(), SpoolError> {
        let info = self.spool.inspect(id)?;
        self.sched().enqueue(&info, self.clock.now());
        Ok(())
    }

    /// When to call [`QueueRunner::run_due`] next (`None`: on new mail).
    pub fn next_wakeup(&self) -> Option<SystemTime> {
        self.sched().next_wakeup()
    }

    /// Admin: hold a message (spool and scheduler).
    pub fn hold(&self, id: QueueId) -> Result<(), SpoolError> {
        self.spool.hold(id)?;
        self.sched().hold(id, Hold::Held);
        Ok(())
    }

    /// Admin: release a held or quarantined message.
    pub fn release(&self, id: QueueId) -> Result<(), SpoolError> {
        let state = self.spool.release(id)?;
        let info = self.spool.inspect(id)?;
        let mut s = self.sched();
        let now = self.clock.now();
        if state.is_complete() {
            return Ok(());
        }
        if s.contains(id) {
            s.release(id, now);
        } else {
            // A quarantined message was never scheduled: enqueue it now.
            // (Re-enqueueing a known one could duplicate an in-flight delivery.)
            s.enqueue(&info, now);
        }
        s.deliver_now(id, now);
        Ok(())
    }

    /// Admin: deliver now, ignoring the backoff.
    pub fn deliver_now(&self, id: QueueId) -> Result<(), SpoolError> {
        self.spool.deliver_now(id)?;
        self.sched().deliver_now(id, self.clock.now());
        Ok(())
    }

    /// Admin: delete a message without a DSN.
    pub fn delete(&self, id: QueueId) -> Result<(), SpoolError> {
        self.sched().remove(id);
        self.spool.remove(id)
    }

    /// Deliver everything due now (concurrently, within the scheduler's
    /// per-destination limits) and handle the results. Returns what
    /// happened to each recipient.
    pub async fn run_due(&self) -> Result<Vec<DeliveryReport>, SpoolError> {
        let now = self.clock.now();
        let due: Vec<Delivery> = {
            let mut s = self.sched();
            std::iter::from_fn(|| s.next_due(now))
                .take(MAX_BATCH)
                .collect()
        };
        // Timers (expiry, delay warnings) fired inside next_due.
        let mut reports = self.handle_events().await?;
        let mut attempts = Vec::with_capacity(due.len());
        for d in due {
            attempts.push(self.attempt(d));
        }
        for (d, outcomes) in join_all(attempts).await {
            self.sched().on_outcome(&d, &outcomes, self.clock.now());
            reports.extend(self.handle_events().await?);
        }
        Ok(reports)
    }

    async fn attempt(&self, d: Delivery) -> (Delivery, Vec<Outcome>) {
        let spool = self.spool.clone();
        let id = d.id;
        let loaded = blocking(move || Ok((spool.inspect(id)?, spool.read(id)?))).await;
        let (info, message) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(%id, error = %e, "cannot read spooled message");
                let r = Reply::new(451, (4, 3, 0), format!("Local spool error: {e}"));
                let n = d.recipients.len();
                return (d, vec![Outcome::Deferred(r); n]);
            }
        };
        let recipients: Vec<&Recipient> = d
            .recipients
            .iter()
            .filter_map(|&i| info.envelope.recipients.get(i))
            .collect();
        let outcomes = match self.router.route(&d.destination, self.clock.now()).await {
            Ok(hop) => {
                let req = DeliveryRequest::new(&hop, &info.envelope, &recipients, &message);
                self.transport.deliver(req).await
            }
            Err(e) => vec![e.outcome(); recipients.len()],
        };
        (d, outcomes)
    }

    /// Persist, DSN and report everything the scheduler raised.
    async fn handle_events(&self) -> Result<Vec<DeliveryReport>, SpoolError> {
        let events: Vec<QueueEvent> = {
            let mut s = self.sched();
            std::iter::from_fn(|| s.poll_event()).collect()
        };
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut reports = Vec::new();
        // Per message: recipients to report in each DSN kind, completion.
        let mut dsns: HashMap<(QueueId, DsnKind), Vec<DsnRecipient>> = HashMap::new();
        let mut touched: Vec<QueueId> = Vec::new();
        let mut completed: Vec<QueueId> = Vec::new();
        let mut infos: HashMap<QueueId, MessageInfo> = HashMap::new();
        for e in events {
            let id = match &e {
                QueueEvent::Delivered { id, .. }
                | QueueEvent::Deferred { id, .. }
                | QueueEvent::Bounced { id, .. }
                | QueueEvent::DelayWarning { id, .. }
                | QueueEvent::Completed { id } => *id,
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = infos.entry(id) {
                match self.spool.inspect(id) {
                    Ok(i) => {
                        slot.insert(i);
                    }
                    Err(_) => continue, // deleted meanwhile
                }
            }
            let Some(info) = infos.get(&id) else { continue };
            let rcpt = |i: usize| info.envelope.recipients.get(i).cloned();
            match e {
                QueueEvent::Delivered {
                    recipient,
                    reply,
                    success_dsn,
                    ..
                } => {
                    // `delivered` or `relayed`; none when the next hop took
                    // the NOTIFY request over (RFC 3461 §4.1).
                    if let Some(kind) = success_dsn {
                        dsns.entry((id, kind))
                            .or_default()
                            .push(DsnRecipient::new(recipient, Some(reply.clone())));
                    }
                    if let Some(r) = rcpt(recipient) {
                        reports.push(DeliveryReport::Delivered {
                            id,
                            recipient: r,
                            reply,
                        });
                    }
                }
                QueueEvent::Deferred {
                    recipient,
                    reply,
                    next_attempt,
                    ..
                } => {
                    if let Some(r) = rcpt(recipient) {
                        reports.push(DeliveryReport::Deferred {
                            id,
                            recipient: r,
                            reply,
                            next_attempt,
                        });
                    }
                }
                QueueEvent::Bounced {
                    recipient,
                    reply,
                    expired,
                    ..
                } => {
                    dsns.entry((id, DsnKind::Failure))
                        .or_default()
                        .push(DsnRecipient::new(recipient, Some(reply.clone())));
                    if let Some(r) = rcpt(recipient) {
                        reports.push(DeliveryReport::Bounced {
                            id,
                            recipient: r,
                            reply,
                            expired,
                        });
                    }
                }
                QueueEvent::DelayWarning { recipients, .. } => {
                    let state = self.sched().delivery_state(id);
                    let list = dsns.entry((id, DsnKind::Delay)).or_default();
                    for i in recipients {
                        let last = state
                            .as_ref()
                            .and_then(|s| s.recipients.get(i))
                            .and_then(|r| r.last_reply.clone());
                        list.push(DsnRecipient::new(i, last));
                    }
                }
                QueueEvent::Completed { .. } => completed.push(id),
            }
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        // DSNs first (stored durably), then state, then removal: a crash in
        // between repeats a DSN at worst, never loses one.
        let now = self.clock.now();
        let lifetime = self.sched().config().max_lifetime;
        for ((id, kind), rcpts) in dsns {
            let Some(info) = infos.get(&id) else { continue };
            let wanted = rcpts.iter().any(|r| {
                info.envelope
                    .recipients
                    .get(r.index)
                    .is_some_and(|rc| kind.requested_by(rc.effective_notify()))
            });
            if info.envelope.reverse_path.is_null() || !wanted {
                continue;
            }
            let spool = self.spool.clone();
            let original = blocking(move || spool.read(id)).await?;
            let until = (kind == DsnKind::Delay).then(|| info.arrival + lifetime);
            if let Some(dsn) = build_dsn(&self.dsn, kind, info, &rcpts, &original, now, until) {
                let spool = self.spool.clone();
                let dsn_id = blocking(move || spool.store(&dsn.envelope, &dsn.message)).await?;
                self.submit(dsn_id)?;
                tracing::info!(%id, %dsn_id, ?kind, "DSN queued");
            }
        }
        // Persist concurrently so the writes share group commits.
        // `None`: completed, remove; `Some`: the state to store.
        let mut changes: Vec<(QueueId, Option<crate::state::DeliveryState>)> = Vec::new();
        for id in touched {
            if completed.contains(&id) {
                changes.push((id, None));
            } else {
                // Bind first: the scheduler lock must not live across an await.
                let state = self.sched().delivery_state(id);
                if let Some(state) = state {
                    changes.push((id, Some(state)));
                }
            }
        }
        let writes: Vec<_> = changes
            .into_iter()
            .map(|(id, state)| {
                let spool = self.spool.clone();
                blocking(move || match state {
                    None => spool.remove(id),
                    Some(state) => spool.set_state(id, &state),
                })
            })
            .collect();
        for result in join_all(writes).await {
            match result {
                Ok(()) | Err(SpoolError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reports)
    }
}
