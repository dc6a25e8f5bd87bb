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

/// Index of the first entry of origin `o` (entries sorted by dot).
fn first_of<E>(entries: &[E], o: Origin, dot: fn(&E) -> OpId) -> Option<usize> {
    let i = entries.partition_point(|e| dot(e).origin < o);
    (i < entries.len() && dot(&entries[i]).origin == o).then_some(i)
}

fn ce_dot(e: &CounterEntry) -> OpId {
    e.stamp.dot
}

fn ee_dot(e: &ExactEntry) -> OpId {
    e.stamp.dot
}

/// Drops the lows whose folded entry `ctx` removes (it covers the entry's
/// own dot, the newest it stands for); call before removing entries.
fn prune_lows<E>(lows: &mut Lows, entries: &[E], dot: fn(&E) -> OpId, ctx: &Ctx<'_>) {
    lows.retain(|(o, _)| first_of(entries, *o, dot).is_some_and(|i| !ctx.covers(dot(&entries[i]))));
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
fn note_overlaps<E>(lows: &Lows, entries: &[E], dot: fn(&E) -> OpId, ctx: &Ctx<'_>) {
    for &(o, lo) in lows {
        if let Some(i) = first_of(entries, o, dot) {
            let top = dot(&entries[i]);
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
fn valid_lows<E>(lows: Lows, entries: &[E], dot: fn(&E) -> OpId) -> Lows {
    let mut out: Lows = Vec::with_capacity(lows.len());
    for (o, lo) in lows {
        let ok = lo >= 1
            && first_of(entries, o, dot).is_some_and(|i| lo <= dot(&entries[i]).seq)
            && out.last().is_none_or(|l: &(Origin, u64)| l.0 < o);
        if ok {
            out.push((o, lo));
        }
    }
    out
}

/// The work of [`State::fold_to`] on one list of entries sorted by dot:
/// each origin's entries at or below `stable` become one, its first, with
/// the low of the oldest. `start` prepares a folded entry's first part
/// (floats: `+ 0.0`, as the sums' left fold begins), `add` adds the next.
fn fold_runs<E: Clone>(
    entries: &mut Vec<E>,
    lows: &mut Lows,
    stable: &VersionVector,
    dot: fn(&E) -> OpId,
    add: impl Fn(&mut E, &E),
    start: impl Fn(&mut E),
) -> (bool, bool) {
    // Per origin: where its run starts, its length, and how many of its
    // entries `stable` covers (a prefix: entries are sorted by dot).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let o = dot(&entries[i]).origin;
        let run = entries[i..].partition_point(|e| dot(e).origin == o);
        let top = stable.get(o);
        let n = entries[i..i + run].partition_point(|e| dot(e).seq <= top);
        runs.push((i, run, n));
        i += run;
    }
    let folds = runs.iter().any(|&(_, _, n)| n >= 2);
    let more = runs
        .iter()
        .any(|&(_, run, n)| if n >= 2 { 1 + run - n } else { run } > 1);
    if !folds {
        return (false, more);
    }
    let mut out: Vec<E> = Vec::with_capacity(entries.len());
    for (i, run, n) in runs {
        if n >= 2 {
            let o = dot(&entries[i]).origin;
            let lo = lo_of(lows, o).unwrap_or(dot(&entries[i]).seq);
            set_lo(lows, o, lo);
            let mut folded = entries[i].clone();
            start(&mut folded);
            for e in &entries[i + 1..i + n] {
                add(&mut folded, e);
            }
            out.push(folded);
            out.extend_from_slice(&entries[i + n..i + run]);
        } else {
            out.extend_from_slice(&entries[i..i + run]);
        }
    }
    *entries = out;
    (true, more)
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
        note_overlaps(&self.lows, &self.entries, ce_dot, ctx);
        note_overlaps(&self.exact_lows, &self.exact, ee_dot, ctx);
        prune_lows(&mut self.lows, &self.entries, ce_dot, ctx);
        prune_lows(&mut self.exact_lows, &self.exact, ee_dot, ctx);
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
        if ctx.fold {
            self.fold_exact();
            if let Some(i) = first_of(&self.exact, dot.origin, ee_dot) {
                let e = &mut self.exact[i];
                if e.stamp.dot < dot {
                    let lo = lo_of(&self.exact_lows, dot.origin).unwrap_or(e.stamp.dot.seq);
                    set_lo(&mut self.exact_lows, dot.origin, lo);
                    e.stamp.fold(&ctx.stamp());
                }
            }
        }
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
        if ctx.fold {
            // Everything held is stable: fold it, then this increment into
            // its origin's entry (which stays its origin's last, so the
            // sums below update in O(1)).
            self.fold_entries();
            if let Some(i) = first_of(&self.entries, origin, ce_dot) {
                let e = &mut self.entries[i];
                if e.stamp.dot < dot {
                    let lo = lo_of(&self.lows, origin).unwrap_or(e.stamp.dot.seq);
                    set_lo(&mut self.lows, origin, lo);
                    e.stamp.fold(&ctx.stamp());
                }
            }
        }
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

    /// Folds every origin's entries into one (all held entries are stable).
    /// The folded float is the origin's part as the sums compute it (a left
    /// fold from 0.0 in seq order, never -0.0), so every later sum has the
    /// same bits as without folding.
    fn fold_entries(&mut self) {
        if self.entries.len() <= self.sums.parts.len() {
            return;
        }
        let mut out: Vec<CounterEntry> = Vec::with_capacity(self.sums.parts.len());
        for e in &self.entries {
            match out.last_mut() {
                Some(l) if l.stamp.dot.origin == e.stamp.dot.origin => {
                    l.int += e.int;
                    l.stamp.fold(&e.stamp);
                }
                _ => {
                    let o = e.stamp.dot.origin;
                    let lo = lo_of(&self.lows, o).unwrap_or(e.stamp.dot.seq);
                    set_lo(&mut self.lows, o, lo);
                    out.push(*e);
                }
            }
        }
        for (l, p) in out.iter_mut().zip(&self.sums.parts) {
            debug_assert_eq!(l.stamp.dot.origin, p.0);
            l.float = p.1 + p.2;
        }
        self.entries = out;
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
            ce_dot,
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
            ee_dot,
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
        let merges = self
            .exact
            .windows(2)
            .any(|w| w[0].stamp.dot.origin == w[1].stamp.dot.origin);
        if !merges {
            return;
        }
        let mut out: Vec<ExactEntry> = Vec::new();
        for e in std::mem::take(&mut self.exact) {
            match out.last_mut() {
                Some(l) if l.stamp.dot.origin == e.stamp.dot.origin => {
                    l.delta = l.delta.add(&e.delta);
                    l.stamp.fold(&e.stamp);
                }
                _ => {
                    let o = e.stamp.dot.origin;
                    let lo = lo_of(&self.exact_lows, o).unwrap_or(e.stamp.dot.seq);
                    set_lo(&mut self.exact_lows, o, lo);
                    out.push(e);
                }
            }
        }
        self.exact = out;
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
        let lows = valid_lows(lows, &entries, ce_dot);
        let exact_lows = valid_lows(exact_lows, &exact, ee_dot);
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
            ce_dot,
            local_vv,
            remote_vv,
        );
        self.sums = Sums::recompute(&self.entries);
        join_ranged(
            &mut self.exact,
            &mut self.exact_lows,
            &remote.exact,
            &remote.exact_lows,
            ee_dot,
            local_vv,
            remote_vv,
        );
        self.exact_sum = exact_sum(&self.exact);
    }
}

/// Observed-remove join of dot-sorted entries with folded ones, origin by
/// origin (see [`join_origin`]).
fn join_ranged<E: Clone>(
    local: &mut Vec<E>,
    lows: &mut Lows,
    remote: &[E],
    remote_lows: &Lows,
    dot: fn(&E) -> OpId,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
) {
    let mut out: Vec<E> = Vec::with_capacity(local.len().max(remote.len()));
    let mut out_lows = Lows::new();
    let (mut i, mut j) = (0, 0);
    while i < local.len() || j < remote.len() {
        let o = match (local.get(i), remote.get(j)) {
            (Some(a), Some(b)) => dot(a).origin.min(dot(b).origin),
            (Some(a), None) => dot(a).origin,
            (None, Some(b)) => dot(b).origin,
            (None, None) => break,
        };
        let li = i + local[i..].partition_point(|e| dot(e).origin == o);
        let rj = j + remote[j..].partition_point(|e| dot(e).origin == o);
        let side = |entries: &[E], lows: &Lows| {
            lo_of(lows, o)
                .filter(|_| !entries.is_empty())
                .map(|lo| (lo, dot(&entries[0]).seq))
        };
        let l = &local[i..li];
        let r = &remote[j..rj];
        join_origin(
            o,
            (l, side(l, lows)),
            (r, side(r, remote_lows)),
            dot,
            local_vv,
            remote_vv,
            &mut out,
            &mut out_lows,
        );
        i = li;
        j = rj;
    }
    *local = out;
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
#[allow(clippy::too_many_arguments)]
fn join_origin<E: Clone>(
    o: Origin,
    (l, lfold): Side<'_, E>,
    (r, rfold): Side<'_, E>,
    dot: fn(&E) -> OpId,
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
    out: &mut Vec<E>,
    out_lows: &mut Lows,
) {
    let fold = match (lfold, rfold) {
        (Some(a), Some(b)) if b.1 > a.1 => Some((false, b)),
        (Some(a), _) => Some((true, a)),
        (None, Some(b)) => Some((false, b)),
        (None, None) => None,
    };
    let mut floor = 0;
    if let Some((is_local, (lo, hi))) = fold {
        let (mine, other, other_vv) = if is_local {
            (l, r, remote_vv)
        } else {
            (r, l, local_vv)
        };
        let kept = !other_vv.covers(OpId::new(o, hi)) || other.iter().any(|e| dot(e).seq <= hi);
        if kept {
            out.push(mine[0].clone());
            out_lows.push((o, lo));
        }
        floor = hi;
    }
    let start = out.len();
    for e in l.iter().filter(|e| dot(e).seq > floor) {
        let d = dot(e);
        if !remote_vv.covers(d) || r.binary_search_by_key(&d, dot).is_ok() {
            out.push(e.clone());
        }
    }
    for e in r.iter().filter(|e| dot(e).seq > floor) {
        let d = dot(e);
        if !local_vv.covers(d) && l.binary_search_by_key(&d, dot).is_err() {
            out.push(e.clone());
        }
    }
    out[start..].sort_by_key(dot);
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
            prop_assert!(folded.entries().len() <= origins);
            prop_assert!(folded.exact_entries().len() <= origins);
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
                let exact = c.exact_entries().iter().fold(Exact::zero(), |t, e| t.add(&e.delta));
                prop_assert_eq!(c.exact_sum(), exact);
                prop_assert!(c.exact_entries().windows(2).all(|w| w[0].stamp.dot < w[1].stamp.dot));
            }
        }
    }
}
