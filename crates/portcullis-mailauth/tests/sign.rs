//! DKIM signing without DNS: key parsing against OpenSSL's view of the same
//! keys, identity selection, the filter's gate, and the signature's shape.
//! (That signatures verify is tested in `verify.rs`, against real DNS.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ED25519_PEM, ED25519_PUB_B64, RSA_PEM, RSA_PKCS1_PEM, RSA_PUB_B64};
use portcullis_core::{Action, Client, Context, Filter, Verdict};
use portcullis_mailauth::{
    DkimSigner, DkimSigningKey, MailAuthError, SigningAlgorithm, SigningIdentity,
};

fn rsa() -> DkimSigningKey {
    DkimSigningKey::from_pem(RSA_PEM).unwrap()
}

fn ed() -> DkimSigningKey {
    DkimSigningKey::from_pem(ED25519_PEM).unwrap()
}

fn msg(from: &str) -> Vec<u8> {
    format!("From: <{from}>\r\nTo: x@y.example\r\nSubject: s\r\n\r\nbody\r\n").into_bytes()
}

/// The value of one tag of a DKIM-Signature value.
fn tag<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

#[test]
fn public_keys_match_openssl() {
    let k = rsa();
    assert_eq!(k.algorithm(), SigningAlgorithm::RsaSha256);
    assert_eq!(k.public_key_base64(), RSA_PUB_B64.trim());
    assert_eq!(
        k.dns_record(),
        format!("v=DKIM1; k=rsa; p={}", RSA_PUB_B64.trim())
    );
    // PKCS#1 ("BEGIN RSA PRIVATE KEY") is the same key.
    let pkcs1 = DkimSigningKey::from_pem(RSA_PKCS1_PEM).unwrap();
    assert_eq!(pkcs1.public_key_base64(), RSA_PUB_B64.trim());

    // OpenSSL writes Ed25519 PKCS#8 without the public key (v1).
    let k = ed();
    assert_eq!(k.algorithm(), SigningAlgorithm::Ed25519Sha256);
    assert_eq!(
        k.dns_record(),
        format!("v=DKIM1; k=ed25519; p={}", ED25519_PUB_B64.trim())
    );
    // Debug never shows key material.
    assert!(!format!("{k:?}").contains(ED25519_PUB_B64.trim()));
}

#[test]
fn bad_configuration_is_refused() {
    for selector in ["", "a b", "-x", "x-", "a..b", "s;d=evil"] {
        assert!(
            matches!(
                SigningIdentity::new("signed.test", selector, ed()),
                Err(MailAuthError::Config(_))
            ),
            "{selector:?}"
        );
    }
    for domain in ["[192.0.2.1]", "bad domain", ""] {
        assert!(
            matches!(
                SigningIdentity::new(domain, "s", ed()),
                Err(MailAuthError::Config(_))
            ),
            "{domain:?}"
        );
    }
    let ec_p256 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAh+gxhRNJGFlCw1R0tiz5iTtx5Hh5nTRmZ6bqwbtB1ZoAoGCCqGSM49\nAwEHoUQDQgAE4c0yRrUHq3kJYTqaPvsDuSWUAySI5g2M6fXs2d7ehhWdT7Q9C4Vg\nN6UXc7wEJtQFtmFt6N8ia/pWBs/dDjCIyw==\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(
        DkimSigningKey::from_pem(ec_p256),
        Err(MailAuthError::Key(_))
    ));
}

#[test]
fn identity_lookup_prefers_aligned_account_then_domain_then_parents() {
    let signer = DkimSigner::new()
        .with_domain(SigningIdentity::new("signed.test", "rsa", rsa()).unwrap())
        .with_domain(SigningIdentity::new("Other.TEST", "o", ed()).unwrap())
        .with_account(
            "ann",
            SigningIdentity::new("signed.test", "ann", ed()).unwrap(),
        )
        .with_account(
            "bob",
            SigningIdentity::new("other.test", "bob", ed()).unwrap(),
        );
    let pick = |from: &str, account: Option<&str>| {
        signer
            .identity_for(from, account)
            .map(|i| (i.domain().to_owned(), i.selector().to_owned()))
    };
    let id = |d: &str, s: &str| Some((d.to_owned(), s.to_owned()));
    assert_eq!(pick("signed.test", None), id("signed.test", "rsa"));
    assert_eq!(pick("SIGNED.test.", None), id("signed.test", "rsa"));
    assert_eq!(pick("mail.eu.signed.test", None), id("signed.test", "rsa"));
    assert_eq!(pick("other.test", None), id("other.test", "o"));
    assert_eq!(pick("unsigned.test", None), None);
    assert_eq!(pick("test", None), None);
    assert_eq!(pick("xsigned.test", None), None);
    // The account's own key, when aligned with the From domain.
    assert_eq!(pick("signed.test", Some("ann")), id("signed.test", "ann"));
    assert_eq!(pick("a.signed.test", Some("ann")), id("signed.test", "ann"));
    assert_eq!(pick("other.test", Some("ann")), id("other.test", "o"));
    // bob's key is for other.test: for signed.test mail the domain key signs.
    assert_eq!(pick("signed.test", Some("bob")), id("signed.test", "rsa"));
    assert_eq!(pick("other.test", Some("bob")), id("other.test", "bob"));
}

#[test]
fn signature_shape() {
    let signer = DkimSigner::new().with_domain(
        SigningIdentity::with_options(
            "signed.test",
            "rsa",
            rsa(),
            &["Subject", "To", "Date"],
            Some(std::time::Duration::from_secs(3600)),
        )
        .unwrap(),
    );
    let sig = signer
        .sign(&msg("a@signed.test"), None)
        .unwrap()
        .expect("key for signed.test");
    let v = &sig.value;
    assert!(!v.contains('\r') && !v.contains('\n'), "{v}");
    assert_eq!(tag(v, "v"), Some("1"));
    assert_eq!(tag(v, "a"), Some("rsa-sha256"));
    assert_eq!(tag(v, "d"), Some("signed.test"));
    assert_eq!(tag(v, "s"), Some("rsa"));
    assert_eq!(tag(v, "c"), Some("relaxed/relaxed"));
    // From is always signed though not configured; the absent Date is
    // listed too, which signs its absence (RFC 6376 §5.4: nobody can add
    // one later without breaking the signature). Headers not configured
    // (Cc, Message-ID) are not listed.
    let h: Vec<String> = tag(v, "h")
        .unwrap()
        .split(':')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    assert!(h.contains(&"from".to_owned()), "{h:?}");
    assert!(h.contains(&"subject".to_owned()) && h.contains(&"to".to_owned()));
    assert_eq!(h.iter().filter(|n| *n == "date").count(), 1, "{h:?}");
    assert!(!h.iter().any(|n| n == "cc" || n == "message-id"), "{h:?}");
    let t: u64 = tag(v, "t").unwrap().parse().unwrap();
    let x: u64 = tag(v, "x").unwrap().parse().unwrap();
    assert_eq!(x - t, 3600);
    // 2048-bit RSA: a 256-byte signature, 344 base64 characters.
    let b: String = tag(v, "b")
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert_eq!(b.len(), 344);

    assert_eq!(
        signer.sign(b"Subject: no from\r\n\r\nx\r\n", None).unwrap(),
        None
    );
    assert_eq!(signer.sign(b"", None).unwrap(), None);
    assert_eq!(signer.sign(b"\xff\xfe garbage", None).unwrap(), None);
}

#[tokio::test]
async fn filter_signs_only_authenticated_or_trusted_clients() {
    let strict =
        DkimSigner::new().with_domain(SigningIdentity::new("signed.test", "ed", ed()).unwrap());
    let open = DkimSigner::new()
        .with_domain(SigningIdentity::new("signed.test", "ed", ed()).unwrap())
        .sign_unauthenticated(true);
    let m = msg("a@signed.test");
    let cx = || Context::new(Client::new("203.0.113.9:5000".parse().unwrap()));

    let mut anonymous = cx();
    assert_eq!(strict.message(&mut anonymous, &m).await, Verdict::Continue);
    assert!(anonymous.actions.is_empty());

    let mut authed = cx();
    authed.client.authenticated = Some("ann".into());
    assert_eq!(strict.message(&mut authed, &m).await, Verdict::Continue);
    let mut trusted = cx();
    trusted.client.trusted_network = true;
    assert_eq!(strict.message(&mut trusted, &m).await, Verdict::Continue);
    let mut allowed = cx();
    assert_eq!(open.message(&mut allowed, &m).await, Verdict::Continue);
    for c in [authed, trusted, allowed] {
        let [Action::AddHeader { name, value }] = c.actions.as_slice() else {
            panic!("{:?}", c.actions);
        };
        assert_eq!(name, "DKIM-Signature");
        assert_eq!(tag(value, "a"), Some("ed25519-sha256"));
    }

    // No key for the From domain: nothing added, mail goes on.
    let mut other = cx();
    other.client.authenticated = Some("ann".into());
    assert_eq!(
        strict.message(&mut other, &msg("a@elsewhere.test")).await,
        Verdict::Continue
    );
    assert!(other.actions.is_empty());
}
