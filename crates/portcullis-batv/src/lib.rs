//! BATV (prvs) signing and bounce validation, and SRS.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
