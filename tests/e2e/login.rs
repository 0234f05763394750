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
