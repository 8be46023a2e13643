//! Test harness: mocks + engine configured from a real TOML file + an API client.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fanfare::client::{
    request, BindRequest, Bound, Client, MessageAccepted, MessageAnswer, Protocol, PushConfig,
};
use fanfare_loadgen::mock::apns::MockApns;
use fanfare_loadgen::mock::fcm::MockFcm;
use fanfare_loadgen::mock::rig::{self, Rig};
use fanfare_loadgen::mock::vendor::{Mock, Vendor};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use fanfare_loadgen::mock::tls::TestCa;

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
    /// The typed client, with the token when `Options::api_token`.
    pub api: Client,
    /// The same engine without a token, for requests that bring their own.
    bare: Client,
    pub token: Option<String>,
    /// The engine's config file (rewrite it and reload to change the configuration).
    pub config_path: PathBuf,
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
    /// Further bundle ids the APNs mocks accept (apps of the same team).
    pub apns_other_topics: Vec<String>,
}

/// The Chinese OEM and Web Push mocks, started with `Options::vendors`.
pub use fanfare_loadgen::mock::rig::Vendors;
/// Package name the Xiaomi mock expects.
pub use fanfare_loadgen::mock::rig::PACKAGE;

/// A peer's own world: a test CA the engine trusts only through a `ca_file`, and the
/// temp directory that file (and any key files) lives in. A second vendor mock, an
/// https feedback receiver, a black hole speaking TLS.
pub struct Elsewhere {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub ca_file: PathBuf,
}

impl Elsewhere {
    pub fn new() -> Elsewhere {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::generate().expect("test CA");
        let ca_file = ca.write_ca_file(dir.path()).expect("CA file");
        Elsewhere { dir, ca, ca_file }
    }
}

pub async fn start() -> Harness {
    start_with(Options::default()).await
}

/// [`start`] with the Chinese OEM and Web Push mocks too (`Options::vendors`).
pub async fn start_with_vendors() -> Harness {
    start_with(Options {
        vendors: true,
        ..Options::default()
    })
    .await
}

/// [`start`] with the API's bearer token required (`Options::api_token`).
pub async fn start_with_token() -> Harness {
    start_with(Options {
        api_token: true,
        ..Options::default()
    })
    .await
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
            apns_other_topics: opts.apns_other_topics.clone(),
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
    let token = opts.api_token.then(|| API_TOKEN.to_string());
    let (api, bare) = clients(&base, token.as_deref());
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
        api,
        bare,
        token,
        config_path,
    })
}

/// The typed client of the engine at `base` (with `token`) and one without a token.
fn clients(base: &str, token: Option<&str>) -> (Client, Client) {
    let client = |token| {
        Client::builder(base)
            .protocol(Protocol::Http1)
            .token(token)
            .timeout(WAIT)
            .build()
    };
    (client(token), client(None))
}

/// The `202` answer to a message: its counts of recipients, offline ones, targets.
pub fn accepted(id: &str, recipients: usize, offline: usize, targets: usize) -> MessageAccepted {
    MessageAccepted {
        message_id: id.into(),
        muted: 0,
        offline_recipients: offline,
        recipients,
        targets,
        unconfigured: 0,
    }
}

pub const WAIT: Duration = Duration::from_secs(10);

/// Fast retries and a quick breaker (`Options::extra`), so fault tests take
/// milliseconds, not minutes.
pub const FAST_RETRIES: &str = r#"
[retry]
base_ms = 20
max_ms = 200
max_attempts = 50

[breaker]
failures = 3
open_ms = 100
max_open_ms = 400
"#;

/// Wait (bounded) until `mock` has received `n` pushes; a failure names `what` and
/// how many arrived.
pub async fn expect_pushes<V: Vendor>(mock: &Mock<V>, n: usize, what: &str) {
    let arrived = mock.wait_for(n, WAIT).await;
    assert!(arrived, "{what}: {} of {n} pushes", mock.received_count());
}

/// Assert an error answer: its status and its `error.code`.
#[track_caller]
pub fn assert_error((status, body): (StatusCode, Value), want: StatusCode, code: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want, Some(code)),
        "{body}"
    );
}

/// A token of `provider`'s shape derived from `seed`: 64 hex digits for APNs (alert
/// and VoIP), an FCM registration token, a Push Kit token (Huawei and Honor), a Xiaomi
/// regId (base64 text, 64 chars), a mainland OPPO registration id, a 23-character vivo
/// regId. Web Push tokens are subscriptions (`webpush.subscribe()`).
pub fn device_token(provider: &str, seed: u32) -> String {
    match provider {
        "apns" | "apns_voip" => format!("{seed:08x}{}", "ab".repeat(28)),
        "fcm" => format!("fcm{seed}:APA91b{}", "Xy_-".repeat(34)),
        "huawei" | "honor" => format!("IQAAAACy0{seed:08}{}", "kX_-".repeat(30)),
        "xiaomi" => format!("{seed:08}{}", "Ab+/".repeat(14)),
        "oppo" => format!("CN_{seed:08}{}", "ab12".repeat(6)),
        "vivo" => format!("{seed:08}{}", "7".repeat(15)),
        other => panic!("no device token shape for provider {other:?}"),
    }
}

/// `device_token("apns", seed)`, the token most tests bind.
pub fn apns_token(seed: u32) -> String {
    device_token("apns", seed)
}

/// `device_token("fcm", seed)`.
pub fn fcm_token(seed: u32) -> String {
    device_token("fcm", seed)
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

    /// A request as given (malformed ones included); `token` is sent as the bearer.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, _, v) = self.raw_full(method, path, body, token).await;
        (status, v)
    }

    async fn raw_full(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let raw = self
            .bare
            .send(req.body(Full::new(Bytes::from(body))).expect("request"))
            .await
            .expect("API answers");
        let v = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
        (raw.status, raw.headers, v)
    }

    /// POST `body` and also return the response headers.
    pub async fn post_full(&self, path: &str, body: Value) -> (StatusCode, http::HeaderMap, Value) {
        let body = body.to_string().into_bytes();
        self.raw_full(Method::POST, path, body, self.token.as_deref())
            .await
    }

    /// `GET path` as text (`/metrics`, or a JSON body whose field order matters),
    /// asserting `200 OK`.
    pub async fn get_text(&self, path: &str) -> String {
        let raw = self
            .api
            .request(Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path} answers: {e}"));
        assert_eq!(raw.status, StatusCode::OK, "GET {path}");
        String::from_utf8(raw.body.to_vec()).expect("the body is UTF-8")
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
    pub async fn bind(&self, push_id: &str, user: &str, provider: &str, token: &str) -> Bound {
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
    ) -> Bound {
        let req = BindRequest {
            environment: Some(env.into()),
            ..request::bind(user, provider, token)
        };
        let bound = self.api.bind(push_id, &req).await;
        bound.unwrap_or_else(|e| panic!("bind {push_id}: {e}"))
    }

    /// Bind `d<i>` to user `u<i>` with `device_token(provider, i)` for each `i` of `ids`.
    pub async fn bind_each(&self, ids: Range<u32>, provider: &str) {
        for i in ids {
            let token = device_token(provider, i);
            self.bind(&format!("d{i}"), &format!("u{i}"), provider, &token)
                .await;
        }
    }

    /// Add `members` to `group` (created if new) and assert success.
    pub async fn add_members<S: AsRef<str>>(&self, group: &str, members: &[S]) {
        self.update_members(group, "add", members).await;
    }

    /// Remove `members` from `group` and assert success.
    pub async fn remove_members<S: AsRef<str>>(&self, group: &str, members: &[S]) {
        self.update_members(group, "remove", members).await;
    }

    /// `POST /v1/groups/{group}/members` with `{change: members}`; asserts the `200`.
    async fn update_members<S: AsRef<str>>(&self, group: &str, change: &str, members: &[S]) {
        let members: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
        let path = format!("/v1/groups/{group}/members");
        let (s, v) = self.post(&path, json!({ change: members })).await;
        assert_eq!(s, StatusCode::OK, "{group} {change}: {v}");
    }

    pub async fn online(&self, user: &str, session: &str) {
        self.presence(user, session, true).await;
    }

    pub async fn offline(&self, user: &str, session: &str) {
        self.presence(user, session, false).await;
    }

    async fn presence(&self, user: &str, session: &str, online: bool) {
        let events = vec![request::session(user, session, online)];
        let applied = self.api.presence(&request::presence(events)).await;
        assert_eq!(applied.expect("presence is applied").applied, 1);
    }

    pub async fn stats(&self) -> Value {
        self.api.stats().await.expect("GET /v1/stats answers")
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

    /// Send a message with `push` (a `PushConfig` as JSON) and assert it is accepted.
    pub async fn send_message(
        &self,
        id: &str,
        sender: &str,
        kind: &str,
        to: &str,
        push: Value,
    ) -> MessageAccepted {
        let push: PushConfig = serde_json::from_value(push).expect("push is a PushConfig");
        let req = request::message(id, sender, kind, to, Some(push));
        match self.api.message(&req).await {
            Ok(MessageAnswer::Accepted(a)) => a,
            other => panic!("message {id}: {other:?}"),
        }
    }

    /// A peer message from `u0` to `to` (see `send_message`).
    pub async fn message_to(&self, id: &str, to: &str, push: Value) -> MessageAccepted {
        self.peer_message(id, "u0", to, push).await
    }

    /// A peer message from `sender` to `to` (see `send_message`).
    pub async fn peer_message(
        &self,
        id: &str,
        sender: &str,
        to: &str,
        push: Value,
    ) -> MessageAccepted {
        self.send_message(id, sender, "peer", to, push).await
    }

    /// A message from `sender` to `group` (see `send_message`).
    pub async fn group_message(
        &self,
        id: &str,
        sender: &str,
        group: &str,
        push: Value,
    ) -> MessageAccepted {
        self.send_message(id, sender, "group", group, push).await
    }

    /// `POST /v1/debug/push` of `push` to `push_id`: asserts the `200` and returns the
    /// verdict it reports.
    pub async fn debug_push(&self, push_id: &str, push: Value) -> Value {
        let body = json!({"push_id": push_id, "push": push});
        let (s, v) = self.post("/v1/debug/push", body).await;
        assert_eq!(s, StatusCode::OK, "debug push to {push_id}: {v}");
        v
    }

    /// Talk to `engine` from now on (an engine restarted on the same data).
    pub fn attach(&mut self, engine: fanfare::Running) {
        self.base = format!("http://{}", engine.local_addr());
        (self.api, self.bare) = clients(&self.base, self.token.as_deref());
        self.engine = Some(engine);
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
