//! Storage: one narrow, byte-level trait with two implementations.
//!
//! * [`redb_backend::RedbStorage`]: real files. The op log is a plain append-only
//!   file of framed records (see `docs/formats.md`); checkpoints and metadata live in
//!   one redb database (atomic multi-table transactions, durable commits).
//! * [`memory::MemoryStorage`]: in memory, separating *durable* bytes from
//!   *volatile* ones, so the simulator and crash tests can cut power at any point.
//!
//! The engine owns record framing, checksums and encoding; storage only moves
//! bytes and reports durability. Invariants every implementation keeps:
//! * `log_append` bytes become durable only at the next successful `log_sync`; a crash
//!   keeps a prefix of what was appended (possibly ending in a torn record).
//! * `checkpoint_write` and `meta_put` are atomic and durable when they return `Ok`.
//! * After any `Err`, the backend is *poisoned*: every later call returns
//!   `StorageError::Poisoned` until the storage is reopened (an I/O error is sticky).

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
}

/// One row of a checkpoint: a key in a database and its encoded CRDT state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub db: u8,
    pub key: Vec<u8>,
    /// `None` deletes the row from the checkpoint.
    pub state: Option<Vec<u8>>,
}

/// The byte-level persistence the engine needs.
pub trait Storage: Send {
    /// Appends bytes to the end of the op log (buffered; durable after `log_sync`).
    fn log_append(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes everything appended so far durable (fdatasync for files).
    fn log_sync(&mut self) -> Result<(), StorageError>;
    /// Length in bytes of the log as seen by this process (durable + volatile).
    fn log_len(&self) -> u64;
    /// Reads the whole log from `offset` to its end (used by recovery and salvage).
    fn log_read_from(&mut self, offset: u64) -> Result<Vec<u8>, StorageError>;
    /// Drops the log bytes before `offset` (backlog trimming); offsets stay absolute:
    /// after trimming, `log_read_from(offset)` still addresses the same bytes.
    fn log_trim_before(&mut self, offset: u64) -> Result<(), StorageError>;
    /// Truncates the log at `offset` (drops a torn tail found by recovery), durably.
    fn log_truncate(&mut self, offset: u64) -> Result<(), StorageError>;
    /// First offset still kept in the log (0 until trimmed).
    fn log_start(&self) -> u64;

    /// Atomically and durably writes changed checkpoint rows plus the checkpoint
    /// metadata blob (which covers them: version vector, log offset...).
    fn checkpoint_write(&mut self, rows: &[CheckpointRow], meta: &[u8]) -> Result<(), StorageError>;
    /// Reads every checkpoint row and the metadata blob (`None` if never written).
    fn checkpoint_read(&mut self) -> Result<(Vec<CheckpointRow>, Option<Vec<u8>>), StorageError>;
    /// Durably stores a small named value (seq reservations, peer list...).
    fn meta_put(&mut self, name: &str, value: &[u8]) -> Result<(), StorageError>;
    fn meta_get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Human-readable location for messages ("/data/chorus", "memory").
    fn describe(&self) -> String;
}
