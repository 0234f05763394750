//! HTTPS and wss on the HTTP listener (`--tls-http`), with the same
//! certificate as WebTransport: an axum [`Listener`] that completes TLS
//! handshakes concurrently, so a slow client never holds up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::serve::Counted;
use crate::admission::count_connection;
use crate::certs::{CurrentCertificate, TlsError};
use crate::gateway::Gateway;
use crate::model::TransportKind;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener that hands out TLS streams.
pub(crate) struct TlsListener {
    rx: mpsc::Receiver<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` with the certificate in `identity` (a
    /// renewed certificate is picked up for new connections).
    /// Connections are counted against `gw`'s caps at accept, before the
    /// handshake.
    pub(crate) fn new(
        tcp: TcpListener,
        identity: CurrentCertificate,
        gw: Gateway,
    ) -> Result<Self, TlsError> {
        let local = tcp
            .local_addr()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let first = identity.get();
        let mut current = (
            first.sha256,
            TlsAcceptor::from(Arc::new(first.https_config()?)),
        );
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = count_connection(&gw, TransportKind::WebSocket, peer) else {
                    continue;
                };
                super::serve::no_delay(&stream);
                let id = identity.get();
                if id.sha256 != current.0
                    && let Ok(cfg) = id.https_config()
                {
                    current = (id.sha256, TlsAcceptor::from(Arc::new(cfg)));
                }
                let (acceptor, out) = (current.1.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = out.send((Counted::new(tls, permit), peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => debug!(%peer, "tls handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self { rx, local })
    }
}

impl Listener for TlsListener {
    type Io = Counted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept task only ends with the listener; never resolve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
