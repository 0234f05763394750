//! WebTransport transport (quinn + h3 + h3-webtransport). h3-webtransport
//! says it is experimental, so no h3 or quinn type leaves this module: it
//! offers the QUIC endpoint, the HTTP/3 handshake up to the client's CONNECT
//! request, and the [`Transport`] over the client's bidirectional stream
//! (4-byte big-endian length-prefixed frames) and datagrams. Whether a
//! request is accepted is decided by the QUIC edge above it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
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
use tokio::task::JoinHandle;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{info, warn};

use super::{Delivery, Incoming, PeerInfo, Transport, TransportError};
use crate::certs::{Certificate, CurrentCertificate, TlsError};
use crate::config::Congestion;
use crate::protocol::CloseCode;

type WtSession = WebTransportSession<h3_quinn::Connection, Bytes>;
type WtStream = h3_webtransport::stream::BidiStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type H3Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3RequestStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type Sender = DatagramSender<h3_quinn::datagram::SendDatagramHandler, Bytes>;

/// Datagrams waiting to be read before new ones are dropped (they are
/// volatile: dropping is allowed).
const DATAGRAM_QUEUE: usize = 256;
/// Bytes the h3 datagram header (quarter stream id) may take.
const DATAGRAM_OVERHEAD: usize = 8;
/// How long a closing session lets queued data reach the peer.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// How long a refused request's answer may take to reach the client before
/// the connection is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(100);

/// Why the WebTransport endpoint could not start, or a connection did not
/// become a session.
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
    /// The QUIC or HTTP/3 handshake failed, or the client did not do its
    /// part in time.
    #[error("handshake: {0}")]
    Handshake(String),
}

fn handshake(e: impl std::fmt::Display) -> WtError {
    WtError::Handshake(e.to_string())
}

/// QUIC settings exposed as options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuicOptions {
    /// QUIC keep-alive interval.
    pub keepalive: Duration,
    /// QUIC idle timeout: a peer silent this long is gone.
    pub idle_timeout: Duration,
    /// Congestion controller.
    pub congestion: Congestion,
}

/// The QUIC endpoint (one socket per bound address).
pub(crate) struct WtEndpoint {
    endpoints: Vec<quinn::Endpoint>,
    /// The bound UDP address (the first one).
    pub addr: SocketAddr,
    identity: CurrentCertificate,
    options: QuicOptions,
}

fn server_config(id: &Certificate, o: &QuicOptions) -> Result<quinn::ServerConfig, WtError> {
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

impl WtEndpoint {
    /// Binds `addr`, and `[::1]` on the same port when `addr` is
    /// `127.0.0.1`, since browsers try `localhost` as `::1` first.
    pub(crate) fn bind(
        addr: SocketAddr,
        identity: CurrentCertificate,
        options: QuicOptions,
    ) -> Result<WtEndpoint, WtError> {
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
        Ok(WtEndpoint {
            endpoints,
            addr: bound,
            identity,
            options,
        })
    }

    /// One listener per bound socket, to accept connections from.
    pub(crate) fn listeners(&self) -> Vec<WtListener> {
        self.endpoints.iter().cloned().map(WtListener).collect()
    }

    /// The certificate in use (for `/cert-hash`).
    pub(crate) fn identity(&self) -> &CurrentCertificate {
        &self.identity
    }

    /// Switches new handshakes to a new certificate (existing sessions keep
    /// theirs).
    pub(crate) fn set_identity(&self, cert: Certificate) -> Result<(), WtError> {
        let sc = server_config(&cert, &self.options)?;
        for ep in &self.endpoints {
            ep.set_server_config(Some(sc.clone()));
        }
        self.identity.set(cert);
        Ok(())
    }

    /// Stops accepting and closes every connection with 1001.
    pub(crate) fn close(&self) {
        for ep in &self.endpoints {
            ep.close(
                quinn::VarInt::from_u32(CloseCode::GoingAway.code().into()),
                b"server going away",
            );
        }
    }
}

/// Accepts connections on one bound socket.
pub(crate) struct WtListener(quinn::Endpoint);

impl WtListener {
    /// The next connection attempt, before its handshake; `None` once the
    /// endpoint is closed.
    pub(crate) async fn accept(&self) -> Option<WtIncoming> {
        self.0.accept().await.map(WtIncoming)
    }
}

/// A connection attempt whose handshake has not started.
pub(crate) struct WtIncoming(quinn::Incoming);

impl WtIncoming {
    /// The client's address.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.0.remote_address()
    }

    /// Refuses the attempt before any handshake work.
    pub(crate) fn refuse(self) {
        self.0.refuse();
    }

    /// Completes the QUIC and HTTP/3 handshakes and reads the client's first
    /// request, each step within `deadline`.
    pub(crate) async fn handshake(self, deadline: Duration) -> Result<WtRequest, WtError> {
        let conn = self.0.await.map_err(handshake)?;
        let mut h3 = h3::server::builder()
            .enable_webtransport(true)
            .enable_extended_connect(true)
            .enable_datagram(true)
            .max_webtransport_sessions(1)
            .send_grease(true)
            .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
            .await
            .map_err(handshake)?;
        let resolver = tokio::time::timeout(deadline, h3.accept())
            .await
            .map_err(|_| handshake("no request in time"))?
            .map_err(handshake)?
            .ok_or_else(|| handshake("connection closed"))?;
        let (req, stream) = resolver.resolve_request().await.map_err(handshake)?;
        Ok(WtRequest {
            conn,
            h3,
            req,
            stream,
            deadline,
        })
    }
}

/// A client's first HTTP/3 request, to be accepted as a WebTransport
/// session or refused.
pub(crate) struct WtRequest {
    conn: quinn::Connection,
    h3: H3Connection,
    req: http::Request<()>,
    stream: H3RequestStream,
    deadline: Duration,
}

impl WtRequest {
    /// Whether it is an extended CONNECT for WebTransport.
    pub(crate) fn is_webtransport(&self) -> bool {
        self.req.method() == Method::CONNECT
            && self.req.extensions().get::<Protocol>() == Some(&Protocol::WEB_TRANSPORT)
    }

    /// The request path.
    pub(crate) fn path(&self) -> &str {
        self.req.uri().path()
    }

    /// The query string, if any.
    pub(crate) fn query(&self) -> Option<&str> {
        self.req.uri().query()
    }

    /// The `Origin` header, if any.
    pub(crate) fn origin(&self) -> Option<&str> {
        self.req
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
    }

    /// The client's address.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Answers the request with an HTTP status and closes the connection.
    pub(crate) async fn refuse(mut self, status: u16) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let resp = Response::builder()
            .status(status)
            .body(())
            .expect("a static response");
        let _ = self.stream.send_response(resp).await;
        let _ = self.stream.finish().await;
        tokio::time::sleep(REFUSE_LINGER).await;
        self.conn.close(quinn::VarInt::from_u32(0x100), b"refused");
    }

    /// Accepts the session, waits for the client's bidirectional stream and
    /// wraps both as a [`Transport`]. Frames larger than `max_frame` are read
    /// whole (up to 4x) so they can be answered with 413.
    pub(crate) async fn accept(
        self,
        peer: PeerInfo,
        max_frame: usize,
    ) -> Result<WebTransportTransport, WtError> {
        let WtRequest {
            conn,
            mut h3,
            req,
            stream,
            deadline,
        } = self;
        // The CONNECT can overtake the client's SETTINGS (they travel on
        // different streams); the session needs them, so let the connection
        // read its control stream until they are in.
        let settings_deadline = tokio::time::Instant::now() + deadline;
        while !h3.settings().enable_webtransport() {
            if tokio::time::Instant::now() > settings_deadline {
                return Err(handshake(
                    "the client sent no SETTINGS enabling WebTransport",
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), h3.accept()).await;
        }
        let session = Arc::new(
            WtSession::accept(req, stream, h3)
                .await
                .map_err(handshake)?,
        );
        let bidi = tokio::time::timeout(deadline, session.accept_bi())
            .await
            .map_err(|_| handshake("the client opened no stream in time"))?
            .map_err(handshake)?;
        let stream = match bidi {
            Some(AcceptedBi::BidiStream(_, s)) => s,
            Some(AcceptedBi::Request(..)) => {
                return Err(handshake("a second request instead of a stream"));
            }
            None => return Err(handshake("closed before opening a stream")),
        };
        let (tx, datagrams) = mpsc::channel(DATAGRAM_QUEUE);
        let mut reader = session.datagram_reader();
        let datagram_reader = tokio::spawn(async move {
            while let Ok(d) = reader.read_datagram().await {
                // Volatile: when the session cannot keep up, datagrams are dropped.
                if tx.try_send(d.into_payload()).is_err() && tx.is_closed() {
                    break;
                }
            }
        });
        let hard_limit = max_frame.saturating_mul(4);
        Ok(WebTransportTransport {
            peer,
            framed: Framed::new(
                stream,
                LengthDelimitedCodec::builder()
                    .max_frame_length(hard_limit)
                    .new_codec(),
            ),
            datagrams,
            datagram_reader,
            sender: session.datagram_sender(),
            conn,
            _session: session,
        })
    }
}

/// A WebTransport session.
pub(crate) struct WebTransportTransport {
    peer: PeerInfo,
    framed: Framed<WtStream, LengthDelimitedCodec>,
    datagrams: mpsc::Receiver<Bytes>,
    /// Reads datagrams into `datagrams`; stopped when the session ends.
    datagram_reader: JoinHandle<()>,
    sender: Sender,
    conn: quinn::Connection,
    /// Keeps the session (and its CONNECT stream) open.
    _session: Arc<WtSession>,
}

impl Drop for WebTransportTransport {
    fn drop(&mut self) {
        self.datagram_reader.abort();
    }
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
