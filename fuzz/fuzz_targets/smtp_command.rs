#![no_main]
//! The command parser never panics, is deterministic, what it returns
//! borrows from (is a part of) the line it was given, and a MAIL/RCPT path
//! it recognised while parsing is what the core's path parser makes of it.

use libfuzzer_sys::fuzz_target;
use portcullis_core::{ForwardPathRef, ParseOptions, ReversePathRef};
use portcullis_smtp::{Command, parse_command};

fuzz_target!(|data: &[u8]| {
    let first = parse_command(data);
    assert_eq!(first, parse_command(data));
    let Ok(cmd) = first else { return };
    let text = std::str::from_utf8(data).expect("a parsed line is UTF-8");
    match cmd {
        Command::Mail { path, params } | Command::Rcpt { path, params } => {
            let p = path.as_str();
            assert!(p.starts_with('<') && p.ends_with('>'));
            assert!(text.contains(p));
            for opts in [ParseOptions::default(), ParseOptions::ascii().with_trailing_dot(true)] {
                let (ours, core) = (path.reverse_path(opts), ReversePathRef::parse_with(p, opts));
                assert_eq!(ours.map(|r| r.into_owned()), core.map(|r| r.into_owned()));
                let (ours, core) = (path.forward_path(opts), ForwardPathRef::parse_with(p, opts));
                assert_eq!(ours.map(|r| r.into_owned()), core.map(|r| r.into_owned()));
            }
            for p in params {
                if let Ok((k, v)) = p {
                    assert!(!k.is_empty());
                    assert!(v.is_none_or(|v| !v.is_empty()));
                }
            }
        }
        Command::Helo(a) | Command::Ehlo(a) | Command::Vrfy(a) | Command::Expn(a) => {
            assert!(!a.is_empty() && text.contains(a));
        }
        _ => {}
    }
});
