//! Stand-ins for the push services, which cannot be reached from here: one
//! HTTPS server (HTTP/2 and HTTP/1.1 by ALPN, a self-signed certificate the
//! node trusts through `--push-ca`) that answers as Apple's, Google's and
//! the browsers' services document, and records every request for the
//! tests to check.
//!
//! - Web Push (RFC 8030) at `/wp/<name>`: 201; a name starting `gone` 410,
//!   `busy` 429 with `Retry-After: 1` the first time.
//! - APNs at `/3/device/<token>`: only over HTTP/2; the provider token must
//!   be an ES256 JWT of the configured key (`kid`, `iss`, `iat` within the
//!   hour) or 403 `InvalidProviderToken`; `apns-topic` must be the bundle
//!   id or 400 `BadTopic`; tokens starting `bad` 400 `BadDeviceToken`,
//!   `dead` 410 `Unregistered`, `0429` 429 `TooManyRequests` the first time.
//! - OAuth at `/token`: the service account's RS256 assertion checked
//!   (`iss`, `scope`, `aud`) or 400 `invalid_grant`; answers an access token.
//! - FCM HTTP v1 at `/v1/projects/<p>/messages:send`: a bearer token issued
//!   by `/token` or 401; tokens starting `dead` 404 `UNREGISTERED`,
//!   `bogus` and `badfield` 400 `INVALID_ARGUMENT` about the token.
//!
//! And, for Firefox, the other half of a browser's push service
//! (`PushServices::autopush`): the WebSocket protocol Firefox speaks to
//! Mozilla's autopush (`dom.push.serverURL`: hello, register with the
//! application server key, notifications acked), handing out `/wp/<channel>`
//! endpoints here and forwarding what is POSTed to them, as it came.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// One request the services took.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) path: String,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) status: u16,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the APNs and OAuth checks need to know.
#[derive(Default, Clone)]
pub(crate) struct Expect {
    /// APNs: the key's public point (SEC1), id, team and topic.
    pub(crate) apns: Option<(Vec<u8>, String, String, String)>,
    /// OAuth: the service account's public key (PEM) and email.
    pub(crate) oauth: Option<(Vec<u8>, String)>,
}

#[derive(Default)]
struct State {
    /// Browsers connected to the autopush stand-in, by channel: where to
    /// forward, and the application server key the channel was made with.
    browsers:
        std::collections::HashMap<String, (tokio::sync::mpsc::UnboundedSender<String>, String)>,
    recorded: Vec<Recorded>,
    /// Paths already answered once (for "the first time" answers).
    seen: HashSet<String>,
    /// Access tokens issued.
    issued: Vec<String>,
}

/// The running services.
pub(crate) struct PushServices {
    pub(crate) addr: SocketAddr,
    /// The certificate to trust (`--push-ca`).
    pub(crate) ca: std::path::PathBuf,
    state: Arc<Mutex<State>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PushServices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PushServices {
    pub(crate) async fn start(expect: Expect) -> PushServices {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("push-ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (st, expect) = (state.clone(), Arc::new(expect));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, st, expect) = (acceptor.clone(), st.clone(), expect.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let service = hyper::service::service_fn(move |req| {
                        let (st, expect) = (st.clone(), expect.clone());
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &st, &expect).await) }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        PushServices {
            addr,
            ca,
            state,
            _dir: dir,
            task,
        }
    }

    /// The autopush stand-in: a WebSocket server Firefox connects to
    /// (`ws://` address returned), whose subscriptions' endpoints are this
    /// server's `/wp/<channelID>`.
    pub(crate) async fn autopush(&self) -> String {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, base) = (self.state.clone(), self.url("/wp/"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (state, base) = (state.clone(), base.clone());
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    let (out, mut outq) = tokio::sync::mpsc::unbounded_channel::<String>();
                    tokio::spawn(async move {
                        while let Some(m) = outq.recv().await {
                            if tx.send(Message::text(m)).await.is_err() {
                                return;
                            }
                        }
                    });
                    while let Some(Ok(m)) = rx.next().await {
                        let Message::Text(t) = m else { continue };
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        let reply = match v["messageType"].as_str() {
                            Some("hello") => json!({"messageType": "hello", "status": 200,
                                "uaid": "5f0a7c0e9b6d4e0f8a1b2c3d4e5f6a7b", "use_webpush": true, "broadcasts": {}}),
                            Some("register") => {
                                let channel = v["channelID"].as_str().unwrap_or("").to_string();
                                let key = v["key"].as_str().unwrap_or("").to_string();
                                state
                                    .lock()
                                    .unwrap()
                                    .browsers
                                    .insert(channel.clone(), (out.clone(), key));
                                json!({"messageType": "register", "channelID": channel, "status": 200,
                                    "pushEndpoint": format!("{base}{channel}")})
                            }
                            Some("ping") | None => json!({}),
                            // Acks (and nacks) need no answer.
                            _ => continue,
                        };
                        let _ = out.send(reply.to_string());
                    }
                });
            }
        });
        format!("ws://{addr}/")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The requests whose path starts with `prefix`, oldest first.
    pub(crate) fn requests(&self, prefix: &str) -> Vec<Recorded> {
        let st = self.state.lock().unwrap();
        st.recorded
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits (bounded) until at least `n` requests start with `prefix`.
    pub(crate) async fn wait_for(&self, prefix: &str, n: usize) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + crate::common::WAIT * 3;
        loop {
            let got = self.requests(prefix);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} requests to {prefix} expected, got {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    st: &Mutex<State>,
    expect: &Expect,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let first = st.lock().unwrap().seen.insert(path.clone());
    let (status, headers, answer) = answer(&parts, &path, &body, first, st, expect);
    st.lock().unwrap().recorded.push(Recorded {
        path,
        version: parts.version,
        headers: parts.headers,
        body,
        status: status.as_u16(),
    });
    let mut res = Response::new(Full::new(Bytes::from(answer)));
    *res.status_mut() = status;
    for (k, v) in headers {
        res.headers_mut().insert(k, v.parse().unwrap());
    }
    res
}

type Answer = (StatusCode, Vec<(&'static str, String)>, String);

fn answer(
    parts: &http::request::Parts,
    path: &str,
    body: &[u8],
    first: bool,
    st: &Mutex<State>,
    expect: &Expect,
) -> Answer {
    let plain = |s: u16, b: Value| (StatusCode::from_u16(s).unwrap(), vec![], b.to_string());
    if parts.method != http::Method::POST {
        return plain(405, json!({}));
    }
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    if let Some(name) = path.strip_prefix("/wp/") {
        // A browser's channel: only a request signed (VAPID) with the key
        // the channel was made with is taken, as Mozilla's service does;
        // it goes to the browser as it came.
        let browser = st.lock().unwrap().browsers.get(name).cloned();
        if let Some((tx, key)) = browser {
            if !vapid_matches(&header("authorization"), &key) {
                return plain(
                    401,
                    json!({"errno": 109, "message": "VAPID does not match the subscription's key"}),
                );
            }
            let note = json!({
                "messageType": "notification",
                "channelID": name,
                "version": format!("v{}", crate::common::unix_now()),
                "data": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body),
                "headers": {"encoding": parts.headers.get("content-encoding").and_then(|v| v.to_str().ok()).unwrap_or("")},
            });
            let _ = tx.send(note.to_string());
            return (StatusCode::CREATED, vec![], String::new());
        }
        return match name {
            n if n.starts_with("gone") => plain(410, json!({})),
            n if n.starts_with("busy") && first => (
                StatusCode::TOO_MANY_REQUESTS,
                vec![("retry-after", "1".into())],
                String::new(),
            ),
            _ => (
                StatusCode::CREATED,
                vec![("location", format!("/m/{name}"))],
                String::new(),
            ),
        };
    }
    if let Some(token) = path.strip_prefix("/3/device/") {
        let reason = |s: u16, r: &str| plain(s, json!({ "reason": r }));
        if parts.version != Version::HTTP_2 {
            return reason(400, "BadRequest: HTTP/2 is required");
        }
        let Some((point, kid, team, topic)) = &expect.apns else {
            return reason(500, "InternalServerError");
        };
        let jwt = header("authorization");
        let Some(jwt) = jwt.strip_prefix("bearer ") else {
            return reason(403, "MissingProviderToken");
        };
        let mut v = Validation::new(Algorithm::ES256);
        v.required_spec_claims = ["iss".to_string()].into();
        v.validate_exp = false;
        v.set_issuer(&[team]);
        let ok = jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_ec_der(point), &v)
            .ok()
            .filter(|d| d.header.kid.as_deref() == Some(kid.as_str()))
            .filter(|d| {
                let iat = d.claims["iat"].as_i64().unwrap_or(0);
                (crate::common::unix_now() - iat).abs() < 3600
            });
        if ok.is_none() {
            return reason(403, "InvalidProviderToken");
        }
        if header("apns-topic") != *topic {
            return reason(400, "BadTopic");
        }
        if header("apns-push-type") != "alert" {
            return reason(400, "InvalidPushType");
        }
        return match token {
            t if t.starts_with("bad") => reason(400, "BadDeviceToken"),
            t if t.starts_with("dead") => plain(
                410,
                json!({"reason": "Unregistered", "timestamp": crate::common::unix_now() * 1000}),
            ),
            t if t.starts_with("0429") && first => reason(429, "TooManyRequests"),
            _ => (
                StatusCode::OK,
                vec![("apns-id", "00000000-0000-0000-0000-000000000001".into())],
                String::new(),
            ),
        };
    }
    if path == "/token" {
        let Some((pem, email)) = &expect.oauth else {
            return plain(500, json!({}));
        };
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return plain(400, json!({"error": "unsupported_grant_type"}));
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[format!("https://127.0.0.1:{}/token", parts_port(parts))]);
        v.set_issuer(&[email]);
        let claims = form.get("assertion").and_then(|a| {
            jsonwebtoken::decode::<Value>(a, &DecodingKey::from_rsa_pem(pem).unwrap(), &v).ok()
        });
        match claims {
            Some(c)
                if c.claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging" =>
            {
                let mut s = st.lock().unwrap();
                let token = format!("ya29.test-{}", s.issued.len());
                s.issued.push(token.clone());
                return plain(
                    200,
                    json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
                );
            }
            _ => return plain(400, json!({"error": "invalid_grant"})),
        }
    }
    if path.starts_with("/v1/projects/") && path.ends_with("/messages:send") {
        let auth = header("authorization");
        let issued = st.lock().unwrap().issued.clone();
        if !issued.iter().any(|t| auth == format!("Bearer {t}")) {
            return plain(
                401,
                json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}),
            );
        }
        let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let token = msg["message"]["token"].as_str().unwrap_or("");
        if token.is_empty() {
            return plain(
                400,
                json!({"error": {"code": 400, "status": "INVALID_ARGUMENT"}}),
            );
        }
        // Google's two shapes of "this token is not one of ours".
        let fcm_error = json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"});
        let bad_token = |message: &str, details: Value| {
            let error = json!({"code": 400, "status": "INVALID_ARGUMENT", "message": message, "details": details});
            plain(400, json!({ "error": error }))
        };
        if token.starts_with("bogus") {
            let message = "The registration token is not a valid FCM registration token";
            return bad_token(message, json!([fcm_error]));
        }
        if token.starts_with("badfield") {
            let violation = json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]});
            return bad_token(
                "Request contains an invalid argument.",
                json!([fcm_error, violation]),
            );
        }
        if token.starts_with("dead") {
            return plain(
                404,
                json!({"error": {"code": 404, "status": "NOT_FOUND", "details": [
                    {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
                ]}}),
            );
        }
        return plain(
            200,
            json!({"name": format!("{}/0:1", &path[4..path.len() - 14])}),
        );
    }
    plain(404, json!({}))
}

/// Whether `authorization` is `vapid t=<JWT>, k=<key>` with `key` (base64url,
/// padding aside) and a JWT that verifies with it.
fn vapid_matches(authorization: &str, key: &str) -> bool {
    let Some(rest) = authorization.strip_prefix("vapid ") else {
        return false;
    };
    let mut t = "";
    let mut k = "";
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v,
            Some(("k", v)) => k = v,
            _ => {}
        }
    }
    let key = key.trim_end_matches('=');
    if k.trim_end_matches('=') != key {
        return false;
    }
    let Ok(point) = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, key)
    else {
        return false;
    };
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Value>(t, &DecodingKey::from_ec_der(&point), &v).is_ok()
}

/// The port the request was made to (from its authority or Host).
fn parts_port(parts: &http::request::Parts) -> u16 {
    parts
        .uri
        .port_u16()
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
        })
        .unwrap_or(0)
}
