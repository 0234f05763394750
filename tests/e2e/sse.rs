//! Issue 30, the HTTP fallback: a session over Server-Sent Events down and
//! POSTs up logs in, chats with a WebSocket user, gets heartbeats as
//! comments and its close as `event: close`, is refused with a wrong POST
//! token, and an `EventSource` that reconnects with `Last-Event-ID` gets
//! what it missed on the same session.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::common::{Client, Server};

/// One event: its name (`message` when none), data, id; or a comment.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
    id: Option<String>,
}

struct Sse {
    http: SocketAddr,
    body: Incoming,
    buf: String,
    session: String,
    token: String,
    last_id: Option<String>,
    comments: usize,
}

async fn get(http: SocketAddr, query: &str, last_id: Option<&str>) -> hyper::Response<Incoming> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = hyper::Request::get(format!("http://{http}/sse{query}"));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

impl Sse {
    /// A stream's reader, for the session named (empty: not known yet).
    fn reading(
        http: SocketAddr,
        resp: hyper::Response<Incoming>,
        session: &str,
        token: &str,
    ) -> Sse {
        Sse {
            http,
            body: resp.into_body(),
            buf: String::new(),
            session: session.into(),
            token: token.into(),
            last_id: None,
            comments: 0,
        }
    }

    async fn open(s: &Server, query: &str) -> Sse {
        let resp = get(s.http, query, None).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut sse = Sse::reading(s.http, resp, "", "");
        let hello = sse.event().await;
        assert_eq!(hello.name, "session", "{hello:?}");
        let v: Value = serde_json::from_str(&hello.data).unwrap();
        sse.session = v["sessionId"].as_str().unwrap().into();
        sse.token = v["postToken"].as_str().unwrap().into();
        sse
    }

    /// The next event (comments counted and skipped).
    async fn event(&mut self) -> Event {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data, mut id) = ("message".to_string(), Vec::new(), None);
                let mut comment = true;
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.into();
                        comment = false;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_string());
                        comment = false;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                        comment = false;
                    }
                }
                if comment {
                    self.comments += 1;
                    continue;
                }
                if id.is_some() {
                    self.last_id = id.clone();
                }
                return Event {
                    name,
                    data: data.join("\n"),
                    id,
                };
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(d) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&d).unwrap());
            }
        }
    }

    /// The next frame's JSON (or `pong`).
    async fn recv(&mut self) -> Value {
        let e = self.event().await;
        assert_eq!(e.name, "message", "{e:?}");
        // Every frame is numbered within its session, for Last-Event-ID.
        let id = e.id.as_deref().unwrap_or_default();
        assert!(id.starts_with(&format!("{}.", self.session)), "{e:?}");
        serde_json::from_str(&e.data).unwrap_or(Value::String(e.data))
    }

    async fn recv_type(&mut self, t: i64) -> Value {
        loop {
            let v = self.recv().await;
            if v["msgType"] == t {
                return v;
            }
        }
    }

    async fn post_with(&self, token: &str, body: &str) -> u16 {
        post(self.http, &self.session, token, body).await
    }

    async fn post(&self, body: &str) -> u16 {
        self.post_with(&self.token.clone(), body).await
    }
}

async fn post(http: SocketAddr, session: &str, token: &str, body: &str) -> u16 {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::post(format!("http://{http}/sse/{session}"))
        .header("content-type", "application/json")
        .header("x-rtgate-post-token", token)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    client.request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_sse_session_logs_in_and_chats_with_a_websocket_user() {
    let s = Server::start(&["--heartbeat-sec", "1"]);
    let mut sse = Sse::open(&s, "").await;
    let login = json!({"msgType": 2, "sendUserId": "sally", "roomId": "fallback"}).to_string();
    assert_eq!(sse.post(&login).await, 204);
    let reply = sse.recv_type(2).await;
    assert_eq!(reply["sendUserId"], "sally", "{reply}");
    let (mut ws, _) = Client::login(&s, "walt").await;
    ws.send(&json!({"msgType": 5, "roomId": "fallback"})).await;
    ws.recv_type(5).await;
    // Up, in one POST of two frames: a direct message and a room message.
    let two = json!([
        {"msgType": 3, "receivedUserId": "walt", "clientMsgId": "a", "msgBody": {"text": "over http"}},
        {"msgType": 3, "roomId": "fallback", "clientMsgId": "b", "msgBody": "to the room"}
    ]);
    assert_eq!(sse.post(&two.to_string()).await, 204);
    // Both acked (the direct message's ack waits for its recipient's push
    // window to be stored, so the room message's may come first).
    let mut acked = vec![sse.recv_type(4).await["clientMsgId"].clone()];
    acked.push(sse.recv_type(4).await["clientMsgId"].clone());
    acked.sort_by_key(|v| v.to_string());
    assert_eq!(acked, [json!("a"), json!("b")]);
    assert_eq!(
        ws.recv_type(3).await["msgBody"],
        json!({"text": "over http"})
    );
    assert_eq!(ws.recv_type(3).await["msgBody"], "to the room");
    // Down.
    ws.send(&json!({"msgType": 3, "receivedUserId": "sally", "msgBody": "over sse"}))
        .await;
    let m = sse.recv_type(3).await;
    assert_eq!(
        (m["msgBody"].as_str(), m["sendUserId"].as_str()),
        (Some("over sse"), Some("walt"))
    );
    // The literal ping; heartbeats as comments (the session's own, every
    // second here) while the client keeps POSTing its heartbeats.
    assert_eq!(sse.post("ping").await, 204);
    assert_eq!(sse.recv().await, json!("pong"));
    for _ in 0..3 {
        assert_eq!(sse.post(r#"{"msgType":1}"#).await, 204);
        sse.recv_type(1).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(sse.comments >= 1, "heartbeats come as comments");
    // Refusals: a wrong token, an unknown session, a malformed array; a
    // malformed frame is an error frame as on any transport.
    assert_eq!(sse.post_with("nope", r#"{"msgType":1}"#).await, 403);
    assert_eq!(
        post(s.http, "no-such", &sse.token, r#"{"msgType":1}"#).await,
        404
    );
    assert_eq!(sse.post("[1,").await, 400);
    assert_eq!(sse.post(r#"{"msgType":"x"}"#).await, 204);
    assert_eq!(sse.recv_type(9).await["code"], 400);
    // The server closes it: `event: close` with the code.
    let (status, _) = s
        .http(
            "POST",
            "/api/disconnect",
            &[],
            r#"{"userId":"sally","code":4403,"reason":"bye"}"#,
        )
        .await;
    assert_eq!(status, 200);
    let close = loop {
        let e = sse.event().await;
        if e.name == "close" {
            break e;
        }
    };
    let c: Value = serde_json::from_str(&close.data).unwrap();
    assert_eq!(
        (c["code"].as_u64(), c["reason"].as_str()),
        (Some(4403), Some("bye"))
    );
    assert_eq!(
        sse.post(r#"{"msgType":1}"#).await,
        404,
        "the session is gone"
    );
}

#[tokio::test]
async fn a_reconnecting_event_source_resumes_its_session_by_last_event_id() {
    let s = Server::start(&[]);
    let mut sse = Sse::open(&s, "?userId=rosa").await;
    assert_eq!(sse.post(r#"{"msgType":2}"#).await, 204);
    assert_eq!(sse.recv_type(2).await["sendUserId"], "rosa");
    let (mut ws, _) = Client::login(&s, "wes").await;
    ws.send(&json!({"msgType": 3, "receivedUserId": "rosa", "msgBody": 1}))
        .await;
    assert_eq!(sse.recv_type(3).await["msgBody"], 1);
    let last = sse.last_id.clone().unwrap();
    // The stream drops; two messages arrive meanwhile.
    let (session, token) = (sse.session.clone(), sse.token.clone());
    drop(sse);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in [2, 3] {
        ws.send(&json!({"msgType": 3, "receivedUserId": "rosa", "msgBody": n}))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The EventSource comes back with Last-Event-ID: same session, the two
    // it missed, in order, no new hello.
    let resp = get(s.http, "?userId=rosa", Some(&last)).await;
    assert_eq!(resp.status(), 200);
    let mut back = Sse::reading(s.http, resp, &session, &token);
    assert_eq!(back.recv_type(3).await["msgBody"], 2);
    assert_eq!(back.recv_type(3).await["msgBody"], 3);
    assert_eq!(back.post(r#"{"msgType":1}"#).await, 204, "the same session");
    back.recv_type(1).await;
    // The session's id alone (it is in POST URLs, which proxies log) does
    // not reattach: the secret of the events' ids is needed; nor does an
    // id that names nothing. Both start a new session.
    let bare = format!("{}.guess/1", back.session);
    let resp = get(s.http, "", Some(&bare)).await;
    let mut other = Sse::reading(s.http, resp, "", "");
    assert_eq!(other.event().await.name, "session");
    let resp = get(s.http, "", Some("nothing/7")).await;
    let mut fresh = Sse::reading(s.http, resp, "", "");
    assert_eq!(fresh.event().await.name, "session");
}

#[tokio::test]
async fn sse_off_leaves_no_fallback() {
    let s = Server::start(&["--sse", "off"]);
    assert_eq!(get(s.http, "", None).await.status(), 404);
    let on = Server::start(&["--sse", "on"]);
    assert_eq!(get(on.http, "", None).await.status(), 200);
    assert!(crate::common::refuses_to_start(&["--sse", "maybe"]).contains("maybe"));
}

#[tokio::test]
async fn messagepack_travels_base64_in_events_and_raw_in_posts() {
    use base64::Engine;
    let s = Server::start(&[]);
    let mut sse = Sse::open(&s, "?encoding=msgpack&userId=pat").await;
    let (http, session, token) = (s.http, sse.session.clone(), sse.token.clone());
    let post_packed = |v: Value| {
        let (session, token) = (session.clone(), token.clone());
        async move {
            let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let req = hyper::Request::post(format!("http://{http}/sse/{session}"))
                .header("content-type", "application/msgpack")
                .header("x-rtgate-post-token", token)
                .body(Full::new(Bytes::from(rmp_serde::to_vec_named(&v).unwrap())))
                .unwrap();
            client.request(req).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        post_packed(json!({"msgType": 2, "roomId": "mp"})).await,
        204
    );
    let unpack = |e: Event| -> Value {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e.data)
            .unwrap();
        rmp_serde::from_slice(&bytes).unwrap()
    };
    let reply = unpack(sse.event().await);
    assert_eq!(
        (reply["msgType"].as_i64(), reply["sendUserId"].as_str()),
        (Some(2), Some("pat")),
        "{reply}"
    );
    let (mut ws, _) = Client::login(&s, "jo").await;
    ws.send(&json!({"msgType": 3, "receivedUserId": "pat", "msgBody": {"big": 9_007_199_254_740_993u64}}))
        .await;
    let m = unpack(sse.event().await);
    assert_eq!(
        m["msgBody"]["big"].as_u64(),
        Some(9_007_199_254_740_993),
        "{m}"
    );
    assert_eq!(
        post_packed(json!({"msgType": 3, "receivedUserId": "jo", "msgBody": "packed up"})).await,
        204
    );
    assert_eq!(ws.recv_type(3).await["msgBody"], "packed up");
    // The literal pong stays text.
    assert_eq!(sse.post("ping").await, 204);
    loop {
        let e = sse.event().await;
        if e.data == "pong" {
            break;
        }
    }
}
