//! The policy as a filter that SIGHUP can replace without dropping
//! sessions: a new `Policy` is built from the re-read configuration over
//! the same counter store, so counters, blocks and locks carry over (the
//! in-process list of recent violations starts afresh).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

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

/// On SIGHUP, re-read the configuration file and put its `[policy]`
/// section (with the accounts file's per-account limits merged) in force.
/// A file that does not load is reported and the policy in use is kept.
/// The built-in defaults (no file) have nothing to re-read.
pub(crate) fn spawn_policy_reload(source: Option<PathBuf>, live: Arc<LivePolicy>) {
    let Some(path) = source else {
        return;
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let loaded = crate::config::load(Some(&path), &crate::config::Overrides::default())
                .map_err(|e| e.to_string())
                .and_then(|s| crate::policy_config(&s));
            match loaded {
                Ok(config) => {
                    live.replace(config);
                    tracing::info!(file = %path.display(), "policy limits reloaded");
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "policy not reloaded; keeping the old one")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (path, live);
}
