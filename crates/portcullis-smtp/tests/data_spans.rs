//! `DataDecoder::decode_spans`, the decoder without a copy: the same message
//! as `decode` (which the reference-model properties check) for any split,
//! as non-empty slices of each call's input.

#![allow(clippy::unwrap_used)]

use portcullis_smtp::{DataDecoder, DataStatus};
use proptest::prelude::*;

/// Mostly the octets that matter, in runs long enough for the fast path,
/// with the awkward sequences between them.
fn data() -> impl Strategy<Value = Vec<u8>> {
    const SEPARATORS: &[&[u8]] = &[
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
    ];
    prop_oneof![
        prop::collection::vec(prop::sample::select(&b"\r\n.a"[..]), 0..300),
        prop::collection::vec(
            (
                prop_oneof![8 => 0usize..150, 1 => 900usize..1100],
                prop::sample::select(SEPARATORS),
            ),
            0..30,
        )
        .prop_map(|parts| {
            let mut v = Vec::new();
            for (run, sep) in parts {
                v.extend((0..run).map(|k| b"abc .xyz"[k % 8]));
                v.extend_from_slice(sep);
            }
            v
        }),
    ]
}

fn decoder(max_line: Option<usize>, max_size: Option<u64>, fold: Option<usize>) -> DataDecoder {
    let d = DataDecoder::new(max_line, max_size);
    match fold {
        Some(width) => d.fold_long_lines(width),
        None => d,
    }
}

/// What one way of decoding made of `bytes` cut at `cuts`: the status of
/// each call, the message, the error, the size.
type Run = (
    Vec<DataStatus>,
    Vec<u8>,
    Option<portcullis_smtp::DataError>,
    u64,
);

fn run(mut d: DataDecoder, bytes: &[u8], cuts: &[usize], spans: bool) -> Run {
    let mut statuses = Vec::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let c = c.clamp(start, bytes.len());
        let input = &bytes[start..c];
        let status = if spans {
            d.decode_spans(input, |span| {
                assert!(!span.is_empty(), "an empty span");
                out.extend_from_slice(span);
            })
        } else {
            d.decode(input, &mut out)
        };
        statuses.push(status);
        if matches!(status, DataStatus::Complete { .. }) {
            break;
        }
        start = c;
    }
    (statuses, out, d.error(), d.size())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn spans_are_what_decode_appends(
        bytes in data(),
        max_line in prop::option::of(3usize..1100),
        max_size in prop::option::of(0u64..3000),
        fold in prop::option::of(4usize..120),
        mut cuts in prop::collection::vec(0usize..4000, 0..8),
    ) {
        cuts.sort_unstable();
        let copied = run(decoder(max_line, max_size, fold), &bytes, &cuts, false);
        let spans = run(decoder(max_line, max_size, fold), &bytes, &cuts, true);
        prop_assert_eq!(copied, spans);
    }

    /// Without folding, a message with no bare CR is handed out as slices
    /// of the input: nothing is copied.
    #[test]
    fn spans_are_slices_of_the_input(
        bytes in data(),
        mut cuts in prop::collection::vec(0usize..4000, 0..8),
    ) {
        cuts.sort_unstable();
        let mut d = DataDecoder::new(None, None);
        let mut start = 0;
        let mut foreign = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let c = c.clamp(start, bytes.len());
            let input = &bytes[start..c];
            let range = input.as_ptr_range();
            let status = d.decode_spans(input, |span| {
                let inside = range.start <= span.as_ptr() && span.as_ptr_range().end <= range.end;
                // The one exception: a CR after a line-start dot, from the
                // call before.
                if !inside {
                    assert_eq!(span, b"\r");
                    foreign += 1;
                }
            });
            if matches!(status, DataStatus::Complete { .. }) {
                break;
            }
            start = c;
        }
        if foreign > 0 {
            prop_assert!(d.error().is_some(), "a copied CR in a clean message");
        }
    }
}

#[test]
fn a_stuffed_message_is_handed_out_in_one_span_per_line_start_dot() {
    let mut wire = Vec::new();
    for i in 0..2000 {
        if i % 17 == 0 {
            wire.extend_from_slice(b"..");
        }
        wire.extend_from_slice(&[b'x'; 70]);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\nQUIT\r\n");
    let mut d = DataDecoder::new(Some(1000), None);
    let mut spans = 0;
    let mut size = 0;
    let status = d.decode_spans(&wire, |span| {
        spans += 1;
        size += span.len();
    });
    assert_eq!(
        status,
        DataStatus::Complete {
            consumed: wire.len() - 6
        }
    );
    assert_eq!(d.error(), None);
    // 118 stuffed lines, the first at the start: one span from each dot on.
    assert_eq!(spans, 2000usize.div_ceil(17));
    assert_eq!(size, 2000 * 72 + 2000usize.div_ceil(17));
}
