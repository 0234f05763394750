//! APNs over HTTP/2 with token authentication (Apple's "Establishing a
//! token-based connection to APNs" and "Sending notification requests to
//! APNs"): an ES256 JWT (`kid` the key id, `iss` the team id, `iat`)
//! signed with the `.p8` key, reused for [`TOKEN_LIFE`] (Apple refuses
//! one older than an hour, and new ones more often than every 20
//! minutes), and `POST /3/device/<token>` with `apns-topic`,
//! `apns-push-type: alert`, `apns-priority: 10`, `apns-expiration` and
//! `apns-collapse-id`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{Notice, Outcome, PushError};
use crate::config::ApnsConfig;
use crate::model::now_ms;

/// How long one provider token is used.
const TOKEN_LIFE: Duration = Duration::from_secs(50 * 60);
/// `apns-collapse-id`: the device shows the newest notice only.
const COLLAPSE: &str = "rtgate-inbox";

/// APNs, configured.
pub(crate) struct Apns {
    config: ApnsConfig,
    key: EncodingKey,
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    /// APNs with the `.p8` key of `config`.
    pub(crate) fn new(config: ApnsConfig) -> Result<Self, PushError> {
        let pem = std::fs::read(&config.key)
            .map_err(|e| PushError::Key(format!("{}: {e}", config.key.display())))?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|e| {
            PushError::Key(format!(
                "{}: not an APNs .p8 key: {e}",
                config.key.display()
            ))
        })?;
        let apns = Self {
            config,
            key,
            token: Mutex::new(None),
        };
        apns.provider_token()?;
        Ok(apns)
    }

    /// The provider token: the cached one while it is young enough.
    fn provider_token(&self) -> Result<String, PushError> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, at)) = cached.as_ref()
            && at.elapsed() < TOKEN_LIFE
        {
            return Ok(t.clone());
        }
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            iat: u64,
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.config.key_id.clone());
        let claims = Claims {
            iss: &self.config.team_id,
            iat: now_ms() / 1000,
        };
        let t = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Key(format!("APNs token: {e}")))?;
        *cached = Some((t.clone(), Instant::now()));
        Ok(t)
    }

    /// Forgets the provider token (APNs answered that it expired).
    pub(crate) fn renew(&self) {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The request that shows `notice` on the device `token`.
    pub(crate) fn request(
        &self,
        token: &str,
        notice: &Notice,
    ) -> Result<Request<Bytes>, PushError> {
        let base = self.config.endpoint.to_string();
        let url = format!("{}/3/device/{token}", base.trim_end_matches('/'));
        let mut alert = json!({ "title": notice.from.as_str() });
        alert["body"] = json!(notice.preview.as_deref().unwrap_or("New message"));
        let body = json!({
            "aps": {
                "alert": alert,
                "sound": "default",
                "thread-id": notice.room.as_ref().map_or(notice.from.as_str(), |r| r.as_str()),
                "mutable-content": 1,
            },
            "rtgate": notice.payload(),
        });
        Request::post(url)
            .header(
                http::header::AUTHORIZATION,
                format!("bearer {}", self.provider_token()?),
            )
            .header("apns-topic", &self.config.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", now_ms() / 1000 + super::webpush::TTL)
            .header("apns-collapse-id", COLLAPSE)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body.to_string()))
            .map_err(|e| PushError::Address(e.to_string()))
    }
}

/// What APNs's answer means: 200 sent; 410 (`Unregistered`) and 400
/// `BadDeviceToken` / `DeviceTokenNotForTopic` the token is gone; 403
/// `ExpiredProviderToken` a new token and again; 429 and 5xx later.
pub(crate) fn outcome(status: u16, body: &[u8]) -> Outcome {
    let reason = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_default();
    match (status, reason.as_str()) {
        (200, _) => Outcome::Sent,
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Outcome::Gone,
        (403, "ExpiredProviderToken") => Outcome::Renew,
        (429 | 500..=599, _) => Outcome::Retry,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mean_what_apple_documents() {
        assert_eq!(outcome(200, b""), Outcome::Sent);
        assert_eq!(outcome(410, br#"{"reason":"Unregistered"}"#), Outcome::Gone);
        assert_eq!(
            outcome(400, br#"{"reason":"BadDeviceToken"}"#),
            Outcome::Gone
        );
        assert_eq!(outcome(400, br#"{"reason":"BadTopic"}"#), Outcome::Failed);
        assert_eq!(
            outcome(403, br#"{"reason":"ExpiredProviderToken"}"#),
            Outcome::Renew
        );
        assert_eq!(
            outcome(429, br#"{"reason":"TooManyRequests"}"#),
            Outcome::Retry
        );
        assert_eq!(outcome(503, b""), Outcome::Retry);
    }
}
