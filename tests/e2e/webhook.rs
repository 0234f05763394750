//! The event webhook against the example backend: events arrive in signed
//! batches with unique ids; a backend that fails gets them again until it
//! takes them; a node killed while the backend is down delivers them after
//! its restart; in a cluster a user's presence is one user online and one
//! offline whatever the nodes.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server, WAIT};
use crate::hooks::{Backend, HOOK_SECRET};
use crate::redis_server::RedisServer;

/// Every event the backend took (answered 2xx), in the order it got them.
async fn taken(b: &Backend) -> Vec<Value> {
    b.calls("events")
        .await
        .into_iter()
        .filter(|c| c["status"].as_u64().is_some_and(|s| s < 300))
        .flat_map(|c| c["body"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Waits until `done` holds for the events the backend took.
async fn until(b: &Backend, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let events = taken(b).await;
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in the events taken: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let who = e["userId"]
                .as_str()
                .or(e["message"]["msgBody"].as_str())
                .unwrap_or("");
            format!("{} {who}", e["type"].as_str().unwrap())
        })
        .collect()
}

fn stored_bodies(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e["type"] == "message.stored")
        .map(|e| e["message"]["msgBody"].to_string())
        .collect()
}

fn node_with_events(b: &Backend, extra: &[&str]) -> Server {
    let url = b.url("events");
    let mut args = vec!["--event-hook", &url, "--hook-secret", HOOK_SECRET];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn events_arrive_signed_and_a_failing_backend_gets_them_again() {
    let b = Backend::start();
    let s = node_with_events(&b, &[]);
    let (mut ann, _) = Client::login(&s, "ann").await;
    ann.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    ann.recv_type(5).await;
    for n in 0..3 {
        ann.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": format!("m{n}"), "clientMsgId": format!("c{n}")}))
            .await;
        ann.recv_type(4).await;
    }
    ann.close().await;
    let events = until(&b, "ann's day", |e| {
        types(e).contains(&"user.offline ann".to_string())
    })
    .await;
    // Presence edges in the order they happened, messages in seq order;
    // the two kinds reach the outbox on their own paths.
    let kinds = types(&events);
    let edges: Vec<&String> = kinds.iter().filter(|t| !t.starts_with("message")).collect();
    assert_eq!(
        edges,
        [
            "user.online ann",
            "room.join ann",
            "room.leave ann",
            "user.offline ann"
        ]
    );
    let stored: Vec<&String> = kinds.iter().filter(|t| t.starts_with("message")).collect();
    assert_eq!(
        stored,
        [
            "message.stored m0",
            "message.stored m1",
            "message.stored m2"
        ]
    );
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
    let m0 = events
        .iter()
        .find(|e| e["type"] == "message.stored")
        .unwrap();
    assert_eq!(m0["message"]["roomId"], "lobby");
    assert!(b.calls("events").await.iter().all(|c| c["signed"] == true));

    // The backend fails for a while: the events wait and come again.
    b.behave(0, Some(500)).await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    bob.send(&json!({"msgType": 3, "receivedUserId": "ann", "msgBody": "while down", "clientMsgId": "d"}))
        .await;
    bob.recv_type(4).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused = b
        .calls("events")
        .await
        .iter()
        .filter(|c| c["status"] == 500)
        .count();
    assert!(refused >= 2, "retried while failing: {refused}");
    b.behave(0, None).await;
    let events = until(&b, "bob's message", |e| {
        stored_bodies(e).contains("\"while down\"")
    })
    .await;
    assert!(types(&events).contains(&"user.online bob".to_string()));
    let m = s.metrics().await;
    assert!(m["rtgate_event_batches_failed_total"] >= 2.0, "{m:?}");
}

#[tokio::test]
async fn events_of_a_node_killed_while_the_backend_was_down_arrive_after_its_restart() {
    let b = Backend::start();
    let url = b.url("events");
    let args = ["--event-hook", url.as_str(), "--hook-secret", HOOK_SECRET];
    let s = Server::start(&args);
    b.behave(0, Some(503)).await;
    let (mut ann, _) = Client::login(&s, "ann").await;
    for n in 0..5 {
        ann.send(&json!({"msgType": 3, "receivedUserId": "zoe", "msgBody": format!("k{n}"), "clientMsgId": format!("k{n}")}))
            .await;
        ann.recv_type(4).await;
    }
    let data = s.kill_keep_data();
    b.behave(0, None).await;
    let _again = Server::start_in(data, &args, &[]);
    let events = until(&b, "the five messages", |e| stored_bodies(e).len() == 5).await;
    let want: HashSet<String> = (0..5).map(|n| format!("\"k{n}\"")).collect();
    assert_eq!(stored_bodies(&events), want);
}

#[tokio::test]
async fn in_a_cluster_a_user_on_two_nodes_is_online_once_and_offline_once() {
    let redis = RedisServer::start();
    let rurl = redis.url();
    let b = Backend::start();
    let a = node_with_events(&b, &["--redis", &rurl]);
    let c = node_with_events(&b, &["--redis", &rurl]);
    let (mut on_a, _) = Client::login(&a, "ann").await;
    let (mut on_c, _) = Client::login(&c, "ann").await;
    on_a.send(&json!({"msgType": 3, "roomId": "r", "msgBody": "x"}))
        .await;
    on_a.recv_type(9).await; // not a member: nothing stored
    on_a.send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "hi", "clientMsgId": "h"}))
        .await;
    on_a.recv_type(4).await;
    on_a.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    on_c.close().await;
    let events = until(&b, "ann offline", |e| {
        types(e).contains(&"user.offline ann".to_string())
    })
    .await;
    // At least once: a batch may come twice; by id, each event once.
    let mut seen = HashSet::new();
    let unique: Vec<Value> = events
        .into_iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_string()))
        .collect();
    let mut kinds = types(&unique);
    kinds.sort();
    assert_eq!(
        kinds,
        ["message.stored hi", "user.offline ann", "user.online ann"],
        "{unique:#?}"
    );
}
