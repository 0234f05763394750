//! Issue 28: receipts, read positions and unread counts, amendments
//! (edits, deletes, reactions) and typing, over both transports, across
//! nodes, and through a restart of the embedded store.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::redis_server::RedisServer;
use crate::wt_client::WtClient;

/// Sends a direct message and answers its ack.
async fn dm(from: &mut Client, to: &str, body: &str) -> Value {
    from.send(&json!({"msgType": 3, "receivedUserId": to, "msgBody": body}))
        .await;
    from.recv_type(4).await
}

/// The read state (msgType 13) `c` is answered for `frame`.
async fn read_state(c: &mut Client, frame: Value) -> Value {
    c.send(&frame).await;
    c.recv_type(13).await
}

/// Polls msgType 13 until `pred` holds (read positions are written in
/// batches, within a few hundred milliseconds).
async fn read_state_until(c: &mut Client, frame: Value, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        let r = read_state(c, frame.clone()).await;
        if pred(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the read state never got there");
}

#[tokio::test]
async fn receipts_reach_every_device_of_the_sender_merged_and_replay_to_it_offline() {
    let s = Server::start(&[]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut alice_phone, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    let one = dm(&mut alice, "bob", "one").await;
    let two = dm(&mut alice, "bob", "two").await;
    assert_eq!(bob.recv().await["msgId"], one["msgId"]);
    assert_eq!(bob.recv().await["msgId"], two["msgId"]);
    // Two delivered receipts within a second: one notice to alice.
    bob.send(&json!({"msgType": 12, "kind": "delivered", "msgIds": [one["msgId"]]}))
        .await;
    bob.send(&json!({"msgType": 12, "kind": "delivered", "msgIds": [two["msgId"], "no-such-id"]}))
        .await;
    let e = bob.recv_type(9).await;
    assert_eq!(e["code"], 404, "{e}");
    assert!(e["reason"].as_str().unwrap().contains("1 of 2"), "{e}");
    for device in [&mut alice, &mut alice_phone] {
        let n = device.recv_type(12).await;
        assert_eq!(
            (n["kind"].as_str(), n["by"].as_str()),
            (Some("delivered"), Some("bob")),
            "{n}"
        );
        let mut ids: Vec<&str> = n["msgIds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        ids.sort();
        let mut want = [
            one["msgId"].as_str().unwrap(),
            two["msgId"].as_str().unwrap(),
        ];
        want.sort();
        assert_eq!(ids, want, "merged into one notice: {n}");
        assert!(n["seq"].as_u64().is_some(), "stored in alice's inbox: {n}");
    }
    // Bob's unread inbox: 2; a read receipt moves his read position.
    let (mut bob2, reply) = Client::login(&s, "bob").await;
    assert_eq!(reply["unread"]["inbox"], 2, "{reply}");
    // Alice is offline when bob reads: the receipt waits in her inbox.
    alice.close().await;
    alice_phone.close().await;
    bob2.send(&json!({"msgType": 12, "kind": "read", "msgIds": [one["msgId"], two["msgId"]]}))
        .await;
    read_state_until(&mut bob2, json!({"msgType": 13}), |r| {
        r["unread"]["inbox"] == 0
    })
    .await;
    let (mut alice, reply) = Client::login(&s, "alice").await;
    assert_eq!(
        reply["unread"]["inbox"], 0,
        "receipts are not unread messages: {reply}"
    );
    // The delivered receipt is replayed; the read one follows (replayed,
    // or live once its second of merging is over).
    assert_eq!(alice.recv_type(12).await["kind"], "delivered");
    let read = alice.recv_type(12).await;
    assert_eq!(
        (
            read["kind"].as_str(),
            read["msgIds"].as_array().map(Vec::len)
        ),
        (Some("read"), Some(2)),
        "{read}"
    );
    alice.send(&json!({"msgType": 7, "since": 0})).await;
    let h = alice.recv_type(7).await;
    let kinds: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["delivered", "read"], "{h}");
    // Bob cannot send receipts for alice's inbox, nor for a room message.
    alice
        .send(&json!({"msgType": 12, "kind": "read", "msgIds": [one["msgId"]]}))
        .await;
    assert_eq!(alice.recv_type(9).await["code"], 404);
    // A malformed receipt is a 400 and the session stays.
    bob.send(&json!({"msgType": 12, "kind": "seen", "msgIds": ["x"]}))
        .await;
    assert_eq!(bob.recv_type(9).await["code"], 400);
    bob.send(&json!({"msgType": 1})).await;
    assert_eq!(bob.recv_type(1).await["msgType"], 1);
}

#[tokio::test]
async fn room_read_positions_are_announced_forward_only_and_counted_unread() {
    let s = Server::start(&[]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = WtClient::login(&s, "bob").await;
    alice.send(&json!({"msgType": 5, "roomId": "r"})).await;
    alice.recv_type(5).await;
    bob.send(&json!({"msgType": 5, "roomId": "r"})).await;
    bob.recv_type(5).await;
    for i in 1..=3 {
        alice
            .send(&json!({"msgType": 3, "roomId": "r", "msgBody": i}))
            .await;
        alice.recv_type(4).await;
        assert_eq!(bob.recv_type(3).await["seq"], i);
    }
    bob.send(&json!({"msgType": 13})).await;
    let u = bob.recv_type(13).await;
    assert_eq!(u["unread"]["rooms"]["r"], 3, "{u}");
    // Bob (over WebTransport) has read up to 2: alice is told.
    bob.send(&json!({"msgType": 12, "kind": "read", "roomId": "r", "seq": 2}))
        .await;
    let n = alice.recv_type(12).await;
    assert_eq!(
        (
            n["kind"].as_str(),
            n["by"].as_str(),
            n["roomId"].as_str(),
            n["seq"].as_u64()
        ),
        (Some("read"), Some("bob"), Some("r"), Some(2)),
        "{n}"
    );
    // Positions only move forward; alice's own messages are read by her.
    bob.send(&json!({"msgType": 12, "kind": "read", "roomId": "r", "seq": 1}))
        .await;
    let r = read_state_until(&mut alice, json!({"msgType": 13, "roomId": "r"}), |r| {
        r["reads"]["alice"] == 3
    })
    .await;
    assert_eq!(r["reads"], json!({"alice": 3, "bob": 2}), "{r}");
    assert_eq!(r["unread"], 0, "{r}");
    bob.send(&json!({"msgType": 13, "roomId": "r"})).await;
    assert_eq!(bob.recv_type(13).await["unread"], 1);
    // A new session of bob's that joins the room at login is told at once.
    let mut bob_ws = Client::connect(&format!("ws://{}/ws", s.http)).await;
    let reply = bob_ws
        .login_as(json!({"msgType": 2, "sendUserId": "bob", "roomId": "r"}))
        .await;
    assert_eq!(reply["unread"]["rooms"]["r"], 1, "{reply}");
    // A client that does not want them is not given counts.
    let mut quiet = Client::connect(&format!("ws://{}/ws", s.http)).await;
    let reply = quiet
        .login_as(json!({"msgType": 2, "sendUserId": "bob", "roomId": "r", "unread": false}))
        .await;
    assert!(reply.get("unread").is_none(), "{reply}");
    // Paging: one member per page.
    let first = read_state(
        &mut alice,
        json!({"msgType": 13, "roomId": "r", "limit": 1}),
    )
    .await;
    assert_eq!(first["reads"].as_object().unwrap().len(), 1, "{first}");
    let after = first["next"].as_str().expect("a next page").to_string();
    let second = read_state(
        &mut alice,
        json!({"msgType": 13, "roomId": "r", "limit": 1, "after": after}),
    )
    .await;
    assert_eq!(second["reads"], json!({"bob": 2}), "{second}");
    assert!(second.get("next").is_none(), "{second}");
}

/// Sends an amendment and answers the ack (or error) for it.
async fn amend(c: &mut Client, frame: Value) -> Value {
    c.send(&frame).await;
    loop {
        let f = c.recv().await;
        if f["msgType"] == 4 || f["msgType"] == 9 {
            return f;
        }
    }
}

#[tokio::test]
async fn edits_deletes_and_reactions_are_stored_delivered_and_folded_into_history() {
    let s = Server::start(&[]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    for c in [&mut alice, &mut bob] {
        c.send(&json!({"msgType": 5, "roomId": "r"})).await;
        c.recv_type(5).await;
    }
    alice
        .send(&json!({"msgType": 3, "roomId": "r", "msgBody": {"text": "helo"}}))
        .await;
    let m = alice.recv_type(4).await;
    let id = m["msgId"].as_str().unwrap().to_string();
    bob.recv_type(3).await;
    // Only the sender edits.
    let e = amend(
        &mut bob,
        json!({"msgType": 14, "msgId": id, "op": "edit", "msgBody": "mine now"}),
    )
    .await;
    assert_eq!(
        (e["msgType"].as_i64(), e["code"].as_i64()),
        (Some(9), Some(403)),
        "{e}"
    );
    let ack = amend(&mut alice, json!({"msgType": 14, "msgId": id, "op": "edit", "msgBody": {"text": "hello"}, "clientMsgId": "e1"})).await;
    assert_eq!(
        (ack["msgType"].as_i64(), ack["seq"].as_u64()),
        (Some(4), Some(2)),
        "{ack}"
    );
    let edit = bob.recv_type(14).await;
    assert_eq!(
        (edit["amends"].as_str(), edit["op"].as_str()),
        (Some(id.as_str()), Some("edit"))
    );
    assert_eq!(edit["msgBody"], json!({"text": "hello"}));
    // A resend of the edit is the same ack, not a second edit.
    let again = amend(&mut alice, json!({"msgType": 14, "msgId": id, "op": "edit", "msgBody": {"text": "hello"}, "clientMsgId": "e1"})).await;
    assert_eq!(again["msgId"], ack["msgId"]);
    // Reactions by members; the latest view folds them in.
    let r = amend(
        &mut bob,
        json!({"msgType": 14, "msgId": id, "op": "react", "reaction": "👍"}),
    )
    .await;
    assert_eq!(r["msgType"], 4, "{r}");
    assert_eq!(alice.recv_type(14).await["reaction"], "👍");
    alice
        .send(&json!({"msgType": 7, "roomId": "r", "since": 0, "view": "latest"}))
        .await;
    let h = alice.recv_type(7).await;
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1, "amendments are folded in: {h}");
    assert_eq!(msgs[0]["msgBody"], json!({"text": "hello"}));
    assert_eq!(msgs[0]["edited"], ack["ts"]);
    assert_eq!(msgs[0]["reactions"], json!({"👍": ["bob"]}));
    // A delete removes the body from the store, edits included.
    let d = amend(
        &mut alice,
        json!({"msgType": 14, "msgId": id, "op": "delete"}),
    )
    .await;
    assert_eq!(d["msgType"], 4, "{d}");
    alice
        .send(&json!({"msgType": 7, "roomId": "r", "since": 0}))
        .await;
    let log = alice.recv_type(7).await;
    let text = log.to_string();
    assert!(
        !text.contains("helo") && !text.contains("hello"),
        "no body is left: {log}"
    );
    assert_eq!(log["messages"][0]["deleted"], true, "{log}");
    assert_eq!(
        log["messages"].as_array().unwrap().len(),
        4,
        "the log as stored: {log}"
    );
    let e = amend(
        &mut bob,
        json!({"msgType": 14, "msgId": id, "op": "react", "reaction": "🎉"}),
    )
    .await;
    assert_eq!(
        e["code"], 409,
        "a deleted message takes no more amendments: {e}"
    );
    let e = amend(
        &mut bob,
        json!({"msgType": 14, "msgId": "nope", "op": "delete"}),
    )
    .await;
    assert_eq!(e["code"], 404, "{e}");
    let e = amend(
        &mut bob,
        json!({"msgType": 14, "msgId": ack["msgId"], "op": "react", "reaction": "x"}),
    )
    .await;
    assert_eq!(e["code"], 400, "an amendment is not amended: {e}");
    // Moderation through the server API: any message, delete only.
    bob.send(&json!({"msgType": 3, "roomId": "r", "msgBody": "spam"}))
        .await;
    let spam = bob.recv_type(4).await;
    let body = json!({"msgId": spam["msgId"], "op": "edit", "msgBody": "x"}).to_string();
    assert_eq!(s.http("POST", "/api/amend", &[], &body).await.0, 400);
    let body = json!({"msgId": spam["msgId"], "op": "delete"}).to_string();
    let (status, answer) = s.http("POST", "/api/amend", &[], &body).await;
    assert_eq!(status, 200, "{answer}");
    let seen = alice.recv_type(14).await;
    assert_eq!(
        (seen["op"].as_str(), seen["sendUserId"].as_str()),
        (Some("delete"), Some("system"))
    );
    let body = json!({"msgId": spam["msgId"], "op": "react", "reaction": "👀", "userId": "carol"})
        .to_string();
    assert_eq!(s.http("POST", "/api/amend", &[], &body).await.0, 409);
    // Survives a restart of the embedded store.
    let data = s.kill_keep_data();
    let s = Server::start_in(data, &[], &[]);
    let (mut carol, _) = Client::login(&s, "carol").await;
    carol.send(&json!({"msgType": 5, "roomId": "r"})).await;
    carol.recv_type(5).await;
    carol
        .send(&json!({"msgType": 7, "roomId": "r", "since": 0, "view": "latest"}))
        .await;
    let h = carol.recv_type(7).await;
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{h}");
    assert!(
        msgs.iter()
            .all(|m| m["deleted"] == true && m.get("msgBody").is_none()),
        "{h}"
    );
}

#[tokio::test]
async fn a_direct_message_sender_sees_reactions_and_only_parties_react() {
    let s = Server::start(&[]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    let (mut eve, _) = Client::login(&s, "eve").await;
    let m = dm(&mut alice, "bob", "hi").await;
    bob.recv_type(3).await;
    let r = amend(
        &mut bob,
        json!({"msgType": 14, "msgId": m["msgId"], "op": "react", "reaction": "❤️"}),
    )
    .await;
    assert_eq!(r["msgType"], 4, "{r}");
    let seen = alice.recv_type(14).await;
    assert_eq!(
        (seen["reaction"].as_str(), seen["sendUserId"].as_str()),
        (Some("❤️"), Some("bob"))
    );
    let e = amend(
        &mut eve,
        json!({"msgType": 14, "msgId": m["msgId"], "op": "react", "reaction": "😈"}),
    )
    .await;
    assert_eq!(e["code"], 403, "{e}");
    let e = amend(
        &mut eve,
        json!({"msgType": 14, "msgId": m["msgId"], "op": "delete"}),
    )
    .await;
    assert_eq!(e["code"], 403, "{e}");
}

#[tokio::test]
async fn typing_is_volatile_at_most_once_a_second_and_rides_datagrams() {
    let s = Server::start(&[]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = WtClient::login(&s, "bob").await;
    for room in ["r"] {
        alice.send(&json!({"msgType": 5, "roomId": room})).await;
        alice.recv_type(5).await;
        bob.send(&json!({"msgType": 5, "roomId": room})).await;
        bob.recv_type(5).await;
    }
    alice
        .send(&json!({"msgType": 15, "roomId": "r", "typing": true}))
        .await;
    let t = bob.recv_datagram().await;
    assert_eq!(
        (
            t["msgType"].as_i64(),
            t["typing"].as_bool(),
            t["sendUserId"].as_str()
        ),
        (Some(15), Some(true), Some("alice")),
        "{t}"
    );
    // More within the second are dropped silently; a direct one is its own.
    alice
        .send(&json!({"msgType": 15, "roomId": "r", "typing": false}))
        .await;
    alice
        .send(&json!({"msgType": 15, "receivedUserId": "bob", "typing": true}))
        .await;
    let t = bob.recv_datagram().await;
    assert_eq!(
        (t["receivedUserId"].as_str(), t["typing"].as_bool()),
        (Some("bob"), Some(true)),
        "{t}"
    );
    alice.expect_silence(Duration::from_millis(300)).await;
    // Up from WebTransport as a datagram too.
    bob.send_datagram(&json!({"msgType": 15, "roomId": "r", "typing": true}))
        .await;
    let t = alice.recv_type(15).await;
    assert_eq!(
        (t["sendUserId"].as_str(), t["roomId"].as_str()),
        (Some("bob"), Some("r")),
        "{t}"
    );
    // Never stored: the room's history is empty.
    alice
        .send(&json!({"msgType": 7, "roomId": "r", "since": 0}))
        .await;
    assert_eq!(alice.recv_type(7).await["messages"], json!([]));
    // Not a member: 403; malformed: 400.
    alice
        .send(&json!({"msgType": 15, "roomId": "other", "typing": true}))
        .await;
    assert_eq!(alice.recv_type(9).await["code"], 403);
    alice
        .send(&json!({"msgType": 15, "roomId": "r", "typing": "yes"}))
        .await;
    assert_eq!(alice.recv_type(9).await["code"], 400);
}

#[tokio::test]
async fn reading_state_and_amending_in_a_room_need_the_right_to_join_it() {
    let secret = "chat-secret";
    let s = Server::start(&["--jwt-secret", secret]);
    let token = |user: &str, rooms: Value| {
        crate::common::jwt(
            secret,
            json!({"sub": user, "rooms": rooms, "exp": crate::common::unix_now() + 600}),
        )
    };
    let mut alice = Client::connect(&format!("ws://{}/ws", s.http)).await;
    alice.login_as(json!({"msgType": 2, "token": token("alice", json!(["open", "closed"])), "roomId": "closed"})).await;
    alice
        .send(&json!({"msgType": 3, "roomId": "closed", "msgBody": "secret"}))
        .await;
    let m = alice.recv_type(4).await;
    let mut eve = Client::connect(&format!("ws://{}/ws", s.http)).await;
    eve.login_as(json!({"msgType": 2, "token": token("eve", json!(["open"]))}))
        .await;
    for frame in [
        json!({"msgType": 13, "roomId": "closed"}),
        json!({"msgType": 12, "kind": "read", "roomId": "closed", "seq": 1}),
        json!({"msgType": 14, "msgId": m["msgId"], "op": "react", "reaction": "👀"}),
    ] {
        eve.send(&frame).await;
        assert_eq!(eve.recv_type(9).await["code"], 403, "{frame}");
    }
}

#[tokio::test]
async fn receipts_and_read_positions_cross_nodes_over_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (a, b) = (
        Server::start(&["--redis", &url]),
        Server::start(&["--redis", &url]),
    );
    let (mut alice, _) = Client::login(&a, "alice").await;
    let (mut bob, _) = WtClient::login(&b, "bob").await;
    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "msgBody": "over there"}))
        .await;
    let m = alice.recv_type(4).await;
    assert_eq!(bob.recv_type(3).await["msgId"], m["msgId"]);
    bob.send(&json!({"msgType": 12, "kind": "read", "msgIds": [m["msgId"]]}))
        .await;
    let n = alice.recv_type(12).await;
    assert_eq!(
        (n["kind"].as_str(), n["by"].as_str()),
        (Some("read"), Some("bob")),
        "{n}"
    );
    // Room positions and unread counts come from the shared store.
    bob.send(&json!({"msgType": 5, "roomId": "x"})).await;
    bob.recv_type(5).await;
    alice.send(&json!({"msgType": 5, "roomId": "x"})).await;
    alice.recv_type(5).await;
    for i in 0..2 {
        alice
            .send(&json!({"msgType": 3, "roomId": "x", "msgBody": i}))
            .await;
        alice.recv_type(4).await;
    }
    bob.send(&json!({"msgType": 12, "kind": "read", "roomId": "x", "seq": 1}))
        .await;
    let n = alice.recv_type(12).await;
    assert_eq!(
        (n["by"].as_str(), n["seq"].as_u64()),
        (Some("bob"), Some(1)),
        "{n}"
    );
    let (mut bob_a, reply) = Client::login(&a, "bob").await;
    assert_eq!(reply["unread"]["inbox"], 0, "{reply}");
    let r = read_state_until(&mut bob_a, json!({"msgType": 13, "roomId": "x"}), |r| {
        r["unread"] == 1 && r["reads"]["alice"] == 2
    })
    .await;
    assert_eq!(r["reads"], json!({"alice": 2, "bob": 1}), "{r}");
    // An edit on node A reaches bob on node B.
    let e = amend(
        &mut alice,
        json!({"msgType": 14, "msgId": m["msgId"], "op": "edit", "msgBody": "edited"}),
    )
    .await;
    assert_eq!(e["msgType"], 4, "{e}");
    let edit = bob.recv_type(14).await;
    assert_eq!(edit["msgBody"], "edited");
}

#[tokio::test]
async fn an_edit_passes_the_publish_hook_and_amendments_are_events_receipts_not() {
    use crate::hooks::{Backend, HOOK_SECRET};
    let b = Backend::start();
    let (p, e) = (b.url("publish"), b.url("events"));
    let s = Server::start(&[
        "--publish-hook",
        &p,
        "--event-hook",
        &e,
        "--hook-secret",
        HOOK_SECRET,
    ]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    let m = dm(&mut alice, "bob", "hello").await;
    bob.recv_type(3).await;
    bob.send(&json!({"msgType": 12, "kind": "read", "msgIds": [m["msgId"]]}))
        .await;
    alice.recv_type(12).await;
    // The example backend masks a rude word in what it is shown.
    let ack = amend(
        &mut alice,
        json!({"msgType": 14, "msgId": m["msgId"], "op": "edit", "msgBody": {"t": "darn it"}}),
    )
    .await;
    assert_eq!(ack["msgType"], 4, "{ack}");
    let edit = bob.recv_type(14).await;
    assert_eq!(edit["msgBody"], json!({"t": "**** it"}), "{edit}");
    let seen = b.calls("publish").await;
    assert!(
        seen.iter().any(|c| c["body"]["message"]["msgType"] == 14),
        "{seen:?}"
    );
    // Events: the message and the amendment; the receipt is none.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events: Vec<Value> = b
            .calls("events")
            .await
            .into_iter()
            .filter(|c| c["status"].as_u64().is_some_and(|s| s < 300))
            .flat_map(|c| c["body"].as_array().cloned().unwrap_or_default())
            .collect();
        let types: Vec<&str> = events
            .iter()
            .filter_map(|e| e["type"].as_str())
            .filter(|t| t.starts_with("message."))
            .collect();
        if types.len() >= 2 {
            assert_eq!(types, ["message.stored", "message.amended"], "{events:?}");
            let amended = events
                .iter()
                .find(|e| e["type"] == "message.amended")
                .unwrap();
            assert_eq!(amended["message"]["amends"], m["msgId"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "events: {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
