//! The OpenAPI 3.1 document of the HTTP API (API.md 1.1 "Documents"), served at
//! `GET /v1/openapi.json` without a token, and the `/docs` page that points at it.
//!
//! The schemas are derived (`utoipa::ToSchema`) from the very types of [`super::wire`]
//! that the engine parses requests into and serializes answers from, so a field added
//! to a body shows up here by itself and cannot drift. The operations are declared in
//! one table, the `paths` module below; the error answers every operation can give are
//! added to all of them by [`CommonErrors`] rather than repeated. Tests hold the table
//! to the router both ways: a unit test reads the router's match arms, and an e2e test
//! probes every method of every documented path on a running engine and checks real
//! answers against the schemas.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::Full;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document, rendered once: it depends on nothing but the types.
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_vec(&ApiDoc::openapi()).expect("the OpenAPI document is plain JSON")
    })
}

/// The answer to `GET /v1/openapi.json` (or, with `page`, to `GET /docs`).
pub fn serve(page: bool) -> Response<Full<Bytes>> {
    let (body, kind) = if page {
        (DOCS_PAGE.as_bytes(), "text/html; charset=utf-8")
    } else {
        (document(), "application/json")
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// `GET /docs`: a page that points at the document; no scripts, no outside assets.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fanfare API</title></head>
<body><h1>Fanfare HTTP API</h1>
<p>The OpenAPI 3.1 document of this engine's API is at
<a href="/v1/openapi.json">/v1/openapi.json</a> (no token needed). Load it into any
OpenAPI viewer or client generator.</p>
<p>Every <code>/v1</code> request needs <code>Authorization: Bearer &lt;api.token&gt;</code>
when a token is configured; <code>/healthz</code>, <code>/readyz</code>,
<code>/metrics</code> and the document do not.</p>
</body></html>
"#;

/// A push's delivery priority (API 1.1 `push.priority`), as the document shows
/// [`crate::providers::Priority`]; the unit test checks both spell the same values.
#[derive(ToSchema)]
#[schema(as = Priority)]
#[allow(dead_code)] // Only its schema is used.
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Normal,
}

/// `GET /v1/stats`: counters and gauges. The keys below are always present; more may
/// be added.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: the answer is built by `telemetry`.
pub struct Stats {
    bindings: u64,
    users: u64,
    online_users: u64,
    groups: u64,
    messages_accepted: u64,
    messages_duplicate: u64,
    calls_accepted: u64,
    requests_shed: u64,
    invalid_tokens_removed: u64,
    /// Per provider: pushes sent, failed, retried, rejected by cause, ...
    providers: std::collections::HashMap<String, serde_json::Value>,
    /// Pushes queued per lane.
    queue_depth: std::collections::HashMap<String, u64>,
    /// Per lane: queue depth, in flight, waiting for retry, breaker state, pace.
    lanes: std::collections::HashMap<String, serde_json::Value>,
    storage: serde_json::Value,
    feedback: serde_json::Value,
}

/// `GET /readyz`: `ok` and each vendor lane's state (`ok` or `degraded` with its
/// breaker and last failure); a vendor outage keeps the status 200.
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: the answer is built by `telemetry`.
pub struct Readiness {
    status: String,
    /// Per configured lane: `state`, `breaker`, `last_failure` (or `null`).
    vendors: std::collections::HashMap<String, serde_json::Value>,
}

/// The whole document: info, the operation table, and the shared parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fanfare sidecar API",
        description = "Offline-push fan-out engine: bindings, presence, groups, messages and \
                       calls with offline push, delivery ledger. The contract is API.md, \
                       versions 1 and 1.1.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        paths::healthz,
        paths::readyz,
        paths::metrics,
        paths::docs,
        paths::openapi_json,
        paths::console_page,
        paths::console_asset,
        paths::bind,
        paths::unbind,
        paths::push_ids_of,
        paths::remove_user,
        paths::user_overview,
        paths::notification_get,
        paths::notification_put,
        paths::badge_get,
        paths::badge_put,
        paths::presence_post,
        paths::presence_get,
        paths::members,
        paths::group_get,
        paths::group_delete,
        paths::message,
        paths::message_ledger,
        paths::call,
        paths::call_ledger,
        paths::cancel,
        paths::debug_push,
        paths::stats,
        paths::reload,
        paths::admin_config,
    ),
    components(schemas(super::wire::ErrorAnswer)),
    modifiers(&CommonErrors),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "push-ids", description = "Device bindings"),
        (name = "users", description = "Per-user settings: do-not-disturb and badge"),
        (name = "presence", description = "Online state reported by the IM server"),
        (name = "groups", description = "Group membership"),
        (name = "messages", description = "Peer and group messages with offline push"),
        (name = "calls", description = "Call invitations with offline push"),
        (name = "operations", description = "Debug push, statistics, the running configuration and its reload"),
        (name = "console", description = "The operator's web console (the page asks for the API token)"),
    )
)]
pub struct ApiDoc;

/// The error answers the router gives any operation, added to every operation of the
/// table (each declares only the errors of its own), and the bearer scheme of `/v1`.
struct CommonErrors;

/// The name of the shared error response in `components.responses`.
const ERROR: &str = "Error";

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            "bearer".into(),
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = ResponseBuilder::new()
            .description("`{\"error\": {\"code\", \"message\"}}`; 429 and 503 carry `Retry-After`")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorAnswer")))
                    .build(),
            )
            .build();
        components.responses.insert(ERROR.into(), error.into());
        for (path, item) in doc.paths.paths.iter_mut() {
            let guarded = path.starts_with("/v1/") && path != "/v1/openapi.json";
            let has_params = path.contains('{');
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                add_errors(op, guarded, has_params);
                absent_not_null(op);
            }
        }
    }
}

/// Add the errors any request of this kind can meet.
fn add_errors(op: &mut Operation, guarded: bool, has_params: bool) {
    let mut codes: Vec<&str> = Vec::with_capacity(8);
    if has_params || op.request_body.is_some() {
        codes.push("400"); // invalid id in the path, bad JSON, missing/invalid field
    }
    if op.request_body.is_some() {
        codes.extend(["408", "413"]); // body too slow, body over api.max_body_bytes
    }
    if guarded {
        codes.extend(["401", "500", "503"]); // token; durable write failed; recovering
    }
    for code in codes {
        op.responses
            .responses
            .entry(code.into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(ERROR)));
    }
}

/// An optional body (`Option<T>` in the table) may be left out, but a JSON `null` is
/// not an object and is refused like any other non-object: keep only the object's
/// schema of the `null`-or-object one utoipa derives.
fn absent_not_null(op: &mut Operation) {
    let Some(body) = &mut op.request_body else {
        return;
    };
    if matches!(body.required, Some(Required::True)) {
        return;
    }
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
        let mut rest = one_of.items.iter().filter(|s| !is_null(s));
        if let (Some(only), None) = (rest.next(), rest.next()) {
            content.schema = Some(only.clone());
        }
    }
}

/// The operation table. Each function only carries its `#[utoipa::path]`; the
/// handlers are in [`super::routes`].
#[allow(dead_code)]
mod paths {
    use super::Stats;
    use crate::api::wire::{
        BadgeCount, BadgeRequest, BindRequest, Bound, CallAccepted, CallCancelled, CallDuplicate,
        CallRequest, CancelRequest, DebugPushRequest, DebugVerdict, DeliveryReport, ErrorAnswer,
        GroupDeleted, GroupSize, Health, MembersRequest, MessageAccepted, MessageDuplicate,
        MessageRequest, NotificationRequest, NotificationStatus, PresenceApplied, PresenceRequest,
        PresenceStatus, PushIds, Reloaded, RunningConfig, Unbound, UserOverview, UserRemoved,
    };

    #[utoipa::path(get, path = "/healthz", tag = "health",
        description = "Liveness: `ok` once recovery finished.",
        responses((status = 200, body = Health), (status = 503, body = ErrorAnswer, description = "recovery has not finished")))]
    fn healthz() {}

    #[utoipa::path(get, path = "/readyz", tag = "health",
        description = "Readiness: recovered and durable writes succeed.",
        responses((status = 200, body = super::Readiness), (status = 503, body = ErrorAnswer, description = "recovering, or writes are failing")))]
    fn readyz() {}

    #[utoipa::path(get, path = "/metrics", tag = "health",
        description = "The counters of `/v1/stats` in Prometheus text format.",
        responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain")))]
    fn metrics() {}

    #[utoipa::path(get, path = "/docs", tag = "health",
        responses((status = 200, description = "A page pointing at this document", body = String, content_type = "text/html")))]
    fn docs() {}

    #[utoipa::path(get, path = "/v1/openapi.json", tag = "health",
        description = "This document; no token needed.",
        responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
    fn openapi_json() {}

    #[utoipa::path(get, path = "/console", tag = "console",
        description = "The web console: live overview, a user, a ledger, a debug push and the running configuration. No token needed to load it; it asks for the API token and sends it on its own requests.",
        responses((status = 200, description = "The console's page", body = String, content_type = "text/html")))]
    fn console_page() {}

    #[utoipa::path(get, path = "/console/{asset}", tag = "console",
        params(("asset" = String, Path, description = "`console.js` or `console.css`")),
        responses(
            (status = 200, description = "The console's script or style", body = String, content_type = "text/javascript"),
            (status = 404, body = ErrorAnswer, description = "no such file"),
        ))]
    fn console_asset() {}

    #[utoipa::path(put, path = "/v1/push-ids/{push_id}", tag = "push-ids",
        description = "Bind a device to a user; binding it to another user moves it. Idempotent; durable once answered.",
        params(("push_id" = String, Path, description = "The device's push id")),
        request_body = BindRequest,
        responses((status = 200, body = Bound)),
        security(("bearer" = [])))]
    fn bind() {}

    #[utoipa::path(delete, path = "/v1/push-ids/{push_id}", tag = "push-ids",
        params(("push_id" = String, Path)),
        responses((status = 200, body = Unbound), (status = 404, body = ErrorAnswer, description = "not bound")),
        security(("bearer" = [])))]
    fn unbind() {}

    #[utoipa::path(get, path = "/v1/users/{user_id}/push-ids", tag = "push-ids",
        description = "A user's bindings; tokens are shown by their first characters only.",
        params(("user_id" = String, Path)),
        responses((status = 200, body = PushIds)),
        security(("bearer" = [])))]
    fn push_ids_of() {}

    #[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users",
        description = "Everything about one user in one answer: bindings (tokens by their first characters only), presence, badge and the conversations set to do-not-disturb. A user never seen answers the defaults.",
        params(("user_id" = String, Path)),
        responses((status = 200, body = UserOverview)),
        security(("bearer" = [])))]
    fn user_overview() {}

    #[utoipa::path(delete, path = "/v1/users/{user_id}/push-ids", tag = "push-ids",
        params(("user_id" = String, Path)),
        responses((status = 200, body = UserRemoved)),
        security(("bearer" = [])))]
    fn remove_user() {}

    #[utoipa::path(get, path = "/v1/users/{user_id}/conversations/{conversation_type}/{conversation_id}/notification",
        tag = "users", description = "`notify` when never set.",
        params(("user_id" = String, Path), ("conversation_type" = String, Path, description = "`peer` or `group`"), ("conversation_id" = String, Path)),
        responses((status = 200, body = NotificationStatus)),
        security(("bearer" = [])))]
    fn notification_get() {}

    #[utoipa::path(put, path = "/v1/users/{user_id}/conversations/{conversation_type}/{conversation_id}/notification",
        tag = "users", description = "Set do-not-disturb for one conversation of a user. Durable.",
        params(("user_id" = String, Path), ("conversation_type" = String, Path, description = "`peer` or `group`"), ("conversation_id" = String, Path)),
        request_body = NotificationRequest,
        responses((status = 200, body = NotificationStatus), (status = 409, body = ErrorAnswer, description = "`limit_exceeded`: too many muted conversations")),
        security(("bearer" = [])))]
    fn notification_put() {}

    #[utoipa::path(get, path = "/v1/users/{user_id}/badge", tag = "users",
        description = "The user's unread counter (`0` when never set).",
        params(("user_id" = String, Path)),
        responses((status = 200, body = BadgeCount)),
        security(("bearer" = [])))]
    fn badge_get() {}

    #[utoipa::path(put, path = "/v1/users/{user_id}/badge", tag = "users",
        description = "Set the unread counter that `badge_increment` adds to.",
        params(("user_id" = String, Path)),
        request_body = BadgeRequest,
        responses((status = 200, body = BadgeCount)),
        security(("bearer" = [])))]
    fn badge_put() {}

    #[utoipa::path(post, path = "/v1/presence", tag = "presence",
        description = "Up to 10,000 session events. Not persisted.",
        request_body = PresenceRequest,
        responses((status = 200, body = PresenceApplied)),
        security(("bearer" = [])))]
    fn presence_post() {}

    #[utoipa::path(get, path = "/v1/presence/{user_id}", tag = "presence",
        params(("user_id" = String, Path)),
        responses((status = 200, body = PresenceStatus)),
        security(("bearer" = [])))]
    fn presence_get() {}

    #[utoipa::path(post, path = "/v1/groups/{group_id}/members", tag = "groups",
        description = "Add and remove members; the first add creates the group. Up to 100,000 ids.",
        params(("group_id" = String, Path)),
        request_body = MembersRequest,
        responses((status = 200, body = GroupSize), (status = 404, body = ErrorAnswer, description = "no such group and nothing to add")),
        security(("bearer" = [])))]
    fn members() {}

    #[utoipa::path(get, path = "/v1/groups/{group_id}", tag = "groups",
        params(("group_id" = String, Path)),
        responses((status = 200, body = GroupSize), (status = 404, body = ErrorAnswer)),
        security(("bearer" = [])))]
    fn group_get() {}

    #[utoipa::path(delete, path = "/v1/groups/{group_id}", tag = "groups",
        params(("group_id" = String, Path)),
        responses((status = 200, body = GroupDeleted), (status = 404, body = ErrorAnswer)),
        security(("bearer" = [])))]
    fn group_delete() {}

    #[utoipa::path(post, path = "/v1/messages", tag = "messages",
        description = "Push the offline recipients of a peer or group message. `message_id` is an idempotency key.",
        request_body = MessageRequest,
        responses(
            (status = 202, body = MessageAccepted, description = "accepted; delivery is asynchronous"),
            (status = 200, body = MessageDuplicate, description = "a repeat within the dedup window: nothing pushed again"),
            (status = 429, body = ErrorAnswer, description = "`overloaded`, with `Retry-After`"),
        ),
        security(("bearer" = [])))]
    fn message() {}

    #[utoipa::path(get, path = "/v1/messages/{message_id}", tag = "messages",
        description = "The delivery ledger of one message.",
        params(("message_id" = String, Path)),
        responses((status = 200, body = DeliveryReport), (status = 404, body = ErrorAnswer, description = "unknown or past its retention")),
        security(("bearer" = [])))]
    fn message_ledger() {}

    #[utoipa::path(post, path = "/v1/calls", tag = "calls",
        description = "Ring the offline invitees. `call_id` is an idempotency key.",
        request_body = CallRequest,
        responses(
            (status = 202, body = CallAccepted, description = "accepted; delivery is asynchronous"),
            (status = 200, body = CallDuplicate, description = "a repeat within the dedup window: nothing rings again"),
            (status = 429, body = ErrorAnswer, description = "`overloaded`, with `Retry-After`"),
        ),
        security(("bearer" = [])))]
    fn call() {}

    #[utoipa::path(get, path = "/v1/calls/{call_id}", tag = "calls",
        description = "The delivery ledger of one call.",
        params(("call_id" = String, Path)),
        responses((status = 200, body = DeliveryReport), (status = 404, body = ErrorAnswer, description = "unknown or past its retention")),
        security(("bearer" = [])))]
    fn call_ledger() {}

    #[utoipa::path(post, path = "/v1/calls/{call_id}/cancel", tag = "calls",
        description = "Withdraw undelivered invitations and send a cancellation push to devices already rung. The body is optional.",
        params(("call_id" = String, Path)),
        request_body(content = Option<CancelRequest>, description = "optional"),
        responses((status = 200, body = CallCancelled), (status = 404, body = ErrorAnswer, description = "unknown, cancelled or expired call")),
        security(("bearer" = [])))]
    fn cancel() {}

    #[utoipa::path(post, path = "/v1/debug/push", tag = "operations",
        description = "Send one push now and answer the vendor's verdict.",
        request_body = DebugPushRequest,
        responses((status = 200, body = DebugVerdict), (status = 404, body = ErrorAnswer, description = "push_id not bound")),
        security(("bearer" = [])))]
    fn debug_push() {}

    #[utoipa::path(get, path = "/v1/stats", tag = "operations",
        responses((status = 200, body = Stats)),
        security(("bearer" = [])))]
    fn stats() {}

    #[utoipa::path(post, path = "/v1/admin/reload", tag = "operations",
        description = "Re-read the configuration file (as SIGHUP does): credentials, apps, resources, \
                       rate limits and the feedback target change without a restart. A file with \
                       problems is refused with every problem listed and nothing changes.",
        responses((status = 200, body = Reloaded), (status = 400, body = ErrorAnswer, description = "the file has problems; the running configuration stays")),
        security(("bearer" = [])))]
    fn reload() {}

    #[utoipa::path(get, path = "/v1/admin/config", tag = "operations",
        description = "The configuration in force (after a reload: the re-read file, with the restart-only sections as started): every key at its value, defaults included, and every secret (API token, feedback secret, vendor keys and secrets, URL credentials) replaced by `<redacted>`. Paths of key files are shown.",
        responses((status = 200, body = RunningConfig)),
        security(("bearer" = [])))]
    fn admin_config() {}
}

pub(crate) mod enums;
#[cfg(test)]
mod tests;
