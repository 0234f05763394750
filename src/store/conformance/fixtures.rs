//! The stores under test: a fixture per implementation (memory, SQLite in a
//! temporary folder, Redis on a real redis-server) and the requests the
//! cases append.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::Channel;
use crate::protocol::{Delivered, Id};
use crate::store::{
    AppendRequest, CommitSink, Committed, DedupeKey, MemoryStore, Retention, SqliteStore, Store,
};

/// Records what the store committed, in order.
#[derive(Default)]
pub(crate) struct Recorder(pub(super) Mutex<Vec<(Channel, u64)>>);

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

pub(super) fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

pub(super) fn request(channel: Channel, n: u64, cmid: Option<&str>) -> AppendRequest {
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
        chat: None,
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
        trace: None,
    }
}

/// A store under test, with whatever keeps it alive.
pub(super) struct Fixture {
    pub(super) store: Arc<dyn Store>,
    /// False for stores that publish by themselves (Redis) instead of
    /// calling the commit sink.
    pub(super) uses_sink: bool,
    /// The Redis server's address, for a test that changes keys behind
    /// the store's back.
    pub(super) redis_url: Option<String>,
    pub(super) _guard: Box<dyn std::any::Any + Send>,
}

pub(super) type Make =
    fn(Arc<Recorder>, Retention) -> futures_util::future::BoxFuture<'static, Fixture>;

pub(super) fn memory(
    rec: Arc<Recorder>,
    retention: Retention,
) -> futures_util::future::BoxFuture<'static, Fixture> {
    let store = Arc::new(MemoryStore::new(rec, retention, Duration::from_secs(60)));
    Box::pin(async move {
        Fixture {
            store,
            uses_sink: true,
            redis_url: None,
            _guard: Box::new(()),
        }
    })
}

pub(super) fn sqlite(
    rec: Arc<Recorder>,
    retention: Retention,
) -> futures_util::future::BoxFuture<'static, Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), rec, retention, Duration::from_secs(60)).unwrap();
    Box::pin(async move {
        Fixture {
            store: Arc::new(store),
            uses_sink: true,
            redis_url: None,
            _guard: Box::new(dir),
        }
    })
}

#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;

pub(super) fn redis(
    _rec: Arc<Recorder>,
    retention: Retention,
) -> futures_util::future::BoxFuture<'static, Fixture> {
    Box::pin(async move {
        let server = redis_server::RedisServer::launch(redis_server::Launch::default());
        let store = crate::store::RedisStore::connect(
            &server.url(),
            false,
            retention,
            Duration::from_secs(60),
            crate::store::Replication::default(),
        )
        .await
        .expect("the store connects to a running redis-server");
        Fixture {
            store: Arc::new(store),
            uses_sink: false,
            redis_url: Some(server.url()),
            _guard: Box::new(server),
        }
    })
}

/// Whether the Redis suite can run; when not, says why on the terminal
/// (past the test harness's capture), so a skip is never silent.
pub(super) fn redis_skipped(test: &str) -> bool {
    match redis_server::missing() {
        None => false,
        Some(reason) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED redis_store::{test}: {reason}");
            true
        }
    }
}
