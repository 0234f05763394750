//! The client package (clients/js, served at /client.js) against the real
//! server, in Chromium (transport race) and in Firefox (WebTransport): a
//! reload resumes rooms and inbox from the positions it saved in IndexedDB,
//! and a send made while the node is down is delivered, acked once, after
//! the node comes back.

use std::time::{Duration, Instant};

use fantoccini::Client as Browser;
use serde_json::{Value, json};

use super::{Driver, Gecko};
use crate::common::{Client, Server};

/// A client in the page as `window.c`, with what it delivers in
/// `window.got` ("<where> <text>") and its states in `window.states`.
const START: &str = r#"
const [opts, done] = [arguments[0], arguments[arguments.length - 1]];
window.got = []; window.states = [];
window.c = new RtgateClient(Object.assign({ url: location.origin, userId: "alice" }, opts));
c.on("message", (m) => got.push(`${m.roomId ? "room " + m.roomId : "direct"} ${m.msgBody.text}`));
c.on("state", (s) => states.push(s.state));
c.connect().then((m) => done({ inboxSeq: m.inboxSeq, transport: c.transport }), (e) => done({ error: String(e) }));
"#;

/// Evaluates `expr` in the page until it is truthy (or 20 s pass); returns it.
async fn until(b: &Browser, expr: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = b.execute(&format!("return {expr}"), vec![]).await.unwrap();
        if !v.is_null() && v != json!(false) {
            return v;
        }
        assert!(Instant::now() < deadline, "the page never had {expr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn got(b: &Browser) -> Vec<String> {
    serde_json::from_value(b.execute("return window.got", vec![]).await.unwrap()).unwrap()
}

/// Starts the page's client with `opts`; asserts it logged in over `transport`.
async fn start(b: &Browser, opts: &Value, transport: Option<&str>) {
    let login = b.execute_async(START, vec![opts.clone()]).await.unwrap();
    assert!(login.get("error").is_none(), "{login}");
    if let Some(t) = transport {
        assert_eq!(login["transport"], t);
    }
}

#[tokio::test]
async fn a_reload_resumes_rooms_and_inbox_from_saved_positions() {
    let driver = Driver::start();
    let b = driver.browser("reload").await;
    reload_resumes(&b, &json!({}), None).await;
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_send_made_while_the_node_is_down_is_delivered_once_it_is_back() {
    let driver = Driver::start();
    let b = driver.browser("outbox").await;
    outbox_survives_a_restart(&b, &json!({}), None).await;
    b.close().await.unwrap();
}

#[tokio::test]
async fn in_firefox_over_webtransport_a_reload_resumes_and_the_outbox_survives_a_restart() {
    let gecko = Gecko::start();
    let b = gecko.browser().await;
    let wt = json!({"transport": "webtransport"});
    reload_resumes(&b, &wt, Some("webtransport")).await;
    outbox_survives_a_restart(&b, &wt, Some("webtransport")).await;
    b.close().await.unwrap();
}

async fn reload_resumes(b: &Browser, opts: &Value, transport: Option<&str>) {
    let server = Server::start(&[]);
    let page = format!("http://{}/", server.http);
    b.goto(&page).await.unwrap();
    start(b, opts, transport).await;
    b.execute("return c.join('lobby')", vec![]).await.unwrap();

    let (mut bob, _) = Client::login(&server, "bob").await;
    bob.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    bob.recv_type(5).await;
    let say = |to: Value, text: &str| {
        let mut m = json!({"msgType": 3, "msgBody": {"text": text}});
        m.as_object_mut()
            .unwrap()
            .extend(to.as_object().unwrap().clone());
        m
    };
    let room = json!({"roomId": "lobby"});
    let direct = json!({"receivedUserId": "alice"});
    for m in [say(room.clone(), "one"), say(direct.clone(), "two")] {
        bob.send(&m).await;
        bob.recv_type(4).await;
    }
    until(b, "got.length === 2").await;
    // The page goes away (positions were saved as messages arrived).
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.goto("about:blank").await.unwrap();
    for m in [
        say(room.clone(), "three"),
        say(direct.clone(), "four"),
        say(room.clone(), "five"),
    ] {
        bob.send(&m).await;
        bob.recv_type(4).await;
    }
    // A fresh page and a fresh client that names no room: it is back in the
    // lobby and gets exactly what it missed, nothing it had.
    b.goto(&page).await.unwrap();
    start(b, opts, transport).await;
    until(b, "got.length >= 3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut replayed = got(b).await;
    replayed.sort();
    assert_eq!(
        replayed,
        ["direct four", "room lobby five", "room lobby three"]
    );
    assert_eq!(
        b.execute("return [...c.rooms]", vec![]).await.unwrap(),
        json!(["lobby"])
    );
    bob.send(&say(room, "six, live")).await;
    until(b, "got.includes('room lobby six, live')").await;
    // The saved positions are in IndexedDB, under this origin and user.
    let saved = b
        .execute_async(
            r#"const done = arguments[0];
            const req = indexedDB.open("rtgate");
            req.onsuccess = () => {
              const get = req.result.transaction("positions").objectStore("positions").get(`${location.origin}|alice`);
              get.onsuccess = () => done(get.result);
            };"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(saved["user"], "alice");
    assert_eq!(saved["joined"], json!(["lobby"]));
    assert!(saved["inbox"].as_u64().unwrap() >= 2, "{saved}");
}

async fn outbox_survives_a_restart(b: &Browser, opts: &Value, transport: Option<&str>) {
    // A killed node sends nothing more: a WebSocket sees the reset at once,
    // a QUIC session only when the idle timeout passes, kept short here.
    let args = ["--wt-idle-timeout-sec", "3", "--wt-keepalive-sec", "1"];
    let server = Server::start(&args);
    b.goto(&format!("http://{}/", server.http)).await.unwrap();
    let mut opts = opts.clone();
    opts["backoffMs"] = json!(200);
    opts["maxBackoffMs"] = json!(1000);
    opts["userId"] = json!("amy");
    start(b, &opts, transport).await;

    // The node dies; the page sends while it is gone.
    let place = server.kill_keep_place();
    until(b, "c.state === 'reconnecting'").await;
    let pending = b
        .execute(
            r#"window.sent = null;
            c.sendToUser("bob", { text: "sent while down" }).then(
              (a) => { window.sent = { msgId: a.msgId, seq: a.seq }; },
              (e) => { window.sent = { error: e.code + " " + e.message }; });
            return c.pendingSends"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pending, json!(1), "queued, not lost and not failed");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        b.execute("return window.sent", vec![]).await.unwrap(),
        Value::Null,
        "still waiting while the node is down"
    );
    // It comes back on the same ports and data: the client reconnects and
    // the outbox sends; the ack settles the page's promise.
    let server = Server::start_at(place, &args);
    let sent = until(b, "window.sent").await;
    assert!(sent.get("error").is_none(), "{sent}");
    assert_eq!(
        b.execute("return c.pendingSends", vec![]).await.unwrap(),
        json!(0)
    );
    // bob, logging in now, finds it in his inbox, once.
    let (mut bob, _) = Client::login(&server, "bob").await;
    let m = bob.recv_type(3).await;
    assert_eq!(m["msgBody"], json!({"text": "sent while down"}));
    assert_eq!(m["msgId"], sent["msgId"]);
    bob.expect_silence(Duration::from_millis(500)).await;
    if let Some(t) = transport {
        assert_eq!(b.execute("return c.transport", vec![]).await.unwrap(), t);
    }
}

/// Issue 30, MessagePack: client.js with `encoding: "msgpack"` in
/// Chromium, over WebTransport, WebSocket and SSE, chats with a JSON
/// client; the server counts its frames as MessagePack ones (the JSON
/// client's frames reach it unpacked, its own reach the JSON client as
/// JSON).
#[tokio::test]
async fn client_js_speaks_messagepack_over_both_transports_beside_a_json_client() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    let b = driver.browser("msgpack").await;
    let (mut bob, _) = Client::login(&server, "bob").await;
    for transport in ["webtransport", "websocket", "sse"] {
        b.goto(&format!("http://{}/", server.http)).await.unwrap();
        let opts = json!({"encoding": "msgpack", "transport": transport});
        start(&b, &opts, Some(transport)).await;
        // The link packs (a JSON frame to a MessagePack session, or the
        // reverse, would have failed the login already).
        let packed = b
            .execute("return c.link.codec.packed", vec![])
            .await
            .unwrap();
        assert_eq!(packed, json!(true));
        if transport == "websocket" {
            let p = b
                .execute("return c.link.ws.protocol", vec![])
                .await
                .unwrap();
            assert_eq!(p, json!("rtgate.msgpack"));
        }
        let text = format!("packed over {transport} ✓ {}", 9_007_199_254_740_993u64);
        b.execute(
            "c.sendToUser('bob', { text: arguments[0], n: [1, 2.5, null] })",
            vec![json!(text)],
        )
        .await
        .unwrap();
        let m = bob.recv_type(3).await;
        assert_eq!(
            m["msgBody"],
            json!({"text": text, "n": [1, 2.5, null]}),
            "{m}"
        );
        bob.send(&json!({"msgType": 3, "receivedUserId": "alice", "msgBody": {"text": format!("json back over {transport}")}}))
            .await;
        until(
            &b,
            &format!("window.got.includes('direct json back over {transport}')"),
        )
        .await;
        b.execute("return c.close()", vec![]).await.unwrap();
    }
    b.close().await.unwrap();
}

/// Issue 30, the HTTP fallback: behind an nginx that refuses WebSocket
/// upgrades (with the recipe for `/sse`), with UDP dropped (WebTransport's
/// URL names a port that swallows every datagram), client.js in Chromium falls back
/// to Server-Sent Events, chats with a WebSocket user, and survives a
/// restart of the node with nothing lost or doubled.
#[tokio::test]
async fn with_no_udp_and_no_websocket_client_js_chats_over_sse_through_nginx() {
    let server = Server::start(&[]);
    let nginx = crate::nginx::Nginx::refusing_upgrades(server.http);
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = blackhole.local_addr().unwrap().port();
    let driver = Driver::start();
    let b = driver.browser("sse").await;
    b.goto(&format!("http://127.0.0.1:{}/", nginx.port))
        .await
        .unwrap();
    let opts = json!({"userId": "sid", "wtUrl": format!("https://127.0.0.1:{udp}/wt"),
                      "wtTimeoutMs": 1000, "backoffMs": 200, "maxBackoffMs": 1000});
    start(&b, &opts, Some("sse")).await;
    let (mut ws, _) = Client::login(&server, "wanda").await;
    b.execute(
        "c.sendToUser('wanda', { text: 'from behind the proxy' })",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        ws.recv_type(3).await["msgBody"],
        json!({"text": "from behind the proxy"})
    );
    ws.send(
        &json!({"msgType": 3, "receivedUserId": "sid", "msgBody": {"text": "to the fallback"}}),
    )
    .await;
    until(&b, "window.got.includes('direct to the fallback')").await;
    // The node restarts; what is sent meanwhile arrives once.
    let place = server.kill_keep_place();
    until(&b, "c.state === 'reconnecting'").await;
    let server = Server::start_at(place, &[]);
    let (mut ws, _) = Client::login_retrying(&server, "wanda").await;
    ws.send(
        &json!({"msgType": 3, "receivedUserId": "sid", "msgBody": {"text": "after the restart"}}),
    )
    .await;
    until(&b, "window.got.includes('direct after the restart')").await;
    until(&b, "c.state === 'connected' && c.transport === 'sse'").await;
    let got = got(&b).await;
    let once = |t: &str| got.iter().filter(|g| g.as_str() == t).count();
    assert_eq!(
        (
            once("direct to the fallback"),
            once("direct after the restart")
        ),
        (1, 1),
        "{got:?}"
    );
    b.close().await.unwrap();
    drop(blackhole);
}

/// Issue 30: with no proxy in between, a node that restarts under an SSE
/// session: the browser's EventSource reopens onto a new session by
/// itself, and client.js logs in there at once (instead of waiting for the
/// server's login timeout), with what was sent meanwhile delivered once.
#[tokio::test]
async fn an_sse_client_logs_in_again_at_once_when_its_node_restarts() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    let b = driver.browser("sse-restart").await;
    b.goto(&format!("http://{}/", server.http)).await.unwrap();
    let opts = json!({"userId": "rae", "transport": "sse", "backoffMs": 200, "maxBackoffMs": 1000});
    start(&b, &opts, Some("sse")).await;
    let place = server.kill_keep_place();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = Server::start_at(place, &[]);
    let (mut ws, _) = Client::login_retrying(&server, "ray").await;
    ws.send(&json!({"msgType": 3, "receivedUserId": "rae", "msgBody": {"text": "after"}}))
        .await;
    let t0 = std::time::Instant::now();
    until(&b, "window.got.includes('direct after')").await;
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let got = got(&b).await;
    assert_eq!(
        got.iter().filter(|g| g.as_str() == "direct after").count(),
        1,
        "{got:?}"
    );
    b.close().await.unwrap();
}
