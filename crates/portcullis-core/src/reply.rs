//! SMTP replies: RFC 5321 reply code, RFC 3463 enhanced status code, text.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// Subject, 0–999.
    pub subject: u16,
    /// Detail, 0–999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Build one.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

impl From<(u8, u16, u16)> for EnhancedCode {
    fn from((class, subject, detail): (u8, u16, u16)) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply. Text may hold several lines separated by `\n`; it is
/// encoded as a multi-line reply (RFC 5321 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    text: Cow<'static, str>,
}

impl Reply {
    /// A reply with an enhanced status code.
    ///
    /// A code outside 200–599 is clamped to 451/554 rather than sent
    /// malformed; an enhanced class that disagrees with the code's first
    /// digit is corrected to it (RFC 3463 §2: the classes must agree).
    pub fn new(
        code: u16,
        enhanced: impl Into<EnhancedCode>,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        let code = clamp_code(code);
        let mut enhanced = enhanced.into();
        enhanced.class = (code / 100) as u8;
        if enhanced.class == 3 {
            // 3xx replies (354, 334) carry no enhanced code.
            return Reply {
                code,
                enhanced: None,
                text: text.into(),
            };
        }
        Reply {
            code,
            enhanced: Some(enhanced),
            text: text.into(),
        }
    }

    /// A reply without an enhanced status code (greeting, 354, 334).
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code: clamp_code(code),
            enhanced: None,
            text: text.into(),
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text (lines separated by `\n`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not try again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Replace the text, keeping the codes.
    pub fn with_text(mut self, text: impl Into<Cow<'static, str>>) -> Self {
        self.text = text.into();
        self
    }

    /// Append the wire form to `out`. `enhanced` says whether the session
    /// advertised ENHANCEDSTATUSCODES. CR and LF inside the text never reach
    /// the wire as such: each `\n` starts a new reply line and stray `\r`
    /// and other control characters are replaced, so no text can forge a reply.
    pub fn write_wire(&self, out: &mut Vec<u8>, enhanced: bool) {
        let mut lines = self
            .text
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .peekable();
        let code = itoa3(self.code);
        let mut first = true;
        while let Some(line) = lines.next() {
            if !first && line.is_empty() && lines.peek().is_none() {
                break; // trailing newline in the text
            }
            first = false;
            out.extend_from_slice(&code);
            out.push(if lines.peek().is_some() { b'-' } else { b' ' });
            if let (true, Some(e)) = (enhanced, self.enhanced) {
                use std::io::Write as _;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{e} ");
            }
            for c in line.chars() {
                if c.is_control() {
                    out.push(b' ');
                } else {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        if first {
            out.extend_from_slice(&code);
            out.extend_from_slice(b" \r\n");
        }
    }

    /// The wire form as a new buffer.
    pub fn to_wire(&self, enhanced: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 16);
        self.write_wire(&mut out, enhanced);
        out
    }
}

fn clamp_code(code: u16) -> u16 {
    match code {
        200..=599 => code,
        0..=199 => 451,
        _ => 554,
    }
}

fn itoa3(code: u16) -> [u8; 3] {
    [
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &String::from_utf8_lossy(&self.to_wire(true))
                .replace("\r\n", "\n")
                .trim_end()
                .replace('\n', " / "),
        )
    }
}

/// Common replies, with the codes RFC 5321 §4.2 and RFC 3463 give them.
impl Reply {
    /// `250 2.0.0 OK`
    pub fn ok() -> Self {
        Reply::new(250, (2, 0, 0), "OK")
    }
    /// `220 host ESMTP` greeting (no enhanced code: sent before EHLO).
    pub fn service_ready(host: &str) -> Self {
        Reply::plain(220, format!("{host} ESMTP Portcullis"))
    }
    /// `221 2.0.0 Bye`
    pub fn closing() -> Self {
        Reply::new(221, (2, 0, 0), "Bye")
    }
    /// `250 2.1.0 Sender OK`
    pub fn sender_ok() -> Self {
        Reply::new(250, (2, 1, 0), "Sender OK")
    }
    /// `250 2.1.5 Recipient OK`
    pub fn recipient_ok() -> Self {
        Reply::new(250, (2, 1, 5), "Recipient OK")
    }
    /// `354 Start mail input; end with <CRLF>.<CRLF>`
    pub fn start_mail_input() -> Self {
        Reply::plain(354, "Start mail input; end with <CRLF>.<CRLF>")
    }
    /// `250 2.0.0 Message accepted` with the queue id.
    pub fn message_accepted(queue_id: &str) -> Self {
        Reply::new(250, (2, 0, 0), format!("Message accepted as {queue_id}"))
    }
    /// `421 4.3.2 Service not available, closing transmission channel`
    pub fn service_unavailable() -> Self {
        Reply::new(
            421,
            (4, 3, 2),
            "Service not available, closing transmission channel",
        )
    }
    /// `421 4.4.2 Timeout`
    pub fn timeout() -> Self {
        Reply::new(421, (4, 4, 2), "Idle timeout, closing connection")
    }
    /// `451 4.3.0 Temporary failure` (a store or filter could not decide).
    pub fn temporary_failure() -> Self {
        Reply::new(
            451,
            (4, 3, 0),
            "Temporary local problem, please try again later",
        )
    }
    /// `452 4.3.1 Insufficient system storage`
    pub fn insufficient_storage() -> Self {
        Reply::new(452, (4, 3, 1), "Insufficient system storage")
    }
    /// `452 4.5.3 Too many recipients` (RFC 5321 §4.5.3.1.10).
    pub fn too_many_recipients() -> Self {
        Reply::new(452, (4, 5, 3), "Too many recipients")
    }
    /// `552 5.3.4 Message size exceeds fixed maximum message size`
    pub fn message_too_big() -> Self {
        Reply::new(
            552,
            (5, 3, 4),
            "Message size exceeds fixed maximum message size",
        )
    }
    /// `500 5.5.1 Command unrecognized`
    pub fn command_unrecognized() -> Self {
        Reply::new(500, (5, 5, 1), "Command unrecognized")
    }
    /// `500 5.5.2 Syntax error`
    pub fn syntax_error() -> Self {
        Reply::new(500, (5, 5, 2), "Syntax error")
    }
    /// `500 5.5.2 Line too long` (RFC 5321 §4.5.3.1.4, §4.5.3.1.10).
    ///
    /// RFC 3463 has no "line too long" detail; 5.5.2 (syntax error) is what
    /// Postfix and Exim send, so we do too.
    pub fn line_too_long() -> Self {
        Reply::new(500, (5, 5, 2), "Line too long")
    }
    /// `501 5.5.4 Syntax error in parameters or arguments`
    pub fn parameter_syntax() -> Self {
        Reply::new(501, (5, 5, 4), "Syntax error in parameters or arguments")
    }
    /// `502 5.5.1 Command not implemented`
    pub fn not_implemented() -> Self {
        Reply::new(502, (5, 5, 1), "Command not implemented")
    }
    /// `503 5.5.1 Bad sequence of commands`
    pub fn bad_sequence() -> Self {
        Reply::new(503, (5, 5, 1), "Bad sequence of commands")
    }
    /// `504 5.5.4 Command parameter not implemented`
    pub fn parameter_not_implemented() -> Self {
        Reply::new(504, (5, 5, 4), "Command parameter not implemented")
    }
    /// `555 5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented`
    pub fn unknown_parameter() -> Self {
        Reply::new(
            555,
            (5, 5, 4),
            "MAIL FROM/RCPT TO parameters not recognized or not implemented",
        )
    }
    /// `550 5.1.1 Mailbox unavailable`
    pub fn no_such_user() -> Self {
        Reply::new(550, (5, 1, 1), "Recipient address rejected: user unknown")
    }
    /// `554 5.7.1 Relay access denied`
    pub fn relay_denied() -> Self {
        Reply::new(554, (5, 7, 1), "Relay access denied")
    }
    /// `553 5.6.7` non-ASCII address without SMTPUTF8 (RFC 6531 §3.5).
    pub fn utf8_not_permitted() -> Self {
        Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8")
    }
    /// `451 4.7.1 Greylisted` with the remaining delay.
    pub fn greylisted(retry_in_secs: u64) -> Self {
        Reply::new(
            451,
            (4, 7, 1),
            format!("Greylisted, please try again in {retry_in_secs} seconds"),
        )
    }
    /// `451 4.7.1 Rate limit exceeded` with a retry hint.
    pub fn rate_limited(what: &str, retry_in_secs: u64) -> Self {
        Reply::new(
            451,
            (4, 7, 1),
            format!("Rate limit exceeded ({what}), try again in {retry_in_secs} seconds"),
        )
    }
    /// `530 5.7.0 Authentication required` (RFC 4954 §6).
    pub fn auth_required() -> Self {
        Reply::new(530, (5, 7, 0), "Authentication required")
    }
    /// `235 2.7.0 Authentication successful`
    pub fn auth_succeeded() -> Self {
        Reply::new(235, (2, 7, 0), "Authentication successful")
    }
    /// `535 5.7.8 Authentication credentials invalid`
    pub fn auth_failed() -> Self {
        Reply::new(535, (5, 7, 8), "Authentication credentials invalid")
    }
    /// `538 5.7.11 Encryption required for requested authentication mechanism`
    pub fn encryption_required() -> Self {
        Reply::new(
            538,
            (5, 7, 11),
            "Encryption required for requested authentication mechanism",
        )
    }
    /// `530 5.7.0 Must issue a STARTTLS command first`
    pub fn starttls_first() -> Self {
        Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first")
    }
    /// `550 5.7.1` policy rejection with a reason.
    pub fn policy_rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Reply::new(550, (5, 7, 1), reason)
    }
    /// `451 4.7.1` policy deferral with a reason.
    pub fn policy_deferred(reason: impl Into<Cow<'static, str>>) -> Self {
        Reply::new(451, (4, 7, 1), reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::ok().to_wire(true), b"250 2.0.0 OK\r\n");
        assert_eq!(Reply::ok().to_wire(false), b"250 OK\r\n");
        assert_eq!(
            Reply::start_mail_input().to_wire(true),
            b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"
        );
    }

    #[test]
    fn multi_line() {
        let r = Reply::new(250, (2, 0, 0), "mx.example\nPIPELINING\nSIZE 1000");
        assert_eq!(
            r.to_wire(false),
            b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
        );
        assert_eq!(
            r.to_wire(true),
            b"250-2.0.0 mx.example\r\n250-2.0.0 PIPELINING\r\n250 2.0.0 SIZE 1000\r\n"
        );
    }

    #[test]
    fn text_cannot_forge_replies() {
        let r = Reply::new(550, (5, 1, 1), "no\r\n250 OK\r");
        assert_eq!(r.to_wire(false), b"550-no\r\n550 250 OK\r\n");
        let r = Reply::new(550, (5, 1, 1), "a\u{0}b\rc");
        assert_eq!(r.to_wire(false), b"550 a b c\r\n");
        assert_eq!(Reply::plain(250, "").to_wire(false), b"250 \r\n");
    }

    #[test]
    fn classes_agree() {
        let r = Reply::new(451, (5, 7, 1), "x");
        assert_eq!(r.enhanced(), Some(EnhancedCode::new(4, 7, 1)));
        assert_eq!(Reply::new(99, (2, 0, 0), "x").code(), 451);
        assert_eq!(Reply::new(700, (2, 0, 0), "x").code(), 554);
        assert!(Reply::too_many_recipients().is_transient());
        assert!(Reply::message_too_big().is_permanent());
    }
}
