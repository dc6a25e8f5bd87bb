//! Incremental digests of a database, for anti-entropy.
//!
//! Every key hashes into one of [`DIGEST_LEAVES`] *leaves* ([`leaf_of`]); a
//! leaf's digest is the XOR of the 63-bit hashes of its rows (key and
//! canonical image, [`row_hash`]). Each row keeps the hash it contributes
//! (`Row::digest`), so a changed row is only marked *stale* (a flag and one
//! position in a list) and rehashed when a digest is next wanted: a round of
//! anti-entropy costs the rows changed since the last one, not the keys.
//!
//! Each leaf also records the *touch* of the last change to any of its rows:
//! the index of the op (or merge) that made it, in this site's apply order.
//! The engine keeps a journal from those indexes to the version vector they
//! were applied under, so it can tell which leaves were changed only by ops
//! of a given vector (see `Engine::leaf_settled`).
//!
//! Invariants: for every row, `Row::digest` is 0 or the hash it adds to its
//! leaf; a row whose hash is out of date has the stale flag and its slot is
//! listed in `stale`; `leaves[l]` is the XOR of the counted hashes of the
//! rows of leaf `l`.

use super::image::RowImage;
use super::row::Row;
use bytes::Bytes;

/// Leaves per database: the granularity at which anti-entropy compares and
/// repairs (about 250 keys a leaf at a million keys).
pub const DIGEST_LEAVES: usize = 4096;
const _: () = assert!(DIGEST_LEAVES.is_power_of_two() && DIGEST_LEAVES <= 1 << 16);

/// The flag in `Row::digest` that says the counted hash is out of date.
pub(crate) const STALE: u64 = 1 << 63;

/// A stable 64-bit hash of a key: the same on every site and every version
/// (written here, so no library or compiler change can move a key to
/// another leaf; leaves are compared across sites).
pub fn stable_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(K) ^ 0x2545_F491_4F6C_DD1D;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// The leaf of a key.
#[inline]
pub fn leaf_of(key: &[u8]) -> usize {
    (stable_hash(key) >> (64 - DIGEST_LEAVES.trailing_zeros())) as usize
}

/// The hash a row adds to its leaf: 63 bits of BLAKE3 over the key and its
/// canonical image, never 0 (0 means "adds nothing").
pub fn row_hash(key: &[u8], row: &Row) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(&RowImage::of(row).canonical().encode());
    let b = h.finalize();
    let b = b.as_bytes();
    let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) & !STALE;
    v.max(1)
}

/// The hash a row currently adds to its leaf.
#[inline]
pub(crate) fn counted(row: &Row) -> u64 {
    row.digest & !STALE
}

/// One database's leaves (allocated on its first row).
#[derive(Default)]
pub struct DbDigest {
    /// XOR of the counted row hashes, per leaf.
    leaves: Vec<u64>,
    /// The touch of the last change, per leaf (0: none since the start).
    touched: Vec<u64>,
    /// Slots whose row may be stale (listed when the flag was set; a slot
    /// freed and reused meanwhile is checked again by its flag).
    pub(crate) stale: Vec<u32>,
    /// Changes to this database's rows so far (every touch counts one).
    changes: u64,
}

impl DbDigest {
    fn alloc(&mut self) {
        if self.leaves.is_empty() {
            self.leaves = vec![0; DIGEST_LEAVES];
            self.touched = vec![0; DIGEST_LEAVES];
        }
    }

    /// A change to a row of `leaf` by the op with index `touch`.
    #[inline]
    pub(crate) fn touch(&mut self, leaf: usize, touch: u64) {
        self.alloc();
        self.changes += 1;
        if let Some(t) = self.touched.get_mut(leaf) {
            *t = touch;
        }
    }

    /// Every leaf changed (FLUSHDB, FLUSHALL).
    pub(crate) fn touch_all(&mut self, touch: u64) {
        self.alloc();
        self.changes += 1;
        self.touched.iter_mut().for_each(|t| *t = touch);
    }

    /// Marks a row stale (its slot listed once); call [`Self::touch`] too.
    #[inline]
    pub(crate) fn mark_stale(&mut self, pos: u32, row: &mut Row) {
        if row.digest & STALE == 0 {
            row.digest |= STALE;
            self.stale.push(pos);
        }
    }

    /// Takes a row out of its leaf (the row is being removed or replaced).
    #[inline]
    pub(crate) fn uncount(&mut self, key: &[u8], row: &Row) {
        let c = counted(row);
        if c != 0 {
            self.alloc();
            if let Some(l) = self.leaves.get_mut(leaf_of(key)) {
                *l ^= c;
            }
        }
    }

    /// Brings a stale row's hash up to date.
    pub(crate) fn refresh_row(&mut self, key: &Bytes, row: &mut Row) {
        if row.digest & STALE == 0 {
            return;
        }
        let h = row_hash(key, row);
        self.alloc();
        if let Some(l) = self.leaves.get_mut(leaf_of(key)) {
            *l ^= counted(row) ^ h;
        }
        row.digest = h;
    }

    pub fn leaves(&self) -> &[u64] {
        &self.leaves
    }
    pub fn touched(&self) -> &[u64] {
        &self.touched
    }
    /// How many changes this database's rows have had since the start: a
    /// cheap test of whether anything in it changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }
    /// Rows that may be stale.
    pub fn stale_len(&self) -> usize {
        self.stale.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: [u64; 4] = [
        0x485c_cd0a_591e_503c,
        0x4317_afe3_efb0_ca54,
        0xa6ee_dd8e_3f8c_d511,
        0x3257_bdd8_8d50_ae25,
    ];

    #[test]
    fn stable_hash_is_pinned() {
        // Leaves are compared across sites and versions: these values must
        // never change (a change is a protocol change).
        let got: Vec<u64> = [&b""[..], b"k", b"key:1", b"a longer key of 27 bytes..."]
            .iter()
            .map(|k| stable_hash(k))
            .collect();
        assert_eq!(got, PINNED);
    }

    #[test]
    fn leaves_spread_keys() {
        let mut counts = vec![0usize; DIGEST_LEAVES];
        for i in 0..(DIGEST_LEAVES * 16) {
            counts[leaf_of(format!("key:{i}").as_bytes())] += 1;
        }
        let max = counts.iter().max().copied().unwrap_or(0);
        let min = counts.iter().min().copied().unwrap_or(0);
        assert!(max < 48 && min > 0, "min {min} max {max}");
    }
}
