//! Issue 27, item 4: a hook's slots are shared fairly. One address's
//! unauthenticated login loops or one user's many sessions hold at most a
//! quarter of a hook's slots, so everyone else still gets answers; a
//! session's own join call never delays its other frames; and a call the
//! caller gave up on keeps its slot until the backend answers, so the
//! backend never has more calls in hand than `--hook-max-in-flight`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Client, End, Server, http_request};
use crate::hooks::{APP_ORIGIN, Backend, HOOK_SECRET, hooked, with_cookie};

/// A login over `/ws` from `address` (through the trusted proxy) with the
/// backend's cookie for `user`, or none: its reply or error code.
async fn login_from(url: &str, address: &str, user: Option<&str>) -> Result<Value, i64> {
    let cookie = user.map(|u| format!("session={u}")).unwrap_or_default();
    let mut headers = vec![("x-forwarded-for", address)];
    if user.is_some() {
        headers.push(("cookie", cookie.as_str()));
    }
    let Ok(mut c) = Client::connect_with_headers(url, &headers).await else {
        return Err(0);
    };
    c.send(&json!({"msgType": 2})).await;
    loop {
        match c.next_json_or_end().await {
            Ok(v) if v["msgType"] == 2 => return Ok(v),
            Ok(v) if v["msgType"] == 9 => return Err(v["code"].as_i64().unwrap_or(0)),
            Ok(_) => continue,
            Err(End::Closed(code)) => return Err(code as i64),
            Err(e) => panic!("the login ended: {e:?}"),
        }
    }
}

#[tokio::test]
async fn login_loops_from_one_address_do_not_starve_everyone_elses_logins() {
    let b = Backend::start();
    b.behave(700, None).await;
    let s = hooked(
        &b,
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--hook-max-in-flight",
            "8",
            "--hook-timeout-ms",
            "3000",
        ],
    );
    // 32 loops from one address, logging in without credentials.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..32 {
        let (url, stop) = (s.ws_url("/ws"), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = login_from(&url, "10.0.0.66", None).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Five people from elsewhere log in, all of them.
    let mut logins = Vec::new();
    for n in 1..=5 {
        let url = s.ws_url("/ws");
        logins.push(tokio::spawn(async move {
            login_from(&url, &format!("10.0.0.{n}"), Some(&format!("user{n}"))).await
        }));
    }
    for (n, l) in logins.into_iter().enumerate() {
        let reply = l.await.unwrap();
        assert!(reply.is_ok(), "user{} got {reply:?}", n + 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in loops {
        l.abort();
    }
}

#[tokio::test]
async fn one_users_many_sessions_do_not_take_every_join_slot() {
    let b = Backend::start();
    let s = hooked(
        &b,
        &["--hook-max-in-flight", "8", "--hook-timeout-ms", "3000"],
    );
    let mut hog = Vec::new();
    for _ in 0..12 {
        let (mut c, _) = with_cookie(&s, "hog").await;
        c.recv_type(5).await;
        hog.push(c);
    }
    b.behave(700, None).await;
    // Each of hog's sessions asks to join rooms, again and again.
    for (i, c) in hog.iter_mut().enumerate() {
        for r in 0..10 {
            c.send(&json!({"msgType": 5, "roomId": format!("h{i}-{r}")}))
                .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut amy, _) = with_cookie(&s, "amy").await;
    amy.recv_type(5).await;
    let started = Instant::now();
    amy.send(&json!({"msgType": 5, "roomId": "quiet"})).await;
    let reply = amy.recv().await;
    assert_eq!(
        (reply["msgType"].as_i64(), reply["roomId"].as_str()),
        (Some(5), Some("quiet")),
        "{reply}"
    );
    // One backend round trip, not a wait behind hog's 120 calls.
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "amy waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_sessions_join_call_does_not_hold_up_its_other_frames() {
    let b = Backend::start();
    // Connect and join hooks; no publish hook (its own latency would be
    // on the messages).
    let (connect, join) = (b.url("connect"), b.url("join"));
    let s = Server::start(&[
        "--allowed-origin",
        APP_ORIGIN,
        "--connect-hook",
        &connect,
        "--join-hook",
        &join,
        "--hook-secret",
        HOOK_SECRET,
    ]);
    let (mut ann, _) = with_cookie(&s, "ann").await;
    ann.recv_type(5).await;
    let (mut bob, _) = with_cookie(&s, "bob").await;
    bob.recv_type(5).await;
    b.behave(700, None).await;
    let started = Instant::now();
    ann.send(&json!({"msgType": 5, "roomId": "slow-room"}))
        .await;
    // Then a message to the room (it waits for the join, in order), a
    // heartbeat and a direct message (they do not).
    ann.send(
        &json!({"msgType": 3, "roomId": "slow-room", "clientMsgId": "r", "msgBody": "in the room"}),
    )
    .await;
    ann.send(&json!({"msgType": 1})).await;
    ann.send(
        &json!({"msgType": 3, "receivedUserId": "bob", "clientMsgId": "d", "msgBody": "psst"}),
    )
    .await;
    // The heartbeat's answer and the direct message come first, long
    // before the backend's 700 ms.
    let first = ann.recv().await;
    assert_eq!(first["msgType"], 1, "{first}");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    let m = bob.recv_type(3).await;
    assert_eq!(m["msgBody"], "psst");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // Then the join, then the room message's ack, in that order.
    let mut rest = Vec::new();
    while rest.len() < 3 {
        let v = ann.recv().await;
        rest.push((
            v["msgType"].as_i64().unwrap(),
            v["clientMsgId"].as_str().map(str::to_owned),
        ));
    }
    let join = rest.iter().position(|r| r.0 == 5).expect("the join answer");
    let room_ack = rest
        .iter()
        .position(|r| r.0 == 4 && r.1.as_deref() == Some("r"))
        .expect("the room message's ack");
    assert!(join < room_ack, "{rest:?}");
    assert!(started.elapsed() >= Duration::from_millis(650));
}

#[tokio::test]
async fn a_call_given_up_on_keeps_its_slot_until_the_backend_answers() {
    let b = Backend::start();
    let s = hooked(
        &b,
        &["--hook-max-in-flight", "4", "--hook-timeout-ms", "300"],
    );
    let mut users = Vec::new();
    for n in 0..20 {
        let (mut c, _) = with_cookie(&s, &format!("u{n}")).await;
        c.recv_type(5).await;
        users.push(c);
    }
    b.behave(1_500, None).await;
    // Waves of joins, each after the last one's callers gave up (300 ms).
    for wave in 0..4 {
        for c in users.iter_mut() {
            c.send(&json!({"msgType": 5, "roomId": format!("busy{wave}")}))
                .await;
        }
        for c in users.iter_mut() {
            assert_eq!(c.recv_type(9).await["code"], 503);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give every call the backend has time to finish.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let (status, body) = http_request(b.addr, "GET", "/stats", &[], "").await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert!(
        stats["maxInFlight"].as_u64().unwrap() <= 4,
        "the backend had more calls at once than promised: {stats}"
    );
}
