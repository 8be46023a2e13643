//! Huawei Push Kit (HMS Core) v1, `VENDORS.md` §3.1.
//!
//! `POST {endpoint}/v1/{appId}/messages:send` with `Authorization: Bearer <token>`,
//! the token from the OAuth 2.0 client-credentials grant at `token_endpoint`
//! ([`super::token::Cache`]: fetched once, reused, refreshed before expiry). The body
//! is rendered once per message ([`payload::render`]) with slots for the configured
//! `android.category`/`channel_id` and the device token. Huawei answers HTTP 200 for
//! business errors too; [`response::classify`] reads the string `code`.

pub mod payload;
pub mod response;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderValue;
use http_body_util::Full;

use super::splice::json_str;
use super::{token, Push, Verdict};
use crate::config::Secret;
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, auto};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("huawei.{0} is required")]
    Missing(&'static str),
    #[error("huawei tls")]
    Tls(#[from] transport::tls::Error),
    #[error("huawei endpoint")]
    Endpoint(#[from] transport::pool::Error),
}

/// Everything the client needs, from `[huawei]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_id: String,
    pub client_secret: Secret,
    pub endpoint: String,
    pub token_endpoint: String,
    pub category: String,
    pub channel_id: Option<String>,
    pub connections: usize,
    pub ca_file: Option<std::path::PathBuf>,
    /// Connect, handshake and request bounds, PINGs, reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    /// `None` when Huawei is not configured (no app_id).
    pub fn from_config(c: &crate::config::Huawei) -> Result<Option<Self>, Error> {
        let Some(app_id) = c.app_id.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            app_id,
            client_secret: c
                .client_secret
                .clone()
                .ok_or(Error::Missing("client_secret"))?,
            endpoint: c.endpoint.clone(),
            token_endpoint: c.token_endpoint.clone(),
            category: c.category.clone(),
            channel_id: c.channel_id.clone(),
            connections: c.connections,
            ca_file: c.ca_file.clone(),
            transport: crate::config::Transport::default(),
        }))
    }
}

pub struct Client {
    http: auto::Client,
    token_http: auto::Client,
    send_uri: http::Uri,
    token_uri: String,
    app_id: String,
    secret: Secret,
    auth: token::Cache,
    /// `"category":"IM",` or empty.
    android_fields: Bytes,
    /// `"channel_id":"...",` or empty.
    notification_fields: Bytes,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, Error> {
        let ep = transport::Endpoint::parse(&s.endpoint)?;
        let http = auto::Client::new(
            &ep.base,
            s.ca_file.as_deref(),
            &transport::pool::Options::from_config(s.connections, &s.transport),
        )?;
        let token_http = auto::Client::new(
            &s.token_endpoint,
            s.ca_file.as_deref(),
            &transport::pool::Options::from_config(1, &s.transport),
        )?;
        let android_fields = if s.category.is_empty() {
            Bytes::new()
        } else {
            format!("\"category\":{},", json_str(&s.category)).into()
        };
        let notification_fields = match &s.channel_id {
            Some(c) if !c.is_empty() => format!("\"channel_id\":{},", json_str(c)).into(),
            _ => Bytes::new(),
        };
        Ok(Self {
            http,
            token_http,
            send_uri: super::parse_uri(format!(
                "{}/v1/{}/messages:send",
                ep.base,
                urlencoding::encode(&s.app_id)
            ))?,
            token_uri: s.token_endpoint.clone(),
            app_id: s.app_id.clone(),
            secret: s.client_secret.clone(),
            auth: token::Cache::new(3600),
            android_fields,
            notification_fields,
        })
    }

    /// Access tokens fetched so far (one per hour at most while valid).
    pub fn tokens_fetched(&self) -> u64 {
        self.auth.fetched()
    }

    /// The request for one device: the body buffer is its only allocation.
    pub(crate) fn request(
        &self,
        device_token: &str,
        push: &Push,
        token: &token::Access,
    ) -> http::Request<Full<bytes::Bytes>> {
        let body = push.huawei.fill(&[
            &self.android_fields,
            &self.notification_fields,
            device_token.as_bytes(),
        ]);
        http::Request::post(self.send_uri.clone())
            .header(AUTHORIZATION, token.bearer())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json;charset=utf-8"),
            )
            .body(Full::new(body))
            .expect("request head is valid")
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        let token = match self
            .auth
            .get(|| {
                token::client_credentials(
                    &self.token_http,
                    &self.token_uri,
                    &self.app_id,
                    &self.secret,
                )
            })
            .await
        {
            Ok(t) => t,
            Err(e) => return token::verdict("huawei", &e),
        };
        let device_token = super::token_text(device.token());
        match self
            .http
            .send(self.request(&device_token, push, &token))
            .await
        {
            Ok(resp) => {
                let v = response::classify(&resp, &device_token, detail);
                if response::is_auth_error(&v) {
                    self.auth.invalidate(&token);
                }
                v
            }
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

super::impl_vendor!(
    Huawei,
    super::splice::Spliced,
    payload::render,
    Client::tokens_fetched
);

/// The API's check of a huawei device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    super::push_kit_token(kind, token)
}
