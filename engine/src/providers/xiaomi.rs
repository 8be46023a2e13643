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

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderValue;
use http_body_util::Full;

use super::splice::Slot;
use super::{Push, Verdict};
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, auto};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("xiaomi.{0} is required")]
    Missing(&'static str),
    #[error("xiaomi.app_secret is not a valid header value")]
    BadSecret,
    #[error("xiaomi tls")]
    Tls(#[from] transport::tls::Error),
    #[error("xiaomi endpoint")]
    Endpoint(#[from] transport::pool::Error),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_secret: crate::config::Secret,
    pub package_name: String,
    pub endpoint: String,
    pub channel_id: Option<String>,
    pub connections: usize,
    pub ca_file: Option<std::path::PathBuf>,
    /// Connect, handshake and request bounds, PINGs, reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    pub fn from_config(c: &crate::config::Xiaomi) -> Result<Option<Self>, Error> {
        let Some(app_secret) = c.app_secret.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            app_secret,
            package_name: c
                .package_name
                .clone()
                .ok_or(Error::Missing("package_name"))?,
            endpoint: c.endpoint.clone(),
            channel_id: c.channel_id.clone(),
            connections: c.connections,
            ca_file: c.ca_file.clone(),
            transport: crate::config::Transport::default(),
        }))
    }
}

pub struct Client {
    http: auto::Client,
    uri: http::Uri,
    /// `key=<secret>`, marked sensitive so it is never printed.
    auth: HeaderValue,
    /// `&restricted_package_name=...&extra.channel_id=...`
    client_fields: Bytes,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, Error> {
        let ep = transport::Endpoint::parse(&s.endpoint)?;
        let http = auto::Client::new(
            &ep.base,
            s.ca_file.as_deref(),
            &transport::pool::Options::from_config(s.connections, &s.transport),
        )?;
        let mut auth = HeaderValue::from_str(&format!("key={}", s.app_secret.expose()))
            .map_err(|_| Error::BadSecret)?;
        auth.set_sensitive(true);
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
        Ok(Self {
            http,
            uri: super::parse_uri(format!("{}/v3/message/regid", ep.base))?,
            auth,
            client_fields: client_fields.into(),
        })
    }

    /// The request for one device: the body buffer is its only allocation.
    pub(crate) fn request(&self, regid: &str, push: &Push) -> http::Request<Full<bytes::Bytes>> {
        let body = push
            .xiaomi
            .fill_slots(&[Slot::Raw(&self.client_fields), Slot::Form(regid)]);
        http::Request::post(self.uri.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"),
            )
            .body(Full::new(body))
            .expect("request head is valid")
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        let regid = super::token_text(device.token());
        match self.http.send(self.request(&regid, push)).await {
            Ok(resp) => response::classify(&resp, &regid, detail),
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

super::impl_vendor!(Xiaomi, super::splice::Spliced, payload::render, |_| 0);

/// The API's check of a xiaomi device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    let _ = kind;
    // MiPush regIds are base64 text (letters, digits, + / =), 44–64 chars today.
    super::text_token(
        token,
        20..=256,
        |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
        || "a Xiaomi regId is 20 to 256 base64 characters (letters, digits, + / =)".into(),
    )
}
