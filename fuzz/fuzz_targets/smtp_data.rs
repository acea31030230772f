#![no_main]
//! DATA and BDAT decoding. DATA: the decoder gives the same result for any
//! split, ends only at <CRLF>.<CRLF>, and a clean message re-stuffed
//! decodes to itself; without a copy (`decode_spans`) it hands out the same
//! message as slices of the input. BDAT: the chunk comes out exactly as
//! sent.

use libfuzzer_sys::fuzz_target;
use portcullis_core::{Client, Verdict};
use portcullis_smtp::{
    DataDecoder, DataError, DataStatus, Event, Session, SessionConfig, dot_stuff,
};

fn decode(data: &[u8], chunk: usize) -> (Option<usize>, Option<DataError>, Vec<u8>) {
    decode_with(DataDecoder::new(Some(1000), Some(1 << 20)), data, chunk)
}

fn decode_with(
    mut d: DataDecoder,
    data: &[u8],
    chunk: usize,
) -> (Option<usize>, Option<DataError>, Vec<u8>) {
    let mut out = Vec::new();
    let mut start = 0;
    for part in data.chunks(chunk.max(1)) {
        if let DataStatus::Complete { consumed } = d.decode(part, &mut out) {
            return (Some(start + consumed), d.error(), out);
        }
        start += part.len();
    }
    (None, d.error(), out)
}

/// `decode_with` through `decode_spans`: checks that every span is
/// non-empty and, unless it is the CR that a refused message may carry over
/// from the call before or a fold, a slice of its call's input.
fn decode_spans_with(
    mut d: DataDecoder,
    data: &[u8],
    chunk: usize,
) -> (Option<usize>, Option<DataError>, Vec<u8>) {
    let mut out = Vec::new();
    let mut start = 0;
    for part in data.chunks(chunk.max(1)) {
        let range = part.as_ptr_range();
        let status = d.decode_spans(part, |span| {
            assert!(!span.is_empty());
            let inside = range.start <= span.as_ptr() && span.as_ptr_range().end <= range.end;
            assert!(inside || span == b"\r" || span == b"\r\n ", "{span:?}");
            out.extend_from_slice(span);
        });
        if let DataStatus::Complete { consumed } = status {
            return (Some(start + consumed), d.error(), out);
        }
        start += part.len();
    }
    (None, d.error(), out)
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(ctl) + 1;
    let whole = decode(data, data.len().max(1));
    let split = decode(data, chunk);
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1, split.1);
    // The spans, joined, are what `decode` appended, error or not.
    let spans = decode_spans_with(DataDecoder::new(Some(1000), Some(1 << 20)), data, chunk);
    assert_eq!(spans, split);
    if let (Some(end), None) = (whole.0, whole.1) {
        assert_eq!(whole.2, split.2);
        // Only <CRLF>.<CRLF> ends the data (the DATA line's CRLF counts).
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(&data[..end]);
        assert!(framed.ends_with(b"\r\n.\r\n"));
        // A clean message, stuffed again, decodes to itself (the wire form
        // may differ: a lone dot before text is dropped, RFC 5321 §4.5.2).
        let mut again = Vec::new();
        dot_stuff(&whole.2, &mut again);
        again.extend_from_slice(b".\r\n");
        let (end2, err2, out2) = decode(&again, chunk);
        assert_eq!(end2, Some(again.len()));
        assert_eq!(err2, None);
        assert_eq!(out2, whole.2);
    }

    // Folding (LongLines::Fold): the same for any split, and a clean
    // message comes out with no line over the limit.
    let max_line = usize::from(ctl % 64) + 4;
    let folder = || DataDecoder::new(None, Some(1 << 20)).fold_long_lines(max_line);
    let folded = decode_with(folder(), data, data.len().max(1));
    let folded_split = decode_with(folder(), data, chunk);
    assert_eq!(folded.0, folded_split.0);
    assert_eq!(folded.1, folded_split.1);
    assert_eq!(decode_spans_with(folder(), data, chunk), folded_split);
    if let (Some(_), None) = (folded.0, folded.1) {
        assert_eq!(folded.2, folded_split.2);
        for line in folded.2.split_inclusive(|&b| b == b'\n') {
            assert!(line.len() <= max_line, "{} > {max_line}", line.len());
        }
    }

    // BDAT: the same octets, whatever they are, come out unchanged.
    let mut s = Session::new(
        SessionConfig::new("mx.example"),
        Client::new("192.0.2.1:25".parse().unwrap()),
    );
    let mut wire =
        b"EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n".to_vec();
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", data.len()).as_bytes());
    wire.extend_from_slice(data);
    let mut body = Vec::new();
    let mut complete = false;
    for part in wire.chunks(chunk) {
        s.receive(part);
        while let Some(e) = s.poll_event() {
            match e {
                Event::MessageChunk(c) => body.extend_from_slice(&c),
                Event::MessageComplete { decision, .. } => {
                    complete = true;
                    s.decide(decision, Verdict::Accept).expect("pending");
                }
                Event::Connect { decision }
                | Event::Helo { decision, .. }
                | Event::MailFrom { decision, .. }
                | Event::RcptTo { decision, .. }
                | Event::DataStart { decision, .. } => {
                    s.decide(decision, Verdict::Accept).expect("pending")
                }
                _ => {}
            }
        }
    }
    assert!(complete);
    assert_eq!(body, data);
});
