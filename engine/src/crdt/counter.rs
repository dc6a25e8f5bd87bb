//! Counter: one dotted entry per increment op, removable by observed-remove.
//!
//! INCR at a site adds an entry `(dot, delta)`; SET/DEL remove the entries their
//! origin had seen, so unobserved (concurrent) increments survive on top of the
//! new base. Integer sums are exact in i128. Float sums are computed per origin
//! in seq order and then added in ascending origin order, so every site gets the
//! same bits whatever order the increments arrived in.

use super::{Ctx, Stamp};
use crate::id::{Origin, VersionVector};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterEntry {
    pub stamp: Stamp,
    pub int: i128,
    pub float: f64,
}

/// Entries sorted by dot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    entries: Vec<CounterEntry>,
}

impl Counter {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn prune(&mut self, ctx: &Ctx<'_>) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| !ctx.covers(e.stamp.dot));
        before != self.entries.len()
    }

    /// Adds an increment of the op in `ctx` (two increments of one op add up).
    pub fn add(&mut self, ctx: &Ctx<'_>, int: i128, float: f64) {
        let dot = ctx.own;
        match self.entries.binary_search_by_key(&dot, |e| e.stamp.dot) {
            Ok(i) => {
                let e = &mut self.entries[i];
                e.int += int;
                e.float += float;
            }
            Err(i) => self.entries.insert(
                i,
                CounterEntry {
                    stamp: ctx.stamp(),
                    int,
                    float,
                },
            ),
        }
    }

    /// Exact integer sum of the entries.
    pub fn int_sum(&self) -> i128 {
        self.entries.iter().map(|e| e.int).sum()
    }

    /// True when some entry carries a float part (the value shows as a float).
    pub fn has_float(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.float != 0.0 || e.float.is_sign_negative())
    }

    /// Deterministic float sum: per origin in seq order, origins ascending.
    pub fn float_sum(&self) -> f64 {
        let mut total = 0.0f64;
        let mut cur: Option<Origin> = None;
        let mut part = 0.0f64;
        for e in &self.entries {
            if cur != Some(e.stamp.dot.origin) {
                total += part;
                part = 0.0;
                cur = Some(e.stamp.dot.origin);
            }
            part += e.float;
        }
        total + part
    }

    pub fn max_stamp(&self) -> Option<Stamp> {
        super::max_stamp(self.entries.iter().map(|e| &e.stamp))
    }

    pub fn entries(&self) -> &[CounterEntry] {
        &self.entries
    }

    pub fn from_entries(mut entries: Vec<CounterEntry>) -> Counter {
        entries.sort_by_key(|e| e.stamp.dot);
        entries.dedup_by_key(|e| e.stamp.dot);
        Counter { entries }
    }

    /// State-based join (snapshot merge).
    pub fn join(&mut self, remote: &Counter, local_vv: &VersionVector, remote_vv: &VersionVector) {
        self.entries.retain(|s| {
            remote.entries.iter().any(|r| r.stamp.dot == s.stamp.dot)
                || !remote_vv.covers(s.stamp.dot)
        });
        for r in &remote.entries {
            if !local_vv.covers(r.stamp.dot)
                && self
                    .entries
                    .binary_search_by_key(&r.stamp.dot, |e| e.stamp.dot)
                    .is_err()
            {
                self.entries.push(*r);
            }
        }
        self.entries.sort_by_key(|e| e.stamp.dot);
    }
}
