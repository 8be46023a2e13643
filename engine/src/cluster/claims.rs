//! Cluster-wide idempotency keys: a `message_id` or `call_id` is claimed by creating
//! the key `m.<sha256>` or `c.<sha256>` in the `fanfare_dedup` bucket (history 1, the
//! bucket's `max_age` is `messages.dedup_window_s`). Creating succeeds for exactly one
//! engine; the others find it there and answer "duplicate". The engine's local window
//! ([`crate::fanout::dedup`]) still answers repeats it saw itself without a round trip.
//! A claim whose request is refused afterwards is deleted again.
//!
//! The same bucket holds call cancels no engine could apply yet (`x.<sha256>`, see
//! [`super::work_cancel`]): they live as long as the call's claim.

use async_nats::jetstream::kv;
use sha2::Digest;

use super::Error;
pub use crate::fanout::dedup::Space;

pub(super) struct Claims {
    /// `None` when dedup is off (`messages.dedup_window_s = 0`).
    bucket: Option<kv::Store>,
}

impl Claims {
    pub(super) fn new(bucket: Option<kv::Store>) -> Self {
        Self { bucket }
    }

    pub(super) async fn claim(&self, space: Space, id: &str) -> Result<bool, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(true);
        };
        create(bucket, key(prefix(space), id), bytes::Bytes::new()).await
    }

    /// Record a cancel of `call_id` (its encoded body) for the engine that pulls the
    /// call later: `Ok(false)` when one is recorded already, `Ok(true)` when dedup is
    /// off (nothing can be recorded).
    pub(super) async fn record_cancel(
        &self,
        call_id: &str,
        body: bytes::Bytes,
    ) -> Result<bool, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(true);
        };
        create(bucket, key(CANCEL, call_id), body).await
    }

    /// The recorded cancel of `call_id`, if any (`None` also when NATS cannot say).
    pub(super) async fn recorded_cancel(&self, call_id: &str) -> Option<bytes::Bytes> {
        let bucket = self.bucket.as_ref()?;
        match bucket.get(key(CANCEL, call_id)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read a recorded call cancel");
                None
            }
        }
    }

    /// Forget a recorded cancel whose call no engine knows.
    pub(super) async fn drop_cancel(&self, call_id: &str) {
        self.delete(key(CANCEL, call_id)).await
    }

    pub(super) async fn release(&self, space: Space, id: &str) {
        self.delete(key(prefix(space), id)).await
    }

    async fn delete(&self, key: String) {
        if let Some(bucket) = &self.bucket {
            if let Err(e) = bucket.delete(key).await {
                tracing::debug!(error = %e, "cannot delete a cluster-wide key");
            }
        }
    }
}

/// Create `key`: `Ok(true)` when this engine created it, `Ok(false)` when it exists.
async fn create(bucket: &kv::Store, key: String, value: bytes::Bytes) -> Result<bool, Error> {
    match bucket.create(key, value).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::Unavailable(e.to_string())),
    }
}

/// The key prefix of a recorded call cancel.
const CANCEL: &str = "x.";

/// The key prefix of a claim in `space`.
fn prefix(space: Space) -> &'static str {
    match space {
        Space::Message => "m.",
        Space::Call => "c.",
    }
}

/// The bucket key of `id`: ids may hold characters keys cannot, and their length is
/// bounded only by the id rules, so the key is a hash.
fn key(prefix: &str, id: &str) -> String {
    format!(
        "{prefix}{}",
        hex::encode(sha2::Sha256::digest(id.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_bucket_keys_in_separate_namespaces() {
        let m = key(prefix(Space::Message), "a b/ü.*>");
        let c = key(prefix(Space::Call), "a b/ü.*>");
        let x = key(CANCEL, "a b/ü.*>");
        assert!(m != c && c != x && m != x);
        for k in [m, c, x] {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        }
    }
}
