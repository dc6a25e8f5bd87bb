//! Ops from peers: duplicates, the causal buffer for ops whose deps are
//! missing, and OpIds issued twice (the newest op of each origin, and a
//! peer's vector that shows this site lost its history).

use super::{ChangeSource, Engine, EngineError, OpIdConflict, Tip, META_INCARNATION, TIPS_MAX};
use crate::crdt::Ctx;
use crate::id::{OpId, Origin, VersionVector};
use crate::log;
use crate::op::Op;
use crate::storage::StorageError;
use bytes::Bytes;

/// What `apply_remote` did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteOutcome {
    pub applied: usize,
    pub duplicates: usize,
    pub buffered: usize,
    /// Dropped because the causal buffer was full; the sender must resend.
    pub dropped: usize,
    /// An OpId this site holds arrived with a different op: two ops were
    /// issued under one OpId (see [`EngineError::ReissuedOpIds`]). The rest
    /// of the batch was not applied; the session must stop.
    pub conflict: Option<OpIdConflict>,
}

impl Engine {
    /// Learns a peer's version vector (handshake). If the peer holds ops of
    /// this site from an incarnation at or above ours beyond what we hold,
    /// this site lost its history (disk wiped or restored from an old copy):
    /// it moves to a fresh incarnation so it never reissues those OpIds.
    /// Returns true when the incarnation changed.
    pub fn observe_peer_vv(&mut self, peer: &VersionVector) -> Result<bool, EngineError> {
        let mut max_seen: Option<u32> = None;
        for (o, q) in peer.iter() {
            if o.site == self.config.site_id
                && o.incarnation >= self.origin.incarnation
                && q > self.vv.get(o)
            {
                max_seen = Some(max_seen.map_or(o.incarnation, |m| m.max(o.incarnation)));
            }
        }
        let Some(m) = max_seen else { return Ok(false) };
        if let Some((from, to)) = self.reissued_range(peer.get(self.origin)) {
            self.stats.opid_conflicts += 1;
            return Err(EngineError::ReissuedOpIds {
                site: self.config.site_id,
                origin: self.origin,
                from,
                to,
            });
        }
        self.end_group();
        let inc = m.saturating_add(1);
        self.storage
            .meta_put(META_INCARNATION, &inc.to_le_bytes())?;
        tracing::warn!(
            incarnation = inc,
            "a peer holds newer ops of this site than its own log: starting a new incarnation"
        );
        self.origin = Origin::new(self.config.site_id, inc);
        self.next_seq = self.vv.get(self.origin) + 1;
        self.first_seq_this_start = self.next_seq;
        debug_assert!(self.invariants_hold());
        Ok(true)
    }

    /// The seqs of the current incarnation this start issued that another
    /// life also issued, when a peer holds that life's ops up to `peer_seq`
    /// beyond ours: `None` when this start issued none.
    fn reissued_range(&self, peer_seq: u64) -> Option<(u64, u64)> {
        let last = self.next_seq.checked_sub(1)?;
        (peer_seq > self.vv.get(self.origin) && last >= self.first_seq_this_start)
            .then_some((self.first_seq_this_start, last))
    }

    /// True when `bytes` (an encoding of `op`) is the op this site holds
    /// under `op.id`, as far as it can tell: only the newest op of each
    /// origin is kept to compare with; older ones are taken on trust.
    fn same_as_held(&self, op: &Op, bytes: Option<&Bytes>) -> bool {
        let Some((_, held)) = self
            .tips
            .get(&op.id.origin)
            .filter(|(seq, _)| *seq == op.id.seq)
        else {
            return true;
        };
        match held {
            Tip::Bytes(held) => {
                if bytes.is_some_and(|b| b == held) {
                    return true;
                }
                log::decode_op(held).map_or(true, |h| &h == op)
            }
            Tip::Hash(h) => {
                let theirs = match bytes {
                    Some(b) => blake3::hash(b),
                    None => blake3::hash(&log::encode_op(op)),
                };
                theirs.as_bytes() == h
            }
        }
    }

    /// Remembers the newest op of its origin (see `same_as_held`).
    pub(super) fn note_tip(&mut self, id: OpId, bytes: &Bytes) {
        match self.tips.get_mut(&id.origin) {
            Some(t) => {
                if t.0 < id.seq {
                    *t = (id.seq, Tip::Bytes(bytes.clone()));
                }
            }
            None => {
                if self.tips.len() < TIPS_MAX {
                    self.tips
                        .insert(id.origin, (id.seq, Tip::Bytes(bytes.clone())));
                }
            }
        }
    }

    pub(super) fn deps_ready(&self, op: &Op) -> bool {
        self.vv.get(op.id.origin) + 1 == op.id.seq
            && (self.config.canaries.skip_deps || self.vv.dominates(&op.deps))
    }

    pub(super) fn apply_op_internal(&mut self, op: &Op) {
        self.clock.observe(op.hlc);
        if self.changes.is_some() {
            // Effect by effect, to see each key before and after (the
            // events `new` and `del`, and expiry's deletes).
            let source = ChangeSource::Peer(op.id.origin);
            let ctx = Ctx {
                deps: &op.deps,
                own: op.id,
                hlc: op.hlc,
                fold: self.keyspace.fold,
            };
            for e in &op.effects {
                let probe = self.probe(e.db, &e.key, op.hlc.wall_ms());
                self.keyspace
                    .apply_effect(e.db, &e.key, &e.effect, &ctx, &self.vv);
                self.note_effect(e.db, &e.key, &e.effect, source, probe);
            }
        } else {
            self.keyspace.apply_op(op, &self.vv);
        }
        self.vv.set(op.id.origin, op.id.seq);
        self.op_completed();
    }

    /// Applies ops from a peer: drops those already held, buffers those whose
    /// deps are missing (bounded), applies and logs the rest in causal order.
    pub fn apply_remote(&mut self, ops: Vec<Op>) -> RemoteOutcome {
        self.apply_remote_from(ops.into_iter().map(|op| (op, None)))
    }

    /// [`Engine::apply_remote`] for ops as they came from a peer: each with
    /// its encoded bytes (the payload [`log::encode_record`] wrote at its
    /// origin, which the caller decoded into the op). An op applied at once
    /// is logged and kept for peers as those bytes, without encoding it
    /// again; one that waits for its deps is encoded when it is applied.
    pub fn apply_remote_encoded(&mut self, ops: Vec<(Op, Bytes)>) -> RemoteOutcome {
        self.apply_remote_from(ops.into_iter().map(|(op, b)| (op, Some(b))))
    }

    fn apply_remote_from(
        &mut self,
        ops: impl Iterator<Item = (Op, Option<Bytes>)>,
    ) -> RemoteOutcome {
        self.note_peer();
        let mut out = RemoteOutcome::default();
        let mut lost_history = false;
        for (op, encoded) in ops {
            if self.vv.covers(op.id) || self.causal_buffer.contains_key(&op.id) {
                if self.vv.covers(op.id) && !self.same_as_held(&op, encoded.as_ref()) {
                    tracing::error!(
                        op = %op.id,
                        "a peer sent a different op under an OpId this site holds: OpIds were issued twice (a restored or cloned disk)"
                    );
                    out.conflict = Some(OpIdConflict::Payload { id: op.id });
                    break;
                }
                if self.config.canaries.no_dedup && self.vv.covers(op.id) {
                    // The canary: applied a second time.
                    self.keyspace.apply_op(&op, &self.vv);
                    self.log_remote(&op, encoded);
                    self.op_completed();
                    out.applied += 1;
                    continue;
                }
                out.duplicates += 1;
                continue;
            }
            if op.id.origin == self.origin {
                // A peer holds ops of our current incarnation that we lack:
                // another life of this site issued them (the disk was wiped,
                // restored or cloned). If this start issued ops of its own
                // under the same OpIds, the histories forked: refuse.
                if self.reissued_range(op.id.seq).is_some() {
                    tracing::error!(
                        op = %op.id,
                        "a peer holds ops of this site's current incarnation that this start issued differently (a restored or cloned disk)"
                    );
                    out.conflict = Some(OpIdConflict::Reissued { id: op.id });
                    break;
                }
                // Take them, and move to a new incarnation so that no OpId
                // a peer might hold is reused.
                lost_history = true;
            }
            if self.deps_ready(&op) {
                self.apply_remote_one(op, encoded);
                out.applied += 1;
                out.applied += self.drain_causal_buffer();
            } else if self.causal_buffer.len() < self.config.causal_buffer_ops_max {
                self.causal_buffer.insert(op.id, op);
                out.buffered += 1;
            } else {
                out.dropped += 1;
            }
        }
        self.stats.ops_remote_duplicate += out.duplicates as u64;
        self.stats.ops_remote_dropped += out.dropped as u64;
        if out.conflict.is_some() {
            self.stats.opid_conflicts += 1;
        }
        if lost_history {
            self.next_seq = self.vv.get(self.origin) + 1;
            // The ops taken are another life's, none of this start's.
            self.first_seq_this_start = self.next_seq;
            let mut peer = VersionVector::new();
            peer.set(self.origin, u64::MAX);
            if let Err(e) = self.observe_peer_vv(&peer) {
                self.poison(StorageError::Poisoned(e.to_string()));
            }
        }
        self.note_overlaps(crate::crdt::counter::take_overlaps());
        self.publish_changes();
        debug_assert!(self.invariants_hold());
        out
    }

    fn apply_remote_one(&mut self, op: Op, encoded: Option<Bytes>) {
        if self.config.canaries.lww_arrival_order {
            // The canary: stamped on arrival, applied with that stamp; logged
            // and forwarded as it came.
            let mut arrived = op.clone();
            arrived.hlc = crate::hlc::Hlc(self.clock.last().0.saturating_add(1));
            self.apply_op_internal(&arrived);
        } else {
            self.apply_op_internal(&op);
        }
        self.log_remote(&op, encoded);
        self.stats.ops_remote_applied += 1;
    }

    /// Logs a remote op and keeps it for peers: as the bytes it came in,
    /// when it has them, without encoding it again.
    fn log_remote(&mut self, op: &Op, encoded: Option<Bytes>) {
        match encoded {
            Some(payload) => {
                self.record_buf.clear();
                log::frame_record(&payload, &mut self.record_buf);
                self.log_and_keep(op.id, payload);
            }
            None => self.append_op(op),
        }
    }

    pub(super) fn drain_causal_buffer(&mut self) -> usize {
        let mut n = 0;
        loop {
            let ready: Vec<OpId> = self
                .causal_buffer
                .values()
                .filter(|op| self.deps_ready(op))
                .map(|op| op.id)
                .take(1024)
                .collect();
            if ready.is_empty() {
                return n;
            }
            for id in ready {
                if let Some(op) = self.causal_buffer.remove(&id) {
                    if self.deps_ready(&op) {
                        self.apply_remote_one(op, None);
                        n += 1;
                    } else {
                        self.causal_buffer.insert(id, op);
                    }
                }
            }
        }
    }
}
