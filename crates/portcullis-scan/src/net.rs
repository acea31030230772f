//! Ready connectors: **the only I/O in this crate.** Everything else works
//! on a stream a [`ScannerConnector`] hands over. Behind the `net` feature
//! (on by default).

use std::net::SocketAddr;
#[cfg(unix)]
use std::path::PathBuf;

use portcullis_core::async_trait;

use crate::clamd::{ScannerConnector, ScannerStream};

/// clamd on a TCP socket (`TCPSocket`/`TCPAddr` in `clamd.conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConnector {
    addr: SocketAddr,
}

impl TcpConnector {
    /// Connect to `addr`, e.g. `127.0.0.1:3310`.
    pub fn new(addr: SocketAddr) -> Self {
        TcpConnector { addr }
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

#[async_trait]
impl ScannerConnector for TcpConnector {
    async fn connect(&self) -> std::io::Result<ScannerStream> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        // Small frames (the 4-byte lengths) must not wait for Nagle.
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

/// clamd on a Unix socket (`LocalSocket` in `clamd.conf`; Debian's default
/// is `/var/run/clamav/clamd.ctl`).
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixConnector {
    path: PathBuf,
}

#[cfg(unix)]
impl UnixConnector {
    /// Connect to the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UnixConnector { path: path.into() }
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(unix)]
#[async_trait]
impl ScannerConnector for UnixConnector {
    async fn connect(&self) -> std::io::Result<ScannerStream> {
        Ok(Box::new(tokio::net::UnixStream::connect(&self.path).await?))
    }
}
