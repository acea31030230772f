//! Greylisting and backup-MX recipient learning.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
