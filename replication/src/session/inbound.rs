//! Receiving: bytes buffered and decoded (within a work budget per call),
//! each message dispatched by link state, op batches decoded whole and applied,
//! and the peer's acks and rewinds retiring or resetting what is in flight.

use super::{Link, Outbound, PeerSession, SessionError, Timer, ACK_WAIT_MS};
use crate::wire::Message;
use bytes::Bytes;
use chorus_engine::anti_entropy::LeafSummary;
use chorus_engine::id::VersionVector;
use chorus_engine::log::decode_op;
use chorus_engine::Engine;

impl PeerSession {
    /// Bytes read from the connection, in order: handles every whole message.
    pub fn handle_bytes(&mut self, now_ms: u64, bytes: &[u8], engine: &mut Engine) {
        self.push_bytes(now_ms, bytes);
        self.handle_received(now_ms, engine, usize::MAX);
    }

    /// Bytes read from the connection, in order, buffered without handling
    /// them: follow with [`PeerSession::handle_received`] until it returns
    /// `false`. Lets a driver apply a large read in slices and release the
    /// engine between them.
    pub fn push_bytes(&mut self, now_ms: u64, bytes: &[u8]) {
        if !self.is_connected() {
            return;
        }
        self.stats.bytes_in += bytes.len() as u64;
        self.note_received(now_ms);
        self.rx.push(bytes);
        debug_assert!(self.invariants_hold());
    }

    /// Handles buffered messages until they are used up or about `work_max`
    /// ops and rows were handled: a message is held back for the next call
    /// when it would cross `work_max` (a single larger message is handled
    /// alone). Returns `true` when it stopped for the budget, i.e. call again.
    pub fn handle_received(&mut self, now_ms: u64, engine: &mut Engine, work_max: usize) -> bool {
        let mut work = 0usize;
        let mut more = false;
        while self.is_connected() {
            let msg = match self.received_held.take() {
                Some(msg) => *msg,
                None => match self.rx.next_message() {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(e) => {
                        self.close(SessionError::Wire(e));
                        break;
                    }
                },
            };
            let w = message_work(&msg);
            if work > 0 && work.saturating_add(w) > work_max {
                self.received_held = Some(Box::new(msg));
                more = true;
                break;
            }
            work = work.saturating_add(w);
            self.on_message(now_ms, msg, engine);
        }
        debug_assert!(self.invariants_hold());
        more
    }

    /// One decoded message (for drivers that frame messages themselves). It
    /// must satisfy [`Message::check`]; one that does not closes the session.
    pub fn handle_message(&mut self, now_ms: u64, msg: Message, engine: &mut Engine) {
        if !self.is_connected() {
            return;
        }
        self.note_received(now_ms);
        match msg.check() {
            Ok(()) => self.on_message(now_ms, msg, engine),
            Err(e) => self.close(SessionError::Wire(e)),
        }
        debug_assert!(self.invariants_hold());
    }

    // ---- internals: receiving ------------------------------------------------

    fn on_message(&mut self, now_ms: u64, msg: Message, engine: &mut Engine) {
        if self.link == Link::Handshake {
            match msg {
                Message::Hello(h) => self.on_hello(now_ms, h, engine),
                Message::HelloRefused { reason } => self.on_refused(reason),
                other => self.close(SessionError::UnexpectedMessage {
                    message: other.name(),
                    state: "waiting for Hello",
                }),
            }
            return;
        }
        match msg {
            Message::Hello(_) => self.close(SessionError::UnexpectedMessage {
                message: "Hello",
                state: "connected",
            }),
            Message::HelloRefused { reason } => self.on_refused(reason),
            // Pub/sub messages have a stream of their own (the driver's).
            Message::Publish(_) => self.close(SessionError::UnexpectedMessage {
                message: "Publish",
                state: "on the op stream",
            }),
            Message::OpBatch { ops } => self.on_batch(now_ms, ops, engine),
            // CANARY (simulator only): the ack is dropped on the floor.
            Message::Ack { .. } if self.config.canary_ignore_acks => {}
            Message::Ack { vv, applied_vv } => self.on_ack(now_ms, vv, applied_vv),
            Message::Rewind { vv } => self.on_rewind(vv),
            Message::SnapshotRequest => self.peer_wants_snapshot = true,
            Message::SnapshotBegin {
                vv,
                hlc,
                rows_total,
            } => {
                if self.check_peer_stamps(now_ms, std::iter::once(hlc), engine) {
                    self.on_snapshot_begin(now_ms, vv, hlc, rows_total);
                }
            }
            Message::SnapshotChunk { rows } => self.on_snapshot_chunk(rows),
            Message::SnapshotEnd => self.on_snapshot_end(engine),
            Message::DigestRequest { db } => {
                let cut = engine.vv().meet(&self.peer_confirmed);
                self.answer_digest(cut, db, engine);
            }
            Message::Digest {
                vv,
                db,
                buckets,
                unsettled,
                comparable,
                dbs,
            } => {
                self.peer_dbs = dbs;
                let theirs = comparable.then_some(LeafSummary {
                    leaves: buckets,
                    unsettled,
                });
                self.on_digest(now_ms, vv, db, theirs, engine)
            }
            Message::DigestQuery { vv, db } => self.on_digest_query(now_ms, vv, db, engine),
            Message::RepairRows {
                vv,
                db,
                buckets,
                rows,
                reply,
            } => self.on_repair_rows(vv, db, buckets, rows, reply, engine),
            Message::CatchUp { vv } => engine.require_catch_up(&vv),
            Message::Reports { hlc, reports } => {
                if !self.check_peer_stamps(now_ms, std::iter::once(hlc), engine) {
                    return;
                }
                self.stats.peer_hlc = Some(hlc);
                self.stats.peer_hlc_at_ms = Some(now_ms);
                engine.merge_reports(reports);
            }
            Message::Heartbeat { hlc } => {
                if !self.check_peer_stamps(now_ms, std::iter::once(hlc), engine) {
                    return;
                }
                self.stats.peer_hlc = Some(hlc);
                self.stats.peer_hlc_at_ms = Some(now_ms);
            }
        }
    }

    fn on_batch(&mut self, now_ms: u64, ops: Vec<Bytes>, engine: &mut Engine) {
        if self.incoming.is_some() {
            self.close(SessionError::UnexpectedMessage {
                message: "OpBatch",
                state: "receiving a snapshot",
            });
            return;
        }
        // Decode the whole batch before applying any of it: a bad op closes the
        // session with nothing of the batch applied.
        let mut decoded = Vec::with_capacity(ops.len());
        for bytes in &ops {
            match decode_op(bytes) {
                Ok(op) => decoded.push(op),
                Err(e) => {
                    self.close(SessionError::Op(e.to_string()));
                    return;
                }
            }
        }
        // A stamp absurdly far ahead closes the session with nothing of the
        // batch applied; one merely ahead of the bound is counted.
        if !self.check_peer_stamps(now_ms, decoded.iter().map(|op| op.hlc), engine) {
            return;
        }
        // The peer holds what it sends us, and everything before it: never echo
        // these back while its ack is on the way.
        for op in &decoded {
            self.peer_known.raise(op.id.origin, op.id.seq);
            self.peer_known.join(&op.deps);
        }
        let n = decoded.len() as u64;
        self.ack_wanted = true;
        // The ops are logged and kept for our peers as they came: no second
        // encoding.
        let outcome = engine.apply_remote_encoded(decoded.into_iter().zip(ops).collect());
        if let Some(conflict) = &outcome.conflict {
            self.stats.opid_conflicts += 1;
            let error = SessionError::OpIdConflict {
                ours: engine.site_id(),
                peer: self.peer_site.unwrap_or(0),
                detail: conflict.to_string(),
            };
            self.close(error);
            return;
        }
        self.stats.batches_received += 1;
        self.stats.ops_received += n;
        self.stats.ops_applied += outcome.applied as u64;
        self.stats.ops_duplicate += outcome.duplicates as u64;
        self.stats.ops_buffered += outcome.buffered as u64;
        if outcome.dropped > 0 {
            // The causal buffer overflowed: what was dropped must come again.
            self.stats.ops_dropped += outcome.dropped as u64;
            self.rewind_pending = true;
        }
    }

    fn on_ack(&mut self, now_ms: u64, vv: VersionVector, applied_vv: VersionVector) {
        self.stats.acks_received += 1;
        self.stats.last_ack_ms = Some(now_ms);
        let mut holds = applied_vv;
        holds.join(&vv);
        self.peer_known.join(&holds);
        self.peer_confirmed.join(&holds);
        let before = self.inflight.len();
        while self
            .inflight
            .front()
            .is_some_and(|(mark, _)| holds.dominates(mark))
        {
            if let Some((_, bytes)) = self.inflight.pop_front() {
                self.inflight_bytes -= bytes;
            }
        }
        if self.inflight.is_empty() {
            self.timers.stop(Timer::AckWait);
        } else if self.inflight.len() != before {
            self.timers
                .set(Timer::AckWait, now_ms.saturating_add(ACK_WAIT_MS));
        }
        self.peer_acked = vv;
    }

    fn on_rewind(&mut self, vv: VersionVector) {
        self.stats.rewinds_received += 1;
        self.peer_confirmed = vv.clone();
        self.peer_known = vv;
        self.clear_inflight();
        if let Outbound::Streaming { cursor } = &mut self.outbound {
            *cursor = None;
        }
    }
}

/// The apply work a received message costs: its ops or rows.
fn message_work(msg: &Message) -> usize {
    match msg {
        Message::OpBatch { ops } => ops.len(),
        Message::SnapshotChunk { rows } | Message::RepairRows { rows, .. } => rows.len(),
        _ => 0,
    }
}
