//! Login: who the client is (the authenticator), its registration in the hub
//! and the broker's interest, the rooms it joins, and the replay plan (which
//! channels to replay from where, with their first pages read).

use std::sync::Arc;

use tracing::{field, info};

use super::commands::{enter, join, may_read};
use super::replay_plan;
use super::state::LoggedIn;
use serde_json::value::RawValue;

use crate::auth::{AuthError, Identity, UrlCredentials};
use crate::gateway::Gateway;
use crate::hooks::{ConnectOutcome, ConnectRequest};
use crate::hub::{Closer, SessionHandle, queue};
use crate::model::presence::SessionMeta;
use crate::model::{Channel, DirectSend, SessionId, now_ms};
use crate::protocol::message::LOGIN;
use crate::protocol::{CloseCode, Id, Login, ProtoError, Reply};
use crate::telemetry;

/// A session that has just logged in, and what it is owed before anything
/// live: the reply, errors about parts of the login, and the replay.
pub(crate) struct Started {
    /// The session's state.
    pub(crate) state: LoggedIn,
    /// The login reply.
    pub(crate) reply: Reply,
    /// msgType 5 notices of the rooms the backend joined it to, sent right
    /// after the reply.
    pub(crate) joined: Vec<Reply>,
    /// Errors sent after those (a room refused, replay incomplete).
    pub(crate) errors: Vec<ProtoError>,
    /// Channels to replay, each from its position, one after the other.
    pub(crate) replay: Vec<(Channel, u64)>,
    /// Channels with nothing to replay, and the seq up to which live frames
    /// are ones the client already holds.
    pub(crate) held: Vec<(Channel, u64)>,
}

/// Why a login frame did not log the session in.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The credentials: error 401/403 and the matching close.
    Auth(AuthError),
    /// The frame asks for too much: error 400, the connection stays.
    Bad(ProtoError),
    /// A budget is spent: this error, then this close.
    Close(ProtoError, CloseCode),
}

/// Logs a session in; the hub reaches it through its queue and its
/// [`Closer`]. A refused login is counted and returned.
pub(crate) async fn login(
    gw: &Gateway,
    login: Login,
    url: &UrlCredentials,
    frame: &[u8],
    direct: Option<Arc<dyn DirectSend>>,
) -> Result<Started, Refused> {
    // Checked before any work: each replayed room costs store reads.
    let max_rooms = gw.config().limits.max_rooms;
    if login.since.rooms.len() > max_rooms {
        return Err(Refused::Bad(ProtoError::bad(format!(
            "since.rooms: at most {max_rooms} rooms"
        ))));
    }
    // And before any hook call: each room asked for is a join hook call
    // (issue 27, item 3: one login of 500 rooms made 500).
    if login.rooms.len() > max_rooms {
        return Err(Refused::Bad(ProtoError::bad(format!(
            "rooms: at most {max_rooms} rooms"
        ))));
    }
    let (identity, backend_rooms) = authenticate(gw, &login, url, frame).await?;
    let user = identity.user.clone();
    tracing::Span::current().record("user", field::display(&user));
    if !gw.broker().connected() {
        info!("login refused: the broker is reconnecting");
        telemetry::login("unavailable");
        return Err(Refused::Close(
            ProtoError::Unavailable("the cluster is reconnecting to Redis; retry".into()),
            CloseCode::GoingAway,
        ));
    }
    let max_sessions = gw.config().limits.max_sessions_per_user;
    if gw.hub().user_sessions(&user) >= max_sessions {
        info!("login refused: too many sessions for this user");
        telemetry::login("too_many_sessions");
        return Err(Refused::Close(
            ProtoError::Limit(format!(
                "a user may hold at most {max_sessions} sessions on this node"
            )),
            CloseCode::RateLimited,
        ));
    }
    let id = SessionId::new();
    let (tx, rx) = queue::bounded(gw.config().limits.outbound_queue);
    let handle = SessionHandle {
        id,
        user: user.clone(),
        tx,
        closer: Arc::new(Closer::described(SessionMeta {
            transport: Some(url.transport),
            info: identity.info.clone(),
        })),
        direct,
    };
    gw.hub().register(handle.clone());
    gw.broker().session_opened(&user, id);
    // Subscribed before the replay reads the store: no gap between what the
    // replay covers and what arrives live. Unconfirmed, the login fails.
    let info = identity.info.as_deref();
    if !gw.broker().user_online(&user, info).await {
        let (last, _) = gw.hub().unregister(id, &user, []);
        gw.broker().session_closed(&user, id);
        if last {
            gw.broker().user_offline(&user, info);
        }
        info!("login refused: no subscription for the user");
        telemetry::login("unavailable");
        return Err(Refused::Close(
            ProtoError::Unavailable("could not subscribe to this user's messages; retry".into()),
            CloseCode::GoingAway,
        ));
    }
    let mut state = LoggedIn::new(identity, handle, rx);
    info!(session = %id, "logged in");
    telemetry::login("ok");

    let mut errors = Vec::new();
    // Rooms the backend chose need no join hook (the client's own do), and
    // the client is told of them.
    let mut joined = Vec::new();
    let presence = login.presence_events;
    for room in backend_rooms {
        match enter(&mut state, gw, room.clone()).await {
            Ok(seq) => {
                if presence {
                    state.want_presence(&room);
                }
                joined.push(Reply::joined(room, seq));
            }
            Err(e) => errors.push(e),
        }
    }
    for room in login.rooms {
        match join(&mut state, gw, room.clone()).await {
            Ok(_) if presence => state.want_presence(&room),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    // Registered first, read second: anything committed from now on is in
    // the outbound queue, anything before is in what we read.
    let store = gw.store().clone();
    let mut channels = Vec::new();
    let inbox = Channel::Inbox(user.clone());
    let inbox_since = match login.since.inbox {
        Some(n) => Ok(n),
        None => store.cursor(&user).await,
    };
    let mut store_error = None;
    match inbox_since {
        Ok(since) => channels.push((inbox.clone(), since)),
        Err(e) => store_error = Some(e),
    }
    for (room, since) in login.since.rooms {
        match may_read(&mut state, gw, &room).await {
            Ok(()) => channels.push((Channel::Room(room), since)),
            Err(e) => errors.push(e),
        }
    }
    // One message per channel tells whether its history still reaches back
    // to `since` (and the inbox's latest seq); the replay itself reads page
    // by page later, one channel at a time, holding one page at most.
    let mut probes = Vec::with_capacity(channels.len());
    for (channel, since) in channels {
        let probe = store.read(&channel, since, 1).await;
        probes.push((channel, since, probe));
    }
    let plan = replay_plan::plan(&inbox, probes);
    if let Some(e) = store_error.or(plan.failed) {
        errors.push(ProtoError::Unavailable(format!("replay incomplete: {e}")));
    }
    // Unread counts of the inbox and the rooms joined at login.
    let counted = match login.unread {
        true => Some(
            gw.chat()
                .unread(&user, state.rooms.iter().cloned(), false)
                .await,
        ),
        false => None,
    };
    let unread = match counted {
        Some(Ok(u)) => serde_json::to_value(u).ok(),
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        None => None,
    };
    let reply = Reply {
        msg_type: LOGIN,
        send_user_id: Some(user),
        session_id: Some(id.to_string()),
        node_id: Some(gw.node_id().to_string()),
        heartbeat_sec: Some(gw.config().limits.heartbeat.as_secs()),
        wt_draft: url.wt_draft,
        inbox_seq: Some(plan.inbox_seq),
        unrecovered: (!plan.unrecovered.is_empty()).then_some(plan.unrecovered),
        unread,
        ts: Some(now_ms()),
        ..Reply::default()
    };
    Ok(Started {
        state,
        reply,
        joined,
        errors,
        replay: plan.replay,
        held: plan.held,
    })
}

/// Who the client is: the connect hook's answer when one is configured
/// (with the rooms the backend joins it to), the built-in authenticator
/// (JWT or dev identities) otherwise. A refusal is counted.
async fn authenticate(
    gw: &Gateway,
    login: &Login,
    url: &UrlCredentials,
    frame: &[u8],
) -> Result<(Identity, Vec<Id>), Refused> {
    let refused = |e: AuthError| {
        info!(reason = %e, "login refused");
        telemetry::login(match e {
            AuthError::Unauthorized(_) => "unauthorized",
            AuthError::Forbidden(_) => "forbidden",
        });
        Refused::Auth(e)
    };
    if gw.hooks().has_connect() {
        let raw = std::str::from_utf8(frame)
            .ok()
            .and_then(|t| serde_json::from_str::<&RawValue>(t.trim()).ok());
        let Some(raw) = raw else {
            return Err(Refused::Bad(ProtoError::bad(
                "the login frame is not a JSON object",
            )));
        };
        let client_addr = url.client.to_string();
        let req = ConnectRequest {
            transport: Some(url.transport.as_str()),
            client_addr: Some(client_addr),
            login: raw,
            token: login.token.as_deref().or(url.query_token.as_deref()),
            cookie: url.cookie.as_deref(),
            origin: url.origin.as_deref(),
            authorization: url.authorization.as_deref(),
            path_user_id: url.path_user.as_deref(),
            user_id: None,
            refresh: false,
        };
        match gw.hooks().connect(&req).await {
            ConnectOutcome::Accepted(c) => {
                if let Some(claimed) = &login.user
                    && *claimed != c.identity.user
                {
                    return Err(refused(AuthError::Forbidden(
                        "sendUserId does not match the connect hook's user".into(),
                    )));
                }
                return Ok((c.identity, c.join));
            }
            ConnectOutcome::Refused(e) => return Err(refused(e)),
            ConnectOutcome::Unavailable(reason) => {
                telemetry::login("unavailable");
                return Err(Refused::Close(
                    ProtoError::Unavailable(reason),
                    CloseCode::GoingAway,
                ));
            }
            ConnectOutcome::Builtin => {}
        }
    }
    gw.auth()
        .login(login, url)
        .map(|identity| (identity, Vec::new()))
        .map_err(refused)
}
