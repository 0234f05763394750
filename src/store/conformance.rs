//! Behaviour every [`Store`] must show, run against each implementation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    AppendRequest, CommitSink, Committed, DedupeKey, MemoryStore, Retention, SqliteStore, Store,
};
use crate::model::Channel;
use crate::protocol::{Delivered, Id};

/// Records what the store committed, in order.
#[derive(Default)]
pub(super) struct Recorder(Mutex<Vec<(Channel, u64)>>);

impl CommitSink for Recorder {
    fn committed(&self, c: Committed) {
        assert_eq!(
            c.message.seq,
            serde_json::from_slice::<Delivered>(&c.payload).unwrap().seq
        );
        self.0
            .lock()
            .unwrap()
            .push((c.channel, c.message.seq.unwrap()));
    }
}

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

fn request(channel: Channel, n: u64, cmid: Option<&str>) -> AppendRequest {
    let message = Delivered {
        msg_type: 3,
        send_user_id: id("sender"),
        received_user_id: None,
        room_id: None,
        biz_type: None,
        biz_opt_module: None,
        msg_body: Some(serde_json::value::RawValue::from_string(n.to_string()).unwrap()),
        msg_id: format!("m{n}"),
        seq: None,
        ts: crate::model::now_ms(),
        volatile: false,
        latest: None,
    };
    let dedupe = cmid.map(|c| DedupeKey {
        user: id("sender"),
        client_msg_id: c.into(),
    });
    AppendRequest {
        channel,
        message,
        dedupe,
        origin: None,
    }
}

/// A store under test, with whatever keeps it alive.
struct Fixture {
    store: Arc<dyn Store>,
    /// False for stores that publish by themselves (Redis) instead of
    /// calling the commit sink.
    uses_sink: bool,
    _guard: Box<dyn std::any::Any + Send>,
}

type Make = fn(Arc<Recorder>, Retention) -> futures_util::future::BoxFuture<'static, Fixture>;

fn memory(
    rec: Arc<Recorder>,
    retention: Retention,
) -> futures_util::future::BoxFuture<'static, Fixture> {
    let store = Arc::new(MemoryStore::new(rec, retention, Duration::from_secs(60)));
    Box::pin(async move {
        Fixture {
            store,
            uses_sink: true,
            _guard: Box::new(()),
        }
    })
}

fn sqlite(
    rec: Arc<Recorder>,
    retention: Retention,
) -> futures_util::future::BoxFuture<'static, Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), rec, retention, Duration::from_secs(60)).unwrap();
    Box::pin(async move {
        Fixture {
            store: Arc::new(store),
            uses_sink: true,
            _guard: Box::new(dir),
        }
    })
}

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;

fn redis(
    _rec: Arc<Recorder>,
    retention: Retention,
) -> futures_util::future::BoxFuture<'static, Fixture> {
    Box::pin(async move {
        let server = redis_server::RedisServer::launch(redis_server::Launch::default());
        let store = super::RedisStore::connect(
            &server.url(),
            false,
            retention,
            Duration::from_secs(60),
            super::Replication::default(),
        )
        .await
        .expect("the store connects to a running redis-server");
        Fixture {
            store: Arc::new(store),
            uses_sink: false,
            _guard: Box::new(server),
        }
    })
}

/// Whether the Redis suite can run; when not, says why on the terminal
/// (past the test harness's capture), so a skip is never silent.
fn redis_skipped(test: &str) -> bool {
    match redis_server::missing() {
        None => false,
        Some(reason) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED redis_store::{test}: {reason}");
            true
        }
    }
}

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
    retention_by_age_removes_old_messages
);

/// Opens a SQLite store with default settings and a throwaway sink.
fn open_sqlite(dir: &std::path::Path) -> Result<SqliteStore, super::StoreError> {
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
    assert!(matches!(err, super::StoreError::Corrupt(_)), "{err}");
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
    assert!(matches!(err, super::StoreError::Unavailable(_)), "{err}");
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
