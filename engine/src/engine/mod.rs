//! The engine of one site: keyspace + clock + op log + storage + recovery.
//!
//! Local writes go through [`Engine::execute`] (one command) or
//! [`Engine::execute_multi`] (MULTI/EXEC): the command validates like Redis,
//! and every effect it emits is applied at once and recorded in one op. Remote
//! ops go through [`Engine::apply_remote`]. Durability is explicit: appended
//! records become durable at [`Engine::sync`]; callers release replies and acks
//! that depend on durability only after it.
//!
//! The code is split by concern: this file holds the [`Engine`] struct, its
//! configuration, errors, counters and small accessors; `open` opens and
//! recovers a site, `local` runs local writes ([`Txn`], MULTI groups,
//! expiry), `remote` applies peers' ops (causal buffer, OpId conflicts),
//! `journal` keeps the apply order for anti-entropy, `sync` makes the log
//! durable and stops the engine, `checkpoint` writes checkpoints, and
//! `snapshot` serves peers from the backlog or a full snapshot, and `changes`
//! reports changed keys to whoever listens, each named by an event of
//! `events`.

mod changes;
mod checkpoint;
mod cluster;
mod events;
mod journal;
mod local;
mod open;
mod remote;
mod snapshot;
mod sync;
mod units;

pub use changes::{Change, ChangeSink, ChangeSource};
pub use checkpoint::{CheckpointDone, CheckpointStep, PendingCheckpoint};
pub use cluster::{MemberError, Membership, StabilityInfo, MEMBERS_KEY, REMOVED_KEY};
pub use events::{EventClass, KeyEvent};
pub use local::{Executed, Txn, EXPIRY_SCAN_FACTOR, EXPIRY_TAKEOVER_MS};
pub use remote::RemoteOutcome;
pub use snapshot::{Snapshot, LOG_READ_AHEAD_BYTES};
pub use sync::{LogSync, SyncDone};
pub use units::{Mode as UnitMode, Unit, UnitError, UnitTable};

use crate::hlc::{Hlc, HlcClock};
use crate::id::{OpId, Origin, SiteId, VersionVector};
use crate::keyspace::image::RowImage;
use crate::keyspace::{Keyspace, DBS};
use crate::log::Backlog;
use crate::op::{KeyEffect, Op};
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use checkpoint::{CaptureMeta, InFlight};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

pub use crate::redis::AppendFsync as Fsync;

/// Default of [`EngineConfig::backlog_tail_bytes_max`]: a few seconds of
/// writes at a busy site.
pub const BACKLOG_TAIL_BYTES_MAX_DEFAULT: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub site_id: SiteId,
    pub fsync: Fsync,
    /// Bytes of op log records kept for peers (`repl-backlog-size`): a
    /// peer behind more than this needs a full sync.
    pub backlog_bytes_max: usize,
    /// Bytes of the newest encoded ops kept in memory too, so that peers
    /// that keep up are served without reading the log.
    pub backlog_tail_bytes_max: usize,
    /// Remote ops waiting for their deps.
    pub causal_buffer_ops_max: usize,
    /// Refuse to open on a corrupt log record instead of salvaging (default).
    pub salvage: bool,
    /// Every start takes a new incarnation: above the stored one and at
    /// least this floor. The server passes the wall-clock seconds, so a site
    /// started on a restored, cloned or rolled-back disk never reissues the
    /// OpIds of a later life it has no record of (see docs/decisions.md);
    /// 0 keeps tests and the simulator deterministic.
    pub incarnation_floor: u32,
    /// Stamps are never issued more than this far ahead of the wall clock
    /// (0: no bound); see [`crate::hlc::HlcClock`].
    pub max_clock_skew_ms: u64,
    /// The site has no peers: every op it applies is causally stable at
    /// once, so counters fold as they are incremented (one entry per origin
    /// instead of one per INCR). Turned off for good, on disk, the first
    /// time a peer session starts ([`Engine::note_peer`]); see
    /// docs/semantics.md, "Stability".
    pub alone: bool,
    /// Deliberate bugs the simulator must catch (never set in production).
    pub canaries: EngineCanaries,
}

/// Deliberate bugs, switched on only to prove that the simulator's checkers
/// catch them (see docs/simulator.md, "canaries").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCanaries {
    /// Keep the stored incarnation at every start (the behaviour before
    /// incarnations were taken per start): a restored disk reissues OpIds.
    pub keep_incarnation: bool,
    /// Anti-entropy repairs join rows as if both sides had seen every dot
    /// of the common vector (`join_rows(local, remote, vv, vv)`), so a dot
    /// one side lost is deleted from the other.
    pub repair_join_at_vv: bool,
    /// LWW by arrival order: a remote op is applied with a stamp the
    /// receiver takes when it arrives instead of its origin's stamp (its
    /// log and its peers still get the op as it came), so concurrent writes
    /// resolve differently at each site.
    pub lww_arrival_order: bool,
    /// No dedup: a remote op this site already holds is applied (and
    /// logged) again, so counters add it twice.
    pub no_dedup: bool,
    /// Deps skipped: a remote op is applied as soon as it is next in its
    /// origin's sequence, whether or not the ops it depends on are held.
    pub skip_deps: bool,
    /// Counters fold at every site, peers or not: increments are folded
    /// before they are stable, and an op that saw only some of them cannot
    /// be applied to the fold.
    pub fold_unstable: bool,
    /// The frontier does not wait for the ops a member had issued when it
    /// reported: an op of that member that did not see a folded increment
    /// can still arrive after the fold.
    pub frontier_skips_pending: bool,
}

impl EngineConfig {
    pub fn new(site_id: SiteId) -> Self {
        EngineConfig {
            site_id,
            fsync: Fsync::Everysec,
            backlog_bytes_max: 256 << 20,
            backlog_tail_bytes_max: BACKLOG_TAIL_BYTES_MAX_DEFAULT,
            causal_buffer_ops_max: 100_000,
            salvage: false,
            incarnation_floor: 0,
            max_clock_skew_ms: crate::hlc::MAX_CLOCK_SKEW_MS_DEFAULT,
            alone: false,
            canaries: EngineCanaries::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("corrupt op log record in {file} at offset {file_offset} (log offset {offset}): {reason} (start with --salvage to keep the intact prefix)")]
    CorruptLog {
        file: String,
        /// Absolute log offset of the record.
        offset: u64,
        /// Offset of the record inside `file`.
        file_offset: u64,
        reason: String,
    },
    #[error("corrupt checkpoint: {0} (move the data directory aside and start on an empty one: the site gets its data again from its peers by full sync)")]
    CorruptCheckpoint(String),
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("writes are refused after an earlier storage error: {0}")]
    Poisoned(String),
    /// This start issued OpIds that another life of this site had issued
    /// already (a restored or cloned disk, and a wall clock that did not
    /// move the incarnation past that life's): the two histories cannot be
    /// merged without loss, so the peer session refuses to go on.
    #[error("OpIds {origin}:{from}..={to} were issued twice: a peer holds ops of this incarnation from another life of site {site} (its disk was restored, rolled back or cloned); stop this site, and start it again so it takes a new incarnation")]
    ReissuedOpIds {
        site: SiteId,
        origin: Origin,
        from: u64,
        to: u64,
    },
}

/// Two different ops under one OpId, found when a peer sent one of them.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OpIdConflict {
    /// The peer's op differs from the one this site holds under `id`.
    #[error("op {id} from the peer differs from the op this site holds under the same OpId")]
    Payload { id: OpId },
    /// The peer holds ops of this site's current incarnation that this
    /// start did not issue, and this start issued some of its own.
    #[error("the peer holds op {id} of this site's current incarnation, which this start issued differently")]
    Reissued { id: OpId },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CheckpointMeta {
    vv: VersionVector,
    hlc: Hlc,
    /// Log offset up to which the log is covered by the checkpoint.
    log_offset: u64,
}

/// Counters for INFO.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub ops_local: u64,
    pub ops_remote_applied: u64,
    pub ops_remote_duplicate: u64,
    pub ops_remote_dropped: u64,
    pub expired_keys: u64,
    /// Of `expired_keys`, those deleted by this site although another site
    /// owned the winning deadline (its owner was down, cut off or removed).
    pub expired_keys_taken_over: u64,
    pub checkpoints: u64,
    pub last_checkpoint_ms: u64,
    pub log_syncs: u64,
    pub recovered_ops: u64,
    pub truncated_tail_bytes: u64,
    /// OpIds found issued twice with different ops (see [`OpIdConflict`]).
    pub opid_conflicts: u64,
    /// Reads of the op log for peers behind the ops held in memory.
    pub backlog_log_reads: u64,
    /// Reads of the op log for a peer that failed (the peer got a full sync).
    pub backlog_read_errors: u64,
}

const META_INCARNATION: &str = "incarnation";
/// Origins whose newest op is kept to detect conflicting duplicates (more
/// origins than this are taken on trust).
const TIPS_MAX: usize = 4096;
const META_CLEAN: &str = "clean_shutdown";
/// The newest op of each origin at the last clean stop, as hashes (see
/// `Engine::tips`): a restart still knows what it held.
const META_TIPS: &str = "tips";
/// Set once this site ran alone and folded counters: its state may hold
/// folded entries up to its vector at any later start.
const META_FOLDED: &str = "folded";
/// Set when the first peer session started: the vector up to which the
/// state may hold folded entries (empty if it never folded). A peer that
/// lacks any of those ops is served by a full sync, never op by op: an op
/// it made after seeing only some of them could not be applied to a fold.
const META_SHARED: &str = "shared";

/// What a site keeps of the newest op of an origin: its bytes, or (after a
/// restart) the BLAKE3 hash of them.
#[derive(Clone, Debug)]
enum Tip {
    Bytes(Bytes),
    Hash([u8; 32]),
}

pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) origin: Origin,
    pub(crate) clock: HlcClock,
    pub(crate) vv: VersionVector,
    durable_vv: VersionVector,
    next_seq: u64,
    /// The first seq this start issued (or would issue) in its incarnation:
    /// ops of this incarnation below it were issued by another life.
    first_seq_this_start: u64,
    /// The payload of the newest op held from each origin: a duplicate of
    /// that OpId from a peer is compared with it (see [`OpIdConflict`]).
    tips: std::collections::HashMap<Origin, (u64, Tip), crate::keyspace::value::Hasher>,
    /// Ops (and merges) applied since the start: the touch index of the
    /// next one is `completed + 1` (see `keyspace::digest`).
    completed: u64,
    /// `(completed, vv)` at points of the apply order, oldest first: every
    /// op with a touch index at or below `completed` is in `vv`. Anti-entropy
    /// asks it which leaves only ops of a given vector changed.
    journal: std::collections::VecDeque<(u64, VersionVector)>,
    /// The touch index of the last change to the whole state: every leaf
    /// counts as changed at least then. Set by the start (the rows came
    /// from the disk, made by ops up to the vector the start recovered) and
    /// by every snapshot merge: the snapshot's ops may have changed any
    /// leaf, also one whose rows end as they were (a key they created and
    /// deleted), which no row change touches.
    all_touched_at: u64,
    pub(crate) keyspace: Keyspace,
    backlog: Backlog,
    causal_buffer: BTreeMap<OpId, Op>,
    storage: Box<dyn Storage>,
    record_buf: Vec<u8>,
    /// The effect list of the last local op, cleared, for the next one.
    spare_effects: Vec<KeyEffect>,
    poisoned: Option<String>,
    pub(crate) stats: EngineStats,
    checkpoint_log_offset: u64,
    /// Open MULTI/EXEC group: the op being built across `execute` calls.
    group: Option<Option<Op>>,
    /// The checkpoint being captured a slice at a time (see
    /// [`Engine::checkpoint_begin`]).
    capture: Option<CaptureMeta>,
    /// Raised while a captured checkpoint is written off the lock.
    write_in_flight: Arc<InFlight>,
    /// The last bytes read from the op log for a peer that is behind.
    log_read_ahead: snapshot::ReadAhead,
    /// The chunk the backlog's copies of new ops are cut from: one
    /// allocation per `BACKLOG_CHUNK_BYTES` instead of one per op.
    backlog_chunk: bytes::BytesMut,
    /// Changed keys, for whoever listens (see `changes`); `None`: nobody.
    changes: Option<Box<changes::Changes>>,
    /// A peer session has started at some point ([`META_SHARED`]).
    shared: bool,
    /// The state may hold folded counter entries ([`META_FOLDED`]).
    folded: bool,
    /// Stability reports, the frontier and fold counts (see `cluster`).
    stability: cluster::StabilityState,
    /// The unit table read from the cluster's rows, and planned failovers
    /// under way (see `units`).
    units: units::UnitState,
    /// `--salvage` dropped durable op log records at this start.
    salvaged: bool,
    /// Writes are refused until a full sync from a peer: the state went
    /// back below what this site reported (see `Engine::catching_up`).
    catching_up: bool,
    /// Writes are refused until the state covers this vector: a peer that
    /// did not know this site when it made reports others may have folded
    /// with asked for it (see `Engine::require_catch_up`).
    catch_up_to: Option<VersionVector>,
}

impl Engine {
    /// A peer session is starting: this site is no longer alone. The first
    /// time, durably: counters stop folding, and every op up to the vector
    /// is below the backlog's floor if the state may hold folds of them, so
    /// a peer that lacks any gets a full sync. Applying ops or a snapshot
    /// from a peer calls it too.
    pub fn note_peer(&mut self) {
        if self.shared {
            return;
        }
        let folded_to = if self.folded || self.keyspace.fold {
            self.vv.clone()
        } else {
            VersionVector::new()
        };
        let bytes = postcard::to_allocvec(&folded_to).unwrap_or_default();
        if let Err(e) = self.storage.meta_put(META_SHARED, &bytes) {
            self.poison(e);
        }
        self.shared = true;
        self.stability.floor_on_disk = folded_to.clone();
        self.keyspace.fold = self.config.canaries.fold_unstable;
        for (o, s) in folded_to.iter() {
            self.backlog.floor.raise(o, s);
        }
        if !folded_to.is_empty() {
            tracing::info!(%folded_to, "first peer session: counters stop folding; a peer below this vector gets a full sync");
        }
    }

    /// True while counters fold as they are incremented (the site is alone).
    pub fn folds_at_once(&self) -> bool {
        self.keyspace.fold
    }

    /// Counter entries (integer and float) a string key holds: what a hot
    /// counter costs in memory (tests, `DEBUG`).
    pub fn counter_entries(&self, db: u8, key: &[u8]) -> usize {
        self.keyspace
            .db(db)
            .rows
            .get(key)
            .and_then(|r| r.string.as_ref())
            .map_or(0, |c| c.ctr.len())
    }

    // ---- accessors -------------------------------------------------------

    pub fn site_id(&self) -> SiteId {
        self.config.site_id
    }
    pub fn origin(&self) -> Origin {
        self.origin
    }
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
    pub fn set_fsync(&mut self, f: Fsync) {
        self.config.fsync = f;
    }
    /// Changes the clock-skew bound (`max-clock-skew-ms`) from the next
    /// stamp on.
    pub fn set_max_clock_skew(&mut self, max_skew_ms: u64) {
        self.config.max_clock_skew_ms = max_skew_ms;
        self.clock.set_max_skew(max_skew_ms);
    }
    /// Ops applied here.
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }
    /// Ops durable in the local log (a subset of `vv`).
    pub fn durable_vv(&self) -> &VersionVector {
        &self.durable_vv
    }
    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    pub fn type_conflicts(&self) -> u64 {
        self.keyspace.stats.type_conflicts
    }
    /// List elements a pop named that were already removed here (see
    /// docs/semantics.md, "Lists").
    pub fn list_pop_conflicts(&self) -> u64 {
        self.keyspace.stats.list_pop_conflicts
    }
    /// Absorbs a peer's clock (heartbeats), so local stamps stay ahead of it.
    pub fn observe_clock(&mut self, hlc: Hlc) {
        self.clock.observe(hlc);
    }
    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }
    /// The stamp of this site's last write (issued here, not absorbed).
    pub fn last_stamp_issued(&self) -> Hlc {
        self.clock.last_issued()
    }
    /// The storage backend (the simulator reaches `MemoryStorage` through
    /// `as_any_mut` to cut power).
    pub fn storage_mut(&mut self) -> &mut dyn Storage {
        self.storage.as_mut()
    }
    /// Gives the storage back without a clean shutdown (a crash, for tests and
    /// the simulator: nothing is synced or marked clean).
    pub fn into_storage(self) -> Box<dyn Storage> {
        self.storage
    }
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }
    /// Changes the bound on the newest ops' bytes the backlog keeps in
    /// memory; a smaller bound applies at once.
    pub fn set_backlog_tail_bytes_max(&mut self, bytes: usize) {
        self.config.backlog_tail_bytes_max = bytes;
        self.backlog.set_tail_bytes_max(bytes);
    }
    pub fn causal_buffer_len(&self) -> usize {
        self.causal_buffer.len()
    }
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }
    /// Seq of the last local op (0 if none in this incarnation).
    pub fn last_local_seq(&self) -> u64 {
        self.next_seq - 1
    }
    pub fn dbsize(&self, db: u8) -> usize {
        self.keyspace.db(db).keys()
    }
    pub fn expires_count(&self, db: u8) -> usize {
        self.keyspace.db(db).keys_expiring()
    }
    /// A fingerprint of one key's state (WATCH): any change to the key —
    /// local or remote write, delete, flush — changes it; 0 when absent.
    pub fn key_version(&self, db: u8, key: &[u8], now_ms: u64) -> u64 {
        match self.keyspace.db(db).visible(key, now_ms) {
            None => 0,
            Some(row) => {
                let h = blake3::hash(&RowImage::of(row).encode());
                let b = h.as_bytes();
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) | 1
            }
        }
    }

    /// Hex digest of the whole dataset (DEBUG DIGEST).
    pub fn digest_hex(&self) -> String {
        if (0..DBS as u8).all(|d| self.keyspace.db(d).is_empty()) {
            return "0".repeat(40);
        }
        self.keyspace
            .digest()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn poison(&mut self, e: StorageError) {
        tracing::error!(error = %e, "storage error: refusing writes until restart");
        self.poisoned = Some(e.to_string());
    }

    /// Checks the engine's internal invariants (debug builds, tests, simulator).
    pub fn invariants_hold(&self) -> bool {
        let pending = matches!(self.group, Some(Some(_)));
        self.vv.is_canonical()
            && self.vv.dominates(&self.durable_vv)
            && self.backlog.invariants_hold()
            && (pending || self.next_seq == self.vv.get(self.origin) + 1)
            && self.causal_buffer.keys().all(|id| !self.vv.covers(*id))
            && self.keyspace.touch_seq == self.completed + 1
            && self
                .journal
                .back()
                .is_none_or(|(c, _)| *c <= self.completed)
    }
}
