//! The SMTP command parser (RFC 5321 §4.1.1 and the extensions' commands).
//!
//! [`parse_command`] takes one command line without its CRLF and returns a
//! [`Command`] borrowing from it: no allocation. ESMTP parameters stay as
//! text ([`EsmtpParams`] iterates them); the [`Session`](crate::Session)
//! validates them against what it advertised.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while1},
    character::complete::{digit1, space1},
    combinator::{all_consuming, opt},
    sequence::preceded,
};

/// One parsed command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// `HELO domain`
    Helo(&'a str),
    /// `EHLO domain-or-literal`
    Ehlo(&'a str),
    /// `MAIL FROM:<path> [params]`
    Mail {
        /// The path with its angle brackets, e.g. `<a@b.example>` or `<>`.
        path: &'a str,
        /// The ESMTP parameters after the path.
        params: EsmtpParams<'a>,
    },
    /// `RCPT TO:<path> [params]`
    Rcpt {
        /// The path with its angle brackets.
        path: &'a str,
        /// The ESMTP parameters after the path.
        params: EsmtpParams<'a>,
    },
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets of the chunk that follows the command line.
        size: u64,
        /// Whether this is the last chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(&'a str),
    /// `EXPN string`
    Expn(&'a str),
    /// `HELP [string]`
    Help(Option<&'a str>),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism name as sent (compare case-insensitively).
        mechanism: &'a str,
        /// The initial response, base64 (or `=` for an empty one).
        initial_response: Option<&'a str>,
    },
}

/// Why a command line did not parse. Each maps to one reply through
/// [`CommandError::reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Not a command this server knows.
    #[error("command unrecognized")]
    Unrecognized,
    /// A known command with bad arguments.
    #[error("syntax error in parameters or arguments")]
    Syntax,
    /// A BDAT line whose size parsed but whose remainder did not: the chunk
    /// must still be read and discarded (RFC 3030 §2).
    #[error("syntax error in BDAT arguments")]
    BdatSyntax {
        /// The declared chunk size.
        size: u64,
    },
    /// A BDAT line whose chunk size cannot be read: the chunk's end cannot
    /// be found, so the bytes that follow must not be read as commands and
    /// the session has to close (RFC 3030 §2 leaves no way to resynchronise).
    #[error("unreadable BDAT chunk size")]
    BdatUnframed,
    /// The line is not valid UTF-8 or holds control characters.
    #[error("invalid characters in command")]
    InvalidCharacters,
}

impl CommandError {
    /// The reply RFC 5321 §4.2.4 / RFC 3463 give this error.
    pub fn reply(&self) -> portcullis_core::Reply {
        use portcullis_core::Reply;
        match self {
            CommandError::Unrecognized => Reply::command_unrecognized(),
            CommandError::Syntax | CommandError::BdatSyntax { .. } => Reply::parameter_syntax(),
            CommandError::InvalidCharacters => Reply::syntax_error(),
            CommandError::BdatUnframed => Reply::new(
                421,
                (4, 5, 4),
                "Unreadable BDAT chunk size, closing connection",
            ),
        }
    }
}

/// The ESMTP parameters of MAIL or RCPT, still as text.
///
/// Iterating yields `(keyword, value)` pairs; a malformed parameter yields
/// `Err(CommandError::Syntax)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EsmtpParams<'a> {
    rest: &'a str,
}

impl<'a> EsmtpParams<'a> {
    /// The raw parameter text (after the path, leading spaces removed).
    pub fn as_str(&self) -> &'a str {
        self.rest
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

impl<'a> Iterator for EsmtpParams<'a> {
    type Item = Result<(&'a str, Option<&'a str>), CommandError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.rest.as_bytes();
        let start = b.iter().position(|&c| c != b' ')?;
        // RFC 5321 §4.1.2: esmtp-keyword ["=" esmtp-value], up to the next
        // space, in one pass. esmtp-keyword = (ALPHA / DIGIT) *(ALPHA /
        // DIGIT / "-"); esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8
        // (RFC 6531 §3.3).
        let mut end = b.len();
        let mut eq = None;
        let mut ok = b[start] != b'-';
        for (i, &c) in b.iter().enumerate().skip(start) {
            match (PARAM_CLASS[usize::from(c)], eq) {
                (SPACE, _) => {
                    end = i;
                    break;
                }
                (KEYWORD, _) | (VALUE, Some(_)) => {}
                (EQUALS, None) => {
                    ok &= i > start;
                    eq = Some(i);
                }
                _ => ok = false,
            }
        }
        ok &= eq.is_none_or(|e| e + 1 < end);
        // Spaces and '=' are ASCII, so all of these are char boundaries.
        let rest = self.rest;
        self.rest = &rest[end..];
        Some(if !ok {
            Err(CommandError::Syntax)
        } else if let Some(e) = eq {
            Ok((&rest[start..e], Some(&rest[e + 1..end])))
        } else {
            Ok((&rest[start..end], None))
        })
    }
}

// Octet classes for ESMTP parameters.
const SPACE: u8 = 0;
/// Letters, digits, '-': keyword or value.
const KEYWORD: u8 = 1;
/// Value only.
const VALUE: u8 = 2;
const EQUALS: u8 = 3;
/// Neither (controls, DEL).
const INVALID: u8 = 4;
const PARAM_CLASS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c == b' ' {
            SPACE
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            KEYWORD
        } else if c == b'=' {
            EQUALS
        } else if c >= 33 && c != 0x7f {
            VALUE
        } else {
            INVALID
        };
        i += 1;
    }
    t
};

/// Parse one command line, without its line ending.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, CommandError> {
    // Control characters (NUL, bare CR, TAB aside) never belong in a command.
    if has_control(line) {
        return Err(CommandError::InvalidCharacters);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::InvalidCharacters)?;
    let b = line.as_bytes();
    // Every verb has four letters but STARTTLS; the verb ends the line or
    // is followed by a space.
    if b.len() < 4 {
        return Err(CommandError::Unrecognized);
    }
    if b.len() > 4 && b[4] != b' ' {
        if b.len() >= 8
            && b[..8].eq_ignore_ascii_case(b"STARTTLS")
            && (b.len() == 8 || b[8] == b' ')
        {
            return no_argument(&line[8..], Command::StartTls);
        }
        return Err(CommandError::Unrecognized);
    }
    // The verb is ASCII if it matches, so slicing at 4 is on a boundary.
    // Upper-cases ASCII letters; other octets cannot alias a verb's letters.
    let key = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0xDFDF_DFDF;
    let rest = || line.get(4..).unwrap_or("");
    const fn verb(v: &[u8; 4]) -> u32 {
        u32::from_be_bytes(*v)
    }
    const HELO: u32 = verb(b"HELO");
    const EHLO: u32 = verb(b"EHLO");
    const MAIL: u32 = verb(b"MAIL");
    const RCPT: u32 = verb(b"RCPT");
    const DATA: u32 = verb(b"DATA");
    const BDAT: u32 = verb(b"BDAT");
    const RSET: u32 = verb(b"RSET");
    const NOOP: u32 = verb(b"NOOP");
    const QUIT: u32 = verb(b"QUIT");
    const VRFY: u32 = verb(b"VRFY");
    const EXPN: u32 = verb(b"EXPN");
    const HELP: u32 = verb(b"HELP");
    const AUTH: u32 = verb(b"AUTH");
    match key {
        HELO => domain_argument(rest()).map(Command::Helo),
        EHLO => domain_argument(rest()).map(Command::Ehlo),
        MAIL => path_command(rest(), "FROM:").map(|(path, params)| Command::Mail { path, params }),
        RCPT => path_command(rest(), "TO:").map(|(path, params)| Command::Rcpt { path, params }),
        DATA => no_argument(rest(), Command::Data),
        BDAT => bdat(rest()),
        RSET => no_argument(rest(), Command::Rset),
        NOOP => Ok(Command::Noop),
        QUIT => no_argument(rest(), Command::Quit),
        VRFY => string_argument(rest()).map(Command::Vrfy),
        EXPN => string_argument(rest()).map(Command::Expn),
        HELP => {
            let arg = rest().trim_matches(' ');
            Ok(Command::Help((!arg.is_empty()).then_some(arg)))
        }
        AUTH => auth(rest()),
        _ => Err(CommandError::Unrecognized),
    }
}

/// Whether `line` holds a control character other than TAB. A fold without
/// early exit, so it vectorises.
fn has_control(line: &[u8]) -> bool {
    let mut acc = 0u8;
    for &c in line {
        acc |= (u8::from(c < 0x20) & u8::from(c != b'\t')) | u8::from(c == 0x7f);
    }
    acc != 0
}

/// A nom parser for an ASCII keyword, case-insensitively (RFC 5321 §2.4).
/// nom's own `tag_no_case` on `&str` folds Unicode case, which is slower
/// and not what SMTP means.
fn tag_ci<'a>(t: &'static str) -> impl Fn(&'a str) -> IResult<&'a str, &'a str> {
    move |i: &'a str| {
        let n = t.len();
        if i.len() >= n && i.as_bytes()[..n].eq_ignore_ascii_case(t.as_bytes()) {
            // The matched octets are ASCII, so `n` is a char boundary.
            Ok((&i[n..], &i[..n]))
        } else {
            Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::Tag,
            )))
        }
    }
}

fn no_argument<'a>(rest: &str, cmd: Command<'a>) -> Result<Command<'a>, CommandError> {
    // Trailing spaces are tolerated (many clients send them); anything else is not.
    if rest.bytes().all(|b| b == b' ') {
        Ok(cmd)
    } else {
        Err(CommandError::Syntax)
    }
}

fn string_argument(rest: &str) -> Result<&str, CommandError> {
    let arg = rest.trim_matches(' ');
    if arg.is_empty() {
        Err(CommandError::Syntax)
    } else {
        Ok(arg)
    }
}

/// HELO/EHLO: one token (a domain or an address literal). Its syntax is left
/// to policy, which may insist on a resolvable name; here it must be one
/// printable word.
fn domain_argument(rest: &str) -> Result<&str, CommandError> {
    let arg = rest.trim_matches(' ');
    if arg.is_empty() || arg.contains([' ', '\t']) {
        Err(CommandError::Syntax)
    } else {
        Ok(arg)
    }
}

/// `SP "FROM:" Reverse-path [SP Mail-parameters]` (and `TO:` for RCPT).
/// Written out by hand rather than with nom: it is the hot path of a
/// transaction, and the grammar is a fixed prefix and a bracketed extent.
fn path_command<'a>(
    rest: &'a str,
    prefix: &'static str,
) -> Result<(&'a str, EsmtpParams<'a>), CommandError> {
    let b = rest.as_bytes();
    let n = prefix.len();
    if b.len() < n + 1 || b[0] != b' ' || !b[1..=n].eq_ignore_ascii_case(prefix.as_bytes()) {
        return Err(CommandError::Syntax);
    }
    // Many clients put a space after the colon; tolerated.
    let mut i = n + 1;
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    // The octets matched so far are ASCII: `i` is a char boundary.
    let (path, after) = angle_path(&rest[i..]).ok_or(CommandError::Syntax)?;
    if after.is_empty() {
        return Ok((path, EsmtpParams::default()));
    }
    if !after.starts_with(' ') {
        return Err(CommandError::Syntax);
    }
    Ok((
        path,
        EsmtpParams {
            rest: after.trim_start_matches(' ').trim_end_matches(' '),
        },
    ))
}

/// A path from `<` to its closing `>`, skipping quoted strings (a quoted
/// local part may hold `>`); returns it and what follows. Only finds the
/// extent; the address is parsed by `portcullis_core`.
fn angle_path(input: &str) -> Option<(&str, &str)> {
    let bytes = input.as_bytes();
    if bytes.first() != Some(&b'<') {
        return None;
    }
    // Fast path: no quoted string before the closing bracket. (Paths are
    // short: a plain loop beats memchr's dispatch here.)
    if let Some(i) = bytes
        .iter()
        .position(|&b| b == b'>' || b == b'"' || b == b' ')
        && bytes[i] == b'>'
    {
        // '>' is ASCII: both halves split on a char boundary.
        return Some(input.split_at(i + 1));
    }
    let mut i = 1;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(input.split_at(i + 1)),
            b' ' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    None
}

/// `BDAT SP chunk-size [SP "LAST"]` (RFC 3030 §2).
fn bdat(rest: &str) -> Result<Command<'static>, CommandError> {
    let size_parsed: IResult<&str, &str> = preceded(space1, digit1).parse(rest);
    let (after, digits) = size_parsed.map_err(|_| CommandError::BdatUnframed)?;
    // More than 19 digits cannot be a u64 chunk size worth reading.
    let size: u64 = digits.parse().map_err(|_| CommandError::BdatUnframed)?;
    let last: IResult<&str, Option<&str>> = all_consuming((
        opt(preceded(space1, tag_ci("LAST"))),
        nom::character::complete::space0,
    ))
    .map(|(l, _)| l)
    .parse(after);
    match last {
        Ok((_, l)) => Ok(Command::Bdat {
            size,
            last: l.is_some(),
        }),
        Err(_) => Err(CommandError::BdatSyntax { size }),
    }
}

/// `AUTH SP mechanism [SP initial-response]` (RFC 4954 §4).
fn auth(rest: &str) -> Result<Command<'_>, CommandError> {
    let parsed: IResult<&str, (&str, Option<&str>)> = all_consuming((
        preceded(
            space1,
            take_while1(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        ),
        opt(preceded(
            space1,
            alt((
                tag("="),
                take_while1(|c: char| {
                    c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='
                }),
            )),
        )),
    ))
    .parse(rest.trim_end_matches(' '));
    let (_, (mechanism, initial_response)) = parsed.map_err(|_| CommandError::Syntax)?;
    Ok(Command::Auth {
        mechanism,
        initial_response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse_command(b"ehlo x.example"),
            Ok(Command::Ehlo("x.example"))
        );
        assert_eq!(parse_command(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse_command(b"starttls"), Ok(Command::StartTls));
        assert_eq!(parse_command(b"QUITX"), Err(CommandError::Unrecognized));
        assert_eq!(parse_command(b""), Err(CommandError::Unrecognized));
    }

    #[test]
    fn mail_with_params() {
        let Ok(Command::Mail { path, params }) =
            parse_command(b"MAIL FROM:<\"a>b\"@x.example> SIZE=100 BODY=8BITMIME")
        else {
            panic!("did not parse");
        };
        assert_eq!(path, "<\"a>b\"@x.example>");
        let got: Vec<_> = params.collect();
        assert_eq!(
            got,
            vec![Ok(("SIZE", Some("100"))), Ok(("BODY", Some("8BITMIME")))]
        );
        assert!(matches!(
            parse_command(b"mail from: <>"),
            Ok(Command::Mail { path: "<>", .. })
        ));
        assert_eq!(parse_command(b"MAIL FROM:a@b"), Err(CommandError::Syntax));
        assert_eq!(
            parse_command(b"MAIL FROM:<a@b>X"),
            Err(CommandError::Syntax)
        );
        assert_eq!(parse_command(b"MAIL TO:<a@b>"), Err(CommandError::Syntax));
    }

    #[test]
    fn bad_params() {
        let Ok(Command::Rcpt { params, .. }) = parse_command(b"RCPT TO:<a@b> =x") else {
            panic!()
        };
        assert_eq!(params.collect::<Vec<_>>(), vec![Err(CommandError::Syntax)]);
        let Ok(Command::Rcpt { params, .. }) = parse_command(b"RCPT TO:<a@b> X=") else {
            panic!()
        };
        assert_eq!(params.collect::<Vec<_>>(), vec![Err(CommandError::Syntax)]);
        let Ok(Command::Rcpt { params, .. }) =
            parse_command("RCPT TO:<a@b>  -X=1 X=a=b ORCPT=utf-8;ü \u{fc}=1 K-2  A".as_bytes())
        else {
            panic!()
        };
        assert_eq!(
            params.collect::<Vec<_>>(),
            vec![
                Err(CommandError::Syntax),
                Err(CommandError::Syntax),
                Ok(("ORCPT", Some("utf-8;ü"))),
                Err(CommandError::Syntax),
                Ok(("K-2", None)),
                Ok(("A", None)),
            ]
        );
    }

    #[test]
    fn bdat_forms() {
        assert_eq!(
            parse_command(b"BDAT 0 LAST"),
            Ok(Command::Bdat {
                size: 0,
                last: true
            })
        );
        assert_eq!(
            parse_command(b"bdat 1234"),
            Ok(Command::Bdat {
                size: 1234,
                last: false
            })
        );
        assert_eq!(
            parse_command(b"BDAT 12 FIRST"),
            Err(CommandError::BdatSyntax { size: 12 })
        );
        assert_eq!(parse_command(b"BDAT x"), Err(CommandError::BdatUnframed));
        assert_eq!(
            parse_command(b"BDAT 99999999999999999999999"),
            Err(CommandError::BdatUnframed)
        );
    }

    #[test]
    fn auth_forms() {
        assert_eq!(
            parse_command(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial_response: Some("AGFsaWNlAHNlY3JldA==")
            })
        );
        assert_eq!(
            parse_command(b"AUTH LOGIN"),
            Ok(Command::Auth {
                mechanism: "LOGIN",
                initial_response: None
            })
        );
        assert_eq!(parse_command(b"AUTH"), Err(CommandError::Syntax));
        assert_eq!(parse_command(b"AUTH PLAIN a b"), Err(CommandError::Syntax));
    }

    #[test]
    fn control_characters_refused() {
        assert_eq!(
            parse_command(b"NOOP \0"),
            Err(CommandError::InvalidCharacters)
        );
        assert_eq!(
            parse_command(b"NOOP a\rb"),
            Err(CommandError::InvalidCharacters)
        );
        assert_eq!(
            parse_command(b"HELO \xff"),
            Err(CommandError::InvalidCharacters)
        );
    }
}
