//! The demo page and client.js in Chromium: two pages chat over
//! WebTransport and WebSocket, UDP unreachable, token refresh.

use std::time::{Duration, Instant};

use fantoccini::Client as Browser;
use serde_json::json;

use super::{Driver, WT_ONLY, click, fill, open_and_login, text, wait_for};
use crate::common::{Client, Server};

#[tokio::test]
async fn demo_pages_chat_over_webtransport_and_websocket() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    let alice = driver.browser("alice").await;
    let bob = driver.browser("bob").await;
    // alice's page prefers WebTransport and gets it; bob's is told to use WebSocket.
    let shown = open_and_login(&alice, &server, "", "alice", "webtransport").await;
    // Chromium announces draft-02 (0x2b603742) and the page says so.
    assert_eq!(shown, "via webtransport (draft-02)");
    open_and_login(&bob, &server, "?transport=websocket", "bob", "websocket").await;
    let (mut carol, _) = Client::login(&server, "carol").await;

    fill(&alice, "to", "bob").await;
    fill(&alice, "text", "hello bob").await;
    click(&alice, "send-direct").await;
    wait_for(&alice, "log", "[direct to bob] hello bob (seq 1)").await;
    wait_for(&bob, "log", "[direct] alice: hello bob").await;

    for b in [&alice, &bob] {
        click(b, "join").await;
        wait_for(b, "log", "joined lobby").await;
    }
    carol.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    carol.recv_type(5).await;
    fill(&bob, "text", "hi room").await;
    click(&bob, "send-room").await;
    wait_for(&alice, "log", "[room lobby] bob: hi room").await;
    assert_eq!(
        carol.recv_type(3).await["msgBody"],
        json!({"text": "hi room"})
    );
    // A WebSocket client reaches the WebTransport page and back.
    carol.send(&json!({"msgType": 3, "receivedUserId": "alice", "msgBody": {"text": "from a ws client"}})).await;
    wait_for(&alice, "log", "[direct] carol: from a ws client").await;
    fill(&alice, "to", "carol").await;
    fill(&alice, "text", "back over wt").await;
    click(&alice, "send-direct").await;
    assert_eq!(
        carol.recv_type(3).await["msgBody"],
        json!({"text": "back over wt"})
    );
    click(&alice, "who").await;
    wait_for(&alice, "log", "online in lobby: alice, bob, carol").await;

    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test]
async fn demo_page_falls_back_to_websocket_when_udp_is_unreachable() {
    let server = Server::start(&[]);
    // A UDP port that swallows every packet: WebTransport can only time out.
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = blackhole.local_addr().unwrap().port();
    let driver = Driver::start();
    let b = driver.browser("fallback").await;
    let query = format!("?wt=https://127.0.0.1:{port}/wt");
    open_and_login(&b, &server, &query, "dave", "websocket").await;
    wait_for(&b, "log", "WebTransport unavailable").await;
    let (mut erin, _) = Client::login(&server, "erin").await;
    erin.send(
        &json!({"msgType": 3, "receivedUserId": "dave", "msgBody": {"text": "still reachable"}}),
    )
    .await;
    wait_for(&b, "log", "[direct] erin: still reachable").await;
    b.close().await.unwrap();
    drop(blackhole);
}

/// client.js with a token source, in the page: `getToken` answers from
/// `tokens` in order (`null`: it fails). Events are logged to `window.log`.
const TOKEN_CLIENT: &str = r#"
const [name, tokens] = arguments;
window.logs = window.logs || {};
const log = (window.logs[name] = []);
let calls = 0;
const c = new RtgateClient({
  url: location.origin, userId: "alice", transport: "websocket",
  getToken: async () => {
    const t = tokens[Math.min(calls++, tokens.length - 1)];
    if (t === null) throw new Error("no token now");
    return t;
  },
});
for (const e of ["login", "expiring", "refreshed"]) c.on(e, () => log.push(e));
c.on("state", (s) => log.push("state " + s.state));
c.connect().catch((e) => log.push("failed " + e));
"#;

async fn page_log(b: &Browser, name: &str) -> Vec<String> {
    let v = b
        .execute(
            &format!("return (window.logs || {{}})[{name:?}] || []"),
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn client_js_refreshes_its_token_and_comes_back_after_4401() {
    let s = Server::start(&["--jwt-secret", "k3y"]);
    let token = |exp_in: i64| {
        crate::common::jwt(
            "k3y",
            json!({"sub": "alice", "exp": crate::common::unix_now() + exp_in}),
        )
    };
    let driver = Driver::start();
    let b = driver.browser("tokens").await;
    b.goto(&format!("http://{}/", s.http)).await.unwrap();
    // One client refreshes when told its token expires soon; the other's
    // token source fails then, so the server closes it 4401, and it comes
    // back with the next token instead of giving up.
    let refreshing = json!([token(2), token(120)]);
    let failing = json!([token(2), null, token(120)]);
    b.execute(TOKEN_CLIENT, vec![json!("refreshing"), refreshing])
        .await
        .unwrap();
    b.execute(TOKEN_CLIENT, vec![json!("failing"), failing])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (r, f) = (
            page_log(&b, "refreshing").await,
            page_log(&b, "failing").await,
        );
        let logins = |l: &[String]| l.iter().filter(|e| *e == "login").count();
        let done = r.contains(&"refreshed".to_string()) && logins(&f) >= 2;
        if done {
            // Well past the first token's end, the refreshed client never
            // had to log in again.
            tokio::time::sleep(Duration::from_secs(4)).await;
            let r = page_log(&b, "refreshing").await;
            assert_eq!(logins(&r), 1, "{r:?}");
            assert!(r.contains(&"expiring".to_string()), "{r:?}");
            assert_eq!(r.last().map(String::as_str), Some("refreshed"), "{r:?}");
            assert!(f.iter().any(|e| e == "state reconnecting"), "{f:?}");
            assert!(!f.iter().any(|e| e == "state refused"), "{f:?}");
            assert_eq!(f.last().map(String::as_str), Some("login"), "{f:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refreshing: {r:?}\nfailing: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.close().await.unwrap();
}

#[tokio::test]
async fn two_windows_chat_with_no_setup_and_see_replayed_and_live_messages() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    let ann = driver.browser("ann").await;
    let ben = driver.browser("ben").await;
    // A person opens the page and presses Connect: a name is made up and
    // the page joins the lobby by itself.
    ann.goto(&format!("http://{}/", server.http)).await.unwrap();
    click(&ann, "connect").await;
    wait_for(&ann, "state", "connected").await;
    wait_for(&ann, "log", "joined lobby").await;
    let ann_name = ann
        .find(fantoccini::Locator::Id("user"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(ann_name.starts_with("user-"), "{ann_name}");
    open_and_login(&ben, &server, "?transport=websocket", "ben", "websocket").await;
    wait_for(&ben, "log", "joined lobby").await;
    wait_for(&ben, "log", "connection: connected via websocket").await;
    // Enter sends to the room; the other window shows it live with its latency.
    fill(&ann, "text", "hi all\n").await;
    wait_for(&ben, "log", &format!("[room lobby] {ann_name}: hi all (")).await;
    // Ben away: direct messages wait for him and come back as replayed.
    click(&ben, "disconnect").await;
    wait_for(&ben, "log", "connection: closed").await;
    fill(&ann, "to", "ben").await;
    for text in ["while away 1\n", "while away 2\n"] {
        fill(&ann, "text", text).await;
    }
    wait_for(&ann, "log", "[direct to ben] while away 2").await;
    click(&ben, "connect").await;
    wait_for(
        &ben,
        "log",
        &format!("replayed [direct] {ann_name}: while away 2 (sent "),
    )
    .await;
    assert_eq!(text(&ben, "replay-count").await, "2");
    fill(&ann, "text", "welcome back\n").await;
    wait_for(&ben, "log", &format!("[direct] {ann_name}: welcome back (")).await;
    assert_eq!(
        text(&ben, "live-count").await,
        "2",
        "hi all and welcome back"
    );
    ben.set_window_size(1100, 900).await.unwrap();
    let png = ben.screenshot().await.unwrap();
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png"),
        &png,
    )
    .unwrap();
    ann.close().await.unwrap();
    ben.close().await.unwrap();
}

/// Issue 28: two windows of the demo page show what a chat needs: alice's
/// message is ticked sent, then read once bob's window opens; bob's window
/// counts it unread at login; typing, a reaction, an edit and a room read
/// position reach the other window.
#[tokio::test]
async fn two_windows_show_ticks_unread_counts_typing_reactions_and_edits() {
    let server = Server::start(&[]);
    let driver = Driver::start();
    let alice = driver.browser("alice").await;
    let bob = driver.browser("bob").await;
    open_and_login(&alice, &server, WT_ONLY, "alice", "webtransport").await;
    wait_for(&alice, "log", "joined lobby").await;
    fill(&alice, "to", "bob").await;
    fill(&alice, "text", "are you there?\n").await;
    wait_for(
        &alice,
        "log",
        "[direct to bob] are you there? (seq 1)✓ sent",
    )
    .await;
    // Bob's window opens: the message is unread at login, shown, and read.
    open_and_login(&bob, &server, "?transport=websocket", "bob", "websocket").await;
    wait_for(&bob, "log", "unread at login: inbox 1").await;
    wait_for(&bob, "log", "replayed [direct] alice: are you there?").await;
    wait_for(&alice, "log", "are you there? (seq 1)✓✓ read").await;
    wait_for(&bob, "unread", "inbox 0").await;
    // Bob types to alice: her window says so.
    fill(&bob, "to", "alice").await;
    fill(&bob, "text", "yes").await;
    wait_for(&alice, "typing", "bob is typing").await;
    // Bob reacts to alice's message; she sees who.
    bob.execute(
        "document.querySelector('#log button.react').click()",
        vec![],
    )
    .await
    .unwrap();
    wait_for(&alice, "log", "👍 bob").await;
    // Alice edits her message; bob's window shows the new text.
    fill(&alice, "text", "are you there, bob?").await;
    click(&alice, "edit-last").await;
    wait_for(&bob, "log", "alice: are you there, bob? (edited)").await;
    // In the lobby, bob reading alice's room message shows on her line.
    wait_for(&bob, "log", "joined lobby").await;
    fill(&alice, "to", "").await;
    fill(&alice, "text", "hello lobby\n").await;
    wait_for(&bob, "log", "[room lobby] alice: hello lobby").await;
    wait_for(&alice, "log", "hello lobby (seq 1)✓✓ read by bob").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

/// Issue 30: the demo page behind an nginx that refuses WebSocket upgrades,
/// with UDP dropped (`?wt=` names a port that swallows every datagram, as a
/// firewall's DROP rule would), connects
/// over the HTTP fallback, chats with a WebSocket user, and comes back
/// after a node restart with what was sent meanwhile, once.
#[tokio::test]
async fn the_demo_page_falls_back_to_sse_behind_a_proxy_without_websocket() {
    let server = Server::start(&[]);
    let nginx = crate::nginx::Nginx::refusing_upgrades(server.http);
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = blackhole.local_addr().unwrap().port();
    let driver = Driver::start();
    let b = driver.browser("sse-demo").await;
    b.goto(&format!(
        "http://127.0.0.1:{}/?wt=https://127.0.0.1:{udp}/wt",
        nginx.port
    ))
    .await
    .unwrap();
    fill(&b, "user", "sue").await;
    click(&b, "connect").await;
    wait_for(&b, "state", "connected").await;
    assert_eq!(text(&b, "transport").await, "via sse");
    wait_for(&b, "log", "joined lobby").await;
    let (mut ws, _) = Client::login(&server, "will").await;
    fill(&b, "to", "will").await;
    fill(&b, "text", "hello from the fallback\n").await;
    wait_for(
        &b,
        "log",
        "[direct to will] hello from the fallback (seq 1)",
    )
    .await;
    assert_eq!(
        ws.recv_type(3).await["msgBody"],
        json!({"text": "hello from the fallback"})
    );
    ws.send(&json!({"msgType": 3, "receivedUserId": "sue", "msgBody": {"text": "hi sue"}}))
        .await;
    wait_for(&b, "log", "[direct] will: hi sue").await;
    // The node restarts; will writes while sue's page is away.
    let place = server.kill_keep_place();
    wait_for(&b, "state", "reconnecting").await;
    let server = Server::start_at(place, &[]);
    let (mut ws, _) = Client::login_retrying(&server, "will").await;
    ws.send(
        &json!({"msgType": 3, "receivedUserId": "sue", "msgBody": {"text": "while you were away"}}),
    )
    .await;
    wait_for(&b, "log", "will: while you were away").await;
    wait_for(&b, "state", "connected").await;
    let log = text(&b, "log").await;
    assert_eq!(log.matches("will: hi sue").count(), 1, "{log}");
    assert_eq!(log.matches("will: while you were away").count(), 1, "{log}");
    b.close().await.unwrap();
    drop(blackhole);
}
