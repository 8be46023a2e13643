//! Cluster-wide idempotency keys: a `message_id` or `call_id` is claimed by creating
//! the key `m.<sha256>` or `c.<sha256>` in the `fanfare_dedup` bucket (history 1, the
//! bucket's `max_age` is `messages.dedup_window_s`). Creating succeeds for exactly one
//! engine; the others find it there and answer "duplicate". The engine's local window
//! ([`crate::fanout::dedup`]) still answers repeats it saw itself without a round trip.
//! A claim whose request is refused afterwards is deleted again.

use async_nats::jetstream::kv;
use sha2::Digest;

use super::Error;

/// The namespace of a key, as in [`crate::fanout::dedup::Space`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Message,
    Call,
}

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
        match bucket.create(key(space, id), bytes::Bytes::new()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::Unavailable(e.to_string())),
        }
    }

    pub(super) async fn release(&self, space: Space, id: &str) {
        if let Some(bucket) = &self.bucket {
            if let Err(e) = bucket.delete(key(space, id)).await {
                tracing::debug!(error = %e, "cannot release a cluster-wide claim");
            }
        }
    }
}

/// The bucket key of `id`: ids may hold characters keys cannot, and their length is
/// bounded only by the id rules, so the key is a hash.
fn key(space: Space, id: &str) -> String {
    let prefix = match space {
        Space::Message => "m.",
        Space::Call => "c.",
    };
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
        let m = key(Space::Message, "a b/ü.*>");
        let c = key(Space::Call, "a b/ü.*>");
        assert_ne!(m, c);
        for k in [m, c] {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        }
    }
}
