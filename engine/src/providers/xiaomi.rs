//! Xiaomi MiPush server API, `VENDORS.md` §3.3.
//!
//! `POST {endpoint}/v3/message/regid` (the regional host is the configured endpoint)
//! with `Authorization: key=<AppSecret>` (no token exchange) and a form body:
//! `registration_id`, `title`, `description`, `payload`, `restricted_package_name`,
//! `pass_through=0`, `notify_type`, `time_to_live` (ms) and `extra.*` fields such as
//! `extra.channel_id`. The form is rendered once per message ([`payload::render`]);
//! each device adds its URL-encoded regId. Business errors come as HTTP 200 with a
//! numeric `code` ([`response::classify`]).

pub mod payload;
pub mod response;

use std::borrow::Cow;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::HeaderValue;

use super::connect::{self, Connect};
use super::oem::{Body, Oem, Render, Route, Target, TokenHeader};
use super::splice::Slot;
use super::token::Access;
use super::{Configure, Push, Verdict};
use crate::config::{self, Check};
use crate::state::{ProviderKind, Token};
use crate::transport::Response;

/// The Xiaomi client: the OEM skeleton over [`Xiaomi`].
pub type Client = super::oem::Client<Xiaomi>;

/// `[xiaomi]`, validated.
#[derive(Debug)]
pub struct Settings {
    /// `key=<secret>`, marked sensitive so it is never printed.
    pub auth: HeaderValue,
    pub package_name: String,
    pub section: config::Xiaomi,
    pub connect: Connect,
}

/// Xiaomi's part of the client.
pub struct Xiaomi {
    auth: HeaderValue,
    /// `&restricted_package_name=...`
    package: Bytes,
    /// `&extra.channel_id=...` or empty.
    channel: Bytes,
}

impl Configure for Xiaomi {
    type Section = config::Xiaomi;
    type Settings = Settings;

    fn settings(c: &config::Xiaomi, connect: Connect, check: &mut Check) -> Option<Settings> {
        check.endpoint("endpoint", &c.endpoint);
        let mut needs = check.needs("app_secret", c.app_secret.as_ref());
        let package_name = needs.key("package_name", &c.package_name);
        let secret = needs.finish()?;
        let auth = if secret.expose().is_empty() {
            check.key("app_secret", " is empty");
            None
        } else if let Ok(mut auth) = HeaderValue::from_str(&format!("key={}", secret.expose())) {
            auth.set_sensitive(true);
            Some(auth)
        } else {
            check.key("app_secret", " is not a valid header value");
            None
        };
        Some(Settings {
            auth: auth?,
            package_name: package_name?,
            section: c.clone(),
            connect,
        })
    }
}

impl Oem for Xiaomi {
    const NAME: &'static str = "xiaomi";
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded;charset=UTF-8";
    /// MiPush takes the AppSecret itself ([`Oem::head`]), with no token exchange.
    const TOKEN_HEADER: Option<TokenHeader> = None;

    fn new(s: &Settings) -> Result<(Self, Vec<Route>), connect::Error> {
        let route = Route::new(&s.connect, &s.section.endpoint, "/v3/message/regid")?;
        let auth = s.auth.clone();
        // Promote the buffer to a shared one now, so each push's clone only counts a
        // reference instead of the first one allocating.
        drop(auth.clone());
        let package = format!(
            "&restricted_package_name={}",
            urlencoding::encode(&s.package_name)
        );
        let channel = match s.section.channel_id.as_deref().filter(|c| !c.is_empty()) {
            Some(ch) => format!("&extra.channel_id={}", urlencoding::encode(ch)),
            None => String::new(),
        };
        let vendor = Self {
            auth,
            package: package.into(),
            channel: channel.into(),
        };
        Ok((vendor, vec![route]))
    }

    const RENDER: Render = payload::render;
    const OF: fn(&Push) -> &Body = |push| &push.xiaomi;

    fn body(&self, to: Target<'_>, b: &Body, _: Option<&Access>) -> Bytes {
        b.spliced.fill_slots(&[
            Slot::Raw(&self.package),
            Slot::Raw(b.client(1, &self.channel)),
            Slot::Form(to.token),
        ])
    }

    fn head(&self, req: http::request::Builder, _: &Push) -> http::request::Builder {
        req.header(AUTHORIZATION, self.auth.clone())
    }

    fn classify(&self, resp: &Response, to: Target<'_>, detail: bool) -> Verdict {
        response::classify(resp, to.token, detail)
    }

    fn parse_token(_: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        // MiPush regIds are base64 text (letters, digits, + / =), 44–64 chars today.
        super::text_token(
            token,
            20..=256,
            |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
            || "a Xiaomi regId is 20 to 256 base64 characters (letters, digits, + / =)".into(),
        )
    }
}
