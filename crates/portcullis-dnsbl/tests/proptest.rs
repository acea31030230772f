//! Invariants of RFC 5782 query names and of code evaluation.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use portcullis_dnsbl::{
    CodeMatch, ListingAction, ZoneConfig, canonical_ip, parse_query_name, query_name,
};
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

proptest! {
    #[test]
    fn query_names_round_trip(ip in any_ip(), zone in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}") {
        let name = query_name(ip, &zone);
        let suffix = format!(".{zone}.");
        prop_assert!(name.ends_with(&suffix));
        prop_assert_eq!(parse_query_name(&name, &zone), Some(canonical_ip(ip)));
        prop_assert_eq!(parse_query_name(&name.to_ascii_uppercase(), &zone), Some(canonical_ip(ip)));
    }

    #[test]
    fn ipv4_labels_are_reversed_octets(v in any::<u32>()) {
        let ip = Ipv4Addr::from(v);
        let name = query_name(IpAddr::V4(ip), "bl.example");
        let labels: Vec<u8> = name.split('.').take(4).map(|l| l.parse().unwrap()).collect();
        let mut octets = ip.octets().to_vec();
        octets.reverse();
        prop_assert_eq!(labels, octets);
    }

    #[test]
    fn ipv6_labels_are_reversed_nibbles(v in any::<u128>()) {
        let ip = Ipv6Addr::from(v);
        prop_assume!(ip.to_ipv4_mapped().is_none());
        let name = query_name(IpAddr::V6(ip), "bl.example");
        let mut labels: Vec<&str> = name.split('.').take(32).collect();
        prop_assert!(labels.iter().all(|l| l.len() == 1));
        labels.reverse();
        prop_assert_eq!(labels.concat(), format!("{v:032x}"));
        prop_assert_eq!(name.len(), 64 + "bl.example.".len());
    }

    #[test]
    fn parse_never_panics(name in "\\PC{0,120}", zone in "\\PC{0,20}") {
        let _ = parse_query_name(&name, &zone);
    }

    #[test]
    fn only_127_slash_8_codes_can_list(code in any::<u32>()) {
        let code = Ipv4Addr::from(code);
        let zone = ZoneConfig::blocklist("bl.example").on(CodeMatch::Any, ListingAction::Reject);
        let action = zone.action_for(code);
        prop_assert_eq!(action == ListingAction::Reject, code.octets()[0] == 127);
    }
}
