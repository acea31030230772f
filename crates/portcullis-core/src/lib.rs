//! The shared vocabulary of Portcullis: addresses and paths, the envelope,
//! SMTP replies, verdicts, the [`Filter`] trait with its [`Chain`], and the
//! [`Clock`]. This crate performs no I/O and needs no async runtime.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_core::{
//!     async_trait, Address, Chain, Client, Context, Filter, ForwardPath, Recipient, Reply, Verdict,
//! };
//!
//! // A filter that refuses one recipient domain.
//! struct NoExample;
//!
//! #[async_trait]
//! impl Filter for NoExample {
//!     fn name(&self) -> &'static str { "no-example" }
//!     async fn rcpt_to(&self, _cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
//!         match rcpt.path.address() {
//!             Some(a) if a.domain().ascii() == "example.com" => Verdict::Reject(Reply::relay_denied()),
//!             _ => Verdict::Continue,
//!         }
//!     }
//! }
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     // A tiny executor so the example needs no runtime.
//! #     use std::task::{Context as Cx, Poll, Waker};
//! #     let mut f = std::pin::pin!(f);
//! #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut Cx::from_waker(Waker::noop())) { return v; } }
//! # }
//! let chain = Chain::new().with(Arc::new(NoExample));
//! let mut cx = Context::new(Client::new("192.0.2.7:40000".parse().unwrap()));
//! let mut rcpt = Recipient::new(ForwardPath::parse("<user@Example.COM>").unwrap());
//! let verdict = block_on(chain.rcpt_to(&mut cx, &mut rcpt));
//!
//! assert_eq!(verdict, Verdict::Reject(Reply::relay_denied()));
//! assert_eq!(cx.decided_by, Some("no-example"));
//! assert_eq!(Reply::relay_denied().to_wire(true), b"554 5.7.1 Relay access denied\r\n");
//! assert_eq!(Address::parse("\"a b\"@[192.0.2.1]").unwrap().to_string(), "\"a b\"@[192.0.2.1]");
//! ```

#![forbid(unsafe_code)]

pub mod address;
pub mod client;
pub mod clock;
pub mod envelope;
pub mod filter;
pub mod reply;
pub mod verdict;

pub use address::{
    Address, AddressError, AddressRef, Domain, DomainKind, DomainRef, ForwardPath, ForwardPathRef,
    LocalPart, ParseOptions, ReversePath, ReversePathRef,
};
pub use async_trait::async_trait;
pub use client::{Client, mask_ip};
pub use clock::{Clock, ManualClock, SystemClock};
pub use envelope::{Body, Envelope, MailParams, Notify, Recipient, Ret};
pub use filter::{Chain, Context, Filter, Stage};
pub use reply::{EnhancedCode, Reply};
pub use verdict::{Action, Verdict};
