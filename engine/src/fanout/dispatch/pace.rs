//! A lane's pace: a token bucket at `max_rps` (0 = unpaced) whose rate shrinks when the
//! vendor throttles the whole app (AIMD) instead of retrying at full speed.
//!
//! - Multiplicative decrease: a throttle answer halves the rate, at most once per
//!   [`DECREASE_EVERY`] (one burst of 429s from one window is one signal). An unpaced
//!   lane starts from the rate it actually sent at over the last second.
//! - Additive increase: every [`INCREASE_EVERY`] without a throttle adds 2% of the
//!   ceiling (`max_rps`, or for an unpaced lane twice the rate it had when first
//!   throttled); at the ceiling an unpaced lane is unpaced again.
//! - The bucket holds at most 50 ms of sends, so a recovered lane does not burst.

use std::time::Duration;

use tokio::time::Instant;

pub const DECREASE_EVERY: Duration = Duration::from_secs(1);
pub const INCREASE_EVERY: Duration = Duration::from_millis(100);
/// The slowest pace a lane is cut to.
const MIN_RPS: f64 = 1.0;

#[derive(Debug)]
pub struct Pace {
    /// Configured rate; 0 = unpaced.
    max: f64,
    /// Current rate; 0 = unpaced.
    rate: f64,
    /// Where additive increase stops.
    ceiling: f64,
    tokens: f64,
    refilled: Instant,
    decreased: Option<Instant>,
    increased: Instant,
    window_start: Instant,
    window_sends: u64,
    last_window_rps: f64,
}

impl Pace {
    pub fn new(max_rps: u32, now: Instant) -> Self {
        let max = f64::from(max_rps);
        Self {
            max,
            rate: max,
            ceiling: max,
            tokens: burst(max),
            refilled: now,
            decreased: None,
            increased: now,
            window_start: now,
            window_sends: 0,
            last_window_rps: 0.0,
        }
    }

    /// Current rate in requests per second; 0 = unpaced.
    pub fn rps(&self) -> u64 {
        self.rate.round() as u64
    }

    /// Take a token for one send, or say when one will be there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_secs(1) {
            self.last_window_rps = self.window_sends as f64 / elapsed.as_secs_f64();
            self.window_start = now;
            self.window_sends = 0;
        }
        if self.rate > 0.0 {
            let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(burst(self.rate));
            self.refilled = now;
            if self.tokens < 1.0 {
                let wait = (1.0 - self.tokens) / self.rate;
                return Err(now + Duration::from_secs_f64(wait));
            }
            self.tokens -= 1.0;
        }
        self.window_sends += 1;
        Ok(())
    }

    /// The vendor throttled the app: halve the rate (once per [`DECREASE_EVERY`]).
    /// Returns true when the rate changed.
    pub fn throttled(&mut self, now: Instant) -> bool {
        if self
            .decreased
            .is_some_and(|t| now.saturating_duration_since(t) < DECREASE_EVERY)
        {
            return false;
        }
        let current = if self.rate > 0.0 {
            self.rate
        } else {
            let observed = self
                .last_window_rps
                .max(self.window_sends as f64)
                .max(MIN_RPS);
            self.ceiling = observed * 2.0;
            observed
        };
        self.rate = (current / 2.0).max(MIN_RPS);
        self.tokens = self.tokens.min(burst(self.rate));
        self.refilled = now;
        self.decreased = Some(now);
        self.increased = now;
        true
    }

    /// No throttle lately: add to the rate (every [`INCREASE_EVERY`]).
    pub fn tick(&mut self, now: Instant) {
        if self.rate <= 0.0 || self.rate >= self.ceiling {
            return;
        }
        let since = now.saturating_duration_since(self.increased);
        if since < INCREASE_EVERY {
            return;
        }
        let steps = (since.as_millis() / INCREASE_EVERY.as_millis()) as f64;
        self.increased = now;
        self.rate += steps * (self.ceiling * 0.02).max(1.0);
        if self.rate >= self.ceiling {
            // Back to the configured pace (0 = unpaced).
            self.rate = self.max;
            self.ceiling = self.max;
        }
    }
}

/// Bucket size: 50 ms of sends, at least one.
fn burst(rate: f64) -> f64 {
    (rate * 0.05).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_paces_sends_at_max_rps() {
        let start = Instant::now();
        let mut p = Pace::new(100, start);
        let mut sent = 0;
        while Instant::now() < start + Duration::from_secs(2) {
            match p.try_take(Instant::now()) {
                Ok(()) => sent += 1,
                Err(at) => tokio::time::sleep_until(at).await,
            }
        }
        assert!((195..=206).contains(&sent), "{sent} sends in 2 s at 100/s");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_until_the_time_it_names_always_yields_a_token() {
        // Rates whose period is not a whole number of nanoseconds: rounding must never
        // name a wake-up at which the bucket is still a hair short of a token.
        for rps in [3, 7, 13, 333, 999, 1_001] {
            let start = Instant::now();
            let mut p = Pace::new(rps, start);
            let (mut sent, mut waits) = (0u32, 0u32);
            while Instant::now() < start + Duration::from_secs(3) {
                match p.try_take(Instant::now()) {
                    Ok(()) => sent += 1,
                    Err(at) => {
                        assert!(at > Instant::now(), "{rps}/s: a wait that ends now");
                        tokio::time::sleep_until(at).await;
                        waits += 1;
                        assert!(p.try_take(Instant::now()).is_ok(), "{rps}/s: woke early");
                        sent += 1;
                    }
                }
            }
            assert!(waits <= sent, "{rps}/s: {waits} waits for {sent} sends");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_halve_the_rate_once_per_second_and_it_recovers_additively() {
        let now = Instant::now();
        let mut p = Pace::new(1_000, now);
        assert!(p.throttled(now));
        assert_eq!(p.rps(), 500);
        assert!(!p.throttled(now), "one decrease per window");
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.tick(Instant::now());
        assert_eq!(p.rps(), 600, "5 steps of 2% of 1000");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(p.throttled(Instant::now()));
        assert_eq!(p.rps(), 300);
        tokio::time::sleep(Duration::from_secs(10)).await;
        p.tick(Instant::now());
        assert_eq!(p.rps(), 1_000, "capped at max_rps");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unpaced_lane_is_paced_from_its_observed_rate_when_throttled() {
        let start = Instant::now();
        let mut p = Pace::new(0, start);
        for _ in 0..400 {
            p.try_take(Instant::now()).unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.try_take(Instant::now()).unwrap();
        assert_eq!(p.rps(), 0, "unpaced");
        assert!(p.throttled(Instant::now()));
        assert_eq!(p.rps(), 200, "half of the 400/s it was sending");
        tokio::time::sleep(Duration::from_secs(30)).await;
        p.tick(Instant::now());
        assert_eq!(p.rps(), 0, "unpaced again after recovering");
    }
}
