//! The peer's clock, as its stamps show it: skew figures for `INFO`, a
//! warning at most once a minute when its stamps run ahead of our clock by
//! more than the bound, and refusal of a stamp absurdly far ahead (see
//! docs/semantics.md, "Clocks").

use chorus_engine::hlc::{Hlc, CLOCK_AHEAD_ABSURD_MS};
use chorus_engine::Engine;

use super::{PeerSession, SessionError, SessionEvent};

/// At most one `ClockAhead` event per this many milliseconds.
const CLOCK_WARN_INTERVAL_MS: u64 = 60_000;

impl PeerSession {
    /// Tells the session the wall clock at the driver's `now_ms`, for a
    /// driver whose `now_ms` is not wall time (the simulator runs timers on
    /// virtual time). The QUIC driver's `now_ms` reads as wall time, which
    /// is the default.
    pub fn set_wall_clock(&mut self, now_ms: u64, wall_ms: u64) {
        let diff = i128::from(wall_ms) - i128::from(now_ms);
        self.wall_offset_ms =
            i64::try_from(diff).unwrap_or(if diff < 0 { i64::MIN } else { i64::MAX });
    }

    fn wall_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add_signed(self.wall_offset_ms)
    }

    /// Checks the stamps of what the peer sent (`ops` of them carry
    /// `stamps`, or a single heartbeat/snapshot stamp with `ops == 0`)
    /// against our clock at `now_ms`. Returns false, with the session
    /// closed, if one is absurdly far ahead: nothing of it may be applied.
    pub(super) fn check_peer_stamps(
        &mut self,
        now_ms: u64,
        stamps: impl Iterator<Item = Hlc>,
        engine: &Engine,
    ) -> bool {
        let bound = engine.config().max_clock_skew_ms;
        let wall_ms = self.wall_ms(now_ms);
        let mut newest_ahead = None;
        let mut ops_ahead = 0u64;
        for hlc in stamps {
            let ahead = hlc.wall_ms().saturating_sub(wall_ms);
            if ahead > CLOCK_AHEAD_ABSURD_MS {
                self.close(SessionError::ClockAbsurd {
                    peer: self.peer_site.unwrap_or(0),
                    ahead_ms: ahead,
                });
                return false;
            }
            if bound > 0 && ahead > bound {
                ops_ahead += 1;
            }
            newest_ahead = Some(ahead);
        }
        if let Some(ahead) = newest_ahead {
            self.stats.clock_skew_ms = ahead;
        }
        if ops_ahead > 0 {
            self.stats.ops_stamped_ahead += ops_ahead;
        }
        let ahead = self.stats.clock_skew_ms;
        let due = self
            .clock_warned_ms
            .map_or(true, |t| now_ms.saturating_sub(t) >= CLOCK_WARN_INTERVAL_MS);
        if bound > 0 && ahead > bound && due {
            self.clock_warned_ms = Some(now_ms);
            self.push_event(SessionEvent::ClockAhead {
                ahead_ms: ahead,
                ops_ahead: self.stats.ops_stamped_ahead,
            });
        }
        true
    }
}
