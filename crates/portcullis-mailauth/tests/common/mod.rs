//! Test support: a real DNS server (`hickory-server` on 127.0.0.1, an
//! ephemeral port, UDP and TCP) serving the `test.` zone, and an RFC 8601
//! `Authentication-Results` parser written from the ABNF, independent of the
//! code under test.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use portcullis_mailauth::{DnsOptions, authenticator_with_name_servers, mail_auth};
use portcullis_testkit::dns::{DnsRecord, DnsServer};

pub const RSA_PEM: &str = include_str!("../keys/rsa2048.pem");
pub const RSA_PKCS1_PEM: &str = include_str!("../keys/rsa2048-pkcs1.pem");
pub const ED25519_PEM: &str = include_str!("../keys/ed25519.pem");
/// Public keys as OpenSSL printed them (`openssl pkey -pubout`), so the
/// published records do not come from the code under test.
pub const RSA_PUB_B64: &str = include_str!("../keys/rsa2048.pub.b64");
pub const ED25519_PUB_B64: &str = include_str!("../keys/ed25519.pub.b64");

/// Authorized by `hard.test`, `soft.test` and `mx.hard.test`.
pub const GOOD_IP: &str = "192.0.2.10";
/// Authorized by nobody.
pub const BAD_IP: &str = "198.51.100.7";

pub fn txt(owner: &str, text: &str) -> DnsRecord {
    portcullis_testkit::dns::txt(owner, text, 300)
}

fn a(owner: &str, ip: &str) -> DnsRecord {
    portcullis_testkit::dns::a(owner, ip, 300)
}

pub type Dns = DnsServer;

/// The `test.` zone; SERVFAIL under `servfail.test.`, no answer at all (a
/// timeout, a temporary error) under `silent.test.`.
pub async fn start_dns() -> Dns {
    let records = vec![
        // Signed mail: SPF authorizes nobody, so a DMARC pass must come
        // from an aligned DKIM signature.
        txt("signed.test.", "v=spf1 -all"),
        txt(
            "rsa._domainkey.signed.test.",
            &format!("v=DKIM1; k=rsa; p={}", RSA_PUB_B64.trim()),
        ),
        txt(
            "ed._domainkey.signed.test.",
            &format!("v=DKIM1; k=ed25519; p={}", ED25519_PUB_B64.trim()),
        ),
        txt("_dmarc.signed.test.", "v=DMARC1; p=reject"),
        // SPF by client IP.
        txt("hard.test.", &format!("v=spf1 ip4:{GOOD_IP} -all")),
        txt("_dmarc.hard.test.", "v=DMARC1; p=reject"),
        txt("mx.hard.test.", &format!("v=spf1 ip4:{GOOD_IP} -all")),
        a("mx.hard.test.", GOOD_IP),
        txt("soft.test.", &format!("v=spf1 ip4:{GOOD_IP} ~all")),
        txt("_dmarc.soft.test.", "v=DMARC1; p=quarantine"),
        a("nospf.test.", "192.0.2.99"),
        txt("monitor.test.", &format!("v=spf1 ip4:{GOOD_IP} -all")),
        txt("_dmarc.monitor.test.", "v=DMARC1; p=none"),
    ];
    DnsServer::builder()
        .zone("test.", records)
        .servfail_under("servfail.test.")
        .silent_under("silent.test.")
        .start()
        .await
}

/// mail-auth's authenticator pointed at the test server only.
pub fn authenticator(dns: &Dns) -> Arc<mail_auth::MessageAuthenticator> {
    let mut opts = DnsOptions::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    Arc::new(authenticator_with_name_servers(&[dns.addr], opts).unwrap())
}

/// One `resinfo` of an Authentication-Results header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResInfo {
    pub method: String,
    pub result: String,
    pub reason: Option<String>,
    /// `(ptype.property, pvalue)` in order.
    pub props: Vec<(String, String)>,
}

/// A parsed header: the authserv-id and its results (empty for `none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResultsHeader {
    pub authserv_id: String,
    pub results: Vec<ResInfo>,
}

impl AuthResultsHeader {
    pub fn get(&self, method: &str) -> Vec<&ResInfo> {
        self.results.iter().filter(|r| r.method == method).collect()
    }
    pub fn prop<'a>(r: &'a ResInfo, key: &str) -> Option<&'a str> {
        r.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A tokenizer for RFC 8601 §2.2: skips CFWS (including nested comments),
/// reads tokens, quoted-strings, `local@domain` pvalues and specials.
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn cfws(&mut self) -> Result<(), String> {
        loop {
            match self.s.get(self.i) {
                Some(b' ' | b'\t') => self.i += 1,
                Some(b'(') => {
                    let mut depth = 0;
                    loop {
                        match self.s.get(self.i) {
                            None => return Err("unterminated comment".into()),
                            Some(b'\\') => self.i += 2,
                            Some(b'(') => {
                                depth += 1;
                                self.i += 1
                            }
                            Some(b')') => {
                                depth -= 1;
                                self.i += 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Some(_) => self.i += 1,
                        }
                    }
                }
                Some(b'\r' | b'\n') => return Err("line break in value".into()),
                _ => return Ok(()),
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, String> {
        self.cfws()?;
        Ok(self.s.get(self.i).copied())
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek()? == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", c as char, self.i))
        }
    }

    fn is_token(c: u8) -> bool {
        c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&c)
    }

    /// RFC 2045 token.
    fn token(&mut self) -> Result<String, String> {
        self.cfws()?;
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| Self::is_token(*c)) {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!("expected token at {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// RFC 5322 quoted-string, unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated quoted-string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    out.push(*self.s.get(self.i + 1).ok_or("dangling backslash")?);
                    self.i += 2;
                }
                Some(c) if *c < 0x20 || *c == 0x7f => return Err("control in quoted".into()),
                Some(c) => {
                    out.push(*c);
                    self.i += 1
                }
            }
        }
    }

    /// `value = token / quoted-string`.
    fn value(&mut self) -> Result<String, String> {
        if self.peek()? == Some(b'"') {
            self.quoted()
        } else {
            self.token()
        }
    }

    /// `pvalue = value / [[local-part] "@"] domain-name`.
    fn pvalue(&mut self) -> Result<String, String> {
        if self.peek()? == Some(b'"') {
            return self.quoted();
        }
        let start = self.i;
        // dot-atom local part, "@", domain; or a plain token.
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.@".contains(c))
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!("expected pvalue at {start}"));
        }
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        if text.matches('@').count() > 1 || text.ends_with('@') {
            return Err(format!("bad pvalue {text:?}"));
        }
        Ok(text)
    }
}

/// Parse an `Authentication-Results` value per RFC 8601 §2.2, requiring
/// the whole input to be consumed.
pub fn parse_auth_results(value: &str) -> Result<AuthResultsHeader, String> {
    let mut lx = Lexer {
        s: value.as_bytes(),
        i: 0,
    };
    let authserv_id = lx.value()?;
    // Optional authres-version (digits) is not produced by us; reject it
    // to keep the parser strict about our own output.
    let mut results = Vec::new();
    loop {
        match lx.peek()? {
            None => break,
            Some(b';') => lx.i += 1,
            Some(c) => return Err(format!("expected ';' got {:?} at {}", c as char, lx.i)),
        }
        let method = lx.token()?.to_ascii_lowercase();
        if method == "none" && results.is_empty() && lx.peek()?.is_none() {
            break;
        }
        lx.expect(b'=')?;
        let result = lx.token()?.to_ascii_lowercase();
        let mut info = ResInfo {
            method,
            result,
            reason: None,
            props: Vec::new(),
        };
        loop {
            match lx.peek()? {
                None | Some(b';') => break,
                _ => {}
            }
            let key = lx.token()?.to_ascii_lowercase();
            if key == "reason" && info.props.is_empty() && info.reason.is_none() {
                lx.expect(b'=')?;
                info.reason = Some(lx.value()?);
                continue;
            }
            // propspec: ptype "." property "=" pvalue; the token includes
            // the dot, so split it.
            let (ptype, property) = key
                .split_once('.')
                .ok_or_else(|| format!("expected ptype.property, got {key:?}"))?;
            if !["smtp", "header", "body", "policy"].contains(&ptype) || property.is_empty() {
                return Err(format!("bad propspec {key:?}"));
            }
            lx.expect(b'=')?;
            let v = lx.pvalue()?;
            info.props.push((key.clone(), v));
        }
        let allowed: &[&str] = match info.method.as_str() {
            "spf" => &[
                "none",
                "neutral",
                "pass",
                "fail",
                "softfail",
                "temperror",
                "permerror",
            ],
            "dkim" => &[
                "none",
                "pass",
                "fail",
                "policy",
                "neutral",
                "temperror",
                "permerror",
            ],
            "dmarc" => &["none", "pass", "fail", "temperror", "permerror"],
            other => return Err(format!("unexpected method {other:?}")),
        };
        if !allowed.contains(&info.result.as_str()) {
            return Err(format!("bad result {:?} for {}", info.result, info.method));
        }
        results.push(info);
    }
    Ok(AuthResultsHeader {
        authserv_id,
        results,
    })
}
