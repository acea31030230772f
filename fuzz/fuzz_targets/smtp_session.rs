#![no_main]
//! A whole session on an arbitrary byte stream: never panics, every reply
//! line is well formed, and splitting the stream differently changes
//! neither the events nor the replies.

use libfuzzer_sys::fuzz_target;
use portcullis_core::{Client, Reply, Verdict};
use portcullis_smtp::{AuthMechanisms, Event, Session, SessionConfig};

fn config(lenient: bool) -> SessionConfig {
    let mut c = SessionConfig::new("mx.example");
    c.extensions.starttls = true;
    c.extensions.auth = AuthMechanisms::PLAIN_LOGIN;
    c.extensions.binary_mime = true;
    c.auth_without_tls = true;
    c.bare_lf_in_commands = lenient;
    c.max_recipients = 3;
    c.max_message_size = 500;
    c.max_text_line = 80;
    c
}

fn run(data: &[u8], chunk: usize, lenient: bool) -> (Vec<String>, Vec<u8>) {
    let mut s = Session::new(
        config(lenient),
        Client::new("192.0.2.1:25".parse().unwrap()),
    );
    let mut events = Vec::new();
    let mut body = Vec::new();
    let mut out = Vec::new();
    let mut n = 0u32;
    let mut pump = |s: &mut Session, events: &mut Vec<String>, out: &mut Vec<u8>| {
        while let Some(e) = s.poll_event() {
            let d = match e {
                Event::MessageChunk(c) => {
                    body.extend_from_slice(&c);
                    None
                }
                Event::Reset => {
                    body.clear();
                    events.push("reset".into());
                    None
                }
                Event::MessageAborted { reply } => {
                    body.clear();
                    events.push(format!("aborted {reply}"));
                    None
                }
                Event::MessageComplete { size, decision } => {
                    assert_eq!(size, body.len() as u64);
                    events.push(format!("complete {:?}", body));
                    body.clear();
                    Some(decision)
                }
                Event::Connect { decision }
                | Event::Helo { decision, .. }
                | Event::Auth { decision, .. }
                | Event::MailFrom { decision, .. }
                | Event::RcptTo { decision, .. }
                | Event::DataStart { decision, .. } => {
                    events.push(format!("{:?}", decision.stage()));
                    Some(decision)
                }
                other => {
                    events.push(format!("{other:?}"));
                    None
                }
            };
            if let Some(d) = d {
                n += 1;
                let v = match n % 9 {
                    4 => Verdict::Reject(Reply::policy_rejected("no")),
                    7 => Verdict::Defer(Reply::policy_deferred("later")),
                    _ => Verdict::Accept,
                };
                s.decide(d, v).expect("pending decision");
            }
        }
        s.take_output(out);
    };
    pump(&mut s, &mut events, &mut out);
    for part in data.chunks(chunk.max(1)) {
        s.receive(part);
        pump(&mut s, &mut events, &mut out);
    }
    (events, out)
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let lenient = ctl & 0x80 != 0;
    let chunk = usize::from(ctl & 0x3f) + 1;
    let whole = run(data, data.len().max(1), lenient);
    let split = run(data, chunk, lenient);
    assert_eq!(whole, split, "split at {chunk} changed the session");
    // Every reply line: three digits, a space or hyphen, text, CRLF.
    for line in whole.1.split_inclusive(|&b| b == b'\n') {
        assert!(line.len() >= 6 && line.ends_with(b"\r\n"), "{line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(line[3] == b' ' || line[3] == b'-', "{line:?}");
        assert!(!line[..line.len() - 2].contains(&b'\r'), "{line:?}");
    }
});
