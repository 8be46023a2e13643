//! Firebase Cloud Messaging HTTP v1 (Android and Web tokens).
//!
//! `POST /v1/projects/<project_id>/messages:send` over HTTP/2 with an OAuth2 access
//! token from the service-account flow ([`auth::TokenSource`], cached until shortly
//! before expiry). The message is pre-rendered around the token slot
//! ([`payload::Template`]), so each device costs one buffer fill, not a JSON encode.

pub mod auth;
pub mod payload;
pub mod response;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};

use super::connect::{self, Connect};
use super::{Push, Verdict};
use crate::config::{self, Check};
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::Pool;

/// `[fcm]`, validated: the service account is loaded and checked.
#[derive(Debug)]
pub struct Settings {
    pub account: auth::ServiceAccount,
    pub endpoint: String,
    pub connect: Connect,
}

/// Check `[fcm]`; `None` when no service account is configured.
fn settings(c: &config::Fcm, connect: Connect, check: &mut Check) -> Option<Settings> {
    check.endpoint("endpoint", &c.endpoint);
    let path = c.service_account_file.as_ref()?;
    let account = auth::ServiceAccount::load(path)
        .map_err(|e| check.key("service_account_file", format_args!(": {e}")))
        .ok()?;
    Some(Settings {
        account,
        endpoint: c.endpoint.clone(),
        connect,
    })
}

pub struct Client {
    pool: Pool,
    auth: auth::TokenSource,
    uri: String,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, connect::Error> {
        let pool = s.connect.pool(&s.endpoint)?;
        let uri = format!(
            "{}/v1/projects/{}/messages:send",
            pool.endpoint().base,
            s.account.project_id
        );
        let http = s.connect.token_client(&s.account.token_uri)?;
        let auth = auth::TokenSource::new(s.account.clone(), http);
        Ok(Self { pool, auth, uri })
    }

    /// Access tokens fetched from the token URI so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.auth.fetched()
    }

    pub async fn send(
        &self,
        device: &Device,
        push: &Push,
        badge: Option<u32>,
        detail: bool,
    ) -> Verdict {
        let token = match self.auth.get().await {
            Ok(t) => t,
            Err(e) => return super::token::verdict("fcm", &e),
        };
        let body = push.fcm.for_token(&device.token().to_wire(), badge);
        let make = || {
            Request::builder()
                .method(Method::POST)
                .uri(self.uri.as_str())
                .header(AUTHORIZATION, token.bearer())
                .header(CONTENT_TYPE, "application/json")
                .body(())
                .expect("request head is valid")
        };
        match self.pool.send_before(make, body, push.expires_at).await {
            Ok(resp) => {
                let v = response::classify(&resp, detail);
                if resp.status == http::StatusCode::UNAUTHORIZED {
                    self.auth.invalidate(&token);
                }
                v
            }
            Err(e) => Verdict::transport(&e),
        }
    }
}

super::impl_vendor!(
    Fcm,
    payload::Template,
    payload::Template::render,
    Client::tokens_fetched
);

/// The API's check of a fcm device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    let _ = kind;
    if token.is_empty() || token.len() > 4096 {
        return Err("must be 1 to 4096 characters".into());
    }
    super::text_token(
        token,
        1..=4096,
        |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.' | b'+' | b'/' | b'=')
        },
        || "may only contain letters, digits and _ - : . + / =".into(),
    )
}
