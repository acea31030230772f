//! Test support shared by Portcullis' own test suites. Not published.
//!
//! [`dns`] starts a real DNS server (`hickory-server`) on 127.0.0.1, on an
//! ephemeral port, over UDP and TCP, serving zones the test writes by hand,
//! so resolvers under test send real queries over the loopback network
//! instead of talking to a mock. [`clamd`] starts a real `clamd` with a
//! one-signature EICAR database, when it is installed.
//!
//! ```
//! use portcullis_testkit::dns::{DnsServer, a};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dns = DnsServer::builder()
//!     .zone("mx.test.", vec![a("host.mx.test.", "127.0.0.11", 3600)])
//!     .servfail_under("broken.test.")
//!     .start()
//!     .await;
//! assert!(dns.addr.ip().is_loopback());
//! assert_eq!(dns.queries("host.mx.test.", "A"), 0);
//! # });
//! ```

#![forbid(unsafe_code)]
// Test support: a failure to start the server is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod clamd;
pub mod dns;
