//! Anti-entropy support: the rows of whole digest buckets, and their
//! state-based join into this site's state.
//!
//! Replication compares per-bucket digests ([`Keyspace::bucket_digests`])
//! with a peer only when both hold the same version vector: same ops, so
//! (invariant 1) the same state. A bucket that differs anyway is repaired by
//! exchanging every row of the bucket and joining them with
//! [`join_rows`], the merge a full sync uses. Both sides join at the same
//! vector, so both end with the same rows.
//!
//! Invariants: a repair never changes the version vector (it adds no op), so
//! the merge is refused unless the peer's rows were taken at exactly this
//! site's vector; only rows of the named buckets are touched. Repaired rows
//! are marked dirty, so the next checkpoint makes them durable.
//!
//! [`Keyspace::bucket_digests`]: crate::keyspace::Keyspace::bucket_digests

use crate::engine::Engine;
use crate::id::VersionVector;
use crate::keyspace::image::{join_rows, RowImage};
use crate::keyspace::row::Row;
use crate::keyspace::value::{hasher, Hasher};
use crate::keyspace::{bucket_of, DBS, DIGEST_BUCKETS};
use bytes::Bytes;
use std::collections::HashSet;
use thiserror::Error;

/// The rows of whole digest buckets of one database, within a byte budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BucketRows {
    /// Buckets whose rows are all in `rows`, ascending.
    pub buckets: Vec<u16>,
    /// `(key, RowImage::encode())` of every row of `buckets`.
    pub rows: Vec<(Bytes, Vec<u8>)>,
    /// Buckets left out because they did not fit next to `buckets`.
    pub deferred: Vec<u16>,
    /// Buckets whose rows alone exceed the budget: they cannot be shipped.
    pub too_large: Vec<u16>,
}

/// Why a repair was not merged.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RepairError {
    #[error("database {0} does not exist")]
    Db(u8),
    #[error("bucket {0} is out of range")]
    Bucket(u16),
    #[error("the peer's rows were taken at another version vector")]
    VectorMismatch,
    #[error("row {key:?} does not belong to the buckets being repaired")]
    ForeignRow { key: String },
}

/// One bit per digest bucket.
struct BucketSet([bool; DIGEST_BUCKETS]);

impl BucketSet {
    fn of(buckets: &[u16]) -> Result<BucketSet, RepairError> {
        let mut set = [false; DIGEST_BUCKETS];
        for &b in buckets {
            match set.get_mut(b as usize) {
                Some(slot) => *slot = true,
                None => return Err(RepairError::Bucket(b)),
            }
        }
        Ok(BucketSet(set))
    }
    fn contains_key(&self, key: &[u8]) -> bool {
        self.0.get(bucket_of(key)).copied().unwrap_or(false)
    }
}

impl Engine {
    /// Every row of the given digest buckets of `db`, taking whole buckets in
    /// ascending order while the encoded rows stay within `bytes_max` bytes
    /// (key + image) and `rows_max` rows. A bucket that alone exceeds either
    /// bound is reported in `too_large`.
    pub fn bucket_rows(
        &self,
        db: u8,
        buckets: &[u16],
        bytes_max: usize,
        rows_max: usize,
    ) -> BucketRows {
        let mut wanted: Vec<u16> = buckets
            .iter()
            .copied()
            .filter(|&b| (b as usize) < DIGEST_BUCKETS)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = BucketRows::default();
        if db as usize >= DBS || wanted.is_empty() {
            return out;
        }
        // One pass over the database: the keys of each wanted bucket.
        let mut keys: Vec<Vec<&Bytes>> = vec![Vec::new(); DIGEST_BUCKETS];
        let Ok(set) = BucketSet::of(&wanted) else {
            return out;
        };
        for (k, _) in self.keyspace.db(db).rows.iter() {
            if set.contains_key(k) {
                if let Some(slot) = keys.get_mut(bucket_of(k)) {
                    slot.push(k);
                }
            }
        }
        let mut bytes = 0usize;
        for b in wanted {
            let bucket_keys = keys.get(b as usize).map(Vec::as_slice).unwrap_or_default();
            if bucket_keys.len() > rows_max {
                out.too_large.push(b);
                continue;
            }
            if out.rows.len() + bucket_keys.len() > rows_max {
                out.deferred.push(b);
                continue;
            }
            let mut encoded = Vec::with_capacity(bucket_keys.len());
            let mut bucket_bytes = 0usize;
            for &k in bucket_keys {
                if let Some(row) = self.keyspace.db(db).rows.get(k) {
                    let image = RowImage::of(row).encode();
                    bucket_bytes = bucket_bytes.saturating_add(k.len() + image.len());
                    encoded.push((k.clone(), image));
                }
                if bucket_bytes > bytes_max {
                    break;
                }
            }
            if bucket_bytes > bytes_max {
                out.too_large.push(b);
            } else if bytes + bucket_bytes > bytes_max {
                out.deferred.push(b);
            } else {
                bytes += bucket_bytes;
                out.buckets.push(b);
                out.rows.extend(encoded);
            }
        }
        out
    }

    /// Joins a peer's rows of whole digest buckets of `db` into this state:
    /// `rows` must be *every* row the peer holds in `buckets` (a row of ours
    /// they lack is joined with an empty one), taken at `peer_vv`, which must
    /// equal this site's vector. Returns how many rows changed here.
    pub fn merge_bucket_rows(
        &mut self,
        db: u8,
        buckets: &[u16],
        peer_vv: &VersionVector,
        rows: Vec<(Bytes, RowImage)>,
    ) -> Result<usize, RepairError> {
        if db as usize >= DBS {
            return Err(RepairError::Db(db));
        }
        if peer_vv != &self.vv {
            return Err(RepairError::VectorMismatch);
        }
        let set = BucketSet::of(buckets)?;
        if let Some((key, _)) = rows.iter().find(|(k, _)| !set.contains_key(k)) {
            return Err(RepairError::ForeignRow {
                key: String::from_utf8_lossy(key).into_owned(),
            });
        }
        let vv = self.vv.clone();
        let mut changed = 0usize;
        let mut seen: HashSet<Bytes, Hasher> =
            HashSet::with_capacity_and_hasher(rows.len(), hasher());
        for (key, image) in rows {
            let local = self.keyspace.db(db).rows.get(&key).cloned();
            if self.join_row(db, &key, local, &image.into_row(), &vv) {
                changed += 1;
            }
            seen.insert(key);
        }
        // Rows of these buckets the peer does not have: the peer removed
        // what its vector covers (the same as ours).
        let ours_only: Vec<Bytes> = self
            .keyspace
            .db(db)
            .rows
            .iter()
            .filter(|(k, _)| set.contains_key(k) && !seen.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        let empty = Row::default();
        for key in ours_only {
            let local = self.keyspace.db(db).rows.get(&key).cloned();
            if self.join_row(db, &key, local, &empty, &vv) {
                changed += 1;
            }
        }
        debug_assert!(self.invariants_hold());
        Ok(changed)
    }

    /// Joins one row at `vv` on both sides; true if ours changed.
    fn join_row(
        &mut self,
        db: u8,
        key: &Bytes,
        local: Option<Row>,
        remote: &Row,
        vv: &VersionVector,
    ) -> bool {
        let local = local.unwrap_or_default();
        let joined = join_rows(&local, remote, vv, vv);
        if RowImage::of(&joined) == RowImage::of(&local) {
            return false;
        }
        self.keyspace.put_row(db, key.clone(), joined);
        true
    }

    /// Replaces a row without an op: the change is neither logged nor
    /// replicated, so this site diverges from its peers. Only for tests of
    /// anti-entropy and for the simulator's canary; the server never calls it.
    pub fn put_row_unlogged(&mut self, db: u8, key: Bytes, image: RowImage) {
        self.keyspace.put_row(db % DBS as u8, key, image.into_row());
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

    fn set(e: &mut Engine, k: &str, v: &str) {
        let args = [
            Bytes::from("SET"),
            Bytes::from(k.to_owned()),
            Bytes::from(v.to_owned()),
        ];
        assert_eq!(e.execute(0, &args, 1_000), Reply::Ok);
    }

    fn decoded(rows: BucketRows) -> Vec<(Bytes, RowImage)> {
        rows.rows
            .into_iter()
            .map(|(k, img)| (k, RowImage::decode(&img).unwrap()))
            .collect()
    }

    #[test]
    fn bucket_rows_hold_exactly_the_rows_of_the_buckets() {
        let mut e = engine(1);
        for i in 0..200 {
            set(&mut e, &format!("k{i}"), "v");
        }
        let b = bucket_of(b"k7") as u16;
        let rows = e.bucket_rows(0, &[b], usize::MAX, usize::MAX);
        assert_eq!(rows.buckets, vec![b]);
        let expected = (0..200)
            .filter(|i| bucket_of(format!("k{i}").as_bytes()) as u16 == b)
            .count();
        assert_eq!(rows.rows.len(), expected);
        assert!(rows.rows.iter().all(|(k, _)| bucket_of(k) as u16 == b));
        // A budget of one byte fits no bucket at all.
        let tiny = e.bucket_rows(0, &[b], 1, usize::MAX);
        assert!(tiny.buckets.is_empty() && tiny.too_large == vec![b]);
    }

    #[test]
    fn a_row_injected_behind_the_log_is_repaired_by_a_join_at_equal_vectors() {
        let mut a = engine(1);
        let mut b = engine(2);
        // A row with a dot neither vector covers (written by site 9).
        let mut other = engine(9);
        set(&mut other, "ghost", "boo");
        let ghost = RowImage::of(
            other
                .keyspace()
                .db(0)
                .rows
                .get(b"ghost".as_slice())
                .unwrap(),
        );
        a.put_row_unlogged(0, Bytes::from_static(b"ghost"), ghost);
        assert_eq!(a.vv(), b.vv());
        assert_ne!(a.digest_hex(), b.digest_hex());
        let bucket = bucket_of(b"ghost") as u16;
        let from_a = decoded(a.bucket_rows(0, &[bucket], usize::MAX, usize::MAX));
        let from_b = decoded(b.bucket_rows(0, &[bucket], usize::MAX, usize::MAX));
        let vv = a.vv().clone();
        assert_eq!(b.merge_bucket_rows(0, &[bucket], &vv, from_a).unwrap(), 1);
        assert_eq!(a.merge_bucket_rows(0, &[bucket], &vv, from_b).unwrap(), 0);
        assert_eq!(a.digest_hex(), b.digest_hex());
    }

    #[test]
    fn merges_are_refused_at_another_vector_or_with_foreign_rows() {
        let mut a = engine(1);
        let b = engine(2);
        set(&mut a, "x", "1");
        let rows = decoded(a.bucket_rows(0, &[bucket_of(b"x") as u16], usize::MAX, usize::MAX));
        let mut b = b;
        let stale = b.vv().clone();
        let ours = a.vv().clone();
        assert_eq!(
            b.merge_bucket_rows(0, &[bucket_of(b"x") as u16], &ours, rows.clone()),
            Err(RepairError::VectorMismatch)
        );
        let other = (bucket_of(b"x") as u16 + 1) % DIGEST_BUCKETS as u16;
        assert!(matches!(
            b.merge_bucket_rows(0, &[other], &stale, rows),
            Err(RepairError::ForeignRow { .. })
        ));
        assert_eq!(
            b.merge_bucket_rows(0, &[DIGEST_BUCKETS as u16], &stale, vec![]),
            Err(RepairError::Bucket(DIGEST_BUCKETS as u16))
        );
    }
}
