//! The command-parsing workloads of the `commands` bench group, shared with
//! the `commands_profile` example (instruction counts under callgrind), so
//! both measure the same code.

use std::hint::black_box;

use portcullis_core::{Client, ForwardPath, ParseOptions, ReversePath, Verdict};
use portcullis_smtp::{Command, Event, Extensions, Session, SessionConfig};

/// What a submission client sends for one message, repeated.
pub(crate) fn command_mix() -> Vec<u8> {
    let one: &[u8] = b"EHLO client.example.org\r\n\
MAIL FROM:<sender.name@example.org> SIZE=48213 BODY=8BITMIME\r\n\
RCPT TO:<first.recipient@example.net>\r\n\
RCPT TO:<second@mail.example.com> NOTIFY=FAILURE,DELAY\r\n\
RCPT TO:<third-person@example.co.uk>\r\n\
RSET\r\n\
NOOP\r\n\
MAIL FROM:<> BODY=7BIT\r\n\
RCPT TO:<postmaster@example.net>\r\n\
RSET\r\n\
QUIT\r\n";
    one.repeat(50)
}

/// Lines with their CRLF, split with memchr as the session does.
pub(crate) fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', buf).map(move |end| {
        let line = &buf[start..=end];
        start = end + 1;
        line
    })
}

/// Parse every line of `input` (its CRLF removed) as a command and add up
/// what `work` makes of each one parsed: the loop our command benches share.
fn each_command(input: &[u8], mut work: impl FnMut(Command<'_>) -> usize) -> usize {
    let mut n = 0;
    for line in lines(input) {
        if let Ok(cmd) = portcullis_smtp::parse_command(black_box(&line[..line.len() - 2])) {
            n += work(cmd);
        }
    }
    n
}

/// The headline: what the session checks before it allocates anything.
/// The command parsed; MAIL's parameters checked and interpreted against
/// the advertised extensions (`EsmtpParams::mail_params`: SIZE as a
/// number, BODY's value, duplicates) and its path validated in place with
/// the options they imply (`Path::reverse_path`: the full RFC 5321 path
/// grammar and limits, the domain as LDH labels, no allocation); RCPT's
/// path likewise (`Path::forward_path`) and its parameters (`rcpt_params`:
/// NOTIFY's list).
pub(crate) fn validated(input: &[u8]) -> usize {
    let ext = Extensions::default();
    each_command(input, |cmd| match cmd {
        Command::Mail { path, params } => {
            let p = params.mail_params(&ext, false).unwrap();
            let opts = ParseOptions::ascii().with_utf8(p.smtputf8);
            let path = path.reverse_path(opts).unwrap();
            let n = path.address().map_or(0, |a| a.domain().as_str().len());
            n + p.size.map_or(0, |s| s as usize)
        }
        Command::Rcpt { path, params } => {
            let path = path.forward_path(ParseOptions::ascii()).unwrap();
            let p = params.rcpt_params(&ext).unwrap();
            let n = path.address().map_or(0, |a| a.domain().as_str().len());
            n + usize::from(p.notify.is_some())
        }
        _ => 1,
    })
}

/// As [`validated`], with the paths then copied into owned core types
/// (`ReversePath`/`ForwardPath`: the local part and the domain as
/// Strings), as the session does for the event it hands on once they are
/// valid.
pub(crate) fn owned_paths(input: &[u8]) -> usize {
    let ext = Extensions::default();
    each_command(input, |cmd| match cmd {
        Command::Mail { path, params } => {
            let p = params.mail_params(&ext, false).unwrap();
            let opts = ParseOptions::ascii().with_utf8(p.smtputf8);
            let path: ReversePath = path.reverse_path(opts).unwrap().into_owned();
            let n = path.address().map_or(0, |a| a.domain().ascii().len());
            n + p.size.map_or(0, |s| s as usize)
        }
        Command::Rcpt { path, params } => {
            let path: ForwardPath = path
                .forward_path(ParseOptions::ascii())
                .unwrap()
                .into_owned();
            let p = params.rcpt_params(&ext).unwrap();
            let n = path.address().map_or(0, |a| a.domain().ascii().len());
            n + usize::from(p.notify.is_some())
        }
        _ => 1,
    })
}

/// `parse_command` alone: the path's end found (and the usual form of path
/// checked on the way), the parameters delimited but not interpreted. Not
/// comparable with smtp-proto.
pub(crate) fn path_unvalidated(input: &[u8]) -> usize {
    each_command(input, |cmd| match cmd {
        Command::Mail { path, params } | Command::Rcpt { path, params } => {
            path.as_str().len() + params.map(|p| p.map_or(0, |(k, _)| k.len())).sum::<usize>()
        }
        _ => 1,
    })
}

/// smtp-proto's `Request::parse`, one line at a time, split the same way
/// as ours, so an error on one line cannot make it skip the rest.
pub(crate) fn smtp_proto(input: &[u8]) -> usize {
    let mut n = 0usize;
    for line in lines(black_box(input)) {
        if let Ok(r) = smtp_proto::Request::parse(&mut line.iter()) {
            n += r.name().len();
        }
    }
    n
}

/// The whole session over the mix, one message at a time (the mix repeats
/// QUIT): parsing, validation, path parsing, events, decisions and reply
/// encoding. Returns the octets of the last replies.
pub(crate) fn session(input: &[u8], client: &Client, out: &mut Vec<u8>) -> usize {
    let open = || {
        let mut s = Session::new(SessionConfig::new("mx.example"), client.clone());
        if let Some(Event::Connect { decision }) = s.poll_event() {
            s.decide(decision, Verdict::Accept).unwrap();
        }
        s
    };
    let mut s = open();
    for chunk in input.chunks(input.len() / 50) {
        if s.is_closed() {
            s = open();
        }
        s.receive(black_box(chunk));
        while let Some(e) = s.poll_event() {
            match e {
                Event::Helo { decision, .. }
                | Event::MailFrom { decision, .. }
                | Event::RcptTo { decision, .. } => s.decide(decision, Verdict::Accept).unwrap(),
                _ => {}
            }
        }
        out.clear();
        s.take_output(out);
    }
    out.len()
}
