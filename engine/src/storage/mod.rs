//! Storage: one narrow, byte-level trait with two implementations.
//!
//! * [`redb_backend::RedbStorage`]: real files. The op log is a set of plain
//!   append-only segment files (see `docs/formats.md`, "Storage layout");
//!   checkpoints and metadata live in one redb database (atomic multi-table
//!   transactions, durable commits).
//! * [`memory::MemoryStorage`]: in memory, separating *durable* bytes from
//!   *volatile* ones, so the simulator and crash tests can cut power at any point.
//!
//! The engine owns record framing, checksums and encoding; storage only moves
//! bytes and reports durability. Invariants every implementation keeps:
//! * Log offsets are absolute: trimming the front never renumbers bytes.
//! * `log_append` bytes become durable only at the next successful `log_sync`; a crash
//!   keeps a prefix of what was appended (possibly ending in a torn record).
//! * `checkpoint_write`, `meta_put` and `log_truncate` are atomic and durable when
//!   they return `Ok`.
//! * After any `Err` other than [`StorageError::OutOfRange`], the backend is
//!   *poisoned*: every later fallible call returns [`StorageError::Poisoned`] until the
//!   storage is reopened (an I/O error is sticky, as in redb). `OutOfRange` is a
//!   caller's mistake caught before any byte moved, so it leaves the backend usable.

pub mod memory;
pub mod redb_backend;

use thiserror::Error;

/// Why a storage call failed.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Db(String),
    #[error("storage is poisoned by an earlier error ({0}); reopen to continue")]
    Poisoned(String),
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    /// A log offset outside `log_start()..=log_len()`. Does not poison.
    #[error("log offset {offset} is outside the kept log {start}..={end}")]
    OutOfRange { offset: u64, start: u64, end: u64 },
}

impl StorageError {
    /// Whether this error makes the backend refuse every later call.
    pub fn poisons(&self) -> bool {
        !matches!(self, StorageError::OutOfRange { .. })
    }
}

/// One row of a checkpoint: a key in a database and its encoded CRDT state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub db: u8,
    pub key: Vec<u8>,
    /// `None` deletes the row from the checkpoint.
    pub state: Option<Vec<u8>>,
}

/// The bit of [`CheckpointRow::db`] that marks a whole-database clear.
const CLEAR_DB: u8 = 0x80;

impl CheckpointRow {
    /// A row that deletes every row of database `db` from the checkpoint
    /// (FLUSHDB, FLUSHALL). Clears come before the other rows of a
    /// checkpoint; backends apply them first.
    pub fn clear_db(db: u8) -> CheckpointRow {
        CheckpointRow {
            db: CLEAR_DB | db,
            key: Vec::new(),
            state: None,
        }
    }

    /// The database this row clears, if it is a [`CheckpointRow::clear_db`].
    pub fn cleared_db(&self) -> Option<u8> {
        (self.db & CLEAR_DB != 0).then_some(self.db & !CLEAR_DB)
    }
}

/// Writes one checkpoint off the engine's lock (see `Storage::checkpoint_writer`);
/// same atomicity and durability as `Storage::checkpoint_write`.
pub trait CheckpointWriter: Send {
    fn write(self: Box<Self>, rows: &[CheckpointRow], meta: &[u8]) -> Result<(), StorageError>;
}

/// A log sync whose slow half (the fsync) runs without the engine's lock:
/// [`Storage::log_sync_begin`] hands the appended bytes to the OS, and
/// [`PendingSync::wait`] makes them durable.
#[derive(Debug, Default)]
pub struct PendingSync {
    /// The active segment (its own descriptor) and its path, for errors.
    file: Option<(std::fs::File, std::path::PathBuf)>,
}

impl PendingSync {
    /// Nothing left to do: the sync completed in `log_sync_begin`.
    pub fn done() -> PendingSync {
        PendingSync::default()
    }

    pub(crate) fn of_file(file: std::fs::File, path: std::path::PathBuf) -> PendingSync {
        PendingSync {
            file: Some((file, path)),
        }
    }

    /// The fsync (slow: call it without holding the engine).
    pub fn wait(self) -> Result<(), StorageError> {
        if let Some((file, path)) = self.file {
            file.sync_data().map_err(|source| StorageError::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// The byte-level persistence the engine needs.
pub trait Storage: Send {
    /// Appends bytes to the end of the op log (buffered; durable after `log_sync`).
    fn log_append(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes everything appended so far durable (fdatasync for files).
    fn log_sync(&mut self) -> Result<(), StorageError>;
    /// The first half of `log_sync`: appended bytes leave this process's
    /// buffers; the returned [`PendingSync::wait`] makes them durable. A
    /// backend without a cheaper split syncs here and returns a done one.
    fn log_sync_begin(&mut self) -> Result<PendingSync, StorageError> {
        self.log_sync()?;
        Ok(PendingSync::done())
    }
    /// Length in bytes of the log as seen by this process (durable + volatile),
    /// i.e. the absolute offset the next append lands at.
    fn log_len(&self) -> u64;
    /// Reads at most `bytes_max` log bytes starting at `offset` (fewer only when the
    /// log ends first). The bounded read for recovery and replication.
    ///
    /// `offset` must lie in `log_start()..=log_len()`, else `OutOfRange`.
    fn log_read(&mut self, offset: u64, bytes_max: usize) -> Result<Vec<u8>, StorageError>;
    /// Reads the whole log from `offset` to its end (small logs, salvage, tests).
    /// Prefer [`Storage::log_read`] in loops: this one allocates the whole tail.
    fn log_read_from(&mut self, offset: u64) -> Result<Vec<u8>, StorageError> {
        let tail = self.log_len().saturating_sub(offset);
        self.log_read(offset, usize::try_from(tail).unwrap_or(usize::MAX))
    }
    /// Drops log bytes before `offset` (backlog trimming); offsets stay absolute:
    /// after trimming, `log_read(offset, ..)` still addresses the same bytes.
    ///
    /// A backend may keep some bytes before `offset` (the file backend drops whole
    /// segments only); `log_start()` tells what is kept. Trimming is not promised
    /// durable: after a crash, trimmed bytes may reappear, never the other way.
    /// `offset` above `log_len()` is `OutOfRange`; at or below `log_start()` it is a
    /// no-op.
    fn log_trim_before(&mut self, offset: u64) -> Result<(), StorageError>;
    /// Truncates the log at `offset` (drops a torn tail found by recovery), durably.
    /// `offset` must lie in `log_start()..=log_len()`, else `OutOfRange`.
    fn log_truncate(&mut self, offset: u64) -> Result<(), StorageError>;
    /// First offset still kept in the log (0 until trimmed).
    fn log_start(&self) -> u64;

    /// Atomically and durably writes changed checkpoint rows plus the checkpoint
    /// metadata blob (which covers them: version vector, log offset...).
    /// Rows that clear a database ([`CheckpointRow::cleared_db`]) apply
    /// before every other row.
    fn checkpoint_write(&mut self, rows: &[CheckpointRow], meta: &[u8])
        -> Result<(), StorageError>;
    /// Reads every checkpoint row, sorted by `(db, key)`, and the metadata blob
    /// (`None` if never written). Rows always have `state: Some(..)`.
    fn checkpoint_read(&mut self) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError>;
    /// Durably stores a small named value (seq reservations, peer list...).
    fn meta_put(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError>;
    fn meta_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Human-readable location for messages ("/data/chorus", "memory").
    fn describe(&self) -> String;
    /// The concrete backend, for tools that need it (the simulator crashes a
    /// site through `MemoryStorage::crash`).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    /// The file and the offset inside it that hold absolute log offset
    /// `offset`, for error messages.
    fn log_position(&self, offset: u64) -> (String, u64) {
        (self.describe(), offset)
    }
    /// A handle that writes one checkpoint without borrowing the storage, so a
    /// large checkpoint can be written while the engine keeps serving. `None`:
    /// the backend writes checkpoints inline only.
    fn checkpoint_writer(&mut self) -> Option<Box<dyn CheckpointWriter>> {
        None
    }
}

/// Checks that `offset` is inside the kept log `start..=end`.
pub(crate) fn check_log_offset(offset: u64, start: u64, end: u64) -> Result<(), StorageError> {
    if offset < start || offset > end {
        return Err(StorageError::OutOfRange { offset, start, end });
    }
    Ok(())
}

/// One test body run against every backend, so both honour the same contract.
#[cfg(test)]
pub(crate) mod conformance {
    use super::{CheckpointRow, Storage, StorageError};

    /// Appends, syncs, reads (bounded and whole), trims and truncates.
    /// Expects a fresh, empty storage.
    pub(crate) fn log_round_trips(s: &mut impl Storage) {
        assert_eq!((s.log_start(), s.log_len()), (0, 0));
        assert_eq!(s.log_read_from(0).unwrap(), b"");

        let mut expected = Vec::new();
        for i in 0u8..50 {
            let record: Vec<u8> = (0..=i).map(|b| b.wrapping_mul(7) ^ i).collect();
            s.log_append(&record).unwrap();
            expected.extend_from_slice(&record);
            if i % 7 == 0 {
                s.log_sync().unwrap();
            }
        }
        assert_eq!(s.log_len(), expected.len() as u64);
        // Unsynced bytes are visible to this process.
        assert_eq!(s.log_read_from(0).unwrap(), expected);
        s.log_sync().unwrap();
        assert_eq!(s.log_read_from(0).unwrap(), expected);

        // Bounded reads at every kind of position, stitched back together.
        for bytes_max in [1usize, 3, 64, 1000, 100_000] {
            let mut offset = 0u64;
            let mut got = Vec::new();
            loop {
                let chunk = s.log_read(offset, bytes_max).unwrap();
                assert!(chunk.len() <= bytes_max);
                if chunk.is_empty() {
                    break;
                }
                offset += chunk.len() as u64;
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, expected, "bytes_max {bytes_max}");
        }
        let mid = expected.len() as u64 / 2;
        assert_eq!(s.log_read(mid, 0).unwrap(), b"");
        assert_eq!(s.log_read_from(mid).unwrap(), &expected[mid as usize..]);
        assert_eq!(s.log_read_from(s.log_len()).unwrap(), b"");
        assert!(matches!(
            s.log_read(s.log_len() + 1, 1),
            Err(StorageError::OutOfRange { .. })
        ));
        // An out-of-range call does not poison.
        s.log_append(b"!").unwrap();
        expected.push(b'!');

        // Trim keeps offsets absolute.
        let trim_at = expected.len() as u64 / 3;
        s.log_trim_before(trim_at).unwrap();
        assert!(s.log_start() <= trim_at);
        assert_eq!(
            s.log_read_from(trim_at).unwrap(),
            &expected[trim_at as usize..]
        );
        assert_eq!(s.log_len(), expected.len() as u64);
        s.log_trim_before(0).unwrap(); // below log_start: no-op
        assert!(matches!(
            s.log_trim_before(s.log_len() + 1),
            Err(StorageError::OutOfRange { .. })
        ));

        // Truncate then append continues at the truncation point.
        let cut = expected.len() as u64 * 2 / 3;
        s.log_truncate(cut).unwrap();
        expected.truncate(cut as usize);
        assert_eq!(s.log_len(), cut);
        s.log_append(b"after-truncate").unwrap();
        expected.extend_from_slice(b"after-truncate");
        s.log_sync().unwrap();
        assert_eq!(
            s.log_read_from(trim_at).unwrap(),
            &expected[trim_at as usize..]
        );
        if s.log_start() > 0 {
            assert!(matches!(
                s.log_read(s.log_start() - 1, 1),
                Err(StorageError::OutOfRange { .. })
            ));
            assert!(matches!(
                s.log_truncate(s.log_start() - 1),
                Err(StorageError::OutOfRange { .. })
            ));
        }
        // Truncating at the very start empties the log but keeps its numbering.
        let start = s.log_start();
        s.log_truncate(start).unwrap();
        assert_eq!((s.log_start(), s.log_len()), (start, start));
        s.log_append(b"xyz").unwrap();
        assert_eq!(s.log_read_from(start).unwrap(), b"xyz");
    }

    fn row(db: u8, key: &[u8], state: Option<&[u8]>) -> CheckpointRow {
        CheckpointRow {
            db,
            key: key.to_vec(),
            state: state.map(<[u8]>::to_vec),
        }
    }

    /// Checkpoint rows (insert, overwrite, delete), the metadata blob and named meta.
    pub(crate) fn checkpoint_and_meta_round_trips(s: &mut impl Storage) {
        assert_eq!(s.checkpoint_read().unwrap(), (vec![], None));
        assert_eq!(s.meta_get("seq").unwrap(), None);

        s.checkpoint_write(
            &[
                row(1, b"b", Some(b"B1")),
                row(0, b"z", Some(b"Z")),
                row(1, b"a", Some(b"A")),
                row(15, b"", Some(b"")),
            ],
            b"meta-1",
        )
        .unwrap();
        s.checkpoint_write(
            &[
                row(1, b"b", Some(b"B2")),
                row(0, b"z", None),
                row(3, b"never-written", None),
            ],
            b"meta-2",
        )
        .unwrap();
        let (rows, meta) = s.checkpoint_read().unwrap();
        assert_eq!(
            rows,
            vec![
                row(1, b"a", Some(b"A")),
                row(1, b"b", Some(b"B2")),
                row(15, b"", Some(b"")),
            ]
        );
        assert_eq!(meta.as_deref(), Some(&b"meta-2"[..]));

        // A clear deletes every row of its database (and only those) before
        // the checkpoint's other rows apply, wherever it is listed.
        s.checkpoint_write(
            &[
                row(1, b"c", Some(b"C")),
                CheckpointRow::clear_db(1),
                row(0, b"y", Some(b"Y")),
            ],
            b"meta-3",
        )
        .unwrap();
        let (rows, _) = s.checkpoint_read().unwrap();
        assert_eq!(
            rows,
            vec![
                row(0, b"y", Some(b"Y")),
                row(1, b"c", Some(b"C")),
                row(15, b"", Some(b"")),
            ]
        );
        assert_eq!(CheckpointRow::clear_db(15).cleared_db(), Some(15));
        assert_eq!(row(15, b"", None).cleared_db(), None);

        s.meta_put("seq", b"100").unwrap();
        s.meta_put("peers", b"2,3").unwrap();
        s.meta_put("seq", b"200").unwrap();
        assert_eq!(s.meta_get("seq").unwrap().as_deref(), Some(&b"200"[..]));
        assert_eq!(s.meta_get("peers").unwrap().as_deref(), Some(&b"2,3"[..]));
        assert_eq!(s.meta_get("missing").unwrap(), None);
    }
}
