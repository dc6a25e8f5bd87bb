//! CRDT building blocks shared by every value type.
//!
//! Every entry of a value carries a [`Stamp`]: the dot (the `OpId` of the op that
//! wrote it) and the op's HLC. Removals are *observed-remove*: an op removes the
//! entries whose dots its origin had seen ([`Ctx::covers`]), so a concurrent write
//! elsewhere survives. Last-writer-wins picks the entry with the greatest
//! `(hlc, origin)`. Everything here is a function of the *set* of ops applied,
//! never of their arrival order, because ops arrive in causal order and removals
//! only name dots their origin had seen.

pub mod counter;
pub mod register;

pub use counter::Counter;
pub use register::MvReg;

use crate::hlc::Hlc;
use crate::id::{OpId, VersionVector};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// Dot and HLC of the op that wrote an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub hlc: Hlc,
    pub dot: OpId,
}

impl Stamp {
    /// Last-writer-wins order: `(hlc, origin)`, then seq (two ops of one origin
    /// never share an hlc, so seq only makes the order total).
    #[inline]
    pub fn lww_key(&self) -> (Hlc, crate::id::Origin, u64) {
        (self.hlc, self.dot.origin, self.dot.seq)
    }
    #[inline]
    pub fn wins_over(&self, other: &Stamp) -> bool {
        self.lww_key() > other.lww_key()
    }

    /// The stamp of a folded entry taking in `next`, a newer op of the same
    /// origin: `next`'s dot (the newest the fold stands for) and the
    /// greatest hlc of the two. A bounded clock can stamp a later op of an
    /// origin lower than an earlier one, and the fold must rank in LWW
    /// (type conflicts) as the entries it replaced ranked.
    #[inline]
    pub fn fold(&mut self, next: &Stamp) {
        self.hlc = self.hlc.max(next.hlc);
        self.dot = next.dot;
    }
}

/// The causal context of one op: what its origin had seen when it made it.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    pub deps: &'a VersionVector,
    pub own: OpId,
    pub hlc: Hlc,
    /// Every op this site applied before this one is causally stable: no op
    /// concurrent with them can still arrive (a site alone: see
    /// docs/semantics.md, "Stability"). Counters then fold their increments
    /// into one entry per origin as they come.
    pub fold: bool,
}

impl Ctx<'_> {
    /// True when the origin of this op had seen `dot` (its own earlier ops and
    /// the op itself included, so effects later in one op remove earlier ones).
    #[inline]
    pub fn covers(&self, dot: OpId) -> bool {
        if dot.origin == self.own.origin {
            dot.seq <= self.own.seq
        } else {
            self.deps.covers(dot)
        }
    }
    #[inline]
    pub fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.hlc,
            dot: self.own,
        }
    }
}

/// The add-dots of an observed-remove element (almost always one).
pub type Dots = SmallVec<[Stamp; 1]>;

/// Removes the dots covered by `ctx`; true if any was removed.
#[inline]
pub fn prune_dots(dots: &mut Dots, ctx: &Ctx<'_>) -> bool {
    let before = dots.len();
    dots.retain(|s| !ctx.covers(s.dot));
    dots.len() != before
}

/// Observed-remove then add: the dots `ctx` covers go, the op's own dot comes.
#[inline]
pub fn readd_dots(dots: &mut Dots, ctx: &Ctx<'_>) {
    prune_dots(dots, ctx);
    dots.push(ctx.stamp());
}

/// Greatest stamp of a dot set.
pub fn max_stamp<'a>(stamps: impl Iterator<Item = &'a Stamp>) -> Option<Stamp> {
    stamps.fold(None, |acc: Option<Stamp>, s| match acc {
        Some(a) if a.wins_over(s) => Some(a),
        _ => Some(*s),
    })
}

/// State-based join of two dot sets: a dot present on one side survives unless
/// the other side's context (version vector) covers it (then the other side
/// removed it). Used by snapshot merge.
pub fn join_dots(
    local: &mut Dots,
    remote: &[Stamp],
    local_vv: &VersionVector,
    remote_vv: &VersionVector,
) {
    local.retain(|s| remote.iter().any(|r| r.dot == s.dot) || !remote_vv.covers(s.dot));
    for r in remote {
        if !local.iter().any(|s| s.dot == r.dot) && !local_vv.covers(r.dot) {
            local.push(*r);
        }
    }
    local.sort_by_key(|s| s.dot);
}
