//! Reconnect backoff: capped exponential with "equal jitter", deterministic.
//!
//! Reconnecting is the driver's job (the QUIC driver and the simulator alike);
//! the delay calculation lives here so both use the same numbers. Jitter is an
//! argument: the caller draws it from its own seeded source, so the core draws
//! no randomness. Invariant: every delay is in `base_ms/2 ..= max_ms`.

/// Default first delay before reconnecting.
pub const BACKOFF_BASE_MS_DEFAULT: u64 = 100;
/// Default longest delay between reconnect attempts.
pub const BACKOFF_MAX_MS_DEFAULT: u64 = 30_000;
/// Doublings after which the delay is capped anyway (keeps the shift in range).
const BACKOFF_DOUBLINGS_MAX: u32 = 32;

/// Capped exponential backoff for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_BASE_MS_DEFAULT, BACKOFF_MAX_MS_DEFAULT)
    }
}

impl Backoff {
    /// `base_ms` is raised to 1 and `max_ms` to `base_ms` when smaller.
    pub fn new(base_ms: u64, max_ms: u64) -> Backoff {
        let base_ms = base_ms.max(1);
        Backoff {
            base_ms,
            max_ms: max_ms.max(base_ms),
            attempt: 0,
        }
    }

    /// Failed attempts since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt, and counts the attempt. The ceiling
    /// doubles per attempt up to `max_ms`; the delay is its upper half picked by
    /// `jitter` (any u64, e.g. from the caller's seeded RNG).
    pub fn next_delay_ms(&mut self, jitter: u64) -> u64 {
        let doublings = self.attempt.min(BACKOFF_DOUBLINGS_MAX);
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let delay = (ceiling - half) + jitter % (half + 1);
        debug_assert!(delay <= self.max_ms && delay >= self.base_ms / 2);
        delay
    }

    /// A connection succeeded (handshake done): start again from `base_ms`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_and_resets() {
        let mut b = Backoff::new(100, 1000);
        // Zero jitter gives the lower edge: ceiling - ceiling/2.
        let d: Vec<u64> = (0..6).map(|_| b.next_delay_ms(0)).collect();
        assert_eq!(d, vec![50, 100, 200, 400, 500, 500]);
        let mut b2 = Backoff::new(100, 1000);
        let top: Vec<u64> = (0..6).map(|_| b2.next_delay_ms(u64::MAX - 1)).collect();
        assert!(top.iter().all(|&x| (50..=1000).contains(&x)));
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay_ms(0), 50);
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(u64::MAX / 2, u64::MAX);
        for j in 0..100 {
            let d = b.next_delay_ms(j * 7919);
            assert!(d >= u64::MAX / 4);
        }
    }

    #[test]
    fn same_jitter_same_delays() {
        let mut a = Backoff::default();
        let mut b = Backoff::default();
        for j in [3u64, 99, 12345, 7] {
            assert_eq!(a.next_delay_ms(j), b.next_delay_ms(j));
        }
    }
}
