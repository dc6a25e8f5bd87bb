//! Anti-entropy (see `docs/replication.md`): rounds timed and started, the
//! peer's digest queries answered, digests compared at a common cut, and
//! leaves found different repaired both ways with `RepairRows`.

use super::{
    Link, Outbound, PeerSession, SessionError, SessionEvent, Timer, ANTI_ENTROPY_RETRY_MS,
};
use crate::wire::{Message, SnapshotRow, REPAIR_BYTES_MAX, REPAIR_ROWS_MAX};
use bytes::Bytes;
use chorus_engine::anti_entropy::LeafSummary;
use chorus_engine::id::VersionVector;
use chorus_engine::keyspace::image::RowImage;
use chorus_engine::keyspace::ALL_DBS as DBS;
use chorus_engine::{BucketRows, Engine};

impl PeerSession {
    pub(super) fn on_digest(
        &mut self,
        now_ms: u64,
        cut: VersionVector,
        db: u8,
        theirs: Option<LeafSummary>,
        engine: &mut Engine,
    ) {
        let Some(theirs) = theirs else {
            // The peer does not hold the cut yet, or is still hashing rows
            // changed since its last digest: try again soon.
            self.stats.digests_incomparable += 1;
            self.retry_anti_entropy(now_ms);
            return;
        };
        let ours = match engine.leaf_summary(db, &cut) {
            Ok(ours) => ours,
            Err(_) => {
                self.stats.digests_incomparable += 1;
                self.retry_anti_entropy(now_ms);
                return;
            }
        };
        self.stats.anti_entropy_checks += 1;
        let unsettled = ours.unsettled.len().max(theirs.unsettled.len());
        self.stats.anti_entropy_unsettled += unsettled as u64;
        // Leaves that ops beyond the cut changed are compared in the next
        // round (not sooner: under constant writes some always are).
        let differing = ours.differing(&theirs);
        if differing.is_empty() {
            self.push_event(SessionEvent::DigestMatched { db });
            return;
        }
        self.stats.anti_entropy_mismatches += differing.len() as u64;
        self.push_event(SessionEvent::DigestMismatch {
            db,
            buckets: differing.clone(),
        });
        // Repair: send our rows of those leaves, asking for theirs.
        self.repairs_out.retain(|(d, _, _)| *d != db);
        self.repairs_out.push_back((db, differing, cut));
    }

    pub(super) fn on_digest_query(
        &mut self,
        now_ms: u64,
        cut: VersionVector,
        db: u8,
        engine: &mut Engine,
    ) {
        self.answer_digest(cut, db, engine);
        // The peer's round covers this pair (repairs go both ways): ours
        // waits until the peer's next one is overdue, so one side runs the
        // rounds while it can.
        self.arm_anti_entropy(now_ms, true);
    }

    /// Queues our digest of `db` at `cut` (not comparable when we do not
    /// hold the cut or are still hashing changed rows).
    pub(super) fn answer_digest(&mut self, cut: VersionVector, db: u8, engine: &mut Engine) {
        let db = db % DBS as u8;
        let (summary, comparable) = match engine.leaf_summary(db, &cut) {
            Ok(s) => (s, true),
            Err(_) => (LeafSummary::default(), false),
        };
        // One answer per database: a newer query replaces an older answer.
        self.digest_answers
            .retain(|m| !matches!(&**m, Message::Digest { db: d, .. } if *d == db));
        if self.digest_answers.len() > DBS {
            self.digest_answers.pop_front();
        }
        self.digest_answers.push_back(Box::new(Message::Digest {
            vv: cut,
            db,
            buckets: summary.leaves,
            unsettled: summary.unsettled,
            comparable,
            dbs: nonempty_dbs(engine),
        }));
    }

    pub(super) fn on_repair_rows(
        &mut self,
        cut: VersionVector,
        db: u8,
        leaves: Vec<u16>,
        rows: Vec<SnapshotRow>,
        reply: bool,
        engine: &mut Engine,
    ) {
        if !engine.vv().dominates(&cut) {
            // We do not hold every op of the cut (our state went back since
            // the round began): the next round compares again.
            self.stats.anti_entropy_deferred += 1;
            return;
        }
        let mut decoded = Vec::with_capacity(rows.len());
        for row in rows {
            match RowImage::decode(&row.image) {
                Ok(image) => decoded.push((row.key, image)),
                Err(e) => {
                    self.close(SessionError::SnapshotRow(e.to_string()));
                    return;
                }
            }
        }
        let outcome = match engine.merge_bucket_rows(db, &leaves, &cut, decoded) {
            Ok(o) => o,
            Err(e) => {
                self.close(SessionError::Engine(e.to_string()));
                return;
            }
        };
        self.stats.anti_entropy_deferred += outcome.unsettled.len() as u64;
        if outcome.changed > 0 {
            self.stats.anti_entropy_repairs += 1;
            self.stats.anti_entropy_rows_repaired += outcome.changed as u64;
            self.push_event(SessionEvent::Repaired {
                db,
                buckets: outcome.merged.clone(),
                rows: outcome.changed as u64,
            });
        }
        if reply && !outcome.merged.is_empty() {
            if self.repair_reply.is_none() {
                // Ours after the join: the peer joins them in and both sides
                // hold the union.
                let mine = engine.bucket_rows(
                    db,
                    &outcome.merged,
                    &cut,
                    REPAIR_BYTES_MAX,
                    REPAIR_ROWS_MAX,
                );
                if !mine.too_large.is_empty() {
                    self.push_event(SessionEvent::RepairTooLarge {
                        db,
                        buckets: mine.too_large.clone(),
                    });
                }
                if !mine.buckets.is_empty() {
                    self.repair_reply = Some(Box::new(repair_message(&cut, db, mine)));
                }
            } else {
                self.stats.anti_entropy_deferred += 1;
            }
        }
    }

    /// Arms the anti-entropy timer one interval from now (or stops it).
    /// `yielding`: a quarter interval later, so that the peer's round, which
    /// covers the pair, comes first (see `on_digest_query`).
    pub(super) fn arm_anti_entropy(&mut self, now_ms: u64, yielding: bool) {
        let interval = self.config.anti_entropy_interval_ms;
        if self.link != Link::Up || interval == 0 {
            self.timers.stop(Timer::AntiEntropy);
            return;
        }
        let delay = if yielding {
            interval.saturating_add(interval / 4)
        } else {
            interval
        };
        self.timers
            .set(Timer::AntiEntropy, now_ms.saturating_add(delay));
    }

    /// Brings the next anti-entropy round forward to `ANTI_ENTROPY_RETRY_MS`.
    fn retry_anti_entropy(&mut self, now_ms: u64) {
        let interval = self.config.anti_entropy_interval_ms;
        if self.link != Link::Up || interval == 0 {
            return;
        }
        let at = now_ms.saturating_add(ANTI_ENTROPY_RETRY_MS.min(interval));
        let sooner = self.timers.at[Timer::AntiEntropy as usize].map_or(true, |t| at < t);
        if sooner {
            self.timers.set(Timer::AntiEntropy, at);
        }
    }

    /// A round needs the link up and streaming: not paused, no snapshot on
    /// its way in either direction (writes on both sides are fine: leaves
    /// they change are left for a later round).
    fn link_ready_for_anti_entropy(&self) -> bool {
        self.link == Link::Up
            && !self.paused
            && self.incoming.is_none()
            && !self.peer_wants_snapshot
            && matches!(self.outbound, Outbound::Streaming { .. })
    }

    /// The timer fired (or an operator asked): query every database's
    /// digest if the link is quiet, else try again soon (never with the
    /// interval at 0: an operator's request is then tried once).
    pub(super) fn start_anti_entropy(&mut self, now_ms: u64, engine: &Engine) {
        self.anti_entropy_due = false;
        if self.link_ready_for_anti_entropy() && self.digest_queries_out == 0 {
            self.stats.anti_entropy_rounds += 1;
            // Compare what both sides hold: our ops the peer confirmed.
            self.round_cut = engine.vv().meet(&self.peer_confirmed);
            // Databases either side holds rows in (all of them until the
            // peer's first answer says which it uses).
            self.digest_queries_out = nonempty_dbs(engine) | self.peer_dbs;
            self.arm_anti_entropy(now_ms, false);
        } else {
            self.timers.stop(Timer::AntiEntropy);
            self.retry_anti_entropy(now_ms);
        }
    }

    /// A pending repair: our answer to the peer's rows first, then our own
    /// rows of buckets we found different (asking for the peer's).
    pub(super) fn next_repair_frame(&mut self, engine: &Engine) -> Option<Vec<u8>> {
        if let Some(msg) = self.repair_reply.take() {
            return self.encode(*msg);
        }
        let (db, buckets, cut) = self.repairs_out.pop_front()?;
        let rows = engine.bucket_rows(db, &buckets, &cut, REPAIR_BYTES_MAX, REPAIR_ROWS_MAX);
        if !rows.too_large.is_empty() {
            self.push_event(SessionEvent::RepairTooLarge {
                db,
                buckets: rows.too_large.clone(),
            });
        }
        if !rows.deferred.is_empty() {
            // The rest goes in the next message.
            self.repairs_out
                .push_front((db, rows.deferred.clone(), cut.clone()));
        }
        if rows.buckets.is_empty() {
            return None;
        }
        let mut msg = repair_message(&cut, db, rows);
        if let Message::RepairRows { reply, .. } = &mut msg {
            *reply = true;
        }
        self.encode(msg)
    }
}

/// This site's databases that hold rows, one bit each.
fn nonempty_dbs(engine: &Engine) -> u32 {
    (0..DBS as u8)
        .filter(|&db| !engine.keyspace().db(db).is_empty())
        .fold(0, |m, db| m | 1 << db)
}

/// A `RepairRows` (without `reply`) carrying `rows`.
fn repair_message(vv: &VersionVector, db: u8, rows: BucketRows) -> Message {
    Message::RepairRows {
        vv: vv.clone(),
        db,
        buckets: rows.buckets,
        rows: rows
            .rows
            .into_iter()
            .map(|(key, image)| SnapshotRow {
                db,
                key,
                image: Bytes::from(image),
            })
            .collect(),
        reply: false,
    }
}
