//! The clamd protocol against a fake clamd on 127.0.0.1 (a tokio
//! `TcpListener`) that checks the INSTREAM framing byte by byte and answers
//! as scripted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Action, Client, Context, Filter, Verdict, async_trait};
use portcullis_scan::net::TcpConnector;
use portcullis_scan::{
    OnFailure, OnVirus, ScanConfig, ScanError, ScanFilter, ScanOutcome, ScanPolicy, Scanner,
    ScannerConnector, ScannerStream, scan, scan_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How the fake answers.
#[derive(Clone)]
enum Script {
    /// Read the whole stream, then send these bytes.
    Answer(&'static [u8]),
    /// Like clamd's StreamMaxLength: once more than `limit` body bytes have
    /// been announced, answer the size-limit error and stop reading.
    SizeLimit(usize),
    /// Read the command, then close without a word.
    HangUp,
}

/// What the fake saw on one connection.
#[derive(Debug, Default)]
struct Seen {
    command: Vec<u8>,
    chunk_lengths: Vec<u32>,
    body: Vec<u8>,
    terminated: bool,
}

async fn read_frames(sock: &mut TcpStream, seen: &mut Seen, limit: Option<usize>) -> bool {
    let mut command = [0u8; 10];
    sock.read_exact(&mut command).await.unwrap();
    seen.command = command.to_vec();
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return false;
        }
        // Big-endian length, decoded by hand (not by the code under test).
        let n = (u32::from(len[0]) << 24)
            | (u32::from(len[1]) << 16)
            | (u32::from(len[2]) << 8)
            | u32::from(len[3]);
        if n == 0 {
            seen.terminated = true;
            return true;
        }
        seen.chunk_lengths.push(n);
        if let Some(limit) = limit
            && seen.body.len() + n as usize > limit
        {
            return false;
        }
        let mut chunk = vec![0u8; n as usize];
        sock.read_exact(&mut chunk).await.unwrap();
        seen.body.extend_from_slice(&chunk);
    }
}

async fn fake_clamd(script: Script) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let script = script.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                match script {
                    Script::Answer(reply) => {
                        read_frames(&mut sock, &mut seen, None).await;
                        sock.write_all(reply).await.unwrap();
                    }
                    Script::SizeLimit(limit) => {
                        read_frames(&mut sock, &mut seen, Some(limit)).await;
                        sock.write_all(b"INSTREAM size limit exceeded. ERROR\0")
                            .await
                            .unwrap();
                        sock.shutdown().await.unwrap();
                        // Drain politely so the close is a FIN, not a reset.
                        let mut sink = Vec::new();
                        let _ = sock.read_to_end(&mut sink).await;
                    }
                    Script::HangUp => {
                        let mut command = [0u8; 10];
                        sock.read_exact(&mut command).await.unwrap();
                        seen.command = command.to_vec();
                    }
                }
                tx.send(seen).unwrap();
            });
        }
    });
    (addr, rx)
}

fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn clean_message_framing_is_byte_exact() {
    let (addr, mut seen) = fake_clamd(Script::Answer(b"stream: OK\0")).await;
    let msg = message(150_000);
    let config = ScanConfig::default().with_chunk_size(65_536);
    let result = scan_with(&TcpConnector::new(addr), &msg, &config).await;
    assert_eq!(result.unwrap(), ScanOutcome::Clean);
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.command, b"zINSTREAM\0");
    assert_eq!(seen.chunk_lengths, [65_536, 65_536, 150_000 - 131_072]);
    assert!(seen.terminated, "zero-length chunk ends the stream");
    assert_eq!(seen.body, msg);
}

#[tokio::test]
async fn empty_message_is_just_the_terminator() {
    let (addr, mut seen) = fake_clamd(Script::Answer(b"stream: OK\0")).await;
    assert_eq!(
        scan(&TcpConnector::new(addr), b"").await.unwrap(),
        ScanOutcome::Clean
    );
    let seen = seen.recv().await.unwrap();
    assert!(seen.chunk_lengths.is_empty());
    assert!(seen.terminated);
}

#[tokio::test]
async fn found_names_the_signature() {
    let (addr, _seen) = fake_clamd(Script::Answer(b"stream: Win.Test.EICAR_HDB-1 FOUND\0")).await;
    let result = scan(&TcpConnector::new(addr), b"X5O!P%@AP").await;
    assert_eq!(
        result.unwrap(),
        ScanOutcome::Infected {
            signature: "Win.Test.EICAR_HDB-1".into()
        }
    );
}

#[tokio::test]
async fn error_reply_is_a_scanner_error() {
    let (addr, _seen) = fake_clamd(Script::Answer(b"stream: Can't allocate memory ERROR\0")).await;
    match scan(&TcpConnector::new(addr), b"data").await {
        Err(ScanError::Scanner(detail)) => assert_eq!(detail, "Can't allocate memory"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn size_limit_is_reported_even_when_clamd_stops_reading() {
    let (addr, mut seen) = fake_clamd(Script::SizeLimit(100_000)).await;
    let msg = message(400_000);
    let config = ScanConfig::default().with_chunk_size(32_768);
    let result = scan_with(&TcpConnector::new(addr), &msg, &config).await;
    assert!(
        matches!(result, Err(ScanError::SizeLimitExceeded)),
        "{result:?}"
    );
    let seen = seen.recv().await.unwrap();
    assert!(!seen.terminated);
    assert!(seen.body.len() <= 100_000);
}

#[tokio::test]
async fn hang_up_without_reply() {
    let (addr, mut seen) = fake_clamd(Script::HangUp).await;
    let result = scan(&TcpConnector::new(addr), b"hello").await;
    assert!(
        matches!(result, Err(ScanError::NoReply | ScanError::Io(_))),
        "{result:?}"
    );
    assert_eq!(seen.recv().await.unwrap().command, b"zINSTREAM\0");
}

#[tokio::test]
async fn unreachable_scanner_is_a_connect_error() {
    // Bind then drop: nothing listens on this port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let result = scan(&TcpConnector::new(addr), b"hello").await;
    assert!(matches!(result, Err(ScanError::Connect(_))), "{result:?}");
}

/// Hands out in-memory streams whose far end reads but never answers.
struct Silent;

#[async_trait]
impl ScannerConnector for Silent {
    async fn connect(&self) -> std::io::Result<ScannerStream> {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = theirs.read_to_end(&mut sink).await;
        });
        Ok(Box::new(ours))
    }
}

/// Never finishes connecting.
struct Stuck;

#[async_trait]
impl ScannerConnector for Stuck {
    async fn connect(&self) -> std::io::Result<ScannerStream> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn timeouts_come_from_config() {
    let config =
        ScanConfig::default().with_timeouts(Duration::from_secs(2), Duration::from_secs(7));
    let started = tokio::time::Instant::now();
    let result = Scanner::new(Silent, config.clone()).scan(b"hello").await;
    assert!(matches!(result, Err(ScanError::Timeout)), "{result:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(7));

    let started = tokio::time::Instant::now();
    let result = Scanner::new(Stuck, config).scan(b"hello").await;
    assert!(
        matches!(result, Err(ScanError::ConnectTimeout)),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

fn cx() -> Context {
    Context::new(Client::new("192.0.2.9:50000".parse().unwrap()))
}

#[tokio::test]
async fn filter_verdicts() {
    let (found, _s1) = fake_clamd(Script::Answer(b"stream: Eicar-Test-Signature FOUND\0")).await;
    let (broken, _s2) = fake_clamd(Script::HangUp).await;
    let found = Arc::new(TcpConnector::new(found));
    let broken = Arc::new(TcpConnector::new(broken));

    let reject = ScanFilter::new(found.clone(), ScanConfig::default(), ScanPolicy::default());
    let mut c = cx();
    let v = reject.message(&mut c, b"body").await;
    assert_eq!(
        v.reply().unwrap().to_wire(true),
        b"554 5.7.1 Virus found: Eicar-Test-Signature\r\n"
    );
    assert!(matches!(v, Verdict::Reject(_)));

    let quarantine = ScanFilter::new(
        found,
        ScanConfig::default(),
        ScanPolicy::default().with_on_virus(OnVirus::Quarantine),
    );
    let mut c = cx();
    assert_eq!(quarantine.message(&mut c, b"body").await, Verdict::Continue);
    assert_eq!(
        c.actions,
        [Action::Quarantine {
            reason: "virus found: Eicar-Test-Signature".into()
        }]
    );

    let closed = ScanFilter::new(broken.clone(), ScanConfig::default(), ScanPolicy::default());
    let v = closed.message(&mut cx(), b"body").await;
    assert!(matches!(v, Verdict::Defer(_)), "{v:?}");
    assert_eq!(v.reply().unwrap().code(), 451);
    assert_eq!(v.reply().unwrap().enhanced().unwrap().to_string(), "4.3.0");

    let open = ScanFilter::new(
        broken,
        ScanConfig::default(),
        ScanPolicy::default().with_on_failure(OnFailure::Continue),
    );
    let mut c = cx();
    assert_eq!(open.message(&mut c, b"body").await, Verdict::Continue);
    assert!(c.actions.is_empty());
}
