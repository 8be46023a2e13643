//! Huawei answers → [`Verdict`]. Business results come as HTTP 200 with a *string*
//! `code`; HTTP 401 is an authentication failure and 503 is flow control.

use serde::Deserialize;

use crate::providers::{answer, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    code: String,
    #[serde(default)]
    msg: String,
    #[serde(default, rename = "requestId")]
    request_id: Option<String>,
}

pub fn classify(resp: &Response, token: &str, detail: bool) -> Verdict {
    let (status, body, after) = answer::read::<Body>(resp);
    let code = body.as_ref().map_or("", |b| b.code.as_str());
    let outcome = match (status, code) {
        (200, "80000000") => Outcome::Delivered,
        // Some tokens failed: `msg` is a JSON string listing `illegal_tokens`.
        (200, "80100000") if body.as_ref().is_some_and(|b| b.msg.contains(token)) => {
            Outcome::TokenDead(Cause::Unregistered)
        }
        (200, "80100000") => Outcome::Delivered,
        (_, "80300007") => Outcome::TokenDead(Cause::BadDeviceToken),
        (_, "80200001" | "80200003") | (401, _) => Outcome::retry(Cause::ProviderAuth, None),
        (_, "80300008") => Outcome::Rejected(Cause::PayloadTooLarge),
        (_, "80300002") => Outcome::Rejected(Cause::ProviderAuth),
        // Flow control gives no Retry-After.
        (503 | 429, _) | (_, "80100017") => Outcome::throttled(after),
        (_, "80600003" | "81000001") => Outcome::retry(Cause::ServerError, after),
        (s, _) if s >= 500 => Outcome::retry(Cause::ServerError, after),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    let code = (!code.is_empty()).then_some(&code as &dyn std::fmt::Display);
    Verdict::answered(status, outcome, code, detail, || {
        body.as_ref().and_then(|b| b.request_id.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::answer::response;

    fn resp(status: u16, body: &str) -> Response {
        response(status, None, body)
    }

    #[test]
    fn codes_map_to_outcomes() {
        let ok = classify(
            &resp(
                200,
                r#"{"code":"80000000","msg":"Success","requestId":"r1"}"#,
            ),
            "t",
            true,
        );
        assert_eq!(ok.outcome, Outcome::Delivered);
        assert_eq!(ok.vendor_id.as_deref(), Some("r1"));
        let dead = classify(
            &resp(
                200,
                r#"{"code":"80300007","msg":"All the tokens are invalid"}"#,
            ),
            "t",
            false,
        );
        assert_eq!(dead.outcome, Outcome::TokenDead(Cause::BadDeviceToken));
        let partial = classify(
            &resp(
                200,
                r#"{"code":"80100000","msg":"{\"success\":0,\"failure\":1,\"illegal_tokens\":[\"tok9\"]}"}"#,
            ),
            "tok9",
            false,
        );
        assert_eq!(partial.outcome, Outcome::TokenDead(Cause::Unregistered));
        let auth = classify(
            &resp(401, r#"{"code":"80200003","msg":"OAuth token expired"}"#),
            "t",
            false,
        );
        assert!(auth.outcome.refuses_auth());
        let flow = classify(&resp(503, ""), "t", false);
        assert!(matches!(
            flow.outcome,
            Outcome::Retry {
                cause: Cause::TooManyRequests,
                after: Some(_)
            }
        ));
    }
}
