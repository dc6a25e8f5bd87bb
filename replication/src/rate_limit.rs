//! Token bucket for the per-peer rate limit, on caller-supplied time.
//!
//! The balance is kept in milli-bytes so that any rate refills exactly, and it
//! may go negative: a frame is sent whole once the balance is non-negative and
//! its size is then owed, so frames larger than the burst still go out, at the
//! configured average rate. Invariant: the balance never exceeds the burst.

/// Burst allowance: this many milliseconds' worth of the rate.
pub const RATE_BURST_MS: u64 = 1000;

/// A byte-rate limiter; a rate of 0 means unlimited.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_bytes_per_s: u64,
    /// Milli-bytes available (negative: owed).
    balance: i128,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn new(rate_bytes_per_s: u64, now_ms: u64) -> TokenBucket {
        let mut b = TokenBucket {
            rate_bytes_per_s,
            balance: 0,
            last_ms: now_ms,
        };
        b.balance = b.capacity();
        b
    }

    pub fn rate_bytes_per_s(&self) -> u64 {
        self.rate_bytes_per_s
    }

    /// Changes the rate (operator `CONFIG SET`); keeps what is owed.
    pub fn set_rate(&mut self, rate_bytes_per_s: u64, now_ms: u64) {
        self.refill(now_ms);
        self.rate_bytes_per_s = rate_bytes_per_s;
        self.balance = self.balance.min(self.capacity());
    }

    fn capacity(&self) -> i128 {
        self.rate_bytes_per_s as i128 * RATE_BURST_MS as i128
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.balance =
            (self.balance + elapsed as i128 * self.rate_bytes_per_s as i128).min(self.capacity());
    }

    /// True when a frame may be sent now.
    pub fn ready(&mut self, now_ms: u64) -> bool {
        if self.rate_bytes_per_s == 0 {
            return true;
        }
        self.refill(now_ms);
        self.balance >= 0
    }

    /// When a frame may be sent (`now_ms` if now).
    pub fn ready_at(&mut self, now_ms: u64) -> u64 {
        if self.ready(now_ms) {
            return now_ms;
        }
        let owed = -self.balance;
        let rate = self.rate_bytes_per_s as i128;
        let wait = (owed + rate - 1) / rate;
        now_ms.saturating_add(u64::try_from(wait).unwrap_or(u64::MAX))
    }

    /// Charges `bytes` just sent.
    pub fn spend(&mut self, bytes: usize, now_ms: u64) {
        if self.rate_bytes_per_s == 0 {
            return;
        }
        self.refill(now_ms);
        self.balance -= bytes as i128 * 1000;
    }

    pub fn invariants_hold(&self) -> bool {
        self.balance <= self.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_is_always_ready() {
        let mut b = TokenBucket::new(0, 0);
        b.spend(1 << 30, 0);
        assert!(b.ready(0));
        assert_eq!(b.ready_at(0), 0);
    }

    #[test]
    fn average_rate_holds_over_time() {
        let mut b = TokenBucket::new(1000, 0);
        let mut now = 0;
        let mut sent = 0usize;
        while now <= 10_000 {
            if b.ready(now) {
                b.spend(100, now);
                sent += 100;
            } else {
                now = b.ready_at(now);
            }
        }
        // 1 s of burst + 10 s at 1000 B/s, give or take one frame.
        assert!((11_000..=11_200).contains(&sent), "sent {sent}");
    }

    #[test]
    fn frames_larger_than_the_burst_still_go_out() {
        let mut b = TokenBucket::new(10, 0);
        assert!(b.ready(0));
        b.spend(1000, 0);
        assert!(!b.ready(0));
        // Owes 990 bytes at 10 B/s: ready after 99 s.
        assert_eq!(b.ready_at(0), 99_000);
        assert!(b.ready(99_000));
        assert!(b.invariants_hold());
    }
}
