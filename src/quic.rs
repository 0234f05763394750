//! The WebTransport edge: the accept loop on each QUIC socket, a cap on
//! concurrent connections checked before the handshake, and the CONNECT
//! request admitted (path `/wt` or `/websocket/{userId}`, then the shared
//! admission) before the session driver runs over it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::debug;

use crate::admission::{Arrival, admit, count_connection};
use crate::gateway::Gateway;
use crate::model::TransportKind;
use crate::transport::PeerInfo;
use crate::transport::webtransport::{
    WebTransportTransport, WtEndpoint, WtError, WtIncoming, WtListener,
};

/// Starts an accept loop on every socket of `endpoint`; they end with the
/// node's shutdown.
pub(crate) fn serve(endpoint: &WtEndpoint, gw: &Gateway) {
    let active = Arc::new(AtomicUsize::new(0));
    for listener in endpoint.listeners() {
        tokio::spawn(accept_loop(listener, gw.clone(), active.clone()));
    }
}

async fn accept_loop(listener: WtListener, gw: Gateway, active: Arc<AtomicUsize>) {
    let stop = gw.shutdown().clone();
    let max = gw.config().quic.max_connections;
    loop {
        let incoming = tokio::select! {
            i = listener.accept() => match i { Some(i) => i, None => return },
            _ = stop.cancelled() => return,
        };
        // Admission control before the expensive handshake: the caps both
        // transports share, then QUIC's own.
        let Ok(permit) = count_connection(&gw, TransportKind::WebTransport, incoming.remote())
        else {
            incoming.refuse();
            continue;
        };
        if active.load(Ordering::Acquire) >= max {
            debug!(peer = %incoming.remote(), "refusing connection: at capacity");
            incoming.refuse();
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (gw, active) = (gw.clone(), active.clone());
        gw.tasks().clone().spawn(async move {
            // The handshake runs boxed: inline, its state (kilobytes of
            // QUIC, TLS and HTTP/3 in flight) would stay in the session's
            // task for the session's whole life.
            match Box::pin(open(incoming, &gw)).await {
                Ok((transport, peer)) => {
                    // The side door sends JSON datagrams: a MessagePack
                    // session takes every frame through its queue.
                    let door = (peer.encoding == crate::protocol::Encoding::Json)
                        .then(|| transport.datagrams());
                    crate::session::run(transport, door, peer, gw).await
                }
                Err(e) => debug!(error = %e, "webtransport connection ended before a session"),
            }
            active.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
        });
    }
}

/// Why a connection did not become a session.
#[derive(Debug, thiserror::Error)]
enum EdgeError {
    #[error(transparent)]
    Wt(#[from] WtError),
    #[error("refused {path}: {status}")]
    Refused { path: String, status: u16 },
}

/// Handshake and CONNECT admitted: the session's transport and what the
/// request told about its peer.
async fn open(
    incoming: WtIncoming,
    gw: &Gateway,
) -> Result<(WebTransportTransport, PeerInfo), EdgeError> {
    let req = incoming.handshake(gw.config().limits.login_timeout).await?;
    let path = req.path().to_string();
    let path_user = path
        .strip_prefix("/websocket/")
        .filter(|u| !u.is_empty() && !u.contains('/'))
        .map(percent_decode);
    let admitted = if !req.is_webtransport() || !(path == "/wt" || path_user.is_some()) {
        Err(404)
    } else {
        let query: HashMap<String, String> =
            form_urlencoded::parse(req.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let arrival = Arrival {
            kind: TransportKind::WebTransport,
            peer: req.remote(),
            headers: None,
            origin: req.origin(),
            path_user,
            query,
            cookie: req.header("cookie"),
            authorization: req.header("authorization"),
        };
        admit(gw, arrival).map_err(|r| r.status)
    };
    let peer = match admitted {
        Ok(peer) => peer,
        Err(status) => {
            req.refuse(status).await;
            return Err(EdgeError::Refused { path, status });
        }
    };
    let transport = req.accept(gw.config().limits.max_frame).await?;
    let peer = PeerInfo {
        wt_draft: Some(transport.draft().as_str()),
        ..peer
    };
    Ok((transport, peer))
}

/// A URL path component, percent-decoded.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
