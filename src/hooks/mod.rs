//! Backend hooks (protocol §11): the backend decides who connects, what is
//! published and who joins which room. Each hook is one signed HTTP call
//! with a deadline; a failure (timeout, backend down, an answer outside the
//! contract) follows the hook's policy: refuse (503, the default) or let
//! the request through.

mod batch;
mod client;
mod connect;
mod fuzzing;
mod join;
mod publish;
mod slots;

use tracing::warn;

pub(crate) use client::HookError;
use client::{Endpoint, HookClient};
pub(crate) use connect::{ConnectRequest, Connected};
pub(crate) use fuzzing::answer as fuzz_answer;
use publish::{Decision, Filter, Message, PublishRequest};

use crate::auth::AuthError;
use crate::config::{HookName, HooksConfig};
use crate::protocol::{Id, ProtoError, Publish};
use crate::telemetry;

/// What the connect hook decided about a login.
#[derive(Debug)]
pub(crate) enum ConnectOutcome {
    /// The backend accepted: this identity, these rooms to join.
    Accepted(Connected),
    /// The backend refused (401 or 403).
    Refused(AuthError),
    /// No usable answer, and the policy is to refuse: error 503.
    Unavailable(String),
    /// No usable answer, and the policy lets the built-in authenticator
    /// (JWT or dev identities) decide.
    Builtin,
}

/// The node's hooks. Without any configured, every method lets the
/// request through at no cost.
pub(crate) struct Hooks {
    client: HookClient,
    connect: Option<Endpoint>,
    publish: Option<(Endpoint, Filter)>,
    join: Option<Endpoint>,
    event: Option<Endpoint>,
    max_body: usize,
}

impl Hooks {
    /// The hooks of `cfg`; a rewritten message body may be up to
    /// `max_frame` bytes.
    pub(crate) fn new(cfg: &HooksConfig, max_frame: usize) -> Self {
        // An answer carries at most a message body and some JSON around it;
        // a batch's, one per message.
        let max_answer = (max_frame + 64 * 1024) * cfg.publish_batch;
        let client = HookClient::new(cfg, max_answer);
        let endpoint = |name, url: &Option<http::Uri>| {
            url.as_ref()
                .map(|u| Endpoint::new(name, u.clone(), cfg, &client))
        };
        let filter = Filter {
            biz_types: cfg.publish_biz_types.clone(),
            rooms: cfg.publish_rooms.clone(),
            volatile: cfg.publish_volatile,
        };
        Self {
            connect: endpoint(HookName::Connect, &cfg.connect),
            publish: endpoint(HookName::Publish, &cfg.publish).map(|e| (e, filter)),
            join: endpoint(HookName::Join, &cfg.join),
            event: endpoint(HookName::Event, &cfg.event),
            client,
            max_body: max_frame,
        }
    }

    /// Whether a join hook decides who may join (and read) rooms.
    pub(crate) fn has_join(&self) -> bool {
        self.join.is_some()
    }

    /// Whether logins go to the connect hook.
    pub(crate) fn has_connect(&self) -> bool {
        self.connect.is_some()
    }

    /// Asks the connect hook about a login or a refresh. Only called when
    /// [`Hooks::has_connect`].
    pub(crate) async fn connect(&self, req: &ConnectRequest<'_>) -> ConnectOutcome {
        let Some(ep) = &self.connect else {
            return ConnectOutcome::Builtin;
        };
        let body = serde_json::to_vec(req).expect("a connect request serializes");
        // Before login the caller is its address; a refresh is its user's.
        let caller = req
            .user_id
            .map(|u| u.as_str().to_owned())
            .or_else(|| req.client_addr.clone())
            .unwrap_or_default();
        let decided = self.client.call(ep, &caller, body, connect::decide).await;
        match decided {
            Ok(Ok(c)) => {
                telemetry::hook_decision(ep.label(), "accept");
                ConnectOutcome::Accepted(c)
            }
            Ok(Err(e)) => {
                telemetry::hook_decision(ep.label(), "refuse");
                ConnectOutcome::Refused(e)
            }
            Err(e) => match failed(ep, &e) {
                Ok(()) => ConnectOutcome::Builtin,
                Err(p) => ConnectOutcome::Unavailable(p.to_string()),
            },
        }
    }

    /// Whether `p` must pass the publish hook before it is stored.
    pub(crate) fn publish_applies(&self, p: &Publish) -> bool {
        self.publish.as_ref().is_some_and(|(_, f)| f.applies(p))
    }

    /// Puts `p` from `user` before the publish hook: `Ok` to store it (as
    /// the backend may have rewritten it), or the error for the sender.
    pub(crate) async fn publish(
        &self,
        user: Option<&Id>,
        p: &mut Publish,
    ) -> Result<(), ProtoError> {
        let Some((ep, _)) = &self.publish else {
            return Ok(());
        };
        let req = PublishRequest {
            user_id: user,
            message: Message::of(p),
        };
        let body = serde_json::to_vec(&req).expect("a publish request serializes");
        let max_body = self.max_body;
        let decided = self
            .client
            .call(ep, user.map_or("", |u| u.as_str()), body, |answer| {
                publish::decide(answer, p, max_body)
            })
            .await;
        match decided {
            Ok(Ok(d)) => {
                let label = match d {
                    Decision::Accept => "accept",
                    Decision::Rewrite => "rewrite",
                };
                telemetry::hook_decision(ep.label(), label);
                Ok(())
            }
            Ok(Err(e)) => {
                telemetry::hook_decision(ep.label(), "refuse");
                Err(e)
            }
            Err(e) => failed(ep, &e),
        }
    }

    /// Asks the join hook whether `user` may join `room`.
    pub(crate) async fn join(&self, user: &Id, room: &Id) -> Result<(), ProtoError> {
        let Some(ep) = &self.join else {
            return Ok(());
        };
        let req = join::JoinRequest {
            user_id: user,
            room_id: room,
        };
        let body = serde_json::to_vec(&req).expect("a join request serializes");
        let decided = self
            .client
            .call(ep, user.as_str(), body, |answer| join::decide(answer, room))
            .await;
        match decided {
            Ok(Ok(())) => {
                telemetry::hook_decision(ep.label(), "accept");
                Ok(())
            }
            Ok(Err(e)) => {
                telemetry::hook_decision(ep.label(), "refuse");
                Err(e)
            }
            Err(e) => failed(ep, &e),
        }
    }

    /// Whether an event webhook is configured.
    pub(crate) fn has_events(&self) -> bool {
        self.event.is_some()
    }

    /// POSTs a batch of events (a JSON array) to the event webhook; any 2xx
    /// answer means the backend has them.
    pub(crate) async fn events(&self, batch: Vec<u8>) -> Result<(), HookError> {
        let Some(ep) = &self.event else {
            return Ok(());
        };
        self.client
            .call(ep, "events", batch, |answer| match answer.status {
                200..=299 => Ok(()),
                status => Err(HookError::Status(status)),
            })
            .await
    }
}

/// A hook without a usable answer: the policy decides, and it is logged.
fn failed(ep: &Endpoint, e: &HookError) -> Result<(), ProtoError> {
    if ep.allows_on_failure() {
        warn!(hook = ep.label(), error = %e, "hook failed; let through by policy");
        telemetry::hook_decision(ep.label(), "allowed_on_failure");
        Ok(())
    } else {
        warn!(hook = ep.label(), error = %e, "hook failed; refused by policy");
        telemetry::hook_decision(ep.label(), "refused_on_failure");
        Err(ProtoError::Unavailable(format!(
            "the {} hook failed: {e}; retry",
            ep.label()
        )))
    }
}
