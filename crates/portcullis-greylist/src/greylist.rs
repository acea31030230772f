//! The greylisting decision: [`Greylist::check`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_core::{Reply, Verdict};

use crate::config::{FailureMode, GreylistConfig};
use crate::store::{GreylistStore, Record, Space, StoreError};
use crate::triplet::{
    ClientFacts, IpNetwork, Triplet, client_network, normalise_recipient, normalise_sender,
    triplet_key,
};

/// Which rule decided, for logs and the `X-Greylist` header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// The client authenticated.
    Authenticated,
    /// The client is in a relay network.
    RelayNetwork,
    /// The client address is whitelisted.
    WhitelistedClient,
    /// The client's reverse-DNS name matches a whitelist pattern.
    WhitelistedReverseDns,
    /// The sender is whitelisted.
    WhitelistedSender,
    /// The recipient is whitelisted.
    WhitelistedRecipient,
    /// The null sender, let through by configuration.
    NullSender,
    /// An admin released the client network.
    ReleasedClient,
    /// The client network passed greylisting often enough.
    AutoWhitelistedClient {
        /// Passes counted for it.
        passes: u32,
    },
    /// The triplet was seen before and its retry came after the delay: the
    /// first pass.
    Delayed {
        /// How long the sender was held up.
        delayed_secs: u64,
    },
    /// The triplet passed before (or was released by an admin).
    KnownTriplet,
    /// A triplet never seen (or forgotten): deferred.
    NewTriplet,
    /// A retry before the delay ran out: deferred.
    TooEarly,
    /// A retry after the retry window: starts over, deferred.
    RetryWindowExpired,
    /// The store failed; the configured failure mode decided.
    StoreUnavailable {
        /// What the store said.
        error: String,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Authenticated => f.write_str("authenticated client"),
            Rule::RelayNetwork => f.write_str("relay network"),
            Rule::WhitelistedClient => f.write_str("client whitelisted"),
            Rule::WhitelistedReverseDns => f.write_str("client name whitelisted"),
            Rule::WhitelistedSender => f.write_str("sender whitelisted"),
            Rule::WhitelistedRecipient => f.write_str("recipient whitelisted"),
            Rule::NullSender => f.write_str("null sender"),
            Rule::ReleasedClient => f.write_str("client released"),
            Rule::AutoWhitelistedClient { passes } => {
                write!(f, "client auto-whitelisted after {passes} passes")
            }
            Rule::Delayed { delayed_secs } => write!(f, "delayed {delayed_secs} seconds"),
            Rule::KnownTriplet => f.write_str("triplet known"),
            Rule::NewTriplet => f.write_str("new triplet"),
            Rule::TooEarly => f.write_str("retry too early"),
            Rule::RetryWindowExpired => f.write_str("retry window expired"),
            Rule::StoreUnavailable { error } => write!(f, "store unavailable: {error}"),
        }
    }
}

/// The outcome of a greylist check.
#[must_use = "a decision says whether to defer the recipient"]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Let the recipient through.
    Pass {
        /// Why.
        rule: Rule,
    },
    /// Defer the recipient.
    Defer {
        /// Why.
        rule: Rule,
        /// Seconds until a retry can pass (0 when the store failed closed).
        retry_in_secs: u64,
    },
}

/// Name of the header field [`Decision::header`] fills.
pub const HEADER_NAME: &str = "X-Greylist";

impl Decision {
    /// The rule that decided.
    pub fn rule(&self) -> &Rule {
        match self {
            Decision::Pass { rule } | Decision::Defer { rule, .. } => rule,
        }
    }

    /// Whether the recipient may go on.
    pub fn is_pass(&self) -> bool {
        matches!(self, Decision::Pass { .. })
    }

    /// The verdict: `Continue`, `Defer(451 4.7.1 Greylisted, please try again
    /// in N seconds)`, or `Defer(451 4.3.0)` when a failed store fails closed.
    pub fn verdict(&self) -> Verdict {
        match self {
            Decision::Pass { .. } => Verdict::Continue,
            Decision::Defer {
                rule: Rule::StoreUnavailable { .. },
                ..
            } => Verdict::Defer(Reply::temporary_failure()),
            Decision::Defer { retry_in_secs, .. } => {
                Verdict::Defer(Reply::greylisted(*retry_in_secs))
            }
        }
    }

    /// The `X-Greylist` header value for a pass worth noting (a delay, a
    /// whitelist, a known triplet); `None` for deferrals, for authenticated
    /// or relay-network clients (whose mail is not inbound), and for a failed
    /// store (its error text is for the operator's log, not for recipients).
    pub fn header(&self) -> Option<String> {
        match self {
            Decision::Pass {
                rule: Rule::Authenticated | Rule::RelayNetwork | Rule::StoreUnavailable { .. },
            }
            | Decision::Defer { .. } => None,
            Decision::Pass { rule } => Some(format!("{rule} by portcullis-greylist")),
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Greylisting over a [`GreylistStore`]: the plain synchronous API.
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, UNIX_EPOCH};
/// use portcullis_greylist::{Greylist, GreylistConfig, MemoryStore, Rule, Triplet};
///
/// let greylist = Greylist::new(Arc::new(MemoryStore::new()), GreylistConfig::default());
/// let t = Triplet::new(
///     "192.0.2.10".parse().unwrap(),
///     "<alice@example.org>".parse().unwrap(),
///     "<bob@example.net>".parse().unwrap(),
/// );
/// let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
/// assert_eq!(greylist.check(&t, start).rule(), &Rule::NewTriplet);
/// assert!(greylist.check(&t, start + Duration::from_secs(300)).is_pass());
/// ```
#[derive(Debug, Clone)]
pub struct Greylist {
    store: Arc<dyn GreylistStore>,
    config: GreylistConfig,
}

impl Greylist {
    /// Greylisting with `config` over `store`.
    pub fn new(store: Arc<dyn GreylistStore>, config: GreylistConfig) -> Self {
        Greylist { store, config }
    }

    /// The configuration.
    pub fn config(&self) -> &GreylistConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn GreylistStore> {
        &self.store
    }

    /// Check a triplet from a client about which nothing else is known.
    pub fn check(&self, triplet: &Triplet, now: SystemTime) -> Decision {
        self.check_with(&ClientFacts::default(), triplet, now)
    }

    /// Check a triplet, with what the session knows about the client.
    pub fn check_with(&self, facts: &ClientFacts, triplet: &Triplet, now: SystemTime) -> Decision {
        if let Some(rule) = self.exemption(facts, triplet) {
            return Decision::Pass { rule };
        }
        match self.check_store(triplet, unix(now)) {
            Ok(decision) => decision,
            Err(e) => {
                let rule = Rule::StoreUnavailable {
                    error: e.to_string(),
                };
                match self.config.on_store_error {
                    FailureMode::Open => {
                        tracing::warn!(error = %e, "greylist store failed; passing without greylisting");
                        Decision::Pass { rule }
                    }
                    FailureMode::Closed => {
                        tracing::warn!(error = %e, "greylist store failed; deferring");
                        Decision::Defer {
                            rule,
                            retry_in_secs: 0,
                        }
                    }
                }
            }
        }
    }

    /// The rules that need no store.
    fn exemption(&self, facts: &ClientFacts, t: &Triplet) -> Option<Rule> {
        let wl = &self.config.whitelist;
        if facts.authenticated {
            Some(Rule::Authenticated)
        } else if facts.trusted_network
            || self
                .config
                .relay_networks
                .iter()
                .any(|n| n.contains(t.client))
        {
            Some(Rule::RelayNetwork)
        } else if wl.client(t.client) {
            Some(Rule::WhitelistedClient)
        } else if facts
            .reverse_dns
            .as_deref()
            .is_some_and(|name| wl.reverse_dns(name))
        {
            Some(Rule::WhitelistedReverseDns)
        } else if wl.null_sender && t.sender.is_null() {
            Some(Rule::NullSender)
        } else if wl.sender(&t.sender) {
            Some(Rule::WhitelistedSender)
        } else if wl.recipient(&t.recipient) {
            Some(Rule::WhitelistedRecipient)
        } else {
            None
        }
    }

    fn network(&self, ip: IpAddr) -> IpNetwork {
        client_network(
            ip,
            self.config.client_v4_prefix,
            self.config.client_v6_prefix,
        )
    }

    /// The store key of a triplet (for admin tools and logs).
    pub fn key(&self, triplet: &Triplet) -> String {
        triplet_key(
            &self.network(triplet.client),
            &normalise_sender(&triplet.sender),
            &normalise_recipient(&triplet.recipient),
        )
    }

    fn check_store(&self, t: &Triplet, now: u64) -> Result<Decision, StoreError> {
        let cfg = &self.config;
        let network = self.network(t.client);
        let client_key = network.to_string();
        let client = self.store.get(Space::Client, &client_key, now)?;
        if let Some(c) = client {
            if c.flag {
                return Ok(Decision::Pass {
                    rule: Rule::ReleasedClient,
                });
            }
            if cfg.auto_whitelist_after.is_some_and(|n| c.count >= n) {
                // Keep an active whitelisted client from expiring (postgrey
                // refreshes it hourly too): its triplets are no longer checked.
                if now.saturating_sub(c.last_seen) >= cfg.touch_interval.as_secs() {
                    let refreshed = Record {
                        last_seen: now,
                        ..c
                    };
                    self.store.put(
                        Space::Client,
                        &client_key,
                        refreshed,
                        now,
                        now.saturating_add(cfg.max_age.as_secs()),
                    )?;
                }
                return Ok(Decision::Pass {
                    rule: Rule::AutoWhitelistedClient { passes: c.count },
                });
            }
        }

        let key = self.key(t);
        let delay = cfg.delay.as_secs();
        let window = cfg.retry_window.as_secs();
        let max_age = cfg.max_age.as_secs();
        let pending_expiry = |first: u64| first.saturating_add(window).saturating_add(1);
        let new_entry = Record {
            first_seen: now,
            last_seen: now,
            count: 0,
            flag: false,
        };

        let Some(mut entry) = self.store.get(Space::Triplet, &key, now)? else {
            self.store
                .put(Space::Triplet, &key, new_entry, now, pending_expiry(now))?;
            return Ok(Decision::Defer {
                rule: Rule::NewTriplet,
                retry_in_secs: delay,
            });
        };

        if entry.count > 0 {
            // Passed before: refresh last_seen now and then, not on every check.
            if now.saturating_sub(entry.last_seen) >= cfg.touch_interval.as_secs() {
                entry.last_seen = now;
                self.store.put(
                    Space::Triplet,
                    &key,
                    entry,
                    now,
                    now.saturating_add(max_age),
                )?;
            }
            self.count_client_pass(&client_key, client, now)?;
            return Ok(Decision::Pass {
                rule: Rule::KnownTriplet,
            });
        }

        let elapsed = now.saturating_sub(entry.first_seen);
        if elapsed > window {
            // postgrey: a retry after the window is a new first attempt.
            self.store
                .put(Space::Triplet, &key, new_entry, now, pending_expiry(now))?;
            return Ok(Decision::Defer {
                rule: Rule::RetryWindowExpired,
                retry_in_secs: delay,
            });
        }
        if elapsed < delay {
            return Ok(Decision::Defer {
                rule: Rule::TooEarly,
                retry_in_secs: delay - elapsed,
            });
        }
        entry.last_seen = now;
        entry.count = 1;
        self.store.put(
            Space::Triplet,
            &key,
            entry,
            now,
            now.saturating_add(max_age),
        )?;
        self.count_client_pass(&client_key, client, now)?;
        Ok(Decision::Pass {
            rule: Rule::Delayed {
                delayed_secs: elapsed,
            },
        })
    }

    /// Count a pass toward the client's auto-whitelist, at most one per
    /// `auto_whitelist_interval` (postgrey counts one per hour).
    fn count_client_pass(
        &self,
        client_key: &str,
        client: Option<Record>,
        now: u64,
    ) -> Result<(), StoreError> {
        if self.config.auto_whitelist_after.is_none() {
            return Ok(());
        }
        let interval = self.config.auto_whitelist_interval.as_secs();
        let mut record = client.unwrap_or(Record {
            first_seen: now,
            last_seen: 0,
            count: 0,
            flag: false,
        });
        if record.count > 0 && now.saturating_sub(record.last_seen) < interval {
            return Ok(());
        }
        record.count = record.count.saturating_add(1);
        record.last_seen = now;
        self.store.put(
            Space::Client,
            client_key,
            record,
            now,
            now.saturating_add(self.config.max_age.as_secs()),
        )
    }

    /// Admin: let this triplet through from now on ("release now").
    pub fn release_triplet(&self, triplet: &Triplet, now: SystemTime) -> Result<(), StoreError> {
        let now = unix(now);
        let record = Record {
            first_seen: now,
            last_seen: now,
            count: 1,
            flag: true,
        };
        self.store.put(
            Space::Triplet,
            &self.key(triplet),
            record,
            now,
            now.saturating_add(self.config.max_age.as_secs()),
        )
    }

    /// Admin: let every triplet from this client's network through for
    /// `client_release_duration`.
    pub fn release_client(&self, client: IpAddr, now: SystemTime) -> Result<(), StoreError> {
        let now = unix(now);
        let record = Record {
            first_seen: now,
            last_seen: now,
            count: 0,
            flag: true,
        };
        self.store.put(
            Space::Client,
            &self.network(client).to_string(),
            record,
            now,
            now.saturating_add(self.config.client_release_duration.as_secs()),
        )
    }

    /// Admin: forget a triplet (it is new again).
    pub fn forget_triplet(&self, triplet: &Triplet) -> Result<bool, StoreError> {
        self.store.remove(Space::Triplet, &self.key(triplet))
    }

    /// Admin: forget a client network's release and auto-whitelist count.
    pub fn forget_client(&self, client: IpAddr) -> Result<bool, StoreError> {
        self.store
            .remove(Space::Client, &self.network(client).to_string())
    }

    /// Reclaim up to `budget` expired entries (call periodically, e.g. every
    /// minute with a budget of a few thousand; stores with native expiry do
    /// nothing).
    pub fn sweep(&self, now: SystemTime, budget: usize) -> Result<usize, StoreError> {
        self.store.sweep(unix(now), budget)
    }
}
