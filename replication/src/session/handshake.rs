//! Connection lifecycle and the handshake: a connection coming up (our `Hello`
//! queued) or going away, the peer's `Hello` checked (protocol version,
//! cluster, site id, reissued OpIds, a peer whose disk went back) and accepted
//! or refused, and the peer's refusal of ours.

use super::{Link, Outbound, PeerSession, SessionError, SessionEvent, Timer};
use crate::wire::{Hello, RefuseReason, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use chorus_engine::id::VersionVector;
use chorus_engine::{Engine, EngineError};

impl PeerSession {
    /// A new connection to the peer is up: start the handshake.
    pub fn handle_connected(&mut self, now_ms: u64) {
        self.reset_connection();
        self.link = Link::Handshake;
        self.hello_pending = true;
        self.last_recv_ms = now_ms;
        self.timers.set(
            Timer::Idle,
            now_ms.saturating_add(self.config.idle_timeout_ms),
        );
        self.stats.connects += 1;
        debug_assert!(self.invariants_hold());
    }

    /// The connection is gone (closed by either side or by the driver).
    pub fn handle_disconnected(&mut self, _now_ms: u64) {
        self.reset_connection();
        self.link = Link::Down;
        debug_assert!(self.invariants_hold());
    }

    /// Refuses the peer's Hello: our refusal (and our Hello, if not yet out)
    /// are still written, then the connection is done.
    fn refuse(&mut self, reason: RefuseReason) {
        let hello_pending = self.hello_pending;
        self.reset_connection();
        self.link = Link::Down;
        self.hello_pending = hello_pending;
        self.refuse_pending = Some(reason.clone());
        self.push_event(SessionEvent::Refused {
            reason,
            by_peer: false,
        });
    }

    pub(super) fn on_hello(&mut self, now_ms: u64, h: Hello, engine: &mut Engine) {
        let refusal = if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&h.protocol_version) {
            Some(RefuseReason::ProtocolVersion {
                min: PROTOCOL_VERSION_MIN,
                max: PROTOCOL_VERSION,
                got: h.protocol_version,
            })
        } else if h.cluster_id != self.config.cluster_id {
            Some(RefuseReason::ClusterMismatch {
                ours: self.config.cluster_id,
                theirs: h.cluster_id,
            })
        } else if h.site_id == engine.site_id() {
            Some(RefuseReason::DuplicateSiteId { site_id: h.site_id })
        } else if engine.membership().is_removed(h.site_id) {
            Some(RefuseReason::Removed { site_id: h.site_id })
        } else {
            match self.config.peer_site_id {
                Some(expected) if expected != h.site_id => Some(RefuseReason::UnexpectedSite {
                    expected,
                    got: h.site_id,
                }),
                _ => None,
            }
        };
        if let Some(reason) = refusal {
            self.refuse(reason);
            return;
        }
        // From now on this site is not alone (its counters stop folding, and
        // a peer below what it folded gets a full sync).
        engine.note_peer();
        // A site that lost its history (wiped disk) must not reissue OpIds the
        // peer already holds: the engine moves to a fresh incarnation.
        match engine.observe_peer_vv(&h.vv) {
            Ok(_) => {}
            Err(e @ EngineError::ReissuedOpIds { .. }) => {
                self.stats.opid_conflicts += 1;
                self.close(SessionError::OpIdConflict {
                    ours: engine.site_id(),
                    peer: h.site_id,
                    detail: e.to_string(),
                });
                return;
            }
            Err(e) => {
                self.close(SessionError::Engine(e.to_string()));
                return;
            }
        }
        // A peer that was not a member when this site made a report some
        // site may have folded with, and lacks ops that report covers, takes
        // no writes until it holds them (an op it made in between could not
        // be applied to such a fold).
        if let Some(vv) = engine.newcomer_catch_up(h.site_id, &h.vv) {
            self.stats.newcomer_catch_ups += 1;
            self.catch_up_out = Some(vv);
        }
        // A site that holds less than it reported (a salvaged op log) asks
        // for the state whole: it takes writes again once merged.
        if engine.catching_up() {
            self.snapshot_request_pending = true;
        }
        // Both sites are members from now on, before anything is sent.
        if let Err(e) = engine.register_session(h.site_id, now_ms) {
            self.close(SessionError::Engine(e.to_string()));
            return;
        }
        // A peer whose durable state went back (its disk restored from an
        // older copy, or wiped) no longer holds what it acknowledged: forget
        // its acks, and stream it what it lacks (a full sync where the
        // backlog no longer has it).
        if !h.vv.dominates(&self.peer_acked) {
            self.stats.peer_regressions += 1;
            self.push_event(SessionEvent::PeerWentBack {
                peer_site: h.site_id,
                lost_ops: self.peer_acked.ops_ahead_of(&h.vv),
            });
            // What it holds durably now is unknown (its Hello shows what it
            // applied): nothing, until its next ack says.
            self.peer_acked = VersionVector::new();
        }
        self.link = Link::Up;
        self.peer_site = Some(h.site_id);
        self.peer_protocol_version = h.protocol_version;
        self.peer_known = h.vv;
        self.peer_confirmed = self.peer_known.clone();
        self.outbound = Outbound::Streaming { cursor: None };
        self.timers.set(
            Timer::Heartbeat,
            now_ms.saturating_add(self.config.heartbeat_interval_ms),
        );
        self.reports_due = true;
        self.timers.set(
            Timer::Reports,
            now_ms.saturating_add(self.config.heartbeat_interval_ms),
        );
        // The lower site runs the rounds; the higher one only when those
        // stop coming (see `on_digest_query`).
        self.arm_anti_entropy(now_ms, h.site_id < engine.site_id());
        self.push_event(SessionEvent::Connected {
            peer_site: h.site_id,
        });
    }

    pub(super) fn on_refused(&mut self, reason: RefuseReason) {
        self.reset_connection();
        self.link = Link::Down;
        self.push_event(SessionEvent::Refused {
            reason,
            by_peer: true,
        });
    }
}
