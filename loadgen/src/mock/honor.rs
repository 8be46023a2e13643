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

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::huawei::MAX_BODY;
use super::push_kit::{self, App, Client, Grant, Refusal, Variant};
use super::server::{self, Reply, Request};
use super::vendor::{self, Core, Refused};

/// Honor's part of the Push Kit mock.
#[derive(Debug)]
pub enum Honor {}

#[allow(private_interfaces)]
impl Variant for Honor {
    const GRANT: Grant = Grant::new("/auth/token", "HN.", Client::Own);
    const SEND_PATH: (&'static str, &'static str) = ("/api/v1/", "/sendMessage");

    fn grant_form(r: &Request) -> Result<HashMap<String, String>, Refused> {
        (r.head.method == Method::POST)
            .then(|| vendor::parse_form(&r.body))
            .flatten()
            .ok_or_else(Honor::bad_client)
    }

    fn bad_client() -> Refused {
        let body =
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#;
        Refused::new(
            400,
            "invalid_client",
            Reply::json(StatusCode::BAD_REQUEST, body),
        )
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

    fn send(app: &App, core: &Core, r: &Request, app_id: &str) -> Result<Reply, Refusal> {
        push_kit::check_bearer(core, r)?;
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
        app.check(app_id)?;
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
        let shown = push_kit::shown(&v, true)?;
        push_kit::accept(core, r, token, shown, &v, &v)?;
        Ok(Reply::json(
            StatusCode::OK,
            json!({"code": 200, "message": "success", "data": {"sendResult": true, "requestId": format!("{}", server::unix_millis())}}).to_string(),
        ))
    }
}
