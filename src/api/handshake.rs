//! The WebSocket opening handshake on HTTP/1.1 (RFC 6455 §4.2): the
//! request's checks (with the statuses axum's extractor gave), the 101
//! answer, and the upgraded connection handed over as what it is: a plain
//! TCP connection's [`SharedTcp`], which tungstenite then reads directly,
//! or any other stream (TLS) for tokio-tungstenite.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

use crate::transport::tcp::SharedTcp;

/// A request to open a WebSocket, checked.
pub(crate) struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request cannot open a WebSocket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("Request method must be `GET`")]
    MethodNotGet,
    #[error("Connection header did not include 'upgrade'")]
    Connection,
    #[error("`Upgrade` header did not include 'websocket'")]
    Upgrade,
    #[error("`Sec-WebSocket-Version` header did not include '13'")]
    Version,
    #[error("`Sec-WebSocket-Key` header missing")]
    KeyMissing,
    #[error("WebSocket request couldn't be upgraded since no upgrade state was present")]
    NotUpgradable,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = match self {
            Rejection::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, self.to_string()).into_response()
    }
}

/// Whether the comma-separated header `name` holds `token` (any case).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        if parts.method != Method::GET || parts.version > Version::HTTP_11 {
            return Err(Rejection::MethodNotGet);
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(Rejection::Connection);
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(Rejection::Upgrade);
        }
        let version = parts.headers.get(header::SEC_WEBSOCKET_VERSION);
        if version.is_none_or(|v| v.as_bytes() != b"13") {
            return Err(Rejection::Version);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(Rejection::KeyMissing)?
            .clone();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Rejection::NotUpgradable)?;
        Ok(Self { key, on_upgrade })
    }
}

/// An upgraded connection.
pub(crate) enum Socket {
    /// A plain TCP connection, with the bytes read past the request.
    Tcp(SharedTcp, Bytes),
    /// Any other stream.
    Other(TokioIo<Upgraded>),
}

impl Handshake {
    /// The 101 answer, naming the subprotocol chosen if any; and the
    /// connection, once the answer has gone out.
    pub(crate) fn accept(
        self,
        protocol: Option<&'static str>,
    ) -> (Response, impl Future<Output = Result<Socket, hyper::Error>>) {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let mut response = (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, "upgrade".to_owned()),
                (header::UPGRADE, "websocket".to_owned()),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response();
        if let Some(p) = protocol {
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        let on_upgrade = self.on_upgrade;
        let socket = async move {
            let upgraded = on_upgrade.await?;
            Ok(match upgraded.downcast::<TokioIo<SharedTcp>>() {
                Ok(parts) => Socket::Tcp(parts.io.into_inner(), parts.read_buf),
                Err(other) => Socket::Other(TokioIo::new(other)),
            })
        };
        (response, socket)
    }
}
