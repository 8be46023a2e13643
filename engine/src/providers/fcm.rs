//! Firebase Cloud Messaging HTTP v1 (Android and Web tokens).
//!
//! `POST /v1/projects/<project_id>/messages:send` over HTTP/2 with an OAuth2 access
//! token from the service-account flow ([`auth::TokenSource`], cached until shortly
//! before expiry). The message is pre-rendered around the token slot
//! ([`payload::Template`]), so each device costs one buffer fill, not a JSON encode.

pub mod auth;
pub mod payload;
pub mod response;

use std::path::PathBuf;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};

use super::{Push, Verdict};
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, Endpoint, Pool};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fcm service account")]
    Account(#[from] auth::Error),
    #[error("fcm transport")]
    Transport(#[from] transport::pool::Error),
    #[error("fcm tls")]
    Tls(#[from] transport::tls::Error),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub service_account_file: PathBuf,
    pub endpoint: String,
    pub connections: usize,
    pub ca_file: Option<PathBuf>,
    /// Timeouts, keep-alive PINGs and reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    pub fn from_config(c: &crate::config::Fcm) -> Result<Option<Self>, Error> {
        Ok(c.service_account_file
            .clone()
            .map(|service_account_file| Self {
                service_account_file,
                endpoint: c.endpoint.clone(),
                connections: c.connections,
                ca_file: c.ca_file.clone(),
                transport: crate::config::Transport::default(),
            }))
    }
}

pub struct Client {
    pool: Pool,
    auth: auth::TokenSource,
    uri: String,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, Error> {
        let account = auth::ServiceAccount::load(&s.service_account_file)?;
        let tls = transport::tls::client_config(s.ca_file.as_deref(), &[b"h2"])?;
        let pool = Pool::with_options(
            Endpoint::parse(&s.endpoint)?,
            tls,
            transport::pool::Options::from_config(s.connections, &s.transport),
        )?;
        let uri = format!(
            "{}/v1/projects/{}/messages:send",
            pool.endpoint().base,
            account.project_id
        );
        let auth = auth::TokenSource::new(account, s.ca_file.as_deref(), &s.transport)?;
        Ok(Self { pool, auth, uri })
    }

    /// Access tokens fetched from the token URI so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.auth.fetched()
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        let token = match self.auth.header().await {
            Ok(t) => t,
            // Not sent: resent like any unprocessed push, counted by the breaker; the
            // transport logs the outage once.
            Err(e @ auth::Error::Unreachable { .. }) => {
                return Verdict {
                    status: None,
                    reason: Some(super::error_chain(&e)),
                    vendor_id: None,
                    outcome: super::Outcome::Retry {
                        after: None,
                        cause: super::Cause::Unsent,
                    },
                }
            }
            Err(e) => {
                tracing::warn!(error = %super::error_chain(&e), "fcm access token unavailable");
                return Verdict {
                    status: None,
                    reason: Some(super::error_chain(&e)),
                    vendor_id: None,
                    outcome: super::Outcome::Retry {
                        after: None,
                        cause: super::Cause::ProviderAuth,
                    },
                };
            }
        };
        let body = push.fcm.for_token(&device.token().to_wire());
        let make = || {
            Request::builder()
                .method(Method::POST)
                .uri(self.uri.as_str())
                .header(AUTHORIZATION, token.clone())
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
