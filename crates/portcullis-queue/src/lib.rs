//! Durable mail spool, sans-IO retry scheduler, DSNs and MX routing.
//!
//! A `250` after DATA is a promise: once [`Spool::store`] returns, the
//! message survives a crash or power cut and is delivered, bounced with a
//! DSN, or expired with a DSN — never silently lost.
//!
//! * [`Spool`] ([`spool`]) — the durable store: `store` returns only once
//!   the message and its envelope are `fdatasync`ed; concurrent stores share
//!   syncs (group commit on a segment log); [`Spool::open`] recovers after a
//!   crash (torn writes discarded, corrupt records set aside in `corrupt/`);
//!   per-message state, hold, quarantine, archive. **File I/O**: the spool
//!   directory is this crate's job (the documented exception to "no I/O in
//!   libraries"); no other module touches files.
//! * [`Scheduler`] ([`scheduler`]) — **sans-IO**: no timer, no socket, time
//!   passed in. Per-destination queues, exponential backoff with jitter
//!   (5 min doubling to ~67 min), 8-day lifetime, 4 h delay warnings,
//!   per-destination concurrency and rate limits, [`QueueEvent`]s.
//! * [`build_dsn`] ([`dsn`]) — RFC 3464 reports (failure, delay, success, relayed),
//!   never for a null reverse path, sent from `<>`. No I/O.
//! * [`Transport`] ([`transport`]) — the seam to the network, with
//!   [`FakeTransport`] for tests. No I/O.
//! * [`MxRouter`] / [`StaticRouter`] ([`routing`]) and [`SmtpTransport`]
//!   ([`smtp_transport`]) — **network I/O** (DNS via `hickory-resolver`,
//!   SMTP via `mail-send`), confined to these two modules.
//! * [`downgrade::to_seven_bit`] ([`downgrade`]) — 8-bit MIME bodies to
//!   quoted-printable for a next hop without 8BITMIME. No I/O.
//! * [`SmtpCallout`] ([`callout`]) — backup-MX recipient verification:
//!   `RCPT TO` at the primary without sending a message, cached. Its
//!   network I/O goes through [`SmtpTransport`]'s connection code.
//! * [`QueueRunner`] ([`runner`]) — glue: due deliveries → route →
//!   transport → outcomes persisted → DSNs spooled → [`DeliveryReport`]s.
//! * [`SpoolHealthFilter`] — a [`Filter`](portcullis_core::Filter) deferring
//!   `MAIL` with 452 while the spool refuses writes.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_core::{Envelope, ForwardPath, MailParams, ManualClock, Clock, Recipient, ReversePath};
//! use portcullis_queue::{Delivery, Outcome, QueueEvent, Scheduler, SchedulerConfig, Spool, SpoolConfig};
//!
//! let dir = std::env::temp_dir().join(format!("pq-doc-{}", std::process::id()));
//! let clock = Arc::new(ManualClock::default());
//! let spool = Spool::open(&dir, SpoolConfig::default(), clock.clone()).unwrap();
//!
//! let mut env = Envelope::new(ReversePath::parse("<alice@example.org>").unwrap(), MailParams::default());
//! env.recipients.push(Recipient::new(ForwardPath::parse("<bob@example.net>").unwrap()));
//! let id = spool.store(&env, b"Subject: hi\r\n\r\nhello\r\n").unwrap(); // durable now: answer 250
//!
//! let mut scheduler = Scheduler::new(SchedulerConfig::default());
//! scheduler.enqueue(&spool.inspect(id).unwrap(), clock.now());
//! let delivery: Delivery = scheduler.next_due(clock.now()).unwrap();
//! assert_eq!(delivery.destination, "example.net");
//!
//! // The transport said 451: retry in about 5 minutes (±10 % jitter).
//! let reply = portcullis_core::Reply::new(451, (4, 7, 1), "greylisted");
//! scheduler.on_outcome(&delivery, &[Outcome::Deferred(reply)], clock.now());
//! assert!(matches!(scheduler.poll_event(), Some(QueueEvent::Deferred { .. })));
//! spool.set_state(id, &scheduler.delivery_state(id).unwrap()).unwrap();
//! let wake = scheduler.next_wakeup().unwrap();
//! let wait = wake.duration_since(clock.now()).unwrap().as_secs();
//! assert!((270..=330).contains(&wait), "{wait}");
//! # drop(spool); std::fs::remove_dir_all(&dir).unwrap();
//! ```

#![forbid(unsafe_code)]

pub mod callout;
pub mod downgrade;
pub mod dsn;
pub mod filter;
pub mod id;
pub mod routing;
pub mod runner;
pub mod scheduler;
pub mod smtp_transport;
pub mod spool;
pub mod state;
pub mod transport;

pub use callout::{CalloutConfig, CalloutResult, SmtpCallout, UnknownReason};
pub use dsn::{Dsn, DsnConfig, DsnKind, DsnRecipient, build_dsn};
pub use filter::SpoolHealthFilter;
pub use id::{ParseQueueIdError, QueueId};
pub use routing::{MxConfig, MxRouter, RouteError, Router, StaticRouter};
pub use runner::{DeliveryReport, QueueRunner};
pub use scheduler::{
    Delivery, DestinationLimits, QueueEvent, Scheduler, SchedulerConfig, destination_of,
};
pub use smtp_transport::{SmtpTransport, SmtpTransportConfig, SmtpTransportError, TlsPolicy};
pub use spool::{MessageInfo, RecoveryReport, Spool, SpoolConfig, SpoolError};
pub use state::{DeliveryState, Hold, RecipientState, RecipientStatus};
pub use transport::{
    DeliveryRequest, FakeDelivery, FakeTransport, HopHost, NextHop, Outcome, Transport,
};
