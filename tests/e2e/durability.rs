//! The durable store through the real binary: acks survive kill -9, order
//! holds under concurrent senders, replay races live traffic without gaps or
//! duplicates, and a broken data folder is a clear error at start.

use std::time::Duration;

use serde_json::json;

use crate::common::{Client, Server, refuses_to_start};

#[tokio::test]
async fn an_acked_message_survives_kill_9() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    for i in 1..=20 {
        a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": i, "clientMsgId": format!("k{i}")})).await;
    }
    // Wait for the last ack, then kill the node at once.
    loop {
        if a.recv_type(4).await["clientMsgId"] == "k20" {
            break;
        }
    }
    let data = s.kill_keep_data();
    let s = Server::start_in(data, &[], &[]);
    let (mut b, reply) = Client::login(&s, "b").await;
    assert_eq!(reply["inboxSeq"], 20);
    for i in 1..=20 {
        let m = b.recv().await;
        assert_eq!(
            (m["seq"].as_i64(), m["msgBody"].as_i64()),
            (Some(i), Some(i))
        );
    }
    // Dedupe survives the restart too.
    let (mut a, _) = Client::login(&s, "a").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": 20, "clientMsgId": "k20"}))
        .await;
    assert_eq!(a.recv_type(4).await["seq"], 20);
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn concurrent_senders_are_seen_in_seq_order_and_sender_order() {
    let s = Server::start(&["--rate-limit", "0", "--user-rate-limit", "0"]);
    let mut reader = Client::connect(&s.ws_url("/ws")).await;
    reader
        .login_as(json!({"msgType": 2, "sendUserId": "reader", "roomId": "race"}))
        .await;
    const SENDERS: usize = 4;
    const EACH: usize = 50;
    let mut tasks = Vec::new();
    for n in 0..SENDERS {
        let mut c = Client::connect(&s.ws_url("/ws")).await;
        c.login_as(json!({"msgType": 2, "sendUserId": format!("s{n}"), "roomId": "race"}))
            .await;
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                c.send(&json!({"msgType": 3, "roomId": "race", "msgBody": {"from": n, "i": i}}))
                    .await;
            }
            c
        }));
    }
    let mut last_from = [None::<u64>; SENDERS];
    for expect in 1..=(SENDERS * EACH) as u64 {
        let m = reader.recv().await;
        assert_eq!(
            m["seq"].as_u64(),
            Some(expect),
            "seq grows by exactly 1: {m}"
        );
        let from = m["msgBody"]["from"].as_u64().unwrap() as usize;
        let i = m["msgBody"]["i"].as_u64().unwrap();
        assert_eq!(
            last_from[from].map_or(0, |l| l + 1),
            i,
            "each sender's order is kept"
        );
        last_from[from] = Some(i);
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn replay_racing_live_traffic_has_no_gap_and_no_duplicate() {
    let s = Server::start(&["--rate-limit", "0", "--user-rate-limit", "0"]);
    let (mut sender, _) = Client::login(&s, "sender").await;
    const N: u64 = 400;
    let send = tokio::spawn(async move {
        for i in 1..=N {
            sender
                .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": i}))
                .await;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        sender
    });
    // Log in while the messages are flowing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut bob = Client::connect(&s.ws_url("/ws")).await;
    bob.login_as(json!({"msgType": 2, "sendUserId": "bob", "since": {"inbox": 0}}))
        .await;
    for expect in 1..=N {
        let m = bob.recv().await;
        assert_eq!(m["seq"].as_u64(), Some(expect), "{m}");
    }
    bob.expect_silence(Duration::from_millis(300)).await;
    send.await.unwrap();
}

#[tokio::test]
async fn trimmed_history_is_reported_unrecovered() {
    let s = Server::start(&["--retention-count", "2"]);
    let (mut a, _) = Client::login(&s, "a").await;
    for i in 1..=5 {
        a.send(&json!({"msgType": 3, "receivedUserId": "gone", "msgBody": i}))
            .await;
        a.recv_type(4).await;
    }
    // Retention trims in the background, about once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut b = Client::connect(&s.ws_url("/ws")).await;
        let reply = b
            .login_as(json!({"msgType": 2, "sendUserId": "gone", "since": {"inbox": 0}}))
            .await;
        if reply["unrecovered"] == json!(["inbox"]) {
            assert_eq!(b.recv().await["seq"], 4);
            assert_eq!(b.recv().await["seq"], 5);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never trimmed: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_corrupt_or_locked_data_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rtgate.db"), vec![7u8; 4096]).unwrap();
    let err = refuses_to_start(&[
        "--http",
        "127.0.0.1:0",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("corrupt") && err.contains("rtgate.db"),
        "{err}"
    );

    let s = Server::start(&[]);
    let err = refuses_to_start(&[
        "--http",
        "127.0.0.1:0",
        "--data",
        s.data.path().to_str().unwrap(),
    ]);
    assert!(err.contains("in use by another rtgate"), "{err}");
}

#[tokio::test]
async fn a_store_failure_at_run_time_is_503_and_readyz_says_so() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": 1, "clientMsgId": "first"}))
        .await;
    assert_eq!(a.recv_type(4).await["seq"], 1);
    // Another process takes the database's write lock and keeps it past the
    // store's busy timeout: commits fail.
    let db = s.data.path().join("rtgate.db");
    let blocker = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        conn
    })
    .await
    .unwrap();
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": 2, "clientMsgId": "second"}))
        .await;
    // The writer gives up after its 5 s busy timeout.
    let e: serde_json::Value =
        serde_json::from_str(&a.recv_text_within(Duration::from_secs(15)).await).unwrap();
    assert_eq!(e["msgType"], 9, "{e}");
    assert_eq!(
        (e["code"].as_i64(), e["clientMsgId"].as_str()),
        (Some(503), Some("second")),
        "{e}"
    );
    let (status, body) = s.http("GET", "/readyz", &[], "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("write failed"), "{body}");
    blocker.execute_batch("COMMIT").unwrap();
    // The resend with the same clientMsgId is stored and acked.
    a.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": 2, "clientMsgId": "second"}))
        .await;
    assert_eq!(a.recv_type(4).await["seq"], 2);
    assert_eq!(s.http("GET", "/readyz", &[], "").await.0, 200);
}

#[test]
fn an_unusable_data_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let err = refuses_to_start(&[
        "--http",
        "127.0.0.1:0",
        "--data",
        not_a_dir.to_str().unwrap(),
    ]);
    assert!(err.contains("data folder") && err.contains("file"), "{err}");
}
