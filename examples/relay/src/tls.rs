//! The server certificate: the configured one, or a self-signed one made on
//! first start and kept in the data directory so clients can pin it.

use std::fs;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: no certificate found in the PEM file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no private key found in the PEM file")]
    NoKey { path: PathBuf },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate came from, for the startup line.
#[derive(Debug, Clone)]
pub(crate) struct CertSource {
    pub(crate) cert: PathBuf,
    pub(crate) generated: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Write a self-signed certificate and key for `hostname` under `dir`
/// unless both files are already there.
pub(crate) fn ensure_self_signed(
    dir: &Path,
    hostname: &str,
) -> Result<(PathBuf, PathBuf, bool), TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key, false));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut names = vec![hostname.to_owned()];
    if hostname != "localhost" {
        names.push("localhost".to_owned());
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    fs::write(&cert, generated.cert.pem()).map_err(io_err(&cert))?;
    Ok((cert, key, true))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Load `cert` and `key` (PEM) into a rustls server configuration.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = {
        let f = fs::File::open(cert).map_err(io_err(cert))?;
        rustls_pemfile::certs(&mut BufReader::new(f))
            .collect::<Result<_, _>>()
            .map_err(io_err(cert))?
    };
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_der: PrivateKeyDer<'static> = {
        let f = fs::File::open(key).map_err(io_err(key))?;
        rustls_pemfile::private_key(&mut BufReader::new(f))
            .map_err(io_err(key))?
            .ok_or_else(|| TlsError::NoKey {
                path: key.to_owned(),
            })?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    Ok(Arc::new(config))
}

/// `[delivery] tls_ca_file`: a client configuration that trusts only the
/// CA certificates in `ca` (PEM), for the SMTP client's verified TLS
/// (`SmtpTransport::with_verified_tls`).
pub(crate) fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let f = fs::File::open(ca).map_err(io_err(ca))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(f)) {
        roots.add(cert.map_err(io_err(ca))?)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca.to_owned(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configured pair, or the self-signed one under `data_dir/tls`.
pub(crate) fn load(
    configured: Option<&(PathBuf, PathBuf)>,
    data_dir: &Path,
    hostname: &str,
) -> Result<(Arc<ServerConfig>, CertSource), TlsError> {
    let (cert, key, generated) = match configured {
        Some((c, k)) => (c.clone(), k.clone(), false),
        None => ensure_self_signed(&data_dir.join("tls"), hostname)?,
    };
    let config = server_config(&cert, &key)?;
    Ok((config, CertSource { cert, generated }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let (_, src) = load(None, dir.path(), "mx.example.org").unwrap();
        assert!(src.generated);
        let first = fs::read(&src.cert).unwrap();
        let (_, again) = load(None, dir.path(), "mx.example.org").unwrap();
        assert!(!again.generated);
        assert_eq!(
            fs::read(&again.cert).unwrap(),
            first,
            "kept, not regenerated"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("tls/key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
    }

    #[test]
    fn a_ca_bundle_loads_and_one_without_a_certificate_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = ensure_self_signed(dir.path(), "localhost").unwrap();
        assert!(client_config(&cert).is_ok());
        let err = client_config(&key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = client_config(&dir.path().join("missing.pem")).unwrap_err();
        assert!(matches!(err, TlsError::Io { .. }), "{err}");
    }

    #[test]
    fn a_file_without_a_key_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _, _) = ensure_self_signed(dir.path(), "localhost").unwrap();
        let err = server_config(&c, &c).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    }
}
