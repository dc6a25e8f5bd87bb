//! Sending: [`PeerSession::poll_transmit`] and the order frames go out in
//! (handshake, control messages, digests, acks, data, heartbeats), the lag
//! alert, the rate limit, and op batches streamed from the engine's backlog
//! within the in-flight window (a full sync where the backlog cannot serve).
//! Sending takes the engine mutably: the backlog reads older ops back from
//! the op log.

use super::{Link, Outbound, PeerSession, SessionError, SessionEvent, Timer, ACK_WAIT_MS};
use crate::wire::{encode_frame, Hello, Message, PROTOCOL_VERSION};
use chorus_engine::stability::{Report, REPORTS_MAX};
use chorus_engine::Engine;
use chorus_engine::Hlc;

impl PeerSession {
    /// The next frame to write to the connection, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now_ms: u64, engine: &mut Engine) -> Option<Vec<u8>> {
        let frame = self.next_frame(now_ms, engine);
        if !self.inflight.is_empty() && self.timers.at[Timer::AckWait as usize].is_none() {
            self.timers
                .set(Timer::AckWait, now_ms.saturating_add(ACK_WAIT_MS));
        }
        if let Some(f) = &frame {
            self.stats.bytes_out += f.len() as u64;
            self.heartbeat_due = false;
            if self.link == Link::Up {
                self.timers.set(
                    Timer::Heartbeat,
                    now_ms.saturating_add(self.config.heartbeat_interval_ms),
                );
            }
        }
        debug_assert!(self.invariants_hold());
        frame
    }

    // ---- internals: sending ------------------------------------------------------

    pub(super) fn encode(&mut self, msg: Message) -> Option<Vec<u8>> {
        match encode_frame(&msg) {
            Ok(frame) => Some(frame),
            Err(e) => {
                self.close(SessionError::Wire(e));
                None
            }
        }
    }

    fn next_frame(&mut self, now_ms: u64, engine: &mut Engine) -> Option<Vec<u8>> {
        // The handshake goes out even on a session that is refusing the peer.
        if self.hello_pending {
            self.hello_pending = false;
            let hello = Hello {
                cluster_id: self.config.cluster_id,
                site_id: engine.site_id(),
                protocol_version: PROTOCOL_VERSION,
                vv: engine.vv().clone(),
            };
            return self.encode(Message::Hello(hello));
        }
        if let Some(reason) = self.refuse_pending.take() {
            return self.encode(Message::HelloRefused { reason });
        }
        if self.link != Link::Up {
            return None;
        }
        self.check_lag(engine);
        if self.rewind_pending {
            self.rewind_pending = false;
            self.stats.rewinds_sent += 1;
            return self.encode(Message::Rewind {
                vv: engine.vv().clone(),
            });
        }
        if let Some(vv) = self.catch_up_out.take() {
            return self.encode(Message::CatchUp { vv });
        }
        if self.snapshot_request_pending {
            self.snapshot_request_pending = false;
            return self.encode(Message::SnapshotRequest);
        }
        if let Some(db) = self.digest_request_pending.take() {
            return self.encode(Message::DigestRequest { db });
        }
        if self.anti_entropy_due {
            self.start_anti_entropy(now_ms, engine);
        }
        if self.digest_queries_out != 0 {
            let db = self.digest_queries_out.trailing_zeros() as u8;
            self.digest_queries_out &= !(1u32 << db);
            return self.encode(Message::DigestQuery {
                vv: self.round_cut.clone(),
                db,
            });
        }
        if let Some(msg) = self.digest_answers.pop_front() {
            return self.encode(*msg);
        }
        if let Some(frame) = self.ack_if_due(now_ms, engine) {
            return Some(frame);
        }
        if self.reports_due {
            self.reports_due = false;
            self.reports_out = report_messages(engine.clock(), engine.stability_reports(now_ms));
        }
        if let Some(msg) = self.reports_out.pop() {
            return self.encode(msg);
        }
        if !self.paused {
            if let Some(frame) = self.data_frame(now_ms, engine) {
                return Some(frame);
            }
            if self.link != Link::Up {
                return None;
            }
        }
        if self.heartbeat_due || self.timers.expired(Timer::Heartbeat, now_ms) {
            return self.encode(Message::Heartbeat {
                hlc: engine.clock(),
            });
        }
        None
    }

    fn check_lag(&mut self, engine: &Engine) {
        let lag = self.ops_lag(engine);
        if !self.lagging && lag > self.config.lag_ops_alert {
            self.lagging = true;
            self.push_event(SessionEvent::Lagging { ops_lag: lag });
        } else if self.lagging && lag <= self.config.lag_ops_alert / 2 {
            self.lagging = false;
            self.push_event(SessionEvent::CaughtUp);
        }
    }

    /// An ack when what we hold changed since the last one: at once when the
    /// durable vector moved (`WAIT` and sync writes wait for it; it moves at
    /// most once per fsync, so these coalesce by themselves), otherwise once
    /// `ack_interval_ms` has passed. `vv` is the *durable* vector: never
    /// promise what a crash could still take away.
    fn ack_if_due(&mut self, now_ms: u64, engine: &Engine) -> Option<Vec<u8>> {
        let applied = engine.vv();
        let durable = if self.config.canary_ack_before_durable {
            applied
        } else {
            engine.durable_vv()
        };
        let durable_moved = self.ack_sent.as_ref().map_or(true, |(d, _)| d != durable);
        let changed = durable_moved
            || self.ack_wanted
            || self.ack_sent.as_ref().map_or(true, |(_, a)| a != applied);
        if !changed {
            self.timers.stop(Timer::Ack);
            return None;
        }
        if let (false, Some(last)) = (durable_moved, self.last_ack_sent_ms) {
            let due = last.saturating_add(self.config.ack_interval_ms);
            if now_ms < due {
                self.timers.set(Timer::Ack, due);
                return None;
            }
        }
        self.timers.stop(Timer::Ack);
        self.ack_wanted = false;
        self.ack_sent = Some((durable.clone(), applied.clone()));
        self.last_ack_sent_ms = Some(now_ms);
        self.stats.acks_sent += 1;
        self.encode(Message::Ack {
            vv: durable.clone(),
            applied_vv: applied.clone(),
        })
    }

    fn data_frame(&mut self, now_ms: u64, engine: &mut Engine) -> Option<Vec<u8>> {
        if !self.rate.ready(now_ms) {
            self.timers
                .set(Timer::RateLimit, self.rate.ready_at(now_ms));
            return None;
        }
        self.timers.stop(Timer::RateLimit);
        if self.peer_wants_snapshot && !matches!(self.outbound, Outbound::FullSync(_)) {
            self.peer_wants_snapshot = false;
            self.start_snapshot(engine);
        }
        if let Some(frame) = self.next_repair_frame(engine) {
            self.rate.spend(frame.len(), now_ms);
            return Some(frame);
        }
        let frame = match self.outbound {
            Outbound::Idle => None,
            Outbound::Streaming { .. } => self.next_batch(engine),
            Outbound::FullSync(_) => self.next_snapshot_frame(),
        }?;
        self.rate.spend(frame.len(), now_ms);
        Some(frame)
    }

    fn next_batch(&mut self, engine: &mut Engine) -> Option<Vec<u8>> {
        if self.inflight.len() >= self.config.inflight_batches_max
            || self.inflight_bytes >= self.config.inflight_bytes_max
        {
            return None;
        }
        let Outbound::Streaming { cursor } = self.outbound else {
            return None;
        };
        // The backlog must still hold every op the peer lacks; otherwise (ops
        // trimmed, or received through a snapshot) only a full sync can help.
        // So does a read of the op log that failed (the engine says why).
        let servable = engine.backlog().can_serve(&self.peer_known, engine.vv());
        let cursor = if servable {
            cursor.or_else(|| engine.backlog_cursor(&self.peer_known))
        } else {
            None
        };
        let read = cursor.and_then(|c| {
            engine.backlog_read(
                c,
                &self.peer_known,
                self.config.batch_ops_max,
                self.config.batch_bytes_max,
            )
        });
        let Some((entries, next)) = read else {
            self.start_snapshot(engine);
            return self.next_snapshot_frame();
        };
        self.outbound = Outbound::Streaming { cursor: Some(next) };
        if entries.is_empty() {
            return None;
        }
        let mut known = self.peer_known.clone();
        for e in &entries {
            if known.get(e.id.origin) + 1 != e.id.seq {
                // A gap: the peer would buffer these forever. Cannot happen when
                // the backlog serves the peer; fall back to a full sync anyway.
                self.start_snapshot(engine);
                return self.next_snapshot_frame();
            }
            known.set(e.id.origin, e.id.seq);
        }
        let n = entries.len() as u64;
        let frame = self.encode(Message::OpBatch {
            ops: entries.into_iter().map(|e| e.bytes).collect(),
        })?;
        self.peer_known = known;
        self.inflight_bytes += frame.len();
        self.inflight
            .push_back((self.peer_known.clone(), frame.len()));
        self.stats.ops_sent += n;
        self.stats.batches_sent += 1;
        Some(frame)
    }
}

/// Bytes of reports per `Reports` message, roughly: each is a few hundred
/// bytes per 16 origins, so a cluster's reports take one message or a few.
const REPORTS_BYTES_PER_MESSAGE: usize = 64 << 10;

/// The reports cut into messages of about `REPORTS_BYTES_PER_MESSAGE`.
fn report_messages(hlc: Hlc, reports: Vec<Report>) -> Vec<Message> {
    let mut out = Vec::new();
    let mut cur: Vec<Report> = Vec::new();
    let mut bytes = 0usize;
    for r in reports {
        let size = 24 + 16 * r.vv.len();
        if !cur.is_empty() && (bytes + size > REPORTS_BYTES_PER_MESSAGE || cur.len() >= REPORTS_MAX)
        {
            out.push(Message::Reports {
                hlc,
                reports: std::mem::take(&mut cur),
            });
            bytes = 0;
        }
        bytes += size;
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(Message::Reports { hlc, reports: cur });
    }
    out
}
