//! Property tests: display → parse round-trips, and no input panics.

use portcullis_core::{Address, Domain, ForwardPath, LocalPart, ParseOptions, ReversePath};
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

proptest! {
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
