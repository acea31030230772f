//! Invariants of sender normalisation and triplet keys, over generated
//! addresses that hit the SRS, BATV and VERP paths.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use portcullis_core::{Address, ForwardPath, ReversePath};
use portcullis_greylist::{Greylist, GreylistConfig, MemoryStore, Triplet, normalise_sender};
use proptest::prelude::*;

/// Local parts built from the characters the rewriting schemes use.
fn local_part() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "SRS0", "SRS1", "srs0", "prvs", "btv1", "msprvs1", "=", "==", "+", "-", ".", "_", "0",
            "42", "9999", "a", "Z", "x1", "é",
        ]),
        1..10,
    )
    .prop_map(|parts| parts.concat())
}

fn domain() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "example.org",
        "EXAMPLE.org",
        "Sub.Example.NET",
        "xn--bcher-kva.example",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    /// Never panics, never yields a tab (the key separator) or an empty
    /// result for a mailbox, and does not depend on the domain's case.
    #[test]
    fn normalisation_is_total_and_case_blind(local in local_part(), domain in domain()) {
        let Ok(sender) = ReversePath::parse(&format!("<{local}@{domain}>")) else {
            return Ok(());
        };
        let n = normalise_sender(&sender);
        prop_assert!(!n.is_empty());
        prop_assert!(!n.contains('\t'));
        prop_assert!(n.contains('@'));
        let upper = ReversePath::parse(&format!("<{local}@{}>", domain.to_ascii_uppercase())).unwrap();
        prop_assert_eq!(normalise_sender(&upper), n);
    }

    /// A triplet key has exactly three tab-separated fields, whatever the addresses.
    #[test]
    fn keys_have_three_fields(local in local_part(), domain in domain(), rcpt in local_part(), a in any::<u8>(), b in any::<u8>()) {
        let Ok(sender) = ReversePath::parse(&format!("<{local}@{domain}>")) else {
            return Ok(());
        };
        let Ok(recipient) = Address::parse(&format!("{rcpt}@example.net")) else {
            return Ok(());
        };
        let g = Greylist::new(Arc::new(MemoryStore::new()), GreylistConfig::default());
        let t = Triplet::new(format!("192.0.{a}.{b}").parse().unwrap(), sender, ForwardPath::Mailbox(recipient));
        let key = g.key(&t);
        prop_assert_eq!(key.split('\t').count(), 3);
        let prefix = format!("192.0.{a}.0/24\t");
        prop_assert!(key.starts_with(&prefix), "{} does not start with {}", key, prefix);
    }

    /// Two different plain senders (no tags, no digits) never share a key.
    #[test]
    fn plain_senders_stay_distinct(x in "[a-z]{1,12}", y in "[a-z]{1,12}") {
        prop_assume!(x != y);
        let nx = normalise_sender(&ReversePath::parse(&format!("<{x}@example.org>")).unwrap());
        let ny = normalise_sender(&ReversePath::parse(&format!("<{y}@example.org>")).unwrap());
        prop_assert_ne!(nx, ny);
    }
}
