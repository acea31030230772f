//! Signing and verification cost per message (4 KiB body).
//!
//! - sign: our `DkimSigner::sign` (From lookup, identity choice, unfolding)
//!   against mail-auth's bare `DkimSigner::sign` with the same key, for
//!   RSA-2048 and Ed25519: the ratio is our overhead.
//! - verify: `AuthVerifier::verify` (SPF HELO + MAIL FROM, DKIM, DMARC)
//!   against the loopback DNS server of the tests, answers cached by the
//!   resolver after the first round, so this is mostly CPU.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use portcullis_mailauth::{
    AuthVerifier, DkimSigner, DkimSigningKey, SigningIdentity, VerifyConfig,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

fn message() -> Vec<u8> {
    let mut m = b"From: Sender <user@signed.test>\r\nTo: rcpt@receiver.example\r\n\
Subject: benchmark\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\nMessage-ID: <b@x>\r\n\r\n"
        .to_vec();
    while m.len() < 4096 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m
}

fn bare(pem: &str) -> mail_auth::dkim::DkimSigner<DkimKey, mail_auth::dkim::Done> {
    let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let key = match RsaKey::<Sha256>::from_key_der(der.clone_key()) {
        Ok(k) => DkimKey::Rsa(k),
        Err(_) => {
            DkimKey::Ed25519(Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_der()).unwrap())
        }
    };
    mail_auth::dkim::DkimSigner::from_key(key)
        .domain("signed.test")
        .selector("s")
        .headers(portcullis_mailauth::DEFAULT_SIGNED_HEADERS.iter().copied())
}

fn sign(c: &mut Criterion) {
    let msg = message();
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    for (name, pem) in [
        ("rsa2048", common::RSA_PEM),
        ("ed25519", common::ED25519_PEM),
    ] {
        let ours = DkimSigner::new().with_domain(
            SigningIdentity::new("signed.test", "s", DkimSigningKey::from_pem(pem).unwrap())
                .unwrap(),
        );
        assert!(ours.sign(&msg, None).unwrap().is_some());
        g.bench_function(format!("{name}/ours"), |b| {
            b.iter(|| ours.sign(black_box(&msg), None).unwrap())
        });
        let theirs = bare(pem);
        g.bench_function(format!("{name}/mail-auth-bare"), |b| {
            b.iter(|| theirs.sign(black_box(&msg)).unwrap().to_header())
        });
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dns = rt.block_on(common::start_dns());
    let verifier = AuthVerifier::new(common::authenticator(&dns), VerifyConfig::new("mx.bench"));
    let mut signed = Vec::new();
    let msg = message();
    let signer = DkimSigner::new().with_domain(
        SigningIdentity::new(
            "signed.test",
            "rsa",
            DkimSigningKey::from_pem(common::RSA_PEM).unwrap(),
        )
        .unwrap(),
    );
    let sig = signer.sign(&msg, None).unwrap().unwrap();
    signed.extend_from_slice(format!("DKIM-Signature: {}\r\n", sig.value).as_bytes());
    signed.extend_from_slice(&msg);
    let ip: IpAddr = common::BAD_IP.parse().unwrap();
    let first = rt.block_on(verifier.verify(ip, "mx.hard.test", "user@signed.test", &signed));
    assert_eq!(first.dmarc.result, portcullis_mailauth::DmarcResult::Pass);

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(signed.len() as u64));
    g.bench_function("spf+dkim(rsa2048)+dmarc, cached DNS", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(ip, "mx.hard.test", "user@signed.test", black_box(&signed)))
        })
    });
    g.finish();
}

criterion_group!(benches, sign, verify);
criterion_main!(benches);
