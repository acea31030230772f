//! Backup MX with `[backup_mx] verify = "callout"`: the built relay asks a
//! scripted primary on loopback whether each recipient exists, refuses the
//! ones the primary says do not (550 5.1.1), accepts the ones it cannot
//! ask about (primary down) or defers them (450 4.1.1) with
//! `defer_unknown_recipients`, asks once per recipient (cache), counts the
//! answers in its metrics, and never sends `DATA` in a callout.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Relay, message, message_id, sample, scrape};

/// One connection to the primary: the command lines it read, the
/// messages it took, and whether the client has gone.
#[derive(Debug, Clone, Default)]
struct Session {
    commands: Vec<String>,
    messages: Vec<Vec<u8>>,
    closed: bool,
}

impl Session {
    fn is_callout(&self) -> bool {
        self.commands.iter().any(|c| c == "MAIL FROM:<>")
    }
}

/// A scripted primary MX: `250` to `RCPT` for its known users, `550 5.1.1`
/// for everyone else; takes messages (DATA) for the known ones. No ESMTP
/// extensions (no STARTTLS, no PIPELINING), so every command is one line
/// answered in turn.
struct Primary {
    addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Session>>>,
}

impl Primary {
    fn start(known: &'static [&'static str]) -> Primary {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let all = sessions.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let index = {
                    let mut all = all.lock().unwrap();
                    all.push(Session::default());
                    all.len() - 1
                };
                let all = all.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, known, &all, index);
                    all.lock().unwrap()[index].closed = true;
                });
            }
        });
        Primary { addr, sessions }
    }

    fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().clone()
    }

    /// Callout connections that asked about `rcpt`.
    fn callouts_for(&self, rcpt: &str) -> usize {
        let line = format!("RCPT TO:<{rcpt}>");
        self.sessions()
            .iter()
            .filter(|s| s.is_callout() && s.commands.contains(&line))
            .count()
    }

    /// Wait until every callout connection so far has been closed by the
    /// client (delivery connections may be kept open for reuse).
    fn wait_callouts_closed(&self, within: Duration) -> Vec<Session> {
        let start = Instant::now();
        loop {
            let s = self.sessions();
            if s.iter().all(|s| s.closed || !s.is_callout()) || start.elapsed() > within {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the primary took at least `n` messages.
    fn wait_messages(&self, n: usize, within: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let m: Vec<Vec<u8>> = self
                .sessions()
                .into_iter()
                .flat_map(|s| s.messages)
                .collect();
            if m.len() >= n || start.elapsed() > within {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(
    conn: TcpStream,
    known: &[&str],
    sessions: &Mutex<Vec<Session>>,
    index: usize,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 primary.test ESMTP\r\n")?;
    let record = |line: &str| {
        sessions.lock().unwrap()[index]
            .commands
            .push(line.to_owned())
    };
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        record(&line);
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 primary.test\r\n"
        } else if upper.starts_with("MAIL FROM:") || upper == "RSET" || upper == "NOOP" {
            b"250 2.1.0 Ok\r\n"
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:<") {
            let rcpt = rest.split('>').next().unwrap_or("");
            if known.iter().any(|k| k.eq_ignore_ascii_case(rcpt)) {
                b"250 2.1.5 Ok\r\n"
            } else {
                b"550 5.1.1 <nobody>: Recipient address rejected: User unknown\r\n"
            }
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                // RFC 5321 §4.5.2: remove one leading dot.
                data.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
            }
            sessions.lock().unwrap()[index].messages.push(data);
            b"250 2.0.0 Ok: queued\r\n"
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            b"502 5.5.2 Error: command not recognized\r\n"
        };
        w.write_all(reply)?;
    }
}

/// A loopback port nobody listens on: a primary that is down.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

fn config(primary: SocketAddr, down: SocketAddr, defer_unknown: bool) -> String {
    format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [backup_mx]\ndomains = [\"customer.test\", \"down.test\"]\nverify = \"callout\"\n\
         defer_unknown_recipients = {defer_unknown}\n\
         [delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n\
         [delivery.routes]\n\"customer.test\" = \"{primary}\"\n\"down.test\" = \"{down}\"\n"
    )
}

/// A session on the MX port, after `MAIL FROM`.
fn mail_from(relay: &Relay) -> Client {
    let mut c = Client::greeted(relay.mx);
    assert_eq!(c.cmd("EHLO world.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<someone@world.test>").code, 250);
    c
}

fn rcpt(c: &mut Client, to: &str) -> (u16, String) {
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    (r.code, r.enhanced())
}

#[test]
fn callout_refuses_what_the_primary_refuses_and_never_what_it_cannot_tell() {
    let primary = Primary::start(&["alice@customer.test"]);
    let down = closed_port();
    let (relay, _tmp) = Relay::start(&config(primary.addr, down, false));
    let metrics = common::endpoint(&relay.startup_line, "metrics");

    let mut c = mail_from(&relay);
    // Known to the primary: accepted.
    assert_eq!(rcpt(&mut c, "alice@customer.test").0, 250);
    // Unknown to the primary: refused, as the primary would.
    assert_eq!(
        rcpt(&mut c, "ghost@customer.test"),
        (550, "5.1.1".to_owned())
    );
    // Primary down: no answer, so accepted and held for it.
    assert_eq!(rcpt(&mut c, "bob@down.test").0, 250);
    // Other domains are not asked about (and not relayed for).
    assert_eq!(rcpt(&mut c, "x@other.test"), (554, "5.7.1".to_owned()));
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(
        "callout-1",
        "someone@world.test",
        "alice@customer.test",
        "to the primary",
    ));
    c.send_raw(b".\r\n");
    assert_eq!(c.reply().unwrap().code, 250);
    c.cmd("QUIT");

    // A second RCPT for the same addresses is answered from the cache.
    let mut c = mail_from(&relay);
    assert_eq!(rcpt(&mut c, "alice@customer.test").0, 250);
    assert_eq!(
        rcpt(&mut c, "ghost@customer.test"),
        (550, "5.1.1".to_owned())
    );
    assert_eq!(rcpt(&mut c, "bob@down.test").0, 250);
    c.cmd("QUIT");
    assert_eq!(primary.callouts_for("alice@customer.test"), 1);
    assert_eq!(primary.callouts_for("ghost@customer.test"), 1);

    // The accepted message reaches the primary (for alice only); bob's
    // waits in the queue for his.
    let got = primary.wait_messages(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", relay.log_text());
    assert_eq!(
        message_id(&got[0]).as_deref(),
        Some("<callout-1@test.portcullis>")
    );
    relay.wait_log("<bob@down.test>=deferred (", 1);

    // Each callout: EHLO with the relay's name, the null sender, one
    // RCPT, QUIT. Never DATA (nor BDAT).
    let sessions = primary.wait_callouts_closed(Duration::from_secs(30));
    let callouts: Vec<&Session> = sessions.iter().filter(|s| s.is_callout()).collect();
    assert_eq!(callouts.len(), 2, "{sessions:?}");
    for s in &callouts {
        assert!(s.closed, "{s:?}");
        assert!(
            !s.commands.iter().any(|c| {
                let c = c.to_ascii_uppercase();
                c.starts_with("DATA") || c.starts_with("BDAT")
            }),
            "{s:?}"
        );
        assert!(s.messages.is_empty(), "{s:?}");
        assert_eq!(s.commands.len(), 4, "{s:?}");
        assert_eq!(s.commands[0], "EHLO relay.test");
        assert_eq!(s.commands[1], "MAIL FROM:<>");
        assert!(s.commands[2].starts_with("RCPT TO:<"), "{s:?}");
        assert_eq!(s.commands[3], "QUIT");
    }
    // The delivery is a separate, ordinary connection.
    let deliveries: Vec<&Session> = sessions.iter().filter(|s| !s.is_callout()).collect();
    assert_eq!(deliveries.len(), 1, "{sessions:?}");
    assert!(
        deliveries[0]
            .commands
            .contains(&"RCPT TO:<alice@customer.test>".to_owned())
    );

    // Metrics: the answers by result, and which came from the cache.
    let text = scrape(metrics);
    let callout = |result: &str, cached: bool| {
        sample(
            &text,
            &format!("portcullis_callout_total{{cached=\"{cached}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(callout("exists", false), 1.0, "{text}");
    assert_eq!(callout("exists", true), 1.0, "{text}");
    assert_eq!(callout("does_not_exist", false), 1.0, "{text}");
    assert_eq!(callout("does_not_exist", true), 1.0, "{text}");
    assert_eq!(callout("unreachable", false), 1.0, "{text}");
    assert_eq!(callout("unreachable", true), 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "portcullis_verdicts_total{code=\"550\",filter=\"callout\",stage=\"rcpt\"}"
        ),
        2.0,
        "{text}"
    );
    assert!(
        text.contains("portcullis_store_seconds_count{op=\"verify\",store=\"callout\"} 3"),
        "{text}"
    );

    // SIGHUP with defer_unknown_recipients on: a recipient the primary
    // cannot be asked about is deferred (450 4.1.1), never refused; the
    // callout's cache carried over (same callout settings).
    let text = std::fs::read_to_string(&relay.config).unwrap();
    let new = text.replace(
        "defer_unknown_recipients = false",
        "defer_unknown_recipients = true",
    );
    assert_ne!(text, new);
    std::fs::write(&relay.config, new).unwrap();
    relay.hup();
    relay.wait_log("configuration reloaded", 1);
    let mut c = mail_from(&relay);
    assert_eq!(rcpt(&mut c, "carol@down.test"), (450, "4.1.1".to_owned()));
    assert_eq!(rcpt(&mut c, "alice@customer.test").0, 250);
    assert_eq!(
        rcpt(&mut c, "ghost@customer.test"),
        (550, "5.1.1".to_owned())
    );
    c.cmd("QUIT");
    assert_eq!(primary.callouts_for("alice@customer.test"), 1);
    assert_eq!(primary.callouts_for("ghost@customer.test"), 1);
}

/// `verify = "learn"` (the default) never calls out: without learning,
/// every recipient of a backed-up domain is accepted and the primary is
/// not contacted until delivery.
#[test]
fn learn_mode_does_not_call_out() {
    let primary = Primary::start(&["alice@customer.test"]);
    let (relay, _tmp) = Relay::start(
        &config(primary.addr, closed_port(), false).replace("verify = \"callout\"\n", ""),
    );
    let mut c = mail_from(&relay);
    assert_eq!(rcpt(&mut c, "ghost@customer.test").0, 250);
    c.cmd("QUIT");
    assert!(primary.sessions().is_empty(), "{:?}", primary.sessions());
}
