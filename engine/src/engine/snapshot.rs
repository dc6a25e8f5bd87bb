//! Catching peers up: reading the backlog of encoded ops and trimming what
//! every peer holds; full snapshots of the state and their merge.

use super::{Change, ChangeSource, Engine};
use crate::hlc::Hlc;
use crate::id::VersionVector;
use crate::keyspace::image::{join_rows, RowImage};
use crate::keyspace::row::Row;
use crate::keyspace::DBS;
use crate::log::{self, BacklogEntry};
use crate::op::Op;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A consistent cut of the whole state, for full sync.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub vv: VersionVector,
    pub hlc: Hlc,
    pub rows: Vec<(u8, Bytes, RowImage)>,
}

impl Engine {
    /// Where a peer at `peer_vv` starts reading the backlog, or `None` when it
    /// lacks ops the backlog no longer has (it needs a full sync).
    pub fn backlog_cursor(&self, peer_vv: &VersionVector) -> Option<u64> {
        if !self.backlog.can_serve(peer_vv, &self.vv) {
            return None;
        }
        Some(self.backlog.seek(self.backlog.start(), peer_vv))
    }

    /// Reads encoded ops for a peer from `cursor`; `None` when the cursor fell
    /// behind the backlog (full sync needed).
    pub fn backlog_read(
        &self,
        cursor: u64,
        peer_vv: &VersionVector,
        ops_max: usize,
        bytes_max: usize,
    ) -> Option<(Vec<BacklogEntry>, u64)> {
        if !self.backlog.can_serve(peer_vv, &self.vv) {
            return None;
        }
        Some(self.backlog.read(cursor, peer_vv, ops_max, bytes_max))
    }

    /// Decoded ops a peer at `vv` lacks, in causal order (tests and tools).
    pub fn ops_since(&self, vv: &VersionVector, limit: usize) -> Option<Vec<Op>> {
        let cursor = self.backlog_cursor(vv)?;
        let (entries, _) = self.backlog.read(cursor, vv, limit, usize::MAX);
        entries
            .iter()
            .map(|e| log::decode_op(&e.bytes).ok())
            .collect()
    }

    /// Drops backlog entries every peer has acknowledged (`acked_by_all`),
    /// and the disk log before both the backlog and the last checkpoint
    /// (a restart replays the log from the checkpoint on). The in-memory
    /// backlog holds only what some peer still lacks: about a second of ops
    /// under `everysec`, whatever the time since the last checkpoint.
    pub fn trim_backlog(&mut self, acked_by_all: &VersionVector) {
        while let Some(f) = self.backlog.front() {
            if acked_by_all.covers(f.id) {
                self.backlog.pop_front();
            } else {
                break;
            }
        }
        let keep_from = self
            .backlog
            .front()
            .map_or(self.checkpoint_log_offset, |f| f.log_offset);
        let trim_to = keep_from.min(self.checkpoint_log_offset);
        if trim_to > self.storage.log_start() {
            if let Err(e) = self.storage.log_trim_before(trim_to) {
                self.poison(e);
            }
        }
    }

    // ---- snapshots -----------------------------------------------------------

    /// A consistent cut of the whole state.
    pub fn snapshot(&self) -> Snapshot {
        let mut rows = Vec::new();
        for db in 0..DBS as u8 {
            for (k, row) in self.keyspace.db(db).rows.iter() {
                rows.push((db, k.clone(), RowImage::of(row)));
            }
        }
        Snapshot {
            vv: self.vv.clone(),
            hlc: self.clock.last(),
            rows,
        }
    }

    /// Merges a peer's snapshot into this state (never replaces it: local
    /// writes the peer has not seen survive). Ops that came in through the
    /// snapshot are not in the backlog, so peers behind them need a full sync.
    pub fn merge_snapshot(&mut self, snap: Snapshot) {
        self.note_peer();
        let local_vv = self.vv.clone();
        let mut seen: HashSet<(u8, Bytes)> = HashSet::with_capacity(snap.rows.len());
        for (db, key, img) in snap.rows {
            let db = db % DBS as u8;
            let remote = img.into_row();
            let local = self
                .keyspace
                .db(db)
                .rows
                .get(&key)
                .cloned()
                .unwrap_or_default();
            let joined = join_rows(&local, &remote, &local_vv, &snap.vv);
            self.keyspace.put_row(db, key.clone(), joined);
            seen.insert((db, key));
        }
        let empty = Row::default();
        for db in 0..DBS as u8 {
            let keys: Vec<Bytes> = self
                .keyspace
                .db(db)
                .rows
                .iter()
                .filter(|(k, _)| !seen.contains(&(db, (*k).clone())))
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let local = self
                    .keyspace
                    .db(db)
                    .rows
                    .get(&key)
                    .cloned()
                    .unwrap_or_default();
                let joined = join_rows(&local, &empty, &local_vv, &snap.vv);
                self.keyspace.put_row(db, key, joined);
            }
        }
        self.vv.join(&snap.vv);
        self.op_completed();
        self.note_change(Change::All {
            source: ChangeSource::Merge,
        });
        // The snapshot's ops we lacked changed leaves that no row above
        // shows: a key they created and deleted is in neither state, yet at
        // a cut holding only its creation the leaf holds it. Every leaf
        // counts as changed by this merge.
        self.all_touched_at = self.completed;
        self.clock.observe(snap.hlc);
        self.backlog.raise_floor(&snap.vv);
        // The snapshot's ops are not in our log: make the merged state durable
        // through a checkpoint before acknowledging anything built on it.
        self.causal_buffer.retain(|id, _| !snap.vv.covers(*id));
        self.drain_causal_buffer();
        // The merged ops are in no log: a checkpoint makes them durable before
        // `durable_vv` (and so any ack to a peer) can cover them.
        let now_ms = self.clock.last().wall_ms();
        if let Err(e) = self.checkpoint(now_ms) {
            tracing::error!(error = %e, "checkpoint after snapshot merge failed");
            self.durable_vv = self.durable_vv.meet(&local_vv);
        }
        self.publish_changes();
        debug_assert!(self.invariants_hold());
    }
}
