//! Fingerprinting one message: parse with `mail-parser`, normalise, hash.

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Encoding, Message, MessageParser, MessagePart, PartType};

use crate::checksum::Checksum;
use crate::fuzzy::{FuzzyBuilder, FuzzyFingerprint};
use crate::normalize::{Normalization, latin1};

/// Nested `message/rfc822` parts deeper than this are not descended into
/// (their bytes still count in the raw-body checksum).
const MAX_NESTING: usize = 8;

/// Fewer words than this (and no attachment) and a message's body is not
/// counted for bulk; see [`Fingerprints::counting_keys`].
pub const MIN_COUNTED_WORDS: usize = 8;

/// Which header-derived checksums to compute (as DCC does); all off by default
/// because headers are easy for a sender to vary and cheap to forge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderChecksums {
    /// The first `From:` address, lower-cased.
    pub from: bool,
    /// The `Subject:`, normalised like body text.
    pub subject: bool,
    /// The *shape* of the `Message-ID:`: its local part with each run of
    /// digits, lower-case letters and upper-case letters replaced by a class
    /// letter (`9`, `a`, `A`), and its domain lower-cased. Bulk tools generate
    /// ids from one template, so copies share a shape.
    pub message_id: bool,
}

impl HeaderChecksums {
    /// All header checksums on.
    pub fn all() -> Self {
        HeaderChecksums {
            from: true,
            subject: true,
            message_id: true,
        }
    }
}

/// What [`Fingerprinter`] computes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FingerprintOptions {
    /// The normalisation steps for text.
    pub normalization: Normalization,
    /// Compute the fuzzy (MinHash) fingerprint.
    pub fuzzy: bool,
    /// Header-derived checksums.
    pub headers: HeaderChecksums,
    /// Also checksum the raw body of messages that parse (it is always
    /// computed for those that do not). Off by default: it costs a pass over
    /// every byte and changes with any re-encoding.
    pub raw_body: bool,
}

impl Default for FingerprintOptions {
    /// Default normalisation, fuzzy on, header and parsed raw-body checksums off.
    fn default() -> Self {
        FingerprintOptions {
            normalization: Normalization::default(),
            fuzzy: true,
            headers: HeaderChecksums::default(),
            raw_body: false,
        }
    }
}

/// What a checksummed part was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartKind {
    /// A text/* part other than HTML, normalised.
    Text,
    /// A text/html part, normalised (reduced to text when that step is on).
    Html,
    /// Any other part: its decoded content, not normalised (so the checksum
    /// equals `b3sum` of the attached file).
    Attachment,
}

/// The checksum of one MIME part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PartChecksum {
    /// What the part was.
    pub kind: PartKind,
    /// blake3 of the normalised text or the decoded attachment.
    pub checksum: Checksum,
}

/// A header field a checksum was derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderField {
    /// `From:` address.
    From,
    /// `Subject:`.
    Subject,
    /// `Message-ID:` shape.
    MessageId,
}

/// Every checksum of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fingerprints {
    /// Whether `mail-parser` could parse the message. When it could not, only
    /// [`raw_body`](Self::raw_body), [`body`](Self::body) (over the raw body read
    /// as text) and [`fuzzy`](Self::fuzzy) are set.
    pub parsed: bool,
    /// blake3 of the bytes after the header block (the whole input when there
    /// is no blank line), exactly as received. Always set when the message
    /// could not be parsed; for parsed messages only with
    /// [`FingerprintOptions::raw_body`].
    pub raw_body: Option<Checksum>,
    /// The whole-body checksum that survives re-encoding and per-recipient
    /// noise: blake3 over the sequence of part checksums (normalised text
    /// parts and decoded attachments), each tagged with its kind, in MIME order.
    pub body: Checksum,
    /// One checksum per text part and attachment, in MIME order.
    pub parts: Vec<PartChecksum>,
    /// Header-derived checksums that were asked for and present.
    pub headers: Vec<(HeaderField, Checksum)>,
    /// The MinHash signature of all normalised text, when asked for and the
    /// message has words.
    pub fuzzy: Option<FuzzyFingerprint>,
    /// Words in the normalised text of all text parts.
    pub words: usize,
    /// The `List-Id:` identifier (RFC 2919), lower-case without angle
    /// brackets, for the solicited-bulk allowlist.
    pub list_id: Option<String>,
}

impl Fingerprints {
    /// Every exact checksum: body, raw body, parts and headers.
    pub fn exact(&self) -> impl Iterator<Item = Checksum> + '_ {
        std::iter::once(self.body)
            .chain(self.raw_body)
            .chain(self.parts.iter().map(|p| p.checksum))
            .chain(self.headers.iter().map(|h| h.1))
    }

    /// The keys bulk counting records recipients under: the normalised body,
    /// each header checksum and the fuzzy fingerprint's LSH band keys. The
    /// bulk count of a message is the largest count among them.
    ///
    /// A message with fewer than [`MIN_COUNTED_WORDS`] words of text and no
    /// attachment has no body or fuzzy key: one-line replies ("Thanks!") are
    /// sent by many people to many people and are not bulk.
    pub fn counting_keys(&self) -> Vec<Checksum> {
        let has_attachment = self.parts.iter().any(|p| p.kind == PartKind::Attachment);
        let substantial = self.words >= MIN_COUNTED_WORDS || has_attachment;
        let mut keys = Vec::with_capacity(1 + self.headers.len() + crate::fuzzy::BANDS);
        if substantial {
            keys.push(self.body);
        }
        keys.extend(self.headers.iter().map(|h| h.1));
        if let (true, Some(f)) = (self.words >= MIN_COUNTED_WORDS, &self.fuzzy) {
            keys.extend(f.band_checksums());
        }
        keys
    }
}

/// Computes [`Fingerprints`]; reuse one for many messages (it holds the
/// configured parser). Thread-safe and cheap to share.
#[derive(Debug)]
pub struct Fingerprinter {
    options: FingerprintOptions,
    parser: MessageParser,
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Fingerprinter::new(FingerprintOptions::default())
    }
}

struct Walk<'a> {
    options: &'a FingerprintOptions,
    body: blake3::Hasher,
    parts: Vec<PartChecksum>,
    fuzzy: Option<FuzzyBuilder>,
    /// Normalised text of the current part; reused across parts.
    text: Vec<u8>,
    /// Decoded link values, or HTML reduced to text when the one-pass
    /// reading gives up; reused across parts.
    html: String,
    words: usize,
}

impl Fingerprinter {
    /// A fingerprinter with these options.
    pub fn new(options: FingerprintOptions) -> Self {
        Fingerprinter {
            options,
            parser: MessageParser::default(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &FingerprintOptions {
        &self.options
    }

    /// Fingerprint a whole message (headers and body). Never panics; a
    /// message `mail-parser` cannot parse gets raw-body checksums.
    pub fn fingerprint(&self, message: &[u8]) -> Fingerprints {
        let mut walk = Walk {
            options: &self.options,
            body: blake3::Hasher::new(),
            parts: Vec::new(),
            fuzzy: self.options.fuzzy.then(FuzzyBuilder::default),
            text: Vec::new(),
            html: String::new(),
            words: 0,
        };
        match self.parser.parse(message) {
            Some(parsed) => {
                walk.message(&parsed, 0);
                let headers = self.header_checksums(&parsed);
                Fingerprints {
                    parsed: true,
                    raw_body: self
                        .options
                        .raw_body
                        .then(|| Checksum::of(raw_body_bytes(message))),
                    body: Checksum(*walk.body.finalize().as_bytes()),
                    parts: walk.parts,
                    headers,
                    fuzzy: walk.fuzzy.and_then(FuzzyBuilder::finish),
                    words: walk.words,
                    list_id: list_id(&parsed),
                }
            }
            None => {
                let text = if self.options.normalization.charset_to_utf8 {
                    String::from_utf8_lossy(raw_body_bytes(message)).into_owned()
                } else {
                    latin1(raw_body_bytes(message))
                };
                walk.text_part(PartKind::Text, &text);
                Fingerprints {
                    parsed: false,
                    raw_body: Some(Checksum::of(raw_body_bytes(message))),
                    body: Checksum(*walk.body.finalize().as_bytes()),
                    parts: Vec::new(),
                    headers: Vec::new(),
                    fuzzy: walk.fuzzy.and_then(FuzzyBuilder::finish),
                    words: walk.words,
                    list_id: None,
                }
            }
        }
    }

    fn header_checksums(&self, m: &Message<'_>) -> Vec<(HeaderField, Checksum)> {
        let h = &self.options.headers;
        let mut out = Vec::new();
        if h.from
            && let Some(addr) = m.from().and_then(|a| a.first()).and_then(|a| a.address())
        {
            {
                out.push((
                    HeaderField::From,
                    Checksum::derived(
                        "portcullis-fingerprint 2026 header from v1",
                        addr.trim().to_lowercase().as_bytes(),
                    ),
                ));
            }
        }
        if h.subject
            && let Some(subject) = m.subject()
        {
            {
                let norm = self.options.normalization.normalize(subject);
                out.push((
                    HeaderField::Subject,
                    Checksum::derived(
                        "portcullis-fingerprint 2026 header subject v1",
                        norm.as_bytes(),
                    ),
                ));
            }
        }
        if h.message_id
            && let Some(id) = m.message_id()
        {
            {
                out.push((
                    HeaderField::MessageId,
                    Checksum::derived(
                        "portcullis-fingerprint 2026 header message-id v1",
                        message_id_shape(id).as_bytes(),
                    ),
                ));
            }
        }
        out
    }
}

impl Walk<'_> {
    fn message(&mut self, m: &Message<'_>, depth: usize) {
        let raw = m.raw_message();
        for part in &m.parts {
            match &part.body {
                PartType::Text(text) => self.text_from(PartKind::Text, text, part, raw),
                PartType::Html(html) => self.text_from(PartKind::Html, html, part, raw),
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    let content: &[u8] = if self.options.normalization.decode_transfer {
                        bytes
                    } else {
                        part_raw(part, raw)
                    };
                    self.attachment(Checksum::of(content));
                }
                PartType::Message(nested) if depth < MAX_NESTING => self.message(nested, depth + 1),
                PartType::Message(_) | PartType::Multipart(_) => {}
            }
        }
    }

    fn text_from(&mut self, kind: PartKind, decoded: &str, part: &MessagePart<'_>, raw: &[u8]) {
        let n = &self.options.normalization;
        if n.decode_transfer && n.charset_to_utf8 {
            return self.text_part(kind, decoded);
        }
        let encoded = part_raw(part, raw);
        let bytes = if n.decode_transfer {
            match part.encoding {
                Encoding::QuotedPrintable => quoted_printable_decode(encoded),
                Encoding::Base64 => base64_decode(encoded),
                Encoding::None => None,
            }
        } else {
            None
        };
        let bytes = bytes.as_deref().unwrap_or(encoded);
        let text = if n.charset_to_utf8 {
            String::from_utf8_lossy(bytes).into_owned()
        } else {
            latin1(bytes)
        };
        self.text_part(kind, &text);
    }

    fn text_part(&mut self, kind: PartKind, text: &str) {
        let n = &self.options.normalization;
        self.text.clear();
        self.text.reserve(text.len());
        self.words += if kind == PartKind::Html && n.html_to_text {
            n.normalize_html_bytes(text, &mut self.text, &mut self.html)
        } else {
            n.normalize_bytes(text, &mut self.text)
        };
        let checksum = Checksum::of(&self.text);
        self.body.update(&[0xFF]);
        self.body.update(checksum.as_bytes());
        if let Some(fuzzy) = &mut self.fuzzy {
            fuzzy.add_bytes(&self.text);
        }
        self.parts.push(PartChecksum { kind, checksum });
    }

    fn attachment(&mut self, checksum: Checksum) {
        self.body.update(&[0xFE]);
        self.body.update(checksum.as_bytes());
        self.parts.push(PartChecksum {
            kind: PartKind::Attachment,
            checksum,
        });
    }
}

fn part_raw<'a>(part: &MessagePart<'_>, raw: &'a [u8]) -> &'a [u8] {
    raw.get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or(&[])
}

/// The body: everything after the first empty line, or all of it.
fn raw_body_bytes(message: &[u8]) -> &[u8] {
    let mut i = 0;
    while let Some(p) = message[i..].iter().position(|&c| c == b'\n') {
        let nl = i + p;
        let rest = &message[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return &rest[2..];
        }
        if rest.starts_with(b"\n") {
            return &rest[1..];
        }
        i = nl + 1;
    }
    message
}

fn list_id(m: &Message<'_>) -> Option<String> {
    let raw = m.header_raw("List-Id")?;
    // RFC 2919 §3: an optional phrase, then the id in angle brackets.
    let id = match (raw.rfind('<'), raw.rfind('>')) {
        (Some(a), Some(b)) if a < b => &raw[a + 1..b],
        _ => raw,
    };
    let id = id.trim().to_ascii_lowercase();
    (!id.is_empty()).then_some(id)
}

/// The shape of a Message-ID: see [`HeaderChecksums::message_id`].
pub(crate) fn message_id_shape(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = id.rsplit_once('@').unwrap_or((id, ""));
    let mut out = String::with_capacity(id.len());
    let mut last = None;
    for c in local.chars() {
        let class = if c.is_ascii_digit() {
            '9'
        } else if c.is_lowercase() {
            'a'
        } else if c.is_uppercase() {
            'A'
        } else {
            c
        };
        if Some(class) != last || !matches!(class, '9' | 'a' | 'A') {
            out.push(class);
        }
        last = Some(class);
    }
    out.push('@');
    out.push_str(&domain.to_lowercase());
    out
}
