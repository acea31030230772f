#![no_main]
//! The command parser never panics, is deterministic, and what it returns
//! borrows from (is a part of) the line it was given.

use libfuzzer_sys::fuzz_target;
use portcullis_smtp::{Command, parse_command};

fuzz_target!(|data: &[u8]| {
    let first = parse_command(data);
    assert_eq!(first, parse_command(data));
    let Ok(cmd) = first else { return };
    let text = std::str::from_utf8(data).expect("a parsed line is UTF-8");
    match cmd {
        Command::Mail { path, params } | Command::Rcpt { path, params } => {
            assert!(path.starts_with('<') && path.ends_with('>'));
            assert!(text.contains(path));
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
