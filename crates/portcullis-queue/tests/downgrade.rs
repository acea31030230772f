//! The 8-bit to 7-bit MIME conversion against mail-parser as the oracle:
//! the converted message is 7-bit and every part decodes to the octets it
//! had; what cannot be converted is left alone.

#![allow(clippy::unwrap_used)]

use mail_parser::{MessageParser, MimeHeaders};
use portcullis_queue::downgrade::to_seven_bit;
use proptest::prelude::*;

/// One leaf part: (content type, encoding field or none, body).
type Leaf = (&'static str, Option<&'static str>, Vec<u8>);

fn leaf() -> impl Strategy<Value = Leaf> {
    let any_bytes = proptest::collection::vec(any::<u8>(), 0..300);
    let text = "[a-zA-Z0-9 äöüßé€.=\t\r\n-]{0,200}".prop_map(String::into_bytes);
    prop_oneof![
        (
            prop_oneof![Just(None), Just(Some("8bit")), Just(Some("binary"))],
            any_bytes
        )
            .prop_map(|(cte, b)| ("application/octet-stream", cte, b)),
        (
            prop_oneof![Just(None), Just(Some("8bit")), Just(Some("7bit"))],
            text
        )
            .prop_map(|(cte, b)| ("text/plain; charset=utf-8", cte, b)),
    ]
}

const BOUNDARY: &str = "=_portcullis_test_boundary";

/// A multipart/mixed message (or a single part when one leaf and
/// `single`), ASCII header fields, CRLF line ends.
fn message(leaves: &[Leaf], single: bool) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n".to_vec();
    let head = |m: &mut Vec<u8>, (ct, cte, _): &Leaf| {
        m.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        if let Some(cte) = cte {
            m.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
        }
        m.extend_from_slice(b"\r\n");
    };
    if single && leaves.len() == 1 {
        head(&mut m, &leaves[0]);
        m.extend_from_slice(&leaves[0].2);
        return m;
    }
    m.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\npreamble\r\n")
            .as_bytes(),
    );
    for l in leaves {
        m.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        head(&mut m, l);
        m.extend_from_slice(&l.2);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(format!("--{BOUNDARY}--\r\nepilogue\r\n").as_bytes());
    m
}

/// Each leaf's decoded octets, as mail-parser reads them.
fn decoded(raw: &[u8]) -> Vec<Vec<u8>> {
    let msg = MessageParser::default().parse(raw).unwrap();
    msg.parts
        .iter()
        .filter(|p| {
            p.content_type()
                .is_none_or(|c| !c.ctype().eq_ignore_ascii_case("multipart"))
        })
        .map(|p| p.contents().to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn converted_messages_are_seven_bit_and_decode_to_the_same_parts(
        leaves in proptest::collection::vec(leaf(), 1..4),
        single in any::<bool>(),
    ) {
        let original = message(&leaves, single);
        // A body that happened to hold the boundary would change the structure.
        prop_assume!(leaves.iter().all(|l| !l.2.windows(BOUNDARY.len()).any(|w| w == BOUNDARY.as_bytes())));
        let converted = to_seven_bit(&original);
        prop_assert!(converted.is_ascii(), "{}", String::from_utf8_lossy(&converted));
        // mail-parser decodes the quoted-printable parts to the octets the
        // original 8-bit / binary parts held.
        prop_assert_eq!(decoded(&converted), decoded(&original));
        // Converting again changes nothing.
        let again = to_seven_bit(&converted);
        prop_assert_eq!(again.as_ref(), converted.as_ref());
        // Lines stay short enough for SMTP (RFC 5321 §4.5.3.1.6).
        for line in converted.split(|&b| b == b'\n') {
            prop_assert!(line.len() <= 998);
        }
    }

    #[test]
    fn any_input_is_handled_and_ascii_input_is_left_alone(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut m = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n".to_vec();
        m.extend_from_slice(&bytes);
        let out = to_seven_bit(&m);
        if m.is_ascii() {
            prop_assert!(matches!(out, std::borrow::Cow::Borrowed(_)));
        }
        let _ = to_seven_bit(&bytes);
    }
}

#[test]
fn what_mime_cannot_express_in_seven_bits_is_left_alone() {
    // Not MIME at all.
    let plain = "Subject: t\r\n\r\nGrüße\r\n".as_bytes();
    assert_eq!(to_seven_bit(plain).as_ref(), plain);
    // 8-bit header fields stay; the body is still converted.
    let header = "MIME-Version: 1.0\r\nSubject: Grüße\r\n\r\nä\r\n".as_bytes();
    assert_eq!(
        std::str::from_utf8(&to_seven_bit(header)).unwrap(),
        "MIME-Version: 1.0\r\nSubject: Grüße\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A4\r\n"
    );
    // A part that says base64 and is not.
    let liar = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nä\r\n".as_bytes();
    assert_eq!(to_seven_bit(liar).as_ref(), liar);
}

#[test]
fn an_encapsulated_message_is_converted_inside_and_relabelled_7bit() {
    let m = "MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\
             \r\n\
             --b\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             Köln\r\n\
             --b--\r\n";
    assert_eq!(
        std::str::from_utf8(&to_seven_bit(m.as_bytes())).unwrap(),
        "MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\
         \r\n\
         --b\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         K=C3=B6ln\r\n\
         --b--\r\n"
    );
}

#[test]
fn quoted_printable_lines_are_soft_broken_and_trailing_space_encoded() {
    let mut body = "é".repeat(40);
    body.push_str(" \r\nend\t");
    let m = format!("MIME-Version: 1.0\r\n\r\n{body}");
    let out = String::from_utf8(to_seven_bit(m.as_bytes()).into_owned()).unwrap();
    let body_out = out.split("\r\n\r\n").nth(1).unwrap();
    for line in body_out.split("\r\n") {
        assert!(line.len() <= 76, "{line}");
    }
    assert!(body_out.contains("=20\r\nend=09"), "{body_out}");
    assert_eq!(decoded(out.as_bytes()), decoded(m.as_bytes()));
}
