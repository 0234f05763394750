//! What an attacker or a failing network tries: credentials that expire in
//! a live session, claims that are not what they seem, dev mode behind a
//! proxy, poison bodies, out-of-range positions, and frames sent right
//! before a close.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, End, Server, jwt, unix_now};

const SECRET: &str = "s3cret";

fn token(sub: &str, exp_in: i64, rooms: serde_json::Value) -> (String, i64) {
    let exp = unix_now() + exp_in;
    (
        jwt(SECRET, json!({"sub": sub, "exp": exp, "rooms": rooms})),
        exp,
    )
}

async fn login_with(s: &Server, token: &str, rooms: &[&str]) -> Client {
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.login_as(json!({"msgType": 2, "token": token, "rooms": rooms}))
        .await;
    c
}

#[tokio::test]
async fn an_expiring_session_is_told_then_closed_4401() {
    let s = Server::start(&["--jwt-secret", SECRET]);
    let (t, exp) = token("alice", 2, json!("*"));
    let mut c = login_with(&s, &t, &[]).await;
    let notice = c.recv_type(10).await;
    assert_eq!(notice["exp"].as_i64(), Some(exp), "{notice}");
    // Unrefreshed, the session ends within a few seconds of exp.
    let err = c.recv_type(9).await;
    assert_eq!(err["code"], 401, "{err}");
    assert_eq!(c.expect_end().await, End::Closed(4401));
    assert!(unix_now() <= exp + 5, "closed late");
}

#[tokio::test]
async fn a_refresh_outlives_the_first_token_and_leaves_rooms_no_longer_allowed() {
    let s = Server::start(&["--jwt-secret", SECRET]);
    let (first, first_exp) = token("alice", 2, json!(["a", "b"]));
    let mut c = login_with(&s, &first, &["a", "b"]).await;
    c.recv_type(10).await;
    let (second, second_exp) = token("alice", 120, json!(["a"]));
    c.send(&json!({"msgType": 10, "token": second})).await;
    let left = c.recv_type(6).await;
    assert_eq!(left["roomId"], "b");
    assert_eq!(c.recv_type(10).await["exp"].as_i64(), Some(second_exp));
    // Past the first token's end (and its leeway) the session still works.
    let wait = (first_exp + 4 - unix_now()).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    c.send(&json!({"msgType": 1})).await;
    assert_eq!(c.recv_type(1).await["msgType"], 1);
    c.send(&json!({"msgType": 3, "roomId": "b", "clientMsgId": "x", "msgBody": 1}))
        .await;
    assert_eq!(c.recv_type(9).await["code"], 403, "b was left");
    c.send(&json!({"msgType": 5, "roomId": "b"})).await;
    assert_eq!(
        c.recv_type(9).await["code"],
        403,
        "b is not in the new token"
    );
}

/// Issue 27, item 10: an older token, still valid, neither brings back the
/// rooms a newer one took away nor moves the expiry backwards.
#[tokio::test]
async fn a_refresh_with_an_older_token_is_refused_and_changes_nothing() {
    let s = Server::start(&["--jwt-secret", SECRET]);
    let (old, _) = token("alice", 300, json!(["a", "b"]));
    let (new, new_exp) = token("alice", 600, json!(["a"]));
    let mut c = login_with(&s, &new, &["a"]).await;
    c.send(&json!({"msgType": 10, "token": old})).await;
    let e = c.recv_type(9).await;
    assert_eq!(e["code"], 400, "{e}");
    // The session keeps the newer token's expiry and rooms.
    c.send(&json!({"msgType": 10, "token": new})).await;
    assert_eq!(c.recv_type(10).await["exp"].as_i64(), Some(new_exp));
    c.send(&json!({"msgType": 5, "roomId": "b"})).await;
    assert_eq!(c.recv_type(9).await["code"], 403, "b stays out");
}

#[tokio::test]
async fn a_refresh_for_another_user_closes_4403_and_a_bad_token_4401() {
    let s = Server::start(&["--jwt-secret", SECRET]);
    let (t, _) = token("alice", 60, json!("*"));
    let mut c = login_with(&s, &t, &[]).await;
    let (other, _) = token("mallory", 60, json!("*"));
    c.send(&json!({"msgType": 10, "token": other})).await;
    assert_eq!(c.recv_type(9).await["code"], 403);
    assert_eq!(c.expect_end().await, End::Closed(4403));

    let mut c = login_with(&s, &t, &[]).await;
    c.send(&json!({"msgType": 10, "token": "not.a.token"}))
        .await;
    assert_eq!(c.recv_type(9).await["code"], 401);
    assert_eq!(c.expect_end().await, End::Closed(4401));
}

#[tokio::test]
async fn a_rooms_claim_of_null_or_one_string_is_refused() {
    let s = Server::start(&["--jwt-secret", SECRET]);
    for rooms in [json!(null), json!("lobby"), json!(7)] {
        let (t, _) = token("alice", 60, rooms.clone());
        let mut c = Client::connect(&s.ws_url("/ws")).await;
        c.send(&json!({"msgType": 2, "token": t})).await;
        assert_eq!(c.recv().await["code"], 401, "rooms {rooms}");
        assert_eq!(c.expect_end().await, End::Closed(4401));
    }
}

#[tokio::test]
async fn dev_mode_behind_a_proxy_refuses_identities_and_the_keyless_api_to_remote_clients() {
    let s = Server::start(&["--trusted-proxy", "127.0.0.1/32"]);
    let remote = [("x-forwarded-for", "203.0.113.9")];
    let mut c = Client::connect_with_headers(&s.ws_url("/ws"), &remote)
        .await
        .unwrap();
    c.send(&json!({"msgType": 2, "sendUserId": "alice"})).await;
    let e = c.recv().await;
    assert_eq!(e["code"], 401, "{e}");
    assert_eq!(c.expect_end().await, End::Closed(4401));
    let body = r#"{"roomId":"r","msgBody":1}"#;
    let (status, _) = s.http("POST", "/api/publish", &remote, body).await;
    assert_eq!(status, 403);
    let (status, _) = s.http("GET", "/api/presence?roomId=r", &remote, "").await;
    assert_eq!(status, 403);
    // A client on this host, through the same proxy, is still local.
    let local = [("x-forwarded-for", "127.0.0.1")];
    let mut c = Client::connect_with_headers(&s.ws_url("/ws"), &local)
        .await
        .unwrap();
    c.login_as(json!({"msgType": 2, "sendUserId": "alice"}))
        .await;
    assert_eq!(s.http("POST", "/api/publish", &local, body).await.0, 200);
}

#[tokio::test]
async fn the_api_takes_json_bodies_only() {
    let s = Server::start(&[]);
    let body = r#"{"roomId":"r","msgBody":1}"#;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let (status, text) = s
            .http("POST", "/api/publish", &[("content-type", ct)], body)
            .await;
        assert_eq!(status, 415, "{ct}: {text}");
    }
    let json_ct = [("content-type", "application/json; charset=utf-8")];
    assert_eq!(s.http("POST", "/api/publish", &json_ct, body).await.0, 200);
}

#[tokio::test]
async fn the_dev_key_is_private_from_its_creation() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(&[]);
    let meta = std::fs::metadata(s.data.path().join("certs/dev-key.pem")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn a_deeply_nested_body_is_refused_and_nothing_is_stored() {
    let s = Server::start(&[]);
    let (mut c, _) = Client::login(&s, "alice").await;
    c.send(&json!({"msgType": 5, "roomId": "r"})).await;
    c.recv_type(5).await;
    let body = format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000));
    let frame = format!(r#"{{"msgType":3,"roomId":"r","clientMsgId":"deep","msgBody":{body}}}"#);
    c.send_text(&frame).await;
    let e = c.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["clientMsgId"].as_str()),
        (Some(400), Some("deep"))
    );
    // The connection stays, and the room's history is empty.
    c.send(&json!({"msgType": 7, "roomId": "r", "since": 0}))
        .await;
    let h = c.recv_type(7).await;
    assert_eq!(
        (h["seq"].as_i64(), h["messages"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn cursors_beyond_the_inbox_are_clamped_and_positions_beyond_i64_refused() {
    let s = Server::start(&[]);
    let (mut bob, _) = Client::login(&s, "bob").await;
    let (mut alice, _) = Client::login(&s, "alice").await;
    for i in 0..2 {
        alice
            .send(&json!({"msgType": 3, "receivedUserId": "bob", "clientMsgId": format!("m{i}"), "msgBody": i}))
            .await;
        alice.recv_type(4).await;
        bob.recv_type(3).await;
    }
    // A cursor far beyond the inbox, then 2^63: refused.
    bob.send(&json!({"msgType": 4, "seq": 1_000_000_000_000u64}))
        .await;
    bob.send_text(r#"{"msgType":4,"seq":9223372036854775808}"#)
        .await;
    assert_eq!(bob.recv_type(9).await["code"], 400);
    drop(bob);
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "clientMsgId": "m2", "msgBody": 2}))
        .await;
    assert_eq!(alice.recv_type(4).await["seq"], 3);
    // Bob logs in without since: the message sent while he was away
    // arrives, because his cursor was held at the inbox's end (2).
    let (mut bob, reply) = Client::login(&s, "bob").await;
    assert_eq!(reply["inboxSeq"], 3);
    let m = bob.recv_type(3).await;
    assert_eq!(
        (m["seq"].as_i64(), m["msgBody"].as_i64()),
        (Some(3), Some(2))
    );
    bob.send_text(r#"{"msgType":7,"since":18446744073709551615}"#)
        .await;
    assert_eq!(bob.recv_type(9).await["code"], 400);
}

#[tokio::test]
async fn a_message_sent_just_before_a_clean_close_still_reaches_the_room() {
    let s = Server::start(&["--rate-limit", "0", "--user-rate-limit", "0"]);
    let (mut watcher, _) = Client::login(&s, "watcher").await;
    watcher.send(&json!({"msgType": 5, "roomId": "busy"})).await;
    watcher.recv_type(5).await;
    // A chatty member keeps the server writing room traffic to everyone.
    let (mut chatty, _) = Client::login(&s, "chatty").await;
    chatty.send(&json!({"msgType": 5, "roomId": "busy"})).await;
    chatty.recv_type(5).await;
    let noise = tokio::spawn(async move {
        for i in 0..1_000_000u32 {
            chatty
                .try_send(&json!({"msgType": 3, "roomId": "busy", "volatile": true, "msgBody": {"noise": i}}))
                .await;
            if i % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    const ROUNDS: usize = 40;
    // The watcher reads all along (noise included) and notes the last words.
    let seen = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen.len() < ROUNDS {
            let Ok(Ok(m)) = tokio::time::timeout_at(deadline, watcher.next_json_or_end()).await
            else {
                break;
            };
            if let Some(i) = m["msgBody"]["last"].as_u64() {
                seen.insert(i);
            }
        }
        seen
    });
    for i in 0..ROUNDS {
        let (mut p, _) = Client::login(&s, &format!("pub{i}")).await;
        p.send(&json!({"msgType": 5, "roomId": "busy"})).await;
        p.recv_type(5).await;
        // The server is writing room traffic to this publisher now.
        for _ in 0..20 {
            p.recv().await;
        }
        // Volatile and durable alike, then a clean close handshake.
        let volatile = i % 2 == 0;
        p.send(
            &json!({"msgType": 3, "roomId": "busy", "volatile": volatile,
                       "clientMsgId": format!("last{i}"), "msgBody": {"last": i}}),
        )
        .await;
        p.close().await;
    }
    let seen = seen.await.unwrap();
    noise.abort();
    let missing: Vec<usize> = (0..ROUNDS)
        .filter(|i| !seen.contains(&(*i as u64)))
        .collect();
    assert!(missing.is_empty(), "never reached the room: {missing:?}");
}

#[tokio::test]
async fn a_login_that_replays_more_rooms_than_a_session_may_hold_is_400() {
    let s = Server::start(&["--max-rooms", "3"]);
    let since = |n: usize| -> serde_json::Value {
        let rooms: serde_json::Map<String, serde_json::Value> =
            (0..n).map(|i| (format!("r{i}"), json!(0))).collect();
        json!({"inbox": 0, "rooms": rooms})
    };
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.send(&json!({"msgType": 2, "sendUserId": "alice", "since": since(4)}))
        .await;
    let e = c.recv().await;
    assert_eq!(e["code"], 400, "{e}");
    assert!(e["reason"].as_str().unwrap().contains("since.rooms"), "{e}");
    // The amplification attempt of the report: 5,000 rooms, also refused.
    c.send(&json!({"msgType": 2, "sendUserId": "alice", "since": since(5000)}))
        .await;
    assert_eq!(c.recv().await["code"], 400);
    // The connection stayed; a login within the limit replays.
    let (mut pubr, _) = Client::login(&s, "pub").await;
    pubr.send(&json!({"msgType": 5, "roomId": "r1"})).await;
    pubr.recv_type(5).await;
    pubr.send(&json!({"msgType": 3, "roomId": "r1", "clientMsgId": "x", "msgBody": "hi"}))
        .await;
    pubr.recv_type(4).await;
    c.login_as(json!({"msgType": 2, "sendUserId": "alice", "since": since(3)}))
        .await;
    assert_eq!(c.recv_type(3).await["msgBody"], "hi");
}

/// Reads until the server closes the connection; false if it stays open
/// until `deadline`.
async fn closed_by(t: &mut tokio::net::TcpStream, deadline: tokio::time::Instant) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, t.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn half_sent_request_headers_are_dropped_after_ten_seconds() {
    use tokio::io::AsyncWriteExt;
    let s = Server::start(&[]);
    let started = tokio::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut t = tokio::net::TcpStream::connect(s.http).await.unwrap();
        t.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(t);
    }
    // Others are served meanwhile.
    let (mut c, _) = Client::login(&s, "alice").await;
    c.send(&json!({"msgType": 1})).await;
    c.recv_type(1).await;
    let deadline = started + Duration::from_secs(16);
    for (i, t) in slow.iter_mut().enumerate() {
        assert!(
            closed_by(t, deadline).await,
            "slow connection {i} still open"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed before the header timeout"
    );
}

/// Issue 27, item 6: behind a trusted proxy the per-address cap holds the
/// forwarded client to its share, not the proxy.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_held_to_its_cap() {
    let s = Server::start(&["--trusted-proxy", "127.0.0.1/32", "--max-conns-per-ip", "3"]);
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let mut held = Vec::new();
    for _ in 0..3 {
        // Sessions, not yet logged in: dev mode logs in loopback clients only.
        let c = Client::connect_with_headers(&s.ws_url("/ws"), &from("203.0.113.9"))
            .await
            .expect("within the cap");
        held.push(c);
    }
    let fourth = Client::connect_with_headers(&s.ws_url("/ws"), &from("203.0.113.9")).await;
    assert_eq!(fourth.err(), Some(429), "the 4th of one forwarded address");
    // Another client of the same proxy gets in.
    Client::connect_with_headers(&s.ws_url("/ws"), &from("198.51.100.7"))
        .await
        .expect("another forwarded address");
    let m = s.metrics().await;
    assert_eq!(
        m.get(r#"rtgate_connections_refused_total{transport="websocket",cap="per_ip"}"#),
        Some(&1.0),
        "counted"
    );
    // A session that ends frees its place.
    held.pop().unwrap().close().await;
    let mut again = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = Client::connect_with_headers(&s.ws_url("/ws"), &from("203.0.113.9")).await {
            again = Some(c);
            break;
        }
    }
    assert!(again.is_some(), "the place came back");
}

#[tokio::test]
async fn connection_caps_refuse_early_on_both_transports_and_are_counted() {
    let s = Server::start(&["--max-conns-per-ip", "5", "--max-conns", "8"]);
    // Five idle connections fill 127.0.0.1's place.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(crate::common::tcp_from("127.0.0.1", s.http).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut sixth = crate::common::tcp_from("127.0.0.1", s.http).await;
    assert!(
        closed_by(&mut sixth, deadline).await,
        "the 6th from one address was kept"
    );
    // WebTransport shares the caps: a session from 127.0.0.1 is refused.
    let (_wt, status) =
        crate::wt_client::WtClient::connect(&crate::wt_client::wt_url(&s, "/wt"), None).await;
    assert_eq!(
        status, 0,
        "a QUIC connection over the address cap was accepted"
    );
    // Another address still gets in, and logs in.
    let mut other = Client::connect_from(&s, "127.0.0.2", "/ws")
        .await
        .expect("127.0.0.2 admitted");
    other
        .login_as(json!({"msgType": 2, "sendUserId": "other"}))
        .await;
    // Five + one + two more: the node's cap of eight; a ninth is refused.
    held.push(crate::common::tcp_from("127.0.0.3", s.http).await);
    held.push(crate::common::tcp_from("127.0.0.3", s.http).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = crate::common::tcp_from("127.0.0.4", s.http).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    assert!(
        closed_by(&mut ninth, deadline).await,
        "the node's cap let a ninth in"
    );
    // Freed places are taken again; the refusals are in /metrics.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = s.metrics().await;
    let refused = |t: &str, cap: &str| {
        m.get(&format!(
            r#"rtgate_connections_refused_total{{transport="{t}",cap="{cap}"}}"#
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert!(refused("websocket", "per_ip") >= 1.0, "{m:?}");
    assert!(refused("webtransport", "per_ip") >= 1.0, "{m:?}");
    assert!(refused("websocket", "global") >= 1.0, "{m:?}");
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_sessions() {
    let s = Server::start(&["--max-sessions-per-user", "2"]);
    let (_a, _) = Client::login(&s, "alice").await;
    let (b, _) = Client::login(&s, "alice").await;
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.send(&json!({"msgType": 2, "sendUserId": "alice"})).await;
    assert_eq!(c.recv().await["code"], 429);
    assert_eq!(c.expect_end().await, End::Closed(4429));
    // Another user is not affected; a freed place is taken again.
    Client::login(&s, "bob").await;
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(&s.ws_url("/ws")).await;
        c.send(&json!({"msgType": 2, "sendUserId": "alice"})).await;
        if c.recv().await["msgType"] == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_users_messages_per_second_count_across_its_sessions() {
    // Each session alone stays under its own limit (50/s, burst 100); the
    // user's budget (5/s, burst 10) is shared by both.
    let s = Server::start(&["--user-rate-limit", "5"]);
    let (mut a, _) = Client::login(&s, "alice").await;
    let (mut b, _) = Client::login(&s, "alice").await;
    for c in [&mut a, &mut b] {
        c.send(&json!({"msgType": 5, "roomId": "r"})).await;
        c.recv_type(5).await;
    }
    for i in 0..20 {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        c.send(&json!({"msgType": 3, "roomId": "r", "volatile": true, "clientMsgId": format!("v{i}"), "msgBody": i}))
            .await;
    }
    let mut refused = 0;
    for c in [&mut a, &mut b] {
        c.send(&json!({"msgType": 1})).await;
        loop {
            let m = c.recv().await;
            match m["msgType"].as_i64() {
                Some(9) => {
                    assert_eq!(m["code"], 429, "{m}");
                    assert!(m["clientMsgId"].as_str().is_some(), "{m}");
                    refused += 1;
                }
                Some(1) => break,
                _ => {}
            }
        }
    }
    assert_eq!(refused, 10, "20 messages, a burst of 10 allowed");
}

#[tokio::test]
async fn made_up_recipients_are_a_budget_per_minute() {
    let s = Server::start(&["--max-recipients-per-min", "3"]);
    let (mut a, _) = Client::login(&s, "alice").await;
    let send = |to: String, cmid: String| json!({"msgType": 3, "receivedUserId": to, "clientMsgId": cmid, "msgBody": 1});
    for i in 0..3 {
        a.send(&send(format!("ghost{i}"), format!("g{i}"))).await;
        assert_eq!(a.recv_type(4).await["clientMsgId"], format!("g{i}"));
    }
    a.send(&send("ghost3".into(), "g3".into())).await;
    let e = a.recv_type(9).await;
    assert_eq!(
        (e["code"].as_i64(), e["clientMsgId"].as_str()),
        (Some(429), Some("g3"))
    );
    // A recipient already written to this minute is still fine.
    a.send(&send("ghost0".into(), "again".into())).await;
    assert_eq!(a.recv_type(4).await["clientMsgId"], "again");
}

#[tokio::test]
async fn an_idle_channel_is_forgotten_and_a_stale_resume_is_reported_and_replayed() {
    let s = Server::start(&["--retention-sec", "1"]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    for i in 0..2 {
        alice
            .send(&json!({"msgType": 3, "receivedUserId": "ghost", "clientMsgId": format!("g{i}"), "msgBody": i}))
            .await;
        alice.recv_type(4).await;
    }
    alice.send(&json!({"msgType": 5, "roomId": "busy"})).await;
    alice.recv_type(5).await;
    // Other traffic keeps the store working while ghost's inbox ages out and
    // its channel is forgotten.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    let reply = loop {
        alice
            .send(&json!({"msgType": 3, "roomId": "busy", "clientMsgId": format!("b{n}"), "msgBody": n}))
            .await;
        alice.recv_type(4).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut probe = Client::connect(&s.ws_url("/ws")).await;
        let reply = probe
            .login_as(json!({"msgType": 2, "sendUserId": "ghost", "since": {"inbox": 2}}))
            .await;
        if reply["inboxSeq"] == 0 {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ghost's inbox was never forgotten: {reply}"
        );
    };
    // A resume past the channel's end is reported: the client knows.
    assert_eq!(reply["unrecovered"], json!(["inbox"]), "{reply}");
    // The channel starts anew; a client still at position 2 is told, and
    // gets what there is from the start.
    crate::common::reset_is_reported_and_replayed(&s, &mut alice).await;
}

#[tokio::test]
async fn a_publisher_whose_frames_never_stop_does_not_starve_the_sessions_beside_it() {
    // One worker thread: a session's task that never yields (its socket
    // always has the next frame) would hold up every other session.
    let s = Server::start_on_one_core(&["--rate-limit", "0", "--user-rate-limit", "0"]);
    let mut sub = Client::connect(&s.ws_url("/ws")).await;
    sub.login_as(json!({"msgType": 2, "sendUserId": "listener", "roomId": "r"}))
        .await;
    let mut publisher = Client::connect(&s.ws_url("/ws")).await;
    publisher
        .login_as(json!({"msgType": 2, "sendUserId": "talker", "roomId": "r"}))
        .await;
    let batch: Vec<Value> = (0..2_000)
        .map(|i| json!({"msgType": 3, "roomId": "r", "volatile": true, "msgBody": {"n": i}}))
        .collect();
    // Three seconds of frames written faster than the server reads them.
    let flood = tokio::spawn(async move {
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            publisher.send_all(&batch).await;
        }
        publisher
    });
    // The listener hears the room while the flood goes on.
    let heard = tokio::time::timeout(Duration::from_secs(2), sub.recv_type(3)).await;
    assert!(
        heard.is_ok(),
        "nothing of the room reached the listener while the publisher wrote"
    );
    assert!(
        !flood.is_finished(),
        "the flood lasted while the room was heard"
    );
    let _publisher = flood.await.unwrap();
}
