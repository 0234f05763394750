//! FCM HTTP v1 (Google's "Migrate from legacy FCM APIs to HTTP v1" and
//! "Authorize send requests"): a service-account JWT (RS256, `iss` the
//! client email, `scope` firebase.messaging, `aud` the token URI) traded at
//! the token URI for an OAuth access token, cached until shortly before it
//! expires, then `POST /v1/projects/<project>/messages:send` with a
//! `message` naming the registration token.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::sync::Mutex;

use super::client::HttpsClient;
use super::{Notice, Outcome, PushError};
use crate::model::now_ms;

/// The OAuth scope of sending.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is renewed this long before Google says it expires.
const EARLY: Duration = Duration::from_secs(120);

#[derive(serde::Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    client_email: String,
    token_uri: String,
}

/// FCM, configured.
pub(crate) struct Fcm {
    project: String,
    email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token_uri: http::Uri,
    endpoint: String,
    access: Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    /// FCM with the service account in `path`.
    pub(crate) fn new(path: &Path, endpoint: &http::Uri) -> Result<Self, PushError> {
        let bad = |e: &dyn std::fmt::Display| PushError::Key(format!("{}: {e}", path.display()));
        let text = std::fs::read(path).map_err(|e| bad(&e))?;
        let sa: ServiceAccount = serde_json::from_slice(&text).map_err(|e| bad(&e))?;
        let key = EncodingKey::from_rsa_pem(sa.private_key.as_bytes()).map_err(|e| bad(&e))?;
        let token_uri: http::Uri = sa.token_uri.parse().map_err(|e| bad(&e))?;
        if token_uri.scheme_str() != Some("https") {
            return Err(bad(&"token_uri must be https"));
        }
        Ok(Self {
            project: sa.project_id,
            email: sa.client_email,
            key_id: sa.private_key_id,
            key,
            token_uri,
            endpoint: endpoint.to_string().trim_end_matches('/').to_owned(),
            access: Mutex::new(None),
        })
    }

    /// The access token: the cached one, or a new one from the token URI.
    pub(crate) async fn access_token(&self, client: &HttpsClient) -> Result<String, PushError> {
        let mut cached = self.access.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: String,
            iat: u64,
            exp: u64,
        }
        let iat = now_ms() / 1000;
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.email,
            scope: SCOPE,
            aud: self.token_uri.to_string(),
            iat,
            exp: iat + 3600,
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Key(format!("FCM assertion: {e}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let req = Request::post(self.token_uri.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Bytes::from(form))
            .map_err(|e| PushError::Key(e.to_string()))?;
        let answer = client
            .send(req)
            .await
            .map_err(|e| PushError::Token(format!("token URI: {e}")))?;
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: u64,
        }
        if answer.status != 200 {
            return Err(PushError::Token(format!(
                "token URI answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )));
        }
        let g: Granted = serde_json::from_slice(&answer.body)
            .map_err(|e| PushError::Token(format!("token URI's answer: {e}")))?;
        let life = Duration::from_secs(g.expires_in).saturating_sub(EARLY);
        *cached = Some((g.access_token.clone(), Instant::now() + life));
        Ok(g.access_token)
    }

    /// Forgets the access token (FCM answered 401).
    pub(crate) async fn renew(&self) {
        *self.access.lock().await = None;
    }

    /// The request that shows `notice` on the device `token`.
    pub(crate) fn request(
        &self,
        access: &str,
        token: &str,
        notice: &Notice,
    ) -> Result<Request<Bytes>, PushError> {
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            self.endpoint, self.project
        );
        let mut data = json!({
            "msgId": notice.msg_id,
            "from": notice.from.as_str(),
            "count": notice.count.to_string(),
        });
        if let Some(r) = &notice.room {
            data["roomId"] = json!(r.as_str());
        }
        if let Some(p) = &notice.preview {
            data["preview"] = json!(p);
        }
        let body = json!({
            "message": {
                "token": token,
                "notification": {
                    "title": notice.from.as_str(),
                    "body": notice.preview.as_deref().unwrap_or("New message"),
                },
                "data": data,
                "android": {
                    "priority": "high",
                    "collapse_key": "rtgate-inbox",
                    "ttl": format!("{}s", super::webpush::TTL),
                },
            }
        });
        Request::post(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {access}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body.to_string()))
            .map_err(|e| PushError::Address(e.to_string()))
    }
}

/// What FCM's answer means: 200 sent; 404 `UNREGISTERED` the token is
/// gone, and so is a 400 `INVALID_ARGUMENT` about the token itself (Google's
/// "manage tokens" guide: safe to delete when the payload is valid, which
/// ours is by construction); 401 a new access token and again; 429 and 5xx
/// later; any other 400 and 403 a request FCM will not take (the token is
/// kept: a fault of ours must not wipe every device).
pub(crate) fn outcome(status: u16, body: &[u8]) -> Outcome {
    let error = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .map(|v| v["error"].clone())
            .unwrap_or_default()
    };
    let unregistered = |e: &serde_json::Value| {
        e["status"] == "NOT_FOUND"
            || e["details"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x["errorCode"] == "UNREGISTERED"))
    };
    // Two shapes are seen: the message names the registration token, or a
    // `BadRequest` field violation names `message.token`.
    let bad_token = |e: &serde_json::Value| {
        e["status"] == "INVALID_ARGUMENT"
            && (e["message"]
                .as_str()
                .is_some_and(|m| m.contains("registration token"))
                || e["details"].as_array().is_some_and(|d| {
                    d.iter().any(|x| {
                        x["fieldViolations"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|v| v["field"] == "message.token"))
                    })
                }))
    };
    match status {
        200 => Outcome::Sent,
        404 if unregistered(&error()) => Outcome::Gone,
        400 if bad_token(&error()) => Outcome::Gone,
        401 => Outcome::Renew,
        429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mean_what_google_documents() {
        let gone = br#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(outcome(200, b"{}"), Outcome::Sent);
        assert_eq!(outcome(404, gone), Outcome::Gone);
        assert_eq!(outcome(404, b"not json"), Outcome::Failed);
        assert_eq!(outcome(401, b""), Outcome::Renew);
        assert_eq!(outcome(429, b""), Outcome::Retry);
        assert_eq!(outcome(503, b""), Outcome::Retry);
        assert_eq!(
            outcome(400, br#"{"error":{"status":"INVALID_ARGUMENT"}}"#),
            Outcome::Failed
        );
        let payload = br#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(outcome(400, payload), Outcome::Failed);
        let named = br#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}"#;
        assert_eq!(outcome(400, named), Outcome::Gone);
        let field = br#"{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}"#;
        assert_eq!(outcome(400, field), Outcome::Gone);
        let other = br#"{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data","description":"Invalid value"}]}]}}"#;
        assert_eq!(outcome(400, other), Outcome::Failed);
    }
}
