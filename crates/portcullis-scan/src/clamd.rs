//! The clamd `INSTREAM` protocol: framing, reply parsing, and one scan over
//! a stream someone else opened. No sockets here: the stream comes from a
//! [`ScannerConnector`].
//!
//! Protocol (clamd(8), "INSTREAM"): the client sends `zINSTREAM\0`, then the
//! message as chunks each prefixed by its length as a 4-byte big-endian
//! integer, then a zero-length chunk. clamd answers one line, terminated by
//! `\0` because of the `z` prefix:
//!
//! * `stream: OK`
//! * `stream: <signature name> FOUND`
//! * `stream: <detail> ERROR`, or `INSTREAM size limit exceeded. ERROR` when
//!   the stream is longer than clamd's `StreamMaxLength` (clamd then closes
//!   the connection, possibly before it read everything).

use std::fmt;
use std::time::Duration;

use portcullis_core::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The command that starts a scan (`z` = replies end with `\0`).
pub const INSTREAM_COMMAND: &[u8] = b"zINSTREAM\0";

/// A two-way byte stream to the scanner.
///
/// Blanket-implemented for every `AsyncRead + AsyncWrite + Unpin + Send`
/// type (tokio's `TcpStream`, `UnixStream`, `DuplexStream`, TLS streams…).
pub trait ScannerIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> ScannerIo for T {}

/// A boxed connection to the scanner, as a [`ScannerConnector`] returns it.
pub type ScannerStream = Box<dyn ScannerIo>;

/// Opens a fresh connection to the scanner for each scan.
///
/// This crate never opens sockets itself; the caller chooses where the
/// scanner lives and how to reach it. Ready implementations are
/// [`TcpConnector`](crate::net::TcpConnector) and
/// [`UnixConnector`](crate::net::UnixConnector) (feature `net`, on by default).
///
/// Contract: `connect` may be called concurrently from many sessions, so
/// implementations are `Send + Sync`; each call returns a new, unshared
/// stream (clamd serves one command per connection). An `Err` means the
/// scanner is unreachable; the caller applies its own timeout around the call.
#[async_trait]
pub trait ScannerConnector: Send + Sync {
    /// Open a new connection.
    async fn connect(&self) -> std::io::Result<ScannerStream>;
}

#[async_trait]
impl<C: ScannerConnector + ?Sized> ScannerConnector for std::sync::Arc<C> {
    async fn connect(&self) -> std::io::Result<ScannerStream> {
        (**self).connect().await
    }
}

/// What the scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// `stream: OK`.
    Clean,
    /// `stream: <name> FOUND`.
    Infected {
        /// The signature name clamd reported, e.g. `Win.Test.EICAR_HDB-1`.
        signature: String,
    },
}

/// Why a scan gave no answer about the content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The connector could not reach the scanner.
    #[error("cannot connect to the scanner: {0}")]
    Connect(#[source] std::io::Error),
    /// Connecting took longer than [`ScanConfig::connect_timeout`].
    #[error("timed out connecting to the scanner")]
    ConnectTimeout,
    /// Reading or writing the stream failed.
    #[error("scanner I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// The scan took longer than [`ScanConfig::scan_timeout`].
    #[error("timed out waiting for the scanner")]
    Timeout,
    /// `INSTREAM size limit exceeded. ERROR`: the message is larger than the
    /// scanner's `StreamMaxLength`.
    #[error("message exceeds the scanner's stream size limit")]
    SizeLimitExceeded,
    /// The scanner answered `… ERROR`.
    #[error("scanner error: {0}")]
    Scanner(String),
    /// The scanner closed the connection without answering.
    #[error("scanner closed the connection without a reply")]
    NoReply,
    /// The answer was not one the protocol allows (or longer than
    /// [`ScanConfig::max_reply_len`]).
    #[error("malformed scanner reply: {0:?}")]
    MalformedReply(String),
}

/// The result of one scan.
pub type ScanResult = Result<ScanOutcome, ScanError>;

/// Limits for one scan. The timeouts are applied with
/// `tokio::time::timeout`, so the runtime needs its timer enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanConfig {
    /// How long opening the connection may take.
    pub connect_timeout: Duration,
    /// How long sending the message and receiving the answer may take.
    pub scan_timeout: Duration,
    /// Bytes per `INSTREAM` chunk (clamped to 1..=`u32::MAX`).
    pub chunk_size: usize,
    /// The longest reply accepted, in bytes.
    pub max_reply_len: usize,
}

impl Default for ScanConfig {
    /// 5 s to connect, 60 s to scan, 64 KiB chunks, replies up to 4 KiB.
    fn default() -> Self {
        ScanConfig {
            connect_timeout: Duration::from_secs(5),
            scan_timeout: Duration::from_secs(60),
            chunk_size: 64 * 1024,
            max_reply_len: 4096,
        }
    }
}

impl ScanConfig {
    /// Set both timeouts.
    pub fn with_timeouts(mut self, connect: Duration, scan: Duration) -> Self {
        self.connect_timeout = connect;
        self.scan_timeout = scan;
        self
    }

    /// Set the chunk size.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }
}

fn clamp_chunk(chunk_size: usize) -> usize {
    chunk_size.clamp(1, u32::MAX as usize)
}

/// The exact bytes an `INSTREAM` scan of `message` sends: the command, the
/// length-prefixed chunks and the zero-length terminator. Sans-IO: useful
/// for tests, fakes and callers with their own transport.
pub fn encode_instream(message: &[u8], chunk_size: usize) -> Vec<u8> {
    let chunk_size = clamp_chunk(chunk_size);
    let chunks = message.len().div_ceil(chunk_size);
    let mut out = Vec::with_capacity(INSTREAM_COMMAND.len() + message.len() + 4 * chunks + 4);
    out.extend_from_slice(INSTREAM_COMMAND);
    for chunk in message.chunks(chunk_size) {
        out.extend_from_slice(&chunk_len(chunk).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

fn chunk_len(chunk: &[u8]) -> u32 {
    // Chunks are at most u32::MAX bytes (clamp_chunk).
    u32::try_from(chunk.len()).unwrap_or(u32::MAX)
}

/// Parse one clamd reply (with or without its trailing `\0` / newline).
///
/// Never panics; anything that is not `OK`, `FOUND` or `ERROR` is
/// [`ScanError::MalformedReply`].
pub fn parse_reply(reply: &[u8]) -> ScanResult {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    if text.is_empty() {
        return Err(ScanError::NoReply);
    }
    if let Some(detail) = text.strip_suffix("ERROR") {
        if text.contains("size limit exceeded") {
            return Err(ScanError::SizeLimitExceeded);
        }
        let detail = detail.trim();
        let detail = detail.strip_prefix("stream:").unwrap_or(detail).trim();
        return Err(ScanError::Scanner(printable(detail)));
    }
    let Some(rest) = text.strip_prefix("stream:") else {
        return Err(ScanError::MalformedReply(printable(text)));
    };
    let rest = rest.trim();
    if rest == "OK" {
        return Ok(ScanOutcome::Clean);
    }
    if let Some(name) = rest.strip_suffix("FOUND") {
        let name = name.trim();
        if !name.is_empty() {
            return Ok(ScanOutcome::Infected {
                signature: printable(name),
            });
        }
    }
    Err(ScanError::MalformedReply(printable(text)))
}

/// Control characters replaced, so a reply never carries them into logs
/// or SMTP reply text.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Run one `INSTREAM` scan over an already-open stream. No timeouts here:
/// [`Scanner::scan`] and [`scan`] wrap this with the configured ones.
pub async fn scan_stream<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    message: &[u8],
    config: &ScanConfig,
) -> ScanResult {
    let written = write_instream(stream, message, config.chunk_size).await;
    // clamd answers early and closes when the size limit is hit, so read the
    // answer even when writing failed: it explains the failure.
    let reply = read_reply(stream, config.max_reply_len).await;
    match (written, reply) {
        (_, Ok(Some(reply))) => parse_reply(&reply),
        (Err(e), _) => Err(ScanError::Io(e)),
        (Ok(()), Ok(None)) => Err(ScanError::NoReply),
        (Ok(()), Err(e)) => Err(e),
    }
}

async fn write_instream<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    message: &[u8],
    chunk_size: usize,
) -> std::io::Result<()> {
    stream.write_all(INSTREAM_COMMAND).await?;
    for chunk in message.chunks(clamp_chunk(chunk_size)) {
        stream.write_all(&chunk_len(chunk).to_be_bytes()).await?;
        stream.write_all(chunk).await?;
    }
    stream.write_all(&0u32.to_be_bytes()).await?;
    stream.flush().await
}

/// Read up to the `\0` that ends a `z` reply (or EOF). `Ok(None)` when the
/// peer closed without sending anything.
async fn read_reply<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    max_len: usize,
) -> Result<Option<Vec<u8>>, ScanError> {
    let mut reply = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A reset after part of a reply still leaves that part usable.
            Err(_) if !reply.is_empty() => 0,
            Err(e) => return Err(ScanError::Io(e)),
        };
        if n == 0 {
            return Ok((!reply.is_empty()).then_some(reply));
        }
        let got = &buf[..n];
        if let Some(end) = got.iter().position(|&b| b == 0) {
            reply.extend_from_slice(&got[..end]);
            return Ok(Some(reply));
        }
        reply.extend_from_slice(got);
        if reply.len() > max_len {
            return Err(ScanError::MalformedReply(format!(
                "reply longer than {max_len} bytes"
            )));
        }
    }
}

/// A scanner reached through a connector, with timeouts.
pub struct Scanner<C: ?Sized> {
    config: ScanConfig,
    connector: C,
}

impl<C: ?Sized> fmt::Debug for Scanner<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: ScannerConnector> Scanner<C> {
    /// A scanner reached through `connector`.
    pub fn new(connector: C, config: ScanConfig) -> Self {
        Scanner { config, connector }
    }
}

impl<C: ScannerConnector + ?Sized> Scanner<C> {
    /// The limits in force.
    pub fn config(&self) -> &ScanConfig {
        &self.config
    }

    /// Connect, stream `message`, and parse the answer, within the
    /// configured timeouts.
    pub async fn scan(&self, message: &[u8]) -> ScanResult {
        scan_with(&self.connector, message, &self.config).await
    }
}

/// Scan `message` with the default [`ScanConfig`] (5 s to connect, 60 s to
/// scan).
pub async fn scan<C: ScannerConnector + ?Sized>(connector: &C, message: &[u8]) -> ScanResult {
    scan_with(connector, message, &ScanConfig::default()).await
}

/// Scan `message` with explicit limits.
pub async fn scan_with<C: ScannerConnector + ?Sized>(
    connector: &C,
    message: &[u8],
    config: &ScanConfig,
) -> ScanResult {
    let mut stream = match tokio::time::timeout(config.connect_timeout, connector.connect()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ScanError::Connect(e)),
        Err(_) => return Err(ScanError::ConnectTimeout),
    };
    match tokio::time::timeout(
        config.scan_timeout,
        scan_stream(&mut stream, message, config),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ScanError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"stream: OK\0").unwrap(), ScanOutcome::Clean);
        assert_eq!(parse_reply(b"stream: OK\n").unwrap(), ScanOutcome::Clean);
        assert_eq!(
            parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0").unwrap(),
            ScanOutcome::Infected {
                signature: "Win.Test.EICAR_HDB-1".into()
            }
        );
        assert!(matches!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            Err(ScanError::SizeLimitExceeded)
        ));
        match parse_reply(b"stream: Can't allocate memory ERROR\0") {
            Err(ScanError::Scanner(d)) => assert_eq!(d, "Can't allocate memory"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_reply(b"stream:  FOUND"),
            Err(ScanError::MalformedReply(_))
        ));
        assert!(matches!(
            parse_reply(b"PONG\0"),
            Err(ScanError::MalformedReply(_))
        ));
        assert!(matches!(parse_reply(b"\0"), Err(ScanError::NoReply)));
        match parse_reply(b"stream: Evil\r\n550 x FOUND") {
            Ok(ScanOutcome::Infected { signature }) => {
                assert!(!signature.contains(['\r', '\n']), "{signature:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_is_byte_exact() {
        let bytes = encode_instream(b"abcde", 2);
        let mut want = b"zINSTREAM\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        want.extend_from_slice(&[0, 0, 0, 2, b'c', b'd']);
        want.extend_from_slice(&[0, 0, 0, 1, b'e']);
        want.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(bytes, want);
        assert_eq!(encode_instream(b"", 0), b"zINSTREAM\0\0\0\0\0");
    }

    #[tokio::test]
    async fn scan_stream_writes_what_encode_describes() {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let message = vec![7u8; 200_000];
        let config = ScanConfig::default().with_chunk_size(65_536);
        let server = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the terminator can be present, then answer.
            let want_len = 10 + 200_000 + 4 * 4 + 4;
            while got.len() < want_len {
                let n = theirs.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            theirs.write_all(b"stream: OK\0").await.unwrap();
            got
        });
        let result = scan_stream(&mut ours, &message, &config).await;
        assert_eq!(result.unwrap(), ScanOutcome::Clean);
        assert_eq!(server.await.unwrap(), encode_instream(&message, 65_536));
    }
}
