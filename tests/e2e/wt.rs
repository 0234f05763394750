//! WebTransport through a real, independent client (aioquic): sessions,
//! the stream framing, datagrams, errors, liveness, certificates; and
//! WebTransport and WebSocket users talking to each other.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::wt_client::{WtClient, wt_url};

#[tokio::test]
async fn wt_login_ping_heartbeat_and_cert_hash() {
    let s = Server::start(&[]);
    let (mut c, reply) = WtClient::login(&s, "quic-user").await;
    assert_eq!(reply["sendUserId"], "quic-user");
    c.send_text("ping").await;
    assert_eq!(c.recv().await, json!("pong"));
    c.send(&json!({"msgType": 1})).await;
    assert_eq!(c.recv().await["msgType"], 1);
    // A heartbeat may also travel as a datagram.
    c.send_datagram(&json!({"msgType": 1})).await;
    assert_eq!(c.recv().await["msgType"], 1);
    // /cert-hash describes the certificate the endpoint actually served.
    let (status, body) = s.http("GET", "/cert-hash", &[], "").await;
    assert_eq!(status, 200);
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["algorithm"], "sha-256");
    assert_eq!(h["hex"], c.cert_hash.as_str());
    assert_eq!(h["url"], format!("https://localhost:{}/wt", s.wt.port()));
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h["value"].as_str().unwrap())
        .unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, c.cert_hash);
}

#[tokio::test]
async fn wt_and_ws_users_exchange_direct_and_room_messages() {
    let s = Server::start(&[]);
    let (mut wt, _) = WtClient::login(&s, "wt-user").await;
    let (mut ws, _) = Client::login(&s, "ws-user").await;
    // WT -> WS, direct.
    wt.send(&json!({"msgType": 3, "receivedUserId": "ws-user", "msgBody": {"t": "from wt"}, "clientMsgId": "a1"})).await;
    let ack = wt.recv_type(4).await;
    assert_eq!(ack["clientMsgId"], "a1");
    let m = ws.recv().await;
    assert_eq!(
        (m["sendUserId"].as_str(), m["msgBody"]["t"].as_str()),
        (Some("wt-user"), Some("from wt"))
    );
    assert_eq!(m["msgId"], ack["msgId"]);
    // WS -> WT, direct.
    ws.send(
        &json!({"msgType": 100, "receivedUserId": "wt-user", "msgBody": "from ws", "bizType": 4}),
    )
    .await;
    let m = wt.recv_type(100).await;
    assert_eq!(
        (
            m["sendUserId"].as_str(),
            m["msgBody"].as_str(),
            m["bizType"].as_i64()
        ),
        (Some("ws-user"), Some("from ws"), Some(4))
    );
    // Rooms, both ways.
    wt.send(&json!({"msgType": 5, "roomId": "mixed"})).await;
    assert_eq!(wt.recv_type(5).await["roomId"], "mixed");
    ws.send(&json!({"msgType": 5, "roomId": "mixed"})).await;
    ws.recv_type(5).await;
    wt.send(&json!({"msgType": 3, "roomId": "mixed", "msgBody": "room from wt"}))
        .await;
    assert_eq!(ws.recv_type(3).await["msgBody"], "room from wt");
    ws.send(&json!({"msgType": 3, "roomId": "mixed", "msgBody": "room from ws"}))
        .await;
    assert_eq!(wt.recv_type(3).await["msgBody"], "room from ws");
    // Presence sees both transports.
    ws.send(&json!({"msgType": 8, "roomId": "mixed"})).await;
    assert_eq!(
        ws.recv_type(8).await["userIds"],
        json!(["ws-user", "wt-user"])
    );
}

#[tokio::test]
async fn volatile_messages_travel_as_datagrams() {
    let s = Server::start(&[]);
    let (mut wt, _) = WtClient::login(&s, "dg-user").await;
    let (mut ws, _) = Client::login(&s, "ws-user").await;
    ws.send(
        &json!({"msgType": 3, "receivedUserId": "dg-user", "volatile": true, "msgBody": "typing"}),
    )
    .await;
    let d = wt.recv_datagram().await;
    assert_eq!(
        (d["msgBody"].as_str(), d["volatile"].as_bool()),
        (Some("typing"), Some(true))
    );
    // A volatile message too big for a datagram goes on the stream.
    let big = "x".repeat(3000);
    ws.send(&json!({"msgType": 3, "receivedUserId": "dg-user", "volatile": true, "msgBody": big}))
        .await;
    let f = wt.recv().await;
    assert_eq!(f["msgBody"].as_str().map(str::len), Some(3000));
    // A datagram from the WT client reaches the WS user.
    wt.send_datagram(
        &json!({"msgType": 3, "receivedUserId": "ws-user", "volatile": true, "msgBody": "dg up"}),
    )
    .await;
    assert_eq!(ws.recv().await["msgBody"], "dg up");
}

#[tokio::test]
async fn wt_identity_from_legacy_path_and_query_token() {
    let s = Server::start(&[]);
    let (mut c, status) = WtClient::connect(&wt_url(&s, "/websocket/pathy?x=1"), None).await;
    assert_eq!(status, 200);
    c.send(&json!({"msgType": 2})).await;
    assert_eq!(c.recv().await["sendUserId"], "pathy");
    let (_, status) = WtClient::connect(&wt_url(&s, "/nope"), None).await;
    assert_eq!(status, 404);
    // A token in the query, as over WebSocket.
    let s = Server::start(&["--jwt-secret", "k"]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let claims = json!({"sub": "token-user", "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(b"k");
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let (mut c, status) = WtClient::connect(&wt_url(&s, &format!("/wt?token={token}")), None).await;
    assert_eq!(status, 200);
    c.send(&json!({"msgType": 2})).await;
    assert_eq!(c.recv().await["sendUserId"], "token-user");
    let (mut c, _) = WtClient::connect(&wt_url(&s, "/wt"), None).await;
    c.send(&json!({"msgType": 2, "sendUserId": "someone"}))
        .await;
    assert_eq!(c.recv().await["code"], 401);
    assert_eq!(c.expect_closed().await, 4401);
    let s = Server::start(&["--allowed-origin", "https://good.example"]);
    let (_, status) = WtClient::connect(&wt_url(&s, "/wt"), Some("https://evil.example")).await;
    assert_eq!(status, 403);
    let (_, status) = WtClient::connect(&wt_url(&s, "/wt"), Some("https://good.example")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn wt_framing_errors_get_413_and_close_4413() {
    let s = Server::start(&["--max-frame", "1024"]);
    let (mut ws, _) = Client::login(&s, "ws").await;
    // Over the limit but within 4x: read whole, answered 413, closed 4413.
    let (mut a, _) = WtClient::login(&s, "a").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "ws", "msgBody": "kept", "clientMsgId": "k"}))
        .await;
    assert_eq!(a.recv_type(4).await["clientMsgId"], "k");
    a.send(&json!({"msgType": 3, "receivedUserId": "ws", "msgBody": "y".repeat(2000)}))
        .await;
    assert_eq!(a.recv_type(9).await["code"], 413);
    assert_eq!(a.expect_closed().await, 4413);
    assert_eq!(
        ws.recv().await["msgBody"],
        "kept",
        "the acked message is delivered"
    );
    // A length prefix beyond 4x: the framing itself refuses it.
    let (mut b, _) = WtClient::login(&s, "b").await;
    b.send_raw(&[0xff, 0xff, 0xff, 0xff, b'{']).await;
    assert_eq!(b.recv_type(9).await["code"], 413);
    assert_eq!(b.expect_closed().await, 4413);
    // Malformed JSON keeps the session.
    let (mut c, _) = WtClient::login(&s, "c").await;
    c.send_text("{nope").await;
    assert_eq!(c.recv().await["code"], 400);
    c.send(&json!({"msgType": 1})).await;
    assert_eq!(c.recv().await["msgType"], 1);
}

#[tokio::test]
async fn an_idle_quic_peer_is_closed_and_a_quiet_live_one_is_not() {
    let s = Server::start(&[
        "--wt-keepalive-sec",
        "1",
        "--wt-idle-timeout-sec",
        "3",
        "--heartbeat-sec",
        "1",
    ]);
    let (frozen, _) = WtClient::login(&s, "frozen").await;
    let (mut quiet, _) = WtClient::login(&s, "quiet").await;
    // The frozen peer stops answering anything, QUIC keep-alives included.
    Command::new("kill")
        .args(["-STOP", &frozen.pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = s.metrics().await;
    let _ = Command::new("kill")
        .args(["-CONT", &frozen.pid().to_string()])
        .status();
    assert_eq!(
        m.get(r#"rtgate_connections{transport="webtransport"}"#)
            .copied(),
        Some(1.0),
        "the frozen peer is gone, the quiet one stays (its QUIC stack answers keep-alives): {m:?}"
    );
    // The quiet peer sent nothing for 5 s (more than 3 heartbeats) and is still served.
    quiet.send(&json!({"msgType": 1})).await;
    assert_eq!(quiet.recv().await["msgType"], 1);
}
