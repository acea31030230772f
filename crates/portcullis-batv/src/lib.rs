//! BATV (Bounce Address Tag Validation, "prvs" of draft-levine-smtp-batv-01)
//! and SRS (Sender Rewriting Scheme), interoperable with Exim and with
//! libsrs2 / postsrsd / Mail::SRS.
//!
//! - [`Prvs`] signs and verifies tags with a [`KeyRing`]; [`Verification`] is
//!   the outcome as data (valid, expired, bad signature, unknown key, not tagged).
//! - [`PrvsSigning`] is the outbound [`Filter`](portcullis_core::Filter) that
//!   tags envelope senders; [`BounceValidation`] is the inbound one that
//!   refuses bounces without a valid tag and strips valid tags.
//! - [`Srs`] rewrites senders for forwarding (`SRS0`/`SRS1`) and back;
//!   [`SrsReverse`] is the inbound filter that routes bounces to SRS addresses back.
//!
//! This crate performs no I/O: time comes in as a `now` argument or through
//! [`Clock`](portcullis_core::Clock), keys come from the caller's configuration.
//! The exact bytes hashed are documented in [`prvs`] and [`srs`].
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use portcullis_batv::{KeyRing, Prvs, Srs, Verification};
//! use portcullis_core::{Address, Domain};
//!
//! // Made by Exim 4.96 on 2026-01-01 (day 20454):
//! // exim -be '${prvs{user@example.com}{secret}{3}}'
//! let now = UNIX_EPOCH + Duration::from_secs(1_767_268_800);
//! let prvs = Prvs::new(KeyRing::new(3, b"secret")?);
//! let user = Address::parse("user@example.com")?;
//! let tagged = prvs.sign(&user, now)?;
//! assert_eq!(tagged.to_string(), "prvs=3461447cc3=user@example.com");
//! assert_eq!(prvs.verify(&tagged, now), Verification::Valid { original: user.clone(), key: 3 });
//! let in_eight_days = now + Duration::from_secs(8 * 86_400);
//! assert!(matches!(prvs.verify(&tagged, in_eight_days), Verification::Expired { .. }));
//!
//! // Made by postsrsd 1.10 and Mail::SRS at the same instant.
//! let srs = Srs::new(b"tops3cret")?;
//! let sender = Address::parse("User@Example.COM")?;
//! let forwarded = srs.forward(&sender, &Domain::parse("fwd.example")?, now)?;
//! assert_eq!(forwarded.to_string(), "SRS0=PuPZ=7G=Example.COM=User@fwd.example");
//! assert_eq!(srs.reverse(&forwarded, now)?, sender);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod error;
pub mod filter;
pub mod prvs;
pub mod srs;

pub use error::{BatvError, SrsError};
pub use filter::{BounceDecision, BounceValidation, PrvsSigning, SrsReverse};
pub use prvs::{KeyRing, Prvs, PrvsConfig, PrvsTag, TagOrder, TagStatus, Verification};
pub use srs::{Srs, SrsConfig};
