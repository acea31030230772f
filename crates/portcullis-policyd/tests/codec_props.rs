//! Invariants of the decoder and the response encoder, for any input.

use portcullis_core::Reply;
use portcullis_policyd::{Decoder, Limits, PolicyAction, Request, RequestError};
use proptest::prelude::*;

/// Decode all of `input`, fed in the pieces `cuts` splits it into.
fn decode_split(
    limits: Limits,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<Result<Request, RequestError>>, bool) {
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut start = 0;
    for end in cuts {
        let mut piece = &input[start..end];
        while !piece.is_empty() {
            let d = decoder.decode(piece);
            assert!(
                d.consumed > 0 && d.consumed <= piece.len(),
                "progress on every call"
            );
            piece = &piece[d.consumed..];
            out.extend(d.item);
        }
        start = end;
    }
    (out, decoder.is_idle())
}

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,20}"
}

fn value() -> impl Strategy<Value = String> {
    // Printable text, UTF-8 included, '=' included, no control characters.
    "[ -~\u{e9}\u{4e2d}]{0,40}"
}

fn request() -> impl Strategy<Value = Request> {
    proptest::collection::btree_map(name(), value(), 1..12).prop_map(Request::from_pairs)
}

/// Bytes that look like the protocol often enough to reach every branch.
fn protocolish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just(b'\n'),
            3 => Just(b'='),
            1 => Just(b'\r'),
            1 => Just(0u8),
            1 => Just(0xffu8),
            10 => b'a'..=b'z',
            1 => any::<u8>(),
        ],
        0..400,
    )
}

proptest! {
    #[test]
    fn encoded_requests_decode_to_themselves(reqs in proptest::collection::vec(request(), 1..6), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let wire: Vec<u8> = reqs.iter().flat_map(Request::to_wire).collect();
        let (got, idle) = decode_split(Limits::default(), &wire, &cuts);
        let want: Vec<_> = reqs.into_iter().map(Ok).collect();
        prop_assert_eq!(got, want);
        prop_assert!(idle);
    }

    #[test]
    fn any_split_of_any_bytes_decodes_the_same(input in protocolish(), cuts in proptest::collection::vec(any::<usize>(), 0..10), max_line in 1usize..40, max_attrs in 1usize..6, crlf in any::<bool>()) {
        let limits = Limits::default().with_max_line_len(max_line).with_max_attributes(max_attrs).with_accept_crlf(crlf);
        let whole = decode_split(limits, &input, &[]);
        let split = decode_split(limits, &input, &cuts);
        prop_assert_eq!(&whole, &split);
        // Every request that decodes keeps within the limits.
        for r in whole.0.iter().flatten() {
            prop_assert!(!r.attributes().is_empty());
            prop_assert!(r.attributes().len() <= max_attrs);
            for (n, v) in r.attributes() {
                prop_assert!(n.len() + 1 + v.len() <= max_line);
                prop_assert!(!v.contains('\n') && !n.contains('='));
            }
        }
    }

    #[test]
    fn one_item_per_empty_line(input in protocolish()) {
        // Count the empty lines the strict decoder must see: LF right after
        // LF (or at the start of the input / of a request).
        let (got, idle) = decode_split(Limits::default(), &input, &[]);
        let mut expected = 0;
        let mut at_line_start = true;
        let mut in_request_bytes = false;
        for &b in &input {
            if b == b'\n' {
                if at_line_start {
                    expected += 1;
                    in_request_bytes = false;
                }
                at_line_start = true;
            } else {
                at_line_start = false;
                in_request_bytes = true;
            }
        }
        prop_assert_eq!(got.len(), expected);
        prop_assert_eq!(idle, !in_request_bytes && (at_line_start || input.is_empty()));
    }

    #[test]
    fn responses_are_one_line_then_an_empty_line(text in any::<String>(), code in 400u16..600) {
        let actions = [
            PolicyAction::DeferIfPermit(text.clone()),
            PolicyAction::Reply(Reply::new(code, (4, 7, 1), text.clone())),
            PolicyAction::Prepend { name: text.clone(), value: text.clone() },
            PolicyAction::Hold(text.clone()),
            PolicyAction::Dunno,
        ];
        for a in actions {
            let wire = a.to_wire();
            prop_assert!(wire.starts_with(b"action="));
            prop_assert!(wire.ends_with(b"\n\n"));
            let body = &wire[..wire.len() - 2];
            prop_assert!(!body.iter().any(|&b| b == b'\n' || b == b'\r' || b == 0));
            // Our own decoder reads it back as one attribute.
            let (got, idle) = decode_split(Limits::default().with_max_line_len(1 << 20), &wire, &[]);
            prop_assert!(idle);
            prop_assert_eq!(got.len(), 1);
            prop_assert!(got[0].as_ref().is_ok_and(|r| r.attributes().len() == 1 && r.get("action").is_some()));
        }
    }
}

#[test]
fn memory_stays_bounded_under_an_endless_line() {
    let mut decoder = Decoder::default();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        let d = decoder.decode(&chunk);
        assert_eq!((d.consumed, d.item), (chunk.len(), None));
    }
    // 4 MiB in, nothing answered yet; the request ends and is refused.
    let d = decoder.decode(b"\n\n");
    assert_eq!(d.item, Some(Err(RequestError::LineTooLong { max: 2048 })));
    assert!(decoder.is_idle());
}
