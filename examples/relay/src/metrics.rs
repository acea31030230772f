//! Metrics in the Prometheus text format (`prometheus` crate), served on
//! `GET /metrics` of the `[metrics] listen` address.
//!
//! The counters live in one process-wide registry so that the hooks in the
//! session and delivery code are one line each. The queue gauges are taken
//! from the spool when the endpoint is scraped. `policyd` mode serves the
//! same endpoint (its requests, decisions and latency; no queue).

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use portcullis_queue::{Hold, Outcome, Spool};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http;

/// `[metrics]` as written: off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsSection {
    /// e.g. `127.0.0.1:9425`.
    pub(crate) listen: Option<String>,
}

impl MetricsSection {
    /// The checked listen address, if metrics are on.
    pub(crate) fn check(&self) -> Result<Option<SocketAddr>, (String, String)> {
        self.listen
            .as_deref()
            .map(|s| {
                s.parse().map_err(|_| {
                    (
                        "metrics.listen".to_owned(),
                        format!("{s:?} is not an address:port"),
                    )
                })
            })
            .transpose()
    }
}

/// The relay's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    sessions_total: IntCounterVec,
    sessions_current: IntGaugeVec,
    refusals: IntCounterVec,
    accepted: IntCounterVec,
    deliveries: IntCounterVec,
    queue: IntGaugeVec,
    spool_store: Histogram,
    policy_check: HistogramVec,
    store: HistogramVec,
    policyd_requests: IntCounterVec,
    policyd_latency: Histogram,
    callouts: IntCounterVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("portcullis".to_owned()), None)?;
    let sessions_total = IntCounterVec::new(
        Opts::new("sessions_total", "SMTP sessions opened, by listener"),
        &["listener"],
    )?;
    let sessions_current = IntGaugeVec::new(
        Opts::new("sessions_current", "SMTP sessions open now, by listener"),
        &["listener"],
    )?;
    let refusals = IntCounterVec::new(
        Opts::new(
            "verdicts_total",
            "Refusals (reject, defer, disconnect) by stage, deciding filter and reply code",
        ),
        &["stage", "filter", "code"],
    )?;
    let accepted = IntCounterVec::new(
        Opts::new(
            "messages_accepted_total",
            "Messages accepted into the spool, by listener",
        ),
        &["listener"],
    )?;
    let deliveries = IntCounterVec::new(
        Opts::new(
            "delivery_outcomes_total",
            "Per-recipient delivery outcomes (delivered, deferred, bounced by the next hop, expired in the queue)",
        ),
        &["outcome"],
    )?;
    let queue = IntGaugeVec::new(
        Opts::new(
            "queue_messages",
            "Messages in the spool by state (active, held, quarantined)",
        ),
        &["state"],
    )?;
    let spool_store = Histogram::with_opts(
        HistogramOpts::new(
            "spool_store_seconds",
            "Time to store (and fsync) an accepted message",
        )
        .buckets(vec![
            0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ]),
    )?;
    registry.register(Box::new(sessions_total.clone()))?;
    registry.register(Box::new(sessions_current.clone()))?;
    registry.register(Box::new(refusals.clone()))?;
    registry.register(Box::new(accepted.clone()))?;
    registry.register(Box::new(deliveries.clone()))?;
    registry.register(Box::new(queue.clone()))?;
    let policy_check = HistogramVec::new(
        HistogramOpts::new(
            "policy_check_seconds",
            "Time the policy filter (and its counter store) took, by stage",
        )
        .buckets(vec![
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
        ]),
        &["stage"],
    )?;
    registry.register(Box::new(spool_store.clone()))?;
    registry.register(Box::new(policy_check.clone()))?;
    let store = HistogramVec::new(
        HistogramOpts::new(
            "store_seconds",
            "Time of each call to a filter's store or service, by store (counter, greylist, checksum, dnsbl, scan, callout) and operation",
        )
        .buckets(vec![
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ]),
        &["store", "op"],
    )?;
    let policyd_requests = IntCounterVec::new(
        Opts::new(
            "policyd_requests_total",
            "Policy delegation requests answered (policyd mode), by decision (continue, accept, defer, reject, disconnect, error), action word and deciding filter",
        ),
        &["decision", "action", "filter"],
    )?;
    let policyd_latency = Histogram::with_opts(
        HistogramOpts::new(
            "policyd_request_seconds",
            "Time to answer one policy delegation request (policyd mode)",
        )
        .buckets(vec![
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
        ]),
    )?;
    registry.register(Box::new(store.clone()))?;
    registry.register(Box::new(policyd_requests.clone()))?;
    registry.register(Box::new(policyd_latency.clone()))?;
    let callouts = IntCounterVec::new(
        Opts::new(
            "callout_total",
            "Backup-MX recipient callouts by result (exists, does_not_exist, inconclusive, unreachable, timeout, busy, no_primary, no_route) and whether the answer came from the callout cache",
        ),
        &["result", "cached"],
    )?;
    registry.register(Box::new(callouts.clone()))?;
    Ok(Metrics {
        registry,
        sessions_total,
        sessions_current,
        refusals,
        accepted,
        deliveries,
        queue,
        spool_store,
        policy_check,
        store,
        policyd_requests,
        policyd_latency,
        callouts,
    })
}

/// `None` only if the fixed metric definitions above were invalid, which
/// the unit test rules out; the hooks then do nothing.
static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| build().ok());

fn with(f: impl FnOnce(&Metrics)) {
    if let Some(m) = METRICS.as_ref() {
        f(m);
    }
}

/// Counts a session as open until dropped.
pub(crate) struct SessionGuard(&'static str);

/// A session opened on `listener` (`mx`, `submission`).
pub(crate) fn session_opened(listener: &'static str) -> SessionGuard {
    with(|m| {
        m.sessions_total.with_label_values(&[listener]).inc();
        m.sessions_current.with_label_values(&[listener]).inc();
    });
    SessionGuard(listener)
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        with(|m| m.sessions_current.with_label_values(&[self.0]).dec());
    }
}

/// A refusal at `stage`, decided by `filter` (`Context::decided_by`).
pub(crate) fn refusal(stage: &str, filter: Option<&str>, code: u16) {
    with(|m| {
        m.refusals
            .with_label_values(&[stage, filter.unwrap_or("-"), &code.to_string()])
            .inc();
    });
}

/// A message accepted on `listener`, and how long the spool took.
pub(crate) fn accepted(listener: &str, store_time: Duration) {
    with(|m| {
        m.accepted.with_label_values(&[listener]).inc();
        m.spool_store.observe(store_time.as_secs_f64());
    });
}

/// How long one policy decision took at `stage`.
pub(crate) fn policy_check(stage: &str, took: Duration) {
    with(|m| {
        m.policy_check
            .with_label_values(&[stage])
            .observe(took.as_secs_f64());
    });
}

/// How long one call to `store`'s `op` took (`portcullis_store_seconds`).
pub(crate) fn store_call(store: &str, op: &str, took: Duration) {
    with(|m| {
        m.store
            .with_label_values(&[store, op])
            .observe(took.as_secs_f64());
    });
}

/// One policyd answer: the chain's decision, the action word (`DUNNO`,
/// `DEFER_IF_PERMIT`, a reply code…), the deciding filter, and how long it
/// took.
pub(crate) fn policyd_request(decision: &str, action: &str, filter: Option<&str>, took: Duration) {
    with(|m| {
        m.policyd_requests
            .with_label_values(&[decision, action, filter.unwrap_or("-")])
            .inc();
        m.policyd_latency.observe(took.as_secs_f64());
    });
}

/// One backup-MX callout answer (`portcullis_callout_total`): its
/// `result`, and whether the callout's cache gave it.
pub(crate) fn callout(result: &str, cached: bool) {
    with(|m| {
        m.callouts
            .with_label_values(&[result, if cached { "true" } else { "false" }])
            .inc();
    });
}

/// A recipient bounced because its message outlived the queue lifetime
/// (no delivery attempt outcome says so).
pub(crate) fn expired() {
    with(|m| m.deliveries.with_label_values(&["expired"]).inc());
}

/// The outcomes of one delivery attempt.
pub(crate) fn delivery(outcomes: &[Outcome]) {
    with(|m| {
        for o in outcomes {
            let label = match o {
                // A next hop took a NOTIFY=SUCCESS recipient (`Relayed`):
                // delivered as far as this relay is concerned.
                o if o.is_accepted() => "delivered",
                Outcome::Deferred(_) => "deferred",
                Outcome::Bounced(_) => "bounced",
                _ => "other",
            };
            m.deliveries.with_label_values(&[label]).inc();
        }
    });
}

/// The text exposition, with the queue gauges read from `spool` now (no
/// spool in policyd mode).
pub(crate) fn render(spool: Option<&Spool>) -> String {
    let Some(m) = METRICS.as_ref() else {
        return String::new();
    };
    if let Some(spool) = spool {
        let (mut active, mut held, mut quarantined) = (0i64, 0i64, 0i64);
        for info in spool.list() {
            match info.state.hold {
                Hold::None => active += 1,
                Hold::Quarantined { .. } => quarantined += 1,
                _ => held += 1,
            }
        }
        m.queue.with_label_values(&["active"]).set(active);
        m.queue.with_label_values(&["held"]).set(held);
        m.queue.with_label_values(&["quarantined"]).set(quarantined);
    }
    text_of(m)
}

/// The text exposition as it is now (no gauges refreshed).
#[cfg(test)]
pub(crate) fn text() -> String {
    METRICS.as_ref().map(text_of).unwrap_or_default()
}

fn text_of(m: &Metrics) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Serve `GET /metrics` on `socket` until `stop` turns true.
pub(crate) async fn serve(socket: TcpListener, spool: Option<Spool>, stop: watch::Receiver<bool>) {
    http::serve(socket, stop, move |req| {
        let spool = spool.clone();
        async move {
            if req.method != "GET" {
                return http::Response::text(405, "GET only\n");
            }
            if req.path != "/metrics" {
                return http::Response::text(404, "try /metrics\n");
            }
            match tokio::task::spawn_blocking(move || render(spool.as_ref())).await {
                Ok(body) => http::Response {
                    status: 200,
                    content_type: "text/plain; version=0.0.4",
                    body: body.into_bytes(),
                },
                Err(_) => http::Response::text(500, "metrics task failed\n"),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_valid_and_hooks_show_in_the_text() {
        assert!(build().is_ok());
        let g = session_opened("mx");
        refusal("rcpt", Some("relay"), 554);
        callout("exists", true);
        drop(g);
        let m = METRICS.as_ref().unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("portcullis_sessions_total{listener=\"mx\"}"));
        assert!(text.contains("portcullis_sessions_current{listener=\"mx\"} 0"));
        assert!(
            text.contains(
                "portcullis_verdicts_total{code=\"554\",filter=\"relay\",stage=\"rcpt\"}"
            )
        );
        assert!(text.contains("portcullis_callout_total{cached=\"true\",result=\"exists\"}"));
    }

    #[test]
    fn a_relayed_recipient_counts_as_delivered() {
        let m = METRICS.as_ref().unwrap();
        let count = |o: &str| m.deliveries.with_label_values(&[o]).get();
        let (delivered, other) = (count("delivered"), count("other"));
        let ok = portcullis_core::Reply::new(250, (2, 0, 0), "ok");
        delivery(&[
            Outcome::Relayed {
                reply: ok.clone(),
                dsn_passed_on: false,
            },
            Outcome::Relayed {
                reply: ok,
                dsn_passed_on: true,
            },
        ]);
        assert_eq!(count("delivered"), delivered + 2);
        assert_eq!(count("other"), other);
    }

    #[test]
    fn listen_address_is_checked() {
        let bad = MetricsSection {
            listen: Some("nowhere".into()),
        };
        assert_eq!(bad.check().unwrap_err().0, "metrics.listen");
        assert_eq!(MetricsSection::default().check().unwrap(), None);
    }
}
