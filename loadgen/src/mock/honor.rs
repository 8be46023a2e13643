//! Mock of Honor Push (`VENDORS.md` §3.2, partly [U]), auth and send on one server.
//!
//! - `POST /auth/token`: client-credentials form → `{"access_token","expires_in",..}`.
//! - `POST /api/v1/{appId}/sendMessage`: bearer token, a `timestamp` header (ms,
//!   within ten minutes), JSON camelCase message (`token` array, `notification`,
//!   `android.notification.clickAction`, `data` string). Answers HTTP 200 with
//!   `{"code":200,"message":"success","data":{"sendResult":true,"requestId":..}}`;
//!   dead token → `80300007`, rate limit/quota → HTTP 503, auth → 401 `80200001`/`80200003`.
//!
//! Serves HTTP/2 and HTTP/1.1 (ALPN).

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::huawei::MAX_BODY;
use super::push_kit::{self, App, Refusal};
use super::server::{self, Reply, Request, Service};
use super::tls::TestCa;
use super::vendor::{self, Accepted, Common, Core, Mock};

pub type MockHonor = Mock<Honor>;

#[derive(Debug)]
pub struct Honor {
    pub app: App,
    core: Core,
}

vendor::oem_vendor!(Honor);

/// Start a mock Honor with fresh credentials on `127.0.0.1:0`.
pub fn start(ca: &TestCa, common: Common) -> anyhow::Result<MockHonor> {
    vendor::start_oem(ca, &common, true, |core| Honor {
        app: App::random(true),
        core,
    })
}

impl Mock<Honor> {
    pub fn token_endpoint(&self) -> String {
        format!("{}/auth/token", self.url())
    }
}

fn answer(refusal: &Refusal) -> Reply {
    let code: i64 = refusal
        .code
        .parse()
        .expect("Push Kit result codes are numbers");
    Reply::json(
        refusal.status,
        json!({"code": code, "message": refusal.message}).to_string(),
    )
}

impl Service for Honor {
    type Conn = ();

    fn handle(&self, _: &(), r: Request) -> Reply {
        if r.head.uri.path() == "/auth/token" {
            let form = (r.head.method == Method::POST)
                .then(|| vendor::parse_form(&r.body))
                .flatten();
            if !form.is_some_and(|f| self.app.is_grant(&f)) {
                self.core.recorder.reject(400, "invalid_client");
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
                );
            }
            return push_kit::grant(&self.core, "HN.");
        }
        let path = ("/api/v1/", "/sendMessage");
        push_kit::serve(&self.core, &r, path, |app| self.send(&r, app), answer)
    }
}

impl Honor {
    fn send(&self, r: &Request, app: &str) -> Result<Reply, Refusal> {
        push_kit::check_bearer(&self.core, r)?;
        let ts_ok = r
            .head
            .headers
            .get("timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|ts| (ts - vendor::now_millis()).abs() < 600_000);
        if !ts_ok {
            return Err(Refusal::invalid("timestamp header missing or skewed"));
        }
        self.app.check(app)?;
        let v = push_kit::json_body(r, MAX_BODY)?;
        let Some(token) = v["token"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        else {
            return Err(Refusal::new(
                StatusCode::OK,
                "80300010",
                "token count out of range",
            ));
        };
        let (title, body) = push_kit::shown(&v, true)?;
        push_kit::check_script(&self.core, token)?;
        let push = Accepted {
            token,
            title,
            content: body,
            payload: vendor::nested_payload(v["data"].as_str()),
        };
        self.core.accept(r, push, v.clone());
        Ok(Reply::json(
            StatusCode::OK,
            json!({"code": 200, "message": "success", "data": {"sendResult": true, "requestId": format!("{}", server::unix_millis())}}).to_string(),
        ))
    }
}
