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

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::push_kit::{self, App, Client, Grant, Refusal, Variant};
use super::server::{self, Reply, Request};
use super::vendor::{self, Core, Refused};

pub const MAX_BODY: usize = 4096;

/// Huawei's part of the Push Kit mock.
#[derive(Debug)]
pub enum Huawei {}

fn oauth_error(code: &'static str, body: &'static str) -> Refused {
    Refused::new(400, code, Reply::json(StatusCode::BAD_REQUEST, body))
}

#[allow(private_interfaces)]
impl Variant for Huawei {
    const GRANT: Grant = Grant::new("/oauth2/v3/token", "CF3", Client::App);
    const SEND_PATH: (&'static str, &'static str) = ("/v1/", "/messages:send");

    fn grant_form(r: &Request) -> Result<HashMap<String, String>, Refused> {
        let form = (r.head.method == Method::POST
            && vendor::media_type(&r.head.headers) == "application/x-www-form-urlencoded")
            .then(|| vendor::parse_form(&r.body))
            .flatten();
        form.ok_or_else(|| {
            oauth_error(
                "invalid_request",
                r#"{"error":1102,"sub_error":20001,"error_description":"invalid request"}"#,
            )
        })
    }

    fn bad_client() -> Refused {
        oauth_error(
            "invalid_client",
            r#"{"error":1101,"sub_error":20152,"error_description":"invalid client"}"#,
        )
    }

    fn answer(refusal: &Refusal) -> Reply {
        Reply::json(
            refusal.status,
            json!({"code": refusal.code, "msg": refusal.message, "requestId": format!("{}", server::unix_millis())})
                .to_string(),
        )
    }

    fn send(app: &App, core: &Core, r: &Request, app_id: &str) -> Result<Reply, Refusal> {
        push_kit::check_bearer(core, r)?;
        app.check(app_id)?;
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
        let shown = push_kit::shown(m, false)?;
        if let Some(ttl) = m["android"]["ttl"].as_str() {
            if !ttl.ends_with('s') || ttl.trim_end_matches('s').parse::<f64>().is_err() {
                return Err(Refusal::invalid("Some request parameters are invalid: ttl"));
            }
        }
        push_kit::accept(core, r, tokens[0], shown, m, &v)?;
        let id = core.next_id();
        Ok(Reply::json(
            StatusCode::OK,
            json!({"code": "80000000", "msg": "Success", "requestId": format!("{}{id:06}", server::unix_millis())}).to_string(),
        ))
    }
}
