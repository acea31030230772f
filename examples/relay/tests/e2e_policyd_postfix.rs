//! `portcullis-relay policyd` behind a real Postfix (Debian's package): a
//! private Postfix instance (own config, queue and data directories in a
//! temp dir, smtpd on a free loopback port) asks the policy server through
//! `check_policy_service`, and an SMTP client sees the greylist defer, the
//! pass once the (1 s) delay is over, a BATV bounce refusal, and a rate
//! limit from `[policy]`.
//!
//! Skips with a message when Postfix is not installed or the test is not
//! run as root (Postfix's master must start as root to drop to `postfix`).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POSTFIX: &str = "/usr/sbin/postfix";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills what it holds when the test ends, however it ends.
struct Guard {
    /// Killed after Postfix is stopped (fields drop after `drop`).
    _policyd: common::Policyd,
    postfix_etc: Option<std::path::PathBuf>,
    postfix: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(etc) = &self.postfix_etc {
            let _ = Command::new(POSTFIX)
                .arg("-c")
                .arg(etc)
                .arg("stop")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(p) = &mut self.postfix {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Start `portcullis-relay policyd` on a free port; returns it and the port.
fn start_policyd(dir: &Path, config: &str) -> (common::Policyd, u16) {
    let conf = dir.join("relay.toml");
    std::fs::write(&conf, config).unwrap();
    let policyd = common::Policyd::start(&conf, &dir.join("data"));
    let port = policyd.addr.port();
    (policyd, port)
}

fn write_postfix_config(root: &Path, smtpd_port: u16, policy_port: u16) {
    let etc = root.join("etc");
    for d in ["etc", "queue", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // Postfix checks ownership: root owns the queue, `postfix` the data dir.
    let status = Command::new("chown")
        .arg("postfix")
        .arg(root.join("data"))
        .status()
        .unwrap();
    assert!(status.success());
    let r = root.display();
    std::fs::write(
        etc.join("main.cf"),
        format!(
            "compatibility_level = 3.6\n\
             queue_directory = {r}/queue\n\
             data_directory = {r}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = postfix-test.example\n\
             mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             relay_domains = example.net\n\
             default_transport = discard\n\
             relay_transport = discard\n\
             smtpd_relay_restrictions = reject_unauth_destination\n\
             smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:{policy_port}\n\
             maillog_file_prefixes = {r}\n\
             maillog_file = {r}/maillog\n"
        ),
    )
    .unwrap();
    std::fs::write(
        etc.join("master.cf"),
        format!(
            "127.0.0.1:{smtpd_port} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        ),
    )
    .unwrap();
}

/// A minimal SMTP client: one reply per command, multi-line aware.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn connect(port: u16) -> Smtp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Smtp {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        c
    }

    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all.trim_end().to_owned();
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

/// One transaction up to RCPT (and through DATA if RCPT is accepted);
/// returns the RCPT reply.
fn attempt(port: u16, from: &str, to: &str) -> String {
    let mut c = Smtp::connect(port);
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    let mail = c.cmd(&format!("MAIL FROM:<{from}>"));
    assert!(mail.starts_with("250"), "{mail}");
    let rcpt = c.cmd(&format!("RCPT TO:<{to}>"));
    if rcpt.starts_with("250") {
        assert!(c.cmd("DATA").starts_with("354"));
        let done = c.cmd("Subject: policyd test\r\n\r\nhello\r\n.");
        assert!(done.starts_with("250"), "{done}");
    }
    let _ = c.cmd("QUIT");
    rcpt
}

fn wait_listening(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "postfix did not start; maillog:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn postfix_asks_policyd_greylist_defers_then_passes_and_rate_limit_applies() {
    if !Path::new(POSTFIX).exists() {
        eprintln!("skipping: {POSTFIX} not installed (apt-get install postfix)");
        return;
    }
    if !common::is_root() {
        eprintln!("skipping: Postfix's master must be started as root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Postfix wants every parent of its queue directory to be root-owned and
    // not world-writable: a private 0755 directory inside the temp dir.
    let root = tmp.path().join("postfix");
    std::fs::create_dir(&root).unwrap();
    let (policyd, policy_port) = start_policyd(
        tmp.path(),
        &format!(
            "[server]\ndata_dir = \"{}\"\n[greylist]\nenabled = true\ndelay_secs = 1\n\
             [policy]\nmessages_per_hour = 4\n\
             [batv]\ndomains = [\"example.net\"]\nsecret = \"policyd-test-secret-0123456789\"\n",
            tmp.path().join("data").display()
        ),
    );
    let mut guard = Guard {
        _policyd: policyd,
        postfix_etc: None,
        postfix: None,
    };
    let smtpd_port = free_port();
    write_postfix_config(&root, smtpd_port, policy_port);
    let etc = root.join("etc");
    let mut postfix = Command::new(POSTFIX)
        .arg("-c")
        .arg(&etc)
        .arg("start-fg")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = postfix.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
    });
    guard.postfix = Some(postfix);
    guard.postfix_etc = Some(etc);
    let maillog = root.join("maillog");
    wait_listening(smtpd_port, &maillog);

    // 1. A new triplet: Postfix turns our DEFER_IF_PERMIT into its 450.
    let first = attempt(smtpd_port, "alice@example.org", "bob@example.net");
    assert_eq!(
        first,
        "450 4.7.1 <bob@example.net>: Recipient address rejected: Greylisted, please try again in 1 seconds"
    );
    // 2. Postfix's own restrictions still come first: no relaying to other
    //    domains, whatever the policy would say.
    let relay = attempt(smtpd_port, "alice@example.org", "bob@elsewhere.test");
    assert!(relay.starts_with("554 5.7.1"), "{relay}");
    // 3. After the delay, the same triplet passes and the message is queued.
    std::thread::sleep(Duration::from_millis(1100));
    let retry = attempt(smtpd_port, "alice@example.org", "bob@example.net");
    assert!(retry.starts_with("250"), "{retry}");
    // 4. Another sender is a new triplet.
    let other = attempt(smtpd_port, "carol@example.org", "bob@example.net");
    assert!(other.contains("Greylisted"), "{other}");
    // 5. A bounce to an untagged address of a BATV-protected domain is
    //    backscatter: refused with our 5xx.
    let bounce = attempt(smtpd_port, "", "bob@example.net");
    assert!(
        bounce.starts_with(
            "550 5.7.1 <bob@example.net>: Recipient address rejected: Invalid bounce:"
        ),
        "{bounce}"
    );
    // 6. The policy has seen 4 messages from this client this hour (steps 1,
    //    3, 4 and 5; Postfix refused step 2 itself, so it never asked; an
    //    unauthenticated client network is its own account): the
    //    5th is deferred by [policy] before greylisting is asked.
    let limited = attempt(smtpd_port, "dave@example.org", "bob@example.net");
    assert!(
        limited.starts_with("450 4.7.1") && limited.contains("Rate limit exceeded"),
        "{limited}"
    );

    let log = std::fs::read_to_string(&maillog).unwrap_or_default();
    assert!(
        log.contains("from=<alice@example.org>, size="),
        "the passed message was queued:\n{log}"
    );
    assert!(
        !log.contains("problem talking to server"),
        "Postfix had no trouble talking to policyd:\n{log}"
    );
}

/// Read `n` responses (`action=...` + empty line) from `s`.
fn read_answers(s: &mut TcpStream, n: usize) -> Vec<String> {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while text.matches("\n\n").count() < n {
        let got = s.read(&mut buf).unwrap();
        assert!(got > 0, "policyd closed the connection; so far: {text:?}");
        text.push_str(std::str::from_utf8(&buf[..got]).unwrap());
    }
    text.split_terminator("\n\n").map(str::to_owned).collect()
}

/// The socket loop without Postfix: pipelined requests are answered in
/// order, a request split into single bytes is answered once, and a broken
/// request gets the safe answer without losing the connection.
#[test]
fn policyd_socket_pipelining_splits_and_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (policyd, port) = start_policyd(
        tmp.path(),
        &format!(
            "[server]\ndata_dir = \"{}\"\n[greylist]\nenabled = true\n",
            tmp.path().join("data").display()
        ),
    );
    let _guard = Guard {
        _policyd: policyd,
        postfix_etc: None,
        postfix: None,
    };
    let rcpt = |sender: &str, instance: &str| {
        format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n\
             client_name=unknown\nsender={sender}\nrecipient=bob@example.net\ninstance={instance}\n\n"
        )
    };
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let long = "x".repeat(5000);
    let pipelined = format!(
        "{}no equals sign\n\nrecipient={long}\n\n{}",
        rcpt("alice@example.org", "1"),
        rcpt("alice@example.org", "2"),
    );
    s.write_all(pipelined.as_bytes()).unwrap();
    // Real time passes between requests: the seconds left may tick down.
    let greylisted =
        |a: &str| a.starts_with("action=DEFER_IF_PERMIT Greylisted, please try again in ");
    let safe = "action=451 4.3.0 Temporary local problem, please try again later";
    let answers = read_answers(&mut s, 4);
    assert!(greylisted(&answers[0]), "{answers:?}");
    assert_eq!(answers[1], safe, "a line without '='");
    assert_eq!(answers[2], safe, "a line over 2048 bytes");
    assert!(greylisted(&answers[3]), "{answers:?}");
    for b in rcpt("carol@example.org", "3").bytes() {
        s.write_all(&[b]).unwrap();
    }
    let answers = read_answers(&mut s, 1);
    assert!(greylisted(&answers[0]), "{answers:?}");
    // Not Postfix's request type: refused safely, too.
    s.write_all(b"request=junk\n\n").unwrap();
    assert_eq!(read_answers(&mut s, 1), [safe]);
}
