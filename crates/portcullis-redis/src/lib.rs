//! Redis implementations of the Portcullis store traits, so a fleet of relays
//! shares counters, greylist state and checksum counts.
//!
//! Each store lives in its own module behind a cargo feature of the same
//! purpose: `counter` (policy `CounterStore`), `greylist` (`GreylistStore`),
//! `checksum` (fingerprint `ChecksumStore`). Every key is prefixed with a
//! configurable prefix so several deployments (or test runs) never collide.

#![forbid(unsafe_code)]

pub mod connection;

#[cfg(feature = "checksum")]
pub mod checksum;
#[cfg(feature = "counter")]
pub mod counter;
#[cfg(feature = "greylist")]
pub mod greylist;
