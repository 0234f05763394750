//! Messages from the backend: one or a batch (`POST /api/publish`), one
//! message to many users' inboxes (`POST /api/broadcast`), and a channel's
//! history (`GET /api/history`), answered like msgType 7.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};

use super::access::{ApiError, ApiJson, Authorized, JsonBytes, parse_id};
use crate::gateway::Gateway;
use crate::model::{Channel, TraceParent};
use crate::protocol::command::MAX_HISTORY_LIMIT;
use crate::protocol::message::HISTORY;
use crate::protocol::{Id, ProtoError, decode_publish};
use crate::routing::Sent;
use crate::telemetry::otel;

/// Most recipients of one broadcast.
const MAX_BROADCAST: usize = 10_000;

/// A message object (protocol §3) as the API takes it.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiMessage {
    /// A user's inbox (every session of the user).
    pub(crate) received_user_id: Option<String>,
    /// A room (every member session); with `receivedUserId`, a context.
    pub(crate) room_id: Option<String>,
    /// 3 (the default) or at least 100.
    pub(crate) msg_type: Option<i64>,
    /// Opaque, preserved.
    pub(crate) biz_type: Option<i64>,
    /// Opaque, preserved.
    pub(crate) biz_opt_module: Option<i64>,
    /// Opaque JSON, preserved byte for byte.
    #[schema(value_type = Object)]
    pub(crate) msg_body: Option<Value>,
    /// A system sender name (default `system`).
    pub(crate) send_user_id: Option<String>,
    /// Dedupe key: a resend within the dedupe window is stored once.
    pub(crate) client_msg_id: Option<String>,
    /// Not stored: delivered to who is online now, no seq.
    pub(crate) volatile: Option<bool>,
    /// With `volatile`: a "latest value wins" key.
    pub(crate) latest: Option<String>,
}

/// One message, or a batch answered in order. The handler reads the body
/// itself (so a message's errors are the message decoder's, field named);
/// this type is what the OpenAPI document says it reads.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum PublishBody {
    /// One message.
    One(ApiMessage),
    /// Several, stored in this order.
    Batch(Vec<ApiMessage>),
}

/// What became of one message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Outcome {
    /// Stored: its id, position and time.
    #[serde(rename_all = "camelCase")]
    Stored {
        /// Its id.
        msg_id: String,
        /// Its seq in its channel.
        seq: u64,
        /// Acceptance time, ms since the epoch.
        ts: u64,
    },
    /// Volatile: delivered to who is online, not stored.
    Volatile {
        /// Always true.
        volatile: bool,
    },
    /// Refused or not stored.
    Failed {
        /// The error code (400, 503, ...).
        code: u16,
        /// Why.
        reason: String,
    },
}

impl Outcome {
    fn failed(e: ApiError) -> Self {
        Self::Failed {
            code: e.status_code(),
            reason: e.to_string(),
        }
    }
}

/// The W3C `traceparent` a backend sent: its trace goes on into rtgate.
fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

/// Sends one decoded message from the backend and waits for the store;
/// with traces exported, as a span of the backend's trace when it sent one.
async fn send_one(
    gw: &Gateway,
    raw: &[u8],
    parent: Option<TraceParent>,
) -> Result<Outcome, ApiError> {
    let span = tracing::trace_span!(target: otel::TARGET, "message.accept", source = "api");
    if let Some(p) = parent {
        otel::set_parent(&span, p);
    }
    send_traced(gw, raw).instrument(span).await
}

async fn send_traced(gw: &Gateway, raw: &[u8]) -> Result<Outcome, ApiError> {
    let max = gw.config().limits.max_frame;
    if raw.len() > max {
        return Err(ApiError::BadRequest(format!("message exceeds {max} bytes")));
    }
    let (sender, message) = decode_publish(raw)?;
    let sender = sender.unwrap_or_else(|| Id::parse("system").expect("a valid id"));
    match gw.publisher().send(sender, None, message) {
        Sent::Volatile => Ok(Outcome::Volatile { volatile: true }),
        Sent::Stored(fut) => {
            let a = fut
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            Ok(Outcome::Stored {
                msg_id: a.msg_id,
                seq: a.seq,
                ts: a.ts,
            })
        }
    }
}

/// Sends `messages` in order (each is queued for the store before the next,
/// so a channel keeps their order) and answers each.
async fn send_all(
    gw: &Gateway,
    messages: Vec<Vec<u8>>,
    parent: Option<TraceParent>,
) -> Vec<Outcome> {
    join_all(messages.iter().map(|m| send_one(gw, m, parent)))
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(Outcome::failed))
        .collect()
}

/// Publishes a message, or a batch (a JSON array) answered in order.
#[utoipa::path(
    post,
    path = "/api/publish",
    tag = "messages",
    request_body(content = PublishBody, description = "A message object, or an array of them"),
    responses(
        (status = 200, description = "Stored (one message), or one outcome per message in order (a batch)", body = Outcome),
        (status = 202, description = "A volatile message, delivered and not stored", body = Outcome),
        (status = 400, description = "Malformed message"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 415, description = "The body is not application/json"),
        (status = 503, description = "The store cannot take it now; retry"),
    ),
)]
pub(crate) async fn publish(
    State(gw): State<Gateway>,
    _: Authorized,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let parent = traceparent(&headers);
    if body.trim_ascii_start().starts_with(b"[") {
        let batch: Vec<Box<RawValue>> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("batch: {e}")))?;
        let messages = batch.iter().map(|m| m.get().as_bytes().to_vec()).collect();
        return Ok(Json(send_all(&gw, messages, parent).await).into_response());
    }
    match send_one(&gw, &body, parent).await? {
        v @ Outcome::Volatile { .. } => Ok((StatusCode::ACCEPTED, Json(v)).into_response()),
        other => Ok(Json(other).into_response()),
    }
}

/// A message for many users' inboxes.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Broadcast {
    /// The recipients: each gets the message in its inbox.
    user_ids: Vec<String>,
    /// The message's fields (a message object without `receivedUserId`).
    #[serde(flatten)]
    #[schema(value_type = ApiMessage)]
    message: Map<String, Value>,
}

/// Stores one message in each user's inbox; one outcome per user, in order.
#[utoipa::path(
    post,
    path = "/api/broadcast",
    tag = "messages",
    request_body = Broadcast,
    responses(
        (status = 200, description = "One outcome per user, in the order given", body = Vec<Outcome>),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "Missing or wrong API key"),
    ),
)]
pub(crate) async fn broadcast(
    State(gw): State<Gateway>,
    _: Authorized,
    headers: HeaderMap,
    ApiJson(b): ApiJson<Broadcast>,
) -> Result<Json<Vec<Outcome>>, ApiError> {
    let each = b.messages()?;
    Ok(Json(send_all(&gw, each, traceparent(&headers)).await))
}

impl Broadcast {
    /// The message for each recipient, or what is wrong with the body.
    pub(super) fn messages(self) -> Result<Vec<Vec<u8>>, ApiError> {
        if self.user_ids.is_empty() || self.user_ids.len() > MAX_BROADCAST {
            return Err(ApiError::BadRequest(format!(
                "userIds: 1 to {MAX_BROADCAST} users"
            )));
        }
        let mut message = self.message;
        if message.contains_key("receivedUserId") {
            return Err(ApiError::BadRequest(
                "receivedUserId: the recipients are userIds".into(),
            ));
        }
        let mut each = Vec::with_capacity(self.user_ids.len());
        for user in self.user_ids {
            message.insert("receivedUserId".into(), Value::String(user));
            each.push(serde_json::to_vec(&message).expect("JSON from JSON"));
        }
        Ok(each)
    }
}

/// Which channel to read, and from where.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// A room's history...
    room_id: Option<String>,
    /// ...or a user's inbox.
    user_id: Option<String>,
    /// Messages after this seq (default 0: from the oldest kept).
    since: Option<u64>,
    /// At most this many (1 to 100, default 100).
    limit: Option<u32>,
    /// `latest`: messages with their amendments folded in (default `log`:
    /// the entries as stored).
    view: Option<String>,
}

/// A page of a channel, as msgType 7 answers it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct History {
    /// 7.
    msg_type: i64,
    /// The room, for a room's history.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    room_id: Option<Id>,
    /// The user, for an inbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    user_id: Option<Id>,
    /// The channel's latest seq.
    seq: u64,
    /// Messages after `since`, in seq order, as they were delivered.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<Box<RawValue>>,
}

/// A room's history or a user's inbox.
#[utoipa::path(
    get,
    path = "/api/history",
    tag = "messages",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The page", body = History),
        (status = 400, description = "Neither or both of roomId and userId, or a bad limit"),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "The store cannot answer now"),
    ),
)]
pub(crate) async fn history(
    State(gw): State<Gateway>,
    _: Authorized,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let (room_id, user_id, channel) = match (&q.room_id, &q.user_id) {
        (Some(r), None) => {
            let r = parse_id(r, "roomId")?;
            (Some(r.clone()), None, Channel::Room(r))
        }
        (None, Some(u)) => {
            let u = parse_id(u, "userId")?;
            (None, Some(u.clone()), Channel::Inbox(u))
        }
        _ => return Err(ApiError::BadRequest("give roomId or userId".into())),
    };
    let limit = q.limit.unwrap_or(MAX_HISTORY_LIMIT);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_HISTORY_LIMIT}"
        )));
    }
    let since = q.since.unwrap_or(0);
    let (latest, messages) = match q.view.as_deref() {
        None | Some("log") => {
            let page = gw
                .store()
                .read(&channel, since, limit as usize)
                .await
                .map_err(|e| ApiError::from(ProtoError::from(e)))?;
            (page.latest, page.messages)
        }
        Some("latest") => {
            gw.chat()
                .latest_view(&channel, since, limit as usize)
                .await?
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "view: \"latest\" or \"log\", not {other:?}"
            )));
        }
    };
    Ok(Json(History {
        msg_type: HISTORY,
        room_id,
        user_id,
        seq: latest,
        messages,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_field_of_a_message_is_one_the_api_reads() {
        let documented = ApiMessage {
            received_user_id: Some("bob".into()),
            room_id: Some("ctx".into()),
            msg_type: Some(101),
            biz_type: Some(5),
            biz_opt_module: Some(6),
            msg_body: Some(serde_json::json!({"a": 1})),
            send_user_id: Some("billing".into()),
            client_msg_id: Some("c1".into()),
            volatile: Some(true),
            latest: Some("k".into()),
        };
        let raw = serde_json::to_vec(&documented).unwrap();
        let (sender, p) = decode_publish(&raw).unwrap();
        assert_eq!(sender.unwrap().as_str(), "billing");
        assert_eq!(
            (p.msg_type, p.biz_type, p.biz_opt_module),
            (101, Some(5), Some(6))
        );
        assert_eq!(p.body.unwrap().get(), r#"{"a":1}"#);
        assert_eq!(p.client_msg_id.as_deref(), Some("c1"));
        assert!(p.volatile);
        assert_eq!(p.latest.as_deref(), Some("k"));
        match p.to {
            crate::protocol::Destination::User { user, context } => {
                assert_eq!((user.as_str(), context.unwrap().as_str()), ("bob", "ctx"));
            }
            other => panic!("{other:?}"),
        }
    }
}
