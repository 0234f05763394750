//! Behaviour every [`Store`] must show, run against each implementation
//! (the fixtures are in `fixtures.rs`; SQLite-only cases in `sqlite.rs`,
//! Redis-only ones in `redis.rs`).

mod chat;
mod fixtures;
mod push;
mod redis;
mod sqlite;

use chat::*;
use push::*;

use std::sync::Arc;
use std::time::Duration;

use fixtures::*;

use super::{AppendRequest, DedupeKey, Retention};
use crate::model::Channel;
use crate::protocol::Delivered;

async fn seq_is_gap_free_per_channel_and_committed_in_order(make: Make) {
    let rec = Arc::new(Recorder::default());
    let f = make(rec.clone(), Retention::default()).await;
    let store = f.store.clone();
    let rooms = [
        Channel::Room(id("a")),
        Channel::Room(id("b")),
        Channel::Inbox(id("u")),
    ];
    // Many tasks append concurrently; seqs are 1..=n per channel.
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        let rooms = rooms.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..50u64 {
                let ch = rooms[(i % 3) as usize].clone();
                acks.push((
                    ch.clone(),
                    store.append(request(ch, t * 100 + i, None)).await.unwrap(),
                ));
            }
            acks
        }));
    }
    let mut per_channel: std::collections::HashMap<Channel, Vec<u64>> = Default::default();
    for t in tasks {
        for (ch, a) in t.await.unwrap() {
            assert!(!a.duplicate);
            per_channel.entry(ch).or_default().push(a.seq);
        }
    }
    for (ch, mut seqs) in per_channel {
        seqs.sort();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{ch}");
        assert_eq!(store.latest(&ch).await.unwrap(), seqs.len() as u64);
    }
    // The sink saw every channel in seq order (Redis publishes from its
    // script instead; the cluster e2e tests check that order).
    let seen = rec.0.lock().unwrap().clone();
    assert_eq!(seen.is_empty(), !f.uses_sink);
    for ch in &rooms {
        let order: Vec<u64> = seen
            .iter()
            .filter(|(c, _)| c == ch)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(order, (1..=order.len() as u64).collect::<Vec<_>>(), "{ch}");
    }
    assert_eq!(store.latest(&Channel::Room(id("none"))).await.unwrap(), 0);
}

async fn appends_from_one_task_keep_their_order(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let ch = Channel::Room(id("order"));
    let futures: Vec<_> = (1..=100)
        .map(|n| store.append(request(ch.clone(), n, None)))
        .collect();
    for (n, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().seq, n as u64 + 1);
    }
}

async fn dedupe_returns_the_original_ack(make: Make) {
    let rec = Arc::new(Recorder::default());
    let f = make(rec.clone(), Retention::default()).await;
    let store = f.store.clone();
    let ch = Channel::Inbox(id("bob"));
    let first = store
        .append(request(ch.clone(), 1, Some("k")))
        .await
        .unwrap();
    let again = store
        .append(request(ch.clone(), 2, Some("k")))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.msg_id.as_str(), again.seq, again.ts),
        (first.msg_id.as_str(), first.seq, first.ts)
    );
    let other = store
        .append(request(ch.clone(), 3, Some("k2")))
        .await
        .unwrap();
    assert_eq!(other.seq, 2);
    if f.uses_sink {
        assert_eq!(
            rec.0.lock().unwrap().len(),
            2,
            "a duplicate is not committed again"
        );
    }
}

async fn cursor_never_moves_back(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let u = id("u");
    assert_eq!(store.cursor(&u).await.unwrap(), 0);
    for n in 0..5 {
        store
            .append(request(Channel::Inbox(u.clone()), n, None))
            .await
            .unwrap();
    }
    store.set_cursor(&u, 5).await.unwrap();
    store.set_cursor(&u, 3).await.unwrap();
    assert_eq!(store.cursor(&u).await.unwrap(), 5);
}

async fn read_pages_in_seq_order(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let ch = Channel::Room(id("h"));
    for n in 1..=7 {
        store.append(request(ch.clone(), n, None)).await.unwrap();
    }
    let page = store.read(&ch, 2, 3).await.unwrap();
    assert_eq!((page.latest, page.last, page.gap), (7, 5, false));
    let seqs: Vec<u64> = page
        .messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Delivered>(m.get())
                .unwrap()
                .seq
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![3, 4, 5]);
    let end = store.read(&ch, 7, 10).await.unwrap();
    assert!(end.messages.is_empty() && !end.gap && end.last == 7);
    let empty = store
        .read(&Channel::Room(id("nothing")), 0, 10)
        .await
        .unwrap();
    assert!(empty.messages.is_empty() && !empty.gap && empty.latest == 0);
}

async fn retention_trims_and_reports_the_gap(make: Make) {
    let retention = Retention {
        max_count: 3,
        max_age: Duration::from_secs(3600),
    };
    let f = make(Arc::new(Recorder::default()), retention).await;
    let store = f.store.clone();
    let ch = Channel::Inbox(id("r"));
    for n in 1..=6 {
        store.append(request(ch.clone(), n, None)).await.unwrap();
    }
    // Trimming runs in the background: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let page = store.read(&ch, 0, 10).await.unwrap();
        if page.gap {
            assert_eq!(page.messages.len(), 3);
            assert_eq!(page.last, 6);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never trimmed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !store.read(&ch, 3, 10).await.unwrap().gap,
        "after 3 the history is complete"
    );
    assert_eq!(
        store
            .append(request(ch.clone(), 7, None))
            .await
            .unwrap()
            .seq,
        7,
        "seq continues"
    );
}

async fn dedupe_is_per_user_and_channel_and_keys_never_collide(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let s = f.store.clone();
    let with = |channel: Channel, user: &str, cmid: &str, n: u64| AppendRequest {
        dedupe: Some(DedupeKey {
            user: id(user),
            client_msg_id: cmid.into(),
        }),
        ..request(channel, n, None)
    };
    let (a, b) = (Channel::Room(id("a")), Channel::Room(id("b")));
    let first = s.append(with(a.clone(), "u", "x", 1)).await.unwrap();
    // The same key in another channel is another message.
    let other = s.append(with(b.clone(), "u", "x", 2)).await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(s.latest(&b).await.unwrap(), 1);
    // Another user's same key is another message.
    assert!(
        !s.append(with(a.clone(), "v", "x", 3))
            .await
            .unwrap()
            .duplicate
    );
    // ("a", "b:c") and ("a:b", "c") are two keys.
    assert!(
        !s.append(with(a.clone(), "w", "b:c", 4))
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        !s.append(with(a.clone(), "w:b", "c", 5))
            .await
            .unwrap()
            .duplicate
    );
    // The same user, channel and key is the first message again.
    let again = s.append(with(a.clone(), "u", "x", 6)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.msg_id, again.seq), (first.msg_id, first.seq));
    assert_eq!(s.latest(&a).await.unwrap(), 4);
}

async fn retention_by_age_removes_old_messages(make: Make) {
    let retention = Retention {
        max_count: 1_000,
        max_age: Duration::from_secs(1),
    };
    let f = make(Arc::new(Recorder::default()), retention).await;
    let s = f.store.clone();
    let ch = Channel::Room(id("aging"));
    for n in 0..3 {
        s.append(request(ch.clone(), n, None)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // A new message; the old ones are past the age. Stores that trim in the
    // background (SQLite, once a second) get a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut n = 3;
    loop {
        s.append(request(ch.clone(), n, None)).await.unwrap();
        n += 1;
        let page = s.read(&ch, 0, 100).await.unwrap();
        let first: Delivered = serde_json::from_str(page.messages[0].get()).unwrap();
        if first.seq.unwrap() > 3 {
            assert!(page.gap, "a trimmed start is reported as a gap");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old messages were never trimmed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn cursors_stay_within_the_inbox(make: Make) {
    let rec = Arc::new(Recorder::default());
    let f = make(rec, Retention::default()).await;
    let s = f.store.clone();
    let u = id("u");
    let inbox = Channel::Inbox(u.clone());
    // An empty inbox holds every cursor at 0.
    s.set_cursor(&u, 5).await.unwrap();
    assert_eq!(s.cursor(&u).await.unwrap(), 0);
    for n in 0..2 {
        s.append(request(inbox.clone(), n, None)).await.unwrap();
    }
    s.set_cursor(&u, 1_000_000_000_000).await.unwrap();
    assert_eq!(s.cursor(&u).await.unwrap(), 2, "clamped to the inbox");
    // A message after that is still after the cursor: it will be replayed.
    s.append(request(inbox.clone(), 2, None)).await.unwrap();
    assert_eq!(s.cursor(&u).await.unwrap(), 2);
    s.set_cursor(&u, crate::protocol::command::MAX_POSITION)
        .await
        .unwrap();
    assert_eq!(s.cursor(&u).await.unwrap(), 3);
    s.set_cursor(&u, 1).await.unwrap();
    assert_eq!(s.cursor(&u).await.unwrap(), 3, "never moves back");
}

async fn reading_past_the_end_finds_nothing(make: Make) {
    let rec = Arc::new(Recorder::default());
    let f = make(rec, Retention::default()).await;
    let s = f.store.clone();
    let ch = Channel::Room(id("r"));
    for n in 0..3 {
        s.append(request(ch.clone(), n, None)).await.unwrap();
    }
    for since in [3, 4, 1_000_000, crate::protocol::command::MAX_POSITION] {
        let page = s.read(&ch, since, 10).await.unwrap();
        assert!(page.messages.is_empty(), "since {since}");
        assert_eq!(
            (page.latest, page.last, page.gap),
            (3, since, false),
            "since {since}"
        );
    }
}

async fn the_outbox_keeps_events_until_acked(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let s = f.store.clone();
    let ev = |n: u32| format!(r#"{{"id":"{n}","type":"user.online"}}"#);
    // Stored messages leave no event until asked to.
    s.append(request(Channel::Room(id("r")), 1, None))
        .await
        .unwrap();
    s.push_events(vec![ev(1), ev(2), ev(3)]).await.unwrap();
    s.record_stored_events();
    let stored = s
        .append(request(Channel::Room(id("r")), 2, None))
        .await
        .unwrap();
    let first = s.claim_events(2).await.unwrap();
    let bodies: Vec<&str> = first.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(bodies, [ev(1), ev(2)], "oldest first");
    s.ack_events(first.iter().map(|e| e.key.clone()).collect())
        .await
        .unwrap();
    let rest = s.claim_events(10).await.unwrap();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert_eq!(rest[0].body, ev(3));
    let m: serde_json::Value = serde_json::from_str(&rest[1].body).unwrap();
    assert_eq!(m["type"], "message.stored");
    assert_eq!(m["message"]["seq"], stored.seq);
    s.ack_events(rest.iter().map(|e| e.key.clone()).collect())
        .await
        .unwrap();
    assert!(s.claim_events(10).await.unwrap().is_empty());
}

async fn the_outbox_keeps_to_its_bounds(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let s = f.store.clone();
    let ev = |n: u32| {
        format!(
            r#"{{"id":"{n:04}","type":"user.online","pad":"{}"}}"#,
            "p".repeat(200)
        )
    };
    s.limit_outbox(super::OutboxLimits {
        max_bytes: 4_000,
        max_age: Duration::from_secs(3_600),
    });
    s.push_events((0..100).map(ev).collect()).await.unwrap();
    let n = 100;
    // Stores may trim in the background (each second).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let depth = loop {
        let d = s.outbox_depth().await.unwrap();
        if d.bytes <= 4_000 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "never trimmed: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(depth.events >= 1, "{depth:?}");
    // What is left is the newest, oldest first.
    let left = s.claim_events(1_000).await.unwrap();
    let ids: Vec<u32> = left
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(*ids.last().unwrap(), n - 1, "the newest is kept");
    assert!(ids[0] > 0, "the oldest went");
}

macro_rules! conformance {
    ($($name:ident),*) => {
        mod memory_store {
            $(#[tokio::test] async fn $name() { super::$name(super::memory).await })*
        }
        mod sqlite_store {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite).await })*
        }
        mod redis_store {
            $(#[tokio::test] async fn $name() {
                if super::redis_skipped(stringify!($name)) { return; }
                super::$name(super::redis).await
            })*
        }
    };
}

conformance!(
    seq_is_gap_free_per_channel_and_committed_in_order,
    appends_from_one_task_keep_their_order,
    dedupe_returns_the_original_ack,
    cursor_never_moves_back,
    read_pages_in_seq_order,
    retention_trims_and_reports_the_gap,
    cursors_stay_within_the_inbox,
    reading_past_the_end_finds_nothing,
    dedupe_is_per_user_and_channel_and_keys_never_collide,
    retention_by_age_removes_old_messages,
    the_outbox_keeps_events_until_acked,
    the_outbox_keeps_to_its_bounds,
    messages_are_found_by_msg_id,
    a_redaction_replaces_the_stored_body_in_place,
    read_positions_only_move_forward_within_the_log,
    unread_counts_business_messages_after_a_position,
    push_registrations_are_kept_per_user_up_to_the_limit,
    push_jobs_are_claimed_when_due_leased_and_finished
);
