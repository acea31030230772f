//! Harness for the relay's end-to-end tests: start the built binary on
//! ephemeral loopback ports with a temporary data directory, a sink SMTP
//! server that records what the relay delivers, and a raw SMTP client.
//!
//! Every wait is bounded; a test that cannot finish fails instead of hanging.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::disallowed_methods
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis-relay");

/// Whether an external tool is installed; prints a visible skip line if not.
pub fn have_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name} || test -x /usr/sbin/{name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        println!("skipping: {name} is not installed (.ci/run installs it)");
    }
    found
}

/// `portcullis-relay --check-config --config <config>`: its exit status
/// and standard error.
pub fn check_config(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["--check-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether the tests run as root (Postfix's master must start as root;
/// `smtp-sink` must drop privileges when it does).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The path of a tool that may live in /usr/sbin (smtp-sink, smtp-source).
pub fn tool_path(name: &str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    if Path::new(&sbin).exists() {
        sbin
    } else {
        name.to_owned()
    }
}

/// A running relay.
pub struct Relay {
    pub child: Child,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub mx: SocketAddr,
    pub submission: SocketAddr,
    pub submissions: Option<SocketAddr>,
    pub startup_line: String,
    pub log: PathBuf,
}

/// A test account: login and password, and the accounts file line for it.
pub const USER: &str = "alice@localhost";
pub const PASSWORD: &str = "correct horse battery staple";

/// The argon2 hash of `password`, made by the relay's own `--hash-password`.
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "--hash-password failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Write an accounts file with [`USER`] into `dir`; returns its path.
pub fn write_accounts(dir: &Path) -> PathBuf {
    // argon2 is slow in a debug build: hash once per test binary.
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let path = dir.join("accounts.toml");
    let hash = HASH.get_or_init(|| hash_password(PASSWORD));
    std::fs::write(
        &path,
        format!("[[user]]\naddress = \"{USER}\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    path
}

impl Relay {
    /// Start with `extra` TOML appended to a base config that listens on
    /// port 0 everywhere, in a fresh temporary directory.
    pub fn start(extra: &str) -> (Relay, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let relay = Relay::start_in(tmp.path(), extra);
        (relay, tmp)
    }

    /// Start in `dir` (reusing its data directory: a restart).
    pub fn start_in(dir: &Path, extra: &str) -> Relay {
        let config = dir.join("relay.toml");
        let accounts = dir.join("accounts.toml");
        if !accounts.exists() {
            write_accounts(dir);
        }
        let mut base = "[server]\nhostname = \"relay.test\"\nlog = \"info\"\n\
             [mx]\nlisten = [\"127.0.0.1:0\"]\n\
             [submission]\nlisten = [\"127.0.0.1:0\"]\n"
            .to_owned();
        // The test account file, unless the test configures accounts itself.
        if !extra.contains("[accounts]") {
            base.push_str(&format!("[accounts]\nfile = \"{}\"\n", accounts.display()));
        }
        std::fs::write(&config, format!("{base}{extra}")).unwrap();
        let data = dir.join("data");
        let log = unique_log(dir);
        let logfile = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env("RUST_LOG", "portcullis_relay=debug,info")
            .stdout(Stdio::piped())
            .stderr(logfile)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "relay did not print its startup line; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let field = |name: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim_end_matches(';').parse().ok())
        };
        let mx = field("mx").unwrap_or_else(|| panic!("no mx= in {line:?}"));
        let submission =
            field("submission").unwrap_or_else(|| panic!("no submission= in {line:?}"));
        let submissions = field("submissions");
        Relay {
            child,
            dir: dir.to_owned(),
            data,
            config,
            mx,
            submission,
            submissions,
            startup_line: line,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; wait up to `within` for a clean exit. Returns the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGHUP (reload the configuration file).
    pub fn hup(&self) {
        send_hup(self.pid());
    }

    /// Wait (up to 15 s) until the log holds `needle` at least `n` times;
    /// fails the test with the log otherwise.
    pub fn wait_log(&self, needle: &str, n: usize) {
        wait_in_log(&self.log, needle, n);
    }

    /// Messages in a local Maildir `new/` folder.
    pub fn maildir(&self, domain: &str, local: &str) -> Vec<Vec<u8>> {
        let dir = self
            .data
            .join("mailboxes")
            .join(domain)
            .join(local)
            .join("new");
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                out.push(std::fs::read(p).unwrap());
            }
        }
        out
    }

    /// Wait until `domain/local` holds at least `n` messages.
    pub fn wait_maildir(
        &self,
        domain: &str,
        local: &str,
        n: usize,
        within: Duration,
    ) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let m = self.maildir(domain, local);
            if m.len() >= n || start.elapsed() > within {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn unique_log(dir: &Path) -> PathBuf {
    for i in 0.. {
        let p = dir.join(format!("relay-{i}.log"));
        if !p.exists() {
            return p;
        }
    }
    unreachable!()
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message a sink received.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

/// A minimal SMTP server that accepts everything (but recipients whose
/// local part starts with `reject`) and records it
/// (dot-unstuffed, exactly the octets between DATA's 354 and the final dot).
pub struct Sink {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<SinkMessage>>>,
}

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = sink_session(conn, &m);
                });
            }
        });
        Sink { addr, messages }
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<SinkMessage> {
        let start = Instant::now();
        loop {
            let got = self.messages.lock().unwrap().clone();
            if got.len() >= n || start.elapsed() > within {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn sink_session(conn: TcpStream, messages: &Mutex<Vec<SinkMessage>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(
                b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n",
            )?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 sink.test\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            // The path only, without ESMTP parameters (SIZE=, BODY=).
            from = text[10..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            rcpts.clear();
            w.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = text[8..].split_whitespace().next().unwrap_or("").to_owned();
            // Recipients named "reject…" do not exist here (for bounce tests).
            if rcpt.to_ascii_lowercase().starts_with("<reject") {
                w.write_all(b"550 5.1.1 no such user here\r\n")?;
            } else {
                rcpts.push(rcpt);
                w.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                // RFC 5321 §4.5.2: remove one leading dot.
                let l = if line.starts_with(b".") {
                    &line[1..]
                } else {
                    &line[..]
                };
                data.extend_from_slice(l);
            }
            messages.lock().unwrap().push(SinkMessage {
                from: from.clone(),
                rcpts: rcpts.clone(),
                data,
            });
            w.write_all(b"250 2.0.0 queued in sink\r\n")?;
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 2.0.0 ok\r\n")?;
        } else {
            w.write_all(b"502 5.5.1 not here\r\n")?;
        }
    }
}

/// A plain-text SMTP client for scripted exchanges.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// One reply: code and the text of every line.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code of the first line, e.g. "5.7.1".
    pub fn enhanced(&self) -> String {
        self.lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("")
            .to_owned()
    }
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Connect and read the greeting.
    pub fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        let g = c.reply().unwrap();
        assert_eq!(g.code, 220, "greeting {g:?}");
        c
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Send a command line (CRLF added) and read the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.reply()
            .unwrap_or_else(|| panic!("connection closed after {line:?}"))
    }

    /// Read one (possibly multi-line) reply; `None` on EOF.
    pub fn reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            if line.len() < 3 {
                return None;
            }
            let code: u16 = line[..3].parse().ok()?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    /// Whether the server closed the connection (reads EOF within `within`).
    pub fn closed(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// One message on `addr`: `EHLO client.test`, `MAIL FROM`, one `RCPT TO`,
/// then [`message`]`(id, from, to, body)`. The final reply code, or that
/// of `MAIL` or `RCPT` when it refused.
pub fn send_message(addr: SocketAddr, id: &str, from: &str, to: &str, body: &str) -> u16 {
    let mut c = Client::greeted(addr);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if r.code != 250 {
        return r.code;
    }
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    if r.code != 250 {
        return r.code;
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(&message(id, from, to, body));
    c.send_raw(b".\r\n");
    let r = c.reply().unwrap();
    let _ = c.cmd("QUIT");
    r.code
}

/// `EHLO client.test`, `MAIL FROM` (which must be accepted), one `RCPT
/// TO`: its reply.
pub fn rcpt(addr: SocketAddr, from: &str, to: &str) -> Reply {
    let mut c = Client::greeted(addr);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    let _ = c.cmd("QUIT");
    r
}

/// Run a Python 3 `script` (`python3 -c`) with `sys.argv[1:]` = the
/// server's IP and port, then `args`; fails the test (with its output) if
/// the script fails. Its standard output.
pub fn python(script: &str, server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(server.ip().to_string())
        .arg(server.port().to_string())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Poll `f` every 100 ms until it holds or `within` has passed; whether it
/// held.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// `portcullis-relay policyd` on an ephemeral loopback port; killed and
/// reaped when dropped, however the test ends.
pub struct Policyd {
    pub child: Child,
    pub addr: SocketAddr,
    /// `portcullis-relay policyd listening: ADDR; …`
    pub startup_line: String,
    /// Its standard error (the log, at `info`), next to `config`.
    pub log: PathBuf,
}

impl Policyd {
    /// Start with the configuration file `config` and the data directory
    /// `data`; `--greylist-store memory` unless the file's `[greylist]
    /// store` says otherwise.
    pub fn start(config: &Path, data: &Path) -> Policyd {
        let dir = config.parent().unwrap_or(Path::new("."));
        let log = (0..)
            .map(|i| dir.join(format!("policyd-{i}.log")))
            .find(|p| !p.exists())
            .unwrap();
        let logfile = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args([
                "policyd",
                "--listen",
                "127.0.0.1:0",
                "--greylist-store",
                "memory",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(logfile)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let addr = read
            .ok()
            .and_then(|_| line.split("listening: ").nth(1))
            .and_then(|r| r.split(';').next())
            .and_then(|a| a.trim().parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no policyd startup line: {line:?}");
        };
        Policyd {
            child,
            addr,
            startup_line: line,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGHUP (reload the configuration file).
    pub fn hup(&self) {
        send_hup(self.child.id());
    }

    /// Wait (up to 15 s) until the log holds `needle` at least `n` times;
    /// fails the test with the log otherwise.
    pub fn wait_log(&self, needle: &str, n: usize) {
        wait_in_log(&self.log, needle, n);
    }
}

/// Send SIGHUP to `pid` (reload the configuration file).
fn send_hup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP failed");
}

/// Wait (up to 15 s) until the file `log` holds `needle` at least `n`
/// times; fails the test with the log otherwise.
fn wait_in_log(log: &Path, needle: &str, n: usize) {
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if text().matches(needle).count() >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{needle:?} not logged {n} time(s):\n{}", text());
}

impl Drop for Policyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Postfix policy delegation request at `RCPT` (client address and
/// verified name, sender, recipient); the `action=` line of the answer.
pub fn policy_ask(addr: SocketAddr, client: (&str, &str), sender: &str, recipient: &str) -> String {
    PolicyConn::connect(addr).ask(client, sender, recipient)
}

/// One connection to a policy server, kept open across requests (as
/// Postfix's smtpd keeps its own).
pub struct PolicyConn {
    reader: BufReader<TcpStream>,
}

impl PolicyConn {
    pub fn connect(addr: SocketAddr) -> PolicyConn {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        PolicyConn {
            reader: BufReader::new(tcp),
        }
    }

    /// As [`policy_ask`], on this connection: the `action=` line (the
    /// blank line ending the answer is read too).
    pub fn ask(&mut self, client: (&str, &str), sender: &str, recipient: &str) -> String {
        self.ask_as(client, "", sender, recipient)
    }

    /// As [`ask`](Self::ask), for a client that authenticated to Postfix
    /// as `sasl_username` (empty: not authenticated).
    pub fn ask_as(
        &mut self,
        client: (&str, &str),
        sasl_username: &str,
        sender: &str,
        recipient: &str,
    ) -> String {
        let (address, name) = client;
        write!(
            self.reader.get_mut(),
            "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
             client_address={address}\nclient_name={name}\nhelo_name=client.test\n\
             sasl_username={sasl_username}\nsender={sender}\nrecipient={recipient}\n\n"
        )
        .unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let mut blank = String::new();
        self.reader.read_line(&mut blank).unwrap();
        assert_eq!(
            blank, "\n",
            "answer not ended by a blank line after {line:?}"
        );
        line.trim_end().to_owned()
    }
}

/// A message with a unique Message-ID, CRLF line ends.
pub fn message(id: &str, from: &str, to: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: test {id}\r\nMessage-ID: <{id}@test.portcullis>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The message as the next hop sees it, without the headers the relay adds
/// on top (`Received:`, and `Return-Path:`/`Delivered-To:` for Maildir).
pub fn strip_added_headers(mut msg: &[u8]) -> (&[u8], Vec<String>) {
    let mut added = Vec::new();
    loop {
        let is_added = [&b"Received:"[..], b"Return-Path:", b"Delivered-To:"]
            .iter()
            .any(|h| msg.len() >= h.len() && msg[..h.len()].eq_ignore_ascii_case(h));
        if !is_added {
            return (msg, added);
        }
        // The field and its folded continuation lines.
        let mut end = 0;
        loop {
            let nl = msg[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(msg.len(), |p| end + p + 1);
            end = nl;
            if end >= msg.len() || !(msg[end] == b' ' || msg[end] == b'\t') {
                break;
            }
        }
        added.push(String::from_utf8_lossy(&msg[..end]).into_owned());
        msg = &msg[end..];
    }
}

/// The Message-ID header value of a message.
pub fn message_id(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .map(|l| l[11..].trim().to_owned())
}

/// One HTTP request (the admin or metrics endpoint); returns the status
/// and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A stand-in for clamd's `INSTREAM` (clamd(8)): reads the framed stream
/// and calls anything containing `QUARANTINE-ME` a virus.
pub fn fake_clamd() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut command = [0u8; 10];
            if conn.read_exact(&mut command).is_err() || &command != b"zINSTREAM\0" {
                continue;
            }
            let mut data = Vec::new();
            loop {
                let mut len = [0u8; 4];
                if conn.read_exact(&mut len).is_err() {
                    break;
                }
                let len = u32::from_be_bytes(len) as usize;
                if len == 0 {
                    break;
                }
                let mut chunk = vec![0u8; len];
                if conn.read_exact(&mut chunk).is_err() {
                    break;
                }
                data.extend_from_slice(&chunk);
            }
            let found = data.windows(13).any(|w| w == b"QUARANTINE-ME");
            let reply: &[u8] = if found {
                b"stream: Fake-Test-Virus FOUND\0"
            } else {
                b"stream: OK\0"
            };
            let _ = conn.write_all(reply);
        }
    });
    addr
}

/// `GET /metrics` on `addr`.
pub fn scrape(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(tcp, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of one sample line (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// `name=ADDR` from a startup line.
pub fn endpoint(line: &str, name: &str) -> SocketAddr {
    line.split([' ', ';', '\n'])
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// Postfix's `smtp-sink` on a free loopback port, one dump file per
/// transaction in `dump` (its `X-Mail-Args:`/`X-Rcpt-Args:` records show
/// the ESMTP parameters it got); plaintext only (it has no STARTTLS);
/// killed and reaped when dropped.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
}

impl SmtpSink {
    /// `args` before the address (`-N`: do not announce DSN).
    pub fn start(dump: &Path, args: &[&str]) -> SmtpSink {
        // smtp-sink drops privileges to -u when run as root; let it write.
        Command::new("chmod").arg("777").arg(dump).status().unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut sink = Command::new(tool_path("smtp-sink"));
        if is_root() {
            sink.args(["-u", "nobody"]);
        }
        let child = sink
            .args(args)
            .arg("-d")
            .arg(format!("{}/%M.", dump.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        SmtpSink { child, port }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files in an `smtp-sink` dump directory (one per transaction).
pub fn dump_files(dump: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dump)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// A private CA (`ca.pem`) and a next-hop certificate it signed for
/// `127.0.0.1` and `localhost` (`hop.pem`, `hop.key`), written into
/// `dir/name`, which is returned.
pub fn private_ca(dir: &Path, name: &str) -> PathBuf {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let hop = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(out.join("hop.pem"), hop.pem()).unwrap();
    std::fs::write(out.join("hop.key"), key.serialize_pem()).unwrap();
    out
}

/// Wait for the one message `sender` relayed to `rcpt@sink.test` on the
/// next-hop relay `hop`; check its Message-ID (`<id@test.portcullis>`)
/// and that it came over TLS (`with ESMTPS` in the added Received).
pub fn expect_one_over_tls(hop: &Relay, sender: &Relay, id: &str) {
    let got = hop.wait_maildir("sink.test", "rcpt", 1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "log:\n{}", sender.log_text());
    assert_eq!(
        message_id(strip_added_headers(&got[0]).0),
        Some(format!("<{id}@test.portcullis>"))
    );
    assert!(
        String::from_utf8_lossy(&got[0]).contains(" with ESMTPS"),
        "not over TLS"
    );
}
