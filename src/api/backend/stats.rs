//! What an operator's view needs besides `/metrics`: the cluster's nodes
//! (`GET /api/nodes`), this node's rooms with their local members and
//! latest seq (`GET /api/rooms`), from which a page derives rates, and its
//! event outbox with the events it quarantined (`GET /api/events`).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{ApiError, Authorized};
use crate::gateway::Gateway;
use crate::model::Channel;
use crate::protocol::Id;
use crate::webhook::Quarantined;

/// Most rooms one answer lists.
const MAX_ROOMS: usize = 1000;

/// The cluster's nodes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Nodes {
    /// The node that answered.
    node_id: String,
    /// Every node alive (this one included), sorted.
    nodes: Vec<String>,
}

/// The nodes alive in the cluster.
#[utoipa::path(
    get,
    path = "/api/nodes",
    tag = "operations",
    responses(
        (status = 200, description = "The nodes", body = Nodes),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "Redis cannot answer now"),
    ),
)]
pub(crate) async fn nodes(
    State(gw): State<Gateway>,
    _: Authorized,
) -> Result<Json<Nodes>, ApiError> {
    let nodes = gw
        .broker()
        .nodes()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(Nodes {
        node_id: gw.node_id().to_string(),
        nodes,
    }))
}

/// How many rooms.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RoomsQuery {
    /// At most this many, most members first (default 50, at most 1000).
    limit: Option<usize>,
}

/// One room as this node sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Room {
    /// The room.
    #[schema(value_type = String)]
    room_id: Id,
    /// Member sessions on this node.
    members: usize,
    /// The room's latest seq (stored messages so far): two answers apart
    /// give its rate.
    seq: u64,
}

/// This node's rooms.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rooms {
    /// The node that answered.
    node_id: String,
    /// Rooms with members here, most members first.
    rooms: Vec<Room>,
}

/// The rooms this node serves, with their members here and latest seq.
#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "operations",
    params(RoomsQuery),
    responses(
        (status = 200, description = "The rooms", body = Rooms),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "The store cannot answer now"),
    ),
)]
pub(crate) async fn rooms(
    State(gw): State<Gateway>,
    _: Authorized,
    Query(q): Query<RoomsQuery>,
) -> Result<Json<Rooms>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_ROOMS);
    let mut sizes = gw.hub().room_sizes();
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sizes.truncate(limit);
    let mut rooms = Vec::with_capacity(sizes.len());
    for (room_id, members) in sizes {
        let seq = gw
            .store()
            .latest(&Channel::Room(room_id.clone()))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        rooms.push(Room {
            room_id,
            members,
            seq,
        });
    }
    Ok(Json(Rooms {
        node_id: gw.node_id().to_string(),
        rooms,
    }))
}

/// This node's event outbox: what waits for the event webhook, and the
/// events the backend refused and this node set aside.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Events {
    /// Whether an event webhook is configured.
    hooked: bool,
    /// Events waiting.
    waiting: u64,
    /// Their bytes (in Redis: estimated from the newest and oldest ten).
    bytes: u64,
    /// Events the backend refused on their own, newest last (at most 100).
    quarantined: Vec<Quarantined>,
}

/// The event outbox's depth and its quarantined events.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "operations",
    responses(
        (status = 200, description = "The outbox", body = Events),
        (status = 401, description = "Missing or wrong API key"),
        (status = 503, description = "The store cannot answer now"),
    ),
)]
pub(crate) async fn events(
    State(gw): State<Gateway>,
    _: Authorized,
) -> Result<Json<Events>, ApiError> {
    let depth = gw
        .store()
        .outbox_depth()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(Events {
        hooked: gw.hooks().has_events(),
        waiting: depth.events,
        bytes: depth.bytes,
        quarantined: gw.quarantine().list(),
    }))
}
