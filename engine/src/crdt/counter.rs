//! Counter: one dotted entry per increment op, removable by observed-remove.
//!
//! INCR at a site adds an entry `(dot, delta)`; SET/DEL remove the entries their
//! origin had seen, so unobserved (concurrent) increments survive on top of the
//! new base. Integer sums are exact in i128. Score increments (ZINCRBY, f64)
//! are summed per origin in seq order and then in ascending origin order, so
//! every site gets the same bits whatever order the increments arrived in.
//!
//! Float increments of strings and hash fields (INCRBYFLOAT, HINCRBYFLOAT) are
//! kept apart, as exact binary fractions ([`ExactEntry`]): each is the exact
//! change its origin made to the value it saw (Redis's long double step,
//! rounded and printed the way Redis does it). Exact sums are commutative, so
//! every site's sum is the same, and at the origin the value after the step is
//! exactly what Redis would store.

use super::{Ctx, Stamp};
use crate::id::{Origin, VersionVector};
use crate::ld::Exact;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterEntry {
    pub stamp: Stamp,
    pub int: i128,
    pub float: f64,
}

/// A float increment of a string or hash field: the exact change its op made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExactEntry {
    pub stamp: Stamp,
    pub delta: Exact,
}

/// Entries sorted by dot, plus their sums kept up to date as increments
/// arrive, so INCR on a counter with many entries costs no walk over them.
///
/// Most strings and hash fields never see an increment, so the state lives
/// behind one pointer that is null when there are no entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counter(Option<Box<State>>);

#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    entries: Vec<CounterEntry>,
    sums: Sums,
    /// Float increments of strings and hash fields, sorted by dot.
    exact: Vec<ExactEntry>,
    /// Their exact sum.
    exact_sum: Exact,
}

fn exact_sum(entries: &[ExactEntry]) -> Exact {
    entries
        .iter()
        .fold(Exact::zero(), |total, e| total.add(&e.delta))
}

/// Aggregates of the entries, always equal to what a walk over them gives
/// (`recompute` is that walk; the incremental updates produce the same bits).
#[derive(Clone, Debug, Default, PartialEq)]
struct Sums {
    int: i128,
    /// Entries whose float part shows (non-zero or negative zero).
    float_entries: usize,
    /// Per origin, ascending: the float sum of its entries but the last one
    /// (in seq order), and the last entry's float. The origin's part is
    /// `before_last + last`, bit for bit the sequential sum.
    parts: Vec<(Origin, f64, f64)>,
}

fn shows_float(f: f64) -> bool {
    f != 0.0 || f.is_sign_negative()
}

impl Sums {
    fn recompute(entries: &[CounterEntry]) -> Sums {
        let mut s = Sums::default();
        for e in entries {
            s.int += e.int;
            s.float_entries += shows_float(e.float) as usize;
            match s.parts.last_mut() {
                Some(p) if p.0 == e.stamp.dot.origin => {
                    p.1 += p.2;
                    p.2 = e.float;
                }
                _ => s.parts.push((e.stamp.dot.origin, 0.0, e.float)),
            }
        }
        s
    }
}

impl State {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.exact.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.exact.len()
    }

    pub fn prune(&mut self, ctx: &Ctx<'_>) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| !ctx.covers(e.stamp.dot));
        let changed = before != self.entries.len();
        if changed {
            self.sums = Sums::recompute(&self.entries);
        }
        let before = self.exact.len();
        self.exact.retain(|e| !ctx.covers(e.stamp.dot));
        let exact_changed = before != self.exact.len();
        if exact_changed {
            self.exact_sum = exact_sum(&self.exact);
        }
        changed || exact_changed
    }

    /// Adds a float increment of the op in `ctx` (two of one op add up).
    pub fn add_exact(&mut self, ctx: &Ctx<'_>, delta: &Exact) {
        let dot = ctx.own;
        let found = match self.exact.last() {
            Some(e) if e.stamp.dot == dot => Ok(self.exact.len() - 1),
            Some(e) if e.stamp.dot < dot => Err(self.exact.len()),
            None => Err(0),
            _ => self.exact.binary_search_by_key(&dot, |e| e.stamp.dot),
        };
        match found {
            Ok(i) => self.exact[i].delta = self.exact[i].delta.add(delta),
            Err(i) => self.exact.insert(
                i,
                ExactEntry {
                    stamp: ctx.stamp(),
                    delta: delta.clone(),
                },
            ),
        }
        self.exact_sum = self.exact_sum.add(delta);
    }

    /// Adds an increment of the op in `ctx` (two increments of one op add up).
    /// Ops of one origin arrive in seq order, so the entry is its origin's last
    /// and the sums update in O(1); anything else recomputes them.
    pub fn add(&mut self, ctx: &Ctx<'_>, int: i128, float: f64) {
        let dot = ctx.own;
        let origin = dot.origin;
        let is_origins_last = |entries: &[CounterEntry], i: usize| {
            entries
                .get(i + 1)
                .is_none_or(|next| next.stamp.dot.origin != origin)
        };
        // The usual increment is the newest entry of the newest part: look at
        // the ends before searching (a binary search over a long counter
        // touches a cache line per step).
        let part = match self.sums.parts.last() {
            Some(p) if p.0 == origin => Ok(self.sums.parts.len() - 1),
            Some(p) if p.0 < origin => Err(self.sums.parts.len()),
            _ => self.sums.parts.binary_search_by_key(&origin, |p| p.0),
        };
        let found = match self.entries.last() {
            Some(e) if e.stamp.dot == dot => Ok(self.entries.len() - 1),
            Some(e) if e.stamp.dot < dot => Err(self.entries.len()),
            None => Err(0),
            _ => self.entries.binary_search_by_key(&dot, |e| e.stamp.dot),
        };
        match found {
            Ok(i) => {
                let e = &mut self.entries[i];
                let showed = shows_float(e.float);
                e.int += int;
                e.float += float;
                let (shows, new_float) = (shows_float(e.float), e.float);
                match part {
                    Ok(p) if is_origins_last(&self.entries, i) => {
                        self.sums.int += int;
                        self.sums.float_entries =
                            self.sums.float_entries - showed as usize + shows as usize;
                        self.sums.parts[p].2 = new_float;
                    }
                    _ => self.sums = Sums::recompute(&self.entries),
                }
            }
            Err(i) => {
                self.entries.insert(
                    i,
                    CounterEntry {
                        stamp: ctx.stamp(),
                        int,
                        float,
                    },
                );
                let first_of_origin = i == 0 || self.entries[i - 1].stamp.dot.origin != origin;
                let fast = is_origins_last(&self.entries, i);
                match part {
                    Ok(p) if fast && !first_of_origin => {
                        let pt = &mut self.sums.parts[p];
                        pt.1 += pt.2;
                        pt.2 = float;
                    }
                    Err(p) if fast && first_of_origin => {
                        self.sums.parts.insert(p, (origin, 0.0, float));
                    }
                    _ => {
                        self.sums = Sums::recompute(&self.entries);
                        return;
                    }
                }
                self.sums.int += int;
                self.sums.float_entries += shows_float(float) as usize;
            }
        }
        debug_assert_eq!(self.sums, Sums::recompute(&self.entries));
    }

    /// Exact integer sum of the entries.
    pub fn int_sum(&self) -> i128 {
        self.sums.int
    }

    /// True when some entry carries a float part (the value shows as a float).
    pub fn has_float(&self) -> bool {
        self.sums.float_entries > 0
    }

    /// Deterministic float sum: per origin in seq order, origins ascending.
    pub fn float_sum(&self) -> f64 {
        self.sums
            .parts
            .iter()
            .fold(0.0f64, |total, p| total + (p.1 + p.2))
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        super::max_stamp(
            self.entries
                .iter()
                .map(|e| &e.stamp)
                .chain(self.exact.iter().map(|e| &e.stamp)),
        )
    }

    pub fn entries(&self) -> &[CounterEntry] {
        &self.entries
    }

    fn from_entries(mut entries: Vec<CounterEntry>, mut exact: Vec<ExactEntry>) -> State {
        entries.sort_by_key(|e| e.stamp.dot);
        entries.dedup_by_key(|e| e.stamp.dot);
        exact.sort_by_key(|e| e.stamp.dot);
        exact.dedup_by_key(|e| e.stamp.dot);
        let sums = Sums::recompute(&entries);
        let exact_sum = exact_sum(&exact);
        State {
            entries,
            sums,
            exact,
            exact_sum,
        }
    }

    /// State-based join (snapshot merge).
    fn join(&mut self, remote: &State, local_vv: &VersionVector, remote_vv: &VersionVector) {
        join_entries(
            &mut self.entries,
            &remote.entries,
            |e| e.stamp,
            local_vv,
            remote_vv,
        );
        self.sums = Sums::recompute(&self.entries);
        join_entries(
            &mut self.exact,
            &remote.exact,
            |e| e.stamp,
            local_vv,
            remote_vv,
        );
        self.exact_sum = exact_sum(&self.exact);
    }
}

/// Observed-remove join of dot-sorted entries: an entry stays if the other
/// side has it or has not seen it; the other side's entries this side has not
/// seen come in.
fn join_entries<E: Clone>(
    local: &mut Vec<E>,
    remote: &[E],
    stamp: fn(&E) -> Stamp,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
) {
    local.retain(|s| {
        let dot = stamp(s).dot;
        !remote_vv.covers(dot) || remote.binary_search_by_key(&dot, |r| stamp(r).dot).is_ok()
    });
    let kept = local.len();
    for r in remote {
        let dot = stamp(r).dot;
        if !local_vv.covers(dot)
            && local[..kept]
                .binary_search_by_key(&dot, |e| stamp(e).dot)
                .is_err()
        {
            local.push(r.clone());
        }
    }
    local.sort_by_key(|e| stamp(e).dot);
}

impl Counter {
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.is_empty())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    /// Removes the entries `ctx` covers; true if any was removed.
    pub fn prune(&mut self, ctx: &Ctx<'_>) -> bool {
        let Some(s) = &mut self.0 else {
            return false;
        };
        let changed = s.prune(ctx);
        if s.is_empty() {
            self.0 = None;
        }
        changed
    }

    /// Adds an increment of the op in `ctx` (two increments of one op add up).
    pub fn add(&mut self, ctx: &Ctx<'_>, int: i128, float: f64) {
        self.0
            .get_or_insert_with(Default::default)
            .add(ctx, int, float);
    }

    /// Exact integer sum of the entries.
    pub fn int_sum(&self) -> i128 {
        self.0.as_ref().map_or(0, |s| s.int_sum())
    }

    /// True when some entry carries a float part (the value shows as a float).
    pub fn has_float(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.has_float())
    }

    /// Deterministic float sum: per origin in seq order, origins ascending.
    pub fn float_sum(&self) -> f64 {
        self.0.as_ref().map_or(0.0, |s| s.float_sum())
    }

    /// Adds a float increment of a string or hash field, of the op in `ctx`.
    pub fn add_exact(&mut self, ctx: &Ctx<'_>, delta: &Exact) {
        self.0
            .get_or_insert_with(Default::default)
            .add_exact(ctx, delta);
    }

    /// True when some float increment of a string or hash field is kept.
    pub fn has_exact(&self) -> bool {
        self.0.as_ref().is_some_and(|s| !s.exact.is_empty())
    }

    /// The exact sum of the float increments.
    pub fn exact_sum(&self) -> Exact {
        self.0
            .as_ref()
            .map_or_else(Exact::zero, |s| s.exact_sum.clone())
    }

    pub fn exact_entries(&self) -> &[ExactEntry] {
        self.0.as_ref().map_or(&[], |s| &s.exact)
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        self.0.as_ref().and_then(|s| s.max_stamp())
    }

    pub fn entries(&self) -> &[CounterEntry] {
        self.0.as_ref().map_or(&[], |s| s.entries())
    }

    pub fn from_entries(entries: Vec<CounterEntry>, exact: Vec<ExactEntry>) -> Counter {
        if entries.is_empty() && exact.is_empty() {
            return Counter(None);
        }
        Counter(Some(Box::new(State::from_entries(entries, exact))))
    }

    /// State-based join (snapshot merge).
    pub fn join(&mut self, remote: &Counter, local_vv: &VersionVector, remote_vv: &VersionVector) {
        let s = self.0.get_or_insert_with(Default::default);
        match &remote.0 {
            Some(r) => s.join(r, local_vv, remote_vv),
            None => s.join(&State::default(), local_vv, remote_vv),
        }
        if s.is_empty() {
            self.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::id::OpId;
    use proptest::prelude::*;

    /// The sums as a walk over the entries computes them.
    fn walk(c: &Counter) -> (i128, bool, u64) {
        let int = c.entries().iter().map(|e| e.int).sum();
        let has_float = c.entries().iter().any(|e| shows_float(e.float));
        let mut total = 0.0f64;
        let mut cur: Option<Origin> = None;
        let mut part = 0.0f64;
        for e in c.entries() {
            if cur != Some(e.stamp.dot.origin) {
                total += part;
                part = 0.0;
                cur = Some(e.stamp.dot.origin);
            }
            part += e.float;
        }
        (int, has_float, (total + part).to_bits())
    }

    proptest! {
        /// Increments from several origins, interleaved, with several
        /// increments per op and observed-removes: the kept sums always equal
        /// a walk over the entries, bit for bit.
        #[test]
        fn kept_sums_equal_a_walk(
            steps in proptest::collection::vec(
                (0u16..3, 1usize..3, any::<i32>(), prop_oneof![Just(0.0), any::<f64>(), -1e3..1e3f64], any::<bool>()),
                1..60,
            )
        ) {
            let mut c = Counter::default();
            let mut seqs = [0u64; 3];
            let mut seen = VersionVector::new();
            for (site, n, int, float, prune) in steps {
                let origin = Origin::new(site + 1, 0);
                seqs[site as usize] += 1;
                let own = OpId::new(origin, seqs[site as usize]);
                let deps = seen.clone();
                let ctx = Ctx { deps: &deps, own, hlc: Hlc(own.seq) };
                if prune {
                    c.prune(&ctx);
                }
                for _ in 0..n {
                    c.add(&ctx, int as i128, float);
                    if int % 3 == 0 {
                        c.add_exact(&ctx, &Exact::from_f64(float));
                    }
                }
                // Every other op sees what came before it (some stay concurrent).
                if own.seq.is_multiple_of(2) {
                    seen.raise(origin, own.seq);
                }
                prop_assert_eq!((c.int_sum(), c.has_float(), c.float_sum().to_bits()), walk(&c));
                let exact = c.exact_entries().iter().fold(Exact::zero(), |t, e| t.add(&e.delta));
                prop_assert_eq!(c.exact_sum(), exact);
                prop_assert!(c.exact_entries().windows(2).all(|w| w[0].stamp.dot < w[1].stamp.dot));
            }
        }
    }
}
