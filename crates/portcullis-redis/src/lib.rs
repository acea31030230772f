//! Redis implementations of the Portcullis store traits, shared by a fleet of relays.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
