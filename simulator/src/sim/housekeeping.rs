//! Each site's housekeeping (`chorus_site::Housekeeping`, as chorus-server runs it) on virtual time: ticks, fsyncs that take time, checkpoints captured in slices and written later.

use super::*;

impl Sim {
    /// The keys site `s`'s clock shows past their deadline: `(db, key,
    /// deadline, whether this site owns the winning deadline)`.
    fn expiry_due(&self, s: usize, wall_ms: u64) -> Vec<(u8, Vec<u8>, u64, bool)> {
        let Some(e) = self.sites[s].engine.as_ref() else {
            return Vec::new();
        };
        let me = e.config().site_id;
        let mut due = Vec::new();
        for db in 0..chorus_engine::keyspace::ALL_DBS as u8 {
            let d = e.keyspace().db(db);
            for (deadline, key) in d.expires.iter() {
                if *deadline > wall_ms {
                    break;
                }
                let mine = d
                    .rows
                    .get(key)
                    .and_then(|r| r.deadline_owner())
                    .is_some_and(|o| o.dot.origin.site == me);
                due.push((db, key.to_vec(), *deadline, mine));
            }
        }
        due
    }

    /// The `expiry` checker, at the other end: a key a housekeeping tick
    /// deleted for its deadline was deleted no earlier than the rule allows,
    /// by the deleting site's own clock: the owner of the winning deadline
    /// at the deadline plus `max_clock_skew_ms`, any other site
    /// `EXPIRY_TAKEOVER_MS` later. (A clock fast by more than the bound
    /// deletes early by the excess, in real time: that is what this permits.)
    fn check_expiry_not_early(
        s: usize,
        e: &Engine,
        wall_ms: u64,
        due: &[(u8, Vec<u8>, u64, bool)],
    ) -> Result<(), Violation> {
        let margin = e.config().max_clock_skew_ms;
        for (db, key, deadline, mine) in due {
            let still = e
                .keyspace()
                .db(*db)
                .rows
                .get(key)
                .and_then(|r| r.deadline());
            if still == Some(*deadline) {
                continue;
            }
            let wait = if *mine {
                margin
            } else {
                margin.saturating_add(chorus_engine::engine::EXPIRY_TAKEOVER_MS)
            };
            if wall_ms < deadline.saturating_add(wait) {
                return Err(Violation::new(
                    "expiry",
                    format!(
                        "site {} deleted {:?} (db {db}) at {wall_ms} by its clock, {} ms before it may ({}): deadline {deadline}",
                        s + 1,
                        String::from_utf8_lossy(key),
                        deadline.saturating_add(wait) - wall_ms,
                        if *mine { "its owner, at the deadline plus the skew bound" } else { "not its owner, after the takeover" }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The housekeeping's schedule for the simulated sites: the server's
    /// policy with shorter intervals and small capture slices, so that runs
    /// checkpoint often and clients and peers interleave with every phase.
    /// Under `appendfsync always` and `no` only the clients' group commit
    /// syncs (the periodic sync would hide a missing one).
    pub(super) fn site_config(&self) -> SiteConfig {
        SiteConfig {
            tick_ms: EXPIRE_INTERVAL_MS,
            expire_keys_per_tick: EXPIRE_BUDGET,
            sync_interval_ms: 1000,
            sync_always_and_no: false,
            checkpoint_log_bytes: CHECKPOINT_LOG_BYTES,
            checkpoint_interval_ms: CHECKPOINT_INTERVAL_MS,
            capture_slice_rows: CAPTURE_SLICE_ROWS,
            release_memory: false,
            // Profiles that damage rows behind the engine run without
            // folding at the frontier: an increment lost to damage and then
            // folded is frozen into the fold, which anti-entropy cannot tell
            // from the healthy fold of the same increments (both name the
            // same dots). Known limit, docs/semantics.md ("Stability").
            fold_counters_per_tick: if self.corrupting {
                0
            } else {
                SiteConfig::default().fold_counters_per_tick
            },
            ..SiteConfig::default()
        }
    }

    /// The housekeeping's clocks at site `s`: virtual time (monotonic) and
    /// the site's skewed wall clock.
    pub(super) fn hk_now(&self, s: usize) -> Now {
        Now {
            mono_ms: self.sched.now_ms(),
            wall_ms: self.wall(s),
        }
    }

    /// What every peer of site `s` durably acknowledged (`None` without
    /// sessions: keep the backlog).
    pub(super) fn acked_by_all(&self, s: usize) -> Option<VersionVector> {
        let mut all: Option<VersionVector> = None;
        for sess in self.sites[s].sessions.values() {
            let a = sess.peer_acked_vv();
            all = Some(match all {
                None => a.clone(),
                Some(m) => m.meet(a),
            });
        }
        all
    }

    pub(super) fn site_tick(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::SiteTick { site: s, gen }) {
            return;
        }
        let now = self.hk_now(s);
        let trim_to = self.acked_by_all(s);
        let due = self.expiry_due(s, now.wall_ms);
        let (expired_before, taken_over_before) =
            self.sites[s].engine.as_ref().map_or((0, 0), |e| {
                (e.stats().expired_keys, e.stats().expired_keys_taken_over)
            });
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk)) = (site.engine.as_mut(), site.hk.as_mut()) else {
            return;
        };
        let folds_before = engine.fold_counts().0;
        let frontier_before = engine.stability_frontier().clone();
        hk.tick(engine, now, trim_to.as_ref());
        let (folds, overlaps) = engine.fold_counts();
        self.stats.folds += folds - folds_before;
        if *engine.stability_frontier() != frontier_before {
            let info = engine.stability_info();
            self.trace.event(t, "frontier", &[s as u64], || {
                let reports: Vec<String> = info
                    .reports
                    .iter()
                    .map(|r| format!("{}@{}.{}:{}", r.site, r.incarnation, r.at_ms, r.vv))
                    .collect();
                format!(
                    "site {} frontier {} from reports [{}]",
                    s + 1,
                    info.frontier,
                    reports.join(" ")
                )
            });
        }
        if overlaps > 0 {
            let what = engine.last_overlap().to_owned();
            self.fail(Violation::new(
                "stability",
                format!(
                    "site {} applied an op that removed part of a folded counter entry ({overlaps} times): the fold was made before its increments were stable: {}",
                    s + 1,
                    what
                ),
            ));
            return;
        }
        let next = self.sites[s].hk.as_ref().map_or(0, |h| h.next_tick_ms());
        let Some(engine) = self.sites[s].engine.as_mut() else {
            return;
        };
        let n = engine.stats().expired_keys - expired_before;
        if n > 0 {
            if let Err(v) = Self::check_expiry_not_early(s, engine, now.wall_ms, &due) {
                self.fail(v);
                return;
            }
        }
        self.stats.expiry_takeovers += engine.stats().expired_keys_taken_over - taken_over_before;
        if n > 0 {
            self.trace.event(t, "expire", &[s as u64, n], || {
                format!("site {} expired {n} keys", s + 1)
            });
            if self.p.fsync == Fsync::Always {
                self.schedule_group_commit(s);
            }
        }
        self.sched.at(next, Ev::SiteTick { site: s, gen });
        self.run_site_work(s);
    }

    /// Runs the work the housekeeping queued: fsyncs and checkpoint writes
    /// take virtual time, the capture goes a slice at a time.
    pub(super) fn run_site_work(&mut self, s: usize) {
        let gen = self.sites[s].gen;
        let mut wake = false;
        while let Some(work) = self.sites[s].hk.as_mut().and_then(Housekeeping::poll_work) {
            match work {
                Work::Sync(sync) => {
                    self.sites[s].sync = Some(sync);
                    let delay = 1 + self.p.knobs.fsync_delay_ms;
                    self.sched.after(delay, Ev::SyncDone { site: s, gen });
                }
                Work::Checkpoint => {
                    self.sched
                        .after(CAPTURE_SLICE_GAP_MS, Ev::CaptureSlice { site: s, gen });
                }
                Work::WakePeers => wake = true,
                Work::ReleaseMemory => {}
            }
        }
        if wake {
            self.after_touch(s);
            self.pump_site(s);
        }
    }

    pub(super) fn sync_done(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::SyncDone { site: s, gen }) {
            return;
        }
        let now = self.hk_now(s);
        let trim_to = self.acked_by_all(s);
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk), Some(sync)) =
            (site.engine.as_mut(), site.hk.as_mut(), site.sync.take())
        else {
            return;
        };
        hk.sync_done(engine, sync.wait(), now, trim_to.as_ref());
        if let Some(p) = engine.poisoned() {
            if site.disk_fault.is_some() {
                // The disk fault did it: writes are refused until the
                // restart, which is already scheduled.
                self.trace.event(t, "fsync-failed", &[s as u64], || {
                    format!("site {}: periodic fsync failed (disk fault): {p}", s + 1)
                });
                return;
            }
            let v = Violation::new("storage", format!("site {}: sync failed: {p}", s + 1));
            self.fail(v);
            return;
        }
        self.trace.event(t, "fsync", &[s as u64], || {
            format!("site {} periodic fsync", s + 1)
        });
        self.after_touch(s);
        self.run_site_work(s);
    }

    pub(super) fn capture_slice(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        if self.defer_if_paused(s, || Ev::CaptureSlice { site: s, gen }) {
            return;
        }
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk)) = (site.engine.as_mut(), site.hk.as_mut()) else {
            return;
        };
        match hk.capture(engine) {
            Capture::More => {
                self.sched
                    .after(CAPTURE_SLICE_GAP_MS, Ev::CaptureSlice { site: s, gen });
            }
            Capture::Ready(pending) => {
                let rows = pending.rows() as u64;
                site.checkpoint = Some(pending);
                let delay = 1 + self.site_rng.range(0, CHECKPOINT_WRITE_MS_MAX);
                self.sched
                    .after(delay, Ev::CheckpointWritten { site: s, gen });
                self.trace
                    .event(t, "checkpoint-captured", &[s as u64, rows], || {
                        format!("site {} captured a checkpoint of {rows} rows", s + 1)
                    });
            }
            Capture::Gone => {}
        }
    }

    pub(super) fn checkpoint_written(&mut self, t: u64, s: usize, gen: u64) {
        if self.sites[s].gen != gen || !self.sites[s].up() {
            return;
        }
        // The write runs off the engine: a paused process writes nothing,
        // so it waits too.
        if self.defer_if_paused(s, || Ev::CheckpointWritten { site: s, gen }) {
            return;
        }
        self.write_checkpoint_now(t, s);
    }

    /// Writes the captured checkpoint of site `s`, if any. Also called
    /// before anything that checkpoints inline (a full sync's merge): the
    /// engine waits for a checkpoint being written, and in one thread that
    /// wait would never end.
    pub(super) fn write_checkpoint_now(&mut self, t: u64, s: usize) {
        let now = self.hk_now(s);
        let site = &mut self.sites[s];
        let (Some(engine), Some(hk), Some(pending)) = (
            site.engine.as_mut(),
            site.hk.as_mut(),
            site.checkpoint.take(),
        ) else {
            return;
        };
        hk.checkpoint_done(engine, pending.write(), now);
        if let Some(p) = engine.poisoned() {
            if site.disk_fault.is_some() {
                self.trace.event(t, "checkpoint-failed", &[s as u64], || {
                    format!("site {}: checkpoint failed (disk fault): {p}", s + 1)
                });
                return;
            }
            let v = Violation::new("storage", format!("site {}: checkpoint failed: {p}", s + 1));
            self.fail(v);
            return;
        }
        self.trace.event(t, "checkpoint", &[s as u64], || {
            format!("site {} checkpoint written", s + 1)
        });
        self.after_touch(s);
        self.pump_site(s);
    }
}
