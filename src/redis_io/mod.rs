//! Everything rtgate says to Redis goes through here: the connection type
//! (one Redis or a Redis Cluster, RESP3 with push messages, timeouts and
//! reconnects), and the wire format of envelopes on Pub/Sub. The store and
//! the broker both use it; neither imports the other.

pub(crate) mod durability;
pub(crate) mod envelope;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, Value};
use tokio::sync::mpsc;

use crate::telemetry;

/// Longest any Redis call may take. Past it the call fails, so a Redis that
/// is gone makes requests fail fast instead of hanging them.
pub(crate) const DEADLINE: Duration = Duration::from_millis(800);

/// `fut` within [`DEADLINE`], a timeout being an I/O error.
async fn within<T>(fut: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("redis did not answer within {} ms", DEADLINE.as_millis()),
        )
        .into()),
    }
}

/// A connection to one Redis, or to a Redis Cluster (sharded Pub/Sub).
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One Redis (or one address in front of a primary).
    Single(ConnectionManager),
    /// A Redis Cluster: commands routed by slot, `SSUBSCRIBE`/`SPUBLISH`.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        let fut = match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(within(fut))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        let fut = match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        };
        Box::pin(within(fut))
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    /// Connects. `url` is one URL, or with `cluster` a comma-separated list
    /// of seed nodes. `push` receives Pub/Sub messages (RESP3 pushes);
    /// its flag is set when one had to be dropped.
    pub(crate) async fn connect(
        url: &str,
        cluster: bool,
        push: Option<(mpsc::Sender<PushInfo>, Arc<AtomicBool>)>,
    ) -> redis::RedisResult<Self> {
        let sender = push.map(|(tx, lost)| {
            move |info: PushInfo| {
                // Never block the connection: a full queue drops (the
                // message stays in the store for replay), is counted, and
                // the broker has the node's sessions resync.
                tx.try_send(info).map_err(|_| {
                    telemetry::broker_dropped();
                    lost.store(true, Ordering::Release);
                    redis::aio::SendError
                })
            }
        });
        if cluster {
            let seeds: Vec<String> = url.split(',').map(|u| resp3(u.trim())).collect();
            let mut b = redis::cluster::ClusterClientBuilder::new(seeds)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .connection_timeout(DEADLINE)
                .response_timeout(DEADLINE);
            if let Some(s) = sender {
                b = b.push_sender(s);
            }
            let client = b.build()?;
            Ok(Self::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(resp3(url))?;
            let mut config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(DEADLINE))
                .set_response_timeout(Some(DEADLINE))
                .set_max_delay(Duration::from_secs(2));
            if let Some(s) = sender {
                config = config.set_push_sender(s).set_automatic_resubscription();
            }
            Ok(Self::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
    }

    /// True for a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The publish command: `PUBLISH`, or `SPUBLISH` in a cluster.
    pub(crate) fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// A `PING`, within the deadline: whether Redis answers (readiness).
    pub(crate) async fn ping(&mut self) -> redis::RedisResult<()> {
        redis::cmd("PING")
            .query_async::<String>(self)
            .await
            .map(|_| ())
    }

    /// Subscribes to a channel (`SSUBSCRIBE` in a cluster).
    pub(crate) async fn subscribe(&mut self, channel: String) -> redis::RedisResult<()> {
        within(async {
            match self {
                Self::Single(c) => c.subscribe(channel).await,
                Self::Cluster(c) => c.ssubscribe(channel).await,
            }
        })
        .await
    }

    /// Unsubscribes from a channel.
    pub(crate) async fn unsubscribe(&mut self, channel: String) -> redis::RedisResult<()> {
        within(async {
            match self {
                Self::Single(c) => c.unsubscribe(channel).await,
                Self::Cluster(c) => c.sunsubscribe(channel).await,
            }
        })
        .await
    }

    /// Waits until the writes made so far reach `replicas` replicas, or
    /// `timeout` passes, on the primary of each key's slot (one primary for
    /// a single Redis); answers the fewest replicas any of them reached.
    pub(crate) async fn wait_replicas(
        &mut self,
        keys: &[String],
        replicas: usize,
        timeout: Duration,
    ) -> redis::RedisResult<usize> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout.as_millis() as u64);
        match self {
            Self::Single(_) => {
                let n: usize = wait.query_async(self).await?;
                Ok(n)
            }
            Self::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let mut fewest = usize::MAX;
                for key in keys {
                    let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                    let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    let v = within(c.route_command(wait.clone(), to)).await?;
                    fewest = fewest.min(redis::from_redis_value::<usize>(v)?);
                }
                Ok(if fewest == usize::MAX {
                    replicas
                } else {
                    fewest
                })
            }
        }
    }

    /// Runs a command on the node that holds `key` (in a cluster, where
    /// the client cannot route a command by its key itself, such as
    /// `MEMORY USAGE`).
    pub(crate) async fn query_at_key<T: redis::FromRedisValue>(
        &mut self,
        cmd: redis::Cmd,
        key: &str,
    ) -> redis::RedisResult<T> {
        match self {
            Self::Single(_) => cmd.query_async(self).await,
            Self::Cluster(c) => {
                use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let v = within(c.route_command(cmd, to)).await?;
                Ok(redis::from_redis_value(v)?)
            }
        }
    }

    /// Runs commands in order: one pipeline on a single Redis; one by one
    /// (pipelined per node by the client) in a cluster, where a pipeline may
    /// not span slots.
    pub(crate) async fn run_all(
        &mut self,
        cmds: Vec<redis::Cmd>,
    ) -> redis::RedisResult<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Single(_) => {
                let mut pipe = redis::pipe();
                for c in cmds {
                    pipe.add_command(c);
                }
                pipe.query_async(self).await
            }
            Self::Cluster(c) => {
                let futs = cmds.into_iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<Value>(&mut c).await }
                });
                futures_util::future::join_all(futs)
                    .await
                    .into_iter()
                    .collect()
            }
        }
    }
}

/// Switches the URL to RESP3 (push messages on a multiplexed connection).
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_switch_to_resp3() {
        assert_eq!(resp3("redis://h:1"), "redis://h:1?protocol=resp3");
        assert_eq!(resp3("redis://h:1?db=2"), "redis://h:1?db=2&protocol=resp3");
        assert_eq!(
            resp3("redis://h:1?protocol=resp2"),
            "redis://h:1?protocol=resp2"
        );
    }
}
