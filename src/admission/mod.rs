//! One admission path for both transports: whether a new connection may
//! become a session (browser origin, node shutting down), who the client is
//! (its address through `--trusted-proxy` X-Forwarded-For), and the
//! [`PeerInfo`] its session starts with. The WebSocket upgrade handler and
//! the QUIC accept loop both call [`admit`].

pub(crate) mod forwarded;

use std::collections::HashMap;
use std::net::SocketAddr;

use http::HeaderMap;

use crate::auth::origin_allowed;
use crate::caps::{CapHit, ConnPermit};
use crate::gateway::Gateway;
use crate::model::TransportKind;
use crate::protocol::Encoding;
use crate::telemetry;
use crate::transport::PeerInfo;

/// Counts a new connection from `peer` against the connection caps, before
/// anything is spent on it. A trusted proxy is exempt from the per-address
/// cap (it carries many clients); refusals are counted in `/metrics`.
pub(crate) fn count_connection(
    gw: &Gateway,
    kind: TransportKind,
    peer: SocketAddr,
) -> Result<ConnPermit, CapHit> {
    let trusted = gw
        .config()
        .auth
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer.ip()));
    gw.conns().acquire(peer.ip(), !trusted).inspect_err(|hit| {
        tracing::debug!(%peer, transport = %kind, cap = hit.label(), "connection refused");
        telemetry::connection_refused(kind, hit.label());
    })
}

/// A connection asking to become a session.
pub(crate) struct Arrival<'a> {
    /// The transport it came on.
    pub kind: TransportKind,
    /// The direct peer's address.
    pub peer: SocketAddr,
    /// The HTTP request headers, where the transport has them (WebSocket):
    /// X-Forwarded-For is read from them for trusted proxies.
    pub headers: Option<&'a HeaderMap>,
    /// The browser's `Origin`, if any.
    pub origin: Option<&'a str>,
    /// `{userId}` of the legacy path `/websocket/{userId}`.
    pub path_user: Option<String>,
    /// The query string's parameters.
    pub query: HashMap<String, String>,
    /// The request's `Cookie` header.
    pub cookie: Option<&'a str>,
    /// The request's `Authorization` header.
    pub authorization: Option<&'a str>,
}

/// Why a connection was refused, as an HTTP status and a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub(crate) struct Refusal {
    /// The HTTP status to answer with.
    pub status: u16,
    /// Why, for the client and the logs.
    pub reason: &'static str,
}

/// Decides whether `a` may become a session; on success, the peer its
/// session starts with.
pub(crate) fn admit(gw: &Gateway, a: Arrival<'_>) -> Result<PeerInfo, Refusal> {
    let cfg = gw.config();
    if !origin_allowed(&cfg.auth.allowed_origins, a.origin) {
        tracing::info!(peer = %a.peer, origin = a.origin, transport = %a.kind, "refused: origin not allowed");
        return Err(Refusal {
            status: 403,
            reason: "origin not allowed",
        });
    }
    if gw.shutdown().is_cancelled() {
        return Err(Refusal {
            status: 503,
            reason: "shutting down",
        });
    }
    let addr = match a.headers {
        Some(h) => forwarded::client_addr(a.peer, h, &cfg.auth.trusted_proxies),
        None => a.peer,
    };
    // Behind a trusted proxy the per-address cap applies to the forwarded
    // client (the proxy's own address was exempt at accept).
    let address_permit = if addr.ip() != a.peer.ip() {
        match gw.conns().acquire_address(addr.ip()) {
            Ok(p) => p.map(std::sync::Arc::new),
            Err(hit) => {
                tracing::debug!(client = %addr, transport = %a.kind, cap = hit.label(), "refused: forwarded client at its cap");
                telemetry::connection_refused(a.kind, hit.label());
                return Err(Refusal {
                    status: 429,
                    reason: "this address is at its connection cap",
                });
            }
        }
    } else {
        None
    };
    let mut query = a.query;
    let Ok(encoding) = Encoding::from_query(query.get("encoding").map(String::as_str)) else {
        return Err(Refusal {
            status: 400,
            reason: "encoding must be json or msgpack",
        });
    };
    // Request headers are credentials for a connect hook only; without one
    // nothing reads them, so they are not kept.
    let hooked = gw.hooks().has_connect();
    let keep = |h: Option<&str>| h.filter(|_| hooked).map(str::to_owned);
    Ok(PeerInfo {
        kind: a.kind,
        addr,
        path_user: a.path_user,
        query_user: query.remove("userId"),
        query_token: query.remove("token"),
        cookie: keep(a.cookie),
        origin: keep(a.origin),
        authorization: keep(a.authorization),
        wt_draft: None,
        address_permit,
        encoding,
    })
}
