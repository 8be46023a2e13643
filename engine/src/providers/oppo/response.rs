//! OPPO answers → [`Verdict`]: `{"code":n,"message":..,"data":{"messageId":..}}`, HTTP
//! 200 for business errors. Common codes are [V]; the per-endpoint business codes
//! (10000–20000) that mean a dead registration id are configured ([U]).

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{answer, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    code: i64,
    #[serde(default)]
    data: Value,
}

pub fn classify(resp: &Response, dead_codes: &[i64], detail: bool) -> Verdict {
    let (status, body, after) = answer::read::<Body>(resp);
    let code = body.as_ref().map(|b| b.code);
    let outcome = match (status, code) {
        (200, Some(0)) => Outcome::Delivered,
        (_, Some(c)) if dead_codes.contains(&c) => Outcome::TokenDead(Cause::BadDeviceToken),
        (_, Some(11 | 29)) => Outcome::retry(Cause::ProviderAuth, None),
        (_, Some(-2 | 13 | 55)) => Outcome::throttled(after),
        (_, Some(33)) => Outcome::quota_spent(),
        (_, Some(-1)) => Outcome::retry(Cause::Unavailable, after),
        (_, Some(14 | 15 | 16 | 17 | 26 | 27 | 28 | 30)) => Outcome::Rejected(Cause::ProviderAuth),
        (s, _) if s >= 500 => Outcome::retry(Cause::ServerError, after),
        (429, _) => Outcome::throttled(after),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    let code = code.as_ref().map(|c| c as &dyn std::fmt::Display);
    Verdict::answered(status, outcome, code, detail, || {
        body.as_ref()?.data["messageId"]
            .as_str()
            .map(str::to_string)
    })
}
