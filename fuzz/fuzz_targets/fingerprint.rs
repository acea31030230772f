#![no_main]
//! Fingerprinting never panics on any bytes, with every normalisation step on
//! and off, and is deterministic; HTML normalised in one pass equals HTML
//! reduced to text then normalised; the known-bad list parser never panics.

use libfuzzer_sys::fuzz_target;
use portcullis_fingerprint::normalize::html_to_text;
use portcullis_fingerprint::{
    FingerprintOptions, Fingerprinter, HeaderChecksums, KnownBadList, Normalization,
};

fuzz_target!(|data: &[u8]| {
    let full = {
        let mut o = FingerprintOptions::default();
        o.headers = HeaderChecksums::all();
        Fingerprinter::new(o)
    };
    let raw = {
        let mut o = FingerprintOptions::default();
        o.normalization = Normalization::none();
        Fingerprinter::new(o)
    };
    let a = full.fingerprint(data);
    assert_eq!(a, full.fingerprint(data), "deterministic");
    if let Some(f) = &a.fuzzy {
        assert_eq!(f.similarity(f), 1.0);
    }
    let _ = raw.fingerprint(data);
    let text = String::from_utf8_lossy(data);
    let n = Normalization::default();
    let (mut one, mut two) = (String::new(), String::new());
    let words = n.normalize_html_into(&text, &mut one);
    assert_eq!(
        (words, one),
        (n.normalize_into(&html_to_text(&text), &mut two), two)
    );
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KnownBadList::parse(text);
    }
});
