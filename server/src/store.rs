//! The single door between the RESP front end and the engine.
//!
//! Every data command (strings, hashes, sets, sorted sets, keys, FLUSHDB...)
//! reaches the engine through [`StoreGuard::execute`]; the server's own
//! commands ask the store only for figures (`DBSIZE`, `INFO keyspace`,
//! `DEBUG DIGEST`) and for the durability hooks (`appendfsync`, shutdown).
//!
//! Phase 1 (this file as it stands): the engine is not wired in yet, so the
//! store serves no data command — [`Store::implements`] answers `false`, the
//! dispatcher replies with Redis's unknown-command error, and the figures are
//! those of an empty keyspace. Integration replaces the body of `Store` with
//! a `Mutex<chorus_engine::Engine>`; nothing outside this file changes.
//!
//! Locking: one mutex around the engine. A single command takes it for its
//! duration; `EXEC` takes it once for the whole transaction (see
//! [`Store::lock`]), which is what makes MULTI/EXEC atomic at the origin.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chorus_engine::Reply;
use parking_lot::{Mutex, MutexGuard};
use thiserror::Error;

use crate::config::AppendFsync;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("can't create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("flushing the op log failed: {0}")]
    Flush(String),
}

/// Key counts of one database, for `INFO keyspace`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceCounts {
    pub keys: u64,
    pub expires: u64,
}

/// State behind the lock. Phase 1 keeps only the durability mode so the
/// hook is observable; the engine will live here.
#[derive(Debug)]
pub struct StoreInner {
    appendfsync: AppendFsync,
    /// Set by a successful shutdown: nothing may be written after the
    /// final flush.
    closed: bool,
    /// Between `begin_transaction` and `commit_transaction`.
    in_transaction: bool,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    site_id: u16,
    inner: Mutex<StoreInner>,
}

/// Exclusive access to the engine for one command or one transaction.
pub struct StoreGuard<'a> {
    inner: MutexGuard<'a, StoreInner>,
}

impl Store {
    /// Opens (creating if needed) the data directory of this site.
    pub fn open(dir: &Path, site_id: u16, appendfsync: AppendFsync) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Ok(Store {
            dir,
            site_id,
            inner: Mutex::new(StoreInner {
                appendfsync,
                closed: false,
                in_transaction: false,
            }),
        })
    }

    /// The data directory, absolute.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn site_id(&self) -> u16 {
        self.site_id
    }

    /// True if the engine serves the data command `name` (lower case).
    /// Commands it does not serve get Redis's unknown-command error.
    pub fn implements(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// Exclusive access to the engine until the guard is dropped.
    pub fn lock(&self) -> StoreGuard<'_> {
        StoreGuard {
            inner: self.inner.lock(),
        }
    }

    /// `CONFIG SET appendfsync`: the engine's group commit follows the new mode.
    pub fn set_appendfsync(&self, mode: AppendFsync) {
        self.inner.lock().appendfsync = mode;
    }

    pub fn appendfsync(&self) -> AppendFsync {
        self.inner.lock().appendfsync
    }

    /// Keys and keys-with-deadline per database, for `INFO keyspace`.
    pub fn keyspace(&self) -> Vec<(u8, KeyspaceCounts)> {
        self.lock().keyspace()
    }

    /// Keys in one database (`DBSIZE`).
    pub fn dbsize(&self, db: u8) -> u64 {
        self.lock().dbsize(db)
    }

    /// Keys removed because their deadline passed (`INFO stats expired_keys`).
    pub fn expired_keys(&self) -> u64 {
        self.lock().expired_keys()
    }

    /// See [`StoreGuard::key_version`].
    pub fn key_version(&self, db: u8, key: &[u8]) -> u64 {
        self.lock().key_version(db, key)
    }

    /// `DEBUG DIGEST`.
    pub fn digest(&self) -> String {
        self.lock().digest()
    }

    /// `SAVE` / `BGSAVE`: write a checkpoint.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.lock().checkpoint()
    }

    /// Called once when the server stops (SIGTERM, SIGINT, `SHUTDOWN`),
    /// after clients are disconnected: flush and fsync the op log, and write
    /// a checkpoint if `save`. An error is reported and, unless forced,
    /// aborts `SHUTDOWN`.
    pub fn shutdown(&self, save: bool) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Ok(());
        }
        if save {
            // Phase 1: nothing to checkpoint yet.
        }
        // Phase 1: no op log to flush yet. The lock is held across the flush
        // and the close so no write lands after the final fsync.
        inner.closed = true;
        Ok(())
    }
}

impl StoreGuard<'_> {
    /// Opens a MULTI/EXEC transaction: every data command executed until
    /// [`StoreGuard::commit_transaction`] becomes part of one atomic change
    /// (one op, replicated and applied as a unit). Reads in between (DBSIZE
    /// inside MULTI) see the transaction's own writes, as in Redis.
    /// Phase 1: nothing to group. With the engine this maps onto its `Txn`
    /// (what `Engine::execute_multi` does for a batch).
    pub fn begin_transaction(&mut self) {
        self.inner.in_transaction = true;
    }

    /// Ends the transaction opened by [`StoreGuard::begin_transaction`].
    pub fn commit_transaction(&mut self) {
        self.inner.in_transaction = false;
    }

    /// Executes one data command in database `db`. `args[0]` is the command
    /// name as the client sent it; arity was already checked against Redis's
    /// table. Phase 1: no engine, so this is never reached for a command
    /// the store does not implement, and answers like Redis if it is.
    pub fn execute(&mut self, db: u8, args: &[Bytes]) -> Reply {
        if self.inner.closed {
            return Reply::err("ERR Chorus is shutting down");
        }
        let _ = db;
        crate::cmd::unknown_command_error(args)
    }

    /// Non-empty databases with their key counts.
    pub fn keyspace(&self) -> Vec<(u8, KeyspaceCounts)> {
        Vec::new()
    }

    pub fn dbsize(&self, db: u8) -> u64 {
        self.keyspace()
            .into_iter()
            .find(|(d, _)| *d == db)
            .map(|(_, c)| c.keys)
            .unwrap_or(0)
    }

    pub fn expired_keys(&self) -> u64 {
        0
    }

    /// Version of a key for `WATCH`: any change to the key (write, delete,
    /// expiry, flush of its database, a remote op) must change it. Phase 1:
    /// nothing writes, so it is constant.
    pub fn key_version(&self, db: u8, key: &[u8]) -> u64 {
        let _ = (db, key);
        0
    }

    /// `DEBUG DIGEST`: 40 hex characters, all zeros for an empty keyspace
    /// as in Redis.
    pub fn digest(&self) -> String {
        "0".repeat(40)
    }

    /// Writes a checkpoint. Phase 1 has nothing to write.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
