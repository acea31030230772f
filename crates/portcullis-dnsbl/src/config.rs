//! Zones, what their return codes mean, and the pure decision
//! [`DnsblConfig::decide`] from a [`DnsblReport`] to a [`DnsblDecision`].

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use portcullis_core::Reply;
use serde::{Deserialize, Serialize};

use crate::lookup::DnsblError;

/// Which return codes a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CodeMatch {
    /// Every code.
    Any,
    /// One code, e.g. `127.0.0.2` (Spamhaus SBL).
    Exact(Ipv4Addr),
    /// An inclusive range, e.g. `127.0.0.4`–`127.0.0.7` (Spamhaus XBL).
    Range(Ipv4Addr, Ipv4Addr),
}

impl CodeMatch {
    /// Whether `code` is covered.
    pub fn matches(&self, code: Ipv4Addr) -> bool {
        match *self {
            CodeMatch::Any => true,
            CodeMatch::Exact(c) => c == code,
            CodeMatch::Range(first, last) => (first..=last).contains(&code),
        }
    }
}

/// What a listing means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ListingAction {
    /// An allowlist (DNSWL) hit: skip every blocklist and continue.
    Allow,
    /// `554 5.7.1` naming the zone and its TXT reason.
    Reject,
    /// `451 4.7.1`, same text.
    Defer,
    /// Accept but add a header, and add `score` to the client's total
    /// (see [`DnsblConfig::reject_score`]).
    Tag {
        /// Points for this listing (may be negative).
        score: i32,
    },
    /// Not meaningful: as if not listed.
    Ignore,
}

impl ListingAction {
    fn rank(self) -> u8 {
        match self {
            ListingAction::Reject => 4,
            ListingAction::Defer => 3,
            ListingAction::Allow => 2,
            ListingAction::Tag { .. } => 1,
            ListingAction::Ignore => 0,
        }
    }
}

/// One code rule of a zone: first match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRule {
    /// Codes covered.
    pub codes: CodeMatch,
    /// What they mean.
    pub action: ListingAction,
}

/// One DNSBL or DNSWL zone and the meaning of its return codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ZoneConfig {
    /// The zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// Code rules, first match wins.
    #[serde(default)]
    pub rules: Vec<CodeRule>,
    /// The action for codes no rule covers.
    pub otherwise: ListingAction,
}

impl ZoneConfig {
    /// A blocklist: every listing rejects unless rules say otherwise.
    pub fn blocklist(zone: impl Into<String>) -> Self {
        ZoneConfig {
            zone: zone.into(),
            rules: Vec::new(),
            otherwise: ListingAction::Reject,
        }
    }

    /// An allowlist (DNSWL): every listing allows unless rules say otherwise.
    pub fn allowlist(zone: impl Into<String>) -> Self {
        ZoneConfig {
            zone: zone.into(),
            rules: Vec::new(),
            otherwise: ListingAction::Allow,
        }
    }

    /// Add a rule (after the existing ones).
    pub fn on(mut self, codes: CodeMatch, action: ListingAction) -> Self {
        self.rules.push(CodeRule { codes, action });
        self
    }

    /// Set the action for codes no rule covers.
    pub fn otherwise(mut self, action: ListingAction) -> Self {
        self.otherwise = action;
        self
    }

    /// Whether the zone can allow (it is asked before the blocklists).
    pub fn is_allowlist(&self) -> bool {
        self.otherwise == ListingAction::Allow
            || self.rules.iter().any(|r| r.action == ListingAction::Allow)
    }

    /// What one return code means. RFC 5782 §2.1: listings are A records
    /// in `127.0.0.0/8`; anything else (a wildcarding or expired zone)
    /// is ignored.
    pub fn action_for(&self, code: Ipv4Addr) -> ListingAction {
        if code.octets()[0] != 127 {
            return ListingAction::Ignore;
        }
        self.rules
            .iter()
            .find(|r| r.codes.matches(code))
            .map_or(self.otherwise, |r| r.action)
    }

    /// What a set of return codes means together: the strongest action
    /// (reject, defer, allow, tag, ignore), with the scores of tagging
    /// codes added up. `Err` when a code says the query was refused.
    pub fn evaluate(&self, codes: &[Ipv4Addr]) -> Result<ListingAction, DnsblError> {
        if let Some(&code) = codes.iter().find(|c| is_refusal_code(**c)) {
            return Err(DnsblError::QueryRefused {
                zone: self.zone.clone(),
                code,
            });
        }
        let mut strongest = ListingAction::Ignore;
        let mut score: i32 = 0;
        for &code in codes {
            let action = self.action_for(code);
            if let ListingAction::Tag { score: s } = action {
                score = score.saturating_add(s);
            }
            if action.rank() > strongest.rank() {
                strongest = action;
            }
        }
        Ok(match strongest {
            ListingAction::Tag { .. } => ListingAction::Tag { score },
            other => other,
        })
    }
}

/// `127.255.255.0/24`: "query refused" codes (see [`DnsblError::QueryRefused`]).
pub fn is_refusal_code(code: Ipv4Addr) -> bool {
    let [a, b, c, _] = code.octets();
    (a, b, c) == (127, 255, 255)
}

/// What to do when a zone gives no answer (SERVFAIL, timeout, refusal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OnDnsError {
    /// Ignore the zone (a DNSBL outage must not stop mail).
    #[default]
    Continue,
    /// `451 4.4.3`: try again later.
    Defer,
}

/// The zones and how their answers become decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsblConfig {
    /// Zones. Allowlists are asked first; then blocklists in this order.
    pub zones: Vec<ZoneConfig>,
    /// Longest time an answer is cached, whatever its TTL (default 5
    /// minutes, the same cap as the queue's MX routing).
    pub ttl_cap: Duration,
    /// Zones that fail.
    pub on_error: OnDnsError,
    /// Reject when the tag scores add up to at least this.
    pub reject_score: Option<i32>,
    /// Header added for tagging listings.
    pub header_name: String,
    /// Look up the TXT reason of rejecting and deferring listings.
    pub fetch_reason: bool,
    /// Cache entries kept before expired ones are swept (then all, if
    /// still over).
    pub max_cache_entries: usize,
}

impl Default for DnsblConfig {
    fn default() -> Self {
        DnsblConfig {
            zones: Vec::new(),
            ttl_cap: Duration::from_secs(300),
            on_error: OnDnsError::Continue,
            reject_score: None,
            header_name: "X-DNSBL".to_owned(),
            fetch_reason: true,
            max_cache_entries: 100_000,
        }
    }
}

impl DnsblConfig {
    /// A configuration with these zones and defaults otherwise.
    pub fn new(zones: Vec<ZoneConfig>) -> Self {
        DnsblConfig {
            zones,
            ..Self::default()
        }
    }

    /// Set the TTL cap.
    pub fn with_ttl_cap(mut self, cap: Duration) -> Self {
        self.ttl_cap = cap;
        self
    }

    /// Set what failing zones do.
    pub fn with_on_error(mut self, on_error: OnDnsError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Set the score threshold.
    pub fn with_reject_score(mut self, score: Option<i32>) -> Self {
        self.reject_score = score;
        self
    }

    /// Decide from a report. Pure and synchronous.
    pub fn decide(&self, report: &DnsblReport) -> DnsblDecision {
        if let Some(zone) = &report.allowed_by {
            return DnsblDecision::Allowed { zone: zone.clone() };
        }
        let first = |wanted: ListingAction| report.listings.iter().find(|l| l.action == wanted);
        if let Some(l) = first(ListingAction::Reject) {
            return DnsblDecision::Reject(Reply::new(
                554,
                (5, 7, 1),
                listing_text("Service unavailable", report.ip, l),
            ));
        }
        let tags: Vec<&Listing> = report
            .listings
            .iter()
            .filter(|l| matches!(l.action, ListingAction::Tag { .. }))
            .collect();
        let score = report.score();
        if let Some(threshold) = self.reject_score
            && !tags.is_empty()
            && score >= threshold
        {
            let zones: Vec<&str> = tags.iter().map(|l| l.zone.as_str()).collect();
            return DnsblDecision::Reject(Reply::new(
                554,
                (5, 7, 1),
                format!(
                    "Service unavailable; client host [{}] scored {score} on DNS blocklists ({})",
                    report.ip,
                    zones.join(", ")
                ),
            ));
        }
        if let Some(l) = first(ListingAction::Defer) {
            return DnsblDecision::Defer(Reply::new(
                451,
                (4, 7, 1),
                listing_text("Temporarily refused", report.ip, l),
            ));
        }
        if !report.errors.is_empty() && self.on_error == OnDnsError::Defer {
            // RFC 3463 §3.5: X.4.3 directory server failure.
            return DnsblDecision::Defer(Reply::new(
                451,
                (4, 4, 3),
                "DNS blocklist lookup failed, please try again later",
            ));
        }
        if tags.is_empty() {
            return DnsblDecision::Continue;
        }
        let mut value = String::new();
        for l in &tags {
            let codes: Vec<String> = l.codes.iter().map(Ipv4Addr::to_string).collect();
            value.push_str(&format!("{}={}; ", l.zone, codes.join(",")));
        }
        value.push_str(&format!("score={score}"));
        DnsblDecision::Tag {
            header_name: self.header_name.clone(),
            header_value: value,
            score,
        }
    }
}

fn listing_text(lead: &str, ip: IpAddr, l: &Listing) -> String {
    match &l.reason {
        Some(reason) => format!(
            "{lead}; client host [{ip}] blocked using {}; {reason}",
            l.zone
        ),
        None => format!("{lead}; client host [{ip}] blocked using {}", l.zone),
    }
}

/// One zone that lists the address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listing {
    /// The zone.
    pub zone: String,
    /// Its return codes.
    pub codes: Vec<Ipv4Addr>,
    /// What they mean ([`ZoneConfig::evaluate`]).
    pub action: ListingAction,
    /// The TXT reason, when fetched and present (printable ASCII, at most
    /// 200 characters).
    pub reason: Option<String>,
}

/// Everything the zones said about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsblReport {
    /// The address asked about.
    pub ip: IpAddr,
    /// The allowlist that listed it (then no blocklist was asked).
    pub allowed_by: Option<String>,
    /// Blocklists that list it (not `Ignore`d codes). Asking stops at the
    /// first rejecting listing.
    pub listings: Vec<Listing>,
    /// Zones that gave no answer.
    pub errors: Vec<DnsblError>,
}

impl DnsblReport {
    /// An empty report for `ip`.
    pub fn new(ip: IpAddr) -> Self {
        DnsblReport {
            ip,
            allowed_by: None,
            listings: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The sum of the tag scores.
    pub fn score(&self) -> i32 {
        self.listings
            .iter()
            .map(|l| match l.action {
                ListingAction::Tag { score } => score,
                _ => 0,
            })
            .fold(0i32, i32::saturating_add)
    }
}

/// What the lists mean for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsblDecision {
    /// Not listed (or only ignored codes, or failed zones with
    /// [`OnDnsError::Continue`]).
    Continue,
    /// An allowlist lists it: continue without asking blocklists.
    Allowed {
        /// The allowlist.
        zone: String,
    },
    /// Listed with tagging codes: accept, add this header.
    Tag {
        /// Header name ([`DnsblConfig::header_name`]).
        header_name: String,
        /// `zone=codes; …; score=N`.
        header_value: String,
        /// Total score.
        score: i32,
    },
    /// Refuse temporarily.
    Defer(Reply),
    /// Refuse.
    Reject(Reply),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn zen() -> ZoneConfig {
        // Spamhaus ZEN: SBL .2, CSS .3, XBL .4-.7, PBL .10-.11.
        ZoneConfig::blocklist("zen.spamhaus.org")
            .on(
                CodeMatch::Range(ip4("127.0.0.10"), ip4("127.0.0.11")),
                ListingAction::Tag { score: 2 },
            )
            .on(CodeMatch::Exact(ip4("127.0.0.3")), ListingAction::Defer)
    }

    #[test]
    fn codes_map_to_actions() {
        let z = zen();
        assert_eq!(z.action_for(ip4("127.0.0.2")), ListingAction::Reject);
        assert_eq!(z.action_for(ip4("127.0.0.3")), ListingAction::Defer);
        assert_eq!(
            z.action_for(ip4("127.0.0.11")),
            ListingAction::Tag { score: 2 }
        );
        assert_eq!(z.action_for(ip4("10.0.0.2")), ListingAction::Ignore);
        assert_eq!(
            z.evaluate(&[ip4("127.0.0.10"), ip4("127.0.0.2")]),
            Ok(ListingAction::Reject)
        );
        assert_eq!(
            z.evaluate(&[ip4("127.0.0.10"), ip4("127.0.0.11")]),
            Ok(ListingAction::Tag { score: 4 })
        );
        assert!(matches!(
            z.evaluate(&[ip4("127.255.255.254")]),
            Err(DnsblError::QueryRefused { .. })
        ));
        assert_eq!(z.evaluate(&[]), Ok(ListingAction::Ignore));
    }

    #[test]
    fn decisions() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let config = DnsblConfig::new(vec![zen()]);
        let mut report = DnsblReport::new(ip);
        assert_eq!(config.decide(&report), DnsblDecision::Continue);

        report.errors.push(DnsblError::Lookup {
            name: "x.".into(),
            detail: "SERVFAIL".into(),
        });
        assert_eq!(config.decide(&report), DnsblDecision::Continue);
        let strict = config.clone().with_on_error(OnDnsError::Defer);
        match strict.decide(&report) {
            DnsblDecision::Defer(r) => assert_eq!(
                r.to_wire(true),
                b"451 4.4.3 DNS blocklist lookup failed, please try again later\r\n"
            ),
            other => panic!("{other:?}"),
        }

        report.listings.push(Listing {
            zone: "pbl.test".into(),
            codes: vec![ip4("127.0.0.10")],
            action: ListingAction::Tag { score: 3 },
            reason: None,
        });
        match config.decide(&report) {
            DnsblDecision::Tag {
                header_name,
                header_value,
                score,
            } => {
                assert_eq!(header_name, "X-DNSBL");
                assert_eq!(header_value, "pbl.test=127.0.0.10; score=3");
                assert_eq!(score, 3);
            }
            other => panic!("{other:?}"),
        }
        let scored = config.clone().with_reject_score(Some(3));
        assert!(matches!(scored.decide(&report), DnsblDecision::Reject(_)));
        let scored = config.clone().with_reject_score(Some(4));
        assert!(matches!(scored.decide(&report), DnsblDecision::Tag { .. }));

        report.listings.push(Listing {
            zone: "zen.spamhaus.org".into(),
            codes: vec![ip4("127.0.0.2")],
            action: ListingAction::Reject,
            reason: Some("https://check.spamhaus.org/".into()),
        });
        match config.decide(&report) {
            DnsblDecision::Reject(r) => assert_eq!(
                r.to_wire(true),
                b"554 5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org; https://check.spamhaus.org/\r\n"
            ),
            other => panic!("{other:?}"),
        }
        report.allowed_by = Some("list.dnswl.org".into());
        assert_eq!(
            config.decide(&report),
            DnsblDecision::Allowed {
                zone: "list.dnswl.org".into()
            }
        );
    }
}
