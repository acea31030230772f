//! Text normalisation: the steps that remove what bulk senders vary between
//! copies of one message. Each step is a switch in [`Normalization`].
//!
//! The steps, in the order they apply to a text part:
//!
//! 1. **Transfer decoding** ([`Normalization::decode_transfer`]): quoted-printable
//!    and base64 (RFC 2045 §6.7, §6.8) are undone, so one text sent in either
//!    encoding checksums the same. Off: the part's encoded bytes are used as they
//!    travelled.
//! 2. **Charset to UTF-8** ([`Normalization::charset_to_utf8`]): the part's
//!    declared charset (RFC 2046 §4.1.2) is converted to UTF-8, so one text in
//!    ISO-8859-1 and in UTF-8 checksums the same. Off: each octet is taken as one
//!    character (Latin-1), so the checksum follows the bytes sent.
//! 3. **HTML to text** ([`Normalization::html_to_text`]): tags, comments, `<head>`,
//!    `<style>` and `<script>` are dropped, character references decoded, and
//!    link targets (`href`/`src`) kept as words, so a text/plain and a text/html
//!    rendering of one spam share most of their words.
//! 4. **Tracking query strings** ([`Normalization::strip_url_queries`]): in
//!    `http://` and `https://` URLs everything from `?` or `#` on is dropped;
//!    per-recipient tracking lives there.
//! 5. **Hex tokens** ([`Normalization::hex_token_min`]): a word made only of hex
//!    digits, with at least one digit and one letter, at least this long,
//!    becomes `#` (message ids, tracking hashes).
//! 6. **Long digit runs** ([`Normalization::digit_run_min`]): runs of at least this
//!    many digits become `#` (order numbers, phone numbers, years, amounts).
//! 7. **Case folding** ([`Normalization::fold_case`]): Unicode lower case.
//! 8. **Whitespace folding** ([`Normalization::fold_whitespace`]): every run of
//!    white space becomes one space and the ends are trimmed, so re-wrapped lines
//!    (format=flowed, QP soft breaks, HTML layout) do not matter.

/// Which normalisation steps run. See the [module docs](self) for each step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Normalization {
    /// Undo quoted-printable and base64 before hashing text parts.
    pub decode_transfer: bool,
    /// Convert text parts from their declared charset to UTF-8.
    pub charset_to_utf8: bool,
    /// Reduce text/html parts to their text.
    pub html_to_text: bool,
    /// Fold case (Unicode lower case).
    pub fold_case: bool,
    /// Collapse white space runs to one space and trim.
    pub fold_whitespace: bool,
    /// Replace digit runs at least this long with `#`; `0` turns the step off.
    pub digit_run_min: usize,
    /// Replace hex tokens at least this long with `#`; `0` turns the step off.
    pub hex_token_min: usize,
    /// Drop the query string and fragment of `http(s)://` URLs.
    pub strip_url_queries: bool,
}

impl Default for Normalization {
    /// Every step on; digit runs of 4 or more (years, amounts, order
    /// numbers), hex tokens of 8 or more.
    fn default() -> Self {
        Normalization {
            decode_transfer: true,
            charset_to_utf8: true,
            html_to_text: true,
            fold_case: true,
            fold_whitespace: true,
            digit_run_min: 4,
            hex_token_min: 8,
            strip_url_queries: true,
        }
    }
}

impl Normalization {
    /// Every step off: text is hashed as sent (after MIME structure parsing).
    pub fn none() -> Self {
        Normalization {
            decode_transfer: false,
            charset_to_utf8: false,
            html_to_text: false,
            fold_case: false,
            fold_whitespace: false,
            digit_run_min: 0,
            hex_token_min: 0,
            strip_url_queries: false,
        }
    }

    /// Normalise `input` (already decoded text), appending to `out`; returns
    /// the number of words (runs of letters and digits; a URL is one word).
    ///
    /// Runs steps 4–8 of the [module docs](self); the caller has done 1–3.
    pub fn normalize_into(&self, input: &str, out: &mut String) -> usize {
        let mut bytes = std::mem::take(out).into_bytes();
        let words = self.normalize_bytes(input, &mut bytes);
        // Always UTF-8: only whole characters of `input`, `#`, spaces and
        // lower-cased characters are written.
        *out = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        words
    }

    /// [`normalize_into`](Self::normalize_into) writing UTF-8 bytes, for
    /// callers that hash the result (no validation pass).
    pub(crate) fn normalize_bytes(&self, input: &str, out: &mut Vec<u8>) -> usize {
        // One pass. Text that needs no change is not copied byte by byte but
        // in spans (`input[copied..i]`) when something must change; ASCII
        // case is folded over the output at the end, eight bytes at a time.
        // Runs of plain text (ASCII words of letters, punctuation, single
        // spaces) are skipped eight bytes at a time (`quiet_run`); the token
        // loop below handles the rest with one table look-up per byte.
        let b = input.as_bytes();
        let start_len = out.len();
        let mut words = 0;
        let mut copied = 0;
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            let k = CLASS[usize::from(c)];
            if k & ALNUM != 0 {
                // URLs: keep scheme, host and path; drop what tracks the recipient.
                if self.strip_url_queries
                    && (c | 0x20) == b'h'
                    && let Some(scheme_len) = url_scheme_len(&b[i..])
                {
                    words += 1;
                    let stop = url_scan(b, i + scheme_len, &URL_CUT_OR_END);
                    if matches!(b.get(stop), Some(b'?' | b'#')) {
                        let end = url_scan(b, stop, &URL_END);
                        out.extend_from_slice(&b[copied..stop]);
                        copied = end;
                        i = end;
                    } else {
                        i = stop;
                    }
                    continue;
                }
                if k & DIGIT == 0 {
                    let (end, n) = self.quiet_run(b, i);
                    if end > i {
                        words += n;
                        i = end;
                        continue;
                    }
                } else {
                    // A short number ("3", "30") on its own needs no change.
                    let mut j = i + 1;
                    while b.get(j).is_some_and(u8::is_ascii_digit) {
                        j += 1;
                    }
                    // A number on its own: kept when short, else masked
                    // here (what `word` would do, without its checks).
                    if b.get(j)
                        .is_none_or(|&d| CLASS[usize::from(d)] & (ALNUM | HIGH) == 0)
                    {
                        if self.digit_run_min > 0 && j - i >= self.digit_run_min {
                            out.extend_from_slice(&b[copied..i]);
                            out.push(b'#');
                            copied = j;
                        }
                        words += 1;
                        i = j;
                        continue;
                    }
                }
                words += 1;
                let s = i;
                i += ascii_letter_run(b, i);
                // Only ASCII letters: nothing to mask, case folds at the end.
                if b.get(i)
                    .is_some_and(|&d| CLASS[usize::from(d)] & (ALNUM | HIGH) != 0)
                {
                    i = self.word(input, s, &mut copied, out);
                }
                continue;
            }
            if k & WS != 0 {
                if !self.fold_whitespace {
                    i += 1;
                    continue;
                }
                // One space between text is already normal.
                let single = c == b' '
                    && b.get(i + 1)
                        .is_some_and(|&d| CLASS[usize::from(d)] & (WS | HIGH) == 0)
                    && (copied < i || out.len() > start_len);
                i = if single {
                    i + 1
                } else {
                    fold_space(input, i, start_len, &mut copied, out)
                };
                continue;
            }
            if k & HIGH == 0 {
                i += 1; // ASCII punctuation: kept.
                continue;
            }
            match input.get(i..).and_then(|r| r.chars().next()) {
                Some(ch) if ch.is_whitespace() => {
                    i = if self.fold_whitespace {
                        fold_space(input, i, start_len, &mut copied, out)
                    } else {
                        i + ch.len_utf8()
                    };
                }
                Some(ch) if ch.is_alphanumeric() => {
                    words += 1;
                    i = self.word(input, i, &mut copied, out);
                }
                Some(ch) => i += ch.len_utf8(),
                None => i += 1,
            }
        }
        out.extend_from_slice(&b[copied.min(b.len())..]);
        if self.fold_case {
            ascii_lowercase(&mut out[start_len..]);
        }
        words
    }

    /// From `start`, an ASCII letter starting a word after text was written,
    /// skip eight bytes at a time what needs no change: ASCII letters,
    /// ASCII punctuation other than `:` and single spaces followed by text.
    /// Stops before a digit, control character, non-ASCII byte, doubled or
    /// final space, or `:` (a URL's scheme ends there); a word that turns
    /// out to hold a digit, a `:` or a non-ASCII letter is left whole to the
    /// caller. Returns where to go on (never inside a word) and the words
    /// skipped.
    #[inline]
    fn quiet_run(&self, b: &[u8], start: usize) -> (usize, usize) {
        let rest = b.get(start..).unwrap_or_default();
        let (len, words) = if self.fold_whitespace {
            quiet_scan::<true>(rest)
        } else {
            quiet_scan::<false>(rest)
        };
        let end = start + len;
        // Stopped before the last whole chunk: at a stop byte, which ends the
        // word before it unless it can continue it.
        if len < rest.len() & !7 {
            let continues = b
                .get(end)
                .is_some_and(|&c| c >= 0x80 || c.is_ascii_digit() || c == b':');
            if !continues {
                return (end, words);
            }
        }
        back_to_word_start(b, start, end, words)
    }

    /// The word starting at `s` when it may need work (digits, non-ASCII):
    /// find its end (returned), and mask or fold it into `out` if needed.
    fn word(&self, input: &str, s: usize, copied: &mut usize, out: &mut Vec<u8>) -> usize {
        let b = input.as_bytes();
        let mut i = s;
        // The classes seen, OR-ed: one table load per byte.
        let mut seen = 0u8;
        loop {
            while let Some(&d) = b.get(i) {
                let k = CLASS[usize::from(d)];
                if k & ALNUM == 0 {
                    break;
                }
                seen |= k;
                i += 1;
            }
            // Non-ASCII continues the word only through a letter or digit.
            if b.get(i).is_none_or(|&d| d < 0x80) {
                break;
            }
            match input.get(i..).and_then(|r| r.chars().next()) {
                Some(ch) if ch.is_alphanumeric() => {
                    seen |= OTHER_LETTER | NON_ASCII;
                    i += ch.len_utf8();
                }
                _ => break,
            }
        }
        let (digit, hex_letter) = (seen & DIGIT != 0, seen & HEX_LETTER != 0);
        let (non_hex, non_ascii) = (seen & OTHER_LETTER != 0, seen & NON_ASCII != 0);
        let word = &input[s..i];
        let hex = self.hex_token_min > 0
            && word.len() >= self.hex_token_min
            && digit
            && hex_letter
            && !non_hex;
        let masked_digits =
            digit && self.digit_run_min > 0 && has_run(word.as_bytes(), self.digit_run_min);
        if hex || masked_digits || (non_ascii && self.fold_case) {
            out.extend_from_slice(&b[*copied..s]);
            if hex {
                out.push(b'#');
            } else {
                self.push_word(word, out);
            }
            *copied = i;
        }
        i
    }

    /// Normalise `input` into a new string.
    pub fn normalize(&self, input: &str) -> String {
        let mut out = String::with_capacity(input.len());
        self.normalize_into(input, &mut out);
        out
    }

    /// Push `s`, Unicode-lower-cased when folding (ASCII is folded later, in bulk).
    fn push_cased(&self, s: &str, out: &mut Vec<u8>) {
        if self.fold_case && !s.is_ascii() {
            for c in s.chars().flat_map(char::to_lowercase) {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        } else {
            out.extend_from_slice(s.as_bytes());
        }
    }

    fn push_word(&self, word: &str, out: &mut Vec<u8>) {
        let w = word.as_bytes();
        if self.digit_run_min == 0 || !w.iter().any(u8::is_ascii_digit) {
            self.push_cased(word, out);
            return;
        }
        // Mask each long run of ASCII digits inside the word.
        let mut last = 0;
        let mut i = 0;
        while i < w.len() {
            if w[i].is_ascii_digit() {
                let run_end = i + w[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                if run_end - i >= self.digit_run_min {
                    self.push_cased(&word[last..i], out);
                    out.push(b'#');
                    last = run_end;
                }
                i = run_end;
            } else {
                i += 1;
            }
        }
        self.push_cased(&word[last..], out);
    }
}

const WS: u8 = 1;
const ALNUM: u8 = 2;
const DIGIT: u8 = 4;
const HEX_LETTER: u8 = 8;
/// A letter that is not a hex digit (ASCII g–z, or any non-ASCII letter).
const OTHER_LETTER: u8 = 16;
/// Seen in a word: a non-ASCII letter or digit.
const NON_ASCII: u8 = 32;
/// A byte of a non-ASCII character: the character decides.
const HIGH: u8 = 64;

/// Character classes of bytes.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b >= 0x80 {
            HIGH
        } else if b.is_ascii_whitespace() || b == 0x0b {
            WS
        } else if b.is_ascii_digit() {
            ALNUM | DIGIT
        } else if matches!(b, b'a'..=b'f' | b'A'..=b'F') {
            ALNUM | HEX_LETTER
        } else if b.is_ascii_alphabetic() {
            ALNUM | OTHER_LETTER
        } else {
            0
        };
        c += 1;
    }
    t
};

/// One in every byte of a `u64`.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The top bit of every byte of a `u64`.
const TOP: u64 = 0x8080_8080_8080_8080;

/// `b` in every byte of a `u64`.
const fn splat(b: u8) -> u64 {
    b as u64 * ONES
}

/// How many bytes of `mask` (only top bits set) are set: summed into the top
/// byte by one multiply (no `popcnt` needed).
#[inline]
fn count_top_bits(mask: u64) -> usize {
    ((mask >> 7).wrapping_mul(ONES) >> 56) as usize
}

/// The length of the run of ASCII letters at `start`, eight bytes at a time.
#[inline]
fn ascii_letter_run(b: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let v = u64::from_le_bytes(chunk);
        // Per byte, without carries between bytes: lower-case ASCII (x <= 0x7f),
        // then the top bit of x + 0x1f says x >= 'a', of x + 0x05 x > 'z'.
        let x = (v | splat(0x20)) & !TOP;
        let letters = (x + splat(0x1f)) & !(x + splat(0x05)) & !v & TOP;
        let others = !letters & TOP;
        if others != 0 {
            return i - start + (others.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_alphabetic) {
        i += 1;
    }
    i - start
}

/// The quiet prefix of `b` (see [`Normalization::quiet_run`]), eight bytes
/// at a time: returns the index of the first stop byte, or the end of the
/// last whole chunk when there is none, and the words that start before it.
/// Out of line and with few live values, so the loop keeps its constants in
/// registers.
#[inline(never)]
fn quiet_scan<const FOLD_WS: bool>(b: &[u8]) -> (usize, usize) {
    let (chunks, _) = b.as_chunks::<8>();
    let mut words = 0;
    // Whether the byte before the chunk was a letter (bit 7 set).
    let mut carry = 0u64;
    let mut done = 0;
    // Word starts are summed per byte lane (at most one per chunk), so a
    // block is at most 255 chunks.
    for block in chunks.chunks(255) {
        let mut lanes = 0u64;
        for chunk in block {
            // Per byte, the top bit of v + (0x80 - n) says v >= n and that of
            // (0x80 + n) - v says v <= n. A byte of 0x80 or more can carry
            // into the bytes after it, but it is a stop itself, and only the
            // bytes before the first stop are read: they are ASCII and
            // receive no carry, so their bits are exact.
            let v = u64::from_le_bytes(*chunk);
            let high = v & TOP;
            let x = v | splat(0x20);
            let letter = x.wrapping_add(splat(0x1f)) & splat(0xfa).wrapping_sub(x) & TOP;
            // '0'..='9' and ':' (and the control bytes 0x10..=0x1a, stops anyway).
            let digit_colon = x.wrapping_add(splat(0x50)) & splat(0xba).wrapping_sub(x);
            let up_to_space = splat(0xa0).wrapping_sub(v);
            let ctrl = up_to_space.wrapping_sub(ONES);
            let mut bad = ctrl | digit_colon;
            if FOLD_WS {
                // A space must be followed, in this chunk, by text.
                let space = up_to_space & !ctrl;
                bad |= space & (((up_to_space | high) >> 8) | (1 << 63));
            }
            let bad = (bad & TOP) | high;
            let starts = letter & !(letter << 8 | carry);
            if bad != 0 {
                let at = bad.trailing_zeros() as usize / 8;
                let below = (1u64 << (8 * at)) - 1;
                words += lane_sum(lanes) + count_top_bits(starts & below);
                return (done + at, words);
            }
            lanes += starts >> 7;
            carry = letter >> 56;
            done += 8;
        }
        words += lane_sum(lanes);
    }
    (done, words)
}

/// The sum of the eight byte lanes of `lanes`: pairs first into 16-bit
/// lanes (the sum can exceed a byte), then one multiply.
#[inline]
fn lane_sum(lanes: u64) -> usize {
    let pairs = (lanes & 0x00ff_00ff_00ff_00ff) + ((lanes >> 8) & 0x00ff_00ff_00ff_00ff);
    (pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48) as usize
}

/// `end` as a place to go on from: if it is inside a word (after a letter),
/// move back to the word's start (not before `start`) and uncount it.
fn back_to_word_start(b: &[u8], start: usize, end: usize, words: usize) -> (usize, usize) {
    if end == start || !b[end - 1].is_ascii_alphabetic() {
        return (end, words);
    }
    let mut s = end - 1;
    while s > start && b[s - 1].is_ascii_alphabetic() {
        s -= 1;
    }
    (s, words.saturating_sub(1))
}

/// ASCII upper case to lower case, eight bytes at a time.
fn ascii_lowercase(b: &mut [u8]) {
    let mut chunks = b.chunks_exact_mut(8);
    for c in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(&*c) else {
            continue;
        };
        let v = u64::from_le_bytes(bytes);
        let lo = v & !TOP;
        // Top bit per byte: 'A' <= byte <= 'Z' (and ASCII).
        let upper = (lo + splat(0x3f)) & !(lo + splat(0x25)) & !v & TOP;
        // Unconditional store: capitals come at random, a branch would miss.
        c.copy_from_slice(&(v | (upper >> 2)).to_le_bytes());
    }
    chunks.into_remainder().make_ascii_lowercase();
}

/// Fold the white-space run at `i` (fold_whitespace on): flush the pending
/// span, write one space unless the run starts or ends the text. Returns the
/// end of the run.
fn fold_space(
    input: &str,
    i: usize,
    start_len: usize,
    copied: &mut usize,
    out: &mut Vec<u8>,
) -> usize {
    let b = input.as_bytes();
    let mut j = i;
    loop {
        while b.get(j).is_some_and(|&c| CLASS[usize::from(c)] == WS) {
            j += 1;
        }
        match b.get(j) {
            Some(&c) if c >= 0x80 => match ws_width(input, j) {
                Some(w) => j += w,
                None => break,
            },
            _ => break,
        }
    }
    out.extend_from_slice(&b[*copied..i]);
    // Something always follows a run that does not end the text.
    if j < b.len() && out.len() > start_len {
        out.push(b' ');
    }
    *copied = j;
    j
}

/// Width of the white-space character at `i`, if it is one.
fn ws_width(s: &str, i: usize) -> Option<usize> {
    let c = *s.as_bytes().get(i)?;
    if c < 0x80 {
        return (CLASS[usize::from(c)] == WS).then_some(1);
    }
    s.get(i..)?
        .chars()
        .next()
        .filter(|ch| ch.is_whitespace())
        .map(char::len_utf8)
}

/// Whether `w` has a run of at least `min` ASCII digits.
fn has_run(w: &[u8], min: usize) -> bool {
    let mut run = 0;
    for &c in w {
        if c.is_ascii_digit() {
            run += 1;
            if run >= min {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// `http://` or `https://` (any case) at the start: its length.
fn url_scheme_len(b: &[u8]) -> Option<usize> {
    let starts = |p: &[u8]| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p);
    if starts(b"https://") {
        Some(8)
    } else if starts(b"http://") {
        Some(7)
    } else {
        None
    }
}

/// A URL ends at white space, quotes, angle brackets or a non-ASCII byte.
const URL_END: [bool; 256] = url_table(false);
/// [`URL_END`] and the start of a query string or fragment (`?`, `#`).
const URL_CUT_OR_END: [bool; 256] = url_table(true);

const fn url_table(cut: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_whitespace()
            || matches!(b, b'"' | b'\'' | b'<' | b'>')
            || b >= 0x80
            || (cut && matches!(b, b'?' | b'#'));
        c += 1;
    }
    t
}

/// The first byte from `from` that `stop` (one of the URL tables) marks, or
/// the end. Eight bytes at a time: candidates (bytes up to 0x20, non-ASCII,
/// `"#'<=>?`) are found per word and checked against the table.
fn url_scan(b: &[u8], from: usize, stop: &[bool; 256]) -> usize {
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let v = u64::from_le_bytes(chunk);
        let lo = v & !TOP;
        let ascii = !v & TOP;
        // Top bit of lo + (0x80 - n) says lo >= n.
        let range =
            |from: u8, to: u8| (lo + splat(0x80 - from)) & !(lo + splat(0x80 - to - 1)) & ascii;
        let mut candidates = (v & TOP)
            | (!(lo + splat(0x5f)) & ascii)
            | range(b'"', b'#')
            | range(b'\'', b'\'')
            | range(b'<', b'?');
        while candidates != 0 {
            let at = i + candidates.trailing_zeros() as usize / 8;
            if stop[usize::from(b[at])] {
                return at;
            }
            candidates &= candidates - 1;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| !stop[usize::from(c)]) {
        i += 1;
    }
    i
}

/// Octets as Latin-1 characters: what "charset conversion off" reads, so the
/// bytes sent decide the checksum.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// HTML reduced to text: tags, comments, `<head>`, `<style>`, `<script>` and
/// `<template>` contents dropped; `href` and `src` values kept as text; common
/// character references decoded. Never fails: malformed markup is read as far as
/// it makes sense.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    html_to_text_into(html, &mut out);
    out
}

/// [`html_to_text`], appending to `out` (so one buffer serves many parts).
pub fn html_to_text_into(html: &str, out: &mut String) {
    let b = html.as_bytes();
    let mut i = 0;
    let mut skip_until: Option<&'static str> = None;
    while i < b.len() {
        if b[i] == b'<' {
            if b[i..].starts_with(b"<!--") {
                i = find(b, i + 4, b"-->").map_or(b.len(), |e| e + 3);
                continue;
            }
            let end = tag_end(b, i + 1);
            let tag = html.get(i + 1..end.min(b.len())).unwrap_or("");
            i = (end + 1).min(b.len());
            let (closing, name) = match tag.strip_prefix('/') {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            let name_len = name
                .bytes()
                .position(|c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
                .unwrap_or(name.len());
            let tag_name = &name[..name_len];
            if let Some(until) = skip_until {
                // An unclosed <head> ends where <body> starts, so a missing
                // </head> cannot hide the whole message.
                let body_starts =
                    until == "head" && !closing && tag_name.eq_ignore_ascii_case("body");
                if body_starts {
                    skip_until = None;
                } else {
                    if closing && tag_name.eq_ignore_ascii_case(until) {
                        skip_until = None;
                    }
                    continue;
                }
            }
            if !closing {
                if (4..=8).contains(&tag_name.len()) {
                    for skipped in ["head", "style", "script", "template"] {
                        if tag_name.eq_ignore_ascii_case(skipped) {
                            skip_until = Some(skipped);
                        }
                    }
                    if skip_until.is_some() {
                        continue;
                    }
                }
                let (href, src) = link_attributes(name);
                for v in [href, src].into_iter().flatten() {
                    out.push(' ');
                    push_decoded(v, out);
                    out.push(' ');
                }
            }
            // Tags separate words (block layout or not).
            out.push(' ');
            continue;
        }
        if skip_until.is_some() {
            i = memchr_lt(b, i);
            continue;
        }
        // Text up to the next tag or character reference.
        let next = memchr::memchr2(b'<', b'&', &b[i..]).map_or(b.len(), |p| i + p);
        out.push_str(&html[i..next]);
        i = next;
        if b.get(i) == Some(&b'&') {
            let (c, len) = entity_at(&html[i..]);
            out.push(c);
            i += len;
        }
    }
}

fn memchr_lt(b: &[u8], from: usize) -> usize {
    memchr::memchr(b'<', &b[from..]).map_or(b.len(), |p| from + p)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The index of the `>` closing a tag that starts at `from`, skipping quoted
/// attribute values; `hay.len()` when there is none.
fn tag_end(hay: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(p) = hay
        .get(i..)
        .and_then(|r| memchr::memchr3(b'>', b'"', b'\'', r))
    {
        let at = i + p;
        match hay[at] {
            b'>' => return at,
            // A quoted value: skip to its closing quote.
            q => match hay.get(at + 1..).and_then(|r| memchr::memchr(q, r)) {
                Some(close) => i = at + 1 + close + 1,
                None => return hay.len(),
            },
        }
    }
    hay.len()
}

/// The values of the `href` and `src` attributes in a tag's text (the first
/// of each), quoted or not. An attribute name counts at the start of the
/// text or after white space, and must be followed by `=`.
fn link_attributes(tag: &str) -> (Option<&str>, Option<&str>) {
    let b = tag.as_bytes();
    let (mut href, mut src) = (None, None);
    let mut i = 0;
    while i < b.len() && (href.is_none() || src.is_none()) {
        let starts = i == 0 || b[i - 1].is_ascii_whitespace();
        if starts && matches!(b[i] | 0x20, b'h' | b's') {
            if href.is_none() && has_prefix_ci(&b[i..], b"href") {
                href = attribute_value(tag, i + 4);
            } else if src.is_none() && has_prefix_ci(&b[i..], b"src") {
                src = attribute_value(tag, i + 3);
            }
        }
        i += 1;
    }
    (href, src)
}

fn has_prefix_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() > prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// After an attribute name ending at `j`: `=` (white space around it
/// allowed) and the value, quoted or not; `None` without `=`.
fn attribute_value(tag: &str, mut j: usize) -> Option<&str> {
    let b = tag.as_bytes();
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    if b.get(j) != Some(&b'=') {
        return None;
    }
    j += 1;
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    let (start, end) = match b.get(j) {
        Some(&q @ (b'"' | b'\'')) => {
            let s = j + 1;
            let e = b[s..]
                .iter()
                .position(|&c| c == q)
                .map_or(b.len(), |p| s + p);
            (s, e)
        }
        _ => {
            let e = b[j..]
                .iter()
                .position(|c| c.is_ascii_whitespace() || *c == b'>')
                .map_or(b.len(), |p| j + p);
            (j, e)
        }
    };
    tag.get(start..end)
}

/// Append `text` with character references (`&amp;`, `&#65;`, `&#x41;`, ...) decoded.
fn push_decoded(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = memchr::memchr(b'&', rest.as_bytes()) {
        out.push_str(&rest[..amp]);
        let (c, len) = entity_at(&rest[amp..]);
        out.push(c);
        rest = &rest[amp + len..];
    }
    out.push_str(rest);
}

/// The character reference at the start of `at` (which starts with `&`):
/// the character and the bytes it takes, or `&` alone when it is none.
fn entity_at(at: &str) -> (char, usize) {
    let semi = at.as_bytes().iter().take(12).position(|&c| c == b';');
    semi.and_then(|s| Some((entity(at.get(1..s)?)?, s + 1)))
        .unwrap_or(('&', 1))
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return Some(char::from_u32(code).unwrap_or('\u{FFFD}'));
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "euro" => '€',
        "pound" => '£',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "rsquo" | "lsquo" => '\'',
        "rdquo" | "ldquo" => '"',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_steps() {
        let n = Normalization::default();
        assert_eq!(
            n.normalize("  Hello   JOHN,\r\n\tyour order 123456 ships 2026. "),
            "hello john, your order # ships #."
        );
        assert_eq!(
            n.normalize("Click https://Ex.example/Go?u=a8f3e9c1&t=77#frag now"),
            "click https://ex.example/go now"
        );
        assert_eq!(
            n.normalize("token a8f3e9c1b2d4 and deadbeef"),
            "token # and deadbeef"
        );
        assert_eq!(n.normalize("ref AB12345X"), "ref ab#x");
        assert_eq!(n.normalize("ÉCOLE  Straße"), "école straße");
        assert_eq!(n.normalize("page 12 of 999"), "page 12 of 999");
    }

    #[test]
    fn each_switch_turns_its_step_off() {
        let text = " A  https://x.example/p?id=1 12345 a8f3e9c1b2 ";
        let none = Normalization::none();
        assert_eq!(none.normalize(text), text);
        let mut only_case = Normalization::none();
        only_case.fold_case = true;
        assert_eq!(
            only_case.normalize(text),
            " a  https://x.example/p?id=1 12345 a8f3e9c1b2 "
        );
        let mut only_ws = Normalization::none();
        only_ws.fold_whitespace = true;
        assert_eq!(
            only_ws.normalize(text),
            "A https://x.example/p?id=1 12345 a8f3e9c1b2"
        );
        let mut only_url = Normalization::none();
        only_url.strip_url_queries = true;
        assert_eq!(
            only_url.normalize(text),
            " A  https://x.example/p 12345 a8f3e9c1b2 "
        );
        let mut only_digits = Normalization::none();
        only_digits.digit_run_min = 5;
        assert_eq!(
            only_digits.normalize(text),
            " A  https://x.example/p?id=1 # a8f3e9c1b2 "
        );
        let mut only_hex = Normalization::none();
        only_hex.hex_token_min = 8;
        assert_eq!(
            only_hex.normalize(text),
            " A  https://x.example/p?id=1 12345 # "
        );
    }

    #[test]
    fn long_plain_runs_match_word_by_word() {
        // Plain runs across many eight-byte blocks, broken by each kind of
        // stop at every offset: the same result as normalising word by word
        // (where no run is longer than a word).
        let base = "The quick brown fox, jumps over; the lazy dog. ".repeat(4);
        let n = Normalization::default();
        let stops = [
            "",
            " 12345 ",
            "  ",
            "\r\n",
            "\t",
            "Été",
            "日本",
            " http://x.example/a?b ",
            " half ",
            "ab12cd",
            "X",
            "\u{3000}",
        ];
        for stop in stops {
            for at in (0..base.len()).step_by(3) {
                let text = format!("{}{stop}{}", &base[..at], &base[at..]);
                let words: Vec<String> = text
                    .split(|c: char| c.is_whitespace())
                    .map(|w| n.normalize(w))
                    .filter(|w| !w.is_empty())
                    .collect();
                assert_eq!(n.normalize(&text), words.join(" "), "{text:?}");
                let mut out = String::new();
                let counted = n.normalize_into(&text, &mut out);
                let (_, expected) = text.split(|c: char| c.is_whitespace()).fold(
                    (String::new(), 0),
                    |(s, k), w| {
                        let mut o = String::new();
                        (s, k + n.normalize_into(w, &mut o))
                    },
                );
                assert_eq!(counted, expected, "{text:?}");
            }
        }
    }

    #[test]
    fn html_reduced_to_text() {
        let html = "<html><head><title>t</title><style>p{x:1}</style></head><body>\
            <p>Hello&nbsp;<b>World</b> &amp; friends &#65;&#x42;</p><!-- hidden -->\
            <a href=\"https://shop.example/x?u=9\">Buy</a><script>evil()</script>\
            <img src='https://img.example/a.png'> &bogus; done</body></html>";
        let text = html_to_text(html);
        let n = Normalization::default().normalize(&text);
        assert_eq!(
            n,
            "hello world & friends ab https://shop.example/x buy https://img.example/a.png &bogus; done"
        );
        // Attribute names in any case, spaced `=`, values quoted or not; a
        // name inside another value does not count; quoted `>` stays inside.
        assert_eq!(html_to_text("<a HREF = \"x y\" src=z>t</a>"), " x y  z  t ");
        assert_eq!(html_to_text("<img alt=href src=q>"), " q  ");
        assert_eq!(html_to_text("<p title='a>b'>c"), " c");
        assert_eq!(html_to_text("x&amp<b>y &lt;&#x3C;"), "x&amp y <<");
        // Unterminated constructs do not lose the text before them or panic.
        assert_eq!(html_to_text("abc <b"), "abc  ");
        assert_eq!(html_to_text("abc <!-- x"), "abc ");
        assert_eq!(html_to_text("x &#xFFFFFFFF; y"), "x \u{FFFD} y");
        let unclosed_head = html_to_text("<head><title>t</title><body>visible</body>");
        assert_eq!(
            Normalization::default().normalize(&unclosed_head),
            "visible"
        );
    }
}
