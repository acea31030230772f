//! A content-scanner hook: stream each message to ClamAV's `clamd` with the
//! `INSTREAM` command and turn its answer into a [`Verdict`](portcullis_core::Verdict).
//!
//! **I/O.** The protocol code ([`scan_stream`], [`encode_instream`],
//! [`parse_reply`]) works on a stream it is handed. Streams come from a
//! [`ScannerConnector`]; the only sockets this crate opens are in the two
//! ready connectors of the [`net`] module, [`net::TcpConnector`] and
//! [`net::UnixConnector`] (feature `net`, on by default). Timeouts are
//! applied with `tokio::time::timeout` (a runtime timer, no wall clock).
//!
//! * [`scan`] / [`scan_with`] / [`Scanner`] — the plain API: bytes in,
//!   [`ScanResult`] out (`Clean`, `Infected { signature }`, or a [`ScanError`]).
//! * [`ScanPolicy::decide`] — sync: result → [`ScanDecision`] (reject
//!   `554 5.7.1 Virus found: <name>` or quarantine; on failure defer
//!   `451 4.3.0` by default, or fail open, or reject).
//! * [`ScanFilter`] — the [`Filter`](portcullis_core::Filter) at stage `message`.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis_core::{async_trait, Client, Context, Filter, Verdict};
//! use portcullis_scan::{ScanConfig, ScanFilter, ScanPolicy, ScannerConnector, ScannerStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! /// An in-memory "clamd" that flags any message containing "EICAR".
//! struct InMemoryClamd;
//!
//! #[async_trait]
//! impl ScannerConnector for InMemoryClamd {
//!     async fn connect(&self) -> std::io::Result<ScannerStream> {
//!         let (client, mut server) = tokio::io::duplex(1 << 16);
//!         tokio::spawn(async move {
//!             let mut command = [0u8; 10];
//!             server.read_exact(&mut command).await?; // "zINSTREAM\0"
//!             let mut body = Vec::new();
//!             loop {
//!                 let len = server.read_u32().await? as usize; // big-endian length
//!                 if len == 0 { break; }
//!                 let mut chunk = vec![0; len];
//!                 server.read_exact(&mut chunk).await?;
//!                 body.extend_from_slice(&chunk);
//!             }
//!             let found = body.windows(5).any(|w| w == b"EICAR");
//!             let reply: &[u8] = if found { b"stream: Eicar-Test FOUND\0" } else { b"stream: OK\0" };
//!             server.write_all(reply).await
//!         });
//!         Ok(Box::new(client))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let filter = ScanFilter::new(Arc::new(InMemoryClamd), ScanConfig::default(), ScanPolicy::default());
//! let mut cx = Context::new(Client::new("192.0.2.7:40000".parse().unwrap()));
//!
//! let clean = filter.message(&mut cx, b"Subject: hi\r\n\r\nhello\r\n").await;
//! assert_eq!(clean, Verdict::Continue);
//!
//! let virus = filter.message(&mut cx, b"Subject: hi\r\n\r\nEICAR\r\n").await;
//! let reply = virus.reply().unwrap();
//! assert_eq!(reply.to_wire(true), b"554 5.7.1 Virus found: Eicar-Test\r\n");
//!
//! // Plain API: the same connector, no filter.
//! let result = portcullis_scan::scan(&InMemoryClamd, b"clean").await;
//! assert_eq!(result.unwrap(), portcullis_scan::ScanOutcome::Clean);
//! # }
//! ```

#![forbid(unsafe_code)]

mod clamd;
mod filter;
#[cfg(feature = "net")]
pub mod net;

pub use clamd::{
    INSTREAM_COMMAND, ScanConfig, ScanError, ScanOutcome, ScanResult, Scanner, ScannerConnector,
    ScannerIo, ScannerStream, encode_instream, parse_reply, scan, scan_stream, scan_with,
};
pub use filter::{OnFailure, OnVirus, ScanDecision, ScanFilter, ScanPolicy, scan_deferred};
