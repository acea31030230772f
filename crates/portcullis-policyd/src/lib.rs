//! The Postfix policy delegation protocol (`check_policy_service`, see
//! Postfix's `SMTPD_POLICY_README`): keep Postfix as the MTA and let it ask
//! Portcullis' filters — greylisting, rate limits, recipient and BATV rules —
//! for a decision at each SMTP stage.
//!
//! - [`Decoder`] turns bytes (split anywhere) into [`Request`]s: `name=value`
//!   lines ended by an empty line, strict and bounded ([`Limits`]); a bad
//!   request becomes a [`RequestError`] in its place, never a panic.
//! - [`PolicyService`] answers a request with a [`portcullis_core::Chain`]:
//!   it builds the [`Context`](portcullis_core::Context) from the request's
//!   attributes and runs the stage(s) its `protocol_state` calls for
//!   ([`PolicySession::answer`] has the table).
//! - [`PolicyAction`] is the response (`action=DUNNO`, `DEFER_IF_PERMIT ...`,
//!   `554 5.7.1 ...`, `PREPEND ...`); the verdict mapping is in [`action`].
//!
//! **I/O**: none. The caller owns the socket: it feeds bytes to a
//! [`Decoder`], awaits the answer of a [`PolicySession`] (one per
//! connection), and writes [`PolicyAction::to_wire`]. Time is whatever the
//! filters' [`Clock`](portcullis_core::Clock) says.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use portcullis_core::{Chain, ManualClock};
//! use portcullis_greylist::{Greylist, GreylistConfig, GreylistFilter, MemoryStore};
//! use portcullis_policyd::{Decoder, PolicyService};
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Waker};
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) { return v; } }
//! # }
//! let clock = Arc::new(ManualClock::default());
//! let greylist = Arc::new(Greylist::new(Arc::new(MemoryStore::new()), GreylistConfig::default()));
//! let chain = Chain::new().with(Arc::new(GreylistFilter::new(greylist, clock.clone())));
//! let service = PolicyService::new(chain);
//!
//! // What Postfix sends for `RCPT TO` (abridged; it sends ~30 attributes).
//! let wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
//!     client_address=192.0.2.10\nclient_name=mx.example.org\nhelo_name=mx.example.org\n\
//!     sender=alice@example.org\nrecipient=bob@example.net\ninstance=1a2b.3c4d.1\n\n";
//!
//! let mut answer = |wire: &[u8]| {
//!     let mut decoder = Decoder::default();
//!     let decoded = decoder.decode(wire);
//!     let request = decoded.item.expect("one whole request");
//!     let mut session = service.session();
//!     block_on(session.answer_item(request)).action.to_wire()
//! };
//!
//! assert_eq!(answer(wire), b"action=DEFER_IF_PERMIT Greylisted, please try again in 300 seconds\n\n");
//! clock.advance(Duration::from_secs(300));
//! assert_eq!(answer(wire), b"action=DUNNO\n\n");
//! // A request that breaks the protocol gets a safe temporary failure.
//! assert_eq!(answer(b"no equals sign\n\n"), b"action=451 4.3.0 Temporary local problem, please try again later\n\n");
//! ```

#![forbid(unsafe_code)]

pub mod action;
pub mod codec;
pub mod error;
pub mod service;

pub use action::{DeferStyle, PolicyAction};
pub use codec::{Decoded, Decoder, Limits, Request};
pub use error::RequestError;
pub use service::{Answer, PolicyService, PolicySession, client, forward_path, reverse_path};
