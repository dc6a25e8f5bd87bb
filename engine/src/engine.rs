//! The engine of one site: keyspace + clock + op log + storage + recovery.
//!
//! Local writes go through [`Engine::execute`] (one command) or
//! [`Engine::execute_multi`] (MULTI/EXEC): the command validates like Redis,
//! and every effect it emits is applied at once and recorded in one op. Remote
//! ops go through [`Engine::apply_remote`]. Durability is explicit: appended
//! records become durable at [`Engine::sync`]; callers release replies and acks
//! that depend on durability only after it.

use crate::cmd;
use crate::crdt::Ctx;
use crate::hlc::{Hlc, HlcClock};
use crate::id::{OpId, Origin, SiteId, VersionVector};
use crate::keyspace::image::{join_rows, RowImage};
use crate::keyspace::row::Row;
use crate::keyspace::{CopiedRow, Keyspace, DBS};
use crate::log::{self, Backlog, BacklogEntry, RecordScan};
use crate::op::{Effect, KeyEffect, Op};
use crate::reply::Reply;
use crate::storage::{CheckpointRow, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use thiserror::Error;

/// Redis's `appendfsync` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Option<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub site_id: SiteId,
    pub fsync: Fsync,
    /// Bytes of encoded ops kept in memory (and on disk) for peers.
    pub backlog_bytes_max: usize,
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
}

impl EngineConfig {
    pub fn new(site_id: SiteId) -> Self {
        EngineConfig {
            site_id,
            fsync: Fsync::EverySec,
            backlog_bytes_max: 256 << 20,
            causal_buffer_ops_max: 100_000,
            salvage: false,
            incarnation_floor: 0,
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
    #[error("corrupt checkpoint: {0} (start with --salvage to rebuild from the op log)")]
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

/// What `apply_remote` did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteOutcome {
    pub applied: usize,
    pub duplicates: usize,
    pub buffered: usize,
    /// Dropped because the causal buffer was full; the sender must resend.
    pub dropped: usize,
    /// An OpId this site holds arrived with a different op: two ops were
    /// issued under one OpId (see [`EngineError::ReissuedOpIds`]). The rest
    /// of the batch was not applied; the session must stop.
    pub conflict: Option<OpIdConflict>,
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

/// A consistent cut of the whole state, for full sync.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub vv: VersionVector,
    pub hlc: Hlc,
    pub rows: Vec<(u8, Bytes, RowImage)>,
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
    pub checkpoints: u64,
    pub last_checkpoint_ms: u64,
    pub log_syncs: u64,
    pub recovered_ops: u64,
    pub truncated_tail_bytes: u64,
    /// OpIds found issued twice with different ops (see [`OpIdConflict`]).
    pub opid_conflicts: u64,
}

const META_INCARNATION: &str = "incarnation";
/// Origins whose newest op is kept to detect conflicting duplicates (more
/// origins than this are taken on trust).
const TIPS_MAX: usize = 4096;
const META_CLEAN: &str = "clean_shutdown";
/// The newest op of each origin at the last clean stop, as hashes (see
/// `Engine::tips`): a restart still knows what it held.
const META_TIPS: &str = "tips";

/// What a site keeps of the newest op of an origin: its bytes, or (after a
/// restart) the BLAKE3 hash of them.
#[derive(Clone, Debug)]
enum Tip {
    Bytes(Bytes),
    Hash([u8; 32]),
}

/// The apply order is journalled every this many ops (and at every
/// anti-entropy question).
const JOURNAL_EVERY: u64 = 64;
/// Journal points kept; older touches are judged by the oldest point.
const JOURNAL_POINTS_MAX: usize = 1024;

/// A kept effect list is at most this long (a huge MULTI does not pin memory).
const SPARE_EFFECTS_CAPACITY_MAX: usize = 64;

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
    /// The chunk the backlog's copies of new ops are cut from: one
    /// allocation per `BACKLOG_CHUNK_BYTES` instead of one per op.
    backlog_chunk: bytes::BytesMut,
}

/// Size of the chunks backlog copies are cut from. A chunk is freed once
/// every op cut from it left the backlog (they leave in order).
const BACKLOG_CHUNK_BYTES: usize = 64 << 10;

/// What a checkpoint records besides its rows, fixed when it begins.
struct CaptureMeta {
    sync: Option<LogSync>,
    meta: Vec<u8>,
    log_offset: u64,
    now_ms: u64,
    writer: Box<dyn crate::storage::CheckpointWriter>,
}

/// "A captured checkpoint is being written": an inline checkpoint waits for
/// it, so checkpoints reach the storage in the order they were taken.
#[derive(Default)]
struct InFlight {
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
    /// Opens (recovers) a site from its storage.
    pub fn open(mut storage: Box<dyn Storage>, config: EngineConfig) -> Result<Engine, OpenError> {
        // No flag at all: a brand-new site. "1": the last stop was clean.
        let clean_flag = storage.meta_get(META_CLEAN)?;
        let brand_new = clean_flag.is_none();
        let clean = clean_flag.as_deref() == Some(&b"1"[..]);
        let stored_incarnation = match storage.meta_get(META_INCARNATION)? {
            Some(b) if b.len() == 4 => Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => None,
        };
        let mut incarnation = stored_incarnation.unwrap_or(0);
        let (rows, meta) = storage.checkpoint_read()?;
        let meta: CheckpointMeta = match meta {
            Some(m) => {
                postcard::from_bytes(&m).map_err(|e| OpenError::CorruptCheckpoint(e.to_string()))?
            }
            None => CheckpointMeta::default(),
        };
        // Unreadable tips (a damaged meta value) only weaken the check.
        let mut tips = std::collections::HashMap::with_hasher(crate::keyspace::value::hasher());
        let stored = storage
            .meta_get(META_TIPS)?
            .and_then(|b| postcard::from_bytes::<Vec<(OpId, [u8; 32])>>(&b).ok())
            .unwrap_or_default();
        for (id, h) in stored.into_iter().take(TIPS_MAX) {
            tips.insert(id.origin, (id.seq, Tip::Hash(h)));
        }
        let mut engine = Engine {
            origin: Origin::new(config.site_id, incarnation),
            config,
            clock: HlcClock::new(),
            vv: meta.vv.clone(),
            durable_vv: VersionVector::new(),
            next_seq: 1,
            first_seq_this_start: 1,
            tips,
            completed: 0,
            journal: std::collections::VecDeque::new(),
            all_touched_at: 0,
            keyspace: Keyspace::default(),
            backlog: Backlog::default(),
            causal_buffer: BTreeMap::new(),
            storage,
            record_buf: Vec::with_capacity(64 << 10),
            spare_effects: Vec::new(),
            poisoned: None,
            stats: EngineStats::default(),
            checkpoint_log_offset: meta.log_offset,
            group: None,
            capture: None,
            write_in_flight: Arc::default(),
            backlog_chunk: bytes::BytesMut::new(),
        };
        engine.clock.observe(meta.hlc);
        // Size each database's table once instead of growing it row by row.
        let mut per_db = [0usize; DBS];
        for r in &rows {
            if let Some(n) = per_db.get_mut(r.db as usize) {
                *n += 1;
            }
        }
        for (db, n) in per_db.into_iter().enumerate() {
            engine.keyspace.dbs[db].rows.reserve(n);
        }
        for r in rows {
            let Some(state) = r.state else { continue };
            let img = RowImage::decode(&state).map_err(|e| {
                OpenError::CorruptCheckpoint(format!(
                    "row {:?} in db {}: {e}",
                    String::from_utf8_lossy(&r.key),
                    r.db
                ))
            })?;
            engine
                .keyspace
                .put_row(r.db, Bytes::from(r.key), img.into_row());
        }
        // Rows loaded from the checkpoint are clean; rows the log replay
        // changes are not (the next checkpoint must write them).
        engine.keyspace.clear_dirty();
        let first_in_log = engine.replay_log()?;
        // The retained log holds, per origin, a contiguous run of seqs up to the
        // newest; ops before that run (trimmed, or only in the checkpoint) cannot
        // be served from the backlog: a peer behind them needs a full sync.
        let mut floor = meta.vv.clone();
        for (o, first) in first_in_log {
            floor.set(o, first - 1);
        }
        engine.backlog.floor = floor;
        while engine.backlog.bytes() > engine.config.backlog_bytes_max && engine.backlog.len() > 1 {
            engine.backlog.pop_front();
        }
        // Every start takes a new incarnation. Nothing on this disk tells a
        // clean stop from a copy of one: the directory may have been restored
        // from a backup, rolled back with its VM or cloned, and a later life
        // of this site may have shipped ops under the stored incarnation. So
        // the new one is above the stored one (a clock that went back cannot
        // reuse it) and at least the caller's floor (wall-clock seconds: above
        // any incarnation an earlier start could have taken, restored or not).
        // A brand-new directory keeps a pre-set incarnation as it is.
        let keep = engine.config.canaries.keep_incarnation && clean && !brand_new;
        if !brand_new && !keep {
            incarnation = incarnation.saturating_add(1);
        }
        if !keep {
            incarnation = incarnation.max(engine.config.incarnation_floor);
        }
        if let Some(stored) = stored_incarnation.filter(|&s| s == u32::MAX && !brand_new) {
            tracing::error!(
                incarnation = stored,
                "incarnations are exhausted for this site id: OpIds may be reused"
            );
        }
        engine
            .storage
            .meta_put(META_INCARNATION, &incarnation.to_le_bytes())?;
        engine.storage.meta_put(META_CLEAN, b"0")?;
        engine.origin = Origin::new(engine.config.site_id, incarnation);
        engine.next_seq = engine.vv.get(engine.origin) + 1;
        engine.first_seq_this_start = engine.next_seq;
        engine.durable_vv = engine.vv.clone();
        // Everything loaded and replayed is one step of the apply order.
        engine.op_completed();
        engine.journal_mark();
        engine.all_touched_at = engine.completed;
        debug_assert!(engine.invariants_hold());
        Ok(engine)
    }

    /// Replays the log; returns the first seq of each origin found in it.
    fn replay_log(&mut self) -> Result<BTreeMap<Origin, u64>, OpenError> {
        let mut first_in_log: BTreeMap<Origin, u64> = BTreeMap::new();
        let start = self.storage.log_start();
        let buf = self.storage.log_read_from(start)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            match log::scan_record(&buf, pos) {
                RecordScan::Record(payload, next) => {
                    let op = match log::decode_op(payload) {
                        Ok(op) => op,
                        Err(e) => {
                            if self.config.salvage {
                                self.truncate_log_at(start + pos as u64, buf.len() - pos)?;
                                break;
                            }
                            return Err(self.corrupt_at(start + pos as u64, e.to_string()));
                        }
                    };
                    let log_offset = start + pos as u64;
                    first_in_log.entry(op.id.origin).or_insert(op.id.seq);
                    let bytes = Bytes::copy_from_slice(payload);
                    self.note_tip(op.id, &bytes);
                    self.backlog.push(BacklogEntry {
                        id: op.id,
                        bytes,
                        log_offset,
                    });
                    if !self.vv.covers(op.id) && self.deps_ready(&op) {
                        self.apply_op_internal(&op);
                        self.stats.recovered_ops += 1;
                    }
                    pos = next;
                }
                RecordScan::Incomplete => {
                    // A torn last write: the record never became durable as a
                    // whole, so nothing after it was acknowledged. But a
                    // damaged length in the middle also reads as "runs past
                    // the end": if a whole record follows, it is corruption.
                    if has_valid_record_after(&buf, pos + 1) && !self.config.salvage {
                        let log_offset = start + pos as u64;
                        return Err(self.corrupt_at(
                            log_offset,
                            "record length runs past the end of the log".into(),
                        ));
                    }
                    self.truncate_log_at(start + pos as u64, buf.len() - pos)?;
                    break;
                }
                RecordScan::Corrupt(reason) => {
                    let is_tail = !has_valid_record_after(&buf, pos + 1);
                    if is_tail || self.config.salvage {
                        tracing::warn!(
                            offset = start + pos as u64,
                            reason,
                            "dropping corrupt op log tail"
                        );
                        self.truncate_log_at(start + pos as u64, buf.len() - pos)?;
                        break;
                    }
                    let log_offset = start + pos as u64;
                    return Err(self.corrupt_at(log_offset, reason.to_string()));
                }
            }
        }
        Ok(first_in_log)
    }

    fn corrupt_at(&self, log_offset: u64, reason: String) -> OpenError {
        let (file, file_offset) = self.storage.log_position(log_offset);
        OpenError::CorruptLog {
            file,
            offset: log_offset,
            file_offset,
            reason,
        }
    }

    fn truncate_log_at(&mut self, offset: u64, dropped: usize) -> Result<(), StorageError> {
        self.stats.truncated_tail_bytes += dropped as u64;
        self.storage.log_truncate(offset)
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
    /// Learns a peer's version vector (handshake). If the peer holds ops of
    /// this site from an incarnation at or above ours beyond what we hold,
    /// this site lost its history (disk wiped or restored from an old copy):
    /// it moves to a fresh incarnation so it never reissues those OpIds.
    /// Returns true when the incarnation changed.
    pub fn observe_peer_vv(&mut self, peer: &VersionVector) -> Result<bool, EngineError> {
        let mut max_seen: Option<u32> = None;
        for (o, q) in peer.iter() {
            if o.site == self.config.site_id
                && o.incarnation >= self.origin.incarnation
                && q > self.vv.get(o)
            {
                max_seen = Some(max_seen.map_or(o.incarnation, |m| m.max(o.incarnation)));
            }
        }
        let Some(m) = max_seen else { return Ok(false) };
        if let Some((from, to)) = self.reissued_range(peer.get(self.origin)) {
            self.stats.opid_conflicts += 1;
            return Err(EngineError::ReissuedOpIds {
                site: self.config.site_id,
                origin: self.origin,
                from,
                to,
            });
        }
        self.end_group();
        let inc = m.saturating_add(1);
        self.storage
            .meta_put(META_INCARNATION, &inc.to_le_bytes())?;
        tracing::warn!(
            incarnation = inc,
            "a peer holds newer ops of this site than its own log: starting a new incarnation"
        );
        self.origin = Origin::new(self.config.site_id, inc);
        self.next_seq = self.vv.get(self.origin) + 1;
        self.first_seq_this_start = self.next_seq;
        debug_assert!(self.invariants_hold());
        Ok(true)
    }

    /// The seqs of the current incarnation this start issued that another
    /// life also issued, when a peer holds that life's ops up to `peer_seq`
    /// beyond ours: `None` when this start issued none.
    fn reissued_range(&self, peer_seq: u64) -> Option<(u64, u64)> {
        let last = self.next_seq.checked_sub(1)?;
        (peer_seq > self.vv.get(self.origin) && last >= self.first_seq_this_start)
            .then_some((self.first_seq_this_start, last))
    }

    /// True when `bytes` (an encoding of `op`) is the op this site holds
    /// under `op.id`, as far as it can tell: only the newest op of each
    /// origin is kept to compare with; older ones are taken on trust.
    fn same_as_held(&self, op: &Op, bytes: Option<&Bytes>) -> bool {
        let Some((_, held)) = self
            .tips
            .get(&op.id.origin)
            .filter(|(seq, _)| *seq == op.id.seq)
        else {
            return true;
        };
        match held {
            Tip::Bytes(held) => {
                if bytes.is_some_and(|b| b == held) {
                    return true;
                }
                log::decode_op(held).map_or(true, |h| &h == op)
            }
            Tip::Hash(h) => {
                let theirs = match bytes {
                    Some(b) => blake3::hash(b),
                    None => blake3::hash(&log::encode_op(op)),
                };
                theirs.as_bytes() == h
            }
        }
    }

    /// Remembers the newest op of its origin (see `same_as_held`).
    fn note_tip(&mut self, id: OpId, bytes: &Bytes) {
        match self.tips.get_mut(&id.origin) {
            Some(t) => {
                if t.0 < id.seq {
                    *t = (id.seq, Tip::Bytes(bytes.clone()));
                }
            }
            None => {
                if self.tips.len() < TIPS_MAX {
                    self.tips
                        .insert(id.origin, (id.seq, Tip::Bytes(bytes.clone())));
                }
            }
        }
    }

    /// Absorbs a peer's clock (heartbeats), so local stamps stay ahead of it.
    pub fn observe_clock(&mut self, hlc: Hlc) {
        self.clock.observe(hlc);
    }
    pub fn clock(&self) -> Hlc {
        self.clock.last()
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

    // ---- local writes ----------------------------------------------------

    /// Executes one command (`args[0]` is the name) against `db`.
    pub fn execute(&mut self, db: u8, args: &[Bytes], now_ms: u64) -> Reply {
        let mut txn = Txn::new(self, now_ms);
        let reply = cmd::dispatch(&mut txn, db, args);
        txn.commit();
        reply
    }

    /// Executes a MULTI/EXEC group atomically: one op for all its writes.
    pub fn execute_multi(&mut self, cmds: &[(u8, Vec<Bytes>)], now_ms: u64) -> Vec<Reply> {
        let mut txn = Txn::new(self, now_ms);
        let replies = cmds
            .iter()
            .map(|(db, args)| cmd::dispatch(&mut txn, *db, args))
            .collect();
        txn.commit();
        replies
    }

    /// True when the command name (upper or lower case) is a data command the
    /// engine implements.
    pub fn is_data_command(name: &[u8]) -> bool {
        cmd::lookup(name).is_some()
    }

    fn finish_local_op(&mut self, op: Op) {
        self.append_op(&op);
        // The next op reuses the effect list's allocation.
        let mut effects = op.effects;
        effects.clear();
        if effects.capacity() <= SPARE_EFFECTS_CAPACITY_MAX {
            self.spare_effects = effects;
        }
        self.vv.set(self.origin, op.id.seq);
        self.next_seq = op.id.seq + 1;
        self.op_completed();
        self.stats.ops_local += 1;
        debug_assert!(self.invariants_hold());
    }

    /// Appends an op to the log and the backlog: encoded once, straight into
    /// the framed record; the backlog keeps a copy of the payload, cut from a
    /// shared chunk.
    fn append_op(&mut self, op: &Op) {
        self.record_buf.clear();
        let payload = log::encode_record(op, &mut self.record_buf);
        let payload = &self.record_buf[payload];
        if self.backlog_chunk.capacity() - self.backlog_chunk.len() < payload.len() {
            self.backlog_chunk =
                bytes::BytesMut::with_capacity(BACKLOG_CHUNK_BYTES.max(payload.len()));
        }
        self.backlog_chunk.extend_from_slice(payload);
        let bytes = self.backlog_chunk.split().freeze();
        self.log_and_keep(op.id, bytes);
    }

    /// Appends the framed record in `record_buf` to the log, and its payload
    /// to the backlog.
    fn log_and_keep(&mut self, id: OpId, bytes: Bytes) {
        self.note_tip(id, &bytes);
        let offset = self.storage.log_len();
        if self.poisoned.is_none() {
            if let Err(e) = self.storage.log_append(&self.record_buf) {
                self.poison(e);
            }
        }
        self.backlog.push(BacklogEntry {
            id,
            bytes,
            log_offset: offset,
        });
        while self.backlog.bytes() > self.config.backlog_bytes_max && self.backlog.len() > 1 {
            self.backlog.pop_front();
        }
    }

    fn poison(&mut self, e: StorageError) {
        tracing::error!(error = %e, "storage error: refusing writes until restart");
        self.poisoned = Some(e.to_string());
    }

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

    /// Opens a MULTI/EXEC group: every `execute` until `end_group` adds its
    /// effects to one op, replicated and applied as a unit.
    pub fn begin_group(&mut self) {
        self.end_group();
        self.group = Some(None);
    }

    /// Closes the group and logs its op (if it wrote anything).
    pub fn end_group(&mut self) {
        if let Some(Some(op)) = self.group.take() {
            self.finish_local_op(op);
        }
    }

    // ---- remote ops --------------------------------------------------------

    fn deps_ready(&self, op: &Op) -> bool {
        self.vv.get(op.id.origin) + 1 == op.id.seq && self.vv.dominates(&op.deps)
    }

    fn apply_op_internal(&mut self, op: &Op) {
        self.clock.observe(op.hlc);
        self.keyspace.apply_op(op, &self.vv);
        self.vv.set(op.id.origin, op.id.seq);
        self.op_completed();
    }

    /// An op or a merge was applied and the vector covers it: the next
    /// change gets the next touch index.
    pub(crate) fn op_completed(&mut self) {
        self.completed += 1;
        self.keyspace.touch_seq = self.completed + 1;
        if self.completed.is_multiple_of(JOURNAL_EVERY) {
            self.journal_mark();
        }
    }

    /// Records the present point of the apply order in the journal.
    pub(crate) fn journal_mark(&mut self) {
        if self
            .journal
            .back()
            .is_some_and(|(c, _)| *c >= self.completed)
        {
            return;
        }
        self.journal.push_back((self.completed, self.vv.clone()));
        while self.journal.len() > JOURNAL_POINTS_MAX {
            self.journal.pop_front();
        }
    }

    /// See `Engine::all_touched_at`.
    pub(crate) fn all_touched_at(&self) -> u64 {
        self.all_touched_at
    }

    /// The greatest touch index through which every op applied here is in
    /// `cut`: a leaf last touched at or below it (or never, 0) holds exactly
    /// what the ops of `cut` made of it, here and at any site that holds
    /// `cut` and did not change the leaf beyond it. Conservative (it may be
    /// lower than the truth, never higher). One binary search of the journal:
    /// its vectors grow with its indexes.
    pub(crate) fn settled_through(&self, cut: &VersionVector) -> u64 {
        // An open MULTI group's changes carry `completed + 1`: never settled.
        if cut.dominates(&self.vv) {
            return self.completed;
        }
        let n = self.journal.partition_point(|(_, vv)| cut.dominates(vv));
        n.checked_sub(1)
            .and_then(|i| self.journal.get(i))
            .map_or(0, |(c, _)| *c)
    }

    /// Applies ops from a peer: drops those already held, buffers those whose
    /// deps are missing (bounded), applies and logs the rest in causal order.
    pub fn apply_remote(&mut self, ops: Vec<Op>) -> RemoteOutcome {
        self.apply_remote_from(ops.into_iter().map(|op| (op, None)))
    }

    /// [`Engine::apply_remote`] for ops as they came from a peer: each with
    /// its encoded bytes (the payload [`log::encode_record`] wrote at its
    /// origin, which the caller decoded into the op). An op applied at once
    /// is logged and kept for peers as those bytes, without encoding it
    /// again; one that waits for its deps is encoded when it is applied.
    pub fn apply_remote_encoded(&mut self, ops: Vec<(Op, Bytes)>) -> RemoteOutcome {
        self.apply_remote_from(ops.into_iter().map(|(op, b)| (op, Some(b))))
    }

    fn apply_remote_from(
        &mut self,
        ops: impl Iterator<Item = (Op, Option<Bytes>)>,
    ) -> RemoteOutcome {
        let mut out = RemoteOutcome::default();
        let mut lost_history = false;
        for (op, encoded) in ops {
            if self.vv.covers(op.id) || self.causal_buffer.contains_key(&op.id) {
                if self.vv.covers(op.id) && !self.same_as_held(&op, encoded.as_ref()) {
                    tracing::error!(
                        op = %op.id,
                        "a peer sent a different op under an OpId this site holds: OpIds were issued twice (a restored or cloned disk)"
                    );
                    out.conflict = Some(OpIdConflict::Payload { id: op.id });
                    break;
                }
                out.duplicates += 1;
                continue;
            }
            if op.id.origin == self.origin {
                // A peer holds ops of our current incarnation that we lack:
                // another life of this site issued them (the disk was wiped,
                // restored or cloned). If this start issued ops of its own
                // under the same OpIds, the histories forked: refuse.
                if self.reissued_range(op.id.seq).is_some() {
                    tracing::error!(
                        op = %op.id,
                        "a peer holds ops of this site's current incarnation that this start issued differently (a restored or cloned disk)"
                    );
                    out.conflict = Some(OpIdConflict::Reissued { id: op.id });
                    break;
                }
                // Take them, and move to a new incarnation so that no OpId
                // a peer might hold is reused.
                lost_history = true;
            }
            if self.deps_ready(&op) {
                self.apply_remote_one(op, encoded);
                out.applied += 1;
                out.applied += self.drain_causal_buffer();
            } else if self.causal_buffer.len() < self.config.causal_buffer_ops_max {
                self.causal_buffer.insert(op.id, op);
                out.buffered += 1;
            } else {
                out.dropped += 1;
            }
        }
        self.stats.ops_remote_duplicate += out.duplicates as u64;
        self.stats.ops_remote_dropped += out.dropped as u64;
        if out.conflict.is_some() {
            self.stats.opid_conflicts += 1;
        }
        if lost_history {
            self.next_seq = self.vv.get(self.origin) + 1;
            // The ops taken are another life's, none of this start's.
            self.first_seq_this_start = self.next_seq;
            let mut peer = VersionVector::new();
            peer.set(self.origin, u64::MAX);
            if let Err(e) = self.observe_peer_vv(&peer) {
                self.poison(StorageError::Poisoned(e.to_string()));
            }
        }
        debug_assert!(self.invariants_hold());
        out
    }

    fn apply_remote_one(&mut self, op: Op, encoded: Option<Bytes>) {
        self.apply_op_internal(&op);
        match encoded {
            Some(payload) => {
                self.record_buf.clear();
                log::frame_record(&payload, &mut self.record_buf);
                self.log_and_keep(op.id, payload);
            }
            None => self.append_op(&op),
        }
        self.stats.ops_remote_applied += 1;
    }

    fn drain_causal_buffer(&mut self) -> usize {
        let mut n = 0;
        loop {
            let ready: Vec<OpId> = self
                .causal_buffer
                .values()
                .filter(|op| self.deps_ready(op))
                .map(|op| op.id)
                .take(1024)
                .collect();
            if ready.is_empty() {
                return n;
            }
            for id in ready {
                if let Some(op) = self.causal_buffer.remove(&id) {
                    if self.deps_ready(&op) {
                        self.apply_remote_one(op, None);
                        n += 1;
                    } else {
                        self.causal_buffer.insert(id, op);
                    }
                }
            }
        }
    }

    /// Where a peer at `peer_vv` starts reading the backlog, or `None` when it
    /// lacks ops the backlog no longer has (it needs a full sync).
    pub fn backlog_cursor(&self, peer_vv: &VersionVector) -> Option<u64> {
        if !self.backlog.can_serve(peer_vv, &self.vv) {
            return None;
        }
        Some(self.backlog.seek(self.backlog.start(), peer_vv))
    }

    /// Reads encoded ops for a peer from `cursor`; `None` when the cursor fell
    /// behind the backlog (full sync needed).
    pub fn backlog_read(
        &self,
        cursor: u64,
        peer_vv: &VersionVector,
        ops_max: usize,
        bytes_max: usize,
    ) -> Option<(Vec<BacklogEntry>, u64)> {
        if !self.backlog.can_serve(peer_vv, &self.vv) {
            return None;
        }
        Some(self.backlog.read(cursor, peer_vv, ops_max, bytes_max))
    }

    /// Decoded ops a peer at `vv` lacks, in causal order (tests and tools).
    pub fn ops_since(&self, vv: &VersionVector, limit: usize) -> Option<Vec<Op>> {
        let cursor = self.backlog_cursor(vv)?;
        let (entries, _) = self.backlog.read(cursor, vv, limit, usize::MAX);
        entries
            .iter()
            .map(|e| log::decode_op(&e.bytes).ok())
            .collect()
    }

    /// Drops backlog entries every peer has acknowledged (`acked_by_all`),
    /// and the disk log before both the backlog and the last checkpoint
    /// (a restart replays the log from the checkpoint on). The in-memory
    /// backlog holds only what some peer still lacks: about a second of ops
    /// under `everysec`, whatever the time since the last checkpoint.
    pub fn trim_backlog(&mut self, acked_by_all: &VersionVector) {
        while let Some(f) = self.backlog.front() {
            if acked_by_all.covers(f.id) {
                self.backlog.pop_front();
            } else {
                break;
            }
        }
        let keep_from = self
            .backlog
            .front()
            .map_or(self.checkpoint_log_offset, |f| f.log_offset);
        let trim_to = keep_from.min(self.checkpoint_log_offset);
        if trim_to > self.storage.log_start() {
            if let Err(e) = self.storage.log_trim_before(trim_to) {
                self.poison(e);
            }
        }
    }

    // ---- snapshots -----------------------------------------------------------

    /// A consistent cut of the whole state.
    pub fn snapshot(&self) -> Snapshot {
        let mut rows = Vec::new();
        for db in 0..DBS as u8 {
            for (k, row) in self.keyspace.db(db).rows.iter() {
                rows.push((db, k.clone(), RowImage::of(row)));
            }
        }
        Snapshot {
            vv: self.vv.clone(),
            hlc: self.clock.last(),
            rows,
        }
    }

    /// Merges a peer's snapshot into this state (never replaces it: local
    /// writes the peer has not seen survive). Ops that came in through the
    /// snapshot are not in the backlog, so peers behind them need a full sync.
    pub fn merge_snapshot(&mut self, snap: Snapshot) {
        let local_vv = self.vv.clone();
        let mut seen: HashSet<(u8, Bytes)> = HashSet::with_capacity(snap.rows.len());
        for (db, key, img) in snap.rows {
            let db = db % DBS as u8;
            let remote = img.into_row();
            let local = self
                .keyspace
                .db(db)
                .rows
                .get(&key)
                .cloned()
                .unwrap_or_default();
            let joined = join_rows(&local, &remote, &local_vv, &snap.vv);
            self.keyspace.put_row(db, key.clone(), joined);
            seen.insert((db, key));
        }
        let empty = Row::default();
        for db in 0..DBS as u8 {
            let keys: Vec<Bytes> = self
                .keyspace
                .db(db)
                .rows
                .iter()
                .filter(|(k, _)| !seen.contains(&(db, (*k).clone())))
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let local = self
                    .keyspace
                    .db(db)
                    .rows
                    .get(&key)
                    .cloned()
                    .unwrap_or_default();
                let joined = join_rows(&local, &empty, &local_vv, &snap.vv);
                self.keyspace.put_row(db, key, joined);
            }
        }
        self.vv.join(&snap.vv);
        self.op_completed();
        // The snapshot's ops we lacked changed leaves that no row above
        // shows: a key they created and deleted is in neither state, yet at
        // a cut holding only its creation the leaf holds it. Every leaf
        // counts as changed by this merge.
        self.all_touched_at = self.completed;
        self.clock.observe(snap.hlc);
        self.backlog.raise_floor(&snap.vv);
        // The snapshot's ops are not in our log: make the merged state durable
        // through a checkpoint before acknowledging anything built on it.
        self.causal_buffer.retain(|id, _| !snap.vv.covers(*id));
        self.drain_causal_buffer();
        // The merged ops are in no log: a checkpoint makes them durable before
        // `durable_vv` (and so any ack to a peer) can cover them.
        let now_ms = self.clock.last().wall_ms();
        if let Err(e) = self.checkpoint(now_ms) {
            tracing::error!(error = %e, "checkpoint after snapshot merge failed");
            self.durable_vv = self.durable_vv.meet(&local_vv);
        }
        debug_assert!(self.invariants_hold());
    }

    // ---- checkpoints -----------------------------------------------------------

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
        (log_offset, postcard::to_allocvec(&meta).unwrap_or_default())
    }

    /// The rows changed since the last checkpoint, encoded, in key order.
    fn take_dirty_rows(&mut self) -> Vec<CheckpointRow> {
        self.keyspace.take_dirty(|d| CheckpointRow {
            db: d.db,
            key: d.key.to_vec(),
            state: d.row.map(|r| RowImage::of(r).encode()),
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

    // ---- expiry ------------------------------------------------------------------

    /// Active expiry: deletes up to `budget` keys whose deadline passed and whose
    /// winning deadline this site wrote (other sites only hide them; the owner's
    /// delete replicates). Returns how many keys were deleted.
    pub fn expire_cycle(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut due: Vec<(u8, Bytes)> = Vec::new();
        for db in 0..DBS as u8 {
            for (deadline, key) in self.keyspace.db(db).expires.iter() {
                if *deadline > now_ms || due.len() >= budget {
                    break;
                }
                let owner = self
                    .keyspace
                    .db(db)
                    .rows
                    .get(key)
                    .and_then(|r| r.deadline_owner())
                    .map(|s| s.dot.origin.site);
                if owner == Some(self.config.site_id) {
                    due.push((db, key.clone()));
                }
            }
        }
        let n = due.len();
        if n > 0 {
            let mut txn = Txn::new(self, now_ms);
            for (db, key) in due {
                txn.emit(db, &key, Effect::Del);
                txn.engine.stats.expired_keys += 1;
            }
            txn.commit();
        }
        n
    }

    /// Checks the engine's internal invariants (debug builds, tests, simulator).
    pub fn invariants_hold(&self) -> bool {
        let pending = matches!(self.group, Some(Some(_)));
        self.vv.is_canonical()
            && self.vv.dominates(&self.durable_vv)
            && (pending || self.next_seq == self.vv.get(self.origin) + 1)
            && self.causal_buffer.keys().all(|id| !self.vv.covers(*id))
            && self.keyspace.touch_seq == self.completed + 1
            && self
                .journal
                .back()
                .is_none_or(|(c, _)| *c <= self.completed)
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
    result: Result<(), StorageError>,
    vv: VersionVector,
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

fn has_valid_record_after(buf: &[u8], from: usize) -> bool {
    // Look for any checksummed record later in the buffer: if one exists, the
    // damage is in the middle of the log, not a torn tail.
    let mut p = from;
    let limit = buf.len().min(from + (1 << 20));
    while p + log::RECORD_HEADER_BYTES < limit {
        if let RecordScan::Record(..) = log::scan_record(buf, p) {
            return true;
        }
        p += 1;
    }
    false
}

/// A local transaction: the engine seen by one command (or one MULTI group).
/// Effects are applied as they are emitted, so later reads see them; they are
/// recorded in one op, logged at `commit`.
pub struct Txn<'e> {
    pub(crate) engine: &'e mut Engine,
    pub now_ms: u64,
    op: Option<Op>,
}

impl<'e> Txn<'e> {
    fn new(engine: &'e mut Engine, now_ms: u64) -> Txn<'e> {
        let op = engine.group.as_mut().and_then(|g| g.take());
        Txn { engine, now_ms, op }
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.engine.keyspace
    }

    pub fn site_id(&self) -> SiteId {
        self.engine.config.site_id
    }

    /// Writes are refused after a storage error.
    pub fn write_refused(&self) -> Option<String> {
        self.engine.poisoned.as_ref().map(|p| {
            format!("MISCONF Errors writing to the op log: {p}; writes are refused until restart")
        })
    }

    /// Applies an effect now and records it in this transaction's op.
    ///
    /// A local write never leaves a key-less row (expiry entries without a
    /// key, see [`Db`](crate::keyspace::Db)) behind, as Redis never keeps
    /// the TTL of a key that is gone:
    /// - a write that keeps the TTL, to a key-less row, starts a new key:
    ///   the row's expiry entries (left by a delete concurrent with an
    ///   EXPIRE) are removed first, so they do not carry over to it;
    /// - an effect that removes the last element of a key with a TTL (HDEL,
    ///   SREM, ZPOPMIN...) deletes the key, TTL included, as Redis deletes
    ///   an emptied key.
    ///
    /// Both are a `Del` recorded in the op (an observed-remove: writes
    /// concurrent with it at other sites survive), so every site applies the
    /// same effects and converges.
    pub fn emit(&mut self, db: u8, key: &Bytes, effect: Effect) {
        if effect.keeps_ttl() && self.engine.keyspace.db(db).is_keyless(key) {
            self.record(db, key, Effect::Del);
        }
        if self.record(db, key, effect) {
            self.record(db, key, Effect::Del);
        }
    }

    /// Applies an effect and adds it to this transaction's op; true when it
    /// left a key-less row.
    fn record(&mut self, db: u8, key: &Bytes, effect: Effect) -> bool {
        let engine = &mut *self.engine;
        let op = self.op.get_or_insert_with(|| Op {
            id: OpId::new(engine.origin, engine.next_seq),
            hlc: engine.clock.tick(self.now_ms),
            deps: engine.vv.without(engine.origin),
            effects: std::mem::take(&mut engine.spare_effects),
        });
        let ctx = Ctx {
            deps: &op.deps,
            own: op.id,
            hlc: op.hlc,
        };
        // The op may hold slices of the client's read buffer until it is
        // encoded at commit; the keyspace stores its own copies.
        let keyless = engine
            .keyspace
            .apply_effect(db, key, &effect, &ctx, &engine.vv);
        op.effects.push(KeyEffect {
            db,
            key: key.clone(),
            effect,
        });
        keyless
    }

    /// Logs the op (if any effect was emitted).
    pub fn commit(mut self) {
        let op = self.op.take();
        match &mut self.engine.group {
            Some(g) => *g = op,
            None => {
                if let Some(op) = op {
                    self.engine.finish_local_op(op);
                }
            }
        }
    }

    pub fn stats_mut(&mut self) -> &mut EngineStats {
        &mut self.engine.stats
    }
}
