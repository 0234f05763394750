//! Certificates for WebTransport (and wss): the operator's PEM certificate, or a
//! self-signed development certificate that browsers accept through
//! `serverCertificateHashes` (ECDSA P-256, valid at most 13 days, renewed
//! before it expires), and the SHA-256 hash served at `/cert-hash`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// How long a development certificate is valid. Browsers refuse
/// `serverCertificateHashes` for certificates valid longer than 14 days.
pub const DEV_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// How far back a development certificate's validity starts (clock skew);
/// at most a quarter of its validity.
const BACKDATE: Duration = Duration::from_secs(3600);
/// A development certificate is replaced when less than this is left (at
/// most half its validity).
pub const RENEW_BEFORE: Duration = Duration::from_secs(2 * 24 * 3600);

/// Why TLS material could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{0}")]
    Pem(String),
    /// Certificate generation or the TLS configuration failed.
    #[error("{0}")]
    Config(String),
}

/// A certificate chain with its key, and the leaf's hash.
#[derive(Debug)]
pub struct Certificate {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf's DER.
    pub sha256: [u8; 32],
    /// When it stops being valid (development certificates only).
    pub expires: Option<SystemTime>,
    /// When it is replaced (development certificates only).
    pub renew_at: Option<SystemTime>,
}

impl Clone for Certificate {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            sha256: self.sha256,
            expires: self.expires,
            renew_at: self.renew_at,
        }
    }
}

impl Certificate {
    fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        let sha256 = Sha256::digest(&chain[0]).into();
        Self {
            chain,
            key,
            sha256,
            expires: None,
            renew_at: None,
        }
    }

    /// Marks a development certificate valid until `expires` out of
    /// `validity` in all: it is replaced when less than [`RENEW_BEFORE`], or
    /// half its validity, is left.
    fn expiring(mut self, expires: SystemTime, validity: Duration) -> Self {
        self.expires = Some(expires);
        self.renew_at = Some(expires - RENEW_BEFORE.min(validity / 2));
        self
    }

    /// The hash as base64 (for `serverCertificateHashes`).
    pub fn hash_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sha256)
    }

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether a development certificate should be replaced now.
    pub fn needs_renewal(&self) -> bool {
        self.renew_at.is_some_and(|r| SystemTime::now() >= r)
    }

    /// A rustls server configuration for HTTP/3 (TLS 1.3, ALPN `h3`).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        self.server_config_with(&[&rustls::version::TLS13], b"h3")
    }

    /// A rustls server configuration for HTTPS and wss (TLS 1.2 or 1.3,
    /// ALPN `http/1.1`).
    pub fn https_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        self.server_config_with(rustls::DEFAULT_VERSIONS, b"http/1.1")
    }

    fn server_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[u8],
    ) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        // 0-RTT stays off: early data can be replayed, and a replayed login
        // or send must not be accepted twice.
        cfg.max_early_data_size = 0;
        Ok(cfg)
    }
}

/// Loads a PEM certificate chain and private key.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Certificate, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Io {
            path: p.into(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile_certs(&cert_pem)
        .map_err(|e| TlsError::Pem(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError::Pem(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile_key(&read(key)?)
        .map_err(|e| TlsError::Pem(format!("{}: {e}", key.display())))?;
    Ok(Certificate::new(chain, key_der))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn rustls_pemfile_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())
}

/// Generates a development certificate for `localhost`, `127.0.0.1` and
/// `::1`, valid from an hour ago (a quarter of `validity` if that is less)
/// for `validity` in all ([`DEV_VALIDITY`] unless a test shortens it).
pub fn generate_dev(validity: Duration) -> Result<(Certificate, String, String), TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| TlsError::Config(e.to_string()))?;
    let now = SystemTime::now();
    let backdate = BACKDATE.min(validity / 4);
    params.not_before = (now - backdate).into();
    let expires = now + validity - backdate;
    params.not_after = expires.into();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rtgate development certificate");
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let der = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((
        Certificate::new(vec![der], key_der).expiring(expires, validity),
        cert.pem(),
        key.serialize_pem(),
    ))
}

/// Writes a development certificate to `dir` (`dev-cert.pem`,
/// `dev-key.pem`, `dev-cert.expires`).
pub fn write_dev(dir: &Path, validity: Duration) -> Result<Certificate, TlsError> {
    let io = |path: PathBuf| move |source| TlsError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.into()))?;
    let (identity, cert_pem, key_pem) = generate_dev(validity)?;
    let expires = identity
        .expires
        .and_then(|e| e.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let key_path = dir.join("dev-key.pem");
    write_private(&key_path, key_pem.as_bytes()).map_err(io(key_path.clone()))?;
    let cert_path = dir.join("dev-cert.pem");
    std::fs::write(&cert_path, cert_pem).map_err(io(cert_path))?;
    let exp_path = dir.join("dev-cert.expires");
    std::fs::write(&exp_path, format!("{expires}\n")).map_err(io(exp_path))?;
    Ok(identity)
}

/// Writes a private key, readable by its owner only from the moment the file
/// exists (mode 0600 at creation, not changed afterwards). An older key file
/// is replaced, not rewritten in place, so its mode cannot carry over.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// The development certificate in `<data>/certs`, reused until it is due for
/// renewal, generated otherwise.
pub fn dev_identity(data: &Path, validity: Duration) -> Result<Certificate, TlsError> {
    let dir = data.join("certs");
    let expires = std::fs::read_to_string(dir.join("dev-cert.expires"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| UNIX_EPOCH + Duration::from_secs(s));
    if let Some(expires) = expires
        && let Ok(id) = load_pem(&dir.join("dev-cert.pem"), &dir.join("dev-key.pem"))
    {
        let id = id.expiring(expires, validity);
        if !id.needs_renewal() {
            return Ok(id);
        }
    }
    write_dev(&dir, validity)
}

/// The certificate in use, shared between the QUIC endpoint, the HTTPS
/// listener and `/cert-hash`.
#[derive(Debug, Clone)]
pub struct CurrentCertificate(Arc<RwLock<Certificate>>);

impl CurrentCertificate {
    /// Wraps an identity.
    pub fn new(id: Certificate) -> Self {
        Self(Arc::new(RwLock::new(id)))
    }

    /// A copy of the current certificate.
    pub fn get(&self) -> Certificate {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces it.
    pub fn set(&self, id: Certificate) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_is_short_lived_p256_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dev_identity(dir.path(), DEV_VALIDITY).unwrap();
        let left = a
            .expires
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            left <= DEV_VALIDITY && left > DEV_VALIDITY - Duration::from_secs(2 * 3600),
            "{left:?}"
        );
        assert!(!a.needs_renewal());
        assert!(a.server_config().is_ok());
        let b = dev_identity(dir.path(), DEV_VALIDITY).unwrap();
        assert_eq!(a.sha256, b.sha256, "a valid certificate is reused");
        // Near its end it is replaced.
        let soon = SystemTime::now() + Duration::from_secs(3600);
        let secs = soon.duration_since(UNIX_EPOCH).unwrap().as_secs();
        std::fs::write(dir.path().join("certs/dev-cert.expires"), secs.to_string()).unwrap();
        let c = dev_identity(dir.path(), DEV_VALIDITY).unwrap();
        assert_ne!(a.sha256, c.sha256);
        assert_eq!(a.hash_hex().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("certs/dev-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_at_half_its_life() {
        let dir = tempfile::tempdir().unwrap();
        let validity = Duration::from_secs(40);
        let a = dev_identity(dir.path(), validity).unwrap();
        let now = SystemTime::now();
        let left = a.expires.unwrap().duration_since(now).unwrap();
        let renew_in = a.renew_at.unwrap().duration_since(now).unwrap();
        // Backdated 10 s (a quarter), so 30 s left; renewed with 20 s left.
        assert!(
            left <= Duration::from_secs(30) && left > Duration::from_secs(28),
            "{left:?}"
        );
        assert!(
            renew_in <= Duration::from_secs(10) && renew_in > Duration::from_secs(8),
            "{renew_in:?}"
        );
        assert!(!a.needs_renewal());
        let b = dev_identity(dir.path(), validity).unwrap();
        assert_eq!(a.sha256, b.sha256);
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        std::fs::write(&p, "not pem").unwrap();
        let e = load_pem(&p, &p).unwrap_err().to_string();
        assert!(e.contains("x.pem"), "{e}");
        assert!(load_pem(&dir.path().join("missing.pem"), &p).is_err());
    }
}
