//! Exact and fuzzy message checksums, bulk counting and known-bad lists.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
