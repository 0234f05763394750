//! Who may call the server API and how its errors look: the API key check
//! and the JSON body rule as extractors, and `{"code","reason"}` errors.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::admission::forwarded::client_addr;
use crate::gateway::Gateway;
use crate::protocol::{Id, ProtoError};

/// An error answered by the server API, as `{"code","reason"}`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The API key is missing or wrong.
    #[error("missing or wrong API key")]
    Unauthorized,
    /// The API is not enabled for this caller.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request body is not `application/json`.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The store or broker cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// What the request names is not there.
    #[error("{0}")]
    NotFound(String),
    /// The request is not allowed on what it names.
    #[error("{0}")]
    Denied(String),
    /// The request conflicts with the state of what it names.
    #[error("{0}")]
    Conflict(String),
}

impl ApiError {
    /// The HTTP status, as a number.
    pub(crate) fn status_code(&self) -> u16 {
        self.status().as_u16()
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
        }
    }
}

impl From<ProtoError> for ApiError {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::Unavailable(r) => Self::Unavailable(r),
            ProtoError::NotFound(r) => Self::NotFound(r),
            ProtoError::Forbidden(r) => Self::Denied(r),
            ProtoError::Conflict(r) => Self::Conflict(r),
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (
            status,
            Json(json!({ "code": status.as_u16(), "reason": self.to_string() })),
        )
            .into_response()
    }
}

/// `s` as an id, or a 400 that names the field `what`.
pub(crate) fn parse_id(s: &str, what: &str) -> Result<Id, ApiError> {
    Id::parse(s).map_err(|e| ApiError::BadRequest(format!("{what}: {s:?}: {e}")))
}

/// A caller that passed the API key check. Without a configured key the
/// API is open only in dev mode to loopback callers (the caller as seen
/// through trusted proxies: a reverse proxy on this host does not make the
/// world local).
pub(crate) struct Authorized;

impl FromRequestParts<Gateway> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Gateway) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or(ApiError::Forbidden("no peer address"))?;
        authorize(gw, peer, &parts.headers).map(|()| Authorized)
    }
}

fn authorize(gw: &Gateway, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    let cfg = gw.config();
    let Some(key) = &cfg.auth.api_key else {
        let client = client_addr(peer, headers, &cfg.auth.trusted_proxies);
        if cfg.dev_mode() && client.ip().is_loopback() {
            return Ok(());
        }
        return Err(ApiError::Forbidden("the server API needs --api-key"));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("apikey "))
        .map(str::trim);
    match given {
        Some(g) if crate::auth::constant_time_eq(g.as_bytes(), key.expose().as_bytes()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// A request body that says it is JSON (a page on another site can post
/// `text/plain` without asking first, but not `application/json`), at most
/// 16 frames long, as bytes.
pub(crate) struct JsonBytes(pub(crate) Bytes);

impl FromRequest<Gateway> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, gw: &Gateway) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = gw.config().limits.max_frame.saturating_mul(16);
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::BadRequest(format!("body exceeds {limit} bytes")))?;
        Ok(Self(body))
    }
}

/// A JSON body of type `T`; a field at fault is named in the 400.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Gateway> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, gw: &Gateway) -> Result<Self, ApiError> {
        let JsonBytes(body) = JsonBytes::from_request(req, gw).await?;
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("{}: {}", e.path(), e.inner())))
    }
}
