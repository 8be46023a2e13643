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
