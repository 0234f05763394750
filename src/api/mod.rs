//! The HTTP side of a node: its routes (the WebSocket endpoints, the demo
//! page and browser client, health and readiness, metrics) and the server
//! API for backends (`backend`).

mod backend;
mod handshake;

pub(crate) use backend::fuzzing::body as fuzz_body;
pub(crate) mod https;
pub(crate) mod serve;
mod sse;
pub(crate) mod upgrade;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::gateway::Gateway;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const CLIENT_JS: &str = include_str!("../../web/client.js");
/// The demo's push service worker (shows pushes, opens the chat).
const PUSH_SW_JS: &str = include_str!("../../web/push-sw.js");
/// The operator's page: a shell without data; everything it shows comes from
/// `/metrics` and the API, with the key the operator enters.
const ADMIN_HTML: &str = include_str!("../../web/admin.html");

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
        .route(
            "/push-sw.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    PUSH_SW_JS,
                )
            }),
        )
        .route(
            "/admin",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-store"),
                        (header::CONTENT_SECURITY_POLICY, admin_csp()),
                        (header::X_FRAME_OPTIONS, "DENY"),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        (header::REFERRER_POLICY, "no-referrer"),
                    ],
                    ADMIN_HTML,
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/cert-hash", get(cert_hash))
        .route("/push/vapid-public-key", get(vapid_public_key))
        .route("/readyz", get(readyz))
        .route("/websocket/{user_id}", get(upgrade::legacy_upgrade))
        .route("/ws", get(upgrade::ws_upgrade))
        .merge(backend::router());
    // The HTTP fallback, unless `--sse off`.
    let router = match gw.config().listen.sse {
        true => router
            .route("/sse", get(sse::events))
            .route("/sse/{session_id}", post(sse::post)),
        false => router,
    };
    let router = if metrics_here {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router.with_state(gw)
}

/// The operator's page's Content-Security-Policy: its one inline script and
/// style by their hashes, requests to this origin only, no framing (the
/// page holds an API key once typed), no plugins, forms or base changes.
fn admin_csp() -> &'static str {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let hash = |open: &str, close: &str| {
            use base64::Engine;
            use sha2::Digest;
            let start = ADMIN_HTML.find(open).map_or(0, |i| i + open.len());
            let end = ADMIN_HTML[start..].find(close).map_or(start, |i| start + i);
            let digest = sha2::Sha256::digest(&ADMIN_HTML.as_bytes()[start..end]);
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash("<script>", "</script>"),
            hash("<style>", "</style>"),
        )
    });
    &CSP
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

/// `GET /push/vapid-public-key`: the key browsers subscribe with
/// (`applicationServerKey`), base64url, as text; 404 when Web Push is off.
async fn vapid_public_key(State(gw): State<Gateway>) -> Response {
    match gw.push().vapid_public_key() {
        Some(key) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            key.to_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Web Push is off: no VAPID key\n").into_response(),
    }
}

/// The routes of a separate metrics listener (`--metrics ADDR`).
pub(crate) fn metrics_routes(gw: Gateway) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(gw)
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(gw): State<Gateway>) -> Response {
    metrics::gauge!("rtgate_sessions").set(gw.hub().session_count() as f64);
    metrics::gauge!("rtgate_connections_held").set(gw.conns().current() as f64);
    let ready = readiness(&gw).await.is_ok();
    metrics::gauge!("rtgate_ready").set(if ready { 1.0 } else { 0.0 });
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

/// `/readyz` answers within this, whatever the store or broker do.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_millis(900);

/// Whether the node can serve: the store and broker answer and it is not
/// draining; otherwise why not.
async fn readiness(gw: &Gateway) -> Result<(), Vec<String>> {
    let (store, broker) = tokio::join!(
        tokio::time::timeout(READY_DEADLINE, gw.store().check()),
        tokio::time::timeout(READY_DEADLINE, gw.broker().check()),
    );
    let mut reasons = Vec::new();
    match store {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(e.to_string()),
        Err(_) => reasons.push("store check timed out".into()),
    }
    match broker {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(e.to_string()),
        Err(_) => reasons.push("broker check timed out".into()),
    }
    if gw.shutdown().is_cancelled() {
        reasons.push("shutting down".into());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

async fn readyz(State(gw): State<Gateway>) -> Response {
    match readiness(&gw).await {
        // Ready, and what an ack cannot promise here, if anything.
        Ok(()) => match gw.store().caveat() {
            None => (StatusCode::OK, "ready\n").into_response(),
            Some(c) => (StatusCode::OK, format!("ready\nwarning: {c}\n")).into_response(),
        },
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        )
            .into_response(),
    }
}
