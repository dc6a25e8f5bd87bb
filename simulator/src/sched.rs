//! Discrete-event scheduler on virtual time.
//!
//! Events are ordered by `(time_ms, seq)`: `seq` is a counter assigned at
//! scheduling, so two events at the same virtual millisecond run in the order
//! they were scheduled, and a run is a pure function of its seed. Only ordered
//! collections are used; there is no wall clock here.

use std::collections::BTreeMap;

/// Bound on pending events: a runaway feedback loop fails loudly instead of
/// eating the machine.
pub const EVENTS_PENDING_MAX: usize = 1 << 20;

#[derive(Debug)]
pub struct Scheduler<E> {
    now_ms: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), E>,
    processed: u64,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler {
            now_ms: 0,
            seq: 0,
            queue: BTreeMap::new(),
            processed: 0,
        }
    }
}

impl<E> Scheduler<E> {
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Events taken so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Schedules `event` at `at_ms` (never in the past: clamped to now).
    /// Returns false when the queue is full (the event is dropped).
    pub fn at(&mut self, at_ms: u64, event: E) -> bool {
        if self.queue.len() >= EVENTS_PENDING_MAX {
            return false;
        }
        let t = at_ms.max(self.now_ms);
        self.seq += 1;
        self.queue.insert((t, self.seq), event);
        true
    }

    /// Schedules `event` `delay_ms` from now.
    pub fn after(&mut self, delay_ms: u64, event: E) -> bool {
        self.at(self.now_ms.saturating_add(delay_ms), event)
    }

    /// Takes the next event, advancing virtual time to it; `None` once nothing
    /// is pending or the next event lies beyond `until_ms`.
    pub fn next_until(&mut self, until_ms: u64) -> Option<(u64, u64, E)> {
        let (&(t, seq), _) = self.queue.first_key_value()?;
        if t > until_ms {
            return None;
        }
        let ((t, seq2), e) = self.queue.pop_first()?;
        debug_assert_eq!(seq, seq2);
        debug_assert!(t >= self.now_ms);
        self.now_ms = t;
        self.processed += 1;
        Some((t, seq, e))
    }

    /// Pending events in order (reports).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &E)> {
        self.queue.iter().map(|(k, e)| (k.0, e))
    }

    /// Advances time to `t` with nothing happening (the end of a phase).
    pub fn advance_to(&mut self, t: u64) {
        self.now_ms = self.now_ms.max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_schedule_order() {
        let mut s = Scheduler::default();
        s.at(10, "b");
        s.at(5, "a");
        s.at(10, "c");
        let order: Vec<&str> = std::iter::from_fn(|| s.next_until(u64::MAX).map(|e| e.2)).collect();
        assert_eq!(order, vec!["a", "b", "c"]);
        assert_eq!(s.now_ms(), 10);
        s.at(3, "past");
        assert_eq!(s.next_until(u64::MAX).map(|e| e.0), Some(10));
    }
}
