//! Against a real `clamd` (Debian's `clamav-daemon`), started by the test
//! with its own configuration and a one-signature database for the EICAR
//! test string (no network, so no freshclam). Skips with a visible message
//! when `clamd` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Action, Client, Context, Filter, Verdict};
use portcullis_scan::net::{TcpConnector, UnixConnector};
use portcullis_scan::{
    OnVirus, ScanConfig, ScanError, ScanFilter, ScanOutcome, ScanPolicy, scan, scan_with,
};

/// The 68-byte EICAR anti-virus test file (eicar.org).
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn find_clamd() -> Option<PathBuf> {
    ["/usr/sbin/clamd", "/usr/bin/clamd", "/usr/local/sbin/clamd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

struct Clamd {
    child: Child,
    socket: PathBuf,
    tcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_db(dir: &Path) {
    // .ndb: Name:TargetType:Offset:HexSignature; target 0 = any file,
    // offset * = anywhere, so it also matches inside a mail body.
    let hex: String = EICAR.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        dir.join("portcullis-test.ndb"),
        format!("Portcullis-Test-EICAR:0:*:{hex}\n"),
    )
    .unwrap();
}

#[allow(clippy::disallowed_methods)] // measuring clamd's start-up for the report
async fn start_clamd(binary: &Path) -> Clamd {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    write_db(&db);
    let socket = dir.path().join("clamd.sock");
    let port = free_port();
    let conf = dir.path().join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "Foreground yes\n\
             DatabaseDirectory {db}\n\
             LocalSocket {socket}\n\
             TCPSocket {port}\n\
             TCPAddr 127.0.0.1\n\
             StreamMaxLength 1M\n\
             LogFile {log}\n\
             PidFile {pid}\n\
             TemporaryDirectory {tmp}\n",
            db = db.display(),
            socket = socket.display(),
            log = dir.path().join("clamd.log").display(),
            pid = dir.path().join("clamd.pid").display(),
            tmp = dir.path().display(),
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let clamd = Clamd {
        child,
        socket,
        tcp: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: dir,
    };
    // Wait until it answers a scan (the socket exists once signatures are
    // loaded); give up after 60 s.
    for _ in 0..600 {
        if scan(&UnixConnector::new(&clamd.socket), b"ping")
            .await
            .is_ok()
        {
            println!("clamd ready after {:?}", started.elapsed());
            return clamd;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(clamd._dir.path().join("clamd.log")).unwrap_or_default();
    panic!("clamd did not start within 60 s; log:\n{log}");
}

fn mail(body: &[u8]) -> Vec<u8> {
    let mut m = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n\r\n".to_vec();
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test]
async fn real_clamd_eicar_clean_and_size_limit() {
    let Some(binary) = find_clamd() else {
        println!("skipping: clamd not installed (apt-get install clamav-daemon)");
        return;
    };
    let clamd = start_clamd(&binary).await;
    let unix = UnixConnector::new(&clamd.socket);
    let tcp = TcpConnector::new(clamd.tcp);

    // EICAR alone and inside a message, over both transports.
    let found = ScanOutcome::Infected {
        signature: "Portcullis-Test-EICAR.UNOFFICIAL".into(),
    };
    assert_eq!(scan(&unix, EICAR).await.unwrap(), found);
    assert_eq!(scan(&tcp, &mail(EICAR)).await.unwrap(), found);
    // Small chunks: the signature spans chunk boundaries.
    let small = ScanConfig::default().with_chunk_size(7);
    assert_eq!(scan_with(&tcp, &mail(EICAR), &small).await.unwrap(), found);

    // Clean mail.
    assert_eq!(
        scan(&tcp, &mail(b"Hello, nothing to see here."))
            .await
            .unwrap(),
        ScanOutcome::Clean
    );

    // Larger than StreamMaxLength (1M).
    let big = vec![b'a'; 3 << 20];
    let result = scan(&tcp, &big).await;
    assert!(
        matches!(result, Err(ScanError::SizeLimitExceeded)),
        "{result:?}"
    );

    // Through the filter: reject and quarantine.
    let reject = ScanFilter::new(
        Arc::new(tcp.clone()),
        ScanConfig::default(),
        ScanPolicy::default(),
    );
    let mut cx = Context::new(Client::new("192.0.2.1:4000".parse().unwrap()));
    let verdict = reject.message(&mut cx, &mail(EICAR)).await;
    assert!(matches!(verdict, Verdict::Reject(_)));
    assert_eq!(
        verdict.reply().unwrap().to_wire(true),
        b"554 5.7.1 Virus found: Portcullis-Test-EICAR.UNOFFICIAL\r\n"
    );
    let quarantine = ScanFilter::new(
        Arc::new(unix),
        ScanConfig::default(),
        ScanPolicy::default().with_on_virus(OnVirus::Quarantine),
    );
    let mut cx = Context::new(Client::new("192.0.2.1:4000".parse().unwrap()));
    assert_eq!(
        quarantine.message(&mut cx, &mail(EICAR)).await,
        Verdict::Continue
    );
    assert!(matches!(&cx.actions[..], [Action::Quarantine { .. }]));
}
