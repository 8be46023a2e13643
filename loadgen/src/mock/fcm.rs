//! Mock of FCM HTTP v1 (`VENDORS.md` §2) and the Google OAuth2 token endpoint it
//! needs, served by one server.
//!
//! - `POST /token`: the service-account JWT-bearer grant (§2.2). The assertion must
//!   be RS256-signed by the mock's service-account key, with `iss` = `client_email`,
//!   `aud` = the mock's token URI, an FCM scope and an `iat`/`exp` window of at most
//!   an hour. Answers an opaque `ya29.` access token that the send endpoint accepts
//!   until it expires, or an OAuth error (`invalid_grant`, ...).
//! - `POST /v1/projects/{project}/messages:send`: checks the bearer token, the
//!   project, and the message the way FCM does (one target, string-only `data`,
//!   reserved keys, `notification`, `android.priority`/`ttl`, size), then applies the
//!   scripted per-token verdict. Errors are `google.rpc.Status` bodies with the
//!   `FcmError` / `BadRequest` details clients look for (§2.5).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng as _;
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::faults::Injected;
use super::server::{self, Recorder, Reply, Request, Settings, Verdicts};
use super::tls::TestCa;
use super::vendor::{self, Mock, Throttles, Tokens, Vendor};

#[cfg(test)]
mod tests;

/// Scope that lets a token send FCM messages.
pub const SCOPE_FIREBASE_MESSAGING: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Broader scope the Admin SDKs request; also accepted.
pub const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// `grant_type` of the service-account flow.
const GRANT_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Longest `exp - iat` Google accepts in an assertion.
const MAX_ASSERTION_LIFETIME_S: i64 = 3600;
/// Allowed clock skew for assertion times.
const ASSERTION_SKEW_S: i64 = 60;
/// Message size limit for token targets, in serialized bytes.
const MAX_MESSAGE: usize = 4096;
/// Message size limit for topic and condition targets (§2.3).
const MAX_TOPIC_MESSAGE: usize = 2048;
/// Largest `android.ttl`: four weeks.
const MAX_TTL_S: f64 = 2_419_200.0;

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";
const INVALID_ARGUMENT_MESSAGE: &str = "Request contains an invalid argument.";
const UNAUTHENTICATED_MESSAGE: &str = "Request had invalid authentication credentials. \
     Expected OAuth 2 access token, login cookie or other valid authentication credential.";
const INVALID_TIMES: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and \
     in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
const INVALID_SIGNATURE: &str = "Invalid JWT Signature.";

/// Message fields FCM knows (REST snake_case names and their proto3 JSON
/// lowerCamel twins).
const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "token",
    "topic",
    "condition",
    "fid",
    "data",
    "notification",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "fcmOptions",
];
/// The `target` oneof.
const TARGETS: &[&str] = &["token", "topic", "condition", "fid"];

/// Mock FCM settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Firebase project the service account belongs to.
    pub project_id: String,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised per connection.
    pub max_concurrent_streams: u32,
    /// Delay added before every answer (token endpoint included).
    pub latency: Duration,
    /// `expires_in` of issued access tokens; they stop working after it.
    pub token_lifetime_s: u64,
    /// Accepted pushes (and rejections) kept for [`MockFcm::received`]; counting
    /// goes on past it. Lower it for long load runs to bound memory.
    pub record_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            project_id: "fanfare-test".to_owned(),
            max_concurrent_streams: 1000,
            latency: Duration::ZERO,
            token_lifetime_s: 3599,
            record_limit: usize::MAX,
        }
    }
}

/// A scripted answer for one registration token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FcmVerdict {
    /// 404 `NOT_FOUND`, errorCode `UNREGISTERED`.
    Unregistered,
    /// 403 `PERMISSION_DENIED`, errorCode `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// 400 `INVALID_ARGUMENT`, errorCode `INVALID_ARGUMENT` ("not a valid FCM
    /// registration token").
    InvalidArgument,
}

/// One message FCM accepted (not recorded for `validate_only` requests).
#[derive(Clone, Debug)]
pub struct FcmPush {
    /// The registration token; empty for topic, condition and fid targets (the target
    /// is then in `message`).
    pub token: String,
    /// The request's `message` object.
    pub message: Value,
    pub received_at: quanta::Instant,
}

/// A running mock FCM + OAuth2 token server. Dropping it stops the server.
pub type MockFcm = Mock<Fcm>;

impl Mock<Fcm> {
    /// Generates a service-account key (RSA-2048) and starts the mock on
    /// `127.0.0.1:0`. Must be called inside a Tokio runtime.
    pub fn start(ca: &TestCa, config: Config) -> anyhow::Result<MockFcm> {
        let private_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .context("generate service-account RSA key")?;
        let private_key_pem = private_key
            .to_pkcs8_pem(LineEnding::LF)
            .context("encode service-account key as PKCS#8")?
            .to_string();
        let public_key_pem = rsa::RsaPublicKey::from(&private_key)
            .to_public_key_pem(LineEnding::LF)
            .context("encode service-account public key")?;
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .context("load service-account public key")?;

        let mut rng = rand::thread_rng();
        let private_key_id = hex::encode(rng.gen::<[u8; 20]>());
        let client_id = format!("1{:020}", rng.gen_range(0..100_000_000_000_000_000_000u128));
        let listener = server::bind()?;
        let addr = listener.local_addr().context("mock FCM address")?;
        let fcm = Arc::new(Fcm {
            client_email: format!("fanfare@{}.iam.gserviceaccount.com", config.project_id),
            project_id: config.project_id,
            token_uri: format!("https://{addr}/token"),
            private_key_id,
            private_key_pem,
            client_id,
            key,
            tokens: Tokens::new(Duration::from_secs(config.token_lifetime_s)),
            verdicts: Verdicts::new(),
            recorder: Recorder::new(config.record_limit),
            next_message_id: AtomicU64::new(1),
            throttles: Throttles::new(false),
        });
        let settings = Settings {
            max_concurrent_streams: config.max_concurrent_streams,
            max_header_list_size: None,
            http1: false,
        };
        vendor::spawn(ca, listener, fcm, true, settings, config.latency)
    }

    /// `https://127.0.0.1:PORT/token`, the OAuth2 token URI.
    pub fn token_uri(&self) -> String {
        self.vendor().token_uri.clone()
    }

    pub fn project_id(&self) -> &str {
        &self.vendor().project_id
    }

    /// A Google service-account key file whose `token_uri` points at this mock.
    pub fn service_account_json(&self) -> String {
        let fcm = self.vendor();
        let key_file = json!({
            "type": "service_account",
            "project_id": fcm.project_id,
            "private_key_id": fcm.private_key_id,
            "private_key": fcm.private_key_pem,
            "client_email": fcm.client_email,
            "client_id": fcm.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": fcm.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                urlencoding::encode(&fcm.client_email)
            ),
            "universe_domain": "googleapis.com",
        });
        serde_json::to_string_pretty(&key_file).expect("a JSON value always serializes")
    }

    /// Writes [`MockFcm::service_account_json`] to `dir/service-account.json`.
    pub fn write_service_account(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("service-account.json");
        std::fs::write(&path, self.service_account_json())
            .with_context(|| format!("write service account to {}", path.display()))?;
        Ok(path)
    }

    /// The next `n` sends to `token` get 429 `RESOURCE_EXHAUSTED` / `QUOTA_EXCEEDED`
    /// with `Retry-After: retry_after_s`.
    pub fn set_token_throttle(&self, token: &str, n: u32, retry_after_s: u32) {
        self.vendor().throttles.set(token, n, retry_after_s);
    }
}

/// The FCM + OAuth validation behind a [`MockFcm`].
pub struct Fcm {
    project_id: String,
    client_email: String,
    token_uri: String,
    private_key_id: String,
    private_key_pem: String,
    client_id: String,
    key: DecodingKey,
    tokens: Tokens,
    verdicts: Verdicts<String, FcmVerdict>,
    recorder: Recorder<FcmPush>,
    next_message_id: AtomicU64,
    throttles: Throttles,
}

impl fmt::Debug for Fcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fcm")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl Vendor for Fcm {
    type Push = FcmPush;
    type Verdict = FcmVerdict;

    #[allow(private_interfaces)]
    fn recorder(&self) -> &Recorder<FcmPush> {
        &self.recorder
    }

    fn set_verdict(&self, token: &str, verdict: FcmVerdict) {
        self.verdicts.set(token.to_owned(), verdict);
    }

    fn tokens_issued(&self) -> usize {
        self.tokens.issued()
    }
}

impl server::Service for Fcm {
    type Conn = ();

    fn is_push(&self, head: &http::request::Parts) -> bool {
        head.uri.path() != "/token"
    }

    fn injected(&self, fault: Injected) -> Reply {
        match fault {
            Injected::Throttle { retry_after_s } => quota_exceeded(retry_after_s),
            Injected::Unavailable { retry_after_s } => Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            )
            .with_error_code("UNAVAILABLE")
            .with_retry_after(retry_after_s),
            Injected::Internal => Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
            )
            .with_error_code("INTERNAL"),
        }
        .reply()
    }

    fn handle(&self, _conn: &(), request: Request) -> Reply {
        if request.head.uri.path() == "/token" {
            return match self.grant(&request) {
                Ok(reply) => reply,
                Err(error) => {
                    self.recorder.reject(error.status.as_u16(), error.error);
                    error.reply()
                }
            };
        }
        match self.send(request) {
            Ok(reply) => reply,
            Err(failure) => {
                self.recorder.reject(
                    failure.code.as_u16(),
                    failure.error_code.unwrap_or(failure.status),
                );
                failure.reply()
            }
        }
    }
}

/// An OAuth2 token-endpoint error (RFC 6749 §5.2).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: Cow<'static, str>,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<Cow<'static, str>>) -> OAuthError {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    fn invalid_grant(description: impl Into<Cow<'static, str>>) -> OAuthError {
        OAuthError::new("invalid_grant", description)
    }

    fn reply(&self) -> Reply {
        let body = json!({"error": self.error, "error_description": self.description});
        Reply::json(self.status, body.to_string())
    }
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    aud: Option<Value>,
    scope: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
}

impl Fcm {
    /// `POST /token`: verifies the JWT-bearer assertion and issues an access token.
    fn grant(&self, request: &Request) -> Result<Reply, OAuthError> {
        if request.head.method != Method::POST {
            return Err(OAuthError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                error: "invalid_request",
                description: "The token endpoint only accepts POST.".into(),
            });
        }
        if vendor::media_type(&request.head.headers) != "application/x-www-form-urlencoded" {
            return Err(OAuthError::new(
                "invalid_request",
                "Content-Type must be application/x-www-form-urlencoded.",
            ));
        }
        let form = vendor::parse_form(&request.body)
            .ok_or_else(|| OAuthError::new("invalid_request", "Malformed form body."))?;
        let grant_type = form.get("grant_type").ok_or_else(|| {
            OAuthError::new("invalid_request", "Missing required parameter: grant_type")
        })?;
        if grant_type != GRANT_TYPE_JWT_BEARER {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("Invalid grant_type: {grant_type}"),
            ));
        }
        let assertion = form.get("assertion").ok_or_else(|| {
            OAuthError::new("invalid_request", "Missing required parameter: assertion")
        })?;
        self.verify_assertion(assertion)?;

        let token = self.tokens.issue("ya29.", 48);
        let body = json!({
            "access_token": token,
            "expires_in": self.tokens.lifetime.as_secs(),
            "token_type": "Bearer",
        });
        Ok(Reply::json(StatusCode::OK, body.to_string()).with_header(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
        ))
    }

    fn verify_assertion(&self, assertion: &str) -> Result<(), OAuthError> {
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| OAuthError::invalid_grant("Invalid JWT: Failed to parse the JWT."))?;
        if header.alg != Algorithm::RS256 {
            return Err(OAuthError::invalid_grant(INVALID_SIGNATURE));
        }
        if header
            .kid
            .as_deref()
            .is_some_and(|kid| kid != self.private_key_id)
        {
            return Err(OAuthError::invalid_grant(INVALID_SIGNATURE));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        // Claims are judged below, to answer Google's error for each.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &self.key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    OAuthError::invalid_grant(INVALID_SIGNATURE)
                }
                _ => OAuthError::invalid_grant("Invalid JWT: Failed to parse the JWT claims."),
            })?
            .claims;

        if claims.iss.as_deref() != Some(self.client_email.as_str()) {
            return Err(OAuthError::invalid_grant(
                "Invalid grant: account not found",
            ));
        }
        let audience_ok = match &claims.aud {
            Some(Value::String(aud)) => *aud == self.token_uri,
            Some(Value::Array(auds)) => auds.iter().any(|aud| *aud == *self.token_uri),
            _ => false,
        };
        if !audience_ok {
            return Err(OAuthError::invalid_grant(format!(
                "Invalid JWT: Failed audience check. The right audience is {}",
                self.token_uri
            )));
        }
        let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
            return Err(OAuthError::invalid_grant(INVALID_TIMES));
        };
        let now = server::unix_secs();
        if exp <= iat
            || exp - iat > MAX_ASSERTION_LIFETIME_S
            || exp < now - ASSERTION_SKEW_S
            || iat > now + ASSERTION_SKEW_S
        {
            return Err(OAuthError::invalid_grant(INVALID_TIMES));
        }
        let scope = claims.scope.unwrap_or_default();
        if scope.trim().is_empty() {
            return Err(OAuthError::new(
                "invalid_scope",
                "Empty or missing scope not allowed.",
            ));
        }
        if !scope
            .split_ascii_whitespace()
            .any(|s| s == SCOPE_FIREBASE_MESSAGING || s == SCOPE_CLOUD_PLATFORM)
        {
            return Err(OAuthError::new(
                "invalid_scope",
                format!(
                    "The scope must include {SCOPE_FIREBASE_MESSAGING} or {SCOPE_CLOUD_PLATFORM}."
                ),
            ));
        }
        Ok(())
    }

    /// `POST /v1/projects/{project}/messages:send`.
    fn send(&self, request: Request) -> Result<Reply, Failure> {
        let head = &request.head;
        let project = head
            .uri
            .path()
            .strip_prefix("/v1/projects/")
            .and_then(|rest| rest.strip_suffix("/messages:send"))
            .filter(|project| !project.is_empty() && !project.contains('/'))
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                )
            })?;
        if head.method != Method::POST {
            // Google's front end answers this before any API logic; the body keeps the
            // google.rpc.Status shape so clients parse every error the same way.
            return Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "Method Not Allowed",
            ));
        }
        let authorized = head
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(server::bearer_token)
            .is_some_and(|token| self.tokens.check(token) == Some(true));
        if !authorized {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                UNAUTHENTICATED_MESSAGE,
            ));
        }
        if project != self.project_id {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                format!(
                    "Permission 'cloudmessaging.messages.create' denied on resource \
                     '//cloudresourcemanager.googleapis.com/projects/{project}' \
                     (or it may not exist)."
                ),
            ));
        }

        let (message, validate_only) = parse_send_request(&request.body)?;
        let target = check_message(&message)?;
        let limit = if matches!(target, Target::Token(_)) {
            MAX_MESSAGE
        } else {
            MAX_TOPIC_MESSAGE
        };
        let size = serde_json::to_vec(&message).map_or(usize::MAX, |bytes| bytes.len());
        if size > limit {
            return Err(Failure::invalid(INVALID_ARGUMENT_MESSAGE));
        }
        let token = match target {
            Target::Token(token) => {
                if let Some(verdict) = self.verdicts.get(token) {
                    return Err(Failure::from(verdict));
                }
                if let Some(retry_after_s) = self.throttles.take(token) {
                    return Err(quota_exceeded(retry_after_s));
                }
                token.to_owned()
            }
            Target::Other => String::new(),
        };

        let name = if validate_only {
            format!("projects/{}/messages/fake_message_id", self.project_id)
        } else {
            let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
            self.recorder.accept(FcmPush {
                token,
                message: Value::Object(message),
                received_at: quanta::Instant::now(),
            });
            format!(
                "projects/{}/messages/0:{}%{id:016x}",
                self.project_id,
                server::unix_millis()
            )
        };
        Ok(Reply::json(
            StatusCode::OK,
            json!({ "name": name }).to_string(),
        ))
    }
}

/// 429 `RESOURCE_EXHAUSTED` with the `QUOTA_EXCEEDED` FcmError (§2.5).
fn quota_exceeded(retry_after_s: u32) -> Failure {
    Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' of service \
         'fcm.googleapis.com'.",
    )
    .with_error_code("QUOTA_EXCEEDED")
    .with_retry_after(retry_after_s)
}

/// Which `target` a message names.
enum Target<'m> {
    Token(&'m str),
    /// `topic`, `condition` or `fid`.
    Other,
}

/// Splits the request body into its `message` and `validate_only`.
fn parse_send_request(body: &[u8]) -> Result<(Map<String, Value>, bool), Failure> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|error| Failure::invalid(format!("Invalid JSON payload received. {error}")))?;
    let Value::Object(root) = root else {
        return Err(Failure::invalid(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    let mut message = None;
    let mut validate_only = false;
    for (key, value) in root {
        match key.as_str() {
            "message" => message = Some(value),
            "validate_only" | "validateOnly" => {
                validate_only = match value {
                    Value::Bool(flag) => flag,
                    Value::Null => false,
                    other => return Err(type_error(&key, "TYPE_BOOL", &other)),
                }
            }
            _ => {
                let description = format!(
                    "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
                );
                return Err(Failure::invalid(description.clone()).with_violation("", description));
            }
        }
    }
    match message {
        Some(Value::Object(message)) => Ok((message, validate_only)),
        Some(Value::Null) | None => {
            Err(Failure::invalid(INVALID_ARGUMENT_MESSAGE).with_error_code("INVALID_ARGUMENT"))
        }
        Some(other) => Err(type_error("message", "TYPE_MESSAGE", &other)),
    }
}

/// The message checks FCM makes before delivery.
fn check_message(message: &Map<String, Value>) -> Result<Target<'_>, Failure> {
    if let Some(unknown) = message
        .keys()
        .find(|k| !MESSAGE_FIELDS.contains(&k.as_str()))
    {
        let description = format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\" at 'message': Cannot find field."
        );
        return Err(Failure::invalid(description.clone()).with_violation("message", description));
    }

    let mut targets = TARGETS
        .iter()
        .filter(|field| message.get(**field).is_some_and(|v| !v.is_null()));
    let target_field = *targets.next().ok_or_else(|| {
        Failure::invalid("Recipient of the message is not set.").with_error_code("INVALID_ARGUMENT")
    })?;
    if let Some(second) = targets.next() {
        let description = format!(
            "Invalid value at 'message' (oneof), oneof field 'target' is already set. \
             Cannot set '{second}'"
        );
        return Err(Failure::invalid(description.clone()).with_violation("message", description));
    }
    let target_value = &message[target_field];
    let Value::String(target_text) = target_value else {
        return Err(type_error(
            &format!("message.{target_field}"),
            "TYPE_STRING",
            target_value,
        ));
    };
    let target = match target_field {
        "token" => {
            if target_text.is_empty()
                || target_text
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(invalid_registration_token());
            }
            Target::Token(target_text)
        }
        "topic" => {
            let topic = target_text.strip_prefix("/topics/").unwrap_or(target_text);
            let valid = !topic.is_empty()
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b));
            if !valid {
                return Err(Failure::invalid(INVALID_ARGUMENT_MESSAGE)
                    .with_error_code("INVALID_ARGUMENT")
                    .with_violation("message.topic", format!("Invalid topic name: {topic}")));
            }
            Target::Other
        }
        _ => {
            if target_text.trim().is_empty() {
                return Err(
                    Failure::invalid(INVALID_ARGUMENT_MESSAGE).with_error_code("INVALID_ARGUMENT")
                );
            }
            Target::Other
        }
    };

    if let Some(data) = message.get("data") {
        check_data("message.data", data)?;
    }
    if let Some(notification) = message.get("notification") {
        check_notification(notification)?;
    }
    if let Some(android) = message.get("android") {
        check_android(android)?;
    }
    for field in ["apns", "webpush", "fcm_options", "fcmOptions"] {
        if let Some(value) = message.get(field) {
            if !value.is_object() && !value.is_null() {
                return Err(type_error(
                    &format!("message.{field}"),
                    "TYPE_MESSAGE",
                    value,
                ));
            }
        }
    }
    if let Some(headers) = message.get("apns").and_then(|apns| apns.get("headers")) {
        check_string_map("message.apns.headers", headers)?;
    }
    if let Some(payload) = message.get("apns").and_then(|apns| apns.get("payload")) {
        if !payload.is_object() {
            return Err(type_error(
                "message.apns.payload",
                "type.googleapis.com/google.protobuf.Struct",
                payload,
            ));
        }
    }
    if let Some(webpush) = message.get("webpush") {
        for field in ["headers", "data"] {
            if let Some(map) = webpush.get(field) {
                check_string_map(&format!("message.webpush.{field}"), map)?;
            }
        }
    }
    Ok(target)
}

/// A `data` map: string values only, no reserved keys.
fn check_data(field: &str, data: &Value) -> Result<(), Failure> {
    check_string_map(field, data)?;
    if let Value::Object(map) = data {
        if let Some(key) = map.keys().find(|key| is_reserved_data_key(key)) {
            return Err(Failure::invalid(INVALID_ARGUMENT_MESSAGE)
                .with_error_code("INVALID_ARGUMENT")
                .with_violation(
                    format!("{field}[{key}]"),
                    format!("Invalid data payload key: {key} is reserved."),
                ));
        }
    }
    Ok(())
}

/// Keys FCM reserves for itself in `data` (§2.3).
fn is_reserved_data_key(key: &str) -> bool {
    key == "from"
        || key == "message_type"
        || key.starts_with("google.")
        || key.starts_with("gcm.notification.")
}

/// A `map<string, string>` field: an object whose values are all strings.
fn check_string_map(field: &str, value: &Value) -> Result<(), Failure> {
    match value {
        Value::Null => Ok(()),
        Value::Object(map) => match map.iter().find(|(_, v)| !v.is_string()) {
            None => Ok(()),
            Some((key, bad)) => Err(type_error(&format!("{field}[{key}]"), "TYPE_STRING", bad)),
        },
        other => Err(type_error(field, "TYPE_MESSAGE", other)),
    }
}

fn check_notification(notification: &Value) -> Result<(), Failure> {
    let Value::Object(fields) = notification else {
        return Err(type_error(
            "message.notification",
            "TYPE_MESSAGE",
            notification,
        ));
    };
    for (key, value) in fields {
        if !matches!(key.as_str(), "title" | "body" | "image") {
            let description = format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at 'message.notification': \
                 Cannot find field."
            );
            return Err(Failure::invalid(description.clone())
                .with_violation("message.notification", description));
        }
        if !value.is_string() && !value.is_null() {
            return Err(type_error(
                &format!("message.notification.{key}"),
                "TYPE_STRING",
                value,
            ));
        }
    }
    Ok(())
}

fn check_android(android: &Value) -> Result<(), Failure> {
    let Value::Object(fields) = android else {
        return Err(type_error("message.android", "TYPE_MESSAGE", android));
    };
    if let Some(priority) = fields.get("priority").filter(|v| !v.is_null()) {
        let known = priority
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case("normal") || p.eq_ignore_ascii_case("high"));
        if !known {
            return Err(type_error(
                "message.android.priority",
                "type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority",
                priority,
            ));
        }
    }
    if let Some(ttl) = fields.get("ttl").filter(|v| !v.is_null()) {
        let Some(seconds) = ttl.as_str().and_then(parse_duration) else {
            return Err(type_error(
                "message.android.ttl",
                "type.googleapis.com/google.protobuf.Duration",
                ttl,
            ));
        };
        if !(0.0..=MAX_TTL_S).contains(&seconds) {
            return Err(Failure::invalid(INVALID_ARGUMENT_MESSAGE)
                .with_error_code("INVALID_ARGUMENT")
                .with_violation(
                    "message.android.ttl",
                    "TTL must be between 0 and 2419200 seconds (4 weeks).",
                ));
        }
    }
    if let Some(data) = fields.get("data") {
        check_data("message.android.data", data)?;
    }
    if let Some(key) = fields.get("collapse_key").filter(|v| !v.is_null()) {
        if !key.is_string() {
            return Err(type_error(
                "message.android.collapse_key",
                "TYPE_STRING",
                key,
            ));
        }
    }
    if let Some(n) = fields.get("notification").filter(|v| !v.is_null()) {
        check_android_notification(n)?;
    }
    Ok(())
}

/// `android.notification`: the string fields Fanfare may send are strings, and
/// `notification_count` is a non-negative integer (an int32 in FCM's proto).
fn check_android_notification(n: &Value) -> Result<(), Failure> {
    let Value::Object(fields) = n else {
        return Err(type_error(
            "message.android.notification",
            "TYPE_MESSAGE",
            n,
        ));
    };
    for key in [
        "title",
        "body",
        "sound",
        "tag",
        "channel_id",
        "click_action",
        "icon",
        "color",
    ] {
        if let Some(v) = fields.get(key).filter(|v| !v.is_null() && !v.is_string()) {
            return Err(type_error(
                &format!("message.android.notification.{key}"),
                "TYPE_STRING",
                v,
            ));
        }
    }
    if let Some(count) = fields.get("notification_count").filter(|v| !v.is_null()) {
        if count.as_u64().is_none_or(|c| c > i32::MAX as u64) {
            return Err(type_error(
                "message.android.notification.notification_count",
                "TYPE_INT32",
                count,
            ));
        }
    }
    Ok(())
}

/// A protobuf JSON duration: decimal seconds with up to nine fractional digits and
/// an `s` suffix (`"90s"`, `"3.5s"`). Returns seconds.
fn parse_duration(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = digits(whole.strip_prefix('-').unwrap_or(whole));
    let fraction_ok = fraction.is_none_or(|f| digits(f) && f.len() <= 9);
    if !whole_ok || !fraction_ok {
        return None;
    }
    number.parse().ok()
}

/// "Not a valid registration token": 400 with FcmError `INVALID_ARGUMENT`.
fn invalid_registration_token() -> Failure {
    Failure::invalid("The registration token is not a valid FCM registration token")
        .with_error_code("INVALID_ARGUMENT")
}

/// proto3 JSON type error, with the field violation FCM reports.
fn type_error(field: &str, expected: &str, value: &Value) -> Failure {
    let description = format!("Invalid value at '{field}' ({expected}), {value}");
    Failure::invalid(description.clone()).with_violation(field, description)
}

/// An FCM error: a `google.rpc.Status` body with optional `FcmError` and
/// `BadRequest` details.
#[derive(Debug)]
struct Failure {
    code: StatusCode,
    /// `google.rpc.Code` name.
    status: &'static str,
    message: Cow<'static, str>,
    /// `FcmError.errorCode`, when the error carries that detail.
    error_code: Option<&'static str>,
    /// `BadRequest.fieldViolations` as (field, description).
    violations: Vec<(String, String)>,
    /// `Retry-After` seconds; 0 = none.
    retry_after_s: u32,
}

impl Failure {
    fn new(
        code: StatusCode,
        status: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Failure {
        Failure {
            code,
            status,
            message: message.into(),
            error_code: None,
            violations: Vec::new(),
            retry_after_s: 0,
        }
    }

    fn with_retry_after(mut self, seconds: u32) -> Failure {
        self.retry_after_s = seconds;
        self
    }

    fn invalid(message: impl Into<Cow<'static, str>>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    fn with_error_code(mut self, error_code: &'static str) -> Failure {
        self.error_code = Some(error_code);
        self
    }

    fn with_violation(
        mut self,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Failure {
        self.violations.push((field.into(), description.into()));
        self
    }

    fn reply(&self) -> Reply {
        let mut details = Vec::new();
        if let Some(error_code) = self.error_code {
            details.push(json!({"@type": FCM_ERROR_TYPE, "errorCode": error_code}));
        }
        if !self.violations.is_empty() {
            let violations: Vec<Value> = self
                .violations
                .iter()
                .map(|(field, description)| {
                    if field.is_empty() {
                        json!({ "description": description })
                    } else {
                        json!({ "field": field, "description": description })
                    }
                })
                .collect();
            details.push(json!({"@type": BAD_REQUEST_TYPE, "fieldViolations": violations}));
        }
        let mut error = json!({
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        });
        if !details.is_empty() {
            error["details"] = Value::Array(details);
        }
        let mut reply = Reply::json(self.code, json!({ "error": error }).to_string());
        if self.retry_after_s > 0 {
            reply = reply.with_header(
                http::header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_s),
            );
        }
        if self.code == StatusCode::UNAUTHORIZED {
            reply.with_header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            )
        } else {
            reply
        }
    }
}

impl From<FcmVerdict> for Failure {
    fn from(verdict: FcmVerdict) -> Failure {
        match verdict {
            FcmVerdict::Unregistered => Failure::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Requested entity was not found.",
            )
            .with_error_code("UNREGISTERED"),
            FcmVerdict::SenderIdMismatch => Failure::new(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "SenderId mismatch",
            )
            .with_error_code("SENDER_ID_MISMATCH"),
            FcmVerdict::InvalidArgument => invalid_registration_token(),
        }
    }
}
