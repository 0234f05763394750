//! Presence events (msgType 11): a user's first session joining a room and
//! last one leaving, on one node and across two, only for sessions that
//! asked with `"presenceEvents":true`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::redis_server::RedisServer;

async fn join(c: &mut Client, room: &str, events: bool) {
    c.send(&json!({"msgType": 5, "roomId": room, "presenceEvents": events}))
        .await;
    c.recv_type(5).await;
}

fn ev(room: &str, user: &str, event: &str) -> Value {
    json!({"msgType": 11, "roomId": room, "userId": user, "event": event})
}

#[tokio::test]
async fn first_join_and_last_leave_are_told_to_sessions_that_asked() {
    let s = Server::start(&[]);
    let (mut ann, _) = Client::login(&s, "ann").await;
    join(&mut ann, "lobby", true).await;
    assert_eq!(
        ann.recv_type(11).await,
        ev("lobby", "ann", "join"),
        "her own arrival"
    );
    let (mut quiet, _) = Client::login(&s, "quiet").await;
    join(&mut quiet, "lobby", false).await;
    assert_eq!(ann.recv_type(11).await, ev("lobby", "quiet", "join"));
    let (mut bob1, _) = Client::login(&s, "bob").await;
    let (mut bob2, _) = Client::login(&s, "bob").await;
    join(&mut bob1, "lobby", false).await;
    assert_eq!(ann.recv_type(11).await, ev("lobby", "bob", "join"));
    // Bob's second session and its leaving change nothing.
    join(&mut bob2, "lobby", false).await;
    bob1.send(&json!({"msgType": 6, "roomId": "lobby"})).await;
    bob1.recv_type(6).await;
    ann.expect_silence(Duration::from_millis(300)).await;
    // His last session going away is his leaving.
    bob2.close().await;
    assert_eq!(ann.recv_type(11).await, ev("lobby", "bob", "leave"));
    // A session that did not ask hears nothing of it.
    quiet.send(&json!({"msgType": 1})).await;
    assert_eq!(
        quiet.recv().await["msgType"],
        1,
        "no msgType 11 before the heartbeat answer"
    );
    // A login can ask for its rooms' events.
    let (mut cat, _) = {
        let mut c = Client::connect(&s.ws_url("/ws")).await;
        let r = c
            .login_as(json!({"msgType": 2, "sendUserId": "cat", "rooms": ["lobby"], "presenceEvents": true}))
            .await;
        (c, r)
    };
    assert_eq!(cat.recv_type(11).await, ev("lobby", "cat", "join"));
    assert_eq!(ann.recv_type(11).await, ev("lobby", "cat", "join"));
}

#[tokio::test]
async fn presence_events_count_a_users_sessions_on_every_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = Server::start(&["--redis", &url]);
    let b = Server::start(&["--redis", &url]);
    let (mut ann, _) = Client::login(&a, "ann").await;
    join(&mut ann, "ops", true).await;
    assert_eq!(ann.recv_type(11).await, ev("ops", "ann", "join"));
    let (mut bob_b, _) = Client::login(&b, "bob").await;
    join(&mut bob_b, "ops", false).await;
    assert_eq!(ann.recv_type(11).await, ev("ops", "bob", "join"));
    // Bob on the other node too: not a new arrival; leaving one node is not
    // leaving the room.
    let (mut bob_a, _) = Client::login(&a, "bob").await;
    join(&mut bob_a, "ops", false).await;
    bob_b.close().await;
    ann.expect_silence(Duration::from_millis(500)).await;
    bob_a.send(&json!({"msgType": 6, "roomId": "ops"})).await;
    bob_a.recv_type(6).await;
    assert_eq!(ann.recv_type(11).await, ev("ops", "bob", "leave"));
}
