//! The operator's page (`/admin`) in headless Chromium against a node under
//! load: live charts from `/metrics`, top rooms from the API, presence
//! lookup, and a screenshot (`target/tmp/admin.png`) to look at.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{Value, json};

use super::{Driver, click, fill, wait_for};
use crate::common::{Client, Server};

const KEY: &str = "adm1n";

async fn state(b: &fantoccini::Client) -> Value {
    b.execute("return window.adminState", vec![]).await.unwrap()
}

fn last(v: &Value) -> f64 {
    v.as_array()
        .and_then(|a| a.last())
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

fn max(v: &Value) -> f64 {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).fold(0.0, f64::max))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_admin_page_charts_a_node_under_load() {
    let s = Server::start(&["--api-key", KEY]);
    // Twelve users in "busy", three in "calm"; one of them sends to "busy"
    // about 40 times a second for the whole test.
    let mut clients = Vec::new();
    for i in 0..15 {
        let (mut c, _) = Client::login(&s, &format!("u{i}")).await;
        let room = if i < 12 { "busy" } else { "calm" };
        c.send(&json!({"msgType": 5, "roomId": room})).await;
        c.recv_type(5).await;
        clients.push(c);
    }
    let mut talker = clients.remove(0);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let load = tokio::spawn(async move {
        let mut n = 0u64;
        while !flag.load(Ordering::Relaxed) {
            n += 1;
            talker
                .send(&json!({"msgType": 3, "roomId": "busy", "msgBody": n, "clientMsgId": n.to_string()}))
                .await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        talker
    });

    let driver = Driver::start();
    let b = driver.browser("admin").await;
    b.goto(&format!("http://{}/admin", s.http)).await.unwrap();
    fill(&b, "key", KEY).await;
    click(&b, "go").await;
    // Five scrapes: four rates.
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = state(&b).await;
        if st["samples"].as_u64().unwrap_or(0) >= 5 {
            break st;
        }
        assert!(Instant::now() < deadline, "the page did not update: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(st["errors"], 0, "{st}");
    let series = &st["series"];
    assert_eq!(last(&series["c-conns"]["websocket"]), 15.0, "{st}");
    assert!(
        max(&series["c-frames"]["in"]) >= 20.0,
        "frames in per second: {st}"
    );
    assert!(
        max(&series["c-frames"]["out"]) >= 200.0,
        "frames out per second: {st}"
    );
    assert!(
        max(&series["c-store"]["p99"]) > 0.0,
        "store commit p99: {st}"
    );
    let rooms = st["rooms"].as_array().unwrap();
    assert_eq!(rooms[0]["roomId"], "busy", "{st}");
    assert_eq!(rooms[0]["members"], 12);
    assert!(
        rooms[0]["rate"].as_f64().unwrap() > 10.0,
        "busy's rate: {st}"
    );
    assert_eq!(rooms[1]["roomId"], "calm");
    wait_for(&b, "by-rate", "busy").await;
    wait_for(&b, "node", "(ready)").await;

    // Presence lookup.
    fill(&b, "who", "u3").await;
    click(&b, "look").await;
    wait_for(&b, "presence", "websocket").await;

    // The charts are drawn: a polyline with points in each.
    for chart in ["c-conns", "c-frames", "c-drops", "c-store"] {
        let svg = b
            .find(Locator::Css(&format!("#{chart} svg")))
            .await
            .unwrap()
            .html(true)
            .await
            .unwrap();
        assert!(svg.contains("<polyline"), "{chart}: {svg}");
    }
    b.set_window_size(1500, 900).await.unwrap();
    b.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let png = b.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin.png");
    std::fs::write(&path, &png).unwrap();
    assert!(png.len() > 10_000, "a screenshot with content");

    // Without the key the data routes refuse, the page says so.
    let (status, _) = s.http("GET", "/api/rooms", &[], "").await;
    assert_eq!(status, 401);
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    b.close().await.unwrap();
}
