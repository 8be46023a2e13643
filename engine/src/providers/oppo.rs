//! OPPO Push (HeyTap), `VENDORS.md` §3.4.
//!
//! Auth: `POST /server/v1/auth` with `app_key`, `timestamp` (ms) and
//! `sign = hex(sha256(app_key + timestamp + master_secret))` ([`auth`]); the
//! `auth_token` (valid 24 h) is cached per host and sent as the `auth_token` form
//! field. Send: `POST /server/v1/message/notification/unicast` with `message` = the
//! JSON `{"target_type":2,"target_value":<regId>,"notification":{..}}` and
//! `auth_token`. Registration ids choose the host: mainland when the id has no `_`,
//! is `CN_<id>` or `<brand>_CN_<id>`, overseas (`endpoint_intl`) otherwise.

pub mod auth;
pub mod payload;
pub mod response;

use std::borrow::Cow;

use bytes::Bytes;

use super::connect::{self, Connect};
use super::oem::{Body, Oem, Render, Route, Target, TokenHeader};
use super::splice::{json_str, Slot};
use super::token::{self, Access, Fresh};
use super::{Configure, Push, Verdict};
use crate::config::{self, Check, Secret};
use crate::state::{ProviderKind, Token};
use crate::transport::{auto, Response};

/// The OPPO client: the OEM skeleton over [`Oppo`], with a mainland and an overseas
/// route, each with its own auth token.
pub type Client = super::oem::Client<Oppo>;

/// `[oppo]`, validated.
#[derive(Debug)]
pub struct Settings {
    pub section: config::Oppo,
    pub app_key: String,
    pub master_secret: Secret,
    pub connect: Connect,
}

/// OPPO's part of the client.
pub struct Oppo {
    app_key: String,
    secret: Secret,
    /// URL-encoded `"channel_id":"..",` for the notification object, or empty.
    channel: Bytes,
    /// URL-encoded `"category":"..",` for the notification object, or empty.
    category: Bytes,
    dead_codes: Box<[i64]>,
}

/// Route indexes of [`Oppo::route`].
const MAINLAND: usize = 0;
const INTL: usize = 1;

/// True for registration ids served by the mainland host.
pub fn is_mainland(regid: &str) -> bool {
    let mut parts = regid.split('_');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), None, _, _) => true,
        (Some(region), Some(_), None, _) => region == "CN",
        (Some(_), Some(region), Some(_), None) => region == "CN",
        _ => false,
    }
}

impl Configure for Oppo {
    type Section = config::Oppo;
    type Settings = Settings;

    fn settings(c: &config::Oppo, connect: Connect, check: &mut Check) -> Option<Settings> {
        check.endpoint("endpoint", &c.endpoint);
        check.endpoint("endpoint_intl", &c.endpoint_intl);
        let mut needs = check.needs("app_key", c.app_key.clone());
        let master_secret = needs.key("master_secret", &c.master_secret);
        Some(Settings {
            section: c.clone(),
            app_key: needs.finish()?,
            master_secret: master_secret?,
            connect,
        })
    }
}

impl Oem for Oppo {
    const NAME: &'static str = "oppo";
    const CONTENT_TYPE: &'static str = "application/x-www-form-urlencoded;charset=UTF-8";
    /// The `auth_token` is a form field of the body ([`Oem::body`]).
    const TOKEN_HEADER: Option<TokenHeader> = None;

    fn new(s: &Settings) -> Result<(Self, Vec<Route>), connect::Error> {
        // Tokens are valid 24 h; refresh every 6 h.
        let route = |url: &str| -> Result<Route, connect::Error> {
            Ok(
                Route::new(&s.connect, url, "/server/v1/message/notification/unicast")?
                    .token_path("/server/v1/auth", 6 * 3600),
            )
        };
        let c = &s.section;
        let routes = vec![route(&c.endpoint)?, route(&c.endpoint_intl)?];
        let field = |key: &str, v: &str| -> Bytes {
            if v.is_empty() {
                Bytes::new()
            } else {
                let json = format!("\"{key}\":{},", json_str(v));
                urlencoding::encode(&json).into_owned().into()
            }
        };
        let vendor = Self {
            app_key: s.app_key.clone(),
            secret: s.master_secret.clone(),
            channel: field("channel_id", c.channel_id.as_deref().unwrap_or("")),
            category: field("category", &c.category),
            dead_codes: c.dead_token_codes.clone().into(),
        };
        Ok((vendor, routes))
    }

    const RENDER: Render = payload::render;
    const OF: fn(&Push) -> &Body = |push| &push.oppo;

    fn route(regid: &str) -> usize {
        if is_mainland(regid) {
            MAINLAND
        } else {
            INTL
        }
    }

    fn fetch_token(
        &self,
        http: &auto::Client,
        uri: &str,
    ) -> impl std::future::Future<Output = Result<Fresh, token::Error>> + Send {
        auth::fetch(http, uri, &self.app_key, &self.secret)
    }

    fn body(&self, to: Target<'_>, b: &Body, token: Option<&Access>) -> Bytes {
        b.spliced.fill_slots(&[
            Slot::Form(to.token),
            Slot::Raw(b.client(0, &self.channel)),
            Slot::Raw(&self.category),
            Slot::Form(token.map_or("", Access::value)),
        ])
    }

    fn classify(&self, resp: &Response, _: Target<'_>, detail: bool) -> Verdict {
        response::classify(resp, &self.dead_codes, detail)
    }

    fn parse_token(_: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        // <id>, CN_<id> or <brand>_CN_<id> (mainland); other region prefixes are
        // overseas. The id is alphanumeric.
        let mut parts = token.rsplit('_');
        let id = parts.next().unwrap_or("");
        let mut prefixes = 0;
        let prefixes_ok = parts.all(|p| {
            prefixes += 1;
            !p.is_empty() && p.len() <= 16 && p.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if prefixes > 2
            || !prefixes_ok
            || !(16..=128).contains(&id.len())
            || !id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err("an OPPO registration id is <id>, <region>_<id> or <brand>_<region>_<id> with an alphanumeric id of 16 to 128 characters".into());
        }
        Ok(Token::Text(token.into()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn regions_follow_the_registration_id() {
        assert!(super::is_mainland("b6bbd94b59cdb5df8391642c1509b7fe"));
        assert!(super::is_mainland("CN_b6bbd94b59cdb5df8391642c1509b7fe"));
        assert!(super::is_mainland(
            "OPPO_CN_b6bbd94b59cdb5df8391642c1509b7fe"
        ));
        assert!(!super::is_mainland("EU_b6bbd94b59cdb5df8391642c1509b7fe"));
        assert!(!super::is_mainland(
            "OPPO_SG_b6bbd94b59cdb5df8391642c1509b7fe"
        ));
    }
}
