//! The one HTTPS client every push service is called through: HTTP/2 when
//! the service offers it (APNs requires it), HTTP/1.1 otherwise, the
//! system's trusted roots plus `--push-ca`, a deadline per request, bodies
//! read whole up to a bound.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::PushError;

/// One request's deadline: connecting, sending and reading the answer.
const DEADLINE: Duration = Duration::from_secs(10);
/// The most of an answer's body read.
const MAX_BODY: usize = 64 << 10;

/// A service's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreachable(pub(crate) String);

/// The HTTPS client.
#[derive(Clone)]
pub(crate) struct HttpsClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpsClient {
    /// A client trusting the system's roots and the certificates in `ca`.
    pub(crate) fn new(ca: Option<&Path>) -> Result<Self, PushError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(ca) = ca {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| PushError::Key(format!("{}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(PushError::Key(format!("{}: no certificate", ca.display())));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| PushError::Key(format!("{}: {e}", ca.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PushError::Key(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_all_versions()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `req` and reads the answer, within the deadline.
    pub(crate) async fn send(&self, req: Request<Bytes>) -> Result<Answer, Unreachable> {
        let req = req.map(Full::new);
        let call = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| Unreachable(format!("{e:#}")))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(DEADLINE, call)
            .await
            .unwrap_or_else(|_| Err(Unreachable(format!("no answer within {DEADLINE:?}"))))
    }
}

/// `Retry-After` in seconds, when the answer carries one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}
