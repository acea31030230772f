//! The filters configured by `[dnsbl]`, `[scan]` and `[mailauth]`: their
//! config sections, the checked settings, and the `Filter`s built from them
//! for the MX listener's chain.
//!
//! - `[dnsbl]` (portcullis-dnsbl): DNSBL/DNSWL zones asked at connect, each
//!   listing's return code mapped to an action (reject `554 5.7.1`, defer,
//!   tag, allow, ignore).
//! - `[scan]` (portcullis-scan): every message streamed to `clamd`
//!   (INSTREAM) at the end of DATA; a virus is rejected or quarantined.
//! - `[mailauth]` (portcullis-mailauth): SPF, DKIM and DMARC verification
//!   adding `Authentication-Results`; DMARC `p=reject` enforced on request.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Clock, Filter};
use serde::Deserialize;

use crate::config::ConfigError;

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn name_servers(key: &str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<SocketAddr>()
                .or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    invalid(
                        format!("{key}[{i}]"),
                        format!("{s:?} is not an address such as \"127.0.0.1:53\""),
                    )
                })
        })
        .collect()
}

/// `[dnsbl]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DnsblSection {
    pub(crate) nameservers: Vec<String>,
    pub(crate) timeout_secs: u64,
    pub(crate) ttl_cap_secs: u64,
    pub(crate) on_error: String,
    pub(crate) reject_score: Option<i32>,
    pub(crate) zone: Vec<ZoneSection>,
}

impl Default for DnsblSection {
    fn default() -> Self {
        DnsblSection {
            nameservers: Vec::new(),
            timeout_secs: 5,
            ttl_cap_secs: 300,
            on_error: "continue".into(),
            reject_score: None,
            zone: Vec::new(),
        }
    }
}

/// One `[[dnsbl.zone]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ZoneSection {
    pub(crate) zone: String,
    #[serde(default)]
    pub(crate) otherwise: Option<String>,
    /// `"127.0.0.2"` or `"127.0.0.4-127.0.0.7"` → action; entries must
    /// not overlap.
    #[serde(default)]
    pub(crate) codes: toml::Table,
}

/// DNSBL settings the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct DnsblSettings {
    pub(crate) config: portcullis_dnsbl::DnsblConfig,
    /// Empty: the system resolver (`/etc/resolv.conf`).
    pub(crate) name_servers: Vec<SocketAddr>,
    pub(crate) timeout: Duration,
}

fn listing_action(key: &str, s: &str) -> Result<portcullis_dnsbl::ListingAction, ConfigError> {
    use portcullis_dnsbl::ListingAction as A;
    Ok(match s {
        "reject" => A::Reject,
        "defer" => A::Defer,
        "allow" => A::Allow,
        "ignore" => A::Ignore,
        "tag" => A::Tag { score: 1 },
        other => match other.strip_prefix("tag:").map(str::parse::<i32>) {
            Some(Ok(score)) => A::Tag { score },
            _ => {
                return Err(invalid(
                    key,
                    format!(
                        "{other:?} is not one of \"reject\", \"defer\", \"tag\", \"tag:<score>\", \"allow\", \"ignore\""
                    ),
                ));
            }
        },
    })
}

fn code_match(key: &str, s: &str) -> Result<portcullis_dnsbl::CodeMatch, ConfigError> {
    let ip = |t: &str| {
        t.trim().parse::<Ipv4Addr>().map_err(|_| {
            invalid(
                key,
                format!("{s:?} is not a code such as \"127.0.0.2\" or \"127.0.0.4-127.0.0.7\""),
            )
        })
    };
    Ok(match s.split_once('-') {
        Some((a, b)) => portcullis_dnsbl::CodeMatch::Range(ip(a)?, ip(b)?),
        None => portcullis_dnsbl::CodeMatch::Exact(ip(s)?),
    })
}

impl DnsblSection {
    /// The checked settings, or `None` without zones.
    pub(crate) fn check(&self) -> Result<Option<DnsblSettings>, ConfigError> {
        if self.zone.is_empty() {
            return Ok(None);
        }
        let mut zones = Vec::new();
        for (i, z) in self.zone.iter().enumerate() {
            let key = |k: &str| format!("dnsbl.zone[{i}].{k}");
            let name = z.zone.trim_end_matches('.');
            if portcullis_core::Domain::parse(name).is_err() {
                return Err(invalid(
                    key("zone"),
                    format!(
                        "{:?} is not a DNS zone such as \"zen.spamhaus.org\"",
                        z.zone
                    ),
                ));
            }
            let mut zc = portcullis_dnsbl::ZoneConfig::blocklist(name);
            if let Some(o) = &z.otherwise {
                zc = zc.otherwise(listing_action(&key("otherwise"), o)?);
            }
            // A TOML table has no order: overlapping codes would be
            // ambiguous, so they are refused.
            let mut seen: Vec<(u32, u32, &str)> = Vec::new();
            for (code, action) in &z.codes {
                let k = format!("{}.{code:?}", key("codes"));
                let action = action
                    .as_str()
                    .ok_or_else(|| invalid(&k, "must be a string such as \"reject\""))?;
                let m = code_match(&k, code)?;
                let (lo, hi) = match m {
                    portcullis_dnsbl::CodeMatch::Exact(c) => (u32::from(c), u32::from(c)),
                    portcullis_dnsbl::CodeMatch::Range(a, b) => (u32::from(a), u32::from(b)),
                    _ => (0, u32::MAX),
                };
                if lo > hi {
                    return Err(invalid(&k, "the range's first code is above its last"));
                }
                if let Some((_, _, other)) = seen.iter().find(|(l, h, _)| lo <= *h && *l <= hi) {
                    return Err(invalid(&k, format!("overlaps {other:?}")));
                }
                seen.push((lo, hi, code));
                zc = zc.on(m, listing_action(&k, action)?);
            }
            zones.push(zc);
        }
        let on_error = match self.on_error.as_str() {
            "continue" => portcullis_dnsbl::OnDnsError::Continue,
            "defer" => portcullis_dnsbl::OnDnsError::Defer,
            other => {
                return Err(invalid(
                    "dnsbl.on_error",
                    format!("{other:?} is not one of \"continue\", \"defer\""),
                ));
            }
        };
        Ok(Some(DnsblSettings {
            config: portcullis_dnsbl::DnsblConfig::new(zones)
                .with_ttl_cap(Duration::from_secs(self.ttl_cap_secs))
                .with_on_error(on_error)
                .with_reject_score(self.reject_score),
            name_servers: name_servers("dnsbl.nameservers", &self.nameservers)?,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        }))
    }
}

/// The DNSBL filter (asks at connect, tags at DATA).
pub(crate) fn dnsbl_filter(
    s: &DnsblSettings,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Filter>, String> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use portcullis_dnsbl::hickory::HickoryLookup;
    let lookup = if s.name_servers.is_empty() {
        HickoryLookup::from_system(s.timeout)
    } else {
        let servers = s
            .name_servers
            .iter()
            .map(|a| {
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                for c in &mut ns.connections {
                    c.port = a.port();
                }
                ns
            })
            .collect();
        HickoryLookup::with_resolver_config(ResolverConfig::from_name_servers(servers), s.timeout)
    }
    .map_err(|e| format!("dnsbl: {e}"))?;
    let lookup = TimedLookup(lookup);
    let dnsbl = portcullis_dnsbl::Dnsbl::new(s.config.clone(), Arc::new(lookup), clock);
    Ok(Arc::new(portcullis_dnsbl::DnsblFilter::new(Arc::new(
        dnsbl,
    ))))
}

/// DNS lookups timed for `portcullis_store_seconds{store="dnsbl"}` (cache
/// misses only: the `Dnsbl` caches answers).
struct TimedLookup<L>(L);

#[portcullis_core::async_trait]
impl<L: portcullis_dnsbl::DnsLookup> portcullis_dnsbl::DnsLookup for TimedLookup<L> {
    async fn lookup_a(
        &self,
        name: &str,
    ) -> Result<portcullis_dnsbl::DnsAnswer<Ipv4Addr>, portcullis_dnsbl::DnsblError> {
        let started = tokio::time::Instant::now();
        let r = self.0.lookup_a(name).await;
        crate::metrics::store_call("dnsbl", "lookup_a", started.elapsed());
        r
    }
    async fn lookup_txt(
        &self,
        name: &str,
    ) -> Result<portcullis_dnsbl::DnsAnswer<String>, portcullis_dnsbl::DnsblError> {
        let started = tokio::time::Instant::now();
        let r = self.0.lookup_txt(name).await;
        crate::metrics::store_call("dnsbl", "lookup_txt", started.elapsed());
        r
    }
}

/// The content scanner, timed for `portcullis_store_seconds{store="scan"}`
/// (one `INSTREAM` scan: connect, stream, verdict).
struct TimedScan(portcullis_scan::ScanFilter);

#[portcullis_core::async_trait]
impl Filter for TimedScan {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    async fn message(
        &self,
        cx: &mut portcullis_core::Context,
        message: &[u8],
    ) -> portcullis_core::Verdict {
        let started = tokio::time::Instant::now();
        let v = self.0.message(cx, message).await;
        crate::metrics::store_call("scan", "instream", started.elapsed());
        v
    }
}

/// `[scan]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ScanSection {
    pub(crate) clamd: Option<String>,
    pub(crate) on_virus: String,
    pub(crate) on_failure: String,
    pub(crate) connect_timeout_secs: u64,
    pub(crate) scan_timeout_secs: u64,
}

impl Default for ScanSection {
    fn default() -> Self {
        ScanSection {
            clamd: None,
            on_virus: "reject".into(),
            on_failure: "defer".into(),
            connect_timeout_secs: 5,
            scan_timeout_secs: 60,
        }
    }
}

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClamdAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Scanner settings the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct ScanSettings {
    pub(crate) clamd: ClamdAddr,
    pub(crate) policy: portcullis_scan::ScanPolicy,
    pub(crate) config: portcullis_scan::ScanConfig,
}

impl ScanSection {
    /// The checked settings, or `None` while `clamd` is unset.
    pub(crate) fn check(&self) -> Result<Option<ScanSettings>, ConfigError> {
        let Some(addr) = &self.clamd else {
            return Ok(None);
        };
        let clamd = if addr.starts_with('/') {
            ClamdAddr::Unix(PathBuf::from(addr))
        } else {
            ClamdAddr::Tcp(addr.parse().map_err(|_| {
                invalid(
                    "scan.clamd",
                    format!("{addr:?} is neither host:port (\"127.0.0.1:3310\") nor a socket path"),
                )
            })?)
        };
        let on_virus = match self.on_virus.as_str() {
            "reject" => portcullis_scan::OnVirus::Reject,
            "quarantine" => portcullis_scan::OnVirus::Quarantine,
            other => {
                return Err(invalid(
                    "scan.on_virus",
                    format!("{other:?} is not one of \"reject\", \"quarantine\""),
                ));
            }
        };
        let on_failure = match self.on_failure.as_str() {
            "defer" => portcullis_scan::OnFailure::Defer,
            "continue" => portcullis_scan::OnFailure::Continue,
            "reject" => portcullis_scan::OnFailure::Reject,
            other => {
                return Err(invalid(
                    "scan.on_failure",
                    format!("{other:?} is not one of \"defer\", \"continue\", \"reject\""),
                ));
            }
        };
        Ok(Some(ScanSettings {
            clamd,
            policy: portcullis_scan::ScanPolicy::default()
                .with_on_virus(on_virus)
                .with_on_failure(on_failure),
            config: portcullis_scan::ScanConfig::default().with_timeouts(
                Duration::from_secs(self.connect_timeout_secs.max(1)),
                Duration::from_secs(self.scan_timeout_secs.max(1)),
            ),
        }))
    }
}

/// The content-scanner filter (message stage).
pub(crate) fn scan_filter(s: &ScanSettings) -> Result<Arc<dyn Filter>, String> {
    let connector: Arc<dyn portcullis_scan::ScannerConnector> = match &s.clamd {
        ClamdAddr::Tcp(a) => Arc::new(portcullis_scan::net::TcpConnector::new(*a)),
        #[cfg(unix)]
        ClamdAddr::Unix(p) => Arc::new(portcullis_scan::net::UnixConnector::new(p.clone())),
        #[cfg(not(unix))]
        ClamdAddr::Unix(p) => {
            return Err(format!("scan.clamd {}: no Unix sockets here", p.display()));
        }
    };
    Ok(Arc::new(TimedScan(portcullis_scan::ScanFilter::new(
        connector,
        s.config.clone(),
        s.policy,
    ))))
}

/// `[mailauth]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MailauthSection {
    pub(crate) verify: bool,
    pub(crate) nameservers: Vec<String>,
    pub(crate) timeout_secs: u64,
    pub(crate) enforce_dmarc_reject: bool,
    pub(crate) dmarc_quarantine: bool,
    pub(crate) on_temp_error: String,
}

impl Default for MailauthSection {
    fn default() -> Self {
        MailauthSection {
            verify: false,
            nameservers: Vec::new(),
            timeout_secs: 5,
            enforce_dmarc_reject: false,
            dmarc_quarantine: true,
            on_temp_error: "continue".into(),
        }
    }
}

/// Verification settings the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct MailauthSettings {
    /// Empty: the system resolver.
    pub(crate) name_servers: Vec<SocketAddr>,
    pub(crate) timeout: Duration,
    pub(crate) enforce_dmarc_reject: bool,
    pub(crate) dmarc_quarantine: bool,
    pub(crate) temp_error: portcullis_mailauth::TempErrorAction,
}

impl MailauthSection {
    /// The checked settings, or `None` while `verify` is off.
    pub(crate) fn check(&self) -> Result<Option<MailauthSettings>, ConfigError> {
        if !self.verify {
            return Ok(None);
        }
        let temp_error = match self.on_temp_error.as_str() {
            "continue" => portcullis_mailauth::TempErrorAction::Continue,
            "defer" => portcullis_mailauth::TempErrorAction::Defer,
            other => {
                return Err(invalid(
                    "mailauth.on_temp_error",
                    format!("{other:?} is not one of \"continue\", \"defer\""),
                ));
            }
        };
        Ok(Some(MailauthSettings {
            name_servers: name_servers("mailauth.nameservers", &self.nameservers)?,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            enforce_dmarc_reject: self.enforce_dmarc_reject,
            dmarc_quarantine: self.dmarc_quarantine,
            temp_error,
        }))
    }
}

/// The SPF/DKIM/DMARC verifier (message stage), naming `authserv_id`.
pub(crate) fn mailauth_filter(
    s: &MailauthSettings,
    authserv_id: &str,
) -> Result<Arc<dyn Filter>, String> {
    let authenticator = if s.name_servers.is_empty() {
        portcullis_mailauth::mail_auth::MessageAuthenticator::new_system_conf()
            .map_err(|e| format!("mailauth: system resolver: {e}"))?
    } else {
        let mut options = portcullis_mailauth::DnsOptions::default();
        options.timeout = s.timeout;
        portcullis_mailauth::authenticator_with_name_servers(&s.name_servers, options)
            .map_err(|e| format!("mailauth: {e}"))?
    };
    let config = portcullis_mailauth::VerifyConfig::new(authserv_id)
        .with_enforce_reject(s.enforce_dmarc_reject)
        .with_quarantine(s.dmarc_quarantine)
        .with_temp_error(s.temp_error);
    Ok(Arc::new(portcullis_mailauth::AuthVerifier::new(
        Arc::new(authenticator),
        config,
    )))
}

/// The message without the `Authentication-Results` fields of its header
/// section that claim to come from `authserv_id` (RFC 8601 §5: a border
/// MTA removes forged results bearing its own identifier). Other fields,
/// the body and the line endings are kept byte for byte.
pub(crate) fn strip_own_auth_results(message: &[u8], authserv_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            // End of the header section: the body is copied as is.
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = is_auth_results_for(line, authserv_id);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

/// Whether a header line starts an `Authentication-Results` field whose
/// authserv-id (the first token of the value, RFC 8601 §2.2) is `id`.
fn is_auth_results_for(line: &[u8], id: &str) -> bool {
    const NAME: &[u8] = b"authentication-results";
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    if !line[..colon].trim_ascii_end().eq_ignore_ascii_case(NAME) {
        return false;
    }
    let value = String::from_utf8_lossy(&line[colon + 1..]);
    // Comments may precede the id; drop them crudely (no nesting needed
    // for the first token).
    let mut v = value.trim_start();
    while let Some(after) = v.strip_prefix('(') {
        v = after.split_once(')').map_or("", |(_, r)| r).trim_start();
    }
    let token: String = v
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '(')
        .collect();
    token.eq_ignore_ascii_case(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_codes_and_actions_parse() {
        let s: DnsblSection = toml::from_str(
            "nameservers = [\"127.0.0.1:5353\"]\n\
             [[zone]]\nzone = \"zen.example\"\n\
             codes = { \"127.0.0.2\" = \"reject\", \"127.0.0.10-127.0.0.11\" = \"tag:3\" }\n\
             [[zone]]\nzone = \"wl.example\"\notherwise = \"allow\"\n",
        )
        .unwrap();
        let d = s.check().unwrap().unwrap();
        assert_eq!(d.name_servers, vec!["127.0.0.1:5353".parse().unwrap()]);
        let z = &d.config.zones[0];
        use portcullis_dnsbl::ListingAction as A;
        assert_eq!(z.action_for(Ipv4Addr::new(127, 0, 0, 2)), A::Reject);
        assert_eq!(
            z.action_for(Ipv4Addr::new(127, 0, 0, 11)),
            A::Tag { score: 3 }
        );
        assert!(d.config.zones[1].is_allowlist());
        let bad: DnsblSection = toml::from_str(
            "[[zone]]\nzone = \"z.example\"\ncodes = { \"127.0.0.2\" = \"bounce\" }\n",
        )
        .unwrap();
        match bad.check() {
            Err(ConfigError::Invalid { key, .. }) => {
                assert!(key.starts_with("dnsbl.zone[0].codes"))
            }
            other => panic!("{other:?}"),
        }
        let overlap: DnsblSection = toml::from_str(
            "[[zone]]\nzone = \"z.example\"\n\
             codes = { \"127.0.0.2-127.0.0.9\" = \"reject\", \"127.0.0.5\" = \"tag\" }\n",
        )
        .unwrap();
        let msg = overlap.check().unwrap_err().to_string();
        assert!(msg.contains("overlaps"), "{msg}");
    }

    #[test]
    fn scan_addresses() {
        let tcp = ScanSection {
            clamd: Some("127.0.0.1:3310".into()),
            ..ScanSection::default()
        };
        assert_eq!(
            tcp.check().unwrap().unwrap().clamd,
            ClamdAddr::Tcp("127.0.0.1:3310".parse().unwrap())
        );
        let unix = ScanSection {
            clamd: Some("/run/clamav/clamd.ctl".into()),
            on_virus: "quarantine".into(),
            ..ScanSection::default()
        };
        let u = unix.check().unwrap().unwrap();
        assert_eq!(u.clamd, ClamdAddr::Unix("/run/clamav/clamd.ctl".into()));
        assert_eq!(u.policy.on_virus, portcullis_scan::OnVirus::Quarantine);
        let bad = ScanSection {
            clamd: Some("clamd".into()),
            ..ScanSection::default()
        };
        assert!(bad.check().is_err());
        assert!(ScanSection::default().check().unwrap().is_none());
    }

    #[test]
    fn forged_results_with_our_id_are_stripped_and_others_kept() {
        let msg = b"Received: from x\r\n\
            Authentication-Results: mx.test; spf=pass\r\n\tsmtp.mailfrom=a@b\r\n\
            authentication-results : (forged) MX.TEST; dkim=pass\r\n\
            Authentication-Results: other.example; dmarc=fail\r\n\
            Subject: hi\r\n\r\n\
            Authentication-Results: mx.test; in the body stays\r\n";
        let out = strip_own_auth_results(msg, "mx.test");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Received: from x\r\n\
             Authentication-Results: other.example; dmarc=fail\r\n\
             Subject: hi\r\n\r\n\
             Authentication-Results: mx.test; in the body stays\r\n"
        );
        // A similar id is not ours.
        let near = b"Authentication-Results: mx.test.evil; spf=pass\r\n\r\nx";
        assert_eq!(strip_own_auth_results(near, "mx.test"), near.to_vec());
    }
}
