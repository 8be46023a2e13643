//! Idempotency keys: a `message_id` or `call_id` repeated within the window is not
//! pushed again (API.md, "Messages" and "Calls: idempotent ids and cancel").
//!
//! Message ids and call ids live in separate namespaces ([`Space`]), so a call never
//! collides with a message that happens to use the same string. An id is claimed
//! only once its request can no longer be refused, and released when a later step
//! refuses it after all (a refused request changes nothing).

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use crate::clock::Clock;

/// The namespace of an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Message,
    Call,
}

pub struct Dedup {
    clock: Clock,
    window_ms: u64,
    /// Per [`Space`]: id → end of its window (milliseconds of `clock`). Bounded by
    /// the request rate times the window; [`Dedup::sweep`] forgets expired ids.
    seen: [DashMap<Box<str>, u64>; 2],
}

impl Dedup {
    pub fn new(clock: Clock, window_s: u64) -> Self {
        Self {
            clock,
            window_ms: window_s.saturating_mul(1000),
            seen: Default::default(),
        }
    }

    fn map(&self, space: Space) -> &DashMap<Box<str>, u64> {
        &self.seen[space as usize]
    }

    /// Claim `id` in `space`; false if it was claimed within the window.
    pub fn claim(&self, space: Space, id: &str) -> bool {
        if self.window_ms == 0 {
            return true;
        }
        let now = self.clock.now_ms();
        match self.map(space).entry(id.into()) {
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

    /// Whether `id` is claimed in `space` within the window (cluster mode asks this
    /// before claiming an id cluster-wide).
    pub fn contains(&self, space: Space, id: &str) -> bool {
        self.window_ms > 0
            && self
                .map(space)
                .get(id)
                .is_some_and(|until| *until > self.clock.now_ms())
    }

    /// Undo a claim whose request was refused (a refused request changes nothing).
    pub fn release(&self, space: Space, id: &str) {
        self.map(space).remove(id);
    }

    /// Forget ids whose window has passed.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
        for map in &self.seen {
            map.retain(|_, until| *until > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_release() {
        let d = Dedup::new(Clock::new(), 600);
        assert!(d.claim(Space::Message, "m"));
        assert!(!d.claim(Space::Message, "m"));
        d.release(Space::Message, "m");
        assert!(d.claim(Space::Message, "m"));
        let off = Dedup::new(Clock::new(), 0);
        assert!(off.claim(Space::Message, "m") && off.claim(Space::Message, "m"));
    }

    #[test]
    fn a_call_id_never_collides_with_a_message_id() {
        let d = Dedup::new(Clock::new(), 600);
        assert!(d.claim(Space::Message, "x-1"));
        assert!(d.claim(Space::Call, "x-1"), "its own namespace");
        assert!(!d.claim(Space::Call, "x-1"));
        d.release(Space::Call, "x-1");
        assert!(
            !d.claim(Space::Message, "x-1"),
            "releasing the call kept the message"
        );
    }
}
