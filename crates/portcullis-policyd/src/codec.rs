//! The wire format of the Postfix policy delegation protocol
//! (`SMTPD_POLICY_README`, "Protocol description"), sans-IO.
//!
//! A request is a sequence of `name=value` lines, each ended by LF, and the
//! request is ended by an empty line. The response is one `action=...` line
//! and an empty line. Postfix sends LF only, values are never quoted or
//! escaped, and attribute order carries no meaning.
//!
//! The [`Decoder`] is strict and bounded: a line may be at most
//! [`Limits::max_line_len`] bytes and a request at most
//! [`Limits::max_attributes`] lines, so a misbehaving client can make it hold
//! at most one line in memory. A request that breaks a rule is not dropped
//! silently: the decoder skips the rest of it (up to its empty line) and
//! reports one [`RequestError`] in its place, so the caller still sends
//! exactly one answer per request and the stream stays in step.

use std::fmt;

use crate::error::RequestError;

/// Bounds and leniencies of the [`Decoder`]. Defaults are strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest accepted line in bytes, without its LF. Postfix's longest
    /// attributes (addresses of at most 256 octets by RFC 5321 §4.5.3.1.3,
    /// certificate subjects) fit well within the default 2048.
    pub max_line_len: usize,
    /// Most attributes in one request. Postfix 3.7 sends about 30.
    pub max_attributes: usize,
    /// Accept `CR LF` line ends as well as LF (Postfix sends LF only; some
    /// hand-written test clients send CR LF). Off by default.
    pub accept_crlf: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_len: 2048,
            max_attributes: 100,
            accept_crlf: false,
        }
    }
}

impl Limits {
    /// Set [`Limits::max_line_len`].
    pub fn with_max_line_len(mut self, n: usize) -> Self {
        self.max_line_len = n;
        self
    }

    /// Set [`Limits::max_attributes`].
    pub fn with_max_attributes(mut self, n: usize) -> Self {
        self.max_attributes = n;
        self
    }

    /// Set [`Limits::accept_crlf`].
    pub fn with_accept_crlf(mut self, accept: bool) -> Self {
        self.accept_crlf = accept;
        self
    }
}

/// One decoded request: its attributes in the order received, unknown ones
/// included (a policy may be configured on attributes this crate does not know).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    attributes: Vec<(String, String)>,
}

impl Request {
    /// A request from `(name, value)` pairs (for tests and for callers that
    /// build requests themselves, e.g. a load generator).
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Request {
            attributes: pairs
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }

    /// The value of attribute `name`, if it was sent (names are case-sensitive,
    /// as Postfix sends them in lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` when it was sent and is not empty. Postfix sends
    /// attributes it has no value for as `name=` (e.g. `sasl_username=`).
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// All attributes in the order received.
    pub fn attributes(&self) -> &[(String, String)] {
        &self.attributes
    }

    /// `request` (always `smtpd_access_policy` from Postfix).
    pub fn request_type(&self) -> Option<&str> {
        self.get("request")
    }

    /// `protocol_state`: `CONNECT`, `EHLO`, `HELO`, `MAIL`, `RCPT`, `DATA`,
    /// `END-OF-MESSAGE`, `VRFY` or `ETRN`.
    pub fn protocol_state(&self) -> Option<&str> {
        self.get("protocol_state")
    }

    /// `instance`: the same for every request of one mail transaction.
    pub fn instance(&self) -> Option<&str> {
        self.get_nonempty("instance")
    }

    /// The wire form, ending with the empty line.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.attributes
                .iter()
                .map(|(n, v)| n.len() + v.len() + 2)
                .sum::<usize>()
                + 1,
        );
        for (n, v) in &self.attributes {
            out.extend_from_slice(n.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

impl fmt::Display for Request {
    /// `name=value` pairs separated by spaces, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (n, v) in &self.attributes {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

/// What one call to [`Decoder::decode`] produced.
#[must_use = "`consumed` says how much input was used; `item` must be answered"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used; feed the rest again.
    pub consumed: usize,
    /// A complete request or the error that replaces one; `None` when the
    /// input ran out first (call again with more bytes).
    pub item: Option<Result<Request, RequestError>>,
}

/// Incremental request decoder: feed it bytes split anywhere, get the same
/// requests (and errors) back.
///
/// ```
/// use portcullis_policyd::Decoder;
///
/// let mut decoder = Decoder::default();
/// let wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\n\nrequest=smtpd";
/// let first = decoder.decode(wire);
/// let request = first.item.unwrap().unwrap();
/// assert_eq!(request.protocol_state(), Some("RCPT"));
/// let second = decoder.decode(&wire[first.consumed..]);
/// assert_eq!((second.consumed, second.item), (13, None)); // buffered, waiting for more
/// assert!(!decoder.is_idle());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    limits: Limits,
    /// The current, incomplete line (at most `max_line_len` + 1 bytes).
    line: Vec<u8>,
    /// Attributes of the current request so far.
    attributes: Vec<(String, String)>,
    /// The first error of the current request; the rest of it is skipped.
    error: Option<RequestError>,
    /// Skipping the remainder of an over-long line.
    skipping_line: bool,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            ..Decoder::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether no request is partly received: at a clean end of stream this
    /// is true; when it is false the peer closed in the middle of a request.
    pub fn is_idle(&self) -> bool {
        self.line.is_empty()
            && self.attributes.is_empty()
            && self.error.is_none()
            && !self.skipping_line
    }

    /// Consume `input` up to the end of the next request (its empty line) and
    /// return it, or consume all of it and return `None` as the item.
    pub fn decode(&mut self, input: &[u8]) -> Decoded {
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            let Some(nl) = memchr_lf(rest) else {
                self.push_partial(rest);
                return Decoded {
                    consumed: input.len(),
                    item: None,
                };
            };
            let chunk = &rest[..nl];
            pos += nl + 1;
            if self.skipping_line {
                // The tail of a line already reported as too long.
                self.skipping_line = false;
                continue;
            }
            self.push_partial(chunk);
            if self.skipping_line {
                // It became too long only now, and ends here.
                self.skipping_line = false;
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if self.limits.accept_crlf && line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                return Decoded {
                    consumed: pos,
                    item: Some(self.finish_request()),
                };
            }
            if self.error.is_none()
                && let Err(e) = self.add_line(&line)
            {
                self.error = Some(e);
                self.attributes.clear();
            }
            // Keep the allocation for the next line.
            line.clear();
            self.line = line;
        }
        Decoded {
            consumed: input.len(),
            item: None,
        }
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        if self.skipping_line {
            return;
        }
        // One byte of slack for a CR before the LF when CR LF is accepted.
        let cap = self.limits.max_line_len + usize::from(self.limits.accept_crlf);
        if self.line.len() + bytes.len() > cap {
            if self.error.is_none() {
                self.error = Some(RequestError::LineTooLong {
                    max: self.limits.max_line_len,
                });
                self.attributes.clear();
            }
            self.line.clear();
            self.skipping_line = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn add_line(&mut self, line: &[u8]) -> Result<(), RequestError> {
        if line.len() > self.limits.max_line_len {
            // Only reachable with accept_crlf: a CR that was not before LF.
            return Err(RequestError::LineTooLong {
                max: self.limits.max_line_len,
            });
        }
        let eq = line
            .iter()
            .position(|&b| b == b'=')
            .ok_or(RequestError::MissingEquals)?;
        let (name, value) = (&line[..eq], &line[eq + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_name_byte(b)) {
            return Err(RequestError::BadName);
        }
        if let Some(&b) = value.iter().find(|&&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(RequestError::ControlCharacter { byte: b });
        }
        let name = std::str::from_utf8(name).map_err(|_| RequestError::BadName)?;
        let value = std::str::from_utf8(value).map_err(|_| RequestError::InvalidUtf8 {
            name: name.to_owned(),
        })?;
        if self.attributes.len() >= self.limits.max_attributes {
            return Err(RequestError::TooManyAttributes {
                max: self.limits.max_attributes,
            });
        }
        if self.attributes.iter().any(|(n, _)| n == name) {
            return Err(RequestError::DuplicateAttribute {
                name: name.to_owned(),
            });
        }
        self.attributes.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    fn finish_request(&mut self) -> Result<Request, RequestError> {
        let attributes = std::mem::take(&mut self.attributes);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if attributes.is_empty() {
            // A bare empty line is not a request Postfix would send.
            return Err(RequestError::Empty);
        }
        Ok(Request { attributes })
    }
}

/// Attribute names: what Postfix uses (`[a-z0-9_]`) plus upper case and `-`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> Vec<Result<Request, RequestError>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let d = decoder.decode(input);
            input = &input[d.consumed..];
            out.extend(d.item);
        }
        out
    }

    #[test]
    fn decodes_a_postfix_request_with_unknown_attributes() {
        let wire = b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=\nrecipient=bob@example.net\nx_future=1=2\n\n";
        let mut d = Decoder::default();
        let got = decode_all(&mut d, wire);
        assert_eq!(got.len(), 1);
        let r = got[0].as_ref().unwrap();
        assert_eq!(r.get("sender"), Some(""));
        assert_eq!(r.get_nonempty("sender"), None);
        assert_eq!(r.get("x_future"), Some("1=2"), "only the first = splits");
        assert_eq!(r.to_wire(), wire.to_vec());
        assert!(d.is_idle());
    }

    #[test]
    fn errors_replace_exactly_one_request_and_the_stream_stays_in_step() {
        let long = "a".repeat(5000);
        let wire = format!(
            "request=x\nnoequals\nsender=a@b\n\nrecipient={long}\n\n\nok=1\n\nbad name=1\n\nsender=a\nsender=b\n\nv=\x01\n\nok=2\n\n"
        );
        let mut d = Decoder::default();
        let got = decode_all(&mut d, wire.as_bytes());
        assert_eq!(
            got,
            vec![
                Err(RequestError::MissingEquals),
                Err(RequestError::LineTooLong { max: 2048 }),
                Err(RequestError::Empty),
                Ok(Request::from_pairs([("ok", "1")])),
                Err(RequestError::BadName),
                Err(RequestError::DuplicateAttribute {
                    name: "sender".into()
                }),
                Err(RequestError::ControlCharacter { byte: 1 }),
                Ok(Request::from_pairs([("ok", "2")])),
            ]
        );
        assert!(d.is_idle());
    }

    #[test]
    fn line_length_bound_is_exact() {
        let limits = Limits::default().with_max_line_len(10);
        let mut d = Decoder::new(limits);
        // "abcd=12345" is 10 bytes: allowed; one more byte is not.
        assert!(decode_all(&mut d, b"abcd=12345\n\n")[0].is_ok());
        assert_eq!(
            decode_all(&mut d, b"abcd=123456\n\n"),
            vec![Err(RequestError::LineTooLong { max: 10 })]
        );
        // Too long across several feeds, byte by byte.
        let mut out = Vec::new();
        for b in b"abcd=1234567890\nk=v\n\n" {
            out.extend(d.decode(std::slice::from_ref(b)).item);
        }
        assert_eq!(out, vec![Err(RequestError::LineTooLong { max: 10 })]);
    }

    #[test]
    fn attribute_count_bound() {
        let mut d = Decoder::new(Limits::default().with_max_attributes(2));
        assert!(decode_all(&mut d, b"a=1\nb=2\n\n")[0].is_ok());
        assert_eq!(
            decode_all(&mut d, b"a=1\nb=2\nc=3\n\n"),
            vec![Err(RequestError::TooManyAttributes { max: 2 })]
        );
    }

    #[test]
    fn crlf_is_an_opt_in_leniency() {
        let wire = b"a=1\r\n\r\n";
        let mut strict = Decoder::default();
        // To the strict decoder "\r" is not an empty line: the request goes on...
        assert_eq!(decode_all(&mut strict, wire), vec![]);
        assert!(!strict.is_idle());
        // ...until a real empty line, and is then refused.
        assert_eq!(
            decode_all(&mut strict, b"\n"),
            vec![Err(RequestError::ControlCharacter { byte: b'\r' })]
        );
        let lenient = decode_all(
            &mut Decoder::new(Limits::default().with_accept_crlf(true)),
            wire,
        );
        assert_eq!(lenient, vec![Ok(Request::from_pairs([("a", "1")]))]);
    }

    #[test]
    fn invalid_utf8_is_a_typed_error() {
        let got = decode_all(&mut Decoder::default(), b"sender=\xff@x\n\n");
        assert_eq!(
            got,
            vec![Err(RequestError::InvalidUtf8 {
                name: "sender".into()
            })]
        );
    }
}
