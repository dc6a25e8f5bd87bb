//! Catching peers up: reading the backlog of encoded ops (from memory for
//! the newest, from the op log for the rest) and trimming what every peer
//! holds; full snapshots of the state and their merge.

use super::{Change, ChangeSource, Engine};
use crate::hlc::Hlc;
use crate::id::VersionVector;
use crate::keyspace::image::{join_rows, RowImage};
use crate::keyspace::row::Row;
use crate::keyspace::ALL_DBS;
use crate::log::{self, BacklogEntry, BacklogOp, RecordScan};
use crate::op::Op;
use crate::storage::StorageError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Bytes of the op log read at once for a peer that is behind (about 4
/// batches of small ops); kept for the next read. A record longer than
/// this is read on its own.
pub const LOG_READ_AHEAD_BYTES: usize = 256 << 10;

/// The last bytes read from the op log for a peer, from log offset `offset`.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    offset: u64,
    bytes: Bytes,
}

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
    /// behind the backlog, or when the log could not be read (the peer needs
    /// a full sync either way).
    ///
    /// Ops are served from memory when it holds them (the newest ops, see
    /// [`crate::log::Backlog`]), otherwise from their records in the log,
    /// through a read-ahead of [`LOG_READ_AHEAD_BYTES`]. A read error, a
    /// record that fails its checksum or one that is not the op the backlog
    /// expects there is a storage error like any other: the engine is
    /// poisoned (writes refused until restart, where open checks the whole
    /// log) and this peer gets a full sync from memory instead. A log trimmed
    /// under the backlog (`OutOfRange`, a bug) only costs the full sync.
    pub fn backlog_read(
        &mut self,
        cursor: u64,
        peer_vv: &VersionVector,
        ops_max: usize,
        bytes_max: usize,
    ) -> Option<(Vec<BacklogOp>, u64)> {
        if !self.backlog.can_serve(peer_vv, &self.vv) {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut pos = cursor.max(self.backlog.start());
        while let Some(e) = self.backlog.get(pos) {
            if out.len() >= ops_max {
                break;
            }
            if peer_vv.covers(e.id) {
                pos += 1;
                continue;
            }
            let payload = match self.backlog.held(pos) {
                Some(b) => b.clone(),
                None => match self.read_logged(e) {
                    Ok(b) => b,
                    Err(err) => {
                        self.log_read_failed(err);
                        return None;
                    }
                },
            };
            if !out.is_empty() && bytes + payload.len() > bytes_max {
                break;
            }
            bytes += payload.len();
            out.push(BacklogOp {
                id: e.id,
                bytes: payload,
            });
            pos += 1;
        }
        if self.log_read_ahead.bytes.len() > LOG_READ_AHEAD_BYTES {
            // A long record read on its own is not kept.
            self.log_read_ahead = ReadAhead::default();
        }
        Some((out, pos))
    }

    /// The payload of the record of backlog entry `e`, from the read-ahead
    /// or the log: at most three looks (the read-ahead held, a fresh one from
    /// the record on, and the whole record when it is longer than that).
    fn read_logged(&mut self, e: BacklogEntry) -> Result<Bytes, StorageError> {
        for attempt in 0..3 {
            let ahead = &self.log_read_ahead;
            let mut want = LOG_READ_AHEAD_BYTES;
            let at = e
                .log_offset
                .checked_sub(ahead.offset)
                .and_then(|at| usize::try_from(at).ok())
                .filter(|&at| at < ahead.bytes.len());
            if let Some(at) = at {
                match log::scan_record(&ahead.bytes, at) {
                    RecordScan::Record(payload, next) => {
                        if log::op_id_of(payload) != Some(e.id) {
                            return Err(self.corrupt_record(e, "the record holds another op"));
                        }
                        return Ok(ahead.bytes.slice(next - payload.len()..next));
                    }
                    RecordScan::Corrupt(reason) => return Err(self.corrupt_record(e, reason)),
                    RecordScan::Incomplete => {
                        // `scan_record` bounds the length by `OP_BYTES_MAX`.
                        if let Some(len) = ahead.bytes.get(at..at + 4) {
                            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
                            want = want.max(log::RECORD_HEADER_BYTES + len as usize);
                        }
                    }
                }
            }
            if attempt == 2 {
                break;
            }
            let bytes = self.storage.log_read(e.log_offset, want)?;
            self.stats.backlog_log_reads += 1;
            self.log_read_ahead = ReadAhead {
                offset: e.log_offset,
                bytes: Bytes::from(bytes),
            };
        }
        Err(self.corrupt_record(e, "the record runs past the end of the log"))
    }

    fn corrupt_record(&self, e: BacklogEntry, reason: &str) -> StorageError {
        let (file, offset) = self.storage.log_position(e.log_offset);
        StorageError::Corrupt {
            file,
            offset,
            reason: format!("reading op {} back for a peer: {reason}", e.id),
        }
    }

    fn log_read_failed(&mut self, e: StorageError) {
        self.log_read_ahead = ReadAhead::default();
        self.stats.backlog_read_errors += 1;
        if !e.poisons() {
            tracing::error!(error = %e, "the op log does not hold an op the backlog names: the peer gets a full sync");
            return;
        }
        tracing::error!(error = %e, "reading the op log for a peer failed: the peer gets a full sync");
        if self.poisoned.is_none() {
            self.poison(e);
        }
    }

    /// Memory the backlog holds: its entries, the newest ops' bytes, the
    /// ops in no log and the read-ahead.
    pub fn backlog_memory_bytes(&self) -> usize {
        self.backlog.memory_bytes() + self.log_read_ahead.bytes.len()
    }

    /// Decoded ops a peer at `vv` lacks, in causal order (tests and tools).
    pub fn ops_since(&mut self, vv: &VersionVector, limit: usize) -> Option<Vec<Op>> {
        let cursor = self.backlog_cursor(vv)?;
        let (entries, _) = self.backlog_read(cursor, vv, limit, usize::MAX)?;
        entries
            .iter()
            .map(|e| log::decode_op(&e.bytes).ok())
            .collect()
    }

    /// Drops backlog entries every peer has acknowledged (`acked_by_all`),
    /// and the disk log before both the backlog and the last checkpoint
    /// (a restart replays the log from the checkpoint on). The backlog holds
    /// only what some peer still lacks (about a second of ops under
    /// `everysec` when peers keep up), and the log keeps its records.
    pub fn trim_backlog(&mut self, acked_by_all: &VersionVector) {
        while let Some(f) = self.backlog.front() {
            if acked_by_all.covers(f.id) {
                self.backlog.pop_front();
            } else {
                break;
            }
        }
        self.backlog.shrink();
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
        if self.log_read_ahead.offset < trim_to || self.backlog.is_empty() {
            // Nobody reads there any more.
            self.log_read_ahead = ReadAhead::default();
        }
    }

    // ---- snapshots -----------------------------------------------------------

    /// A consistent cut of the whole state.
    pub fn snapshot(&self) -> Snapshot {
        let mut rows = Vec::new();
        for db in 0..ALL_DBS as u8 {
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
        self.caught_up();
        let local_vv = self.vv.clone();
        let mut seen: HashSet<(u8, Bytes)> = HashSet::with_capacity(snap.rows.len());
        for (db, key, img) in snap.rows {
            let db = db % ALL_DBS as u8;
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
        for db in 0..ALL_DBS as u8 {
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
        // A fold kept next to a local op that removed part of it (a site
        // that wrote before it caught up with what it had reported).
        self.note_overlaps(crate::crdt::counter::take_overlaps());
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
