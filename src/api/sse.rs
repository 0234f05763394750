//! The HTTP fallback's two endpoints (PROTOCOL.md section 2): `GET /sse`
//! opens a session (or reattaches a reconnecting `EventSource` by its
//! `Last-Event-ID`) and streams its frames as Server-Sent Events; `POST
//! /sse/{sessionId}` with the session's `X-Rtgate-Post-Token` hands it one
//! JSON frame or an array of them. The session itself is the same driver
//! every transport runs ([`crate::transport::sse`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::admission::{Arrival, admit};
use crate::gateway::Gateway;
use crate::model::TransportKind;
use crate::protocol::Encoding;
use crate::transport::sse::{PostError, ResumeError};

/// The header a POST carries its session's token in.
pub(crate) const POST_TOKEN: &str = "x-rtgate-post-token";

/// An event stream: `first` (a new session's hello), then what arrives.
fn stream(first: Option<Bytes>, rx: mpsc::Receiver<Bytes>) -> Response {
    let live =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let body = futures_util::stream::iter(first)
        .chain(live)
        .map(Ok::<_, Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache, no-transform"),
            // nginx: pass events as they come.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /sse`.
pub(crate) async fn events(
    State(gw): State<Gateway>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(last) = text("last-event-id") {
        match gw.sse().resume(last) {
            Ok((_, rx)) => return stream(None, rx),
            // Too late to resume: a new session, whose client logs in again
            // and replays with `since`.
            Err(ResumeError::TooOld | ResumeError::Unknown) => {}
        }
    }
    let arrival = Arrival {
        kind: TransportKind::Sse,
        peer: addr,
        headers: Some(&headers),
        origin: text(header::ORIGIN.as_str()),
        path_user: None,
        query,
        cookie: text(header::COOKIE.as_str()),
        authorization: text(header::AUTHORIZATION.as_str()),
    };
    let peer = match admit(&gw, arrival) {
        Ok(peer) => peer,
        Err(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
            return (status, r.reason).into_response();
        }
    };
    let binary = peer.encoding == Encoding::MsgPack;
    let (transport, shared) = gw.sse().open(gw.config().limits.max_frame, binary);
    let Ok(rx) = shared.attach(None) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let session = crate::session::run(transport, None, peer, gw.clone());
    tokio::spawn(gw.tasks().track_future(session));
    stream(Some(shared.hello()), rx)
}

/// `POST /sse/{sessionId}`: one JSON frame (or the literal `ping`), or a
/// JSON array of frames; for a MessagePack session, one MessagePack frame.
pub(crate) async fn post(
    State(gw): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limit = gw.config().limits.max_frame.saturating_mul(16);
    if body.len() > limit {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body over 16 frames").into_response();
    }
    let token = headers
        .get(POST_TOKEN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let trimmed = body.trim_ascii_start();
    let binary = gw.sse().is_binary(&id);
    let frames = match trimmed.first() {
        // A MessagePack session's POST is one raw frame.
        _ if binary => vec![body],
        Some(b'[') => match serde_json::from_slice::<Vec<Box<RawValue>>>(trimmed) {
            Ok(all) => all
                .into_iter()
                .map(|f| Bytes::from(f.get().to_owned()))
                .collect(),
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("not an array of frames: {e}"),
                )
                    .into_response();
            }
        },
        _ => vec![body],
    };
    match gw.sse().post(&id, token, frames) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(PostError::Unknown) => (StatusCode::NOT_FOUND, "no such session").into_response(),
        Err(PostError::Forbidden) => {
            (StatusCode::FORBIDDEN, "wrong X-Rtgate-Post-Token").into_response()
        }
        Err(PostError::Busy) => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many frames waiting for this session",
        )
            .into_response(),
    }
}
