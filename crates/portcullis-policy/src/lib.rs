//! Rate limits, recipient caps, FROM rules, abuse locks, session caps and a load gate for mail relays.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
