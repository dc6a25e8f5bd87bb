//! A row: the CRDT state of one key, with one slot per type and an expiry register.
//!
//! Normally one slot is live. Two live slots mean a type conflict (SET at one site,
//! SADD at another, concurrently): the key shows the type whose newest entry has
//! the greater `(hlc, origin)`. Every typed write removes the entries of the other
//! types that its origin had seen, so losers vanish once a write that saw them
//! supersedes them. Expiry is a multi-value register of deadlines: a PERSIST entry
//! beats any concurrent EXPIRE, otherwise the latest deadline wins.

use super::value::list::Place;
use super::value::{entry_mut, own, Cell, HashSlot, HllSlot, Kind, ListSlot, SetSlot, ZSetSlot};
use crate::crdt::{Ctx, MvReg, Stamp};
use crate::op::{Effect, Value};
use bytes::Bytes;

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub string: Option<Box<Cell>>,
    pub hash: Option<Box<HashSlot>>,
    pub set: Option<Box<SetSlot>>,
    pub zset: Option<Box<ZSetSlot>>,
    pub list: Option<Box<ListSlot>>,
    /// A HyperLogLog: a string to clients (its kind is `Kind::String`),
    /// shown as Redis's encoding of its registers.
    pub hll: Option<Box<HllSlot>>,
    pub expiry: Option<Box<MvReg<Option<u64>>>>,
    /// The hash this row adds to its digest leaf, and a stale flag (see
    /// [`super::digest`]); not part of the row's state.
    pub(crate) digest: u64,
}

/// Which counter of a row an increment went to (see [`Row::fold_to`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FoldPart {
    String,
    Field(Bytes),
    Member(Bytes),
}

impl FoldPart {
    /// The counter an effect increments, if it is an increment.
    pub fn of(effect: &Effect) -> Option<FoldPart> {
        match effect {
            Effect::IncrInt(_) | Effect::IncrFloat(_) => Some(FoldPart::String),
            Effect::HIncrInt(f, _) | Effect::HIncrFloat(f, _) => Some(FoldPart::Field(f.clone())),
            Effect::ZIncr(m, _) => Some(FoldPart::Member(m.clone())),
            _ => None,
        }
    }
}

/// What applying an effect changed, for stats and the expiry index.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyNote {
    /// The row now has two or more live types.
    pub type_conflict: bool,
    /// Elements a pop named that were already removed (a concurrent pop,
    /// LREM, LTRIM or DEL at another site).
    pub pop_conflicts: u32,
}

impl Row {
    /// Entries held, roughly: members, fields and counter increments (what
    /// copying or encoding the row costs).
    pub fn elements(&self) -> usize {
        let cell = |c: &Cell| 1 + c.ctr.len();
        self.string.as_deref().map_or(0, cell)
            + self.hash.as_ref().map_or(0, |h| h.fields.len())
            + self.set.as_ref().map_or(0, |s| s.members.len())
            + self.zset.as_ref().map_or(0, |z| z.members.len())
            + self.list.as_ref().map_or(0, |l| l.len())
            + self.hll.as_ref().map_or(0, |h| h.entries.len())
    }

    /// Folds one counter of the row (the string's, a hash field's or a
    /// sorted-set member's score) up to the stable vector (see
    /// [`crate::stability`]). Returns whether anything was folded, and
    /// whether the counter still holds more than one entry of an origin.
    pub fn fold_to(&mut self, part: &FoldPart, stable: &crate::id::VersionVector) -> (bool, bool) {
        let ctr = match part {
            FoldPart::String => self.string.as_deref_mut().map(|c| &mut c.ctr),
            FoldPart::Field(f) => self
                .hash
                .as_deref_mut()
                .and_then(|h| h.fields.get_mut(f.as_ref()))
                .map(|c| &mut c.ctr),
            FoldPart::Member(m) => self
                .zset
                .as_deref_mut()
                .and_then(|z| z.members.get_mut(m.as_ref()))
                .map(|z| &mut z.ctr),
        };
        ctr.map_or((false, false), |c| c.fold_to(stable))
    }

    /// Live types, in `Kind` order.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        [
            (self.string.is_some() || self.hll.is_some()).then_some(Kind::String),
            self.hash.as_ref().map(|_| Kind::Hash),
            self.set.as_ref().map(|_| Kind::Set),
            self.zset.as_ref().map(|_| Kind::ZSet),
            self.list.as_ref().map(|_| Kind::List),
        ]
        .into_iter()
        .flatten()
    }

    fn live_count(&self) -> usize {
        (self.string.is_some() || self.hll.is_some()) as usize
            + self.hash.is_some() as usize
            + self.set.is_some() as usize
            + self.zset.is_some() as usize
            + self.list.is_some() as usize
    }

    /// The visible type (None: the key does not exist, TTL aside).
    pub fn kind(&self) -> Option<Kind> {
        if self.live_count() <= 1 {
            return self.kinds().next();
        }
        let mut best: Option<(Stamp, Kind)> = None;
        for k in self.kinds().collect::<Vec<_>>() {
            if let Some(s) = self.kind_stamp(k) {
                match best {
                    Some((b, _)) if b.wins_over(&s) => {}
                    _ => best = Some((s, k)),
                }
            }
        }
        best.map(|b| b.1)
    }

    fn kind_stamp(&self, k: Kind) -> Option<Stamp> {
        match k {
            Kind::String => {
                let s = self.string.as_ref().and_then(|c| c.max_stamp());
                let h = self.hll.as_ref().and_then(|h| h.max_stamp());
                crate::crdt::max_stamp(s.iter().chain(h.iter()))
            }
            Kind::Hash => self.hash.as_ref().and_then(|h| h.max_stamp()),
            Kind::Set => self.set.as_ref().and_then(|s| s.max_stamp()),
            Kind::ZSet => self.zset.as_ref().and_then(|z| z.max_stamp()),
            Kind::List => self.list.as_ref().and_then(|l| l.max_stamp()),
        }
    }

    /// No entries at all: the row can be dropped.
    pub fn is_empty(&self) -> bool {
        self.live_count() == 0 && self.expiry.is_none()
    }

    /// The visible deadline (ms since the epoch), if any.
    pub fn deadline(&self) -> Option<u64> {
        let reg = self.expiry.as_ref()?;
        let mut best: Option<u64> = None;
        for (_, d) in reg.entries() {
            match d {
                None => return None,
                Some(d) => best = Some(best.map_or(*d, |b: u64| b.max(*d))),
            }
        }
        best
    }

    /// The origin of the winning deadline entry (the site that replicates the
    /// delete when the key expires).
    pub fn deadline_owner(&self) -> Option<Stamp> {
        let reg = self.expiry.as_ref()?;
        let d = self.deadline()?;
        reg.entries()
            .filter(|(_, x)| *x == Some(d))
            .map(|(s, _)| *s)
            .max_by_key(|s| s.lww_key())
    }

    /// The visible string: the string cell's value, or the encoding of the
    /// HyperLogLog when it holds the greater stamp of the two.
    pub fn string_value(&self) -> Option<Bytes> {
        match self.visible_hll() {
            Some(h) => Some(Bytes::from(crate::redis::hll::encode(&h.registers()))),
            None => self.string.as_ref().and_then(|c| c.value()),
        }
    }

    /// The HyperLogLog, when it is what the key shows: a string write and
    /// an HLL write made concurrently show the greater stamp, as types do
    /// (and another type may show over both).
    pub fn visible_hll(&self) -> Option<&HllSlot> {
        let h = self.hll.as_deref()?;
        if self.kind() != Some(Kind::String) {
            return None;
        }
        match self.string.as_ref().and_then(|c| c.max_stamp()) {
            None => Some(h),
            Some(s) => h.max_stamp().filter(|m| m.wins_over(&s)).map(|_| h),
        }
    }

    /// The string cell, when it is what the key shows (not a HyperLogLog).
    pub fn visible_string(&self) -> Option<&Cell> {
        match self.visible_hll() {
            Some(_) => None,
            None => self.string.as_deref(),
        }
    }

    fn prune_hll(&mut self, ctx: &Ctx<'_>) {
        if let Some(h) = &mut self.hll {
            h.prune(ctx);
            if h.is_empty() {
                self.hll = None;
            }
        }
    }

    fn prune_string(&mut self, ctx: &Ctx<'_>) {
        if let Some(c) = &mut self.string {
            c.prune(ctx);
            if c.is_empty() {
                self.string = None;
            }
        }
    }

    /// Observed-remove of everything (TTL too unless `keep_ttl`).
    pub fn prune_all(&mut self, ctx: &Ctx<'_>, keep_ttl: bool) {
        self.prune_except(None, ctx);
        if !keep_ttl {
            self.prune_ttl(ctx);
        }
    }

    fn prune_ttl(&mut self, ctx: &Ctx<'_>) {
        if let Some(e) = &mut self.expiry {
            e.prune(ctx);
            if e.is_empty() {
                self.expiry = None;
            }
        }
    }

    /// Observed-remove of every type except `keep`.
    fn prune_except(&mut self, keep: Option<Kind>, ctx: &Ctx<'_>) {
        if keep != Some(Kind::String) {
            self.prune_string(ctx);
            self.prune_hll(ctx);
        }
        if keep != Some(Kind::Hash) {
            if let Some(h) = &mut self.hash {
                h.prune(ctx);
                if h.fields.is_empty() {
                    self.hash = None;
                }
            }
        }
        if keep != Some(Kind::Set) {
            if let Some(s) = &mut self.set {
                s.prune(ctx);
                if s.members.is_empty() {
                    self.set = None;
                }
            }
        }
        if keep != Some(Kind::ZSet) {
            if let Some(z) = &mut self.zset {
                z.prune(ctx);
                if z.members.is_empty() {
                    self.zset = None;
                }
            }
        }
        if keep != Some(Kind::List) {
            if let Some(l) = &mut self.list {
                l.prune(ctx);
                if l.is_empty() {
                    self.list = None;
                }
            }
        }
    }

    /// Applies one effect with the causal context of its op.
    pub fn apply(&mut self, effect: &Effect, ctx: &Ctx<'_>) -> ApplyNote {
        let mut pop_conflicts = 0;
        match effect {
            Effect::SetString { value, keep_ttl } => {
                // prune_all, except that the string slot keeps its allocation:
                // `Cell::set` prunes its register and counter itself.
                self.prune_except(Some(Kind::String), ctx);
                self.prune_hll(ctx);
                if !*keep_ttl {
                    self.prune_ttl(ctx);
                }
                // Concurrent writes (not covered by ctx) stay beside this one.
                self.string
                    .get_or_insert_with(Default::default)
                    .set(ctx, own(value));
            }
            Effect::IncrInt(d) => {
                self.prune_except(Some(Kind::String), ctx);
                self.prune_hll(ctx);
                self.string
                    .get_or_insert_with(Default::default)
                    .ctr
                    .add(ctx, *d as i128, 0.0);
            }
            Effect::IncrFloat(d) => {
                self.prune_except(Some(Kind::String), ctx);
                self.prune_hll(ctx);
                self.string
                    .get_or_insert_with(Default::default)
                    .ctr
                    .add_exact(ctx, d);
            }
            Effect::Del => self.prune_all(ctx, false),
            Effect::HllRaise { regs, replace } => {
                // It removes the string it had seen; turning a string of HLL
                // bytes into registers, it replaces the HLL entries it had
                // seen too (the string hid them, and the op carries every
                // register).
                self.prune_except(Some(Kind::String), ctx);
                self.prune_string(ctx);
                if *replace {
                    self.prune_hll(ctx);
                }
                self.hll
                    .get_or_insert_with(Default::default)
                    .raise(ctx, regs);
            }
            Effect::Expire(deadline) => {
                self.expiry
                    .get_or_insert_with(Default::default)
                    .write(ctx, *deadline);
            }
            Effect::HSet(pairs) => {
                self.prune_except(Some(Kind::Hash), ctx);
                let h = self.hash.get_or_insert_with(Default::default);
                for (f, v) in pairs {
                    entry_mut(&mut h.fields, f).set(ctx, own(v));
                }
            }
            Effect::HDel(fields) => {
                self.prune_except(Some(Kind::Hash), ctx);
                if let Some(h) = &mut self.hash {
                    for f in fields {
                        if let Some(c) = h.fields.get_mut(f) {
                            c.prune(ctx);
                            if c.is_empty() {
                                h.fields.swap_remove(f);
                            }
                        }
                    }
                    if h.fields.is_empty() {
                        self.hash = None;
                    }
                }
            }
            Effect::HIncrInt(f, d) => {
                self.prune_except(Some(Kind::Hash), ctx);
                let h = self.hash.get_or_insert_with(Default::default);
                entry_mut(&mut h.fields, f).ctr.add(ctx, *d as i128, 0.0);
            }
            Effect::HIncrFloat(f, d) => {
                self.prune_except(Some(Kind::Hash), ctx);
                let h = self.hash.get_or_insert_with(Default::default);
                entry_mut(&mut h.fields, f).ctr.add_exact(ctx, d);
            }
            Effect::SAdd(ms) => {
                self.prune_except(Some(Kind::Set), ctx);
                let s = self.set.get_or_insert_with(Default::default);
                for m in ms {
                    s.add(ctx, m);
                }
            }
            Effect::SRem(ms) => {
                self.prune_except(Some(Kind::Set), ctx);
                if let Some(s) = &mut self.set {
                    for m in ms {
                        s.remove(ctx, m);
                    }
                    if s.members.is_empty() {
                        self.set = None;
                    }
                }
            }
            Effect::ZAdd(ms) => {
                self.prune_except(Some(Kind::ZSet), ctx);
                let z = self.zset.get_or_insert_with(Default::default);
                for (m, score) in ms {
                    z.add(ctx, m, *score);
                }
            }
            Effect::ZIncr(m, d) => {
                self.prune_except(Some(Kind::ZSet), ctx);
                self.zset
                    .get_or_insert_with(Default::default)
                    .incr(ctx, m, *d);
            }
            Effect::ZRem(ms) => {
                self.prune_except(Some(Kind::ZSet), ctx);
                if let Some(z) = &mut self.zset {
                    for m in ms {
                        z.remove(ctx, m);
                    }
                    if z.members.is_empty() {
                        self.zset = None;
                    }
                }
            }
            Effect::Replace { value, keep_ttl } => {
                self.prune_all(ctx, *keep_ttl);
                match value {
                    Value::Str(b) => {
                        self.string
                            .get_or_insert_with(Default::default)
                            .set(ctx, own(b));
                    }
                    Value::Hash(pairs) => {
                        let h = self.hash.get_or_insert_with(Default::default);
                        for (f, v) in pairs {
                            entry_mut(&mut h.fields, f).set(ctx, own(v));
                        }
                    }
                    Value::Set(ms) => {
                        let s = self.set.get_or_insert_with(Default::default);
                        for m in ms {
                            s.add(ctx, m);
                        }
                    }
                    Value::ZSet(ms) => {
                        let z = self.zset.get_or_insert_with(Default::default);
                        for (m, score) in ms {
                            z.add(ctx, m, *score);
                        }
                    }
                    Value::List(vs) => {
                        let place = Place {
                            prefix: Vec::new(),
                            d: 0,
                        };
                        self.list
                            .get_or_insert_with(Default::default)
                            .insert(&place, ctx.own, ctx.hlc, 0, vs);
                    }
                }
                self.drop_empty();
            }
            Effect::FlushDb | Effect::FlushAll => self.prune_all(ctx, false),
            Effect::ListInsert {
                place,
                first,
                values,
            } => {
                self.prune_except(Some(Kind::List), ctx);
                self.list
                    .get_or_insert_with(Default::default)
                    .insert(place, ctx.own, ctx.hlc, *first, values);
                self.drop_empty();
            }
            Effect::ListRemove { spans, pop } => {
                self.prune_except(Some(Kind::List), ctx);
                let mut missing = 0;
                match &mut self.list {
                    Some(l) => {
                        for s in spans {
                            missing += l.remove_span(s);
                        }
                    }
                    None => missing = spans.iter().map(|s| s.len).sum(),
                }
                if *pop {
                    pop_conflicts = missing;
                }
                self.drop_empty();
            }
            Effect::ListSet { pos, value } => {
                self.prune_except(Some(Kind::List), ctx);
                if let Some(l) = &mut self.list {
                    l.set(ctx, pos, value);
                }
            }
        }
        ApplyNote {
            type_conflict: self.live_count() > 1,
            pop_conflicts,
        }
    }

    fn drop_empty(&mut self) {
        if self.hash.as_ref().is_some_and(|h| h.fields.is_empty()) {
            self.hash = None;
        }
        if self.set.as_ref().is_some_and(|s| s.members.is_empty()) {
            self.set = None;
        }
        if self.zset.as_ref().is_some_and(|z| z.members.is_empty()) {
            self.zset = None;
        }
        if self.list.as_ref().is_some_and(|l| l.is_empty()) {
            self.list = None;
        }
    }
}
