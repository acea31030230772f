//! Store latency histograms (`portcullis_store_seconds`) for the policy's
//! counter store, the greylist, the bulk checksum store and the content
//! scanner in the relay's `/metrics`; and `[metrics]` in `policyd` mode:
//! requests by decision, action and deciding filter, request latency.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, Policyd, Relay, endpoint, fake_clamd, sample, scrape};

#[test]
fn relay_metrics_time_the_counter_greylist_checksum_and_scan_stores() {
    let clamd = fake_clamd();
    let (relay, _tmp) = Relay::start(&format!(
        "[local]\ndomains = [\"example.org\"]\nmailboxes = [\"alice@example.org\"]\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [greylist]\nenabled = true\ndelay_secs = 1\n\
         [bulk]\nenabled = true\n\
         [scan]\nclamd = \"{clamd}\"\n"
    ));
    let metrics = endpoint(&relay.startup_line, "metrics");
    let before = scrape(metrics);
    assert_eq!(
        sample(
            &before,
            "portcullis_store_seconds_count{op=\"instream\",store=\"scan\"}"
        ),
        0.0
    );
    let attempt = |send: bool| {
        let mut c = Client::greeted(relay.mx);
        assert_eq!(c.cmd("EHLO client.test").code, 250);
        assert_eq!(c.cmd("MAIL FROM:<x@world.test>").code, 250);
        let code = c.cmd("RCPT TO:<alice@example.org>").code;
        if send && code == 250 {
            assert_eq!(c.cmd("DATA").code, 354);
            c.send_raw(&common::message(
                "m",
                "x@world.test",
                "alice@example.org",
                "timed",
            ));
            c.send_raw(b".\r\n");
            return c.reply().unwrap().code;
        }
        code
    };
    assert_eq!(attempt(false), 451);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(attempt(true), 250);

    let text = scrape(metrics);
    for series in [
        "portcullis_store_seconds_count{op=\"decide\",store=\"counter\"}",
        "portcullis_store_seconds_count{op=\"get\",store=\"greylist\"}",
        "portcullis_store_seconds_count{op=\"put\",store=\"greylist\"}",
        "portcullis_store_seconds_count{op=\"instream\",store=\"scan\"}",
    ] {
        assert!(sample(&text, series) >= 1.0, "{series} missing:\n{text}");
    }
    // The bulk check asks and records its checksums.
    let checksum: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("portcullis_store_seconds_count{") && l.contains("store=\"checksum\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(checksum >= 1.0, "no checksum store calls:\n{text}");
}

/// One policy delegation request; the `action=` line of the answer.
fn ask(addr: SocketAddr, client: &str, recipient: &str) -> String {
    common::policy_ask(addr, (client, "unknown"), "x@world.test", recipient)
}

#[test]
fn policyd_serves_metrics_by_decision_action_and_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("relay.toml");
    std::fs::write(
        &conf,
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[greylist]\nenabled = true\ndelay_secs = 300\n",
    )
    .unwrap();
    let policyd = Policyd::start(&conf, &tmp.path().join("data"));
    {
        let metrics = endpoint(&policyd.startup_line, "metrics");
        let policyd = policyd.addr;
        assert!(ask(policyd, "192.0.2.7", "a@example.org").starts_with("action=DEFER_IF_PERMIT"));
        assert!(ask(policyd, "192.0.2.7", "b@example.org").starts_with("action=DEFER_IF_PERMIT"));
        let text = scrape(metrics);
        assert_eq!(
            sample(
                &text,
                "portcullis_policyd_requests_total{action=\"DEFER_IF_PERMIT\",decision=\"defer\",filter=\"greylist\"}"
            ),
            2.0,
            "{text}"
        );
        assert_eq!(
            sample(&text, "portcullis_policyd_request_seconds_count"),
            2.0
        );
        assert!(
            sample(
                &text,
                "portcullis_store_seconds_count{op=\"get\",store=\"greylist\"}"
            ) >= 2.0,
            "{text}"
        );
        // No spool in policyd mode: no queue gauges.
        assert!(!text.contains("portcullis_queue_messages{"), "{text}");
    }
}
