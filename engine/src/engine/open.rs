//! Opening a site: recovery from the last checkpoint and the op log, and
//! the new incarnation every start takes.

use super::{
    CheckpointMeta, Engine, EngineConfig, EngineStats, OpenError, Tip, META_CLEAN, META_FOLDED,
    META_INCARNATION, META_SHARED, META_TIPS, TIPS_MAX,
};
use crate::hlc::HlcClock;
use crate::id::{OpId, Origin, VersionVector};
use crate::keyspace::image::RowImage;
use crate::keyspace::{Keyspace, ALL_DBS};
use crate::log::{self, Backlog, RecordScan};
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Engine {
    /// Opens (recovers) a site from its storage.
    pub fn open(mut storage: Box<dyn Storage>, config: EngineConfig) -> Result<Engine, OpenError> {
        // No flag at all: a brand-new site. "1": the last stop was clean.
        let clean_flag = storage.meta_get(META_CLEAN)?;
        let brand_new = clean_flag.is_none();
        let clean = clean_flag.as_deref() == Some(&b"1"[..]);
        let stored_incarnation = match storage.meta_get(META_INCARNATION)? {
            Some(b) if b.len() == 4 => Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => None,
        };
        let mut incarnation = stored_incarnation.unwrap_or(0);
        let (rows, meta) = storage.checkpoint_read()?;
        let meta: CheckpointMeta = match meta {
            Some(m) => {
                // The meta blob ends with a CRC-32 of what precedes it.
                let split = m.len().checked_sub(4).ok_or_else(|| {
                    OpenError::CorruptCheckpoint("metadata shorter than its checksum".into())
                })?;
                let (body, crc) = m.split_at(split);
                if crc32fast::hash(body).to_le_bytes() != crc {
                    return Err(OpenError::CorruptCheckpoint(
                        "metadata checksum mismatch".into(),
                    ));
                }
                postcard::from_bytes(body)
                    .map_err(|e| OpenError::CorruptCheckpoint(e.to_string()))?
            }
            None => CheckpointMeta::default(),
        };
        // Unreadable tips (a damaged meta value) only weaken the check.
        let mut tips = std::collections::HashMap::with_hasher(crate::keyspace::value::hasher());
        let stored = storage
            .meta_get(META_TIPS)?
            .and_then(|b| postcard::from_bytes::<Vec<(OpId, [u8; 32])>>(&b).ok())
            .unwrap_or_default();
        for (id, h) in stored.into_iter().take(TIPS_MAX) {
            tips.insert(id.origin, (id.seq, Tip::Hash(h)));
        }
        let clock = HlcClock::with_max_skew(config.max_clock_skew_ms);
        let tail_bytes_max = config.backlog_tail_bytes_max;
        let mut engine = Engine {
            origin: Origin::new(config.site_id, incarnation),
            config,
            clock,
            vv: meta.vv.clone(),
            durable_vv: VersionVector::new(),
            next_seq: 1,
            first_seq_this_start: 1,
            tips,
            completed: 0,
            journal: std::collections::VecDeque::new(),
            all_touched_at: 0,
            keyspace: Keyspace::default(),
            backlog: Backlog::new(tail_bytes_max),
            causal_buffer: BTreeMap::new(),
            storage,
            record_buf: Vec::with_capacity(64 << 10),
            spare_effects: Vec::new(),
            poisoned: None,
            stats: EngineStats::default(),
            checkpoint_log_offset: meta.log_offset,
            group: None,
            capture: None,
            write_in_flight: Arc::default(),
            log_read_ahead: Default::default(),
            backlog_chunk: bytes::BytesMut::new(),
            changes: None,
            shared: false,
            folded: false,
            salvaged: false,
            catching_up: false,
            catch_up_to: None,
            stability: Default::default(),
            units: Default::default(),
        };
        let shared = engine.storage.meta_get(META_SHARED)?;
        engine.folded = engine.storage.meta_get(META_FOLDED)?.is_some();
        engine.shared = shared.is_some();
        let others = engine
            .vv
            .iter()
            .any(|(o, _)| o.site != engine.config.site_id);
        if engine.config.alone && !engine.shared && !others {
            if !engine.folded {
                engine.storage.meta_put(META_FOLDED, b"1")?;
                engine.folded = true;
            }
            engine.keyspace.fold = true;
        }
        if engine.config.canaries.fold_unstable {
            engine.keyspace.fold = true;
        }
        engine.clock.observe(meta.hlc);
        // Size each database's table once instead of growing it row by row.
        let mut per_db = [0usize; ALL_DBS];
        for r in &rows {
            if let Some(n) = per_db.get_mut(r.db as usize) {
                *n += 1;
            }
        }
        for (db, n) in per_db.into_iter().enumerate() {
            engine.keyspace.dbs[db].rows.reserve(n);
        }
        for r in rows {
            let Some(state) = r.state else { continue };
            let img = RowImage::decode_sealed(r.db, &r.key, &state).map_err(|e| {
                OpenError::CorruptCheckpoint(format!(
                    "row {:?} in db {}: {e}",
                    String::from_utf8_lossy(&r.key),
                    r.db
                ))
            })?;
            engine
                .keyspace
                .put_row(r.db, Bytes::from(r.key), img.into_row());
        }
        // Rows loaded from the checkpoint are clean; rows the log replay
        // changes are not (the next checkpoint must write them).
        engine.keyspace.clear_dirty();
        let runs = engine.replay_log()?;
        let log_len = engine.storage.log_len();
        if log_len < engine.checkpoint_log_offset {
            // `--salvage` cut the log inside what the checkpoint covers:
            // every record left is covered by it. Record the new end as the
            // point replay starts from, on disk too, or a later trim would
            // cut the log at the old offset, now inside a new record.
            tracing::warn!(
                checkpoint_log_offset = engine.checkpoint_log_offset,
                log_len,
                "the salvaged log ends before the checkpoint's log offset; recording the new end"
            );
            engine.checkpoint_log_offset = log_len;
            let fixed = CheckpointMeta {
                log_offset: log_len,
                ..meta
            };
            engine
                .storage
                .checkpoint_write(&[], &super::checkpoint::encode_checkpoint_meta(&fixed))?;
        }
        // The backlog serves an origin only from the last contiguous run of
        // its seqs in the log, and only if that run reaches the newest op
        // held: ops before the run (trimmed, or only in the checkpoint) and
        // ops after it (brought by a full sync, never logged) cannot be
        // served, and a peer behind them needs a full sync. Assuming one
        // run up to the newest once stalled a lagging peer for good after a
        // restart that followed a full sync.
        let mut floor = engine.vv.clone();
        for (o, (first, last)) in runs {
            if last == engine.vv.get(o) {
                floor.set(o, first - 1);
            }
        }
        engine.backlog.floor = floor;
        // Folded ops are below the floor (see `Engine::note_peer`).
        let folded_to = match &shared {
            Some(b) => {
                postcard::from_bytes::<VersionVector>(b).unwrap_or_else(|_| engine.vv.clone())
            }
            None if engine.folded => engine.vv.clone(),
            None => VersionVector::new(),
        };
        for (o, s) in folded_to.iter() {
            engine.backlog.floor.raise(o, s);
        }
        // Not the frontier: folding up to it again is safe only while the
        // ops it waited for are applied, and a crash may have lost some
        // (applied, not yet durable). The frontier starts over from the
        // reports; the floor on disk only grows.
        engine.stability.floor_on_disk = folded_to.clone();
        while engine.backlog.bytes() > engine.config.backlog_bytes_max && engine.backlog.len() > 1 {
            engine.backlog.pop_front();
        }
        // Every start takes a new incarnation. Nothing on this disk tells a
        // clean stop from a copy of one: the directory may have been restored
        // from a backup, rolled back with its VM or cloned, and a later life
        // of this site may have shipped ops under the stored incarnation. So
        // the new one is above the stored one (a clock that went back cannot
        // reuse it) and at least the caller's floor (wall-clock seconds: above
        // any incarnation an earlier start could have taken, restored or not).
        // A brand-new directory keeps a pre-set incarnation as it is.
        let keep = engine.config.canaries.keep_incarnation && clean && !brand_new;
        if !brand_new && !keep {
            incarnation = incarnation.saturating_add(1);
        }
        if !keep {
            incarnation = incarnation.max(engine.config.incarnation_floor);
        }
        if let Some(stored) = stored_incarnation.filter(|&s| s == u32::MAX && !brand_new) {
            tracing::error!(
                incarnation = stored,
                "incarnations are exhausted for this site id: OpIds may be reused"
            );
        }
        engine
            .storage
            .meta_put(META_INCARNATION, &incarnation.to_le_bytes())?;
        engine.storage.meta_put(META_CLEAN, b"0")?;
        engine.origin = Origin::new(engine.config.site_id, incarnation);
        engine.next_seq = engine.vv.get(engine.origin) + 1;
        engine.first_seq_this_start = engine.next_seq;
        engine.durable_vv = engine.vv.clone();
        engine.load_stability()?;
        if engine.salvaged && engine.shared {
            // Records the peers were told were durable are gone: this site
            // holds less than it reported, so an op it issued now could have
            // seen only part of what others folded. It takes writes again
            // once a full sync from a peer brought it back.
            engine.catching_up = true;
            tracing::warn!(
                "the salvaged op log dropped durable records: writes are refused until a full sync from a peer catches this site up"
            );
        }
        // Everything loaded and replayed is one step of the apply order.
        engine.op_completed();
        engine.journal_mark();
        engine.all_touched_at = engine.completed;
        debug_assert!(engine.invariants_hold());
        Ok(engine)
    }

    /// Replays the log; returns, per origin found in it, the first and last
    /// seq of the last contiguous run of its seqs.
    fn replay_log(&mut self) -> Result<BTreeMap<Origin, (u64, u64)>, OpenError> {
        let mut runs: BTreeMap<Origin, (u64, u64)> = BTreeMap::new();
        let start = self.storage.log_start();
        let buf = self.storage.log_read_from(start)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            match log::scan_record(&buf, pos) {
                RecordScan::Record(payload, next) => {
                    let op = match log::decode_op(payload) {
                        Ok(op) => op,
                        Err(e) => {
                            if self.config.salvage {
                                self.salvaged = true;
                                self.truncate_log_at(start + pos as u64, buf.len() - pos)?;
                                break;
                            }
                            return Err(self.corrupt_at(start + pos as u64, e.to_string()));
                        }
                    };
                    let log_offset = start + pos as u64;
                    let run = runs
                        .entry(op.id.origin)
                        .or_insert((op.id.seq, op.id.seq.saturating_sub(1)));
                    if op.id.seq != run.1.saturating_add(1) {
                        *run = (op.id.seq, op.id.seq);
                    } else {
                        run.1 = op.id.seq;
                    }
                    let bytes = Bytes::copy_from_slice(payload);
                    self.note_tip(op.id, &bytes);
                    // Peers read the replayed ops back from the log.
                    self.backlog
                        .push_logged(op.id, log_offset, next - pos, None);
                    if !self.vv.covers(op.id) && self.deps_ready(&op) {
                        self.apply_op_internal(&op);
                        self.stats.recovered_ops += 1;
                    }
                    pos = next;
                }
                RecordScan::Incomplete => {
                    // A torn last write: the record never became durable as a
                    // whole, so nothing after it was acknowledged. But a
                    // damaged length in the middle also reads as "runs past
                    // the end": if a whole record follows, it is corruption.
                    if has_valid_record_after(&buf, pos + 1) {
                        if !self.config.salvage {
                            let log_offset = start + pos as u64;
                            return Err(self.corrupt_at(
                                log_offset,
                                "record length runs past the end of the log".into(),
                            ));
                        }
                        self.salvaged = true;
                    }
                    self.truncate_log_at(start + pos as u64, buf.len() - pos)?;
                    break;
                }
                RecordScan::Corrupt(reason) => {
                    let is_tail = !has_valid_record_after(&buf, pos + 1);
                    if is_tail || self.config.salvage {
                        self.salvaged |= !is_tail;
                        tracing::warn!(
                            offset = start + pos as u64,
                            reason,
                            "dropping corrupt op log tail"
                        );
                        self.truncate_log_at(start + pos as u64, buf.len() - pos)?;
                        break;
                    }
                    let log_offset = start + pos as u64;
                    return Err(self.corrupt_at(log_offset, reason.to_string()));
                }
            }
        }
        Ok(runs)
    }

    fn corrupt_at(&self, log_offset: u64, reason: String) -> OpenError {
        let (file, file_offset) = self.storage.log_position(log_offset);
        OpenError::CorruptLog {
            file,
            offset: log_offset,
            file_offset,
            reason,
        }
    }

    fn truncate_log_at(&mut self, offset: u64, dropped: usize) -> Result<(), StorageError> {
        self.stats.truncated_tail_bytes += dropped as u64;
        self.storage.log_truncate(offset)
    }
}

fn has_valid_record_after(buf: &[u8], from: usize) -> bool {
    // Look for any checksummed record later in the buffer: if one exists, the
    // damage is in the middle of the log, not a torn tail.
    let mut p = from;
    let limit = buf.len().min(from + (1 << 20));
    while p + log::RECORD_HEADER_BYTES < limit {
        if let RecordScan::Record(..) = log::scan_record(buf, p) {
            return true;
        }
        p += 1;
    }
    false
}
