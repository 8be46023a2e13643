//! Apple Push Notification service, HTTP/2 provider API with token (JWT) auth.
//!
//! `POST /3/device/<hex token>` on the production or sandbox host (per binding), with
//! `apns-topic` (bundle, `.voip` for VoIP), `apns-push-type`, `apns-priority`,
//! `apns-expiration` and `apns-id`. The body is rendered once per message
//! ([`payload::Bodies`]); every device request shares its `Bytes`.

pub mod auth;
pub mod payload;
pub mod response;

use std::path::PathBuf;
use std::sync::Arc;

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request};

use super::{Push, Verdict};
use crate::state::{Device, Environment, ProviderKind};
use crate::transport::{self, Endpoint, Pool};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("apns key")]
    Key(#[from] auth::Error),
    #[error("apns transport")]
    Transport(#[from] transport::pool::Error),
    #[error("apns tls")]
    Tls(#[from] transport::tls::Error),
    #[error("apns.{0} is required")]
    Missing(&'static str),
}

/// Everything the client needs, from `[apns]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key_file: PathBuf,
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
    pub endpoint_production: String,
    pub endpoint_sandbox: String,
    pub connections: usize,
    pub ca_file: Option<PathBuf>,
    /// Timeouts, keep-alive PINGs and reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    /// `None` when APNs is not configured (no key file).
    pub fn from_config(c: &crate::config::Apns) -> Result<Option<Self>, Error> {
        let Some(key_file) = c.key_file.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            key_file,
            key_id: c.key_id.clone().ok_or(Error::Missing("key_id"))?,
            team_id: c.team_id.clone().ok_or(Error::Missing("team_id"))?,
            topic: c.topic.clone().ok_or(Error::Missing("topic"))?,
            endpoint_production: c.endpoint_production.clone(),
            endpoint_sandbox: c.endpoint_sandbox.clone(),
            connections: c.connections,
            ca_file: c.ca_file.clone(),
            transport: crate::config::Transport::default(),
        }))
    }
}

struct Route {
    pool: Pool,
}

pub struct Client {
    production: Route,
    sandbox: Route,
    auth: auth::TokenCache,
    topic: Arc<str>,
    voip_topic: Arc<str>,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, Error> {
        let key = auth::load_key(&s.key_file)?;
        let tls = transport::tls::client_config(s.ca_file.as_deref(), &[b"h2"])?;
        let route = |url: &str| -> Result<Route, Error> {
            Ok(Route {
                pool: Pool::with_options(
                    Endpoint::parse(url)?,
                    tls.clone(),
                    transport::pool::Options::from_config(s.connections, &s.transport),
                )?,
            })
        };
        Ok(Self {
            production: route(&s.endpoint_production)?,
            sandbox: route(&s.endpoint_sandbox)?,
            auth: auth::TokenCache::new(key, s.key_id.clone(), s.team_id.clone()),
            topic: s.topic.as_str().into(),
            voip_topic: format!("{}.voip", s.topic).into(),
        })
    }

    /// Provider tokens minted so far (they are cached for 50 minutes).
    pub fn tokens_minted(&self) -> u64 {
        self.auth.minted()
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        let voip = device.provider() == ProviderKind::ApnsVoip;
        let body = if voip {
            push.apns.voip.clone()
        } else {
            push.apns.alert.clone()
        };
        let route = match device.environment() {
            Environment::Production => &self.production,
            Environment::Sandbox => &self.sandbox,
        };
        let topic = match (&device.app_id(), voip) {
            (Some(app), false) => HeaderValue::from_str(app),
            (Some(app), true) => HeaderValue::from_str(&format!("{app}.voip")),
            (None, false) => HeaderValue::from_str(&self.topic),
            (None, true) => HeaderValue::from_str(&self.voip_topic),
        }
        .expect("topics are validated header values");
        let uri = format!(
            "{}/3/device/{}",
            route.pool.endpoint().base,
            device.token().to_wire()
        );
        let expiration = HeaderValue::from(push.expires_at);
        let apns_id = HeaderValue::from_str(&uuid::Uuid::new_v4().hyphenated().to_string())
            .expect("uuid is ascii");
        let (push_type, priority) = if voip {
            ("voip", "10")
        } else {
            ("alert", "10")
        };
        let auth = self.auth.header();
        let make = || {
            Request::builder()
                .method(Method::POST)
                .uri(uri.as_str())
                .header(AUTHORIZATION, auth.clone())
                .header("apns-topic", topic.clone())
                .header("apns-push-type", push_type)
                .header("apns-priority", priority)
                .header("apns-expiration", expiration.clone())
                .header("apns-id", apns_id.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(())
                .expect("request head is valid")
        };
        match route.pool.send_before(make, body, push.expires_at).await {
            Ok(resp) => {
                let v = response::classify(&resp, detail);
                if v.reason.as_deref() == Some("ExpiredProviderToken") {
                    self.auth.expired(&auth);
                }
                v
            }
            Err(e) => Verdict::transport(&e),
        }
    }
}
