//! Per-user settings of API 1.1: do-not-disturb per conversation and the badge
//! counter; and `GET /v1/users/{user_id}`, everything about one user in one answer
//! (the console's user view).
//!
//! Both are durable mutations (see `state::notify` and `state::badges`): a `PUT` is
//! answered once its change is durable, like a binding, and a refused write changes
//! nothing. A `GET` of something never set answers the default (`notify`, `0`), not
//! `404`: every user has a status for every conversation.

use std::sync::Arc;

use http::{Method, StatusCode};

use super::body::read_body;
use super::{mutate, ok, Req, Resp};
use crate::api::connections::Conn;
use crate::api::error::ApiError;
use crate::api::wire::{self, parse};
use crate::state::ids::UserIdx;
use crate::state::notify::{self, MAX_MUTED_PER_USER};
use crate::state::presence::Status;
use crate::state::{Applied, Mutation};
use crate::Engine;

/// `GET`/`PUT /v1/users/{user_id}/conversations/{conversation_type}/{conversation_id}/notification`.
pub(super) async fn notification(
    engine: &Engine,
    conn: &Conn,
    req: &mut Req,
    path: [&str; 3],
) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::PUT {
        return Err(ApiError::method_not_allowed("GET, PUT"));
    }
    let [user_id, kind, conversation_id] = path;
    let user_id = wire::id("user_id", user_id)?;
    let kind = notify::Kind::parse(kind).ok_or_else(|| {
        ApiError::invalid(format!("conversation_type {kind:?} is not peer or group"))
    })?;
    let conversation_id = wire::id("conversation_id", conversation_id)?;
    let muted = if method == Method::PUT {
        let body = read_body(engine, conn, req).await?;
        let muted = parse::<wire::NotificationRequest>(&body)?.muted()?;
        let m = Mutation::SetNotification {
            user_id: user_id.clone(),
            kind,
            conversation_id: conversation_id.clone(),
            muted,
        };
        match mutate(engine, m).await? {
            Applied::NotificationSet => {}
            Applied::TooManyMuted => return Err(too_many_muted(&user_id)),
            other => unreachable!("SetNotification answers NotificationSet, not {other:?}"),
        }
        muted
    } else {
        let c = notify::Conversation {
            kind,
            id: &conversation_id,
        };
        let users = engine.state.users.pin();
        users
            .get(&user_id)
            .is_some_and(|u| engine.state.notify.is_muted(u, c))
    };
    ok(wire::NotificationStatus {
        conversation_id: conversation_id.to_string(),
        conversation_type: kind.as_str().into(),
        status: if muted {
            wire::DO_NOT_DISTURB
        } else {
            wire::NOTIFY
        }
        .into(),
        user_id: user_id.to_string(),
    })
}

/// `409 limit_exceeded`: the user's mutes are at [`MAX_MUTED_PER_USER`]. Retrying does
/// not help; unmuting another conversation does.
fn too_many_muted(user_id: &Arc<str>) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "limit_exceeded",
        message: format!(
            "user_id {user_id:?} already has {MAX_MUTED_PER_USER} conversations set to do_not_disturb, the most allowed; set one back to notify first"
        ),
        retry_after_s: None,
    }
}

/// `GET`/`PUT /v1/users/{user_id}/badge`.
pub(super) async fn badge(
    engine: &Engine,
    conn: &Conn,
    req: &mut Req,
    user_id: &str,
) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::PUT {
        return Err(ApiError::method_not_allowed("GET, PUT"));
    }
    let user_id = wire::id("user_id", user_id)?;
    let count = if method == Method::PUT {
        let body = read_body(engine, conn, req).await?;
        let count = parse::<wire::BadgeRequest>(&body)?.count;
        let m = Mutation::SetBadge {
            user_id: user_id.clone(),
            count,
        };
        match mutate(engine, m).await? {
            Applied::BadgeSet => count,
            other => unreachable!("SetBadge answers BadgeSet, not {other:?}"),
        }
    } else {
        let users = engine.state.users.pin();
        (users.get(&user_id)).map_or(0, |u| engine.state.badges.get(u))
    };
    ok(wire::BadgeCount {
        count,
        user_id: user_id.to_string(),
    })
}

/// The bindings of `user` (an index found under a pin the caller still holds; `None`
/// for a user the engine does not know), tokens by their first characters only.
pub(super) fn bound_devices(engine: &Engine, user: Option<UserIdx>) -> Vec<wire::BoundDevice> {
    let devices = user.map_or_else(Vec::new, |u| engine.state.registry.devices_of(u));
    devices
        .iter()
        .map(|d| wire::BoundDevice {
            app_id: d.app_id().map(str::to_string),
            environment: d.environment().as_str().into(),
            provider: d.provider().as_str().into(),
            push_id: d.push_id().into(),
            token_prefix: d.token().redacted(),
        })
        .collect()
}

/// The presence of `user` (found under a pin the caller still holds).
pub(super) fn presence(engine: &Engine, user: Option<UserIdx>) -> Status {
    match user {
        Some(u) => engine.state.presence.status(u),
        None => Status {
            online: false,
            sessions: 0,
        },
    }
}

/// `GET /v1/users/{user_id}`: bindings, presence, badge and do-not-disturb, read
/// under one pin. A user the engine does not know answers the defaults, like each
/// of those reads on its own.
pub(super) fn overview(engine: &Engine, user_id: &str) -> Result<Resp, ApiError> {
    let user_id = wire::id("user_id", user_id)?;
    let pin = engine.state.users.pin();
    let user = pin.get(&user_id);
    let status = presence(engine, user);
    let mutes = user.map_or_else(Vec::new, |u| engine.state.notify.muted_by(u));
    ok(wire::UserOverview {
        badge: user.map_or(0, |u| engine.state.badges.get(u)),
        do_not_disturb: mutes
            .into_iter()
            .map(|(kind, id)| wire::MutedConversation {
                conversation_id: id.to_string(),
                conversation_type: kind.as_str().into(),
            })
            .collect(),
        online: status.online,
        push_ids: bound_devices(engine, user),
        sessions: status.sessions,
        user_id: user_id.to_string(),
    })
}
