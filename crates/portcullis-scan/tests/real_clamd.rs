//! Against a real `clamd` (Debian's `clamav-daemon`), started by the test
//! with its own configuration and a one-signature database for the EICAR
//! test string (no network, so no freshclam). Skips with a visible message
//! when `clamd` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use portcullis_core::{Action, Client, Context, Filter, Verdict};
use portcullis_scan::net::{TcpConnector, UnixConnector};
use portcullis_scan::{
    OnVirus, ScanConfig, ScanError, ScanFilter, ScanOutcome, ScanPolicy, scan, scan_with,
};
use portcullis_testkit::clamd::{Clamd, EICAR};

fn mail(body: &[u8]) -> Vec<u8> {
    let mut m = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n\r\n".to_vec();
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

#[tokio::test]
async fn real_clamd_eicar_clean_and_size_limit() {
    let Some(clamd) = Clamd::start() else {
        println!("skipping: clamd not installed (apt-get install clamav-daemon)");
        return;
    };
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
