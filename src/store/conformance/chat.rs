//! The chat side of every store ([`crate::store::ChatStore`]): messages
//! found by msgId, redactions, read positions, unread counts.

use std::sync::Arc;

use bytes::Bytes;

use super::fixtures::*;
use crate::model::Channel;
use crate::store::{ReadMark, Retention};

/// A stored receipt (msgType 12): stored, but never unread.
fn receipt(channel: Channel, n: u64) -> crate::store::AppendRequest {
    let mut r = request(channel, n, None);
    r.message.msg_type = 12;
    r
}

fn mark(channel: &Channel, user: &str, seq: u64) -> ReadMark {
    ReadMark {
        channel: channel.clone(),
        user: id(user),
        seq,
    }
}

pub(super) async fn messages_are_found_by_msg_id(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let room = Channel::Room(id("found"));
    let inbox = Channel::Inbox(id("bob"));
    store.append(request(room.clone(), 1, None)).await.unwrap();
    store.append(request(inbox.clone(), 2, None)).await.unwrap();
    store.append(request(room.clone(), 3, None)).await.unwrap();
    let mut found = store
        .locate(vec!["m3".into(), "nope".into(), "m2".into()])
        .await
        .unwrap();
    found.sort_by(|a, b| a.msg_id.cmp(&b.msg_id));
    assert_eq!(found.len(), 2, "an unknown id is left out");
    assert_eq!(
        (&found[0].msg_id[..], &found[0].channel, found[0].seq),
        ("m2", &inbox, 1)
    );
    assert_eq!(
        (&found[1].msg_id[..], &found[1].channel, found[1].seq),
        ("m3", &room, 2)
    );
    let body: serde_json::Value = serde_json::from_slice(&found[1].payload).unwrap();
    assert_eq!(
        (body["msgId"].as_str(), body["msgBody"].as_i64()),
        (Some("m3"), Some(3))
    );
    assert!(store.locate(Vec::new()).await.unwrap().is_empty());
}

pub(super) async fn a_redaction_replaces_the_stored_body_in_place(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let ch = Channel::Room(id("red"));
    for n in 1..=3 {
        store.append(request(ch.clone(), n, None)).await.unwrap();
    }
    let gone = Bytes::from_static(br#"{"msgType":3,"msgId":"m2","seq":2,"deleted":true}"#);
    store.redact(&ch, 2, gone.clone()).await.unwrap();
    // Twice is the same as once, and the log goes on after it.
    store.redact(&ch, 2, gone.clone()).await.unwrap();
    store.append(request(ch.clone(), 4, None)).await.unwrap();
    let page = store.read(&ch, 0, 10).await.unwrap();
    let got: Vec<serde_json::Value> = page
        .messages
        .iter()
        .map(|m| serde_json::from_str(m.get()).unwrap())
        .collect();
    let seqs: Vec<_> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "the redacted message keeps its place");
    assert_eq!((page.last, page.gap), (4, false));
    assert!(got[1].get("msgBody").is_none() && got[1]["deleted"] == true);
    assert_eq!(got[2]["msgBody"], 3);
    // A page that starts at the redaction, and one that ends at it.
    let page = store.read(&ch, 1, 1).await.unwrap();
    assert_eq!((page.messages.len(), page.last), (1, 2));
    assert!(!page.messages[0].get().contains("msgBody"));
    let found = store.locate(vec!["m2".into()]).await.unwrap();
    assert_eq!(
        found[0].payload, gone,
        "found by id, it is the redacted one"
    );
    assert_eq!(
        store.unread(&ch, 0).await.unwrap(),
        4,
        "a deleted message keeps its count"
    );
    assert_eq!(store.unread(&ch, 1).await.unwrap(), 3);
    // Nothing happens to a seq that is not there.
    store.redact(&ch, 99, gone).await.unwrap();
    assert_eq!(store.read(&ch, 0, 10).await.unwrap().messages.len(), 4);
}

pub(super) async fn read_positions_only_move_forward_within_the_log(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let room = Channel::Room(id("reads"));
    let inbox = Channel::Inbox(id("ann"));
    for n in 1..=5 {
        store.append(request(room.clone(), n, None)).await.unwrap();
    }
    store.append(request(inbox.clone(), 9, None)).await.unwrap();
    let got = store
        .set_reads(vec![
            mark(&room, "ann", 3),
            mark(&room, "ann", 2),
            mark(&room, "bo", 99),
            mark(&inbox, "ann", 1),
            mark(&Channel::Room(id("empty")), "ann", 4),
        ])
        .await
        .unwrap();
    assert_eq!(
        got,
        [3, 3, 5, 1, 0],
        "forward only, clamped to the latest seq"
    );
    let page = store.reads(&room, None, 100).await.unwrap();
    assert_eq!(page.reads, [(id("ann"), 3), (id("bo"), 5)]);
    assert_eq!(page.next, None);
    let mut mine = store.read_positions(&id("ann")).await.unwrap();
    mine.sort();
    assert!(mine.contains(&(room.clone(), 3)) && mine.contains(&(inbox.clone(), 1)));
    assert!(
        store
            .read_positions(&id("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
    // Many readers come in pages that together hold every one once.
    let marks = (0..250)
        .map(|i| mark(&room, &format!("u{i:03}"), 1))
        .collect();
    store.set_reads(marks).await.unwrap();
    let (mut all, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = store.reads(&room, after, 100).await.unwrap();
        all.extend(page.reads);
        pages += 1;
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 100, "paging ends");
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 252);
}

pub(super) async fn unread_counts_business_messages_after_a_position(make: Make) {
    let f = make(
        Arc::new(Recorder::default()),
        Retention {
            max_count: 6,
            ..Retention::default()
        },
    )
    .await;
    let store = f.store.clone();
    let ch = Channel::Inbox(id("cnt"));
    assert_eq!(store.unread(&ch, 0).await.unwrap(), 0);
    store.append(request(ch.clone(), 1, None)).await.unwrap();
    store.append(receipt(ch.clone(), 2)).await.unwrap();
    store.append(request(ch.clone(), 3, None)).await.unwrap();
    store.append(receipt(ch.clone(), 4)).await.unwrap();
    assert_eq!(
        store.unread(&ch, 0).await.unwrap(),
        2,
        "receipts are not unread"
    );
    assert_eq!(store.unread(&ch, 1).await.unwrap(), 1);
    assert_eq!(store.unread(&ch, 2).await.unwrap(), 1);
    assert_eq!(store.unread(&ch, 3).await.unwrap(), 0);
    assert_eq!(store.unread(&ch, 4).await.unwrap(), 0);
    // Past retention only what is still kept counts (seqs 5..=10 of 10).
    for n in 5..=10 {
        store.append(request(ch.clone(), n, None)).await.unwrap();
    }
    assert_eq!(store.unread(&ch, 0).await.unwrap(), 6);
    assert_eq!(store.unread(&ch, 8).await.unwrap(), 2);
    assert_eq!(store.unread(&ch, 10).await.unwrap(), 0);
    // Many channels in one call, in the order asked.
    let other = Channel::Room(id("cnt-room"));
    store.append(request(other.clone(), 1, None)).await.unwrap();
    let many = vec![
        (ch.clone(), 8),
        (Channel::Room(id("none")), 0),
        (other, 0),
        (ch, 0),
    ];
    assert_eq!(store.unread_many(many).await.unwrap(), [2, 0, 1, 6]);
}
