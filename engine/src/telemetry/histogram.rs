//! A Prometheus histogram cheap enough for every push: fixed buckets, one relaxed
//! atomic add for the bucket and one for the sum, no lock and no allocation per
//! observation. Buckets are kept per bucket (not cumulative) so an observation touches
//! one of them; the rendering adds them up.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets in microseconds: 0.5 ms to 5 min, so one set serves an
/// fsync, an API request, a vendor request and a fan-out that waits out retries.
const BOUNDS_US: [u64; BUCKETS] = [
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];
/// The same bounds as Prometheus `le` labels, in seconds.
const LE: [&str; BUCKETS] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "30", "60", "300",
];
const BUCKETS: usize = 17;

/// Durations in fixed buckets, in seconds when rendered.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket; the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observe the time since `started` (the engine's TSC clock, a few ns to read).
    #[inline]
    pub fn since(&self, started: quanta::Instant) {
        self.observe(started.elapsed());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `_bucket`, `_sum` and `_count` samples of `name` with `labels` (`a="b",`
    /// with the trailing comma, or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = LE.get(i).copied().unwrap_or("+Inf");
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
        } else {
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500)); // le 0.0005 (bounds are inclusive)
        h.observe(Duration::from_millis(3)); // le 0.005
        h.observe(Duration::from_secs(400)); // +Inf
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "p=\"a\",");
        assert!(
            out.contains("x_seconds_bucket{p=\"a\",le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{p=\"a\",le=\"0.0025\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{p=\"a\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{p=\"a\",le=\"300\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{p=\"a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{p=\"a\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{p=\"a\"} 400.0035\n"), "{out}");
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn bounds_and_labels_agree() {
        for (us, le) in BOUNDS_US.iter().zip(LE) {
            assert_eq!(*us as f64 / 1e6, le.parse::<f64>().unwrap());
        }
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
    }
}
