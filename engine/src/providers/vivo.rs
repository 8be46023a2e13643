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

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::connect::{self, Connect};
use super::oem::{Body, Oem, Render, Route, Target, TokenHeader};
use super::splice::Slot;
use super::token::{self, Access, Fresh};
use super::{Cause, Configure, Outcome, Push, Verdict};
use crate::config::{self, Check, Secret};
use crate::state::{ProviderKind, Token};
use crate::transport::{auto, Response};

/// The vivo client: the OEM skeleton over [`Vivo`].
pub type Client = super::oem::Client<Vivo>;

/// `[vivo]`, validated.
#[derive(Debug)]
pub struct Settings {
    pub section: config::Vivo,
    /// `app_id`, numeric.
    pub app_id: u64,
    pub app_key: String,
    pub app_secret: Secret,
    pub connect: Connect,
}

/// vivo's part of the client.
pub struct Vivo {
    app_id: u64,
    app_key: String,
    secret: Secret,
    /// `"appId":N,"classification":C,"pushMode":M,`
    client_fields: Bytes,
    auth_codes: Box<[i64]>,
    /// UNIX seconds until which a quota code forbids sending.
    paused_until: AtomicU64,
}

impl Configure for Vivo {
    type Section = config::Vivo;
    type Settings = Settings;

    fn settings(c: &config::Vivo, connect: Connect, check: &mut Check) -> Option<Settings> {
        if c.classification > 1 {
            check.key("classification", " must be 0 (operational) or 1 (system)");
        }
        if c.push_mode > 1 {
            check.key("push_mode", " must be 0 (formal) or 1 (test)");
        }
        check.endpoint("endpoint", &c.endpoint);
        let mut needs = check.needs("app_id", c.app_id.as_ref());
        let app_key = needs.key("app_key", &c.app_key);
        let app_secret = needs.key("app_secret", &c.app_secret);
        let id = needs.finish()?;
        let app_id = id
            .parse()
            .ok()
            .filter(|_| id.bytes().all(|b| b.is_ascii_digit()));
        if app_id.is_none() {
            check.key("app_id", format_args!(" {id:?} must be the numeric AppID"));
        }
        Some(Settings {
            app_id: app_id?,
            app_key: app_key?,
            app_secret: app_secret?,
            section: c.clone(),
            connect,
        })
    }
}

impl Oem for Vivo {
    const NAME: &'static str = "vivo";
    const CONTENT_TYPE: &'static str = "application/json;charset=UTF-8";
    /// vivo's `authToken` header (header names go out lowercase); a constant name
    /// costs no allocation per request.
    const TOKEN_HEADER: Option<TokenHeader> =
        Some(TokenHeader::Raw(http::HeaderName::from_static("authtoken")));

    fn new(s: &Settings) -> Result<(Self, Vec<Route>), connect::Error> {
        // Valid a day; vivo asks for a refresh every 1–2 hours.
        let c = &s.section;
        let route =
            Route::new(&s.connect, &c.endpoint, "/message/send")?.token_path("/message/auth", 3600);
        let vendor = Self {
            app_id: s.app_id,
            app_key: s.app_key.clone(),
            secret: s.app_secret.clone(),
            client_fields: format!(
                "\"appId\":{},\"classification\":{},\"pushMode\":{},",
                s.app_id, c.classification, c.push_mode
            )
            .into(),
            auth_codes: c.auth_error_codes.clone().into(),
            paused_until: AtomicU64::new(0),
        };
        Ok((vendor, vec![route]))
    }

    const RENDER: Render = payload::render;
    const OF: fn(&Push) -> &Body = |push| &push.vivo;

    fn fetch_token(
        &self,
        http: &auto::Client,
        uri: &str,
    ) -> impl std::future::Future<Output = Result<Fresh, token::Error>> + Send {
        auth::fetch(http, uri, self.app_id, &self.app_key, &self.secret)
    }

    /// The body buffer is its only allocation: the `requestId` is formatted on the
    /// stack.
    fn body(&self, to: Target<'_>, b: &Body, _: Option<&Access>) -> Bytes {
        let mut request_id = [0u8; uuid::fmt::Simple::LENGTH];
        let request_id = uuid::Uuid::new_v4().simple().encode_lower(&mut request_id);
        b.spliced.fill_slots(&[
            Slot::Raw(&self.client_fields),
            Slot::Json(to.token),
            Slot::Raw(request_id.as_bytes()),
        ])
    }

    fn classify(&self, resp: &Response, to: Target<'_>, detail: bool) -> Verdict {
        response::classify(resp, to.token, &self.auth_codes, detail)
    }

    fn gate(&self) -> Option<Verdict> {
        let now = crate::clock::unix_now_s();
        let paused = self.paused_until.load(Ordering::Relaxed);
        (now < paused).then(|| {
            let after = Duration::from_secs(paused - now);
            Verdict::failed(
                "quota exhausted today; paused".into(),
                Outcome::retry(Cause::QuotaExceeded, Some(after)),
            )
        })
    }

    fn observe(&self, v: &Verdict) {
        if let Outcome::Retry {
            cause: Cause::QuotaExceeded,
            after: Some(after),
        } = v.outcome
        {
            let until = crate::clock::unix_now_s() + after.as_secs();
            self.paused_until.fetch_max(until, Ordering::Relaxed);
            tracing::warn!(reason = ?v.reason, "vivo quota exhausted: pausing vivo pushes until tomorrow (China time)");
        }
    }

    fn parse_token(_: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        super::text_token(
            token,
            23..=23,
            |b| b.is_ascii_alphanumeric(),
            || "a vivo regId is 23 letters and digits".into(),
        )
    }
}
