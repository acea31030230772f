//! Property tests: any split of the same bytes gives the same events and
//! replies; no input panics; dot-stuffing round-trips.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use portcullis_core::{Client, Reply, Verdict};
use portcullis_smtp::{
    AuthMechanisms, DataDecoder, DataError, DataStatus, Session, SessionConfig, dot_stuff,
};
use proptest::prelude::*;

/// Pieces a client stream is built from: commands, message text, and the
/// awkward sequences (bare CR/LF, stuffed dots, BDAT chunks).
const PIECES: &[&[u8]] = &[
    b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n",
    b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT 7\r\n",
    b"MAIL FROM:<a@x.example> BODY=BINARYMIME\r\nRCPT TO:<b@y.example>\r\nBDAT 4 LAST\r\n",
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"MAIL FROM:<a@x.example>\r\n",
    b"MAIL FROM:<a@x.example> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<> RET=HDRS ENVID=x+2B\r\n",
    b"RCPT TO:<b@y.example>\r\n",
    b"RCPT TO:<c@y.example> NOTIFY=FAILURE ORCPT=rfc822;c@y.example\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 5\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"AUTH LOGIN\r\n",
    b"YWxpY2U=\r\n",
    b"*\r\n",
    b"STARTTLS\r\n",
    b"QUIT\r\n",
    b"Subject: x\r\n\r\nbody\r\n",
    b"..stuffed\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"x\ry\r\n",
    b"bare\n",
    b"12345",
    b"\r\n",
    b"\r",
    b"\n",
    b".",
    b"GARBAGE\r\n",
];

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(PIECES).prop_map(|p| p.to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..40,
    )
    // Most sessions greet first, so that transactions get somewhere.
    .prop_map(|parts| {
        let mut v = b"EHLO client.example\r\n".to_vec();
        v.extend(parts.concat());
        v
    })
}

fn config() -> SessionConfig {
    let mut c = SessionConfig::new("mx.example");
    c.extensions.starttls = true;
    c.extensions.auth = AuthMechanisms::PLAIN_LOGIN;
    c.extensions.binary_mime = true;
    c.auth_without_tls = true;
    c.max_recipients = 3;
    c.max_message_size = 200;
    c.max_bad_commands = 8;
    c
}

/// Feed `bytes` cut at `cuts`, answer the n-th decision by a fixed rule,
/// and record events (message chunks merged per message) and output.
fn drive(bytes: &[u8], cuts: &[usize]) -> (Vec<String>, Vec<u8>) {
    let mut s = Session::new(config(), Client::new("192.0.2.1:25".parse().unwrap()));
    let (mut events, out) = portcullis_smtp::testing::drive(&mut s, bytes, cuts, |n| {
        if n % 11 == 6 {
            Verdict::Reject(Reply::policy_rejected("no"))
        } else if n % 13 == 9 {
            Verdict::Defer(Reply::policy_deferred("later"))
        } else {
            Verdict::Accept
        }
    });
    events.push(format!("closed={}", s.is_closed()));
    (events, out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_split_same_events_and_replies(
        bytes in stream(),
        mut cuts in prop::collection::vec(0usize..2000, 0..30),
    ) {
        cuts.sort_unstable();
        let whole = drive(&bytes, &[]);
        let split = drive(&bytes, &cuts);
        let every: Vec<usize> = (1..bytes.len()).collect();
        let bytewise = drive(&bytes, &every);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &bytewise);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(0usize..600, 0..10),
    ) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let _ = drive(&bytes, &cuts);
    }

    #[test]
    fn dot_stuffing_round_trips(
        lines in prop::collection::vec(
            prop::collection::vec(any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..30),
            0..20,
        ),
        cuts in prop::collection::vec(0usize..800, 0..8),
    ) {
        let mut message = Vec::new();
        for l in &lines {
            message.extend_from_slice(l);
            message.extend_from_slice(b"\r\n");
        }
        let mut wire = Vec::new();
        dot_stuff(&message, &mut wire);
        wire.extend_from_slice(b".\r\nNEXT");
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut d = DataDecoder::new(Some(1000), None);
        let (end, out) = decode_in_pieces(&mut d, &wire, &cuts);
        prop_assert_eq!(end, Some(wire.len() - 4));
        prop_assert_eq!(d.error(), None);
        prop_assert_eq!(out, message);
    }

    #[test]
    fn decoder_split_invariant(
        bytes in stream(),
        mut cuts in prop::collection::vec(0usize..2000, 0..20),
    ) {
        cuts.sort_unstable();
        let run = |cuts: &[usize]| {
            let mut d = DataDecoder::new(Some(40), Some(300));
            let (end, out) = decode_in_pieces(&mut d, &bytes, cuts);
            // Output is meaningful only for a message without error.
            let out = if d.error().is_none() { Some(out) } else { None };
            (end, d.error(), out, d.size())
        };
        prop_assert_eq!(run(&[]), run(&cuts));
    }
}

/// Feed `bytes` to `d` in pieces cut at the sorted offsets `cuts`, stopping
/// at the end of data: where the data ended (octets consumed in all), if it
/// did, and what the decoder wrote.
fn decode_in_pieces(d: &mut DataDecoder, bytes: &[u8], cuts: &[usize]) -> (Option<usize>, Vec<u8>) {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let c = c.clamp(start, bytes.len());
        if let DataStatus::Complete { consumed } = d.decode(&bytes[start..c], &mut out) {
            return (Some(start + consumed), out);
        }
        start = c;
    }
    (None, out)
}

/// The DATA rules written the slow, obvious way, one octet at a time: the
/// oracle for the optimised decoder.
fn reference_decode(input: &[u8], max_line: usize) -> (Option<usize>, Option<DataError>, Vec<u8>) {
    let mut out = Vec::new();
    let (mut bare, mut long) = (false, false);
    let mut line_start = true; // after a real CRLF (the DATA line's counts)
    let mut line_len = 0usize; // wire octets of the current line so far
    let verdict = |bare: bool, long: bool| {
        if bare {
            Some(DataError::BareNewline)
        } else if long {
            Some(DataError::LineTooLong)
        } else {
            None
        }
    };
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if line_start && b == b'.' {
            if input.get(i + 1) == Some(&b'\r') && input.get(i + 2) == Some(&b'\n') {
                return (Some(i + 3), verdict(bare, long), out);
            }
            line_start = false;
            line_len += 1; // the stuffed dot is on the wire, not in the message
            i += 1;
            continue;
        }
        line_start = false;
        line_len += 1;
        if b == b'\n' {
            let crlf = i > 0 && input[i - 1] == b'\r';
            bare |= !crlf;
            long |= line_len > max_line;
            line_len = 0;
            line_start = crlf;
        } else if b == b'\r' && i + 1 < input.len() && input[i + 1] != b'\n' {
            bare = true;
        }
        out.push(b);
        i += 1;
    }
    (None, verdict(bare, long), out)
}

fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        stream(),
        prop::collection::vec(prop::sample::select(&b"\r\n.a"[..]), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decoder_matches_reference(
        bytes in nasty_bytes(),
        max_line in 3usize..40,
        mut cuts in prop::collection::vec(0usize..2000, 0..10),
    ) {
        cuts.sort_unstable();
        let (want_end, want_err, want_out) = reference_decode(&bytes, max_line);
        let mut d = DataDecoder::new(Some(max_line), None);
        let (end, out) = decode_in_pieces(&mut d, &bytes, &cuts);
        prop_assert_eq!(end, want_end);
        if end.is_some() {
            prop_assert_eq!(d.error(), want_err);
            if want_err.is_none() {
                prop_assert_eq!(out, want_out);
            }
        }
    }
}

/// Longer inputs, so that most octets go through the decoder's block-wise
/// fast path (it needs 68 octets at once), with the awkward sequences at
/// every offset relative to a block.
fn long_nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    const SEPARATORS: &[&[u8]] = &[
        b"\r\n",
        b"\r\n",
        b"\r\n",
        b"\r\n.",
        b"\r\n..",
        b"\n",
        b"\r",
        b"\n.",
        b"\r\n.\r",
        b"\r\n.\n",
        b"\r\n.\r\n",
        b".",
        b"\r\r\n",
    ];
    prop::collection::vec(
        (
            prop_oneof![8 => 0usize..150, 1 => 850usize..1150],
            prop::sample::select(SEPARATORS),
        ),
        0..40,
    )
    .prop_map(|parts| {
        let mut v = Vec::new();
        for (run, sep) in parts {
            v.extend((0..run).map(|k| b"abc .xyz"[k % 8]));
            v.extend_from_slice(sep);
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_matches_reference_long(
        bytes in long_nasty_bytes(),
        max_line in prop_oneof![3usize..300, 900usize..1100],
        mut cuts in prop::collection::vec(0usize..6000, 0..6),
    ) {
        cuts.sort_unstable();
        let (want_end, want_err, want_out) = reference_decode(&bytes, max_line);
        let run = |cuts: &[usize]| {
            let mut d = DataDecoder::new(Some(max_line), None);
            let (end, out) = decode_in_pieces(&mut d, &bytes, cuts);
            (end, d.error(), out)
        };
        let (end, err, out) = run(&cuts);
        prop_assert_eq!(end, want_end);
        if end.is_some() {
            prop_assert_eq!(err, want_err);
            if want_err.is_none() {
                prop_assert_eq!(&out, &want_out);
            }
        }
        // Split invariance holds before the end as well.
        let (end1, err1, out1) = run(&[]);
        prop_assert_eq!(end1, end);
        prop_assert_eq!(err1, err);
        if err.is_none() {
            prop_assert_eq!(out1, out);
        }
    }
}

/// Folding the slow, obvious way (`LongLines::Fold`): an octet other than
/// CR or LF that would make a line longer than `width` gets CRLF SP first.
fn reference_fold(message: &[u8], width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut len = 0;
    for &b in message {
        match b {
            b'\n' => len = 0,
            b'\r' => len += 1,
            _ => {
                if len >= width {
                    out.extend_from_slice(b"\r\n ");
                    len = 1;
                }
                len += 1;
            }
        }
        out.push(b);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn folding_matches_reference_and_bounds_lines(
        lines in prop::collection::vec(
            prop::collection::vec(prop::sample::select(&b"ab .x"[..]), 0..400),
            0..12,
        ),
        max_line in 4usize..120,
        mut cuts in prop::collection::vec(0usize..5000, 0..8),
    ) {
        let mut message = Vec::new();
        for l in &lines {
            message.extend_from_slice(l);
            message.extend_from_slice(b"\r\n");
        }
        let mut wire = Vec::new();
        dot_stuff(&message, &mut wire);
        wire.extend_from_slice(b".\r\n");
        cuts.sort_unstable();
        let mut d = DataDecoder::new(None, None).fold_long_lines(max_line);
        let (end, out) = decode_in_pieces(&mut d, &wire, &cuts);
        prop_assert_eq!(end, Some(wire.len()));
        prop_assert_eq!(d.error(), None);
        prop_assert_eq!(d.size(), message.len() as u64);
        prop_assert_eq!(&out, &reference_fold(&message, max_line - 2));
        for line in out.split_inclusive(|&b| b == b'\n') {
            prop_assert!(line.len() <= max_line, "{} > {}", line.len(), max_line);
        }
    }
}
