//! Loopback SMTP servers for the transport tests: a scripted tokio server
//! that records every command line and message and announces the EHLO
//! keywords each test chooses, and Postfix's `smtp-sink`.
//!
//! The scripted server is strict about parameters, as many real servers
//! are: a `MAIL`/`RCPT` parameter of an extension it did not announce gets
//! `555 5.5.4`, `SIZE=` above its announced limit `552 5.3.4`, `DATA`
//! after `BODY=BINARYMIME` `503 5.5.1` (RFC 3030 §3), `BDAT` without
//! CHUNKING `502 5.5.1`, a UTF-8 path in a transaction without
//! `SMTPUTF8` `553 5.6.7`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_queue::{HopHost, NextHop};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::rustls;

pub(crate) const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The reply to a RCPT line; `None`: never answer.
pub(crate) type RcptScript = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How a scripted server behaves.
pub(crate) struct Script {
    /// Send the 220 greeting (else accept and stay silent).
    pub(crate) greet: bool,
    /// EHLO keyword lines after the host name, e.g. `"SIZE 1000"`, `"DSN"`.
    pub(crate) keywords: Vec<String>,
    /// The reply to each RCPT line.
    pub(crate) rcpt: RcptScript,
    /// Answer the end of the message (else swallow it and stay silent).
    pub(crate) answer_data: bool,
    /// Answer QUIT and hang up (else stay silent and keep reading).
    pub(crate) answer_quit: bool,
    /// Hold every RCPT reply until this many connections were open at once.
    pub(crate) rcpt_gate: Option<usize>,
    /// Hold every RCPT reply until the test adds a permit.
    pub(crate) rcpt_hold: Option<Arc<Semaphore>>,
    /// Offer STARTTLS with this certificate (REQUIRETLS, if among the
    /// keywords, is announced only after it).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl Script {
    /// Greets, announces `keywords`, accepts every recipient and message.
    pub(crate) fn new(keywords: &[&str]) -> Self {
        Script {
            greet: true,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            rcpt: Box::new(|_| Some("250 2.1.5 Ok".to_owned())),
            answer_data: true,
            answer_quit: true,
            rcpt_gate: None,
            rcpt_hold: None,
            tls: None,
        }
    }

    /// Reply to RCPT with `f` (given the whole line).
    pub(crate) fn with_rcpt(
        mut self,
        f: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.rcpt = Box::new(f);
        self
    }

    /// Accept connections and never greet.
    pub(crate) fn silent() -> Self {
        Script {
            greet: false,
            ..Script::new(&[])
        }
    }

    /// Offer STARTTLS with `cert` (see [`Certificate`]).
    pub(crate) fn with_tls(mut self, cert: &Certificate) -> Self {
        self.tls = Some(cert.server.clone());
        self
    }

    /// Never answer the end of a message.
    pub(crate) fn mute_after_data(mut self) -> Self {
        self.answer_data = false;
        self
    }

    /// Never answer QUIT: the connection stays open until the client
    /// closes it.
    pub(crate) fn mute_after_quit(mut self) -> Self {
        self.answer_quit = false;
        self
    }

    /// Hold every RCPT reply until `n` connections were open at once.
    pub(crate) fn gate_rcpt(mut self, n: usize) -> Self {
        self.rcpt_gate = Some(n);
        self
    }

    /// Hold every RCPT reply until `hold` gets a permit (one per reply).
    pub(crate) fn hold_rcpt(mut self, hold: Arc<Semaphore>) -> Self {
        self.rcpt_hold = Some(hold);
        self
    }

    fn announces(&self, keyword: &str) -> bool {
        self.keywords.iter().any(|k| {
            k.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
        })
    }

    /// The announced SIZE limit (0: none).
    fn size_limit(&self) -> u64 {
        self.keywords
            .iter()
            .find_map(|k| {
                let mut w = k.split_whitespace();
                w.next()
                    .filter(|w| w.eq_ignore_ascii_case("SIZE"))
                    .map(|_| w.next().and_then(|n| n.parse().ok()).unwrap_or(0))
            })
            .unwrap_or(0)
    }

    /// The error for a parameter the server did not announce, if any.
    fn check_params(&self, line: &str, secured: bool) -> Option<String> {
        let params = line.rsplit_once('>').map_or("", |(_, p)| p);
        for p in params.split_whitespace() {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            let key = key.to_ascii_uppercase();
            let needs = match key.as_str() {
                "SIZE" => "SIZE",
                "BODY" if value.eq_ignore_ascii_case("8BITMIME") => "8BITMIME",
                "BODY" if value.eq_ignore_ascii_case("BINARYMIME") => "BINARYMIME",
                "BODY" if value.eq_ignore_ascii_case("7BIT") => "",
                "SMTPUTF8" => "SMTPUTF8",
                "RET" | "ENVID" | "NOTIFY" | "ORCPT" => "DSN",
                "REQUIRETLS" => "REQUIRETLS",
                "AUTH" => "AUTH",
                _ => return Some(format!("555 5.5.4 Unsupported option: {key}")),
            };
            let announced = self.announces(needs) && (secured || needs != "REQUIRETLS");
            if !needs.is_empty() && !announced {
                return Some(format!("555 5.5.4 Unsupported option: {key}"));
            }
            if key == "SIZE" {
                let limit = self.size_limit();
                if limit > 0 && value.parse::<u64>().is_ok_and(|n| n > limit) {
                    return Some("552 5.3.4 Message size exceeds fixed limit".to_owned());
                }
            }
        }
        None
    }
}

/// One connection as the server saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    /// Command lines in order, without CRLF (not the message data).
    pub(crate) commands: Vec<String>,
    /// Messages received: DATA as on the wire (dot-stuffed, without the
    /// final `.` line), BDAT chunks joined.
    pub(crate) messages: Vec<Vec<u8>>,
    /// Whether STARTTLS completed (commands after it are on TLS).
    pub(crate) tls: bool,
}

/// What a scripted server saw, shared by its connections.
#[derive(Default)]
struct State {
    sessions: Mutex<Vec<Session>>,
    /// Connections open now, the most ever open at once, and closed.
    open: AtomicUsize,
    max_open: AtomicUsize,
    closed: AtomicUsize,
    /// Woken on every connection, command line and close.
    changed: Notify,
}

impl State {
    fn record(&self, index: usize, f: impl FnOnce(&mut Session)) {
        f(&mut self.sessions.lock().unwrap()[index]);
        self.changed.notify_waiters();
    }

    /// Wait (bounded, so a bug fails instead of hanging) until `done`.
    async fn wait_until(&self, what: &str, done: impl Fn(&State) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let changed = self.changed.notified();
                if done(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }
}

/// A running scripted server.
#[derive(Clone)]
pub(crate) struct Scripted {
    /// Where it listens.
    pub(crate) host: HopHost,
    state: Arc<State>,
}

impl Scripted {
    /// Listen on a loopback port and serve every connection with `script`.
    pub(crate) async fn start(script: Script) -> Self {
        let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let script = Arc::new(script);
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = s.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let index = {
                        let mut all = state.sessions.lock().unwrap();
                        all.push(Session::default());
                        all.len() - 1
                    };
                    let now_open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
                    state.max_open.fetch_max(now_open, Ordering::SeqCst);
                    state.changed.notify_waiters();
                    serve(stream, &script, &state, index).await;
                    state.open.fetch_sub(1, Ordering::SeqCst);
                    state.closed.fetch_add(1, Ordering::SeqCst);
                    state.changed.notify_waiters();
                });
            }
        });
        Scripted {
            host: HopHost::new("scripted.test", vec![LOOPBACK], port),
            state,
        }
    }

    /// Every connection so far.
    pub(crate) fn sessions(&self) -> Vec<Session> {
        self.state.sessions.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.state.sessions.lock().unwrap().len()
    }

    /// The most connections ever open at once.
    pub(crate) fn max_open(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }

    /// Wait (bounded) until `n` connections have ended.
    pub(crate) async fn wait_closed(&self, n: usize) {
        self.state
            .wait_until("connections to close", |s| {
                s.closed.load(Ordering::SeqCst) >= n
            })
            .await;
    }

    /// Wait (bounded) until some connection has sent `RCPT`.
    pub(crate) async fn wait_rcpt(&self) {
        self.state
            .wait_until("a RCPT", |s| {
                s.sessions
                    .lock()
                    .unwrap()
                    .iter()
                    .flat_map(|s| &s.commands)
                    .any(|c| c.starts_with("RCPT"))
            })
            .await;
    }

    /// All command lines, every connection in turn.
    pub(crate) fn commands(&self) -> Vec<String> {
        self.sessions()
            .into_iter()
            .flat_map(|s| s.commands)
            .collect()
    }

    /// The command lines starting with `verb` (e.g. `"MAIL"`).
    pub(crate) fn lines(&self, verb: &str) -> Vec<String> {
        self.commands()
            .into_iter()
            .filter(|c| c.len() >= verb.len() && c[..verb.len()].eq_ignore_ascii_case(verb))
            .collect()
    }

    /// All messages received, in order.
    pub(crate) fn messages(&self) -> Vec<Vec<u8>> {
        self.sessions()
            .into_iter()
            .flat_map(|s| s.messages)
            .collect()
    }

    /// A next hop through this server only.
    pub(crate) fn hop(&self, destination: &str) -> NextHop {
        NextHop::new(destination, vec![self.host.clone()])
    }
}

async fn serve(stream: tokio::net::TcpStream, script: &Script, state: &State, index: usize) {
    let Some(plain) = session(stream, script, state, index, false).await else {
        return;
    };
    // STARTTLS was answered 220: the handshake, then the session afresh.
    let Some(tls) = &script.tls else { return };
    let Ok(secured) = tokio_rustls::TlsAcceptor::from(tls.clone())
        .accept(plain)
        .await
    else {
        return;
    };
    state.record(index, |s| s.tls = true);
    session(secured, script, state, index, true).await;
}

/// Serve commands on `stream` until QUIT or the end; `Some(stream)` when
/// the client asked for STARTTLS and was told to go ahead.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: &Script,
    state: &State,
    index: usize,
    secured: bool,
) -> Option<S> {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let record = |f: &dyn Fn(&mut Session)| state.record(index, f);
    if script.greet && !secured {
        let _ = w.write_all(b"220 scripted.test ESMTP\r\n").await;
    }
    let mut binary = false;
    let mut utf8 = false;
    let mut chunks = Vec::new();
    loop {
        let mut raw = Vec::new();
        match r.read_until(b'\n', &mut raw).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        record(&|s| s.commands.push(line.clone()));
        if !script.greet {
            continue;
        }
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["scripted.test".to_owned()];
                // RFC 8689 §4.1: REQUIRETLS is announced only over TLS.
                lines.extend(
                    script
                        .keywords
                        .iter()
                        .filter(|k| secured || !k.eq_ignore_ascii_case("REQUIRETLS"))
                        .cloned(),
                );
                if script.tls.is_some() && !secured {
                    lines.push("STARTTLS".to_owned());
                }
                let n = lines.len();
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            }
            "MAIL" => match script.check_params(&line, secured) {
                Some(err) => err,
                None => {
                    let up = line.to_ascii_uppercase();
                    binary = up.contains("BODY=BINARYMIME");
                    utf8 = up.contains(" SMTPUTF8");
                    if !utf8 && !line.is_ascii() {
                        "553 5.6.7 Non-ASCII address requires SMTPUTF8".to_owned()
                    } else {
                        "250 2.1.0 Ok".to_owned()
                    }
                }
            },
            "RCPT" => match script.check_params(&line, secured) {
                Some(err) => err,
                None if !utf8 && !line.is_ascii() => {
                    "553 5.6.7 Non-ASCII address requires SMTPUTF8".to_owned()
                }
                None => {
                    if let Some(n) = script.rcpt_gate {
                        state
                            .wait_until("connections open at once", |s| {
                                s.max_open.load(Ordering::SeqCst) >= n
                            })
                            .await;
                    }
                    if let Some(hold) = &script.rcpt_hold {
                        hold.acquire().await.unwrap().forget();
                    }
                    match (script.rcpt)(&line) {
                        Some(reply) => reply,
                        None => continue,
                    }
                }
            },
            "DATA" if binary => "503 5.5.1 BINARYMIME needs BDAT".to_owned(),
            "DATA" => {
                let _ = w
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await;
                let mut message = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                        return None;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    message.extend_from_slice(&l);
                }
                record(&|s| s.messages.push(message.clone()));
                if !script.answer_data {
                    continue;
                }
                "250 2.0.0 Ok: queued as 42".to_owned()
            }
            "BDAT" if !script.announces("CHUNKING") => "502 5.5.1 BDAT not supported".to_owned(),
            "BDAT" => {
                let mut words = line.split_whitespace().skip(1);
                let size: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
                let mut chunk = vec![0; size];
                if r.read_exact(&mut chunk).await.is_err() {
                    return None;
                }
                chunks.extend_from_slice(&chunk);
                if last {
                    let message = std::mem::take(&mut chunks);
                    record(&|s| s.messages.push(message.clone()));
                    "250 2.0.0 Ok: queued as 43".to_owned()
                } else {
                    format!("250 2.0.0 {size} octets received")
                }
            }
            "STARTTLS" if script.tls.is_some() && !secured => {
                let _ = w.write_all(b"220 2.0.0 Ready to start TLS\r\n").await;
                return Some(r.into_inner().unsplit(w));
            }
            "RSET" | "NOOP" => "250 2.0.0 Ok".to_owned(),
            "QUIT" if !script.answer_quit => continue,
            "QUIT" => {
                let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
                return None;
            }
            _ => "502 5.5.2 Error: command not recognized".to_owned(),
        };
        if reply_line(&mut w, &reply).await.is_err() {
            return None;
        }
    }
}

async fn reply_line(w: &mut (impl AsyncWrite + Unpin), reply: &str) -> std::io::Result<()> {
    w.write_all(format!("{reply}\r\n").as_bytes()).await
}

/// A self-signed certificate for `scripted.test`, the scripted server's
/// host name, with a client configuration that trusts it.
pub(crate) struct Certificate {
    server: Arc<rustls::ServerConfig>,
    /// Trusts this certificate only (ring, as the transport uses).
    pub(crate) client: Arc<rustls::ClientConfig>,
}

impl Certificate {
    pub(crate) fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let generated =
            rcgen::generate_simple_self_signed(vec!["scripted.test".to_owned()]).unwrap();
        let der = generated.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Certificate {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    }
}

/// Postfix's `smtp-sink` on a loopback port, killed on drop.
pub(crate) struct Sink {
    child: std::process::Child,
    /// Where it listens.
    pub(crate) host: HopHost,
    /// Its per-message dump files (`-d`), if asked for.
    dumps: Option<tempfile::TempDir>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

impl Sink {
    /// Start `smtp-sink` with `args`, dumping each message when `dump`;
    /// `None` (and a note) when it is not installed.
    pub(crate) async fn start(args: &[&str], dump: bool) -> Option<Sink> {
        if !std::path::Path::new(SMTP_SINK).exists() {
            eprintln!("{SMTP_SINK} not installed: skipping the smtp-sink check");
            return None;
        }
        let port = {
            let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = std::process::Command::new(SMTP_SINK);
        // smtp-sink refuses to run as root without dropping privileges.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            cmd.args(["-u", "nobody"]);
        }
        let dumps = dump.then(|| {
            let d = tempfile::tempdir().unwrap();
            // Written after smtp-sink drops to `nobody`.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            d
        });
        if let Some(d) = &dumps {
            cmd.arg("-d").arg(d.path().join("%H%M%S."));
        }
        // Owned by the guard at once, so it is killed and reaped on every path.
        let sink = Sink {
            child: cmd
                .args(args)
                .arg(format!("127.0.0.1:{port}"))
                .arg("10")
                .spawn()
                .unwrap(),
            host: HopHost::new("smtp-sink.test", vec![LOOPBACK], port),
            dumps,
        };
        // Wait (bounded) until it listens.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect((LOOPBACK, port))
                .await
                .is_ok()
            {
                return Some(sink);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("smtp-sink did not start");
    }

    /// The dumped messages (smtp-sink's `X-Mail-Args:` / `X-Rcpt-Args:`
    /// records, then the message), oldest first. A dump is written when
    /// the message ends, before smtp-sink answers the final dot.
    pub(crate) fn dumps(&self) -> Vec<String> {
        let Some(d) = &self.dumps else {
            return Vec::new();
        };
        let mut files: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }

    /// A next hop through this sink only.
    pub(crate) fn hop(&self, destination: &str) -> NextHop {
        NextHop::new(destination, vec![self.host.clone()])
    }
}
