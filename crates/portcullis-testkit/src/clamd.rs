//! A real `clamd` (Debian's `clamav-daemon`) for tests and benches, started
//! with its own configuration in a temporary directory and a one-signature
//! database for the EICAR test string (no freshclam, no network), on a Unix
//! socket and a loopback TCP port.
//!
//! ```no_run
//! use portcullis_testkit::clamd::Clamd;
//!
//! let Some(clamd) = Clamd::start() else {
//!     println!("skipping: clamd is not installed (apt-get install clamav-daemon)");
//!     return;
//! };
//! println!("clamd on {} and {}", clamd.tcp, clamd.socket.display());
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The 68-byte EICAR anti-virus test file (eicar.org).
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The name clamd reports for [`EICAR`] with this database.
pub const EICAR_SIGNATURE: &str = "Portcullis-Test-EICAR";

/// A running clamd; killed when dropped.
pub struct Clamd {
    /// Its loopback TCP address.
    pub tcp: SocketAddr,
    /// Its Unix socket.
    pub socket: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_clamd() -> Option<PathBuf> {
    ["/usr/sbin/clamd", "/usr/bin/clamd", "/usr/local/sbin/clamd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Clamd {
    /// Start clamd and wait (up to 60 s) until it answers `PING`, having
    /// loaded its signatures; `None` when clamd is not installed. Streams
    /// are limited to 1 MiB (`StreamMaxLength`), so a size-limit test has
    /// something to hit.
    pub fn start() -> Option<Clamd> {
        let binary = find_clamd()?;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        // .ndb: Name:TargetType:Offset:HexSignature; target 0 = any file,
        // offset * = anywhere, so it also matches inside a mail body.
        let hex: String = EICAR.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            db.join("portcullis-test.ndb"),
            format!("{EICAR_SIGNATURE}:0:*:{hex}\n"),
        )
        .unwrap();
        let socket = dir.path().join("clamd.sock");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\n\
                 DatabaseDirectory {db}\n\
                 LocalSocket {socket}\n\
                 TCPSocket {port}\n\
                 TCPAddr 127.0.0.1\n\
                 StreamMaxLength 1M\n\
                 LogFile {log}\n\
                 PidFile {pid}\n\
                 TemporaryDirectory {tmp}\n",
                db = db.display(),
                socket = socket.display(),
                log = dir.path().join("clamd.log").display(),
                pid = dir.path().join("clamd.pid").display(),
                tmp = dir.path().display(),
            ),
        )
        .unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let clamd = Clamd {
            tcp: SocketAddr::from(([127, 0, 0, 1], port)),
            socket,
            child,
            dir,
        };
        clamd.wait_ready();
        Some(clamd)
    }

    /// Its log file's contents so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    /// Ready once it answers `PING` (after loading its signatures).
    #[allow(clippy::disallowed_methods)] // a test's own deadline
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if pong(self.tcp) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("clamd did not start within 60 s; log:\n{}", self.log());
    }
}

fn pong(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let mut buf = [0u8; 16];
    s.write_all(b"zPING\0").is_ok()
        && s.set_read_timeout(Some(Duration::from_secs(5))).is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"PONG"))
}
