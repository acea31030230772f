//! Mailbox addresses and SMTP paths (RFC 5321 §4.1.2, RFC 6531).
//!
//! Parsing is strict: the grammar of RFC 5321 §4.1.2, the size limits of
//! §4.5.3.1, and UTF-8 only where the caller allows it (SMTPUTF8). Every bad
//! input yields an [`AddressError`]; nothing here panics on any input.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::reply::Reply;

/// RFC 5321 §4.5.3.1.1: maximum local-part length in octets.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2: maximum domain length in octets.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3: maximum path length in octets, including `<` and `>`.
pub const MAX_PATH: usize = 256;

/// Why an address or path did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Nothing to parse.
    #[error("empty address")]
    Empty,
    /// A path must be enclosed in `<` and `>`.
    #[error("path not enclosed in angle brackets")]
    MissingBrackets,
    /// A mailbox needs `local@domain`.
    #[error("missing '@' between local part and domain")]
    MissingAt,
    /// The local part is neither a dot-string nor a quoted string.
    #[error("invalid local part")]
    InvalidLocalPart,
    /// The domain is not a valid (IDNA) domain name.
    #[error("invalid domain")]
    InvalidDomain,
    /// An address literal (`[...]`) is malformed.
    #[error("invalid address literal")]
    InvalidAddressLiteral,
    /// RFC 5321 §4.5.3.1.1.
    #[error("local part is {0} octets, the limit is 64")]
    LocalPartTooLong(usize),
    /// RFC 5321 §4.5.3.1.2.
    #[error("domain is {0} octets, the limit is 255")]
    DomainTooLong(usize),
    /// RFC 5321 §4.5.3.1.3.
    #[error("path is {0} octets, the limit is 256")]
    PathTooLong(usize),
    /// Non-ASCII text without SMTPUTF8 (RFC 6531 §3.4).
    #[error("non-ASCII address without SMTPUTF8")]
    Utf8NotAllowed,
    /// A source route (`<@a,@b:user@c>`) where the options forbid one.
    #[error("source routes are not accepted")]
    SourceRouteNotAllowed,
    /// `<>` where a mailbox is required.
    #[error("null path not allowed here")]
    NullNotAllowed,
    /// Text after the address that is not part of it.
    #[error("unexpected characters after the address")]
    TrailingCharacters,
}

impl AddressError {
    /// The reply for this error in `MAIL FROM`.
    pub fn sender_reply(&self) -> Reply {
        match self {
            AddressError::Utf8NotAllowed => Reply::utf8_not_permitted(),
            _ => Reply::new(501, (5, 1, 7), format!("Bad sender address syntax: {self}")),
        }
    }

    /// The reply for this error in `RCPT TO`.
    pub fn recipient_reply(&self) -> Reply {
        match self {
            AddressError::Utf8NotAllowed => Reply::utf8_not_permitted(),
            _ => Reply::new(
                501,
                (5, 1, 3),
                format!("Bad recipient address syntax: {self}"),
            ),
        }
    }
}

/// How strictly to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseOptions {
    /// Allow RFC 6531 UTF-8 in local parts and domains (the SMTPUTF8 parameter).
    pub utf8: bool,
    /// RFC 5321 §4.1.2: servers MUST accept source-route syntax and SHOULD
    /// ignore the route. When false, a source route is an error instead.
    pub accept_source_route: bool,
    /// Leniency: accept one trailing dot on a domain name (`user@example.org.`)
    /// and drop it, as Postfix does. RFC 5321 domain syntax has no trailing
    /// dot, so this is off by default.
    pub trailing_dot: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            utf8: true,
            accept_source_route: true,
            trailing_dot: false,
        }
    }
}

impl ParseOptions {
    /// ASCII only: what a session without SMTPUTF8 must enforce.
    pub fn ascii() -> Self {
        ParseOptions {
            utf8: false,
            ..Self::default()
        }
    }

    /// Set whether UTF-8 is allowed.
    pub fn with_utf8(mut self, utf8: bool) -> Self {
        self.utf8 = utf8;
        self
    }

    /// Set whether a source route is accepted (and ignored).
    pub fn with_source_route(mut self, accept: bool) -> Self {
        self.accept_source_route = accept;
        self
    }

    /// Set whether one trailing dot on a domain name is accepted and dropped.
    pub fn with_trailing_dot(mut self, accept: bool) -> Self {
        self.trailing_dot = accept;
        self
    }
}

/// RFC 5322 atext, by octet; every octet of a non-ASCII character counts
/// (RFC 6531 §3.3 extends atext with UTF-8; the caller checks it is allowed).
const ATEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'/'
                    | b'='
                    | b'?'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
            )
            || b >= 0x80;
        i += 1;
    }
    t
};

fn is_qtext(c: char) -> bool {
    // RFC 5321 qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531).
    matches!(c as u32, 32..=33 | 35..=91 | 93..=126) || !c.is_ascii()
}

fn is_dot_string(s: &str) -> bool {
    s.bytes().all(|b| ATEXT[usize::from(b)] || b == b'.') && dots_separate_atoms(s.as_bytes())
}

/// Whether `s`, made of atext and dots, is `atom *("." atom)`: not empty,
/// no dot first, last or next to another.
fn dots_separate_atoms(s: &[u8]) -> bool {
    s.first().is_some_and(|&b| b != b'.')
        && s.last().is_some_and(|&b| b != b'.')
        && !s.windows(2).any(|w| w == b"..")
}

/// The part of a mailbox before the `@`, kept unquoted.
///
/// `"abc"@x` and `abc@x` are the same mailbox (RFC 5321 §4.1.2 forbids
/// depending on quoting), so the value is stored without quotes and
/// displayed quoted only when it must be. Comparison is case-sensitive as
/// the RFC requires; use [`LocalPart::eq_ignore_case`] where policy wants folding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalPart(String);

impl LocalPart {
    /// The unquoted value.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether display needs the quoted-string form.
    pub fn needs_quoting(&self) -> bool {
        !is_dot_string(&self.0)
    }

    /// Case-insensitive comparison, e.g. for `postmaster`.
    pub fn eq_ignore_case(&self, other: &str) -> bool {
        eq_ignore_case(&self.0, other)
    }

    /// Octets on the wire, including quotes and escapes.
    pub fn wire_len(&self) -> usize {
        if !self.needs_quoting() {
            return self.0.len();
        }
        // Two quotes, plus a backslash before each '"' and '\\'.
        2 + self.0.len() + self.0.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
    }

    /// Build from an unquoted value; fails if it cannot be written at all
    /// (control characters) or is too long in wire form.
    pub fn new(value: &str) -> Result<Self, AddressError> {
        if value.is_empty() || value.chars().any(|c| c.is_control()) {
            return Err(AddressError::InvalidLocalPart);
        }
        let lp = LocalPart(value.to_owned());
        let len = lp.wire_len();
        if len > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong(len));
        }
        Ok(lp)
    }
}

impl fmt::Display for LocalPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_local_part(f, &self.0)
    }
}

/// A local part's value as written: bare if a dot-string, else quoted with
/// `"` and `\` escaped.
fn write_local_part(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    if is_dot_string(value) {
        return f.write_str(value);
    }
    f.write_str("\"")?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// Case-insensitive comparison of local parts, e.g. for `postmaster`.
fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.to_lowercase() == b.to_lowercase()
}

/// What kind of domain a [`Domain`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DomainKind {
    /// A host name (ASCII or IDNA).
    Name,
    /// `[192.0.2.1]`.
    Ipv4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`.
    Ipv6(Ipv6Addr),
    /// `[tag:content]`, RFC 5321 General-address-literal.
    General,
}

/// A domain or address literal, compared case-insensitively and IDNA-aware:
/// `Bücher.Example` equals `xn--bcher-kva.example`.
#[derive(Debug, Clone)]
pub struct Domain {
    original: String,
    /// Lower-case A-label form for names; canonical text for literals.
    /// `None` when that is `original` itself (a lower-case ASCII name, the
    /// usual case): one allocation fewer per parsed path.
    ascii: Option<String>,
    kind: DomainKind,
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.ascii() == other.ascii()
    }
}
impl Eq for Domain {}
impl std::hash::Hash for Domain {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ascii().hash(state)
    }
}
impl PartialOrd for Domain {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Domain {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ascii().cmp(other.ascii())
    }
}

fn is_ldh_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Whether `s` is `label *("." label)` of LDH labels (RFC 5321 Domain,
/// RFC 1035 §2.3.1 lengths), one pass over the octets; if so, whether it
/// has upper-case letters.
fn ldh_name_case(s: &str) -> Option<bool> {
    let mut label_start = 0usize;
    let mut prev = b'.';
    let mut upper = false;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if c == b'.' {
            // A label ends: not empty, not ending in a hyphen, ≤ 63 octets.
            if prev == b'.' || prev == b'-' || i - label_start > 63 {
                return None;
            }
            label_start = i + 1;
        } else if c.is_ascii_alphanumeric() || (c == b'-' && prev != b'.') {
            upper |= c.is_ascii_uppercase();
        } else {
            return None;
        }
        prev = c;
    }
    (prev != b'.' && prev != b'-' && s.len() - label_start <= 63).then_some(upper)
}

impl Domain {
    /// Parse a domain name or an address literal.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse with options (UTF-8 allowed or not).
    pub fn parse_with(s: &str, opts: ParseOptions) -> Result<Self, AddressError> {
        let (d, idn) = check_domain(s, opts)?;
        Ok(d.to_domain(idn))
    }

    /// The domain as it was written.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Lower-case A-label (punycode) form, the comparison key.
    pub fn ascii(&self) -> &str {
        self.ascii.as_deref().unwrap_or(&self.original)
    }

    /// Name or literal.
    pub fn kind(&self) -> DomainKind {
        self.kind
    }

    /// Whether this is an address literal.
    pub fn is_literal(&self) -> bool {
        !matches!(self.kind, DomainKind::Name)
    }

    /// Whether the domain as written contains non-ASCII characters.
    pub fn is_utf8(&self) -> bool {
        !self.original.is_ascii()
    }

    /// Whether this domain equals `other` or is a subdomain of it.
    pub fn is_within(&self, other: &Domain) -> bool {
        let (mine, theirs) = (self.ascii(), other.ascii());
        mine == theirs
            || (mine.len() > theirs.len()
                && mine.ends_with(theirs)
                && mine.as_bytes()[mine.len() - theirs.len() - 1] == b'.')
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl FromStr for Domain {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

/// Validate a domain name or address literal (the one grammar both
/// [`Domain`] and [`DomainRef`] use). For a UTF-8 name the A-label form has
/// to be computed to validate it; it is returned so an owned [`Domain`]
/// need not compute it again.
fn check_domain(
    s: &str,
    opts: ParseOptions,
) -> Result<(DomainRef<'_>, Option<String>), AddressError> {
    let s = match s.strip_suffix('.') {
        Some(name) if opts.trailing_dot && !s.starts_with('[') => name,
        _ => s,
    };
    if s.is_empty() {
        return Err(AddressError::InvalidDomain);
    }
    if s.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong(s.len()));
    }
    if s.starts_with('[') {
        let form = match check_literal(s)? {
            DomainKind::Ipv4(_) => DomainForm::Ipv4,
            DomainKind::Ipv6(_) => DomainForm::Ipv6,
            _ => DomainForm::General,
        };
        return Ok((DomainRef { text: s, form }, None));
    }
    if s.is_ascii() {
        let Some(upper) = ldh_name_case(s) else {
            return Err(AddressError::InvalidDomain);
        };
        let form = if upper {
            DomainForm::UpperName
        } else {
            DomainForm::Name
        };
        return Ok((DomainRef { text: s, form }, None));
    }
    if !opts.utf8 {
        return Err(AddressError::Utf8NotAllowed);
    }
    let ascii = idna::domain_to_ascii_strict(s).map_err(|_| AddressError::InvalidDomain)?;
    if ascii.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong(ascii.len()));
    }
    if !ascii.split('.').all(is_ldh_label) {
        return Err(AddressError::InvalidDomain);
    }
    let form = DomainForm::Idn;
    Ok((DomainRef { text: s, form }, Some(ascii)))
}

/// `[...]`: which kind of address literal `s` is, if it is one.
fn check_literal(s: &str) -> Result<DomainKind, AddressError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(AddressError::InvalidAddressLiteral)?;
    if let Ok(v4) = inner.parse::<Ipv4Addr>() {
        // Ipv4Addr's parser rejects leading zeros and out-of-range octets.
        return Ok(DomainKind::Ipv4(v4));
    }
    if let Some((tag, content)) = inner.split_once(':') {
        if tag.eq_ignore_ascii_case("IPv6") {
            let v6 = content
                .parse::<Ipv6Addr>()
                .map_err(|_| AddressError::InvalidAddressLiteral)?;
            return Ok(DomainKind::Ipv6(v6));
        }
        // General-address-literal = Standardized-tag ":" 1*dcontent
        let tag_ok = is_ldh_label(tag);
        let content_ok =
            !content.is_empty() && content.bytes().all(|b| matches!(b, 33..=90 | 94..=126));
        if tag_ok && content_ok {
            return Ok(DomainKind::General);
        }
    }
    Err(AddressError::InvalidAddressLiteral)
}

/// A domain or address literal validated in place: the text it was parsed
/// from, borrowed, with what validation learned about it. The grammar,
/// limits and errors are those of [`Domain::parse_with`]; [`into_owned`]
/// gives the [`Domain`].
///
/// The text is kept as written, so there is no `PartialEq`: compare
/// [`DomainRef::ascii`] forms (or owned [`Domain`]s), which fold case and
/// IDNA.
///
/// [`into_owned`]: DomainRef::into_owned
#[derive(Debug, Clone, Copy)]
pub struct DomainRef<'a> {
    text: &'a str,
    form: DomainForm,
}

/// What validation learned about a domain, in one octet (the borrowed
/// types stay small: they are returned through several calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum DomainForm {
    /// An ASCII name in lower case: the text is the key.
    Name,
    /// An ASCII name with upper-case letters: the key must be folded.
    UpperName,
    /// A name with UTF-8 (IDNA): the key is its A-labels.
    Idn,
    Ipv4,
    Ipv6,
    General,
}

impl<'a> DomainRef<'a> {
    /// Parse a domain name or an address literal.
    pub fn parse(s: &'a str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse with options, exactly as [`Domain::parse_with`] does.
    pub fn parse_with(s: &'a str, opts: ParseOptions) -> Result<Self, AddressError> {
        check_domain(s, opts).map(|(d, _)| d)
    }

    /// The domain as written (less a trailing dot that
    /// [`ParseOptions::trailing_dot`] allowed and dropped).
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Name or literal (a literal's address is read again from the text).
    pub fn kind(&self) -> DomainKind {
        match self.form {
            DomainForm::Name | DomainForm::UpperName | DomainForm::Idn => DomainKind::Name,
            // Validated when parsed: the fallback is never taken.
            _ => check_literal(self.text).unwrap_or(DomainKind::General),
        }
    }

    /// Whether this is an address literal.
    pub fn is_literal(&self) -> bool {
        matches!(
            self.form,
            DomainForm::Ipv4 | DomainForm::Ipv6 | DomainForm::General
        )
    }

    /// Whether the domain as written contains non-ASCII characters.
    pub fn is_utf8(&self) -> bool {
        self.form == DomainForm::Idn
    }

    /// The comparison key, as [`Domain::ascii`]: lower-case A-labels for a
    /// name, canonical text for a literal. Borrowed for a lower-case ASCII
    /// name (the usual case); computed otherwise.
    pub fn ascii(&self) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        match self.key(None) {
            None => Cow::Borrowed(self.text),
            Some(key) => Cow::Owned(key),
        }
    }

    /// The owned [`Domain`].
    pub fn into_owned(self) -> Domain {
        self.to_domain(None)
    }

    /// The owned domain; `idn` is the A-label form if validation computed it.
    fn to_domain(self, idn: Option<String>) -> Domain {
        Domain {
            original: self.text.to_owned(),
            ascii: self.key(idn),
            kind: self.kind(),
        }
    }

    /// The comparison key where it differs from the text: `None` for a
    /// lower-case ASCII name.
    fn key(&self, idn: Option<String>) -> Option<String> {
        match self.form {
            DomainForm::Name => None,
            DomainForm::UpperName => Some(self.text.to_ascii_lowercase()),
            // Validated when parsed, so this conversion succeeds; were it
            // to fail, the lower-cased text would still be a usable key.
            DomainForm::Idn => Some(idn.unwrap_or_else(|| {
                idna::domain_to_ascii_strict(self.text).unwrap_or_else(|_| self.text.to_lowercase())
            })),
            _ => Some(match self.kind() {
                DomainKind::Ipv4(v4) => format!("[{v4}]"),
                DomainKind::Ipv6(v6) => format!("[IPv6:{v6}]"),
                _ => {
                    let inner = &self.text[1..self.text.len() - 1];
                    let (tag, content) = inner.split_once(':').unwrap_or((inner, ""));
                    format!("[{}:{content}]", tag.to_ascii_lowercase())
                }
            }),
        }
    }
}

impl From<DomainRef<'_>> for Domain {
    fn from(d: DomainRef<'_>) -> Self {
        d.into_owned()
    }
}

impl fmt::Display for DomainRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

/// A mailbox: `local-part@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: LocalPart,
    domain: Domain,
}

impl Address {
    /// Build from parts.
    pub fn new(local: LocalPart, domain: Domain) -> Self {
        Address { local, domain }
    }

    /// Parse a bare mailbox (`user@example.org`, no angle brackets).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse a bare mailbox with options.
    pub fn parse_with(s: &str, opts: ParseOptions) -> Result<Self, AddressError> {
        AddressRef::parse_with(s, opts).map(AddressRef::into_owned)
    }

    /// The local part.
    pub fn local_part(&self) -> &LocalPart {
        &self.local
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Whether any part is non-ASCII (needs SMTPUTF8 to relay).
    pub fn is_utf8(&self) -> bool {
        !self.local.0.is_ascii() || self.domain.is_utf8()
    }

    /// A comparison key: local part as is, domain in lower-case A-labels.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local, self.domain.ascii())
    }

    /// Replace the local part, keeping the domain.
    pub fn with_local_part(&self, local: LocalPart) -> Self {
        Address {
            local,
            domain: self.domain.clone(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// How a validated local part is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum LocalForm {
    /// A dot-string: the text is the value.
    Dot,
    /// A quoted string without backslashes: the value is inside the quotes.
    Quoted,
    /// A quoted string with quoted pairs: the value must be unescaped.
    Escaped,
}

/// A mailbox validated in place, `local-part@domain`, borrowed from the
/// text it was parsed from: what a server needs to check a MAIL or RCPT
/// path before it decides to keep anything.
///
/// The grammar, limits, options and errors are those of
/// [`Address::parse_with`] (which parses through this type). Nothing is
/// allocated for the usual forms; [`AddressRef::into_owned`] gives the
/// [`Address`]. A quoted local part keeps its quoted text and is unescaped
/// when asked for ([`AddressRef::local_part`]).
///
/// ```
/// use portcullis_core::{AddressRef, Address, DomainKind};
///
/// let a = AddressRef::parse("\"john doe\"@Example.ORG").unwrap();
/// assert_eq!(a.local_part(), "john doe");
/// assert_eq!(a.local_part_as_written(), "\"john doe\"");
/// assert_eq!(a.domain().as_str(), "Example.ORG");
/// assert_eq!(a.domain().ascii(), "example.org");
/// assert_eq!(a.domain().kind(), DomainKind::Name);
/// assert_eq!(a.into_owned(), Address::parse("\"john doe\"@example.org").unwrap());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AddressRef<'a> {
    /// `local@domain` as written.
    text: &'a str,
    shape: Shape,
}

/// Where the `@` is in an [`AddressRef`]'s text (≤ 64), and how its local
/// part and domain are written, in one word: written and copied whole.
/// (Small fields written one by one and then copied as a word, as
/// results are returned, stall the copy: no store forwarding.)
#[derive(Clone, Copy)]
struct Shape(u64);

impl Shape {
    fn new(at: usize, local: LocalForm, domain: DomainForm) -> Self {
        Shape(at as u64 & 0xff | (local as u64) << 8 | (domain as u64) << 16)
    }

    fn at(self) -> usize {
        (self.0 & 0xff) as usize
    }

    fn local(self) -> LocalForm {
        match self.0 >> 8 & 0xff {
            0 => LocalForm::Dot,
            1 => LocalForm::Quoted,
            _ => LocalForm::Escaped,
        }
    }

    fn domain(self) -> DomainForm {
        match self.0 >> 16 & 0xff {
            0 => DomainForm::Name,
            1 => DomainForm::UpperName,
            2 => DomainForm::Idn,
            3 => DomainForm::Ipv4,
            4 => DomainForm::Ipv6,
            _ => DomainForm::General,
        }
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shape")
            .field("at", &self.at())
            .field("local", &self.local())
            .field("domain", &self.domain())
            .finish()
    }
}

impl<'a> AddressRef<'a> {
    /// Parse a bare mailbox (`user@example.org`, no angle brackets).
    pub fn parse(s: &'a str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse a bare mailbox with options; the whole string must be the mailbox.
    pub fn parse_with(s: &'a str, opts: ParseOptions) -> Result<Self, AddressError> {
        let (addr, used) = parse_mailbox(s, opts)?;
        if used != s.len() {
            return Err(AddressError::TrailingCharacters);
        }
        Ok(addr)
    }

    /// The usual path, `<dot-string@ldh-name>` in ASCII (no quoting, no
    /// literal, no source route, no trailing dot), at the start of `s`, in
    /// one pass; with the bytes consumed, up to and including the `>`.
    ///
    /// Such a path is valid under every [`ParseOptions`], and
    /// [`ReversePathRef::parse_prefix`] and [`ForwardPathRef::parse_prefix`]
    /// give this same mailbox for it, so a command parser can check it while
    /// it finds the path's end, before it knows the options. `None` for
    /// every other form, valid or not: parse those with the options.
    ///
    /// ```
    /// use portcullis_core::AddressRef;
    ///
    /// let (a, used) = AddressRef::parse_plain_path("<user@example.org> SIZE=10").unwrap();
    /// assert_eq!((a.as_str(), used), ("user@example.org", 18));
    /// assert!(AddressRef::parse_plain_path("<\"a b\"@example.org>").is_none());
    /// ```
    #[inline]
    pub fn parse_plain_path(s: &'a str) -> Option<(Self, usize)> {
        if !s.starts_with('<') {
            return None;
        }
        plain_path(s)
    }

    /// The mailbox as written, `local-part@domain` (less a trailing dot
    /// that [`ParseOptions::trailing_dot`] allowed and dropped).
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The local part's value, unquoted: borrowed unless quoted pairs
    /// (`\"`, `\\`) have to be undone. `"abc"` and `abc` give the same
    /// value, as for [`LocalPart`].
    pub fn local_part(&self) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        let raw = self.local_part_as_written();
        match self.shape.local() {
            LocalForm::Dot => Cow::Borrowed(raw),
            LocalForm::Quoted => Cow::Borrowed(&raw[1..raw.len() - 1]),
            LocalForm::Escaped => Cow::Owned(unescape(&raw[1..raw.len() - 1])),
        }
    }

    /// The local part as written: a dot-string, or a quoted string with
    /// its quotes and escapes.
    #[inline]
    pub fn local_part_as_written(&self) -> &'a str {
        &self.text[..self.shape.at()]
    }

    /// Whether the local part was written as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.shape.local() != LocalForm::Dot
    }

    /// The domain.
    #[inline]
    pub fn domain(&self) -> DomainRef<'a> {
        DomainRef {
            text: &self.text[self.shape.at() + 1..],
            form: self.shape.domain(),
        }
    }

    /// Whether any part is non-ASCII (needs SMTPUTF8 to relay).
    pub fn is_utf8(&self) -> bool {
        !self.text.is_ascii()
    }

    /// The owned [`Address`]: the local part unquoted, the domain with
    /// its comparison key. Two allocations for the usual forms (three
    /// when the domain has upper-case letters or is a literal or IDN).
    pub fn into_owned(self) -> Address {
        Address {
            local: LocalPart(self.local_part().into_owned()),
            domain: self.domain().into_owned(),
        }
    }
}

impl From<AddressRef<'_>> for Address {
    fn from(a: AddressRef<'_>) -> Self {
        a.into_owned()
    }
}

/// As [`Address`] displays: the local part quoted only if it must be.
impl fmt::Display for AddressRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape.local() {
            LocalForm::Dot => f.write_str(self.local_part_as_written())?,
            _ => write_local_part(f, &self.local_part())?,
        }
        write!(f, "@{}", self.domain().text)
    }
}

/// Undo quoted pairs: `\x` is `x`.
fn unescape(quoted: &str) -> String {
    let mut value = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            c => value.push(c),
        }
    }
    value
}

/// Parse `local@domain` at the start of `s`, stopping at `>` or whitespace.
/// Returns the mailbox and the number of bytes consumed.
fn parse_mailbox(s: &str, opts: ParseOptions) -> Result<(AddressRef<'_>, usize), AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if !opts.utf8 && !s.is_ascii() {
        // Only the address itself matters, but a non-ASCII byte anywhere in
        // a command without SMTPUTF8 is already a protocol error.
        let end = s.find(['>', ' ']).unwrap_or(s.len());
        if !s[..end].is_ascii() {
            return Err(AddressError::Utf8NotAllowed);
        }
    }
    let (local, at) = if s.starts_with('"') {
        let mut chars = s.char_indices().skip(1);
        let mut close = None;
        let mut form = LocalForm::Quoted;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    close = Some(i);
                    break;
                }
                '\\' => match chars.next() {
                    // quoted-pairSMTP = %d92 %d32-126
                    Some((_, e)) if (' '..='~').contains(&e) => form = LocalForm::Escaped,
                    _ => return Err(AddressError::InvalidLocalPart),
                },
                c if is_qtext(c) => {}
                _ => return Err(AddressError::InvalidLocalPart),
            }
        }
        let close = close.ok_or(AddressError::InvalidLocalPart)?;
        if close + 1 > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong(close + 1));
        }
        if close == 1 {
            // An empty quoted local part is grammatical but no real mailbox;
            // LocalPart cannot represent it without quoting tricks.
            return Err(AddressError::InvalidLocalPart);
        }
        (form, close + 1)
    } else {
        // Dot-string = Atom *("." Atom), in one pass. Octets of a non-ASCII
        // character are all atext, so `end` falls on a character boundary.
        let bytes = s.as_bytes();
        let mut end = 0;
        let mut dots_ok = true;
        let mut prev = b'.';
        while end < bytes.len() {
            let b = bytes[end];
            if b == b'.' {
                dots_ok &= prev != b'.';
            } else if !ATEXT[usize::from(b)] {
                break;
            }
            prev = b;
            end += 1;
        }
        if end == 0 {
            return Err(if s.starts_with('@') {
                AddressError::InvalidLocalPart
            } else {
                AddressError::MissingAt
            });
        }
        if !dots_ok || prev == b'.' {
            return Err(AddressError::InvalidLocalPart);
        }
        if end > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong(end));
        }
        (LocalForm::Dot, end)
    };
    let rest = &s[at..];
    let Some(rest) = rest.strip_prefix('@') else {
        return Err(if rest.is_empty() {
            AddressError::MissingAt
        } else {
            AddressError::InvalidLocalPart
        });
    };
    let dom_end = if rest.starts_with('[') {
        rest.find(']')
            .map(|i| i + 1)
            .ok_or(AddressError::InvalidAddressLiteral)?
    } else {
        rest.bytes()
            .position(|b| matches!(b, b'>' | b' ' | b'\t'))
            .unwrap_or(rest.len())
    };
    let (domain, _) = check_domain(&rest[..dom_end], opts)?;
    let addr = AddressRef {
        // A dropped trailing dot is not part of the text.
        text: &s[..at + 1 + domain.text.len()],
        shape: Shape::new(at, local, domain.form),
    };
    Ok((addr, at + 1 + dom_end))
}

/// The usual path, `<dot-string@ldh-name>` in ASCII, in one pass over the
/// octets; `None` for anything else (quoted local parts, literals, source
/// routes, UTF-8, a trailing dot, errors), which the general parser then
/// handles. Where it succeeds the general parser gives the same result, and
/// under any [`ParseOptions`]: none of them matters to such a path.
fn plain_path(s: &str) -> Option<(AddressRef<'_>, usize)> {
    let b = s.as_bytes();
    // Local part: atoms of atext separated by single dots (b[0] is '<').
    // Runs of lower-case letters and digits are taken eight octets at a
    // time; the octets that end them one by one.
    let mut i = 1;
    let mut atom = i;
    let at = loop {
        i = lower_alnum_run(b, i);
        match *b.get(i)? {
            // An empty atom: a dot first, two together, or one last.
            b'.' | b'@' if i == atom => return None,
            b'.' => atom = i + 1,
            b'@' => break i,
            c if c.is_ascii() && ATEXT[usize::from(c)] => {}
            _ => return None,
        }
        i += 1;
    };
    if at - 1 > MAX_LOCAL_PART {
        return None;
    }
    // Domain: LDH labels, each 1–63 octets, no hyphen first or last, up
    // to the '>'.
    let start = at + 1;
    i = start;
    let mut label = i;
    let mut upper = false;
    let end = loop {
        i = lower_alnum_run(b, i);
        match *b.get(i)? {
            b'-' if i > label => {}
            c @ (b'.' | b'>') => {
                if i == label || b[i - 1] == b'-' || i - label > 63 {
                    return None;
                }
                if c == b'>' {
                    break i;
                }
                label = i + 1;
            }
            c if c.is_ascii_uppercase() => upper = true,
            _ => return None,
        }
        i += 1;
    };
    if end - start > MAX_DOMAIN || end + 1 > MAX_PATH {
        return None;
    }
    // Every octet matched is ASCII: the indices are char boundaries.
    let address = AddressRef {
        text: &s[1..end],
        shape: Shape::new(
            at - 1,
            LocalForm::Dot,
            if upper {
                DomainForm::UpperName
            } else {
                DomainForm::Name
            },
        ),
    };
    Some((address, end + 1))
}

/// From `i`, where the run of lower-case ASCII letters and digits ends:
/// eight octets to a test (SWAR) while eight remain, then one by one.
fn lower_alnum_run(b: &[u8], mut i: usize) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each octet in `lo..=hi`. Exact for an ASCII octet;
    // a non-ASCII one is never in range, and the carries it may cause only
    // reach the octets after it, so the first octet out of range is found
    // exactly.
    let in_range = |w: u64, lo: u8, hi: u8| {
        let from_lo = w.wrapping_add(LOW * (0x80 - u64::from(lo)));
        let above_hi = w.wrapping_add(LOW * (0x7f - u64::from(hi)));
        from_lo & !above_hi & HIGH
    };
    while let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*w);
        let out = !(in_range(w, b'a', b'z') | in_range(w, b'0', b'9')) & HIGH;
        if out != 0 {
            return i + out.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        i += 1;
    }
    i
}

/// Parse `<[A-d-l:]mailbox>` or `<>` at the start of `s`.
/// Returns `None` for `<>`, and the number of bytes consumed.
fn parse_path_prefix(
    s: &str,
    opts: ParseOptions,
) -> Result<(Option<AddressRef<'_>>, usize), AddressError> {
    let Some(body) = s.strip_prefix('<') else {
        return Err(if s.is_empty() {
            AddressError::Empty
        } else {
            AddressError::MissingBrackets
        });
    };
    if body.starts_with('>') {
        return Ok((None, 2));
    }
    if let Some((addr, used)) = plain_path(s) {
        return Ok((Some(addr), used));
    }
    general_path(s, opts).map(|(addr, used)| (Some(addr), used))
}

/// [`parse_path_prefix`] for every form: `s` starts with `<` and is not `<>`.
fn general_path(s: &str, opts: ParseOptions) -> Result<(AddressRef<'_>, usize), AddressError> {
    let body = &s[1..];
    let mut pos = 1;
    if body.starts_with('@') {
        // A-d-l = At-domain *( "," At-domain ) ":" — syntax checked, then ignored.
        let colon = body.find(':').ok_or(AddressError::InvalidDomain)?;
        for at_domain in body[..colon].split(',') {
            let d = at_domain
                .strip_prefix('@')
                .ok_or(AddressError::InvalidDomain)?;
            check_domain(d, opts)?;
        }
        if !opts.accept_source_route {
            return Err(AddressError::SourceRouteNotAllowed);
        }
        pos += colon + 1;
    }
    let (addr, used) = parse_mailbox(&s[pos..], opts)?;
    pos += used;
    if !s[pos..].starts_with('>') {
        return Err(AddressError::MissingBrackets);
    }
    pos += 1;
    if pos > MAX_PATH {
        return Err(AddressError::PathTooLong(pos));
    }
    Ok((addr, pos))
}

/// `<postmaster>` (any case) at the start of `s`: RFC 5321 §4.1.1.3.
fn is_bare_postmaster(s: &str) -> bool {
    s.len() >= 12 && s.as_bytes()[..12].eq_ignore_ascii_case(b"<postmaster>")
}

/// The `MAIL FROM` path: null (`<>`, bounces) or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: a bounce or other notification (RFC 5321 §4.5.5).
    Null,
    /// A sender mailbox.
    Mailbox(Address),
}

impl ReversePath {
    /// Parse `<...>` with default options.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse `<...>`; the whole string must be the path.
    pub fn parse_with(s: &str, opts: ParseOptions) -> Result<Self, AddressError> {
        ReversePathRef::parse_with(s, opts).map(ReversePathRef::into_owned)
    }

    /// Parse the path at the start of `s`; returns it and the bytes consumed,
    /// so a command parser can go on to the ESMTP parameters.
    pub fn parse_prefix(s: &str, opts: ParseOptions) -> Result<(Self, usize), AddressError> {
        ReversePathRef::parse_prefix(s, opts).map(|(p, used)| (p.into_owned(), used))
    }

    /// The mailbox, unless null.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ReversePath::Null => None,
            ReversePath::Mailbox(a) => Some(a),
        }
    }

    /// Whether this is `<>`.
    pub fn is_null(&self) -> bool {
        matches!(self, ReversePath::Null)
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(a) => write!(f, "<{a}>"),
        }
    }
}

/// The `RCPT TO` path: a mailbox, or the bare `<Postmaster>` of RFC 5321 §4.1.1.3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` with no domain: the postmaster of the receiving host.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Address),
}

impl ForwardPath {
    /// Parse `<...>` with default options.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse `<...>`; the whole string must be the path.
    pub fn parse_with(s: &str, opts: ParseOptions) -> Result<Self, AddressError> {
        ForwardPathRef::parse_with(s, opts).map(ForwardPathRef::into_owned)
    }

    /// Parse the path at the start of `s`; returns it and the bytes consumed.
    pub fn parse_prefix(s: &str, opts: ParseOptions) -> Result<(Self, usize), AddressError> {
        ForwardPathRef::parse_prefix(s, opts).map(|(p, used)| (p.into_owned(), used))
    }

    /// The mailbox, unless bare `<Postmaster>`.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Mailbox(a) => Some(a),
        }
    }

    /// `<Postmaster>` or `<postmaster@any-domain>` (case-insensitive).
    pub fn is_postmaster(&self) -> bool {
        match self {
            ForwardPath::Postmaster => true,
            ForwardPath::Mailbox(a) => a.local.eq_ignore_case("postmaster"),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(a) => write!(f, "<{a}>"),
        }
    }
}

/// A [`ReversePath`] validated in place, borrowing its mailbox from the
/// command line: same grammar, limits, options and errors (the owned
/// parser goes through this one), no allocation for the usual forms.
///
/// ```
/// use portcullis_core::{ParseOptions, ReversePath, ReversePathRef};
///
/// let line = "<sender@example.org> SIZE=1000";
/// let (path, used) = ReversePathRef::parse_prefix(line, ParseOptions::ascii()).unwrap();
/// assert_eq!(path.address().map(|a| a.as_str()), Some("sender@example.org"));
/// assert_eq!(&line[used..], " SIZE=1000");
/// // Keep it only once the transaction is going ahead:
/// let owned: ReversePath = path.into_owned();
/// assert_eq!(owned, ReversePath::parse("<sender@example.org>").unwrap());
/// ```
#[derive(Debug, Clone, Copy)]
pub enum ReversePathRef<'a> {
    /// `<>`.
    Null,
    /// A sender mailbox.
    Mailbox(AddressRef<'a>),
}

impl<'a> ReversePathRef<'a> {
    /// Parse `<...>` with default options.
    pub fn parse(s: &'a str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse `<...>`; the whole string must be the path.
    pub fn parse_with(s: &'a str, opts: ParseOptions) -> Result<Self, AddressError> {
        let (p, used) = Self::parse_prefix(s, opts)?;
        if used != s.len() {
            return Err(AddressError::TrailingCharacters);
        }
        Ok(p)
    }

    /// Parse the path at the start of `s`; returns it and the bytes consumed.
    pub fn parse_prefix(s: &'a str, opts: ParseOptions) -> Result<(Self, usize), AddressError> {
        let (addr, used) = parse_path_prefix(s, opts)?;
        Ok((
            addr.map_or(ReversePathRef::Null, ReversePathRef::Mailbox),
            used,
        ))
    }

    /// The mailbox, unless null.
    #[inline]
    pub fn address(&self) -> Option<&AddressRef<'a>> {
        match self {
            ReversePathRef::Null => None,
            ReversePathRef::Mailbox(a) => Some(a),
        }
    }

    /// Whether this is `<>`.
    #[inline]
    pub fn is_null(&self) -> bool {
        matches!(self, ReversePathRef::Null)
    }

    /// The owned [`ReversePath`].
    pub fn into_owned(self) -> ReversePath {
        match self {
            ReversePathRef::Null => ReversePath::Null,
            ReversePathRef::Mailbox(a) => ReversePath::Mailbox(a.into_owned()),
        }
    }
}

impl From<ReversePathRef<'_>> for ReversePath {
    fn from(p: ReversePathRef<'_>) -> Self {
        p.into_owned()
    }
}

/// As [`ReversePath`] displays.
impl fmt::Display for ReversePathRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePathRef::Null => f.write_str("<>"),
            ReversePathRef::Mailbox(a) => write!(f, "<{a}>"),
        }
    }
}

/// A [`ForwardPath`] validated in place, borrowing its mailbox from the
/// command line: same grammar, limits, options and errors (the owned
/// parser goes through this one), no allocation for the usual forms.
#[derive(Debug, Clone, Copy)]
pub enum ForwardPathRef<'a> {
    /// `<Postmaster>` with no domain.
    Postmaster,
    /// A recipient mailbox.
    Mailbox(AddressRef<'a>),
}

impl<'a> ForwardPathRef<'a> {
    /// Parse `<...>` with default options.
    pub fn parse(s: &'a str) -> Result<Self, AddressError> {
        Self::parse_with(s, ParseOptions::default())
    }

    /// Parse `<...>`; the whole string must be the path.
    pub fn parse_with(s: &'a str, opts: ParseOptions) -> Result<Self, AddressError> {
        let (p, used) = Self::parse_prefix(s, opts)?;
        if used != s.len() {
            return Err(AddressError::TrailingCharacters);
        }
        Ok(p)
    }

    /// Parse the path at the start of `s`; returns it and the bytes consumed.
    pub fn parse_prefix(s: &'a str, opts: ParseOptions) -> Result<(Self, usize), AddressError> {
        if is_bare_postmaster(s) {
            return Ok((ForwardPathRef::Postmaster, 12));
        }
        match parse_path_prefix(s, opts)? {
            (None, _) => Err(AddressError::NullNotAllowed),
            (Some(a), used) => Ok((ForwardPathRef::Mailbox(a), used)),
        }
    }

    /// The mailbox, unless bare `<Postmaster>`.
    #[inline]
    pub fn address(&self) -> Option<&AddressRef<'a>> {
        match self {
            ForwardPathRef::Postmaster => None,
            ForwardPathRef::Mailbox(a) => Some(a),
        }
    }

    /// `<Postmaster>` or `<postmaster@any-domain>` (case-insensitive).
    pub fn is_postmaster(&self) -> bool {
        match self {
            ForwardPathRef::Postmaster => true,
            ForwardPathRef::Mailbox(a) => eq_ignore_case(&a.local_part(), "postmaster"),
        }
    }

    /// The owned [`ForwardPath`].
    pub fn into_owned(self) -> ForwardPath {
        match self {
            ForwardPathRef::Postmaster => ForwardPath::Postmaster,
            ForwardPathRef::Mailbox(a) => ForwardPath::Mailbox(a.into_owned()),
        }
    }
}

impl From<ForwardPathRef<'_>> for ForwardPath {
    fn from(p: ForwardPathRef<'_>) -> Self {
        p.into_owned()
    }
}

/// As [`ForwardPath`] displays.
impl fmt::Display for ForwardPathRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPathRef::Postmaster => f.write_str("<Postmaster>"),
            ForwardPathRef::Mailbox(a) => write!(f, "<{a}>"),
        }
    }
}

/// `FromStr` through `parse`, and serde as the displayed string, so stored
/// envelopes read back through the same strict parser.
macro_rules! text_form {
    ($($t:ty),*) => {$(
        impl FromStr for $t {
            type Err = AddressError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$t>::parse(s)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

text_form!(Address, ReversePath, ForwardPath);

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn plain_mailbox() {
        let a = addr("john.doe@Example.ORG");
        assert_eq!(a.local_part().as_str(), "john.doe");
        assert_eq!(a.domain().ascii(), "example.org");
        assert_eq!(a, addr("john.doe@example.org"));
        assert_ne!(
            a,
            addr("John.Doe@example.org"),
            "local parts are case-sensitive"
        );
    }

    #[test]
    fn quoted_local_part_with_escapes() {
        let a = addr(r#""john \"j\" doe\\x"@example.org"#);
        assert_eq!(a.local_part().as_str(), r#"john "j" doe\x"#);
        assert_eq!(a.to_string(), r#""john \"j\" doe\\x"@example.org"#);
        // Quoting a dot-string changes nothing.
        assert_eq!(addr(r#""abc"@x.org"#), addr("abc@x.org"));
        assert_eq!(addr(r#""abc"@x.org"#).to_string(), "abc@x.org");
        // A quoted '@' and '>' are part of the local part.
        let p = ForwardPath::parse(r#"<"a>b@c"@x.org>"#).unwrap();
        assert_eq!(p.address().unwrap().local_part().as_str(), "a>b@c");
    }

    #[test]
    fn bad_local_parts() {
        for s in [
            "a..b@x.org",
            ".a@x.org",
            "a.@x.org",
            "a b@x.org",
            "\"a@x.org",
            "\"a\\\u{1}\"@x.org",
            "@x.org",
        ] {
            assert!(Address::parse(s).is_err(), "{s:?} must not parse");
        }
        assert_eq!(Address::parse("nobody"), Err(AddressError::MissingAt));
    }

    #[test]
    fn address_literals() {
        let a = addr("u@[192.0.2.1]");
        assert_eq!(
            a.domain().kind(),
            DomainKind::Ipv4("192.0.2.1".parse().unwrap())
        );
        let b = addr("u@[IPv6:2001:DB8::1]");
        assert_eq!(
            b.domain().kind(),
            DomainKind::Ipv6("2001:db8::1".parse().unwrap())
        );
        assert_eq!(b, addr("u@[ipv6:2001:db8:0::1]"));
        assert!(addr("u@[x-tag:abc]").domain().is_literal());
        for s in [
            "u@[192.0.2.256]",
            "u@[192.0.2]",
            "u@[IPv6:zz::1]",
            "u@[192.0.2.1",
            "u@[]",
        ] {
            assert!(Address::parse(s).is_err(), "{s:?} must not parse");
        }
    }

    #[test]
    fn domains() {
        for s in ["-a.org", "a-.org", "a..org", "a.org.", "a_b.org", ""] {
            assert!(Domain::parse(s).is_err(), "{s:?} must not parse");
        }
        let idn = Domain::parse("Bücher.example").unwrap();
        assert_eq!(idn.ascii(), "xn--bcher-kva.example");
        assert_eq!(idn, Domain::parse("XN--BCHER-KVA.example").unwrap());
        assert!(
            Domain::parse("mail.example.org")
                .unwrap()
                .is_within(&Domain::parse("Example.org").unwrap())
        );
        assert!(
            !Domain::parse("badexample.org")
                .unwrap()
                .is_within(&Domain::parse("example.org").unwrap())
        );
    }

    #[test]
    fn utf8_needs_smtputf8() {
        assert_eq!(
            Address::parse_with("jösé@example.org", ParseOptions::ascii()),
            Err(AddressError::Utf8NotAllowed)
        );
        assert_eq!(
            Address::parse_with("jose@exämple.org", ParseOptions::ascii()),
            Err(AddressError::Utf8NotAllowed)
        );
        let a = addr("用户@例子.广告");
        assert!(a.is_utf8());
        assert_eq!(a.to_string(), "用户@例子.广告");
    }

    #[test]
    fn size_limits() {
        let local = "a".repeat(64);
        assert!(Address::parse(&format!("{local}@x.org")).is_ok());
        assert_eq!(
            Address::parse(&format!("a{local}@x.org")),
            Err(AddressError::LocalPartTooLong(65))
        );
        let quoted = format!("\"{}\"@x.org", "a".repeat(63));
        assert_eq!(
            Address::parse(&quoted),
            Err(AddressError::LocalPartTooLong(65))
        );
        let label = "a".repeat(63);
        let long_domain = [label.as_str(); 4].join(".");
        assert_eq!(long_domain.len(), 255);
        assert!(Domain::parse(&long_domain).is_ok());
        assert_eq!(
            Domain::parse(&format!("a{long_domain}")),
            Err(AddressError::DomainTooLong(256))
        );
        // 64 + 1 + 255 + 2 > 256: a path can be too long with valid parts.
        let path = format!("<{local}@{long_domain}>");
        assert_eq!(
            ForwardPath::parse(&path),
            Err(AddressError::PathTooLong(path.len()))
        );
        let label = "b".repeat(64);
        assert!(
            Domain::parse(&format!("{label}.org")).is_err(),
            "label over 63 octets"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(ReversePath::parse("<>").unwrap(), ReversePath::Null);
        assert_eq!(ForwardPath::parse("<>"), Err(AddressError::NullNotAllowed));
        assert_eq!(
            ForwardPath::parse("<Postmaster>").unwrap(),
            ForwardPath::Postmaster
        );
        assert_eq!(
            ForwardPath::parse("<POSTMASTER>").unwrap(),
            ForwardPath::Postmaster
        );
        assert!(
            ForwardPath::parse("<postmaster@x.org>")
                .unwrap()
                .is_postmaster()
        );
        assert_eq!(
            ForwardPath::parse("a@x.org"),
            Err(AddressError::MissingBrackets)
        );
        assert_eq!(
            ForwardPath::parse("<a@x.org"),
            Err(AddressError::MissingBrackets)
        );
        assert_eq!(
            ForwardPath::parse("<a@x.org>x"),
            Err(AddressError::TrailingCharacters)
        );
        let (p, used) =
            ReversePath::parse_prefix("<a@x.org> SIZE=10", ParseOptions::default()).unwrap();
        assert_eq!((p.to_string().as_str(), used), ("<a@x.org>", 9));
    }

    #[test]
    fn source_routes_are_ignored_or_refused() {
        let p = ForwardPath::parse("<@relay.example,@b.example:user@other.example>").unwrap();
        assert_eq!(p.address().unwrap().domain().ascii(), "other.example");
        let strict = ParseOptions::default().with_source_route(false);
        assert_eq!(
            ForwardPath::parse_with("<@a.example:u@b.example>", strict),
            Err(AddressError::SourceRouteNotAllowed)
        );
        assert!(ForwardPath::parse("<@:u@b.example>").is_err());
    }

    #[test]
    fn errors_map_to_replies() {
        let r = AddressError::InvalidDomain.recipient_reply();
        assert_eq!(
            (r.code(), r.enhanced().map(|e| e.to_string())),
            (501, Some("5.1.3".into()))
        );
        let r = AddressError::Utf8NotAllowed.sender_reply();
        assert_eq!(
            (r.code(), r.enhanced().map(|e| e.to_string())),
            (553, Some("5.6.7".into()))
        );
    }

    #[test]
    fn serde_uses_the_strict_text_form() {
        let p = ReversePath::parse("<\"a b\"@[IPv6:2001:db8::1]>").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#""<\"a b\"@[IPv6:2001:db8::1]>""#);
        assert_eq!(serde_json::from_str::<ReversePath>(&json).unwrap(), p);
        assert_eq!(
            serde_json::from_str::<ForwardPath>(r#""<Postmaster>""#).unwrap(),
            ForwardPath::Postmaster
        );
        assert!(
            serde_json::from_str::<Address>(r#""a..b@x.org""#).is_err(),
            "stored text goes through the parser"
        );
    }

    #[test]
    fn one_pass_name_check_matches_label_split() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        for s in [
            "",
            ".",
            "a",
            "a.",
            ".a",
            "a..b",
            "a-b",
            "-a",
            "a-",
            "a.-b",
            "a-.b",
            "a--b.c",
            "x1.y2.z3",
            "a_b",
            "a b",
            "A.B-C.d",
            &long,
            &too_long,
            &format!("{long}.{too_long}"),
        ] {
            let split = s.split('.').all(is_ldh_label);
            assert_eq!(ldh_name_case(s).is_some(), split, "{s:?}");
        }
        // The comparison key is lower-case whether or not it had to be made.
        let upper = Domain::parse("Mail.Example.ORG").unwrap();
        assert_eq!(upper.ascii(), "mail.example.org");
        assert_eq!(upper.as_str(), "Mail.Example.ORG");
        assert_eq!(upper, Domain::parse("mail.example.org").unwrap());
        assert!(upper.is_within(&Domain::parse("EXAMPLE.org").unwrap()));
    }

    #[test]
    fn plain_path_agrees_with_the_general_parser() {
        let locals = [
            "a",
            "a.b",
            "A-b_c+d",
            "a..b",
            ".a",
            "a.",
            "",
            "\"q\"",
            "ü",
            &"x".repeat(64),
            &"x".repeat(65),
        ];
        let domains = [
            "x.org",
            "X.Org",
            "a-b.c",
            "-a.org",
            "a-.org",
            "a..org",
            "a.org.",
            "",
            "[192.0.2.1]",
            "ü.org",
            "a_b.org",
            &"d".repeat(63),
            &"d".repeat(64),
            &format!("{}.org", "e".repeat(252)),
        ];
        let ends = [">", "> SIZE=1", ">x", "", " >"];
        let mut plain = 0;
        for l in locals {
            for d in domains {
                for e in ends {
                    let s = format!("<{l}@{d}{e}");
                    let Some((fast, used)) = plain_path(&s) else {
                        continue;
                    };
                    plain += 1;
                    let (general, general_used) = general_path(&s, ParseOptions::ascii()).unwrap();
                    assert_eq!(used, general_used, "{s:?}");
                    assert_eq!(fast.as_str(), general.as_str(), "{s:?}");
                    assert_eq!(fast.to_string(), general.to_string(), "{s:?}");
                    assert_eq!(fast.domain().ascii(), general.domain().ascii(), "{s:?}");
                    let (f, g) = (fast.into_owned(), general.into_owned());
                    assert_eq!(f, g, "{s:?}");
                    assert_eq!(f.to_string(), g.to_string(), "{s:?}");
                    assert_eq!(f.domain().ascii(), g.domain().ascii(), "{s:?}");
                }
            }
        }
        assert!(
            plain > 20,
            "the fast path should take the plain cases ({plain})"
        );
    }

    proptest::proptest! {
        /// The word-at-a-time fast path takes exactly the plain paths the
        /// general parser accepts, with the same result, wherever the
        /// dots, hyphens and other atext fall relative to the words.
        #[test]
        fn plain_path_is_the_general_parser_on_plain_input(
            local in "[a-zA-Z0-9._+/=-]{0,70}",
            domain in "[a-zA-Z0-9.-]{0,70}",
            end in proptest::prop_oneof![
                proptest::strategy::Just(">"),
                proptest::strategy::Just("> SIZE=1"),
                proptest::strategy::Just(""),
                proptest::strategy::Just("x>"),
            ],
        ) {
            let s = format!("<{local}@{domain}{end}");
            let general = general_path(&s, ParseOptions::ascii());
            match plain_path(&s) {
                Some((fast, used)) => {
                    let (slow, slow_used) = general.expect("the general parser accepts it");
                    proptest::prop_assert_eq!(used, slow_used);
                    proptest::prop_assert_eq!(fast.as_str(), slow.as_str());
                    proptest::prop_assert_eq!(fast.domain().ascii(), slow.domain().ascii());
                    proptest::prop_assert_eq!(fast.into_owned(), slow.into_owned());
                }
                // Only a trailing dot on the domain is left to the general parser.
                None => proptest::prop_assert!(general.is_err() || domain.ends_with('.'), "{s:?}"),
            }
        }
    }

    #[test]
    fn trailing_dot_only_by_option() {
        assert_eq!(
            Address::parse("u@example.org."),
            Err(AddressError::InvalidDomain)
        );
        let lenient = ParseOptions::default().with_trailing_dot(true);
        let a = Address::parse_with("u@Example.ORG.", lenient).unwrap();
        assert_eq!(a, addr("u@example.org"));
        assert_eq!(a.to_string(), "u@Example.ORG");
        for bad in ["u@example.org..", "u@.", "u@[192.0.2.1]."] {
            assert!(Address::parse_with(bad, lenient).is_err(), "{bad:?}");
        }
        let p = ForwardPath::parse_with("<@relay.example.:u@b.example.>", lenient).unwrap();
        assert_eq!(p.address().unwrap().domain().ascii(), "b.example");
    }
}
