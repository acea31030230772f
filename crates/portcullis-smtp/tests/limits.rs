//! Limits that need a session driven by hand: input buffered while a
//! decision is pending, and folded long lines.

#![allow(clippy::unwrap_used)]

use portcullis_core::{Client, Verdict};
use portcullis_smtp::{Event, LongLines, Session, SessionConfig, SessionError};

fn session(config: SessionConfig) -> Session {
    let mut s = Session::new(config, Client::new("192.0.2.1:25".parse().unwrap()));
    let Some(Event::Connect { decision }) = s.poll_event() else {
        panic!("no connect event")
    };
    s.decide(decision, Verdict::Accept).unwrap();
    s
}

fn output(s: &mut Session) -> String {
    let mut out = Vec::new();
    s.take_output(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn input_buffered_while_a_decision_is_pending_is_capped() {
    let mut config = SessionConfig::new("mx.example");
    config.max_buffered_input = 1000;
    let mut s = session(config);
    s.receive(b"EHLO c.example\r\n");
    let Some(Event::Helo { decision, .. }) = s.poll_event() else {
        panic!("no HELO event")
    };
    // Pipelined while the HELO decision is pending: under the cap, kept.
    s.receive(&b"NOOP\r\n".repeat(150));
    assert!(!s.is_closed());
    assert!(s.pending_decision().is_some());
    // Over it: 421 and closed; the old decision is gone.
    s.receive(&b"NOOP\r\n".repeat(20));
    assert!(s.is_closed());
    assert!(output(&mut s).contains("421 4.7.0 mx.example Too much input"));
    assert_eq!(
        s.decide(decision, Verdict::Accept),
        Err(SessionError::UnexpectedDecision)
    );
}

#[test]
fn pipelined_input_within_the_cap_is_all_served() {
    let mut config = SessionConfig::new("mx.example");
    config.max_buffered_input = 1000;
    let mut s = session(config);
    s.receive(b"EHLO c.example\r\n");
    let Some(Event::Helo { decision, .. }) = s.poll_event() else {
        panic!("no HELO event")
    };
    s.receive(&b"NOOP\r\n".repeat(100));
    s.decide(decision, Verdict::Accept).unwrap();
    assert!(!s.is_closed());
    assert_eq!(output(&mut s).matches("250 2.0.0").count(), 100);
}

#[test]
fn long_lines_are_folded_when_configured() {
    let mut config = SessionConfig::new("mx.example");
    config.long_lines = LongLines::Fold;
    config.max_text_line = 100;
    let mut s = session(config);
    s.receive(b"EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n");
    let mut body = Vec::new();
    let mut complete = false;
    let mut pump = |s: &mut Session, body: &mut Vec<u8>| {
        while let Some(e) = s.poll_event() {
            match e {
                Event::MessageChunk(c) => body.extend_from_slice(&c),
                Event::MessageComplete { decision, .. } => {
                    complete = true;
                    s.decide(decision, Verdict::Accept).unwrap();
                }
                Event::Helo { decision, .. }
                | Event::MailFrom { decision, .. }
                | Event::RcptTo { decision, .. }
                | Event::DataStart { decision, .. } => s.decide(decision, Verdict::Accept).unwrap(),
                _ => {}
            }
        }
    };
    pump(&mut s, &mut body);
    let long = "x".repeat(250);
    s.receive(format!("Subject: t\r\n\r\n{long}\r\nshort\r\n.\r\n").as_bytes());
    pump(&mut s, &mut body);
    assert!(complete, "message not complete");
    let want = format!(
        "Subject: t\r\n\r\n{}\r\n {}\r\n {}\r\nshort\r\n",
        &long[..98],
        &long[98..195],
        &long[195..]
    );
    assert_eq!(String::from_utf8(body).unwrap(), want);
    assert!(output(&mut s).contains("250 2.0.0"));
}
