//! Honor answers → [`Verdict`]. `code` (a number, sometimes a string) is 200 on
//! success; the error families follow Huawei's ([U]).

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{retry_after, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    data: Value,
}

pub fn classify(resp: &Response, dead_codes: &[i64], detail: bool) -> Verdict {
    let status = resp.status.as_u16();
    let body: Option<Body> = serde_json::from_slice(&resp.body).ok();
    let code = body.as_ref().and_then(|b| match &b.code {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let after = retry_after(&resp.headers);
    let outcome = match (status, code) {
        (200, Some(200)) | (200, Some(80000000)) => Outcome::Delivered,
        (_, Some(c)) if dead_codes.contains(&c) => Outcome::TokenDead(Cause::BadDeviceToken),
        (401, _) | (_, Some(80200001)) | (_, Some(80200003)) => Outcome::Retry {
            after: None,
            cause: Cause::ProviderAuth,
        },
        (_, Some(80300008)) => Outcome::Rejected(Cause::PayloadTooLarge),
        (503, _) | (429, _) | (_, Some(80100017)) => Outcome::Retry {
            after: Some(after.unwrap_or(Duration::from_secs(1))),
            cause: Cause::TooManyRequests,
        },
        (s, _) if s >= 500 => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        (_, Some(81000001)) | (_, Some(80600003)) => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    Verdict {
        status: Some(status),
        reason: match (outcome, code) {
            (Outcome::Delivered, _) => None,
            (_, Some(c)) => Some(c.to_string()),
            (_, None) => Some(format!("http {status}")),
        },
        vendor_id: if detail {
            body.and_then(|b| {
                b.data
                    .get("requestId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        } else {
            None
        },
        outcome,
    }
}
