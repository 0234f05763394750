//! Cluster mode against a real redis-server: several nodes, users on
//! different nodes and transports, presence, the shared store, Redis
//! restarts and node kills.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, End, Server};
use crate::redis_server::RedisServer;
use crate::wt_client::WtClient;

fn node(redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--presence-ttl-sec", "2"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn ws_on_one_node_and_wt_on_another_talk_directly_and_in_rooms() {
    let redis = RedisServer::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let (mut alice, ra) = Client::login(&a, "alice").await;
    let (mut bob, rb) = WtClient::login(&b, "bob").await;
    assert_ne!(ra["nodeId"], rb["nodeId"]);
    alice
        .send(
            &json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "a->b", "clientMsgId": "1"}),
        )
        .await;
    let ack = alice.recv_type(4).await;
    let m = bob.recv_type(3).await;
    assert_eq!(
        (m["msgBody"].as_str(), m["seq"].as_i64()),
        (Some("a->b"), Some(1))
    );
    assert_eq!(m["msgId"], ack["msgId"]);
    bob.send(&json!({"msgType": 3, "receivedUserId": "alice", "msgBody": "b->a"}))
        .await;
    assert_eq!(alice.recv_type(3).await["msgBody"], "b->a");
    // Rooms across nodes and transports.
    alice.send(&json!({"msgType": 5, "roomId": "x"})).await;
    alice.recv_type(5).await;
    bob.send(&json!({"msgType": 5, "roomId": "x"})).await;
    bob.recv_type(5).await;
    let (mut carol, _) = Client::login(&b, "carol").await;
    carol.send(&json!({"msgType": 5, "roomId": "x"})).await;
    carol.recv_type(5).await;
    alice
        .send(&json!({"msgType": 3, "roomId": "x", "msgBody": "to the room"}))
        .await;
    assert_eq!(bob.recv_type(3).await["msgBody"], "to the room");
    assert_eq!(carol.recv_type(3).await["msgBody"], "to the room");
    bob.send(&json!({"msgType": 3, "roomId": "x", "msgBody": "from wt on b"}))
        .await;
    assert_eq!(alice.recv_type(3).await["msgBody"], "from wt on b");
    assert_eq!(carol.recv_type(3).await["msgBody"], "from wt on b");
    // Presence is cluster-wide, on the socket and in the API.
    alice.send(&json!({"msgType": 8, "roomId": "x"})).await;
    assert_eq!(
        alice.recv_type(8).await["userIds"],
        json!(["alice", "bob", "carol"])
    );
    alice
        .send(&json!({"msgType": 8, "userIds": ["carol", "nobody", "bob"]}))
        .await;
    assert_eq!(alice.recv_type(8).await["userIds"], json!(["carol", "bob"]));
    let (status, body) = a.http("GET", "/api/presence?roomId=x", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["userIds"],
        json!(["alice", "bob", "carol"])
    );
    // Volatile messages cross nodes too (as a datagram to the WT user).
    alice
        .send(
            &json!({"msgType": 3, "receivedUserId": "bob", "volatile": true, "msgBody": "typing"}),
        )
        .await;
    assert_eq!(bob.recv_datagram().await["msgBody"], "typing");
}

#[tokio::test]
async fn an_offline_message_sent_on_one_node_arrives_at_login_on_another() {
    let redis = RedisServer::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let (mut alice, _) = Client::login(&a, "alice").await;
    for i in 1..=3 {
        alice
            .send(&json!({"msgType": 3, "receivedUserId": "dora", "msgBody": i}))
            .await;
        alice.recv_type(4).await;
    }
    let (mut dora, reply) = Client::login(&b, "dora").await;
    assert_eq!(reply["inboxSeq"], 3);
    for i in 1..=3 {
        assert_eq!(dora.recv().await["msgBody"], i);
    }
    // The API on either node publishes into the cluster.
    let (status, _) = b
        .http(
            "POST",
            "/api/publish",
            &[],
            r#"{"receivedUserId":"dora","msgBody":"api"}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dora.recv().await["msgBody"], "api");
    // Dedupe is shared: a resend through another node gets the same ack.
    let m =
        json!({"msgType": 3, "receivedUserId": "dora", "msgBody": "once", "clientMsgId": "same"});
    alice.send(&m).await;
    let first = alice.recv_type(4).await;
    let (mut alice_b, _) = Client::login(&b, "alice").await;
    alice_b.send(&m).await;
    assert_eq!(alice_b.recv_type(4).await["msgId"], first["msgId"]);
    assert_eq!(dora.recv().await["msgBody"], "once");
    dora.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn concurrent_senders_on_two_nodes_keep_seq_order() {
    let redis = RedisServer::start();
    let a = node(&redis, &["--rate-limit", "0", "--user-rate-limit", "0"]);
    let b = node(&redis, &["--rate-limit", "0", "--user-rate-limit", "0"]);
    let mut reader = Client::connect(&a.ws_url("/ws")).await;
    reader
        .login_as(json!({"msgType": 2, "sendUserId": "reader", "roomId": "order"}))
        .await;
    let mut tasks = Vec::new();
    for (n, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let mut c = Client::connect(&server.ws_url("/ws")).await;
        c.login_as(json!({"msgType": 2, "sendUserId": format!("s{n}"), "roomId": "order"}))
            .await;
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                c.send(&json!({"msgType": 3, "roomId": "order", "msgBody": {"n": n, "i": i}}))
                    .await;
            }
            c
        }));
    }
    let mut last = [None::<u64>; 4];
    for expect in 1..=200u64 {
        let m = reader.recv().await;
        assert_eq!(m["seq"].as_u64(), Some(expect), "{m}");
        let n = m["msgBody"]["n"].as_u64().unwrap() as usize;
        let i = m["msgBody"]["i"].as_u64().unwrap();
        assert_eq!(last[n].map_or(0, |l| l + 1), i);
        last[n] = Some(i);
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_redis_restart_loses_no_acked_message_and_routing_resumes() {
    let mut redis = RedisServer::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let (mut alice, _) = Client::login(&a, "alice").await;
    let (mut bob, _) = Client::login(&b, "bob").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": 0, "clientMsgId": "m0"}))
        .await;
    alice.recv_type(4).await;
    assert_eq!(bob.recv().await["msgBody"], 0);

    let restart = tokio::task::spawn_blocking(move || {
        redis.restart_after(Duration::from_secs(1));
        redis
    });
    // Keep sending through the outage; remember what was acked.
    let mut acked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut i = 1;
    while tokio::time::Instant::now() < deadline && acked.len() < 5 {
        alice.send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": i, "clientMsgId": format!("m{i}")})).await;
        let r = match alice.next_json_or_end().await {
            Ok(r) => r,
            Err(end) => {
                // Back from the outage, the node tells its sessions to
                // resync; the client resumes (and resends, deduped).
                assert_eq!(end, End::Closed(1001), "resync is a 1001 close");
                alice = Client::login_retrying(&a, "alice").await.0;
                continue;
            }
        };
        if r["msgType"] == 4 {
            acked.push(r["msgId"].as_str().unwrap().to_string());
            i += 1;
        } else {
            assert_eq!(
                r["code"], 503,
                "an outage is a 503, never a silent drop: {r}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let _redis = restart.await.unwrap();
    assert_eq!(acked.len(), 5, "routing resumed after the restart");
    // Both nodes stayed up; bob's session, which may have missed what was
    // published while its node was not subscribed, was told to resync.
    assert_eq!(bob.expect_end().await, End::Closed(1001));
    // bob gets every acked message, live or, after a reconnect, by replay.
    let (mut bob2, _) = Client::login_retrying(&b, "bob").await;
    bob2.send(&json!({"msgType": 7, "since": 0, "limit": 100}))
        .await;
    let h = bob2.recv_type(7).await;
    let stored: Vec<String> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msgId"].as_str().unwrap().to_string())
        .collect();
    for id in &acked {
        assert!(
            stored.contains(id),
            "acked {id} missing after the redis restart"
        );
    }
    // Live routing works again between the nodes.
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "after"}))
        .await;
    loop {
        let m = bob2.recv().await;
        if m["msgBody"] == "after" {
            break;
        }
    }
}

#[tokio::test]
async fn without_redis_readiness_and_sends_fail_fast_and_sessions_resync_after() {
    let mut redis = RedisServer::start();
    let a = node(&redis, &[]);
    let (mut alice, _) = Client::login(&a, "alice").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": 0, "clientMsgId": "m0"}))
        .await;
    alice.recv_type(4).await;
    redis.kill();
    // A send right away fails fast: 503 with its clientMsgId from the store's
    // deadline, or the node has already noticed the outage and told the
    // session to resync (close 1001); either way well within a second or two.
    let t = std::time::Instant::now();
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": 1, "clientMsgId": "down1"}))
        .await;
    let end = match alice.next_json_or_end().await {
        Ok(e) => {
            assert_eq!(
                (e["code"].as_i64(), e["clientMsgId"].as_str()),
                (Some(503), Some("down1")),
                "{e}"
            );
            assert!(
                t.elapsed() < Duration::from_millis(1500),
                "a send took {:?}",
                t.elapsed()
            );
            alice.expect_end().await
        }
        Err(end) => end,
    };
    assert_eq!(
        end,
        End::Closed(1001),
        "sessions are told to resync when Redis goes"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "resync took {:?}",
        t.elapsed()
    );
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (status, body) = a.http("GET", "/readyz", &[], "").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "/readyz took {:?}",
            t.elapsed()
        );
    }
    // While Redis is down no session can miss anything: logins are refused
    // at once.
    let t = std::time::Instant::now();
    let mut c = Client::connect(&a.ws_url("/ws")).await;
    c.send(&json!({"msgType": 2, "sendUserId": "carol"})).await;
    assert_eq!(c.recv().await["code"], 503);
    assert_eq!(c.expect_end().await, End::Closed(1001));
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "a refused login took {:?}",
        t.elapsed()
    );
    redis.spawn();
    let (mut alice, _) = Client::login_retrying(&a, "alice").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": 1, "clientMsgId": "down1"}))
        .await;
    assert_eq!(alice.recv_type(4).await["seq"], 2);
    let m = a.metrics().await;
    assert!(m.get("rtgate_broker_resyncs_total").copied().unwrap_or(0.0) >= 1.0);
}

#[tokio::test]
async fn a_killed_node_ages_out_and_its_users_resume_elsewhere() {
    let redis = RedisServer::start();
    let a = node(&redis, &[]);
    let b = node(&redis, &[]);
    let (mut carol, _) = Client::login(&a, "carol").await;
    let (mut dave, _) = Client::login(&b, "dave").await;
    dave.send(&json!({"msgType": 3, "receivedUserId": "carol", "msgBody": 1}))
        .await;
    let first = carol.recv().await;
    assert_eq!(first["seq"], 1);
    // Node a dies; carol is offline while dave keeps writing.
    drop(a.kill_keep_data());
    for i in 2..=4 {
        dave.send(&json!({"msgType": 3, "receivedUserId": "carol", "msgBody": i, "clientMsgId": format!("d{i}")})).await;
        dave.recv_type(4).await;
    }
    // Her presence ages out (TTL 2 s here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    dave.send(&json!({"msgType": 8, "userIds": ["carol", "dave"]}))
        .await;
    assert_eq!(dave.recv_type(8).await["userIds"], json!(["dave"]));
    // She reconnects to b and resumes after what she had.
    let mut carol = Client::connect(&b.ws_url("/ws")).await;
    carol
        .login_as(json!({"msgType": 2, "sendUserId": "carol", "since": {"inbox": 1}}))
        .await;
    for i in 2..=4 {
        assert_eq!(carol.recv().await["msgBody"], i);
    }
}

#[test]
fn an_unreachable_redis_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let err = crate::common::refuses_to_start(&[
        "--http",
        "127.0.0.1:0",
        "--wt",
        "127.0.0.1:0",
        "--redis",
        &url,
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    assert!(err.contains("redis"), "{err}");
}

#[tokio::test]
async fn nginx_one_and_two_layers_in_front_of_two_nodes() {
    use crate::nginx::{Nginx, recipe};
    let redis = RedisServer::start();
    let url = redis.url();
    let start = |log: &std::path::Path| {
        Server::start_logged(
            tempfile::tempdir().unwrap(),
            &[
                "--redis",
                &url,
                "--trusted-proxy",
                "127.0.0.1/32",
                "--log-format",
                "json",
            ],
            &[("RUST_LOG", "info")],
            Some(log),
        )
    };
    let logs = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let a = start(&log_a);
    let b = start(&log_b);
    let upstream = format!(
        "upstream rtgate {{ server {}; server {}; }}",
        a.http, b.http
    );

    // One layer: the edge recipe straight in front of the nodes.
    let one = Nginx::start(&format!(
        "{upstream}\nserver {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://rtgate; include {}; }} }}",
        recipe("edge-location.conf")
    ));
    let via = |port: u16| format!("ws://127.0.0.1:{port}/ws");
    let mut alice = Client::connect(&via(one.port)).await;
    let ra = alice
        .login_as(json!({"msgType": 2, "sendUserId": "alice"}))
        .await;
    let mut bob = Client::connect(&via(one.port)).await;
    let rb = bob
        .login_as(json!({"msgType": 2, "sendUserId": "bob"}))
        .await;
    assert_ne!(
        ra["nodeId"], rb["nodeId"],
        "round robin put them on different nodes"
    );
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "through nginx"}))
        .await;
    assert_eq!(bob.recv_type(3).await["msgBody"], "through nginx");
    alice.recv_type(4).await;
    alice.send_text("ping").await;
    assert_eq!(alice.recv_text().await, "pong");

    // Two layers: edge -> inner -> nodes. A client's forged X-Forwarded-For
    // is dropped by the edge, so rtgate sees the address the edge saw.
    let inner = Nginx::start(&format!(
        "{upstream}\nserver {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://rtgate; include {}; }} }}",
        recipe("inner-location.conf")
    ));
    let edge = Nginx::start(&format!(
        "upstream inner {{ server 127.0.0.1:{}; }}\nserver {{ listen 127.0.0.1:PORT; location / {{ proxy_pass http://inner; include {}; }} }}",
        inner.port,
        recipe("edge-location.conf")
    ));
    let mut carol =
        Client::connect_with_headers(&via(edge.port), &[("x-forwarded-for", "203.0.113.9")])
            .await
            .unwrap();
    carol
        .login_as(json!({"msgType": 2, "sendUserId": "carol"}))
        .await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "carol", "msgBody": "two layers"}))
        .await;
    assert_eq!(carol.recv_type(3).await["msgBody"], "two layers");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = std::fs::read_to_string(&log_a).unwrap() + &std::fs::read_to_string(&log_b).unwrap();
    let carol_login = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "logged in" && v["span"]["user"] == "carol")
        .expect("carol's login is logged");
    let peer = carol_login["span"]["peer"].as_str().unwrap();
    assert!(
        peer.starts_with("127.0.0.1:"),
        "the forged address was not believed: {peer}"
    );
    assert!(!logs.contains("203.0.113.9"));
}

#[tokio::test]
async fn readiness_follows_redis_and_a_drained_node_leaves_presence_at_once() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    // A long TTL: only an explicit leave can clear presence within the test.
    let mut a = Server::start(&["--redis", &url, "--presence-ttl-sec", "60"]);
    let b = Server::start(&["--redis", &url, "--presence-ttl-sec", "60"]);
    assert_eq!(a.http("GET", "/readyz", &[], "").await.0, 200);
    let (mut erin, _) = Client::login(&a, "erin").await;
    let (mut frank, _) = Client::login(&b, "frank").await;
    frank
        .send(&json!({"msgType": 8, "userIds": ["erin"]}))
        .await;
    assert_eq!(frank.recv_type(8).await["userIds"], json!(["erin"]));

    redis.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = a.http("GET", "/readyz", &[], "").await;
        if status == 503 {
            assert!(body.contains("unavailable"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never noticed redis was gone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    redis.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while a.http("GET", "/readyz", &[], "").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never recovered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both sessions are told to resync (their nodes may have missed
    // envelopes) and come back; Redis came back without the presence it
    // had (its AOF kept only what was written), and it is written again.
    assert_eq!(erin.expect_end().await, End::Closed(1001));
    assert_eq!(frank.expect_end().await, End::Closed(1001));
    let (_erin, _) = Client::login_retrying(&a, "erin").await;
    let (mut frank, _) = Client::login_retrying(&b, "frank").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        frank
            .send(&json!({"msgType": 8, "userIds": ["erin"]}))
            .await;
        if frank.recv_type(8).await["userIds"] == json!(["erin"]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "presence was not rewritten after the restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // SIGTERM: node a drains and removes its users from the presence at once.
    let status = tokio::task::spawn_blocking(move || a.terminate())
        .await
        .unwrap();
    assert!(status.success());
    frank
        .send(&json!({"msgType": 8, "userIds": ["erin"]}))
        .await;
    assert_eq!(
        frank.recv_type(8).await["userIds"],
        json!([]),
        "well before the 60 s TTL"
    );
}

#[tokio::test]
async fn a_redis_cluster_with_sharded_pubsub_routes_between_nodes() {
    let rc = crate::redis_server::RedisCluster::start();
    let urls = rc.urls();
    let args = [
        "--redis",
        urls.as_str(),
        "--redis-cluster",
        "--presence-ttl-sec",
        "5",
    ];
    let a = Server::start(&args);
    let b = Server::start(&args);
    let (mut alice, _) = Client::login(&a, "alice").await;
    let (mut alice2, _) = Client::login(&b, "alice").await;
    let (mut bob, _) = WtClient::login(&b, "bob").await;
    // Direct, both ways, and the sender's copy on her other node.
    alice.send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "sharded", "clientMsgId": "s1"})).await;
    let ack = alice.recv_type(4).await;
    assert_eq!(bob.recv_type(3).await["msgId"], ack["msgId"]);
    let copy = alice2.recv_type(3).await;
    assert_eq!(
        (copy["msgId"].clone(), copy.get("seq").is_none()),
        (ack["msgId"].clone(), true)
    );
    bob.send(&json!({"msgType": 3, "receivedUserId": "alice", "msgBody": "back"}))
        .await;
    assert_eq!(alice.recv_type(3).await["msgBody"], "back");
    // Many rooms, so their keys and channels land on different shards.
    for i in 0..20 {
        let room = format!("room{i}");
        alice.send(&json!({"msgType": 5, "roomId": room})).await;
        alice.recv_type(5).await;
        bob.send(&json!({"msgType": 5, "roomId": room})).await;
        bob.recv_type(5).await;
        bob.send(&json!({"msgType": 3, "roomId": room, "msgBody": i}))
            .await;
        let m = alice.recv_type(3).await;
        assert_eq!(
            (m["roomId"].as_str(), m["seq"].as_i64()),
            (Some(room.as_str()), Some(1))
        );
    }
    // Offline delivery and presence work through the cluster too.
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "carol", "msgBody": "later"}))
        .await;
    alice.recv_type(4).await;
    let (mut carol, reply) = Client::login(&a, "carol").await;
    assert_eq!(reply["inboxSeq"], 1);
    assert_eq!(carol.recv().await["msgBody"], "later");
    carol
        .send(&json!({"msgType": 8, "userIds": ["alice", "bob", "nobody"]}))
        .await;
    assert_eq!(carol.recv_type(8).await["userIds"], json!(["alice", "bob"]));
    // The data is spread over the shards.
    let shards_used = rc.ports.iter().filter(|p| rc.dbsize(**p) > 0).count();
    assert!(shards_used >= 2, "keys on {shards_used} shard(s)");
}

/// Sends direct messages to bob with eight in flight while the replication
/// link is broken and the primary is killed; promotes the replica and
/// serves from it. Returns (acked, acked but lost).
async fn failover_under_load(wait_replicas: &str) -> (usize, usize) {
    let mut primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let a = node(
        &primary,
        &[
            "--redis-wait-replicas",
            wait_replicas,
            "--rate-limit",
            "0",
            "--user-rate-limit",
            "0",
        ],
    );
    let (alice, _) = Client::login(&a, "alice").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let sender = tokio::spawn(async move {
        let mut alice = alice;
        let mut acked = Vec::new();
        let (mut sent, mut inflight) = (0u32, 0);
        loop {
            let done = stopped.load(std::sync::atomic::Ordering::Relaxed);
            if done && inflight == 0 {
                return acked;
            }
            while inflight < 8 && !done {
                alice
                    .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": sent, "clientMsgId": format!("f{sent}")}))
                    .await;
                sent += 1;
                inflight += 1;
            }
            let Ok(Ok(r)) =
                tokio::time::timeout(Duration::from_secs(3), alice.next_json_or_end()).await
            else {
                return acked;
            };
            match r["msgType"].as_i64() {
                Some(4) => {
                    inflight -= 1;
                    acked.push(r["msgId"].as_str().unwrap().to_string());
                }
                Some(9) => inflight -= 1,
                _ => {}
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The replica falls behind (as over a slow link), then the primary dies.
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    // The replication link breaks (the primary drops its replica, which is
    // stopped and cannot reconnect), the primary keeps taking writes for a
    // moment, then dies.
    signal("-STOP", replica.pid().unwrap());
    let dropped = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &primary.port.to_string(),
            "client",
            "kill",
            "type",
            "replica",
        ])
        .output()
        .unwrap();
    assert!(dropped.status.success());
    tokio::time::sleep(Duration::from_millis(600)).await;
    primary.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    signal("-CONT", replica.pid().unwrap());
    let acked = sender.await.unwrap();
    replica.promote();
    let b = node(&replica, &[]);
    let (mut bob, reply) = Client::login(&b, "bob").await;
    let latest = reply["inboxSeq"].as_u64().unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut since = 0;
    while since < latest {
        bob.send(&json!({"msgType": 7, "since": since, "limit": 100}))
            .await;
        let h = bob.recv_type(7).await;
        for m in h["messages"].as_array().unwrap() {
            stored.insert(m["msgId"].as_str().unwrap().to_string());
            since = m["seq"].as_u64().unwrap();
        }
    }
    let lost = acked.iter().filter(|id| !stored.contains(*id)).count();
    (acked.len(), lost)
}

#[tokio::test]
async fn without_waiting_for_replicas_a_failover_loses_acked_messages() {
    let (acked, lost) = failover_under_load("0").await;
    assert!(acked > 0);
    assert!(
        lost > 0,
        "the lagging replica had every acked message: {acked} acked"
    );
}

#[tokio::test]
async fn a_failover_to_a_replica_keeps_every_acked_message_when_acks_wait_for_it() {
    let (acked, lost) = failover_under_load("1").await;
    assert!(acked > 0, "nothing was acked before the failover");
    assert_eq!(
        lost, 0,
        "{lost} of {acked} acked messages lost in the failover"
    );
}

#[tokio::test]
async fn a_channel_reset_in_redis_is_reported_to_a_client_that_resumes_past_it() {
    let redis = RedisServer::start();
    let a = node(&redis, &["--retention-sec", "1"]);
    let (mut alice, _) = Client::login(&a, "alice").await;
    for i in 0..2 {
        alice
            .send(&json!({"msgType": 3, "receivedUserId": "ghost", "clientMsgId": format!("g{i}"), "msgBody": i}))
            .await;
        alice.recv_type(4).await;
    }
    // Idle past the retention age, the channel's log and seq expire.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    crate::common::reset_is_reported_and_replayed(&a, &mut alice).await;
}

/// Sends one direct message to bob until it gets an answer, logging in again
/// when the node told the session to resync. Answers the reply (ack or error).
async fn send_answered(a: &Server, alice: &mut Client, body: &str) -> Value {
    for _ in 0..20 {
        alice
            .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": body, "clientMsgId": body}))
            .await;
        let t = std::time::Instant::now();
        loop {
            match alice.next_json_or_end().await {
                // The answer to this send carries its clientMsgId; an error
                // without one (a re-login's "replay incomplete" while the
                // cluster fails over) is not it.
                Ok(r) if (r["msgType"] == 4 || r["msgType"] == 9) && r["clientMsgId"] == body => {
                    assert!(
                        t.elapsed() < Duration::from_secs(2),
                        "an answer took {:?}",
                        t.elapsed()
                    );
                    return r;
                }
                Ok(_) => {}
                Err(_) => {
                    *alice = Client::login_retrying(a, "alice").await.0;
                    break;
                }
            }
        }
    }
    panic!("{body} was never answered")
}

#[tokio::test]
async fn a_redis_cluster_failover_keeps_every_acked_message_when_acks_wait_for_a_replica() {
    let mut rc = crate::redis_server::RedisCluster::start_with_replicas(1);
    let urls = rc.urls();
    let a = Server::start(&[
        "--redis",
        urls.as_str(),
        "--redis-cluster",
        "--redis-wait-replicas",
        "1",
        "--presence-ttl-sec",
        "5",
    ]);
    let (mut alice, _) = Client::login_retrying(&a, "alice").await;
    let mut acked = Vec::new();
    for i in 0..10 {
        let r = send_answered(&a, &mut alice, &format!("before{i}")).await;
        assert_eq!(r["msgType"], 4, "{r}");
        acked.push(r["msgId"].as_str().unwrap().to_string());
    }
    // The master of bob's inbox dies; the cluster promotes its replica.
    let key = "rtgate:{i:bob}:seq";
    let old = rc.master_of(key);
    rc.kill(old);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rc.master_of_or_none(key).is_none_or(|p| p == old) {
        assert!(
            std::time::Instant::now() < deadline,
            "no replica was promoted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new master has no replica yet: a send is stored on it but cannot be
    // acked; it is refused fast with 503, never acked, never hung.
    let mut refused = None;
    for i in 0..40 {
        let body = format!("lonely{i}");
        let r = send_answered(&a, &mut alice, &body).await;
        if r["msgType"] == 4 {
            panic!("acked without a replica: {r}");
        }
        assert_eq!(
            (r["code"].as_i64(), r["clientMsgId"].as_str()),
            (Some(503), Some(body.as_str())),
            "{r}"
        );
        if r["reason"].as_str().unwrap_or("").contains("replica") {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let refused = refused.expect("sends during the failover were refused for want of a replica");
    // The old master comes back as the new master's replica; the refused
    // message, sent again with its clientMsgId, is acked now.
    rc.spawn(old);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = send_answered(&a, &mut alice, &refused).await;
        if r["msgType"] == 4 {
            acked.push(r["msgId"].as_str().unwrap().to_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never acked again: {r}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every acked message is in bob's inbox, in seq order without a gap.
    let (mut bob, reply) = Client::login_retrying(&a, "bob").await;
    let latest = reply["inboxSeq"].as_u64().unwrap();
    let mut stored = Vec::new();
    while (stored.len() as u64) < latest {
        bob.send(&json!({"msgType": 7, "since": stored.len(), "limit": 100}))
            .await;
        let h = bob.recv_type(7).await;
        let page = h["messages"].as_array().unwrap();
        assert!(!page.is_empty(), "history stopped at {}", stored.len());
        for m in page {
            assert_eq!(m["seq"].as_u64(), Some(stored.len() as u64 + 1), "{m}");
            stored.push(m["msgId"].as_str().unwrap().to_string());
        }
    }
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acked but lost in the failover: {lost:?}");
}
