//! Real storage: op log segment files + one redb database for checkpoints and metadata.
//!
//! Layout of a data directory (described for operators in `docs/formats.md`,
//! "Storage layout"):
//! * `log/<start>.seg`: the op log as plain append-only segment files, each named
//!   by the absolute log offset of its first byte (20 zero-padded decimal digits).
//!   A segment is rolled once it would exceed `segment_bytes_max`; trimming deletes
//!   whole segments, which is why log offsets can stay absolute for free.
//! * `chorus.redb`: checkpoint rows, the checkpoint metadata blob and named meta
//!   values, each write one durable redb transaction.
//!
//! Invariants:
//! * The kept segments are contiguous: each starts where the previous ends, and
//!   only the last one (the *active* segment) is ever appended to. Open checks
//!   this and refuses a log with a gap, an overlap or a stranger file in it.
//! * A segment is synced before the next one is created, so everything before the
//!   active segment is durable and a crash can only shorten the active one.
//! * Appends pass through one bounded userspace buffer (`write_buffer_bytes`);
//!   `log_sync` flushes it and `fdatasync`s the active segment, and the log
//!   directory too when segments were created or deleted since the last sync.
//! * Any error other than `OutOfRange` poisons the storage until it is reopened.
//!
//! The redb file lock makes a second open of the same directory fail, which also
//! keeps two processes from appending to the same log.

/// Page cache of the checkpoint database.
const REDB_CACHE_BYTES: usize = 32 << 20;

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use super::{check_log_offset, CheckpointRow, Storage, StorageError};

/// Checkpoint rows: `(db, key)` -> encoded CRDT state.
const ROWS: TableDefinition<(u8, &[u8]), &[u8]> = TableDefinition::new("checkpoint_rows");
/// The checkpoint metadata blob, under [`CHECKPOINT_META_KEY`].
const CHECKPOINT: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoint_meta");
const CHECKPOINT_META_KEY: &str = "meta";
/// Named meta values of [`Storage::meta_put`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Facts about the directory itself, under [`FORMAT_VERSION_KEY`].
const FORMAT: TableDefinition<&str, u64> = TableDefinition::new("format");
const FORMAT_VERSION_KEY: &str = "version";
/// Version of this directory layout. Written when the log is first created, so
/// its presence also says "a log segment must exist".
/// Version 2: rows keep float increments of strings and hash fields as exact
/// binary fractions (`CellImage::fctr`); version 1 rows do not decode as 2.
/// Version 3: every checkpoint row and the checkpoint metadata end with a
/// CRC-32 (`RowImage::encode_sealed`), so damage is refused at open.
/// Version 4: rows carry lists (`RowImage::list`); version 3 rows do not
/// decode as 4.
/// Version 5: rows carry folded counter entries (`CellImage::ctr_lo`...).
/// Version 6: rows of the cluster's own database (number 16, membership:
/// `keyspace::CLUSTER_DB`), which a version 5 build would read as database
/// 0; version 5 directories open as they are and are marked 6.
/// Version 7: rows may carry a HyperLogLog (`RowImage::hll`, encoded after
/// the other fields), which a version 6 build would drop unseen; version 5
/// and 6 directories open as they are and are marked 7.
const FORMAT_VERSION: u64 = 7;
/// The older versions this build upgrades in place (their rows decode as
/// they are).
const FORMAT_VERSIONS_UPGRADED: [u64; 2] = [5, 6];

const DB_FILE_NAME: &str = "chorus.redb";
const LOG_DIR_NAME: &str = "log";
const SEGMENT_SUFFIX: &str = ".seg";
/// Enough for any u64 (20 digits), so names sort like the offsets they carry.
const SEGMENT_NAME_DIGITS: usize = 20;

/// Tuning of [`RedbStorage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// A segment is rolled before an append that would make it longer than this
    /// (a single append larger than this gets a segment of its own). Bounds the
    /// granularity of trimming. 0 rolls before every append.
    pub segment_bytes_max: u64,
    /// Capacity of the userspace write buffer in front of the active segment.
    pub write_buffer_bytes: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            segment_bytes_max: 64 << 20,
            write_buffer_bytes: 1 << 20,
        }
    }
}

/// One kept log segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    /// Absolute log offset of its first byte (and its file name).
    start: u64,
    /// Bytes in it, including those still in the write buffer for the active one.
    len: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// File-backed [`Storage`]: segment files for the op log, redb for the rest.
pub struct RedbStorage {
    dir: PathBuf,
    log_dir: PathBuf,
    db_path: PathBuf,
    db: Arc<Database>,
    options: RedbOptions,
    /// Kept segments, ascending and contiguous; never empty; the last is active.
    segments: Vec<Segment>,
    /// Buffered appends to the active segment (opened in append mode).
    writer: BufWriter<File>,
    /// Segment files were created or deleted since the log directory was synced.
    log_dir_dirty: bool,
    poisoned: Option<String>,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("dir", &self.dir)
            .field("segments", &self.segments)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl RedbStorage {
    /// Opens (creating if needed) the data directory `dir` with default options.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, RedbOptions::default())
    }

    /// Opens (creating if needed) the data directory `dir`.
    ///
    /// Fails with `Corrupt` when the log directory holds a file that is not a
    /// segment, when segments leave a gap or overlap, or when the database says a
    /// log was created but no segment is left; with `Db` when another handle has
    /// the directory open.
    pub fn open_with(dir: &Path, options: RedbOptions) -> Result<Self, StorageError> {
        let log_dir = dir.join(LOG_DIR_NAME);
        let db_path = dir.join(DB_FILE_NAME);
        fs::create_dir_all(&log_dir).map_err(io_err(&log_dir))?;

        // The database first: its file lock guards the log directory as well.
        // redb's default page cache is 1 GiB; checkpoints are write-mostly and
        // read once at start, so a small cache keeps the site's RSS honest.
        let db = Arc::new(
            redb::Builder::new()
                .set_cache_size(REDB_CACHE_BYTES)
                .create(&db_path)
                .map_err(db_err(&db_path, "open"))?,
        );
        let txn = db.begin_write().map_err(db_err(&db_path, "begin"))?;
        let version = {
            // Opening every table in a write transaction creates the missing ones,
            // so readers never meet "table does not exist".
            txn.open_table(ROWS)
                .map_err(db_err(&db_path, "open rows"))?;
            txn.open_table(CHECKPOINT)
                .map_err(db_err(&db_path, "open checkpoint"))?;
            txn.open_table(META)
                .map_err(db_err(&db_path, "open meta"))?;
            let format = txn
                .open_table(FORMAT)
                .map_err(db_err(&db_path, "open format"))?;
            let version = format
                .get(FORMAT_VERSION_KEY)
                .map_err(db_err(&db_path, "read format"))?
                .map(|v| v.value());
            version
        };
        if let Some(version) = version {
            if version != FORMAT_VERSION && !FORMAT_VERSIONS_UPGRADED.contains(&version) {
                return Err(StorageError::Corrupt {
                    file: db_path.display().to_string(),
                    offset: 0,
                    reason: format!(
                        "storage format version {version}, this build reads {FORMAT_VERSION}"
                    ),
                });
            }
        }

        let mut segments = scan_log_dir(&log_dir)?;
        if segments.is_empty() {
            if version.is_some() {
                return Err(StorageError::Corrupt {
                    file: log_dir.display().to_string(),
                    offset: 0,
                    reason: "no log segment left, but the database says a log was created"
                        .to_owned(),
                });
            }
            // A new directory. The segment is made durable before the version row
            // that promises it exists.
            let first = segment_path(&log_dir, 0);
            File::create(&first).map_err(io_err(&first))?;
            sync_dir(&log_dir)?;
            sync_dir(dir)?;
            segments.push(Segment { start: 0, len: 0 });
        }
        if version.is_none_or(|v| FORMAT_VERSIONS_UPGRADED.contains(&v)) {
            {
                let mut format = txn
                    .open_table(FORMAT)
                    .map_err(db_err(&db_path, "open format"))?;
                format
                    .insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                    .map_err(db_err(&db_path, "write format"))?;
            }
            txn.commit().map_err(db_err(&db_path, "commit"))?;
        } else {
            txn.abort().map_err(db_err(&db_path, "abort"))?;
        }

        let active = segments
            .last()
            .copied()
            .ok_or_else(|| StorageError::Corrupt {
                file: log_dir.display().to_string(),
                offset: 0,
                reason: "no log segment".to_owned(),
            })?;
        let writer = open_active(&log_dir, active.start, options.write_buffer_bytes)?;
        let storage = RedbStorage {
            dir: dir.to_path_buf(),
            log_dir,
            db_path,
            db,
            options,
            segments,
            writer,
            log_dir_dirty: false,
            poisoned: None,
        };
        debug_assert!(storage.invariants_hold());
        Ok(storage)
    }

    /// Why the storage is poisoned, if it is.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn active(&self) -> Segment {
        // `segments` is never empty (see `open_with`); the fallback only keeps this
        // free of a panic path.
        self.segments
            .last()
            .copied()
            .unwrap_or(Segment { start: 0, len: 0 })
    }

    fn active_path(&self) -> PathBuf {
        segment_path(&self.log_dir, self.active().start)
    }

    fn check_poison(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            Some(reason) => Err(StorageError::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Remembers an error that poisons; passes the result through.
    fn poison_on_err<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(err) = &result {
            if err.poisons() {
                self.poisoned = Some(err.to_string());
            }
        }
        result
    }

    fn flush_buffer(&mut self) -> Result<(), StorageError> {
        if self.writer.buffer().is_empty() {
            return Ok(());
        }
        let path = self.active_path();
        self.writer.flush().map_err(io_err(&path))
    }

    /// Closes the active segment durably and starts a new one at its end.
    fn roll(&mut self) -> Result<(), StorageError> {
        let old = self.active_path();
        self.writer.flush().map_err(io_err(&old))?;
        // Syncing before the next segment exists keeps "only the active segment
        // can be short after a crash", so open never sees a gap.
        self.writer.get_ref().sync_data().map_err(io_err(&old))?;
        let start = self.active().end();
        let path = segment_path(&self.log_dir, start);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.writer = BufWriter::with_capacity(self.options.write_buffer_bytes, file);
        self.segments.push(Segment { start, len: 0 });
        self.log_dir_dirty = true;
        Ok(())
    }

    fn append_inner(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let active = self.active();
        if active.len > 0 && active.len + bytes.len() as u64 > self.options.segment_bytes_max {
            self.roll()?;
        }
        // The path is only formatted on error: this runs once per op.
        if let Err(source) = self.writer.write_all(bytes) {
            return Err(io_err(&self.active_path())(source));
        }
        if let Some(last) = self.segments.last_mut() {
            last.len += bytes.len() as u64;
        }
        Ok(())
    }

    fn sync_inner(&mut self) -> Result<(), StorageError> {
        let path = self.active_path();
        self.writer.flush().map_err(io_err(&path))?;
        self.writer.get_ref().sync_data().map_err(io_err(&path))?;
        if self.log_dir_dirty {
            sync_dir(&self.log_dir)?;
            self.log_dir_dirty = false;
        }
        Ok(())
    }

    /// Writes the buffer out and hands back a descriptor of the active
    /// segment to fsync without the engine (segments before it were synced
    /// when the log rolled past them). A new segment's directory entry is
    /// synced here, under the lock (rare), and the flag cleared only once
    /// that succeeded: a sync that overtakes this pending one must never
    /// skip it.
    fn sync_begin_inner(&mut self) -> Result<super::PendingSync, StorageError> {
        let path = self.active_path();
        self.writer.flush().map_err(io_err(&path))?;
        if self.log_dir_dirty {
            sync_dir(&self.log_dir)?;
            self.log_dir_dirty = false;
        }
        let file = self.writer.get_ref().try_clone().map_err(io_err(&path))?;
        Ok(super::PendingSync::of_file(file, path))
    }

    fn read_inner(&mut self, offset: u64, bytes_max: usize) -> Result<Vec<u8>, StorageError> {
        check_log_offset(offset, self.log_start(), self.log_len())?;
        self.flush_buffer()?;
        let available = usize::try_from(self.log_len() - offset).unwrap_or(usize::MAX);
        let want = bytes_max.min(available);
        let mut out = Vec::with_capacity(want);
        let first = self.segments.partition_point(|s| s.end() <= offset);
        for segment in self.segments.iter().skip(first) {
            let missing = want - out.len();
            if missing == 0 {
                break;
            }
            let at = offset + out.len() as u64;
            let position = at - segment.start;
            let take = (missing as u64).min(segment.len - position);
            let path = segment_path(&self.log_dir, segment.start);
            let mut file = File::open(&path).map_err(io_err(&path))?;
            file.seek(SeekFrom::Start(position))
                .map_err(io_err(&path))?;
            let got = file
                .take(take)
                .read_to_end(&mut out)
                .map_err(io_err(&path))?;
            if (got as u64) < take {
                return Err(StorageError::Corrupt {
                    file: path.display().to_string(),
                    offset: position + got as u64,
                    reason: format!("segment is shorter than its expected {} bytes", segment.len),
                });
            }
        }
        Ok(out)
    }

    fn trim_inner(&mut self, offset: u64) -> Result<(), StorageError> {
        let end = self.log_len();
        if offset > end {
            return Err(StorageError::OutOfRange {
                offset,
                start: self.log_start(),
                end,
            });
        }
        // Whole segments before `offset`, never the active one. Oldest first, so a
        // crash part way leaves a contiguous log.
        let kept_from = self
            .segments
            .partition_point(|s| s.end() <= offset)
            .min(self.segments.len() - 1);
        for segment in self.segments.iter().take(kept_from) {
            let path = segment_path(&self.log_dir, segment.start);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.log_dir_dirty = true;
        }
        self.segments.drain(..kept_from);
        Ok(())
    }

    fn truncate_inner(&mut self, offset: u64) -> Result<(), StorageError> {
        check_log_offset(offset, self.log_start(), self.log_len())?;
        // Buffered bytes must reach the file before `set_len`, or a later flush
        // would write them past the cut.
        self.flush_buffer()?;
        let index = self
            .segments
            .partition_point(|s| s.start <= offset)
            .saturating_sub(1);
        let target = self
            .segments
            .get(index)
            .copied()
            .ok_or_else(|| StorageError::Corrupt {
                file: self.log_dir.display().to_string(),
                offset,
                reason: "no segment holds the truncation offset".to_owned(),
            })?;
        if index + 1 < self.segments.len() {
            self.writer =
                open_active(&self.log_dir, target.start, self.options.write_buffer_bytes)?;
            // Newest first, and durably before cutting the target, so a crash part
            // way leaves a contiguous prefix of the old log.
            for segment in self.segments.iter().skip(index + 1).rev() {
                let path = segment_path(&self.log_dir, segment.start);
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
            sync_dir(&self.log_dir)?;
            self.segments.truncate(index + 1);
        }
        let path = segment_path(&self.log_dir, target.start);
        let len = offset - target.start;
        let file = self.writer.get_ref();
        file.set_len(len).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))?;
        if let Some(last) = self.segments.last_mut() {
            last.len = len;
        }
        Ok(())
    }

    fn checkpoint_write_inner(
        &mut self,
        rows: &[CheckpointRow],
        meta: &[u8],
    ) -> Result<(), StorageError> {
        write_checkpoint(&self.db, &self.db_path, rows, meta)
    }

    fn checkpoint_read_inner(
        &mut self,
    ) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError> {
        let path = &self.db_path;
        let txn = self.db.begin_read().map_err(db_err(path, "begin"))?;
        let table = txn.open_table(ROWS).map_err(db_err(path, "open rows"))?;
        let mut rows = Vec::new();
        for item in table.iter().map_err(db_err(path, "scan rows"))? {
            let (key, state) = item.map_err(db_err(path, "read row"))?;
            let (db, key) = key.value();
            rows.push(CheckpointRow {
                db,
                key: key.to_vec(),
                state: Some(state.value().to_vec()),
            });
        }
        let checkpoint = txn
            .open_table(CHECKPOINT)
            .map_err(db_err(path, "open checkpoint"))?;
        let meta = checkpoint
            .get(CHECKPOINT_META_KEY)
            .map_err(db_err(path, "read checkpoint meta"))?
            .map(|v| v.value().to_vec());
        Ok((rows, meta))
    }

    fn meta_put_inner(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        let path = &self.db_path;
        let txn = self.db.begin_write().map_err(db_err(path, "begin"))?;
        {
            let mut table = txn.open_table(META).map_err(db_err(path, "open meta"))?;
            table
                .insert(name, value)
                .map_err(db_err(path, "write meta"))?;
        }
        txn.commit().map_err(db_err(path, "commit meta"))
    }

    fn meta_get_inner(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = &self.db_path;
        let txn = self.db.begin_read().map_err(db_err(path, "begin"))?;
        let table = txn.open_table(META).map_err(db_err(path, "open meta"))?;
        let value = table.get(name).map_err(db_err(path, "read meta"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn invariants_hold(&self) -> bool {
        !self.segments.is_empty()
            && self.segments.windows(2).all(|pair| match pair {
                [a, b] => a.end() == b.start,
                _ => false,
            })
    }
}

impl Storage for RedbStorage {
    fn log_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_poison()?;
        let result = self.append_inner(bytes);
        debug_assert!(self.invariants_hold());
        self.poison_on_err(result)
    }

    fn log_sync(&mut self) -> Result<(), StorageError> {
        self.check_poison()?;
        let result = self.sync_inner();
        self.poison_on_err(result)
    }

    fn log_sync_begin(&mut self) -> Result<super::PendingSync, StorageError> {
        self.check_poison()?;
        let result = self.sync_begin_inner();
        self.poison_on_err(result)
    }

    fn log_len(&self) -> u64 {
        self.active().end()
    }

    fn log_read(&mut self, offset: u64, bytes_max: usize) -> Result<Vec<u8>, StorageError> {
        self.check_poison()?;
        let result = self.read_inner(offset, bytes_max);
        self.poison_on_err(result)
    }

    fn log_trim_before(&mut self, offset: u64) -> Result<(), StorageError> {
        self.check_poison()?;
        let result = self.trim_inner(offset);
        debug_assert!(self.invariants_hold());
        self.poison_on_err(result)
    }

    fn log_truncate(&mut self, offset: u64) -> Result<(), StorageError> {
        self.check_poison()?;
        let result = self.truncate_inner(offset);
        debug_assert!(self.invariants_hold());
        self.poison_on_err(result)
    }

    fn log_start(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.start)
    }

    fn checkpoint_write(
        &mut self,
        rows: &[CheckpointRow],
        meta: &[u8],
    ) -> Result<(), StorageError> {
        self.check_poison()?;
        let result = self.checkpoint_write_inner(rows, meta);
        self.poison_on_err(result)
    }

    fn checkpoint_read(&mut self) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError> {
        self.check_poison()?;
        let result = self.checkpoint_read_inner();
        self.poison_on_err(result)
    }

    fn meta_put(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError> {
        self.check_poison()?;
        let result = self.meta_put_inner(name, value);
        self.poison_on_err(result)
    }

    fn meta_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.check_poison()?;
        let result = self.meta_get_inner(name);
        self.poison_on_err(result)
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn log_position(&self, offset: u64) -> (String, u64) {
        match self.segments.iter().rev().find(|seg| seg.start <= offset) {
            Some(seg) => (
                segment_path(&self.log_dir, seg.start).display().to_string(),
                offset - seg.start,
            ),
            None => (self.log_dir.display().to_string(), offset),
        }
    }

    fn checkpoint_writer(&mut self) -> Option<Box<dyn super::CheckpointWriter>> {
        if self.poisoned.is_some() {
            return None;
        }
        Some(Box::new(RedbCheckpointWriter {
            db: Arc::clone(&self.db),
            path: self.db_path.clone(),
        }))
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

fn segment_path(log_dir: &Path, start: u64) -> PathBuf {
    log_dir.join(format!(
        "{start:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ))
}

/// The start offset a segment file name carries, if it is one.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lists the segments in `log_dir`, sorted, and checks they are contiguous.
fn scan_log_dir(log_dir: &Path) -> Result<Vec<Segment>, StorageError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(log_dir).map_err(io_err(log_dir))? {
        let entry = entry.map_err(io_err(log_dir))?;
        let path = entry.path();
        let start = entry.file_name().to_str().and_then(parse_segment_name);
        let metadata = entry.metadata().map_err(io_err(&path))?;
        let Some(start) = start.filter(|_| metadata.is_file()) else {
            return Err(StorageError::Corrupt {
                file: path.display().to_string(),
                offset: 0,
                reason: format!(
                    "unexpected entry in the log directory (only files named \
                     <{SEGMENT_NAME_DIGITS}-digit start offset>{SEGMENT_SUFFIX} belong there)"
                ),
            });
        };
        segments.push(Segment {
            start,
            len: metadata.len(),
        });
    }
    segments.sort_by_key(|s| s.start);
    for segment in &segments {
        if segment.start.checked_add(segment.len).is_none() {
            return Err(StorageError::Corrupt {
                file: segment_path(log_dir, segment.start).display().to_string(),
                offset: 0,
                reason: "segment ends beyond the largest log offset".to_owned(),
            });
        }
    }
    for pair in segments.windows(2) {
        if let [previous, next] = pair {
            if previous.end() != next.start {
                let what = if previous.end() < next.start {
                    "a gap"
                } else {
                    "an overlap"
                };
                return Err(StorageError::Corrupt {
                    file: segment_path(log_dir, next.start).display().to_string(),
                    offset: 0,
                    reason: format!(
                        "{what} in the log: the previous segment ends at offset {}, this one \
                         starts at {}",
                        previous.end(),
                        next.start
                    ),
                });
            }
        }
    }
    Ok(segments)
}

fn open_active(
    log_dir: &Path,
    start: u64,
    buffer_bytes: usize,
) -> Result<BufWriter<File>, StorageError> {
    let path = segment_path(log_dir, start);
    // Append mode: writes land at the end even right after `set_len`.
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok(BufWriter::with_capacity(buffer_bytes, file))
}

/// Makes creations and deletions of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    }
    // Other systems cannot open a directory as a file; their file systems make
    // entries durable with the file's own sync.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn db_err<'a, E: Into<redb::Error>>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(E) -> StorageError + 'a {
    move |err| match err.into() {
        redb::Error::Io(source) => StorageError::Io {
            path: path.display().to_string(),
            source,
        },
        redb::Error::DatabaseAlreadyOpen => StorageError::Db(format!(
            "{}: {what}: already open by another handle or process",
            path.display()
        )),
        other => StorageError::Db(format!("{}: {what}: {other}", path.display())),
    }
}

/// One checkpoint transaction (shared by the inline path and the writer that
/// runs off the engine lock).
fn write_checkpoint(
    db: &Database,
    path: &Path,
    rows: &[CheckpointRow],
    meta: &[u8],
) -> Result<(), StorageError> {
    let path = &path.to_path_buf();
    let txn = db.begin_write().map_err(db_err(path, "begin"))?;
    {
        let mut table = txn.open_table(ROWS).map_err(db_err(path, "open rows"))?;
        for d in rows.iter().filter_map(CheckpointRow::cleared_db) {
            let empty: &[u8] = &[];
            table
                .retain_in((d, empty)..(d + 1, empty), |_, _| false)
                .map_err(db_err(path, "clear database"))?;
        }
        for row in rows.iter().filter(|r| r.cleared_db().is_none()) {
            let key = (row.db, row.key.as_slice());
            match &row.state {
                Some(state) => {
                    table
                        .insert(key, state.as_slice())
                        .map_err(db_err(path, "write row"))?;
                }
                None => {
                    table.remove(key).map_err(db_err(path, "delete row"))?;
                }
            }
        }
        let mut checkpoint = txn
            .open_table(CHECKPOINT)
            .map_err(db_err(path, "open checkpoint"))?;
        checkpoint
            .insert(CHECKPOINT_META_KEY, meta)
            .map_err(db_err(path, "write checkpoint meta"))?;
    }
    txn.commit().map_err(db_err(path, "commit checkpoint"))
}

struct RedbCheckpointWriter {
    db: Arc<Database>,
    path: PathBuf,
}

impl super::CheckpointWriter for RedbCheckpointWriter {
    fn write(self: Box<Self>, rows: &[CheckpointRow], meta: &[u8]) -> Result<(), StorageError> {
        write_checkpoint(&self.db, &self.path, rows, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance;
    use super::*;

    fn small(segment_bytes_max: u64) -> RedbOptions {
        RedbOptions {
            segment_bytes_max,
            write_buffer_bytes: 8,
        }
    }

    fn segment_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join(LOG_DIR_NAME))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn set_format(dir: &Path, version: u64) {
        let db = Database::create(dir.join(DB_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(FORMAT)
            .unwrap()
            .insert(FORMAT_VERSION_KEY, version)
            .unwrap();
        txn.commit().unwrap();
    }

    fn format_of(dir: &Path) -> u64 {
        let db = Database::create(dir.join(DB_FILE_NAME)).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(FORMAT).unwrap();
        let v = t.get(FORMAT_VERSION_KEY).unwrap().unwrap().value();
        v
    }

    #[test]
    fn version_5_and_6_directories_open_and_are_marked_7_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStorage::open(dir.path()).unwrap());
        assert_eq!(format_of(dir.path()), FORMAT_VERSION);
        for old in [5, 6] {
            set_format(dir.path(), old);
            drop(RedbStorage::open(dir.path()).unwrap());
            assert_eq!(format_of(dir.path()), 7);
        }
        set_format(dir.path(), 4);
        let err = RedbStorage::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("storage format version 4"), "{err}");
    }

    #[test]
    fn log_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        conformance::log_round_trips(&mut RedbStorage::open(dir.path()).unwrap());
    }

    #[test]
    fn log_round_trips_across_small_segments() {
        for segment_bytes_max in [0, 1, 16, 100] {
            let dir = tempfile::tempdir().unwrap();
            let mut s = RedbStorage::open_with(dir.path(), small(segment_bytes_max)).unwrap();
            conformance::log_round_trips(&mut s);
            assert!(
                s.log_start() > 0,
                "trim dropped no segment at {segment_bytes_max}"
            );
        }
    }

    #[test]
    fn checkpoint_and_meta_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        conformance::checkpoint_and_meta_round_trips(&mut RedbStorage::open(dir.path()).unwrap());
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RedbStorage::open_with(dir.path(), small(10)).unwrap();
            for i in 0u8..7 {
                s.log_append(&[i; 5]).unwrap();
            }
            s.log_sync().unwrap();
            s.log_trim_before(12).unwrap();
            s.checkpoint_write(
                &[CheckpointRow {
                    db: 2,
                    key: b"k".to_vec(),
                    state: Some(b"v".to_vec()),
                }],
                b"vv",
            )
            .unwrap();
            s.meta_put("seq_reserved", &42u64.to_le_bytes()).unwrap();
        }
        let mut s = RedbStorage::open_with(dir.path(), small(10)).unwrap();
        assert_eq!(s.log_start(), 10);
        assert_eq!(s.log_len(), 35);
        let expected: Vec<u8> = (2u8..7).flat_map(|i| [i; 5]).collect();
        assert_eq!(s.log_read_from(10).unwrap(), expected);
        let (rows, meta) = s.checkpoint_read().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(meta.as_deref(), Some(&b"vv"[..]));
        assert_eq!(
            s.meta_get("seq_reserved").unwrap().as_deref(),
            Some(&42u64.to_le_bytes()[..])
        );
        // Appends continue after the reopened tail.
        s.log_append(b"more").unwrap();
        s.log_sync().unwrap();
        assert_eq!(s.log_len(), 39);
    }

    #[test]
    fn segments_roll_trim_and_truncate_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStorage::open_with(dir.path(), small(10)).unwrap();
        assert_eq!(segment_names(dir.path()), ["00000000000000000000.seg"]);
        for _ in 0..7 {
            s.log_append(b"12345").unwrap();
        }
        // One append larger than a segment gets a segment of its own.
        s.log_append(&[9; 25]).unwrap();
        s.log_append(b"z").unwrap();
        s.log_sync().unwrap();
        assert_eq!(
            segment_names(dir.path()),
            [
                "00000000000000000000.seg",
                "00000000000000000010.seg",
                "00000000000000000020.seg",
                "00000000000000000030.seg",
                "00000000000000000035.seg",
                "00000000000000000060.seg",
            ]
        );

        // Trim drops only segments that end at or before the offset.
        s.log_trim_before(29).unwrap();
        assert_eq!(s.log_start(), 20);
        assert_eq!(segment_names(dir.path()).len(), 4);
        // Never the active segment, even when everything is trimmed.
        s.log_trim_before(s.log_len()).unwrap();
        assert_eq!(s.log_start(), 60);
        assert_eq!(segment_names(dir.path()), ["00000000000000000060.seg"]);

        for _ in 0..4 {
            s.log_append(b"abcde").unwrap();
        }
        assert_eq!(s.log_len(), 81);
        s.log_truncate(72).unwrap();
        assert_eq!(
            segment_names(dir.path()),
            ["00000000000000000060.seg", "00000000000000000066.seg"]
        );
        let active = dir
            .path()
            .join(LOG_DIR_NAME)
            .join("00000000000000000066.seg");
        assert_eq!(fs::metadata(&active).unwrap().len(), 6);
        s.log_append(b"!").unwrap();
        assert_eq!(s.log_read_from(60).unwrap(), b"zabcdeabcdea!");
        drop(s);

        let s = RedbStorage::open_with(dir.path(), small(10)).unwrap();
        assert_eq!((s.log_start(), s.log_len()), (60, 73));
    }

    #[test]
    fn reopen_sees_flushed_but_unsynced_bytes_as_a_tail() {
        // A process exit (not a power cut) keeps what the buffer flushed.
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RedbStorage::open_with(dir.path(), small(1000)).unwrap();
            s.log_append(b"synced").unwrap();
            s.log_sync().unwrap();
            s.log_append(b"+tail").unwrap();
        }
        let mut s = RedbStorage::open(dir.path()).unwrap();
        assert_eq!(s.log_read_from(0).unwrap(), b"synced+tail");
        // Recovery cuts a torn tail durably.
        s.log_truncate(6).unwrap();
        drop(s);
        let mut s = RedbStorage::open(dir.path()).unwrap();
        assert_eq!(s.log_read_from(0).unwrap(), b"synced");
    }

    #[test]
    fn second_open_of_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RedbStorage::open(dir.path()).unwrap();
        let err = RedbStorage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Db(_)), "{err}");
    }

    #[test]
    fn unexpected_file_in_log_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStorage::open(dir.path()).unwrap());
        for stranger in ["notes.txt", "0000000000000000000a.seg", "0.seg"] {
            let path = dir.path().join(LOG_DIR_NAME).join(stranger);
            fs::write(&path, b"x").unwrap();
            let err = RedbStorage::open(dir.path()).unwrap_err();
            assert!(
                matches!(&err, StorageError::Corrupt { reason, .. } if reason.contains("unexpected")),
                "{err}"
            );
            fs::remove_file(&path).unwrap();
        }
        let sub = dir
            .path()
            .join(LOG_DIR_NAME)
            .join("00000000000000000099.seg");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(
            RedbStorage::open(dir.path()),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn gap_or_overlap_between_segments_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RedbStorage::open_with(dir.path(), small(4)).unwrap();
            for _ in 0..3 {
                s.log_append(b"abcd").unwrap();
            }
            s.log_sync().unwrap();
        }
        let log = dir.path().join(LOG_DIR_NAME);
        let middle = log.join("00000000000000000004.seg");
        fs::write(&middle, b"ab").unwrap();
        let err = RedbStorage::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { reason, .. } if reason.contains("gap")),
            "{err}"
        );
        fs::write(&middle, b"abcdef").unwrap();
        let err = RedbStorage::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { reason, .. } if reason.contains("overlap")),
            "{err}"
        );
    }

    #[test]
    fn missing_log_with_existing_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStorage::open(dir.path()).unwrap());
        fs::remove_file(
            dir.path()
                .join(LOG_DIR_NAME)
                .join("00000000000000000000.seg"),
        )
        .unwrap();
        let err = RedbStorage::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn error_poisons_until_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStorage::open_with(dir.path(), small(1000)).unwrap();
        s.log_append(b"0123456789").unwrap();
        s.log_sync().unwrap();
        // Someone shortens the segment behind our back: reading finds it short.
        let segment = dir
            .path()
            .join(LOG_DIR_NAME)
            .join("00000000000000000000.seg");
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(4)
            .unwrap();
        let err = s.log_read_from(0).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(s.poisoned().is_some());
        assert!(matches!(s.log_append(b"x"), Err(StorageError::Poisoned(_))));
        assert!(matches!(s.log_sync(), Err(StorageError::Poisoned(_))));
        assert!(matches!(
            s.meta_put("a", b"b"),
            Err(StorageError::Poisoned(_))
        ));
        assert!(matches!(
            s.checkpoint_read(),
            Err(StorageError::Poisoned(_))
        ));
        drop(s);

        let mut s = RedbStorage::open(dir.path()).unwrap();
        assert_eq!(s.log_read_from(0).unwrap(), b"0123");
        s.meta_put("a", b"b").unwrap();
    }

    #[test]
    fn out_of_range_does_not_poison() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbStorage::open(dir.path()).unwrap();
        assert!(matches!(
            s.log_truncate(1),
            Err(StorageError::OutOfRange {
                offset: 1,
                start: 0,
                end: 0
            })
        ));
        assert!(s.poisoned().is_none());
        s.log_append(b"a").unwrap();
    }

    #[test]
    fn segment_names_parse_strictly() {
        assert_eq!(parse_segment_name("00000000000000000042.seg"), Some(42));
        assert_eq!(
            parse_segment_name("18446744073709551615.seg"),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("99999999999999999999.seg"), None);
        assert_eq!(parse_segment_name("+0000000000000000042.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.log"), None);
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(
            segment_path(Path::new("l"), 42),
            Path::new("l/00000000000000000042.seg")
        );
    }
}
