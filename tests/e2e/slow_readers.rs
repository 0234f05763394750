//! Readers that stop (PROTOCOL.md section 6): a client that stops reading
//! while its queue is far from full is closed 4008 once a write to it has
//! been blocked for the heartbeat interval, on both transports; the close
//! is counted, and its user's other session and the room keep working.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::wt_client::{WtClient, wt_url};

/// A room message body of about 60 KB (under the 64 KiB frame limit).
fn big(i: usize) -> Value {
    json!({"n": i, "pad": "p".repeat(60_000)})
}

/// Polls `/metrics` until `key` reaches `want`; how long it took.
async fn metric_reaches(s: &Server, key: &str, want: f64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = s.metrics().await.get(key).copied().unwrap_or(0.0);
        if got >= want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{key} is {got}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server whose heartbeat (and so write deadline) is 1 s, without rate
/// limits.
fn server() -> Server {
    Server::start(&[
        "--heartbeat-sec",
        "1",
        "--rate-limit",
        "0",
        "--user-rate-limit",
        "0",
    ])
}

/// Carol's desktop (which keeps up) and dave join room `r`; dave sends `n`
/// big stored messages there and the desktop gets them all.
async fn desk_gets_daves_burst(s: &Server, n: usize) -> (Client, Client) {
    let mut desk = Client::connect(&s.ws_url("/ws")).await;
    desk.login_as(json!({"msgType": 2, "sendUserId": "carol", "roomId": "r"}))
        .await;
    let mut dave = Client::connect(&s.ws_url("/ws")).await;
    dave.login_as(json!({"msgType": 2, "sendUserId": "dave", "roomId": "r"}))
        .await;
    for i in 0..n {
        dave.send(
            &json!({"msgType": 3, "roomId": "r", "clientMsgId": i.to_string(), "msgBody": big(i)}),
        )
        .await;
    }
    read_room(&mut desk, n).await;
    (desk, dave)
}

/// Reads until `n` messages of the room arrived, in order.
async fn read_room(c: &mut Client, n: usize) {
    for i in 0..n {
        let m = c.recv_type(3).await;
        assert_eq!(m["msgBody"]["n"], i, "in order, none lost");
    }
}

#[tokio::test]
async fn a_websocket_reader_that_stops_is_closed_4008_once_a_write_blocks_for_a_heartbeat() {
    let s = server();
    // Carol's phone stops reading (a socket with a tiny receive buffer that
    // nobody reads), while her desktop keeps up.
    let mut phone = Client::connect_small_buffer(&s.ws_url("/ws")).await;
    phone
        .login_as(json!({"msgType": 2, "sendUserId": "carol", "roomId": "r"}))
        .await;
    // About 4 MB: more than the kernel buffers between server and phone
    // hold, in 64 frames (its queue holds 1,024: it never fills).
    let (mut desk, mut dave) = desk_gets_daves_burst(&s, 64).await;
    // The phone's app still sends its heartbeat: silence does not close it.
    let beat = tokio::spawn(async move {
        for _ in 0..40 {
            phone.send_text("ping").await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        phone
    });
    let took = metric_reaches(
        &s,
        r#"rtgate_write_stalls_total{transport="websocket"}"#,
        1.0,
        Duration::from_secs(8),
    )
    .await;
    let m = s.metrics().await;
    assert_eq!(
        m.get(r#"rtgate_closes_total{reason="slow_consumer"}"#),
        Some(&1.0),
        "closed 4008 after {took:?}"
    );
    let timeouts = m.get(r#"rtgate_closes_total{reason="timeout"}"#);
    assert_eq!(
        timeouts.copied().unwrap_or(0.0),
        0.0,
        "not closed for silence"
    );
    // Her desktop and the room go on.
    dave.send(&json!({"msgType": 3, "roomId": "r", "msgBody": {"n": "after"}}))
        .await;
    assert_eq!(desk.recv_type(3).await["msgBody"]["n"], "after");
    let (status, body) = s.http("GET", "/api/presence?userId=carol", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("carol"), "her desktop is online: {body}");
    beat.abort();
}

#[tokio::test]
async fn a_webtransport_reader_that_withholds_flow_control_is_closed_4008() {
    let s = server();
    // 256 KB of credit at first, then none.
    let (mut phone, status) =
        WtClient::connect_args(&wt_url(&s, "/wt"), &["--window", "262144"]).await;
    assert_eq!(status, 200);
    phone
        .send(&json!({"msgType": 2, "sendUserId": "carol", "roomId": "r"}))
        .await;
    assert_eq!(phone.recv().await["msgType"], 2);
    phone.withhold_credit().await;
    let (mut desk, mut dave) = desk_gets_daves_burst(&s, 16).await;
    // The session is closed with 4008: the close capsule and QUIC's code.
    let started = Instant::now();
    assert_eq!(phone.expect_closed().await, 4008);
    let m = s.metrics().await;
    assert_eq!(
        m.get(r#"rtgate_write_stalls_total{transport="webtransport"}"#),
        Some(&1.0),
        "closed after {:?}",
        started.elapsed()
    );
    dave.send(&json!({"msgType": 3, "roomId": "r", "msgBody": {"n": "after"}}))
        .await;
    assert_eq!(desk.recv_type(3).await["msgBody"]["n"], "after");
}

/// Issue 26, item 4: a reader that falls behind on a "latest value wins"
/// stream (a position, a cursor) gets the newest value when it reads
/// again, not a backlog: once the sockets' buffers are full, a newer update
/// takes an older one's place in its queue, so the queue never fills and
/// the session is not closed.
#[tokio::test]
async fn a_slow_reader_of_a_position_stream_gets_the_newest_value_not_a_backlog() {
    let s = Server::start(&[
        "--outbound-queue",
        "16",
        "--heartbeat-sec",
        "30",
        "--rate-limit",
        "0",
        "--user-rate-limit",
        "0",
    ]);
    let mut map = Client::connect_small_buffer(&s.ws_url("/ws")).await;
    map.login_as(json!({"msgType": 2, "sendUserId": "map", "roomId": "r"}))
        .await;
    let mut car = Client::connect(&s.ws_url("/ws")).await;
    car.login_as(json!({"msgType": 2, "sendUserId": "car", "roomId": "r"}))
        .await;
    // The map does not read while the car reports 4,000 positions (about
    // 8 MB: more than the kernel's buffers between them hold, whatever
    // they grow to; tcp_wmem's maximum is 4 MB by default).
    let pad = "x".repeat(2_000);
    for n in 0..4_000 {
        car.send(&json!({"msgType": 3, "roomId": "r", "volatile": true, "latest": "pos", "msgBody": {"n": n, "pad": pad}}))
            .await;
    }
    car.send(&json!({"msgType": 1})).await;
    car.recv_type(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It reads again: fewer than 4,000, in order, ending with the newest.
    let mut got = Vec::new();
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(700), map.recv_type(3)).await {
        got.push(m["msgBody"]["n"].as_u64().unwrap());
        if got.last() == Some(&3_999) {
            break;
        }
    }
    assert_eq!(got.last(), Some(&3_999), "the newest position arrives");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "newer only");
    assert!(
        got.len() < 3_000,
        "{} updates: no backlog skipped",
        got.len()
    );
    let m = s.metrics().await;
    assert_eq!(
        m.get(r#"rtgate_closes_total{reason="slow_consumer"}"#)
            .copied()
            .unwrap_or(0.0),
        0.0,
        "the queue never filled"
    );
}
