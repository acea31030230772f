//! HTML reduced to text ([`html_to_text`]), and the same reduction done
//! inside the normaliser's pass ([`Normalization::normalize_html_into`]).
//!
//! The one-pass reading gives the normaliser exactly what the reduced text
//! would: a tag is a space (and its `href`/`src` values words between
//! spaces), a comment or skipped element is nothing, a character reference
//! its character. With white space folded, a *run* of white space, tags,
//! comments, skipped elements and white-space references is one space
//! between text (none at the ends), so the normaliser only needs to know
//! where runs start: at `<`, `&` or white space. Where the reduced text
//! would join what the markup separates (a reference decoding to a letter,
//! digit, `:` or `/`; a comment or skipped element alone between two words;
//! a reference inside the kept part of a URL) the one-pass reading gives up
//! and the caller does the two steps.

use super::{CLASS, Normalization, WS, blocks, ws_width};

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
            let (next, closing, name) = read_tag(html, i);
            i = next;
            let tag_name = tag_name(name);
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
                skip_until = skipped(tag_name);
                if skip_until.is_some() {
                    continue;
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
#[inline]
fn tag_end(hay: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(at) = find_byte(hay, i, [b'>', b'"', b'\'']) {
        match hay[at] {
            b'>' => return at,
            // A quoted value: skip to its closing quote.
            q => match find_byte(hay, at + 1, [q]) {
                Some(close) => i = close + 1,
                None => return hay.len(),
            },
        }
    }
    hay.len()
}

/// The first index from `from` of any of the bytes `of`, a block at a time
/// (tags are short: no call or set-up cost, unlike `memchr`).
#[inline]
fn find_byte<const N: usize>(hay: &[u8], from: usize, of: [u8; N]) -> Option<usize> {
    blocks::find_exact(
        hay,
        from,
        |block| blocks::eq_any(block, of),
        |c| of.contains(&c),
    )
}

/// The first ASCII white-space byte from `from`, a block at a time.
fn find_space(hay: &[u8], from: usize) -> Option<usize> {
    blocks::find(hay, from, blocks::low_or_high, |c| c.is_ascii_whitespace())
}

/// The values of the `href` and `src` attributes in a tag's text (the first
/// of each), quoted or not. An attribute name counts at the start of the
/// text or after white space, and must be followed by `=`.
fn link_attributes(tag: &str) -> (Option<&str>, Option<&str>) {
    let b = tag.as_bytes();
    let (mut href, mut src) = (None, None);
    // Each place a name can start: 0, then after each white-space byte.
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i] | 0x20, b'h' | b's') {
            if href.is_none() && has_prefix_ci(&b[i..], b"href") {
                href = attribute_value(tag, i + 4);
            } else if src.is_none() && has_prefix_ci(&b[i..], b"src") {
                src = attribute_value(tag, i + 3);
            }
            if href.is_some() && src.is_some() {
                break;
            }
        }
        match find_space(b, i) {
            Some(at) => i = at + 1,
            None => break,
        }
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
            (s, find_byte(b, s, [q]).unwrap_or(b.len()))
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
pub(super) fn entity_at(at: &str) -> (char, usize) {
    // The `;` within 12 bytes; a byte no reference name holds (anything
    // but letters, digits and the `#`, `+`, `-` of numbers) before it means
    // none, so `&` in a query string costs a byte or two.
    let b = at.as_bytes();
    let mut s = 1;
    loop {
        match b.get(s) {
            Some(b';') => break,
            Some(c) if s < 12 && (c.is_ascii_alphanumeric() || matches!(c, b'#' | b'+' | b'-')) => {
                s += 1
            }
            _ => return ('&', 1),
        }
    }
    at.get(1..s)
        .and_then(entity)
        .map_or(('&', 1), |c| (c, s + 1))
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

impl Normalization {
    /// At `<` or `&` in one-pass HTML (white space folded): a run, a
    /// character reference's character, or a lone `&`. Returns where to go
    /// on and the words written (link values), or `None` to give up.
    pub(super) fn html_markup(
        &self,
        input: &str,
        start_len: usize,
        i: usize,
        copied: &mut usize,
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> Option<(usize, usize)> {
        let b = input.as_bytes();
        if b.get(i) == Some(&b'<') {
            return self.html_run(input, start_len, i, copied, out, scratch);
        }
        let (c, len) = entity_at(input.get(i..).unwrap_or_default());
        if len == 1 {
            return Some((i + 1, 0)); // '&' on its own: punctuation.
        }
        if c.is_whitespace() {
            return self.html_run(input, start_len, i, copied, out, scratch);
        }
        // A letter or digit would join the words around it, and ':' or '/'
        // could complete a URL scheme: the two-step path reads those.
        if c.is_alphanumeric() || c == ':' || c == '/' {
            return None;
        }
        out.extend_from_slice(&b[*copied..i]);
        self.push_cased(c.encode_utf8(&mut [0; 4]), out);
        *copied = i + len;
        Some((i + len, 0))
    }

    /// A run from `i` (white space, `<` or a white-space reference) in
    /// one-pass HTML: write the text before it, the link values in it, and
    /// one space if text comes before and after. Returns the run's end and
    /// the words written, or `None` when nothing in the run separates the
    /// text before it from the text after (the reduced text joins them).
    pub(super) fn html_run(
        &self,
        input: &str,
        start_len: usize,
        i: usize,
        copied: &mut usize,
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> Option<(usize, usize)> {
        let b = input.as_bytes();
        out.extend_from_slice(&b[*copied..i]);
        let mut words = 0;
        // White space or a tag seen: a space in the reduced text.
        let mut space = false;
        let mut j = i;
        while let Some(&c) = b.get(j) {
            if CLASS[usize::from(c)] == WS {
                space = true;
                j += 1;
                continue;
            }
            match c {
                b'<' => {
                    if b[j..].starts_with(b"<!--") {
                        j = find(b, j + 4, b"-->").map_or(b.len(), |e| e + 3);
                        continue;
                    }
                    let (next, closing, name) = read_tag(input, j);
                    j = next;
                    if !closing {
                        let tag_name = tag_name(name);
                        if let Some(until) = skipped(tag_name) {
                            j = skip_element(input, j, until);
                            continue;
                        }
                        // A tag that is its name alone (no white space) can
                        // only hold a link at its first byte.
                        let first = name.as_bytes().first().map_or(0, |c| c | 0x20);
                        if tag_name.len() < name.len() || matches!(first, b'h' | b's') {
                            let (href, src) = link_attributes(name);
                            for v in [href, src].into_iter().flatten() {
                                words += self.link_value(v, start_len, out, scratch);
                            }
                        }
                    }
                    space = true;
                }
                b'&' => match entity_at(input.get(j..).unwrap_or_default()) {
                    (c, len) if len > 1 && c.is_whitespace() => {
                        space = true;
                        j += len;
                    }
                    _ => break,
                },
                0x80.. => match ws_width(input, j) {
                    Some(w) => {
                        space = true;
                        j += w;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        *copied = j;
        if j < b.len() && out.len() > start_len {
            if !space {
                return None;
            }
            out.push(b' ');
        }
        Some((j, words))
    }

    /// An `href`/`src` value inside a run: ` value ` in the reduced text, so
    /// its normalised words, after a space when text comes before.
    fn link_value(
        &self,
        value: &str,
        start_len: usize,
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> usize {
        let text: &str = if find_byte(value.as_bytes(), 0, [b'&']).is_some() {
            scratch.clear();
            push_decoded(value, scratch);
            scratch
        } else {
            value
        };
        let before = out.len();
        if before > start_len {
            out.push(b' ');
        }
        let mark = out.len();
        let words = match self.lone_url(text, out) {
            Some(words) => words,
            None => self.normalize_bytes(text, out),
        };
        if out.len() == mark {
            out.truncate(before);
        }
        words
    }
}

/// The tag whose `<` is at `lt` (not a comment): where reading resumes
/// (after its `>`, or at the end), whether it is a closing tag, and its
/// text after `<` or `</` up to the `>`.
#[inline]
fn read_tag(input: &str, lt: usize) -> (usize, bool, &str) {
    let b = input.as_bytes();
    let end = tag_end(b, lt + 1);
    let tag = input.get(lt + 1..end.min(b.len())).unwrap_or("");
    let next = (end + 1).min(b.len());
    match tag.strip_prefix('/') {
        Some(rest) => (next, true, rest),
        None => (next, false, tag),
    }
}

/// A tag's name: its text up to white space or `/`.
fn tag_name(name: &str) -> &str {
    let len = name
        .bytes()
        .position(|c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
        .unwrap_or(name.len());
    &name[..len]
}

/// The element whose contents are dropped that an opening tag of this name
/// starts, if any.
#[inline]
fn skipped(tag_name: &str) -> Option<&'static str> {
    if !(4..=8).contains(&tag_name.len()) {
        return None;
    }
    ["head", "style", "script", "template"]
        .into_iter()
        .find(|s| tag_name.eq_ignore_ascii_case(s))
}

/// From just after the opening tag of a skipped element (`until`): where
/// reading resumes: after its closing tag, at a `<body` that ends an unclosed
/// `<head>`, or at the end. Comments inside are skipped whole.
fn skip_element(input: &str, from: usize, until: &str) -> usize {
    let b = input.as_bytes();
    let mut i = from;
    loop {
        i = memchr_lt(b, i);
        if i >= b.len() {
            return b.len();
        }
        if b[i..].starts_with(b"<!--") {
            i = find(b, i + 4, b"-->").map_or(b.len(), |e| e + 3);
            continue;
        }
        let (next, closing, name) = read_tag(input, i);
        let name = tag_name(name);
        if until == "head" && !closing && name.eq_ignore_ascii_case("body") {
            return i;
        }
        i = next;
        if closing && name.eq_ignore_ascii_case(until) {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The straightforward forms of the scanners above.
    fn tag_end_bytewise(hay: &[u8], from: usize) -> usize {
        let mut i = from;
        while let Some(&c) = hay.get(i) {
            match c {
                b'>' => return i,
                b'"' | b'\'' => match hay[i + 1..].iter().position(|&d| d == c) {
                    Some(p) => i += p + 2,
                    None => return hay.len(),
                },
                _ => i += 1,
            }
        }
        hay.len()
    }

    fn link_attributes_bytewise(tag: &str) -> (Option<&str>, Option<&str>) {
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

    fn entity_at_bytewise(at: &str) -> (char, usize) {
        let semi = at.as_bytes().iter().take(12).position(|&c| c == b';');
        semi.and_then(|s| Some((entity(at.get(1..s)?)?, s + 1)))
            .unwrap_or(('&', 1))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn entity_scan_matches_bytewise(
            text in "&(#|x|X|[+-]|[0-9]{1,4}|[a-fA-F]{1,3}|amp|nbsp|hellip|[g-z]{1,3}|[;=& \u{e9}]){0,8}"
        ) {
            prop_assert_eq!(entity_at(&text), entity_at_bytewise(&text));
        }

        #[test]
        fn block_scanners_match_bytewise(
            tag in "(?s)([ \\t\\n\\x0b\\x0c\\r\\x01=>\"'/]|href|HREF|src|SrC|[a-z]{1,4}|\u{e9}){0,30}",
            from in 0usize..40,
        ) {
            let b = tag.as_bytes();
            let from = from.min(b.len());
            prop_assert_eq!(tag_end(b, from), tag_end_bytewise(b, from));
            prop_assert_eq!(link_attributes(&tag), link_attributes_bytewise(&tag));
            prop_assert_eq!(
                find_space(b, from),
                b[from..].iter().position(u8::is_ascii_whitespace).map(|p| from + p)
            );
        }
    }
}
