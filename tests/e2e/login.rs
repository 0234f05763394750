//! Login: dev identities, JWT, timeouts, origins, heartbeats.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use crate::common::{Client, End, Server};

fn token(sub: &str, rooms: serde_json::Value, exp_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": sub, "exp": now + exp_in, "rooms": rooms});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"s3cret"),
    )
    .unwrap()
}

#[tokio::test]
async fn dev_identity_from_login_then_path_then_query() {
    let s = Server::start(&[]);
    let mut c = Client::connect(&s.ws_url("/websocket/pathuser?userId=queryuser")).await;
    assert_eq!(
        c.login_as(json!({"msgType": 2, "sendUserId": "frame"}))
            .await["sendUserId"],
        "frame"
    );
    let mut c = Client::connect(&s.ws_url("/websocket/pathuser?userId=queryuser")).await;
    let reply = c.login_as(json!({"msgType": 2})).await;
    assert_eq!(reply["sendUserId"], "pathuser");
    for key in ["sessionId", "nodeId", "heartbeatSec", "inboxSeq", "ts"] {
        assert!(reply.get(key).is_some(), "login reply lacks {key}: {reply}");
    }
    assert_eq!(reply["heartbeatSec"], 25);
    let mut c = Client::connect(&s.ws_url("/ws?userId=queryuser")).await;
    assert_eq!(
        c.login_as(json!({"msgType": 2})).await["sendUserId"],
        "queryuser"
    );
    // No identity at all: 401 and close 4401.
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.send(&json!({"msgType": 2})).await;
    assert_eq!(c.recv().await["code"], 401);
    assert_eq!(c.expect_end().await, End::Closed(4401));
}

#[tokio::test]
async fn frames_before_login_get_401_and_ping_gets_pong() {
    let s = Server::start(&[]);
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.send_text("ping").await;
    assert_eq!(c.recv_text().await, "pong");
    c.send(&json!({"msgType": 3, "roomId": "r", "clientMsgId": "early"}))
        .await;
    let e = c.recv().await;
    assert_eq!(
        (e["msgType"].as_i64(), e["code"].as_i64()),
        (Some(9), Some(401))
    );
    c.send(&json!({"msgType": 1})).await;
    assert_eq!(c.recv().await["code"], 401);
    // The connection stayed open: login still works.
    assert_eq!(
        c.login_as(json!({"msgType": 2, "sendUserId": "late"}))
            .await["sendUserId"],
        "late"
    );
    c.send(&json!({"msgType": 2, "sendUserId": "late"})).await;
    assert_eq!(c.recv().await["code"], 400, "a second login is refused");
}

#[tokio::test]
async fn login_timeout_closes_4408() {
    let s = Server::start(&["--login-timeout-sec", "1"]);
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    let t = std::time::Instant::now();
    assert_eq!(c.expect_end().await, End::Closed(4408));
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn jwt_login_sub_rooms_and_mismatch() {
    let s = Server::start(&["--jwt-secret", "s3cret"]);
    // Token in the query, identity from sub.
    let t = token("alice", json!(["allowed"]), 60);
    let mut c = Client::connect(&s.ws_url(&format!("/ws?token={t}"))).await;
    let reply = c
        .login_as(json!({"msgType": 2, "roomId": "forbidden"}))
        .await;
    assert_eq!(reply["sendUserId"], "alice");
    let e = c.recv().await;
    assert_eq!(
        (e["code"].as_i64(), e["msgType"].as_i64()),
        (Some(403), Some(9)),
        "{e}"
    );
    c.send(&json!({"msgType": 5, "roomId": "allowed"})).await;
    assert_eq!(c.recv().await["msgType"], 5);
    c.send(&json!({"msgType": 5, "roomId": "other"})).await;
    assert_eq!(c.recv().await["code"], 403, "join outside the claim");
    c.send(&json!({"msgType": 1})).await;
    assert_eq!(
        c.recv().await["msgType"],
        1,
        "the session stays after a 403"
    );

    // Token in the frame, sendUserId matching.
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.login_as(json!({"msgType": 2, "sendUserId": "bob", "token": token("bob", json!("*"), 60)}))
        .await;

    // sendUserId differing from sub: 403 and close 4403.
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.send(&json!({"msgType": 2, "sendUserId": "mallory", "token": token("bob", json!("*"), 60)}))
        .await;
    assert_eq!(c.recv().await["code"], 403);
    assert_eq!(c.expect_end().await, End::Closed(4403));

    // Expired, forged or missing tokens: 401 and close 4401.
    for bad in [
        Some(token("bob", json!("*"), -120)),
        Some("not.a.jwt".to_string()),
        None,
    ] {
        let mut c = Client::connect(&s.ws_url("/ws")).await;
        c.send(&json!({"msgType": 2, "sendUserId": "bob", "token": bad}))
            .await;
        assert_eq!(c.recv().await["code"], 401);
        assert_eq!(c.expect_end().await, End::Closed(4401));
    }
    // Dev-mode identities do not work once a secret is set.
    let mut c = Client::connect(&s.ws_url("/websocket/bob")).await;
    c.send(&json!({"msgType": 2})).await;
    assert_eq!(c.recv().await["code"], 401);
}

#[tokio::test]
async fn allowed_origins_are_enforced_on_upgrade() {
    let s = Server::start(&["--allowed-origin", "https://good.example"]);
    let url = s.ws_url("/ws");
    assert_eq!(
        Client::connect_with_origin(&url, "https://evil.example")
            .await
            .err(),
        Some(403)
    );
    let mut ok = Client::connect_with_origin(&url, "https://good.example")
        .await
        .expect("allowed origin");
    ok.login_as(json!({"msgType": 2, "sendUserId": "u"})).await;
    // Without the option, every origin is allowed (dev mode).
    let s = Server::start(&[]);
    assert!(
        Client::connect_with_origin(&s.ws_url("/ws"), "https://evil.example")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn heartbeat_msgtype_1_and_ping() {
    let s = Server::start(&[]);
    let (mut c, _) = Client::login(&s, "hb").await;
    c.send(&json!({"msgType": 1})).await;
    let hb = c.recv().await;
    assert_eq!(hb["msgType"], 1);
    assert!(hb["ts"].as_u64().unwrap() > 1_600_000_000_000);
    c.send_text("ping").await;
    assert_eq!(c.recv_text().await, "pong");
}

#[tokio::test]
async fn silent_peer_is_closed_4408_and_a_live_one_is_not() {
    let s = Server::start(&["--heartbeat-sec", "1"]);
    let (mut silent, _) = Client::login(&s, "silent").await;
    let (mut live, _) = Client::login(&s, "live").await;
    // The live client reads (so its library answers Pings with Pongs) and
    // sends nothing else; the silent one does not read at all.
    let live_task = tokio::spawn(async move {
        live.expect_silence(Duration::from_millis(4500)).await;
        live.send(&json!({"msgType": 1})).await;
        live.recv().await
    });
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(silent.expect_end().await, End::Closed(4408));
    assert_eq!(
        live_task.await.unwrap()["msgType"],
        1,
        "pongs count as traffic"
    );
}

/// Sends `bytes` in one write and returns what the server answers, read
/// until `done` says the answer is whole (or a few seconds pass).
async fn raw_exchange(s: &Server, bytes: &[u8], done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !done(&got) {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// Where an HTTP answer's head ends in `got`, if it has.
fn head_end(got: &[u8]) -> Option<usize> {
    got.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// An HTTP answer with its whole body (by `content-length`).
fn whole_answer(got: &[u8]) -> bool {
    let Some(head) = head_end(got) else {
        return false;
    };
    let text = String::from_utf8_lossy(&got[..head]).to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    got.len() >= head + len
}

/// A 101 followed by one whole server frame (payload under 64 KiB).
fn upgraded_with_a_frame(got: &[u8]) -> bool {
    let Some(head) = head_end(got) else {
        return false;
    };
    let f = &got[head..];
    match f.get(1) {
        Some(126) => f.len() >= 4 && f.len() >= 4 + u16::from_be_bytes([f[2], f[3]]) as usize,
        Some(&n) => f.len() >= 2 + n as usize,
        None => false,
    }
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A masked client text frame (payload under 126 bytes).
fn client_text(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn a_login_sent_with_the_upgrade_request_is_read_and_answered() {
    // A client may send its first frame without waiting for the 101: the
    // bytes the HTTP layer read past the request belong to the WebSocket.
    let s = Server::start(&[]);
    let login = br#"{"msgType":2,"sendUserId":"eager"}"#;
    let mut bytes = upgrade_request("/ws", "Sec-WebSocket-Version: 13\r\n").into_bytes();
    bytes.extend(client_text(login));
    let got = raw_exchange(&s, &bytes, upgraded_with_a_frame).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "answer: {text}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(
        text.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "answer: {text}"
    );
    let frame = &got[head_end(&got).unwrap()..];
    assert_eq!(frame[0], 0x81, "a final text frame: {frame:?}");
    let (len, at) = match frame[1] {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        n => (n as usize, 2),
    };
    let reply: serde_json::Value = serde_json::from_slice(&frame[at..at + len]).unwrap();
    assert_eq!(reply["msgType"], 2, "{reply}");
    assert_eq!(reply["sendUserId"], "eager");
}

#[tokio::test]
async fn a_request_that_cannot_open_a_websocket_is_refused_with_its_reason() {
    let s = Server::start(&[]);
    for (request, status, reason) in [
        (upgrade_request("/ws", ""), "400", "Sec-WebSocket-Version"),
        (
            upgrade_request("/ws", "Sec-WebSocket-Version: 8\r\n"),
            "400",
            "Sec-WebSocket-Version",
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
                .to_owned(),
            "400",
            "Sec-WebSocket-Key",
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "400",
            "Connection",
        ),
    ] {
        let got = raw_exchange(&s, request.as_bytes(), whole_answer).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} answered {text}"
        );
        assert!(text.contains(reason), "{request:?} answered {text}");
    }
}
