//! Email authentication for Portcullis, built on [`mail_auth`] 0.13:
//!
//! - [`AuthVerifier`], a message-stage [`Filter`](portcullis_core::Filter)
//!   for inbound mail: SPF (HELO and MAIL FROM identities, RFC 7208), DKIM
//!   (RFC 6376) and DMARC (RFC 7489, alignment and policy). It prepends an
//!   RFC 8601 `Authentication-Results` header and applies DMARC policy as
//!   configured ([`VerifyConfig`]): `p=reject` refuses with `550 5.7.1` only
//!   when the operator enables enforcement, `p=quarantine` quarantines, a
//!   DNS temp error never rejects. The plain API is
//!   [`AuthVerifier::verify`] (results as data, [`AuthResults`]) and the
//!   pure, synchronous [`decide`].
//! - [`DkimSigner`], a message-stage filter for submission: signs with the
//!   key of the header From domain (or the authenticated account's own
//!   key), RSA-SHA256 or Ed25519-SHA256, and prepends `DKIM-Signature`.
//!   Its plain API is [`DkimSigner::sign`].
//!
//! **I/O.** Signing does none. Verification does DNS, and only through the
//! [`mail_auth::MessageAuthenticator`] the caller hands in (build one with
//! [`authenticator_with_name_servers`] or any of mail-auth's constructors):
//! the relay owns DNS configuration. Keys are PEM/DER strings the caller
//! read; this crate opens no files.
//!
//! Signing, then checking the result's shape (no DNS needed):
//!
//! ```
//! use portcullis_mailauth::{DkimSigner, DkimSigningKey, SigningIdentity, SigningAlgorithm};
//!
//! // A key as read from a file (here: a fresh Ed25519 key made by mail-auth).
//! let der = mail_auth::common::crypto::Ed25519Key::generate_pkcs8().unwrap();
//! let key = DkimSigningKey::from_pkcs8_der(&der).unwrap();
//! assert_eq!(key.algorithm(), SigningAlgorithm::Ed25519Sha256);
//! // Publish this at s1._domainkey.example.com:
//! assert!(key.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
//!
//! let signer = DkimSigner::new()
//!     .with_domain(SigningIdentity::new("example.com", "s1", key).unwrap());
//! let message = b"From: Ann <ann@mail.example.com>\r\nTo: bob@example.net\r\n\
//!                 Subject: hi\r\n\r\nHello.\r\n";
//! let signature = signer.sign(message, Some("ann")).unwrap().expect("example.com has a key");
//! assert_eq!((signature.domain.as_str(), signature.selector.as_str()), ("example.com", "s1"));
//! assert!(signature.value.starts_with("v=1; a=ed25519-sha256; s=s1; d=example.com; c=relaxed/relaxed;"));
//! // No key for other domains: the message stays unsigned.
//! assert_eq!(signer.sign(b"From: x@other.example\r\n\r\nhi\r\n", None).unwrap(), None);
//! ```
//!
//! Wiring verification (needs a resolver, so not run here; `tests/verify.rs`
//! runs it against a real DNS server on loopback):
//!
//! ```no_run
//! # async fn demo(message: &[u8]) -> Result<(), portcullis_mailauth::MailAuthError> {
//! use std::sync::Arc;
//! use portcullis_mailauth::{authenticator_with_name_servers, AuthVerifier, DnsOptions, VerifyConfig};
//!
//! // The relay owns DNS: it names the servers and the TTL cap.
//! let dns = authenticator_with_name_servers(&["127.0.0.1:53".parse().unwrap()], DnsOptions::default())?;
//! let verifier = AuthVerifier::new(
//!     Arc::new(dns),
//!     VerifyConfig::new("mx.example.net").with_enforce_reject(true),
//! );
//! // As a filter: `Chain::new().with(Arc::new(verifier))` on the MX listener.
//! // Or the plain API:
//! let (results, decision) = verifier
//!     .check("192.0.2.1".parse().unwrap(), "mail.example.org", "ann@example.org", message)
//!     .await;
//! println!("Authentication-Results: {}", decision.header);
//! println!("dmarc={}", results.dmarc.result.as_str());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod dns;
mod error;
pub mod results;
pub mod sign;
pub mod verify;

pub use dns::{DnsOptions, authenticator_with_name_servers};
pub use error::MailAuthError;
pub use mail_auth;
pub use results::{
    AUTHENTICATION_RESULTS, AuthResults, DkimOutcome, DkimResult, DmarcOutcome, DmarcPolicy,
    DmarcResult, SpfOutcome, SpfResult,
};
pub use sign::{
    DEFAULT_SIGNED_HEADERS, DKIM_SIGNATURE, DkimSignature, DkimSigner, DkimSigningKey,
    SigningAlgorithm, SigningIdentity,
};
pub use verify::{AuthDecision, AuthVerifier, TempErrorAction, VerifyConfig, decide};
