//! Causal stability across the cluster: which ops no op still to come can
//! be concurrent with, so that their counter entries can be folded (see
//! docs/semantics.md, "Stability and folded counters").
//!
//! Every site reports what it has durably applied ([`Report`]); reports are
//! gossiped along the replication topology, so a site learns every member's,
//! not only its peers'. At site `i`, the **frontier** is the pointwise
//! minimum of the reports of every member `k`, usable only once `i` has
//! applied every op `k` had issued when it reported. Then an op covered by
//! the frontier was applied by every member, every op a member issues from
//! now on has seen it, and every op a member issued before has arrived: no
//! op that has not seen it can still arrive.
//!
//! Who the members are comes from the cluster's own data
//! ([`crate::engine::Membership`]). A removed site stays in the computation
//! until its removal is complete: every member has applied the removal
//! (and so refuses the site's sessions) and this site holds every op of
//! the removed site that any member held then.

use crate::id::{OpId, SiteId, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member whose newest report is older than this (by its own clock
/// against this site's) is reported as holding the frontier back.
pub const REPORT_STALE_MS: u64 = 30_000;

/// Reports kept at most: one per site of the cluster.
pub const REPORTS_MAX: usize = 4096;

/// What `site` had durably applied at `at_ms` (its wall clock), in its
/// incarnation `incarnation`. Of two reports of one site, the one with the
/// greater `(incarnation, at_ms)` is the newer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub site: SiteId,
    pub incarnation: u32,
    pub at_ms: u64,
    pub vv: VersionVector,
}

impl Report {
    fn newer_than(&self, other: &Report) -> bool {
        (self.incarnation, self.at_ms) > (other.incarnation, other.at_ms)
    }
}

/// The newest report known of each site.
#[derive(Clone, Debug, Default)]
pub struct Reports {
    by_site: BTreeMap<SiteId, Report>,
}

impl Reports {
    /// Keeps `r` if it is newer than what is known of its site. Returns true
    /// when it was kept. A vector that is not canonical is ignored.
    pub fn merge(&mut self, r: Report) -> bool {
        if !r.vv.is_canonical() {
            return false;
        }
        let full = self.by_site.len() >= REPORTS_MAX;
        match self.by_site.get_mut(&r.site) {
            Some(old) if !r.newer_than(old) => false,
            Some(old) => {
                *old = r;
                true
            }
            None if full => false,
            None => {
                self.by_site.insert(r.site, r);
                true
            }
        }
    }

    pub fn get(&self, site: SiteId) -> Option<&Report> {
        self.by_site.get(&site)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Report> + '_ {
        self.by_site.values()
    }

    pub fn len(&self) -> usize {
        self.by_site.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_site.is_empty()
    }

    /// Forgets the report of `site` (a removal that completed).
    pub fn forget(&mut self, site: SiteId) {
        self.by_site.remove(&site);
    }
}

/// Why the frontier cannot move: a member whose report is missing, or whose
/// ops up to its report have not all arrived here yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// No report of this member has arrived (a member that never connected
    /// anywhere, or a dead one whose report was never seen here).
    NoReport(SiteId),
    /// Ops this member had issued when it reported are still on their way.
    Behind(SiteId),
    /// This site was removed from the cluster.
    Removed(SiteId),
    /// The frontier moves, but this member's newest report is older than
    /// [`REPORT_STALE_MS`] and holds it back (a site that is down or cut
    /// off: folding waits for it until it is back or removed).
    Stale(SiteId),
    /// This site has had peers but knows no other member yet.
    NoPeers,
}

impl Pin {
    /// The site that pins the frontier (0: none in particular).
    pub fn site(&self) -> SiteId {
        match *self {
            Pin::NoReport(s) | Pin::Behind(s) | Pin::Removed(s) | Pin::Stale(s) => s,
            Pin::NoPeers => 0,
        }
    }

    /// Why, in a few words (INFO).
    pub fn reason(&self) -> &'static str {
        match self {
            Pin::NoReport(_) => "no_report",
            Pin::Behind(_) => "ops_on_the_way",
            Pin::Removed(_) => "this_site_removed",
            Pin::Stale(_) => "no_recent_report",
            Pin::NoPeers => "no_members_known",
        }
    }
}

/// A removed site and the op that removed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removal {
    pub site: SiteId,
    pub by: OpId,
}

/// True when every op of `site` that `report` says was applied is applied
/// here (`applied`).
fn holds_ops_of(applied: &VersionVector, site: SiteId, report: &VersionVector) -> bool {
    report
        .iter()
        .filter(|(o, _)| o.site == site)
        .all(|(o, s)| applied.get(o) >= s)
}

/// True when the removal of `r` is complete as seen from here: every active
/// member reported after applying the removal, and every op of the removed
/// site that those reports cover has arrived here.
pub fn removal_complete(
    r: &Removal,
    active: &[SiteId],
    reports: &Reports,
    applied: &VersionVector,
) -> bool {
    active.iter().all(|&k| {
        reports
            .get(k)
            .is_some_and(|rep| rep.vv.covers(r.by) && holds_ops_of(applied, r.site, &rep.vv))
    }) && applied.covers(r.by)
}

/// The member among `members` whose report is the oldest, if that report is
/// older than [`REPORT_STALE_MS`] at `now_ms` and does not cover `applied`
/// (so it holds the frontier back).
pub fn stale_member(
    members: &[SiteId],
    reports: &Reports,
    applied: &VersionVector,
    now_ms: u64,
) -> Option<SiteId> {
    members
        .iter()
        .filter_map(|&k| reports.get(k))
        .filter(|r| now_ms.saturating_sub(r.at_ms) > REPORT_STALE_MS && !r.vv.dominates(applied))
        .min_by_key(|r| r.at_ms)
        .map(|r| r.site)
}

/// The frontier at a site that has applied `applied`, over `members` (the
/// active members, this site among them, and the removed sites whose
/// removal is not complete yet).
///
/// `wait_pending: false` is a canary (the simulator must catch it): the
/// frontier then moves before the ops a member issued before its report
/// have arrived.
pub fn frontier(
    members: &[SiteId],
    reports: &Reports,
    applied: &VersionVector,
    wait_pending: bool,
) -> Result<VersionVector, Pin> {
    let mut f: Option<VersionVector> = None;
    for &k in members {
        let r = reports.get(k).ok_or(Pin::NoReport(k))?;
        if wait_pending && !holds_ops_of(applied, k, &r.vv) {
            return Err(Pin::Behind(k));
        }
        f = Some(match f {
            None => r.vv.clone(),
            Some(f) => f.meet(&r.vv),
        });
    }
    Ok(f.unwrap_or_default().meet(applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Origin;

    fn vv(entries: &[(SiteId, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(s, q) in entries {
            v.set(Origin::new(s, 1), q);
        }
        v
    }

    fn report(site: SiteId, at_ms: u64, v: VersionVector) -> Report {
        Report {
            site,
            incarnation: 1,
            at_ms,
            vv: v,
        }
    }

    #[test]
    fn the_frontier_is_the_minimum_of_every_members_report() {
        let mut reports = Reports::default();
        reports.merge(report(1, 10, vv(&[(1, 10), (2, 5), (3, 7)])));
        reports.merge(report(2, 10, vv(&[(1, 8), (2, 6), (3, 7)])));
        reports.merge(report(3, 10, vv(&[(1, 9), (2, 6), (3, 9)])));
        let applied = vv(&[(1, 10), (2, 6), (3, 9)]);
        let f = frontier(&[1, 2, 3], &reports, &applied, true).unwrap();
        assert_eq!(f, vv(&[(1, 8), (2, 5), (3, 7)]));
    }

    #[test]
    fn a_member_without_a_report_or_with_ops_on_the_way_pins_it() {
        let mut reports = Reports::default();
        reports.merge(report(1, 10, vv(&[(1, 10), (2, 4)])));
        let applied = vv(&[(1, 10), (2, 3)]);
        assert_eq!(
            frontier(&[1, 2], &reports, &applied, true),
            Err(Pin::NoReport(2))
        );
        // Site 2 had issued 4 ops when it reported; the 4th has not arrived.
        reports.merge(report(2, 10, vv(&[(1, 9), (2, 4)])));
        assert_eq!(
            frontier(&[1, 2], &reports, &applied, true),
            Err(Pin::Behind(2))
        );
        let applied = vv(&[(1, 10), (2, 4)]);
        assert_eq!(
            frontier(&[1, 2], &reports, &applied, true),
            Ok(vv(&[(1, 9), (2, 4)]))
        );
    }

    #[test]
    fn only_a_newer_report_replaces_an_older_one() {
        let mut reports = Reports::default();
        assert!(reports.merge(report(1, 10, vv(&[(1, 10)]))));
        assert!(!reports.merge(report(1, 9, vv(&[(1, 12)]))));
        assert_eq!(reports.get(1).unwrap().vv, vv(&[(1, 10)]));
        // A new incarnation is newer whatever its clock says.
        let mut r = report(1, 1, vv(&[(1, 3)]));
        r.incarnation = 2;
        assert!(reports.merge(r));
        assert_eq!(reports.get(1).unwrap().incarnation, 2);
    }

    #[test]
    fn a_removal_completes_when_every_member_applied_it_and_its_ops_are_here() {
        let by = OpId {
            origin: Origin::new(1, 1),
            seq: 20,
        };
        let r = Removal { site: 3, by };
        let mut reports = Reports::default();
        reports.merge(report(1, 10, vv(&[(1, 20), (3, 5)])));
        reports.merge(report(2, 10, vv(&[(1, 19), (3, 6)])));
        let applied = vv(&[(1, 20), (2, 1), (3, 6)]);
        // Site 2 has not applied the removal yet.
        assert!(!removal_complete(&r, &[1, 2], &reports, &applied));
        reports.merge(report(2, 11, vv(&[(1, 20), (3, 7)])));
        // Site 2 holds an op of site 3 that has not arrived here.
        assert!(!removal_complete(&r, &[1, 2], &reports, &applied));
        let applied = vv(&[(1, 20), (2, 1), (3, 7)]);
        assert!(removal_complete(&r, &[1, 2], &reports, &applied));
    }
}
