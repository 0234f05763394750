//! Web Push (RFC 8030): the payload encrypted for the browser (RFC 8291,
//! `aes128gcm`, by `web-push-native`), the request signed with the node's
//! VAPID key (RFC 8292: an ES256 JWT for the push service's origin and
//! the key itself in `Authorization: vapid t=..., k=...`), `TTL`,
//! `Urgency` and a `Topic` so a service holding an older push for the
//! device replaces it.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Uri};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};

use super::{Outcome, PushError};
use crate::model::now_ms;
use crate::protocol::push::WebPushSubscription;

/// How long a push service keeps a push for an offline browser (seconds).
pub(crate) const TTL: u64 = 24 * 3600;
/// The `Topic`: one pending push per device, the newest.
const TOPIC: &str = "rtgate-inbox";
/// How long a VAPID JWT is valid (RFC 8292: at most 24 hours).
const JWT_VALIDITY_SEC: u64 = 12 * 3600;
/// How long one is reused for a push service (signing is most of a push's
/// CPU); well inside its validity.
const JWT_REUSE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The node's VAPID identity.
pub(crate) struct Vapid {
    key: EncodingKey,
    /// The public key, uncompressed, base64url: what browsers subscribe
    /// with (`applicationServerKey`) and the `k` of each request.
    public: String,
    subject: String,
    /// The `Authorization` per push service origin, and when it was made.
    signed: std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
}

impl Vapid {
    /// The key in `path` (PKCS#8 or SEC1 PEM). With `make`, a missing file
    /// is created with a new key (mode 0600).
    pub(crate) fn load(path: &Path, subject: String, make: bool) -> Result<Self, PushError> {
        let bad = |e: &dyn std::fmt::Display| PushError::Key(format!("{}: {e}", path.display()));
        if make && !path.exists() {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| bad(&e))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| bad(&e))?;
            }
            crate::certs::write_private(path, pair.serialize_pem().as_bytes())
                .map_err(|e| bad(&e))?;
        }
        let pem = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
        let secret = p256::SecretKey::from_pkcs8_pem(&pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(&pem))
            .map_err(|_| bad(&"not a P-256 private key in PEM (PKCS#8 or SEC1)"))?;
        let der = secret.to_pkcs8_der().map_err(|e| bad(&e))?;
        let point = secret.public_key().as_affine().to_encoded_point(false);
        Ok(Self {
            key: EncodingKey::from_ec_der(der.as_bytes()),
            public: URL_SAFE_NO_PAD.encode(point.as_bytes()),
            subject,
            signed: Default::default(),
        })
    }

    /// Where dev mode keeps its key.
    pub(crate) fn dev_path(data: &Path) -> PathBuf {
        data.join("vapid.pem")
    }

    /// The public key, base64url (`GET /push/vapid-public-key`).
    pub(crate) fn public_key(&self) -> &str {
        &self.public
    }

    /// `Authorization` for a request to `endpoint`'s push service: one
    /// per service origin, made again after [`JWT_REUSE`].
    fn authorization(&self, endpoint: &Uri) -> Result<String, PushError> {
        let origin = match (endpoint.scheme_str(), endpoint.authority()) {
            (Some(s), Some(a)) => format!("{s}://{a}"),
            _ => return Err(PushError::Address("endpoint has no origin".into())),
        };
        let mut signed = self.signed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((header, at)) = signed.get(&origin)
            && at.elapsed() < JWT_REUSE
        {
            return Ok(header.clone());
        }
        let header = self.sign(origin.clone())?;
        // Bounded: a node reaches a handful of push services.
        if signed.len() >= 64 {
            signed.clear();
        }
        signed.insert(origin, (header.clone(), std::time::Instant::now()));
        Ok(header)
    }

    /// A new `Authorization` for the push service at `aud`.
    fn sign(&self, aud: String) -> Result<String, PushError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            aud: String,
            exp: u64,
            sub: &'a str,
        }
        let claims = Claims {
            aud,
            exp: now_ms() / 1000 + JWT_VALIDITY_SEC,
            sub: &self.subject,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Key(format!("VAPID JWT: {e}")))?;
        Ok(format!("vapid t={jwt}, k={}", self.public))
    }

    /// The request that pushes `payload` to `sub`.
    pub(crate) fn request(
        &self,
        sub: &WebPushSubscription,
        payload: &[u8],
    ) -> Result<Request<Bytes>, PushError> {
        let endpoint: Uri = sub
            .endpoint
            .parse()
            .map_err(|e| PushError::Address(format!("endpoint: {e}")))?;
        let key = URL_SAFE_NO_PAD
            .decode(&sub.p256dh)
            .ok()
            .and_then(|k| p256::PublicKey::from_sec1_bytes(&k).ok())
            .ok_or_else(|| PushError::Address("p256dh is not a P-256 key".into()))?;
        let auth: [u8; 16] = URL_SAFE_NO_PAD
            .decode(&sub.auth)
            .ok()
            .and_then(|a| a.try_into().ok())
            .ok_or_else(|| PushError::Address("auth is not 16 bytes".into()))?;
        let auth = web_push_native::Auth::from(auth);
        let body = web_push_native::encrypt(payload.to_vec(), &key, &auth)
            .map_err(|e| PushError::Address(format!("encryption: {e}")))?;
        Request::post(endpoint.clone())
            .header("ttl", TTL)
            .header("urgency", "high")
            .header("topic", TOPIC)
            .header(http::header::CONTENT_ENCODING, "aes128gcm")
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(http::header::AUTHORIZATION, self.authorization(&endpoint)?)
            .body(Bytes::from(body))
            .map_err(|e| PushError::Address(e.to_string()))
    }
}

/// What a push service's status means (RFC 8030 section 5, and what the
/// browsers' services answer): 2xx taken; 404 and 410 the subscription is
/// gone; 429 and 5xx later; anything else a request it will not take.
pub(crate) fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        404 | 410 => Outcome::Gone,
        429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Failed,
    }
}

/// Whether `endpoint`'s host is one Web Push may reach (`hosts`: names,
/// or `.suffix` for a domain and its subdomains). Nodes must not be made
/// to POST wherever a client names.
pub(crate) fn allowed(endpoint: &str, hosts: &[String]) -> bool {
    let Some(host) = endpoint
        .parse::<Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
    else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix('.') {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == h,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_and_their_subdomains_are_reached() {
        let hosts: Vec<String> = ["fcm.googleapis.com", ".push.apple.com"]
            .map(String::from)
            .to_vec();
        assert!(allowed("https://fcm.googleapis.com/fcm/send/x", &hosts));
        assert!(allowed("https://web.push.apple.com/QGm", &hosts));
        assert!(!allowed("https://push.apple.com.evil.example/x", &hosts));
        assert!(!allowed("https://evilfcm.googleapis.com/x", &hosts));
        assert!(!allowed("https://127.0.0.1:9/x", &hosts));
        assert!(!allowed("not a url", &hosts));
    }

    #[test]
    fn statuses_mean_what_rfc_8030_says() {
        assert_eq!(outcome(201), Outcome::Sent);
        assert_eq!(outcome(410), Outcome::Gone);
        assert_eq!(outcome(404), Outcome::Gone);
        assert_eq!(outcome(429), Outcome::Retry);
        assert_eq!(outcome(503), Outcome::Retry);
        assert_eq!(outcome(413), Outcome::Failed);
    }
}
