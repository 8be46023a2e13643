//! `message_id` idempotency: a repeat within the window is not pushed again.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::clock::Clock;

pub struct Dedup {
    clock: Clock,
    window_ms: u64,
    seen: DashMap<Box<str>, u64>,
}

impl Dedup {
    pub fn new(clock: Clock, window_s: u64) -> Self {
        Self {
            clock,
            window_ms: window_s.saturating_mul(1000),
            seen: DashMap::new(),
        }
    }

    /// Claim `id`; false if it was claimed within the window.
    pub fn claim(&self, id: &str) -> bool {
        if self.window_ms == 0 {
            return true;
        }
        let now = self.clock.now_ms();
        match self.seen.entry(id.into()) {
            Entry::Occupied(mut e) => {
                if *e.get() > now {
                    false
                } else {
                    e.insert(now + self.window_ms);
                    true
                }
            }
            Entry::Vacant(e) => {
                e.insert(now + self.window_ms);
                true
            }
        }
    }

    /// Undo a claim whose request was rejected (a rejected request changes nothing).
    pub fn release(&self, id: &str) {
        self.seen.remove(id);
    }

    /// Forget ids whose window has passed.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        self.seen.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_release() {
        let d = Dedup::new(Clock::new(), 600);
        assert!(d.claim("m"));
        assert!(!d.claim("m"));
        d.release("m");
        assert!(d.claim("m"));
        let off = Dedup::new(Clock::new(), 0);
        assert!(off.claim("m") && off.claim("m"));
    }
}
