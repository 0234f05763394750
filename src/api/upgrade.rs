//! The WebSocket endpoints `/websocket/{userId}` (legacy) and `/ws`: admit
//! the request, upgrade it, and run the session over the socket.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use tracing::debug;

use super::handshake::{Handshake, Socket};
use crate::admission::{Arrival, admit};
use crate::gateway::Gateway;
use crate::model::TransportKind;
use crate::protocol::Encoding;
use crate::protocol::encoding::MSGPACK_SUBPROTOCOL;
use crate::transport::websocket::WebSocketTransport;
use crate::transport::websocket_tcp::TcpWebSocket;

/// `GET /websocket/{userId}`: the legacy endpoint.
pub(crate) async fn legacy_upgrade(
    State(gw): State<Gateway>,
    Path(user): Path<String>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Handshake,
) -> Response {
    upgrade(gw, Some(user), addr, query, headers, ws)
}

/// `GET /ws`.
pub(crate) async fn ws_upgrade(
    State(gw): State<Gateway>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Handshake,
) -> Response {
    upgrade(gw, None, addr, query, headers, ws)
}

fn upgrade(
    gw: Gateway,
    path_user: Option<String>,
    addr: SocketAddr,
    query: HashMap<String, String>,
    headers: HeaderMap,
    ws: Handshake,
) -> Response {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let arrival = Arrival {
        kind: TransportKind::WebSocket,
        peer: addr,
        headers: Some(&headers),
        origin: text(header::ORIGIN),
        path_user,
        query,
        cookie: text(header::COOKIE),
        authorization: text(header::AUTHORIZATION),
    };
    // MessagePack by the subprotocol `rtgate.msgpack` (or by
    // `encoding=msgpack` in the query, which admission reads).
    let asks_msgpack = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == MSGPACK_SUBPROTOCOL);
    let mut peer = match admit(&gw, arrival) {
        Ok(peer) => peer,
        Err(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
            return (status, r.reason).into_response();
        }
    };
    let protocol = match asks_msgpack {
        true => {
            peer.encoding = Encoding::MsgPack;
            Some(MSGPACK_SUBPROTOCOL)
        }
        false => None,
    };
    let binary = peer.encoding == Encoding::MsgPack;
    let max_frame = gw.config().limits.max_frame;
    let (response, socket) = ws.accept(protocol);
    // The wait for the upgrade is a task of its own, which starts the
    // session's and ends: nothing of it is kept for the session's life.
    tokio::spawn(async move {
        let tasks = gw.tasks().clone();
        match socket.await {
            Ok(Socket::Tcp(tcp, read)) => {
                // The fan-out's side door writes JSON text frames: a
                // MessagePack session takes every frame through its queue.
                let door = (!binary).then(|| tcp.sender());
                let t = TcpWebSocket::new(tcp, read, max_frame, binary);
                tasks.spawn(crate::session::run(t, door, peer, gw));
            }
            Ok(Socket::Other(io)) => {
                let t = WebSocketTransport::accept(io, max_frame, binary).await;
                tasks.spawn(crate::session::run(t, None, peer, gw));
            }
            Err(e) => debug!(error = %e, "websocket upgrade failed"),
        }
    });
    response
}
