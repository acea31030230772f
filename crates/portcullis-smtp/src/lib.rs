//! Sans-IO SMTP server protocol: command parser, session state machine, DATA/BDAT decoding.
//!
//! Work in progress: see the project issues.

#![forbid(unsafe_code)]
