//! Property tests of the command parser's paths: what `parse_command`
//! recognises while it finds a path's end is exactly what the core's path
//! parser makes of the path, under every option.

use portcullis_core::{AddressError, ForwardPathRef, ParseOptions, ReversePathRef};
use portcullis_smtp::{Command, parse_command};
use proptest::prelude::*;

fn options() -> [ParseOptions; 8] {
    let mut all = [ParseOptions::default(); 8];
    for (i, o) in all.iter_mut().enumerate() {
        *o = ParseOptions::default()
            .with_utf8(i & 1 != 0)
            .with_source_route(i & 2 != 0)
            .with_trailing_dot(i & 4 != 0);
    }
    all
}

/// MAIL and RCPT lines with paths of every kind: the usual form, quoted
/// local parts, literals, source routes, UTF-8, a trailing dot, junk.
fn path_line() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop_oneof![Just("MAIL FROM:"), Just("RCPT TO:"), Just("mail from: ")];
    let local = prop_oneof![
        "[a-z0-9]{1,8}(\\.[a-zA-Z0-9_+-]{1,6}){0,2}",
        "\"[a-z @>\\\\\"]{0,6}\"",
        Just("ü".to_string()),
        "[a-z.@<>\"-]{0,6}",
        Just("x".repeat(64)),
        Just("x".repeat(65)),
    ];
    let domain = prop_oneof![
        "[a-z0-9]{1,6}(\\.[a-zA-Z0-9-]{1,6}){0,3}",
        "[a-z0-9-]{1,8}\\.",
        "\\[[0-9.]{1,15}\\]",
        Just("bücher.example".to_string()),
        Just(format!("{}.org", "d".repeat(63))),
        Just(format!("{}.org", "d".repeat(64))),
    ];
    let route = prop_oneof![Just(""), Just("@relay.example:"), Just("@a,@b.example:")];
    let end = prop_oneof![
        Just(">"),
        Just("> SIZE=10"),
        Just(">x"),
        Just(""),
        Just(">  ")
    ];
    (verb, route, local, domain, end)
        .prop_map(|(v, r, l, d, e)| format!("{v}<{r}{l}@{d}{e}").into_bytes())
}

fn same<T, U: PartialEq + std::fmt::Debug>(
    a: Result<T, AddressError>,
    b: Result<T, AddressError>,
    owned: impl Fn(T) -> U,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.map(&owned), b.map(&owned));
    Ok(())
}

fn paths_agree(line: &[u8]) -> Result<(), TestCaseError> {
    let Ok(Command::Mail { path, .. } | Command::Rcpt { path, .. }) = parse_command(line) else {
        return Ok(());
    };
    for opts in options() {
        same(
            path.reverse_path(opts),
            ReversePathRef::parse_with(path.as_str(), opts),
            ReversePathRef::into_owned,
        )?;
        same(
            path.forward_path(opts),
            ForwardPathRef::parse_with(path.as_str(), opts),
            ForwardPathRef::into_owned,
        )?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn parsed_paths_agree_with_the_core(line in path_line()) {
        paths_agree(&line)?;
    }

    #[test]
    fn parsed_paths_agree_with_the_core_on_any_line(
        tail in proptest::collection::vec(any::<u8>(), 0..60),
        verb in prop_oneof![Just(&b"MAIL FROM:<"[..]), Just(&b"RCPT TO:<"[..])],
    ) {
        paths_agree(&[verb, &tail[..]].concat())?;
    }
}

#[test]
fn usual_paths_are_recognised_and_others_delimited() {
    let Ok(Command::Rcpt { path, params }) = parse_command(b"RCPT TO:<a.b@X.example> NOTIFY=NEVER")
    else {
        panic!("did not parse");
    };
    assert_eq!(path, "<a.b@X.example>");
    assert_eq!(params.as_str(), "NOTIFY=NEVER");
    let p = path.forward_path(ParseOptions::ascii()).unwrap();
    assert_eq!(p.address().unwrap().domain().ascii(), "x.example");
    // Not the usual form: the options decide.
    let Ok(Command::Mail { path, .. }) = parse_command("MAIL FROM:<ü@x.example>".as_bytes())
    else {
        panic!("did not parse");
    };
    assert_eq!(
        path.reverse_path(ParseOptions::ascii()).err(),
        Some(AddressError::Utf8NotAllowed)
    );
    assert!(path.reverse_path(ParseOptions::default()).is_ok());
    let Ok(Command::Rcpt { path, .. }) = parse_command(b"RCPT TO:<Postmaster>") else {
        panic!("did not parse");
    };
    assert!(
        path.forward_path(ParseOptions::ascii())
            .unwrap()
            .is_postmaster()
    );
    assert!(path.reverse_path(ParseOptions::ascii()).is_err());
}
