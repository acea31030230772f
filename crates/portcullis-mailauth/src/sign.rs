//! DKIM signing on submission (RFC 6376 §5): keys, per-domain and
//! per-account signing identities, and the [`DkimSigner`] filter.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, Done};
use portcullis_core::{Action, Context, Domain, Filter, Verdict, async_trait};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

use crate::MailAuthError;

/// The name of the header a signature is the value of.
pub const DKIM_SIGNATURE: &str = "DKIM-Signature";

/// Headers signed by default (RFC 6376 §5.4.1's list of fields that identify
/// and describe the message). Only those present are signed; `From` is
/// always among them (RFC 6376 §5.4 requires it).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A signature algorithm (RFC 6376 §3.3, RFC 8463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// `rsa-sha256` (RSA keys of 2048 to 4096 bits, what the crypto backend
    /// accepts for signing).
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519Sha256,
}

/// A DKIM private key, parsed from the PEM or DER the caller read.
///
/// Accepted: PKCS#8 (`BEGIN PRIVATE KEY`) RSA or Ed25519 keys, with or
/// without the embedded Ed25519 public key (OpenSSL writes it without), and
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`) RSA keys.
pub struct DkimSigningKey {
    key: DkimKey,
    algorithm: SigningAlgorithm,
    /// The `p=` value: SubjectPublicKeyInfo DER for RSA (what `openssl
    /// pkey -pubout` gives), the raw 32 bytes for Ed25519 (RFC 8463 §4.2).
    public_key: Vec<u8>,
}

impl fmt::Debug for DkimSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material.
        f.debug_struct("DkimSigningKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl DkimSigningKey {
    /// Parse the first private key in a PEM document.
    pub fn from_pem(pem: &str) -> Result<Self, MailAuthError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| MailAuthError::Key(format!("no private key in PEM: {e}")))?;
        Self::from_key_der(der)
    }

    /// Parse a PKCS#8 DER private key (RSA or Ed25519).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, MailAuthError> {
        Self::from_key_der(PrivateKeyDer::Pkcs8(der.into()))
    }

    fn from_key_der(der: PrivateKeyDer<'_>) -> Result<Self, MailAuthError> {
        match der {
            PrivateKeyDer::Pkcs1(_) => Self::rsa(der),
            PrivateKeyDer::Pkcs8(ref pkcs8) => {
                let bytes = pkcs8.secret_pkcs8_der().to_vec();
                Self::rsa(der).or_else(|rsa_err| {
                    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes).map_err(|e| {
                        MailAuthError::Key(format!(
                            "PKCS#8 key is neither RSA ({rsa_err}) nor Ed25519 ({e})"
                        ))
                    })?;
                    Ok(DkimSigningKey {
                        public_key: key.public_key(),
                        key: DkimKey::Ed25519(key),
                        algorithm: SigningAlgorithm::Ed25519Sha256,
                    })
                })
            }
            _ => Err(MailAuthError::Key(
                "unsupported key type (need RSA or Ed25519)".into(),
            )),
        }
    }

    fn rsa(der: PrivateKeyDer<'_>) -> Result<Self, MailAuthError> {
        let key = RsaKey::<Sha256>::from_key_der(der)
            .map_err(|e| MailAuthError::Key(format!("RSA key: {e}")))?;
        Ok(DkimSigningKey {
            public_key: rsa_spki_der(&key.public_key()),
            key: DkimKey::Rsa(key),
            algorithm: SigningAlgorithm::RsaSha256,
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The public key as published in DNS (`p=`), base64.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(&self.public_key)
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`
    /// (RFC 6376 §3.6.1), e.g. `v=DKIM1; k=ed25519; p=…`.
    pub fn dns_record(&self) -> String {
        let k = match self.algorithm {
            SigningAlgorithm::RsaSha256 => "rsa",
            SigningAlgorithm::Ed25519Sha256 => "ed25519",
        };
        format!("v=DKIM1; k={k}; p={}", self.public_key_base64())
    }
}

/// Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1.2.7,
/// RFC 3279 §2.3.1), the form DKIM records carry in practice.
fn rsa_spki_der(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1 rsaEncryption, NULL }
    const RSA_ALGORITHM_ID: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_length(pkcs1.len() + 1, &mut bit_string);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_length(RSA_ALGORITHM_ID.len() + bit_string.len(), &mut out);
    out.extend_from_slice(RSA_ALGORITHM_ID);
    out.extend_from_slice(&bit_string);
    out
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Who signs: `d=` domain, `s=` selector and the key, plus signing options.
pub struct SigningIdentity {
    domain: Domain,
    selector: String,
    algorithm: SigningAlgorithm,
    signer: mail_auth::dkim::DkimSigner<DkimKey, Done>,
}

impl fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("domain", &self.domain.ascii())
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// Sign as `d=domain; s=selector` with `key`, relaxed/relaxed
    /// canonicalization (RFC 6376 §3.4.2, §3.4.4: survives the header
    /// refolding and trailing-space changes relays make) and
    /// [`DEFAULT_SIGNED_HEADERS`].
    pub fn new(domain: &str, selector: &str, key: DkimSigningKey) -> Result<Self, MailAuthError> {
        Self::with_options(domain, selector, key, DEFAULT_SIGNED_HEADERS, None)
    }

    /// Like [`new`](Self::new) with the header names to sign and a
    /// signature lifetime (`x=`, RFC 6376 §3.5; `None` for no expiry).
    /// `From` is added to `headers` if missing.
    pub fn with_options(
        domain: &str,
        selector: &str,
        key: DkimSigningKey,
        headers: &[&str],
        expiry: Option<Duration>,
    ) -> Result<Self, MailAuthError> {
        let domain = Domain::parse(domain)
            .map_err(|e| MailAuthError::Config(format!("signing domain {domain:?}: {e}")))?;
        if domain.is_literal() {
            return Err(MailAuthError::Config(
                "signing domain must be a name".into(),
            ));
        }
        // RFC 6376 §3.1: selector = sub-domain *( "." sub-domain ).
        let selector_ok = !selector.is_empty()
            && selector.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !selector_ok {
            return Err(MailAuthError::Config(format!(
                "selector {selector:?} is not a DNS label sequence"
            )));
        }
        let mut names: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
        if !names.iter().any(|h| h.eq_ignore_ascii_case("from")) {
            names.insert(0, "From".into());
        }
        let algorithm = key.algorithm;
        let mut signer = mail_auth::dkim::DkimSigner::from_key(key.key)
            .domain(domain.ascii())
            .selector(selector)
            .headers(names)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        if let Some(expiry) = expiry {
            signer = signer.expiration(expiry.as_secs().max(1));
        }
        Ok(SigningIdentity {
            domain,
            selector: selector.to_owned(),
            algorithm,
            signer,
        })
    }

    /// The signing domain (`d=`), lower-case A-labels.
    pub fn domain(&self) -> &str {
        self.domain.ascii()
    }

    /// The selector (`s=`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The algorithm.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Sign `message` (headers and body as they will be sent) and return the
    /// `DKIM-Signature` field value, unfolded. The signature time (`t=`)
    /// comes from mail-auth's reading of the system clock.
    pub fn sign(&self, message: &[u8]) -> Result<String, MailAuthError> {
        let signature = self
            .signer
            .sign(message)
            .map_err(|e| MailAuthError::Sign(e.to_string()))?;
        let header = signature.to_header();
        let value = header
            .strip_prefix("DKIM-Signature: ")
            .unwrap_or(&header)
            .trim_end_matches("\r\n");
        // Unfold (RFC 5322 §2.2.3): `Action::AddHeader` carries one line.
        Ok(value.replace("\r\n\t", " ").replace("\r\n", ""))
    }
}

/// A signature made for a message: who signed and the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DkimSignature {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The `DKIM-Signature` field value (unfolded).
    pub value: String,
}

/// Signs submitted mail with the key of the header From domain.
///
/// **Whose key.** The RFC 5322 From domain decides (not the envelope
/// sender), because that is the domain DMARC aligns DKIM with (RFC 7489
/// §3.1.1): a signature for it makes DMARC pass at the receiver whatever
/// the envelope says (e.g. a BATV-tagged or bounce-handling sender).
/// Lookup order:
/// 1. the authenticated account's own identity, if one is configured and
///    its `d=` is the From domain or a parent of it (relaxed alignment);
/// 2. the identity of the From domain itself, then of each parent domain
///    (`mail.example.com` falls back to `example.com`'s key).
///
/// A message with no From, or a From domain without a key, is left
/// unsigned.
///
/// **Who is signed for.** By default only authenticated clients (SMTP AUTH)
/// or clients in a trusted network ([`portcullis_core::Client`] fields):
/// signing unauthenticated mail would lend your key to forgeries. See
/// [`DkimSigner::sign_unauthenticated`].
///
/// **Header order.** The filter pushes one `Action::AddHeader { name:
/// "DKIM-Signature", .. }`, computed over the message as the filter received
/// it. The rules that keep it valid:
/// 1. It must be *prepended*: above every field it signs (verifiers take
///    signed fields from the bottom up, RFC 6376 §5.4.2) and above older
///    signatures (§5.6). `Action::AddHeader` means prepend; the reference
///    relay writes its `Received` line, then the action headers in order,
///    above the original message, so every added field lands above the
///    signed ones, as required.
/// 2. Nothing may change the signed part afterwards: the body, and the
///    fields listed in `h=` — the [`DEFAULT_SIGNED_HEADERS`] present in the
///    message *and* those absent (mail-auth lists them too, which signs
///    their absence, RFC 6376 §5.4). So fix-ups such as adding a missing
///    `Date` or `Message-ID` (RFC 6409 §8) must run before the signer, and
///    no later filter may add a `Subject`, `To`, `Cc`, … or rewrite the body
///    (footers, 8bit→7bit conversion).
/// 3. Hence: make `DkimSigner` the last message-stage filter that changes
///    the message. Unsigned fields added above it later (`Received`,
///    `X-…`) are harmless.
#[derive(Debug, Default)]
pub struct DkimSigner {
    by_domain: HashMap<String, Arc<SigningIdentity>>,
    by_account: HashMap<String, Arc<SigningIdentity>>,
    sign_unauthenticated: bool,
}

impl DkimSigner {
    /// A signer with no keys (signs nothing).
    pub fn new() -> Self {
        DkimSigner::default()
    }

    /// Sign mail whose From domain is `identity.domain()` (or a subdomain
    /// without a key of its own) with `identity`.
    pub fn with_domain(mut self, identity: SigningIdentity) -> Self {
        self.by_domain
            .insert(identity.domain().to_owned(), Arc::new(identity));
        self
    }

    /// Sign mail from the authenticated `account` with `identity` (when its
    /// domain aligns with the From domain), ahead of the per-domain key.
    /// Account names compare exactly as the AUTH layer reports them.
    pub fn with_account(mut self, account: impl Into<String>, identity: SigningIdentity) -> Self {
        self.by_account.insert(account.into(), Arc::new(identity));
        self
    }

    /// Also sign for clients that neither authenticated nor come from a
    /// trusted network (default: no).
    pub fn sign_unauthenticated(mut self, yes: bool) -> Self {
        self.sign_unauthenticated = yes;
        self
    }

    /// The identity that signs for `from_domain` sent by `account`, per the
    /// lookup order in the type's docs.
    pub fn identity_for(
        &self,
        from_domain: &str,
        account: Option<&str>,
    ) -> Option<&SigningIdentity> {
        let from_domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(identity) = account.and_then(|a| self.by_account.get(a))
            && is_within(&from_domain, identity.domain())
        {
            return Some(identity);
        }
        let mut name = from_domain.as_str();
        loop {
            if let Some(identity) = self.by_domain.get(name) {
                return Some(identity);
            }
            match name.split_once('.') {
                Some((_, parent)) if parent.contains('.') => name = parent,
                // Never look up a bare TLD.
                _ => return None,
            }
        }
    }

    /// The plain API: sign `message` for `account` if its header From
    /// domain has a key. `Ok(None)` means "no key for this message" (or no
    /// usable From); errors come from the signing itself.
    pub fn sign(
        &self,
        message: &[u8],
        account: Option<&str>,
    ) -> Result<Option<DkimSignature>, MailAuthError> {
        let Some(from_domain) = header_from_domain(message) else {
            return Ok(None);
        };
        let Some(identity) = self.identity_for(&from_domain, account) else {
            return Ok(None);
        };
        let value = identity.sign(message)?;
        Ok(Some(DkimSignature {
            domain: identity.domain().to_owned(),
            selector: identity.selector().to_owned(),
            value,
        }))
    }
}

/// `name` equals `parent` or is a subdomain of it (both lower-case ASCII).
fn is_within(name: &str, parent: &str) -> bool {
    name == parent
        || name
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The domain of the first address in the header From field, lower-case,
/// IDNA A-label form when the name is valid.
pub(crate) fn header_from_domain(message: &[u8]) -> Option<String> {
    // Headers only: the body plays no part in choosing the key.
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    if domain.is_empty() {
        return None;
    }
    Some(
        Domain::parse(domain)
            .map(|d| d.ascii().to_owned())
            .unwrap_or_else(|_| domain.to_ascii_lowercase()),
    )
}

#[async_trait]
impl Filter for DkimSigner {
    fn name(&self) -> &'static str {
        "dkim-sign"
    }

    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        let client = &cx.client;
        if !self.sign_unauthenticated && client.authenticated.is_none() && !client.trusted_network {
            return Verdict::Continue;
        }
        // A signing failure leaves the message unsigned rather than refusing
        // it: the receiver then judges it as if we had no key.
        if let Ok(Some(signature)) = self.sign(message, client.authenticated.as_deref()) {
            cx.actions.push(Action::AddHeader {
                name: DKIM_SIGNATURE.into(),
                value: signature.value,
            });
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        let mut v = Vec::new();
        der_length(0x7f, &mut v);
        der_length(0x80, &mut v);
        der_length(0x1234, &mut v);
        assert_eq!(v, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }

    #[test]
    fn within() {
        assert!(is_within("a.example", "a.example"));
        assert!(is_within("m.a.example", "a.example"));
        assert!(!is_within("ba.example", "a.example"));
        assert!(!is_within("example", "a.example"));
    }

    #[test]
    fn bad_keys_are_errors_not_panics() {
        assert!(matches!(
            DkimSigningKey::from_pem("not a key"),
            Err(MailAuthError::Key(_))
        ));
        assert!(matches!(
            DkimSigningKey::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(MailAuthError::Key(_))
        ));
    }
}
