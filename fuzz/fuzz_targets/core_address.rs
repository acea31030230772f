#![no_main]
//! Address and path parsing never panics, displayed results re-parse, and
//! the borrowed parse (`*Ref`) agrees with the owned one: accept/reject,
//! the error, the bytes consumed and the resulting address.

use libfuzzer_sys::fuzz_target;
use portcullis_core::{
    Address, AddressRef, ForwardPath, ForwardPathRef, ParseOptions, ReversePath, ReversePathRef,
};

fn same_address(r: &AddressRef<'_>, o: &Address, opts: ParseOptions) {
    assert_eq!(&r.into_owned(), o);
    assert_eq!(*r.local_part(), *o.local_part().as_str());
    assert_eq!(r.domain().as_str(), o.domain().as_str());
    assert_eq!(*r.domain().ascii(), *o.domain().ascii());
    assert_eq!(r.domain().kind(), o.domain().kind());
    assert_eq!(r.is_utf8(), o.is_utf8());
    assert_eq!(r.to_string(), o.to_string());
    assert_eq!(Address::parse_with(r.as_str(), opts).as_ref(), Ok(o));
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    // The first octet, if any, picks the options.
    let bits = data.first().copied().unwrap_or(0);
    let picked = ParseOptions::default()
        .with_utf8(bits & 1 != 0)
        .with_source_route(bits & 2 != 0)
        .with_trailing_dot(bits & 4 != 0);
    for opts in [ParseOptions::default(), ParseOptions::ascii(), picked] {
        if let Ok(a) = Address::parse_with(s, opts) {
            let again = Address::parse_with(&a.to_string(), opts).expect("displayed address re-parses");
            assert_eq!(again, a);
        }
        match (AddressRef::parse_with(s, opts), Address::parse_with(s, opts)) {
            (Ok(r), Ok(o)) => same_address(&r, &o, opts),
            (Err(r), Err(o)) => assert_eq!(r, o),
            (r, o) => panic!("{s:?}: borrowed {r:?}, owned {o:?}"),
        }
        match (ReversePathRef::parse_prefix(s, opts), ReversePath::parse_prefix(s, opts)) {
            (Ok((r, ru)), Ok((o, ou))) => {
                assert_eq!(ru, ou);
                assert_eq!(r.to_string(), o.to_string());
                match (r.address(), o.address()) {
                    (Some(r), Some(o)) => same_address(r, o, opts),
                    (None, None) => {}
                    _ => panic!("{s:?}: null in one parse only"),
                }
            }
            (Err(r), Err(o)) => assert_eq!(r, o),
            (r, o) => panic!("{s:?}: borrowed {r:?}, owned {o:?}"),
        }
        match (ForwardPathRef::parse_prefix(s, opts), ForwardPath::parse_prefix(s, opts)) {
            (Ok((r, ru)), Ok((o, ou))) => {
                assert_eq!(ru, ou);
                assert_eq!(r.is_postmaster(), o.is_postmaster());
                assert_eq!(r.to_string(), o.to_string());
                match (r.address(), o.address()) {
                    (Some(r), Some(o)) => same_address(r, o, opts),
                    (None, None) => {}
                    _ => panic!("{s:?}: bare postmaster in one parse only"),
                }
            }
            (Err(r), Err(o)) => assert_eq!(r, o),
            (r, o) => panic!("{s:?}: borrowed {r:?}, owned {o:?}"),
        }
    }
});
