//! Time for the driver: the one place where the QUIC driver reads clocks.
//!
//! The session and the engine take `now_ms` as an argument. The driver's
//! `now_ms` is wall-clock milliseconds since the UNIX epoch *as of start*,
//! advanced by a monotonic clock: it reads like wall time in `INFO` and status,
//! but a wall-clock step (NTP, an operator) cannot stall or fire the session's
//! timers (idle timeout, heartbeats, ack pacing) early or late.

// Real I/O lives here: this module is allowed to read the clocks that
// `clippy.toml` bans in the sans-IO core.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the UNIX epoch (0 if the clock is before it).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Monotonic milliseconds anchored at the wall clock of its creation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
    start_ms: u64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: Instant::now(),
            start_ms: wall_ms(),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_ms.saturating_add(elapsed)
    }

    /// The tokio instant at which `now_ms()` reaches `at_ms`.
    pub(crate) fn instant_at(&self, at_ms: u64) -> tokio::time::Instant {
        let offset = Duration::from_millis(at_ms.saturating_sub(self.start_ms));
        // Far-future deadlines (`u64::MAX`-ish) would overflow `Instant`.
        let at = self
            .start
            .checked_add(offset)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tokio::time::Instant::from_std(at)
    }
}

/// A cheap jitter source for reconnect backoff: the clock's low bits mixed
/// with `salt` (splitmix64), so that sites restarted together spread out.
pub(crate) fn jitter(salt: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut z = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_near_the_wall_clock_and_never_goes_back() {
        let c = Clock::new();
        let a = c.now_ms();
        let b = c.now_ms();
        assert!(b >= a);
        assert!(a.abs_diff(wall_ms()) < 5_000);
    }

    #[test]
    fn jitter_varies_with_salt() {
        assert_ne!(jitter(1) ^ jitter(2), 0);
    }
}
