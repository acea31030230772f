//! Property tests: display → parse round-trips, no input panics, and the
//! borrowed parse agrees with the owned one.

use portcullis_core::{
    Address, AddressError, AddressRef, Domain, DomainRef, ForwardPath, ForwardPathRef, LocalPart,
    ParseOptions, ReversePath, ReversePathRef,
};
use proptest::prelude::*;

fn dot_string() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,8}", 1..4)
        .prop_map(|atoms| atoms.join("."))
}

fn quoted_value() -> impl Strategy<Value = String> {
    // Any printable ASCII, including '"', '\\', ' ', '@' and '>'.
    "[ -~]{1,20}"
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 1..4)
            .prop_map(|l| l.join(".")),
        any::<[u8; 4]>().prop_map(|o| format!("[{}.{}.{}.{}]", o[0], o[1], o[2], o[3])),
        any::<u128>().prop_map(|v| format!("[IPv6:{}]", std::net::Ipv6Addr::from(v))),
        Just("bücher.example".to_string()),
    ]
}

fn options() -> impl Strategy<Value = ParseOptions> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(utf8, route, dot)| {
        ParseOptions::default()
            .with_utf8(utf8)
            .with_source_route(route)
            .with_trailing_dot(dot)
    })
}

/// Paths as a client might send them, valid or nearly: source routes,
/// dot-strings, quoted strings with escapes, UTF-8, names with a trailing
/// dot or upper case, literals, junk after the path.
fn path_like() -> impl Strategy<Value = String> {
    let route = "(@[a-zA-Z0-9.-]{0,8}(,@[a-z.]{1,6})?:)?";
    let local = prop_oneof![
        dot_string(),
        quoted_value().prop_map(|v| {
            let escaped: String = v
                .chars()
                .flat_map(|c| {
                    (c == '"' || c == '\\')
                        .then_some('\\')
                        .into_iter()
                        .chain([c])
                })
                .collect();
            format!("\"{escaped}\"")
        }),
        Just("Postmaster".to_string()),
        Just("用户".to_string()),
        "[a-z.\"\\\\ @]{0,8}",
    ];
    let dom = prop_oneof![
        domain(),
        "[a-zA-Z0-9.-]{1,20}",
        domain().prop_map(|d| format!("{d}.")),
        "\\[[a-zA-Z0-9:.-]{0,12}\\]",
    ];
    let end = prop_oneof![Just(">"), Just("> SIZE=1"), Just(">x"), Just("")];
    (route, local, dom, end).prop_map(|(r, l, d, e)| format!("<{r}{l}@{d}{e}"))
}

/// The mailbox seen through the borrowed accessors is the owned one.
fn same_address(r: &AddressRef<'_>, o: &Address, opts: ParseOptions) -> Result<(), TestCaseError> {
    prop_assert_eq!(r.into_owned(), o.clone());
    prop_assert_eq!(&*r.local_part(), o.local_part().as_str());
    prop_assert_eq!(r.domain().as_str(), o.domain().as_str());
    prop_assert_eq!(&*r.domain().ascii(), o.domain().ascii());
    prop_assert_eq!(r.domain().kind(), o.domain().kind());
    prop_assert_eq!(r.is_utf8(), o.is_utf8());
    prop_assert_eq!(r.to_string(), o.to_string());
    prop_assert_eq!(Address::parse_with(r.as_str(), opts), Ok(o.clone()));
    Ok(())
}

/// Accept/reject, the error, what was consumed and the resulting address
/// are the same borrowed and owned, for every entry point.
fn borrowed_agrees_with_owned(s: &str, opts: ParseOptions) -> Result<(), TestCaseError> {
    fn outcome<T>(r: &Result<T, AddressError>) -> Result<(), AddressError> {
        r.as_ref().map(|_| ()).map_err(Clone::clone)
    }
    let (r, o) = (
        ReversePathRef::parse_prefix(s, opts),
        ReversePath::parse_prefix(s, opts),
    );
    prop_assert_eq!(outcome(&r), outcome(&o), "{:?}", s);
    if let (Ok((r, ru)), Ok((o, ou))) = (r, o) {
        prop_assert_eq!(ru, ou);
        prop_assert_eq!(r.is_null(), o.is_null());
        prop_assert_eq!(r.to_string(), o.to_string());
        if let (Some(r), Some(o)) = (r.address(), o.address()) {
            same_address(r, o, opts)?;
        }
    }
    let (r, o) = (
        ForwardPathRef::parse_prefix(s, opts),
        ForwardPath::parse_prefix(s, opts),
    );
    prop_assert_eq!(outcome(&r), outcome(&o), "{:?}", s);
    if let (Ok((r, ru)), Ok((o, ou))) = (r, o) {
        prop_assert_eq!(ru, ou);
        prop_assert_eq!(r.is_postmaster(), o.is_postmaster());
        prop_assert_eq!(r.to_string(), o.to_string());
        prop_assert_eq!(r.into_owned(), o.clone());
        if let (Some(r), Some(o)) = (r.address(), o.address()) {
            same_address(r, o, opts)?;
        }
    }
    let (r, o) = (
        ReversePathRef::parse_with(s, opts),
        ReversePath::parse_with(s, opts),
    );
    prop_assert_eq!(outcome(&r), outcome(&o), "{:?}", s);
    let (r, o) = (
        ForwardPathRef::parse_with(s, opts),
        ForwardPath::parse_with(s, opts),
    );
    prop_assert_eq!(outcome(&r), outcome(&o), "{:?}", s);
    // The mailbox and the domain alone, without the brackets.
    let bare = s.trim_start_matches('<').trim_end_matches('>');
    let (r, o) = (
        AddressRef::parse_with(bare, opts),
        Address::parse_with(bare, opts),
    );
    prop_assert_eq!(outcome(&r), outcome(&o), "{:?}", bare);
    if let (Ok(r), Ok(o)) = (r, o) {
        same_address(&r, &o, opts)?;
    }
    let dom = bare.rsplit('@').next().unwrap_or(bare);
    let (r, o) = (
        DomainRef::parse_with(dom, opts),
        Domain::parse_with(dom, opts),
    );
    prop_assert_eq!(outcome(&r), outcome(&o), "{:?}", dom);
    if let (Ok(r), Ok(o)) = (r, o) {
        prop_assert_eq!(r.into_owned(), o.clone());
        prop_assert_eq!(&*r.ascii(), o.ascii());
        prop_assert_eq!((r.as_str(), r.kind()), (o.as_str(), o.kind()));
    }
    Ok(())
}

proptest! {
    #[test]
    fn borrowed_and_owned_agree_on_arbitrary_input(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        opts in options(),
    ) {
        borrowed_agrees_with_owned(&String::from_utf8_lossy(&bytes), opts)?;
    }

    #[test]
    fn borrowed_and_owned_agree_on_path_like_input(s in path_like(), opts in options()) {
        borrowed_agrees_with_owned(&s, opts)?;
    }

    #[test]
    fn borrowed_and_owned_agree_on_valid_paths(
        local in prop_oneof![dot_string(), quoted_value()],
        dom in domain(),
        opts in options(),
    ) {
        let (Ok(local), Ok(domain)) = (LocalPart::new(&local), Domain::parse(&dom)) else {
            return Ok(());
        };
        let path = format!("<{}>", Address::new(local, domain));
        let parsed = ForwardPathRef::parse_with(&path, opts);
        // Valid, so only the limits or UTF-8 without SMTPUTF8 refuse it.
        if path.len() <= 256 && (opts.utf8 || path.is_ascii()) {
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", path, parsed);
        }
        borrowed_agrees_with_owned(&path, opts)?;
    }

    #[test]
    fn displayed_addresses_reparse_equal(local in prop_oneof![dot_string(), quoted_value()], dom in domain()) {
        let (Ok(local), Ok(domain)) = (LocalPart::new(&local), Domain::parse(&dom)) else {
            return Ok(()); // over-long or unrepresentable parts are rejected, not mangled
        };
        prop_assert_eq!(local.wire_len(), local.to_string().len());
        let a = Address::new(local, domain);
        let shown = a.to_string();
        let again = Address::parse(&shown).map_err(|e| TestCaseError::fail(format!("{shown:?}: {e}")))?;
        prop_assert_eq!(&again, &a);
        prop_assert_eq!(again.to_string(), shown.clone());
        let path = format!("<{shown}>");
        if path.len() <= 256 {
            prop_assert_eq!(ForwardPath::parse(&path).ok(), Some(ForwardPath::Mailbox(a.clone())));
            prop_assert_eq!(ReversePath::parse(&path).ok(), Some(ReversePath::Mailbox(a)));
        }
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        for opts in [ParseOptions::default(), ParseOptions::ascii()] {
            let _ = Address::parse_with(&s, opts);
            let _ = ReversePath::parse_with(&s, opts);
            let _ = ForwardPath::parse_with(&s, opts);
            let _ = ReversePath::parse_prefix(&s, opts);
            let _ = Domain::parse_with(&s, opts);
        }
    }

    #[test]
    fn structured_garbage_never_panics(s in "[<>@\\[\\]\":.,\\\\a-zA-Z0-9 äü-]{0,80}") {
        let _ = ForwardPath::parse(&s);
        let _ = ReversePath::parse(&format!("<{s}>"));
    }
}
