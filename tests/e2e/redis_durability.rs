//! Issue 27, item 13: in cluster mode an ack means "in Redis", and "on
//! disk" only when Redis persists every write before answering. A node
//! reads Redis's persistence settings at start and keeps reading them; it
//! says when acks cannot mean "on disk" (log, `/metrics`, `/readyz`), and
//! with `--redis-require-durable` refuses to run, or to be ready, without.

use std::time::{Duration, Instant};

use crate::common::{Server, refuses_to_start};
use crate::redis_server::{Launch, RedisServer};

async fn on_disk(s: &Server) -> Option<f64> {
    s.metrics().await.get("rtgate_redis_acks_on_disk").copied()
}

/// Polls `/readyz` until `done` holds for its answer (or 15 s pass).
async fn readyz_until(s: &Server, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = s.http("GET", "/readyz", &[], "").await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_redis_without_persistence_is_reported_and_can_be_refused() {
    let redis = RedisServer::launch(Launch::default());
    let url = redis.url();
    let s = Server::start(&["--redis", &url]);
    let (status, body) = s.http("GET", "/readyz", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("warning: acks mean in Redis memory, not on disk (appendonly is no)"),
        "{body}"
    );
    assert_eq!(on_disk(&s).await, Some(0.0));
    drop(s);
    let data = tempfile::tempdir().unwrap();
    let err = refuses_to_start(&[
        "--redis",
        &url,
        "--redis-require-durable",
        "--data",
        data.path().to_str().unwrap(),
    ]);
    assert!(
        err.contains("--redis-require-durable") && err.contains("appendonly is no"),
        "{err}"
    );
}

#[tokio::test]
async fn a_durable_redis_is_watched_and_a_change_of_its_settings_is_seen() {
    let redis = RedisServer::start();
    let s = Server::start(&["--redis", &redis.url(), "--redis-require-durable"]);
    let (status, body) = s.http("GET", "/readyz", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(on_disk(&s).await, Some(1.0));
    // Someone relaxes Redis: the node sees it within seconds and, since it
    // requires acks on disk, stops being ready.
    redis.config_set("appendfsync", "everysec");
    let (_, body) = readyz_until(&s, |st, _| st == 503).await;
    assert!(body.contains("appendfsync is everysec"), "{body}");
    assert_eq!(on_disk(&s).await, Some(0.0));
    redis.config_set("appendfsync", "always");
    readyz_until(&s, |st, b| st == 200 && b == "ready\n").await;
    assert_eq!(on_disk(&s).await, Some(1.0));
}
