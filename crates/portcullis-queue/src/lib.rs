//! Durable mail spool, retry scheduler, DSNs and MX routing.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
