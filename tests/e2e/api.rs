//! The HTTP side: health, the server API, the demo page.

use serde_json::{Value, json};

use crate::common::{Client, Server};

#[tokio::test]
async fn health_and_static_files() {
    let s = Server::start(&[]);
    assert_eq!(s.http("GET", "/healthz", &[], "").await.0, 200);
    assert_eq!(
        s.http("GET", "/readyz", &[], "").await,
        (200, "ready\n".to_string())
    );
    let (status, page) = s.http("GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains("client.js"));
    let (status, js) = s.http("GET", "/client.js", &[], "").await;
    assert_eq!(status, 200);
    // The bundle built from clients/js, putting the client on the page.
    assert!(js.starts_with("// rtgate browser client, built from clients/js"));
    assert!(js.contains("Object.assign(globalThis, {") && js.contains("RtgateClient"));
}

#[tokio::test]
async fn publish_and_presence_in_dev_mode_on_loopback() {
    let s = Server::start(&[]);
    let (mut bob, _) = Client::login(&s, "bob").await;
    let (status, body) = s
        .http(
            "POST",
            "/api/publish",
            &[],
            r#"{"receivedUserId":"bob","msgBody":{"k":"v"},"bizType":3,"sendUserId":"billing"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["seq"], 1);
    let m = bob.recv().await;
    assert_eq!(
        (m["msgType"].as_i64(), m["sendUserId"].as_str()),
        (Some(3), Some("billing"))
    );
    assert_eq!(m["msgId"], ack["msgId"]);
    assert_eq!(m["msgBody"], json!({"k": "v"}));
    let (status, body) = s
        .http("GET", "/api/presence?userId=bob,carol", &[], "")
        .await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"userIds": ["bob"], "count": 1}))
    );
    let (status, body) = s
        .http("POST", "/api/publish", &[], r#"{"msgBody":1}"#)
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let s = Server::start(&["--api-key", "k1"]);
    let (mut r, _) = Client::login(&s, "r").await;
    r.send(&json!({"msgType": 5, "roomId": "news"})).await;
    r.recv().await;
    let msg = r#"{"roomId":"news","msgBody":"hi","msgType":120}"#;
    assert_eq!(s.http("POST", "/api/publish", &[], msg).await.0, 401);
    assert_eq!(
        s.http(
            "POST",
            "/api/publish",
            &[("authorization", "apikey nope")],
            msg
        )
        .await
        .0,
        401
    );
    assert_eq!(
        s.http("GET", "/api/presence?roomId=news", &[], "").await.0,
        401
    );
    let (status, _) = s
        .http(
            "POST",
            "/api/publish",
            &[("authorization", "apikey k1")],
            msg,
        )
        .await;
    assert_eq!(status, 200);
    let m = r.recv().await;
    assert_eq!(
        (m["msgType"].as_i64(), m["roomId"].as_str()),
        (Some(120), Some("news"))
    );
    let (_, body) = s
        .http(
            "GET",
            "/api/presence?roomId=news",
            &[("authorization", "apikey k1")],
            "",
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"userIds": ["r"], "count": 1})
    );
}

#[tokio::test]
async fn api_without_a_key_is_closed_outside_dev_mode() {
    let s = Server::start(&["--jwt-secret", "x"]);
    assert_eq!(
        s.http("POST", "/api/publish", &[], r#"{"roomId":"r"}"#)
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn sigterm_tells_clients_to_go_away_and_exits_cleanly() {
    let mut s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": 1, "clientMsgId": "m"}))
        .await;
    assert_eq!(a.recv_type(4).await["clientMsgId"], "m");
    assert_eq!(b.recv().await["msgBody"], 1);
    // Connected, not yet logged in: told too (a logged-in session hears
    // the shutdown through the hub, one before its login from the node).
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    assert!(s.is_running());
    let status = tokio::task::spawn_blocking(move || s.terminate())
        .await
        .unwrap();
    assert_eq!(a.expect_end().await, crate::common::End::Closed(1001));
    assert_eq!(b.expect_end().await, crate::common::End::Closed(1001));
    assert_eq!(c.expect_end().await, crate::common::End::Closed(1001));
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn wss_with_the_webtransport_certificate() {
    use futures_util::{SinkExt, StreamExt};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio_tungstenite::tungstenite::Message;

    let s = Server::start(&["--tls-http"]);
    let cert = CertificateDer::from_pem_file(s.data.path().join("certs/dev-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the certificate verifies for localhost");
    let url = format!("wss://localhost:{}/ws", s.http.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    ws.send(Message::text(
        json!({"msgType": 2, "sendUserId": "secure"}).to_string(),
    ))
    .await
    .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(v["sendUserId"], "secure");
    // Plain HTTP on the same port is not served.
    let plain = tokio::net::TcpStream::connect(s.http).await.unwrap();
    assert!(
        tokio_tungstenite::client_async(s.ws_url("/ws"), plain)
            .await
            .is_err()
    );
}
