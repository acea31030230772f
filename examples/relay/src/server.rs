//! Listeners and sessions: each connection drives a sans-IO
//! `portcullis_smtp::Session`; this module does the socket and TLS I/O and
//! answers every decision through the listener's filter `Chain`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use portcullis_accounts::{AccountDirectory, AuthOutcome};
use portcullis_core::{
    Action, Chain, Client, Clock, Context, Envelope, Filter, Reply, ReversePath, Verdict,
};
use portcullis_policy::{GateDecision, Load, LoadGate, SessionLimiter};
use portcullis_smtp::{AuthMechanisms, Event, Session, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::Settings;
use crate::delivery::Deliverer;
use crate::rules::{RelayRules, Role};
use crate::stream::Stream;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every session shares.
pub(crate) struct Shared {
    /// The configuration in force for new sessions; SIGHUP swaps it
    /// (`reload`). A session takes the snapshot at accept and keeps it to
    /// the end, so a reload never changes a session under way. A plain
    /// `RwLock<Arc<_>>` (one uncontended read per accepted connection, a
    /// write per SIGHUP) rather than `arc-swap`: no new dependency for a
    /// lock that is never held across an await or for longer than a clone.
    current: RwLock<Arc<Snapshot>>,
    pub(crate) accounts: Option<Arc<dyn AccountDirectory>>,
    pub(crate) deliverer: Arc<Deliverer>,
    /// Failure caps (AUTH, unknown recipients) noted outside the chain.
    /// Replaced on SIGHUP (`reload`); shared by every snapshot, so open
    /// sessions see new limits from their next command.
    pub(crate) policy: Arc<crate::reload::LivePolicy>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Turns true when the grace period after a shutdown signal is over:
    /// sessions still open get 421 and are closed.
    pub(crate) deadline: watch::Receiver<bool>,
}

/// What a reload replaces: everything built from the configuration file
/// that a session reads (the stores behind the filters are shared and
/// carry over).
pub(crate) struct Snapshot {
    pub(crate) settings: Arc<Settings>,
    pub(crate) rules: Arc<RelayRules>,
    pub(crate) mx_chain: Chain,
    pub(crate) submission_chain: Chain,
    pub(crate) tls: TlsAcceptor,
    /// Simultaneous sessions, in total and per client (policy crate); kept
    /// across a reload that does not change the caps.
    pub(crate) sessions: Arc<SessionLimiter>,
    /// `[limits] load_gate_*`: closes to new clients under load (policy
    /// crate), fed at each connect; kept across a reload that does not
    /// change it.
    pub(crate) load_gate: Option<Arc<LoadGate>>,
    /// `[backup_mx] verify = "callout"`: the callout and its cache, kept
    /// across a reload that does not change its settings.
    pub(crate) callout: Option<Arc<portcullis_queue::SmtpCallout>>,
}

impl Shared {
    pub(crate) fn new(
        snapshot: Snapshot,
        accounts: Option<Arc<dyn AccountDirectory>>,
        deliverer: Arc<Deliverer>,
        policy: Arc<crate::reload::LivePolicy>,
        clock: Arc<dyn Clock>,
        deadline: watch::Receiver<bool>,
    ) -> Self {
        Shared {
            current: RwLock::new(Arc::new(snapshot)),
            accounts,
            deliverer,
            policy,
            clock,
            deadline,
        }
    }

    /// The configuration new sessions get.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Put `snapshot` in force for sessions accepted from now on.
    pub(crate) fn replace(&self, snapshot: Snapshot) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }
}

/// One listening socket and what it is for.
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    pub(crate) role: Role,
    /// Implicit TLS (RFC 8314, port 465).
    pub(crate) implicit_tls: bool,
}

impl Snapshot {
    fn session_config(&self, role: Role) -> SessionConfig {
        let s = &self.settings;
        let mut c = SessionConfig::new(s.hostname.clone());
        c.max_message_size = s.max_message_size;
        c.max_recipients = s.max_recipients;
        c.long_lines = s.long_lines;
        c.command_timeout = s.idle_timeout;
        c.data_timeout = s.idle_timeout;
        c.extensions.starttls = true;
        // RFC 8689 §4.1: offered (and the MAIL parameter taken) only after
        // STARTTLS, which the session enforces; delivery keeps the promise
        // (verified TLS + REQUIRETLS at the next hop, or a 5.7.30 bounce).
        c.extensions.requiretls = s.requiretls;
        // RFC 4954 §4 / RFC 8314: AUTH only over TLS (the session refuses
        // it before TLS with 538 5.7.11 and does not advertise it).
        c.auth_without_tls = false;
        c.extensions.auth = AuthMechanisms::PLAIN_LOGIN;
        // `<user@example.org.>` is the same mailbox to every MTA that meets
        // it (Postfix drops the dot); refusing it as syntax would also hide
        // the relay decision behind a 501.
        c.trailing_dot_in_paths = true;
        let _ = role;
        c
    }

    fn chain(&self, role: Role) -> &Chain {
        match role {
            Role::Mx => &self.mx_chain,
            Role::Submission => &self.submission_chain,
        }
    }
}

/// Accept connections until `stop` turns true. Each session holds a clone
/// of `alive`; the caller knows all sessions ended when the channel closes.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: Listener,
    mut stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.socket.accept() => r,
            _ = until_true(&mut stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let local = tcp.local_addr().ok();
        let shared = shared.clone();
        let alive = alive.clone();
        let role = listener.role;
        let implicit = listener.implicit_tls;
        tokio::spawn(async move {
            let _alive = alive;
            connection(shared, tcp, peer, local, role, implicit).await;
        });
    }
}

async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    role: Role,
    implicit_tls: bool,
) {
    let _ = tcp.set_nodelay(true);
    // This session runs on the configuration in force now, to its end.
    let snap = shared.snapshot();
    // The load gate, before this session counts: fed with the sessions
    // already open (and the queue), it closes at its maximum and reopens
    // below `reopen_percent` of it (hysteresis in the policy crate).
    if let Some(gate) = &snap.load_gate {
        gate.update(Load {
            sessions: u64::try_from(snap.sessions.open_sessions()).unwrap_or(u64::MAX),
            queue: u64::try_from(shared.deliverer.queued()).unwrap_or(u64::MAX),
        });
        match gate.admit(false) {
            GateDecision::Open => {}
            GateDecision::Busy(reply) | GateDecision::Refused(reply) => {
                let mut tcp = tcp;
                let _ = tcp.write_all(&reply.to_wire(true)).await;
                crate::metrics::refusal("connect", Some("load_gate"), reply.code());
                tracing::warn!(client = %peer, listener = role.as_str(), reply = %reply, "refused: load gate closed");
                return;
            }
        }
    }
    // Session caps (total and per client): shed load with 421 rather than
    // fall over.
    let _permit = match snap.sessions.try_open(peer.ip()) {
        Ok(p) => p,
        Err(reply) => {
            let mut tcp = tcp;
            let _ = tcp.write_all(&reply.to_wire(true)).await;
            tracing::warn!(client = %peer, listener = role.as_str(), reply = %reply, "refused: too many connections");
            return;
        }
    };
    let _counted = crate::metrics::session_opened(role.as_str());
    let stream = if implicit_tls {
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, snap.tls.accept(tcp)).await {
            Ok(Ok(s)) => Stream::Tls(Box::new(s)),
            Ok(Err(e)) => {
                tracing::info!(client = %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!(client = %peer, "TLS handshake timed out");
                return;
            }
        }
    } else {
        Stream::Plain(tcp)
    };
    let mut client = Client::new(peer);
    client.local = local;
    client.tls = implicit_tls;
    client.trusted_network = snap.rules.is_trusted(peer.ip());
    let session = Session::new(snap.session_config(role), client.clone());
    let mut conn = Conn {
        shared: shared.clone(),
        snap,
        role,
        cx: Context::new(client),
        message: Vec::new(),
        stats: Stats::default(),
    };
    let end = conn.drive(stream, session).await;
    let c = &conn.cx.client;
    tracing::info!(
        client = %peer,
        listener = role.as_str(),
        helo = c.helo.as_deref().unwrap_or("-"),
        tls = c.tls,
        auth = c.authenticated.as_deref().unwrap_or("-"),
        messages = conn.stats.accepted,
        refused = conn.stats.refused,
        end,
        "session closed"
    );
}

#[derive(Default)]
struct Stats {
    accepted: u32,
    refused: u32,
}

struct Conn {
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
    role: Role,
    cx: Context,
    message: Vec<u8>,
    stats: Stats,
}

impl Conn {
    /// Pump bytes and events until the session closes. Returns why it ended.
    async fn drive(&mut self, mut stream: Stream, mut session: Session) -> &'static str {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        let mut deadline = self.shared.deadline.clone();
        loop {
            while let Some(event) = session.poll_event() {
                let starttls = matches!(event, Event::StartTls);
                self.handle(event, &mut session).await;
                if starttls {
                    session.take_output(&mut out);
                    if write_out(&mut stream, &mut out).await.is_err() {
                        return "write error";
                    }
                    let Some(tcp) = stream.take_plain() else {
                        return "STARTTLS on a TLS connection";
                    };
                    let acceptor = self.snap.tls.clone();
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => stream = Stream::Tls(Box::new(tls)),
                        Ok(Err(e)) => {
                            tracing::info!(client = %self.cx.client.peer, error = %e, "STARTTLS handshake failed");
                            return "TLS handshake failed";
                        }
                        Err(_) => return "TLS handshake timed out",
                    }
                    if session.starttls_complete().is_err() {
                        return "STARTTLS out of sequence";
                    }
                    self.cx.client = session.client().clone();
                    self.cx.reset_transaction();
                    self.message.clear();
                }
            }
            session.take_output(&mut out);
            if write_out(&mut stream, &mut out).await.is_err() {
                return "write error";
            }
            if session.is_closed() {
                let _ = stream.shutdown().await;
                return "closed";
            }
            let idle = session
                .idle_timeout()
                .unwrap_or(self.snap.settings.idle_timeout);
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) => return "client closed",
                    Ok(n) => session.receive(&buf[..n]),
                    Err(_) => return "read error",
                },
                _ = tokio::time::sleep(idle) => session.handle_timeout(),
                _ = until_true(&mut deadline) => {
                    // RFC 5321 §3.8: 421 before closing on shutdown.
                    out.extend_from_slice(&Reply::service_unavailable().to_wire(true));
                    let _ = write_out(&mut stream, &mut out).await;
                    let _ = stream.shutdown().await;
                    return "shutdown";
                }
            }
        }
    }

    fn refused(&mut self, stage: &str, verdict: &Verdict) {
        if let Some(reply) = verdict.reply() {
            self.stats.refused += 1;
            crate::metrics::refusal(stage, self.cx.decided_by, reply.code());
            let env = self.cx.envelope.as_ref();
            tracing::info!(
                client = %self.cx.client.peer,
                listener = self.role.as_str(),
                stage,
                sender = %env.map_or_else(|| "-".to_owned(), |e| e.reverse_path.to_string()),
                decided_by = self.cx.decided_by.unwrap_or("-"),
                reply = %reply,
                "refused"
            );
        }
    }

    fn decide(&self, session: &mut Session, decision: portcullis_smtp::Decision, v: Verdict) {
        if let Err(e) = session.decide(decision, v) {
            tracing::error!(error = %e, "session rejected a decision");
        }
    }

    async fn handle(&mut self, event: Event, session: &mut Session) {
        let chain = self.snap.chain(self.role).clone();
        match event {
            Event::Connect { decision } => {
                self.cx.client = session.client().clone();
                let v = chain.connect(&mut self.cx).await;
                self.refused("connect", &v);
                self.decide(session, decision, v);
            }
            Event::Helo {
                name,
                esmtp,
                decision,
            } => {
                self.cx.client = session.client().clone();
                self.cx.client.helo = Some(name);
                self.cx.client.esmtp = esmtp;
                self.cx.reset_transaction();
                self.message.clear();
                let v = chain.helo(&mut self.cx).await;
                self.refused("helo", &v);
                if v.is_refusal() {
                    self.cx.client.helo = session.client().helo.clone();
                }
                self.decide(session, decision, v);
            }
            Event::StartTls => {}
            Event::Auth {
                mechanism,
                credentials,
                decision,
            } => {
                let v = self.authenticate(&chain, &credentials).await;
                tracing::info!(
                    client = %self.cx.client.peer,
                    mechanism = mechanism.name(),
                    login = credentials.authcid(),
                    result = if v.is_refusal() { "refused" } else { "ok" },
                    reply = %v.reply().map_or_else(|| "235 2.7.0".to_owned(), Reply::to_string),
                    "auth"
                );
                if let Some(reply) = v.reply().filter(|_| v.is_refusal()) {
                    self.stats.refused += 1;
                    crate::metrics::refusal("auth", self.cx.decided_by, reply.code());
                }
                self.decide(session, decision, v);
            }
            Event::MailFrom {
                mut reverse_path,
                params,
                decision,
            } => {
                self.cx.client = session.client().clone();
                self.cx.reset_transaction();
                // The sender identity is checked as the client gave it,
                // before filters rewrite it (BATV tags it).
                let mut v = self.check_sender(&reverse_path).await;
                if v.is_continue() {
                    v = chain
                        .mail_from(&mut self.cx, &mut reverse_path, &params)
                        .await;
                }
                if v.is_refusal() {
                    self.cx.envelope = Some(Envelope::new(reverse_path, params));
                    self.refused("mail", &v);
                    self.cx.envelope = None;
                } else {
                    self.cx.envelope = Some(Envelope::new(reverse_path, params));
                }
                self.decide(session, decision, v);
            }
            Event::RcptTo {
                mut recipient,
                decision,
            } => {
                let given = recipient.path.to_string();
                let mut v = chain.rcpt_to(&mut self.cx, &mut recipient).await;
                if v == Verdict::Reject(Reply::no_such_user()) {
                    // Directory harvesting defence: too many unknown
                    // recipients block the client.
                    let policy = self.shared.policy.policy();
                    let note = policy.note_invalid_recipient(
                        &self.cx.client,
                        &policy.account(&self.cx.client),
                        self.shared.clock.now(),
                    );
                    if note.is_refusal() {
                        v = note;
                    }
                }
                if v.is_refusal() {
                    self.refused("rcpt", &v);
                    tracing::debug!(recipient = %given, "recipient refused");
                } else if let Some(env) = self.cx.envelope.as_mut() {
                    env.recipients.push(recipient);
                }
                self.decide(session, decision, v);
            }
            Event::DataStart { decision, .. } => {
                self.message.clear();
                let v = chain.data_start(&mut self.cx).await;
                self.refused("data", &v);
                self.decide(session, decision, v);
            }
            Event::MessageChunk(bytes) => self.message.extend_from_slice(&bytes),
            Event::MessageComplete { decision, .. } => {
                let reply = self.finish_message(&chain).await;
                if let Err(e) = session.decide_with(decision, reply) {
                    tracing::error!(error = %e, "session rejected a decision");
                }
                self.cx.reset_transaction();
                self.message = Vec::new();
            }
            Event::MessageAborted { reply } => {
                self.stats.refused += 1;
                tracing::info!(client = %self.cx.client.peer, reply = %reply, "message refused by the protocol layer");
                self.cx.reset_transaction();
                self.message = Vec::new();
            }
            Event::Reset => {
                self.cx.reset_transaction();
                self.message.clear();
            }
            Event::Quit => {}
            _ => {}
        }
    }

    async fn authenticate(
        &mut self,
        chain: &Chain,
        credentials: &portcullis_smtp::Credentials,
    ) -> Verdict {
        let Some(accounts) = &self.shared.accounts else {
            return Verdict::Reject(Reply::auth_failed());
        };
        // RFC 4616 §2: acting as another identity is not offered here.
        if credentials
            .authzid()
            .is_some_and(|z| !z.is_empty() && !z.eq_ignore_ascii_case(credentials.authcid()))
        {
            return Verdict::Reject(Reply::auth_failed());
        }
        match accounts
            .authenticate(credentials.authcid(), credentials.password().as_bytes())
            .await
        {
            Ok(AuthOutcome::Authenticated(account)) => {
                self.cx.client.authenticated = Some(account.id.to_string());
                let v = chain.auth(&mut self.cx).await;
                if v.is_refusal() {
                    self.cx.client.authenticated = None;
                }
                v
            }
            Ok(AuthOutcome::Denied(denied)) => {
                // Brute-force defence: past the cap the client is blocked
                // and disconnected (421); below it, the usual 535.
                let note = self.shared.policy.policy().note_auth_failure(
                    &self.cx.client,
                    Some(credentials.authcid()),
                    self.shared.clock.now(),
                );
                if note.is_refusal() {
                    note
                } else {
                    Verdict::Reject(denied.reply())
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "account directory failed");
                Verdict::defer(e.auth_reply())
            }
        }
    }

    /// Authenticated users send only as their own identities (RFC 6409 §6.1
    /// allows a submission server to insist).
    async fn check_sender(&self, from: &ReversePath) -> Verdict {
        let (Some(login), Some(accounts)) = (&self.cx.client.authenticated, &self.shared.accounts)
        else {
            return Verdict::Continue;
        };
        let Some(addr) = from.address() else {
            return Verdict::Continue;
        };
        let Ok(id) = portcullis_accounts::AccountId::parse(login) else {
            return Verdict::Reject(Reply::new(
                553,
                (5, 7, 1),
                "Sender address not owned by user",
            ));
        };
        match accounts.may_send_as(&id, addr).await {
            Ok(true) => Verdict::Continue,
            Ok(false) => Verdict::Reject(Reply::new(
                553,
                (5, 7, 1),
                format!("Sender address rejected: not owned by user {login}"),
            )),
            Err(e) => Verdict::defer(e.transaction_reply()),
        }
    }

    /// End of DATA: the chain's message stage, then the spool; `250` only
    /// once `Spool::store` has returned (the message is fsync'd).
    async fn finish_message(&mut self, chain: &Chain) -> Reply {
        let v = chain.message(&mut self.cx, &self.message).await;
        if let Some(reply) = v.reply() {
            let reply = reply.clone();
            self.refused("message", &v);
            return reply;
        }
        let Some(mut envelope) = self.cx.envelope.clone() else {
            return Reply::bad_sequence();
        };
        let may_relay = self.cx.client.authenticated.is_some() || self.cx.client.trusted_network;
        if let Some(sender) = self.snap.rules.srs_sender(may_relay, &envelope) {
            envelope.reverse_path = sender;
        }
        let mut data = Vec::with_capacity(self.message.len() + 512);
        received_header(
            &self.cx.client,
            &self.snap.settings.hostname,
            &envelope,
            SystemTime::UNIX_EPOCH + unix_now(),
            &mut data,
        );
        let mut quarantine = None;
        for action in &self.cx.actions {
            match action {
                Action::AddHeader { name, value } => {
                    push_header(&mut data, name, value);
                }
                Action::Quarantine { reason } => quarantine = Some(reason.clone()),
                _ => {}
            }
        }
        if self.snap.settings.mailauth.is_some() {
            // RFC 8601 §5: results claiming our authserv-id are forged.
            let hostname = &self.snap.settings.hostname;
            data.extend_from_slice(&crate::filters::strip_own_auth_results(
                &self.message,
                hostname,
            ));
        } else {
            data.extend_from_slice(&self.message);
        }
        let spool = self.shared.deliverer.spool().clone();
        let env = envelope.clone();
        let q = quarantine.clone();
        let store_started = tokio::time::Instant::now();
        let stored = tokio::task::spawn_blocking(move || match q {
            Some(reason) => spool.store_quarantined(&env, &data, &reason),
            None => spool.store(&env, &data),
        })
        .await;
        let rcpts: Vec<String> = envelope
            .recipients
            .iter()
            .map(|r| r.path.to_string())
            .collect();
        match stored {
            Ok(Ok(id)) => {
                if quarantine.is_none() {
                    self.shared.deliverer.submit(id);
                }
                self.stats.accepted += 1;
                crate::metrics::accepted(self.role.as_str(), store_started.elapsed());
                tracing::info!(
                    queue_id = %id,
                    client = %self.cx.client.peer,
                    listener = self.role.as_str(),
                    auth = self.cx.client.authenticated.as_deref().unwrap_or("-"),
                    sender = %envelope.reverse_path,
                    recipients = %rcpts.join(","),
                    size = self.message.len(),
                    requiretls = envelope.params.requiretls,
                    quarantine = quarantine.as_deref().unwrap_or("-"),
                    "accepted"
                );
                Reply::message_accepted(&id.to_string())
            }
            Ok(Err(e)) => {
                tracing::error!(client = %self.cx.client.peer, error = %e, "spool store failed");
                e.reply()
            }
            Err(e) => {
                tracing::error!(client = %self.cx.client.peer, error = %e, "spool task failed");
                Reply::temporary_failure()
            }
        }
    }
}

/// Resolves once the flag is true (or its sender is gone).
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}

fn unix_now() -> Duration {
    use portcullis_core::Clock;
    portcullis_core::SystemClock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

async fn write_out(stream: &mut Stream, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}

/// Text safe inside a header comment: printable ASCII, no parentheses or
/// backslashes, bounded.
fn comment_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\'))
        .take(255)
        .collect()
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ':')
        .collect();
    if name.is_empty() {
        return;
    }
    let value: String = value
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// RFC 5321 §4.4 trace field, with the RFC 3848 protocol keyword.
pub(crate) fn received_header(
    client: &Client,
    hostname: &str,
    envelope: &Envelope,
    now: SystemTime,
    out: &mut Vec<u8>,
) {
    let helo = comment_safe(client.helo.as_deref().unwrap_or("unknown"));
    let proto = match (client.esmtp, client.tls, client.authenticated.is_some()) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    let for_clause = match envelope.recipients.as_slice() {
        [one] => format!("\r\n\tfor {}", one.path),
        _ => String::new(),
    };
    let text = format!(
        "Received: from {helo} ([{ip}])\r\n\tby {hostname} (Portcullis) with {proto}{for_clause};\r\n\t{date}\r\n",
        ip = client.ip(),
        date = rfc5322_date(now),
    );
    out.extend_from_slice(text.as_bytes());
}

/// `Tue, 24 Nov 2026 12:00:00 +0000` (RFC 5322 §3.3), in UTC.
pub(crate) fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WD[days.rem_euclid(7) as usize];
    let mon = MON[(month - 1).clamp(0, 11) as usize];
    format!("{wd}, {d:02} {mon} {year} {h:02}:{m:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{ForwardPath, MailParams, Recipient};

    #[test]
    fn dates() {
        let t = |s| rfc5322_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(t(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(t(1_795_518_000), "Tue, 24 Nov 2026 11:00:00 +0000");
    }

    #[test]
    fn received_header_is_one_folded_field_and_safe() {
        let mut c = Client::new("192.0.2.7:4000".parse().unwrap());
        c.helo = Some("evil\r\nInjected: yes (x)".into());
        c.esmtp = true;
        c.tls = true;
        let mut env = Envelope::new(ReversePath::Null, MailParams::default());
        env.recipients
            .push(Recipient::new(ForwardPath::parse("<a@b.example>").unwrap()));
        let mut out = Vec::new();
        received_header(&c, "mx.test", &env, SystemTime::UNIX_EPOCH, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Received: from evilInjected:yesx ([192.0.2.7])\r\n\tby mx.test (Portcullis) with ESMTPS\r\n\tfor <a@b.example>;"), "{text}");
        // Every line after the first is a continuation.
        for line in text.trim_end_matches("\r\n").split("\r\n").skip(1) {
            assert!(line.starts_with('\t'), "{line:?}");
        }
    }
}
