//! 8-bit MIME to 7-bit for a next hop without 8BITMIME (RFC 6152 §3,
//! RFC 2045 §6.7), as Postfix converts. No I/O.
//!
//! [`to_seven_bit`] walks the MIME structure of a message that declares
//! `MIME-Version`: every leaf part whose body holds 8-bit octets and whose
//! `Content-Transfer-Encoding` is `7bit`, `8bit`, `binary` or absent is
//! re-encoded as quoted-printable (lossless for any octets: a CRLF stays a
//! line break, anything else outside printable ASCII becomes `=XX`) and
//! its encoding field says so. Multiparts are entered (preamble, epilogue
//! and delimiters copied), and so are encapsulated messages
//! (`message/rfc822`, `message/global`) that declare MIME themselves,
//! whose own `8bit` label becomes `7bit` once their content is.
//!
//! What MIME cannot express in 7 bits is left as it is, because rewriting
//! it would change the message: header fields with raw 8-bit octets (RFC
//! 2047 would be a different text), a message without `MIME-Version`,
//! 8-bit in a preamble or epilogue, a part that claims `base64` or
//! `quoted-printable` and is not, nesting deeper than 32 levels.
//!
//! ```
//! use portcullis_queue::downgrade::to_seven_bit;
//!
//! let m = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
//!          Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n";
//! let out = to_seven_bit(m.as_bytes());
//! assert_eq!(
//!     std::str::from_utf8(&out).unwrap(),
//!     "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
//!      Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n"
//! );
//! ```

use std::borrow::Cow;

/// Nesting followed; deeper entities are copied as they are.
const MAX_DEPTH: usize = 32;

/// `message` with its 8-bit MIME bodies re-encoded as quoted-printable
/// (see the module docs); borrowed when nothing needed or could change.
pub fn to_seven_bit(message: &[u8]) -> Cow<'_, [u8]> {
    if message.is_ascii() {
        return Cow::Borrowed(message);
    }
    let (head, _) = split_entity(message);
    if field(head, b"mime-version").is_none() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 4);
    entity(message, Default::Text, &mut out, 0);
    if out == message {
        return Cow::Borrowed(message);
    }
    Cow::Owned(out)
}

/// The type a part has without a `Content-Type` (RFC 2046 §5.1.5).
#[derive(Clone, Copy)]
enum Default {
    Text,
    Message,
}

/// Append `e` (header fields, empty line, body) converted to `out`.
fn entity(e: &[u8], default: Default, out: &mut Vec<u8>, depth: usize) {
    let (head, body) = split_entity(e);
    let Some(body) = body.filter(|b| !b.is_ascii() && depth < MAX_DEPTH) else {
        out.extend_from_slice(e);
        return;
    };
    let ct = field(head, b"content-type");
    let (media, boundary) = match &ct {
        Some(v) => media_type(v),
        None => match default {
            Default::Text => ("text/plain".to_owned(), None),
            Default::Message => ("message/rfc822".to_owned(), None),
        },
    };
    let cte = field(head, b"content-transfer-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let identity = matches!(cte.as_str(), "" | "7bit" | "8bit" | "binary");
    if let Some(boundary) = boundary.filter(|_| media.starts_with("multipart/")) {
        let inner = if media == "multipart/digest" {
            Default::Message
        } else {
            Default::Text
        };
        out.extend_from_slice(head);
        out.extend_from_slice(b"\r\n");
        multipart(body, boundary.as_bytes(), inner, out, depth + 1);
    } else if media == "message/rfc822" || media == "message/global" {
        let (inner_head, _) = split_entity(body);
        if !identity || field(inner_head, b"mime-version").is_none() {
            out.extend_from_slice(e);
            return;
        }
        let mut inner = Vec::with_capacity(body.len() + body.len() / 4);
        entity(body, Default::Text, &mut inner, depth + 1);
        if inner.is_ascii() && cte != "7bit" && !cte.is_empty() {
            set_cte(head, "7bit", out);
        } else {
            out.extend_from_slice(head);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&inner);
    } else if identity {
        set_cte(head, "quoted-printable", out);
        out.extend_from_slice(b"\r\n");
        quoted_printable(body, out);
    } else {
        out.extend_from_slice(e);
    }
}

/// The parts of a multipart body between `--boundary` lines, each
/// converted; everything else copied.
fn multipart(body: &[u8], boundary: &[u8], inner: Default, out: &mut Vec<u8>, depth: usize) {
    // Delimiter lines: (start, end with CRLF, is the close delimiter).
    let mut delimiters = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = body[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(body.len(), |i| start + i + 2);
        let line = &body[start..end];
        if let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        {
            let close = rest.starts_with(b"--");
            let padding = if close { &rest[2..] } else { rest };
            // RFC 2046 §5.1.1: only transport padding may follow.
            if padding
                .iter()
                .all(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                delimiters.push((start, end, close));
                if close {
                    break;
                }
            }
        }
        start = end;
    }
    let Some(&(first, ..)) = delimiters.first() else {
        out.extend_from_slice(body);
        return;
    };
    out.extend_from_slice(&body[..first]);
    for (k, &(start, end, close)) in delimiters.iter().enumerate() {
        out.extend_from_slice(&body[start..end]);
        if close {
            out.extend_from_slice(&body[end..]);
            return;
        }
        match delimiters.get(k + 1) {
            // The CRLF before the next delimiter belongs to it (RFC 2046 §5.1.1).
            Some(&(next, ..)) if next >= end + 2 => {
                entity(&body[end..next - 2], inner, out, depth);
                out.extend_from_slice(b"\r\n");
            }
            Some(_) => {}
            None => entity(&body[end..], inner, out, depth),
        }
    }
}

/// `(header fields with their last CRLF, body after the empty line)`.
fn split_entity(e: &[u8]) -> (&[u8], Option<&[u8]>) {
    if let Some(body) = e.strip_prefix(b"\r\n") {
        return (&[], Some(body));
    }
    match e.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&e[..i + 2], Some(&e[i + 4..])),
        None => (e, None),
    }
}

/// The header fields of `head`: (name, whole field with continuation lines and CRLF).
fn fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = head;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        loop {
            end = rest[end..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(rest.len(), |i| end + i + 2);
            // RFC 5322 §2.2.3: a line starting with white space continues it.
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        let (whole, tail) = rest.split_at(end);
        rest = tail;
        let name = whole.split(|&b| b == b':').next().unwrap_or(whole);
        Some((name, whole))
    })
}

/// The unfolded value of the first field called `name` (lower-case).
fn field(head: &[u8], name: &[u8]) -> Option<String> {
    fields(head)
        .find(|(n, whole)| n.trim_ascii().eq_ignore_ascii_case(name) && whole.contains(&b':'))
        .map(|(n, whole)| {
            let value = &whole[n.len() + 1..];
            String::from_utf8_lossy(value)
                .replace("\r\n", "")
                .trim()
                .to_owned()
        })
}

/// `type/subtype` in lower case and the `boundary` parameter.
fn media_type(v: &str) -> (String, Option<String>) {
    let mut items = v.split(';');
    let media = items.next().unwrap_or("").trim().to_ascii_lowercase();
    let boundary = items.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    });
    (media, boundary)
}

/// `head` with its `Content-Transfer-Encoding` field replaced by `cte`.
fn set_cte(head: &[u8], cte: &str, out: &mut Vec<u8>) {
    for (name, whole) in fields(head) {
        if !name
            .trim_ascii()
            .eq_ignore_ascii_case(b"content-transfer-encoding")
        {
            out.extend_from_slice(whole);
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: ");
    out.extend_from_slice(cte.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// RFC 2045 §6.7: CRLF kept as a line break, lines of at most 76
/// characters (soft breaks `=`), `=XX` for everything but printable ASCII
/// and for white space ending a line; a bare CR or LF is `=0D` / `=0A`.
fn quoted_printable(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut col = 0;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        let rest = &body[i + 1..];
        if b == b'\r' && rest.starts_with(b"\n") {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += 2;
            continue;
        }
        let literal = match b {
            b' ' | b'\t' => !(rest.is_empty() || rest.starts_with(b"\r\n")),
            b'=' => false,
            33..=126 => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        if col + width > 75 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        col += width;
        i += 1;
    }
}
