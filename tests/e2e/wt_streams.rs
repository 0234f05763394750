//! WebTransport's stream per channel (aioquic client): each channel's
//! stored messages on a server-opened stream of its own, in seq order;
//! replies on the client's stream; streams ended on leave and bounded per
//! session; `"streams":"single"` for clients that read one stream.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::common::{Client, Server};
use crate::wt_client::{WtClient, wt_url};

/// Whether `id` is a QUIC stream the server opened, unidirectional.
fn server_uni(id: u64) -> bool {
    id % 4 == 3
}

async fn join(c: &mut WtClient, room: &str) {
    c.send(&json!({"msgType": 5, "roomId": room})).await;
    c.recv_type(5).await;
}

/// Reads `n` business messages; returns them with their stream.
async fn messages(c: &mut WtClient, n: usize) -> Vec<(Value, u64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let (m, stream) = c.recv_on().await;
        if m["msgType"] == 3 {
            out.push((m, stream));
        }
    }
    out
}

/// Heartbeats until the server has ended `n` of this client's streams.
async fn until_ended(c: &mut WtClient, n: usize) {
    for _ in 0..50 {
        if c.ended_streams.len() >= n {
            return;
        }
        c.send(&json!({"msgType": 1})).await;
        c.recv_type(1).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("only {:?} of {n} streams ended", c.ended_streams);
}

#[tokio::test]
async fn each_channel_travels_on_a_stream_of_its_own_in_seq_order() {
    let s = Server::start(&[]);
    let (mut w, _) = Client::login(&s, "w").await;
    let (mut a, _) = WtClient::login(&s, "a").await;
    for room in ["r1", "r2"] {
        join(&mut a, room).await;
        w.send(&json!({"msgType": 5, "roomId": room})).await;
        w.recv_type(5).await;
    }
    a.send(&json!({"msgType": 1})).await;
    let (_, main) = a.recv_on().await;
    assert!(!server_uni(main), "replies come on the client's stream");
    for i in 0..3 {
        for room in ["r1", "r2"] {
            w.send(&json!({"msgType": 3, "roomId": room, "msgBody": i}))
                .await;
        }
        w.send(&json!({"msgType": 3, "receivedUserId": "a", "msgBody": i}))
            .await;
    }
    let mut by_channel: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (m, stream) in messages(&mut a, 9).await {
        let ch = m["roomId"].as_str().unwrap_or("inbox").to_string();
        by_channel
            .entry(ch)
            .or_default()
            .push((stream, m["seq"].as_u64().unwrap()));
    }
    let mut streams = BTreeSet::new();
    for (ch, got) in &by_channel {
        let ids: BTreeSet<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(ids.len(), 1, "{ch} on one stream: {got:?}");
        let id = *ids.first().unwrap();
        assert!(server_uni(id) && id != main, "{ch} on stream {id}");
        let seqs: Vec<u64> = got.iter().map(|(_, q)| *q).collect();
        assert_eq!(seqs, vec![1, 2, 3], "{ch} in seq order");
        streams.insert(id);
    }
    assert_eq!(
        streams.len(),
        3,
        "three channels, three streams: {by_channel:?}"
    );
    // Leaving a room ends its stream.
    let r1 = by_channel["r1"][0].0;
    a.send(&json!({"msgType": 6, "roomId": "r1"})).await;
    a.recv_type(6).await;
    until_ended(&mut a, 1).await;
    assert_eq!(a.ended_streams, vec![r1]);
    // A replay at login comes on the channel's stream too.
    let (mut c, status) = WtClient::connect(&wt_url(&s, "/wt"), None).await;
    assert_eq!(status, 200);
    c.send(&json!({"msgType": 2, "sendUserId": "a", "since": {"inbox": 1, "rooms": {"r2": 1}}}))
        .await;
    let replayed = messages(&mut c, 4).await;
    let inbox: Vec<_> = replayed
        .iter()
        .filter(|(m, _)| m["roomId"].is_null())
        .collect();
    let room: Vec<_> = replayed
        .iter()
        .filter(|(m, _)| m["roomId"] == "r2")
        .collect();
    assert_eq!((inbox.len(), room.len()), (2, 2), "{replayed:?}");
    assert!(inbox[0].1 == inbox[1].1 && room[0].1 == room[1].1 && inbox[0].1 != room[0].1);
    assert!(server_uni(inbox[0].1) && server_uni(room[0].1));
}

#[tokio::test]
async fn streams_per_session_are_bounded_and_a_single_stream_client_gets_all_on_one() {
    let s = Server::start(&["--max-rooms", "32"]);
    let (mut w, _) = Client::login(&s, "w").await;
    let (mut a, _) = WtClient::login(&s, "a").await;
    let rooms: Vec<String> = (0..20).map(|i| format!("room{i}")).collect();
    for room in &rooms {
        join(&mut a, room).await;
        w.send(&json!({"msgType": 5, "roomId": room})).await;
        w.recv_type(5).await;
    }
    for room in &rooms {
        w.send(&json!({"msgType": 3, "roomId": room, "msgBody": "x"}))
            .await;
    }
    let got = messages(&mut a, 20).await;
    let opened: BTreeSet<u64> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(opened.len(), 20, "one stream per room");
    // At most 16 are open at once: the least recently used ones ended.
    until_ended(&mut a, opened.len() - 16).await;

    let (mut b, _) = WtClient::connect(&wt_url(&s, "/wt"), None).await;
    b.send(&json!({"msgType": 2, "sendUserId": "b", "streams": "single"}))
        .await;
    let (reply, main) = b.recv_on().await;
    assert_eq!(reply["msgType"], 2, "{reply}");
    join(&mut b, "room0").await;
    w.send(&json!({"msgType": 3, "roomId": "room0", "msgBody": "one"}))
        .await;
    w.send(&json!({"msgType": 3, "receivedUserId": "b", "msgBody": "two"}))
        .await;
    for (m, stream) in messages(&mut b, 2).await {
        assert_eq!(stream, main, "{m} on the client's stream");
    }
    // Any other value is refused.
    let (mut c, _) = WtClient::connect(&wt_url(&s, "/wt"), None).await;
    c.send(&json!({"msgType": 2, "sendUserId": "c", "streams": "many"}))
        .await;
    assert_eq!(c.recv_type(9).await["code"], 400);
}
