//! WebTransport transport (quinn + h3 + h3-webtransport): the QUIC endpoint,
//! the CONNECT handshake for `/wt` and `/websocket/{userId}`, and the
//! [`Transport`] implementation over the client's bidirectional stream
//! (4-byte big-endian length-prefixed frames) and datagrams. No h3 or quinn
//! type leaves this module.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use h3::ConnectionState;
use h3::ext::Protocol;
use h3_datagram::datagram_handler::DatagramSender;
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use http::{Method, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, info, warn};

use super::{Delivery, Incoming, PeerInfo, Transport, TransportError, TransportKind};
use crate::auth::origin_allowed;
use crate::config::Congestion;
use crate::gateway::Gateway;
use crate::protocol::CloseCode;
use crate::tls::{CurrentIdentity, Identity, TlsError};

type Session = WebTransportSession<h3_quinn::Connection, Bytes>;
type WtStream = h3_webtransport::stream::BidiStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type Sender = DatagramSender<h3_quinn::datagram::SendDatagramHandler, Bytes>;

/// Datagrams waiting to be read before new ones are dropped (they are
/// volatile: dropping is allowed).
const DATAGRAM_QUEUE: usize = 256;
/// Bytes the h3 datagram header (quarter stream id) may take.
const DATAGRAM_OVERHEAD: usize = 8;
/// How long a closing session lets queued data reach the peer.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Why the WebTransport endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum WtError {
    /// The UDP socket could not be bound.
    #[error("cannot listen on udp {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate or TLS configuration is unusable.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
}

/// QUIC settings exposed as options.
#[derive(Debug, Clone, Copy)]
pub struct QuicOptions {
    /// QUIC keep-alive interval.
    pub keepalive: Duration,
    /// QUIC idle timeout: a peer silent this long is gone.
    pub idle_timeout: Duration,
    /// Congestion controller.
    pub congestion: Congestion,
    /// Most concurrent QUIC connections; more are refused before the handshake.
    pub max_connections: usize,
}

/// A running WebTransport endpoint (one per bound address).
pub struct WtServer {
    endpoints: Vec<quinn::Endpoint>,
    /// The bound UDP address (the first one).
    pub addr: SocketAddr,
    identity: CurrentIdentity,
    options: QuicOptions,
}

fn server_config(id: &Identity, o: &QuicOptions) -> Result<quinn::ServerConfig, WtError> {
    let tls = id.server_config()?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| WtError::Tls(TlsError::Config(e.to_string())))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(o.keepalive));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(o.idle_timeout)
            .map_err(|e| WtError::Tls(TlsError::Config(e.to_string())))?,
    ));
    match o.congestion {
        Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        }
    };
    sc.transport_config(Arc::new(t));
    // A phone that changes networks keeps its session.
    sc.migration(true);
    Ok(sc)
}

impl WtServer {
    /// Binds `addr` (and `[::1]` on the same port when `addr` is
    /// `127.0.0.1`, since browsers try `localhost` as `::1` first) and serves
    /// WebTransport sessions into the gateway.
    pub fn start(
        addr: SocketAddr,
        identity: CurrentIdentity,
        options: QuicOptions,
        gw: Gateway,
    ) -> Result<WtServer, WtError> {
        let sc = server_config(&identity.get(), &options)?;
        let first = quinn::Endpoint::server(sc.clone(), addr)
            .map_err(|source| WtError::Bind { addr, source })?;
        let bound = first
            .local_addr()
            .map_err(|source| WtError::Bind { addr, source })?;
        let mut endpoints = vec![first];
        if bound.ip() == IpAddr::from([127, 0, 0, 1]) {
            let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port());
            match quinn::Endpoint::server(sc, v6) {
                Ok(e) => endpoints.push(e),
                Err(e) => {
                    warn!(addr = %v6, error = %e, "cannot also listen on ::1; browsers may not reach localhost")
                }
            }
        }
        let active = Arc::new(AtomicUsize::new(0));
        for ep in &endpoints {
            let (ep, gw, active) = (ep.clone(), gw.clone(), active.clone());
            tokio::spawn(accept_loop(ep, gw, active, options.max_connections));
        }
        Ok(WtServer {
            endpoints,
            addr: bound,
            identity,
            options,
        })
    }

    /// The identity in use (for `/cert-hash`).
    pub fn identity(&self) -> &CurrentIdentity {
        &self.identity
    }

    /// Switches new handshakes to a new certificate (existing sessions keep
    /// theirs).
    pub fn set_identity(&self, id: Identity) -> Result<(), WtError> {
        let sc = server_config(&id, &self.options)?;
        for ep in &self.endpoints {
            ep.set_server_config(Some(sc.clone()));
        }
        self.identity.set(id);
        Ok(())
    }

    /// Stops accepting and closes every connection with 1001.
    pub fn close(&self) {
        for ep in &self.endpoints {
            ep.close(
                quinn::VarInt::from_u32(CloseCode::GoingAway.code().into()),
                b"server going away",
            );
        }
    }
}

async fn accept_loop(ep: quinn::Endpoint, gw: Gateway, active: Arc<AtomicUsize>, max: usize) {
    let stop = gw.shutdown().clone();
    loop {
        let incoming = tokio::select! {
            i = ep.accept() => match i { Some(i) => i, None => return },
            _ = stop.cancelled() => return,
        };
        // Admission control before the expensive handshake.
        if active.load(Ordering::Acquire) >= max {
            debug!(peer = %incoming.remote_address(), "refusing connection: at capacity");
            incoming.refuse();
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (gw, active) = (gw.clone(), active.clone());
        gw.tasks().clone().spawn(async move {
            if let Err(e) = handle(incoming, gw).await {
                debug!(error = %e, "webtransport connection ended before a session");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Handshake, CONNECT, the client's stream, then the session driver.
async fn handle(incoming: quinn::Incoming, gw: Gateway) -> Result<(), String> {
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let deadline = gw.config().login_timeout;
    let mut h3conn = h3::server::builder()
        .enable_webtransport(true)
        .enable_extended_connect(true)
        .enable_datagram(true)
        .max_webtransport_sessions(1)
        .send_grease(true)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let resolver = tokio::time::timeout(deadline, h3conn.accept())
        .await
        .map_err(|_| "no request in time".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("connection closed")?;
    let (req, mut stream) = resolver
        .resolve_request()
        .await
        .map_err(|e| e.to_string())?;

    let is_wt = req.method() == Method::CONNECT
        && req.extensions().get::<Protocol>() == Some(&Protocol::WEB_TRANSPORT);
    let path = req.uri().path().to_string();
    let path_user = path
        .strip_prefix("/websocket/")
        .filter(|u| !u.is_empty() && !u.contains('/'));
    let refuse = if !is_wt || !(path == "/wt" || path_user.is_some()) {
        Some(StatusCode::NOT_FOUND)
    } else if !origin_allowed(
        &gw.config().allowed_origins,
        req.headers().get("origin").and_then(|v| v.to_str().ok()),
    ) {
        Some(StatusCode::FORBIDDEN)
    } else if gw.shutdown().is_cancelled() {
        Some(StatusCode::SERVICE_UNAVAILABLE)
    } else {
        None
    };
    if let Some(status) = refuse {
        let resp = Response::builder()
            .status(status)
            .body(())
            .expect("a static response");
        let _ = stream.send_response(resp).await;
        let _ = stream.finish().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.close(quinn::VarInt::from_u32(0x100), b"refused");
        return Err(format!("refused {path}: {status}"));
    }
    let mut query: std::collections::HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let peer = PeerInfo {
        kind: TransportKind::WebTransport,
        addr: conn.remote_address(),
        path_user: path_user.map(percent_decode),
        query_user: query.remove("userId"),
        query_token: query.remove("token"),
    };

    // The CONNECT can overtake the client's SETTINGS (they travel on
    // different streams); the session needs them, so let the connection
    // read its control stream until they are in.
    let settings_deadline = tokio::time::Instant::now() + deadline;
    while !h3conn.settings().enable_webtransport() {
        if tokio::time::Instant::now() > settings_deadline {
            return Err("the client sent no SETTINGS enabling WebTransport".into());
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), h3conn.accept()).await;
    }
    let session = Arc::new(
        Session::accept(req, stream, h3conn)
            .await
            .map_err(|e| e.to_string())?,
    );
    let bidi = tokio::time::timeout(deadline, session.accept_bi())
        .await
        .map_err(|_| "the client opened no stream in time".to_string())?
        .map_err(|e| e.to_string())?;
    let stream = match bidi {
        Some(AcceptedBi::BidiStream(_, s)) => s,
        Some(AcceptedBi::Request(..)) => return Err("a second request instead of a stream".into()),
        None => return Err("closed before opening a stream".into()),
    };
    let (tx, datagrams) = mpsc::channel(DATAGRAM_QUEUE);
    let mut reader = session.datagram_reader();
    let reader_task = tokio::spawn(async move {
        while let Ok(d) = reader.read_datagram().await {
            // Volatile: when the session cannot keep up, datagrams are dropped.
            if tx.try_send(d.into_payload()).is_err() && tx.is_closed() {
                break;
            }
        }
    });
    let hard_limit = gw.config().max_frame.saturating_mul(4);
    let transport = WebTransportTransport {
        peer,
        framed: Framed::new(
            stream,
            LengthDelimitedCodec::builder()
                .max_frame_length(hard_limit)
                .new_codec(),
        ),
        datagrams,
        sender: session.datagram_sender(),
        conn: conn.clone(),
        _session: session,
    };
    crate::session::run(transport, gw).await;
    reader_task.abort();
    Ok(())
}

/// A URL path component, percent-decoded.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A WebTransport session.
pub struct WebTransportTransport {
    peer: PeerInfo,
    framed: Framed<WtStream, LengthDelimitedCodec>,
    datagrams: mpsc::Receiver<Bytes>,
    sender: Sender,
    conn: quinn::Connection,
    /// Keeps the session (and its CONNECT stream) open.
    _session: Arc<Session>,
}

fn io(e: impl std::fmt::Display) -> TransportError {
    TransportError::Io(e.to_string())
}

impl Transport for WebTransportTransport {
    fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    fn detects_dead_peers(&self) -> bool {
        // QUIC keep-alive and idle timeout notice a dead peer; the session
        // need not close quiet but live clients.
        true
    }

    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        // Both branches are cancel-safe: FramedRead keeps partial frames in
        // its buffer, and mpsc::Receiver::recv loses nothing.
        tokio::select! {
            frame = self.framed.next() => match frame {
                Some(Ok(b)) => Some(Ok(Incoming::Frame(b.freeze()))),
                Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Some(Ok(Incoming::TooLarge(usize::MAX))),
                Some(Err(e)) => Some(Err(TransportError::Closed(e.to_string()))),
                None => None,
            },
            Some(d) = self.datagrams.recv() => Some(Ok(Incoming::Datagram(d))),
        }
    }

    async fn send(&mut self, frame: Bytes, how: Delivery) -> Result<(), TransportError> {
        if how == Delivery::Volatile
            && self
                .conn
                .max_datagram_size()
                .is_some_and(|max| frame.len() + DATAGRAM_OVERHEAD <= max)
            && self.sender.send_datagram(frame.clone()).is_ok()
        {
            return Ok(());
        }
        self.framed.feed(frame).await.map_err(io)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        SinkExt::<Bytes>::flush(&mut self.framed).await.map_err(io)
    }

    async fn keepalive(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let _ = SinkExt::<Bytes>::flush(&mut self.framed).await;
        let _ = self.framed.get_mut().shutdown().await;
        // Let what is queued reach the peer, unless it closes first.
        let _ = tokio::time::timeout(CLOSE_LINGER, self.conn.closed()).await;
        info!(code = code.code(), "closing webtransport session");
        self.conn.close(
            quinn::VarInt::from_u32(code.code().into()),
            reason.as_bytes(),
        );
    }
}
