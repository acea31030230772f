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
//!    rendering of one spam share most of their words. The fingerprinter does
//!    this inside the normaliser's pass ([`Normalization::normalize_html_into`]),
//!    with the same result as [`html_to_text`] followed by the steps below.
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

mod blocks;
mod html;

pub use html::{html_to_text, html_to_text_into};

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
        // Plain text never gives up (`None` comes only from markup).
        self.normalize_text::<false>(input, out, &mut String::new())
            .unwrap_or_default()
    }

    /// HTML reduced to text ([`html_to_text`]) and normalised
    /// ([`normalize_into`](Self::normalize_into)), appending to `out`;
    /// returns the number of words. The same result as the two steps one
    /// after the other, in one pass over the markup when white space is
    /// folded (the default): tags, comments and character references are
    /// handled where the normaliser meets them, with no intermediate text.
    pub fn normalize_html_into(&self, html: &str, out: &mut String) -> usize {
        let mut bytes = std::mem::take(out).into_bytes();
        let words = self.normalize_html_bytes(html, &mut bytes, &mut String::new());
        *out = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        words
    }

    /// [`normalize_html_into`](Self::normalize_html_into) writing UTF-8
    /// bytes; `scratch` is reused for decoded attribute values (and for the
    /// reduced text when the one-pass path gives up).
    pub(crate) fn normalize_html_bytes(
        &self,
        html: &str,
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> usize {
        let start = out.len();
        if self.fold_whitespace
            && let Some(words) = self.normalize_text::<true>(html, out, scratch)
        {
            return words;
        }
        // The two steps: white space kept as sent, or markup the one pass
        // does not reproduce exactly (see `html::run`).
        out.truncate(start);
        scratch.clear();
        html_to_text_into(html, scratch);
        let text = std::mem::take(scratch);
        let words = self.normalize_bytes(&text, out);
        *scratch = text;
        words
    }

    /// The normaliser: plain text, or with `HTML` (white space folding on)
    /// markup read as [`html_to_text`] would reduce it. `None` when the
    /// markup needs the two-step path (a character reference that makes or
    /// joins a word, or a comment or skipped element between two words).
    pub(crate) fn normalize_text<const HTML: bool>(
        &self,
        input: &str,
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> Option<usize> {
        // One pass. Text that needs no change is not copied byte by byte but
        // in spans (`input[copied..i]`) when something must change; ASCII
        // case is folded over the output at the end, in one vectorised pass.
        // Runs of plain text (ASCII words of letters, punctuation, single
        // spaces) are skipped a block at a time (`quiet_run`: SSE2); the token
        // loop below handles the rest with one table look-up per byte.
        let b = input.as_bytes();
        let start_len = out.len();
        let mut words = 0;
        let mut copied = 0;
        let mut i = 0;
        // What a single space must not be followed by to be left alone.
        let after_space = if HTML { WS | HIGH | MARKUP } else { WS | HIGH };
        while let Some(&c) = b.get(i) {
            let k = CLASS[usize::from(c)];
            if k & ALNUM != 0 {
                // URLs: keep scheme, host and path; drop what tracks the recipient.
                if self.strip_url_queries
                    && (c | 0x20) == b'h'
                    && let Some(scheme_len) = url_scheme_len(&b[i..])
                {
                    words += 1;
                    let (stop, cut) = url_cut::<HTML>(input, i + scheme_len)?;
                    if cut {
                        let end = url_end::<HTML>(input, stop);
                        out.extend_from_slice(&b[copied..stop]);
                        copied = end;
                        i = end;
                    } else {
                        i = stop;
                    }
                    continue;
                }
                if k & DIGIT == 0 {
                    let (end, n) = self.quiet_run::<HTML>(b, i);
                    if end > i {
                        words += n;
                        i = end;
                        continue;
                    }
                } else {
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
                        .is_some_and(|&d| CLASS[usize::from(d)] & after_space == 0)
                    && (copied < i || out.len() > start_len);
                i = if single {
                    i + 1
                } else if HTML {
                    let (end, n) = self.html_run(input, start_len, i, &mut copied, out, scratch)?;
                    words += n;
                    end
                } else {
                    fold_space(input, i, start_len, &mut copied, out)
                };
                continue;
            }
            if HTML && k & MARKUP != 0 {
                let (end, n) = self.html_markup(input, start_len, i, &mut copied, out, scratch)?;
                words += n;
                i = end;
                continue;
            }
            if k & HIGH == 0 {
                i += 1; // ASCII punctuation: kept.
                continue;
            }
            match input.get(i..).and_then(|r| r.chars().next()) {
                Some(ch) if ch.is_whitespace() => {
                    i = if !self.fold_whitespace {
                        i + ch.len_utf8()
                    } else if HTML {
                        let (end, n) =
                            self.html_run(input, start_len, i, &mut copied, out, scratch)?;
                        words += n;
                        end
                    } else {
                        fold_space(input, i, start_len, &mut copied, out)
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
            out[start_len..].make_ascii_lowercase();
        }
        Some(words)
    }

    /// From `start`, an ASCII letter starting a word after text was written,
    /// skip sixteen (SSE2) or eight bytes at a time what needs no change:
    /// ASCII letters, ASCII punctuation other than `:` and single spaces
    /// followed by text.
    /// Stops before a digit, control character, non-ASCII byte, doubled or
    /// final space, or `:` (a URL's scheme ends there); a word that turns
    /// out to hold a digit, a `:` or a non-ASCII letter is left whole to the
    /// caller. Returns where to go on (never inside a word) and the words
    /// skipped.
    #[inline]
    fn quiet_run<const HTML: bool>(&self, b: &[u8], start: usize) -> (usize, usize) {
        let rest = b.get(start..).unwrap_or_default();
        let (len, words, stopped) = match (self.fold_whitespace, HTML) {
            (true, false) => quiet_scan::<true, false>(rest),
            (true, true) => quiet_scan::<true, true>(rest),
            (false, _) => quiet_scan::<false, false>(rest),
        };
        let end = start + len;
        // At a stop byte, which ends the word before it unless it can
        // continue it.
        if stopped {
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

    /// `text` when it is one URL and nothing else (a link value, mostly):
    /// what the full pass writes for it (scheme, host and path, case
    /// folded), and its one word; `None` for anything else.
    pub(crate) fn lone_url(&self, text: &str, out: &mut Vec<u8>) -> Option<usize> {
        if !self.strip_url_queries {
            return None;
        }
        let b = text.as_bytes();
        let cut = url_scan(b, url_scheme_len(b)?, &URL_CUT_OR_END);
        // Nothing may end the URL before the end of the text.
        if url_scan(b, cut, &URL_END) != b.len() {
            return None;
        }
        let start = out.len();
        out.extend_from_slice(&b[..cut]);
        if self.fold_case {
            out[start..].make_ascii_lowercase();
        }
        Some(1)
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
/// `<` and `&`: markup when the input is HTML, punctuation otherwise.
const MARKUP: u8 = 128;

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
        } else if b == b'<' || b == b'&' {
            MARKUP
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
#[cfg_attr(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2",
        not(test)
    ),
    allow(dead_code)
)]
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

/// The quiet prefix of `b` (see [`Normalization::quiet_run`]): the index
/// of the first stop byte and `true`, or the end of the last whole chunk and
/// `false` when there is none; and the words that start before it. With
/// `HTML`, `<`, `&` (and `;`) stop too, and so does a space before any stop.
///
/// With SSE2 (always there on x86-64): sixteen bytes per step, a compare per
/// byte class and one movemask, word starts summed per lane. `core::arch`
/// would need `unsafe`, which this crate forbids: `safe_arch` wraps it.
#[cfg(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
))]
#[inline]
fn quiet_scan<const FOLD_WS: bool, const HTML: bool>(b: &[u8]) -> (usize, usize, bool) {
    #[cfg(test)]
    if tests::PORTABLE_SCAN.get() {
        return quiet_scan_portable::<FOLD_WS, HTML>(b);
    }
    use safe_arch::{
        add_i8_m128i, bitandnot_m128i, byte_shl_imm_u128_m128i, byte_shr_imm_u128_m128i,
        cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i,
        move_mask_i8_m128i, set_splat_i8_m128i, sub_i8_m128i, sum_of_u8_abs_diff_m128i,
    };
    let splat = |c: u8| set_splat_i8_m128i(c.cast_signed());
    // All ones where `lo <= v <= hi` (unsigned): v - lo, moved to the bottom
    // of the signed range, below hi - lo + 1 from there.
    let in_range = |v: m128i, lo: u8, hi: u8| {
        cmp_lt_mask_i8_m128i(
            add_i8_m128i(v, splat(0x80u8.wrapping_sub(lo))),
            splat(0x80 + (hi - lo + 1)),
        )
    };
    let zero = m128i::default();
    let sum = |lanes: m128i| {
        let [lo, hi]: [u64; 2] = sum_of_u8_abs_diff_m128i(lanes, zero).into();
        (lo + hi) as usize
    };
    // The last lane: a space there cannot see the byte after it.
    let last = m128i::from(u128::MAX << 120);
    // Sixteen lanes of ones, then sixteen of zeros: the sixteen from
    // `16 - n` have ones in the first `n`.
    const BELOW: [u8; 32] = {
        let mut t = [0; 32];
        let mut k = 0;
        while k < 16 {
            t[k] = 0xff;
            k += 1;
        }
        t
    };
    let (chunks, _) = b.as_chunks::<16>();
    let mut words = 0;
    let mut letters_before = zero;
    let mut done = 0;
    // Word starts are summed per byte lane (at most one per chunk), so a
    // block is at most 255 chunks.
    for block in chunks.chunks(255) {
        let mut lanes = zero;
        for chunk in block {
            let v = load_unaligned_m128i(chunk);
            let letter = in_range(v | splat(0x20), b'a', b'z');
            // Signed: below 0x20 is a control byte or one of 0x80 and up.
            let ctrl_or_high = cmp_lt_mask_i8_m128i(v, splat(0x20));
            let mut bad = ctrl_or_high | in_range(v, b'0', if HTML { b'<' } else { b':' });
            if HTML {
                bad |= cmp_eq_mask_i8_m128i(v, splat(b'&'));
            }
            if FOLD_WS {
                // A space must be followed, in this chunk, by text.
                let space = cmp_eq_mask_i8_m128i(v, splat(b' '));
                let stop_next = if HTML {
                    bad | space
                } else {
                    ctrl_or_high | space
                };
                bad |= space & (byte_shr_imm_u128_m128i::<1>(stop_next) | last);
            }
            let before = byte_shl_imm_u128_m128i::<1>(letter)
                | byte_shr_imm_u128_m128i::<15>(letters_before);
            let starts = bitandnot_m128i(before, letter);
            let stops = move_mask_i8_m128i(bad);
            if stops != 0 {
                let at = stops.trailing_zeros() as usize;
                // The lanes below the stop: all ones in the first `at`.
                let below =
                    load_unaligned_m128i(&BELOW[16 - at..32 - at].try_into().unwrap_or([0; 16]));
                let lanes = sub_i8_m128i(lanes, starts & below);
                return (done + at, words + sum(lanes), true);
            }
            lanes = sub_i8_m128i(lanes, starts);
            letters_before = letter;
            done += 16;
        }
        words += sum(lanes);
    }
    (done, words, false)
}

/// [`quiet_scan`] elsewhere: the same, eight bytes at a time in a `u64`.
#[cfg(not(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "sse2"
)))]
#[inline(never)]
fn quiet_scan<const FOLD_WS: bool, const HTML: bool>(b: &[u8]) -> (usize, usize, bool) {
    quiet_scan_portable::<FOLD_WS, HTML>(b)
}

/// [`quiet_scan`] without SIMD (on x86 too, to be tested against it).
#[cfg_attr(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2",
        not(test)
    ),
    allow(dead_code)
)]
fn quiet_scan_portable<const FOLD_WS: bool, const HTML: bool>(b: &[u8]) -> (usize, usize, bool) {
    let (chunks, _) = b.as_chunks::<8>();
    let mut words = 0;
    // Whether the byte before the chunk was a letter (bit 7 set).
    let mut carry = 0u64;
    for (k, chunk) in chunks.iter().enumerate() {
        // Per byte, the top bit of v + (0x80 - n) says v >= n and that of
        // (0x80 + n) - v says v <= n. A byte of 0x80 or more can carry
        // into the bytes after it, but it is a stop itself, and only the
        // bytes before the first stop are read: they are ASCII and
        // receive no carry, so their bits are exact.
        let v = u64::from_le_bytes(*chunk);
        let high = v & TOP;
        let x = v | splat(0x20);
        let letter = x.wrapping_add(splat(0x1f)) & splat(0xfa).wrapping_sub(x) & TOP;
        // '0'..='9' and ':' (and the control bytes 0x10..=0x1a, stops
        // anyway); with HTML up to '<', so ';' too.
        let last = if HTML { 0xbc } else { 0xba };
        let digit_colon = x.wrapping_add(splat(0x50)) & splat(last).wrapping_sub(x);
        let up_to_space = splat(0xa0).wrapping_sub(v);
        let ctrl = up_to_space.wrapping_sub(ONES);
        let mut bad = ctrl | digit_colon;
        if HTML {
            // '&': a zero byte of v ^ '&' (exact up to the first one).
            let amp = v ^ splat(b'&');
            bad |= amp.wrapping_sub(ONES) & !amp;
        }
        if FOLD_WS {
            // A space must be followed, in this chunk, by text.
            let space = up_to_space & !ctrl;
            let after = if HTML { bad | high } else { ctrl | high };
            bad |= space & (((up_to_space | after) >> 8) | (1 << 63));
        }
        let bad = (bad & TOP) | high;
        let starts = letter & !(letter << 8 | carry);
        if bad != 0 {
            let at = bad.trailing_zeros() as usize / 8;
            let below = (1u64 << (8 * at)) - 1;
            return (8 * k + at, words + count_top_bits(starts & below), true);
        }
        words += count_top_bits(starts);
        carry = letter >> 56;
    }
    (8 * chunks.len(), words, false)
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
    let Some(head) = b.get(..8).and_then(|h| <[u8; 8]>::try_from(h).ok()) else {
        // Only "http://" fits, at the very end.
        return b.eq_ignore_ascii_case(b"http://").then_some(7);
    };
    // The letters folded to lower case, ':' and '/' compared as they are.
    let v = u64::from_le_bytes(head);
    if v | 0x0000_0020_2020_2020 == u64::from_le_bytes(*b"https://") {
        Some(8)
    } else if (v & 0x00ff_ffff_ffff_ffff) | 0x0000_0000_2020_2020
        == u64::from_le_bytes(*b"http://\0")
    {
        Some(7)
    } else {
        None
    }
}

/// A URL ends at white space, quotes, angle brackets or a non-ASCII byte.
const URL_END: [bool; 256] = url_table(false, false);
/// [`URL_END`] and the start of a query string or fragment (`?`, `#`).
const URL_CUT_OR_END: [bool; 256] = url_table(true, false);
/// [`URL_END`] and `&`, for HTML (a character reference may end the URL).
const URL_END_AMP: [bool; 256] = url_table(false, true);
/// [`URL_CUT_OR_END`] and `&`, for HTML.
const URL_CUT_OR_END_AMP: [bool; 256] = url_table(true, true);

const fn url_table(cut: bool, amp: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_whitespace()
            || matches!(b, b'"' | b'\'' | b'<' | b'>')
            || b >= 0x80
            || (cut && matches!(b, b'?' | b'#'))
            || (amp && b == b'&');
        c += 1;
    }
    t
}

/// Whether a URL ends at `c` (a decoded character reference): see [`URL_END`].
fn ends_url(c: char) -> bool {
    c.is_ascii_whitespace() || matches!(c, '"' | '\'' | '<' | '>') || !c.is_ascii()
}

/// From just after a URL's scheme: where its query string or fragment starts
/// (`true`) or, without one, where it ends (`false`). With `HTML`, a
/// character reference that decodes to `?`, `#` or an end counts as that;
/// `None` for any other reference before the cut (the kept part would hold
/// the decoded character: the two-step path does it).
#[inline]
fn url_cut<const HTML: bool>(input: &str, from: usize) -> Option<(usize, bool)> {
    let b = input.as_bytes();
    if !HTML {
        let stop = url_scan(b, from, &URL_CUT_OR_END);
        return Some((stop, matches!(b.get(stop), Some(b'?' | b'#'))));
    }
    let mut at = from;
    loop {
        at = url_scan(b, at, &URL_CUT_OR_END_AMP);
        match b.get(at) {
            Some(b'?' | b'#') => return Some((at, true)),
            Some(b'&') => match html::entity_at(input.get(at..).unwrap_or_default()) {
                (_, 1) => at += 1,
                ('?' | '#', _) => return Some((at, true)),
                (c, _) if ends_url(c) => return Some((at, false)),
                _ => return None,
            },
            _ => return Some((at, false)),
        }
    }
}

/// From a URL's cut: where it ends. With `HTML`, at a character reference
/// that decodes to an end.
#[inline]
fn url_end<const HTML: bool>(input: &str, from: usize) -> usize {
    let b = input.as_bytes();
    if !HTML {
        return url_scan(b, from, &URL_END);
    }
    let mut at = from;
    loop {
        at = url_scan(b, at, &URL_END_AMP);
        if b.get(at) != Some(&b'&') {
            return at;
        }
        match html::entity_at(input.get(at..).unwrap_or_default()) {
            (c, len) if len > 1 && ends_url(c) => return at,
            (_, len) => at += len,
        }
    }
}

/// The first byte from `from` that `stop` (one of the URL tables) marks, or
/// the end. A block at a time: candidates (bytes up to 0x20, non-ASCII,
/// `"#$%&'<=>?`) are found per block and checked against the table.
fn url_scan(b: &[u8], from: usize, stop: &[bool; 256]) -> usize {
    blocks::find(b, from, blocks::url_candidates, |c| stop[usize::from(c)]).unwrap_or(b.len())
}

/// Octets as Latin-1 characters: what "charset conversion off" reads, so the
/// bytes sent decide the checksum.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Use the portable scan where the SSE2 one is built, to test it.
        pub(super) static PORTABLE_SCAN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

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

    #[test]
    fn url_schemes_in_any_case_only() {
        let bytewise = |b: &[u8]| {
            let starts = |p: &[u8]| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p);
            if starts(b"https://") {
                Some(8)
            } else if starts(b"http://") {
                Some(7)
            } else {
                None
            }
        };
        for case in 0u32..512 {
            let mut url = *b"https://x";
            for (k, c) in url.iter_mut().enumerate() {
                if case >> k & 1 == 1 {
                    *c ^= 0x20; // upper case letters; ':' and '/' become lookalikes
                }
            }
            for text in [&url[..], &url[..8], &url[..7]] {
                let mut http = text.to_vec();
                http.remove(4);
                for t in [text, &http[..]] {
                    assert_eq!(
                        url_scheme_len(t),
                        bytewise(t),
                        "{:?}",
                        String::from_utf8_lossy(t)
                    );
                }
            }
        }
    }

    proptest::proptest! {
        /// The lone-URL shortcut writes what the full pass writes.
        #[test]
        fn lone_url_matches_full_pass(
            text in "(https?://|HTTP://|hTtPs://|)([a-zA-Z0-9./?#=&%:_-]|[ \"'<>\u{e9}]){0,12}",
            fold_case in proptest::prelude::any::<bool>(),
        ) {
            let n = Normalization { fold_case, ..Normalization::default() };
            let mut fast = b"x".to_vec();
            if let Some(words) = n.lone_url(&text, &mut fast) {
                let mut full = b"x".to_vec();
                proptest::prop_assert_eq!(words, n.normalize_bytes(&text, &mut full));
                proptest::prop_assert_eq!(fast, full, "{:?}", text);
            }
        }
    }

    /// Normalise `text` (as plain text and as HTML) with the portable scan
    /// or the SIMD one.
    fn with_scan(portable: bool, n: &Normalization, text: &str) -> [(Vec<u8>, usize); 2] {
        PORTABLE_SCAN.set(portable);
        let mut plain = b"x".to_vec();
        let w = n.normalize_bytes(text, &mut plain);
        let mut html = b"x".to_vec();
        let h = n.normalize_html_bytes(text, &mut html, &mut String::new());
        PORTABLE_SCAN.set(false);
        [(plain, w), (html, h)]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The SIMD scan and the portable one give the same text and word
        /// count (where both are built: x86), over long plain runs broken
        /// by every kind of stop.
        #[test]
        fn simd_and_portable_scans_agree(
            text in "(?s)([a-zA-Z]{1,12}|[ ,.'!()-]|  |[0-9]{1,5}|:|;|<b>|&amp;|&|\\r\\n|\\t|\\u{e9}|\\u{3000}|https://x.example/a?b=1){0,80}",
            fold_ws in proptest::prelude::any::<bool>(),
        ) {
            let n = Normalization { fold_whitespace: fold_ws, ..Normalization::default() };
            proptest::prop_assert_eq!(with_scan(true, &n, &text), with_scan(false, &n, &text));
        }
    }

    /// The two-step reading: HTML reduced to text, then normalised.
    fn two_steps(n: &Normalization, html: &str) -> (Vec<u8>, usize) {
        let mut out = b"x".to_vec();
        let words = n.normalize_bytes(&html_to_text(html), &mut out);
        (out, words)
    }

    /// The one-pass reading alone: `None` when it gives up.
    fn one_pass(n: &Normalization, html: &str) -> Option<(Vec<u8>, usize)> {
        let mut out = b"x".to_vec();
        let words = n.normalize_text::<true>(html, &mut out, &mut String::new())?;
        Some((out, words))
    }

    #[test]
    fn one_pass_html_reads_ordinary_markup() {
        let n = Normalization::default();
        let html = "<html><head><title>Sale</title><style>p { x: 1 }</style></head>\r\n\
            <body><!-- top --><p class=\"x\">12. <b>Our  SPRING</b> sale &amp; more&nbsp;ends 2026!\r\n\
            See https://shop.example/go?rid=a81f29c3&amp;u=1 today.</p>\
            <a href=\"https://shop.example/p1?rid=a81f29c3\">more</a> <img src='x.png'>\
            &copy; Shop &#8212; caf\u{e9} \u{3000} <br/>\r\n</body></html>";
        let fast = one_pass(&n, html).expect("ordinary markup takes the one-pass path");
        assert_eq!(fast, two_steps(&n, html));
        assert_eq!(
            String::from_utf8(fast.0).unwrap(),
            "x12. our spring sale & more ends #! see https://shop.example/go today. \
             https://shop.example/p1 more x.png \u{a9} shop \u{2014} caf\u{e9}"
        );
        // What the reduced text would join, the one pass leaves to the two steps.
        for joined in [
            "a<!-- -->b",
            "x&#65;y",
            "http&#58;//x.example/",
            "https://x.example/a&amp;b",
            "ab<style>p{}</style>cd",
        ] {
            assert_eq!(one_pass(&n, joined), None, "{joined:?}");
            let mut out = b"x".to_vec();
            let words = n.normalize_html_bytes(joined, &mut out, &mut String::new());
            assert_eq!((out, words), two_steps(&n, joined), "{joined:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// The one-pass HTML reading gives exactly the two steps' text and
        /// word count, for every switch setting (without white space folding
        /// it is the two steps).
        #[test]
        fn one_pass_html_matches_two_steps(
            html in "(?s)(<p>|</p>|<b>|</ b>|<br/>|<a href=\"https://x.example/p?q=1\">|<a HREF='h&amp;i'>|<img src=y alt=\"z\">|<a href= >|<!-- c -->|<!--|<style>|</style>|<head>|</head>|<body>|<script>x</script>|<template>|</template>|<|>|\"|&amp;|&nbsp;|&lt;|&gt;|&quot;|&#65;|&#x41;|&#160;|&#58;|&#47;|&#63;|&#35;|&#12288;|&copy;|&mdash;|&bogus;|&|;|https?://|HTTP://|[ \t\r\n?#=/.:']|[a-fA-F0-9]{1,10}|[g-zG-Z]{1,5}|[\u{e9}\u{c9}\u{a0}\u{3000}\u{2014}日]){0,50}",
            fold_case in proptest::prelude::any::<bool>(),
            fold_ws in proptest::prelude::any::<bool>(),
            urls in proptest::prelude::any::<bool>(),
            digit_min in 0usize..6,
            hex_min in proptest::sample::select(vec![0usize, 4, 8]),
        ) {
            let n = Normalization {
                fold_case,
                fold_whitespace: fold_ws,
                strip_url_queries: urls,
                digit_run_min: digit_min,
                hex_token_min: hex_min,
                ..Normalization::default()
            };
            let expected = two_steps(&n, &html);
            if fold_ws && let Some(fast) = one_pass(&n, &html) {
                proptest::prop_assert_eq!(&fast, &expected, "one pass, {:?}", html);
            }
            let mut out = b"x".to_vec();
            let words = n.normalize_html_bytes(&html, &mut out, &mut String::new());
            proptest::prop_assert_eq!((out, words), expected, "{:?}", html);
        }
    }
}
