//! Durability of the op log: [`Engine::sync`] and its halves around the
//! fsync done off the lock ([`LogSync`], [`SyncDone`]), and the clean stop.

use super::{Engine, EngineError, Tip, META_CLEAN, META_TIPS};
use crate::id::{OpId, VersionVector};
use crate::storage::StorageError;

impl Engine {
    /// Makes every appended record durable; `durable_vv` catches up with `vv`.
    /// Both halves under the caller's hold of the engine (`appendfsync
    /// always`, shutdown, checkpoints taken inline).
    pub fn sync(&mut self) -> Result<(), EngineError> {
        match self.sync_begin()? {
            Some(sync) => self.sync_finish(sync.wait()),
            None => Ok(()),
        }
    }

    /// The first half of [`Engine::sync`], under the lock: the appended
    /// records leave the process's buffers. [`LogSync::wait`] then fsyncs
    /// them without the lock, and [`Engine::sync_finish`] raises
    /// `durable_vv`. `None`: everything is durable already.
    pub fn sync_begin(&mut self) -> Result<Option<LogSync>, EngineError> {
        if let Some(p) = &self.poisoned {
            return Err(EngineError::Poisoned(p.clone()));
        }
        if self.durable_vv == self.vv {
            return Ok(None);
        }
        match self.storage.log_sync_begin() {
            Ok(pending) => Ok(Some(LogSync {
                pending,
                vv: self.vv.clone(),
            })),
            Err(e) => {
                self.poison(StorageError::Poisoned(e.to_string()));
                Err(EngineError::Storage(e))
            }
        }
    }

    /// Records the outcome of a [`LogSync`]: the ops it covered are durable
    /// (a sync that finished meanwhile may have covered more already).
    pub fn sync_finish(&mut self, done: SyncDone) -> Result<(), EngineError> {
        match done.result {
            Ok(()) => {
                self.stats.log_syncs += 1;
                self.durable_vv.join(&done.vv);
                Ok(())
            }
            Err(e) => {
                self.poison(StorageError::Poisoned(e.to_string()));
                Err(EngineError::Storage(e))
            }
        }
    }

    /// Stops cleanly: sync, checkpoint, mark the shutdown clean.
    pub fn close(mut self, now_ms: u64) -> Result<(), EngineError> {
        self.shutdown(now_ms)
    }

    /// Like `close`, for owners that keep the engine value (the server): after
    /// it, the engine must not take writes.
    pub fn shutdown(&mut self, now_ms: u64) -> Result<(), EngineError> {
        self.end_group();
        self.sync()?;
        self.checkpoint(now_ms)?;
        let tips: Vec<(OpId, [u8; 32])> = self
            .tips
            .iter()
            .map(|(origin, (seq, t))| {
                let id = OpId::new(*origin, *seq);
                match t {
                    Tip::Bytes(b) => (id, *blake3::hash(b).as_bytes()),
                    Tip::Hash(h) => (id, *h),
                }
            })
            .collect();
        self.storage
            .meta_put(META_TIPS, &postcard::to_allocvec(&tips).unwrap_or_default())?;
        self.storage.meta_put(META_CLEAN, b"1")?;
        Ok(())
    }
}

/// A log sync begun under the engine lock, to be waited for without it
/// (see [`Engine::sync_begin`]).
pub struct LogSync {
    pending: crate::storage::PendingSync,
    vv: VersionVector,
}

impl LogSync {
    /// The fsync (slow: call it without holding the engine).
    pub fn wait(self) -> SyncDone {
        SyncDone {
            result: self.pending.wait(),
            vv: self.vv,
        }
    }
}

/// The outcome of a [`LogSync`], for [`Engine::sync_finish`].
pub struct SyncDone {
    pub(super) result: Result<(), StorageError>,
    vv: VersionVector,
}
