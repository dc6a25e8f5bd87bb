//! Key table: a hash index over a slab of `(key, row)` entries.
//!
//! Entries never move while they live, so a SCAN cursor (a slab position) returns
//! every key that is present for the whole scan at least once, as Redis promises.
//! Freed slots are reused by later inserts.
//!
//! Each slot also has a *dirty* bit (changed since the last checkpoint), so the
//! checkpoint's change set costs one bit per slot and no second hash table.

use super::value::{hasher, Hasher};
use bytes::Bytes;
use hashbrown::HashTable;
use std::cell::Cell;
use std::hash::BuildHasher;

pub struct KeyTable<V> {
    index: HashTable<u32>,
    slab: Vec<Option<(Bytes, V)>>,
    free: Vec<u32>,
    hasher: Hasher,
    len: usize,
    /// One bit per slab slot: the entry changed since the last checkpoint.
    dirty: Vec<u64>,
    /// One bit per slab slot: a checkpoint in progress still has to capture
    /// the entry as it was when the checkpoint began (see `Keyspace`'s capture).
    pending: Vec<u64>,
    /// The position of the last key found: commands look a key up, then
    /// write it, so the second lookup is a compare instead of a hash probe.
    last: Cell<u32>,
}

impl<V> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable {
            index: HashTable::new(),
            slab: Vec::new(),
            free: Vec::new(),
            hasher: hasher(),
            len: 0,
            dirty: Vec::new(),
            pending: Vec::new(),
            last: Cell::new(u32::MAX),
        }
    }
}

impl<V> KeyTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<u32> {
        let last = self.last.get();
        if let Some(Some((k, _))) = self.slab.get(last as usize) {
            if k.as_ref() == key {
                return Some(last);
            }
        }
        let h = self.hash(key);
        let slab = &self.slab;
        let found = self
            .index
            .find(
                h,
                |&i| matches!(slab.get(i as usize), Some(Some((k, _))) if k.as_ref() == key),
            )
            .copied();
        if let Some(i) = found {
            self.last.set(i);
        }
        found
    }

    /// The slab position of `key`, if present.
    pub fn position(&self, key: &[u8]) -> Option<u32> {
        self.find(key)
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let i = self.find(key)?;
        self.slab.get(i as usize)?.as_ref().map(|e| &e.1)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let i = self.find(key)?;
        self.slab.get_mut(i as usize)?.as_mut().map(|e| &mut e.1)
    }

    /// Makes room for `n` more entries (bulk loads).
    pub fn reserve(&mut self, n: usize) {
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index.reserve(n, |&i| match slab.get(i as usize) {
            Some(Some((k, _))) => hasher.hash_one(k.as_ref()),
            _ => 0,
        });
        self.slab.reserve(n);
    }

    /// Returns the value for `key`, inserting `make()` first when absent.
    pub fn get_or_insert_with(&mut self, key: &Bytes, make: impl FnOnce() -> V) -> &mut V {
        let pos = self.position_or_insert_with(key, make);
        self.at_mut(pos)
    }

    /// The slab position of `key`, inserting `make()` first when absent (the
    /// stored key is a copy of `key` then, owned by the table alone).
    pub fn position_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> u32 {
        match self.find(key) {
            Some(i) => i,
            None => self.insert_new(Bytes::copy_from_slice(key), make()),
        }
    }

    /// The entry at a position returned by [`Self::position_or_insert_with`].
    pub fn at_mut(&mut self, pos: u32) -> &mut V {
        // The index only holds positions of occupied slots.
        match self.slab.get_mut(pos as usize) {
            Some(Some(e)) => &mut e.1,
            _ => unreachable!("key table position points at an empty slot"),
        }
    }

    /// The entry at a slab position, if occupied.
    pub fn entry_at(&self, pos: u32) -> Option<(&Bytes, &V)> {
        self.slab
            .get(pos as usize)
            .and_then(|e| e.as_ref())
            .map(|(k, v)| (k, v))
    }

    /// The entry at a slab position, if occupied, its value mutable.
    pub fn entry_at_mut(&mut self, pos: u32) -> Option<(&Bytes, &mut V)> {
        self.slab
            .get_mut(pos as usize)
            .and_then(|e| e.as_mut())
            .map(|(k, v)| (&*k, v))
    }

    /// The stored key at an occupied position.
    pub fn key_at(&self, pos: u32) -> &Bytes {
        match self.slab.get(pos as usize) {
            Some(Some(e)) => &e.0,
            _ => unreachable!("key table position points at an empty slot"),
        }
    }

    /// Sets the dirty bit of an occupied slot; true if it was clear.
    pub fn mark_dirty(&mut self, pos: u32) -> bool {
        set_bit(&mut self.dirty, pos)
    }

    fn clear_dirty_bit(&mut self, pos: u32) -> bool {
        clear_bit(&mut self.dirty, pos)
    }

    /// Moves the entry at `pos` from "changed since the last checkpoint" to
    /// "to be captured by the checkpoint in progress"; false if it was clean.
    pub fn dirty_to_pending(&mut self, pos: u32) -> bool {
        if !self.clear_dirty_bit(pos) {
            return false;
        }
        set_bit(&mut self.pending, pos);
        true
    }

    /// Clears the pending bit at `pos`; the entry if the bit was set.
    pub fn take_pending(&mut self, pos: u32) -> Option<(&Bytes, &V)> {
        if !clear_bit(&mut self.pending, pos) {
            return None;
        }
        self.slab
            .get(pos as usize)
            .and_then(|e| e.as_ref())
            .map(|(k, v)| (k, v))
    }

    /// Clears the dirty bit at `pos` and returns the entry if the bit was set.
    pub fn take_dirty(&mut self, pos: u32) -> Option<(&Bytes, &V)> {
        if !self.clear_dirty_bit(pos) {
            return None;
        }
        self.slab
            .get(pos as usize)
            .and_then(|e| e.as_ref())
            .map(|(k, v)| (k, v))
    }

    /// Clears every dirty bit (rows loaded from a checkpoint are clean).
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    fn insert_new(&mut self, key: Bytes, v: V) -> u32 {
        let h = self.hash(&key);
        let pos = match self.free.pop() {
            Some(p) => {
                self.slab[p as usize] = Some((key, v));
                p
            }
            None => {
                self.slab.push(Some((key, v)));
                (self.slab.len() - 1) as u32
            }
        };
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index
            .insert_unique(h, pos, |&i| match slab.get(i as usize) {
                Some(Some((k, _))) => hasher.hash_one(k.as_ref()),
                _ => 0,
            });
        self.len += 1;
        pos
    }

    /// Removes `key`; returns the stored key and value.
    pub fn remove(&mut self, key: &[u8]) -> Option<(Bytes, V)> {
        let h = self.hash(key);
        let slab = &self.slab;
        let entry = self
            .index
            .find_entry(
                h,
                |&i| matches!(slab.get(i as usize), Some(Some((k, _))) if k.as_ref() == key),
            )
            .ok()?;
        let (pos, _) = entry.remove();
        let e = self.slab.get_mut(pos as usize)?.take();
        self.clear_dirty_bit(pos);
        // The keyspace captures a pending entry before it changes, so it is
        // never removed uncaptured; a freed slot must not stay pending.
        let was_pending = clear_bit(&mut self.pending, pos);
        debug_assert!(!was_pending, "a pending entry was removed uncaptured");
        self.free.push(pos);
        self.len -= 1;
        if self.len == 0 {
            // An emptied table gives its memory back.
            self.slab = Vec::new();
            self.free = Vec::new();
            self.dirty = Vec::new();
            self.pending = Vec::new();
        }
        e
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.slab
            .iter()
            .filter_map(|e| e.as_ref().map(|(k, v)| (k, v)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Bytes, &mut V)> {
        self.slab
            .iter_mut()
            .filter_map(|e| e.as_mut().map(|(k, v)| (&*k, v)))
    }

    /// Visits up to `count` slots from `cursor`; returns the next cursor (0 = done).
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&Bytes, &V)) -> u64 {
        // A cursor past the slab (any u64 is accepted) ends the scan.
        let mut pos = usize::try_from(cursor).unwrap_or(usize::MAX);
        let end = pos.saturating_add(count.max(1));
        while pos < self.slab.len() && pos < end {
            if let Some(Some((k, v))) = self.slab.get(pos) {
                visit(k, v);
            }
            pos += 1;
        }
        if pos >= self.slab.len() {
            0
        } else {
            pos as u64
        }
    }

    /// The entry in slab slot `pos % slots`, if that slot is occupied: one
    /// probe of RANDOMKEY (O(1); a table with few holes answers in a few).
    pub fn entry_in_slot(&self, pos: u64) -> Option<(&Bytes, &V)> {
        let n = self.slab.len() as u64;
        if n == 0 {
            return None;
        }
        self.slab
            .get((pos % n) as usize)
            .and_then(|e| e.as_ref())
            .map(|(k, v)| (k, v))
    }

    /// The occupied entry at or after slab position `pos` (wrapping), for RANDOMKEY.
    pub fn entry_near(&self, pos: u64) -> Option<(&Bytes, &V)> {
        if self.len == 0 || self.slab.is_empty() {
            return None;
        }
        let n = self.slab.len();
        let start = (pos % n as u64) as usize;
        (0..n).map(|i| (start + i) % n).find_map(|i| {
            self.slab
                .get(i)
                .and_then(|e| e.as_ref())
                .map(|(k, v)| (k, v))
        })
    }

    /// Keeps the entries `keep` says yes to; returns the removed ones.
    pub fn retain(&mut self, mut keep: impl FnMut(&Bytes, &mut V) -> bool) -> Vec<(Bytes, V)> {
        let mut dead: Vec<Bytes> = Vec::new();
        for (k, v) in self.slab.iter_mut().flatten() {
            if !keep(k, v) {
                dead.push(k.clone());
            }
        }
        dead.iter().filter_map(|k| self.remove(k)).collect()
    }

    pub fn clear(&mut self) {
        *self = KeyTable::default();
    }
}

/// Sets bit `pos`; true if it was clear.
fn set_bit(bits: &mut Vec<u64>, pos: u32) -> bool {
    let (word, bit) = (pos as usize / 64, 1u64 << (pos % 64));
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    !was
}

/// Clears bit `pos`; true if it was set.
fn clear_bit(bits: &mut [u64], pos: u32) -> bool {
    let (word, bit) = (pos as usize / 64, 1u64 << (pos % 64));
    match bits.get_mut(word) {
        Some(w) => {
            let was = *w & bit != 0;
            *w &= !bit;
            was
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_scan() {
        let mut t: KeyTable<u32> = KeyTable::default();
        for i in 0..100u32 {
            *t.get_or_insert_with(&Bytes::from(format!("k{i}")), || 0) = i;
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.get(b"k42"), Some(&42));
        assert_eq!(t.remove(b"k42").map(|e| e.1), Some(42));
        assert_eq!(t.get(b"k42"), None);
        let mut seen = 0;
        let mut c = 0;
        loop {
            c = t.scan(c, 7, |_, _| seen += 1);
            if c == 0 {
                break;
            }
        }
        assert_eq!(seen, 99);
        for i in 0..100u32 {
            t.remove(format!("k{i}").as_bytes());
        }
        assert!(t.is_empty());
        assert!(t.entry_near(3).is_none());
    }
}
