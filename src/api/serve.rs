//! The HTTP listener's accept loop: each connection is counted against the
//! connection caps when it is accepted (refused at once over them), served
//! as HTTP/1.1 whose request headers must arrive within
//! [`HEADER_READ_TIMEOUT`], upgraded to WebSocket where asked, and shut down
//! gracefully with the node. axum's `serve` offers neither the caps nor
//! hyper's header timeout, so this is the same loop with both.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::debug;

use crate::admission::count_connection;
use crate::caps::ConnPermit;
use crate::gateway::Gateway;
use crate::model::TransportKind;
use crate::transport::tcp::SharedTcp;

/// How long a client has to send a request's headers (PROTOCOL.md §9).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's byte stream with its place under the caps: the place is
/// freed when the stream is dropped, an upgraded WebSocket's included.
pub(crate) struct Counted<T> {
    io: T,
    _permit: ConnPermit,
}

impl<T> Counted<T> {
    /// `io`, counted by `permit`.
    pub(crate) fn new(io: T, permit: ConnPermit) -> Self {
        Self {
            io,
            _permit: permit,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A TCP listener whose connections are counted against the caps.
pub(crate) struct CappedListener {
    tcp: TcpListener,
    gw: Gateway,
}

impl CappedListener {
    /// Counts the connections `tcp` accepts in `gw`'s caps.
    pub(crate) fn new(tcp: TcpListener, gw: Gateway) -> Self {
        Self { tcp, gw }
    }
}

/// Small frames go out at once: without TCP_NODELAY, Nagle's algorithm holds
/// a frame while an earlier one is unacknowledged, a round trip of added
/// latency on every other message of a chat (measured: p50 41.6 ms instead
/// of 21 ms behind a 20 ms one-way delay).
pub(crate) fn no_delay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
}

impl Listener for CappedListener {
    type Io = SharedTcp;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = match self.tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match count_connection(&self.gw, TransportKind::WebSocket, peer) {
                Ok(permit) => {
                    no_delay(&stream);
                    return (SharedTcp::new(stream, Some(permit)), peer);
                }
                // Refused early: the stream is dropped, which closes it.
                Err(_) => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` on every connection `listener` accepts until `stop`; then
/// lets requests in progress finish.
pub(crate) async fn serve<L>(mut listener: L, app: Router, stop: CancellationToken)
where
    L: Listener<Addr = SocketAddr>,
{
    let conns = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            _ = stop.cancelled() => break,
        };
        let app = app.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(%peer, error = %e, "http connection ended");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    conns.close();
    conns.wait().await;
}
