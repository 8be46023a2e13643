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
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderValue;
use http_body_util::Full;

use super::connect::{self, Connect};
use super::oem::{Oem, Route, Target};
use super::splice::{Slot, Spliced};
use super::token::{self, Access, Fresh};
use super::{Content, Kind, Push, TooLarge, Verdict};
use crate::config::{self, Check};
use crate::state::{ProviderKind, Token};
use crate::transport::{auto, Response};

/// The Xiaomi client: the OEM skeleton over [`Xiaomi`].
pub type Client = super::oem::Client<Xiaomi>;

/// `[xiaomi]`, validated.
#[derive(Debug)]
pub struct Settings {
    /// `key=<secret>`, marked sensitive so it is never printed.
    pub auth: HeaderValue,
    pub package_name: String,
    pub endpoint: String,
    pub channel_id: Option<String>,
    pub connect: Connect,
}

/// Xiaomi's part of the client.
pub struct Xiaomi {
    auth: HeaderValue,
    /// `&restricted_package_name=...&extra.channel_id=...`
    client_fields: Bytes,
}

impl Oem for Xiaomi {
    const NAME: &'static str = "xiaomi";
    type Section = config::Xiaomi;
    type Settings = Settings;

    fn settings(c: &config::Xiaomi, connect: Connect, check: &mut Check) -> Option<Settings> {
        check.endpoint("endpoint", &c.endpoint);
        let Some(secret) = &c.app_secret else {
            check.stray("app_secret", &[("package_name", c.package_name.is_some())]);
            return None;
        };
        let package_name = check.required("app_secret", "package_name", &c.package_name);
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
            endpoint: c.endpoint.clone(),
            channel_id: c.channel_id.clone(),
            connect,
        })
    }

    fn new(s: &Settings) -> Result<(Self, Vec<Route>), connect::Error> {
        let route = Route::new(&s.connect, &s.endpoint, "/v3/message/regid")?;
        let auth = s.auth.clone();
        // Promote the buffer to a shared one now, so each push's clone only counts a
        // reference instead of the first one allocating.
        drop(auth.clone());
        let mut client_fields = format!(
            "&restricted_package_name={}",
            urlencoding::encode(&s.package_name)
        );
        if let Some(ch) = s.channel_id.as_deref().filter(|c| !c.is_empty()) {
            client_fields.push_str(&format!("&extra.channel_id={}", urlencoding::encode(ch)));
        }
        let vendor = Self {
            auth,
            client_fields: client_fields.into(),
        };
        Ok((vendor, vec![route]))
    }

    fn render(kind: &Kind, c: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
        payload::render(kind, c, ttl_s)
    }

    /// Never called: MiPush takes the AppSecret itself, with no token exchange.
    fn fetch_token(
        &self,
        _: &auto::Client,
        uri: &str,
    ) -> impl std::future::Future<Output = Result<Fresh, token::Error>> + Send {
        std::future::ready(Err(token::Error::Request {
            uri: uri.to_string(),
            detail: "xiaomi has no token exchange".into(),
        }))
    }

    fn request(
        &self,
        uri: &http::Uri,
        to: Target<'_>,
        push: &Push,
        _: Option<&Access>,
    ) -> http::Request<Full<Bytes>> {
        let body = push
            .xiaomi
            .fill_slots(&[Slot::Raw(&self.client_fields), Slot::Form(to.token)]);
        http::Request::post(uri.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"),
            )
            .body(Full::new(body))
            .expect("request head is valid")
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
