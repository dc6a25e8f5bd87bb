//! Checkpoints: the rows changed since the last one, with the vector and
//! log offset they cover; taken inline, or captured a slice at a time under
//! the lock and written off it ([`PendingCheckpoint`]), in the order taken.

use super::{CheckpointMeta, Engine, EngineError, LogSync, SyncDone};
use crate::keyspace::image::RowImage;
use crate::keyspace::CopiedRow;
use crate::storage::{CheckpointRow, StorageError};
use std::sync::Arc;

/// What a checkpoint records besides its rows, fixed when it begins.
pub(super) struct CaptureMeta {
    sync: Option<LogSync>,
    meta: Vec<u8>,
    log_offset: u64,
    now_ms: u64,
    writer: Box<dyn crate::storage::CheckpointWriter>,
}

/// "A captured checkpoint is being written": an inline checkpoint waits for
/// it, so checkpoints reach the storage in the order they were taken.
#[derive(Default)]
pub(super) struct InFlight {
    busy: std::sync::Mutex<bool>,
    done: std::sync::Condvar,
}

impl InFlight {
    fn set(&self, busy: bool) {
        let mut b = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        *b = busy;
        if !busy {
            self.done.notify_all();
        }
    }

    fn wait_idle(&self) {
        let mut b = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *b {
            b = self.done.wait(b).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Clears the in-flight mark when a captured checkpoint's write ends, even
/// by an error or a panic.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// What [`Engine::checkpoint_step`] did.
pub enum CheckpointStep {
    /// Captured a slice; call again (after letting others take the lock).
    More,
    /// Captured the last rows: write them without the lock.
    Ready(PendingCheckpoint),
    /// No checkpoint is being captured (none began, or an inline checkpoint
    /// completed it).
    Gone,
}

impl Engine {
    /// Writes the rows changed since the last checkpoint, with the version
    /// vector they cover (coalesced: a key written many times is written once).
    pub fn checkpoint(&mut self, now_ms: u64) -> Result<(), EngineError> {
        if let Some(p) = &self.poisoned {
            return Err(EngineError::Poisoned(p.clone()));
        }
        // A checkpoint being captured is completed and written first, and one
        // being written off the lock commits first: checkpoints reach the
        // storage in the order they were taken.
        self.write_captured_inline()?;
        self.write_in_flight.wait_idle();
        // Everything the checkpoint covers must be in the log or in the rows;
        // sync first so that the log offset recorded is durable.
        self.sync()?;
        let rows = self.take_dirty_rows();
        let (log_offset, meta_bytes) = self.checkpoint_meta();
        match self.storage.checkpoint_write(&rows, &meta_bytes) {
            Ok(()) => {
                self.checkpoint_log_offset = log_offset;
                self.stats.checkpoints += 1;
                self.stats.last_checkpoint_ms = now_ms;
                Ok(())
            }
            Err(e) => {
                self.poison(StorageError::Poisoned(e.to_string()));
                Err(EngineError::Storage(e))
            }
        }
    }

    /// Starts a checkpoint captured and written off the engine lock: fixes
    /// the vector and log offset it covers and marks the changed rows; the
    /// rows are then encoded a slice per [`Engine::checkpoint_step`] (or just
    /// before a write changes them), written by [`PendingCheckpoint::write`]
    /// without the engine, and recorded by [`Engine::checkpoint_finish`].
    /// Falls back to an inline checkpoint (returns false) when the backend
    /// has no separate writer. Callers run one checkpoint at a time.
    pub fn checkpoint_begin(&mut self, now_ms: u64) -> Result<bool, EngineError> {
        if let Some(p) = &self.poisoned {
            return Err(EngineError::Poisoned(p.clone()));
        }
        if self.capture.is_some() {
            debug_assert!(false, "a checkpoint began while another was captured");
            return Ok(true);
        }
        let Some(writer) = self.storage.checkpoint_writer() else {
            self.checkpoint(now_ms)?;
            return Ok(false);
        };
        // The log up to the checkpoint's offset must be durable before the
        // checkpoint is: its fsync runs with the rows' write, off the lock.
        let sync = self.sync_begin()?;
        self.keyspace.begin_capture();
        let (log_offset, meta) = self.checkpoint_meta();
        self.capture = Some(CaptureMeta {
            sync,
            meta,
            log_offset,
            now_ms,
            writer,
        });
        Ok(true)
    }

    /// Captures up to `budget` more rows of the checkpoint begun by
    /// [`Engine::checkpoint_begin`]; hands it over once every row is in.
    pub fn checkpoint_step(&mut self, budget: usize) -> CheckpointStep {
        if self.capture.is_none() {
            return CheckpointStep::Gone;
        }
        if !self.keyspace.capture_step(budget) {
            return CheckpointStep::More;
        }
        let (rows, copied) = self.keyspace.finish_capture();
        let Some(c) = self.capture.take() else {
            return CheckpointStep::Gone;
        };
        self.write_in_flight.set(true);
        CheckpointStep::Ready(PendingCheckpoint {
            sync: c.sync,
            rows,
            copied,
            meta: c.meta,
            log_offset: c.log_offset,
            now_ms: c.now_ms,
            writer: c.writer,
            in_flight: InFlightGuard(Arc::clone(&self.write_in_flight)),
        })
    }

    /// True from [`Engine::checkpoint_begin`] until its rows are handed over.
    pub fn checkpoint_capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Completes a checkpoint being captured and writes it here, under the
    /// lock (an inline checkpoint or shutdown came first).
    fn write_captured_inline(&mut self) -> Result<(), EngineError> {
        let Some(c) = self.capture.take() else {
            return Ok(());
        };
        let (rows, copied) = self.keyspace.finish_capture();
        let rows = checkpoint_rows(rows, copied);
        let done = match c.sync.map(LogSync::wait) {
            Some(SyncDone { result: Err(e), .. }) => Err(e),
            sync => c.writer.write(&rows, &c.meta).map(|()| CheckpointDone {
                sync,
                log_offset: c.log_offset,
                now_ms: c.now_ms,
            }),
        };
        self.checkpoint_finish(done)
    }

    /// Records the outcome of a checkpoint written off the lock.
    pub fn checkpoint_finish(
        &mut self,
        done: Result<CheckpointDone, StorageError>,
    ) -> Result<(), EngineError> {
        match done {
            Ok(d) => {
                if let Some(sync) = d.sync {
                    self.sync_finish(sync)?;
                }
                // An inline checkpoint may have recorded a later one already.
                self.checkpoint_log_offset = self.checkpoint_log_offset.max(d.log_offset);
                self.stats.checkpoints += 1;
                self.stats.last_checkpoint_ms = self.stats.last_checkpoint_ms.max(d.now_ms);
                Ok(())
            }
            Err(e) => {
                self.poison(StorageError::Poisoned(e.to_string()));
                Err(EngineError::Storage(e))
            }
        }
    }

    /// The log offset a checkpoint taken now covers, and its encoded meta.
    fn checkpoint_meta(&self) -> (u64, Vec<u8>) {
        let log_offset = self.storage.log_len();
        let meta = CheckpointMeta {
            vv: self.vv.clone(),
            hlc: self.clock.last(),
            log_offset,
        };
        (log_offset, encode_checkpoint_meta(&meta))
    }

    /// The rows changed since the last checkpoint, encoded, in key order.
    fn take_dirty_rows(&mut self) -> Vec<CheckpointRow> {
        self.keyspace.take_dirty(|d| CheckpointRow {
            db: d.db,
            key: d.key.to_vec(),
            state: d.row.map(|r| RowImage::of(r).encode_sealed(d.db, d.key)),
        })
    }

    /// Bytes of op log written since the last checkpoint: what a restart
    /// would replay.
    pub fn log_bytes_since_checkpoint(&self) -> u64 {
        self.storage
            .log_len()
            .saturating_sub(self.checkpoint_log_offset)
    }

    /// Rows changed since the last checkpoint (an upper bound).
    pub fn dirty_rows(&self) -> usize {
        self.keyspace.dirty.len()
    }
}

/// A checkpoint taken under the engine lock, to be written without it.
pub struct PendingCheckpoint {
    sync: Option<LogSync>,
    rows: Vec<CheckpointRow>,
    /// Large rows captured as copies, encoded by `write`.
    copied: Vec<CopiedRow>,
    meta: Vec<u8>,
    log_offset: u64,
    now_ms: u64,
    writer: Box<dyn crate::storage::CheckpointWriter>,
    in_flight: InFlightGuard,
}

/// A checkpoint that was written (see [`Engine::checkpoint_finish`]).
pub struct CheckpointDone {
    sync: Option<SyncDone>,
    log_offset: u64,
    now_ms: u64,
}

impl PendingCheckpoint {
    pub fn rows(&self) -> usize {
        self.rows.len() + self.copied.len()
    }
    /// Writes the checkpoint (slow: call it without holding the engine).
    pub fn write(self) -> Result<CheckpointDone, StorageError> {
        let PendingCheckpoint {
            sync,
            rows,
            copied,
            meta,
            log_offset,
            now_ms,
            writer,
            in_flight,
        } = self;
        let sync = match sync.map(LogSync::wait) {
            Some(SyncDone { result: Err(e), .. }) => return Err(e),
            done => done,
        };
        let rows = checkpoint_rows(rows, copied);
        writer.write(&rows, &meta)?;
        drop(in_flight);
        Ok(CheckpointDone {
            sync,
            log_offset,
            now_ms,
        })
    }
}

/// A capture's rows ready to write: the copied large rows encoded, all
/// sorted by `(db, key)` (slow for large rows: off the lock where possible).
fn checkpoint_rows(mut rows: Vec<CheckpointRow>, copied: Vec<CopiedRow>) -> Vec<CheckpointRow> {
    rows.extend(copied.into_iter().map(CopiedRow::encode));
    crate::keyspace::sort_checkpoint_rows(&mut rows);
    rows
}

/// A checkpoint's metadata as stored: postcard, followed by its CRC-32, so
/// that damage on disk is refused at open.
pub(super) fn encode_checkpoint_meta(meta: &CheckpointMeta) -> Vec<u8> {
    let mut bytes = postcard::to_allocvec(meta).unwrap_or_default();
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}
