//! What the dispatcher does with a vendor's verdict: count it, unbind a dead token,
//! log the first rejection of each cause, and report dead tokens and permanent
//! rejections to the IM server's feedback webhook ([`crate::feedback`]) with one
//! non-blocking try-push (a full feedback queue never slows delivery).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Ctx, Vendors};
use crate::feedback::{Event, Kind};
use crate::providers::{Cause, Outcome, Push, Verdict};
use crate::state::{Device, ProviderKind};
use crate::telemetry::inc;

impl<V: Vendors> Ctx<V> {
    /// Count and time a verdict on `push` (its request left at `started`), log a vendor
    /// failure (rate-limited; the lines name the message or call id), act on a dead
    /// token. Returns true when the push is finished.
    pub(super) fn record(
        &self,
        device: &Device,
        push: &Push,
        v: &Verdict,
        started: quanta::Instant,
    ) -> bool {
        let provider = device.provider();
        let s = self.stats.provider(provider);
        self.stats.verdict(provider, v, started, &self.state.clock);
        match v.outcome {
            Outcome::Delivered => {
                inc(&s.sent);
                inc(&s.delivered);
                true
            }
            Outcome::TokenDead(cause) => {
                inc(&s.sent);
                inc(&s.failed);
                inc(&s.dead_tokens);
                if let Some(user) = self.remove_dead_token(device) {
                    inc(&s.invalid_tokens_removed);
                    self.report(Kind::TokenDead, device, Some(user), v);
                }
                tracing::debug!(
                    provider = provider.as_str(),
                    cause = cause.as_str(),
                    id = push.kind.id(),
                    "vendor reported a dead token; binding removed"
                );
                true
            }
            Outcome::Rejected(cause) => {
                if cause == Cause::Unconfigured {
                    inc(&s.unconfigured);
                } else {
                    inc(&s.sent);
                    inc(&s.failed);
                    inc(&s.rejected[cause.index()]);
                    self.report(Kind::PushRejected, device, None, v);
                    if self.first(provider, cause) {
                        tracing::warn!(provider = provider.as_str(), cause = cause.as_str(), id = push.kind.id(), status = ?v.status, reason = ?v.reason, "vendor rejected a push; not retried (further rejections for this cause are counted in /v1/stats)");
                    } else {
                        tracing::debug!(provider = provider.as_str(), cause = cause.as_str(), id = push.kind.id(), status = ?v.status, reason = ?v.reason, "vendor rejected a push");
                    }
                }
                true
            }
            Outcome::Retry { cause, .. } => {
                // Sent = the request reached the vendor (or may have).
                if v.status.is_some() || cause.fate_unknown() {
                    inc(&s.sent);
                }
                if matches!(
                    cause,
                    Cause::TooManyRequests | Cause::QuotaExceeded | Cause::DeviceThrottled
                ) {
                    inc(&s.throttled);
                }
                if cause.fate_unknown() {
                    inc(&s.unknown_fate);
                }
                false
            }
        }
    }

    /// True the first time `(provider, cause)` is seen.
    pub(super) fn first(&self, provider: ProviderKind, cause: Cause) -> bool {
        !self.logged[provider as usize][cause.index()].swap(true, Ordering::Relaxed)
    }

    /// Queue a feedback event for `device` when a webhook is configured; `user` is the
    /// owner when already known (a removed binding names it).
    fn report(&self, kind: Kind, device: &Device, user: Option<Arc<str>>, v: &Verdict) {
        let guard = self.feedback.load();
        let Some(queue) = guard.as_deref() else {
            return;
        };
        let user_id = user.unwrap_or_else(|| self.state.users.pin().name(device.owner()));
        queue.try_push(Event {
            kind,
            push_id: device.push_id().into(),
            user_id: (*user_id).into(),
            provider: device.provider(),
            reason: v.reason.as_deref().map(Into::into),
            at_ms: self.state.clock.unix_now_ms(),
        });
    }
}
