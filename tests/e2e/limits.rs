//! Bad input and limits: every bad frame gets a clear error, the server stays
//! up, and other conversations lose nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::common::{Client, End, Server};

#[tokio::test]
async fn malformed_frames_get_400_and_the_connection_stays() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    let bad = [
        "{",
        "not json",
        "[1,2]",
        "42",
        r#"{"msgType":"3"}"#,
        r#"{"msgType":3.5,"roomId":"r"}"#,
        r#"{"roomId":"r"}"#,
        r#"{"msgType":42}"#,
        r#"{"msgType":3}"#,
        r#"{"msgType":3,"receivedUserId":{"x":1}}"#,
        r#"{"msgType":3,"receivedUserId":"has space"}"#,
        r#"{"msgType":3,"receivedUserId":"b","bizType":"one"}"#,
        r#"{"msgType":5}"#,
        r#"{"msgType":7,"limit":1000}"#,
        r#"{"msgType":8}"#,
    ];
    for frame in bad {
        a.send_text(frame).await;
        let e = a.recv().await;
        assert_eq!(
            (e["msgType"].as_i64(), e["code"].as_i64()),
            (Some(9), Some(400)),
            "{frame} -> {e}"
        );
        assert!(!e["reason"].as_str().unwrap().is_empty());
    }
    let long = "x".repeat(129);
    a.send(&json!({"msgType": 5, "roomId": long})).await;
    let e = a.recv().await;
    assert_eq!(e["code"], 400);
    assert!(
        e["reason"].as_str().unwrap().contains("roomId"),
        "the reason names the field: {e}"
    );
    // Invalid UTF-8 in a binary frame; a binary frame holding JSON works.
    a.send_binary(vec![0xff, 0xfe, b'{']).await;
    assert_eq!(a.recv().await["code"], 400);
    a.send_binary(br#"{"msgType":1}"#.to_vec()).await;
    assert_eq!(a.recv().await["msgType"], 1);
    // The conversation goes on.
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": "still here"}))
        .await;
    assert_eq!(b.recv().await["msgBody"], "still here");
}

#[tokio::test]
async fn oversize_frame_gets_413_then_close_4413_and_loses_nothing() {
    let s = Server::start(&["--max-frame", "1024"]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": "before", "clientMsgId": "ok"}))
        .await;
    assert_eq!(a.recv_type(4).await["clientMsgId"], "ok");
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": "y".repeat(2000)}))
        .await;
    let e = a.recv_type(9).await;
    assert_eq!(e["code"], 413);
    assert_eq!(a.expect_end().await, End::Closed(4413));
    // The accepted message is delivered and stored.
    assert_eq!(b.recv().await["msgBody"], "before");
    let (_, reply) = Client::login(&s, "b").await;
    assert_eq!(reply["inboxSeq"], 1);
    // Far beyond 4x the limit the transport cuts the connection itself.
    let (mut c, _) = Client::login(&s, "c").await;
    c.send_text(&"z".repeat(10_000)).await;
    assert!(matches!(
        c.expect_end().await,
        End::Closed(4413) | End::Dropped
    ));
    let (mut d, _) = Client::login(&s, "d").await;
    d.send(&json!({"msgType": 1})).await;
    assert_eq!(d.recv().await["msgType"], 1, "the server is still up");
}

#[tokio::test]
async fn a_flood_of_heartbeats_is_refused_and_closed_4429_on_every_kind_of_heartbeat() {
    // Heartbeats are not counted against the rate limit, but no client
    // sends more than 20 in a second: a peer that does (each WebSocket Ping
    // and each `ping` costs an answer) is closed as abusive.
    let s = Server::start(&[]);
    let (mut pinger, _) = Client::login(&s, "pinger").await;
    pinger.send_pings(200).await;
    let e = pinger.recv().await;
    assert_eq!(e["code"], 429, "{e}");
    assert!(e["reason"].as_str().unwrap().contains("heartbeats"), "{e}");
    assert_eq!(pinger.expect_end().await, End::Closed(4429));
    let (mut legacy, _) = Client::login(&s, "legacy").await;
    legacy.send_texts("ping", 200).await;
    for _ in 0..20 {
        assert_eq!(legacy.recv_text().await, "pong");
    }
    assert_eq!(legacy.recv().await["code"], 429);
    assert_eq!(legacy.expect_end().await, End::Closed(4429));
    // A client that beats as clients do is not affected, nor is anyone else.
    let (mut steady, _) = Client::login(&s, "steady").await;
    for _ in 0..3 {
        steady.send_pings(1).await;
        steady.send(&json!({"msgType": 1})).await;
        assert_eq!(steady.recv().await["msgType"], 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    steady
        .send(&json!({"msgType": 8, "userIds": ["pinger"]}))
        .await;
    assert_eq!(steady.recv().await["msgType"], 8);
}

#[tokio::test]
async fn rate_limit_rejects_then_closes_but_not_heartbeats() {
    // 2 frames/s, burst 4; more than 4 rejected frames in 10 s close.
    let s = Server::start(&["--rate-limit", "2"]);
    let (mut a, _) = Client::login(&s, "a").await;
    // Heartbeats and ping are not counted (only bounded: 20 in a second,
    // as the next test shows).
    for _ in 0..10 {
        a.send_text("ping").await;
        a.send(&json!({"msgType": 1})).await;
    }
    for _ in 0..10 {
        assert_eq!(a.recv_text().await, "pong");
        assert_eq!(a.recv().await["msgType"], 1);
    }
    // The login took one token: three frames pass, the fourth is refused.
    for i in 0..3 {
        a.send(&json!({"msgType": 8, "userIds": [format!("u{i}")]}))
            .await;
    }
    a.send(&json!({"msgType": 3, "roomId": "r", "clientMsgId": "over"}))
        .await;
    for _ in 0..3 {
        assert_eq!(a.recv().await["msgType"], 8);
    }
    let e = a.recv().await;
    assert_eq!(
        (e["code"].as_i64(), e["clientMsgId"].as_str()),
        (Some(429), Some("over")),
        "{e}"
    );
    for _ in 0..4 {
        a.send(&json!({"msgType": 8, "userIds": ["x"]})).await;
    }
    assert_eq!(a.expect_end().await, End::Closed(4429));
    // Another session is unaffected.
    let (mut b, _) = Client::login(&s, "b").await;
    b.send(&json!({"msgType": 1})).await;
    assert_eq!(b.recv().await["msgType"], 1);
}

#[tokio::test]
async fn rooms_per_session_are_limited() {
    let s = Server::start(&["--max-rooms", "2"]);
    let (mut a, _) = Client::login(&s, "a").await;
    for r in ["r1", "r2"] {
        a.send(&json!({"msgType": 5, "roomId": r})).await;
        assert_eq!(a.recv().await["msgType"], 5);
    }
    a.send(&json!({"msgType": 5, "roomId": "r3"})).await;
    let e = a.recv().await;
    assert_eq!(
        (e["msgType"].as_i64(), e["code"].as_i64()),
        (Some(9), Some(409))
    );
    a.send(&json!({"msgType": 5, "roomId": "r1"})).await;
    assert_eq!(
        a.recv().await["msgType"],
        5,
        "rejoining a room is not a new room"
    );
}

#[tokio::test]
async fn slow_consumer_is_closed_4008_without_slowing_others() {
    let s = Server::start(&[
        "--outbound-queue",
        "64",
        "--rate-limit",
        "0",
        "--user-rate-limit",
        "0",
    ]);
    // A reader that never reads, over a socket with a tiny receive buffer.
    let mut slow = Client::connect_small_buffer(&s.ws_url("/ws")).await;
    slow.login_as(json!({"msgType": 2, "sendUserId": "slow", "roomId": "busy"}))
        .await;
    let mut fast = Client::connect(&s.ws_url("/ws")).await;
    fast.login_as(json!({"msgType": 2, "sendUserId": "fast", "roomId": "busy"}))
        .await;
    let mut sender = Client::connect(&s.ws_url("/ws")).await;
    sender
        .login_as(json!({"msgType": 2, "sendUserId": "sender", "roomId": "busy"}))
        .await;
    const N: usize = 1000;
    let body = "b".repeat(16 * 1024);
    let got = Arc::new(AtomicUsize::new(0));
    let counter = got.clone();
    let reader = tokio::spawn(async move {
        for i in 0..N {
            let m = fast.recv().await;
            assert_eq!(m["msgBody"]["n"], i, "in order, none lost");
            assert_eq!(m["msgBody"]["pad"].as_str().map(str::len), Some(16 * 1024));
            counter.store(i + 1, Ordering::Release);
        }
    });
    for i in 0..N {
        // Keep within what the fast reader handles: it must never fall 64 behind.
        while i >= got.load(Ordering::Acquire) + 32 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sender.send(&json!({"msgType": 3, "roomId": "busy", "volatile": true, "msgBody": {"n": i, "pad": body}})).await;
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slow.expect_end().await, End::Closed(4008));
}
