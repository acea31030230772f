//! The DATA workloads, shared by the criterion bench (`smtp`) and the
//! interleaved one (`paired`): the same message and the same work.

use portcullis_smtp::{DataDecoder, DataStatus};

/// About 100 KiB of text in 72-octet lines, some starting with a dot
/// (stuffed on the wire), ended by `\r\n.\r\n`.
pub(crate) fn stuffed_message() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"From: a@example.org\r\nTo: b@example.net\r\nSubject: benchmark\r\n\r\n");
    let mut i = 0usize;
    while m.len() < 100 * 1024 {
        if i.is_multiple_of(17) {
            m.extend_from_slice(b"..");
        }
        let text = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ.,0123456789";
        for j in 0..70 {
            m.push(text[(i * 7 + j) % text.len()]);
        }
        m.extend_from_slice(b"\r\n");
        i += 1;
    }
    m.extend_from_slice(b".\r\n");
    m
}

/// The headline: the message handed out as spans of the input, no copy
/// (a caller that writes or hashes the message reads each span once; here
/// the spans' lengths are added up). Checked on the way: every CR paired
/// with an LF and the reverse (bare ones refused), the end only at
/// <CRLF>.<CRLF>, lines of at most `max_line` octets, the size.
pub(crate) fn spans(input: &[u8], max_line: Option<usize>) -> usize {
    let mut d = DataDecoder::new(max_line, None);
    let mut n = 0;
    let status = d.decode_spans(input, |span| n += span.len());
    assert!(matches!(status, DataStatus::Complete { .. }));
    n
}

/// The same checks, the message copied into a Vec as smtp-proto does.
pub(crate) fn copied(input: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut d = DataDecoder::new(Some(1000), None);
    let status = d.decode(input, out);
    assert!(matches!(status, DataStatus::Complete { .. }));
    out.len()
}

/// smtp-proto 0.2.5: memchr's memmem for "\n." (AVX2, picked at run
/// time), the octet before the LF compared with CR, each span copied into
/// the Vec. Bare CRs and LFs elsewhere and long lines are not looked for.
pub(crate) fn smtp_proto(input: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut r = smtp_proto::request::receiver::DataReceiver::new();
    let done = r.ingest(&mut input.iter(), out);
    assert!(done);
    out.len()
}
