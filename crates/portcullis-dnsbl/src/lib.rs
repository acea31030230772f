//! DNSBL and DNSWL checks of SMTP clients (RFC 5782): build the query name
//! for an address in each configured zone, map the zone's `127.0.0.x`
//! return codes to a configured action (reject `554 5.7.1` with the zone
//! and its TXT reason, defer, add a header and a score, or — for an
//! allowlist — skip every blocklist), and cache answers with their TTLs
//! capped (5 minutes by default) using an injected [`Clock`](portcullis_core::Clock).
//!
//! **I/O.** DNS goes through the [`DnsLookup`] trait. The only network I/O
//! in this crate is its `hickory-resolver` implementation,
//! [`hickory::HickoryLookup`] (feature `hickory`, on by default).
//!
//! * [`query_name`] / [`parse_query_name`] — RFC 5782 §2.1 (IPv4, reversed
//!   octets) and §2.4 (IPv6, reversed nibbles).
//! * [`ZoneConfig`] — a zone and the meaning of its codes; [`DnsblConfig`]
//!   — zones, TTL cap, what failing zones do (default: continue), score
//!   threshold; [`DnsblConfig::decide`] — the pure decision from a report.
//! * [`Dnsbl`] — the plain API: `report(ip)` / `check(ip)` → [`DnsblDecision`].
//! * [`DnsblFilter`] — the [`Filter`](portcullis_core::Filter): refuses at
//!   `connect`, tags at `data_start`.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use std::sync::Arc;
//! use portcullis_core::{async_trait, Client, Context, Filter, ManualClock, Verdict};
//! use portcullis_dnsbl::{
//!     query_name, CodeMatch, DnsAnswer, DnsLookup, Dnsbl, DnsblConfig, DnsblDecision, DnsblError,
//!     DnsblFilter, ListingAction, ZoneConfig,
//! };
//!
//! /// A zone held in memory: 127.0.0.2 is the RFC 5782 §5 test listing.
//! struct TestZone;
//!
//! #[async_trait]
//! impl DnsLookup for TestZone {
//!     async fn lookup_a(&self, name: &str) -> Result<DnsAnswer<Ipv4Addr>, DnsblError> {
//!         Ok(match name {
//!             "2.0.0.127.bl.example." => DnsAnswer::found(vec![Ipv4Addr::new(127, 0, 0, 2)], 3600),
//!             "10.2.0.192.bl.example." => DnsAnswer::found(vec![Ipv4Addr::new(127, 0, 0, 10)], 3600),
//!             _ => DnsAnswer::not_found(Some(300)),
//!         })
//!     }
//!     async fn lookup_txt(&self, _name: &str) -> Result<DnsAnswer<String>, DnsblError> {
//!         Ok(DnsAnswer::found(vec!["test listing".into()], 3600))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert_eq!(query_name("192.0.2.10".parse().unwrap(), "bl.example"), "10.2.0.192.bl.example.");
//!
//! let zone = ZoneConfig::blocklist("bl.example")
//!     .on(CodeMatch::Exact(Ipv4Addr::new(127, 0, 0, 10)), ListingAction::Tag { score: 1 });
//! let dnsbl = Arc::new(Dnsbl::new(
//!     DnsblConfig::new(vec![zone]),
//!     Arc::new(TestZone),
//!     Arc::new(ManualClock::default()),
//! ));
//!
//! let filter = DnsblFilter::new(dnsbl.clone());
//! let mut cx = Context::new(Client::new("127.0.0.2:50000".parse().unwrap()));
//! let verdict = filter.connect(&mut cx).await;
//! assert_eq!(
//!     verdict.reply().unwrap().to_wire(true),
//!     b"554 5.7.1 Service unavailable; client host [127.0.0.2] blocked using bl.example; test listing\r\n"
//! );
//!
//! // Plain API: a tagging listing.
//! match dnsbl.check("192.0.2.10".parse().unwrap()).await {
//!     DnsblDecision::Tag { header_value, .. } => assert_eq!(header_value, "bl.example=127.0.0.10; score=1"),
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(dnsbl.check("192.0.2.99".parse().unwrap()).await, DnsblDecision::Continue);
//! # }
//! ```

#![forbid(unsafe_code)]

mod check;
mod config;
#[cfg(feature = "hickory")]
pub mod hickory;
mod lookup;
mod query;

pub use check::{Dnsbl, DnsblFilter};
pub use config::{
    CodeMatch, CodeRule, DnsblConfig, DnsblDecision, DnsblReport, Listing, ListingAction,
    OnDnsError, ZoneConfig, is_refusal_code,
};
pub use lookup::{DnsAnswer, DnsLookup, DnsblError};
pub use query::{canonical_ip, parse_query_name, query_name};
