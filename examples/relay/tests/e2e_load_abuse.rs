//! End-to-end tests of the connect-time load gate (`[limits]
//! load_gate_sessions`) and of the outbound abuse signal on the submission
//! listener (`[outbound_bulk]`), which locks the sending account.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Relay};

/// Connect until the greeting is 220 (the relay notices closed sessions
/// shortly after the client does), or panic after `within`.
fn greeted_within(addr: std::net::SocketAddr, within: Duration) -> Client {
    let start = Instant::now();
    loop {
        let mut c = Client::connect(addr);
        let r = c.reply().unwrap();
        if r.code == 220 {
            return c;
        }
        assert!(start.elapsed() < within, "still refused: {r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn load_gate_closes_at_its_session_limit_and_reopens_below_it() {
    let (relay, _tmp) = Relay::start("[limits]\nload_gate_sessions = 2\n");
    // Two sessions open (one per listener: the gate counts them all).
    let first = Client::greeted(relay.mx);
    let second = Client::greeted(relay.submission);
    for addr in [relay.mx, relay.submission] {
        let mut third = Client::connect(addr);
        let r = third.reply().unwrap();
        assert_eq!((r.code, r.enhanced().as_str()), (421, "4.3.2"), "{r:?}");
        assert!(third.closed(Duration::from_secs(5)), "closed after 421");
    }
    for mut c in [first, second] {
        assert_eq!(c.cmd("QUIT").code, 221);
        assert!(c.closed(Duration::from_secs(5)));
    }
    // Below 90 % of 2 sessions: open again.
    let mut again = greeted_within(relay.mx, Duration::from_secs(5));
    assert_eq!(again.cmd("EHLO client.test").code, 250);
    let log = relay.log_text();
    assert!(log.contains("load gate closed"), "{log}");
}
