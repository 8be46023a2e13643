//! Request routing and the handlers of every API.md endpoint.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::wire::{self, parse};
use crate::clock::unix_now_s;
use crate::fanout::plan;
use crate::providers::{Kind, Push};
use crate::state::ids::Pin;
use crate::state::{Applied, Mutation, UserIdx};
use crate::telemetry::inc;
use crate::Engine;

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, v: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The log refused the change or took it back: nothing changed. The store logs the
/// first failure and counts the rest, so this stays at debug (one line per request
/// would flood the log while the disk is full).
fn storage_error(e: crate::store::Error) -> ApiError {
    tracing::debug!(error = %crate::providers::error_chain(&e), "durable write failed");
    ApiError::internal("the change could not be made durable")
}

fn ok(v: Value) -> Result<Resp, ApiError> {
    Ok(json_response(StatusCode::OK, v))
}

pub async fn handle(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    match route(&engine, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Percent-decoded path segments after the leading slash.
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| {
            urlencoding::decode(s)
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::invalid("path is not valid percent-encoded UTF-8"))
        })
        .collect()
}

async fn read_body(engine: &Engine, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limit = engine.config.api.max_body_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "request body is over api.max_body_bytes ({limit} bytes)"
        ))
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(ApiError::invalid("request body could not be read")),
    }
}

fn authorized(engine: &Engine, req: &Request<Incoming>) -> bool {
    let Some(expected) = &engine.config.api.token else {
        return true;
    };
    let Some(got) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    got.len() == expected.len() && bool::from(got.as_bytes().ct_eq(expected.as_bytes()))
}

async fn route(engine: &Arc<Engine>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    let seg = segments(req.uri().path())?;
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["healthz"] => {
            return if method != Method::GET {
                Err(ApiError::method_not_allowed("GET"))
            } else if engine.is_ready() {
                ok(json!({"status": "ok"}))
            } else {
                Err(ApiError::unavailable("recovery has not finished", 1))
            };
        }
        // Readiness: recovered and durable writes succeed (`/healthz` is liveness).
        ["readyz"] => {
            return if method != Method::GET {
                Err(ApiError::method_not_allowed("GET"))
            } else if !engine.is_ready() {
                Err(ApiError::unavailable("recovery has not finished", 1))
            } else if let Some(cause) = engine.write_failure() {
                Err(ApiError::unavailable(
                    format!("writes are failing: {cause}"),
                    5,
                ))
            } else {
                ok(json!({"status": "ok"}))
            };
        }
        ["metrics"] => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed("GET"));
            }
            let mut r = Response::new(Full::new(Bytes::from(
                engine.stats.to_prometheus(&engine.gauges()),
            )));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        ["v1", ..] => {}
        _ => {
            return Err(ApiError::not_found(format!(
                "no endpoint {}",
                req.uri().path()
            )))
        }
    }
    if !authorized(engine, &req) {
        return Err(ApiError::unauthenticated());
    }
    if !engine.is_ready() {
        return Err(ApiError::unavailable("recovery has not finished", 1));
    }
    match (&method, &seg[1..]) {
        (&Method::PUT, ["push-ids", push_id]) => {
            let push_id = wire::id("push_id", push_id)?;
            let body = read_body(engine, req).await?;
            bind(engine, push_id, &body).await
        }
        (&Method::DELETE, ["push-ids", push_id]) => {
            let push_id = wire::id("push_id", push_id)?;
            match engine
                .mutate(Mutation::Unbind {
                    push_id: push_id.clone(),
                })
                .await
                .map_err(storage_error)?
            {
                Applied::Unbound(Some(user)) => {
                    ok(json!({"push_id": &*push_id, "user_id": &*user}))
                }
                _ => Err(ApiError::not_found(format!(
                    "push_id {push_id:?} is not bound"
                ))),
            }
        }
        (_, ["push-ids", _]) => Err(ApiError::method_not_allowed("PUT, DELETE")),
        (&Method::GET, ["users", user_id, "push-ids"]) => {
            let user_id = wire::id("user_id", user_id)?;
            let devices = match engine.state.users.pin().get(&user_id) {
                Some(u) => engine.state.registry.devices_of(u),
                None => Vec::new(),
            };
            let list: Vec<Value> = devices
                .iter()
                .map(|d| {
                    json!({
                        "push_id": d.push_id(),
                        "provider": d.provider().as_str(),
                        "app_id": d.app_id(),
                        "environment": d.environment().as_str(),
                        "token_prefix": d.token().redacted(),
                    })
                })
                .collect();
            ok(json!({"user_id": &*user_id, "push_ids": list}))
        }
        (&Method::DELETE, ["users", user_id, "push-ids"]) => {
            let user_id = wire::id("user_id", user_id)?;
            let removed = match engine
                .mutate(Mutation::RemoveUser {
                    user_id: user_id.clone(),
                })
                .await
                .map_err(storage_error)?
            {
                Applied::UserRemoved(n) => n,
                other => unreachable!("RemoveUser answers UserRemoved, not {other:?}"),
            };
            ok(json!({"user_id": &*user_id, "removed": removed}))
        }
        (_, ["users", _, "push-ids"]) => Err(ApiError::method_not_allowed("GET, DELETE")),
        (&Method::POST, ["presence"]) => {
            let body = read_body(engine, req).await?;
            presence(engine, &body)
        }
        (_, ["presence"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["presence", user_id]) => {
            let user_id = wire::id("user_id", user_id)?;
            let status = match engine.state.users.pin().get(&user_id) {
                Some(u) => engine.state.presence.status(u),
                None => crate::state::presence::Status {
                    online: false,
                    sessions: 0,
                },
            };
            ok(json!({"user_id": &*user_id, "online": status.online, "sessions": status.sessions}))
        }
        (_, ["presence", _]) => Err(ApiError::method_not_allowed("GET")),
        (&Method::POST, ["groups", group_id, "members"]) => {
            let group_id = wire::id("group_id", group_id)?;
            let body = read_body(engine, req).await?;
            members(engine, group_id, &body).await
        }
        (_, ["groups", _, "members"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["groups", group_id]) => {
            let group_id = wire::id("group_id", group_id)?;
            match engine.state.groups.members(&group_id) {
                Some(m) => ok(json!({"group_id": &*group_id, "members": m.len()})),
                None => Err(ApiError::not_found(format!(
                    "group {group_id:?} does not exist"
                ))),
            }
        }
        (&Method::DELETE, ["groups", group_id]) => {
            let group_id = wire::id("group_id", group_id)?;
            match engine
                .mutate(Mutation::GroupDelete {
                    group_id: group_id.clone(),
                })
                .await
                .map_err(storage_error)?
            {
                Applied::GroupDeleted(true) => ok(json!({"group_id": &*group_id})),
                _ => Err(ApiError::not_found(format!(
                    "group {group_id:?} does not exist"
                ))),
            }
        }
        (_, ["groups", _]) => Err(ApiError::method_not_allowed("GET, DELETE")),
        (&Method::POST, ["messages"]) => {
            let body = read_body(engine, req).await?;
            message(engine, &body)
        }
        (_, ["messages"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::POST, ["calls"]) => {
            let body = read_body(engine, req).await?;
            call(engine, &body)
        }
        (_, ["calls"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::POST, ["calls", _, "cancel"]) => Err(ApiError::unimplemented(
            "call cancellation is not available in this version",
        )),
        (&Method::POST, ["debug", "push"]) => {
            let body = read_body(engine, req).await?;
            debug_push(engine, &body).await
        }
        (_, ["debug", "push"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["stats"]) => ok(engine.stats.to_json(&engine.gauges())),
        (_, ["stats"]) => Err(ApiError::method_not_allowed("GET")),
        _ => Err(ApiError::not_found(format!(
            "no endpoint {}",
            seg.join("/")
        ))),
    }
}

async fn bind(engine: &Engine, push_id: Arc<str>, body: &[u8]) -> Result<Resp, ApiError> {
    let binding = parse::<wire::BindRequest>(body)?.into_binding()?;
    let user_id = binding.user_id.clone();
    let applied = engine
        .mutate(Mutation::Bind {
            push_id: push_id.clone(),
            binding,
        })
        .await
        .map_err(storage_error)?;
    let Applied::Bound { previous_user } = applied else {
        unreachable!("Bind answers Bound, not {applied:?}")
    };
    ok(json!({
        "push_id": &*push_id,
        "user_id": &*user_id,
        "previous_user_id": previous_user.as_deref(),
    }))
}

fn presence(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    let req: wire::PresenceRequest = parse(body)?;
    if req.events.len() > wire::MAX_PRESENCE_EVENTS {
        return Err(ApiError::invalid(format!(
            "events: at most {} events per request, got {}",
            wire::MAX_PRESENCE_EVENTS,
            req.events.len()
        )));
    }
    for (i, e) in req.events.iter().enumerate() {
        crate::state::ids::validate(&format!("events[{i}].user_id"), &e.user_id)
            .map_err(ApiError::invalid)?;
        crate::state::ids::validate(&format!("events[{i}].session_id"), &e.session_id)
            .map_err(ApiError::invalid)?;
        if e.ttl_s.is_some_and(|t| t > wire::MAX_TTL_S) {
            return Err(ApiError::invalid(format!(
                "events[{i}].ttl_s: at most {} seconds",
                wire::MAX_TTL_S
            )));
        }
    }
    let default_ttl = engine.config.presence.default_ttl_s;
    let presence = &engine.state.presence;
    // A pin per chunk, not per request: a sweep waits for at most one chunk.
    for chunk in req.events.chunks(1024) {
        let users = engine.state.users.pin();
        for e in chunk {
            let user = if e.online {
                users.intern(&e.user_id)
            } else {
                match users.get(&e.user_id) {
                    Some(u) => u,
                    None => continue,
                }
            };
            presence.apply(
                user,
                &e.session_id,
                e.online,
                e.ttl_s.unwrap_or(default_ttl),
            );
        }
    }
    ok(json!({"applied": req.events.len()}))
}

async fn members(engine: &Engine, group_id: Arc<str>, body: &[u8]) -> Result<Resp, ApiError> {
    let req: wire::MembersRequest = parse(body)?;
    let n = req.add.len() + req.remove.len();
    if n > wire::MAX_MEMBERS_PER_REQUEST {
        return Err(ApiError::invalid(format!(
            "add and remove: at most {} ids per request, got {n}",
            wire::MAX_MEMBERS_PER_REQUEST
        )));
    }
    let check = |field: &str, ids: Vec<String>| -> Result<Vec<Arc<str>>, ApiError> {
        ids.into_iter()
            .enumerate()
            .map(|(i, u)| wire::id(&format!("{field}[{i}]"), &u))
            .collect()
    };
    let add = check("add", req.add)?;
    let remove = check("remove", req.remove)?;
    if engine.state.groups.members(&group_id).is_none() && add.is_empty() {
        return Err(ApiError::not_found(format!(
            "group {group_id:?} does not exist; add members to create it"
        )));
    }
    let applied = engine
        .mutate(Mutation::GroupUpdate {
            group_id: group_id.clone(),
            add,
            remove,
        })
        .await
        .map_err(storage_error)?;
    let Applied::GroupSize(members) = applied else {
        unreachable!("GroupUpdate answers GroupSize, not {applied:?}")
    };
    ok(json!({"group_id": &*group_id, "members": members}))
}

/// Render `content` for every configured vendor (a body over a vendor's limit is a
/// 413). Vendors the engine has no credentials for are skipped: nothing is ever sent
/// to them, and rendering all eight for every peer message was a fifth of the
/// engine's CPU at 10k messages/s.
fn render(
    engine: &Engine,
    kind: Kind,
    content: &crate::providers::Content,
    ttl_s: u64,
) -> Result<Push, ApiError> {
    Push::render_for(kind, content, ttl_s, unix_now_s(), |p| {
        engine.providers.is_configured(p)
    })
    .map_err(|e| ApiError::too_large(format!("push.payload: {e}")))
}

/// Plan and queue a rendered push; shared by messages and calls. Returns (summary,
/// queued).
fn fan_out(
    engine: &Engine,
    users: &Pin<'_>,
    push: Push,
    recipients: impl IntoIterator<Item = Option<UserIdx>>,
) -> Result<(plan::Summary, usize), ApiError> {
    let is_call = push.is_call();
    let (summary, targets) = plan::plan(&engine.state, users, recipients, is_call, |p| {
        engine.providers.is_configured(p)
    });
    let queued = engine
        .dispatcher
        .submit(Arc::new(push), targets)
        .map_err(|o| {
            inc(&engine.stats.requests_shed);
            ApiError::overloaded(
                format!("the {} queue is full; retry later", o.lane.name()),
                o.retry_after_s,
            )
        })?;
    Ok((summary, queued))
}

fn message(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    let req: wire::MessageRequest = parse(body)?;
    let message_id = wire::id("message_id", &req.message_id)?;
    let sender_id = wire::id("sender_id", &req.sender_id)?;
    let conversation_id = wire::id("conversation_id", &req.conversation_id)?;
    let is_group = match req.conversation_type.as_str() {
        "peer" => false,
        "group" => true,
        other => {
            return Err(ApiError::invalid(format!(
                "conversation_type {other:?} is not peer or group"
            )))
        }
    };
    let content = req.push.map(|p| p.into_content()).transpose()?;
    // Held until planning is done: member and recipient indexes keep their owners.
    let users = engine.state.users.pin();
    let members = if is_group {
        Some(
            engine
                .state
                .groups
                .members(&conversation_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!("group {conversation_id:?} does not exist"))
                })?,
        )
    } else {
        None
    };
    // Render before claiming the id so a too-large push leaves no trace.
    let push = content
        .as_ref()
        .map(|c| {
            render(
                engine,
                Kind::Message {
                    message_id: message_id.clone(),
                },
                c,
                engine.config.messages.ttl_s,
            )
        })
        .transpose()?;
    if !engine.dedup.claim(&message_id) {
        inc(&engine.stats.messages_duplicate);
        return ok(json!({"message_id": &*message_id, "duplicate": true}));
    }
    let sender = users.get(&sender_id);
    let result = match (push, &members) {
        (None, Some(m)) => Ok((
            plan::Summary {
                recipients: m.iter().filter(|u| Some(**u) != sender).count(),
                offline: m
                    .iter()
                    .filter(|u| Some(**u) != sender && !engine.state.presence.is_online(**u))
                    .count(),
            },
            0,
        )),
        (None, None) => {
            let online = users
                .get(&conversation_id)
                .is_some_and(|u| engine.state.presence.is_online(u));
            Ok((
                plan::Summary {
                    recipients: 1,
                    offline: usize::from(!online),
                },
                0,
            ))
        }
        (Some(push), Some(m)) => fan_out(
            engine,
            &users,
            push,
            m.iter().copied().filter(|u| Some(*u) != sender).map(Some),
        ),
        (Some(push), None) => {
            let recipient = users.get(&conversation_id);
            fan_out(engine, &users, push, std::iter::once(recipient))
        }
    };
    let (summary, queued) = result.inspect_err(|_| engine.dedup.release(&message_id))?;
    inc(&engine.stats.messages_accepted);
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({
            "message_id": &*message_id,
            "recipients": summary.recipients,
            "offline_recipients": summary.offline,
            "targets": queued,
        }),
    ))
}

fn call(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    let req: wire::CallRequest = parse(body)?;
    let call_id = wire::id("call_id", &req.call_id)?;
    let inviter_id = wire::id("inviter_id", &req.inviter_id)?;
    if req.invitees.is_empty() || req.invitees.len() > wire::MAX_INVITEES {
        return Err(ApiError::invalid(format!(
            "invitees: 1 to {} user ids",
            wire::MAX_INVITEES
        )));
    }
    if !(1..=wire::MAX_CALL_TIMEOUT_S).contains(&req.timeout_s) {
        return Err(ApiError::invalid(format!(
            "timeout_s must be 1 to {} seconds",
            wire::MAX_CALL_TIMEOUT_S
        )));
    }
    let mut invitees = Vec::with_capacity(req.invitees.len());
    for (i, u) in req.invitees.iter().enumerate() {
        let u = wire::id(&format!("invitees[{i}]"), u)?;
        if u != inviter_id {
            invitees.push(u);
        }
    }
    let content = req
        .push
        .map(|p| p.into_content())
        .transpose()?
        .unwrap_or_default();
    invitees.sort_unstable();
    invitees.dedup();
    let pin = engine.state.users.pin();
    let users: Vec<Option<UserIdx>> = invitees.iter().map(|u| pin.get(u)).collect();
    let kind = Kind::Call {
        call_id: call_id.clone(),
        inviter_id,
        timeout_s: req.timeout_s,
    };
    let push = render(engine, kind, &content, req.timeout_s)?;
    let (summary, queued) = fan_out(engine, &pin, push, users)?;
    inc(&engine.stats.calls_accepted);
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({
            "call_id": &*call_id,
            "offline_invitees": summary.offline,
            "targets": queued,
        }),
    ))
}

async fn debug_push(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    let req: wire::DebugPushRequest = parse(body)?;
    let push_id = wire::id("push_id", &req.push_id)?;
    let content = req.push.unwrap_or_default().into_content()?;
    let (_, device) = engine
        .state
        .registry
        .lookup(&push_id)
        .ok_or_else(|| ApiError::not_found(format!("push_id {push_id:?} is not bound")))?;
    let kind = if device.provider() == crate::state::ProviderKind::ApnsVoip {
        Kind::Call {
            call_id: format!("debug-{push_id}").into(),
            inviter_id: "debug".into(),
            timeout_s: 60,
        }
    } else {
        Kind::Message {
            message_id: format!("debug-{push_id}").into(),
        }
    };
    let push = Push::render(kind, &content, 60, unix_now_s())
        .map_err(|e| ApiError::too_large(format!("push.payload: {e}")))?;
    let v = engine.dispatcher.send_now(&device, &push).await;
    ok(json!({
        "provider": device.provider().as_str(),
        "status": v.status,
        "reason": v.reason,
        "vendor_id": v.vendor_id,
        "outcome": match v.outcome {
            crate::providers::Outcome::Delivered => "delivered",
            crate::providers::Outcome::Retry { .. } => "retry",
            crate::providers::Outcome::TokenDead(_) => "token_dead",
            crate::providers::Outcome::Rejected(_) => "rejected",
        },
    }))
}
