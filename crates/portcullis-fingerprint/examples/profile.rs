//! A fixed amount of work per mode, for instruction counts under callgrind
//! (repeatable on a loaded machine, unlike wall time):
//!
//! ```text
//! cargo build --release -p portcullis-fingerprint --example profile
//! valgrind --tool=callgrind target/release/examples/profile parse 200
//! valgrind --tool=callgrind target/release/examples/profile exact 200
//! ```
//!
//! Modes: `none` (build the message only), `parse` (`mail-parser` alone,
//! default settings), `exact`, `full` (exact + fuzzy), `blake3`, and single
//! steps on the decoded parts: `html` (HTML to text), `normalize` (text part
//! and reduced HTML). Subtract `none` from the others, then compare each
//! with `parse`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use mail_parser::{MessageParser, PartType};
use portcullis_fingerprint::normalize::html_to_text_into;
use portcullis_fingerprint::{FingerprintOptions, Fingerprinter, Normalization};

#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "exact".into());
    let iters: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let msg = support::sample();
    let parser = MessageParser::default();
    let mut exact_opts = FingerprintOptions::default();
    exact_opts.fuzzy = false;
    let exact = Fingerprinter::new(exact_opts);
    let full = Fingerprinter::default();
    // The decoded text and HTML parts, for the per-step modes.
    let parsed = parser.parse(&msg[..]);
    let (mut text, mut html) = (String::new(), String::new());
    for part in parsed.iter().flat_map(|m| m.parts.iter()) {
        match &part.body {
            PartType::Text(t) => text = t.to_string(),
            PartType::Html(h) => html = h.to_string(),
            _ => {}
        }
    }
    let n = Normalization::default();
    let mut reduced = String::new();
    html_to_text_into(&html, &mut reduced);
    let (mut out, mut buf) = (String::new(), String::new());
    for _ in 0..iters {
        match mode.as_str() {
            "none" => {}
            "parse" => {
                black_box(parser.parse(black_box(&msg[..])).map(|m| m.parts.len()));
            }
            "exact" => {
                black_box(exact.fingerprint(black_box(&msg)));
            }
            "full" => {
                black_box(full.fingerprint(black_box(&msg)));
            }
            "html" => {
                buf.clear();
                html_to_text_into(black_box(&html), &mut buf);
            }
            "normalize" => {
                out.clear();
                black_box(n.normalize_into(black_box(&text), &mut out));
                out.clear();
                black_box(n.normalize_into(black_box(&reduced), &mut out));
            }
            "blake3" => {
                black_box(blake3::hash(black_box(&msg)));
            }
            other => panic!("unknown mode {other}"),
        }
    }
}
