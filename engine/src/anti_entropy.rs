//! Anti-entropy support: incremental leaf digests compared at a common
//! vector, and a repair that joins rows without deleting anything.
//!
//! Two sites compare what both have seen: a *cut*, a version vector both
//! hold (the asker takes the meet of its own and what the peer confirmed).
//! A leaf (see [`crate::keyspace::digest`]) is *settled* at a site for a cut
//! when every op the site applied that changed the leaf is in the cut: then
//! the leaf holds exactly what the cut's ops made of it, at either site, and
//! two sites where it is settled must hold the same rows there. Leaves
//! changed by newer ops are left for a later round, so comparisons go on
//! under constant writes at both sites.
//!
//! A leaf that differs anyway was lost or damaged at one site (a restored
//! disk, a bit flip, a bug). It is repaired by [`union_rows`]: every entry
//! either side holds is kept, the same dot with two payloads is decided by
//! one rule at both sites, and an entry no op of the cut wrote is dropped.
//!
//! Invariants: a repair adds no op and never changes the version vector;
//! only rows of settled leaves of the named database are touched; repaired
//! rows are dirty, so the next checkpoint makes them durable.
//!
//! [`union_rows`]: crate::keyspace::image::union_rows

use crate::engine::{Change, ChangeSource, Engine, KeyEvent};
use crate::id::VersionVector;
use crate::keyspace::image::{join_rows, union_rows, RowImage};
use crate::keyspace::row::Row;
use crate::keyspace::{leaf_of, ALL_DBS, DIGEST_LEAVES};
use bytes::Bytes;
use std::collections::BTreeMap;
use thiserror::Error;

/// Elements of changed rows hashed per question for a digest: a larger
/// backlog of stale rows is worked off over several calls (and between
/// rounds by [`Engine::digest_refresh_step`]), so one call holds the engine
/// for a few milliseconds at most.
pub const DIGEST_REFRESH_BUDGET: usize = 1 << 13;

/// One database's digest at a cut, as anti-entropy exchanges it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafSummary {
    /// `(leaf, digest)` of every leaf with rows, ascending.
    pub leaves: Vec<(u16, u64)>,
    /// Leaves changed by ops beyond the cut here: not comparable this time.
    pub unsettled: Vec<u16>,
}

impl LeafSummary {
    /// Settled leaves (at both sites) whose digests differ, ascending.
    pub fn differing(&self, theirs: &LeafSummary) -> Vec<u16> {
        let mine: BTreeMap<u16, u64> = self.leaves.iter().copied().collect();
        let other: BTreeMap<u16, u64> = theirs.leaves.iter().copied().collect();
        let mut out: Vec<u16> = mine
            .keys()
            .chain(other.keys())
            .copied()
            .filter(|l| mine.get(l) != other.get(l))
            .filter(|l| {
                self.unsettled.binary_search(l).is_err()
                    && theirs.unsettled.binary_search(l).is_err()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Why no digest could be given for a cut.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SummaryError {
    #[error("database {0} does not exist")]
    Db(u8),
    #[error("this site does not hold every op of the cut")]
    CutNotHeld,
    #[error("rows changed since the last digest are still being hashed")]
    Busy,
}

/// The rows of whole leaves of one database, within a byte budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketRows {
    /// Leaves whose rows are all in `rows`, ascending.
    pub buckets: Vec<u16>,
    /// `(key, RowImage::encode())` of every row of `buckets`.
    pub rows: Vec<(Bytes, Vec<u8>)>,
    /// Leaves left out because they did not fit next to `buckets`.
    pub deferred: Vec<u16>,
    /// Leaves whose rows alone exceed the budget: they cannot be shipped.
    pub too_large: Vec<u16>,
    /// Leaves left out because ops beyond the cut changed them here.
    pub unsettled: Vec<u16>,
}

/// Why a repair was not merged.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RepairError {
    #[error("database {0} does not exist")]
    Db(u8),
    #[error("leaf {0} is out of range")]
    Bucket(u16),
    #[error("this site does not hold every op of the cut")]
    CutNotHeld,
    #[error("row {key:?} does not belong to the leaves being repaired")]
    ForeignRow { key: String },
}

/// What a merge of a peer's rows did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Leaves merged (settled here), ascending.
    pub merged: Vec<u16>,
    /// Leaves skipped: ops beyond the cut changed them here since.
    pub unsettled: Vec<u16>,
    /// Rows of ours that changed.
    pub changed: usize,
}

/// One bit per leaf.
struct LeafSet(Vec<bool>);

impl LeafSet {
    fn of(leaves: &[u16]) -> Result<LeafSet, RepairError> {
        let mut set = vec![false; DIGEST_LEAVES];
        for &l in leaves {
            match set.get_mut(l as usize) {
                Some(slot) => *slot = true,
                None => return Err(RepairError::Bucket(l)),
            }
        }
        Ok(LeafSet(set))
    }
    fn contains_key(&self, key: &[u8]) -> bool {
        self.0.get(leaf_of(key)).copied().unwrap_or(false)
    }
}

impl Engine {
    /// Hashes up to `budget` elements of rows changed since they were last
    /// hashed, across the databases: a server calls it between rounds so a
    /// round's question finds little left. True when nothing is left.
    pub fn digest_refresh_step(&mut self, budget: usize) -> bool {
        let mut left = budget;
        (0..ALL_DBS as u8).all(|db| self.keyspace.digest_refresh(db, &mut left))
    }

    /// True when only ops of `cut` changed leaf `leaf` of `db` here.
    pub fn leaf_settled(&self, db: u8, leaf: u16, cut: &VersionVector) -> bool {
        self.leaf_touched(db, leaf) <= self.settled_through(cut)
    }

    /// The touch index of the last change to a leaf. A leaf not changed
    /// since the start or the last snapshot merge holds what the ops
    /// recovered at the start, or merged, made of it (some of which may be
    /// beyond a peer's cut): it counts as changed by the start or the merge
    /// itself. So does a leaf of a database without leaves yet.
    fn leaf_touched(&self, db: u8, leaf: u16) -> u64 {
        self.keyspace
            .db(db)
            .digest
            .touched()
            .get(leaf as usize)
            .copied()
            .unwrap_or(0)
            .max(self.all_touched_at())
    }

    /// The digest of `db` at `cut`: every leaf's digest, and the leaves
    /// that ops beyond the cut changed. Hashes up to
    /// [`DIGEST_REFRESH_BUDGET`] changed rows first; `Busy` when more are
    /// left (ask again: each call works some off).
    pub fn leaf_summary(
        &mut self,
        db: u8,
        cut: &VersionVector,
    ) -> Result<LeafSummary, SummaryError> {
        if db as usize >= ALL_DBS {
            return Err(SummaryError::Db(db));
        }
        if !self.vv.dominates(cut) {
            return Err(SummaryError::CutNotHeld);
        }
        let mut left = DIGEST_REFRESH_BUDGET;
        if !self.keyspace.digest_refresh(db, &mut left) {
            return Err(SummaryError::Busy);
        }
        self.journal_mark();
        let through = self.settled_through(cut);
        let d = &self.keyspace.db(db).digest;
        let leaves: Vec<(u16, u64)> = d
            .leaves()
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(l, &v)| (l as u16, v))
            .collect();
        // Every leaf, also those of a database whose leaves are not
        // allocated (no row since the start): the start or a snapshot merge
        // may have changed them.
        let unsettled: Vec<u16> = (0..DIGEST_LEAVES as u16)
            .filter(|&l| self.leaf_touched(db, l) > through)
            .collect();
        Ok(LeafSummary { leaves, unsettled })
    }

    /// Every row of the given leaves of `db` that are settled for `cut`,
    /// taking whole leaves in ascending order while the encoded rows stay
    /// within `bytes_max` bytes (key + image) and `rows_max` rows. A leaf
    /// that alone exceeds either bound is reported in `too_large`.
    pub fn bucket_rows(
        &self,
        db: u8,
        leaves: &[u16],
        cut: &VersionVector,
        bytes_max: usize,
        rows_max: usize,
    ) -> BucketRows {
        let mut wanted: Vec<u16> = leaves
            .iter()
            .copied()
            .filter(|&l| (l as usize) < DIGEST_LEAVES)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = BucketRows::default();
        if db as usize >= ALL_DBS || wanted.is_empty() || !self.vv.dominates(cut) {
            return out;
        }
        let through = self.settled_through(cut);
        let (settled, unsettled): (Vec<u16>, Vec<u16>) = wanted
            .into_iter()
            .partition(|&l| self.leaf_touched(db, l) <= through);
        out.unsettled = unsettled;
        let Ok(set) = LeafSet::of(&settled) else {
            return out;
        };
        // One pass over the database: the keys of each wanted leaf.
        let mut keys: BTreeMap<u16, Vec<&Bytes>> = BTreeMap::new();
        for (k, _) in self.keyspace.db(db).rows.iter() {
            if set.contains_key(k) {
                keys.entry(leaf_of(k) as u16).or_default().push(k);
            }
        }
        let mut bytes = 0usize;
        for l in settled {
            let leaf_keys = keys.get(&l).map(Vec::as_slice).unwrap_or_default();
            if leaf_keys.len() > rows_max {
                out.too_large.push(l);
                continue;
            }
            if out.rows.len() + leaf_keys.len() > rows_max {
                out.deferred.push(l);
                continue;
            }
            let mut encoded = Vec::with_capacity(leaf_keys.len());
            let mut leaf_bytes = 0usize;
            for &k in leaf_keys {
                if let Some(row) = self.keyspace.db(db).rows.get(k) {
                    let image = RowImage::of(row).encode();
                    leaf_bytes = leaf_bytes.saturating_add(k.len() + image.len());
                    encoded.push((k.clone(), image));
                }
                if leaf_bytes > bytes_max {
                    break;
                }
            }
            if leaf_bytes > bytes_max {
                out.too_large.push(l);
            } else if bytes + leaf_bytes > bytes_max {
                out.deferred.push(l);
            } else {
                bytes += leaf_bytes;
                out.buckets.push(l);
                out.rows.extend(encoded);
            }
        }
        out
    }

    /// Joins a peer's rows of whole leaves of `db` into this state with
    /// [`union_rows`] at `cut`: the peer took them from leaves settled
    /// there for `cut`, and they are merged into the leaves settled here
    /// (the others are skipped, for a later round). Our own rows of those
    /// leaves that the peer did not send are joined with nothing (which
    /// drops only entries no op of the cut wrote). Returns what changed.
    pub fn merge_bucket_rows(
        &mut self,
        db: u8,
        leaves: &[u16],
        cut: &VersionVector,
        rows: Vec<(Bytes, RowImage)>,
    ) -> Result<RepairOutcome, RepairError> {
        if db as usize >= ALL_DBS {
            return Err(RepairError::Db(db));
        }
        if !self.vv.dominates(cut) {
            return Err(RepairError::CutNotHeld);
        }
        let listed = LeafSet::of(leaves)?;
        if let Some((key, _)) = rows.iter().find(|(k, _)| !listed.contains_key(k)) {
            return Err(RepairError::ForeignRow {
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        let mut out = RepairOutcome::default();
        let mut sorted: Vec<u16> = leaves.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let through = self.settled_through(cut);
        for l in sorted {
            if self.leaf_touched(db, l) <= through {
                out.merged.push(l);
            } else {
                out.unsettled.push(l);
            }
        }
        let set = LeafSet::of(&out.merged)?;
        let mut remote: BTreeMap<Bytes, Row> = BTreeMap::new();
        for (k, image) in rows {
            if set.contains_key(&k) {
                remote.insert(k, image.into_row());
            }
        }
        let ours: Vec<Bytes> = self
            .keyspace
            .db(db)
            .rows
            .iter()
            .filter(|(k, _)| set.contains_key(k) && !remote.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect();
        let empty = Row::default();
        let joins = remote
            .into_iter()
            .chain(ours.into_iter().map(|k| (k, Row::default())));
        for (key, theirs) in joins {
            let local = self.keyspace.db(db).rows.get(&key);
            let local_image = local.map(RowImage::of).unwrap_or_default();
            let local = local.cloned().unwrap_or_default();
            let joined = if self.config.canaries.repair_join_at_vv {
                join_rows(&local, &theirs, cut, cut)
            } else {
                union_rows(
                    &local,
                    if theirs.is_empty() { &empty } else { &theirs },
                    cut,
                )
            };
            if RowImage::of(&joined) != local_image {
                tracing::error!(
                    db,
                    key = %String::from_utf8_lossy(&key),
                    "anti-entropy repaired a row that differed from the peer's at a common vector"
                );
                self.note_change(Change::Key {
                    db,
                    key: key.clone(),
                    source: ChangeSource::Merge,
                    event: KeyEvent::Restore,
                });
                self.keyspace.put_row(db, key, joined);
                out.changed += 1;
            }
        }
        if out.changed > 0 {
            self.op_completed();
        }
        self.publish_changes();
        debug_assert!(self.invariants_hold());
        Ok(out)
    }

    /// Replaces a row without an op: the change is neither logged nor
    /// replicated, so this site diverges from its peers. Only for tests of
    /// anti-entropy and for the simulator's faults; the server never calls it.
    pub fn put_row_unlogged(&mut self, db: u8, key: Bytes, image: RowImage) {
        self.note_change(Change::Key {
            db: db % ALL_DBS as u8,
            key: key.clone(),
            source: ChangeSource::Merge,
            event: KeyEvent::Restore,
        });
        self.keyspace
            .put_row(db % ALL_DBS as u8, key, image.into_row());
        self.op_completed();
        self.publish_changes();
    }

    /// Changes the backlog bound (`repl-backlog-size`); a smaller bound takes
    /// effect at the next append.
    pub fn set_backlog_bytes_max(&mut self, bytes: usize) {
        self.config.backlog_bytes_max = bytes.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use crate::{EngineConfig, Reply};

    fn engine(site: u16) -> Engine {
        Engine::open(Box::new(MemoryStorage::new()), EngineConfig::new(site)).unwrap()
    }

    fn run(e: &mut Engine, args: &[&str]) -> Reply {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        e.execute(0, &args, 1_000)
    }

    /// Sends everything `from` has that `to` lacks.
    fn ship(from: &mut Engine, to: &mut Engine) {
        let ops = from.ops_since(to.vv(), usize::MAX).unwrap();
        to.apply_remote(ops);
    }

    fn image(e: &Engine, key: &str) -> RowImage {
        e.keyspace()
            .db(0)
            .rows
            .get(key.as_bytes())
            .map(RowImage::of)
            .unwrap_or_default()
    }

    /// Two sites that both applied the same writes to keys k0..k199 (one
    /// hash, one set, one counter and strings).
    fn pair() -> (Engine, Engine) {
        let mut a = engine(1);
        let mut b = engine(2);
        for i in 0..100 {
            run(&mut a, &["SET", &format!("k{i}"), "a"]);
            run(&mut b, &["SET", &format!("k{}", i + 100), "b"]);
        }
        run(&mut a, &["HSET", "h", "f1", "1", "f2", "2"]);
        run(&mut b, &["SADD", "s", "x", "y", "z"]);
        run(&mut a, &["INCRBY", "n", "5"]);
        run(&mut b, &["INCRBY", "n", "7"]);
        ship(&mut a, &mut b);
        ship(&mut b, &mut a);
        assert_eq!(a.vv(), b.vv());
        assert_eq!(a.digest_hex(), b.digest_hex());
        (a, b)
    }

    /// One anti-entropy exchange for `db` 0 at the common cut, as the
    /// session runs it: compare, rows from `a`, the join at `b`, `b`'s rows
    /// back, the join at `a`. Returns the leaves that differed.
    fn repair(a: &mut Engine, b: &mut Engine) -> Vec<u16> {
        let cut = a.vv().meet(b.vv());
        let sa = a.leaf_summary(0, &cut).unwrap();
        let sb = b.leaf_summary(0, &cut).unwrap();
        let differing = sa.differing(&sb);
        if differing.is_empty() {
            return differing;
        }
        let from_a = decoded(a.bucket_rows(0, &differing, &cut, usize::MAX, usize::MAX));
        let merged = b.merge_bucket_rows(0, &differing, &cut, from_a).unwrap();
        let from_b = decoded(b.bucket_rows(0, &merged.merged, &cut, usize::MAX, usize::MAX));
        a.merge_bucket_rows(0, &merged.merged, &cut, from_b)
            .unwrap();
        differing
    }

    fn decoded(rows: BucketRows) -> Vec<(Bytes, RowImage)> {
        rows.rows
            .into_iter()
            .map(|(k, img)| (k, RowImage::decode(&img).unwrap()))
            .collect()
    }

    #[test]
    fn a_row_deleted_behind_the_engine_is_restored_without_loss() {
        let (mut a, mut b) = pair();
        let before = (image(&a, "h"), image(&a, "k7"));
        b.put_row_unlogged(0, Bytes::from_static(b"h"), RowImage::default());
        b.put_row_unlogged(0, Bytes::from_static(b"k7"), RowImage::default());
        assert_ne!(a.digest_hex(), b.digest_hex());
        let differing = repair(&mut a, &mut b);
        assert!(differing.contains(&(leaf_of(b"h") as u16)));
        assert_eq!(a.digest_hex(), b.digest_hex());
        assert_eq!((image(&a, "h"), image(&a, "k7")), before);
        assert_eq!((image(&b, "h"), image(&b, "k7")), before);
        // A second round finds nothing.
        assert!(repair(&mut a, &mut b).is_empty());
    }

    #[test]
    fn an_altered_row_is_restored_and_an_entry_no_op_wrote_is_dropped() {
        let (mut a, mut b) = pair();
        let original = image(&a, "s");
        // Site 9 wrote nothing either site holds: its dot is a ghost.
        let mut ghost_site = engine(9);
        run(&mut ghost_site, &["SADD", "s", "ghost"]);
        let ghost = image(&ghost_site, "s");
        let mut altered = original.clone();
        altered.set.retain(|(m, _)| m.as_ref() != b"y");
        altered.set.extend(ghost.set);
        altered.set.sort_by(|x, y| x.0.cmp(&y.0));
        b.put_row_unlogged(0, Bytes::from_static(b"s"), altered);
        // The counter loses one site's increment at `a`.
        let mut n = image(&a, "n");
        let string = n.string.as_mut().unwrap();
        string.ctr.retain(|e| e.stamp.dot.origin.site != 2);
        a.put_row_unlogged(0, Bytes::from_static(b"n"), n);
        repair(&mut a, &mut b);
        assert_eq!(image(&a, "s"), original);
        assert_eq!(image(&b, "s"), original);
        assert_eq!(run(&mut a, &["GET", "n"]), Reply::Bulk(Bytes::from("12")));
        assert_eq!(run(&mut b, &["GET", "n"]), Reply::Bulk(Bytes::from("12")));
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn one_dot_with_two_payloads_is_decided_the_same_at_both_sites() {
        let (mut a, mut b) = pair();
        let mut altered = image(&b, "k150");
        altered.string.as_mut().unwrap().reg[0].1 = Bytes::from_static(b"zzz");
        b.put_row_unlogged(0, Bytes::from_static(b"k150"), altered);
        repair(&mut a, &mut b);
        assert_eq!(image(&a, "k150"), image(&b, "k150"));
        // The greater encoding wins: "zzz" over "b".
        assert_eq!(
            run(&mut a, &["GET", "k150"]),
            Reply::Bulk(Bytes::from("zzz"))
        );
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn leaves_changed_beyond_the_cut_wait_for_a_later_round() {
        let (mut a, mut b) = pair();
        let mut damaged = image(&b, "s");
        damaged.set.retain(|(m, _)| m.as_ref() != b"y");
        b.put_row_unlogged(0, Bytes::from_static(b"s"), damaged);
        let cut = a.vv().meet(b.vv());
        // A write at `a` the cut does not hold, to the damaged key.
        run(&mut a, &["SADD", "s", "w"]);
        let sa = a.leaf_summary(0, &cut).unwrap();
        let sb = b.leaf_summary(0, &cut).unwrap();
        let leaf = leaf_of(b"s") as u16;
        assert!(sa.unsettled.contains(&leaf));
        assert!(!sa.differing(&sb).contains(&leaf));
        // Merging into an unsettled leaf is skipped.
        let from_b = decoded(b.bucket_rows(0, &[leaf], &cut, usize::MAX, usize::MAX));
        let out = a.merge_bucket_rows(0, &[leaf], &cut, from_b).unwrap();
        assert_eq!(out.unsettled, vec![leaf]);
        assert_eq!(out.changed, 0);
        // Once `b` holds the write, the next round at the new cut repairs.
        ship(&mut a, &mut b);
        let differing = repair(&mut a, &mut b);
        assert!(differing.contains(&leaf));
        assert_eq!(a.digest_hex(), b.digest_hex());
        assert_eq!(run(&mut b, &["SCARD", "s"]), Reply::Int(4));
    }

    #[test]
    fn a_restarted_site_counts_its_leaves_as_changed_by_what_it_recovered() {
        let (mut a, b) = pair();
        // A delete `b` has not seen, then a restart of `a`: no leaf of `a`
        // is changed since the start, but its rows hold the delete.
        run(&mut a, &["DEL", "k5"]);
        a.sync().unwrap();
        let image = a
            .storage_mut()
            .as_any_mut()
            .downcast_mut::<MemoryStorage>()
            .unwrap()
            .durable_image();
        let mut a = Engine::open(Box::new(image), EngineConfig::new(1)).unwrap();
        let cut = a.vv().meet(b.vv());
        let mut b = b;
        let sa = a.leaf_summary(0, &cut).unwrap();
        let sb = b.leaf_summary(0, &cut).unwrap();
        assert!(sa.unsettled.contains(&(leaf_of(b"k5") as u16)));
        assert!(sa.differing(&sb).is_empty());
        // Once the cut holds what it recovered, it compares again.
        ship(&mut a, &mut b);
        let cut = a.vv().meet(b.vv());
        let sa = a.leaf_summary(0, &cut).unwrap();
        assert!(sa.unsettled.is_empty());
        assert!(sa.differing(&b.leaf_summary(0, &cut).unwrap()).is_empty());
    }

    /// Site 3's snapshot holds a key site 1 wrote and site 3 deleted, and
    /// site 2, which held neither op, merges it: the key is in no row
    /// before or after, so no row change touches its leaf. At a cut that
    /// holds the write but not the delete, site 1's leaf holds the key and
    /// site 2's must count as changed by the merge, not as settled.
    fn created_and_deleted_within_a_snapshot(keep_a_row: bool) -> (Engine, Engine, Engine, u16) {
        let mut a = engine(1);
        let mut b = engine(2);
        let mut c = engine(3);
        run(&mut a, &["SET", "k", "v"]);
        ship(&mut a, &mut c);
        run(&mut c, &["DEL", "k"]);
        if keep_a_row {
            // A row of its own elsewhere: site 2's leaves are allocated.
            run(&mut b, &["SET", "x", "b"]);
            ship(&mut b, &mut a);
            assert_ne!(leaf_of(b"x"), leaf_of(b"k"));
        }
        b.merge_snapshot(c.snapshot());
        assert!(b.vv().dominates(a.vv()));
        assert_eq!(image(&b, "k"), RowImage::default());
        (a, b, c, leaf_of(b"k") as u16)
    }

    #[test]
    fn a_key_a_snapshot_created_and_deleted_leaves_its_leaf_unsettled() {
        for keep_a_row in [true, false] {
            let (mut a, mut b, mut c, leaf) = created_and_deleted_within_a_snapshot(keep_a_row);
            // The cut holds the write, not the delete.
            let cut = a.vv().meet(b.vv());
            assert_eq!(&cut, a.vv());
            let sa = a.leaf_summary(0, &cut).unwrap();
            let sb = b.leaf_summary(0, &cut).unwrap();
            assert!(sa.leaves.iter().any(|(l, _)| *l == leaf));
            assert!(!sa.unsettled.contains(&leaf));
            assert!(sb.unsettled.contains(&leaf), "keep_a_row {keep_a_row}");
            assert!(sa.differing(&sb).is_empty(), "keep_a_row {keep_a_row}");
            // A repair does not bring the deleted key back at site 2.
            let from_a = decoded(a.bucket_rows(0, &[leaf], &cut, usize::MAX, usize::MAX));
            assert!(!from_a.is_empty());
            let out = b.merge_bucket_rows(0, &[leaf], &cut, from_a).unwrap();
            assert_eq!(out.unsettled, vec![leaf]);
            assert_eq!(run(&mut b, &["GET", "k"]), Reply::Nil);
            // Once site 1 holds the delete too, the leaf compares again.
            ship(&mut c, &mut a);
            let cut = a.vv().meet(b.vv());
            let sb = b.leaf_summary(0, &cut).unwrap();
            assert!(!sb.unsettled.contains(&leaf));
            assert!(a.leaf_summary(0, &cut).unwrap().differing(&sb).is_empty());
            assert_eq!(a.digest_hex(), b.digest_hex());
        }
    }

    #[test]
    fn the_join_at_the_vector_canary_deletes_what_one_side_lost() {
        let (mut a, mut b) = pair();
        a.config.canaries.repair_join_at_vv = true;
        b.config.canaries.repair_join_at_vv = true;
        b.put_row_unlogged(0, Bytes::from_static(b"k7"), RowImage::default());
        repair(&mut a, &mut b);
        // The bug this canary plants: the write is gone at both sites.
        assert_eq!(run(&mut a, &["GET", "k7"]), Reply::Nil);
        assert_eq!(run(&mut b, &["GET", "k7"]), Reply::Nil);
    }

    #[test]
    fn merges_are_refused_for_a_cut_not_held_or_with_foreign_rows() {
        let (mut a, mut b) = pair();
        run(&mut a, &["SET", "x", "1"]);
        let ahead = a.vv().clone();
        let leaf = leaf_of(b"x") as u16;
        let rows = decoded(a.bucket_rows(0, &[leaf], &ahead, usize::MAX, usize::MAX));
        assert_eq!(
            b.merge_bucket_rows(0, &[leaf], &ahead, rows.clone()),
            Err(RepairError::CutNotHeld)
        );
        assert_eq!(b.leaf_summary(0, &ahead), Err(SummaryError::CutNotHeld));
        let held = b.vv().clone();
        let other = (leaf + 1) % DIGEST_LEAVES as u16;
        assert!(matches!(
            b.merge_bucket_rows(0, &[other], &held, rows),
            Err(RepairError::ForeignRow { .. })
        ));
        assert_eq!(
            b.merge_bucket_rows(0, &[DIGEST_LEAVES as u16], &held, vec![]),
            Err(RepairError::Bucket(DIGEST_LEAVES as u16))
        );
    }

    #[test]
    fn a_refresh_in_small_steps_ends_where_one_question_would() {
        let (mut a, mut b) = pair();
        for i in 0..300 {
            run(&mut a, &["SET", &format!("k{i}"), "new"]);
        }
        ship(&mut a, &mut b);
        let mut steps = 0;
        while !a.digest_refresh_step(16) {
            steps += 1;
            assert!(steps < 1_000, "the refresh does not end");
        }
        assert!(
            steps >= 10,
            "16 elements a step cannot hash 300 rows in {steps}"
        );
        let cut = a.vv().clone();
        assert_eq!(a.leaf_summary(0, &cut), b.leaf_summary(0, &cut));
    }

    #[test]
    fn leaf_digests_follow_every_change_incrementally() {
        let (mut a, _) = pair();
        for round in 0..3 {
            for i in 0..50 {
                run(&mut a, &["SET", &format!("k{}", i * 3 + round), "v"]);
                run(&mut a, &["DEL", &format!("k{}", i * 5 + round)]);
            }
            run(&mut a, &["SREM", "s", "x"]);
            let cut = a.vv().clone();
            let incremental = a.leaf_summary(0, &cut).unwrap().leaves;
            // From scratch: every row hashed again.
            let mut full = vec![0u64; DIGEST_LEAVES];
            for (k, row) in a.keyspace().db(0).rows.iter() {
                full[leaf_of(k)] ^= crate::keyspace::digest::row_hash(k, row);
            }
            let full: Vec<(u16, u64)> = full
                .into_iter()
                .enumerate()
                .filter(|(_, v)| *v != 0)
                .map(|(l, v)| (l as u16, v))
                .collect();
            assert_eq!(incremental, full);
        }
        run(&mut a, &["FLUSHALL"]);
        let cut = a.vv().clone();
        assert!(a.leaf_summary(0, &cut).unwrap().leaves.is_empty());
    }
}
