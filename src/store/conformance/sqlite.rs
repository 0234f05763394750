//! SQLite-only behaviour: retention that keeps up with appends, reopening,
//! a second opener, a corrupt file, a failed commit.

use crate::store::ChatStore;
use std::sync::Arc;
use std::time::Duration;

use super::fixtures::{Recorder, id, request};
use crate::model::Channel;
use crate::store::{Retention, SqliteStore, Store};

/// Opens a SQLite store with default settings and a throwaway sink.
fn open_sqlite(dir: &std::path::Path) -> Result<SqliteStore, crate::store::StoreError> {
    SqliteStore::open(
        dir,
        Arc::new(Recorder::default()),
        Retention::default(),
        Duration::from_secs(60),
    )
}

#[tokio::test]
async fn sqlite_retention_by_count_keeps_up_with_appends() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_count: 10,
        ..Retention::default()
    };
    let store = Arc::new(
        SqliteStore::open(
            dir.path(),
            Arc::new(Recorder::default()),
            retention,
            Duration::from_secs(60),
        )
        .unwrap(),
    );
    // 4,000 appends to two channels, many in flight: more than a trim pass
    // of the old code removed in a second.
    let mut acks = Vec::new();
    for n in 0..4_000u64 {
        let ch = Channel::Room(id(if n % 2 == 0 { "a" } else { "b" }));
        acks.push(store.append(request(ch, n, None)));
    }
    for a in acks {
        a.await.unwrap();
    }
    // No waiting for a background trim: the table holds 10 per channel now.
    let conn = rusqlite::Connection::open(dir.path().join("rtgate.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 20);
    let page = store.read(&Channel::Room(id("a")), 0, 100).await.unwrap();
    assert_eq!(
        (page.latest, page.messages.len(), page.gap),
        (2_000, 10, true)
    );
}

#[tokio::test]
async fn sqlite_survives_reopen_and_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let ch = Channel::Room(id("persist"));
    {
        let store = open_sqlite(dir.path()).unwrap();
        store
            .append(request(ch.clone(), 1, Some("once")))
            .await
            .unwrap();
        for n in 0..9 {
            store
                .append(request(Channel::Inbox(id("u")), n, None))
                .await
                .unwrap();
        }
        store.set_cursor(&id("u"), 9).await.unwrap();
        let second = open_sqlite(dir.path());
        let err = second.err().expect("the folder is locked").to_string();
        assert!(err.contains("in use"), "{err}");
    }
    // The writer thread ends when the store is dropped; give it a moment.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = open_sqlite(dir.path()).unwrap();
    assert_eq!(store.latest(&ch).await.unwrap(), 1);
    assert_eq!(store.cursor(&id("u")).await.unwrap(), 9);
    assert!(
        store
            .append(request(ch.clone(), 2, Some("once")))
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(store.append(request(ch, 3, None)).await.unwrap().seq, 2);
}

#[test]
fn sqlite_reports_a_corrupt_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rtgate.db"), vec![0x42u8; 8192]).unwrap();
    let err = open_sqlite(dir.path())
        .err()
        .expect("a corrupt file is refused");
    assert!(matches!(err, crate::store::StoreError::Corrupt(_)), "{err}");
}

#[tokio::test]
async fn sqlite_failed_commit_is_an_error_not_an_ack_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = SqliteStore::open(
        dir.path(),
        rec.clone(),
        Retention::default(),
        Duration::from_secs(60),
    )
    .unwrap();
    let ch = Channel::Room(id("locked"));
    store.append(request(ch.clone(), 1, None)).await.unwrap();
    // Another process holds the database's write lock past the busy timeout.
    let other = rusqlite::Connection::open(dir.path().join("rtgate.db")).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store
        .append(request(ch.clone(), 2, Some("retry-me")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, crate::store::StoreError::Unavailable(_)),
        "{err}"
    );
    assert!(
        store.check().await.is_err(),
        "readiness reports the failure"
    );
    assert_eq!(
        rec.0.lock().unwrap().len(),
        1,
        "nothing failed was delivered"
    );
    other.execute_batch("COMMIT").unwrap();
    // The resend succeeds: the failed attempt left no dedupe key behind.
    let ok = store
        .append(request(ch.clone(), 2, Some("retry-me")))
        .await
        .unwrap();
    assert_eq!((ok.seq, ok.duplicate), (2, false));
    assert!(store.check().await.is_ok());
}

#[tokio::test]
async fn sqlite_answers_from_memory_match_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).unwrap();
    for n in 0..30u64 {
        let ch = match n % 3 {
            0 => Channel::Room(id("a")),
            1 => Channel::Room(id("b")),
            _ => Channel::Inbox(id("u")),
        };
        store.append(request(ch, n, None)).await.unwrap();
    }
    store.set_cursor(&id("u"), 4).await.unwrap();
    // A cursor beyond the inbox is stored clamped, and stays monotonic.
    store.set_cursor(&id("u"), 99).await.unwrap();
    store.set_cursor(&id("u"), 2).await.unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("rtgate.db")).unwrap();
    for ch in ["a", "b"] {
        let on_disk: i64 = conn
            .query_row(
                "SELECT last_seq FROM channels WHERE channel = ?1",
                [format!("r:{ch}")],
                |r| r.get(0),
            )
            .unwrap();
        let ch = Channel::Room(id(ch));
        assert_eq!(store.latest(&ch).await.unwrap(), on_disk as u64);
        // Nothing after the latest: an empty page, no gap.
        let page = store.read(&ch, on_disk as u64, 10).await.unwrap();
        assert_eq!((page.latest, page.messages.len(), page.gap), (10, 0, false));
    }
    let cursor: i64 = conn
        .query_row("SELECT seq FROM cursors WHERE user = 'u'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(cursor, 10);
    assert_eq!(store.cursor(&id("u")).await.unwrap(), 10);
    assert_eq!(store.cursor(&id("nobody")).await.unwrap(), 0);
    assert_eq!(store.latest(&Channel::Room(id("never"))).await.unwrap(), 0);
}

/// Read positions answered without the disk for users who hold none: the
/// mirror of who holds some follows writes and is loaded at open, so a
/// user's positions are never missed (a login's unread counts use them).
#[tokio::test]
async fn sqlite_read_positions_are_found_after_a_write_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let room = Channel::Room(id("r"));
    {
        let store = open_sqlite(dir.path()).unwrap();
        for n in 1..=3 {
            store.append(request(room.clone(), n, None)).await.unwrap();
        }
        assert!(store.read_positions(&id("ann")).await.unwrap().is_empty());
        let mark = crate::store::chat::ReadMark {
            channel: room.clone(),
            user: id("ann"),
            seq: 2,
        };
        store.set_reads(vec![mark]).await.unwrap();
        assert_eq!(
            store.read_positions(&id("ann")).await.unwrap(),
            [(room.clone(), 2)]
        );
    }
    let store = open_sqlite(dir.path()).unwrap();
    assert_eq!(
        store.read_positions(&id("ann")).await.unwrap(),
        [(room.clone(), 2)]
    );
    assert!(store.read_positions(&id("bob")).await.unwrap().is_empty());
}

/// A data folder of the previous version (outbox without times) opens: its
/// events are kept and delivered, new ones get a time.
#[tokio::test]
async fn sqlite_opens_a_version_2_outbox() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("rtgate.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
             INSERT INTO outbox (body) VALUES ('{\"id\":\"old\"}');
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = open_sqlite(dir.path()).unwrap();
    store
        .push_events(vec![r#"{"id":"new"}"#.into()])
        .await
        .unwrap();
    let events = store.claim_events(10).await.unwrap();
    let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(bodies, [r#"{"id":"old"}"#, r#"{"id":"new"}"#]);
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("rtgate.db")).unwrap();
    let times: Vec<i64> = conn
        .prepare("SELECT ts FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(times[0], 0);
    assert!(times[1] > 0);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
}

/// A data folder of version 3 (no msgId column, no read positions) opens:
/// its messages are found by msgId and count as unread.
#[tokio::test]
async fn sqlite_opens_a_version_3_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("rtgate.db")).unwrap();
        conn.execute_batch(
            r#"CREATE TABLE channels (channel TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE messages (channel TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
                 payload BLOB NOT NULL, PRIMARY KEY (channel, seq)) WITHOUT ROWID;
             INSERT INTO channels VALUES ('r:old', 2);
             INSERT INTO messages VALUES ('r:old', 1, 1, CAST('{"msgType":3,"msgId":"o1","seq":1}' AS BLOB));
             INSERT INTO messages VALUES ('r:old', 2, 2, CAST('{"msgType":3,"msgId":"o2","seq":2}' AS BLOB));
             PRAGMA user_version = 3;"#,
        )
        .unwrap();
    }
    let store = open_sqlite(dir.path()).unwrap();
    let room = Channel::Room(id("old"));
    let found = store.locate(vec!["o2".into()]).await.unwrap();
    assert_eq!((found.len(), found[0].seq), (1, 2));
    assert_eq!(store.unread(&room, 0).await.unwrap(), 2);
    assert_eq!(
        store
            .set_reads(vec![crate::store::ReadMark {
                channel: room.clone(),
                user: id("u"),
                seq: 1
            }])
            .await
            .unwrap(),
        [1]
    );
}
