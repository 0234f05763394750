//! An example backend for rtgate's hooks (protocol §11), written as a
//! backend team would: it decides who connects (by its own session cookie,
//! a bearer token or the `token` query parameter), checks and rewrites
//! messages, guards members-only rooms, and verifies that every call is
//! signed by rtgate. The end-to-end tests run it; `docs/backend.md` shows
//! the same contract as a Spring Boot controller.
//!
//! ```text
//! cargo run --example backend -- --listen 127.0.0.1:9000 --secret hooksecret
//! rtgate --connect-hook http://127.0.0.1:9000/hooks/connect \
//!        --publish-hook http://127.0.0.1:9000/hooks/publish \
//!        --join-hook http://127.0.0.1:9000/hooks/join --hook-secret hooksecret
//! ```
//!
//! Besides the hooks: `GET /calls` lists what it received (for tests and
//! for a curious operator), `GET /stats` how many calls it had in hand at
//! once, `POST /control
//! {"delayMs","jitterMs","status","eventsMaxBytes"}` makes it slow, out of
//! order, failing or limited in request size on purpose. An event batch
//! holding a message whose body is `"poison"` is refused 422.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Parser)]
#[command(about = "An example backend for rtgate's hooks")]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The secret rtgate signs hook calls with (`--hook-secret`); calls
    /// without a valid signature are refused when it is set.
    #[arg(long)]
    secret: Option<String>,
}

#[derive(Default)]
struct Behaviour {
    /// Added before every answer.
    delay: Duration,
    /// Up to this much more, at random, so answers overtake each other.
    jitter: Duration,
    /// Answered instead of the real decision.
    status: Option<u16>,
    /// Event batches larger than this are refused 413 (as a backend with
    /// a request size limit does).
    events_max_bytes: Option<usize>,
}

struct App {
    secret: Option<String>,
    calls: Mutex<Vec<Value>>,
    behaviour: Mutex<Behaviour>,
    /// Hook calls being worked on now, and the most at once so far.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Counts a call in the backend's hands while it lives.
struct Working<'a>(&'a App);

impl<'a> Working<'a> {
    fn start(app: &'a App) -> Self {
        let now = app.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        app.max_in_flight.fetch_max(now, Ordering::AcqRel);
        Working(app)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = Arc::new(App {
        secret: args.secret,
        calls: Mutex::default(),
        behaviour: Mutex::default(),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/hooks/{hook}", post(hook))
        .route("/calls", get(calls))
        .route("/control", post(control))
        .route("/stats", get(stats))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}

/// Every hook: check the signature, record the call, then decide.
async fn hook(
    State(app): State<Arc<App>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    version: axum::http::Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The work runs to its end even when rtgate gave up waiting and closed
    // the connection, as a real backend's (a thread per request) does:
    // that is what `maxInFlight` counts.
    tokio::spawn(decide(app, name, version, headers, body))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn decide(
    app: Arc<App>,
    name: String,
    version: axum::http::Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _working = Working::start(&app);
    let signed = headers
        .get("x-rtgate-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| app.secret.as_ref().is_some_and(|s| valid(s, &body, sig)));
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (delay, status, events_max) = {
        let b = app.behaviour.lock().unwrap();
        let jitter = b.jitter.mul_f64(fastrand::f64());
        (b.delay + jitter, b.status, b.events_max_bytes)
    };
    tokio::time::sleep(delay).await;
    let response = if app.secret.is_some() && !signed {
        refuse(StatusCode::UNAUTHORIZED, "bad signature")
    } else if let Some(status) = status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, "told to fail").into_response()
    } else {
        match name.as_str() {
            "connect" => connect(&request),
            "publish" if request.is_array() => publish_batch(&request),
            "publish" => publish(&request),
            "join" => join(&request),
            // Events: a real backend dedupes them by id and acts on them.
            "events" => events(&request, body.len(), events_max),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    };
    let status = response.status().as_u16();
    let http = format!("{version:?}");
    let mut calls = app.calls.lock().unwrap();
    match request.as_array().filter(|_| name == "publish") {
        // A publish batch (--publish-hook-batch): one record per message in it.
        Some(batch) => calls.extend(batch.iter().map(|m| {
            json!({"hook": name, "signed": signed, "status": status, "body": m, "http": http, "batch": batch.len()})
        })),
        None => calls.push(json!({
            "hook": name, "signed": signed, "status": status, "body": request, "http": http,
        })),
    }
    response
}

/// Who connects: the web session cookie, else a bearer token, else the
/// `token` of the URL or the login frame (`tok-<user>`). `mallory` is
/// banned; guests may only use the lobby; everyone is put in the lobby.
fn connect(req: &Value) -> Response {
    let text = |k: &str| req[k].as_str().unwrap_or_default();
    let from_cookie = text("cookie")
        .split(';')
        .find_map(|c| c.trim().strip_prefix("session="));
    let from_bearer = text("authorization")
        .strip_prefix("Bearer ")
        .and_then(|t| t.strip_prefix("tok-"));
    let from_token = text("token").strip_prefix("tok-");
    let Some(user) = from_cookie
        .or(from_bearer)
        .or(from_token)
        .filter(|u| !u.is_empty())
    else {
        return refuse(StatusCode::UNAUTHORIZED, "no session");
    };
    if user == "mallory" {
        return refuse(StatusCode::FORBIDDEN, "banned");
    }
    let rooms = if user.starts_with("guest") {
        json!(["lobby"])
    } else {
        json!("*")
    };
    Json(json!({
        "userId": user,
        "rooms": rooms,
        "join": ["lobby"],
        "info": {"name": user.to_uppercase()},
    }))
    .into_response()
}

/// What may be said: bizType 99 is reserved, a rude word is masked, and
/// bizType 7 messages are filed under module 42.
fn publish(req: &Value) -> Response {
    let (status, answer) = publish_decision(req);
    (status, Json(answer)).into_response()
}

/// A batch of publish calls: an array of answers in the same order, each
/// with its `status` when not 200.
fn publish_batch(batch: &Value) -> Response {
    let answers: Vec<Value> = batch
        .as_array()
        .into_iter()
        .flatten()
        .map(|req| match publish_decision(req) {
            (StatusCode::OK, answer) => answer,
            (status, mut answer) => {
                answer["status"] = json!(status.as_u16());
                answer
            }
        })
        .collect();
    Json(answers).into_response()
}

fn publish_decision(req: &Value) -> (StatusCode, Value) {
    let m = &req["message"];
    if m["bizType"] == 99 {
        return (
            StatusCode::FORBIDDEN,
            json!({"reason": "bizType 99 is reserved"}),
        );
    }
    let body = m["msgBody"].to_string();
    if body.contains("darn") {
        let masked: Value = serde_json::from_str(&body.replace("darn", "****")).unwrap();
        return (StatusCode::OK, json!({"msgBody": masked}));
    }
    if m["bizType"] == 7 {
        return (StatusCode::OK, json!({"bizOptModule": 42}));
    }
    (StatusCode::OK, json!({}))
}

/// Rooms named `vip-*` are for users named `vip*`.
/// A batch of events: too big for the backend's limit is 413; one holding
/// an event it cannot process (a message whose body is `"poison"`) is 422,
/// as a backend whose handler fails on one event answers.
fn events(batch: &Value, len: usize, max: Option<usize>) -> Response {
    if max.is_some_and(|m| len > m) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "batch too large");
    }
    let poisoned = batch
        .as_array()
        .is_some_and(|b| b.iter().any(|e| e["message"]["msgBody"] == "poison"));
    if poisoned {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "cannot process an event");
    }
    StatusCode::NO_CONTENT.into_response()
}

fn join(req: &Value) -> Response {
    let room = req["roomId"].as_str().unwrap_or_default();
    let user = req["userId"].as_str().unwrap_or_default();
    if room.starts_with("vip-") && !user.starts_with("vip") {
        return refuse(StatusCode::FORBIDDEN, "members only");
    }
    Json(json!({})).into_response()
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({ "reason": reason }))).into_response()
}

/// `sha256=<hex>` of HMAC-SHA256 over the body, compared in constant time.
fn valid(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

async fn calls(State(app): State<Arc<App>>) -> Json<Value> {
    Json(Value::Array(app.calls.lock().unwrap().clone()))
}

/// `{"inFlight","maxInFlight"}`: hook calls in the backend's hands now, and
/// the most at once so far.
async fn stats(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "inFlight": app.in_flight.load(Ordering::Acquire),
        "maxInFlight": app.max_in_flight.load(Ordering::Acquire),
    }))
}

async fn control(State(app): State<Arc<App>>, Json(c): Json<Value>) -> StatusCode {
    let mut b = app.behaviour.lock().unwrap();
    b.delay = Duration::from_millis(c["delayMs"].as_u64().unwrap_or(0));
    b.jitter = Duration::from_millis(c["jitterMs"].as_u64().unwrap_or(0));
    b.status = c["status"].as_u64().map(|s| s as u16);
    b.events_max_bytes = c["eventsMaxBytes"].as_u64().map(|n| n as usize);
    StatusCode::NO_CONTENT
}
