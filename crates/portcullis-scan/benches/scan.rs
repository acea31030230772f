//! Scan benchmarks, one run so the ratios mean something:
//!
//! * `inmemory/scan`: a 1 MiB message through `scan_with` to an in-memory
//!   clamd (a `tokio::io::duplex` whose far end reads the INSTREAM bytes
//!   and answers `stream: OK`), against the floor `inmemory/copy`: the same
//!   bytes written raw through the same duplex, far end reads to the end
//!   and answers. The ratio is our framing + parsing overhead.
//! * `clamd/scan`: a 100 KiB clean mail to a real `clamd` (when installed)
//!   over TCP and over the Unix socket, with a one-signature database.
//!
//! `cargo bench -p portcullis-scan --bench scan -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_core::async_trait;
use portcullis_scan::net::{TcpConnector, UnixConnector};
use portcullis_scan::{ScanConfig, ScanOutcome, ScannerConnector, ScannerStream, scan_with};
use portcullis_testkit::clamd::Clamd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An in-memory clamd that reads exactly as the floor's far end does (same
/// buffer, byte count known up front), so the two differ only on our side.
struct InMemoryClamd {
    message_len: usize,
}

#[async_trait]
impl ScannerConnector for InMemoryClamd {
    async fn connect(&self) -> std::io::Result<ScannerStream> {
        let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
        let chunks = self.message_len.div_ceil(ScanConfig::default().chunk_size);
        let len = 10 + 4 * chunks + self.message_len + 4;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < len {
                got += theirs.read(&mut buf).await?;
            }
            theirs.write_all(b"stream: OK\0").await
        });
        Ok(Box::new(ours))
    }
}

async fn raw_copy(message: &[u8]) {
    let (mut ours, mut theirs) = tokio::io::duplex(256 * 1024);
    let len = message.len();
    let far = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < len {
            got += theirs.read(&mut buf).await.unwrap();
        }
        theirs.write_all(b"\0").await.unwrap();
    });
    ours.write_all(message).await.unwrap();
    let mut reply = [0u8; 1];
    ours.read_exact(&mut reply).await.unwrap();
    far.await.unwrap();
}

fn inmemory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = vec![b'x'; 1 << 20];
    let config = ScanConfig::default();
    let clamd = InMemoryClamd {
        message_len: message.len(),
    };
    let mut g = c.benchmark_group("inmemory");
    g.throughput(Throughput::Bytes(message.len() as u64));
    g.bench_function("scan", |b| {
        b.iter(|| {
            let r = rt.block_on(scan_with(&clamd, &message, &config));
            assert_eq!(r.unwrap(), ScanOutcome::Clean);
        })
    });
    g.bench_function("copy", |b| b.iter(|| rt.block_on(raw_copy(&message))));
    g.finish();
}

fn real_clamd(c: &mut Criterion) {
    let Some(clamd) = Clamd::start() else {
        println!("skipping clamd benches: clamd not installed");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let unix = UnixConnector::new(&clamd.socket);
    let tcp = TcpConnector::new(clamd.tcp);
    let config = ScanConfig::default();
    let mut mail = b"From: a@example.com\r\nSubject: bench\r\n\r\n".to_vec();
    while mail.len() < 100 * 1024 {
        mail.extend_from_slice(b"The quick brown fox jumps over the lazy dog.\r\n");
    }
    let mut g = c.benchmark_group("clamd");
    g.throughput(Throughput::Bytes(mail.len() as u64));
    g.bench_function("scan-tcp", |b| {
        b.iter(|| {
            let r = rt.block_on(scan_with(&tcp, &mail, &config));
            assert_eq!(r.unwrap(), ScanOutcome::Clean);
        })
    });
    g.bench_function("scan-unix", |b| {
        b.iter(|| {
            let r = rt.block_on(scan_with(&unix, &mail, &config));
            assert_eq!(r.unwrap(), ScanOutcome::Clean);
        })
    });
    g.finish();
}

criterion_group!(benches, inmemory, real_clamd);
criterion_main!(benches);
