//! Properties: no input panics; normalisation is idempotent; fingerprints
//! are deterministic and similarity is symmetric.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod corpus;

use portcullis_fingerprint::normalize::html_to_text;
use portcullis_fingerprint::{
    FingerprintOptions, Fingerprinter, FuzzyFingerprint, HeaderChecksums, KnownBadList,
    Normalization, SolicitedBulk, fingerprint,
};
use proptest::prelude::*;

/// Messages that look like mail: corpus messages with bytes changed,
/// inserted or cut.
fn mutated_message() -> impl Strategy<Value = Vec<u8>> {
    let mut seeds = vec![
        corpus::plain("Ann", "a1b2c3d4e5", "1 May 2026"),
        corpus::html("Bob", "ffee", "2 May 2026"),
        corpus::multipart(
            "Cy",
            "0011",
            "3 May 2026",
            &corpus::attachment_bytes()[..300],
            76,
        ),
        corpus::encoded("Di", "77", "4 May 2026", "base64"),
        corpus::latin1_message("Très chère", "iso-8859-1"),
    ];
    seeds.extend(corpus::malformed());
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..12),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(i, edits, cut)| {
            let mut m = seeds[i].clone();
            for (at, byte, op) in edits {
                if m.is_empty() {
                    m.push(byte);
                    continue;
                }
                let at = at.index(m.len());
                match op {
                    0 => m[at] = byte,
                    1 => m.insert(at, byte),
                    _ => {
                        m.remove(at);
                    }
                }
            }
            if !m.is_empty() && cut.index(8) == 0 {
                m.truncate(cut.index(m.len()));
            }
            m
        })
}

fn all_options() -> Vec<Fingerprinter> {
    let mut raw = FingerprintOptions::default();
    raw.normalization = Normalization::none();
    raw.headers = HeaderChecksums::all();
    let mut headers = FingerprintOptions::default();
    headers.headers = HeaderChecksums::all();
    let mut no_charset = FingerprintOptions::default();
    no_charset.normalization.charset_to_utf8 = false;
    vec![
        Fingerprinter::default(),
        Fingerprinter::new(raw),
        Fingerprinter::new(headers),
        Fingerprinter::new(no_charset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for f in all_options() {
            let a = f.fingerprint(&bytes);
            prop_assert_eq!(&a, &f.fingerprint(&bytes));
        }
    }

    #[test]
    fn mutated_mail_never_panics(m in mutated_message()) {
        for f in all_options() {
            let fp = f.fingerprint(&m);
            if let Some(fz) = &fp.fuzzy {
                prop_assert_eq!(fz.similarity(fz), 1.0);
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent(s in "(?s)[ -~\\t\\n\\r\u{e9}\u{df}\u{130}\u{3a3}\u{2028}\u{3000}日本]{0,200}") {
        let n = Normalization::default();
        let once = n.normalize(&s);
        prop_assert_eq!(n.normalize(&once), once.clone());
        // Folded text has no runs of white space and no upper-case ASCII.
        prop_assert!(!once.contains("  "));
        prop_assert!(!once.bytes().any(|b| b.is_ascii_uppercase()));
    }

    #[test]
    fn html_to_text_never_panics(s in "(?s)[<>/=\"'&#;a-zA-Z0-9 \\-!\u{e9}]{0,300}") {
        let t = html_to_text(&s);
        prop_assert!(t.len() <= 4 * s.len() + 16);
    }

    #[test]
    fn similarity_is_symmetric_and_bounded(a in "[a-z ]{0,300}", b in "[a-z ]{0,300}") {
        if let (Some(x), Some(y)) = (FuzzyFingerprint::of_text(&a), FuzzyFingerprint::of_text(&b)) {
            let s = x.similarity(&y);
            prop_assert_eq!(s, y.similarity(&x));
            prop_assert!((0.0..=1.0).contains(&s));
        }
    }

    #[test]
    fn list_parsers_never_panic(text in "(?s)[ -~\\n\u{e9}]{0,400}") {
        let _ = KnownBadList::parse(&text);
        let _ = SolicitedBulk::parse(&text);
    }
}

#[test]
fn free_function_matches_default_fingerprinter() {
    let m = corpus::plain("Ann", "a1", "1 May 2026");
    assert_eq!(fingerprint(&m), Fingerprinter::default().fingerprint(&m));
}

/// A slow, obviously-correct rendering of the normalisation steps, to check
/// the optimised one against.
fn reference(input: &str, n: &Normalization) -> (String, usize) {
    let mut words = 0;
    let chars: Vec<char> = input.chars().collect();
    let mut tokens: Vec<String> = Vec::new(); // None-whitespace tokens and " " separators
    let mut i = 0;
    let lower = |s: &str| {
        if n.fold_case {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.to_owned()
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            let start = i;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            tokens.push(if n.fold_whitespace {
                " ".into()
            } else {
                chars[start..i].iter().collect()
            });
            continue;
        }
        if c.is_alphanumeric() {
            let rest: String = chars[i..].iter().collect();
            let lower_rest = rest.to_ascii_lowercase();
            let scheme = ["https://", "http://"]
                .into_iter()
                .find(|s| lower_rest.starts_with(s));
            if let (true, Some(scheme)) = (n.strip_url_queries, scheme) {
                let len = rest
                    .char_indices()
                    .find(|(_, ch)| {
                        ch.is_ascii_whitespace() || "\"'<>".contains(*ch) || !ch.is_ascii()
                    })
                    .map_or(rest.len(), |(p, _)| p);
                let url = &rest[..len];
                let kept = match url[scheme.len()..].find(['?', '#']) {
                    Some(cut) => &url[..scheme.len() + cut],
                    None => url,
                };
                tokens.push(lower(kept));
                words += 1;
                i += url.chars().count();
                continue;
            }
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            words += 1;
            let is_hex = word.chars().all(|c| c.is_ascii_hexdigit())
                && word.chars().any(|c| c.is_ascii_digit())
                && word.chars().any(|c| c.is_ascii_alphabetic());
            if n.hex_token_min > 0 && word.len() >= n.hex_token_min && is_hex {
                tokens.push("#".into());
                continue;
            }
            let mut out = String::new();
            let mut run = String::new();
            for ch in word.chars() {
                if ch.is_ascii_digit() {
                    run.push(ch);
                    continue;
                }
                if !run.is_empty() {
                    let masked = n.digit_run_min > 0 && run.len() >= n.digit_run_min;
                    out.push_str(if masked { "#" } else { &run });
                    run.clear();
                }
                out.push(ch);
            }
            if !run.is_empty() {
                let masked = n.digit_run_min > 0 && run.len() >= n.digit_run_min;
                out.push_str(if masked { "#" } else { &run });
            }
            tokens.push(lower(&out));
            continue;
        }
        // Other characters are kept (ASCII ones are unaffected by case).
        tokens.push(c.to_string());
        i += 1;
    }
    let mut out = tokens.concat();
    if n.fold_whitespace {
        out = out.trim_matches(' ').to_owned();
    }
    (out, words)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn optimised_normalisation_matches_reference(
        s in "(?s)(https?://|HTTP://|[ \\t\\r\\n?#=&/.:'\"<>]|[a-fA-F0-9]{1,12}|[g-zG-Z]{1,5}|[\u{e9}\u{c9}\u{df}\u{130}\u{3a3}\u{a0}\u{3000}\u{2014}日本]){0,60}",
        fold_case in any::<bool>(),
        fold_ws in any::<bool>(),
        urls in any::<bool>(),
        digit_min in 0usize..6,
        hex_min in prop::sample::select(vec![0usize, 4, 8]),
    ) {
        let mut n = Normalization::none();
        n.fold_case = fold_case;
        n.fold_whitespace = fold_ws;
        n.strip_url_queries = urls;
        n.digit_run_min = digit_min;
        n.hex_token_min = hex_min;
        // Appending to text already there must not change the result.
        let mut out = String::from("x");
        let words = n.normalize_into(&s, &mut out);
        prop_assert_eq!((out[1..].to_owned(), words), reference(&s, &n), "input {:?}", s);
    }
}
