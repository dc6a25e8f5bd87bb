//! Hybrid logical clock: `(wall_ms: 48 bits, logical: 16 bits)` packed in a u64.
//!
//! Every op is stamped with an `Hlc`; together with the origin's site id it orders
//! last-writer-wins ties. The clock never goes backwards, even when the wall clock
//! passed in as `now_ms` does, and it absorbs the stamps of remote ops so that a
//! causally later op always carries a greater stamp.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One HLC timestamp. Ordering is the ordering of the packed u64.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Hlc(pub u64);

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
/// Wall time is kept to 48 bits of milliseconds (good until year 10889).
pub const WALL_MS_MAX: u64 = (1 << 48) - 1;

impl Hlc {
    pub fn new(wall_ms: u64, logical: u16) -> Hlc {
        Hlc((wall_ms.min(WALL_MS_MAX) << LOGICAL_BITS) | logical as u64)
    }
    pub fn wall_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }
    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.logical())
    }
}

/// How far ahead of the local wall clock a stamp may be issued, by default
/// (`--max-clock-skew-ms`).
pub const MAX_CLOCK_SKEW_MS_DEFAULT: u64 = 500;

/// A stamp further ahead of the local clock than this is absurd (a clock set
/// a year wrong, or a forged op): replication refuses the session that
/// carries it instead of letting it win every conflict for a year.
pub const CLOCK_AHEAD_ABSURD_MS: u64 = 365 * 24 * 3600 * 1000;

/// The clock state of one site.
///
/// Stamps only order *concurrent* writes: a write that had seen another
/// removes it whatever their stamps (observed-remove), so bounding stamps
/// never reorders causally related writes. The bound is what keeps one site
/// with a clock far ahead from winning every concurrent conflict: a stamp is
/// never issued beyond the local wall clock plus `max_skew_ms`, however far
/// ahead the stamps it absorbed from peers were (see docs/semantics.md,
/// "Clocks").
#[derive(Clone, Debug)]
pub struct HlcClock {
    /// The last stamp issued here.
    last: Hlc,
    /// The greatest stamp absorbed from peers (or from this site's own log
    /// at open), taken into account up to the bound.
    seen: Hlc,
    /// 0: no bound.
    max_skew_ms: u64,
}

impl Default for HlcClock {
    fn default() -> Self {
        HlcClock::new()
    }
}

impl HlcClock {
    /// A clock with the default bound.
    pub fn new() -> Self {
        HlcClock::with_max_skew(MAX_CLOCK_SKEW_MS_DEFAULT)
    }

    /// A clock that never issues a stamp more than `max_skew_ms` ahead of
    /// the wall clock it is given (0: no bound).
    pub fn with_max_skew(max_skew_ms: u64) -> Self {
        HlcClock {
            last: Hlc::default(),
            seen: Hlc::default(),
            max_skew_ms,
        }
    }

    /// Changes the bound from the next stamp on.
    pub fn set_max_skew(&mut self, max_skew_ms: u64) {
        self.max_skew_ms = max_skew_ms;
    }

    /// The bound (0: none).
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// The greatest stamp issued or absorbed so far.
    pub fn last(&self) -> Hlc {
        self.last.max(self.seen)
    }

    /// The last stamp issued here (not absorbed).
    pub fn last_issued(&self) -> Hlc {
        self.last
    }

    /// The greatest stamp this site may issue at wall time `now_ms`.
    pub fn ceiling(&self, now_ms: u64) -> Hlc {
        if self.max_skew_ms == 0 {
            return Hlc(u64::MAX);
        }
        let wall = now_ms.saturating_add(self.max_skew_ms).min(WALL_MS_MAX);
        Hlc::new(wall, LOGICAL_MASK as u16)
    }

    /// Issues a stamp: greater than every stamp issued or absorbed so far,
    /// unless that would put it beyond `now_ms + max_skew_ms`, where it
    /// stops (ties between stamps are broken by origin and sequence). Never
    /// wraps and never panics.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let wall = now_ms.min(WALL_MS_MAX);
        let ceiling = self.ceiling(now_ms);
        let floor = self.last.max(self.seen.min(ceiling));
        let next = if wall > floor.wall_ms() {
            Hlc::new(wall, 0)
        } else {
            // Wall clock behind or equal: advance the logical part. When it
            // would overflow, borrow one millisecond from the future, up to
            // the ceiling.
            Hlc(floor.0.saturating_add(1))
        };
        let next = next
            .min(ceiling)
            .min(Hlc::new(WALL_MS_MAX, LOGICAL_MASK as u16));
        self.last = next;
        next
    }

    /// Absorbs a stamp seen on a remote op (or heartbeat), or this site's
    /// own last stamp at open.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.seen {
            self.seen = remote;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let mut c = HlcClock::new();
        let a = c.tick(1000);
        let b = c.tick(900);
        let d = c.tick(1000);
        assert!(a < b && b < d);
        assert_eq!(a.wall_ms(), 1000);
        assert_eq!(b.wall_ms(), 1000);
        assert_eq!(b.logical(), 1);
    }

    #[test]
    fn absorbs_remote_stamps() {
        let mut c = HlcClock::with_max_skew(0);
        c.tick(10);
        c.observe(Hlc::new(5000, 7));
        let t = c.tick(20);
        assert!(t > Hlc::new(5000, 7));
    }

    #[test]
    fn logical_overflow_carries_into_wall() {
        let mut c = HlcClock::with_max_skew(0);
        c.observe(Hlc::new(10, u16::MAX));
        let t = c.tick(10);
        assert_eq!(t.wall_ms(), 11);
        assert_eq!(t.logical(), 0);
    }

    #[test]
    fn a_stamp_is_never_issued_beyond_the_wall_clock_plus_the_bound() {
        let mut c = HlcClock::with_max_skew(500);
        // A peer whose clock runs an hour ahead.
        c.observe(Hlc::new(1_000 + 3_600_000, 3));
        let t = c.tick(1_000);
        assert_eq!(t, Hlc::new(1_500, u16::MAX));
        // Still within the bound later, and moving with the wall clock.
        let u = c.tick(1_000);
        assert!(u.wall_ms() <= 1_500);
        let v = c.tick(2_000);
        assert_eq!(v, Hlc::new(2_500, u16::MAX));
        // A peer ahead by less than the bound is followed exactly.
        let mut d = HlcClock::with_max_skew(500);
        d.observe(Hlc::new(1_200, 9));
        assert_eq!(d.tick(1_000), Hlc::new(1_200, 10));
    }

    #[test]
    fn no_bound_follows_any_stamp() {
        let mut c = HlcClock::with_max_skew(0);
        c.observe(Hlc::new(1_000 + 3_600_000, 3));
        assert_eq!(c.tick(1_000), Hlc::new(1_000 + 3_600_000, 4));
    }

    #[test]
    fn the_clock_never_wraps_or_panics() {
        for bound in [0, 500] {
            let mut c = HlcClock::with_max_skew(bound);
            c.observe(Hlc(u64::MAX));
            let a = c.tick(u64::MAX);
            let b = c.tick(u64::MAX);
            assert!(b >= a, "{a} {b}");
            assert!(a.wall_ms() <= WALL_MS_MAX);
            let z = c.tick(0);
            assert!(z.0 > 0);
        }
    }
}
