//! List: a sequence CRDT of dense positions, stored as blocks of runs.
//!
//! Every element has a *position*: a sequence of [`Level`]s `(d, op, i)`,
//! compared level by level, a prefix before its extensions. The elements one
//! op pushes form a *run*: they share every level but the last one's `i`
//! (`prefix ++ [(d, op, first + k)]`), so no other element can fall between two
//! of them unless it was placed by an op that saw them: runs pushed
//! concurrently never interleave, and concurrent runs at one place are ordered
//! by their op's id. The order is a function of the positions alone, so every
//! site shows the same order whatever the arrival order, and a removed element
//! leaves nothing behind: no other element is placed relative to it. See
//! docs/decisions.md ("Lists") for why this and not RGA or Fugue.
//!
//! Storage: a deque of [`Block`]s sorted by position, each a slice of one run
//! with its visible values (`None` for a removed element inside the block,
//! trimmed at both ends), and the live count. A block with no live element is
//! dropped at once. An insert inside a block (LINSERT between two elements of
//! one run) splits it. Index lookups walk the blocks' counts: O(blocks), from
//! the nearer end.
//!
//! Invariants ([`ListSlot::invariants_hold`]): blocks sorted by position and
//! disjoint; every block has a live element at each end; `len` is the sum of
//! the live counts.

use crate::crdt::{Ctx, MvReg, Stamp};
use crate::hlc::Hlc;
use crate::id::OpId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};

/// One level of a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Level {
    pub d: i64,
    pub op: OpId,
    pub i: u32,
}

/// Gap left between the digits of consecutive head or tail pushes, so that
/// about 20 inserts between two neighbours stay one level deep.
pub const LIST_DIGIT_STRIDE: i64 = 1 << 20;

/// Where a new run goes: the levels it shares with its neighbours, and the
/// digit of its own level. Its element `k` is `prefix ++ [(d, op, first + k)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub prefix: Vec<Level>,
    pub d: i64,
}

/// A slice of one run's elements: `prefix ++ [(d, op, first + k)]`,
/// `first..first + len`. Removals name elements by spans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub prefix: Vec<Level>,
    pub d: i64,
    pub op: OpId,
    pub first: u32,
    pub len: u32,
}

impl Span {
    fn last_level(&self, i: u32) -> Level {
        Level {
            d: self.d,
            op: self.op,
            i,
        }
    }
}

/// Chooses a place strictly between `left` and `right` (either may be the
/// end of the list), for a run of a fresh op: every key
/// `prefix ++ [(d, op, i)]` lies strictly between them whatever `op` and `i`.
pub fn place_between(left: Option<&[Level]>, right: Option<&[Level]>) -> Place {
    match (left, right) {
        (None, None) => Place {
            prefix: Vec::new(),
            d: 0,
        },
        (Some(l), None) => match l.first() {
            Some(l0) if l0.d < i64::MAX - LIST_DIGIT_STRIDE => Place {
                prefix: Vec::new(),
                d: l0.d + LIST_DIGIT_STRIDE,
            },
            // The digits ran out (2^43 tail pushes): one level deeper.
            _ => Place {
                prefix: l.to_vec(),
                d: 0,
            },
        },
        (None, Some(r)) => Place {
            prefix: Vec::new(),
            d: r.first()
                .map_or(0, |r0| r0.d.saturating_sub(LIST_DIGIT_STRIDE)),
        },
        (Some(l), Some(r)) => {
            let j = l.iter().zip(r).take_while(|(a, b)| a == b).count();
            match (l.get(j), r.get(j)) {
                // `l` is a prefix of `r`: extend `l`, below `r`'s next level.
                (None, Some(rj)) => Place {
                    prefix: l.to_vec(),
                    d: rj.d.saturating_sub(LIST_DIGIT_STRIDE),
                },
                (Some(lj), Some(rj)) => {
                    let gap = i128::from(rj.d) - i128::from(lj.d);
                    if gap >= 2 {
                        Place {
                            prefix: l[..j].to_vec(),
                            d: (i128::from(lj.d) + gap / 2) as i64,
                        }
                    } else {
                        match l.get(j + 1) {
                            Some(next) if next.d < i64::MAX - LIST_DIGIT_STRIDE => Place {
                                prefix: l[..=j].to_vec(),
                                d: next.d + LIST_DIGIT_STRIDE,
                            },
                            _ => Place {
                                prefix: l.to_vec(),
                                d: 0,
                            },
                        }
                    }
                }
                // `l >= r`: not neighbours in order; keep the list intact.
                _ => Place {
                    prefix: l.to_vec(),
                    d: 0,
                },
            }
        }
    }
}

/// A slice of one run (see the module doc).
#[derive(Clone, Debug)]
pub struct Block {
    pub prefix: Box<[Level]>,
    pub d: i64,
    pub op: OpId,
    pub hlc: Hlc,
    /// `i` of `vals[0]`.
    pub start: u32,
    /// Visible values; `None`: removed.
    pub vals: VecDeque<Option<Bytes>>,
    pub live: u32,
    /// Registers of the elements an LSET wrote, by `i` (the visible value
    /// is also in `vals`).
    pub sets: Option<Box<BTreeMap<u32, MvReg<Bytes>>>>,
}

impl Block {
    fn level(&self, i: u32) -> Level {
        Level {
            d: self.d,
            op: self.op,
            i,
        }
    }

    /// The position of `vals[off]`.
    pub fn pos(&self, off: usize) -> Vec<Level> {
        let mut p = self.prefix.to_vec();
        p.push(self.level(self.start + off as u32));
        p
    }

    fn key_cmp(&self, i: u32, other: &[Level]) -> Ordering {
        self.prefix
            .iter()
            .copied()
            .chain(std::iter::once(self.level(i)))
            .cmp(other.iter().copied())
    }

    fn first_cmp(&self, other: &[Level]) -> Ordering {
        self.key_cmp(self.start, other)
    }

    fn last_cmp(&self, other: &[Level]) -> Ordering {
        self.key_cmp(self.end() - 1, other)
    }

    /// One past the last `i`.
    fn end(&self) -> u32 {
        self.start + self.vals.len() as u32
    }

    fn same_run(&self, prefix: &[Level], d: i64, op: OpId) -> bool {
        self.d == d && self.op == op && *self.prefix == *prefix
    }

    /// Drops removed elements at both ends.
    fn trim(&mut self) {
        while matches!(self.vals.front(), Some(None)) {
            self.vals.pop_front();
            self.start += 1;
        }
        while matches!(self.vals.back(), Some(None)) {
            self.vals.pop_back();
        }
    }

    /// Removes `vals[off]`; true if it was live.
    fn remove_at(&mut self, off: usize) -> Option<Bytes> {
        let v = self.vals.get_mut(off)?.take()?;
        self.live -= 1;
        if let Some(s) = &mut self.sets {
            s.remove(&(self.start + off as u32));
            if s.is_empty() {
                self.sets = None;
            }
        }
        Some(v)
    }

    /// The offset of the `n`th live element (0-based).
    fn nth_live(&self, n: usize) -> usize {
        if self.live as usize == self.vals.len() {
            return n;
        }
        let mut seen = 0;
        for (off, v) in self.vals.iter().enumerate() {
            if v.is_some() {
                if seen == n {
                    return off;
                }
                seen += 1;
            }
        }
        self.vals.len().saturating_sub(1)
    }

    pub fn max_stamp(&self) -> Stamp {
        let own = Stamp {
            hlc: self.hlc,
            dot: self.op,
        };
        let mut best = own;
        if let Some(s) = &self.sets {
            for r in s.values() {
                if let Some(m) = r.max_stamp() {
                    if m.wins_over(&best) {
                        best = m;
                    }
                }
            }
        }
        best
    }

    /// Bytes held, roughly (MEMORY USAGE, bounds).
    pub fn bytes(&self) -> usize {
        96 + self.prefix.len() * 32
            + self
                .vals
                .iter()
                .map(|v| 32 + v.as_ref().map_or(0, |b| b.len()))
                .sum::<usize>()
    }
}

/// A list: blocks sorted by position (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct ListSlot {
    pub blocks: VecDeque<Block>,
    len: usize,
}

/// Where one element is: block index and offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub block: usize,
    pub off: usize,
}

impl ListSlot {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `at`.
    pub fn value(&self, at: At) -> Option<&Bytes> {
        self.blocks.get(at.block)?.vals.get(at.off)?.as_ref()
    }

    /// The position of the element at `at`.
    pub fn pos(&self, at: At) -> Option<Vec<Level>> {
        let b = self.blocks.get(at.block)?;
        Some(b.pos(at.off))
    }

    /// The span of the one element at `at`.
    pub fn span_of(&self, at: At) -> Option<Span> {
        let b = self.blocks.get(at.block)?;
        Some(Span {
            prefix: b.prefix.to_vec(),
            d: b.d,
            op: b.op,
            first: b.start + at.off as u32,
            len: 1,
        })
    }

    /// The element at `index` (0-based from the head), walking the block
    /// counts from the nearer end.
    pub fn at(&self, index: usize) -> Option<At> {
        if index >= self.len {
            return None;
        }
        if index <= self.len / 2 {
            let mut left = index;
            for (bi, b) in self.blocks.iter().enumerate() {
                if left < b.live as usize {
                    return Some(At {
                        block: bi,
                        off: b.nth_live(left),
                    });
                }
                left -= b.live as usize;
            }
        } else {
            let mut right = self.len - 1 - index;
            for (bi, b) in self.blocks.iter().enumerate().rev() {
                if right < b.live as usize {
                    return Some(At {
                        block: bi,
                        off: b.nth_live(b.live as usize - 1 - right),
                    });
                }
                right -= b.live as usize;
            }
        }
        None
    }

    /// The live element after `at`.
    pub fn next(&self, at: At) -> Option<At> {
        let mut bi = at.block;
        let mut off = at.off + 1;
        while let Some(b) = self.blocks.get(bi) {
            while off < b.vals.len() {
                if b.vals[off].is_some() {
                    return Some(At { block: bi, off });
                }
                off += 1;
            }
            bi += 1;
            off = 0;
        }
        None
    }

    /// The live element before `at`.
    pub fn prev(&self, at: At) -> Option<At> {
        let mut bi = at.block;
        let mut off = at.off;
        loop {
            let b = self.blocks.get(bi)?;
            while off > 0 {
                off -= 1;
                if b.vals.get(off).is_some_and(|v| v.is_some()) {
                    return Some(At { block: bi, off });
                }
            }
            if bi == 0 {
                return None;
            }
            bi -= 1;
            off = self.blocks.get(bi)?.vals.len();
        }
    }

    /// Live values from the head, with where they are.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (At, &Bytes)> + '_ {
        self.blocks.iter().enumerate().flat_map(|(bi, b)| {
            b.vals
                .iter()
                .enumerate()
                .filter_map(move |(off, v)| v.as_ref().map(|v| (At { block: bi, off }, v)))
        })
    }

    /// The first block whose first element is after `key`.
    fn after(&self, key: &[Level]) -> usize {
        self.blocks
            .partition_point(|b| b.first_cmp(key) != Ordering::Greater)
    }

    /// Inserts the run `vals` of op `op` (elements `first..`) at `place`.
    pub fn insert(&mut self, place: &Place, op: OpId, hlc: Hlc, first: u32, vals: &[Bytes]) {
        // Indexes past `u32` cannot come from a real op (a peer's damaged
        // one is ignored, alike at every site).
        if vals.is_empty() || u64::from(first) + vals.len() as u64 > u64::from(u32::MAX) {
            return;
        }
        let mut key = place.prefix.clone();
        key.push(Level {
            d: place.d,
            op,
            i: first,
        });
        let at = self.after(&key);
        // Inside the block before? Split it after its last element below `key`.
        if at > 0 {
            let split = {
                let b = &self.blocks[at - 1];
                if b.last_cmp(&key) == Ordering::Greater {
                    // Elements of one run are consecutive `i`s: find the
                    // first one above `key`.
                    let n = b.vals.len();
                    let mut lo = 0;
                    let mut hi = n;
                    while lo < hi {
                        let mid = (lo + hi) / 2;
                        if b.key_cmp(b.start + mid as u32, &key) == Ordering::Greater {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    Some(lo)
                } else {
                    None
                }
            };
            if let Some(off) = split {
                self.split(at - 1, off);
            }
        }
        let block = Block {
            prefix: place.prefix.clone().into_boxed_slice(),
            d: place.d,
            op,
            hlc,
            start: first,
            vals: vals
                .iter()
                .map(|v| Some(Bytes::copy_from_slice(v)))
                .collect(),
            live: vals.len() as u32,
            sets: None,
        };
        self.len += vals.len();
        self.blocks.insert(at, block);
        debug_assert!(self.invariants_hold());
    }

    /// Splits block `bi` before offset `off` (both halves keep a live end).
    fn split(&mut self, bi: usize, off: usize) {
        let Some(b) = self.blocks.get_mut(bi) else {
            return;
        };
        if off == 0 || off >= b.vals.len() {
            return;
        }
        let tail_vals: VecDeque<Option<Bytes>> = b.vals.split_off(off);
        let tail_start = b.start + off as u32;
        let tail_live = tail_vals.iter().filter(|v| v.is_some()).count() as u32;
        b.live -= tail_live;
        let tail_sets = b.sets.as_mut().and_then(|s| {
            let t = s.split_off(&tail_start);
            (!t.is_empty()).then(|| Box::new(t))
        });
        if b.sets.as_ref().is_some_and(|s| s.is_empty()) {
            b.sets = None;
        }
        let mut tail = Block {
            prefix: b.prefix.clone(),
            d: b.d,
            op: b.op,
            hlc: b.hlc,
            start: tail_start,
            vals: tail_vals,
            live: tail_live,
            sets: tail_sets,
        };
        b.trim();
        tail.trim();
        let head_empty = b.live == 0;
        let tail_empty = tail.live == 0;
        if !tail_empty {
            self.blocks.insert(bi + 1, tail);
        }
        if head_empty {
            self.blocks.remove(bi);
        }
    }

    /// Removes the elements of `span` that are still here; returns how many
    /// were not (removed before, by a concurrent op).
    pub fn remove_span(&mut self, span: &Span) -> u32 {
        if span.len == 0 {
            return 0;
        }
        let mut first_key = span.prefix.clone();
        first_key.push(span.last_level(span.first));
        let last_i = (u64::from(span.first) + u64::from(span.len) - 1).min(u64::from(u32::MAX));
        let mut last_key = span.prefix.clone();
        last_key.push(span.last_level(last_i as u32));
        // The block that may hold the first element, then every block up to
        // the last one.
        let mut bi = self.after(&first_key).saturating_sub(1);
        let mut removed = 0u32;
        let end = span.first as u64 + span.len as u64;
        while bi < self.blocks.len() {
            let b = &mut self.blocks[bi];
            if b.first_cmp(&last_key) == Ordering::Greater {
                break;
            }
            if b.same_run(&span.prefix, span.d, span.op) {
                let lo = span.first.max(b.start);
                let hi = (end.min(b.end() as u64)) as u32;
                for i in lo..hi {
                    if b.remove_at((i - b.start) as usize).is_some() {
                        removed += 1;
                    }
                }
                b.trim();
                if b.live == 0 {
                    self.blocks.remove(bi);
                    continue;
                }
            }
            bi += 1;
        }
        self.len -= removed as usize;
        debug_assert!(self.invariants_hold());
        span.len.saturating_sub(removed)
    }

    /// Removes the element at `at` (local pops), returning its value.
    pub fn remove_at(&mut self, at: At) -> Option<Bytes> {
        let b = self.blocks.get_mut(at.block)?;
        let v = b.remove_at(at.off)?;
        b.trim();
        if b.live == 0 {
            self.blocks.remove(at.block);
        }
        self.len -= 1;
        Some(v)
    }

    /// LSET of the element at `pos`: observed-remove of the values its origin
    /// had seen, then its own; the greatest `(hlc, origin)` shows. Nothing
    /// when the element was removed (a removal wins over a concurrent LSET).
    pub fn set(&mut self, ctx: &Ctx<'_>, pos: &[Level], value: &[u8]) {
        let Some((last, prefix)) = pos.split_last() else {
            return;
        };
        let bi = self.after(pos);
        if bi == 0 {
            return;
        }
        let b = &mut self.blocks[bi - 1];
        if !b.same_run(prefix, last.d, last.op) || last.i < b.start || last.i >= b.end() {
            return;
        }
        let off = (last.i - b.start) as usize;
        if b.vals[off].is_none() {
            return;
        }
        let reg = b
            .sets
            .get_or_insert_with(Default::default)
            .entry(last.i)
            .or_default();
        reg.write(ctx, Bytes::copy_from_slice(value));
        b.vals[off] = reg.value().cloned();
    }

    /// Observed-remove of every element `ctx` covers (DEL, a type change).
    pub fn prune(&mut self, ctx: &Ctx<'_>) {
        let before = self.len;
        self.blocks.retain(|b| !ctx.covers(b.op));
        self.len = self.blocks.iter().map(|b| b.live as usize).sum();
        debug_assert!(self.len <= before);
    }

    /// The stamp of the newest write (type conflicts).
    pub fn max_stamp(&self) -> Option<Stamp> {
        crate::crdt::max_stamp(
            self.blocks
                .iter()
                .map(|b| b.max_stamp())
                .collect::<Vec<_>>()
                .iter(),
        )
    }

    /// Bytes held, roughly.
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(Block::bytes).sum()
    }

    /// Builds a slot from blocks in position order (images, joins).
    pub fn from_blocks(blocks: Vec<Block>) -> ListSlot {
        let mut s = ListSlot {
            blocks: blocks.into_iter().filter(|b| b.live > 0).collect(),
            len: 0,
        };
        s.len = s.blocks.iter().map(|b| b.live as usize).sum();
        s
    }

    pub fn invariants_hold(&self) -> bool {
        let counts = self.blocks.iter().all(|b| {
            b.live as usize == b.vals.iter().filter(|v| v.is_some()).count()
                && b.live > 0
                && matches!(b.vals.front(), Some(Some(_)))
                && matches!(b.vals.back(), Some(Some(_)))
        });
        let sorted = self
            .blocks
            .iter()
            .zip(self.blocks.iter().skip(1))
            .all(|(a, b)| {
                let last = a.pos(a.vals.len() - 1);
                b.first_cmp(&last) == Ordering::Greater
            });
        counts && sorted && self.len == self.blocks.iter().map(|b| b.live as usize).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Origin, VersionVector};

    fn op(site: u16, seq: u64) -> OpId {
        OpId::new(Origin::new(site, 0), seq)
    }

    fn show(s: &ListSlot) -> Vec<String> {
        s.iter()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    fn push(s: &mut ListSlot, o: OpId, left: Option<usize>, vals: &[&str]) {
        let l = left.and_then(|i| s.at(i)).and_then(|a| s.pos(a));
        let r = match left {
            None => s.at(0),
            Some(i) => s.at(i + 1),
        }
        .and_then(|a| s.pos(a));
        let p = place_between(l.as_deref(), r.as_deref());
        let v: Vec<Bytes> = vals.iter().map(|x| Bytes::from(x.to_string())).collect();
        s.insert(&p, o, Hlc(o.seq), 0, &v);
    }

    #[test]
    fn inserts_land_between_their_neighbours_and_split_blocks() {
        let mut s = ListSlot::default();
        push(&mut s, op(1, 1), None, &["a", "b", "c"]);
        push(&mut s, op(1, 2), Some(0), &["x", "y"]);
        assert_eq!(show(&s), ["a", "x", "y", "b", "c"]);
        assert_eq!(s.blocks.len(), 3);
        push(&mut s, op(1, 3), Some(4), &["z"]);
        push(&mut s, op(1, 4), None, &["h"]);
        assert_eq!(show(&s), ["h", "a", "x", "y", "b", "c", "z"]);
        for k in 0..20 {
            push(&mut s, op(1, 10 + k), Some(0), &["n"]);
        }
        assert!(s.blocks.iter().all(|b| b.prefix.len() <= 2));
        assert!(s.invariants_hold());
        let at = s.at(3).unwrap();
        assert_eq!(s.value(at).unwrap(), &Bytes::from("n"));
    }

    #[test]
    fn removing_a_span_drops_emptied_blocks_and_counts_missing_elements() {
        let mut s = ListSlot::default();
        push(&mut s, op(1, 1), None, &["a", "b", "c", "d"]);
        push(&mut s, op(1, 2), Some(1), &["x"]);
        let span = Span {
            prefix: vec![],
            d: 0,
            op: op(1, 1),
            first: 1,
            len: 3,
        };
        assert_eq!(s.remove_span(&span), 0);
        assert_eq!(show(&s), ["a", "x"]);
        assert_eq!(s.remove_span(&span), 3);
        let vv = VersionVector::default();
        let ctx = Ctx {
            deps: &vv,
            own: op(1, 1),
            hlc: Hlc(9),
            fold: false,
        };
        s.prune(&ctx);
        assert_eq!(show(&s), ["x"]);
        assert!(s.invariants_hold());
    }

    /// One local edit of the model test: a run at a gap, or a removal.
    #[derive(Clone, Debug)]
    enum Edit {
        Insert { gap: usize, n: usize },
        Remove { at: usize },
        RemoveRun { at: usize, n: usize },
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0usize..64, 1usize..4).prop_map(|(gap, n)| Edit::Insert { gap, n }),
            1 => (0usize..64).prop_map(|at| Edit::Remove { at }),
            1 => (0usize..64, 1usize..5).prop_map(|(at, n)| Edit::RemoveRun { at, n }),
        ]
    }

    proptest::proptest! {
        /// Against a `Vec`: inserts at any gap (head, tail, inside a block)
        /// and removals anywhere leave the same sequence, index lookups
        /// agree, and the invariants hold.
        #[test]
        fn matches_a_vec_model(edits in proptest::collection::vec(edit(), 1..80)) {
            let mut s = ListSlot::default();
            let mut model: Vec<String> = Vec::new();
            for (k, e) in edits.into_iter().enumerate() {
                let o = op(1, k as u64 + 1);
                match e {
                    Edit::Insert { gap, n } => {
                        let gap = gap % (model.len() + 1);
                        let l = gap.checked_sub(1).and_then(|i| s.at(i)).and_then(|a| s.pos(a));
                        let r = s.at(gap).and_then(|a| s.pos(a));
                        let p = place_between(l.as_deref(), r.as_deref());
                        let vals: Vec<String> = (0..n).map(|j| format!("{k}.{j}")).collect();
                        let b: Vec<Bytes> = vals.iter().map(|v| Bytes::from(v.clone())).collect();
                        s.insert(&p, o, Hlc(k as u64), 0, &b);
                        for (j, v) in vals.into_iter().enumerate() {
                            model.insert(gap + j, v);
                        }
                    }
                    Edit::Remove { at } if !model.is_empty() => {
                        let at = at % model.len();
                        let x = s.at(at).unwrap();
                        s.remove_at(x);
                        model.remove(at);
                    }
                    Edit::RemoveRun { at, n } if !model.is_empty() => {
                        let at = at % model.len();
                        let n = n.min(model.len() - at);
                        let spans: Vec<Span> =
                            (at..at + n).filter_map(|i| s.at(i).and_then(|x| s.span_of(x))).collect();
                        for sp in &spans {
                            proptest::prop_assert_eq!(s.remove_span(sp), 0);
                        }
                        model.drain(at..at + n);
                    }
                    _ => {}
                }
                proptest::prop_assert!(s.invariants_hold());
                proptest::prop_assert_eq!(show(&s), model.clone());
                for (i, v) in model.iter().enumerate() {
                    let got = s.at(i).and_then(|a| s.value(a)).cloned();
                    proptest::prop_assert_eq!(got, Some(Bytes::from(v.clone())));
                }
                proptest::prop_assert_eq!(s.at(model.len()), None);
            }
        }
    }
}
