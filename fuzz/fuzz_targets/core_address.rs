#![no_main]
//! Address and path parsing never panics and displayed results re-parse.

use libfuzzer_sys::fuzz_target;
use portcullis_core::{Address, ForwardPath, ParseOptions, ReversePath};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for opts in [ParseOptions::default(), ParseOptions::ascii()] {
        if let Ok(a) = Address::parse_with(s, opts) {
            let again = Address::parse_with(&a.to_string(), opts).expect("displayed address re-parses");
            assert_eq!(again, a);
        }
        let _ = ReversePath::parse_prefix(s, opts);
        let _ = ForwardPath::parse_prefix(s, opts);
    }
});
