#![no_main]
//! A whole session on an arbitrary byte stream: never panics, every reply
//! line is well formed, and splitting the stream differently changes
//! neither the events nor the replies.

use libfuzzer_sys::fuzz_target;
use portcullis_core::{Client, Reply, Verdict};
use portcullis_smtp::{AuthMechanisms, Session, SessionConfig};

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
    let cuts: Vec<usize> = (chunk..data.len()).step_by(chunk).collect();
    portcullis_smtp::testing::drive(&mut s, data, &cuts, |n| match n % 9 {
        4 => Verdict::Reject(Reply::policy_rejected("no")),
        7 => Verdict::Defer(Reply::policy_deferred("later")),
        _ => Verdict::Accept,
    })
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
