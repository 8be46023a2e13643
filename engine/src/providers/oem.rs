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
//! a header that depends on it, into [`Oem::head`]. A per-recipient value (a badge
//! counted per user) goes into [`Target`], filled per device and written into a body
//! slot by [`Oem::body`].

use std::borrow::Cow;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;

use super::connect::{self, Connect};
use super::splice::Spliced;
use super::token::{self, Access, Fresh};
use super::{Attempt, Configure, Content, Kind, Push, TooLarge, Vendor, Verdict};
use crate::config::{Check, Resource, Secret};
use crate::state::{ProviderKind, Token};
use crate::transport::{auto, Response};

/// The device one request goes to. Per-recipient values (an API 1.1 badge counted
/// per user) belong here, beside the token.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The device token as the vendor issued it.
    pub token: &'a str,
    /// The recipient's own badge total, for a push with `badge_increment`.
    pub badge: Option<u32>,
}

/// An OEM vendor's body for one push: rendered once, with slots filled per device.
#[derive(Debug, Clone, Default)]
pub struct Body {
    pub spliced: Spliced,
    /// The push's rule set (or silence) replaced the client's configured field of
    /// that slot (category, channel): the slot stays empty.
    pub own: [bool; 2],
    /// The body has a slot for the recipient's badge total (`badge_increment`).
    pub badge: bool,
    /// `push.badge`: the number every recipient's badge is set to.
    pub set_badge: Option<u32>,
    /// A silent push: the vendor has no silent type, so nothing may be sent (the
    /// planner leaves such devices out; this is the last guard).
    pub unsendable: bool,
}

impl Body {
    /// A body whose client fields are filled from the client's configuration.
    pub fn new(spliced: Spliced) -> Self {
        Self {
            spliced,
            ..Self::default()
        }
    }

    /// `fields`, the client's configured fields of client slot `i`, when they apply
    /// to this push; else nothing.
    pub fn client<'a>(&self, i: usize, fields: &'a [u8]) -> &'a [u8] {
        if self.own[i] {
            &[]
        } else {
            fields
        }
    }
}

/// How an OEM vendor renders a push's body once ([`Oem::RENDER`]).
pub type Render = fn(&Kind, &Content, &Resource, u64) -> Result<Body, TooLarge>;

/// `content` rendered by `render` as a message without a rule set (unit tests).
#[cfg(test)]
pub(crate) fn render_plain(render: Render, content: &Content, ttl_s: u64) -> Body {
    render(&Kind::message(), content, &Resource::default(), ttl_s).expect("the test content fits")
}

/// What one OEM vendor adds to the skeleton of [`Client`]. Its [`Configure`] impl
/// checks its config section into the settings [`Oem::new`] builds it from.
pub trait Oem: Configure + Sized + Send + Sync + 'static {
    /// The config section, lane and log name.
    const NAME: &'static str;
    /// `Content-Type` of a push request.
    const CONTENT_TYPE: &'static str;
    /// The request header the access token goes in, if it goes in one.
    const TOKEN_HEADER: Option<TokenHeader> = Some(TokenHeader::Bearer);

    /// The vendor's part of the client and the hosts it pushes to (one, or OPPO's
    /// mainland and overseas hosts).
    fn new(s: &Self::Settings) -> Result<(Self, Vec<Route>), connect::Error>;

    /// The body for every device of a push, rendered once, with slots for what
    /// differs per device; fails over the vendor's size limit (`payload::render`).
    const RENDER: Render;

    /// This vendor's body in a rendered push (`push.huawei`, ...).
    const OF: fn(&Push) -> &Body;

    /// Which of [`Oem::new`]'s routes serves `token`.
    fn route(token: &str) -> usize {
        let _ = token;
        0
    }

    /// Exchange the vendor's own credentials for an access token at `uri`, for routes
    /// made with [`Route::token_path`].
    fn fetch_token(
        &self,
        http: &auto::Client,
        uri: &str,
    ) -> impl Future<Output = Result<Fresh, token::Error>> + Send {
        let _ = http;
        std::future::ready(Err(token::Error::Request {
            uri: uri.to_string(),
            detail: format!("{} has no token exchange of its own", Self::NAME),
        }))
    }

    /// The body for one device: the push's rendered `body` ([`Oem::OF`]) with its
    /// slots filled, with the access token where the vendor wants it in the body
    /// (OPPO). The body buffer is its only allocation.
    fn body(&self, to: Target<'_>, body: &Body, token: Option<&Access>) -> Bytes;

    /// Headers of the vendor's own (Honor's `timestamp`, Xiaomi's key), added to
    /// `Content-Type` and the access token header.
    fn head(&self, req: http::request::Builder, push: &Push) -> http::request::Builder {
        let _ = push;
        req
    }

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

/// How an access token is sent in a request header.
pub enum TokenHeader {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `<name>: <token>` (vivo's `authToken`).
    Raw(http::HeaderName),
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
    grant: Grant,
    cache: token::Cache,
}

/// How an access token is had.
enum Grant {
    /// The OAuth 2.0 client-credentials grant (Huawei, Honor).
    ClientCredentials { id: String, secret: Secret },
    /// The vendor's own exchange, [`Oem::fetch_token`] (OPPO's and vivo's signs).
    Vendor,
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

    /// Access tokens from the client-credentials grant at the full URL `uri` (its
    /// own connection), refreshed at least hourly.
    pub fn client_credentials(
        mut self,
        connect: &Connect,
        uri: &str,
        id: &str,
        secret: &Secret,
    ) -> Result<Self, connect::Error> {
        self.auth = Some(Auth {
            http: connect.token_client(uri)?,
            uri: uri.to_string(),
            grant: Grant::ClientCredentials {
                id: id.to_string(),
                secret: secret.clone(),
            },
            cache: token::Cache::new(3600),
        });
        Ok(self)
    }

    /// Access tokens from the vendor's own exchange at `path` on the push host,
    /// refreshed at least every `refresh_s` seconds.
    pub fn token_path(mut self, path: &str, refresh_s: u64) -> Self {
        self.auth = Some(Auth {
            http: self.http.clone(),
            uri: format!("{}{path}", self.http.origin()),
            grant: Grant::Vendor,
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

    /// The request for one device: its body buffer and header map are its only
    /// allocations.
    fn request(
        &self,
        route: &Route,
        to: Target<'_>,
        push: &Push,
        token: Option<&Access>,
    ) -> http::Request<Full<Bytes>> {
        let body = self.vendor.body(to, (V::OF)(push), token);
        let mut req = http::Request::post(route.send_uri.clone()).header(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(V::CONTENT_TYPE),
        );
        match (V::TOKEN_HEADER, token) {
            (Some(TokenHeader::Bearer), Some(t)) => {
                req = req.header(http::header::AUTHORIZATION, t.bearer());
            }
            (Some(TokenHeader::Raw(name)), Some(t)) => req = req.header(name, t.raw()),
            _ => {}
        }
        self.vendor
            .head(req, push)
            .body(Full::new(body))
            .expect("request head is valid")
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
        self.request(route, Target { token, badge: None }, push, access)
    }

    /// A fresh access token for `auth`.
    async fn fetch(&self, auth: &Auth) -> Result<Fresh, token::Error> {
        match &auth.grant {
            Grant::ClientCredentials { id, secret } => {
                token::client_credentials(&auth.http, &auth.uri, id, secret).await
            }
            Grant::Vendor => self.vendor.fetch_token(&auth.http, &auth.uri).await,
        }
    }

    pub async fn send(&self, a: Attempt<'_>) -> Verdict {
        if let Some(v) = self.vendor.gate() {
            return v;
        }
        if (V::OF)(a.push).unsendable {
            return Verdict::failed(
                format!("{} has no silent message type", V::NAME),
                super::Outcome::Rejected(super::Cause::NoSilent),
            );
        }
        let (push, detail) = (a.push, a.detail);
        let token = super::token_text(a.device.token());
        let to = Target {
            token: &token,
            badge: a.badge,
        };
        let route = self.route(&token);
        let access = match &route.auth {
            None => None,
            Some(a) => match a.cache.get(|| self.fetch(a)).await {
                Ok(t) => Some(t),
                Err(e) => return token::verdict(V::NAME, &e),
            },
        };
        let req = self.request(route, to, push, access.as_deref());
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

impl<V: Oem> Configure for Client<V> {
    type Section = V::Section;
    type Settings = V::Settings;

    fn settings(section: &V::Section, connect: Connect, check: &mut Check) -> Option<V::Settings> {
        V::settings(section, connect, check)
    }
}

impl<V: Oem> Vendor for Client<V> {
    type Body = Body;

    fn build(settings: &V::Settings) -> Result<Self, connect::Error> {
        Client::new(settings)
    }

    fn render(
        kind: &Kind,
        content: &Content,
        rule: &Resource,
        ttl_s: u64,
    ) -> Result<Body, TooLarge> {
        (V::RENDER)(kind, content, rule, ttl_s)
    }

    fn send(&self, to: Attempt<'_>) -> impl Future<Output = Verdict> + Send {
        Client::send(self, to)
    }

    fn auth_tokens(&self) -> u64 {
        self.tokens_fetched()
    }

    fn parse_token(kind: ProviderKind, token: &str) -> Result<Token, Cow<'static, str>> {
        V::parse_token(kind, token)
    }
}
