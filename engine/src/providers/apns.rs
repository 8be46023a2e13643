//! Apple Push Notification service, HTTP/2 provider API with token (JWT) auth.
//!
//! `POST /3/device/<hex token>` on the production or sandbox host (per binding), with
//! `apns-topic` (bundle, `.voip` for VoIP), `apns-push-type`, `apns-expiration` and,
//! unless it is APNs' default 10, `apns-priority` (APNs assigns the `apns-id`; no
//! `content-type`, which APNs does not read). Only the headers APNs needs, and the
//! same values for every device of a message, so that HPACK sends each as a table
//! index after the first request; the provider token too (vendor/h2/PATCHES.md).
//! The body is rendered once per message ([`payload::Bodies`]); every device request
//! shares its `Bytes`.

pub mod auth;
pub mod payload;
pub mod response;

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri};

use super::connect::{self, Connect};
use super::{Attempt, Verdict};
use crate::config::{self, Check, Redacted};
use std::borrow::Cow;

use crate::state::{Environment, ProviderKind, Token, TokenRef};
use crate::transport::{self, Pool};

/// `[apns]`, validated: the key is loaded and checked, the topics are header values.
#[derive(Debug)]
pub struct Settings {
    pub key: Redacted<jsonwebtoken::EncodingKey>,
    pub key_id: String,
    pub team_id: String,
    pub topic: HeaderValue,
    pub voip_topic: HeaderValue,
    pub endpoint_production: String,
    pub endpoint_sandbox: String,
    pub connect: Connect,
}

/// Check `[apns]`; `None` when no key file is configured.
fn settings(c: &config::Apns, connect: Connect, check: &mut Check) -> Option<Settings> {
    check.endpoint("endpoint_production", &c.endpoint_production);
    check.endpoint("endpoint_sandbox", &c.endpoint_sandbox);
    let mut needs = check.needs("key_file", c.key_file.as_ref());
    let key_id = needs.key("key_id", &c.key_id);
    let team_id = needs.key("team_id", &c.team_id);
    let key_file = needs.finish()?;
    let topic = check.required("key_file", "topic", &c.topic);
    let key = auth::load_key(key_file)
        .map_err(|e| check.key("key_file", format_args!(": {e}")))
        .ok();
    let topics = topic.as_deref().and_then(|t| {
        let header = |t: &str| HeaderValue::from_str(t).ok();
        let both = header(t).zip(header(&format!("{t}.voip")));
        if both.is_none() {
            check.key("topic", " is not a valid header value");
        }
        both
    });
    let (topic, voip_topic) = topics?;
    Some(Settings {
        key: Redacted(key?),
        key_id: key_id?,
        team_id: team_id?,
        topic,
        voip_topic,
        endpoint_production: c.endpoint_production.clone(),
        endpoint_sandbox: c.endpoint_sandbox.clone(),
        connect,
    })
}

const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");

struct Route {
    pool: Pool,
    scheme: Scheme,
    authority: Authority,
}

impl Route {
    fn new(pool: Pool) -> Result<Self, connect::Error> {
        let base: Uri = pool
            .endpoint()
            .base
            .parse()
            .map_err(|_| transport::pool::Error::BadEndpoint(pool.endpoint().base.clone()))?;
        let parts = base.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(transport::pool::Error::BadEndpoint(pool.endpoint().base.clone()).into());
        };
        Ok(Self {
            pool,
            scheme,
            authority,
        })
    }

    /// `https://<host>/3/device/<lowercase hex token>`.
    fn uri(&self, token: TokenRef<'_>) -> Uri {
        const PREFIX: &[u8] = b"/3/device/";
        let mut path = BytesMut::with_capacity(PREFIX.len() + token.wire_len());
        path.extend_from_slice(PREFIX);
        token.write_wire(&mut path);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            PathAndQuery::from_maybe_shared(path.freeze()).expect("a hex token is a valid path"),
        );
        Uri::from_parts(parts).expect("scheme, authority and path make a URI")
    }
}

/// What the clients of one key share: the connections to both hosts and the
/// provider token (APNs pins one team per connection, so one key = one set).
struct Connections {
    production: Route,
    sandbox: Route,
    auth: auth::TokenCache,
}

pub struct Client {
    conns: std::sync::Arc<Connections>,
    topic: HeaderValue,
    voip_topic: HeaderValue,
    /// An app's client (`[apps.<id>.apns]`): its topic is the app's, whatever the
    /// binding's `app_id` spells. The top-level client takes a binding's `app_id` as
    /// its topic (API: `app_id` overrides the configured default).
    app: bool,
    /// Shares another client's connections and token: its tokens are counted there.
    shared: bool,
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, connect::Error> {
        let route = |url: &str| Route::new(s.connect.pool(url)?);
        let conns = Connections {
            production: route(&s.endpoint_production)?,
            sandbox: route(&s.endpoint_sandbox)?,
            auth: auth::TokenCache::new(s.key.0.clone(), s.key_id.clone(), s.team_id.clone()),
        };
        Ok(Self {
            conns: std::sync::Arc::new(conns),
            topic: s.topic.clone(),
            voip_topic: s.voip_topic.clone(),
            app: false,
            shared: false,
        })
    }

    /// An app's client over this client's connections and provider token when only
    /// the topic differs (same key, team, hosts and connection settings).
    fn share(&self, mine: &Settings, top: &Settings) -> Option<Self> {
        let same = mine.key_id == top.key_id
            && mine.team_id == top.team_id
            && mine.endpoint_production == top.endpoint_production
            && mine.endpoint_sandbox == top.endpoint_sandbox
            && mine.connect.ca_file == top.connect.ca_file
            && format!("{:?}", mine.connect.pool) == format!("{:?}", top.connect.pool);
        same.then(|| Self {
            conns: self.conns.clone(),
            topic: mine.topic.clone(),
            voip_topic: mine.voip_topic.clone(),
            app: true,
            shared: true,
        })
    }

    /// Provider tokens minted so far (they are cached for 50 minutes); 0 for a client
    /// sharing another's token.
    pub fn tokens_minted(&self) -> u64 {
        if self.shared {
            0
        } else {
            self.conns.auth.minted()
        }
    }

    pub async fn send(&self, to: Attempt<'_>) -> Verdict {
        let (device, push) = (to.device, to.push);
        let voip = device.provider() == ProviderKind::ApnsVoip;
        let body = match &push.apns.badged {
            _ if voip => push.apns.voip.clone(),
            // The recipient's own total: the one allocation of a badged push.
            Some(badged) => {
                let mut digits = itoa::Buffer::new();
                badged.fill(&[super::badge_digits(&mut digits, to.badge.unwrap_or(0))])
            }
            None => push.apns.alert.clone(),
        };
        let route = match device.environment() {
            Environment::Production => &self.conns.production,
            Environment::Sandbox => &self.conns.sandbox,
        };
        // Everything per request is built without parsing or formatting: typed header
        // names, shared constant values, the path written straight into one buffer
        // (this is the hot path of every APNs push; see BENCHMARKS.md).
        let topic = match (device.app_id().filter(|_| !self.app), voip) {
            (Some(app), false) => HeaderValue::from_str(app),
            (Some(app), true) => HeaderValue::from_str(&format!("{app}.voip")),
            (None, false) => Ok(self.topic.clone()),
            (None, true) => Ok(self.voip_topic.clone()),
        }
        .expect("topics are validated header values");
        let uri = route.uri(device.token());
        // Kept as bytes and turned into a header value inside `make`: cloning a fresh
        // `HeaderValue` would first promote its buffer to a shared one (an allocation).
        // No `apns-id`: APNs assigns one and returns it (the debug verdict shows it),
        // and a unique value per request only churned the HPACK dynamic table.
        // `ttl_s = 0` is "now or never": APNs' `0` (try once, do not store).
        let mut expiration = itoa::Buffer::new();
        let expiration = expiration
            .format(if push.ttl_s == 0 { 0 } else { push.expires_at })
            .as_bytes();
        let voip_type = HeaderValue::from_static("voip");
        let (push_type, priority) = if voip {
            (&voip_type, None)
        } else {
            (&push.apns.push_type, sent_priority(&push.apns.priority))
        };
        let auth = self.conns.auth.header();
        let head = Head {
            uri: &uri,
            auth: &auth,
            topic: &topic,
            push_type,
            priority,
            expiration,
            collapse_id: push.apns.collapse_id.as_ref(),
        };
        match route
            .pool
            .send_before(|| head.request(), body, push.expires_at)
            .await
        {
            Ok(resp) => {
                let v = response::classify(&resp, to.detail);
                if v.reason.as_deref() == Some("ExpiredProviderToken") {
                    self.conns.auth.expired(&auth);
                }
                v
            }
            Err(e) => Verdict::transport(&e),
        }
    }
}

/// `apns-priority` as sent: `None` for APNs' default 10 (one header less to build,
/// encode and parse per push; BENCHMARKS.md, issue 16).
fn sent_priority(priority: &HeaderValue) -> Option<&HeaderValue> {
    Some(priority).filter(|p| p.as_bytes() != b"10")
}

/// One push's request head: only the headers APNs needs (module docs).
struct Head<'a> {
    uri: &'a Uri,
    auth: &'a HeaderValue,
    topic: &'a HeaderValue,
    push_type: &'a HeaderValue,
    /// From [`sent_priority`].
    priority: Option<&'a HeaderValue>,
    expiration: &'a [u8],
    collapse_id: Option<&'a HeaderValue>,
}

impl Head<'_> {
    fn request(&self) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.reserve(6);
        h.insert(AUTHORIZATION, self.auth.clone());
        h.insert(APNS_TOPIC, self.topic.clone());
        h.insert(APNS_PUSH_TYPE, self.push_type.clone());
        if let Some(p) = self.priority {
            h.insert(APNS_PRIORITY, p.clone());
        }
        h.insert(
            APNS_EXPIRATION,
            HeaderValue::from_bytes(self.expiration).expect("digits"),
        );
        if let Some(id) = self.collapse_id {
            h.insert(APNS_COLLAPSE_ID, id.clone());
        }
        req
    }
}

super::impl_vendor!(
    Apns,
    payload::Bodies,
    |k, c, r, _| payload::Bodies::render(k, c, r),
    Client::tokens_minted,
    share: Client::share
);

/// The API's check of a apns device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    let _ = kind;
    if !(64..=200).contains(&token.len()) || token.len() % 2 != 0 {
        return Err("an APNs device token is an even number (64 to 200) of hex digits".into());
    }
    let bytes = hex::decode(token).map_err(|_| "an APNs device token is hex digits only")?;
    Ok(Token::Bytes(bytes.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(req: &Request<()>) -> Vec<(String, String)> {
        req.headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_string()))
            .collect()
    }

    #[test]
    fn a_push_sends_only_the_headers_apns_needs_and_not_its_default_priority() {
        let uri: Uri = "https://api.push.apple.com/3/device/00aa"
            .parse()
            .expect("uri");
        let v = HeaderValue::from_static;
        let (auth, topic, alert, ten, five) =
            (v("bearer x"), v("com.a"), v("alert"), v("10"), v("5"));
        let head = |priority| Head {
            uri: &uri,
            auth: &auth,
            topic: &topic,
            push_type: &alert,
            priority,
            expiration: b"0",
            collapse_id: None,
        };
        let default = head(sent_priority(&ten)).request();
        assert_eq!(default.method(), Method::POST);
        assert_eq!(
            names_and_values(&default),
            [
                ("authorization", "bearer x"),
                ("apns-topic", "com.a"),
                ("apns-push-type", "alert"),
                ("apns-expiration", "0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let normal = head(sent_priority(&five)).request();
        assert!(names_and_values(&normal).contains(&("apns-priority".into(), "5".into())));
    }
}
