//! The node's shared state, handed to every session and HTTP handler as one
//! cheap-clone handle: configuration, hub, router, authenticator, shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::{Hub, Router};
use crate::store::Store;

/// Everything a session or handler needs. Clone it freely.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    node_id: String,
    hub: Hub,
    router: Router,
    auth: Authenticator,
    /// Cancelled when the node begins to shut down: sessions close with 1001.
    shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them to finish.
    tasks: TaskTracker,
}

impl Gateway {
    /// Assembles a gateway.
    pub fn new(
        config: Config,
        node_id: String,
        hub: Hub,
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
    ) -> Self {
        let auth = Authenticator::new(config.jwt_secret.as_deref());
        let router = Router::new(store, broker);
        let inner = Inner {
            config,
            node_id,
            hub,
            router,
            auth,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The local routing hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The publish path.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.inner.router.store()
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        self.inner.router.broker()
    }

    /// The authenticator.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The shutdown signal.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The tracker of session tasks.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }
}
