//! Direct and room messages, copies to the sender's other devices, presence,
//! history and offline replay.

use serde_json::json;

use crate::common::{Client, Server};

#[tokio::test]
async fn direct_message_reaches_every_device_and_is_acked() {
    let s = Server::start(&[]);
    let (mut alice, _) = Client::login(&s, "alice").await;
    let (mut alice_phone, _) = Client::login(&s, "alice").await;
    let (mut bob, _) = Client::login(&s, "bob").await;
    let (mut bob_phone, _) = Client::login(&s, "bob").await;

    alice
        .send(&json!({"msgType": 3, "receivedUserId": "bob", "sendUserId": "mallory", "clientMsgId": "c1",
                      "bizType": 7, "bizOptModule": 8, "msgBody": {"text": "hi", "n": [1, 2.5]}}))
        .await;
    let ack = alice.recv().await;
    assert_eq!(ack["msgType"], 4, "{ack}");
    assert_eq!(ack["clientMsgId"], "c1");
    assert_eq!(ack["seq"], 1);
    for bob in [&mut bob, &mut bob_phone] {
        let m = bob.recv().await;
        assert_eq!(m["msgType"], 3);
        assert_eq!(
            m["sendUserId"], "alice",
            "the server stamps the sender: {m}"
        );
        assert_eq!(m["receivedUserId"], "bob");
        assert_eq!(m["msgId"], ack["msgId"]);
        assert_eq!(m["seq"], 1);
        assert_eq!(m["ts"], ack["ts"]);
        assert_eq!(m["bizType"], 7);
        assert_eq!(m["bizOptModule"], 8);
        assert_eq!(m["msgBody"], json!({"text": "hi", "n": [1, 2.5]}));
    }
    let copy = alice_phone.recv().await;
    assert_eq!(copy["msgId"], ack["msgId"]);
    assert!(
        copy.get("seq").is_none(),
        "the sender's copy has no seq: {copy}"
    );
    alice
        .expect_silence(std::time::Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn room_broadcast_skips_the_sending_session_only() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut a2, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    let (mut outsider, _) = Client::login(&s, "c").await;
    for c in [&mut a, &mut a2, &mut b] {
        c.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
        let j = c.recv().await;
        assert_eq!(j, json!({"msgType": 5, "roomId": "lobby", "seq": 0}));
    }
    a.send(&json!({"msgType": 101, "roomId": "lobby", "msgBody": "hello", "clientMsgId": "x"}))
        .await;
    let ack = a.recv().await;
    assert_eq!(
        (ack["msgType"].as_i64(), ack["seq"].as_i64()),
        (Some(4), Some(1))
    );
    for c in [&mut a2, &mut b] {
        let m = c.recv().await;
        assert_eq!(
            (
                m["msgType"].as_i64(),
                m["roomId"].as_str(),
                m["seq"].as_i64()
            ),
            (Some(101), Some("lobby"), Some(1))
        );
        assert_eq!(m["msgBody"], "hello");
        assert_eq!(m["sendUserId"], "a");
    }
    // A non-member cannot publish to the room.
    outsider
        .send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": 1, "clientMsgId": "o1"}))
        .await;
    let e = outsider.recv().await;
    assert_eq!(
        (
            e["msgType"].as_i64(),
            e["code"].as_i64(),
            e["clientMsgId"].as_str()
        ),
        (Some(9), Some(403), Some("o1"))
    );
    // After leaving, b gets nothing more.
    b.send(&json!({"msgType": 6, "roomId": "lobby"})).await;
    assert_eq!(b.recv().await, json!({"msgType": 6, "roomId": "lobby"}));
    a.send(&json!({"msgType": 3, "roomId": "lobby", "msgBody": 2}))
        .await;
    assert_eq!(a2.recv().await["seq"], 2);
    b.expect_silence(std::time::Duration::from_millis(300))
        .await;
    // Joining again answers the room's current seq.
    b.send(&json!({"msgType": 5, "roomId": "lobby"})).await;
    assert_eq!(b.recv().await["seq"], 2);
}

#[tokio::test]
async fn a_message_with_receiver_and_room_is_direct_with_room_context() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    a.send(&json!({"msgType": 3, "roomId": "r9", "receivedUserId": "b", "msgBody": {}}))
        .await;
    let m = b.recv().await;
    assert_eq!(
        (m["roomId"].as_str(), m["receivedUserId"].as_str()),
        (Some("r9"), Some("b"))
    );
}

#[tokio::test]
async fn ids_as_numbers_are_strings_on_the_way_out() {
    let s = Server::start(&[]);
    let (mut a, reply) = Client::login(&s, "1001").await;
    assert_eq!(reply["sendUserId"], "1001");
    let mut b = Client::connect(&s.ws_url("/ws")).await;
    b.login_as(json!({"msgType": 2, "sendUserId": 1002})).await;
    a.send(&json!({"msgType": 3, "receivedUserId": 1002, "msgBody": 5}))
        .await;
    let m = b.recv().await;
    assert_eq!(m["sendUserId"], "1001");
    assert_eq!(m["receivedUserId"], "1002");
}

#[tokio::test]
async fn presence_on_this_node() {
    let s = Server::start(&[]);
    let mut a = Client::connect(&s.ws_url("/ws")).await;
    a.login_as(json!({"msgType": 2, "sendUserId": "a", "roomId": "r"}))
        .await;
    let mut b = Client::connect(&s.ws_url("/ws")).await;
    b.login_as(json!({"msgType": 2, "sendUserId": "b", "rooms": ["r", "q"]}))
        .await;
    a.send(&json!({"msgType": 8, "roomId": "r"})).await;
    assert_eq!(
        a.recv().await,
        json!({"msgType": 8, "roomId": "r", "userIds": ["a", "b"]})
    );
    a.send(&json!({"msgType": 8, "userIds": ["b", "nobody", "a"]}))
        .await;
    assert_eq!(a.recv().await, json!({"msgType": 8, "userIds": ["b", "a"]}));
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    a.send(&json!({"msgType": 8, "roomId": "r"})).await;
    assert_eq!(a.recv().await["userIds"], json!(["a"]));
}

#[tokio::test]
async fn offline_messages_arrive_at_login_and_cursor_moves_the_start() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    for i in 1..=3 {
        a.send(&json!({"msgType": 3, "receivedUserId": "offline-bob", "msgBody": i}))
            .await;
        assert_eq!(a.recv_type(4).await["seq"], i);
    }
    let (mut bob, reply) = Client::login(&s, "offline-bob").await;
    assert_eq!(reply["inboxSeq"], 3);
    for i in 1..=3 {
        let m = bob.recv().await;
        assert_eq!(
            (m["seq"].as_i64(), m["msgBody"].as_i64()),
            (Some(i), Some(i))
        );
    }
    // Acknowledge up to 2: the next login replays only 3.
    bob.send(&json!({"msgType": 4, "seq": 2})).await;
    bob.send(&json!({"msgType": 1})).await;
    assert_eq!(bob.recv().await["msgType"], 1);
    drop(bob);
    let (mut bob, _) = Client::login(&s, "offline-bob").await;
    assert_eq!(bob.recv().await["seq"], 3);
    bob.expect_silence(std::time::Duration::from_millis(200))
        .await;
    // An explicit since wins over the cursor.
    let mut bob2 = Client::connect(&s.ws_url("/ws")).await;
    bob2.login_as(json!({"msgType": 2, "sendUserId": "offline-bob", "since": {"inbox": 0}}))
        .await;
    for i in 1..=3 {
        assert_eq!(bob2.recv().await["seq"], i);
    }
}

#[tokio::test]
async fn history_pages_and_room_replay() {
    let s = Server::start(&[]);
    let mut a = Client::connect(&s.ws_url("/ws")).await;
    a.login_as(json!({"msgType": 2, "sendUserId": "a", "roomId": "h"}))
        .await;
    for i in 1..=5 {
        a.send(&json!({"msgType": 3, "roomId": "h", "msgBody": i}))
            .await;
        a.recv_type(4).await;
    }
    a.send(&json!({"msgType": 7, "roomId": "h", "since": 2, "limit": 2}))
        .await;
    let h = a.recv().await;
    assert_eq!(h["msgType"], 7);
    assert_eq!(h["seq"], 5);
    let seqs: Vec<i64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    let mut b = Client::connect(&s.ws_url("/ws")).await;
    b.login_as(json!({"msgType": 2, "sendUserId": "b", "since": {"rooms": {"h": 3}}}))
        .await;
    assert_eq!(b.recv().await["seq"], 4);
    assert_eq!(b.recv().await["seq"], 5);
    // since.rooms only replays: b is not a member and gets no live messages.
    a.send(&json!({"msgType": 3, "roomId": "h", "msgBody": 6}))
        .await;
    a.recv_type(4).await;
    b.expect_silence(std::time::Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn volatile_messages_are_not_acked_or_stored() {
    let s = Server::start(&[]);
    let mut a = Client::connect(&s.ws_url("/ws")).await;
    a.login_as(json!({"msgType": 2, "sendUserId": "a", "roomId": "v"}))
        .await;
    let mut b = Client::connect(&s.ws_url("/ws")).await;
    b.login_as(json!({"msgType": 2, "sendUserId": "b", "roomId": "v"}))
        .await;
    a.send(&json!({"msgType": 3, "roomId": "v", "volatile": true, "msgBody": "typing"}))
        .await;
    let m = b.recv().await;
    assert_eq!(m["volatile"], true);
    assert!(m.get("seq").is_none());
    a.expect_silence(std::time::Duration::from_millis(200))
        .await;
    a.send(&json!({"msgType": 7, "roomId": "v"})).await;
    let h = a.recv().await;
    assert_eq!(
        (h["seq"].as_i64(), h["messages"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn resend_with_same_client_msg_id_is_acked_once_and_delivered_once() {
    let s = Server::start(&[]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut a2, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    let msg =
        json!({"msgType": 3, "receivedUserId": "b", "msgBody": "once", "clientMsgId": "dup-1"});
    a.send(&msg).await;
    let first = a.recv_type(4).await;
    a2.recv().await; // a's copy on the other device
    a2.send(&msg).await; // the same resend from another device
    let second = a2.recv_type(4).await;
    assert_eq!(first["msgId"], second["msgId"]);
    assert_eq!(first["seq"], second["seq"]);
    assert_eq!(b.recv().await["msgBody"], "once");
    b.expect_silence(std::time::Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_member_that_stops_reading_gets_every_frame_whole_and_in_order_afterwards() {
    // Volatile frames to a sleeping WebSocket session are written by the
    // fan-out itself; durable ones through the session. With 18 MB sent to a
    // member that reads nothing, direct writes meet a full socket (a frame
    // partly written, its rest sent by the session) and the queue: every
    // frame must still arrive whole, the durable ones in seq order and the
    // volatile ones in the order sent (volatile messages skip the store, so
    // the two kinds may interleave differently from how they were sent).
    let s = Server::start(&["--rate-limit", "0", "--user-rate-limit", "0"]);
    let (mut a, _) = Client::login(&s, "a").await;
    let (mut b, _) = Client::login(&s, "b").await;
    for c in [&mut a, &mut b] {
        c.send(&json!({"msgType": 5, "roomId": "o"})).await;
        c.recv_type(5).await;
    }
    let pad = "p".repeat(60_000);
    const N: u64 = 300;
    // Volatile alone first (direct writes until the socket is full), then
    // both kinds.
    let volatile = |n: u64| n < N / 2 || n % 2 == 1;
    for n in 0..N {
        let volatile = volatile(n);
        a.send(&json!({"msgType": 3, "roomId": "o", "volatile": volatile,
                       "clientMsgId": format!("m{n}"), "msgBody": {"n": n, "pad": pad}}))
            .await;
    }
    for _ in 0..N / 4 {
        a.recv_type(4).await;
    }
    let (mut durable, mut volatile_seen) = (Vec::new(), Vec::new());
    for _ in 0..N {
        let m = b.recv_type(3).await;
        assert_eq!(m["msgBody"]["pad"].as_str().map(str::len), Some(60_000));
        let n = m["msgBody"]["n"].as_u64().unwrap();
        if m["volatile"] == true {
            volatile_seen.push(n);
        } else {
            durable.push(n);
        }
    }
    assert_eq!(
        durable,
        (0..N).filter(|n| !volatile(*n)).collect::<Vec<_>>()
    );
    assert_eq!(
        volatile_seen,
        (0..N).filter(|n| volatile(*n)).collect::<Vec<_>>()
    );
    b.expect_silence(std::time::Duration::from_millis(200))
        .await;
}
