#![no_main]
//! Placeholder until the crate lands; replaced by its issue.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
