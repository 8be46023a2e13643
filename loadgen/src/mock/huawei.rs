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
use serde_json::{json, Value};

use super::push_kit::{self, App, Refusal};
use super::server::{self, Reply, Request, Service};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Mock};

pub const MAX_BODY: usize = 4096;

/// A running mock Huawei.
pub type MockHuawei = Mock<Huawei>;

#[derive(Debug)]
pub struct Huawei {
    pub app: App,
    core: Core,
}

vendor::oem_vendor!(Huawei);

/// Start a mock Huawei with fresh credentials on `127.0.0.1:0`.
pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockHuawei> {
    vendor::start_oem(ca, &common, true, |core| Huawei {
        app: App::random(false),
        core,
    })
}

impl Mock<Huawei> {
    /// `https://127.0.0.1:PORT/oauth2/v3/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/v3/token", self.url())
    }
}

fn answer(refusal: &Refusal) -> Reply {
    Reply::json(
        refusal.status,
        json!({"code": refusal.code, "msg": refusal.message, "requestId": format!("{}", server::unix_millis())})
            .to_string(),
    )
}

impl Service for Huawei {
    type Conn = ();

    fn handle(&self, _: &(), r: Request) -> Reply {
        if r.head.uri.path() == "/oauth2/v3/token" {
            return self.token(&r);
        }
        let path = ("/v1/", "/messages:send");
        push_kit::serve(&self.core, &r, path, |app| self.send(&r, app), answer)
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
        if !self.app.is_grant(&form) {
            self.core.recorder.reject(400, "invalid_client");
            return Reply::json(
                StatusCode::BAD_REQUEST,
                r#"{"error":1101,"sub_error":20152,"error_description":"invalid client"}"#,
            );
        }
        push_kit::grant(&self.core, "CF3")
    }

    fn send(&self, r: &Request, app: &str) -> Result<Reply, Refusal> {
        push_kit::check_bearer(&self.core, r)?;
        self.app.check(app)?;
        if vendor::media_type(&r.head.headers) != "application/json" {
            return Err(Refusal::invalid("content-type must be application/json"));
        }
        let v = push_kit::json_body(r, MAX_BODY)?;
        let m = &v["message"];
        let tokens: Vec<&str> = m["token"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if tokens.is_empty()
            || tokens.len() > 1000
            || m["token"].as_array().map(Vec::len) != Some(tokens.len())
        {
            return Err(Refusal::new(
                StatusCode::OK,
                "80300010",
                "The number of tokens in the message body exceeds the default value",
            ));
        }
        if !(m["data"].is_null() || m["data"].is_string()) {
            return Err(Refusal::structure(
                "Incorrect message structure: data must be a string",
            ));
        }
        let (title, body) = push_kit::shown(m, false)?;
        if let Some(ttl) = m["android"]["ttl"].as_str() {
            if !ttl.ends_with('s') || ttl.trim_end_matches('s').parse::<f64>().is_err() {
                return Err(Refusal::invalid("Some request parameters are invalid: ttl"));
            }
        }
        let token = tokens[0];
        push_kit::check_script(&self.core, token)?;
        let push = Accepted {
            token,
            title,
            content: body,
            payload: vendor::nested_payload(m["data"].as_str()),
        };
        self.core.accept(r, push, v.clone());
        let id = self.core.next_id();
        Ok(Reply::json(
            StatusCode::OK,
            json!({"code": "80000000", "msg": "Success", "requestId": format!("{}{id:06}", server::unix_millis())}).to_string(),
        ))
    }
}
