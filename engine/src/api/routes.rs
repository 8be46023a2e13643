//! Request routing and the handlers of every API.md endpoint (those of messages,
//! calls and call cancel in [`fanout`], the delivery ledger's in [`ledger`], the
//! reload in [`admin`], the per-user settings and the user overview in [`users`]).
//!
//! [`handle`] wraps the router with what every request gets: limits on the request
//! target and header list, and, for HTTP/1.1, draining what is left of a body the
//! answer did not need (bounded), so that a client that writes its whole body before
//! reading reads our answer rather than a connection reset.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Body as _;
use hyper::body::Incoming;
use serde::Serialize;
use subtle::ConstantTimeEq;

use self::body::{drain, read_body};
use super::connections::Conn;
use super::error::ApiError;
use super::server::{MAX_HEAD_BYTES, MAX_URI_BYTES};
use super::wire::{self, parse};
use crate::clock::unix_now_s;
use crate::fanout::dedup::Space::{Call, Message};
use crate::providers::{Kind, Push};
use crate::state::{Applied, Mutation};
use crate::telemetry::api::Timer;
use crate::Engine;

mod admin;
mod body;
mod claims;
mod fanout;
mod ledger;
mod users;

use self::fanout::{accept, cancel};

type Resp = Response<Full<Bytes>>;

/// A JSON answer with a typed body (the types of [`wire`], shared with the client).
fn answer(status: StatusCode, body: &impl Serialize) -> Result<Resp, ApiError> {
    let json = serde_json::to_vec(body).expect("answers are plain structs with string keys");
    let mut r = Response::new(Full::new(Bytes::from(json)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Apply `m` durably (`Engine::mutate`). When the log refuses the change or takes it
/// back, nothing changed and the answer is a 500. The store logs the first failure and
/// counts the rest, so this stays at debug (one line per request would flood the log
/// while the disk is full).
async fn mutate(engine: &Engine, m: Mutation) -> Result<Applied, ApiError> {
    engine.mutate(m).await.map_err(|e| {
        tracing::debug!(error = %crate::providers::error_chain(&e), "durable write failed");
        match &e {
            // Cluster mode: NATS did not take it; retrying later converges.
            crate::store::Error::Cluster(c) if c.is_unavailable() => ApiError::unavailable(
                "the change could not be made durable: the cluster's log is unavailable",
                1,
            ),
            _ => ApiError::internal("the change could not be made durable"),
        }
    })
}

fn ok(body: impl Serialize) -> Result<Resp, ApiError> {
    answer(StatusCode::OK, &body)
}

fn healthy() -> wire::Health {
    wire::Health {
        status: "ok".into(),
    }
}

/// A request whose body has not been read yet (`None` once read in full).
type Req = Request<Option<Incoming>>;

/// Answer one request on `conn`.
pub async fn handle(engine: &Arc<Engine>, conn: &Conn, req: Request<Incoming>) -> Resp {
    let access = engine.config.log.access;
    let timer = Timer::start(req.method(), req.uri().path(), req.headers(), access);
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
    timer.finish(&engine.stats, resp.status());
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
                ok(healthy())
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
                // Each vendor lane's state; the status stays 200 (a vendor's outage is not
                // the engine's).
                let providers = engine.providers();
                let configured = |l| {
                    let mut kinds = crate::state::ProviderKind::ALL.into_iter();
                    kinds.any(|p| p.lane() == l && providers.is_configured(p))
                };
                ok(engine
                    .stats
                    .readiness(configured, engine.state.clock.now_ms()))
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
        // The OpenAPI document and the page pointing at it need no token (API.md 1.1).
        ["v1", "openapi.json"] | ["docs"] => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed("GET"));
            }
            return Ok(super::openapi::serve(seg[0] == "docs"));
        }
        // The console's page and assets hold only code: no token (the page asks for it).
        ["console"] | ["console", _] => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed("GET"));
            }
            return super::console::serve(seg.get(1).copied());
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
            let unbind = Mutation::Unbind {
                push_id: push_id.clone(),
            };
            match mutate(engine, unbind).await? {
                Applied::Unbound(Some(user)) => ok(wire::Unbound {
                    push_id: push_id.to_string(),
                    user_id: user.to_string(),
                }),
                _ => Err(ApiError::not_found(format!(
                    "push_id {push_id:?} is not bound"
                ))),
            }
        }
        (_, ["push-ids", _]) => Err(ApiError::method_not_allowed("PUT, DELETE")),
        (&Method::GET, ["users", user_id, "push-ids"]) => {
            let user_id = wire::id("user_id", user_id)?;
            let pin = engine.state.users.pin();
            ok(wire::PushIds {
                push_ids: users::bound_devices(engine, pin.get(&user_id)),
                user_id: user_id.to_string(),
            })
        }
        (&Method::DELETE, ["users", user_id, "push-ids"]) => {
            let user_id = wire::id("user_id", user_id)?;
            let remove = Mutation::RemoveUser {
                user_id: user_id.clone(),
            };
            let removed = match mutate(engine, remove).await? {
                Applied::UserRemoved(n) => n,
                other => unreachable!("RemoveUser answers UserRemoved, not {other:?}"),
            };
            ok(wire::UserRemoved {
                removed,
                user_id: user_id.to_string(),
            })
        }
        (_, ["users", _, "push-ids"]) => Err(ApiError::method_not_allowed("GET, DELETE")),
        (&Method::GET, ["users", user_id]) => users::overview(engine, user_id),
        (_, ["users", _]) => Err(ApiError::method_not_allowed("GET")),
        (_, ["users", u, "conversations", t, c, "notification"]) => {
            users::notification(engine, conn, req, [u, t, c]).await
        }
        (_, ["users", user_id, "badge"]) => users::badge(engine, conn, req, user_id).await,
        (&Method::POST, ["presence"]) => {
            let body = read_body(engine, conn, req).await?;
            presence(engine, &body)
        }
        (_, ["presence"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["presence", user_id]) => {
            let user_id = wire::id("user_id", user_id)?;
            let pin = engine.state.users.pin();
            let status = users::presence(engine, pin.get(&user_id));
            ok(wire::PresenceStatus {
                online: status.online,
                sessions: status.sessions,
                user_id: user_id.to_string(),
            })
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
                Some(m) => ok(wire::GroupSize {
                    group_id: group_id.to_string(),
                    members: m.len(),
                }),
                None => Err(ApiError::not_found(format!(
                    "group {group_id:?} does not exist"
                ))),
            }
        }
        (&Method::DELETE, ["groups", group_id]) => {
            let group_id = wire::id("group_id", group_id)?;
            let delete = Mutation::GroupDelete {
                group_id: group_id.clone(),
            };
            match mutate(engine, delete).await? {
                Applied::GroupDeleted(true) => ok(wire::GroupDeleted {
                    group_id: group_id.to_string(),
                }),
                _ => Err(ApiError::not_found(format!(
                    "group {group_id:?} does not exist"
                ))),
            }
        }
        (_, ["groups", _]) => Err(ApiError::method_not_allowed("GET, DELETE")),
        (&Method::POST, ["messages"]) => {
            let body = read_body(engine, conn, req).await?;
            match engine.cluster() {
                Some(node) => claims::accept_once(engine, node, Message, &body).await,
                None => accept(engine, Message, &body, None),
            }
        }
        (_, ["messages"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["messages", id]) => ledger::report(engine, Message, id).await,
        (_, ["messages", _]) => Err(ApiError::method_not_allowed("GET")),
        (&Method::POST, ["calls"]) => {
            let body = read_body(engine, conn, req).await?;
            match engine.cluster() {
                Some(node) => claims::accept_once(engine, node, Call, &body).await,
                None => accept(engine, Call, &body, None),
            }
        }
        (_, ["calls"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["calls", id]) => ledger::report(engine, Call, id).await,
        (_, ["calls", _]) => Err(ApiError::method_not_allowed("GET")),
        (&Method::POST, ["calls", call_id, "cancel"]) => {
            let call_id = wire::id("call_id", call_id)?;
            let body = read_body(engine, conn, req).await?;
            match engine.cluster() {
                Some(node) => claims::cancel_anywhere(engine, node, call_id, &body).await,
                None => cancel(engine, call_id, &body),
            }
        }
        (_, ["calls", _, "cancel"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::POST, ["debug", "push"]) => {
            let body = read_body(engine, conn, req).await?;
            debug_push(engine, &body).await
        }
        (_, ["debug", "push"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::POST, ["admin", "reload"]) => admin::reload(engine).await,
        (_, ["admin", "reload"]) => Err(ApiError::method_not_allowed("POST")),
        (&Method::GET, ["admin", "config"]) => {
            let tree = engine.reload.tree(&engine.config);
            ok(super::console::running::running(&engine.config, &tree))
        }
        (_, ["admin", "config"]) => Err(ApiError::method_not_allowed("GET")),
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
    let m = Mutation::Bind {
        push_id: push_id.clone(),
        binding,
    };
    let applied = mutate(engine, m).await?;
    let Applied::Bound { previous_user } = applied else {
        unreachable!("Bind answers Bound, not {applied:?}")
    };
    ok(wire::Bound {
        previous_user_id: previous_user.as_deref().map(str::to_string),
        push_id: push_id.to_string(),
        user_id: user_id.to_string(),
    })
}

fn presence(engine: &Engine, body: &[u8]) -> Result<Resp, ApiError> {
    let req: wire::PresenceRequest = parse(body)?;
    req.validate()?;
    let default_ttl = engine.config.presence.default_ttl_s;
    crate::cluster::presence::apply(&engine.state, &req.events, default_ttl);
    if let Some(node) = engine.cluster() {
        node.broadcast_presence(&req.events, default_ttl);
    }
    ok(wire::PresenceApplied {
        applied: req.events.len(),
    })
}

async fn members(engine: &Engine, group_id: Arc<str>, body: &[u8]) -> Result<Resp, ApiError> {
    let (add, remove) = parse::<wire::MembersRequest>(body)?.into_ids()?;
    if engine.state.groups.members(&group_id).is_none() && add.is_empty() {
        return Err(ApiError::not_found(format!(
            "group {group_id:?} does not exist; add members to create it"
        )));
    }
    let update = Mutation::GroupUpdate {
        group_id: group_id.clone(),
        add,
        remove,
    };
    let applied = mutate(engine, update).await?;
    let Applied::GroupSize(members) = applied else {
        unreachable!("GroupUpdate answers GroupSize, not {applied:?}")
    };
    ok(wire::GroupSize {
        group_id: group_id.to_string(),
        members,
    })
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
    // The push's rule set applies here as for messages and calls (API 1.1).
    let rule = crate::fanout::usecase::resource(engine, &content).map_err(fanout::refused)?;
    let ttl_s = content.ttl_s.unwrap_or(60);
    let push = Push::render_for(kind, &content, &rule, ttl_s, unix_now_s(), |_| true)
        .map_err(|e| ApiError::too_large(format!("push.payload: {e}")))?;
    let v = engine.dispatcher.send_now(&device, &push).await;
    let outcome = match v.outcome {
        crate::providers::Outcome::Delivered => "delivered",
        crate::providers::Outcome::Retry { .. } => "retry",
        crate::providers::Outcome::TokenDead(_) => "token_dead",
        crate::providers::Outcome::Rejected(_) => "rejected",
    };
    ok(wire::DebugVerdict {
        outcome: outcome.into(),
        provider: device.provider().as_str().into(),
        reason: v.reason,
        status: v.status,
        vendor_id: v.vendor_id,
    })
}
