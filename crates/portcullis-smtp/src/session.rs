//! The SMTP server session state machine (RFC 5321 §4.1.4 and extensions).

use std::collections::VecDeque;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memchr::memchr;
use portcullis_core::{
    Body, Client, MailParams, ParseOptions, Recipient, Reply, ReversePath, Stage, Verdict,
};

use crate::auth::{self, AuthMechanism, Credentials};
use crate::command::{Command, CommandError, EsmtpParams, Path, parse_command};
use crate::config::{LongLines, SessionConfig};
use crate::data::{DataDecoder, DataStatus};
use crate::replies;

/// Distinguishes sessions so a decision from one cannot answer another.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A question the session needs answered before it goes on: hand it back
/// to [`Session::decide`] (or [`Session::decide_with`]). Until then the
/// session buffers input and produces no events.
#[must_use = "the session waits until this decision is answered with Session::decide"]
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    session: u64,
    id: u64,
    stage: Stage,
}

impl Decision {
    /// The stage this decision is for.
    pub fn stage(&self) -> Stage {
        self.stage
    }
}

/// What happened in the session. Events that carry a [`Decision`] pause
/// the session until it is answered.
#[must_use = "events carrying a Decision must be answered"]
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The connection was opened: decide the greeting. Accept sends
    /// `220 <hostname> ESMTP`; a 5xx refusal sends it as the greeting and
    /// then answers every command but QUIT with `503 5.5.1` (RFC 5321
    /// §3.1); a 4xx refusal or a disconnect sends it and closes.
    Connect {
        /// Answer with [`Session::decide`].
        decision: Decision,
    },
    /// HELO or EHLO. A transaction in progress was reset (RFC 5321 §4.1.4),
    /// announced by an [`Event::Reset`] just before.
    Helo {
        /// The argument as sent (a domain or address literal, unchecked).
        name: String,
        /// EHLO (true) or HELO.
        esmtp: bool,
        /// Accept sends the EHLO/HELO reply.
        decision: Decision,
    },
    /// The client sent STARTTLS and the session answered `220 2.0.0`. Write
    /// the output, run the TLS handshake, then call
    /// [`Session::starttls_complete`]. Bytes the client pipelined after the
    /// command, and any received before `starttls_complete`, are discarded
    /// (CVE-2011-0411).
    StartTls,
    /// AUTH with decoded credentials. Verify them and answer: Accept sends
    /// `235 2.7.0`, a refusal should carry `535 5.7.8`.
    Auth {
        /// The SASL mechanism used.
        mechanism: AuthMechanism,
        /// What the client sent.
        credentials: Credentials,
        /// Answer with [`Session::decide`].
        decision: Decision,
    },
    /// MAIL FROM, syntax and parameters already checked.
    MailFrom {
        /// The sender.
        reverse_path: ReversePath,
        /// Its ESMTP parameters.
        params: MailParams,
        /// Accept sends `250 2.1.0`.
        decision: Decision,
    },
    /// RCPT TO, syntax and parameters already checked, recipient limit not
    /// yet reached.
    RcptTo {
        /// The recipient with its DSN parameters.
        recipient: Recipient,
        /// Accept sends `250 2.1.5`.
        decision: Decision,
    },
    /// DATA, or the first BDAT of the message.
    DataStart {
        /// BDAT (true) or DATA.
        chunking: bool,
        /// Accept sends `354` for DATA, or reads the chunk for BDAT.
        decision: Decision,
    },
    /// Message octets, dot-unstuffed (DATA) or as sent (BDAT), in order.
    MessageChunk(Vec<u8>),
    /// The whole message was received: decide whether to take it. Accept
    /// sends `250 2.0.0 OK`; use [`Session::decide_with`] to send, e.g.,
    /// [`Reply::message_accepted`] with a queue id. Answer only once the
    /// message is safely stored. The transaction ends either way.
    MessageComplete {
        /// Octets of message received.
        size: u64,
        /// Answer with [`Session::decide`].
        decision: Decision,
    },
    /// The session refused the message itself (bare CR/LF, too long a line,
    /// too big) and sent `reply`; forget the chunks received. The
    /// transaction has ended.
    MessageAborted {
        /// What the client was told.
        reply: Reply,
    },
    /// RSET, or a HELO/EHLO during a transaction: forget the transaction,
    /// including message chunks of an unfinished BDAT message.
    Reset,
    /// QUIT was answered with `221`; write the output and close.
    Quit,
}

/// A decision answered out of turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The decision is not the one this session is waiting for (another
    /// session's, or the session closed meanwhile).
    #[error("this decision is not pending in this session")]
    UnexpectedDecision,
    /// `starttls_complete` without a STARTTLS in progress.
    #[error("no STARTTLS handshake is in progress")]
    NotAwaitingTls,
}

/// How a decision was answered.
enum Outcome {
    Accept(Option<Reply>),
    Refuse(Reply),
    Disconnect(Reply),
}

#[derive(Debug)]
enum PendingKind {
    Connect,
    Helo { name: String, esmtp: bool },
    Auth { authcid: String },
    Mail { smtputf8: bool, body: Body },
    Rcpt,
    DataStart { bdat: Option<(u64, bool)> },
    Message,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    kind: PendingKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BdatMode {
    /// Chunk accepted: octets become `MessageChunk`s.
    Accept,
    /// Chunk refused (reply already sent): read and drop.
    Discard,
    /// The message grew past the maximum size: drop, send 552 at the end.
    Overflow,
}

#[derive(Debug)]
enum AuthStep {
    PlainResponse,
    LoginUser,
    LoginPassword { user: String },
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the connect decision.
    Greeting,
    /// The greeting was a 5xx: only QUIT is served.
    Refused,
    Command,
    AuthResponse(AuthStep),
    Data(Box<DataDecoder>),
    Bdat {
        remaining: u64,
        last: bool,
        mode: BdatMode,
    },
    TlsHandshake,
    Closed,
}

/// The current mail transaction (RFC 5321 §3.3).
#[derive(Debug, Default)]
struct Transaction {
    mail: bool,
    smtputf8: bool,
    body: Body,
    recipients: usize,
    /// BDAT chunks have been accepted for this message.
    chunking: bool,
    chunked_size: u64,
}

/// One SMTP server session, sans I/O.
///
/// Feed it what the client sent ([`receive`](Self::receive), any split),
/// take the events ([`poll_event`](Self::poll_event)) and answer their
/// decisions, write what [`poll_transmit`](Self::poll_transmit) returns, and
/// close the connection once [`is_closed`](Self::is_closed) and the output
/// is drained. See the crate documentation for a full loop.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    client: Client,
    phase: Phase,
    tx: Transaction,
    inbuf: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<Event>,
    pending: Option<Pending>,
    session_id: u64,
    next_decision: u64,
    bad_commands: u32,
    skipping_line: bool,
    chunk: Vec<u8>,
}

impl Session {
    /// A session for a newly accepted connection. The first event is
    /// [`Event::Connect`]; nothing is sent before it is decided. Set
    /// `client.tls` for implicit TLS (port 465).
    pub fn new(config: SessionConfig, client: Client) -> Self {
        let mut s = Session {
            config,
            client,
            phase: Phase::Greeting,
            tx: Transaction::default(),
            inbuf: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            pending: None,
            session_id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            next_decision: 0,
            bad_commands: 0,
            skipping_line: false,
            chunk: Vec::new(),
        };
        let decision = s.pause(PendingKind::Connect, Stage::Connect);
        s.events.push_back(Event::Connect { decision });
        s
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What is known about the client (HELO name, TLS, authenticated
    /// identity), kept up to date by the session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Bytes received from the client, in any split. While a decision is
    /// pending they are buffered and processed once it is answered
    /// (RFC 2920 pipelining). Ignored once closed, and while a STARTTLS
    /// handshake is pending.
    ///
    /// What is buffered is bounded by
    /// [`SessionConfig::max_buffered_input`]: past it the session answers
    /// `421 4.7.0` and closes (the pending decision is dropped, and
    /// [`decide`](Self::decide) on it reports
    /// [`SessionError::UnexpectedDecision`]). A caller that stops reading from the
    /// socket while [`pending_decision`](Self::pending_decision) is `Some`
    /// never reaches it.
    pub fn receive(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closed | Phase::TlsHandshake) {
            return;
        }
        if self.inbuf.is_empty() && self.pending.is_none() {
            // Fast path: work on the caller's slice, keep only the remainder.
            let used = self.process(bytes);
            if used < bytes.len() && !matches!(self.phase, Phase::Closed | Phase::TlsHandshake) {
                self.inbuf.extend_from_slice(&bytes[used..]);
            }
        } else {
            self.inbuf.extend_from_slice(bytes);
            self.advance();
        }
        let cap = self.config.max_buffered_input;
        if cap > 0 && self.inbuf.len() > cap && !matches!(self.phase, Phase::Closed) {
            self.write_reply(&Reply::new(
                421,
                (4, 7, 0),
                format!(
                    "{} Too much input while waiting, closing connection",
                    self.config.hostname
                ),
            ));
            self.close();
        }
    }

    /// The next event, if any.
    #[must_use = "events carrying a Decision must be answered"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to write to the client, if any (the whole pending output).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.output.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.output))
        }
    }

    /// Append the bytes to write to `out` (reusing the caller's buffer).
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// Whether there are bytes to write.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Whether the session is over. Write any remaining output, then close.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The stage of the decision the session waits for, if any.
    pub fn pending_decision(&self) -> Option<Stage> {
        self.pending.as_ref().map(|p| stage_of(&p.kind))
    }

    /// How long the caller may wait for the client's next bytes before
    /// calling [`handle_timeout`](Self::handle_timeout) (RFC 5321
    /// §4.5.3.2). `None` while the session waits for the caller (a pending
    /// decision or TLS handshake) or is closed.
    pub fn idle_timeout(&self) -> Option<Duration> {
        if self.pending.is_some() {
            return None;
        }
        match self.phase {
            Phase::Closed | Phase::TlsHandshake | Phase::Greeting => None,
            Phase::Data(_) | Phase::Bdat { .. } => Some(self.config.data_timeout),
            _ => Some(self.config.command_timeout),
        }
    }

    /// The deadline for the client's next bytes, counted from the last time
    /// bytes were received (`last_activity`, e.g. an `Instant` or
    /// `SystemTime` the caller read from its clock).
    pub fn poll_timeout<T: Add<Duration, Output = T>>(&self, last_activity: T) -> Option<T> {
        self.idle_timeout().map(|d| last_activity + d)
    }

    /// The idle deadline passed: sends `421 4.4.2` and closes.
    pub fn handle_timeout(&mut self) {
        if !self.is_closed() {
            self.write_reply(&Reply::timeout());
            self.close();
        }
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded. The session
    /// forgets everything learnt before (RFC 3207 §4.2): HELO, AUTH, the
    /// transaction; the client must send EHLO again.
    pub fn starttls_complete(&mut self) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::TlsHandshake) {
            return Err(SessionError::NotAwaitingTls);
        }
        self.client.tls = true;
        self.client.helo = None;
        self.client.esmtp = false;
        self.client.authenticated = None;
        self.tx = Transaction::default();
        self.inbuf.clear();
        self.skipping_line = false;
        self.phase = Phase::Command;
        Ok(())
    }

    /// Answer a decision with a verdict. `Continue` and `Accept` send the
    /// standard positive reply of the stage; `Defer` and `Reject` send their
    /// reply (corrected to 4xx / 5xx if needed); `Disconnect` sends its
    /// reply and closes. A refusal with code 421 also closes.
    pub fn decide(&mut self, decision: Decision, verdict: Verdict) -> Result<(), SessionError> {
        let outcome = match verdict {
            Verdict::Defer(r) => match Verdict::defer(r) {
                Verdict::Defer(r) => Outcome::Refuse(r),
                _ => Outcome::Refuse(Reply::temporary_failure()),
            },
            Verdict::Reject(r) => match Verdict::reject(r) {
                Verdict::Reject(r) => Outcome::Refuse(r),
                _ => Outcome::Refuse(Reply::new(554, (5, 7, 1), "Rejected")),
            },
            Verdict::Disconnect(r) => Outcome::Disconnect(r),
            _ => Outcome::Accept(None),
        };
        self.resolve(decision, outcome)
    }

    /// Answer a decision with an explicit reply: a positive one accepts
    /// (e.g. `250 2.0.0 Message accepted as <queue id>` at the end of a
    /// message; a positive reply whose code does not fit the stage is
    /// replaced by the standard one, and EHLO always gets its extension
    /// list), a 4xx/5xx refuses, 421 refuses and closes.
    pub fn decide_with(&mut self, decision: Decision, reply: Reply) -> Result<(), SessionError> {
        let outcome = if reply.code() == 421 {
            Outcome::Disconnect(reply)
        } else if reply.is_positive() {
            Outcome::Accept(Some(reply))
        } else {
            Outcome::Refuse(reply)
        };
        self.resolve(decision, outcome)
    }

    // ---- internals ----------------------------------------------------

    fn enhanced(&self) -> bool {
        self.config.extensions.enhanced_status_codes
    }

    fn write_reply(&mut self, reply: &Reply) {
        let enhanced = self.enhanced();
        reply.write_wire(&mut self.output, enhanced);
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.pending = None;
        self.inbuf = Vec::new();
    }

    fn pause(&mut self, kind: PendingKind, stage: Stage) -> Decision {
        self.next_decision += 1;
        self.pending = Some(Pending {
            id: self.next_decision,
            kind,
        });
        Decision {
            session: self.session_id,
            id: self.next_decision,
            stage,
        }
    }

    /// A protocol error: reply, count it, and close after too many.
    fn bad_command(&mut self, reply: &Reply) {
        self.write_reply(reply);
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.write_reply(&Reply::new(
                421,
                (4, 7, 0),
                format!(
                    "{} Too many errors, closing connection",
                    self.config.hostname
                ),
            ));
            self.close();
        }
    }

    fn reset_transaction(&mut self) {
        self.tx = Transaction::default();
    }

    fn resolve(&mut self, decision: Decision, outcome: Outcome) -> Result<(), SessionError> {
        let pending = match &self.pending {
            Some(p) if decision.session == self.session_id && decision.id == p.id => {
                self.pending.take()
            }
            _ => return Err(SessionError::UnexpectedDecision),
        };
        let Some(pending) = pending else {
            return Err(SessionError::UnexpectedDecision);
        };
        // A refusal with 421 means "closing" (RFC 5321 §3.8).
        let outcome = match outcome {
            Outcome::Refuse(r) if r.code() == 421 => Outcome::Disconnect(r),
            o => o,
        };
        if let Outcome::Disconnect(r) = &outcome {
            self.write_reply(r);
            self.close();
            return Ok(());
        }
        match (pending.kind, outcome) {
            (PendingKind::Connect, Outcome::Accept(custom)) => {
                let r = custom
                    .filter(|r| r.code() == 220)
                    .unwrap_or_else(|| Reply::service_ready(&self.config.hostname));
                self.write_reply(&r);
                self.phase = Phase::Command;
            }
            (PendingKind::Connect, Outcome::Refuse(r)) => {
                self.write_reply(&r);
                if r.is_transient() {
                    self.close();
                } else {
                    self.phase = Phase::Refused;
                }
            }
            (PendingKind::Helo { name, esmtp }, Outcome::Accept(custom)) => {
                self.client.helo = Some(name);
                self.client.esmtp = esmtp;
                let r = if esmtp {
                    replies::ehlo(&self.config, &self.client)
                } else {
                    custom
                        .filter(|r| r.code() == 250)
                        .unwrap_or_else(|| Reply::plain(250, self.config.hostname.clone()))
                };
                self.write_reply(&r);
            }
            (PendingKind::Auth { authcid }, Outcome::Accept(custom)) => {
                self.client.authenticated = Some(authcid);
                let r = custom
                    .filter(|r| r.code() == 235)
                    .unwrap_or_else(Reply::auth_succeeded);
                self.write_reply(&r);
            }
            (PendingKind::Mail { smtputf8, body }, Outcome::Accept(custom)) => {
                self.tx = Transaction {
                    mail: true,
                    smtputf8,
                    body,
                    ..Transaction::default()
                };
                let r = custom
                    .filter(|r| r.code() == 250)
                    .unwrap_or_else(Reply::sender_ok);
                self.write_reply(&r);
            }
            (PendingKind::Rcpt, Outcome::Accept(custom)) => {
                self.tx.recipients += 1;
                let r = custom
                    .filter(|r| r.code() == 250 || r.code() == 251)
                    .unwrap_or_else(Reply::recipient_ok);
                self.write_reply(&r);
            }
            (PendingKind::DataStart { bdat: None }, Outcome::Accept(custom)) => {
                let r = custom
                    .filter(|r| r.code() == 354)
                    .unwrap_or_else(Reply::start_mail_input);
                self.write_reply(&r);
                let max_line = match self.config.long_lines {
                    LongLines::Reject => Some(self.config.max_text_line),
                    _ => None,
                };
                let max_size =
                    (self.config.max_message_size > 0).then_some(self.config.max_message_size);
                let mut decoder = DataDecoder::new(max_line, max_size);
                if self.config.long_lines == LongLines::Fold {
                    decoder = decoder.fold_long_lines(self.config.max_text_line);
                }
                self.phase = Phase::Data(Box::new(decoder));
            }
            (
                PendingKind::DataStart {
                    bdat: Some((size, last)),
                },
                Outcome::Accept(_),
            ) => {
                self.tx.chunking = true;
                self.start_bdat(size, last, BdatMode::Accept);
            }
            (
                PendingKind::DataStart {
                    bdat: Some((size, last)),
                },
                Outcome::Refuse(r),
            ) => {
                self.write_reply(&r);
                self.reset_transaction();
                self.start_bdat(size, last, BdatMode::Discard);
            }
            (PendingKind::Message, Outcome::Accept(custom)) => {
                let r = custom.filter(|r| r.code() == 250).unwrap_or_else(Reply::ok);
                self.write_reply(&r);
                self.reset_transaction();
            }
            (PendingKind::Message, Outcome::Refuse(r)) => {
                self.write_reply(&r);
                self.reset_transaction();
            }
            (_, Outcome::Refuse(r)) => self.write_reply(&r),
            (_, Outcome::Disconnect(_)) => {}
        }
        self.advance();
        Ok(())
    }

    /// Process buffered input.
    fn advance(&mut self) {
        if self.inbuf.is_empty() || self.pending.is_some() {
            return;
        }
        let mut buf = std::mem::take(&mut self.inbuf);
        let used = self.process(&buf);
        if matches!(self.phase, Phase::Closed | Phase::TlsHandshake) {
            return;
        }
        buf.drain(..used.min(buf.len()));
        // Keep the allocation unless it grew large.
        if buf.is_empty() && buf.capacity() > 64 * 1024 {
            buf = Vec::new();
        }
        self.inbuf = buf;
    }

    /// Consume as much of `buf` as possible; returns the octets used.
    fn process(&mut self, buf: &[u8]) -> usize {
        let mut pos = 0;
        while pos < buf.len() && self.pending.is_none() {
            let rest = &buf[pos..];
            match &mut self.phase {
                Phase::Closed | Phase::TlsHandshake => return buf.len(),
                Phase::Greeting => return pos,
                Phase::Data(decoder) => {
                    let status = decoder.decode(rest, &mut self.chunk);
                    let error = decoder.error();
                    let size = decoder.size();
                    if error.is_some() {
                        // The message will be refused: hand out nothing more.
                        self.chunk.clear();
                    } else if !self.chunk.is_empty() {
                        let chunk = std::mem::take(&mut self.chunk);
                        self.events.push_back(Event::MessageChunk(chunk));
                    }
                    match status {
                        DataStatus::NeedMore => return buf.len(),
                        DataStatus::Complete { consumed } => {
                            pos += consumed;
                            self.phase = Phase::Command;
                            self.end_of_message(error.map(|e| e.reply()), size);
                        }
                    }
                }
                Phase::Bdat {
                    remaining, mode, ..
                } => {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    let mode_now = *mode;
                    *remaining -= take as u64;
                    pos += take;
                    if mode_now == BdatMode::Accept {
                        let max = self.config.max_message_size;
                        self.tx.chunked_size += take as u64;
                        if max > 0 && self.tx.chunked_size > max {
                            if let Phase::Bdat { mode, .. } = &mut self.phase {
                                *mode = BdatMode::Overflow;
                            }
                        } else if take > 0 {
                            self.events
                                .push_back(Event::MessageChunk(rest[..take].to_vec()));
                        }
                    }
                    self.finish_bdat_chunk_if_done();
                }
                _ => {
                    if self.skipping_line {
                        match memchr(b'\n', rest) {
                            Some(i) => {
                                pos += i + 1;
                                self.skipping_line = false;
                                continue;
                            }
                            None => return buf.len(),
                        }
                    }
                    let limit = self.line_limit(rest);
                    let window = &rest[..rest.len().min(limit)];
                    match memchr(b'\n', window) {
                        Some(i) => {
                            pos += i + 1;
                            self.handle_raw_line(&rest[..i]);
                        }
                        None if rest.len() >= limit => {
                            // RFC 5321 §4.5.3.1.4: refuse, then skip to the line's end.
                            if matches!(self.phase, Phase::AuthResponse(_)) {
                                self.phase = Phase::Command;
                            }
                            self.bad_command(&Reply::line_too_long());
                            self.skipping_line = true;
                        }
                        None => return pos,
                    }
                }
            }
        }
        pos
    }

    fn line_limit(&self, rest: &[u8]) -> usize {
        if matches!(self.phase, Phase::AuthResponse(_)) || starts_with_ci(rest, b"AUTH ") {
            self.config.max_auth_line
        } else if starts_with_ci(rest, b"MAIL ") || starts_with_ci(rest, b"RCPT ") {
            self.config.max_mail_rcpt_line
        } else {
            self.config.max_command_line
        }
    }

    fn end_of_message(&mut self, error: Option<Reply>, size: u64) {
        match error {
            Some(reply) => {
                self.write_reply(&reply);
                self.reset_transaction();
                self.events.push_back(Event::MessageAborted { reply });
            }
            None => {
                let decision = self.pause(PendingKind::Message, Stage::Message);
                self.events
                    .push_back(Event::MessageComplete { size, decision });
            }
        }
    }

    fn start_bdat(&mut self, size: u64, last: bool, mode: BdatMode) {
        self.phase = Phase::Bdat {
            remaining: size,
            last,
            mode,
        };
        self.finish_bdat_chunk_if_done();
    }

    fn finish_bdat_chunk_if_done(&mut self) {
        let Phase::Bdat {
            remaining: 0,
            last,
            mode,
        } = self.phase
        else {
            return;
        };
        self.phase = Phase::Command;
        match mode {
            BdatMode::Discard => {}
            BdatMode::Overflow => {
                let reply = Reply::message_too_big();
                self.write_reply(&reply);
                self.reset_transaction();
                self.events.push_back(Event::MessageAborted { reply });
            }
            BdatMode::Accept if last => {
                let size = self.tx.chunked_size;
                self.end_of_message(None, size);
            }
            BdatMode::Accept => {
                let r = Reply::new(
                    250,
                    (2, 0, 0),
                    format!("{} octets received", self.tx.chunked_size),
                );
                self.write_reply(&r);
            }
        }
    }

    fn handle_raw_line(&mut self, raw: &[u8]) {
        let line = match raw.split_last() {
            Some((b'\r', line)) => line,
            _ if self.config.bare_lf_in_commands => raw,
            _ => {
                if matches!(self.phase, Phase::AuthResponse(_)) {
                    self.phase = Phase::Command;
                }
                self.bad_command(&replies::bare_lf());
                return;
            }
        };
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::AuthResponse(step) => self.auth_response(step, line),
            Phase::Refused => {
                self.phase = Phase::Refused;
                if matches!(parse_command(line), Ok(Command::Quit)) {
                    self.quit();
                } else {
                    self.bad_command(&Reply::bad_sequence());
                }
            }
            other => {
                self.phase = other;
                self.command(line);
            }
        }
    }

    fn quit(&mut self) {
        self.write_reply(&Reply::closing());
        self.events.push_back(Event::Quit);
        self.close();
    }

    fn greeted(&self) -> bool {
        self.client.helo.is_some() || !self.config.require_greeting
    }

    fn command(&mut self, line: &[u8]) {
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(e @ CommandError::BdatSyntax { size }) => {
                // The chunk follows regardless and must not be read as commands.
                self.bad_command(&e.reply());
                if !self.is_closed() {
                    self.start_bdat(size, false, BdatMode::Discard);
                }
                return;
            }
            Err(e @ CommandError::BdatUnframed) => {
                // Whatever follows is chunk data of unknown length: reading
                // it as commands would let a message smuggle commands.
                self.write_reply(&e.reply());
                self.close();
                return;
            }
            Err(e) => {
                self.bad_command(&e.reply());
                return;
            }
        };
        match cmd {
            Command::Helo(name) | Command::Ehlo(name) => {
                let esmtp = matches!(cmd, Command::Ehlo(_));
                if self.tx.mail {
                    // Tell the caller to drop the transaction (and any BDAT chunks).
                    self.events.push_back(Event::Reset);
                }
                self.reset_transaction();
                let decision = self.pause(
                    PendingKind::Helo {
                        name: name.to_owned(),
                        esmtp,
                    },
                    Stage::Helo,
                );
                self.events.push_back(Event::Helo {
                    name: name.to_owned(),
                    esmtp,
                    decision,
                });
            }
            Command::Mail { path, params } => self.mail(path, params),
            Command::Rcpt { path, params } => self.rcpt(path, params),
            Command::Data => {
                if let Err(r) = self.data_allowed() {
                    self.bad_command(&r);
                } else if self.tx.body == Body::BinaryMime || self.tx.chunking {
                    // RFC 3030 §3: BINARYMIME needs BDAT; no DATA after BDAT.
                    self.bad_command(&Reply::bad_sequence());
                } else {
                    let decision =
                        self.pause(PendingKind::DataStart { bdat: None }, Stage::DataStart);
                    self.events.push_back(Event::DataStart {
                        chunking: false,
                        decision,
                    });
                }
            }
            Command::Bdat { size, last } => {
                if !self.config.extensions.chunking {
                    self.bad_command(&Reply::not_implemented());
                    if !self.is_closed() {
                        self.start_bdat(size, last, BdatMode::Discard);
                    }
                } else if let Err(r) = self.data_allowed() {
                    self.bad_command(&r);
                    if !self.is_closed() {
                        self.start_bdat(size, last, BdatMode::Discard);
                    }
                } else if self.tx.chunking {
                    self.start_bdat(size, last, BdatMode::Accept);
                } else {
                    let decision = self.pause(
                        PendingKind::DataStart {
                            bdat: Some((size, last)),
                        },
                        Stage::DataStart,
                    );
                    self.events.push_back(Event::DataStart {
                        chunking: true,
                        decision,
                    });
                }
            }
            Command::Rset => {
                self.reset_transaction();
                self.write_reply(&Reply::ok());
                self.events.push_back(Event::Reset);
            }
            Command::Noop => self.write_reply(&Reply::ok()),
            Command::Quit => self.quit(),
            Command::Vrfy(_) => self.write_reply(&replies::cannot_vrfy()),
            Command::Expn(_) => self.write_reply(&replies::expn_disabled()),
            Command::Help(_) => self.write_reply(&replies::help()),
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
        }
    }

    fn data_allowed(&self) -> Result<(), Reply> {
        if !self.tx.mail {
            Err(replies::need_mail())
        } else if self.tx.recipients == 0 {
            // RFC 2920 §3.1: DATA after all RCPTs failed.
            Err(replies::no_valid_recipients())
        } else {
            Ok(())
        }
    }

    fn starttls(&mut self) {
        let ext = &self.config.extensions;
        if !ext.starttls {
            self.bad_command(&Reply::not_implemented());
        } else if self.client.tls {
            self.bad_command(&replies::already_tls());
        } else if !self.greeted() {
            self.bad_command(&replies::need_helo());
        } else if self.tx.mail {
            self.bad_command(&Reply::bad_sequence());
        } else {
            self.write_reply(&replies::ready_for_tls());
            self.events.push_back(Event::StartTls);
            // CVE-2011-0411: nothing sent before the handshake is honoured.
            self.phase = Phase::TlsHandshake;
            self.inbuf.clear();
        }
    }

    fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        let mechs = self.config.extensions.auth;
        if !mechs.any() {
            self.bad_command(&Reply::not_implemented());
            return;
        }
        if !self.client.esmtp || self.client.helo.is_none() {
            self.bad_command(&replies::need_ehlo());
            return;
        }
        if self.client.authenticated.is_some() {
            self.bad_command(&replies::already_authenticated());
            return;
        }
        if self.tx.mail {
            self.bad_command(&Reply::bad_sequence());
            return;
        }
        if !self.client.tls && !self.config.auth_without_tls {
            self.write_reply(&Reply::encryption_required());
            return;
        }
        let mech = if mechanism.eq_ignore_ascii_case("PLAIN") && mechs.plain {
            AuthMechanism::Plain
        } else if mechanism.eq_ignore_ascii_case("LOGIN") && mechs.login {
            AuthMechanism::Login
        } else {
            self.write_reply(&replies::unknown_mechanism());
            return;
        };
        match (mech, initial) {
            (AuthMechanism::Plain, None) => {
                self.write_reply(&Reply::plain(334, ""));
                self.phase = Phase::AuthResponse(AuthStep::PlainResponse);
            }
            (AuthMechanism::Plain, Some(ir)) => {
                self.auth_response(AuthStep::PlainResponse, ir.as_bytes());
            }
            (AuthMechanism::Login, None) => {
                self.write_reply(&replies::login_username());
                self.phase = Phase::AuthResponse(AuthStep::LoginUser);
            }
            (AuthMechanism::Login, Some(ir)) => {
                self.auth_response(AuthStep::LoginUser, ir.as_bytes());
            }
        }
    }

    fn auth_response(&mut self, step: AuthStep, line: &[u8]) {
        if line == b"*" {
            // RFC 4954 §4: the client cancelled.
            self.write_reply(&replies::auth_cancelled());
            return;
        }
        let decoded = match auth::decode_base64(line) {
            Ok(d) => d,
            Err(r) => {
                self.write_reply(&r);
                return;
            }
        };
        let (mechanism, credentials) = match step {
            AuthStep::PlainResponse => match auth::parse_plain(&decoded) {
                Ok(c) => (AuthMechanism::Plain, c),
                Err(r) => {
                    self.write_reply(&r);
                    return;
                }
            },
            AuthStep::LoginUser => match String::from_utf8(decoded) {
                Ok(user) => {
                    self.write_reply(&replies::login_password());
                    self.phase = Phase::AuthResponse(AuthStep::LoginPassword { user });
                    return;
                }
                Err(_) => {
                    self.write_reply(&auth::malformed());
                    return;
                }
            },
            AuthStep::LoginPassword { user } => match String::from_utf8(decoded) {
                Ok(password) => (AuthMechanism::Login, Credentials::new(None, user, password)),
                Err(_) => {
                    self.write_reply(&auth::malformed());
                    return;
                }
            },
        };
        let decision = self.pause(
            PendingKind::Auth {
                authcid: credentials.authcid().to_owned(),
            },
            Stage::Auth,
        );
        self.events.push_back(Event::Auth {
            mechanism,
            credentials,
            decision,
        });
    }

    fn mail(&mut self, path: Path<'_>, params: EsmtpParams<'_>) {
        if !self.greeted() {
            self.bad_command(&replies::need_helo());
            return;
        }
        if self.tx.mail {
            self.bad_command(&replies::nested_mail());
            return;
        }
        let params = match params.mail_params(&self.config.extensions, self.client.tls) {
            Ok(p) => p,
            Err(r) => {
                self.write_reply(&r);
                return;
            }
        };
        if let Some(size) = params.size {
            let max = self.config.max_message_size;
            if max > 0 && size > max {
                // RFC 1870 §6.2: refuse at MAIL time.
                self.write_reply(&Reply::message_too_big());
                return;
            }
        }
        let opts = ParseOptions::default()
            .with_utf8(params.smtputf8)
            .with_trailing_dot(self.config.trailing_dot_in_paths);
        // Validated in place; owned only for the event.
        let reverse_path = match path.reverse_path(opts) {
            Ok(p) => p.into_owned(),
            Err(e) => {
                self.write_reply(&e.sender_reply());
                return;
            }
        };
        let decision = self.pause(
            PendingKind::Mail {
                smtputf8: params.smtputf8,
                body: params.body,
            },
            Stage::MailFrom,
        );
        self.events.push_back(Event::MailFrom {
            reverse_path,
            params,
            decision,
        });
    }

    fn rcpt(&mut self, path: Path<'_>, params: EsmtpParams<'_>) {
        if !self.tx.mail {
            self.bad_command(&replies::need_mail());
            return;
        }
        if self.tx.recipients >= self.config.max_recipients {
            self.write_reply(&Reply::too_many_recipients());
            return;
        }
        let opts = ParseOptions::default()
            .with_utf8(self.tx.smtputf8)
            .with_trailing_dot(self.config.trailing_dot_in_paths);
        // Path and parameters validated in place; owned only for the event.
        let forward = match path.forward_path(opts) {
            Ok(p) => p,
            Err(e) => {
                self.write_reply(&e.recipient_reply());
                return;
            }
        };
        let params = match params.rcpt_params(&self.config.extensions) {
            Ok(p) => p,
            Err(r) => {
                self.write_reply(&r);
                return;
            }
        };
        let mut recipient = Recipient::new(forward.into_owned());
        recipient.notify = params.notify;
        recipient.orcpt = params.orcpt;
        let decision = self.pause(PendingKind::Rcpt, Stage::RcptTo);
        self.events.push_back(Event::RcptTo {
            recipient,
            decision,
        });
    }
}

fn starts_with_ci(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn stage_of(kind: &PendingKind) -> Stage {
    match kind {
        PendingKind::Connect => Stage::Connect,
        PendingKind::Helo { .. } => Stage::Helo,
        PendingKind::Auth { .. } => Stage::Auth,
        PendingKind::Mail { .. } => Stage::MailFrom,
        PendingKind::Rcpt => Stage::RcptTo,
        PendingKind::DataStart { .. } => Stage::DataStart,
        PendingKind::Message => Stage::Message,
    }
}
