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

#[test]
fn near_copies_to_too_many_recipients_lock_the_account() {
    if !common::have_tool("python3") {
        return;
    }
    let sink = common::Sink::start();
    let (relay, _tmp) = Relay::start(&format!(
        "[delivery]\nfirst_retry_secs = 1\ntls = \"never\"\n\
         [delivery.routes]\n\"sink.test\" = \"{}\"\n\
         [outbound_bulk]\nrecipients = 2\nwindow_secs = 3600\n\
         [policy]\nabuse_lock_secs = 600\n",
        sink.addr
    ));
    // Three separate messages with the same body, one recipient each; the
    // third takes the account past 2 distinct recipients.
    let script = r#"
import smtplib, ssl, sys
host, port, user, pw = sys.argv[1:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=20)
s.starttls(context=ctx)
s.login(user, pw)
body = ("Dear customer, your parcel is waiting at the depot. Confirm your "
        "address and pay the small customs fee today at our site, or it "
        "goes back to the sender within three days. Thank you.\r\n")
for i in range(3):
    msg = ("Subject: parcel\r\nTo: r%d@sink.test\r\n\r\n" % i + body).encode()
    try:
        s.sendmail(user, ["r%d@sink.test" % i], msg)
        print("sent", i)
    except smtplib.SMTPDataError as e:
        print("refused", i, e.smtp_code, e.smtp_error.decode())
try:
    s.sendmail(user, ["other@sink.test"], b"Subject: hi\r\n\r\nsomething else\r\n")
    print("next sent")
except smtplib.SMTPSenderRefused as e:
    print("next", e.smtp_code, e.smtp_error.decode())
s.quit()
"#;
    let stdout = common::python(script, relay.submission, &[common::USER, common::PASSWORD]);
    assert!(
        stdout.contains("sent 0") && stdout.contains("sent 1"),
        "{stdout}"
    );
    assert!(stdout.contains("refused 2 554 5.7.1"), "{stdout}");
    // A first lock is timed (abuse_lock_secs): 451 4.7.1 at MAIL.
    assert!(stdout.contains("next 451 4.7.1 Account locked"), "{stdout}");
    // For [policy] abuse_lock_secs, not the policy crate's default hour.
    assert!(
        stdout.contains("locked for 600 more seconds")
            || stdout.contains("locked for 599 more seconds"),
        "{stdout}"
    );
    let log = relay.log_text();
    assert!(log.contains("outbound bulk: account locked"), "{log}");
    // Only the two messages under the limit left.
    assert_eq!(sink.wait_for(2, Duration::from_secs(10)).len(), 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.count(), 2);
}
