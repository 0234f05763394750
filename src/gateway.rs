//! The node's shared state, handed to every session and HTTP handler as one
//! cheap-clone handle: configuration, hub, router, authenticator, shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::budgets::UserBudgets;
use crate::caps::ConnLimiter;
use crate::certs::CurrentCertificate;
use crate::chat::Chat;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::hub::Hub;
use crate::push::Pusher;
use crate::routing::Publisher;
use crate::store::Store;
use crate::transport::sse::SseSessions;
use crate::webhook::Quarantine;

/// What `/cert-hash` needs to know about the WebTransport endpoint.
#[derive(Debug, Clone)]
pub struct WtInfo {
    /// The bound UDP address.
    pub addr: SocketAddr,
    /// The certificate in use.
    pub identity: CurrentCertificate,
    /// True for the generated development certificate (browsers need its
    /// hash); false for an operator's certificate.
    pub dev: bool,
}

/// Everything a session or handler needs. Clone it freely.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Shared>,
}

struct Shared {
    config: Config,
    node_id: String,
    hub: Hub,
    publisher: Publisher,
    auth: Authenticator,
    /// Cancelled when the node begins to shut down: sessions close with 1001.
    shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for them to finish.
    tasks: TaskTracker,
    /// The connection caps, shared by both transports.
    conns: Arc<ConnLimiter>,
    /// Per-user budgets across a user's sessions.
    budgets: UserBudgets,
    /// The backend's hooks.
    hooks: Arc<Hooks>,
    /// Set once the WebTransport endpoint is up.
    wt: OnceLock<WtInfo>,
    /// Events the event webhook refused and this node set aside.
    quarantine: Arc<Quarantine>,
    /// Receipts, read positions, amendments, typing.
    chat: Chat,
    /// The HTTP fallback's sessions.
    sse: Arc<SseSessions>,
    /// Push to offline users.
    push: Pusher,
}

impl Gateway {
    /// Assembles a gateway.
    pub(crate) fn new(
        config: Config,
        node_id: String,
        hub: Hub,
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        push: Pusher,
        shutdown: CancellationToken,
    ) -> Self {
        let auth = Authenticator::new(config.auth.jwt_secret.as_ref().map(|s| s.expose()));
        let chat = Chat::new(store.clone(), broker.clone(), hub.clone());
        let publisher = Publisher::new(store, broker).watched_by(Arc::new(push.clone()));
        let budgets = UserBudgets::new(
            config.limits.user_rate_limit,
            config.limits.max_recipients_per_min,
        );
        let conns = ConnLimiter::new(config.limits.max_conns, config.limits.max_conns_per_ip);
        let hooks = Arc::new(Hooks::new(&config.hooks, config.limits.max_frame));
        let inner = Shared {
            config,
            node_id,
            hub,
            publisher,
            auth,
            shutdown,
            tasks: TaskTracker::new(),
            conns,
            budgets,
            hooks,
            wt: OnceLock::new(),
            quarantine: Arc::default(),
            chat,
            sse: Arc::default(),
            push,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Events the event webhook refused and this node set aside.
    pub(crate) fn quarantine(&self) -> &Arc<Quarantine> {
        &self.inner.quarantine
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
    pub fn publisher(&self) -> &Publisher {
        &self.inner.publisher
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.inner.publisher.store()
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        self.inner.publisher.broker()
    }

    /// The authenticator.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// The shutdown signal.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// The WebTransport endpoint, once started.
    pub fn wt(&self) -> Option<&WtInfo> {
        self.inner.wt.get()
    }

    /// Records the WebTransport endpoint (once).
    pub fn set_wt(&self, info: WtInfo) {
        let _ = self.inner.wt.set(info);
    }

    /// The backend's hooks.
    pub(crate) fn hooks(&self) -> &Arc<Hooks> {
        &self.inner.hooks
    }

    /// The per-user budgets.
    pub(crate) fn budgets(&self) -> &UserBudgets {
        &self.inner.budgets
    }

    /// Receipts, read positions, amendments, typing.
    pub(crate) fn chat(&self) -> &Chat {
        &self.inner.chat
    }

    /// Push to offline users.
    pub(crate) fn push(&self) -> &Pusher {
        &self.inner.push
    }

    /// The HTTP fallback's sessions.
    pub(crate) fn sse(&self) -> &Arc<SseSessions> {
        &self.inner.sse
    }

    /// The connection caps.
    pub(crate) fn conns(&self) -> &Arc<ConnLimiter> {
        &self.inner.conns
    }

    /// The tracker of session tasks.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }
}
