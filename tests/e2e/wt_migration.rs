//! Connection migration: a WebTransport client moves to a new UDP socket
//! mid-session (as a phone moving from Wi-Fi to mobile data) and its session
//! goes on without a new login, losing and duplicating nothing; a WebSocket
//! client on the same switch must reconnect, log in and replay.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Client, Server};
use crate::wt_client::WtClient;

#[tokio::test]
async fn a_webtransport_session_survives_a_change_of_client_address() {
    let s = Server::start(&[]);
    let (mut w, _) = Client::login(&s, "w").await;
    let (mut a, _) = WtClient::login(&s, "a").await;
    w.send(&json!({"msgType": 3, "receivedUserId": "a", "msgBody": "before", "clientMsgId": "b1"}))
        .await;
    w.recv_type(4).await;
    assert_eq!(a.recv_type(3).await["msgBody"], "before");

    let switched = Instant::now();
    let port = a.rebind().await;
    w.send(&json!({"msgType": 3, "receivedUserId": "a", "msgBody": "after", "clientMsgId": "a1"}))
        .await;
    w.recv_type(4).await;
    let m = a.recv_type(3).await;
    let wt_resume = switched.elapsed();
    assert_eq!(
        (m["msgBody"].as_str(), m["seq"].as_u64()),
        (Some("after"), Some(2))
    );
    // From the new address, a's own sends are acked and delivered.
    a.send(
        &json!({"msgType": 3, "receivedUserId": "w", "msgBody": "from port", "clientMsgId": "p1"}),
    )
    .await;
    assert_eq!(a.recv_type(4).await["clientMsgId"], "p1");
    assert_eq!(w.recv_type(3).await["msgBody"], "from port");
    // Still the same session: no second login, nothing delivered twice.
    a.send(&json!({"msgType": 1})).await;
    loop {
        let f = a.recv().await;
        assert!(
            f["msgType"] != 2 && f["msgType"] != 3,
            "after the move: {f}"
        );
        if f["msgType"] == 1 {
            break;
        }
    }
    let logins = s.metrics().await[r#"rtgate_logins_total{result="ok"}"#];
    assert_eq!(logins, 2.0, "w and a logged in once each");

    // A WebSocket client on the same switch: its TCP connection is gone; it
    // reconnects, logs in and replays what it missed.
    let (mut b, reply) = Client::login(&s, "b").await;
    let inbox = reply["inboxSeq"].as_u64().unwrap();
    let switched = Instant::now();
    drop(b);
    w.send(
        &json!({"msgType": 3, "receivedUserId": "b", "msgBody": "while away", "clientMsgId": "w1"}),
    )
    .await;
    w.recv_type(4).await;
    let mut c = Client::connect(&s.ws_url("/ws")).await;
    c.send(&json!({"msgType": 2, "sendUserId": "b", "since": {"inbox": inbox}}))
        .await;
    assert_eq!(c.recv_type(2).await["msgType"], 2);
    assert_eq!(c.recv_type(3).await["msgBody"], "while away");
    let ws_resume = switched.elapsed();
    b = c;
    b.close().await;
    eprintln!(
        "migration: WebTransport to port {port}, first delivery after {wt_resume:?}; \
         WebSocket reconnect, login and replay {ws_resume:?}"
    );
    assert!(wt_resume < Duration::from_secs(5), "{wt_resume:?}");
}
