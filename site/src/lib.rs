//! What a running site does around its engine, written once for every way a
//! site runs: `chorus-server` (tokio threads and a mutex), the simulator
//! (virtual time, one thread) and a program that embeds the engine.
//!
//! [`Housekeeping`] is the policy, and it is sans-IO: the driver calls
//! [`Housekeeping::tick`] with the engine and the time, and takes back
//! [`Work`] that must run *without* the engine (an fsync, a checkpoint's
//! capture and write, giving memory back). The driver runs that work however
//! it likes (a blocking thread, a simulated delay) and reports the outcome
//! ([`Housekeeping::sync_done`], [`Housekeeping::checkpoint_done`]). What the
//! policy does under the engine:
//!
//! - active expiry, a bounded number of keys per tick;
//! - anti-entropy digests kept nearly current, in short slices, on a site
//!   with peers;
//! - the periodic fsync of the op log (`appendfsync everysec`'s group
//!   commit), begun under the engine and waited for without it;
//! - after each periodic sync: backlog trimming to what every peer durably
//!   acknowledged, and a checkpoint when enough op log was written or enough
//!   time passed (captured a slice at a time, written without the engine);
//! - `appendfsync` changed at runtime, in one place ([`Housekeeping::set_fsync`]).
//!
//! Time comes in two clocks ([`Now`]): a monotonic one for the schedule
//! (a wall clock that jumps must not stop the fsyncs) and the wall clock the
//! engine stamps and expires by.
//!
//! [`ChangeFeed`] is the site's one change feed: the engine hands it every
//! change it applies (local writes, ops from peers, merges, expiry) and it
//! fans them out to [`Subscription`]s, each with a bounded queue.

#![warn(missing_docs)]

mod feed;

pub use chorus_engine::engine::{Change, ChangeSource};
pub use feed::{ChangeFeed, Subscription, ENGINE_BATCH, SUBSCRIBER_QUEUE_DEFAULT};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chorus_engine::engine::{CheckpointDone, CheckpointStep, LogSync, PendingCheckpoint, SyncDone};
use chorus_engine::storage::redb_backend::RedbStorage;
use chorus_engine::storage::StorageError;
use chorus_engine::{Engine, EngineConfig, Fsync, VersionVector};

/// Why a site's data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created.
    #[error("can't create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The storage or the engine refused to open (damaged files, a
    /// different site's data, ...).
    #[error("can't open the data in {path}: {reason}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Opens (creating if needed) a site's data directory and recovers its
/// engine, as every kind of site does it. Every start takes a new
/// incarnation, at least the seconds since the epoch (`wall_ms / 1000`):
/// above any a life of this site id has used, even when the directory was
/// restored from an older copy. Returns the directory made absolute.
pub fn open_engine(
    dir: &Path,
    mut config: EngineConfig,
    wall_ms: u64,
) -> Result<(PathBuf, Engine), OpenError> {
    std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let open_err = |reason: String| OpenError::Open {
        path: dir.clone(),
        reason,
    };
    let storage = RedbStorage::open(&dir).map_err(|e| open_err(e.to_string()))?;
    let floor = u32::try_from(wall_ms / 1000).unwrap_or(u32::MAX);
    config.incarnation_floor = config.incarnation_floor.max(floor);
    let engine = Engine::open(Box::new(storage), config).map_err(|e| open_err(e.to_string()))?;
    Ok((dir, engine))
}

/// How a site schedules its housekeeping. [`SiteConfig::default`] is what
/// `chorus-server` runs.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Period of [`Housekeeping::tick`]'s work (expiry, digests).
    pub tick_ms: u64,
    /// Keys active expiry deletes per tick at most.
    pub expire_keys_per_tick: usize,
    /// Elements of changed rows hashed for anti-entropy per tick on a site
    /// with peers (about 1-2 ms of the engine at most); 0 turns it off.
    pub digest_refresh_per_tick: usize,
    /// Counters folded per tick at most on a site with peers, once the
    /// stability frontier covers their increments (docs/semantics.md,
    /// "Stability"); 0 turns folding off.
    pub fold_counters_per_tick: usize,
    /// Period of the op log's fsync, and of the backlog trim and checkpoint
    /// check that follow it.
    pub sync_interval_ms: u64,
    /// Whether the periodic fsync also runs under `appendfsync always` and
    /// `no` (it always runs under `everysec`). Under `always` it covers what
    /// no client waited for (peers' ops, expiry); under `no` the server syncs
    /// once a second anyway (the OS would flush the pages soon after) but
    /// nothing waits for it. The simulator turns it off to test `no` as
    /// "nothing is durable before a checkpoint".
    pub sync_always_and_no: bool,
    /// A checkpoint is written when this much op log was written since the
    /// last one (about 1.5M small ops: a second or two to replay at a
    /// restart)...
    pub checkpoint_log_bytes: u64,
    /// ...or when rows changed and this long passed since the last one (a
    /// row count would checkpoint a busy site over and over).
    pub checkpoint_interval_ms: u64,
    /// Rows a checkpoint captures per hold of the engine (about 1 ms).
    pub capture_slice_rows: usize,
    /// Offer [`Work::ReleaseMemory`] once a second when no client wrote
    /// since the last second.
    pub release_memory: bool,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            tick_ms: 100,
            expire_keys_per_tick: 200,
            digest_refresh_per_tick: 4096,
            fold_counters_per_tick: 1024,
            sync_interval_ms: 1000,
            sync_always_and_no: true,
            checkpoint_log_bytes: 64 << 20,
            checkpoint_interval_ms: 60_000,
            capture_slice_rows: 1024,
            release_memory: true,
        }
    }
}

/// The two clocks of a call: `mono_ms` (never goes back; schedules the
/// work) and `wall_ms` (milliseconds since the epoch; what the engine
/// stamps ops with and expires keys by).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds of a clock that never goes back (any origin).
    pub mono_ms: u64,
    /// Milliseconds since the epoch.
    pub wall_ms: u64,
}

/// Work the driver runs without holding the engine, then reports back.
pub enum Work {
    /// An fsync of the op log, begun: call [`LogSync::wait`] without the
    /// engine, then [`Housekeeping::sync_done`] with the engine.
    Sync(LogSync),
    /// A checkpoint began: call [`Housekeeping::capture`] with the engine
    /// (one slice per call, letting clients in between) until it hands the
    /// rows over, write them without the engine ([`PendingCheckpoint::write`]),
    /// then call [`Housekeeping::checkpoint_done`].
    Checkpoint,
    /// No client wrote for a second: a good moment to give freed memory back
    /// to the operating system (under a steady write load it would be reused
    /// at once, and giving it back would only cost page faults).
    ReleaseMemory,
    /// The engine made ops (expiry) or made more of them durable: wake the
    /// replication sessions (acks to peers follow durability).
    WakePeers,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Work::Sync(_) => "Sync",
            Work::Checkpoint => "Checkpoint",
            Work::ReleaseMemory => "ReleaseMemory",
            Work::WakePeers => "WakePeers",
        })
    }
}

/// One step of a checkpoint's capture (see [`Housekeeping::capture`]).
pub enum Capture {
    /// More rows to capture: call again after letting others have the engine.
    More,
    /// Every row is in: write them without the engine.
    Ready(PendingCheckpoint),
    /// The checkpoint was completed another way (an inline checkpoint:
    /// `SAVE`, a full sync's merge, a shutdown); nothing to write.
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checkpointing {
    Idle,
    Capturing,
    Writing,
}

/// The housekeeping policy of one site (see the crate docs).
#[derive(Debug)]
pub struct Housekeeping {
    cfg: SiteConfig,
    fsync: Fsync,
    replicating: bool,
    opened_mono: u64,
    next_tick: u64,
    next_sync: u64,
    next_release_check: u64,
    /// The engine's last local seq at the last release check.
    seq_at_release_check: Option<u64>,
    syncing: bool,
    checkpoint: Checkpointing,
    /// When the last checkpoint (of any kind) was seen to complete.
    last_checkpoint_mono: u64,
    /// The engine's checkpoint count when last looked at: inline
    /// checkpoints (SAVE, full syncs) count too.
    checkpoints_seen: u64,
    work: VecDeque<Work>,
}

impl Housekeeping {
    /// The policy of a site whose engine was just opened. The first periodic
    /// sync comes `sync_interval_ms` later, offset by `phase_ms` (the
    /// simulator spreads its sites' ticks; the server passes 0).
    pub fn new(cfg: SiteConfig, engine: &Engine, now: Now, phase_ms: u64) -> Housekeeping {
        let start = now.mono_ms;
        Housekeeping {
            fsync: engine.config().fsync,
            replicating: false,
            opened_mono: start,
            next_tick: start + cfg.tick_ms.max(1) + phase_ms % cfg.tick_ms.max(1),
            next_sync: start + cfg.sync_interval_ms.max(1) + phase_ms,
            next_release_check: start + cfg.sync_interval_ms.max(1) / 2 + phase_ms,
            seq_at_release_check: None,
            syncing: false,
            checkpoint: Checkpointing::Idle,
            last_checkpoint_mono: start,
            checkpoints_seen: engine.stats().checkpoints,
            work: VecDeque::new(),
            cfg,
        }
    }

    /// The schedule this policy runs.
    pub fn config(&self) -> &SiteConfig {
        &self.cfg
    }

    /// `appendfsync` now, for every part of the site.
    pub fn fsync(&self) -> Fsync {
        self.fsync
    }

    /// `CONFIG SET appendfsync`: the engine's group commit and this policy
    /// follow the new mode at once. The QUIC driver reads the mode from the
    /// engine, so this is the one place to change it.
    pub fn set_fsync(&mut self, engine: &mut Engine, fsync: Fsync) {
        engine.set_fsync(fsync);
        self.fsync = fsync;
    }

    /// Whether the site has peers (digests are refreshed only then).
    pub fn set_replicating(&mut self, on: bool) {
        self.replicating = on;
    }

    /// The monotonic time at which [`Housekeeping::tick`] has work next.
    pub fn next_tick_ms(&self) -> u64 {
        self.next_tick
    }

    /// A checkpoint is being captured or written.
    pub fn checkpoint_in_progress(&self) -> bool {
        self.checkpoint != Checkpointing::Idle
    }

    /// Does what is due at `now` under the engine and queues the [`Work`]
    /// to run without it (take it with [`Housekeeping::poll_work`]).
    /// `trim_to` is what every peer durably acknowledged (`None`: unknown,
    /// keep the backlog); a site without replication passes its own vector.
    pub fn tick(&mut self, engine: &mut Engine, now: Now, trim_to: Option<&VersionVector>) {
        if now.mono_ms < self.next_tick {
            return;
        }
        self.next_tick = next_after(self.next_tick, self.cfg.tick_ms, now.mono_ms);
        self.note_checkpoints(engine, now);
        if self.cfg.release_memory && now.mono_ms >= self.next_release_check {
            self.next_release_check = next_after(
                self.next_release_check,
                self.cfg.sync_interval_ms,
                now.mono_ms,
            );
            let seq = engine.last_local_seq();
            if self.seq_at_release_check.replace(seq) == Some(seq) {
                self.work.push_back(Work::ReleaseMemory);
            }
        }
        if engine.expire_cycle(now.wall_ms, self.cfg.expire_keys_per_tick) > 0 {
            self.wake_peers();
        }
        if self.replicating && self.cfg.digest_refresh_per_tick > 0 {
            // Keeps anti-entropy's digests nearly current in short slices,
            // so a round's question finds little left to hash.
            engine.digest_refresh_step(self.cfg.digest_refresh_per_tick);
        }
        if self.replicating && self.cfg.fold_counters_per_tick > 0 {
            // Moves the stability frontier with the reports peers gossip,
            // and folds counters up to it.
            engine.stability_step(now.wall_ms, self.cfg.fold_counters_per_tick);
        }
        if now.mono_ms < self.next_sync {
            return;
        }
        self.next_sync = next_after(self.next_sync, self.cfg.sync_interval_ms, now.mono_ms);
        if self.syncing {
            return;
        }
        let periodic = self.fsync == Fsync::Everysec || self.cfg.sync_always_and_no;
        if !periodic {
            self.after_sync(engine, now, trim_to);
            return;
        }
        match engine.sync_begin() {
            Ok(Some(sync)) => {
                self.syncing = true;
                self.work.push_back(Work::Sync(sync));
            }
            Ok(None) => self.after_sync(engine, now, trim_to),
            Err(e) => {
                tracing::error!(error = %e, "op log sync failed; writes are refused");
            }
        }
    }

    /// The next piece of work to run without the engine.
    pub fn poll_work(&mut self) -> Option<Work> {
        self.work.pop_front()
    }

    /// Records a [`Work::Sync`]'s fsync; then trims the backlog and starts a
    /// checkpoint if one is due.
    pub fn sync_done(
        &mut self,
        engine: &mut Engine,
        done: SyncDone,
        now: Now,
        trim_to: Option<&VersionVector>,
    ) {
        self.syncing = false;
        if let Err(e) = engine.sync_finish(done) {
            tracing::error!(error = %e, "op log sync failed; writes are refused");
            return;
        }
        self.after_sync(engine, now, trim_to);
    }

    /// One slice of the checkpoint begun by [`Work::Checkpoint`].
    pub fn capture(&mut self, engine: &mut Engine) -> Capture {
        match engine.checkpoint_step(self.cfg.capture_slice_rows) {
            CheckpointStep::More => Capture::More,
            CheckpointStep::Ready(pending) => {
                self.checkpoint = Checkpointing::Writing;
                Capture::Ready(pending)
            }
            CheckpointStep::Gone => {
                self.checkpoint = Checkpointing::Idle;
                Capture::Gone
            }
        }
    }

    /// Records the write of a checkpoint handed over by
    /// [`Housekeeping::capture`].
    pub fn checkpoint_done(
        &mut self,
        engine: &mut Engine,
        done: Result<CheckpointDone, StorageError>,
        now: Now,
    ) {
        self.checkpoint = Checkpointing::Idle;
        match engine.checkpoint_finish(done) {
            Ok(()) => {}
            Err(e) => tracing::error!(error = %e, "checkpoint failed"),
        }
        self.note_checkpoints(engine, now);
    }

    fn wake_peers(&mut self) {
        if !matches!(self.work.back(), Some(Work::WakePeers)) {
            self.work.push_back(Work::WakePeers);
        }
    }

    fn note_checkpoints(&mut self, engine: &Engine, now: Now) {
        let n = engine.stats().checkpoints;
        if n != self.checkpoints_seen {
            self.checkpoints_seen = n;
            self.last_checkpoint_mono = now.mono_ms;
        }
    }

    /// After the periodic sync: the backlog keeps what some peer has not
    /// durably acknowledged, acks follow durability, and a checkpoint may be
    /// due.
    fn after_sync(&mut self, engine: &mut Engine, now: Now, trim_to: Option<&VersionVector>) {
        if let Some(vv) = trim_to {
            engine.trim_backlog(vv);
        }
        self.wake_peers();
        self.note_checkpoints(engine, now);
        if self.checkpoint != Checkpointing::Idle {
            return;
        }
        let since = now
            .mono_ms
            .saturating_sub(self.last_checkpoint_mono.max(self.opened_mono));
        let due = engine.log_bytes_since_checkpoint() >= self.cfg.checkpoint_log_bytes
            || (engine.dirty_rows() > 0 && since >= self.cfg.checkpoint_interval_ms);
        if !due {
            return;
        }
        match engine.checkpoint_begin(now.wall_ms) {
            Ok(true) => {
                self.checkpoint = Checkpointing::Capturing;
                self.work.push_back(Work::Checkpoint);
            }
            // Written inline: the backend has no separate writer.
            Ok(false) => self.note_checkpoints(engine, now),
            Err(e) => tracing::error!(error = %e, "checkpoint failed"),
        }
    }
}

/// Runs a checkpoint's capture to its end for a driver that holds the
/// engine behind a lock: `step` locks, calls [`Housekeeping::capture`] once
/// and unlocks; between two steps the thread yields, so clients and peers
/// get the engine. Returns the rows to write (`None`: the checkpoint was
/// completed another way) and the number of slices.
pub fn capture_in_slices(mut step: impl FnMut() -> Capture) -> (Option<PendingCheckpoint>, u64) {
    let mut slices = 0;
    loop {
        match step() {
            Capture::More => {
                slices += 1;
                std::thread::yield_now();
            }
            Capture::Ready(pending) => return (Some(pending), slices),
            Capture::Gone => return (None, slices),
        }
    }
}

/// The next deadline of a period: one period after `prev`, or one period
/// from `now` if the driver fell behind (no burst of catch-up ticks).
fn next_after(prev: u64, period: u64, now: u64) -> u64 {
    let period = period.max(1);
    let next = prev + period;
    if next <= now {
        now + period
    } else {
        next
    }
}

#[cfg(test)]
mod tests;
