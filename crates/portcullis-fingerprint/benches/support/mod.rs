//! The benchmark message, shared by both benches.

/// A typical marketing message: multipart/alternative text + HTML (both
/// quoted-printable) and a small base64 attachment, ~20 KiB.
pub(crate) fn sample() -> Vec<u8> {
    let para = "Our spring collection has arrived and, for loyal customers only, every \
                garden chair, parasol and outdoor table is half price until 30 April 2026. \
                Delivery is free on orders above forty euros, and returns are simple. \
                See https://shop.example/spring?utm_source=mail&rid=a81f29c3d0e4 today.\n";
    let text: String = (0..20).map(|i| format!("{i}. {para}")).collect();
    let html: String = (0..20)
        .map(|i| format!("<p class=\"x\">{i}. <b>{para}</b><a href=\"https://shop.example/p{i}?rid=a81f29c3\">more</a></p>\n"))
        .collect();
    let qp = |s: &str| s.replace('=', "=3D");
    let attachment: String = (0..6000u32)
        .map(|i| (b'A' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26) as char)
        .collect::<String>()
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned() + "\r\n")
        .collect();
    format!(
        "From: Garden Shop <news@shop.example>\r\nTo: x@example.org\r\nSubject: Spring sale\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a81f29c3@mx.shop.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n\
         --alt--\r\n--outer\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
         --outer--\r\n",
        qp(&text).replace('\n', "\r\n"),
        qp(&html).replace('\n', "\r\n"),
        attachment
    )
    .into_bytes()
}
