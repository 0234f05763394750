//! Firefox ESR over WebTransport: the demo page chatting with a Chromium
//! page and a WebSocket client, datagrams both ways, the session close
//! codes, and an operator certificate from a test CA installed into the
//! profile (no `serverCertificateHashes`).

use std::process::Command;

use fantoccini::Client as Browser;
use serde_json::json;

use super::{Driver, Gecko, WT_ONLY, click, close_codes_reach, fill, open_and_login, wait_for};
use crate::common::{Client, Server};

async fn datagrams(s: &Server, direction: &str) -> f64 {
    let key = format!("rtgate_datagrams_total{{direction=\"{direction}\"}}");
    s.metrics().await.get(&key).copied().unwrap_or(0.0)
}

/// Runs `js` in the page, where the demo's `client` is connected.
async fn run(b: &Browser, js: &str) {
    b.execute(js, vec![]).await.unwrap();
}

#[tokio::test]
async fn firefox_chats_over_webtransport_with_chromium_and_websocket_users() {
    let server = Server::start(&[]);
    let gecko = Gecko::start();
    let fiona = gecko.browser().await;
    let chromium = Driver::start();
    let chris = chromium.browser("chris").await;
    let shown = open_and_login(&fiona, &server, WT_ONLY, "fiona", "webtransport").await;
    // Firefox ESR announces draft-02 as well.
    assert_eq!(shown, "via webtransport (draft-02)");
    open_and_login(&chris, &server, WT_ONLY, "chris", "webtransport").await;
    let (mut carol, _) = Client::login(&server, "carol").await;

    // Direct messages, Firefox to Chromium and back, and with WebSocket.
    fill(&fiona, "to", "chris").await;
    fill(&fiona, "text", "hello from firefox").await;
    click(&fiona, "send-direct").await;
    wait_for(&chris, "log", "[direct] fiona: hello from firefox").await;
    fill(&chris, "to", "fiona").await;
    fill(&chris, "text", "hello from chromium").await;
    click(&chris, "send-direct").await;
    wait_for(&fiona, "log", "[direct] chris: hello from chromium").await;
    carol
        .send(&json!({"msgType": 3, "receivedUserId": "fiona", "msgBody": {"text": "from websocket"}}))
        .await;
    wait_for(&fiona, "log", "[direct] carol: from websocket").await;
    fill(&fiona, "to", "carol").await;
    fill(&fiona, "text", "back to websocket").await;
    click(&fiona, "send-direct").await;
    assert_eq!(
        carol.recv_type(3).await["msgBody"],
        json!({"text": "back to websocket"})
    );

    // A room, with volatile messages as datagrams both ways.
    for b in [&fiona, &chris] {
        click(b, "join").await;
        wait_for(b, "log", "joined lobby").await;
    }
    carol.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    carol.recv_type(5).await;
    let before_in = datagrams(&server, "in").await;
    run(
        &fiona,
        r#"client.send({ roomId: "lobby", msgBody: { text: "volatile from firefox" }, volatile: true })"#,
    )
    .await;
    wait_for(&chris, "log", "[room lobby] fiona: volatile from firefox").await;
    let m = carol.recv_type(3).await;
    assert_eq!(
        (m["msgBody"].clone(), m["volatile"].clone()),
        (json!({"text": "volatile from firefox"}), json!(true))
    );
    assert!(
        datagrams(&server, "in").await > before_in,
        "Firefox's volatile message came as a datagram"
    );
    let before_out = datagrams(&server, "out").await;
    carol
        .send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": {"text": "volatile to firefox"}, "volatile": true}))
        .await;
    wait_for(&fiona, "log", "[room lobby] carol: volatile to firefox").await;
    assert!(
        datagrams(&server, "out").await >= before_out + 2.0,
        "the volatile message went to both WebTransport pages as datagrams"
    );
    fiona.close().await.unwrap();
    chris.close().await.unwrap();
}

#[tokio::test]
async fn firefox_sees_webtransport_close_codes() {
    let gecko = Gecko::start();
    let b = gecko.browser().await;
    close_codes_reach(&b).await;
    b.close().await.unwrap();
}

/// A test CA and a certificate for `localhost` and `127.0.0.1` it issued:
/// (CA PEM, chain PEM, key PEM).
fn test_ca() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rtgate test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        format!("{}{}", cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
    )
}

#[tokio::test]
async fn firefox_trusts_an_operator_certificate_from_a_ca_in_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = test_ca();
    let (ca_path, chain_path, key_path) = (
        dir.path().join("ca.pem"),
        dir.path().join("chain.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(&chain_path, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        chain_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let (_, body) = server.http("GET", "/cert-hash", &[], "").await;
    assert!(body.contains(r#""dev":false"#), "{body}");
    // The CA goes into the profile's NSS database before Firefox starts.
    let gecko = Gecko::start();
    let db = format!("sql:{}", gecko.profile().display());
    let certutil = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .expect("certutil runs (Debian package libnss3-tools; scripts/test.sh installs it)");
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    };
    certutil(&["-N", "-d", &db, "--empty-password"]);
    certutil(&[
        "-A",
        "-d",
        &db,
        "-n",
        "rtgate test CA",
        "-t",
        "C,,",
        "-i",
        ca_path.to_str().unwrap(),
    ]);
    let fiona = gecko.browser().await;
    // Without the profile's pref `network.http.http3.disable_when_third_party_roots_found`
    // = false (set by `Gecko::browser`), Firefox refuses HTTP/3, and so
    // WebTransport, once a root of the user's own is installed: client.js
    // then falls back to WebSocket ("WebTransport connection rejected").
    let shown = open_and_login(&fiona, &server, WT_ONLY, "fiona", "webtransport").await;
    // Firefox ESR announces draft-02 as well.
    assert_eq!(shown, "via webtransport (draft-02)");
    let (mut carol, _) = Client::login(&server, "carol").await;
    carol
        .send(&json!({"msgType": 3, "receivedUserId": "fiona", "msgBody": {"text": "over a CA certificate"}}))
        .await;
    wait_for(&fiona, "log", "[direct] carol: over a CA certificate").await;
    fiona.close().await.unwrap();
}
