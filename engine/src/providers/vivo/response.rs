//! vivo answers → [`Verdict`]: `{"result":n,"desc":..,"taskId":..}`; HTTP 500 with a
//! plain-text body on server failure.

use serde::Deserialize;
use serde_json::Value;

use crate::providers::{answer, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    result: i64,
    #[serde(default, rename = "taskId")]
    task_id: Option<String>,
    #[serde(default, rename = "invalidUser")]
    invalid_user: Value,
}

/// Quota codes: total sends (10070), group payloads (10252), broadcasts (10254).
pub const QUOTA_CODES: [i64; 3] = [10070, 10252, 10254];

pub fn classify(resp: &Response, regid: &str, auth_codes: &[i64], detail: bool) -> Verdict {
    let (status, body, after) = answer::read::<Body>(resp);
    let outcome = match (status, &body) {
        (200, Some(b)) if b.result == 0 => Outcome::Delivered,
        (_, Some(b)) if b.result == 10302 || b.invalid_user["userid"].as_str() == Some(regid) => {
            Outcome::TokenDead(Cause::BadDeviceToken)
        }
        (_, Some(b)) if QUOTA_CODES.contains(&b.result) => Outcome::quota_spent(),
        (_, Some(b)) if auth_codes.contains(&b.result) => Outcome::retry(Cause::ProviderAuth, None),
        (_, Some(b)) if b.result == 10094 => Outcome::Rejected(Cause::ProviderAuth),
        (s, _) if s >= 500 => Outcome::retry(Cause::ServerError, after),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    let code = body.as_ref().map(|b| &b.result as &dyn std::fmt::Display);
    Verdict::answered(status, outcome, code, detail, || {
        body.as_ref()?.task_id.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::answer::response;

    fn resp(body: &str) -> Response {
        response(200, None, body)
    }

    #[test]
    fn quota_is_pacing_not_death() {
        for code in QUOTA_CODES {
            let v = classify(
                &resp(&format!(r#"{{"result":{code},"desc":"x"}}"#)),
                "r",
                &[],
                false,
            );
            assert!(matches!(
                v.outcome,
                Outcome::Retry {
                    cause: Cause::QuotaExceeded,
                    after: Some(_)
                }
            ));
        }
        let v = classify(
            &resp(
                r#"{"result":10302,"desc":"regId不合法","invalidUser":{"status":1,"userid":"r"}}"#,
            ),
            "r",
            &[],
            false,
        );
        assert_eq!(v.outcome, Outcome::TokenDead(Cause::BadDeviceToken));
        let v = classify(
            &resp(r#"{"result":0,"desc":"ok","taskId":"7"}"#),
            "r",
            &[],
            true,
        );
        assert_eq!(v.vendor_id.as_deref(), Some("7"));
    }
}
