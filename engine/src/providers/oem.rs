//! The one client of the vendors that take one push per HTTP request with an optional
//! access token: Huawei, Honor, Xiaomi, OPPO and vivo.
//!
//! [`Client<V>`] is the skeleton every one of them used to copy: pick the host
//! ([`Route`]) for the device token, get the access token (cached, single-flight,
//! [`token::Cache`]), fill the body rendered once per push, post it over
//! [`crate::transport::auto`] under the `[transport]` bounds, classify the answer,
//! and drop an access token the vendor refused. What is really a vendor's own is its
//! [`Oem`] impl: settings, routes, auth exchange, body rendering, request head and
//! response table.
//!
//! Where a per-push option goes (API 1.1 `sound`, `silent`, `collapse_id`, `ttl_s`,
//! `priority`): into the body [`Oem::render`] makes once per push from [`Content`];
//! a header that depends on it, into [`Oem::request`] (which sees the [`Push`]). A
//! per-recipient value (a badge counted per user) goes into [`Target`], filled per
//! device and written into a body slot by [`Oem::request`].

use std::borrow::Cow;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;

use super::connect::{self, Connect};
use super::splice::Spliced;
use super::token::{self, Access, Fresh};
use super::{Content, Kind, Push, TooLarge, Vendor, Verdict};
use crate::config::Check;
use crate::state::{Device, ProviderKind, Token};
use crate::transport::{auto, Response};

/// The device one request goes to. Per-recipient values (an API 1.1 badge counted
/// per user) belong here, beside the token.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The device token as the vendor issued it.
    pub token: &'a str,
}

/// What one OEM vendor adds to the skeleton of [`Client`].
pub trait Oem: Sized + Send + Sync + 'static {
    /// The config section, lane and log name.
    const NAME: &'static str;
    /// The config section (`[huawei]`, ...).
    type Section;
    /// The section, validated.
    type Settings: Send + Sync + std::fmt::Debug;

    /// Check the section (every problem goes to `check`); `None` when not configured.
    fn settings(
        section: &Self::Section,
        connect: Connect,
        check: &mut Check,
    ) -> Option<Self::Settings>;

    /// The vendor's part of the client and the hosts it pushes to (one, or OPPO's
    /// mainland and overseas hosts).
    fn new(s: &Self::Settings) -> Result<(Self, Vec<Route>), connect::Error>;

    /// The body for every device of a push, rendered once, with slots for what
    /// differs per device; fails over the vendor's size limit.
    fn render(kind: &Kind, content: &Content, ttl_s: u64) -> Result<Spliced, TooLarge>;

    /// Which of [`Oem::new`]'s routes serves `token`.
    fn route(token: &str) -> usize {
        let _ = token;
        0
    }

    /// Exchange the credentials for an access token at `uri` (a route's token
    /// endpoint). Only called for routes that have one.
    fn fetch_token(
        &self,
        http: &auto::Client,
        uri: &str,
    ) -> impl Future<Output = Result<Fresh, token::Error>> + Send;

    /// The request for one device: its body buffer and header map are the only
    /// allocations.
    fn request(
        &self,
        uri: &http::Uri,
        to: Target<'_>,
        push: &Push,
        token: Option<&Access>,
    ) -> http::Request<Full<Bytes>>;

    /// The vendor's answer as a verdict.
    fn classify(&self, resp: &Response, to: Target<'_>, detail: bool) -> Verdict;

    /// A verdict that stops the push before anything is sent (vivo's quota pause).
    fn gate(&self) -> Option<Verdict> {
        None
    }

    /// Sees every verdict of an answered request (vivo starts its quota pause).
    fn observe(&self, v: &Verdict) {
        let _ = v;
    }

    /// A device token as the API receives it, checked and stored compactly.
    fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>>;
}

/// One host pushes go to, with its access token if the vendor uses one.
pub struct Route {
    http: auto::Client,
    send_uri: http::Uri,
    auth: Option<Auth>,
}

/// Where a route's access token comes from, and its cache.
struct Auth {
    http: auto::Client,
    uri: String,
    cache: token::Cache,
}

impl Route {
    /// Pushes to `send_path` on the origin of `endpoint`, without an access token.
    pub fn new(connect: &Connect, endpoint: &str, send_path: &str) -> Result<Self, connect::Error> {
        let (http, base) = connect.client(endpoint)?;
        Ok(Self {
            send_uri: super::parse_uri(format!("{base}{send_path}"))?,
            http,
            auth: None,
        })
    }

    /// Access tokens from the full URL `uri` (its own connection), refreshed at least
    /// every `refresh_s` seconds.
    pub fn token_endpoint(
        mut self,
        connect: &Connect,
        uri: &str,
        refresh_s: u64,
    ) -> Result<Self, connect::Error> {
        self.auth = Some(Auth {
            http: connect.token_client(uri)?,
            uri: uri.to_string(),
            cache: token::Cache::new(refresh_s),
        });
        Ok(self)
    }

    /// Access tokens from `path` on the push host itself, refreshed at least every
    /// `refresh_s` seconds.
    pub fn token_path(mut self, path: &str, refresh_s: u64) -> Self {
        self.auth = Some(Auth {
            http: self.http.clone(),
            uri: format!("{}{path}", self.http.origin()),
            cache: token::Cache::new(refresh_s),
        });
        self
    }
}

/// An OEM vendor's client: the shared skeleton over the vendor's part `V`.
pub struct Client<V> {
    vendor: V,
    routes: Box<[Route]>,
}

impl<V: Oem> Client<V> {
    pub fn new(s: &V::Settings) -> Result<Self, connect::Error> {
        let (vendor, routes) = V::new(s)?;
        assert!(!routes.is_empty(), "an OEM vendor has at least one route");
        Ok(Self {
            vendor,
            routes: routes.into(),
        })
    }

    /// The vendor's part.
    pub fn vendor(&self) -> &V {
        &self.vendor
    }

    /// Access tokens fetched so far, all routes together.
    pub fn tokens_fetched(&self) -> u64 {
        self.routes
            .iter()
            .filter_map(|r| r.auth.as_ref())
            .map(|a| a.cache.fetched())
            .sum()
    }

    fn route(&self, token: &str) -> &Route {
        &self.routes[V::route(token).min(self.routes.len() - 1)]
    }

    /// The request [`Client::send`] makes for `token` (allocation tests).
    #[cfg(test)]
    pub(crate) fn request_for(
        &self,
        token: &str,
        push: &Push,
        access: &Access,
    ) -> http::Request<Full<Bytes>> {
        let route = self.route(token);
        let access = route.auth.as_ref().map(|_| access);
        self.vendor
            .request(&route.send_uri, Target { token }, push, access)
    }

    pub async fn send(&self, device: &Device, push: &Push, detail: bool) -> Verdict {
        if let Some(v) = self.vendor.gate() {
            return v;
        }
        let token = super::token_text(device.token());
        let to = Target { token: &token };
        let route = self.route(&token);
        let access = match &route.auth {
            None => None,
            Some(a) => match a
                .cache
                .get(|| self.vendor.fetch_token(&a.http, &a.uri))
                .await
            {
                Ok(t) => Some(t),
                Err(e) => return token::verdict(V::NAME, &e),
            },
        };
        let req = self
            .vendor
            .request(&route.send_uri, to, push, access.as_deref());
        match route.http.send(req).await {
            Ok(resp) => {
                let v = self.vendor.classify(&resp, to, detail);
                if let (Some(a), Some(t)) = (&route.auth, &access) {
                    if v.outcome.refuses_auth() {
                        a.cache.invalidate(t);
                    }
                }
                self.vendor.observe(&v);
                v
            }
            Err(e) => Verdict::transport_auto(&e),
        }
    }
}

impl<V: Oem> Vendor for Client<V> {
    type Body = Spliced;
    type Section = V::Section;
    type Settings = V::Settings;

    fn settings(section: &V::Section, connect: Connect, check: &mut Check) -> Option<V::Settings> {
        V::settings(section, connect, check)
    }

    fn build(settings: &V::Settings) -> Result<Self, connect::Error> {
        Client::new(settings)
    }

    fn render(kind: &Kind, content: &Content, ttl_s: u64) -> Result<Spliced, TooLarge> {
        V::render(kind, content, ttl_s)
    }

    fn send(
        &self,
        device: &Device,
        push: &Push,
        detail: bool,
    ) -> impl Future<Output = Verdict> + Send {
        Client::send(self, device, push, detail)
    }

    fn auth_tokens(&self) -> u64 {
        self.tokens_fetched()
    }

    fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        V::parse_token(kind, token)
    }
}
