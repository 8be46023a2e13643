//! Request routing and the handlers of every API.md endpoint.
//!
//! [`handle`] wraps the router with what every request gets: limits on the request
//! target and header list, and, for HTTP/1.1, draining what is left of a body the
//! answer did not need (bounded), so that a client that writes its whole body before
//! reading reads our answer rather than a connection reset.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::connections::{Conn, Held, Shortfall};
use super::error::ApiError;
use super::server::{MAX_HEAD_BYTES, MAX_URI_BYTES};
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

/// A request whose body has not been read yet (`None` once read in full).
type Req = Request<Option<Incoming>>;

/// Most bytes of an unneeded body read and thrown away before answering.
const DRAIN_MAX_BYTES: usize = 1 << 20;
/// Longest time spent draining an unneeded body before answering.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Answer one request on `conn`.
pub async fn handle(engine: &Arc<Engine>, conn: &Conn, req: Request<Incoming>) -> Resp {
    let http1 = req.version() < Version::HTTP_2;
    let is_head = req.method() == Method::HEAD;
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    let mut req = Request::from_parts(parts, Some(body));
    let result = match check_head(&req) {
        Ok(()) => route(engine, conn, &mut req).await,
        Err(e) => Err(e),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    if http1 {
        if let Some(mut body) = req.into_body() {
            // A client waiting for `100 Continue` has sent nothing to drain; a body
            // that timed out is not worth waiting for.
            let ended = body.is_end_stream()
                || (!expects_continue
                    && resp.status() != StatusCode::REQUEST_TIMEOUT
                    && drain(&mut body).await);
            if !ended {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
    }
    if is_head {
        // No body bytes follow an answer to HEAD; announcing none keeps the framing
        // that `http_errors` follows exact.
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

/// Request-target and header-list limits. HTTP/1.1 heads are bounded by hyper (over
/// `MAX_HEAD_BYTES` it answers 431 itself); HTTP/2 header lists are checked here.
fn check_head(req: &Req) -> Result<(), ApiError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::uri_too_long(format!(
            "the request target is {target} bytes, over the limit of {MAX_URI_BYTES}"
        )));
    }
    if req.version() >= Version::HTTP_2 {
        // Sized as HTTP/2 counts it (RFC 9113 §6.5.2): name + value + 32 per field.
        let size: usize = target
            + req
                .headers()
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>();
        if size > MAX_HEAD_BYTES {
            return Err(ApiError::headers_too_large(format!(
                "the request headers are {size} bytes, over the limit of {MAX_HEAD_BYTES}"
            )));
        }
    }
    Ok(())
}

/// Read and discard what is left of a body, at most [`DRAIN_MAX_BYTES`] for at most
/// [`DRAIN_MAX_TIME`] (nginx's lingering close, done before answering). True when the
/// body ended.
async fn drain(body: &mut Incoming) -> bool {
    let deadline = tokio::time::Instant::now() + DRAIN_MAX_TIME;
    let mut left = DRAIN_MAX_BYTES;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    match left.checked_sub(data.len()) {
                        Some(l) => left = l,
                        None => return false,
                    }
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// Percent-decoded path segments after the leading slash.
pub(super) fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| {
            urlencoding::decode(s)
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::invalid("path is not valid percent-encoded UTF-8"))
        })
        .collect()
}

/// A request body read in full, its bytes held against the body budgets until the
/// request is answered.
struct Body<'c> {
    bytes: Bytes,
    _held: Held<'c>,
}

impl std::ops::Deref for Body<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Read the body of `req` in full: at most `api.max_body_bytes` (413), within
/// `api.body_read_timeout_ms` (408), within the connection's and the engine's body
/// budgets (503). On error what is left of the body stays in `req` for [`handle`].
async fn read_body<'c>(
    engine: &Engine,
    conn: &'c Conn,
    req: &mut Req,
) -> Result<Body<'c>, ApiError> {
    let limit = engine.config.api.max_body_bytes;
    let too_large = || {
        ApiError::too_large(format!(
            "request body is over api.max_body_bytes ({limit} bytes)"
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut held = conn.hold();
    let Some(body) = req.body_mut().as_mut() else {
        return Ok(Body {
            bytes: Bytes::new(),
            _held: held,
        });
    };
    let timeout_ms = engine.config.api.body_read_timeout_ms;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    // One chunk is kept as is; more are copied into one buffer.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut len = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(_))) => return Err(ApiError::invalid("request body could not be read")),
            Err(_) => {
                return Err(ApiError::timeout(format!(
                    "request body not received within api.body_read_timeout_ms ({timeout_ms} ms)"
                )))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len();
        if len > limit {
            return Err(too_large());
        }
        held.take(data.len()).map_err(|short| {
            let message = match short {
                Shortfall::Connection { limit } => format!(
                    "this connection's request bodies in memory would exceed api.max_connection_body_bytes ({limit} bytes); retry later"
                ),
                Shortfall::Total { limit } => format!(
                    "request bodies in memory would exceed api.max_total_body_bytes ({limit} bytes); retry later"
                ),
            };
            ApiError::unavailable(message, 1)
        })?;
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(f) => {
                let hint = declared.map_or(0, |d| d as usize).min(limit);
                joined.reserve(hint.max(f.len() + data.len()));
                joined.extend_from_slice(&f);
                joined.extend_from_slice(&data);
            }
        }
    }
    *req.body_mut() = None;
    let bytes = first.unwrap_or_else(|| joined.freeze());
    Ok(Body { bytes, _held: held })
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 7235 §2.1) and separated from the token by one or more spaces.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii_start();
    (!token.is_empty()).then_some(token)
}

fn authorized(engine: &Engine, req: &Req) -> bool {
    let Some(expected) = &engine.config.api.token else {
        return true;
    };
    let Some(got) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
    else {
        return false;
    };
    got.len() == expected.len() && bool::from(got.ct_eq(expected.as_bytes()))
}

async fn route(engine: &Arc<Engine>, conn: &Conn, req: &mut Req) -> Result<Resp, ApiError> {
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
    if !authorized(engine, req) {
        return Err(ApiError::unauthenticated());
    }
    if !engine.is_ready() {
        return Err(ApiError::unavailable("recovery has not finished", 1));
    }
    match (&method, &seg[1..]) {
        (&Method::PUT, ["push-ids", push_id]) => {
            let push_id = wire::id("push_id", push_id)?;
            let body = read_body(engine, conn, req).await?;
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
            let body = read_body(engine, conn, req).await?;
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
            let body = read_body(engine, conn, req).await?;
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
            let body = read_body(engine, conn, req).await?;
            message(engine, &body)
        }
        (_, ["messages"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::POST, ["calls"]) => {
            let body = read_body(engine, conn, req).await?;
            call(engine, &body)
        }
        (_, ["calls"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::POST, ["calls", _, "cancel"]) => Err(ApiError::unimplemented(
            "call cancellation is not available in this version",
        )),
        (&Method::POST, ["debug", "push"]) => {
            let body = read_body(engine, conn, req).await?;
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
    req.validate()?;
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
    let (add, remove) = parse::<wire::MembersRequest>(body)?.into_ids()?;
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
