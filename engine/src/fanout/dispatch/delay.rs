//! The retry delay queue: a binary heap of (due instant, item) owned by the lane
//! worker, which sleeps until the earliest entry. One timer per lane, not a sleeping
//! task per push; memory is bounded by the lane's admission limit, since every entry
//! is a push already counted in the lane's depth.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

pub struct DelayQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

struct Entry<T> {
    at: Instant,
    /// Insertion order: equal instants come out first in, first out.
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed, so the max-heap pops the earliest entry.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T> Default for DelayQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> DelayQueue<T> {
    pub fn push(&mut self, at: Instant, item: T) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            item,
        });
    }

    /// When the earliest entry is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// The earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.at <= now {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn items_come_out_when_due_in_order() {
        let t0 = Instant::now();
        let mut q = DelayQueue::default();
        q.push(t0 + Duration::from_secs(3), "c");
        q.push(t0 + Duration::from_secs(1), "a");
        q.push(t0 + Duration::from_secs(1), "b");
        assert_eq!(q.next_at(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        tokio::time::sleep_until(q.next_at().unwrap()).await;
        assert_eq!(q.pop_due(Instant::now()), Some("a"));
        assert_eq!(q.pop_due(Instant::now()), Some("b"));
        assert_eq!(q.pop_due(Instant::now()), None);
        assert_eq!(q.len(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.pop_due(Instant::now()), Some("c"));
        assert!(q.is_empty());
    }
}
