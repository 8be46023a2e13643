//! Retry delays: full-jitter exponential backoff, `Retry-After`, and the expiry rule.

use std::time::Duration;

use rand::Rng as _;

/// The full-jitter delay before retry number `attempt` (1 = the first retry): uniform
/// in `[0, min(max, base · 2^(attempt-1))]` (AWS "exponential backoff and jitter").
pub fn full_jitter(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// Delay before resending a push the vendor did not process (`unsent` resends so
/// far): short, since nothing was wrong with the push, but growing so a vendor that
/// keeps refusing connections is not spun on (the breaker stops it for good).
pub fn unsent(unsent: u32) -> Duration {
    full_jitter(
        unsent,
        Duration::from_millis(20),
        Duration::from_millis(2_000),
    )
}

/// When a retry may go out, or `None` when it would be at or past the push's expiry
/// (UNIX ms), so the push is dropped as expired instead of held.
pub fn schedule(now_ms: u64, delay: Duration, expires_at_ms: u64) -> Option<Duration> {
    let due = now_ms.saturating_add(delay.as_millis() as u64);
    (due < expires_at_ms).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_a_doubling_capped_ceiling() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut seen_high = false;
        for _ in 0..2_000 {
            assert!(full_jitter(1, base, max) <= base);
            assert!(full_jitter(3, base, max) <= base * 4);
            let d = full_jitter(30, base, max);
            assert!(d <= max);
            seen_high |= d > max / 2;
        }
        assert!(seen_high, "jitter spreads over the whole range");
    }

    #[test]
    fn nothing_is_scheduled_past_expiry() {
        let d = Duration::from_millis(1_500);
        assert_eq!(schedule(10_000, d, 12_000), Some(d));
        assert_eq!(schedule(10_000, d, 11_500), None);
        assert_eq!(schedule(10_000, d, 11_000), None);
    }
}
