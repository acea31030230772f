//! The sans-IO retry scheduler.
//!
//! Like the SMTP session it owns no timer and no socket: the caller feeds it
//! messages ([`Scheduler::enqueue`]) and delivery results
//! ([`Scheduler::on_outcome`]) with the current time, asks what is due
//! ([`Scheduler::next_due`]) and when to wake up next
//! ([`Scheduler::next_wakeup`]), and drains [`QueueEvent`]s
//! ([`Scheduler::poll_event`]).
//!
//! Work is queued per recipient domain (the *destination*): a message with
//! recipients in three domains is three independent units, each with its
//! own backoff, so one slow domain never holds up another. Each destination
//! has a concurrency cap and an optional rate limit.
//!
//! Retries back off exponentially (Postfix's defaults: first retry after
//! 5 minutes, doubling, capped at 4000 s ≈ 67 minutes) with deterministic
//! jitter. A message still pending after `max_lifetime` (8 days) bounces
//! with `5.4.7`; a delay warning is raised once after `delay_warning` (4 h).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{ForwardPath, Reply};

use crate::dsn::DsnKind;
use crate::id::QueueId;
use crate::spool::MessageInfo;
use crate::state::{DeliveryState, Hold, RecipientState, RecipientStatus};
use crate::transport::Outcome;

/// Limits for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DestinationLimits {
    /// Deliveries in flight at once (connections, roughly).
    pub max_concurrent: u32,
    /// Deliveries started per minute (`None`: unlimited).
    pub max_per_minute: Option<u32>,
}

impl DestinationLimits {
    /// `max_concurrent` in flight, `max_per_minute` starts per minute.
    pub fn new(max_concurrent: u32, max_per_minute: Option<u32>) -> Self {
        DestinationLimits {
            max_concurrent: max_concurrent.max(1),
            max_per_minute: max_per_minute.map(|n| n.max(1)),
        }
    }
}

impl Default for DestinationLimits {
    /// 20 concurrent (Postfix's `default_destination_concurrency_limit`), no rate limit.
    fn default() -> Self {
        DestinationLimits::new(20, None)
    }
}

/// Scheduler settings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// Delay before the first retry (Postfix `minimal_backoff_time`, 300 s).
    pub first_retry: Duration,
    /// Largest retry delay (Postfix `maximal_backoff_time`, 4000 s).
    pub max_retry: Duration,
    /// Random spread of each delay, as a fraction (0.1 = ±10 %), so
    /// messages deferred together do not retry in lockstep.
    pub jitter: f64,
    /// Bounce what is still pending this long after arrival (8 days,
    /// Postfix `maximal_queue_lifetime`; a backup MX holds mail that long).
    pub max_lifetime: Duration,
    /// Raise a delay warning this long after arrival (`None`: never; 4 h).
    pub delay_warning: Option<Duration>,
    /// Limits for destinations not listed in `limits`.
    pub default_limits: DestinationLimits,
    /// Per-destination limits, keyed by lower-case domain.
    pub limits: HashMap<String, DestinationLimits>,
    /// Seed for the jitter, so runs are reproducible.
    pub jitter_seed: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            first_retry: Duration::from_secs(300),
            max_retry: Duration::from_secs(4000),
            jitter: 0.1,
            max_lifetime: Duration::from_secs(8 * 86_400),
            delay_warning: Some(Duration::from_secs(4 * 3600)),
            default_limits: DestinationLimits::default(),
            limits: HashMap::new(),
            jitter_seed: 0x5eed,
        }
    }
}

impl SchedulerConfig {
    /// The retry delay after `attempts` failed attempts (≥ 1), before jitter:
    /// `first_retry · 2^(attempts-1)`, capped at `max_retry`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(30);
        self.first_retry
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max_retry)
            .min(self.max_retry)
    }

    /// Set per-destination limits for `domain`.
    pub fn with_limits(mut self, domain: &str, limits: DestinationLimits) -> Self {
        self.limits.insert(domain.to_ascii_lowercase(), limits);
        self
    }
}

/// A unit of work handed out by [`Scheduler::next_due`]: deliver message
/// `id` to the recipients listed, all of destination `destination`.
/// Report back with [`Scheduler::on_outcome`].
#[must_use = "a due delivery is counted as in flight until its outcome is reported"]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The message.
    pub id: QueueId,
    /// The destination (lower-case recipient domain).
    pub destination: String,
    /// Envelope indexes of the recipients to deliver to.
    pub recipients: Vec<usize>,
    /// Which attempt this is for the destination (1 = first).
    pub attempt: u32,
}

/// What the scheduler reports. After handling the events of a message that
/// is not [`QueueEvent::Completed`], persist its state
/// ([`Scheduler::delivery_state`] → `Spool::set_state`); after `Completed`,
/// remove it from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueEvent {
    /// A recipient was delivered.
    Delivered {
        /// Message.
        id: QueueId,
        /// Envelope recipient index.
        recipient: usize,
        /// The next hop's reply.
        reply: Reply,
        /// The success DSN owed if the recipient asked `NOTIFY=SUCCESS`
        /// ([`Outcome::success_dsn`]): [`DsnKind::Success`] for a final
        /// delivery, [`DsnKind::Relayed`] after a next hop without DSN,
        /// `None` when the next hop took the request over.
        success_dsn: Option<DsnKind>,
    },
    /// A recipient was deferred and will be retried.
    Deferred {
        /// Message.
        id: QueueId,
        /// Envelope recipient index.
        recipient: usize,
        /// The reply (remote 4xx or local reason).
        reply: Reply,
        /// When it will be tried again.
        next_attempt: SystemTime,
    },
    /// A recipient failed permanently: send a failure DSN if asked.
    Bounced {
        /// Message.
        id: QueueId,
        /// Envelope recipient index.
        recipient: usize,
        /// The remote 5xx, or the last reply when the message expired.
        reply: Reply,
        /// Whether the bounce is the queue lifetime running out (`5.4.7`)
        /// rather than a remote verdict.
        expired: bool,
    },
    /// The message has been pending for `delay_warning`: send a delay DSN
    /// for these recipients if they asked for it. Raised once per message.
    DelayWarning {
        /// Message.
        id: QueueId,
        /// Envelope indexes still pending.
        recipients: Vec<usize>,
    },
    /// Every recipient is delivered or bounced: remove it from the spool.
    Completed {
        /// Message.
        id: QueueId,
    },
}

type Dest = Arc<str>;

#[derive(Debug)]
struct Rcpt {
    group: u16,
    status: RecipientStatus,
    attempts: u32,
    last_reply: Option<Box<Reply>>,
}

#[derive(Debug)]
struct Group {
    dest: Dest,
    due: SystemTime,
    attempts: u32,
    in_flight: bool,
}

#[derive(Debug)]
struct Msg {
    arrival: SystemTime,
    rcpts: Vec<Rcpt>,
    groups: Vec<Group>,
    held: bool,
    hold: Hold,
    delay_warned: bool,
}

#[derive(Debug)]
struct DestQueue {
    waiting: BTreeSet<(SystemTime, QueueId)>,
    in_flight: u32,
    starts: VecDeque<SystemTime>,
    limits: DestinationLimits,
    ready_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    DelayWarning,
    Expiry,
}

/// The retry scheduler. See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    msgs: HashMap<QueueId, Msg>,
    dests: HashMap<Dest, DestQueue>,
    /// Destinations with waiting work and free capacity, by earliest due time.
    ready: BTreeSet<(SystemTime, Dest)>,
    timers: BTreeSet<(SystemTime, QueueId, Timer)>,
    events: VecDeque<QueueEvent>,
}

/// The destination key of a recipient: its lower-case ASCII domain; bare
/// `<Postmaster>` (RFC 5321 §4.1.1.3, this host's postmaster) is `""`.
pub fn destination_of(path: &ForwardPath) -> String {
    match path.address() {
        Some(a) => a.domain().ascii().to_ascii_lowercase(),
        None => String::new(),
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `5.4.7` Delivery time expired (RFC 3463 §3.5).
fn expired_reply(last: Option<&Reply>) -> Reply {
    let text = match last {
        Some(r) => format!("Delivery time expired; last error: {r}"),
        None => "Delivery time expired".to_owned(),
    };
    Reply::new(554, (5, 4, 7), text)
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            msgs: HashMap::new(),
            dests: HashMap::new(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Messages known (pending, held or in flight).
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether `id` is known (pending, held or in flight).
    pub fn contains(&self, id: QueueId) -> bool {
        self.msgs.contains_key(&id)
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Queue a stored message (new, or recovered after a restart: its
    /// persisted attempts, retry times and recipient statuses are honoured,
    /// so delivered recipients are never sent again). Re-enqueueing an id
    /// replaces it; do not re-enqueue one with a delivery in flight (see
    /// [`Scheduler::contains`]), or it could be handed out twice.
    pub fn enqueue(&mut self, info: &MessageInfo, now: SystemTime) {
        let dests: Vec<String> = info
            .envelope
            .recipients
            .iter()
            .map(|r| destination_of(&r.path))
            .collect();
        self.enqueue_parts(info.id, info.arrival, &dests, &info.state, now);
    }

    /// [`Scheduler::enqueue`] from plain parts: the destination of each
    /// recipient (see [`destination_of`]) and its state.
    pub fn enqueue_parts(
        &mut self,
        id: QueueId,
        arrival: SystemTime,
        destinations: &[String],
        state: &DeliveryState,
        now: SystemTime,
    ) {
        self.remove(id);
        let mut groups: Vec<Group> = Vec::new();
        let mut rcpts = Vec::with_capacity(destinations.len());
        for (i, dest) in destinations.iter().enumerate() {
            let rs = state.recipients.get(i).cloned().unwrap_or_default();
            let g = match groups.iter().position(|g| &*g.dest == dest.as_str()) {
                Some(g) => g,
                None => {
                    let key = self
                        .dests
                        .get_key_value(dest.as_str())
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| Arc::from(dest.as_str()));
                    groups.push(Group {
                        dest: key,
                        due: now,
                        attempts: 0,
                        in_flight: false,
                    });
                    groups.len() - 1
                }
            };
            if rs.status == RecipientStatus::Pending {
                let grp = &mut groups[g];
                if let Some(t) = rs.next_attempt {
                    grp.due = grp.due.max(t);
                }
                grp.attempts = grp.attempts.max(rs.attempts);
            }
            rcpts.push(Rcpt {
                group: g as u16,
                status: rs.status,
                attempts: rs.attempts,
                last_reply: rs.last_reply.map(Box::new),
            });
        }
        let msg = Msg {
            arrival,
            rcpts,
            groups,
            held: state.hold.is_held(),
            hold: state.hold.clone(),
            delay_warned: state.delay_warned,
        };
        if msg.rcpts.iter().all(|r| r.status.is_final()) {
            self.events.push_back(QueueEvent::Completed { id });
            return;
        }
        self.timers
            .insert((arrival + self.config.max_lifetime, id, Timer::Expiry));
        if let Some(d) = self.config.delay_warning
            && !msg.delay_warned
        {
            self.timers.insert((arrival + d, id, Timer::DelayWarning));
        }
        let held = msg.held;
        let pending_groups: Vec<(Dest, SystemTime)> = msg
            .groups
            .iter()
            .enumerate()
            .filter(|(gi, _)| {
                msg.rcpts
                    .iter()
                    .any(|r| r.group as usize == *gi && r.status == RecipientStatus::Pending)
            })
            .map(|(_, g)| (g.dest.clone(), g.due))
            .collect();
        self.msgs.insert(id, msg);
        if !held {
            for (dest, due) in pending_groups {
                self.wait(dest, due, id);
            }
        }
    }

    fn limits_for(&self, dest: &str) -> DestinationLimits {
        self.config
            .limits
            .get(dest)
            .copied()
            .unwrap_or(self.config.default_limits)
    }

    fn wait(&mut self, dest: Dest, due: SystemTime, id: QueueId) {
        let limits = self.limits_for(&dest);
        let dq = self.dests.entry(dest.clone()).or_insert_with(|| DestQueue {
            waiting: BTreeSet::new(),
            in_flight: 0,
            starts: VecDeque::new(),
            limits,
            ready_at: None,
        });
        dq.waiting.insert((due, id));
        self.refresh_ready(&dest);
    }

    fn unwait(&mut self, dest: &Dest, due: SystemTime, id: QueueId) {
        if let Some(dq) = self.dests.get_mut(dest) {
            dq.waiting.remove(&(due, id));
        }
        self.refresh_ready(dest);
    }

    /// Recompute the destination's place in `ready`.
    fn refresh_ready(&mut self, dest: &Dest) {
        let Some(dq) = self.dests.get_mut(dest) else {
            return;
        };
        if let Some(t) = dq.ready_at.take() {
            self.ready.remove(&(t, dest.clone()));
        }
        if dq.in_flight >= dq.limits.max_concurrent {
            return; // re-added when a delivery finishes
        }
        let Some(&(first, _)) = dq.waiting.first() else {
            if dq.in_flight == 0 && dq.starts.is_empty() {
                self.dests.remove(dest);
            }
            return;
        };
        let mut at = first;
        if let (Some(max), Some(&oldest)) = (dq.limits.max_per_minute, dq.starts.front())
            && dq.starts.len() as u32 >= max
        {
            at = at.max(oldest + Duration::from_secs(60));
        }
        dq.ready_at = Some(at);
        self.ready.insert((at, dest.clone()));
    }

    fn fire_timers(&mut self, now: SystemTime) {
        while let Some(&(t, id, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Expiry => self.expire(id, now),
                Timer::DelayWarning => {
                    let Some(m) = self.msgs.get_mut(&id) else {
                        continue;
                    };
                    if m.delay_warned || m.held {
                        continue;
                    }
                    let pending: Vec<usize> = m
                        .rcpts
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.status == RecipientStatus::Pending)
                        .map(|(i, _)| i)
                        .collect();
                    if !pending.is_empty() {
                        m.delay_warned = true;
                        self.events.push_back(QueueEvent::DelayWarning {
                            id,
                            recipients: pending,
                        });
                    }
                }
            }
        }
    }

    /// Bounce every pending recipient not currently in flight (in-flight
    /// ones are bounced when their outcome arrives, if still deferred).
    fn expire(&mut self, id: QueueId, _now: SystemTime) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        if m.held {
            // Held mail waits for the operator; it expires when released.
            return;
        }
        let mut unwait = Vec::new();
        for (gi, g) in m.groups.iter().enumerate() {
            if g.in_flight {
                continue;
            }
            let mut any = false;
            for (ri, r) in m.rcpts.iter_mut().enumerate() {
                if r.group as usize == gi && r.status == RecipientStatus::Pending {
                    r.status = RecipientStatus::Bounced;
                    let reply = expired_reply(r.last_reply.as_deref());
                    r.last_reply = Some(Box::new(reply.clone()));
                    self.events.push_back(QueueEvent::Bounced {
                        id,
                        recipient: ri,
                        reply,
                        expired: true,
                    });
                    any = true;
                }
            }
            if any {
                unwait.push((g.dest.clone(), g.due));
            }
        }
        for (dest, due) in unwait {
            self.unwait(&dest, due, id);
        }
        self.complete_if_done(id);
    }

    fn complete_if_done(&mut self, id: QueueId) {
        let done = self
            .msgs
            .get(&id)
            .is_some_and(|m| m.rcpts.iter().all(|r| r.status.is_final()));
        if done {
            if let Some(m) = self.msgs.remove(&id) {
                self.drop_timers(id, m.arrival);
            }
            self.events.push_back(QueueEvent::Completed { id });
        }
    }

    /// Forget a finished message's timers so `next_wakeup` stays honest.
    fn drop_timers(&mut self, id: QueueId, arrival: SystemTime) {
        self.timers
            .remove(&(arrival + self.config.max_lifetime, id, Timer::Expiry));
        if let Some(d) = self.config.delay_warning {
            self.timers.remove(&(arrival + d, id, Timer::DelayWarning));
        }
    }

    /// The next delivery due at `now`, if any destination has due work and
    /// capacity. Also fires expiry and delay-warning timers (their events
    /// come out of [`Scheduler::poll_event`]). Call repeatedly until `None`.
    pub fn next_due(&mut self, now: SystemTime) -> Option<Delivery> {
        self.fire_timers(now);
        loop {
            let (at, dest) = self.ready.first().cloned()?;
            if at > now {
                return None;
            }
            self.ready.pop_first();
            let dq = self.dests.get_mut(&dest)?;
            dq.ready_at = None;
            while dq
                .starts
                .front()
                .is_some_and(|&s| s + Duration::from_secs(60) <= now)
            {
                dq.starts.pop_front();
            }
            if dq.in_flight >= dq.limits.max_concurrent {
                continue;
            }
            if let Some(max) = dq.limits.max_per_minute
                && dq.starts.len() as u32 >= max
            {
                self.refresh_ready(&dest);
                continue;
            }
            let Some(&(due, id)) = dq.waiting.first() else {
                self.refresh_ready(&dest);
                continue;
            };
            if due > now {
                self.refresh_ready(&dest);
                continue;
            }
            dq.waiting.pop_first();
            let Some(m) = self.msgs.get_mut(&id) else {
                self.refresh_ready(&dest);
                continue;
            };
            let Some(gi) = m.groups.iter().position(|g| g.dest == dest) else {
                self.refresh_ready(&dest);
                continue;
            };
            let recipients: Vec<usize> = m
                .rcpts
                .iter()
                .enumerate()
                .filter(|(_, r)| r.group as usize == gi && r.status == RecipientStatus::Pending)
                .map(|(i, _)| i)
                .collect();
            if recipients.is_empty() {
                self.refresh_ready(&dest);
                continue;
            }
            let g = &mut m.groups[gi];
            g.in_flight = true;
            let attempt = g.attempts + 1;
            dq.in_flight += 1;
            dq.starts.push_back(now);
            self.refresh_ready(&dest);
            return Some(Delivery {
                id,
                destination: dest.to_string(),
                recipients,
                attempt,
            });
        }
    }

    /// When [`Scheduler::next_due`] may next return something or a timer
    /// fires (`None`: nothing scheduled; wait for new mail or outcomes).
    pub fn next_wakeup(&self) -> Option<SystemTime> {
        let ready = self.ready.first().map(|(t, _)| *t);
        let timer = self.timers.first().map(|(t, _, _)| *t);
        match (ready, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<QueueEvent> {
        self.events.pop_front()
    }

    /// Report the outcomes of a delivery handed out by
    /// [`Scheduler::next_due`]: one per `delivery.recipients` entry, in order
    /// (missing ones count as deferred). Frees the destination slot,
    /// schedules retries, bounces what expired meanwhile, raises events.
    pub fn on_outcome(&mut self, delivery: &Delivery, outcomes: &[Outcome], now: SystemTime) {
        let dest: Dest = match self.dests.get_key_value(delivery.destination.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(delivery.destination.as_str()),
        };
        if let Some(dq) = self.dests.get_mut(&dest) {
            dq.in_flight = dq.in_flight.saturating_sub(1);
        }
        let id = delivery.id;
        let expiry = self
            .msgs
            .get(&id)
            .map(|m| m.arrival + self.config.max_lifetime);
        let (Some(m), Some(expiry)) = (self.msgs.get_mut(&id), expiry) else {
            self.refresh_ready(&dest);
            return;
        };
        let Some(gi) = m.groups.iter().position(|g| g.dest == dest) else {
            self.refresh_ready(&dest);
            return;
        };
        m.groups[gi].in_flight = false;
        m.groups[gi].attempts += 1;
        let attempts = m.groups[gi].attempts;
        let expired = now >= expiry;
        let delay = jittered(&self.config, id, attempts);
        let next = (now + delay).min(expiry);
        let mut retry = false;
        for (k, &ri) in delivery.recipients.iter().enumerate() {
            let Some(r) = m.rcpts.get_mut(ri) else {
                continue;
            };
            if r.status != RecipientStatus::Pending {
                continue;
            }
            r.attempts += 1;
            let outcome = outcomes.get(k).cloned().unwrap_or_else(|| {
                Outcome::Deferred(Reply::new(451, (4, 4, 0), "No outcome reported"))
            });
            let success_dsn = outcome.success_dsn();
            match outcome {
                Outcome::Delivered(reply) | Outcome::Relayed { reply, .. } => {
                    r.status = RecipientStatus::Delivered;
                    r.last_reply = Some(Box::new(reply.clone()));
                    self.events.push_back(QueueEvent::Delivered {
                        id,
                        recipient: ri,
                        reply,
                        success_dsn,
                    });
                }
                Outcome::Bounced(reply) => {
                    r.status = RecipientStatus::Bounced;
                    r.last_reply = Some(Box::new(reply.clone()));
                    self.events.push_back(QueueEvent::Bounced {
                        id,
                        recipient: ri,
                        reply,
                        expired: false,
                    });
                }
                Outcome::Deferred(reply) if expired => {
                    r.status = RecipientStatus::Bounced;
                    let bounce = expired_reply(Some(&reply));
                    r.last_reply = Some(Box::new(bounce.clone()));
                    self.events.push_back(QueueEvent::Bounced {
                        id,
                        recipient: ri,
                        reply: bounce,
                        expired: true,
                    });
                }
                Outcome::Deferred(reply) => {
                    r.last_reply = Some(Box::new(reply.clone()));
                    retry = true;
                    self.events.push_back(QueueEvent::Deferred {
                        id,
                        recipient: ri,
                        reply,
                        next_attempt: next,
                    });
                }
            }
        }
        // Recipients of the group not in this delivery (none normally) keep waiting too.
        let still_pending = m
            .rcpts
            .iter()
            .any(|r| r.group as usize == gi && r.status == RecipientStatus::Pending);
        let held = m.held;
        if still_pending {
            let due = if retry { next } else { now };
            m.groups[gi].due = due;
            if !held {
                self.wait(dest.clone(), due, id);
            }
        }
        self.refresh_ready(&dest);
        self.complete_if_done(id);
    }

    /// The state to persist for `id` (see [`QueueEvent`]).
    pub fn delivery_state(&self, id: QueueId) -> Option<DeliveryState> {
        let m = self.msgs.get(&id)?;
        let mut s = DeliveryState::new(0);
        s.delay_warned = m.delay_warned;
        s.hold = m.hold.clone();
        s.recipients = m
            .rcpts
            .iter()
            .map(|r| {
                let mut rs = RecipientState::new();
                rs.status = r.status;
                rs.attempts = r.attempts;
                rs.last_reply = r.last_reply.as_deref().cloned();
                if r.status == RecipientStatus::Pending {
                    rs.next_attempt = m.groups.get(r.group as usize).map(|g| g.due);
                }
                rs
            })
            .collect();
        Some(s)
    }

    /// Stop scheduling `id` (admin hold, or quarantine). In-flight
    /// deliveries finish; their retries stay held.
    pub fn hold(&mut self, id: QueueId, hold: Hold) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        let was_held = m.held;
        m.held = hold.is_held();
        m.hold = hold;
        if was_held || !m.held {
            return;
        }
        let waiting: Vec<(Dest, SystemTime)> = m
            .groups
            .iter()
            .filter(|g| !g.in_flight)
            .map(|g| (g.dest.clone(), g.due))
            .collect();
        for (dest, due) in waiting {
            self.unwait(&dest, due, id);
        }
    }

    /// Make a held message deliverable again, due at `now`.
    pub fn release(&mut self, id: QueueId, now: SystemTime) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        if !m.held {
            return;
        }
        m.held = false;
        m.hold = Hold::None;
        self.requeue_now(id, now);
        // A message released after its lifetime expires now.
        if let Some(m) = self.msgs.get(&id)
            && now >= m.arrival + self.config.max_lifetime
        {
            self.expire(id, now);
        }
    }

    /// Admin "deliver now": every waiting destination of `id` becomes due at `now`.
    pub fn deliver_now(&mut self, id: QueueId, now: SystemTime) {
        if self.msgs.get(&id).is_some_and(|m| !m.held) {
            self.requeue_now(id, now);
        }
    }

    fn requeue_now(&mut self, id: QueueId, now: SystemTime) {
        let Some(m) = self.msgs.get_mut(&id) else {
            return;
        };
        let mut moves = Vec::new();
        for (gi, g) in m.groups.iter_mut().enumerate() {
            let pending = m
                .rcpts
                .iter()
                .any(|r| r.group as usize == gi && r.status == RecipientStatus::Pending);
            if g.in_flight || !pending {
                continue;
            }
            moves.push((g.dest.clone(), g.due));
            g.due = now;
        }
        for (dest, old) in moves {
            self.unwait(&dest, old, id);
            self.wait(dest, now, id);
        }
    }

    /// Forget `id` (deleted by an admin, or removed after completion). An
    /// in-flight delivery's outcome is then ignored except for freeing its slot.
    pub fn remove(&mut self, id: QueueId) {
        let Some(m) = self.msgs.remove(&id) else {
            return;
        };
        self.drop_timers(id, m.arrival);
        for g in m.groups {
            if !g.in_flight {
                self.unwait(&g.dest, g.due, id);
            }
        }
    }

    /// Deliveries currently in flight to `destination`.
    pub fn in_flight(&self, destination: &str) -> u32 {
        self.dests.get(destination).map_or(0, |d| d.in_flight)
    }
}

/// The jittered delay before retry number `attempts + 1`, never above `max_retry`.
fn jittered(config: &SchedulerConfig, id: QueueId, attempts: u32) -> Duration {
    let base = config.backoff(attempts);
    let j = config.jitter.clamp(0.0, 1.0);
    let r = splitmix(config.jitter_seed ^ id.0.rotate_left(17) ^ u64::from(attempts));
    // u in [0, 1)
    let u = (r >> 11) as f64 / (1u64 << 53) as f64;
    let factor = 1.0 - j + 2.0 * j * u;
    base.mul_f64(factor).min(config.max_retry)
}
