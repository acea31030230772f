//! The SMTP command parser (RFC 5321 §4.1.1 and the extensions' commands).
//!
//! [`parse_command`] takes one command line without its CRLF and returns a
//! [`Command`] borrowing from it: no allocation. A MAIL or RCPT [`Path`] is
//! validated with the session's options when it is parsed; ESMTP
//! parameters stay as text ([`EsmtpParams`] iterates them, and checks them
//! against what was advertised).

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while1},
    character::complete::{digit1, space1},
    combinator::{all_consuming, opt},
    sequence::preceded,
};
use portcullis_core::{AddressError, AddressRef, ForwardPathRef, ParseOptions, ReversePathRef};

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
        path: Path<'a>,
        /// The ESMTP parameters after the path.
        params: EsmtpParams<'a>,
    },
    /// `RCPT TO:<path> [params]`
    Rcpt {
        /// The path with its angle brackets.
        path: Path<'a>,
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

/// The path of MAIL or RCPT as sent, with its angle brackets.
///
/// [`parse_command`] finds where it ends; its syntax is checked when it is
/// parsed with the session's options ([`Path::reverse_path`],
/// [`Path::forward_path`]), since those depend on what follows it (MAIL's
/// SMTPUTF8 parameter). The usual form, `<dot-string@ldh-name>` in ASCII,
/// is valid under any options: it is recognised while the line is parsed
/// (the core's own grammar, [`AddressRef::parse_plain_path`]), so it is
/// not scanned twice.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    text: &'a str,
    /// The mailbox, if the path has the usual form.
    plain: Option<AddressRef<'a>>,
}

impl<'a> Path<'a> {
    /// The path as sent, e.g. `<a@b.example>` or `<>`.
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The `MAIL FROM` path, validated in place with `opts`: the same as
    /// `ReversePathRef::parse_with(self.as_str(), opts)`.
    #[inline]
    pub fn reverse_path(&self, opts: ParseOptions) -> Result<ReversePathRef<'a>, AddressError> {
        match self.plain {
            Some(a) => Ok(ReversePathRef::Mailbox(a)),
            None if self.text == "<>" => Ok(ReversePathRef::Null),
            None => ReversePathRef::parse_with(self.text, opts),
        }
    }

    /// The `RCPT TO` path, validated in place with `opts`: the same as
    /// `ForwardPathRef::parse_with(self.as_str(), opts)`.
    #[inline]
    pub fn forward_path(&self, opts: ParseOptions) -> Result<ForwardPathRef<'a>, AddressError> {
        match self.plain {
            Some(a) => Ok(ForwardPathRef::Mailbox(a)),
            None => ForwardPathRef::parse_with(self.text, opts),
        }
    }
}

/// By the text (what else is kept follows from it).
impl PartialEq for Path<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Path<'_> {}

impl PartialEq<str> for Path<'_> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Path<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text)
    }
}

/// The path's text, as the `&str` a MAIL or RCPT path used to be.
impl std::ops::Deref for Path<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        self.text
    }
}

impl AsRef<str> for Path<'_> {
    fn as_ref(&self) -> &str {
        self.text
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

impl<'a> EsmtpParams<'a> {
    /// The next parameter as positions in [`EsmtpParams::as_str`], and
    /// the rest after it: the one grammar both the iterator and the
    /// [`mail_params`](EsmtpParams::mail_params) checks read.
    #[inline(always)]
    pub(crate) fn next_param(&mut self) -> Option<Param<'a>> {
        // RFC 5321 §4.1.2: esmtp-keyword ["=" esmtp-value], up to the next
        // space. esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
        // esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531 §3.3).
        let rest = self.rest;
        let b = rest.as_bytes();
        let class = |c: &u8| PARAM_CLASS[usize::from(*c)];
        // The length of the run from `i` of octets whose class `keep` takes.
        let run = |i: usize, keep: fn(u8) -> bool| {
            let tail = b.get(i..).unwrap_or_default();
            tail.iter()
                .position(|c| !keep(class(c)))
                .unwrap_or(tail.len())
        };
        let start = b.iter().take_while(|&&c| c == b' ').count();
        if start == b.len() {
            self.rest = "";
            return None;
        }
        let key_end = start + run(start, |k| k == KEYWORD);
        let mut ok = key_end > start && b[start] != b'-';
        let mut i = key_end;
        let mut has_value = false;
        if b.get(i) == Some(&b'=') {
            has_value = true;
            let value = run(i + 1, |k| k & (KEYWORD | VALUE) != 0);
            ok &= value > 0;
            i += 1 + value;
        }
        // Anything else before the next space spoils the parameter.
        if b.get(i).is_some_and(|&c| c != b' ') {
            ok = false;
            i += run(i, |k| k != SPACE);
        }
        // A space (ASCII) or the end: a char boundary.
        self.rest = &rest[i..];
        Some(Param {
            text: rest,
            start,
            key_end,
            end: if ok { i } else { 0 },
            has_value,
        })
    }
}

/// One parameter found by [`EsmtpParams::next_param`], as positions.
pub(crate) struct Param<'a> {
    text: &'a str,
    start: usize,
    key_end: usize,
    /// Where it ends; 0 if it is malformed.
    end: usize,
    has_value: bool,
}

impl<'a> Param<'a> {
    /// The keyword and value as octets (no char boundaries to check), or
    /// `None` if malformed.
    #[inline(always)]
    pub(crate) fn octets(&self) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        let b = self.text.as_bytes();
        if self.end == 0 {
            return None;
        }
        let key = &b[self.start..self.key_end];
        Some((key, self.has_value.then(|| &b[self.key_end + 1..self.end])))
    }

    /// The value as text.
    pub(crate) fn value_text(&self) -> Option<&'a str> {
        // '=' and the end are ASCII: char boundaries.
        self.has_value
            .then(|| &self.text[self.key_end + 1..self.end])
    }
}

impl<'a> Iterator for EsmtpParams<'a> {
    type Item = Result<(&'a str, Option<&'a str>), CommandError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let p = self.next_param()?;
        if p.end == 0 {
            return Some(Err(CommandError::Syntax));
        }
        // The keyword's ends are ASCII octets: char boundaries.
        Some(Ok((&p.text[p.start..p.key_end], p.value_text())))
    }
}

// Octet classes for ESMTP parameters, as bits.
const SPACE: u8 = 0;
/// Letters, digits, '-': keyword or value.
const KEYWORD: u8 = 1;
/// Value only.
const VALUE: u8 = 2;
const EQUALS: u8 = 4;
/// Neither (controls, DEL).
const INVALID: u8 = 8;
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
    // Control characters (NUL, bare CR, TAB aside) never belong in a
    // command, and non-ASCII octets must be UTF-8: one pass finds both.
    let ascii = match scan_line(line) {
        Octets::Control => return Err(CommandError::InvalidCharacters),
        Octets::Ascii => true,
        Octets::NonAscii => false,
    };
    if !ascii && std::str::from_utf8(line).is_err() {
        return Err(CommandError::InvalidCharacters);
    }
    let b = line;
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
            return no_argument(&b[8..], Command::StartTls);
        }
        return Err(CommandError::Unrecognized);
    }
    // Upper-cases ASCII letters; other octets cannot alias a verb's letters.
    let key = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0xDFDF_DFDF;
    // What follows the verb; octets here are turned into text only where
    // a command returns text.
    let rest = &b[4..];
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
        HELO => domain_argument(rest).map(Command::Helo),
        EHLO => domain_argument(rest).map(Command::Ehlo),
        MAIL | RCPT => {
            let mail = key == MAIL;
            let (path, params) = path_command(rest, if mail { FROM } else { TO })?;
            Ok(if mail {
                Command::Mail { path, params }
            } else {
                Command::Rcpt { path, params }
            })
        }
        DATA => no_argument(rest, Command::Data),
        BDAT => bdat(text(rest)?),
        RSET => no_argument(rest, Command::Rset),
        NOOP => Ok(Command::Noop),
        QUIT => no_argument(rest, Command::Quit),
        VRFY => string_argument(rest).map(Command::Vrfy),
        EXPN => string_argument(rest).map(Command::Expn),
        HELP => {
            let arg = text(trim_spaces(rest))?;
            Ok(Command::Help((!arg.is_empty()).then_some(arg)))
        }
        AUTH => auth(text(rest)?),
        _ => Err(CommandError::Unrecognized),
    }
}

/// Octets of a line already checked by [`scan_line`] (and, if not ASCII,
/// as UTF-8) as text: the check cannot fail here, but is the safe way to
/// get a `&str`.
fn text(b: &[u8]) -> Result<&str, CommandError> {
    std::str::from_utf8(b).map_err(|_| CommandError::InvalidCharacters)
}

/// What octets a line holds.
enum Octets {
    /// A control character other than TAB, or DEL.
    Control,
    Ascii,
    NonAscii,
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each octet of `w` below `n` (≤ 128) is set in the
/// result if any octet is; exact as a whole-word test, which is all we
/// need (the "hasless" trick).
const fn has_less(w: u64, n: u8) -> u64 {
    w.wrapping_sub(LOW * n as u64) & !w & HIGH
}

/// Whether `w` has an octet equal to `c` (nonzero if so; the lowest set
/// bit marks the first such octet, little-endian).
const fn has_byte(w: u64, c: u8) -> u64 {
    has_less(w ^ (LOW * c as u64), 1)
}

/// One pass over the line, eight octets at a time: controls (TAB aside)
/// and DEL, and whether all octets are ASCII.
fn scan_line(line: &[u8]) -> Octets {
    let (words, tail) = line.as_chunks::<8>();
    let (mut control, mut high) = (0, 0);
    for w in words {
        let w = u64::from_le_bytes(*w);
        control |= has_less(w, 0x20) | has_byte(w, 0x7f);
        high |= w;
    }
    // The last octets as one more word, overlapping the ones before; a
    // line of 4 to 7 octets as two overlapping halves of one.
    let last = match (
        line.last_chunk::<8>(),
        line.first_chunk::<4>(),
        line.last_chunk::<4>(),
    ) {
        _ if tail.is_empty() => None,
        (Some(w), _, _) => Some(u64::from_le_bytes(*w)),
        (None, Some(lo), Some(hi)) => {
            Some(u64::from(u32::from_le_bytes(*lo)) | u64::from(u32::from_le_bytes(*hi)) << 32)
        }
        _ => {
            for &c in tail {
                control |= u64::from(c < 0x20 || c == 0x7f);
                high |= u64::from(c);
            }
            None
        }
    };
    if let Some(w) = last {
        control |= has_less(w, 0x20) | has_byte(w, 0x7f);
        high |= w;
    }
    // A TAB sets the control bits too; look closer (rare).
    if control != 0 && line.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
        Octets::Control
    } else if high & HIGH != 0 {
        Octets::NonAscii
    } else {
        Octets::Ascii
    }
}

/// Leading and trailing spaces removed.
fn trim_spaces(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ').map_or(start, |e| e + 1);
    &b[start..end]
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

fn no_argument<'a>(rest: &[u8], cmd: Command<'a>) -> Result<Command<'a>, CommandError> {
    // Trailing spaces are tolerated (many clients send them); anything else is not.
    if rest.iter().all(|&b| b == b' ') {
        Ok(cmd)
    } else {
        Err(CommandError::Syntax)
    }
}

fn string_argument(rest: &[u8]) -> Result<&str, CommandError> {
    let arg = trim_spaces(rest);
    if arg.is_empty() {
        Err(CommandError::Syntax)
    } else {
        text(arg)
    }
}

/// HELO/EHLO: one token (a domain or an address literal). Its syntax is left
/// to policy, which may insist on a resolvable name; here it must be one
/// printable word.
fn domain_argument(rest: &[u8]) -> Result<&str, CommandError> {
    let arg = trim_spaces(rest);
    if arg.is_empty() || find_any(arg, [b' ', b'\t', b' ']).is_some() {
        Err(CommandError::Syntax)
    } else {
        text(arg)
    }
}

/// `" FROM:"` and `" TO:"`, as (length, the letters as a little-endian
/// word, lower-cased): matched by folding the line's letters to lower case
/// with `| 0x20`, which maps only `A`–`Z` onto `a`–`z`.
const FROM: (usize, u32) = (6, u32::from_le_bytes(*b"from"));
const TO: (usize, u32) = (4, u32::from_le_bytes(*b"to\0\0"));

/// `SP "FROM:" Reverse-path [SP Mail-parameters]` (and `TO:` for RCPT).
/// Written out by hand rather than with nom: it is the hot path of a
/// transaction, and the grammar is a fixed prefix and a bracketed extent.
// Inlined into `parse_command`, which builds the command from its result
// in place rather than copying it.
#[inline(always)]
fn path_command(
    rest: &[u8],
    (n, letters): (usize, u32),
) -> Result<(Path<'_>, EsmtpParams<'_>), CommandError> {
    // " FROM:" or " TO:": a space, the letters, a colon.
    let prefix_ok = match rest {
        [b' ', f, r, o, m, b':', ..] if n == 6 => {
            u32::from_le_bytes([*f, *r, *o, *m]) | 0x2020_2020 == letters
        }
        [b' ', t, o, b':', ..] if n == 4 => u32::from_le_bytes([*t, *o, 0, 0]) | 0x2020 == letters,
        _ => false,
    };
    if !prefix_ok {
        return Err(CommandError::Syntax);
    }
    // Many clients put a space after the colon; tolerated.
    let mut i = n;
    while matches!(rest.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    // The path and parameters as text, in one conversion, without the
    // spaces after them; the octets before them are ASCII.
    let rest = &rest[i..];
    let end = rest.iter().rposition(|&c| c != b' ').map_or(0, |e| e + 1);
    let text = text(&rest[..end])?;
    // The usual path is checked as its end is found; any other is only
    // delimited here.
    let (plain, path_end) = match AddressRef::parse_plain_path(text) {
        Some((a, used)) => (Some(a), used),
        // The null path, for bounces.
        None if text.starts_with("<>") => (None, 2),
        None => (
            None,
            angle_path(text.as_bytes()).ok_or(CommandError::Syntax)?,
        ),
    };
    let b = text.as_bytes();
    let params = match b.get(path_end) {
        None => "",
        Some(b' ') => {
            // After the spaces: an ASCII octet, so a char boundary.
            let start = path_end + b[path_end..].iter().take_while(|&&c| c == b' ').count();
            &text[start..]
        }
        Some(_) => return Err(CommandError::Syntax),
    };
    let path = Path {
        text: &text[..path_end],
        plain,
    };
    Ok((path, EsmtpParams { rest: params }))
}

/// A path from `<` to its closing `>`, skipping quoted strings (a quoted
/// local part may hold `>`); returns where it ends (after the `>`). Only
/// finds the extent; the address is parsed by `portcullis_core`.
fn angle_path(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'<') {
        return None;
    }
    // Fast path: no quoted string before the closing bracket, found eight
    // octets at a time.
    if let Some(i) = find_path_stop(bytes)
        && bytes[i] == b'>'
    {
        return Some(i + 1);
    }
    let mut i = 1;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i + 1),
            b' ' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The first `>`, `"` or space in `b`.
fn find_path_stop(b: &[u8]) -> Option<usize> {
    find_any(b, [b'>', b'"', b' '])
}

/// The first of three octets in `b`, eight octets at a time.
fn find_any(b: &[u8], [x, y, z]: [u8; 3]) -> Option<usize> {
    let (words, tail) = b.as_chunks::<8>();
    for (n, w) in words.iter().enumerate() {
        let w = u64::from_le_bytes(*w);
        let hits = has_byte(w, x) | has_byte(w, y) | has_byte(w, z);
        if hits != 0 {
            return Some(n * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter()
        .position(|&c| c == x || c == y || c == z)
        .map(|i| words.len() * 8 + i)
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
        assert!(path.reverse_path(ParseOptions::default()).is_ok());
        // Read as the string it was before it was a Path.
        assert!(path.starts_with("<\"") && path.len() == 17);
        let got: Vec<_> = params.collect();
        assert_eq!(
            got,
            vec![Ok(("SIZE", Some("100"))), Ok(("BODY", Some("8BITMIME")))]
        );
        assert!(matches!(
            parse_command(b"mail from: <>"),
            Ok(Command::Mail { path, .. }) if path == "<>"
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
