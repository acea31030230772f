//! A sans-IO SMTP server protocol: command parser, session state machine,
//! DATA/BDAT decoding. **This crate performs no I/O**: it owns no socket,
//! no runtime and no clock.
//!
//! ```
//! use portcullis_core::{Client, Reply, Verdict};
//! use portcullis_smtp::{Event, Session, SessionConfig};
//!
//! let mut session = Session::new(
//!     SessionConfig::new("mx.example"),
//!     Client::new("192.0.2.7:40000".parse().unwrap()),
//! );
//! let mut wire = Vec::new(); // what we would write to the socket
//! let mut message = Vec::new();
//! let mut pump = |s: &mut Session, message: &mut Vec<u8>| {
//!     while let Some(event) = s.poll_event() {
//!         match event {
//!             Event::Connect { decision } | Event::Helo { decision, .. }
//!             | Event::MailFrom { decision, .. } | Event::RcptTo { decision, .. }
//!             | Event::DataStart { decision, .. } => s.decide(decision, Verdict::Accept).unwrap(),
//!             Event::MessageChunk(bytes) => message.extend_from_slice(&bytes),
//!             Event::MessageComplete { decision, .. } => {
//!                 // Store the message durably first, then:
//!                 s.decide_with(decision, Reply::message_accepted("Q1")).unwrap();
//!             }
//!             _ => {}
//!         }
//!     }
//! };
//! pump(&mut session, &mut message);
//! // A pipelining client (RFC 2920); any split of the bytes gives the same result.
//! for part in [&b"EHLO client.example\r\nMAIL FROM:<a@x.example> SIZE=20\r\n"[..],
//!              b"RCPT TO:<b@y.example>\r\nDATA\r\n", b"Hi\r\n..dot\r\n.\r\nQUIT\r\n"] {
//!     session.receive(part);
//!     pump(&mut session, &mut message);
//!     session.take_output(&mut wire);
//! }
//! assert_eq!(message, b"Hi\r\n.dot\r\n");
//! let wire = String::from_utf8(wire).unwrap();
//! assert!(wire.starts_with("220 mx.example ESMTP"));
//! assert!(wire.contains("250 2.0.0 Message accepted as Q1\r\n221 2.0.0 Bye\r\n"));
//! assert!(session.is_closed());
//! ```
//!
//! # Model
//!
//! Shaped like `quinn-proto`: inputs are method calls, outputs are polled.
//!
//! - [`Session::receive`] takes bytes in any split, one at a time included.
//! - [`Session::poll_event`] yields [`Event`]s. Where the protocol needs a
//!   decision (connect, HELO/EHLO, AUTH credentials, MAIL, each RCPT, DATA
//!   or first BDAT, end of message) the event carries a `#[must_use]`
//!   [`Decision`]; the session then pauses, buffering input (pipelining,
//!   RFC 2920), until [`Session::decide`] answers it with a
//!   `portcullis_core::Verdict` (or [`Session::decide_with`] with a
//!   `Reply`, e.g. to name the queue id). The reply is then written.
//! - [`Session::poll_transmit`] / [`Session::take_output`] give the bytes
//!   to write, already grouped for pipelining. Once [`Session::is_closed`],
//!   write what is left and close the connection.
//! - Timeouts: [`Session::idle_timeout`] / [`Session::poll_timeout`] say
//!   how long to wait for the client (RFC 5321 §4.5.3.2, 5 minutes by
//!   default); on expiry call [`Session::handle_timeout`].
//! - STARTTLS: on [`Event::StartTls`] write the output, run the handshake,
//!   call [`Session::starttls_complete`]. Everything the client sent after
//!   the STARTTLS line before the handshake is discarded (CVE-2011-0411).
//!
//! # Protection
//!
//! - End of DATA is `<CRLF>.<CRLF>` only. A bare CR or LF in a message is
//!   refused with `550 5.5.2` after the message's real end, and no bare
//!   line ending can start a terminator, so `<LF>.<LF>` and its relatives
//!   never let text be read as commands (SMTP smuggling). Bare LF ending a
//!   command gets `500 5.5.2` unless [`SessionConfig::bare_lf_in_commands`].
//! - Command lines are limited to 512 octets (MAIL/RCPT 2048, AUTH 12288);
//!   longer ones get `500 5.5.2` and are skipped. Too many bad commands:
//!   `421 4.7.0` and close.
//! - MAIL/RCPT parameters are checked against what EHLO advertised:
//!   unknown ones get `555 5.5.4`, `SIZE=` over the limit `552 5.3.4`.
//!
//! The parts are usable alone: [`parse_command`] (zero-copy command
//! parser, nom 8) and [`DataDecoder`] (allocation-free DATA decoder).

#![forbid(unsafe_code)]

pub mod auth;
pub mod command;
pub mod config;
pub mod data;
pub mod params;
pub(crate) mod replies;
pub mod session;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{AuthMechanism, Credentials};
pub use command::{Command, CommandError, EsmtpParams, Path, parse_command};
pub use config::{AuthMechanisms, Extensions, LongLines, SessionConfig};
pub use data::{DataDecoder, DataError, DataStatus, dot_stuff};
pub use params::RcptParams;
pub use session::{Decision, Event, Session, SessionError};
