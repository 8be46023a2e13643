//! The skeleton every mock vendor is built on (APNs, FCM, the Chinese OEMs, Web Push).
//!
//! - [`Vendor`]: what a vendor module provides over the shared server: the push it
//!   records, the per-token answer it can be scripted with, and the credentials it
//!   handed out (or first saw).
//! - [`Mock`]: the running server plus its vendor, with the uniform test API
//!   (`received`, `take_received`, `wait_for`, `set_token_verdict`, `tokens_issued`,
//!   `rejections`, `faults`, `shutdown`, ...). A vendor adds only its own accessors
//!   (`impl Mock<Apns> { .. }`).
//! - [`spawn`]: one start path (TLS with the vendor's ALPN, HTTP/2 settings, latency).
//! - [`Tokens`]: issued access tokens with expiry (OEM OAuth endpoints, Google OAuth);
//!   [`Throttles`]: scripted per-token 429s with `Retry-After` (APNs, FCM).
//! - For the OEM and Web Push mocks: [`Oem`], one mock over a small per-vendor
//!   [`Dialect`] (credentials, routes, checks, error bodies; refusals returned as
//!   data and recorded in one place); [`VendorPush`], one accepted push reduced to what
//!   every vendor carries (token, title, content, payload) plus the raw request;
//!   [`TokenVerdict`], scripted per-token answers (dead token, N rate-limited answers
//!   before success, quota exhausted) each mock answers with its vendor's real codes;
//!   [`Core`], recorder, scripts and tokens, so auth reuse can be proven by
//!   `tokens_issued`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use parking_lot::{Mutex, RwLock};
use rand::Rng as _;
use serde_json::Value;

use super::server::{self, Faults, Recorder, Reply, Request, Server, Service, Settings, Verdicts};
use super::tls::TestCa;

/// A scripted answer for one device token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenVerdict {
    /// The vendor's "token invalid / unregistered" answer.
    Dead,
    /// The vendor's rate-limit answer for the next `n` sends, then normal handling.
    RateLimit(u32),
    /// The vendor's daily-quota answer, every time.
    Quota,
}

/// What a mock decided for a token before its own validation passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scripted {
    Dead,
    RateLimit,
    Quota,
}

#[derive(Clone, Debug)]
enum Script {
    Dead,
    RateLimit(Arc<AtomicU32>),
    Quota,
}

/// One push a vendor mock accepted.
#[derive(Clone, Debug)]
pub struct VendorPush {
    /// The device token (regId, Push Kit token, or the Web Push endpoint URL).
    pub token: String,
    pub title: String,
    pub content: String,
    /// The app payload as the device receives it.
    pub payload: Option<String>,
    /// The request as the vendor parsed it: the JSON message, the form as a JSON
    /// object of strings, or (Web Push) the decrypted plaintext JSON.
    pub body: Value,
    pub headers: HeaderMap,
    pub received_at: quanta::Instant,
}

/// Issued opaque access tokens with their expiry. Tokio's clock, so paused-time
/// tests can expire them.
#[derive(Debug)]
pub(crate) struct Tokens {
    expiry: RwLock<HashMap<String, tokio::time::Instant>>,
    issued: AtomicUsize,
    pub lifetime: Duration,
}

impl Tokens {
    pub fn new(lifetime: Duration) -> Tokens {
        Tokens {
            expiry: RwLock::new(HashMap::new()),
            issued: AtomicUsize::new(0),
            lifetime,
        }
    }

    /// Issue `prefix` + `random_bytes` random bytes (base64url), valid for `lifetime`.
    pub fn issue(&self, prefix: &str, random_bytes: usize) -> String {
        let mut random = [0u8; 64];
        let random = &mut random[..random_bytes.min(64)];
        rand::thread_rng().fill(&mut random[..]);
        let token = format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let now = tokio::time::Instant::now();
        let mut expiry = self.expiry.write();
        expiry.retain(|_, at| *at > now);
        expiry.insert(token.clone(), now + self.lifetime);
        self.count();
        token
    }

    /// `Some(true)` valid, `Some(false)` known but expired, `None` unknown.
    pub fn check(&self, token: &str) -> Option<bool> {
        self.expiry
            .read()
            .get(token)
            .map(|at| *at > tokio::time::Instant::now())
    }

    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Count a credential the client minted itself (a VAPID JWT seen first).
    pub fn count(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }
}

/// Scripted per-token 429 answers: token → (answers left, `Retry-After` seconds).
#[derive(Debug)]
pub(crate) struct Throttles {
    map: Mutex<HashMap<String, (u32, u32)>>,
    /// Tokens compare case-insensitively (APNs hex tokens).
    fold_case: bool,
}

impl Throttles {
    pub fn new(fold_case: bool) -> Throttles {
        Throttles {
            map: Mutex::new(HashMap::new()),
            fold_case,
        }
    }

    pub fn set(&self, token: &str, n: u32, retry_after_s: u32) {
        let key = if self.fold_case {
            token.to_ascii_lowercase()
        } else {
            token.to_owned()
        };
        self.map.lock().insert(key, (n, retry_after_s));
    }

    /// Consumes one scripted 429 for `token`: its `Retry-After`. Costs one
    /// uncontended lock and nothing else while no throttle is set (the hot path).
    pub fn take(&self, token: &str) -> Option<u32> {
        let mut map = self.map.lock();
        if map.is_empty() {
            return None;
        }
        let (left, retry_after) = if self.fold_case {
            map.get_mut(token.to_ascii_lowercase().as_str())?
        } else {
            map.get_mut(token)?
        };
        *left = left.checked_sub(1)?;
        Some(*retry_after)
    }
}

/// The fields of an accepted OEM push, for [`Core::accept`].
pub(crate) struct Accepted<'a> {
    pub token: &'a str,
    pub title: &'a str,
    pub content: &'a str,
    pub payload: Option<String>,
}

/// The app payload the engine nests as `"payload"` inside a JSON string field (Huawei
/// and Honor `data`, OPPO `action_parameters`).
pub(crate) fn nested_payload(json_text: Option<&str>) -> Option<String> {
    let value: Value = serde_json::from_str(json_text?).ok()?;
    value["payload"].as_str().map(str::to_owned)
}

/// State every OEM and Web Push mock has.
#[derive(Debug)]
pub(crate) struct Core {
    pub recorder: Recorder<VendorPush>,
    scripts: Verdicts<String, Script>,
    pub tokens: Tokens,
    pub token_lifetime: Duration,
    /// Source of the message ids a vendor answers.
    next_id: AtomicU64,
}

impl Core {
    pub fn new(record_limit: usize, token_lifetime: Duration) -> Core {
        Core {
            recorder: Recorder::new(record_limit),
            scripts: Verdicts::new(),
            tokens: Tokens::new(token_lifetime),
            token_lifetime,
            next_id: AtomicU64::new(1),
        }
    }

    /// The next message id: 1, 2, 3, ...
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Issue an opaque access token valid for `token_lifetime`.
    pub fn issue_token(&self, prefix: &str) -> String {
        self.tokens.issue(prefix, 24)
    }

    /// `Some(true)` valid, `Some(false)` known but expired, `None` unknown.
    pub fn check_token(&self, token: &str) -> Option<bool> {
        self.tokens.check(token)
    }

    /// Count a credential the client minted itself (a VAPID JWT seen first).
    pub fn count_token(&self) {
        self.tokens.count();
    }

    /// The request's `authorization: Bearer <token>`: `Some(true)` valid,
    /// `Some(false)` known but expired, `None` missing or unknown.
    pub fn check_bearer(&self, r: &Request) -> Option<bool> {
        r.head
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(server::bearer_token)
            .and_then(|token| self.check_token(token))
    }

    /// Records an accepted push; `body` is the request as the vendor parsed it.
    pub fn accept(&self, r: &Request, push: Accepted<'_>, body: Value) {
        self.recorder.accept(VendorPush {
            token: push.token.to_owned(),
            title: push.title.to_owned(),
            content: push.content.to_owned(),
            payload: push.payload,
            body,
            headers: r.head.headers.clone(),
            received_at: quanta::Instant::now(),
        });
    }

    /// The scripted answer for `token`, consuming one rate-limit answer.
    pub fn script(&self, token: &str) -> Option<Scripted> {
        match self.scripts.get(token)? {
            Script::Dead => Some(Scripted::Dead),
            Script::Quota => Some(Scripted::Quota),
            Script::RateLimit(left) => left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .ok()
                .map(|_| Scripted::RateLimit),
        }
    }

    pub fn set_script(&self, token: &str, v: TokenVerdict) {
        let s = match v {
            TokenVerdict::Dead => Script::Dead,
            TokenVerdict::Quota => Script::Quota,
            TokenVerdict::RateLimit(n) => Script::RateLimit(Arc::new(AtomicU32::new(n))),
        };
        self.scripts.set(token.to_owned(), s);
    }
}

/// A vendor behind a [`Mock`]: its request handling ([`Service`]) plus what the
/// uniform test API needs from it.
pub trait Vendor: Send + Sync + 'static {
    /// What the mock records for one accepted push.
    type Push: Clone + Send + 'static;
    /// A scripted per-token answer.
    type Verdict;

    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn recorder(&self) -> &Recorder<Self::Push>;

    /// Scripts the answer for sends to `token`.
    fn set_verdict(&self, token: &str, verdict: Self::Verdict);

    /// Credentials the vendor handed out (access tokens) or first saw (self-minted
    /// JWTs: VAPID, APNs provider tokens), so auth reuse can be proven.
    fn tokens_issued(&self) -> usize;
}

/// The vendor's own part of an OEM or Web Push mock, under [`Oem`]: its credentials,
/// routes, checks and error bodies. It refuses with [`Refused`] data; [`Oem`] records
/// the refusal (`rejections()`) and answers it, for every vendor alike.
pub trait Dialect: fmt::Debug + Send + Sync + 'static {
    /// Offer HTTP/2 beside HTTP/1.1 (OPPO and vivo serve HTTP/1.1 only).
    const H2: bool;

    /// Validates one request the way the vendor does, against the shared `core`.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn serve(&self, core: &Core, r: &Request) -> Result<Reply, Refused>;
}

/// A refused request: the `(HTTP status, vendor code)` the mock records and the
/// vendor's answer (boxed: a refusal is rare, and `Err` stays small beside `Ok`).
pub(crate) struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub reply: Box<Reply>,
}

impl Refused {
    /// Records `(status, code)` and answers `reply`.
    pub fn new(status: u16, code: &'static str, reply: Reply) -> Refused {
        Refused {
            status,
            code,
            reply: Box::new(reply),
        }
    }
}

/// An OEM or Web Push mock: the state every one of them keeps ([`Core`]: recorder,
/// scripted verdicts, issued tokens) around the vendor's [`Dialect`].
#[derive(Debug)]
pub struct Oem<D> {
    dialect: D,
    core: Core,
}

/// A running OEM or Web Push mock of dialect `D`.
pub type MockOem<D> = Mock<Oem<D>>;

impl<D: Dialect> Service for Oem<D> {
    type Conn = ();

    fn handle(&self, _: &(), r: Request) -> Reply {
        self.dialect
            .serve(&self.core, &r)
            .unwrap_or_else(|refused| {
                self.core.recorder.reject(refused.status, refused.code);
                *refused.reply
            })
    }
}

impl<D: Dialect> Vendor for Oem<D> {
    type Push = VendorPush;
    type Verdict = TokenVerdict;

    #[allow(private_interfaces)]
    fn recorder(&self) -> &Recorder<VendorPush> {
        &self.core.recorder
    }

    fn set_verdict(&self, token: &str, verdict: TokenVerdict) {
        self.core.set_script(token, verdict);
    }

    fn tokens_issued(&self) -> usize {
        self.core.tokens.issued()
    }
}

impl<D> Mock<Oem<D>> {
    /// The vendor's own part: the credentials the engine is configured with.
    pub fn dialect(&self) -> &D {
        &self.vendor.dialect
    }
}

/// A running vendor mock. Dropping it stops the server.
pub struct Mock<V> {
    server: Server,
    vendor: Arc<V>,
}

impl<V> fmt::Debug for Mock<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mock")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Mock settings every vendor shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// Delay added before every answer.
    pub latency: Duration,
    /// Accepted pushes kept for `received`; counting goes on past it.
    pub record_limit: usize,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            latency: Duration::ZERO,
            record_limit: usize::MAX,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// Start `vendor` on `listener`. `h2`: offer HTTP/2 (and HTTP/1.1 too when
/// `settings.http1`); else HTTP/1.1 only.
pub(crate) fn spawn<V>(
    ca: &TestCa,
    listener: std::net::TcpListener,
    vendor: Arc<V>,
    h2: bool,
    settings: Settings,
    latency: Duration,
) -> anyhow::Result<Mock<V>>
where
    V: Vendor + Service,
{
    let mut tls = (*ca.server_config()).clone();
    tls.alpn_protocols = match (h2, settings.http1) {
        (true, true) => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        (true, false) => vec![b"h2".to_vec()],
        (false, _) => vec![b"http/1.1".to_vec()],
    };
    let server = Server::spawn(
        listener,
        Arc::new(tls),
        settings,
        Faults::with_latency(latency),
        vendor.clone(),
    )?;
    Ok(Mock { server, vendor })
}

/// Starts the OEM or Web Push mock speaking `dialect` on `127.0.0.1:0`.
pub(crate) fn start_oem<D: Dialect>(
    ca: &TestCa,
    common: &Common,
    dialect: D,
) -> anyhow::Result<Mock<Oem<D>>> {
    spawn_oem(ca, server::bind()?, dialect, common)
}

/// [`start_oem`] on `listener` (a vendor that needs its address first), with the
/// settings of the OEM and Web Push mocks: 1000 streams, HTTP/1.1 always served.
pub(crate) fn spawn_oem<D: Dialect>(
    ca: &TestCa,
    listener: std::net::TcpListener,
    dialect: D,
    common: &Common,
) -> anyhow::Result<Mock<Oem<D>>> {
    let settings = Settings {
        max_concurrent_streams: 1000,
        max_header_list_size: None,
        http1: true,
    };
    let oem = Oem {
        dialect,
        core: Core::new(common.record_limit, common.token_lifetime),
    };
    spawn(ca, listener, Arc::new(oem), D::H2, settings, common.latency)
}

impl<V: Vendor> Mock<V> {
    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// The vendor state, for vendor-specific accessors.
    pub fn vendor(&self) -> &V {
        &self.vendor
    }

    /// Accepted pushes, in the order they were accepted.
    pub fn received(&self) -> Vec<V::Push> {
        self.vendor.recorder().accepted()
    }

    pub fn received_count(&self) -> usize {
        self.vendor.recorder().count()
    }

    /// Moves the kept pushes out (a load run's phase at a time, without copying them
    /// or keeping them all); [`Self::received_count`] goes on counting.
    pub fn take_received(&self) -> Vec<V::Push> {
        self.vendor.recorder().take()
    }

    /// True once at least `n` pushes were accepted; false when `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        self.vendor.recorder().wait_for(n, timeout).await
    }

    /// Scripts the answer for sends to `token`.
    pub fn set_token_verdict(&self, token: &str, v: V::Verdict) {
        self.vendor.set_verdict(token, v);
    }

    /// `(HTTP status, vendor code)` of every rejected request, in order.
    pub fn rejections(&self) -> Vec<(u16, String)> {
        self.vendor.recorder().rejections()
    }

    /// Access tokens handed out by the vendor's auth endpoint (or self-minted
    /// credentials first seen: VAPID JWTs, APNs provider tokens).
    pub fn tokens_issued(&self) -> usize {
        self.vendor.tokens_issued()
    }

    pub fn streams_seen(&self) -> u64 {
        self.server.stats().streams_seen()
    }

    /// Fault injection, switchable while the mock runs. Injected answers are the
    /// vendor's own error for the status (the bare status with `{}` for the OEMs, whose
    /// auth endpoint gets them too).
    pub fn faults(&self) -> &super::faults::Faults {
        self.server.faults()
    }

    pub fn connections_accepted(&self) -> u64 {
        self.server.stats().connections_accepted()
    }

    /// Stops accepting and sends GOAWAY on open connections; returns at once.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    /// Resolves once the listener is closed and every connection has ended.
    pub async fn closed(&self) {
        self.server.closed().await;
    }

    /// Like [`Mock::closed`], but not tied to the handle (so it can outlive it).
    pub fn closed_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.server.closed_owned()
    }
}

/// The path parameter of a `POST {prefix}{param}{suffix}` request; else the status
/// of the bare 404 or 405 to answer and the code recorded for it.
pub(crate) fn post_param<'r>(
    r: &'r Request,
    prefix: &str,
    suffix: &str,
) -> Result<&'r str, (StatusCode, &'static str)> {
    let param = r
        .head
        .uri
        .path()
        .strip_prefix(prefix)
        .and_then(|p| p.strip_suffix(suffix))
        .ok_or((StatusCode::NOT_FOUND, "not_found"))?;
    if r.head.method != http::Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "method"));
    }
    Ok(param)
}

/// `application/x-www-form-urlencoded` → map; `None` when malformed.
pub(crate) fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            urlencoding::decode(&s.replace('+', " "))
                .ok()
                .map(|c| c.into_owned())
        };
        out.insert(dec(k)?, dec(v)?);
    }
    Some(out)
}

/// The content type's media type, lowercased.
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

pub(crate) fn now_millis() -> i64 {
    server::unix_millis() as i64
}
