//! Checksums over the corpus: variants of one message match, unrelated
//! messages do not, malformed MIME never panics.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod corpus;

use corpus::*;
use portcullis_fingerprint::{
    Checksum, FingerprintOptions, Fingerprinter, Fingerprints, HeaderChecksums, HeaderField,
    Normalization, PartKind, fingerprint,
};

fn sim(a: &Fingerprints, b: &Fingerprints) -> f64 {
    a.fuzzy
        .as_ref()
        .unwrap()
        .similarity(b.fuzzy.as_ref().unwrap())
}

const DATE: &str = "30 April 2026";

fn with_raw_body() -> Fingerprinter {
    let mut opts = FingerprintOptions::default();
    opts.raw_body = true;
    Fingerprinter::new(opts)
}

#[test]
fn tracking_token_and_header_date_do_not_change_the_exact_checksum() {
    let a = fingerprint(&plain("Ann", "a81f29c3d0e4", DATE));
    let b = fingerprint(&plain("Ann", "77d1e2f3a4b5", DATE));
    assert!(a.parsed && b.parsed);
    assert_eq!(a.body, b.body);
    assert_eq!(a.parts, b.parts);
    assert_eq!(a.fuzzy, b.fuzzy);
    // The raw body is exact bytes: it does see the token (when asked for).
    assert_eq!(a.raw_body, None, "off by default for parsed messages");
    let raw = with_raw_body();
    assert_ne!(
        raw.fingerprint(&plain("Ann", "a81f29c3d0e4", DATE))
            .raw_body,
        raw.fingerprint(&plain("Ann", "77d1e2f3a4b5", DATE))
            .raw_body
    );
}

#[test]
fn recipient_name_and_body_date_keep_the_fuzzy_fingerprint_near() {
    let base = fingerprint(&plain("Ann", "a81f29c3d0e4", DATE));
    let name = fingerprint(&plain("Bartholomew", "a81f29c3d0e4", DATE));
    let date = fingerprint(&plain("Ann", "a81f29c3d0e4", "2 May 2026"));
    let both = fingerprint(&plain("Chloe", "0f0e0d0c0b0a", "1 June 2026"));
    for (what, v) in [("name", &name), ("date", &date), ("name+date+token", &both)] {
        assert_ne!(base.body, v.body, "{what} changes exact text");
        println!("{what}: similarity {}", sim(&base, v));
        assert!(sim(&base, v) >= 0.6, "{what}: similarity {}", sim(&base, v));
    }
}

#[test]
fn unrelated_messages_are_far() {
    let offer = fingerprint(&plain("Ann", "a81f29c3d0e4", DATE));
    let others: Vec<Fingerprints> = unrelated().iter().map(|m| fingerprint(m)).collect();
    for (i, o) in others.iter().enumerate() {
        assert_ne!(o.body, offer.body);
        assert!(sim(&offer, o) < 0.2, "unrelated {i}: {}", sim(&offer, o));
        for (j, p) in others.iter().enumerate().skip(i + 1) {
            assert_ne!(o.body, p.body);
            assert!(sim(o, p) < 0.2, "{i} vs {j}: {}", sim(o, p));
        }
    }
}

#[test]
fn re_encoding_keeps_the_exact_checksum() {
    let seven = fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "7bit"));
    let qp = fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "quoted-printable"));
    let b64 = fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "base64"));
    assert_eq!(seven.body, qp.body);
    assert_eq!(seven.body, b64.body);
    // And the same as the plain rendering with a different header block.
    assert_eq!(
        seven.body,
        fingerprint(&plain("Ann", "a81f29c3d0e4", DATE)).body
    );
    let raw = with_raw_body();
    assert_ne!(
        raw.fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "7bit"))
            .raw_body,
        raw.fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "base64"))
            .raw_body
    );

    // With transfer decoding off, the encodings differ.
    let mut opts = FingerprintOptions::default();
    opts.normalization.decode_transfer = false;
    let raw = Fingerprinter::new(opts);
    let (r7, rq, rb) = (
        raw.fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "7bit")),
        raw.fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "quoted-printable")),
        raw.fingerprint(&encoded("Ann", "a81f29c3d0e4", DATE, "base64")),
    );
    assert_ne!(r7.body, rb.body);
    assert_ne!(rq.body, rb.body);
    assert_eq!(r7.body, seven.body, "7bit text needs no decoding");
}

#[test]
fn charsets_are_converted_to_utf8() {
    let text = "Très chère Zoë, la société vous offre des réductions étonnantes.\n";
    let utf8 = fingerprint(&utf8_message(text));
    let latin1 = fingerprint(&latin1_message(text, "iso-8859-1"));
    let cp1252 = fingerprint(&latin1_message(text, "windows-1252"));
    assert_eq!(utf8.body, latin1.body);
    assert_eq!(utf8.body, cp1252.body);
    assert_eq!(
        utf8.parts[0].checksum,
        Checksum::of(b"tr\xc3\xa8s ch\xc3\xa8re zo\xc3\xab, la soci\xc3\xa9t\xc3\xa9 vous offre des r\xc3\xa9ductions \xc3\xa9tonnantes.")
    );

    // Off: the bytes sent decide.
    let mut opts = FingerprintOptions::default();
    opts.normalization.charset_to_utf8 = false;
    let raw = Fingerprinter::new(opts);
    assert_ne!(
        raw.fingerprint(&utf8_message(text)).body,
        raw.fingerprint(&latin1_message(text, "iso-8859-1")).body
    );
}

#[test]
fn multibyte_charsets_are_converted() {
    // "こんにちは 世界" in Shift_JIS and in UTF-8.
    let sjis: &[u8] = b"\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd \x90\xa2\x8a\x45";
    let mut m =
        crlf("From: a@b.example\nContent-Type: text/plain; charset=Shift_JIS\n\n").into_bytes();
    m.extend_from_slice(sjis);
    let u = fingerprint(&utf8_message("こんにちは 世界"));
    let s = fingerprint(&m);
    assert_eq!(u.parts[0].checksum, s.parts[0].checksum);
    assert_eq!(
        u.parts[0].checksum,
        Checksum::of("こんにちは 世界".as_bytes())
    );
}

#[test]
fn html_is_reduced_to_text_and_tracking_dropped() {
    let a = fingerprint(&html("Ann", "a81f29c3d0e4", DATE));
    let b = fingerprint(&html("Ann", "5e6f7a8b9c0d", DATE));
    assert_eq!(a.parts.len(), 1);
    assert_eq!(a.parts[0].kind, PartKind::Html);
    assert_eq!(
        a.body, b.body,
        "tracking ids in links and pixels are dropped"
    );
    // The HTML rendering shares most words with the plain one.
    let plain = fingerprint(&plain("Ann", "a81f29c3d0e4", DATE));
    assert!(sim(&a, &plain) > 0.5, "html vs plain {}", sim(&a, &plain));

    // Off: the markup is hashed, and still the tracking is dropped by its own step.
    let mut opts = FingerprintOptions::default();
    opts.normalization.html_to_text = false;
    let markup = Fingerprinter::new(opts);
    let ma = markup.fingerprint(&html("Ann", "a81f29c3d0e4", DATE));
    assert_ne!(ma.body, a.body);
    assert_eq!(
        ma.body,
        markup.fingerprint(&html("Ann", "5e6f7a8b9c0d", DATE)).body
    );
}

#[test]
fn multipart_parts_and_attachments() {
    let pdf = attachment_bytes();
    let a = fingerprint(&multipart("Ann", "a81f29c3d0e4", DATE, &pdf, 76));
    let kinds: Vec<PartKind> = a.parts.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [PartKind::Text, PartKind::Html, PartKind::Attachment]
    );
    // The attachment checksum is blake3 of the decoded file: `b3sum catalogue.pdf`.
    assert_eq!(a.parts[2].checksum, Checksum::of(&pdf));
    // Text part equals the standalone plain rendering's part.
    assert_eq!(
        a.parts[0].checksum,
        fingerprint(&plain("Ann", "a81f29c3d0e4", DATE)).parts[0].checksum
    );
    // Re-wrapped base64 and a new boundary/token: same checksums.
    let b = fingerprint(&multipart("Ann", "0123456789ab", DATE, &pdf, 64));
    assert_eq!(a.body, b.body);
    assert_eq!(a.parts, b.parts);
    // A different attachment changes the body and that part only.
    let mut other = pdf.clone();
    other[100] ^= 1;
    let c = fingerprint(&multipart("Ann", "a81f29c3d0e4", DATE, &other, 76));
    assert_ne!(a.body, c.body);
    assert_eq!(a.parts[..2], c.parts[..2]);
    assert_ne!(a.parts[2], c.parts[2]);
}

#[test]
fn malformed_mime_never_panics_and_unparseable_gets_raw_checksum() {
    for (i, m) in malformed().iter().enumerate() {
        let fp = fingerprint(m);
        assert_eq!(fp, fingerprint(m), "{i}: deterministic");
        if !fp.parsed {
            assert!(fp.parts.is_empty(), "{i}");
        }
    }
    // Empty input cannot be parsed: it still gets a raw-body checksum.
    let empty = fingerprint(b"");
    assert!(!empty.parsed);
    assert_eq!(empty.raw_body, Some(Checksum::of(b"")));
    assert_eq!(empty.fuzzy, None);
    // No blank line: the whole input is the body.
    let raw = with_raw_body();
    let no_headers = raw.fingerprint(b"no headers at all, just text");
    assert_eq!(
        no_headers.raw_body,
        Some(Checksum::of(b"no headers at all, just text"))
    );
    // Body after the first blank line, bare LF or CRLF.
    let body = Some(Checksum::of(b"body"));
    assert_eq!(raw.fingerprint(b"A: b\n\nbody").raw_body, body);
    assert_eq!(raw.fingerprint(b"A: b\r\n\r\nbody").raw_body, body);
}

#[test]
fn header_checksums_on_request() {
    assert!(
        fingerprint(&plain("Ann", "a1", DATE)).headers.is_empty(),
        "off by default"
    );
    let mut opts = FingerprintOptions::default();
    opts.headers = HeaderChecksums::all();
    let f = Fingerprinter::new(opts);
    let m = |msgid: &str, from: &str, subject: &str| {
        crlf(&format!(
            "From: {from}\nSubject: {subject}\nMessage-ID: <{msgid}>\n\nhello there\n"
        ))
        .into_bytes()
    };
    let get = |fp: &Fingerprints, field| fp.headers.iter().find(|h| h.0 == field).map(|h| h.1);
    let a = f.fingerprint(&m(
        "20261124.ab12CD@mx.example",
        "News <News@Shop.example>",
        "Order 123456 shipped",
    ));
    let b = f.fingerprint(&m(
        "20261125.zz9XY@MX.example",
        "news@shop.example",
        "order 998877 SHIPPED",
    ));
    let c = f.fingerprint(&m(
        "ab12CD.20261124@mx.example",
        "other@shop.example",
        "Order shipped",
    ));
    let d = f.fingerprint(&m(
        "20261124.ab12CD@elsewhere.example",
        "news@shop.example",
        "Order 123456 shipped",
    ));
    assert_eq!(a.headers.len(), 3);
    for field in [
        HeaderField::From,
        HeaderField::Subject,
        HeaderField::MessageId,
    ] {
        assert_eq!(get(&a, field), get(&b, field), "{field:?}");
        assert_ne!(get(&a, field), get(&c, field), "{field:?}");
    }
    assert_ne!(
        get(&a, HeaderField::MessageId),
        get(&d, HeaderField::MessageId),
        "domain counts"
    );
}

#[test]
fn normalisation_off_is_strict() {
    let mut opts = FingerprintOptions::default();
    opts.normalization = Normalization::none();
    let f = Fingerprinter::new(opts);
    let a = f.fingerprint(&plain("Ann", "a81f29c3d0e4", DATE));
    let b = f.fingerprint(&plain("Ann", "77d1e2f3a4b5", DATE));
    assert_ne!(a.body, b.body);
}

#[test]
fn list_id_is_read() {
    let m = crlf("From: a@b.example\nList-Id: Announcements <Announce.Lists.Example>\n\nhi\n");
    assert_eq!(
        fingerprint(m.as_bytes()).list_id.as_deref(),
        Some("announce.lists.example")
    );
}
