//! A typed client of the sidecar API (API.md), for the programs that drive an engine:
//! the load generator, the end-to-end and durability tests, the benches.
//!
//! Requests and answers are the engine's own wire types ([`crate::api::wire`]), so a
//! field renamed in the engine is a compile error in every client rather than a
//! `Value` lookup that quietly reads `null`. The client speaks h2c (prior knowledge,
//! one multiplexed connection: what the load generator measures) or HTTP/1.1 (a
//! pool), sets `TCP_NODELAY`, and bounds every request by a timeout that covers the
//! answer's head and body and by a cap on the answer's size.
//!
//! Per request it costs what any hyper request costs: the URL and the JSON body are
//! formatted once, the token header is built once at construction.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::wire;
pub use crate::api::wire::{
    BindRequest, Bound, BoundDevice, CallAccepted, CallRequest, DebugPushRequest, DebugVerdict,
    ErrorAnswer, ErrorDetail, GroupDeleted, GroupSize, Health, MembersRequest, MessageAccepted,
    MessageAnswer, MessageDuplicate, MessageRequest, PresenceApplied, PresenceEvent,
    PresenceRequest, PresenceStatus, PushConfig, PushIds, Unbound, UserRemoved,
};
pub use crate::api::wire::{CallAnswer, CallCancelled, CallDuplicate, CancelRequest};
pub use crate::api::wire::{DeliveryReport, FailedTarget, Outcomes};

/// Default bound on one request, head and body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read (`/v1/stats` is the largest, a few KiB).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("request to {url} could not be built")]
    Request {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error("the API did not answer")]
    Transport(#[source] hyper_util::client::legacy::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer body could not be read")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The engine answered with an error (API.md's `{"error": {...}}`).
    #[error("the API answered {status}: {code}: {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        /// `Retry-After` of a 429/503, in seconds.
        retry_after_s: Option<u64>,
    },
    #[error("the {status} answer is not the expected JSON")]
    Decode {
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The HTTP status the engine answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code (`not_found`, `overloaded`, ...), if the engine answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The wire protocol of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/2 with prior knowledge: all requests on one connection.
    H2c,
    /// HTTP/1.1 over a pool of keep-alive connections.
    Http1,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct Builder {
    base: String,
    protocol: Protocol,
    token: Option<String>,
    timeout: Duration,
}

impl Builder {
    /// HTTP/1.1 or h2c (the default is h2c).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Send `Authorization: Bearer <token>` on every request.
    pub fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_string);
        self
    }

    /// Bound on one request, head and body (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(self.protocol == Protocol::H2c)
            .build(connector);
        let auth = self.token.map(|t| {
            let mut v = HeaderValue::try_from(format!("Bearer {t}"))
                .expect("an API token is printable ASCII (config validation)");
            v.set_sensitive(true);
            v
        });
        Client {
            http,
            base: self.base.trim_end_matches('/').into(),
            auth,
            timeout: self.timeout,
        }
    }
}

/// An answer as it came: for requests whose answer is not one of the wire types
/// (deliberately malformed requests, `/metrics`, header checks).
#[derive(Debug, Clone)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A client of one engine's API. Cheap to clone (clones share connections). Its
/// `Debug` shows no token: the header value is marked sensitive.
#[derive(Clone, Debug)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, no trailing slash.
    base: Arc<str>,
    auth: Option<HeaderValue>,
    timeout: Duration,
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> std::borrow::Cow<'_, str> {
    urlencoding::encode(s)
}

impl Client {
    /// A client of the engine at `base` (`http://127.0.0.1:7070`).
    pub fn builder(base: impl Into<String>) -> Builder {
        Builder {
            base: base.into(),
            protocol: Protocol::H2c,
            token: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The engine's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send `req` as it is (the client's token is added unless it has an
    /// `Authorization` header), bounded by the client's timeout.
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Raw, Error> {
        if let Some(auth) = &self.auth {
            if !req.headers().contains_key(header::AUTHORIZATION) {
                req.headers_mut()
                    .insert(header::AUTHORIZATION, auth.clone());
            }
        }
        let answer = async {
            let resp = self.http.request(req).await.map_err(Error::Transport)?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(Error::Body)?
                .to_bytes();
            Ok(Raw {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
    }

    /// `method` on `path` (from the leading slash) with `body` as its bytes.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Raw, Error> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|source| Error::Request { url, source })?;
        self.send(req).await
    }

    /// A request with a JSON body (or none) whose 2xx answer is a `T`.
    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let body =
            body.map(|b| Bytes::from(serde_json::to_vec(b).expect("requests are plain structs")));
        let raw = self.request(method, path, body).await?;
        decode(raw)
    }

    /// `GET path`, answered with a `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.typed(Method::GET, path, None::<&()>).await
    }

    /// `PUT path` with `req`, answered with a `T`.
    async fn put<T: DeserializeOwned>(&self, path: &str, req: &impl Serialize) -> Result<T, Error> {
        self.typed(Method::PUT, path, Some(req)).await
    }

    /// `DELETE path`, answered with a `T`.
    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.typed(Method::DELETE, path, None::<&()>).await
    }

    /// `POST path` with `req`, answered with a `T`.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        req: &impl Serialize,
    ) -> Result<T, Error> {
        self.typed(Method::POST, path, Some(req)).await
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<Health, Error> {
        self.get("/healthz").await
    }

    /// `PUT /v1/push-ids/{push_id}`.
    pub async fn bind(&self, push_id: &str, req: &BindRequest) -> Result<Bound, Error> {
        self.put(&format!("/v1/push-ids/{}", seg(push_id)), req)
            .await
    }

    /// `DELETE /v1/push-ids/{push_id}`.
    pub async fn unbind(&self, push_id: &str) -> Result<Unbound, Error> {
        self.delete(&format!("/v1/push-ids/{}", seg(push_id))).await
    }

    /// `GET /v1/users/{user_id}/push-ids`.
    pub async fn push_ids(&self, user_id: &str) -> Result<PushIds, Error> {
        self.get(&format!("/v1/users/{}/push-ids", seg(user_id)))
            .await
    }

    /// `DELETE /v1/users/{user_id}/push-ids`.
    pub async fn remove_user(&self, user_id: &str) -> Result<UserRemoved, Error> {
        self.delete(&format!("/v1/users/{}/push-ids", seg(user_id)))
            .await
    }

    /// `POST /v1/presence`.
    pub async fn presence(&self, req: &PresenceRequest) -> Result<PresenceApplied, Error> {
        self.post("/v1/presence", req).await
    }

    /// `GET /v1/presence/{user_id}`.
    pub async fn presence_of(&self, user_id: &str) -> Result<PresenceStatus, Error> {
        self.get(&format!("/v1/presence/{}", seg(user_id))).await
    }

    /// `POST /v1/groups/{group_id}/members`.
    pub async fn members(&self, group_id: &str, req: &MembersRequest) -> Result<GroupSize, Error> {
        self.post(&format!("/v1/groups/{}/members", seg(group_id)), req)
            .await
    }

    /// `GET /v1/groups/{group_id}`.
    pub async fn group(&self, group_id: &str) -> Result<GroupSize, Error> {
        self.get(&format!("/v1/groups/{}", seg(group_id))).await
    }

    /// `DELETE /v1/groups/{group_id}`.
    pub async fn delete_group(&self, group_id: &str) -> Result<GroupDeleted, Error> {
        self.delete(&format!("/v1/groups/{}", seg(group_id))).await
    }

    /// `POST /v1/messages`: accepted (`202`) or a duplicate (`200`).
    pub async fn message(&self, req: &MessageRequest) -> Result<MessageAnswer, Error> {
        self.post("/v1/messages", req).await
    }

    /// `GET /v1/messages/{message_id}`: the message's delivery ledger entry.
    pub async fn message_report(&self, message_id: &str) -> Result<DeliveryReport, Error> {
        self.get(&format!("/v1/messages/{}", seg(message_id))).await
    }

    /// `GET /v1/calls/{call_id}`: the call's delivery ledger entry.
    pub async fn call_report(&self, call_id: &str) -> Result<DeliveryReport, Error> {
        self.get(&format!("/v1/calls/{}", seg(call_id))).await
    }

    /// `POST /v1/calls`.
    pub async fn call(&self, req: &CallRequest) -> Result<CallAccepted, Error> {
        self.post("/v1/calls", req).await
    }

    /// `POST /v1/debug/push`.
    pub async fn debug_push(&self, req: &DebugPushRequest) -> Result<DebugVerdict, Error> {
        self.post("/v1/debug/push", req).await
    }

    /// `GET /v1/stats`: counters whose set grows with the engine, so kept as JSON.
    pub async fn stats(&self) -> Result<serde_json::Value, Error> {
        self.get("/v1/stats").await
    }

    /// `PUT /v1/users/{user_id}/conversations/{conversation_type}/{conversation_id}/notification`
    /// with `status` `do_not_disturb` or `notify`.
    pub async fn set_notification(
        &self,
        user_id: &str,
        conversation: (&str, &str),
        status: &str,
    ) -> Result<wire::NotificationStatus, Error> {
        let req = wire::NotificationRequest {
            status: status.into(),
        };
        self.put(&notification_path(user_id, conversation), &req)
            .await
    }

    /// `GET` of [`Client::set_notification`]'s path.
    pub async fn notification(
        &self,
        user_id: &str,
        conversation: (&str, &str),
    ) -> Result<wire::NotificationStatus, Error> {
        self.get(&notification_path(user_id, conversation)).await
    }

    /// `PUT /v1/users/{user_id}/badge`.
    pub async fn set_badge(&self, user_id: &str, count: u32) -> Result<wire::BadgeCount, Error> {
        let req = wire::BadgeRequest { count };
        self.put(&format!("/v1/users/{}/badge", seg(user_id)), &req)
            .await
    }

    /// `GET /v1/users/{user_id}/badge`.
    pub async fn badge(&self, user_id: &str) -> Result<wire::BadgeCount, Error> {
        self.get(&format!("/v1/users/{}/badge", seg(user_id))).await
    }

    /// `POST /v1/calls/{call_id}/cancel` (API 1.1); `404 not_found` for a call that
    /// is unknown, already cancelled or timed out.
    pub async fn cancel_call(
        &self,
        call_id: &str,
        req: &CancelRequest,
    ) -> Result<CallCancelled, Error> {
        self.post(&format!("/v1/calls/{}/cancel", seg(call_id)), req)
            .await
    }
}

/// The do-not-disturb path of `user_id` for `(conversation_type, conversation_id)`.
fn notification_path(user_id: &str, (kind, id): (&str, &str)) -> String {
    format!(
        "/v1/users/{}/conversations/{}/{}/notification",
        seg(user_id),
        seg(kind),
        seg(id)
    )
}

/// A 2xx answer as a `T`; any other as [`Error::Api`].
fn decode<T: DeserializeOwned>(raw: Raw) -> Result<T, Error> {
    let status = raw.status;
    if status.is_success() {
        return serde_json::from_slice(&raw.body)
            .map_err(|source| Error::Decode { status, source });
    }
    let retry_after_s = raw
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (code, message) = match serde_json::from_slice::<ErrorAnswer>(&raw.body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            "unknown".to_string(),
            String::from_utf8_lossy(&raw.body[..raw.body.len().min(512)]).into_owned(),
        ),
    };
    Err(Error::Api {
        status,
        code,
        message,
        retry_after_s,
    })
}

/// The request bodies, built from plain values (the request structs take owned
/// strings so they can also be read by the engine).
pub mod request {
    use super::{
        BindRequest, CallRequest, MessageRequest, PresenceEvent, PresenceRequest, PushConfig,
    };

    /// A production binding without an app id.
    pub fn bind(user_id: &str, provider: &str, token: &str) -> BindRequest {
        BindRequest {
            user_id: user_id.into(),
            provider: provider.into(),
            token: token.into(),
            app_id: None,
            environment: None,
        }
    }

    /// A message from `sender_id` to a peer (`conversation_type` `peer`) or group.
    pub fn message(
        message_id: impl Into<String>,
        sender_id: &str,
        conversation_type: &str,
        conversation_id: impl Into<String>,
        push: Option<PushConfig>,
    ) -> MessageRequest {
        MessageRequest {
            message_id: message_id.into(),
            sender_id: sender_id.into(),
            conversation_type: conversation_type.into(),
            conversation_id: conversation_id.into(),
            push,
        }
    }

    /// A call invitation.
    pub fn call(
        call_id: impl Into<String>,
        inviter_id: &str,
        invitees: Vec<String>,
        timeout_s: u64,
        push: Option<PushConfig>,
    ) -> CallRequest {
        CallRequest {
            call_id: call_id.into(),
            inviter_id: inviter_id.into(),
            invitees,
            timeout_s,
            push,
        }
    }

    /// A push with a title, a text and a payload.
    pub fn push(title: &str, content: &str, payload: impl Into<String>) -> PushConfig {
        PushConfig {
            title: Some(title.into()),
            content: Some(content.into()),
            payload: Some(payload.into()),
            ..PushConfig::default()
        }
    }

    /// One presence event.
    pub fn session(user_id: &str, session_id: &str, online: bool) -> PresenceEvent {
        PresenceEvent {
            user_id: user_id.into(),
            session_id: session_id.into(),
            online,
            ttl_s: None,
        }
    }

    /// A batch of presence events.
    pub fn presence(events: Vec<PresenceEvent>) -> PresenceRequest {
        PresenceRequest { events }
    }
}
