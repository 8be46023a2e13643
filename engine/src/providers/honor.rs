//! Honor Push, `VENDORS.md` §3.2 (brief there; newer Honor phones take only Honor Push).
//!
//! `POST {endpoint}/api/v1/{appId}/sendMessage` with `Authorization: Bearer <token>`
//! and a `timestamp` header (ms), the token from the client-credentials grant at
//! `token_endpoint` (cached like Huawei's). The body mirrors Huawei's v1 message in
//! camelCase ([`payload::render`]); the answer's `code` is 200 on success. Result
//! codes are unverified ([U]): dead-token codes are configurable
//! (`honor.dead_token_codes`), the rest follow the Huawei family.

pub mod payload;
pub mod response;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderValue;
use http_body_util::Full;

use super::{token, Push, Verdict};
use crate::config::Secret;
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, auto};

/// Honor's `timestamp` header; a constant name costs no allocation per request.
const TIMESTAMP: http::HeaderName = http::HeaderName::from_static("timestamp");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("honor.{0} is required")]
    Missing(&'static str),
    #[error("honor tls")]
    Tls(#[from] transport::tls::Error),
    #[error("honor endpoint")]
    Endpoint(#[from] transport::pool::Error),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub endpoint: String,
    pub token_endpoint: String,
    pub dead_token_codes: Vec<i64>,
    pub connections: usize,
    pub ca_file: Option<std::path::PathBuf>,
    /// Connect, handshake and request bounds, PINGs, reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    pub fn from_config(c: &crate::config::Honor) -> Result<Option<Self>, Error> {
        let Some(app_id) = c.app_id.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            app_id,
            client_id: c.client_id.clone().ok_or(Error::Missing("client_id"))?,
            client_secret: c
                .client_secret
                .clone()
                .ok_or(Error::Missing("client_secret"))?,
            endpoint: c.endpoint.clone(),
            token_endpoint: c.token_endpoint.clone(),
            dead_token_codes: c.dead_token_codes.clone(),
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
    timestamp: super::MsHeader,
    token_uri: String,
    client_id: String,
    secret: Secret,
    auth: token::Cache,
    dead_codes: Box<[i64]>,
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
        Ok(Self {
            http,
            token_http,
            send_uri: super::parse_uri(format!(
                "{}/api/v1/{}/sendMessage",
                ep.base,
                urlencoding::encode(&s.app_id)
            ))?,
            timestamp: super::MsHeader::default(),
            token_uri: s.token_endpoint.clone(),
            client_id: s.client_id.clone(),
            secret: s.client_secret.clone(),
            auth: token::Cache::new(3600),
            dead_codes: s.dead_token_codes.clone().into(),
        })
    }

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
        let body = push.honor.fill(&[device_token.as_bytes()]);
        http::Request::post(self.send_uri.clone())
            .header(AUTHORIZATION, token.bearer())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(TIMESTAMP, self.timestamp.now())
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
                    &self.client_id,
                    &self.secret,
                )
            })
            .await
        {
            Ok(t) => t,
            Err(e) => return token::verdict("honor", &e),
        };
        let req = self.request(&super::token_text(device.token()), push, &token);
        match self.http.send(req).await {
            Ok(resp) => {
                let v = response::classify(&resp, &self.dead_codes, detail);
                if v.outcome.refuses_auth() {
                    self.auth.invalidate(&token);
                }
                v
            }
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

super::impl_vendor!(
    Honor,
    super::splice::Spliced,
    payload::render,
    Client::tokens_fetched
);

/// The API's check of a honor device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    super::push_kit_token(kind, token)
}
