//! An SMTP client [`Transport`] on `mail-send`. **Network I/O** (TCP, TLS)
//! lives here and in [`routing`](crate::routing), nowhere else in the crate.
//!
//! For each delivery it tries the hop's hosts and addresses in order until
//! one accepts a connection and greets with 220, upgrades with STARTTLS when
//! offered (or insists, per [`TlsPolicy`]), and runs one transaction: each
//! `RCPT` reply decides its recipient (2xx accepted, 4xx deferred, 5xx
//! bounced, RFC 5321 §4.2.1) and the reply after the data decides the
//! accepted ones. Idle connections are kept per host and reused for up to
//! `max_messages_per_connection` messages.
//!
//! # ESMTP parameters
//!
//! Every `MAIL`/`RCPT` parameter is sent only when the server announced
//! its extension in the EHLO reply in force (the one after STARTTLS, RFC
//! 3207 §4.2); what the envelope asks for and the server cannot honour is
//! decided here, before `MAIL`, as Postfix does:
//!
//! * **SIZE** (RFC 1870 §6): `SIZE=` with the octets sent, only when
//!   announced. A message larger than an announced limit is not offered:
//!   its recipients bounce with `552 5.3.4` (no other host is tried).
//! * **SMTPUTF8** (RFC 6531 §3.4): sent when the envelope asked for it or
//!   an address of the transaction is UTF-8. A server without it gets the
//!   message only if nothing needs it — neither an address nor the header
//!   section holds UTF-8 (RFC 6531 §3.2 lets a client that knows this send
//!   without); otherwise the recipients bounce with `550 5.6.7` (RFC 6533
//!   X.6.7), never a downgrade.
//! * **DSN** (RFC 3461 §4): with the extension, `RET`/`ENVID` on `MAIL`
//!   and `NOTIFY`/`ORCPT` on each `RCPT` as received (xtext-encoded again:
//!   the envelope holds them decoded), and the next hop owns the success
//!   notice. Without it nothing is sent and a recipient that asked
//!   `NOTIFY=SUCCESS` comes back as [`Outcome::Relayed`] with
//!   `dsn_passed_on: false`, so the queue sends a `relayed` DSN (RFC 3461
//!   §4.1). Other accepted recipients are [`Outcome::Delivered`].
//! * **8BITMIME** (RFC 6152): a message is 8-bit when declared so or when
//!   any octet is above 127 (a `BODY=7BIT` claim is not trusted). With the
//!   extension it goes with `BODY=8BITMIME`. Without it the client must not
//!   send 8-bit data (RFC 6152 §3): see [`to_seven_bit`] for the MIME
//!   conversion to quoted-printable (what Postfix does); what it cannot
//!   convert (8-bit header fields, a message without `MIME-Version`) goes
//!   as it is, as Postfix and Exim send it, rather than bouncing mail that
//!   nearly every such server takes.
//! * **BINARYMIME** (RFC 3030): never through `DATA`. With `BINARYMIME`
//!   and `CHUNKING` it goes as one `BDAT <size> LAST` with
//!   `BODY=BINARYMIME`. Without them, content that is in fact valid 8-bit
//!   text (CRLF lines of at most 998 octets, no NUL) goes as 8-bit above;
//!   true binary bounces with `554 5.6.3` (no conversion to base64).
//! * **REQUIRETLS** (RFC 8689 §4.2.1): the delivery needs STARTTLS with a
//!   certificate valid for the host name (whatever [`TlsPolicy`] says) and
//!   a server announcing `REQUIRETLS` after it, and passes `REQUIRETLS`. A
//!   host that cannot is left for the next one; when every host answered
//!   and none could, the recipients bounce with `550 5.7.30`; when some
//!   could not be reached, they are deferred. (The MX records are not
//!   checked for DNSSEC or MTA-STS, which §4.2.1 also asks.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mail_send::smtp::tls::build_tls_connector;
use mail_send::{Error as SendError, SmtpClient};
use portcullis_core::{Body, Notify, Reply, Ret, async_trait};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::downgrade::to_seven_bit;
use crate::dsn::xtext;
use crate::transport::{DeliveryRequest, HopHost, Outcome, Transport};

/// When to use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// Use it when offered, without checking the certificate (RFC 7435
    /// opportunistic security, what MX delivery does by default).
    #[default]
    Opportunistic,
    /// Require STARTTLS with a valid certificate for the host name; defer if absent.
    Required,
    /// Never (tests, trusted local links).
    Never,
}

/// SMTP client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SmtpTransportConfig {
    /// The name we give in EHLO.
    pub helo_name: String,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// Per-command and connect timeout.
    pub timeout: Duration,
    /// Messages sent on one connection before it is closed.
    pub max_messages_per_connection: u32,
    /// Idle connections kept per host. Match it to the scheduler's
    /// per-destination concurrency, or most deliveries open a new
    /// connection (measured: 4 idle with 20 in flight opened ~3 000
    /// connections for 5 000 messages, where Postfix opened 21).
    pub max_idle_per_host: usize,
}

impl SmtpTransportConfig {
    /// Defaults: opportunistic TLS, 5 min timeout (RFC 5321 §4.5.3.2 is
    /// more generous per phase), 100 messages per connection, 20 idle
    /// connections per host (the scheduler's default destination concurrency).
    pub fn new(helo_name: impl Into<String>) -> Self {
        SmtpTransportConfig {
            helo_name: helo_name.into(),
            tls: TlsPolicy::Opportunistic,
            timeout: Duration::from_secs(300),
            max_messages_per_connection: 100,
            max_idle_per_host: 20,
        }
    }

    /// Set [`SmtpTransportConfig::tls`].
    pub fn with_tls(mut self, tls: TlsPolicy) -> Self {
        self.tls = tls;
        self
    }

    /// Set [`SmtpTransportConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set [`SmtpTransportConfig::max_messages_per_connection`].
    pub fn with_max_messages_per_connection(mut self, n: u32) -> Self {
        self.max_messages_per_connection = n.max(1);
        self
    }
}

/// The transport could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpTransportError {
    /// Building the TLS client configuration failed.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the server announced in the EHLO reply in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Extensions {
    /// `smtp_proto::EXT_*` bits.
    caps: u32,
    /// The `SIZE` limit; 0 when none is given (RFC 1870 §4: no fixed maximum).
    size: u64,
}

impl Extensions {
    fn of(ehlo: &smtp_proto::EhloResponse<String>) -> Self {
        Extensions {
            caps: ehlo.capabilities,
            size: ehlo.size as u64,
        }
    }

    fn has(&self, ext: u32) -> bool {
        self.caps & ext != 0
    }
}

/// An open, greeted connection (EHLO done, TLS as the policy said).
pub(crate) struct Connection {
    client: SmtpClient<Stream>,
    sent: u32,
    ext: Extensions,
    tls: bool,
    /// TLS with the server's certificate checked against the host name.
    verified: bool,
}

/// Why a host could not take the message; the next one is tried.
#[derive(Debug)]
enum HostError {
    /// Refused, silent, timed out, broken connection: try later.
    Unreachable(Reply),
    /// STARTTLS absent or failed, or a certificate not valid for the host.
    Tls(Reply),
    /// Connected and secured, but no `REQUIRETLS` (RFC 8689 §4.2.1).
    NoRequireTls(Reply),
}

/// The SMTP client transport. See the module docs.
pub struct SmtpTransport {
    config: SmtpTransportConfig,
    verify: Option<TlsConnector>,
    opportunistic: Option<TlsConnector>,
    idle: Mutex<HashMap<(String, u16), Vec<Connection>>>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn reply_of(r: &smtp_proto::Response<String>) -> Reply {
    Reply::new(
        r.code,
        (r.esc[0], u16::from(r.esc[1]), u16::from(r.esc[2])),
        r.message.clone(),
    )
}

/// A local reply for a failure that is not an SMTP answer.
fn local(code: u16, e: (u8, u16, u16), text: String) -> Reply {
    Reply::new(code, e, text)
}

fn error_reply(e: &SendError) -> Reply {
    match e {
        SendError::UnexpectedReply(r) | SendError::AuthenticationFailed(r) => Reply::new(
            r.code,
            (r.esc[0], u16::from(r.esc[1]), u16::from(r.esc[2])),
            r.message.clone(),
        ),
        // RFC 3463 X.4.2: bad connection; X.4.7 for timeouts.
        SendError::Timeout => local(451, (4, 4, 7), "Timeout talking to next hop".into()),
        SendError::Tls(t) => local(451, (4, 7, 5), format!("TLS failure: {t}")),
        other => local(451, (4, 4, 2), format!("Connection failure: {other}")),
    }
}

impl SmtpTransport {
    /// A transport with `config`.
    pub fn new(config: SmtpTransportConfig) -> Result<Self, SmtpTransportError> {
        let verify = build_tls_connector(false).map_err(SmtpTransportError::Tls)?;
        let opportunistic = build_tls_connector(true).map_err(SmtpTransportError::Tls)?;
        Ok(SmtpTransport {
            config,
            verify: Some(verify),
            opportunistic: Some(opportunistic),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// Check certificates, where [`TlsPolicy::Required`] or REQUIRETLS
    /// asks, with `config` instead of the platform's trust store: a
    /// private CA for a smarthost, or a test's own.
    pub fn with_verified_tls(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.verify = Some(TlsConnector::from(config));
        self
    }

    /// A pooled connection to `host`; only a verified TLS one when
    /// `verified_only` (REQUIRETLS).
    fn take_idle(&self, host: &HopHost, verified_only: bool) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = idle.get_mut(&(host.name.clone(), host.port))?;
        let i = v.iter().rposition(|c| c.verified || !verified_only)?;
        Some(v.remove(i))
    }

    fn put_idle(&self, host: &HopHost, conn: Connection) {
        if conn.sent >= self.config.max_messages_per_connection {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = idle.entry((host.name.clone(), host.port)).or_default();
        if v.len() < self.config.max_idle_per_host {
            v.push(conn);
        }
    }

    /// Connect, read the greeting, EHLO, STARTTLS as the policy says.
    /// Also the callout's way in ([`crate::callout`]).
    pub(crate) async fn connect(
        &self,
        host: &HopHost,
        addr: SocketAddr,
    ) -> Result<Connection, Reply> {
        self.connect_with(host, addr, self.config.tls)
            .await
            .map_err(|e| match e {
                HostError::Unreachable(r) | HostError::Tls(r) | HostError::NoRequireTls(r) => r,
            })
    }

    async fn connect_with(
        &self,
        host: &HopHost,
        addr: SocketAddr,
        policy: TlsPolicy,
    ) -> Result<Connection, HostError> {
        let t = self.config.timeout;
        let unreachable = |e: SendError| HostError::Unreachable(error_reply(&e));
        let mut client = SmtpClient::connect(addr, t).await.map_err(unreachable)?;
        // mail-send's `read` has no timeout of its own (its `cmd` does): a
        // host that accepts and never greets must not hold the delivery.
        let greeting = read_within(&mut client, t).await.map_err(unreachable)?;
        if greeting.code != 220 {
            return Err(HostError::Unreachable(reply_of(&greeting)));
        }
        let ehlo = client
            .ehlo(&self.config.helo_name)
            .await
            .map_err(unreachable)?;
        let offers_tls = ehlo.has_capability(smtp_proto::EXT_START_TLS);
        let connector = match (policy, offers_tls) {
            (TlsPolicy::Never, _) | (TlsPolicy::Opportunistic, false) => None,
            (TlsPolicy::Required, false) => {
                return Err(HostError::Tls(local(
                    451,
                    (4, 7, 4),
                    format!("{} does not offer STARTTLS", host.name),
                )));
            }
            (TlsPolicy::Required, true) => self.verify.as_ref(),
            (TlsPolicy::Opportunistic, true) => self.opportunistic.as_ref(),
        };
        let Some(connector) = connector else {
            return Ok(Connection {
                ext: Extensions::of(&ehlo),
                client: SmtpClient {
                    stream: Stream::Plain(client.stream),
                    timeout: t,
                },
                sent: 0,
                tls: false,
                verified: false,
            });
        };
        let mut tls = client
            .start_tls(connector, &host.name)
            .await
            .map_err(|e| HostError::Tls(error_reply(&e)))?;
        // RFC 3207 §4.2: forget what was learnt before TLS; greet again.
        let ehlo = tls
            .ehlo(&self.config.helo_name)
            .await
            .map_err(unreachable)?;
        Ok(Connection {
            ext: Extensions::of(&ehlo),
            client: SmtpClient {
                stream: Stream::Tls(Box::new(tls.stream)),
                timeout: t,
            },
            sent: 0,
            tls: true,
            verified: policy == TlsPolicy::Required,
        })
    }

    /// One transaction on an open connection. `Err` means this host cannot
    /// take the message (try another); a verdict reached before `MAIL`
    /// (size, SMTPUTF8, binary content) is `Ok` like any other.
    async fn transaction(
        &self,
        conn: &mut Connection,
        request: &DeliveryRequest<'_>,
    ) -> Result<Vec<Outcome>, HostError> {
        let n = request.recipients.len();
        let plan = match plan(&conn.ext, conn.verified, request) {
            Ok(plan) => plan,
            Err(Refusal::Bounce(reply)) => return Ok(vec![Outcome::Bounced(reply); n]),
            Err(Refusal::NoRequireTls(reply)) => return Err(HostError::NoRequireTls(reply)),
        };
        let broken = |e: SendError| HostError::Unreachable(error_reply(&e));
        let c = &mut conn.client;
        let r = c.cmd(plan.mail.as_bytes()).await.map_err(broken)?;
        if r.code / 100 != 2 {
            let _ = c.cmd(b"RSET\r\n").await;
            return Ok(vec![Outcome::from_reply(reply_of(&r)); n]);
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        let mut accepted = 0;
        for (i, line) in plan.rcpts.iter().enumerate() {
            let r = c.cmd(line.as_bytes()).await.map_err(broken)?;
            if r.code / 100 == 2 {
                accepted += 1;
            } else {
                outcomes[i] = Some(Outcome::from_reply(reply_of(&r)));
            }
        }
        if accepted == 0 {
            let _ = c.cmd(b"RSET\r\n").await;
            return Ok(outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(no_outcome))
                .collect());
        }
        let timeout = c.timeout;
        let final_reply = match &plan.content {
            Content::Data(message) => {
                let r = c.cmd(b"DATA\r\n").await.map_err(broken)?;
                if r.code != 354 {
                    reply_of(&r)
                } else {
                    send_within(c, timeout, &dot_stuff(message)).await?;
                    reply_of(&read_within(c, timeout).await.map_err(broken)?)
                }
            }
            Content::Bdat(message) => {
                // RFC 3030 §2: one chunk, the whole message, no dot-stuffing.
                let mut chunk = format!("BDAT {} LAST\r\n", message.len()).into_bytes();
                chunk.extend_from_slice(message);
                send_within(c, timeout, &chunk).await?;
                reply_of(&read_within(c, timeout).await.map_err(broken)?)
            }
        };
        conn.sent += 1;
        let all = Outcome::from_reply(final_reply);
        Ok(outcomes
            .into_iter()
            .zip(request.recipients)
            .map(|(o, rcpt)| match o {
                Some(o) => o,
                // RFC 3461 §4.1: who owes a NOTIFY=SUCCESS its notice.
                None => match &all {
                    Outcome::Delivered(reply) if rcpt.effective_notify().success => {
                        Outcome::Relayed {
                            reply: reply.clone(),
                            dsn_passed_on: plan.dsn,
                        }
                    }
                    _ => all.clone(),
                },
            })
            .collect())
    }
}

/// Why a message is not offered on a connection.
#[derive(Debug)]
enum Refusal {
    /// Nobody can take it this way: bounce every recipient with this.
    Bounce(Reply),
    /// This host cannot meet REQUIRETLS; another may.
    NoRequireTls(Reply),
}

/// What goes after the recipients.
#[derive(Debug)]
enum Content<'a> {
    /// `DATA`, dot-stuffed on the way out.
    Data(Cow<'a, [u8]>),
    /// One `BDAT … LAST` chunk (BINARYMIME).
    Bdat(&'a [u8]),
}

/// One transaction, decided before a command is sent.
#[derive(Debug)]
struct Plan<'a> {
    /// `MAIL FROM:… params\r\n`.
    mail: String,
    /// `RCPT TO:… params\r\n`, one per request recipient.
    rcpts: Vec<String>,
    content: Content<'a>,
    /// The server took the DSN parameters (it announced DSN).
    dsn: bool,
}

/// The commands for `request` on a connection with `ext` (see the module
/// docs), or why it is not offered there.
fn plan<'a>(
    ext: &Extensions,
    verified_tls: bool,
    request: &DeliveryRequest<'a>,
) -> Result<Plan<'a>, Refusal> {
    let env = request.envelope;
    let params = &env.params;
    let message = request.message;
    let mut mail = format!("MAIL FROM:{}", env.reverse_path);

    // RFC 8689 §4.2.1: verified TLS, then REQUIRETLS announced after it.
    if params.requiretls {
        if !verified_tls {
            return Err(Refusal::NoRequireTls(local(
                550,
                (5, 7, 30),
                "REQUIRETLS support required: no verified TLS to the next hop".into(),
            )));
        }
        if !ext.has(smtp_proto::EXT_REQUIRE_TLS) {
            return Err(Refusal::NoRequireTls(local(
                550,
                (5, 7, 30),
                "REQUIRETLS support required: the next hop does not offer REQUIRETLS".into(),
            )));
        }
    }

    // RFC 6531 §3.2 / §3.4: UTF-8 addresses (or header fields, when the
    // sender said SMTPUTF8) need a server with SMTPUTF8; never downgraded.
    let utf8_addresses = env.reverse_path.address().is_some_and(|a| a.is_utf8())
        || request
            .recipients
            .iter()
            .any(|r| r.path.address().is_some_and(|a| a.is_utf8()));
    let needs_utf8 = utf8_addresses || (params.smtputf8 && !header_section(message).is_ascii());
    let utf8 = if ext.has(smtp_proto::EXT_SMTP_UTF8) {
        params.smtputf8 || utf8_addresses
    } else if needs_utf8 {
        return Err(Refusal::Bounce(local(
            550,
            (5, 6, 7),
            "SMTPUTF8 is required, but was not offered by the next hop".into(),
        )));
    } else {
        false
    };

    // RFC 6152 / RFC 3030: the body type the next hop is told, and the bytes.
    let chunking = ext.has(smtp_proto::EXT_BINARY_MIME) && ext.has(smtp_proto::EXT_CHUNKING);
    let (body, content) = if params.body == Body::BinaryMime && chunking {
        (Some("BINARYMIME"), Content::Bdat(message))
    } else if params.body == Body::BinaryMime && !is_text(message) {
        return Err(Refusal::Bounce(local(
            554,
            (5, 6, 3),
            "Binary content needs BINARYMIME and CHUNKING, which the next hop does not offer"
                .into(),
        )));
    } else if message.is_ascii() {
        (None, Content::Data(Cow::Borrowed(message)))
    } else if ext.has(smtp_proto::EXT_8BIT_MIME) {
        (Some("8BITMIME"), Content::Data(Cow::Borrowed(message)))
    } else {
        // RFC 6152 §3: no 8-bit data to this server; convert what MIME allows.
        (None, Content::Data(to_seven_bit(message)))
    };
    if let Some(body) = body {
        mail.push_str(" BODY=");
        mail.push_str(body);
    }

    // RFC 1870 §6: SIZE only when announced; over the limit, do not offer.
    if ext.has(smtp_proto::EXT_SIZE) {
        let size = match &content {
            Content::Data(m) => m.len(),
            Content::Bdat(m) => m.len(),
        } as u64;
        if ext.size > 0 && size > ext.size {
            return Err(Refusal::Bounce(local(
                552,
                (5, 3, 4),
                format!(
                    "Message size {size} exceeds the next hop's size limit of {}",
                    ext.size
                ),
            )));
        }
        mail.push_str(&format!(" SIZE={size}"));
    }
    if utf8 {
        mail.push_str(" SMTPUTF8");
    }

    // RFC 3461 §4: the DSN parameters travel only to a server with DSN.
    let dsn = ext.has(smtp_proto::EXT_DSN);
    if dsn {
        match params.ret {
            Some(Ret::Full) => mail.push_str(" RET=FULL"),
            Some(Ret::Headers) => mail.push_str(" RET=HDRS"),
            _ => {}
        }
        if let Some(envid) = &params.envid {
            mail.push_str(" ENVID=");
            mail.push_str(&xtext(envid));
        }
    }
    if params.requiretls {
        mail.push_str(" REQUIRETLS");
    }
    mail.push_str("\r\n");

    let rcpts = request
        .recipients
        .iter()
        .map(|r| {
            let mut line = format!("RCPT TO:{}", r.path);
            if dsn {
                if let Some(notify) = r.notify {
                    line.push_str(" NOTIFY=");
                    line.push_str(&notify_value(notify));
                }
                if let Some((addr_type, addr)) = &r.orcpt {
                    line.push_str(&format!(" ORCPT={addr_type};{}", xtext(addr)));
                }
            }
            line.push_str("\r\n");
            line
        })
        .collect();
    Ok(Plan {
        mail,
        rcpts,
        content,
        dsn,
    })
}

/// RFC 3461 §4.1: `NEVER` or the list of conditions.
fn notify_value(n: Notify) -> String {
    if n.is_never() {
        return "NEVER".to_owned();
    }
    [
        (n.success, "SUCCESS"),
        (n.failure, "FAILURE"),
        (n.delay, "DELAY"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, word)| *word)
    .collect::<Vec<_>>()
    .join(",")
}

/// The header section of a message: up to and with the empty line.
fn header_section(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4);
    &message[..end]
}

/// Whether `message` can travel as (8-bit) text: CRLF line ends only, no
/// NUL, lines of at most 998 octets (RFC 5321 §4.5.3.1.6, RFC 6152 §3).
pub(crate) fn is_text(message: &[u8]) -> bool {
    let mut line = 0usize;
    let mut prev = 0u8;
    for &b in message {
        match b {
            0 => return false,
            b'\n' if prev != b'\r' => return false,
            b'\n' => line = 0,
            b'\r' => {}
            _ if prev == b'\r' => return false,
            _ => {
                line += 1;
                if line > 998 {
                    return false;
                }
            }
        }
        prev = b;
    }
    prev != b'\r'
}

/// Write `bytes` within `t`; a failure is the connection's.
async fn send_within(
    c: &mut SmtpClient<Stream>,
    t: Duration,
    bytes: &[u8],
) -> Result<(), HostError> {
    let sent = tokio::time::timeout(t, async {
        c.stream.write_all(bytes).await?;
        c.stream.flush().await
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(HostError::Unreachable(local(
            451,
            (4, 4, 2),
            format!("Write failed: {e}"),
        ))),
        Err(_) => Err(HostError::Unreachable(local(
            451,
            (4, 4, 7),
            "Timeout sending data".into(),
        ))),
    }
}

impl Connection {
    /// Send one command line (with its CRLF) and read the reply. `Err` is a
    /// local reply for a failed connection (timeout, reset, garbage).
    pub(crate) async fn command(&mut self, line: &[u8]) -> Result<Reply, Reply> {
        self.client
            .cmd(line)
            .await
            .map(|r| reply_of(&r))
            .map_err(|e| error_reply(&e))
    }
}

/// One reply, or [`SendError::Timeout`] after `t`.
async fn read_within<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    t: Duration,
) -> Result<smtp_proto::Response<String>, SendError> {
    tokio::time::timeout(t, client.read())
        .await
        .unwrap_or(Err(SendError::Timeout))
}

fn no_outcome() -> Outcome {
    Outcome::Deferred(Reply::new(451, (4, 4, 0), "No reply for recipient"))
}

/// RFC 5321 §4.5.2 transparency: a line starting with `.` gets another
/// `.`; the data ends with CRLF `.` CRLF (a CRLF is added if missing).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[async_trait]
impl Transport for SmtpTransport {
    async fn deliver(&self, request: DeliveryRequest<'_>) -> Vec<Outcome> {
        let n = request.recipients.len();
        // RFC 8689 §4.2.1: verified TLS whatever the configured policy.
        let requiretls = request.envelope.params.requiretls;
        let policy = if requiretls {
            TlsPolicy::Required
        } else {
            self.config.tls
        };
        let mut last_error = local(451, (4, 4, 1), "No next hop host answered".into());
        // A host that answered but could not meet REQUIRETLS, and whether
        // any host could not be asked at all.
        let mut no_requiretls: Option<Reply> = None;
        let mut unreachable = false;
        for host in &request.hop.hosts {
            // A pooled connection first; if it fails, fall through to new ones.
            if let Some(mut conn) = self.take_idle(host, requiretls) {
                match self.transaction(&mut conn, &request).await {
                    Ok(outcomes) => {
                        self.put_idle(host, conn);
                        return outcomes;
                    }
                    Err(HostError::NoRequireTls(reply)) => {
                        self.put_idle(host, conn);
                        no_requiretls = Some(reply);
                        continue;
                    }
                    Err(_) => {}
                }
            }
            for ip in &host.addrs {
                let addr = SocketAddr::new(*ip, host.port);
                let result = match self.connect_with(host, addr, policy).await {
                    Ok(mut conn) => {
                        let result = self.transaction(&mut conn, &request).await;
                        if matches!(result, Ok(_) | Err(HostError::NoRequireTls(_))) {
                            tracing::debug!(host = %host.name, %addr, tls = conn.tls, "transaction");
                            self.put_idle(host, conn);
                        }
                        result
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(outcomes) => return outcomes,
                    Err(HostError::NoRequireTls(reply)) => no_requiretls = Some(reply),
                    Err(HostError::Tls(reply)) if requiretls => {
                        tracing::debug!(host = %host.name, %addr, %reply, "no verified TLS for REQUIRETLS");
                        no_requiretls = Some(local(
                            550,
                            (5, 7, 30),
                            format!("REQUIRETLS support required: {reply}"),
                        ));
                    }
                    Err(HostError::Unreachable(reply) | HostError::Tls(reply)) => {
                        tracing::debug!(host = %host.name, %addr, %reply, "next hop address failed");
                        unreachable = true;
                        last_error = reply;
                    }
                }
            }
        }
        // Every host answered and none can keep the message on TLS: bounce
        // (RFC 8689 §4.2.1); an unreachable one might, so wait for it.
        if let Some(reply) = no_requiretls
            && !unreachable
        {
            return vec![Outcome::Bounced(reply); n];
        }
        // Nobody took it: a connection-level failure defers (a 5xx greeting
        // from every host is still only a reason to try later, RFC 5321 §5.1).
        let reply = if last_error.is_transient() {
            last_error
        } else {
            local(
                451,
                (4, 4, 1),
                format!("All next hop hosts failed: {last_error}"),
            )
        };
        vec![Outcome::Deferred(reply); n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_crlf_lines_of_at_most_998_without_nul() {
        assert!(is_text(b"a\r\n\xc3\xa4\r\n"));
        assert!(is_text(b""));
        assert!(is_text(&[b'x'; 998]));
        assert!(!is_text(&[b'x'; 999]));
        assert!(!is_text(b"a\nb"), "bare LF");
        assert!(!is_text(b"a\rb"), "bare CR");
        assert!(!is_text(b"a\r"), "CR at the end");
        assert!(!is_text(b"a\0b"));
    }

    #[test]
    fn notify_values() {
        assert_eq!(notify_value(Notify::NEVER), "NEVER");
        assert_eq!(notify_value(Notify::DEFAULT), "FAILURE,DELAY");
        let all = Notify {
            success: true,
            failure: true,
            delay: true,
        };
        assert_eq!(notify_value(all), "SUCCESS,FAILURE,DELAY");
    }

    #[test]
    fn header_section_ends_at_the_empty_line() {
        assert_eq!(header_section(b"A: 1\r\n\r\nb\xc3"), b"A: 1\r\n\r\n");
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
    }
}
