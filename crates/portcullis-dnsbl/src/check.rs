//! [`Dnsbl`]: ask the zones about an address through a [`DnsLookup`],
//! caching answers under a TTL cap with time from a [`Clock`]; and the
//! [`DnsblFilter`].

use futures_util::future::join_all;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use portcullis_core::{Action, Clock, Context, Filter, Verdict, async_trait};

use crate::config::{DnsblConfig, DnsblDecision, DnsblReport, Listing, ListingAction, ZoneConfig};
use crate::lookup::{DnsAnswer, DnsLookup, DnsblError};
use crate::query::{canonical_ip, query_name};

#[derive(Debug, Clone)]
struct Cached<T> {
    expires: SystemTime,
    records: Vec<T>,
}

/// DNSBL/DNSWL checks for client addresses. See the crate docs.
pub struct Dnsbl {
    config: DnsblConfig,
    lookup: Arc<dyn DnsLookup>,
    clock: Arc<dyn Clock>,
    a_cache: DashMap<String, Cached<Ipv4Addr>>,
    txt_cache: DashMap<String, Cached<String>>,
}

impl std::fmt::Debug for Dnsbl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsbl")
            .field("config", &self.config)
            .field("cached", &self.cache_len())
            .finish_non_exhaustive()
    }
}

impl Dnsbl {
    /// Check with `config`, asking `lookup`, reading time from `clock`.
    pub fn new(config: DnsblConfig, lookup: Arc<dyn DnsLookup>, clock: Arc<dyn Clock>) -> Self {
        Dnsbl {
            config,
            lookup,
            clock,
            a_cache: DashMap::new(),
            txt_cache: DashMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &DnsblConfig {
        &self.config
    }

    /// Cached answers (A and TXT), including expired ones not yet swept.
    pub fn cache_len(&self) -> usize {
        self.a_cache.len() + self.txt_cache.len()
    }

    /// Forget every cached answer.
    pub fn clear_cache(&self) {
        self.a_cache.clear();
        self.txt_cache.clear();
    }

    /// Ask the zones about `ip`. Allowlists first, all at once; a hit ends
    /// it there. Then every blocklist at once (a connection waits for the
    /// slowest zone, not the sum of them), read in configured order until
    /// one rejects. TXT reasons are fetched only for rejecting and
    /// deferring listings. Answers are cached, so a repeat costs no DNS
    /// traffic until the (capped) TTL runs out.
    pub async fn report(&self, ip: IpAddr) -> DnsblReport {
        let ip = canonical_ip(ip);
        let mut report = DnsblReport::new(ip);
        let (allow, block): (Vec<&ZoneConfig>, Vec<&ZoneConfig>) =
            self.config.zones.iter().partition(|z| z.is_allowlist());
        for zones in [allow, block] {
            let answers = join_all(
                zones
                    .iter()
                    .map(|zone| {
                        let name = query_name(ip, &zone.zone);
                        async move {
                            let codes = self.cached_a(&name).await;
                            (name, codes)
                        }
                    })
                    .collect::<Vec<_>>(),
            )
            .await;
            for (zone, (name, codes)) in zones.iter().zip(answers) {
                let Some(action) = self.classify(zone, codes, &mut report) else {
                    continue;
                };
                match action {
                    (ListingAction::Ignore, _) => {}
                    (ListingAction::Allow, _) => {
                        report.allowed_by = Some(zone.zone.clone());
                        return report;
                    }
                    (action, codes) => {
                        let wants_reason =
                            matches!(action, ListingAction::Reject | ListingAction::Defer);
                        let reason = if wants_reason && self.config.fetch_reason {
                            self.reason(&name).await
                        } else {
                            None
                        };
                        report.listings.push(Listing {
                            zone: zone.zone.clone(),
                            codes,
                            action,
                            reason,
                        });
                        if action == ListingAction::Reject {
                            return report;
                        }
                    }
                }
            }
        }
        report
    }

    /// A zone's answer → its action and sorted codes; failures go to the
    /// report's errors.
    fn classify(
        &self,
        zone: &ZoneConfig,
        codes: Result<Vec<Ipv4Addr>, DnsblError>,
        report: &mut DnsblReport,
    ) -> Option<(ListingAction, Vec<Ipv4Addr>)> {
        let mut codes = match codes {
            Ok(codes) => codes,
            Err(e) => {
                tracing::warn!(zone = %zone.zone, error = %e, "DNSBL lookup failed");
                report.errors.push(e);
                return None;
            }
        };
        // Sorted so reports and headers do not depend on RRset order.
        codes.sort_unstable();
        codes.dedup();
        match zone.evaluate(&codes) {
            Ok(action) => Some((action, codes)),
            Err(e) => {
                tracing::warn!(zone = %zone.zone, error = %e, "DNSBL refused the query");
                report.errors.push(e);
                None
            }
        }
    }

    /// [`report`](Self::report) and [`DnsblConfig::decide`] in one.
    pub async fn check(&self, ip: IpAddr) -> DnsblDecision {
        let report = self.report(ip).await;
        self.config.decide(&report)
    }

    async fn cached_a(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsblError> {
        if let Some(hit) = fresh(&self.a_cache, name, self.clock.now()) {
            return Ok(hit);
        }
        let answer = self.lookup.lookup_a(name).await?;
        self.store(&self.a_cache, name, &answer);
        Ok(answer.records)
    }

    /// The TXT reason, printable and short; lookup failures just mean none.
    async fn reason(&self, name: &str) -> Option<String> {
        let texts = match fresh(&self.txt_cache, name, self.clock.now()) {
            Some(hit) => hit,
            None => match self.lookup.lookup_txt(name).await {
                Ok(answer) => {
                    self.store(&self.txt_cache, name, &answer);
                    answer.records
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no DNSBL TXT reason");
                    return None;
                }
            },
        };
        let text = texts.first()?;
        let clean: String = text
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(200)
            .collect();
        let clean = clean.trim();
        (!clean.is_empty()).then(|| clean.to_owned())
    }

    fn store<T: Clone>(
        &self,
        cache: &DashMap<String, Cached<T>>,
        name: &str,
        answer: &DnsAnswer<T>,
    ) {
        let cap = self.config.ttl_cap;
        let keep = answer
            .ttl
            .map_or(cap, |ttl| Duration::from_secs(u64::from(ttl)).min(cap));
        if keep.is_zero() {
            return;
        }
        let now = self.clock.now();
        cache.insert(
            name.to_owned(),
            Cached {
                expires: now + keep,
                records: answer.records.clone(),
            },
        );
        if cache.len() > self.config.max_cache_entries {
            cache.retain(|_, c| c.expires > now);
            if cache.len() > self.config.max_cache_entries {
                cache.clear();
            }
        }
    }
}

fn fresh<T: Clone>(
    cache: &DashMap<String, Cached<T>>,
    name: &str,
    now: SystemTime,
) -> Option<Vec<T>> {
    cache
        .get(name)
        .filter(|c| c.expires > now)
        .map(|c| c.records.clone())
}

/// The [`Filter`]: rejects or defers at `connect`; adds the tagging header
/// at `data_start` (the context's actions are per transaction, so a header
/// pushed at connect would be forgotten after the first message; the
/// repeat lookup is served from the cache).
///
/// Clients on a trusted network ([`Client::trusted_network`](portcullis_core::Client))
/// are not checked.
#[derive(Debug, Clone)]
pub struct DnsblFilter {
    dnsbl: Arc<Dnsbl>,
}

impl DnsblFilter {
    /// A filter over `dnsbl`.
    pub fn new(dnsbl: Arc<Dnsbl>) -> Self {
        DnsblFilter { dnsbl }
    }
}

#[async_trait]
impl Filter for DnsblFilter {
    fn name(&self) -> &'static str {
        "dnsbl"
    }

    async fn connect(&self, cx: &mut Context) -> Verdict {
        if cx.client.trusted_network {
            return Verdict::Continue;
        }
        match self.dnsbl.check(cx.client.ip()).await {
            DnsblDecision::Reject(reply) => Verdict::reject(reply),
            DnsblDecision::Defer(reply) => Verdict::defer(reply),
            _ => Verdict::Continue,
        }
    }

    async fn data_start(&self, cx: &mut Context) -> Verdict {
        if cx.client.trusted_network {
            return Verdict::Continue;
        }
        if let DnsblDecision::Tag {
            header_name,
            header_value,
            ..
        } = self.dnsbl.check(cx.client.ip()).await
        {
            cx.actions.push(Action::AddHeader {
                name: header_name,
                value: header_value,
            });
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::DnsAnswer;
    use portcullis_core::ManualClock;

    /// Each A lookup waits until `n` lookups are in flight at once.
    struct Rendezvous(tokio::sync::Barrier);

    #[async_trait]
    impl DnsLookup for Rendezvous {
        async fn lookup_a(&self, _name: &str) -> Result<DnsAnswer<Ipv4Addr>, DnsblError> {
            self.0.wait().await;
            Ok(DnsAnswer::found(vec![Ipv4Addr::new(127, 0, 0, 2)], 60))
        }
        async fn lookup_txt(&self, _name: &str) -> Result<DnsAnswer<String>, DnsblError> {
            Ok(DnsAnswer::not_found(None))
        }
    }

    #[tokio::test]
    async fn blocklists_are_asked_concurrently() {
        let zones = ["a.test", "b.test", "c.test"]
            .map(|z| ZoneConfig::blocklist(z).otherwise(ListingAction::Tag { score: 1 }));
        let dnsbl = Dnsbl::new(
            DnsblConfig::new(zones.to_vec()),
            Arc::new(Rendezvous(tokio::sync::Barrier::new(3))),
            Arc::new(ManualClock::default()),
        );
        // Asked one after the other, the first lookup would wait forever.
        let report = tokio::time::timeout(
            Duration::from_secs(10),
            dnsbl.report("192.0.2.1".parse().unwrap()),
        )
        .await
        .expect("lookups ran concurrently");
        let zones: Vec<&str> = report.listings.iter().map(|l| l.zone.as_str()).collect();
        assert_eq!(
            zones,
            ["a.test", "b.test", "c.test"],
            "configured order kept"
        );
        assert_eq!(report.score(), 3);
    }
}
