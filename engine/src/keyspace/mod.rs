//! The keyspace: 16 databases of rows, an expiry index per database, and the
//! set of rows changed since the last checkpoint.
//!
//! Ops are applied here, locally and remotely alike, through [`Keyspace::apply_effect`];
//! reads never touch the disk.

pub mod image;
pub mod row;
pub mod table;
pub mod value;

use crate::crdt::Ctx;
use crate::op::{Effect, Op};
use bytes::Bytes;
use row::Row;
use std::collections::{BTreeSet, HashSet};
use table::KeyTable;

/// Number of logical databases (SELECT 0..15).
pub const DBS: usize = 16;
/// Number of key-hash buckets per database in digests (anti-entropy granularity).
pub const DIGEST_BUCKETS: usize = 256;

#[derive(Default)]
pub struct Db {
    pub rows: KeyTable<Row>,
    /// `(deadline_ms, key)` of every row with a visible deadline.
    pub expires: BTreeSet<(u64, Bytes)>,
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

    /// Number of keys with a live type (expired-but-not-deleted ones included, as Redis counts).
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Counters kept while applying ops.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyspaceStats {
    pub type_conflicts: u64,
}

pub struct Keyspace {
    pub dbs: Vec<Db>,
    /// Rows changed since the last checkpoint (seeded fast hasher: this set
    /// is touched by every write).
    pub dirty: HashSet<(u8, Bytes), value::Hasher>,
    pub stats: KeyspaceStats,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace {
            dbs: (0..DBS).map(|_| Db::default()).collect(),
            dirty: HashSet::with_hasher(value::hasher()),
            stats: KeyspaceStats::default(),
        }
    }
}

impl Keyspace {
    pub fn db(&self, db: u8) -> &Db {
        &self.dbs[db as usize % DBS]
    }

    /// Applies every effect of an op (remote ops, recovery replay).
    pub fn apply_op(&mut self, op: &Op) {
        let ctx = Ctx {
            deps: &op.deps,
            own: op.id,
            hlc: op.hlc,
        };
        for e in &op.effects {
            self.apply_effect(e.db, &e.key, &e.effect, &ctx);
        }
    }

    /// Applies one effect: the single place where rows change.
    pub fn apply_effect(&mut self, db: u8, key: &Bytes, effect: &Effect, ctx: &Ctx<'_>) {
        match effect {
            Effect::FlushDb => return self.flush_db(db, ctx),
            Effect::FlushAll => {
                for d in 0..DBS as u8 {
                    self.flush_db(d, ctx);
                }
                return;
            }
            _ => {}
        }
        let d = &mut self.dbs[db as usize % DBS];
        let row = d.rows.get_or_insert_with(key, Row::default);
        let before = row.deadline();
        let note = row.apply(effect, ctx);
        let after = row.deadline();
        let empty = row.is_empty();
        if before != after {
            if let Some(b) = before {
                d.expires.remove(&(b, key.clone()));
            }
            if let Some(a) = after {
                d.expires.insert((a, key.clone()));
            }
        }
        if empty {
            d.rows.remove(key);
        }
        if note.type_conflict {
            self.stats.type_conflicts += 1;
        }
        self.dirty.insert((db, key.clone()));
    }

    fn flush_db(&mut self, db: u8, ctx: &Ctx<'_>) {
        let d = &mut self.dbs[db as usize % DBS];
        let dirty = &mut self.dirty;
        d.rows.retain(|k, row| {
            row.prune_all(ctx, false);
            dirty.insert((db, k.clone()));
            !row.is_empty()
        });
        let rows = &d.rows;
        d.expires
            .retain(|(_, k)| rows.get(k).is_some_and(|r| r.deadline().is_some()));
        // Rows that survive keep their (possibly changed) deadlines indexed.
        let mut idx = BTreeSet::new();
        for (k, r) in d.rows.iter() {
            if let Some(dl) = r.deadline() {
                idx.insert((dl, k.clone()));
            }
        }
        d.expires = idx;
    }

    /// Replaces (or removes) a whole row: checkpoint load and snapshot merge.
    pub fn put_row(&mut self, db: u8, key: Bytes, row: Row) {
        let d = &mut self.dbs[db as usize % DBS];
        if let Some(old) = d.rows.get(&key) {
            if let Some(b) = old.deadline() {
                d.expires.remove(&(b, key.clone()));
            }
        }
        if row.is_empty() {
            d.rows.remove(&key);
        } else {
            if let Some(a) = row.deadline() {
                d.expires.insert((a, key.clone()));
            }
            *d.rows.get_or_insert_with(&key, Row::default) = row;
        }
        self.dirty.insert((db, key));
    }

    /// BLAKE3 digest of one database: per bucket, the XOR of the hashes of its
    /// rows (key + canonical image); the database digest hashes the buckets in order.
    pub fn bucket_digests(&self, db: u8) -> Vec<[u8; 32]> {
        let mut buckets = vec![[0u8; 32]; DIGEST_BUCKETS];
        for (k, row) in self.db(db).rows.iter() {
            let img = image::RowImage::of(row).encode();
            let mut h = blake3::Hasher::new();
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k);
            h.update(&img);
            let hash = h.finalize();
            let b = bucket_of(k);
            if let Some(slot) = buckets.get_mut(b) {
                for (x, y) in slot.iter_mut().zip(hash.as_bytes()) {
                    *x ^= y;
                }
            }
        }
        buckets
    }

    /// Digest of the whole dataset (all databases), equal on sites holding the same ops.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for db in 0..DBS as u8 {
            if self.db(db).is_empty() {
                continue;
            }
            h.update(&[db]);
            for b in self.bucket_digests(db) {
                h.update(&b);
            }
        }
        *h.finalize().as_bytes()
    }
}

/// The digest bucket of a key (stable across sites and versions).
pub fn bucket_of(key: &[u8]) -> usize {
    let h = blake3::hash(key);
    let b = h.as_bytes();
    (u16::from_le_bytes([b[0], b[1]]) as usize) % DIGEST_BUCKETS
}
