//! FCM responses → [`Verdict`], from the `google.rpc.Status` body and its `FcmError`
//! detail.

use serde::Deserialize;

use crate::providers::{retry_after, Cause, Outcome, Verdict};
use crate::transport::Response;

#[derive(Deserialize)]
struct Body {
    error: Status,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Sent {
    name: String,
}

const FCM_ERROR: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

pub fn classify(resp: &Response, detail: bool) -> Verdict {
    let status = resp.status.as_u16();
    if status == 200 {
        return Verdict {
            status: Some(200),
            reason: None,
            vendor_id: if detail {
                serde_json::from_slice::<Sent>(&resp.body)
                    .ok()
                    .map(|s| s.name)
            } else {
                None
            },
            outcome: Outcome::Delivered,
        };
    }
    let (code, message) = match serde_json::from_slice::<Body>(&resp.body) {
        Ok(b) => {
            let code = b
                .error
                .details
                .iter()
                .find(|d| d["@type"] == FCM_ERROR)
                .and_then(|d| d["errorCode"].as_str())
                .map(str::to_string)
                .unwrap_or(b.error.status);
            (code, b.error.message)
        }
        Err(_) => (String::new(), String::new()),
    };
    let after = retry_after(&resp.headers);
    let outcome = match (status, code.as_str()) {
        (_, "UNREGISTERED") => Outcome::TokenDead(Cause::Unregistered),
        (_, "SENDER_ID_MISMATCH") => Outcome::TokenDead(Cause::SenderIdMismatch),
        (400, _) if message.contains("not a valid FCM registration token") => {
            Outcome::TokenDead(Cause::BadDeviceToken)
        }
        (_, "QUOTA_EXCEEDED") | (429, _) => Outcome::Retry {
            after: Some(after.unwrap_or(std::time::Duration::from_secs(60))),
            cause: Cause::QuotaExceeded,
        },
        (_, "THIRD_PARTY_AUTH_ERROR") | (_, "APNS_AUTH_ERROR") => {
            Outcome::Rejected(Cause::ProviderAuth)
        }
        (400, _) | (_, "INVALID_ARGUMENT") => Outcome::Rejected(Cause::BadPayload),
        (401, _) => Outcome::Retry {
            after: None,
            cause: Cause::ProviderAuth,
        },
        (503, _) | (_, "UNAVAILABLE") => Outcome::Retry {
            after,
            cause: Cause::Unavailable,
        },
        (s, _) if s >= 500 => Outcome::Retry {
            after,
            cause: Cause::ServerError,
        },
        (403, _) => Outcome::Rejected(Cause::ProviderAuth),
        _ => Outcome::Rejected(Cause::BadRequest),
    };
    Verdict {
        status: Some(status),
        reason: Some(if code.is_empty() {
            format!("http {status}")
        } else {
            code
        }),
        vendor_id: None,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::providers::answer::response as resp;

    fn err(code: u16, status: &str, fcm: Option<&str>) -> String {
        let details = match fcm {
            Some(c) => format!(r#"[{{"@type":"{FCM_ERROR}","errorCode":"{c}"}}]"#),
            None => "[]".into(),
        };
        format!(
            r#"{{"error":{{"code":{code},"message":"m","status":"{status}","details":{details}}}}}"#
        )
    }

    #[test]
    fn fcm_error_codes_map_to_outcomes() {
        let o = |r: Response| classify(&r, false).outcome;
        let secs = |s| Some(Duration::from_secs(s));
        let retry = |after, cause| Outcome::Retry { after, cause };
        assert_eq!(o(resp(200, None, r#"{"name":"x"}"#)), Outcome::Delivered);
        // (HTTP status, Retry-After, error status, FCM errorCode, outcome)
        #[rustfmt::skip]
        let table = [
            (404, None, "NOT_FOUND", Some("UNREGISTERED"), Outcome::TokenDead(Cause::Unregistered)),
            (429, Some("7"), "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), retry(secs(7), Cause::QuotaExceeded)),
            // Without Retry-After, quota errors wait a minute (VENDORS.md §2.6).
            (429, None, "RESOURCE_EXHAUSTED", None, retry(secs(60), Cause::QuotaExceeded)),
            (503, Some("2"), "UNAVAILABLE", Some("UNAVAILABLE"), retry(secs(2), Cause::Unavailable)),
            (500, None, "INTERNAL", Some("INTERNAL"), retry(None, Cause::ServerError)),
            (401, None, "UNAUTHENTICATED", Some("THIRD_PARTY_AUTH_ERROR"), Outcome::Rejected(Cause::ProviderAuth)),
            (400, None, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), Outcome::Rejected(Cause::BadPayload)),
        ];
        for (code, retry_after, status, fcm, want) in table {
            let got = o(resp(code, retry_after, &err(code, status, fcm)));
            assert_eq!(got, want, "{code} {status} {fcm:?}");
        }
        // A 502 may be an HTML page from the front end.
        assert!(matches!(
            o(resp(502, None, "<html>bad gateway</html>")),
            Outcome::Retry { .. }
        ));
    }
}
