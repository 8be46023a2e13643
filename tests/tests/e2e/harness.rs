//! Test harness: mocks + engine configured from a real TOML file + an API client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fanfare_loadgen::mock::apns::MockApns;
use fanfare_loadgen::mock::fcm::MockFcm;
use fanfare_loadgen::mock::rig::{self, Rig};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub use fanfare_loadgen::mock::rig::TOPIC;
pub const API_TOKEN: &str = "s3cret-api-token";

pub struct Harness {
    /// Holds the config, keys and data dir for the engine's lifetime.
    _dir: tempfile::TempDir,
    pub apns: MockApns,
    pub apns_sandbox: MockApns,
    pub fcm: MockFcm,
    /// The Chinese OEM and Web Push mocks, with `Options::vendors`.
    pub vendors: Option<Vendors>,
    pub engine: Option<fanfare::Running>,
    pub base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    pub token: Option<String>,
}

#[derive(Default)]
pub struct Options {
    /// Set `api.token` and send it with every request.
    pub api_token: bool,
    /// Extra TOML appended to the generated config.
    pub extra: String,
    /// Also start mock Huawei, Honor, Xiaomi, OPPO, vivo and Web Push and configure
    /// the engine for them.
    pub vendors: bool,
    /// Extra keys of the `[messages]` section (which the harness already writes).
    pub messages: String,
    /// `FANFARE_<SECTION>_<KEY>` overrides applied over the generated file, for keys
    /// the harness already writes (e.g. pointing one vendor endpoint elsewhere).
    pub env: Vec<(String, String)>,
}

/// The Chinese OEM and Web Push mocks, started with `Options::vendors`.
pub use fanfare_loadgen::mock::rig::Vendors;
/// Package name the Xiaomi mock expects.
pub use fanfare_loadgen::mock::rig::PACKAGE;

pub async fn start() -> Harness {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> Harness {
    try_start(opts).await.expect("harness starts")
}

async fn try_start(opts: Options) -> anyhow::Result<Harness> {
    let dir = tempfile::tempdir()?;
    let rig = Rig::start(
        dir.path(),
        &rig::Options {
            apns_sandbox: true,
            vendors: opts.vendors,
            connections: Some(2),
            ..rig::Options::default()
        },
    )?;
    let token_line = if opts.api_token {
        format!("token = \"{API_TOKEN}\"\n")
    } else {
        String::new()
    };
    let ours = format!(
        r#"
[api]
listen = "127.0.0.1:0"
max_body_bytes = 65536
{token_line}
[storage]
dir = "{data}"
durability = "none"

[messages]
dedup_window_s = 600
{messages}
{extra}
"#,
        data = dir.path().join("data").display(),
        extra = opts.extra,
        messages = opts.messages,
    );
    let config_path: PathBuf = dir.path().join("fanfare.toml");
    rig.write_engine_config_toml(&config_path, &ours)?;
    let config = fanfare::config::Config::load(Some(&config_path), opts.env)?;
    let engine = fanfare::start(config).await.context("engine starts")?;
    let base = format!("http://{}", engine.local_addr());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Ok(Harness {
        _dir: dir,
        apns: rig.apns,
        apns_sandbox: rig
            .apns_sandbox
            .expect("the harness starts an APNs sandbox mock"),
        fcm: rig.fcm.expect("the harness starts mock FCM"),
        vendors: rig.vendors,
        engine: Some(engine),
        base,
        http: Client::builder(TokioExecutor::new()).build(connector),
        token: opts.api_token.then(|| API_TOKEN.to_string()),
    })
}

pub const WAIT: Duration = Duration::from_secs(10);

/// A 64-hex-digit APNs token derived from `seed`.
pub fn apns_token(seed: u32) -> String {
    format!("{seed:08x}{}", "ab".repeat(28))
}

/// A Huawei/Honor Push Kit token derived from `seed`.
pub fn huawei_token(seed: u32) -> String {
    format!("IQAAAACy0{seed:08}{}", "kX_-".repeat(30))
}

/// A Xiaomi regId (base64 text, 64 chars) derived from `seed`.
pub fn xiaomi_token(seed: u32) -> String {
    format!("{seed:08}{}", "Ab+/".repeat(14))
}

/// A mainland OPPO registration id derived from `seed`.
pub fn oppo_token(seed: u32) -> String {
    format!("CN_{seed:08}{}", "ab12".repeat(6))
}

/// A 23-character vivo regId derived from `seed`.
pub fn vivo_token(seed: u32) -> String {
    format!("{seed:08}{}", "7".repeat(15))
}

/// An FCM-looking registration token derived from `seed`.
pub fn fcm_token(seed: u32) -> String {
    format!("fcm{seed}:APA91b{}", "Xy_-".repeat(34))
}

impl Harness {
    /// Send a request; returns status and parsed JSON body (Null if not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let raw = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, raw, self.token.as_deref()).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .http
            .request(req.body(Full::new(Bytes::from(body))).expect("request"))
            .await
            .expect("API answers");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// POST `body` and also return the response headers.
    pub async fn post_full(&self, path: &str, body: Value) -> (StatusCode, http::HeaderMap, Value) {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{}", self.base, path))
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .http
            .request(
                req.body(Full::new(Bytes::from(body.to_string())))
                    .expect("request"),
            )
            .await
            .expect("API answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Bind `push_id` and assert success.
    pub async fn bind(&self, push_id: &str, user: &str, provider: &str, token: &str) -> Value {
        self.bind_env(push_id, user, provider, token, "production")
            .await
    }

    pub async fn bind_env(
        &self,
        push_id: &str,
        user: &str,
        provider: &str,
        token: &str,
        env: &str,
    ) -> Value {
        let (s, v) = self
            .put(
                &format!("/v1/push-ids/{push_id}"),
                serde_json::json!({"user_id": user, "provider": provider, "token": token, "environment": env}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "bind {push_id}: {v}");
        v
    }

    pub async fn online(&self, user: &str, session: &str) {
        let (s, v) = self
            .post(
                "/v1/presence",
                serde_json::json!({"events": [{"user_id": user, "session_id": session, "online": true}]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    pub async fn stats(&self) -> Value {
        let (s, v) = self.get("/v1/stats").await;
        assert_eq!(s, StatusCode::OK);
        v
    }

    /// Wait until `f(stats)` holds (engine-side effects that follow a vendor answer).
    pub async fn wait_stats(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats().await;
            if f(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn send_message(
        &self,
        id: &str,
        sender: &str,
        kind: &str,
        to: &str,
        push: Value,
    ) -> Value {
        let (s, v) = self
            .post(
                "/v1/messages",
                serde_json::json!({"message_id": id, "sender_id": sender, "conversation_type": kind,
                                   "conversation_id": to, "push": push}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "message {id}: {v}");
        v
    }

    /// The vendor mocks (panics unless started with `Options::vendors`).
    pub fn v(&self) -> &Vendors {
        self.vendors.as_ref().expect("harness started with vendors")
    }

    pub async fn shutdown(mut self) {
        if let Some(e) = self.engine.take() {
            e.shutdown().await;
        }
    }
}
