//! The single door between the RESP front end and the engine.
//!
//! Every data command (strings, hashes, sets, sorted sets, keys, FLUSHDB...)
//! reaches the engine through [`StoreGuard::execute`]; the server's own
//! commands ask the store only for figures (`DBSIZE`, `INFO keyspace`,
//! `DEBUG DIGEST`) and for the durability hooks (`appendfsync`, shutdown).
//!
//! Durability: under `appendfsync always` a write's reply is released only
//! after `Engine::sync` (one fsync per command or per EXEC); under
//! `everysec` the background task syncs once a second; under `no` it also
//! syncs once a second (the OS would flush anyway) but nothing waits for it.
//!
//! Locking: one mutex around the engine. A pipeline batch of data commands
//! takes it once for the whole batch (see [`StoreGuard::begin_batch`]); a
//! single command takes it for its duration; `EXEC` takes it once for the
//! whole transaction (see [`Store::lock`]), which is what makes MULTI/EXEC
//! atomic at the origin.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chorus_engine::cmd::DataCommand;
use chorus_engine::{Engine, EngineConfig, OpId, Origin, Reply, VersionVector};
use chorus_replication::quic::Replication;
use chorus_site::{
    capture_in_slices, ChangeFeed, Housekeeping, Now, OpenError, SiteConfig, Subscription, Work,
    ENGINE_BATCH,
};
use parking_lot::{Mutex, MutexGuard};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use thiserror::Error;

use crate::config::AppendFsync;
use crate::notify::{Notifier, StoreSink};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("flushing the op log failed: {0}")]
    Flush(String),
}

/// How often a client waiting for the store looks whether a script has
/// become busy (see [`Store::lock_unless`]).
pub const LOCK_POLL_MS: u64 = 10;

/// Key counts of one database, for `INFO keyspace`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceCounts {
    pub keys: u64,
    pub expires: u64,
}

/// Wall-clock milliseconds since the epoch: the engine's `now`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// State behind the store's lock (the engine has its own, shared with
/// replication; lock order: this one, then the engine).
pub struct StoreInner {
    appendfsync: AppendFsync,
    /// Set by a successful shutdown: nothing may be written after the
    /// final flush.
    closed: bool,
    /// Between `begin_transaction` and `commit_transaction`.
    in_transaction: bool,
}

pub struct Store {
    dir: PathBuf,
    site_id: u16,
    inner: Mutex<StoreInner>,
    /// The site's housekeeping policy (lock order: `inner`, this, the engine).
    housekeeping: Arc<Mutex<Housekeeping>>,
    engine: Arc<Mutex<Engine>>,
    /// Set once replication starts (a site with peers or TLS configured).
    replication: OnceLock<Replication>,
    /// One checkpoint at a time, from `checkpoint_begin` to
    /// `checkpoint_finish`, so a second one (or the final one at shutdown)
    /// never overtakes a checkpoint still being written off the lock.
    checkpoint_slot: Arc<CheckpointSlot>,
    /// The housekeeping's monotonic clock starts here.
    opened: Instant,
    /// The site's change feed: the engine publishes every change it applies
    /// (commands, peers' ops, merges, expiry) to it; see [`Store::subscribe`].
    changes: ChangeFeed,
    /// Keyspace notifications, the engine's other change sink.
    notifier: Arc<Notifier>,
}

/// A claim on "the one checkpoint in progress", released by dropping it. It
/// can move to the thread that writes the checkpoint (a lock guard cannot).
#[derive(Default)]
struct CheckpointSlot {
    busy: std::sync::Mutex<bool>,
    freed: std::sync::Condvar,
}

/// Held while one checkpoint is in progress (see [`CheckpointSlot`]).
pub struct CheckpointClaim(Arc<CheckpointSlot>);

impl CheckpointSlot {
    fn busy(&self) -> std::sync::MutexGuard<'_, bool> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Waits for the checkpoint in progress, if any, then claims the slot.
    fn claim(self: &Arc<Self>) -> CheckpointClaim {
        let mut busy = self.busy();
        while *busy {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        CheckpointClaim(Arc::clone(self))
    }
}

impl Drop for CheckpointClaim {
    fn drop(&mut self) {
        *self.0.busy() = false;
        self.0.freed.notify_all();
    }
}

/// See [`Store::persistence`].
#[derive(Clone, Debug)]
pub struct PersistenceFigures {
    /// Rows changed since the last checkpoint began (an upper bound).
    pub rows_changed: u64,
    /// Op log written since the last checkpoint: what a restart replays.
    pub log_bytes_since_checkpoint: u64,
    /// A checkpoint is being captured or written.
    pub checkpoint_in_progress: bool,
    /// Checkpoints written by this process.
    pub checkpoints: u64,
    /// When the last checkpoint (of any process on this directory) began, in
    /// seconds since the epoch; 0 if none.
    pub last_checkpoint_unix: u64,
    /// False once a write to the log or a checkpoint failed (writes are then
    /// refused until restart).
    pub healthy: bool,
}

/// A checkpoint begun by [`Store::tick`]; capture and write it with
/// [`CheckpointJob::start`] (a thread of its own).
pub struct CheckpointJob {
    slot: Arc<CheckpointSlot>,
    housekeeping: Arc<Mutex<Housekeeping>>,
    engine: Arc<Mutex<Engine>>,
    opened: Instant,
}

impl CheckpointJob {
    /// Runs the checkpoint on a thread of its own (`chorus-ckpt`), so that
    /// nothing else (the tick, a runtime that SHUTDOWN may be blocking) has
    /// to be polled for it to finish and free the slot; if no thread can be
    /// started, runs it here.
    pub fn start(self) {
        let slot = Arc::new(parking_lot::Mutex::new(Some(self)));
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("chorus-ckpt".into())
            .spawn(move || {
                let job = theirs.lock().take();
                if let Some(job) = job {
                    job.run(true);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread for the checkpoint; writing it here");
            let job = slot.lock().take();
            if let Some(job) = job {
                job.run(false);
            }
        }
    }

    /// Claims the one checkpoint slot (a SAVE or a shutdown in progress
    /// completes this checkpoint inline: the capture then finds it gone),
    /// captures the rows a slice at a time, then writes them while clients
    /// keep being served, records the checkpoint and frees the slot for the
    /// next one. On its own thread, the write runs at a lower CPU priority:
    /// encoding the large rows, sorting and the redb write hold no lock, so
    /// on a busy machine clients and peers come first. (The capture holds
    /// the engine lock a slice at a time and so keeps the normal priority:
    /// preempting it would keep everyone waiting.)
    fn run(self, own_thread: bool) {
        let claim = self.slot.claim();
        let started = Instant::now();
        let (pending, slices) = capture_in_slices(|| {
            let mut hk = self.housekeeping.lock();
            let mut engine = self.engine.lock();
            hk.capture(&mut engine)
        });
        let Some(pending) = pending else {
            return;
        };
        if own_thread {
            lower_thread_priority();
        }
        let captured_ms = started.elapsed().as_millis() as u64;
        let rows = pending.rows();
        let done = pending.write();
        {
            let mut hk = self.housekeeping.lock();
            let mut engine = self.engine.lock();
            hk.checkpoint_done(&mut engine, done, now(self.opened));
        }
        tracing::debug!(
            rows,
            slices,
            captured_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        drop(claim);
    }
}

/// The two clocks of the housekeeping, for a store opened at `opened`.
fn now(opened: Instant) -> Now {
    Now {
        mono_ms: opened.elapsed().as_millis() as u64,
        wall_ms: now_ms(),
    }
}

/// Lowers the calling thread's CPU priority (nice 10) where threads have
/// their own (Linux); elsewhere nothing changes.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
        };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower the checkpoint thread's priority"
            );
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("site_id", &self.site_id)
            .finish()
    }
}

/// Exclusive access to the engine for one command, one pipeline batch or
/// one transaction.
pub struct StoreGuard<'a> {
    inner: MutexGuard<'a, StoreInner>,
    engine: MutexGuard<'a, Engine>,
    replication: Option<&'a Replication>,
    /// The op the last command (or transaction) made, for `write-mode sync`.
    written: Option<WriteMark>,
    batch: Option<Batch>,
}

/// The op a client's write became: a peer whose durable ack covers `seq` of
/// `origin` holds it (`write-mode sync` waits for one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteMark {
    pub origin: Origin,
    pub seq: u64,
}

/// A pipeline batch in progress (see [`StoreGuard::begin_batch`]).
#[derive(Clone, Copy, Debug)]
struct Batch {
    /// The engine's `now` for every command of the batch.
    now_ms: u64,
    /// Commands of the batch that wrote (made a local op).
    writes: usize,
}

/// The reply of a write that is applied in memory but could not be made
/// durable under `appendfsync always`.
pub const MISCONF_ERROR: &str = "MISCONF Errors writing to the op log; the write is applied in memory but not durable. Writes are refused until restart.";

impl Store {
    /// Opens (creating if needed) the data directory of this site and
    /// recovers its engine.
    pub fn open(dir: &Path, site_id: u16, appendfsync: AppendFsync) -> Result<Store, StoreError> {
        Self::open_with(dir, site_id, appendfsync, false, None, false)
    }

    /// `salvage`: keep the intact prefix of a damaged op log instead of
    /// refusing to start. `backlog_bytes_max` (`repl-backlog-size`) bounds
    /// the backlog already while the log is recovered; `None` keeps the
    /// engine's default. `alone`: no replication is configured, so counters
    /// fold as they are incremented (see `EngineConfig::alone`).
    pub fn open_with(
        dir: &Path,
        site_id: u16,
        appendfsync: AppendFsync,
        salvage: bool,
        backlog_bytes_max: Option<u64>,
        alone: bool,
    ) -> Result<Store, StoreError> {
        let mut config = EngineConfig::new(site_id);
        config.fsync = appendfsync;
        config.salvage = salvage;
        config.alone = alone;
        if let Some(bytes) = backlog_bytes_max {
            config.backlog_bytes_max = usize::try_from(bytes).unwrap_or(usize::MAX).max(1);
        }
        let (dir, mut engine) = chorus_site::open_engine(dir, config, now_ms())?;
        let changes = ChangeFeed::default();
        let notifier = Arc::new(Notifier::default());
        let sink = StoreSink {
            notifier: Arc::clone(&notifier),
            feed: changes.clone(),
        };
        engine.set_change_sink(Arc::new(sink), ENGINE_BATCH);
        let opened = Instant::now();
        let housekeeping = Housekeeping::new(SiteConfig::default(), &engine, now(opened), 0);
        Ok(Store {
            dir,
            site_id,
            housekeeping: Arc::new(Mutex::new(housekeeping)),
            engine: Arc::new(Mutex::new(engine)),
            replication: OnceLock::new(),
            inner: Mutex::new(StoreInner {
                appendfsync,
                closed: false,
                in_transaction: false,
            }),
            checkpoint_slot: Arc::new(CheckpointSlot::default()),
            opened,
            changes,
            notifier,
        })
    }

    /// The keyspace notifications of this site's changes.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Subscribes to the site's changes, local and replicated (blocked
    /// clients build on it; keyspace notifications are a sink of their own,
    /// see [`Store::notifier`]). Taken with the engine held: the subscription sees every write
    /// applied after this returns, and none before.
    pub fn subscribe(&self) -> Subscription {
        let _engine = self.engine.lock();
        self.changes.subscribe()
    }

    /// The data directory, absolute.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn site_id(&self) -> u16 {
        self.site_id
    }

    /// Exclusive access to the engine until the guard is dropped.
    pub fn lock(&self) -> StoreGuard<'_> {
        let inner = self.inner.lock();
        StoreGuard {
            inner,
            engine: self.engine.lock(),
            replication: self.replication.get(),
            written: None,
            batch: None,
        }
    }

    /// [`Store::lock`], unless `give_up` says so while waiting (a script
    /// holds the store past `busy-reply-threshold`: the caller answers
    /// BUSY instead of waiting, as Redis does). Polls every
    /// [`LOCK_POLL_MS`] only while the lock is taken.
    pub fn lock_unless(&self, give_up: impl Fn() -> bool) -> Option<StoreGuard<'_>> {
        let inner = loop {
            if let Some(inner) = self
                .inner
                .try_lock_for(std::time::Duration::from_millis(LOCK_POLL_MS))
            {
                break inner;
            }
            if give_up() {
                return None;
            }
        };
        Some(StoreGuard {
            inner,
            engine: self.engine.lock(),
            replication: self.replication.get(),
            written: None,
            batch: None,
        })
    }

    /// What `INFO persistence` reports: checkpoints (Chorus's RDB) and the
    /// op log (its AOF), as they are.
    pub fn persistence(&self) -> PersistenceFigures {
        let checkpoint_in_progress =
            *self.checkpoint_slot.busy() || self.housekeeping.lock().checkpoint_in_progress();
        let engine = self.engine.lock();
        Self::persistence_figures(&engine, checkpoint_in_progress)
    }

    /// [`Store::persistence`] for a caller that holds the store (a command
    /// inside MULTI/EXEC or a script). The housekeeping is locked before the
    /// engine elsewhere, so it is only tried here: when it is busy, a
    /// checkpoint capture is what holds it, and that is reported.
    pub fn persistence_held(&self, guard: &mut StoreGuard<'_>) -> PersistenceFigures {
        let checkpoint_in_progress = *self.checkpoint_slot.busy()
            || match self.housekeeping.try_lock() {
                Some(hk) => hk.checkpoint_in_progress(),
                None => true,
            };
        Self::persistence_figures(guard.engine(), checkpoint_in_progress)
    }

    fn persistence_figures(engine: &Engine, checkpoint_in_progress: bool) -> PersistenceFigures {
        let stats = engine.stats();
        PersistenceFigures {
            rows_changed: engine.dirty_rows() as u64,
            log_bytes_since_checkpoint: engine.log_bytes_since_checkpoint(),
            checkpoint_in_progress,
            checkpoints: stats.checkpoints,
            last_checkpoint_unix: stats.last_checkpoint_ms / 1000,
            healthy: engine.poisoned().is_none(),
        }
    }

    /// The engine, shared with the replication driver.
    pub fn engine_handle(&self) -> Arc<Mutex<Engine>> {
        Arc::clone(&self.engine)
    }

    /// Records the running replication (once).
    pub fn set_replication(&self, r: Replication) {
        let _ = self.replication.set(r);
        self.housekeeping.lock().set_replicating(true);
    }

    pub fn replication(&self) -> Option<&Replication> {
        self.replication.get()
    }

    /// `CONFIG SET appendfsync`: the engine's group commit, the periodic
    /// sync and the replication driver (which reads the engine's mode)
    /// follow the new mode at once.
    pub fn set_appendfsync(&self, mode: AppendFsync) {
        let mut inner = self.inner.lock();
        inner.appendfsync = mode;
        let mut hk = self.housekeeping.lock();
        hk.set_fsync(&mut self.engine.lock(), mode);
    }

    pub fn appendfsync(&self) -> AppendFsync {
        self.inner.lock().appendfsync
    }

    /// `max-clock-skew-ms`: how far ahead of this site's clock a write may
    /// be stamped (0: no bound), from the next write on.
    pub fn set_max_clock_skew(&self, ms: u64) {
        self.engine.lock().set_max_clock_skew(ms);
    }

    /// `repl-backlog-size`: bytes of op log records kept for peers that are
    /// behind.
    pub fn set_backlog_bytes_max(&self, bytes: u64) {
        if self.replication.get().is_none() {
            // No peer reads the backlog of a site without replication.
            return;
        }
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.engine.lock().set_backlog_bytes_max(bytes);
    }

    /// Called once at start when replication is not configured: the
    /// backlog only serves peers, so it keeps (almost) nothing, in memory
    /// or in the op log. A site that starts replicating later is new to its
    /// peers, which get a full sync from it either way.
    pub fn drop_backlog_without_replication(&self) {
        if self.replication.get().is_none() {
            let mut engine = self.engine.lock();
            engine.set_backlog_bytes_max(0);
            engine.set_backlog_tail_bytes_max(0);
        }
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

    /// Of those, the ones whose winning deadline another site owned
    /// (`INFO stats expired_keys_taken_over`).
    pub fn expired_keys_taken_over(&self) -> u64 {
        self.lock().expired_keys_taken_over()
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
        let _claim = self.checkpoint_slot.claim();
        self.lock().checkpoint()
    }

    /// Runs `f` with the engine locked (INFO figures, replication).
    pub fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        f(&mut self.engine.lock())
    }

    /// The site's periodic work ([`Housekeeping`]), called every 100 ms:
    /// active expiry, anti-entropy digests, the group commit of `everysec`
    /// (its fsync waited for with the locks released, so clients and peers
    /// are served meanwhile), backlog trimming, giving freed memory back
    /// when no client wrote for a second, and a checkpoint when one is due.
    /// A checkpoint comes back as a job: its rows are captured and written
    /// by [`CheckpointJob::start`] on another thread, so the ticks (and
    /// their syncs) go on meanwhile.
    pub fn tick(&self) -> Option<CheckpointJob> {
        let mut inner = self.inner.lock();
        let mut hk = self.housekeeping.lock();
        let mut engine = self.engine.lock();
        if inner.closed {
            return None;
        }
        let trim_to = self.trim_to(&engine);
        hk.tick(&mut engine, now(self.opened), trim_to.as_ref());
        let (mut job, mut release) = (None, false);
        while let Some(work) = hk.poll_work() {
            match work {
                Work::WakePeers => {
                    if let Some(r) = self.replication.get() {
                        r.notify_local_write();
                    }
                }
                Work::ReleaseMemory => release = true,
                Work::Checkpoint => {
                    job = Some(CheckpointJob {
                        slot: Arc::clone(&self.checkpoint_slot),
                        housekeeping: Arc::clone(&self.housekeeping),
                        engine: Arc::clone(&self.engine),
                        opened: self.opened,
                    });
                }
                Work::Sync(sync) => {
                    drop(engine);
                    drop(hk);
                    drop(inner);
                    let done = sync.wait();
                    inner = self.inner.lock();
                    hk = self.housekeeping.lock();
                    engine = self.engine.lock();
                    if inner.closed {
                        // The shutdown synced everything itself.
                        break;
                    }
                    let trim_to = self.trim_to(&engine);
                    hk.sync_done(&mut engine, done, now(self.opened), trim_to.as_ref());
                }
            }
        }
        drop(engine);
        drop(hk);
        drop(inner);
        if release {
            crate::memory::release_freed();
        }
        job
    }

    /// What the backlog may be trimmed to: what every peer durably
    /// acknowledged; without peers it only has to reach back to the last
    /// checkpoint.
    fn trim_to(&self, engine: &Engine) -> Option<VersionVector> {
        match self.replication.get() {
            Some(r) => r.acked_by_all(),
            None => Some(engine.vv().clone()),
        }
    }

    /// Called once when the server stops (SIGTERM, SIGINT, `SHUTDOWN`),
    /// after clients are disconnected: flush and fsync the op log, write a
    /// checkpoint and mark the stop clean. An error is reported and, unless
    /// forced, aborts `SHUTDOWN`.
    pub fn shutdown(&self, save: bool) -> Result<(), StoreError> {
        let _ = save;
        let _claim = self.checkpoint_slot.claim();
        let mut inner = self.inner.lock();
        if inner.closed {
            return Ok(());
        }
        // The locks are held across the flush and the close so no write
        // lands after the final fsync.
        self.engine
            .lock()
            .shutdown(now_ms())
            .map_err(|e| StoreError::Flush(e.to_string()))?;
        inner.closed = true;
        // Subscribers learn that nothing more will come.
        self.changes.close();
        Ok(())
    }
}

impl StoreGuard<'_> {
    /// Opens a MULTI/EXEC transaction: every data command executed until
    /// [`StoreGuard::commit_transaction`] becomes part of one op, replicated
    /// and applied as a unit. Reads in between see the transaction's writes.
    pub fn begin_transaction(&mut self) {
        self.inner.in_transaction = true;
        self.engine.begin_group();
    }

    /// Ends the transaction opened by [`StoreGuard::begin_transaction`].
    pub fn commit_transaction(&mut self) {
        self.inner.in_transaction = false;
        if let Some(id) = self.engine.end_group() {
            self.note_write(id);
        }
        self.sync_if_always();
        if let Some(r) = self.replication {
            r.notify_local_write();
        }
    }

    fn sync_if_always(&mut self) {
        if self.inner.appendfsync == AppendFsync::Always {
            if let Err(e) = self.engine.sync() {
                tracing::error!(error = %e, "op log sync failed; writes are refused");
            }
        }
    }

    /// Starts a pipeline batch: the data commands executed until
    /// [`StoreGuard::end_batch`] share one `now_ms`, and their fsync (under
    /// `always`) and the replication wake-up happen once, in `end_batch`.
    /// The caller must not release any reply of the batch before `end_batch`.
    pub fn begin_batch(&mut self, now_ms: u64) {
        self.batch = Some(Batch { now_ms, writes: 0 });
    }

    /// Commands of the current batch that wrote so far (0 outside a batch).
    pub fn batch_writes(&self) -> usize {
        self.batch.map_or(0, |b| b.writes)
    }

    /// Ends the batch opened by [`StoreGuard::begin_batch`]: one fsync under
    /// `always` covers every write of the batch. `Err` carries the reply each
    /// write of the batch must give instead of its own (the op log failed).
    pub fn end_batch(&mut self) -> Result<(), Reply> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        if batch.writes == 0 {
            return Ok(());
        }
        self.after_write()
    }

    /// Durability and replication after a write outside a transaction:
    /// persist before you promise (under `always` the reply waits for the
    /// fsync that covers the write), then wake the replication sessions.
    fn after_write(&mut self) -> Result<(), Reply> {
        self.sync_if_always();
        if let Some(r) = self.replication {
            r.notify_local_write();
        }
        if self.inner.appendfsync == AppendFsync::Always && self.engine.poisoned().is_some() {
            return Err(Reply::err(MISCONF_ERROR));
        }
        Ok(())
    }

    /// Executes one data command in database `db`, resolved in the
    /// command table (its arity checked). `args[0]` is the command name as
    /// the client sent it.
    pub fn execute(&mut self, db: u8, data: &DataCommand, args: &[Bytes]) -> Reply {
        if self.inner.closed {
            return Reply::err("ERR Chorus is shutting down");
        }
        let now = self.batch.map_or_else(now_ms, |b| b.now_ms);
        let done = self.engine.execute_resolved(db, data, args, now);
        // Inside a transaction the op is the group's, reported at commit.
        if let Some(id) = done.written.filter(|_| !self.inner.in_transaction) {
            self.note_write(id);
            if let Some(batch) = self.batch.as_mut() {
                batch.writes += 1;
                return done.reply;
            }
            if let Err(misconf) = self.after_write() {
                return misconf;
            }
        }
        done.reply
    }

    /// A write of the cluster's own data (`MEMBER ADD/REMOVE`): made by
    /// `f` at this moment, then made durable and replicated as a client's
    /// write is. `Err` carries the reply a failed op log gives.
    pub fn cluster_write<T>(&mut self, f: impl FnOnce(&mut Engine, u64) -> T) -> Result<T, Reply> {
        if self.inner.closed {
            return Err(Reply::err("ERR Chorus is shutting down"));
        }
        let before = self.engine.last_local_seq();
        let out = f(&mut self.engine, now_ms());
        if self.engine.last_local_seq() != before && !self.inner.in_transaction {
            self.after_write()?;
        }
        Ok(out)
    }

    /// Records the op the engine reported as this guard's write.
    fn note_write(&mut self, id: OpId) {
        self.written = Some(WriteMark {
            origin: id.origin,
            seq: id.seq,
        });
    }

    /// The op the last command or transaction through this guard made, once.
    pub fn take_write(&mut self) -> Option<WriteMark> {
        self.written.take()
    }

    /// The engine, for figures (INFO) and replication.
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// `appendfsync`, read through the lock this guard holds.
    pub fn appendfsync(&self) -> AppendFsync {
        self.inner.appendfsync
    }

    /// Non-empty databases with their key counts.
    pub fn keyspace(&self) -> Vec<(u8, KeyspaceCounts)> {
        (0..chorus_engine::redis::DATABASES as u8)
            .filter_map(|db| {
                let keys = self.engine.dbsize(db) as u64;
                (keys > 0).then(|| {
                    (
                        db,
                        KeyspaceCounts {
                            keys,
                            expires: self.engine.expires_count(db) as u64,
                        },
                    )
                })
            })
            .collect()
    }

    pub fn dbsize(&self, db: u8) -> u64 {
        self.engine.dbsize(db) as u64
    }

    pub fn expired_keys(&self) -> u64 {
        self.engine.stats().expired_keys
    }

    pub fn expired_keys_taken_over(&self) -> u64 {
        self.engine.stats().expired_keys_taken_over
    }

    /// Version of a key for `WATCH`: any change to the key (write, delete,
    /// expiry, flush of its database, a remote op) changes it.
    pub fn key_version(&self, db: u8, key: &[u8]) -> u64 {
        self.engine.key_version(db, key, now_ms())
    }

    /// `DEBUG DIGEST`: hex digest of the dataset, equal on converged sites;
    /// 40 zeros for an empty keyspace as in Redis.
    pub fn digest(&self) -> String {
        self.engine.digest_hex()
    }

    /// Writes a checkpoint.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.engine
            .checkpoint(now_ms())
            .map_err(|e| StoreError::Flush(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_engine::KeyEvent;
    use chorus_site::{Change, ChangeSource};
    use std::time::Duration;

    #[test]
    fn a_subscriber_sees_the_store_s_writes_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1, AppendFsync::Everysec).unwrap();
        let set = |k: &'static [u8]| {
            let args = [
                Bytes::from_static(b"SET"),
                Bytes::from_static(k),
                Bytes::from_static(b"v"),
            ];
            let data = chorus_engine::cmd::find(b"set").expect("SET is a data command");
            store.lock().execute(0, data, &args);
        };
        set(b"before");
        let changes = store.subscribe();
        set(b"after");
        for event in [KeyEvent::New, KeyEvent::Set] {
            assert_eq!(
                changes.recv_timeout(Duration::from_secs(5)),
                Ok(Change::Key {
                    db: 0,
                    key: Bytes::from_static(b"after"),
                    source: ChangeSource::Local,
                    event,
                })
            );
        }
        store.shutdown(false).unwrap();
        assert!(changes.recv_timeout(Duration::from_secs(5)).is_err());
    }
}
