//! Standard Web Push: RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID
//! (`VENDORS.md` §4).
//!
//! A binding's token is the browser's PushSubscription JSON; its `endpoint` URL is
//! where the push goes, so each push service origin gets its own pooled client (HTTP/2
//! when offered, else keep-alive HTTP/1.1), at most `max_origins` at once with the
//! least recently used closed beyond that. Per push: `POST <endpoint>` with `TTL`,
//! `Urgency`, optional `Topic`, `Content-Encoding: aes128gcm`, the body encrypted for
//! the subscription's keys ([`ece`]), and `Authorization: vapid t=.., k=..` with a JWT
//! cached per origin ([`vapid::Signer`]).

pub mod ece;
pub mod payload;
pub mod response;
pub mod vapid;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use dashmap::DashMap;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http_body_util::Full;
use serde::Deserialize;

use super::connect::{self, Connect};
use super::{Cause, Outcome, Push, Verdict};
use crate::config::{self, Check};
use std::borrow::Cow;

use crate::state::{Device, ProviderKind, Token};
use crate::transport::{self, auto};

/// `[webpush]`, validated: the VAPID key is loaded and checked.
pub struct Settings {
    pub key: p256::SecretKey,
    pub subject: String,
    pub max_origins: usize,
    pub connect: Connect,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("key", &"<redacted>")
            .field("subject", &self.subject)
            .field("max_origins", &self.max_origins)
            .finish()
    }
}

/// Check `[webpush]`; `None` when no VAPID key is configured.
fn settings(c: &config::Webpush, connect: Connect, check: &mut Check) -> Option<Settings> {
    if c.max_origins == 0 {
        check.key("max_origins", " must be at least 1");
    }
    let path = c.vapid_private_key_file.as_ref()?;
    let key = vapid::load_key(path)
        .map_err(|e| check.key("vapid_private_key_file", format_args!(": {e}")))
        .ok();
    let subject = match c.subject.as_deref() {
        Some(s) if s.starts_with("mailto:") || s.starts_with("https:") => Some(s.to_string()),
        _ => {
            check.problem(
                "webpush.subject is required with a VAPID key: a mailto: or https: contact",
            );
            None
        }
    };
    Some(Settings {
        key: key?,
        subject: subject?,
        max_origins: c.max_origins,
        connect,
    })
}

/// The parts of a PushSubscription a push needs.
#[derive(Deserialize)]
struct Subscription {
    endpoint: String,
    keys: Keys,
}

#[derive(Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

struct Origin {
    http: auto::Client,
    last_used: AtomicU64,
}

pub struct Client {
    signer: vapid::Signer,
    origins: DashMap<Arc<str>, Arc<Origin>>,
    tick: AtomicU64,
    /// Trusted roots, connections and `[transport]` bounds of each origin's client.
    connect: Connect,
    max_origins: usize,
}

/// Autopush caps TTL at 30 days.
const MAX_TTL_S: u64 = 2_592_000;

impl Client {
    pub fn new(s: &Settings) -> Result<Self, connect::Error> {
        // Fail at start-up, not on the first push, if the CA file is bad.
        transport::tls::client_config(s.connect.ca_file.as_deref(), &[])?;
        Ok(Self {
            signer: vapid::Signer::new(&s.key, s.subject.clone(), s.max_origins),
            origins: DashMap::new(),
            tick: AtomicU64::new(0),
            connect: s.connect.clone(),
            max_origins: s.max_origins.max(1),
        })
    }

    /// VAPID JWTs minted so far (one per origin per 11 hours).
    pub fn tokens_minted(&self) -> u64 {
        self.signer.minted()
    }

    fn origin(&self, origin: &str) -> Result<auto::Client, transport::tls::Error> {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        if let Some(o) = self.origins.get(origin) {
            o.last_used.store(now, Ordering::Relaxed);
            return Ok(o.http.clone());
        }
        if self.origins.len() >= self.max_origins {
            let oldest = self
                .origins
                .iter()
                .min_by_key(|e| e.value().last_used.load(Ordering::Relaxed))
                .map(|e| e.key().clone());
            if let Some(k) = oldest {
                self.origins.remove(&k);
            }
        }
        let entry = match self.origins.entry(Arc::from(origin)) {
            dashmap::mapref::entry::Entry::Occupied(e) => e.get().clone(),
            dashmap::mapref::entry::Entry::Vacant(e) => {
                let http =
                    auto::Client::new(origin, self.connect.ca_file.as_deref(), &self.connect.pool)?;
                e.insert(Arc::new(Origin {
                    http,
                    last_used: AtomicU64::new(now),
                }))
                .clone()
            }
        };
        Ok(entry.http.clone())
    }

    pub async fn send(
        &self,
        device: &Device,
        push: &Push,
        badge: Option<u32>,
        detail: bool,
    ) -> Verdict {
        let reject =
            |why: &str| Verdict::failed(why.to_string(), Outcome::Rejected(Cause::BadDeviceToken));
        let token = device.token().to_wire();
        let Ok(sub) = serde_json::from_str::<Subscription>(&token) else {
            return reject("subscription is not PushSubscription JSON");
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (Ok(p256dh), Ok(auth)) = (
            b64.decode(sub.keys.p256dh.trim_end_matches('=')),
            b64.decode(sub.keys.auth.trim_end_matches('=')),
        ) else {
            return reject("subscription keys are not base64url");
        };
        let Ok(uri) = sub.endpoint.parse::<http::Uri>() else {
            return reject("subscription endpoint is not a URL");
        };
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return reject("subscription endpoint is not absolute");
        };
        let origin = format!("{scheme}://{authority}");
        let badged = push.webpush.badged.as_ref().map(|b| {
            let mut digits = itoa::Buffer::new();
            b.fill(&[super::badge_digits(&mut digits, badge.unwrap_or(0))])
        });
        let plaintext = badged.as_ref().unwrap_or(&push.webpush.plaintext);
        let body = match ece::encrypt_random(plaintext, &p256dh, &auth) {
            Ok(b) => b,
            Err(e) => return reject(&e.to_string()),
        };
        let http = match self.origin(&origin) {
            Ok(h) => h,
            Err(e) => return Verdict::transport_detail(super::error_chain(&e)),
        };
        let mut req = http::Request::post(uri)
            .header("ttl", push.ttl_s.min(MAX_TTL_S))
            .header("urgency", push.webpush.urgency.clone())
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(AUTHORIZATION, self.signer.header(&origin));
        if let Some(t) = &push.webpush.topic {
            req = req.header("topic", t.clone());
        }
        let req = req
            .body(Full::new(body.into()))
            .expect("request head is valid");
        match http.send(req).await {
            Ok(resp) => {
                let v = response::classify(&resp, detail);
                if matches!(v.outcome, Outcome::Rejected(Cause::ProviderAuth)) {
                    self.signer.invalidate(&origin);
                }
                v
            }
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

super::impl_vendor!(
    Webpush,
    payload::Message,
    |k, c, r, _| payload::render(k, c, r),
    Client::tokens_minted
);

/// The API's check of a webpush device token, and its stored form.
fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
    let _ = kind;
    const SHAPE: &str = "a webpush token is a PushSubscription JSON string {\"endpoint\", \"keys\": {\"p256dh\", \"auth\"}}";
    // Objects only: serde would also read a struct from an array.
    let v: serde_json::Value = serde_json::from_str(token).map_err(|_| SHAPE)?;
    if !v.is_object() || !v.get("keys").is_some_and(serde_json::Value::is_object) {
        return Err(SHAPE.into());
    }
    let sub = Subscription::deserialize(&v).map_err(|_| SHAPE)?;
    let uri: http::Uri = sub
        .endpoint
        .parse()
        .map_err(|_| "subscription endpoint is not a URL")?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err("subscription endpoint must be an https URL".into());
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let p256dh = b64
        .decode(sub.keys.p256dh.trim_end_matches('='))
        .map_err(|_| "keys.p256dh is not base64url")?;
    if p256dh.len() != 65 || p256dh[0] != 4 {
        return Err("keys.p256dh is not an uncompressed P-256 public key".into());
    }
    let auth = b64
        .decode(sub.keys.auth.trim_end_matches('='))
        .map_err(|_| "keys.auth is not base64url")?;
    if auth.len() != 16 {
        return Err("keys.auth must be 16 bytes".into());
    }
    Ok(Token::Text(token.into()))
}
