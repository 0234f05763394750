//! Backend hooks against a real HTTP backend (`examples/backend`): the
//! backend decides who connects (cookie, bearer token or URL token, over
//! both transports), what is published (accepted, rewritten, refused, in
//! order) and who joins; a backend that is slow, failing or down gets
//! clear errors and never hangs a session, and its failure policy holds.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Client, End, Server, example, http_request};
use crate::wt_client::{WtClient, wt_url};

pub(crate) const HOOK_SECRET: &str = "hook-s3cret";

/// The example backend, killed on drop.
pub(crate) struct Backend {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Backend {
    pub(crate) fn start() -> Backend {
        Self::start_on("127.0.0.1:0")
    }

    /// On a given address (to come back on the same one after a kill).
    pub(crate) fn start_on(listen: &str) -> Backend {
        let mut child = Command::new(example("backend"))
            .args(["--listen", listen, "--secret", HOOK_SECRET])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example backend runs (cargo build --examples)");
        let line = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .next()
            .expect("the backend printed its address")
            .unwrap();
        let addr = line
            .strip_prefix("backend listening on ")
            .expect("an address line")
            .parse()
            .unwrap();
        Backend { child, addr }
    }

    pub(crate) fn url(&self, hook: &str) -> String {
        format!("http://{}/hooks/{hook}", self.addr)
    }

    /// What the backend received, oldest first.
    pub(crate) async fn calls(&self, hook: &str) -> Vec<Value> {
        let (status, body) = http_request(self.addr, "GET", "/calls", &[], "").await;
        assert_eq!(status, 200);
        let all: Vec<Value> = serde_json::from_str(&body).unwrap();
        all.into_iter().filter(|c| c["hook"] == hook).collect()
    }

    /// Makes the backend slow (`delay_ms`) or answer `status` to everything.
    pub(crate) async fn behave(&self, delay_ms: u64, status: Option<u16>) {
        self.behave_jittered(delay_ms, 0, status).await;
    }

    /// As [`Backend::behave`], each answer up to `jitter_ms` later at random.
    async fn behave_jittered(&self, delay_ms: u64, jitter_ms: u64, status: Option<u16>) {
        let body =
            json!({"delayMs": delay_ms, "jitterMs": jitter_ms, "status": status}).to_string();
        let (code, _) = http_request(self.addr, "POST", "/control", &[], &body).await;
        assert_eq!(code, 204);
    }

    /// Sets the backend's behaviour (`POST /control`; see the example).
    pub(crate) async fn control(&self, behaviour: Value) {
        let body = behaviour.to_string();
        let (code, _) = http_request(self.addr, "POST", "/control", &[], &body).await;
        assert_eq!(code, 204);
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The origin of the backend's own pages in these tests.
pub(crate) const APP_ORIGIN: &str = "https://app.example";

/// A node whose connect, publish and join hooks go to `b`.
pub(crate) fn hooked(b: &Backend, extra: &[&str]) -> Server {
    let (c, p, j) = (b.url("connect"), b.url("publish"), b.url("join"));
    let mut args = vec![
        "--allowed-origin",
        APP_ORIGIN,
        "--connect-hook",
        &c,
        "--publish-hook",
        &p,
        "--join-hook",
        &j,
        "--hook-secret",
        HOOK_SECRET,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Connects to `/ws` with request headers and sends `login`.
async fn connect_as(s: &Server, headers: &[(&str, &str)], query: &str) -> Client {
    let url = s.ws_url(&format!("/ws{query}"));
    let Ok(c) = Client::connect_with_headers(&url, headers).await else {
        panic!("the upgrade is refused");
    };
    c
}

/// Logs in with the backend's web session cookie for `user`.
pub(crate) async fn with_cookie(s: &Server, user: &str) -> (Client, Value) {
    let cookie = format!("theme=dark; session={user}");
    let mut c = connect_as(s, &[("cookie", &cookie)], "").await;
    let reply = c.login_as(json!({"msgType": 2})).await;
    (c, reply)
}

/// Cross-site WebSocket hijacking (issue 27, item 2): a page of another
/// origin opens a socket, and the browser adds the visitor's cookie.
#[tokio::test]
async fn a_page_of_another_origin_cannot_log_in_with_a_visitors_cookie() {
    let b = Backend::start();
    let s = hooked(&b, &[]);
    let cookie = "session=alice";
    let evil = Client::connect_with_headers(
        &s.ws_url("/ws"),
        &[("origin", "https://evil.example"), ("cookie", cookie)],
    )
    .await;
    assert_eq!(evil.err(), Some(403), "refused at the upgrade");
    assert!(
        b.calls("connect").await.is_empty(),
        "the backend never saw the cookie"
    );
    // The app's own page logs in, and the backend is told which page it was.
    let mut app = connect_as(&s, &[("origin", APP_ORIGIN), ("cookie", cookie)], "").await;
    assert_eq!(
        app.login_as(json!({"msgType": 2})).await["sendUserId"],
        "alice"
    );
    let calls = b.calls("connect").await;
    assert_eq!(calls[0]["body"]["origin"], APP_ORIGIN, "{calls:?}");
    assert_eq!(calls[0]["body"]["cookie"], cookie);
}

#[test]
fn a_node_whose_connect_hook_gets_cookies_needs_the_pages_origins() {
    let err = crate::common::refuses_to_start(&["--connect-hook", "http://127.0.0.1:9/c"]);
    assert!(
        err.contains("--allowed-origin") && err.contains("cookies"),
        "{err}"
    );
    // Told explicitly, it starts (the backend then checks `origin` itself).
    let s = Server::start(&[
        "--connect-hook",
        "http://127.0.0.1:9/c",
        "--allow-any-origin-with-cookies",
    ]);
    drop(s);
}

#[tokio::test]
async fn the_connect_hook_decides_who_logs_in_by_cookie_bearer_or_token() {
    let b = Backend::start();
    let s = hooked(&b, &[]);
    // The web session cookie: no JWT, no dev identity.
    let (mut ann, reply) = with_cookie(&s, "ann").await;
    assert_eq!(reply["sendUserId"], "ann", "{reply}");
    // The backend joined her to the lobby: she is told.
    let joined = ann.recv_type(5).await;
    assert_eq!(joined["roomId"], "lobby", "{joined}");
    // A bearer token, and a token in the URL.
    let mut bob = connect_as(&s, &[("authorization", "Bearer tok-bob")], "").await;
    assert_eq!(
        bob.login_as(json!({"msgType": 2})).await["sendUserId"],
        "bob"
    );
    bob.recv_type(5).await;
    let mut cat = connect_as(&s, &[], "?token=tok-cat").await;
    assert_eq!(
        cat.login_as(json!({"msgType": 2})).await["sendUserId"],
        "cat"
    );
    // They share the lobby the backend put them in.
    bob.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": "hi", "clientMsgId": "b1"}))
        .await;
    assert_eq!(bob.recv_type(4).await["clientMsgId"], "b1");
    assert_eq!(ann.recv_type(3).await["msgBody"], "hi");

    // The backend saw what it needs, signed.
    let calls = b.calls("connect").await;
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c["signed"] == true), "{calls:?}");
    let first = &calls[0]["body"];
    assert_eq!(first["transport"], "websocket");
    assert_eq!(first["clientAddr"], "127.0.0.1");
    assert_eq!(first["cookie"], "theme=dark; session=ann");
    assert_eq!(first["login"], json!({"msgType": 2}));
    assert_eq!(calls[1]["body"]["authorization"], "Bearer tok-bob");
    assert_eq!(calls[2]["body"]["token"], "tok-cat");

    // No session: 401 with the backend's reason, close 4401.
    let mut nobody = connect_as(&s, &[], "").await;
    nobody
        .send(&json!({"msgType": 2, "sendUserId": "ann"}))
        .await;
    let e = nobody.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["reason"].as_str()),
        (Some(401), Some("no session"))
    );
    assert_eq!(nobody.expect_end().await, End::Closed(4401));
    // Banned: 403, close 4403.
    let mut mallory = connect_as(&s, &[("cookie", "session=mallory")], "").await;
    mallory.send(&json!({"msgType": 2})).await;
    let e = mallory.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["reason"].as_str()),
        (Some(403), Some("banned"))
    );
    assert_eq!(mallory.expect_end().await, End::Closed(4403));
    // A client that claims someone else than its session: 4403.
    let mut liar = connect_as(&s, &[("cookie", "session=ann")], "").await;
    liar.send(&json!({"msgType": 2, "sendUserId": "bob"})).await;
    assert_eq!(liar.recv_type(9).await["code"], 403);
    assert_eq!(liar.expect_end().await, End::Closed(4403));

    // The backend's info about a user travels with presence events.
    let mut watcher = connect_as(&s, &[("cookie", "session=wendy")], "").await;
    watcher
        .login_as(json!({"msgType": 2, "presenceEvents": true}))
        .await;
    assert_eq!(watcher.recv_type(5).await["roomId"], "lobby");
    let own = watcher.recv_type(11).await;
    assert_eq!(own["info"], json!({"name": "WENDY"}), "{own}");
    let (_bob2, _) = with_cookie(&s, "zed").await;
    let zed = watcher.recv_type(11).await;
    assert_eq!(
        (zed["userId"].as_str(), &zed["info"]),
        (Some("zed"), &json!({"name": "ZED"}))
    );

    // A guest may use only the rooms the backend granted.
    let (mut guest, _) = with_cookie(&s, "guest1").await;
    guest.recv_type(5).await;
    guest.send(&json!({"msgType": 5, "roomId": "staff"})).await;
    assert_eq!(guest.recv_type(9).await["code"], 403);
}

#[tokio::test]
async fn the_connect_hook_works_over_webtransport_and_refreshes_the_session() {
    let b = Backend::start();
    let s = hooked(&b, &[]);
    let (mut wt, status) = WtClient::connect(&wt_url(&s, "/wt?token=tok-dan"), None).await;
    assert_eq!(status, 200);
    wt.send(&json!({"msgType": 2})).await;
    assert_eq!(wt.recv_type(2).await["sendUserId"], "dan");
    assert_eq!(wt.recv_type(5).await["roomId"], "lobby");
    let call = &b.calls("connect").await[0]["body"];
    assert_eq!(call["transport"], "webtransport", "{call}");

    // A refresh (msgType 10) goes to the connect hook too.
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.send(&json!({"msgType": 10, "token": "tok-ann"})).await;
    assert_eq!(ann.recv_type(10).await["msgType"], 10);
    let refresh = b.calls("connect").await.pop().unwrap()["body"].clone();
    assert_eq!(
        (refresh["refresh"].as_bool(), refresh["userId"].as_str()),
        (Some(true), Some("ann")),
        "{refresh}"
    );
    // A refresh that names another user closes 4403.
    ann.send(&json!({"msgType": 10, "token": "tok-bob"})).await;
    assert_eq!(ann.recv_type(9).await["code"], 403);
    assert_eq!(ann.expect_end().await, End::Closed(4403));
}

#[tokio::test]
async fn the_publish_hook_accepts_rewrites_and_refuses_in_the_senders_order() {
    let b = Backend::start();
    let calls = accept_rewrite_refuse(&b, &[]).await;
    assert!(calls.iter().all(|c| c.get("batch").is_none()));
}

#[tokio::test]
async fn batched_publish_hook_calls_decide_each_message_in_the_senders_order() {
    let b = Backend::start();
    // One slot: while a call is out, the next messages wait and go together.
    let s = accept_rewrite_refuse(
        &b,
        &["--publish-hook-batch", "8", "--hook-max-in-flight", "1"],
    );
    let calls = s.await;
    let batched = calls
        .iter()
        .filter(|c| c["batch"].as_u64() > Some(1))
        .count();
    assert!(batched >= 2, "some messages went in batches: {calls:#?}");
    assert!(calls.iter().all(|c| c["batch"].as_u64() <= Some(8)));
}

#[tokio::test]
async fn a_failed_batch_fails_each_of_its_messages_and_stores_none() {
    let b = Backend::start();
    let s = hooked(
        &b,
        &["--publish-hook-batch", "8", "--hook-max-in-flight", "1"],
    );
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    b.behave(0, Some(500)).await;
    for id in ["f1", "f2", "f3"] {
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "clientMsgId": id, "msgBody": id}))
            .await;
    }
    let mut failed = Vec::new();
    for _ in 0..3 {
        let e = ann.recv_type(9).await;
        assert_eq!(e["code"], 503, "{e}");
        assert!(
            e["reason"].as_str().unwrap().contains("answered HTTP 500"),
            "{e}"
        );
        failed.push(e["clientMsgId"].as_str().unwrap().to_string());
    }
    assert_eq!(failed, ["f1", "f2", "f3"]);
    // The backend is back: the resend with the same clientMsgId is stored once.
    b.behave(0, None).await;
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "f1", "msgBody": "f1"}))
        .await;
    assert_eq!(ann.recv_type(4).await["seq"], 1);
    ann.send(&json!({"msgType": 7, "roomId": "lobby", "since": 0}))
        .await;
    assert_eq!(
        ann.recv_type(7).await["messages"].as_array().unwrap().len(),
        1
    );
}

/// Eleven messages through the publish hook, whose answers come slow and
/// out of order: accepted, rewritten and refused as the backend says,
/// stored in the order sent. Returns the backend's record of the calls.
async fn accept_rewrite_refuse(b: &Backend, extra: &[&str]) -> Vec<Value> {
    let s = hooked(b, extra);
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    let (mut bob, _) = with_cookie(&s, "bob").await;
    bob.recv_type(5).await;
    // Slow hook answers that overtake each other, for messages sent back
    // to back: the store still gets them in the order sent.
    b.behave_jittered(20, 200, None).await;
    let sends = [
        json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "m1", "msgBody": {"t": "hello"}}),
        json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "m2", "msgBody": {"t": "darn it"}}),
        json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "m3", "bizType": 99, "msgBody": 1}),
        json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "m4", "bizType": 7, "msgBody": 2}),
        json!({"msgType": 3, "receivedUserId": "bob", "clientMsgId": "m5", "msgBody": "psst"}),
    ];
    let more: Vec<Value> = (6..12)
        .map(|i| json!({"msgType": 3, "roomId": "lobby", "clientMsgId": format!("m{i}"), "msgBody": i}))
        .collect();
    let sends: Vec<&Value> = sends.iter().chain(&more).collect();
    for m in &sends {
        ann.send(m).await;
    }
    let mut answers = Vec::new();
    while answers.len() < sends.len() {
        let v = ann.recv().await;
        if v["msgType"] == 4 || v["msgType"] == 9 {
            answers.push(v);
        }
    }
    let refused: Vec<&Value> = answers.iter().filter(|a| a["msgType"] == 9).collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(refused[0]["clientMsgId"], "m3");
    assert_eq!(refused[0]["code"], 403);
    assert_eq!(refused[0]["reason"], "bizType 99 is reserved");
    let acked_room: Vec<u64> = answers
        .iter()
        .filter(|a| a["msgType"] == 4 && a["clientMsgId"] != "m5")
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(acked_room.len(), 9);

    // Bob gets what was stored, rewritten, in the order sent.
    let mut got = Vec::new();
    while got.len() < 10 {
        let v = bob.recv().await;
        if v["msgType"] == 3 {
            got.push(v);
        }
    }
    assert_eq!(got[0]["msgBody"], json!({"t": "hello"}));
    assert_eq!(got[1]["msgBody"], json!({"t": "**** it"}));
    assert_eq!(
        (got[2]["bizType"].as_i64(), got[2]["bizOptModule"].as_i64()),
        (Some(7), Some(42))
    );
    assert_eq!(got[3]["msgBody"], "psst");
    let later: Vec<&Value> = got[4..].iter().map(|m| &m["msgBody"]).collect();
    assert_eq!(
        later,
        (6..12)
            .map(|i| json!(i))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    let seqs: Vec<u64> = got
        .iter()
        .filter(|m| m["roomId"] == "lobby" && m.get("receivedUserId").is_none())
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=9).collect::<Vec<u64>>(),
        "room order is send order"
    );
    // The history holds the rewritten messages, nothing refused.
    bob.send(&json!({"msgType": 7, "roomId": "lobby", "since": 0}))
        .await;
    let h = bob.recv_type(7).await;
    let bodies: Vec<&Value> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["msgBody"])
        .collect();
    assert_eq!(
        bodies[..3],
        [&json!({"t": "hello"}), &json!({"t": "**** it"}), &json!(2)]
    );
    assert_eq!(bodies.len(), 9);

    // The hook saw the sender and the client's fields, signed.
    let calls = b.calls("publish").await;
    assert_eq!(calls.len(), 11);
    assert!(calls.iter().all(|c| c["signed"] == true));
    let m1 = calls
        .iter()
        .find(|c| c["body"]["message"]["clientMsgId"] == "m1")
        .expect("m1 went to the hook");
    assert_eq!(m1["body"]["userId"], "ann");
    assert_eq!(m1["body"]["message"]["msgBody"], json!({"t": "hello"}));
    // Volatile messages do not go to the hook.
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "volatile": true, "msgBody": "typing"}))
        .await;
    assert_eq!(bob.recv_type(3).await["msgBody"], "typing");
    assert_eq!(b.calls("publish").await.len(), 11);
    calls
}

#[tokio::test]
async fn the_publish_hook_sees_only_the_chosen_biz_types() {
    let b = Backend::start();
    let s = hooked(&b, &["--publish-hook-biz-type", "7"]);
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    // bizType 99 would be refused by the hook, but it is not asked.
    ann.send(
        &json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "a", "bizType": 99, "msgBody": 1}),
    )
    .await;
    assert_eq!(ann.recv_type(4).await["clientMsgId"], "a");
    ann.send(
        &json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "b", "bizType": 7, "msgBody": 1}),
    )
    .await;
    assert_eq!(ann.recv_type(4).await["clientMsgId"], "b");
    let calls = b.calls("publish").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["body"]["message"]["bizType"], 7);
}

/// Issue 27, item 1: the join hook guards reading as well as joining. With
/// docs/backend.md's own setup (the connect hook grants every room, the
/// join hook keeps `vip-` rooms for members), a refused user reads nothing
/// of a members' room: not its history, not who is in it, not a replay.
#[tokio::test]
async fn a_room_the_join_hook_refuses_cannot_be_read_either() {
    let b = Backend::start();
    let s = hooked(&b, &[]);
    let (mut vera, _) = with_cookie(&s, "vipvera").await;
    vera.recv_type(5).await;
    vera.send(&json!({"msgType": 5, "roomId": "vip-lounge"}))
        .await;
    vera.recv_type(5).await;
    vera.send(&json!({"msgType": 3, "roomId": "vip-lounge", "clientMsgId": "s", "msgBody": "salary list: bob 100k"}))
        .await;
    vera.recv_type(4).await;

    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    for _ in 0..2 {
        ann.send(&json!({"msgType": 7, "roomId": "vip-lounge", "since": 0}))
            .await;
        let e = ann.recv_type(9).await;
        assert_eq!(e["code"], 403, "history: {e}");
    }
    ann.send(&json!({"msgType": 8, "roomId": "vip-lounge"}))
        .await;
    assert_eq!(ann.recv_type(9).await["code"], 403, "presence");
    // Nor replayed at login.
    let mut again = connect_as(&s, &[("cookie", "session=ann")], "").await;
    again
        .send(&json!({"msgType": 2, "since": {"rooms": {"vip-lounge": 0}}}))
        .await;
    again.recv_type(2).await;
    again.recv_type(5).await;
    assert_eq!(again.recv_type(9).await["code"], 403, "replay");
    again.expect_silence(Duration::from_millis(300)).await;
    // One hook call per session for the room while its answer holds.
    let asked = b
        .calls("join")
        .await
        .iter()
        .filter(|c| c["body"]["userId"] == "ann" && c["body"]["roomId"] == "vip-lounge")
        .count();
    assert_eq!(asked, 2, "one for each of ann's sessions");
    // A member reads it without joining.
    let (mut will, _) = with_cookie(&s, "vipwill").await;
    will.recv_type(5).await;
    will.send(&json!({"msgType": 7, "roomId": "vip-lounge", "since": 0}))
        .await;
    let h = will.recv_type(7).await;
    assert_eq!(h["messages"][0]["msgBody"], "salary list: bob 100k", "{h}");
}

/// Issue 27, item 3: a login that asks for more rooms than a session may
/// hold is refused before the join hook is called for any of them.
#[tokio::test]
async fn a_login_asking_for_too_many_rooms_costs_no_hook_call() {
    let b = Backend::start();
    let s = hooked(&b, &["--max-rooms", "8"]);
    let rooms: Vec<String> = (0..500).map(|i| format!("r{i}")).collect();
    let mut c = connect_as(&s, &[("cookie", "session=ann")], "").await;
    c.send(&json!({"msgType": 2, "rooms": rooms})).await;
    let e = c.recv_type(9).await;
    assert_eq!(e["code"], 400, "{e}");
    assert!(b.calls("join").await.is_empty(), "no join hook call");
    // Within the limit, the login goes on.
    c.send(&json!({"msgType": 2, "rooms": ["r1", "r2"]})).await;
    assert_eq!(c.recv_type(2).await["sendUserId"], "ann");
    assert_eq!(b.calls("join").await.len(), 2);
}

#[tokio::test]
async fn the_join_hook_guards_rooms() {
    let b = Backend::start();
    let s = hooked(&b, &[]);
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    ann.send(&json!({"msgType": 5, "roomId": "vip-lounge"}))
        .await;
    let e = ann.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["reason"].as_str()),
        (Some(403), Some("members only"))
    );
    ann.send(&json!({"msgType": 3, "roomId": "vip-lounge", "clientMsgId": "x", "msgBody": 1}))
        .await;
    assert_eq!(ann.recv_type(9).await["code"], 403, "not a member");
    let (mut vip, _) = with_cookie(&s, "vipvera").await;
    vip.recv_type(5).await;
    vip.send(&json!({"msgType": 5, "roomId": "vip-lounge"}))
        .await;
    assert_eq!(vip.recv_type(5).await["roomId"], "vip-lounge");
    // Rooms asked for in the login frame go through the hook as well.
    let mut c = connect_as(&s, &[("cookie", "session=carl")], "").await;
    c.send(&json!({"msgType": 2, "rooms": ["vip-lounge", "general"]}))
        .await;
    c.recv_type(2).await;
    assert_eq!(c.recv_type(9).await["reason"], "members only");
    let joins: Vec<String> = b
        .calls("join")
        .await
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["body"]["userId"].as_str().unwrap(),
                c["body"]["roomId"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        joins,
        [
            "ann:vip-lounge",
            "vipvera:vip-lounge",
            "carl:vip-lounge",
            "carl:general"
        ]
    );
}

#[tokio::test]
async fn a_slow_failing_or_dead_backend_gets_clear_errors_and_never_hangs_a_session() {
    let mut b = Backend::start();
    let s = hooked(&b, &["--hook-timeout-ms", "300"]);
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;

    // Slow: every hook answers after its deadline. Each request is answered
    // 503 within about the deadline; the session stays usable.
    b.behave(1500, None).await;
    let started = Instant::now();
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "slow", "msgBody": 1}))
        .await;
    let e = ann.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["clientMsgId"].as_str()),
        (Some(503), Some("slow")),
        "{e}"
    );
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("publish hook failed: no answer within 300 ms"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "answered in {:?}",
        started.elapsed()
    );
    ann.send(&json!({"msgType": 5, "roomId": "news"})).await;
    assert_eq!(ann.recv_type(9).await["code"], 503);
    ann.send(&json!({"msgType": 1})).await;
    assert_eq!(
        ann.recv_type(1).await["msgType"],
        1,
        "the session still answers"
    );
    // A login while the backend is slow: 503, then close 1001 (retry).
    let mut late = connect_as(&s, &[("cookie", "session=bob")], "").await;
    late.send(&json!({"msgType": 2})).await;
    assert_eq!(late.recv_type(9).await["code"], 503);
    assert_eq!(late.expect_end().await, End::Closed(1001));

    // Failing: a status outside the contract.
    b.behave(0, Some(500)).await;
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "five", "msgBody": 1}))
        .await;
    let e = ann.recv_type(9).await;
    assert!(
        e["reason"].as_str().unwrap().contains("answered HTTP 500"),
        "{e}"
    );

    // Dead: nothing listens any more.
    b.kill();
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "dead", "msgBody": 1}))
        .await;
    let e = ann.recv_type(9).await;
    assert_eq!(e["code"], 503);
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("backend unreachable"),
        "{e}"
    );
    // Nothing refused was stored.
    ann.send(&json!({"msgType": 7, "roomId": "lobby", "since": 0}))
        .await;
    assert_eq!(ann.recv_type(7).await["messages"], json!([]));

    let m = s.metrics().await;
    let calls = |hook: &str, result: &str| {
        m.get(&format!(
            "rtgate_hook_calls_total{{hook=\"{hook}\",result=\"{result}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert!(calls("publish", "timeout") >= 1.0, "{m:?}");
    assert!(calls("publish", "status") >= 1.0);
    assert!(calls("publish", "unreachable") >= 1.0);
    assert!(calls("connect", "timeout") >= 1.0);
    assert!(calls("join", "timeout") >= 1.0);
    assert!(
        m.contains_key("rtgate_hook_seconds_count{hook=\"publish\"}"),
        "latency histogram"
    );
}

#[tokio::test]
async fn calls_beyond_the_bound_wait_for_a_slot_and_fail_busy() {
    let b = Backend::start();
    let s = hooked(
        &b,
        &[
            "--hook-timeout-ms",
            "1000",
            "--hook-max-in-flight",
            "1",
            "--rate-limit",
            "0",
        ],
    );
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    // The first call holds the only slot until its deadline (the backend
    // answers after it); the next two wait half their deadline for the slot
    // (500 ms, less than the holder keeps it) and fail busy.
    b.behave(2000, None).await;
    for i in 0..3 {
        ann.send(
            &json!({"msgType": 3, "roomId": "lobby", "clientMsgId": format!("c{i}"), "msgBody": i}),
        )
        .await;
    }
    let mut errors = Vec::new();
    for _ in 0..3 {
        let e = ann.recv_type(9).await;
        assert_eq!(e["code"], 503, "{e}");
        errors.push(e["reason"].as_str().unwrap_or_default().to_owned());
    }
    let busy = errors
        .iter()
        .filter(|e| e.contains("calls already in flight"))
        .count();
    assert_eq!(busy, 2, "two calls fail busy: {errors:?}");
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.contains("no answer within 1000 ms"))
            .count(),
        1,
        "{errors:?}"
    );
    let m = s.metrics().await;
    let calls = |result: &str| {
        m.get(&format!(
            "rtgate_hook_calls_total{{hook=\"publish\",result=\"{result}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(calls("busy"), 2.0, "{m:?}");
    assert_eq!(calls("timeout"), 1.0, "{m:?}");
}

#[tokio::test]
async fn with_an_allow_policy_a_dead_backend_lets_requests_through() {
    let mut b = Backend::start();
    let s = hooked(
        &b,
        &[
            "--hook-allow-on-failure",
            "connect,publish,join",
            "--hook-timeout-ms",
            "300",
        ],
    );
    b.kill();
    // Connect falls back to the built-in identities (dev mode on loopback
    // here: no --jwt-secret).
    let (mut ann, reply) = Client::login(&s, "ann").await;
    assert_eq!(reply["sendUserId"], "ann");
    ann.send(&json!({"msgType": 5, "roomId": "vip-lounge"}))
        .await;
    assert_eq!(ann.recv_type(5).await["roomId"], "vip-lounge");
    ann.send(&json!({"msgType": 3, "roomId": "vip-lounge", "clientMsgId": "p", "bizType": 99, "msgBody": 1}))
        .await;
    assert_eq!(ann.recv_type(4).await["clientMsgId"], "p");
    let m = s.metrics().await;
    for hook in ["connect", "publish", "join"] {
        let key = format!(
            "rtgate_hook_decisions_total{{hook=\"{hook}\",decision=\"allowed_on_failure\"}}"
        );
        assert_eq!(m.get(&key).copied(), Some(1.0), "{key}: {m:?}");
    }
}

#[tokio::test]
async fn presence_answers_carry_the_backends_info_for_each_session() {
    let b = Backend::start();
    let s = hooked(&b, &["--api-key", "k"]);
    let (_ann, _) = with_cookie(&s, "ann").await;
    let (_ann2, _) = with_cookie(&s, "ann").await;
    let (status, body) = s
        .http(
            "GET",
            "/api/presence?roomId=lobby&sessions=true",
            &[("authorization", "apikey k")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    let sessions = p["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{p}");
    assert!(
        sessions.iter().all(|s| s["info"] == json!({"name": "ANN"})),
        "{p}"
    );
}

#[tokio::test]
async fn hooks_speak_http2_to_a_backend_that_does() {
    let b = Backend::start();
    let s = hooked(&b, &["--hook-http2"]);
    let (mut ann, reply) = with_cookie(&s, "ann").await;
    assert_eq!(reply["sendUserId"], "ann");
    ann.recv_type(5).await;
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "clientMsgId": "d", "msgBody": "darn"}))
        .await;
    assert_eq!(ann.recv_type(4).await["clientMsgId"], "d");
    let calls: Vec<Value> = [b.calls("connect").await, b.calls("publish").await].concat();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["http"] == "HTTP/2.0"), "{calls:?}");
    // Without the flag: HTTP/1.1.
    let s1 = hooked(&b, &[]);
    let _ = with_cookie(&s1, "bob").await;
    assert_eq!(b.calls("connect").await.last().unwrap()["http"], "HTTP/1.1");
}

#[tokio::test]
async fn hook_urls_are_checked_at_start() {
    let err = crate::common::refuses_to_start(&["--publish-hook", "https://backend/hook"]);
    assert!(err.contains("only http:// URLs"), "{err}");
    let err = crate::common::refuses_to_start(&["--join-hook", "not a url"]);
    assert!(err.contains("join-hook"), "{err}");
}

/// Issue 27, item 7: volatile messages skip the publish hook unless
/// `--publish-hook-volatile` says otherwise (the default, documented);
/// with it the hook sees them (marked `volatile`) and one it refuses
/// reaches no one, its sender gets 403.
#[tokio::test]
async fn with_publish_hook_volatile_the_hook_moderates_volatile_messages_too() {
    let b = Backend::start();
    for flag in [None, Some("--publish-hook-volatile")] {
        let s = hooked(&b, flag.as_slice());
        let (mut ann, _) = with_cookie(&s, "ann").await;
        ann.recv_type(5).await;
        let (mut bob, _) = with_cookie(&s, "bob").await;
        bob.recv_type(5).await;
        let before = b.calls("publish").await.len();
        // bizType 99 is what the backend refuses.
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "volatile": true, "bizType": 99, "clientMsgId": "v", "msgBody": "spam"}))
            .await;
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "volatile": true, "msgBody": "typing"}))
            .await;
        if flag.is_some() {
            let e = ann.recv_type(9).await;
            assert_eq!(
                (e["code"].as_i64(), e["clientMsgId"].as_str()),
                (Some(403), Some("v"))
            );
            assert_eq!(bob.recv_type(3).await["msgBody"], "typing");
            // The backend records a call once it has answered it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut calls = b.calls("publish").await;
            while calls.len() < before + 2 && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                calls = b.calls("publish").await;
            }
            assert_eq!(calls.len(), before + 2, "{calls:?}");
            assert!(
                calls[before..]
                    .iter()
                    .all(|c| c["body"]["message"]["volatile"] == true)
            );
        } else {
            assert_eq!(bob.recv_type(3).await["msgBody"], "spam");
            assert_eq!(bob.recv_type(3).await["msgBody"], "typing");
            let calls = b.calls("publish").await;
            assert_eq!(calls.len(), before, "volatile messages skip the hook");
        }
        bob.expect_silence(std::time::Duration::from_millis(300))
            .await;
    }
}
