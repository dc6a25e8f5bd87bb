//! In-memory storage with durable vs volatile bytes (simulator, crash tests).
//!
//! [`MemoryStorage`] models one site's disk and the OS page cache in front of it:
//! * the op log is a *durable* prefix (survives [`MemoryStorage::crash`]) followed by
//!   *volatile* bytes (appended, not yet synced); `log_sync` moves the volatile
//!   bytes into the durable prefix;
//! * checkpoint rows, the checkpoint metadata blob and named meta values are
//!   durable the moment their call returns `Ok`, as the trait promises.
//!
//! Everything is deterministic: no clock, no randomness, no threads. Faults are
//! injected only through [`MemoryStorage::fail_next`] and [`MemoryStorage::crash`],
//! whose arguments the simulator draws from its own seeded RNG.
//!
//! Durable state sits behind `Arc`s (log chunks, row and meta maps), so
//! [`MemoryStorage::durable_image`] costs a few pointer copies; a later write to a
//! map that an image still shares copies that map once (copy on write).
//!
//! Invariants (checked by `invariants_hold`): durable log chunks are non-empty and
//! contiguous from `log_start`; volatile bytes follow the last durable byte.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{check_log_offset, CheckpointRow, Storage, StorageError};

/// A durable log chunk stops growing at this size, so a shared chunk never gets
/// very large to copy when trimming or truncating in its middle.
const CHUNK_BYTES_MAX: usize = 1 << 20;

/// An operation [`MemoryStorage::fail_next`] can make fail once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailPoint {
    LogAppend,
    LogSync,
    LogTruncate,
    CheckpointWrite,
    MetaPut,
}

impl FailPoint {
    const ALL: [FailPoint; 5] = [
        FailPoint::LogAppend,
        FailPoint::LogSync,
        FailPoint::LogTruncate,
        FailPoint::CheckpointWrite,
        FailPoint::MetaPut,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn name(self) -> &'static str {
        match self {
            FailPoint::LogAppend => "log_append",
            FailPoint::LogSync => "log_sync",
            FailPoint::LogTruncate => "log_truncate",
            FailPoint::CheckpointWrite => "checkpoint_write",
            FailPoint::MetaPut => "meta_put",
        }
    }
}

// One bit per fail point in `MemoryStorage::armed`.
const _: () = assert!(FailPoint::ALL.len() <= 8);

/// A run of durable log bytes starting at absolute offset `start`.
#[derive(Clone, Debug)]
struct Chunk {
    start: u64,
    bytes: Arc<Vec<u8>>,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

type RowMap = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

/// In-memory [`Storage`] that separates durable from volatile bytes.
///
/// A fresh one is an empty disk. `Clone` copies the whole state, volatile bytes
/// included; [`MemoryStorage::durable_image`] copies only what survives a crash.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    log_start: u64,
    /// Durable log, contiguous from `log_start`.
    durable: Vec<Chunk>,
    /// Appended but not yet synced; lost by a crash (except a torn prefix).
    /// Bounded by the engine's group commit, which syncs every batch, like the
    /// page cache of a real disk is bounded by the writer's fsync cadence.
    volatile: Vec<u8>,
    rows: Arc<RowMap>,
    checkpoint_meta: Option<Arc<Vec<u8>>>,
    meta: Arc<BTreeMap<String, Vec<u8>>>,
    sync_count: u64,
    /// Bit set of armed [`FailPoint`]s.
    armed: u8,
    poisoned: Option<String>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts the power: volatile log bytes are lost except their first
    /// `torn_tail_bytes` (clamped to what is volatile), which reach the disk, as a
    /// torn last write does. Then the storage is as a restarted site reopens it:
    /// not poisoned, no armed fail points. `sync_count` survives (it counts the
    /// disk's fsyncs, across restarts).
    pub fn crash(&mut self, torn_tail_bytes: usize) {
        let kept = torn_tail_bytes.min(self.volatile.len());
        self.volatile.truncate(kept);
        self.persist_volatile();
        self.armed = 0;
        self.poisoned = None;
        debug_assert!(self.invariants_hold());
    }

    /// What a site restarted now would see: the durable bytes only, not
    /// poisoned, no armed fail points. Cheap: shares the durable state.
    pub fn durable_image(&self) -> MemoryStorage {
        MemoryStorage {
            log_start: self.log_start,
            durable: self.durable.clone(),
            volatile: Vec::new(),
            rows: Arc::clone(&self.rows),
            checkpoint_meta: self.checkpoint_meta.clone(),
            meta: Arc::clone(&self.meta),
            sync_count: self.sync_count,
            armed: 0,
            poisoned: None,
        }
    }

    /// Makes the next call of `op` fail with an I/O error and poison the storage.
    /// The failing call changes nothing (a failed `log_sync` leaves the appended
    /// bytes volatile). Arming several fail points is allowed; each fires once.
    pub fn fail_next(&mut self, op: FailPoint) {
        self.armed |= op.bit();
    }

    /// Flips bit `bit` (0-7) of the durable log byte at absolute `offset`,
    /// as bit rot or a damaged sector would (fault injection). Returns
    /// whether `offset` is a durable byte.
    pub fn damage_durable_log(&mut self, offset: u64, bit: u8) -> bool {
        for c in &mut self.durable {
            if (c.start..c.end()).contains(&offset) {
                let i = (offset - c.start) as usize;
                Arc::make_mut(&mut c.bytes)[i] ^= 1 << (bit & 7);
                return true;
            }
        }
        false
    }

    /// The durable log bytes, from `log_start` (fault injection, checks).
    pub fn durable_log(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.durable {
            out.extend_from_slice(&c.bytes);
        }
        out
    }

    /// Successful `log_sync` calls so far (including across crashes).
    pub fn sync_count(&self) -> u64 {
        self.sync_count
    }

    /// Log bytes that a crash now would lose (without a torn tail).
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    /// Why the storage is poisoned, if it is.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn durable_end(&self) -> u64 {
        self.durable.last().map_or(self.log_start, Chunk::end)
    }

    /// Moves every volatile byte into the durable log.
    fn persist_volatile(&mut self) {
        if self.volatile.is_empty() {
            return;
        }
        let start = self.durable_end();
        // Grow the last chunk in place when no durable image shares it; otherwise
        // start a new chunk so the image keeps seeing exactly its own bytes.
        if let Some(last) = self.durable.last_mut() {
            if last.bytes.len() < CHUNK_BYTES_MAX {
                if let Some(bytes) = Arc::get_mut(&mut last.bytes) {
                    bytes.append(&mut self.volatile);
                    return;
                }
            }
        }
        self.durable.push(Chunk {
            start,
            bytes: Arc::new(std::mem::take(&mut self.volatile)),
        });
    }

    /// Refuses calls on a poisoned storage; fires an armed fail point.
    fn enter(&mut self, op: Option<FailPoint>) -> Result<(), StorageError> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned(reason.clone()));
        }
        if let Some(op) = op {
            if self.armed & op.bit() != 0 {
                self.armed &= !op.bit();
                let err = StorageError::Io {
                    path: format!("memory:{}", op.name()),
                    source: std::io::Error::other("injected fault"),
                };
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
        }
        Ok(())
    }

    fn invariants_hold(&self) -> bool {
        let mut expected_start = self.log_start;
        for chunk in &self.durable {
            if chunk.start != expected_start || chunk.bytes.is_empty() {
                return false;
            }
            expected_start = chunk.end();
        }
        true
    }
}

impl Storage for MemoryStorage {
    fn log_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.enter(Some(FailPoint::LogAppend))?;
        self.volatile.extend_from_slice(bytes);
        Ok(())
    }

    fn log_sync(&mut self) -> Result<(), StorageError> {
        self.enter(Some(FailPoint::LogSync))?;
        self.persist_volatile();
        self.sync_count += 1;
        debug_assert!(self.invariants_hold());
        Ok(())
    }

    fn log_len(&self) -> u64 {
        self.durable_end() + self.volatile.len() as u64
    }

    fn log_read(&mut self, offset: u64, bytes_max: usize) -> Result<Vec<u8>, StorageError> {
        self.enter(None)?;
        check_log_offset(offset, self.log_start, self.log_len())?;
        let available = usize::try_from(self.log_len() - offset).unwrap_or(usize::MAX);
        let want = bytes_max.min(available);
        let mut out = Vec::with_capacity(want);
        let first = self.durable.partition_point(|c| c.end() <= offset);
        for chunk in self.durable.iter().skip(first) {
            if out.len() == want {
                break;
            }
            let from = usize::try_from(offset + out.len() as u64 - chunk.start).unwrap_or(0);
            let take = (want - out.len()).min(chunk.bytes.len().saturating_sub(from));
            if let Some(bytes) = chunk.bytes.get(from..from + take) {
                out.extend_from_slice(bytes);
            }
        }
        if out.len() < want {
            let from = usize::try_from(offset + out.len() as u64 - self.durable_end()).unwrap_or(0);
            let take = want - out.len();
            if let Some(bytes) = self.volatile.get(from..from + take) {
                out.extend_from_slice(bytes);
            }
        }
        debug_assert_eq!(out.len(), want);
        Ok(out)
    }

    fn log_trim_before(&mut self, offset: u64) -> Result<(), StorageError> {
        self.enter(None)?;
        let end = self.log_len();
        if offset > end {
            return Err(StorageError::OutOfRange {
                offset,
                start: self.log_start,
                end,
            });
        }
        if offset <= self.log_start {
            return Ok(());
        }
        // Volatile bytes below `offset` are made durable first, so the durable log
        // stays one contiguous run; trimming is what a caller does to bytes it no
        // longer needs, so durability of them costs nothing observable.
        if offset > self.durable_end() {
            self.persist_volatile();
        }
        let whole = self.durable.partition_point(|c| c.end() <= offset);
        self.durable.drain(..whole);
        if let Some(first) = self.durable.first_mut() {
            if first.start < offset {
                let cut = usize::try_from(offset - first.start).unwrap_or(0);
                let rest = first.bytes.get(cut..).unwrap_or_default().to_vec();
                *first = Chunk {
                    start: offset,
                    bytes: Arc::new(rest),
                };
            }
        }
        self.log_start = offset;
        debug_assert!(self.invariants_hold());
        Ok(())
    }

    fn log_truncate(&mut self, offset: u64) -> Result<(), StorageError> {
        self.enter(Some(FailPoint::LogTruncate))?;
        check_log_offset(offset, self.log_start, self.log_len())?;
        let durable_end = self.durable_end();
        if offset >= durable_end {
            // Truncation is durable: what stays of the volatile bytes is synced.
            self.volatile
                .truncate(usize::try_from(offset - durable_end).unwrap_or(usize::MAX));
            self.persist_volatile();
        } else {
            self.volatile.clear();
            let keep = self.durable.partition_point(|c| c.start < offset);
            self.durable.truncate(keep);
            if let Some(last) = self.durable.last_mut() {
                if last.end() > offset {
                    let len = usize::try_from(offset - last.start).unwrap_or(0);
                    let kept = last.bytes.get(..len).unwrap_or_default().to_vec();
                    last.bytes = Arc::new(kept);
                }
            }
        }
        debug_assert!(self.invariants_hold());
        Ok(())
    }

    fn log_start(&self) -> u64 {
        self.log_start
    }

    fn checkpoint_write(
        &mut self,
        rows: &[CheckpointRow],
        meta: &[u8],
    ) -> Result<(), StorageError> {
        self.enter(Some(FailPoint::CheckpointWrite))?;
        let map = Arc::make_mut(&mut self.rows);
        for d in rows.iter().filter_map(CheckpointRow::cleared_db) {
            map.retain(|(db, _), _| *db != d);
        }
        for row in rows.iter().filter(|r| r.cleared_db().is_none()) {
            let key = (row.db, row.key.clone());
            match &row.state {
                Some(state) => {
                    map.insert(key, state.clone());
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        self.checkpoint_meta = Some(Arc::new(meta.to_vec()));
        Ok(())
    }

    fn checkpoint_read(&mut self) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError> {
        self.enter(None)?;
        let rows = self
            .rows
            .iter()
            .map(|((db, key), state)| CheckpointRow {
                db: *db,
                key: key.clone(),
                state: Some(state.clone()),
            })
            .collect();
        Ok((rows, self.checkpoint_meta.as_deref().cloned()))
    }

    fn meta_put(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.enter(Some(FailPoint::MetaPut))?;
        Arc::make_mut(&mut self.meta).insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    fn meta_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.enter(None)?;
        Ok(self.meta.get(name).cloned())
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    #[test]
    fn log_round_trips() {
        conformance::log_round_trips(&mut MemoryStorage::new());
    }

    #[test]
    fn checkpoint_and_meta_round_trips() {
        conformance::checkpoint_and_meta_round_trips(&mut MemoryStorage::new());
    }

    #[test]
    fn crash_keeps_durable_and_drops_volatile() {
        let mut s = MemoryStorage::new();
        s.log_append(b"synced").unwrap();
        s.log_sync().unwrap();
        s.log_append(b"lost").unwrap();
        s.meta_put("seq", b"7").unwrap();
        s.checkpoint_write(
            &[CheckpointRow {
                db: 0,
                key: b"k".to_vec(),
                state: Some(b"v".to_vec()),
            }],
            b"cp",
        )
        .unwrap();
        assert_eq!(s.volatile_len(), 4);

        s.crash(0);
        assert_eq!(s.log_len(), 6);
        assert_eq!(s.log_read_from(0).unwrap(), b"synced");
        assert_eq!(s.meta_get("seq").unwrap().as_deref(), Some(&b"7"[..]));
        let (rows, meta) = s.checkpoint_read().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(meta.as_deref(), Some(&b"cp"[..]));
        assert_eq!(s.sync_count(), 1);
    }

    #[test]
    fn crash_keeps_torn_prefix_of_volatile_bytes() {
        let mut s = MemoryStorage::new();
        s.log_append(b"abc").unwrap();
        s.log_sync().unwrap();
        s.log_append(b"defgh").unwrap();
        s.crash(2);
        assert_eq!(s.log_read_from(0).unwrap(), b"abcde");
        // The torn bytes are on disk now: a second crash keeps them.
        s.crash(0);
        assert_eq!(s.log_read_from(0).unwrap(), b"abcde");
        // A torn length beyond the volatile bytes keeps them all.
        s.log_append(b"xy").unwrap();
        s.crash(1000);
        assert_eq!(s.log_read_from(0).unwrap(), b"abcdexy");
    }

    #[test]
    fn durable_image_is_independent_of_later_writes() {
        let mut s = MemoryStorage::new();
        s.log_append(b"one").unwrap();
        s.log_sync().unwrap();
        s.meta_put("a", b"1").unwrap();
        s.log_append(b"volatile").unwrap();
        let mut image = s.durable_image();

        s.log_append(b"two").unwrap();
        s.log_sync().unwrap();
        s.meta_put("a", b"2").unwrap();
        s.log_truncate(1).unwrap();

        assert_eq!(image.log_read_from(0).unwrap(), b"one");
        assert_eq!(image.meta_get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.log_read_from(0).unwrap(), b"o");
        assert_eq!(s.meta_get("a").unwrap().as_deref(), Some(&b"2"[..]));

        // The image is a full storage: writing to it leaves the original alone.
        image.log_append(b"!").unwrap();
        image.log_sync().unwrap();
        assert_eq!(image.log_read_from(0).unwrap(), b"one!");
        assert_eq!(s.log_read_from(0).unwrap(), b"o");
    }

    #[test]
    fn trim_and_truncate_cross_chunks() {
        let mut s = MemoryStorage::new();
        let mut expected = Vec::new();
        let mut images = Vec::new();
        for i in 0u8..20 {
            s.log_append(&[i; 5]).unwrap();
            s.log_sync().unwrap();
            expected.extend_from_slice(&[i; 5]);
            // Holding images forces one chunk per sync.
            images.push(s.durable_image());
        }
        s.log_trim_before(12).unwrap();
        assert_eq!(s.log_start(), 12);
        assert_eq!(s.log_read_from(12).unwrap(), &expected[12..]);
        s.log_truncate(57).unwrap();
        assert_eq!(s.log_read_from(12).unwrap(), &expected[12..57]);
        s.log_append(b"new").unwrap();
        s.crash(0);
        assert_eq!(s.log_len(), 57);
        assert_eq!(images[19].log_read_from(0).unwrap(), expected);
        assert_eq!(images[0].log_read_from(0).unwrap(), &expected[..5]);
    }

    #[test]
    fn trim_past_durable_end_keeps_volatile_tail() {
        let mut s = MemoryStorage::new();
        s.log_append(b"abcdef").unwrap();
        s.log_trim_before(4).unwrap();
        assert_eq!(s.log_start(), 4);
        assert_eq!(s.log_read_from(4).unwrap(), b"ef");
        s.log_append(b"g").unwrap();
        s.crash(0);
        assert_eq!(s.log_read_from(4).unwrap(), b"ef");
    }

    #[test]
    fn injected_faults_poison_until_crash() {
        for op in FailPoint::ALL {
            let mut s = MemoryStorage::new();
            s.log_append(b"abc").unwrap();
            s.fail_next(op);
            let result = match op {
                FailPoint::LogAppend => s.log_append(b"x"),
                FailPoint::LogSync => s.log_sync(),
                FailPoint::LogTruncate => s.log_truncate(1),
                FailPoint::CheckpointWrite => s.checkpoint_write(&[], b"m"),
                FailPoint::MetaPut => s.meta_put("n", b"v"),
            };
            assert!(matches!(result, Err(StorageError::Io { .. })), "{op:?}");
            assert!(s.poisoned().is_some());
            // The failed call changed nothing, and every later call is refused.
            assert_eq!(s.log_len(), 3);
            assert!(matches!(s.log_sync(), Err(StorageError::Poisoned(_))));
            assert!(matches!(s.log_read_from(0), Err(StorageError::Poisoned(_))));
            assert!(matches!(s.meta_get("n"), Err(StorageError::Poisoned(_))));
            assert!(matches!(
                s.checkpoint_read(),
                Err(StorageError::Poisoned(_))
            ));
            assert_eq!(s.sync_count(), 0);

            // Restarting clears the poison; nothing was synced, so the log is empty.
            s.crash(0);
            assert_eq!(s.log_len(), 0);
            assert_eq!(s.meta_get("n").unwrap(), None);
            assert_eq!(s.checkpoint_read().unwrap(), (vec![], None));
            s.log_sync().unwrap();
        }
    }

    #[test]
    fn fail_point_fires_only_for_its_op() {
        let mut s = MemoryStorage::new();
        s.fail_next(FailPoint::CheckpointWrite);
        s.log_append(b"a").unwrap();
        s.log_sync().unwrap();
        s.meta_put("m", b"1").unwrap();
        assert!(s.checkpoint_write(&[], b"m").is_err());
        s.crash(0);
        s.checkpoint_write(&[], b"m").unwrap();
        assert_eq!(s.sync_count(), 1);
    }
}
