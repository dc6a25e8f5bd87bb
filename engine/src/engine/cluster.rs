//! The cluster's own data and causal stability.
//!
//! Membership is kept as rows of [`CLUSTER_DB`]: the set `members` (every
//! site ever added) and the set `removed` (sites removed for good). Both
//! only grow, so membership merges by union and a removal wins over any
//! add; being rows, they replicate, persist, travel in snapshots and are
//! compared by anti-entropy like any data. A site is added by `MEMBER ADD`
//! or, on both sides, by the first session between two sites.
//!
//! Stability (see [`crate::stability`]): each site reports what it durably
//! applied; the reports are gossiped by the replication sessions; the
//! frontier is what every member applied, and counters queued by the
//! keyspace are folded up to it a budget at a time.

use super::{Engine, META_SHARED};
use crate::id::{OpId, SiteId, VersionVector};
use crate::keyspace::CLUSTER_DB;
use crate::reply::Reply;
use crate::stability::{self, Pin, Removal, Report, Reports};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// The set of every site added to the cluster.
pub const MEMBERS_KEY: &[u8] = b"members";
/// The set of the sites removed from it (never emptied).
pub const REMOVED_KEY: &[u8] = b"removed";
/// What the last reports this site handed out stood for, per member (see
/// [`StabilityState::emitted_before`]), kept across restarts.
const META_EMITTED: &str = "reports_emitted";

/// Membership as this site sees it now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Every site added, removed ones included.
    pub added: BTreeSet<SiteId>,
    /// Removed sites, each with the oldest op that removed it.
    pub removed: BTreeMap<SiteId, OpId>,
}

impl Membership {
    /// The members that were not removed.
    pub fn active(&self) -> impl Iterator<Item = SiteId> + '_ {
        self.added
            .iter()
            .copied()
            .filter(|s| !self.removed.contains_key(s))
    }

    pub fn is_removed(&self, site: SiteId) -> bool {
        self.removed.contains_key(&site)
    }

    pub fn is_active(&self, site: SiteId) -> bool {
        self.added.contains(&site) && !self.is_removed(site)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MemberError {
    #[error("site {0} was removed from the cluster; a removed site id is never used again")]
    Removed(SiteId),
    #[error("site id must be an integer in 1..65535")]
    BadId,
    #[error("this site cannot remove itself; remove it from another member")]
    RemoveSelf,
    #[error("{0}")]
    Write(String),
}

/// What this site knows about stability (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct StabilityState {
    pub reports: Reports,
    /// Counters are folded up to here. It only grows while the site runs,
    /// and starts over at every start (see `Engine::advance_frontier`).
    pub frontier: VersionVector,
    /// The backlog floor kept on disk (`META_SHARED`): every frontier this
    /// site ever folded to, across restarts.
    pub floor_on_disk: VersionVector,
    /// Why the frontier cannot move, if it cannot.
    pub pin: Option<Pin>,
    /// Since when it has been pinned (wall ms), for INFO and the log.
    pub pinned_since_ms: Option<u64>,
    pub last_pin_log_ms: u64,
    /// The greatest own report handed to a peer, and since this start no
    /// less than the durable vector it opened with (no earlier report can
    /// exceed that).
    pub emitted: VersionVector,
    /// Per member, what this site's reports stood for before it knew the
    /// member: a site that used one of those reports to fold did not wait
    /// for that member, so the member must hold at least that much before
    /// it is served op by op (see [`Engine::newcomer_needs_full_sync`]).
    pub emitted_before: BTreeMap<SiteId, VersionVector>,
    /// Removed sites whose removal is not complete yet.
    pub leaving: Vec<SiteId>,
    /// A member whose old report holds the frontier back, if any.
    pub stale: Option<SiteId>,
    /// The last overlap noted, described.
    pub last_overlap: String,
    /// Counters folded.
    pub folds: u64,
    /// Removals that saw part of a fold (see [`crate::crdt::counter::take_overlaps`]).
    pub overlaps: u64,
}

/// A summary for INFO and MEMBER LIST.
#[derive(Clone, Debug)]
pub struct StabilityInfo {
    pub frontier: VersionVector,
    pub pin: Option<Pin>,
    pub pinned_since_ms: Option<u64>,
    pub reports: Vec<Report>,
    /// Removed sites still counted (their removal is not complete).
    pub leaving: Vec<SiteId>,
    pub folds: u64,
    pub overlaps: u64,
    pub queued: usize,
}

fn parse_site(b: &[u8]) -> Option<SiteId> {
    std::str::from_utf8(b)
        .ok()?
        .parse::<SiteId>()
        .ok()
        .filter(|&s| s != 0)
}

impl Engine {
    /// Membership as this site sees it (see the module docs).
    pub fn membership(&self) -> Membership {
        let rows = &self.keyspace.db(CLUSTER_DB).rows;
        let mut m = Membership::default();
        if let Some(set) = rows.get(MEMBERS_KEY).and_then(|r| r.set.as_deref()) {
            m.added
                .extend(set.members.keys().filter_map(|k| parse_site(k)));
        }
        if let Some(set) = rows.get(REMOVED_KEY).and_then(|r| r.set.as_deref()) {
            for (k, dots) in set.members.iter() {
                let (Some(site), Some(by)) = (parse_site(k), dots.iter().map(|s| s.dot).min())
                else {
                    continue;
                };
                m.removed.insert(site, by);
                m.added.insert(site);
            }
        }
        m
    }

    /// One op adding `sites` to the set `key` of the cluster's database.
    fn cluster_sadd(
        &mut self,
        key: &[u8],
        sites: &[SiteId],
        now_ms: u64,
    ) -> Result<(), MemberError> {
        let mut args = vec![Bytes::from_static(b"SADD"), Bytes::copy_from_slice(key)];
        args.extend(sites.iter().map(|s| Bytes::from(s.to_string())));
        // Membership is no counter: a site catching up may record it (the
        // session that catches it up starts with it).
        let fenced = std::mem::replace(&mut self.catching_up, false);
        let target = self.catch_up_to.take();
        let reply = self.execute(CLUSTER_DB, &args, now_ms);
        self.catching_up = fenced;
        self.catch_up_to = target;
        match reply {
            Reply::Error(e) => Err(MemberError::Write(e.to_string())),
            _ => Ok(()),
        }
    }

    /// Adds `site` to the cluster (an op that replicates). Returns false
    /// when it was already a member.
    pub fn member_add(&mut self, site: SiteId, now_ms: u64) -> Result<bool, MemberError> {
        if site == 0 {
            return Err(MemberError::BadId);
        }
        let m = self.membership();
        if m.is_removed(site) {
            return Err(MemberError::Removed(site));
        }
        if m.added.contains(&site) {
            return Ok(false);
        }
        self.cluster_sadd(MEMBERS_KEY, &[site], now_ms)?;
        tracing::info!(site, "site added to the cluster");
        Ok(true)
    }

    /// Removes `site` from the cluster for good (an op that replicates):
    /// every member refuses its sessions once it applies the removal, and
    /// the site stops counting for stability once every member did.
    /// Returns false when it was already removed.
    pub fn member_remove(&mut self, site: SiteId, now_ms: u64) -> Result<bool, MemberError> {
        if site == 0 {
            return Err(MemberError::BadId);
        }
        if site == self.config.site_id {
            return Err(MemberError::RemoveSelf);
        }
        if self.membership().is_removed(site) {
            return Ok(false);
        }
        self.cluster_sadd(REMOVED_KEY, &[site], now_ms)?;
        tracing::warn!(
            site,
            "site removed from the cluster: its sessions are refused from now on"
        );
        Ok(true)
    }

    /// A session with `peer` is starting: both are members from now on
    /// (before anything is sent to the peer, so that every report this
    /// site makes from now on stands for a membership that includes it).
    pub fn register_session(&mut self, peer: SiteId, now_ms: u64) -> Result<(), MemberError> {
        let me = self.config.site_id;
        let m = self.membership();
        for s in [me, peer] {
            if m.is_removed(s) {
                return Err(MemberError::Removed(s));
            }
        }
        let missing: Vec<SiteId> = [me, peer]
            .into_iter()
            .filter(|s| !m.added.contains(s))
            .collect();
        if !missing.is_empty() {
            self.cluster_sadd(MEMBERS_KEY, &missing, now_ms)?;
        }
        Ok(())
    }

    /// What a peer that holds `peer_vv` must hold before it writes, if it
    /// lacks some of it: it was not a member when this site made reports
    /// that some site may have folded with, and an op it made after
    /// holding only some of the ops they cover could not be applied to
    /// such a fold. The peer refuses writes until it holds this vector
    /// (see [`Engine::require_catch_up`]).
    pub fn newcomer_catch_up(
        &self,
        peer: SiteId,
        peer_vv: &VersionVector,
    ) -> Option<VersionVector> {
        let before = self
            .stability
            .emitted_before
            .get(&peer)
            .unwrap_or(&self.stability.emitted);
        (!peer_vv.dominates(before)).then(|| before.clone())
    }

    /// A peer said this site joined late (see [`Engine::newcomer_catch_up`]):
    /// writes are refused (`LOADING`) until the state covers `vv`. Ops from
    /// peers and snapshots keep arriving meanwhile.
    pub fn require_catch_up(&mut self, vv: &VersionVector) {
        if self.vv.dominates(vv) {
            return;
        }
        let target = self.catch_up_to.get_or_insert_with(VersionVector::new);
        target.join(vv);
        tracing::info!(
            catch_up_to = %target,
            "joined a cluster whose reports may have been folded with: writes wait until this site holds them"
        );
    }

    /// The vector writes wait for, while they do (INFO).
    pub fn catching_up_to(&self) -> Option<&VersionVector> {
        self.catch_up_to.as_ref().filter(|t| !self.vv.dominates(t))
    }

    /// The reports to send a peer: this site's own, made now, and the
    /// newest known of every other site.
    pub fn stability_reports(&mut self, now_ms: u64) -> Vec<Report> {
        let own = Report {
            site: self.config.site_id,
            incarnation: self.origin.incarnation,
            at_ms: now_ms,
            vv: self.durable_vv().clone(),
        };
        // Members this site did not know before this report: what its
        // earlier reports stood for is what they must hold to be streamed.
        let m = self.membership();
        let mut changed = false;
        for s in m.active() {
            if s != self.config.site_id && !self.stability.emitted_before.contains_key(&s) {
                self.stability
                    .emitted_before
                    .insert(s, self.stability.emitted.clone());
                changed = true;
            }
        }
        let gone: Vec<SiteId> = self
            .stability
            .emitted_before
            .keys()
            .copied()
            .filter(|s| m.is_removed(*s))
            .collect();
        for s in gone {
            self.stability.emitted_before.remove(&s);
            changed = true;
        }
        if changed {
            let bytes = postcard::to_allocvec(&self.stability.emitted_before).unwrap_or_default();
            if let Err(e) = self.storage.meta_put(META_EMITTED, &bytes) {
                self.poison(e);
            }
        }
        self.stability.emitted.join(&own.vv);
        self.stability.reports.merge(own);
        self.stability.reports.iter().cloned().collect()
    }

    /// Takes in the reports a peer sent (newer ones replace older ones;
    /// this site's own are its to make).
    pub fn merge_reports(&mut self, reports: Vec<Report>) {
        for r in reports {
            if r.site != self.config.site_id {
                self.stability.reports.merge(r);
            }
        }
    }

    /// Moves the frontier as far as the reports allow, then folds up to
    /// `budget` queued counters up to it. Returns how many were folded.
    pub fn stability_step(&mut self, now_ms: u64, budget: usize) -> usize {
        let overlaps = crate::crdt::counter::take_overlaps();
        self.note_overlaps(overlaps);
        if self.keyspace.fold {
            // Alone: increments fold as they are applied.
            self.keyspace.fold_queue.clear();
            return 0;
        }
        match self.compute_frontier(now_ms) {
            Ok(f) => {
                if !self.stability.frontier.dominates(&f) {
                    self.advance_frontier(&f);
                }
                match self.stability.stale {
                    Some(site) => self.note_pin(Pin::Stale(site), now_ms),
                    None => {
                        self.stability.pin = None;
                        self.stability.pinned_since_ms = None;
                    }
                }
            }
            Err(pin) => self.note_pin(pin, now_ms),
        }
        if self.stability.frontier.is_empty() {
            return 0;
        }
        let frontier = std::mem::take(&mut self.stability.frontier);
        let n = self.keyspace.fold_queued(&frontier, budget);
        self.stability.frontier = frontier;
        self.stability.folds += n as u64;
        n
    }

    /// Records (and, past a minute, logs once a minute) what pins the
    /// frontier.
    fn note_pin(&mut self, pin: Pin, now_ms: u64) {
        if self.stability.pin.is_some_and(|p| p.site() != pin.site()) {
            self.stability.pinned_since_ms = None;
        }
        let since = *self.stability.pinned_since_ms.get_or_insert(now_ms);
        self.stability.pin = Some(pin);
        // Logged once a minute while pinned for more than one.
        let pinned_ms = now_ms.saturating_sub(since);
        if pinned_ms >= 60_000 && now_ms.saturating_sub(self.stability.last_pin_log_ms) >= 60_000 {
            self.stability.last_pin_log_ms = now_ms;
            tracing::warn!(
                site = pin.site(),
                pinned_secs = pinned_ms / 1000,
                reason = pin.reason(),
                "counters are not folding past what a member last reported: it pins the stability frontier (remove it with MEMBER REMOVE if it is gone for good)"
            );
        }
    }

    fn compute_frontier(&mut self, now_ms: u64) -> Result<VersionVector, Pin> {
        let me = self.config.site_id;
        let m = self.membership();
        if m.is_removed(me) {
            return Err(Pin::Removed(me));
        }
        let mut active: Vec<SiteId> = m.active().collect();
        if !active.contains(&me) {
            active.push(me);
        }
        if !self.shared || m.added.iter().all(|&s| s == me) {
            // A site with peers configured that never had a session, or
            // that knows no other member yet, cannot tell whom to wait
            // for. (Folding now would also make its first session a full
            // sync: a peer that lacks folded ops cannot be served op by op.)
            return Err(Pin::NoPeers);
        }
        let own = Report {
            site: me,
            incarnation: self.origin.incarnation,
            at_ms: now_ms,
            vv: self.durable_vv().clone(),
        };
        self.stability.reports.merge(own);
        let mut members = active.clone();
        self.stability.leaving.clear();
        for (&site, &by) in &m.removed {
            let r = Removal { site, by };
            if !stability::removal_complete(&r, &active, &self.stability.reports, &self.vv) {
                members.push(site);
                self.stability.leaving.push(site);
            }
        }
        let wait_pending = !self.config.canaries.frontier_skips_pending;
        let f = stability::frontier(&members, &self.stability.reports, &self.vv, wait_pending)?;
        self.stability.stale =
            stability::stale_member(&members, &self.stability.reports, &self.vv, now_ms);
        Ok(f)
    }

    /// Raises the frontier to include `f`: the backlog floor durably first
    /// (a restart keeps serving peers that lack folded ops by full sync),
    /// then in memory. The frontier itself is not kept on disk: it is
    /// valid only while this site holds every op the reports it came from
    /// waited for, and a crash can take applied ops that were not durable.
    fn advance_frontier(&mut self, f: &VersionVector) {
        let mut next = self.stability.frontier.clone();
        next.join(f);
        if !self.stability.floor_on_disk.dominates(&next) {
            let mut floor = self.stability.floor_on_disk.clone();
            floor.join(&next);
            let bytes = postcard::to_allocvec(&floor).unwrap_or_default();
            if let Err(e) = self.storage.meta_put(META_SHARED, &bytes) {
                self.poison(e);
                return;
            }
            self.stability.floor_on_disk = floor;
        }
        for (o, s) in next.iter() {
            self.backlog.floor.raise(o, s);
        }
        self.stability.frontier = next;
    }

    pub(crate) fn note_overlaps(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.stability.overlaps;
        self.stability.overlaps += n;
        let total = self.stability.overlaps;
        if before == 0 || total.ilog2() > before.ilog2() {
            self.stability.last_overlap = crate::crdt::counter::last_overlap();
            tracing::error!(
                total,
                overlap = %self.stability.last_overlap,
                "an op removed part of a folded counter entry: it had not seen increments that were taken as stable (a site whose disk went back?); the count may differ from the other sites'"
            );
        }
    }

    /// Loads what the reports handed out before this start stood for.
    pub(crate) fn load_stability(&mut self) -> Result<(), crate::storage::StorageError> {
        self.stability.emitted = self.vv.clone();
        if let Some(b) = self.storage.meta_get(META_EMITTED)? {
            if let Ok(map) = postcard::from_bytes::<BTreeMap<SiteId, VersionVector>>(&b) {
                self.stability.emitted_before = map;
            }
        }
        Ok(())
    }

    /// True while writes are refused because this site holds less than it
    /// reported to its peers (its op log was salvaged): a full sync from a
    /// peer ends it (docs/semantics.md, "Stability").
    pub fn catching_up(&self) -> bool {
        self.catching_up
    }

    pub(crate) fn caught_up(&mut self) {
        if self.catching_up {
            self.catching_up = false;
            tracing::info!("caught up by a full sync: writes are accepted again");
        }
    }

    /// The stability frontier: counters are folded up to it.
    pub fn stability_frontier(&self) -> &VersionVector {
        &self.stability.frontier
    }

    /// Counters folded since the start, and removals that saw part of a
    /// fold (must stay 0).
    pub fn fold_counts(&self) -> (u64, u64) {
        (self.stability.folds, self.stability.overlaps)
    }

    /// The last removal that saw part of a fold, described (empty if none).
    pub fn last_overlap(&self) -> &str {
        &self.stability.last_overlap
    }

    /// Stability as this site sees it (INFO, MEMBER LIST).
    pub fn stability_info(&self) -> StabilityInfo {
        StabilityInfo {
            frontier: self.stability.frontier.clone(),
            pin: self.stability.pin,
            pinned_since_ms: self.stability.pinned_since_ms,
            reports: self.stability.reports.iter().cloned().collect(),
            leaving: self.stability.leaving.clone(),
            folds: self.stability.folds,
            overlaps: self.stability.overlaps,
            queued: self.keyspace.fold_queue.len(),
        }
    }
}
