//! Multi-value register with last-writer-wins display.
//!
//! A write removes the entries its origin had seen and adds its own; concurrent
//! writes leave several entries, and the visible one is the greatest
//! `(hlc, origin)`. Keeping the losers (instead of discarding them) is what makes
//! a later observed-remove deterministic: a DEL that had seen only the winner
//! must uncover the concurrent loser at every site alike.

use super::{Ctx, Stamp};
use crate::id::VersionVector;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct MvReg<T> {
    entries: SmallVec<[(Stamp, T); 1]>,
}

impl<T> Default for MvReg<T> {
    fn default() -> Self {
        MvReg {
            entries: SmallVec::new(),
        }
    }
}

impl<T: Clone> MvReg<T> {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes the entries `ctx` covers; true if any was removed.
    pub fn prune(&mut self, ctx: &Ctx<'_>) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(s, _)| !ctx.covers(s.dot));
        before != self.entries.len()
    }

    /// Observed-remove then write.
    pub fn write(&mut self, ctx: &Ctx<'_>, value: T) {
        self.prune(ctx);
        self.entries.push((ctx.stamp(), value));
    }

    /// The visible entry: greatest `(hlc, origin)`.
    pub fn winner(&self) -> Option<&(Stamp, T)> {
        let mut best: Option<&(Stamp, T)> = None;
        for e in &self.entries {
            match best {
                Some(b) if b.0.wins_over(&e.0) => {}
                _ => best = Some(e),
            }
        }
        best
    }

    pub fn value(&self) -> Option<&T> {
        self.winner().map(|e| &e.1)
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        self.winner().map(|e| e.0)
    }

    pub fn entries(&self) -> impl Iterator<Item = &(Stamp, T)> {
        self.entries.iter()
    }

    /// Entries in canonical (dot) order, for encoding and digests.
    pub fn sorted_entries(&self) -> Vec<&(Stamp, T)> {
        let mut v: Vec<&(Stamp, T)> = self.entries.iter().collect();
        v.sort_by_key(|e| e.0.dot);
        v
    }

    pub fn from_entries(mut entries: Vec<(Stamp, T)>) -> Self {
        entries.sort_by_key(|e| e.0.dot);
        MvReg {
            entries: entries.into_iter().collect(),
        }
    }

    /// State-based join (snapshot merge), see [`super::join_dots`].
    pub fn join(&mut self, remote: &MvReg<T>, local_vv: &VersionVector, remote_vv: &VersionVector) {
        self.entries.retain(|(s, _)| {
            remote.entries.iter().any(|(r, _)| r.dot == s.dot) || !remote_vv.covers(s.dot)
        });
        for (r, v) in &remote.entries {
            if !self.entries.iter().any(|(s, _)| s.dot == r.dot) && !local_vv.covers(r.dot) {
                self.entries.push((*r, v.clone()));
            }
        }
        self.entries.sort_by_key(|e| e.0.dot);
    }
}
