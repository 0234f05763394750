//! Issue 27, item 5: the event outbox is bounded. A backend that is down
//! for long costs the oldest events (bytes and age bounds, dropped and
//! counted), not the disk or Redis; batches are bounded in bytes and a
//! batch the backend refuses is halved until the event it refuses stands
//! alone, which is quarantined (counted, logged, listed at `/api/events`
//! and on `/admin`) while the rest flows; the outbox's depth is a gauge.
//! Against SQLite and Redis alike.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Driver, click, fill, wait_for};
use crate::common::{Client, Server};
use crate::hooks::{Backend, HOOK_SECRET};
use crate::redis_server::RedisServer;

const KEY: &str = "k3y";

fn node(b: &Backend, extra: &[&str]) -> Server {
    let url = b.url("events");
    let mut args = vec![
        "--event-hook",
        &url,
        "--hook-secret",
        HOOK_SECRET,
        "--api-key",
        KEY,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

async fn outbox(s: &Server) -> Value {
    let auth = format!("apikey {KEY}");
    let (status, body) = s
        .http("GET", "/api/events", &[("authorization", &auth)], "")
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn metric(s: &Server, name: &str) -> f64 {
    s.metrics().await.get(name).copied().unwrap_or(0.0)
}

/// Waits (20 s at most) until `done` holds of the node's metrics.
async fn until_metrics(
    s: &Server,
    what: &str,
    done: impl Fn(&std::collections::HashMap<String, f64>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = s.metrics().await;
        if done(&m) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bodies of the stored messages whose events the backend took.
async fn taken(b: &Backend) -> Vec<String> {
    b.calls("events")
        .await
        .into_iter()
        .filter(|c| c["status"].as_u64().is_some_and(|s| s < 300))
        .flat_map(|c| c["body"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["type"] == "message.stored")
        .map(|e| {
            e["message"]["msgBody"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn room_user(s: &Server) -> Client {
    let (mut ann, _) = Client::login(s, "ann").await;
    ann.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    ann.recv_type(5).await;
    ann
}

const DROPPED_BYTES: &str = r#"rtgate_events_dropped_total{reason="bytes"}"#;

async fn bounded_by_bytes(extra: &[&str]) {
    let b = Backend::start();
    b.control(json!({"status": 503})).await;
    let mut args = vec![
        "--event-outbox-max-bytes",
        "20000",
        "--rate-limit",
        "0",
        "--user-rate-limit",
        "0",
    ];
    args.extend_from_slice(extra);
    let s = node(&b, &args);
    let mut ann = room_user(&s).await;
    for i in 0..400 {
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": format!("m{i:03}-{}", "x".repeat(200)), "clientMsgId": i.to_string()}))
            .await;
    }
    for _ in 0..400 {
        ann.recv_type(4).await;
    }
    // The outbox keeps about 20 KB: the oldest events went, counted.
    until_metrics(&s, "the outbox shrank to its bound", |m| {
        m.get(DROPPED_BYTES).copied().unwrap_or(0.0) > 0.0
            && m.get("rtgate_event_outbox_bytes")
                .copied()
                .unwrap_or(f64::MAX)
                <= 20_000.0
    })
    .await;
    let waiting = outbox(&s).await["waiting"].as_u64().unwrap();
    assert!((1..400).contains(&waiting), "{waiting} events waiting");
    // The backend comes back: the newest events arrive, the oldest do not.
    b.control(json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got = taken(&b).await;
        if got.iter().any(|m| m.starts_with("m399")) {
            break got;
        }
        assert!(Instant::now() < deadline, "the newest event never came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // What arrives is the batch in flight when the backend went down (it
    // is sent as it was) and what the bound kept; the rest was dropped.
    let dropped = metric(&s, DROPPED_BYTES).await as usize;
    assert!(
        got.len() < 400 && dropped > 0,
        "{} taken, {dropped} dropped",
        got.len()
    );
    assert!(
        got.len() + dropped >= 400,
        "{} taken, {dropped} dropped",
        got.len()
    );
    let middle = (100..300)
        .filter(|i| got.iter().any(|m| m.starts_with(&format!("m{i:03}"))))
        .count();
    assert!(middle < 200, "events after the first batch were dropped");
}

#[tokio::test]
async fn a_backend_down_for_long_costs_the_oldest_events_not_the_disk() {
    bounded_by_bytes(&[]).await;
}

#[tokio::test]
async fn in_redis_too_the_outbox_keeps_to_its_bound() {
    let redis = RedisServer::start();
    let url = redis.url();
    bounded_by_bytes(&["--redis", &url]).await;
}

#[tokio::test]
async fn events_older_than_the_age_bound_are_dropped() {
    let b = Backend::start();
    b.control(json!({"status": 503})).await;
    let s = node(&b, &["--event-outbox-max-age-sec", "1"]);
    let mut ann = room_user(&s).await;
    for i in 0..5 {
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": format!("old{i}"), "clientMsgId": i.to_string()}))
            .await;
        ann.recv_type(4).await;
    }
    // A write after the second passes lets the writer trim.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ann.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": "new", "clientMsgId": "n"}))
        .await;
    ann.recv_type(4).await;
    until_metrics(&s, "old events dropped", |m| {
        m.get(r#"rtgate_events_dropped_total{reason="age"}"#)
            .copied()
            .unwrap_or(0.0)
            >= 5.0
    })
    .await;
}

#[tokio::test]
async fn an_event_the_backend_refuses_is_quarantined_and_the_rest_flows() {
    let b = Backend::start();
    let s = node(&b, &[]);
    let mut ann = room_user(&s).await;
    for i in 0..10 {
        let body = if i == 4 {
            "poison".to_string()
        } else {
            format!("m{i}")
        };
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": body, "clientMsgId": i.to_string()}))
            .await;
        ann.recv_type(4).await;
    }
    until_metrics(&s, "the poison event quarantined", |m| {
        m.get("rtgate_events_quarantined_total").copied() == Some(1.0)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = taken(&b).await;
        if (0..10)
            .filter(|i| *i != 4)
            .all(|i| got.contains(&format!("m{i}")))
        {
            assert!(!got.contains(&"poison".to_string()));
            break;
        }
        assert!(Instant::now() < deadline, "the rest never came: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = outbox(&s).await;
    let q = &o["quarantined"];
    assert_eq!(q.as_array().unwrap().len(), 1, "{o}");
    assert_eq!(q[0]["type"], "message.stored");
    assert!(q[0]["reason"].as_str().unwrap().contains("422"), "{o}");
    assert!(q[0]["excerpt"].as_str().unwrap().contains("poison"), "{o}");
    // The operator's page shows it.
    let driver = Driver::start();
    let page = driver.browser("admin").await;
    page.goto(&format!("http://{}/admin", s.http))
        .await
        .unwrap();
    fill(&page, "key", KEY).await;
    click(&page, "go").await;
    wait_for(&page, "quarantined", "422").await;
    wait_for(&page, "outbox", "1 quarantined").await;
    page.close().await.unwrap();
}

#[tokio::test]
async fn batches_too_large_for_the_backend_are_halved_until_they_pass() {
    let b = Backend::start();
    b.control(json!({"status": 503})).await;
    let s = node(&b, &[]);
    let mut ann = room_user(&s).await;
    for i in 0..30 {
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": format!("m{i:02}-{}", "y".repeat(300)), "clientMsgId": i.to_string()}))
            .await;
        ann.recv_type(4).await;
    }
    // Up again, but it takes at most 2,000 bytes a request.
    b.control(json!({"eventsMaxBytes": 2000})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if taken(&b).await.len() == 30 {
            break;
        }
        assert!(Instant::now() < deadline, "not all events came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = b.calls("events").await;
    assert!(
        calls.iter().any(|c| c["status"] == 413),
        "a batch was refused first"
    );
    assert_eq!(metric(&s, "rtgate_events_quarantined_total").await, 0.0);
    // With the batch bound at the backend's limit no request is refused.
    let b2 = Backend::start();
    b2.control(json!({"eventsMaxBytes": 2000})).await;
    let s2 = node(&b2, &["--event-hook-batch-bytes", "1900"]);
    let mut bob = room_user(&s2).await;
    for i in 0..10 {
        bob.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": format!("n{i}-{}", "z".repeat(300)), "clientMsgId": i.to_string()}))
            .await;
        bob.recv_type(4).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while taken(&b2).await.len() < 10 {
        assert!(Instant::now() < deadline, "not all events came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(b2.calls("events").await.iter().all(|c| c["status"] != 413));
}
