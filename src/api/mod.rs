//! The HTTP side of a node: its routes (the WebSocket endpoints, the demo
//! page and browser client, health and readiness, metrics) and the server
//! API for backends.

pub(crate) mod https;
pub(crate) mod serve;
pub(crate) mod upgrade;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::admission::forwarded::client_addr;
use crate::gateway::Gateway;
use crate::protocol::{Id, ProtoError, decode_publish};
use crate::routing::Sent;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const CLIENT_JS: &str = include_str!("../../web/client.js");

/// Every route of the HTTP listener; `/metrics` too unless it has its own
/// listener.
pub(crate) fn routes(gw: Gateway) -> Router {
    let metrics_here = gw.config().listen.metrics.is_none();
    let router = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
            }),
        )
        .route(
            "/client.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    CLIENT_JS,
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/cert-hash", get(cert_hash))
        .route("/readyz", get(readyz))
        .route("/websocket/{user_id}", get(upgrade::legacy_upgrade))
        .route("/ws", get(upgrade::ws_upgrade))
        .route("/api/publish", post(publish))
        .route("/api/presence", get(presence));
    let router = if metrics_here {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router.with_state(gw)
}

/// `GET /cert-hash`: the SHA-256 of the WebTransport certificate, for
/// `serverCertificateHashes`, and the URL to connect to.
async fn cert_hash(State(gw): State<Gateway>) -> Response {
    let Some(wt) = gw.wt() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "webtransport is not running",
        )
            .into_response();
    };
    let id = wt.identity.get();
    let host = if wt.addr.ip().is_loopback() {
        "localhost".to_string()
    } else {
        wt.addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let url = format!("https://{host}:{}/wt", wt.addr.port());
    Json(json!({
        "algorithm": "sha-256",
        "value": id.hash_base64(),
        "hex": id.hash_hex(),
        "url": url,
        "dev": wt.dev,
    }))
    .into_response()
}

/// The routes of a separate metrics listener (`--metrics ADDR`).
pub(crate) fn metrics_routes(gw: Gateway) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(gw)
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(gw): State<Gateway>) -> Response {
    metrics::gauge!("rtgate_sessions").set(gw.hub().session_count() as f64);
    metrics::gauge!("rtgate_connections_held").set(gw.conns().current() as f64);
    let body = crate::telemetry::install().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

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
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<ProtoError> for ApiError {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::Unavailable(r) => Self::Unavailable(r),
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

/// Checks `Authorization: apikey <key>`. Without a configured key the API is
/// open only in dev mode to loopback callers (the caller as seen through
/// trusted proxies: a reverse proxy on this host does not make the world
/// local).
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
        Some(g) if constant_time_eq(g.as_bytes(), key.expose().as_bytes()) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `/readyz` answers within this, whatever the store or broker do.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_millis(900);

async fn readyz(State(gw): State<Gateway>) -> Response {
    let (store, broker) = tokio::join!(
        tokio::time::timeout(READY_DEADLINE, gw.store().check()),
        tokio::time::timeout(READY_DEADLINE, gw.broker().check()),
    );
    let store = store.unwrap_or_else(|_| {
        Err(crate::store::StoreError::Unavailable(
            "store check timed out".into(),
        ))
    });
    let broker = broker.unwrap_or_else(|_| {
        Err(crate::broker::BrokerError::Unavailable(
            "broker check timed out".into(),
        ))
    });
    let draining = gw.shutdown().is_cancelled();
    match (store, broker) {
        (Ok(()), Ok(())) if !draining => (StatusCode::OK, "ready\n").into_response(),
        (s, b) => {
            let mut reasons = Vec::new();
            if let Err(e) = s {
                reasons.push(e.to_string());
            }
            if let Err(e) = b {
                reasons.push(e.to_string());
            }
            if draining {
                reasons.push("shutting down".into());
            }
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", reasons.join("; ")),
            )
                .into_response()
        }
    }
}

/// Requests with a body must say it is JSON: a page on another site can
/// post `text/plain` without asking first, but not `application/json`.
fn json_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

async fn publish(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    json_body(&headers)?;
    authorize(&gw, peer, &headers)?;
    if body.len() > gw.config().limits.max_frame {
        return Err(ApiError::BadRequest(format!(
            "body exceeds {} bytes",
            gw.config().limits.max_frame
        )));
    }
    let (sender, send) = decode_publish(&body)?;
    let sender = sender.unwrap_or_else(|| Id::parse("system").expect("valid id"));
    match gw.publisher().send(sender, None, send) {
        Sent::Volatile => {
            Ok((StatusCode::ACCEPTED, Json(json!({ "volatile": true }))).into_response())
        }
        Sent::Stored(fut) => {
            let a = fut
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            Ok(Json(json!({ "msgId": a.msg_id, "seq": a.seq, "ts": a.ts })).into_response())
        }
    }
}

async fn presence(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authorize(&gw, peer, &headers)?;
    let parse = |s: &str| Id::parse(s).map_err(|e| ApiError::BadRequest(format!("{s:?}: {e}")));
    let users = if let Some(room) = q.get("roomId") {
        gw.broker().room_presence(parse(room)?).await
    } else if let Some(ids) = q.get("userId") {
        let ids = ids.split(',').map(parse).collect::<Result<Vec<_>, _>>()?;
        gw.broker().online(ids).await
    } else {
        return Err(ApiError::BadRequest("give roomId or userId".into()));
    };
    let users = users.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({ "userIds": users })).into_response())
}
