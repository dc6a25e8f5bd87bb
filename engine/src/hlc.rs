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

/// The clock state of one site.
#[derive(Clone, Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    pub fn new() -> Self {
        HlcClock::default()
    }

    /// The last stamp issued or absorbed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Issues a stamp greater than every stamp issued or absorbed so far.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let wall = now_ms.min(WALL_MS_MAX);
        let next = if wall > self.last.wall_ms() {
            Hlc::new(wall, 0)
        } else {
            // Wall clock behind or equal: advance the logical part. When it
            // would overflow, borrow one millisecond from the future; the clock
            // stays monotonic and the drift is bounded by the op rate.
            Hlc(self.last.0 + 1)
        };
        self.last = next;
        next
    }

    /// Absorbs a stamp seen on a remote op (or heartbeat).
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
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
        let mut c = HlcClock::new();
        c.tick(10);
        c.observe(Hlc::new(5000, 7));
        let t = c.tick(20);
        assert!(t > Hlc::new(5000, 7));
    }

    #[test]
    fn logical_overflow_carries_into_wall() {
        let mut c = HlcClock::new();
        c.observe(Hlc::new(10, u16::MAX));
        let t = c.tick(10);
        assert_eq!(t.wall_ms(), 11);
        assert_eq!(t.logical(), 0);
    }
}
