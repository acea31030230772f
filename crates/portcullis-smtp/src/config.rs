//! What a [`Session`](crate::Session) advertises and enforces.

use std::time::Duration;

/// SASL mechanisms the server offers (RFC 4954). Credentials are checked by
/// the caller; the session only decodes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AuthMechanisms {
    /// `PLAIN` (RFC 4616).
    pub plain: bool,
    /// `LOGIN` (draft-murchison-sasl-login; what Outlook and many devices use).
    pub login: bool,
}

impl AuthMechanisms {
    /// No AUTH at all.
    pub const NONE: AuthMechanisms = AuthMechanisms {
        plain: false,
        login: false,
    };
    /// PLAIN and LOGIN.
    pub const PLAIN_LOGIN: AuthMechanisms = AuthMechanisms {
        plain: true,
        login: true,
    };

    /// Whether any mechanism is on.
    pub fn any(&self) -> bool {
        self.plain || self.login
    }
}

/// ESMTP extensions advertised in the EHLO reply. A parameter or command of
/// an extension that is off is refused as if unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extensions {
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE n` (RFC 1870), with the session's maximum message size.
    pub size: bool,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `CHUNKING` (RFC 3030): the BDAT command.
    pub chunking: bool,
    /// `BINARYMIME` (RFC 3030); only advertised with CHUNKING.
    pub binary_mime: bool,
    /// `STARTTLS` (RFC 3207); advertised only before TLS. Turn on only if
    /// the caller can upgrade the connection.
    pub starttls: bool,
    /// `AUTH` mechanisms (RFC 4954).
    pub auth: AuthMechanisms,
    /// `ENHANCEDSTATUSCODES` (RFC 2034): enhanced codes on replies.
    pub enhanced_status_codes: bool,
    /// `DSN` (RFC 3461): RET, ENVID, NOTIFY, ORCPT parameters.
    pub dsn: bool,
    /// `REQUIRETLS` (RFC 8689); advertised and accepted only under TLS.
    pub requiretls: bool,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            pipelining: true,
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            chunking: true,
            binary_mime: false,
            starttls: false,
            auth: AuthMechanisms::NONE,
            enhanced_status_codes: true,
            dsn: true,
            requiretls: false,
        }
    }
}

/// What to do with a DATA text line longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LongLines {
    /// Refuse the message with `550 5.5.2` once it ends (default).
    #[default]
    Reject,
    /// Accept the message as received.
    Accept,
    /// Accept the message with long lines folded: `<CRLF><SP>` is inserted
    /// where a line reaches the limit (as Postfix's `smtp_line_length_limit`
    /// does), so what is relayed stays within RFC 5321 §4.5.3.1.6. DATA only:
    /// BDAT content is passed on as sent.
    Fold,
}

/// Session limits and switches. `Default` gives safe values; build with
/// [`SessionConfig::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The server's name, in the greeting and the EHLO reply.
    pub hostname: String,
    /// Largest message in octets (advertised as `SIZE`). `MAIL ... SIZE=`
    /// above it gets `552 5.3.4` at once; a longer message is refused at
    /// its end. Default 25 MiB; 0 means no limit (advertised as `SIZE 0`,
    /// RFC 1870 §4).
    pub max_message_size: u64,
    /// Recipients per transaction; more get `452 4.5.3` (RFC 5321
    /// §4.5.3.1.8 asks for at least 100, the default).
    pub max_recipients: usize,
    /// Longest command line including CRLF (RFC 5321 §4.5.3.1.4: 512).
    pub max_command_line: usize,
    /// Longest MAIL/RCPT line including CRLF: extensions' parameters raise
    /// the 512 limit (RFC 5321 §4.5.3.1.4, RFC 3461 §5). Default 2048.
    pub max_mail_rcpt_line: usize,
    /// Longest AUTH command or SASL response line (RFC 4954 §4: 12288).
    pub max_auth_line: usize,
    /// Longest DATA text line including CRLF (RFC 5321 §4.5.3.1.6: 1000).
    pub max_text_line: usize,
    /// What to do with a longer text line.
    pub long_lines: LongLines,
    /// Extensions to advertise.
    pub extensions: Extensions,
    /// Allow AUTH on a connection without TLS (off: `538 5.7.11`, and AUTH
    /// is not advertised before STARTTLS).
    pub auth_without_tls: bool,
    /// Require HELO/EHLO before MAIL (RFC 5321 §4.1.4 lets a server insist).
    pub require_greeting: bool,
    /// Leniency: accept a bare LF as the end of a command line. Never
    /// applies to DATA. Off by default (RFC 5321 §2.3.8).
    pub bare_lf_in_commands: bool,
    /// Leniency: accept one trailing dot on a domain in MAIL/RCPT paths
    /// (`<user@example.org.>`) and drop it, as Postfix does. Off by default:
    /// RFC 5321 domain syntax has none (`501 5.1.3` then).
    pub trailing_dot_in_paths: bool,
    /// Most octets the session holds unprocessed, which happens while a
    /// decision is pending (pipelined commands, BDAT chunks). Past it the
    /// session answers `421 4.7.0` and closes. Default 1 MiB; 0 means no
    /// limit (then stop reading while a decision is pending). A partial
    /// command line counts too, so keep it above `max_auth_line`.
    pub max_buffered_input: usize,
    /// After this many bad commands (unknown, syntax, sequence, line too
    /// long) the session answers `421 4.7.0` and closes.
    pub max_bad_commands: u32,
    /// Idle time allowed while waiting for a command (RFC 5321 §4.5.3.2.7:
    /// at least 5 minutes).
    pub command_timeout: Duration,
    /// Idle time allowed between reads of message data (RFC 5321
    /// §4.5.3.2.7 again: the server waits 5 minutes).
    pub data_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_owned(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 512,
            max_mail_rcpt_line: 2048,
            max_auth_line: 12288,
            max_text_line: 1000,
            long_lines: LongLines::Reject,
            extensions: Extensions::default(),
            auth_without_tls: false,
            require_greeting: true,
            bare_lf_in_commands: false,
            trailing_dot_in_paths: false,
            max_buffered_input: 1024 * 1024,
            max_bad_commands: 20,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
        }
    }
}

impl SessionConfig {
    /// Defaults with this host name.
    pub fn new(hostname: impl Into<String>) -> Self {
        SessionConfig {
            hostname: hostname.into(),
            ..Self::default()
        }
    }
}
