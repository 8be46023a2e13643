//! A vendor's HTTP answer as the OEM response tables read it: the status, the JSON
//! body in the vendor's own shape (when it is one) and `Retry-After`.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::retry_after;
use crate::transport::Response;

/// `(status, body, Retry-After)` of one answer; the body is `None` when it is not a
/// `B` (an HTML error page from a proxy, an empty 503).
pub fn read<B: DeserializeOwned>(resp: &Response) -> (u16, Option<B>, Option<Duration>) {
    let body = serde_json::from_slice(&resp.body).ok();
    (resp.status.as_u16(), body, retry_after(&resp.headers))
}

/// A vendor answer for the response tables' unit tests.
#[cfg(test)]
pub(crate) fn response(status: u16, retry_after: Option<&str>, body: &str) -> Response {
    let mut headers = http::HeaderMap::new();
    if let Some(v) = retry_after {
        headers.insert(
            http::header::RETRY_AFTER,
            v.parse().expect("a header value"),
        );
    }
    Response {
        status: http::StatusCode::from_u16(status).expect("a status code"),
        headers,
        body: bytes::Bytes::from(body.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Body {
        code: i64,
    }

    #[test]
    fn a_json_answer_is_read_with_its_status_and_retry_after() {
        let (status, body, after) = read::<Body>(&response(429, Some("7"), r#"{"code":5}"#));
        assert_eq!(
            (status, body, after),
            (429, Some(Body { code: 5 }), Some(Duration::from_secs(7)))
        );
    }

    #[test]
    fn a_body_of_another_shape_is_none_and_the_status_still_counts() {
        let (status, body, after) = read::<Body>(&response(503, None, "<html>busy</html>"));
        assert_eq!((status, body, after), (503, None, None));
    }
}
