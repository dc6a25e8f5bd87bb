//! Typed value slots of a row: string (register + counter), hash, set, sorted
//! set, list.
//!
//! Each slot holds CRDT entries only; what a reader sees (the "visible" value)
//! is computed from them. Slots never hold empty members: an element whose last
//! dot was removed is dropped at once, so "empty slot" means "no such type".

use crate::crdt::{prune_dots, readd_dots, Counter, Ctx, Dots, MvReg, Stamp};
use crate::ld::{self, Exact, Ld};
use crate::redis::num;
use bytes::Bytes;
use indexmap::IndexMap;

pub mod hll;
pub mod list;
pub mod ranked;
pub use hll::HllSlot;
pub use list::ListSlot;
pub use ranked::RankedSet;
use std::sync::atomic::{AtomicU64, Ordering};

static HASH_SEED: AtomicU64 = AtomicU64::new(0x6368_6f72_7573_2121);

/// Sets the seed of every hash map the engine makes from now on. A server sets a
/// random one at start (hash flooding); the simulator keeps a fixed one.
pub fn set_hash_seed(seed: u64) {
    HASH_SEED.store(seed, Ordering::Relaxed);
}

pub type Hasher = foldhash::fast::FixedState;

/// The map of a hash, set or sorted set: a hash index over a dense vector of
/// entries. Besides lookups it gives the entry at a position in O(1) (random
/// picks) and lets HSCAN/SSCAN/ZSCAN walk positions (see
/// `cmd::scan_window`). Removal is always `swap_remove` (the last entry
/// fills the hole) or `retain` (order kept); no entry ever moves to a higher
/// position, which the scan cursor relies on.
pub type Map<V> = IndexMap<Bytes, V, Hasher>;

pub fn hasher() -> Hasher {
    foldhash::fast::FixedState::with_seed(HASH_SEED.load(Ordering::Relaxed))
}

pub fn new_map<V>() -> Map<V> {
    IndexMap::with_hasher(hasher())
}

/// The entry for `k`, inserted as `V::default()` under a copy of `k` when
/// absent. Stored keys and values are always copies: a payload of an op may
/// be a slice of a client's read buffer, which a row must never pin.
pub fn entry_mut<'a, V: Default>(map: &'a mut Map<V>, k: &[u8]) -> &'a mut V {
    if !map.contains_key(k) {
        map.insert(Bytes::copy_from_slice(k), V::default());
    }
    match map.get_mut(k) {
        Some(v) => v,
        None => unreachable!("entry inserted above"),
    }
}

/// A copy of `b` in its own allocation (see [`entry_mut`]).
#[inline]
pub fn own(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// The five value types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    String,
    Hash,
    Set,
    ZSet,
    List,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::List => "list",
        }
    }
}

/// A register-or-counter cell: strings and hash fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cell {
    pub reg: MvReg<Bytes>,
    pub ctr: Counter,
}

impl Cell {
    pub fn is_empty(&self) -> bool {
        self.reg.is_empty() && self.ctr.is_empty()
    }

    pub fn prune(&mut self, ctx: &Ctx<'_>) -> bool {
        let a = self.reg.prune(ctx);
        let b = self.ctr.prune(ctx);
        a || b
    }

    pub fn set(&mut self, ctx: &Ctx<'_>, value: Bytes) {
        self.ctr.prune(ctx);
        self.reg.write(ctx, value);
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        match (self.reg.max_stamp(), self.ctr.max_stamp()) {
            (Some(a), Some(b)) => Some(if a.wins_over(&b) { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// The visible value as an exact integer, without formatting it, when it
    /// is an integer base (or none) plus integer increments; `None` when only
    /// the shown bytes can tell (a float increment, a non-integer base).
    pub fn int_value(&self) -> Option<i128> {
        if self.ctr.has_float() || self.ctr.has_exact() {
            return None;
        }
        let base = match self.reg.value() {
            None => 0,
            Some(b) => i128::from(num::parse_int(b)?),
        };
        Some(base + self.ctr.int_sum())
    }

    /// The exact number the cell holds when it has float increments: the
    /// base read as INCRBYFLOAT reads it, plus every increment. `None` when
    /// there are none, or the base is not a finite float (the increments are
    /// then not shown).
    pub fn float_total(&self) -> Option<Exact> {
        if !self.ctr.has_float() && !self.ctr.has_exact() {
            return None;
        }
        self.number_total()
    }

    /// The exact number the cell holds, increments shown or not: the base
    /// read as INCRBYFLOAT reads it (`None` when it is not a finite float)
    /// plus every increment. A float increment starts from this, so the
    /// integer increments a non-integer base hides are not brought back.
    pub fn number_total(&self) -> Option<Exact> {
        let base = match self.reg.value() {
            None => Exact::zero(),
            Some(b) => match ld::parse(b) {
                Some(Ld::Finite(v)) => v,
                _ => return None,
            },
        };
        Some(
            base.add(&Exact::from_int(self.ctr.int_sum()))
                .add(&self.ctr.exact_sum())
                .add(&Exact::from_f64(self.ctr.float_sum())),
        )
    }

    /// The visible bytes. A counter on top of an integer base shows the exact
    /// sum; float increments show the exact total rounded and printed as
    /// INCRBYFLOAT prints; on top of a base that is not a number the
    /// increments are not shown.
    pub fn value(&self) -> Option<Bytes> {
        if self.ctr.is_empty() {
            return self.reg.value().cloned();
        }
        let base = self.reg.value();
        if self.ctr.has_float() || self.ctr.has_exact() {
            return match self.float_total() {
                Some(total) => Some(Bytes::from(ld::show(&total))),
                None => base.cloned(),
            };
        }
        let b: i128 = match base {
            None => 0,
            Some(b) => match num::parse_int(b) {
                Some(i) => i as i128,
                None => return base.cloned(),
            },
        };
        Some(Bytes::from((b + self.ctr.int_sum()).to_string()))
    }
}

/// Hash: field -> cell; fields are observed-remove (a concurrent HSET beats an
/// HDEL that had not seen it, because the HSET's dot is not in the HDEL's context).
#[derive(Clone, Debug)]
pub struct HashSlot {
    pub fields: Map<Cell>,
}

impl Default for HashSlot {
    fn default() -> Self {
        HashSlot { fields: new_map() }
    }
}

impl HashSlot {
    pub fn prune(&mut self, ctx: &Ctx<'_>) {
        self.fields.retain(|_, c| {
            c.prune(ctx);
            !c.is_empty()
        });
    }
    pub fn max_stamp(&self) -> Option<Stamp> {
        crate::crdt::max_stamp(
            self.fields
                .values()
                .filter_map(|c| c.max_stamp())
                .collect::<Vec<_>>()
                .iter(),
        )
    }
}

/// Add-wins observed-remove set.
#[derive(Clone, Debug)]
pub struct SetSlot {
    pub members: Map<Dots>,
}

impl Default for SetSlot {
    fn default() -> Self {
        SetSlot { members: new_map() }
    }
}

impl SetSlot {
    pub fn add(&mut self, ctx: &Ctx<'_>, m: &[u8]) {
        readd_dots(entry_mut(&mut self.members, m), ctx);
    }
    pub fn remove(&mut self, ctx: &Ctx<'_>, m: &[u8]) {
        if let Some(d) = self.members.get_mut(m) {
            prune_dots(d, ctx);
            if d.is_empty() {
                self.members.swap_remove(m);
            }
        }
    }
    pub fn prune(&mut self, ctx: &Ctx<'_>) {
        self.members.retain(|_, d| {
            prune_dots(d, ctx);
            !d.is_empty()
        });
    }
    pub fn max_stamp(&self) -> Option<Stamp> {
        crate::crdt::max_stamp(self.members.values().flat_map(|d| d.iter()))
    }
}

/// Total order on scores for the sorted-set index (-0.0 is stored as 0.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64);
impl Eq for Score {}
impl std::hash::Hash for Score {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One sorted-set member: membership dots (add wins), score register (ZADD)
/// and score counter (ZINCRBY).
#[derive(Clone, Debug, Default)]
pub struct ZMember {
    pub adds: Dots,
    pub reg: MvReg<f64>,
    pub ctr: Counter,
}

impl ZMember {
    pub fn score(&self) -> f64 {
        let base = self.reg.value().copied().unwrap_or(0.0);
        let s = if self.ctr.is_empty() {
            base
        } else {
            base + self.ctr.float_sum()
        };
        if s.is_nan() {
            // +inf and -inf added concurrently at two sites; Redis has no NaN
            // scores, so every site shows 0 alike.
            0.0
        } else if s == 0.0 {
            0.0
        } else {
            s
        }
    }
    fn prune(&mut self, ctx: &Ctx<'_>) {
        prune_dots(&mut self.adds, ctx);
        self.reg.prune(ctx);
        self.ctr.prune(ctx);
    }
}

/// Sorted set: members plus an ordered index of visible `(score, member)`
/// with ranks (ZRANK, ranges by rank and counts in O(log N)).
#[derive(Clone, Debug)]
pub struct ZSetSlot {
    pub members: Map<ZMember>,
    pub index: RankedSet<(Score, Bytes)>,
}

impl Default for ZSetSlot {
    fn default() -> Self {
        ZSetSlot {
            members: new_map(),
            index: RankedSet::default(),
        }
    }
}

impl ZSetSlot {
    /// Applies `f` to one member and keeps the index in step with its score.
    fn update(&mut self, m: &[u8], f: impl FnOnce(&mut ZMember)) {
        let entry = entry_mut(&mut self.members, m);
        let old = if entry.adds.is_empty() {
            None
        } else {
            Some(entry.score())
        };
        f(entry);
        let new = if entry.adds.is_empty() {
            None
        } else {
            Some(entry.score())
        };
        if old.map(f64::to_bits) == new.map(f64::to_bits) {
            if new.is_none() {
                self.members.swap_remove(m);
            }
            return;
        }
        // The index shares the member's stored key.
        let key = match self.members.get_key_value(m) {
            Some((k, _)) => k.clone(),
            None => own(m),
        };
        if new.is_none() {
            self.members.swap_remove(m);
        }
        if let Some(o) = old {
            self.index.remove(&(Score(o), key.clone()));
        }
        if let Some(n) = new {
            self.index.insert((Score(n), key));
        }
    }
    pub fn add(&mut self, ctx: &Ctx<'_>, m: &[u8], score: f64) {
        self.update(m, |z| {
            readd_dots(&mut z.adds, ctx);
            z.ctr.prune(ctx);
            z.reg.write(ctx, score);
        });
    }
    pub fn incr(&mut self, ctx: &Ctx<'_>, m: &[u8], delta: f64) {
        self.update(m, |z| {
            readd_dots(&mut z.adds, ctx);
            z.ctr.add(ctx, 0, delta);
        });
    }
    pub fn remove(&mut self, ctx: &Ctx<'_>, m: &[u8]) {
        if self.members.contains_key(m) {
            self.update(m, |z| z.prune(ctx));
        }
    }
    pub fn prune(&mut self, ctx: &Ctx<'_>) {
        let keys: Vec<Bytes> = self.members.keys().cloned().collect();
        for k in keys {
            self.remove(ctx, &k);
        }
    }
    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.members.get(m).map(|z| z.score())
    }
    pub fn max_stamp(&self) -> Option<Stamp> {
        crate::crdt::max_stamp(self.members.values().flat_map(|z| z.adds.iter()))
    }
    /// Rebuilds the index from the members (after decoding or merging).
    pub fn reindex(&mut self) {
        let mut index = RankedSet::default();
        for (m, z) in self.members.iter() {
            index.insert((Score(z.score()), m.clone()));
        }
        self.index = index;
    }
}
