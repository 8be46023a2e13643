//! vivo Push, `VENDORS.md` §3.5.
//!
//! Auth: `POST /message/auth` with `{"appId","appKey","timestamp","sign"}`,
//! `sign = hex(md5(appId + appKey + timestamp + appSecret))` ([`auth`]); the
//! `authToken` (valid a day) is cached and refreshed hourly, sent as the `authToken`
//! header. Send: `POST /message/send` with `regId`, a unique `requestId`, `appId`,
//! `classification`, `pushMode` and the content rendered once per message
//! ([`payload::render`]).
//!
//! Quota codes 10070/10252/10254 are pacing, not token death: the client stops calling
//! vivo until the next day (China time) — vivo lowers an app's quota if it keeps
//! calling after them — and each push gets `Retry` with that delay, so it expires
//! rather than hammering the API.

pub mod auth;
pub mod payload;
pub mod response;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::HeaderValue;
use http_body_util::Full;

use super::splice::Slot;
use super::{token, Cause, Outcome, Push, Verdict};
use crate::config::Secret;
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, auto};

/// vivo's `authToken` header (header names go out lowercase); a constant name costs
/// no allocation per request.
const AUTH_TOKEN: http::HeaderName = http::HeaderName::from_static("authtoken");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("vivo.{0} is required")]
    Missing(&'static str),
    #[error("vivo.app_id must be numeric")]
    BadAppId,
    #[error("vivo tls")]
    Tls(#[from] transport::tls::Error),
    #[error("vivo endpoint")]
    Endpoint(#[from] transport::pool::Error),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_id: u64,
    pub app_key: String,
    pub app_secret: Secret,
    pub endpoint: String,
    pub classification: u8,
    pub push_mode: u8,
    pub auth_error_codes: Vec<i64>,
    pub connections: usize,
    pub ca_file: Option<std::path::PathBuf>,
    /// Connect, handshake and request bounds, PINGs, reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    pub fn from_config(c: &crate::config::Vivo) -> Result<Option<Self>, Error> {
        let Some(app_id) = c.app_id.as_deref() else {
            return Ok(None);
        };
        Ok(Some(Self {
            app_id: app_id.parse().map_err(|_| Error::BadAppId)?,
            app_key: c.app_key.clone().ok_or(Error::Missing("app_key"))?,
            app_secret: c.app_secret.clone().ok_or(Error::Missing("app_secret"))?,
            endpoint: c.endpoint.clone(),
            classification: c.classification,
            push_mode: c.push_mode,
            auth_error_codes: c.auth_error_codes.clone(),
            connections: c.connections,
            ca_file: c.ca_file.clone(),
            transport: crate::config::Transport::default(),
        }))
    }
}

pub struct Client {
    http: auto::Client,
    auth_uri: String,
    send_uri: http::Uri,
    app_id: u64,
    app_key: String,
    secret: Secret,
    auth: token::Cache,
    /// `"appId":N,"classification":C,"pushMode":M,`
    client_fields: Bytes,
    auth_codes: Box<[i64]>,
    /// UNIX seconds until which a quota code forbids sending.
    paused_until: AtomicU64,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, Error> {
        let ep = transport::Endpoint::parse(&s.endpoint)?;
        let http = auto::Client::new(
            &ep.base,
            s.ca_file.as_deref(),
            &transport::pool::Options::from_config(s.connections, &s.transport),
        )?;
        Ok(Self {
            http,
            auth_uri: format!("{}/message/auth", ep.base),
            send_uri: super::parse_uri(format!("{}/message/send", ep.base))?,
            app_id: s.app_id,
            app_key: s.app_key.clone(),
            secret: s.app_secret.clone(),
            // Valid a day; vivo asks for a refresh every 1–2 hours.
            auth: token::Cache::new(3600),
            client_fields: format!(
                "\"appId\":{},\"classification\":{},\"pushMode\":{},",
                s.app_id, s.classification, s.push_mode
            )
            .into(),
            auth_codes: s.auth_error_codes.clone().into(),
            paused_until: AtomicU64::new(0),
        })
    }

    pub fn tokens_fetched(&self) -> u64 {
        self.auth.fetched()
    }

    /// The request for one device: the body buffer is its only allocation (the
    /// `requestId` is formatted on the stack).
    pub(crate) fn request(
        &self,
        regid: &str,
        push: &Push,
        token: &token::Access,
    ) -> http::Request<Full<bytes::Bytes>> {
        let mut request_id = [0u8; uuid::fmt::Simple::LENGTH];
        let request_id = uuid::Uuid::new_v4().simple().encode_lower(&mut request_id);
        let body = push.vivo.fill_slots(&[
            Slot::Raw(&self.client_fields),
            Slot::Json(regid),
            Slot::Raw(request_id.as_bytes()),
        ]);
        http::Request::post(self.send_uri.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=UTF-8"),
            )
            .header(AUTH_TOKEN, token.raw())
            .body(Full::new(body))
            .expect("request head is valid")
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        let now = crate::clock::unix_now_s();
        let paused = self.paused_until.load(Ordering::Relaxed);
        if now < paused {
            return Verdict {
                status: None,
                reason: Some("quota exhausted today; paused".into()),
                vendor_id: None,
                outcome: Outcome::Retry {
                    after: Some(Duration::from_secs(paused - now)),
                    cause: Cause::QuotaExceeded,
                },
            };
        }
        let token = match self
            .auth
            .get(|| {
                auth::fetch(
                    &self.http,
                    &self.auth_uri,
                    self.app_id,
                    &self.app_key,
                    &self.secret,
                )
            })
            .await
        {
            Ok(t) => t,
            Err(e) => return token::verdict("vivo", &e),
        };
        let regid = super::token_text(device.token());
        match self.http.send(self.request(&regid, push, &token)).await {
            Ok(resp) => {
                let v = response::classify(&resp, &regid, &self.auth_codes, detail);
                match v.outcome {
                    Outcome::Retry {
                        cause: Cause::ProviderAuth,
                        ..
                    } => self.auth.invalidate(&token),
                    Outcome::Retry {
                        cause: Cause::QuotaExceeded,
                        after: Some(after),
                    } => {
                        let until = crate::clock::unix_now_s() + after.as_secs();
                        self.paused_until.fetch_max(until, Ordering::Relaxed);
                        tracing::warn!(reason = ?v.reason, "vivo quota exhausted: pausing vivo pushes until tomorrow (China time)");
                    }
                    _ => {}
                }
                v
            }
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

super::impl_vendor!(
    Vivo,
    super::splice::Spliced,
    payload::render,
    Client::tokens_fetched
);

/// The API's check of a vivo device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    let _ = kind;
    super::text_token(
        token,
        23..=23,
        |b| b.is_ascii_alphanumeric(),
        || "a vivo regId is 23 letters and digits".into(),
    )
}
