//! Assembles a node from its configuration (store, broker, hub, listeners)
//! and runs it until shutdown, then drains: sessions are told to go away
//! (close 1001) and given a deadline to finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::https::TlsListener;
use crate::api::serve::{CappedListener, serve};
use crate::broker::{Broker, LocalBroker, RedisBroker};
use crate::certs::{self, CurrentCertificate};
use crate::config::{Config, StoreKind};
use crate::gateway::Gateway;
use crate::gateway::WtInfo;
use crate::hub::Hub;
use crate::protocol::CloseCode;
use crate::routing::Dispatcher;
use crate::store::{MemoryStore, RedisStore, Replication, Retention, SqliteStore, Store};
use crate::transport::webtransport::{QuicOptions, WtEndpoint};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Redis (cluster mode) is not reachable or refused.
    #[error("redis at start: {0}")]
    Redis(String),
    /// The WebTransport endpoint could not start.
    #[error("webtransport: {0}")]
    Wt(#[from] crate::transport::webtransport::WtError),
    /// The certificate could not be loaded or generated.
    #[error("certificate: {0}")]
    Tls(#[from] crate::certs::TlsError),
    /// Push could not be set up (a key, a certificate).
    #[error("{0}")]
    Push(#[from] crate::push::PushError),
    /// The data folder is not usable.
    #[error("data folder {path}: {source}")]
    Data {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running node.
pub struct Running {
    /// The bound HTTP/WebSocket address.
    pub http_addr: SocketAddr,
    /// The bound metrics address, when `/metrics` has its own listener.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound WebTransport (UDP) address.
    pub wt_addr: SocketAddr,
    wt: Arc<WtEndpoint>,
    gw: Gateway,
    http: JoinHandle<()>,
}

/// Starts a node: binds its listeners and serves in background tasks.
pub async fn start(config: Config) -> Result<Running, ServerError> {
    std::fs::create_dir_all(&config.store.data).map_err(|source| ServerError::Data {
        path: config.store.data.clone(),
        source,
    })?;
    let node_id = match &config.cluster.node_id {
        Some(id) => id.clone(),
        None => node_id_from(&config.store.data)?,
    };
    let metrics = crate::telemetry::install();
    let hub = Hub::new();
    let retention = Retention {
        max_count: config.store.retention_count,
        max_age: config.store.retention_age,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (broker, store): (Arc<dyn Broker>, Arc<dyn Store>) = match &config.cluster.redis {
        Some(url) => {
            // Cluster mode: Pub/Sub between nodes, presence and the store in Redis.
            let broker = RedisBroker::connect(
                url,
                config.cluster.redis_cluster,
                node_id.clone(),
                hub.clone(),
                config.cluster.presence_ttl,
                shutdown.clone(),
            )
            .await
            .map_err(|e| ServerError::Redis(e.to_string()))?;
            let store = RedisStore::connect(
                url,
                config.cluster.redis_cluster,
                retention,
                config.store.dedupe_window,
                Replication {
                    replicas: config.cluster.wait_replicas,
                    timeout: config.cluster.wait_timeout,
                    require_on_disk: config.cluster.require_durable,
                },
            )
            .await
            .map_err(|e| ServerError::Redis(e.to_string()))?;
            (broker, Arc::new(store))
        }
        None => {
            let broker: Arc<dyn Broker> = Arc::new(LocalBroker::new(hub.clone(), node_id.clone()));
            let sink = Arc::new(Dispatcher::new(broker.clone()));
            let store: Arc<dyn Store> = match config.store.kind {
                StoreKind::Sqlite => Arc::new(SqliteStore::open(
                    &config.store.data,
                    sink,
                    retention,
                    config.store.dedupe_window,
                )?),
                StoreKind::Memory => Arc::new(MemoryStore::new(
                    sink,
                    retention,
                    config.store.dedupe_window,
                )),
            };
            (broker, store)
        }
    };
    let push = crate::push::Pusher::new(
        &config.push,
        crate::push::Parts {
            store: store.clone(),
            broker: broker.clone(),
            hub: hub.clone(),
            dev_data: crate::push::dev_data(config.dev_mode(), &config.store.data),
            events: config.hooks.event.is_some(),
            shutdown: shutdown.clone(),
        },
    )?;
    let gw = Gateway::new(
        config.clone(),
        node_id.clone(),
        hub,
        store.clone(),
        broker.clone(),
        push,
        shutdown,
    );
    if gw.hooks().has_events() {
        store.record_stored_events();
        broker.set_edges(Arc::new(crate::webhook::EdgeRecorder::new(store.clone())));
        crate::telemetry::events_registered();
        let hooks = &config.hooks;
        let delivery = crate::webhook::Delivery {
            limits: crate::store::OutboxLimits {
                max_bytes: hooks.outbox_max_bytes,
                max_age: hooks.outbox_max_age,
            },
            batch_bytes: hooks.event_batch_bytes,
        };
        tokio::spawn(crate::webhook::deliver(
            store,
            gw.hooks().clone(),
            gw.quarantine().clone(),
            delivery,
            gw.shutdown().clone(),
        ));
    }

    let listener = TcpListener::bind(config.listen.http)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen.http,
        source,
    })?;
    let dev_cert = config.tls.cert.is_none();
    let dev_validity = config.tls.dev_validity.unwrap_or(certs::DEV_VALIDITY);
    let identity = CurrentCertificate::new(match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => certs::load_pem(cert, key)?,
        _ => certs::dev_identity(&config.store.data, dev_validity)?,
    });
    let app = crate::api::routes(gw.clone());
    let stop = gw.shutdown().clone();
    let http = if config.tls.https {
        let listener = TlsListener::new(listener, identity.clone(), gw.clone())?;
        tokio::spawn(serve(listener, app, stop))
    } else {
        tokio::spawn(serve(CappedListener::new(listener, gw.clone()), app, stop))
    };
    let quic = QuicOptions {
        keepalive: config.quic.keepalive,
        idle_timeout: config.quic.idle_timeout,
        congestion: config.quic.congestion,
        max_frame: config.limits.max_frame,
    };
    let wt = Arc::new(WtEndpoint::bind(config.listen.wt, identity, quic)?);
    crate::quic::serve(&wt, &gw);
    let wt_addr = wt.addr;
    gw.set_wt(WtInfo {
        addr: wt_addr,
        identity: wt.identity().clone(),
        dev: dev_cert,
    });
    if dev_cert {
        tokio::spawn(renew_dev_certificate(
            wt.clone(),
            config.store.data.join("certs"),
            dev_validity,
            gw.shutdown().clone(),
        ));
    }
    let metrics_addr = match config.listen.metrics {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            let app = crate::api::metrics_routes(gw.clone());
            let stop = gw.shutdown().clone();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
            });
            Some(bound)
        }
        None => None,
    };
    let stop = gw.shutdown().clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = crate::telemetry::upkeep(metrics) => {}
            _ = stop.cancelled() => {}
        }
    });
    let (stop, budgets) = (gw.shutdown().clone(), gw.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => budgets.budgets().sweep(),
                _ = stop.cancelled() => return,
            }
        }
    });
    info!(%http_addr, %wt_addr, ?metrics_addr, node = %node_id, dev_mode = config.dev_mode(), "rtgate listening");
    Ok(Running {
        http_addr,
        metrics_addr,
        wt_addr,
        wt,
        gw,
        http,
    })
}

/// Replaces the development certificate before it expires (browsers
/// refuse `serverCertificateHashes` of expired or long-lived certificates).
async fn renew_dev_certificate(
    wt: Arc<WtEndpoint>,
    dir: PathBuf,
    validity: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    // Hourly, or often enough for a certificate a test made short-lived.
    let every = std::time::Duration::from_secs(3600).min(validity / 8);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if !wt.identity().get().needs_renewal() {
            continue;
        }
        match certs::write_dev(&dir, validity)
            .map_err(ServerError::from)
            .and_then(|id| Ok(wt.set_identity(id)?))
        {
            Ok(()) => info!("development certificate renewed"),
            Err(e) => warn!(error = %e, "renewing the development certificate failed"),
        }
    }
}

/// Reads the node id kept in the data folder, creating it on first start.
fn node_id_from(data: &Path) -> Result<String, ServerError> {
    let path = data.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let id = format!("node-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
            std::fs::write(&path, format!("{id}\n"))
                .map_err(|source| ServerError::Data { path, source })?;
            Ok(id)
        }
    }
}

impl Running {
    /// The node's shared state.
    pub fn gateway(&self) -> &Gateway {
        &self.gw
    }

    /// Stops accepting, tells every session to go away (1001), and waits up
    /// to the drain deadline for sessions to finish.
    pub async fn shutdown(self) {
        let gw = self.gw;
        info!(sessions = gw.hub().session_count(), "draining");
        // Leave the cluster's presence first, while the hub still knows
        // which users this node held.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), gw.broker().leave()).await;
        gw.shutdown().cancel();
        gw.hub().close_all(CloseCode::GoingAway);
        gw.tasks().close();
        if tokio::time::timeout(gw.config().ops.drain, gw.tasks().wait())
            .await
            .is_err()
        {
            warn!("drain deadline passed with sessions still open");
        }
        let _ = tokio::time::timeout(gw.config().ops.drain, self.http).await;
        self.wt.close();
        info!("stopped");
    }
}
