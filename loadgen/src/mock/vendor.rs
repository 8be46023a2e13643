//! What the Huawei, Honor, Xiaomi, OPPO, vivo and Web Push mocks share.
//!
//! - [`Mock`]: the running server plus its vendor, with the uniform test API
//!   (`received`, `wait_for`, `set_token_verdict`, `tokens_issued`, `rejections`).
//! - [`VendorPush`]: one accepted push, reduced to what every vendor carries (token,
//!   title, content, payload) plus the raw request for vendor-specific checks.
//! - [`TokenVerdict`]: scripted per-token answers — dead token, N rate-limited answers
//!   before success, or quota exhausted — each mock answers them with its vendor's
//!   real codes.
//! - [`Core`]: recorder, scripts and the issued access tokens (with expiry), so auth
//!   reuse can be proven by `tokens_issued`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderMap;
use parking_lot::RwLock;
use rand::Rng as _;
use serde_json::Value;

use super::server::{self, Faults, Recorder, Server, Service, Settings, Verdicts};
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

/// State every vendor mock has.
#[derive(Debug)]
pub(crate) struct Core {
    pub recorder: Recorder<VendorPush>,
    scripts: Verdicts<String, Script>,
    tokens: RwLock<HashMap<String, tokio::time::Instant>>,
    tokens_issued: AtomicUsize,
    pub token_lifetime: Duration,
}

impl Core {
    pub fn new(record_limit: usize, token_lifetime: Duration) -> Core {
        Core {
            recorder: Recorder::new(record_limit),
            scripts: Verdicts::new(),
            tokens: RwLock::new(HashMap::new()),
            tokens_issued: AtomicUsize::new(0),
            token_lifetime,
        }
    }

    /// Issue an opaque access token valid for `token_lifetime`.
    pub fn issue_token(&self, prefix: &str) -> String {
        let mut random = [0u8; 24];
        rand::thread_rng().fill(&mut random[..]);
        let token = format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let now = tokio::time::Instant::now();
        let mut tokens = self.tokens.write();
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(token.clone(), now + self.token_lifetime);
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// `Some(true)` valid, `Some(false)` known but expired, `None` unknown.
    pub fn check_token(&self, token: &str) -> Option<bool> {
        self.tokens
            .read()
            .get(token)
            .map(|expiry| *expiry > tokio::time::Instant::now())
    }

    pub fn tokens_issued(&self) -> usize {
        self.tokens_issued.load(Ordering::Relaxed)
    }

    /// Count a credential the client minted itself (a VAPID JWT seen first).
    pub fn count_token(&self) {
        self.tokens_issued.fetch_add(1, Ordering::Relaxed);
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

/// A vendor behind a [`Mock`].
pub trait Vendor: Send + Sync + 'static {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn core(&self) -> &Core;
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

/// Start `vendor` on `listener`. `h2`: offer HTTP/2 and HTTP/1.1 by ALPN; else
/// HTTP/1.1 only.
pub(crate) fn spawn<V>(
    ca: &TestCa,
    listener: std::net::TcpListener,
    vendor: Arc<V>,
    h2: bool,
    common: &Common,
) -> anyhow::Result<Mock<V>>
where
    V: Vendor + Service,
{
    let mut tls = (*ca.server_config()).clone();
    tls.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let server = Server::spawn(
        listener,
        Arc::new(tls),
        Settings {
            max_concurrent_streams: 1000,
            max_header_list_size: None,
            http1: true,
        },
        Faults::with_latency(common.latency),
        vendor.clone(),
    )?;
    Ok(Mock { server, vendor })
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

    pub fn received(&self) -> Vec<VendorPush> {
        self.vendor.core().recorder.accepted()
    }

    pub fn received_count(&self) -> usize {
        self.vendor.core().recorder.count()
    }

    /// True once at least `n` pushes were accepted; false when `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        self.vendor.core().recorder.wait_for(n, timeout).await
    }

    pub fn set_token_verdict(&self, token: &str, v: TokenVerdict) {
        self.vendor.core().set_script(token, v);
    }

    /// `(HTTP status, vendor code)` of every rejected request.
    pub fn rejections(&self) -> Vec<(u16, String)> {
        self.vendor.core().recorder.rejections()
    }

    /// Access tokens handed out by the vendor's auth endpoint.
    pub fn tokens_issued(&self) -> usize {
        self.vendor.core().tokens_issued()
    }

    pub fn streams_seen(&self) -> u64 {
        self.server.stats().streams_seen()
    }

    /// Fault injection, switchable while the mock runs. Injected answers are the bare
    /// status with `{}` and apply to the vendor's auth endpoint too.
    pub fn faults(&self) -> &super::faults::Faults {
        self.server.faults()
    }

    pub fn connections_accepted(&self) -> u64 {
        self.server.stats().connections_accepted()
    }

    pub fn shutdown(&self) {
        self.server.shutdown();
    }
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
