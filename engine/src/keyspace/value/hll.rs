//! A HyperLogLog key: its registers as an observed-remove CRDT.
//!
//! Each PFADD or PFMERGE that raised registers is one entry: its stamp and
//! the `(register, rank)` pairs it raised. A register shows the greatest
//! rank any entry holds for it, so concurrent adds merge as the
//! register-wise max, whatever the order. A removal (DEL, SET, a type
//! change) removes the entries its origin had seen, as for any other type.
//!
//! An entry's pair is dropped once an entry that had seen it holds a rank
//! at least as great for the same register: every removal that removes the
//! newer entry removes the older one too (it saw it first), so the older
//! pair can never show again. Each register therefore has one pair per
//! concurrent writer at most, and a row holds at most 16384 pairs per
//! writer whatever the number of adds. Entries left with no pair go,
//! except the newest one (PFADD of no element makes an empty HLL).

use crate::crdt::{Ctx, Stamp};
use crate::redis::hll::{Registers, REGISTERS};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// One write's raised registers, sorted by register, one pair each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HllEntry {
    pub stamp: Stamp,
    pub regs: Vec<(u16, u8)>,
}

#[derive(Debug, Default)]
pub struct HllSlot {
    pub entries: Vec<HllEntry>,
    /// The estimate of the registers, once PFCOUNT computed it (`u64::MAX`:
    /// not yet). Local only, not part of the state; any change clears it.
    card: AtomicU64Cache,
}

/// A cached count that clones and compares as nothing (see `HllSlot::card`).
#[derive(Debug)]
struct AtomicU64Cache(AtomicU64);

impl Default for AtomicU64Cache {
    fn default() -> Self {
        AtomicU64Cache(AtomicU64::new(u64::MAX))
    }
}

impl Clone for HllSlot {
    fn clone(&self) -> Self {
        HllSlot {
            entries: self.entries.clone(),
            card: AtomicU64Cache::default(),
        }
    }
}

impl PartialEq for HllSlot {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

/// Sorts `pairs` by register and keeps the greatest rank of each, dropping
/// registers out of range and zero ranks (pairs from a peer are untrusted).
pub fn normalize(pairs: &[(u16, u8)]) -> Vec<(u16, u8)> {
    let mut v: Vec<(u16, u8)> = pairs
        .iter()
        .copied()
        .filter(|&(i, r)| usize::from(i) < REGISTERS && r > 0)
        .collect();
    v.sort_unstable();
    // Sorted by (register, rank): the last of each register is its greatest.
    let mut out: Vec<(u16, u8)> = Vec::with_capacity(v.len());
    for p in v {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Raises the sorted pairs `into` to `add` (sorted, unique), in place when
/// `add` is short, by a merge otherwise.
fn raise_into(into: &mut Vec<(u16, u8)>, add: &[(u16, u8)]) {
    if add.len() > 64 {
        into.extend_from_slice(add);
        *into = normalize(into);
        return;
    }
    for &(i, r) in add {
        match into.binary_search_by_key(&i, |p| p.0) {
            Ok(k) => into[k].1 = into[k].1.max(r),
            Err(k) => into.insert(k, (i, r)),
        }
    }
}

impl HllSlot {
    /// The rank register `i` shows.
    pub fn get(&self, i: u16) -> u8 {
        self.entries
            .iter()
            .filter_map(|e| {
                e.regs
                    .binary_search_by_key(&i, |p| p.0)
                    .ok()
                    .map(|k| e.regs[k].1)
            })
            .max()
            .unwrap_or(0)
    }

    /// Every register.
    pub fn registers(&self) -> Box<Registers> {
        let mut regs: Box<Registers> = Box::new([0; REGISTERS]);
        for e in &self.entries {
            for &(i, r) in &e.regs {
                let slot = &mut regs[usize::from(i)];
                *slot = (*slot).max(r);
            }
        }
        regs
    }

    /// A slot of these entries.
    pub fn from_entries(entries: Vec<HllEntry>) -> HllSlot {
        HllSlot {
            entries,
            card: AtomicU64Cache::default(),
        }
    }

    /// PFCOUNT's estimate, computed once per change.
    pub fn count(&self) -> u64 {
        let c = self.card.0.load(Ordering::Relaxed);
        if c != u64::MAX {
            return c;
        }
        let c = crate::redis::hll::count(&self.registers());
        self.card.0.store(c, Ordering::Relaxed);
        c
    }

    /// Pairs held, over all entries.
    pub fn len(&self) -> usize {
        self.entries.iter().map(|e| e.regs.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies a write that raised `pairs` (see the module comment). With
    /// `ctx.fold` (a site alone: nothing concurrent can arrive), the
    /// entries it had seen are folded into it.
    pub fn raise(&mut self, ctx: &Ctx<'_>, pairs: &[(u16, u8)]) {
        self.card = AtomicU64Cache::default();
        let mut regs = normalize(pairs);
        if ctx.fold {
            // The entries it saw become one, in place (a PFADD raises a few
            // registers of a key that may hold thousands).
            let mut folded: Option<Vec<(u16, u8)>> = None;
            self.entries.retain_mut(|e| {
                if !ctx.covers(e.stamp.dot) {
                    return true;
                }
                match &mut folded {
                    None => folded = Some(std::mem::take(&mut e.regs)),
                    Some(f) => raise_into(f, &e.regs),
                }
                false
            });
            if let Some(mut f) = folded {
                raise_into(&mut f, &regs);
                regs = f;
            }
        } else {
            for e in self.entries.iter_mut() {
                if !ctx.covers(e.stamp.dot) {
                    continue;
                }
                if regs.len() <= 64 {
                    for &(i, r) in &regs {
                        if let Ok(k) = e.regs.binary_search_by_key(&i, |p| p.0) {
                            if e.regs[k].1 <= r {
                                e.regs.remove(k);
                            }
                        }
                    }
                } else {
                    e.regs
                        .retain(|&(i, r)| match regs.binary_search_by_key(&i, |p| p.0) {
                            Ok(k) => regs[k].1 < r,
                            Err(_) => true,
                        });
                }
            }
            self.entries
                .retain(|e| !e.regs.is_empty() || !ctx.covers(e.stamp.dot));
        }
        // An earlier effect of the same op (two PFADDs in one MULTI): one
        // entry per dot, holding both (they are removed together).
        if let Some(k) = self.entries.iter().position(|e| e.stamp.dot == ctx.own) {
            let mut same = self.entries.swap_remove(k).regs;
            raise_into(&mut same, &regs);
            regs = same;
        }
        self.entries.push(HllEntry {
            stamp: ctx.stamp(),
            regs,
        });
    }

    /// Observed-remove: the entries `ctx` covers go.
    pub fn prune(&mut self, ctx: &Ctx<'_>) {
        self.card = AtomicU64Cache::default();
        self.entries.retain(|e| !ctx.covers(e.stamp.dot));
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        crate::crdt::max_stamp(self.entries.iter().map(|e| &e.stamp))
    }

    /// The entries sorted by dot (the canonical image).
    pub fn sorted_entries(&self) -> Vec<HllEntry> {
        let mut v = self.entries.clone();
        v.sort_by_key(|e| e.stamp.dot);
        v
    }
}
