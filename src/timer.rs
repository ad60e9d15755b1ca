//! Timer queue for the reactor.
//!
//! A binary heap of deadlines over a slab of entries. Cancel removes the entry at once
//! and leaves a stale heap node behind (skipped when it surfaces); reset pushes a fresh
//! node. Stale nodes are compacted away when they outnumber live ones, so memory stays
//! proportional to the live timers.
//!
//! The queue is pure: it never reads the clock. The caller passes `now`, which is what
//! lets the testing kit run the same queue on a manual clock.

// Ordering: nodes sort by (deadline, seq). `seq` grows with every insert and reset, so
// timers with equal deadlines fire in the order they were set (FIFO, like Twisted's
// task.Clock), and `pop_due` can refuse nodes set after a pass began (Twisted's rule
// that a callLater(0) made inside a timer runs on the next pass, not this one).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Instant;

use slab::Slab;

/// Identifies a timer set with `call_later`; used to cancel or reset it.
///
/// Ids carry a generation, so the id of a timer that fired or was cancelled never
/// reaches a newer timer that reuses its slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

impl fmt::Debug for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerId({}.{})", self.index, self.generation)
    }
}

struct Entry<T> {
    deadline: Instant,
    seq: u64,
    generation: u32,
    payload: T,
}

/// Deadline-ordered timers carrying a payload `T`.
pub(crate) struct TimerQueue<T> {
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    entries: Slab<Entry<T>>,
    next_seq: u64,
    next_generation: u32,
}

impl<T> TimerQueue<T> {
    pub(crate) fn new() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            entries: Slab::new(),
            next_seq: 0,
            next_generation: 0,
        }
    }

    /// Number of live (not fired, not cancelled) timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn bump_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The sequence number the next insert or reset will get: pass it to
    /// [`pop_due`](Self::pop_due) to fire only timers set before this point.
    pub(crate) fn seq_mark(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn insert(&mut self, deadline: Instant, payload: T) -> TimerId {
        let seq = self.bump_seq();
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.entries.insert(Entry {
            deadline,
            seq,
            generation,
            payload,
        });
        let index = u32::try_from(index).expect("more than 2^32 live timers");
        self.heap.push(Reverse((deadline, seq, index)));
        TimerId { index, generation }
    }

    fn live(&self, id: TimerId) -> bool {
        self.entries
            .get(id.index as usize)
            .is_some_and(|e| e.generation == id.generation)
    }

    /// Removes a timer; returns its payload if it was still pending.
    pub(crate) fn cancel(&mut self, id: TimerId) -> Option<T> {
        if !self.live(id) {
            return None;
        }
        let entry = self.entries.remove(id.index as usize);
        self.maybe_compact();
        Some(entry.payload)
    }

    /// Moves a pending timer to a new deadline; false if it already fired or was
    /// cancelled.
    pub(crate) fn reset(&mut self, id: TimerId, deadline: Instant) -> bool {
        if !self.live(id) {
            return false;
        }
        let seq = self.bump_seq();
        let entry = &mut self.entries[id.index as usize];
        entry.deadline = deadline;
        entry.seq = seq;
        self.heap.push(Reverse((deadline, seq, id.index)));
        self.maybe_compact();
        true
    }

    /// The deadline of a pending timer.
    #[cfg(test)]
    pub(crate) fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.live(id)
            .then(|| self.entries[id.index as usize].deadline)
    }

    fn is_current(&self, node: &(Instant, u64, u32)) -> bool {
        self.entries
            .get(node.2 as usize)
            .is_some_and(|e| e.seq == node.1)
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse(node)) = self.heap.peek() {
            if self.is_current(node) {
                return Some(node.0);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest timer whose deadline is at or before `now` and that was set
    /// or reset before `seq_mark`.
    pub(crate) fn pop_due(&mut self, now: Instant, seq_mark: u64) -> Option<(TimerId, T)> {
        loop {
            let Reverse(node) = *self.heap.peek()?;
            if !self.is_current(&node) {
                self.heap.pop();
                continue;
            }
            if node.0 > now || node.1 >= seq_mark {
                return None;
            }
            self.heap.pop();
            let entry = self.entries.remove(node.2 as usize);
            let id = TimerId {
                index: node.2,
                generation: entry.generation,
            };
            return Some((id, entry.payload));
        }
    }

    /// Rebuilds the heap without stale nodes once they are the majority.
    fn maybe_compact(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.entries.len() {
            let entries = &self.entries;
            self.heap.retain(|Reverse(node)| {
                entries
                    .get(node.2 as usize)
                    .is_some_and(|e| e.seq == node.1)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn fire_all(q: &mut TimerQueue<&'static str>, now: Instant) -> Vec<&'static str> {
        let mark = q.seq_mark();
        std::iter::from_fn(|| q.pop_due(now, mark).map(|(_, p)| p)).collect()
    }

    #[test]
    fn fires_in_deadline_order_then_fifo_for_ties() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.insert(t0 + ms(30), "c");
        q.insert(t0 + ms(10), "a");
        q.insert(t0 + ms(20), "b1");
        q.insert(t0 + ms(20), "b2");
        assert_eq!(fire_all(&mut q, t0 + ms(15)), ["a"]);
        assert_eq!(fire_all(&mut q, t0 + ms(30)), ["b1", "b2", "c"]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn cancel_and_reset() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.insert(t0 + ms(10), "a");
        let b = q.insert(t0 + ms(20), "b");
        assert_eq!(q.cancel(a), Some("a"));
        assert_eq!(q.cancel(a), None, "cancel twice");
        assert!(q.reset(b, t0 + ms(5)));
        assert_eq!(q.deadline(b), Some(t0 + ms(5)));
        assert_eq!(q.next_deadline(), Some(t0 + ms(5)));
        assert_eq!(fire_all(&mut q, t0 + ms(5)), ["b"]);
        assert!(!q.reset(b, t0 + ms(50)), "reset after firing");
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn reset_later_does_not_fire_at_old_deadline() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.insert(t0 + ms(10), "a");
        assert!(q.reset(a, t0 + ms(30)));
        assert!(fire_all(&mut q, t0 + ms(20)).is_empty());
        assert_eq!(fire_all(&mut q, t0 + ms(30)), ["a"]);
    }

    #[test]
    fn timers_set_during_a_pass_wait_for_the_next() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.insert(t0, "old");
        let mark = q.seq_mark();
        q.insert(t0, "new");
        assert_eq!(q.pop_due(t0, mark).map(|p| p.1), Some("old"));
        assert!(q.pop_due(t0, mark).is_none());
        assert_eq!(fire_all(&mut q, t0), ["new"]);
    }

    #[test]
    fn stale_ids_never_reach_new_timers() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.insert(t0, "a");
        q.cancel(a);
        let b = q.insert(t0, "b"); // reuses a's slot
        assert_ne!(a, b);
        assert_eq!(q.cancel(a), None);
        assert!(!q.reset(a, t0));
        assert_eq!(q.cancel(b), Some("b"));
    }

    #[test]
    fn many_resets_keep_heap_bounded() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.insert(t0, "a");
        for i in 0..10_000 {
            q.reset(a, t0 + ms(i));
        }
        assert!(q.heap.len() <= 130, "heap holds {} nodes", q.heap.len());
    }
}
