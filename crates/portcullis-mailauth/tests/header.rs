//! The `Authentication-Results` value always has RFC 8601 shape and carries
//! the client's values back unchanged (control characters aside), whatever
//! the client sent: checked with an independent parser (`common/mod.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AuthResultsHeader, parse_auth_results};
use portcullis_mailauth::{
    AuthResults, DkimOutcome, DkimResult, DmarcOutcome, DmarcPolicy, DmarcResult, SpfOutcome,
    SpfResult,
};
use proptest::prelude::*;

fn spf() -> impl Strategy<Value = SpfResult> {
    prop::sample::select(vec![
        SpfResult::None,
        SpfResult::Neutral,
        SpfResult::Pass,
        SpfResult::Fail,
        SpfResult::SoftFail,
        SpfResult::TempError,
        SpfResult::PermError,
    ])
}

fn dkim() -> impl Strategy<Value = DkimResult> {
    prop::sample::select(vec![
        DkimResult::None,
        DkimResult::Pass,
        DkimResult::Fail,
        DkimResult::Neutral,
        DkimResult::TempError,
        DkimResult::PermError,
    ])
}

fn dmarc() -> impl Strategy<Value = DmarcResult> {
    prop::sample::select(vec![
        DmarcResult::None,
        DmarcResult::Pass,
        DmarcResult::Fail,
        DmarcResult::TempError,
        DmarcResult::PermError,
    ])
}

/// Hostile text: anything, with a bias to header syntax and line breaks.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9.@;=()\" \\\\\r\n\t-]{0,24}",
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
        "[a-z]{1,8}@[a-z]{1,8}\\.test",
    ]
}

fn without_controls(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

proptest! {
    #[test]
    fn header_parses_and_round_trips(
        authserv in text(),
        helo in text(),
        mail_from in text(),
        spf_helo in spf(),
        spf_mail in spf(),
        sigs in prop::collection::vec((dkim(), text(), text(), prop::option::of(text())), 0..3),
        dmarc_result in dmarc(),
        from_domain in text(),
    ) {
        let mut results = AuthResults::new("192.0.2.1".parse().unwrap(), helo.clone(), mail_from.clone());
        results.spf_helo = SpfOutcome::new(spf_helo, "h.test");
        results.spf_mail_from = SpfOutcome::new(spf_mail, "m.test");
        results.dkim = sigs
            .iter()
            .map(|(r, d, s, reason)| {
                let outcome = DkimOutcome::new(*r, d.clone(), s.clone());
                match reason {
                    Some(reason) => outcome.with_reason(reason.clone()),
                    None => outcome,
                }
            })
            .collect();
        results.dmarc = DmarcOutcome::new(dmarc_result, from_domain.clone(), DmarcPolicy::Reject);
        let value = results.header_value(&authserv);
        prop_assert!(!value.contains('\r') && !value.contains('\n'));
        let parsed = parse_auth_results(&value)
            .map_err(|e| TestCaseError::fail(format!("{e}: {value:?}")))?;
        prop_assert_eq!(&parsed.authserv_id, &without_controls(&authserv));

        let spf = parsed.get("spf");
        prop_assert_eq!(spf[0].result.as_str(), spf_mail.as_str());
        if !mail_from.is_empty() {
            prop_assert_eq!(
                AuthResultsHeader::prop(spf[0], "smtp.mailfrom").map(str::to_owned),
                Some(without_controls(&mail_from))
            );
        }
        if helo.is_empty() {
            prop_assert_eq!(spf.len(), 1);
        } else {
            prop_assert_eq!(spf[1].result.as_str(), spf_helo.as_str());
            prop_assert_eq!(
                AuthResultsHeader::prop(spf[1], "smtp.helo").map(str::to_owned),
                Some(without_controls(&helo))
            );
        }

        let dkim = parsed.get("dkim");
        prop_assert_eq!(dkim.len(), sigs.len().max(1));
        for (got, (r, d, s, reason)) in dkim.iter().zip(&sigs) {
            prop_assert_eq!(got.result.as_str(), r.as_str());
            prop_assert_eq!(got.reason.clone(), reason.as_deref().map(without_controls));
            if !d.is_empty() {
                prop_assert_eq!(
                    AuthResultsHeader::prop(got, "header.d").map(str::to_owned),
                    Some(without_controls(d))
                );
            }
            if !s.is_empty() {
                prop_assert_eq!(
                    AuthResultsHeader::prop(got, "header.s").map(str::to_owned),
                    Some(without_controls(s))
                );
            }
        }

        let dmarc = parsed.get("dmarc");
        prop_assert_eq!(dmarc.len(), 1);
        prop_assert_eq!(dmarc[0].result.as_str(), dmarc_result.as_str());
    }
}

#[test]
fn parser_rejects_what_it_should() {
    // The parser is the oracle, so it must be able to say no.
    for bad in [
        "",
        "host; spf",
        "host; spf=maybe",
        "host; dkim=pass header.d",
        "host; dkim=pass bogus.d=x",
        "host; dkim=pass header.d=\"unterminated",
        "host; dmarc=pass (comment",
        "host spf=pass",
        "host; foo=pass",
    ] {
        assert!(parse_auth_results(bad).is_err(), "{bad:?}");
    }
    let ok = parse_auth_results(
        "mx.example.org (a comment); spf=pass (why) smtp.mailfrom=a@b.example; \
         dkim=fail reason=\"bad sig\" header.d=b.example header.s=sel; dmarc=none",
    )
    .unwrap();
    assert_eq!(ok.authserv_id, "mx.example.org");
    assert_eq!(ok.results.len(), 3);
    assert_eq!(ok.results[1].reason.as_deref(), Some("bad sig"));
    assert_eq!(parse_auth_results("mx; none").unwrap().results, vec![]);
}
