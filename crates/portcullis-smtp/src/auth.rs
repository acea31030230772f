//! SASL PLAIN and LOGIN decoding (RFC 4954, RFC 4616), and xtext (RFC 3461 §4).

use std::fmt;

use base64::Engine as _;
use portcullis_core::Reply;

/// A SASL mechanism the session understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMechanism {
    /// `PLAIN` (RFC 4616).
    Plain,
    /// `LOGIN`.
    Login,
}

impl AuthMechanism {
    /// The mechanism's name.
    pub fn name(&self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
        }
    }
}

/// Credentials as the client sent them. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    authzid: Option<String>,
    authcid: String,
    password: String,
}

impl Credentials {
    /// Build credentials (mainly for tests).
    pub fn new(authzid: Option<String>, authcid: String, password: String) -> Self {
        Credentials {
            authzid,
            authcid,
            password,
        }
    }

    /// The identity to act as, if different from the authentication
    /// identity (PLAIN only).
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// The authentication identity (user name).
    pub fn authcid(&self) -> &str {
        &self.authcid
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `501 5.5.2` a SASL response that cannot be decoded.
pub(crate) fn malformed() -> Reply {
    Reply::new(501, (5, 5, 2), "Cannot decode response")
}

/// Decode a base64 SASL response; `=` is the empty response (RFC 4954 §4).
pub(crate) fn decode_base64(line: &[u8]) -> Result<Vec<u8>, Reply> {
    if line == b"=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| malformed())
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8.
pub(crate) fn parse_plain(decoded: &[u8]) -> Result<Credentials, Reply> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| malformed());
    let authcid = text(authcid)?;
    if authcid.is_empty() {
        return Err(malformed());
    }
    let authzid = text(authzid)?;
    Ok(Credentials {
        authzid: (!authzid.is_empty()).then_some(authzid),
        authcid,
        password: text(password)?,
    })
}

/// Decode RFC 3461 §4 xtext: `+XX` hex escapes, other octets 33–126 but
/// `+` and `=`. `None` if malformed.
pub(crate) fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = hex_val(hex[0])?;
                let lo = hex_val(hex[1])?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            c @ 33..=126 if c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(c: u8) -> Option<u8> {
    // RFC 3461: upper-case hex only.
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = parse_plain(b"\0alice\0secret").unwrap();
        assert_eq!(
            (c.authzid(), c.authcid(), c.password()),
            (None, "alice", "secret")
        );
        let c = parse_plain(b"bob\0alice\0secret").unwrap();
        assert_eq!(c.authzid(), Some("bob"));
        assert!(parse_plain(b"alice\0secret").is_err());
        assert!(parse_plain(b"\0\0secret").is_err());
        assert!(parse_plain(b"\0a\0b\0c").is_err());
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("a+2Bb").as_deref(), Some("a+b"));
        assert_eq!(xtext_decode("a+2b"), None);
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(xtext_decode("a=b"), None);
    }
}
