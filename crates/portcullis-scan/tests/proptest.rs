//! Invariants of the reply parser and the INSTREAM framing.

#![allow(clippy::unwrap_used)]

use portcullis_scan::{ScanError, ScanOutcome, encode_instream, parse_reply};
use proptest::prelude::*;

/// Decode INSTREAM bytes by hand: (chunk lengths, body, bytes after the terminator).
fn decode(bytes: &[u8]) -> (Vec<usize>, Vec<u8>, usize) {
    assert_eq!(&bytes[..10], b"zINSTREAM\0");
    let mut at = 10;
    let mut lengths = Vec::new();
    let mut body = Vec::new();
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        if len == 0 {
            return (lengths, body, bytes.len() - at);
        }
        lengths.push(len);
        body.extend_from_slice(&bytes[at..at + len]);
        at += len;
    }
}

proptest! {
    #[test]
    fn parser_never_panics(reply in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_reply(&reply);
    }

    #[test]
    fn found_round_trips(name in "[A-Za-z0-9][A-Za-z0-9._:/-]{0,60}", nul in any::<bool>()) {
        let mut reply = format!("stream: {name} FOUND").into_bytes();
        if nul { reply.push(0) } else { reply.push(b'\n') }
        prop_assert_eq!(parse_reply(&reply).unwrap(), ScanOutcome::Infected { signature: name });
    }

    #[test]
    fn errors_are_never_verdicts(detail in "[ -~]{0,60}") {
        let reply = format!("stream: {detail} ERROR\0");
        let parsed = parse_reply(reply.as_bytes());
        prop_assert!(matches!(parsed, Err(ScanError::Scanner(_) | ScanError::SizeLimitExceeded)), "{:?}", parsed);
    }

    #[test]
    fn infected_names_carry_no_line_breaks(reply in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut r = b"stream: ".to_vec();
        r.extend_from_slice(&reply);
        r.extend_from_slice(b" FOUND");
        if let Ok(ScanOutcome::Infected { signature }) = parse_reply(&r) {
            prop_assert!(!signature.chars().any(char::is_control));
        }
    }

    #[test]
    fn framing_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..5000), chunk in 1usize..3000) {
        let (lengths, body, trailing) = decode(&encode_instream(&msg, chunk));
        prop_assert_eq!(body, msg.clone());
        prop_assert_eq!(trailing, 0);
        prop_assert!(lengths.iter().all(|&l| l > 0 && l <= chunk));
        prop_assert_eq!(lengths.len(), msg.len().div_ceil(chunk));
    }
}
