//! WebTransport transport (quinn + h3): the QUIC endpoint with transport
//! limits sized for a chat session, the handshake up to the client's
//! CONNECT request (`handshake`), and the session as a [`Transport`]
//! (`session`) over the client's bidirectional stream and datagrams. No h3
//! or quinn type leaves this module; whether a request is accepted is
//! decided by the QUIC edge above it.
//!
//! [`Transport`]: crate::transport::Transport

mod capsule;
mod copies;
mod datagrams;
mod flow;
pub(crate) mod fuzzing;
mod handshake;
mod inbound;
mod link_queue;
mod negotiate;
mod session;
mod wire;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::warn;

pub(crate) use handshake::WtIncoming;
pub(crate) use session::WebTransportTransport;

use crate::certs::{Certificate, CurrentCertificate, TlsError};
use crate::config::Congestion;
use crate::protocol::CloseCode;

type H3Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3RequestStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

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
    /// The frame limit, which sizes the receive windows.
    pub max_frame: usize,
}

/// Bidirectional streams a client may have open: the CONNECT stream, the
/// session's one data stream, and one more, which is refused.
const CLIENT_BIDI_STREAMS: u32 = 3;
/// Unidirectional streams a client may have open: its HTTP/3 control and two
/// QPACK streams, and one more, which is refused.
const CLIENT_UNI_STREAMS: u32 = 4;
/// Datagrams received but not yet read, in bytes: a few dozen volatile
/// messages; older ones are dropped beyond it (volatile may be dropped).
const DATAGRAM_RECEIVE_BUFFER: usize = 64 * 1024;
/// Datagrams waiting to be sent, in bytes.
const DATAGRAM_SEND_BUFFER: usize = 64 * 1024;

/// Ack-eliciting packets a peer may take before it must acknowledge (the
/// IETF ack-frequency draft, for peers that announce support): it then
/// acknowledges on its `max_ack_delay` timer instead of at every second
/// packet, so a fan-out's acknowledgements come back in bursts the server
/// reads in a few wakes (`BENCHMARKS.md`, "WebTransport fan-out").
const ACK_ELICITING_THRESHOLD: u32 = 9;
/// A packet out of order is acknowledged at once, as without the extension,
/// so losses are reported as early as before.
const ACK_REORDERING_THRESHOLD: u32 = 1;

/// QUIC transport limits for a chat session: a stream window of four frames
/// (a whole oversize frame can still be read and answered with 413), a
/// connection window of two stream windows, and only the streams the
/// protocol uses. Windows are credit, not memory: buffers grow only with
/// data in flight.
fn transport_limits(t: &mut quinn::TransportConfig, max_frame: usize) {
    let frame = u64::try_from(max_frame).unwrap_or(u64::MAX);
    let stream_window = frame.saturating_mul(4).clamp(16 * 1024, 1 << 30);
    t.max_concurrent_bidi_streams(CLIENT_BIDI_STREAMS.into())
        .max_concurrent_uni_streams(CLIENT_UNI_STREAMS.into())
        .stream_receive_window(quinn::VarInt::from_u64(stream_window).expect("below 2^62"))
        .receive_window(quinn::VarInt::from_u64(stream_window * 2).expect("below 2^62"))
        .send_window(stream_window * 4)
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into())
        .reordering_threshold(ACK_REORDERING_THRESHOLD.into());
    t.ack_frequency_config(Some(ack));
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
    transport_limits(&mut t, o.max_frame);
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
