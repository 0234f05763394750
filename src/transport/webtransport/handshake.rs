//! From a QUIC connection attempt to a WebTransport session: the QUIC and
//! HTTP/3 handshakes, the client's CONNECT request (answered by the edge
//! above), and the client's one bidirectional stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h3::ConnectionState;
use h3::ext::Protocol;
use http::{Method, Response, StatusCode};

use tracing::debug;

use super::flow::Flow;
use super::session::WebTransportTransport;
use super::{H3Connection, H3RequestStream, WtError, handshake, negotiate, wire};

/// How long a refused request's answer may take to reach the client before
/// the connection is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(100);

/// A connection attempt whose handshake has not started.
pub(crate) struct WtIncoming(pub(super) quinn::Incoming);

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
        let conn = tokio::time::timeout(deadline, self.0)
            .await
            .map_err(|_| handshake("no QUIC handshake in time"))?
            .map_err(handshake)?;
        let mut builder = h3::server::builder();
        builder
            .enable_webtransport(true)
            .enable_extended_connect(true)
            .enable_datagram(true)
            .max_webtransport_sessions(1)
            .send_grease(true);
        for (id, value) in negotiate::ANNOUNCED {
            builder.additional_setting(id, value);
        }
        let mut h3 = builder
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
    /// Whether it is an extended CONNECT for WebTransport (`:protocol`
    /// `webtransport`, or `webtransport-h3` as draft-15 and later say).
    pub(crate) fn is_webtransport(&self) -> bool {
        self.req.method() == Method::CONNECT
            && matches!(
                self.req.extensions().get::<Protocol>(),
                Some(&Protocol::WEB_TRANSPORT | &Protocol::WEB_TRANSPORT_H3)
            )
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
        self.header("origin")
    }

    /// A request header, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
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
    /// wraps both as a [`WebTransportTransport`].
    pub(crate) async fn accept(self, max_frame: usize) -> Result<WebTransportTransport, WtError> {
        let WtRequest {
            conn,
            mut h3,
            req: _,
            mut stream,
            deadline,
        } = self;
        // The CONNECT can overtake the client's SETTINGS (they travel on
        // different streams); the session needs them, so let the connection
        // read its control stream until they are in.
        let settings_deadline = tokio::time::Instant::now() + deadline;
        let client = loop {
            let settings = h3.settings();
            if let Some(client) = negotiate::client(|id| settings.get(id)) {
                break client;
            }
            if tokio::time::Instant::now() > settings_deadline {
                return Err(handshake(
                    "the client sent no SETTINGS enabling WebTransport and datagrams",
                ));
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), h3.accept()).await;
        };
        let ok = Response::builder()
            // Chromium still looks for this draft-02 header; other drafts
            // ignore it.
            .header("sec-webtransport-http3-draft", "draft02")
            .status(StatusCode::OK)
            .body(())
            .expect("a static response");
        stream.send_response(ok).await.map_err(handshake)?;
        // A client that speaks flow control opens its stream only with
        // credit for it.
        let mut flow = Flow::new(&client);
        for grant in flow.opening_grants() {
            stream.send_data(grant).await.map_err(handshake)?;
        }
        // From here on the HTTP/3 connection is not polled again: the
        // client's streams are taken from QUIC directly.
        let session = stream.id().into_inner();
        let data = tokio::time::timeout(deadline, data_stream(&conn, session))
            .await
            .map_err(|_| handshake("the client opened no stream in time"))??;
        debug!(draft = client.draft.as_str(), "webtransport session");
        Ok(WebTransportTransport::new(
            conn,
            h3,
            stream,
            data,
            max_frame,
            client.draft,
            flow,
        ))
    }
}

/// The client's bidirectional stream for `session`, its header read.
async fn data_stream(
    conn: &quinn::Connection,
    session: u64,
) -> Result<(quinn::SendStream, quinn::RecvStream), WtError> {
    let (send, mut recv) = conn.accept_bi().await.map_err(handshake)?;
    let mut header = Vec::with_capacity(16);
    for _ in 0..2 {
        let mut first = [0u8; 1];
        recv.read_exact(&mut first).await.map_err(handshake)?;
        let mut rest = vec![0u8; wire::varint_len(first[0]) - 1];
        recv.read_exact(&mut rest).await.map_err(handshake)?;
        header.push(first[0]);
        header.extend_from_slice(&rest);
    }
    let mut h = &header[..];
    let (kind, id) = (wire::take_varint(&mut h), wire::take_varint(&mut h));
    if kind != Some(wire::BIDI_STREAM) || id != Some(session) {
        return Err(handshake(format!(
            "expected a WebTransport stream for session {session}, got {kind:?} {id:?}"
        )));
    }
    Ok((send, recv))
}
