//! A cached vendor access token with single-flight refresh (Huawei, Honor, OPPO, vivo).
//!
//! The token is fetched on first use, reused by every request, and refreshed before it
//! expires: at the earliest of five minutes before expiry, half its lifetime, or the
//! vendor's recommended refresh interval. Concurrent callers that find it stale share
//! one refresh (a `tokio` mutex; the fast path is one lock-free load). A failed refresh
//! keeps using a token that is still valid. A vendor answer that the token is invalid
//! drops it ([`Cache::invalidate`]) only if it is still the one that was rejected, so
//! a burst of such answers causes one refresh, not one per request.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::HeaderValue;

use crate::clock::unix_now_s;

/// A freshly fetched token.
pub struct Fresh {
    pub value: String,
    /// Seconds the vendor says it is valid.
    pub lifetime_s: u64,
}

/// A cached access token with the header values vendors send it in, built once per
/// fetch so a push clones them (a reference count) instead of formatting a header.
pub struct Access {
    value: Box<str>,
    bearer: HeaderValue,
    raw: HeaderValue,
}

impl Access {
    pub(crate) fn new(value: String) -> Self {
        // A token that is no header value (control characters) is sent as an empty
        // one: the vendor refuses it and the cache fetches another.
        let header = |s: String| {
            let mut h = HeaderValue::from_maybe_shared(bytes::Bytes::from(s))
                .unwrap_or(HeaderValue::from_static(""));
            h.set_sensitive(true);
            // Promote the buffer to a shared one now, not on the first push's clone.
            drop(h.clone());
            h
        };
        Self {
            bearer: header(format!("Bearer {value}")),
            raw: header(value.clone()),
            value: value.into(),
        }
    }

    /// The token itself (form fields, comparisons).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// `Bearer <token>`, for `Authorization`.
    pub fn bearer(&self) -> HeaderValue {
        self.bearer.clone()
    }

    /// `<token>`, for a vendor header of its own (vivo `authToken`).
    pub fn raw(&self) -> HeaderValue {
        self.raw.clone()
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(<redacted>)")
    }
}

struct Cached {
    value: Arc<Access>,
    refresh_at: u64,
    expires_at: u64,
}

pub struct Cache {
    cached: ArcSwapOption<Cached>,
    refresh: tokio::sync::Mutex<()>,
    fetched: AtomicU64,
    max_refresh_s: u64,
}

impl Cache {
    /// `max_refresh_s`: refresh at least this often even if the token lives longer.
    pub fn new(max_refresh_s: u64) -> Self {
        Self {
            cached: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
            fetched: AtomicU64::new(0),
            max_refresh_s: max_refresh_s.max(1),
        }
    }

    /// Tokens fetched from the vendor so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    fn current(&self, now: u64) -> Option<Arc<Access>> {
        self.cached
            .load()
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.value.clone())
    }

    /// The token to use now, calling `fetch` (once, for all waiting callers) when there
    /// is none or it is due for refresh.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Arc<Access>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh, E>>,
    {
        if let Some(v) = self.current(unix_now_s()) {
            return Ok(v);
        }
        let _g = self.refresh.lock().await;
        if let Some(v) = self.current(unix_now_s()) {
            return Ok(v);
        }
        let started = unix_now_s();
        match fetch().await {
            Ok(f) => {
                self.fetched.fetch_add(1, Ordering::Relaxed);
                let lifetime = f.lifetime_s.max(1);
                let refresh_in = lifetime
                    .saturating_sub(300)
                    .min(lifetime / 2)
                    .min(self.max_refresh_s)
                    .max(1);
                let value = Arc::new(Access::new(f.value));
                self.cached.store(Some(Arc::new(Cached {
                    value: value.clone(),
                    refresh_at: started + refresh_in,
                    expires_at: started + lifetime,
                })));
                Ok(value)
            }
            Err(e) => match &*self.cached.load() {
                Some(c) if unix_now_s() + 30 < c.expires_at => Ok(c.value.clone()),
                _ => Err(e),
            },
        }
    }

    /// The vendor rejected `seen`: forget it so the next call fetches a new one.
    pub fn invalidate(&self, seen: &Access) {
        let cur = self.cached.load();
        if cur
            .as_ref()
            .is_some_and(|c| c.value.value() == seen.value())
        {
            self.cached.store(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_invalidate_refetches() {
        let cache = Arc::new(Cache::new(3600));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(Fresh {
                            value: "t1".into(),
                            lifetime_s: 3600,
                        })
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().value(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.fetched(), 1);
        cache.invalidate(&Access::new("other".into()));
        let v = cache
            .get(|| async { Err::<Fresh, _>("must not fetch") })
            .await
            .unwrap();
        assert_eq!(v.value(), "t1");
        assert_eq!(v.bearer(), "Bearer t1");
        assert!(v.bearer().is_sensitive());
        cache.invalidate(&v);
        let v = cache
            .get(|| async {
                Ok::<_, ()>(Fresh {
                    value: "t2".into(),
                    lifetime_s: 60,
                })
            })
            .await
            .unwrap();
        assert_eq!(v.value(), "t2");
        assert_eq!(cache.fetched(), 2);
    }
}

/// Why a vendor access token could not be had. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("token request to {uri} failed: {detail}")]
    Request { uri: String, detail: String },
    /// No answer from the token endpoint (connect failure, timeout, reset).
    #[error("token endpoint {uri} did not answer")]
    Unreachable {
        uri: String,
        #[source]
        source: crate::transport::auto::Error,
    },
    #[error("token endpoint {uri} refused: {error}")]
    Refused { uri: String, error: String },
}

/// Post `body` (a `content_type` document) to the token endpoint `uri` and read its
/// JSON answer: the status and the body as `T` (an answer that is not `T` is a
/// refusal).
pub async fn exchange<T: serde::de::DeserializeOwned>(
    http: &crate::transport::auto::Client,
    uri: &str,
    content_type: &'static str,
    body: String,
) -> Result<(http::StatusCode, T), Error> {
    let req = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| Error::Request {
            uri: uri.to_string(),
            detail: e.to_string(),
        })?;
    let resp = http.send(req).await.map_err(|source| Error::Unreachable {
        uri: uri.to_string(),
        source,
    })?;
    let answer = serde_json::from_slice(&resp.body).map_err(|_| Error::Refused {
        uri: uri.to_string(),
        error: format!("http {} with an unreadable body", resp.status.as_u16()),
    })?;
    Ok((resp.status, answer))
}

/// The answer of a vendor's own sign exchange (OPPO's, vivo's) in common names: a
/// result code (0 = granted), its message and the token.
pub struct Signed {
    pub code: i64,
    pub message: String,
    pub token: Option<String>,
}

impl Signed {
    /// The token, valid `lifetime_s`, when the vendor granted one; else a refusal
    /// from `uri` quoting the code (as the vendor names it: `code_name`) and message.
    pub fn fresh(self, uri: &str, code_name: &str, lifetime_s: u64) -> Result<Fresh, Error> {
        match self.token {
            Some(value) if self.code == 0 && !value.is_empty() => Ok(Fresh { value, lifetime_s }),
            _ => Err(Error::Refused {
                uri: uri.to_string(),
                error: format!("{code_name} {}: {}", self.code, self.message),
            }),
        }
    }
}

/// The verdict for a push whose vendor access token could not be had: the push was
/// not sent either way. When the token endpoint did not answer, the vendor (or the
/// path to it) is down: the push is resent like any unprocessed one and the circuit
/// breaker counts it (the transport logs the outage once). When it refused, it is a
/// credentials problem ([`super::Verdict::auth_unavailable`]).
pub fn verdict(vendor: &'static str, e: &Error) -> super::Verdict {
    match e {
        Error::Unreachable { .. } => super::Verdict::failed(
            super::error_chain(e),
            super::Outcome::retry(super::Cause::Unsent, None),
        ),
        Error::Request { .. } | Error::Refused { .. } => {
            super::Verdict::auth_unavailable(vendor, e)
        }
    }
}

/// The OAuth 2.0 client-credentials grant (Huawei, Honor): a form POST answered with
/// `{"access_token", "expires_in"}`.
pub async fn client_credentials(
    http: &crate::transport::auto::Client,
    uri: &str,
    client_id: &str,
    client_secret: &crate::config::Secret,
) -> Result<Fresh, Error> {
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        urlencoding::encode(client_id),
        urlencoding::encode(client_secret.expose())
    );
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<u64>,
        error: Option<serde_json::Value>,
        error_description: Option<String>,
    }
    let (status, a): (_, Answer) =
        exchange(http, uri, "application/x-www-form-urlencoded", form).await?;
    match (status.is_success(), a.access_token) {
        (true, Some(t)) if !t.is_empty() => Ok(Fresh {
            value: t,
            lifetime_s: a.expires_in.unwrap_or(3600),
        }),
        _ => Err(Error::Refused {
            uri: uri.to_string(),
            error: format!(
                "http {}: {} {}",
                status.as_u16(),
                a.error.map(|e| e.to_string()).unwrap_or_default(),
                a.error_description.unwrap_or_default()
            ),
        }),
    }
}
