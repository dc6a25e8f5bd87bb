//! The session's timers: one deadline per `Timer` (idle, heartbeat, held-back
//! ack, rate limit, ack wait, anti-entropy), [`PeerSession::poll_timeout`]
//! (the earliest of them) and [`PeerSession::handle_timeout`] (what each one
//! does when it fires).

use super::{Outbound, PeerSession, SessionError};
use chorus_engine::Engine;

/// The session's timers, one slot each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Nothing received for `idle_timeout_ms`: the connection is dead.
    Idle = 0,
    /// Nothing sent for `heartbeat_interval_ms`: send a heartbeat.
    Heartbeat = 1,
    /// An ack was held back by `ack_interval_ms`.
    Ack = 2,
    /// Data was held back by the rate limit.
    RateLimit = 3,
    /// Batches are in flight and no ack has made progress for
    /// `ACK_WAIT_MS`: resend from what the peer confirmed.
    AckWait = 4,
    /// Time for an anti-entropy round.
    AntiEntropy = 5,
    /// Time to send the stability reports (every heartbeat interval).
    Reports = 6,
}

const TIMERS: usize = 7;

#[derive(Clone, Debug, Default)]
pub(super) struct Timers {
    pub(super) at: [Option<u64>; TIMERS],
}

impl Timers {
    pub(super) fn set(&mut self, t: Timer, at_ms: u64) {
        self.at[t as usize] = Some(at_ms);
    }
    pub(super) fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }
    pub(super) fn expired(&self, t: Timer, now_ms: u64) -> bool {
        self.at[t as usize].is_some_and(|at| at <= now_ms)
    }
    pub(super) fn next(&self) -> Option<u64> {
        self.at.iter().flatten().min().copied()
    }
    pub(super) fn clear(&mut self) {
        self.at = [None; TIMERS];
    }
    pub(super) fn is_clear(&self) -> bool {
        self.at.iter().all(Option::is_none)
    }
}

impl PeerSession {
    /// Call once `now_ms` reaches `poll_timeout()`; an early call does nothing.
    pub fn handle_timeout(&mut self, now_ms: u64, engine: &mut Engine) {
        if !self.is_connected() {
            return;
        }
        if self.timers.expired(Timer::Idle, now_ms) {
            self.close(SessionError::IdleTimeout {
                silent_ms: now_ms.saturating_sub(self.last_recv_ms),
            });
            debug_assert!(self.invariants_hold());
            return;
        }
        if self.timers.expired(Timer::Heartbeat, now_ms) {
            self.timers.stop(Timer::Heartbeat);
            self.heartbeat_due = true;
        }
        if self.timers.expired(Timer::AckWait, now_ms) {
            self.timers.stop(Timer::AckWait);
            if !self.inflight.is_empty() {
                self.stats.ack_timeouts += 1;
                self.peer_known = self.peer_confirmed.clone();
                self.clear_inflight();
                if let Outbound::Streaming { cursor } = &mut self.outbound {
                    *cursor = None;
                }
            }
        }
        if self.timers.expired(Timer::Reports, now_ms) {
            self.timers.set(
                Timer::Reports,
                now_ms.saturating_add(self.config.heartbeat_interval_ms),
            );
            self.reports_due = true;
            // A removal applied while the session runs ends it (the next
            // handshake is refused).
            let m = engine.membership();
            let gone = [self.peer_site, Some(engine.site_id())]
                .into_iter()
                .flatten()
                .find(|&s| m.is_removed(s));
            if let Some(site) = gone {
                self.close(SessionError::Removed { site });
                debug_assert!(self.invariants_hold());
                return;
            }
        }
        if self.timers.expired(Timer::AntiEntropy, now_ms) {
            self.timers.stop(Timer::AntiEntropy);
            self.anti_entropy_due = true;
        }
        // One-shot wake-ups: `poll_transmit` re-arms them if still held back.
        for t in [Timer::Ack, Timer::RateLimit] {
            if self.timers.expired(t, now_ms) {
                self.timers.stop(t);
            }
        }
        debug_assert!(self.invariants_hold());
    }

    /// When to call `handle_timeout` next (`now_ms` units), if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.is_connected() {
            self.timers.next()
        } else {
            None
        }
    }
}
