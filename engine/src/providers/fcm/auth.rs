//! FCM OAuth2: the service-account JWT-bearer flow.
//!
//! An RS256 assertion (`iss` = client_email, `scope` = firebase.messaging, `aud` =
//! token_uri, one hour) is exchanged at `token_uri` for an access token, cached like
//! every vendor's ([`token::Cache`]). The key never appears in errors.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::clock::unix_now_s;
use crate::providers::key_file::{self, KeyFile};
use crate::providers::token::{self, Access, Fresh};
use crate::transport::auto;

pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

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
#[derive(Clone)]
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
    pub fn load(path: &Path) -> Result<Self, key_file::Error> {
        let file = KeyFile::new(path, "service account file");
        let text = file.read()?;
        let invalid = |problem: &str| file.invalid(format!("a service-account key: {problem}"));
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

/// The access tokens of one service account: fetched from its `token_uri` and cached
/// ([`token::Cache`]: single-flight refresh five minutes before expiry or at half
/// life, a still valid token kept when a refresh fails).
pub struct TokenSource {
    account: ServiceAccount,
    /// One connection to the token URI, with the `[transport]` bounds.
    http: auto::Client,
    cache: token::Cache,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl TokenSource {
    pub fn new(account: ServiceAccount, http: auto::Client) -> Self {
        Self {
            account,
            http,
            // Google's tokens live an hour; the cache refreshes them well before.
            cache: token::Cache::new(u64::MAX),
        }
    }

    pub fn fetched(&self) -> u64 {
        self.cache.fetched()
    }

    /// The access token to send now, fetching one when needed.
    pub async fn get(&self) -> Result<Arc<Access>, token::Error> {
        self.cache.get(|| self.fetch()).await
    }

    /// FCM rejected `seen` as unauthenticated: drop it so the next call fetches anew.
    pub fn invalidate(&self, seen: &Access) {
        self.cache.invalidate(seen);
    }

    async fn fetch(&self) -> Result<Fresh, token::Error> {
        let uri = &self.account.token_uri;
        let request_err = |detail: &str| token::Error::Request {
            uri: uri.clone(),
            detail: detail.to_string(),
        };
        let assertion = self
            .account
            .assertion(unix_now_s())
            .map_err(|_| request_err("cannot sign the assertion"))?;
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
            .map_err(|e| request_err(&e.to_string()))?;
        let resp = self
            .http
            .send(req)
            .await
            .map_err(|source| token::Error::Unreachable {
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
            return Err(token::Error::Refused {
                uri: uri.clone(),
                error: format!("http {}: {error}", status.as_u16()),
            });
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| request_err("token response is not {access_token, expires_in}"))?;
        if HeaderValue::from_str(&t.access_token).is_err() {
            return Err(request_err("access token is not a valid header value"));
        }
        Ok(Fresh {
            value: t.access_token,
            lifetime_s: t.expires_in,
        })
    }
}
