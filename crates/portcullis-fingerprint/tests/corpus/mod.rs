//! A test corpus built in code: one spam run in many renderings, and
//! unrelated messages. No downloads.
#![allow(dead_code)]

/// The text of the spam run, with the per-recipient parts filled in.
pub(crate) fn offer_text(name: &str, token: &str, date: &str) -> String {
    format!(
        "Dear {name},\n\
         \n\
         Our spring collection has arrived and, for loyal customers only, every\n\
         garden chair, parasol and outdoor table is half price until {date}.\n\
         Delivery is free on orders above forty euros, and returns are simple.\n\
         Your personal discount code is SPRING-{token}.\n\
         See the whole range at https://shop.example/spring?utm_source=mail&rid={token}\n\
         \n\
         Kind regards,\n\
         The Garden Shop team\n"
    )
}

pub(crate) fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn headers(to: &str, date: &str, msgid: &str, extra: &str) -> String {
    format!(
        "From: Garden Shop <news@shop.example>\n\
         To: {to}\n\
         Subject: Spring sale: half price\n\
         Date: {date}\n\
         Message-ID: <{msgid}@mx.shop.example>\n\
         MIME-Version: 1.0\n{extra}"
    )
}

/// Plain text, 7bit.
pub(crate) fn plain(name: &str, token: &str, date: &str) -> Vec<u8> {
    crlf(&format!(
        "{}Content-Type: text/plain; charset=utf-8\n\n{}",
        headers(
            &format!("{name} <x@example.org>"),
            "Tue, 24 Nov 2026 10:00:00 +0000",
            &format!("{token}.1"),
            ""
        ),
        offer_text(name, token, date)
    ))
    .into_bytes()
}

/// Quoted-printable encoding of `bytes` (RFC 2045 §6.7), soft breaks at 60.
pub(crate) fn qp(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut line = 0;
    for &b in bytes {
        let enc = if b == b'\n' {
            out.push('\n');
            line = 0;
            continue;
        } else if (33..=126).contains(&b) && b != b'=' || b == b' ' {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if line + enc.len() > 60 {
            out.push_str("=\n");
            line = 0;
        }
        line += enc.len();
        out.push_str(&enc);
    }
    out
}

/// Base64 (RFC 2045 §6.8) with lines of `width` characters.
pub(crate) fn b64(bytes: &[u8], width: usize) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.len();
        let v = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                s.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(width)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same text, transfer-encoded as given ("7bit", "quoted-printable", "base64").
pub(crate) fn encoded(name: &str, token: &str, date: &str, encoding: &str) -> Vec<u8> {
    let text = offer_text(name, token, date);
    let body = match encoding {
        "quoted-printable" => qp(text.as_bytes()),
        "base64" => b64(text.as_bytes(), 76),
        _ => text,
    };
    crlf(&format!(
        "{}Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {encoding}\n\n{body}\n",
        headers("x@example.org", "Wed, 25 Nov 2026 08:30:00 +0100", "enc", ""),
    ))
    .into_bytes()
}

/// Latin-1 text: `text` must be representable in ISO-8859-1.
pub(crate) fn latin1_message(text: &str, declared: &str) -> Vec<u8> {
    let mut out = crlf(&format!(
        "{}Content-Type: text/plain; charset={declared}\nContent-Transfer-Encoding: 8bit\n\n",
        headers("x@example.org", "Tue, 24 Nov 2026 10:00:00 +0000", "l1", "")
    ))
    .into_bytes();
    out.extend(text.chars().map(|c| u8::try_from(u32::from(c)).unwrap()));
    out
}

pub(crate) fn utf8_message(text: &str) -> Vec<u8> {
    let mut out = crlf(&format!(
        "{}Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
        headers("x@example.org", "Tue, 24 Nov 2026 10:00:00 +0000", "u8", "")
    ))
    .into_bytes();
    out.extend_from_slice(text.as_bytes());
    out
}

/// An HTML rendering of the offer, with tracking in links and a pixel.
pub(crate) fn html(name: &str, token: &str, date: &str) -> Vec<u8> {
    let body = format!(
        "<html><head><style>p {{ color: green }}</style><title>Sale</title></head><body>\n\
         <p>Dear <b>{name}</b>,</p>\n\
         <p>Our spring collection has arrived and, for loyal customers only, every\n\
         garden chair, parasol and outdoor table is half price until {date}.</p>\n\
         <p>Delivery is free on orders above forty euros, and returns are simple.</p>\n\
         <p>Your personal discount code is SPRING-{token}.</p>\n\
         <p><a href=\"https://shop.example/spring?utm_source=mail&amp;rid={token}\">See the whole range</a></p>\n\
         <img src=\"https://t.shop.example/open.gif?rid={token}\" width=1 height=1>\n\
         <p>Kind regards,<br>The Garden Shop team</p></body></html>\n"
    );
    crlf(&format!(
        "{}Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n{}",
        headers("x@example.org", "Tue, 24 Nov 2026 10:00:00 +0000", "html", ""),
        qp(body.as_bytes())
    ))
    .into_bytes()
}

/// multipart/mixed: multipart/alternative (text + html) and a base64 PDF-ish attachment.
pub(crate) fn multipart(
    name: &str,
    token: &str,
    date: &str,
    attachment: &[u8],
    b64_width: usize,
) -> Vec<u8> {
    let text = offer_text(name, token, date);
    let html_part = String::from_utf8(html(name, token, date)).unwrap();
    let html_body = html_part.split("\r\n\r\n").nth(1).unwrap().to_owned();
    crlf(&format!(
        "{}Content-Type: multipart/mixed; boundary=\"outer-{token}\"\n\n\
         This is a multi-part message in MIME format.\n\
         --outer-{token}\n\
         Content-Type: multipart/alternative; boundary=\"alt-{token}\"\n\n\
         --alt-{token}\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\n\
         {}\n\
         --alt-{token}\n\
         Content-Type: text/html; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\n\
         {html_body}\n\
         --alt-{token}--\n\
         --outer-{token}\n\
         Content-Type: application/pdf; name=\"catalogue.pdf\"\n\
         Content-Disposition: attachment; filename=\"catalogue.pdf\"\n\
         Content-Transfer-Encoding: base64\n\n\
         {}\n\
         --outer-{token}--\n",
        headers(
            &format!("{name} <x@example.org>"),
            "Tue, 24 Nov 2026 10:00:00 +0000",
            token,
            ""
        ),
        qp(text.as_bytes()),
        b64(attachment, b64_width),
    ))
    .into_bytes()
}

pub(crate) fn attachment_bytes() -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    v.extend((0u32..3000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    v
}

/// Unrelated messages.
pub(crate) fn unrelated() -> Vec<Vec<u8>> {
    let texts = [
        "Hi team, the quarterly infrastructure review moved to Thursday afternoon. \
         Please bring the capacity numbers for the storage cluster and the list of \
         open incidents from October so we can close the remaining action items.",
        "Your password reset was requested for the account registered with this \
         address. If you did not ask for it you can ignore this message; nothing \
         will change until the link is used within the next hour.",
        "Mum, the train gets in at half past six so no need to wait with dinner. \
         I will bring the book you lent me last summer and the photos from the \
         wedding, the printed ones came out much better than expected.",
        "Invoice attached for the consulting work in November: forty hours of \
         migration planning, the database upgrade rehearsal and two workshops \
         with the operations staff about backup and restore procedures.",
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            crlf(&format!(
                "From: someone{i}@other.example\nTo: x@example.org\nSubject: note {i}\n\n{t}\n"
            ))
            .into_bytes()
        })
        .collect()
}

/// Malformed MIME: each must fingerprint without panicking.
pub(crate) fn malformed() -> Vec<Vec<u8>> {
    vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"no headers at all, just text".to_vec(),
        b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nunterminated part".to_vec(),
        b"Content-Type: multipart/mixed\r\n\r\n--missing-boundary-param\r\n\r\nx".to_vec(),
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!==\r\n".to_vec(),
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbad =ZZ escape =\r\n".to_vec(),
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n\xff\xfe\x80 bytes".to_vec(),
        b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nx".to_vec(),
        b"Content-Type: text/html\r\n\r\n<a href=\"https://x.example/?q=1<b <!-- &#xFFFFFFFFFF; <script>".to_vec(),
        vec![0u8; 64],
        (0..=255u8).collect(),
        b"Subject: =?utf-8?B?!!!?=\r\nFrom: <<>>@@\r\nMessage-ID: <<>>\r\n\r\nbody".to_vec(),
    ]
}
