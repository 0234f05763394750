//! WebTransport through a real, independent client (aioquic): sessions,
//! the stream framing, datagrams, errors, liveness, certificates; and
//! WebTransport and WebSocket users talking to each other.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server, WAIT, example};
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

/// Issue 27, item 9: a datagram carries only a heartbeat or a volatile
/// message (PROTOCOL.md section 9); anything else is error 400 on the
/// stream and is not acted on.
#[tokio::test]
async fn a_datagram_carries_only_a_heartbeat_or_a_volatile_message() {
    let s = Server::start(&[]);
    let (mut c, status) = WtClient::connect(&wt_url(&s, "/wt"), None).await;
    assert_eq!(status, 200);
    c.send_datagram(&json!({"msgType": 2, "sendUserId": "dg-login"}))
        .await;
    let e = c.recv().await;
    assert_eq!(
        (e["msgType"].as_i64(), e["code"].as_i64()),
        (Some(9), Some(400)),
        "{e}"
    );
    // Not logged in: the login on the stream is the first one.
    c.send(&json!({"msgType": 2, "sendUserId": "dg-login"}))
        .await;
    assert_eq!(c.recv_type(2).await["sendUserId"], "dg-login");
    let (mut ws, _) = Client::login(&s, "ws-peer").await;
    c.send_datagram(&json!({"msgType": 3, "receivedUserId": "ws-peer", "clientMsgId": "d1", "msgBody": "stored?"}))
        .await;
    let e = c.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["clientMsgId"].as_str()),
        (Some(400), Some("d1")),
        "{e}"
    );
    ws.expect_silence(Duration::from_millis(300)).await;
    // Heartbeats and volatile messages still do.
    c.send_datagram(&json!({"msgType": 1})).await;
    assert_eq!(c.recv().await["msgType"], 1);
    c.send_datagram(
        &json!({"msgType": 3, "receivedUserId": "ws-peer", "volatile": true, "msgBody": "v"}),
    )
    .await;
    assert_eq!(ws.recv().await["msgBody"], "v");
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
    // The error frame, then the session close capsule, then QUIC's close.
    let (code, reason) = a.expect_session_closed().await;
    assert_eq!((code, reason.as_str()), (4413, "frame too large"));
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

#[tokio::test]
async fn the_rust_example_clients_chat_across_transports() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = Server::start(&[]);
    let spawn = |bin: &str, target: String, user: &str| {
        tokio::process::Command::new(example(bin))
            .args([target, user.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (cargo test builds the examples)"))
    };
    let mut ws = spawn("ws_client", s.ws_url("/ws"), "rust-ws");
    let mut wt = spawn("wt_client", format!("http://{}", s.http), "rust-wt");
    let mut ws_out = BufReader::new(ws.stdout.take().unwrap()).lines();
    let mut wt_out = BufReader::new(wt.stdout.take().unwrap()).lines();
    async fn until(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        needle: &str,
    ) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .expect("output in time")
                .unwrap()
                .expect("the client is running");
            if line.contains(needle) {
                return serde_json::from_str(&line).unwrap();
            }
        }
    }
    until(&mut ws_out, r#""msgType":2"#).await;
    until(&mut wt_out, r#""msgType":2"#).await;
    let mut wt_in = wt.stdin.take().unwrap();
    wt_in
        .write_all(b"@rust-ws hello over webtransport\n")
        .await
        .unwrap();
    let m = until(&mut ws_out, "hello over webtransport").await;
    assert_eq!(m["sendUserId"], "rust-wt");
    let mut ws_in = ws.stdin.take().unwrap();
    ws_in
        .write_all(b"@rust-wt hello over websocket\n")
        .await
        .unwrap();
    assert_eq!(
        until(&mut wt_out, "hello over websocket").await["sendUserId"],
        "rust-ws"
    );
    // A volatile message to the WT client arrives as a datagram and is printed.
    ws_in
        .write_all(b"{\"msgType\":3,\"receivedUserId\":\"rust-wt\",\"volatile\":true,\"msgBody\":\"dg\"}\n")
        .await
        .unwrap();
    assert_eq!(
        until(&mut wt_out, r#""volatile":true"#).await["msgBody"],
        "dg"
    );
}

#[tokio::test]
async fn gen_cert_then_serve_it_as_an_operator_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rtgate"))
        .args(["gen-cert", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    let cert = dir.path().join("dev-cert.pem");
    let key = dir.path().join("dev-key.pem");
    let s = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let (c, status) = WtClient::connect(&wt_url(&s, "/wt"), None).await;
    assert_eq!(status, 200);
    assert!(
        printed.contains(&c.cert_hash),
        "gen-cert printed the hash the server serves: {printed}"
    );
    let (_, body) = s.http("GET", "/cert-hash", &[], "").await;
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (h["hex"].as_str(), h["dev"].as_bool()),
        (Some(c.cert_hash.as_str()), Some(false))
    );
    // A key that does not parse is a clear error at start.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "garbage").unwrap();
    let data = tempfile::tempdir().unwrap();
    let err = crate::common::refuses_to_start(&[
        "--http",
        "127.0.0.1:0",
        "--wt",
        "127.0.0.1:0",
        "--data",
        data.path().to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("bad.pem"), "{err}");
}

#[tokio::test]
async fn a_session_closed_mid_frame_loses_nothing_acked() {
    let s = Server::start(&[]);
    let (mut ws, _) = Client::login(&s, "ws").await;
    let (mut a, _) = WtClient::login(&s, "a").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "ws", "msgBody": "acked", "clientMsgId": "k1"}))
        .await;
    assert_eq!(a.recv_type(4).await["clientMsgId"], "k1");
    // Half a frame, then the connection goes away.
    a.send_raw(&[0, 0, 0, 100, b'{', b'"', b'm']).await;
    a.close().await;
    assert_eq!(ws.recv().await["msgBody"], "acked");
    ws.expect_silence(Duration::from_millis(300)).await;
    // The user logs in again and the server is fine.
    let (mut again, reply) = WtClient::login(&s, "a").await;
    assert_eq!(reply["sendUserId"], "a");
    again.send(&json!({"msgType": 1})).await;
    assert_eq!(again.recv().await["msgType"], 1);
}

/// The certificate hash and WebTransport URL from `/cert-hash`.
async fn cert_hash(s: &Server) -> (String, [u8; 32]) {
    let (_, body) = s.http("GET", "/cert-hash", &[], "").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let hex = v["hex"].as_str().unwrap();
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let url = v["url"].as_str().unwrap().replace("localhost", "127.0.0.1");
    (url, hash)
}

/// A session of wtransport (quinn underneath, a third implementation) that
/// has sent its login for `user` on its stream.
async fn wtransport_login(
    s: &Server,
    user: &str,
) -> (
    wtransport::Connection,
    wtransport::SendStream,
    wtransport::RecvStream,
) {
    let (url, hash) = cert_hash(s).await;
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
        .build();
    let conn = wtransport::Endpoint::client(config)
        .unwrap()
        .connect(&url)
        .await
        .unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap().await.unwrap();
    let login = json!({"msgType": 2, "sendUserId": user}).to_string();
    let mut frame = (login.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(login.as_bytes());
    send.write_all(&frame).await.unwrap();
    (conn, send, recv)
}

#[tokio::test]
async fn a_session_flooding_extra_streams_is_closed_without_growing_the_server() {
    let s = Server::start(&[]);
    let (mut ws, _) = Client::login(&s, "ws").await;
    let (mut victim, _) = WtClient::login(&s, "victim").await;
    let before = s.rss();
    // The attacker logs in on its stream, then opens 80 more bidirectional
    // streams and writes 1 MB to each: only one stream per session is ever
    // read.
    let (conn, _send, _recv) = wtransport_login(&s, "mallory").await;
    let flood = (0..80).map(|_| {
        let conn = conn.clone();
        tokio::spawn(async move {
            let open = async { conn.open_bi().await.ok()?.await.ok() };
            let Ok(Some((mut tx, _rx))) = tokio::time::timeout(Duration::from_secs(5), open).await
            else {
                return 0usize;
            };
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = 0;
            for _ in 0..16 {
                match tokio::time::timeout(Duration::from_secs(2), tx.write_all(&chunk)).await {
                    Ok(Ok(())) => written += chunk.len(),
                    _ => break,
                }
            }
            written
        })
    });
    let flood: Vec<_> = flood.collect();
    // The server refuses the extra streams as they come and then closes the
    // attacker's connection.
    let closed = tokio::time::timeout(Duration::from_secs(15), conn.closed()).await;
    assert!(closed.is_ok(), "the flooding connection is still open");
    let mut written = 0;
    for t in flood {
        written += t.await.unwrap();
    }
    let grown = s.rss().saturating_sub(before);
    eprintln!("flood: attacker wrote {written} bytes; server RSS grew {grown} bytes");
    assert!(
        grown < 4 << 20,
        "server RSS grew by {grown} bytes under the flood ({written} bytes written by the attacker)"
    );
    // Everyone else carries on.
    ws.send(&json!({"msgType": 3, "receivedUserId": "victim", "msgBody": "still here"}))
        .await;
    assert_eq!(victim.recv_type(3).await["msgBody"], "still here");
    victim
        .send(&json!({"msgType": 3, "receivedUserId": "ws", "msgBody": "and back"}))
        .await;
    assert_eq!(ws.recv_type(3).await["msgBody"], "and back");
}

#[tokio::test]
async fn quic_peers_are_asked_to_acknowledge_less_often_and_still_get_every_datagram() {
    let s = Server::start(&[]);
    let (mut ws, _) = Client::login(&s, "ws").await;
    // wtransport (quinn underneath) announces the ack-frequency extension,
    // as browsers may not; the server then sends it an ACK_FREQUENCY frame.
    let (conn, _send, mut recv) = wtransport_login(&s, "quinn-peer").await;
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    recv.read_exact(&mut reply).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["sendUserId"], "quinn-peer");
    // Volatile messages still arrive as datagrams, each one.
    for i in 0..30 {
        ws.send(
            &json!({"msgType": 3, "receivedUserId": "quinn-peer", "volatile": true, "msgBody": i}),
        )
        .await;
    }
    let mut got = Vec::new();
    while got.len() < 30 {
        let d = tokio::time::timeout(WAIT, conn.receive_datagram())
            .await
            .expect("a datagram within the wait")
            .unwrap();
        let v: Value = serde_json::from_slice(&d.payload()).unwrap();
        got.push(v["msgBody"].as_i64().unwrap());
    }
    assert_eq!(got, (0..30).collect::<Vec<_>>());
    let stats = conn.quic_connection().stats();
    assert!(
        stats.frame_rx.ack_frequency >= 1,
        "the server sent no ACK_FREQUENCY frame: {:?}",
        stats.frame_rx
    );
}
