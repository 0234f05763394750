//! Whether an ack in cluster mode means "on disk". An ack means "in Redis";
//! it means "on disk" only when every primary appends each write to its AOF
//! and fsyncs it before answering (`appendonly yes`, `appendfsync always`).
//! A node reads those settings at start and keeps reading them (a Redis
//! restarted with another configuration changes the answer), says so in the
//! log, `/metrics` and `/readyz`, and with `--redis-require-durable` refuses
//! to run without them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Value;
use tracing::{info, warn};

use super::RedisConn;

/// How often the settings are read again after start.
const RECHECK: Duration = Duration::from_secs(5);

/// What Redis's persistence settings make of an ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Every primary fsyncs each write before answering.
    OnDisk,
    /// An acked message can be lost when Redis restarts, and why.
    MemoryOnly(String),
    /// The settings could not be read (`CONFIG` renamed or refused, as
    /// managed services do, or Redis unreachable), and why.
    Unknown(String),
}

impl Durability {
    /// What `/readyz` and the log say when acks may not be on disk.
    pub(crate) fn caveat(&self) -> Option<String> {
        match self {
            Durability::OnDisk => None,
            Durability::MemoryOnly(why) => Some(format!(
                "acks mean in Redis memory, not on disk ({why}); set appendonly yes and appendfsync always"
            )),
            Durability::Unknown(why) => {
                Some(format!("cannot tell whether acks are on disk ({why})"))
            }
        }
    }

    /// Judges `CONFIG GET` answers: every `appendonly` must be `yes` and
    /// every `appendfsync` `always` (one pair per primary in a cluster).
    pub(crate) fn judge(pairs: &[(String, String)]) -> Durability {
        let of = |key: &str| -> Vec<&str> {
            pairs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let (aof, fsync) = (of("appendonly"), of("appendfsync"));
        if aof.is_empty() || fsync.is_empty() {
            return Durability::Unknown("CONFIG GET answered without the settings".into());
        }
        if let Some(v) = aof.iter().find(|v| !v.eq_ignore_ascii_case("yes")) {
            return Durability::MemoryOnly(format!("appendonly is {v}"));
        }
        if let Some(v) = fsync.iter().find(|v| !v.eq_ignore_ascii_case("always")) {
            return Durability::MemoryOnly(format!("appendfsync is {v}"));
        }
        Durability::OnDisk
    }
}

/// Reads the persistence settings of Redis (of every primary in a cluster).
pub(crate) async fn read(conn: &mut RedisConn) -> Durability {
    query(conn)
        .await
        .unwrap_or_else(|e| Durability::Unknown(e.to_string()))
}

async fn query(conn: &mut RedisConn) -> redis::RedisResult<Durability> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("append*");
    let v = match conn {
        RedisConn::Single(_) => cmd.query_async::<Value>(conn).await,
        RedisConn::Cluster(c) => {
            use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
            let to = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            super::within(c.route_command(cmd, to)).await
        }
    };
    // A refused CONFIG (renamed, ACL) is an answer: "unknown".
    let v = match v {
        Ok(v) => v,
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
            return Ok(Durability::Unknown(e.to_string()));
        }
        Err(e) => return Err(e),
    };
    let mut pairs = Vec::new();
    collect_pairs(&v, &mut pairs);
    Ok(Durability::judge(&pairs))
}

/// Setting/value pairs anywhere in a `CONFIG GET` answer: a RESP3 map, a
/// RESP2 flat array, or a cluster's map of node to either.
fn collect_pairs(v: &Value, out: &mut Vec<(String, String)>) {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::Map(kv) => {
            for (k, v) in kv {
                match (text(k), text(v)) {
                    (Some(k), Some(v)) => out.push((k, v)),
                    _ => collect_pairs(v, out),
                }
            }
        }
        Value::Array(items) => {
            if items.iter().all(|i| text(i).is_some()) {
                for pair in items.chunks(2) {
                    if let [k, v] = pair {
                        out.push((text(k).unwrap_or_default(), text(v).unwrap_or_default()));
                    }
                }
            } else {
                items.iter().for_each(|i| collect_pairs(i, out));
            }
        }
        _ => {}
    }
}

/// The settings as last read, shared with `/readyz`.
pub(crate) type Shared = Arc<Mutex<Durability>>;

/// Reads the settings now, then every [`RECHECK`] until the connection's
/// owner goes away; each change is logged and sets
/// `rtgate_redis_acks_on_disk`.
pub(crate) async fn watch(mut conn: RedisConn) -> Shared {
    let first = read(&mut conn).await;
    report(&first);
    let shared = Arc::new(Mutex::new(first));
    let weak = Arc::downgrade(&shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECHECK).await;
            let Some(shared) = weak.upgrade() else { return };
            // Unreachable is not news about persistence (the broker and
            // readiness say Redis is gone); the next answer after a
            // reconnect is.
            let Ok(now) = query(&mut conn).await else {
                continue;
            };
            let changed = {
                let mut cur = shared.lock().expect("not poisoned");
                let changed = *cur != now;
                *cur = now.clone();
                changed
            };
            if changed {
                report(&now);
            }
        }
    });
    shared
}

fn report(d: &Durability) {
    metrics::gauge!("rtgate_redis_acks_on_disk").set(if *d == Durability::OnDisk {
        1.0
    } else {
        0.0
    });
    match d.caveat() {
        None => info!("redis persists every write before answering: acks mean on disk"),
        Some(c) => warn!("{c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_aof_with_fsync_always_on_every_primary_is_on_disk() {
        let on = [("appendonly", "yes"), ("appendfsync", "always")];
        assert_eq!(Durability::judge(&pairs(&on)), Durability::OnDisk);
        let second_fsync = [
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("appendonly", "yes"),
            ("appendfsync", "everysec"),
        ];
        assert_eq!(
            Durability::judge(&pairs(&second_fsync)),
            Durability::MemoryOnly("appendfsync is everysec".into())
        );
        let off = [("appendonly", "no"), ("appendfsync", "always")];
        assert!(
            Durability::judge(&pairs(&off))
                .caveat()
                .unwrap()
                .contains("appendonly is no")
        );
        assert!(matches!(Durability::judge(&[]), Durability::Unknown(_)));
    }

    #[test]
    fn config_answers_are_read_in_every_shape() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![
            bulk("appendonly"),
            bulk("yes"),
            bulk("appendfsync"),
            bulk("always"),
        ]);
        let resp3 = Value::Map(vec![
            (bulk("appendonly"), bulk("no")),
            (bulk("appendfsync"), bulk("always")),
        ]);
        let cluster = Value::Map(vec![
            (bulk("127.0.0.1:7000"), resp2.clone()),
            (bulk("127.0.0.1:7001"), resp3.clone()),
        ]);
        let mut out = Vec::new();
        collect_pairs(&cluster, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(
            Durability::judge(&out),
            Durability::MemoryOnly("appendonly is no".into())
        );
        let mut out = Vec::new();
        collect_pairs(&resp2, &mut out);
        assert_eq!(Durability::judge(&out), Durability::OnDisk);
    }
}
