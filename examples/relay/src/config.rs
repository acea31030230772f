//! The relay's configuration: a TOML file (every key optional, unknown keys
//! refused) checked into [`Settings`], the parsed values the relay runs on.
//!
//! `examples/relay/relay.toml` documents every key; keep the two in step.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_core::{Address, Domain, mask_ip};
use serde::Deserialize;

/// Why a configuration was refused: the key that is wrong and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type. The toml
    /// crate's message quotes the line and points at the key.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A value of the right type that does not make sense.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The file as written. Every section and key is optional; defaults are the
/// safe ones `cargo run -p portcullis-relay` starts with.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileConfig {
    pub(crate) server: ServerSection,
    pub(crate) mx: ListenerSection,
    pub(crate) submission: ListenerSection,
    pub(crate) submissions: ListenerSection,
    pub(crate) tls: TlsSection,
    pub(crate) local: LocalSection,
    pub(crate) relay: RelaySection,
    pub(crate) accounts: AccountsSection,
    pub(crate) delivery: DeliverySection,
    pub(crate) backup_mx: BackupMxSection,
    pub(crate) forward: BTreeMap<String, String>,
    pub(crate) limits: LimitsSection,
    pub(crate) metrics: crate::metrics::MetricsSection,
    pub(crate) admin: crate::admin::AdminSection,
    pub(crate) policy: PolicySection,
    pub(crate) greylist: GreylistSection,
    pub(crate) batv: BatvSection,
    pub(crate) bulk: BulkSection,
    pub(crate) outbound_bulk: crate::outbound::OutboundBulkSection,
    pub(crate) dkim: Vec<DkimSection>,
    pub(crate) srs: SrsSection,
    pub(crate) dnsbl: crate::filters::DnsblSection,
    pub(crate) scan: crate::filters::ScanSection,
    pub(crate) mailauth: crate::filters::MailauthSection,
    pub(crate) redis: crate::stores::RedisSection,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SrsSection {
    pub(crate) domain: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) secret_file: Option<PathBuf>,
}

/// SRS settings the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct SrsSettings {
    pub(crate) domain: Domain,
    pub(crate) secret: Vec<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DkimSection {
    pub(crate) domain: String,
    pub(crate) selector: String,
    pub(crate) key_file: PathBuf,
}

/// One DKIM signing key, read and checked.
#[derive(Debug, Clone)]
pub(crate) struct DkimKey {
    pub(crate) domain: String,
    pub(crate) selector: String,
    pub(crate) pem: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BulkSection {
    pub(crate) enabled: bool,
    pub(crate) threshold: u64,
    pub(crate) window_secs: u64,
    pub(crate) action: String,
    /// `memory` or `redis` (`[redis]`: counts shared by every relay).
    pub(crate) store: String,
}

impl Default for BulkSection {
    fn default() -> Self {
        BulkSection {
            enabled: false,
            threshold: 50,
            window_secs: 86_400,
            action: "tag".into(),
            store: "memory".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BatvSection {
    pub(crate) domains: Vec<String>,
    pub(crate) key_number: u8,
    pub(crate) secret: Option<String>,
    pub(crate) secret_file: Option<PathBuf>,
}

/// BATV settings the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct Batv {
    pub(crate) domains: Vec<Domain>,
    pub(crate) key_number: u8,
    pub(crate) secret: Vec<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GreylistSection {
    pub(crate) enabled: bool,
    pub(crate) delay_secs: u64,
    pub(crate) retry_window_secs: u64,
    pub(crate) max_age_secs: u64,
    pub(crate) auto_whitelist_after: u32,
    pub(crate) add_header: bool,
    /// `redb` (a file in the data directory), `memory` or `redis`.
    pub(crate) store: String,
}

impl Default for GreylistSection {
    fn default() -> Self {
        // postgrey's defaults.
        GreylistSection {
            enabled: false,
            delay_secs: 300,
            retry_window_secs: 2 * 86_400,
            max_age_secs: 35 * 86_400,
            auto_whitelist_after: 5,
            add_header: true,
            store: "redb".into(),
        }
    }
}

impl GreylistSection {
    /// The `portcullis-greylist` configuration, or `None` when disabled.
    pub(crate) fn to_greylist(&self) -> Option<portcullis_greylist::GreylistConfig> {
        if !self.enabled {
            return None;
        }
        Some(portcullis_greylist::GreylistConfig {
            delay: Duration::from_secs(self.delay_secs),
            retry_window: Duration::from_secs(self.retry_window_secs.max(self.delay_secs)),
            max_age: Duration::from_secs(self.max_age_secs.max(1)),
            auto_whitelist_after: (self.auto_whitelist_after > 0)
                .then_some(self.auto_whitelist_after),
            add_header: self.add_header,
            ..portcullis_greylist::GreylistConfig::default()
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PolicySection {
    pub(crate) messages_per_minute: Option<u64>,
    pub(crate) messages_per_hour: Option<u64>,
    pub(crate) recipients_per_minute: Option<u64>,
    pub(crate) recipients_per_hour: Option<u64>,
    pub(crate) distinct_recipients_per_day: Option<u64>,
    pub(crate) client_messages_per_hour: Option<u64>,
    pub(crate) auth_failures_max: u64,
    pub(crate) auth_failures_window_secs: u64,
    pub(crate) auth_failures_block_secs: u64,
    pub(crate) invalid_recipients_max: u64,
    pub(crate) invalid_recipients_window_secs: u64,
    pub(crate) invalid_recipients_block_secs: u64,
    pub(crate) abuse_violations: u64,
    pub(crate) abuse_window_secs: u64,
    pub(crate) abuse_lock_secs: u64,
    pub(crate) abuse_max_auto_unlocks: u32,
    /// `memory` or `redis` (`[redis]`: counters, blocks and locks shared
    /// by every relay).
    pub(crate) store: String,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            messages_per_minute: None,
            messages_per_hour: None,
            recipients_per_minute: None,
            recipients_per_hour: None,
            distinct_recipients_per_day: None,
            client_messages_per_hour: None,
            auth_failures_max: 5,
            auth_failures_window_secs: 600,
            auth_failures_block_secs: 900,
            invalid_recipients_max: 20,
            invalid_recipients_window_secs: 600,
            invalid_recipients_block_secs: 900,
            abuse_violations: 0,
            abuse_window_secs: 3600,
            abuse_lock_secs: 3600,
            abuse_max_auto_unlocks: 3,
            store: "memory".into(),
        }
    }
}

impl PolicySection {
    /// The `portcullis-policy` configuration these keys describe.
    // `PolicyConfig` is #[non_exhaustive]: no struct literal from outside.
    #[allow(clippy::field_reassign_with_default)]
    pub(crate) fn to_policy(&self) -> portcullis_policy::PolicyConfig {
        use portcullis_policy::{AccountLimits, FailureCap, PolicyConfig, RateLimits};
        let cap = |max: u64, window: u64, block: u64| {
            (max > 0).then(|| FailureCap {
                max,
                window: Duration::from_secs(window.max(1)),
                block_for: Duration::from_secs(block),
            })
        };
        let mut c = PolicyConfig::default();
        c.account_defaults = AccountLimits {
            rates: RateLimits {
                messages_per_minute: self.messages_per_minute,
                messages_per_hour: self.messages_per_hour,
                recipients_per_minute: self.recipients_per_minute,
                recipients_per_hour: self.recipients_per_hour,
                ..RateLimits::default()
            },
            distinct_recipients_per_day: self.distinct_recipients_per_day,
            ..AccountLimits::default()
        };
        c.client_limits = RateLimits {
            messages_per_hour: self.client_messages_per_hour,
            ..RateLimits::default()
        };
        c.auth_failures = cap(
            self.auth_failures_max,
            self.auth_failures_window_secs,
            self.auth_failures_block_secs,
        );
        c.invalid_recipients = cap(
            self.invalid_recipients_max,
            self.invalid_recipients_window_secs,
            self.invalid_recipients_block_secs,
        );
        // Always set, so that locks from abuse signals (`[outbound_bulk]`,
        // `Policy::signal_abuse`) follow the configured lock time and
        // auto-unlocks; `abuse_violations = 0` turns off only the locking
        // for violations (a count that is never exceeded).
        c.abuse = Some(portcullis_policy::AbuseLock {
            violations: if self.abuse_violations == 0 {
                u64::MAX
            } else {
                self.abuse_violations
            },
            violation_window: Duration::from_secs(self.abuse_window_secs.max(1)),
            lock_time: Duration::from_secs(self.abuse_lock_secs),
            max_auto_unlocks: self.abuse_max_auto_unlocks,
        });
        c
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSection {
    pub(crate) hostname: String,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) log: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            hostname: "localhost".into(),
            data_dir: None,
            log: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ListenerSection {
    pub(crate) listen: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TlsSection {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    /// Offer `REQUIRETLS` (RFC 8689) after STARTTLS: the delivery honours
    /// it (verified TLS and REQUIRETLS at the next hop, or a 5.7.30 bounce).
    pub(crate) requiretls: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: None,
            key: None,
            requiretls: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LocalSection {
    pub(crate) domains: Vec<String>,
    pub(crate) mailboxes: Vec<String>,
    pub(crate) catch_all: bool,
}

impl Default for LocalSection {
    fn default() -> Self {
        LocalSection {
            domains: vec!["localhost".into()],
            mailboxes: Vec::new(),
            catch_all: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RelaySection {
    pub(crate) networks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AccountsSection {
    pub(crate) file: Option<PathBuf>,
    pub(crate) postgres: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeliverySection {
    pub(crate) smarthost: Option<String>,
    pub(crate) mx_port: u16,
    pub(crate) routes: BTreeMap<String, String>,
    pub(crate) max_queue_secs: u64,
    pub(crate) first_retry_secs: u64,
    pub(crate) concurrency: usize,
    pub(crate) command_timeout_secs: u64,
    pub(crate) tls: String,
    /// PEM bundle of the CAs that next hops' certificates are checked
    /// against where they are checked (`tls = "required"`), instead of the
    /// platform's trust store.
    pub(crate) tls_ca_file: Option<PathBuf>,
}

impl Default for DeliverySection {
    fn default() -> Self {
        DeliverySection {
            smarthost: None,
            mx_port: 25,
            routes: BTreeMap::new(),
            max_queue_secs: 5 * 24 * 3600,
            first_retry_secs: 300,
            concurrency: 16,
            command_timeout_secs: 300,
            tls: "opportunistic".into(),
            tls_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BackupMxSection {
    pub(crate) domains: Vec<String>,
    pub(crate) hold_secs: u64,
    pub(crate) learn_recipients: bool,
    pub(crate) defer_unknown_recipients: bool,
    /// How recipients are verified at RCPT: `learn` (from delivery
    /// outcomes, with `learn_recipients`) or `callout` (ask the primary).
    pub(crate) verify: String,
    pub(crate) callout_timeout_secs: u64,
    pub(crate) callout_command_timeout_secs: u64,
    pub(crate) callout_positive_ttl_secs: u64,
    pub(crate) callout_negative_ttl_secs: u64,
    pub(crate) callout_unknown_ttl_secs: u64,
    pub(crate) callout_down_ttl_secs: u64,
    pub(crate) callout_max_per_host: usize,
    pub(crate) callout_tls: String,
    /// Where learned recipients live: `redb` (`<data_dir>/recipients.redb`),
    /// `memory` or `redis` (`[redis]`: shared by every relay and policyd).
    pub(crate) store: String,
}

impl Default for BackupMxSection {
    fn default() -> Self {
        BackupMxSection {
            domains: Vec::new(),
            hold_secs: 8 * 24 * 3600,
            learn_recipients: false,
            defer_unknown_recipients: false,
            verify: "learn".into(),
            // portcullis-queue's CalloutConfig defaults.
            callout_timeout_secs: 30,
            callout_command_timeout_secs: 10,
            callout_positive_ttl_secs: 3600,
            callout_negative_ttl_secs: 600,
            callout_unknown_ttl_secs: 60,
            callout_down_ttl_secs: 60,
            callout_max_per_host: 4,
            callout_tls: "opportunistic".into(),
            store: "redb".into(),
        }
    }
}

/// `[backup_mx] verify = "callout"`: how the relay asks a backed-up
/// domain's primary whether a recipient exists (`portcullis-queue`'s
/// `SmtpCallout`, configured with the relay's host name in
/// [`BackupCallout::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupCallout {
    pub(crate) timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) positive_ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) unknown_ttl: Duration,
    /// How long a primary address that failed is skipped.
    pub(crate) down_ttl: Duration,
    pub(crate) max_per_host: usize,
    pub(crate) tls: portcullis_queue::TlsPolicy,
    /// `defer_unknown_recipients`: no conclusive answer → 450 4.1.1
    /// instead of accepting.
    pub(crate) defer_unknown: bool,
}

impl BackupCallout {
    /// The callout configuration; `helo_name` is the relay's host name.
    pub(crate) fn config(&self, helo_name: &str) -> portcullis_queue::CalloutConfig {
        portcullis_queue::CalloutConfig::new(helo_name)
            .with_tls(self.tls)
            .with_timeouts(self.command_timeout, self.timeout)
            .with_cache_ttls(self.positive_ttl, self.negative_ttl, self.unknown_ttl)
            .with_max_per_host(self.max_per_host)
            .with_down_ttl(self.down_ttl)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsSection {
    pub(crate) max_message_size: u64,
    pub(crate) max_recipients: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    pub(crate) idle_timeout_secs: u64,
    pub(crate) shutdown_grace_secs: u64,
    /// Load gate: close at this many open sessions (0: no session limit).
    pub(crate) load_gate_sessions: u64,
    /// Load gate: close at this many queued messages (0: no queue limit).
    pub(crate) load_gate_queue: u64,
    /// Load gate: reopen once below this percentage of both limits.
    pub(crate) load_gate_reopen_percent: u8,
    /// DATA text lines over 1000 octets: "reject", "accept" or "fold".
    pub(crate) long_lines: String,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_client: 50,
            idle_timeout_secs: 300,
            shutdown_grace_secs: 30,
            load_gate_sessions: 0,
            load_gate_queue: 0,
            load_gate_reopen_percent: 90,
            long_lines: "reject".into(),
        }
    }
}

/// An IP network (`192.0.2.0/24`, `2001:db8::/32`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    pub(crate) fn parse(s: &str) -> Option<Network> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        Some(Network {
            base: Self::mask(ip, prefix),
            prefix,
        })
    }

    fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
        match ip {
            IpAddr::V4(_) => mask_ip(ip, prefix, 128),
            // mask_ip treats IPv4-mapped IPv6 as IPv4; keep real IPv6 as is.
            IpAddr::V6(v6) => {
                let p = u32::from(prefix);
                let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                IpAddr::V6((u128::from(v6) & m).into())
            }
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // A client on an IPv4-mapped IPv6 address is the IPv4 client.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.base.is_ipv4() && Self::mask(ip, self.prefix) == self.base
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Where the relay hands mail for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl HostPort {
    fn parse(s: &str, default_port: u16) -> Option<HostPort> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Some(HostPort {
                host: sa.ip().to_string(),
                port: sa.port(),
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p.parse().ok()?),
            _ => (s, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What a forwarding rule matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ForwardKey {
    /// One address (`alias@example.org`), by [`crate::rules::mailbox_key`].
    Address(String),
    /// Every address of a domain (`@example.org`).
    Domain(Domain),
}

/// Where a forwarding rule sends mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ForwardTarget {
    /// Replace the recipient by this address.
    Address(Address),
    /// Keep the local part, change the domain (`@new.example`).
    Domain(Domain),
}

/// The checked configuration the relay runs on.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Where the configuration came from, for the startup line.
    pub(crate) source: String,
    pub(crate) hostname: String,
    pub(crate) log: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) mx_listen: Vec<SocketAddr>,
    pub(crate) submission_listen: Vec<SocketAddr>,
    pub(crate) submissions_listen: Vec<SocketAddr>,
    pub(crate) tls_cert: Option<(PathBuf, PathBuf)>,
    /// `[tls] requiretls`: offer REQUIRETLS (RFC 8689) after STARTTLS.
    pub(crate) requiretls: bool,
    pub(crate) local_domains: Vec<Domain>,
    /// Configured local mailboxes, by [`Address::key`].
    pub(crate) local_mailboxes: Vec<Address>,
    pub(crate) catch_all: bool,
    pub(crate) relay_networks: Vec<Network>,
    pub(crate) accounts_file: Option<PathBuf>,
    pub(crate) accounts_postgres: Option<String>,
    pub(crate) smarthost: Option<HostPort>,
    pub(crate) mx_port: u16,
    pub(crate) routes: Vec<(Domain, HostPort)>,
    pub(crate) max_queue_time: Duration,
    pub(crate) first_retry: Duration,
    pub(crate) delivery_concurrency: usize,
    pub(crate) command_timeout: Duration,
    pub(crate) delivery_tls: portcullis_queue::TlsPolicy,
    /// `[delivery] tls_ca_file`: the CAs verified next hops chain to.
    pub(crate) delivery_tls_ca: Option<PathBuf>,
    pub(crate) backup_domains: Vec<Domain>,
    pub(crate) backup_hold: Duration,
    /// `[backup_mx] learn_recipients`: recipient learning from the
    /// primary's answers (portcullis-greylist), if on.
    pub(crate) recipient_learning: Option<portcullis_greylist::LearningConfig>,
    /// `[backup_mx] verify = "callout"`: ask the primary at RCPT, if on.
    pub(crate) backup_callout: Option<BackupCallout>,
    pub(crate) forwards: Vec<(ForwardKey, ForwardTarget)>,
    pub(crate) max_message_size: u64,
    pub(crate) max_recipients: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    pub(crate) idle_timeout: Duration,
    /// `[limits] long_lines`: DATA text lines over RFC 5321's 1000 octets.
    pub(crate) long_lines: portcullis_smtp::LongLines,
    /// `[limits] load_gate_*`: the connect-time load gate, if on.
    pub(crate) load_gate: Option<portcullis_policy::LoadThresholds>,
    /// `[metrics] listen`: where `GET /metrics` is served, if anywhere.
    pub(crate) metrics: Option<SocketAddr>,
    /// `[admin]`: the admin HTTP interface, if on.
    pub(crate) admin: Option<crate::admin::AdminSettings>,
    pub(crate) policy: portcullis_policy::PolicyConfig,
    pub(crate) greylist: Option<portcullis_greylist::GreylistConfig>,
    pub(crate) batv: Option<Batv>,
    pub(crate) bulk: Option<portcullis_fingerprint::BulkConfig>,
    /// `[outbound_bulk]`: the outbound abuse signal that locks accounts.
    pub(crate) outbound_bulk: Option<crate::outbound::OutboundBulk>,
    pub(crate) dkim: Vec<DkimKey>,
    pub(crate) srs: Option<SrsSettings>,
    /// `[dnsbl]`: zones asked at connect on the MX listener.
    pub(crate) dnsbl: Option<crate::filters::DnsblSettings>,
    /// `[scan]`: clamd at the end of DATA on the MX listener.
    pub(crate) scan: Option<crate::filters::ScanSettings>,
    /// `[mailauth]`: SPF/DKIM/DMARC verification on the MX listener.
    pub(crate) mailauth: Option<crate::filters::MailauthSettings>,
    pub(crate) shutdown_grace: Duration,
    /// `[redis]`, when a store uses it.
    pub(crate) redis: Option<crate::stores::RedisSettings>,
    pub(crate) policy_store: crate::stores::StoreKind,
    pub(crate) greylist_store: crate::stores::StoreKind,
    pub(crate) bulk_store: crate::stores::StoreKind,
    /// `[outbound_bulk] store`.
    pub(crate) outbound_store: crate::stores::StoreKind,
    /// `[backup_mx] store`: learned recipients.
    pub(crate) recipients_store: crate::stores::StoreKind,
}

impl Settings {
    /// The sections whose store is `redis`.
    pub(crate) fn redis_users(&self) -> Vec<&'static str> {
        use crate::stores::StoreKind::Redis;
        [
            ("[policy]", self.policy_store),
            ("[greylist]", self.greylist_store),
            ("[bulk]", self.bulk_store),
            ("[outbound_bulk]", self.outbound_store),
            ("[backup_mx]", self.recipients_store),
        ]
        .into_iter()
        .filter(|(_, k)| *k == Redis)
        .map(|(n, _)| n)
        .collect()
    }
}

/// Overrides from the command line, applied after the file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) mx_listen: Option<Vec<String>>,
    pub(crate) submission_listen: Option<Vec<String>>,
}

/// Read and check a file (or the built-in defaults when `path` is `None`).
pub(crate) fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let (file, source) = match path {
        None => (FileConfig::default(), "(built-in defaults)".to_owned()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?;
            let file = parse(&text).map_err(|source| ConfigError::Parse {
                path: p.to_owned(),
                source: Box::new(source),
            })?;
            (file, p.display().to_string())
        }
    };
    check(file, source, overrides)
}

/// Parse TOML text (no checks beyond types and known keys).
pub(crate) fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

fn listeners(
    key: &str,
    file: Option<Vec<String>>,
    cli: Option<&Vec<String>>,
    default: &[&str],
) -> Result<Vec<SocketAddr>, ConfigError> {
    let list: Vec<String> = cli
        .cloned()
        .or(file)
        .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    format!("{key}[{i}]"),
                    format!("{s:?} is not an IP address and port such as \"127.0.0.1:2525\""),
                )
            })
        })
        .collect()
}

fn domain(key: String, s: &str) -> Result<Domain, ConfigError> {
    // A trailing dot names the same domain (RFC 1034 absolute form).
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    Domain::parse(trimmed).map_err(|e| invalid(key, format!("{s:?} is not a domain: {e}")))
}

/// A STARTTLS policy key: `opportunistic`, `required` or `never`.
fn tls_policy(key: &str, value: &str) -> Result<portcullis_queue::TlsPolicy, ConfigError> {
    match value {
        "opportunistic" => Ok(portcullis_queue::TlsPolicy::Opportunistic),
        "required" => Ok(portcullis_queue::TlsPolicy::Required),
        "never" => Ok(portcullis_queue::TlsPolicy::Never),
        other => Err(invalid(
            key,
            format!("{other:?} is not one of \"opportunistic\", \"required\", \"never\""),
        )),
    }
}

/// The callout settings of `[backup_mx]`, when `verify = "callout"`. The
/// `callout_*` keys are checked either way, so a mistake shows before
/// the callout is turned on.
fn backup_callout(b: &BackupMxSection) -> Result<Option<BackupCallout>, ConfigError> {
    let tls = tls_policy("backup_mx.callout_tls", &b.callout_tls)?;
    for (key, value) in [
        ("backup_mx.callout_timeout_secs", b.callout_timeout_secs),
        (
            "backup_mx.callout_command_timeout_secs",
            b.callout_command_timeout_secs,
        ),
        (
            "backup_mx.callout_max_per_host",
            b.callout_max_per_host as u64,
        ),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    let callout = BackupCallout {
        timeout: Duration::from_secs(b.callout_timeout_secs),
        command_timeout: Duration::from_secs(b.callout_command_timeout_secs),
        positive_ttl: Duration::from_secs(b.callout_positive_ttl_secs),
        negative_ttl: Duration::from_secs(b.callout_negative_ttl_secs),
        unknown_ttl: Duration::from_secs(b.callout_unknown_ttl_secs),
        down_ttl: Duration::from_secs(b.callout_down_ttl_secs),
        max_per_host: b.callout_max_per_host,
        tls,
        defer_unknown: b.defer_unknown_recipients,
    };
    match b.verify.as_str() {
        "learn" => Ok(None),
        "callout" => Ok(Some(callout)),
        other => Err(invalid(
            "backup_mx.verify",
            format!("{other:?} is not one of \"learn\", \"callout\""),
        )),
    }
}

/// Check a parsed file and apply overrides.
pub(crate) fn check(
    file: FileConfig,
    source: String,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let hostname = file.server.hostname.clone();
    domain("server.hostname".into(), &hostname)?;
    if tracing_subscriber::EnvFilter::try_new(&file.server.log).is_err() {
        return Err(invalid(
            "server.log",
            format!(
                "{:?} is not a log filter such as \"info\" or \"portcullis_relay=debug\"",
                file.server.log
            ),
        ));
    }
    let data_dir = overrides
        .data_dir
        .clone()
        .or(file.server.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("portcullis-data"));

    let mx_listen = listeners(
        "mx.listen",
        file.mx.listen,
        overrides.mx_listen.as_ref(),
        &["127.0.0.1:2525"],
    )?;
    let submission_listen = listeners(
        "submission.listen",
        file.submission.listen,
        overrides.submission_listen.as_ref(),
        &["127.0.0.1:2587"],
    )?;
    let submissions_listen = listeners("submissions.listen", file.submissions.listen, None, &[])?;

    let requiretls = file.tls.requiretls;
    let tls_cert = match (file.tls.cert, file.tls.key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "tls.key",
                "tls.cert is set but tls.key is not; give both or neither",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "tls.cert",
                "tls.key is set but tls.cert is not; give both or neither",
            ));
        }
    };

    let local_domains = file
        .local
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| domain(format!("local.domains[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    let local_mailboxes = file
        .local
        .mailboxes
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let key = format!("local.mailboxes[{i}]");
            let addr = Address::parse(a)
                .map_err(|e| invalid(&key, format!("{a:?} is not an address: {e}")))?;
            if !local_domains.contains(addr.domain()) {
                return Err(invalid(
                    key,
                    format!(
                        "{a:?} is not in a local domain; add {} to local.domains",
                        addr.domain()
                    ),
                ));
            }
            if !crate::maildir::is_safe_mailbox_name(addr.local_part().as_str()) {
                return Err(invalid(
                    key,
                    format!("{a:?}: a mailbox local part may use letters, digits and . _ + - only"),
                ));
            }
            Ok(addr)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let relay_networks = file
        .relay
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Network::parse(n).ok_or_else(|| {
                invalid(
                    format!("relay.networks[{i}]"),
                    format!("{n:?} is not a network such as \"192.0.2.0/24\" or \"2001:db8::1\""),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    if file.accounts.file.is_some() && file.accounts.postgres.is_some() {
        return Err(invalid(
            "accounts",
            "set accounts.file or accounts.postgres, not both",
        ));
    }
    if let Some(url) = &file.accounts.postgres
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(invalid(
            "accounts.postgres",
            "expected a URL such as \"postgres://user@127.0.0.1/portcullis\"",
        ));
    }

    let smarthost = file
        .delivery
        .smarthost
        .as_deref()
        .map(|s| {
            HostPort::parse(s, 25).ok_or_else(|| {
                invalid(
                    "delivery.smarthost",
                    format!("{s:?} is not a host or host:port"),
                )
            })
        })
        .transpose()?;
    let routes = file
        .delivery
        .routes
        .iter()
        .map(|(d, target)| {
            let key = format!("delivery.routes.{d:?}");
            let dom = domain(key.clone(), d)?;
            let hp = HostPort::parse(target, 25)
                .ok_or_else(|| invalid(key, format!("{target:?} is not a host or host:port")))?;
            Ok((dom, hp))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let delivery_tls = tls_policy("delivery.tls", &file.delivery.tls)?;
    if file.delivery.concurrency == 0 {
        return Err(invalid("delivery.concurrency", "must be at least 1"));
    }

    let backup_domains = file
        .backup_mx
        .domains
        .iter()
        .enumerate()
        .map(|(i, d)| domain(format!("backup_mx.domains[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, d) in backup_domains.iter().enumerate() {
        if local_domains.contains(d) {
            return Err(invalid(
                format!("backup_mx.domains[{i}]"),
                format!("{d} is also a local domain; a domain is either local or backed up"),
            ));
        }
    }

    let backup_callout = backup_callout(&file.backup_mx)?;

    let forwards = file
        .forward
        .iter()
        .map(|(from, to)| {
            let key = format!("forward.{from:?}");
            let fk = match from.strip_prefix('@') {
                Some(d) => ForwardKey::Domain(domain(key.clone(), d)?),
                None => ForwardKey::Address(
                    Address::parse(from)
                        .map(|a| crate::rules::mailbox_key(&a))
                        .map_err(|e| invalid(&key, format!("{from:?} is not an address: {e}")))?,
                ),
            };
            let target = match to.strip_prefix('@') {
                Some(d) => ForwardTarget::Domain(domain(key.clone(), d)?),
                None => ForwardTarget::Address(
                    Address::parse(to)
                        .map_err(|e| invalid(&key, format!("{to:?} is not an address: {e}")))?,
                ),
            };
            Ok((fk, target))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;

    let batv = if file.batv.domains.is_empty() {
        None
    } else {
        let domains = file
            .batv
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| domain(format!("batv.domains[{i}]"), d))
            .collect::<Result<Vec<_>, _>>()?;
        let secret = match (&file.batv.secret, &file.batv.secret_file) {
            (Some(s), None) => s.clone().into_bytes(),
            (None, Some(p)) => std::fs::read(p)
                .map_err(|e| invalid("batv.secret_file", format!("{}: {e}", p.display())))?
                .trim_ascii()
                .to_vec(),
            _ => {
                return Err(invalid(
                    "batv.secret",
                    "give batv.secret or batv.secret_file (one of them) with batv.domains",
                ));
            }
        };
        if secret.len() < 16 {
            return Err(invalid("batv.secret", "use at least 16 random characters"));
        }
        if file.batv.key_number > 9 {
            return Err(invalid("batv.key_number", "must be 0 to 9"));
        }
        Some(Batv {
            domains,
            key_number: file.batv.key_number,
            secret,
        })
    };

    let bulk = if file.bulk.enabled {
        let action = match file.bulk.action.as_str() {
            "tag" => portcullis_fingerprint::BulkAction::Tag,
            "quarantine" => portcullis_fingerprint::BulkAction::Quarantine,
            "reject" => portcullis_fingerprint::BulkAction::Reject,
            other => {
                return Err(invalid(
                    "bulk.action",
                    format!("{other:?} is not one of \"tag\", \"quarantine\", \"reject\""),
                ));
            }
        };
        if file.bulk.threshold < 2 {
            return Err(invalid("bulk.threshold", "must be at least 2"));
        }
        let mut c = portcullis_fingerprint::BulkConfig::default();
        c.bulk_threshold = file.bulk.threshold;
        c.window = Duration::from_secs(file.bulk.window_secs.max(60));
        c.bulk_action = action;
        Some(c)
    } else {
        None
    };

    let dkim = file
        .dkim
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let key = |k: &str| format!("dkim[{i}].{k}");
            domain(key("domain"), &d.domain)?;
            if d.selector.is_empty()
                || !d.selector.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            {
                return Err(invalid(
                    key("selector"),
                    format!("{:?} is not a selector such as \"s1\"", d.selector),
                ));
            }
            let pem = std::fs::read_to_string(&d.key_file)
                .map_err(|e| invalid(key("key_file"), format!("{}: {e}", d.key_file.display())))?;
            portcullis_mailauth::DkimSigningKey::from_pem(&pem)
                .map_err(|e| invalid(key("key_file"), format!("{}: {e}", d.key_file.display())))?;
            Ok(DkimKey {
                domain: d.domain.to_ascii_lowercase(),
                selector: d.selector.clone(),
                pem,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;

    let srs = match &file.srs.domain {
        None => None,
        Some(d) => {
            let dom = domain("srs.domain".into(), d)?;
            if !local_domains.contains(&dom) {
                return Err(invalid(
                    "srs.domain",
                    format!(
                        "{dom} must be one of local.domains (bounces to SRS addresses arrive there)"
                    ),
                ));
            }
            let secret = match (&file.srs.secret, &file.srs.secret_file) {
                (Some(s), None) => s.clone().into_bytes(),
                (None, Some(p)) => std::fs::read(p)
                    .map_err(|e| invalid("srs.secret_file", format!("{}: {e}", p.display())))?
                    .trim_ascii()
                    .to_vec(),
                _ => {
                    return Err(invalid(
                        "srs.secret",
                        "give srs.secret or srs.secret_file (one of them) with srs.domain",
                    ));
                }
            };
            if secret.len() < 16 {
                return Err(invalid("srs.secret", "use at least 16 random characters"));
            }
            Some(SrsSettings {
                domain: dom,
                secret,
            })
        }
    };

    let l = &file.limits;
    if l.max_recipients == 0 {
        return Err(invalid("limits.max_recipients", "must be at least 1"));
    }
    if l.max_connections == 0 {
        return Err(invalid("limits.max_connections", "must be at least 1"));
    }
    let long_lines = match l.long_lines.as_str() {
        "reject" => portcullis_smtp::LongLines::Reject,
        "accept" => portcullis_smtp::LongLines::Accept,
        "fold" => portcullis_smtp::LongLines::Fold,
        _ => {
            return Err(invalid(
                "limits.long_lines",
                "must be \"reject\", \"accept\" or \"fold\"",
            ));
        }
    };
    if l.max_connections_per_client == 0 {
        return Err(invalid(
            "limits.max_connections_per_client",
            "must be at least 1",
        ));
    }
    if l.max_message_size < 1024 {
        return Err(invalid(
            "limits.max_message_size",
            "must be at least 1024 octets",
        ));
    }
    if l.idle_timeout_secs == 0 {
        return Err(invalid("limits.idle_timeout_secs", "must be at least 1"));
    }
    if l.load_gate_reopen_percent == 0 || l.load_gate_reopen_percent > 100 {
        return Err(invalid(
            "limits.load_gate_reopen_percent",
            "must be 1 to 100",
        ));
    }
    // 0 turns a limit off: a maximum that is never reached.
    let load_gate = (l.load_gate_sessions > 0 || l.load_gate_queue > 0).then(|| {
        let limit = |n: u64| if n == 0 { u64::MAX } else { n };
        portcullis_policy::LoadThresholds {
            max_sessions: limit(l.load_gate_sessions),
            max_queue: limit(l.load_gate_queue),
            reopen_percent: l.load_gate_reopen_percent,
        }
    });

    let redis = file.redis.check()?;
    let (policy_store, greylist_store, bulk_store, outbound_store, recipients_store) = {
        use crate::stores::{StoreKind::*, store_kind};
        let r = redis.as_ref();
        (
            store_kind("policy.store", &file.policy.store, &[Memory, Redis], r)?,
            store_kind(
                "greylist.store",
                &file.greylist.store,
                &[Redb, Memory, Redis],
                r,
            )?,
            store_kind("bulk.store", &file.bulk.store, &[Memory, Redis], r)?,
            store_kind(
                "outbound_bulk.store",
                &file.outbound_bulk.store,
                &[Memory, Redis],
                r,
            )?,
            store_kind(
                "backup_mx.store",
                &file.backup_mx.store,
                &[Redb, Memory, Redis],
                r,
            )?,
        )
    };

    Ok(Settings {
        source,
        hostname,
        log: file.server.log,
        data_dir,
        mx_listen,
        submission_listen,
        submissions_listen,
        tls_cert,
        requiretls,
        local_domains,
        local_mailboxes,
        catch_all: file.local.catch_all,
        relay_networks,
        accounts_file: file.accounts.file,
        accounts_postgres: file.accounts.postgres,
        smarthost,
        mx_port: file.delivery.mx_port,
        routes,
        max_queue_time: Duration::from_secs(file.delivery.max_queue_secs),
        first_retry: Duration::from_secs(file.delivery.first_retry_secs.max(1)),
        delivery_concurrency: file.delivery.concurrency,
        command_timeout: Duration::from_secs(file.delivery.command_timeout_secs.max(1)),
        delivery_tls,
        delivery_tls_ca: file.delivery.tls_ca_file,
        backup_domains,
        backup_hold: Duration::from_secs(file.backup_mx.hold_secs),
        recipient_learning: file.backup_mx.learn_recipients.then(|| {
            portcullis_greylist::LearningConfig {
                defer_unknown: file.backup_mx.defer_unknown_recipients,
                ..portcullis_greylist::LearningConfig::default()
            }
        }),
        backup_callout,
        forwards,
        max_message_size: l.max_message_size,
        max_recipients: l.max_recipients,
        max_connections: l.max_connections,
        max_connections_per_client: l.max_connections_per_client,
        idle_timeout: Duration::from_secs(l.idle_timeout_secs),
        long_lines,
        load_gate,
        metrics: file.metrics.check().map_err(|(k, m)| invalid(k, m))?,
        admin: file.admin.check().map_err(|(k, m)| invalid(k, m))?,
        policy: file.policy.to_policy(),
        greylist: file.greylist.to_greylist(),
        batv,
        bulk,
        outbound_bulk: file.outbound_bulk.check(),
        dkim,
        srs,
        dnsbl: file.dnsbl.check()?,
        scan: file.scan.check()?,
        mailauth: file.mailauth.check()?,
        shutdown_grace: Duration::from_secs(l.shutdown_grace_secs),
        redis,
        policy_store,
        greylist_store,
        bulk_store,
        outbound_store,
        recipients_store,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<Settings, ConfigError> {
        let file = parse(text).map_err(|e| ConfigError::Parse {
            path: "t.toml".into(),
            source: Box::new(e),
        })?;
        check(file, "t.toml".into(), &Overrides::default())
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let s = check_text("").unwrap();
        assert_eq!(s.mx_listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert_eq!(s.submission_listen, vec!["127.0.0.1:2587".parse().unwrap()]);
        assert!(s.submissions_listen.is_empty());
        assert!(
            s.relay_networks.is_empty(),
            "no network relays without AUTH"
        );
        assert_eq!(s.local_domains, vec![Domain::parse("localhost").unwrap()]);
        assert_eq!(s.data_dir, PathBuf::from("portcullis-data"));
        assert_eq!(s.backup_hold, Duration::from_secs(8 * 24 * 3600));
    }

    #[test]
    fn the_shipped_example_file_is_valid_and_complete() {
        let text = include_str!("../relay.toml");
        let s = check_text(text).unwrap();
        assert_eq!(s.hostname, "mx.example.org");
        // Every key the example shows commented out must also parse when
        // uncommented: strip the leading "# " of `key = value` lines.
        let uncommented: String = text
            .lines()
            .map(|l| {
                // `# [[table]]` headers of commented-out tables, too.
                if let Some(rest) = l.strip_prefix("# ")
                    && rest.starts_with("[[")
                    && rest.ends_with("]]")
                {
                    return rest;
                }
                match l
                    .strip_prefix("# ")
                    .and_then(|r| Some((r, r.split_once(" = ")?.0)))
                {
                    Some((rest, key))
                        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            || (key.starts_with('"') && key.ends_with('"')) =>
                    {
                        rest
                    }
                    _ => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = parse(&uncommented).unwrap();
        assert!(file.tls.cert.is_some(), "the example shows tls.cert");
        assert!(file.delivery.smarthost.is_some());
        assert_eq!(file.dkim.len(), 1, "the example shows a [[dkim]] key");
        assert!(file.batv.secret.is_some());
        assert!(file.srs.domain.is_some());
        assert_eq!(file.dnsbl.zone.len(), 1, "the example shows a DNSBL zone");
        assert!(file.scan.clamd.is_some());
        assert!(!file.mailauth.nameservers.is_empty());
        assert!(file.redis.url.is_some(), "the example shows [redis] url");
        assert_eq!(file.policy.store, "redis");
        // Every [backup_mx] key is shown (and explained above it).
        for key in [
            "domains",
            "hold_secs",
            "learn_recipients",
            "verify",
            "defer_unknown_recipients",
            "callout_timeout_secs",
            "callout_command_timeout_secs",
            "callout_positive_ttl_secs",
            "callout_negative_ttl_secs",
            "callout_unknown_ttl_secs",
            "callout_down_ttl_secs",
            "callout_max_per_host",
            "callout_tls",
            "store",
        ] {
            assert!(
                uncommented.contains(&format!("\n{key} = ")),
                "relay.toml does not show backup_mx.{key}"
            );
        }
    }

    #[test]
    fn load_gate_is_off_by_default_and_zero_turns_a_limit_off() {
        assert_eq!(check_text("").unwrap().load_gate, None);
        let g = check_text("[limits]\nload_gate_sessions = 2\n")
            .unwrap()
            .load_gate
            .unwrap();
        assert_eq!((g.max_sessions, g.max_queue), (2, u64::MAX));
        assert_eq!(g.reopen_percent, 90);
        let g = check_text("[limits]\nload_gate_queue = 7\nload_gate_reopen_percent = 50\n")
            .unwrap()
            .load_gate
            .unwrap();
        assert_eq!(
            (g.max_sessions, g.max_queue, g.reopen_percent),
            (u64::MAX, 7, 50)
        );
        let e = check_text("[limits]\nload_gate_sessions = 2\nload_gate_reopen_percent = 0\n")
            .unwrap_err();
        assert!(e.to_string().contains("load_gate_reopen_percent"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = check_text("[mx]\nlisten = []\nlisen = 1\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lisen"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let msg = check_text("[limits]\nmax_recipients = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("max_recipients"), "{msg}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[mx]\nlisten = [\"nowhere\"]\n", "mx.listen[0]"),
            (
                "[relay]\nnetworks = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n",
                "relay.networks[1]",
            ),
            ("[local]\ndomains = [\"bad domain\"]\n", "local.domains[0]"),
            (
                "[local]\nmailboxes = [\"a@elsewhere.example\"]\n",
                "local.mailboxes[0]",
            ),
            ("[tls]\ncert = \"c.pem\"\n", "tls.key"),
            ("[limits]\nlong_lines = \"wrap\"\n", "limits.long_lines"),
            (
                "[delivery.routes]\n\"example.com\" = \"\"\n",
                "delivery.routes",
            ),
            (
                "[forward]\n\"alias@localhost\" = \"not an address\"\n",
                "forward",
            ),
            (
                "[backup_mx]\ndomains = [\"localhost\"]\n",
                "backup_mx.domains[0]",
            ),
            (
                "[accounts]\npostgres = \"mysql://x\"\n",
                "accounts.postgres",
            ),
            ("[delivery]\ntls = \"sometimes\"\n", "delivery.tls"),
            ("[batv]\ndomains = [\"localhost\"]\n", "batv.secret"),
            (
                "[batv]\ndomains = [\"localhost\"]\nsecret = \"short\"\n",
                "batv.secret",
            ),
            (
                "[bulk]\nenabled = true\naction = \"bounce\"\n",
                "bulk.action",
            ),
            (
                "[[dkim]]\ndomain = \"localhost\"\nselector = \"s1\"\nkey_file = \"/nonexistent/k.pem\"\n",
                "dkim[0].key_file",
            ),
            (
                "[[dkim]]\ndomain = \"localhost\"\nselector = \"bad selector\"\nkey_file = \"k.pem\"\n",
                "dkim[0].selector",
            ),
            (
                "[limits]\nmax_connections_per_client = 0\n",
                "limits.max_connections_per_client",
            ),
            ("[srs]\ndomain = \"elsewhere.example\"\n", "srs.domain"),
            ("[srs]\ndomain = \"localhost\"\n", "srs.secret"),
            ("[backup_mx]\nverify = \"ask\"\n", "backup_mx.verify"),
            (
                "[backup_mx]\ncallout_tls = \"sometimes\"\n",
                "backup_mx.callout_tls",
            ),
            (
                "[backup_mx]\nverify = \"callout\"\ncallout_timeout_secs = 0\n",
                "backup_mx.callout_timeout_secs",
            ),
            (
                "[backup_mx]\ncallout_max_per_host = 0\n",
                "backup_mx.callout_max_per_host",
            ),
            // `redis` needs [redis]; each store key names itself.
            (
                "[outbound_bulk]\nstore = \"redis\"\n",
                "outbound_bulk.store",
            ),
            ("[outbound_bulk]\nstore = \"redb\"\n", "outbound_bulk.store"),
            ("[backup_mx]\nstore = \"redis\"\n", "backup_mx.store"),
            ("[backup_mx]\nstore = \"file\"\n", "backup_mx.store"),
        ];
        for (text, key) in cases {
            match check_text(text) {
                Err(ConfigError::Invalid { key: k, .. }) => {
                    assert!(k.starts_with(key), "{k} vs {key}")
                }
                other => panic!("{text}: expected Invalid({key}), got {other:?}"),
            }
        }
    }

    #[test]
    fn outbound_and_learned_recipient_stores_default_to_this_relay() {
        use crate::stores::StoreKind;
        let s = check_text("").unwrap();
        assert_eq!(
            (s.outbound_store, s.recipients_store),
            (StoreKind::Memory, StoreKind::Redb)
        );
        assert!(s.redis_users().is_empty());
        let s = check_text(
            "[redis]\nurl = \"redis://127.0.0.1:6379\"\n\
             [outbound_bulk]\nstore = \"redis\"\n[backup_mx]\nstore = \"redis\"\n",
        )
        .unwrap();
        assert_eq!(
            (s.outbound_store, s.recipients_store),
            (StoreKind::Redis, StoreKind::Redis)
        );
        assert_eq!(s.redis_users(), ["[outbound_bulk]", "[backup_mx]"]);
        let s = check_text("[backup_mx]\nstore = \"memory\"\n").unwrap();
        assert_eq!(s.recipients_store, StoreKind::Memory);
    }

    #[test]
    fn requiretls_is_offered_unless_turned_off() {
        assert!(check_text("").unwrap().requiretls);
        assert!(
            !check_text("[tls]\nrequiretls = false\n")
                .unwrap()
                .requiretls
        );
        assert!(check_text("[tls]\nrequiretls = \"yes\"\n").is_err());
    }

    #[test]
    fn backup_mx_verifies_by_learning_unless_callout_is_asked_for() {
        assert_eq!(check_text("").unwrap().backup_callout, None);
        let s = check_text(
            "[server]\nhostname = \"backup.example.net\"\n\
             [backup_mx]\ndomains = [\"customer.example\"]\nverify = \"callout\"\n\
             callout_timeout_secs = 20\ncallout_command_timeout_secs = 5\n\
             callout_positive_ttl_secs = 7200\ncallout_negative_ttl_secs = 300\n\
             callout_unknown_ttl_secs = 0\ncallout_down_ttl_secs = 5\n\
             callout_max_per_host = 2\n\
             callout_tls = \"never\"\ndefer_unknown_recipients = true\n",
        )
        .unwrap();
        let c = s.backup_callout.unwrap();
        assert!(c.defer_unknown);
        assert!(s.recipient_learning.is_none(), "learning stays off");
        let config = c.config(&s.hostname);
        assert_eq!(config.helo_name, "backup.example.net");
        assert_eq!(config.tls, portcullis_queue::TlsPolicy::Never);
        assert_eq!(
            (config.timeout, config.command_timeout),
            (Duration::from_secs(20), Duration::from_secs(5))
        );
        assert_eq!(
            (config.positive_ttl, config.negative_ttl, config.unknown_ttl),
            (
                Duration::from_secs(7200),
                Duration::from_secs(300),
                Duration::ZERO
            )
        );
        assert_eq!(config.max_per_host, 2);
        assert_eq!(config.down_ttl, Duration::from_secs(5));
        // The defaults are the callout crate's.
        let d = check_text("[backup_mx]\nverify = \"callout\"\n")
            .unwrap()
            .backup_callout
            .unwrap();
        assert_eq!(
            d.config("localhost"),
            portcullis_queue::CalloutConfig::new("localhost")
        );
        assert!(!d.defer_unknown);
        // A misspelt key is named by the parser.
        let msg = check_text("[backup_mx]\ncallout_timeout = 3\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("callout_timeout"), "{msg}");
    }

    #[test]
    fn networks_match_their_members_only() {
        let n = Network::parse("192.0.2.0/24").unwrap();
        assert!(n.contains("192.0.2.200".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.1".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Network::parse("::/129").is_none());
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            HostPort::parse("smtp.example.net", 25),
            Some(HostPort {
                host: "smtp.example.net".into(),
                port: 25
            })
        );
        assert_eq!(HostPort::parse("127.0.0.1:2526", 25).unwrap().port, 2526);
        assert_eq!(HostPort::parse("[::1]:26", 25).unwrap().host, "::1");
        assert!(HostPort::parse("a:b", 25).is_none());
    }

    #[test]
    fn overrides_win() {
        let file = parse("[mx]\nlisten = [\"127.0.0.1:1\"]\n").unwrap();
        let o = Overrides {
            data_dir: Some("/tmp/x".into()),
            mx_listen: Some(vec!["127.0.0.1:0".into()]),
            submission_listen: None,
        };
        let s = check(file, "x".into(), &o).unwrap();
        assert_eq!(s.mx_listen, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    }
}
