//! Op identity: site ids, `OpId`s and version vectors.
//!
//! An `OpId` is `(origin site, seq)`; `seq` is dense per origin and starts at 1.
//! A `VersionVector` maps each site to the highest seq applied *contiguously*
//! from it, so it says exactly which ops a site holds. Entries are kept sorted
//! by site and never hold a zero, so equal vectors have equal bytes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A site's id, unique in the cluster.
pub type SiteId = u16;

/// Where ops come from: a site in one *incarnation*. A site that restarts after
/// losing an un-fsynced tail of its log starts a new incarnation, so an OpId it
/// may have shipped before the crash is never reused for a different op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub site: SiteId,
    pub incarnation: u32,
}

impl Origin {
    pub const fn new(site: SiteId, incarnation: u32) -> Origin {
        Origin { site, incarnation }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.incarnation == 0 {
            write!(f, "{}", self.site)
        } else {
            write!(f, "{}.{}", self.site, self.incarnation)
        }
    }
}

/// Identity of one op: its origin and its dense per-origin sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OpId {
    pub origin: Origin,
    pub seq: u64,
}

impl OpId {
    pub const fn new(origin: Origin, seq: u64) -> OpId {
        OpId { origin, seq }
    }
    pub fn site(&self) -> SiteId {
        self.origin.site
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.seq)
    }
}

/// `origin -> highest contiguous seq`, sorted by origin, no zero entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    entries: Vec<(Origin, u64)>,
}

impl VersionVector {
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// Highest seq held from `site` (0 if none).
    #[inline]
    pub fn get(&self, site: Origin) -> u64 {
        // Few sites: a linear scan beats a binary search here.
        for &(s, q) in &self.entries {
            if s == site {
                return q;
            }
            if s > site {
                break;
            }
        }
        0
    }

    /// Sets the entry for `site` (0 removes it).
    pub fn set(&mut self, site: Origin, seq: u64) {
        match self.entries.binary_search_by_key(&site, |e| e.0) {
            Ok(i) => {
                if seq == 0 {
                    self.entries.remove(i);
                } else {
                    self.entries[i].1 = seq;
                }
            }
            Err(i) => {
                if seq != 0 {
                    self.entries.insert(i, (site, seq));
                }
            }
        }
    }

    /// A copy without the entry of `site` (allocates nothing when that entry
    /// was the only one: an op's deps at a site that has seen no other).
    pub fn without(&self, site: Origin) -> VersionVector {
        VersionVector {
            entries: self
                .entries
                .iter()
                .copied()
                .filter(|e| e.0 != site)
                .collect(),
        }
    }

    /// Raises the entry for `site` to at least `seq`.
    pub fn raise(&mut self, site: Origin, seq: u64) {
        if self.get(site) < seq {
            self.set(site, seq);
        }
    }

    /// True when this vector holds `id`.
    #[inline]
    pub fn covers(&self, id: OpId) -> bool {
        id.seq <= self.get(id.origin)
    }

    /// True when every entry of `other` is covered by this vector.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|&(s, q)| self.get(s) >= q)
    }

    /// Pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        for &(s, q) in &other.entries {
            self.raise(s, q);
        }
    }

    /// Pointwise minimum (entries missing on either side count as 0).
    pub fn meet(&self, other: &VersionVector) -> VersionVector {
        let mut out = VersionVector::new();
        for &(s, q) in &self.entries {
            out.set(s, q.min(other.get(s)));
        }
        out
    }

    /// Number of origins with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Origin, u64)> + '_ {
        self.entries.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of all entries: the number of ops this vector covers.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.1).sum()
    }

    /// Number of ops `self` has that `other` lacks.
    pub fn ops_ahead_of(&self, other: &VersionVector) -> u64 {
        self.entries
            .iter()
            .map(|&(s, q)| q.saturating_sub(other.get(s)))
            .sum()
    }

    /// Checks the representation invariant (sorted, unique, no zeros); used
    /// after decoding a vector that came from a peer or the disk.
    pub fn is_canonical(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].0 < w[1].0) && self.entries.iter().all(|e| e.1 > 0)
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, (s, q)) in self.entries.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{s}:{q}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(site: SiteId) -> Origin {
        Origin::new(site, 0)
    }

    #[test]
    fn set_get_and_canonical_form() {
        let mut v = VersionVector::new();
        v.set(o(3), 5);
        v.set(o(1), 2);
        v.set(o(2), 0);
        assert_eq!(v.get(o(1)), 2);
        assert_eq!(v.get(o(2)), 0);
        assert_eq!(v.get(o(3)), 5);
        assert!(v.is_canonical());
        v.set(o(1), 0);
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![(o(3), 5)]);
    }

    #[test]
    fn join_meet_dominates() {
        let mut a = VersionVector::new();
        a.set(o(1), 3);
        a.set(o(2), 1);
        let mut b = VersionVector::new();
        b.set(o(2), 4);
        let m = a.meet(&b);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(o(2), 1)]);
        a.join(&b);
        assert!(a.dominates(&b));
        assert_eq!(a.get(o(2)), 4);
        assert!(a.covers(OpId::new(o(1), 3)));
        assert!(!a.covers(OpId::new(o(1), 4)));
        assert_eq!(a.ops_ahead_of(&b), 3);
    }
}
