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
//!
//! **Folded entries.** Once the increments of an origin are causally stable
//! (no op that has not seen them can still arrive), a SET or DEL can only
//! remove all of them at once, so they are kept as one entry: the dot of the
//! newest, their sums, and `lo`, the seq of the oldest they stand for (kept
//! apart, in `lows`, since few entries have one). A site alone folds as it
//! applies (`Ctx::fold`): a hot counter holds one entry per origin. Joins
//! treat a folded entry as every dot of its origin up to its own (see
//! `join_origin`), and digests see per-origin totals (see
//! `keyspace::image::RowImage::canonical`), so a site that folded and one
//! that did not agree.

use super::{Ctx, Stamp};
use crate::id::{OpId, Origin, VersionVector};
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

/// Entries per origin, plus their sums kept up to date as increments
/// arrive, so INCR on a counter with many entries costs no walk over them.
///
/// Most strings and hash fields never see an increment, so the state lives
/// behind one pointer that is null when there are no entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counter(Option<Box<State>>);

#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    entries: Runs<CounterEntry>,
    sums: Sums,
    /// Float increments of strings and hash fields.
    exact: Runs<ExactEntry>,
    /// Their exact sum.
    exact_sum: Exact,
    /// Per origin with a folded entry in `entries` (always its first entry
    /// of that origin): the seq of the oldest increment it stands for.
    lows: Lows,
    /// The same for `exact`.
    exact_lows: Lows,
}

/// `(origin, lo)` sorted by origin: see [`State::lows`].
pub type Lows = Vec<(Origin, u64)>;

fn lo_of(lows: &Lows, o: Origin) -> Option<u64> {
    lows.binary_search_by_key(&o, |l| l.0)
        .ok()
        .map(|i| lows[i].1)
}

fn set_lo(lows: &mut Lows, o: Origin, lo: u64) {
    match lows.binary_search_by_key(&o, |l| l.0) {
        Ok(i) => lows[i].1 = lo,
        Err(i) => lows.insert(i, (o, lo)),
    }
}

/// An entry with a dot (the op that made it).
trait Dotted: Clone {
    fn dot(&self) -> OpId;
}

impl Dotted for CounterEntry {
    fn dot(&self) -> OpId {
        self.stamp.dot
    }
}

impl Dotted for ExactEntry {
    fn dot(&self) -> OpId {
        self.stamp.dot
    }
}

/// Entries kept apart per origin: runs sorted by origin, each non-empty and
/// sorted by seq. An increment lands at the end of its origin's run, so a
/// counter incremented at several sites at once takes each increment in
/// O(1), however many entries the other origins hold.
#[derive(Clone, Debug, PartialEq)]
struct Runs<E>(Vec<Vec<E>>);

impl<E> Default for Runs<E> {
    fn default() -> Self {
        Runs(Vec::new())
    }
}

impl<E: Dotted> Runs<E> {
    /// Groups entries sorted by dot.
    fn from_sorted(entries: Vec<E>) -> Runs<E> {
        let mut runs: Vec<Vec<E>> = Vec::new();
        for e in entries {
            match runs.last_mut() {
                Some(r) if r[0].dot().origin == e.dot().origin => r.push(e),
                _ => runs.push(vec![e]),
            }
        }
        Runs(runs)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    fn iter(&self) -> impl Iterator<Item = &E> + '_ {
        self.0.iter().flatten()
    }

    /// Where origin `o`'s run is, or would go. The newest origin is looked
    /// at first (the usual increment is the newest site's).
    fn find(&self, o: Origin) -> Result<usize, usize> {
        match self.0.last() {
            Some(r) if r[0].dot().origin == o => Ok(self.0.len() - 1),
            Some(r) if r[0].dot().origin < o => Err(self.0.len()),
            None => Err(0),
            _ => self.0.binary_search_by_key(&o, |r| r[0].dot().origin),
        }
    }

    /// The first entry of origin `o` (its folded one, if it has one).
    fn first(&self, o: Origin) -> Option<&E> {
        self.find(o).ok().map(|k| &self.0[k][0])
    }

    fn first_mut(&mut self, o: Origin) -> Option<&mut E> {
        self.find(o).ok().map(|k| &mut self.0[k][0])
    }

    /// Keeps the entries `keep` accepts; true if any was dropped.
    fn retain(&mut self, keep: impl Fn(&E) -> bool) -> bool {
        let before = self.len();
        for r in &mut self.0 {
            r.retain(&keep);
        }
        self.0.retain(|r| !r.is_empty());
        before != self.len()
    }

    /// Places `e` (whose dot is not held): `(run, index in run, new run)`.
    fn insert(&mut self, e: E) -> (usize, usize, bool) {
        let dot = e.dot();
        match self.find(dot.origin) {
            Ok(k) => {
                let run = &mut self.0[k];
                let i = match run.last() {
                    Some(l) if l.dot() < dot => run.len(),
                    _ => run.partition_point(|x| x.dot() < dot),
                };
                run.insert(i, e);
                (k, i, false)
            }
            Err(k) => {
                self.0.insert(k, vec![e]);
                (k, 0, true)
            }
        }
    }

    /// The entry of `dot`, if held: `(run, index in run)`.
    fn position(&self, dot: OpId) -> Option<(usize, usize)> {
        let k = self.find(dot.origin).ok()?;
        let run = &self.0[k];
        match run.last() {
            Some(l) if l.dot() == dot => Some((k, run.len() - 1)),
            Some(l) if l.dot() < dot => None,
            _ => run.binary_search_by_key(&dot, E::dot).ok().map(|i| (k, i)),
        }
    }
}

/// Drops the lows whose folded entry `ctx` removes (it covers the entry's
/// own dot, the newest it stands for); call before removing entries.
fn prune_lows<E: Dotted>(lows: &mut Lows, entries: &Runs<E>, ctx: &Ctx<'_>) {
    lows.retain(|(o, _)| entries.first(*o).is_some_and(|e| !ctx.covers(e.dot())));
}

thread_local! {
    static OVERLAPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static LAST_OVERLAP: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Removals that saw part of a folded entry and not all of it (see
/// [`take_overlaps`]): an op that had seen increments `lo..=t` of an origin
/// whose fold stands for `lo..=s`, `t < s`. The stability frontier makes
/// them impossible; each one is a bug, or an op of a site whose disk went
/// back to an older state.
fn note_overlaps<E: Dotted>(lows: &Lows, entries: &Runs<E>, ctx: &Ctx<'_>) {
    for &(o, lo) in lows {
        if let Some(first) = entries.first(o) {
            let top = first.dot();
            if !ctx.covers(top) && ctx.covers(OpId::new(o, lo)) {
                OVERLAPS.with(|c| c.set(c.get() + 1));
                LAST_OVERLAP.with(|l| {
                    *l.borrow_mut() = format!(
                        "op {} with deps {} removed a fold of {o} seqs {lo}..={}",
                        ctx.own, ctx.deps, top.seq
                    )
                });
            }
        }
    }
}

/// A join that keeps a folded entry of `o` standing for `lo..=hi` next to
/// a side whose vector had seen `lo` but not `hi` and that holds nothing of
/// `lo` (neither the entry nor a fold of its own reaching down to it): an op
/// there removed part of the fold, as in [`note_overlaps`]. The join keeps
/// the whole fold, as applying that op to it would have.
fn note_join_overlap<E: Dotted>(
    o: Origin,
    (lo, hi): (u64, u64),
    other: &[E],
    other_fold: Option<(u64, u64)>,
    other_vv: &VersionVector,
) {
    let saw_part = other_vv.covers(OpId::new(o, lo)) && !other_vv.covers(OpId::new(o, hi));
    let holds_lo = other_fold.is_some_and(|(l, h)| l <= lo && lo <= h)
        || other.binary_search_by_key(&lo, |e| e.dot().seq).is_ok();
    if saw_part && !holds_lo {
        OVERLAPS.with(|c| c.set(c.get() + 1));
        LAST_OVERLAP.with(|l| {
            *l.borrow_mut() = format!(
                "a join with a side at {other_vv} that had removed {o} seq {lo} kept a fold of {o} seqs {lo}..={hi}"
            )
        });
    }
}

/// The overlaps noted on this thread since the last call (the engine adds
/// them to its stats after applying a peer's ops).
pub fn take_overlaps() -> u64 {
    OVERLAPS.with(|c| c.replace(0))
}

/// What the last overlap noted on this thread was (for the log).
pub fn last_overlap() -> String {
    LAST_OVERLAP.with(|l| l.borrow().clone())
}

/// Keeps only lows that name a folded entry an image could hold: an entry
/// of that origin exists and `lo` is at or below its first one's seq.
fn valid_lows<E: Dotted>(lows: Lows, entries: &Runs<E>) -> Lows {
    let mut out: Lows = Vec::with_capacity(lows.len());
    for (o, lo) in lows {
        let ok = lo >= 1
            && entries.first(o).is_some_and(|e| lo <= e.dot().seq)
            && out.last().is_none_or(|l: &(Origin, u64)| l.0 < o);
        if ok {
            out.push((o, lo));
        }
    }
    out
}

/// Gives back what a run grown by a burst of increments no longer needs
/// once folded (a run never shrinks by itself).
fn release<E>(run: &mut Vec<E>) {
    if run.capacity() > 2 * run.len() + 16 {
        run.shrink_to(run.len() + run.len() / 2);
    }
}

/// The work of [`State::fold_to`] on one set of runs: each origin's
/// entries at or below `stable` become one, its first, with the low of the
/// oldest. `start` prepares a folded entry's first part (floats: `+ 0.0`,
/// as the sums' left fold begins), `add` adds the next.
fn fold_runs<E: Dotted>(
    entries: &mut Runs<E>,
    lows: &mut Lows,
    stable: &VersionVector,
    add: impl Fn(&mut E, &E),
    start: impl Fn(&mut E),
) -> (bool, bool) {
    let (mut folds, mut more) = (false, false);
    for run in &mut entries.0 {
        let o = run[0].dot().origin;
        let top = stable.get(o);
        // The entries `stable` covers are a prefix: a run is sorted by seq.
        let n = run.partition_point(|e| e.dot().seq <= top);
        if n >= 2 {
            folds = true;
            let lo = lo_of(lows, o).unwrap_or(run[0].dot().seq);
            set_lo(lows, o, lo);
            let (head, tail) = run.split_at_mut(1);
            start(&mut head[0]);
            for e in &tail[..n - 1] {
                add(&mut head[0], e);
            }
            run.drain(1..n);
            release(run);
        }
        more |= run.len() > 1;
    }
    (folds, more)
}

fn exact_sum(entries: &Runs<ExactEntry>) -> Exact {
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
    /// Per origin, ascending (one per run): the float sum of its entries
    /// but the last one (in seq order), and the last entry's float. The
    /// origin's part is `before_last + last`, bit for bit the sequential sum.
    parts: Vec<(Origin, f64, f64)>,
}

fn shows_float(f: f64) -> bool {
    f != 0.0 || f.is_sign_negative()
}

/// One origin's part of [`Sums::parts`], walked.
fn part_of(run: &[CounterEntry]) -> (Origin, f64, f64) {
    let mut p = (run[0].stamp.dot.origin, 0.0, run[0].float);
    for e in &run[1..] {
        p.1 += p.2;
        p.2 = e.float;
    }
    p
}

impl Sums {
    fn recompute(entries: &Runs<CounterEntry>) -> Sums {
        let mut s = Sums::default();
        for run in &entries.0 {
            for e in run {
                s.int += e.int;
                s.float_entries += shows_float(e.float) as usize;
            }
            s.parts.push(part_of(run));
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
        note_overlaps(&self.lows, &self.entries, ctx);
        note_overlaps(&self.exact_lows, &self.exact, ctx);
        prune_lows(&mut self.lows, &self.entries, ctx);
        prune_lows(&mut self.exact_lows, &self.exact, ctx);
        let changed = self.entries.retain(|e| !ctx.covers(e.stamp.dot));
        if changed {
            self.sums = Sums::recompute(&self.entries);
        }
        let exact_changed = self.exact.retain(|e| !ctx.covers(e.stamp.dot));
        if exact_changed {
            self.exact_sum = exact_sum(&self.exact);
        }
        changed || exact_changed
    }

    /// Adds a float increment of the op in `ctx` (two of one op add up).
    pub fn add_exact(&mut self, ctx: &Ctx<'_>, delta: &Exact) {
        let dot = ctx.own;
        if ctx.fold {
            self.fold_exact();
            if let Some(e) = self.exact.first_mut(dot.origin) {
                if e.stamp.dot < dot {
                    let lo = lo_of(&self.exact_lows, dot.origin).unwrap_or(e.stamp.dot.seq);
                    e.stamp.fold(&ctx.stamp());
                    set_lo(&mut self.exact_lows, dot.origin, lo);
                }
            }
        }
        match self.exact.position(dot) {
            Some((k, i)) => {
                let e = &mut self.exact.0[k][i];
                e.delta = e.delta.add(delta);
            }
            None => {
                self.exact.insert(ExactEntry {
                    stamp: ctx.stamp(),
                    delta: delta.clone(),
                });
            }
        }
        self.exact_sum = self.exact_sum.add(delta);
    }

    /// Adds an increment of the op in `ctx` (two increments of one op add up).
    /// Ops of one origin arrive in seq order, so the entry is its origin's
    /// last and the sums update in O(1); anything else walks that origin.
    pub fn add(&mut self, ctx: &Ctx<'_>, int: i128, float: f64) {
        let dot = ctx.own;
        let origin = dot.origin;
        if ctx.fold {
            // Everything held is stable: fold it, then this increment into
            // its origin's entry (which stays its origin's last, so the
            // sums below update in O(1)).
            self.fold_entries();
            if let Some(e) = self.entries.first_mut(origin) {
                if e.stamp.dot < dot {
                    let lo = lo_of(&self.lows, origin).unwrap_or(e.stamp.dot.seq);
                    e.stamp.fold(&ctx.stamp());
                    set_lo(&mut self.lows, origin, lo);
                }
            }
        }
        self.sums.int += int;
        match self.entries.position(dot) {
            Some((k, i)) => {
                let run = &mut self.entries.0[k];
                let e = &mut run[i];
                let showed = shows_float(e.float);
                e.float += float;
                e.int += int;
                let shows = shows_float(e.float);
                self.sums.float_entries =
                    self.sums.float_entries - showed as usize + shows as usize;
                if i + 1 == run.len() {
                    self.sums.parts[k].2 = run[i].float;
                } else {
                    self.sums.parts[k] = part_of(run);
                }
            }
            None => {
                self.sums.float_entries += shows_float(float) as usize;
                let (k, i, new_run) = self.entries.insert(CounterEntry {
                    stamp: ctx.stamp(),
                    int,
                    float,
                });
                let run = &self.entries.0[k];
                if new_run {
                    self.sums.parts.insert(k, (origin, 0.0, float));
                } else if i + 1 == run.len() {
                    let p = &mut self.sums.parts[k];
                    p.1 += p.2;
                    p.2 = float;
                } else {
                    self.sums.parts[k] = part_of(run);
                }
            }
        }
        debug_assert_eq!(self.sums, Sums::recompute(&self.entries));
    }

    /// Folds every origin's entries into one (all held entries are stable).
    /// The folded float is the origin's part as the sums compute it (a left
    /// fold from 0.0 in seq order, never -0.0), so every later sum has the
    /// same bits as without folding.
    fn fold_entries(&mut self) {
        if self.entries.0.iter().all(|r| r.len() == 1) {
            return;
        }
        for (run, p) in self.entries.0.iter_mut().zip(&self.sums.parts) {
            debug_assert_eq!(run[0].stamp.dot.origin, p.0);
            let o = p.0;
            let lo = lo_of(&self.lows, o).unwrap_or(run[0].stamp.dot.seq);
            set_lo(&mut self.lows, o, lo);
            let mut folded = run[0];
            for e in &run[1..] {
                folded.int += e.int;
                folded.stamp.fold(&e.stamp);
            }
            folded.float = p.1 + p.2;
            run.clear();
            run.push(folded);
            release(run);
        }
        self.sums = Sums::recompute(&self.entries);
    }

    /// Folds, per origin, the entries `stable` covers into one (the first
    /// of that origin), leaving newer ones as they are: the value and every
    /// later sum keep their bits (the folded float is the left fold from
    /// 0.0 the sums compute). Returns whether anything was folded, and
    /// whether some origin still holds more than one entry.
    fn fold_to(&mut self, stable: &VersionVector) -> (bool, bool) {
        let (a, more_a) = fold_runs(
            &mut self.entries,
            &mut self.lows,
            stable,
            |into, e| {
                into.int += e.int;
                into.float += e.float;
                into.stamp.fold(&e.stamp);
            },
            |e| e.float += 0.0,
        );
        if a {
            self.sums = Sums::recompute(&self.entries);
        }
        let (b, more_b) = fold_runs(
            &mut self.exact,
            &mut self.exact_lows,
            stable,
            |into, e| {
                into.delta = into.delta.add(&e.delta);
                into.stamp.fold(&e.stamp);
            },
            |_| {},
        );
        (a || b, more_a || more_b)
    }

    /// Folds every origin's float increments into one (exact sums).
    fn fold_exact(&mut self) {
        if self.exact.0.iter().all(|r| r.len() == 1) {
            return;
        }
        for run in &mut self.exact.0 {
            let o = run[0].stamp.dot.origin;
            let lo = lo_of(&self.exact_lows, o).unwrap_or(run[0].stamp.dot.seq);
            set_lo(&mut self.exact_lows, o, lo);
            let (head, tail) = run.split_at_mut(1);
            for e in tail.iter() {
                head[0].delta = head[0].delta.add(&e.delta);
                head[0].stamp.fold(&e.stamp);
            }
            run.truncate(1);
            release(run);
        }
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

    fn from_parts(
        mut entries: Vec<CounterEntry>,
        lows: Lows,
        mut exact: Vec<ExactEntry>,
        exact_lows: Lows,
    ) -> State {
        entries.sort_by_key(|e| e.stamp.dot);
        entries.dedup_by_key(|e| e.stamp.dot);
        exact.sort_by_key(|e| e.stamp.dot);
        exact.dedup_by_key(|e| e.stamp.dot);
        let entries = Runs::from_sorted(entries);
        let exact = Runs::from_sorted(exact);
        let lows = valid_lows(lows, &entries);
        let exact_lows = valid_lows(exact_lows, &exact);
        let sums = Sums::recompute(&entries);
        let exact_sum = exact_sum(&exact);
        State {
            entries,
            sums,
            exact,
            exact_sum,
            lows,
            exact_lows,
        }
    }

    /// State-based join (snapshot merge).
    fn join(&mut self, remote: &State, local_vv: &VersionVector, remote_vv: &VersionVector) {
        join_ranged(
            &mut self.entries,
            &mut self.lows,
            &remote.entries,
            &remote.lows,
            local_vv,
            remote_vv,
        );
        self.sums = Sums::recompute(&self.entries);
        join_ranged(
            &mut self.exact,
            &mut self.exact_lows,
            &remote.exact,
            &remote.exact_lows,
            local_vv,
            remote_vv,
        );
        self.exact_sum = exact_sum(&self.exact);
    }
}

/// Observed-remove join of entries with folded ones, origin by origin (see
/// [`join_origin`]).
fn join_ranged<E: Dotted>(
    local: &mut Runs<E>,
    lows: &mut Lows,
    remote: &Runs<E>,
    remote_lows: &Lows,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
) {
    let mut out: Vec<Vec<E>> = Vec::with_capacity(local.0.len().max(remote.0.len()));
    let mut out_lows = Lows::new();
    let (mut i, mut j) = (0, 0);
    let empty: &[E] = &[];
    while i < local.0.len() || j < remote.0.len() {
        let origin = |runs: &Runs<E>, k: usize| runs.0.get(k).map(|r| r[0].dot().origin);
        let o = match (origin(local, i), origin(remote, j)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        let l = match origin(local, i) {
            Some(a) if a == o => {
                i += 1;
                &local.0[i - 1][..]
            }
            _ => empty,
        };
        let r = match origin(remote, j) {
            Some(b) if b == o => {
                j += 1;
                &remote.0[j - 1][..]
            }
            _ => empty,
        };
        let side = |entries: &[E], lows: &Lows| {
            lo_of(lows, o)
                .filter(|_| !entries.is_empty())
                .map(|lo| (lo, entries[0].dot().seq))
        };
        let run = join_origin(
            o,
            (l, side(l, lows)),
            (r, side(r, remote_lows)),
            local_vv,
            remote_vv,
            &mut out_lows,
        );
        if !run.is_empty() {
            out.push(run);
        }
    }
    *local = Runs(out);
    *lows = out_lows;
}

/// One origin's entries of both sides, each with its folded entry's
/// `(lo, seq)` if it has one (always its first entry).
type Side<'a, E> = (&'a [E], Option<(u64, u64)>);

/// Observed-remove join of one origin's entries.
///
/// The side whose folded entry reaches further (`hi`) decides everything at
/// or below `hi`: the other side's entries there are either folded into it
/// or were removed by an op that side applied before folding. The folded
/// entry itself stays unless the other side has seen `hi` and holds nothing
/// of the origin at or below it (a SET or DEL there removed the whole fold:
/// stable increments are only ever removed together). Above `hi`, entries
/// join as usual: one stays if the other side has it or has not seen it.
fn join_origin<E: Dotted>(
    o: Origin,
    (l, lfold): Side<'_, E>,
    (r, rfold): Side<'_, E>,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
    out_lows: &mut Lows,
) -> Vec<E> {
    let mut out: Vec<E> = Vec::new();
    let fold = match (lfold, rfold) {
        (Some(a), Some(b)) if b.1 > a.1 => Some((false, b)),
        (Some(a), _) => Some((true, a)),
        (None, Some(b)) => Some((false, b)),
        (None, None) => None,
    };
    let mut floor = 0;
    if let Some((is_local, (lo, hi))) = fold {
        let (mine, other, other_fold, other_vv) = if is_local {
            (l, r, rfold, remote_vv)
        } else {
            (r, l, lfold, local_vv)
        };
        let kept = !other_vv.covers(OpId::new(o, hi)) || other.iter().any(|e| e.dot().seq <= hi);
        if kept {
            note_join_overlap(o, (lo, hi), other, other_fold, other_vv);
            out.push(mine[0].clone());
            out_lows.push((o, lo));
        }
        floor = hi;
    }
    let start = out.len();
    for e in l.iter().filter(|e| e.dot().seq > floor) {
        let d = e.dot();
        if !remote_vv.covers(d) || r.binary_search_by_key(&d, E::dot).is_ok() {
            out.push(e.clone());
        }
    }
    for e in r.iter().filter(|e| e.dot().seq > floor) {
        let d = e.dot();
        if !local_vv.covers(d) && l.binary_search_by_key(&d, E::dot).is_err() {
            out.push(e.clone());
        }
    }
    out[start..].sort_by_key(E::dot);
    out
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

    /// Folds each origin's entries that `stable` covers into one (see
    /// docs/semantics.md, "Stability"). Returns whether anything was folded
    /// and whether some origin still holds more than one entry (newer than
    /// `stable`: a later fold may take them).
    pub fn fold_to(&mut self, stable: &VersionVector) -> (bool, bool) {
        match &mut self.0 {
            Some(s) => s.fold_to(stable),
            None => (false, false),
        }
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

    /// The float increments, sorted by dot.
    pub fn exact_entries(&self) -> impl Iterator<Item = &ExactEntry> + '_ {
        self.0.iter().flat_map(|s| s.exact.iter())
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        self.0.as_ref().and_then(|s| s.max_stamp())
    }

    /// The increments, sorted by dot.
    pub fn entries(&self) -> impl Iterator<Item = &CounterEntry> + '_ {
        self.0.iter().flat_map(|s| s.entries.iter())
    }

    pub fn from_entries(entries: Vec<CounterEntry>, exact: Vec<ExactEntry>) -> Counter {
        Counter::from_parts(entries, Lows::new(), exact, Lows::new())
    }

    /// Entries with their folded ones' `lo` (untrusted: lows that name no
    /// folded entry an image could hold are dropped).
    pub fn from_parts(
        entries: Vec<CounterEntry>,
        lows: Lows,
        exact: Vec<ExactEntry>,
        exact_lows: Lows,
    ) -> Counter {
        if entries.is_empty() && exact.is_empty() {
            return Counter(None);
        }
        Counter(Some(Box::new(State::from_parts(
            entries, lows, exact, exact_lows,
        ))))
    }

    /// Per origin with a folded entry, the seq of the oldest increment it
    /// stands for.
    pub fn lows(&self) -> &[(Origin, u64)] {
        self.0.as_ref().map_or(&[], |s| &s.lows)
    }

    pub fn exact_lows(&self) -> &[(Origin, u64)] {
        self.0.as_ref().map_or(&[], |s| &s.exact_lows)
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
        let int = c.entries().map(|e| e.int).sum();
        let has_float = c.entries().any(|e| shows_float(e.float));
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

    fn ctx_at<'a>(deps: &'a VersionVector, site: u16, seq: u64, fold: bool) -> Ctx<'a> {
        let own = OpId::new(Origin::new(site, 0), seq);
        Ctx {
            deps,
            own,
            hlc: Hlc(seq * 10 + site as u64),
            fold,
        }
    }

    fn vv(parts: &[(u16, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(site, seq) in parts {
            v.raise(Origin::new(site, 0), seq);
        }
        v
    }

    /// Increments 1..=n of sites 1 and 2 (each +seq and a float), folded
    /// as they come or not.
    fn history(n: u64, fold: bool) -> Counter {
        let mut c = Counter::default();
        let none = VersionVector::new();
        for seq in 1..=n {
            for site in [1u16, 2] {
                c.add(
                    &ctx_at(&none, site, seq, fold),
                    seq as i128,
                    0.1 * seq as f64,
                );
                c.add_exact(&ctx_at(&none, site, seq, fold), &Exact::from_f64(0.5));
            }
        }
        c
    }

    fn shown(c: &Counter) -> (i128, u64, Exact) {
        (c.int_sum(), c.float_sum().to_bits(), c.exact_sum())
    }

    #[test]
    fn a_folded_counter_sums_and_joins_as_the_unfolded_one() {
        let folded = history(40, true);
        let plain = history(40, false);
        assert_eq!(folded.len(), 4, "one int and one exact entry per origin");
        assert_eq!(plain.len(), 160);
        assert_eq!(shown(&folded), shown(&plain));
        let both = vv(&[(1, 40), (2, 40)]);
        // A peer that has more: site 1's increments 41..=45.
        let mut more = history(40, false);
        let none = VersionVector::new();
        for seq in 41..=45 {
            more.add(&ctx_at(&none, 1, seq, false), 1, 0.0);
        }
        let more_vv = vv(&[(1, 45), (2, 40)]);
        for mine in [&folded, &plain] {
            let mut a = mine.clone();
            a.join(&more, &both, &more_vv);
            let mut b = more.clone();
            b.join(mine, &more_vv, &both);
            assert_eq!(shown(&a), shown(&more), "join into the fold");
            assert_eq!(shown(&b), shown(&more), "join of the fold into the peer");
        }
        // A peer that removed everything of site 1 (a SET that saw 1:40).
        let mut removed = history(40, false);
        let deps = vv(&[(1, 40)]);
        removed.prune(&ctx_at(&deps, 3, 1, false));
        let removed_vv = vv(&[(1, 40), (2, 40), (3, 1)]);
        let mut a = folded.clone();
        a.join(&removed, &both, &removed_vv);
        assert_eq!(shown(&a), shown(&removed), "a removed fold goes whole");
        let mut b = removed.clone();
        b.join(&folded, &removed_vv, &both);
        assert_eq!(shown(&b), shown(&removed));
        // A fold and the pieces it stands for, the other way round: the fold
        // wins, nothing is counted twice.
        let mut c = plain.clone();
        c.join(&folded, &both, &both);
        assert_eq!(shown(&c), shown(&plain));
        assert_eq!(c.len(), 4);
    }

    /// A site whose disk went back to an older copy took a SET before it
    /// caught up: it had seen increment 2:14 and not 2:36, and removed
    /// 2:14; the other sites had folded 2:14..=36 meanwhile (with the report
    /// the site made before its disk went back). A snapshot merge between
    /// the two keeps the whole fold, as applying the SET to the fold does,
    /// and counts the overlap (`fold_overlaps`) rather than passing it by.
    #[test]
    fn a_join_that_keeps_a_fold_the_other_side_removed_part_of_counts_an_overlap() {
        let none = VersionVector::new();
        let mut folded = Counter::default();
        folded.add(&ctx_at(&none, 2, 14, false), 1, 0.0);
        folded.add(&ctx_at(&none, 2, 36, false), 1, 0.0);
        let (did, _) = folded.fold_to(&vv(&[(2, 56)]));
        assert!(did);
        assert_eq!(folded.lows(), &[(Origin::new(2, 0), 14)]);
        let folded_vv = vv(&[(2, 56)]);
        let mut restored = Counter::default();
        restored.add(&ctx_at(&none, 2, 14, false), 1, 0.0);
        let seen = vv(&[(2, 34)]);
        let mut removed = restored.clone();
        removed.prune(&ctx_at(&seen, 3, 22, false));
        let removed_vv = vv(&[(2, 34), (3, 22)]);
        take_overlaps();
        let mut a = removed.clone();
        a.join(&folded, &removed_vv, &folded_vv);
        assert_eq!(take_overlaps(), 1, "{}", last_overlap());
        assert_eq!(a.int_sum(), 2, "the fold is kept whole");
        let mut b = folded.clone();
        b.join(&removed, &folded_vv, &removed_vv);
        assert_eq!(take_overlaps(), 1, "{}", last_overlap());
        assert_eq!(shown(&b), shown(&a), "both ways agree");
        // Not overlaps: the other side still holds 2:14, or had seen the
        // whole fold when it removed it.
        let mut c = restored.clone();
        c.join(&folded, &seen, &folded_vv);
        assert_eq!(c.int_sum(), 2);
        let all = vv(&[(2, 56)]);
        let mut gone = restored.clone();
        gone.prune(&ctx_at(&all, 3, 22, false));
        let gone_vv = vv(&[(2, 56), (3, 22)]);
        let mut d = gone.clone();
        d.join(&folded, &gone_vv, &folded_vv);
        assert_eq!(d.int_sum(), 0, "a SET that saw the whole fold removes it");
        assert_eq!(take_overlaps(), 0);
    }

    proptest! {
        /// Folding up to any stable vector, in any number of steps, keeps
        /// the shown sums bit for bit and the greatest stamp (type
        /// conflicts rank by it, and a bounded clock can stamp a later op of
        /// an origin lower); once everything is stable, one entry per
        /// origin is left; and the digest form equals the unfolded one's.
        #[test]
        fn folding_at_any_frontier_keeps_the_value_and_the_greatest_stamp(
            steps in proptest::collection::vec((0u16..3, any::<i16>(), -1e3..1e3f64, 0u64..50), 1..80),
            cuts in proptest::collection::vec((0u64..40, 0u64..40, 0u64..40), 1..4),
        ) {
            let mut plain = Counter::default();
            let mut seqs = [0u64; 3];
            let none = VersionVector::new();
            for (site, int, float, hlc) in steps {
                seqs[site as usize] += 1;
                let own = OpId::new(Origin::new(site + 1, 0), seqs[site as usize]);
                // Stamps that do not grow with seq, as a bounded clock gives.
                let ctx = Ctx { deps: &none, own, hlc: Hlc(hlc * 4 + u64::from(site)), fold: false };
                plain.add(&ctx, int as i128, float);
                plain.add_exact(&ctx, &Exact::from_f64(float));
            }
            let mut folded = plain.clone();
            for (a, b, c) in cuts {
                folded.fold_to(&vv(&[(1, a), (2, b), (3, c)]));
                prop_assert_eq!(shown(&folded), shown(&plain));
                prop_assert_eq!(folded.max_stamp().map(|s| s.hlc), plain.max_stamp().map(|s| s.hlc));
                prop_assert_eq!((folded.int_sum(), folded.has_float(), folded.float_sum().to_bits()), walk(&folded));
            }
            let (_, more) = folded.fold_to(&vv(&[(1, u64::MAX), (2, u64::MAX), (3, u64::MAX)]));
            prop_assert!(!more);
            let origins = seqs.iter().filter(|&&n| n > 0).count();
            prop_assert!(folded.entries().count() <= origins);
            prop_assert!(folded.exact_entries().count() <= origins);
            prop_assert_eq!(shown(&folded), shown(&plain));
        }

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
                let ctx = Ctx { deps: &deps, own, hlc: Hlc(own.seq), fold: false };
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
                let exact = c.exact_entries().fold(Exact::zero(), |t, e| t.add(&e.delta));
                prop_assert_eq!(c.exact_sum(), exact);
                let dots: Vec<OpId> = c.exact_entries().map(|e| e.stamp.dot).collect();
                prop_assert!(dots.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
