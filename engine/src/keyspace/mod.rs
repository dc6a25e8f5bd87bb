//! The keyspace: 16 databases of rows, an expiry index per database, and the
//! set of rows changed since the last checkpoint.
//!
//! Ops are applied here, locally and remotely alike, through [`Keyspace::apply_effect`];
//! reads never touch the disk.

pub mod digest;
pub mod image;
pub mod row;
pub mod table;
pub mod value;

use crate::crdt::Ctx;
use crate::id::{OpId, VersionVector};
use crate::op::{Effect, Op};
use crate::storage::CheckpointRow;
use bytes::Bytes;
use row::Row;
use std::collections::BTreeSet;
use table::KeyTable;

/// Number of logical databases (SELECT 0..15).
pub use crate::redis::limits::DATABASES as DBS;
/// The database that holds the cluster's own data (membership, see
/// [`crate::cluster`]): replicated, checkpointed, snapshotted and compared
/// by anti-entropy like the others, never selected by a client, never
/// flushed by FLUSHALL.
pub const CLUSTER_DB: u8 = DBS as u8;
/// Every database the keyspace holds: the clients' and the cluster's.
pub const ALL_DBS: usize = DBS + 1;
use digest::DbDigest;
pub use digest::{leaf_of, DIGEST_LEAVES};

/// One database. A row may outlive its key: when every type entry is
/// removed but expiry entries remain (an EXPIRE concurrent with the DEL, at
/// another site, of the key it saw), the row must stay for the replicas to
/// converge, yet there is no key. So keys are counted apart from rows.
#[derive(Default)]
pub struct Db {
    pub rows: KeyTable<Row>,
    /// `(deadline_ms, key)` of every row with a visible deadline, key-less
    /// ones included: active expiry deletes those too.
    pub expires: BTreeSet<(u64, Bytes)>,
    /// Rows with a live type: the keys (DBSIZE, INFO keyspace `keys=`).
    keys: usize,
    /// Keys with a visible deadline (INFO keyspace `expires=`).
    keys_expiring: usize,
    /// Incremental digest leaves (anti-entropy, DEBUG DIGEST).
    pub digest: DbDigest,
}

/// How a row counts in its database: `(is a key, is a key with a deadline)`.
fn counts_of(row: &Row, deadline: Option<u64>) -> (bool, bool) {
    let key = row.kind().is_some();
    (key, key && deadline.is_some())
}

impl Db {
    /// The row if the key exists (has a live type) and has not expired at `now_ms`.
    pub fn visible(&self, key: &[u8], now_ms: u64) -> Option<&Row> {
        let row = self.rows.get(key)?;
        row.kind()?;
        match row.deadline() {
            Some(d) if d <= now_ms => None,
            _ => Some(row),
        }
    }

    /// Number of keys with a live type (expired-but-not-deleted ones
    /// included, as Redis counts; key-less rows left out).
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Number of keys with a deadline (key-less rows left out).
    pub fn keys_expiring(&self) -> usize {
        self.keys_expiring
    }

    /// True when `key` has a row but no key: a key-less row (see [`Db`]).
    /// Asked before every TTL-keeping write, so it looks the key up only
    /// when the database has key-less rows at all (rows outnumber keys).
    pub fn is_keyless(&self, key: &[u8]) -> bool {
        self.rows.len() > self.keys && self.rows.get(key).is_some_and(|r| r.kind().is_none())
    }

    /// No rows at all, not even key-less ones.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Updates the counts for one row changing from `before` to `after`
    /// (see [`counts_of`]; a missing row counts `(false, false)`).
    fn recount(&mut self, before: (bool, bool), after: (bool, bool)) {
        self.keys = (self.keys + after.0 as usize).saturating_sub(before.0 as usize);
        self.keys_expiring =
            (self.keys_expiring + after.1 as usize).saturating_sub(before.1 as usize);
        debug_assert!(self.keys <= self.rows.len());
        debug_assert!(self.keys_expiring <= self.keys.min(self.expires.len()));
    }
}

/// Counters kept while applying ops.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyspaceStats {
    pub type_conflicts: u64,
    /// List elements popped at two sites (or popped here and removed
    /// concurrently elsewhere): see docs/semantics.md, "Lists".
    pub list_pop_conflicts: u64,
}

pub struct Keyspace {
    pub dbs: Vec<Db>,
    /// Rows changed since the last checkpoint (see [`Dirty`]).
    pub dirty: Dirty,
    pub stats: KeyspaceStats,
    /// The checkpoint being captured, if any (see [`Keyspace::begin_capture`]).
    capture: Option<Capture>,
    /// The touch index changes are stamped with now (see [`digest`]): the
    /// engine moves it on after every op and merge.
    pub(crate) touch_seq: u64,
    /// Ops applied now fold counters at once ([`crate::crdt::Ctx::fold`]):
    /// set by the engine while the site is alone.
    pub fold: bool,
    /// Counters incremented while `fold` is off, to fold once the
    /// stability frontier covers their increments ([`Keyspace::fold_queued`]).
    /// One entry per counter (key, and field or member), so it holds at
    /// most as many as the keyspace has counters.
    pub fold_queue: FoldQueue,
}

/// Counters waiting to be folded: `(db, key, which counter of the row)`.
pub type FoldQueue = indexmap::IndexSet<(u8, Bytes, row::FoldPart), value::Hasher>;

/// A checkpoint captured a slice at a time, copy-on-write: every row that
/// was dirty when it began is *pending* (a bit in its table); a pending row
/// is encoded either by [`Keyspace::capture_step`] or, first, just before
/// anything changes it. Either way the image is the row as it was when the
/// checkpoint began, so the rows and the vector recorded then agree, while
/// the engine lock is held only for short slices.
struct Capture {
    /// The slots that were pending when the capture began.
    slots: Vec<(u8, u32)>,
    /// How far `capture_step` has walked `slots`.
    cursor: usize,
    /// Images taken so far, and the keys that were gone when it began.
    rows: Vec<CheckpointRow>,
    /// Large rows, copied as they were: encoding one (a set of 100,000
    /// members) takes 100 ms or more, so it is done off the lock.
    copied: Vec<CopiedRow>,
}

/// A row a capture copied instead of encoding (see [`Capture`]).
pub struct CopiedRow {
    pub db: u8,
    pub key: Vec<u8>,
    pub row: Row,
}

impl CopiedRow {
    /// Encodes the copy into a checkpoint row (slow for large rows: call it
    /// without the engine lock).
    pub fn encode(self) -> CheckpointRow {
        capture_image(self.db, &self.key, &self.row)
    }
}

/// Rows with more elements than this are copied by a capture, not encoded.
const CAPTURE_COPY_ELEMENTS: usize = 256;

/// What changed since the last checkpoint, kept without a second hash table:
/// a changed row has its slot's dirty bit set in its database's [`KeyTable`]
/// and its `(db, slot)` listed once per time the bit went from clear to set;
/// a removed row has its key listed. A slot may be listed twice (its row was
/// removed and the slot reused) and a removed key may exist again by now: the
/// checkpoint reads the bits and the live table, so both are harmless.
///
/// A database flushed whole has its bit in `cleared` instead of a key per
/// removed row: the checkpoint deletes the database's rows first
/// ([`CheckpointRow::clear_db`]), then writes the rows listed after the flush.
#[derive(Default)]
pub struct Dirty {
    pub slots: Vec<(u8, u32)>,
    pub removed: Vec<(u8, Bytes)>,
    pub cleared: u32,
}

impl Dirty {
    /// An upper bound of the rows the next checkpoint writes.
    pub fn len(&self) -> usize {
        self.slots.len() + self.removed.len() + self.cleared.count_ones() as usize
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.removed.is_empty() && self.cleared == 0
    }

    /// The clears of the databases flushed whole, in database order.
    fn clears(&self) -> impl Iterator<Item = CheckpointRow> + '_ {
        (0..ALL_DBS as u8)
            .filter(|d| self.cleared & (1 << d) != 0)
            .map(CheckpointRow::clear_db)
    }
}

/// One changed row as the checkpoint sees it: its current state, or `None`
/// when the key is gone.
pub struct DirtyRow<'a> {
    pub db: u8,
    pub key: &'a [u8],
    pub row: Option<&'a Row>,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace {
            dbs: (0..ALL_DBS).map(|_| Db::default()).collect(),
            dirty: Dirty::default(),
            stats: KeyspaceStats::default(),
            capture: None,
            touch_seq: 1,
            fold: false,
            fold_queue: FoldQueue::with_hasher(value::hasher()),
        }
    }
}

impl Keyspace {
    pub fn db(&self, db: u8) -> &Db {
        &self.dbs[db as usize % ALL_DBS]
    }

    /// Applies every effect of an op (remote ops, recovery replay);
    /// `applied` is the vector of every op applied before it.
    pub fn apply_op(&mut self, op: &Op, applied: &VersionVector) {
        let ctx = Ctx {
            deps: &op.deps,
            own: op.id,
            hlc: op.hlc,
            fold: self.fold,
        };
        for e in &op.effects {
            self.apply_effect(e.db, &e.key, &e.effect, &ctx, applied);
        }
    }

    /// Applies one effect: the single place where rows change. Returns true
    /// when the row is left without a type but with expiry entries (a
    /// key-less row: see [`Db`]), so that a local write can delete it.
    /// `applied` is the vector of the ops applied before this one (a flush
    /// that saw all of them removes every row without looking at them).
    pub fn apply_effect(
        &mut self,
        db: u8,
        key: &Bytes,
        effect: &Effect,
        ctx: &Ctx<'_>,
        applied: &VersionVector,
    ) -> bool {
        match effect {
            Effect::FlushDb => {
                self.flush_db(db, ctx, applied);
                return false;
            }
            Effect::FlushAll => {
                if self.capture.is_some() {
                    self.capture_pending(None, usize::MAX);
                }
                for d in 0..DBS as u8 {
                    self.flush_db(d, ctx, applied);
                }
                return false;
            }
            _ => {}
        }
        let pos = self.dbs[db as usize % ALL_DBS]
            .rows
            .position_or_insert_with(key, Row::default);
        if self.capture.is_some() {
            self.capture_slot(db, pos);
        }
        let d = &mut self.dbs[db as usize % ALL_DBS];
        if d.rows.mark_dirty(pos) {
            self.dirty.slots.push((db, pos));
        }
        d.digest.touch(leaf_of(key), self.touch_seq);
        let row = d.rows.at_mut(pos);
        d.digest.mark_stale(pos, row);
        let before = row.deadline();
        let counted_before = counts_of(row, before);
        let note = row.apply(effect, ctx);
        if !self.fold {
            if let Some(part) = row::FoldPart::of(effect) {
                queue_fold(&mut self.fold_queue, db, key, part);
            }
        }
        let after = row.deadline();
        let counted_after = counts_of(row, after);
        let empty = row.is_empty();
        if before != after {
            // The index shares the table's copy of the key.
            let stored = d.rows.key_at(pos).clone();
            if let Some(b) = before {
                d.expires.remove(&(b, stored.clone()));
            }
            if let Some(a) = after {
                d.expires.insert((a, stored));
            }
        }
        if empty {
            if let Some((k, old)) = d.rows.remove(key) {
                d.digest.uncount(&k, &old);
                self.dirty.removed.push((db, k));
            }
        }
        d.recount(counted_before, counted_after);
        if note.type_conflict {
            self.stats.type_conflicts += 1;
        }
        if note.pop_conflicts > 0 {
            let before = self.stats.list_pop_conflicts;
            self.stats.list_pop_conflicts += u64::from(note.pop_conflicts);
            // Logged when the total reaches a new power of two: every key
            // of the first conflicts, then ever fewer lines, so a queue
            // popped at two sites all day does not flood the log (INFO
            // `list_pop_conflicts` has the exact count).
            let total = self.stats.list_pop_conflicts;
            if before == 0 || total.ilog2() > before.ilog2() {
                tracing::warn!(
                    db,
                    key = %String::from_utf8_lossy(key),
                    elements = note.pop_conflicts,
                    total,
                    "list pop conflict: a pop named elements already popped or removed here by a concurrent op (logged at each power of two of the total)"
                );
            }
        }
        self.bound_stale(db);
        !empty && !counted_after.0
    }

    /// Folds up to `budget` queued counters up to `stable` (every op it
    /// covers is causally stable: see [`crate::stability`]). A counter that
    /// still holds entries newer than `stable` stays queued. Returns the
    /// number of counters folded.
    pub fn fold_queued(&mut self, stable: &VersionVector, budget: usize) -> usize {
        let mut keep = Vec::new();
        let mut folded = 0;
        for _ in 0..budget {
            let Some((db, key, part)) = self.fold_queue.pop() else {
                break;
            };
            let Some(pos) = self.dbs[db as usize % ALL_DBS].rows.position(&key) else {
                continue;
            };
            // Folding keeps the value and the digest as they are; the row
            // is written again by the next checkpoint (copy-on-write while
            // one is being captured).
            if self.capture.is_some() {
                self.capture_slot(db, pos);
            }
            let d = &mut self.dbs[db as usize % ALL_DBS];
            let (changed, more) = d.rows.at_mut(pos).fold_to(&part, stable);
            if changed {
                folded += 1;
                if d.rows.mark_dirty(pos) {
                    self.dirty.slots.push((db, pos));
                }
            }
            if more {
                keep.push((db, key, part));
            }
        }
        self.fold_queue.extend(keep);
        folded
    }

    fn flush_db(&mut self, db: u8, ctx: &Ctx<'_>, applied: &VersionVector) {
        if self.capture.is_some() {
            self.capture_pending(Some(db), usize::MAX);
        }
        // Every entry of every row comes from an applied op. A flush whose
        // origin had seen all of them (every local flush, and a remote one
        // that is concurrent with no write here) removes every row: the
        // tables are swapped for empty ones in O(1) and freed off the lock.
        if applied.iter().all(|(o, q)| ctx.covers(OpId::new(o, q))) {
            self.flush_db_whole(db, ctx);
            return;
        }
        let d = &mut self.dbs[db as usize % ALL_DBS];
        let mut changed: Vec<Bytes> = Vec::new();
        let removed = d.rows.retain(|k, row| {
            row.prune_all(ctx, false);
            if !row.is_empty() {
                changed.push(k.clone());
            }
            !row.is_empty()
        });
        if !d.rows.is_empty() || !removed.is_empty() {
            d.digest.touch_all(self.touch_seq);
        }
        for (k, old) in &removed {
            d.digest.uncount(k, old);
        }
        for k in changed {
            let pos = d.rows.position_or_insert_with(&k, Row::default);
            if d.rows.mark_dirty(pos) {
                self.dirty.slots.push((db, pos));
            }
            d.digest.mark_stale(pos, d.rows.at_mut(pos));
        }
        self.dirty
            .removed
            .extend(removed.into_iter().map(|(k, _)| (db, k)));
        let rows = &d.rows;
        d.expires
            .retain(|(_, k)| rows.get(k).is_some_and(|r| r.deadline().is_some()));
        // Rows that survive keep their (possibly changed) deadlines indexed,
        // and are counted again.
        let mut idx = BTreeSet::new();
        let (mut keys, mut keys_expiring) = (0, 0);
        for (k, r) in d.rows.iter() {
            let deadline = r.deadline();
            if let Some(dl) = deadline {
                idx.insert((dl, k.clone()));
            }
            let (key, expiring) = counts_of(r, deadline);
            keys += key as usize;
            keys_expiring += expiring as usize;
        }
        d.expires = idx;
        d.keys = keys;
        d.keys_expiring = keys_expiring;
    }

    /// FLUSHDB of a database whose every entry the flush saw: see
    /// [`Keyspace::flush_db`].
    fn flush_db_whole(&mut self, db: u8, ctx: &Ctx<'_>) {
        let d = &mut self.dbs[db as usize % ALL_DBS];
        if d.rows.is_empty() && d.expires.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut d.rows);
        let expires = std::mem::take(&mut d.expires);
        d.digest = DbDigest::default();
        d.digest.touch_all(self.touch_seq);
        d.keys = 0;
        d.keys_expiring = 0;
        // Listed slots point into the old table; the checkpoint clears the
        // database instead of deleting its keys one by one.
        self.dirty.slots.retain(|(d, _)| *d != db);
        self.dirty.removed.retain(|(d, _)| *d != db);
        self.dirty.cleared |= 1 << (db as usize % ALL_DBS);
        #[cfg(debug_assertions)]
        for (k, row) in rows.iter() {
            let mut row = row.clone();
            row.prune_all(ctx, false);
            debug_assert!(row.is_empty(), "flush saw every op but {k:?} keeps entries");
        }
        let _ = ctx;
        free_off_thread(rows, expires);
    }

    /// Replaces (or removes) a whole row: checkpoint load and snapshot merge.
    pub fn put_row(&mut self, db: u8, key: Bytes, row: Row) {
        if self.capture.is_some() {
            if let Some(pos) = self.dbs[db as usize % ALL_DBS].rows.position(&key) {
                self.capture_slot(db, pos);
            }
        }
        let d = &mut self.dbs[db as usize % ALL_DBS];
        d.digest.touch(leaf_of(&key), self.touch_seq);
        let counted_before = match d.rows.get(&key) {
            Some(old) => {
                let deadline = old.deadline();
                if let Some(b) = deadline {
                    d.expires.remove(&(b, key.clone()));
                }
                d.digest.uncount(&key, old);
                counts_of(old, deadline)
            }
            None => (false, false),
        };
        let counted_after = if row.is_empty() {
            (false, false)
        } else {
            counts_of(&row, row.deadline())
        };
        if row.is_empty() {
            if let Some((k, _)) = d.rows.remove(&key) {
                self.dirty.removed.push((db, k));
            }
        } else {
            if let Some(a) = row.deadline() {
                d.expires.insert((a, key.clone()));
            }
            let pos = d.rows.position_or_insert_with(&key, Row::default);
            let slot = d.rows.at_mut(pos);
            *slot = row;
            // The old row's hash is out of its leaf already.
            slot.digest = 0;
            d.digest.mark_stale(pos, slot);
            if d.rows.mark_dirty(pos) {
                self.dirty.slots.push((db, pos));
            }
        }
        d.recount(counted_before, counted_after);
        self.bound_stale(db);
    }

    /// Begins capturing a checkpoint of the rows changed so far (see
    /// [`Capture`]): cheap, one bit move per changed row. The keyspace is
    /// clean afterwards; later changes are dirty for the next checkpoint.
    /// A capture still in progress is completed first.
    pub fn begin_capture(&mut self) {
        if self.capture.is_some() {
            debug_assert!(false, "a capture began while another was in progress");
            self.capture_pending(None, usize::MAX);
        }
        let dirty = std::mem::take(&mut self.dirty);
        let clears: Vec<CheckpointRow> = dirty.clears().collect();
        let mut slots = Vec::with_capacity(dirty.slots.len());
        for (db, pos) in dirty.slots {
            if self.dbs[db as usize % ALL_DBS].rows.dirty_to_pending(pos) {
                slots.push((db, pos));
            }
        }
        // A removed key that exists again has a pending slot of its own; a
        // key removed twice is listed twice.
        let mut gone: Vec<(u8, Bytes)> = dirty
            .removed
            .into_iter()
            .filter(|(db, k)| self.db(*db).rows.get(k).is_none())
            .collect();
        gone.sort_unstable();
        gone.dedup();
        let mut rows: Vec<CheckpointRow> = Vec::with_capacity(slots.len() + gone.len());
        rows.extend(clears);
        rows.extend(gone.into_iter().map(|(db, key)| CheckpointRow {
            db,
            key: key.to_vec(),
            state: None,
        }));
        self.capture = Some(Capture {
            slots,
            cursor: 0,
            rows,
            copied: Vec::new(),
        });
    }

    /// True while a capture is in progress.
    pub fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Captures up to `budget` more pending rows; true when none is left.
    pub fn capture_step(&mut self, budget: usize) -> bool {
        self.capture_pending(None, budget)
    }

    /// Ends the capture: every row as it was when it began, encoded or (the
    /// large ones) copied, in no order; no key twice. Completes it first if
    /// needed.
    pub fn finish_capture(&mut self) -> (Vec<CheckpointRow>, Vec<CopiedRow>) {
        self.capture_pending(None, usize::MAX);
        self.capture
            .take()
            .map(|c| (c.rows, c.copied))
            .unwrap_or_default()
    }

    /// Walks the pending slots (of one database, or all) from the cursor,
    /// capturing up to `budget` rows; true when the walk reached the end.
    fn capture_pending(&mut self, only_db: Option<u8>, budget: usize) -> bool {
        let Some(mut c) = self.capture.take() else {
            return true;
        };
        let mut left = budget;
        // Slots captured early (before a write) are skipped cheaply, but a
        // slice walks at most 8 × `budget` of them.
        let mut walk = budget.saturating_mul(8);
        let mut i = if only_db.is_some() { 0 } else { c.cursor };
        while i < c.slots.len() && left > 0 && walk > 0 {
            walk -= 1;
            let (db, pos) = c.slots[i];
            i += 1;
            if only_db.is_some_and(|only| only != db) {
                continue;
            }
            if let Some((k, row)) = self.dbs[db as usize % ALL_DBS].rows.take_pending(pos) {
                c.take(db, k, row);
                left -= 1;
            }
        }
        let done = i >= c.slots.len();
        if only_db.is_none() {
            c.cursor = i;
        }
        self.capture = Some(c);
        done
    }

    /// Captures the row at `pos` if it is still pending (before it changes).
    fn capture_slot(&mut self, db: u8, pos: u32) {
        if let Some(c) = self.capture.as_mut() {
            if let Some((k, row)) = self.dbs[db as usize % ALL_DBS].rows.take_pending(pos) {
                c.take(db, k, row);
            }
        }
    }

    /// Forgets every change (rows just loaded from a checkpoint are clean).
    pub fn clear_dirty(&mut self) {
        self.dirty = Dirty::default();
        for d in &mut self.dbs {
            d.rows.clear_dirty();
        }
    }

    /// Takes the change set for a checkpoint: every changed row once, in
    /// `(db, key)` order (sorted keys make the B-tree writes sequential), each
    /// with its current state or `None` when it is gone. Leaves the keyspace clean.
    /// Databases flushed whole come first, as clears.
    pub fn take_dirty(
        &mut self,
        mut encode: impl FnMut(DirtyRow<'_>) -> CheckpointRow,
    ) -> Vec<CheckpointRow> {
        let dirty = std::mem::take(&mut self.dirty);
        let clears: Vec<CheckpointRow> = dirty.clears().collect();
        let mut present: Vec<(u8, Bytes)> = Vec::with_capacity(dirty.slots.len());
        for (db, pos) in dirty.slots {
            if let Some((k, _)) = self.dbs[db as usize % ALL_DBS].rows.take_dirty(pos) {
                present.push((db, k.clone()));
            }
        }
        // A removed key that exists again is in `present` (its new slot was marked).
        let mut gone: Vec<(u8, Bytes)> = dirty
            .removed
            .into_iter()
            .filter(|(db, k)| self.db(*db).rows.get(k).is_none())
            .collect();
        gone.sort_unstable();
        gone.dedup();
        let mut all: Vec<(u8, Bytes, bool)> = present
            .into_iter()
            .map(|(d, k)| (d, k, true))
            .chain(gone.into_iter().map(|(d, k)| (d, k, false)))
            .collect();
        all.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let rows = all.iter().map(|(db, key, live)| {
            let row = if *live {
                self.db(*db).rows.get(key)
            } else {
                None
            };
            encode(DirtyRow { db: *db, key, row })
        });
        clears.into_iter().chain(rows).collect()
    }

    /// Brings stale rows of `db` up to date in its leaves while `left`
    /// (elements, one more per row) lasts, taking what it spends from it;
    /// true when none is left.
    pub fn digest_refresh(&mut self, db: u8, left: &mut usize) -> bool {
        let d = &mut self.dbs[db as usize % ALL_DBS];
        while *left > 0 {
            let Some(pos) = d.digest.stale.pop() else {
                return true;
            };
            if let Some((key, row)) = d.rows.entry_at_mut(pos) {
                *left = left.saturating_sub(row.elements() + 1);
                d.digest.refresh_row(key, row);
            }
        }
        d.digest.stale.is_empty()
    }

    /// The leaf digests of `db` as they are now, stale rows hashed on the
    /// side (nothing is changed): `DIGEST_LEAVES` values, or none for a
    /// database that never held a row.
    pub fn leaf_digests_now(&self, db: u8) -> Vec<u64> {
        let d = self.db(db);
        let mut leaves = d.digest.leaves().to_vec();
        let mut stale: Vec<u32> = d.digest.stale.clone();
        stale.sort_unstable();
        stale.dedup();
        for pos in stale {
            if let Some((key, row)) = d.rows.entry_at(pos) {
                if row.digest & digest::STALE != 0 {
                    if let Some(l) = leaves.get_mut(leaf_of(key)) {
                        *l ^= digest::counted(row) ^ digest::row_hash(key, row);
                    }
                }
            }
        }
        leaves
    }

    /// Keeps the stale list of `db` within twice its rows (slots freed and
    /// reused are listed again): drops entries whose row is not stale.
    fn bound_stale(&mut self, db: u8) {
        let d = &mut self.dbs[db as usize % ALL_DBS];
        if d.digest.stale.len() <= 2 * d.rows.len() + 1024 {
            return;
        }
        let rows = &d.rows;
        let mut stale = std::mem::take(&mut d.digest.stale);
        stale.sort_unstable();
        stale.dedup();
        stale.retain(|&p| {
            rows.entry_at(p)
                .is_some_and(|(_, r)| r.digest & digest::STALE != 0)
        });
        d.digest.stale = stale;
    }

    /// Digest of the whole dataset (all databases), equal on sites holding
    /// the same rows: BLAKE3 over each non-empty database's leaves.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for db in 0..ALL_DBS as u8 {
            if self.db(db).is_empty() {
                continue;
            }
            h.update(&[db]);
            for l in self.leaf_digests_now(db) {
                h.update(&l.to_le_bytes());
            }
        }
        *h.finalize().as_bytes()
    }
}

impl Capture {
    /// Takes a pending row's image: encoded now, or copied when large.
    fn take(&mut self, db: u8, key: &Bytes, row: &Row) {
        if row.elements() > CAPTURE_COPY_ELEMENTS {
            self.copied.push(CopiedRow {
                db,
                key: key.to_vec(),
                row: row.clone(),
            });
        } else {
            self.rows.push(capture_image(db, key, row));
        }
    }
}

fn capture_image(db: u8, key: &[u8], row: &Row) -> CheckpointRow {
    CheckpointRow {
        db,
        key: key.to_vec(),
        state: Some(image::RowImage::of(row).encode_sealed(db, key)),
    }
}

/// Rows a whole-database flush dropped: big tables are freed on a thread
/// of their own (freeing 1,000,000 rows takes hundreds of milliseconds),
/// small ones here.
fn free_off_thread(rows: KeyTable<Row>, expires: BTreeSet<(u64, Bytes)>) {
    const FREE_INLINE_ROWS: usize = 4096;
    if rows.len() <= FREE_INLINE_ROWS {
        return;
    }
    // If no thread can be started, the closure (and the rows) drop here.
    let _ = std::thread::Builder::new()
        .name("chorus-free".into())
        .spawn(move || drop((rows, expires)));
}

/// Sorts checkpoint rows by `(db, key)`: sorted keys make the B-tree writes
/// sequential.
pub fn sort_checkpoint_rows(rows: &mut [CheckpointRow]) {
    rows.sort_unstable_by(|a, b| (a.db, &a.key).cmp(&(b.db, &b.key)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::id::Origin;

    fn apply(ks: &mut Keyspace, seq: u64, key: &str, effect: Effect) {
        let deps = VersionVector::new();
        let ctx = Ctx {
            deps: &deps,
            own: OpId::new(Origin::new(1, 0), seq),
            hlc: Hlc::new(1_000 + seq, 0),
            fold: false,
        };
        let applied = VersionVector::new();
        ks.apply_effect(0, &Bytes::from(key.to_string()), &effect, &ctx, &applied);
    }

    fn set(value: &str) -> Effect {
        Effect::SetString {
            value: Bytes::from(value.to_string()),
            keep_ttl: false,
        }
    }

    /// `(key, live)` of what a checkpoint would write.
    fn take(ks: &mut Keyspace) -> Vec<(String, bool)> {
        ks.take_dirty(|d| CheckpointRow {
            db: d.db,
            key: d.key.to_vec(),
            state: d.row.map(|_| Vec::new()),
        })
        .into_iter()
        .map(|r| match r.cleared_db() {
            Some(db) => (format!("<clear {db}>"), false),
            None => (
                String::from_utf8_lossy(&r.key).into_owned(),
                r.state.is_some(),
            ),
        })
        .collect()
    }

    #[test]
    fn dirty_set_lists_each_changed_row_once_in_key_order() {
        let mut ks = Keyspace::default();
        apply(&mut ks, 1, "b", set("1"));
        apply(&mut ks, 2, "a", set("1"));
        apply(&mut ks, 3, "b", set("2"));
        assert_eq!(take(&mut ks), vec![("a".into(), true), ("b".into(), true)]);
        assert!(ks.dirty.is_empty());
        assert!(
            take(&mut ks).is_empty(),
            "a checkpoint leaves the keyspace clean"
        );
    }

    #[test]
    fn a_capture_holds_rows_as_they_were_and_each_key_once() {
        let mut ks = Keyspace::default();
        apply(&mut ks, 1, "a", set("1"));
        apply(&mut ks, 2, "b", set("1"));
        let _ = take(&mut ks);
        // "a" removed, written again, removed again: one delete row.
        apply(&mut ks, 3, "a", Effect::Del);
        apply(&mut ks, 4, "a", set("2"));
        apply(&mut ks, 5, "a", Effect::Del);
        apply(&mut ks, 6, "b", set("2"));
        ks.begin_capture();
        assert!(ks.dirty.is_empty());
        // Changes after the begin stay out of this checkpoint.
        apply(&mut ks, 7, "b", set("3"));
        apply(&mut ks, 8, "a", set("4"));
        let (mut rows, copied) = ks.finish_capture();
        assert!(copied.is_empty());
        sort_checkpoint_rows(&mut rows);
        let keys: Vec<(&[u8], bool)> = rows
            .iter()
            .map(|r| (r.key.as_slice(), r.state.is_some()))
            .collect();
        assert_eq!(keys, vec![(&b"a"[..], false), (&b"b"[..], true)]);
        let b = image::RowImage::decode_sealed(0, b"b", rows[1].state.as_deref().unwrap())
            .unwrap()
            .into_row();
        assert_eq!(b.string_value(), Some(Bytes::from("2")));
        // ...and are dirty for the next one.
        assert_eq!(take(&mut ks), vec![("a".into(), true), ("b".into(), true)]);
    }

    #[test]
    fn dirty_set_survives_removal_slot_reuse_and_recreation() {
        let mut ks = Keyspace::default();
        apply(&mut ks, 1, "a", set("1"));
        apply(&mut ks, 2, "b", set("1"));
        let _ = take(&mut ks);
        // "a" deleted, its slot reused by "c"; "b" deleted and written again.
        apply(&mut ks, 3, "a", Effect::Del);
        apply(&mut ks, 4, "c", set("1"));
        apply(&mut ks, 5, "b", Effect::Del);
        apply(&mut ks, 6, "b", set("2"));
        apply(&mut ks, 7, "b", Effect::Del);
        apply(&mut ks, 8, "b", set("3"));
        assert_eq!(
            take(&mut ks),
            vec![("a".into(), false), ("b".into(), true), ("c".into(), true)]
        );
        // A database flushed whole (the flush saw every op) is cleared,
        // not deleted key by key; a key written after the flush is listed.
        apply(&mut ks, 9, "c", set("1"));
        apply(&mut ks, 10, "", Effect::FlushDb);
        apply(&mut ks, 11, "d", set("1"));
        assert_eq!(
            take(&mut ks),
            vec![("<clear 0>".into(), false), ("d".into(), true)]
        );
        assert!(ks.dirty.is_empty());
    }
}

#[cfg(test)]
mod size_tests {
    /// Memory per key is a target (≤ 2× redis-server): these structs are
    /// paid once per string key; growing them should be a decision.
    #[test]
    fn per_key_structs_stay_small() {
        assert!(std::mem::size_of::<super::value::Cell>() <= 72);
        // 56 bytes of slots (string, hash, set, zset, list, hll, expiry) + 8
        // for the row's digest hash (anti-entropy digests are incremental:
        // docs/decisions.md, "Digests"); the hll slot's 8 bytes are in
        // docs/decisions.md, "HyperLogLog".
        assert!(std::mem::size_of::<super::row::Row>() <= 64);
        assert!(std::mem::size_of::<crate::crdt::Counter>() <= 8);
    }
}

/// Queues a counter for [`Keyspace::fold_queued`], copying the key (and
/// field) only the first time: a key may be a slice of a client's buffer.
fn queue_fold(queue: &mut FoldQueue, db: u8, key: &Bytes, part: row::FoldPart) {
    let probe = (db, key.clone(), part);
    if queue.contains(&probe) {
        return;
    }
    let part = match probe.2 {
        row::FoldPart::String => row::FoldPart::String,
        row::FoldPart::Field(f) => row::FoldPart::Field(Bytes::copy_from_slice(&f)),
        row::FoldPart::Member(m) => row::FoldPart::Member(Bytes::copy_from_slice(&m)),
    };
    queue.insert((db, Bytes::copy_from_slice(key), part));
}
