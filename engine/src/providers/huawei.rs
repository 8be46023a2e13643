//! Huawei Push Kit (HMS Core) v1, `VENDORS.md` §3.1.
//!
//! `POST {endpoint}/v1/{appId}/messages:send` with `Authorization: Bearer <token>`,
//! the token from the OAuth 2.0 client-credentials grant at `token_endpoint`
//! (refreshed at least hourly). The body is rendered once per message
//! ([`payload::render`]) with slots for the configured `android.category` /
//! `channel_id` and the device token. Huawei answers HTTP 200 for business errors too;
//! [`response::classify`] reads the string `code`.

pub mod payload;
pub mod response;

use std::borrow::Cow;

use bytes::Bytes;

use super::connect::{self, Connect};
use super::oem::{Body, Oem, Render, Route, Target};
use super::splice::json_str;
use super::token::Access;
use super::{Configure, Push, Verdict};
use crate::config::{self, Check, Secret};
use crate::state::{ProviderKind, Token};
use crate::transport::Response;

/// The Huawei client: the OEM skeleton over [`Huawei`].
pub type Client = super::oem::Client<Huawei>;

/// `[huawei]`, validated.
#[derive(Debug)]
pub struct Settings {
    pub section: config::Huawei,
    pub app_id: String,
    pub client_secret: Secret,
    /// `badge_class`, unless empty.
    pub badge_class: Option<String>,
    pub connect: Connect,
}

/// Huawei's part of the client: the client's body fields.
pub struct Huawei {
    /// `"category":"IM",` or empty.
    android_fields: Bytes,
    /// `"channel_id":"...",` or empty.
    notification_fields: Bytes,
    /// `"badge":{"class":"...","set_num":` when `badge_class` is set.
    badge_open: Option<String>,
}

impl Configure for Huawei {
    type Section = config::Huawei;
    type Settings = Settings;

    fn settings(c: &config::Huawei, connect: Connect, check: &mut Check) -> Option<Settings> {
        check.endpoint("endpoint", &c.endpoint);
        check.url("token_endpoint", &c.token_endpoint);
        let mut needs = check.needs("app_id", c.app_id.clone());
        let client_secret = needs.key("client_secret", &c.client_secret);
        Some(Settings {
            app_id: needs.finish()?,
            client_secret: client_secret?,
            badge_class: c.badge_class.clone().filter(|c| !c.is_empty()),
            section: c.clone(),
            connect,
        })
    }
}

impl Oem for Huawei {
    const NAME: &'static str = "huawei";
    const CONTENT_TYPE: &'static str = "application/json;charset=utf-8";

    fn new(s: &Settings) -> Result<(Self, Vec<Route>), connect::Error> {
        let path = format!("/v1/{}/messages:send", urlencoding::encode(&s.app_id));
        let c = &s.section;
        let token_url = &c.token_endpoint;
        let route = Route::new(&s.connect, &c.endpoint, &path)?.client_credentials(
            &s.connect,
            token_url,
            &s.app_id,
            &s.client_secret,
        )?;
        let field = |key: &str, v: &str| -> Bytes {
            if v.is_empty() {
                Bytes::new()
            } else {
                format!("\"{key}\":{},", json_str(v)).into()
            }
        };
        let vendor = Self {
            android_fields: field("category", &c.category),
            notification_fields: field("channel_id", c.channel_id.as_deref().unwrap_or("")),
            badge_open: s
                .badge_class
                .as_deref()
                .map(|c| format!(r#""badge":{{"class":{},"set_num":"#, json_str(c))),
        };
        Ok((vendor, vec![route]))
    }

    const RENDER: Render = payload::render;
    const OF: fn(&Push) -> &Body = |push| &push.huawei;

    fn body(&self, to: Target<'_>, b: &Body, _: Option<&Access>) -> Bytes {
        let fields = b.client(1, &self.notification_fields);
        // Silent pushes have neither a notification nor a badge (render leaves both out).
        let badge = if b.badge { to.badge } else { b.set_badge };
        // A badged push to an app whose launcher class is known: the one extra
        // allocation of a badged Huawei push (as for APNs); others allocate nothing more.
        let badged = match (&self.badge_open, badge) {
            (Some(open), Some(n)) => {
                let mut f = fields.to_vec();
                // Push Kit's set_num goes up to 99.
                f.extend_from_slice(format!("{open}{}}},", n.min(99)).as_bytes());
                Some(f)
            }
            _ => None,
        };
        b.spliced.fill(&[
            b.client(0, &self.android_fields),
            badged.as_deref().unwrap_or(fields),
            to.token.as_bytes(),
        ])
    }

    fn classify(&self, resp: &Response, to: Target<'_>, detail: bool) -> Verdict {
        response::classify(resp, to.token, detail)
    }

    fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        super::push_kit_token(kind, token)
    }
}
