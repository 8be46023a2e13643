//! Test harness: mocks + engine configured from a real TOML file + an API client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fanfare_loadgen::mock::apns::{self, Credentials, MockApns};
use fanfare_loadgen::mock::fcm::{self, MockFcm};
use fanfare_loadgen::mock::tls::TestCa;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub const TOPIC: &str = "com.example.chat";
pub const API_TOKEN: &str = "s3cret-api-token";

pub struct Harness {
    /// Holds the config, keys and data dir for the engine's lifetime.
    _dir: tempfile::TempDir,
    pub apns: MockApns,
    pub apns_sandbox: MockApns,
    pub fcm: MockFcm,
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
}

pub async fn start() -> Harness {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> Harness {
    try_start(opts).await.expect("harness starts")
}

async fn try_start(opts: Options) -> anyhow::Result<Harness> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::generate()?;
    let ca_file = ca.write_ca_file(dir.path())?;
    let creds = Credentials::generate()?;
    let key_file = creds.write_key_file(dir.path())?;
    let apns_cfg = apns::Config {
        topic: TOPIC.into(),
        ..apns::Config::default()
    };
    let apns = MockApns::start(&ca, &creds, apns_cfg.clone())?;
    let apns_sandbox = MockApns::start(&ca, &creds, apns_cfg)?;
    let fcm = MockFcm::start(&ca, fcm::Config::default())?;
    let sa_file = fcm.write_service_account(dir.path())?;
    let token_line = if opts.api_token {
        format!("token = \"{API_TOKEN}\"\n")
    } else {
        String::new()
    };
    let toml = format!(
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

[apns]
key_file = "{key}"
key_id = "{kid}"
team_id = "{team}"
topic = "{TOPIC}"
endpoint_production = "{prod}"
endpoint_sandbox = "{sandbox}"
connections = 2
ca_file = "{ca}"

[fcm]
service_account_file = "{sa}"
endpoint = "{fcm_url}"
connections = 2
ca_file = "{ca}"
{extra}
"#,
        data = dir.path().join("data").display(),
        key = key_file.display(),
        kid = creds.key_id,
        team = creds.team_id,
        prod = apns.url(),
        sandbox = apns_sandbox.url(),
        ca = ca_file.display(),
        sa = sa_file.display(),
        fcm_url = fcm.url(),
        extra = opts.extra,
    );
    let config_path: PathBuf = dir.path().join("fanfare.toml");
    std::fs::write(&config_path, toml)?;
    let config = fanfare::config::Config::load(Some(&config_path), Vec::new())?;
    let engine = fanfare::start(config).await.context("engine starts")?;
    let base = format!("http://{}", engine.local_addr());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Ok(Harness {
        _dir: dir,
        apns,
        apns_sandbox,
        fcm,
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

    pub async fn shutdown(mut self) {
        if let Some(e) = self.engine.take() {
            e.shutdown().await;
        }
    }
}
