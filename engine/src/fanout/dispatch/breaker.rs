//! A lane's circuit breaker: consecutive failures open it; after a wait one probe
//! send is let through; its success closes the breaker, its failure reopens it for
//! twice as long (up to a cap).
//!
//! Only the probe's own result moves a half-open breaker: answers of sends that left
//! before the breaker opened are ignored then, so a burst of late failures cannot be
//! mistaken for a failed probe.

use std::time::Duration;

use tokio::time::Instant;

use crate::telemetry::BreakerState;

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    base: Duration,
    max: Duration,
    failures: u32,
    wait: Duration,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The probe is out; nothing else goes until it answers.
    HalfOpen,
}

/// May a send go now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, and this send is the probe: report its result with `probe = true`.
    Probe,
    /// Not before this instant.
    Until(Instant),
    /// Not until the probe answers.
    AfterProbe,
}

/// What a send's result says about the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// It answered (delivered, rejected, throttled: it is up).
    Up,
    /// 5xx, timeout, reset, connection refused.
    Down,
    /// Says nothing about the vendor's health (an auth token problem).
    Neutral,
}

/// A state change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened { wait: Duration },
    Closed,
}

impl Breaker {
    pub fn new(threshold: u32, base: Duration, max: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            base,
            max: max.max(base),
            failures: 0,
            wait: base,
            state: State::Closed,
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed => Admit::Yes,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Admit::Probe
            }
            State::Open { until } => Admit::Until(until),
            State::HalfOpen => Admit::AfterProbe,
        }
    }

    /// Feed one send's result; `probe` when it was admitted as [`Admit::Probe`].
    pub fn record(&mut self, signal: Signal, probe: bool, now: Instant) -> Option<Change> {
        if self.state == State::HalfOpen && !probe {
            return None;
        }
        match signal {
            Signal::Neutral => {
                if probe {
                    // Try another probe right away.
                    self.state = State::Open { until: now };
                }
                None
            }
            Signal::Up => {
                self.failures = 0;
                self.wait = self.base;
                let was_open = self.state != State::Closed;
                self.state = State::Closed;
                was_open.then_some(Change::Closed)
            }
            Signal::Down => {
                self.failures = self.failures.saturating_add(1);
                match self.state {
                    State::HalfOpen => {
                        self.wait = (self.wait * 2).min(self.max);
                        self.state = State::Open {
                            until: now + self.wait,
                        };
                        None
                    }
                    State::Closed if self.failures >= self.threshold => {
                        self.wait = self.base;
                        self.state = State::Open {
                            until: now + self.wait,
                        };
                        Some(Change::Opened { wait: self.wait })
                    }
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(3, Duration::from_millis(100), Duration::from_millis(350))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_and_closes() {
        let mut b = breaker();
        let now = Instant::now();
        assert_eq!(b.record(Signal::Down, false, now), None);
        assert_eq!(
            b.record(Signal::Up, false, now),
            None,
            "success resets the run"
        );
        b.record(Signal::Down, false, now);
        b.record(Signal::Down, false, now);
        assert_eq!(
            b.record(Signal::Down, false, now),
            Some(Change::Opened {
                wait: Duration::from_millis(100)
            })
        );
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(now), Admit::Until(now + Duration::from_millis(100)));
        // Late failures of sends that left earlier change nothing.
        assert_eq!(b.record(Signal::Down, false, now), None);

        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        assert_eq!(b.admit(now), Admit::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(now), Admit::AfterProbe, "one probe at a time");
        assert_eq!(b.record(Signal::Up, false, now), None, "not the probe");
        // The probe fails: open again, for twice as long.
        b.record(Signal::Down, true, now);
        assert_eq!(b.admit(now), Admit::Until(now + Duration::from_millis(200)));

        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        assert_eq!(b.admit(now), Admit::Probe);
        b.record(Signal::Down, true, now);
        assert_eq!(
            b.admit(now),
            Admit::Until(now + Duration::from_millis(350)),
            "capped"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        let now = Instant::now();
        assert_eq!(b.admit(now), Admit::Probe);
        assert_eq!(b.record(Signal::Up, true, now), Some(Change::Closed));
        assert_eq!(b.admit(now), Admit::Yes);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
