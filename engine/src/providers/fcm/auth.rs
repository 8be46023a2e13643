//! FCM OAuth2: the service-account JWT-bearer flow.
//!
//! An RS256 assertion (`iss` = client_email, `scope` = firebase.messaging, `aud` =
//! token_uri, one hour) is exchanged at `token_uri` for an access token, which is
//! cached and refreshed five minutes before it expires (or at half its life if that is
//! sooner). Concurrent callers share one refresh. The key never appears in errors.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::clock::unix_now_s;

pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read service account file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("service account file {path} is not a service-account key: {problem}")]
    Invalid { path: String, problem: String },
    #[error("token request to {uri} failed: {detail}")]
    Request { uri: String, detail: String },
    /// No answer from the token endpoint (connect failure, timeout, reset).
    #[error("token endpoint {uri} did not answer")]
    Unreachable {
        uri: String,
        #[source]
        source: crate::transport::auto::Error,
    },
    #[error("token endpoint {uri} answered {status}: {error}")]
    Refused {
        uri: String,
        status: u16,
        error: String,
    },
    #[error("tls setup")]
    Tls(#[from] crate::transport::tls::Error),
}

#[derive(Deserialize)]
struct AccountFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    project_id: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// The parts of a service-account key file FCM needs.
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub token_uri: String,
    key_id: Option<String>,
    key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccount {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |problem: &str| Error::Invalid {
            path: shown.clone(),
            problem: problem.to_string(),
        };
        // serde_json's message could quote file content (the key): don't pass it on.
        let f: AccountFile =
            serde_json::from_slice(&text).map_err(|_| invalid("not a JSON object of strings"))?;
        if let Some(kind) = &f.kind {
            if kind != "service_account" {
                return Err(invalid("\"type\" is not \"service_account\""));
            }
        }
        let need = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| invalid(&format!("\"{name}\" is missing")))
        };
        let project_id = need(f.project_id, "project_id")?;
        let client_email = need(f.client_email, "client_email")?;
        let token_uri = need(f.token_uri, "token_uri")?;
        let pem = need(f.private_key, "private_key")?;
        if token_uri
            .parse::<http::Uri>()
            .map(|u| u.host().is_none())
            .unwrap_or(true)
        {
            return Err(invalid("\"token_uri\" is not an absolute URL"));
        }
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| invalid("\"private_key\" is not a PEM RSA private key"))?;
        Ok(Self {
            project_id,
            client_email,
            token_uri,
            key_id: f.private_key_id,
            key,
        })
    }

    fn assertion(&self, now: u64) -> Result<String, jsonwebtoken::errors::Error> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(
            &header,
            &Claims {
                iss: &self.client_email,
                scope: SCOPE,
                aud: &self.token_uri,
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )
    }
}

struct Cached {
    header: HeaderValue,
    refresh_at: u64,
    expires_at: u64,
}

pub struct TokenSource {
    account: ServiceAccount,
    /// One connection to the token URI, with the `[transport]` bounds.
    http: crate::transport::auto::Client,
    cached: ArcSwapOption<Cached>,
    refresh: tokio::sync::Mutex<()>,
    fetched: AtomicU64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl TokenSource {
    pub fn new(
        account: ServiceAccount,
        ca_file: Option<&Path>,
        transport: &crate::config::Transport,
    ) -> Result<Self, Error> {
        let http = crate::transport::auto::Client::new(
            &account.token_uri,
            ca_file,
            &crate::transport::pool::Options::from_config(1, transport),
        )?;
        Ok(Self {
            account,
            http,
            cached: ArcSwapOption::empty(),
            refresh: tokio::sync::Mutex::new(()),
            fetched: AtomicU64::new(0),
        })
    }

    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The `authorization` value to send now, fetching a token when needed.
    pub async fn header(&self) -> Result<HeaderValue, Error> {
        let now = unix_now_s();
        if let Some(c) = &*self.cached.load() {
            if now < c.refresh_at {
                return Ok(c.header.clone());
            }
        }
        let _g = self.refresh.lock().await;
        if let Some(c) = &*self.cached.load() {
            if now < c.refresh_at {
                return Ok(c.header.clone());
            }
        }
        match self.fetch(now).await {
            Ok(c) => {
                let h = c.header.clone();
                self.cached.store(Some(Arc::new(c)));
                Ok(h)
            }
            Err(e) => match &*self.cached.load() {
                // A failed refresh keeps using a token that is still valid.
                Some(c) if unix_now_s() + 30 < c.expires_at => Ok(c.header.clone()),
                _ => Err(e),
            },
        }
    }

    /// FCM rejected `seen` as unauthenticated: drop it so the next call fetches anew.
    pub fn invalidate(&self, seen: &HeaderValue) {
        let cur = self.cached.load();
        if cur.as_ref().is_some_and(|c| c.header == *seen) {
            self.cached.store(None);
        }
    }

    async fn fetch(&self, now: u64) -> Result<Cached, Error> {
        let uri = &self.account.token_uri;
        let request_err = |detail: String| Error::Request {
            uri: uri.clone(),
            detail,
        };
        let assertion = self
            .account
            .assertion(now)
            .map_err(|_| request_err("cannot sign the assertion".into()))?;
        let form = format!(
            "grant_type={}&assertion={}",
            urlencoding::encode("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            assertion
        );
        let req = http::Request::post(uri.as_str())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| request_err(e.to_string()))?;
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|source| Error::Unreachable {
                uri: uri.clone(),
                source,
            })?;
        let (status, body) = (resp.status, resp.body);
        if !status.is_success() {
            #[derive(Deserialize)]
            struct OauthError {
                error: String,
            }
            let error = serde_json::from_slice::<OauthError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| "unreadable error body".into());
            return Err(Error::Refused {
                uri: uri.clone(),
                status: status.as_u16(),
                error,
            });
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| request_err("token response is not {access_token, expires_in}".into()))?;
        let header = HeaderValue::from_str(&format!("Bearer {}", t.access_token))
            .map_err(|_| request_err("access token is not a valid header value".into()))?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let lifetime = t.expires_in.max(1);
        let refresh_in = lifetime.saturating_sub(300).min(lifetime / 2).max(1);
        Ok(Cached {
            header,
            refresh_at: now + refresh_in,
            expires_at: now + lifetime,
        })
    }
}
