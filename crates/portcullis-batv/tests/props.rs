//! Invariants of prvs signing and verification, for any address, key and time.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_batv::{KeyRing, Prvs, PrvsConfig, Verification};
use portcullis_core::Address;
use proptest::prelude::*;

/// Dot-atoms of RFC 5321 atext (no quoting needed); room left for the 16-octet tag.
fn local_part() -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}", 1..4)
        .prop_map(|atoms| atoms.join("."))
        .prop_filter("fits with the tag", |l| l.len() <= 48)
}

fn domain() -> impl Strategy<Value = String> {
    proptest::collection::vec("[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", 1..4)
        .prop_map(|labels| labels.join("."))
}

fn address() -> impl Strategy<Value = Address> {
    (local_part(), domain()).prop_map(|(l, d)| Address::parse(&format!("{l}@{d}")).unwrap())
}

fn secret() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..=64)
}

fn instant() -> impl Strategy<Value = SystemTime> {
    (0u64..8_000_000_000).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

const ATEXT: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-.";

proptest! {
    #[test]
    fn sign_then_verify_round_trips(
        addr in address(), key in 0u8..10, secret in secret(), now in instant(),
        later in 0u64..=7,
    ) {
        let prvs = Prvs::new(KeyRing::new(key, &secret).unwrap());
        let tagged = prvs.sign(&addr, now).unwrap();
        let checked_at = now + Duration::from_secs(later * 86_400);
        prop_assert_eq!(
            prvs.verify(&tagged, checked_at),
            Verification::Valid { original: addr, key }
        );
    }

    #[test]
    fn any_single_character_change_fails(
        addr in address(), key in 0u8..10, secret in secret(), now in instant(),
        position in any::<prop::sample::Index>(), replacement in prop::sample::select(ATEXT),
    ) {
        let prvs = Prvs::new(KeyRing::new(key, &secret).unwrap());
        let tagged = prvs.sign(&addr, now).unwrap().to_string();
        let at = tagged.find('@').unwrap();
        // Any character but the '@' itself.
        let mut i = position.index(tagged.len() - 1);
        if i >= at { i += 1; }
        let old = tagged.as_bytes()[i];
        // The tag syntax ("prvs=", hex digits) is case-insensitive by design,
        // so a case change there is not a change; everywhere else it is.
        let in_tag_syntax = i < 16;
        let same = if in_tag_syntax { old.eq_ignore_ascii_case(&replacement) } else { old == replacement };
        prop_assume!(!same);
        let mut bytes = tagged.clone().into_bytes();
        bytes[i] = replacement;
        let changed = String::from_utf8(bytes).unwrap();
        let Ok(changed) = Address::parse(&changed) else {
            // Not an address any more (e.g. ".." in a dot-string): cannot arrive.
            return Ok(());
        };
        let result = prvs.verify(&changed, now);
        prop_assert!(!result.is_valid(), "{} -> {} accepted: {:?}", tagged, changed, result);
    }

    #[test]
    fn tags_past_their_window_are_expired(
        addr in address(), secret in secret(), now in instant(),
        validity in 1u16..30, extra in 1u64..(1000 - 30),
    ) {
        let config = PrvsConfig::default().with_validity_days(validity).unwrap();
        let prvs = Prvs::new(KeyRing::new(1, &secret).unwrap()).with_config(config);
        let tagged = prvs.sign(&addr, now).unwrap();
        // Midnight-safe: the tag expires at the end of day (signing day + validity).
        let last_valid = now + Duration::from_secs(u64::from(validity) * 86_400);
        prop_assert!(prvs.verify(&tagged, last_valid).is_valid());
        let expired_at = last_valid + Duration::from_secs(extra * 86_400);
        prop_assert!(
            matches!(prvs.verify(&tagged, expired_at), Verification::Expired { key: 1, .. }),
            "{:?}", prvs.verify(&tagged, expired_at)
        );
    }
}

proptest! {
    #[test]
    fn srs_forward_then_reverse_round_trips(
        addr in address(), secret in secret(), now in instant(), later in 0u64..=21,
    ) {
        let srs = portcullis_batv::Srs::new(&secret).unwrap();
        let local = srs
            .forward_local(addr.local_part().as_str(), addr.domain().as_str(), now)
            .unwrap();
        let back = srs.reverse_local(&local, now + Duration::from_secs(later * 86_400)).unwrap();
        prop_assert_eq!(back, (addr.local_part().as_str().to_owned(), addr.domain().as_str().to_owned()));
        // Case smashing anywhere is tolerated, as libsrs2 does.
        let smashed = srs.reverse_local(&local.to_ascii_lowercase(), now).unwrap();
        prop_assert_eq!(smashed.1, addr.domain().as_str().to_ascii_lowercase());
    }

    #[test]
    fn srs_hash_change_fails(
        addr in address(), secret in secret(), now in instant(),
        position in 0usize..4, replacement in prop::sample::select(&b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"[..]),
    ) {
        let srs = portcullis_batv::Srs::new(&secret).unwrap();
        let local = srs
            .forward_local(addr.local_part().as_str(), addr.domain().as_str(), now)
            .unwrap();
        let mut bytes = local.into_bytes();
        // "SRS0=" then four hash characters.
        prop_assume!(!bytes[5 + position].eq_ignore_ascii_case(&replacement));
        bytes[5 + position] = replacement;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(
            srs.reverse_local(&changed, now),
            Err(portcullis_batv::SrsError::BadHash)
        );
    }
}
