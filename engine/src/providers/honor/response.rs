//! Honor answers → [`Verdict`]. `code` (a number, sometimes a string) is 200 on
//! success; the error families follow Huawei's ([U]).

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{answer, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    data: Value,
}

pub fn classify(resp: &Response, dead_codes: &[i64], detail: bool) -> Verdict {
    let (status, body, after) = answer::read::<Body>(resp);
    let code = body.as_ref().and_then(|b| match &b.code {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let outcome = match (status, code) {
        (200, Some(200 | 80000000)) => Outcome::Delivered,
        (_, Some(c)) if dead_codes.contains(&c) => Outcome::TokenDead(Cause::BadDeviceToken),
        (401, _) | (_, Some(80200001 | 80200003)) => Outcome::retry(Cause::ProviderAuth, None),
        (_, Some(80300008)) => Outcome::Rejected(Cause::PayloadTooLarge),
        (503 | 429, _) | (_, Some(80100017)) => Outcome::throttled(after),
        (s, _) if s >= 500 => Outcome::retry(Cause::ServerError, after),
        (_, Some(81000001 | 80600003)) => Outcome::retry(Cause::ServerError, after),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    let code = code.as_ref().map(|c| c as &dyn std::fmt::Display);
    Verdict::answered(status, outcome, code, detail, || {
        let id = body.as_ref()?.data.get("requestId")?;
        id.as_str().map(str::to_string)
    })
}
