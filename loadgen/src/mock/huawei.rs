//! Mock of Huawei Push Kit v1 and its OAuth endpoint (`VENDORS.md` §3.1), one server.
//!
//! - `POST /oauth2/v3/token`: `grant_type=client_credentials`, the app's `client_id`
//!   and `client_secret` → `{"access_token","expires_in","token_type":"Bearer"}`.
//! - `POST /v1/{appId}/messages:send`: bearer token (401 `80200001` unknown, `80200003`
//!   expired), app id (`80300002`), JSON body with `message.token` (1–1000 strings),
//!   `data` a string, `android.notification` title/body, ≤ 4096 bytes (`80300008`);
//!   then the scripted verdict: dead → `80300007`, rate limit → HTTP 503 (flow
//!   control), quota → HTTP 503 as well. Success `{"code":"80000000",..}`.
//!
//! Serves HTTP/2 and HTTP/1.1 (ALPN).

use http::{Method, StatusCode};
use rand::Rng as _;
use serde_json::{json, Value};

use super::server::{self, Reply, Request, Service};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Mock, Scripted};

pub const MAX_BODY: usize = 4096;

/// A running mock Huawei.
pub type MockHuawei = Mock<Huawei>;

#[derive(Debug)]
pub struct Huawei {
    pub app_id: String,
    pub client_secret: String,
    core: Core,
}

vendor::oem_vendor!(Huawei);

/// Start a mock Huawei with fresh credentials on `127.0.0.1:0`.
pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockHuawei> {
    let mut rng = rand::thread_rng();
    vendor::start_oem(ca, &common, true, |core| Huawei {
        app_id: rng.gen_range(100_000_000u64..999_999_999).to_string(),
        client_secret: hex::encode(rng.gen::<[u8; 32]>()),
        core,
    })
}

impl Mock<Huawei> {
    /// `https://127.0.0.1:PORT/oauth2/v3/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/v3/token", self.url())
    }
}

fn answer(status: StatusCode, code: &str, msg: &str) -> Reply {
    Reply::json(
        status,
        json!({"code": code, "msg": msg, "requestId": format!("{}", server::unix_millis())})
            .to_string(),
    )
}

impl Service for Huawei {
    type Conn = ();

    fn handle(&self, _: &(), r: Request) -> Reply {
        if r.head.uri.path() == "/oauth2/v3/token" {
            return self.token(&r);
        }
        let (reply, code) = self.send(&r);
        if let Some(code) = code {
            self.core.recorder.reject(reply.status.as_u16(), code);
        }
        reply
    }
}

impl Huawei {
    fn token(&self, r: &Request) -> Reply {
        let form = (r.head.method == Method::POST
            && vendor::media_type(&r.head.headers) == "application/x-www-form-urlencoded")
            .then(|| vendor::parse_form(&r.body))
            .flatten();
        let Some(form) = form else {
            self.core.recorder.reject(400, "invalid_request");
            return Reply::json(
                StatusCode::BAD_REQUEST,
                r#"{"error":1102,"sub_error":20001,"error_description":"invalid request"}"#,
            );
        };
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id") == Some(&self.app_id)
            && form.get("client_secret") == Some(&self.client_secret);
        if !ok {
            self.core.recorder.reject(400, "invalid_client");
            return Reply::json(
                StatusCode::BAD_REQUEST,
                r#"{"error":1101,"sub_error":20152,"error_description":"invalid client"}"#,
            );
        }
        let token = self.core.issue_token("CF3");
        Reply::json(
            StatusCode::OK,
            json!({"access_token": token, "expires_in": self.core.token_lifetime.as_secs(), "token_type": "Bearer"}).to_string(),
        )
    }

    fn send(&self, r: &Request) -> (Reply, Option<&'static str>) {
        let app = match vendor::post_param(r, "/v1/", "/messages:send") {
            Ok(app) => app,
            Err((status, code)) => return (Reply::empty(status), Some(code)),
        };
        match self.core.check_bearer(r) {
            Some(true) => {}
            Some(false) => {
                return (
                    answer(StatusCode::UNAUTHORIZED, "80200003", "OAuth token expired"),
                    Some("80200003"),
                )
            }
            _ => {
                return (
                    answer(
                        StatusCode::UNAUTHORIZED,
                        "80200001",
                        "Oauth Authentication error",
                    ),
                    Some("80200001"),
                )
            }
        }
        if app != self.app_id {
            return (
                answer(
                    StatusCode::OK,
                    "80300002",
                    "APP has no permission to send to these tokens",
                ),
                Some("80300002"),
            );
        }
        if vendor::media_type(&r.head.headers) != "application/json" {
            return (
                answer(
                    StatusCode::BAD_REQUEST,
                    "80100001",
                    "content-type must be application/json",
                ),
                Some("80100001"),
            );
        }
        if r.body_len > MAX_BODY {
            return (
                answer(
                    StatusCode::OK,
                    "80300008",
                    "The message body size exceeds the default value",
                ),
                Some("80300008"),
            );
        }
        let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
            return (
                answer(
                    StatusCode::BAD_REQUEST,
                    "80100003",
                    "Incorrect message structure",
                ),
                Some("80100003"),
            );
        };
        let m = &v["message"];
        let tokens: Vec<&str> = m["token"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if tokens.is_empty()
            || tokens.len() > 1000
            || m["token"].as_array().map(Vec::len) != Some(tokens.len())
        {
            return (
                answer(
                    StatusCode::OK,
                    "80300010",
                    "The number of tokens in the message body exceeds the default value",
                ),
                Some("80300010"),
            );
        }
        if !(m["data"].is_null() || m["data"].is_string()) {
            return (
                answer(
                    StatusCode::BAD_REQUEST,
                    "80100003",
                    "Incorrect message structure: data must be a string",
                ),
                Some("80100003"),
            );
        }
        // A data (transparent) message has no notification at all and carries `data`;
        // a notification message has title and body.
        let n = &m["android"]["notification"];
        let data_message = n.is_null() && m["notification"].is_null();
        let (title, body) = if data_message {
            if m["data"].as_str().is_none_or(str::is_empty) {
                return (
                    answer(
                        StatusCode::BAD_REQUEST,
                        "80100003",
                        "Incorrect message structure: a data message needs data",
                    ),
                    Some("80100003"),
                );
            }
            ("", "")
        } else {
            let (Some(title), Some(body)) = (n["title"].as_str(), n["body"].as_str()) else {
                return (
                    answer(
                        StatusCode::BAD_REQUEST,
                        "80100001",
                        "Some request parameters are invalid: notification title/body",
                    ),
                    Some("80100001"),
                );
            };
            (title, body)
        };
        if let Err(field) = check_push_kit_options(m) {
            return (
                answer(
                    StatusCode::BAD_REQUEST,
                    "80100001",
                    &format!("Some request parameters are invalid: {field}"),
                ),
                Some("80100001"),
            );
        }
        if let Some(ttl) = m["android"]["ttl"].as_str() {
            if !ttl.ends_with('s') || ttl.trim_end_matches('s').parse::<f64>().is_err() {
                return (
                    answer(
                        StatusCode::BAD_REQUEST,
                        "80100001",
                        "Some request parameters are invalid: ttl",
                    ),
                    Some("80100001"),
                );
            }
        }
        let token = tokens[0];
        match self.core.script(token) {
            Some(Scripted::Dead) => {
                return (
                    answer(StatusCode::OK, "80300007", "All the tokens are invalid"),
                    Some("80300007"),
                )
            }
            Some(Scripted::RateLimit) | Some(Scripted::Quota) => {
                return (
                    answer(StatusCode::SERVICE_UNAVAILABLE, "81000001", "flow control"),
                    Some("flow_control"),
                )
            }
            None => {}
        }
        let push = Accepted {
            token,
            title,
            content: body,
            payload: vendor::nested_payload(m["data"].as_str()),
        };
        self.core.accept(r, push, v.clone());
        let id = self.core.next_id();
        (
            Reply::json(
                StatusCode::OK,
                json!({"code": "80000000", "msg": "Success", "requestId": format!("{}{id:06}", server::unix_millis())}).to_string(),
            ),
            None,
        )
    }
}

/// The option fields of a Push Kit message (Huawei's names; Honor's camelCase ones
/// too): `android.urgency` `HIGH`|`NORMAL`, `android.collapse_key` an integer -1..100,
/// `notification.importance` `LOW`|`NORMAL`, `tag`/`sound`/`channel_id` strings,
/// `default_sound` a boolean, `badge` a class with `add_num` 1..=99 or `set_num`
/// 0..=99. `Err` names the bad field.
pub(crate) fn check_push_kit_options(m: &Value) -> Result<(), &'static str> {
    let a = &m["android"];
    if !a["urgency"].is_null() && !matches!(a["urgency"].as_str(), Some("HIGH" | "NORMAL")) {
        return Err("android.urgency");
    }
    if !a["collapse_key"].is_null()
        && !a["collapse_key"]
            .as_i64()
            .is_some_and(|k| (-1..=100).contains(&k))
    {
        return Err("android.collapse_key");
    }
    let n = &a["notification"];
    if !n["importance"].is_null() && !matches!(n["importance"].as_str(), Some("LOW" | "NORMAL")) {
        return Err("android.notification.importance");
    }
    for key in ["tag", "sound", "channel_id"] {
        if !n[key].is_null() && !n[key].is_string() {
            return Err("android.notification string field");
        }
    }
    // Push Kit's badge: the launcher class and a number to add (1..=99) or set (0..=99).
    let b = &n["badge"];
    if !b.is_null() {
        let num = |k: &str| b[k].as_u64();
        let ok = b["class"].as_str().is_some_and(|c| !c.is_empty())
            && match (num("add_num"), num("set_num")) {
                (Some(a), None) => (1..=99).contains(&a),
                (None, Some(s)) => s <= 99,
                _ => false,
            };
        if !ok {
            return Err("android.notification.badge");
        }
    }
    for key in ["default_sound", "defaultSound"] {
        if !n[key].is_null() && !n[key].is_boolean() {
            return Err("android.notification.default_sound");
        }
    }
    Ok(())
}
