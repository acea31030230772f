//! Configuration reload on SIGHUP, without dropping sessions.
//!
//! What is built from the configuration file and read by sessions — the
//! filter chains, `[limits]`, the relay rules (local domains, backup MX,
//! forwards, relay networks), the TLS certificate — is a
//! [`Snapshot`]. A reload builds a new one and
//! swaps it in; sessions already open keep the one they started with.
//! Routes and the smarthost go to the deliverer. The stores behind the
//! filters ([`Stores`]: counters, greylist triplets, checksum counts,
//! learned recipients) are opened once and shared by every snapshot, so
//! nothing is reset. The backup-MX callout (`verify = "callout"`) is part
//! of the snapshot: rebuilt over the new routes, its cache carried over
//! when its settings did not change. The policy is one [`LivePolicy`] for all snapshots: a
//! new `Policy` over the same counter store (the in-process list of recent
//! violations starts afresh), in force for open sessions too from their
//! next command.
//!
//! Listener addresses, the data directory, `[metrics]`, `[admin]`,
//! `[accounts]`, `[redis]` and the store kinds are bound at start: a
//! reload that changes them logs a warning naming the key and keeps
//! running with the old value.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use portcullis_core::Chain;

use crate::config::Settings;
use crate::rules::{RelayFilter, RelayRules, Role};
use crate::server::{Shared, Snapshot};
use crate::stores::Stores;

use portcullis_core::{Clock, Context, Filter, MailParams, Recipient, ReversePath, Verdict};
use portcullis_policy::{CounterStore, Policy, PolicyConfig, PolicyFilter};

/// The current policy filter, replaceable.
pub(crate) struct LivePolicy {
    current: RwLock<Arc<PolicyFilter>>,
    store: Arc<dyn CounterStore>,
    clock: Arc<dyn Clock>,
}

impl LivePolicy {
    pub(crate) fn new(
        config: PolicyConfig,
        store: Arc<dyn CounterStore>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let policy = Arc::new(Policy::new(config, store.clone()));
        Arc::new(LivePolicy {
            current: RwLock::new(Arc::new(PolicyFilter::new(policy, clock.clone()))),
            store,
            clock,
        })
    }

    fn filter(&self) -> Arc<PolicyFilter> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The policy in force now.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.filter().policy().clone()
    }

    /// Put `config` in force for every decision from now on.
    pub(crate) fn replace(&self, config: PolicyConfig) {
        let policy = Arc::new(Policy::new(config, self.store.clone()));
        let filter = Arc::new(PolicyFilter::new(policy, self.clock.clone()));
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = filter;
    }
}

/// Times `f` for the `policy_check_seconds` metric.
async fn timed(stage: &str, f: impl std::future::Future<Output = Verdict>) -> Verdict {
    let started = tokio::time::Instant::now();
    let v = f.await;
    crate::metrics::policy_check(stage, started.elapsed());
    v
}

#[portcullis_core::async_trait]
impl Filter for LivePolicy {
    fn name(&self) -> &'static str {
        self.filter().name()
    }
    async fn connect(&self, cx: &mut Context) -> Verdict {
        timed("connect", self.filter().connect(cx)).await
    }
    async fn helo(&self, cx: &mut Context) -> Verdict {
        timed("helo", self.filter().helo(cx)).await
    }
    async fn auth(&self, cx: &mut Context) -> Verdict {
        timed("auth", self.filter().auth(cx)).await
    }
    async fn mail_from(
        &self,
        cx: &mut Context,
        from: &mut ReversePath,
        params: &MailParams,
    ) -> Verdict {
        timed("mail", self.filter().mail_from(cx, from, params)).await
    }
    async fn rcpt_to(&self, cx: &mut Context, rcpt: &mut Recipient) -> Verdict {
        timed("rcpt", self.filter().rcpt_to(cx, rcpt)).await
    }
    async fn data_start(&self, cx: &mut Context) -> Verdict {
        timed("data", self.filter().data_start(cx)).await
    }
    async fn message(&self, cx: &mut Context, message: &[u8]) -> Verdict {
        timed("message", self.filter().message(cx, message)).await
    }
}

/// What survives a reload: built once at start.
pub(crate) struct Base {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) data_dir: PathBuf,
    pub(crate) users: Arc<dyn crate::rules::LocalUsers>,
    pub(crate) stores: Arc<Stores>,
    pub(crate) policy: Arc<LivePolicy>,
    /// Backup-MX recipient learning store (`[backup_mx] store`:
    /// `recipients.redb`, memory or Redis), if on at start.
    pub(crate) learning: Option<Arc<dyn portcullis_greylist::GreylistStore>>,
    pub(crate) mx_router: Option<Arc<dyn portcullis_queue::Router>>,
    pub(crate) transport: Arc<dyn portcullis_queue::Transport>,
    /// With `[delivery] tls = "required"`: an opportunistic transport for
    /// messages marked `TLS-Required: No` (RFC 8689 §4.2.2).
    pub(crate) tls_optional_transport: Option<Arc<dyn portcullis_queue::Transport>>,
}

/// A snapshot and the routing table built from one configuration.
pub(crate) struct Built {
    pub(crate) snapshot: Snapshot,
    pub(crate) router: Arc<crate::routing::Router>,
    pub(crate) cert: crate::tls::CertSource,
}

/// Build everything a configuration describes over `base`'s stores.
/// `previous` lends its session limiter and load gate when their limits
/// did not change (their counts of open sessions carry on).
pub(crate) fn build(
    settings: Arc<Settings>,
    base: &Base,
    previous: Option<&Snapshot>,
) -> Result<Built, String> {
    let clock = &base.clock;
    let (tls_config, cert) = crate::tls::load(
        settings.tls_cert.as_ref(),
        &base.data_dir,
        &settings.hostname,
    )
    .map_err(|e| format!("TLS: {e}"))?;
    let tls = tokio_rustls::TlsAcceptor::from(tls_config);

    let mut rules = RelayRules::new(&settings, base.users.clone());
    if let Some(srs) = &settings.srs {
        rules = rules.with_srs(crate::rules::SrsRewriter {
            srs: portcullis_batv::Srs::new(&srs.secret).map_err(|e| format!("srs: {e}"))?,
            domain: srs.domain.clone(),
            clock: clock.clone(),
        });
    }
    if let (Some(config), Some(store)) = (settings.recipient_learning.clone(), &base.learning) {
        rules = rules.with_learning(crate::rules::RecipientLearner {
            learning: Arc::new(portcullis_greylist::RecipientLearning::new(
                store.clone(),
                config,
            )),
            clock: clock.clone(),
            // With a callout, the callout filter judges.
            judge: settings.backup_callout.is_none(),
        });
    }
    let rules = Arc::new(rules);
    let router = Arc::new(
        crate::routing::Router::new(
            settings.routes.clone(),
            settings.smarthost.clone(),
            base.mx_router.clone(),
            base.transport.clone(),
            settings.hostname.clone(),
        )
        .with_tls_optional(base.tls_optional_transport.clone()),
    );
    // The callout keeps its cache (and callouts under way) across a reload
    // that leaves its settings alone; the router it asks is the new one.
    let callout = match &settings.backup_callout {
        None => None,
        Some(c) => {
            let config = c.config(&settings.hostname);
            match previous
                .and_then(|p| p.callout.clone())
                .filter(|old| *old.config() == config)
            {
                Some(old) => Some(old),
                None => Some(Arc::new(
                    portcullis_queue::SmtpCallout::new(config, clock.clone())
                        .map_err(|e| format!("backup_mx callout: {e}"))?,
                )),
            }
        }
    };
    let callout_filter = match (&settings.backup_callout, &callout) {
        (Some(c), Some(callout)) if !settings.backup_domains.is_empty() => {
            let verifier = Arc::new(crate::callout::CalloutVerifier {
                callout: callout.clone(),
                router: router.clone(),
                clock: clock.clone(),
            });
            let learned = settings
                .recipient_learning
                .as_ref()
                .and(base.learning.clone());
            let filter: Arc<dyn portcullis_core::Filter> =
                Arc::new(crate::callout::BackupCalloutFilter::new(
                    settings.backup_domains.clone(),
                    verifier,
                    learned,
                    c.defer_unknown,
                    clock.clone(),
                ));
            Some(filter)
        }
        _ => None,
    };

    let relay_filter = |role| -> Arc<dyn portcullis_core::Filter> {
        Arc::new(RelayFilter {
            rules: rules.clone(),
            role,
        })
    };
    let policy_filter: Arc<dyn portcullis_core::Filter> = base.policy.clone();
    let mut mx_chain = Chain::new();
    let mut submission_chain = Chain::new();
    if let Some(dnsbl) = &settings.dnsbl {
        // First: a listed client is refused at connect, before anything else.
        mx_chain.push(crate::filters::dnsbl_filter(dnsbl, clock.clone())?);
    }
    if let Some(batv) = &settings.batv {
        let ring = portcullis_batv::KeyRing::new(batv.key_number, &batv.secret)
            .map_err(|e| format!("batv: {e}"))?;
        let prvs = Arc::new(portcullis_batv::Prvs::new(ring));
        let mut validate = portcullis_batv::BounceValidation::new(prvs.clone(), clock.clone());
        let mut sign = portcullis_batv::PrvsSigning::new(prvs, clock.clone());
        for d in &batv.domains {
            validate = validate.protect_domain(d);
            sign = sign.enable_domain(d);
        }
        // Before the relay rules: a valid tag is stripped from the
        // recipient, so the rules judge the real address.
        mx_chain.push(Arc::new(validate));
        submission_chain.push(Arc::new(sign));
    }
    // The relay's own rules first (no open relay), then the policy, then
    // (MX only) greylisting.
    mx_chain.push(relay_filter(Role::Mx));
    mx_chain.push(policy_filter.clone());
    // Submission: the rules (AUTH required) first; signing is a MAIL FROM
    // rewrite and refuses nothing, so it may run before them.
    submission_chain.push(relay_filter(Role::Submission));
    submission_chain.push(policy_filter);
    if let Some(filter) = callout_filter {
        // After the rules (a backed-up domain, no routing tricks) and the
        // policy (a blocked or rate-limited client costs the primary
        // nothing); before greylisting, so an unknown recipient is refused
        // at once and counts towards the policy's unknown-recipient cap.
        mx_chain.push(filter.clone());
        submission_chain.push(filter);
    }
    if let Some(outbound) = settings.outbound_bulk {
        // Message stage, before signing: near copies to too many
        // recipients lock the account (policy crate).
        submission_chain.push(Arc::new(crate::outbound::OutboundBulkFilter::new(
            outbound,
            base.stores.outbound(outbound.window)?,
            base.policy.clone(),
            clock.clone(),
        )));
    }
    if !settings.dkim.is_empty() {
        let mut signer = portcullis_mailauth::DkimSigner::new();
        for k in &settings.dkim {
            let key = portcullis_mailauth::DkimSigningKey::from_pem(&k.pem)
                .map_err(|e| format!("dkim {}: {e}", k.domain))?;
            let identity = portcullis_mailauth::SigningIdentity::new(&k.domain, &k.selector, key)
                .map_err(|e| format!("dkim {}: {e}", k.domain))?;
            signer = signer.with_domain(identity);
        }
        // Last: sign what the other filters let through, as it will leave.
        submission_chain.push(Arc::new(signer));
    }
    if let Some(config) = settings.greylist.clone() {
        let greylist = Arc::new(portcullis_greylist::Greylist::new(
            base.stores.greylist()?,
            config,
        ));
        mx_chain.push(Arc::new(portcullis_greylist::GreylistFilter::new(
            greylist,
            clock.clone(),
        )));
    }
    if let Some(config) = settings.bulk.clone() {
        let checker =
            portcullis_fingerprint::BulkChecker::new(base.stores.checksums(config.window)?, config);
        mx_chain.push(Arc::new(portcullis_fingerprint::FingerprintFilter::new(
            Arc::new(portcullis_fingerprint::Fingerprinter::default()),
            checker,
            clock.clone(),
        )));
    }
    // Message stage, last: the content scanner before the (DNS-heavy)
    // SPF/DKIM/DMARC verification.
    if let Some(scan) = &settings.scan {
        mx_chain.push(crate::filters::scan_filter(scan)?);
    }
    if let Some(mailauth) = &settings.mailauth {
        mx_chain.push(crate::filters::mailauth_filter(
            mailauth,
            &settings.hostname,
        )?);
    }

    let same_caps = |p: &&Snapshot| {
        p.settings.max_connections == settings.max_connections
            && p.settings.max_connections_per_client == settings.max_connections_per_client
    };
    let sessions = match previous.filter(same_caps) {
        Some(p) => p.sessions.clone(),
        None => Arc::new(portcullis_policy::SessionLimiter::new(
            portcullis_policy::SessionLimits {
                per_client: settings.max_connections_per_client,
                total: settings.max_connections,
                v4_prefix: 32,
                v6_prefix: 64,
            },
        )),
    };
    let load_gate = match previous.filter(|p| p.settings.load_gate == settings.load_gate) {
        Some(p) => p.load_gate.clone(),
        None => settings
            .load_gate
            .map(|t| Arc::new(portcullis_policy::LoadGate::new(t))),
    };
    Ok(Built {
        snapshot: Snapshot {
            settings,
            rules,
            mx_chain,
            submission_chain,
            tls,
            sessions,
            load_gate,
            callout,
        },
        router,
        cert,
    })
}

/// The keys bound at start in both modes, the relay and `policyd`: their
/// new value needs a restart.
pub(crate) fn needs_restart_common(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    check("server.data_dir", old.data_dir != new.data_dir);
    check("server.log", old.log != new.log);
    check("metrics.listen", old.metrics != new.metrics);
    check("redis", old.redis != new.redis);
    check("policy.store", old.policy_store != new.policy_store);
    check("greylist.store", old.greylist_store != new.greylist_store);
    check(
        "backup_mx.store",
        old.recipients_store != new.recipients_store,
    );
    keys
}

/// The keys whose new value a reload cannot apply (bound at start).
fn needs_restart(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key: &'static str, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    check("mx.listen", old.mx_listen != new.mx_listen);
    check(
        "submission.listen",
        old.submission_listen != new.submission_listen,
    );
    check(
        "submissions.listen",
        old.submissions_listen != new.submissions_listen,
    );
    check("server.hostname", old.hostname != new.hostname);
    check(
        "limits.shutdown_grace_secs",
        old.shutdown_grace != new.shutdown_grace,
    );
    check(
        "admin",
        format!("{:?}", old.admin) != format!("{:?}", new.admin),
    );
    check("accounts.file", old.accounts_file != new.accounts_file);
    check(
        "accounts.postgres",
        old.accounts_postgres != new.accounts_postgres,
    );
    check("bulk.store", old.bulk_store != new.bulk_store);
    check(
        "outbound_bulk.store",
        old.outbound_store != new.outbound_store,
    );
    check("delivery.mx_port", old.mx_port != new.mx_port);
    check("delivery.tls", old.delivery_tls != new.delivery_tls);
    check(
        "delivery.tls_ca_file",
        old.delivery_tls_ca != new.delivery_tls_ca,
    );
    check(
        "delivery.command_timeout_secs",
        old.command_timeout != new.command_timeout,
    );
    check(
        "delivery.concurrency",
        old.delivery_concurrency != new.delivery_concurrency,
    );
    check(
        "delivery.max_queue_secs",
        old.max_queue_time != new.max_queue_time,
    );
    check(
        "delivery.first_retry_secs",
        old.first_retry != new.first_retry,
    );
    check("backup_mx.hold_secs", old.backup_hold != new.backup_hold);
    check(
        "backup_mx.learn_recipients",
        old.recipient_learning.is_some() != new.recipient_learning.is_some(),
    );
    keys.extend(needs_restart_common(old, new));
    keys
}

/// Re-read the configuration and put it in force for new sessions.
fn reload(
    path: &std::path::Path,
    overrides: &crate::config::Overrides,
    shared: &Shared,
    base: &Base,
) -> Result<Vec<&'static str>, String> {
    let mut settings = crate::config::load(Some(path), overrides).map_err(|e| e.to_string())?;
    let policy = crate::policy_config(&settings)?;
    let old = shared.snapshot();
    let restart = needs_restart(&old.settings, &settings);
    // The SMTP client and the DSNs keep the name they started with; the
    // greeting and Received: fields must say the same.
    settings.hostname = old.settings.hostname.clone();
    let built = build(Arc::new(settings), base, Some(&old))?;
    base.policy.replace(policy);
    shared
        .deliverer
        .reconfigure(built.snapshot.rules.clone(), built.router);
    shared.replace(built.snapshot);
    Ok(restart)
}

/// What the SIGHUP loop logs for one mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HupMessages {
    /// After a reload that took effect (`configuration reloaded: …`).
    pub(crate) reloaded: &'static str,
    /// After one that did not (`configuration not reloaded…`).
    pub(crate) not_reloaded: &'static str,
    /// What to restart to apply a key bound at start.
    pub(crate) restart: &'static str,
}

/// On each SIGHUP, run `reload` off the runtime's workers (files are read
/// and keys parsed) and log its outcome: success, then one warning per
/// key that changed but is bound at start (the `Ok` list), or the error.
/// Shared by the relay and `policyd`.
pub(crate) fn spawn_on_hup<F>(path: PathBuf, messages: HupMessages, reload: F)
where
    F: Fn(&std::path::Path) -> Result<Vec<&'static str>, String> + Send + Sync + 'static,
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Caught from here on (not from when the task first runs): a
        // SIGHUP right after the startup line must not end the process.
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::warn!(error = %e, "cannot catch SIGHUP: no configuration reload");
                return;
            }
        };
        tokio::spawn(async move {
            let reload = Arc::new(reload);
            while hup.recv().await.is_some() {
                let (reload, path2) = (reload.clone(), path.clone());
                let result = tokio::task::spawn_blocking(move || reload(&path2))
                    .await
                    .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
                let HupMessages {
                    reloaded,
                    not_reloaded,
                    restart,
                } = messages;
                match result {
                    Ok(keys) => {
                        tracing::info!(file = %path.display(), "{reloaded}");
                        for key in keys {
                            tracing::warn!(file = %path.display(), key, "{key} changed but is bound at start: restart {restart} to apply it (the old value stays in force)");
                        }
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "{not_reloaded}")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (path, messages, reload);
}

/// On SIGHUP, re-read the configuration file (with the same command-line
/// overrides) and put it in force; a file that does not load, or that
/// names a certificate, key or DKIM key that does not load, is reported
/// and the configuration in use is kept. The built-in defaults (no file)
/// have nothing to re-read.
pub(crate) fn spawn_config_reload(
    source: Option<PathBuf>,
    overrides: crate::config::Overrides,
    shared: Arc<Shared>,
    base: Arc<Base>,
) {
    let Some(path) = source else {
        return;
    };
    spawn_on_hup(
        path,
        HupMessages {
            reloaded: "configuration reloaded: policy limits reloaded, filter chains, limits, local domains, routes and TLS rebuilt for new sessions",
            not_reloaded: "configuration not reloaded (policy not reloaded); keeping the old one",
            restart: "the relay",
        },
        move |path| reload(path, &overrides, &shared, &base),
    );
}
