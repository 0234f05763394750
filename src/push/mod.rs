//! Push to offline users (PROTOCOL.md section 12). The node that stores a
//! direct message opens (or extends) its recipient's push window; when the
//! window ends (`--push-delay-ms` after its first message) the messages
//! that reached no session of the user anywhere in the cluster (see
//! [`crate::hub::reached`]) are *undelivered*: one `inbox.undelivered`
//! event goes to the outbox, and one push to each of the user's
//! registrations (Web Push, APNs, FCM), merged over the window. One node
//! pushes a user at a time (the broker's claim); a push the service
//! cannot take now is sent again with backoff. Windows and pushes waiting
//! to be tried again are also jobs in the store (`jobs.rs`), so a node
//! that dies loses none.

mod apns;
mod client;
mod deliver;
mod fcm;
mod jobs;
mod lifecycle;
pub(crate) mod webpush;
mod window;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, Shared};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::broker::Broker;
use crate::config::PushConfig;
use crate::hub::Hub;
use crate::model::now_ms;
pub(crate) use crate::model::watch::PREVIEW_CHARS;
use crate::model::watch::{InboxWatch, StoredDirect};
use crate::protocol::push::Address;
use crate::protocol::{Id, ProtoError};
use crate::store::{Registration, Store};
use window::Window;

/// How often a window another node held is tried again, at most.
const MAX_DEFERRALS: u32 = 5;
/// How often this node's reached marks are shared with the cluster.
const SHARE_EVERY: Duration = Duration::from_millis(200);

/// Why push cannot be set up, or one push could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A key or certificate file is missing or unusable.
    #[error("push key: {0}")]
    Key(String),
    /// A stored registration cannot be pushed to.
    #[error("push address: {0}")]
    Address(String),
    /// FCM's token URI gave no access token.
    #[error("FCM access token: {0}")]
    Token(String),
}

/// What a push service's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Taken.
    Sent,
    /// The registration is gone: remove it.
    Gone,
    /// Later (429, 5xx, unreachable).
    Retry,
    /// The credentials expired: renew them and send again.
    Renew,
    /// Refused for good.
    Failed,
}

/// What one push says.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    /// The newest undelivered message.
    pub(crate) msg_id: String,
    /// Its sender.
    pub(crate) from: Id,
    /// Its room context.
    pub(crate) room: Option<Id>,
    /// How many are undelivered.
    pub(crate) count: u64,
    /// The newest one's start, with `--push-preview`.
    pub(crate) preview: Option<String>,
}

impl Notice {
    /// The notice a [`Notice::payload`] describes.
    pub(crate) fn from_payload(p: &serde_json::Value) -> Option<Notice> {
        Some(Notice {
            msg_id: p["msgId"].as_str()?.to_owned(),
            from: Id::parse(p["from"].as_str()?).ok()?,
            room: p["roomId"].as_str().and_then(|r| Id::parse(r).ok()),
            count: p["count"].as_u64()?,
            preview: p["preview"].as_str().map(str::to_owned),
        })
    }

    /// The payload of PROTOCOL.md section 12.
    pub(crate) fn payload(&self) -> serde_json::Value {
        let mut p = json!({
            "msgId": self.msg_id,
            "from": self.from.as_str(),
            "count": self.count,
        });
        if let Some(r) = &self.room {
            p["roomId"] = json!(r.as_str());
        }
        if let Some(t) = &self.preview {
            p["preview"] = json!(t);
        }
        p
    }
}

/// The services this node pushes through.
struct Services {
    webpush: Option<webpush::Vapid>,
    apns: Option<apns::Apns>,
    fcm: Option<fcm::Fcm>,
    client: client::HttpsClient,
}

/// Done once a window's job is written (or could not be).
type Written = Shared<oneshot::Receiver<()>>;

struct Inner {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    delay: Duration,
    preview: bool,
    webpush_hosts: Vec<String>,
    /// Whether `inbox.undelivered` events go to the outbox.
    events: bool,
    /// Whether there is anything to do for an undelivered message (a push
    /// service or the event hook).
    watching: bool,
    services: Services,
    /// Open windows, by user.
    pending: Mutex<HashMap<Id, Window>>,
    /// Windows whose job is being written: a message that joins one is
    /// acknowledged once it is.
    writing: Mutex<HashMap<Id, Written>>,
    shutdown: CancellationToken,
}

/// Push to offline users. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pusher {
    inner: Arc<Inner>,
}

/// What the node gives push to work with.
pub(crate) struct Parts {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) hub: Hub,
    /// The data folder, when dev mode may make a VAPID key there.
    pub(crate) dev_data: Option<std::path::PathBuf>,
    /// Whether the event webhook is on.
    pub(crate) events: bool,
    pub(crate) shutdown: CancellationToken,
}

impl Pusher {
    /// Push as configured: Web Push with `--vapid-key` (or the dev key),
    /// APNs and FCM when their credentials are given.
    pub(crate) fn new(cfg: &PushConfig, parts: Parts) -> Result<Self, PushError> {
        let subject = cfg.vapid_subject.clone();
        let webpush = match (&cfg.vapid_key, &parts.dev_data) {
            (Some(path), _) => Some(webpush::Vapid::load(path, subject, false)?),
            (None, Some(data)) => Some(webpush::Vapid::load(
                &webpush::Vapid::dev_path(data),
                subject,
                true,
            )?),
            (None, None) => None,
        };
        let apns = cfg.apns.clone().map(apns::Apns::new).transpose()?;
        let fcm = match &cfg.fcm_credentials {
            Some(path) => Some(fcm::Fcm::new(path, &cfg.fcm_endpoint)?),
            None => None,
        };
        let client = client::HttpsClient::new(cfg.ca.as_deref())?;
        tracing::info!(
            webpush = webpush.is_some(),
            apns = apns.is_some(),
            fcm = fcm.is_some(),
            delay_ms = cfg.delay.as_millis() as u64,
            "push services"
        );
        let inner = Arc::new(Inner {
            store: parts.store,
            broker: parts.broker.clone(),
            delay: cfg.delay,
            preview: cfg.preview,
            webpush_hosts: cfg.webpush_hosts.clone(),
            events: parts.events,
            watching: parts.events || webpush.is_some() || apns.is_some() || fcm.is_some(),
            services: Services {
                webpush,
                apns,
                fcm,
                client,
            },
            pending: Mutex::new(HashMap::new()),
            writing: Mutex::new(HashMap::new()),
            shutdown: parts.shutdown.clone(),
        });
        tokio::spawn(share_marks(parts.hub, parts.broker, parts.shutdown));
        tokio::spawn(jobs::run(inner.clone()));
        Ok(Self { inner })
    }

    /// The VAPID public key browsers subscribe with, when Web Push is on.
    pub(crate) fn vapid_public_key(&self) -> Option<&str> {
        self.inner.services.webpush.as_ref().map(|v| v.public_key())
    }

    /// msgType 16: keeps or removes a registration of `user`.
    pub(crate) async fn register(
        &self,
        user: &Id,
        address: Address,
        remove: bool,
    ) -> Result<(), ProtoError> {
        let store = &self.inner.store;
        if remove {
            store.remove_registration(user, address.id()).await?;
            return Ok(());
        }
        let s = &self.inner.services;
        match &address {
            Address::Webpush(_) if s.webpush.is_none() => {
                return Err(ProtoError::bad(
                    "this server sends no Web Push (no VAPID key)",
                ));
            }
            Address::Webpush(sub)
                if !webpush::allowed(&sub.endpoint, &self.inner.webpush_hosts) =>
            {
                return Err(ProtoError::bad(
                    "push: the endpoint's host is not a push service this server sends to",
                ));
            }
            Address::Apns(_) if s.apns.is_none() => {
                return Err(ProtoError::bad("this server sends no APNs pushes"));
            }
            Address::Fcm(_) if s.fcm.is_none() => {
                return Err(ProtoError::bad("this server sends no FCM pushes"));
            }
            _ => {}
        }
        let reg = Registration {
            id: address.id(),
            data: address.to_json(),
            created: now_ms(),
        };
        store.add_registration(user, reg).await?;
        Ok(())
    }
}

impl InboxWatch for Pusher {
    fn stored(&self, m: StoredDirect) -> Option<BoxFuture<'static, ()>> {
        if !self.inner.watching {
            return None;
        }
        let user = m.to.clone();
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = pending.get_mut(&user) {
            open.add(m);
            return self.inner.written(&user);
        }
        drop(pending);
        lifecycle::open(&self.inner, user, Window::new(m))
    }

    fn wants_preview(&self) -> bool {
        self.inner.preview
    }

    fn watching(&self) -> bool {
        self.inner.watching
    }
}

/// Shares this node's reached marks with the cluster, until shutdown.
async fn share_marks(hub: Hub, broker: Arc<dyn Broker>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let marks = hub.reached().unshared();
        if !marks.is_empty()
            && let Err(e) = broker.share_reached(marks).await
        {
            warn!(error = %e, "reached marks could not be shared");
        }
    }
}

/// Whether `path` is usable as a data folder for the dev VAPID key.
pub(crate) fn dev_data(dev_mode: bool, data: &Path) -> Option<std::path::PathBuf> {
    dev_mode.then(|| data.to_path_buf())
}
