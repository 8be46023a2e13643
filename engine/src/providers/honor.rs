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

use std::borrow::Cow;

use bytes::Bytes;

use super::connect::{self, Connect};
use super::oem::{Body, Oem, Render, Route, Target};
use super::token::Access;
use super::{Configure, Push, Verdict};
use crate::config::{self, Check, Secret};
use crate::state::{ProviderKind, Token};
use crate::transport::Response;

/// Honor's `timestamp` header; a constant name costs no allocation per request.
const TIMESTAMP: http::HeaderName = http::HeaderName::from_static("timestamp");

/// The Honor client: the OEM skeleton over [`Honor`].
pub type Client = super::oem::Client<Honor>;

/// `[honor]`, validated: the section and its required keys.
#[derive(Debug)]
pub struct Settings {
    pub section: config::Honor,
    pub app_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub connect: Connect,
}

/// Honor's part of the client.
pub struct Honor {
    timestamp: super::MsHeader,
    dead_codes: Box<[i64]>,
}

impl Configure for Honor {
    type Section = config::Honor;
    type Settings = Settings;

    fn settings(c: &config::Honor, connect: Connect, check: &mut Check) -> Option<Settings> {
        check.endpoint("endpoint", &c.endpoint);
        check.url("token_endpoint", &c.token_endpoint);
        let mut needs = check.needs("app_id", c.app_id.clone());
        let client_id = needs.key("client_id", &c.client_id);
        let client_secret = needs.key("client_secret", &c.client_secret);
        let app_id = needs.finish()?;
        Some(Settings {
            section: c.clone(),
            app_id,
            client_id: client_id?,
            client_secret: client_secret?,
            connect,
        })
    }
}

impl Oem for Honor {
    const NAME: &'static str = "honor";
    const CONTENT_TYPE: &'static str = "application/json";

    fn new(s: &Settings) -> Result<(Self, Vec<Route>), connect::Error> {
        let path = format!("/api/v1/{}/sendMessage", urlencoding::encode(&s.app_id));
        let c = &s.section;
        let route = Route::new(&s.connect, &c.endpoint, &path)?.client_credentials(
            &s.connect,
            &c.token_endpoint,
            &s.client_id,
            &s.client_secret,
        )?;
        let vendor = Self {
            timestamp: super::MsHeader::default(),
            dead_codes: c.dead_token_codes.clone().into(),
        };
        Ok((vendor, vec![route]))
    }

    const RENDER: Render = payload::render;
    const OF: fn(&Push) -> &Body = |push| &push.honor;

    fn body(&self, to: Target<'_>, b: &Body, _: Option<&Access>) -> Bytes {
        b.spliced.fill(&[to.token.as_bytes()])
    }

    fn head(&self, req: http::request::Builder, _: &Push) -> http::request::Builder {
        req.header(TIMESTAMP, self.timestamp.now())
    }

    fn classify(&self, resp: &Response, _: Target<'_>, detail: bool) -> Verdict {
        response::classify(resp, &self.dead_codes, detail)
    }

    fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        super::push_kit_token(kind, token)
    }
}
