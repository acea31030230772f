//! Transcript harness: replays every `tests/transcripts/*.txt` against a
//! `Session`, three times (whole batches, one byte at a time, and a fixed
//! pseudo-random split), and checks the replies and events.
//!
//! Syntax, one directive per line (`#` starts a comment line):
//!
//! - `! option [value]` — configuration, before the first `C:`/`R:`:
//!   `hostname H`, `starttls`, `tls` (implicit TLS), `auth plain login`,
//!   `auth_without_tls`, `no_greeting_required`, `bare_lf_in_commands`,
//!   `max_recipients N`, `max_message_size N`, `max_bad_commands N`,
//!   `max_text_line N`, `long_lines accept`, `binarymime`, `requiretls`,
//!   `no ESMTP-KEYWORD` (pipelining, size, 8bitmime, smtputf8, chunking,
//!   dsn, enhancedstatuscodes).
//! - `C: text` — the client sends `text` and CRLF. `R: text` — raw bytes
//!   with escapes `\r \n \t \\ \xHH`, nothing appended. Consecutive client
//!   lines are sent together (pipelined).
//! - `D: answer` — the answer to the next decision (FIFO); decisions with no
//!   queued answer are accepted. `accept`, `reject CODE X.Y.Z text`,
//!   `defer CODE X.Y.Z text`, `disconnect CODE X.Y.Z text`,
//!   `reply CODE [X.Y.Z] text` (via `decide_with`).
//! - `S: line` — the next line the server wrote must be exactly this.
//! - `E: summary` — an event with this summary occurred, after the previously
//!   matched one (events in between are allowed).
//! - `B: escaped` — the body of the last completed message.
//! - `T: tls` calls `starttls_complete`; `T: timeout` calls `handle_timeout`.
//! - `X: closed` / `X: open` — the session's state.
//!
//! Nothing is decided before the first S/E/B/T/X line, so client lines at
//! the top arrive before the greeting (and `D:` lines there answer Connect).
//! Client bytes are sent when the next S/E/B/T/X line (or the end) is
//! reached; by then every reply already written must have been matched by
//! `S:` lines, so no unexpected reply can go unnoticed.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;

use portcullis_core::{Body, Client, Reply, Verdict};
use portcullis_smtp::{AuthMechanisms, Event, LongLines, Session, SessionConfig};

#[derive(Debug, Clone, Copy)]
enum Split {
    Whole,
    Bytes,
    Pseudo(u64),
}

struct Runner {
    session: Session,
    split: Split,
    answers: VecDeque<Answer>,
    events: Vec<String>,
    matched_events: usize,
    output: Vec<u8>,
    out_pos: usize,
    body: Vec<u8>,
    last_body: Option<Vec<u8>>,
    pending_client: Vec<u8>,
    file: String,
}

#[derive(Debug, Clone)]
enum Answer {
    Verdict(Verdict),
    Reply(Reply),
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// `CODE [X.Y.Z] text`
fn parse_reply(s: &str) -> Reply {
    let (code, rest) = s.split_once(' ').unwrap_or((s, ""));
    let code: u16 = code.parse().expect("reply code");
    let mut parts = rest.splitn(2, ' ');
    let first = parts.next().unwrap_or("");
    let enhanced: Vec<u16> = first.split('.').filter_map(|x| x.parse().ok()).collect();
    if enhanced.len() == 3 {
        let text = parts.next().unwrap_or("").to_owned();
        Reply::new(code, (enhanced[0] as u8, enhanced[1], enhanced[2]), text)
    } else {
        Reply::plain(code, rest.to_owned())
    }
}

fn parse_answer(s: &str) -> Answer {
    let (kind, rest) = s.split_once(' ').unwrap_or((s, ""));
    match kind {
        "accept" => Answer::Verdict(Verdict::Accept),
        "reject" => Answer::Verdict(Verdict::Reject(parse_reply(rest))),
        "defer" => Answer::Verdict(Verdict::Defer(parse_reply(rest))),
        "disconnect" => Answer::Verdict(Verdict::Disconnect(parse_reply(rest))),
        "reply" => Answer::Reply(parse_reply(rest)),
        other => panic!("unknown answer {other}"),
    }
}

fn summarize(event: &Event) -> String {
    match event {
        Event::Connect { .. } => "Connect".into(),
        Event::Helo { name, esmtp, .. } => {
            format!("{} {name}", if *esmtp { "Ehlo" } else { "Helo" })
        }
        Event::StartTls => "StartTls".into(),
        Event::Auth {
            mechanism,
            credentials,
            ..
        } => {
            let mut s = format!("Auth {}", mechanism.name());
            if let Some(z) = credentials.authzid() {
                write!(s, " authzid={z}").unwrap();
            }
            write!(
                s,
                " authcid={} password={}",
                credentials.authcid(),
                credentials.password()
            )
            .unwrap();
            s
        }
        Event::MailFrom {
            reverse_path,
            params,
            ..
        } => {
            let mut s = format!("MailFrom {reverse_path}");
            if let Some(n) = params.size {
                write!(s, " size={n}").unwrap();
            }
            match params.body {
                Body::SevenBit => {}
                Body::EightBitMime => s.push_str(" body=8BITMIME"),
                Body::BinaryMime => s.push_str(" body=BINARYMIME"),
                _ => s.push_str(" body=?"),
            }
            if params.smtputf8 {
                s.push_str(" smtputf8");
            }
            if let Some(r) = params.ret {
                write!(s, " ret={r:?}").unwrap();
            }
            if let Some(e) = &params.envid {
                write!(s, " envid={e}").unwrap();
            }
            if let Some(a) = &params.auth {
                write!(s, " auth={a}").unwrap();
            }
            if params.requiretls {
                s.push_str(" requiretls");
            }
            s
        }
        Event::RcptTo { recipient, .. } => {
            let mut s = format!("RcptTo {}", recipient.path);
            if let Some(n) = recipient.notify {
                let mut w = Vec::new();
                if n.success {
                    w.push("SUCCESS");
                }
                if n.failure {
                    w.push("FAILURE");
                }
                if n.delay {
                    w.push("DELAY");
                }
                if w.is_empty() {
                    w.push("NEVER");
                }
                write!(s, " notify={}", w.join(",")).unwrap();
            }
            if let Some((t, a)) = &recipient.orcpt {
                write!(s, " orcpt={t};{a}").unwrap();
            }
            s
        }
        Event::DataStart { chunking, .. } => {
            if *chunking {
                "BdatStart".into()
            } else {
                "DataStart".into()
            }
        }
        Event::MessageChunk(c) => format!("MessageChunk {}", c.len()),
        Event::MessageComplete { size, .. } => format!("MessageComplete {size}"),
        Event::MessageAborted { reply } => format!("MessageAborted {}", reply.code()),
        Event::Reset => "Reset".into(),
        Event::Quit => "Quit".into(),
        other => format!("{other:?}"),
    }
}

impl Runner {
    fn pump(&mut self) {
        while let Some(event) = self.session.poll_event() {
            let summary = summarize(&event);
            if !summary.starts_with("MessageChunk") {
                self.events.push(summary);
            }
            let decision = match event {
                Event::Connect { decision }
                | Event::Helo { decision, .. }
                | Event::Auth { decision, .. }
                | Event::MailFrom { decision, .. }
                | Event::RcptTo { decision, .. }
                | Event::DataStart { decision, .. } => Some(decision),
                Event::MessageComplete { decision, .. } => {
                    self.last_body = Some(std::mem::take(&mut self.body));
                    Some(decision)
                }
                Event::MessageChunk(c) => {
                    self.body.extend_from_slice(&c);
                    None
                }
                Event::MessageAborted { .. } | Event::Reset => {
                    self.body.clear();
                    None
                }
                _ => None,
            };
            if let Some(d) = decision {
                let r = match self.answers.pop_front() {
                    None => self.session.decide(d, Verdict::Accept),
                    Some(Answer::Verdict(v)) => self.session.decide(d, v),
                    Some(Answer::Reply(r)) => self.session.decide_with(d, r),
                };
                r.unwrap();
            }
            self.session.take_output(&mut self.output);
        }
        self.session.take_output(&mut self.output);
    }

    fn flush(&mut self, line_no: usize) {
        if self.pending_client.is_empty() {
            self.pump();
            return;
        }
        assert_eq!(
            self.out_pos,
            self.output.len(),
            "{}:{line_no}: unmatched server output before client data: {:?}",
            self.file,
            String::from_utf8_lossy(&self.output[self.out_pos..])
        );
        let data = std::mem::take(&mut self.pending_client);
        match self.split {
            Split::Whole => {
                self.session.receive(&data);
                self.pump();
            }
            Split::Bytes => {
                for b in &data {
                    self.session.receive(std::slice::from_ref(b));
                    self.pump();
                }
            }
            Split::Pseudo(seed) => {
                let mut x = seed ^ data.len() as u64;
                let mut rest = &data[..];
                while !rest.is_empty() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let n = (x % 23 + 1) as usize;
                    let (a, b) = rest.split_at(n.min(rest.len()));
                    self.session.receive(a);
                    self.pump();
                    rest = b;
                }
            }
        }
    }

    fn next_server_line(&mut self) -> Option<String> {
        let rest = &self.output[self.out_pos..];
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.out_pos += end + 2;
        Some(line)
    }
}

fn configure(config: &mut SessionConfig, client: &mut Client, directive: &str) {
    let mut words = directive.split_whitespace();
    let key = words.next().unwrap();
    let num = |w: Option<&str>| -> u64 { w.unwrap().parse().unwrap() };
    match key {
        "hostname" => config.hostname = words.next().unwrap().to_owned(),
        "starttls" => config.extensions.starttls = true,
        "tls" => client.tls = true,
        "auth" => {
            let mut m = AuthMechanisms::NONE;
            for w in words {
                match w {
                    "plain" => m.plain = true,
                    "login" => m.login = true,
                    _ => panic!("mechanism {w}"),
                }
            }
            config.extensions.auth = m;
        }
        "auth_without_tls" => config.auth_without_tls = true,
        "no_greeting_required" => config.require_greeting = false,
        "bare_lf_in_commands" => config.bare_lf_in_commands = true,
        "max_recipients" => config.max_recipients = num(words.next()) as usize,
        "max_message_size" => config.max_message_size = num(words.next()),
        "max_bad_commands" => config.max_bad_commands = num(words.next()) as u32,
        "max_text_line" => config.max_text_line = num(words.next()) as usize,
        "long_lines" => config.long_lines = LongLines::Accept,
        "binarymime" => config.extensions.binary_mime = true,
        "requiretls" => config.extensions.requiretls = true,
        "no" => match words.next().unwrap() {
            "pipelining" => config.extensions.pipelining = false,
            "size" => config.extensions.size = false,
            "8bitmime" => config.extensions.eight_bit_mime = false,
            "smtputf8" => config.extensions.smtputf8 = false,
            "chunking" => config.extensions.chunking = false,
            "dsn" => config.extensions.dsn = false,
            "enhancedstatuscodes" => config.extensions.enhanced_status_codes = false,
            other => panic!("unknown extension {other}"),
        },
        other => panic!("unknown option {other}"),
    }
}

fn run(path: &Path, text: &str, split: Split) {
    let file = format!("{} ({split:?})", path.display());
    let mut config = SessionConfig::new("mx.example");
    let mut client = Client::new("192.0.2.7:40000".parse().unwrap());
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("! ") {
            configure(&mut config, &mut client, d);
        }
    }
    let mut r = Runner {
        session: Session::new(config, client),
        split,
        answers: VecDeque::new(),
        events: Vec::new(),
        matched_events: 0,
        output: Vec::new(),
        out_pos: 0,
        body: Vec::new(),
        last_body: None,
        pending_client: Vec::new(),
        file: file.clone(),
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with("! ") {
            continue;
        }
        let (tag, arg) = line.split_at(2.min(line.len()));
        let arg = arg.strip_prefix(' ').unwrap_or(arg);
        match tag {
            "C:" => {
                r.pending_client.extend_from_slice(arg.as_bytes());
                r.pending_client.extend_from_slice(b"\r\n");
            }
            "R:" => r.pending_client.extend_from_slice(&unescape(arg)),
            "D:" => r.answers.push_back(parse_answer(arg)),
            "S:" => {
                r.flush(n);
                let got = r.next_server_line();
                assert_eq!(got.as_deref(), Some(arg), "{file}:{n}: server line");
            }
            "E:" => {
                r.flush(n);
                let found = r.events[r.matched_events..].iter().position(|e| e == arg);
                match found {
                    Some(k) => r.matched_events += k + 1,
                    None => panic!(
                        "{file}:{n}: event {arg:?} not found after #{}; events: {:#?}",
                        r.matched_events, r.events
                    ),
                }
            }
            "B:" => {
                r.flush(n);
                assert_eq!(
                    r.last_body.as_deref().map(String::from_utf8_lossy),
                    Some(String::from_utf8_lossy(&unescape(arg))),
                    "{file}:{n}: message body"
                );
            }
            "T:" => {
                r.flush(n);
                match arg {
                    "tls" => r.session.starttls_complete().unwrap(),
                    "timeout" => r.session.handle_timeout(),
                    other => panic!("{file}:{n}: unknown T: {other}"),
                }
                r.pump();
            }
            "X:" => {
                r.flush(n);
                match arg {
                    "closed" => assert!(r.session.is_closed(), "{file}:{n}: not closed"),
                    "open" => assert!(!r.session.is_closed(), "{file}:{n}: closed"),
                    other => panic!("{file}:{n}: unknown X: {other}"),
                }
            }
            other => panic!("{file}:{n}: unknown directive {other:?}"),
        }
    }
    r.flush(usize::MAX);
    assert_eq!(
        r.out_pos,
        r.output.len(),
        "{file}: unmatched server output at end: {:?}",
        String::from_utf8_lossy(&r.output[r.out_pos..])
    );
    assert!(r.answers.is_empty(), "{file}: unused D: answers");
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 60, "only {} transcripts", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        for split in [
            Split::Whole,
            Split::Bytes,
            Split::Pseudo(0x9E37_79B9_7F4A_7C15),
        ] {
            let result = std::panic::catch_unwind(|| run(path, &text, split));
            if let Err(e) = result {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(msg);
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} transcripts failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
