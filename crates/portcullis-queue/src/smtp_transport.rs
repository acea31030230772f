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

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use mail_send::smtp::tls::build_tls_connector;
use mail_send::{Error as SendError, SmtpClient};
use portcullis_core::{Body, Reply, async_trait};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

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

/// An open, greeted connection (EHLO done, TLS as the policy said).
pub(crate) struct Connection {
    client: SmtpClient<Stream>,
    sent: u32,
    eight_bit: bool,
    tls: bool,
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

    fn take_idle(&self, host: &HopHost) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&(host.name.clone(), host.port))
            .and_then(|v| v.pop())
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
        let t = self.config.timeout;
        let mut client = SmtpClient::connect(addr, t)
            .await
            .map_err(|e| error_reply(&e))?;
        // mail-send's `read` has no timeout of its own (its `cmd` does): a
        // host that accepts and never greets must not hold the delivery.
        let greeting = read_within(&mut client, t)
            .await
            .map_err(|e| error_reply(&e))?;
        if greeting.code != 220 {
            return Err(reply_of(&greeting));
        }
        let ehlo = client
            .ehlo(&self.config.helo_name)
            .await
            .map_err(|e| error_reply(&e))?;
        let offers_tls = ehlo.has_capability(smtp_proto::EXT_START_TLS);
        let connector = match (self.config.tls, offers_tls) {
            (TlsPolicy::Never, _) | (TlsPolicy::Opportunistic, false) => None,
            (TlsPolicy::Required, false) => {
                return Err(local(
                    451,
                    (4, 7, 4),
                    format!("{} does not offer STARTTLS", host.name),
                ));
            }
            (TlsPolicy::Required, true) => self.verify.as_ref(),
            (TlsPolicy::Opportunistic, true) => self.opportunistic.as_ref(),
        };
        let Some(connector) = connector else {
            return Ok(Connection {
                eight_bit: ehlo.has_capability(smtp_proto::EXT_8BIT_MIME),
                client: SmtpClient {
                    stream: Stream::Plain(client.stream),
                    timeout: t,
                },
                sent: 0,
                tls: false,
            });
        };
        let mut tls = client
            .start_tls(connector, &host.name)
            .await
            .map_err(|e| error_reply(&e))?;
        // RFC 3207 §4.2: forget what was learnt before TLS; greet again.
        let ehlo = tls
            .ehlo(&self.config.helo_name)
            .await
            .map_err(|e| error_reply(&e))?;
        Ok(Connection {
            eight_bit: ehlo.has_capability(smtp_proto::EXT_8BIT_MIME),
            client: SmtpClient {
                stream: Stream::Tls(Box::new(tls.stream)),
                timeout: t,
            },
            sent: 0,
            tls: true,
        })
    }

    /// One transaction on an open connection. `Err` means the connection
    /// failed before any recipient was decided (try another host).
    async fn transaction(
        &self,
        conn: &mut Connection,
        request: &DeliveryRequest<'_>,
    ) -> Result<Vec<Outcome>, Reply> {
        let n = request.recipients.len();
        let env = request.envelope;
        let mut mail = format!("MAIL FROM:{}", env.reverse_path);
        if conn.eight_bit && env.params.body == Body::EightBitMime {
            mail.push_str(" BODY=8BITMIME");
        }
        mail.push_str(&format!(" SIZE={}\r\n", request.message.len()));
        let c = &mut conn.client;
        let r = c.cmd(mail.as_bytes()).await.map_err(|e| error_reply(&e))?;
        if r.code / 100 != 2 {
            let _ = c.cmd(b"RSET\r\n").await;
            return Ok(vec![Outcome::from_reply(reply_of(&r)); n]);
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        let mut accepted = 0;
        for (i, rcpt) in request.recipients.iter().enumerate() {
            let r = c
                .cmd(format!("RCPT TO:{}\r\n", rcpt.path).as_bytes())
                .await
                .map_err(|e| error_reply(&e))?;
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
        let r = c.cmd(b"DATA\r\n").await.map_err(|e| error_reply(&e))?;
        let final_reply = if r.code != 354 {
            reply_of(&r)
        } else {
            let data = dot_stuff(request.message);
            let timeout = c.timeout;
            let sent = tokio::time::timeout(timeout, async {
                c.stream.write_all(&data).await?;
                c.stream.flush().await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(local(451, (4, 4, 2), format!("Write failed: {e}"))),
                Err(_) => return Err(local(451, (4, 4, 7), "Timeout sending data".into())),
            }
            let r = read_within(c, timeout).await.map_err(|e| error_reply(&e))?;
            reply_of(&r)
        };
        conn.sent += 1;
        let all = Outcome::from_reply(final_reply);
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| all.clone()))
            .collect())
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
        let mut last_error = local(451, (4, 4, 1), "No next hop host answered".into());
        for host in &request.hop.hosts {
            // A pooled connection first; if it fails, fall through to new ones.
            if let Some(mut conn) = self.take_idle(host)
                && let Ok(outcomes) = self.transaction(&mut conn, &request).await
            {
                self.put_idle(host, conn);
                return outcomes;
            }
            for ip in &host.addrs {
                let addr = SocketAddr::new(*ip, host.port);
                let mut conn = match self.connect(host, addr).await {
                    Ok(c) => c,
                    Err(reply) => {
                        tracing::debug!(host = %host.name, %addr, %reply, "next hop address failed");
                        last_error = reply;
                        continue;
                    }
                };
                match self.transaction(&mut conn, &request).await {
                    Ok(outcomes) => {
                        tracing::debug!(host = %host.name, %addr, tls = conn.tls, "delivered transaction");
                        self.put_idle(host, conn);
                        return outcomes;
                    }
                    Err(reply) => last_error = reply,
                }
            }
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
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
    }
}
