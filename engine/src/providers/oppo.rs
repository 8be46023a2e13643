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

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::HeaderValue;
use http_body_util::Full;

use super::splice::{json_str, Slot};
use super::{token, Push, Verdict};
use crate::config::Secret;
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, auto};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("oppo.{0} is required")]
    Missing(&'static str),
    #[error("oppo tls")]
    Tls(#[from] transport::tls::Error),
    #[error("oppo endpoint")]
    Endpoint(#[from] transport::pool::Error),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app_key: String,
    pub master_secret: Secret,
    pub endpoint: String,
    pub endpoint_intl: String,
    pub channel_id: Option<String>,
    pub category: String,
    pub dead_token_codes: Vec<i64>,
    pub connections: usize,
    pub ca_file: Option<std::path::PathBuf>,
    /// Connect, handshake and request bounds, PINGs, reconnect backoff (`[transport]`).
    pub transport: crate::config::Transport,
}

impl Settings {
    pub fn from_config(c: &crate::config::Oppo) -> Result<Option<Self>, Error> {
        let Some(app_key) = c.app_key.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            app_key,
            master_secret: c
                .master_secret
                .clone()
                .ok_or(Error::Missing("master_secret"))?,
            endpoint: c.endpoint.clone(),
            endpoint_intl: c.endpoint_intl.clone(),
            channel_id: c.channel_id.clone(),
            category: c.category.clone(),
            dead_token_codes: c.dead_token_codes.clone(),
            connections: c.connections,
            ca_file: c.ca_file.clone(),
            transport: crate::config::Transport::default(),
        }))
    }
}

/// One OPPO host with its own auth token.
struct Route {
    http: auto::Client,
    auth_uri: String,
    unicast_uri: http::Uri,
    auth: token::Cache,
}

pub struct Client {
    mainland: Route,
    intl: Route,
    app_key: String,
    secret: Secret,
    /// URL-encoded `"channel_id":"..","category":"..",` for the notification object.
    client_fields: Bytes,
    dead_codes: Box<[i64]>,
}

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

impl Client {
    pub fn new(s: &Settings) -> Result<Self, Error> {
        let route = |url: &str| -> Result<Route, Error> {
            let ep = transport::Endpoint::parse(url)?;
            Ok(Route {
                http: auto::Client::new(
                    &ep.base,
                    s.ca_file.as_deref(),
                    &transport::pool::Options::from_config(s.connections, &s.transport),
                )?,
                auth_uri: format!("{}/server/v1/auth", ep.base),
                unicast_uri: super::parse_uri(format!(
                    "{}/server/v1/message/notification/unicast",
                    ep.base
                ))?,
                // Valid 24 h; refresh every 6 h.
                auth: token::Cache::new(6 * 3600),
            })
        };
        let mut fields = String::new();
        if let Some(ch) = s.channel_id.as_deref().filter(|c| !c.is_empty()) {
            fields.push_str(&format!("\"channel_id\":{},", json_str(ch)));
        }
        if !s.category.is_empty() {
            fields.push_str(&format!("\"category\":{},", json_str(&s.category)));
        }
        Ok(Self {
            mainland: route(&s.endpoint)?,
            intl: route(&s.endpoint_intl)?,
            app_key: s.app_key.clone(),
            secret: s.master_secret.clone(),
            client_fields: urlencoding::encode(&fields).into_owned().into(),
            dead_codes: s.dead_token_codes.clone().into(),
        })
    }

    /// Auth tokens fetched so far (both hosts).
    pub fn tokens_fetched(&self) -> u64 {
        self.mainland.auth.fetched() + self.intl.auth.fetched()
    }

    /// The request for one device: the body buffer is its only allocation.
    fn request(
        &self,
        route: &Route,
        regid: &str,
        push: &Push,
        token: &token::Access,
    ) -> http::Request<Full<bytes::Bytes>> {
        let body = push.oppo.fill_slots(&[
            Slot::Form(regid),
            Slot::Raw(&self.client_fields),
            Slot::Form(token.value()),
        ]);
        http::Request::post(route.unicast_uri.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded;charset=UTF-8"),
            )
            .body(Full::new(body))
            .expect("request head is valid")
    }

    /// [`Client::request`] to the host serving `regid`.
    #[cfg(test)]
    pub(crate) fn request_for(
        &self,
        regid: &str,
        push: &Push,
        token: &token::Access,
    ) -> http::Request<Full<bytes::Bytes>> {
        let route = if is_mainland(regid) {
            &self.mainland
        } else {
            &self.intl
        };
        self.request(route, regid, push, token)
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        let regid = super::token_text(device.token());
        let route = if is_mainland(&regid) {
            &self.mainland
        } else {
            &self.intl
        };
        let token = match route
            .auth
            .get(|| auth::fetch(&route.http, &route.auth_uri, &self.app_key, &self.secret))
            .await
        {
            Ok(t) => t,
            Err(e) => return token::verdict("oppo", &e),
        };
        let req = self.request(route, &regid, push, &token);
        match route.http.send(req).await {
            Ok(resp) => {
                let v = response::classify(&resp, &self.dead_codes, detail);
                if response::is_auth_error(&v) {
                    route.auth.invalidate(&token);
                }
                v
            }
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

super::impl_vendor!(
    Oppo,
    super::splice::Spliced,
    payload::render,
    Client::tokens_fetched
);

/// The API's check of a oppo device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    let _ = kind;
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
