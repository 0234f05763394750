//! WebTransport as a browser sees it: the session close codes
//! (CLOSE_WEBTRANSPORT_SESSION) and client.js's race against WebSocket when
//! UDP is blocked.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Driver, WT_ONLY, close_codes_reach, open_and_login, page_result, text, wait_for};
use crate::common::{Client, Server};

#[tokio::test]
async fn webtransport_close_codes_reach_the_browser_as_session_close_codes() {
    let driver = Driver::start();
    let b = driver.browser("closes").await;
    close_codes_reach(&b).await;
    b.close().await.unwrap();
}

/// client.js in the page: connects as `user` with `opts`, and records in
/// `window.firsts[name]` the milliseconds from `connect()` to the first
/// message, the transport, and the fallback reasons seen.
const FIRST_MESSAGE: &str = r#"
const [name, user, opts] = arguments;
window.firsts = window.firsts || {};
const t0 = performance.now();
const fallbacks = [];
const c = new RtgateClient(Object.assign({ url: location.origin, userId: user }, opts));
c.on("fallback", (why) => fallbacks.push(why));
c.on("message", () => {
  if (!window.firsts[name]) window.firsts[name] = { ms: performance.now() - t0, transport: c.transport, fallbacks };
});
c.connect().catch((e) => { window.firsts[name] = { error: String(e) }; });
"#;

#[tokio::test]
async fn with_udp_blocked_the_first_message_comes_as_fast_as_over_websocket_alone() {
    let server = Server::start(&[]);
    // A UDP port that swallows every packet, as a network that blocks UDP.
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let wt_url = format!(
        "https://127.0.0.1:{}/wt",
        blackhole.local_addr().unwrap().port()
    );
    let (mut sender, _) = Client::login(&server, "sender").await;
    for user in ["plain", "first", "returning"] {
        sender
            .send(&json!({"msgType": 3, "receivedUserId": user, "msgBody": "waiting for you", "clientMsgId": user}))
            .await;
        sender.recv_type(4).await;
    }
    let driver = Driver::start();
    let b = driver.browser("udp-blocked").await;
    b.goto(&format!("http://{}/", server.http)).await.unwrap();
    let run = |name: &'static str, opts: serde_json::Value| {
        let b = b.clone();
        async move {
            b.execute(FIRST_MESSAGE, vec![json!(name), json!(name), opts])
                .await
                .unwrap();
            page_result(&b, "firsts", name).await
        }
    };
    let plain = run("plain", json!({"transport": "websocket"})).await;
    let first = run("first", json!({"wtUrl": wt_url})).await;
    // The first visit's WebTransport attempt ends in its timeout and is
    // remembered for this origin...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kind = b
            .execute(
                "const v = localStorage.getItem('rtgate.transport:' + location.origin); return v && JSON.parse(v).kind",
                vec![],
            )
            .await
            .unwrap();
        if kind == "websocket" {
            break;
        }
        assert!(Instant::now() < deadline, "never remembered: {kind}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...so a returning visit does not try it at all.
    let returning = run("returning", json!({"wtUrl": wt_url})).await;
    eprintln!(
        "time to first message: websocket only {plain}, first visit {first}, returning {returning}"
    );
    for r in [&plain, &first, &returning] {
        assert_eq!(r["transport"], "websocket", "{r}");
    }
    let ms = |r: &serde_json::Value| r["ms"].as_f64().unwrap();
    // The first visit waits at most the grace (250 ms) for WebTransport, not
    // its 3 s timeout.
    assert!(
        ms(&first) < ms(&plain) + 1000.0,
        "first {first} vs plain {plain}"
    );
    assert!(
        ms(&returning) < ms(&plain) + 1000.0,
        "returning {returning} vs plain {plain}"
    );
    assert!(
        returning["fallbacks"][0]
            .as_str()
            .unwrap_or("")
            .contains("recently"),
        "{returning}"
    );
    b.close().await.unwrap();
    drop(blackhole);
}

/// Whether a WebTransport session opens with the certificate hash `hex`.
const WT_WITH_HASH: &str = r#"
const [hex, done] = arguments;
const value = new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
(async () => {
  const info = await (await fetch("/cert-hash")).json();
  const wt = new WebTransport(info.url, { serverCertificateHashes: [{ algorithm: "sha-256", value }] });
  try { await wt.ready; wt.close(); done("opened"); } catch (e) { done("refused"); }
})();
"#;

async fn cert_hex(s: &Server) -> String {
    let (_, body) = s.http("GET", "/cert-hash", &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["hex"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_rotated_dev_certificate_keeps_open_sessions_and_reconnects_take_the_new_hash() {
    // A 40 s certificate is renewed 10 s after it is made.
    let server = Server::start(&["--dev-cert-validity-sec", "40"]);
    let old = cert_hex(&server).await;
    let driver = Driver::start();
    let alice = driver.browser("rotation").await;
    open_and_login(&alice, &server, WT_ONLY, "alice", "webtransport").await;
    let (mut carol, _) = Client::login(&server, "carol").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let h = cert_hex(&server).await;
        if h != old {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the certificate was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The open session lives on under the old certificate.
    carol
        .send(&json!({"msgType": 3, "receivedUserId": "alice", "msgBody": {"text": "after rotation"}}))
        .await;
    wait_for(&alice, "log", "[direct] carol: after rotation").await;
    assert_eq!(
        text(&alice, "transport").await,
        "via webtransport (draft-02)"
    );
    // New handshakes get the new certificate: the old hash no longer opens a
    // session, the new one does.
    let with = |hex: String| {
        let alice = alice.clone();
        async move {
            alice
                .execute_async(WT_WITH_HASH, vec![json!(hex)])
                .await
                .unwrap()
        }
    };
    assert_eq!(with(old).await, "refused");
    assert_eq!(with(new).await, "opened");
    // The page's session drops; client.js reconnects over WebTransport with
    // the hash it fetches again from /cert-hash.
    alice
        .execute("client.link.close(4000, 'network gone')", vec![])
        .await
        .unwrap();
    wait_for(&alice, "state", "reconnecting").await;
    wait_for(&alice, "state", "connected").await;
    assert_eq!(
        text(&alice, "transport").await,
        "via webtransport (draft-02)"
    );
    carol
        .send(&json!({"msgType": 3, "receivedUserId": "alice", "msgBody": {"text": "after reconnect"}}))
        .await;
    wait_for(&alice, "log", "[direct] carol: after reconnect").await;
    alice.close().await.unwrap();
}

#[tokio::test]
async fn client_js_keeps_only_the_latest_value_of_an_update() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    let alice = driver.browser("latest").await;
    open_and_login(&alice, &server, WT_ONLY, "alice", "webtransport").await;
    alice
        .execute(
            r#"window.latest = []; client.on("message", (m) => { if (m.latest) window.latest.push(m); });"#,
            vec![],
        )
        .await
        .unwrap();
    super::click(&alice, "join").await;
    wait_for(&alice, "log", "joined lobby").await;
    let (mut carol, _) = Client::login(&server, "carol").await;
    carol.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    carol.recv_type(5).await;
    for text in ["typ", "typing"] {
        carol
            .send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": text, "volatile": true, "latest": "typing"}))
            .await;
    }
    wait_for(&alice, "log", r#"carol: "typing""#).await;
    // The two updates as the server sent them, given to a fresh client in
    // the order a reordering network could deliver them: the older one is
    // dropped.
    let r = alice
        .execute(
            r#"
            const [older, newer] = window.latest;
            const c = new RtgateClient({ userId: "x" });
            const shown = [], stale = [];
            c.on("message", (m) => shown.push(m.msgBody));
            c.on("stale", (m) => stale.push(m.msgBody));
            c.onMessage(newer);
            c.onMessage(older);
            return { shown, stale, latest: newer.latest, ordered: older.msgId < newer.msgId };
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({"shown": ["typing"], "stale": ["typ"], "latest": "typing", "ordered": true})
    );
    alice.close().await.unwrap();
}
